"""The neural SDE market model: log-prices plus a latent state, solved by the solver core.

Units. The model works in normalised units, so that one calibration window is one unit of
model time and a window's log-price has size about 1:

    tau = t / (window * dt_data),        x~ = x / (return_scale * sqrt(window)),

with ``return_scale`` the standard deviation of the data's daily log returns (per asset,
stored with the model) and ``dt_data = 1/252`` years. The state is y = (x~, h), with x~ the
normalised log-price of each asset relative to the start and h a latent state of size
``latent``. The Stratonovich SDE

    dy = mu_theta(tau, h) dtau + sigma_theta(tau, h) o dW_tau,   W in R^noise,

has drift and diffusion MLPs (LipSwish activations, time as an input) that see only
(tau, h), never the price level (the fused field's ``input_start``), so the law of returns
does not depend on it; the assets correlate through the shared Brownian channels. The initial
latent state is a learned map of Gaussian noise, h_0 = xi_theta(N(0, I)), and x~_0 = 0. The
initial price diffusion rows are set to unit norm, so an untrained model already has the
data's daily volatility.

One program. Training (with or without the adjoint) and sampling (both measures) are
``nsf.sdeint`` solves of this module's fused field (``_solvers/_fused.py``) by reversible Heun
(the native whole-solve kernel on the CPU for large solves), driven by
:class:`~neuralsde_fin._brownian._steps.StepBrownian`: one virtual Brownian tree in trading
days keyed by (seed, path id), so a finer ``dt`` refines the same Brownian paths and path i
does not depend on ``n_paths``, the chunking or the ranks.

Measures.

- "historical": the calibrated SDE.
- "risk_neutral": by Girsanov the diffusion is unchanged and the drift of log S becomes
  r - q - |sigma|^2 / 2, with sigma_i = sigma_theta[i, :] * return_scale_i / sqrt(dt_data)
  the annualised volatility row of asset i. The price rows are the field's log-price rows
  (``LogPriceRows``), stepped by log-Euler with the volatility taken at the left point (the
  solver's state z_n),

      log S_{n+1} = log S_n + (r - q - |sigma_n|^2 / 2) dt + sigma_n . dW_n,

  so E[S_{n+1} e^{-(r-q) dt} | F_n] = S_n exactly and the discounted price is an exact
  discrete-time martingale. The latent state keeps its calibrated (historical) law: it is
  stepped by the same reversible Heun scheme with the same increments, in the same solve.

References:
    Kidger, Foster, Li, Lyons 2021, "Neural SDEs as Infinite-Dimensional GANs",
    arXiv 2102.03657 (generator architecture); Kidger et al. 2021, "Efficient and Accurate
    Gradients for Neural SDEs", arXiv 2105.13493 (reversible Heun).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuralsde_fin._brownian import counter_normal, derive_seed
from neuralsde_fin._brownian._steps import LEAVES_LOG2, UNITS_LOG2, StepBrownian
from neuralsde_fin._calendar import DAY, HISTORICAL, RISK_NEUTRAL
from neuralsde_fin._models._common import check_sample_args, path_scalar, spot_tensor
from neuralsde_fin._models._context import (
    context_features,
    feature_count,
    history_path,
    stationary_index,
)
from neuralsde_fin._models._io import save_model
from neuralsde_fin._solvers import MLPDriftDiffusion, sdeint
from neuralsde_fin._solvers._fused import FusedField, LogPriceRows
from neuralsde_fin._solvers._nets import FusedSDE, mlp
from neuralsde_fin._validate import check_int, check_number

__all__ = ["MarketModel"]

# Leading keys of the counter-based noise streams (never reused across purposes).
_KEY_SAMPLE_DW, _KEY_SAMPLE_H0, _KEY_TRAIN_DW, _KEY_TRAIN_H0 = 11, 12, 13, 14


class MarketModel(MLPDriftDiffusion):
    """Neural SDE market model: normalised log-prices plus a latent state (see module doc).

        d(x~, h) = mu_theta(tau, h) dtau + sigma_theta(tau, h) o dW_tau,   h_0 = xi_theta(Z)

    A :class:`~neuralsde_fin.MLPDriftDiffusion` whose nets read the latent state only
    (``input_start = n_assets``), with an initial-state map and the data's units.

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
        drift_final: output activation of the drift net (None, "tanh", "sigmoid", "softplus").
        diffusion_final: output activation of the diffusion net.
        context: None (an unconditional model), or the number C of trailing trading days
            whose features (``_models/_context.py``) set the initial latent distribution:
            h_0 = xi_theta(Z, e_theta(features)), the learned code e of today's state.
        stationary: how many training contexts' features the model keeps, to start from its
            stationary law when no history is given (a draw of one of them per path).

    Shape:
        f_and_g: t (), y (batch, n_assets + latent) -> f (batch, state),
        g (batch, state, noise).

    References:
        Kidger, Foster, Li, Lyons 2021, arXiv 2102.03657.
    """

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
        dt_data: float = DAY,
        return_scale: Any = None,
        time_input: bool = True,
        drift_final: str | None = None,
        diffusion_final: str | None = None,
        context: int | None = None,
        stationary: int = 0,
    ) -> None:
        for name, v in (("n_assets", n_assets), ("latent", latent), ("width", width),
                        ("depth", depth), ("window", window)):
            check_int(name, v)
        noise = n_assets + latent if noise is None else check_int("noise", noise)
        init_noise = latent if init_noise is None else check_int("init_noise", init_noise)
        check_number("dt_data", dt_data, positive=True)
        super().__init__(
            n_assets + latent, noise, width, depth, input_start=n_assets,
            time_input=bool(time_input), drift_final=drift_final,
            diffusion_final=diffusion_final,
        )
        self.n_assets, self.latent = int(n_assets), int(latent)
        self.width, self.depth, self.init_noise = int(width), int(depth), int(init_noise)
        self.window, self.dt_data, self.time_input = int(window), float(dt_data), bool(time_input)
        scale = torch.full((n_assets,), 0.01) if return_scale is None else torch.as_tensor(
            return_scale, dtype=torch.float32
        ).flatten()
        if scale.shape != (n_assets,) or not bool((scale > 0).all()):
            raise ValueError(f"return_scale must be {n_assets} positive numbers, got {scale}")
        self.register_buffer("return_scale", scale.clone())
        self.context = None if context is None else check_int("context", context, 2)
        self.n_features = feature_count(n_assets)
        code = latent if self.context else 0
        self.initial = mlp(init_noise + code, latent, width, depth)
        if self.context:
            self.encoder = mlp(self.n_features, code, width, depth)
            self.register_buffer("stationary_features",
                                 torch.zeros(check_int("stationary", stationary, 0),
                                             self.n_features))
        self.info: dict[str, Any] = {}
        with torch.no_grad():
            # Start at the data's volatility: price rows of sigma = e_i-ish with unit norm.
            net = self.net
            net.out_weight[0].mul_(0.1)
            net.out_bias[0].zero_()
            net.out_weight[1].mul_(0.1)
            b = torch.zeros(self.state, noise)
            b[n_assets:] = 0.3 * torch.randn(latent, noise) / math.sqrt(noise)
            for i in range(n_assets):
                b[i, i % noise] = 1.0
            net.out_bias[1].copy_(b.flatten())

    # ---------------------------------------------------------------- units
    @property
    def path_scale(self) -> Tensor:
        """Log-price units per normalised unit: return_scale * sqrt(window), shape (n_assets,)."""
        return self.return_scale * math.sqrt(self.window)

    @property
    def years_per_unit(self) -> float:
        """Years per unit of model time (one window)."""
        return self.window * self.dt_data

    def normalise(self, log_paths: Tensor) -> Tensor:
        """Log-price windows (..., n_assets) in data units -> normalised units."""
        return log_paths / self.path_scale.to(log_paths)

    def _y0(self, z: Tensor, features: Tensor | None = None) -> Tensor:
        if self.context:
            if features is None:
                raise ValueError("a conditional model (context=C) needs the context's features")
            z = torch.cat([z, self.encoder(features.to(z).expand(z.shape[0], -1))], dim=1)
        h0 = self.initial(z)
        return torch.cat([h0.new_zeros(h0.shape[0], self.n_assets), h0], dim=1)

    def _brownian(self, n: int, seed: int, step_days: float, path_offset: int, antithetic: bool,
                  dtype: torch.dtype, device: torch.device) -> StepBrownian:
        return StepBrownian(
            n, self.noise, seed=seed, step=step_days, scale=1.0 / self.window,
            path_offset=path_offset, antithetic=antithetic, dtype=dtype, device=device,
        )

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
        path_offset: int = 0,
        features: Tensor | None = None,
    ) -> Tensor:
        """Generator output for training: normalised log-price paths over one window.

        Noise is a pure function of (seed, step, path id): the initial latent inputs are
        counter-based normals, the increments those of the Brownian tree of
        ``derive_seed(seed, key, step)``. The paths have global ids ``path_offset ..
        path_offset + batch - 1`` (a data-parallel rank simulates its own contiguous share of
        the batch on disjoint Brownian paths). One ``nsf.sdeint`` solve (reversible Heun; the
        O(1)-memory adjoint with ``adjoint=True``).

        Shape:
            returns (batch, n_steps + 1, n_assets), n_steps = window by default.
        """
        n_steps = self.window if n_steps is None else n_steps
        p = self.return_scale
        dtype = next(self.parameters()).dtype if dtype is None else dtype
        dev = p.device
        paths = torch.arange(path_offset, path_offset + batch, device=dev)
        z = counter_normal(
            seed, _KEY_TRAIN_H0, step, paths[:, None],
            torch.arange(self.init_noise, device=dev)[None, :], dtype=dtype, device=dev,
        )
        bm = self._brownian(batch, derive_seed(seed, _KEY_TRAIN_DW, step), 1.0, path_offset,
                            False, dtype, dev)
        ts = torch.arange(n_steps + 1, dtype=dtype, device=dev) * bm.dt
        ys = sdeint(self, self._y0(z, features), ts, bm=bm, adjoint=adjoint)
        return ys[..., : self.n_assets].transpose(0, 1)

    # ---------------------------------------------------------------- sampling
    def risk_neutral(self, r: float, q: Tensor, vol_scale: Tensor | None = None) -> _RiskNeutral:
        """The risk-neutral SDE of this model (price rows as log-price rows), for ``sdeint``.

        Args:
            r: risk-free rate per year.
            q: dividend yields per year, shape (n_assets,).
            vol_scale: None, or a multiplier of the price diffusion (0-dim or (batch, 1)).
        """
        ps = self.path_scale.to(q)
        rate = (r - q) * self.years_per_unit / ps
        return _RiskNeutral(self, LogPriceRows(self.n_assets, rate, -0.5 * ps, vol_scale))

    def sample(
        self,
        n_paths: int,
        horizon: int,
        *,
        measure: str = RISK_NEUTRAL,
        r: float = 0.0,
        q: float | list[float] = 0.0,
        spot: Any = None,
        seed: int = 0,
        dt: float = DAY,
        antithetic: bool = False,
        vol_scale: float | Tensor = 1.0,
        chunk_size: int = 16384,
        path_offset: int = 0,
        valuation_date: Any = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        history: Any = None,
    ) -> Any:
        """Sample price scenarios under the historical or the risk-neutral measure.

        Historical: the calibrated SDE (reversible Heun). Risk-neutral: log-Euler for the price,
            log S_{n+1} = log S_n + (r - q - |sigma_n|^2/2) dt + sigma_n . dW_n,
        sigma_n the left-point annualised volatility, so e^{-(r-q)t} S_t is an exact discrete
        martingale; the latent state keeps its calibrated law. One ``nsf.sdeint`` solve per
        chunk of paths (the native kernel on the CPU for large chunks).

        Args:
            n_paths: number of paths.
            horizon: number of steps of ``dt`` years.
            measure: "historical" or "risk_neutral".
            r: risk-free rate (continuous, per year).
            q: dividend yield, one float or one per asset.
            spot: initial prices: a float, one per asset, or a tensor broadcastable to
                (n_paths, n_assets) that may require grad (pathwise delta); default 1.
            seed: noise seed; path i depends only on (seed, i). A finer ``dt`` refines the same
                Brownian paths (steps of 1/2^k trading days lie on the tree's nodes).
            dt: step in years (default one trading day).
            antithetic: paths 2j and 2j + 1 use opposite Gaussian inputs (n_paths even).
            vol_scale: multiplies the price diffusion (risk-neutral only): a float or one per
                path, possibly requiring grad (pathwise vega); 1 runs the fast solve.
            chunk_size: paths simulated at once (bounds memory).
            path_offset: global id of the first path: the paths drawn are
                ``path_offset .. path_offset + n_paths - 1`` of the seed's stream (one shard of
                a larger sample, see ``nsf.sample_shard``).
            valuation_date: date of time 0 (passed to Scenarios).
            dtype: float32 or float64.
            device: device of the solve and of the prices (default: the model's).
            history: today's state, for a model calibrated with ``context=C``: a price
                history (DataFrame with the model's assets as columns, Series, or array of
                closes, oldest first) whose last C + 1 closes set the initial latent
                distribution; ``spot`` then defaults to its last close. None: the model's
                stationary start (each path from one of the training contexts).

        Returns:
            ``nsf.Scenarios`` with times (horizon + 1,) and prices (n_paths, horizon + 1,
            n_assets).

        Shape:
            prices: (n_paths, horizon + 1, n_assets).
        """
        from neuralsde_fin._scenarios import Scenarios

        check_sample_args(n_paths, horizon, measure, dt, antithetic)
        check_int("chunk_size", chunk_size)
        check_int("path_offset", path_offset, 0)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        a = self.n_assets
        step_days = dt / self.dt_data
        if horizon * step_days > 2**UNITS_LOG2:
            raise ValueError(f"horizon * dt must be at most 2^{UNITS_LOG2} days, got "
                             f"{horizon * step_days:g}")
        if step_days < 2.0**-LEAVES_LOG2 * (1 - 1e-9):
            raise ValueError(f"dt must be at least 2^-{LEAVES_LOG2} trading days, got {dt!r}")
        dev = self.return_scale.device if device is None else torch.device(device)
        model = self._cast(dtype, dev)
        qv = torch.as_tensor(q, dtype=dtype).flatten().to(dev)
        if qv.numel() not in (1, a):
            raise ValueError(f"q must be a float or {a} values, got {q!r}")
        qv = qv.expand(a)
        features = None
        if history is not None:
            features, last = self.start_state(history)
            if spot is None:
                spot = last
            if valuation_date is None and hasattr(history, "index") and len(history.index) \
                    and hasattr(history.index[-1], "date"):
                valuation_date = history.index[-1]  # time 0 is the history's last date
        elif self.context and self.stationary_features.shape[0] == 0:
            raise ValueError("this conditional model stores no training contexts: pass "
                             "history= (its start)")
        s0 = spot_tensor(spot, n_paths, a, dtype, dev)
        lam = None
        if not (isinstance(vol_scale, (int, float)) and float(vol_scale) == 1.0):
            lam = path_scalar(vol_scale, n_paths, dtype, dev, "vol_scale")
            if measure == HISTORICAL:
                raise ValueError("vol_scale applies to risk-neutral sampling only")
        # a per-path or differentiable scale: log S is quadratic in it along a fixed latent path
        quad = lam is not None and (lam.requires_grad or lam.shape[0] > 1)
        scale = None if lam is None or quad else float(lam)
        times = torch.arange(horizon + 1, dtype=dtype, device=dev) * dt
        track = torch.is_grad_enabled() and (s0.requires_grad or (quad and lam.requires_grad))
        prices = None if track else torch.empty(n_paths, horizon + 1, a, dtype=dtype, device=dev)
        parts = []
        for lo in range(0, n_paths, chunk_size):
            hi = min(n_paths, lo + chunk_size)
            args = (hi - lo, horizon, step_days, measure, float(r), qv, seed, path_offset + lo,
                    antithetic, features)
            with torch.no_grad():
                if quad:
                    up, down = (model._sample_logs(*args, s) for s in (1.0, -1.0))
            if quad:
                logs = _scaled_logs(up, down, (float(r) - qv) * times[:, None],
                                    lam if lam.shape[0] == 1 else lam[lo:hi])
            else:
                with torch.no_grad():
                    logs = model._sample_logs(*args, scale)
            chunk = s0[lo:hi, None, :] * torch.exp(logs)
            if prices is None:
                parts.append(chunk)
            else:
                prices[lo:hi] = chunk
        if prices is None:
            prices = torch.cat(parts)
        # Metadata keeps the q that was asked for, not its float32 rounding.
        qin = torch.as_tensor(q, dtype=torch.float64).flatten()
        qout = float(qin[0]) if qin.numel() == 1 else [float(v) for v in qin]
        return Scenarios(
            times, prices, measure=measure, r=float(r), q=qout, seed=seed, model="MarketModel",
            antithetic=antithetic, valuation_date=valuation_date,
        )

    def start_state(self, history: Any) -> tuple[Tensor, list[float]]:
        """Today's state from a price history: the context features and the last closes.

        Checks the history (one-line errors: too short, NaN or non-positive prices with the
        row, wrong columns) without sampling, e.g. before a long run writes anything.

        Args:
            history: as ``sample(..., history=...)``.

        Returns:
            (features (1, n_features) float64, the last closes per asset).
        """
        if not self.context:
            raise ValueError("history= needs a model calibrated with context=C (this one "
                             "starts from its stationary law)")
        logp, last = history_path(history, self.n_assets, self.context, self.info.get("assets"))
        x = self.normalise(torch.as_tensor(logp - logp[0], dtype=torch.float64))
        return (context_features(x[None].to(self.return_scale.device), self.window),
                [float(v) for v in last])

    def trailing_history(self) -> Any:
        """The calibration history's last ``context + 1`` closes, as stored in the checkpoint:
        the start of "today" (``sample(..., history=model.trailing_history())``).

        Returns:
            A DataFrame (dates as index when the history had dates, the model's assets as
            columns), or None for an unconditional model or one without stored closes.
        """
        import pandas as pd

        closes = self.info.get("trailing_closes")
        if not self.context or not closes:
            return None
        dates = self.info.get("trailing_dates")
        index = pd.DatetimeIndex(pd.to_datetime(dates), name="Date") if dates else None
        cols = self.info.get("assets") or [f"asset{j}" for j in range(self.n_assets)]
        return pd.DataFrame(np.asarray(closes, dtype=np.float64), index=index, columns=cols)

    def _sample_logs(
        self, n: int, horizon: int, step_days: float, measure: str, r: float, q: Tensor,
        seed: int, offset: int, antithetic: bool, features: Tensor | None, lam: float | None,
    ) -> Tensor:
        """Log-prices relative to spot of paths offset .. offset + n - 1: (n, horizon + 1, A)."""
        p = self.return_scale
        dev, dtype = p.device, q.dtype
        ids = torch.arange(offset, offset + n, device=dev)
        keys = ids // 2 if antithetic else ids
        z = counter_normal(seed, _KEY_SAMPLE_H0, keys[:, None],
                           torch.arange(self.init_noise, device=dev)[None], dtype=dtype, device=dev)
        if antithetic:  # paths 2j and 2j + 1 use opposite Gaussian inputs
            z = z * (1 - 2 * (ids % 2)).to(dtype)[:, None]
        if self.context and features is None:  # the stationary start: a training context each
            pick = stationary_index(seed, keys, self.stationary_features.shape[0])
            features = self.stationary_features[pick]
        bm = self._brownian(n, derive_seed(seed, _KEY_SAMPLE_DW), step_days, offset, antithetic,
                            dtype, dev)
        sde = self if measure == HISTORICAL else self.risk_neutral(r, q, lam)
        ts = torch.arange(horizon + 1, dtype=dtype, device=dev) * bm.dt
        ys = sdeint(sde, self._y0(z, features), ts, bm=bm)
        return ys[..., : self.n_assets].transpose(0, 1) * self.path_scale.to(ys)

    def _cast(self, dtype: torch.dtype, device: torch.device) -> MarketModel:
        """This model, or a copy in ``dtype`` on ``device``."""
        p = next(self.parameters())
        if p.dtype == dtype and p.device == device:
            return self
        new = MarketModel(**self.config())
        new.load_state_dict(self.state_dict())
        new.info = dict(self.info)
        return new.to(dtype=dtype, device=device)

    # ---------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain JSON values (return_scale is in the state dict)."""
        return dict(
            n_assets=self.n_assets, latent=self.latent, noise=self.noise, width=self.width,
            depth=self.depth, init_noise=self.init_noise, window=self.window,
            dt_data=self.dt_data, time_input=self.time_input, context=self.context,
            stationary=0 if not self.context else int(self.stationary_features.shape[0]),
            drift_final=self._final_names[0], diffusion_final=self._final_names[1],
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save weights and config atomically (temp file, then rename); see ``load_model``."""
        save_model(self, path)


def _scaled_logs(up: Tensor, down: Tensor, carry: Tensor, lam: Tensor) -> Tensor:
    r"""Risk-neutral log-prices with the price diffusion scaled by ``lam``, from the solves at
    lambda = 1 (``up``) and -1 (``down``).

    Along one latent path (which no lambda changes) the log-Euler price is
    log S_n / S_0 = R_n + lambda^2 C_n + lambda B_n, with R_n = (r - q) t_n the carry,
    C_n = -sum |sigma_k|^2 dt / 2 and B_n = sum sigma_k dW_k; so B = (up - down) / 2 and
    C = (up + down) / 2 - R exactly, and the result is differentiable in lambda (pathwise vega).

    Shape:
        up, down: (n, n_times, A); carry: (n_times, A); lam: (n, 1) or (1, 1).
    """
    lam = lam.reshape(-1, 1, 1)
    return carry + lam.square() * ((up + down) * 0.5 - carry) + lam * ((up - down) * 0.5)


class _RiskNeutral(FusedSDE):
    """The risk-neutral SDE of a market model for ``nsf.sdeint`` (torchsde protocol).

    The same fused field, with the price rows as log-price rows (``LogPriceRows``): drift
    rate_i - path_scale_i |lambda g_i|^2 / 2 and diffusion lambda g_i, in normalised units,
    stepped at the left point; the latent rows unchanged.
    """

    sde_type = "stratonovich"
    noise_type = "general"

    def __init__(self, model: MarketModel, log_price: LogPriceRows) -> None:
        self.model, self.log_price = model, log_price

    def _nsf_vector_field(self) -> FusedField:
        return FusedField(self.model, log_price=self.log_price)

    def parameters(self):
        return self.model.parameters()

