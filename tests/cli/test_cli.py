"""The console script: help, a subcommand, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from neuralsde_fin._cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("inspect", "calibrate", "sample", "price", "evaluate", "report"):
        assert name in out
    assert main(["calibrate", "--help"]) == 0
    import neuralsde_fin as nsf

    helptext = capsys.readouterr().out
    assert all(m in helptext for m in nsf.LOSSES)  # methods from the registry


def test_inspect_bundled(capsys):
    assert main(["inspect", str(ROOT / "data" / "sp500.csv")]) == 0
    out = capsys.readouterr().out
    assert "5031 dates" in out and "Adj Close" in out


def test_bad_input_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Close\n2020-01-02,1\n2020-01-03,-1\n")
    out = subprocess.run(
        [sys.executable, "-m", "neuralsde_fin._cli", "inspect", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 3, column 'Close'" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
