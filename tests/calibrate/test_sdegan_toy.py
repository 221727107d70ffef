"""The SDE-GAN toy of Kidger et al. (2021), section 4.1: a time-dependent Ornstein-Uhlenbeck law.

Data: dy = (0.02 t - 0.1 y) dt + 0.4 (2 t / 64) dW (Ito), y0 ~ U(-1, 1), t = 0..63, 8192 paths,
normalised by the statistics of y0 as in torchsde's example. After training, two-sample KS
statistics of the marginals at 10/30/50/70/90% of the interval (2000 generated vs 2000 fresh
real samples) must be below 0.1.
"""

from __future__ import annotations

import math
import resource

import pytest
import torch
import torch._inductor.config

from neuralsde_fin._calibrate._sdegan import SDEGANConfig, SDEGANTrainer

LENGTH = 64
PROPS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Toy recipe: the published architecture and batch 256, with the discriminator's Lipschitz
#: constraint by gradient penalty (``lipschitz="gp"``) and larger Adadelta learning rates, so that
#: the run fits the 10-minute CPU budget. With weight clipping (the default) no recipe that fits
#: the budget passed: measured 2026-11-23, KS at 10/30/50/70/90% (training CPU s):
#:   clip, batch 256, 3500 steps, g 3e-3 / d 1.5e-2: 0.178 / 0.136 / 0.081 / 0.073 / 0.043 (441)
#:   the same, 4300 steps, weight decay 1e-3 / 0: max 0.192 / 0.219 (521 / 517)
#:   clip, batch 512, 3700 steps: 0.158 / 0.169 / 0.056 / 0.050 / 0.042 (702)
#:   clip, batch 1024, 2400-2700 steps, g 1.5e-3 / d 7.5e-3: max 0.169 / 0.185 (556 / 727)
#:   gp, 1500 steps, g 3e-3 / d 1.5e-2 and g 6e-3 / d 3e-2: max 0.124 / 0.150 (412 / 407)
#:   gp, 2100 steps, g 6e-3 / d 3e-2: 0.151 / 0.037 / 0.049 / 0.045 / 0.032 (600)
#:   gp, 2100 steps, g 1e-2 / d 5e-2: 0.077 / 0.068 / 0.071 / 0.032 / 0.023 (599)
#:   this recipe (gp, 2000 steps, g 1e-2 / d 5e-2), seed 0: 0.080 / 0.064 / 0.073 / 0.031 / 0.022
#:   (584; the whole test 597 s wall); seed 1: 0.081 / 0.038 / 0.037 / 0.031 / 0.036 (587).
#:   Rerun 2026-11-24 00:05 UTC: the same KS to 3 decimals, but 855 CPU s: the machine ran about
#:   1.4x slower that night (0.40-0.47 s per step for the code of the first run as for the
#:   current code, against 0.29 s), over the 600 s budget. With NEURALSDE_FIN_COMPILE=1 (while
#:   other jobs shared the machine) the KS were the same, 709 CPU s plus 36 s of compilation.
#:   Final code, 01:12 UTC: the same KS, 553 CPU s (the whole test 559 s wall).
#:   2026-11-24 02:27 UTC (training bit for bit as before): the same KS, 724 CPU s, over budget.
#:   The penalty on every 2nd / 4th critic step only, 2x / 4x heavier (lazy regularisation,
#:   tried that day to cut its double backward): 531 / 485 CPU s, but KS at 10% 0.145 / 0.180
#:   (0.1445 / 0.0715 / 0.0445 / 0.032 / 0.0185 and 0.1795 / 0.098 / 0.0225 / 0.0485 / 0.034):
#:   the early marginal needs the penalty at every step. Not adopted.
#:   Then two speed changes, same recipe: (1) training runs of >= 1000 steps compile the solver
#:   steps by default: KS the same (0.080 / 0.064 / 0.0725 / 0.030 / 0.022), 607 CPU s counting
#:   a cold compilation (eager in the same machine state: 0.337 s per step against 0.275, so
#:   about 675 s); (2) the penalty's gradient from first-order passes (``penalty_probes``,
#:   gp_method="finite_difference", the default) instead of the double backward: 0.21 s per
#:   step, and this test at 04:11 UTC: 0.080 / 0.0645 / 0.072 / 0.031 / 0.021, 414 CPU s
#:   including the cold compilation (in this process, so counted).
#: The failing runs all miss the early marginal: the generator keeps a long left tail of the
#: uniform initial law (1% quantile -3.0 against -1.7) and too little of the early mean
#: reversion (std at t = 6 about 0.9 against 0.58).
TOY = dict(batch=256, steps=2000, g_lr=1e-2, d_lr=5e-2, lipschitz="gp")


