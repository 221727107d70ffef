"""The SDE-GAN discriminator: NaN filling, the neural CDE, Lipschitz control, the penalty."""

from __future__ import annotations

import pytest
import torch

from neuralsde_fin._calibrate._discriminator import (
    CDEDiscriminator,
    clip_weights,
    gradient_penalty,
    interpolate_missing,
    penalty_probes,
    time_augment,
    wasserstein_critic,
)
from neuralsde_fin._solvers import CDEFunc, MLPDriftDiffusion


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grads(out, inputs):
    gs = torch.autograd.grad(out, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, inputs)]


def test_interpolate_missing_matches_torchcde():
    torchcde = pytest.importorskip("torchcde")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 20, 3, generator=g, dtype=torch.float64)
    drop = torch.rand(x.shape, generator=g) < 0.3
    drop[:, 0, 0] = True  # a leading gap
    drop[:, -3:, 1] = True  # a trailing gap
    drop[0, :, 2] = True
    drop[0, 7, 2] = False  # a single observation in a channel
    x[drop] = float("nan")
    ts = torch.linspace(0.0, 3.0, 20, dtype=torch.float64) ** 2  # irregular times
    ours = interpolate_missing(x, ts)
    peer = torchcde.linear_interpolation_coeffs(x, t=ts)
    assert not torch.isnan(ours).any()
    assert torch.equal(ours[~drop], x[~drop])
    err = (ours - peer).abs().max().item()
    print("max |ours - torchcde| =", err)
    assert err < 1e-12


def test_interpolate_missing_rejects_empty_channel_and_passes_complete_data():
    x = torch.randn(3, 5, 2)
    assert interpolate_missing(x) is x
    x[1, :, 1] = float("nan")
    with pytest.raises(ValueError, match="path 1, channel 1"):
        interpolate_missing(x)


@pytest.mark.parametrize("depth", [1, 2])
def test_tanh_fields_hand_written_vjp_equals_autograd(depth):
    """Fields with tanh outputs (computed as 2 sigmoid(2u) - 1, the 2 folded into the weights)
    take the hand-written VJP, equal to autograd's; small noise uses the addcmul products."""
    from neuralsde_fin._solvers._base import VectorField

    torch.manual_seed(depth)
    dt = torch.float64
    gen = MLPDriftDiffusion(4, 3, 8, depth, drift_final="tanh", diffusion_final="tanh").to(dt)
    disc = CDEFunc(5, 2, 8, depth).to(dt)
    for module, d, m in ((gen, 4, 3), (disc, 5, 2)):
        field, params = module._nsf_vector_field().for_backward()
        assert field.final_grads is not None and field.small
        t, z = torch.tensor(3.0, dtype=dt), torch.randn(6, d, dtype=dt)
        a_f, a_g = torch.randn(6, d, dtype=dt), torch.randn(6, m, d, dtype=dt).transpose(1, 2)
        _, g, rec = field.record(t, z)
        grads = [None] * len(params)
        a_z = field.vjp(rec, a_f, a_g, grads)
        _, g2, rec2 = VectorField.record(field, t, z)
        grads2 = [None] * len(params)
        a_z2 = VectorField.vjp(field, rec2, a_f, a_g, grads2)
        assert torch.allclose(g, g2, rtol=0, atol=1e-14)
        assert torch.allclose(a_z, a_z2, rtol=1e-12, atol=1e-13)
        for u, v in zip(grads, grads2):
            v = torch.zeros_like(u) if v is None else v  # None: the empty depth-1 stack
            assert torch.allclose(u, v, rtol=1e-12, atol=1e-13)
        # the fused tanh equals torch.tanh of the conventional twin
        plain = module.unfused()
        if isinstance(module, MLPDriftDiffusion):
            torch.testing.assert_close(module.g(t, z), plain.g(t, z), rtol=0, atol=1e-14)
        else:
            torch.testing.assert_close(module(t, z), plain(t, z), rtol=0, atol=1e-14)


def test_discriminator_gradients_reach_path_adjoint_equals_backprop():
    torch.manual_seed(0)
    disc = CDEDiscriminator(2, hidden=6, width=8, depth=2).double()
    ts = torch.arange(12.0, dtype=torch.float64)
    X = time_augment(ts, torch.randn(5, 12, 2, dtype=torch.float64)).requires_grad_(True)
    params = list(disc.parameters())
    s_adj = disc(X)
    g_adj = _grads(s_adj.sum(), [X, *params])
    s_bp = disc(X, adjoint=False)
    g_bp = _grads(s_bp.sum(), [X, *params])
    assert s_adj.shape == (5,)
    assert torch.allclose(s_adj, s_bp, rtol=1e-12, atol=1e-12)
    assert g_adj[0][:, :, 1:].abs().sum() > 0  # gradient reaches the generated values
    for u, v in zip(g_adj, g_bp):
        assert torch.allclose(u, v, rtol=1e-8, atol=1e-12)


def test_clip_weights_matches_clipping_the_plain_layers():
    torch.manual_seed(0)
    disc = CDEDiscriminator(1, hidden=4, width=8, depth=2)
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(10.0)
    plain = disc.func.unfused()
    clip_weights(disc)
    clip_weights(plain)  # the conventional nn.Linear clipping of the torchsde example
    for m in disc.modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.abs().max() <= 1.0 / m.out_features
    fresh = disc.func.unfused()
    for p, q in zip(plain.parameters(), fresh.parameters()):
        assert torch.equal(p, q)


