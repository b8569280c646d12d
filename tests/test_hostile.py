"""Hostile input to artrain, arexport and arrun: every bad input gives exactly one `error: ...` line on
stderr, the documented exit code (2 usage, 1 runtime, 130 interrupted), no traceback, no file left behind,
no file changed, and the devices intact; memory bombs are refused in seconds without allocating gigabytes.

The table of cases lives in ``hostile_cases.py``; ``test_hostile`` runs each in-process through Typer's
CliRunner in its own tmp folder (also the working directory), under a deadline (a hang fails the case,
it does not stall the suite) and with the address space capped a few GiB above what the process already
maps (an allocation of gigabytes fails the case instead of the machine). Signals need a real process:
``test_sigterm``. What must succeed (``--out /dev/null``, ``--out -``, planted names beside the output, a
tiny temperature, odd but valid paths) is checked by the small tests at the end.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import wave
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import conftest
import hostile_cases
from arexport.cli import app as arexport_app
from arrun.cli import app as arrun_app
from artrain.cli import app as artrain_app
from hostile_cases import ALL_CASES, BOMB_SECONDS, Case, Ctx, model_path

APPS = {"arrun": arrun_app, "artrain": artrain_app, "arexport": arexport_app}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
DEVICES = {"/dev/null": (1, 3), "/dev/full": (1, 7)}
HEADROOM = 4 << 30        # address space a case may map beyond what the test process already has
BIG_FILE = 64 << 20       # larger files (sparse bombs) are compared by size and mtime, not read
HIDDEN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # not shown by Python


# ------------------------------------------------------------------------------------------------
# The contract's instruments

class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that runs too long; a BaseException so that no edge swallows it."""


@contextlib.contextmanager
def deadline(seconds: float):
    def fire(signum, frame):
        raise CaseTimeout()
    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


FIFO_GRACE = 2.0  # a reader still waiting on a FIFO after this long is blocked: unblock it, fail the case


@contextlib.contextmanager
def fifo_unblocker(paths: list[str], grace: float = FIFO_GRACE):
    """After ``grace`` seconds, open each FIFO for writing and close it at once (again and again): a reader
    blocked in open() or read() then sees end of file instead of hanging the suite, even inside C code.
    Yields the list of FIFOs that had a reader waiting (a tool must refuse a FIFO, not read it)."""
    hits: list[str] = []
    stop = threading.Event()

    def run():
        if stop.wait(grace):
            return
        while not stop.is_set():
            for path in paths:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads
                except OSError:
                    continue
                os.close(fd)
                hits.append(path)
            stop.wait(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield hits
    finally:
        stop.set()
        thread.join()


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def bounded_memory(headroom: int = HEADROOM):
    """RLIMIT_AS at what is mapped now plus ``headroom``: allocating gigabytes raises MemoryError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _mapped_bytes()
    if not mapped:
        yield
        return
    limit = mapped + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _digest(path: str, st: os.stat_result):
    if st.st_size > BIG_FILE:
        return ("big", st.st_size, st.st_mtime_ns)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots`` (never following links): kind and content hash, link target, ..."""
    entries: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    entries[path] = ("link", os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    entries[path] = ("dir",)
                elif stat.S_ISREG(st.st_mode):
                    entries[path] = ("file", _digest(path, st))
                else:
                    entries[path] = ("special", stat.S_IFMT(st.st_mode))
    return entries


def snapshot_diff(before: dict, after: dict) -> list[str]:
    problems = []
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    if added:
        problems.append(f"left behind: {', '.join(added[:5])}")
    if removed:
        problems.append(f"removed: {', '.join(removed[:5])}")
    if changed:
        problems.append(f"changed: {', '.join(changed[:5])}")
    return problems


def _dev_names() -> list[str]:
    return sorted(n for n in os.listdir("/dev") if n.lstrip(".").startswith(("null", "full")))


def devices_state():
    return {p: os.path.exists(p) and stat.S_ISCHR(os.lstat(p).st_mode) for p in DEVICES}, _dev_names()


def check_and_repair_devices(before) -> list[str]:
    """The devices must still be character devices and nothing new may sit beside them in /dev; a broken
    device is restored (as root) so one failing case cannot break the machine for the rest."""
    problems = []
    chars, names = devices_state()
    for path, ok in chars.items():
        if before[0][path] and not ok:
            problems.append(f"{path} is no longer a character device")
            if IS_ROOT:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                major, minor = DEVICES[path]
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
                os.chmod(path, 0o666)
    new = sorted(set(names) - set(before[1]))
    if new:
        problems.append(f"created in /dev: {', '.join(new)}")
        for name in new:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join("/dev", name))
    return problems


class Unraisable(UserWarning):
    """An exception ignored in __del__ (or another unraisable hook): a real process prints its traceback."""


class Outcome:
    """What a run did, without references into it (so that what it dropped is collected at once)."""

    def __init__(self, exit_code: int, stdout_bytes: bytes, stderr: str, escaped: str | None = None):
        self.exit_code, self.stdout_bytes, self.stderr, self.escaped = exit_code, stdout_bytes, stderr, escaped
        self.stdout = stdout_bytes.decode(errors="replace")
        self.output = self.stdout + self.stderr


def invoke(cli: str, args: list[str], env=None):
    """Run in-process -> (Outcome, the warnings a real process would print on stderr, counting exceptions
    ignored in __del__ of objects the run dropped: they are collected before this returns)."""
    ignored = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = ignored.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            result = CliRunner(env=env).invoke(APPS[cli], [str(a) for a in args])
            exc = result.exception
            escaped = None if exc is None or isinstance(exc, SystemExit) else "".join(traceback.format_exception(exc))
            outcome = Outcome(result.exit_code, result.stdout_bytes, result.stderr, escaped)
            del result, exc
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    shown = [w for w in caught if not issubclass(w.category, HIDDEN)]
    for u in ignored:
        where = getattr(u.object, "__qualname__", None) or type(u.object).__name__
        shown.append(warnings.WarningMessage(Unraisable(f"exception ignored in {where}: {u.exc_type.__name__}: "
                                                        f"{u.exc_value}"), Unraisable, "", 0))
    return outcome, shown


def _limit_memory_in_child():  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))


