"""Native CPU kernels: C++ sources shipped in ``neuralsde_fin/_csrc``, built at run time.

The package's hand-written kernels (``_csrc/brownian_level.cpp``, ``brownian_diff.cpp``: the
Brownian tree's level update and grid differences; ``_csrc/solve.cpp``: the reversible Heun
sampling solve) are written with ATen's ``at::vec`` and built by torch Inductor's own C++
toolchain, the one that builds ``torch.compile``'s CPU kernels: the same compiler flags (the
machine's vector ISA, OpenMP, ``-ffp-contract=off``), a disk cache keyed by the source, so each
kernel is compiled once per machine, and a thin Python binding that takes tensors (as data
pointers) and ints. A kernel is ``extern "C" void kernel(...)``; the callers check shapes,
dtypes, devices and contiguity before calling, since the binding does not. Each source is
compiled per dtype with ``SCALAR`` (``float`` / ``double``) and ``NI`` (int64 vectors per
``SCALAR`` vector) defined.

The toolchain is torch's private ``torch._inductor.codecache.CppPythonBindingsCodeCache`` (the
public ``torch.utils.cpp_extension`` builds the full extension headers, about a minute per
kernel here), so ``pyproject.toml`` pins the torch releases this is tested on. If a build
fails (no C++ compiler, a torch whose private API changed), :func:`build` raises and
:func:`available` reports False for that kernel from then on, and the callers take their
``torch.compile`` or eager path, which give the same values to float rounding (tested with a
forced failure).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from importlib import resources
from pathlib import Path

import torch

__all__ = ["PREFIX", "available", "build", "kernel", "read", "scalar", "source"]

#: First line of every kernel source: Inductor's prelude (``at::vec``, OpenMP, ``c10``).
PREFIX = "#include <torch/csrc/inductor/cpp_prefix.h>\n"

_SCALARS = {torch.float32: ("float", 2), torch.float64: ("double", 1)}
_built: dict[tuple, object] = {}
_failed: set[tuple] = set()
#: Tests set this to simulate a failed build (no compiler): every build then raises.
FORCE_FAIL = False


def scalar(dtype: torch.dtype) -> tuple[str, int]:
    """(C++ type, number of int64 vectors per vector of it) for float32 / float64."""
    return _SCALARS[dtype]


def read(filename: str) -> str:
    """The text of ``_csrc/<filename>`` with its quoted ``#include "x.h"`` lines replaced by
    those files (the build compiles one self-contained source in Inductor's cache folder)."""
    text = resources.files("neuralsde_fin").joinpath("_csrc", filename).read_text()
    lines = []
    for line in text.splitlines(keepends=True):
        inc = line.strip()
        if inc.startswith('#include "') and inc.endswith('"'):
            lines.append(read(inc[len('#include "'):-1]))
        else:
            lines.append(line)
    return "".join(lines)


def source(filename: str, dtype: torch.dtype) -> str:
    """The full source of ``_csrc/<filename>`` for ``dtype``: prelude, defines, file text."""
    name, lanes = scalar(dtype)
    return f"{PREFIX}#define SCALAR {name}\n#define NI {lanes}\n{read(filename)}"


def _index_path() -> Path:
    """The index of built kernels: key -> shared library (one file per torch version)."""
    root = os.environ.get("NEURALSDE_FIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neuralsde_fin"
    )
    return Path(root) / f"native-{torch.__version__}.json"


def _digest(argtypes: list[str], source: str) -> str:
    cap = torch.backends.cpu.get_cpu_capability()
    text = "\0".join([torch.__version__, cap, *argtypes, source])
    return hashlib.sha256(text.encode()).hexdigest()


def _load_library(path: str):
    """The ``kernel`` of a library built earlier by the toolchain (no Inductor import)."""
    # the address of torch's tensor-data accessor in *this* process (a child process inherits
    # its parent's environment, so the variable is always set, never defaulted)
    os.environ["_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR"] = str(
        torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr
    )
    loader = importlib.machinery.ExtensionFileLoader("kernel", path)
    spec = importlib.util.spec_from_file_location("kernel", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.kernel


def _read_index() -> dict[str, str]:
    try:
        return json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember(digest: str, path: str) -> None:
    """Add ``digest -> path`` to the index (atomic replace; a lost race only costs a lookup)."""
    from neuralsde_fin._io import atomic_write_text

    index = _read_index()
    index[digest] = path
    try:
        atomic_write_text(_index_path(), json.dumps(index, indent=0, sort_keys=True))
    except OSError:  # a read-only home: the next process builds (from the disk cache) again
        pass


def build(name: str, argtypes: list[str], source: str):
    """The kernel ``name`` compiled from ``source`` (cached in process and on disk).

    A kernel built on this machine before is loaded from the library the toolchain wrote (the
    index in ``~/.cache/neuralsde_fin``, keyed by the source, the argument types, the torch
    version and the CPU's vector ISA; about a millisecond); otherwise it is built by Inductor's
    toolchain (seconds, plus importing Inductor), and the library recorded.

    Args:
        name: A key for the (source, argtypes) pair, e.g. ``"brownian.level.float"``.
        argtypes: C types of ``kernel``'s parameters, e.g. ``"const float*"``, ``"const int64_t"``.
        source: C++ source starting with :data:`PREFIX` and defining ``extern "C" void kernel``.
    """
    key = (name, tuple(argtypes), source)  # a name reused with another source is another kernel
    fn = _built.get(key)
    if fn is None:
        if key in _failed or FORCE_FAIL:
            raise RuntimeError(f"native kernel {name} failed to build earlier")
        digest = _digest(argtypes, source)
        path = _read_index().get(digest)
        if path and os.path.isfile(path):
            try:
                fn = _built[key] = _load_library(path)
                return fn
            except Exception:  # noqa: BLE001 - a stale library: build it again
                pass
        try:
            from torch._inductor.codecache import CppPythonBindingsCodeCache

            fn = _built[key] = CppPythonBindingsCodeCache.load_pybinding(argtypes, source)
        except Exception:
            _failed.add(key)
            raise
        lib = getattr(sys.modules.get(getattr(fn, "__module__", "") or ""), "__file__", None)
        if lib:
            _remember(digest, lib)
    return fn


def kernel(filename: str, dtype: torch.dtype, argtypes: list[str]):
    """The kernel of ``_csrc/<filename>`` built for ``dtype`` (see :func:`build`).

    ``argtypes`` may use ``S`` for the scalar type (``"S*"``, ``"const S*"``).
    """
    name, _ = scalar(dtype)
    args = [a.replace("S*", f"{name}*") for a in argtypes]
    return build(f"{filename}.{name}", args, source(filename, dtype))


def available(dtype: torch.dtype, device: torch.device, builders) -> bool:
    """Whether native kernels run for ``dtype`` on ``device``: CPU, float32 / float64, and every
    ``builders()`` call (which builds the kernels needed) succeeds; False after a failed build."""
    if device.type != "cpu" or dtype not in _SCALARS or FORCE_FAIL:
        return False
    try:
        for make in builders:
            make(dtype)
    except Exception:  # noqa: BLE001 - no compiler, changed private API, ...
        return False
    return True
