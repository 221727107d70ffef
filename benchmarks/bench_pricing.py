"""Pricing benchmark: our Monte Carlo (sample + price) against QuantLib's MC engines.

Cases (same number of paths and time steps on both sides, pseudo-random numbers):
- ``european_gbm``: European call under GBM, 100k paths, 1 step (QuantLib MCEuropeanEngine);
- ``european_heston``: European call under Heston, 50k paths, 52 weekly steps (ours: QE;
  QuantLib MCEuropeanHestonEngine, whose default discretisation is QuadraticExponentialMartingale).

Prints ``case, ours_s, peer_s, ratio`` (medians over interleaved repeats; ratio = peer_s / ours_s,
> 1 means we are faster); never asserts on time.
Run: ``python benchmarks/bench_pricing.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import neuralsde_fin as nsf

S0, K, R, Q = 100.0, 100.0, 0.03, 0.01


def _ql_process(ql, heston: bool):
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    flat = lambda x: ql.YieldTermStructureHandle(ql.FlatForward(today, x, dc))
    spot = ql.QuoteHandle(ql.SimpleQuote(S0))
    if heston:
        return today, ql.HestonProcess(flat(R), flat(Q), spot, 0.04, 2.0, 0.04, 0.5, -0.7)
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), 0.2, dc))
    return today, ql.BlackScholesMertonProcess(spot, flat(Q), flat(R), vol)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import QuantLib as ql

    T = 364 / 365

    def ours_gbm():
        scen = nsf.GBM(0.2).sample(100_000, 1, r=R, q=Q, spot=S0, seed=1, dt=T)
        return nsf.price(scen, nsf.EuropeanCall(K, T)).price

    def ql_gbm():
        today, proc = _ql_process(ql, heston=False)
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, K),
                               ql.EuropeanExercise(today + 364))
        opt.setPricingEngine(ql.MCEuropeanEngine(proc, "pseudorandom", timeSteps=1,
                                                 requiredSamples=100_000, seed=1))
        return opt.NPV()

    def ours_heston():
        scen = nsf.Heston(2.0, 0.04, 0.5, -0.7, 0.04).sample(
            50_000, 52, r=R, q=Q, spot=S0, seed=1, dt=7 / 365
        )
        return nsf.price(scen, nsf.EuropeanCall(K, T)).price

    def ql_heston():
        today, proc = _ql_process(ql, heston=True)
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(ql.Option.Call, K),
                               ql.EuropeanExercise(today + 364))
        opt.setPricingEngine(ql.MCEuropeanHestonEngine(proc, "pseudorandom", timeSteps=52,
                                                       requiredSamples=50_000, seed=1))
        return opt.NPV()

    print("case, ours_s, peer_s, ratio")
    for case, ours, peer in (("european_gbm", ours_gbm, ql_gbm),
                             ("european_heston", ours_heston, ql_heston)):
        t_ours, t_peer = [], []
        for _ in range(args.repeats):  # interleaved
            t0 = time.perf_counter()
            ours()
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            peer()
            t_peer.append(time.perf_counter() - t0)
        a, b = statistics.median(t_ours), statistics.median(t_peer)
        print(f"{case}, {a:.4f}, {b:.4f}, {b / a:.2f}", flush=True)


if __name__ == "__main__":
    main()
