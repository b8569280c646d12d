"""Throughput of the sampling loop against the bare ``session.run`` loop on the same step graph.

The loop is ``generate`` itself (the shipped ``runtime.Stepper``, numpy sampling, token feedback) with a
sink that keeps nothing; the bare loop is ``runtime.PlainStepper`` (``session.run``, state fed back by
name) and never samples. Both
restart from the initial state at the model's maximum length. The two alternate in rounds after a
warm-up, so slow drifts of a shared machine hit both alike; each round's first step (which builds the
bindings) is not timed. A graph that takes chunks (``step_tokens`` > 1) is also timed on prefill: a
prompt of four full chunks per round, in elements per second against sampling's.
"""
from __future__ import annotations

import time

import numpy as np

from .contract.schema import CONDITION_INPUT, FEATURES_INPUT, POSITION_INPUT, TOKEN_INPUT, UNIFORMS_INPUT
from .generate import CHUNK, Plan, generate
from .outputs import Sink
from .runtime import PlainStepper, Stepper, prefill
from .sampling import SamplingOptions
from .session import Model

ROUNDS = 5
WARMUP = 20


def bench(model: Model, *, batch_size: int = 1, steps: int = 600) -> dict:
    """-> {steps_per_s, tokens_per_s, p50_ms, p90_ms, p99_ms, bare_steps_per_s, loop_vs_bare, ...}."""
    per_round = -(-steps // ROUNDS) + 1  # + the untimed first step
    _sample_loop(model, batch_size, WARMUP)
    _bare_loop(model, batch_size, WARMUP)
    latencies, loop_s, bare_s = [], 0.0, 0.0
    for _ in range(ROUNDS):
        times = _sample_loop(model, batch_size, per_round)[1:]  # (per_round,) after each step
        latencies.append(np.diff(times))
        loop_s += times[-1] - times[0]
        bare_s += _bare_loop(model, batch_size, per_round)
    lat_ms = np.concatenate(latencies) * 1e3
    n = len(lat_ms)
    p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
    record = {"provider": model.provider, "batch_size": batch_size, "steps": n,
              "steps_per_s": n / loop_s, "tokens_per_s": n * batch_size / loop_s,
              "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
              "bare_steps_per_s": n / bare_s, "loop_vs_bare": bare_s / loop_s}
    rate = model.kind.real_time_rate(model.info)  # elements per second of real time (audio), else 0
    if rate:
        record["real_time_factor"] = rate / record["tokens_per_s"]
    if model.info.step_tokens > 1:
        prefill_per_s = _prefill_rate(model, batch_size)
        record |= {"prefill_tokens_per_s": prefill_per_s, "prefill_vs_decode": prefill_per_s / record["tokens_per_s"]}
    return record


def _prefill_rate(model: Model, batch_size: int) -> float:
    """Elements per second (over the batch) of prefilling a prompt of four full chunks, best of ROUNDS."""
    info = model.info
    stepper = Stepper(model, batch_size)
    condition = np.zeros(batch_size, np.int64) if info.num_classes else None
    prompt = np.random.default_rng(0).integers(0, info.vocab_size, (batch_size, 4 * info.step_tokens))  # (B, P)
    best = np.inf
    for _ in range(ROUNDS + 1):  # the first round warms up
        stepper.reset(condition)
        start = time.perf_counter()
        prefill(stepper, prompt, np.zeros(batch_size, np.int64))
        best = min(best, time.perf_counter() - start)
    return prompt.size / best


def _sample_loop(model: Model, batch_size: int, steps: int) -> np.ndarray:
    """Timestamps before the first step and after each of ``steps`` steps of ``generate``."""
    info = model.info
    L = min(steps, info.max_length or steps)
    conditions = np.zeros(batch_size * -(-steps // L), np.int64) if info.num_classes else None
    plan = Plan(conditions, np.zeros(0, np.int64), L, batch_size, batch_size * -(-steps // L), False, _silence(info, L))
    times = np.zeros(steps + 1)
    last = [0]  # the step stamped last; a chunk graph stamps once per chunk: its elements share the time evenly

    def stamp(done: int) -> None:
        done = min(done, steps)
        if done > last[0]:
            times[last[0] + 1:done + 1] = np.linspace(times[last[0]], time.perf_counter(), done - last[0] + 1)[1:]
            last[0] = done

    times[0] = time.perf_counter()
    generate(model, plan, SamplingOptions(), 0, Sink(), stamp)  # a sink that keeps nothing
    return times


def _silence(info, length: int) -> np.ndarray | None:
    """A vocoder's features for ``length`` samples: every frame at the log floor (None for other models)."""
    if not info.features:
        return None
    return np.full((info.features.frames(length), info.features.n_mels), np.log(info.features.log_floor), np.float32)


def _bare_loop(model: Model, batch_size: int, steps: int) -> float:
    """Seconds for ``steps`` plain ``session.run`` steps (``PlainStepper``), from the end of the first one; on a
    chunk graph, for chunks of CHUNK (the first one untimed)."""
    info = model.info
    L = info.max_length or steps
    condition = np.zeros(batch_size, np.int64) if info.num_classes else None
    if info.graph == "chunk":
        return _bare_chunks(model, batch_size, steps, condition)
    features = _silence(info, L)
    features = None if features is None else np.broadcast_to(features, (batch_size, *features.shape))
    token = np.full(batch_size, info.start_token, np.int64)
    stepper = PlainStepper(model, batch_size)
    position = np.zeros(batch_size, np.int64)  # (B,) every row at the same position
    for t in range(steps):
        if t == 1:
            start = time.perf_counter()
        if t % L == 0:
            stepper.reset(condition, features)
        position[:] = t % L
        stepper.step(token, position)
    return time.perf_counter() - start


def _bare_chunks(model: Model, batch_size: int, steps: int, condition: np.ndarray | None) -> float:
    """``_bare_loop`` of a chunk graph: ``session.run`` on chunks of CHUNK elements, state fed back by name."""
    info = model.info
    feeds = {s.input: s.initial(batch_size) for s in info.state}
    feeds |= {TOKEN_INPUT: np.full(batch_size, info.start_token, np.int64), POSITION_INPUT: np.zeros(batch_size, np.int64),
              UNIFORMS_INPUT: np.random.default_rng(0).random((batch_size, CHUNK))}
    if condition is not None:
        feeds[CONDITION_INPUT] = condition
    if info.features:
        frames = _silence(info, CHUNK)  # (F, M)
        feeds[FEATURES_INPUT] = np.ascontiguousarray(np.broadcast_to(frames, (batch_size, *frames.shape)))
    outputs = info.output_names()
    seconds = 0.0
    for i in range(-(-steps // CHUNK) + 1):
        start = time.perf_counter()
        _, *state = model.session.run(outputs, feeds)
        seconds += (time.perf_counter() - start) * (i > 0)
        feeds |= {spec.input: value for spec, value in zip(info.state, state)}
    return seconds * steps / (CHUNK * -(-steps // CHUNK))
