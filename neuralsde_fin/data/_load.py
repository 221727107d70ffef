"""Validated loading of daily price histories from CSV files or pandas frames.

Every check runs once, vectorised over the whole file, and the first offending cell is reported
with the file, the row as numbered in the file (the header is row 1) and the column. The input
file is only read, never modified.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neuralsde_fin._errors import DataError
from neuralsde_fin._validate import check_int

PathOrFrame = str | os.PathLike | pd.DataFrame | pd.Series

#: Names recognised as the date column, compared case-insensitively.
DATE_COLUMN_NAMES = ("date", "datetime", "timestamp", "time", "day")
#: Columns taken by default from an OHLC file, in order of preference (one asset per file).
DEFAULT_PRICE_COLUMNS = (
    "Adj Close",
    "Adj_Close",
    "AdjClose",
    "adjclose",
    "Close",
    "close",
    "Price",
)
#: Cell contents treated as a missing value.
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a", ".", "-"})
#: Columns of an OHLC file that are not prices.
_NON_PRICE = frozenset({"volume", "vol", "open interest", "openinterest"})


def load_prices(
    path_or_frame: PathOrFrame | Sequence[PathOrFrame] | Mapping[str, PathOrFrame],
    columns: str | Sequence[str] | None = None,
    date_column: str | None = None,
    *,
    sort: bool = False,
    min_rows: int = 2,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Load and validate a daily price history, one float64 column per asset.

    A single source is a CSV file or a DataFrame with a date column (or a DatetimeIndex). Several
    sources (a list, or a mapping ``{asset name: source}``) are loaded one by one and joined on
    their common dates (inner join); a warning counts the dates that were dropped.

    Which columns become assets: ``columns`` if given; otherwise the first of
    ``DEFAULT_PRICE_COLUMNS`` present (``"Adj Close"``, then ``"Close"``, ...), so an OHLC file
    gives one asset; otherwise every non-date column (a wide file, one column per asset). When
    one column is taken from each of several sources, the asset is named after the mapping key or
    the file stem.

    Args:
        path_or_frame: a CSV path, a DataFrame / Series, or a list or mapping of them.
        columns: the price column(s) to keep. Missing ones raise ``DataError``.
        date_column: the date column's name; default: the first column named like a date
            (``Date``, ``Datetime``, ``Timestamp``, ``Time``, ``Day``; any case), else the index
            of a DataFrame if it is a DatetimeIndex.
        sort: sort rows by date instead of refusing dates out of order.
        min_rows: the fewest rows (dates) accepted (after ``start`` / ``end``).
        start: first date kept (``"YYYY-MM-DD"``, inclusive); None: the first.
        end: last date kept (inclusive); None: the last.

    Returns:
        A DataFrame with a sorted, unique, timezone-naive DatetimeIndex named ``"Date"`` and one
        float64 column per asset; every value finite and > 0. ``frame.attrs["source"]`` names
        the source(s) (``nsf.calibrate`` records it with the model).

    Raises:
        DataError: (a ``ValueError``) naming the file, the row as numbered in the file and the
            column: missing or empty file, header only, no date column, an unparseable,
            duplicate or out-of-order date, a missing, non-numeric, non-finite, zero or negative
            price, an absent column, or fewer than ``min_rows`` rows.

    Shape:
        Output: ``(n_dates, n_assets)``.
    """
    check_int("min_rows", min_rows, where="load_prices: ")
    if isinstance(columns, str):
        columns = [columns]

    if isinstance(path_or_frame, Mapping):
        sources = [(str(k), v) for k, v in path_or_frame.items()]
    elif isinstance(path_or_frame, (list, tuple)):
        sources = [(None, v) for v in path_or_frame]
    else:
        sources = [(None, path_or_frame)]
    if not sources:
        raise DataError("load_prices: no source given")

    frames = []
    for name, src in sources:
        frame = _load_one(src, columns, date_column, sort=sort, min_rows=min_rows)
        if len(sources) > 1 and frame.shape[1] == 1:
            frame.columns = [name if name is not None else _source_name(src, short=True)]
        frames.append(frame)

    source = ", ".join(_source_name(src) for _, src in sources)
    if len(frames) == 1:
        out = _cut(frames[0], start, end, min_rows, _source_name(sources[0][1]))
        out.attrs["source"] = source
        return out
    out = frames[0]
    for f in frames[1:]:
        dup = set(out.columns) & set(f.columns)
        if dup:
            raise DataError(f"load_prices: asset name(s) {sorted(dup)} appear in several sources")
        out = out.join(f, how="inner")
    n_union = len(pd.Index([]).append([f.index for f in frames]).unique())
    dropped = n_union - len(out)
    if dropped:
        warnings.warn(
            f"load_prices: the assets' dates do not align; the inner join dropped {dropped} of "
            f"{n_union} dates",
            stacklevel=2,
        )
    if len(out) < min_rows:
        raise DataError(
            f"load_prices: only {len(out)} common dates across the assets, need at least {min_rows}"
        )
    out = _cut(out, start, end, min_rows, "load_prices")
    out.attrs["source"] = source
    return out


