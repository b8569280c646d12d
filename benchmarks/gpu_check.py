"""One-command GPU check of the whole project: arrun on onnxruntime's CUDA provider against the CPU, and artrain on
CUDA, alone and under torchrun. Run it through ``bash benchmarks/gpu_check.sh`` (which picks the python and can
install an onnxruntime-gpu wheel first); nothing is downloaded.

    python benchmarks/gpu_check.py [--models DIR] [--provider cuda|cpu]

Prints a Markdown table (check, result, figure) on stdout, progress on stderr, and exits
0 every row passed | 1 some row failed | 3 no NVIDIA GPU here (the environment rows and one line saying why).

Rows: the environment (python, torch, onnxruntime, nvidia-smi); for every ``DIR/*/step.onnx`` and
``DIR/*/step.fp16.onnx``: ``arrun sample --provider cuda``, 64 greedy steps at batch 2 on CUDA against the fp32
graph on the CPU (teacher-forced, max |Δlogits| over the largest |logit| <= 5e-5 for fp32, 5e-3 for fp16),
``arrun bench`` steps/s at
batch 1 and 256 on CUDA and the CPU, and the state kept on the device (the bound state OrtValues, and onnxruntime's
profile of 50 steps: no Memcpy node of state size), and the state bound in place (one buffer as both ``in.X``
and ``out.X`` where the metadata declares ``in_place``) against separate buffers: outputs equal bit for bit over two
wraps of the longest state axis at batch 3, rows at different positions, and the loop's steps/s both ways at batch 1
and 256; then ``artrain fit --device cuda`` (bf16 autocast) and the same under a
1-process torchrun (a process group of one, so DDP runs over nccl).

This process never imports torch (torch runs in subprocesses), so the CUDA libraries onnxruntime finds are the
ones arrun, which is torch-free, would find. ``--provider cpu`` runs every row on the CPU against itself: a dry
run of the script's own logic where there is no GPU; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = 3
GREEDY_STEPS, GREEDY_BATCH = 64, 2
# max |Δlogits| against the fp32 graph on the CPU, over the reference's largest |logit| (the vocoders' reach 66):
# fp32 within a few float32 roundings (TF32 matrix products gave 3e-4 to 7e-4 on an H200), fp16 within a few of
# float16's (its spacing is 1e-3 of a value; fp16 on the CPU gives up to 9e-4)
TOLERANCE = {"fp32": 5e-5, "fp16": 5e-3}
BENCH_STEPS = {1: 300, 256: 30}  # batch size -> timed steps of `arrun bench` (a text model adds a fixed prefill)
PROFILE_STEPS = 50
IN_PLACE_ROWS = (0, 7, 13)  # the rollout's rows start at these positions: rows at different positions
SAMPLE_LENGTH = 200  # elements `arrun sample` draws from a text or audio model
TIMEOUT_S = 600  # any one subprocess
FIT = ["fit", "--model", "pixelcnn", "--data", "digits", "--steps", "20", "--batch-size", "32", "--json"]
MEMCPY_OPS = ("MemcpyToHost", "MemcpyFromHost")
GPU_ROW = "GPU (nvidia-smi)"
# `arrun` as its console script runs it, after onnxruntime.preload_dlls (onnxruntime >= 1.21) has loaded CUDA and
# cuDNN from the nvidia-* pip packages; its messages go to stderr so that --json output stays clean.
ARRUN = """import contextlib, sys
import onnxruntime as ort
if hasattr(ort, "preload_dlls"):
    with contextlib.redirect_stdout(sys.stderr):
        ort.preload_dlls()
