"""VaR and expected shortfall of horizon P&L against the lognormal closed forms."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

import neuralsde_fin as nsf

S0, MU, SIGMA, T = 100.0, 0.08, 0.25, 10 / 252


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _exact(alpha):
    m, s = (MU - SIGMA**2 / 2) * T, SIGMA * math.sqrt(T)
    z = NormalDist().inv_cdf(1 - alpha)
    var = S0 - S0 * math.exp(m + s * z)
    es = S0 - S0 * math.exp(MU * T) * NormalDist().cdf(z - s) / (1 - alpha)
    return var, es


def test_var_es_gbm_against_closed_form():
    scen = nsf.GBM(SIGMA, mu=MU).sample(20_000, 10, measure="historical", spot=S0, seed=8)
    res = nsf.var_es(scen, (0.95, 0.99), n_boot=500, seed=1)
    for k, alpha in enumerate((0.95, 0.99)):
        var, es = _exact(alpha)
        print(f"alpha {alpha}: VaR {float(res.var[k]):.4f} (boot SE {float(res.var_stderr[k]):.4f},"
              f" CI {res.var_ci[k].tolist()}) exact {var:.4f}; ES {float(res.es[k]):.4f} "
              f"(boot SE {float(res.es_stderr[k]):.4f}) exact {es:.4f}")
        assert abs(float(res.var[k]) - var) < 3 * float(res.var_stderr[k])
        assert abs(float(res.es[k]) - es) < 3 * float(res.es_stderr[k])
        assert res.var_ci[k, 0] < res.var[k] < res.var_ci[k, 1]
        assert res.es[k] >= res.var[k]
    assert res.horizon == pytest.approx(T) and res.pnl.shape == (20_000,)
    again = nsf.var_es(scen, (0.95, 0.99), n_boot=500, seed=1)
    assert torch.equal(again.var_ci, res.var_ci)  # bootstrap is a pure function of the seed


def test_positions_and_horizon():
    scen = nsf.GBM([0.2, 0.3]).sample(2000, 5, measure="historical", spot=[10.0, 20.0], seed=2)
    short = nsf.var_es(scen, 0.9, positions=[0.0, -1.0], horizon=3 / 252, n_boot=50)
    pnl = -(scen.prices[:, 3, 1] - 20.0)
    torch.testing.assert_close(short.pnl, pnl.double())
    m = math.ceil(2000 * 0.1)
    assert float(short.var[0]) == float(torch.sort(-pnl, descending=True).values[m - 1])


def test_risk_bad_arguments():
    rn = nsf.GBM(0.2).sample(100, 5, seed=0)
    hist = nsf.GBM(0.2).sample(100, 5, seed=0, measure="historical")
    cases = [
        (lambda: nsf.var_es(rn), "historical"),
        (lambda: nsf.var_es(hist, 1.5), "levels must be"),
        (lambda: nsf.var_es(hist, horizon=0.5), "horizon"),
        (lambda: nsf.var_es(hist, positions=[1.0, 2.0]), "positions"),
        (lambda: nsf.var_es(hist, n_boot=2), "n_boot"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as exc:
            fn()
        assert "\n" not in str(exc.value)
    assert nsf.var_es(rn, allow_risk_neutral=True, n_boot=20).var.shape == (2,)
