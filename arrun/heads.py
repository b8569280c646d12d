"""The output heads, as the runtime's modules name them; each is defined in ``arrun.contract.heads`` (one
``Head`` object per kind in the ``HEADS`` registry), where artrain and arexport find them too."""
from __future__ import annotations

from .contract.heads import HEADS, Head, LogisticMixture, Softmax, log_scale_floor
from .contract.schema import ModelInfo


def head_for(info: ModelInfo) -> Head:
    """The head a model's metadata declares (``ModelInfo.head``)."""
    return info.head


__all__ = ["HEADS", "Head", "LogisticMixture", "Softmax", "log_scale_floor", "head_for"]
