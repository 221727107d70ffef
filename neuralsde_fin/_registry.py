"""The class-decorator registries behind ``SOLVERS``, ``ODE_SOLVERS`` and ``LOSSES``.

A leaf module with no package imports, so any layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)


def registrar(table: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """A ``register(name)`` class decorator that adds classes to ``table`` and sets ``cls.name``.

    Args:
        table: the registry, name -> class.
        kind: what the classes are, for the error on a duplicate name (e.g. "solver").
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
