"""Scenarios at scale: millions of paths sampled to Parquet and priced from it, in bounded memory.

Cases (each in a fresh process, so its peak resident memory is its own):

- ``sample``: ``nsf.sample_to_parquet(model, FILE, N, 252, ...)`` of a calibrated model
  (``--model``: a checkpoint, e.g. from ``calibration/sp500.toml``) under the historical and
  the risk-neutral measure: wall time, paths per second, peak RSS, file size, bytes per price.
- ``price``: ``nsf.price(FILE, [European call, Asian call])`` on the risk-neutral file and
  ``nsf.var_es(FILE, 0.99)`` on the historical one: wall time, read speed, peak RSS.
- ``memory_1m``: peak RSS of 1,000,000 x 252 to Parquet against the raw float32 size of the
  prices (1.01 GB).
- ``agreement``: the file's estimates against in-memory pricing of the first 1,000,000 paths
  (the same path ids, drawn with the same seed): the difference in units of their combined
  standard error.

Run: ``python benchmarks/bench_scale.py --model model.pt [--paths 10000000] [--dir /tmp/x]``.
Prints ``case, value`` lines. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HORIZON = 252


def _child(kind: str, args: list[str]) -> None:
    import neuralsde_fin as nsf

    t0 = time.perf_counter()
    out: dict = {}
    if kind == "sample":
        model_path, path, n, measure = args[0], args[1], int(args[2]), args[3]
        model = nsf.load_model(model_path)
        spot = (model.info.get("last_prices") or [1.0])[0]
        nsf.sample_to_parquet(model, path, n, HORIZON, measure=measure, r=0.02, q=0.015,
                              spot=spot, seed=1, chunk_size=65536)
        out["bytes"] = os.path.getsize(path)
    elif kind == "price":
        rn, hist = args[0], args[1]
        from neuralsde_fin._scenario_files import read_times

        spot = float(next(nsf.Scenarios.iter_parquet(rn, steps=[0])).prices[0, 0, 0])
        opts = [nsf.EuropeanCall(spot, 0.25), nsf.AsianCall(spot, 0.25)]
        res = nsf.price(rn, opts)
        out["prices"] = [[float(r.price), float(r.stderr)] for r in res]
        t1 = time.perf_counter()
        risk = nsf.var_es(hist, 0.99)
        out["risk_s"] = time.perf_counter() - t1
        out["var_es"] = [float(risk.var[0]), float(risk.var_stderr[0]), float(risk.es[0]),
                         float(risk.es_stderr[0])]
        out["n_paths"] = read_times(rn)[1]
    elif kind == "memory":
        model_path, path, n = args[0], args[1], int(args[2])
        model = nsf.load_model(model_path)
        nsf.sample_to_parquet(model, path, n, HORIZON, measure="historical", seed=1,
                              chunk_size=65536)
    elif kind == "inmemory":
        model_path, n = args[0], int(args[1])
        model = nsf.load_model(model_path)
        spot = (model.info.get("last_prices") or [1.0])[0]
        rn = model.sample(n, 63, measure="risk_neutral", r=0.02, q=0.015, spot=spot, seed=1)
        opts = [nsf.EuropeanCall(spot, 0.25), nsf.AsianCall(spot, 0.25)]
        out["prices"] = [[float(r.price), float(r.stderr)] for r in nsf.price(rn, opts)]
        del rn
        hist = model.sample(n, HORIZON, measure="historical", spot=spot, seed=1)
        risk = nsf.var_es(hist, 0.99)
        out["var_es"] = [float(risk.var[0]), float(risk.var_stderr[0]), float(risk.es[0]),
                         float(risk.es_stderr[0])]
    out["wall_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(kind: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=False, help="a calibrated model checkpoint")
    ap.add_argument("--paths", type=int, default=10_000_000)
    ap.add_argument("--subset", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/nsf_scale")
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1:])
        return
    if not args.model:
        raise SystemExit("give --model (e.g. the checkpoint of calibration/sp500.toml)")
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    n = args.paths
    raw = n * (HORIZON + 1) * 4
    print("case, value")
    for measure in ("historical", "risk_neutral"):
        r = _run("sample", args.model, str(d / f"{measure}.parquet"), str(n), measure)
        print(f"sample_{measure}_wall_s, {r['wall_s']:.1f}")
        print(f"sample_{measure}_paths_per_s, {n / r['wall_s']:.0f}")
        print(f"sample_{measure}_peak_rss_mb, {r['peak_rss_mb']:.0f}")
        print(f"sample_{measure}_file_gb, {r['bytes'] / 1e9:.2f}")
        print(f"sample_{measure}_bytes_per_price, {r['bytes'] / (n * (HORIZON + 1)):.3f}",
              flush=True)
    p = _run("price", str(d / "risk_neutral.parquet"), str(d / "historical.parquet"))
    print(f"price_call_asian_var_es_wall_s, {p['wall_s']:.1f}")
    print(f"price_read_gb_per_s, {raw / 1e9 / (p['wall_s'] - p['risk_s']):.2f}")
    print(f"price_peak_rss_mb, {p['peak_rss_mb']:.0f}", flush=True)
    m = _run("inmemory", args.model, str(args.subset))
    for name, a, b in (("european_call", p["prices"][0], m["prices"][0]),
                       ("asian_call", p["prices"][1], m["prices"][1]),
                       ("var99", p["var_es"][:2], m["var_es"][:2]),
                       ("es99", p["var_es"][2:], m["var_es"][2:])):
        z = (a[0] - b[0]) / (a[1] ** 2 + b[1] ** 2) ** 0.5
        print(f"agreement_{name}, file {a[0]:.6g} (SE {a[1]:.3g}) vs first {args.subset} in "
              f"memory {b[0]:.6g} (SE {b[1]:.3g}): {z:+.2f} combined SE")
    mem = _run("memory", args.model, str(d / "m1.parquet"), str(args.subset))
    raw1 = args.subset * (HORIZON + 1) * 4 / 2**20
    print(f"memory_1m_peak_rss_mb, {mem['peak_rss_mb']:.0f} (raw float32 prices {raw1:.0f} MB: "
          f"{mem['peak_rss_mb'] / raw1:.2f}x)")
    for f in d.glob("*.parquet"):
        f.unlink()


if __name__ == "__main__":
    main()
