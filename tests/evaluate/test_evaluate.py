"""nsf.evaluate: the report, its inputs, and the S&P 500 stylized-fact targets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sp500():
    return nsf.load_prices(ROOT / "data" / "sp500.csv")


@pytest.fixture(scope="module")
def sp500_report(sp500):
    # Baselines only: data, GBM and GJR-GARCH-t on 64-day windows, 2000 paths each.
    return nsf.evaluate(None, sp500, horizon=64, n_paths=2000, n_perm=100, seed=0)


def test_sp500_stylized_fact_targets(sp500_report):
    """The targets a calibrated model must reach: ACF of |r| at lag 1 > 0.1, excess kurtosis > 1."""
    t = sp500_report.table
    acf = t.loc["ACF |r| lag 1"]
    kurt = t.loc["excess kurtosis 1d"]
    print("\n" + sp500_report.to_markdown())
    print(f"S&P 500 data: ACF |r| lag 1 = {acf['data']:.4f}, excess kurtosis = {kurt['data']:.3f}")
    print(f"GBM:          ACF |r| lag 1 = {acf['gbm']:.4f}, excess kurtosis = {kurt['gbm']:.3f}")
    print(f"GJR-GARCH-t:  ACF |r| lag 1 = {acf['gjr_garch_t']:.4f}, "
          f"excess kurtosis = {kurt['gjr_garch_t']:.3f}")
    assert acf["data"] > 0.1 and kurt["data"] > 1
    assert acf["gjr_garch_t"] > 0.1 and kurt["gjr_garch_t"] > 1
    assert acf["gbm"] < 0.1 and kurt["gbm"] < 1
    # GBM is iid Gaussian: both statistics are 0 up to their standard errors.
    n = 2000 * 64
    assert abs(acf["gbm"]) < 4 / np.sqrt(2000 * 63)
    assert abs(kurt["gbm"]) < 4 * np.sqrt(24 / n)


def test_report_layout_and_serialisation(sp500_report):
    t = sp500_report.table
    assert list(t.columns) == ["data", "gbm", "gjr_garch_t"]
    for row in ("KS 1d stat", "KS 1d p-value", "KS 64d stat", "KS 64d p-value", "skew 1d",
                "excess kurtosis 1d", "ACF r lag 1", "ACF |r| lag 20", "leverage lag 1",
                "64d quantile 01%", "64d quantile 99%", "64d ES 01%", "64d ES 05%", "sig MMD^2",
                "sig MMD^2 p-value"):
        assert row in t.index, row
    assert np.isnan(t.loc["KS 1d stat", "data"])
    assert 0 <= t.loc["KS 1d p-value", "gbm"] <= 1
    for k in ("acf_r", "acf_abs", "leverage"):
        assert sp500_report.acf[k].shape == (20, 3)
    np.testing.assert_allclose(
        sp500_report.acf["acf_abs"].loc[1].to_numpy(), t.loc["ACF |r| lag 1"].to_numpy()
    )
    d = sp500_report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["table"]["KS 1d stat"]["data"] is None
    md = sp500_report.to_markdown()
    assert md.startswith("| statistic | data | gbm | gjr_garch_t |")
    assert "pooled" in md and "permutations" in md
    # Every table row has as many cells as the header: "ACF |r|" is escaped as one cell.
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    ncells = {len(re.split(r"(?<!\\)\|", ln)) for ln in rows}
    assert len(ncells) == 1 and "| ACF \\|r\\| lag 1 |" in md, md
    assert "<table" in sp500_report.to_html()
    # The data leverage effect: falls raise later volatility.
    assert t.loc["leverage lag 1", "data"] < 0


class _Scen:
    def __init__(self, times, prices):
        self.times, self.prices = times, prices


def test_inputs_prices_logs_scenarios_tensors_agree(sp500):
    g = nsf.GJRGarchBaseline().fit(sp500)
    logp = g.sample(100, 30, seed=5)
    prices = 2500 * np.exp(logp)
    kw = dict(baselines=(), horizon=30, lags=5, n_perm=20, seed=1)
    ref = nsf.evaluate(logp, sp500, **kw).table
    for gen in (prices, torch.tensor(logp, dtype=torch.float64), _Scen(None, prices),
                logp[..., 0]):
        out = nsf.evaluate(gen, sp500, **kw).table
        np.testing.assert_allclose(out.to_numpy(float), ref.to_numpy(float), rtol=1e-9, atol=1e-12)
    # float32 input: the statistics are computed in float64 from the rounded values.
    out = nsf.evaluate(torch.tensor(logp, dtype=torch.float32), sp500, **kw).table
    np.testing.assert_allclose(out.to_numpy(float), ref.to_numpy(float), rtol=1e-4, atol=1e-6)
    # Real data given as windows instead of a price history.
    w, _ = nsf.data.windows(sp500, 30, 30)
    out = nsf.evaluate(logp, w, **kw).table
    np.testing.assert_allclose(out.to_numpy(float), ref.to_numpy(float), rtol=1e-9, atol=1e-12)
    # Longer generated paths are cut to the horizon; several models side by side.
    out = nsf.evaluate({"a": g.sample(50, 40, seed=1), "b": logp}, sp500, **kw)
    assert list(out.table.columns) == ["data", "a", "b"]
    assert out.meta["horizon"] == 30


def test_two_assets():
    data = ROOT / "data"
    both = nsf.load_prices({"SPX": data / "sp500.csv", "NDX": data / "nasdaq.csv"})
    gen = nsf.GBMBaseline().fit(both).sample(64, 25, seed=0)
    rep = nsf.evaluate(gen, both, baselines=("gbm",), lags=5, n_perm=20)
    assert "excess kurtosis 1d [SPX]" in rep.table.index
    assert "excess kurtosis 1d [NDX]" in rep.table.index
    assert rep.acf["acf_abs"].shape == (5, 6)  # (data, model, gbm) x 2 assets


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lags=30), "lags=30"),
        (dict(kind="returns"), "kind"),
        (dict(horizon=40), "fewer than horizon"),
        (dict(baselines=("nope",)), "unknown baseline"),
        (dict(n_perm=-1), "n_perm"),
    ],
)
def test_bad_input(sp500, kwargs, match):
    gen = np.zeros((10, 31, 1))
    gen[:, 1:] = np.cumsum(np.full((10, 30, 1), 0.001), axis=1)
    with pytest.raises(ValueError, match=match):
        nsf.evaluate(gen, sp500, **{"n_perm": 0, **kwargs})


def test_bad_generated(sp500):
    with pytest.raises(ValueError, match="cannot tell"):
        nsf.evaluate(-np.ones((10, 31, 1)), sp500, n_perm=0)
    with pytest.raises(ValueError, match="assets"):
        nsf.evaluate(np.ones((10, 31, 2)), sp500, n_perm=0, baselines=())
    with pytest.raises(ValueError, match="horizon="):
        nsf.evaluate(None, sp500)


def test_stylized_facts_agrees_with_the_report(sp500, sp500_report):
    w, _ = nsf.data.windows(sp500, 64, 64)
    facts = nsf.stylized_facts(w)
    t = sp500_report.table
    assert facts["acf_abs_lag1"] == pytest.approx(t.loc["ACF |r| lag 1", "data"], rel=1e-12)
    assert facts["kurtosis"] == pytest.approx(t.loc["excess kurtosis 1d", "data"], rel=1e-12)
    whole = nsf.stylized_facts(sp500)  # the whole history as one window
    print("S&P 500, whole history:", whole)
    assert whole["acf_abs_lag1"] > 0.1 and whole["kurtosis"] > 1


def test_scenarios_with_non_daily_steps_warn(sp500):
    prices = 100 * np.exp(nsf.GBMBaseline.from_params(0.0, 0.2).sample(20, 30, seed=0))
    with pytest.warns(UserWarning, match="not daily"):
        nsf.evaluate(_Scen(np.arange(31) / 52, prices), sp500, baselines=(), lags=5, n_perm=0)


def test_gjr_without_stationary_law_starts_from_the_history(monkeypatch):
    """A GJR-GARCH-t fit with persistence >= 1 has no stationary law: evaluate samples it from
    the end of the history instead and says so in the notes."""
    from neuralsde_fin._evaluate import _baselines

    inner = _baselines.GJRGarchBaseline.sample

    def sample(self, n_paths, horizon, *, seed=0):
        if self.start == "stationary":
            raise ValueError("GJRGarchBaseline: persistence 1.01 >= 1 has no stationary law")
        return inner(self, n_paths, horizon, seed=seed)

    monkeypatch.setattr(_baselines.GJRGarchBaseline, "sample", sample)
    prices = nsf.load_prices(ROOT / "data" / "sp500.csv").iloc[-800:]
    rep = nsf.evaluate(None, prices, horizon=16, lags=5, n_perm=0, n_paths=200)
    assert any("start from the end of the history" in n for n in rep.meta["notes"])
    assert "gjr_garch_t" in rep.table.columns


def test_facts_scorecard_against_gjr(sp500):
    """A model's paths get the eight-fact scorecard against GJR-GARCH-t, with a verdict; the
    data's own windows (as a model) beat it on the facts it matches by construction."""
    w, _ = nsf.data.windows(sp500, 64, 64)
    rep = nsf.evaluate(w.numpy(), sp500, horizon=64, n_perm=0, n_paths=1000)
    (score,) = rep.facts["model"]
    assert list(score.table.index) == list(nsf.FACTS)
    assert score.table.loc["ks_1d", "model"] == 0.0 and score.table.loc["ks_1d", "better"]
    assert "better than gjr_garch_t on" in score.verdict()
    assert rep.verdicts() and "Verdict" in rep.to_markdown() or "model better" in rep.to_markdown()
    d = rep.to_dict()["facts"]["model"][0]
    assert d["wins"] == score.wins and set(d["errors"]) == set(nsf.FACTS)
