"""``nsf.calibrate``: price history -> calibrated neural SDE market model."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neuralsde_fin import _distributed as _dist
from neuralsde_fin._calendar import TRADING_DAYS
from neuralsde_fin._calibrate._losses import LOSSES, get_loss
from neuralsde_fin._calibrate._train import OPTIMIZERS, train
from neuralsde_fin._models._context import context_features
from neuralsde_fin._models._market import MarketModel
from neuralsde_fin._validate import check_int

#: Training contexts a conditional model keeps for its stationary start.
STATIONARY_CONTEXTS = 2048

#: Per-method defaults, chosen with the cost figures of DESIGN section 3 in mind.
#: sigkernel: cost ~ batch^2 x length^2 -> batch 32 and every 2nd point of the 64-step windows
#: (subsample 2: a quarter of the PDE cells); an RBF static kernel (bandwidth 1 on the
#: normalised paths, whose size is about 1) keeps the kernel bounded; the linear kernel's
#: signature kernel grows like exp(|x|^2) and made the estimator heavy-tailed. sigw1: linear
#: in the batch -> batch 128, depth 4 with lead-lag (the level-2 lead-lag terms carry the
#: realised variance). Measured figures: calibration/*.md.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "sigkernel": {
        "batch": 32,
        "loss": {"static_kernel": "rbf", "sigma": 1.0, "subsample": 2, "dyadic_order": 0,
                 "n_jobs": 1},
    },
    "sigw1": {"batch": 128, "loss": {"depth": 4, "lead_lag": True}},
    # sdegan: the recipe of Kidger et al. 2021 / torchsde's sde_gan example (Adadelta for both
    # networks, discriminator learning rate 5x the generator's, weight decay 0.01, SWA from the
    # halfway point, weight clipping); batch 128 keeps a step short on a small
    # machine. Adadelta's step grows only slowly from sqrt(eps) ~ 1e-3 per unit lr, so the
    # example's 2e-4 / 1e-3 (for 10,000 steps) are raised to 0.1 / 0.5 for a few hundred steps;
    # on the bundled S&P 500 (300 steps) this matched the daily vol to 4%.
    "sdegan": {
        "batch": 128,
        "lr": 0.1,
        "optimizer": "adadelta",
        "swa_start": 0.5,
        "weight_decay": 0.01,
        "loss": {"d_lr": 0.5, "weight_decay": 0.01, "lipschitz": "clip"},
    },
}


def calibrate(
    prices: Any,
    method: str = "sigkernel",
    window: int = 64,
    steps: int = 300,
    batch: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    resume: bool = False,
    *,
    stride: int = 1,
    optimizer: str | None = None,
    swa: bool = True,
    swa_start: float | None = None,
    checkpoint_every: int = 50,
    max_bad_steps: int = 5,
    adjoint: bool = False,
    grad_clip: float | None = None,
    loss_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, float], None] | None = None,
    num_threads: int | None = 1,
    compile: bool | None = None,
    device: torch.device | str | None = None,
    context: int | None = None,
) -> MarketModel:
    """Calibrate a neural SDE market model to a daily price history.

    The history is cut into overlapping log-price windows (``nsf.data.windows``), normalised by
    the daily return scale, and the model's law of windows is fitted to theirs by minimising
    the loss ``method`` (a key of the loss registry): "sigkernel" (signature-kernel MMD^2,
    Issa et al. 2023) or "sigw1" (Ni et al. 2021); other registered methods (e.g. "sdegan")
    run in the same loop.

        theta* = argmin_theta  L( Law(model windows), Law(data windows) )

    Args:
        prices: daily closes, oldest first: DataFrame (one column per asset), Series or array.
        method: loss name.
        window: steps per window (the model's unit of time).
        steps: optimiser steps.
        batch: paths per step (default per method: sigkernel 32, sigw1 128, sdegan 128).
        lr: learning rate of the generator (default per method: 3e-3; sdegan 0.1).
        seed: seeds the model's initial weights, the noise and the batch draws.
        checkpoint_dir: folder for checkpoints (atomic), and ``model.pt`` at the end.
        progress: show a tqdm bar with the loss and it/s.
        resume: continue from ``checkpoint_dir`` (same arguments required); the final weights
            equal those of an uninterrupted run.
        stride: rows between consecutive windows.
        optimizer: "adam" or "adadelta" (default "adam"; sdegan "adadelta", with weight decay
            0.01, as Kidger et al. recommend for GANs).
        swa: stochastic weight averaging over the last ``1 - swa_start`` of the steps.
        swa_start: fraction of the steps before averaging starts (default 0.75; sdegan 0.5).
        checkpoint_every: steps between checkpoints.
        max_bad_steps: consecutive non-finite steps before stopping with an error.
        adjoint: use the O(1)-memory reversible-Heun adjoint for gradients.
        grad_clip: clip the gradient norm (None: off).
        loss_options: options of the loss (override the method's defaults); for "sdegan" see
            ``SDEGANLoss`` (hidden, width, depth, d_lr, weight_decay, lipschitz, gp_coeff,
            gp_method, init_scale).
        model_options: options of ``MarketModel`` (latent, noise, width, depth, time_input ...).
        dtype: training dtype.
        callback: ``callback(step, loss)`` after every step (on every rank under torchrun).
        num_threads: torch intra-op threads during training, restored afterwards (None: leave
            as is). The networks are small, so one thread is fastest; on a shared machine
            extra threads can be much slower (benchmarks/README.md).
        compile: ``torch.compile`` the reversible-Heun steps of the fused networks (adjoint
            solves, the sdegan discriminator). None: ``NEURALSDE_FIN_COMPILE`` if set, else on
            for runs of at least 1000 steps, which pay back the 20-30 s of compilation. Falls
            back to eager, with one warning, if compilation fails. Not part of the run's
            identity: a resumed run may change it (results then differ by float rounding).
        device: where the model trains (e.g. "cuda"): the windows are moved there once and the
            whole step (simulation, adjoint, loss) runs there; the returned model stays on it
            (``model.to("cpu")`` to move it). Default: the CPU.
        context: None (the law of windows), or C trading days: the model learns the law of the
            next ``window`` days given the previous C. Training pairs are the (context, window)
            stretches of the history; the generated window starts from the context's features
            (``_models/_context.py``) and the loss compares the joint paths (real context
            followed by the generated window, against the real stretch), so every method fits
            the conditional law. ``model.sample(..., history=...)`` then starts from today's
            state; the checkpoint keeps the history's last C + 1 closes as the default start.

    Returns:
        The calibrated ``MarketModel`` (with ``.sample`` and ``.save``).

    Under ``torchrun --nproc_per_node=N`` (environment ``WORLD_SIZE`` = N > 1) the call joins
    the process group (gloo on CPU) and trains data-parallel: each rank simulates its share
    of ``batch`` on disjoint Brownian paths, gradients are summed over ranks, the result equals
    the single-process run up to float rounding, and only rank 0 writes checkpoints,
    ``model.pt`` and the progress bar. Every rank returns the same model.

    Shape:
        prices: (n_dates, n_assets) or (n_dates,).

    References:
        Issa et al. 2023, arXiv 2305.16274; Ni et al. 2021, "Sig-Wasserstein GANs for time
        series generation"; Kidger et al. 2021, arXiv 2102.03657.
    """
    from neuralsde_fin.data import windows

    t_start = time.perf_counter()

    if method not in LOSSES:
        raise ValueError(f"method must be one of {sorted(LOSSES)}, got {method!r}")
    for name, v in (
        ("steps", steps),
        ("window", window),
        ("checkpoint_every", checkpoint_every),
        ("max_bad_steps", max_bad_steps),
    ):
        check_int(name, v)
    defaults = METHOD_DEFAULTS.get(method, {})
    batch = defaults.get("batch", 32) if batch is None else batch
    lr = defaults.get("lr", 3e-3) if lr is None else lr
    optimizer = defaults.get("optimizer", "adam") if optimizer is None else optimizer
    swa_start = defaults.get("swa_start", 0.75) if swa_start is None else swa_start
    weight_decay = defaults.get("weight_decay", 0.0)
    check_int("batch", batch, 2)
    if not (isinstance(lr, (int, float)) and lr > 0 and np.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if not 0.0 <= swa_start < 1.0:
        raise ValueError(f"swa_start must be in [0, 1), got {swa_start!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")

    if context is not None:
        check_int("context", context, 2)
    c = context or 0
    if c and len(prices) < c + window + 1:
        raise ValueError(f"context={c} and window={window} need at least {c + window + 1} prices, "
                         f"got {len(prices)}")
    # with a context: joint (context, window) paths, relative to the context's start
    paths, _ = windows(prices, c + window, stride, dtype=torch.float64)
    logp = np.log(np.asarray(prices, dtype=np.float64))
    logp = logp[:, None] if logp.ndim == 1 else logp
    rets = np.diff(logp, axis=0)
    scale = rets.std(axis=0, ddof=1)
    if not np.all(scale > 0):
        raise ValueError("prices must vary: a daily return standard deviation is zero")

    mopts = dict(model_options or {})
    lopts = {**defaults.get("loss", {}), **(loss_options or {})}
    dev = torch.device("cpu" if device is None else device)
    with torch.random.fork_rng(devices=[]):
        # the model's and the loss's own initial weights (e.g. a discriminator) follow the seed
        torch.manual_seed(seed)
        n_stationary = 0 if context is None else min(STATIONARY_CONTEXTS, paths.shape[0])
        model = MarketModel(
            paths.shape[-1], window=window, dt_data=1.0 / TRADING_DAYS, return_scale=scale,
            context=context, stationary=n_stationary, **mopts
        ).to(dtype=dtype, device=dev)
        loss = get_loss(method, **lopts).to(dtype=dtype, device=dev)
    loss.seed = seed
    real = model.normalise(paths.to(dev)).to(dtype)
    condition = None
    if context is not None:
        condition = context_features(real[:, : c + 1].double(), window).to(dtype)
        pick = torch.linspace(0, condition.shape[0] - 1, n_stationary).round().long()
        with torch.no_grad():  # the stationary start: training contexts evenly over the history
            model.stationary_features.copy_(condition[pick])
    run_config = dict(
        method=method,
        window=window,
        steps=steps,
        batch=batch,
        lr=float(lr),
        seed=seed,
        stride=stride,
        optimizer=optimizer,
        swa=swa,
        swa_start=float(swa_start),
        checkpoint_every=checkpoint_every,
        loss=lopts,
        model=mopts,
        dtype=str(dtype),
        n_windows=int(paths.shape[0]),
        context=context,
        scale=[float(s) for s in scale],
        adjoint=adjoint,
        grad_clip=grad_clip,
        weight_decay=weight_decay,
    )
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        # Under torchrun (WORLD_SIZE > 1) join the process group for the run: data-parallel
        # training (see ``_train``), rank 0 writes; ranks meet at a barrier before returning.
        with _dist.process_group(real.device) as (rank, world):
            if batch < world:
                raise ValueError(f"batch must be >= the number of ranks ({world}), got {batch}")
            model = train(
                model,
                loss,
                real,
                steps=steps,
                batch=batch,
                lr=float(lr),
                seed=seed,
                optimizer=optimizer,
                swa=swa,
                swa_start=swa_start,
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every,
                resume=resume,
                progress=progress,
                max_bad_steps=max_bad_steps,
                adjoint=adjoint,
                grad_clip=grad_clip,
                callback=callback,
                run_config=run_config,
                weight_decay=weight_decay,
                compile=compile,
                condition=condition,
            )
            model.info.update(method=method, loss_options=lopts, window=window, context=context,
                              wall_time_s=round(time.perf_counter() - t_start, 2),
                              **_provenance(prices, context))
            if checkpoint_dir is not None and rank == 0:
                model.save(os.path.join(os.fspath(checkpoint_dir), "model.pt"))
    finally:
        torch.set_num_threads(old_threads)
    return model


def _provenance(prices: Any, context: int | None = None) -> dict[str, Any]:
    """What a checkpoint records of its data: source, assets, dates, last closes, and for a
    conditional model the trailing context (its last C + 1 closes and dates: the default
    start of ``sample`` / ``price`` / ``report``)."""
    import pandas as pd

    if isinstance(prices, pd.Series):
        prices = prices.to_frame()
    if not isinstance(prices, pd.DataFrame):
        arr = np.asarray(prices, dtype=np.float64)
        arr = arr[:, None] if arr.ndim == 1 else arr
        out = {"assets": [f"asset{j}" for j in range(arr.shape[1])],
               "last_prices": [float(v) for v in arr[-1]]}
        if context:
            out["trailing_closes"] = arr[-(context + 1):].tolist()
        return out
    out = {
        "assets": [str(c) for c in prices.columns],
        "last_prices": [float(v) for v in prices.iloc[-1].to_numpy()],
        "data": prices.attrs.get("source", "<DataFrame>"),
    }
    if isinstance(prices.index, pd.DatetimeIndex):
        out.update(first_date=str(prices.index[0].date()), last_date=str(prices.index[-1].date()))
    if context:
        tail = prices.iloc[-(context + 1):]
        out["trailing_closes"] = tail.to_numpy(dtype=np.float64).tolist()
        out["trailing_dates"] = [str(d.date()) if hasattr(d, "date") else str(d)
                                 for d in tail.index]
    return out
