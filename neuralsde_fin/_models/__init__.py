"""Models: classical reference models (GBM, Heston) and the calibrated neural SDE."""

from __future__ import annotations

from neuralsde_fin._models._checkpoint import load_model
from neuralsde_fin._models._classical import GBM, Heston
from neuralsde_fin._models._market import MarketModel

__all__ = [
    "GBM",
    "Heston",
    "MarketModel",
    "load_model",
]
