"""GBM and GJR-GARCH-t baselines: fits recover known parameters; simulations show the facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import neuralsde_fin as nsf
from neuralsde_fin._evaluate._stats import moments, pooled_acf

ROOT = Path(__file__).resolve().parents[2]
TRUE_GJR = dict(mu=0.03, omega=0.02, alpha=0.03, gamma=0.12, beta=0.87, nu=7.0)  # percent units


def test_gbm_mle_recovers_sigma_and_mu_within_se():
    mu, sigma, dt, n = 0.05, 0.2, 1 / 252, 5000
    truth = nsf.GBMBaseline.from_params(mu, sigma)
    x = truth.sample(1, n, seed=0)[0, :, 0]
    prices = pd.DataFrame({"S": 100 * np.exp(x)}, index=pd.bdate_range("2000-01-03", periods=n + 1))
    fit = nsf.GBMBaseline().fit(prices)
    se_sigma, se_mu = fit.stderr["sigma"][0], fit.stderr["mu"][0]
    print(f"sigma {fit.sigma[0]:.5f} vs {sigma} (se {se_sigma:.5f}); mu {fit.mu[0]:.4f} vs {mu} "
          f"(se {se_mu:.4f})")
    assert abs(fit.sigma[0] - sigma) < 4 * se_sigma
    assert abs(fit.mu[0] - mu) < 4 * se_mu
    assert se_sigma == pytest.approx(sigma / np.sqrt(2 * n), rel=0.05)
    # Closed form: sigma^2 is the biased variance of log returns over dt.
    r = np.diff(np.log(prices["S"].to_numpy()))
    assert fit.sigma[0] == pytest.approx(np.sqrt(r.var(ddof=0) / dt), rel=1e-12)


def test_gbm_sample_shape_start_and_volatility():
    g = nsf.GBMBaseline.from_params([0.0, 0.1], [0.2, 0.3], corr=[[1, 0.5], [0.5, 1]])
    x = g.sample(4000, 10, seed=1)
    assert x.shape == (4000, 11, 2)
    assert np.all(x[:, 0] == 0)
    r = np.diff(x, axis=1).reshape(-1, 2)
    sd = r.std(axis=0, ddof=1) * np.sqrt(252)
    se = np.array([0.2, 0.3]) / np.sqrt(2 * r.shape[0])
    print("ann. vol", sd, "se", se, "corr", np.corrcoef(r.T)[0, 1])
    assert np.all(np.abs(sd - [0.2, 0.3]) < 4 * se)
    assert abs(np.corrcoef(r.T)[0, 1] - 0.5) < 4 * (1 - 0.25) / np.sqrt(r.shape[0])
    np.testing.assert_array_equal(g.sample(5, 10, seed=1), g.sample(5, 10, seed=1))


def test_gjr_garch_fit_recovers_parameters_of_simulated_gjr_data():
    """Tolerance: 4 of arch's reported (robust) standard errors per parameter."""
    truth = nsf.GJRGarchBaseline.from_params(**TRUE_GJR)
    r = np.diff(truth.sample(1, 4000, seed=3)[0, :, 0])
    fit = nsf.GJRGarchBaseline().fit_returns(r)
    est, se = fit.params_[0], fit.stderr_[0]
    for k, v in TRUE_GJR.items():
        print(f"{k:6s} true {v:8.4f}  est {est[k]:8.4f}  se {se[k]:.4f}")
    for k, v in TRUE_GJR.items():
        assert abs(est[k] - v) < 4 * se[k], k


