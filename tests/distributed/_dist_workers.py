"""Worker functions of the 2-process gloo tests (importable by spawned children).

Each worker sets the environment torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and then calls the package unchanged, so the package's own
detection of the distributed environment is what is tested.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to port 0 and let the OS choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)


def run(fn, args: tuple, world: int = 2, timeout: float = 240.0) -> None:
    """Spawn ``world`` processes running ``fn(rank, world, port, *args)``; fail after
    ``timeout`` seconds (the children are then terminated)."""
    port = free_port()
    ctx = mp.start_processes(fn, args=(world, port, *args), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{fn.__name__}: {world} ranks did not finish in {timeout} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)


# ------------------------------------------------------------------ shared tiny problem
def tiny_model(dtype=torch.float32):
    import neuralsde_fin as nsf

    torch.manual_seed(1234)
    return nsf.MarketModel(2, latent=2, width=8, depth=1, window=8).to(dtype)


def tiny_real(batch: int, window: int = 8, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(99)
    incr = 0.3 * torch.randn(batch, window, 2, generator=g, dtype=torch.float64)
    return torch.cat([torch.zeros(batch, 1, 2, dtype=torch.float64), incr.cumsum(1)], 1).to(dtype)


def tiny_prices(n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(5)
    return 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal((n, 2)), axis=0))


CAL = dict(method="sigw1", window=8, steps=6, batch=8, lr=1e-2, seed=3, progress=False,
           checkpoint_every=2, swa=True, swa_start=0.5, model_options=dict(latent=2, width=8,
           depth=1))


# ------------------------------------------------------------------ workers
class Interrupted(RuntimeError):
    """Stands for a kill in the middle of a run."""


def sample_worker(rank: int, world: int, port: int, model_path: str, out_dir: str,
                  n_paths: int, horizon: int, options: dict) -> None:
    import neuralsde_fin as nsf
    from neuralsde_fin import _distributed

    torchrun_env(rank, world, port)
    model = nsf.load_model(model_path)
    with _distributed.process_group() as (r, w):
        assert (r, w) == (rank, world)
        nsf.sample_shard(model, n_paths, horizon, out_dir=out_dir, **options)


def grad_worker(rank: int, world: int, port: int, method: str, batch: int, out: str) -> None:
    from neuralsde_fin import _distributed
    from neuralsde_fin._calibrate._losses import get_loss
    from neuralsde_fin._calibrate._train import _loss_and_grads

    torchrun_env(rank, world, port)
    model = tiny_model(torch.float64)
    loss = get_loss(method)
    params = [p for p in model.parameters() if p.requires_grad]
    with _distributed.process_group():
        lo, hi = _distributed.shard_range(batch, rank, world)
        fake_local = model.simulate_normalised(hi - lo, seed=7, step=0, path_offset=lo)
        fake = _distributed.gather_batch(fake_local, batch).detach()
        value, ok = _loss_and_grads(model, loss, tiny_real(batch), params, batch=batch, seed=7,
                                    step=0, adjoint=False)
    torch.save({"fake": fake, "loss": value.detach(), "ok": ok,
                "grads": [_grad(p) for p in params]}, Path(out) / f"grads-{rank}.pt")


def _grad(p: torch.Tensor) -> torch.Tensor:
    """p's gradient, zeros where it has none (the empty hidden stack of a depth-1 net)."""
    return torch.zeros_like(p) if p.grad is None else p.grad.clone()


def calibrate_worker(rank: int, world: int, port: int, out: str, phase: str) -> None:
    """phase "run": an uninterrupted run, then a run interrupted after step 3 (the process
    then ends, as under a kill); phase "resume": new processes resume the interrupted run."""
    import neuralsde_fin as nsf

    torchrun_env(rank, world, port)
    out_p = Path(out)
    prices = tiny_prices()
    if phase == "run":
        full = nsf.calibrate(prices, checkpoint_dir=out_p / "full", **CAL)
        torch.save(full.state_dict(), out_p / f"full-{rank}.pt")

        def interrupt(step: int, value: float) -> None:
            if step == 3:
                raise Interrupted(f"simulated interruption after step {step}")

        try:
            nsf.calibrate(prices, checkpoint_dir=out_p / "cut", callback=interrupt, **CAL)
            raise AssertionError("the interrupted run was not interrupted")
        except Interrupted:
            pass
    else:
        resumed = nsf.calibrate(prices, checkpoint_dir=out_p / "cut", resume=True, **CAL)
        torch.save(resumed.state_dict(), out_p / f"resumed-{rank}.pt")
