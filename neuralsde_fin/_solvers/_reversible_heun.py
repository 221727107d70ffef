"""Reversible Heun, an algebraically reversible Stratonovich scheme.

State (y, z, f, g) with f = f(t, z), g = g(t, z); one vector-field evaluation per step:

    z1 = 2 y - z + f dt + g dW
    f1, g1 = f(t + dt, z1), g(t + dt, z1)
    y1 = y + (f + f1) dt / 2 + (g + g1) dW / 2

and exactly invertible from (y1, z1, f1, g1) and the same dW:

    z = 2 y1 - z1 - f1 dt - g1 dW,   f, g = f(t, z), g(t, z),
    y = y1 - (f + f1) dt / 2 - (g + g1) dW / 2

which the adjoint (``_adjoint.py``) uses to rebuild every state backwards instead of storing the
trajectory. Strong order 0.5 (1.0 for additive noise).

Log-price rows (a field's ``euler_rows`` = E > 0, ``_fused.LogPriceRows``): rows i < E are Ito
rows stepped at the left point, y1_i = y_i + f_i dt + (g dW)_i with f, g = f(t, z), g(t, z) the
values the scheme already holds; the field's nets do not read them. The market model's
risk-neutral log-prices are such rows (an exact discrete martingale after exponentiation).

Implementation: g_{n+1} enters two products, g_{n+1} dW_n (in y_{n+1}) and g_{n+1} dW_{n+1} (in
the next step), so both are formed by one batched matmul right after the evaluation and only the
products (batch, state) are carried, never g itself.

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493, section 3.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neuralsde_fin._solvers._base import Solver, register
from neuralsde_fin._solvers._compiled import (
    compiled_function,
    compiled_step,
)
from neuralsde_fin._solvers._native_step import native_sampler, native_wanted


def forward_steps(
    vf,
    state: tuple[Tensor, Tensor, Tensor, Tensor],
    tlist: list[Tensor],
    dts: list[float],
    lo: int,
    dws: Tensor,
    dw_after: Tensor | None,
    save: Callable[[int, Tensor], None] | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reversible Heun steps lo .. lo + len(dws) - 1.

    Args:
        vf: vector field (``f_and_g``, ``prod``, ``prod_pair``).
        state: (y, z, f, gdw) at step lo, where gdw = g(t_lo, z) dW_lo.
        tlist, dts: grid times (0-dim tensors) and step sizes (floats).
        lo: index of the first step.
        dws: increments of these steps, (n, batch, noise).
        dw_after: increment of the step after the last (None if there is none).
        save: called as save(n, y_n) after each step n (grid index of y).

    Returns:
        The state after the last step, with gdw for the following step (None at the end).
    """
    y, z, f, gdw = state
    count = dws.shape[0]
    step = None
    if not torch.is_grad_enabled():
        # any field without autograd: a user's own SDE too (Dynamo traces its f and g)
        step = compiled_function(forward_step, "reversible Heun step")
    if step is None:
        step, f_and_g, dt_args = forward_step, vf.f_and_g, dts[lo : lo + count]
        # g is used at once (only its products are carried), so without autograd the fused
        # fields may write it into a buffer reused from step to step
        if not torch.is_grad_enabled():
            f_and_g = getattr(vf, "f_and_g_scratch", f_and_g)
    else:  # compiled: dt as a tensor (a float would be a constant of the graph)
        f_and_g = vf.f_and_g
        if z is y:  # the first step: aliased inputs would be one more compiled variant
            z = y.clone()
        dt_args = [torch.tensor(dts[lo + i], dtype=y.dtype, device=y.device) for i in range(count)]
    for i in range(count):
        n = lo + i
        dw_next = dws[i + 1] if i + 1 < count else dw_after
        last = dw_next is None
        if last:
            dw_next = torch.zeros_like(dws[i])
        y, z, f, gdw = step(vf, f_and_g, y, z, f, gdw, tlist[n + 1], dt_args[i], dws[i], dw_next)
        if last:
            gdw = None
        if save is not None:
            save(n + 1, y)
    return y, z, f, gdw


