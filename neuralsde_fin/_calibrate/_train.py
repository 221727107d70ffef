"""The shared training loop: generator vs data under any registered loss.

One step:

1. draw ``batch`` real windows (indices a pure function of (seed, step));
2. simulate ``batch`` normalised paths from the model (noise a pure function of (seed, step));
3. if the loss is adversarial, call ``loss.before_generator_step(fake.detach(), real)`` (the
   SDE-GAN updates its discriminator there);
4. ``loss(fake, real)``, backward, NaN/inf guard, optimiser step, optional SWA update;
5. every ``checkpoint_every`` steps and at the end: an atomic checkpoint of everything the
   remaining steps depend on (weights, optimiser, SWA average, loss state, guard state).

Because nothing depends on hidden RNG state, resuming from a checkpoint reaches the same final
weights as an uninterrupted run with the same seed.

Data parallel (under torchrun, see ``neuralsde_fin._distributed``): rank r of W simulates the
global paths ``shard_range(batch, r, W)`` of step 2 (disjoint Brownian paths), the shards are
gathered so that every rank evaluates the same global-batch loss on the same real batch, and
after backward the parameter gradients are summed over ranks; the update equals the
single-process one with the same ``batch`` up to float summation order, so every rank keeps
identical weights. Only rank 0 writes checkpoints and shows progress; on resume every rank
loads the same checkpoint.

NaN/inf guard: a step whose loss or gradient is not finite is skipped and the learning rate is
halved; after ``max_bad_steps`` consecutive bad steps training stops with a FloatingPointError.
Non-finite weights are never saved.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuralsde_fin import _distributed as _dist
from neuralsde_fin._accel import compile_steps
from neuralsde_fin._errors import CheckpointError
from neuralsde_fin._models._checkpoint import model_from_checkpoint
from neuralsde_fin._models._io import atomic_save, checkpoint_dict, safe_load
from neuralsde_fin._models._market import MarketModel
from neuralsde_fin._solvers._compiled import resolve as resolve_compile

TRAIN_FORMAT = "neuralsde_fin.calibration"
CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("adam", "adadelta")


def _batch_indices(n: int, batch: int, seed: int, step: int, device) -> Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))
    return torch.randint(n, (batch,), generator=g).to(device)


def _make_optimizer(
    name: str, params, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _loss_and_grads(
    model: MarketModel,
    loss: Any,
    real_b: Tensor,
    params: list[Tensor],
    *,
    batch: int,
    seed: int,
    step: int,
    adjoint: bool,
    condition: Tensor | None = None,
) -> tuple[Tensor, bool]:
    """Steps 2-4 of one training step up to the gradients: (loss value, all finite).

    With ``condition`` (a conditional model: the features of each real pair's context, rows
    aligned with ``real_b``) the generated windows start from the batch's contexts, and the
    loss compares the joint paths: the real context followed by the generated window against
    the real (context, window) stretch.

    On W > 1 ranks this rank simulates its share of the global batch (global path ids
    ``shard_range(batch, rank, W)``), the shards are gathered, every rank evaluates the same
    loss, and the gradients are summed over ranks afterwards: ``p.grad`` is then the gradient
    of the global-batch loss on every rank.
    """
    rank, world = _dist.rank_and_world()
    lo, hi = _dist.shard_range(batch, rank, world)
    loss.step = step
    feats = None if condition is None else condition[lo:hi]
    fake = model.simulate_normalised(hi - lo, seed=seed, step=step, adjoint=adjoint, path_offset=lo,
                                     features=feats)
    fake = _dist.gather_batch(fake, batch)
    if condition is not None:  # real context, then the generated window from its last close
        c = real_b.shape[1] - fake.shape[1]
        fake = torch.cat([real_b[:, : c + 1], real_b[:, c : c + 1] + fake[:, 1:]], dim=1)
    if loss.adversarial:
        loss.before_generator_step(fake.detach(), real_b)
    value = loss(fake, real_b)
    for p in params:
        p.grad = None
    ok = _finite(value.detach())  # the same on every rank: same loss of the same inputs
    if ok:
        value.backward()
        _dist.all_reduce_grads(params)
        ok = all(p.grad is None or _finite(p.grad) for p in params)
    return value, ok


def train(
    model: MarketModel,
    loss: Any,
    real: Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    optimizer: str = "adam",
    swa: bool = True,
    swa_start: float = 0.75,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = True,
    max_bad_steps: int = 5,
    adjoint: bool = False,
    grad_clip: float | None = None,
    callback: Callable[[int, float], None] | None = None,
    run_config: dict[str, Any] | None = None,
    weight_decay: float = 0.0,
    compile: bool | None = None,
    condition: Tensor | None = None,
) -> MarketModel:
    """Fit ``model`` to the normalised real windows ``real`` by minimising ``loss``.

    Args:
        model: the generator; trained in place (and returned).
        loss: a registered loss module, ``loss(fake, real) -> scalar``.
        real: normalised real windows, (n_windows, window + 1, n_assets).
        steps: total optimiser steps.
        batch: paths per step (real and fake).
        lr: learning rate.
        seed: seed of the noise and of the batch draws.
        optimizer: "adam" or "adadelta".
        swa: average the weights over the last (1 - swa_start) of the steps (stochastic weight
            averaging, Izmailov et al. 2018) and return the average.
        swa_start: fraction of steps after which averaging starts.
        checkpoint_dir: folder for ``checkpoint.pt`` (None: no checkpoints).
        checkpoint_every: steps between checkpoints.
        resume: continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
        progress: tqdm progress bar (loss and it/s).
        max_bad_steps: consecutive non-finite steps tolerated.
        adjoint: backpropagate through the solver with the O(1)-memory adjoint.
        grad_clip: clip the gradient norm to this (None: no clipping).
        callback: called as ``callback(step, loss)`` after every completed step.
        run_config: plain-JSON description of the run; a resumed run must match it.
        weight_decay: L2 weight decay of the generator's optimiser.
        condition: for a conditional model, the context features of every real pair (rows of
            ``real``, which then holds the joint (context, window) paths).
        compile: run the reversible-Heun steps of the package's fused fields ``torch.compile``-d
            (``nsf.compiled_solvers``; adjoint solves and the SDE-GAN discriminator). None:
            ``NEURALSDE_FIN_COMPILE`` if set, else on when ``steps >= 1000``, where the 20-30 s
            of compilation is paid back. The mode depends on ``steps``, not on where a resumed
            run starts, so a resumed run computes as the uninterrupted one does.

    Returns:
        The trained model (SWA-averaged weights when ``swa``).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    run_json = json.dumps(run_config or {}, sort_keys=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, lr, weight_decay)
    swa_from = int(math.floor(swa_start * steps)) if swa else steps + 1
    avg: list[Tensor] | None = None
    n_avg = 0
    start, bad, lr_scale = 0, 0, 1.0
    history: list[float] = []
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME

    if resume and ckpt is not None and ckpt.exists():
        obj = safe_load(ckpt, kind=TRAIN_FORMAT)
        if obj.get("run_config") != run_json:
            raise CheckpointError(
                f"checkpoint {str(ckpt)!r} was written by a different calibration run; "
                "use the same arguments to resume, or resume=False"
            )
        try:
            model.load_state_dict(obj["model"]["state_dict"])
            opt.load_state_dict(obj["optimizer"])
            loss.load_state_dict(obj["loss"])
            loss.load_training_state(obj["loss_training_state"])
            start, bad, lr_scale = int(obj["step"]), int(obj["bad"]), float(obj["lr_scale"])
            n_avg = int(obj["n_avg"])
            avg = None if n_avg == 0 else [t.clone() for t in obj["swa"]]
            history = [float(v) for v in obj["history"]]
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {str(ckpt)!r} is incomplete: {str(err).splitlines()[0]}"
            ) from None

    main = _dist.is_main_process()
    _dist.broadcast_state(model, loss)  # start from rank 0's state, as DDP does

    def save() -> None:
        if ckpt is None:
            return
        for name, p in model.state_dict().items():
            if not _finite(p):
                raise FloatingPointError(f"refusing to checkpoint non-finite weights ({name})")
        if not main:  # the weights are identical on every rank: rank 0 writes
            return
        atomic_save(
            {
                "format": TRAIN_FORMAT,
                "run_config": run_json,
                "model": checkpoint_dict(model),
                "optimizer": opt.state_dict(),
                "loss": loss.state_dict(),
                "loss_training_state": loss.training_state(),
                "step": step_done,
                "bad": bad,
                "lr_scale": lr_scale,
                "n_avg": n_avg,
                "swa": [] if avg is None else [t.detach().cpu() for t in avg],
                "history": history,
            },
            ckpt,
        )

    from tqdm.auto import tqdm

    device = real.device
    bar = tqdm(
        total=steps, initial=start, disable=not (progress and main), desc=f"calibrate[{loss.name}]"
    )
    step_done = start
    compiling = resolve_compile(compile, steps)
    try:
        for step in range(start, steps):
            idx = _batch_indices(real.shape[0], batch, seed, step, device)
            real_b = real[idx]
            cond_b = None if condition is None else condition[idx]
            # compiled steps when this run compiles; the native kernels as the mode has them
            with compile_steps(compiling):
                value, ok = _loss_and_grads(
                    model, loss, real_b, params, batch=batch, seed=seed, step=step,
                    adjoint=adjoint, condition=cond_b,
                )
            if ok:
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                bad = 0
                if step >= swa_from:
                    with torch.no_grad():
                        if avg is None:
                            avg = [p.detach().clone() for p in params]
                        else:
                            for a, p in zip(avg, params):
                                a.add_(p.detach() - a, alpha=1.0 / (n_avg + 1))
                    n_avg += 1
            else:
                opt.zero_grad(set_to_none=True)
                bad += 1
                lr_scale *= 0.5
                for group in opt.param_groups:
                    group["lr"] = lr * lr_scale
                if bad >= max_bad_steps:
                    raise FloatingPointError(
                        f"calibration stopped at step {step}: {bad} consecutive steps with a "
                        f"non-finite loss or gradient (learning rate lowered to {lr * lr_scale:g})"
                    )
            v = float(value.detach()) if ok else float("nan")
            history.append(v)
            step_done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{v:.4g}")
            if step_done % checkpoint_every == 0 or step_done == steps:
                save()
            if callback is not None:
                callback(step_done, v)
    finally:
        bar.close()
    if avg is not None:
        with torch.no_grad():
            for a, p in zip(avg, params):
                p.copy_(a)
    model.info = {"loss": loss.name, "steps": steps, "history": history[-1000:]}
    return model


def load_training_checkpoint(path: str | os.PathLike) -> MarketModel:
    """The model stored in a training checkpoint (current, not SWA-averaged, weights)."""
    obj = safe_load(path, kind=TRAIN_FORMAT)
    return model_from_checkpoint(obj["model"], str(path))
