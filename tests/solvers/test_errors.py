"""Boundary checks of nsf.sdeint: one-line ValueErrors naming the argument."""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf


class Bad(torch.nn.Module):
    def __init__(self, sde_type="stratonovich", noise_type="general", f_shape=None, g_shape=None):
        super().__init__()
        self.sde_type, self.noise_type = sde_type, noise_type
        self.f_shape, self.g_shape = f_shape, g_shape

    def f(self, t, y):
        return torch.zeros(self.f_shape or y.shape, dtype=y.dtype)

    def g(self, t, y):
        return torch.zeros(self.g_shape or (y.shape[0], y.shape[1], 2), dtype=y.dtype)


Y0 = torch.zeros(3, 2)
TS = torch.linspace(0, 1, 5)


def _raises(match, sde, y0=Y0, ts=TS, **kw):
    with pytest.raises(ValueError, match=match) as info:
        nsf.sdeint(sde, y0, ts, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    print(msg)


def test_ito_sde_to_stratonovich_method():
    _raises("sde_type='ito'", Bad(sde_type="ito"), method="reversible_heun")


def test_stratonovich_sde_to_ito_method():
    _raises("sde_type='stratonovich'", Bad(), method="euler")


def test_unknown_method_and_types():
    _raises("method must be one of", Bad(), method="rk4")
    _raises("sde.sde_type", Bad(sde_type="levy"))
    _raises("sde.noise_type", Bad(noise_type="pink"))


def test_ts_not_increasing():
    _raises("ts must be strictly increasing", Bad(), ts=torch.tensor([0.0, 0.5, 0.5, 1.0]))
    _raises("ts must be 1-D", Bad(), ts=torch.tensor([0.0]))


def test_dt_not_dividing_ts():
    _raises("dt=0.3 must divide", Bad(), dt=0.3)
    _raises("dt must be a positive", Bad(), dt=-0.1)


def test_wrong_f_and_g_shapes():
    _raises("sde.f must return shape", Bad(f_shape=(3, 3)))
    _raises("sde.g must return shape", Bad(g_shape=(3, 2)))
    _raises("sde.g must return shape", Bad(noise_type="diagonal", g_shape=(3, 2, 1)))
    _raises("sde.g must return shape", Bad(noise_type="scalar", g_shape=(3, 2, 2)))


def test_y0_and_bm_shape_and_adjoint_method():
    _raises("y0 must be", Bad(), y0=torch.zeros(3))
    _raises("adjoint=True needs method='reversible_heun'", Bad(), method="heun", adjoint=True)
    bm = nsf.VirtualBrownianTree(0.0, 1.0, (3, 5))
    _raises(r"bm must have shape \(3, 2\)", Bad(), bm=bm)
    bm64 = nsf.VirtualBrownianTree(0.0, 1.0, (3, 2), dtype=torch.float64)
    _raises("bm must have y0's dtype torch.float32, got torch.float64", Bad(), bm=bm64)


def test_default_brownian_tree_is_reproducible():
    torch.manual_seed(0)
    model = nsf.MLPDriftDiffusion(2, 2, 8, 1)
    y0 = torch.randn(4, 2)
    a = nsf.sdeint(model, y0, TS, seed=7)
    b = nsf.sdeint(model, y0, TS, seed=7)
    c = nsf.sdeint(model, y0, TS, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (5, 4, 2)
