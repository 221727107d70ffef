"""Market model: one program on the solver core; measures, martingale, refinement, persistence."""

from __future__ import annotations

import math

import pytest
import torch
import torchsde

import neuralsde_fin as nsf
from neuralsde_fin._brownian import counter_normal, derive_seed
from neuralsde_fin._brownian._steps import StepBrownian
from neuralsde_fin._models import _market
from neuralsde_fin._models._market import _KEY_SAMPLE_DW, _KEY_SAMPLE_H0


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _stochastic(model: nsf.MarketModel) -> nsf.MarketModel:
    """Make the volatility clearly state-dependent (stochastic), not just the init."""
    with torch.no_grad():
        model.net.out_weight[1].mul_(30.0)
        model.initial[-1].weight.mul_(5.0)
    return model


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        m = nsf.MarketModel(2, latent=3, width=16, depth=2, return_scale=[0.012, 0.02])
    return _stochastic(m)


def _noise(model, seed, n, horizon, dtype=torch.float64, step_days=1.0):
    """The sampler's inputs, rebuilt from the documented keys: z (n, init_noise), dW."""
    idx = torch.arange(n)
    z = counter_normal(seed, _KEY_SAMPLE_H0, idx[:, None], torch.arange(model.init_noise)[None],
                       dtype=dtype)
    bm = StepBrownian(n, model.noise, seed=derive_seed(seed, _KEY_SAMPLE_DW), step=step_days,
                      scale=1.0 / model.window, dtype=dtype)
    return z, bm, bm.increments_between(0, horizon)


def test_sample_shapes_and_spot(model):
    scen = model.sample(5, 10, measure="historical", spot=[100.0, 50.0], seed=1)
    assert scen.prices.shape == (5, 11, 2)
    assert scen.times.shape == (11,)
    assert torch.allclose(scen.times[-1], torch.tensor(10 / 252))
    assert torch.equal(scen.prices[:, 0], torch.tensor([[100.0, 50.0]] * 5))
    assert torch.isfinite(scen.prices).all()


def test_model_is_a_fused_field_reading_the_latent_state_only(model):
    """The nets see (tau, h), never the price level: f and g do not change with x~."""
    assert isinstance(model, nsf.MLPDriftDiffusion) and model.input_start == 2
    y = torch.randn(4, 5)
    y2 = y.clone()
    y2[:, :2] += 3.0
    t = torch.tensor(0.3)
    f, g = model.f_and_g(t, y)
    f2, g2 = model.f_and_g(t, y2)
    assert torch.equal(f, f2) and torch.equal(g, g2)
    assert g.shape == (4, 5, model.noise)


@pytest.mark.parametrize("measure", ["historical", "risk_neutral"])
def test_determinism_and_prefix_stability(model, measure):
    a = model.sample(40, 12, measure=measure, seed=7, r=0.02, chunk_size=40).prices
    b = model.sample(40, 12, measure=measure, seed=7, r=0.02, chunk_size=40).prices
    assert torch.equal(a, b)
    big = model.sample(100, 12, measure=measure, seed=7, r=0.02, chunk_size=33).prices
    assert torch.equal(big[:40], a)
    shard = model.sample(30, 12, measure=measure, seed=7, r=0.02, path_offset=37).prices
    assert torch.equal(shard, big[37:67])
    longer = model.sample(40, 20, measure=measure, seed=7, r=0.02, chunk_size=40).prices
    assert torch.equal(longer[:, :13], a)  # a longer horizon extends the same paths
    other = model.sample(40, 12, measure=measure, seed=8, r=0.02).prices
    assert not torch.equal(other, a)


def test_historical_sample_equals_torchsde_on_the_same_noise(model):
    """The historical sampler is the calibrated SDE: torchsde's reversible Heun on the model's
    conventional twin (nn.Sequential nets on cat([tau, h])), same increments, float64."""
    seed, n, horizon = 5, 6, 9
    m64 = nsf.MarketModel(**model.config())
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    scen = m64.sample(n, horizon, measure="historical", seed=seed, dtype=torch.float64)
    z, bm, _ = _noise(m64, seed, n, horizon)
    ts = torch.arange(horizon + 1, dtype=torch.float64) * bm.dt
    with torch.no_grad():
        peer = torchsde.sdeint(m64.unfused(), m64._y0(z), ts, bm=bm, method="reversible_heun",
                               dt=bm.dt)
    want = peer[..., :2].transpose(0, 1) * m64.path_scale.double()
    err = (torch.log(scen.prices) - want).abs().max().item()
    print("max |ours - torchsde| (log-prices):", err)
    assert err < 1e-12


