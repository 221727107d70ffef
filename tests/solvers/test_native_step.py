"""The native CPU sampling loop of ``_solvers/_native_step.py`` (compiled mode, no autograd)."""

from __future__ import annotations

import contextlib

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._solvers import _native_step

F64 = torch.float64

_VSILU_CHECK = r"""
extern "C" void kernel(const float* x, float* a, float* b, const int64_t n) {
    using V = at::vec::Vectorized<float>;
    for (int64_t i = 0; i + V::size() <= n; i += V::size()) {
        const V v = V::loadu(x + i);
        vsilu(v).store(a + i);
        (v / (V(1.0f) + v.neg().exp())).store(b + i);
    }
}
"""

_VEXP_CHECK = r"""
extern "C" void kernel(const float* x, float* a, float* b, const int64_t n) {
    using V = at::vec::Vectorized<float>;
    for (int64_t i = 0; i + V::size() <= n; i += V::size()) {
        vexp(V::loadu(x + i)).store(a + i);
        V::loadu(x + i).exp().store(b + i);
    }
}
"""


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

    monkeypatch.setattr(_native_step, "_solve", broken)
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


def test_native_loop_paths_do_not_depend_on_batch_blocking_or_chunks(monkeypatch):
    """Each path's arithmetic runs on its own row, so a path's values are the same bit for bit
    whether it is solved among 100 paths (blocks of 48, 48 and 4 rows) or 7 (one block), for
    any block size, and whether the steps run in one kernel call or in chunks (7 steps, 1 step;
    groups of paths) that carry the state between calls; widths off the vector length exercise
    the masked tails."""
    torch.manual_seed(5)
    model = nsf.MLPDriftDiffusion(5, 3, 20, 2, diffusion_final="sigmoid")
    y0 = torch.randn(100, 5)
    ts = torch.linspace(0, 1, 41)

    def solve(n, block_rows):
        monkeypatch.setattr(_native_step, "_BLOCK_ROWS", block_rows)
        bm = nsf.VirtualBrownianTree(0.0, 1.0, (n, 3), seed=2, tol=1 / 40)
        return _solve(model, y0[:n], ts, bm, True)

    full = solve(100, 48)
    assert torch.equal(solve(7, 48), full[:, :7])
    assert torch.equal(solve(100, 6), full)
    for steps in (7, 1):
        monkeypatch.setattr(_native_step, "CHUNK_PATH_STEPS", 100 * steps)
        assert torch.equal(solve(100, 48), full)
    monkeypatch.setattr(_native_step, "CHUNK_PATHS", 30)  # groups of 30 paths (or 8 blocks of
    monkeypatch.setattr(_native_step, "CHUNK_PATH_STEPS", 30 * 7)  # 6 rows per thread), 7 steps
    assert torch.equal(solve(100, 6), full)
    monkeypatch.undo()
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (100, 3), seed=2, tol=1 / 40)
    eager = _solve(model, y0, ts, bm, False)
    # float32 rounding of sums in another order, through 40 steps (3e-6 measured; the compiled
    # step's test allows 2e-5 over 252 steps)
    torch.testing.assert_close(full, eager, rtol=1e-5, atol=1e-5)


