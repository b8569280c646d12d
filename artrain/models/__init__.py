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


def make_config(family: str, values: dict):
    """Family name + dict of config fields -> the family's frozen config; unknown keys raise ValueError."""
    config_cls = family_class(family).Config
    allowed = {f.name for f in fields(config_cls)}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"unknown {family} config keys: {', '.join(sorted(unknown))} "
                         f"(it has {', '.join(sorted(allowed))})")
    return config_cls(**values)


def build_model(family: str, values: dict) -> ARModel:
    return family_class(family)(make_config(family, values))


__all__ = ["ARModel", "FAMILIES", "family_class", "make_config", "build_model"]
