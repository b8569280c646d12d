"""Samplers: small pure numpy functions over a batch of logits (B, V).

Randomness comes only from explicit ``np.random.Generator``s, one per sample, each drawing exactly one
uniform per sampled step: a sample's tokens depend on its own generator and logits, not on the batch it
ran in. The filters follow the usual order: scale by temperature, keep the top k, keep the top p.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .contract.errors import UsageError


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0   # 0: greedy (argmax)
    top_k: int = 0             # 0: no limit
    top_p: float = 1.0         # 1: no limit

    def validate(self) -> None:
        if not 0 <= self.temperature < float("inf"):  # also rejects nan
            raise UsageError(f"--temperature must be >= 0 and finite (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be >= 0 (0 = no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1] (1 = no limit), got {self.top_p}")


def sample_argmax(logits: np.ndarray) -> np.ndarray:
    """(B, V) -> (B,) int64 index of the largest logit (the first one on ties)."""
    return logits.argmax(axis=1)


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """(B, V) -> (B, V) with all but exactly k entries per row set to -inf (ties: lower index wins)."""
    if k <= 0 or k >= logits.shape[1]:
        return logits
    order = np.argsort(-logits, axis=1, kind="stable")  # (B, V) descending, stable on ties
    out = np.full_like(logits, -np.inf)
    keep = order[:, :k]  # (B, k)
    np.put_along_axis(out, keep, np.take_along_axis(logits, keep, axis=1), axis=1)
    return out


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """(B, V) -> (B, V) keeping per row the smallest set of most likely entries whose probability mass
    is >= p (nucleus); the others become -inf. Ties in probability: lower index first."""
    if p >= 1.0:
        return logits
    probs = softmax(logits)  # (B, V) float64
    order = np.argsort(-probs, axis=1, kind="stable")  # (B, V)
    cum = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)  # (B, V)
    n_keep = (cum < p * cum[:, -1:]).sum(axis=1) + 1  # (B,) first rank where the mass reaches p, inclusive
    keep_sorted = np.arange(logits.shape[1]) < n_keep[:, None]  # (B, V) in rank order
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return np.where(keep, logits, -np.inf)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(B, V) -> (B, V) float64 probabilities; -inf entries get 0."""
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sample_categorical(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: (B, V) unnormalised logits and (B,) uniforms in [0, 1) -> (B,) int64.

    Picks the first index whose cumulative mass exceeds u * total, so an entry with probability 0
    (a -inf logit) is never picked."""
    x = logits.astype(np.float64)
    cdf = np.cumsum(np.exp(x - x.max(axis=1, keepdims=True)), axis=1)  # (B, V)
    total = cdf[:, -1]
    target = np.minimum(u * total, np.nextafter(total, 0))  # (B,) strictly below the total
    return (cdf <= target[:, None]).sum(axis=1)


def sample(logits: np.ndarray, options: SamplingOptions, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """(B, V) logits -> (B,) int64 tokens; rngs[i] draws one uniform for row i (none when greedy).
    A temperature so small that logits / temperature overflows is greedy for the rows it overflows."""
    if np.float32(options.temperature) == 0:  # 0, or too small for float32: greedy
        return sample_argmax(logits)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        x = logits if options.temperature == 1 else logits / np.float32(options.temperature)
    overflow = ~np.isfinite(x).all(axis=1)  # (B,) rows scaled beyond the float range: greedy
    if overflow.any():
        x = np.where(overflow[:, None], np.float32(0), x)
    x = top_p_filter(top_k_filter(x, options.top_k), options.top_p)
    u = np.array([rng.random() for rng in rngs])  # (B,)
    tokens = sample_categorical(x, u)
    return np.where(overflow, sample_argmax(logits), tokens) if overflow.any() else tokens


def sample_rngs(seed: int, indices: Sequence[int]) -> list[np.random.Generator]:
    """One generator per sample, derived from (seed, sample index) alone."""
    return [np.random.default_rng([seed, i]) for i in indices]
