"""Prove an exported .onnx against the eager model it came from, loudly.

Checks, in order (the first failure raises):
1. structure: ``onnx.checker`` with full checks, strict shape inference, the metadata read strictly
   through ``arrun.contract.schema.ModelInfo`` and written back unchanged, graph I/O names and shapes
   equal to the ones the metadata declares;
2. parity on onnxruntime (CPU) at each batch size, on a random sequence of ``steps`` elements (or the
   maximum length when shorter) with random condition ids where the model has them. The graph runs
   through arrun's own ``runtime.Stepper`` (the loop that ships) opened by ``arrun.session.open_model``,
   and the eager model through ``TorchStepper``, the same protocol:
   - step graph, teacher-forced from the initial state the metadata declares: logits vs the torch
     ``step`` rollout and vs torch ``forward`` (sequence_logits);
   - step graph, greedy: the tokens chosen by argmax are identical to torch's greedy ``step`` rollout;
   - step graph taking chunks (prefill): the sequence fed in chunks of ``step_tokens`` vs torch ``forward``;
   - step graph, rows at their own positions: row b restarts from its initial state at call
     ``inplace.row_offsets(B)[b]`` (after a stream of its own), the others running on; each row equals forward;
   a model with ring buffers (a windowed Transformer's KV cache, WaveNet's queues) is checked on at least
   2 * ``state_period`` + 1 positions, so every ring wraps twice;
   - full graph: logits vs torch ``forward``;
   - chunk graph: the elements it samples from given uniforms (in two chunks) are those the torch ``step``
     samples with ``arrun.sampling.sample_categorical`` from the same uniforms, fed the chunk's own draws;
     only a near tie (the uniform within 1e-5 of a CDF edge between the two draws) may differ;
   a vocoder gets random feature frames, the same for the graph and the model.
3. in place (``inplace.py``): which state tensors one buffer may hold, proved on the graph's structure and by
   onnxruntime (aliased rollout equal to separate buffers bit for bit); a failed proof of a structural
   candidate, or a file declaring a state in place that is not, raises ExportError.
   each within ``tolerance`` (max abs difference, float32, over the largest |output| where that exceeds 1: float32
   rounds relative to a value's size, and a source-filter vocoder's logits pass 150) and with identical argmax
   tokens.
   A mixture head's outputs (mixture parameters) are compared the same way; its greedy decision is the most
   likely component, and its greedy levels (that component's mean, rounded) may differ by one level, where a
   mean within tolerance of the other rounds the other way; so the graph's greedy picks are checked along
   torch's greedy path (teacher-forced), where such a difference cannot fork the two paths.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError

from artrain.checkpoint import load_checkpoint
from artrain.models import ARModel, family_call
from arrun.contract.errors import ARError, UsageError, first_line
from arrun.contract.schema import BATCH_DIM, ModelInfo, SchemaError
from arrun.kinds import kind_of
from arrun.runtime import ChunkRunner, ChunkSampler, StepRunner, Stepper, full_logits, prefill
from arrun.sampling import sample_categorical
from arrun.session import Model, open_model

from . import inplace
from .inplace import Schedule, StateVerdict, roll
from .probe import check_family

TOLERANCE = 1e-4


class ExportError(ARError):
    """Export or verification failed (exit code 1); the message says what and what to do next."""


@dataclass(frozen=True)
class Comparison:
    what: str              # e.g. 'onnx step vs torch forward'
    batch: int
    positions: int
    max_abs_diff: float
    token_mismatches: int  # positions whose argmax (greedy) token differs
    scale: float = 1.0     # the largest |output| compared, at least 1: the tolerance is relative to it

    def passed(self, tolerance: float) -> bool:
        return self.max_abs_diff <= tolerance * self.scale and self.token_mismatches == 0

    def line(self) -> str:
        chosen = "sampled" if "sampling" in self.what else "greedy"  # a chunk graph's draws, else argmax tokens
        differ = self.token_mismatches
        tokens = f"{differ} {chosen} tokens differ" if differ else f"{chosen} tokens identical"
        size = f" of outputs up to {self.scale:.3g}" if self.scale > 1 else ""
        return (f"{self.what:<29} batch {self.batch}: max |diff| {self.max_abs_diff:.1e}{size} over {self.positions} "
                f"positions, {tokens}")


@dataclass(frozen=True)
class VerifyReport:
    path: str
    family: str
    graph: str
    tolerance: float
    comparisons: tuple[Comparison, ...]
    in_place: tuple[StateVerdict, ...] = ()  # per state tensor: proved safe to alias, or why not

    @property
    def passed(self) -> bool:
        return all(c.passed(self.tolerance) for c in self.comparisons)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.comparisons)

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        return ([f"verification {verdict} (tolerance {self.tolerance:.0e} of the largest |output|, at least 1):"] + ["  " + c.line() for c in self.comparisons]
                + ["  " + v.line() for v in self.in_place])

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
    check_family(model, info)  # the family's own faults in one line, before any comparison
    try:
        runtime = open_model(Path(onnx_path), command="arexport verify")
    except UsageError as e:
        raise ExportError(f"arrun cannot load {name} ({e})") from None
    rng = np.random.default_rng(seed)
    comparisons = []
    with _one_torch_thread():
        for batch in batches:
            comparisons += _compare(runtime, model, rng, batch, steps)
    report = VerifyReport(name, info.family, info.graph, tolerance, tuple(comparisons))
    if not report.passed:
        worst = max(report.comparisons, key=lambda c: (not c.passed(tolerance), c.max_abs_diff))
        raise ParityError(f"{name} fails verification: {worst.line()} (tolerance {tolerance:.0e}); the graph does "
                          "not reproduce the model (is this the checkpoint it was exported from?): do not ship it, "
                          "report the figures", report)
    verdicts = prove_in_place(onnx_path, runtime, model.state_period, rng, batches, name)
    return VerifyReport(name, info.family, info.graph, tolerance, tuple(comparisons), tuple(verdicts))


def prove_in_place(onnx_path: Path | str, runtime: Model, state_period: int, rng: np.random.Generator,
                   batches: tuple[int, ...] = (1, 3), name: str | None = None) -> list[StateVerdict]:
    """Which states one buffer may hold (``inplace.prove``); ExportError when a structural candidate's aliased
    rollout differs, or the file declares a state in place that is not proved."""
    name, info = name or str(onnx_path), runtime.info
    try:
        verdicts = inplace.prove(runtime.session, onnx.load(onnx_path), info, state_period, rng, batches)
    except inplace.AliasingError as e:
        raise ExportError(f"{name} fails the in-place proof: {e}; the graph's structure allows one buffer but "
                          "onnxruntime disagrees: do not ship it, report the figures") from None
    proved = {v.name: v for v in verdicts}
    for spec in info.state:
        if spec.in_place and not proved[spec.name].in_place:
            raise ExportError(f"{name} declares state {spec.name!r} in place but it is not ({proved[spec.name].reason}); "
                              "a runtime would corrupt it: export it again")
    return verdicts


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
        kind_of(info, name)
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
    expected = {spec.input: [BATCH_DIM, *spec.shape] for spec in info.state}
    expected |= {spec.output: [BATCH_DIM, *spec.shape] for spec in info.state}
    for tensor, dims in expected.items():
        if values[tensor] != dims:
            raise ExportError(f"{name}: '{tensor}' has shape {values[tensor]}, the metadata declares {dims}; export it again")
    if not info.graph_io.samples and values[info.output_name][-1] != info.output_width:
        raise ExportError(f"{name}: {info.output_name} has shape {values[info.output_name]}, the head has "
                          f"{info.output_width} outputs per element; export it again")


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _check_pairing(model: ARModel, info: ModelInfo, name: str) -> None:
    """The model must be the one the file was exported from, as far as the metadata can tell."""
    c = model.config
    ours = (model.family, c.vocab_size, c.num_classes)
    if ours != (info.family, info.vocab_size, info.num_classes) or \
            (info.graph_io.stateful and tuple(replace(s, in_place=False) for s in info.state) != model.state_spec()):
        raise UsageError(f"{name} was not exported from this checkpoint (the file: {info.family}, {info.vocab_size} tokens, "
                         f"{info.num_classes} classes; the checkpoint: {ours[0]}, {ours[1]} tokens, {ours[2]} classes"
                         "); give the checkpoint it came from")


@contextlib.contextmanager
def _one_torch_thread():
    """Steps of a few rows run fastest on one thread; on a busy machine a thread pool is 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class _Case:
    """One batch size's inputs and the eager model's forward outputs, shared by the comparisons of every kind."""
    runtime: Model
    model: ARModel
    rng: np.random.Generator
    T: int                       # positions compared
    x: np.ndarray                # (B, L) the random sequence; L = the model's fixed length, else T
    cond: np.ndarray | None      # (B,) class ids
    frames: np.ndarray | None    # (B, F, M) a vocoder's features
    forward: np.ndarray          # (B, L, W) torch sequence_logits

    @property
    def batch(self) -> int:
        return self.x.shape[0]


