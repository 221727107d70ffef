"""Monte Carlo pricing from scenarios: discounted mean payoff with standard error and interval."""

from __future__ import annotations

import math
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


def _estimate(y: torch.Tensor, x: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Mean and SE of ``y``, optionally with the zero-mean control variate ``x`` (per column)."""
    n = y.shape[0]
    y_mean = y.mean(dim=0)
    if n > 1:
        se_plain = y.std(dim=0, correction=1) / math.sqrt(n)
    else:
        se_plain = torch.full_like(y_mean, math.nan)
    if x is None:
        return y_mean, se_plain, se_plain
    xc = x - x.mean(dim=0)
    yc = y - y_mean
    var_x = (xc * xc).sum(dim=0)
    beta = torch.where(var_x > 0, (xc * yc).sum(dim=0) / var_x.clamp(min=1e-300), 0.0)
    adj = y - beta * x
    est = adj.mean(dim=0)
    se = adj.std(dim=0, correction=1) / math.sqrt(n) if n > 1 else se_plain
    return est, se, se_plain


def price(
    scen: Scenarios,
    option: Option | Sequence[Option],
    r: float | None = None,
    *,
    control_variate: bool | None = None,
    allow_historical: bool = False,
    level: float = 0.95,
) -> PriceResult | list[PriceResult]:
    r"""Price options by Monte Carlo over the scenarios: discounted mean payoff with its SE.

    .. math::
        \hat V = \frac1n \sum_i e^{-rT} h(S^{(i)}), \qquad
        \hat V_{cv} = \frac1n \sum_i \big(e^{-rT} h(S^{(i)}) - \hat\beta X_i\big), \quad
        X_i = e^{-rT} S^{(i)}_T - S^{(i)}_0 e^{-qT},

    where :math:`E[X] = 0` under the risk-neutral measure and :math:`\hat\beta` is the
    regression coefficient of the discounted payoff on :math:`X` (per grid point). The control
    variate is on by default for risk-neutral scenarios; with it, put-call parity holds exactly
    on the same samples (the two coefficients differ by exactly 1). Antithetic pairs are
    averaged before the standard error is computed.

    Args:
        scen: the scenarios (risk-neutral unless ``allow_historical``).
        option: an option (possibly with a grid of strikes and maturities) or a list of them.
        r: discount rate; defaults to ``scen.r`` and must equal it for risk-neutral scenarios.
        control_variate: use the discounted terminal price as a control variate (default:
            ``True`` for risk-neutral scenarios; not available for historical ones).
        allow_historical: price historical-measure scenarios anyway (no control variate).
        level: confidence level of ``ci``.

    Returns:
        A :class:`PriceResult` (fields of the option's grid shape), or a list of them.

    References:
        Glasserman, "Monte Carlo Methods in Financial Engineering", 2003, sections 4.1-4.2.
    """
    if not isinstance(scen, Scenarios):
        raise ValueError(f"scen must be a Scenarios, got {type(scen).__name__}")
    options = [option] if isinstance(option, Option) else list(option)
    if not options or not all(isinstance(o, Option) for o in options):
        raise ValueError(f"option must be an Option or a list of Options, got {option!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
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
    results = []
    with torch.no_grad():
        for opt in options:
            results.append(_price_one(scen, opt, float(r), control_variate, level))
    return results[0] if isinstance(option, Option) else results


def _price_one(
    scen: Scenarios, opt: Option, r: float, control_variate: bool, level: float
) -> PriceResult:
    dtype = torch.float64
    payoff = opt.payoff(scen).to(dtype)
    t = torch.broadcast_to(opt.maturity, opt.shape).to(dtype=dtype, device=payoff.device)
    disc = torch.exp(-r * t)
    y = _pair_mean(disc * payoff, scen.antithetic)
    x = None
    if control_variate:
        s_t, fwd = opt.underlying(scen)
        x = _pair_mean(disc * s_t.to(dtype) - fwd.to(dtype), scen.antithetic)
    est, se, se_plain = _estimate(y, x)
    z = _z(level)
    return PriceResult(
        price=_out(est),
        stderr=_out(se),
        ci=(_out(est - z * se), _out(est + z * se)),
        n_paths=scen.n_paths,
        level=level,
        stderr_plain=_out(se_plain),
        control_variate=control_variate,
    )
