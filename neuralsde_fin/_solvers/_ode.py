"""Neural ODEs: ``odeint`` with a solver registry, and ``ODEBlock``, a continuous-depth layer.

A neural ODE (Chen et al. 2018) is the continuous-time limit of a residual network,
h_{k+1} = h_k + f(h_k) becomes dh/dt = f(t, h), solved numerically and differentiated either
by backpropagating through the solver's operations or by an adjoint method.

Methods (``ODE_SOLVERS``; add one with ``@register("name")`` on an ``ODESolver`` subclass):

- ``"reversible_heun"``: reversible Heun (Kidger et al. 2021) with zero diffusion, an
  algebraically reversible ODE solver of order 2 with one evaluation of ``func`` per step.
  ``adjoint=True`` rebuilds the states backwards from the endpoint and gives the gradients of
  the discretised solve exactly (to float rounding) in memory independent of the number of steps.
- ``"rk4"``: the fourth-order Runge-Kutta 3/8 rule (Kutta 1901), fixed steps, the same scheme as
  torchdiffeq's ``"rk4"`` (its ``rk4_alt_step_func``); four evaluations per step.
- ``"dopri5"``: Dormand-Prince 5(4) (Dormand & Prince 1980) with Hairer's step-size control
  (PI controller, Hairer, Norsett & Wanner 1993, II.4 and IV.2) and his dense output of
  order 4 at the requested ``ts``; gradients by backpropagation through the accepted steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from neuralsde_fin._registry import registrar
from neuralsde_fin._solvers._adjoint import Plan, ReversibleHeunAdjoint
from neuralsde_fin._solvers._base import VectorField
from neuralsde_fin._solvers._reversible_heun import ReversibleHeun as _SDEReversibleHeun
from neuralsde_fin._solvers._sdeint import ADJOINT_CHUNK_STEPS, _as_times, build_grid
from neuralsde_fin._validate import check_int

__all__ = ["ODE_SOLVERS", "ODEBlock", "ODESolver", "odeint", "register"]

ODEFunc = Callable[[Tensor, Tensor], Tensor]

ODE_SOLVERS: dict[str, type[ODESolver]] = {}


#: Class decorator adding a class to ``ODE_SOLVERS`` under ``name`` (sets ``cls.name``).
register = registrar(ODE_SOLVERS, "ODE solver")


class ODESolver:
    """Root of the ODE solvers: capabilities as class attributes, one ``solve`` method.

    ``solve`` receives validated inputs only: the public ``odeint`` checks them once, and its
    shape probe's evaluation ``f0 = func(ts[0], y0)`` is passed on when the method can reuse it.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0
    adaptive: ClassVar[bool] = False  # True: steps chosen from rtol/atol; dt is the first step
    supports_adjoint: ClassVar[bool] = False  # True: adjoint=True gives exact O(1)-memory grads

    def __init__(self, *, rtol: float, atol: float, max_steps: int) -> None:
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps

    def solve(
        self,
        func: ODEFunc,
        y0: Tensor,
        ts: Tensor,
        grid: _Grid | None,
        dt: float | None,
        f0: Tensor | None,
        adjoint_params: tuple[Tensor, ...] | None,
    ) -> Tensor:
        """Solve from y0 at ts[0] and return the solution at every time of ``ts``.

        ``grid`` is the fixed step grid (None for adaptive methods), ``f0`` is
        ``func(ts[0], y0)`` when the boundary already evaluated it (else None), and
        ``adjoint_params`` is None without adjoint, else the parameters to differentiate.
        """
        raise NotImplementedError


class _Grid:
    """A fixed step grid: times as 0-dim tensors, step sizes, and the grid index of each ts."""

    def __init__(self, ts: Tensor, dt: float | None) -> None:
        grid, self.out_steps = build_grid(ts, dt)  # the solver core's grid and its dt check
        self.tlist = list(grid.unbind(0))
        self.dts = (grid[1:] - grid[:-1]).tolist()


