"""The model families and how to build one from a config dict (as stored with a checkpoint).

Every module of this package is imported, so a built-in family is one new file. A family from outside this
repository is found by name through the entry-point group ``artrain.families`` or named as
``package.module:Class`` (an installed module: nothing is ever run from a file path); docs/families.md
is the protocol it implements."""
from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import re
import sys
from dataclasses import fields

import torch

from arrun.contract.errors import ARError, first_line

from .base import FAMILIES, ARModel

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

_IMPORT_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")  # package.module:Class


def family_class(family: str) -> type[ARModel]:
    """The class of ``family``: a registered name (built-in or entry point) or ``package.module:Class``,
    imported and then registered under its ``family``. ValueError (one line, saying what to do) otherwise."""
    if ":" not in family:
        return FAMILIES[family]  # UnknownEntry (a ValueError) names the families there are
    if not _IMPORT_SPEC.fullmatch(family):
        raise ValueError(f"model {family!r} is not package.module:Class (an installed module, not a file path); "
                         f"install the package and name its class, or choose one of {', '.join(FAMILIES)}")
    module_name, class_name = family.split(":")
    try:
        module = _import_installed(module_name)
    except Exception as e:  # the plug-in's own import failed: one line, not its traceback
        raise ValueError(f"cannot import {module_name} for the model {family} ({type(e).__name__}: {e}); "
                         "install the package that provides it") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ARModel) and isinstance(cls.__dict__.get("family"), str)):
        raise ValueError(f"{family} is not an ARModel subclass with its own `family` name; "
                         "see docs/families.md for what a family class declares")
    if cls.family in FAMILIES and FAMILIES[cls.family] is not cls:
        known = FAMILIES[cls.family]
        raise ValueError(f"{family} has the family name {cls.family!r} of {known.__module__}:{known.__qualname__}; "
                         "give the class a family name of its own")
    return FAMILIES.register(cls.family, cls)


def _import_installed(module_name: str):
    """Import ``module_name`` from the installed packages: not from the working directory, which `python -m`
    and `python -c` put first on sys.path, so a checkpoint naming a module cannot run a file lying there."""
    here = {"", os.getcwd()}
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if p not in here and os.path.abspath(p) != os.getcwd()]
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path[:] = saved


def family_fields(cls: type[ARModel]) -> dict[str, str]:
    """What a checkpoint's config.json stores to find ``cls`` again: {"family": name}, plus
    {"family_import": "package.module:Class"} for a class from outside this package."""
    if cls.__module__.startswith(f"{__name__}."):
        return {"family": cls.family}
    return {"family": cls.family, "family_import": f"{cls.__module__}:{cls.__qualname__}"}


def checkpoint_family(config: dict) -> type[ARModel]:
    """The family class of a checkpoint's config (``family_fields``): its ``family_import`` when it has one, else
    its ``family``; ValueError when they disagree or cannot be found."""
    cls = family_class(config.get("family_import") or config["family"])
    if cls.family != config["family"]:
        raise ValueError(f"{config['family_import']} is the family {cls.family!r}, not {config['family']!r}")
    return cls


class FamilyError(ARError):
    """A family's own code raised, or returned what its declarations rule out (exit code 1); the message names
    the family, the member and what to fix."""


def family_advice(family: ARModel | type[ARModel]) -> str:
    """What to do about a family that broke: fix it (a plug-in, named by its class) or report it (built in)."""
    cls = family if isinstance(family, type) else type(family)
    if cls.__module__.startswith(f"{__name__}."):
        return "report it (a built-in family)"
    return f"fix the family ({cls.__module__}:{cls.__qualname__}; docs/families.md)"


@contextlib.contextmanager
def family_call(family: ARModel | type[ARModel], member: str):
    """Run a family's own code (``member``: "step", "forward", ...): what it raises leaves as one FamilyError
    naming the family, the member and the exception; the project's own errors, out-of-memory and interrupts
    pass unchanged. AR_DEBUG=1 shows the family's traceback (the FamilyError is chained to it)."""
    try:
        yield
    except (ARError, MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as e:
        raise FamilyError(f"family {family.family!r} raised {type(e).__name__} in {member}: {first_line(e)}; "
                          f"{family_advice(family)}") from e


def check_outputs(model: ARModel, member: str, outputs, leading: tuple[int, ...]) -> torch.Tensor:
    """``outputs`` of ``model.<member>`` for inputs of shape ``leading`` ((B,) a step, (B, T) a sequence), checked
    to be a tensor (*leading, W), W the output head's width; FamilyError naming what it is otherwise."""
    shape = (*leading, model.output_width)
    if not isinstance(outputs, torch.Tensor):
        raise FamilyError(f"family {model.family!r} {member} returned a {type(outputs).__name__}, not a tensor of "
                          f"outputs {shape}; {family_advice(model)}")
    if tuple(outputs.shape) != shape:
        raise FamilyError(f"family {model.family!r} {member} returned outputs of shape {tuple(outputs.shape)} for "
                          f"inputs {tuple(leading)}; expected {shape}, the last the output head's width; "
                          f"{family_advice(model)}")
    return outputs


MAX_SIZE = 1 << 20  # any integer config field (channels, layers, vocabulary, ...)


def make_config(family: str, values: dict):
    """Family name + dict of config fields -> the family's frozen config. Unknown keys, values of the wrong
    type, sizes < 1 (< 0 for a field whose default is 0: classes, mel bins) or > MAX_SIZE and a dropout outside
    [0, 1) raise ValueError."""
    config_cls = family_class(family).Config
    types = {f.name: getattr(f.type, "__name__", f.type) for f in fields(config_cls)}  # "int" with or without
    # `from __future__ import annotations` in the family's module
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
        if types[name] == "bool" and not isinstance(value, bool):
            raise ValueError(f"{family} config {name!r} must be true or false, got {value!r}")
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
    """The model of ``family`` (a name or package.module:Class) with the config ``values`` (``make_config``)."""
    cls = family_class(family)
    config = make_config(family, values)
    with family_call(cls, "__init__"):
        return cls(config)


__all__ = ["ARModel", "FAMILIES", "FamilyError", "family_call", "check_outputs", "family_class", "family_fields", "checkpoint_family",
           "make_config", "build_model", "config_keys"]
