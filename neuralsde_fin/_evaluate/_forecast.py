"""Forecast evaluation: a conditional model's scenarios from today's state, scored by CRPS.

For every ``every``-th trading day d of a test period, the model samples ``n_paths`` paths of
``horizon`` days from the history up to d (``model.sample(..., history=prices[:d])``) and two
quantities are scored against what happened next: the h-day log return R = log S_{d+h} / S_d
and the h-day realised volatility RV = sqrt(sum_{k=1..h} r_{d+k}^2). The score is the
continuous ranked probability score of the sampled distribution F at the outcome y,

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|,   X, X' ~ F independent,

(lower is better; estimated from the samples by sorting), averaged over the dates. Two
references are scored on the same dates: GJR-GARCH(1,1)-t fitted with ``arch`` on the training
period (the history before the test period, or up to ``train_end``) and filtered through the
test period with its parameters fixed (``GJRGarchBaseline.filter_variances``), and the model's
own stationary start (``history=None``: the forecast that ignores today's state).

References:
    Gneiting and Raftery (2007), "Strictly proper scoring rules, prediction, and estimation",
    JASA 102(477).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._evaluate._baselines import GJRGarchBaseline
from neuralsde_fin._validate import check_int

__all__ = ["ForecastReport", "crps_samples", "forecast_evaluate"]


def crps_samples(samples: np.ndarray, y: float) -> float:
    """CRPS of the empirical law of ``samples`` at the outcome ``y``.

    E|X - y| - 1/2 E|X - X'| with E|X - X'| = 2 / n^2 sum_i x_(i) (2 i - n - 1) (sorted).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    i = np.arange(1, n + 1)
    return float(np.mean(np.abs(x - y)) - np.sum(x * (2 * i - n - 1)) / n**2)


