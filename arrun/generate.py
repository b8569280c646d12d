"""The step loop: state lives in preallocated buffers fed back by name, sampling happens in numpy.

Shapes (B = batch): input_ids (B,) int64, position () int64, condition (B,) int64, state tensors
(B, ...) float32, logits (B, V) float32. Each state output is the next step's input of the same
StateSpec; two IO bindings (A -> B and B -> A) alternate, so the graph's inputs and outputs are never
reallocated and, on CUDA, the state never leaves the device: only the logits are copied to the host.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import onnxruntime as ort

from .codecs import encode_text
from .errors import UsageError
from .sampling import SamplingOptions, sample, sample_rngs
from .schema import CONDITION_INPUT, LOGITS_OUTPUT, POSITION_INPUT, TOKEN_INPUT, ModelInfo
from .session import Model

MAX_BATCH = 64  # default batch: all samples at once, up to this many


class Stepper:
    """Runs the step graph for a fixed batch size. ``reset(condition)`` before each sequence, then
    ``step(tokens, position)`` -> logits (B, V), a view into a buffer overwritten by the next step."""

    def __init__(self, model: Model, batch_size: int):
        info, session, device = model.info, model.session, model.provider
        self.info, self.batch_size, self._session, self._device = info, batch_size, session, device
        self.logits = np.zeros((batch_size, info.vocab_size), np.float32)  # (B, V) host buffer
        self._position = np.zeros((), np.int64)
        self._init = [np.full((batch_size, *s.shape[1:]), s.init, dtype=s.dtype) for s in info.state]
        sets = [[ort.OrtValue.ortvalue_from_shape_and_type(x.shape, x.dtype, device, 0) for x in self._init]
                for _ in range(2)]
        self._state = sets[0]  # the inputs of the first step after reset
        self._bindings = []
        for a, b in (sets, sets[::-1]):
            io = session.io_binding()
            for spec, x_in, x_out in zip(info.state, a, b):
                io.bind_ortvalue_input(spec.input, x_in)
                io.bind_ortvalue_output(spec.output, x_out)
            io.bind_output(LOGITS_OUTPUT, "cpu", 0, np.float32, list(self.logits.shape), self.logits.ctypes.data)
            self._bindings.append(io)
        self._parity = 0

    def reset(self, condition: np.ndarray | None = None) -> None:
        """Initial state from the metadata; condition (B,) int64 where the model is conditional."""
        for value, init in zip(self._state, self._init):
            value.update_inplace(init)
        self._parity = 0
        if self.info.num_classes:
            self._condition = np.ascontiguousarray(condition, dtype=np.int64)  # kept alive while bound
            for io in self._bindings:
                io.bind_cpu_input(CONDITION_INPUT, self._condition)

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (B,) int64: the elements at position - 1 (the start symbol at 0) -> logits (B, V)."""
        io = self._bindings[self._parity]
        # Rebound every step: on CUDA binding a host array is what copies it to the device.
        io.bind_cpu_input(TOKEN_INPUT, tokens)
        if self.info.uses_position:
            self._position[()] = position
            io.bind_cpu_input(POSITION_INPUT, self._position)
        self._session.run_with_iobinding(io)
        if self._device != "cpu":
            io.synchronize_outputs()
        self._parity ^= 1
        return self.logits


@dataclass(frozen=True)
class SampleOptions:
    num_samples: int = 1
    batch_size: int | None = None    # None: all samples at once, up to MAX_BATCH
    sampling: SamplingOptions = SamplingOptions()
    seed: int = 0
    condition: int | None = None     # None on a conditional model: num_samples of every class
    prompt: str = ""
    length: int | None = None        # new elements per sample; None: the data kind's default


@dataclass(frozen=True)
class Plan:
    """What to generate, resolved against the model once: every later step trusts it."""
    conditions: np.ndarray | None  # (N,) int64 class of every sample, None when unconditional
    prompt: np.ndarray             # (P,) int64 tokens fed before sampling starts
    length: int                    # sampled elements per sample
    batch_size: int
    n: int                         # samples in all
    per_class: bool                # one group of num_samples per class (image grids: one row each)

    @property
    def total_length(self) -> int:
        return len(self.prompt) + self.length

    def batches(self) -> list[range]:
        return [range(i, min(i + self.batch_size, self.n)) for i in range(0, self.n, self.batch_size)]


