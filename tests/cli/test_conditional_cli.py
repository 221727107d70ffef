"""The CLI with a conditional model: today's state by default, --history/--end, --stationary."""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._cli import main


def test_calibrate_keeps_the_trailing_context(tiny_conditional_model, tiny_data):
    m = nsf.load_model(tiny_conditional_model)
    prices = nsf.load_prices(tiny_data)
    assert m.context == 20 and m.info["context"] == 20
    t = m.trailing_history()
    assert len(t) == 21 and t.index[-1] == prices.index[-1]
    assert t.to_numpy() == pytest.approx(prices.iloc[-21:].to_numpy())


def test_sample_starts_from_today_by_default(tiny_conditional_model, tmp_path, capsys):
    out = tmp_path / "s.parquet"
    capsys.readouterr()
    assert main(["sample", str(tiny_conditional_model), "--paths", "30", "--horizon", "5",
                 "--seed", "2", "--out", str(out), "--quiet"]) == 0
    assert "from the state of 2000-03-10" in capsys.readouterr().out
    m = nsf.load_model(tiny_conditional_model)
    want = m.sample(30, 5, measure="historical", seed=2, history=m.trailing_history())
    got = nsf.Scenarios.from_parquet(out)
    assert torch.equal(got.prices, want.prices)


def test_sample_history_end_and_stationary(tiny_conditional_model, tiny_data, tmp_path):
    m = nsf.load_model(tiny_conditional_model)
    prices = nsf.load_prices(tiny_data)
    a = tmp_path / "a.parquet"
    assert main(["sample", str(tiny_conditional_model), "--paths", "30", "--horizon", "5",
                 "--history", str(tiny_data), "--end", "1999-12-01", "--out", str(a),
                 "--quiet"]) == 0
    cut = prices.loc[:"1999-12-01"]
    want = m.sample(30, 5, measure="historical", seed=0, history=cut)
    got = nsf.Scenarios.from_parquet(a)
    assert torch.equal(got.prices, want.prices)
    assert float(got.prices[0, 0, 0]) == pytest.approx(float(cut.iloc[-1, 0]), rel=1e-6)
    b = tmp_path / "b.parquet"
    assert main(["sample", str(tiny_conditional_model), "--paths", "30", "--horizon", "5",
                 "--stationary", "--out", str(b), "--quiet"]) == 0
    spot = m.info["last_prices"]
    want = m.sample(30, 5, measure="historical", seed=0, spot=spot)
    assert torch.equal(nsf.Scenarios.from_parquet(b).prices, want.prices)


def test_start_flag_errors(tiny_conditional_model, tiny_model, tiny_data, tmp_path, capsys,
                           one_line_error):
    out = str(tmp_path / "s.parquet")
    code = main(["sample", str(tiny_model), "--history", str(tiny_data), "--out", out])
    one_line_error(capsys, code, "--history needs a model calibrated with a context")
    code = main(["sample", str(tiny_conditional_model), "--history", str(tiny_data),
                 "--stationary", "--out", out])
    one_line_error(capsys, code, "exclude each other")
    code = main(["sample", str(tiny_conditional_model), "--history", str(tiny_data),
                 "--end", "1999-01-10", "--out", out])
    one_line_error(capsys, code, "history has", "at least 21")
    code = main(["evaluate", str(tiny_model), "--data", str(tiny_data), "--forecast",
                 "1999-10-01"])
    one_line_error(capsys, code, "--forecast needs a model calibrated with a context")


def test_price_with_greeks_from_today(tiny_conditional_model, capsys):
    capsys.readouterr()
    assert main(["price", str(tiny_conditional_model), "--call", "1.0x:21d", "--paths", "400",
                 "--greeks", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "from the state of 2000-03-10" in out and "delta" in out


def test_evaluate_forecast_prints_the_crps_ratios(tiny_conditional_model, tiny_data, capsys):
    capsys.readouterr()
    code = main(["evaluate", str(tiny_conditional_model), "--data", str(tiny_data), "--paths",
                 "64", "--n-perm", "0", "--forecast", "1999-11-01", "--every", "10"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Mean CRPS" in out and "model / gjr_garch_t: return" in out
    assert "model / stationary" in out


def test_report_is_from_today(tiny_conditional_model, tiny_data, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["report", str(tiny_conditional_model), "--data", str(tiny_data), "--out",
                 str(out), "--paths", "32", "--n-perm", "0", "--smile-paths", "200",
                 "--fan-days", "21", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    text = (out / "report.md").read_text()
    assert "Fan chart and smile from today's state (2000-03-10" in text
