"""Stylized-fact statistics of windows of log-price paths, pooled over windows (numpy, float64).

Every statistic here takes windows of daily log returns, shape ``(n_windows, n_steps)`` or
``(n_windows, n_steps, n_assets)``, and pools them the same way for real and generated data:

* moments (mean, variance, skew, kurtosis) use every return of every window as one sample;
* lagged products (autocorrelations, leverage) pair ``r_t`` with ``r_{t+k}`` *inside* a window
  only (never across two windows), are centred and scaled by the pooled moments, and are averaged
  over all ``n_windows * (n_steps - k)`` pairs.

Centring by the pooled mean (rather than each window's own mean) keeps the slow variation of
volatility between windows in the ACF of ``|r|``, as in an ACF of one long history; it is the
estimator whose iid standard error is ``1 / sqrt(n_windows * (n_steps - k))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default horizon-return quantile levels.
QUANTILE_LEVELS = (0.01, 0.05, 0.5, 0.95, 0.99)
#: Default expected-shortfall levels.
ES_LEVELS = (0.01, 0.05)


def log_returns(paths: np.ndarray) -> np.ndarray:
    """Daily log returns of log-price paths: ``r_t = x_{t+1} - x_t`` along the time axis.

    Shape:
        paths: ``(n_windows, n_times, ...)``; output ``(n_windows, n_times - 1, ...)``.
    """
    return np.diff(paths, axis=1)


def _as3(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[None, :, None]
    if x.ndim == 2:
        return x[:, :, None]
    return x


def pooled_acf(returns: np.ndarray, lags: int = 20) -> np.ndarray:
    """Autocorrelation at lags ``1..lags``, pooled over windows.

    .. math:: \\hat\\rho(k) = \\frac{\\sum_{w} \\sum_{t} (r_{w,t} - \\bar r)(r_{w,t+k} - \\bar r)
              / N_k}{\\sum_{w,t} (r_{w,t} - \\bar r)^2 / N_0},
              \\quad N_k = n_{\\text{windows}} (n_{\\text{steps}} - k),

    with ``\\bar r`` the pooled mean; pairs never straddle two windows. Under iid returns its
    standard error is about ``1 / sqrt(N_k)``.

    Args:
        returns: windows of returns (pass ``abs(r)`` for the ACF of absolute returns).
        lags: the largest lag; must be below ``n_steps``.

    Returns:
        The ACF at lags ``1..lags``.

    Shape:
        returns: ``(n_windows, n_steps)``, ``(n_windows, n_steps, n_assets)`` or ``(n_steps,)``
        (one window); output ``(lags,)`` or ``(lags, n_assets)`` for 3-D input.
    """
    x = _as3(returns)
    n_steps = x.shape[1]
    if lags >= n_steps:
        raise ValueError(f"pooled_acf: lags={lags} must be below the window's {n_steps} steps")
    xc = x - x.mean(axis=(0, 1))
    var = (xc**2).mean(axis=(0, 1))
    out = np.stack([(xc[:, :-k] * xc[:, k:]).mean(axis=(0, 1)) for k in range(1, lags + 1)])
    out = out / var
    return out[:, 0] if np.asarray(returns).ndim < 3 else out


def pooled_leverage(returns: np.ndarray, lags: int = 20) -> np.ndarray:
    """Leverage correlation ``corr(r_t, r_{t+k}^2)`` at lags ``1..lags``, pooled over windows.

    .. math:: L(k) = \\frac{\\sum_{w,t} (r_{w,t} - \\bar r)(r^2_{w,t+k} - \\overline{r^2}) / N_k}
              {\\operatorname{sd}(r)\\, \\operatorname{sd}(r^2)}

    Negative values mean that falls raise later volatility (the leverage effect).

    Shape:
        returns: as :func:`pooled_acf`; output ``(lags,)`` or ``(lags, n_assets)``.

    References:
        Cont (2001), "Empirical properties of asset returns: stylized facts and statistical
        issues", Quantitative Finance 1(2).
    """
    x = _as3(returns)
    n_steps = x.shape[1]
    if lags >= n_steps:
        raise ValueError(f"pooled_leverage: lags={lags} must be below the window's {n_steps} steps")
    a = x - x.mean(axis=(0, 1))
    s = x**2
    b = s - s.mean(axis=(0, 1))
    den = np.sqrt((a**2).mean(axis=(0, 1)) * (b**2).mean(axis=(0, 1)))
    out = np.stack([(a[:, :-k] * b[:, k:]).mean(axis=(0, 1)) for k in range(1, lags + 1)]) / den
    return out[:, 0] if np.asarray(returns).ndim < 3 else out


def moments(r: np.ndarray) -> dict[str, float]:
    """Pooled mean, standard deviation, skewness and excess kurtosis of a 1-D sample.

    .. math:: \\text{skew} = m_3 / m_2^{3/2}, \\qquad \\text{kurt} = m_4 / m_2^2 - 3

    (central sample moments ``m_k``, no small-sample correction).
    """
    from scipy import stats  # imported on use: keeps `import neuralsde_fin` light

    r = np.asarray(r, dtype=np.float64).ravel()
    return {
        "mean": float(r.mean()),
        "std": float(r.std(ddof=1)),
        "skew": float(stats.skew(r)),
        "kurtosis": float(stats.kurtosis(r, fisher=True)),
    }


def ks_2samp(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (scipy, exact or asymptotic).

    The p-value assumes two iid samples; returns pooled from paths with volatility clustering
    are dependent, so read it as a distance more than as a calibrated test.
    """
    from scipy import stats

    res = stats.ks_2samp(np.ravel(x), np.ravel(y))
    return float(res.statistic), float(res.pvalue)


def quantiles_es(
    r: np.ndarray,
    levels: Sequence[float] = QUANTILE_LEVELS,
    es_levels: Sequence[float] = ES_LEVELS,
) -> dict[str, float]:
    """Empirical quantiles and lower-tail expected shortfall of a 1-D sample of returns.

    .. math:: \\mathrm{ES}_\\alpha = -\\,\\mathbb{E}[R \\mid R \\le q_\\alpha]

    (a loss, positive when the tail is negative); ``q_alpha`` is the empirical quantile.

    Returns:
        ``{"q01": ..., "q05": ..., "es01": ..., "es05": ...}`` (levels in percent).
    """
    r = np.sort(np.asarray(r, dtype=np.float64).ravel())
    out = {f"q{_pct(a)}": float(np.quantile(r, a)) for a in levels}
    for a in es_levels:
        k = max(1, int(np.ceil(a * r.size)))
        out[f"es{_pct(a)}"] = float(-r[:k].mean())
    return out


def _pct(a: float) -> str:
    p = 100 * a
    return f"{int(round(p)):02d}" if abs(p - round(p)) < 1e-9 else f"{p:g}"
