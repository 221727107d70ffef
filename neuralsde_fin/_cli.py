"""The ``neuralsde-fin`` console script: argument parsing, and calls into the library.

Subcommands: ``inspect``, ``calibrate``, ``sample``, ``price``, ``evaluate``, ``report``,
registered in ``COMMANDS`` (``_registry.registrar``). Every subcommand reports bad input as one
line on stderr and exits with code 2, never a traceback. Nothing here computes: recipes are
``nsf.load_recipe``, pricing strips ``nsf.price_strip``, smiles ``nsf.smile``, reports
``nsf.make_report``.

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
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import neuralsde_fin as nsf
from neuralsde_fin._calendar import MEASURES, TRADING_DAYS
from neuralsde_fin._distributed import is_main_process, rank_and_world, write_samples
from neuralsde_fin._registry import registrar

#: name -> ``run(args) -> int`` for each subcommand (``run.configure`` adds its arguments).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
_register = registrar(COMMANDS, "command")


class UsageError(ValueError):
    """Bad command-line input (reported as one line, exit code 2)."""


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> int`` as subcommand ``name`` whose arguments ``configure`` adds."""

    def deco(run: Callable[[argparse.Namespace], int]):
        run.configure = configure
        return _register(name)(run)

    return deco


def parse_measure(text: str) -> str:
    """``historical`` | ``risk-neutral`` (or ``risk_neutral``) -> the package's measure name."""
    m = text.strip().lower().replace("-", "_")
    if m not in MEASURES:
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the inner join's count of dropped dates
        return nsf.load_prices(list(paths) if len(paths) > 1 else paths[0], columns=columns,
                               start=start, end=end)


def load_model_file(path: str):
    """A calibrated model from a checkpoint (one-line error if it is not one)."""
    _existing(path, "model file")
    if str(path).endswith((".parquet", ".csv")):
        raise UsageError(f"{path!r} is a scenarios/data file, not a model checkpoint (.pt)")
    return nsf.load_model(path)


def _default_spot(model) -> list[float] | float:
    last = getattr(model, "info", {}).get("last_prices")
    return [float(v) for v in last] if last else 1.0


def _configure_start(p: argparse.ArgumentParser, end: bool = True) -> None:
    """Where a conditional model's scenarios start: ``--history``, ``--end``, ``--stationary``."""
    p.add_argument("--history", action="append", metavar="FILE",
                   help="conditional models: price CSV(s) (one per asset, in the model's order) "
                   "whose last closes are today's state (default: the end of the calibration "
                   "history, kept in the checkpoint)")
    if end:
        p.add_argument("--end", help="with --history: its last date used (YYYY-MM-DD)")
    p.add_argument("--history-column", action="append",
                   help="with --history: the price column(s) to load (repeatable)")
    p.add_argument("--stationary", action="store_true",
                   help="conditional models: start from the stationary law, not today's state")


def start_options(model, args: argparse.Namespace) -> dict[str, Any]:
    """``{"history": frame}`` (today's state of a conditional model) or ``{}`` (stationary)."""
    conditional = bool(getattr(model, "context", None))
    if args.history and args.stationary:
        raise UsageError("--history and --stationary exclude each other")
    if not conditional:
        if args.history or args.stationary:
            flag = "--history" if args.history else "--stationary"
            raise UsageError(f"{flag} needs a model calibrated with a context (this one always "
                             "starts from its stationary law)")
        return {}
    if args.stationary:
        return {}
    if args.history:
        history = load_history(args.history, args.history_column, None,
                               getattr(args, "end", None))
    else:
        history = model.trailing_history()
        if history is None:
            raise UsageError("the checkpoint keeps no trailing closes: pass --history FILE or "
                             "--stationary")
    model.start_state(history)  # its one-line errors before anything is sampled or written
    return {"history": history}


def _start_text(start: dict[str, Any]) -> str:
    h = start.get("history")
    if h is None:
        return ""
    last = h.index[-1] if len(h.index) else None
    return f", from the state of {last.date() if hasattr(last, 'date') else 'the history end'}"


