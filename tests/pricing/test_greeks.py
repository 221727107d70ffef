"""Pathwise Greeks by autograd through the samplers, against finite differences and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import neuralsde_fin as nsf

S0, R, Q, SIGMA = 100.0, 0.03, 0.01, 0.2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _compare(pw, fd, ref_delta=None, ref_vega=None):
    for name in ("delta", "vega"):
        a, se = getattr(pw, name), getattr(pw, name + "_stderr")
        b = getattr(fd, name)
        print(f"{name}: pathwise {a:.6f} (SE {se:.6f}), FD (CRN) {b:.6f}, "
              f"diff {(a - b) / se:+.2f} SE")
        assert abs(a - b) < 3 * se
    for name, ref in (("delta", ref_delta), ("vega", ref_vega)):
        if ref is not None:
            a, se = getattr(pw, name), getattr(pw, name + "_stderr")
            print(f"{name}: closed form {ref:.6f}, pathwise {(a - ref) / se:+.2f} SE")
            assert abs(a - ref) < 3 * se


@pytest.mark.parametrize("opt", [nsf.EuropeanCall(100.0, 0.5), nsf.EuropeanPut(95.0, 0.5)])
def test_gbm_pathwise_delta_vega(opt):
    kw = dict(r=R, q=Q, spot=S0, seed=5, dt=1 / 12, antithetic=True)
    pw = nsf.greeks(nsf.GBM(SIGMA), opt, 50_000, **kw)
    fd = nsf.greeks(nsf.GBM(SIGMA), opt, 50_000, method="fd", **kw)
    kind = "call" if opt.call else "put"
    K = float(opt.strike)
    ref_delta = nsf.black_scholes_delta(S0, K, 0.5, R, Q, SIGMA, kind=kind)
    ref_vega = SIGMA * nsf.black_scholes_vega(S0, K, 0.5, R, Q, SIGMA)  # d/d(vol scale)
    _compare(pw, fd, ref_delta, ref_vega)
    assert abs(pw.price - fd.price) < 1e-12  # same samples


@pytest.mark.parametrize("scheme", ["qe", "full_truncation"])
def test_heston_pathwise_delta_vega(scheme):
    model = nsf.Heston(2.0, 0.04, 0.5, -0.7, 0.04, scheme=scheme)
    kw = dict(r=R, q=Q, spot=S0, seed=6, dt=7 / 365, antithetic=True)
    opt = nsf.EuropeanCall(100.0, 13 * 7 / 365)
    pw = nsf.greeks(model, opt, 20_000, **kw)
    fd = nsf.greeks(model, opt, 20_000, method="fd", **kw)
    _compare(pw, fd)


def test_grid_and_asian_pathwise():
    K = torch.tensor([90.0, 100.0, 110.0], dtype=torch.float64)
    pw = nsf.greeks(nsf.GBM(SIGMA), nsf.EuropeanCall(K, 0.25), 20_000, r=R, spot=S0, dt=1 / 12)
    ref = torch.as_tensor(nsf.black_scholes_delta(S0, K.numpy(), 0.25, R, 0.0, SIGMA))
    z = (pw.delta - ref) / pw.delta_stderr
    print("grid delta", pw.delta, ref, z)
    assert pw.delta.shape == (3,) and (z.abs() < 3).all()
    asian = nsf.AsianCall(100.0, 0.5)
    a = nsf.greeks(nsf.GBM(SIGMA), asian, 20_000, r=R, spot=S0, dt=1 / 12, antithetic=True)
    b = nsf.greeks(nsf.GBM(SIGMA), asian, 20_000, r=R, spot=S0, dt=1 / 12, antithetic=True,
                   method="fd")
    _compare(a, b)


def test_greeks_bad_arguments():
    cases = [
        (lambda: nsf.greeks(nsf.GBM(0.2), nsf.DigitalCall(1.0, 0.5), 100), "Lipschitz"),
        (lambda: nsf.greeks(nsf.GBM(0.2), nsf.EuropeanCall(1.0, 0.5), 100, method="x"), "method"),
        (lambda: nsf.greeks(nsf.GBM(0.2), nsf.EuropeanCall(1.0, 0.5), 100, dt=0.3), "multiple"),
        (lambda: nsf.greeks(nsf.GBM(0.2), nsf.EuropeanCall(1.0, 0.5), 100, spot=-1.0), "spot"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as exc:
            fn()
        assert "\n" not in str(exc.value)
    assert math.isfinite(
        nsf.greeks(nsf.GBM(0.2), nsf.DigitalCall(1.0, 0.5), 1000, method="fd", dt=0.25).delta
    )


def test_basket_delta_per_asset():
    model = nsf.GBM([0.2, 0.3], corr=[[1.0, 0.4], [0.4, 1.0]])
    opt = nsf.BasketCall(100.0, 0.25, weights=[1.0, 0.0])
    pw = nsf.greeks(model, opt, 20_000, r=R, spot=[100.0, 50.0], dt=1 / 12, antithetic=True)
    fd = nsf.greeks(model, opt, 20_000, r=R, spot=[100.0, 50.0], dt=1 / 12, antithetic=True,
                    method="fd")
    ref = nsf.black_scholes_delta(100.0, 100.0, 0.25, R, 0.0, 0.2)
    print("basket deltas", pw.delta, pw.delta_stderr, fd.delta, "BS", ref)
    assert pw.delta.shape == (2,) and float(pw.delta[1]) == 0.0
    assert abs(float(pw.delta[0]) - ref) < 3 * float(pw.delta_stderr[0])
    assert abs(float(pw.delta[0]) - float(fd.delta[0])) < 3 * float(pw.delta_stderr[0])


@pytest.mark.parametrize("opt", [nsf.EuropeanCall(100.0, 0.25), nsf.AsianCall(100.0, 0.25)])
def test_neural_model_pathwise_delta_vega_match_finite_differences(opt):
    """Pathwise Greeks through the calibrated neural sampler (a stochastic-volatility
    MarketModel): delta and vega agree with central finite differences under common random
    numbers within 3 standard errors; the spread of the vega differs from GBM's (stochastic
    volatility), and the price is the same samples' in both."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = nsf.MarketModel(1, latent=3, width=16, return_scale=[0.012])
        with torch.no_grad():
            model.net.out_weight[1].mul_(30.0)
    kw = dict(r=R, q=Q, spot=S0, seed=5)
    pw = nsf.greeks(model, opt, 20_000, **kw)
    fd = nsf.greeks(model, opt, 20_000, method="fd", **kw)
    _compare(pw, fd)
    assert abs(pw.price - fd.price) < 1e-12
    assert pw.vega > 0 and pw.delta > 0
