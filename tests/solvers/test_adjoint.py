"""The exact reversible-Heun adjoint against backpropagation through the solve (float64)."""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf


def _grads(sde, y0, ts, bm, dt, adjoint, weights):
    ys = nsf.sdeint(sde, y0, ts, bm=bm, dt=dt, adjoint=adjoint)
    loss = (ys * weights).sum() + ys[-1].pow(2).sum()
    return ys, torch.autograd.grad(loss, [y0, *sde.parameters()])


def _check(sde, y0, ts, bm, dt):
    weights = torch.randn(len(ts), *y0.shape, dtype=y0.dtype)
    ys_bp, g_bp = _grads(sde, y0, ts, bm, dt, False, weights)
    ys_adj, g_adj = _grads(sde, y0, ts, bm, dt, True, weights)
    assert (ys_bp - ys_adj).abs().max().item() < 1e-12
    for a, b in zip(g_adj, g_bp):
        rel = ((a - b).abs().max() / b.abs().max()).item()
        print(f"relative gradient error {rel:.2e}")
        assert rel < 1e-8


@pytest.mark.parametrize("noise_type", ["diagonal", "general", "additive", "scalar"])
def test_adjoint_equals_backprop_generic(replay, mlp_sde, noise_type):
    d, m, batch = 3, 2, 4
    noise = {"diagonal": d, "scalar": 1}.get(noise_type, m)
    sde = mlp_sde(d, m, noise_type)
    grid = torch.linspace(0, 1, 201, dtype=torch.float64)  # 200 steps: several adjoint chunks
    bm = replay(grid, batch, noise, seed=4)
    y0 = torch.randn(batch, d, dtype=torch.float64, requires_grad=True)
    ts = torch.linspace(0, 1, 9, dtype=torch.float64)
    _check(sde, y0, ts, bm, 0.005)


@pytest.mark.parametrize("noise_type", ["general", "diagonal"])
def test_adjoint_equals_backprop_fused(replay, noise_type):
    torch.manual_seed(1)
    model = nsf.MLPDriftDiffusion(
        3, 2, 16, 3, noise_type=noise_type, diffusion_final="tanh"
    ).double()
    grid = torch.linspace(0, 1, 129, dtype=torch.float64)
    bm = replay(grid, 5, 3 if noise_type == "diagonal" else 2, seed=5)
    y0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    _check(model, y0, grid, bm, None)


@pytest.mark.parametrize("noise_type", ["general", "diagonal"])
def test_adjoint_equals_backprop_nonuniform_grid(replay, noise_type):
    """Unequal steps (dt=None, the grid is ts) over several adjoint chunks: every chunk's forward
    and backward steps must use their own step sizes."""
    torch.manual_seed(3)
    model = nsf.MLPDriftDiffusion(3, 2, 8, 2, noise_type=noise_type, drift_final="tanh").double()
    steps = torch.rand(150, dtype=torch.float64) + 0.2
    grid = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0) / steps.sum()])
    bm = replay(grid, 4, 3 if noise_type == "diagonal" else 2, seed=7)
    y0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    _check(model, y0, grid, bm, None)


def test_adjoint_float32_close(replay):
    torch.manual_seed(2)
    model = nsf.MLPDriftDiffusion(3, 2, 16, 2)
    grid = torch.linspace(0, 1, 65)
    bm = replay(grid, 5, 2, dtype=torch.float32, seed=6)
    y0 = torch.randn(5, 3, requires_grad=True)
    g = []
    for adjoint in (False, True):
        ys = nsf.sdeint(model, y0, grid, bm=bm, adjoint=adjoint)
        g.append(torch.autograd.grad(ys.pow(2).sum(), [y0, *model.parameters()]))
    for a, b in zip(*g):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-4


def test_gradcheck_y0(replay, mlp_sde):
    sde = mlp_sde(2, 2, "general")
    grid = torch.linspace(0, 1, 9, dtype=torch.float64)
    bm = replay(grid, 2, 2, seed=7)
    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: nsf.sdeint(sde, y, grid, bm=bm, adjoint=True), (y0,))


def test_gradcheck_parameters(replay):
    """gradcheck with respect to parameters, via torch.func.functional_call."""
    torch.manual_seed(3)
    model = nsf.MLPDriftDiffusion(2, 2, 4, 1).double()
    grid = torch.linspace(0, 1, 9, dtype=torch.float64)
    bm = replay(grid, 2, 2, seed=8)
    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def fn(y, *ps):
        state = dict(zip(names, ps))
        with torch.nn.utils.stateless._reparametrize_module(model, state):
            return nsf.sdeint(model, y, grid, bm=bm, adjoint=True)

    assert torch.autograd.gradcheck(fn, (y0, *values))
