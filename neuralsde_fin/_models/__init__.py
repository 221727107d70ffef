"""Market models: the neural SDE market model and its safe persistence."""

from __future__ import annotations

from neuralsde_fin._models._market import MarketModel, load_model

__all__ = ["MarketModel", "load_model"]