def _reference_risk_neutral(m, z, dw, r, q, dt_years):
    """The textbook scheme written out: reversible Heun for the latent state, log-Euler with
    the left-point volatility for the prices (annualised units)."""
    a, dtau = m.n_assets, dt_years / m.years_per_unit
    y = m._y0(z)
    zst = y
    f, g = m.f_and_g(torch.zeros((), dtype=y.dtype), zst)
    vol_unit = m.return_scale.double() / math.sqrt(m.dt_data)
    logs = torch.zeros(y.shape[0], a, dtype=y.dtype)
    out = [logs]
    for n in range(dw.shape[0]):
        sig = g[:, :a] * vol_unit[:, None]
        eps = dw[n] / math.sqrt(dtau)
        logs = logs + (r - q - 0.5 * sig.pow(2).sum(-1)) * dt_years + torch.einsum(
            "bam,bm->ba", sig, math.sqrt(dt_years) * eps)
        z1 = 2 * y - zst + f * dtau + torch.einsum("bdm,bm->bd", g, dw[n])
        f1, g1 = m.f_and_g(torch.tensor((n + 1) * dtau, dtype=y.dtype), z1)
        y = y + (f + f1) * (0.5 * dtau) + torch.einsum("bdm,bm->bd", g + g1, 0.5 * dw[n])
        zst, f, g = z1, f1, g1
        out.append(logs)
    return torch.stack(out, 1)


@pytest.mark.parametrize("native", [False, True])
def test_risk_neutral_sample_equals_the_textbook_scheme(model, native, monkeypatch):
    """The one fused solve (eager, and the native kernel) equals the scheme written out."""
    monkeypatch.setenv("NEURALSDE_FIN_COMPILE", "" if native else "0")
    seed, n, horizon, r = 4, 7, 15, 0.03
    q = torch.tensor([0.01, 0.0], dtype=torch.float64)
    m64 = nsf.MarketModel(**model.config())
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    scen = m64.sample(n, horizon, measure="risk_neutral", r=r, q=q.tolist(), seed=seed,
                      dtype=torch.float64)
    z, _, dw = _noise(m64, seed, n, horizon)
    with torch.no_grad():
        want = _reference_risk_neutral(m64, z, dw, r, q, 1 / 252)
    err = (torch.log(scen.prices) - want).abs().max().item()
    print(f"native={native}: max |ours - textbook| = {err:.2e}")
    assert err < 1e-12


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


@pytest.mark.parametrize("measure", ["historical", "risk_neutral"])
def test_finer_dt_refines_the_same_brownian_paths(model, measure):
    """Strong convergence on the product: with the same seed, dt / 2^k samples the same
    Brownian paths more finely, so the rms terminal difference to a fine reference shrinks as
    dt halves (at least by 1.25x per halving; the theory's order 1/2 gives sqrt(2)), while
    independent paths would differ by the terminal spread itself."""
    n, days = 400, 16
    kw = dict(measure=measure, r=0.02, seed=3, dtype=torch.float64)
    ref = torch.log(model.sample(n, days * 32, dt=1 / 252 / 32, **kw).prices[:, -1])
    errs = []
    for k in (1, 2, 4, 8):
        s = model.sample(n, days * k, dt=1 / 252 / k, **kw).prices
        errs.append((torch.log(s[:, -1]) - ref).pow(2).mean().sqrt().item())
    spread = ref.std(0).mean().item()
    print(f"{measure}: rms terminal differences to dt/32 at dt/1, /2, /4, /8: {errs}; "
          f"terminal spread {spread:.4f}")
    assert errs[0] < 0.25 * spread
    for a, b in zip(errs, errs[1:]):
        assert a / b > 1.25


def test_vol_scale_paths(model):
    """A per-path or differentiable vol_scale (pathwise vega) equals the scaled solve."""
    kw = dict(measure="risk_neutral", r=0.03, seed=2, spot=100.0, dtype=torch.float64)
    direct = model.sample(6, 20, vol_scale=1.3, **kw).prices
    lam = torch.full((6,), 1.3, dtype=torch.float64, requires_grad=True)
    quad = model.sample(6, 20, vol_scale=lam, **kw).prices
    assert quad.requires_grad
    assert (quad - direct).abs().max().item() < 1e-10
    with pytest.raises(ValueError, match="risk-neutral"):
        model.sample(2, 3, measure="historical", vol_scale=1.1)