def _run_check(name: str, check_src: str, sweep: float):
    """(x, ours, reference) of a check kernel built on ``_VEXP``: x is every 251st float32 bit
    pattern and a dense sweep of [-sweep, sweep]."""
    from neuralsde_fin import _native

    src = _native.PREFIX + _native.read("vexp.h") + check_src
    check = _native.build(name, ["const float*", "float*", "float*", "const int64_t"], src)
    patterns = (torch.arange(0, 2**32, 251, dtype=torch.int64) - 2**31).to(torch.int32)
    x = torch.cat([patterns.view(torch.float32), torch.linspace(-sweep, sweep, 1 << 20)])
    x = x[: x.numel() // 16 * 16].contiguous()
    ours, ref = torch.empty_like(x), torch.empty_like(x)
    check(x, ours, ref, x.numel())
    return x, ours, ref


def test_inlined_exp_is_sleef_bit_for_bit():
    """The kernel's float32 ``vexp`` (inlined on AVX2) returns what ``Vectorized<float>::exp``
    (the Sleef library call) returns, on every 251st float bit pattern and a dense sweep of the
    range where exp is finite and nonzero."""
    x, ours, sleef = _run_check("tests.vexp", _VEXP_CHECK, 110.0)
    assert torch.equal(ours.isnan(), sleef.isnan())
    assert torch.equal(ours.nan_to_num(), sleef.nan_to_num())


def test_default_mode_takes_the_native_loop_for_every_size(monkeypatch):
    """With no explicit mode, every sampling solve on the CPU takes the native loop (so a
    path's values do not depend on the batch); ``NEURALSDE_FIN_COMPILE=0`` and
    ``acceleration(False)`` keep every solve eager."""
    calls = []
    solve = _native_step.NativeSampler.solve
    monkeypatch.setattr(_native_step.NativeSampler, "solve", lambda *a: calls.append(solve(*a)))
    monkeypatch.delenv("NEURALSDE_FIN_COMPILE", raising=False)
    model = nsf.MLPDriftDiffusion(8, 2, 8, 1)
    ts = torch.linspace(0, 1, 4)

    def sample(n_paths):
        calls.clear()
        with torch.no_grad():
            nsf.sdeint(model, torch.zeros(n_paths, 8), ts, dt=1 / 3)
        return len(calls)

    assert sample(2048) == 1
    assert sample(3) == 1
    with nsf.acceleration(False):
        assert sample(2048) == 0
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", "0")
    assert sample(2048) == 0


def test_adjoint_forward_through_the_native_loop(monkeypatch):
    """The adjoint's forward pass (``sdeint(..., adjoint=True)``) of a large solve runs the
    native loop chunk by chunk (increments fetched 64 steps at a time; here 3 chunks) and keeps
    y_N, z_N for the reverse pass: outputs and gradients equal the eager forward's to float64
    rounding."""
    calls = []
    begin = _native_step.NativeSampler.begin
    monkeypatch.setattr(
        _native_step.NativeSampler, "begin", lambda *a: calls.append(1) or begin(*a)
    )
    monkeypatch.delenv("NEURALSDE_FIN_COMPILE", raising=False)
    torch.manual_seed(1)
    model = nsf.MLPDriftDiffusion(8, 2, 8, 2, diffusion_final="tanh").to(F64)
    n_paths = 2048
    y0 = torch.randn(n_paths, 8, dtype=F64)
    ts = torch.linspace(0, 1, 11, dtype=F64)

    def run(native: bool):
        model.zero_grad()
        x0 = y0.clone().requires_grad_()
        bm = nsf.VirtualBrownianTree(0.0, 1.0, (n_paths, 2), seed=4, tol=1 / 140, dtype=F64)
        with nsf.compiled_solvers(False) if not native else contextlib.nullcontext():
            ys = nsf.sdeint(model, x0, ts, bm=bm, dt=1 / 140, adjoint=True)
        ys.pow(2).sum().backward()
        return ys.detach(), x0.grad, [p.grad.clone() for p in model.parameters()]

    native, eager = run(True), run(False)
    assert len(calls) == 1
    # float64 rounding: measured 1.5e-14 on ys, 1.7e-13 on the y0 gradient (values up to 100),
    # 2.4e-15 relative on the parameter gradients (sums over 2048 paths); the adjoint
    # bar is 1e-8 relative
    torch.testing.assert_close(native[0], eager[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(native[1], eager[1], rtol=1e-10, atol=1e-10)
    for a, b in zip(native[2], eager[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_inlined_silu_is_sleef_silu_bit_for_bit_above_minus_88():
    """The kernel's float32 ``vsilu`` (on AVX2 an exp clamped to [-87, 88.3]) equals
    x / (1 + exp(-x)) with Sleef's exp bit for bit for every x >= -88.3 (and NaN for NaN);
    below, where silu is under 2e-37 in magnitude, it returns a value in [-4e-37, 0]."""
    x, ours, sleef = _run_check("tests.vsilu", _VSILU_CHECK, 100.0)
    assert torch.equal(ours.isnan(), x.isnan())
    keep = x >= -88.3
    assert torch.equal(ours[keep], sleef[keep])
    low = ours[(x < -88.3) & ~x.isnan()]
    assert low.numel() > 0 and bool(((low <= 0) & (low >= -4e-37)).all())
