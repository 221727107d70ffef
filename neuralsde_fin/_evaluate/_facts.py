"""The stylized-facts scorecard: how far a model is from the data on eight facts, against a
baseline (GJR-GARCH(1,1)-t by default).

Each fact is an error of the model's windows against the data's windows (lower is better):

=================  ==========================================================================
``ks_1d``          Kolmogorov-Smirnov distance of daily log returns
``ks_h``           KS distance of horizon (window) log returns
``acf_abs``        mean |ACF_model - ACF_data| of |r| at lags 1-20 (volatility clustering)
``acf_r``          mean |ACF_model - ACF_data| of r at lags 1-5 (no linear predictability)
``leverage``       mean |L_model - L_data| of corr(r_t, r_{t+k}^2) at lags 1-10
``kurtosis``       |excess kurtosis_model - excess kurtosis_data| of daily returns
``vol_ratio``      |vol_model / vol_data - 1| of daily returns
``quantiles_h``    mean |q_model - q_data| of the 1 / 5 / 95 / 99% horizon-return quantiles
=================  ==========================================================================

ACF and leverage are pooled inside windows (``_stats.pooled_acf``), as for the data. A model
"beats" the baseline on a fact when its error is smaller.

References:
    Cont (2001), "Empirical properties of asset returns: stylized facts and statistical
    issues", Quantitative Finance 1(2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neuralsde_fin._evaluate._stats import ks_2samp, moments, pooled_acf, pooled_leverage

__all__ = ["FACTS", "FactScore", "fact_errors", "fact_values", "score_facts"]

#: The facts, in the table's order, with their one-line descriptions.
FACTS = {
    "ks_1d": "KS distance of daily returns",
    "ks_h": "KS distance of horizon returns",
    "acf_abs": "ACF of |r|, lags 1-20 (mean abs error)",
    "acf_r": "ACF of r, lags 1-5 (mean abs error)",
    "leverage": "leverage corr(r_t, r_{t+k}^2), lags 1-10 (mean abs error)",
    "kurtosis": "excess kurtosis of daily returns (abs error)",
    "vol_ratio": "volatility ratio (|ratio - 1|)",
    "quantiles_h": "1/5/95/99% horizon-return quantiles (mean abs error)",
}
_LEVELS = (0.01, 0.05, 0.95, 0.99)


def fact_values(paths: np.ndarray, asset: int = 0) -> dict[str, object]:
    """The statistics the facts compare, for log-price windows ``(n, horizon + 1, n_assets)``."""
    x = np.asarray(paths, dtype=np.float64)[..., asset]
    r = np.diff(x, axis=1)
    h = x[:, -1] - x[:, 0]
    lags = min(20, r.shape[1] - 1)
    m = moments(r)
    return {
        "r": r.ravel(),
        "h": h,
        "acf_abs": pooled_acf(np.abs(r), lags),
        "acf_r": pooled_acf(r, min(5, lags)),
        "leverage": pooled_leverage(r, min(10, lags)),
        "kurtosis": m["kurtosis"],
        "vol": m["std"],
        "quantiles": np.quantile(h, _LEVELS),
    }


def fact_errors(model: np.ndarray, data: np.ndarray | dict, asset: int = 0) -> dict[str, float]:
    """The eight errors of ``model``'s windows against ``data``'s (windows or their
    :func:`fact_values`), see the module table.

    Shape:
        model, data: (n_windows, horizon + 1, n_assets) log-price windows from 0.
    """
    a = fact_values(model, asset)
    b = data if isinstance(data, dict) else fact_values(data, asset)
    return {
        "ks_1d": ks_2samp(a["r"], b["r"])[0],
        "ks_h": ks_2samp(a["h"], b["h"])[0],
        "acf_abs": float(np.mean(np.abs(a["acf_abs"] - b["acf_abs"]))),
        "acf_r": float(np.mean(np.abs(a["acf_r"] - b["acf_r"]))),
        "leverage": float(np.mean(np.abs(a["leverage"] - b["leverage"]))),
        "kurtosis": float(abs(a["kurtosis"] - b["kurtosis"])),
        "vol_ratio": float(abs(a["vol"] / b["vol"] - 1.0)),
        "quantiles_h": float(np.mean(np.abs(a["quantiles"] - b["quantiles"]))),
    }


@dataclass
class FactScore:
    """The scorecard of a model against a baseline on the eight facts.

    Attributes:
        table: rows = facts; columns ``model``, ``baseline`` (errors), ``better`` (bool).
        baseline: the baseline's name.
        values: the model's and the data's raw statistics (kurtosis, vol, ACF |r| lag 1).
    """

    table: pd.DataFrame
    baseline: str
    values: dict[str, float]

    @property
    def wins(self) -> int:
        """Facts on which the model's error is below the baseline's."""
        return int(self.table["better"].sum())

    def verdict(self) -> str:
        """One line: how many facts the model wins, and where it is furthest behind."""
        lost = self.table[~self.table["better"]]
        n = len(self.table)
        if lost.empty:
            return f"better than {self.baseline} on all {n} facts"
        worst = (lost["model"] / lost["baseline"].clip(lower=1e-12)).idxmax()
        return (f"better than {self.baseline} on {self.wins} of {n} facts; furthest behind on "
                f"{FACTS[worst]} ({lost.loc[worst, 'model']:.3g} against "
                f"{lost.loc[worst, 'baseline']:.3g})")

    def to_markdown(self) -> str:
        lines = [f"| fact | model error | {self.baseline} error | model better |",
                 "| --- | ---: | ---: | :---: |"]
        for k, row in self.table.iterrows():
            lines.append(f"| {FACTS[k]} | {row['model']:.4g} | {row['baseline']:.4g} | "
                         f"{'yes' if row['better'] else 'no'} |")
        lines.append("")
        lines.append(f"Verdict: {self.verdict()}.")
        return "\n".join(lines) + "\n"


def score_facts(model: np.ndarray, data: np.ndarray, baseline: np.ndarray, *,
                baseline_name: str = "gjr_garch_t", asset: int = 0) -> FactScore:
    """Errors of ``model`` and ``baseline`` against ``data`` on the eight facts.

    Shape:
        model, data, baseline: (n_windows, horizon + 1, n_assets) log-price windows from 0.
    """
    dv = fact_values(data, asset)
    em, eb = fact_errors(model, dv, asset), fact_errors(baseline, dv, asset)
    table = pd.DataFrame({"model": em, "baseline": eb})
    table["better"] = table["model"] < table["baseline"]
    mv = fact_values(model, asset)
    values = {"kurtosis_model": mv["kurtosis"], "kurtosis_data": dv["kurtosis"],
              "acf_abs1_model": float(mv["acf_abs"][0]), "acf_abs1_data": float(dv["acf_abs"][0]),
              "vol_ratio": mv["vol"] / dv["vol"]}
    return FactScore(table.loc[list(FACTS)], baseline_name, values)
