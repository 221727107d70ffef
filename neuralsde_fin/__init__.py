"""neuralsde_fin: neural SDEs calibrated to market price history.

The public API is this module's ``__all__``; everything in ``_name`` modules is internal.
"""

from __future__ import annotations

from neuralsde_fin import data
from neuralsde_fin._brownian import VirtualBrownianTree
from neuralsde_fin._calibrate import LOSSES, calibrate
from neuralsde_fin._calibrate._discriminator import CDEDiscriminator
from neuralsde_fin._calibrate._sdegan_method import SDEGANLoss
from neuralsde_fin._errors import CheckpointError, DataError
from neuralsde_fin._models import GBM, Heston, MarketModel, load_model
from neuralsde_fin._pricing import (
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
    GreeksResult,
    LookbackCall,
    LookbackPut,
    Option,
    PriceResult,
    RiskResult,
    asian_payoff,
    barrier_payoff,
    basket_payoff,
    bgk_barrier,
    black_scholes,
    black_scholes_delta,
    black_scholes_vega,
    digital_payoff,
    european_payoff,
    greeks,
    implied_vol,
    lookback_payoff,
    price,
    var_es,
)
from neuralsde_fin._scenarios import Scenarios
from neuralsde_fin._solvers import (
    SOLVERS,
    CDEFunc,
    LipSwish,
    MLPDriftDiffusion,
    cdeint,
    sdeint,
)
from neuralsde_fin.data import load_prices

__version__ = "0.1.0"

__all__ = [
    "AsianCall",
    "AsianPut",
    "BarrierCall",
    "BarrierPut",
    "BasketCall",
    "BasketPut",
    "CDEDiscriminator",
    "CDEFunc",
    "CheckpointError",
    "DataError",
    "DigitalCall",
    "DigitalPut",
    "EuropeanCall",
    "EuropeanPut",
    "GBM",
    "GreeksResult",
    "Heston",
    "LOSSES",
    "LipSwish",
    "LookbackCall",
    "LookbackPut",
    "MLPDriftDiffusion",
    "MarketModel",
    "Option",
    "PriceResult",
    "RiskResult",
    "SDEGANLoss",
    "SOLVERS",
    "Scenarios",
    "VirtualBrownianTree",
    "asian_payoff",
    "barrier_payoff",
    "basket_payoff",
    "bgk_barrier",
    "black_scholes",
    "black_scholes_delta",
    "black_scholes_vega",
    "calibrate",
    "cdeint",
    "data",
    "digital_payoff",
    "european_payoff",
    "greeks",
    "implied_vol",
    "load_model",
    "load_prices",
    "lookback_payoff",
    "price",
    "sdeint",
    "var_es",
]
