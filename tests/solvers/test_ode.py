"""nsf.odeint and nsf.ODEBlock: exact solutions, convergence orders, peers, boundary checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import neuralsde_fin as nsf

F64 = torch.float64


def _fmt(xs):
    return ", ".join(f"{x:.2e}" for x in xs)


# ----------------------------------------------------------------------------------------------
# Problems with exact solutions


def _linear_problem():
    """y' = A y for a fixed 3x3 matrix with rotation and decay; y(t) = expm(A t) y0."""
    A = torch.tensor([[-0.3, 1.2, 0.0], [-1.0, -0.1, 0.4], [0.2, -0.5, -0.6]], dtype=F64)
    y0 = torch.tensor([[1.0, 0.0, -0.5], [0.3, -0.7, 0.2]], dtype=F64)  # batch 2, state 3

    def func(t, y):
        return y @ A.T

    def exact(ts):
        return torch.stack([y0 @ torch.linalg.matrix_exp(A * t).T for t in ts])

    return func, y0, exact


def _oscillator_problem():
    """Harmonic oscillator x'' = -w^2 x, as (x, v); x = x0 cos wt + v0/w sin wt."""
    w = 2.0
    y0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], dtype=F64)

    def func(t, y):
        return torch.stack([y[..., 1], -(w**2) * y[..., 0]], dim=-1)

    def exact(ts):
        c, s = torch.cos(w * ts)[:, None], torch.sin(w * ts)[:, None]
        x0, v0 = y0[:, 0], y0[:, 1]
        x = x0 * c + v0 / w * s
        v = -x0 * w * s + v0 * c
        return torch.stack([x, v], dim=-1)

    return func, y0, exact


def _nonautonomous_problem():
    """y' = cos(t) y (stage times matter); y(t) = y0 exp(sin t - sin t0)."""
    y0 = torch.tensor([[1.0], [-2.0]], dtype=F64)

    def func(t, y):
        return torch.cos(t) * y

    def exact(ts):
        return y0[None] * torch.exp(torch.sin(ts) - torch.sin(ts[0]))[:, None, None]

    return func, y0, exact