def invoke_process(cli: str, args: list[str], timeout: float, cwd: Path) -> Outcome:
    """Run ``cli`` in a fresh interpreter (as its console script does), its address space capped at 8 GiB;
    raises CaseTimeout when it runs past ``timeout`` (the process is killed)."""
    code = f"import sys; from {cli}.cli import main; sys.argv[0] = {cli!r}; main()"
    env = {k: v for k, v in os.environ.items() if k != "AR_DEBUG"}
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=timeout, cwd=cwd,
                              env=env, preexec_fn=_limit_memory_in_child)
    except subprocess.TimeoutExpired:
        raise CaseTimeout() from None
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode < 0:
        stderr += f"\n(killed by signal {-proc.returncode}: a crash)"
    return Outcome(proc.returncode, proc.stdout, stderr)


def matches(line: str, item) -> bool:
    alternatives = (item,) if isinstance(item, str) else item
    return any(a.lower() in line.lower() for a in alternatives)


def error_problems(case: Case, result, shown) -> list[str]:
    """What is wrong with an error run, one short phrase per problem ([] when it keeps the contract)."""
    problems = []
    if result.escaped:
        problems.append(f"escaped the edge with a traceback: {result.escaped.strip().splitlines()[-1]}")
    if "Traceback" in result.stderr + result.stdout:
        problems.append("a traceback is printed")
    lines = result.stderr.splitlines()
    if case.log_ok or case.cli == "artrain":
        # artrain logs what it does (loading data, training progress) on stderr before it fails: allowed,
        # when the one error line comes last and nothing before it is a warning or another error
        lines = [l for l in lines if l.strip()]
        errors = [l for l in lines if l.lstrip().lower().startswith("error") or "warning" in l.lower()]
        ok = len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: ")
    else:
        ok = len(lines) == 1 and lines[0].startswith("error: ")
    line = lines[-1] if lines else ""
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    if result.exit_code not in codes:
        problems.append(f"exit {result.exit_code}, expected {' or '.join(map(str, codes))}"
                        + (f" ({line[:300]!r})" if ok else ""))
    if not ok:
        shown_err = " | ".join(lines[-4:])[:400]
        problems.append(f"stderr is not one 'error: ' line ({len(lines)} lines: {shown_err!r})")
    if ok:
        missing = [item for item in case.frags if not matches(line, item)]
        if missing:
            problems.append(f"the line lacks {missing} ({line!r})")
        said = [w for w in case.forbid if w.lower() in line.lower()]
        if said:
            problems.append(f"the line says {said} ({line!r})")
    if shown:
        w = shown[0]
        problems.append(f"{len(shown)} warning(s) printed, e.g. {w.category.__name__}: {str(w.message)[:100]}")
    return problems


