"""The neural SDE market model: log-prices plus a latent state, driven by shared noise.

Units. The model works in normalised units, so that one calibration window is one unit of
model time and a window's log-price has size about 1:

    tau = t / (window * dt_data),        x~ = x / (return_scale * sqrt(window)),

with ``return_scale`` the standard deviation of the data's daily log returns (per asset,
stored with the model) and ``dt_data = 1/252`` years. The state is y = (x~, h), with x~ the
normalised log-price of each asset relative to the start and h a latent state of size
``latent``. The Stratonovich SDE

    dy = mu_theta(tau, h) dtau + sigma_theta(tau, h) o dW_tau,   W in R^noise,

has drift and diffusion MLPs (LipSwish activations, time as an input) that see only
(tau, h), never the price level, so the law of returns does not depend on it; the assets
correlate through the shared Brownian channels. The initial latent state is a learned map of
Gaussian noise, h_0 = xi_theta(N(0, I)), and x~_0 = 0. The initial price diffusion rows are
set to unit norm, so an untrained model already has the data's daily volatility.

Measures.

- "historical": the calibrated SDE, solved by reversible Heun (as in training).
- "risk_neutral": by Girsanov the diffusion is unchanged and the drift of log S becomes
  r - q - |sigma|^2 / 2, with sigma_i = sigma_theta[i, :] * return_scale_i / sqrt(dt_data)
  the annualised volatility row of asset i. The price is stepped by log-Euler with the
  volatility taken at the left point (adapted),

      log S_{n+1} = log S_n + (r - q - |sigma_n|^2 / 2) dt + sigma_n . dW_n,

  so E[S_{n+1} e^{-(r-q) dt} | F_n] = S_n exactly and the discounted price is an exact
  discrete-time martingale. The latent state keeps its calibrated (historical) law: it is
  stepped by the same reversible Heun scheme with the same increments.

Noise is counter-based (``counter_normal``, keyed by seed, path index, step and channel), so
samples are bit-identical for a seed and path i does not depend on n_paths or chunk_size.

References:
    Kidger, Foster, Li, Lyons 2021, "Neural SDEs as Infinite-Dimensional GANs",
    arXiv 2102.03657 (generator architecture); Kidger et al. 2021, "Efficient and Accurate
    Gradients for Neural SDEs", arXiv 2105.13493 (reversible Heun).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch
from torch import Tensor, nn

from neuralsde_fin._brownian import counter_normal
from neuralsde_fin._errors import CheckpointError
from neuralsde_fin._models._io import atomic_save, safe_load
from neuralsde_fin._solvers import LipSwish, sdeint

TRADING_DAYS = 252
MODEL_FORMAT = "neuralsde_fin.MarketModel"
MEASURES = ("historical", "risk_neutral")

# Leading keys of the counter-based noise streams (never reused across purposes).
_KEY_SAMPLE_DW, _KEY_SAMPLE_H0, _KEY_TRAIN_DW, _KEY_TRAIN_H0 = 11, 12, 13, 14


def _mlp(n_in: int, n_out: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, width), LipSwish()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), LipSwish()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class _Increments:
    """Precomputed Brownian increments on a uniform grid, in the shape ``sdeint`` fetches."""

    def __init__(self, dw: Tensor, t0: float, dt: float) -> None:
        self.dw, self.t0, self.dt = dw, t0, dt
        self.shape = tuple(dw.shape[1:])

    def increments(self, grid: Tensor) -> Tensor:
        lo = round((float(grid[0]) - self.t0) / self.dt)
        return self.dw[lo : lo + len(grid) - 1]


class MarketModel(nn.Module):
    """Neural SDE market model: normalised log-prices plus a latent state (see module doc).

        d(x~, h) = mu_theta(tau, h) dtau + sigma_theta(tau, h) o dW_tau,   h_0 = xi_theta(Z)

    Args:
        n_assets: number of priced assets (>= 1).
        latent: size of the latent state.
        noise: number of Brownian channels (default n_assets + latent).
        width: hidden units of the MLPs.
        depth: hidden layers of the MLPs.
        init_noise: size of the Gaussian input of the initial-latent map (default latent).
        window: calibration window in steps of the data (the model's unit of time).
        dt_data: the data's step in years (1/252: trading days).
        return_scale: standard deviation of daily log returns per asset (n_assets,).
        time_input: feed tau to the MLPs (as Kidger et al.); without it the model is
            time-homogeneous, which extrapolates more safely beyond one window.

    Shape:
        f_and_g: t (), y (batch, n_assets + latent) -> f (batch, state),
        g (batch, state, noise).

    References:
        Kidger, Foster, Li, Lyons 2021, arXiv 2102.03657.
    """

    sde_type = "stratonovich"
    noise_type = "general"

    def __init__(
        self,
        n_assets: int = 1,
        *,
        latent: int = 4,
        noise: int | None = None,
        width: int = 32,
        depth: int = 2,
        init_noise: int | None = None,
        window: int = 64,
        dt_data: float = 1.0 / TRADING_DAYS,
        return_scale: Any = None,
        time_input: bool = True,
    ) -> None:
        super().__init__()
        for name, v, lo in (("n_assets", n_assets, 1), ("latent", latent, 1), ("width", width, 1),
                            ("depth", depth, 1), ("window", window, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        noise = n_assets + latent if noise is None else noise
        init_noise = latent if init_noise is None else init_noise
        if not isinstance(noise, int) or noise < 1:
            raise ValueError(f"noise must be an integer >= 1, got {noise!r}")
        self.n_assets, self.latent, self.noise = n_assets, latent, noise
        self.state = n_assets + latent
        self.width, self.depth, self.init_noise = width, depth, init_noise
        self.window, self.dt_data, self.time_input = window, float(dt_data), bool(time_input)
        scale = torch.full((n_assets,), 0.01) if return_scale is None else torch.as_tensor(
            return_scale, dtype=torch.float32
        ).flatten()
        if scale.shape != (n_assets,) or not bool((scale > 0).all()):
            raise ValueError(f"return_scale must be {n_assets} positive numbers, got {scale}")
        self.register_buffer("return_scale", scale.clone())
        n_in = latent + int(self.time_input)
        self.initial = _mlp(init_noise, latent, width, depth)
        self.drift = _mlp(n_in, self.state, width, depth)
        self.diffusion = _mlp(n_in, self.state * noise, width, depth)
        with torch.no_grad():
            # Start at the data's volatility: price rows of sigma = e_i-ish with unit norm.
            last = self.drift[-1]
            last.weight.mul_(0.1)
            last.bias.zero_()
            lastg = self.diffusion[-1]
            lastg.weight.mul_(0.1)
            b = torch.zeros(self.state, noise)
            b[n_assets:] = 0.3 * torch.randn(latent, noise) / math.sqrt(noise)
            for i in range(n_assets):
                b[i, i % noise] = 1.0
            lastg.bias.copy_(b.flatten())

    # ---------------------------------------------------------------- SDE protocol
    def _inputs(self, t: Tensor, h: Tensor) -> Tensor:
        if not self.time_input:
            return h
        return torch.cat([t.to(h.dtype).expand(h.shape[0], 1), h], dim=1)

    def f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Drift (batch, state) and diffusion (batch, state, noise) in model units."""
        inp = self._inputs(torch.as_tensor(t, dtype=y.dtype, device=y.device), y[:, self.n_assets:])
        return self.drift(inp), self.diffusion(inp).view(y.shape[0], self.state, self.noise)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift in model units, shape (batch, state)."""
        return self.f_and_g(t, y)[0]

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diffusion in model units, shape (batch, state, noise)."""
        return self.f_and_g(t, y)[1]

    # ---------------------------------------------------------------- units
    @property
    def path_scale(self) -> Tensor:
        """Log-price units per normalised unit: return_scale * sqrt(window), shape (n_assets,)."""
        return self.return_scale * math.sqrt(self.window)

    def normalise(self, log_paths: Tensor) -> Tensor:
        """Log-price windows (..., n_assets) in data units -> normalised units."""
        return log_paths / self.path_scale.to(log_paths)

    def _y0(self, z: Tensor) -> Tensor:
        h0 = self.initial(z)
        return torch.cat([h0.new_zeros(h0.shape[0], self.n_assets), h0], dim=1)

    # ---------------------------------------------------------------- training
    def simulate_normalised(
        self,
        batch: int,
        *,
        seed: int,
        step: int,
        n_steps: int | None = None,
        adjoint: bool = False,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Generator output for training: normalised log-price paths over one window.

        Noise is a pure function of (seed, step, path, time, channel).

        Shape:
            returns (batch, n_steps + 1, n_assets), n_steps = window by default.
        """
        n_steps = self.window if n_steps is None else n_steps
        p = next(self.parameters())
        dtype = p.dtype if dtype is None else dtype
        dev = p.device
        paths = torch.arange(batch, device=dev)
        z = counter_normal(
            seed, _KEY_TRAIN_H0, step, paths[:, None],
            torch.arange(self.init_noise, device=dev)[None, :], dtype=dtype, device=dev,
        )
        dtau = 1.0 / self.window
        dw = math.sqrt(dtau) * counter_normal(
            seed, _KEY_TRAIN_DW, step, torch.arange(n_steps, device=dev)[:, None, None],
            paths[None, :, None], torch.arange(self.noise, device=dev)[None, None, :],
            dtype=dtype, device=dev,
        )
        ts = torch.arange(n_steps + 1, dtype=dtype, device=dev) * dtau
        ys = sdeint(self, self._y0(z), ts, bm=_Increments(dw, 0.0, dtau), adjoint=adjoint)
        return ys[..., : self.n_assets].transpose(0, 1)

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def _sample_chunk(
        self, idx: Tensor, horizon: int, dt: float, measure: str, r: float, q: Tensor,
        seed: int, dtype: torch.dtype,
    ) -> Tensor:
        """Log-prices (in data units) relative to spot for paths ``idx``: (chunk, horizon+1, A)."""
        dev = idx.device
        a = self.n_assets
        tscale = self.window * self.dt_data  # years per model time unit
        dtau = dt / tscale
        z = counter_normal(
            seed, _KEY_SAMPLE_H0, idx[:, None], torch.arange(self.init_noise, device=dev)[None],
            dtype=dtype, device=dev,
        )
        y = self._y0(z)
        zst = y
        f, g = self.f_and_g(torch.zeros((), dtype=dtype, device=dev), zst)
        scale = self.path_scale.to(dtype=dtype, device=dev)
        vol_unit = (self.return_scale.to(dtype=dtype, device=dev) / math.sqrt(self.dt_data))
        out = torch.empty(idx.shape[0], horizon + 1, a, dtype=dtype, device=dev)
        out[:, 0] = 0.0
        logs = torch.zeros(idx.shape[0], a, dtype=dtype, device=dev)
        chans = torch.arange(self.noise, device=dev)[None]
        for n in range(horizon):
            eps = counter_normal(seed, _KEY_SAMPLE_DW, n, idx[:, None], chans, dtype=dtype,
                                 device=dev)
            dw = math.sqrt(dtau) * eps
            if measure == "risk_neutral":
                # left-point annualised vol rows of the price channels: g at the solver state z
                sig = g[:, :a] * vol_unit[:, None]  # (chunk, A, noise)
                var = sig.pow(2).sum(-1)
                logs = logs + (r - q - 0.5 * var) * dt + torch.einsum(
                    "bam,bm->ba", sig, math.sqrt(dt) * eps
                )
            # reversible Heun step of the full state (same scheme as training)
            t1 = torch.as_tensor((n + 1) * dtau, dtype=dtype, device=dev)
            z1 = 2 * y - zst + f * dtau + torch.bmm(g, dw.unsqueeze(-1)).squeeze(-1)
            f1, g1 = self.f_and_g(t1, z1)
            y = y + (f + f1) * (0.5 * dtau) + torch.bmm(g + g1, 0.5 * dw.unsqueeze(-1)).squeeze(-1)
            zst, f, g = z1, f1, g1
            if measure == "historical":
                logs = y[:, :a] * scale
            out[:, n + 1] = logs
        return out

    def sample(
        self,
        n_paths: int,
        horizon: int,
        *,
        measure: str = "historical",
        r: float = 0.0,
        q: float | list[float] = 0.0,
        spot: Any = None,
        seed: int = 0,
        dt: float = 1.0 / TRADING_DAYS,
        chunk_size: int = 16384,
        dtype: torch.dtype = torch.float32,
    ) -> Any:
        """Sample price scenarios under the historical or the risk-neutral measure.

        Historical: the calibrated SDE (reversible Heun). Risk-neutral: log-Euler for the price,
            log S_{n+1} = log S_n + (r - q - |sigma_n|^2/2) dt + sigma_n . dW_n,
        sigma_n the left-point annualised volatility, so e^{-(r-q)t} S_t is an exact discrete
        martingale; the latent state keeps its calibrated law.

        Args:
            n_paths: number of paths.
            horizon: number of steps of ``dt`` years.
            measure: "historical" or "risk_neutral".
            r: risk-free rate (continuous, per year).
            q: dividend yield, one float or one per asset.
            spot: initial prices (float or one per asset); default 1.
            seed: noise seed; path i depends only on (seed, i).
            dt: step in years (default one trading day).
            chunk_size: paths simulated at once (bounds memory).
            dtype: float32 or float64.

        Returns:
            ``nsf.Scenarios`` with times (horizon + 1,) and prices (n_paths, horizon + 1,
            n_assets).

        Shape:
            prices: (n_paths, horizon + 1, n_assets).
        """
        for name, v in (("n_paths", n_paths), ("horizon", horizon), ("chunk_size", chunk_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of years, got {dt!r}")
        a = self.n_assets
        dev = self.return_scale.device
        qv = torch.as_tensor(q, dtype=dtype).flatten().to(dev)
        if qv.numel() not in (1, a):
            raise ValueError(f"q must be a float or {a} values, got {q!r}")
        s0 = torch.ones(a, dtype=dtype) if spot is None else torch.as_tensor(
            spot, dtype=dtype).flatten()
        if s0.numel() == 1:
            s0 = s0.expand(a)
        if s0.shape != (a,) or not bool((s0 > 0).all()):
            raise ValueError(f"spot must be a positive float or {a} positive values, got {spot!r}")
        prices = torch.empty(n_paths, horizon + 1, a, dtype=dtype)
        was_training = self.training
        self.eval()
        try:
            orig = next(self.parameters()).dtype
            model = self if orig == dtype else _cast_copy(self, dtype)
            for lo in range(0, n_paths, chunk_size):
                hi = min(n_paths, lo + chunk_size)
                idx = torch.arange(lo, hi, device=dev)
                logs = model._sample_chunk(idx, horizon, float(dt), measure, float(r), qv, seed,
                                           dtype)
                prices[lo:hi] = (s0.to(dev) * torch.exp(logs)).cpu()
        finally:
            self.train(was_training)
        times = torch.arange(horizon + 1, dtype=dtype) * dt
        qout = float(qv[0]) if qv.numel() == 1 else [float(v) for v in qv]
        return _make_scenarios(times, prices, measure, float(r), qout, seed)

    # ---------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain JSON values (return_scale is in the state dict)."""
        return dict(
            n_assets=self.n_assets, latent=self.latent, noise=self.noise, width=self.width,
            depth=self.depth, init_noise=self.init_noise, window=self.window,
            dt_data=self.dt_data, time_input=self.time_input,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save weights and config atomically (temp file, then rename); see ``load_model``."""
        for k, v in self.state_dict().items():
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"refusing to save non-finite weights ({k})")
        atomic_save(
            {
                "format": MODEL_FORMAT,
                "version": 1,
                "config": json.dumps(self.config()),
                "info": json.dumps(getattr(self, "info", {})),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            },
            path,
        )


def _cast_copy(model: MarketModel, dtype: torch.dtype) -> MarketModel:
    new = MarketModel(**model.config())
    new.load_state_dict(model.state_dict())
    return new.to(dtype=dtype, device=model.return_scale.device)


def _make_scenarios(times, prices, measure, r, q, seed):
    from neuralsde_fin._scenarios import Scenarios

    return Scenarios(times, prices, measure=measure, r=r, q=q, seed=seed, model="MarketModel")


def model_from_checkpoint(obj: dict[str, Any], where: str) -> MarketModel:
    """Build a MarketModel from a loaded checkpoint dict (format already checked)."""
    try:
        cfg = json.loads(obj["config"])
        model = MarketModel(**cfg)
        model.load_state_dict(obj["state_dict"])
        model.info = json.loads(obj.get("info", "{}"))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        msg = str(err).splitlines()[0]
        raise CheckpointError(f"checkpoint {where!r} has an invalid model: {msg}") from None
    return model


def load_model(path: str | os.PathLike) -> MarketModel:
    """Load a model written by ``MarketModel.save`` (``torch.load(weights_only=True)``).

    Raises:
        CheckpointError: missing, truncated or corrupted file, or not a model checkpoint.
    """
    obj = safe_load(path, kind=MODEL_FORMAT)
    return model_from_checkpoint(obj, str(path))