def _r_rv(log_paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h-day return and realised volatility of log-price paths (n, h + 1)."""
    r = np.diff(log_paths, axis=1)
    return log_paths[:, -1] - log_paths[:, 0], np.sqrt((r**2).sum(1))


@dataclass
class ForecastReport:
    """CRPS of the h-day return and realised volatility, per forecast date and averaged.

    Attributes:
        table: rows = forecasts (``model``, ``stationary``, ``gjr_garch_t``); columns
            ``crps_return``, ``crps_rv`` (means over the dates).
        per_date: one row per date: the outcomes and each forecast's two scores.
        meta: horizon, dates, paths, seed, the GJR-GARCH fit's parameters.
    """

    table: pd.DataFrame
    per_date: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def ratios(self, reference: str = "gjr_garch_t") -> pd.Series:
        """The model's mean CRPS over the reference's, per quantity (< 1: the model is better)."""
        return self.table.loc["model"] / self.table.loc[reference]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the mean scores, the ratios to each reference, the settings."""
        refs = [k for k in ("gjr_garch_t", "stationary") if k in self.table.index]
        return {"table": {k: {c: float(v) for c, v in row.items()}
                          for k, row in self.table.iterrows()},
                "ratios": {k: {c: float(v) for c, v in self.ratios(k).items()} for k in refs},
                "n_dates": len(self.per_date), "meta": self.meta}

    def to_markdown(self) -> str:
        lines = [f"Forecasts of {self.meta['horizon']}-day returns and realised volatility from "
                 f"{len(self.per_date)} dates ({self.meta['first']} .. {self.meta['last']}, every "
                 f"{self.meta['every']} trading days), {self.meta['n_paths']} paths each. Mean "
                 "CRPS (lower is better):", "",
                 "| forecast | CRPS return | CRPS realised vol |", "| --- | ---: | ---: |"]
        for k, row in self.table.iterrows():
            lines.append(f"| {k} | {row['crps_return']:.5g} | {row['crps_rv']:.5g} |")
        lines.append("")
        for ref in ("gjr_garch_t", "stationary"):
            if ref in self.table.index:
                r = self.ratios(ref)
                lines.append(f"- model / {ref}: return {r['crps_return']:.3f}, realised vol "
                             f"{r['crps_rv']:.3f}")
        return "\n".join(lines) + "\n"


def forecast_evaluate(
    model: Any,
    prices: pd.DataFrame | pd.Series,
    *,
    test_start: str,
    test_end: str | None = None,
    train_end: str | None = None,
    every: int = 5,
    horizon: int = 21,
    n_paths: int = 2000,
    seed: int = 0,
    gjr: bool = True,
    asset: int = 0,
    progress: bool = False,
) -> ForecastReport:
    """Score a conditional model's forecasts from each date's history by CRPS (module doc).

    Args:
        model: a model calibrated with ``context=C`` (its ``sample`` takes ``history=``).
        prices: the whole history (training and test periods), oldest first.
        test_start: first forecast date (the first trading day on or after it).
        test_end: last date whose ``horizon`` next days are in ``prices`` (default: all).
        train_end: last date of the GJR-GARCH fit (default: the day before ``test_start``).
        every: trading days between forecast dates.
        horizon: h, the forecast horizon in trading days.
        n_paths: paths per forecast.
        seed: sampling seed (the same for every date: common random numbers).
        gjr: also score GJR-GARCH(1,1)-t.
        asset: the asset scored.
        progress: a progress bar over the dates.

    Returns:
        A :class:`ForecastReport`.
    """
    from tqdm.auto import tqdm

    check_int("every", every)
    check_int("horizon", horizon)
    check_int("n_paths", n_paths, 2)
    frame = prices.to_frame() if isinstance(prices, pd.Series) else prices
    idx = frame.index
    start = int(idx.searchsorted(pd.Timestamp(test_start)))
    last = len(frame) - 1 - horizon
    if test_end is not None:
        last = min(last, int(idx.searchsorted(pd.Timestamp(test_end), side="right")) - 1)
    context = getattr(model, "context", None)
    if not context:
        raise ValueError("forecast_evaluate needs a model calibrated with context=C")
    if start < context or start > last:
        raise ValueError(f"no forecast date: test_start {test_start} leaves no room for the "
                         f"context ({context} days) and the horizon ({horizon} days)")
    dates = list(range(start, last + 1, every))
    logp = np.log(frame.to_numpy(dtype=np.float64))
    stat = model.sample(n_paths, horizon, measure="historical", seed=seed, dtype=torch.float64)
    stat_r, stat_rv = _r_rv(torch.log(stat.prices[..., asset]).numpy())
    gjr_fit, var_next = None, None
    if gjr:
        cut = (start - 1) if train_end is None else int(
            idx.searchsorted(pd.Timestamp(train_end), side="right")) - 1
        rets = np.diff(logp, axis=0)
        gjr_fit = GJRGarchBaseline(start="last").fit_returns(rets[:cut])
        var_next = gjr_fit.filter_variances(rets)  # row t: the variance of rets[t + 1]
    rows = []
    for d in tqdm(dates, desc="forecast", disable=not progress):
        y_paths = logp[d : d + horizon + 1, asset]
        y_r, y_rv = _r_rv(y_paths[None])
        scen = model.sample(n_paths, horizon, measure="historical", seed=seed,
                            history=frame.iloc[: d + 1], dtype=torch.float64)
        m_r, m_rv = _r_rv(torch.log(scen.prices[..., asset]).numpy())
        row = {"date": idx[d], "return": float(y_r[0]), "rv": float(y_rv[0]),
               "model_return": crps_samples(m_r, y_r[0]), "model_rv": crps_samples(m_rv, y_rv[0]),
               "stationary_return": crps_samples(stat_r, y_r[0]),
               "stationary_rv": crps_samples(stat_rv, y_rv[0])}
        if gjr_fit is not None:
            g = gjr_fit.sample_from(var_next[d - 1], n_paths, horizon, seed=seed)[..., asset]
            g_r, g_rv = _r_rv(g)
            row.update(gjr_garch_t_return=crps_samples(g_r, y_r[0]),
                       gjr_garch_t_rv=crps_samples(g_rv, y_rv[0]))
        rows.append(row)
    per_date = pd.DataFrame(rows).set_index("date")
    names = ["model", "stationary"] + (["gjr_garch_t"] if gjr else [])
    table = pd.DataFrame({"crps_return": [per_date[f"{k}_return"].mean() for k in names],
                          "crps_rv": [per_date[f"{k}_rv"].mean() for k in names]}, index=names)
    meta = {"horizon": horizon, "every": every, "n_paths": n_paths, "seed": seed,
            "first": str(idx[dates[0]].date()), "last": str(idx[dates[-1]].date()),
            "gjr_params": None if gjr_fit is None else gjr_fit.params()}
    return ForecastReport(table=table, per_date=per_date, meta=meta)
