"""sdeint: fixed-step solve of a torchsde-protocol SDE, with the exact reversible-Heun adjoint."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from neuralsde_fin._brownian import VirtualBrownianTree
from neuralsde_fin._solvers._adjoint import Plan, ReversibleHeunAdjoint
from neuralsde_fin._solvers._base import NOISE_TYPES, SDE_TYPES, SOLVERS, VectorField

#: Steps of Brownian increments fetched at once by the adjoint (forward and backward passes).
ADJOINT_CHUNK_STEPS = 64


def _as_times(ts: Any, like: Tensor) -> Tensor:
    if not torch.is_tensor(ts):
        try:
            ts = torch.tensor(ts, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError) as err:
            raise ValueError(f"ts must be a 1-D tensor or sequence of floats, got {ts!r}") from err
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be 1-D with at least 2 times, got shape {tuple(ts.shape)}")
    ts = ts.to(dtype=like.dtype, device=like.device)
    if not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError(f"ts must be strictly increasing, got {ts.tolist()}")
    return ts


def build_grid(ts: Tensor, dt: float | None) -> tuple[Tensor, list[int]]:
    """The solver grid and the grid index of every output time.

    With ``dt=None`` the grid is ``ts`` itself; otherwise every interval of ``ts`` is cut into
    steps of exactly ``dt`` (its length must be a multiple of ``dt``).
    """
    if dt is None:
        return ts, list(range(len(ts)))
    dt = float(dt)
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    spacing = (ts[1:] - ts[:-1]).tolist()
    counts = [round(h / dt) for h in spacing]
    # time values carry rounding of order eps * |t|: allow that much besides a relative 1e-6
    slack = 16 * torch.finfo(ts.dtype).eps * float(ts.abs().max())
    for h, c in zip(spacing, counts):
        if c < 1 or abs(c * dt - h) > 1e-6 * h + slack:
            raise ValueError(
                f"dt={dt!r} must divide every spacing of ts; got a spacing of {h!r} "
                f"({h / dt:.6g} steps)"
            )
    pieces, out_steps, pos = [], [0], 0
    for k, c in enumerate(counts):
        pieces.append(ts[k] + dt * torch.arange(c, dtype=ts.dtype, device=ts.device))
        pos += c
        out_steps.append(pos)
    pieces.append(ts[-1:])
    return torch.cat(pieces), out_steps


def _probe(vf: Any, sde: Any, noise_type: str, t0: Tensor, y0: Tensor) -> int:
    """Evaluate f and g once at (t0, y0) and check their shapes; return the noise size."""
    with torch.no_grad():
        f, g = vf.f_and_g(t0, y0)
    if not torch.is_tensor(f) or f.shape != y0.shape:
        shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
        raise ValueError(f"sde.f must return shape {tuple(y0.shape)} (batch, state), got {shape}")
    b, d = y0.shape
    gshape = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
    if noise_type == "diagonal":
        if gshape != (b, d):
            raise ValueError(
                f"sde.g must return shape {(b, d)} (batch, state) for noise_type='diagonal', "
                f"got {gshape}"
            )
        return d
    if noise_type == "scalar":
        if gshape != (b, d, 1):
            raise ValueError(
                f"sde.g must return shape {(b, d, 1)} for noise_type='scalar', got {gshape}"
            )
        return 1
    if not torch.is_tensor(g) or g.dim() != 3 or g.shape[:2] != (b, d):
        raise ValueError(
            f"sde.g must return shape ({b}, {d}, noise) (batch, state, noise) for "
            f"noise_type={noise_type!r}, got {gshape}"
        )
    return g.shape[2]


def make_fetch(bm: Any, grid: Tensor):
    """fetch(lo, hi) -> increments over grid[lo:hi+1], shape (hi - lo, *bm_shape)."""
    if hasattr(bm, "increments"):
        return lambda lo, hi: bm.increments(grid[lo : hi + 1])
    return lambda lo, hi: torch.stack([bm(grid[i], grid[i + 1]) for i in range(lo, hi)])


def vector_field(sde: Any, noise_type: str) -> Any:
    """The fast vector field of this package's modules, else the generic adapter."""
    fast = getattr(sde, "_nsf_vector_field", None)
    return fast() if fast is not None else VectorField(sde, noise_type)