# ----------------------------------------------------------------------------------------------
# Fixed grids


@register("rk4")
class RK4(ODESolver):
    """Classical fourth-order Runge-Kutta, Kutta's 3/8 rule (torchdiffeq's ``"rk4"``).

    .. math::
        k_1 = f(t, y),\\quad k_2 = f(t + h/3, y + h k_1/3),\\quad
        k_3 = f(t + 2h/3, y + h (k_2 - k_1/3)),\\quad k_4 = f(t + h, y + h (k_1 - k_2 + k_3)),

        y_{n+1} = y_n + h (k_1 + 3 k_2 + 3 k_3 + k_4) / 8.

    Four evaluations of f per step.
    """

    order = 4

    def solve(self, func, y0, ts, grid, dt, f0, adjoint_params):  # noqa: D102
        tl, dts = grid.tlist, grid.dts
        save_at = set(grid.out_steps)
        outs = [y0]
        y, k1 = y0, f0
        third = 1.0 / 3.0
        for n in range(len(dts)):
            t, h = tl[n], dts[n]
            if k1 is None:
                k1 = func(t, y)
            # Increments are summed before they meet y (one rounding at y's scale), in
            # torchdiffeq's association, so that float32 results agree to rounding too.
            k2 = func(t + h * third, y + h * k1 * third)
            k3 = func(t + h * (2 * third), y + h * (k2 - k1 * third))
            k4 = func(tl[n + 1], y + h * (k1 - k2 + k3))
            y = y + (k1 + 3 * (k2 + k3) + k4) * h * 0.125
            k1 = None
            if n + 1 in save_at:
                outs.append(y)
        return torch.stack(outs)


class _ODEVectorField(VectorField):
    """The ODE dy = f(t, y) dt as an SDE with zero diffusion, for the solver core.

    g is a 0-dim zero and every product g dW is a zero tensor shaped like the state (allocated
    once per solve; the core never writes into it), so the core's reversible Heun step and its
    adjoint reduce exactly to the ODE scheme. The same trick as the core's CDE field, with the
    roles of f and g swapped.
    """

    def __init__(self, func: ODEFunc, like: Tensor, params: tuple[Tensor, ...] = ()) -> None:
        self.sde = func
        self.diagonal = False
        self.func = func
        self._g = like.new_zeros(())
        self._gdw = torch.zeros_like(like)
        self._params = list(params)

    def params(self) -> list[Tensor]:
        return self._params

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.func(t, y), self._g

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        return self._gdw

    def prod_pair(self, g: Tensor, dw_a: Tensor, dw_b: Tensor) -> tuple[Tensor, Tensor]:
        return self._gdw, self._gdw

    def outer_pair(self, u: Tensor, dw_a: Tensor, v: Tensor, dw_b: Tensor) -> Tensor:
        return self._g

    def prod_adjoint(self, a: Tensor, dw: Tensor) -> Tensor:
        return self._g

    def prod_adjoint_dw(self, a: Tensor, g: Tensor) -> Tensor:
        return self._g


