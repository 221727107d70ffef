"""One switch for every accelerated path: native CPU kernels and ``torch.compile``-d steps.

The package has two kinds of acceleration, both optional and both falling back to eager torch
code with the same values to float rounding:

* **native kernels** (``_native.py``, sources in ``_csrc/``): the Brownian tree's level update
  and the reversible Heun sampling solve on the CPU. Built once per machine (seconds), then
  loaded in about a millisecond per process, so on the CPU they run for every size: a path's
  values then never depend on how many paths are drawn with it.
* **compiled steps** (``torch.compile``, ``_solvers/_compiled.py``): the solver steps on other
  devices, the adjoint's backward steps and the CDE discriminator's steps. Compiling costs
  5-30 s per process and shape, so it is opt-in, and on by default only for training runs of
  at least ``AUTO_COMPILE_STEPS`` steps (``resolve``).

One mode governs both (:func:`mode`): inside ``with nsf.acceleration(flag):`` the flag; else
the environment variable ``NEURALSDE_FIN_COMPILE`` (``1`` on, ``0`` off), read here only; else
None, the defaults above. ``True`` compiles what can be compiled and runs the native kernels;
``False`` keeps every path eager (native kernels, Brownian kernels and compiled steps alike).
``calibrate(compile=)`` is the same switch for one run. A leaf module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["AUTO_COMPILE_STEPS", "ENV", "acceleration", "compile_steps", "compiling", "mode",
           "native", "resolve"]

#: The environment variable of the default mode.
ENV = "NEURALSDE_FIN_COMPILE"
#: Training runs of at least this many steps compile their solver steps unless told otherwise.
AUTO_COMPILE_STEPS = 1000
#: Tests set this False to run the ``torch.compile`` forms of the native kernels (what other
#: devices run) on the CPU.
NATIVE = True

_override: bool | None = None
_compile_override: bool | None = None


def mode() -> bool | None:
    """The explicit mode: :func:`acceleration`'s flag inside one, else ``NEURALSDE_FIN_COMPILE``
    (``1`` True, ``0`` False), else None (the defaults apply)."""
    if _override is not None:
        return _override
    return {"1": True, "0": False}.get(os.environ.get(ENV, "").strip())


def native() -> bool:
    """Whether the native CPU kernels may run (they still need to build): unless switched off."""
    return NATIVE and mode() is not False


def compiling() -> bool:
    """Whether solver steps are ``torch.compile``-d now: inside :func:`compile_steps` its flag,
    else an explicit mode of True."""
    if _compile_override is not None:
        return _compile_override
    return mode() is True


@contextlib.contextmanager
def compile_steps(enabled: bool) -> Iterator[None]:
    """Compile the solver steps (or not) inside the block, leaving the native kernels as the
    mode has them: a training run's ``compile=`` (``_calibrate._train``)."""
    global _compile_override
    previous, _compile_override = _compile_override, bool(enabled)
    try:
        yield
    finally:
        _compile_override = previous


def resolve(compile: bool | None, steps: int) -> bool:
    """Whether a training run of ``steps`` steps compiles its solver steps.

    An explicit ``compile`` wins; else the mode if one is set; else compile when ``steps >=
    AUTO_COMPILE_STEPS``, where the one-off compilation is paid back.
    """
    if compile is not None:
        return bool(compile)
    m = mode()
    return m if m is not None else steps >= AUTO_COMPILE_STEPS


@contextlib.contextmanager
def acceleration(enabled: bool = True) -> Iterator[None]:
    """Switch acceleration on (compile what can be, native kernels) or off (all eager).

    Overrides ``NEURALSDE_FIN_COMPILE`` inside the block, for every accelerated path: the
    native CPU kernels (Brownian tree, sampling solve, the adjoint's forward pass) and the
    ``torch.compile``-d steps (sampling on other devices, ``sdeint(..., adjoint=True)`` and
    ``cdeint`` forward and backward steps). Blocks nest, and the previous mode is restored on
    exit; the flag is process-wide. Compilation costs 5-30 s once per process, architecture and
    batch shape (``benchmarks/README.md`` has the gains).

    Example:
        >>> with nsf.acceleration():
        ...     paths = model.sample(100_000, seed=0)  # doctest: +SKIP
    """
    global _override
    previous, _override = _override, bool(enabled)
    try:
        yield
    finally:
        _override = previous
