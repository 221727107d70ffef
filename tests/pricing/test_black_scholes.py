"""Black-Scholes prices, Greeks and implied volatility: closed forms, limits, robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf


def test_black_scholes_matches_quantlib():
    ql = pytest.importorskip("QuantLib")
    S, K, T, r, q, sigma = 100.0, 95.0, 0.75, 0.03, 0.01, 0.25
    stdev = sigma * math.sqrt(T)
    fwd = S * math.exp((r - q) * T)
    disc = math.exp(-r * T)
    for kind, qlkind in (("call", ql.Option.Call), ("put", ql.Option.Put)):
        ref = ql.blackFormula(qlkind, K, fwd, stdev, disc)
        ours = nsf.black_scholes(S, K, T, r, q, sigma, kind=kind)
        print(kind, ours, ref)
        assert abs(ours - ref) < 1e-12 * S


def test_put_call_parity_and_limits():
    K = np.array([50.0, 100.0, 200.0])
    c = nsf.black_scholes(100.0, K, 1.0, 0.02, 0.01, 0.3)
    p = nsf.black_scholes(100.0, K, 1.0, 0.02, 0.01, 0.3, kind="put")
    np.testing.assert_allclose(c - p, 100 * math.exp(-0.01) - K * math.exp(-0.02), atol=1e-12)
    # zero volatility and zero maturity: discounted intrinsic value
    assert nsf.black_scholes(100.0, 90.0, 1.0, 0.0, 0.0, 0.0) == 10.0
    assert nsf.black_scholes(100.0, 110.0, 0.0, 0.05, 0.0, 0.2, kind="put") == 10.0


def test_delta_extreme_moneyness():
    S = np.array([1e-3, 1e6])
    dc = nsf.black_scholes_delta(S, 100.0, 0.5, 0.0, 0.0, 0.2)
    dp = nsf.black_scholes_delta(S, 100.0, 0.5, 0.0, 0.0, 0.2, kind="put")
    np.testing.assert_allclose(dc, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(dp, [-1.0, 0.0], atol=1e-12)
    # with dividends the deep in-the-money call delta tends to exp(-qT)
    d = nsf.black_scholes_delta(1e6, 100.0, 2.0, 0.0, 0.03, 0.2)
    assert abs(d - math.exp(-0.06)) < 1e-12


def test_delta_and_vega_match_autograd():
    S = torch.tensor(100.0, dtype=torch.float64, requires_grad=True)
    sig = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    v = nsf.black_scholes(S, 105.0, 0.5, 0.01, 0.0, sig)
    dS, dsig = torch.autograd.grad(v, (S, sig))
    assert abs(float(dS) - nsf.black_scholes_delta(100.0, 105.0, 0.5, 0.01, 0.0, 0.2)) < 1e-12
    assert abs(float(dsig) - nsf.black_scholes_vega(100.0, 105.0, 0.5, 0.01, 0.0, 0.2)) < 1e-10


def test_implied_vol_round_trip_grid():
    K = np.exp(np.linspace(-1.0, 1.0, 21)) * 100
    T = np.array([[1 / 52], [0.25], [1.0], [5.0]])
    sig = np.array([0.05, 0.2, 0.8, 2.0])[:, None, None]
    for kind in ("call", "put"):
        p = nsf.black_scholes(100.0, K, T, 0.03, 0.01, sig, kind=kind)
        # keep prices that carry information in float64 (time value above 1e-9 of spot)
        intrinsic = nsf.black_scholes(100.0, K, T, 0.03, 0.01, 0.0, kind=kind)
        ok = (p - intrinsic) > 1e-9 * 100
        iv = nsf.implied_vol(p, 100.0, K, T, 0.03, 0.01, kind=kind)
        price_err = np.abs(nsf.black_scholes(100.0, K, T, 0.03, 0.01, iv, kind=kind) - p)[ok]
        # the volatility is only as well determined as price tolerance / vega
        vega = nsf.black_scholes_vega(100.0, K, T, 0.03, 0.01, sig)
        well = ok & (vega > 1e-3)
        vol_err = np.abs(iv - sig)[well]
        print(kind, "points", ok.sum(), well.sum(), "max errors", price_err.max(), vol_err.max())
        assert ok.sum() > 200 and well.sum() > 180
        assert price_err.max() < 1e-10
        assert vol_err.max() < 1e-8


def test_implied_vol_torch_and_scalar_types():
    p = nsf.black_scholes(100.0, 100.0, 1.0, 0.0, 0.0, 0.2)
    assert isinstance(nsf.implied_vol(p, 100.0, 100.0, 1.0, 0.0, 0.0), float)
    pt = torch.tensor([p, p], dtype=torch.float32)
    iv = nsf.implied_vol(pt, 100.0, 100.0, 1.0, 0.0, 0.0)
    assert isinstance(iv, torch.Tensor) and iv.dtype == torch.float32
    assert torch.allclose(iv, torch.tensor(0.2), atol=1e-5)


def test_implied_vol_out_of_bounds_gives_nan_with_warning():
    prices = np.array([-1.0, 0.5, 10.0, 150.0, np.nan])  # < 0, < intrinsic, fine, > S, nan
    with pytest.warns(RuntimeWarning, match="no-arbitrage"):
        iv = nsf.implied_vol(prices, 100.0, 99.0, 1.0, 0.0, 0.0)
    assert np.isnan(iv[[0, 1, 3, 4]]).all()
    assert abs(nsf.black_scholes(100.0, 99.0, 1.0, 0.0, 0.0, iv[2]) - 10.0) < 1e-10
    # exactly the lower bound: zero volatility
    assert nsf.implied_vol(1.0, 100.0, 99.0, 1.0, 0.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"S": -1.0}, "S must be > 0"),
        ({"K": 0.0}, "K must be > 0"),
        ({"T": -0.5}, "T must be >= 0"),
        ({"sigma": -0.1}, "sigma must be >= 0"),
        ({"kind": "straddle"}, "kind must be"),
    ],
)
def test_black_scholes_bad_arguments(kwargs, match):
    args = {"S": 100.0, "K": 100.0, "T": 1.0, "r": 0.0, "q": 0.0, "sigma": 0.2, "kind": "call"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        nsf.black_scholes(**args)
