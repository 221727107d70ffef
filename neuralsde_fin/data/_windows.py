"""Windowing of a price history into log-price paths for calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._calendar import TRADING_DAYS  # noqa: E402  (the package's clock)
from neuralsde_fin._validate import check_int


def windows(
    prices: pd.DataFrame | pd.Series | np.ndarray | torch.Tensor,
    window: int,
    stride: int = 1,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a daily price history into overlapping log-price paths, each relative to its start.

    Window ``k`` covers rows ``k * stride, ..., k * stride + window`` (``window`` daily steps,
    ``window + 1`` prices) and holds

    .. math:: x_k(j) = \\log S_{k s + j} - \\log S_{k s}, \\qquad j = 0, \\dots, \\text{window},

    so every path starts at 0. Time runs on a trading-day clock: step ``j`` is ``j / 252`` years.

    Args:
        prices: the history, oldest first, e.g. from :func:`neuralsde_fin.load_prices`; a frame
            or array of shape ``(n_dates, n_assets)`` (a 1-D series or array is one asset).
        window: number of daily steps per window (>= 1).
        stride: rows between the starts of consecutive windows (>= 1).
        dtype: floating dtype of the outputs.
        device: device of the outputs.

    Returns:
        ``(paths, ts)``: the log-price windows and their time grid in years,
        ``ts = [0, 1, ..., window] / 252``.

    Shape:
        - prices: ``(n_dates, n_assets)`` or ``(n_dates,)``
        - paths: ``(n_windows, window + 1, n_assets)`` with
          ``n_windows = (n_dates - window - 1) // stride + 1``
        - ts: ``(window + 1,)``

    Raises:
        ValueError: a bad ``window`` or ``stride``, too short a history, or a price that is not
            finite and positive.
    """
    for name, v in (("window", window), ("stride", stride)):
        check_int(name, v, where="windows: ")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"windows: dtype must be a floating torch dtype, got {dtype!r}")
    if isinstance(prices, (pd.DataFrame, pd.Series)):
        arr = prices.to_numpy(dtype=np.float64)
    elif isinstance(prices, torch.Tensor):
        arr = prices.detach().cpu().to(torch.float64).numpy()
    else:
        arr = np.asarray(prices, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"windows: prices must be 1-D or 2-D (n_dates, n_assets), got {arr.shape}")
    n = arr.shape[0]
    if n < window + 1:
        raise ValueError(f"windows: window={window} needs at least {window + 1} prices, got {n}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"windows: price at row {i}, asset {j} must be finite and > 0")

    logp = torch.as_tensor(np.log(arr), dtype=torch.float64, device=device)
    starts = torch.arange(0, n - window, stride, device=device)
    idx = starts[:, None] + torch.arange(window + 1, device=device)[None, :]
    paths = logp[idx] - logp[starts][:, None, :]
    ts = torch.arange(window + 1, dtype=torch.float64, device=device) / TRADING_DAYS
    return paths.to(dtype), ts.to(dtype)
