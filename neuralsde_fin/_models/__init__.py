"""Models: classical reference models (GBM, Heston) and the calibrated neural SDE."""

from __future__ import annotations

from neuralsde_fin._models._classical import GBM, Heston

__all__ = [
    "GBM",
    "Heston",
]
