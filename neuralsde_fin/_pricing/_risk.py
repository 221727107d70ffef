"""Value at risk and expected shortfall of horizon P&L from historical scenarios."""

from __future__ import annotations

import math
import os
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


#: Above this many paths the intervals are asymptotic, not bootstrapped (``ci_method="auto"``).
BOOTSTRAP_MAX_PATHS = 200_000


def var_es(
    scen: Scenarios | str | os.PathLike,
    levels: float | Sequence[float] = (0.95, 0.99),
    *,
    positions: Sequence[float] | torch.Tensor | None = None,
    horizon: float | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    allow_risk_neutral: bool = False,
    ci_method: str = "auto",
    progress: bool = False,
) -> RiskResult:
    r"""Value at risk and expected shortfall of the P&L of a static portfolio over a horizon.

    The loss of path :math:`i` is :math:`L_i = -\sum_j w_j (S^{(i)}_{h,j} - S^{(i)}_{0,j})`
    for ``positions`` :math:`w` (units held). With :math:`m = \lceil n (1 - \alpha) \rceil`,
    :math:`\mathrm{VaR}_\alpha` is the :math:`m`-th largest loss and :math:`\mathrm{ES}_\alpha`
    the mean of the :math:`m` largest losses.

    Confidence intervals: ``"bootstrap"``, percentile intervals of ``n_boot`` resamples of the
    paths (indices from a CPU ``torch.Generator`` seeded with ``seed``: reproducible);
    ``"asymptotic"``, the order-statistic interval of the VaR (ranks
    :math:`m \pm z \sqrt{n \alpha (1 - \alpha)}`) and the normal interval of the ES with
    variance :math:`[\mathrm{Var}(L \mid L \ge \mathrm{VaR}) + \alpha (\mathrm{ES} -
    \mathrm{VaR})^2] / (n (1 - \alpha))`; ``"auto"``: bootstrap up to
    ``BOOTSTRAP_MAX_PATHS`` paths, asymptotic above.

    ``scen`` may be a Parquet file or shard folder (``nsf.sample_to_parquet``): only the spot
    and horizon columns are read, row group by row group, and the P&L (8 bytes a path) is kept;
    the results equal the in-memory ones.

    Args:
        scen: scenarios under the historical measure, or a file / folder of them.
        levels: confidence level(s) :math:`\alpha` in (0, 1), e.g. 0.99.
        positions: units held of each asset (default one of each).
        horizon: horizon in years, a time of the scenario grid (default the last time).
        n_boot: number of bootstrap resamples.
        ci_level: level of the intervals.
        seed: seed of the bootstrap.
        allow_risk_neutral: accept risk-neutral scenarios (whose drift is not the real one).
        ci_method: ``"auto"``, ``"bootstrap"`` or ``"asymptotic"``.
        progress: a progress bar over a file's row groups.

    Returns:
        A :class:`RiskResult`.

    References:
        Acerbi and Tasche, "On the coherence of expected shortfall", J. Banking & Finance 2002;
        Efron and Tibshirani, "An Introduction to the Bootstrap", 1993; Manistre and Hancock,
        "Variance of the CTE estimator", North American Actuarial Journal 2005.
    """
    lv = torch.as_tensor(levels, dtype=torch.float64).flatten()
    if lv.numel() == 0 or bool(((lv <= 0) | (lv >= 1)).any()):
        raise ValueError(f"levels must be in (0, 1), got {levels!r}")
    if not (isinstance(n_boot, int) and n_boot >= 10):
        raise ValueError(f"n_boot must be an int >= 10, got {n_boot!r}")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    if ci_method not in ("auto", "bootstrap", "asymptotic"):
        raise ValueError(f"ci_method must be 'auto', 'bootstrap' or 'asymptotic', got "
                         f"{ci_method!r}")
    pnl, t_h = _pnl(scen, positions, horizon, allow_risk_neutral, progress)
    n = pnl.shape[0]
    tails = [max(1, math.ceil(n * (1 - float(a)) - 1e-9)) for a in lv]
    if max(tails) > n:
        raise ValueError(f"too few paths ({n}) for levels {levels!r}")
    loss = -pnl
    var, es = _var_es(loss, tails)
    if ci_method == "auto":
        ci_method = "bootstrap" if n <= BOOTSTRAP_MAX_PATHS else "asymptotic"
    if ci_method == "bootstrap":
        var_ci, es_ci, var_se, es_se = _bootstrap(loss, tails, n_boot, ci_level, seed)
    else:
        var_ci, es_ci, var_se, es_se = _asymptotic(loss, lv, tails, var, es, ci_level)
    return RiskResult(
        levels=lv, var=var.cpu(), es=es.cpu(), var_ci=var_ci.cpu(), es_ci=es_ci.cpu(),
        var_stderr=var_se.cpu(), es_stderr=es_se.cpu(), pnl=pnl.cpu(), horizon=t_h,
    )


