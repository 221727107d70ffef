"""The pricing strip and the smile: option specs, implied vols on the same samples."""

from __future__ import annotations

import math

import pytest

import neuralsde_fin as nsf
from neuralsde_fin._pricing._strip import parse_maturity_days, parse_strike


def test_specs_parse():
    assert parse_maturity_days("3m") == 63 and parse_maturity_days("0.25") == 63
    assert parse_strike("1.05x", 200.0) == pytest.approx(210.0)
    assert nsf.parse_option("1.1x:13w", "put") == ("put", "1.1x", 65)
    for bad in ("1x", "x:3m", "1.0x:3q"):
        with pytest.raises(ValueError):
            nsf.parse_option(bad, "call")


def test_strip_on_gbm_recovers_the_volatility():
    scen = nsf.GBM(0.2).sample(40_000, 63, r=0.01, spot=100.0, seed=3, antithetic=True)
    rows = nsf.price_strip(scen, [("call", "1.0x", 63), ("put", "0.9x", 63)])
    for row in rows:
        assert abs(row["implied_vol"] - 0.2) < 0.005
        assert row["ci95"][0] < row["price"] < row["ci95"][1]
    assert "impl.vol" in nsf.format_price_table(rows)
    sm = nsf.smile(nsf.GBM(0.2), maturities_days=(63,), moneyness=(0.9, 1.0, 1.1), n_paths=20_000)
    assert all(abs(v - 0.2) < 0.01 for v in sm["implied_vols"] if math.isfinite(v))