def test_gradient_penalty_is_the_wgan_gp_term():
    torch.manual_seed(0)
    disc = CDEDiscriminator(1, hidden=4, width=8, depth=1).double()
    ts = torch.arange(8.0, dtype=torch.float64)
    real = time_augment(ts, torch.randn(6, 8, 1, dtype=torch.float64))
    fake = time_augment(ts, torch.randn(6, 8, 1, dtype=torch.float64))
    torch.manual_seed(5)
    gp = gradient_penalty(disc, real, fake)
    torch.manual_seed(5)
    alpha = torch.rand(6, 1, 1, dtype=torch.float64)
    xhat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (gx,) = torch.autograd.grad(disc(xhat).sum(), xhat)
    want = (gx.reshape(6, -1).norm(dim=1) - 1).pow(2).mean()
    assert torch.allclose(gp, want, rtol=1e-10)
    gp.backward()  # double backward reaches the discriminator's parameters
    assert disc.func.net.in_weight.grad.abs().sum() > 0
    # given interpolation weights (the calibration loss's counter-based ones) are used as such
    assert torch.allclose(gradient_penalty(disc, real, fake, alpha=alpha.flatten()), want,
                          rtol=1e-10)


def _gp_problem(dtype):
    torch.manual_seed(0)
    disc = CDEDiscriminator(1, hidden=8, width=8, depth=1).to(dtype)
    ts = torch.arange(16.0, dtype=dtype)
    real = time_augment(ts, 0.3 * torch.randn(6, 16, 1, dtype=dtype).cumsum(1))
    fake = time_augment(ts, 0.5 * torch.randn(6, 16, 1, dtype=dtype).cumsum(1))
    return disc, real, fake


def _param_grads(value, disc):
    gs = torch.autograd.grad(value, list(disc.parameters()), allow_unused=True)
    return torch.cat([torch.zeros(p.numel(), dtype=p.dtype) if g is None else g.flatten()
                      for p, g in zip(disc.parameters(), gs)])


def _probe_grads(disc, real, fake, step=None):
    torch.manual_seed(1)
    value, probes, weights = penalty_probes(disc, real, fake, step=step)
    # the solve reads its times from path 0's time channel: keep an unperturbed path first, as
    # wasserstein_critic does (fake paths first)
    scores = disc(torch.cat([real[:1], probes]))[1:]
    return value, _param_grads((weights * scores).sum(), disc)


def test_penalty_probes_value_exact_gradient_second_order():
    """The probes' weighted scores carry the penalty's gradient (a central-difference
    Hessian-vector product): the value equals gradient_penalty's, and the gradient error
    against the double backward falls 4x when the step halves (O(h^2))."""
    disc, real, fake = _gp_problem(torch.float64)
    torch.manual_seed(1)
    gp = gradient_penalty(disc, real, fake)
    exact = _param_grads(gp, disc)
    errs = []
    for h in (4e-2, 2e-2, 1e-2):
        value, fd = _probe_grads(disc, real, fake, step=h)
        assert torch.allclose(value, gp.detach(), rtol=1e-13, atol=0)
        errs.append(float((fd - exact).norm() / exact.norm()))
    print("relative gradient errors at h = 4e-2, 2e-2, 1e-2:", errs)
    for a, b in zip(errs, errs[1:]):
        assert 3.0 < a / b < 5.0
    # default h = eps^(1/3) = 6.1e-6: truncation ~1e-2 h^2 = 4e-13 (from the errors above) plus
    # rounding ~ eps / h = 2e-11 times the solve's conditioning; measured 2.8e-10
    _, fd = _probe_grads(disc, real, fake)
    assert float((fd - exact).norm() / exact.norm()) < 1e-8


def test_penalty_probes_float32_default_step():
    """The default step in float32 (4.9e-3): gradient within 1e-3 relative of the double
    backward (measured 1.1e-4), the value equal to float32 rounding."""
    disc, real, fake = _gp_problem(torch.float32)
    torch.manual_seed(1)
    gp = gradient_penalty(disc, real, fake)
    exact = _param_grads(gp, disc)
    value, fd = _probe_grads(disc, real, fake)
    assert torch.allclose(value, gp.detach(), rtol=1e-5, atol=0)
    err = float((fd - exact).norm() / exact.norm())
    print("float32 relative gradient error", err)
    assert err < 1e-3


@pytest.mark.parametrize("gp_method", ["finite_difference", "double_backward"])
def test_wasserstein_critic_terms(gp_method):
    """mean D(fake) - mean D(real) from the one batched solve, and the penalty of either method
    (value exact; gradients of the two methods agree to the difference error, float64)."""
    disc, real, fake = _gp_problem(torch.float64)
    loss, gp = wasserstein_critic(disc, fake, real, penalty=True, gp_method=gp_method)
    want = disc(fake).mean() - disc(real).mean()
    assert torch.allclose(loss, want, rtol=1e-12)
    torch.manual_seed(1)
    loss, gp = wasserstein_critic(disc, fake, real, penalty=True, gp_method=gp_method)
    torch.manual_seed(1)
    exact = gradient_penalty(disc, real, fake)
    assert torch.allclose(gp, exact, rtol=1e-13)
    got = _param_grads(gp, disc)
    assert float((got - _param_grads(exact, disc)).norm()) < 1e-8 * float(got.norm())
    assert wasserstein_critic(disc, fake, real)[1] is None
    with pytest.raises(ValueError, match="gp_method"):
        wasserstein_critic(disc, fake, real, penalty=True, gp_method="exact")
