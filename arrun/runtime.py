"""The one step loop: every consumer (``generate``, ``streams``, ``score``, ``bench``, ``arexport verify``,
``benchmarks/``) drives a model through this protocol, so what is measured is what users run.

    stepper.reset(condition, features)     # every row to the initial state the metadata declares; condition (B,)
                                           # or None, features (B, F, M) frames of a vocoder (or None)
    stepper.reset_rows(rows, condition, features)  # only rows (k,): their state to the initial state, and their
                                           # condition (k,) / features (k, F, M) where given (a stream joins)
    logits = stepper.step(tokens, position)   # tokens (B,) int64, row b's element at position[b] - 1 -> (B, V)
    logits = stepper.chunk(tokens, position)  # tokens (B, s), s <= info.step_tokens -> (B, s, V), a new array
    logits = prefill(stepper, tokens, position)  # tokens (B, T), any T, in chunks -> (B, T, V)
    last = prefill_rows(stepper, inputs)    # inputs: B arrays of different lengths, each row from position 0

``position`` is (B,) int64, one position per row (format 6): rows are independent, so each may be at its own
position (prompts of different lengths, streams that joined at different times). A scalar is refused
(``RowError``): an old caller passing one position for the batch is told to pass one per row.

``Stepper`` is the implementation that ships: state lives in preallocated OrtValues fed back by name through
two IO bindings, so the graph's inputs and outputs are never reallocated and, on CUDA, the state never
leaves the device; only the logits are copied to the host. A state tensor the metadata declares ``in_place``
(arexport proved its one-slot write safe to alias) is ONE buffer bound as both its input and its output, so
the graph writes its new slot into it and nothing is copied; every other state tensor has two buffers, bound
A -> B, then B -> A. ``PlainStepper`` is the same protocol over plain ``session.run`` (state through numpy),
the baseline the benchmarks compare with. ``full_logits`` runs the full graph, ``ChunkSampler`` a chunk graph
(N elements sampled per call). A new backend is one class with ``reset``, ``reset_rows`` and ``step``.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import onnxruntime as ort

from .contract.errors import UsageError
from .contract.schema import (CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT, TOKENS_OUTPUT,
                              UNIFORMS_INPUT, ModelInfo)
from .session import Model


class RowError(UsageError, ValueError):
    """A call that does not fit the batch's rows: a position that is not one per row, a full batch joined, a
    slot left twice. A ValueError for Python callers; a UsageError, so the CLI prints it as one line (exit 2)."""


class StepRunner(Protocol):
    info: ModelInfo
    batch_size: int

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None: ...

    def reset_rows(self, rows: np.ndarray, condition: np.ndarray | None = None,
                   features: np.ndarray | None = None) -> None: ...

    def step(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray: ...

    def chunk(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray: ...


def check_positions(position, batch_size: int) -> np.ndarray:
    """``position`` must be an integer array (B,), one position per row -> it; RowError otherwise."""
    if isinstance(position, np.ndarray) and position.shape == (batch_size,) and position.dtype.kind in "iu":
        return position
    got = f"an array of shape {position.shape} ({position.dtype})" if isinstance(position, np.ndarray) else \
        f"{type(position).__name__} {position!r}"[:80]
    raise RowError(f"position must hold one position per row, an int64 array of shape ({batch_size},), got {got}; "
                   f"pass np.full({batch_size}, t) for rows all at position t")


class ChunkRunner:
    """``step`` in terms of ``chunk`` for runners with no buffers of their own: a graph that takes chunks
    (``chunked``) gets a chunk of one element, whose logits (B, 1, V) become (B, V)."""
    chunked: bool

    def step(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
        if self.chunked:
            return self.chunk(tokens[:, None], position)[:, 0]
        return self.chunk(tokens, position)


def prefill(runner: StepRunner, tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Feed tokens (B, T), row b's at positions position[b]..position[b]+T-1 -> logits (B, T, V): in calls of up
    to ``info.step_tokens`` elements where the graph takes chunks, else one step per element."""
    S, T = runner.info.step_tokens, tokens.shape[1]
    position = check_positions(position, len(tokens)).astype(np.int64)
    if S == 1:
        return np.stack([runner.step(tokens[:, t], position + t).copy() for t in range(T)], axis=1)
    return np.concatenate([runner.chunk(tokens[:, i:i + S], position + i) for i in range(0, T, S)], axis=1)


