"""Condition dropout: a class-conditional model that also has an unconditioned mode.

With ``condition_dropout`` P > 0 one class id means "no condition": either a class of the data named by
``unconditioned_class`` (its clips are by nature none of the other classes, as the ``voices`` data's
'sentence'), or an extra class "none" appended after the data's classes (one more embedding row). Training
replaces each row's class by that id with probability P, so the model learns p(x) beside p(x | class); the
export declares the id (``ar.condition.unconditioned``) and arrun uses it when no condition is given.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from arrun.contract.errors import UsageError

EXTRA_CLASS = "none"  # the name of the appended unconditioned class


def with_unconditioned(data, dropout: float, class_name: str):
    """``data`` (a Dataset) with its ``unconditioned`` id set when ``dropout`` > 0 (appending the class "none"
    unless ``class_name`` names one of its classes); unchanged when ``dropout`` is 0. UsageError when the
    data has no labels or ``class_name`` is not one of its classes."""
    if not dropout:
        if class_name:
            raise UsageError("unconditioned_class needs condition_dropout > 0; set both or neither")
        return data
    if not data.num_classes:
        raise UsageError(f"condition_dropout needs labelled data; {data.name} has no classes")
    if class_name:
        if class_name not in data.class_names:
            raise UsageError(f"unconditioned_class {class_name!r} is not a class of {data.name}; use one of "
                             f"{', '.join(data.class_names)}, or leave it empty for an extra class")
        return replace(data, unconditioned=data.class_names.index(class_name))
    return replace(data, class_names=(*data.class_names, EXTRA_CLASS), unconditioned=data.num_classes)


def drop_conditions(labels: np.ndarray, dropout: float, unconditioned: int, rng: np.random.Generator) -> np.ndarray:
    """labels (B,) int64 -> a new (B,) array where each label is ``unconditioned`` with probability ``dropout``."""
    dropped = rng.random(labels.shape[0]) < dropout  # (B,)
    return np.where(dropped, unconditioned, labels).astype(np.int64)
