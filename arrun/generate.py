"""Sampling: a plan resolved against the model once, then the step loop (``runtime.Stepper``) with
``sampling``'s numpy samplers, tokens fed back and handed to a sink; or, on a chunk graph
(``runtime.ChunkSampler``), CHUNK elements per call sampled inside the graph from the same uniforms.

Shapes (B = batch): input_ids (B,) int64, position (B,) int64, condition (B,) int64, logits (B, V) float32,
features (F, M) float32 frames shared by every sample (a vocoder); tokens (B, P + L) int64 hold the prompt, then
the samples. With prompts of different lengths (sample i starts with prompt i mod their number) every row is
prefilled from its own start (``runtime.prefill_rows``) and samples at its own position: row b's prompt is
right-aligned in tokens[b, P - P_b:P] (P the longest), its samples in tokens[b, P:].
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .contract.errors import UsageError
from .contract.schema import ModelInfo
from .kinds import DATA_KINDS
from .outputs import Sink
from .runtime import ChunkSampler, Stepper, prefill_rows
from .sampling import SamplingOptions, sample_rngs
from .session import Model

MAX_BATCH = 64  # default batch: all samples at once, up to this many
MAX_SAMPLES = 1_000_000  # samples in one run
MEMORY_LIMIT = 4 << 30   # bytes a run may hold (tokens, state, logits, what the output keeps)


@dataclass(frozen=True)
class SampleOptions:
    num_samples: int | None = None   # None: one per prompt (1 without prompts)
    batch_size: int | None = None    # None: all samples at once, up to MAX_BATCH
    sampling: SamplingOptions = SamplingOptions()
    seed: int = 0
    condition: int | str | None = None  # class id or name; None on a conditional model: its unconditioned id
                                        # where it declares one, else num_samples of every class
    prompt: str | tuple[str, ...] = ""  # text the samples start with: one, or several (sample i takes prompt i mod k)
    length: int | None = None        # new elements per sample; None: the data kind's default
    unknown: str = "error"           # prompt characters outside the alphabet: error | skip | replace
    features: np.ndarray | None = None  # (F, M) float32 frames a vocoder is conditioned on (``read_features``)


@dataclass(frozen=True)
class Plan:
    """What to generate, resolved against the model once: every later step trusts it."""
    conditions: np.ndarray | None  # (N,) int64 class of every sample, None when unconditional
    prompts: tuple[np.ndarray, ...]  # k prompts (P_i,) int64 fed before sampling starts; sample i takes i mod k
    length: int                    # sampled elements per sample
    batch_size: int
    n: int                         # samples in all
    per_class: bool                # one group of num_samples per class (image grids: one row each)
    features: np.ndarray | None = None  # (F, M) frames of a vocoder, None otherwise

    def __post_init__(self):
        if isinstance(self.prompts, np.ndarray):  # one prompt (P,)
            object.__setattr__(self, "prompts", (self.prompts,))

    @property
    def prompt_length(self) -> int:
        """The longest prompt's length P: samples start at tokens column P."""
        return max(len(p) for p in self.prompts)

    @property
    def total_length(self) -> int:
        return self.prompt_length + self.length

    def prompts_of(self, indices: range) -> list[np.ndarray]:
        return [self.prompts[i % len(self.prompts)] for i in indices]

    def batches(self) -> list[range]:
        return [range(i, min(i + self.batch_size, self.n)) for i in range(0, self.n, self.batch_size)]


