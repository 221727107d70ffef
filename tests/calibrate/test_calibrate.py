"""nsf.calibrate: a small GBM fit, resume, NaN guard, argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._calibrate._losses import LOSSES, Loss

SIGMA = 0.2
SMALL = dict(latent=2, width=16, depth=1)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gbm_history(years: int = 20, sigma: float = SIGMA, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = years * 252
    lr = -0.5 * sigma**2 / 252 + sigma / math.sqrt(252) * rng.standard_normal(n)
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(lr)]))


@pytest.mark.parametrize("method", ["sigw1", "sigkernel"])
def test_small_gbm_calibration_daily_vol(method):
    prices = gbm_history()
    model = nsf.calibrate(
        prices, method=method, window=32, steps=6, batch=16, seed=0, progress=False,
        model_options=SMALL,
    )
    scen = model.sample(2000, 32, measure="historical", seed=1)
    lr = torch.log(scen.prices[:, 1:, 0] / scen.prices[:, :-1, 0]).double()
    est, target = lr.std().item(), SIGMA / math.sqrt(252)
    print(f"{method}: sampled daily vol {est:.5f}, target {target:.5f}, ratio {est / target:.3f}")
    assert abs(est / target - 1) < 0.05
    assert len(model.info["history"]) == 6 and all(map(math.isfinite, model.info["history"]))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_reaches_the_same_weights(tmp_path):
    prices = gbm_history(years=4)
    kw = dict(method="sigw1", window=16, steps=6, batch=8, seed=3, progress=False,
              model_options=SMALL, swa_start=0.5, checkpoint_every=2)
    full = _weights(nsf.calibrate(prices, checkpoint_dir=tmp_path / "a", **kw))

    class Killed(Exception):
        pass

    def kill(step, value):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        nsf.calibrate(prices, checkpoint_dir=tmp_path / "b", callback=kill, **kw)
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    resumed = _weights(nsf.calibrate(prices, checkpoint_dir=tmp_path / "b", resume=True, **kw))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    # the saved final model is the returned one
    loaded = nsf.load_model(tmp_path / "b" / "model.pt")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, resumed[k].cpu()), k
    # resuming with other arguments is refused
    with pytest.raises(nsf.CheckpointError, match="different calibration run"):
        nsf.calibrate(prices, checkpoint_dir=tmp_path / "b", resume=True,
                      **{**kw, "lr": 1e-2})


def test_corrupted_training_checkpoint(tmp_path):
    prices = gbm_history(years=2)
    kw = dict(method="sigw1", window=8, steps=2, batch=4, progress=False, model_options=SMALL)
    nsf.calibrate(prices, checkpoint_dir=tmp_path, **kw)
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(nsf.CheckpointError, match="truncated or corrupted"):
        nsf.calibrate(prices, checkpoint_dir=tmp_path, resume=True, **kw)


class _FlakyLoss(Loss):
    """A loss that is NaN on the given calls (to exercise the guard)."""

    def __init__(self, bad_calls=(), always=False):
        super().__init__()
        self.calls, self.bad_calls, self.always = 0, set(bad_calls), always

    def forward(self, fake, real):
        self.calls += 1
        value = (fake.mean(0) - real.mean(0)).pow(2).sum()
        if self.always or self.calls in self.bad_calls:
            return value * float("nan")
        return value


def test_nan_guard_skips_and_lowers_lr(monkeypatch, tmp_path):
    monkeypatch.setitem(LOSSES, "flaky", _FlakyLoss)
    _FlakyLoss.name = "flaky"
    prices = gbm_history(years=2)
    model = nsf.calibrate(prices, method="flaky", window=8, steps=5, batch=4, lr=1e-2,
                          progress=False, model_options=SMALL, loss_options={"bad_calls": [2]},
                          swa=False)
    hist = model.info["history"]
    assert math.isnan(hist[1]) and all(math.isfinite(v) for i, v in enumerate(hist) if i != 1)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    with pytest.raises(FloatingPointError, match="3 consecutive steps"):
        nsf.calibrate(prices, method="flaky", window=8, steps=10, batch=4, progress=False,
                      model_options=SMALL, loss_options={"always": True}, max_bad_steps=3,
                      checkpoint_dir=tmp_path, checkpoint_every=1)
    # checkpoints written before the failure hold finite weights only
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ck["model"]["state_dict"].values())


def test_calibrate_argument_errors():
    prices = gbm_history(years=1)
    with pytest.raises(ValueError, match="method must be one of"):
        nsf.calibrate(prices, method="magic")
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_dir"):
        nsf.calibrate(prices, resume=True)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        nsf.calibrate(prices, steps=0)
    with pytest.raises(ValueError, match="batch must be an integer >= 2"):
        nsf.calibrate(prices, batch=1)
    with pytest.raises(ValueError, match="optimizer"):
        nsf.calibrate(prices, optimizer="sgd")


def test_adadelta_and_multi_asset():
    a = gbm_history(years=3, seed=1)
    b = gbm_history(years=3, sigma=0.35, seed=2)
    prices = np.stack([a, b], axis=1)
    model = nsf.calibrate(prices, method="sigw1", window=16, steps=3, batch=8, lr=1.0,
                          optimizer="adadelta", progress=False, model_options=SMALL)
    assert model.n_assets == 2
    scen = model.sample(500, 16, seed=0, measure="risk_neutral", spot=[1.0, 2.0])
    lr = torch.log(scen.prices[:, 1:] / scen.prices[:, :-1])
    ratio = (lr[..., 1].std() / lr[..., 0].std()).item()
    print("vol ratio asset1 / asset0:", ratio, "data:", 0.35 / 0.2)
    assert abs(ratio / (0.35 / 0.2) - 1) < 0.1


def test_small_gbm_risk_neutral_atm_implied_vol():
    prices = gbm_history()
    # window = 64 days covers the 3-month maturity (63 days): no extrapolation in model time
    model = nsf.calibrate(prices, method="sigw1", window=64, steps=4, batch=16, seed=1,
                          progress=False, model_options=SMALL)
    n, T = 8000, 0.25
    scen = model.sample(n, 63, measure="risk_neutral", r=0.01, q=0.0, spot=100.0, seed=2)
    res = nsf.price(scen, nsf.EuropeanCall(100.0, T), r=0.01)
    iv = float(nsf.implied_vol(res.price, 100.0, 100.0, T, 0.01, 0.0))
    vega = float(nsf.black_scholes_vega(100.0, 100.0, T, 0.01, 0.0, iv))
    print(f"3-month ATM call {res.price:.4f} +- {res.stderr:.4f}; implied vol {iv:.4f} "
          f"(MC se of the vol {res.stderr / vega:.4f})")
    assert abs(iv - SIGMA) < 0.01
