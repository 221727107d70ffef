"""Greeks from Monte Carlo: pathwise (autograd through the sampler) or finite differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from neuralsde_fin._calendar import DAY
from neuralsde_fin._pricing._engine import _out, _pair_mean
from neuralsde_fin._pricing._payoffs import Option

METHODS = ("pathwise", "fd")


@dataclass(frozen=True)
class GreeksResult:
    """Monte Carlo price, delta and vega with their standard errors.

    Attributes:
        price: discounted mean payoff (no control variate), and ``price_stderr``.
        delta: :math:`\\partial V / \\partial S_0` (last axis: assets, when there are several).
        delta_stderr: its standard error.
        vega: :math:`\\partial V / \\partial \\lambda` at :math:`\\lambda = 1`, where
            :math:`\\lambda` scales the price diffusion (for GBM, :math:`\\sigma\\,\\partial V /
            \\partial \\sigma`).
        vega_stderr: its standard error.
        n_paths: number of paths.
        method: ``"pathwise"`` or ``"fd"``.
    """

    price: Any
    price_stderr: Any
    delta: Any
    delta_stderr: Any
    vega: Any
    vega_stderr: Any
    n_paths: int
    method: str


def _mean_se(x: torch.Tensor, antithetic: bool) -> tuple[Any, Any]:
    x = _pair_mean(x.detach().to(torch.float64), antithetic)
    return _out(x.mean(0)), _out(x.std(0, correction=1) / math.sqrt(x.shape[0]))


def greeks(
    model: Any,
    option: Option,
    n_paths: int,
    *,
    method: str = "pathwise",
    r: float = 0.0,
    q: float | Any = 0.0,
    spot: float | Any = None,
    seed: int = 0,
    dt: float = DAY,
    antithetic: bool = False,
    bump: float = 1e-4,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    history: Any = None,
) -> GreeksResult:
    r"""Delta and vega of an option under a model, by pathwise differentiation or by finite
    differences with common random numbers.

    Pathwise: the sampler runs with a per-path spot :math:`S_0^{(i)}` and a per-path volatility
    scale :math:`\lambda^{(i)} = 1` that require grad, so one backward pass of
    :math:`\sum_i e^{-rT} h(S^{(i)})` gives every path's own derivative
    :math:`\partial_{S_0} e^{-rT} h(S^{(i)})` (paths are independent); their mean is the
    estimator and their spread its standard error. Valid for payoffs that are Lipschitz in the
    path (European, Asian, lookback, basket), not for digitals or barriers.

    Finite differences: central bumps :math:`S_0 (1 \pm \epsilon)` and :math:`1 \pm \epsilon`
    of the volatility scale, resampled with the same seed (common random numbers), per path.

    Args:
        model: a model with ``sample(n_paths, horizon, *, measure, r, q, spot, seed, dt,
            antithetic, vol_scale, dtype, device)`` (:class:`~neuralsde_fin.GBM`,
            :class:`~neuralsde_fin.Heston`).
        option: the option; its maturities must be multiples of ``dt``.
        n_paths: number of paths.
        method: ``"pathwise"`` or ``"fd"``.
        r: risk-free rate.
        q: dividend yield.
        spot: initial price(s); default: the last close of ``history``, else 1.
        seed: seed of the sampler.
        dt: time step in years.
        antithetic: antithetic pairs (averaged before the standard errors).
        bump: relative bump of the finite differences.
        dtype: floating dtype.
        device: device.
        history: today's state for a conditional model (``MarketModel`` calibrated with
            ``context=C``; see its ``sample``): the Greeks are then today's. None: the
            model's stationary start.

    Returns:
        A :class:`GreeksResult`.

    References:
        Glasserman, "Monte Carlo Methods in Financial Engineering", 2003, chapter 7;
        Broadie and Glasserman, "Estimating security price derivatives using simulation",
        Management Science 1996.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(option, Option):
        raise ValueError(f"option must be an Option, got {type(option).__name__}")
    if method == "pathwise" and not option.pathwise:
        raise ValueError(
            f"pathwise Greeks need a payoff Lipschitz in the path; {type(option).__name__} is "
            "not: use method='fd'"
        )
    if not (isinstance(n_paths, int) and n_paths > 1):
        raise ValueError(f"n_paths must be an int > 1, got {n_paths!r}")
    if not 0 < bump < 0.5:
        raise ValueError(f"bump must be in (0, 0.5), got {bump!r}")
    t_max = float(option.maturity.max())
    horizon = round(t_max / dt)
    if horizon < 1 or abs(horizon * dt - t_max) > 1e-9 * max(t_max, 1.0):
        raise ValueError(f"maturity {t_max} is not a multiple of dt={dt}")
    n_assets = getattr(model, "n_assets", 1)
    if spot is None:
        spot = 1.0 if history is None else _last_close(history)
    start = {} if history is None else {"history": history}
    s0 = torch.as_tensor(spot, dtype=dtype, device=device).flatten()
    if s0.numel() not in (1, n_assets) or bool((s0 <= 0).any()):
        raise ValueError(f"spot must be > 0, one value or one per asset, got {spot!r}")
    s0 = s0.expand(n_assets)
    mats = torch.broadcast_to(option.maturity, option.shape).to(dtype=dtype, device=device)
    disc = torch.exp(-r * mats)

    def run(spot_t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        scen = model.sample(
            n_paths, horizon, measure="risk_neutral", r=r, q=q, spot=spot_t, seed=seed, dt=dt,
            antithetic=antithetic, vol_scale=lam, dtype=dtype, device=device, **start,
        )
        return disc * option.payoff(scen)  # (n_paths, *shape)

    if method == "pathwise":
        spot_t = s0.expand(n_paths, n_assets).clone().requires_grad_(True)
        lam = torch.ones(n_paths, dtype=dtype, device=device, requires_grad=True)
        y = run(spot_t, lam)
        flat = y.reshape(n_paths, -1)
        d_spot, d_lam = [], []
        for j in range(flat.shape[1]):
            gs, gl = torch.autograd.grad(flat[:, j].sum(), (spot_t, lam), retain_graph=True)
            d_spot.append(gs)
            d_lam.append(gl)
        delta = torch.stack(d_spot, dim=1).reshape(n_paths, *option.shape, n_assets)
        vega = torch.stack(d_lam, dim=1).reshape(n_paths, *option.shape)
    else:
        with torch.no_grad():
            y = run(s0.expand(n_paths, n_assets), torch.tensor(1.0, dtype=dtype))
            deltas = []
            for a in range(n_assets):
                up, dn = s0.clone(), s0.clone()
                up[a] *= 1 + bump
                dn[a] *= 1 - bump
                y_up = run(up.expand(n_paths, n_assets), torch.tensor(1.0, dtype=dtype))
                y_dn = run(dn.expand(n_paths, n_assets), torch.tensor(1.0, dtype=dtype))
                deltas.append((y_up - y_dn) / (2 * bump * s0[a]))
            delta = torch.stack(deltas, dim=-1)
            y_up = run(s0.expand(n_paths, n_assets), torch.tensor(1.0 + bump, dtype=dtype))
            y_dn = run(s0.expand(n_paths, n_assets), torch.tensor(1.0 - bump, dtype=dtype))
            vega = (y_up - y_dn) / (2 * bump)
    if n_assets == 1:
        delta = delta[..., 0]
    price, price_se = _mean_se(y, antithetic)
    d, d_se = _mean_se(delta, antithetic)
    v, v_se = _mean_se(vega, antithetic)
    return GreeksResult(price, price_se, d, d_se, v, v_se, n_paths, method)


def _last_close(history: Any) -> list[float]:
    """The last row of a price history (DataFrame, Series or array, oldest first)."""
    import numpy as np

    arr = np.asarray(history.detach().cpu() if isinstance(history, torch.Tensor) else history,
                     dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError("history is empty: no last close to start from")
    return np.atleast_1d(arr[-1]).tolist()
