"""Exact O(1)-memory adjoint of reversible Heun: rebuild the states backwards, one VJP per step.

Forward step n (state (y, z, f, g) at t_n, increment dW_n, step dt_n):

    z_{n+1} = 2 y_n - z_n + f_n dt + g_n dW_n,     f_{n+1}, g_{n+1} = F(t_{n+1}, z_{n+1})
    y_{n+1} = y_n + (f_n + f_{n+1}) dt / 2 + (g_n + g_{n+1}) dW_n / 2

Backward step n, with adjoints (a_y, a_z, a_f, a_g) of the state at t_{n+1}:

    a_f' = a_f + a_y dt / 2,   a_g' = a_g + a_y (x) dW / 2       (f_{n+1}, g_{n+1} enter y_{n+1})
    a_z' = a_z + [d(f, g)/dz]^T (a_f', a_g');  a_theta += [d(f, g)/dtheta]^T (a_f', a_g')
    z_n = 2 y_{n+1} - z_{n+1} - f_{n+1} dt - g_{n+1} dW;  f_n, g_n = F(t_n, z_n);
    y_n = y_{n+1} - (f_n + f_{n+1}) dt / 2 - (g_n + g_{n+1}) dW / 2
    a_y <- a_y + 2 a_z',  a_z <- -a_z',
    a_f <- a_y dt / 2 + a_z' dt,  a_g <- (a_y / 2 + a_z') (x) dW

The evaluation F(t_n, z_n) is recorded once and reused for the VJP of the next backward step, so
each step costs one vector-field evaluation and one VJP (torchsde's adjoint reversible Heun makes
two evaluations). The evaluation and the VJP are the vector field's ``record`` / ``vjp``: autograd
for a generic SDE, a hand-written backward (no autograd graph or engine) for this package's
fused fields. Gradients equal those of backpropagating through the discretised solve up to
float rounding. Brownian increments are fetched in chunks, in reverse, so memory does not grow
with the number of steps.

The forward pass of a large solve of this package's drift / diffusion MLPs on the CPU runs the
native sampling kernel (``_native_step``, 8% off the benchmark's training step). The backward
step is one function, :func:`backward_step`; with compiled solver steps enabled
(``nsf.compiled_solvers()``) and a fused field it runs ``torch.compile``-d (``_compiled.py``),
which fuses its elementwise work (LipSwish derivatives, the g dW adjoints, the reverse update)
around the GEMMs.

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493, section 3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from neuralsde_fin._solvers._compiled import compilable, compiled_function
from neuralsde_fin._solvers._native_step import native_sampler, native_wanted
from neuralsde_fin._solvers._reversible_heun import axpy, forward_steps


class Plan:
    """Everything the adjoint needs besides tensors: vector field, grid, output steps, increments.

    Attributes:
        vf: a :class:`~neuralsde_fin._solvers._base.VectorField`-like object.
        tlist: the grid times as 0-dim tensors, length n_steps + 1.
        dts: the step sizes as Python floats, length n_steps.
        out_steps: grid index of each output time (ts[k] is grid point out_steps[k]).
        fetch: fetch(lo, hi) -> increments of steps lo..hi-1, shape (hi - lo, batch, noise);
            None when the increments are an input tensor (cdeint's dX).
        chunk: number of steps fetched at once.
    """

    def __init__(
        self,
        vf: Any,
        tlist: list[Tensor],
        dts: list[float],
        out_steps: list[int],
        fetch: Callable[[int, int], Tensor] | None,
        chunk: int,
    ) -> None:
        self.vf = vf
        self.tlist = tlist
        self.dts = dts
        self.out_steps = out_steps
        self.fetch = fetch
        self.chunk = chunk


def _chunk_iter(plan: Plan, dw_input: Tensor | None, n_steps: int, reverse: bool):
    """Yield (lo, hi, dws, neighbour): increments of steps lo..hi-1 and of the adjacent step.

    The neighbour is the increment of step hi (forward) or lo - 1 (reverse), None at the ends.
    At most two chunks of increments are alive at a time.
    """

    def get(lo: int, hi: int) -> Tensor:
        return dw_input[lo:hi] if plan.fetch is None else plan.fetch(lo, hi)

    bounds = [(lo, min(lo + plan.chunk, n_steps)) for lo in range(0, n_steps, plan.chunk)]
    if reverse:
        bounds.reverse()
    cur = get(*bounds[0])
    for i, (lo, hi) in enumerate(bounds):
        nxt = get(*bounds[i + 1]) if i + 1 < len(bounds) else None
        if nxt is None:
            neighbour = None
        else:
            neighbour = nxt[-1] if reverse else nxt[0]
        yield lo, hi, cur, neighbour
        cur = nxt


def _reverse_steps(plan: Plan, dw_input: Tensor | None, n_steps: int):
    """Yield (n, dW_n, dW_{n-1}) for n = n_steps - 1 .. 0, dW_{-1} = 0, fetched in chunks."""
    for lo, hi, dws, below in _chunk_iter(plan, dw_input, n_steps, reverse=True):
        for n in range(hi - 1, lo - 1, -1):
            dw_below = dws[n - lo - 1] if n > lo else below
            yield n, dws[n - lo], torch.zeros_like(dws[0]) if dw_below is None else dw_below


#: Backward steps per call of the compiled step function: fewer calls (guards, Python) and
#: elementwise work fused across step boundaries (about 6% per SDE-GAN step against 1).
UNROLL = 2


class ReversibleHeunAdjoint(torch.autograd.Function):
    """autograd Function: (plan, y0, dw_input, *params) -> ys of shape (len(ts), batch, state).

    ``dw_input`` is None (increments come from ``plan.fetch``) or a tensor (n_steps, batch,
    noise) of increments that receives a gradient (the control increments of a CDE).
    ``params`` are ``plan.vf.params()``; the backward pass evaluates ``plan.vf.for_backward()``,
    a copy of the vector field on leaf tensors, and returns their gradients.
    """

    @staticmethod
    def forward(ctx, plan: Plan, y0: Tensor, dw_input: Tensor | None, *params: Tensor) -> Tensor:
        vf = plan.vf
        n_steps = len(plan.dts)
        # no graph inside (requires_grad would also make a second variant of a compiled step),
        # and rows dW_n contiguous, like the zeros the steps use at the ends
        y0 = y0.detach()
        if dw_input is not None:
            dw_input = dw_input.detach().contiguous()
        save_at = dict((s, k) for k, s in enumerate(plan.out_steps))
        out = y0.new_empty((len(plan.out_steps), *y0.shape))
        if 0 in save_at:
            out[save_at[0]] = y0

        def save(n: int, y: Tensor) -> None:
            k = save_at.get(n)
            if k is not None:
                out[k] = y

        native = None
        if dw_input is None and native_wanted():
            native = native_sampler(vf, y0)  # the sampling kernel: only y_N, z_N are kept
        run = None if native is None else native.begin(y0, plan.tlist, plan.dts, out, save_at)
        state = None
        for lo, _, dws, after in _chunk_iter(plan, dw_input, n_steps, reverse=False):
            if run is not None:
                run.advance(lo, dws, after)
                continue
            if state is None:
                f0, g0 = vf.f_and_g(plan.tlist[0], y0)
                state = (y0, y0, f0, vf.prod(g0, dws[0]))
            state = forward_steps(vf, state, plan.tlist, plan.dts, lo, dws, after, save)
        if run is not None:
            state = (run.y, run.z)
        ctx.plan = plan
        ctx.has_dw_input = dw_input is not None
        ctx.save_for_backward(state[0], state[1], dw_input)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        plan = ctx.plan
        vf, params = plan.vf.for_backward()
        tl, dts = plan.tlist, plan.dts
        n_steps = len(dts)
        y1, z1, dw_input = ctx.saved_tensors
        save_at = dict((s, k) for k, s in enumerate(plan.out_steps))
        want_dw = ctx.has_dw_input and ctx.needs_input_grad[2]
        grad_dw = torch.empty_like(dw_input) if want_dw else None
        grads_p: list[Tensor | None] = [None] * len(params)
        steps_fn = compiled_function(backward_steps, "adjoint step") if compilable(vf) else None
        if steps_fn is None:
            steps_fn, dt_args, unroll = backward_steps, dts, 1
        else:
            # the compiled steps take dt as a tensor (a float would be a constant of the graph)
            dt_args = [torch.tensor(dt, dtype=y1.dtype, device=y1.device) for dt in dts]
            unroll = UNROLL
            vf._grad_slots(grads_p)  # accumulators exist before the graph updates them

        carry = None
        # one zero cotangent per slot of a group: a tensor passed twice to the compiled steps
        # would make Dynamo compile a variant with the two inputs aliased
        zero_outs = [torch.zeros_like(y1) for _ in range(unroll)]
        pending: list[tuple] = []
        for n, dw, dw_below in _reverse_steps(plan, dw_input, n_steps):
            if carry is None:
                # u = 0 and dW_{n+1} = 0: the cotangent of g_N is (a_y / 2) (x) dW_{N-1} only
                f1, g1, rec1 = vf.record(tl[n_steps], z1)
                zeros = [torch.zeros_like(y1) for _ in range(4)]  # a_y, a_z, a_f, u
                carry = (y1, z1, f1, g1, vf.prod(g1, dw), rec1, *zeros, torch.zeros_like(dw))
            k = save_at.get(n + 1)
            a_out = zero_outs[len(pending)] if k is None else grad_out[k]
            pending.append((n, (dw, dw_below, a_out, tl[n], dt_args[n])))
            if len(pending) == unroll or n == 0:
                # the compiled function for groups of `unroll` steps; a shorter last group eager
                fn = steps_fn if len(pending) == unroll else backward_steps
                carry, g_dws = fn(vf, carry, tuple(a for _, a in pending), grads_p, want_dw)
                if want_dw:
                    for (m, _), g in zip(pending, g_dws):
                        grad_dw[m] = g
                pending = []
        _, _, _, _, _, rec1, a_y, a_z, a_f, u, dw_up = carry
        k = save_at.get(0)
        if k is not None:
            a_y = a_y + grad_out[k]
        vz = vf.vjp(rec1, a_f, vf.prod_adjoint(u, dw_up), grads_p)
        grad_y0 = a_y + a_z if vz is None else a_y + a_z + vz
        return (None, grad_y0, grad_dw, *grads_p)


def backward_steps(
    vf: Any, carry: tuple, steps: tuple, grads: list[Tensor | None], want_dw: bool
) -> tuple[tuple, list[Tensor | None]]:
    """Consecutive backward steps (:func:`backward_step`), ``steps`` holding the arguments
    ``(dw, dw_below, a_out, t, dt)`` of each; returns the carry and the cotangents of the dWs."""
    g_dws = []
    for dw, dw_below, a_out, t, dt in steps:
        carry, g_dw = backward_step(vf, carry, dw, dw_below, a_out, t, dt, grads, want_dw)
        g_dws.append(g_dw)
    return carry, g_dws


def backward_step(
    vf: Any,
    carry: tuple,
    dw: Tensor,
    dw_below: Tensor,
    a_out: Tensor,
    t: Tensor,
    dt: float | Tensor,
    grads: list[Tensor | None],
    want_dw: bool,
) -> tuple[tuple, Tensor | None]:
    """Backward step n of the adjoint (module docstring): from t_{n+1} to t_n.

    ``carry`` is ``(y, z, f, g, g dW_n, rec, a_y, a_z, a_f, u, dW_{n+1})`` at t_{n+1}, where rec
    is the vector field's record of (f, g) there and u (x) dW_{n+1} the part of the cotangent of g
    from step n + 1; returns the carry at t_n and, with ``want_dw``, the cotangent of dW_n.
    ``a_out`` is the cotangent of the output y_{n+1} (zeros if it is not an output), ``dw_below``
    the increment dW_{n-1} (zeros for n = 0), ``t`` = t_n and ``dt`` = t_{n+1} - t_n (a float,
    or a 0-dim tensor in the compiled step). Parameter cotangents are added into ``grads``.

    Shape:
        y, z, f, a_*, u: (batch, state); dw, dw_below: (batch, noise).
    """
    y1, z1, f1, g1, g1dw, rec1, a_y, a_z, a_f, u, dw_up = carry
    a_y = a_y + a_out
    h = 0.5 * dt
    half_ay = 0.5 * a_y
    vz = vf.vjp(rec1, axpy(a_f, h, a_y), vf.outer_pair(u, dw_up, half_ay, dw), grads)
    a_z1 = a_z if vz is None else a_z + vz
    with torch.no_grad():
        z0 = axpy(g1dw, dt, f1).add_(z1).neg_().add_(y1, alpha=2.0)
    f0, g0, rec0 = vf.record(t, z0)
    with torch.no_grad():
        g0dw, g0dw_below = vf.prod_pair(g0, dw, dw_below)
        y0 = torch.add(g0dw, g1dw).mul_(0.5)
        y0 = axpy(axpy(y0, h, f0, inplace=True), h, f1, inplace=True).neg_().add_(y1)
        g_dw = None
        if want_dw:
            g_dw = vf.prod_adjoint_dw(a_z1 + half_ay, g0) + vf.prod_adjoint_dw(half_ay, g1)
        a_f = torch.add(a_y, a_z1, alpha=2.0).mul_(h)  # a_y dt/2 + a_z1 dt
        u = half_ay + a_z1
        a_y = torch.add(a_y, a_z1, alpha=2.0)
        a_z = -a_z1
    return (y0, z0, f0, g0, g0dw_below, rec0, a_y, a_z, a_f, u, dw), g_dw
