"""nsf.calibrate(context=C): the model learns the law of the next window given today's state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf

CONTEXT, WINDOW = 63, 21
HESTON = dict(kappa=3.0, theta=0.04, xi=0.6, rho=-0.7, mu=0.05, v0=0.04)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def history():
    return nsf.synthetic_history("heston", HESTON, years=8, seed=3)


def _calibrate(history, steps):
    return nsf.calibrate(history, method="sigw1", steps=steps, window=WINDOW, context=CONTEXT,
                         batch=64, lr=3e-3, seed=0, progress=False, loss_options={"qv": True},
                         model_options={"latent": 4, "width": 32})


@pytest.fixture(scope="module")
def trained(history):
    return _calibrate(history, 250)


def _calm_and_wild_dates(history):
    """The dates of lowest and highest trailing volatility (EWMA of r^2, half-life ~14 days)."""
    r = np.diff(np.log(history.iloc[:, 0].to_numpy()))
    v, ew = r[:CONTEXT].var(), np.empty_like(r)
    for i, x in enumerate(r):
        v = 0.95 * v + 0.05 * x * x
        ew[i] = v
    ok = slice(CONTEXT, len(r) - WINDOW)
    return int(np.argmin(ew[ok])) + CONTEXT + 1, int(np.argmax(ew[ok])) + CONTEXT + 1


def _vol_ratio(model, history):
    """Sampled 21-day daily-return vol from the wild date over the calm one, with its SE."""
    calm, wild = _calm_and_wild_dates(history)
    vols = []
    for d in (calm, wild):
        s = model.sample(4000, WINDOW, measure="historical", history=history.iloc[: d + 1],
                         seed=1, dtype=torch.float64)
        rv = torch.log(s.prices[..., 0]).diff(dim=1).pow(2).mean(1)  # per path
        vols.append((float(rv.mean()), float(rv.std()) / math.sqrt(rv.numel())))
    (a, sa), (b, sb) = vols
    ratio = math.sqrt(b / a)
    se = 0.5 * ratio * math.hypot(sa / a, sb / b)
    return ratio, se


def test_conditional_model_learns_the_state(history, trained):
    """Heston's variance is persistent (half-life ~58 days): after a calm quarter the next month
    is calm, after a wild one wild. The untrained model (same seed) starts everywhere alike."""
    untrained = _calibrate(history, 1)
    r0, se0 = _vol_ratio(untrained, history)
    r1, se1 = _vol_ratio(trained, history)
    print(f"vol ratio wild / calm: untrained {r0:.3f} +- {se0:.3f}, trained {r1:.3f} +- {se1:.3f}")
    assert abs(r0 - 1) < 0.05
    assert r1 > 2.0 + 4 * se1  # the true ratio at these dates is about 4-9


def test_conditional_calibration_records_its_start(history, trained):
    info = trained.info
    assert info["context"] == CONTEXT and trained.context == CONTEXT
    assert len(info["trailing_closes"]) == CONTEXT + 1
    assert info["trailing_dates"][-1] == str(history.index[-1].date())
    t = trained.trailing_history()
    assert np.allclose(t.to_numpy(), history.iloc[-(CONTEXT + 1):].to_numpy())
    # the stationary start keeps real contexts' features (non-degenerate)
    f = trained.stationary_features
    assert f.shape[0] > 100 and float(f[:, 0].std()) > 0.1
    # today's start: the default spot is the last close
    s = trained.sample(10, 5, measure="risk_neutral", history=t)
    assert float(s.prices[0, 0, 0]) == pytest.approx(float(history.iloc[-1, 0]), rel=1e-6)


def test_context_argument_errors(history):
    with pytest.raises(ValueError, match="context"):
        nsf.calibrate(history, method="sigw1", steps=1, context=1, progress=False)
    with pytest.raises(ValueError, match="context"):
        nsf.calibrate(history.iloc[:100], method="sigw1", steps=1, window=21, context=90,
                      progress=False)


@pytest.mark.parametrize("method", sorted(nsf.LOSSES))
def test_every_method_trains_a_conditional_model(history, method):
    """Each loss compares the joint (context, window) paths, so every method supports it."""
    m = nsf.calibrate(history.iloc[:400], method=method, steps=2, window=16, context=32,
                      batch=8, seed=0, progress=False, model_options={"latent": 2, "width": 8})
    assert all(map(math.isfinite, m.info["history"]))
    s = m.sample(20, 5, measure="historical", history=history.iloc[:200], seed=0)
    assert torch.isfinite(s.prices).all()