# ------------------------------------------------------------------------------------------------
# The table

@pytest.fixture(scope="module", autouse=True)
def shared_models():
    """Export the shared tiny models before any case runs (outside the cases' deadlines and memory caps),
    then freeze what exists so that the collection after each run (``invoke``) scans only its own objects."""
    for kind in ("text", "audio", "image", "audio3"):
        model_path(kind)
    model_path("text", "full")
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _shared_roots() -> list[Path]:
    return [conftest._ROOT, hostile_cases._SHARED]


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_hostile(case: Case, tmp_path, monkeypatch):
    if case.root and not IS_ROOT:
        pytest.skip("needs root: only root can replace or create files in /dev")
    if case.nonroot and IS_ROOT:
        pytest.skip("root reads files regardless of their permissions")
    ctx = Ctx(tmp_path / "case", monkeypatch)
    ctx.tmp.mkdir()
    monkeypatch.chdir(ctx.tmp)  # default outputs (samples.png, runs/...) land in the checked folder
    try:
        args = [str(a) for a in case.args(ctx)]
        if case.patch is not None:
            case.patch(ctx)
        before = snapshot(ctx.tmp, *_shared_roots())
        devices = devices_state()
        limit = min(case.timeout, BOMB_SECONDS + 5) if case.bomb else case.timeout
        start = time.perf_counter()
        try:
            with fifo_unblocker(ctx.fifos) as blocked:
                if case.proc:
                    result, shown = invoke_process(case.cli, args, limit, ctx.tmp), []
                else:
                    with deadline(limit), bounded_memory():
                        result, shown = invoke(case.cli, args)
        except CaseTimeout:
            problems = [f"still running after {limit:.0f} s (a hang, or a bomb that was not refused)"]
        else:
            problems = error_problems(case, result, shown)
        if blocked:
            problems.insert(0, f"blocked reading the FIFO {Path(blocked[0]).name} (unblocked after {FIFO_GRACE:.0f} s)")
        elapsed = time.perf_counter() - start
        if case.bomb and elapsed > BOMB_SECONDS:
            problems.append(f"took {elapsed:.1f} s (a bomb must be refused in a few seconds)")
        problems += snapshot_diff(before, snapshot(ctx.tmp, *_shared_roots()))
        problems += check_and_repair_devices(devices)
        if problems:
            pytest.fail(f"{case.id}: " + "; ".join(problems), pytrace=False)
    finally:
        for cleanup in ctx.cleanups:
            cleanup()


# ------------------------------------------------------------------------------------------------
# Signals: a real process, SIGTERM once the work has started -> exit 130, one line, no partial file

AREXPORT_WRAPPER = (
    # arexport has no __main__; import it in full (torch, onnx: seconds) first, so that the signal lands in
    # the export itself and not in the interpreter's imports, then run its command line as `arexport` does.
    "import sys, arexport.cli, arexport.export; sys.stderr.write('READY\\n'); sys.stderr.flush(); "
    "sys.argv = ['arexport'] + sys.argv[1:]; arexport.cli.main()")
RUN_FILES = {"model.safetensors", "config.json", "trainer.safetensors", "metrics.jsonl"}


def _stderr_reader(proc) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []

    def read():
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread


def _terminate_when(proc, lines, ready, settle: float, limit: float = 180) -> float:
    started = time.time()
    while time.time() - started < limit and proc.poll() is None and not ready(lines):
        time.sleep(0.05)
    assert proc.poll() is None, f"the command ended before the signal: {lines[-5:]}"
    assert ready(lines), f"the command did not start its work within {limit} s"
    time.sleep(settle)
    assert proc.poll() is None, f"the command ended before the signal: {lines[-5:]}"
    proc.send_signal(signal.SIGTERM)
    return time.time()


