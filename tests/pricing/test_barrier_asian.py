"""Barrier and Asian options on GBM against QuantLib, with the monitoring biases quantified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf

ql = pytest.importorskip("QuantLib")

S0, R, Q, SIGMA = 100.0, 0.03, 0.01, 0.25


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ql_setup(days):
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    flat = lambda x: ql.YieldTermStructureHandle(ql.FlatForward(today, x, dc))
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), SIGMA, dc))
    proc = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(S0)), flat(Q), flat(R), vol)
    return today, proc


def _ql_down_and_out_call(K, H, days):
    today, proc = _ql_setup(days)
    opt = ql.BarrierOption(ql.Barrier.DownOut, H, 0.0, ql.PlainVanillaPayoff(ql.Option.Call, K),
                           ql.EuropeanExercise(today + days))
    opt.setPricingEngine(ql.AnalyticBarrierEngine(proc))
    return opt.NPV()


def _discrete_down_and_out_call_grid(K, H, T, m, n_grid):
    """Exact price of the discretely monitored (m equal steps) down-and-out call under GBM.

    The log-price density, killed below log(H) at each monitoring date, is propagated by
    trapezoidal quadrature of the Gaussian transition kernel on [log H, log S0 + 10 sigma sqrt T].
    """
    dt = T / m
    mu, sd = (R - Q - 0.5 * SIGMA**2) * dt, SIGMA * math.sqrt(dt)
    b, top = math.log(H / S0), 10 * SIGMA * math.sqrt(T) + abs(mu) * m
    x = np.linspace(b, top, n_grid)
    h = x[1] - x[0]
    w = np.full(n_grid, h)
    w[[0, -1]] = h / 2
    kern = np.exp(-0.5 * ((x[:, None] - x[None, :] - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
    f = np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))  # after step 1
    for _ in range(m - 1):
        f = kern @ (w * f)
    payoff = np.maximum(S0 * np.exp(x) - K, 0.0)
    return math.exp(-R * T) * float(np.sum(w * f * payoff))


def _discrete_down_and_out_call(K, H, T, m, n_grid=500):
    """Richardson extrapolation of the O(h^2) quadrature on n_grid and 2 n_grid points."""
    coarse = _discrete_down_and_out_call_grid(K, H, T, m, n_grid)
    fine = _discrete_down_and_out_call_grid(K, H, T, m, 2 * n_grid)
    return fine + (fine - coarse) / 3


def test_down_and_out_call_bgk_against_quantlib():
    K, H, days, m = 100.0, 95.0, 91, 63
    T = days / 365
    scen = nsf.GBM(SIGMA).sample(
        100_000, m, r=R, q=Q, spot=S0, seed=21, dt=T / m, antithetic=True
    )
    cont = _ql_down_and_out_call(K, H, days)  # continuous monitoring
    bgk = nsf.price(scen, nsf.BarrierCall(K, T, H, "down-and-out", bgk_sigma=SIGMA))
    raw = nsf.price(scen, nsf.BarrierCall(K, T, H, "down-and-out"))
    # exact discrete-monitoring prices: the contract itself, and with the BGK-shifted barrier
    h_bgk = float(nsf.bgk_barrier(H, SIGMA, T / m, down=True))
    disc_raw = _discrete_down_and_out_call(K, H, T, m)
    disc_bgk = _discrete_down_and_out_call(K, h_bgk, T, m)
    bias_bgk = disc_bgk - cont  # what is left of the monitoring bias after the correction
    bias_raw = disc_raw - cont
    print(f"QuantLib continuous {cont:.5f}")
    z_bgk, z_raw = (bgk.price - cont) / bgk.stderr, (raw.price - cont) / raw.stderr
    print(f"MC with BGK {bgk.price:.5f} SE {bgk.stderr:.5f} z {z_bgk:.2f}; "
          f"BGK bias bound (quadrature) {bias_bgk:+.5f}; exact discrete {disc_bgk:.5f}")
    print(f"MC discrete {raw.price:.5f} SE {raw.stderr:.5f} z {z_raw:.2f}; "
          f"discrete-monitoring bias (quadrature) {bias_raw:+.5f}; exact discrete {disc_raw:.5f}")
    # the quadrature is converged well below the MC noise
    assert abs(_discrete_down_and_out_call(K, H, T, m, n_grid=250) - disc_raw) < 1e-4
    # our discrete Monte Carlo matches the exact discrete prices
    assert abs(raw.price - disc_raw) < 3 * raw.stderr
    assert abs(bgk.price - disc_bgk) < 3 * bgk.stderr
    # BGK: within 3 SE plus the stated bias bound of continuous monitoring; the bias is small
    assert abs(bgk.price - cont) < 3 * bgk.stderr + abs(bias_bgk)
    assert abs(bias_bgk) < 0.1 * abs(bias_raw)
    # without the correction the bias is visible
    assert raw.price - cont > 3 * raw.stderr


def test_arithmetic_asian_against_quantlib_mc():
    # QuantLib reference: MCDiscreteArithmeticAPEngine (pseudo-random, geometric-average control
    # variate) on the same 13 weekly fixings; its own error estimate enters the tolerance
    K, n_fix, step_days = 100.0, 13, 7
    days = n_fix * step_days
    T = days / 365
    today, proc = _ql_setup(days)
    fixings = [today + step_days * (i + 1) for i in range(n_fix)]
    opt = ql.DiscreteAveragingAsianOption(
        ql.Average.Arithmetic, 0.0, 0, fixings, ql.PlainVanillaPayoff(ql.Option.Call, K),
        ql.EuropeanExercise(today + days),
    )
    engine = ql.MCDiscreteArithmeticAPEngine(proc, "pseudorandom", requiredSamples=200_000,
                                             controlVariate=True, seed=42)
    opt.setPricingEngine(engine)
    ref, ref_se = opt.NPV(), opt.errorEstimate()
    scen = nsf.GBM(SIGMA).sample(100_000, n_fix, r=R, q=Q, spot=S0, seed=22, dt=step_days / 365,
                                 antithetic=True)
    res = nsf.price(scen, nsf.AsianCall(K, T))
    se = math.hypot(res.stderr, ref_se)
    print(f"Asian MC {res.price:.5f} SE {res.stderr:.5f}; QuantLib {ref:.5f} SE {ref_se:.5f}; "
          f"z {(res.price - ref) / se:.2f}")
    assert abs(res.price - ref) < 3 * se
    # the geometric-average Asian has a closed form in QuantLib: check the fixing convention
    geo = ql.DiscreteAveragingAsianOption(
        ql.Average.Geometric, 1.0, 0, fixings, ql.PlainVanillaPayoff(ql.Option.Call, K),
        ql.EuropeanExercise(today + days),
    )
    geo.setPricingEngine(ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(proc))
    s = scen.prices[:, 1:, 0]
    g = math.exp(-R * T) * (torch.exp(torch.log(s).mean(1)) - K).clamp(min=0)
    g = g.reshape(-1, 2).mean(1)
    g_se = float(g.std() / math.sqrt(len(g)))
    print(f"geometric Asian MC {float(g.mean()):.5f} SE {g_se:.5f}; QuantLib {geo.NPV():.5f}")
    assert abs(float(g.mean()) - geo.NPV()) < 3 * g_se
