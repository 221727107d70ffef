"""The ``neuralsde-fin`` console script.

Subcommands: ``inspect``, ``calibrate``, ``sample``, ``price``, ``evaluate``, ``report``.
Every subcommand reports bad input as one line on stderr and exits with code 2, never a
traceback. Subcommands are registered in ``COMMANDS`` by the ``command`` decorator.

Conventions of the command line (also in ``README.md``):

- Strikes ``K`` are absolute prices (``105``) or moneyness relative to the spot with an ``x``
  suffix (``1.05x`` = 1.05 * spot).
- Maturities ``T`` are years (``0.25``) or a count with a unit: ``d`` trading days, ``w`` weeks
  (5 days), ``m`` months (21 days), ``y`` years (252 days): ``3m`` = ``63d`` = ``0.25``. They are
  snapped to whole trading days, the grid of the scenarios (dt = 1/252 years).
- ``--measure`` is ``historical`` or ``risk-neutral`` (``risk_neutral`` also accepted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import neuralsde_fin as nsf
from neuralsde_fin._distributed import is_main_process, rank_and_world, write_samples
from neuralsde_fin._io import atomic_write_text

TRADING_DAYS = 252
#: Trading days per unit of a maturity such as ``3m``.
UNIT_DAYS = {"d": 1, "w": 5, "m": 21, "y": TRADING_DAYS}

#: name -> (configure parser, run) for each subcommand.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


class UsageError(ValueError):
    """Bad command-line input (reported as one line, exit code 2)."""


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> int`` as subcommand ``name`` whose arguments ``configure`` adds."""

    def deco(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (configure, run)
        return run

    return deco


# ----------------------------------------------------------------------------------------------
# Parsing helpers (shared with the demo and the notebooks' narrative)


def parse_strike(text: str, spot: float) -> float:
    """``"105"`` -> 105.0; ``"1.05x"`` -> 1.05 * spot."""
    s = text.strip().lower()
    try:
        k = float(s[:-1]) * spot if s.endswith("x") else float(s)
    except ValueError:
        raise UsageError(
            f"bad strike {text!r}: use a price (105) or moneyness with an x suffix (1.05x)"
        ) from None
    if not (math.isfinite(k) and k > 0):
        raise UsageError(f"bad strike {text!r}: must be > 0")
    return k


def parse_maturity_days(text: str) -> int:
    """Maturity in whole trading days: ``"0.25"`` (years), ``"63d"``, ``"3m"``, ``"1y"``."""
    s = text.strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([dwmy]?)", s)
    if not m:
        raise UsageError(
            f"bad maturity {text!r}: use years (0.25) or a count with d/w/m/y (63d, 3m, 1y)"
        )
    value, unit = float(m.group(1)), m.group(2)
    days = value * (UNIT_DAYS[unit] if unit else TRADING_DAYS)
    n = int(round(days))
    if n < 1:
        raise UsageError(f"bad maturity {text!r}: shorter than one trading day")
    return n


def parse_option(text: str, kind: str) -> tuple[str, str, int]:
    """``"K:T"`` -> (kind, strike text, maturity in trading days)."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise UsageError(f"bad --{kind} {text!r}: expected K:T, e.g. 100:3m or 1.05x:0.5")
    parse_strike(parts[0], 1.0)  # syntax check before any sampling
    return kind, parts[0], parse_maturity_days(parts[1])


def parse_measure(text: str) -> str:
    """``historical`` | ``risk-neutral`` (or ``risk_neutral``) -> the package's measure name."""
    m = text.strip().lower().replace("-", "_")
    if m not in ("historical", "risk_neutral"):
        raise UsageError(f"--measure must be historical or risk-neutral, got {text!r}")
    return m


def _existing(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path!r} does not exist")
    if p.is_dir():
        raise UsageError(f"{what} {path!r} is a directory, not a file")
    return p


def load_history(paths: Sequence[str], columns: Sequence[str] | None = None,
                 start: str | None = None, end: str | None = None):
    """Price history from one or more CSV files (several files: one asset each, named by stem)."""
    if not paths:
        raise UsageError("no price data given")
    for p in paths:
        _existing(p, "data file")
    if len(paths) == 1:
        prices = nsf.load_prices(paths[0], columns=columns)
    else:
        names = [Path(p).stem for p in paths]
        if len(set(names)) != len(names):
            raise UsageError(f"data files must have distinct names, got {list(paths)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prices = nsf.load_prices(dict(zip(names, paths)), columns=columns)
    if start or end:
        prices = prices.loc[start:end]
        if len(prices) < 2:
            raise UsageError(f"fewer than 2 dates between {start} and {end}")
    return prices


def load_model_file(path: str):
    """A calibrated model from a checkpoint (one-line error if it is not one)."""
    _existing(path, "model file")
    if str(path).endswith((".parquet", ".csv")):
        raise UsageError(f"{path!r} is a scenarios/data file, not a model checkpoint (.pt)")
    return nsf.load_model(path)


def _default_spot(model) -> list[float] | float:
    last = getattr(model, "info", {}).get("last_prices")
    return [float(v) for v in last] if last else 1.0


# ----------------------------------------------------------------------------------------------
# Recipes


#: Top-level tables of a recipe and the keys of its [data] table.
RECIPE_TABLES = ("description", "data", "calibrate")
DATA_KEYS = ("path", "columns", "start", "end", "synthetic")
SYNTHETIC_KEYS = ("model", "params", "years", "spot", "seed", "start")
SYNTHETIC_MODELS = {"gbm": "GBM", "heston": "Heston"}


def calibrate_keys() -> list[str]:
    """The arguments of ``nsf.calibrate`` a recipe's ``[calibrate]`` table may set."""
    import inspect

    sig = inspect.signature(nsf.calibrate)
    return [k for k in sig.parameters if k not in ("prices", "callback")]


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a calibration recipe (TOML).

    A recipe has an optional ``description``, a ``[data]`` table (``path`` of a CSV, or a list /
    table of CSVs for several assets, relative to the recipe file; optional ``columns``,
    ``start``, ``end``; or a ``[data.synthetic]`` table: ``model = "gbm" | "heston"``,
    ``params`` of ``nsf.GBM`` / ``nsf.Heston``, ``years``, ``spot``, ``seed``) and a
    ``[calibrate]`` table whose keys are exactly the arguments of ``nsf.calibrate``
    (``dtype`` as ``"float32"`` / ``"float64"``).

    Returns:
        ``{"description", "data", "calibrate", "file"}`` with the calibrate keys checked.
    """
    p = _existing(os.fspath(path), "recipe")
    raw = _load_toml(p)
    for k in raw:
        if k not in RECIPE_TABLES:
            raise UsageError(f"{p}: unknown key {k!r} (known: {', '.join(RECIPE_TABLES)})")
    data = raw.get("data", {})
    cal = raw.get("calibrate", {})
    if not isinstance(data, dict) or not isinstance(cal, dict):
        raise UsageError(f"{p}: [data] and [calibrate] must be tables")
    for k in data:
        if k not in DATA_KEYS:
            raise UsageError(f"{p}: unknown key 'data.{k}' (known: {', '.join(DATA_KEYS)})")
    syn = data.get("synthetic")
    if syn is not None:
        if not isinstance(syn, dict):
            raise UsageError(f"{p}: data.synthetic must be a table")
        for k in syn:
            if k not in SYNTHETIC_KEYS:
                raise UsageError(
                    f"{p}: unknown key 'data.synthetic.{k}' (known: {', '.join(SYNTHETIC_KEYS)})"
                )
        if syn.get("model") not in SYNTHETIC_MODELS:
            raise UsageError(
                f"{p}: data.synthetic.model must be one of {sorted(SYNTHETIC_MODELS)}, "
                f"got {syn.get('model')!r}"
            )
        if "path" in data:
            raise UsageError(f"{p}: give data.path or data.synthetic, not both")
    known = calibrate_keys()
    for k in cal:
        if k not in known:
            raise UsageError(f"{p}: unknown key 'calibrate.{k}' (nsf.calibrate takes: "
                             f"{', '.join(known)})")
    return {"description": raw.get("description", ""), "data": data, "calibrate": dict(cal),
            "file": p}


def recipe_prices(recipe: dict[str, Any]):
    """The price history a recipe names: its CSV file(s), or synthetic GBM / Heston history."""
    import pandas as pd

    data, where = recipe["data"], recipe["file"]
    syn = data.get("synthetic")
    if syn is not None:
        cls = getattr(nsf, SYNTHETIC_MODELS[syn["model"]])
        try:
            model = cls(**syn.get("params", {}))
        except TypeError as exc:
            raise UsageError(f"{where}: data.synthetic.params: {exc}") from None
        n = int(round(float(syn.get("years", 20)) * TRADING_DAYS))
        scen = model.sample(1, n, measure="historical", spot=float(syn.get("spot", 100.0)),
                            seed=int(syn.get("seed", 0)), dtype=_torch_dtype("float64"))
        p = scen.prices[0].detach().cpu().numpy()
        index = pd.bdate_range(syn.get("start", "2000-01-03"), periods=p.shape[0], name="Date")
        cols = [syn["model"]] if p.shape[1] == 1 else [f"{syn['model']}{j}" for j in
                                                       range(p.shape[1])]
        return nsf.load_prices(pd.DataFrame(p, index=index, columns=cols))
    if "path" not in data:
        raise UsageError(f"{where}: the recipe names no data (data.path or data.synthetic)")
    path = data["path"]
    base = where.parent
    if isinstance(path, str):
        files = [str(base / path)]
    elif isinstance(path, list):
        files = [str(base / x) for x in path]
    else:
        raise UsageError(f"{where}: data.path must be a string or a list of strings")
    return load_history(files, data.get("columns"), data.get("start"), data.get("end"))


def _torch_dtype(name: Any):
    import torch

    if not isinstance(name, str) or name.removeprefix("torch.") not in ("float32", "float64"):
        raise UsageError(f"dtype must be 'float32' or 'float64', got {name!r}")
    return getattr(torch, name.removeprefix("torch."))


def calibrate_kwargs(recipe: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``nsf.calibrate``: the recipe's, then non-None ``overrides``."""
    kw = dict(recipe["calibrate"]) if recipe else {}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if "dtype" in kw:
        kw["dtype"] = _torch_dtype(kw["dtype"])
    method = kw.setdefault("method", "sigkernel")
    if method not in nsf.LOSSES:
        raise UsageError(f"unknown method {method!r} (known: {', '.join(sorted(nsf.LOSSES))})")
    return kw


def run_calibration(prices, kwargs: dict[str, Any], out: str | os.PathLike,
                    source: str = "", recipe: str | None = None):
    """``nsf.calibrate(prices, **kwargs)``, stamp provenance into ``model.info``, save to out."""
    t0 = time.perf_counter()
    model = nsf.calibrate(prices, **kwargs)
    wall = time.perf_counter() - t0
    info = getattr(model, "info", {})
    info.update(
        data=source,
        recipe=recipe,
        assets=[str(c) for c in prices.columns],
        last_prices=[float(v) for v in prices.iloc[-1].to_numpy()],
        last_date=str(prices.index[-1].date()),
        first_date=str(prices.index[0].date()),
        wall_time_s=round(wall, 2),
    )
    model.info = info
    if is_main_process():  # under torchrun, rank 0 alone writes
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    return model, wall


# ----------------------------------------------------------------------------------------------
# Pricing helpers


def price_options(scen, specs: Sequence[tuple[str, str, int]], *, asset: int = 0,
                  allow_historical: bool = False) -> list[dict[str, Any]]:
    """Price European calls / puts given as (kind, strike text, days) on scenarios.

    Returns one dict per option: kind, strike, moneyness, maturity (years), days, price,
    stderr, ci95 (low, high), implied_vol (NaN when outside the no-arbitrage bounds).
    """
    import numpy as np

    spot = float(scen.prices[0, 0, asset])
    dt_grid = float(scen.times[1] - scen.times[0]) if scen.n_times > 1 else 1.0 / TRADING_DAYS
    opts, rows = [], []
    qv = scen.q if isinstance(scen.q, float) else scen.q[asset]
    for kind, k_text, days in specs:
        k = parse_strike(k_text, spot)
        t = days / TRADING_DAYS
        if t > float(scen.times[-1]) + 1e-9:
            raise UsageError(f"maturity {days}d is beyond the scenarios' horizon "
                             f"({float(scen.times[-1]) * TRADING_DAYS:.0f}d)")
        # Snap to the scenario grid (times are multiples of its step).
        t = round(t / dt_grid) * dt_grid
        cls = nsf.EuropeanCall if kind == "call" else nsf.EuropeanPut
        opts.append(cls(k, t, asset=asset))
        rows.append({"kind": kind, "strike": k, "moneyness": k / spot, "maturity": t,
                     "days": days})
    results = nsf.price(scen, opts, allow_historical=allow_historical)
    for row, res in zip(rows, results):
        lo, hi = res.ci95
        row.update(price=float(res.price), stderr=float(res.stderr), ci95=(float(lo), float(hi)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = nsf.implied_vol(row["price"], spot, row["strike"], row["maturity"], scen.r,
                                 qv, kind=row["kind"])
        row["implied_vol"] = float(np.asarray(iv))
    return rows


def format_price_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of ``price_options`` rows."""
    head = (f"{'option':<6} {'strike':>10} {'K/S':>6} {'T (y)':>7} {'days':>5} {'price':>11} "
            f"{'SE':>9} {'95% CI':>25} {'impl.vol':>8}")
    lines = [head]
    for r in rows:
        iv = r["implied_vol"]
        ivs = f"{100 * iv:7.2f}%" if math.isfinite(iv) else "     nan"
        ci = f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
        lines.append(
            f"{r['kind']:<6} {r['strike']:>10.4g} {r['moneyness']:>6.3f} {r['maturity']:>7.4f} "
            f"{r['days']:>5d} {r['price']:>11.5g} {r['stderr']:>9.3g} {ci:>25} {ivs}"
        )
    return "\n".join(lines)


def model_smile(model, *, maturities_days: Sequence[int] = (21, 63, 126),
                moneyness: Sequence[float] = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2),
                n_paths: int = 4000, seed: int = 0, r: float = 0.0, q: float = 0.0):
    """Implied vols of the model's risk-neutral prices on a moneyness x maturity grid.

    Out-of-the-money options are priced (puts below the spot, calls at and above it), as on a
    market smile. Spot 1, so strikes are moneyness. Options whose price is within 2 standard
    errors of 0 get NaN (no reliable implied vol).

    Returns:
        ``{"strikes", "maturities", "implied_vols", "spot", "rows"}`` for ``nsf.plot_smile``.
    """
    specs = []
    for d in maturities_days:
        for m in moneyness:
            specs.append(("put" if m < 1 else "call", f"{m}x", int(d)))
    scen = model.sample(n_paths, int(max(maturities_days)), measure="risk_neutral", r=r, q=q,
                        spot=1.0, seed=seed)
    rows = price_options(scen, specs)
    # A price within 2 standard errors of 0 (no path ends in the money) has no usable implied
    # vol: left out of the smile (NaN) rather than drawn at the 0 of the lower bound.
    ivs = [r_["implied_vol"] if r_["price"] > 2 * r_["stderr"] else float("nan") for r_ in rows]
    return {
        "strikes": [r_["strike"] for r_ in rows],
        "maturities": [r_["maturity"] for r_ in rows],
        "implied_vols": ivs,
        "spot": 1.0,
        "rows": rows,
    }


# ----------------------------------------------------------------------------------------------
# inspect


def _configure_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="price history: a CSV file with a Date column")
    p.add_argument("--column", action="append", help="price column(s) to load (repeatable)")
    p.add_argument("--sort", action="store_true", help="sort rows by date instead of refusing")


@command("inspect", _configure_inspect)
def _inspect(args: argparse.Namespace) -> int:
    """Validate a price file and print a summary of it."""
    import numpy as np

    _existing(args.data, "data file")
    prices = nsf.load_prices(args.data, columns=args.column, sort=args.sort)
    print(
        f"{args.data}: {len(prices)} dates, {prices.index[0].date()} .. {prices.index[-1].date()}"
    )
    for c in prices.columns:
        r = np.diff(np.log(prices[c].to_numpy()))
        print(
            f"  {c}: last {prices[c].iloc[-1]:.4g}, annualised vol {r.std(ddof=1) * 252**0.5:.1%}"
        )
    return 0


# ----------------------------------------------------------------------------------------------
# calibrate


def _configure_calibrate(p: argparse.ArgumentParser) -> None:
    methods = ", ".join(sorted(nsf.LOSSES))
    p.add_argument("data", nargs="*", help="price CSV file(s); several files = several assets "
                   "(inner-joined dates). Optional with a --recipe that names its data")
    p.add_argument("--method", help=f"calibration loss, one of: {methods} (default: the "
                   "recipe's, else sigkernel)")
    p.add_argument("--recipe", help="TOML recipe (calibration/NAME.toml); command-line options "
                   "override its [calibrate] keys")
    p.add_argument("--out", required=True, help="where to write the model checkpoint (.pt)")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--seed", type=int, help="seed of weights, noise and batches")
    p.add_argument("--window", type=int, help="window length in trading days")
    p.add_argument("--batch", type=int, help="paths per step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--stride", type=int, help="days between window starts")
    p.add_argument("--column", action="append", help="price column(s) to load (repeatable)")
    p.add_argument("--start", help="first date of the history used (YYYY-MM-DD)")
    p.add_argument("--end", help="last date of the history used (YYYY-MM-DD)")
    p.add_argument("--checkpoint-dir", help="write resumable checkpoints here")
    p.add_argument("--resume", action="store_true", help="resume from --checkpoint-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("calibrate", _configure_calibrate)
def _calibrate(args: argparse.Namespace) -> int:
    """Calibrate a neural SDE to a price history and save the model."""
    recipe = load_recipe(args.recipe) if args.recipe else None
    kw = calibrate_kwargs(
        recipe, method=args.method, steps=args.steps, seed=args.seed, window=args.window,
        batch=args.batch, lr=args.lr, stride=args.stride, checkpoint_dir=args.checkpoint_dir,
        resume=True if args.resume else None,
        progress=False if args.no_progress else None,
    )
    if args.out.endswith((".parquet", ".csv")):
        raise UsageError(f"--out {args.out!r}: a model checkpoint is written (use .pt)")
    if args.data:
        prices = load_history(args.data, args.column, args.start, args.end)
        source = ", ".join(args.data)
    elif recipe is not None:
        prices = recipe_prices(recipe)
        if args.start or args.end:
            prices = prices.loc[args.start:args.end]
        source = f"recipe {recipe['file']}"
    else:
        raise UsageError("give a price file (DATA) or a --recipe that names its data")
    if is_main_process():
        print(f"calibrating {kw['method']} on {source}: {len(prices)} dates x "
              f"{prices.shape[1]} asset(s), {kw.get('steps', 'default')} steps", file=sys.stderr)
    model, wall = run_calibration(prices, kw, args.out, source=source,
                                  recipe=str(recipe["file"]) if recipe else None)
    hist = model.info.get("history") or [float("nan")]
    if is_main_process():
        print(f"calibrated {kw['method']}: {model.info.get('steps')} steps in {wall:.1f} s, "
              f"final loss {hist[-1]:.4g} -> {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------
# sample


def _configure_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model checkpoint written by `calibrate`")
    p.add_argument("--paths", type=int, default=10000, help="number of paths (default 10000)")
    p.add_argument("--horizon", type=int, default=252, help="trading days (default 252)")
    p.add_argument("--measure", default="historical", help="historical | risk-neutral")
    p.add_argument("--rate", type=float, default=0.0, help="risk-free rate r (continuous, /yr)")
    p.add_argument("--dividend", type=float, default=0.0, help="dividend yield q (/yr)")
    p.add_argument("--spot", type=float, action="append", help="initial price(s) (default: the "
                   "last price of the calibration data)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="paths simulated at once (memory bound; default: the model's). Shards "
                   "are whole chunks: under torchrun use at most paths / ranks, and the same "
                   "value in a single-process run to reproduce the shards bit for bit")
    p.add_argument("--out", required=True, help="FILE.parquet, FILE.csv, or a directory DIR that "
                   "receives DIR/part-<rank>.parquet (one per torchrun rank; their union equals "
                   "the single-process file for the same seed)")
    p.add_argument("--csv-format", choices=("long", "wide"), default="long",
                   help="csv layout: long = one row per (path, step) with columns path, step, "
                   "time, date and one per asset (as the parquet); wide = one row per date, "
                   "one column per path (asset/path for several assets)")


def write_scenarios(scen, out: str, csv_format: str = "long") -> None:
    """Write scenarios to .parquet (``Scenarios.to_parquet``) or .csv (long or wide), atomically."""
    import pandas as pd

    path = Path(out)
    if path.suffix == ".parquet":
        path.parent.mkdir(parents=True, exist_ok=True)
        scen.to_parquet(path)
        return
    if path.suffix != ".csv":
        raise UsageError(f"--out {out!r}: use a .parquet or .csv file name")
    if csv_format == "wide":
        frame = scen.to_frame()
        if scen.n_assets == 1:
            frame.columns = [f"path{p}" for _, p in frame.columns]
        else:
            frame.columns = [f"{a}/path{p}" for a, p in frame.columns]
        text = frame.to_csv(date_format="%Y-%m-%d")
    else:
        p = scen.prices.detach().cpu().numpy()
        n_paths, n_times, _ = p.shape
        import numpy as np

        cols = {
            "path": np.repeat(np.arange(n_paths), n_times),
            "step": np.tile(np.arange(n_times), n_paths),
            "time": np.tile(scen.times.detach().cpu().numpy(), n_paths),
            "date": np.tile(scen.dates.strftime("%Y-%m-%d").to_numpy(), n_paths),
        }
        for j, name in enumerate(scen.asset_names):
            cols[name] = p[:, :, j].reshape(-1)
        text = pd.DataFrame(cols).to_csv(index=False)
    atomic_write_text(path, text)


@command("sample", _configure_sample)
def _sample(args: argparse.Namespace) -> int:
    """Sample price scenarios from a calibrated model to parquet or csv."""
    measure = parse_measure(args.measure)
    rank, world = rank_and_world()
    if args.out.endswith(".csv") and world > 1:
        raise UsageError(f"--out {args.out!r}: under torchrun ({world} ranks) give a directory")
    out = Path(args.out)
    if out.suffix not in ("", ".parquet", ".csv") and not out.is_dir():
        raise UsageError(f"--out {args.out!r}: use a .parquet or .csv file name, or a directory")
    if out.suffix == "" and out.is_file():
        raise UsageError(f"--out {args.out!r} is a file: use .parquet, .csv or a directory")
    model = load_model_file(args.model)
    spot = args.spot if args.spot else _default_spot(model)
    options = dict(measure=measure, r=args.rate, q=args.dividend, spot=spot, seed=args.seed)
    if args.chunk_size is not None:
        if args.chunk_size < 1:
            raise UsageError(f"--chunk-size must be a positive integer, got {args.chunk_size}")
        options["chunk_size"] = args.chunk_size
    t0 = time.perf_counter()
    if args.out.endswith(".csv"):
        write_scenarios(model.sample(args.paths, args.horizon, **options), args.out,
                        args.csv_format)
        written = args.out
    else:  # one .parquet file, or this rank's shard DIR/part-<rank>.parquet
        written = write_samples(model, args.out, args.paths, args.horizon, **options)
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(f"{args.paths} paths x {args.horizon} days ({measure}, r={args.rate}, "
          f"q={args.dividend}, seed={args.seed}) in {time.perf_counter() - t0:.1f} s "
          f"-> {written}{where}")
    return 0


# ----------------------------------------------------------------------------------------------
# price


def _configure_price(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="model checkpoint (.pt; risk-neutral paths are sampled) or "
                   "scenarios written by `sample` (.parquet)")
    p.add_argument("--call", action="append", dest="options", default=[], metavar="K:T",
                   type=lambda s: ("call", s),
                   help="European call: K a price (105) or moneyness (1.05x); T in years (0.25) "
                   "or 63d / 13w / 3m / 1y (repeatable)")
    p.add_argument("--put", action="append", dest="options", metavar="K:T",
                   type=lambda s: ("put", s), help="European put (repeatable)")
    p.add_argument("--paths", type=int, default=20000, help="paths sampled from a model")
    p.add_argument("--rate", type=float, default=0.0, help="r when sampling a model")
    p.add_argument("--dividend", type=float, default=0.0, help="q when sampling a model")
    p.add_argument("--spot", type=float, help="spot when sampling a model (default: the last "
                   "price of the calibration data)")
    p.add_argument("--seed", type=int, default=0, help="noise seed when sampling a model")
    p.add_argument("--asset", type=int, default=0, help="asset index (default 0)")
    p.add_argument("--allow-historical", action="store_true",
                   help="price historical-measure scenarios (not a pricing measure)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("price", _configure_price)
def _price(args: argparse.Namespace) -> int:
    """Price European calls and puts: price, SE, 95% CI and implied vol."""
    specs = [parse_option(t, kind) for kind, t in args.options]
    if not specs:
        raise UsageError("give at least one --call K:T or --put K:T")
    if args.source.endswith(".parquet"):
        _existing(args.source, "scenarios file")
        scen = nsf.Scenarios.from_parquet(args.source)
        if scen.measure != "risk_neutral" and not args.allow_historical:
            raise UsageError(f"{args.source!r} holds historical-measure scenarios; sample with "
                             "--measure risk-neutral, or pass --allow-historical")
    else:
        model = load_model_file(args.source)
        if not 0 <= args.asset < model.n_assets:
            raise UsageError(f"--asset {args.asset} out of range: the model has "
                             f"{model.n_assets} asset(s)")
        spot = args.spot if args.spot else _default_spot(model)
        if args.paths < 2:
            raise UsageError(f"--paths must be >= 2, got {args.paths}")
        horizon = max(d for _, _, d in specs)
        scen = model.sample(args.paths, horizon, measure="risk_neutral", r=args.rate,
                            q=args.dividend, spot=spot, seed=args.seed)
    if not 0 <= args.asset < scen.n_assets:
        raise UsageError(f"--asset {args.asset} out of range ({scen.n_assets} asset(s))")
    rows = price_options(scen, specs, asset=args.asset, allow_historical=args.allow_historical)
    spot0 = float(scen.prices[0, 0, args.asset])
    if args.json:
        out = {"spot": spot0, "r": scen.r, "q": scen.q, "measure": scen.measure,
               "n_paths": scen.n_paths, "options": rows}
        print(json.dumps(out, indent=2, default=lambda v: None if v != v else v,
                         allow_nan=True).replace("NaN", "null"))
    else:
        print(f"spot {spot0:.6g}, r {scen.r}, q {scen.q}, {scen.n_paths} {scen.measure} paths")
        print(format_price_table(rows))
    return 0


# ----------------------------------------------------------------------------------------------
# evaluate and report


def _configure_eval_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model checkpoint written by `calibrate`")
    p.add_argument("--data", action="append",
                   help="price CSV (repeat for several assets, in the model's order)")
    p.add_argument("--recipe", help="take the price history from this recipe's [data] instead "
                   "(e.g. the synthetic GBM / Heston histories)")
    p.add_argument("--column", action="append", help="price column(s) to load (repeatable)")
    p.add_argument("--start", help="first date used (YYYY-MM-DD)")
    p.add_argument("--end", help="last date used (YYYY-MM-DD)")
    p.add_argument("--horizon", type=int, help="window length in days (default: the model's "
                   "calibration window)")
    p.add_argument("--paths", type=int, default=1000, help="generated paths (default 1000)")
    p.add_argument("--n-perm", type=int, default=200, help="MMD permutations (0: skip)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and tests")


def _evaluation_inputs(args: argparse.Namespace):
    model = load_model_file(args.model)
    if args.data:
        prices = load_history(args.data, args.column, args.start, args.end)
    elif args.recipe:
        prices = recipe_prices(load_recipe(args.recipe)).loc[args.start:args.end]
    else:
        raise UsageError("give the price history: --data FILE.csv or --recipe FILE.toml")
    if prices.shape[1] != model.n_assets:
        raise UsageError(f"the data has {prices.shape[1]} asset(s), the model "
                         f"{model.n_assets}")
    horizon = args.horizon or int(model.window)
    if horizon < 3:
        raise UsageError(f"--horizon must be >= 3, got {horizon}")
    if args.paths < 2:
        raise UsageError(f"--paths must be >= 2, got {args.paths}")
    if len(prices) < 2 * horizon + 1:
        raise UsageError(f"the data has {len(prices)} dates: too few for windows of "
                         f"{horizon} days")
    return model, prices, horizon


def evaluation_kwargs(horizon: int, n_perm: int, seed: int) -> dict[str, Any]:
    """``nsf.evaluate`` options for a horizon (ACF lags 1..min(20, horizon - 1))."""
    return {"horizon": horizon, "lags": min(20, horizon - 1), "n_perm": n_perm, "seed": seed}


def with_baselines(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` (``nsf.evaluate`` / ``nsf.make_report``) against GBM and GJR-GARCH-t.

    GJR-GARCH-t paths start from its stationary law; when the fit has no stationary law
    (persistence >= 1, e.g. on a Heston history), they start from the end of the history
    instead, and a note on stderr says so.
    """
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        if "no stationary law" not in str(exc):
            raise
    print("note: the GJR-GARCH-t fit has persistence >= 1 (no stationary law); its paths start "
          "from the end of the history (start='last')", file=sys.stderr)
    gjr = nsf.GJRGarchBaseline(start="last")
    return fn(*args, baselines=("gbm", gjr), **kwargs)


@command("evaluate", _configure_eval_common)
def _evaluate(args: argparse.Namespace) -> int:
    """Stylized facts of the model against the data, GBM and GJR-GARCH-t."""
    model, prices, horizon = _evaluation_inputs(args)
    scen = model.sample(args.paths, horizon, measure="historical", seed=args.seed)
    rep = with_baselines(nsf.evaluate, scen, prices,
                         **evaluation_kwargs(horizon, args.n_perm, args.seed))
    print(rep.to_markdown(), end="")
    return 0


def _configure_report(p: argparse.ArgumentParser) -> None:
    _configure_eval_common(p)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--format", choices=("markdown", "html"), default="markdown")
    p.add_argument("--fan-days", type=int, default=126, help="days of the fan chart")
    p.add_argument("--smile-paths", type=int, default=4000,
                   help="risk-neutral paths for the implied-vol smile")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_report(model, prices, out: str | os.PathLike, *, horizon: int, paths: int,
                 n_perm: int, seed: int, fmt: str = "markdown", fan_days: int = 126,
                 smile_paths: int = 4000, progress: bool = True, text: str | None = None):
    """Evaluate ``model`` on ``prices`` and write the report directory ``out``.

    Figures: fan chart continuing the history, return histogram, QQ, ACF of |r|, the model's
    implied-vol smile by maturity, and the training curve when the checkpoint has its losses.

    Returns:
        ``(EvaluationReport, report path, smile dict)``.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=4, desc="report", disable=not progress)
    try:
        bar.set_postfix_str("sampling")
        scen = model.sample(paths, horizon, measure="historical", seed=seed)
        bar.update()
        spot = [float(v) for v in prices.iloc[-1].to_numpy()]
        fan = model.sample(min(paths, 2000), fan_days, measure="historical", spot=spot,
                           seed=seed + 1)
        bar.update()
        bar.set_postfix_str("smile")
        smile = model_smile(model, n_paths=smile_paths, seed=seed,
                            maturities_days=tuple(d for d in (21, 63, 126) if d <= max(
                                fan_days, 21)))
        bar.update()
        bar.set_postfix_str("evaluate + figures")
        info = getattr(model, "info", {})
        losses = info.get("history") or None
        intro = text or (
            f"Model: {info.get('method', '?')} calibration, {info.get('steps', '?')} steps, "
            f"window {model.window} days, on {info.get('data', '?')} "
            f"({info.get('first_date', '?')} .. {info.get('last_date', '?')}). "
            f"Evaluated on {len(prices)} dates with windows of {horizon} days; "
            f"{paths} generated paths."
        )
        rep, path = with_baselines(
            nsf.make_report, out, scen, prices, scenarios=fan, losses=losses,
            smile={k: smile[k] for k in ("strikes", "maturities", "implied_vols", "spot")},
            fmt=fmt, text=intro, **evaluation_kwargs(horizon, n_perm, seed),
        )
        bar.update()
    finally:
        bar.close()
        import matplotlib.pyplot as plt

        plt.close("all")
    return rep, path, smile


@command("report", _configure_report)
def _report(args: argparse.Namespace) -> int:
    """Write an evaluation report (Markdown or HTML) with PNG figures."""
    model, prices, horizon = _evaluation_inputs(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, not a directory")
    _rep, path, _ = build_report(model, prices, out, horizon=horizon, paths=args.paths,
                                 n_perm=args.n_perm, seed=args.seed, fmt=args.format,
                                 fan_days=args.fan_days, smile_paths=args.smile_paths,
                                 progress=not args.no_progress)
    figs = sorted(x.name for x in out.glob("*.png"))
    print(f"wrote {path} with {len(figs)} figures ({', '.join(figs)}) and metrics.json")
    return 0


# ----------------------------------------------------------------------------------------------
# Entry point


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit code 2)."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message.strip().splitlines()[0]}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = _Parser(
        prog="neuralsde-fin",
        description="Calibrate neural SDEs to price history, sample scenarios, price options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {nsf.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (configure, run) in COMMANDS.items():
        doc = (run.__doc__ or "").strip().replace("%", "%%").splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=doc[0] if doc else None)
        configure(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, code 2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, OSError, FloatingPointError) as exc:
        # DataError and CheckpointError are ValueErrors.
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"neuralsde-fin {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralsde-fin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