from arrun.cli import main
sys.argv[0] = "arrun"
main()
"""


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    figure: str


class CheckFailed(Exception):
    """A row's failure; the message is the row's figure."""


def table(rows: list[Row]) -> str:
    """Markdown table of ``rows``, one line each; '|' and newlines in a figure are escaped."""
    lines = ["| check | result | figure |", "|---|---|---|"]
    for r in rows:
        figure = " ".join(r.figure.split()).replace("|", "\\|")
        lines.append(f"| {r.name} | {'pass' if r.ok else '**FAIL**'} | {figure} |")
    return "\n".join(lines)


def row(name: str, check: Callable[[], str]) -> Row:
    """Run one check: its returned figure passes; CheckFailed or any other exception fails the row, one line."""
    start = time.perf_counter()
    try:
        result = Row(name, True, check())
    except CheckFailed as e:
        result = Row(name, False, str(e))
    except Exception as e:  # a check script goes on to the next row
        result = Row(name, False, f"{type(e).__name__}: {_first_line(str(e))}")
    return report(result, time.perf_counter() - start)


def report(r: Row, seconds: float = 0.0) -> Row:
    """Print a finished row to stderr (the progress of a long run) -> the row."""
    print(f"[{'pass' if r.ok else 'FAIL'} {seconds:.0f} s] {r.name}: {r.figure}", file=sys.stderr, flush=True)
    return r


def _first_line(text: str, limit: int = 300) -> str:
    return (text.strip().splitlines() or [""])[0][:limit]


def run(cmd: list, timeout: int = TIMEOUT_S) -> str:
    """Run ``cmd`` in the repository -> its stdout; CheckFailed with its last stderr line if it fails."""
    cmd = [str(c) for c in cmd]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"timed out after {timeout} s") from None
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise CheckFailed(f"exit {done.returncode}: {last[:300]}")
    return done.stdout


def run_json(cmd: list) -> dict:
    """The last stdout line of ``cmd`` that is a JSON object (torchrun and libraries may print before it)."""
    lines = [line for line in run(cmd).splitlines() if line.startswith("{")]
    if not lines:
        raise CheckFailed("printed no JSON record")
    return json.loads(lines[-1])


def arrun(*args) -> list:
    return [sys.executable, "-c", ARRUN, *args]


# --- 1. environment -------------------------------------------------------------------------------------------

def no_gpu_reason(smi_error: str | None, cuda_provider: bool, torch_cuda: bool) -> str | None:
    """Why this machine has no usable NVIDIA GPU, or None: nvidia-smi must work, and onnxruntime or torch see CUDA."""
    if smi_error:
        return smi_error
    if not (cuda_provider or torch_cuda):
        return "nvidia-smi sees a GPU but neither onnxruntime (no CUDAExecutionProvider) nor torch can use it"
    return None


def environment() -> tuple[list[Row], str | None]:
    """-> (the environment rows, why there is no GPU or None)."""
    rows = [Row("python", True, f"{platform.python_version()} ({sys.executable})")]
    probe = ("import json, torch; "
             "print(json.dumps([torch.__version__, torch.cuda.is_available(), torch.cuda.device_count()]))")
    try:
        version, torch_cuda, count = json.loads(run([sys.executable, "-c", probe]).splitlines()[-1])
        rows.append(Row("torch", True, f"{version}, cuda available: {torch_cuda}, {count} device(s)"))
    except CheckFailed as e:
        torch_cuda = False
        rows.append(Row("torch", False, f"cannot import torch ({e})"))
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
        rows.append(Row("onnxruntime", True, f"{ort.__version__} from {Path(ort.__file__).parent}, "
                                             f"providers: {', '.join(providers)}"))
    except ImportError as e:
        providers = []
        rows.append(Row("onnxruntime", False, f"cannot import onnxruntime ({e})"))
    gpus, smi_error = _nvidia_smi()
    rows.append(Row(GPU_ROW, not smi_error, smi_error or gpus))
    return rows, no_gpu_reason(smi_error, "CUDAExecutionProvider" in providers, torch_cuda)


def _nvidia_smi() -> tuple[str, str | None]:
    """-> (the GPUs nvidia-smi lists, an error or None)."""
    if not shutil.which("nvidia-smi"):
        return "", "nvidia-smi not found"
    try:
        gpus = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 60)
    except CheckFailed as e:
        return "", f"nvidia-smi failed ({e})"
    return "; ".join(gpus.split("\n")).strip("; "), None


def preload_cuda() -> str:
    """onnxruntime.preload_dlls() where it exists (onnxruntime >= 1.21) -> what it said."""
    import onnxruntime as ort
    if not hasattr(ort, "preload_dlls"):
        return f"onnxruntime {ort.__version__} has no preload_dlls; CUDA libraries come from the loader's path"
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        ort.preload_dlls()
    return "called; " + (" ".join(said.getvalue().split()) or "no complaints")


# --- 2-5. every shipped step graph --------------------------------------------------------------------------------

def model_paths(models: Path) -> list[Path]:
    """``models/*/step.onnx`` and, where present, ``models/*/step.fp16.onnx``, in order."""
    return sorted([*models.glob("*/step.onnx"), *models.glob("*/step.fp16.onnx")])


def check_model(path: Path, provider: str, work: Path) -> list[Row]:
    """The rows of one step graph: sampling, greedy agreement with the CPU, speed, state placement."""
    from arrun.session import open_model

    label = f"{path.parent.name}/{path.name}"
    precision = "fp16" if path.name.endswith(".fp16.onnx") else "fp32"
    try:  # the reference is the fp32 graph on the CPU, for a variant too
        model, reference = open_model(path, provider=provider), open_model(path.with_name("step.onnx"))
    except Exception as e:
        return [report(Row(f"{label}: open on {provider}", False, _first_line(str(e))))]
    return [row(f"{label}: arrun sample", lambda: check_sample(path, model.info, provider, work)),
            row(f"{label}: greedy vs CPU", lambda: greedy_verdict(precision, *greedy_match(model, reference))),
            row(f"{label}: steps/s vs CPU", lambda: check_bench(path, reference.path, provider)),
            row(f"{label}: state (profiled)", lambda: check_state(model, work)),
            row(f"{label}: in-place state", lambda: check_in_place(model))]


def demo_features(info, length: int) -> np.ndarray:
    """A vocoder's frames (F, M) float32 for ``length`` samples: the log-mel of a deterministic µ-law tone."""
    from arrun.contract.features import mulaw_features

    levels = info.vocab_size
    tone = np.sin(2 * np.pi * 220 * np.arange(length) / info.sample_rate)  # (T,)
    codes = np.round((tone + 1) * (levels - 1) / 2).astype(np.int64)
    return mulaw_features(codes, info.features, levels)


