"""The native CPU sampling loop of ``_solvers/_native_step.py`` (compiled mode, no autograd)."""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._solvers import _native_step

F64 = torch.float64


def _solve(model, y0, ts, bm, compiled: bool):
    with torch.no_grad(), nsf.compiled_solvers(compiled):
        return nsf.sdeint(model, y0, ts, bm=bm, dt=1 / 40)


@pytest.mark.parametrize(
    ("noise_type", "depth", "finals", "every_step"),
    [
        ("general", 1, (None, "sigmoid"), True),
        ("general", 3, ("softplus", "tanh"), False),
        ("diagonal", 2, (None, None), True),
    ],
)
def test_native_loop_equals_eager_float64(noise_type, depth, finals, every_step, monkeypatch):
    """Every supported layout (no hidden layer, several; general and diagonal noise; each
    output activation; outputs at every step or at a sub-grid) gives the eager solve to float64
    rounding: the same arithmetic grouped differently, over 40 steps."""
    calls = []
    solve = _native_step.NativeSampler.solve
    monkeypatch.setattr(_native_step.NativeSampler, "solve", lambda *a: calls.append(solve(*a)))
    torch.manual_seed(3)
    model = nsf.MLPDriftDiffusion(
        5, 2, 12, depth, noise_type=noise_type, drift_final=finals[0], diffusion_final=finals[1]
    ).to(F64)
    y0 = torch.randn(9, 5, dtype=F64)
    ts = torch.linspace(0, 1, 41 if every_step else 6, dtype=F64)
    noise = 2 if noise_type == "general" else 5
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (9, noise), seed=7, tol=1 / 40, dtype=F64)
    native = _solve(model, y0, ts, bm, True)
    eager = _solve(model, y0, ts, bm, False)
    assert len(calls) == 1
    assert native.shape == eager.shape == (len(ts), 9, 5)
    torch.testing.assert_close(native, eager, rtol=1e-12, atol=1e-12)
    assert torch.equal(native[0], y0)


def test_native_sampler_applies_only_where_it_can():
    """CPU only, and only where the kernels build; otherwise the caller takes the other path."""
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1)
    field = model._nsf_vector_field()
    assert _native_step.native_sampler(field, torch.zeros(4, 3)) is not None
    assert _native_step.native_sampler(field, torch.zeros(4, 3, device="meta")) is None
    cde = nsf.CDEFunc(3, 2, 8, 1)._nsf_vector_field()  # one net, no drift / diffusion pair
    assert _native_step.native_sampler(cde, torch.zeros(4, 3)) is None


def test_native_build_failure_falls_back(monkeypatch):
    """A kernel that does not build (no compiler) gives None: sdeint then takes the
    ``torch.compile``-d step, or the eager one."""

    def broken(dtype):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(_native_step, "_final", broken)
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1).double()
    assert _native_step.native_sampler(model._nsf_vector_field(), torch.zeros(4, 3)) is None


def test_native_loop_refuses_increments_it_cannot_read():
    """Increments of another dtype or shape (a user's Brownian object without ``dtype`` /
    ``shape``) raise instead of being read as raw memory of the wrong layout."""
    model = nsf.MLPDriftDiffusion(3, 2, 8, 1).double()
    y0 = torch.zeros(4, 3, dtype=F64)
    sampler = _native_step.native_sampler(model._nsf_vector_field(), y0)
    out = torch.empty(3, 4, 3, dtype=F64)
    tlist, dts = [0.0, 0.5, 1.0], [0.5, 0.5]
    with pytest.raises(ValueError, match="Brownian increments must be torch.float64"):
        sampler.solve(y0, tlist, dts, torch.zeros(2, 4, 2), out, {0: 0, 1: 1, 2: 2})
    with pytest.raises(ValueError, match=r"of shape \(2, 4, 2\), got torch.float64 of shape"):
        sampler.solve(y0, tlist, dts, torch.zeros(2, 4, 3, dtype=F64), out, {0: 0, 1: 1, 2: 2})
    # a float32 model with float64 states keeps the eager path and its error
    assert _native_step.native_sampler(model.float()._nsf_vector_field(), y0) is None