def _positive(name: str, v: int, least: int = 1) -> int:
    if v < least:
        raise UsageError(f"{name} must be >= {least}, got {v}")
    return v


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
    print(f"{args.data}: {len(prices)} dates, {prices.index[0].date()} .. "
          f"{prices.index[-1].date()}")
    for c in prices.columns:
        r = np.diff(np.log(prices[c].to_numpy()))
        print(f"  {c}: last {prices[c].iloc[-1]:.4g}, annualised vol "
              f"{r.std(ddof=1) * TRADING_DAYS**0.5:.1%}")
    return 0


# ----------------------------------------------------------------------------------------------
# calibrate


def _configure_calibrate(p: argparse.ArgumentParser) -> None:
    methods = ", ".join(sorted(nsf.LOSSES))
    p.add_argument("data", nargs="*", help="price CSV file(s); several files = several assets "
                   "(inner-joined dates). Optional with a --recipe that names its data")
    p.add_argument("--method", help=f"calibration loss, one of: {methods} (default: the "
                   "recipe's, else sigkernel)")
    p.add_argument("--recipe", help="TOML recipe (the S&P 500's: calibration/sp500.toml); "
                   "command-line options override its [calibrate] keys")
    p.add_argument("--out", required=True, help="where to write the model checkpoint (.pt)")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--seed", type=int, help="seed of weights, noise and batches")
    p.add_argument("--window", type=int, help="window length in trading days")
    p.add_argument("--batch", type=int, help="paths per step")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--stride", type=int, help="days between window starts")
    p.add_argument("--context", type=int, help="condition on the previous N trading days "
                   "(a conditional model; default: the recipe's, else none)")
    p.add_argument("--column", action="append", help="price column(s) to load (repeatable)")
    p.add_argument("--start", help="first date of the history used (YYYY-MM-DD)")
    p.add_argument("--end", help="last date of the history used (YYYY-MM-DD)")
    p.add_argument("--device", help="train on this torch device (e.g. cuda)")
    p.add_argument("--checkpoint-dir", help="write resumable checkpoints here")
    p.add_argument("--resume", action="store_true", help="resume from --checkpoint-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("calibrate", _configure_calibrate)
def _calibrate(args: argparse.Namespace) -> int:
    """Calibrate a neural SDE to a price history and save the model."""
    recipe = nsf.load_recipe(args.recipe) if args.recipe else None
    overrides = dict(
        method=args.method, steps=args.steps, seed=args.seed, window=args.window,
        batch=args.batch, lr=args.lr, stride=args.stride, checkpoint_dir=args.checkpoint_dir,
        resume=True if args.resume else None, progress=False if args.no_progress else None,
        device=args.device, context=args.context,
    )
    if args.out.endswith((".parquet", ".csv")):
        raise UsageError(f"--out {args.out!r}: a model checkpoint is written (use .pt)")
    if args.data:
        prices = load_history(args.data, args.column, args.start, args.end)
        kw = recipe.calibrate_kwargs(**overrides) if recipe else _plain_kwargs(overrides)
    elif recipe is not None:
        prices = recipe.prices(start=args.start, end=args.end)
        kw = recipe.calibrate_kwargs(**overrides)
    else:
        raise UsageError("give a price file (DATA) or a --recipe that names its data")
    source = ", ".join(args.data) if args.data else f"recipe {recipe.file}"
    if is_main_process():
        print(f"calibrating {kw['method']} on {source}: {len(prices)} dates x "
              f"{prices.shape[1]} asset(s), {kw.get('steps', 'default')} steps", file=sys.stderr)
    model = nsf.calibrate(prices, **kw)
    model.info.update(data=source, recipe=str(recipe.file) if recipe else None)
    if is_main_process():  # under torchrun, rank 0 alone writes
        model.to("cpu").save(args.out)
        hist = model.info.get("history") or [float("nan")]
        print(f"calibrated {kw['method']}: {model.info.get('steps')} steps in "
              f"{model.info.get('wall_time_s', float('nan')):.1f} s, final loss {hist[-1]:.4g} "
              f"-> {args.out}")
    return 0


def _plain_kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    kw = {k: v for k, v in overrides.items() if v is not None}
    method = kw.setdefault("method", "sigkernel")
    if method not in nsf.LOSSES:
        raise UsageError(f"unknown method {method!r} (known: {', '.join(sorted(nsf.LOSSES))})")
    return kw


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
                   help="paths simulated at once (memory bound; default: the model's)")
    p.add_argument("--device", help="sample on this torch device (e.g. cuda)")
    p.add_argument("--out", required=True, help="FILE.parquet, FILE.csv, or a directory DIR that "
                   "receives DIR/part-<rank>.parquet (one per torchrun rank; their union equals "
                   "the single-process file for the same seed)")
    p.add_argument("--csv-format", choices=("long", "wide"), default="long",
                   help="csv layout: long = one row per (path, step) with columns path, step, "
                   "time, date and one per asset; wide = one row per date, one column per path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _configure_start(p)


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
    start = start_options(model, args)
    spot = args.spot if args.spot else (None if start else _default_spot(model))
    options = dict(measure=measure, r=args.rate, q=args.dividend, spot=spot, seed=args.seed,
                   **start)
    if args.chunk_size is not None:
        options["chunk_size"] = _positive("--chunk-size", args.chunk_size)
    if args.device:
        options["device"] = args.device
    t0 = time.perf_counter()
    if args.out.endswith(".csv"):
        model.sample(args.paths, args.horizon, **options).to_csv(args.out, args.csv_format)
        written, share = args.out, args.paths
    else:  # one .parquet file, or this rank's shard DIR/part-<rank>.parquet
        written, share = write_samples(model, args.out, args.paths, args.horizon,
                                       progress=not args.quiet, **options)
    where = f" (rank {rank} of {world}, of {args.paths} in all)" if world > 1 else ""
    print(f"{share} paths x {args.horizon} days ({measure}, r={args.rate}, q={args.dividend}, "
          f"seed={args.seed}{_start_text(start)}) in {time.perf_counter() - t0:.1f} s -> "
          f"{written}{where}")
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
    p.add_argument("--greeks", action="store_true", help="also delta and vega (pathwise, "
                   "through the model's sampler; a model source only)")
    p.add_argument("--device", help="sample on this torch device (e.g. cuda)")
    p.add_argument("--allow-historical", action="store_true",
                   help="price historical-measure scenarios (not a pricing measure)")
    p.add_argument("--var", type=float, action="append", metavar="LEVEL",
                   help="also the VaR and ES of one unit of each asset over the scenarios' "
                   "horizon at this level (e.g. 0.99; historical scenarios; repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _configure_start(p)


def _greeks_rows(model, rows, args, spot, start) -> None:
    """Add pathwise delta and vega (with SEs) to each priced row (one ``nsf.greeks`` call)."""
    import torch

    for row in rows:
        cls = nsf.EuropeanCall if row["kind"] == "call" else nsf.EuropeanPut
        # the maturity from its whole days (a float32 scenario time is not a multiple of dt)
        g = nsf.greeks(model, cls(row["strike"], row["days"] / TRADING_DAYS, asset=args.asset),
                       args.paths, r=args.rate, q=args.dividend, spot=spot, seed=args.seed,
                       dtype=torch.float64, **start)
        delta, dse = g.delta, g.delta_stderr
        if model.n_assets > 1:
            delta, dse = delta[args.asset], dse[args.asset]
        row.update(delta=float(delta), delta_stderr=float(dse), vega=float(g.vega),
                   vega_stderr=float(g.vega_stderr))


def _n_paths(path: str) -> int:
    from neuralsde_fin._scenario_files import read_times

    return read_times(path)[1]


def _print_var_es(path: str, args: argparse.Namespace) -> None:
    res = nsf.var_es(path, args.var, progress=not args.quiet, allow_risk_neutral=False)
    for k, a in enumerate(args.var):
        print(f"VaR {a:.2%} {float(res.var[k]):.6g} [{float(res.var_ci[k, 0]):.6g}, "
              f"{float(res.var_ci[k, 1]):.6g}]  ES {float(res.es[k]):.6g} "
              f"[{float(res.es_ci[k, 0]):.6g}, {float(res.es_ci[k, 1]):.6g}]  over "
              f"{res.horizon:.4g} y, {res.pnl.shape[0]} paths")


@command("price", _configure_price)
def _price(args: argparse.Namespace) -> int:
    """Price European calls and puts: price, SE, 95% CI, implied vol (and Greeks)."""
    specs = [nsf.parse_option(t, kind) for kind, t in args.options]
    if not specs and not args.var:
        raise UsageError("give at least one --call K:T, --put K:T or --var LEVEL")
    model, start = None, {}
    if args.source.endswith(".parquet") or Path(args.source).is_dir():
        if args.history or args.stationary:
            raise UsageError("--history / --stationary choose how a model samples: give a model "
                             "checkpoint, not scenarios")
        if args.greeks:
            raise UsageError("--greeks needs a model checkpoint (they differentiate the sampler)")
        if not Path(args.source).exists():
            raise UsageError(f"scenarios {args.source!r} do not exist")
        # streamed: the file is read row group by row group (bounded memory)
        scen = args.source
        head = next(nsf.Scenarios.iter_parquet(scen, steps=[0]))
        if specs and head.measure != "risk_neutral" and not args.allow_historical:
            raise UsageError(f"{args.source!r} holds historical-measure scenarios; sample with "
                             "--measure risk-neutral, or pass --allow-historical")
        if args.var:
            _print_var_es(scen, args)
        if not specs:
            return 0
    else:
        if args.var:
            raise UsageError("--var reads historical scenarios: give a .parquet file from "
                             "`sample --measure historical`")
        model = load_model_file(args.source)
        if not 0 <= args.asset < model.n_assets:
            raise UsageError(f"--asset {args.asset} out of range: the model has "
                             f"{model.n_assets} asset(s)")
        start = start_options(model, args)
        spot = args.spot if args.spot else (None if start else _default_spot(model))
        _positive("--paths", args.paths, 2)
        horizon = max(d for _, _, d in specs)
        extra = {"device": args.device} if args.device else {}
        scen = model.sample(args.paths, horizon, measure="risk_neutral", r=args.rate,
                            q=args.dividend, spot=spot, seed=args.seed, **extra, **start)
    head = scen if isinstance(scen, nsf.Scenarios) else head
    if not 0 <= args.asset < head.n_assets:
        raise UsageError(f"--asset {args.asset} out of range ({head.n_assets} asset(s))")
    rows = nsf.price_strip(scen, specs, asset=args.asset, allow_historical=args.allow_historical,
                           progress=not args.quiet and isinstance(scen, str))
    if args.greeks:
        _greeks_rows(model, rows, args, spot, start)
    spot0 = float(head.prices[0, 0, args.asset])
    n_paths = head.n_paths if isinstance(scen, nsf.Scenarios) else _n_paths(scen)
    if args.json:
        out = {"spot": spot0, "r": head.r, "q": head.q, "measure": head.measure,
               "n_paths": n_paths, "options": rows}
        print(json.dumps(out, indent=2, default=lambda v: None if v != v else v,
                         allow_nan=True).replace("NaN", "null"))
    else:
        print(f"spot {spot0:.6g}, r {head.r}, q {head.q}, {n_paths} {head.measure} paths"
              f"{_start_text(start)}")
        print(nsf.format_price_table(rows))
        if args.greeks:
            print(f"{'option':<6} {'strike':>10} {'days':>5} {'delta':>9} {'SE':>8} "
                  f"{'vega':>10} {'SE':>8}   (pathwise; vega = dV/d(vol scale))")
            for r in rows:
                print(f"{r['kind']:<6} {r['strike']:>10.4g} {r['days']:>5d} {r['delta']:>9.4f} "
                      f"{r['delta_stderr']:>8.2g} {r['vega']:>10.4g} {r['vega_stderr']:>8.2g}")
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
    p.add_argument("--forecast", metavar="DATE", help="conditional models: also score forecasts "
                   "from every --every-th trading day from DATE on (CRPS of the --forecast-"
                   "horizon return and realised vol, against GJR-GARCH-t fitted up to the day "
                   "before DATE and the stationary start)")
    p.add_argument("--forecast-end", metavar="DATE", help="last forecast date (default: the "
                   "data's last date with a full horizon after it)")
    p.add_argument("--every", type=int, default=5, help="trading days between forecast dates")
    p.add_argument("--forecast-horizon", type=int, default=21, help="forecast horizon in days")


def _forecast_options(model, args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.forecast:
        return None
    if not getattr(model, "context", None):
        raise UsageError("--forecast needs a model calibrated with a context (today's state)")
    return {"test_start": args.forecast, "test_end": args.forecast_end,
            "every": _positive("--every", args.every),
            "horizon": _positive("--forecast-horizon", args.forecast_horizon),
            "n_paths": args.paths, "seed": args.seed}


def _evaluation_inputs(args: argparse.Namespace):
    model = load_model_file(args.model)
    if args.data:
        prices = load_history(args.data, args.column, args.start, args.end)
    elif args.recipe:
        prices = nsf.load_recipe(args.recipe).prices(start=args.start, end=args.end)
    else:
        raise UsageError("give the price history: --data FILE.csv or --recipe FILE.toml")
    if prices.shape[1] != model.n_assets:
        raise UsageError(f"the data has {prices.shape[1]} asset(s), the model "
                         f"{model.n_assets}")
    horizon = _positive("--horizon", args.horizon or int(model.window), 3)
    _positive("--paths", args.paths, 2)
    if len(prices) < 2 * horizon + 1:
        raise UsageError(f"the data has {len(prices)} dates: too few for windows of "
                         f"{horizon} days")
    return model, prices, horizon


def evaluation_kwargs(horizon: int, n_perm: int, seed: int) -> dict[str, Any]:
    """``nsf.evaluate`` options for a horizon (ACF lags 1..min(20, horizon - 1))."""
    return {"horizon": horizon, "lags": min(20, horizon - 1), "n_perm": n_perm, "seed": seed}


@command("evaluate", _configure_eval_common)
def _evaluate(args: argparse.Namespace) -> int:
    """Stylized facts of the model against the data, GBM and GJR-GARCH-t, with a verdict."""
    model, prices, horizon = _evaluation_inputs(args)
    scen = model.sample(args.paths, horizon, measure="historical", seed=args.seed)
    options = _forecast_options(model, args)
    forecast = None if options is None else nsf.forecast_evaluate(model, prices, **options)
    rep = nsf.evaluate(scen, prices, forecast=forecast,
                       **evaluation_kwargs(horizon, args.n_perm, args.seed))
    print(rep.to_markdown(), end="")
    for v in rep.verdicts():
        print(f"\nVerdict: {v}.")
    return 0


def _configure_report(p: argparse.ArgumentParser) -> None:
    _configure_eval_common(p)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--format", choices=("markdown", "html"), default="markdown")
    p.add_argument("--fan-days", type=int, default=126, help="days of the fan chart")
    p.add_argument("--smile-paths", type=int, default=4000,
                   help="risk-neutral paths for the implied-vol smile")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _configure_start(p, end=False)


@command("report", _configure_report)
def _report(args: argparse.Namespace) -> int:
    """Write an evaluation report (Markdown or HTML) with PNG figures and a verdict."""
    model, prices, horizon = _evaluation_inputs(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, not a directory")
    start = start_options(model, args)
    history = start.get("history") if getattr(model, "context", None) else "auto"
    rep, path = nsf.make_report(
        out, model, prices, fmt=args.format, paths=args.paths, fan_days=args.fan_days,
        smile_paths=args.smile_paths, progress=not args.no_progress, history=history,
        forecast=_forecast_options(model, args),
        **evaluation_kwargs(horizon, args.n_perm, args.seed))
    figs = sorted(x.name for x in out.glob("*.png"))
    print(f"wrote {path} with {len(figs)} figures ({', '.join(figs)}) and metrics.json")
    for v in rep.verdicts():
        print(f"Verdict: {v}.")
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
    for name, run in COMMANDS.items():
        doc = (run.__doc__ or "").strip().replace("%", "%%").splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=doc[0] if doc else None)
        run.configure(p)
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
        # DataError, CheckpointError and RecipeError are ValueErrors.
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"neuralsde-fin {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralsde-fin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
