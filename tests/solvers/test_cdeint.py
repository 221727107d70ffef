"""nsf.cdeint: peers (torchcde, torchsde) on the same input, and gradients to h0, params and X.

torchcde's own convention differs: with ``LinearInterpolation`` the derivative at a knot is the
slope of the interval *ending* there (``bucketize`` then ``- 1``; the first knot takes the first
interval), and its reversible Heun (torchsde backend, dt = knot spacing) carries the product
f(z_k) X'(t_k) from one step to the next. So at knot k it uses f(z_k) dX_{k-1} in the
z-update of the step [k, k+1], where nsf.cdeint (like diffrax's ControlTerm) uses f(z_k) dX_k:
the two are different discretisations of the same CDE and no choice of knots makes torchcde's
drift-only form reproduce dX_k at both ends of a step with one evaluation per knot. We therefore
run torchcde with the control entering as torchsde's noise: a constant control path (zero
drift, f(t, z) X'(t) = 0), ``names={"diffusion": "func"}`` so that ``func`` is the diffusion,
``func.noise_type = "general"``, and a Brownian object that replays dX. That is torchcde's
``cdeint`` computing reversible Heun with dX in place of dW, which must equal ours to 1e-10.
"""

from __future__ import annotations

import pytest
import torch
import torchcde
import torchsde

import neuralsde_fin as nsf


class Func(torch.nn.Module):
    """A torchcde-style vector field: (t, h) -> (batch, hidden, channels)."""

    noise_type = "general"  # read by torchcde's torchsde backend
    sde_type = "stratonovich"

    def __init__(self, hidden, channels):
        super().__init__()
        self.hidden, self.channels = hidden, channels
        self.lin = torch.nn.Linear(hidden + 1, hidden * channels)

    def forward(self, t, h):
        x = torch.cat([h, torch.as_tensor(t, dtype=h.dtype).expand(h.shape[0], 1)], 1)
        return torch.tanh(self.lin(x)).view(-1, self.hidden, self.channels)


def _data(seed=0, batch=4, length=9, channels=3, hidden=5):
    torch.manual_seed(seed)
    func = Func(hidden, channels).double()
    X = torch.randn(batch, length, channels, dtype=torch.float64).cumsum(1).requires_grad_(True)
    h0 = torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True)
    return func, X, h0


@pytest.mark.parametrize("adjoint", [False, True])
def test_matches_torchcde(replay, adjoint):
    func, X, h0 = _data()
    batch, length, channels = X.shape
    ts = torch.arange(length, dtype=torch.float64)
    ours = nsf.cdeint(func, h0, X, adjoint=adjoint)
    dx = (X[:, 1:] - X[:, :-1]).transpose(0, 1).detach()
    bm = replay.from_increments(ts, dx)
    still = torchcde.LinearInterpolation(torch.zeros(batch, length, channels, dtype=torch.float64))
    kwargs = dict(method="reversible_heun", backend="torchsde", dt=1.0, bm=bm)
    kwargs["names"] = {"diffusion": "func"}
    if adjoint:
        kwargs["adjoint_method"] = "adjoint_reversible_heun"
    peer = torchcde.cdeint(X=still, func=func, z0=h0, t=ts, adjoint=adjoint, **kwargs)
    assert ours.shape == peer.shape == (batch, length, func.hidden)
    err = (ours - peer).abs().max().item()
    print(f"max |nsf.cdeint - torchcde| = {err:.2e}")
    assert err < 1e-10


def test_matches_torchsde_with_dx_as_noise(replay):
    func, X, h0 = _data(seed=1)
    ts = torch.linspace(0, 1, X.shape[1], dtype=torch.float64)

    class AsSDE(torch.nn.Module):
        noise_type, sde_type = "general", "stratonovich"

        def f(self, t, y):
            return torch.zeros_like(y)

        def g(self, t, y):
            return func(t, y)

    bm = replay.from_increments(ts, (X[:, 1:] - X[:, :-1]).transpose(0, 1).detach())
    ours = nsf.cdeint(func, h0, X, ts=ts, adjoint=False)
    peer = torchsde.sdeint(AsSDE(), h0, ts, bm=bm, method="reversible_heun", dt=float(ts[1]))
    assert (ours - peer.transpose(0, 1)).abs().max().item() < 1e-10


@pytest.mark.parametrize("fused", [False, True])
def test_adjoint_gradients_equal_backprop(fused):
    func, X, h0 = _data(seed=2, length=40)
    if fused:
        torch.manual_seed(3)
        func = nsf.CDEFunc(5, 3, 16, 2).double()
    grads = []
    for adjoint in (False, True):
        hs = nsf.cdeint(func, h0, X, adjoint=adjoint)
        loss = hs.pow(2).sum() + hs[:, -1].sin().sum()
        grads.append(torch.autograd.grad(loss, [h0, X, *func.parameters()]))
    for a, b in zip(*grads):
        rel = ((a - b).abs().max() / b.abs().max()).item()
        print(f"relative gradient error {rel:.2e}")
        assert rel < 1e-8


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("adjoint", [False, True])
def test_output_final_equals_last_of_all(fused, adjoint):
    """output="final" is the last state of output="all", with the same gradients (float64)."""
    func, X, h0 = _data(seed=6, length=20)
    if fused:
        torch.manual_seed(7)
        func = nsf.CDEFunc(5, 3, 16, 2).double()
    params = [h0, X, *func.parameters()]
    full = nsf.cdeint(func, h0, X, adjoint=adjoint)[:, -1]
    final = nsf.cdeint(func, h0, X, adjoint=adjoint, output="final")
    assert final.shape == (X.shape[0], h0.shape[1])
    torch.testing.assert_close(final, full, rtol=1e-13, atol=0)
    ga = torch.autograd.grad(full.sin().sum(), params)
    gb = torch.autograd.grad(final.sin().sum(), params)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)


def test_gradcheck_X_and_h0():
    func, X, h0 = _data(seed=4, batch=2, length=4, channels=2, hidden=2)
    assert torch.autograd.gradcheck(lambda h, x: nsf.cdeint(func, h, x), (h0, X))


def test_fused_cdefunc_matches_unfused():
    torch.manual_seed(5)
    func = nsf.CDEFunc(4, 3, 8, 3).double()
    h0 = torch.randn(3, 4, dtype=torch.float64)
    X = torch.randn(3, 6, 3, dtype=torch.float64)
    a = nsf.cdeint(func, h0, X)
    b = nsf.cdeint(func.unfused(), h0, X)
    assert (a - b).abs().max().item() < 1e-12


def test_cdeint_errors():
    func, X, h0 = _data()
    with pytest.raises(ValueError, match="X must"):
        nsf.cdeint(func, h0, X[:, :1])
    with pytest.raises(ValueError, match="h0 must"):
        nsf.cdeint(func, h0[:2], X)
    with pytest.raises(ValueError, match="ts must"):
        nsf.cdeint(func, h0, X, ts=torch.zeros(X.shape[1], dtype=torch.float64))
    with pytest.raises(ValueError, match="func must return"):
        nsf.cdeint(lambda t, h: h, h0, X)
    with pytest.raises(ValueError, match="output must"):
        nsf.cdeint(func, h0, X, output="last")
