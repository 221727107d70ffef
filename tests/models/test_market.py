"""Market model: sampling measures, martingale, determinism, persistence."""

from __future__ import annotations

import math

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._brownian import counter_normal
from neuralsde_fin._models._market import _KEY_SAMPLE_DW, _KEY_SAMPLE_H0, _Increments


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        m = nsf.MarketModel(2, latent=3, width=16, depth=2, return_scale=[0.012, 0.02])
        # make the volatility clearly state-dependent (stochastic), not just the init
        with torch.no_grad():
            m.diffusion[-1].weight.mul_(10.0)
            m.initial[-1].weight.mul_(5.0)
    return m


def test_sample_shapes_and_spot(model):
    scen = model.sample(5, 10, measure="historical", spot=[100.0, 50.0], seed=1)
    assert scen.prices.shape == (5, 11, 2)
    assert scen.times.shape == (11,)
    assert torch.allclose(scen.times[-1], torch.tensor(10 / 252))
    assert torch.equal(scen.prices[:, 0], torch.tensor([[100.0, 50.0]] * 5))
    assert torch.isfinite(scen.prices).all()


@pytest.mark.parametrize("measure", ["historical", "risk_neutral"])
def test_determinism_and_prefix_stability(model, measure):
    a = model.sample(40, 12, measure=measure, seed=7, r=0.02, chunk_size=40).prices
    b = model.sample(40, 12, measure=measure, seed=7, r=0.02, chunk_size=40).prices
    assert torch.equal(a, b)
    big = model.sample(100, 12, measure=measure, seed=7, r=0.02, chunk_size=33).prices
    assert torch.equal(big[:40], a)
    other = model.sample(40, 12, measure=measure, seed=8, r=0.02).prices
    assert not torch.equal(other, a)


def test_risk_neutral_discounted_price_is_a_martingale(model):
    r, q, n = 0.05, 0.02, 4000
    scen = model.sample(n, 252, measure="risk_neutral", r=r, q=q, spot=[100.0, 40.0], seed=11)
    for step in (63, 252):
        t = step / 252
        disc = scen.prices[:, step].double() * math.exp(-r * t)
        est = disc.mean(0)
        se = disc.std(0) / math.sqrt(n)
        exact = torch.tensor([100.0, 40.0], dtype=torch.float64) * math.exp(-q * t)
        print(f"T={t:.2f}: mean discounted S_T {est.tolist()}, exact {exact.tolist()}, se "
              f"{se.tolist()}")
        assert torch.all((est - exact).abs() < 3 * se)
    # the volatility is stochastic: log returns are not Gaussian with one variance per path
    lr = torch.log(scen.prices[:, 1:, 0] / scen.prices[:, :-1, 0])
    per_path = lr.std(1)
    assert per_path.std() / per_path.mean() > 0.05


def test_historical_sampler_is_the_calibrated_sde(model):
    """Normalised historical samples equal sdeint (reversible Heun) with the same noise."""
    seed, n, horizon = 5, 6, 9
    scen = model.sample(n, horizon, measure="historical", seed=seed, dtype=torch.float64)
    m64 = nsf.MarketModel(**model.config())
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    idx = torch.arange(n)
    z = counter_normal(seed, _KEY_SAMPLE_H0, idx[:, None], torch.arange(m64.init_noise)[None],
                       dtype=torch.float64)
    dtau = 1.0 / m64.window
    eps = torch.stack([
        counter_normal(seed, _KEY_SAMPLE_DW, k, idx[:, None], torch.arange(m64.noise)[None],
                       dtype=torch.float64)
        for k in range(horizon)
    ])
    ts = torch.arange(horizon + 1, dtype=torch.float64) * dtau
    with torch.no_grad():
        ys = nsf.sdeint(m64, m64._y0(z), ts, bm=_Increments(math.sqrt(dtau) * eps, 0.0, dtau))
    want = ys[..., :2].transpose(0, 1) * m64.path_scale.double()
    got = torch.log(scen.prices)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_save_load_roundtrip(model, tmp_path):
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = nsf.load_model(path)
    assert loaded.config() == model.config()
    a = model.sample(8, 5, seed=2, measure="risk_neutral").prices
    b = loaded.sample(8, 5, seed=2, measure="risk_neutral").prices
    assert torch.equal(a, b)


def test_corrupted_checkpoints_raise_checkpoint_error(model, tmp_path):
    path = tmp_path / "m.pt"
    model.save(path)
    raw = path.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(nsf.CheckpointError, match="truncated or corrupted"):
        nsf.load_model(trunc)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(nsf.CheckpointError, match="truncated or corrupted"):
        nsf.load_model(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(nsf.CheckpointError, match="is not a"):
        nsf.load_model(other)
    with pytest.raises(nsf.CheckpointError, match="does not exist"):
        nsf.load_model(tmp_path / "missing.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_save_refuses_non_finite_weights(model, tmp_path):
    bad = nsf.MarketModel(**model.config())
    with torch.no_grad():
        bad.drift[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        bad.save(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_sample_validation(model):
    with pytest.raises(ValueError, match="measure"):
        model.sample(2, 3, measure="physical")
    with pytest.raises(ValueError, match="n_paths"):
        model.sample(0, 3)
    with pytest.raises(ValueError, match="spot"):
        model.sample(2, 3, spot=-1.0)
    with pytest.raises(ValueError, match="q must be"):
        model.sample(2, 3, q=[0.0, 0.0, 0.0])
