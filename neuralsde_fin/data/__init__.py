"""Market data: validated loading of price histories and windowing into log-price paths."""

from __future__ import annotations

from neuralsde_fin._errors import DataError
from neuralsde_fin.data._load import load_prices
from neuralsde_fin.data._windows import TRADING_DAYS, windows

__all__ = ["DataError", "TRADING_DAYS", "load_prices", "windows"]
