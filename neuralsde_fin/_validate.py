"""Argument validators: one behaviour everywhere for ints, bools and numpy scalars.

An integer argument accepts a Python ``int`` or a numpy integer (``np.int64(3)``) and refuses
``bool`` (``True`` is not a count) and floats (``3.0``); the error is one line naming the
argument and the value. A leaf module (no package imports).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_choice", "check_int", "check_number", "is_int"]


def is_int(v: Any) -> bool:
    """True for ints and numpy integers, False for bools and everything else."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_int(name: str, v: Any, lo: int | None = 1, hi: int | None = None, *,
              where: str = "") -> int:
    """``int(v)`` if ``v`` is an integer in [lo, hi] (bounds optional), else a ValueError.

    Args:
        name: the argument's name, for the message.
        v: the value.
        lo: smallest allowed value (None: no bound; default 1, a positive count).
        hi: largest allowed value (None: no bound).
        where: a prefix for the message (e.g. ``"evaluate: "``).
    """
    if not is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        if lo == 1 and hi is None:
            what = "a positive integer"
        elif lo == 0 and hi is None:
            what = "a non-negative integer"
        else:
            lo_s = "" if lo is None else f" >= {lo}"
            hi_s = "" if hi is None else f" <= {hi}"
            what = "an integer" + lo_s + ("," if lo_s and hi_s else "") + hi_s
        raise ValueError(f"{where}{name} must be {what}, got {v!r}")
    return int(v)


def check_number(name: str, v: Any, *, positive: bool = False, nonneg: bool = False,
                 where: str = "") -> float:
    """``float(v)`` if ``v`` is a finite real number (optionally > 0 or >= 0), else ValueError."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok and positive:
        ok = float(v) > 0
    if ok and nonneg:
        ok = float(v) >= 0
    if not ok:
        what = "a positive" if positive else "a non-negative" if nonneg else "a finite"
        raise ValueError(f"{where}{name} must be {what} number, got {v!r}")
    return float(v)


def check_choice(name: str, v: Any, choices, *, where: str = "") -> Any:
    """``v`` if it is one of ``choices``, else a ValueError listing them."""
    if v not in choices:
        raise ValueError(f"{where}{name} must be one of {tuple(choices)}, got {v!r}")
    return v
