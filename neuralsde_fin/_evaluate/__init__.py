"""Evaluation: stylized facts of generated against real windows, classical baselines, plots."""

from __future__ import annotations

from neuralsde_fin._evaluate._baselines import (
    BASELINES,
    GBMBaseline,
    GJRGarchBaseline,
    register,
)
from neuralsde_fin._evaluate._evaluate import evaluate, stylized_facts
from neuralsde_fin._evaluate._facts import FACTS, FactScore, score_facts
from neuralsde_fin._evaluate._forecast import ForecastReport, crps_samples, forecast_evaluate
from neuralsde_fin._evaluate._mmd import sig_mmd_test
from neuralsde_fin._evaluate._plots import (
    plot_acf,
    plot_fan_chart,
    plot_qq,
    plot_return_histogram,
    plot_smile,
    plot_training_curve,
    save_figure,
)
from neuralsde_fin._evaluate._report import make_report, report_figures, write_report
from neuralsde_fin._evaluate._result import EvaluationReport
from neuralsde_fin._evaluate._stats import (
    ks_2samp,
    moments,
    pooled_acf,
    pooled_leverage,
    quantiles_es,
)

__all__ = [
    "BASELINES",
    "EvaluationReport",
    "FACTS",
    "FactScore",
    "ForecastReport",
    "GBMBaseline",
    "GJRGarchBaseline",
    "crps_samples",
    "evaluate",
    "forecast_evaluate",
    "ks_2samp",
    "make_report",
    "moments",
    "plot_acf",
    "plot_fan_chart",
    "plot_qq",
    "plot_return_histogram",
    "plot_smile",
    "plot_training_curve",
    "pooled_acf",
    "pooled_leverage",
    "quantiles_es",
    "register",
    "report_figures",
    "score_facts",
    "save_figure",
    "sig_mmd_test",
    "stylized_facts",
    "write_report",
]
