"""nsf.sdeint against torchsde.sdeint on identical Brownian increments (float64)."""

from __future__ import annotations

import pytest
import torch
import torchsde

import neuralsde_fin as nsf

CASES = [
    ("reversible_heun", "stratonovich"),
    ("heun", "stratonovich"),
    ("euler", "ito"),
]


@pytest.mark.parametrize("noise_type", ["diagonal", "general", "additive", "scalar"])
@pytest.mark.parametrize("method,sde_type", CASES)
def test_matches_torchsde(replay, mlp_sde, method, sde_type, noise_type):
    d, m, batch = 3, 2, 5
    noise = {"diagonal": d, "scalar": 1}.get(noise_type, m)
    sde = mlp_sde(d, m, noise_type, sde_type)
    grid = torch.linspace(0, 1, 65, dtype=torch.float64)
    bm = replay(grid, batch, noise, seed=1)
    y0 = torch.randn(batch, d, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    ours = nsf.sdeint(sde, y0, ts, bm=bm, method=method, dt=1 / 64)
    peer = torchsde.sdeint(sde, y0, ts, bm=bm, method=method, dt=1 / 64)
    err = (ours - peer).abs().max().item()
    print(f"{method} {noise_type}: max |ours - torchsde| = {err:.2e}")
    assert ours.shape == (5, batch, d)
    assert err < 1e-10


def test_fused_module_matches_torchsde_on_unfused_twin(replay):
    torch.manual_seed(0)
    model = nsf.MLPDriftDiffusion(4, 3, 16, 2, diffusion_final="tanh").double()
    grid = torch.linspace(0, 1, 33, dtype=torch.float64)
    bm = replay(grid, 6, 3, seed=2)
    y0 = torch.randn(6, 4, dtype=torch.float64)
    ours = nsf.sdeint(model, y0, grid, bm=bm)
    peer = torchsde.sdeint(model.unfused(), y0, grid, bm=bm, method="reversible_heun", dt=1 / 32)
    assert (ours - peer).abs().max().item() < 1e-10


def test_dt_none_steps_on_ts_and_nonuniform_ts(replay, mlp_sde):
    sde = mlp_sde(2, 2, "general")
    ts = torch.tensor([0.0, 0.25, 0.375, 0.5, 1.0], dtype=torch.float64)
    bm = replay(ts, 3, 2, seed=3)
    y0 = torch.randn(3, 2, dtype=torch.float64)
    ours = nsf.sdeint(sde, y0, ts, bm=bm)  # 4 unequal steps, one per interval of ts
    # torchsde cannot step on an uneven grid, so compare with the reference step applied by hand
    rh = nsf.SOLVERS["reversible_heun"]()
    from neuralsde_fin._solvers._base import VectorField

    vf = VectorField(sde, "general")
    y, extra = y0, rh.init(vf, ts[0], y0)
    manual = [y0]
    for i in range(4):
        y, extra = rh.step(vf, ts[i], ts[i + 1], float(ts[i + 1] - ts[i]), y, extra, bm.incr[i])
        manual.append(y)
    assert (ours - torch.stack(manual)).abs().max().item() < 1e-12


def test_registry_lists_methods():
    assert {"euler", "heun", "reversible_heun"} <= set(nsf.SOLVERS)
    assert nsf.SOLVERS["euler"].sde_type == "ito"
    assert nsf.SOLVERS["reversible_heun"].sde_type == "stratonovich"