def model_inputs(info, batch: int, length: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(condition (B,) [0, 1, ...] where the model is conditional, features (B, F, M) where it is a vocoder)."""
    condition = np.arange(batch) % info.num_classes if info.num_classes else None
    if not info.features:
        return condition, None
    frames = demo_features(info, length)  # (F, M)
    return condition, np.broadcast_to(frames, (batch, *frames.shape))


def check_sample(path: Path, info, provider: str, work: Path) -> str:
    """``arrun sample`` in a subprocess: it must exit 0 and write its file."""
    from arrun.kinds import kind_of

    suffixes = kind_of(info).suffixes  # a kind that claims no suffix (text, utf8) writes any file: .txt
    out = work / f"{path.parent.name}-{path.stem}{suffixes[0] if suffixes else '.txt'}"
    args = ["sample", path, "--provider", provider, "--seed", 0, "--out", out, "--json"]
    args += ["-n", 2] if info.data_kind == "image" else ["--length", SAMPLE_LENGTH]
    if info.num_classes:
        args += ["--condition", 0]
    if info.features:
        np.save(work / "features.npy", demo_features(info, SAMPLE_LENGTH))
        args += ["--features", work / "features.npy"]
    record = run_json(arrun(*args))
    if not out.is_file() or not out.stat().st_size:
        raise CheckFailed(f"exit 0 but {out.name} was not written")
    return f"{record['steps']} steps at {record['steps_per_s'] or 0:,.0f} steps/s, {out.stat().st_size:,} bytes"


def greedy_match(model, reference, steps: int = GREEDY_STEPS,
                 batch: int = GREEDY_BATCH) -> tuple[float, float, int, int]:
    """Greedy decoding of ``reference`` (a Model) with ``model`` teacher-forced along the same tokens, both through
    arrun's Stepper -> (max |Δlogits| over every step (NaN if any is), the reference's largest |logit| (at least
    1), tokens where their argmax agree, tokens)."""
    from arrun.runtime import Stepper

    info = reference.info
    steps = min(steps, info.max_length or steps)
    condition, features = model_inputs(info, batch, steps)
    runners = [Stepper(reference, batch), Stepper(model, batch)]
    for runner in runners:
        runner.reset(condition, features)
    feed, deltas, scale, agree = np.full(batch, info.start_token, np.int64), [], 1.0, 0
    for t in range(steps):
        position = np.full(batch, t, np.int64)  # (B,) one position per row
        want, got = (runner.step(feed, position) for runner in runners)  # (B, V) each
        deltas.append(np.abs(got - want).max())
        scale = max(scale, float(np.abs(want).max()))
        feed = want.argmax(-1)  # (B,) the reference's greedy path
        agree += int((got.argmax(-1) == feed).sum())
    return float(np.max(deltas)), scale, agree, steps * batch


def greedy_verdict(precision: str, max_delta: float, scale: float, agree: int, total: int) -> str:
    """The figure of a greedy comparison; CheckFailed unless max |Δlogits| / ``scale`` (the largest |logit|) is
    within TOLERANCE[precision] and, for fp32, every greedy token agrees (fp16 reports its agreement)."""
    tolerance, relative = TOLERANCE[precision], max_delta / scale
    figure = (f"{precision}: max |Δlogits| {max_delta:.2e} of logits up to {scale:.3g}: {relative:.1e} "
              f"(tolerance {tolerance:g}), greedy tokens agree {agree}/{total} ({100 * agree / total:.1f} %)")
    if not (relative <= tolerance and (precision != "fp32" or agree == total)):  # NaN fails
        raise CheckFailed(figure)
    return figure


def check_bench(path: Path, reference: Path, provider: str) -> str:
    """``arrun bench --json`` of ``path`` on ``provider`` and of the fp32 ``reference`` on the CPU (one thread) at
    each batch size of BENCH_STEPS -> their steps/s and ratios."""
    parts = []
    for batch in BENCH_STEPS:
        ours, cpu = steps_per_s(path, provider, batch), steps_per_s(reference, "cpu", batch)
        parts.append(f"batch {batch}: {ours:,.0f} vs {cpu:,.0f} steps/s ({ours / cpu:.2f}×)")
    return "; ".join(parts)


@functools.lru_cache(maxsize=None)  # an fp16 variant's CPU reference is its fp32 graph's, measured once
def steps_per_s(path: Path, provider: str, batch: int) -> float:
    """The sampling loop's steps/s as ``arrun bench --json`` reports it."""
    args = ("bench", path, "--provider", provider, "--batch-size", batch, "--steps", BENCH_STEPS[batch], "--json")
    return run_json(arrun(*args))["steps_per_s"]


