"""The virtual Brownian tree: law (KS, bridge, independence) and the stateless properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import neuralsde_fin as nsf
from neuralsde_fin import _accel
from neuralsde_fin._brownian import VirtualBrownianTree, counter_normal

N = 8192  # paths for the statistical tests (eager kernel: below the compile threshold)
F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops: one thread avoids OpenMP barrier stalls on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _bm(shape=(N, 1), seed=0, tol=None, t0=0.0, t1=1.0, dtype=F64):
    return VirtualBrownianTree(t0, t1, shape, seed=seed, tol=tol, dtype=dtype)


def test_exported():
    assert nsf.VirtualBrownianTree is VirtualBrownianTree
    assert "VirtualBrownianTree" in nsf.__all__


@pytest.mark.parametrize(
    ("s", "t", "tol"),
    [
        (0.25, 0.75, None),  # coarse: two dyadic nodes
        (100 / 252, 101 / 252, 1 / 252),  # a grid step of a non-dyadic tree (tol = dt)
        (40 / 4096, 40.6 / 4096, None),  # a node to a time inside its leaf: the sub-leaf bridge
    ],
)
def test_increment_ks_normal_at_three_scales(s, t, tol):
    dw = _bm(tol=tol)(s, t).flatten().numpy() / math.sqrt(t - s)
    p = stats.kstest(dw, "norm").pvalue
    print(f"[{s}, {t}] tol={tol}: KS p={p:.3g}, var={dw.var():.4f} (se {math.sqrt(2 / N):.4f})")
    assert p > 0.01
    assert abs(dw.var() - 1) < 4 * math.sqrt(2 / N)


def test_endpoint_law_and_start():
    bm = _bm(t0=1.5, t1=3.5)
    assert torch.equal(bm(1.5), torch.zeros(N, 1, dtype=F64))
    w = bm(3.5).flatten().numpy() / math.sqrt(2.0)
    assert stats.kstest(w, "norm").pvalue > 0.01
    # W(t1) is the root normal N(seed, 0, 0, i)
    ref = counter_normal(0, 0, 0, torch.arange(N), dtype=F64) * math.sqrt(2.0)
    assert torch.allclose(bm(3.5).flatten(), ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("a", "m", "b", "tol"),
    [
        (0.25, 0.375, 0.5, None),  # a tree node: dyadic midpoint
        (0.1, 0.13, 0.61, None),  # generic times spanning many leaves
        (40 / 4096, 40.3 / 4096, 41 / 4096, None),  # inside a leaf: the sub-leaf bridge
        (3 / 7, 4 / 7, 6 / 7, 1 / 7),  # uneven split of a 7-leaf tree
    ],
)
def test_bridge_conditional_mean_and_variance(a, m, b, tol):
    bm = _bm(tol=tol)
    wa, wm, wb = (bm(t).flatten().numpy() for t in (a, m, b))
    f = (m - a) / (b - a)
    resid = wm - (wa + f * (wb - wa))
    var = (m - a) * (b - m) / (b - a)
    se_mean, se_var = math.sqrt(var / N), var * math.sqrt(2 / N)
    corr = np.corrcoef(resid, wb - wa)[0, 1]
    print(f"mean {resid.mean():.2e} (se {se_mean:.1e}) var {resid.var():.3e} vs {var:.3e} "
          f"(se {se_var:.1e}) corr {corr:.2e}")
    assert abs(resid.mean()) < 4 * se_mean
    assert abs(resid.var() - var) < 4 * se_var
    assert abs(corr) < 4 / math.sqrt(N)
    assert abs(np.corrcoef(resid, wa)[0, 1]) < 4 / math.sqrt(N)


@pytest.mark.parametrize("tol", [None, 1 / 120])
def test_disjoint_increments_uncorrelated_with_variance_dt(tol):
    ts = torch.tensor([0.0, 0.05, 1 / 12, 0.2, 0.21, 0.5, 0.61, 0.62, 0.9, 1.0], dtype=F64)
    dw = _bm(tol=tol).increments(ts)[:, :, 0].numpy()  # (9, N)
    dt = np.diff(ts.numpy())
    var = dw.var(axis=1)
    for k in range(len(dt)):
        assert abs(var[k] - dt[k]) < 4 * dt[k] * math.sqrt(2 / N), (k, var[k], dt[k])
    corr = np.corrcoef(dw)
    off = corr[~np.eye(len(dt), dtype=bool)]
    print(f"max |corr| = {np.abs(off).max():.3e}, 4 se = {4 / math.sqrt(N):.3e}")
    assert np.abs(off).max() < 4 / math.sqrt(N)


def test_reconstruction_order_and_new_object():
    ts = [0.9, 0.1, 0.5, 0.123456, 0.77, 0.0, 1.0]
    bm = _bm(shape=(16, 3), seed=11)
    first = [bm(t) for t in ts]
    again = [bm(t) for t in reversed(ts)][::-1]
    fresh = _bm(shape=(16, 3), seed=11)
    for t, a, b in zip(ts, first, again):
        assert torch.equal(a, b), t
        assert torch.equal(fresh(t), a), t
    assert torch.equal(bm(0.1, 0.77), fresh(0.1, 0.77))


@pytest.mark.parametrize("shape_small, shape_big", [((8, 3), (4096, 3)), ((7, 1), (4096, 1)),
                                                    ((5, 2, 3), (1000, 2, 3))])
def test_batch_invariance(shape_small, shape_big):
    ts = torch.linspace(0, 2, 41, dtype=F64)
    small = VirtualBrownianTree(0.0, 2.0, shape_small, seed=4, tol=0.05, dtype=F64)
    big = VirtualBrownianTree(0.0, 2.0, shape_big, seed=4, tol=0.05, dtype=F64)
    k = shape_small[0]
    assert torch.equal(small.increments(ts), big.increments(ts)[:, :k])
    assert torch.equal(small(0.37), big(0.37)[:k])


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-6), (F64, 1e-14)])
def test_additivity_and_consistency_of_queries(dtype, atol):
    bm = _bm(shape=(64, 4), seed=3, dtype=dtype)
    s, t, u = 0.111, 0.5, 0.876
    assert torch.allclose(bm(s, u), bm(s, t) + bm(t, u), rtol=0, atol=atol)
    assert torch.allclose(bm(s, t), bm(t) - bm(s), rtol=0, atol=atol)
    ts = torch.tensor([0.0, 0.01, 0.25, 0.2501, 0.4, 0.75, 0.999, 1.0], dtype=F64)
    inc = bm.increments(ts)
    assert inc.shape == (7, 64, 4) and inc.dtype == dtype
    w = torch.stack([bm(float(t)) for t in ts])
    assert torch.allclose(inc, w[1:] - w[:-1], rtol=0, atol=atol)
    pair = torch.stack([bm(float(a), float(b)) for a, b in zip(ts[:-1], ts[1:])])
    assert torch.allclose(inc, pair, rtol=0, atol=atol)
    # sub-grid calls (the adjoint's reverse chunks) give the same increments
    assert torch.allclose(bm.increments(ts[3:7]), inc[3:6], rtol=0, atol=atol)
    assert torch.allclose(bm.increments(ts[:2]), inc[:1], rtol=0, atol=atol)
    # total = sum of increments
    assert torch.allclose(inc.sum(0), bm(1.0), rtol=0, atol=8 * atol)


@pytest.mark.parametrize("ts_dtype", [torch.float32, F64])
def test_uniform_grid_with_tol_dt_is_on_nodes(ts_dtype):
    """tol = dt puts every grid time on a node: whole-grid and chunked calls agree exactly."""
    n = 252
    bm = VirtualBrownianTree(0.0, 1.0, (32, 2), seed=9, tol=1 / n, dtype=F64)
    assert bm.n_leaves == n
    ts = torch.linspace(0, 1, n + 1, dtype=ts_dtype)
    inc = bm.increments(ts)
    chunks = [bm.increments(ts[lo : min(lo + 64, n) + 1]) for lo in range(0, n, 64)][::-1]
    assert torch.equal(torch.cat(chunks[::-1]), inc)
    ks = [0, 1, 2, 63, 64, 65, 126, 127, 200, 251, 252]
    ref = torch.stack([bm(ts[k]) for k in ks])
    w = torch.cat([torch.zeros(1, 32, 2, dtype=F64), inc.cumsum(0)])
    assert torch.allclose(w[ks], ref, rtol=0, atol=1e-13)


def test_float32_matches_float64():
    b32 = _bm(shape=(256, 2), seed=5, dtype=torch.float32)
    b64 = _bm(shape=(256, 2), seed=5, dtype=F64)
    ts = torch.linspace(0, 1, 30, dtype=F64)
    d = (b32.increments(ts).double() - b64.increments(ts)).abs().max().item()
    print(f"max |float32 - float64| = {d:.2e}")
    assert d < 1e-5


def test_seed_changes_path():
    a, b = _bm(shape=(64, 2), seed=0), _bm(shape=(64, 2), seed=1)
    assert not torch.allclose(a(0.5), b(0.5))
    r = np.corrcoef(a(1.0).flatten(), b(1.0).flatten())[0, 1]
    assert abs(r) < 4 / math.sqrt(128)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_step_queries_from_the_block_cache_equal_uncached_queries(dtype):
    """bm(s, t) and bm(t) at nodes come from cached blocks of nodes, bit for bit the values of
    a tree without the cache, queried forward, in reverse and at random; off-node times and
    block boundaries included."""
    from neuralsde_fin._brownian import _tree

    n = 150  # three blocks of 64 leaves, the last one partial
    ts = torch.linspace(0, 1, n + 1, dtype=F64)
    cached = VirtualBrownianTree(0.0, 1.0, (5, 3), seed=4, tol=1 / n, dtype=dtype)
    plain = VirtualBrownianTree(0.0, 1.0, (5, 3), seed=4, tol=1 / n, dtype=dtype)
    plain._block_leaves = 0
    assert cached._block_leaves == _tree.CACHE_LEAVES
    order = [*range(n), *reversed(range(n)), *np.random.default_rng(0).permutation(n).tolist()]
    for k in order:
        assert torch.equal(cached(ts[k], ts[k + 1]), plain(ts[k], ts[k + 1]))
        assert torch.equal(cached.increments(ts[k : k + 2]), plain.increments(ts[k : k + 2]))
    assert len(cached._cache) <= _tree.CACHE_BLOCKS
    for t in (0.0, 64 / n, 128 / n, 1.0, 0.3333):  # boundaries, ends, a time inside a leaf
        assert torch.equal(cached(t), plain(t))
        assert torch.equal(cached(0.25, t) if t > 0.25 else cached(t, 0.25),
                           plain(0.25, t) if t > 0.25 else plain(t, 0.25))


def test_block_cache_is_bounded_for_wide_trees(monkeypatch):
    from neuralsde_fin._brownian import _tree

    monkeypatch.setattr(_tree, "CACHE_BYTES", 64 * 1024)
    wide = VirtualBrownianTree(0.0, 1.0, (800, 1), tol=0.01)  # 20 leaves of 800 floats fit
    assert wide._block_leaves == 19 and (19 + 1) * 800 * 4 <= _tree.CACHE_BYTES
    wider = VirtualBrownianTree(0.0, 1.0, (5000, 1), tol=0.01)
    assert wider._block_leaves == 0  # too wide: single queries are computed directly
    plain = VirtualBrownianTree(0.0, 1.0, (800, 1), tol=0.01)
    plain._block_leaves = 0
    assert torch.equal(wide(0.5, 0.7), plain(0.5, 0.7))


def test_arguments_validated():
    bm = _bm(shape=(4, 2))
    with pytest.raises(ValueError, match="t must lie in"):
        bm(1.5)
    with pytest.raises(ValueError, match="s must lie in"):
        bm(-0.1, 0.5)
    with pytest.raises(ValueError, match="ts must lie in"):
        bm.increments([0.0, 2.0])
    with pytest.raises(ValueError, match="ts must be non-decreasing"):
        bm.increments([0.5, 0.2])
    with pytest.raises(ValueError, match="ts must hold at least 2"):
        bm.increments([0.5])
    with pytest.raises(ValueError, match="ts must be 1-D"):
        bm.increments(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="t1 must be greater"):
        VirtualBrownianTree(1.0, 1.0, (4,))
    with pytest.raises(ValueError, match="shape"):
        VirtualBrownianTree(0.0, 1.0, (0, 2))
    with pytest.raises(ValueError, match="shape"):
        VirtualBrownianTree(0.0, 1.0, ())
    with pytest.raises(ValueError, match="tol must be positive"):
        VirtualBrownianTree(0.0, 1.0, (4,), tol=0.0)
    with pytest.raises(ValueError, match="tol must be >="):
        VirtualBrownianTree(0.0, 1.0, (4,), tol=1e-15)
    with pytest.raises(ValueError, match="dtype"):
        VirtualBrownianTree(0.0, 1.0, (4,), dtype=torch.int32)
    with pytest.raises(ValueError, match="seed"):
        VirtualBrownianTree(0.0, 1.0, (4,), seed=0.5)


@pytest.mark.slow
def test_compiled_kernel_matches_eager(monkeypatch):
    """The torch.compile kernel gives the eager values to float rounding (compiles: slow).
    On the CPU the tree would use the native kernels (``tests/brownian/test_native.py``);
    here ``torch.compile``'s, which other devices use."""

    monkeypatch.setattr(_accel, "NATIVE", False)
    ts = torch.linspace(0, 1, 101)
    for dtype, atol in ((torch.float32, 1e-5), (F64, 1e-13)):
        eager = VirtualBrownianTree(0.0, 1.0, (64, 8), seed=2, tol=0.01, dtype=dtype)
        comp = VirtualBrownianTree(0.0, 1.0, (64, 8), seed=2, tol=0.01, dtype=dtype)
        eager._compiled, comp._compiled = False, True
        assert torch.allclose(comp.increments(ts), eager.increments(ts), rtol=0, atol=atol)


