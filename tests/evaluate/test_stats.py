"""Stylized-fact statistics against known answers, with tolerances from standard errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neuralsde_fin._evaluate._stats import (
    ks_2samp,
    moments,
    pooled_acf,
    pooled_leverage,
    quantiles_es,
)


def test_pooled_acf_iid_within_se():
    rng = np.random.default_rng(0)
    n_windows, n_steps, lags = 200, 100, 20
    r = rng.standard_normal((n_windows, n_steps))
    for acf in (pooled_acf(r, lags), pooled_acf(np.abs(r), lags)):
        se = 1 / np.sqrt(n_windows * (n_steps - np.arange(1, lags + 1)))
        print("max |acf| / se:", np.max(np.abs(acf) / se))
        assert acf.shape == (lags,)
        assert np.all(np.abs(acf) < 4 * se)


def test_pooled_acf_ar1_matches_phi_power_k():
    rng = np.random.default_rng(1)
    phi, n_windows, n_steps, lags = 0.5, 400, 60, 5
    x = np.empty((n_windows, n_steps))
    x[:, 0] = rng.standard_normal(n_windows) / np.sqrt(1 - phi**2)  # stationary start
    e = rng.standard_normal((n_windows, n_steps))
    for t in range(1, n_steps):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    acf = pooled_acf(x, lags)
    k = np.arange(1, lags + 1)
    n_k = n_windows * (n_steps - k)
    # Bartlett's variance of the sample ACF of an AR(1) at lag k.
    var = ((1 + phi**2) * (1 - phi ** (2 * k)) / (1 - phi**2) - 2 * k * phi ** (2 * k)) / n_k
    se = np.sqrt(var)
    print("acf:", acf, "exact:", phi**k, "se:", se)
    assert np.all(np.abs(acf - phi**k) < 4 * se)


def test_pooled_acf_does_not_pair_across_windows():
    # The definition, written out: pairs inside each window, pooled mean and variance.
    rng = np.random.default_rng(2)
    r = rng.standard_normal((3, 50))
    stacked = pooled_acf(r, 3)
    xc = r - r.mean()
    manual = [
        sum((xc[w, :-k] * xc[w, k:]).sum() for w in range(3)) / (3 * (50 - k)) / (xc**2).mean()
        for k in (1, 2, 3)
    ]
    np.testing.assert_allclose(stacked, manual, rtol=1e-12)


def test_pooled_acf_multi_asset_and_bad_lags():
    rng = np.random.default_rng(3)
    r = rng.standard_normal((10, 30, 2))
    out = pooled_acf(r, 5)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out[:, 1], pooled_acf(r[..., 1], 5), rtol=1e-12)
    with pytest.raises(ValueError, match="lags=30"):
        pooled_acf(r, 30)


def test_leverage_iid_zero_and_negative_for_asymmetric_volatility():
    rng = np.random.default_rng(4)
    n_windows, n_steps, lags = 200, 100, 10
    r = rng.standard_normal((n_windows, n_steps))
    lev = pooled_leverage(r, lags)
    se = 1 / np.sqrt(n_windows * (n_steps - np.arange(1, lags + 1)))
    print("iid leverage / se:", lev / se)
    assert np.all(np.abs(lev) < 4 * se)
    # A fall today doubles tomorrow's volatility: corr(r_t, r_{t+1}^2) < 0 by many SEs.
    z = rng.standard_normal((n_windows, n_steps))
    vol = np.ones_like(z)
    vol[:, 1:] = np.where(z[:, :-1] < 0, 2.0, 1.0)
    lev = pooled_leverage(vol * z, lags)
    print("asymmetric leverage lag 1:", lev[0], "se:", se[0])
    assert lev[0] < -10 * se[0]


def test_kurtosis_of_student_t_within_bootstrap_se():
    nu = 12.0  # finite 8th moment, so the sample kurtosis has a finite variance
    exact = 6 / (nu - 4)
    rng = np.random.default_rng(5)
    x = rng.standard_t(nu, size=50_000)
    est = moments(x)["kurtosis"]
    boot = [stats.kurtosis(x[rng.integers(0, x.size, x.size)]) for _ in range(100)]
    se = float(np.std(boot, ddof=1))
    print(f"excess kurtosis {est:.4f}, exact {exact:.4f}, bootstrap se {se:.4f}")
    assert abs(est - exact) < 4 * se


def test_skew_and_std_of_normal_within_se():
    rng = np.random.default_rng(6)
    n = 40_000
    m = moments(2.0 * rng.standard_normal(n))
    se_skew, se_std = np.sqrt(6 / n), 2.0 / np.sqrt(2 * n)
    print(m, se_skew, se_std)
    assert abs(m["skew"]) < 4 * se_skew
    assert abs(m["std"] - 2.0) < 4 * se_std


def test_ks_p_value_large_for_same_law_small_for_shifted_law():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal(2000), rng.standard_normal(2000)
    stat, p = ks_2samp(x, y)
    print("same law: ", stat, p)
    assert p > 0.05
    stat, p = ks_2samp(x, y + 0.3)
    print("shifted:", stat, p)
    assert p < 1e-6


def test_quantiles_and_expected_shortfall_of_normal():
    rng = np.random.default_rng(8)
    n, sigma = 200_000, 0.1
    x = sigma * rng.standard_normal(n)
    out = quantiles_es(x)
    assert set(out) == {"q01", "q05", "q50", "q95", "q99", "es01", "es05"}
    for a in (0.01, 0.05, 0.5, 0.95, 0.99):
        q = sigma * stats.norm.ppf(a)
        se = np.sqrt(a * (1 - a) / n) / stats.norm.pdf(q / sigma) * sigma
        key = f"q{round(100 * a):02d}"
        print(key, out[key], q, se)
        assert abs(out[key] - q) < 4 * se
    for a in (0.01, 0.05):
        es = sigma * stats.norm.pdf(stats.norm.ppf(a)) / a
        boot = [quantiles_es(x[rng.integers(0, n, n)], (), (a,))[f"es{round(100 * a):02d}"]
                for _ in range(30)]
        se = float(np.std(boot, ddof=1))
        key = f"es{round(100 * a):02d}"
        print(key, out[key], es, se)
        assert abs(out[key] - es) < 4 * se