def separate_buffers(model):
    """``model`` with every state tensor on two buffers (A -> B, B -> A), whatever its metadata declares."""
    info = model.info
    return replace(model, info=replace(info, state=tuple(replace(s, in_place=False) for s in info.state)))


def in_place_rollout(model, steps: int | None = None) -> tuple[list[str], int, bool]:
    """The state bound as the metadata says (in place where declared) against separate buffers, on the model's
    provider, teacher-forced along the separate run's greedy tokens, rows at the positions IN_PLACE_ROWS onwards
    (a position past ``max_length`` starts over at 0) -> (the state declared in place, steps, outputs equal bit for
    bit at every step). ``steps`` defaults to two wraps of the longest state axis and a few more."""
    from arrun.runtime import Stepper

    info, batch = model.info, len(IN_PLACE_ROWS)
    declared = [s.name for s in info.state if s.in_place]
    steps = steps or 2 * max(max(s.shape) for s in info.state) + 8
    condition, features = model_inputs(info, batch, info.max_length or steps + max(IN_PLACE_ROWS))
    runners = [Stepper(separate_buffers(model), batch), Stepper(model, batch)]
    for runner in runners:
        runner.reset(condition, features)
    feed, equal = np.full(batch, info.start_token, np.int64), True
    for t in range(steps):
        position = np.array(IN_PLACE_ROWS, np.int64) + t  # (B,)
        if info.max_length:
            position %= info.max_length
        want, got = (runner.step(feed, position) for runner in runners)  # (B, W) each
        equal &= bool(np.array_equal(want, got))
        feed = want.argmax(-1)
    return declared, steps, equal


