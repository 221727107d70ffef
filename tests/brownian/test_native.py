"""The native CPU kernels of the Brownian tree (``_brownian/_native.py``)."""

from __future__ import annotations

import pytest
import torch

from neuralsde_fin import _accel
from neuralsde_fin._brownian import VirtualBrownianTree, _kernels, _native

F32, F64 = torch.float32, torch.float64
CPU = torch.device("cpu")

# (shape, dtype, tol, grid points): odd value counts (a padded last pair), fewer pairs than one
# vector, tol=None (sub-leaf bridges), and the benchmark's tree
CASES = [
    ((4096, 8), F32, 1 / 252, 253),
    ((301, 7), F32, None, 101),
    ((129, 9), F64, 1 / 100, 57),
    ((5,), F32, 0.01, 101),
    ((3, 3), F64, None, 11),
]

pytestmark = pytest.mark.skipif(
    not (_native.available(F32, CPU) and _native.available(F64, CPU)),
    reason="the native kernels did not build here (no C++ compiler?)",
)


def _queries(shape, dtype, tol, n, compiled: bool) -> list[torch.Tensor]:
    """A grid, a sub-grid, a two-time and a one-time query of one tree."""
    ts = torch.linspace(0, 1, n)
    bm = VirtualBrownianTree(0.0, 1.0, shape, seed=5, tol=tol, dtype=dtype)
    bm._compiled = compiled
    return [bm.increments(ts), bm.increments(ts[3:9]), bm(0.3, 0.71), bm(0.123)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_native_tree_matches_eager(case):
    """Compiled mode on the CPU (the native kernels) gives the eager values to float rounding:
    float32 Box-Muller and bridge arithmetic in another operation order (Sleef's vectorised
    log / cos / sin against ATen's), over at most log2(leaves) + 1 bridge levels."""
    atol = 2e-5 if case[1] == F32 else 1e-13
    for a, b in zip(_queries(*case, compiled=True), _queries(*case, compiled=False)):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_native_equals_torch_compile_bit_for_bit(case, monkeypatch):
    """The native kernels and ``torch.compile``'s give identical values (same ``at::vec`` ops
    in the same order), so a tree's values do not depend on which one ran (compiles: slow)."""
    native = _queries(*case, compiled=True)
    monkeypatch.setattr(_accel, "NATIVE", False)
    for a, b in zip(native, _queries(*case, compiled=True)):
        assert torch.equal(a, b)


def test_native_tree_compiles_no_graph():
    """A large tree on the CPU runs the native kernels: no Dynamo graph is compiled."""
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    bm = VirtualBrownianTree(0.0, 1.0, (4096, 8), seed=3, tol=1 / 252)
    bm._compiled = True  # the mode of a tree this size (the test session forces eager)
    ts = torch.linspace(0, 1, 253)
    bm.increments(ts)
    bm.increments(ts[100:165])
    bm(0.3, 0.7)
    assert counters["stats"]["unique_graphs"] == before


def _level_inputs(r: int = 2, rows: int = 6, pairs: int = 5, dtype=F32):
    table = torch.zeros(rows, 2 * pairs, dtype=dtype)
    ra = torch.zeros(r, 1, dtype=torch.int64)
    rb = torch.ones(r, 1, dtype=torch.int64)
    ca, cb, sig = (torch.full((r, 1), 0.5, dtype=dtype) for _ in range(3))
    states = torch.arange(r, dtype=torch.int64).view(-1, 1)
    return table, ra, rb, ca, cb, sig, states, _kernels.pair_offsets(pairs, CPU)


def test_native_level_update_matches_the_formula():
    """One level on a hand-made table equals ``_kernels.level_update`` run eagerly."""
    table, *rest = _level_inputs(r=3, rows=7, pairs=11, dtype=F64)
    table[:2] = torch.randn(2, 22, dtype=F64, generator=torch.Generator().manual_seed(0))
    expect = table.clone()
    _kernels.level_update(expect, 2, *rest)
    _native.level_update(table, 2, *rest)
    torch.testing.assert_close(table, expect, rtol=0, atol=1e-14)
    assert table[5:].abs().sum() == 0  # rows beyond the level untouched


def test_native_kernels_refuse_rows_outside_the_table():
    """Bad row indices raise (checked before any write) instead of touching other memory."""
    table, ra, rb, ca, cb, sig, states, pairs = _level_inputs()
    with pytest.raises(RuntimeError, match="parent row not below the level"):
        _native.level_update(table, 1, ra, rb, ca, cb, sig, states, pairs)  # rb = 1 = start
    with pytest.raises(RuntimeError, match="outside the table"):
        _native.level_update(table, 5, ra, rb, ca, cb, sig, states, pairs)  # rows 5, 6 of 6
    with pytest.raises(RuntimeError, match="row index outside the table"):
        _native.gather_diff(table, torch.tensor([0]), torch.tensor([6]))
    with pytest.raises(ValueError, match="contiguous"):
        _native.level_update(table.t().contiguous().t(), 2, ra, rb, ca, cb, sig, states, pairs)
    with pytest.raises(TypeError, match="expected torch.float32"):
        _native.level_update(table, 2, ra, rb, ca.double(), cb, sig, states, pairs)
