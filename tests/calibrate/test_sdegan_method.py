"""The "sdegan" method on the shared calibration loop: registry, hook, resume, calibrate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._calibrate._calibrate import METHOD_DEFAULTS
from neuralsde_fin._calibrate._losses import LOSSES, get_loss
from neuralsde_fin._calibrate._sdegan_method import SDEGANLoss

SMALL = dict(latent=2, width=8, depth=1)
TINY_D = dict(hidden=4, width=8, depth=1)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _gbm(n: int = 600, sigma: float = 0.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = -0.5 * sigma**2 / 252 + sigma / math.sqrt(252) * rng.standard_normal(n)
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))


def test_registered_with_gan_defaults():
    assert LOSSES["sdegan"] is SDEGANLoss and SDEGANLoss.adversarial
    d = METHOD_DEFAULTS["sdegan"]
    assert d["optimizer"] == "adadelta" and d["swa_start"] == 0.5 and d["weight_decay"] > 0
    assert d["loss"]["d_lr"] > d["lr"]  # separate rates, discriminator faster
    with pytest.raises(ValueError, match="lipschitz"):
        get_loss("sdegan", lipschitz="spectral")


def test_one_pass_serves_both_networks():
    """forward's backward leaves the critic's gradients (negated); the hook applies them."""
    torch.manual_seed(0)
    loss = get_loss("sdegan", d_lr=0.5, **TINY_D)
    fake = (0.5 * torch.randn(16, 9, 2).cumsum(1)).requires_grad_(True)
    real = torch.randn(16, 9, 2).cumsum(1)
    real[3, 4, 1] = float("nan")  # missing observations are interpolated
    loss.before_generator_step(fake.detach(), real)  # first step: nothing to apply yet
    value = loss(fake, real)
    assert torch.isfinite(value)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    # the critic's own gradient of mean D(fake) - mean D(real), computed separately
    ref = loss._augment(fake.detach()), loss._augment(real)
    params = list(loss.disc.parameters())
    critic = loss.disc(ref[0]).mean() - loss.disc(ref[1]).mean()
    want = torch.autograd.grad(critic, params, allow_unused=True)
    for p, w in zip(params, want):
        if w is not None:
            assert torch.allclose(-p.grad, w, rtol=1e-4, atol=1e-6)
    before = [p.detach().clone() for p in params]
    loss.before_generator_step(fake.detach(), real)
    assert any(not torch.equal(p, q) for p, q in zip(params, before))
    assert all(p.grad is None for p in params)
    for m in loss.disc.func.unfused().modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.abs().max() <= 1.0 / m.out_features + 1e-7


def test_gradient_penalty_mode_updates_in_the_hook():
    torch.manual_seed(0)
    loss = get_loss("sdegan", d_lr=0.5, lipschitz="gp", **TINY_D)
    fake = (0.5 * torch.randn(8, 7, 1).cumsum(1)).requires_grad_(True)
    real = torch.randn(8, 7, 1).cumsum(1)
    loss.before_generator_step(fake.detach(), real)
    before = [p.detach().clone() for p in loss.disc.parameters()]
    loss.before_generator_step(fake.detach(), real)
    assert any(not torch.equal(p, q) for p, q in zip(loss.disc.parameters(), before))
    value = loss(fake, real)
    value.backward()
    assert torch.isfinite(value) and fake.grad.abs().sum() > 0


def test_calibrate_sdegan_small_run():
    model = nsf.calibrate(
        _gbm(),
        method="sdegan",
        window=16,
        steps=4,
        batch=16,
        seed=0,
        progress=False,
        model_options=SMALL,
        loss_options=TINY_D,
    )
    hist = model.info["history"]
    assert len(hist) == 4 and all(map(math.isfinite, hist))
    scen = model.sample(64, 16, measure="historical", seed=1)
    assert torch.isfinite(scen.prices).all()


def test_sdegan_resume_reaches_the_same_weights(tmp_path):
    kw = dict(
        method="sdegan",
        window=12,
        steps=6,
        batch=8,
        seed=3,
        progress=False,
        model_options=SMALL,
        loss_options=TINY_D,
        checkpoint_every=2,
    )
    full = nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "a", **kw).state_dict()

    class Killed(Exception):
        pass

    def kill(step, value):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "b", callback=kill, **kw)
    resumed = nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "b", resume=True, **kw)
    for k, v in resumed.state_dict().items():
        assert torch.equal(full[k], v), k


@pytest.mark.parametrize("lipschitz", ["clip", "gp"])
def test_sdegan_resume_is_exact_for_both_lipschitz_controls(tmp_path, lipschitz):
    """The penalty's interpolates and the discriminator's initial weights follow calibrate's
    seed (no global RNG): an interrupted, resumed run ends on the uninterrupted run's weights,
    even when the global RNG is disturbed in between."""
    kw = dict(method="sdegan", window=12, steps=4, batch=8, seed=5, progress=False,
              model_options=SMALL, loss_options={**TINY_D, "lipschitz": lipschitz},
              checkpoint_every=1)
    full = nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "a", **kw).state_dict()

    class Killed(Exception):
        pass

    def kill(step, value):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "b", callback=kill, **kw)
    torch.manual_seed(999)  # a different global RNG state must not matter
    torch.rand(17)
    resumed = nsf.calibrate(_gbm(300), checkpoint_dir=tmp_path / "b", resume=True, **kw)
    for k, v in resumed.state_dict().items():
        assert torch.equal(full[k], v), k


def test_discriminator_initial_weights_follow_the_seed():
    def disc(seed):
        loss = get_loss("sdegan", **TINY_D)
        loss.seed = seed
        torch.manual_seed(123)  # the global RNG plays no part
        loss.before_generator_step(torch.zeros(2, 5, 1), torch.zeros(2, 5, 1))
        return [p.detach().clone() for p in loss.disc.parameters()]

    a, b, c = disc(1), disc(1), disc(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def _small_gan_run(steps: int, compile: bool | None, dtype=torch.float32):
    return nsf.calibrate(
        _gbm(400), method="sdegan", window=12, steps=steps, batch=16, seed=0, progress=False,
        model_options=SMALL, loss_options=TINY_D, adjoint=True, compile=compile, dtype=dtype,
        swa=False,
    )


@pytest.mark.parametrize(
    ("compile_knob", "env", "steps", "want"),
    [
        (None, None, 4, False),
        (None, None, 1000, True),
        (None, "1", 4, True),
        (None, "0", 1000, False),
        (True, "0", 4, True),
        (False, "1", 1000, False),
    ],
)
def test_compile_knob_reaches_the_training_solves(compile_knob, env, steps, want, monkeypatch):
    """``compile``: explicit, else NEURALSDE_FIN_COMPILE, else on for runs of >= 1000 steps; in
    force while the shared loop computes a step (recorded there, then run eagerly)."""
    from neuralsde_fin._calibrate import _train
    from neuralsde_fin._solvers import _compiled

    if env is None:
        monkeypatch.delenv("NEURALSDE_FIN_COMPILE", raising=False)
    else:
        monkeypatch.setenv("NEURALSDE_FIN_COMPILE", env)
    seen, inner = [], _train._loss_and_grads

    def spy(*args, **kwargs):
        seen.append(_compiled.enabled())
        if len(seen) == 2:
            raise KeyboardInterrupt  # two steps are enough
        with _compiled.compiled_solvers(False):
            return inner(*args, **kwargs)

    monkeypatch.setattr(_train, "_loss_and_grads", spy)
    with pytest.raises(KeyboardInterrupt):
        _small_gan_run(steps, compile_knob)
    assert seen == [want, want]
    assert _compiled.enabled() is (env == "1")  # the mode is restored after the run


def test_compiled_training_equals_eager(monkeypatch):
    """Three SDE-GAN steps of nsf.calibrate (float64, adjoint) with compiled solver steps
    equal the eager run: the losses and the final weights, to float64 rounding."""
    from torch._dynamo.utils import counters

    monkeypatch.delenv("NEURALSDE_FIN_COMPILE", raising=False)
    runs = []
    for flag in (False, True):
        before = counters["stats"]["unique_graphs"]
        model = _small_gan_run(3, flag, torch.float64)
        if flag:  # the discriminator's forward and backward steps, the generator's backward
            # step (its adjoint's forward pass runs the native kernel on the CPU)
            assert counters["stats"]["unique_graphs"] - before >= 3
        runs.append((torch.tensor(model.info["history"]),
                     [w.detach().clone() for w in model.parameters()]))
    (l0, w0), (l1, w1) = runs
    torch.testing.assert_close(l1, l0, rtol=1e-10, atol=0)
    for a, b in zip(w1, w0):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
