"""Plots write non-empty PNGs; the report directory references them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import neuralsde_fin as nsf

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_report():
    prices = nsf.load_prices(ROOT / "data" / "sp500.csv").iloc[-1300:]
    gen = nsf.GJRGarchBaseline().fit(prices).sample(200, 30, seed=2)
    return prices, gen, nsf.evaluate(gen, prices, lags=10, n_perm=20, mmd_samples=16)


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG


def test_each_plot_returns_a_figure_and_saves_a_png(small_report, tmp_path):
    prices, gen, rep = small_report
    k = np.tile(np.linspace(80, 120, 9), 3)
    t = np.repeat([0.1, 0.25, 0.5], 9)
    v = 0.2 + 0.5 * (k / 100 - 1) ** 2 - 0.1 * (k / 100 - 1)
    v[3] = np.nan  # a failed inversion is skipped
    calls = {
        "fan": lambda p: nsf.plot_fan_chart(prices, gen, path=p),
        "fan_prices": lambda p: nsf.plot_fan_chart(prices.to_numpy(), 2500 * np.exp(gen), path=p),
        "hist": lambda p: nsf.plot_return_histogram(rep, path=p),
        "qq": lambda p: nsf.plot_qq(rep.returns, path=p),
        "acf": lambda p: nsf.plot_acf(rep, n_obs=1000, path=p),
        "acf_frame": lambda p: nsf.plot_acf(rep.acf["leverage"], ylabel="leverage", path=p),
        "smile": lambda p: nsf.plot_smile(k, t, v, spot=100.0, path=p),
        "smile_strikes": lambda p: nsf.plot_smile(k, t, v, path=p),
        "training": lambda p: nsf.plot_training_curve(np.exp(-np.arange(200) / 40.0), path=p),
    }
    for name, call in calls.items():
        path = tmp_path / "sub" / f"{name}.png"
        fig = call(path)
        assert isinstance(fig, Figure), name
        _check_png(path)
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # no temp files left behind


@pytest.mark.parametrize("fmt, fname", [("markdown", "report.md"), ("html", "report.html")])
def test_write_report_references_the_figures(small_report, tmp_path, fmt, fname):
    prices, gen, rep = small_report
    figs = nsf.report_figures(rep, history=prices, scenarios=gen)
    figs["training_curve"] = nsf.plot_training_curve([3.0, 2.0, 1.5, 1.2, 1.1, 1.05])
    out = nsf.write_report(tmp_path / "rep", rep, figs, fmt=fmt, text="Demo run.")
    assert out == tmp_path / "rep" / fname
    body = out.read_text()
    assert set(figs) == {"returns_histogram", "qq", "acf_abs", "fan_chart", "training_curve"}
    for name in figs:
        _check_png(tmp_path / "rep" / f"{name}.png")
        assert f"{name}.png" in body
    assert "excess kurtosis 1d" in body and "Demo run." in body
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        [fname] + [f"{n}.png" for n in figs]
    )


def test_write_report_copies_png_paths_and_rejects_bad_input(tmp_path):
    src = tmp_path / "curve.png"
    nsf.plot_training_curve([1.0, 0.5, 0.25], path=src)
    out = nsf.write_report(tmp_path / "r", None, {"curve": src})
    _check_png(tmp_path / "r" / "curve.png")
    assert "curve.png" in out.read_text()
    with pytest.raises(ValueError, match="fmt"):
        nsf.write_report(tmp_path / "r", None, fmt="pdf")
    with pytest.raises(ValueError, match="no file"):
        nsf.write_report(tmp_path / "r", None, {"x": tmp_path / "missing.png"})
    with pytest.raises(ValueError, match="equal"):
        nsf.plot_smile([1.0, 2.0], [0.5], [0.2, 0.2])


def test_make_report_writes_everything(small_report, tmp_path):
    import json

    prices, gen, _ = small_report
    cont = nsf.GJRGarchBaseline(start="last").fit(prices).sample(100, 20, seed=3)
    smile = {"strikes": [90.0, 100.0, 110.0] * 2, "maturities": [0.25] * 3 + [0.5] * 3,
             "implied_vols": [0.24, 0.2, 0.18, 0.23, 0.2, 0.19], "spot": 100.0}
    rep, path = nsf.make_report(
        tmp_path / "out", gen, prices, scenarios=cont, losses=[2.0, 1.0, 0.8], smile=smile,
        fmt="html", baselines=("gbm",), lags=10, n_perm=10, mmd_samples=16,
    )
    assert path.name == "report.html"
    body = path.read_text()
    for name in ("returns_histogram", "qq", "acf_abs", "fan_chart", "smile", "training_curve"):
        _check_png(tmp_path / "out" / f"{name}.png")
        assert f"{name}.png" in body
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["table"]["excess kurtosis 1d"]) == {"data", "model", "gbm"}
    assert list(rep.table.columns) == ["data", "model", "gbm"]
