"""Classical reference models, GBM and Heston, sampled in torch like the calibrated models.

Both samplers are plain torch code: ``spot`` and ``vol_scale`` may be tensors that require grad,
so pathwise Greeks are obtained by autograd through the sampler. Every normal is drawn by
:func:`neuralsde_fin._models._noise.normals`, keyed by (path, step, dim), so path ``i`` does not
depend on ``n_paths`` and the same seed gives bit-identical paths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from neuralsde_fin._calendar import DAY
from neuralsde_fin._models._common import check_sample_args, path_scalar, spot_tensor
from neuralsde_fin._models._noise import normals
from neuralsde_fin._scenarios import Scenarios
from neuralsde_fin._validate import check_int

_STREAM_GBM = 11
_STREAM_HESTON = 12


class GBM:
    r"""Geometric Brownian motion, sampled exactly by log-Euler steps.

    .. math::
        \log S_{t+\Delta} = \log S_t + (m - \tfrac12 \sigma^2)\Delta + \sigma \sqrt{\Delta} Z,

    with :math:`m = \mu` under the historical measure and :math:`m = r - q` under the
    risk-neutral one; several assets are correlated through ``corr`` (Cholesky factor).

    Args:
        sigma: volatility, a float or one per asset.
        mu: historical drift (arithmetic), a float or one per asset.
        corr: correlation matrix of the assets' Brownian motions (default identity).

    References:
        Glasserman, "Monte Carlo Methods in Financial Engineering", 2003, section 3.2.
    """

    def __init__(
        self,
        sigma: float | Sequence[float],
        mu: float | Sequence[float] = 0.0,
        corr: Sequence[Sequence[float]] | torch.Tensor | None = None,
    ) -> None:
        sig = torch.as_tensor(sigma, dtype=torch.float64).flatten()
        if sig.numel() == 0 or bool((sig < 0).any()) or not bool(torch.isfinite(sig).all()):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
        mu_t = torch.as_tensor(mu, dtype=torch.float64).flatten()
        n = max(sig.numel(), mu_t.numel())
        if sig.numel() not in (1, n) or mu_t.numel() not in (1, n):
            raise ValueError(f"sigma and mu must have the same length, got {sigma!r} and {mu!r}")
        self.sigma = sig.expand(n).clone()
        self.mu = mu_t.expand(n).clone()
        if corr is not None:
            c = torch.as_tensor(corr, dtype=torch.float64)
            if c.shape != (n, n) or not torch.allclose(c, c.T):
                raise ValueError(f"corr must be a symmetric ({n}, {n}) matrix, got {c.shape}")
            try:
                self._chol = torch.linalg.cholesky(c)
            except RuntimeError as exc:
                raise ValueError("corr must be positive definite") from exc
        else:
            self._chol = None
        self.corr = corr

    @property
    def n_assets(self) -> int:
        return self.sigma.shape[0]

    def __repr__(self) -> str:
        sig = [round(float(s), 10) for s in self.sigma]
        mu = [round(float(m), 10) for m in self.mu]
        one = self.n_assets == 1
        return (
            f"GBM(sigma={sig[0] if one else sig}, mu={mu[0] if one else mu}"
            + ("" if self.corr is None else f", corr={torch.as_tensor(self.corr).tolist()}")
            + ")"
        )

    def sample(
        self,
        n_paths: int,
        horizon: int,
        *,
        measure: str = "risk_neutral",
        r: float = 0.0,
        q: float | Sequence[float] = 0.0,
        spot: float | Sequence[float] | torch.Tensor | None = None,
        seed: int = 0,
        dt: float = DAY,
        antithetic: bool = False,
        vol_scale: float | torch.Tensor = 1.0,
        chunk_size: int = 65536,
        path_offset: int = 0,
        valuation_date: Any = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Scenarios:
        """Sample ``n_paths`` paths of ``horizon`` steps of ``dt`` years.

        Args:
            n_paths: number of paths.
            horizon: number of time steps.
            measure: ``"risk_neutral"`` (drift ``r - q``) or ``"historical"`` (drift ``mu``).
            r: risk-free rate.
            q: dividend yield, a float or one per asset.
            spot: initial prices (default 1); a tensor broadcastable to ``(n_paths, n_assets)``,
                possibly requiring grad (pathwise delta).
            seed: seed of the counter-based normals.
            dt: step in years (default one trading day).
            antithetic: interleaved antithetic pairs (``Z``, ``-Z``).
            vol_scale: multiplies the volatility; a float or per-path tensor, possibly requiring
                grad (pathwise vega).
            chunk_size: paths drawn at once (bounds the memory of the normals).
            path_offset: global id of the first path (a shard of a larger sample).
            valuation_date: date of time 0 (default today).
            dtype: floating dtype (float64 by default: these are reference models).
            device: device of the tensors.

        Returns:
            :class:`~neuralsde_fin.Scenarios` with ``prices`` of shape
            ``(n_paths, horizon + 1, n_assets)``.
        """
        check_sample_args(n_paths, horizon, measure, dt, antithetic)
        check_int("chunk_size", chunk_size)
        check_int("path_offset", path_offset, 0)
        n = self.n_assets
        s0 = spot_tensor(spot, n_paths, n, dtype, device)
        q_t = torch.as_tensor(q, dtype=dtype, device=device).flatten()
        if q_t.numel() not in (1, n):
            raise ValueError(f"q must be a float or one value per asset ({n}), got {q!r}")
        lam = path_scalar(vol_scale, n_paths, dtype, device, "vol_scale")
        sigma = self.sigma.to(dtype=dtype, device=device) * lam  # (n_paths or 1, n)
        drift = (r - q_t) if measure == "risk_neutral" else self.mu.to(dtype=dtype, device=device)
        chol = None if self._chol is None else self._chol.to(dtype=dtype, device=device).T
        blocks = []
        for lo in range(0, n_paths, chunk_size):
            hi = min(n_paths, lo + chunk_size)
            z = normals(
                seed, hi - lo, horizon, n, stream=_STREAM_GBM, antithetic=antithetic,
                path0=path_offset + lo, dtype=dtype, device=device,
            )
            if chol is not None:
                z = z @ chol
            sig = (sigma if sigma.shape[0] == 1 else sigma[lo:hi]).unsqueeze(1)
            incr = (drift - 0.5 * sig**2) * dt + sig * math.sqrt(dt) * z
            log_path = torch.cat([torch.zeros_like(incr[:, :1]), incr.cumsum(dim=1)], dim=1)
            blocks.append(s0[lo:hi].unsqueeze(1) * torch.exp(log_path))
        prices = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
        times = torch.arange(horizon + 1, dtype=dtype, device=device) * dt
        return Scenarios(
            times, prices, measure=measure, r=r, q=q_t.tolist() if n > 1 else float(q_t[0]),
            seed=seed, model=repr(self), valuation_date=valuation_date, antithetic=antithetic,
        )


class Heston:
    r"""Heston stochastic volatility model, with full truncation or Andersen's QE scheme.

    .. math::
        dS_t = m S_t dt + \sqrt{v_t} S_t dW^S_t, \qquad
        dv_t = \kappa(\theta - v_t) dt + \xi \sqrt{v_t} dW^v_t, \qquad d\langle W^S, W^v\rangle
        = \rho\, dt,

    with :math:`m = r - q` under the risk-neutral measure (the parameters are read as
    risk-neutral ones) and :math:`m = \mu` under the historical one. ``scheme="qe"`` is
    Andersen's quadratic-exponential scheme (``psi_c = 1.5``, central discretisation
    ``gamma1 = gamma2 = 1/2``) with his martingale correction, so the discounted price is an
    exact martingale in discrete time; ``scheme="full_truncation"`` uses log-Euler for the price
    with the left-point variance ``v^+`` (also an exact martingale) and Euler for the variance
    with ``v^+`` in drift and diffusion.

    Args:
        kappa: mean-reversion speed of the variance.
        theta: long-run variance.
        xi: volatility of variance.
        rho: correlation of the price and variance Brownian motions.
        v0: initial variance.
        mu: historical drift of the price.
        scheme: ``"qe"`` or ``"full_truncation"``.

    References:
        Heston, "A closed-form solution for options with stochastic volatility", RFS 1993.
        Andersen, "Simple and efficient simulation of the Heston stochastic volatility
        model", J. Comput. Finance 2008. Lord, Koekkoek, van Dijk, "A comparison of biased
        simulation schemes for stochastic volatility models", Quant. Finance 2010.
    """

    SCHEMES = ("qe", "full_truncation")

    def __init__(
        self,
        kappa: float,
        theta: float,
        xi: float,
        rho: float,
        v0: float,
        mu: float = 0.0,
        scheme: str = "qe",
    ) -> None:
        for name, val in (("kappa", kappa), ("theta", theta), ("xi", xi)):
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f"{name} must be > 0, got {val!r}")
        if not -1.0 <= rho <= 1.0:
            raise ValueError(f"rho must be in [-1, 1], got {rho!r}")
        if not (math.isfinite(v0) and v0 >= 0):
            raise ValueError(f"v0 must be >= 0, got {v0!r}")
        if scheme not in self.SCHEMES:
            raise ValueError(f"scheme must be one of {self.SCHEMES}, got {scheme!r}")
        self.kappa, self.theta, self.xi, self.rho, self.v0 = (
            float(kappa), float(theta), float(xi), float(rho), float(v0)
        )
        self.mu = float(mu)
        self.scheme = scheme

    n_assets = 1

    def _describe(self, scheme: str) -> str:
        return (
            f"Heston(kappa={self.kappa}, theta={self.theta}, xi={self.xi}, rho={self.rho}, "
            f"v0={self.v0}, mu={self.mu}, scheme={scheme!r})"
        )

    def __repr__(self) -> str:
        return self._describe(self.scheme)

    def sample(
        self,
        n_paths: int,
        horizon: int,
        *,
        measure: str = "risk_neutral",
        r: float = 0.0,
        q: float = 0.0,
        spot: float | torch.Tensor | None = None,
        seed: int = 0,
        dt: float = DAY,
        antithetic: bool = False,
        vol_scale: float | torch.Tensor = 1.0,
        chunk_size: int = 65536,
        path_offset: int = 0,
        valuation_date: Any = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        return_variance: bool = False,
        scheme: str | None = None,
    ) -> Scenarios | tuple[Scenarios, torch.Tensor]:
        """Sample ``n_paths`` paths of ``horizon`` steps of ``dt`` years.

        Arguments as for :meth:`GBM.sample`; ``vol_scale`` multiplies the price diffusion
        ``sqrt(v)`` (not the variance dynamics). ``scheme`` overrides the model's scheme for
        this call. With ``return_variance=True`` also returns the variance paths, shape
        ``(n_paths, horizon + 1)``.
        """
        check_sample_args(n_paths, horizon, measure, dt, antithetic)
        check_int("chunk_size", chunk_size)
        check_int("path_offset", path_offset, 0)
        scheme = self.scheme if scheme is None else scheme
        if scheme not in self.SCHEMES:
            raise ValueError(f"scheme must be one of {self.SCHEMES}, got {scheme!r}")
        s0 = spot_tensor(spot, n_paths, 1, dtype, device)[:, 0]
        lam = path_scalar(vol_scale, n_paths, dtype, device, "vol_scale")[:, 0]
        m = (r - q) if measure == "risk_neutral" else self.mu
        logs, vs = [], []
        for lo in range(0, n_paths, chunk_size):
            hi = min(n_paths, lo + chunk_size)
            lam_c = lam if lam.shape[0] == 1 else lam[lo:hi]
            lg, v = self._block(hi - lo, horizon, m, dt, lam_c, seed, path_offset + lo,
                                antithetic, scheme, dtype, device)
            logs.append(lg)
            vs.append(v)
        log_paths = logs[0] if len(logs) == 1 else torch.cat(logs)
        prices = (s0.unsqueeze(1) * torch.exp(log_paths)).unsqueeze(-1)
        times = torch.arange(horizon + 1, dtype=dtype, device=device) * dt
        scen = Scenarios(
            times, prices, measure=measure, r=r, q=q, seed=seed, model=self._describe(scheme),
            valuation_date=valuation_date, antithetic=antithetic,
        )
        if return_variance:
            return scen, vs[0] if len(vs) == 1 else torch.cat(vs)
        return scen

    def _block(self, n_paths, horizon, m, dt, lam, seed, path0, antithetic, scheme, dtype,
               device) -> tuple[torch.Tensor, torch.Tensor]:
        """log(S / S0) and v of paths path0 .. path0 + n_paths - 1, (n_paths, horizon + 1) each."""
        kappa, theta, xi, rho = self.kappa, self.theta, self.xi, self.rho
        rho_bar = math.sqrt(max(1.0 - rho * rho, 0.0))
        log_s = torch.zeros(n_paths, dtype=dtype, device=device)  # log(S / S0)
        v = torch.full((n_paths,), self.v0, dtype=dtype, device=device)
        logs, vs = [log_s], [v]
        if scheme == "qe":
            ekdt = math.exp(-kappa * dt)
            c1 = xi * xi * ekdt * (1 - ekdt) / kappa
            c2 = theta * xi * xi * (1 - ekdt) ** 2 / (2 * kappa)
            g1 = g2 = 0.5
            # Andersen (2008) eq. (33) generalised to a price diffusion lam * sqrt(v); his K0 is
            # replaced by the martingale correction K0* of his section 4.3
            k1 = g1 * dt * (lam * kappa * rho / xi - 0.5 * lam**2) - lam * rho / xi
            k2 = g2 * dt * (lam * kappa * rho / xi - 0.5 * lam**2) + lam * rho / xi
            k3 = g1 * dt * lam**2 * (1 - rho * rho)
            k4 = g2 * dt * lam**2 * (1 - rho * rho)
            c_diff = dt * (1 - rho * rho)  # sqrt(K3 v + K4 v') = lam sqrt(c_diff (g1 v + g2 v'))
            a_mgf = k2 + 0.5 * k4
        for k in range(horizon):
            z = normals(
                seed, n_paths, 1, 2, stream=_STREAM_HESTON, step0=k, antithetic=antithetic,
                path0=path0, dtype=dtype, device=device,
            )[:, 0]
            zv, zs = z[:, 0], z[:, 1]
            if scheme == "full_truncation":
                vp = v.clamp(min=0.0)
                sq = torch.sqrt(vp * dt)
                log_s = log_s + (m - 0.5 * lam**2 * vp) * dt + lam * sq * (rho * zv + rho_bar * zs)
                v = v + kappa * (theta - vp) * dt + xi * sq * zv
                vs.append(v.clamp(min=0.0))
            else:
                mean = theta + (v - theta) * ekdt
                var = v * c1 + c2
                psi = var / (mean * mean)
                quad = psi <= 1.5
                # quadratic branch (psi <= 1.5), with psi clamped so the other branch stays finite
                psi_q = psi.clamp(max=1.5)
                inv = 2.0 / psi_q
                b2 = inv - 1 + torch.sqrt(inv) * torch.sqrt(inv - 1)
                a = mean / (1 + b2)
                b = torch.sqrt(b2)
                v_quad = a * (b + zv) ** 2
                # exponential branch (psi > 1.5)
                psi_e = psi.clamp(min=1.5)
                p = (psi_e - 1) / (psi_e + 1)
                beta = (1 - p) / mean
                u = torch.special.ndtr(zv)
                ratio = ((1 - p) / (1 - u).clamp(min=1e-300)).clamp(min=1.0)
                v_exp = torch.where(u > p, torch.log(ratio) / beta, torch.zeros_like(u))
                v_new = torch.where(quad, v_quad, v_exp)
                # martingale correction: E[exp(A v_new) | v] in closed form for each branch
                one_m = (1 - 2 * a_mgf * a).clamp(min=1e-12)
                lm_quad = a_mgf * b2 * a / one_m - 0.5 * torch.log(one_m)
                den = (beta - a_mgf).clamp(min=1e-12)
                lm_exp = torch.log(p + beta * (1 - p) / den)
                k0s = -torch.where(quad, lm_quad, lm_exp) - (k1 + 0.5 * k3) * v
                log_s = (
                    log_s + m * dt + k0s + k1 * v + k2 * v_new
                    + lam * torch.sqrt(c_diff * (g1 * v + g2 * v_new)) * zs
                )
                v = v_new
                vs.append(v)
            logs.append(log_s)
        return torch.stack(logs, dim=1), torch.stack(vs, dim=1)
