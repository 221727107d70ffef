"""neuralsde_fin: neural SDEs calibrated to market price history."""

__version__ = "0.1.0"
