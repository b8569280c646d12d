"""The held-out scoring rule, shared by ``artrain eval`` and ``arrun score`` so the two agree.

Every sequence is scored from the model's initial state in consecutive chunks of the model's maximum
length (the whole sequence when the model is unbounded); bits/dim = sum over all elements of
-ln p(x_t | x_<t within its chunk) / n_dims / ln 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def chunks(sequence: np.ndarray, max_length: int) -> list[np.ndarray]:
    """(T,) -> consecutive pieces of ``max_length`` elements (0: the whole sequence), the last shorter."""
    step = max_length or len(sequence)
    return [sequence[i:i + step] for i in range(0, len(sequence), step)]


def nll_nats(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of -log softmax(logits)[target] in float64; logits (..., V), targets (...) int."""
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]
    return float((lse - np.take_along_axis(x, targets[..., None], axis=-1)[..., 0]).sum())


@dataclass(frozen=True)
class Score:
    """Negative log-likelihood per element: bits and nats per dimension over ``n_dims`` elements."""
    bits_per_dim: float
    nats_per_dim: float
    n_dims: int

    @classmethod
    def of(cls, total_nats: float, n_dims: int) -> "Score":
        nats = total_nats / max(n_dims, 1)
        return cls(nats / math.log(2), nats, n_dims)

    def __add__(self, other: "Score") -> "Score":
        return Score.of(self.nats_per_dim * self.n_dims + other.nats_per_dim * other.n_dims,
                        self.n_dims + other.n_dims)
