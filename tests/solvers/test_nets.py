"""The fused vector fields equal their conventional (unfused) twins; protocol and options."""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf


@pytest.mark.parametrize("noise_type", ["general", "diagonal"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fused_equals_unfused(noise_type, depth):
    torch.manual_seed(depth)
    model = nsf.MLPDriftDiffusion(
        4, 3, 16, depth, noise_type=noise_type, drift_final="tanh", diffusion_final="softplus"
    ).double()
    plain = model.unfused()
    y = torch.randn(6, 4, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    f, g = model.f_and_g(t, y)
    assert torch.allclose(f, plain.f(t, y), atol=1e-14)
    assert torch.allclose(g, plain.g(t, y), atol=1e-14)
    assert torch.equal(model.f(t, y), f) and torch.equal(model.g(t, y), g)
    assert g.shape == ((6, 4, 3) if noise_type == "general" else (6, 4))


def test_lipswish_is_scaled_silu_and_1_lipschitz():
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64, requires_grad=True)
    y = nsf.LipSwish()(x)
    assert torch.allclose(y, 0.909 * x * torch.sigmoid(x))
    (dy,) = torch.autograd.grad(y.sum(), x)
    assert dy.abs().max().item() <= 1.0


def test_options_validated():
    with pytest.raises(ValueError, match="noise_type"):
        nsf.MLPDriftDiffusion(2, 2, noise_type="scalar")
    with pytest.raises(ValueError, match="diffusion_final"):
        nsf.MLPDriftDiffusion(2, 2, diffusion_final="relu")
    with pytest.raises(ValueError, match="depth"):
        nsf.MLPDriftDiffusion(2, 2, depth=0)
    with pytest.raises(ValueError, match="final"):
        nsf.CDEFunc(2, 2, final="relu")


def test_cdefunc_shape_and_float32():
    func = nsf.CDEFunc(5, 3)
    h = torch.randn(7, 5)
    assert func(0.5, h).shape == (7, 5, 3)
    X = torch.randn(7, 10, 3)
    assert nsf.cdeint(func, h, X).shape == (7, 10, 5)


@pytest.mark.parametrize("noise_type", ["general", "diagonal"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_sampling_scratch_buffers_do_not_change_results(noise_type, depth):
    # without autograd the reversible-Heun loop evaluates into buffers reused from step to step;
    # with autograd it allocates: both must give the same numbers
    torch.manual_seed(depth)
    model = nsf.MLPDriftDiffusion(4, 3, 16, depth, noise_type=noise_type).double()
    y0 = torch.randn(7, 4, dtype=torch.float64)
    ts = torch.linspace(0, 1, 9, dtype=torch.float64)
    with torch.no_grad():
        sampled = nsf.sdeint(model, y0, ts, dt=1 / 64, seed=2)
    tracked = nsf.sdeint(model, y0, ts, dt=1 / 64, seed=2)
    assert tracked.requires_grad
    assert torch.allclose(sampled, tracked.detach(), rtol=0, atol=1e-14)
    field = model._nsf_vector_field()
    t = torch.tensor(0.5, dtype=torch.float64)
    with torch.no_grad():
        f1, g1 = field.f_and_g_scratch(t, y0)
        f1, g1 = f1.clone(), g1.clone()
        field.f_and_g_scratch(t, 2 * y0)  # overwrites the scratch g, not the caller's clone
        f, g = field.f_and_g(t, y0)
    assert torch.equal(f1, f) and torch.equal(g1, g)
