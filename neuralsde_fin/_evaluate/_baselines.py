"""Classical baselines fitted to a price history: GBM by maximum likelihood, GJR-GARCH(1,1,1)-t.

Both have ``.fit(prices)`` and ``.sample(n_paths, horizon, *, seed)``, which returns daily
log-price paths relative to the start, ``(n_paths, horizon + 1, n_assets)``, the layout of
:func:`neuralsde_fin.data.windows`. ``BASELINES`` maps a name to the class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._calendar import DAY
from neuralsde_fin._registry import registrar
from neuralsde_fin._validate import check_int

#: A price history: a frame / series from ``load_prices`` or an array of prices.
PriceHistory = pd.DataFrame | pd.Series | np.ndarray | torch.Tensor

#: name -> baseline class; filled by :func:`register`.
BASELINES: dict[str, type] = {}

#: Class decorator adding a baseline to ``BASELINES`` under ``name`` (sets ``cls.name``).
register = registrar(BASELINES, "baseline")


def history_returns(prices: PriceHistory) -> np.ndarray:
    """Daily log returns of a price history, ``(n_dates - 1, n_assets)`` float64.

    Accepts a DataFrame / Series (e.g. from :func:`neuralsde_fin.load_prices`) or an array of
    positive prices, ``(n_dates,)`` or ``(n_dates, n_assets)``.
    """
    if isinstance(prices, (pd.DataFrame, pd.Series)):
        arr = prices.to_numpy(dtype=np.float64)
    elif isinstance(prices, torch.Tensor):
        arr = prices.detach().cpu().double().numpy()
    else:
        arr = np.asarray(prices, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 3:
        raise ValueError(f"prices must be (n_dates >= 3, n_assets), got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError("prices must be finite and > 0")
    return np.diff(np.log(arr), axis=0)


def _check_sample_args(n_paths: int, horizon: int) -> None:
    check_int("n_paths", n_paths)
    check_int("horizon", horizon)


class _Baseline:
    """Shared methods: Scenarios output and a readable repr."""

    def sample(self, n_paths: int, horizon: int, *, seed: int = 0) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict[str, float]:
        raise NotImplementedError

    def sample_scenarios(
        self,
        n_paths: int,
        horizon: int,
        *,
        spot: float | Sequence[float] = 1.0,
        seed: int = 0,
        asset_names: Sequence[str] | None = None,
    ):
        """Historical-measure :class:`neuralsde_fin.Scenarios`: ``spot * exp(sample(...))``.

        Times are ``[0, 1, ..., horizon] / 252`` years. Needs ``neuralsde_fin.Scenarios``.

        Shape:
            ``.prices``: ``(n_paths, horizon + 1, n_assets)``.
        """
        import neuralsde_fin

        scen_cls = getattr(neuralsde_fin, "Scenarios", None)
        if scen_cls is None:
            raise ImportError("sample_scenarios needs neuralsde_fin.Scenarios (the pricing layer)")
        x = self.sample(n_paths, horizon, seed=seed)
        s0 = np.broadcast_to(np.asarray(spot, dtype=np.float64), (x.shape[2],))
        times = np.arange(horizon + 1, dtype=np.float64) * DAY
        return scen_cls(
            times,
            torch.from_numpy(s0 * np.exp(x)),
            measure="historical",
            seed=seed,
            model=repr(self),
            asset_names=asset_names,
        )

    def __repr__(self) -> str:
        try:
            ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params().items())
        except ValueError:
            ps = "unfitted"
        return f"{type(self).__name__}({ps})"


@register("gbm")
class GBMBaseline(_Baseline):
    """Geometric Brownian motion fitted by maximum likelihood on daily log returns.

    .. math:: d\\log S = (\\mu - \\tfrac12 \\operatorname{diag}\\Sigma)\\,dt + L\\,dW, \\quad
              \\Sigma = L L^\\top

    Daily log returns are iid ``N((mu - sigma^2/2) dt, Sigma dt)``; the MLE is closed form:
    ``m = mean(r)``, ``S = mean((r - m)(r - m)^T)`` (the biased covariance), ``Sigma = S / dt``,
    ``mu = m / dt + diag(Sigma) / 2``. Standard errors (one asset): ``se(sigma) = sigma /
    sqrt(2 n)``, ``se(mu) = sigma / sqrt(n dt)``.

    Attributes (after ``fit``): ``mu``, ``sigma`` (annualised, per asset), ``cov`` (annualised),
    ``stderr`` (dict of ``mu``, ``sigma``), ``n_obs``.
    """

    name = "gbm"

    def __init__(self, dt: float = DAY) -> None:
        self.dt = float(dt)
        self.mu: np.ndarray | None = None

    @classmethod
    def from_params(
        cls,
        mu: float | np.ndarray,
        sigma: float | np.ndarray,
        *,
        corr: np.ndarray | None = None,
        dt: float = DAY,
    ) -> GBMBaseline:
        """A GBM with given annualised drift(s) ``mu`` and volatility(ies) ``sigma``."""
        self = cls(dt=dt)
        self.mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
        self.sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        if self.mu.shape != self.sigma.shape or (self.sigma < 0).any():
            raise ValueError(f"from_params: bad mu {mu!r} or sigma {sigma!r}")
        c = np.eye(len(self.sigma)) if corr is None else np.asarray(corr, dtype=np.float64)
        self.cov = c * np.outer(self.sigma, self.sigma)
        self.n_obs = 0
        return self

    def fit(self, prices: PriceHistory) -> GBMBaseline:
        """Fit on a price history (DataFrame or array of prices, oldest first)."""
        return self.fit_returns(history_returns(prices))

    def fit_returns(self, returns: np.ndarray) -> GBMBaseline:
        """Fit on daily log returns ``(n_obs, n_assets)`` or ``(n_obs,)``."""
        r = np.asarray(returns, dtype=np.float64)
        r = r[:, None] if r.ndim == 1 else r
        n = r.shape[0]
        m = r.mean(0)
        c = (r - m).T @ (r - m) / n
        self.cov = c / self.dt
        self.sigma = np.sqrt(np.diag(self.cov))
        self.mu = m / self.dt + 0.5 * self.sigma**2
        self.n_obs = n
        self.stderr = {
            "mu": self.sigma / np.sqrt(n * self.dt),
            "sigma": self.sigma / np.sqrt(2 * n),
        }
        return self

    def params(self) -> dict[str, float]:
        """Fitted parameters (annualised) as a flat dict."""
        self._check_fitted()
        out = {}
        for j in range(len(self.sigma)):
            sfx = "" if len(self.sigma) == 1 else f"[{j}]"
            out[f"mu{sfx}"] = float(self.mu[j])
            out[f"sigma{sfx}"] = float(self.sigma[j])
        return out

    def _check_fitted(self) -> None:
        if self.mu is None:
            raise ValueError(f"{type(self).__name__}: call .fit(prices) before using the model")

    def sample(self, n_paths: int, horizon: int, *, seed: int = 0) -> np.ndarray:
        """Daily log-price paths from 0: exact GBM increments (path i does not depend on n_paths).

        Shape:
            output ``(n_paths, horizon + 1, n_assets)``.
        """
        self._check_fitted()
        _check_sample_args(n_paths, horizon)
        rng = np.random.default_rng(seed)
        d = len(self.sigma)
        chol = np.linalg.cholesky(self.cov * self.dt + 1e-300 * np.eye(d))
        drift = (self.mu - 0.5 * self.sigma**2) * self.dt
        z = rng.standard_normal((n_paths, horizon, d))
        r = drift + z @ chol.T
        out = np.zeros((n_paths, horizon + 1, d))
        np.cumsum(r, axis=1, out=out[:, 1:])
        return out


@register("gjr_garch_t")
class GJRGarchBaseline(_Baseline):
    """GJR-GARCH(1,1,1) with Student-t innovations, fitted per asset with the ``arch`` package.

    On percent log returns ``y_t = 100 r_t`` (arch's recommended scaling; parameters are kept
    in those units and results divided by 100):

    .. math::
        y_t = \\mu + \\varepsilon_t, \\quad \\varepsilon_t = \\sigma_t z_t, \\quad
        \\sigma_t^2 = \\omega + (\\alpha + \\gamma \\mathbb 1[\\varepsilon_{t-1} < 0])
        \\varepsilon_{t-1}^2 + \\beta \\sigma_{t-1}^2,

    with ``z_t`` a Student-t with ``nu`` degrees of freedom scaled to unit variance. Several
    assets are fitted one by one; their innovations are joined by a Gaussian copula with the
    correlation of the fitted standardised residuals.

    Sampling starts each path either from the stationary law (``start="stationary"``: a burn-in
    of ``burn_in`` days from the unconditional variance, so windows look like random windows of
    a long history) or from the end of the fitted history (``start="last"``: the next day's
    conditional variance, for scenarios continuing the history).

    Attributes (after ``fit``): ``params_`` (one dict per asset: mu, omega, alpha, gamma, beta,
    nu; percent units), ``stderr_`` (same keys), ``corr`` (copula correlation), ``results``
    (arch's fit results).

    References:
        Glosten, Jagannathan and Runkle (1993), "On the relation between the expected value and
        the volatility of the nominal excess return on stocks", Journal of Finance 48(5).
        Bollerslev (1987), "A conditionally heteroskedastic time series model for speculative
        prices and rates of return", REStat 69(3).
    """

    name = "gjr_garch_t"
    _KEYS = ("mu", "omega", "alpha[1]", "gamma[1]", "beta[1]", "nu")

    def __init__(self, start: str = "stationary", burn_in: int = 500) -> None:
        if start not in ("stationary", "last"):
            raise ValueError(f"start must be 'stationary' or 'last', got {start!r}")
        self.start = start
        self.burn_in = int(burn_in)
        self.params_: list[dict[str, float]] | None = None

    @classmethod
    def from_params(
        cls,
        mu: float,
        omega: float,
        alpha: float,
        gamma: float,
        beta: float,
        nu: float,
        *,
        start: str = "stationary",
        burn_in: int = 500,
    ) -> GJRGarchBaseline:
        """A one-asset GJR-GARCH(1,1,1)-t with given parameters (percent units, as arch's)."""
        if not (omega > 0 and alpha >= 0 and alpha + gamma >= 0 and beta >= 0 and nu > 2):
            raise ValueError(
                f"from_params: need omega > 0, alpha >= 0, alpha + gamma >= 0, beta >= 0, nu > 2; "
                f"got omega={omega}, alpha={alpha}, gamma={gamma}, beta={beta}, nu={nu}"
            )
        if start == "last":
            raise ValueError("from_params: start='last' needs a fitted history; use 'stationary'")
        self = cls(start=start, burn_in=burn_in)
        keys = ("mu", "omega", "alpha", "gamma", "beta", "nu")
        self.params_ = [dict(zip(keys, map(float, (mu, omega, alpha, gamma, beta, nu))))]
        self.stderr_ = [dict.fromkeys(keys, float("nan"))]
        self.corr = np.ones((1, 1))
        self.results = []
        return self

    def fit(self, prices: PriceHistory) -> GJRGarchBaseline:
        """Fit on a price history (DataFrame or array of prices, oldest first)."""
        return self.fit_returns(history_returns(prices))

    def fit_returns(self, returns: np.ndarray) -> GJRGarchBaseline:
        """Fit on daily log returns ``(n_obs, n_assets)`` or ``(n_obs,)`` (not in percent)."""
        try:
            from arch import arch_model
        except ImportError as exc:  # pragma: no cover - arch is in the dev extra
            raise ImportError(
                "GJRGarchBaseline needs the 'arch' package: pip install arch"
            ) from exc
        r = np.asarray(returns, dtype=np.float64)
        r = r[:, None] if r.ndim == 1 else r
        self.params_, self.stderr_, self.results = [], [], []
        self._last_var, self._last_eps = [], []
        resid = []
        for j in range(r.shape[1]):
            am = arch_model(100 * r[:, j], mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t")
            res = am.fit(disp="off")
            p = {k.split("[")[0]: float(res.params[k]) for k in self._KEYS}
            se = {k.split("[")[0]: float(res.std_err[k]) for k in self._KEYS}
            self.params_.append(p)
            self.stderr_.append(se)
            self.results.append(res)
            eps = 100 * r[:, j] - p["mu"]
            cv = np.asarray(res.conditional_volatility)
            self._last_eps.append(eps[-1])
            self._last_var.append(cv[-1] ** 2)
            resid.append(eps / cv)
        z = np.stack(resid, axis=1)
        self.corr = np.corrcoef(z, rowvar=False).reshape(r.shape[1], r.shape[1])
        return self

    def params(self) -> dict[str, float]:
        """Fitted parameters (percent units) as a flat dict."""
        self._check_fitted()
        out = {}
        for j, p in enumerate(self.params_):
            sfx = "" if len(self.params_) == 1 else f"[{j}]"
            out.update({f"{k}{sfx}": v for k, v in p.items()})
        return out

    def _check_fitted(self) -> None:
        if self.params_ is None:
            raise ValueError(f"{type(self).__name__}: call .fit(prices) before using the model")

    def _innovations(self, rng: np.random.Generator, n_paths: int, n_steps: int) -> np.ndarray:
        """Unit-variance Student-t innovations ``(n_paths, n_steps, n_assets)``.

        Drawn path by path (C order), so the first paths do not depend on ``n_paths``.
        """
        nus = np.array([p["nu"] for p in self.params_])
        d = len(nus)
        if d == 1:
            t = rng.standard_t(nus[0], size=(n_paths, n_steps, 1))
        else:
            from scipy import special, stats

            chol = np.linalg.cholesky(self.corr + 1e-12 * np.eye(d))
            g = rng.standard_normal((n_paths, n_steps, d)) @ chol.T
            u = special.ndtr(g)
            t = np.stack([stats.t.ppf(u[..., j], nus[j]) for j in range(d)], axis=-1)
        return t * np.sqrt((nus - 2) / nus)

    def sample(
        self, n_paths: int, horizon: int, *, seed: int = 0, chunk_size: int = 8192
    ) -> np.ndarray:
        """Daily log-price paths from 0, simulated by the fitted recursion (vectorised over paths).

        The noise is drawn path by path from one stream, in chunks of ``chunk_size`` paths (the
        memory bound), so the first paths depend neither on ``n_paths`` nor on ``chunk_size``.

        Shape:
            output ``(n_paths, horizon + 1, n_assets)``.
        """
        self._check_fitted()
        _check_sample_args(n_paths, horizon)
        rng = np.random.default_rng(seed)
        p = {k: np.array([q[k] for q in self.params_]) for k in self.params_[0]}
        burn = self.burn_in if self.start == "stationary" else 0
        if self.start == "stationary":
            persistence = p["alpha"] + 0.5 * p["gamma"] + p["beta"]
            if np.any(persistence >= 1):
                raise ValueError(
                    f"GJRGarchBaseline: persistence alpha + gamma/2 + beta = {persistence} >= 1 "
                    "has no stationary law; use start='last'"
                )
            var0 = p["omega"] / (1 - persistence)
        else:  # the fitted model's variance for the day after the history
            e, v = np.array(self._last_eps), np.array(self._last_var)
            var0 = p["omega"] + (p["alpha"] + p["gamma"] * (e < 0)) * e**2 + p["beta"] * v
        return self._simulate(var0, n_paths, horizon, burn, rng, chunk_size)

    def _simulate(self, var0: np.ndarray, n_paths: int, horizon: int, burn: int,
                  rng: np.random.Generator, chunk_size: int = 8192) -> np.ndarray:
        """The recursion from the variance ``var0`` of the first simulated day (percent^2)."""
        p = {k: np.array([q[k] for q in self.params_]) for k in self.params_[0]}
        d = len(p["mu"])
        out = np.zeros((n_paths, horizon + 1, d))
        for lo in range(0, n_paths, chunk_size):
            n = min(chunk_size, n_paths - lo)
            z = self._innovations(rng, n, burn + horizon)
            var = np.broadcast_to(var0, (n, d)).copy()
            y = np.empty((n, horizon, d))
            eps = np.zeros((n, d))
            for t in range(burn + horizon):
                if t > 0:
                    lev = p["alpha"] + p["gamma"] * (eps < 0)
                    var = p["omega"] + lev * eps**2 + p["beta"] * var
                eps = np.sqrt(var) * z[:, t]
                if t >= burn:
                    y[:, t - burn] = p["mu"] + eps
            np.cumsum(y / 100.0, axis=1, out=out[lo : lo + n, 1:])
        return out

    def filter_variances(self, returns: np.ndarray) -> np.ndarray:
        """Next-day conditional variances (percent^2) along a return series, parameters fixed.

        sigma^2_{t+1} = omega + (alpha + gamma 1[eps_t < 0]) eps_t^2 + beta sigma^2_t, started
        at the unconditional variance (or the sample variance when persistence >= 1); row t is
        the variance of day t + 1 given the returns up to day t (the filter through a test
        period with the parameters fitted on the training period).

        Shape:
            returns: (n_obs, n_assets) daily log returns (not percent) -> (n_obs, n_assets).
        """
        self._check_fitted()
        r = np.asarray(returns, dtype=np.float64)
        r = r[:, None] if r.ndim == 1 else r
        p = {k: np.array([q[k] for q in self.params_]) for k in self.params_[0]}
        eps = 100 * r - p["mu"]
        pers = p["alpha"] + 0.5 * p["gamma"] + p["beta"]
        var = np.where(pers < 1, p["omega"] / np.maximum(1 - pers, 1e-12), eps.var(0))
        out = np.empty_like(eps)
        for t in range(eps.shape[0]):
            var = p["omega"] + (p["alpha"] + p["gamma"] * (eps[t] < 0)) * eps[t] ** 2 + \
                p["beta"] * var
            out[t] = var
        return out

    def sample_from(self, var_next: np.ndarray, n_paths: int, horizon: int, *,
                    seed: int = 0) -> np.ndarray:
        """Daily log-price paths from 0 whose first day has the variance ``var_next`` (percent^2,
        e.g. a row of :meth:`filter_variances`): a forecast from that date.

        Shape:
            var_next: (n_assets,) -> (n_paths, horizon + 1, n_assets).
        """
        self._check_fitted()
        _check_sample_args(n_paths, horizon)
        return self._simulate(np.asarray(var_next, dtype=np.float64), n_paths, horizon, 0,
                              np.random.default_rng(seed))
