"""Registries: one table per closed choice (proxy modes, sampling modes, datasets, data formats,
ops, budget kinds, baseline networks ...), so that adding a choice is one entry in one file.

A registry maps a name to an entry (any object: a function, a class, a small dataclass) with a
one-line help text. The CLI takes its ``choices=`` and help from :meth:`Registry.names` and
:meth:`Registry.help`, the config check from :meth:`Registry.check`, and tests parametrise over
:meth:`Registry.names`, so a new entry is offered, checked and tested by being registered.
An unknown name is a one-line error with a did-you-mean hint.

Registries are torch-free: an entry whose object needs torch registers a function that imports
it when called, so that the config check and the CLI's argument parsing never load torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stnas.core.errors import ConfigError, StnasError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    help: str


class Registry(Generic[T]):
    """A named table of entries.

    Args:
        what: what an entry is, for messages (``"proxy mode"``, ``"dataset"``).
        error: the error type an unknown name raises (a StnasError: one line, exit 2).
    """

    def __init__(self, what: str, error: type[StnasError] = ConfigError):
        self.what = what
        self.error = error
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, help: str = "") -> T:
        """Registers ``obj`` under ``name``; a name is registered once."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.what} names must be non-empty strings without surrounding spaces, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = Entry(name, obj, help)
        return obj

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda obj: self.add(name, obj, help)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def check(self, name: Any, where: str | None = None) -> str:
        """``name`` when registered, else the registry's error naming ``where`` (a config key or flag)."""
        if isinstance(name, str) and name in self._entries:
            return name
        label = where or self.what
        close = difflib.get_close_matches(str(name), self.names(), n=1) if isinstance(name, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise self.error(f"{label} must be one of {', '.join(self.names())}, got {str(name)[:80]!r}{hint}")

    def get(self, name: Any, where: str | None = None) -> T:
        """The entry object registered under ``name`` (see :meth:`check`)."""
        return self._entries[self.check(name, where)].obj

    def help(self, name: str | None = None) -> str:
        """One entry's help, or ``name: help`` of every entry joined by ``; `` (for --help texts)."""
        if name is not None:
            return self._entries[self.check(name)].help
        return "; ".join(f"{e.name}: {e.help}" if e.help else e.name for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self.names())})"
