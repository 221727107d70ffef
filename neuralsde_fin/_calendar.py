"""The package's clock and measure names: one home for the constants every layer uses.

Time runs on trading days: one step of a daily history is ``DAY = 1 / TRADING_DAYS`` years, and
scenario grids, maturities and annualisations use the same clock. A leaf module (no package
imports), so any layer may use it.
"""

from __future__ import annotations

#: Trading days per year.
TRADING_DAYS = 252
#: One trading day in years.
DAY = 1.0 / TRADING_DAYS
#: The sampling measures: the calibrated (real-world) law, and the pricing measure.
HISTORICAL, RISK_NEUTRAL = "historical", "risk_neutral"
MEASURES = (HISTORICAL, RISK_NEUTRAL)

__all__ = ["DAY", "HISTORICAL", "MEASURES", "RISK_NEUTRAL", "TRADING_DAYS"]
