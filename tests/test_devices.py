"""Device-agnostic paths: calibrate(device=), model.to(device), sample(device=).

Every test runs on the CPU and, when CUDA is present, on the GPU too (marker ``cuda``); on
this project's development machine only the CPU cases run.
"""

from __future__ import annotations

import pytest
import torch

import neuralsde_fin as nsf

DEVICES = ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
])]


@pytest.fixture(scope="module")
def prices():
    return nsf.synthetic_history("gbm", {"sigma": 0.2}, years=2, seed=3)


@pytest.mark.parametrize("device", DEVICES)
def test_calibrate_and_sample_on_device(prices, device):
    model = nsf.calibrate(prices, method="sigw1", window=16, steps=3, batch=16, progress=False,
                          model_options=dict(latent=2, width=8, depth=1), device=device)
    assert next(model.parameters()).device.type == device
    for measure in ("historical", "risk_neutral"):
        scen = model.sample(64, 10, measure=measure, seed=1)
        assert scen.prices.device.type == device and torch.isfinite(scen.prices).all()
    cpu = model.to("cpu")
    a = cpu.sample(64, 10, measure="risk_neutral", seed=1, dtype=torch.float64).prices
    b = cpu.sample(64, 10, measure="risk_neutral", seed=1, dtype=torch.float64,
                   device=device).prices.cpu()
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)  # the same paths on any device


@pytest.mark.parametrize("device", DEVICES)
def test_adjoint_training_solve_on_device(device):
    model = nsf.MarketModel(1, latent=2, width=8, depth=1).to(device)
    x = model.simulate_normalised(8, seed=0, step=0, n_steps=6, adjoint=True)
    x.pow(2).sum().backward()
    assert model.net.in_weight.grad.device.type == device
