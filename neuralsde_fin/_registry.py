"""The one registry decorator behind ``SOLVERS``, ``ODE_SOLVERS``, ``LOSSES``, ``BASELINES`` and the
command line's ``COMMANDS``.

A leaf module with no package imports, so any layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """A ``register(name)`` decorator that adds a class (or function) to ``table`` and sets its
    ``name`` attribute.

    Args:
        table: the registry, name -> class or function.
        kind: what the entries are, for the error on a duplicate name (e.g. "solver").
    """

    def register(name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            cls.name = name
            table[name] = cls
            return cls

        return deco

    return register
