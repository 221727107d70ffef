"""Value at risk and expected shortfall of horizon P&L from historical scenarios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neuralsde_fin._scenarios import Scenarios


@dataclass(frozen=True)
class RiskResult:
    """VaR and expected shortfall of the horizon loss at several levels, with bootstrap CIs.

    Attributes:
        levels: the confidence levels, shape ``(n_levels,)``.
        var: value at risk (a loss, positive when the portfolio loses), ``(n_levels,)``.
        es: expected shortfall, ``(n_levels,)``.
        var_ci, es_ci: percentile bootstrap intervals, each ``(n_levels, 2)``.
        var_stderr, es_stderr: bootstrap standard errors, ``(n_levels,)``.
        pnl: the horizon P&L per path, ``(n_paths,)``.
        horizon: the horizon in years.
    """

    levels: torch.Tensor
    var: torch.Tensor
    es: torch.Tensor
    var_ci: torch.Tensor
    es_ci: torch.Tensor
    var_stderr: torch.Tensor
    es_stderr: torch.Tensor
    pnl: torch.Tensor
    horizon: float


def _var_es(losses: torch.Tensor, tails: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """VaR (the m-th largest loss) and ES (mean of the m largest) along the last axis."""
    top = torch.topk(losses, max(tails), dim=-1, sorted=True).values
    csum = top.cumsum(dim=-1)
    var = torch.stack([top[..., m - 1] for m in tails], dim=-1)
    es = torch.stack([csum[..., m - 1] / m for m in tails], dim=-1)
    return var, es


def var_es(
    scen: Scenarios,
    levels: float | Sequence[float] = (0.95, 0.99),
    *,
    positions: Sequence[float] | torch.Tensor | None = None,
    horizon: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    allow_risk_neutral: bool = False,
) -> RiskResult:
    r"""Value at risk and expected shortfall of the P&L of a static portfolio over a horizon.

    The loss of path :math:`i` is :math:`L_i = -\sum_j w_j (S^{(i)}_{h,j} - S^{(i)}_{0,j})`
    for ``positions`` :math:`w` (units held). With :math:`m = \lceil n (1 - \alpha) \rceil`,
    :math:`\mathrm{VaR}_\alpha` is the :math:`m`-th largest loss and :math:`\mathrm{ES}_\alpha`
    the mean of the :math:`m` largest losses. Confidence intervals are percentile intervals of
    ``n_boot`` bootstrap resamples of the paths (indices drawn by a CPU ``torch.Generator``
    seeded with ``seed``, so the result is reproducible).

    Args:
        scen: scenarios under the historical measure.
        levels: confidence level(s) :math:`\alpha` in (0, 1), e.g. 0.99.
        positions: units held of each asset (default one of each).
        horizon: horizon in years, a time of the scenario grid (default the last time).
        n_boot: number of bootstrap resamples.
        ci_level: level of the bootstrap intervals.
        seed: seed of the bootstrap.
        allow_risk_neutral: accept risk-neutral scenarios (whose drift is not the real one).

    Returns:
        A :class:`RiskResult`.

    References:
        Acerbi and Tasche, "On the coherence of expected shortfall", J. Banking & Finance 2002;
        Efron and Tibshirani, "An Introduction to the Bootstrap", 1993.
    """
    if not isinstance(scen, Scenarios):
        raise ValueError(f"scen must be a Scenarios, got {type(scen).__name__}")
    if scen.measure != "historical" and not allow_risk_neutral:
        raise ValueError(
            f"scenarios are under the {scen.measure!r} measure; risk needs historical scenarios "
            "(sample with measure='historical') or pass allow_risk_neutral=True"
        )
    lv = torch.as_tensor(levels, dtype=torch.float64).flatten()
    if lv.numel() == 0 or bool(((lv <= 0) | (lv >= 1)).any()):
        raise ValueError(f"levels must be in (0, 1), got {levels!r}")
    if not (isinstance(n_boot, int) and n_boot >= 10):
        raise ValueError(f"n_boot must be an int >= 10, got {n_boot!r}")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    n = scen.n_paths
    tails = [max(1, math.ceil(n * (1 - float(a)) - 1e-9)) for a in lv]
    if max(tails) > n:
        raise ValueError(f"too few paths ({n}) for levels {levels!r}")
    times = scen.times.detach().to(torch.float64).cpu()
    if horizon is None:
        idx = len(times) - 1
    else:
        idx = int(torch.argmin((times - horizon).abs()))
        if abs(float(times[idx]) - horizon) > 1e-6 * max(float(times[-1]), 1.0) or idx == 0:
            raise ValueError(f"horizon {horizon} is not a time of the scenario grid")
    p = scen.prices.detach().to(torch.float64)
    w = torch.ones(scen.n_assets, dtype=torch.float64, device=p.device)
    if positions is not None:
        w = torch.as_tensor(positions, dtype=torch.float64, device=p.device).flatten()
        if w.shape != (scen.n_assets,):
            raise ValueError(f"positions must have one entry per asset ({scen.n_assets})")
    pnl = (p[:, idx] - p[:, 0]) @ w
    loss = -pnl
    var, es = _var_es(loss, tails)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    boot_idx = torch.randint(0, n, (n_boot, n), generator=gen).to(p.device)
    bvar, bes = _var_es(loss[boot_idx], tails)
    lo, hi = (1 - ci_level) / 2, (1 + ci_level) / 2
    q = torch.tensor([lo, hi], dtype=torch.float64, device=p.device)
    var_ci = torch.quantile(bvar, q, dim=0).T
    es_ci = torch.quantile(bes, q, dim=0).T
    return RiskResult(
        levels=lv, var=var.cpu(), es=es.cpu(), var_ci=var_ci.cpu(), es_ci=es_ci.cpu(),
        var_stderr=bvar.std(0).cpu(), es_stderr=bes.std(0).cpu(), pnl=pnl.cpu(),
        horizon=float(times[idx]),
    )
