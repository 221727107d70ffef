"""The result of ``nsf.evaluate``: the statistics table, ACF blocks, the facts scorecard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EvaluationReport"]


@dataclass
class EvaluationReport:
    """Stylized facts of real and generated windows, side by side.

    Attributes:
        table: rows = statistics, columns = ``data``, each model, each baseline.
        acf: ``{"acf_r", "acf_abs", "leverage"}`` -> DataFrame (index: lag 1..lags; columns as
            ``table``, with ``[asset]`` appended when there are several assets).
        returns: column -> pooled daily log returns ``(n, n_assets)`` (for histograms, QQ plots).
        horizon_returns: column -> horizon log returns ``(n_windows, n_assets)``.
        meta: horizon, lags, window counts, asset names, pooling and MMD settings, baseline
            parameters.
        facts: model name -> one :class:`~neuralsde_fin._evaluate._facts.FactScore` per asset:
            the eight stylized-fact errors against GJR-GARCH(1,1)-t's (when it is a baseline).
        forecast: a conditional model's forecast scores
            (:class:`~neuralsde_fin._evaluate._forecast.ForecastReport`), or None.
    """

    table: pd.DataFrame
    acf: dict[str, pd.DataFrame] = field(default_factory=dict)
    returns: dict[str, np.ndarray] = field(default_factory=dict)
    horizon_returns: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, list[Any]] = field(default_factory=dict)
    forecast: Any = None

    def verdicts(self) -> list[str]:
        """One line per model (and asset): how it does against GJR-GARCH-t on the 8 facts."""
        out = []
        for name, scores in self.facts.items():
            for j, sc in enumerate(scores):
                asset = "" if len(scores) == 1 else f" [{self.meta['assets'][j]}]"
                out.append(f"{name}{asset}: {sc.verdict()}")
        return out

    def facts_markdown(self) -> str:
        """The facts scorecard of every model against GJR-GARCH-t (Markdown), or ''."""
        parts = []
        for name, scores in self.facts.items():
            for j, sc in enumerate(scores):
                asset = "" if len(scores) == 1 else f" [{self.meta['assets'][j]}]"
                parts += [f"**{name}{asset}** against GJR-GARCH(1,1)-t:", "", sc.to_markdown()]
        return "\n".join(parts)

    @property
    def columns(self) -> list[str]:
        """The compared columns: data, models, baselines."""
        return list(self.table.columns)

    def to_markdown(self, digits: int = 4) -> str:
        """The table as GitHub Markdown, followed by notes on how it was computed."""
        cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731  ("ACF |r|" is one cell)
        head = "| statistic | " + " | ".join(cell(c) for c in self.table.columns) + " |"
        sep = "| --- |" + " ---: |" * self.table.shape[1]
        lines = [head, sep]
        for row, vals in self.table.iterrows():
            cells = " | ".join(_fmt(v, digits) for v in vals)
            lines.append(f"| {cell(row)} | {cells} |")
        notes = self.meta.get("notes", [])
        if notes:
            lines.append("")
            lines.extend(f"- {n}" for n in notes)
        if self.facts:
            lines += ["", self.facts_markdown().rstrip()]
        if self.forecast is not None:
            lines += ["", self.forecast.to_markdown().rstrip()]
        return "\n".join(lines) + "\n"

    def to_html(self, digits: int = 4) -> str:
        """The table as an HTML ``<table>`` followed by the notes as a list."""
        t = self.table.astype(object).apply(lambda col: col.map(lambda v: _fmt(v, digits)))
        html = t.to_html(border=0, classes="evaluation", escape=True)
        notes = self.meta.get("notes", [])
        if notes:
            html += "\n<ul>\n" + "".join(f"<li>{_esc(n)}</li>\n" for n in notes) + "</ul>\n"
        if self.forecast is not None:
            html += "\n<pre>" + _esc(self.forecast.to_markdown()) + "</pre>\n"
        return html

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``table`` (row -> column -> value), ``acf``, ``meta``.

        Missing values (e.g. a KS statistic of the data against itself) become ``None``.
        """
        return {
            "table": {
                str(r): {str(c): _json(v) for c, v in row.items()}
                for r, row in self.table.iterrows()
            },
            "acf": {
                k: {str(c): [_json(v) for v in df[c].to_numpy()] for c in df.columns}
                for k, df in self.acf.items()
            },
            "meta": _json(self.meta),
            "facts": {
                name: [{"errors": _json(sc.table["model"].to_dict()),
                        "baseline_errors": _json(sc.table["baseline"].to_dict()),
                        "better": {k: bool(v) for k, v in sc.table["better"].items()},
                        "wins": sc.wins, "verdict": sc.verdict(), "values": _json(sc.values)}
                       for sc in scores]
                for name, scores in self.facts.items()
            },
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
        }

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if v != 0 and (abs(v) < 10 ** -(digits - 1) or abs(v) >= 10**digits):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_json(x) for x in v.tolist()]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v
