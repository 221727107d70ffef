"""Calibration losses: registry, SigW1 and the signature-kernel MMD / score."""

from __future__ import annotations

import math

import pytest
import torch

from neuralsde_fin._calibrate._losses import LOSSES, Loss, get_loss, register


def _bm_paths(n, length, *, seed, drift=0.0, vol=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    dt = 1.0 / (length - 1)
    inc = drift * dt + vol * math.sqrt(dt) * torch.randn(n, length - 1, 1, generator=g, dtype=dtype)
    return torch.cat([torch.zeros(n, 1, 1, dtype=dtype), inc.cumsum(1)], dim=1)


def _mean_se(vals):
    t = torch.tensor(vals, dtype=torch.float64)
    return t.mean().item(), (t.std() / math.sqrt(len(vals))).item()


def test_registry():
    assert {"sigw1", "sigkernel"} <= set(LOSSES)
    assert isinstance(get_loss("sigw1", depth=3), Loss)
    with pytest.raises(ValueError, match="method must be one of"):
        get_loss("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("sigw1")(Loss)


# ---------------------------------------------------------------- sigw1


@pytest.mark.parametrize("scaling", ["data", "factorial", "none"])
def test_sigw1_zero_on_identical_batches(scaling):
    x = _bm_paths(32, 16, seed=0)
    loss = get_loss("sigw1", depth=4, level_scaling=scaling)
    assert loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_sigw1_positive_on_different_laws():
    loss = get_loss("sigw1", depth=3)
    same, diff = [], []
    for seed in range(8):
        real = _bm_paths(128, 16, seed=100 + seed)
        same.append(loss(_bm_paths(128, 16, seed=seed), real).item())
        diff.append(loss(_bm_paths(128, 16, seed=seed, drift=0.5), real).item())
    (ms, ss), (md, sd) = _mean_se(same), _mean_se(diff)
    print(f"sigw1 same law {ms:.4f} +- {ss:.4f}; shifted law {md:.4f} +- {sd:.4f}")
    assert md - ms > 4 * math.hypot(ss, sd)


def test_sigw1_gradient_and_dtype():
    real = _bm_paths(16, 8, seed=1, dtype=torch.float32)
    fake = _bm_paths(16, 8, seed=2, dtype=torch.float32).requires_grad_()
    loss = get_loss("sigw1", depth=3)(fake, real)
    assert loss.dtype == torch.float32
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    assert fake.grad.abs().sum() > 0
    x = _bm_paths(4, 6, seed=3).requires_grad_()
    y = _bm_paths(4, 6, seed=4)
    f = get_loss("sigw1", depth=3, squared=True)
    assert torch.autograd.gradcheck(lambda p: f(p, y), (x,))


def test_sigw1_bad_options():
    with pytest.raises(ValueError, match="level_scaling"):
        get_loss("sigw1", level_scaling="log")
    with pytest.raises(ValueError, match="depth"):
        get_loss("sigw1", depth=0)
    with pytest.raises(ValueError, match="share"):
        get_loss("sigw1")(torch.zeros(2, 5, 1), torch.zeros(2, 6, 1))


# ---------------------------------------------------------------- sigkernel


def test_sigkernel_unbiased_centred_on_identical_laws_and_positive_otherwise():
    # scale=0.25 keeps the kernel of unit-size paths light-tailed (small estimator variance)
    loss = get_loss("sigkernel", scale=0.25, n_jobs=1)
    same, diff = [], []
    for seed in range(32):
        x = _bm_paths(12, 9, seed=seed)
        y = _bm_paths(12, 9, seed=1000 + seed)
        same.append(loss(x, y).item())
        diff.append(loss(_bm_paths(12, 9, seed=seed, drift=1.0), y).item())
    ms, ss = _mean_se(same)
    md, sd = _mean_se(diff)
    print(f"MMD^2_u same law {ms:.5f} +- {ss:.5f}; different law {md:.5f} +- {sd:.5f}")
    assert abs(ms) < 3 * ss
    assert md > 4 * sd  # E[MMD^2_u] > 0 for different laws
    assert min(same) < 0 < max(same)  # the estimator is unbiased, hence not non-negative


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_sigkernel_symmetric(kernel):
    loss = get_loss("sigkernel", static_kernel=kernel, n_jobs=1)
    x = _bm_paths(6, 7, seed=5)
    y = _bm_paths(8, 7, seed=6, drift=0.3)
    a, b = loss(x, y).item(), loss(y, x).item()
    print("MMD(x, y), MMD(y, x):", a, b)
    assert a == pytest.approx(b, rel=1e-12, abs=1e-14)


def test_sigkernel_score_is_proper_on_a_toy():
    # Data: Brownian paths. The true law should have a lower expected score than a shifted one.
    score = get_loss("sigkernel", objective="score", scale=0.25, n_jobs=1)
    true, shifted = [], []
    for seed in range(32):
        y = _bm_paths(12, 9, seed=2000 + seed)
        true.append(score(_bm_paths(12, 9, seed=seed), y).item())
        shifted.append(score(_bm_paths(12, 9, seed=seed, drift=1.0), y).item())
    gap = [s - t for s, t in zip(shifted, true)]
    mg, sg = _mean_se(gap)
    print(f"score(shifted) - score(true) = {mg:.5f} +- {sg:.5f}")
    assert mg > 4 * sg


def test_sigkernel_mmd_minus_score_is_data_constant():
    x = _bm_paths(5, 6, seed=7)
    y = _bm_paths(5, 6, seed=8)
    mmd = get_loss("sigkernel", n_jobs=1)(x, y)
    score = get_loss("sigkernel", objective="score", n_jobs=1)(x, y)
    x2 = _bm_paths(5, 6, seed=9, drift=2.0)
    mmd2 = get_loss("sigkernel", n_jobs=1)(x2, y)
    score2 = get_loss("sigkernel", objective="score", n_jobs=1)(x2, y)
    assert (mmd - score).item() == pytest.approx((mmd2 - score2).item(), rel=1e-10)


def test_sigkernel_gradient_matches_finite_differences():
    y = _bm_paths(3, 5, seed=10)
    x = _bm_paths(3, 5, seed=11).requires_grad_()
    loss = get_loss("sigkernel", n_jobs=1, subsample=2)
    assert torch.autograd.gradcheck(lambda p: loss(p, y), (x,))


def test_sigkernel_float32_and_options():
    x = _bm_paths(4, 9, seed=12, dtype=torch.float32).requires_grad_()
    y = _bm_paths(4, 9, seed=13, dtype=torch.float32)
    out = get_loss("sigkernel", n_jobs=1, dyadic_order=1, lead_lag=True)(x, y)
    assert out.dtype == torch.float32
    out.backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="static_kernel"):
        get_loss("sigkernel", static_kernel="poly")
    with pytest.raises(ValueError, match="at least 2 paths"):
        get_loss("sigkernel")(x[:1], y)
