"""Calibration recipes: the TOML schema, its validation, and the runs it describes.

A recipe (``calibration/NAME.toml``) is one calibration, data and settings::

    description = "one line"

    [data]                       # a CSV file, relative to the recipe file ...
    path = "../data/sp500.csv"   # ... or a list of files, one asset each (inner-joined dates)
    columns = ["Adj Close"]      # optional; also start = "YYYY-MM-DD", end = "YYYY-MM-DD"

    # ... or a synthetic history sampled under the historical measure:
    # [data.synthetic]
    # model = "gbm" | "heston"   # nsf.GBM(**params) / nsf.Heston(**params)
    # params = { sigma = 0.2, mu = 0.05 }
    # years = 20                 # 252 closes a year; spot = 100.0; seed = 1; start = date

    [calibrate]                  # keys are exactly nsf.calibrate's arguments
    method = "sigw1"
    [calibrate.loss_options]     # passed to the loss
    [calibrate.model_options]    # passed to nsf.MarketModel

An unknown key anywhere is refused with one line naming the key and the file.

Example:
    >>> rec = nsf.load_recipe("calibration/sp500.toml")           # doctest: +SKIP
    >>> model = rec.calibrate(steps=100)                          # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuralsde_fin._errors import RecipeError

__all__ = ["Recipe", "load_recipe"]

#: Top-level tables of a recipe and the keys of its [data] table.
RECIPE_TABLES = ("description", "data", "calibrate")
DATA_KEYS = ("path", "columns", "start", "end", "synthetic")
SYNTHETIC_KEYS = ("model", "params", "years", "spot", "seed", "start")
SYNTHETIC_MODELS = ("gbm", "heston")


def calibrate_keys() -> list[str]:
    """The arguments of ``nsf.calibrate`` a recipe's ``[calibrate]`` table may set."""
    from neuralsde_fin._calibrate import calibrate

    return [k for k in inspect.signature(calibrate).parameters if k not in ("prices", "callback")]


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from None


def _torch_dtype(name: Any, where: Path):
    import torch

    if not isinstance(name, str) or name.removeprefix("torch.") not in ("float32", "float64"):
        raise RecipeError(f"{where}: calibrate.dtype must be 'float32' or 'float64', got {name!r}")
    return getattr(torch, name.removeprefix("torch."))


@dataclass
class Recipe:
    """A validated calibration recipe.

    Attributes:
        file: the recipe file.
        description: its one-line description.
        data: the ``[data]`` table (paths relative to the file).
        calibrate: the ``[calibrate]`` table (``nsf.calibrate``'s arguments, as written).
    """

    file: Path
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    calibrate_options: dict[str, Any] = field(default_factory=dict)

    def prices(self, *, start: str | None = None, end: str | None = None):
        """The price history the recipe names (its CSV files or synthetic history), optionally
        cut to ``start`` .. ``end`` (after the recipe's own range)."""
        import warnings

        from neuralsde_fin._models._synthetic import synthetic_history
        from neuralsde_fin.data import load_prices

        syn = self.data.get("synthetic")
        if syn is not None:
            try:
                prices = synthetic_history(
                    syn["model"], syn.get("params", {}), years=float(syn.get("years", 20)),
                    spot=float(syn.get("spot", 100.0)), seed=int(syn.get("seed", 0)),
                    start=syn.get("start", "2000-01-03"),
                )
            except (TypeError, ValueError) as exc:
                raise RecipeError(f"{self.file}: data.synthetic: {exc}") from None
        else:
            path = self.data.get("path")
            if path is None:
                raise RecipeError(f"{self.file}: the recipe names no data "
                                  "(data.path or data.synthetic)")
            files = [path] if isinstance(path, str) else path
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise RecipeError(f"{self.file}: data.path must be a string or a list of strings")
            paths = [str(self.file.parent / f) for f in files]
            for f in paths:
                if not Path(f).is_file():
                    raise RecipeError(f"{self.file}: data file {f!r} does not exist")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the inner join's count of dropped dates
                prices = load_prices(paths if len(paths) > 1 else paths[0],
                                     self.data.get("columns"), start=self.data.get("start"),
                                     end=self.data.get("end"))
        if start or end:
            prices = prices.loc[start:end]
            if len(prices) < 2:
                raise RecipeError(f"{self.file}: fewer than 2 dates between {start} and {end}")
        return prices

    def calibrate_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of ``nsf.calibrate``: the recipe's, then non-None ``overrides``."""
        from neuralsde_fin._calibrate import LOSSES

        kw = dict(self.calibrate_options)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if "dtype" in kw and not hasattr(kw["dtype"], "is_floating_point"):
            kw["dtype"] = _torch_dtype(kw["dtype"], self.file)
        method = kw.setdefault("method", "sigkernel")
        if method not in LOSSES:
            raise RecipeError(f"{self.file}: unknown method {method!r} "
                              f"(known: {', '.join(sorted(LOSSES))})")
        return kw

    def calibrate(self, *, start: str | None = None, end: str | None = None,
                  **overrides: Any):
        """``nsf.calibrate`` on the recipe's data with its settings (``overrides`` win)."""
        from neuralsde_fin._calibrate import calibrate

        return calibrate(self.prices(start=start, end=end), **self.calibrate_kwargs(**overrides))


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a calibration recipe (TOML; schema in this module's docstring).

    Raises:
        RecipeError: a missing file, invalid TOML, or an unknown key (named, with the file).
    """
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist")
    raw = _load_toml(p)
    for k in raw:
        if k not in RECIPE_TABLES:
            raise RecipeError(f"{p}: unknown key {k!r} (known: {', '.join(RECIPE_TABLES)})")
    data = raw.get("data", {})
    cal = raw.get("calibrate", {})
    if not isinstance(data, dict) or not isinstance(cal, dict):
        raise RecipeError(f"{p}: [data] and [calibrate] must be tables")
    for k in data:
        if k not in DATA_KEYS:
            raise RecipeError(f"{p}: unknown key 'data.{k}' (known: {', '.join(DATA_KEYS)})")
    syn = data.get("synthetic")
    if syn is not None:
        if not isinstance(syn, dict):
            raise RecipeError(f"{p}: data.synthetic must be a table")
        for k in syn:
            if k not in SYNTHETIC_KEYS:
                raise RecipeError(f"{p}: unknown key 'data.synthetic.{k}' "
                                  f"(known: {', '.join(SYNTHETIC_KEYS)})")
        if syn.get("model") not in SYNTHETIC_MODELS:
            raise RecipeError(f"{p}: data.synthetic.model must be one of "
                              f"{list(SYNTHETIC_MODELS)}, got {syn.get('model')!r}")
        if "path" in data:
            raise RecipeError(f"{p}: give data.path or data.synthetic, not both")
    known = calibrate_keys()
    for k in cal:
        if k not in known:
            raise RecipeError(f"{p}: unknown key 'calibrate.{k}' (nsf.calibrate takes: "
                              f"{', '.join(known)})")
    return Recipe(file=p, description=str(raw.get("description", "")), data=data,
                  calibrate_options=dict(cal))