def _check(scen: Scenarios, allow_risk_neutral: bool) -> None:
    if scen.measure != "historical" and not allow_risk_neutral:
        raise ValueError(
            f"scenarios are under the {scen.measure!r} measure; risk needs historical scenarios "
            "(sample with measure='historical') or pass allow_risk_neutral=True"
        )


def _horizon_index(times: torch.Tensor, horizon: float | None) -> int:
    if horizon is None:
        return len(times) - 1
    idx = int(torch.argmin((times - horizon).abs()))
    if abs(float(times[idx]) - horizon) > 1e-6 * max(float(times[-1]), 1.0) or idx == 0:
        raise ValueError(f"horizon {horizon} is not a time of the scenario grid")
    return idx


def _pnl(scen, positions, horizon, allow_risk_neutral, progress) -> tuple[torch.Tensor, float]:
    """The horizon P&L per path (float64) and the horizon, from memory or a file's chunks."""
    if isinstance(scen, Scenarios):
        chunks, times = [scen], scen.times.detach().to(torch.float64).cpu()
        idx = _horizon_index(times, horizon)
        steps = None
    elif isinstance(scen, (str, os.PathLike)):
        from neuralsde_fin._pricing._engine import iter_scenario_file
        from neuralsde_fin._scenario_files import read_times

        times = torch.as_tensor(read_times(scen)[0], dtype=torch.float64)
        idx = _horizon_index(times, horizon)
        steps = [0, idx]
        chunks = iter_scenario_file(scen, progress=progress, steps=steps)
    else:
        raise ValueError(f"scen must be a Scenarios or a scenario file, got {type(scen).__name__}")
    parts = []
    w = None
    for chunk in chunks:
        _check(chunk, allow_risk_neutral)
        p = chunk.prices.detach().to(torch.float64)
        if w is None:
            w = torch.ones(chunk.n_assets, dtype=torch.float64, device=p.device)
            if positions is not None:
                w = torch.as_tensor(positions, dtype=torch.float64, device=p.device).flatten()
                if w.shape != (chunk.n_assets,):
                    raise ValueError(f"positions must have one entry per asset "
                                     f"({chunk.n_assets})")
        k = idx if steps is None else p.shape[1] - 1
        parts.append((p[:, k] - p[:, 0]) @ w)
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), float(times[idx])


def _bootstrap(loss: torch.Tensor, tails: list[int], n_boot: int, ci_level: float, seed: int):
    n = loss.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    bvar, bes = [], []
    batch = max(1, (1 << 24) // n)  # resamples at a time: bounded index memory
    for lo in range(0, n_boot, batch):
        k = min(batch, n_boot - lo)
        idx = torch.randint(0, n, (k, n), generator=gen).to(loss.device)
        v, e = _var_es(loss[idx], tails)
        bvar.append(v)
        bes.append(e)
    bvar, bes = torch.cat(bvar), torch.cat(bes)
    q = torch.tensor([(1 - ci_level) / 2, (1 + ci_level) / 2], dtype=torch.float64,
                     device=loss.device)
    return (torch.quantile(bvar, q, dim=0).T, torch.quantile(bes, q, dim=0).T, bvar.std(0),
            bes.std(0))


def _asymptotic(loss, lv, tails, var, es, ci_level):
    from statistics import NormalDist

    n = loss.shape[0]
    z = NormalDist().inv_cdf(0.5 + ci_level / 2)
    top = torch.topk(loss, min(n, max(tails) + int(z * math.sqrt(n)) + 2), sorted=True).values
    var_ci, es_ci, var_se, es_se = [], [], [], []
    for a, m, v, e in zip(lv.tolist(), tails, var.tolist(), es.tolist()):
        half = z * math.sqrt(n * a * (1 - a))
        hi_rank, lo_rank = max(1, int(math.floor(m - half))), int(math.ceil(m + half))
        lo_v = float(top[min(lo_rank, top.numel()) - 1]) if lo_rank <= n else float(loss.min())
        hi_v = float(top[hi_rank - 1])
        var_ci.append([lo_v, hi_v])
        var_se.append((hi_v - lo_v) / (2 * z))
        tail = top[:m]
        s2 = (float(tail.var(correction=1)) if m > 1 else 0.0) + a * (e - v) ** 2
        se = math.sqrt(s2 / (n * (1 - a)))
        es_ci.append([e - z * se, e + z * se])
        es_se.append(se)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return t(var_ci), t(es_ci), t(var_se), t(es_se)