def _compare(runtime: Model, model: ARModel, rng: np.random.Generator, batch: int, steps: int) -> list[Comparison]:
    """The comparisons of the graph's kind (``_COMPARISONS``) at one batch size on one random sequence (and
    condition, and features)."""
    info = runtime.info
    T = min(steps, info.max_length) if info.max_length else max(steps, 2 * model.state_period + 1)
    L = model.fixed_length or T  # a model with a fixed length (whole images) takes only that in forward
    x = rng.integers(0, info.vocab_size, (batch, L), dtype=np.int64)
    cond = rng.integers(0, info.num_classes, batch, dtype=np.int64) if info.num_classes else None
    frames, local = None, {}
    if info.features:  # log-mel-like frames: around ln(1e-2), spread over the floor .. loud range
        shape = (batch, info.features.frames(L), info.features.n_mels)  # (B, F, M)
        frames = (rng.standard_normal(shape) * 2 - 5).astype(np.float32)
        local["features"] = torch.from_numpy(frames)
    with torch.no_grad(), family_call(model, "sequence_logits"):
        forward = model.sequence_logits(torch.from_numpy(x), _tensor(cond), **local).numpy()  # (B, L, V)
    return _COMPARISONS[info.graph](_Case(runtime, model, rng, T, x, cond, frames, forward))


