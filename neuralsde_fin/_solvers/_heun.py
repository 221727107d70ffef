"""Heun's method, a Stratonovich scheme (the same scheme as torchsde's "heun").

    y' = y + f(t0, y) dt + g(t0, y) dW
    y1 = y + (f(t0, y) + f(t1, y')) dt / 2 + (g(t0, y) + g(t1, y')) dW / 2

Strong order 0.5 in general (1.0 for additive, scalar or commuting noise). Two vector-field
evaluations per step. References: Rumelin (1982), Numerical treatment of stochastic differential
equations, SIAM J. Numer. Anal. 19(3).
"""

from __future__ import annotations

from neuralsde_fin._solvers._base import Solver, register


@register("heun")
class Heun(Solver):
    """Stochastic Heun (Stratonovich): a predictor-corrector trapezoidal step."""

    sde_type = "stratonovich"

    def step(self, vf, t0, t1, dt, y, extra, dw):
        f0, g0 = vf.f_and_g(t0, y)
        gdw0 = vf.prod(g0, dw)
        y_pred = y + f0 * dt + gdw0
        f1, g1 = vf.f_and_g(t1, y_pred)
        return y + ((f0 + f1) * dt + gdw0 + vf.prod(g1, dw)) * 0.5, ()
