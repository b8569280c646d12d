"""The output heads under the runtime's name; each is defined in ``arrun.contract.heads`` (one ``Head`` object
per kind in the ``HEADS`` registry), where arrun, artrain and arexport find them; a model's is ``ModelInfo.head``."""
from __future__ import annotations

from .contract.heads import HEADS, Head, LogisticMixture, Softmax, log_scale_floor

__all__ = ["HEADS", "Head", "LogisticMixture", "Softmax", "log_scale_floor"]
