"""Option payoffs in a functional form (on one path tensor) and a class form (on Scenarios).

Functional forms follow pfhedge: they take the price paths of one asset up to maturity,
``prices`` of shape ``(n_paths, n_times)`` with ``prices[:, 0]`` the spot and ``prices[:, -1]``
the price at maturity, and return the payoff per path. Class forms hold the contract terms,
which may be tensors (a grid of strikes and maturities, broadcast together), and evaluate the
payoff on a :class:`~neuralsde_fin.Scenarios` in one vectorised call through running
statistics (cumulative sums, minima, maxima) read at each maturity's grid index.

Path-dependent features are monitored discretely on the scenario grid: the Asian average uses
the grid points after time 0 up to maturity, barriers and lookback extrema the grid points from
time 0 to maturity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from neuralsde_fin._scenarios import Scenarios

BGK_BETA = 0.5825971579390106  # -zeta(1/2) / sqrt(2 pi), Broadie, Glasserman and Kou (1997)
BARRIER_KINDS = ("down-and-out", "down-and-in", "up-and-out", "up-and-in")


def _check_barrier_kind(kind: str) -> None:
    if kind not in BARRIER_KINDS:
        raise ValueError(f"kind must be one of {BARRIER_KINDS}, got {kind!r}")


# ---------------------------------------------------------------------------- functional forms
def european_payoff(prices: torch.Tensor, strike: float | torch.Tensor, call: bool = True):
    r"""European payoff :math:`(S_T - K)^+` (call) or :math:`(K - S_T)^+` (put).

    Shape:
        ``prices``: ``(n_paths, n_times)``; returns ``(n_paths,)``.
    """
    s_t = prices[..., -1]
    return (s_t - strike).clamp(min=0.0) if call else (strike - s_t).clamp(min=0.0)


def digital_payoff(prices: torch.Tensor, strike: float | torch.Tensor, call: bool = True):
    r"""Cash-or-nothing digital payoff :math:`1\{S_T > K\}` (call) or :math:`1\{S_T < K\}` (put).

    Shape:
        ``prices``: ``(n_paths, n_times)``; returns ``(n_paths,)``.
    """
    s_t = prices[..., -1]
    return (s_t > strike if call else s_t < strike).to(prices.dtype)


def asian_payoff(prices: torch.Tensor, strike: float | torch.Tensor, call: bool = True):
    r"""Arithmetic-average-price Asian payoff :math:`(A - K)^+` (call) or :math:`(K - A)^+` (put),
    with :math:`A = \frac1n \sum_{i=1}^n S_{t_i}` over the grid points after time 0.

    Shape:
        ``prices``: ``(n_paths, n_times)``; returns ``(n_paths,)``.
    """
    avg = prices[..., 1:].mean(dim=-1)
    return (avg - strike).clamp(min=0.0) if call else (strike - avg).clamp(min=0.0)


def bgk_barrier(
    barrier: float | torch.Tensor, sigma: float, dt: float | torch.Tensor, down: bool
) -> Any:
    r"""Broadie-Glasserman-Kou continuity correction of a barrier for discrete monitoring.

    A discretely monitored barrier at :math:`H e^{\pm\beta\sigma\sqrt{\Delta t}}` (moved toward
    the spot: ``+`` for a down barrier, ``-`` for an up barrier), :math:`\beta \approx 0.5826`,
    approximates the continuously monitored barrier :math:`H` with an error
    :math:`o(1/\sqrt m)`.

    References:
        Broadie, Glasserman and Kou, "A continuity correction for discrete barrier options",
        Math. Finance 1997.
    """
    step = torch.as_tensor(dt, dtype=torch.float64) if not isinstance(dt, torch.Tensor) else dt
    shift = torch.exp(BGK_BETA * sigma * torch.sqrt(step))
    return barrier * shift if down else barrier / shift


def barrier_payoff(
    prices: torch.Tensor,
    strike: float | torch.Tensor,
    barrier: float | torch.Tensor,
    kind: str = "down-and-out",
    call: bool = True,
    *,
    bgk_sigma: float | None = None,
    dt: float | None = None,
):
    r"""Knock-in or knock-out barrier payoff monitored on the grid points of ``prices``.

    Knock-out: :math:`(S_T - K)^+ 1\{\text{barrier not hit}\}`; knock-in: the complement, so
    in + out = vanilla exactly. A down barrier is hit when :math:`\min_i S_{t_i} \le H`, an up
    barrier when :math:`\max_i S_{t_i} \ge H`. With ``bgk_sigma`` the barrier is moved by the
    Broadie-Glasserman-Kou correction (:func:`bgk_barrier`, step ``dt``) so that the price
    approximates continuous monitoring.

    Shape:
        ``prices``: ``(n_paths, n_times)``; returns ``(n_paths,)``.
    """
    _check_barrier_kind(kind)
    down = kind.startswith("down")
    h = barrier
    if bgk_sigma is not None:
        if dt is None:
            raise ValueError("dt is required with bgk_sigma")
        h = bgk_barrier(barrier, bgk_sigma, dt, down)
    hit = prices.amin(dim=-1) <= h if down else prices.amax(dim=-1) >= h
    vanilla = european_payoff(prices, strike, call)
    return vanilla * (hit if kind.endswith("in") else ~hit).to(prices.dtype)


def lookback_payoff(prices: torch.Tensor, strike: float | torch.Tensor | None = None, call=True):
    r"""Lookback payoff with fixed strike (:math:`(M_T - K)^+` call, :math:`(K - m_T)^+` put) or,
    with ``strike=None``, floating strike (:math:`S_T - m_T` call, :math:`M_T - S_T` put), where
    :math:`M_T, m_T` are the maximum and minimum over the grid points from time 0 to maturity.

    Shape:
        ``prices``: ``(n_paths, n_times)``; returns ``(n_paths,)``.
    """
    hi, lo, s_t = prices.amax(dim=-1), prices.amin(dim=-1), prices[..., -1]
    if strike is None:
        return s_t - lo if call else hi - s_t
    return (hi - strike).clamp(min=0.0) if call else (strike - lo).clamp(min=0.0)


def basket_payoff(
    prices: torch.Tensor, weights: Sequence[float] | torch.Tensor, strike: float | torch.Tensor,
    call: bool = True,
):
    r"""Basket payoff :math:`(\sum_j w_j S_{T,j} - K)^+` (call) or its put counterpart.

    Shape:
        ``prices``: ``(n_paths, n_times, n_assets)``; returns ``(n_paths,)``.
    """
    w = torch.as_tensor(weights, dtype=prices.dtype, device=prices.device)
    b_t = prices[:, -1, :] @ w
    return (b_t - strike).clamp(min=0.0) if call else (strike - b_t).clamp(min=0.0)


# ---------------------------------------------------------------------------------- class forms
def _param(x: Any, name: str, positive: bool = True) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float64) if not isinstance(x, torch.Tensor) else x
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {x!r}")
    if positive and bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return t


class Option:
    """Base class of the option contracts: maturity, strike grid and payoff on Scenarios.

    Subclasses set ``call`` and implement :meth:`_statistic`-based :meth:`payoff`. ``pathwise``
    says whether the payoff is Lipschitz in the path (pathwise Greeks apply).
    """

    pathwise = True
    #: The payoff depends on the terminal price alone (a file is then read at the maturities).
    terminal = False
    call = True

    def __init__(self, strike: Any, maturity: Any, *, asset: int | str = 0) -> None:
        self.strike = None if strike is None else _param(strike, "strike")
        self.maturity = _param(maturity, "maturity")
        self.asset = asset

    # grid -------------------------------------------------------------------------------
    def _grid_params(self) -> list[torch.Tensor]:
        return [self.maturity] + ([] if self.strike is None else [self.strike])

    @property
    def shape(self) -> torch.Size:
        """Broadcast shape of the contract terms (``()`` for a single option)."""
        return torch.broadcast_shapes(*(p.shape for p in self._grid_params()))

    def _b(self, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return torch.broadcast_to(t, self.shape).to(dtype=ref.dtype, device=ref.device)

    def maturity_index(self, scen: Scenarios) -> torch.Tensor:
        """Index of each maturity on the scenario grid (one-line error when off the grid)."""
        times = scen.times.detach().to(torch.float64).cpu()
        mat = torch.broadcast_to(self.maturity, self.shape)
        idx = torch.searchsorted(times, mat.contiguous(), right=False).clamp(max=len(times) - 1)
        idx_lo = (idx - 1).clamp(min=0)
        idx = torch.where((times[idx_lo] - mat).abs() < (times[idx] - mat).abs(), idx_lo, idx)
        tol = 1e-6 * max(float(times[-1]), 1.0)
        off = (times[idx] - mat).abs() > tol
        if bool(off.any()) or bool((idx == 0).any()):
            bad = float(mat[off | (idx == 0)].flatten()[0])
            raise ValueError(
                f"maturity {bad} is not a time of the scenario grid (0, {float(times[-1])}]"
            )
        return idx.to(scen.prices.device)

    def _asset_paths(self, scen: Scenarios) -> torch.Tensor:
        return scen.prices[:, :, scen._asset_index(self.asset)]

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        """Undiscounted payoff per path at maturity, shape ``(n_paths, *self.shape)``."""
        raise NotImplementedError

    def underlying(self, scen: Scenarios) -> tuple[torch.Tensor, torch.Tensor]:
        """Underlying at maturity and its forward-discounted spot ``S_0 e^{-qT}`` (control
        variate: ``E[e^{-rT} S_T] = S_0 e^{-qT}`` under the risk-neutral measure).

        Shape:
            both ``(n_paths, *self.shape)``.
        """
        j = scen._asset_index(self.asset)
        s = scen.prices[:, :, j]
        idx = self.maturity_index(scen)
        t = self._b(self.maturity, s)
        fwd = s[:, :1].reshape(-1, *([1] * len(self.shape))) * torch.exp(-scen.q_vector()[j] * t)
        return s[:, idx], fwd.expand(s.shape[0], *self.shape)

    def __repr__(self) -> str:
        def fmt(t):
            return None if t is None else (float(t) if t.ndim == 0 else list(t.shape))

        return f"{type(self).__name__}(strike={fmt(self.strike)}, maturity={fmt(self.maturity)})"


class _Vanilla(Option):
    terminal = True
    def _terminal(self, scen: Scenarios) -> torch.Tensor:
        return self._asset_paths(scen)[:, self.maturity_index(scen)]

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        s_t = self._terminal(scen)
        k = self._b(self.strike, s_t)
        return (s_t - k).clamp(min=0.0) if self.call else (k - s_t).clamp(min=0.0)


class EuropeanCall(_Vanilla):
    r"""European call, payoff :math:`(S_T - K)^+`; ``strike`` and ``maturity`` may be grids.

    Args:
        strike: strike(s).
        maturity: maturity(ies) in years, times of the scenario grid.
        asset: index or name of the underlying asset.
    """

    call = True


class EuropeanPut(_Vanilla):
    r"""European put, payoff :math:`(K - S_T)^+`; arguments as :class:`EuropeanCall`."""

    call = False


class DigitalCall(_Vanilla):
    r"""Cash-or-nothing digital call, payoff :math:`1\{S_T > K\}`; arguments as
    :class:`EuropeanCall`. Not Lipschitz: no pathwise Greeks."""

    call = True
    pathwise = False

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        s_t = self._terminal(scen)
        k = self._b(self.strike, s_t)
        return (s_t > k if self.call else s_t < k).to(s_t.dtype)


class DigitalPut(DigitalCall):
    r"""Cash-or-nothing digital put, payoff :math:`1\{S_T < K\}`."""

    call = False


class AsianCall(Option):
    r"""Arithmetic-average-price Asian call :math:`(A_T - K)^+`,
    :math:`A_T = \frac1n\sum_{i=1}^n S_{t_i}` over the scenario grid points in :math:`(0, T]`.
    Arguments as :class:`EuropeanCall`."""

    call = True

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        s = self._asset_paths(scen)
        idx = self.maturity_index(scen)
        csum = torch.cumsum(s[:, 1:], dim=1)
        avg = csum[:, idx - 1] / idx.to(s.dtype)
        k = self._b(self.strike, s)
        return (avg - k).clamp(min=0.0) if self.call else (k - avg).clamp(min=0.0)


class AsianPut(AsianCall):
    r"""Arithmetic-average-price Asian put :math:`(K - A_T)^+`."""

    call = False


class BarrierCall(Option):
    r"""Barrier call: knock-in or knock-out on a down or up barrier, monitored on the grid.

    With ``bgk_sigma`` (a volatility), the barrier is moved by the Broadie-Glasserman-Kou
    correction :math:`H e^{\pm 0.5826\,\sigma\sqrt{\Delta t}}` (:func:`bgk_barrier`, with
    :math:`\Delta t` the grid step up to maturity), so the price approximates a continuously
    monitored barrier; without it, the price is that of the discretely monitored contract.

    Args:
        strike: strike(s).
        maturity: maturity(ies) in years.
        barrier: barrier level(s).
        kind: ``"down-and-out"``, ``"down-and-in"``, ``"up-and-out"`` or ``"up-and-in"``.
        bgk_sigma: volatility for the continuity correction (``None``: no correction).
        asset: underlying asset.

    References:
        Broadie, Glasserman and Kou, "A continuity correction for discrete barrier options",
        Math. Finance 1997.
    """

    call = True
    pathwise = False

    def __init__(
        self, strike: Any, maturity: Any, barrier: Any, kind: str = "down-and-out", *,
        bgk_sigma: float | None = None, asset: int | str = 0,
    ) -> None:
        super().__init__(strike, maturity, asset=asset)
        _check_barrier_kind(kind)
        if bgk_sigma is not None and not (math.isfinite(bgk_sigma) and bgk_sigma >= 0):
            raise ValueError(f"bgk_sigma must be >= 0, got {bgk_sigma!r}")
        self.barrier = _param(barrier, "barrier")
        self.kind = kind
        self.bgk_sigma = bgk_sigma

    def _grid_params(self) -> list[torch.Tensor]:
        return super()._grid_params() + [self.barrier]

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        s = self._asset_paths(scen)
        idx = self.maturity_index(scen)
        down = self.kind.startswith("down")
        h = self._b(self.barrier, s)
        if self.bgk_sigma is not None:
            step = scen.times.detach().to(s.dtype)[idx] / idx.to(s.dtype)
            h = bgk_barrier(h, self.bgk_sigma, step, down)
        ext = torch.cummin(s, dim=1).values if down else torch.cummax(s, dim=1).values
        ext = ext[:, idx]
        hit = ext <= h if down else ext >= h
        s_t = s[:, idx]
        k = self._b(self.strike, s)
        vanilla = (s_t - k).clamp(min=0.0) if self.call else (k - s_t).clamp(min=0.0)
        alive = hit if self.kind.endswith("in") else ~hit
        return vanilla * alive.to(s.dtype)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", kind={self.kind!r}, bgk_sigma={self.bgk_sigma})"


class BarrierPut(BarrierCall):
    r"""Barrier put; arguments as :class:`BarrierCall`."""

    call = False


class LookbackCall(Option):
    r"""Lookback call: fixed strike :math:`(M_T - K)^+`, or floating strike
    :math:`S_T - m_T` with ``strike=None``; extrema over the grid points in :math:`[0, T]`.

    Args:
        strike: strike(s), or ``None`` for the floating-strike lookback.
        maturity: maturity(ies) in years.
        asset: underlying asset.
    """

    call = True

    def __init__(self, strike: Any = None, maturity: Any = 1.0, *, asset: int | str = 0) -> None:
        super().__init__(strike, maturity, asset=asset)

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        s = self._asset_paths(scen)
        idx = self.maturity_index(scen)
        s_t = s[:, idx]
        if self.strike is None:
            if self.call:
                return s_t - torch.cummin(s, dim=1).values[:, idx]
            return torch.cummax(s, dim=1).values[:, idx] - s_t
        k = self._b(self.strike, s)
        if self.call:
            return (torch.cummax(s, dim=1).values[:, idx] - k).clamp(min=0.0)
        return (k - torch.cummin(s, dim=1).values[:, idx]).clamp(min=0.0)


class LookbackPut(LookbackCall):
    r"""Lookback put: fixed strike :math:`(K - m_T)^+`, floating strike :math:`M_T - S_T`."""

    call = False


class BasketCall(Option):
    terminal = True
    r"""Basket call :math:`(\sum_j w_j S_{T,j} - K)^+` on several assets.

    Args:
        strike: strike(s).
        maturity: maturity(ies) in years.
        weights: one weight per asset (default equal weights ``1 / n_assets``).
    """

    call = True

    def __init__(self, strike: Any, maturity: Any, weights: Sequence[float] | None = None) -> None:
        super().__init__(strike, maturity)
        self.weights = None if weights is None else _param(weights, "weights", positive=False)

    def _w(self, scen: Scenarios) -> torch.Tensor:
        n = scen.n_assets
        if self.weights is None:
            w = torch.full((n,), 1.0 / n, dtype=torch.float64)
        elif self.weights.shape != (n,):
            raise ValueError(f"weights must have one entry per asset ({n}), got {self.weights}")
        else:
            w = self.weights
        return w.to(dtype=scen.prices.dtype, device=scen.prices.device)

    def _basket(self, scen: Scenarios) -> torch.Tensor:
        return scen.prices @ self._w(scen)

    def payoff(self, scen: Scenarios) -> torch.Tensor:
        b = self._basket(scen)[:, self.maturity_index(scen)]
        k = self._b(self.strike, b)
        return (b - k).clamp(min=0.0) if self.call else (k - b).clamp(min=0.0)

    def underlying(self, scen: Scenarios) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.maturity_index(scen)
        t = self._b(self.maturity, scen.prices).unsqueeze(-1)
        w = self._w(scen)
        s0 = scen.prices[:, 0].reshape(scen.n_paths, *([1] * len(self.shape)), scen.n_assets)
        fwd = (s0 * torch.exp(-scen.q_vector() * t)) @ w
        return self._basket(scen)[:, idx], fwd.expand(scen.n_paths, *self.shape)


class BasketPut(BasketCall):
    r"""Basket put :math:`(K - \sum_j w_j S_{T,j})^+`."""

    call = False
