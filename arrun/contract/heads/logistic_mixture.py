"""The discretized mixture of logistics head (PixelCNN++, Salimans et al. 2017).

W = 3K per element: K mixture logits w, K means mu and K log-scales (floored at ``log_scale_floor(V)``) of
logistics over x in [-1, 1], level v sitting at x_v = 2v / (V-1) - 1 with bin [x_v - h, x_v + h), h = 1 / (V-1);
the edge bins take the tails, level 0 all x < x_0 + h and level V-1 all x >= x_{V-1} - h.
p(v) = sum_k softmax(w)_k (sigma(a_k) - sigma(b_k)) with a_k, b_k the bin's upper and lower edge standardised by
component k, computed in log space without cancellation (the same formula trains the model in torch).

Temperature T scales the component logits (softmax(w / T)) and every logistic's scale (s * T); T = 1 samples the
model, T -> 0 (and 0) gives the most likely component's mean, rounded to its level. Top-k and top-p select among
levels of a histogram; a mixture has none to rank, so they are refused.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...sampling import SamplingOptions, softmax
from ..errors import UsageError
from .base import NUMPY_OPS, ArrayOps, Head

MAX_MIXTURES = 1 << 24


def log_scale_floor(levels: int) -> float:
    """The smallest log-scale a component may have, training and runtime alike: e^-1.5 of half a level's
    width, so one level can hold 98 % of a component (PixelCNN++'s -7 for 256 levels; -12.6 for 65,536,
    where -7 would spread every component over some 30 levels and cost at least 6.9 bits per sample)."""
    return math.log(1.0 / (levels - 1)) - 1.5


class LogisticMixture(Head):
    kind = "logistic_mixture"
    output_name = "mixture"
    greedy_slack = 1  # the greedy level rounds a mean: a mean within tolerance of another may round the other way

    def __init__(self, levels: int, mixtures: int):
        if not isinstance(mixtures, int) or isinstance(mixtures, bool) or not 1 <= mixtures <= MAX_MIXTURES:
            raise ValueError(f"{mixtures!r} mixture components is not an integer in 1..{MAX_MIXTURES}")
        super().__init__(levels)
        self.mixtures = mixtures
        self.half_bin = 1.0 / (levels - 1)
        self.floor = log_scale_floor(levels)

    @property
    def params(self) -> dict:
        return {"mixtures": self.mixtures}

    @property
    def width(self) -> int:
        return 3 * self.mixtures

    @property
    def description(self) -> str:
        return f"logistic mixture of {self.mixtures}"

    def check(self, options: SamplingOptions) -> None:
        if options.top_k or options.top_p < 1:
            raise UsageError("--top-k and --top-p rank the levels of a softmax head; this model outputs a mixture "
                             "of logistics: use --temperature alone")

    def parts(self, outputs, ops: ArrayOps = NUMPY_OPS):
        """(..., 3K) -> log mixture weights, means, log-scales, each (..., K) in the computing precision."""
        x, K = ops.real(outputs), self.mixtures
        return ops.log_softmax(x[..., :K]), x[..., K:2 * K], ops.maximum(x[..., 2 * K:], self.floor)

    def level_log_probs(self, outputs, targets, ops: ArrayOps = NUMPY_OPS):
        """outputs (..., 3K), targets (...) levels -> (...) ln p(target)."""
        log_w, mu, log_s = self.parts(outputs, ops)
        x = (2.0 * targets / (self.levels - 1) - 1.0)[..., None]  # (..., 1) bin centres
        inv_s = ops.exp(-log_s)
        a = (x + self.half_bin - mu) * inv_s  # (..., K) upper edge, standardised
        b = (x - self.half_bin - mu) * inv_s  # lower edge
        width = -ops.expm1(-2.0 * self.half_bin * inv_s)  # 1 - e^(b - a), from the bin width, not a difference
        middle = a + ops.log(width) - ops.softplus(a) - ops.softplus(b)  # ln(sig(a) - sig(b))
        first = -ops.softplus(-a)  # ln sig(a): level 0 takes the lower tail
        last = -ops.softplus(b)    # ln(1 - sig(b)): level V-1 takes the upper tail
        t = targets[..., None]
        log_p = ops.where(t == 0, first, ops.where(t == self.levels - 1, last, middle))
        return ops.logsumexp(log_w + log_p)

    def greedy(self, outputs: np.ndarray) -> np.ndarray:
        """(..., 3K) -> (...) int64 the level of the most likely component's mean (temperature 0)."""
        flat = outputs.reshape(-1, outputs.shape[-1])
        return self.sample(flat, SamplingOptions(temperature=0.0), []).reshape(outputs.shape[:-1])

    def decision(self, outputs: np.ndarray) -> np.ndarray:
        """(..., 3K) -> (...) the most likely component."""
        return outputs[..., :self.mixtures].argmax(-1)

    def sample(self, outputs: np.ndarray, options: SamplingOptions, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """(B, 3K) -> (B,) int64 levels. One uniform per row picks the component by the inverse CDF of its
        weights; what is left of it, rescaled to [0, 1), is that component's logistic quantile."""
        log_w, mu, log_s = self.parts(outputs)
        T = float(np.float32(options.temperature))
        rows = np.arange(len(outputs))
        if T == 0:  # greedy
            k = log_w.argmax(axis=1)
            return self._level(mu[rows, k])
        weights = softmax(log_w / T)  # (B, K)
        cum = np.cumsum(weights, axis=1)  # (B, K)
        u = np.array([rng.random() for rng in rngs]) * cum[:, -1]  # (B,)
        k = np.minimum((cum <= u[:, None]).sum(axis=1), self.mixtures - 1)  # (B,)
        below = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
        r = np.clip((u - below) / weights[rows, k], 1e-300, 1 - 2**-53)  # (B,) uniform given k
        x = mu[rows, k] + np.exp(log_s[rows, k]) * T * (np.log(r) - np.log1p(-r))
        return self._level(x)

    def _level(self, x: np.ndarray) -> np.ndarray:
        """Values in [-1, 1] (and beyond) -> the level whose bin holds them, int64."""
        v = np.floor((x + 1.0) * (self.levels - 1) / 2.0 + 0.5)
        return np.clip(np.nan_to_num(v, nan=0.0), 0, self.levels - 1).astype(np.int64)

    def cdf(self, outputs: np.ndarray, levels: np.ndarray) -> np.ndarray:
        log_w, mu, log_s = self.parts(outputs)
        edge = (2.0 * levels / (self.levels - 1) - 1.0 - self.half_bin)[..., None]  # (B, N, 1) lower edge of the level
        z = (edge - mu[:, None]) * np.exp(-log_s[:, None])  # (B, N, K)
        with np.errstate(over="ignore"):
            p = (np.exp(log_w)[:, None] / (1.0 + np.exp(-z))).sum(axis=-1)  # (B, N)
        return np.where(levels <= 0, 0.0, np.where(levels >= self.levels, 1.0, np.clip(p, 0.0, 1.0)))
