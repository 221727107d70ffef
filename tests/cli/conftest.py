"""Fixtures of the CLI tests: a small price file and one tiny model, calibrated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuralsde_fin._cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The first 300 trading days of the bundled S&P 500."""
    path = tmp_path_factory.mktemp("data") / "spx.csv"
    lines = (ROOT / "data" / "sp500.csv").read_text().splitlines()[:301]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_data) -> Path:
    """A model calibrated by the CLI with tiny settings (a few SigW1 steps on 16-day windows)."""
    out = tmp_path_factory.mktemp("model") / "model.pt"
    code = main([
        "calibrate", str(tiny_data), "--method", "sigw1", "--steps", "3", "--window", "16",
        "--batch", "8", "--seed", "0", "--out", str(out), "--no-progress",
    ])
    assert code == 0 and out.exists()
    return out


@pytest.fixture
def one_line_error():
    """``check(capsys, code, *needles)``: exit code 2, one stderr line containing ``needles``."""
    return _one_line_error


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def tiny_conditional_model(tmp_path_factory, tiny_data) -> Path:
    """A conditional model (context 20 days) calibrated by the CLI with tiny settings."""
    out = tmp_path_factory.mktemp("cmodel") / "cmodel.pt"
    code = main([
        "calibrate", str(tiny_data), "--method", "sigw1", "--steps", "3", "--window", "16",
        "--context", "20", "--batch", "8", "--seed", "0", "--out", str(out), "--no-progress",
    ])
    assert code == 0 and out.exists()
    return out
