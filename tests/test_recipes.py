"""Recipes: every one under calibration/ loads and maps onto nsf.calibrate; the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neuralsde_fin as nsf

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "calibration").glob("*.toml"))
NAMES = {"sp500_sigkernel", "sp500_sdegan", "sp500_nasdaq_sigkernel", "gbm_synthetic",
         "heston_synthetic", "demo"}


def test_all_recipes_present():
    assert NAMES <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path):
    recipe = nsf.load_recipe(path)
    method = recipe.calibrate_options["method"]
    assert method in nsf.LOSSES
    kw = recipe.calibrate_kwargs()
    assert kw["method"] == method
    assert recipe.description


def test_real_data_recipes_load():
    two = nsf.load_recipe(ROOT / "calibration" / "sp500_nasdaq_sigkernel.toml").prices()
    assert list(two.columns) == ["sp500", "nasdaq"] and len(two) == 5031


def test_synthetic_gbm_history():
    prices = nsf.load_recipe(ROOT / "calibration" / "gbm_synthetic.toml").prices()
    r = np.diff(np.log(prices.iloc[:, 0].to_numpy()))
    assert len(r) == 20 * 252
    vol, se = r.std(ddof=1) * np.sqrt(252), 0.2 / np.sqrt(2 * len(r))
    print(vol, se)
    assert abs(vol - 0.2) < 4 * se


def test_unknown_table_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nfile = 'x.csv'\n")
    with pytest.raises(nsf.RecipeError, match=r"bad\.toml: unknown key 'data\.file'"):
        nsf.load_recipe(bad)


def test_recipe_errors_name_the_key_and_file(tmp_path):
    cases = {
        "top = 1\n": "unknown key 'top'",
        "[calibrate]\nsteps_ = 3\n": "unknown key 'calibrate.steps_'",
        "[data.synthetic]\nmodel = 'cir'\n": "data.synthetic.model must be one of",
        "[calibrate]\nmethod = 'nope'\n": "unknown method 'nope'",
        "[calibrate]\ndtype = 'float16'\n": "calibrate.dtype must be",
        "[[[": "invalid TOML",
    }
    for i, (text, match) in enumerate(cases.items()):
        f = tmp_path / f"r{i}.toml"
        f.write_text(text)
        with pytest.raises(nsf.RecipeError, match=match) as exc:
            nsf.load_recipe(f).calibrate_kwargs()
        assert str(f) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(nsf.RecipeError, match="does not exist"):
        nsf.load_recipe(tmp_path / "missing.toml")


def test_recipe_calibrates_with_overrides_and_end_date(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('[data.synthetic]\nmodel = "gbm"\nparams = { sigma = 0.2 }\nyears = 2\n'
                 '[calibrate]\nmethod = "sigw1"\nwindow = 16\nsteps = 50\n'
                 '[calibrate.model_options]\nlatent = 2\nwidth = 8\ndepth = 1\n')
    rec = nsf.load_recipe(f)
    prices = rec.prices(end="2000-12-29")
    assert prices.index[-1] <= __import__("pandas").Timestamp("2000-12-29")
    model = rec.calibrate(end="2000-12-29", steps=2, progress=False)
    assert model.info["steps"] == 2 and model.info["last_date"] <= "2000-12-29"