def make_plan(options: SampleOptions, info: ModelInfo) -> Plan:
    """Check the options against the model; UsageError naming the first problem."""
    o = options
    o.sampling.validate()
    info.head.check(o.sampling)
    texts = (o.prompt,) if isinstance(o.prompt, str) else tuple(o.prompt)
    if not texts:
        raise UsageError("the prompts file has no prompt; give one prompt per line")
    o = replace(o, num_samples=len(texts) if o.num_samples is None else o.num_samples)
    if o.num_samples <= 0 or (o.batch_size is not None and o.batch_size <= 0):
        raise UsageError(f"-n and --batch-size must be >= 1, got {o.num_samples} and {o.batch_size}")
    if o.num_samples < len(texts):
        raise UsageError(f"-n {o.num_samples} is smaller than the {len(texts)} prompts; give -n {len(texts)} or "
                         "more (sample i starts with prompt i mod the number of prompts), or fewer prompts")
    if o.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {o.seed}")
    o = replace(o, condition=class_id(o.condition, info))
    check_condition(o.condition, info, required=False)
    n = o.num_samples * (info.num_classes if info.num_classes and o.condition is None else 1)
    if n > MAX_SAMPLES:
        raise UsageError(f"{n:,} samples are more than the {MAX_SAMPLES:,} one run makes; give a smaller -n "
                         "and run several times with other --seed values")
    kind = DATA_KINDS[info.data_kind]
    prompts = tuple(_prompt_tokens(kind, text, i, len(texts), info, o.unknown) for i, text in enumerate(texts))
    longest = max(len(p) for p in prompts)
    length = _local_length(o, info) if info.features else kind.length(o.length, longest, info)
    batch_size = min(o.batch_size or MAX_BATCH, n)
    check_memory(kind, info, n, batch_size, longest + length)
    if o.features is not None and not info.features:
        raise UsageError("this model is not a vocoder and takes no features; drop --features")
    if info.graph == "chunk" and longest:
        raise UsageError("a chunk graph samples from the start of a sequence and takes no prompt; drop --prompt, "
                         "or sample with the step graph (step.onnx)")
    if info.graph == "chunk" and o.sampling != SamplingOptions():
        raise UsageError("a chunk graph samples at temperature 1 from the full distribution; drop --temperature, "
                         "--top-k and --top-p, or sample with the step graph (step.onnx)")
    conditions, per_class = _conditions(o, info)
    return Plan(conditions, prompts, length, batch_size, n, per_class, o.features)


def _prompt_tokens(kind, text: str, i: int, k: int, info: ModelInfo, unknown: str) -> np.ndarray:
    """Prompt i of k -> (P_i,) int64 tokens; its problem named by its number when there are several."""
    try:
        return kind.prompt_tokens(text, info, unknown)
    except UsageError as e:
        if k == 1:
            raise
        raise UsageError(f"prompt {i + 1} of {k}: {e}") from None


def _local_length(o: SampleOptions, info: ModelInfo) -> int:
    """A vocoder generates what its features describe: every frame's hop samples, or --length of them."""
    if o.features is None:
        raise UsageError("this model is a vocoder: give the features it turns into audio with --features "
                         "FRAMES.npy, or use `arrun vocode MODEL in.wav`")
    room = len(o.features) * info.features.hop
    if o.length is None:
        return room
    if not 1 <= o.length <= room:
        raise UsageError(f"--length {o.length} does not fit the features: {len(o.features)} frames describe "
                         f"{room} samples; give --length 1..{room} or drop it")
    return o.length


def check_memory(kind, info: ModelInfo, n: int, batch_size: int, total_length: int) -> None:
    """Refuse up front a run whose tokens, state, logits and kept output exceed MEMORY_LIMIT."""
    state = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in info.state)
    per_batch = batch_size * (total_length * 8 + 2 * state + info.output_width * 4)  # tokens, 2 state sets, outputs
    kept = n * total_length * kind.kept_bytes_per_element
    need = per_batch + kept
    if need > MEMORY_LIMIT:
        raise UsageError(f"{n:,} sample(s) of {total_length:,} elements at batch {batch_size} need "
                         f"{need / 2**30:,.1f} GiB, more than the {MEMORY_LIMIT >> 30} GiB a run may use; "
                         "give a smaller --length, -n or --batch-size")


def class_id(value: int | str | None, info: ModelInfo, what: str = "--condition") -> int | None:
    """A class given by id or by name (``--condition 7`` or ``--condition seven``) -> its id; UsageError
    for a name the model does not know. None -> the model's unconditioned id (``ar.condition.unconditioned``),
    or None when it declares none."""
    if value is None:
        return info.unconditioned
    if isinstance(value, int):
        return value
    if value.lstrip("-").isdigit():
        return int(value)
    if value in info.class_names:
        return info.class_names.index(value)
    if not info.num_classes:
        raise UsageError(f"this model is unconditional; drop {what}")
    known = ", ".join(info.class_names) or f"ids 0..{info.num_classes - 1}"
    raise UsageError(f"{what} {value!r} is not a class of this model; use one of {known}")


