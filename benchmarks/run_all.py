"""Run every benchmarks/bench_*.py in its own process and print their tables.

Each benchmark prints one line per case: ``case, ours_s, peer_s, ratio`` (medians over repeats,
ours and the peer measured side by side in the same process). Nothing here asserts on time.
Select some with ``python benchmarks/run_all.py brownian solvers``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("bench_*.py"))
    if argv:
        files = [f for f in files if any(a in f.stem for a in argv)]
    status = 0
    for f in files:
        print(f"== {f.stem} ==", flush=True)
        rc = subprocess.call([sys.executable, str(f)])
        status = status or rc
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
