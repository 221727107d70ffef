"""Scale-out on ``torch.distributed``: data-parallel calibration and sharded scenario sampling.

The engine is PyTorch's own: processes are started by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), communicate through a
``torch.distributed`` process group (gloo on CPU, nccl on GPU), and this module adds only what
the package needs on top:

- rank / world detection from the initialised group or torchrun's environment, and a context
  manager that initialises the default group when the environment asks for one and destroys it
  on exit (only if it created it);
- contiguous sharding of global path ids, ``shard_range(n, rank, world_size)``;
- the data-parallel hooks of the training loop: ``gather_batch`` (every rank receives the whole
  generated batch, its backward keeps the local slice) and ``all_reduce_grads`` (sum);
- sharded sampling (``sample_shard``, one ``part-<rank>.parquet`` per rank carrying global path
  ids) and ``combine_shards`` (their union, identical to single-process sampling).

Why the batch is gathered rather than each rank's loss averaged (as plain
``DistributedDataParallel`` would do): the calibration losses are functionals of the whole
batch's empirical law (signature-kernel MMD^2, SigW1's distance of expected signatures), not
sums over paths, so the mean of per-rank losses is a different estimator. With the generated
paths gathered, every rank evaluates the same global-batch loss L(x_1, ..., x_B) on the same
real batch; rank r back-propagates dL/dx_i only through its own paths i in [lo_r, hi_r), and
summing the parameter gradients over ranks gives

    sum_r sum_{i in shard r} (dx_i/dtheta)^T dL/dx_i = dL/dtheta,

the single-process gradient with batch B, up to the order of floating-point summation. The
simulation and its backward pass (the expensive part for SigW1 and for the solver) are split
across ranks; the loss itself is evaluated redundantly on each rank, and an adversarial loss's
own update (the SDE-GAN discriminator) stays in sync without communication because it sees the
same inputs everywhere.

Because the Brownian noise is counter-based (a pure function of seed, path id, step and
channel), a rank that simulates global paths [lo, hi) draws exactly the noise a single process
would draw for those paths: shards are exact, not merely independent.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


# --------------------------------------------------------------------------- rank / world
def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def rank_and_world() -> tuple[int, int]:
    """This process's ``(rank, world_size)``: from the initialised default group, else from
    torchrun's environment (``RANK``, ``WORLD_SIZE``), else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    return rank, world


def is_main_process() -> bool:
    """True on rank 0 (the only rank that writes checkpoints, logs and progress bars)."""
    return rank_and_world()[0] == 0


