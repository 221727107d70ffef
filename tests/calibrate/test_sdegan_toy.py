"""The SDE-GAN toy of Kidger et al. (2021), section 4.1: a time-dependent Ornstein-Uhlenbeck law.

Data: dy = (0.02 t - 0.1 y) dt + 0.4 (2 t / 64) dW (Ito), y0 ~ U(-1, 1), t = 0..63, 8192 paths,
normalised by the statistics of y0 as in torchsde's example. After training, two-sample KS
statistics of the marginals at 10/30/50/70/90% of the interval (2000 generated vs 2000 fresh
real samples) must be below 0.1.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from neuralsde_fin._calibrate._sdegan import SDEGANConfig, SDEGANTrainer

LENGTH = 64
PROPS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Toy recipe: the published architecture, fewer steps with proportionally larger Adadelta
#: learning rates so that the run fits the 10-minute CPU budget. Measured 2026-11-23 (one-pass
#: step, 542 CPU s of training): KS 0.152 / 0.117 / 0.062 / 0.057 / 0.068 at 10/30/50/70/90%,
#: i.e. this test FAILS on the two early marginals (their KS fell from 0.32 / 0.28 at step 2000
#: once averaging started; more steps than the budget allows are needed). Variants on the final
#: shared-loop path: g_lr 6e-3 / d_lr 3e-2 -> 0.133 / 0.220 / 0.088 / 0.020 / 0.049 (458 CPU s);
#: batch 128, 5000 steps -> 0.169 / 0.167 / 0.124 / 0.065 / 0.033 (566 CPU s).
TOY = dict(batch=256, steps=3500, g_lr=3e-3, d_lr=1.5e-2)


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
    """A few steps of the toy recipe: finite losses, parameters move, clipping holds."""
    data, _ = _data()
    cfg = SDEGANConfig(**{**TOY, "batch": 64, "steps": 4})
    tr = SDEGANTrainer(data[:512], torch.arange(float(LENGTH)), cfg)
    before = [p.detach().clone() for p in tr.generator.parameters()]
    losses = tr.train()
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(p, q) for p, q in zip(tr.generator.parameters(), before))
    for m in tr.loss.disc.func.unfused().modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.abs().max() <= 1.0 / m.out_features + 1e-7


@pytest.mark.slow
def test_toy_marginals_match():
    torch.manual_seed(0)
    data, test = _data()
    tr = SDEGANTrainer(data, torch.arange(float(LENGTH)), SDEGANConfig(**TOY))
    c0 = time.process_time()
    tr.train()
    cpu = time.process_time() - c0
    ks = _marginal_ks(tr, test)
    print("KS at", PROPS, "=", [round(v, 4) for v in ks], f"training CPU {cpu:.0f} s")
    assert max(ks) < 0.1