def prefill_rows(runner: StepRunner, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Feed row b its own inputs[b] (n_b,) int64 at positions 0..n_b-1 -> each row's output at its last input
    (B, W), a new array. The runner must have been reset (``reset``) with the rows' conditions and features.

    Rows of different lengths are right-aligned: row b starts (``reset_rows``) at call step N - n_b, N = max n_b,
    so every row's last input is in the last call and the rows come out at their own positions n_b. Before its
    start a row idles at position 0 on the start symbol. Calls take up to ``step_tokens`` elements each (the
    rows at their own positions) and never straddle a row's start; equal lengths are one plain ``prefill``."""
    B, S = runner.batch_size, runner.info.step_tokens
    lengths = np.array([len(x) for x in inputs], np.int64)  # (B,)
    if len(lengths) != B or lengths.min() < 1:
        raise RowError(f"prefill_rows takes one non-empty input per row ({B}), got {len(lengths)} "
                       f"of lengths {lengths.tolist()[:8]}")
    N = int(lengths.max())
    start = N - lengths  # (B,) the call step where each row's first input goes
    padded = np.full((B, N), runner.info.start_token, np.int64)  # (B, N) right-aligned
    for b, x in enumerate(inputs):
        padded[b, start[b]:] = x
    cuts = sorted({*start.tolist(), N})
    out = None
    for a, e in zip(cuts, cuts[1:]):
        if a > 0:  # rows starting here: the rows already at work keep their state
            runner.reset_rows(np.flatnonzero(start == a))
        for i in range(a, e, S):
            s = min(S, e - i)
            position = np.where(start <= i, i - start, 0)  # (B,) idle rows at 0
            out = runner.chunk(padded[:, i:i + s], position)[:, -1] if S > 1 else runner.step(padded[:, i], position)
    return np.array(out)


def with_feature_rows(frames: np.ndarray | None, rows: np.ndarray, features, batch_size: int) -> np.ndarray:
    """The (B, F, M) frames with ``rows`` replaced by ``features`` (k, F', M), zero frames after them; F grows to
    fit the longest. A new array where it must grow or ``frames`` is read-only, else ``frames`` written."""
    features = np.asarray(features, np.float32)
    F = max(features.shape[1], 0 if frames is None else frames.shape[1])
    if frames is None or frames.shape[1] < F or not frames.flags.writeable:
        grown = np.zeros((batch_size, F, features.shape[2]), np.float32)
        if frames is not None:
            grown[:, :frames.shape[1]] = frames
        frames = grown
    frames[rows] = 0
    frames[rows, :features.shape[1]] = features
    return frames


class _BoundState:
    """The state on the model's device, bound to the graph's state inputs and outputs through two IO bindings
    (one per parity): an ``in_place`` state tensor is one buffer bound as both its input and its output; the
    others have two buffers, bound A -> B and B -> A, so each call's outputs are the next call's inputs and
    nothing is reallocated or copied back. On the CPU every buffer is a numpy array the OrtValue wraps, so a
    row reset is a numpy write; on CUDA a row reset goes through the host (``reset_rows``)."""

    def __init__(self, model: Model, batch_size: int):
        info, session, device = model.info, model.session, model.provider
        self.info, self.batch_size, self._session, self._device = info, batch_size, session, device
        self._rows = np.arange(batch_size)
        self._position = np.zeros(batch_size, np.int64)  # (B,) bound every call
        self._host: list[list[np.ndarray | None]] = [[], []]  # CPU: the arrays behind the OrtValues, per parity
        sets: list[list[ort.OrtValue]] = [[], []]  # sets[p][i]: state i's input buffer at parity p
        for spec in info.state:
            pair = [spec.initial(batch_size) for _ in range(1 if spec.in_place else 2)]
            if device == "cpu":
                values = [ort.OrtValue.ortvalue_from_numpy(x, "cpu", 0) for x in pair]
            else:
                values = [ort.OrtValue.ortvalue_from_shape_and_type(x.shape, x.dtype, device, 0) for x in pair]
                for value, x in zip(values, pair):
                    value.update_inplace(x)
                pair = [None] * len(pair)
            for p in range(2):
                sets[p].append(values[p % len(values)])
                self._host[p].append(pair[p % len(pair)])
        self._sets = sets
        self._bindings = []
        for p in range(2):
            io = session.io_binding()
            for i, spec in enumerate(info.state):
                io.bind_ortvalue_input(spec.input, sets[p][i])
                io.bind_ortvalue_output(spec.output, sets[1 - p][i])  # the same OrtValue for an in_place state
            self._bindings.append(io)
        self._parity = 0
        self._condition = np.zeros(batch_size, np.int64)  # kept alive while bound
        self._features: np.ndarray | None = None  # (B, F, M): each call binds the frames of its positions
        if info.num_classes:
            self._bind_condition()

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        self._parity = 0
        for i, spec in enumerate(self.info.state):
            self._reset_state(i, spec, None)
        if self.info.num_classes:
            self._condition = np.array(condition, dtype=np.int64).reshape(self.batch_size)
            self._bind_condition()
        self._features = features

    def reset_rows(self, rows: np.ndarray, condition: np.ndarray | None = None,
                   features: np.ndarray | None = None) -> None:
        """Rows (k,) back to the initial state; their condition (k,) and features (k, F, M) replaced where given
        (kept otherwise). The other rows are untouched: a stream joins a running batch."""
        rows = np.asarray(rows, np.int64)
        for i, spec in enumerate(self.info.state):
            self._reset_state(i, spec, rows)
        if condition is not None and self.info.num_classes:
            self._condition = self._condition.copy()  # a new array: the old one may still be bound
            self._condition[rows] = condition
            self._bind_condition()
        if features is not None:
            self._features = with_feature_rows(self._features, rows, features, self.batch_size)

    def _reset_state(self, i: int, spec, rows: np.ndarray | None) -> None:
        """State i's input buffer of the next call, at ``rows`` (None: all), to its initial value."""
        where = slice(None) if rows is None else rows
        host = self._host[self._parity][i]
        if host is not None:  # CPU: the OrtValue wraps this array
            host[where] = spec.init
            return
        value = self._sets[self._parity][i]
        if rows is None:
            value.update_inplace(spec.initial(self.batch_size))
        else:  # on the device: through the host, O(state) per join
            x = value.numpy()
            x[rows] = spec.init
            value.update_inplace(x)

    def _bind_condition(self) -> None:
        for io in self._bindings:
            io.bind_cpu_input(CONDITION_INPUT, self._condition)

    def _run_bound(self, io: ort.IOBinding, position: np.ndarray) -> None:
        """Bind the position (checked by the caller: ``check_positions``), run, and swap the state sets."""
        if self.info.uses_position:
            self._position[:] = position
            io.bind_cpu_input(POSITION_INPUT, self._position)
        self._session.run_with_iobinding(io)
        if self._device != "cpu":
            io.synchronize_outputs()
        self._parity ^= 1


class Stepper(_BoundState):
    """IO-binding step loop for a fixed batch size. ``step`` returns the head's outputs (B, W) (logits, W = V,
    or mixture parameters: ``ModelInfo.output_width``), a view into a buffer the next step overwrites."""

    def __init__(self, model: Model, batch_size: int):
        super().__init__(model, batch_size)
        info = self.info
        chunked = info.step_tokens > 1  # input_ids (B, s), logits (B, s, W): one-element steps use s = 1
        self._logits = np.zeros((batch_size, *[1] * chunked, info.output_width), np.float32)  # host buffer
        self.logits = self._logits.reshape(batch_size, info.output_width)  # (B, W) view of it
        self._tokens = np.zeros((batch_size, *[1] * chunked), np.int64)  # (B,) or (B, 1) input_ids
        self._tokens_flat = self._tokens.reshape(batch_size)  # (B,) view: step copies into it
        self._frame = np.zeros((batch_size, info.features.n_mels if info.features else 0), np.float32)  # (B, M)
        for io in self._bindings:
            self._bind_logits(io)

    def _bind_logits(self, io: ort.IOBinding) -> None:
        io.bind_output(self.info.output_name, "cpu", 0, np.float32, list(self._logits.shape), self._logits.ctypes.data)

    def step(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
        self._tokens_flat[:] = tokens
        self._run(self._bindings[self._parity], self._tokens, position)
        return self.logits

    def chunk(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
        """tokens (B, s) -> outputs (B, s, W) in a new array (the graph must take chunks: step_tokens >= s)."""
        logits = np.empty((*tokens.shape, self.info.output_width), np.float32)  # (B, s, W)
        io = self._bindings[self._parity]
        io.bind_output(self.info.output_name, "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        try:
            self._run(io, np.ascontiguousarray(tokens, dtype=np.int64), position)
        finally:
            self._bind_logits(io)
        return logits

    def _run(self, io: ort.IOBinding, tokens: np.ndarray, position: np.ndarray) -> None:
        # Rebound every step: on CUDA binding a host array is what copies it to the device.
        position = check_positions(position, self.batch_size)
        io.bind_cpu_input(TOKEN_INPUT, tokens)
        if self.info.features:
            self._frame[:] = self._features[self._rows, position // self.info.features.hop]  # (B, M) row b's frame
            io.bind_cpu_input(FEATURES_INPUT, self._frame)
        self._run_bound(io, position)


class PlainStepper(ChunkRunner):
    """The same protocol over ``session.run``: every state output fed back as the next input by name."""

    def __init__(self, model: Model, batch_size: int):
        self.info, self.batch_size, self._session = model.info, batch_size, model.session
        self.chunked = model.info.step_tokens > 1
        self._outputs = model.info.output_names()
        self._feeds: dict[str, np.ndarray] = {}
        self._features: np.ndarray | None = None

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        self._feeds = {s.input: s.initial(self.batch_size) for s in self.info.state}
        if self.info.num_classes:
            self._feeds[CONDITION_INPUT] = np.ascontiguousarray(condition, dtype=np.int64)
        self._features = features

    def reset_rows(self, rows: np.ndarray, condition: np.ndarray | None = None,
                   features: np.ndarray | None = None) -> None:
        for s in self.info.state:
            self._feeds[s.input] = x = self._feeds[s.input].copy()  # session.run's outputs may be read-only
            x[rows] = s.init
        if condition is not None and self.info.num_classes:
            self._feeds[CONDITION_INPUT] = c = self._feeds[CONDITION_INPUT].copy()
            c[rows] = condition
        if features is not None:
            self._features = with_feature_rows(self._features, rows, features, self.batch_size)

    def chunk(self, tokens: np.ndarray, position: np.ndarray) -> np.ndarray:
        position = check_positions(position, self.batch_size)
        self._feeds[TOKEN_INPUT] = tokens
        if self.info.uses_position:
            self._feeds[POSITION_INPUT] = position.astype(np.int64, copy=False)
        if self.info.features:
            self._feeds[FEATURES_INPUT] = self._features[np.arange(self.batch_size), position // self.info.features.hop]
        logits, *state = self._session.run(self._outputs, self._feeds)
        for spec, value in zip(self.info.state, state):
            self._feeds[spec.input] = value
        return logits


def full_logits(model: Model, tokens: np.ndarray, condition: np.ndarray | None = None,
                features: np.ndarray | None = None) -> np.ndarray:
    """The full graph: tokens (B, T) int64 [+ condition (B,)] [+ features (B, F, M)] -> outputs (B, T, W) in one run."""
    feeds = {TOKEN_INPUT: tokens}
    if condition is not None:
        feeds[CONDITION_INPUT] = condition
    if features is not None:
        feeds[FEATURES_INPUT] = np.ascontiguousarray(features, dtype=np.float32)
    return model.session.run([model.info.output_name], feeds)[0]


class ChunkSampler(_BoundState):
    """A chunk graph behind IO bindings (state fed back as in ``Stepper``): ``sample(previous, position (B,),
    uniforms (B, N))`` -> row b's N elements at position[b]..position[b]+N-1 (B, N) int64, a new array;
    ``previous`` (B,) is each row's element at position - 1 (the start symbol at 0). A vocoder's rows get their
    own frames: frame f of row b is frame position[b] // hop + f of its features (the last one repeated past
    their end, as for an idle row)."""

    def sample(self, previous: np.ndarray, position: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        io, info = self._bindings[self._parity], self.info
        position = check_positions(position, self.batch_size)
        tokens = np.empty(uniforms.shape, np.int64)  # (B, N)
        previous = np.ascontiguousarray(previous, dtype=np.int64)  # the bound arrays live until the run ends
        uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
        io.bind_cpu_input(TOKEN_INPUT, previous)
        if info.features:
            hop, N = info.features.hop, tokens.shape[1]
            first = position // hop  # (B,)
            F = int(((position + N - 1) // hop - first).max()) + 1  # frames the furthest-reaching row needs
            index = np.minimum(first[:, None] + np.arange(F), self._features.shape[1] - 1)  # (B, F)
            frames = np.ascontiguousarray(self._features[self._rows[:, None], index])
            io.bind_cpu_input(FEATURES_INPUT, frames)  # (B, F, M) each row's frames from its own position
        io.bind_cpu_input(UNIFORMS_INPUT, uniforms)
        io.bind_output(TOKENS_OUTPUT, "cpu", 0, np.int64, list(tokens.shape), tokens.ctypes.data)
        self._run_bound(io, position)
        return tokens