def backend_for(device: torch.device | str | None) -> str:
    """``"nccl"`` for CUDA tensors when NCCL is available, else ``"gloo"``."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def local_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU (one GPU per rank)."""
    if torch.cuda.is_available():
        return torch.device("cuda", _env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
    return torch.device("cpu")


def _destroy_at_exit() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def init_from_env(device: torch.device | str | None = None) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment, if it asks for one.

    If ``WORLD_SIZE`` > 1 and no group is initialised yet, the group is initialised with
    ``init_method="env://"`` (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) and
    the backend of :func:`backend_for` (gloo on CPU, nccl for CUDA), and destroyed when the
    interpreter exits. The group is then kept for the life of the process: initialising a new
    group on the same ``MASTER_PORT`` after destroying one races with the other ranks' teardown,
    so later calls (a second ``nsf.calibrate`` in the same script) reuse it.

    Returns:
        ``(rank, world_size)``.
    """
    if dist.is_available() and not dist.is_initialized() and _env_int("WORLD_SIZE", 1) > 1:
        backend = backend_for(device)
        if backend == "nccl":
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_destroy_at_exit)
    return rank_and_world()


@contextlib.contextmanager
def process_group(device: torch.device | str | None = None) -> Iterator[tuple[int, int]]:
    """Run a block on the default process group described by torchrun's environment.

    Calls :func:`init_from_env` (nothing happens with ``WORLD_SIZE`` unset or 1, and an
    existing group is used as is); after the block the ranks meet at a barrier, so that what
    rank 0 wrote in the block is complete when any rank continues.

    Yields:
        ``(rank, world_size)``.
    """
    yield init_from_env(device)
    barrier()


def barrier() -> None:
    """``dist.barrier()`` when a group is initialised, else nothing."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# --------------------------------------------------------------------------- sharding
def shard_range(n: int, rank: int, world_size: int, *, multiple: int = 1) -> tuple[int, int]:
    """The contiguous range ``[lo, hi)`` of ``n`` global ids owned by ``rank``.

    Ranks own consecutive blocks, in rank order, whose sizes (in units of ``multiple``, e.g. 2
    for antithetic pairs) differ by at most one: with m = n / multiple blocks, base = m // W and
    extra = m % W, rank r owns units [r base + min(r, extra), (r + 1) base + min(r + 1, extra)).

    Args:
        n: number of ids (a multiple of ``multiple``).
        rank: the rank, 0 <= rank < world_size.
        world_size: number of ranks.
        multiple: shard boundaries fall on multiples of this.

    Returns:
        ``(lo, hi)``; the union over ranks is ``[0, n)``, disjoint.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
    if n < 0 or multiple < 1 or n % multiple:
        raise ValueError(f"n must be a non-negative multiple of {multiple}, got {n!r}")
    m = n // multiple
    base, extra = divmod(m, world_size)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    return lo * multiple, hi * multiple


# --------------------------------------------------------------------------- training hooks
class _GatherReplicated(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns the local slice of the gradient.

    Valid when every rank evaluates the same function of the gathered tensor (then the
    gradient with respect to the local slice is the same on every rank, and no communication
    is needed in the backward pass).
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: Sequence[int], rank: int) -> Tensor:  # type: ignore[override]
        width = max(sizes)
        pad = x.new_zeros((width,) + tuple(x.shape[1:]))
        pad[: x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in sizes]
        dist.all_gather(parts, pad.contiguous())
        ctx.lo = sum(sizes[:rank])
        ctx.hi = ctx.lo + sizes[rank]
        return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad[ctx.lo : ctx.hi], None, None


def gather_batch(x: Tensor, n: int) -> Tensor:
    """Concatenate every rank's shard of a batch of ``n`` rows, in rank order (differentiable).

    Rank r holds rows ``shard_range(n, r, W)``; the result is the whole batch on every rank.
    The backward pass keeps the gradient of the local rows only: use it when every rank
    computes the same loss of the gathered batch, then sum the parameter gradients over ranks
    (:func:`all_reduce_grads`).

    Shape:
        x: (hi - lo, ...) -> (n, ...).
    """
    rank, world = rank_and_world()
    if world == 1:
        return x
    sizes = [shard_range(n, r, world)[1] - shard_range(n, r, world)[0] for r in range(world)]
    return _GatherReplicated.apply(x, sizes, rank)


def all_reduce_grads(params: Sequence[Tensor]) -> None:
    """Sum ``p.grad`` over ranks, in place, in one flat all-reduce.

    Parameters without a gradient are left without one; every rank runs the same graph, so
    the set of parameters with a gradient is the same on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for p in with_grad:
        k = p.grad.numel()
        p.grad = flat[off : off + k].view_as(p.grad).clone()
        off += k


def broadcast_state(*modules: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``modules`` (in place).

    Called once before data-parallel training, as ``DistributedDataParallel`` does at
    construction, so that every rank starts from the same state even when a module (e.g. a
    loss's discriminator) was initialised from the global RNG.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, src=0)


# --------------------------------------------------------------------------- sharded sampling
def sample_shard(
    model: Any,
    n_paths: int,
    horizon: int,
    *,
    out_dir: str | os.PathLike | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = False,
    **sample_options: Any,
) -> Any:
    """Sample this rank's contiguous share of ``n_paths`` global paths (and write its shard).

    Rank r of W takes the global paths ``[lo, hi) = shard_range(n_paths, r, W)`` (whole
    antithetic pairs with ``antithetic=True``) and draws them by ``model.sample(...,
    path_offset=lo)``: with counter-based noise, and a path's values independent of the batch
    it is solved in, these are exactly paths lo .. hi - 1 of a single-process sample, so the
    union of the shards equals it bit for bit, for any ``n_paths`` and chunk size. No
    communication is needed; rank and world size come from the initialised process group or
    torchrun's environment unless given.

    With ``out_dir`` the shard is streamed (``nsf.sample_to_parquet``, memory bounded by the
    chunk) to ``out_dir/part-<rank>.parquet``, its ``path`` column holding the global ids and
    its metadata the shard (``path_offset``, ``n_paths_local``, ``n_paths_total``, ``rank``,
    ``world_size``); ``nsf.Scenarios.from_parquet(out_dir)`` reads the union back. Without it,
    the shard's ``nsf.Scenarios`` is returned.

    Args:
        model: any model with the shared sampling signature (``path_offset``).
        n_paths: total number of paths over all ranks.
        horizon: number of steps.
        out_dir: folder for the shard files (created if missing); None: return the samples.
        rank: this rank (default: detected).
        world_size: number of ranks (default: detected).
        progress: a progress bar over this rank's paths.
        **sample_options: passed to ``model.sample`` (measure, r, q, spot, seed, dt, ...).

    Returns:
        With ``out_dir``: ``(path written, number of paths of this rank)``; else the shard's
        ``nsf.Scenarios`` (hi - lo paths, global ids lo .. hi - 1).
    """
    from neuralsde_fin._scenario_files import PART_PATTERN, sample_to_parquet
    from neuralsde_fin._validate import check_int

    r0, w0 = rank_and_world()
    rank = r0 if rank is None else rank
    world_size = w0 if world_size is None else world_size
    check_int("world_size", world_size)
    check_int("rank", rank, 0, world_size - 1)
    check_int("n_paths", n_paths)
    sig = inspect.signature(model.sample).parameters
    if "path_offset" not in sig:
        raise ValueError(f"model {type(model).__name__} cannot be sampled by shards: its "
                         "sample() has no path_offset argument")
    if "path_offset" in sample_options:
        raise ValueError("path_offset is set by sample_shard; do not pass it")
    anti = bool(sample_options.get("antithetic"))
    if anti and n_paths % 2:
        raise ValueError(f"antithetic sampling needs an even n_paths, got {n_paths}")
    lo, hi = shard_range(n_paths, rank, world_size, multiple=2 if anti else 1)
    if out_dir is None:
        return model.sample(hi - lo, horizon, path_offset=lo, **sample_options)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), PART_PATTERN.format(rank=rank))
    shard = {"path_offset": lo, "n_paths_local": hi - lo, "n_paths_total": n_paths,
             "rank": rank, "world_size": world_size}
    if hi == lo:
        raise ValueError(f"n_paths={n_paths} leaves rank {rank} of {world_size} no path")
    return sample_to_parquet(model, path, hi - lo, horizon, path_offset=lo, shard=shard,
                             progress=progress, **sample_options), hi - lo


def write_samples(
    model: Any, out: str | os.PathLike, n_paths: int, horizon: int, *, progress: bool = False,
    **sample_options: Any,
) -> tuple[str, int]:
    """Sample ``n_paths`` paths to ``out``: the one call behind ``sample --out``.

    - ``out`` ending in ``.parquet``: one process streams one file
      (``nsf.sample_to_parquet``); refused under torchrun with more than one rank.
    - any other ``out``: a directory; this rank writes ``out/part-<rank>.parquet`` with
      :func:`sample_shard` (a single process writes ``part-0.parquet``). The union equals the
      single-process sample with the same seed, bit for bit.

    Returns:
        ``(path written, number of paths this process wrote)``.
    """
    from neuralsde_fin._scenario_files import sample_to_parquet

    rank, world = rank_and_world()
    out = os.fspath(out)
    if out.endswith(".parquet"):
        if world > 1:
            raise ValueError(f"out must be a directory under torchrun ({world} ranks write "
                             f"part-<rank>.parquet), got the file {out!r}")
        return sample_to_parquet(model, out, n_paths, horizon, progress=progress,
                                 **sample_options), n_paths
    return sample_shard(model, n_paths, horizon, out_dir=out, rank=rank, world_size=world,
                        progress=progress, **sample_options)


def combine_shards(directory: str | os.PathLike) -> Any:
    """The union of the shards of ``directory`` as one ``nsf.Scenarios``, in global path order
    (``nsf.Scenarios.from_parquet(directory)``; checked to come from one run and to cover every
    path id once).

    Shape:
        prices: (n_paths_total, n_times, n_assets).
    """
    from neuralsde_fin._scenarios import Scenarios

    return Scenarios.from_parquet(directory)