def sdeint(
    sde: Any,
    y0: Tensor,
    ts: Tensor | Any,
    *,
    bm: Any = None,
    method: str = "reversible_heun",
    dt: float | None = None,
    adjoint: bool = False,
    seed: int = 0,
) -> Tensor:
    r"""Solve an SDE on a fixed grid and return the solution at ``ts``.

    The SDE is read in the Ito or the Stratonovich sense, as ``sde.sde_type`` says:

    .. math::
        dy_t = f(t, y_t)\,dt + g(t, y_t)\,dW_t,\qquad y_{t_0} = y_0

    ``sde`` follows torchsde's protocol: ``f(t, y)``, ``g(t, y)``, optionally ``f_and_g(t, y)``,
    and attributes ``sde_type`` ("ito" or "stratonovich") and ``noise_type`` ("diagonal",
    "general", "additive" or "scalar"). Methods: "euler" (Ito), "heun" and "reversible_heun"
    (Stratonovich); see ``SOLVERS``. Inputs are checked once here; the step loop trusts them.
    Inside ``nsf.compiled_solvers()`` (or with ``NEURALSDE_FIN_COMPILE=1``), reversible-Heun
    solves of the package's fused fields (``MLPDriftDiffusion``) run ``torch.compile``-d steps
    when sampling (no autograd) and with ``adjoint=True``, forward and backward
    (``_compiled.py``); training runs of at least 1000 steps do so by default.

    Args:
        sde: the SDE (usually an ``nn.Module``; its parameters get gradients).
        y0: initial state.
        ts: increasing output times; the solve runs over [ts[0], ts[-1]].
        bm: Brownian motion, any object with ``bm(s, t)`` (and ideally ``bm.increments(ts)``),
            of shape (batch, noise) ((batch, state) for diagonal noise). None builds
            ``VirtualBrownianTree(ts[0], ts[-1], shape, seed=seed)``.
        method: solver name, a key of ``SOLVERS``.
        dt: step size; must divide every spacing of ``ts``. None steps on ``ts`` itself.
        adjoint: backpropagate with the exact O(1)-memory adjoint (reversible Heun only):
            states are rebuilt backwards, nothing of the trajectory is stored.
        seed: seed of the default Brownian tree.

    Returns:
        The solution at every time of ``ts``.

    Shape:
        y0: (batch, state); ts: (n_times,); returns (n_times, batch, state).

    References:
        Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
        arXiv:2105.13493. Li, Wong, Chen, Duvenaud (2020), Scalable Gradients for Stochastic
        Differential Equations, arXiv:2001.01328 (the SDE protocol of torchsde).
    """
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
    solver = SOLVERS[method]()
    sde_type = getattr(sde, "sde_type", None)
    noise_type = getattr(sde, "noise_type", None)
    if sde_type not in SDE_TYPES:
        raise ValueError(f"sde.sde_type must be one of {SDE_TYPES}, got {sde_type!r}")
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"sde.noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    if sde_type != solver.sde_type:
        raise ValueError(
            f"method={method!r} solves {solver.sde_type} SDEs but sde.sde_type={sde_type!r}; "
            f"use a {sde_type} method or convert the drift"
        )
    if not torch.is_tensor(y0) or y0.dim() != 2:
        shape = tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__
        raise ValueError(f"y0 must be a tensor of shape (batch, state), got {shape}")
    if adjoint and method != "reversible_heun":
        raise ValueError(f"adjoint=True needs method='reversible_heun', got method={method!r}")
    ts = _as_times(ts, y0)
    grid, out_steps = build_grid(ts, dt)
    vf = vector_field(sde, noise_type)
    if vf.euler_rows and (method != "reversible_heun" or adjoint):
        raise ValueError(
            f"a field with log-price rows needs method='reversible_heun' without the adjoint "
            f"(sampling), got method={method!r}, adjoint={adjoint}"
        )
    noise = _probe(vf, sde, noise_type, ts[0], y0)
    bm_shape = (y0.shape[0], noise)
    dts = (grid[1:] - grid[:-1]).tolist()
    if bm is None:
        # Leaves no wider than the smallest step: on a uniform grid every grid time is a tree
        # node, so the whole grid costs one normal per step per (path, channel).
        bm = VirtualBrownianTree(
            ts[0].item(),
            ts[-1].item(),
            bm_shape,
            seed=seed,
            tol=min(dts),
            dtype=y0.dtype,
            device=y0.device,
        )
    elif hasattr(bm, "shape") and tuple(bm.shape) != bm_shape:
        raise ValueError(f"bm must have shape {bm_shape} (batch, noise), got {tuple(bm.shape)}")
    elif getattr(bm, "dtype", y0.dtype) != y0.dtype:
        raise ValueError(f"bm must have y0's dtype {y0.dtype}, got {bm.dtype}")
    fetch = make_fetch(bm, grid)
    tlist = [t.clone() for t in grid.unbind(0)]  # own storage: autograd saves t, not the grid
    if adjoint:
        plan = Plan(vf, tlist, dts, out_steps, fetch, ADJOINT_CHUNK_STEPS)
        return ReversibleHeunAdjoint.apply(plan, y0, None, *vf.params())
    return solver.solve(vf, y0, tlist, dts, fetch(0, len(dts)), out_steps)
