"""Hand-written CPU kernels of the Brownian tree: the level update in one pass over memory.

``level_update`` computes, for the R new rows of one tree level,

    table[start + r, 2j + s] = (ca_r table[ra_r, 2j + s] + cb_r table[rb_r, 2j + s]) + sig_r N_rjs,

    x = mix(states_r + j G),  u1 = (hi32(x) + 1/2) 2^-32,  theta = lo32(x) (2 pi 2^-32),
    N_rj0 = sqrt(-2 log u1) cos(theta),  N_rj1 = sqrt(-2 log u1) sin(theta)

(SplitMix64 and Box-Muller as in ``_counter``), and ``gather_diff`` the grid increments
``out[q] = table[r1_q] - table[r0_q]``. They are the CPU form of the ``torch.compile``-d kernels of
``_kernels`` and give the same values bit for bit: the same ``at::vec`` operations (Sleef's
``log`` / ``cos`` / ``sin``) in the same order, built by Inductor's C++ toolchain with its flags
(vector ISA of the machine, OpenMP, ``-ffp-contract=off``), so a tree's values do not depend on
which of the two computed them.

Why by hand: Inductor splits the level update into three passes (the Box-Muller pair interleaved
into a temporary with scalar stride-2 stores, the bridge update into a second temporary, then a
copy into the table, since it cannot prove that the rows read and the rows written are
disjoint). Here each value is computed once, the pair is interleaved in registers
(``at::vec::interleave2``) and stored straight into the table (timings:
``benchmarks/README.md``).

The sources are ``_csrc/brownian_level.cpp`` and ``_csrc/brownian_diff.cpp``, compiled once per
machine and dtype on first use (``neuralsde_fin._native``). If that fails (no C++ compiler, a
torch without this private API), ``available`` returns False and the tree uses the
``torch.compile`` kernels instead (or, failing those too, eager tensor ops).

References:
    Steele, Lea and Flood (2014), "Fast splittable pseudorandom number generators";
    Box and Muller (1958), "A note on the generation of random normal deviates".
"""

from __future__ import annotations

import torch

from neuralsde_fin import _native as _build

__all__ = ["available", "gather_diff", "level_update"]

def _level(dtype: torch.dtype):
    i64, idx = "const int64_t", "const int64_t*"
    args = ["S*", idx, idx, "const S*", "const S*", "const S*", idx, idx, i64, i64, i64, i64]
    return _build.kernel("brownian_level.cpp", dtype, args)


def _diff(dtype: torch.dtype):
    args = ["const S*", "const int64_t*", "const int64_t*", "S*"] + ["const int64_t"] * 3
    return _build.kernel("brownian_diff.cpp", dtype, args)


def available(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernels run for ``dtype`` on ``device`` (CPU, float32 / float64), building
    them on first use; False for good after a failed build."""
    return _build.available(dtype, device, (_level, _diff))


def _flat(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if t.dtype != dtype:
        raise TypeError(f"native Brownian kernel: expected {dtype}, got {t.dtype}")
    return t.reshape(-1).contiguous()


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
    """``_kernels.level_update`` in one pass (``table`` contiguous, CPU).

    Shape:
        table: (rows, 2P); ra, rb, ca, cb, sig, states: (R, 1); pairs: (P,).
    """
    if not table.is_contiguous() or table.shape[1] != 2 * pairs.shape[0]:
        raise ValueError("native Brownian kernel: table must be contiguous with 2P columns")
    i64, dt = torch.int64, table.dtype
    _level(dt)(
        table, _flat(ra, i64), _flat(rb, i64), _flat(ca, dt), _flat(cb, dt), _flat(sig, dt),
        _flat(states, i64), _flat(pairs, i64), table.shape[1], start, states.shape[0],
        table.shape[0],
    )


def gather_diff(table: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """``table[r1] - table[r0]`` (``table`` contiguous, CPU).

    Shape:
        table: (rows, n); r0, r1: (Q,). Returns (Q, n).
    """
    if not table.is_contiguous() or r0.shape != r1.shape:
        raise ValueError("native Brownian kernel: table must be contiguous, r0 and r1 alike")
    out = table.new_empty((r0.shape[0], table.shape[1]))
    i64 = torch.int64
    _diff(table.dtype)(
        table, _flat(r0, i64), _flat(r1, i64), out, table.shape[1], r0.shape[0], table.shape[0]
    )
    return out