def _cut(frame: pd.DataFrame, start, end, min_rows: int, where: str) -> pd.DataFrame:
    """``frame`` restricted to ``start`` .. ``end`` (inclusive), at least ``min_rows`` dates."""
    if start is None and end is None:
        return frame
    try:
        out = frame.loc[start:end]
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"{where}: bad start / end {start!r} .. {end!r}: {exc}") from None
    if len(out) < min_rows:
        raise DataError(f"{where}: {len(out)} dates between {start} and {end}, need at least "
                        f"{min_rows}")
    return out


def _day(x) -> str:
    return str(pd.Timestamp(x).date())


def _source_name(src: object, short: bool = False) -> str:
    if isinstance(src, (pd.DataFrame, pd.Series)):
        return "<DataFrame>"
    p = Path(os.fspath(src))
    return p.stem if short else str(p)


def _load_one(
    src: PathOrFrame,
    columns: Sequence[str] | None,
    date_column: str | None,
    *,
    sort: bool,
    min_rows: int,
) -> pd.DataFrame:
    if isinstance(src, pd.Series):
        src = src.to_frame(name=src.name if src.name is not None else "price")
    if isinstance(src, pd.DataFrame):
        where = "<DataFrame>"
        raw = src.copy()
        if isinstance(raw.index, pd.DatetimeIndex) and date_column is None:
            raw = raw.reset_index(names="__index__")
            date_column = "__index__"
        raw = raw.reset_index(drop=True)
        rows = np.arange(len(raw))  # frames: 0-based positions
        row_word = "position"
        raw = raw.astype(object)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(os.fspath(src))
        where = str(path)
        if not path.exists():
            raise DataError(f"{where}: file not found")
        if path.is_dir():
            raise DataError(f"{where}: is a directory, not a CSV file")
        if path.stat().st_size == 0 or not path.read_bytes().strip():
            raise DataError(f"{where}: empty file")
        try:
            raw = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig"
            )
        except pd.errors.ParserError as exc:
            raise DataError(f"{where}: not a readable CSV file ({str(exc).strip()})") from None
        except UnicodeDecodeError:
            raise DataError(f"{where}: not a text (UTF-8) CSV file") from None
        rows = np.arange(len(raw)) + 2  # the header is row 1
        row_word = "row"
        blank = raw.apply(lambda c: c.str.strip() == "").all(axis=1).to_numpy()
        raw, rows = raw[~blank], rows[~blank]
    else:
        raise DataError(
            f"load_prices: expected a CSV path or a DataFrame, got {type(src).__name__}"
        )

    raw.columns = [str(c).strip() for c in raw.columns]
    if len(raw) == 0:
        raise DataError(f"{where}: no data rows (header only)")

    # The date column.
    if date_column is not None:
        if date_column not in raw.columns:
            raise DataError(
                f"{where}: date column {date_column!r} not found (columns: {list(raw.columns)})"
            )
        dcol = date_column
    else:
        dcol = next((c for c in raw.columns if c.lower() in DATE_COLUMN_NAMES), None)
        if dcol is None:
            raise DataError(
                f"{where}: no date column (expected one named {', '.join(DATE_COLUMN_NAMES)}; "
                f"columns: {list(raw.columns)}; pass date_column=)"
            )
    label = lambda i: f"{where}, {row_word} {rows[i]}"  # noqa: E731

    # The price columns.
    others = [c for c in raw.columns if c != dcol]
    if columns is not None:
        missing = [c for c in columns if c not in others]
        if missing:
            raise DataError(f"{where}: column {missing[0]!r} not found (columns: {others})")
        pcols = list(columns)
    else:
        pcols = [next((c for c in DEFAULT_PRICE_COLUMNS if c in others), None)]
        if pcols[0] is None:
            pcols = [c for c in others if c.lower() not in _NON_PRICE]
        if not pcols:
            raise DataError(f"{where}: no price column besides the date column {dcol!r}")

    dates = _parse_dates(raw[dcol], where, dcol, label)
    values = np.empty((len(raw), len(pcols)), dtype=np.float64)
    for j, c in enumerate(pcols):
        values[:, j] = _parse_prices(raw[c], where, c, label)

    # Order and uniqueness.
    order_ok = dates[1:] > dates[:-1]
    if not order_ok.all():
        dup = dates[1:] == dates[:-1]
        if sort:
            s = pd.Series(np.arange(len(dates)), index=dates)
            dmask = s.index.duplicated()
            if dmask.any():
                i = int(np.flatnonzero(dmask)[0])
                first = int(np.flatnonzero(dates == dates[i])[0])
                raise DataError(
                    f"{label(i)}, column {dcol!r}: duplicate date {_day(dates[i])} "
                    f"(first at {row_word} {rows[first]})"
                )
            idx = np.argsort(dates, kind="stable")
            dates, values, rows = dates[idx], values[idx], rows[idx]
        else:
            i = int(np.flatnonzero(~order_ok)[0]) + 1
            if dup[i - 1]:
                raise DataError(
                    f"{label(i)}, column {dcol!r}: duplicate date {_day(dates[i])} "
                    f"(also at {row_word} {rows[i - 1]})"
                )
            # A duplicate further down is still a duplicate, whatever the order.
            s = pd.Index(dates)
            if s.has_duplicates:
                k = int(np.flatnonzero(s.duplicated())[0])
                first = int(np.flatnonzero(dates == dates[k])[0])
                raise DataError(
                    f"{label(k)}, column {dcol!r}: duplicate date {_day(dates[k])} "
                    f"(first at {row_word} {rows[first]})"
                )
            raise DataError(
                f"{label(i)}, column {dcol!r}: date {_day(dates[i])} is earlier than the previous "
                f"row's {_day(dates[i - 1])} (dates must increase; pass sort=True to sort them)"
            )

    if len(dates) < min_rows:
        raise DataError(f"{where}: {len(dates)} data row(s), need at least {min_rows}")
    out = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="Date"), columns=pcols)
    out.columns.name = None
    return out