def loop_steps_per_s(model, batch: int, steps: int) -> float:
    """Steps/s of a bare Stepper loop (the start token at every step), after 3 untimed steps."""
    from arrun.runtime import Stepper

    info = model.info
    runner = Stepper(model, batch)
    runner.reset(*model_inputs(info, batch, info.max_length or steps + 3))
    feed = np.full(batch, info.start_token, np.int64)
    for t in range(steps + 3):
        if t == 3:
            start = time.perf_counter()
        runner.step(feed, np.full(batch, t % (info.max_length or steps + 3), np.int64))
    return steps / (time.perf_counter() - start)


def in_place_verdict(declared: list[str], steps: int, equal: bool, speeds: dict[int, tuple[float, float]]) -> str:
    """The figure of the in-place check; CheckFailed unless the aliased rollout equals the separate one.
    speeds: batch -> (steps/s in place, steps/s with separate buffers)."""
    if not declared:
        return "no state tensor declared in_place: separate buffers only, nothing to compare"
    figure = (f"in place: {', '.join(declared)}; {steps} steps at batch {len(IN_PLACE_ROWS)} (rows at positions "
              f"{', '.join(map(str, IN_PLACE_ROWS))}...) {'equal bit for bit' if equal else 'DIFFER'} with separate "
              f"buffers; " + "; ".join(f"batch {b}: {fast:,.0f} vs {slow:,.0f} steps/s ({fast / slow:.2f}×)"
                                       for b, (fast, slow) in speeds.items()))
    if not equal:
        raise CheckFailed(figure)
    return figure


def check_in_place(model) -> str:
    """``in_place_rollout`` and, where some state is declared in place, the loop's steps/s in place and with
    separate buffers at each batch size of BENCH_STEPS -> ``in_place_verdict``."""
    declared, steps, equal = in_place_rollout(model)
    speeds = {}
    if declared and equal:
        for batch, n in BENCH_STEPS.items():
            speeds[batch] = (loop_steps_per_s(model, batch, n), loop_steps_per_s(separate_buffers(model), batch, n))
    return in_place_verdict(declared, steps, equal, speeds)


@dataclass(frozen=True)
class Copies:
    """Counts over one profile: model runs, Memcpy node executions, those moving a state-sized tensor, and node
    executions by the CPU provider."""
    runs: int
    memcpy: int
    state_sized: int
    cpu_nodes: int


