"""The report directory of an evaluation: figures, ``report.md`` / ``report.html``, metrics.

:func:`make_report` does the whole job through the public API: given a calibrated model it
samples the evaluation paths, the fan chart continuing the history and the implied-vol smile
itself; given samples it evaluates them. :func:`write_report` writes PNGs plus the report file
referencing them, each atomically.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from neuralsde_fin._evaluate._plots import (
    ArrayLike,
    plot_acf,
    plot_fan_chart,
    plot_qq,
    plot_return_histogram,
    plot_smile,
    plot_training_curve,
    save_figure,
)
from neuralsde_fin._io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["make_report", "report_figures", "write_report"]


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


def _is_model(x: Any) -> bool:
    return hasattr(x, "sample") and hasattr(x, "n_assets") and not hasattr(x, "prices")


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
    paths: int = 1000,
    fan_days: int = 126,
    smile_paths: int = 4000,
    progress: bool = False,
    history: Any = "auto",
    forecast: Mapping[str, Any] | None = None,
    **evaluate_kwargs: Any,
) -> tuple[Any, Path]:
    """Evaluate, draw every figure and write the report directory in one call.

    Runs :func:`neuralsde_fin.evaluate` on ``generated`` against the price history ``real``,
    then writes the return histogram, QQ plot and ACF of ``|r|``; the fan chart when
    ``scenarios`` (paths continuing the history) is given; the smile when ``smile={"strikes",
    "maturities", "implied_vols"[, "spot"]}`` is given; the training curve when ``losses`` is
    given; ``metrics.json`` (:meth:`EvaluationReport.to_dict`); all atomically.

    ``generated`` may be a calibrated model (anything with ``sample`` and ``n_assets``): the
    report then samples everything itself through the public API: ``paths`` historical paths
    of the evaluation horizon (default the model's window), a fan chart of ``fan_days`` days
    from the last close of ``real``, the risk-neutral implied-vol smile (``nsf.smile``,
    ``smile_paths`` paths), and the training curve from ``model.info["history"]``.

    A conditional model's (``context=C``) fan chart and smile are today's: they start from
    ``history`` (``"auto"``: the end of ``real``; a price history: its last C + 1 closes;
    None: the stationary start), and ``forecast`` (options of
    :func:`neuralsde_fin.forecast_evaluate`, e.g. ``{"test_start": "2015-01-01"}``) adds the
    CRPS forecast scores against GJR-GARCH-t and the stationary start.

    Args:
        out_dir: the report directory.
        generated, real: as :func:`neuralsde_fin.evaluate`, or a model (see above).
        scenarios: paths continuing the history for the fan chart.
        losses: training losses by step.
        smile: arrays for :func:`plot_smile`.
        fmt: ``"markdown"`` or ``"html"``.
        title, text: heading and introduction of the report.
        paths, fan_days, smile_paths: sizes of what a model's report samples.
        progress: a progress bar while a model's report samples and draws.
        history: the start of a conditional model's fan chart and smile (see above).
        forecast: forecast-evaluation options for a conditional model (see above).
        **evaluate_kwargs: passed to :func:`neuralsde_fin.evaluate` (``horizon``, ``seed``, ...).

    Returns:
        ``(report, path of report.md / report.html)``.
    """
    import json

    from neuralsde_fin._evaluate._evaluate import evaluate

    if fmt not in ("markdown", "html"):
        raise ValueError(f"make_report: fmt must be 'markdown' or 'html', got {fmt!r}")
    fan_history = real
    if _is_model(generated):
        model = generated
        start = _report_start(model, real, history)
        if start is not None:
            fan_history = _history_to(real, start)
        generated, scenarios, smile, losses, text = _sample_for_report(
            model, real, paths=paths, fan_days=fan_days, smile_paths=smile_paths,
            progress=progress, text=text, scenarios=scenarios, smile=smile, losses=losses,
            evaluate_kwargs=evaluate_kwargs, start=start, fan_history=fan_history)
        if forecast is not None:
            from neuralsde_fin._evaluate._forecast import forecast_evaluate

            evaluate_kwargs["forecast"] = forecast_evaluate(model, real, progress=progress,
                                                            **dict(forecast))
    elif forecast is not None and not hasattr(forecast, "table"):
        raise ValueError("make_report: forecast options need a model (generated=model)")
    elif forecast is not None:
        evaluate_kwargs["forecast"] = forecast
    report = evaluate(generated, real, **evaluate_kwargs)
    figs = report_figures(report, history=fan_history, scenarios=scenarios)
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
    verdicts = report.verdicts()
    if verdicts:
        text = (text + "\n\n" if text else "") + "Verdict: " + "; ".join(verdicts) + "."
    path = write_report(out, report, figs, fmt=fmt, title=title, text=text)
    import matplotlib.pyplot as plt

    plt.close("all")
    return report, path


def _report_start(model: Any, real: Any, history: Any) -> Any:
    """The start of a model's fan chart and smile: a history for a conditional model, else
    None (``history="auto"``: the evaluated history ``real``)."""
    if not getattr(model, "context", None):
        if history is not None and not (isinstance(history, str) and history == "auto"):
            raise ValueError("make_report: history= needs a conditional model (context=C)")
        return None
    if isinstance(history, str):
        if history != "auto":
            raise ValueError(f"make_report: history must be 'auto', None or a price history, "
                             f"got {history!r}")
        return real
    return history


def _history_to(real: Any, start: Any) -> Any:
    """``real`` up to the last date of ``start`` when both have dates (the fan chart's past),
    else ``start``."""
    if start is real:
        return real
    idx = getattr(real, "index", None)
    sidx = getattr(start, "index", None)
    if isinstance(idx, pd.DatetimeIndex) and isinstance(sidx, pd.DatetimeIndex) and len(sidx):
        cut = real.loc[: sidx[-1]]
        if len(cut) and cut.index[-1] == sidx[-1]:
            return cut
    return start


def _sample_for_report(model, real, *, paths, fan_days, smile_paths, progress, text, scenarios,
                       smile, losses, evaluate_kwargs, start=None, fan_history=None):
    """What a model's report samples: evaluation paths, the fan chart, the smile, the curve
    (the fan chart and smile from ``start`` for a conditional model)."""
    from tqdm.auto import tqdm

    from neuralsde_fin._pricing._strip import smile as model_smile

    horizon = int(evaluate_kwargs.setdefault("horizon", int(getattr(model, "window", 64))))
    evaluate_kwargs.setdefault("lags", min(20, horizon - 1))
    seed = int(evaluate_kwargs.get("seed", 0))
    frame = real.to_frame() if isinstance(real, pd.Series) else real
    past = frame if fan_history is None else fan_history
    past = past.to_frame() if isinstance(past, pd.Series) else past
    today = {} if start is None else {"history": start}
    bar = tqdm(total=3, desc="report", disable=not progress)
    try:
        bar.set_postfix_str("sampling")
        generated = model.sample(paths, horizon, measure="historical", seed=seed)
        if scenarios is None:
            spot = [float(v) for v in past.iloc[-1].to_numpy()]
            scenarios = model.sample(min(paths, 2000), fan_days, measure="historical",
                                     spot=spot, seed=seed + 1, **today)
        bar.update()
        if smile is None:
            bar.set_postfix_str("smile")
            days = tuple(d for d in (21, 63, 126) if d <= max(fan_days, 21))
            smile = model_smile(model, n_paths=smile_paths, seed=seed, maturities_days=days,
                                **today)
        bar.update()
        info = getattr(model, "info", {}) or {}
        if losses is None:
            losses = info.get("history") or None
        if text is None:
            text = (f"Model: {info.get('method', '?')} calibration, {info.get('steps', '?')} "
                    f"steps, window {getattr(model, 'window', '?')} days, on "
                    f"{info.get('data', '?')} ({info.get('first_date', '?')} .. "
                    f"{info.get('last_date', '?')}). Evaluated on {len(frame)} dates with "
                    f"windows of {horizon} days; {paths} generated paths.")
            if getattr(model, "context", None):
                when = getattr(past, "index", [None])[-1] if len(past) else None
                when = str(when.date()) if hasattr(when, "date") else "the history's end"
                text += (f" Fan chart and smile from today's state ({when}; the last "
                         f"{model.context} days)." if start is not None else
                         " Fan chart and smile from the stationary start.")
        bar.update()
    finally:
        bar.close()
    return generated, scenarios, smile, losses, text
