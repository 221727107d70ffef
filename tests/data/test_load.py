"""load_prices: every DataError case on a tiny file, and the bundled CSVs."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import neuralsde_fin as nsf

DATA = Path(__file__).resolve().parents[2] / "data"

GOOD = "Date,Close\n2020-01-02,100\n2020-01-03,101\n2020-01-06,99.5\n2020-01-07,102\n"


def _write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# (case, file text, kwargs, regex the one-line message must match: file, row, column named)
BAD_FILES = [
    ("empty file", "", {}, r"prices\.csv: empty file"),
    ("blank file", "\n\n", {}, r"prices\.csv: empty file"),
    ("header only", "Date,Close\n", {}, r"prices\.csv: no data rows \(header only\)"),
    ("no date column", "When,Close\n2020-01-02,1\n", {}, r"prices\.csv: no date column"),
    ("bad date_column", GOOD, {"date_column": "Day"}, r"date column 'Day' not found"),
    (
        "unparseable date",
        "Date,Close\n2020-01-02,100\n2020-13-45,101\n",
        {},
        r"prices\.csv, row 3, column 'Date': cannot parse date '2020-13-45'",
    ),
    (
        "missing date",
        "Date,Close\n2020-01-02,100\n,101\n",
        {},
        r"prices\.csv, row 3, column 'Date': missing date",
    ),
    (
        "duplicate date",
        "Date,Close\n2020-01-02,100\n2020-01-03,101\n2020-01-03,102\n",
        {},
        r"prices\.csv, row 4, column 'Date': duplicate date 2020-01-03 \(also at row 3\)",
    ),
    (
        "duplicate date with sort",
        "Date,Close\n2020-01-03,100\n2020-01-02,101\n2020-01-03,102\n",
        {"sort": True},
        r"prices\.csv, row 4, column 'Date': duplicate date 2020-01-03 \(first at row 2\)",
    ),
    (
        "out of order",
        "Date,Close\n2020-01-02,100\n2020-01-06,101\n2020-01-03,102\n",
        {},
        r"prices\.csv, row 4, column 'Date': date 2020-01-03 is earlier than .*sort=True",
    ),
    (
        "missing value",
        "Date,Close\n2020-01-02,100\n2020-01-03,\n",
        {},
        r"prices\.csv, row 3, column 'Close': missing value",
    ),
    (
        "NA marker",
        "Date,Close\n2020-01-02,100\n2020-01-03,NA\n",
        {},
        r"prices\.csv, row 3, column 'Close': missing value",
    ),
    (
        "non-numeric value",
        "Date,Close\n2020-01-02,100\n2020-01-03,abc\n",
        {},
        r"prices\.csv, row 3, column 'Close': not a number: 'abc'",
    ),
    (
        "zero price",
        "Date,Close\n2020-01-02,100\n2020-01-03,0\n",
        {},
        r"prices\.csv, row 3, column 'Close': price must be > 0, got 0\.0",
    ),
    (
        "negative price",
        "Date,Close\n2020-01-02,100\n2020-01-03,101\n2020-01-06,-5\n",
        {},
        r"prices\.csv, row 4, column 'Close': price must be > 0, got -5\.0",
    ),
    (
        "infinite price",
        "Date,Close\n2020-01-02,100\n2020-01-03,inf\n",
        {},
        r"prices\.csv, row 3, column 'Close': price must be finite",
    ),
    (
        "row numbers count blank lines",
        "Date,Close\n2020-01-02,100\n\n2020-01-03,-1\n",
        {},
        r"prices\.csv, row 4, column 'Close'",
    ),
    ("absent column", GOOD, {"columns": ["Open"]}, r"prices\.csv: column 'Open' not found"),
    ("too few rows", "Date,Close\n2020-01-02,100\n", {}, r"1 data row\(s\), need at least 2"),
    ("min_rows", GOOD, {"min_rows": 10}, r"4 data row\(s\), need at least 10"),
]


@pytest.mark.parametrize("case,text,kwargs,pattern", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_raises_dataerror_naming_where(tmp_path, case, text, kwargs, pattern):
    path = _write(tmp_path, text)
    before = path.read_bytes()
    with pytest.raises(nsf.DataError) as info:
        nsf.load_prices(path, **kwargs)
    msg = str(info.value)
    print(msg)
    assert re.search(pattern, msg), msg
    assert "\n" not in msg
    assert str(path) in msg or "load_prices" in msg
    assert path.read_bytes() == before  # the input file is never modified


def test_missing_file(tmp_path):
    with pytest.raises(nsf.DataError, match=r"nope\.csv: file not found"):
        nsf.load_prices(tmp_path / "nope.csv")


def test_dataerror_is_valueerror():
    assert issubclass(nsf.DataError, ValueError)


def test_sort_true_sorts(tmp_path):
    p = _write(tmp_path, "Date,Close\n2020-01-06,3\n2020-01-02,1\n2020-01-03,2\n")
    df = nsf.load_prices(p, sort=True)
    assert list(df["Close"]) == [1.0, 2.0, 3.0]
    assert df.index.is_monotonic_increasing


def test_good_file_types(tmp_path):
    df = nsf.load_prices(_write(tmp_path, GOOD))
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "Date"
    assert df.index.is_unique and df.index.is_monotonic_increasing
    assert list(df.columns) == ["Close"] and df["Close"].dtype == np.float64
    np.testing.assert_array_equal(df["Close"].to_numpy(), [100, 101, 99.5, 102])


def test_wide_file_and_columns(tmp_path):
    p = _write(tmp_path, "date,A,B\n2020-01-02,1,10\n2020-01-03,2,20\n")
    assert list(nsf.load_prices(p).columns) == ["A", "B"]
    assert list(nsf.load_prices(p, columns="B").columns) == ["B"]


def test_misaligned_assets_inner_join_with_warning(tmp_path):
    a = _write(tmp_path, "Date,Close\n2020-01-02,1\n2020-01-03,2\n2020-01-06,3\n", "a.csv")
    b = _write(tmp_path, "Date,Close\n2020-01-03,20\n2020-01-06,30\n2020-01-07,40\n", "b.csv")
    with pytest.warns(UserWarning, match=r"dropped 2 of 4 dates"):
        df = nsf.load_prices({"A": a, "B": b})
    assert list(df.columns) == ["A", "B"]
    assert [d.day for d in df.index] == [3, 6]
    np.testing.assert_array_equal(df.to_numpy(), [[2, 20], [3, 30]])
    with pytest.warns(UserWarning):
        assert list(nsf.load_prices([a, b]).columns) == ["a", "b"]


def test_aligned_assets_no_warning(tmp_path):
    a = _write(tmp_path, GOOD, "a.csv")
    b = _write(tmp_path, GOOD, "b.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = nsf.load_prices({"A": a, "B": b})
    assert df.shape == (4, 2)


def test_dataframe_input():
    idx = pd.date_range("2020-01-01", periods=3, freq="B")
    df = nsf.load_prices(pd.DataFrame({"X": [1.0, 2.0, 3.0]}, index=idx))
    assert list(df.columns) == ["X"] and (df.index == idx).all()
    bad = pd.DataFrame({"Date": idx, "X": [1.0, np.nan, 3.0]})
    with pytest.raises(nsf.DataError, match=r"<DataFrame>, position 1, column 'X': missing value"):
        nsf.load_prices(bad)


@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_bundled_csv_round_trip(name, tmp_path):
    path = DATA / f"{name}.csv"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    df = nsf.load_prices(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert list(df.columns) == ["Adj Close"]
    assert len(df) == 5031
    assert df.index[0] == pd.Timestamp("1999-01-04") and df.index[-1] == pd.Timestamp("2018-12-31")
    raw = pd.read_csv(path)
    np.testing.assert_array_equal(df["Adj Close"].to_numpy(), raw["Adj Close"].to_numpy())
    # Written back and read again: the same frame.
    out = tmp_path / "copy.csv"
    df.to_csv(out)
    pd.testing.assert_frame_equal(nsf.load_prices(out), df, check_freq=False)
    ohlc = nsf.load_prices(path, columns=["Open", "High", "Low", "Close"])
    assert (ohlc["High"] >= ohlc["Low"]).all()


def test_both_bundled_assets_align():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = nsf.load_prices({"SPX": DATA / "sp500.csv", "NDX": DATA / "nasdaq.csv"})
    assert df.shape == (5031, 2)