@pytest.mark.parametrize("which", ["arrun-sample-audio", "arexport-onnx", "artrain-fit"])
def test_sigterm(which, tmp_path):
    work = tmp_path / "case"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AR_DEBUG", None)
    if which == "arrun-sample-audio":
        out = work / "out"
        out.mkdir()
        cmd = [sys.executable, "-m", "arrun", "sample", str(model_path("audio")), "-n", "2", "--length", "200000",
               "--out", str(out / "a.wav")]
        ready, settle = (lambda lines: conftest.writing_unnamed(proc.pid, out)), 0.5  # the WAVs grow, unnamed until complete
    elif which == "arexport-onnx":
        ckpt = Path(Ctx(work, None).ckpt("wavenet"))
        (work / "out").mkdir()
        cmd = [sys.executable, "-c", AREXPORT_WRAPPER, "onnx", str(ckpt), "--step-graph", "--out",
               str(work / "out" / "m.onnx")]
        ready, settle = (lambda lines: "READY" in lines), 0.5
    else:
        cfg = Ctx(work, None).cfg("pixelcnn", eval_every=100000)
        run = work / "run"
        cmd = [sys.executable, "-m", "artrain", "fit", "--model", "pixelcnn", "--steps", "100000", "--out", str(run),
               "--config", cfg]
        ready, settle = (lambda lines: (run / "metrics.jsonl").exists()), 0.2  # written at step 10
    before = snapshot(work)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=env)
    try:
        lines, reader = _stderr_reader(proc)
        signalled = _terminate_when(proc, lines, ready, settle)
        proc.wait(timeout=60)
        stopped_in = time.time() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)  # it ends when the pipe closes
    lines = [l for l in lines if l != "READY"]
    assert "Traceback" not in "\n".join(lines)
    assert proc.returncode == 130, (proc.returncode, lines[-5:])
    assert stopped_in < 30, f"took {stopped_in:.1f} s to stop after SIGTERM"
    if which == "artrain-fit":
        shown = [l for l in lines if l.strip()]
        errors = [l for l in shown if l.lower().startswith("error")]
        assert len(errors) == 1 and shown[-1] == errors[0] and errors[0].startswith("error: "), shown[-5:]
        assert "--resume" in errors[0]
        assert {p.name for p in run.iterdir()} <= RUN_FILES, sorted(p.name for p in run.iterdir())
        assert {p.name for p in work.iterdir()} == {"run", "cfg.json"}
        step = json.loads((run / "config.json").read_text())["step"]
        assert step >= 10
        result, _ = invoke("artrain", ["fit", "--resume", str(run), "--steps", str(step + 1)])
        assert result.exit_code == 0, result.output
        assert json.loads((run / "config.json").read_text())["step"] == step + 1
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "interrupt" in lines[0].lower()
        assert snapshot_diff(before, snapshot(work)) == []


# ------------------------------------------------------------------------------------------------
# What must succeed

def _ok(cli: str, args: list, env=None):
    result, shown = invoke(cli, args, env=env)
    assert result.exit_code == 0, (result.exit_code, result.stderr[-2000:], result.escaped)
    assert not shown, [f"{w.category.__name__}: {w.message}" for w in shown]
    return result


@pytest.fixture
def devices_checked():
    before = devices_state()
    yield
    problems = check_and_repair_devices(before)
    assert not problems, problems


@pytest.mark.skipif(not IS_ROOT, reason="root only: as root a rename over /dev/null would replace the device")
@pytest.mark.parametrize("kind", ["text", "audio"])
def test_out_dev_null(kind, tmp_path, monkeypatch, devices_checked):
    monkeypatch.chdir(tmp_path)
    _ok("arrun", ["sample", str(model_path(kind)), "--length", "20", "--out", "/dev/null"])
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="root only: only root can create files in /dev")
def test_out_dev_null_image_creates_nothing_in_dev(tmp_path, monkeypatch, devices_checked):
    """An image goes to a .png and a .npy: --out /dev/null may succeed or be refused, but never creates
    /dev/null.png or /dev/null.npy (the fixture checks /dev)."""
    monkeypatch.chdir(tmp_path)
    result, _ = invoke("arrun", ["sample", str(model_path("image")), "--out", "/dev/null"])
    assert result.exit_code in (0, 2), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["text", "audio", "image"])