PROBLEMS = {
    "linear": _linear_problem,
    "oscillator": _oscillator_problem,
    "nonautonomous": _nonautonomous_problem,
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method", ["rk4", "reversible_heun", "dopri5"])
def test_exact_solution(problem, method):
    func, y0, exact = PROBLEMS[problem]()
    ts = torch.linspace(0.0, 3.0, 7, dtype=F64)
    kw = {"dt": 1 / 256} if method != "dopri5" else {"rtol": 1e-10, "atol": 1e-12}
    out = nsf.odeint(func, y0, ts, method=method, **kw)
    assert out.shape == (len(ts), *y0.shape)
    err = (out - exact(ts)).abs().max().item()
    # Bounds from the orders: 50 dt^p for the fixed-step methods (p = 4, 2), 20 rtol for dopri5.
    bound = {"rk4": 50 / 256**4, "reversible_heun": 50 / 256**2, "dopri5": 20 * 1e-10}[method]
    print(f"{problem} {method}: max error {err:.3e} (bound {bound:.0e})")
    assert err < bound
    assert torch.equal(out[0], y0)


def _order(method, problem, ns, t1=2.0):
    func, y0, exact = PROBLEMS[problem]()
    ts = torch.tensor([0.0, t1 / 2, t1], dtype=F64)
    ref = exact(ts)
    errs = []
    for n in ns:
        out = nsf.odeint(func, y0, ts, method=method, dt=t1 / n)
        errs.append((out - ref).abs().max().item())
    slope = np.polyfit(np.log([t1 / n for n in ns]), np.log(errs), 1)[0]
    return slope, errs


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method, order", [("rk4", 4.0), ("reversible_heun", 2.0)])
def test_convergence_order(method, order, problem):
    ns = [16, 32, 64, 128]
    slope, errs = _order(method, problem, ns)
    print(f"{method} on {problem}: errors {_fmt(errs)}, order {slope:.3f}")
    assert abs(slope - order) < 0.2


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_dopri5_error_scales_with_tolerance(problem):
    func, y0, exact = PROBLEMS[problem]()
    ts = torch.linspace(0.0, 3.0, 31, dtype=F64)
    ref = exact(ts)
    tols = [1e-4, 1e-6, 1e-8, 1e-10]
    errs = []
    for tol in tols:
        out = nsf.odeint(func, y0, ts, method="dopri5", rtol=tol, atol=tol)
        errs.append((out - ref).abs().max().item())
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    print(f"dopri5 on {problem}: errors {_fmt(errs)}, d log err / d log tol {slope:.3f}")
    # Global error of a fifth-order method under per-step control ~ C * tol (Hairer et al. II.4).
    assert abs(slope - 1.0) < 0.2
    for tol, e in zip(tols, errs):
        assert e < 20 * tol


def test_dopri5_dense_output_does_not_change_the_steps():
    """Steps depend on rtol/atol only: asking for 101 outputs leaves the endpoint unchanged."""
    func, y0, exact = _linear_problem()
    ts2 = torch.tensor([0.0, 5.0], dtype=F64)
    ts101 = torch.linspace(0.0, 5.0, 101, dtype=F64)
    a = nsf.odeint(func, y0, ts2, method="dopri5", rtol=1e-7, atol=1e-9)
    b = nsf.odeint(func, y0, ts101, method="dopri5", rtol=1e-7, atol=1e-9)
    assert torch.equal(a[-1], b[-1])
    err = (b - exact(ts101)).abs().max().item()
    print(f"dopri5 dense output at 101 times: max error {err:.2e} (rtol 1e-7)")
    assert err < 20 * 1e-7


def test_dopri5_dense_output_order():
    """One step of y' = y from 0 to h: the interpolant's error at h/2 is O(h^5) (order 4)."""
    y0 = torch.ones(1, 1, dtype=F64)
    errs, hs = [], [0.1, 0.05, 0.025, 0.0125]
    for h in hs:
        ts = torch.tensor([0.0, h / 2, h], dtype=F64)
        # dt = h with huge tolerances: exactly one accepted step of size h.
        out = nsf.odeint(lambda t, y: y, y0, ts, method="dopri5", dt=h, rtol=1.0, atol=1.0)
        errs.append(abs(out[1].item() - math.exp(h / 2)))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    print(f"dense-output local errors {_fmt(errs)}, slope {slope:.3f}")
    assert abs(slope - 5.0) < 0.3


# ----------------------------------------------------------------------------------------------
# Peers on the same vector field


class _MLPField(nn.Module):
    def __init__(self, state=4, width=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = nn.Linear(state + 1, width)
        self.l2 = nn.Linear(width, state)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, t, y):
        tt = t.expand(*y.shape[:-1], 1)
        return self.l2(torch.tanh(self.l1(torch.cat([y, tt], dim=-1))))


def test_rk4_matches_torchdiffeq_to_rounding():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    func = _MLPField().to(F64)
    y0 = torch.randn(8, 4, dtype=F64)
    ts = torch.tensor([0.0, 0.5, 1.25, 2.0], dtype=F64)
    ours = nsf.odeint(func, y0, ts, method="rk4", dt=0.05)
    peer = torchdiffeq.odeint(func, y0, ts, method="rk4", options={"step_size": 0.05})
    diff = (ours - peer).abs().max().item()
    print(f"rk4 vs torchdiffeq rk4: max |diff| {diff:.2e}")
    assert diff < 1e-13


def test_rk4_matches_torchdiffeq_in_float32():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    func = _MLPField()
    y0 = torch.randn(64, 4)
    ts = torch.tensor([0.0, 0.5, 1.0])
    ours = nsf.odeint(func, y0, ts, method="rk4", dt=1 / 32)
    peer = torchdiffeq.odeint(func, y0, ts, method="rk4", options={"step_size": 1 / 32})
    diff = (ours - peer).abs().max().item()
    bound = 4 * torch.finfo(torch.float32).eps * peer.abs().max().item()
    print(f"rk4 vs torchdiffeq rk4 in float32: max |diff| {diff:.2e} (bound {bound:.1e})")
    assert diff <= bound


def test_dopri5_matches_torchdiffeq_to_tolerance():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    func = _MLPField().to(F64)
    y0 = torch.randn(8, 4, dtype=F64)
    ts = torch.linspace(0.0, 2.0, 9, dtype=F64)
    tol = 1e-7
    ours = nsf.odeint(func, y0, ts, method="dopri5", rtol=tol, atol=tol)
    peer = torchdiffeq.odeint(func, y0, ts, method="dopri5", rtol=tol, atol=tol)
    truth = torchdiffeq.odeint(func, y0, ts, method="dopri5", rtol=1e-13, atol=1e-13)
    e_ours = (ours - truth).abs().max().item()
    e_peer = (peer - truth).abs().max().item()
    diff = (ours - peer).abs().max().item()
    scale = tol * (1 + truth.abs().max().item())  # atol + rtol |y|, the per-step error target
    print(
        f"dopri5 at rtol = atol = {tol}: ours err {e_ours:.2e}, torchdiffeq err {e_peer:.2e}, "
        f"|ours - torchdiffeq| {diff:.2e}, atol + rtol max|y| = {scale:.2e}"
    )
    assert e_ours < 20 * scale and e_peer < 20 * scale and diff < 20 * scale


def test_reversible_heun_matches_torchsde_with_zero_diffusion():
    torchsde = pytest.importorskip("torchsde")
    field = _MLPField().to(F64)

    class SDE(nn.Module):
        sde_type, noise_type = "stratonovich", "additive"

        def f(self, t, y):
            return field(t, y)

        def g(self, t, y):
            return torch.zeros(*y.shape, 1, dtype=y.dtype)

    y0 = torch.randn(8, 4, dtype=F64)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(8, 1), dtype=F64)
    peer = torchsde.sdeint(SDE(), y0, ts, bm=bm, method="reversible_heun", dt=0.05)
    ours = nsf.odeint(field, y0, ts, method="reversible_heun", dt=0.05)
    diff = (ours - peer).abs().max().item()
    print(f"reversible Heun vs torchsde (g = 0): max |diff| {diff:.2e}")
    assert diff < 1e-12


