"""Prove an exported .onnx against the eager model it came from, loudly.

Checks, in order (the first failure raises):
1. structure: ``onnx.checker`` with full checks, strict shape inference, the metadata read strictly
   through ``arrun.schema.ModelInfo`` and written back unchanged, graph I/O names and shapes equal to
   the ones the metadata declares;
2. parity on onnxruntime (CPU) at each batch size, on a random sequence of ``steps`` elements (or the
   maximum length when shorter) with random condition ids where the model has them:
   - step graph, teacher-forced from the initial state the metadata declares: logits vs the torch
     ``step`` rollout and vs torch ``forward`` (sequence_logits);
   - step graph, greedy: the tokens chosen by argmax are identical to torch's greedy ``step`` rollout;
   - full graph: logits vs torch ``forward``;
   each within ``tolerance`` (max abs difference, float32) and with identical argmax tokens.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from google.protobuf.message import DecodeError

from artrain.checkpoint import load_checkpoint
from artrain.errors import UsageError
from artrain.models import ARModel, family_of
from arrun.schema import CONDITION_INPUT, LOGITS_OUTPUT, POSITION_INPUT, TOKEN_INPUT, ModelInfo, SchemaError

from .errors import ExportError, first_line

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    what: str              # e.g. 'onnx step vs torch forward'
    batch: int
    positions: int
    max_abs_diff: float
    token_mismatches: int  # positions whose argmax (greedy) token differs

    def passed(self, tolerance: float) -> bool:
        return self.max_abs_diff <= tolerance and self.token_mismatches == 0

    def line(self) -> str:
        tokens = "greedy tokens identical" if not self.token_mismatches else f"{self.token_mismatches} greedy tokens differ"
        return f"{self.what:<28} batch {self.batch}: max |diff| {self.max_abs_diff:.1e} over {self.positions} positions, {tokens}"


@dataclass(frozen=True)
class VerifyReport:
    path: str
    family: str
    graph: str
    tolerance: float
    comparisons: tuple[Comparison, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed(self.tolerance) for c in self.comparisons)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.comparisons)

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        return [f"verification {verdict} (tolerance {self.tolerance:.0e}):"] + ["  " + c.line() for c in self.comparisons]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "max_abs_diff": self.max_abs_diff}


class ParityError(ExportError):
    """onnxruntime and torch disagree; ``report`` holds every measured figure."""

    def __init__(self, message: str, report: VerifyReport):
        super().__init__(message)
        self.report = report


def verify_onnx(onnx_path: Path | str, checkpoint: Path | str | ARModel, *, steps: int = 64,
                batches: tuple[int, ...] = (1, 3), seed: int = 0, tolerance: float = TOLERANCE,
                name: str | None = None) -> VerifyReport:
    """Check ``onnx_path`` against ``checkpoint`` (a checkpoint directory or the model itself); ``name``
    is what messages and the report call the file (default: its path).

    Returns the report when every check passes; raises UsageError when the file or checkpoint cannot be
    read or do not belong together, ExportError when a structural check fails and ParityError (with the
    report) when a comparison is out of tolerance.
    """
    name = name or str(onnx_path)
    info = check_structure(onnx_path, name)
    model = checkpoint if isinstance(checkpoint, ARModel) else load_checkpoint(checkpoint)[0]
    _check_pairing(model, info, name)
    session = _session(onnx_path)
    rng = np.random.default_rng(seed)
    comparisons = []
    with _one_torch_thread():
        for batch in batches:
            comparisons += _compare(session, model, info, rng, batch, steps)
    report = VerifyReport(name, info.family, info.graph, tolerance, tuple(comparisons))
    if not report.passed:
        worst = max(report.comparisons, key=lambda c: (not c.passed(tolerance), c.max_abs_diff))
        raise ParityError(f"{name} fails verification: {worst.line()} (tolerance {tolerance:.0e}); the graph does "
                          "not reproduce the model (is this the checkpoint it was exported from?): do not ship it, "
                          "report the figures", report)
    return report


def check_structure(onnx_path: Path | str, name: str | None = None) -> ModelInfo:
    """Checker, shape inference, strict metadata, I/O names and shapes -> the file's ModelInfo."""
    path = Path(onnx_path)
    name = name or str(path)
    if not path.is_file():
        raise UsageError(f"{name} does not exist; export one with `arexport onnx CHECKPOINT_DIR --step-graph`")
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (DecodeError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{name} is not a valid ONNX model ({first_line(e)}); export it again") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        info = ModelInfo.from_metadata(meta, source=name)
    except SchemaError as e:
        raise ExportError(str(e)) from None
    if info.to_metadata() != meta:
        raise ExportError(f"the metadata of {name} does not survive a round trip through the schema; export it again")
    inputs = [v.name for v in proto.graph.input]
    outputs = [v.name for v in proto.graph.output]
    if inputs != info.input_names() or outputs != info.output_names():
        raise ExportError(f"{name} has inputs {inputs} and outputs {outputs} but its metadata declares "
                          f"{info.input_names()} -> {info.output_names()}; export it again")
    _check_shapes(inferred.graph, info, name)
    return info


def _check_shapes(graph: onnx.GraphProto, info: ModelInfo, name: str) -> None:
    values = {v.name: _dims(v) for v in [*graph.input, *graph.output]}
    expected = {spec.input: list(spec.shape) for spec in info.state}
    expected |= {spec.output: list(spec.shape) for spec in info.state}
    for tensor, dims in expected.items():
        if values[tensor] != dims:
            raise ExportError(f"{name}: '{tensor}' has shape {values[tensor]}, the metadata declares {dims}; export it again")
    if values[LOGITS_OUTPUT][-1] != info.vocab_size:
        raise ExportError(f"{name}: logits have shape {values[LOGITS_OUTPUT]} for {info.vocab_size} tokens; export it again")


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _check_pairing(model: ARModel, info: ModelInfo, name: str) -> None:
    """The model must be the one the file was exported from, as far as the metadata can tell."""
    c = model.config
    ours = (family_of(model), c.vocab_size, c.num_classes)
    if ours != (info.family, info.vocab_size, info.num_classes) or \
            (info.graph == "step" and {s.name: tuple(s.shape[1:]) for s in info.state} != model.state_shapes()):
        raise UsageError(f"{name} was not exported from this checkpoint (the file: {info.family}, {info.vocab_size} tokens, "
                         f"{info.num_classes} classes; the checkpoint: {ours[0]}, {ours[1]} tokens, {ours[2]} classes"
                         "); give the checkpoint it came from")


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: initializer-pruning warnings are noise here
    options.intra_op_num_threads = 1  # tiny batches: spinning thread pools only cost time
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _one_torch_thread():
    """Steps of a few rows run fastest on one thread; on a busy machine a thread pool is 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _compare(session, model: ARModel, info: ModelInfo, rng: np.random.Generator, batch: int, steps: int) -> list[Comparison]:
    """The comparisons at one batch size on one random sequence (and condition)."""
    T = min(steps, info.max_length) if info.max_length else steps
    L = info.max_length if info.family == "pixelcnn" else T  # PixelCNN's forward takes whole images
    x = rng.integers(0, info.vocab_size, (batch, L), dtype=np.int64)
    cond = rng.integers(0, info.num_classes, batch, dtype=np.int64) if info.num_classes else None
    with torch.no_grad():
        forward = model.sequence_logits(torch.from_numpy(x), _tensor(cond)).numpy()  # (B, L, V)
    if info.graph == "full":
        feed = {TOKEN_INPUT: x} | ({CONDITION_INPUT: cond} if cond is not None else {})
        return [_comparison("onnx full vs torch forward", session.run([LOGITS_OUTPUT], feed)[0], forward)]
    onnx_step, torch_step = _onnx_step(session, info, cond), _torch_step(model, cond)
    onnx_logits, _ = rollout(onnx_step, _initial_state(info, batch), x[:, :T], info.start_token)
    torch_logits, _ = rollout(torch_step, model.init_state(batch), x[:, :T], info.start_token)
    onnx_greedy, onnx_tokens = rollout(onnx_step, _initial_state(info, batch), None, info.start_token, T)
    torch_greedy, torch_tokens = rollout(torch_step, model.init_state(batch), None, info.start_token, T)
    greedy = _comparison("onnx greedy vs torch greedy", onnx_greedy, torch_greedy)
    return [_comparison("onnx step vs torch step", onnx_logits, torch_logits),
            _comparison("onnx step vs torch forward", onnx_logits, forward[:, :T]),
            Comparison(greedy.what, batch, T, greedy.max_abs_diff, int((onnx_tokens != torch_tokens).sum()))]


def _comparison(what: str, got: np.ndarray, want: np.ndarray) -> Comparison:
    """got, want (B, T, V) logits -> max abs difference and how many argmax tokens differ."""
    mismatches = int((got.argmax(-1) != want.argmax(-1)).sum())
    return Comparison(what, got.shape[0], got.shape[1], float(np.abs(got - want).max()), mismatches)


StepFn = Callable[[np.ndarray, int, dict], tuple[np.ndarray, dict]]


def rollout(step: StepFn, state: dict, tokens: np.ndarray | None, start_token: int,
            steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Roll ``step`` from ``state``: teacher-forced on tokens (B, T), or greedy (argmax fed back) when
    tokens is None -> (logits (B, T, V), the tokens fed after each step (B, T))."""
    B, T = tokens.shape if tokens is not None else (len(next(iter(state.values()))), steps)
    token = np.full(B, start_token, dtype=np.int64)
    logits, fed = [], []
    for t in range(T):
        out, state = step(token, t, state)  # (B, V)
        token = tokens[:, t] if tokens is not None else out.argmax(-1)
        logits.append(out)
        fed.append(token)
    return np.stack(logits, axis=1), np.stack(fed, axis=1)


def _initial_state(info: ModelInfo, batch: int) -> dict[str, np.ndarray]:
    """The state a runtime starts from, built from the metadata alone (keyed by graph input name)."""
    return {s.input: np.full((batch, *s.shape[1:]), s.init, dtype=s.dtype) for s in info.state}


def _onnx_step(session: ort.InferenceSession, info: ModelInfo, cond: np.ndarray | None) -> StepFn:
    outputs = info.output_names()
    fixed = {CONDITION_INPUT: cond} if cond is not None else {}

    def step(token, t, state):
        feed = {TOKEN_INPUT: token, **fixed, **state}
        if info.uses_position:
            feed[POSITION_INPUT] = np.array(t, dtype=np.int64)
        values = dict(zip(outputs, session.run(outputs, feed)))
        return values[LOGITS_OUTPUT], {s.input: values[s.output] for s in info.state}
    return step


def _torch_step(model: ARModel, cond: np.ndarray | None) -> StepFn:
    cond = _tensor(cond)

    def step(token, t, state):
        with torch.no_grad():
            logits, state = model.step(torch.from_numpy(token), torch.tensor(t), state, cond)
        return logits.numpy(), state
    return step


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)
