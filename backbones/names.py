"""One registry for every kind of named thing (backbones, genotypes, search methods), and the
one did-you-mean hint of every "unknown name" error.

A ``Registry`` maps names to objects of one kind, filled by a ``register`` decorator (timm's
model registry, mmengine's "register a class, configure by dict", in small). The built-ins
register themselves when their modules are imported; a registry imports them (``builtins``) on
its first lookup, so no caller has to remember to, and importing a light module of the package
(``backbones.atomic`` for the report) does not build the whole model zoo.
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    """'; did you mean X?' for the closest option, or ''."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


class UnknownNameError(KeyError):
    """A name no registry holds; the message names the kind, the valid names and the closest."""

    def __str__(self) -> str:          # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Names -> objects of one ``kind``; ``error`` is the exception an unknown name raises."""

    def __init__(self, kind: str, error: type[UnknownNameError] = UnknownNameError,
                 builtins: tuple[str, ...] = ()) -> None:
        self.kind, self.error, self.builtins = kind, error, builtins
        self._items: dict[str, T] = {}
        self._loaded = not builtins

    def _load(self) -> None:
        """Import the modules that register the built-ins (once, on the first lookup)."""
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                importlib.import_module(module)

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (default: its ``__name__``). Registering
        another object under a taken name is an error; the same object again is a no-op."""
        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj
        return deco

    def get(self, name: str, also: str = "") -> T:
        """The object named ``name``; an unknown name raises ``error`` listing the valid names
        (and ``also``, other accepted forms) with the closest one."""
        self._load()
        if name not in self._items:
            valid = f"{self.names()}" + (f" or {also}" if also else "")
            raise self.error(f"unknown {self.kind} {name!r}: expected one of {valid}"
                             f"{did_you_mean(name, self._items)}")
        return self._items[name]

    def find(self, name: str) -> T | None:
        self._load()
        return self._items.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