@register("reversible_heun")
class ReversibleHeun(ODESolver):
    """Reversible Heun with zero diffusion: an algebraically reversible ODE solver of order 2.

    State (y, z, f) with f = f(t, z), z_0 = y_0:

    .. math::
        z_{n+1} = 2 y_n - z_n + f(t_n, z_n) h,\\qquad
        y_{n+1} = y_n + (f(t_n, z_n) + f(t_{n+1}, z_{n+1})) h / 2,

    inverted exactly by z_n = 2 y_{n+1} - z_{n+1} - f(t_{n+1}, z_{n+1}) h, so the adjoint rebuilds
    every state backwards instead of storing it. One evaluation of f per step. Both directions
    run the solver core's reversible Heun (``sdeint``'s step and ``ReversibleHeunAdjoint``) on the
    ODE seen as an SDE with zero diffusion.
    """

    order = 2
    supports_adjoint = True

    def solve(self, func, y0, ts, grid, dt, f0, adjoint_params):  # noqa: D102
        n_steps = len(grid.dts)
        if adjoint_params is not None:
            vf = _ODEVectorField(func, y0, adjoint_params)
            # No noise: the core fetches "increments" of width 0 in chunks.
            fetch = lambda lo, hi: y0.new_zeros(hi - lo, 0)
            plan = Plan(vf, grid.tlist, grid.dts, grid.out_steps, fetch, ADJOINT_CHUNK_STEPS)
            return ReversibleHeunAdjoint.apply(plan, y0, None, *vf.params())
        vf = _ODEVectorField(func, y0)
        dws = y0.new_zeros(n_steps, 0)
        return _SDEReversibleHeun().solve(vf, y0, grid.tlist, grid.dts, dws, grid.out_steps)


# ----------------------------------------------------------------------------------------------
# Dormand-Prince 5(4)

_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# b - bhat: the difference of the fifth- and the embedded fourth-order weights (k1..k7).
_DP_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# Hairer's dense output (contd5): coefficients of the fifth interpolation term.
_DP_D = (
    -12715105075 / 11282082432,
    0.0,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
    701980252875 / 199316789632,
    -1453857185 / 822651844,
    69997945 / 29380423,
)


def _lincomb(y: Tensor | None, h: float, coeffs: tuple[float, ...], ks: list[Tensor]) -> Tensor:
    """y + h * sum_i coeffs[i] * ks[i] (y None: without y), skipping zero coefficients.

    The stages are summed first and meet y once, so y's scale sees a single rounding.
    """
    acc = None
    for c, k in zip(coeffs, ks):
        if c == 0.0:
            continue
        acc = k * c if acc is None else acc.add_(k, alpha=c)
    if y is None:
        return acc.mul_(h)
    return torch.add(y, acc, alpha=h)


