"""Market model: sampling measures, martingale, determinism, persistence."""

from __future__ import annotations

import math

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._brownian import counter_normal
from neuralsde_fin._models._market import _KEY_SAMPLE_DW, _KEY_SAMPLE_H0, _Increments


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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


def test_training_paths_adjoint_gradients_match_backprop(model):
    m64 = nsf.MarketModel(**model.config())
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    grads = []
    for adjoint in (False, True):
        m64.zero_grad()
        x = m64.simulate_normalised(5, seed=1, step=3, n_steps=12, adjoint=adjoint)
        (x**2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m64.parameters()]))
    err = (grads[0] - grads[1]).abs().max().item()
    print("adjoint vs backprop max gradient difference:", err)
    assert err < 1e-9 * max(1.0, grads[0].abs().max().item())


def test_training_paths_are_pure_functions_of_seed_and_step(model):
    with torch.no_grad():
        a = model.simulate_normalised(4, seed=1, step=2)
        b = model.simulate_normalised(6, seed=1, step=2)
        c = model.simulate_normalised(4, seed=1, step=3)
    assert a.shape == (4, model.window + 1, 2)
    assert torch.equal(a, b[:4])
    assert not torch.equal(a, c)
    assert torch.equal(a[:, 0], torch.zeros(4, 2))


def test_antithetic_pairs(model):
    plain = model.sample(6, 10, measure="risk_neutral", seed=4)
    anti = model.sample(6, 10, measure="risk_neutral", seed=4, antithetic=True, chunk_size=3)
    assert anti.antithetic and not plain.antithetic
    # path 2j uses the plain inputs of path j (equal up to float32 rounding of other batch sizes)
    assert torch.allclose(anti.prices[0], plain.prices[0], rtol=1e-5, atol=0)
    assert torch.allclose(anti.prices[2], plain.prices[1], rtol=1e-5, atol=0)
    assert not torch.allclose(anti.prices[1], plain.prices[1], rtol=1e-3, atol=0)
    # a constant-volatility model: the log-returns of the pair mirror around the drift
    gbm_like = nsf.MarketModel(1, latent=1, width=4, depth=1, return_scale=[0.01])
    with torch.no_grad():
        gbm_like.diffusion[-1].weight.zero_()
        gbm_like.diffusion[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    s = gbm_like.sample(2, 20, measure="risk_neutral", seed=0, antithetic=True, dtype=torch.float64)
    lr = torch.log(s.prices[:, 1:, 0] / s.prices[:, :-1, 0])
    drift = -0.5 * (0.01 * math.sqrt(252)) ** 2 / 252
    assert torch.allclose(lr[0] - drift, -(lr[1] - drift), atol=1e-12)
    with pytest.raises(ValueError, match="even n_paths"):
        model.sample(3, 2, antithetic=True)
