"""odeint(method="reversible_heun", adjoint=True): exact gradients in O(1) memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neuralsde_fin as nsf

F64 = torch.float64


class Field(nn.Module):
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2."""

    def __init__(self, state=4, width=16):
        super().__init__()
        self.l1 = nn.Linear(state + 1, width)
        self.l2 = nn.Linear(width, state)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(torch.cat([y, t.expand(*y.shape[:-1], 1)], dim=-1))))


def _grads(func, y0, ts, adjoint, dt=0.05):
    y0 = y0.detach().requires_grad_(True)
    func.zero_grad()
    ys = nsf.odeint(func, y0, ts, method="reversible_heun", dt=dt, adjoint=adjoint)
    weights = torch.linspace(0.5, 1.5, ys.numel(), dtype=ys.dtype).reshape(ys.shape)
    (weights * ys.sin()).sum().backward()  # cotangents at every output time
    grads = [y0.grad.flatten()] + [p.grad.flatten() for p in func.parameters()]
    return ys.detach(), torch.cat(grads)


def test_adjoint_equals_backprop_through_the_solve():
    torch.manual_seed(0)
    func = Field().to(F64)
    y0 = torch.randn(8, 4, dtype=F64)
    ts = torch.tensor([0.0, 0.3, 0.7, 1.5], dtype=F64)
    ys_bp, g_bp = _grads(func, y0, ts, adjoint=False)
    ys_adj, g_adj = _grads(func, y0, ts, adjoint=True)
    rel = ((g_adj - g_bp).abs().max() / g_bp.abs().max()).item()
    print(f"adjoint vs backprop (30 steps, {g_bp.numel()} gradients): max relative diff {rel:.2e}")
    assert (ys_adj - ys_bp).abs().max().item() < 1e-13
    assert rel < 1e-8


def test_adjoint_gradcheck():
    torch.manual_seed(1)
    func = Field(state=2, width=4).to(F64)
    ts = torch.tensor([0.0, 0.2, 0.5], dtype=F64)
    params = list(func.parameters())

    def f(y0, *ps):
        # Differentiate with respect to y0 and the parameters through the adjoint.
        return nsf.odeint(
            lambda t, y: _call(t, y, ps),
            y0,
            ts,
            method="reversible_heun",
            dt=0.1,
            adjoint=True,
            adjoint_params=ps,
        )

    def _call(t, y, ps):
        w1, b1, w2, b2 = ps
        h = torch.tanh(torch.cat([y, t.expand(*y.shape[:-1], 1)], -1) @ w1.T + b1)
        return h @ w2.T + b2

    y0 = torch.randn(3, 2, dtype=F64, requires_grad=True)
    inputs = (y0, *[p.detach().clone().requires_grad_(True) for p in params])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def _saved_elements(adjoint, n_steps):
    func = Field().to(F64)
    y0 = torch.randn(64, 4, dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    count = [0]

    def pack(t):
        count[0] += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ys = nsf.odeint(func, y0, ts, method="reversible_heun", dt=1.0 / n_steps, adjoint=adjoint)
    ys[-1].sum().backward()
    return count[0]


def test_adjoint_stores_no_trajectory():
    """Elements saved for backward: constant in the number of steps with the adjoint."""
    adj = [_saved_elements(True, n) for n in (16, 128)]
    bp = [_saved_elements(False, n) for n in (16, 128)]
    print(f"saved elements, 16 vs 128 steps: adjoint {adj}, backprop {bp}")
    assert adj[0] == adj[1]
    assert bp[1] > 6 * bp[0]


def test_adjoint_needs_parameters():
    with pytest.raises(ValueError, match="adjoint=True needs func to be an nn.Module"):
        nsf.odeint(lambda t, y: -y, torch.ones(2, 3), torch.tensor([0.0, 1.0]), adjoint=True)
    # Explicitly no parameters: gradients to y0 only.
    y0 = torch.ones(2, 3, dtype=F64, requires_grad=True)
    ys = nsf.odeint(
        lambda t, y: -y,
        y0,
        torch.tensor([0.0, 1.0], dtype=F64),
        dt=0.01,
        adjoint=True,
        adjoint_params=(),
    )
    ys[-1].sum().backward()
    # d y(1) / d y0 of y' = -y under reversible Heun with h = 0.01: close to exp(-1).
    assert abs(y0.grad[0, 0].item() - torch.exp(torch.tensor(-1.0)).item()) < 1e-4


def test_odeblock_adjoint_default_and_gradients():
    torch.manual_seed(0)
    func = Field().to(F64)
    block = nsf.ODEBlock(func, 1.0, dt=0.1)
    assert block.adjoint and block.method == "reversible_heun"
    h = torch.randn(5, 4, dtype=F64)
    block(h).pow(2).sum().backward()
    g_adj = torch.cat([p.grad.flatten() for p in func.parameters()])
    func.zero_grad()
    nsf.ODEBlock(func, 1.0, dt=0.1, adjoint=False)(h).pow(2).sum().backward()
    g_bp = torch.cat([p.grad.flatten() for p in func.parameters()])
    assert ((g_adj - g_bp).abs().max() / g_bp.abs().max()).item() < 1e-8