def _compare_full(case: _Case) -> list[Comparison]:
    """The full graph's outputs vs torch forward."""
    got = full_logits(case.runtime, case.x, case.cond, case.frames)
    return [comparison("onnx full vs torch forward", got, case.forward, case.runtime.info.head.decision)]


def _compare_step(case: _Case) -> list[Comparison]:
    """The step graph teacher-forced vs the torch step and forward, greedy vs torch greedy, and prefill."""
    info, B, T, x, cond, frames = case.runtime.info, case.batch, case.T, case.x, case.cond, case.frames
    # the greedy decision compared (``Head.decision``): the argmax level, or a mixture's most likely component
    # (its mean is rounded to a level, so a difference within tolerance may move the fed-back level by one)
    pick, slack, greedy_level = info.head.decision, info.head.greedy_slack, info.head.greedy
    onnx_step, torch_step, start = Stepper(case.runtime, B), TorchStepper(case.model, B), info.start_token
    onnx_logits, _ = rollout(onnx_step, start, cond, x[:, :T], features=frames)
    torch_logits, _ = rollout(torch_step, start, cond, x[:, :T], features=frames)
    torch_greedy, torch_tokens = rollout(torch_step, start, cond, None, T, features=frames, pick=greedy_level)
    if slack:  # on torch's greedy path: a one-level rounding difference fed back would fork the paths
        onnx_greedy, _ = rollout(onnx_step, start, cond, torch_tokens, features=frames)
        onnx_tokens = greedy_level(onnx_greedy)
    else:
        onnx_greedy, onnx_tokens = rollout(onnx_step, start, cond, None, T, features=frames, pick=greedy_level)
    greedy = comparison("onnx greedy vs torch greedy", onnx_greedy, torch_greedy, pick)
    comparisons = [comparison("onnx step vs torch step", onnx_logits, torch_logits, pick),
                   comparison("onnx step vs torch forward", onnx_logits, case.forward[:, :T], pick),
                   replace(greedy, token_mismatches=int((np.abs(onnx_tokens - torch_tokens) > slack).sum()))]
    comparisons.append(_compare_rows(case))
    if info.step_tokens > 1:
        onnx_step.reset(cond)
        inputs = np.concatenate([np.full((B, 1), start, np.int64), x[:, :T - 1]], axis=1)  # (B, T) fed
        comparisons.append(comparison("onnx prefill vs torch forward", prefill(onnx_step, inputs, np.zeros(B, np.int64)), case.forward[:, :T], pick))
    return comparisons


