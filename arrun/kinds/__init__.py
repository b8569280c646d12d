"""The data kinds: one ``DataKind`` object per kind, looked up by the model's ``ar.data.kind`` in one registry.

Everything arrun does differently for images, text and audio lives in the kind's module (``image``, ``text``,
``audio``): its metadata fields, prompt and length rules, output sink, how scoring data is read, how
``arrun compress`` frames a file, and its real-time figure. Outside this package no code branches on the
data kind. A new kind is a ``DataKind`` subclass in its own module, registered here or, from another package,
through an entry point whose value is the kind object (not its class)::

    [project.entry-points."arrun.data_kinds"]
    bytes = "mypackage.kinds:BYTES"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract.errors import UsageError
from ..contract.registry import Registry, UnknownEntry
from ..contract.schema import Key, ModelInfo, SchemaError
from .audio import AudioKind
from .base import DataKind, Framed
from .image import ImageKind
from .text import TextKind
from .utf8 import Utf8Kind

__all__ = ["DATA_KINDS", "DataKind", "Framed", "kind_of", "load_sequences"]


def _check(name: str, kind) -> None:
    if not isinstance(kind, DataKind) or kind.name != name:
        raise ValueError(f"the entry point {name!r} is not a DataKind object named {name!r}")


DATA_KINDS: Registry[DataKind] = Registry("arrun.data_kinds", "data kind", _check)
for _kind in (ImageKind(), TextKind(), Utf8Kind(), AudioKind()):
    DATA_KINDS.register(_kind.name, _kind)


def kind_of(info: ModelInfo, source: str = "the model") -> DataKind:
    """The kind object of ``info``'s data kind, after checking the fields it needs; SchemaError otherwise."""
    try:
        kind = DATA_KINDS[info.data_kind]
    except UnknownEntry as e:
        raise SchemaError(f"metadata '{Key.DATA_KIND}' of {source} is not usable here ({e})") from None
    problems = kind.problems(info)
    if problems:
        raise SchemaError(f"inconsistent metadata in {source}: {'; '.join(problems)}; re-export it with `arexport onnx`")
    return kind


def load_sequences(path: Path, info: ModelInfo, unknown: str = "error") -> list[tuple[np.ndarray, str | None]]:
    """DATA for scoring -> (int64 token sequence, class name or None) pairs; UsageError when it is not of
    the model's kind: a file whose suffix another kind claims, or (for a kind with suffixes of its own) a
    file whose suffix no kind claims, which is the first suffix-less kind's (text's). A kind that
    ``takes_any_file`` (utf8) takes every file."""
    path, kind = Path(path), DATA_KINDS[info.data_kind]
    if not path.exists():
        raise UsageError(f"{path} does not exist; give {kind.expected}")
    if not path.is_dir() and not path.is_file():
        raise UsageError(f"{path} is not a regular file or folder; give {kind.expected}")
    if not path.is_dir() and not kind.takes_any_file:
        try:
            kinds = [k for _, k in DATA_KINDS.items()]
        except UnknownEntry as e:  # an installed plug-in kind that cannot be imported
            raise UsageError(str(e)) from None
        found = next((k for k in kinds if path.suffix.lower() in k.suffixes), None)
        if found is None and kind.suffixes:
            found = next(k for k in kinds if not k.suffixes)
        if found is not None and found is not kind:
            raise UsageError(f"{path} is {found.name} data but the model takes {kind.name} data; give {kind.expected}")
    try:
        return kind.load(path, info, unknown)
    except OSError as e:
        raise UsageError(f"cannot read {e.filename or path} ({e.strerror}); check the path and its permissions") from None