def make_plan(options: SampleOptions, info: ModelInfo) -> Plan:
    """Check the options against the model; UsageError naming the first problem."""
    o = options
    o.sampling.validate()
    if o.num_samples <= 0 or (o.batch_size is not None and o.batch_size <= 0):
        raise UsageError(f"-n and --batch-size must be >= 1, got {o.num_samples} and {o.batch_size}")
    if o.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {o.seed}")
    conditions, per_class = _conditions(o, info)
    prompt = _prompt_tokens(o.prompt, info)
    length = _length(o.length, len(prompt), info)
    n = len(conditions) if conditions is not None else o.num_samples
    return Plan(conditions, prompt, length, o.batch_size or min(n, MAX_BATCH), n, per_class)


def check_condition(condition: int | None, info: ModelInfo, *, required: bool) -> None:
    """--condition must be a class id of a conditional model (given, when ``required``)."""
    classes = f"0..{info.num_classes - 1}" + (f" ({', '.join(info.class_names)})" if info.class_names else "")
    if condition is not None and not info.num_classes:
        raise UsageError("this model is unconditional: drop --condition")
    if condition is None and info.num_classes and required:
        raise UsageError(f"this model is conditioned on {info.num_classes} classes: pass --condition {classes}")
    if condition is not None and not 0 <= condition < info.num_classes:
        raise UsageError(f"--condition {condition} is out of range: use {classes}")


def _conditions(o: SampleOptions, info: ModelInfo) -> tuple[np.ndarray | None, bool]:
    check_condition(o.condition, info, required=False)
    if not info.num_classes:
        return None, False
    if o.condition is None:
        return np.repeat(np.arange(info.num_classes, dtype=np.int64), o.num_samples), True
    return np.full(o.num_samples, o.condition, dtype=np.int64), False


def _prompt_tokens(prompt: str, info: ModelInfo) -> np.ndarray:
    if not prompt:
        return np.zeros(0, np.int64)
    if info.data_kind != "text":
        raise UsageError(f"--prompt is for text models and this one generates {info.data_kind}: drop it")
    if info.max_length and len(prompt) >= info.max_length:
        raise UsageError(f"the prompt has {len(prompt)} characters and the model's context is {info.max_length}: "
                         f"give at most {info.max_length - 1} so at least one can be generated")
    return encode_text(prompt, info.alphabet, "the prompt")


def _length(length: int | None, prompt: int, info: ModelInfo) -> int:
    if info.data_kind == "image":
        size = info.image_shape[0] * info.image_shape[1]
        if length is not None and length != size:
            raise UsageError(f"images have a fixed size of {size} pixels: drop --length")
        return size
    room = info.max_length - prompt if info.max_length else None
    if length is None:
        return room if room is not None else (info.sample_rate if info.data_kind == "audio" else 256)
    if length <= 0:
        raise UsageError(f"--length must be >= 1, got {length}")
    if room is not None and length > room:
        raise UsageError(f"--length {length} does not fit: the context is {info.max_length} and the prompt "
                         f"takes {prompt}; give --length {room} or less")
    return length


class Sink(Protocol):
    """Where generated tokens go (see outputs.py). ``update`` runs every step and must stay cheap."""
    def begin(self, indices: range) -> None: ...
    def update(self, tokens: np.ndarray, done: int) -> None: ...
    def end(self, tokens: np.ndarray) -> None: ...


@dataclass(frozen=True)
class GenerateStats:
    steps: int       # batched step-graph calls
    tokens: int      # elements sampled over all samples (prompts excluded)
    seconds: float


def generate(model: Model, plan: Plan, sampling: SamplingOptions, seed: int, sink: Sink,
             progress: Callable[[int], None] | None = None) -> GenerateStats:
    """Run every batch of the plan through the step graph; tokens (B, P + L) go to ``sink``."""
    steppers: dict[int, Stepper] = {}
    start, steps, P, T = time.perf_counter(), 0, len(plan.prompt), plan.total_length
    for indices in plan.batches():
        B = len(indices)
        if B not in steppers:  # at most two sizes: the batch and the last, smaller one
            steppers[B] = Stepper(model, B)
        stepper = steppers[B]
        stepper.reset(None if plan.conditions is None else plan.conditions[indices.start:indices.stop])
        rngs = sample_rngs(seed, indices)
        tokens = np.zeros((B, T), np.int64)  # (B, P + L): prompt, then samples
        tokens[:, :P] = plan.prompt
        feed = np.full(B, model.info.start_token, np.int64)  # (B,) the step's input_ids
        sink.begin(indices)
        for t in range(T):
            logits = stepper.step(feed, t)  # (B, V)
            if t >= P:
                tokens[:, t] = sample(logits, sampling, rngs)
            feed[:] = tokens[:, t]
            sink.update(tokens, t + 1)
            if progress is not None:
                progress(steps + t + 1)
        steps += T
        sink.end(tokens)
    return GenerateStats(steps, plan.n * plan.length, time.perf_counter() - start)
