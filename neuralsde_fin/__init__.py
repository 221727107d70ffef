"""neuralsde_fin: neural SDEs calibrated to market price history.

The public API is this module's ``__all__``; everything in ``_name`` modules is internal.
"""

from __future__ import annotations

from neuralsde_fin import data
from neuralsde_fin._errors import CheckpointError, DataError
from neuralsde_fin._evaluate import (
    BASELINES,
    EvaluationReport,
    GBMBaseline,
    GJRGarchBaseline,
    evaluate,
    make_report,
    plot_acf,
    plot_fan_chart,
    plot_qq,
    plot_return_histogram,
    plot_smile,
    plot_training_curve,
    pooled_acf,
    report_figures,
    sig_mmd_test,
    stylized_facts,
    write_report,
)
from neuralsde_fin.data import load_prices

__version__ = "0.1.0"

__all__ = [
    "BASELINES",
    "CheckpointError",
    "DataError",
    "EvaluationReport",
    "GBMBaseline",
    "GJRGarchBaseline",
    "data",
    "evaluate",
    "load_prices",
    "make_report",
    "plot_acf",
    "plot_fan_chart",
    "plot_qq",
    "plot_return_histogram",
    "plot_smile",
    "plot_training_curve",
    "pooled_acf",
    "report_figures",
    "sig_mmd_test",
    "stylized_facts",
    "write_report",
]