def test_out_dash_streams_to_stdout(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _ok("arrun", ["sample", str(model_path(kind)), "--out", "-",
                           *(["--length", "300"] if kind == "audio" else [])])
    data = result.stdout_bytes
    if kind == "text":
        text = data.decode().strip("\n")
        assert text and set(text) <= set(conftest.ALPHABET)
    elif kind == "audio":
        assert data.startswith(b"RIFF")
        with wave.open(io.BytesIO(data)) as w:
            assert (w.getframerate(), w.getnframes()) == (conftest.SAMPLE_RATE, 300)
    else:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert list(tmp_path.iterdir()) == []  # no file named '-', no .npy beside nothing


PLANTED = {  # names beside the target a writer might pick for its temporary file
    "audio": ("song.wav", ["song.wav.part", ".song.wav.part", "song.wav.tmp", ".song.wav.tmp", "song.wav~",
                           ".song.wav", "song.part", ".song.wav.swp", "song.wav.partial"]),
    "image": ("d.png", ["d.png.part", ".d.png.part", "d.npy.part", ".d.npy.part", "d.png.tmp", "d.npy.tmp", ".d.png",
                        ".d.npy"]),
    "text": ("t.txt", ["t.txt.part", ".t.txt.part", "t.txt.tmp", ".t.txt.tmp", "t.txt~", ".t.txt"]),
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_planted_names_beside_the_output_survive(kind, tmp_path, monkeypatch):
    """The user's files beside the target are never touched, and symlinks planted at any name beside it are
    never followed (what they point to is unchanged)."""
    target, names = PLANTED[kind]
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir(), outside.mkdir()
    victim = outside / "secret.txt"
    victim.write_text("do not overwrite")
    for i, name in enumerate(names):
        if i % 2:
            (out / name).write_text(f"the user's own {name}")
        else:
            os.symlink(victim, out / name)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    _ok("arrun", ["sample", str(model_path(kind)), "--out", str(out / target),
                  *(["--length", "100"] if kind == "audio" else [])])
    after = snapshot(tmp_path)
    assert victim.read_text() == "do not overwrite"
    expected = {str(out / target)} | ({str(out / "d.npy")} if kind == "image" else set())
    assert set(after) - set(before) == expected
    assert {p: after[p] for p in before} == before


@pytest.mark.parametrize("temperature", ["1e-45", "5e-324", "1e-300"])
def test_tiny_temperature_is_greedy(temperature, tmp_path, monkeypatch):
    """A temperature that underflows float32 must behave as 0 (greedy): the same tokens, not token 0 every
    time, and no numpy warnings (``_ok`` fails on any printed warning)."""
    monkeypatch.chdir(tmp_path)
    runs = {}
    for t in ("0", temperature):
        with np.errstate(all="warn"):
            result = _ok("arrun", ["sample", str(model_path("text")), "-n", "2", "--length", "20", "--seed", "3",
                                   "--temperature", t, "--json"])
        runs[t] = json.loads(result.stdout)["tokens"]
    assert runs[temperature] == runs["0"]
    assert any(tok != 0 for row in runs["0"] for tok in row)
    for kind, target in (("image", "d.png"), ("audio", "a.wav")):
        files = {}
        for t in ("0", temperature):
            out = tmp_path / f"{kind}-{t}"
            out.mkdir()
            _ok("arrun", ["sample", str(model_path(kind)), "--temperature", t, "--out", str(out / target),
                          *(["--length", "50"] if kind == "audio" else [])])
            files[t] = sorted((p.name, p.read_bytes()) for p in out.iterdir())
        assert files[temperature] == files["0"], kind


def test_paths_with_spaces_and_unicode_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my models ü 模型"
    folder.mkdir()
    model = folder / "tiny text model é.onnx"
    shutil.copyfile(model_path("text"), model)
    out = tmp_path / "out dir ø"
    out.mkdir()
    _ok("arrun", ["sample", str(model), "--out", str(out / "sample one ü.txt"), "--length", "10"])
    assert (out / "sample one ü.txt").read_text()
    _ok("arrun", ["score", str(model), str(out / "sample one ü.txt")])
    _ok("arrun", ["info", str(model)])
