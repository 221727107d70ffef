"""The Scenarios container: shapes, metadata, dates, frames and the parquet round trip."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import neuralsde_fin as nsf


def _scen(**kw):
    return nsf.GBM(0.2).sample(
        6, 5, r=0.02, q=0.01, spot=50.0, seed=7, valuation_date="2025-01-03", **kw
    )


def test_contents_and_metadata():
    scen = _scen(antithetic=True)
    assert scen.prices.shape == (6, 6, 1) and scen.times.shape == (6,)
    assert (scen.prices[:, 0] == 50.0).all()
    assert scen.measure == "risk_neutral" and scen.r == 0.02 and scen.q == 0.01
    assert scen.seed == 7 and scen.model == "GBM(sigma=0.2, mu=0.0)" and scen.antithetic
    # business days after Friday 2025-01-03
    assert list(scen.dates.strftime("%Y-%m-%d")) == [
        "2025-01-03", "2025-01-06", "2025-01-07", "2025-01-08", "2025-01-09", "2025-01-10",
    ]


def test_to_frame_wide_per_asset():
    scen = nsf.GBM([0.2, 0.3]).sample(3, 4, spot=[1.0, 2.0], seed=1, valuation_date="2025-01-06")
    one = scen.to_frame(asset="asset1")
    assert one.shape == (5, 3) and isinstance(one.index, pd.DatetimeIndex)
    assert one.iloc[0].tolist() == [2.0, 2.0, 2.0]
    both = scen.to_frame()
    assert both.shape == (5, 6)
    assert both[("asset0", 2)].tolist() == scen.prices[2, :, 0].tolist()


def test_parquet_round_trip_with_metadata(tmp_path):
    scen = _scen(antithetic=True)
    path = tmp_path / "scen.parquet"
    scen.to_parquet(path)
    assert os.listdir(tmp_path) == ["scen.parquet"]  # no temporary file left behind
    meta = pq.read_schema(path).metadata[b"neuralsde_fin"].decode()
    for needle in ('"measure": "risk_neutral"', '"seed": 7', '"model": "GBM(sigma=0.2, mu=0.0)"'):
        assert needle in meta
    back = nsf.Scenarios.from_parquet(path)
    assert torch.equal(back.prices, scen.prices) and torch.equal(back.times, scen.times)
    for attr in ("measure", "r", "q", "seed", "model", "valuation_date", "antithetic"):
        assert getattr(back, attr) == getattr(scen, attr), attr
    assert (back.dates == scen.dates).all()


def test_parquet_directory_of_parts(tmp_path):
    scen = _scen()
    parts = tmp_path / "parts"
    parts.mkdir()
    for rank, sl in enumerate((slice(0, 4), slice(4, 6))):
        sub = nsf.Scenarios(scen.times, scen.prices[sl], r=scen.r, q=scen.q, seed=scen.seed,
                            model=scen.model, valuation_date=scen.valuation_date)
        sub.to_parquet(parts / f"part-{rank}.parquet")
    # path ids are global in a real multi-rank write: emulate by rewriting rank 1's ids
    import pyarrow as pa
    import pyarrow.parquet as pq_mod

    t = pq_mod.read_table(parts / "part-1.parquet")
    t = t.set_column(0, "path", pa.array(t.column("path").to_numpy() + 4))
    pq_mod.write_table(t, parts / "part-1.parquet")
    back = nsf.Scenarios.from_parquet(parts)
    assert torch.equal(back.prices, scen.prices)


def test_parquet_write_is_atomic(tmp_path, monkeypatch):
    import pyarrow.parquet as pq_mod

    scen = _scen()
    path = tmp_path / "scen.parquet"
    scen.to_parquet(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq_mod.ParquetWriter, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        _scen(antithetic=True).to_parquet(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["scen.parquet"]


def test_direct_construction_and_bad_arguments():
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    prices = torch.ones(3, 5, dtype=torch.float64)
    scen = nsf.Scenarios(times, prices, measure="historical")
    assert scen.prices.shape == (3, 5, 1)
    cases = [
        (lambda: nsf.Scenarios(times, prices, measure="physical"), "measure must be"),
        (lambda: nsf.Scenarios(times[:4], prices), "times must have shape"),
        (lambda: nsf.Scenarios(times + 0.1, prices), "times must start at 0"),
        (lambda: nsf.Scenarios(times * torch.tensor([1.0, 1, -1, 1, 1]), prices), "increasing"),
        (lambda: nsf.Scenarios(times, torch.ones(5)), "prices must have shape"),
        (lambda: nsf.Scenarios(times, prices * float("nan")), "prices must be finite"),
        (lambda: nsf.Scenarios(times, prices, antithetic=True), "even n_paths"),
        (lambda: nsf.Scenarios(times, prices, q=[0.0, 0.1]), "q must be"),
        (lambda: nsf.Scenarios.from_parquet("/nonexistent/x.parquet"), "does not exist"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as exc:
            fn()
        assert "\n" not in str(exc.value)