def _compare_rows(case: _Case) -> Comparison:
    """Rows at different positions: row b runs a stream of its own, then restarts from its initial state at
    call ``inplace.row_offsets(B)[b]`` and is fed its sequence teacher-forced (chunks of 1, S, 2 elements where the graph
    takes chunks); the outputs of that stream's T positions equal forward for each row."""
    info, B, T = case.runtime.info, case.batch, case.T
    sizes = (1, info.step_tokens, 2) if info.step_tokens > 1 else (1,)
    calls = T + max(inplace.row_offsets(B))
    schedule = Schedule(B, calls, info.max_length, sizes)
    fed = np.full((B, calls * max(sizes) + 1), info.start_token, np.int64)  # fed[b, p]: row b's element p - 1
    fed[:, 1:T + 1] = case.x[:, :T]
    frames = case.frames
    if frames is not None and frames.shape[1] < info.features.frames(fed.shape[1]):  # past T: the last frame
        pad = info.features.frames(fed.shape[1]) - frames.shape[1]
        frames = np.concatenate([frames, np.repeat(frames[:, -1:], pad, axis=1)], axis=1)  # (B, F', M)
    got = np.full((B, T, info.output_width), np.nan, np.float32)  # a position never reached fails the check
    joined = np.zeros(B, bool)  # running the stream compared (from its restart at its offset to its next restart)
    outputs = roll(case.runtime.session, info, schedule, fed, case.cond, frames)
    for call, ((size, pos, restart), out) in enumerate(zip(schedule, outputs)):
        joined = np.where(restart, np.array(schedule.offsets) == call, joined)
        out = out[0].reshape(B, size, info.output_width)  # (B, s, W)
        for b in np.flatnonzero(joined):
            keep = min(size, T - pos[b])
            got[b, pos[b]:pos[b] + max(keep, 0)] = out[b, :max(keep, 0)]
    return comparison("onnx rows joining vs forward", got, case.forward[:, :T], info.head.decision)


def _compare_chunk(case: _Case) -> list[Comparison]:
    """The chunk graph's samples (in two calls) vs what the torch ``step`` samples from the same uniforms, fed the
    chunk's own draws (teacher-forced, so one difference cannot fork the two paths). A draw may differ only at a
    near tie: the uniform within ``NEAR_TIE`` of an edge of torch's CDF between the two levels, where logits equal
    to float32 rounding can fall either side; such draws are counted in the comparison's name."""
    B, T, cond, frames, start = case.batch, case.T, case.cond, case.frames, case.runtime.info.start_token
    uniforms = case.rng.random((B, T))  # (B, T)
    sampler = ChunkSampler(case.runtime, B)
    sampler.reset(cond, frames)
    cut = T // 3
    first = sampler.sample(np.full(B, start, np.int64), np.zeros(B, np.int64), uniforms[:, :cut])  # (B, cut)
    got = np.concatenate([first, sampler.sample(first[:, -1], np.full(B, cut, np.int64), uniforms[:, cut:])], axis=1)
    torch_step = TorchStepper(case.model, B)
    torch_step.reset(cond, frames)
    mismatches = ties = 0
    for t in range(T):
        previous = got[:, t - 1] if t else np.full(B, start, np.int64)
        logits = torch_step.step(previous, np.full(B, t, np.int64)).astype(np.float64)  # (B, V)
        want = sample_categorical(logits, uniforms[:, t])  # (B,)
        for b in np.nonzero(want != got[:, t])[0]:
            if _near_tie(logits[b], uniforms[b, t], want[b], got[b, t]):
                ties += 1
            else:
                mismatches += 1
    return [Comparison(f"onnx chunk vs torch sampling ({ties} near ties)", B, T, 0.0, mismatches)]


