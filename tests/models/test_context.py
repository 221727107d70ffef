"""Conditional market models: context features, history= sampling, its errors and plumbing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._models._context import (
    HALF_LIVES,
    RETURN_DAYS,
    context_features,
    feature_count,
    history_path,
)

CONTEXT = 30


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _history(n_assets: int = 1, n: int = 80, seed: int = 0, vol: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    logp = np.cumsum(rng.normal(0, vol, (n, n_assets)), axis=0) + np.log(100.0)
    idx = pd.bdate_range("2020-01-01", periods=n, name="Date")
    return pd.DataFrame(np.exp(logp), index=idx, columns=[f"a{j}" for j in range(n_assets)])


def _model(n_assets: int = 1, stationary: int = 16, seed: int = 3) -> nsf.MarketModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = nsf.MarketModel(n_assets, latent=3, width=16, window=16, context=CONTEXT,
                            stationary=stationary, return_scale=[0.01] * n_assets)
        with torch.no_grad():  # make the start matter: a strong code, a state-dependent vol
            m.encoder[-1].weight.mul_(20.0)
            m.net.out_weight[1].mul_(30.0)
            m.stationary_features.normal_()
    m.info["assets"] = [f"a{j}" for j in range(n_assets)]
    return m


# ------------------------------------------------------------------------------ features
def test_features_of_a_constant_move_path_are_known():
    """Each day moves by c: every EWMA of r^2 is c^2, so v_k = 1/2 log(W c^2); returns h c."""
    c, window, n = 0.05, 16, 40
    x = (torch.arange(n + 1, dtype=torch.float64) * c)[None, :, None]
    f = context_features(x, window)
    assert f.shape == (1, feature_count(1))
    k = len(HALF_LIVES)
    want_v = 0.5 * math.log(window * c * c)
    assert torch.allclose(f[0, :k], torch.full((k,), want_v, dtype=torch.float64), atol=1e-9)
    want_r = torch.tensor([h * c for h in RETURN_DAYS] + [n * c], dtype=torch.float64)
    assert torch.allclose(f[0, k:], want_r, atol=1e-12)


def test_features_do_not_depend_on_the_price_level_and_weight_recent_days():
    x = torch.cumsum(torch.randn(2, 41, 1, dtype=torch.float64) * 0.1, dim=1)
    f = context_features(x, 16)
    assert torch.allclose(f, context_features(x + 3.0, 16))
    # a shock yesterday moves the 5-day EWMA more than the 63-day one
    y = x.clone()
    y[:, -1] += 1.0
    d = context_features(y, 16) - f
    assert bool((d[:, 0].abs() > d[:, 2].abs()).all())


# ------------------------------------------------------------------------------ history input
def test_history_formats_agree():
    h = _history()
    frame = history_path(h, 1, CONTEXT, ["a0"])
    for other in (h["a0"], h.to_numpy(), h.to_numpy()[:, 0], torch.tensor(h.to_numpy())):
        got = history_path(other, 1, CONTEXT, ["a0"])
        assert np.array_equal(got[0], frame[0]) and np.array_equal(got[1], frame[1])
    assert frame[0].shape == (CONTEXT + 1, 1)
    assert frame[1][0] == h.iloc[-1, 0]


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda h: h.iloc[:CONTEXT], "needs at least 31"),
        (lambda h: h.assign(a0=h["a0"].where(h.index != h.index[-3])), "row 77, asset 0"),
        (lambda h: h.assign(a0=-h["a0"]), "finite and > 0"),
        (lambda h: h.assign(b=1.0), "2 column(s)"),
        (lambda h: h.to_numpy()[:, [0, 0, 0]], "shape (n_dates, 1)"),
    ],
)
def test_bad_histories_get_one_line_errors(mutate, needle):
    m = _model(stationary=0)
    with pytest.raises(ValueError) as err:
        m.sample(10, 5, history=mutate(_history()))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_two_assets_reordered_by_name_and_wrong_names_refused():
    m = _model(2)
    h = _history(2)
    a = m.sample(50, 5, measure="historical", history=h, seed=1).prices
    b = m.sample(50, 5, measure="historical", history=h[["a1", "a0"]], seed=1).prices
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not the model's assets"):
        m.sample(50, 5, history=h.rename(columns={"a1": "zz"}))


def test_unconditional_model_refuses_history_and_conditional_needs_a_start():
    plain = nsf.MarketModel(1, latent=3, width=16)
    with pytest.raises(ValueError, match="needs a model calibrated with context"):
        plain.sample(10, 5, history=_history())
    with pytest.raises(ValueError, match="stores no training contexts"):
        _model(stationary=0).sample(10, 5)


# ------------------------------------------------------------------------------ sampling
def test_history_sets_spot_date_and_state():
    m = _model()
    calm, wild = _history(vol=0.002), _history(vol=0.05, seed=1)
    s = m.sample(400, 10, measure="historical", history=wild, seed=2)
    assert torch.allclose(s.prices[:, 0, 0], torch.tensor(float(wild.iloc[-1, 0])))
    assert s.valuation_date == wild.index[-1]
    a = m.sample(400, 10, measure="historical", history=calm, spot=1.0, seed=2).prices
    b = m.sample(400, 10, measure="historical", history=wild, spot=1.0, seed=2).prices
    # same noise (common random numbers), another start: other paths
    assert float((torch.log(a) - torch.log(b)).abs().max()) > 1e-3
    # only the last C + 1 closes matter
    longer = pd.concat([_history(seed=9).iloc[:20].set_axis(
        pd.bdate_range("2019-01-01", periods=20, name="Date")), wild])
    c = m.sample(400, 10, measure="historical", history=longer, spot=1.0, seed=2).prices
    assert torch.equal(b, c)


def test_stationary_start_draws_the_stored_contexts():
    m = _model()
    s1 = m.sample(200, 5, measure="historical", seed=4).prices
    s2 = m.sample(200, 5, measure="historical", seed=4).prices
    assert torch.equal(s1, s2)
    one = m.sample(200, 5, measure="historical", history=_history(), spot=1.0, seed=4).prices
    assert not torch.equal(s1, one)


def test_paths_do_not_depend_on_chunks_or_shards(tmp_path):
    m = _model()
    h = _history()
    full = m.sample(300, 8, measure="risk_neutral", history=h, seed=5, dtype=torch.float64)
    chunked = m.sample(300, 8, measure="risk_neutral", history=h, seed=5, chunk_size=64,
                       dtype=torch.float64)
    assert torch.equal(full.prices, chunked.prices)
    part = nsf.sample_shard(m, 300, 8, rank=1, world_size=3, measure="risk_neutral", history=h,
                            seed=5, dtype=torch.float64)
    lo, hi = nsf.shard_range(300, 1, 3)
    assert torch.equal(part.prices, full.prices[lo:hi])


def test_risk_neutral_from_history_is_a_martingale():
    m = _model()
    h = _history(vol=0.03)
    r, n = 0.03, 20000
    s = m.sample(n, 21, measure="risk_neutral", history=h, r=r, seed=6, dtype=torch.float64)
    disc = s.prices[:, -1, 0] * math.exp(-r * 21 / 252)
    s0 = float(h.iloc[-1, 0])
    se = float(disc.std()) / math.sqrt(n)
    assert abs(float(disc.mean()) - s0) < 4 * se


def test_greeks_from_history_default_to_its_last_close():
    m = _model()
    h = _history()
    opt = nsf.EuropeanCall(float(h.iloc[-1, 0]), 10 / 252)
    g = nsf.greeks(m, opt, 4000, history=h, seed=1)
    g_spot = nsf.greeks(m, opt, 4000, history=h, spot=float(h.iloc[-1, 0]), seed=1)
    assert float(g.price) == pytest.approx(float(g_spot.price), rel=1e-12)
    assert 0.3 < float(g.delta) < 0.7
    # pathwise delta against central differences through the same sampler
    fd = nsf.greeks(m, opt, 4000, history=h, seed=1, method="fd")
    assert abs(float(g.delta - fd.delta)) < 4 * float(g.delta_stderr) + 1e-3


def test_save_load_keeps_the_context_and_trailing_history(tmp_path):
    m = _model()
    h = _history()
    m.info.update(trailing_closes=h.iloc[-(CONTEXT + 1):].to_numpy().tolist(),
                  trailing_dates=[str(d.date()) for d in h.index[-(CONTEXT + 1):]])
    m.save(tmp_path / "m.pt")
    back = nsf.load_model(tmp_path / "m.pt")
    assert back.context == CONTEXT
    assert torch.equal(back.stationary_features, m.stationary_features)
    t = back.trailing_history()
    assert list(t.columns) == ["a0"] and t.index[-1] == h.index[-1]
    a = m.sample(100, 5, measure="historical", history=h, seed=7).prices
    b = back.sample(100, 5, measure="historical", history=t, seed=7).prices
    assert torch.equal(a, b)
    assert nsf.MarketModel(1).trailing_history() is None
