"""neuralsde_fin: neural SDEs calibrated to market price history.

The public API is this module's ``__all__``; everything in ``_name`` modules is internal.
"""

from __future__ import annotations

from neuralsde_fin import data
from neuralsde_fin._errors import CheckpointError, DataError
from neuralsde_fin._solvers import SOLVERS, cdeint, sdeint
from neuralsde_fin.data import load_prices

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataError",
    "SOLVERS",
    "cdeint",
    "data",
    "load_prices",
    "sdeint",
]
