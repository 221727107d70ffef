"""Signature benchmark: our backends side by side, and the two calibration losses.

Cases (float32 unless said, 1 channel + time + basepoint, 65-point windows, loss + gradient):
- ``signature_d4_b128``: depth-4 signature + backward, batch 128: signatory (ours = default
  backend) against pysiglib (peer);
- ``signature_d4_b128_f64``: the same in float64;
- ``sigw1_b128_vs_sigkernel_b32``: SigW1 (depth 4, lead-lag, batch 128) against the
  signature-kernel MMD (dyadic order 0, batch 32, n_jobs 1): the per-step loss cost of the two
  calibration methods at their default batches;
- ``sigkernel_b64_f32_vs_f64``: the kernel MMD at batch 64 in float32 (ours) and float64.

Prints ``case, ours_s, peer_s, ratio`` (medians over interleaved repeats; ratio = peer_s / ours_s,
> 1 means the first is faster); never asserts on time.
Run: ``python benchmarks/bench_signature.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neuralsde_fin._calibrate._losses import get_loss
from neuralsde_fin._signature import available_backends, signature


def _paths(batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    inc = torch.randn(batch, 64, 1, generator=g, dtype=dtype) / 8
    return torch.cat([torch.zeros(batch, 1, 1, dtype=dtype), inc.cumsum(1)], dim=1)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sig_job(backend: str, dtype: torch.dtype):
    x = _paths(128, dtype).requires_grad_()

    def run():
        signature(x, 4, backend=backend).pow(2).sum().backward()

    return run


def _loss_job(name: str, batch: int, dtype: torch.dtype, **opts):
    loss = get_loss(name, **opts)
    x = _paths(batch, dtype, 1).requires_grad_()
    y = _paths(batch, dtype, 2)

    def run():
        loss(x, y).backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = []
    if len(available_backends()) == 2:
        for dt, tag in ((torch.float32, ""), (torch.float64, "_f64")):
            cases.append((f"signature_d4_b128{tag}", _sig_job("signatory", dt),
                          _sig_job("pysiglib", dt)))
    cases.append((
        "sigw1_b128_vs_sigkernel_b32",
        _loss_job("sigw1", 128, torch.float32, depth=4, lead_lag=True),
        _loss_job("sigkernel", 32, torch.float32, scale=0.5, n_jobs=1),
    ))
    cases.append((
        "sigkernel_b64_f32_vs_f64",
        _loss_job("sigkernel", 64, torch.float32, n_jobs=2),
        _loss_job("sigkernel", 64, torch.float64, n_jobs=2),
    ))
    for name, ours, peer in cases:
        ours(), peer()  # warm-up
        t_ours, t_peer = [], []
        for _ in range(args.repeats):
            t_ours.append(_time(ours))
            t_peer.append(_time(peer))
        o, p = statistics.median(t_ours), statistics.median(t_peer)
        print(f"{name}, {o:.4f}, {p:.4f}, {p / o:.3f}", flush=True)


if __name__ == "__main__":
    main()
