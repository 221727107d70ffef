"""Solver registry, the vector-field adapter, and the base class every fixed-step solver extends.

Adding a solver is one file: subclass :class:`Solver`, decorate it with ``@register("name")`` and
import the module in ``neuralsde_fin/_solvers/__init__.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neuralsde_fin._registry import registrar

SOLVERS: dict[str, type[Solver]] = {}

NOISE_TYPES = ("diagonal", "general", "additive", "scalar")
SDE_TYPES = ("ito", "stratonovich")


#: Class decorator adding a class to ``SOLVERS`` under ``name`` (sets ``cls.name``).
register = registrar(SOLVERS, "solver name")


class VectorField:
    """Uniform view of a torchsde-protocol SDE: ``f_and_g(t, y)``, ``prod(g, dW)`` and adjoints.

    ``g`` is whatever the SDE's diffusion returns: (batch, state) for diagonal noise and
    (batch, state, noise) otherwise. Modules of this package may provide ``_nsf_vector_field()``
    returning a faster object with the same four methods (see ``_nets.py``).
    """

    #: Leading state rows stepped at the left point (log-price rows, see ``_fused.LogPriceRows``);
    #: a torchsde-protocol SDE has none.
    euler_rows = 0

    def __init__(self, sde: Any, noise_type: str) -> None:
        self.sde = sde
        self.diagonal = noise_type == "diagonal"
        if hasattr(sde, "f_and_g"):
            self.f_and_g = sde.f_and_g
        else:
            f, g = sde.f, sde.g
            self.f_and_g = lambda t, y: (f(t, y), g(t, y))

    def params(self) -> list[Tensor]:
        """The tensors gradients are computed for: the SDE's parameters that require grad."""
        if not hasattr(self.sde, "parameters"):
            return []
        return [p for p in self.sde.parameters() if p.requires_grad]

    def for_backward(self) -> tuple[VectorField, list[Tensor]]:
        """A vector field whose ``params()`` are leaves, for per-step VJPs in the adjoint."""
        return self, self.params()

    def record(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Any]:
        """Evaluate f and g at (t, z) and keep what :meth:`vjp` needs.

        Returns ``(f, g, rec)`` with f and g detached. This generic version records the
        evaluation with autograd; fused fields override it with a hand-written backward.
        """
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f, g = self.f_and_g(t, z)
        return _detached(f), _detached(g), (z, f, g)

    def vjp(self, rec: Any, a_f: Tensor, a_g: Tensor, grads: list[Tensor | None]) -> Tensor | None:
        """The cotangent of z given those of (f, g) at a :meth:`record`-ed point.

        Adds the parameters' cotangents into ``grads`` (aligned with :meth:`params`; a None entry
        is replaced by the first contribution). Returns None when f and g do not depend on z
        or on the parameters.
        """
        z, f, g = rec
        outs, gos = [], []
        if torch.is_tensor(f) and f.requires_grad:
            outs.append(f)
            gos.append(a_f)
        if g.requires_grad:
            outs.append(g)
            gos.append(a_g)
        if not outs:
            return None
        params = self.params()
        res = torch.autograd.grad(outs, [z, *params], gos, allow_unused=True)
        for i, gp in enumerate(res[1:]):
            if gp is not None:
                grads[i] = gp if grads[i] is None else grads[i].add_(gp)
        return res[0]

    def prod(self, g: Tensor, dw: Tensor) -> Tensor:
        """g dW: elementwise for diagonal noise, a batched matrix-vector product otherwise."""
        if self.diagonal:
            return g * dw
        return torch.bmm(g, dw.unsqueeze(-1)).squeeze(-1)

    def prod_pair(self, g: Tensor, dw_a: Tensor, dw_b: Tensor) -> tuple[Tensor, Tensor]:
        """(g dw_a, g dw_b) with one pass over g (one batched matmul with two columns)."""
        if self.diagonal:
            return g * dw_a, g * dw_b
        r = torch.bmm(g, torch.stack([dw_a, dw_b], dim=-1))
        return r[..., 0], r[..., 1].contiguous()  # carried to the next step, as ``prod`` is

    def outer_pair(self, u: Tensor, dw_a: Tensor, v: Tensor, dw_b: Tensor) -> Tensor:
        """Cotangent of g given cotangents u of g dw_a and v of g dw_b: u (x) dw_a + v (x) dw_b."""
        if self.diagonal:
            return u * dw_a + v * dw_b
        return torch.bmm(torch.stack([u, v], dim=-1), torch.stack([dw_a, dw_b], dim=-2))

    def prod_adjoint(self, a: Tensor, dw: Tensor) -> Tensor:
        """The adjoint of ``g -> prod(g, dw)`` applied to ``a`` (the cotangent of g dW)."""
        if self.diagonal:
            return a * dw
        return a.unsqueeze(-1) * dw.unsqueeze(-2)

    def prod_adjoint_dw(self, a: Tensor, g: Tensor) -> Tensor:
        """The adjoint of ``dw -> prod(g, dw)`` applied to ``a``."""
        if self.diagonal:
            return a * g
        return torch.bmm(a.unsqueeze(-2), g).squeeze(-2)


def _detached(x: Any) -> Any:
    return x.detach() if torch.is_tensor(x) else x


class Solver:
    """A fixed-step solver: ``init`` builds the extra state once, ``step`` advances one step.

    Class attributes:
        sde_type: "ito" or "stratonovich": the calculus whose solution the scheme converges to.
        name: set by :func:`register`.
    """

    sde_type: str = "stratonovich"
    name: str = ""

    def init(self, vf: VectorField, t0: Tensor, y0: Tensor) -> tuple:
        """Extra solver state at the first time (default: none)."""
        return ()

    def solve(
        self,
        vf: VectorField,
        y0: Tensor,
        tlist: list[Tensor],
        dts: list[float],
        dws: Tensor,
        out_steps: list[int],
    ) -> Tensor:
        """The step loop: no validation, increments precomputed, outputs kept as they come.

        Returns the states at the grid points ``out_steps``, shape (len(out_steps), *y0.shape).
        Under autograd the outputs are stacked; otherwise written into a preallocated tensor.
        """
        save_at = dict((s, k) for k, s in enumerate(out_steps))
        track = torch.is_grad_enabled()
        outs: list[Tensor] = []
        out = None if track else y0.new_empty((len(out_steps), *y0.shape))
        y = y0
        extra = self.init(vf, tlist[0], y0)
        step = self.step
        for n in range(len(dts)):
            if n in save_at:
                if track:
                    outs.append(y)
                else:
                    out[save_at[n]] = y
            y, extra = step(vf, tlist[n], tlist[n + 1], dts[n], y, extra, dws[n])
        if track:
            outs.append(y)
            return torch.stack(outs)
        out[-1] = y
        return out

    def step(
        self,
        vf: VectorField,
        t0: Tensor,
        t1: Tensor,
        dt: float,
        y: Tensor,
        extra: tuple,
        dw: Tensor,
    ) -> tuple[Tensor, tuple]:
        """Advance ``y`` from t0 to t1 = t0 + dt with Brownian increment ``dw``."""
        raise NotImplementedError
