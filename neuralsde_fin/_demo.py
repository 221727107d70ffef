"""`make demo`: the whole job on the bundled S&P 500, with the demo recipe.

Run as ``python -m neuralsde_fin._demo [--out DIR] [--recipe FILE] [--steps N]``. Steps:

1. calibrate a neural SDE with ``calibration/demo.toml`` (SigW1, sized for a 2-core machine);
2. sample risk-neutral scenarios from the last close and price a strip of calls and puts
   (price, standard error, 95% interval, implied vol);
3. evaluate the model against the data, GBM and GJR-GARCH-t on 64-day windows;
4. write ``out/``: ``model.pt``, ``report.md`` with PNG figures (fan chart, return histogram,
   QQ, ACF of |r|, implied-vol smile, training curve), ``metrics.json`` and ``prices.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Rows of the evaluation table echoed in the summary.
SUMMARY_ROWS = (
    "ann. vol 1d",
    "excess kurtosis 1d",
    "skew 1d",
    "KS 1d stat",
    "ACF |r| lag 1",
    "ACF |r| RMSE vs data, lags 1-20",
    "leverage lag 1",
    "64d ES 05%",
    "sig MMD^2",
)


def _fmt(v) -> str:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuralsde_fin._demo", description=__doc__)
    parser.add_argument("--out", default="out", help="output directory (default out/)")
    parser.add_argument("--recipe", default=str(ROOT / "calibration" / "demo.toml"))
    parser.add_argument("--steps", type=int, help="override the recipe's steps")
    parser.add_argument("--paths", type=int, default=10000, help="risk-neutral pricing paths")
    parser.add_argument("--eval-paths", type=int, default=1000, help="paths for the evaluation")
    parser.add_argument("--n-perm", type=int, default=200, help="MMD permutations")
    args = parser.parse_args(argv)

    try:
        return _run(args)
    except (ValueError, OSError, FloatingPointError) as exc:
        print(f"demo: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    import neuralsde_fin as nsf
    from neuralsde_fin._io import atomic_write_text

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    recipe = nsf.load_recipe(args.recipe)
    prices = recipe.prices()
    kw = recipe.calibrate_kwargs(steps=args.steps)
    name = str(prices.columns[0])
    src = os.path.relpath(recipe.file.parent / recipe.data["path"], ROOT)
    print(f"[demo] data: {src} ({name}), {len(prices)} trading days, "
          f"{prices.index[0].date()} .. {prices.index[-1].date()}, last close "
          f"{prices.iloc[-1, 0]:.2f}")
    print(f"[demo] 1/4 calibrate: method {kw['method']}, {kw.get('steps')} steps, window "
          f"{kw.get('window', 64)} days, batch {kw.get('batch')} (recipe {Path(args.recipe).name})")
    t = time.perf_counter()
    model = nsf.calibrate(prices, **kw)
    model.info.update(data=src, recipe=os.path.relpath(args.recipe, ROOT))
    model.save(out / "model.pt")
    times["calibrate"] = time.perf_counter() - t
    hist = model.info.get("history") or [float("nan")]
    print(f"[demo]     done in {times['calibrate']:.0f} s, final loss {hist[-1]:.4g} -> "
          f"{out / 'model.pt'}")

    # 2. risk-neutral scenarios from the last close, a strip of calls and puts, Greeks.
    t = time.perf_counter()
    spot = float(prices.iloc[-1, 0])
    r, q = 0.02, 0.015
    print(f"[demo] 2/4 price: {args.paths} risk-neutral paths, spot {spot:.2f}, r {r}, q {q}")
    scen = model.sample(args.paths, 126, measure="risk_neutral", r=r, q=q, spot=spot, seed=1)
    specs = [(kind, f"{m}x", days) for days in (21, 63, 126)
             for m in (0.9, 0.95, 1.0, 1.05, 1.1) for kind in ("call", "put")]
    rows = nsf.price_strip(scen, specs)
    print(nsf.format_price_table([x for x in rows if x["days"] == 63]))
    atm = {x["days"]: x["implied_vol"] for x in rows if x["kind"] == "call"
           and abs(x["moneyness"] - 1) < 1e-9}
    print("[demo]     ATM implied vol by maturity: " + ", ".join(
        f"{d}d {100 * v:.2f}%" for d, v in sorted(atm.items())) + "  (all 30 options in "
        "prices.json)")
    g = nsf.greeks(model, nsf.EuropeanCall(spot, 0.25), args.paths, r=r, q=q, spot=spot, seed=1,
                   dtype=torch.float64)
    print(f"[demo]     3-month ATM call, pathwise through the neural sampler: delta "
          f"{g.delta:.4f} (SE {g.delta_stderr:.2g}), vega {g.vega:.2f} (SE {g.vega_stderr:.2g}; "
          "dV/d(vol scale))")
    times["price"] = time.perf_counter() - t
    body = json.dumps({"spot": spot, "r": r, "q": q, "n_paths": args.paths, "options": rows,
                       "greeks_atm_3m_call": {"delta": g.delta, "delta_stderr": g.delta_stderr,
                                              "vega": g.vega, "vega_stderr": g.vega_stderr}},
                      indent=2)
    atomic_write_text(out / "prices.json", body.replace("NaN", "null"))

    # 3-4. evaluation against GBM and GJR-GARCH-t, report with figures.
    print(f"[demo] 3/4 evaluate: {args.eval_paths} model paths of 64 days vs the data's "
          "non-overlapping 64-day windows, GBM and GJR-GARCH-t fitted on the same history")
    t = time.perf_counter()
    rep, path = nsf.make_report(out, model, prices, horizon=64, lags=20, paths=args.eval_paths,
                                n_perm=args.n_perm, seed=0, fan_days=126, smile_paths=4000)
    times["evaluate + report"] = time.perf_counter() - t
    table = rep.table
    cols = list(table.columns)
    width = max(len(s) for s in SUMMARY_ROWS) + 2
    print("[demo] 4/4 stylized facts (full table in report.md):")
    print(" " * width + "".join(f"{c:>13}" for c in cols))
    for row in SUMMARY_ROWS:
        if row in table.index:
            print(f"{row:<{width}}" + "".join(f"{_fmt(table.loc[row, c]):>13}" for c in cols))
    for v in rep.verdicts():
        print(f"[demo]     verdict: {v}")
    figs = sorted(p.name for p in out.glob("*.png"))
    total = time.perf_counter() - t_start
    summary = {"wall_time_s": round(total, 1), **{f"{k}_s": round(v, 1) for k, v in
                                                 times.items()}}
    atomic_write_text(out / "timing.json", json.dumps(summary, indent=2))
    print(f"[demo] wrote {path}, metrics.json, prices.json, model.pt and {len(figs)} figures: "
          f"{', '.join(figs)}")
    print("[demo] wall time " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
          + f"; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