NEAR_TIE = 1e-5  # a uniform this close to a CDF edge may be drawn either side by logits equal to rounding


def _near_tie(logits: np.ndarray, uniform: float, a: int, b: int) -> bool:
    """Whether every CDF edge between levels ``a`` and ``b`` lies within ``NEAR_TIE`` of ``uniform``
    (logits (V,) float64; the softmax's CDF normalised to 1)."""
    cdf = np.cumsum(np.exp(logits - logits.max()))
    cdf /= cdf[-1]
    low, high = min(a, b), max(a, b)
    edges = cdf[low:high]  # the edges crossed between the two levels
    return bool(np.all(np.abs(edges - uniform) < NEAR_TIE))


_COMPARISONS = {"step": _compare_step, "full": _compare_full, "chunk": _compare_chunk}  # graph kind -> its proof


def comparison(what: str, got: np.ndarray, want: np.ndarray, pick=lambda out: out.argmax(-1)) -> Comparison:
    """got, want (B, T, W) outputs -> max abs difference, how many greedy tokens (``pick``: the head's
    greedy choice, argmax for a softmax) differ, and the scale: the largest finite |want|, at least 1."""
    mismatches = int((pick(got) != pick(want)).sum())
    scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0.0)))
    return Comparison(what, got.shape[0], got.shape[1], float(np.abs(got - want).max()), mismatches, scale)


class TorchStepper(ChunkRunner):
    """The eager model behind arrun's step protocol (``runtime.StepRunner``): reset / step -> logits (B, V)."""

    def __init__(self, model: ARModel, batch_size: int):
        self.model, self.batch_size, self.chunked = model, batch_size, model.step_tokens > 1

    @torch.no_grad()
    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        self._state, self._cond = self.model.init_state(self.batch_size), _tensor(condition)
        self._vectors = None if features is None else self.model.frame_vectors(torch.from_numpy(features))  # (B, F, D)

    @torch.no_grad()
    def chunk(self, tokens: np.ndarray, position) -> np.ndarray:
        """tokens (B,) or (B, s); position an int (every row) or (B,) int64: row b's first element's position."""
        pos = np.broadcast_to(np.asarray(position, np.int64), (self.batch_size,)).copy()  # (B,)
        local = {}
        if self._vectors is not None:  # each row's own frame
            local["features"] = self._vectors[np.arange(self.batch_size), pos // self.model.feature_spec.hop]  # (B, D)
        with family_call(self.model, "step"):
            logits, self._state = self.model.step(torch.from_numpy(tokens), torch.from_numpy(pos), self._state,
                                                  self._cond, **local)
        return logits.numpy()


def rollout(stepper: StepRunner, start_token: int, condition: np.ndarray | None, tokens: np.ndarray | None,
            steps: int | None = None, features: np.ndarray | None = None,
            pick=lambda out: out.argmax(-1)) -> tuple[np.ndarray, np.ndarray]:
    """Reset ``stepper`` and roll it from ``start_token``: teacher-forced on tokens (B, T), or greedy (``pick``,
    argmax by default, fed back) for ``steps`` steps when tokens is None -> (outputs (B, T, W), the tokens fed
    after each step)."""
    B, T = tokens.shape if tokens is not None else (stepper.batch_size, steps)
    stepper.reset(condition, features)
    token = np.full(B, start_token, np.int64)
    logits, fed = [], []
    for t in range(T):
        out = stepper.step(token, np.full(B, t, np.int64)).copy()  # (B, V); the runtime's buffer is overwritten by the next step
        token = tokens[:, t] if tokens is not None else pick(out)
        logits.append(out)
        fed.append(token)
    return np.stack(logits, axis=1), np.stack(fed, axis=1)


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)