def count_copies(events: list[dict], state_elements: int) -> Copies:
    """onnxruntime profile events (the JSON list ``end_profiling`` writes) -> Copies. A Memcpy is state-sized when
    one of its tensors has at least ``state_elements`` elements (the smallest state tensor at the batch size):
    the state, or a tensor as big, crossing between host and device."""
    runs = sum(e.get("cat") == "Session" and e.get("name") == "model_run" for e in events)
    nodes = [e["args"] for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    copies = [a for a in nodes if a.get("op_name") in MEMCPY_OPS]
    sized = [a for a in copies if max(_elements(a), default=0) >= state_elements]
    cpu = sum(a.get("provider") == "CPUExecutionProvider" for a in nodes)
    return Copies(runs, len(copies), len(sized), cpu)


def _elements(args: dict) -> list[int]:
    """Element counts of a node event's tensors: input_type_shape / output_type_shape are [{dtype: shape}, ...]."""
    return [int(np.prod(shape)) for key in ("input_type_shape", "output_type_shape")
            for tensor in args.get(key, []) for shape in tensor.values()]


def state_verdict(provider: str, devices: list[str], copies: Copies) -> str:
    """The figure of the state check; CheckFailed unless the state is on ``provider`` alone and no state-sized
    Memcpy ran."""
    per = lambda n: f"{n / max(copies.runs, 1):.3g}"  # noqa: E731
    ok = devices == [provider] and copies.runs > 0 and not copies.state_sized
    figure = (f"state on device: {'yes' if ok else 'NO'} ({', '.join(devices) or 'nothing bound'}), "
              f"{per(copies.state_sized)} state-sized host copies/step, {per(copies.memcpy)} Memcpy nodes/step in all "
              f"(the logits leave through the output binding), {per(copies.cpu_nodes)} nodes/step on the CPU provider, "
              f"{copies.runs} steps profiled")
    if not ok:
        raise CheckFailed(figure)
    return figure


def check_state(model, work: Path, steps: int = PROFILE_STEPS, batch: int = GREEDY_BATCH) -> str:
    """``steps`` greedy steps of a Stepper over a profiled session with arrun's options -> ``state_verdict``."""
    from arrun.runtime import Stepper

    session = profiled_session(model.path, model.provider, work / f"profile-{model.path.parent.name}-{model.path.stem}")
    stepper = Stepper(replace(model, session=session), batch)
    info = model.info
    stepper.reset(*model_inputs(info, batch, steps))
    feed = np.full(batch, info.start_token, np.int64)
    for t in range(min(steps, info.max_length or steps)):
        feed = stepper.step(feed, np.full(batch, t, np.int64)).argmax(-1)
    shapes = {(batch, *s.shape) for s in info.state}
    # What the graph wrote last through each of the Stepper's two bindings.
    outputs = [v for io in stepper._bindings for v in io.get_outputs()]
    devices = sorted({v.device_name() for v in outputs if tuple(v.shape()) in shapes})
    events = json.loads(Path(session.end_profiling()).read_text())
    smallest = min(batch * int(np.prod(s.shape)) for s in info.state)
    return state_verdict(model.provider, devices, count_copies(events, smallest))


def profiled_session(path: Path, provider: str, prefix: Path):
    """An InferenceSession with the options of ``arrun.session._create_session`` (one intra-op thread, sequential,
    no spinning), plus onnxruntime's profiler writing to ``prefix``*.json."""
    import onnxruntime as ort
    from arrun.session import PROVIDERS, session_providers

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    return ort.InferenceSession(str(path), options, providers=session_providers(PROVIDERS[provider]))


# --- 6-7. training on the device ----------------------------------------------------------------------------------

def check_fit(command: list, out: Path) -> str:
    """``command`` (an ``artrain fit ... --json`` invocation) writes its checkpoint to ``out`` -> its figure."""
    start = time.perf_counter()
    record = run_json([*command, "--out", out])
    bits = (record.get("test") or {}).get("bits_per_dim", float("nan"))
    return f"{record['step']} steps, test {bits:.3f} bits/dim, {time.perf_counter() - start:.0f} s"


def fit_rows(device: str, work: Path) -> list[Row]:
    """artrain fit on ``device``, alone and under a 1-process torchrun (a process group of one: DDP over nccl on
    CUDA, gloo on the CPU)."""
    fit = [sys.executable, "-m", "artrain", *FIT, "--device", device]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *fit[1:]]
    backend = "nccl" if device == "cuda" else "gloo"
    return [row(f"artrain fit --device {device}", lambda: check_fit(fit, work / "fit")),
            row(f"torchrun (1 process, {backend}) artrain fit --device {device}",
                lambda: check_fit(ddp, work / "ddp"))]


# --- 8. the table ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="Folder of model folders.")
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of every row on the CPU against itself (its figures mean nothing).")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, reason = environment()
    if args.provider == "cpu":  # the dry run needs no GPU
        rows = [replace(r, ok=True, figure=f"{r.figure} (dry run)") if r.name == GPU_ROW else r for r in rows]
    elif reason:
        print(table(rows))
        print(f"no NVIDIA GPU here: {reason}; run this on a machine with one")
        return NO_GPU
    else:
        rows.append(row("onnxruntime.preload_dlls", preload_cuda))
    paths = model_paths(args.models)
    if not paths:
        rows.append(report(Row("models", False, f"no */step.onnx under {args.models}")))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for path in paths:
            rows += check_model(path, args.provider, Path(tmp))
        rows += fit_rows(args.provider, Path(tmp))
    print(table(rows))
    failed = sum(not r.ok for r in rows)
    print(f"{len(rows)} checks, {failed} failed, {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
