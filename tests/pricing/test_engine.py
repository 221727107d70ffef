"""Monte Carlo pricing on GBM scenarios against Black-Scholes; engine behaviour and errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf

S0, R, Q, SIGMA = 100.0, 0.03, 0.01, 0.2
STRIKES = torch.tensor([80.0, 90.0, 100.0, 110.0, 120.0], dtype=torch.float64)
MATS = torch.tensor([1.0, 3.0, 6.0, 12.0], dtype=torch.float64).unsqueeze(-1) / 12


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the machine is shared: one intra-op thread is much faster than two under contention
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gbm_scen():
    # exact log-Euler on a monthly grid: maturities 1, 3, 6, 12 months are grid times
    return nsf.GBM(SIGMA).sample(
        200_000, 12, r=R, q=Q, spot=S0, seed=1, dt=1 / 12, antithetic=True
    )


def test_european_grid_within_3se_of_black_scholes(gbm_scen):
    calls = nsf.price(gbm_scen, nsf.EuropeanCall(STRIKES, MATS))
    puts = nsf.price(gbm_scen, nsf.EuropeanPut(STRIKES, MATS))
    for name, res in (("call", calls), ("put", puts)):
        ref = nsf.black_scholes(S0, STRIKES, MATS, R, Q, SIGMA, kind=name)
        z = (res.price - ref) / res.stderr
        print(name, "price\n", res.price, "\nSE\n", res.stderr, "\n(est - BS) / SE\n", z)
        assert res.price.shape == (4, 5)
        assert (z.abs() < 3).all()


def test_implied_vols_recover_sigma(gbm_scen):
    res = nsf.price(gbm_scen, nsf.EuropeanCall(STRIKES, MATS))
    iv = nsf.implied_vol(res.price, S0, STRIKES, MATS, R, Q)
    se_iv = res.stderr / nsf.black_scholes_vega(S0, STRIKES, MATS, R, Q, SIGMA)
    err = (iv - SIGMA) * 100
    print("implied vol error (vol points)\n", err, "\nits SE (vol points)\n", se_iv * 100)
    # 0.3 vol points is a >= 3 SE statement where the implied vol's SE is <= 0.1 vol points;
    # at the deep 1-month wings (vega ~ 0) the implied vol is only known to 3 SE
    sharp = se_iv < 1e-3
    assert sharp.sum() >= 17
    assert (err.abs()[sharp] < 0.3).all()
    assert ((iv - SIGMA).abs() < 3 * se_iv).all()


def test_put_call_parity_on_same_samples(gbm_scen):
    opts = [nsf.EuropeanCall(STRIKES, MATS), nsf.EuropeanPut(STRIKES, MATS)]
    fwd = S0 * torch.exp(-Q * MATS) - STRIKES * torch.exp(-R * MATS)
    c, p = nsf.price(gbm_scen, opts)
    gap = (c.price - p.price - fwd).abs().max().item()
    print("parity gap with control variate", gap)
    assert gap < 1e-12
    c, p = nsf.price(gbm_scen, opts, control_variate=False)
    mc_fwd = nsf.price(gbm_scen, nsf.EuropeanCall(1e-300, MATS), control_variate=False).price
    gap = (c.price - p.price - (mc_fwd - STRIKES * torch.exp(-R * MATS))).abs().max().item()
    print("parity gap without control variate (MC forward)", gap)
    assert gap < 1e-12


def test_control_variate_cuts_atm_se(gbm_scen):
    res = nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 0.5))
    plain = nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 0.5), control_variate=False)
    factor = plain.stderr / res.stderr
    print(f"ATM 6m call: SE {plain.stderr:.5f}, with CV {res.stderr:.5f}, factor {factor:.2f}")
    assert res.stderr_plain == pytest.approx(plain.stderr)
    assert factor >= 2.0


def test_antithetic_pairs_averaged_before_se():
    plain = nsf.GBM(SIGMA).sample(20_000, 3, r=R, spot=S0, seed=3, dt=1 / 12)
    anti = nsf.GBM(SIGMA).sample(20_000, 3, r=R, spot=S0, seed=3, dt=1 / 12, antithetic=True)
    assert anti.antithetic
    za = torch.log(anti.prices[:, 1:, 0] / anti.prices[:, :-1, 0]) - (R - SIGMA**2 / 2) / 12
    torch.testing.assert_close(za[0::2], -za[1::2], rtol=0, atol=1e-12)
    opt = nsf.EuropeanCall(100.0, 0.25)
    ra = nsf.price(anti, opt, control_variate=False)
    # the pair means are the independent draws: SE from their spread
    y = math.exp(-R * 0.25) * (anti.prices[:, 3, 0] - 100).clamp(min=0)
    pairs = y.reshape(-1, 2).mean(1)
    assert ra.stderr == pytest.approx(float(pairs.std() / math.sqrt(len(pairs))), rel=1e-12)
    rp = nsf.price(plain, opt, control_variate=False)
    ref = nsf.black_scholes(S0, 100.0, 0.25, R, 0.0, SIGMA)
    print("antithetic", ra.price, ra.stderr, "plain", rp.price, rp.stderr, "BS", ref)
    assert abs(ra.price - ref) < 3 * ra.stderr and ra.stderr < rp.stderr


def test_result_fields_and_list(gbm_scen):
    out = nsf.price(gbm_scen, [nsf.EuropeanCall(100.0, 1.0), nsf.DigitalCall(95.0, 1.0)])
    assert isinstance(out, list) and len(out) == 2
    res = out[0]
    assert isinstance(res.price, float) and res.n_paths == 200_000
    lo, hi = res.ci95
    assert lo < res.price < hi and hi - lo == pytest.approx(2 * 1.959963984540054 * res.stderr)
    res99 = nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 1.0), level=0.99)
    assert res99.ci95 == pytest.approx(res.ci95)
    # digital call = e^{-rT} N(d2) = -dC/dK
    d2 = (math.log(S0 / 95) + (R - Q - SIGMA**2 / 2)) / SIGMA
    ref = math.exp(-R) * 0.5 * math.erfc(-d2 / math.sqrt(2))
    print("digital", out[1].price, out[1].stderr, ref)
    assert abs(out[1].price - ref) < 3 * out[1].stderr


def test_class_forms_match_functional_forms(gbm_scen):
    scen = nsf.Scenarios(gbm_scen.times[:7], gbm_scen.prices[:1000, :7], r=R, q=Q)
    path = scen.prices[:, :, 0]
    T = 0.5
    pairs = [
        (nsf.EuropeanPut(95.0, T), nsf.european_payoff(path, 95.0, call=False)),
        (nsf.DigitalPut(95.0, T), nsf.digital_payoff(path, 95.0, call=False)),
        (nsf.AsianCall(95.0, T), nsf.asian_payoff(path, 95.0)),
        (nsf.BarrierPut(105.0, T, 90.0), nsf.barrier_payoff(path, 105.0, 90.0, call=False)),
        (
            nsf.BarrierCall(95.0, T, 110.0, kind="up-and-in", bgk_sigma=0.2),
            nsf.barrier_payoff(path, 95.0, 110.0, "up-and-in", bgk_sigma=0.2, dt=1 / 12),
        ),
        (nsf.LookbackCall(None, T), nsf.lookback_payoff(path)),
        (nsf.LookbackPut(100.0, T), nsf.lookback_payoff(path, 100.0, call=False)),
    ]
    for opt, ref in pairs:
        torch.testing.assert_close(opt.payoff(scen), ref, rtol=0, atol=1e-12, msg=repr(opt))
    # a maturity grid gives, column by column, the payoff on the truncated paths
    grid = nsf.AsianCall(95.0, torch.tensor([1 / 12, 0.25, 0.5], dtype=torch.float64)).payoff(scen)
    for j, n in enumerate((1, 3, 6)):
        torch.testing.assert_close(grid[:, j], nsf.asian_payoff(path[:, : n + 1], 95.0))


def test_barrier_in_plus_out_is_vanilla(gbm_scen):
    opts = [
        nsf.BarrierCall(100.0, MATS, 90.0, kind="down-and-in"),
        nsf.BarrierCall(100.0, MATS, 90.0, kind="down-and-out"),
        nsf.EuropeanCall(100.0, MATS),
    ]
    din, dout, van = nsf.price(gbm_scen, opts)
    assert (din.price + dout.price - van.price).abs().max() < 1e-10


def test_floating_lookback_below_continuous_monitoring(gbm_scen):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    flat = lambda x: ql.YieldTermStructureHandle(ql.FlatForward(today, x, dc))
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), SIGMA, dc))
    proc = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(S0)), flat(Q), flat(R), vol)
    opt = ql.ContinuousFloatingLookbackOption(
        S0, ql.FloatingTypePayoff(ql.Option.Call), ql.EuropeanExercise(today + 365)
    )
    opt.setPricingEngine(ql.AnalyticContinuousFloatingLookbackEngine(proc))
    cont = opt.NPV()
    res = nsf.price(gbm_scen, nsf.LookbackCall(None, 1.0))
    print("floating lookback call, monthly monitoring", res.price, res.stderr, "continuous", cont)
    # discrete monitoring sees a higher minimum: the price lies below the continuous one
    assert res.price + 3 * res.stderr < cont


def test_historical_scenarios_refused_unless_allowed():
    hist = nsf.GBM(SIGMA, mu=0.08).sample(1000, 4, measure="historical", spot=S0, seed=0)
    with pytest.raises(ValueError, match="historical") as exc:
        nsf.price(hist, nsf.EuropeanCall(100.0, 4 / 252))
    assert "\n" not in str(exc.value)
    res = nsf.price(hist, nsf.EuropeanCall(100.0, 4 / 252), r=0.02, allow_historical=True)
    assert not res.control_variate and res.price > 0


def test_bad_arguments_one_line_errors(gbm_scen):
    cases = [
        (lambda: nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 0.3)), "not a time of the scenario"),
        (lambda: nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 2.0)), "not a time of the scenario"),
        (lambda: nsf.price(gbm_scen, "call"), "option must be"),
        (lambda: nsf.price(gbm_scen, nsf.EuropeanCall(100.0, 1.0), r=0.05), "differs"),
        (lambda: nsf.EuropeanCall(-1.0, 1.0), "strike must be > 0"),
        (lambda: nsf.EuropeanCall(100.0, float("nan")), "maturity must be finite"),
        (lambda: nsf.BarrierCall(100.0, 1.0, 90.0, kind="sideways"), "kind must be one of"),
        (lambda: nsf.price(gbm_scen, nsf.BasketCall(100.0, 1.0, [0.5, 0.5])), "weights"),
        (lambda: nsf.price(gbm_scen.prices, nsf.EuropeanCall(100.0, 1.0)), "scen must be"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as exc:
            fn()
        assert "\n" not in str(exc.value)


def test_basket_call_on_correlated_gbm():
    corr = [[1.0, 0.5], [0.5, 1.0]]
    scen = nsf.GBM([0.2, 0.3], corr=corr).sample(
        100_000, 6, r=R, q=[0.0, 0.02], spot=[100.0, 50.0], seed=4, dt=1 / 12, antithetic=True
    )
    # a basket of one asset is a European call
    one = nsf.price(scen, nsf.BasketCall(100.0, 0.5, weights=[1.0, 0.0]))
    ref = nsf.black_scholes(100.0, 100.0, 0.5, R, 0.0, 0.2)
    print("basket of asset 0", one.price, one.stderr, ref)
    assert abs(one.price - ref) < 3 * one.stderr
    # the correlation of the log returns is the one requested
    lr = torch.log(scen.prices[:, -1] / scen.prices[:, 0])
    rho = float(torch.corrcoef(lr.T)[0, 1])
    assert abs(rho - 0.5) < 0.01
    # the basket (weights 1/2, 1) lies between its bounds: the sum of the single calls (upper)
    res = nsf.price(scen, nsf.BasketCall(100.0, 0.5, weights=[0.5, 1.0]))
    upper = 0.5 * nsf.black_scholes(100.0, 100.0, 0.5, R, 0.0, 0.2) + nsf.black_scholes(
        50.0, 50.0, 0.5, R, 0.02, 0.3
    )
    assert 0 < res.price < upper + 3 * res.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(res.stderr)
