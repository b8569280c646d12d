"""The softmax head: W = V logits per element, p(v) = softmax(logits)_v.

Sampling is ``arrun.sampling.sample`` (temperature, top-k, top-p, one uniform per row through the inverse CDF);
a chunk graph computes the same draw inside the graph."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...sampling import SamplingOptions, sample, softmax
from ..scoring import nll_nats
from .base import NUMPY_OPS, ArrayOps, Head


class Softmax(Head):
    kind = "softmax"
    output_name = "logits"
    samples_in_graph = True

    @property
    def width(self) -> int:
        return self.levels

    def level_log_probs(self, logits, targets, ops: ArrayOps = NUMPY_OPS):
        """logits (..., V), targets (...) -> (...) ln p(target) (in torch: minus F.cross_entropy, bit for bit)."""
        return ops.take(ops.log_softmax(ops.real(logits)), targets)

    def nll(self, logits: np.ndarray, targets: np.ndarray) -> float:
        return nll_nats(logits, targets)

    def greedy(self, logits: np.ndarray) -> np.ndarray:
        """(..., V) -> (...) int64 the most likely level (the first on ties)."""
        return logits.argmax(axis=-1)

    def sample(self, logits: np.ndarray, options: SamplingOptions, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        return sample(logits, options, rngs)

    def cdf(self, logits: np.ndarray, levels: np.ndarray) -> np.ndarray:
        cum = np.concatenate([np.zeros((len(logits), 1)), np.cumsum(softmax(logits), axis=1)], axis=1)  # (B, V+1)
        cum[:, -1] = 1.0
        return np.take_along_axis(cum, levels, axis=1)
