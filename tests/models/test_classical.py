"""Classical reference models: exact GBM law, Heston against QuantLib's analytic engine, noise."""

from __future__ import annotations

import math

import pytest
import torch

import neuralsde_fin as nsf

HESTON = {"kappa": 2.0, "theta": 0.04, "xi": 0.5, "rho": -0.7, "v0": 0.04}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ql_heston_call(S, K, days, r, q, kappa, theta, xi, rho, v0):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    flat = lambda x: ql.YieldTermStructureHandle(ql.FlatForward(today, x, dc))
    proc = ql.HestonProcess(flat(r), flat(q), ql.QuoteHandle(ql.SimpleQuote(S)), v0, kappa,
                            theta, xi, rho)
    engine = ql.AnalyticHestonEngine(ql.HestonModel(proc), 1e-12, 100_000)
    opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, K),
                           ql.EuropeanExercise(today + days))
    opt.setPricingEngine(engine)
    return opt.NPV()


def test_heston_qe_within_3se_of_quantlib():
    # Andersen QE with weekly steps (dt = 7/365, Actual/365 so QuantLib's maturities are the
    # grid times 4, 13, 26 and 52 weeks); 100k paths in antithetic pairs. Measured with 400k
    # paths on this grid, the scheme's bias is below 0.013 (under 1.5 SE of that run).
    weeks = torch.tensor([4, 13, 26, 52])
    strikes = torch.tensor([80.0, 90.0, 100.0, 110.0, 120.0], dtype=torch.float64)
    r, q, s0 = 0.03, 0.01, 100.0
    scen = nsf.Heston(**HESTON, scheme="qe").sample(
        100_000, 52, r=r, q=q, spot=s0, seed=11, dt=7 / 365, antithetic=True
    )
    mats = (weeks.to(torch.float64) * 7 / 365).unsqueeze(-1)
    res = nsf.price(scen, nsf.EuropeanCall(strikes, mats))
    ref = torch.tensor(
        [[_ql_heston_call(s0, k, 7 * int(w), r, q, **HESTON) for k in strikes.tolist()]
         for w in weeks]
    )
    z = (res.price - ref) / res.stderr
    print("Heston QE price\n", res.price, "\nQuantLib\n", ref, "\nSE\n", res.stderr, "\nz\n", z)
    # the 1-month 120 call is worth 1e-5: no path of 100k ends in the money (SE 0); there the
    # check is absolute
    tiny = ref < 1e-4 * s0
    assert tiny.sum() == 1
    assert (z.abs()[~tiny] < 3).all()
    assert ((res.price - ref).abs()[tiny] < 1e-4 * s0).all()


def test_heston_full_truncation_is_martingale_and_close():
    r, q = 0.02, 0.0
    scen = nsf.Heston(**HESTON, scheme="full_truncation").sample(
        20_000, 26, r=r, q=q, spot=100.0, seed=3, dt=7 / 365
    )
    T = float(scen.times[-1])
    disc_s = math.exp(-r * T) * scen.prices[:, -1, 0]
    se = float(disc_s.std() / math.sqrt(len(disc_s)))
    print("E[e^-rT S_T]", float(disc_s.mean()), "SE", se)
    assert abs(float(disc_s.mean()) - 100.0) < 3 * se
    res = nsf.price(scen, nsf.EuropeanCall(100.0, T))
    ref = _ql_heston_call(100.0, 100.0, 182, r, q, **HESTON)
    print("full truncation ATM 26w", res.price, res.stderr, "QuantLib", ref)
    assert abs(res.price - ref) < 3 * res.stderr


def test_heston_qe_variance_moments():
    # E[v_t] = theta + (v0 - theta) e^{-kappa t} holds exactly for QE (moment matched)
    p = dict(HESTON, v0=0.09)
    _, v = nsf.Heston(**p).sample(50_000, 26, seed=5, dt=7 / 365, return_variance=True)
    t = 26 * 7 / 365
    mean = p["theta"] + (p["v0"] - p["theta"]) * math.exp(-p["kappa"] * t)
    se = float(v[:, -1].std() / math.sqrt(v.shape[0]))
    print("E[v_T]", float(v[:, -1].mean()), mean, se)
    assert abs(float(v[:, -1].mean()) - mean) < 3 * se and bool((v >= 0).all())


def test_gbm_exact_law():
    sigma, r, q = 0.3, 0.05, 0.02
    scen = nsf.GBM(sigma).sample(50_000, 4, r=r, q=q, spot=2.0, seed=2, dt=0.25)
    lr = torch.log(scen.prices[:, -1, 0] / 2.0)
    m, s = float(lr.mean()), float(lr.std())
    se_m = s / math.sqrt(lr.numel())
    print("log-return mean", m, (r - q - sigma**2 / 2), "std", s, sigma)
    assert abs(m - (r - q - sigma**2 / 2)) < 3 * se_m
    assert abs(s - sigma) < 3 * sigma / math.sqrt(2 * lr.numel())
    hist = nsf.GBM(sigma, mu=0.1).sample(50_000, 4, measure="historical", spot=2.0, seed=2, dt=0.25)
    assert hist.measure == "historical"
    gain = float(hist.prices[:, -1, 0].mean() / 2.0)
    se_g = float(hist.prices[:, -1, 0].std() / 2.0) / math.sqrt(50_000)
    assert abs(gain - math.exp(0.1)) < 3 * se_g


@pytest.mark.parametrize(
    "model", [nsf.GBM(0.2), nsf.Heston(**HESTON), nsf.Heston(**HESTON, scheme="full_truncation")]
)
def test_noise_is_counter_based(model):
    big = model.sample(1000, 5, seed=9, antithetic=True)
    small = model.sample(10, 5, seed=9, antithetic=True)
    again = model.sample(10, 5, seed=9, antithetic=True)
    other = model.sample(10, 5, seed=10, antithetic=True)
    assert torch.equal(big.prices[:10], small.prices)  # path i does not depend on n_paths
    assert torch.equal(small.prices, again.prices)  # bit-identical for the same seed
    assert not torch.equal(small.prices, other.prices)
    f32 = model.sample(10, 5, seed=9, dtype=torch.float32)
    assert f32.prices.dtype == torch.float32
    torch.testing.assert_close(f32.prices.double(), model.sample(10, 5, seed=9).prices,
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda: nsf.GBM(-0.1), "sigma must be"),
        (lambda: nsf.Heston(2.0, 0.04, 0.5, -1.5, 0.04), "rho must be"),
        (lambda: nsf.Heston(2.0, 0.04, 0.5, -0.5, 0.04, scheme="euler"), "scheme must be"),
        (lambda: nsf.GBM(0.2).sample(0, 5), "n_paths must be"),
        (lambda: nsf.GBM(0.2).sample(10, 2.5), "horizon must be"),
        (lambda: nsf.GBM(0.2).sample(10, 5, measure="P"), "measure must be"),
        (lambda: nsf.GBM(0.2).sample(11, 5, antithetic=True), "even n_paths"),
        (lambda: nsf.GBM(0.2).sample(10, 5, spot=-1.0), "spot must be > 0"),
        (lambda: nsf.GBM(0.2).sample(10, 5, dt=0.0), "dt must be"),
        (lambda: nsf.GBM([0.2, 0.3], corr=[[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
    ],
)
def test_bad_arguments(fn, match):
    with pytest.raises(ValueError, match=match) as exc:
        fn()
    assert "\n" not in str(exc.value)