# ----------------------------------------------------------------------------------------------
# dtypes, shapes, gradients through the solve


@pytest.mark.parametrize("method", ["rk4", "reversible_heun", "dopri5"])
def test_float32_and_unbatched(method):
    func, y0, exact = _oscillator_problem()
    ts = torch.linspace(0.0, 1.0, 5)
    kw = {"dt": 1 / 64} if method != "dopri5" else {"rtol": 1e-5, "atol": 1e-6}
    out = nsf.odeint(func, y0.float(), ts, method=method, **kw)
    assert out.dtype == torch.float32 and out.shape == (5, 3, 2)
    assert (out.double() - exact(ts.double())).abs().max().item() < 1e-3
    one = nsf.odeint(func, y0[0].float(), ts, method=method, **kw)  # state only, no batch
    assert one.shape == (5, 2)


@pytest.mark.parametrize("method", ["rk4", "reversible_heun", "dopri5"])
def test_backprop_through_solve_matches_finite_differences(method):
    func = _MLPField(state=2, width=8).to(F64)
    y0 = torch.randn(3, 2, dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    kw = {"dt": 0.1} if method != "dopri5" else {"dt": 0.1, "rtol": 1.0, "atol": 1.0}

    # dopri5 with loose tolerances takes the same steps under the perturbations below.
    def loss(y):
        return nsf.odeint(func, y, ts, method=method, **kw).pow(2).sum()

    assert torch.autograd.gradcheck(loss, (y0,), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# ODEBlock


@pytest.mark.parametrize("method", ["rk4", "reversible_heun", "dopri5"])
def test_odeblock_maps_h0_to_h_t1(method):
    func, y0, exact = _linear_problem()

    class Field(nn.Module):
        def forward(self, t, y):
            return func(t, y)

    kw = {"dt": 1 / 128} if method != "dopri5" else {"rtol": 1e-9, "atol": 1e-11}
    block = nsf.ODEBlock(Field(), 1.5, method=method, **kw)
    out = block(y0)
    ref = exact(torch.tensor([1.5], dtype=F64))[0]
    assert out.shape == y0.shape
    assert (out - ref).abs().max().item() < 1e-4
    assert "t1=1.5" in repr(block)


def test_odeblock_is_a_drop_in_residual_block():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(3, 6),
        nsf.ODEBlock(_MLPField(state=6, width=12), 1.0, method="rk4", dt=0.25),
        nn.Linear(6, 1),
    )
    x = torch.randn(5, 3)
    loss = net(x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# ----------------------------------------------------------------------------------------------
# Boundary checks


def _f(t, y):
    return -y


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "euler"}, "method must be one of"),
        ({"method": "rk4", "adjoint": True}, "adjoint=True needs"),
        ({"method": "dopri5", "adjoint": True}, "adjoint=True needs"),
        ({"method": "rk4", "dt": 0.3}, "dt=0.3 must divide every spacing of ts"),
        ({"method": "rk4", "dt": -0.1}, "dt must be a positive"),
        ({"method": "dopri5", "rtol": -1.0}, "rtol must be"),
        ({"method": "dopri5", "rtol": 0.0, "atol": 0.0}, "must not both be 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nsf.odeint(_f, torch.ones(2, 3), torch.tensor([0.0, 0.5, 1.0]), **kwargs)


def test_bad_ts_and_shapes():
    y0 = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"ts must be strictly increasing"):
        nsf.odeint(_f, y0, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="ts must be 1-D with at least 2 times"):
        nsf.odeint(_f, y0, torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="ts must be 1-D with at least 2 times"):
        nsf.odeint(_f, y0, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="y0 must be a floating-point tensor"):
        nsf.odeint(_f, torch.ones(2, 3, dtype=torch.long), torch.tensor([0.0, 1.0]))
    msg = r"func\(t, y\) must return shape \(2, 3\) like y0, got \(2, 2\)"
    with pytest.raises(ValueError, match=msg):
        nsf.odeint(lambda t, y: y[:, :2], y0, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="t1 must be a positive"):
        nsf.ODEBlock(nn.Identity(), 0.0)
    with pytest.raises(ValueError, match="dt=0.3 must divide"):
        nsf.ODEBlock(nn.Identity(), 1.0, method="rk4", dt=0.3)


def test_dopri5_max_steps():
    with pytest.raises(RuntimeError, match="max_steps=5"):
        nsf.odeint(_f, torch.ones(2, 3), torch.tensor([0.0, 10.0]), method="dopri5", max_steps=5)


def test_registry():
    from neuralsde_fin._solvers._ode import ODE_SOLVERS, ODESolver, register

    assert {"rk4", "reversible_heun", "dopri5"} <= set(ODE_SOLVERS)
    assert ODE_SOLVERS["reversible_heun"].supports_adjoint
    with pytest.raises(ValueError, match="already registered"):
        register("rk4")(type("Dup", (ODESolver,), {}))
