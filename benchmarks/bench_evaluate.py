"""Evaluation benchmarks: ours against the peer on the same inputs, medians of interleaved repeats.

Cases:
- ``gjr_sim``: simulate GJR-GARCH(1,1,1)-t paths (64 days after a 500-day burn-in): our
  vectorised sampler for all paths at once against ``arch``'s ``simulate``, one call per path.
- ``mmd_perm``: a signature-kernel MMD^2 permutation test: ours (one Gram matrix, permutations
  by re-indexing) against recomputing pysiglib's ``sig_mmd`` for each permutation.

Prints ``case, ours_s, peer_s, ratio`` (ratio = peer / ours). Nothing asserts on time.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _median_pair(ours, peer, repeats: int = 3) -> tuple[float, float]:
    t_ours, t_peer = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        peer()
        t_peer.append(time.perf_counter() - t0)
    return statistics.median(t_ours), statistics.median(t_peer)


def bench_gjr(n_paths: int = 200, horizon: int = 64) -> None:
    from arch import arch_model

    import neuralsde_fin as nsf

    params = dict(mu=0.03, omega=0.02, alpha=0.03, gamma=0.12, beta=0.87, nu=7.0)
    ours_model = nsf.GJRGarchBaseline.from_params(**params, burn_in=500)
    am = arch_model(None, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t")
    vec = np.array(list(params.values()))

    def ours():
        ours_model.sample(n_paths, horizon, seed=0)

    def peer():
        for _ in range(n_paths):
            am.simulate(vec, horizon, burn=500)

    o, p = _median_pair(ours, peer)
    print(f"gjr_sim_{n_paths}x{horizon}, {o:.4f}, {p:.4f}, {p / o:.1f}", flush=True)


def bench_mmd(n: int = 32, length: int = 33, n_perm: int = 10) -> None:
    import pysiglib

    from neuralsde_fin._evaluate._mmd import RBF_SIGMA, sig_mmd_test

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((n, length, 1)), axis=1) / np.sqrt(length)
    y = np.cumsum(rng.standard_normal((n, length, 1)), axis=1) / np.sqrt(length)
    z = np.concatenate([x, y])

    def ours():
        sig_mmd_test(x, y, n_perm=n_perm, max_samples=None, max_length=None, scale=1.0)

    def peer():
        kern = pysiglib.RBFKernel(RBF_SIGMA)
        for _ in range(n_perm + 1):
            idx = rng.permutation(2 * n)
            pysiglib.sig_mmd(
                z[idx[:n]], z[idx[n:]], time_aug=True, dyadic_order=0, static_kernel=kern, n_jobs=2
            )

    o, p = _median_pair(ours, peer)
    print(f"mmd_perm_{n}+{n}x{length}_{n_perm}perm, {o:.4f}, {p:.4f}, {p / o:.1f}", flush=True)


if __name__ == "__main__":
    print("case, ours_s, peer_s, ratio")
    bench_gjr()
    bench_mmd()
