"""Signature features: closed forms, Chen's identity, lead-lag, backend agreement."""

from __future__ import annotations

import pytest
import torch

from neuralsde_fin._signature import (
    BACKENDS,
    augment,
    available_backends,
    expected_signature_line,
    lead_lag_transform,
    raw_signature,
    sig_channels,
    signature,
    split_levels,
)
from neuralsde_fin._signature import _signature as sigmod

AVAILABLE = available_backends()
MISSING = [b for b in BACKENDS if b not in AVAILABLE]


def _backend_param(name: str):
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            name not in AVAILABLE, reason=f"signature backend {name!r} is not installed"
        ),
    )


ALL = [_backend_param(b) for b in BACKENDS]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _chen_product(a: torch.Tensor, b: torch.Tensor, d: int, depth: int) -> torch.Tensor:
    """Truncated tensor product (1 + a) (x) (1 + b), levels 1..depth, flattened."""
    la = [torch.ones(a.shape[0], 1, dtype=a.dtype)] + split_levels(a, d, depth)
    lb = [torch.ones(b.shape[0], 1, dtype=b.dtype)] + split_levels(b, d, depth)
    out = []
    for k in range(1, depth + 1):
        acc = 0
        for i in range(k + 1):
            acc = acc + (la[i].unsqueeze(-1) * lb[k - i].unsqueeze(-2)).flatten(-2)
        out.append(acc)
    return torch.cat(out, dim=-1)


@pytest.mark.parametrize("backend", ALL)
def test_straight_line_is_exponential(backend):
    torch.manual_seed(1)
    depth, d = 4, 3
    start = torch.randn(5, 1, d, dtype=torch.float64)
    inc = torch.randn(5, d, dtype=torch.float64)
    # A straight line sampled at 7 collinear points.
    s = torch.linspace(0, 1, 7, dtype=torch.float64).view(1, -1, 1)
    path = start + s * inc.unsqueeze(1)
    got = raw_signature(path, depth, backend=backend)
    want = expected_signature_line(inc, depth)
    assert got.shape == (5, sig_channels(d, depth))
    err = (got - want).abs().max().item()
    print(backend, "max error vs exp(increment):", err)
    assert err < 1e-12


@pytest.mark.parametrize("backend", ALL)
def test_chen_identity(backend):
    torch.manual_seed(2)
    depth, d = 4, 2
    path = torch.randn(3, 12, d, dtype=torch.float64).cumsum(1)
    whole = raw_signature(path, depth, backend=backend)
    a = raw_signature(path[:, :6], depth, backend=backend)
    b = raw_signature(path[:, 5:], depth, backend=backend)
    err = (whole - _chen_product(a, b, d, depth)).abs().max().item()
    print(backend, "Chen identity error:", err)
    assert err < 1e-10


@pytest.mark.parametrize("backend", ALL)
def test_lead_lag_area_is_half_quadratic_variation(backend):
    torch.manual_seed(3)
    x = torch.randn(4, 9, 1, dtype=torch.float64).cumsum(1)
    sig = raw_signature(lead_lag_transform(x), 2, backend=backend)
    lvl2 = split_levels(sig, 2, 2)[1].view(4, 2, 2)
    area = 0.5 * (lvl2[:, 0, 1] - lvl2[:, 1, 0])
    qv = x.diff(dim=1).pow(2).sum((1, 2))
    # Levy area of (lead, lag) equals half the quadratic variation.
    assert torch.allclose(area, 0.5 * qv, atol=1e-12, rtol=0)


def test_augment_shapes_and_values():
    x = torch.arange(6.0).view(1, 3, 2)
    out = augment(x)
    assert out.shape == (1, 4, 3)
    assert torch.equal(out[0, 0], torch.zeros(3))
    assert torch.equal(out[0, 1:, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(out[0, 1:, 1:], x[0])
    ll = augment(x, lead_lag=True)
    assert ll.shape == (1, 1 + 5, 1 + 4)
    # time follows the lead: non-decreasing, ends at 1
    assert torch.all(ll[0, 1:, 0].diff() >= 0) and ll[0, -1, 0] == 1.0
    assert torch.equal(ll[0, -1, 1:3], x[0, -1]) and torch.equal(ll[0, -1, 3:], x[0, -1])


def test_basepoint_sees_the_start():
    torch.manual_seed(4)
    x = torch.randn(2, 5, 1, dtype=torch.float64).cumsum(1)
    shifted = x + 1.0
    with_bp = signature(x, 3) - signature(shifted, 3)
    without = signature(x, 3, basepoint=False) - signature(shifted, 3, basepoint=False)
    assert with_bp.abs().max() > 0.1
    assert without.abs().max() < 1e-12


@pytest.mark.skipif(
    len(AVAILABLE) < 2, reason=f"needs both backends; missing: {', '.join(MISSING) or 'none'}"
)
@pytest.mark.parametrize("lead_lag", [False, True])
def test_backends_agree_float64_values_and_gradients(lead_lag):
    torch.manual_seed(5)
    x = (0.3 * torch.randn(6, 20, 2, dtype=torch.float64)).cumsum(1).requires_grad_()
    a = signature(x, 4, lead_lag=lead_lag, backend="signatory")
    b = signature(x, 4, lead_lag=lead_lag, backend="pysiglib")
    err = (a - b).abs().max().item()
    print("value max abs difference:", err)
    assert err < 1e-10
    w = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * w).sum(), x)
    (gb,) = torch.autograd.grad((b * w).sum(), x)
    gerr = (ga - gb).abs().max().item()
    print("gradient max abs difference:", gerr)
    assert gerr < 1e-10


@pytest.mark.parametrize("backend", ALL)
def test_gradient_matches_finite_differences(backend):
    torch.manual_seed(6)
    x = torch.randn(2, 5, 1, dtype=torch.float64).cumsum(1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: signature(p, 3, backend=backend), (x,))


def test_default_backend_prefers_signatory():
    assert sigmod.resolve_backend(None) == AVAILABLE[0]
    assert AVAILABLE == [b for b in BACKENDS if b in AVAILABLE]


def test_forced_missing_backend_raises(monkeypatch):
    monkeypatch.setattr(sigmod, "_module", lambda name: None)
    with pytest.raises(ImportError, match="'pysiglib' is not installed"):
        sigmod.resolve_backend("pysiglib")
    with pytest.raises(ImportError, match="no signature backend"):
        sigmod.resolve_backend(None)


def test_bad_inputs():
    with pytest.raises(ValueError, match="backend must be one of"):
        signature(torch.zeros(1, 3, 1), 2, backend="esig")
    with pytest.raises(ValueError, match="path must be a tensor of shape"):
        signature(torch.zeros(3, 1), 2)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        signature(torch.zeros(1, 3, 1), 0)


def test_sig_channels():
    assert sig_channels(3, 4) == 3 + 9 + 27 + 81
    assert sig_channels(2, 1) == 2
