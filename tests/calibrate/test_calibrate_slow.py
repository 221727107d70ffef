"""Convergence runs (marked slow): synthetic GBM and the bundled S&P 500 recipe."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SIGMA = 0.2


def _stylized(prices: torch.Tensor) -> tuple[float, float, float]:
    """Pooled lag-1 ACF of |r|, excess kurtosis and std of daily log returns (all paths)."""
    r = torch.log(prices[:, 1:, 0] / prices[:, :-1, 0]).double()
    a = r.abs()
    m = a.mean()
    acf1 = (((a[:, 1:] - m) * (a[:, :-1] - m)).sum() / ((a - m) ** 2).sum()).item()
    z = r - r.mean()
    kurt = ((z**4).mean() / (z**2).mean() ** 2 - 3).item()
    return acf1, kurt, r.std().item()


def _recipe(name: str) -> dict:
    with open(ROOT / "calibration" / name, "rb") as fh:
        return tomllib.load(fh)


def _run_recipe(rec: dict, prices) -> nsf.MarketModel:
    return nsf.calibrate(
        prices, method=rec["method"], window=rec["window"], steps=rec["steps"],
        batch=rec["batch"], lr=rec["lr"], seed=rec["seed"], progress=False,
        loss_options=rec.get("loss"), model_options=rec.get("model"),
    )


@pytest.mark.slow
def test_gbm_calibration_daily_vol_and_atm_implied_vol():
    rng = np.random.default_rng(0)
    n = 20 * 252
    lr = -0.5 * SIGMA**2 / 252 + SIGMA / math.sqrt(252) * rng.standard_normal(n)
    prices = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(lr)]))
    rec = _recipe("sp500_sigw1.toml")
    model = _run_recipe(rec, prices)
    torch.set_num_threads(1)
    hist = model.sample(4000, 64, measure="historical", seed=1)
    _, _, vol = _stylized(hist.prices)
    target = SIGMA / math.sqrt(252)
    print(f"sampled daily vol {vol:.5f}, target {target:.5f}, ratio {vol / target:.4f}")
    assert abs(vol / target - 1) < 0.05
    T = 0.25
    scen = model.sample(20000, 63, measure="risk_neutral", r=0.0, spot=100.0, seed=2)
    res = nsf.price(scen, nsf.EuropeanCall(100.0, T), r=0.0)
    iv = float(nsf.implied_vol(res.price, 100.0, 100.0, T, 0.0, 0.0))
    print(f"3-month ATM implied vol {iv:.4f} (price {res.price:.4f} +- {res.stderr:.4f})")
    assert abs(iv - SIGMA) < 0.01


@pytest.mark.slow
def test_sp500_recipe_stylized_facts():
    rec = _recipe("sp500_sigw1.toml")
    prices = nsf.load_prices(ROOT / rec["data"])
    t0 = time.perf_counter()
    model = _run_recipe(rec, prices)
    wall = time.perf_counter() - t0
    torch.set_num_threads(1)
    scen = model.sample(2000, 252, measure="historical", seed=1)
    acf1, kurt, vol = _stylized(scen.prices)
    data_r = np.diff(np.log(prices.to_numpy()[:, 0]))
    print(f"S&P 500 recipe: wall {wall:.0f} s; pooled ACF(|r|, 1) {acf1:.3f}; excess kurtosis "
          f"{kurt:.2f}; daily vol {vol:.5f} (data {data_r.std():.5f})")
    assert acf1 > 0.1
    assert kurt > 1.0
