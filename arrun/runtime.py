"""The one step loop: every consumer (``generate``, ``score``, ``bench``, ``arexport verify``, ``benchmarks/``)
drives a model through this protocol, so what is measured is what users run.

    stepper.reset(condition, features)     # the initial state the metadata declares; condition (B,) or None,
                                           # features (B, F, M) frames of a vocoder (or None)
    logits = stepper.step(tokens, position)  # tokens (B,) int64: the elements at position - 1 -> (B, V)
    logits = stepper.chunk(tokens, position)  # tokens (B, s), s <= info.step_tokens -> (B, s, V), a new array
    logits = prefill(stepper, tokens, position)  # tokens (B, T), any T, in chunks -> (B, T, V)

``Stepper`` is the implementation that ships: state lives in preallocated OrtValues fed back by name through
two IO bindings (A -> B, then B -> A), so the graph's inputs and outputs are never reallocated and, on CUDA,
the state never leaves the device; only the logits are copied to the host. ``PlainStepper`` is the same
protocol over plain ``session.run`` (state through numpy), the baseline the benchmarks compare with.
``full_logits`` runs the full graph, ``ChunkSampler`` a chunk graph (N elements sampled per call). A new
backend is one class with ``reset`` and ``step``.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import onnxruntime as ort

from .contract.schema import (CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT, TOKENS_OUTPUT,
                              UNIFORMS_INPUT, ModelInfo)
from .session import Model


class StepRunner(Protocol):
    info: ModelInfo
    batch_size: int

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None: ...

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray: ...

    def chunk(self, tokens: np.ndarray, position: int) -> np.ndarray: ...


class ChunkRunner:
    """``step`` in terms of ``chunk`` for runners with no buffers of their own: a graph that takes chunks
    (``chunked``) gets a chunk of one element, whose logits (B, 1, V) become (B, V)."""
    chunked: bool

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        if self.chunked:
            return self.chunk(tokens[:, None], position)[:, 0]
        return self.chunk(tokens, position)


def prefill(runner: StepRunner, tokens: np.ndarray, position: int = 0) -> np.ndarray:
    """Feed tokens (B, T) at positions position..position+T-1 -> logits (B, T, V): in calls of up to
    ``info.step_tokens`` elements where the graph takes chunks, else one step per element."""
    S, T = runner.info.step_tokens, tokens.shape[1]
    if S == 1:
        return np.stack([runner.step(tokens[:, t], position + t).copy() for t in range(T)], axis=1)
    return np.concatenate([runner.chunk(tokens[:, i:i + S], position + i) for i in range(0, T, S)], axis=1)


class _BoundState:
    """Two preallocated state sets on the model's device, bound A -> B and B -> A to the graph's state inputs and
    outputs, so each call's outputs are the next call's inputs and nothing is reallocated or copied back."""

    def __init__(self, model: Model, batch_size: int):
        info, session, device = model.info, model.session, model.provider
        self.info, self.batch_size, self._session, self._device = info, batch_size, session, device
        self._position = np.zeros((), np.int64)
        self._init = [s.initial(batch_size) for s in info.state]
        sets = [[ort.OrtValue.ortvalue_from_shape_and_type(x.shape, x.dtype, device, 0) for x in self._init]
                for _ in range(2)]
        self._state = sets[0]  # the inputs of the first call after reset
        self._bindings = []
        for a, b in (sets, sets[::-1]):
            io = session.io_binding()
            for spec, x_in, x_out in zip(info.state, a, b):
                io.bind_ortvalue_input(spec.input, x_in)
                io.bind_ortvalue_output(spec.output, x_out)
            self._bindings.append(io)
        self._parity = 0

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        for value, init in zip(self._state, self._init):
            value.update_inplace(init)
        self._parity = 0
        if self.info.num_classes:
            self._condition = np.ascontiguousarray(condition, dtype=np.int64)  # kept alive while bound
            for io in self._bindings:
                io.bind_cpu_input(CONDITION_INPUT, self._condition)
        self._features = features  # (B, F, M): each call binds the frames of its positions

    def _run_bound(self, io: ort.IOBinding, position: int) -> None:
        """Bind the position, run, and swap the state sets."""
        if self.info.uses_position:
            self._position[()] = position
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

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        self._tokens_flat[:] = tokens
        self._run(self._bindings[self._parity], self._tokens, position)
        return self.logits

    def chunk(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (B, s) -> outputs (B, s, W) in a new array (the graph must take chunks: step_tokens >= s)."""
        logits = np.empty((*tokens.shape, self.info.output_width), np.float32)  # (B, s, W)
        io = self._bindings[self._parity]
        io.bind_output(self.info.output_name, "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        try:
            self._run(io, np.ascontiguousarray(tokens, dtype=np.int64), position)
        finally:
            self._bind_logits(io)
        return logits

    def _run(self, io: ort.IOBinding, tokens: np.ndarray, position: int) -> None:
        # Rebound every step: on CUDA binding a host array is what copies it to the device.
        io.bind_cpu_input(TOKEN_INPUT, tokens)
        if self.info.features:
            self._frame[:] = self._features[:, position // self.info.features.hop]  # (B, M)
            io.bind_cpu_input(FEATURES_INPUT, self._frame)
        self._run_bound(io, position)


class PlainStepper(ChunkRunner):
    """The same protocol over ``session.run``: every state output fed back as the next input by name."""

    def __init__(self, model: Model, batch_size: int):
        self.info, self.batch_size, self._session = model.info, batch_size, model.session
        self.chunked = model.info.step_tokens > 1
        self._outputs = model.info.output_names()
        self._feeds: dict[str, np.ndarray] = {}

    def reset(self, condition: np.ndarray | None = None, features: np.ndarray | None = None) -> None:
        self._feeds = {s.input: s.initial(self.batch_size) for s in self.info.state}
        if self.info.num_classes:
            self._feeds[CONDITION_INPUT] = np.ascontiguousarray(condition, dtype=np.int64)
        self._features = features

    def chunk(self, tokens: np.ndarray, position: int) -> np.ndarray:
        self._feeds[TOKEN_INPUT] = tokens
        if self.info.uses_position:
            self._feeds[POSITION_INPUT] = np.array(position, np.int64)
        if self.info.features:
            self._feeds[FEATURES_INPUT] = np.ascontiguousarray(self._features[:, position // self.info.features.hop])
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
    """A chunk graph behind IO bindings (state fed back as in ``Stepper``): ``sample(previous, position,
    uniforms (B, N))`` -> the N elements at position..position+N-1 (B, N) int64, a new array; ``previous`` (B,)
    is the element at position - 1 (the start symbol at 0). Positions of consecutive calls follow on."""

    def sample(self, previous: np.ndarray, position: int, uniforms: np.ndarray) -> np.ndarray:
        io, info = self._bindings[self._parity], self.info
        tokens = np.empty(uniforms.shape, np.int64)  # (B, N)
        previous = np.ascontiguousarray(previous, dtype=np.int64)  # the bound arrays live until the run ends
        uniforms = np.ascontiguousarray(uniforms, dtype=np.float64)
        io.bind_cpu_input(TOKEN_INPUT, previous)
        if info.features:
            hop = info.features.hop
            frames = np.ascontiguousarray(self._features[:, position // hop:(position + tokens.shape[1] - 1) // hop + 1])
            io.bind_cpu_input(FEATURES_INPUT, frames)  # (B, F, M) the chunk's frames
        io.bind_cpu_input(UNIFORMS_INPUT, uniforms)
        io.bind_output(TOKENS_OUTPUT, "cpu", 0, np.int64, list(tokens.shape), tokens.ctypes.data)
        self._run_bound(io, position)
        return tokens
