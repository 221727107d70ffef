"""Pricing and risk from Monte Carlo scenarios (internal; the public names are re-exported)."""

from __future__ import annotations

from neuralsde_fin._pricing._black_scholes import (
    black_scholes,
    black_scholes_delta,
    black_scholes_vega,
    implied_vol,
)
from neuralsde_fin._pricing._engine import PriceResult, price
from neuralsde_fin._pricing._greeks import GreeksResult, greeks
from neuralsde_fin._pricing._payoffs import (
    AsianCall,
    AsianPut,
    BarrierCall,
    BarrierPut,
    BasketCall,
    BasketPut,
    DigitalCall,
    DigitalPut,
    EuropeanCall,
    EuropeanPut,
    LookbackCall,
    LookbackPut,
    Option,
    asian_payoff,
    barrier_payoff,
    basket_payoff,
    bgk_barrier,
    digital_payoff,
    european_payoff,
    lookback_payoff,
)
from neuralsde_fin._pricing._risk import RiskResult, var_es

__all__ = [
    "AsianCall",
    "AsianPut",
    "BarrierCall",
    "BarrierPut",
    "BasketCall",
    "BasketPut",
    "DigitalCall",
    "DigitalPut",
    "EuropeanCall",
    "EuropeanPut",
    "GreeksResult",
    "LookbackCall",
    "LookbackPut",
    "Option",
    "PriceResult",
    "RiskResult",
    "asian_payoff",
    "barrier_payoff",
    "basket_payoff",
    "bgk_barrier",
    "black_scholes",
    "black_scholes_delta",
    "black_scholes_vega",
    "digital_payoff",
    "european_payoff",
    "greeks",
    "implied_vol",
    "lookback_payoff",
    "price",
    "var_es",
]
