"""The opt-in compiled steps (NEURALSDE_FIN_COMPILE=1) equal the eager fast path.

The sampling step (on the CPU the native loop of ``_native_step``, else the ``torch.compile``-d
step; both are tested), and the reversible Heun step and adjoint backward step of training solves
(``adjoint=True``) on the fused fields. Each configuration compiles once (a few seconds to half a
minute); the Brownian trees are built with the flag off so that only the solver is compiled here.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import neuralsde_fin as nsf
from neuralsde_fin import _accel
from neuralsde_fin._solvers import _compiled, _native_step

CASES = [
    # noise_type, depth, finals, dtype, atol (252 steps)
    ("general", 2, (None, None), torch.float32, 2e-5),
    ("diagonal", 3, ("tanh", "softplus"), torch.float64, 1e-12),
]


def _solve(model, y0, ts, bm, flag, monkeypatch):
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", flag)
    with torch.no_grad():
        return nsf.sdeint(model, y0, ts, bm=bm, dt=1 / 252)


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch.compile"])
@pytest.mark.parametrize(("noise_type", "depth", "finals", "dtype", "atol"), CASES)
def test_compiled_step_equals_eager(noise_type, depth, finals, dtype, atol, native, monkeypatch):
    monkeypatch.setattr(_accel, "NATIVE", native)
    solve = _native_step.NativeSampler.solve
    calls = []
    monkeypatch.setattr(_native_step.NativeSampler, "solve", lambda *a: calls.append(solve(*a)))
    torch.manual_seed(0)
    model = nsf.MLPDriftDiffusion(
        6, 3, 16, depth, noise_type=noise_type, drift_final=finals[0], diffusion_final=finals[1]
    ).to(dtype)
    y0 = torch.randn(32, 6, dtype=dtype)
    ts = torch.linspace(0, 1, 13, dtype=dtype)
    noise = 3 if noise_type == "general" else 6
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (32, noise), seed=4, tol=1 / 252, dtype=dtype)
    eager = _solve(model, y0, ts, bm, "0", monkeypatch)
    compiled = _solve(model, y0, ts, bm, "1", monkeypatch)
    assert compiled.shape == eager.shape == (13, 32, 6)
    assert compiled.dtype == dtype
    assert (compiled - eager).abs().max().item() <= atol

    # new weights (a model that keeps training) are used without recompiling
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.25)
    eager2 = _solve(model, y0, ts, bm, "0", monkeypatch)
    compiled2 = _solve(model, y0, ts, bm, "1", monkeypatch)
    assert (eager2 - eager).abs().max().item() > 1e-3
    assert (compiled2 - eager2).abs().max().item() <= atol
    assert len(calls) == (2 if native else 0)  # the path under test ran, the eager one never


def test_autograd_solves_are_not_compiled(monkeypatch):
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", "1")
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1)
    y0 = torch.randn(4, 3)
    assert _compiled.compiled_step(model._nsf_vector_field(), y0) is None
    with torch.no_grad():
        assert _compiled.compiled_step(model._nsf_vector_field(), y0) is not None
        # a CDE field (no drift) and generic SDEs keep the eager path
        func = nsf.CDEFunc(3, 2, 8, 1)
        assert _compiled.compiled_step(func._nsf_vector_field(), y0) is None


def _break_compile(monkeypatch):
    """A fresh process whose torch.compile returns functions that fail (no C++ compiler)."""

    def broken(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(_compiled, "_cache", {})
    monkeypatch.setattr(_compiled, "_functions", {})
    monkeypatch.setattr(_compiled, "_failed", False)
    monkeypatch.setattr(torch, "compile", broken)


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_accel, "NATIVE", False)  # the torch.compile-d step's fallback
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1)
    y0 = torch.randn(5, 3)
    ts = torch.linspace(0, 1, 5)
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (5, 2), seed=1, tol=1 / 252)
    eager = _solve(model, y0, ts, bm, "0", monkeypatch)
    _break_compile(monkeypatch)
    with pytest.warns(RuntimeWarning, match="sampling step failed"):
        fallback = _solve(model, y0, ts, bm, "1", monkeypatch)
    assert torch.allclose(fallback, eager, atol=1e-6)
    assert not _compiled.enabled()  # the rest of the process stays eager


def _sde_grads(model, y0, ts, bm, flag, monkeypatch):
    """Loss and gradients (y0, parameters) of an adjoint sdeint solve."""
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", flag)
    ys = nsf.sdeint(model, y0, ts, bm=bm, dt=1 / 16, adjoint=True)
    loss = (ys * torch.linspace(-1, 1, ys.shape[-1], dtype=ys.dtype)).sin().sum()
    return [loss.detach(), *torch.autograd.grad(loss, [y0, *model.parameters()])]


def _cde_grads(func, h0, X, flag, monkeypatch):
    """Loss and gradients (h0, X, parameters) of an adjoint cdeint solve."""
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", flag)
    hs = nsf.cdeint(func, h0, X, adjoint=True)
    loss = hs[:, -1].square().sum() + hs[:, 3].sum()
    return [loss.detach(), *torch.autograd.grad(loss, [h0, X, *func.parameters()])]


def _assert_close(compiled, eager):
    # float64 rounding: the compiled graph fuses and reorders the same arithmetic
    for c, e in zip(compiled, eager, strict=True):
        torch.testing.assert_close(c, e, rtol=1e-12, atol=1e-13)


def test_compiled_adjoint_native_forward_equals_eager(monkeypatch):
    """Compiled mode on the CPU: the native loop's forward pass, then the compiled backward
    steps (the combination training runs use); float64 rounding."""
    calls = []
    begin = _native_step.NativeSampler.begin
    monkeypatch.setattr(
        _native_step.NativeSampler, "begin", lambda *a: calls.append(1) or begin(*a)
    )
    torch.manual_seed(0)
    dtype = torch.float64
    # an architecture of its own: the next test counts the graphs it compiles
    model = nsf.MLPDriftDiffusion(4, 3, 10, 2, drift_final="tanh").to(dtype)
    y0 = torch.randn(16, 4, dtype=dtype, requires_grad=True)
    ts = torch.linspace(0, 1, 9, dtype=dtype)
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (16, 3), seed=2, tol=1 / 16, dtype=dtype)
    eager = _sde_grads(model, y0, ts, bm, "0", monkeypatch)
    _assert_close(_sde_grads(model, y0, ts, bm, "1", monkeypatch), eager)
    assert len(calls) == 1


def test_compiled_adjoint_sdeint_equals_eager(monkeypatch):
    # the torch.compile-d forward step (other devices; on the CPU the native loop runs the
    # adjoint's forward: the test above)
    monkeypatch.setattr(_accel, "NATIVE", False)
    torch.manual_seed(0)
    dtype = torch.float64
    model = nsf.MLPDriftDiffusion(4, 3, 8, 2, drift_final="tanh", diffusion_final="tanh").to(dtype)
    y0 = torch.randn(16, 4, dtype=dtype, requires_grad=True)
    ts = torch.linspace(0, 1, 9, dtype=dtype)  # outputs at every second step of dt = 1/16
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (16, 3), seed=2, tol=1 / 16, dtype=dtype)
    eager = _sde_grads(model, y0, ts, bm, "0", monkeypatch)
    before = counters["stats"]["unique_graphs"]
    _assert_close(_sde_grads(model, y0, ts, bm, "1", monkeypatch), eager)
    compiled_graphs = counters["stats"]["unique_graphs"] - before
    assert compiled_graphs == 2  # one forward and one backward step variant

    # new weights (training goes on) and a new initial state: same graphs, no recompilation
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.8)
    y1 = torch.randn(16, 4, dtype=dtype, requires_grad=True)
    eager2 = _sde_grads(model, y1, ts, bm, "0", monkeypatch)
    before = counters["stats"]["unique_graphs"]
    _assert_close(_sde_grads(model, y1, ts, bm, "1", monkeypatch), eager2)
    assert counters["stats"]["unique_graphs"] == before
    assert (eager2[1] - eager[1]).abs().max() > 1e-3


def test_compiled_adjoint_cdeint_equals_eager(monkeypatch):
    torch.manual_seed(1)
    dtype = torch.float64
    func = nsf.CDEFunc(5, 3, 8, 1).to(dtype)
    h0 = torch.randn(12, 5, dtype=dtype, requires_grad=True)
    # a non-contiguous control (time-major storage), as a generator's output often is
    X = torch.randn(10, 12, 3, dtype=dtype).cumsum(0).transpose(0, 1).requires_grad_(True)
    eager = _cde_grads(func, h0, X, "0", monkeypatch)
    _assert_close(_cde_grads(func, h0, X, "1", monkeypatch), eager)


def test_compiled_cdeint_final_output_one_variant(monkeypatch):
    """output="final" (a discriminator's readout): equal to eager, and one backward graph.

    Only the last step has a cotangent; every other step gets zeros. Those must not reach the
    compiled group as one tensor twice (Dynamo would compile an aliased variant besides).
    """
    torch.manual_seed(2)
    dtype = torch.float64
    func = nsf.CDEFunc(7, 2, 9, 1).to(dtype)  # an architecture no other test compiles
    h0 = torch.randn(6, 7, dtype=dtype, requires_grad=True)
    X = torch.randn(6, 10, 2, dtype=dtype).cumsum(1).requires_grad_(True)

    def grads(flag):
        monkeypatch.setenv("NEURALSDE_FIN_COMPILE", flag)
        h1 = nsf.cdeint(func, h0, X, adjoint=True, output="final")
        loss = h1.sin().sum()
        return [loss.detach(), *torch.autograd.grad(loss, [h0, X, *func.parameters()])]

    eager = grads("0")
    before = counters["stats"]["unique_graphs"]
    _assert_close(grads("1"), eager)
    assert counters["stats"]["unique_graphs"] - before == 2  # one forward, one backward step


def test_adjoint_compile_failure_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_accel, "NATIVE", False)  # the torch.compile-d forward step
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1).double()
    y0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (5, 2), seed=1, tol=1 / 16, dtype=torch.float64)
    eager = _sde_grads(model, y0, ts, bm, "0", monkeypatch)
    _break_compile(monkeypatch)
    with pytest.warns(RuntimeWarning, match="reversible Heun step failed"):
        fallback = _sde_grads(model, y0, ts, bm, "1", monkeypatch)
    _assert_close(fallback, eager)
    assert not _compiled.enabled()
