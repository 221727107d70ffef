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

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493, section 3.
"""

from __future__ import annotations

from neuralsde_fin._solvers._base import Solver, register


@register("reversible_heun")
class ReversibleHeun(Solver):
    """Reversible Heun (Stratonovich); the only method with the exact O(1)-memory adjoint."""

    sde_type = "stratonovich"

    def init(self, vf, t0, y0):
        f0, g0 = vf.f_and_g(t0, y0)
        return (y0, f0, g0)

    def step(self, vf, t0, t1, dt, y, extra, dw):
        z, f0, g0 = extra
        z1 = 2 * y - z + f0 * dt + vf.prod(g0, dw)
        f1, g1 = vf.f_and_g(t1, z1)
        y1 = y + (f0 + f1) * (0.5 * dt) + vf.prod(g0 + g1, 0.5 * dw)
        return y1, (z1, f1, g1)
