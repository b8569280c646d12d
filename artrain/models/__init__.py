"""The model families, one module each, and how to build one from a config dict (as stored with a
checkpoint). Every module of this package is imported, so a new family is one new file."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields

from .base import FAMILIES, ARModel

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def family_class(family: str) -> type[ARModel]:
    """The class of ``family``; ValueError naming the families there are."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


MAX_SIZE = 1 << 20  # any integer config field (channels, layers, vocabulary, ...)


def make_config(family: str, values: dict):
    """Family name + dict of config fields -> the family's frozen config. Unknown keys, values of the wrong
    type, sizes < 1 (< 0 for a field whose default is 0: classes, mel bins) or > MAX_SIZE and a dropout outside
    [0, 1) raise ValueError."""
    config_cls = family_class(family).Config
    types = {f.name: f.type for f in fields(config_cls)}
    may_be_zero = {f.name for f in fields(config_cls) if f.default == 0}
    unknown = set(values) - set(types)
    if unknown:
        raise ValueError(f"unknown {family} config keys: {', '.join(sorted(unknown))} "
                         f"(it has {', '.join(sorted(types))})")
    for name, value in values.items():
        low = 0 if name in may_be_zero else 1
        if types[name] == "int" and (not isinstance(value, int) or isinstance(value, bool)
                                     or not low <= value <= MAX_SIZE):
            raise ValueError(f"{family} config {name!r} must be an integer in {low}..{MAX_SIZE}, got {value!r}")
        if types[name] == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                       or not 0 <= value < 1):
            raise ValueError(f"{family} config {name!r} must be a number in [0, 1), got {value!r}")
    return config_cls(**values)


def config_keys() -> dict[str, list[str]]:
    """Family -> its config fields but vocab_size and num_classes, which the training data always sets (as
    it sets an image model's height and width)."""
    return {name: [f.name for f in fields(cls.Config) if f.name not in ("vocab_size", "num_classes")]
            for name, cls in FAMILIES.items()}


def build_model(family: str, values: dict) -> ARModel:
    return family_class(family)(make_config(family, values))


__all__ = ["ARModel", "FAMILIES", "family_class", "make_config", "build_model", "config_keys"]
