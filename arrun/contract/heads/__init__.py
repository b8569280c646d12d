"""Output heads: how a graph's per-element output is a distribution over the V levels.

One head is one ``Head`` subclass (``base``) in one module: its 'ar.output' kind and parameters, its graph
output name and width, its likelihood (written once against ``ArrayOps``: numpy here, torch in artrain), its
sampler from one uniform per element, its CDF (the entropy coder's view: ``arrun.compress``), its greedy pick
and the sampling options it refuses. ``HEADS`` finds it by kind: the built-ins below, or a package's entry
point in the group ``arrun.heads``::

    [project.entry-points."arrun.heads"]
    binary = "mypackage.heads:Binary"

- ``softmax``: W = V logits (``Softmax``);
- ``logistic_mixture``: W = 3K, a discretized mixture of K logistics (``LogisticMixture``).
"""
from __future__ import annotations

from ..registry import Registry
from .base import NUMPY_OPS, ArrayOps, Head
from .logistic_mixture import LogisticMixture, log_scale_floor
from .softmax import Softmax


def _check_head(name: str, cls) -> None:
    """An entry point of ``arrun.heads`` must be a Head subclass whose ``kind`` is its name."""
    if not (isinstance(cls, type) and issubclass(cls, Head)) or getattr(cls, "kind", None) != name:
        raise ValueError(f"the entry point {name!r} of 'arrun.heads' is {cls!r}, not a Head subclass of kind "
                         f"{name!r}; fix the plug-in's pyproject.toml")


HEADS: Registry[type[Head]] = Registry("arrun.heads", "output head", _check_head)
HEADS.register(Softmax.kind, Softmax)
HEADS.register(LogisticMixture.kind, LogisticMixture)


def make_head(spec: dict, levels: int) -> Head:
    """The head an 'ar.output' object ({"kind": ..., **params}) declares over ``levels`` levels; ValueError
    (``UnknownEntry`` for an unknown kind) when it declares none."""
    params = dict(spec)
    kind = params.pop("kind", None)
    if not isinstance(kind, str):
        raise ValueError(f"the output head has no kind (got {spec!r}); expected one of {', '.join(HEADS.names())}")
    return HEADS[kind].from_params(levels, params)


__all__ = ["HEADS", "Head", "ArrayOps", "NUMPY_OPS", "Softmax", "LogisticMixture", "log_scale_floor", "make_head"]
