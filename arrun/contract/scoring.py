"""The held-out scoring rule, shared by ``artrain eval`` and ``arrun score`` so the two agree.

Every element is scored as the step rollout from the initial state would predict it:
- a model with a maximum length scores consecutive chunks of that length, each from the initial state;
- a model whose prediction depends on at most R predecessors (``receptive_field``: a sliding-window
  Transformer) scores overlapping pieces: each piece's first elements are context only, and every scored
  element has min(t, R) predecessors in its piece, which is all the step rollout uses (position-free
  models give the same logits wherever the piece starts). Time and memory are O(T * R);
- any other model scores the whole sequence at once.
bits/dim = sum over scored elements of -ln p(x_t | x_<t) / n_dims / ln 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def chunks(sequence: np.ndarray, max_length: int, receptive_field: int = 0) -> list[tuple[np.ndarray, int]]:
    """(T,) -> (piece, skip) pairs whose scored parts piece[skip:] tile the sequence: consecutive chunks of
    ``max_length`` (skip 0) when it is set, else new parts of R = ``receptive_field`` elements each after
    up to R elements of context, else the whole sequence."""
    if max_length or not receptive_field:
        step = max_length or len(sequence)
        return [(sequence[i:i + step], 0) for i in range(0, len(sequence), step)]
    starts = range(0, len(sequence), receptive_field)
    return [(sequence[max(0, s - receptive_field):s + receptive_field], min(s, receptive_field)) for s in starts]


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
