"""Black-Scholes prices, Greeks and a robust, vectorised implied-volatility inversion."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

_KINDS = ("call", "put")
ArrayLike = Any  # float, numpy array or torch tensor


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'call' or 'put', got {kind!r}")


def _prepare(*args: ArrayLike) -> tuple[list[torch.Tensor], str, torch.dtype]:
    """Broadcast the inputs to tensors; remember whether to hand back floats, numpy or torch."""
    mode = "float"
    for a in args:
        if isinstance(a, torch.Tensor):
            mode = "torch"
        elif isinstance(a, np.ndarray | list | tuple) and mode != "torch":
            mode = "numpy"
    dtype = next(
        (a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()),
        torch.float64,
    )
    tensors = []
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    for a in args:
        if isinstance(a, torch.Tensor):
            t = a.to(device) if a.is_floating_point() else a.to(device=device, dtype=dtype)
        else:
            t = torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)
        tensors.append(t)
    tensors = [t.to(dtype) for t in tensors]
    return list(torch.broadcast_tensors(*tensors)), mode, dtype


def _finish(x: torch.Tensor, mode: str) -> ArrayLike:
    if mode == "torch":
        return x
    arr = x.detach().cpu().numpy()
    return float(arr) if mode == "float" and arr.ndim == 0 else arr


def _d1_d2(s, k, t, r, q, sigma):
    vol = sigma * torch.sqrt(t)
    d1 = (torch.log(s / k) + (r - q) * t) / vol + 0.5 * vol
    return d1, d1 - vol


def _price(s, k, t, r, q, sigma, call: bool) -> torch.Tensor:
    df_q, df_r = torch.exp(-q * t), torch.exp(-r * t)
    fwd_s, pv_k = s * df_q, k * df_r
    intrinsic = (fwd_s - pv_k).clamp(min=0.0) if call else (pv_k - fwd_s).clamp(min=0.0)
    degenerate = (sigma * torch.sqrt(t)) <= 0
    safe_sigma = torch.where(degenerate, torch.ones_like(sigma), sigma)
    safe_t = torch.where(degenerate, torch.ones_like(t), t)
    d1, d2 = _d1_d2(s, k, safe_t, r, q, safe_sigma)
    nd = torch.special.ndtr
    if call:
        p = fwd_s * nd(d1) - pv_k * nd(d2)
    else:
        p = pv_k * nd(-d2) - fwd_s * nd(-d1)
    return torch.where(degenerate, intrinsic, p)


def _check_inputs(s, k, t, sigma=None) -> None:
    if bool((s <= 0).any()):
        raise ValueError(f"S must be > 0, got min {float(s.min())}")
    if bool((k <= 0).any()):
        raise ValueError(f"K must be > 0, got min {float(k.min())}")
    if bool((t < 0).any()):
        raise ValueError(f"T must be >= 0, got min {float(t.min())}")
    if sigma is not None and bool((sigma < 0).any()):
        raise ValueError(f"sigma must be >= 0, got min {float(sigma.min())}")


def black_scholes(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    kind: str = "call",
) -> ArrayLike:
    r"""Black-Scholes-Merton price of a European call or put with a continuous dividend yield.

    .. math::
        C = S e^{-qT} N(d_1) - K e^{-rT} N(d_2), \quad
        d_{1,2} = \frac{\log(S/K) + (r - q) T}{\sigma\sqrt T} \pm \tfrac12 \sigma \sqrt T,

    and :math:`P = K e^{-rT} N(-d_2) - S e^{-qT} N(-d_1)`. At ``sigma * sqrt(T) == 0`` the price
    is the discounted intrinsic value. Differentiable (torch inputs keep their graph).

    Args:
        S: spot price (> 0).
        K: strike (> 0).
        T: maturity in years (>= 0).
        r: continuously compounded risk-free rate.
        q: continuous dividend yield.
        sigma: volatility (>= 0).
        kind: ``"call"`` or ``"put"``.

    Returns:
        The price: a float for scalar inputs, a numpy array for arrays, a tensor for tensors.

    Shape:
        The broadcast shape of the inputs.

    References:
        Black and Scholes, "The pricing of options and corporate liabilities", JPE 1973;
        Merton, "Theory of rational option pricing", 1973.
    """
    _check_kind(kind)
    (s, k, t, r_, q_, sig), mode, _ = _prepare(S, K, T, r, q, sigma)
    _check_inputs(s.detach(), k.detach(), t.detach(), sig.detach())
    return _finish(_price(s, k, t, r_, q_, sig, kind == "call"), mode)


def black_scholes_delta(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, q: ArrayLike, sigma: ArrayLike,
    kind: str = "call",
) -> ArrayLike:
    r"""Black-Scholes delta :math:`\partial V / \partial S`: :math:`e^{-qT} N(d_1)` for a call,
    :math:`-e^{-qT} N(-d_1)` for a put. Arguments and shapes as :func:`black_scholes`."""
    _check_kind(kind)
    (s, k, t, r_, q_, sig), mode, _ = _prepare(S, K, T, r, q, sigma)
    _check_inputs(s, k, t, sig)
    d1, _ = _d1_d2(s, k, t, r_, q_, sig)
    nd = torch.special.ndtr
    out = torch.exp(-q_ * t) * (nd(d1) if kind == "call" else -nd(-d1))
    return _finish(out, mode)


def black_scholes_vega(
    S: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, q: ArrayLike, sigma: ArrayLike,
) -> ArrayLike:
    r"""Black-Scholes vega :math:`\partial V / \partial \sigma = S e^{-qT} \varphi(d_1) \sqrt T`
    (the same for calls and puts). Arguments and shapes as :func:`black_scholes`."""
    (s, k, t, r_, q_, sig), mode, _ = _prepare(S, K, T, r, q, sigma)
    _check_inputs(s, k, t, sig)
    d1, _ = _d1_d2(s, k, t, r_, q_, sig)
    pdf = torch.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    return _finish(s * torch.exp(-q_ * t) * pdf * torch.sqrt(t), mode)


def implied_vol(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    kind: str = "call",
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    sigma_max: float = 10.0,
) -> ArrayLike:
    r"""Black-Scholes implied volatility by safeguarded Newton iteration inside a bracket.

    Solves :math:`\mathrm{BS}(S, K, T, r, q, \sigma) = \text{price}` elementwise. Each element
    keeps a bracket ``[lo, hi]`` (``lo = 0``, ``hi = sigma_max``); a Newton step that leaves the
    bracket, or whose vega is negligible, is replaced by bisection, so the iteration always
    converges (Newton's quadratic rate near the root, bisection's rate at worst). The start is
    the inflection point :math:`\sigma^* = \sqrt{2 |\log(F/K)| / T}` (Manaster and Koehler),
    clipped into the bracket.

    Prices outside the no-arbitrage bounds, ``max(F - K, 0) e^{-rT} < C < S e^{-qT}`` for calls
    (``max(K - F, 0) e^{-rT} < P < K e^{-rT}`` for puts), give NaN with one warning; the exact
    lower bound gives 0. Nothing raises from inside the iteration.

    Args:
        price: option price(s).
        S: spot (> 0).
        K: strike (> 0).
        T: maturity in years (> 0).
        r: risk-free rate.
        q: dividend yield.
        kind: ``"call"`` or ``"put"``.
        tol: absolute tolerance on the price, relative to ``S``.
        max_iter: iterations (each is vectorised over all elements).
        sigma_max: upper end of the bracket; prices above ``BS(sigma_max)`` give NaN.

    Returns:
        Implied volatilities: a float, numpy array or tensor, as for :func:`black_scholes`.

    Shape:
        The broadcast shape of the inputs.

    References:
        Manaster and Koehler, "The calculation of implied variances from the Black-Scholes
        model: a note", J. Finance 1982.
    """
    _check_kind(kind)
    (p, s, k, t, r_, q_), mode, dtype = _prepare(price, S, K, T, r, q)
    p, s, k, t, r_, q_ = (x.detach().to(torch.float64) for x in (p, s, k, t, r_, q_))
    _check_inputs(s, k, t)
    call = kind == "call"
    fwd_s, pv_k = s * torch.exp(-q_ * t), k * torch.exp(-r_ * t)
    lower = (fwd_s - pv_k).clamp(min=0.0) if call else (pv_k - fwd_s).clamp(min=0.0)
    upper = fwd_s if call else pv_k
    eps = 1e-14 * s
    bad = ~torch.isfinite(p) | (p < lower - eps) | (p >= upper) | (t <= 0)
    at_lower = ~bad & (p <= lower + eps)
    sig_hi = torch.full_like(p, sigma_max)
    bad = bad | (~at_lower & (p > _price(s, k, t.clamp(min=1e-300), r_, q_, sig_hi, call)))
    if bool(bad.any()):
        warnings.warn(
            f"implied_vol: {int(bad.sum())} price(s) outside the no-arbitrage bounds "
            f"(or above BS(sigma_max={sigma_max})) -> NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    active = ~bad & ~at_lower
    tt = torch.where(active, t, torch.ones_like(t))
    pp = torch.where(active, p, lower + 0.5 * (upper - lower))
    lo = torch.zeros_like(pp)
    hi = torch.full_like(pp, sigma_max)
    x = torch.sqrt(2 * torch.abs(torch.log(fwd_s / pv_k)) / tt).clamp(1e-3, sigma_max * 0.5)
    sqrt_t = torch.sqrt(tt)
    for _ in range(max_iter):
        f = _price(s, k, tt, r_, q_, x, call) - pp
        done = torch.abs(f) <= tol * s
        if bool(done.all()):
            break
        lo = torch.where(f < 0, x, lo)
        hi = torch.where(f > 0, x, hi)
        d1, _ = _d1_d2(s, k, tt, r_, q_, x)
        vega = fwd_s * torch.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) * sqrt_t
        newton = x - f / vega.clamp(min=1e-300)
        ok = torch.isfinite(newton) & (newton > lo) & (newton < hi) & (vega > 1e-12 * s)
        x = torch.where(done, x, torch.where(ok, newton, 0.5 * (lo + hi)))
    out = torch.where(at_lower, torch.zeros_like(x), x)
    out = torch.where(bad, torch.full_like(x, float("nan")), out)
    return _finish(out.to(dtype), mode)
