"""The ``neuralsde-fin`` console script.

Every subcommand reports bad input as one line on stderr and exits with code 2, never a
traceback. Subcommands are registered in ``COMMANDS`` by the ``command`` decorator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import neuralsde_fin as nsf

#: name -> (configure parser, run) for each subcommand.
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> int`` as subcommand ``name`` whose arguments ``configure`` adds."""

    def deco(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (configure, run)
        return run

    return deco


def _configure_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="price history: a CSV file with a Date column")
    p.add_argument("--column", action="append", help="price column(s) to load (repeatable)")
    p.add_argument("--sort", action="store_true", help="sort rows by date instead of refusing")


@command("inspect", _configure_inspect)
def _inspect(args: argparse.Namespace) -> int:
    """Validate a price file and print a summary of it."""
    import numpy as np

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="neuralsde-fin",
        description="Calibrate neural SDEs to price history, sample scenarios, price options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {nsf.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (configure, run) in COMMANDS.items():
        doc = (run.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=doc[0] if doc else None)
        configure(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # DataError is a ValueError
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"neuralsde-fin {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
