"""Today's state: features of the trailing price path that a conditional market model starts from.

A model calibrated with ``context = C`` learns the law of the next window given the previous C
trading days. The trailing path enters through fixed features of its normalised log-prices
x~ (``MarketModel.normalise``; one unit of x~ is a window's typical move), per asset:

    v_k = 1/2 log(W * EWMA_k(dx~^2)),   k in HALF_LIVES (5, 21, 63 days)

(the filtered log-volatility at three speeds, about 0 at the data's average volatility), the
returns x~_C - x~_{C-h} over the last h in RETURN_DAYS (5, 21) days and over the whole context
(momentum, and the leverage of recent falls). A learned encoder maps them to a code that, with
Gaussian noise, gives the distribution of the initial latent state (``MarketModel``). The
features are a filter of the path, as GJR-GARCH's conditional variance is; unlike it, what the
code means is learned from the data.

References:
    Issa, Horvath, Lemercier, Salvi (2023), "Non-adversarial training of Neural SDEs with
    signature kernel scores", arXiv 2305.16274 (conditioning a neural SDE on the observed past).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["HALF_LIVES", "RETURN_DAYS", "context_features", "feature_count", "history_path",
           "stationary_index"]

#: Half-lives (days) of the exponentially weighted squared returns.
HALF_LIVES = (5, 21, 63)
#: Horizons (days) of the trailing returns (and the whole context).
RETURN_DAYS = (5, 21)


def feature_count(n_assets: int) -> int:
    """Features per context: per asset, the EWMA log-vols, the trailing returns, the total."""
    return n_assets * (len(HALF_LIVES) + len(RETURN_DAYS) + 1)


def context_features(x: Tensor, window: int) -> Tensor:
    """Features of normalised trailing log-price paths (see the module docstring).

    Args:
        x: normalised log-prices of the context, oldest first (any reference level).
        window: the model's window W (normalised squared returns average 1 / W).

    Shape:
        x: (n, C + 1, n_assets) -> (n, feature_count(n_assets)).
    """
    r = torch.diff(x, dim=1)  # (n, C, A)
    c = r.shape[1]
    feats = []
    for h in HALF_LIVES:
        lam = 0.5 ** (1.0 / h)
        w = lam ** torch.arange(c - 1, -1, -1, dtype=x.dtype, device=x.device)
        ewma = (r.pow(2) * w[None, :, None]).sum(1) / w.sum()
        feats.append(0.5 * torch.log(ewma * window + 1e-12))
    for h in RETURN_DAYS:
        feats.append(x[:, -1] - x[:, max(0, c - h)])
    feats.append(x[:, -1] - x[:, 0])
    return torch.stack(feats, dim=-1).reshape(x.shape[0], -1)


def history_path(history: Any, n_assets: int, context: int, assets: list[str] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The last ``context + 1`` closes of a price history as log-prices, and the last close.

    Args:
        history: a DataFrame (one column per asset, named as the model's assets when it has
            names), a Series, or an array of closes, oldest first.
        n_assets: the model's number of assets.
        context: the model's context C.
        assets: the model's asset names (checked against a frame's columns), or None.

    Raises:
        ValueError: one line naming what is wrong: too short, NaN / non-positive prices (with
            the row), the wrong number or names of columns.

    Shape:
        returns (context + 1, n_assets) and (n_assets,).
    """
    import pandas as pd

    if isinstance(history, pd.Series):
        history = history.to_frame()
    if isinstance(history, pd.DataFrame):
        cols = [str(c) for c in history.columns]
        if len(cols) != n_assets:
            raise ValueError(f"history has {len(cols)} column(s) {cols}, the model "
                             f"{n_assets} asset(s){'' if not assets else f' {assets}'}")
        if assets and n_assets > 1 and sorted(cols) == sorted(assets) and cols != assets:
            history = history[assets]
        elif assets and n_assets > 1 and sorted(cols) != sorted(assets):
            raise ValueError(f"history columns {cols} are not the model's assets {assets}")
        arr = history.to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(history.detach().cpu() if isinstance(history, Tensor) else history,
                         dtype=np.float64)
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != n_assets:
            raise ValueError(f"history must have shape (n_dates, {n_assets}), got {arr.shape}")
    if arr.shape[0] < context + 1:
        raise ValueError(f"history has {arr.shape[0]} closes; the model's context needs at "
                         f"least {context + 1}")
    tail = arr[-(context + 1):]
    bad = ~np.isfinite(tail) | (tail <= 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        row = arr.shape[0] - (context + 1) + i
        raise ValueError(f"history row {row}, asset {j}: price must be finite and > 0, got "
                         f"{tail[i, j]!r}")
    return np.log(tail), tail[-1]


def stationary_index(seed: int, ids: Tensor, n_codes: int) -> Tensor:
    """Per path, which stored training context a stationary start draws (counter-based)."""
    from neuralsde_fin._brownian import counter_uniform

    u = counter_uniform(seed, 15, ids, dtype=torch.float64, device=ids.device)
    return torch.clamp((u * n_codes).long(), max=n_codes - 1)

