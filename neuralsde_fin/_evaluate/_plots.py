"""Figures of an evaluation (matplotlib, Agg backend) and a report directory that shows them.

Every ``plot_*`` function returns its :class:`matplotlib.figure.Figure` (created without pyplot's
global state, so nothing is shown and nothing leaks between calls) and, given ``path=``, also
saves it as a PNG, atomically. :func:`write_report` writes PNGs plus ``report.md`` or
``report.html`` referencing them.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._io import atomic_write_bytes, atomic_write_text, atomic_writer
from neuralsde_fin.data import TRADING_DAYS

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


def report_figures(
    report: Any, *, history: ArrayLike | None = None, scenarios: Any = None
) -> dict[str, Figure]:
    """The standard figures of an :class:`EvaluationReport`: histogram, QQ plot, ACF of |r|.

    With ``history`` and ``scenarios`` a fan chart is added (first asset).
    """
    first = report.table.columns[0] if len(report.table.columns) else "data"
    n = int(report.meta.get("n_windows", {}).get(first, 0)) * int(report.meta.get("horizon", 0))
    figs = {
        "returns_histogram": plot_return_histogram(report),
        "qq": plot_qq(report),
        "acf_abs": plot_acf(report, n_obs=n or None),
    }
    if history is not None and scenarios is not None:
        figs["fan_chart"] = plot_fan_chart(history, scenarios)
    return figs


def write_report(
    out_dir: str | os.PathLike,
    report: Any = None,
    figures: Mapping[str, Figure | str | os.PathLike] | Sequence[Figure] | None = None,
    *,
    fmt: str = "markdown",
    title: str = "neuralsde_fin evaluation",
    text: str | None = None,
) -> Path:
    """Write a report directory: one PNG per figure and ``report.md`` or ``report.html``.

    The figures are written first and the report file last, each atomically (temp file in the
    same directory, then rename), so a reader never sees a half-written file or a report that
    references a missing figure.

    Args:
        out_dir: the directory (created if needed).
        report: an :class:`EvaluationReport` (its table and notes), or ``None``.
        figures: ``{name: Figure or existing PNG path}`` (saved / copied as ``<name>.png``) or a
            sequence of Figures (named ``figure_<i>.png``).
        fmt: ``"markdown"`` (``report.md``) or ``"html"`` (``report.html``).
        title: the report's heading.
        text: an optional paragraph after the heading (Markdown, or HTML for ``fmt="html"``).

    Returns:
        The path of the report file.
    """
    from matplotlib.figure import Figure

    if fmt not in ("markdown", "html"):
        raise ValueError(f"write_report: fmt must be 'markdown' or 'html', got {fmt!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"write_report: out_dir {str(out)!r} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if figures is None:
        figures = {}
    if not isinstance(figures, Mapping):
        figures = {f"figure_{i}": f for i, f in enumerate(figures)}
    names = []
    for name, fig in figures.items():
        fname = f"{name}.png"
        if isinstance(fig, Figure):
            save_figure(fig, out / fname)
        else:
            src = Path(fig)
            if not src.is_file():
                raise ValueError(f"write_report: figure {name!r}: no file {str(src)!r}")
            data = src.read_bytes()
            if src.resolve() != (out / fname).resolve():
                atomic_write_bytes(out / fname, data)
        names.append((name, fname))

    if fmt == "markdown":
        parts = [f"# {title}", ""]
        if text:
            parts += [text, ""]
        if report is not None:
            parts += ["## Stylized facts", "", report.to_markdown()]
        if names:
            parts += ["## Figures", ""]
            for name, fname in names:
                parts += [f"### {name.replace('_', ' ')}", "", f"![{name}]({fname})", ""]
        body, target = "\n".join(parts).rstrip() + "\n", out / "report.md"
    else:
        parts = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
            "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}"
            "th{text-align:left}tr:nth-child(even){background:#f4f4f4}"
            "img{max-width:100%}</style>",
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
        ]
        if text:
            parts.append(f"<p>{text}</p>")
        if report is not None:
            parts += ["<h2>Stylized facts</h2>", report.to_html()]
        if names:
            parts.append("<h2>Figures</h2>")
            for name, fname in names:
                label = html.escape(name.replace("_", " "))
                parts += [f"<h3>{label}</h3>", f'<img src="{html.escape(fname)}" alt="{label}">']
        parts.append("</body></html>")
        body, target = "\n".join(parts) + "\n", out / "report.html"
    atomic_write_text(target, body)
    return target


def make_report(
    out_dir: str | os.PathLike,
    generated: Any,
    real: pd.DataFrame | pd.Series,
    *,
    scenarios: Any = None,
    losses: ArrayLike | None = None,
    smile: Mapping[str, Any] | None = None,
    fmt: str = "markdown",
    title: str = "neuralsde_fin evaluation",
    text: str | None = None,
    **evaluate_kwargs: Any,
) -> tuple[Any, Path]:
    """Evaluate, draw every figure and write the report directory in one call.

    Runs :func:`neuralsde_fin.evaluate` on ``generated`` against the price history ``real``,
    then writes the return histogram, QQ plot and ACF of ``|r|``; the fan chart when
    ``scenarios`` (paths continuing the history, e.g. ``model.sample(..., spot=last price)``)
    is given; the smile when ``smile={"strikes", "maturities", "implied_vols"[, "spot"]}`` is
    given; the training curve when ``losses`` is given. Also writes ``metrics.json``
    (:meth:`EvaluationReport.to_dict`), atomically like the rest.

    Args:
        out_dir: the report directory.
        generated, real: as :func:`neuralsde_fin.evaluate`.
        scenarios: paths continuing the history for the fan chart.
        losses: training losses by step.
        smile: arrays for :func:`plot_smile`.
        fmt: ``"markdown"`` or ``"html"``.
        title, text: heading and introduction of the report.
        **evaluate_kwargs: passed to :func:`neuralsde_fin.evaluate`.

    Returns:
        ``(report, path of report.md / report.html)``.
    """
    import json

    from neuralsde_fin._evaluate._report import evaluate

    if fmt not in ("markdown", "html"):
        raise ValueError(f"make_report: fmt must be 'markdown' or 'html', got {fmt!r}")
    report = evaluate(generated, real, **evaluate_kwargs)
    figs = report_figures(report, history=real, scenarios=scenarios)
    if smile is not None:
        missing = {"strikes", "maturities", "implied_vols"} - set(smile)
        if missing:
            raise ValueError(f"make_report: smile is missing {sorted(missing)}")
        figs["smile"] = plot_smile(
            smile["strikes"], smile["maturities"], smile["implied_vols"], spot=smile.get("spot")
        )
    if losses is not None:
        figs["training_curve"] = plot_training_curve(losses)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = json.dumps(report.to_dict(), indent=2, allow_nan=False).encode("utf-8")
    atomic_write_bytes(out / "metrics.json", body)
    path = write_report(out, report, figs, fmt=fmt, title=title, text=text)
    return report, path
