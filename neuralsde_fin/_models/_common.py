"""What every model's ``sample`` shares: argument checks and the per-path spot and scale.

Every model (``MarketModel``, ``GBM``, ``Heston``) samples with one signature,
``sample(n_paths, horizon, *, measure, r, q, spot, seed, dt, antithetic, vol_scale,
chunk_size, path_offset, valuation_date, dtype, device)``, which ``nsf.greeks`` and
``nsf.sample_shard`` rely on.
"""

from __future__ import annotations

from typing import Any

import torch

from neuralsde_fin._calendar import MEASURES
from neuralsde_fin._validate import check_choice, check_int, check_number

__all__ = ["check_sample_args", "path_scalar", "spot_tensor"]


def check_sample_args(
    n_paths: int, horizon: int, measure: str, dt: float, antithetic: bool
) -> None:
    """One-line ValueErrors for the arguments every ``sample`` takes."""
    check_int("n_paths", n_paths)
    check_int("horizon", horizon)
    check_choice("measure", measure, MEASURES)
    check_number("dt", dt, positive=True)
    if antithetic and n_paths % 2:
        raise ValueError(f"antithetic sampling needs an even n_paths, got {n_paths}")


def spot_tensor(
    spot: Any, n_paths: int, n_assets: int, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    """The initial prices as a (n_paths, n_assets) tensor (a broadcast view; may need grad).

    ``spot`` is None (1), a float, one value per asset, one per path (one asset), or a tensor
    broadcastable to (n_paths, n_assets).
    """
    s = torch.as_tensor(1.0 if spot is None else spot, dtype=dtype, device=device)
    if s.ndim == 1 and s.shape[0] == n_paths and n_assets == 1 and n_paths != 1:
        s = s.unsqueeze(-1)
    try:
        s = torch.broadcast_to(s, (n_paths, n_assets))
    except RuntimeError:
        raise ValueError(
            f"spot must broadcast to (n_paths, n_assets) = ({n_paths}, {n_assets}), "
            f"got shape {tuple(s.shape)}"
        ) from None
    if not bool(torch.isfinite(s.detach()).all()) or bool((s.detach() <= 0).any()):
        raise ValueError(f"spot must be > 0 and finite, got {spot!r}")
    return s


def path_scalar(x: Any, n_paths: int, dtype: torch.dtype, device: Any, name: str) -> torch.Tensor:
    """A float or one value per path as a (n_paths, 1) or (1, 1) tensor (may need grad)."""
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, n_paths)):
        raise ValueError(f"{name} must be a float or one per path, got shape {tuple(t.shape)}")
    return t.reshape(-1, 1).expand(n_paths, 1) if t.ndim == 1 else t.reshape(1, 1)
