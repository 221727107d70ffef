"""Solvers: fixed-step SDE and CDE integration with the exact reversible-Heun adjoint.

Public names (re-exported by ``neuralsde_fin``):

* ``sdeint(sde, y0, ts, *, bm=None, method="reversible_heun", dt=None, adjoint=False, seed=0)``
  solves a torchsde-protocol SDE; output (len(ts), batch, state).
* ``cdeint(func, h0, X, *, ts=None, adjoint=True, output="all")`` solves dh = func(t, h) dX by
  reversible Heun with dX for dW; output (batch, length, hidden), or (batch, hidden) with
  ``output="final"``. Gradients reach h0, func's parameters and X.
* ``MLPDriftDiffusion`` and ``CDEFunc``: the package's neural vector fields (LipSwish MLPs with
  time input) that run on the fused fast path; ``.unfused()`` gives the conventional twin.
* ``SOLVERS``: the registry, {"euler", "heun", "reversible_heun"}.
* ``compiled_solvers(enabled=True)``: the acceleration switch (``nsf.acceleration``, the same
  context manager): native kernels and ``torch.compile``-d steps on, or everything eager.

Adding a solver is one file: subclass ``Solver`` (set ``sde_type``; implement ``step`` and, if
it carries state, ``init``; optionally a faster ``solve``), decorate it with
``@register("name")`` and import the module below. ``sdeint`` then accepts ``method="name"``
and checks the SDE's calculus against ``sde_type`` at the boundary.

Making a module use the fast path: give it ``_nsf_vector_field()`` returning an object with
``f_and_g(t, y)``, ``prod``, ``prod_pair``, ``outer_pair``, ``prod_adjoint``, ``prod_adjoint_dw``,
``params()`` and ``for_backward()`` (subclass ``VectorField``; see ``_nets._FusedField``).
"""

from __future__ import annotations

from neuralsde_fin._solvers import _euler, _heun, _reversible_heun  # noqa: F401  (registration)
from neuralsde_fin._solvers._base import SOLVERS, Solver, VectorField, register
from neuralsde_fin._solvers._cdeint import cdeint
from neuralsde_fin._solvers._compiled import compiled_solvers
from neuralsde_fin._solvers._nets import CDEFunc, LipSwish, MLPDriftDiffusion
from neuralsde_fin._solvers._sdeint import sdeint

__all__ = [
    "CDEFunc",
    "LipSwish",
    "MLPDriftDiffusion",
    "SOLVERS",
    "Solver",
    "VectorField",
    "cdeint",
    "compiled_solvers",
    "register",
    "sdeint",
]
