"""An output head from outside the project, for tests/test_heads.py, which installs it as an entry point of
the group 'arrun.heads' (as a plug-in's pyproject.toml would declare it); no project file names it.

uniform_mixture: W = V logits per element (the graph output ``logits``, as a softmax model has);
p(v) = (1 - floor) softmax(logits)_v + floor / V, a softmax that leaves every level at least floor / V."""
from __future__ import annotations

import math

import numpy as np

from arrun.contract.errors import UsageError
from arrun.contract.heads import NUMPY_OPS, ArrayOps, Head
from arrun.sampling import sample_categorical, softmax


class UniformMixture(Head):
    kind = "uniform_mixture"
    output_name = "logits"

    def __init__(self, levels: int, floor: float):
        if not 0 < floor < 1:
            raise ValueError(f"floor {floor!r} is not in (0, 1)")
        super().__init__(levels)
        self.floor = floor

    @property
    def params(self) -> dict:
        return {"floor": self.floor}

    @property
    def width(self) -> int:
        return self.levels

    def check(self, options) -> None:
        if options.top_k or options.top_p < 1:
            raise UsageError("the uniform_mixture head samples with --temperature alone")

    def level_log_probs(self, logits, targets, ops: ArrayOps = NUMPY_OPS):
        peaked = ops.take(ops.log_softmax(ops.real(logits)), targets) + math.log1p(-self.floor)  # ln((1-f) p)
        flat = math.log(self.floor / self.levels)
        return peaked + ops.softplus(flat - peaked)  # ln(e^peaked + e^flat)

    def greedy(self, logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=-1)

    def sample(self, logits: np.ndarray, options, rngs) -> np.ndarray:
        """One uniform u per row: u < floor picks the level floor(u / floor * V), the rest of it, rescaled to
        [0, 1), draws from the tempered softmax."""
        if np.float32(options.temperature) == 0:
            return self.greedy(logits)
        u = np.array([rng.random() for rng in rngs])  # (B,)
        flat = np.minimum((u / self.floor * self.levels).astype(np.int64), self.levels - 1)
        rest = np.clip((u - self.floor) / (1 - self.floor), 0.0, 1 - 2**-53)
        return np.where(u < self.floor, flat, sample_categorical(logits / np.float32(options.temperature), rest))

    def cdf(self, logits: np.ndarray, levels: np.ndarray) -> np.ndarray:
        cum = np.concatenate([np.zeros((len(logits), 1)), np.cumsum(softmax(logits), axis=1)], axis=1)  # (B, V+1)
        p = (1 - self.floor) * np.take_along_axis(cum, levels, axis=1) + self.floor * levels / self.levels
        return np.where(levels >= self.levels, 1.0, p)
