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


def _vjp_both(field, t, z, a_f, a_g):
    """(f, g, a_z, grads) from the field's hand-written VJP and from the generic autograd one.

    The hand-written VJP is applied twice to one record (it accumulates into ``grads``), so
    its parameter cotangents are halved before they are returned.
    """
    from neuralsde_fin._solvers._base import VectorField

    f, g, rec = field.record(t, z)
    grads = [None] * len(field.params())
    a_z = field.vjp(rec, a_f, a_g, grads)
    assert torch.equal(field.vjp(rec, a_f, a_g, grads), a_z)
    f2, g2, rec2 = VectorField.record(field, t, z)
    grads2 = [None] * len(field.params())
    a_z2 = VectorField.vjp(field, rec2, a_f, a_g, grads2)
    return (f, g, a_z, [0.5 * u for u in grads]), (f2, g2, a_z2, grads2)


@pytest.mark.parametrize("noise_type", ["general", "diagonal"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("finals", [(None, None), ("tanh", "softplus"), ("sigmoid", "tanh")])
def test_hand_written_vjp_equals_autograd(noise_type, depth, finals):
    """The fused fields' VJP (used by the adjoint) equals autograd's to float64 rounding."""
    torch.manual_seed(depth)
    model = nsf.MLPDriftDiffusion(
        4, 3, 8, depth, noise_type=noise_type, drift_final=finals[0], diffusion_final=finals[1]
    ).double()
    field, params = model._nsf_vector_field().for_backward()
    assert field.final_grads is not None  # the hand-written path is the one under test
    t = torch.tensor(0.7, dtype=torch.float64)
    z = torch.randn(5, 4, dtype=torch.float64)
    a_f = torch.randn(5, 4, dtype=torch.float64)
    a_g = torch.randn((5, 4, 3) if noise_type == "general" else (5, 4), dtype=torch.float64)
    (f, g, a_z, grads), (f2, g2, a_z2, grads2) = _vjp_both(field, t, z, a_f, a_g)
    assert torch.allclose(f, f2, rtol=0, atol=1e-14) and torch.allclose(g, g2, rtol=0, atol=1e-14)
    assert torch.allclose(a_z, a_z2, rtol=1e-12, atol=1e-13)
    assert len(grads) == len(params) == len(grads2)
    for u, v in zip(grads, grads2):
        v = torch.zeros_like(u) if v is None else v  # autograd: None for the empty depth-1 stack
        assert u.shape == v.shape and torch.allclose(u, v, rtol=1e-12, atol=1e-13)


def test_hand_written_vjp_cde_field_and_frozen_tensors():
    """CDE fields (no drift), and tensors without requires_grad get no gradient slot."""
    torch.manual_seed(0)
    func = nsf.CDEFunc(5, 3, 8, 2).double()
    func.net.in_time.requires_grad_(False)
    func.net.out_bias[0].requires_grad_(False)
    field, params = func._nsf_vector_field().for_backward()
    n_all = len(field.tensors)
    assert len(params) < n_all
    t = torch.tensor(0.2, dtype=torch.float64)
    z = torch.randn(4, 5, dtype=torch.float64)
    a_g = torch.randn(4, 5, 3, dtype=torch.float64)
    (f, g, a_z, grads), (_, g2, a_z2, grads2) = _vjp_both(field, t, z, 0.0, a_g)
    assert torch.allclose(g, g2, rtol=0, atol=1e-14)
    assert torch.allclose(a_z, a_z2, rtol=1e-12, atol=1e-13)
    for u, v in zip(grads, grads2):
        v = torch.zeros_like(u) if v is None else v
        assert torch.allclose(u, v, rtol=1e-12, atol=1e-13)
