"""`make demo`: the main job on the bundled S&P 500, as far as it exists.

Run as ``python -m neuralsde_fin._demo``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import neuralsde_fin as nsf

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    path = ROOT / "data" / "sp500.csv"
    prices = nsf.load_prices(path)
    paths, ts = nsf.data.windows(prices, window=64, stride=1)
    r = np.diff(np.log(prices.iloc[:, 0].to_numpy()))
    print(
        f"loaded {path.name}: {len(prices)} trading days, {prices.index[0].date()} .. "
        f"{prices.index[-1].date()}"
    )
    print(f"daily log returns: mean {r.mean():.2e}, vol {r.std(ddof=1) * np.sqrt(252):.1%} a year")
    print(f"{paths.shape[0]} windows of {paths.shape[1] - 1} days, shape {tuple(paths.shape)}")
    print("calibrate -> sample -> price -> report: not available yet in this build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