def test_gjr_garch_paths_show_volatility_clustering_and_fat_tails():
    g = nsf.GJRGarchBaseline.from_params(**TRUE_GJR)
    x = g.sample(2000, 64, seed=4)
    assert x.shape == (2000, 65, 1) and np.all(x[:, 0] == 0)
    r = np.diff(x[..., 0], axis=1)
    acf1 = pooled_acf(np.abs(r), 1)[0]
    kurt = moments(r)["kurtosis"]
    print(f"GJR-GARCH-t paths: ACF |r| lag 1 = {acf1:.3f}, excess kurtosis = {kurt:.2f}")
    assert acf1 > 0.1
    assert kurt > 1
    # Stationary start: E[y^2] = mu^2 + omega / (1 - alpha - gamma / 2 - beta) (percent^2) on
    # every day; the paths are independent, so the SE comes from the spread of per-path means.
    p = TRUE_GJR
    exact = p["mu"] ** 2 + p["omega"] / (1 - p["alpha"] - p["gamma"] / 2 - p["beta"])
    per_path = ((100 * r) ** 2).mean(axis=1)
    est, se = per_path.mean(), per_path.std(ddof=1) / np.sqrt(len(per_path))
    print(f"E[y^2] {est:.4f} vs stationary {exact:.4f} (se {se:.4f})")
    assert abs(est - exact) < 4 * se


def test_gjr_start_last_continues_the_history_and_multi_asset():
    data = ROOT / "data"
    both = nsf.load_prices({"SPX": data / "sp500.csv", "NDX": data / "nasdaq.csv"}).iloc[-1500:]
    g = nsf.GJRGarchBaseline(start="last").fit(both)
    assert len(g.params_) == 2 and g.corr.shape == (2, 2)
    print("copula corr", g.corr[0, 1])
    assert 0.5 < g.corr[0, 1] < 1
    x = g.sample(500, 5, seed=0)
    assert x.shape == (500, 6, 2)
    r = np.diff(x, axis=1).reshape(-1, 2)
    assert np.corrcoef(r.T)[0, 1] > 0.5


def test_baseline_errors():
    with pytest.raises(ValueError, match="call .fit"):
        nsf.GBMBaseline().sample(2, 2)
    with pytest.raises(ValueError, match="n_paths"):
        nsf.GBMBaseline.from_params(0.0, 0.2).sample(0, 2)
    with pytest.raises(ValueError, match="start"):
        nsf.GJRGarchBaseline(start="middle")
    explosive = nsf.GJRGarchBaseline.from_params(0.0, 0.02, 0.1, 0.1, 0.9, 7.0)
    with pytest.raises(ValueError, match="stationary"):
        explosive.sample(2, 2)
    with pytest.raises(ValueError, match="prices"):
        nsf.GBMBaseline().fit(np.array([1.0, -1.0, 2.0]))
    assert set(nsf.BASELINES) >= {"gbm", "gjr_garch_t"}


def test_more_paths_leave_the_first_paths_unchanged():
    gjr = nsf.GJRGarchBaseline.from_params(**TRUE_GJR, burn_in=20)
    np.testing.assert_array_equal(gjr.sample(3, 10, seed=7), gjr.sample(9, 10, seed=7)[:3])
    chunked = gjr.sample(9, 10, seed=7, chunk_size=4)
    np.testing.assert_array_equal(gjr.sample(9, 10, seed=7), chunked)
    gbm = nsf.GBMBaseline.from_params([0.0, 0.1], [0.2, 0.3])
    np.testing.assert_array_equal(gbm.sample(3, 10, seed=7), gbm.sample(9, 10, seed=7)[:3])


def test_sample_scenarios_and_repr():
    gbm = nsf.GBMBaseline.from_params(0.05, 0.2)
    assert repr(gbm) == "GBMBaseline(mu=0.05, sigma=0.2)"
    assert "unfitted" in repr(nsf.GJRGarchBaseline())
    if not hasattr(nsf, "Scenarios"):
        pytest.skip("nsf.Scenarios is not on this branch yet (it comes with the pricing layer)")
    scen = gbm.sample_scenarios(50, 10, spot=100.0, seed=1)
    np.testing.assert_allclose(scen.prices[:, 0].numpy(), 100.0)
    np.testing.assert_allclose(np.log(scen.prices.numpy() / 100.0), gbm.sample(50, 10, seed=1))
    assert scen.measure == "historical" and scen.times.shape == (11,)