def check_condition(condition: int | None, info: ModelInfo, *, required: bool) -> None:
    """--condition must be a class id of a conditional model (given, when ``required``)."""
    classes = f"0..{info.num_classes - 1}" + (f" ({', '.join(info.class_names)})" if info.class_names else "")
    if condition is not None and not info.num_classes:
        raise UsageError("this model is unconditional; drop --condition")
    if condition is None and info.num_classes and required:
        raise UsageError(f"this model is conditioned on {info.num_classes} classes; pass --condition {classes}")
    if condition is not None and not 0 <= condition < info.num_classes:
        raise UsageError(f"--condition {condition} is out of range; use {classes}")


def _conditions(o: SampleOptions, info: ModelInfo) -> tuple[np.ndarray | None, bool]:
    if not info.num_classes:
        return None, False
    if o.condition is None:
        return np.repeat(np.arange(info.num_classes, dtype=np.int64), o.num_samples), True
    return np.full(o.num_samples, o.condition, dtype=np.int64), False


@dataclass(frozen=True)
class GenerateStats:
    steps: int       # batched step-graph calls
    tokens: int      # elements sampled over all samples (prompts excluded)
    seconds: float


CHUNK = 1024  # elements per call of a chunk graph


def generate(model: Model, plan: Plan, sampling: SamplingOptions, seed: int, sink: Sink,
             progress: Callable[[int], None] | None = None) -> GenerateStats:
    """Run every batch of the plan through the step graph; tokens (B, P + L) go to ``sink`` (rows of prompts
    of different lengths: a list of B arrays (P_b + L,) at ``end``). The prompts are fed in one prefill, each row
    from its own start (``prefill_rows``: chunks of the graph's ``step_tokens``), then one step per sampled
    element, every row at its own position; a chunk graph samples CHUNK elements per call instead."""
    runners: dict[int, Stepper | ChunkSampler] = {}
    start, steps, P, T = time.perf_counter(), 0, plan.prompt_length, plan.total_length
    chunked, head = model.info.graph == "chunk", model.info.head
    for indices in plan.batches():
        B = len(indices)
        if B not in runners:  # at most two sizes: the batch and the last, smaller one
            runners[B] = (ChunkSampler if chunked else Stepper)(model, B)
        runner = runners[B]
        features = None if plan.features is None else np.broadcast_to(plan.features, (B, *plan.features.shape))
        runner.reset(None if plan.conditions is None else plan.conditions[indices.start:indices.stop], features)
        rngs = sample_rngs(seed, indices)
        tokens = np.zeros((B, T), np.int64)  # (B, P + L): prompts (right-aligned), then samples
        prompts = plan.prompts_of(indices)
        for b, prompt in enumerate(prompts):
            tokens[b, P - len(prompt):P] = prompt
        sink.begin(indices)
        if chunked:  # no prompt (make_plan refuses one)
            previous = np.full(B, model.info.start_token, np.int64)
            for t in range(0, T, CHUNK):
                n = min(CHUNK, T - t)
                uniforms = np.stack([rng.random(n) for rng in rngs])  # (B, n): what n steps of `sample` draw
                tokens[:, t:t + n] = runner.sample(previous, np.full(B, t, np.int64), uniforms)
                previous = tokens[:, t + n - 1]
                sink.update(tokens, t + n)
                if progress is not None:
                    progress(steps + t + n)
        else:
            logits = prefill_rows(runner, [np.concatenate([[model.info.start_token], p]) for p in prompts])  # (B, V)
            position = np.array([len(p) for p in prompts], np.int64)  # (B,) each row's first sampled position P_b
            sink.update(tokens, P)
            for t in range(P, T):
                if t > P:
                    position += 1
                    logits = runner.step(tokens[:, t - 1], position)  # (B, V)
                tokens[:, t] = head.sample(logits, sampling, rngs)
                sink.update(tokens, t + 1)
                if progress is not None:
                    progress(steps + t + 1)
        steps += T
        ragged = len({len(p) for p in prompts}) > 1
        sink.end([tokens[b, P - len(p):] for b, p in enumerate(prompts)] if ragged else tokens)
    return GenerateStats(steps, plan.n * plan.length, time.perf_counter() - start)
