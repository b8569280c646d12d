"""Nothing left behind, even on SIGKILL (issue 24, item 3): outputs are written with no name (O_TMPFILE) and
linked into place only when complete, so a process killed at any moment leaves no pending file, and every
output path holds either the previous file or the complete new one. Each command is killed the moment it holds
an unnamed file in the output folder (mid-write) and at seeded random moments of its run."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from safetensors import safe_open

from artrain import checkpoint as ckpt
from conftest import exported, tiny_model, writing_unnamed

PREVIOUS = b"the previous file\n"


@pytest.fixture(autouse=True)
def nameless_files(tmp_path):
    """These tests watch for O_TMPFILE files; a filesystem without them keeps the named pending file instead
    (tested in test_outputs_atomic.py)."""
    try:
        os.close(os.open(tmp_path, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError as e:
        pytest.skip(f"{tmp_path} has no O_TMPFILE ({e.strerror})")


def kill_at(cmd, folder: Path, moment: float | None) -> int:
    """Run ``cmd``; SIGKILL it ``moment`` seconds after the start, or (None) as soon as it writes an unnamed file
    into ``folder``. -> its exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        while proc.poll() is None:
            if (writing_unnamed(proc.pid, folder) if moment is None else time.monotonic() - start >= moment):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
    finally:
        proc.wait(timeout=60)
    return proc.returncode


def leftovers(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def complete_run(cmd) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return time.monotonic() - start


def check_kills(cmd, folder: Path, prepare, check, seed: int, random_moments: int = 3) -> None:
    """``prepare()`` puts the previous outputs in place; after each kill (mid-write, then at ``random_moments``
    seeded moments of a run), no hidden file is left and ``check()`` accepts what is at the output paths."""
    prepare()
    duration = complete_run(cmd)
    check()
    moments = [None] + [random.Random(seed + i).uniform(0, duration) for i in range(random_moments)]
    for moment in moments:
        prepare()
        status = kill_at(cmd, folder, moment)
        if moment is None:
            assert status == -signal.SIGKILL  # it was caught holding an unnamed output
        assert leftovers(folder) == [], f"killed at {moment}"
        check()


def test_sample_killed_leaves_previous_or_complete(tmp_path):
    model = exported("transformer")
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "arrun", "sample", str(model), "-n", "2", "--length", "3000", "--seed", "1",
           "--out", str(out / "t.txt")]
    names = ("t-000.txt", "t-001.txt")
    complete_run(cmd)
    new = {n: (out / n).read_bytes() for n in names}

    def prepare():
        for n in names:
            (out / n).write_bytes(PREVIOUS)

    def check():
        got = {n: (out / n).read_bytes() for n in names}
        assert got in ({n: PREVIOUS for n in names}, new)  # all or nothing, and never half a file

    check_kills(cmd, out, prepare, check, seed=0)


def test_compress_killed_leaves_previous_or_complete(tmp_path):
    model = exported("transformer")
    text = tmp_path / "in.txt"
    subprocess.run([sys.executable, "-m", "arrun", "sample", str(model), "--length", "20000", "--seed", "2",
                    "--out", str(text)], check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "arrun", "compress", str(model), str(text), "--out", str(out / "x.arz")]
    complete_run(cmd)
    new = (out / "x.arz").read_bytes()

    def prepare():
        (out / "x.arz").write_bytes(PREVIOUS)

    check_kills(cmd, out, prepare, lambda: (out / "x.arz").read_bytes() in (PREVIOUS, new), seed=10)


def test_export_killed_leaves_previous_or_complete(tmp_path):
    checkpoint = tiny_model("transformer")[1]
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "arexport", "onnx", str(checkpoint), "--graph", "step", "--out",
           str(out / "step.onnx"), "--force"]

    def prepare():
        (out / "step.onnx").write_bytes(PREVIOUS)

    def check():
        data = (out / "step.onnx").read_bytes()
        if data != PREVIOUS:  # the complete graph, with its metadata
            meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
            assert meta["ar.family"] == "transformer"

    check_kills(cmd, out, prepare, check, seed=20, random_moments=1)


def test_fit_killed_keeps_a_whole_checkpoint(tmp_path):
    """artrain fit checkpoints every two steps; killed at any moment, its folder holds no checkpoint yet or one
    whole checkpoint (weights, resume state and config of the same step), and nothing hidden."""
    config = tmp_path / "tiny.json"
    config.write_text('{"model": {"layers": 1, "d_model": 16, "heads": 2, "dropout": 0.0}, "batch_size": 8, '
                      '"warmup": 2, "eval_every": 2}')
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "artrain", "fit", "--model", "transformer", "--data", "digits", "--steps", "8",
           "--out", str(out), "--config", str(config), "--seed", "3"]

    def prepare():
        shutil.rmtree(out, ignore_errors=True)

    def check():
        if not (out / "config.json").exists():
            assert not (out / "model.safetensors").exists()
            return
        _, saved = ckpt.load_checkpoint(out)
        steps = {safe_open(out / name, "pt").metadata()["step"] for name in ("model.safetensors", "trainer.safetensors")}
        assert steps == {str(saved["step"])}

    check_kills(cmd, out, prepare, check, seed=30, random_moments=1)
