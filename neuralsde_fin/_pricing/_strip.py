"""A strip of calls and puts priced from scenarios, and a model's implied-volatility smile.

Options are given as ``(kind, strike, days)``: ``kind`` "call" or "put", ``strike`` an absolute
price (``105``) or moneyness relative to the spot (``"1.05x"``), ``days`` the maturity in
trading days (snapped to the scenario grid). :func:`parse_option` reads the command line's
``K:T`` form (``T`` in years, or a count with a unit: ``63d``, ``13w``, ``3m``, ``1y``).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuralsde_fin._calendar import TRADING_DAYS
from neuralsde_fin._pricing._black_scholes import implied_vol
from neuralsde_fin._pricing._engine import price
from neuralsde_fin._pricing._payoffs import EuropeanCall, EuropeanPut

__all__ = ["UNIT_DAYS", "format_price_table", "parse_maturity_days", "parse_option",
           "parse_strike", "price_strip", "smile"]

#: Trading days per unit of a maturity such as ``3m``.
UNIT_DAYS = {"d": 1, "w": 5, "m": 21, "y": TRADING_DAYS}


def parse_strike(text: str | float, spot: float) -> float:
    """``"105"`` or 105 -> 105.0; ``"1.05x"`` -> 1.05 * spot."""
    s = str(text).strip().lower()
    try:
        k = float(s[:-1]) * spot if s.endswith("x") else float(s)
    except ValueError:
        raise ValueError(
            f"bad strike {text!r}: use a price (105) or moneyness with an x suffix (1.05x)"
        ) from None
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"bad strike {text!r}: must be > 0")
    return k


def parse_maturity_days(text: str) -> int:
    """Maturity in whole trading days: ``"0.25"`` (years), ``"63d"``, ``"3m"``, ``"1y"``."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)([dwmy]?)", s)
    if not m:
        raise ValueError(
            f"bad maturity {text!r}: use years (0.25) or a count with d/w/m/y (63d, 3m, 1y)"
        )
    value, unit = float(m.group(1)), m.group(2)
    n = int(round(value * (UNIT_DAYS[unit] if unit else TRADING_DAYS)))
    if n < 1:
        raise ValueError(f"bad maturity {text!r}: shorter than one trading day")
    return n


def parse_option(text: str, kind: str) -> tuple[str, str, int]:
    """``"K:T"`` -> (kind, strike text, maturity in trading days)."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"bad --{kind} {text!r}: expected K:T, e.g. 100:3m or 1.05x:0.5")
    parse_strike(parts[0], 1.0)  # syntax check before any sampling
    return kind, parts[0], parse_maturity_days(parts[1])


def price_strip(scen: Any, specs: Sequence[tuple[str, Any, int]], *, asset: int = 0,
                allow_historical: bool = False, progress: bool = False) -> list[dict[str, Any]]:
    """Price European calls / puts ``(kind, strike, days)`` on scenarios, with implied vols.

    ``scen`` is a ``Scenarios`` or a scenario file / shard folder (read chunk by chunk, only
    the maturities' columns: ``nsf.price``).

    Returns:
        One dict per option: kind, strike, moneyness, maturity (years), days, price, stderr,
        ci95 (low, high), implied_vol (NaN outside the no-arbitrage bounds).
    """
    import os

    from neuralsde_fin._scenarios import Scenarios

    if isinstance(scen, (str, os.PathLike)):
        from neuralsde_fin._scenario_files import read_times

        times = read_times(scen)[0]
        head = next(Scenarios.iter_parquet(scen, steps=[0]))
    else:
        head, times = scen, scen.times.detach().cpu().double().numpy()
    spot = float(head.prices[0, 0, asset])
    dt_grid = float(times[1] - times[0]) if len(times) > 1 else 1.0 / TRADING_DAYS
    horizon = float(times[-1])
    qv = head.q if isinstance(head.q, float) else head.q[asset]
    opts, rows = [], []
    for kind, k_text, days in specs:
        if kind not in ("call", "put"):
            raise ValueError(f"option kind must be 'call' or 'put', got {kind!r}")
        k = parse_strike(k_text, spot)
        t = days / TRADING_DAYS
        if t > horizon + 1e-9:
            raise ValueError(f"maturity {days}d is beyond the scenarios' horizon "
                             f"({horizon * TRADING_DAYS:.0f}d)")
        t = round(t / dt_grid) * dt_grid  # snap to the scenario grid
        opts.append((EuropeanCall if kind == "call" else EuropeanPut)(k, t, asset=asset))
        rows.append({"kind": kind, "strike": k, "moneyness": k / spot, "maturity": t,
                     "days": days})
    results = price(scen, opts, allow_historical=allow_historical, progress=progress)
    for row, res in zip(rows, results):
        lo, hi = res.ci95
        row.update(price=float(res.price), stderr=float(res.stderr), ci95=(float(lo), float(hi)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = implied_vol(row["price"], spot, row["strike"], row["maturity"], head.r, qv,
                             kind=row["kind"])
        row["implied_vol"] = float(np.asarray(iv))
    return rows


def format_price_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of :func:`price_strip` rows."""
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


def smile(model: Any, *, maturities_days: Sequence[int] = (21, 63, 126),
          moneyness: Sequence[float] = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2),
          n_paths: int = 4000, seed: int = 0, r: float = 0.0, q: float = 0.0,
          **sample_options: Any) -> dict[str, Any]:
    """Implied vols of a model's risk-neutral prices on a moneyness x maturity grid.

    Out-of-the-money options are priced (puts below the spot, calls at and above it), as on a
    market smile, with spot 1 (strikes are moneyness). A price within 2 standard errors of 0
    has no reliable implied vol: NaN. ``sample_options`` go to ``model.sample`` (e.g.
    ``history=`` for a conditional model's smile from today's state).

    Returns:
        ``{"strikes", "maturities", "implied_vols", "spot", "rows"}`` for ``nsf.plot_smile``.
    """
    specs = [("put" if m < 1 else "call", f"{m}x", int(d)) for d in maturities_days
             for m in moneyness]
    scen = model.sample(n_paths, int(max(maturities_days)), measure="risk_neutral", r=r, q=q,
                        spot=1.0, seed=seed, **sample_options)
    rows = price_strip(scen, specs)
    ivs = [x["implied_vol"] if x["price"] > 2 * x["stderr"] else float("nan") for x in rows]
    return {"strikes": [x["strike"] for x in rows], "maturities": [x["maturity"] for x in rows],
            "implied_vols": ivs, "spot": 1.0, "rows": rows}