def _rms(x: Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


@register("dopri5")
class Dopri5(ODESolver):
    """Dormand-Prince 5(4) with Hairer's PI step-size control and dense output.

    Error per step: err = RMS(e_i / (atol + rtol * max(|y_i|, |y1_i|))) over every element of
    the state (the whole batch), with e = h sum_j (b_j - bhat_j) k_j; a step is accepted when
    err <= 1. Next step h * min(10, max(0.2, 0.9 err^{-0.17} err_prev^{0.04})) (Hairer's DOPRI5,
    beta = 0.04). Values at ``ts`` come from the order-4 dense output, so ``ts`` need not lie on
    any grid; the last step is cut to end exactly at ts[-1].
    """

    order = 5
    adaptive = True

    def _initial_step(self, func, t0: float, y0: Tensor, f0: Tensor, span: float) -> float:
        """Hairer's HINIT (Hairer, Norsett & Wanner 1993, II.4): a first step from y0, f(y0)."""
        with torch.no_grad():
            sc = self.atol + self.rtol * y0.abs()
            d0, d1 = _rms(y0 / sc), _rms(f0 / sc)
            h0 = 1e-6 if d0 <= 1e-10 or d1 <= 1e-10 else 0.01 * d0 / d1
            h0 = min(h0, span)
            t1 = torch.as_tensor(t0 + h0, dtype=y0.dtype, device=y0.device)
            f1 = func(t1, y0 + h0 * f0)
            d2 = _rms((f1 - f0) / sc) / h0
            der = max(d1, d2)
            h1 = max(1e-6, h0 * 1e-3) if der <= 1e-15 else (0.01 / der) ** (1.0 / self.order)
            return min(100 * h0, h1, span)

    def solve(self, func, y0, ts, grid, dt, f0, adjoint_params):  # noqa: D102
        if f0 is None:
            f0 = func(ts[0], y0)
        tsl = ts.tolist()
        t, t_end = tsl[0], tsl[-1]
        span = t_end - t
        h = dt if dt is not None else self._initial_step(func, t, y0, f0, span)
        dtype, device = y0.dtype, y0.device
        tt = lambda s: torch.tensor(s, dtype=dtype, device=device)
        safe, facmin, facmax, beta = 0.9, 0.2, 10.0, 0.04
        expo = 0.2 - 0.75 * beta
        facold = 1e-4
        rejected = False
        outs = [y0]
        j = 1
        y, f = y0, f0
        n_steps = 0
        while j < len(tsl):
            if n_steps >= self.max_steps:
                raise RuntimeError(
                    f"dopri5 took max_steps={self.max_steps} steps before t={t_end} (reached "
                    f"t={t}); the ODE may be stiff, or rtol/atol too tight"
                )
            n_steps += 1
            last = t + h >= t_end
            if last:
                h = t_end - t
            if h <= 1e-14 * max(1.0, abs(t)):
                raise RuntimeError(f"dopri5 step size underflow (h={h:g}) at t={t}")
            ks = [f]
            for i in range(1, 6):
                ks.append(func(tt(t + _DP_C[i] * h), _lincomb(y, h, _DP_A[i], ks)))
            y1 = _lincomb(y, h, _DP_A[6], ks)
            t1 = t_end if last else t + h
            f1 = func(tt(t1), y1)
            ks.append(f1)
            with torch.no_grad():
                e = _lincomb(None, h, _DP_E, ks)
                sc = torch.maximum(y.abs(), y1.abs()).mul_(self.rtol).add_(self.atol)
                err = _rms(e / sc)
            if not math.isfinite(err):
                h *= 0.2
                rejected = True
                continue
            fac11 = max(err, 1e-300) ** expo
            if err <= 1.0:
                fac = min(1.0 / facmin, max(1.0 / facmax, fac11 / facold**beta / safe))
                hnew = h / fac
                if rejected:
                    hnew = min(hnew, h)
                facold = max(err, 1e-4)
                rejected = False
                # Dense output for every requested time in (t, t1].
                if j < len(tsl) and tsl[j] <= t1:
                    ydiff = y1 - y
                    bspl = f * h - ydiff
                    r4 = ydiff - f1 * h - bspl
                    r5 = _lincomb(None, h, _DP_D, ks)
                    while j < len(tsl) and tsl[j] <= t1:
                        if tsl[j] == t1:
                            outs.append(y1)
                        else:
                            th = (tsl[j] - t) / h
                            th1 = 1.0 - th
                            outs.append(y + th * (ydiff + th1 * (bspl + th * (r4 + th1 * r5))))
                        j += 1
                t, y, f = t1, y1, f1
                h = hnew
            else:
                h = h / min(1.0 / facmin, fac11 / safe)
                rejected = True
        return torch.stack(outs)


# ----------------------------------------------------------------------------------------------
# Public boundary


def _check_number(name: str, v: object, *, positive: bool = True) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (v <= 0 if positive else v < 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} finite number, got {v!r}")


class _Prepared:
    """odeint's checked call: everything ``solve`` needs, so ODEBlock can re-run it cheaply."""

    def __init__(self, func, y0, ts, method, dt, adjoint, rtol, atol, max_steps, adjoint_params):
        if method not in ODE_SOLVERS:
            raise ValueError(f"method must be one of {sorted(ODE_SOLVERS)}, got {method!r}")
        cls = ODE_SOLVERS[method]
        if adjoint and not cls.supports_adjoint:
            supported = sorted(k for k, v in ODE_SOLVERS.items() if v.supports_adjoint)
            raise ValueError(
                f"adjoint=True needs an algebraically reversible method {supported}, got "
                f"method={method!r} (use adjoint=False to backpropagate through the solve)"
            )
        if not torch.is_tensor(y0) or not y0.is_floating_point():
            got = f"dtype {y0.dtype}" if torch.is_tensor(y0) else type(y0).__name__
            raise ValueError(f"y0 must be a floating-point tensor, got {got}")
        ts = _as_times(ts, y0)  # the solver core's checks: 1-D, >= 2 times, strictly increasing
        if cls.adaptive:
            _check_number("rtol", rtol, positive=False)
            _check_number("atol", atol, positive=False)
            if rtol == 0 and atol == 0:
                raise ValueError("rtol and atol must not both be 0")
            if dt is not None:
                _check_number("dt", dt)
            check_int("max_steps", max_steps)
            self.grid = None
        else:
            self.grid = _Grid(ts, dt)  # dt must divide every spacing of ts
        if adjoint:
            if adjoint_params is None:
                if not isinstance(func, nn.Module):
                    raise ValueError(
                        "adjoint=True needs func to be an nn.Module (its parameters get "
                        f"gradients) or adjoint_params=..., got func of type {type(func).__name__}"
                    )
                adjoint_params = [p for p in func.parameters() if p.requires_grad]
            adjoint_params = tuple(adjoint_params)
        else:
            adjoint_params = None
        self.cls, self.func, self.ts, self.dt = cls, func, ts, None if dt is None else float(dt)
        self.adjoint_params = adjoint_params
        if cls.adaptive:
            rtol, atol = float(rtol), float(atol)
        self.solver = cls(rtol=rtol, atol=atol, max_steps=max_steps)

    def probe(self, y0: Tensor) -> Tensor | None:
        """Evaluate func once at (ts[0], y0) and check the shape; return it when it is reusable."""
        reuse = self.adjoint_params is None and self.cls is not ReversibleHeun
        with torch.set_grad_enabled(reuse and torch.is_grad_enabled()):
            f0 = self.func(self.ts[0], y0)
        if not torch.is_tensor(f0) or f0.shape != y0.shape:
            got = tuple(f0.shape) if torch.is_tensor(f0) else type(f0).__name__
            raise ValueError(f"func(t, y) must return shape {tuple(y0.shape)} like y0, got {got}")
        return f0 if reuse else None

    def run(self, y0: Tensor, f0: Tensor | None) -> Tensor:
        return self.solver.solve(
            self.func, y0, self.ts, self.grid, self.dt, f0, self.adjoint_params
        )


def odeint(
    func: ODEFunc,
    y0: Tensor,
    ts: Tensor,
    *,
    method: str = "reversible_heun",
    dt: float | None = None,
    adjoint: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100_000,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """Solve the ODE dy/dt = func(t, y) from y(ts[0]) = y0 and return y at every time of ``ts``.

    .. math::
        y(t) = y_0 + \\int_{t_0}^{t} f(s, y(s))\\, ds

    ``func(t, y)`` follows torchdiffeq's convention (t a 0-dim tensor, y shaped like y0, returns
    dy/dt shaped like y0), so torchdiffeq vector fields run unchanged. Inputs are checked once
    here (including one evaluation of func to check its output shape); the step loops trust them.

    Args:
        func: the vector field f(t, y).
        y0: initial state, any shape, typically (batch, state).
        ts: strictly increasing output times (a 1-D tensor or a sequence of floats); ts[0] is
            the initial time.
        method: a key of ``ODE_SOLVERS``: "reversible_heun", "rk4" or "dopri5".
        dt: fixed step of "reversible_heun" and "rk4"; it must divide every spacing of ``ts``.
            None: one step per interval of ``ts``. For "dopri5": the first step (None: Hairer's
            automatic choice).
        adjoint: "reversible_heun" only: gradients by the exact reversible adjoint, which
            rebuilds the states backwards, in memory independent of the number of steps.
        rtol: relative tolerance of "dopri5".
        atol: absolute tolerance of "dopri5".
        max_steps: "dopri5" raises RuntimeError after this many attempted steps.
        adjoint_params: with ``adjoint=True``, the tensors that receive gradients besides y0
            (default: the parameters of ``func``, which must then be an ``nn.Module``).

    Returns:
        The solution at ``ts``; ``out[0]`` is ``y0``.

    Shape:
        y0: (*S), usually (batch, state); ts: (T,); returns (T, *S).

    References:
        Chen, Rubanova, Bettencourt & Duvenaud 2018, "Neural Ordinary Differential Equations",
        arXiv:1806.07366. Kidger, Foster, Li & Lyons 2021, "Efficient and Accurate Gradients for
        Neural SDEs", arXiv:2105.13493 (reversible Heun). Dormand & Prince 1980, "A family of
        embedded Runge-Kutta formulae". Hairer, Norsett & Wanner 1993, "Solving Ordinary
        Differential Equations I", II.4-II.6 (step-size control, dense output).
    """
    prep = _Prepared(func, y0, ts, method, dt, adjoint, rtol, atol, max_steps, adjoint_params)
    return prep.run(y0, prep.probe(y0))


class ODEBlock(nn.Module):
    """A continuous-depth residual block: maps h(0) to h(t1) under dh/dt = func(t, h).

    .. math::
        h(t_1) = h(0) + \\int_0^{t_1} f(t, h(t))\\, dt

    A drop-in replacement for a residual block ``h + f(h)`` (which is one Euler step of this
    ODE): same input and output shape.

    Args:
        func: the vector field f(t, h), an ``nn.Module`` (torchdiffeq's convention).
        t1: the integration time.
        method: see ``odeint``.
        dt: fixed step (None: ``t1 / 10`` for the fixed-step methods; the first step for
            "dopri5").
        adjoint: None: True when the method has an exact adjoint ("reversible_heun").
        rtol: relative tolerance of "dopri5".
        atol: absolute tolerance of "dopri5".

    Shape:
        input: (batch, state), or any shape func accepts; output: the same shape.

    References:
        Chen et al. 2018, "Neural Ordinary Differential Equations"; Kidger et al. 2021,
        "Efficient and Accurate Gradients for Neural SDEs".
    """

    def __init__(
        self,
        func: nn.Module,
        t1: float = 1.0,
        *,
        method: str = "reversible_heun",
        dt: float | None = None,
        adjoint: bool | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-8,
    ) -> None:
        super().__init__()
        if method not in ODE_SOLVERS:
            raise ValueError(f"method must be one of {sorted(ODE_SOLVERS)}, got {method!r}")
        if not (isinstance(t1, (int, float)) and math.isfinite(t1) and t1 > 0):
            raise ValueError(f"t1 must be a positive finite number, got {t1!r}")
        cls = ODE_SOLVERS[method]
        if dt is None and not cls.adaptive:
            dt = t1 / 10
        if adjoint is None:
            adjoint = cls.supports_adjoint
        self.func = func
        self.t1 = float(t1)
        self.method = method
        self.dt = dt
        self.adjoint = bool(adjoint)
        self.rtol = rtol
        self.atol = atol
        # Validate dt against [0, t1] once, here, rather than at every forward.
        if not cls.adaptive:
            _Grid(torch.tensor([0.0, self.t1], dtype=torch.float64), dt)
        self._probed: set[tuple] = set()

    def forward(self, h: Tensor) -> Tensor:  # noqa: D102
        ts = torch.tensor([0.0, self.t1], dtype=h.dtype, device=h.device)
        prep = _Prepared(
            self.func,
            h,
            ts,
            self.method,
            self.dt,
            self.adjoint,
            self.rtol,
            self.atol,
            100_000,
            None,
        )
        # func's output shape is probed (one evaluation) once per input shape, dtype and device.
        key = (tuple(h.shape), h.dtype, h.device)
        f0 = None
        if key not in self._probed:
            f0 = prep.probe(h)
            self._probed.add(key)
        return prep.run(h, f0)[-1]

    def extra_repr(self) -> str:  # noqa: D102
        return f"t1={self.t1}, method={self.method!r}, dt={self.dt}, adjoint={self.adjoint}"
