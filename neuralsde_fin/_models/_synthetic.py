"""Synthetic price histories: a classical model's historical-measure path as daily closes."""

from __future__ import annotations

from typing import Any

import torch

from neuralsde_fin._calendar import TRADING_DAYS

__all__ = ["synthetic_history"]


def synthetic_history(
    model: Any,
    params: dict[str, float] | None = None,
    *,
    years: float = 20.0,
    spot: float = 100.0,
    seed: int = 0,
    start: str = "2000-01-03",
):
    """Daily closes of one historical-measure path of a classical model, as a price frame.

    Args:
        model: ``"gbm"`` or ``"heston"`` (built as ``nsf.GBM(**params)`` /
            ``nsf.Heston(**params)``), or any model with the shared ``sample`` signature.
        params: the model's parameters (with a model name).
        years: length of the history, ``round(years * 252)`` trading days.
        spot: the first close.
        seed: the sampling seed.
        start: the first business day.

    Returns:
        A frame as ``nsf.load_prices`` returns (DatetimeIndex of business days named "Date",
        one float64 column per asset, named after the model).

    Shape:
        (round(years * 252) + 1, n_assets).
    """
    import pandas as pd

    from neuralsde_fin._models._classical import GBM, Heston
    from neuralsde_fin.data import load_prices

    name = model if isinstance(model, str) else type(model).__name__.lower()
    if isinstance(model, str):
        classes = {"gbm": GBM, "heston": Heston}
        if model not in classes:
            raise ValueError(f"model must be one of {sorted(classes)} or a model, got {model!r}")
        model = classes[model](**(params or {}))
    n = int(round(float(years) * TRADING_DAYS))
    scen = model.sample(1, n, measure="historical", spot=float(spot), seed=int(seed),
                        dtype=torch.float64)
    p = scen.prices[0].detach().cpu().numpy()
    index = pd.bdate_range(start, periods=p.shape[0], name="Date")
    cols = [name] if p.shape[1] == 1 else [f"{name}{j}" for j in range(p.shape[1])]
    return load_prices(pd.DataFrame(p, index=index, columns=cols))
