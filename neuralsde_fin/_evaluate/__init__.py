"""Evaluation: stylized facts of generated against real windows, classical baselines, plots."""

from __future__ import annotations

from neuralsde_fin._evaluate._baselines import (
    BASELINES,
    GBMBaseline,
    GJRGarchBaseline,
    register,
)
from neuralsde_fin._evaluate._mmd import sig_mmd_test
from neuralsde_fin._evaluate._plots import (
    make_report,
    plot_acf,
    plot_fan_chart,
    plot_qq,
    plot_return_histogram,
    plot_smile,
    plot_training_curve,
    report_figures,
    save_figure,
    write_report,
)
from neuralsde_fin._evaluate._report import EvaluationReport, evaluate, stylized_facts
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
    "GBMBaseline",
    "GJRGarchBaseline",
    "evaluate",
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
    "save_figure",
    "sig_mmd_test",
    "stylized_facts",
    "write_report",
]
