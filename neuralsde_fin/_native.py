"""Native CPU kernels, written with ATen's ``at::vec`` and built at run time.

The package's hand-written kernels (the Brownian tree's level update, the reversible Heun
sampling step) are C++ sources built by torch Inductor's own C++ toolchain, the one that builds
``torch.compile``'s CPU kernels: the same compiler flags (the machine's vector ISA, OpenMP,
``-ffp-contract=off``), a disk cache keyed by the source, so each kernel is compiled once per
machine (a few seconds), and a thin Python binding that takes tensors (as data pointers) and
ints. A kernel is ``extern "C" void kernel(...)``; the callers check shapes, dtypes, devices and
contiguity before calling, since the binding does not.

If a build fails (no C++ compiler, a torch whose private ``CppPythonBindingsCodeCache`` API
changed), :func:`build` raises and :func:`available` reports False for that kernel from then on,
and the callers take their ``torch.compile`` or eager path instead.
"""

from __future__ import annotations

import torch

__all__ = ["PREFIX", "available", "build", "scalar"]

#: First line of every kernel source: Inductor's prelude (``at::vec``, OpenMP, ``c10``).
PREFIX = "#include <torch/csrc/inductor/cpp_prefix.h>\n"

_SCALARS = {torch.float32: ("float", 2), torch.float64: ("double", 1)}
_built: dict[tuple, object] = {}
_failed: set[tuple] = set()


def scalar(dtype: torch.dtype) -> tuple[str, int]:
    """(C++ type, number of int64 vectors per vector of it) for float32 / float64."""
    return _SCALARS[dtype]


def build(name: str, argtypes: list[str], source: str):
    """The kernel ``name`` compiled from ``source`` (cached in process and on disk).

    Args:
        name: A key for the (source, argtypes) pair, e.g. ``"brownian.level.float"``.
        argtypes: C types of ``kernel``'s parameters, e.g. ``"const float*"``, ``"const int64_t"``.
        source: C++ source starting with :data:`PREFIX` and defining ``extern "C" void kernel``.
    """
    key = (name, tuple(argtypes), source)  # a name reused with another source is another kernel
    fn = _built.get(key)
    if fn is None:
        if key in _failed:
            raise RuntimeError(f"native kernel {name} failed to build earlier")
        try:
            from torch._inductor.codecache import CppPythonBindingsCodeCache

            fn = _built[key] = CppPythonBindingsCodeCache.load_pybinding(argtypes, source)
        except Exception:
            _failed.add(key)
            raise
    return fn


def available(dtype: torch.dtype, device: torch.device, builders) -> bool:
    """Whether native kernels run for ``dtype`` on ``device``: CPU, float32 / float64, and every
    ``builders()`` call (which builds the kernels needed) succeeds; False for good after a
    failed build."""
    if device.type != "cpu" or dtype not in _SCALARS:
        return False
    try:
        for make in builders:
            make(dtype)
    except Exception:  # noqa: BLE001 - no compiler, changed private API, ...
        return False
    return True
