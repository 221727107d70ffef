"""The opt-in compiled sampling step (NEURALSDE_FIN_COMPILE=1) equals the eager fast path.

Each configuration compiles once (a few seconds); the Brownian trees are built with the flag off
so that only the solver step is compiled here.
"""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._solvers import _compiled

CASES = [
    # noise_type, depth, finals, dtype, atol (252 steps)
    ("general", 2, (None, None), torch.float32, 2e-5),
    ("diagonal", 3, ("tanh", "softplus"), torch.float64, 1e-12),
]


def _solve(model, y0, ts, bm, flag, monkeypatch):
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", flag)
    with torch.no_grad():
        return nsf.sdeint(model, y0, ts, bm=bm, dt=1 / 252)


@pytest.mark.parametrize(("noise_type", "depth", "finals", "dtype", "atol"), CASES)
def test_compiled_step_equals_eager(noise_type, depth, finals, dtype, atol, monkeypatch):
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


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1)
    y0 = torch.randn(5, 3)
    ts = torch.linspace(0, 1, 5)
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (5, 2), seed=1, tol=1 / 252)
    eager = _solve(model, y0, ts, bm, "0", monkeypatch)

    def broken(module, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(_compiled, "_cache", {})
    monkeypatch.setattr(_compiled, "_failed", False)
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="sampling step failed"):
        fallback = _solve(model, y0, ts, bm, "1", monkeypatch)
    assert torch.allclose(fallback, eager, atol=1e-6)
    assert not _compiled.enabled()  # the rest of the process stays eager
