"""Every subcommand of ``neuralsde-fin``: a run with tiny settings and its bad-input exit code."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._cli import main
from neuralsde_fin._pricing._strip import parse_maturity_days, parse_strike


# ---------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, days",
    [("0.25", 63), ("3m", 63), ("63d", 63), ("1y", 252), ("2w", 10), ("1m", 21), ("0.5", 126)],
)
def test_maturity_syntax(text, days):
    assert parse_maturity_days(text) == days


def test_strike_syntax():
    assert parse_strike("105", 100.0) == 105.0
    assert parse_strike("1.05x", 200.0) == pytest.approx(210.0)


# ---------------------------------------------------------------------------------- calibrate
def test_calibrate_writes_a_loadable_model(tiny_model):
    model = nsf.load_model(tiny_model)
    assert model.n_assets == 1 and model.window == 16
    assert model.info["method"] == "sigw1" and len(model.info["history"]) == 3
    assert model.info["last_prices"][0] > 0 and model.info["last_date"] == "2000-03-10"


def test_calibrate_with_recipe_and_override(tmp_path, tiny_data, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[data]\npath = "{tiny_data}"\n[calibrate]\nmethod = "sigkernel"\nwindow = 8\n'
        "steps = 50\nbatch = 4\n[calibrate.model_options]\nwidth = 8\nlatent = 2\n"
    )
    out = tmp_path / "m.pt"
    code = main(["calibrate", "--recipe", str(recipe), "--method", "sigw1", "--steps", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    m = nsf.load_model(out)
    assert m.info["method"] == "sigw1" and m.info["steps"] == 2 and m.window == 8
    assert m.width == 8


def test_calibrate_unknown_method(tiny_data, tmp_path, capsys, one_line_error):
    code = main(["calibrate", str(tiny_data), "--method", "nope", "--out", str(tmp_path / "m.pt")])
    one_line_error(capsys, code, "unknown method 'nope'", "sigkernel", "sigw1")


def test_calibrate_missing_file(tmp_path, capsys, one_line_error):
    code = main(["calibrate", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m.pt")])
    one_line_error(capsys, code, "does not exist")


def test_calibrate_recipe_unknown_key(tmp_path, tiny_data, capsys, one_line_error):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'[data]\npath = "{tiny_data}"\n[calibrate]\nstepz = 3\n')
    code = main(["calibrate", "--recipe", str(recipe), "--out", str(tmp_path / "m.pt")])
    one_line_error(capsys, code, "calibrate.stepz", str(recipe))


def test_calibrate_bad_number(tiny_data, tmp_path, capsys, one_line_error):
    code = main(["calibrate", str(tiny_data), "--steps", "x", "--out", str(tmp_path / "m.pt")])
    one_line_error(capsys, code, "--steps")


# ---------------------------------------------------------------------------------- sample
def test_sample_parquet_and_csv(tiny_model, tmp_path, capsys):
    pq = tmp_path / "s.parquet"
    assert main(["sample", str(tiny_model), "--paths", "20", "--horizon", "10", "--measure",
                 "risk-neutral", "--rate", "0.03", "--dividend", "0.01", "--seed", "7",
                 "--out", str(pq)]) == 0
    scen = nsf.Scenarios.from_parquet(pq)
    assert scen.prices.shape == (20, 11, 1) and scen.measure == "risk_neutral"
    assert scen.r == 0.03 and scen.q == 0.01 and scen.seed == 7
    spot = nsf.load_model(tiny_model).info["last_prices"][0]
    assert float(scen.prices[0, 0, 0]) == pytest.approx(spot, rel=1e-6)

    long = tmp_path / "s.csv"
    assert main(["sample", str(tiny_model), "--paths", "20", "--horizon", "10", "--measure",
                 "risk-neutral", "--rate", "0.03", "--dividend", "0.01", "--seed", "7",
                 "--out", str(long)]) == 0
    frame = pd.read_csv(long)
    assert list(frame.columns[:4]) == ["path", "step", "time", "date"] and len(frame) == 220
    assert frame.iloc[:, 4].to_numpy() == pytest.approx(
        scen.prices[:, :, 0].reshape(-1).numpy(), rel=1e-6)

    wide = tmp_path / "w.csv"
    assert main(["sample", str(tiny_model), "--paths", "5", "--horizon", "10", "--out",
                 str(wide), "--csv-format", "wide", "--spot", "100"]) == 0
    w = pd.read_csv(wide, index_col=0)
    assert w.shape == (11, 5) and (w.iloc[0] == 100).all()


def test_sample_to_directory_writes_a_shard_equal_to_the_file(tiny_model, tmp_path, capsys):
    """`--out DIR` writes DIR/part-<rank>.parquet (part-0 in one process); union == the file."""
    args = ["sample", str(tiny_model), "--paths", "12", "--horizon", "5", "--seed", "3"]
    assert main(args + ["--out", str(tmp_path / "one.parquet")]) == 0
    assert main(args + ["--out", str(tmp_path / "shards")]) == 0
    assert (tmp_path / "shards" / "part-0.parquet").exists()
    one = nsf.Scenarios.from_parquet(tmp_path / "one.parquet")
    union = nsf.combine_shards(tmp_path / "shards")
    assert torch.equal(one.prices, union.prices) and torch.equal(one.times, union.times)


def test_sample_not_a_model(tmp_path, capsys, one_line_error):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["sample", str(bad), "--paths", "5", "--out", str(tmp_path / "s.parquet")])
    one_line_error(capsys, code, "bad.pt")


def test_sample_bad_measure_and_out(tiny_model, tmp_path, capsys, one_line_error):
    code = main(["sample", str(tiny_model), "--measure", "q", "--out", str(tmp_path / "s.csv")])
    one_line_error(capsys, code, "--measure")
    code = main(["sample", str(tiny_model), "--out", str(tmp_path / "s.xlsx")])
    one_line_error(capsys, code, ".parquet or .csv")
    code = main(["sample", str(tiny_model), "--chunk-size", "0", "--out", str(tmp_path / "d")])
    one_line_error(capsys, code, "--chunk-size")


# ---------------------------------------------------------------------------------- price
def test_price_model_put_call_parity(tiny_model, capsys):
    capsys.readouterr()
    code = main(["price", str(tiny_model), "--call", "1.0x:3m", "--put", "1.0x:0.25",
                 "--call", "1.1x:21d", "--paths", "400", "--rate", "0.02", "--dividend",
                 "0.01", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    c, p, otm = out["options"]
    assert (c["kind"], p["kind"], c["days"], otm["days"]) == ("call", "put", 63, 21)
    s, k, t = out["spot"], c["strike"], c["maturity"]
    # Put-call parity holds exactly on the same samples (control variate, DESIGN section 3).
    parity = s * math.exp(-0.01 * t) - k * math.exp(-0.02 * t)
    print(c["price"] - p["price"], parity)
    assert abs(c["price"] - p["price"] - parity) < 1e-4 * s
    for o in out["options"]:
        lo, hi = o["ci95"]
        assert lo < o["price"] < hi and o["stderr"] > 0
        assert 0.01 < o["implied_vol"] < 2.0


def test_price_scenarios_table(tiny_model, tmp_path, capsys):
    pq = tmp_path / "rn.parquet"
    assert main(["sample", str(tiny_model), "--paths", "50", "--horizon", "21", "--measure",
                 "risk-neutral", "--spot", "100", "--out", str(pq)]) == 0
    capsys.readouterr()
    assert main(["price", str(pq), "--call", "100:1m", "--put", "95:21d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "95% CI" in out[1] and out[2].startswith("call") and out[3].startswith("put")


@pytest.mark.parametrize(
    "opt, needle",
    [("100:3x", "bad maturity"), ("abc", "expected K:T"), ("0:3m", "bad strike"),
     ("1.0y:3m", "bad strike")],
)
def test_price_bad_option_syntax(tiny_model, capsys, one_line_error, opt, needle):
    code = main(["price", str(tiny_model), "--call", opt])
    one_line_error(capsys, code, needle)


def test_price_needs_options_and_refuses_historical(tiny_model, tmp_path, capsys, one_line_error):
    one_line_error(capsys, main(["price", str(tiny_model)]), "at least one")
    pq = tmp_path / "h.parquet"
    assert main(["sample", str(tiny_model), "--paths", "10", "--horizon", "5", "--out",
                 str(pq)]) == 0
    capsys.readouterr()
    one_line_error(capsys, main(["price", str(pq), "--call", "1.0x:5d"]), "historical")


# ---------------------------------------------------------------------------------- evaluate
def test_evaluate_table(tiny_model, tiny_data, capsys):
    capsys.readouterr()
    code = main(["evaluate", str(tiny_model), "--data", str(tiny_data), "--paths", "32",
                 "--n-perm", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| statistic | data | model | gbm | gjr_garch_t |"
    assert "excess kurtosis 1d" in out and "KS 16d stat" in out


def test_evaluate_bad_inputs(tiny_model, tiny_data, tmp_path, capsys, one_line_error):
    code = main(["evaluate", str(tiny_model), "--data", str(tmp_path / "x.csv")])
    one_line_error(capsys, code, "does not exist")
    code = main(["evaluate", str(tiny_model), "--data", str(tiny_data), "--data",
                 str(tiny_data)])
    one_line_error(capsys, code)
    code = main(["evaluate", str(tiny_data), "--data", str(tiny_data)])
    one_line_error(capsys, code, "not a model checkpoint")
    one_line_error(capsys, main(["evaluate", str(tiny_model)]), "--data FILE.csv or --recipe")


# ---------------------------------------------------------------------------------- report
def test_report_writes_figures(tiny_model, tiny_data, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["report", str(tiny_model), "--data", str(tiny_data), "--out", str(out),
                 "--paths", "32", "--n-perm", "0", "--smile-paths", "200", "--fan-days", "21",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    text = (out / "report.md").read_text()
    for fig in ("fan_chart", "returns_histogram", "qq", "acf_abs", "smile", "training_curve"):
        png = out / f"{fig}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert f"]({fig}.png)" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["table"]["ann. vol 1d"]) == {"data", "model", "gbm", "gjr_garch_t"}


def test_report_out_is_a_file(tiny_model, tiny_data, tmp_path, capsys, one_line_error):
    f = tmp_path / "file"
    f.write_text("x")
    code = main(["report", str(tiny_model), "--data", str(tiny_data), "--out", str(f)])
    one_line_error(capsys, code, "is a file")
