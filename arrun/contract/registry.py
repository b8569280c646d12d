"""One registry per extension point (model families, output heads, graph kinds, data kinds).

This project registers its built-in entries in code; a package outside the repository adds one by
declaring a Python entry point in the registry's group, found through ``importlib.metadata`` the way
pytest finds its plugins, with no change to this project::

    # the plug-in's pyproject.toml
    [project.entry-points."artrain.families"]
    linrec = "arlinrec.model:LinearRecurrence"

An entry point is imported only when its name is looked up (or every name is listed), never at start-up.
Lookups of unknown names raise ``UnknownEntry`` (a ValueError) naming what there is.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownEntry(ValueError):
    """No built-in entry and no installed entry point has this name."""


class Registry(Generic[T]):
    """name -> T: the built-ins registered with ``register``, then the entry points of ``group``.

    ``check(name, obj)`` (optional) validates a loaded entry point and raises ValueError when it is not a
    ``what`` (a family class that is no ARModel subclass, say)."""

    def __init__(self, group: str, what: str, check: Callable[[str, T], None] | None = None):
        self.group, self.what, self._check = group, what, check
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add a built-in ``obj`` under ``name`` (a later registration of the same name replaces it)."""
        self._entries[name] = obj
        return obj

    def _installed(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def __getitem__(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        found = self._installed().get(name)
        if found is None:
            raise UnknownEntry(f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())}, or install "
                               f"a package that declares it in the entry-point group {self.group!r}")
        try:
            obj = found.load()
        except Exception as e:  # the plug-in's own import failed: say which one, not a traceback
            raise UnknownEntry(f"the {self.what} {name!r} ({found.value}, entry-point group {self.group!r}) could not "
                               f"be imported ({type(e).__name__}: {e}); reinstall the package that provides it") from e
        if self._check:
            self._check(name, obj)
        return self.register(name, obj)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._installed()

    def names(self) -> list[str]:
        """Every name: the built-ins in registration order, then the installed entry points, sorted."""
        return [*self._entries, *sorted(set(self._installed()) - set(self._entries))]

    def __iter__(self) -> Iterator[str]:
        """The names, as ``names()``: a registry reads like a dict (``", ".join(registry)``, ``set(registry)``)."""
        return iter(self.names())

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) for every name, importing the entry points not loaded yet."""
        return ((name, self[name]) for name in self.names())
