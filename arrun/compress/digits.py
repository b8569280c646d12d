"""An element as base-256 digits, each coded against the probabilities the head's CDF gives its block.

An element of V <= 65536 levels is D base-256 digits, most significant first (D = 1 for V <= 256, else 2);
the digit of size s = 256^(D-1-d) picks the block [base + j s, base + (j + 1) s), clipped to V, holding the
element, with probabilities the differences of the head's CDF at the block edges (the chain rule: exact).
Within one call, digit 0 of every element is coded (in row order), then digit 1.
"""
from __future__ import annotations

import numpy as np

from ..contract.errors import UsageError

DIGIT = 256              # symbols of one digit
MAX_LEVELS = DIGIT ** 2  # two digits at most: 16-bit audio


def digits_of(levels: int) -> int:
    """Base-256 digits of an element of ``levels`` levels: 1 up to 256, 2 up to 65536; UsageError beyond."""
    if levels > MAX_LEVELS:
        raise UsageError(f"the model has {levels:,} levels; arrun compress codes at most {MAX_LEVELS:,} "
                         "(two 8-bit digits per element)")
    return 1 if levels <= DIGIT else 2


def digit_probabilities(head, outputs: np.ndarray, base: np.ndarray, size: int) -> np.ndarray:
    """outputs (n, W), base (n,) int64 the first level of the block chosen so far, ``size`` levels per symbol
    -> (n, k) float64 unnormalised probabilities of the next digit: symbol j holds the levels
    [base + j size, base + (j + 1) size) within 0..V-1. A row that sums to 0 or is not finite becomes uniform."""
    V = head.levels
    k = min(DIGIT, -(-V // size))
    edges = np.minimum(base[:, None] + size * np.arange(k + 1), V)  # (n, k + 1)
    p = np.maximum(np.diff(head.cdf(outputs, edges), axis=1), 0.0)  # (n, k); max: rounding below 0, NaN stays
    bad = ~(np.isfinite(p).all(axis=1) & (p.sum(axis=1) > 0))  # (n,)
    p[bad] = 1.0
    return p


def encode_elements(encoder, family, head, outputs: np.ndarray, levels: np.ndarray) -> None:
    """Code levels (n,) int64 in 0..V-1 under outputs (n, W) into ``encoder`` (a constriction RangeEncoder)."""
    base = np.zeros(len(levels), np.int64)  # (n,)
    for size in _sizes(head.levels):
        symbols = (levels - base) // size  # (n,)
        encoder.encode(symbols.astype(np.int32), family, digit_probabilities(head, outputs, base, size))
        base = base + symbols * size


def decode_elements(decoder, family, head, outputs: np.ndarray) -> np.ndarray:
    """The inverse of ``encode_elements``: outputs (n, W) -> levels (n,) int64 read from ``decoder``."""
    base = np.zeros(len(outputs), np.int64)  # (n,)
    for size in _sizes(head.levels):
        symbols = decoder.decode(family, digit_probabilities(head, outputs, base, size))  # (n,)
        base = base + symbols.astype(np.int64) * size
    return np.minimum(base, head.levels - 1)  # a corrupt stream never feeds the model a level it lacks


def _sizes(levels: int) -> list[int]:
    """Levels per symbol of each digit, most significant first: [256, 1] for two digits, [1] for one."""
    return [DIGIT ** d for d in reversed(range(digits_of(levels)))]
