"""The calibration recipes under calibration/: every one loads and maps onto nsf.calibrate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neuralsde_fin as nsf
from neuralsde_fin._cli import UsageError, calibrate_kwargs, load_recipe, recipe_prices

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "calibration").glob("*.toml"))
NAMES = {"sp500_sigkernel", "sp500_sdegan", "sp500_nasdaq_sigkernel", "gbm_synthetic",
         "heston_synthetic", "demo"}


def test_all_recipes_present():
    assert NAMES <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    method = recipe["calibrate"]["method"]
    if method not in nsf.LOSSES:
        with pytest.raises(UsageError, match="unknown method"):
            calibrate_kwargs(recipe)
        pytest.skip(f"method {method!r} is not registered in this build (nsf.LOSSES)")
    kw = calibrate_kwargs(recipe)
    assert kw["method"] == method


def test_real_data_recipes_load():
    two = recipe_prices(load_recipe(ROOT / "calibration" / "sp500_nasdaq_sigkernel.toml"))
    assert list(two.columns) == ["sp500", "nasdaq"] and len(two) == 5031


def test_synthetic_gbm_history():
    prices = recipe_prices(load_recipe(ROOT / "calibration" / "gbm_synthetic.toml"))
    r = np.diff(np.log(prices.iloc[:, 0].to_numpy()))
    assert len(r) == 20 * 252
    vol, se = r.std(ddof=1) * np.sqrt(252), 0.2 / np.sqrt(2 * len(r))
    print(vol, se)
    assert abs(vol - 0.2) < 4 * se


def test_unknown_table_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nfile = 'x.csv'\n")
    with pytest.raises(UsageError, match=r"bad\.toml: unknown key 'data\.file'"):
        load_recipe(bad)
