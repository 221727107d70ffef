"""`make demo` end to end at tiny size: every step runs and writes its files."""

from __future__ import annotations

import json

from neuralsde_fin._demo import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--out", str(out), "--steps", "3", "--paths", "400", "--eval-paths", "100",
                 "--n-perm", "0"])
    assert code == 0
    text = capsys.readouterr().out
    for step in ("1/4 calibrate", "2/4 price", "3/4 evaluate", "4/4 stylized facts", "verdict"):
        assert step in text
    names = {p.name for p in out.iterdir()}
    assert {"model.pt", "report.md", "metrics.json", "prices.json", "timing.json",
            "smile.png", "fan_chart.png", "training_curve.png"} <= names
    prices = json.loads((out / "prices.json").read_text())
    assert len(prices["options"]) == 30 and prices["greeks_atm_3m_call"]["delta"] > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
