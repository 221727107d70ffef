"""The hot kernels of the Brownian tree: key hashing and the fused level update.

``level_update`` is one pure function run either eagerly or compiled. Compiled means, on the CPU,
the hand-written one-pass kernels of ``_native`` (built once per machine), and on other devices,
or if those cannot be built, ``torch.compile`` of ``level_update`` (which fuses the hash,
Box-Muller and the bridge update). The two compiled forms give the same values bit for bit. The
integer hash is identical in every mode; the floating transform may differ in the last ulp
between eager and compiled, so each tree picks one mode for its whole life (:func:`use_compiled`):
on the CPU the native kernels for every size unless acceleration is switched off (``_accel``);
elsewhere ``torch.compile`` when acceleration is on, or by default for trees of at least
``COMPILE_MIN_ELEMENTS`` values per time (paths x channels). If compilation fails the eager
kernel is used, with one warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from neuralsde_fin import _accel
from neuralsde_fin._brownian import _native
from neuralsde_fin._brownian._counter import GOLDEN, _mix, box_muller

__all__ = ["fill_level", "increments", "pair_offsets", "use_compiled", "warmup"]

#: Paths x channels from which a tree uses the compiled kernel (compile takes 10-60 s once).
COMPILE_MIN_ELEMENTS = 2**14

_compiled = None
_compiled_diff = None
_compile_failed = False


def pair_offsets(n_pairs: int, device: torch.device, start: int = 0) -> torch.Tensor:
    """The SplitMix64 counter offsets ``j * G`` of the pair indices j = start .. start +
    n_pairs - 1 (int64 products wrap mod 2^64, as the counter arithmetic does)."""
    return torch.arange(start, start + n_pairs, dtype=torch.int64, device=device) * GOLDEN


def level_update(
    table: torch.Tensor,
    start: int,
    ra: torch.Tensor,
    rb: torch.Tensor,
    ca: torch.Tensor,
    cb: torch.Tensor,
    sig: torch.Tensor,
    states: torch.Tensor,
    pairs: torch.Tensor,
) -> None:
    """``table[start + r] = ca * table[ra] + cb * table[rb] + sig * N`` for r = 0 .. R-1.

    ``N[r, 2j + s]`` is Box-Muller output s (cos, sin) of ``mix(states[r] + j G)``: the normals
    of the pair stream of each row's key (see ``_counter``).

    Shape:
        table: (rows, 2P); ra, rb, ca, cb, sig: (R, 1); states: (R, 1); pairs: (P,).
    """
    x = _mix(states + pairs)
    z_cos, z_sin = box_muller(x, table.dtype)
    z = torch.stack((z_cos, z_sin), dim=-1).reshape(states.shape[0], -1)
    value = ca * table[ra.view(-1)] + cb * table[rb.view(-1)] + sig * z
    table.narrow(0, start, states.shape[0]).copy_(value)


def gather_diff(table: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """``table[r1] - table[r0]``: grid increments from the node table in one pass.

    Shape:
        table: (rows, n); r0, r1: (Q,). Returns (Q, n).
    """
    return table[r1] - table[r0]


def use_compiled(n_values: int, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a tree with ``n_values`` values per time uses the compiled kernels (see module)."""
    if device.type == "cpu" and _accel.native() and _native.available(dtype, device):
        return True
    m = _accel.mode()
    if m is not None:
        return m and not _compile_failed
    return n_values >= COMPILE_MIN_ELEMENTS and not _compile_failed


_warm: set[tuple[torch.dtype, str]] = set()


def fill_level(table, start, ra, rb, ca, cb, sig, states, pairs, compiled: bool) -> None:
    """Run ``level_update`` compiled or eagerly (eager fallback if compilation fails)."""
    global _compile_failed, _compiled
    if compiled and _accel.NATIVE and _native.available(table.dtype, table.device):
        _native.level_update(table, start, ra, rb, ca, cb, sig, states, pairs)
        return
    if compiled and not _compile_failed:
        try:
            if _compiled is None:
                _compiled = torch.compile(level_update, dynamic=True)
            key = (table.dtype, table.device.type)
            if key not in _warm:
                _warm.add(key)
                warmup(table.dtype, table.device)
            _compiled(table, start, ra, rb, ca, cb, sig, states, pairs)
            return
        except Exception as err:  # no C++ compiler, unsupported device, ...
            _compile_failed = True
            warnings.warn(f"torch.compile of the Brownian kernel failed ({err!r}); using eager "
                          "tensor ops", RuntimeWarning, stacklevel=2)
    level_update(table, start, ra, rb, ca, cb, sig, states, pairs)


def increments(table: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, compiled: bool):
    """``gather_diff`` compiled or eagerly (after ``fill_level`` has settled the mode)."""
    global _compiled_diff
    if compiled and _accel.NATIVE and _native.available(table.dtype, table.device):
        return _native.gather_diff(table, r0, r1)
    if compiled and not _compile_failed:
        if _compiled_diff is None:
            _compiled_diff = torch.compile(gather_diff, dynamic=True)
        return _compiled_diff(table, r0, r1)
    return gather_diff(table, r0, r1)


#: Values per row of the warm-up tensors. torch.compile(dynamic=True) takes its size hints
#: from the first calls, and Inductor only emits an OpenMP-parallel kernel when the hinted work
#: is large: a warm-up on tiny tensors, or one that compiled the R = 1 variant first, gave a
#: single-threaded kernel for every later tree (half the speed on 2 cores). This is the
#: smallest tree size that uses the compiled kernel.
WARMUP_VALUES = COMPILE_MIN_ELEMENTS


def warmup(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
    """Compile the kernel for ``dtype`` ahead of time (10-60 s once per process and dtype;
    2-6 s, once per machine, for the native CPU kernels).

    For ``torch.compile``, compiles the two variants it makes (any R >= 2 rows, then R = 1,
    which it specialises), with pairwise distinct sizes so that no size equality gets baked
    into the guards, and with rows of ``WARMUP_VALUES`` values, so that the kernels are
    compiled multi-threaded (both the order and the sizes matter; see ``WARMUP_VALUES``).
    """
    device = torch.device(device)
    _warm.add((dtype, device.type))
    n_pairs = WARMUP_VALUES // 2
    for r, rows in ((5, 13), (1, 7)):
        table = torch.zeros(rows, 2 * n_pairs, dtype=dtype, device=device)
        # per-row inputs built and sliced as ``VirtualBrownianTree._table`` builds them (the
        # guards compare views with their bases): a slice of rows 1 .. r of each
        ra, rb = (torch.zeros(r + 3, dtype=torch.int64).view(-1, 1).to(device)[1 : r + 1]
                  for _ in range(2))
        coef = torch.from_numpy(np.ones((3, r + 3))).to(device, dtype).unsqueeze(2)
        ca, cb, sig = (v[1 : r + 1] for v in coef.unbind(0))
        states = torch.from_numpy(np.arange(r + 3, dtype=np.int64).reshape(-1, 1))
        states = states.to(device)[1 : r + 1]
        fill_level(table, 2, ra, rb, ca, cb, sig, states, pair_offsets(n_pairs, device), True)
        r0, r1 = (torch.zeros(r + 2, dtype=torch.int64, device=device) for _ in range(2))
        increments(table, r0, r1, True)
