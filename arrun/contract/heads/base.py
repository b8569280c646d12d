"""What every output head is: the interface, and the array functions its likelihood is written in.

A head reads a graph's per-element output row (``output_name``, ``width`` floats) as a distribution over
the V levels. Its likelihood is written once, against ``ArrayOps``: arrun scores with ``NUMPY_OPS`` (float64)
and artrain trains with the torch functions of the same names (``artrain.models.base.TORCH_OPS``, float32,
differentiable), so a model is trained and scored by one formula and this package never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np


@dataclass(frozen=True)
class ArrayOps:
    """The array functions a head's ``level_log_probs`` may use beyond arithmetic, indexing (``x[..., :K]``,
    ``x[..., None]``) and comparisons; each acts on the last axis where it reduces or selects."""
    real: Callable[[Any], Any]         # outputs -> the computing precision (numpy float64, torch float32)
    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    expm1: Callable[[Any], Any]
    softplus: Callable[[Any], Any]     # ln(1 + e^x) without overflow
    where: Callable[[Any, Any, Any], Any]
    maximum: Callable[[Any, float], Any]     # (x, scalar) elementwise
    logsumexp: Callable[[Any], Any]    # (..., W) -> (...)
    log_softmax: Callable[[Any], Any]  # (..., W) -> (..., W)
    take: Callable[[Any, Any], Any]    # x (..., W), integer indices (...) -> (...) x[..., index]


def logsumexp(x: np.ndarray) -> np.ndarray:
    """(..., W) -> (...) ln sum e^x over the last axis; a row of all -inf gives -inf, not nan."""
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


NUMPY_OPS = ArrayOps(
    real=lambda x: x.astype(np.float64), exp=np.exp, log=np.log, expm1=np.expm1,
    softplus=lambda x: np.logaddexp(0, x), where=np.where, maximum=np.maximum, logsumexp=logsumexp,
    log_softmax=lambda x: x - logsumexp(x)[..., None],
    take=lambda x, index: np.take_along_axis(x, index[..., None], axis=-1)[..., 0])


class Head:
    """An output head over ``levels`` levels, with the parameters ``params`` (its ``ar.output`` fields).

    A subclass sets the class attributes and defines ``width``, ``level_log_probs``, ``greedy``, ``sample``
    and ``cdf``; it is registered under ``kind`` in ``arrun.contract.heads.HEADS`` (built in, or an entry
    point of the group ``arrun.heads``). Its constructor takes ``(levels, **params)``.
    Shapes: outputs (..., W) float32 with W = ``width``; targets and levels int64."""

    kind: ClassVar[str]           # the registry name and the "kind" of the 'ar.output' metadata
    output_name: ClassVar[str]    # the graph output that holds each element's W parameters
    samples_in_graph: ClassVar[bool] = False  # a chunk graph samples it (inverse CDF of a softmax of the outputs)
    greedy_slack: ClassVar[int] = 0  # levels two greedy picks may differ by when their outputs agree to float32

    def __init__(self, levels: int):
        self.levels = levels

    @property
    def params(self) -> dict:
        """The head's parameters as written in 'ar.output' next to its kind (JSON values)."""
        return {}

    @classmethod
    def from_params(cls, levels: int, params: dict) -> "Head":
        """The head of a file's 'ar.output' fields; ValueError when they are not the constructor's or out of range."""
        try:
            return cls(levels, **params)
        except TypeError as e:  # a missing or unknown field
            raise ValueError(f"the {cls.kind} head's fields are wrong ({e})") from None

    @property
    def spec(self) -> dict:
        """{"kind": kind, **params}: the 'ar.output' object."""
        return {"kind": self.kind, **self.params}

    @property
    def width(self) -> int:
        """W, the outputs per element."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """A few words for `arrun info`."""
        return self.kind

    def check(self, options) -> None:
        """Raise UsageError for sampling options (``arrun.sampling.SamplingOptions``) this head cannot honour."""

    def level_log_probs(self, outputs, targets, ops: ArrayOps = NUMPY_OPS):
        """outputs (..., W), targets (...) levels -> (...) ln p(target), written in ``ops`` only."""
        raise NotImplementedError

    def nll(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The summed -ln p(target) in float64 (what `arrun score` adds up)."""
        return float(-self.level_log_probs(outputs, targets).sum())

    def greedy(self, outputs: np.ndarray) -> np.ndarray:
        """(..., W) -> (...) int64 the temperature-0 level."""
        raise NotImplementedError

    def decision(self, outputs: np.ndarray) -> np.ndarray:
        """(..., W) -> (...) int64 the discrete choice two runtimes of one model must agree on (verification):
        the greedy level, unless that level rounds a continuous value (then ``greedy_slack`` > 0)."""
        return self.greedy(outputs)

    def sample(self, outputs: np.ndarray, options, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """(B, W) -> (B,) int64 levels, one uniform of rngs[i] per row i (none at temperature 0)."""
        raise NotImplementedError

    def cdf(self, outputs: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """outputs (B, W), levels (B, N) in 0..V -> (B, N) float64 P(x < level): 0 at 0, 1 at V."""
        raise NotImplementedError
