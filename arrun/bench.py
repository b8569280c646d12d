"""Throughput of the sampling loop against the bare ``session.run`` loop on the same step graph.

The loop is ``generate`` itself (IO binding, numpy sampling, token feedback) with a sink that keeps
nothing; the bare loop feeds each state output back through ``session.run`` and never samples. Both
restart from the initial state at the model's maximum length. The two alternate in rounds after a
warm-up, so slow drifts of a shared machine hit both alike; each round's first step (which builds the
bindings) is not timed.
"""
from __future__ import annotations

import time

import numpy as np

from .generate import Plan, generate
from .sampling import SamplingOptions
from .schema import CONDITION_INPUT, LOGITS_OUTPUT, POSITION_INPUT, TOKEN_INPUT
from .session import Model

ROUNDS = 5
WARMUP = 20


class _NullSink:
    def begin(self, indices: range) -> None: ...
    def update(self, tokens: np.ndarray, done: int) -> None: ...
    def end(self, tokens: np.ndarray) -> None: ...


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
    return {"provider": model.provider, "batch_size": batch_size, "steps": n,
            "steps_per_s": n / loop_s, "tokens_per_s": n * batch_size / loop_s,
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "bare_steps_per_s": n / bare_s, "loop_vs_bare": bare_s / loop_s}


def _sample_loop(model: Model, batch_size: int, steps: int) -> np.ndarray:
    """Timestamps before the first step and after each of ``steps`` steps of ``generate``."""
    L = min(steps, model.info.max_length or steps)
    conditions = np.zeros(batch_size * -(-steps // L), np.int64) if model.info.num_classes else None
    plan = Plan(conditions, np.zeros(0, np.int64), L, batch_size, batch_size * -(-steps // L), False)
    times = np.zeros(steps + 1)

    def stamp(done: int) -> None:
        if done <= steps:
            times[done] = time.perf_counter()

    times[0] = time.perf_counter()
    generate(model, plan, SamplingOptions(), 0, _NullSink(), stamp)
    return times


def _bare_loop(model: Model, batch_size: int, steps: int) -> float:
    """Seconds for ``steps`` plain ``session.run`` calls with the state fed back by name, from the end of
    the first one."""
    info, session = model.info, model.session
    L = info.max_length or steps
    init = {s.input: np.full((batch_size, *s.shape[1:]), s.init, dtype=s.dtype) for s in info.state}
    feeds = {TOKEN_INPUT: np.full(batch_size, info.start_token, np.int64), **init}
    if info.num_classes:
        feeds[CONDITION_INPUT] = np.zeros(batch_size, np.int64)
    names = [LOGITS_OUTPUT] + [s.output for s in info.state]
    for t in range(steps):
        if t == 1:
            start = time.perf_counter()
        if t % L == 0:
            feeds.update(init)
        if info.uses_position:
            feeds[POSITION_INPUT] = np.array(t % L, np.int64)
        outputs = session.run(names, feeds)
        for spec, value in zip(info.state, outputs[1:]):
            feeds[spec.input] = value
    return time.perf_counter() - start
