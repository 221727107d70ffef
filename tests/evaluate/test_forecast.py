"""Forecast evaluation: CRPS known answers, the GJR-GARCH filter against arch, the scoring loop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

import neuralsde_fin as nsf

TRUE_GJR = dict(mu=0.03, omega=0.02, alpha=0.03, gamma=0.12, beta=0.87, nu=7.0)  # percent units


def test_crps_of_a_point_mass_is_the_absolute_error():
    assert nsf.crps_samples(np.full(50, 2.0), 0.5) == pytest.approx(1.5, abs=1e-12)


@pytest.mark.parametrize("y", [-1.3, 0.0, 0.4, 2.5])
def test_crps_of_gaussian_samples_matches_the_closed_form(y):
    """CRPS(N(mu, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)], z = (y - mu) / s
    (Gneiting and Raftery 2007); the sample estimate's bias is O(1 / n)."""
    mu, s, n = 0.2, 1.5, 200_000
    x = np.random.default_rng(0).normal(mu, s, n)
    z = (y - mu) / s
    exact = s * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    # the estimator's spread over seeds, measured: a few 1e-3 at n = 2e5
    assert nsf.crps_samples(x, y) == pytest.approx(exact, abs=8e-3)


def _gjr_returns(n: int = 3000, seed: int = 0) -> np.ndarray:
    truth = nsf.GJRGarchBaseline.from_params(**TRUE_GJR)
    return np.diff(truth.sample(1, n, seed=seed)[0, :, 0])


def test_filtered_variances_equal_arch_conditional_variances():
    """Row t of the filter is the variance of return t + 1; arch's conditional volatility at
    t + 1 is the same quantity (its backcast start is forgotten after a few hundred days)."""
    r = _gjr_returns()
    fit = nsf.GJRGarchBaseline(start="last").fit_returns(r)
    ours = fit.filter_variances(r)[:, 0]
    arch_var = np.asarray(fit.results[0].conditional_volatility) ** 2
    assert np.allclose(ours[500:-1], arch_var[501:], rtol=1e-8)
    # the next-day variance after the history: what start="last" samples from
    a = fit.sample(2000, 10, seed=3)
    b = fit.sample_from(ours[-1:], 2000, 10, seed=3)
    assert np.allclose(a, b, rtol=1e-8, atol=1e-12)


class _Oracle:
    """A 'conditional model' that forecasts with the true GJR dynamics from each date."""

    context = 5

    def __init__(self, prices: pd.DataFrame) -> None:
        self.truth = nsf.GJRGarchBaseline.from_params(**TRUE_GJR)
        r = np.diff(np.log(prices.to_numpy()), axis=0)
        self.var = self.truth.filter_variances(r)
        self.n_assets = 1

    def sample(self, n_paths, horizon, *, history=None, seed=0, **_):
        if history is None:  # the stationary law
            x = self.truth.sample(n_paths, horizon, seed=seed)
        else:
            x = self.truth.sample_from(self.var[len(history) - 2], n_paths, horizon, seed=seed)
        return nsf.Scenarios(torch.arange(horizon + 1) / 252.0, torch.exp(torch.tensor(x)),
                             measure="historical")


@pytest.fixture(scope="module")
def gjr_prices():
    r = _gjr_returns(2600, seed=1)
    idx = pd.bdate_range("2000-01-03", periods=len(r) + 1, name="Date")
    return pd.DataFrame({"S": 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))}, index=idx)


def test_forecast_scores_and_their_bookkeeping(gjr_prices):
    """The true dynamics forecast better than their own stationary law, and about as well as
    GJR-GARCH-t fitted on the training years (the same model class)."""
    test_start = gjr_prices.index[2000]
    rep = nsf.forecast_evaluate(_Oracle(gjr_prices), gjr_prices, test_start=str(test_start.date()),
                                every=10, horizon=21, n_paths=1000, seed=0)
    dates = rep.per_date.index
    assert dates[0] == test_start and len(dates) == len(range(2000, 2600 - 21 + 1, 10))
    assert np.allclose(rep.table.loc["model", "crps_rv"], rep.per_date["model_rv"].mean())
    ratio = rep.ratios("gjr_garch_t")
    assert ratio["crps_rv"] == pytest.approx(
        rep.table.loc["model", "crps_rv"] / rep.table.loc["gjr_garch_t", "crps_rv"])
    print(rep.to_markdown())
    assert rep.ratios("stationary")["crps_rv"] < 0.95
    assert abs(ratio["crps_rv"] - 1) < 0.05 and abs(ratio["crps_return"] - 1) < 0.05
    d = rep.to_dict()
    assert d["n_dates"] == len(dates) and set(d["ratios"]) == {"gjr_garch_t", "stationary"}
    # the outcomes are what happened
    logp = np.log(gjr_prices["S"].to_numpy())
    assert rep.per_date["return"].iloc[0] == pytest.approx(logp[2021] - logp[2000])
    assert rep.per_date["rv"].iloc[0] == pytest.approx(
        math.sqrt(np.sum(np.diff(logp[2000:2022]) ** 2)))


def test_forecast_errors(gjr_prices):
    with pytest.raises(ValueError, match="context=C"):
        nsf.forecast_evaluate(nsf.MarketModel(1), gjr_prices, test_start="2005-01-03")
    with pytest.raises(ValueError, match="no forecast date"):
        nsf.forecast_evaluate(_Oracle(gjr_prices), gjr_prices, test_start="2100-01-01")
    with pytest.raises(ValueError, match="ForecastReport"):
        nsf.evaluate(None, gjr_prices, forecast={"test_start": "2005-01-03"})