def forward_step(vf, f_and_g, y, z, f, gdw, t1, dt, dw, dw_next):
    """One reversible Heun step from (y, z, f, g dW) at t1 - dt to the same at t1.

    ``f_and_g`` is ``vf``'s evaluation (or its scratch-buffer variant); ``dt`` a float, or a
    0-dim tensor in the compiled step; ``dw_next`` is the increment of the following step.

    Shape:
        y, z, f, gdw: (batch, state); dw, dw_next: (batch, noise).
    """
    e = vf.euler_rows
    if e:  # log-price rows: y_i + f_i dt + (g dW)_i at the left point (before f, gdw move on)
        ye = axpy(gdw[:, :e], dt, f[:, :e]).add_(y[:, :e])
    z1 = axpy(gdw, dt, f).add_(y, alpha=2.0).sub_(z)
    f1, g1 = f_and_g(t1, z1)
    g1dw, g1dw_next = vf.prod_pair(g1, dw, dw_next)
    h = 0.5 * dt
    y = axpy(axpy(y, h, f), h, f1, inplace=True).add_(gdw, alpha=0.5).add_(g1dw, alpha=0.5)
    if e:
        y = torch.cat([ye, y[:, e:]], dim=1)
    return y, z1, f1, g1dw_next


def axpy(x: Tensor, a: float | Tensor, y: Tensor, *, inplace: bool = False) -> Tensor:
    """x + a y as one fused op when a is a Python number (eager), else x + y * a (a 0-dim
    tensor: the compiled steps take dt as an input). ``inplace`` updates x (a temporary)."""
    if isinstance(a, (int, float)):
        return x.add_(y, alpha=a) if inplace else torch.add(x, y, alpha=a)
    return x.add_(y * a) if inplace else torch.add(x, y * a)


@register("reversible_heun")
class ReversibleHeun(Solver):
    """Reversible Heun (Stratonovich); the only method with the exact O(1)-memory adjoint."""

    sde_type = "stratonovich"

    def init(self, vf, t0, y0):
        f0, g0 = vf.f_and_g(t0, y0)
        return (y0, f0, g0)

    def step(self, vf, t0, t1, dt, y, extra, dw):
        """The textbook step (the reference the fast loop of :func:`forward_steps` is tested
        against); ``extra`` is (z, f(t0, z), g(t0, z))."""
        z, f0, g0 = extra
        g0dw = vf.prod(g0, dw)
        z1 = 2 * y - z + f0 * dt + g0dw
        f1, g1 = vf.f_and_g(t1, z1)
        y1 = y + (f0 + f1) * (0.5 * dt) + vf.prod(g0 + g1, 0.5 * dw)
        e = vf.euler_rows
        if e:
            y1 = torch.cat([y[:, :e] + f0[:, :e] * dt + g0dw[:, :e], y1[:, e:]], dim=1)
        return y1, (z1, f1, g1)

    def solve(self, vf, y0, tlist, dts, dws, out_steps):
        save_at = dict((s, k) for k, s in enumerate(out_steps))
        track = torch.is_grad_enabled()
        if track:
            outs: list[Tensor] = [y0] if 0 in save_at else []

            def save(n, y):
                if n in save_at:
                    outs.append(y)

        else:
            out = y0.new_empty((len(out_steps), *y0.shape))
            if 0 in save_at:
                out[save_at[0]] = y0

            def save(n, y):
                k = save_at.get(n)
                if k is not None:
                    out[k] = y

        if not track and native_wanted():
            native = native_sampler(vf, y0)
            if native is not None:  # the CPU form of the compiled sampling step
                native.solve(y0, tlist, dts, dws, out, save_at)
                return out
        compiled = None if track else compiled_step(vf, y0)
        if compiled is not None:
            _compiled_steps(compiled, y0, tlist, dts, dws, save)
            return out
        f0, g0 = vf.f_and_g(tlist[0], y0)
        forward_steps(vf, (y0, y0, f0, vf.prod(g0, dws[0])), tlist, dts, 0, dws, None, save)
        return torch.stack(outs) if track else out


def _compiled_steps(compiled, y0, tlist, dts, dws, save) -> None:
    """The no-autograd step loop through the compiled step of ``_compiled.py``."""
    step, first = compiled
    f, gdw = first(tlist[0], y0, dws[0])
    y, z = y0, y0.clone()  # distinct tensors: aliasing would be one more compiled variant
    # every dW (and the zero after the last) a view of one tensor: one compiled variant
    dwx = torch.cat([dws, torch.zeros_like(dws[:1])])
    dt_t = [torch.tensor(dt, dtype=y0.dtype, device=y0.device) for dt in dts]
    for n in range(dws.shape[0]):
        y, z, f, gdw = step(y, z, f, gdw, tlist[n + 1], dt_t[n], dwx[n], dwx[n + 1])
        save(n + 1, y)
