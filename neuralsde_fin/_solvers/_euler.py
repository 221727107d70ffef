"""Euler-Maruyama, the Ito scheme: y1 = y + f(t, y) dt + g(t, y) dW.

Strong order 0.5 (1.0 for additive noise). References: Kloeden & Platen (1992), Numerical
Solution of Stochastic Differential Equations, section 10.2.
"""

from __future__ import annotations

from neuralsde_fin._solvers._base import Solver, register


@register("euler")
class Euler(Solver):
    """Euler-Maruyama (Ito): one vector-field evaluation per step."""

    sde_type = "ito"

    def step(self, vf, t0, t1, dt, y, extra, dw):
        f, g = vf.f_and_g(t0, y)
        return y + f * dt + vf.prod(g, dw), ()
