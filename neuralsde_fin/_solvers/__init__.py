"""Solvers: fixed-step SDE and CDE integration with the exact reversible-Heun adjoint."""

from __future__ import annotations

from neuralsde_fin._solvers import _euler, _heun, _reversible_heun  # noqa: F401  (registration)
from neuralsde_fin._solvers._base import SOLVERS, Solver, VectorField, register
from neuralsde_fin._solvers._cdeint import cdeint
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
    "register",
    "sdeint",
]
