"""Sharded sampling on 2 ranks against 1 rank, and memory per path per step.

Speed: ``case, ours_s, peer_s, ratio`` with ours = 2 gloo ranks (torch.multiprocessing spawn,
1 thread each, each rank samples its shard with ``nsf.sample_shard``; wall time between two
barriers on rank 0) and peer = 1 rank (1 thread, ``model.sample`` of all paths in a spawned
process). Repeats in ABBA order, medians; the 1-minute load average is printed with each
measurement (the machine is shared). Process start-up and imports are excluded.

Memory: bytes per path per step of the sampled output (in memory and on disk as parquet) and of
the autograd graph kept by a training forward pass (``simulate_normalised``), measured by
summing the saved tensors with ``torch.autograd.graph.saved_tensors_hooks``, with and without
the reversible-Heun adjoint.

Usage: python benchmarks/bench_distributed.py [--n-paths 200000] [--horizon 252] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_path: str, n_paths: int, horizon: int,
            out: str, threads: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    import neuralsde_fin as nsf
    from neuralsde_fin import _distributed

    model = nsf.load_model(model_path)
    _distributed.init_from_env()
    _distributed.barrier()
    t0 = time.perf_counter()
    nsf.sample_shard(model, n_paths, horizon, seed=0)
    _distributed.barrier()
    if rank == 0:
        Path(out).write_text(str(time.perf_counter() - t0))


def _timed(world: int, model_path: str, n_paths: int, horizon: int, threads: int = 1) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "t")
        args = (world, _free_port(), model_path, n_paths, horizon, out, threads)
        mp.start_processes(_worker, args=args, nprocs=world, join=True, start_method="spawn")
        return float(Path(out).read_text())


def _saved_bytes(model, batch: int, n_steps: int, adjoint: bool) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.simulate_normalised(batch, seed=0, step=0, n_steps=n_steps, adjoint=adjoint)
    return total


def memory_table(model) -> None:
    import neuralsde_fin as nsf

    a = model.n_assets
    print(f"memory, sampling output in memory: {4 * a} B (float32) / {8 * a} B (float64) "
          "per path per step")
    with tempfile.TemporaryDirectory() as d:
        nsf.sample_shard(model, 2000, 252, out_dir=d, rank=0, world_size=1, seed=0)
        size = os.path.getsize(os.path.join(d, "part-0.parquet"))
    print(f"memory, sampling parquet on disk: {size / (2000 * 253):.1f} B per path per step "
          f"(float32, {a} asset, 2000 x 252)")
    for adjoint in (False, True):
        b1 = _saved_bytes(model, 64, 64, adjoint)
        b2 = _saved_bytes(model, 64, 128, adjoint)
        per_step = (b2 - b1) / (64 * 64)
        print(f"memory, training graph (adjoint={adjoint}): {per_step:.0f} B per path per step "
              f"(+{b1 / 64:.0f} B per path at 64 steps; width {model.width}, depth "
              f"{model.depth}, latent {model.latent}, float32)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-paths", type=int, default=200_000)
    ap.add_argument("--horizon", type=int, default=252)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--threads-peer", action="store_true",
                    help="also time 1 rank with 2 threads (intra-op parallelism)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import neuralsde_fin as nsf

    torch.manual_seed(0)
    model = nsf.MarketModel(1)  # the default architecture (latent 4, width 32, depth 2)
    memory_table(model)
    if args.skip_speed:
        return 0
    times: dict[int, list[float]] = {1: [], 2: [], 3: []}  # 3: 1 rank x 2 threads
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.pt")
        model.save(path)
        order = []
        for k in range(args.repeats):
            one = [1, 2, 3] if args.threads_peer else [1, 2]
            order += one if k % 2 == 0 else one[::-1]
        for case in order:
            world, threads = (1, 2) if case == 3 else (case, 1)
            t = _timed(world, path, args.n_paths, args.horizon, threads)
            times[case].append(t)
            print(f"  {world} rank(s) x {threads} thread(s): {t:.2f} s, load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    ours, peer = statistics.median(times[2]), statistics.median(times[1])
    print("case, ours_s, peer_s, ratio")
    print(f"sample_{args.n_paths}x{args.horizon}_2ranks_vs_1rank, {ours:.3f}, {peer:.3f}, "
          f"{peer / ours:.3f}  (ratio = speedup of 2 ranks)")
    if times[3]:
        peer2 = statistics.median(times[3])
        print(f"sample_{args.n_paths}x{args.horizon}_2ranks_vs_1rank_2threads, {ours:.3f}, "
              f"{peer2:.3f}, {peer2 / ours:.3f}  (ratio = speedup of 2 ranks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