def test_save_load_roundtrip(model, tmp_path):
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = nsf.load_model(path)
    assert loaded.config() == model.config()
    a = model.sample(8, 5, seed=2, measure="risk_neutral").prices
    b = loaded.sample(8, 5, seed=2, measure="risk_neutral").prices
    assert torch.equal(a, b)


def test_version_1_checkpoints_load_through_the_converter(model, tmp_path):
    """A version-1 file (nn.Sequential drift / diffusion nets on cat([tau, h])) loads as the
    same function: its conventional twin's weights, converted, give the same samples."""
    import json

    plain = model.unfused()
    sd = {f"drift.{k}": v for k, v in plain.drift.state_dict().items()}
    sd |= {f"diffusion.{k}": v for k, v in plain.diffusion.state_dict().items()}
    sd |= {f"initial.{k}": v for k, v in model.initial.state_dict().items()}
    sd["return_scale"] = model.return_scale.clone()
    cfg = {k: v for k, v in model.config().items() if k not in ("drift_final", "diffusion_final")}
    torch.save({"format": "neuralsde_fin.MarketModel", "version": 1, "config": json.dumps(cfg),
                "info": "{}", "state_dict": sd}, tmp_path / "v1.pt")
    old = nsf.load_model(tmp_path / "v1.pt")
    a = model.sample(8, 6, seed=2, measure="historical", dtype=torch.float64).prices
    b = old.sample(8, 6, seed=2, measure="historical", dtype=torch.float64).prices
    assert (a - b).abs().max().item() < 1e-12
    torch.save({"format": "neuralsde_fin.MarketModel", "version": 9, "config": json.dumps(cfg),
                "info": "{}", "state_dict": sd}, tmp_path / "v9.pt")
    with pytest.raises(nsf.CheckpointError, match="format version 9"):
        nsf.load_model(tmp_path / "v9.pt")


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
        bad.net.in_weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        bad.save(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_sample_validation(model):
    with pytest.raises(ValueError, match="measure"):
        model.sample(2, 3, measure="physical")
    with pytest.raises(ValueError, match="n_paths"):
        model.sample(0, 3)
    with pytest.raises(ValueError, match="n_paths"):
        model.sample(True, 3)
    with pytest.raises(ValueError, match="spot"):
        model.sample(2, 3, spot=-1.0)
    with pytest.raises(ValueError, match="q must be"):
        model.sample(2, 3, q=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="dt must be"):
        model.sample(2, 3, dt=1e-9)


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
        part = model.simulate_normalised(3, seed=1, step=2, path_offset=2)
        c = model.simulate_normalised(4, seed=1, step=3)
    assert a.shape == (4, model.window + 1, 2)
    assert torch.equal(a, b[:4])
    torch.testing.assert_close(part, b[2:5], rtol=0, atol=1e-6)
    assert not torch.equal(a, c)
    assert torch.equal(a[:, 0], torch.zeros(4, 2))


def test_training_and_sampling_run_through_sdeint(model, monkeypatch):
    """No second solver: training and both measures call nsf.sdeint on the model's field."""
    calls = []
    inner = _market.sdeint

    def spy(sde, y0, ts, **kw):
        calls.append((type(sde).__name__, kw.get("adjoint", False)))
        return inner(sde, y0, ts, **kw)

    monkeypatch.setattr(_market, "sdeint", spy)
    model.sample(3, 4, measure="historical")
    model.sample(3, 4, measure="risk_neutral")
    model.simulate_normalised(3, seed=0, step=0, n_steps=4, adjoint=True)
    assert calls == [("MarketModel", False), ("_RiskNeutral", False), ("MarketModel", True)]


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
        gbm_like.net.out_weight[1].zero_()
        gbm_like.net.out_bias[1].copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    s = gbm_like.sample(2, 20, measure="risk_neutral", seed=0, antithetic=True, dtype=torch.float64)
    lr = torch.log(s.prices[:, 1:, 0] / s.prices[:, :-1, 0])
    drift = -0.5 * (0.01 * math.sqrt(252)) ** 2 / 252
    assert torch.allclose(lr[0] - drift, -(lr[1] - drift), atol=1e-12)
    with pytest.raises(ValueError, match="even n_paths"):
        model.sample(3, 2, antithetic=True)
