"""Scenario files: streamed writing equals in-memory writing, streamed pricing equals in-memory
pricing, and every file the package writes takes the umask's mode."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin import _scenario_files


@pytest.fixture
def small_groups(monkeypatch):
    """Row groups of 16 paths: a few paths exercise every boundary of the streamed layout."""
    monkeypatch.setattr(_scenario_files, "ROW_GROUP_PATHS", 16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(2)
    m = nsf.MarketModel(1, latent=3, width=16, return_scale=[0.012])
    with torch.no_grad():
        m.net.out_weight[1].mul_(20.0)
    return m


@pytest.mark.parametrize("measure", ["historical", "risk_neutral"])
def test_streamed_file_equals_the_in_memory_file(model, tmp_path, small_groups, measure):
    kw = dict(measure=measure, r=0.02, spot=100.0, seed=3, valuation_date="2020-01-02")
    model.sample(101, 12, **kw).to_parquet(tmp_path / "mem.parquet")
    for chunk in (7, 16, 200):
        nsf.sample_to_parquet(model, tmp_path / "s.parquet", 101, 12, chunk_size=chunk, **kw)
        assert (tmp_path / "s.parquet").read_bytes() == (tmp_path / "mem.parquet").read_bytes()
    back = nsf.Scenarios.from_parquet(tmp_path / "s.parquet")
    assert torch.equal(back.prices, model.sample(101, 12, **kw).prices)
    assert back.measure == measure and back.r == 0.02 and back.seed == 3
    chunks = list(nsf.Scenarios.iter_parquet(tmp_path / "s.parquet"))
    assert [c.n_paths for c in chunks] == [16] * 6 + [5]


def test_each_shard_equals_its_in_memory_file(model, tmp_path, small_groups):
    kw = dict(measure="risk_neutral", seed=4, valuation_date="2020-01-02")
    for r in range(3):
        nsf.sample_shard(model, 50, 6, out_dir=tmp_path / "d", rank=r, world_size=3,
                         chunk_size=9, **kw)
        lo, hi = nsf.shard_range(50, r, 3)
        shard = {"path_offset": lo, "n_paths_local": hi - lo, "n_paths_total": 50, "rank": r,
                 "world_size": 3}
        model.sample(hi - lo, 6, path_offset=lo, **kw).to_parquet(
            tmp_path / "m.parquet", path_offset=lo, extra_metadata=shard)
        assert ((tmp_path / "d" / f"part-{r}.parquet").read_bytes()
                == (tmp_path / "m.parquet").read_bytes())
    union = nsf.Scenarios.from_parquet(tmp_path / "d")
    assert torch.equal(union.prices, model.sample(50, 6, **kw).prices)


def test_streamed_prices_and_risk_equal_in_memory(model, tmp_path, small_groups):
    """The moments are merged row group by row group: the same price, SE and interval to float
    rounding, with the control variate, antithetic pairs and a path-dependent payoff."""
    kw = dict(measure="risk_neutral", r=0.03, q=0.01, spot=100.0, seed=5, antithetic=True,
              dtype=torch.float64)
    scen = model.sample(200, 63, **kw)
    nsf.sample_to_parquet(model, tmp_path / "rn.parquet", 200, 63, chunk_size=50, **kw)
    opts = [nsf.EuropeanCall(torch.tensor([95.0, 100.0, 105.0]), 0.25),
            nsf.AsianCall(100.0, 0.25), nsf.EuropeanPut(100.0, 25 / 252)]
    for mem, disk in zip(nsf.price(scen, opts), nsf.price(str(tmp_path / "rn.parquet"), opts)):
        for a, b in ((mem.price, disk.price), (mem.stderr, disk.stderr),
                     (mem.stderr_plain, disk.stderr_plain)):
            torch.testing.assert_close(torch.as_tensor(b), torch.as_tensor(a), rtol=1e-12,
                                       atol=1e-12)
        assert mem.n_paths == disk.n_paths == 200
    euro = [nsf.EuropeanCall(100.0, 21 / 252), nsf.EuropeanPut(90.0, 0.25)]  # 3 columns read
    for mem, disk in zip(nsf.price(scen, euro), nsf.price(tmp_path / "rn.parquet", euro)):
        assert abs(mem.price - disk.price) < 1e-12 and abs(mem.stderr - disk.stderr) < 1e-12
    hist = dict(measure="historical", spot=100.0, seed=6, dtype=torch.float64)
    nsf.sample_to_parquet(model, tmp_path / "h.parquet", 300, 21, chunk_size=64, **hist)
    a = nsf.var_es(model.sample(300, 21, **hist), 0.99)
    b = nsf.var_es(tmp_path / "h.parquet", 0.99)
    assert torch.equal(a.pnl, b.pnl) and torch.equal(a.var, b.var) and torch.equal(a.es, b.es)
    assert torch.equal(a.var_ci, b.var_ci)
    c = nsf.var_es(tmp_path / "h.parquet", 0.99, ci_method="asymptotic")
    assert torch.equal(c.var, a.var) and bool((c.es_ci[:, 0] < c.es).all())


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(model, tmp_path, umask):
    old = os.umask(umask)
    try:
        scen = model.sample(8, 5, seed=1)
        files = [tmp_path / "m.pt", tmp_path / "s.parquet", tmp_path / "t.parquet",
                 tmp_path / "s.csv"]
        model.save(files[0])
        scen.to_parquet(files[1])
        nsf.sample_to_parquet(model, files[2], 8, 5, seed=1)
        scen.to_csv(files[3])
        nsf.write_report(tmp_path / "rep", None, {})
        files.append(tmp_path / "rep" / "report.md")
        for f in files:
            assert _mode(f) == 0o666 & ~umask, f
    finally:
        os.umask(old)