def _parse_dates(col: pd.Series, where: str, name: str, label) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col)
    else:
        text = col.astype(str).str.strip()
        empty = text.str.lower().isin(MISSING_MARKERS) | col.isna().to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataError(f"{label(i)}, column {name!r}: missing date")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(text, errors="coerce")
            bad = parsed.isna().to_numpy()
            if bad.any():  # a file may mix formats; try each cell on its own
                parsed = pd.to_datetime(text, errors="coerce", format="mixed")
                bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{label(i)}, column {name!r}: cannot parse date {text.iloc[i]!r}")
    idx = pd.DatetimeIndex(parsed)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy()


def _parse_prices(col: pd.Series, where: str, name: str, label) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        vals = col.to_numpy(dtype=np.float64)
        missing = np.isnan(vals)
        nonnum = np.zeros_like(missing)
        text = col.astype(str)
    else:
        text = col.astype(str).str.strip()
        missing = (text.str.lower().isin(MISSING_MARKERS) | col.isna()).to_numpy()
        vals = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce").to_numpy(
            dtype=np.float64
        )
        nonnum = np.isnan(vals) & ~missing
    bad = missing | nonnum | ~np.isfinite(vals) | (vals <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where_i = f"{label(i)}, column {name!r}"
        if missing[i]:
            raise DataError(f"{where_i}: missing value")
        if nonnum[i]:
            raise DataError(f"{where_i}: not a number: {text.iloc[i]!r}")
        if not np.isfinite(vals[i]):
            raise DataError(f"{where_i}: price must be finite, got {text.iloc[i]!r}")
        raise DataError(f"{where_i}: price must be > 0, got {float(vals[i])!r}")
    return vals
