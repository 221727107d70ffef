"""Monte Carlo pricing from scenarios: discounted mean payoff with standard error and interval."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from neuralsde_fin._pricing._payoffs import Option
from neuralsde_fin._scenarios import Scenarios


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def _out(x: torch.Tensor) -> Any:
    x = x.detach().cpu()
    return float(x) if x.ndim == 0 else x


@dataclass(frozen=True)
class PriceResult:
    """A Monte Carlo price with its uncertainty.

    Attributes:
        price: the estimate (a float, or a tensor of the option's grid shape).
        stderr: its standard error.
        ci: the ``level`` confidence interval ``(low, high)`` (normal approximation).
        n_paths: number of paths used (antithetic pairs count as two).
        level: confidence level of ``ci``.
        stderr_plain: standard error of the plain estimator (no control variate) on the same
            samples; ``stderr_plain / stderr`` is the control variate's reduction factor.
        control_variate: whether the discounted terminal price was used as control variate.
    """

    price: Any
    stderr: Any
    ci: tuple[Any, Any]
    n_paths: int
    level: float = 0.95
    stderr_plain: Any = None
    control_variate: bool = False

    @property
    def ci95(self) -> tuple[Any, Any]:
        """The 95% confidence interval."""
        if self.level == 0.95:
            return self.ci
        z = _z(0.95)
        return (self.price - z * self.stderr, self.price + z * self.stderr)


def _pair_mean(x: torch.Tensor, antithetic: bool) -> torch.Tensor:
    if not antithetic:
        return x
    return x.reshape(x.shape[0] // 2, 2, *x.shape[1:]).mean(dim=1)


class _Moments:
    """Streaming mean and centred co-moments of (y, x), merged chunk by chunk (Chan et al.).

    For chunks A, B with n_A, n_B samples and delta = mean_B - mean_A:
    mean = mean_A + delta n_B / n, M2_uv = M2_uv,A + M2_uv,B + delta_u delta_v n_A n_B / n.
    """

    def __init__(self) -> None:
        self.n = 0
        self.my = self.mx = self.yy = self.xx = self.xy = None

    def add(self, y: torch.Tensor, x: torch.Tensor | None) -> None:
        n = y.shape[0]
        my = y.mean(0)
        yc = y - my
        yy = (yc * yc).sum(0)
        if x is not None:
            mx = x.mean(0)
            xc = x - mx
            xx, xy = (xc * xc).sum(0), (xc * yc).sum(0)
        if self.n == 0:
            self.n, self.my, self.yy = n, my, yy
            if x is not None:
                self.mx, self.xx, self.xy = mx, xx, xy
            return
        tot = self.n + n
        dy = my - self.my
        f = self.n * n / tot
        self.yy = self.yy + yy + dy * dy * f
        if x is not None:
            dx = mx - self.mx
            self.xx = self.xx + xx + dx * dx * f
            self.xy = self.xy + xy + dx * dy * f
            self.mx = self.mx + dx * (n / tot)
        self.my = self.my + dy * (n / tot)
        self.n = tot

    def estimate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(estimate, its SE, the plain estimator's SE); with x, the control-variate estimate
        mean(y - beta x), beta = M2_xy / M2_xx."""
        n = self.n
        nan = torch.full_like(self.my, math.nan)
        se_plain = (self.yy / (n - 1)).clamp_min(0).sqrt() / math.sqrt(n) if n > 1 else nan
        if self.mx is None:
            return self.my, se_plain, se_plain
        beta = torch.where(self.xx > 0, self.xy / self.xx.clamp(min=1e-300), 0.0)
        est = self.my - beta * self.mx
        if n < 2:
            return est, se_plain, se_plain
        var = (self.yy - 2 * beta * self.xy + beta * beta * self.xx).clamp_min(0) / (n - 1)
        return est, var.sqrt() / math.sqrt(n), se_plain


def price(
    scen: Scenarios | str | os.PathLike,
    option: Option | Sequence[Option],
    r: float | None = None,
    *,
    control_variate: bool | None = None,
    allow_historical: bool = False,
    level: float = 0.95,
    progress: bool = False,
) -> PriceResult | list[PriceResult]:
    r"""Price options by Monte Carlo over the scenarios: discounted mean payoff with its SE.

    .. math::
        \hat V = \frac1n \sum_i e^{-rT} h(S^{(i)}), \qquad
        \hat V_{cv} = \frac1n \sum_i \big(e^{-rT} h(S^{(i)}) - \hat\beta X_i\big), \quad
        X_i = e^{-rT} S^{(i)}_T - S^{(i)}_0 e^{-qT},

    where :math:`E[X] = 0` under the risk-neutral measure and :math:`\hat\beta` is the
    regression coefficient of the discounted payoff on :math:`X` (per grid point). The control
    variate is on by default for risk-neutral scenarios; with it, put-call parity holds on the
    same samples (the two coefficients differ by 1). Antithetic pairs are averaged before the
    standard error is computed.

    ``scen`` may be a Parquet file or shard folder of scenarios (``nsf.sample_to_parquet``,
    ``sample --out``): it is then read row group by row group (only the maturities' columns
    for options that depend on the terminal price alone) and the estimators' moments are
    accumulated, in memory bounded by one row group; the results equal the in-memory ones to
    float rounding.

    Args:
        scen: the scenarios (risk-neutral unless ``allow_historical``), or a file / folder.
        option: an option (possibly with a grid of strikes and maturities) or a list of them.
        r: discount rate; defaults to ``scen.r`` and must equal it for risk-neutral scenarios.
        control_variate: use the discounted terminal price as a control variate (default:
            ``True`` for risk-neutral scenarios; not available for historical ones).
        allow_historical: price historical-measure scenarios anyway (no control variate).
        level: confidence level of ``ci``.
        progress: a progress bar over a file's row groups.

    Returns:
        A :class:`PriceResult` (fields of the option's grid shape), or a list of them.

    References:
        Glasserman, "Monte Carlo Methods in Financial Engineering", 2003, sections 4.1-4.2.
        Chan, Golub, LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
        sample variances" (merging moments of chunks).
    """
    options = [option] if isinstance(option, Option) else list(option)
    if not options or not all(isinstance(o, Option) for o in options):
        raise ValueError(f"option must be an Option or a list of Options, got {option!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    chunks = _chunks(scen, options, progress)
    accs = [_Moments() for _ in options]
    n_paths = 0
    with torch.no_grad():
        for chunk in chunks:
            if n_paths == 0:
                control_variate, r = _check_measure(chunk, control_variate, allow_historical, r)
            n_paths += chunk.n_paths
            for opt, acc in zip(options, accs):
                acc.add(*_samples(chunk, opt, float(r), control_variate))
    results = [_result(acc, level, control_variate, n_paths) for acc in accs]
    return results[0] if isinstance(option, Option) else results


def _chunks(scen: Any, options: list[Option], progress: bool):
    """The scenarios, as one in-memory chunk or row groups of a file (only the needed steps)."""
    if isinstance(scen, Scenarios):
        return [scen]
    if not isinstance(scen, (str, os.PathLike)):
        raise ValueError(f"scen must be a Scenarios or a scenario file, got {type(scen).__name__}")
    return iter_scenario_file(scen, options, progress)


def iter_scenario_file(path: str | os.PathLike, options: list[Option] | None = None,
                       progress: bool = False, steps: list[int] | None = None):
    """Row groups of a scenario file as Scenarios: only the columns ``options`` need (the
    maturities when every payoff is terminal), or the given ``steps``, are read."""
    from tqdm.auto import tqdm

    from neuralsde_fin._scenario_files import read_times

    times, n_paths = read_times(path)
    if steps is None and options and all(getattr(o, "terminal", False) for o in options):
        t = torch.as_tensor(times, dtype=torch.float64)
        steps = sorted({int(torch.argmin((t - float(m)).abs())) for o in options
                        for m in torch.broadcast_to(o.maturity, o.shape).flatten().tolist()})
    bar = tqdm(total=n_paths, desc="price", unit="path", unit_scale=True, disable=not progress)
    try:
        for chunk in Scenarios.iter_parquet(path, steps=steps):
            yield chunk
            bar.update(chunk.n_paths)
    finally:
        bar.close()


def _check_measure(scen: Scenarios, control_variate, allow_historical: bool, r):
    if scen.measure != "risk_neutral":
        if not allow_historical:
            raise ValueError(
                f"scenarios are under the {scen.measure!r} measure; pricing needs risk-neutral "
                "scenarios (sample with measure='risk_neutral') or pass allow_historical=True"
            )
        if control_variate:
            raise ValueError("control_variate needs risk-neutral scenarios (known mean)")
        control_variate = False
    elif control_variate is None:
        control_variate = True
    if r is None:
        r = scen.r
    elif scen.measure == "risk_neutral" and abs(float(r) - scen.r) > 1e-12:
        raise ValueError(
            f"r={r} differs from the risk-neutral scenarios' rate r={scen.r}; "
            "resample with this r or pass r=None"
        )
    return control_variate, r


def _samples(scen: Scenarios, opt: Option, r: float, control_variate: bool):
    """Per-path (or pair) discounted payoffs y and control variates x (float64)."""
    dtype = torch.float64
    payoff = opt.payoff(scen).to(dtype)
    t = torch.broadcast_to(opt.maturity, opt.shape).to(dtype=dtype, device=payoff.device)
    disc = torch.exp(-r * t)
    y = _pair_mean(disc * payoff, scen.antithetic)
    x = None
    if control_variate:
        s_t, fwd = opt.underlying(scen)
        x = _pair_mean(disc * s_t.to(dtype) - fwd.to(dtype), scen.antithetic)
    return y, x


def _result(acc: _Moments, level: float, control_variate: bool, n_paths: int) -> PriceResult:
    est, se, se_plain = acc.estimate()
    z = _z(level)
    return PriceResult(
        price=_out(est),
        stderr=_out(se),
        ci=(_out(est - z * se), _out(est + z * se)),
        n_paths=n_paths,
        level=level,
        stderr_plain=_out(se_plain),
        control_variate=control_variate,
    )
