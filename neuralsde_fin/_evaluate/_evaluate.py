"""``evaluate``: stylized facts of generated against real windows and classical baselines."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._calendar import TRADING_DAYS
from neuralsde_fin._evaluate._baselines import BASELINES, GJRGarchBaseline
from neuralsde_fin._evaluate._facts import score_facts
from neuralsde_fin._evaluate._mmd import sig_mmd_test
from neuralsde_fin._evaluate._result import EvaluationReport
from neuralsde_fin._evaluate._stats import (
    ES_LEVELS,
    QUANTILE_LEVELS,
    ks_2samp,
    moments,
    pooled_acf,
    pooled_leverage,
    quantiles_es,
)
from neuralsde_fin._validate import check_int
from neuralsde_fin.data import windows

#: Name of the real-data column of the report.
DATA = "data"


# ----------------------------------------------------------------------------------------------
# Inputs


def _to_log_paths(obj: Any, what: str, kind: str) -> np.ndarray:
    """Log-price paths relative to their start, ``(n_paths, n_times, n_assets)`` float64.

    ``obj`` is a Scenarios-like object (anything with ``.prices``), or an array / tensor of
    prices or of log-price paths; ``kind`` says which ("price", "log", or "auto": paths whose
    first point is 0 everywhere are log-price paths, positive arrays are prices).
    """
    if hasattr(obj, "prices") and not isinstance(obj, (np.ndarray, torch.Tensor)):
        times = getattr(obj, "times", None)
        if times is not None and len(times) > 1:
            dt = np.diff(np.asarray(times.cpu() if hasattr(times, "cpu") else times, float))
            if not np.allclose(dt, 1.0 / TRADING_DAYS, rtol=1e-3):
                warnings.warn(
                    f"evaluate: {what} steps are {dt.mean():.4g} years, not daily (1/252); "
                    "the statistics treat each step as one trading day",
                    stacklevel=3,
                )
        obj, kind = obj.prices, "price"
    if isinstance(obj, torch.Tensor):
        x = obj.detach().cpu().to(torch.float64).numpy()
    elif isinstance(obj, (np.ndarray, list, tuple)):
        x = np.asarray(obj, dtype=np.float64)
    else:
        raise ValueError(
            f"evaluate: {what} must be an array, a tensor or Scenarios, got {type(obj).__name__}"
        )
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(
            f"evaluate: {what} must have shape (n_paths >= 2, n_times >= 2, n_assets), "
            f"got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"evaluate: {what} has non-finite values")
    if kind == "auto":
        if np.all(x[:, 0] == 0):
            kind = "log"
        elif np.all(x > 0):
            kind = "price"
        else:
            raise ValueError(
                f"evaluate: cannot tell whether {what} holds prices or log-price paths (they do "
                "not start at 0 and are not all positive); pass kind='log' or kind='price'"
            )
    if kind == "price":
        if not np.all(x > 0):
            raise ValueError(f"evaluate: {what} are prices but not all > 0")
        return np.log(x) - np.log(x[:, :1])
    if kind == "log":
        return x - x[:, :1]
    raise ValueError(f"evaluate: kind must be 'auto', 'log' or 'price', got {kind!r}")


def _resolve_baseline(b: Any):
    if isinstance(b, str):
        if b not in BASELINES:
            raise ValueError(f"evaluate: unknown baseline {b!r} (known: {sorted(BASELINES)})")
        return b, BASELINES[b]()
    if hasattr(b, "fit_returns") and hasattr(b, "sample"):
        return getattr(b, "name", type(b).__name__), b
    raise ValueError(f"evaluate: a baseline must be a name or have .fit_returns/.sample, got {b!r}")


# ----------------------------------------------------------------------------------------------
# The evaluation


def evaluate(
    generated: Any,
    real: Any,
    *,
    baselines: Sequence[Any] = ("gbm", "gjr_garch_t"),
    horizon: int | None = None,
    lags: int = 20,
    stride: int | None = None,
    seed: int = 0,
    n_perm: int = 200,
    mmd_samples: int | None = 64,
    mmd_length: int | None = 33,
    n_paths: int | None = None,
    kind: str = "auto",
    forecast: Any = None,
) -> EvaluationReport:
    """Compare windows of generated paths with real windows and with fitted baselines.

    Each compared sample is a set of daily log-price windows ``x`` of ``horizon`` steps, each
    starting at 0; its daily returns are ``r_t = x_{t+1} - x_t`` and its horizon return is
    ``x_horizon``. For each column (data, the model(s), each baseline) and each asset the table
    gives: annualised mean and volatility of daily returns; skewness and excess kurtosis
    ``m_4 / m_2^2 - 3``; two-sample KS statistic and p-value against the data, of daily and of
    horizon returns; the ACF of ``r`` and of ``|r|`` and the leverage correlation
    ``corr(r_t, r_{t+k}^2)``, pooled over windows (lagged pairs taken inside windows, centred
    and scaled by pooled moments; see :func:`pooled_acf`); horizon-return quantiles (1, 5, 50,
    95, 99%) and expected shortfall ``-E[R | R <= q_alpha]`` at 1% and 5%; and the
    signature-kernel MMD^2 of the joint paths against the data with a permutation-test p-value
    (each side subsampled to ``mmd_samples`` paths, time grid thinned to ``mmd_length``
    points, paths divided by the data's horizon-return
    standard deviation, time-augmented on ``[0, 1]``).

    Real windows: a price history (DataFrame, e.g. from :func:`neuralsde_fin.load_prices`) is
    cut by :func:`neuralsde_fin.data.windows` into windows of ``horizon`` steps with ``stride``
    (default ``horizon``: non-overlapping, so KS samples are not duplicated). Already windowed
    log-price paths ``(n_windows, n_times, n_assets)`` are also accepted; the baselines are then
    fitted on the windows' daily returns strung together.

    Baselines (names in ``BASELINES``, or objects with ``.fit_returns`` / ``.sample``) are
    fitted on the same history and sampled with ``n_paths`` paths of ``horizon`` steps and
    ``seed``.

    Args:
        generated: the model's paths: Scenarios (its ``.prices`` are used), an array / tensor of
            prices or of log-price paths ``(n_paths, n_times, n_assets)``, a mapping
            ``{name: paths}`` to compare several models, or ``None`` (data and baselines only).
        real: a price history (DataFrame / Series) or real log-price windows.
        baselines: baselines to fit and compare.
        horizon: window length in days (default: the generated paths' ``n_times - 1``, else the
            real windows' length). Longer generated paths are cut to ``horizon + 1`` points.
        lags: ACF and leverage lags ``1..lags``; must be below ``horizon``.
        stride: days between the starts of real windows (default ``horizon``).
        seed: seed of the baselines' sampling, the MMD subsampling and permutations.
        n_perm: MMD permutations (0 skips the MMD test).
        mmd_samples: paths per side in the MMD (``None``: all; the cost grows as its square).
        mmd_length: time points per path in the MMD, evenly thinned (``None``: all; the cost
            grows as its square).
        n_paths: paths sampled from each baseline (default: as many as the first model, else
            as many as the real windows).
        kind: whether arrays hold prices or log-price paths: ``"auto"``, ``"price"``, ``"log"``.
        forecast: a conditional model's forecast scores from
            :func:`neuralsde_fin.forecast_evaluate` (CRPS of h-day returns and realised vols
            from each date's history, against GJR-GARCH-t and the stationary start), reported
            with the facts (``report.forecast``, the Markdown, ``to_dict``).

    Returns:
        An :class:`EvaluationReport` (``.table``, ``.to_markdown()``, ``.to_dict()``, ACF blocks).

    Shape:
        generated: ``(n_paths, n_times, n_assets)`` or ``(n_paths, n_times)``; real: a
        ``(n_dates, n_assets)`` frame or ``(n_windows, n_times, n_assets)`` windows.

    References:
        Cont (2001), "Empirical properties of asset returns: stylized facts and statistical
        issues", Quantitative Finance 1(2). Gretton et al. (2012), "A kernel two-sample test".
    """
    for name, v, lo in (("lags", lags, 1), ("seed", seed, 0), ("n_perm", n_perm, 0)):
        check_int(name, v, lo, where="evaluate: ")
    for name, v in (
        ("horizon", horizon),
        ("stride", stride),
        ("n_paths", n_paths),
        ("mmd_samples", mmd_samples),
        ("mmd_length", mmd_length),
    ):
        if v is not None:
            check_int(name, v, 2, where="evaluate: ")

    if forecast is not None and not hasattr(forecast, "ratios"):
        raise ValueError("evaluate: forecast must be a ForecastReport from nsf.forecast_evaluate, "
                         f"got {type(forecast).__name__}")
    if kind not in ("auto", "log", "price"):
        raise ValueError(f"evaluate: kind must be 'auto', 'log' or 'price', got {kind!r}")

    # Generated samples.
    if generated is None:
        models: dict[str, np.ndarray] = {}
    elif isinstance(generated, Mapping):
        models = {str(k): _to_log_paths(v, f"generated[{k!r}]", kind) for k, v in generated.items()}
    else:
        models = {"model": _to_log_paths(generated, "generated", kind)}
    for name in models:
        if name == DATA:
            raise ValueError(f"evaluate: a model may not be named {DATA!r}")

    # Real windows and the history the baselines are fitted on.
    if isinstance(real, (pd.DataFrame, pd.Series)):
        frame = real.to_frame() if isinstance(real, pd.Series) else real
        assets = [str(c) for c in frame.columns]
        if horizon is None:
            if not models:
                raise ValueError("evaluate: pass horizon= when there are no generated paths")
            horizon = next(iter(models.values())).shape[1] - 1
        try:
            w, _ = windows(frame, horizon, stride or horizon)
        except ValueError as exc:
            raise ValueError(f"evaluate: real: {exc}") from None
        data = w.numpy()
        hist = np.diff(np.log(frame.to_numpy(dtype=np.float64)), axis=0)
        stride = stride or horizon
    else:
        if stride is not None:
            raise ValueError("evaluate: stride applies to a price history, not to given windows")
        data = _to_log_paths(real, "real", kind)
        if horizon is None:
            horizon = (next(iter(models.values())) if models else data).shape[1] - 1
        assets = [f"asset{j}" for j in range(data.shape[2])] if data.shape[2] > 1 else ["asset0"]
        hist = np.diff(data, axis=1).reshape(-1, data.shape[2])
    if data.shape[1] - 1 < horizon:
        raise ValueError(
            f"evaluate: real windows have {data.shape[1] - 1} steps, fewer than horizon={horizon}"
        )
    data = data[:, : horizon + 1]
    n_assets = data.shape[2]
    if lags >= horizon:
        raise ValueError(f"evaluate: lags={lags} must be below horizon={horizon}")
    for name, x in models.items():
        if x.shape[1] - 1 < horizon:
            raise ValueError(
                f"evaluate: {name} paths have {x.shape[1] - 1} steps, fewer than horizon={horizon}"
            )
        if x.shape[2] != n_assets:
            raise ValueError(
                f"evaluate: {name} paths have {x.shape[2]} assets, the data {n_assets}"
            )
        models[name] = x[:, : horizon + 1]

    # Baselines.
    if n_paths is None:
        n_paths = next(iter(models.values())).shape[0] if models else data.shape[0]
    fitted = {}
    baseline_params = {}
    fallback_notes: list[str] = []
    for b in baselines:
        name, obj = _resolve_baseline(b)
        if name in models or name == DATA:
            raise ValueError(f"evaluate: baseline name {name!r} clashes with a model's")
        obj.fit_returns(hist)
        try:
            fitted[name] = obj.sample(n_paths, horizon, seed=seed)
        except ValueError as exc:
            if "no stationary law" not in str(exc) or not isinstance(obj, GJRGarchBaseline):
                raise
            # persistence >= 1 (e.g. on a Heston history): start from the end of the history
            obj = GJRGarchBaseline(start="last").fit_returns(hist)
            fitted[name] = obj.sample(n_paths, horizon, seed=seed)
            fallback_notes.append(
                f"{name}: the fit has persistence >= 1 (no stationary law); its paths start "
                "from the end of the history.")
        if hasattr(obj, "params"):
            baseline_params[name] = obj.params()

    samples = {DATA: data, **models, **fitted}
    facts = {}
    if "gjr_garch_t" in fitted:  # the classical baseline a quant would pick
        for name, x in models.items():
            facts[name] = [score_facts(x, data, fitted["gjr_garch_t"], asset=j)
                           for j in range(n_assets)]
    table, acf, rets, hrets, mmd_info = _statistics(
        samples,
        assets,
        horizon=horizon,
        lags=lags,
        seed=seed,
        n_perm=n_perm,
        mmd_samples=mmd_samples,
        mmd_length=mmd_length,
    )
    notes = [
        f"Windows of {horizon} trading days; real windows: {data.shape[0]} "
        + (f"(stride {stride} days)" if stride else "(given as windows)")
        + "; generated / baseline paths: "
        + ", ".join(f"{k} {v.shape[0]}" for k, v in samples.items() if k != DATA)
        + ".",
        "Moments, quantiles and KS use every daily return of every window as one sample; ACF "
        "and leverage pair r_t with r_{t+k} inside each window only, centred and scaled by the "
        "pooled mean and variance (iid standard error about 1/sqrt(n_windows (horizon - k))).",
        "KS p-values assume iid samples; returns with volatility clustering are dependent, so "
        "read them as distances.",
        "ES is the expected shortfall of the horizon log return, -E[R | R <= q], a positive loss.",
    ]
    if n_perm > 0:
        notes.append(
            f"Signature-kernel MMD^2 (pysiglib, RBF static kernel, time-augmented paths on "
            f"[0, 1], paths divided by the data's horizon-return std {mmd_info['scale']:.4g}), "
            f"unbiased estimator on at most {mmd_samples} paths per side (seeded subsample) "
            f"and {mmd_length} evenly spaced time points, p-value from {n_perm} permutations."
        )
    if baselines:
        notes.append(
            "Baselines fitted on the same history: "
            + "; ".join(
                f"{k}: " + ", ".join(f"{p}={v:.4g}" for p, v in ps.items())
                for k, ps in baseline_params.items()
            )
            + " (GJR-GARCH parameters in percent units)."
        )
    meta = {
        "horizon": horizon,
        "lags": lags,
        "stride": stride,
        "assets": assets,
        "n_windows": {k: int(v.shape[0]) for k, v in samples.items()},
        "seed": seed,
        "n_perm": n_perm,
        "mmd_samples": mmd_samples,
        "mmd_length": mmd_length,
        "mmd_scale": mmd_info.get("scale"),
        "baseline_params": baseline_params,
        "notes": notes + fallback_notes,
    }
    return EvaluationReport(table=table, acf=acf, returns=rets, horizon_returns=hrets, meta=meta,
                            facts=facts, forecast=forecast)


def _statistics(samples, assets, *, horizon, lags, seed, n_perm, mmd_samples, mmd_length):
    cols = list(samples)
    n_assets = len(assets)
    rows: dict[str, dict[str, float]] = {}

    def put(row: str, col: str, val: float) -> None:
        rows.setdefault(row, {c: float("nan") for c in cols})[col] = val

    rets = {c: np.diff(x, axis=1) for c, x in samples.items()}
    hrets = {c: x[:, horizon] for c, x in samples.items()}
    acf_blocks: dict[str, dict[str, np.ndarray]] = {"acf_r": {}, "acf_abs": {}, "leverage": {}}
    acfs_abs = {}
    for c in cols:
        r = rets[c]
        a_r = pooled_acf(r, lags)
        a_abs = pooled_acf(np.abs(r), lags)
        lev = pooled_leverage(r, lags)
        acfs_abs[c] = a_abs
        for j, asset in enumerate(assets):
            key = c if n_assets == 1 else f"{c}[{asset}]"
            acf_blocks["acf_r"][key] = a_r[:, j]
            acf_blocks["acf_abs"][key] = a_abs[:, j]
            acf_blocks["leverage"][key] = lev[:, j]

    lag_rows = sorted({k for k in (1, 5, 10, lags) if k <= lags})
    for c in cols:
        for j, asset in enumerate(assets):
            sfx = "" if n_assets == 1 else f" [{asset}]"
            r = rets[c][..., j].ravel()
            h = hrets[c][:, j]
            m = moments(r)
            put(f"paths{sfx}", c, int(samples[c].shape[0]))
            put(f"ann. mean 1d{sfx}", c, m["mean"] * TRADING_DAYS)
            put(f"ann. vol 1d{sfx}", c, m["std"] * math.sqrt(TRADING_DAYS))
            put(f"skew 1d{sfx}", c, m["skew"])
            put(f"excess kurtosis 1d{sfx}", c, m["kurtosis"])
            if c != DATA:
                s, p = ks_2samp(r, rets[DATA][..., j])
                put(f"KS 1d stat{sfx}", c, s)
                put(f"KS 1d p-value{sfx}", c, p)
                s, p = ks_2samp(h, hrets[DATA][:, j])
                put(f"KS {horizon}d stat{sfx}", c, s)
                put(f"KS {horizon}d p-value{sfx}", c, p)
            else:
                for row in (
                    "KS 1d stat",
                    "KS 1d p-value",
                    f"KS {horizon}d stat",
                    f"KS {horizon}d p-value",
                ):
                    put(row + sfx, c, float("nan"))
            for k in lag_rows:
                put(f"ACF r lag {k}{sfx}", c, acf_blocks["acf_r"][_key(c, asset, n_assets)][k - 1])
            for k in lag_rows:
                put(f"ACF |r| lag {k}{sfx}", c, acfs_abs[c][k - 1, j])
            put(
                f"ACF |r| RMSE vs data, lags 1-{lags}{sfx}",
                c,
                float(np.sqrt(np.mean((acfs_abs[c][:, j] - acfs_abs[DATA][:, j]) ** 2))),
            )
            lev = acf_blocks["leverage"][_key(c, asset, n_assets)]
            put(f"leverage lag 1{sfx}", c, float(lev[0]))
            put(f"leverage mean lags 1-{lags}{sfx}", c, float(lev.mean()))
            for q, v in quantiles_es(h, QUANTILE_LEVELS, ES_LEVELS).items():
                label = q.replace("q", "quantile ").replace("es", "ES ")
                put(f"{horizon}d {label}%{sfx}", c, v)

    mmd_info: dict[str, float] = {}
    if n_perm > 0:
        data = samples[DATA]
        scale = float(np.std(data[:, -1] - data[:, 0])) or 1.0
        mmd_info["scale"] = scale
        cache: dict = {}
        for c in cols:
            if c == DATA:
                put("sig MMD^2", c, float("nan"))
                put("sig MMD^2 p-value", c, float("nan"))
                continue
            res = sig_mmd_test(
                samples[c],
                data,
                n_perm=n_perm,
                max_samples=mmd_samples,
                scale=scale,
                seed=seed,
                max_length=mmd_length,
                gram_cache=cache,
            )
            put("sig MMD^2", c, res["mmd2"])
            put("sig MMD^2 p-value", c, res["p_value"])

    table = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    table.index.name = "statistic"
    acf = {
        k: pd.DataFrame(v, index=pd.RangeIndex(1, lags + 1, name="lag"))
        for k, v in acf_blocks.items()
    }
    pooled = {c: r.reshape(-1, n_assets) for c, r in rets.items()}
    return table, acf, pooled, hrets, mmd_info


def _key(c: str, asset: str, n_assets: int) -> str:
    return c if n_assets == 1 else f"{c}[{asset}]"


def stylized_facts(paths: Any, *, lags: int = 20, kind: str = "auto") -> dict[str, float]:
    """The headline stylized facts of one sample of daily paths (first asset), as a flat dict.

    Pooled over paths as in :func:`evaluate`: ``acf_abs_lag1`` (ACF of ``|r|`` at lag 1,
    volatility clustering), ``acf_abs_mean`` (its mean over lags ``1..lags``), ``acf_r_lag1``,
    ``leverage_lag1`` (``corr(r_t, r_{t+1}^2)``), ``kurtosis`` (excess), ``skew``,
    ``ann_vol`` and ``ann_mean`` (daily log returns times 252 / sqrt(252)).

    Args:
        paths: Scenarios, prices or log-price paths ``(n_paths, n_times, n_assets)``, or a
            price history (DataFrame / Series: one long window).
        lags: the lags of the ACF mean; must be below the number of steps.
        kind: ``"auto"``, ``"price"`` or ``"log"`` (see :func:`evaluate`).

    Shape:
        paths: ``(n_paths, n_times, n_assets)`` or ``(n_paths, n_times)``.
    """
    if isinstance(paths, (pd.DataFrame, pd.Series)):
        x = np.log(np.asarray(paths.to_numpy(dtype=np.float64)))
        x = (x[:, None] if x.ndim == 1 else x)[None]
        x = x - x[:, :1]
    else:
        x = _to_log_paths(paths, "paths", kind)
    r = np.diff(x[..., 0], axis=1)
    m = moments(r)
    acf_abs = pooled_acf(np.abs(r), lags)
    return {
        "acf_abs_lag1": float(acf_abs[0]),
        "acf_abs_mean": float(acf_abs.mean()),
        "acf_r_lag1": float(pooled_acf(r, 1)[0]),
        "leverage_lag1": float(pooled_leverage(r, 1)[0]),
        "kurtosis": m["kurtosis"],
        "skew": m["skew"],
        "ann_vol": m["std"] * math.sqrt(TRADING_DAYS),
        "ann_mean": m["mean"] * TRADING_DAYS,
    }
