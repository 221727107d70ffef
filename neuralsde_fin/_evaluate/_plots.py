"""Figures of an evaluation (matplotlib, Agg backend).

Every ``plot_*`` function returns its :class:`matplotlib.figure.Figure` (created without pyplot's
global state, so nothing is shown and nothing leaks between calls) and, given ``path=``, also
saves it as a PNG, atomically (``save_figure``). The report directory that shows them is
``_report.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._calendar import TRADING_DAYS
from neuralsde_fin._io import atomic_writer

if TYPE_CHECKING:  # matplotlib is imported on first use, keeping `import neuralsde_fin` light
    from matplotlib.figure import Figure

#: Arrays accepted by the plots (converted to float64 numpy).
ArrayLike = np.ndarray | torch.Tensor | pd.DataFrame | pd.Series | Sequence[float]

#: Colours by column name; other names cycle through matplotlib's default colours.
COLORS = {"data": "black", "model": "tab:blue", "gbm": "tab:orange", "gjr_garch_t": "tab:green"}


def _figure(figsize=(7.0, 4.5)) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _color(name: str, i: int) -> str:
    return COLORS.get(name, f"C{(i + 4) % 10}")


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return x.to_numpy(dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (temp file, then rename); returns the path."""
    path = Path(path)
    with atomic_writer(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_fan_chart(
    history: ArrayLike,
    scenarios: Any,
    *,
    asset: int = 0,
    n_history: int = 250,
    quantiles: Sequence[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
    n_show: int = 5,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Fan chart: the last ``n_history`` prices, then quantile bands of the scenarios' prices.

    Args:
        history: the price history (DataFrame / Series / array ``(n_dates, n_assets)``).
        scenarios: Scenarios (its ``.prices``), or prices ``(n_paths, n_times, n_assets)``, or
            log-price paths from 0 (their first point is 0 everywhere), which are then started
            at the last price of the history.
        asset: which asset to plot.
        n_history: how many past days to show.
        quantiles: band edges (pairs from the outside in; the median, if listed, as a line).
        n_show: sample paths drawn on top.
        path: save the PNG here too.

    Shape:
        scenarios: ``(n_paths, horizon + 1, n_assets)`` or ``(n_paths, horizon + 1)``.
    """
    hist = _np(history)
    hist = hist[:, None] if hist.ndim == 1 else hist
    p = _np(getattr(scenarios, "prices", scenarios))
    p = p[..., None] if p.ndim == 2 else p
    hist_a = hist[-n_history:, asset]
    x = p[:, :, asset]
    if np.all(x[:, 0] == 0):
        x = hist_a[-1] * np.exp(x)
    dates = getattr(history, "index", None)
    if isinstance(dates, pd.DatetimeIndex):
        past = dates[-len(hist_a) :]
        future = pd.bdate_range(dates[-1], periods=x.shape[1])
    else:
        past = np.arange(-len(hist_a) + 1, 1)
        future = np.arange(x.shape[1])
    fig, ax = _figure()
    ax.plot(past, hist_a, color="black", lw=1.0, label="history")
    qs = sorted(quantiles)
    band = np.quantile(x, qs, axis=0)
    n_pairs = len(qs) // 2
    for i in range(n_pairs):
        alpha = 0.15 + 0.5 * (i + 1) / max(n_pairs, 1) * 0.6
        ax.fill_between(
            future,
            band[i],
            band[-1 - i],
            color="tab:blue",
            alpha=alpha,
            lw=0,
            label=f"{qs[i]:.0%}-{qs[-1 - i]:.0%}",
        )
    if 0.5 in qs:
        ax.plot(future, band[qs.index(0.5)], color="tab:blue", lw=1.2, label="median")
    for k in range(min(n_show, x.shape[0])):
        ax.plot(future, x[k], color="tab:blue", lw=0.5, alpha=0.6)
    ax.set_xlabel("date" if isinstance(dates, pd.DatetimeIndex) else "trading day")
    ax.set_ylabel("price")
    ax.set_title(title or f"Scenarios continuing the history ({x.shape[0]} paths)")
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path)


def _returns_dict(returns) -> dict[str, np.ndarray]:
    if hasattr(returns, "returns") and isinstance(returns.returns, Mapping):
        returns = returns.returns
    if not isinstance(returns, Mapping) or not returns:
        raise ValueError("returns must be a non-empty mapping {name: daily returns} or a report")
    return {str(k): _np(v) for k, v in returns.items()}


def _asset_returns(returns, asset: int) -> dict[str, np.ndarray]:
    return {
        k: (v[:, asset] if v.ndim == 2 else v.ravel()) for k, v in _returns_dict(returns).items()
    }


def plot_return_histogram(
    returns: Mapping[str, ArrayLike] | Any,
    *,
    asset: int = 0,
    bins: int = 100,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Density histograms of daily log returns on a log y axis, one outline per column.

    Args:
        returns: ``{name: returns}`` (e.g. ``{"data": ..., "model": ..., "gbm": ...}``) or an
            :class:`EvaluationReport` (its ``.returns``).
        asset: the asset (column) of 2-D return arrays.
        bins: bins over the range of all samples.
        path: save the PNG here too.
    """
    rets = _asset_returns(returns, asset)
    lo = min(np.quantile(v, 0.0005) for v in rets.values())
    hi = max(np.quantile(v, 0.9995) for v in rets.values())
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = _figure()
    for i, (k, v) in enumerate(rets.items()):
        ax.hist(
            v,
            bins=edges,
            density=True,
            histtype="step",
            lw=1.8 if k == "data" else 1.2,
            color=_color(k, i),
            label=k,
        )
    ax.set_yscale("log")
    ax.set_xlabel("daily log return")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title or "Daily returns")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_qq(
    returns: Mapping[str, ArrayLike] | Any,
    *,
    reference: str = "data",
    asset: int = 0,
    n_quantiles: int = 400,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """QQ plot: each column's quantiles of daily returns against the ``reference`` column's.

    Points on the diagonal mean equal laws; fat tails bend away from it at the ends.

    Args:
        returns: ``{name: returns}`` or an :class:`EvaluationReport`; must hold ``reference``.
        reference: the column on the x axis (default the data).
        asset: the asset of 2-D return arrays.
        n_quantiles: quantile levels, evenly spaced in ``(0, 1)``.
        path: save the PNG here too.
    """
    rets = _asset_returns(returns, asset)
    if reference not in rets:
        raise ValueError(f"plot_qq: reference {reference!r} not among {sorted(rets)}")
    levels = (np.arange(n_quantiles) + 0.5) / n_quantiles
    qref = np.quantile(rets[reference], levels)
    fig, ax = _figure((5.5, 5.5))
    lim = [qref[0], qref[-1]]
    for i, (k, v) in enumerate(rets.items()):
        if k == reference:
            continue
        q = np.quantile(v, levels)
        lim = [min(lim[0], q[0]), max(lim[1], q[-1])]
        ax.plot(qref, q, ".", ms=3, color=_color(k, i), label=k)
    ax.plot(lim, lim, color="black", lw=0.8, label="y = x")
    ax.set_xlabel(f"{reference} quantiles of daily log returns")
    ax.set_ylabel("quantiles")
    ax.set_title(title or f"QQ plot against {reference}")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_acf(
    acf: Mapping[str, ArrayLike] | pd.DataFrame | Any,
    *,
    n_obs: int | None = None,
    title: str | None = None,
    ylabel: str = "ACF of |r|",
    path: str | os.PathLike | None = None,
) -> Figure:
    """ACF by lag, one line per column (default: of absolute daily returns).

    Args:
        acf: ``{name: acf at lags 1..L}``, a DataFrame (index lag, one column per name), or an
            :class:`EvaluationReport` (its ``acf["acf_abs"]``).
        n_obs: if given, draw the iid 95% band ``+-1.96 / sqrt(n_obs)``.
        path: save the PNG here too.
    """
    if hasattr(acf, "acf") and isinstance(acf.acf, Mapping):
        acf = acf.acf["acf_abs"]
    if isinstance(acf, pd.DataFrame):
        acf = {c: acf[c].to_numpy() for c in acf.columns}
    fig, ax = _figure()
    for i, (k, v) in enumerate(acf.items()):
        v = _np(v).ravel()
        lags = np.arange(1, len(v) + 1)
        ax.plot(lags, v, "o-", ms=3, lw=1.8 if k == "data" else 1.2, color=_color(k, i), label=k)
    ax.axhline(0, color="grey", lw=0.6)
    if n_obs:
        b = 1.96 / np.sqrt(n_obs)
        ax.axhspan(-b, b, color="grey", alpha=0.2, lw=0, label="iid 95% band")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("lag (days)")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Volatility clustering: " + ylabel)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_smile(
    strikes: ArrayLike,
    maturities: ArrayLike,
    implied_vols: ArrayLike,
    *,
    spot: float | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Implied-volatility smile by maturity, from a table of (strike, maturity, implied vol).

    Args:
        strikes, maturities, implied_vols: equal-length 1-D arrays (maturities in years; vols
            as decimals; NaN vols, e.g. failed inversions, are skipped).
        spot: if given, the x axis is the moneyness ``K / spot``.
        path: save the PNG here too.

    Shape:
        each ``(n_options,)``.
    """
    k, t, v = (_np(a).ravel() for a in (strikes, maturities, implied_vols))
    if not (len(k) == len(t) == len(v)) or len(k) == 0:
        raise ValueError(
            f"plot_smile: strikes, maturities, implied_vols must have one equal, non-zero length, "
            f"got {len(k)}, {len(t)}, {len(v)}"
        )
    x = k / spot if spot else k
    fig, ax = _figure()
    for i, m in enumerate(np.unique(t)):
        sel = (t == m) & np.isfinite(v)
        order = np.argsort(x[sel])
        days = m * TRADING_DAYS
        ax.plot(
            x[sel][order],
            100 * v[sel][order],
            "o-",
            ms=3,
            color=f"C{i % 10}",
            label=f"T = {m:.3g}y ({days:.0f}d)",
        )
    ax.set_xlabel("moneyness K / S" if spot else "strike")
    ax.set_ylabel("implied volatility (%)")
    ax.set_title(title or "Implied-volatility smile by maturity")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_training_curve(
    losses: ArrayLike,
    *,
    smooth: int | None = None,
    logy: bool | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Training loss by step, with a moving average of ``smooth`` steps (default ~ n / 20).

    Args:
        losses: the loss of each step (non-finite values, e.g. skipped steps, are dropped).
        smooth: moving-average window; 1 or 0 draws no average.
        logy: log y axis (default: when every loss is > 0 and they span > 2 decades).
        path: save the PNG here too.
    """
    y = _np(losses).ravel()
    steps = np.arange(len(y))
    ok = np.isfinite(y)
    steps, y = steps[ok], y[ok]
    fig, ax = _figure()
    ax.plot(steps, y, lw=0.7, alpha=0.5, color="tab:blue", label="loss")
    if smooth is None:
        smooth = max(1, len(y) // 20)
    if smooth > 1 and len(y) >= smooth:
        avg = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1 :], avg, lw=1.6, color="tab:red", label=f"mean of {smooth}")
    if logy is None:
        logy = len(y) > 0 and bool((y > 0).all()) and y.max() > 100 * y.min()
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "Training curve")
    ax.legend(fontsize=8)
    return _finish(fig, path)