@pytest.mark.slow
def test_warmup_compiles_every_variant_a_tree_uses(monkeypatch):
    """After ``warmup`` a large tree's queries compile nothing new: the warm-up inputs are
    built like the tree's (views of the same kinds of base), so the kernels compiled with its
    large, multi-threaded size hints are the ones every later query runs. (``torch.compile``'s
    kernels: on the CPU the native ones are used and compile no graph at all.)"""
    from torch._dynamo.utils import counters

    from neuralsde_fin._brownian import _kernels

    monkeypatch.setattr(_accel, "NATIVE", False)
    _kernels.warmup(torch.float32)
    before = counters["stats"]["unique_graphs"]
    bm = VirtualBrownianTree(0.0, 1.0, (4096, 8), seed=3, tol=1 / 252)
    bm._compiled = True
    ts = torch.linspace(0, 1, 253)
    bm.increments(ts)
    bm.increments(ts[100:165])
    bm(0.3, 0.7)
    assert counters["stats"]["unique_graphs"] == before


def test_default_tol_follows_the_first_grid():
    """tol=None: the first grid query fixes the leaves at its spacing (every time of a uniform
    grid a node: one normal per step); later queries, in any order, read the same tree."""
    ts = torch.linspace(0, 1, 253, dtype=F64)
    bm = VirtualBrownianTree(0.0, 1.0, (16, 3), seed=5, dtype=F64)
    assert bm.tol is None
    full = bm.increments(ts)
    assert bm.n_leaves == 252
    fixed = VirtualBrownianTree(0.0, 1.0, (16, 3), seed=5, dtype=F64, tol=1 / 252)
    assert torch.equal(fixed.increments(ts), full)
    rev = torch.cat([bm.increments(ts[k : k + 65]) for k in (188, 124, 60)] +
                    [bm.increments(ts[:61])], 0)
    torch.testing.assert_close(rev.sum(0), full[60:].sum(0) + full[:60].sum(0), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(bm(ts[10], ts[20]), full[10:20].sum(0), rtol=0, atol=1e-12)
    point_first = VirtualBrownianTree(0.0, 1.0, (16, 3), seed=5, dtype=F64)
    point_first(0.5)
    assert point_first.n_leaves == 4096