def ou_paths(n_paths: int, seed: int, substeps: int = 20) -> torch.Tensor:
    """Euler-Maruyama with 20 substeps per unit time (float64); returns (n_paths, 64, 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n_paths, generator=g, dtype=torch.float64) * 2 - 1
    out, h, t = [y], 1.0 / substeps, 0.0
    for _ in range(LENGTH - 1):
        for _ in range(substeps):
            dw = torch.randn(n_paths, generator=g, dtype=torch.float64) * math.sqrt(h)
            y = y + (0.02 * t - 0.1 * y) * h + 0.4 * (2 * t / LENGTH) * dw
            t += h
        out.append(y)
    return torch.stack(out, 1).unsqueeze(-1)


def ks_2samp(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    from scipy.stats import ks_2samp as ks

    return float(ks(a.numpy(), b.numpy()).statistic)


def _marginal_ks(trainer: SDEGANTrainer, test: torch.Tensor) -> list[float]:
    gen = trainer.sample(test.shape[0], seed=7)[..., 0]
    return [
        ks_2samp(gen[:, int(p * (LENGTH - 1))], test[:, int(p * (LENGTH - 1)), 0]) for p in PROPS
    ]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data():
    data = ou_paths(8192, seed=0)
    m, s = data[:, 0].mean(), data[:, 0].std()
    test = ((ou_paths(2000, seed=123) - m) / s).float()
    return ((data - m) / s).float(), test


def test_ou_data_has_the_known_mean():
    """E[y_t] solves m' = 0.02 t - 0.1 m, m(0) = 0: m(t) = 0.2 (t - 10 + 10 e^{-t/10})."""
    data = ou_paths(4000, seed=1)
    for k in (10, 40, 63):
        est, se = data[:, k, 0].mean().item(), data[:, k, 0].std().item() / math.sqrt(4000)
        exact = 0.2 * (k - 10 + 10 * math.exp(-k / 10))
        print(k, est, exact, se)
        assert abs(est - exact) < 4 * se


def test_toy_short_run_trains():
    """A few steps of the toy recipe: finite losses, the generator moves, and with the gradient
    penalty the discriminator's weights are not clipped (some exceed the clipping bound)."""
    data, _ = _data()
    cfg = SDEGANConfig(**{**TOY, "batch": 64, "steps": 4})
    tr = SDEGANTrainer(data[:512], torch.arange(float(LENGTH)), cfg)
    before = [p.detach().clone() for p in tr.generator.parameters()]
    losses = tr.train()
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(p, q) for p, q in zip(tr.generator.parameters(), before))
    assert all(torch.isfinite(p).all() for p in tr.loss.disc.parameters())
    linears = [m for m in tr.loss.disc.func.unfused().modules() if isinstance(m, torch.nn.Linear)]
    assert any(m.weight.abs().max() > 1.0 / m.out_features for m in linears)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its waited-for children (the C++ compiler's runs)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@pytest.mark.slow
def test_toy_marginals_match(tmp_path, monkeypatch):
    """2000 steps: by default (>= 1000 steps) the solver steps are compiled. The printed CPU
    time counts a cold compilation: a fresh Inductor cache, and compilation in this process
    (no worker pool), whose C++ compiler runs are waited-for children."""
    monkeypatch.delenv("NEURALSDE_FIN_COMPILE", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)
    monkeypatch.setattr(torch._inductor.config, "force_disable_caches", True)
    torch.manual_seed(0)
    data, test = _data()
    tr = SDEGANTrainer(data, torch.arange(float(LENGTH)), SDEGANConfig(**TOY))
    c0 = _cpu_seconds()
    tr.train()
    cpu = _cpu_seconds() - c0
    ks = _marginal_ks(tr, test)
    print("KS at", PROPS, "=", [round(v, 4) for v in ks], f"training CPU {cpu:.0f} s")
    assert max(ks) < 0.1
