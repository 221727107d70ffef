"""Data-parallel calibration and sharded sampling on 2 gloo processes (CPU).

The processes are spawned with torch.multiprocessing and given the environment torchrun sets
(see ``_dist_workers``); the package detects it by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import neuralsde_fin as nsf
from neuralsde_fin._calibrate._losses import get_loss
from neuralsde_fin._calibrate._train import _loss_and_grads

sys.path.insert(0, str(Path(__file__).parent))  # spawned children import the workers by name
import _dist_workers as W  # noqa: E402

pytestmark = pytest.mark.distributed


def test_shard_range_partitions() -> None:
    for n in (0, 1, 7, 8, 100):
        for world in (1, 2, 3, 8):
            ranges = [nsf.shard_range(n, r, world) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [hi - lo for lo, hi in ranges]
            assert max(sizes) - min(sizes) <= 1
    assert nsf.shard_range(10, 1, 3, multiple=2) == (4, 8)
    with pytest.raises(ValueError, match="rank"):
        nsf.shard_range(10, 3, 3)


def test_sampling_shards_union_equals_single_process(tmp_path: Path) -> None:
    """2 ranks write part-0/part-1.parquet; their union is the 1-process sample bit for bit."""
    model = W.tiny_model()
    model_path = tmp_path / "model.pt"
    model.save(model_path)
    n_paths, horizon = 301, 12  # 151 and 150 paths per rank, sampled in chunks of 50
    cases = {
        "hist": dict(seed=11, chunk_size=50),
        "rn": dict(seed=11, measure="risk_neutral", r=0.03, q=0.01, spot=[100.0, 50.0],
                   chunk_size=50, dtype=torch.float64),
    }
    for name, opts in cases.items():
        W.run(W.sample_worker, (str(model_path), str(tmp_path / name), n_paths, horizon, opts))
        parts = sorted(p.name for p in (tmp_path / name).iterdir())
        assert parts == ["part-0.parquet", "part-1.parquet"]
        single = nsf.load_model(model_path).sample(n_paths, horizon, **opts)
        union = nsf.combine_shards(tmp_path / name)
        assert union.prices.dtype == single.prices.dtype
        assert torch.equal(union.prices, single.prices)
        assert torch.equal(union.times, single.times)
        assert (union.measure, union.r, union.q, union.seed) == (
            single.measure, single.r, single.q, single.seed)
        # the shard files carry the global path ids; from_parquet of the folder is the union
        one = nsf.Scenarios.from_parquet(tmp_path / name / "part-1.parquet")
        assert torch.equal(one.prices, single.prices[151:])
        assert torch.equal(nsf.Scenarios.from_parquet(tmp_path / name).prices, single.prices)


def test_combine_shards_rejects_incomplete_or_mixed(tmp_path: Path) -> None:
    model = W.tiny_model()
    for r in range(3):
        nsf.sample_shard(model, 30, 4, out_dir=tmp_path / "a", rank=r, world_size=3, seed=1,
                         chunk_size=8)
    full = model.sample(30, 4, seed=1, chunk_size=8).prices
    assert torch.equal(nsf.combine_shards(tmp_path / "a").prices, full)
    for r in range(3):  # antithetic pairs stay whole: shards on even chunk boundaries
        nsf.sample_shard(model, 30, 4, out_dir=tmp_path / "anti", rank=r, world_size=3, seed=1,
                         chunk_size=8, antithetic=True, measure="risk_neutral")
    anti = nsf.combine_shards(tmp_path / "anti")
    assert anti.antithetic
    single = model.sample(30, 4, seed=1, chunk_size=8, antithetic=True, measure="risk_neutral")
    assert torch.equal(anti.prices, single.prices)
    with pytest.raises(ValueError, match="even n_paths"):
        nsf.sample_shard(model, 31, 4, rank=0, world_size=3, antithetic=True)
    (tmp_path / "a" / "part-1.parquet").unlink()
    with pytest.raises(ValueError, match="ranks"):
        nsf.combine_shards(tmp_path / "a")
    nsf.sample_shard(model, 30, 4, out_dir=tmp_path / "a", rank=1, world_size=3, seed=2,
                     chunk_size=8)
    with pytest.raises(ValueError, match="seed"):
        nsf.combine_shards(tmp_path / "a")
    # shards need not be whole chunks: any n_paths, any chunk size
    for r in range(3):
        nsf.sample_shard(model, 20, 4, out_dir=tmp_path / "c", rank=r, world_size=3,
                         chunk_size=10, seed=1)
    assert torch.equal(nsf.combine_shards(tmp_path / "c").prices,
                       model.sample(20, 4, seed=1).prices)
    # every model shares the sampling protocol: classical models shard exactly too
    gbm = nsf.GBM(0.2)
    parts = [nsf.sample_shard(gbm, 10, 4, rank=r, world_size=2, seed=3, chunk_size=5).prices
             for r in range(2)]
    assert torch.equal(torch.cat(parts), gbm.sample(10, 4, seed=3).prices)


@pytest.mark.parametrize("method", ["sigw1", "sigkernel"])
def test_first_step_gradients_two_ranks_match_one_rank(tmp_path: Path, method: str) -> None:
    """2 ranks x batch b give the gradient of 1 rank x batch 2b, to float64 summation order.

    The generated paths are asserted identical bit for bit (each rank simulates global paths
    [r b, (r + 1) b) with the counter-based noise), so the loss and dL/dpaths are identical and
    the gradients differ only by the order of summation of the per-path, per-step terms:
    reassociating a sum of N terms moves it by at most 2 gamma_N sum|t|, gamma_N = N u / (1 - N u),
    u = 2^-53; here N = 2b x window (paths x steps) and sum|t| is taken as the sum over paths
    of the absolute per-path contributions |g_i| (computed below).
    """
    b = 4
    W.run(W.grad_worker, (method, 2 * b, str(tmp_path)))
    r0 = torch.load(tmp_path / "grads-0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "grads-1.pt", weights_only=True)

    model = W.tiny_model(torch.float64)
    loss = get_loss(method)
    params = [p for p in model.parameters() if p.requires_grad]
    real = W.tiny_real(2 * b)
    value, ok = _loss_and_grads(model, loss, real, params, batch=2 * b, seed=7, step=0,
                                adjoint=False)
    assert ok and r0["ok"] and r1["ok"]
    g_single = [W._grad(p) for p in params]
    fake = model.simulate_normalised(2 * b, seed=7, step=0)
    assert torch.equal(r0["fake"], fake.detach()) and torch.equal(r1["fake"], fake.detach())
    assert torch.equal(r0["loss"], value.detach()) and torch.equal(r1["loss"], value.detach())
    # every rank holds the same summed gradient (identical weights after the step)
    for a, c in zip(r0["grads"], r1["grads"]):
        assert torch.equal(a, c)
    # per-path contributions g_i = (dx_i/dtheta)^T dL/dx_i, for the rounding scale
    dl_dx = torch.autograd.grad(loss(fake, real), fake, retain_graph=True)[0]
    abs_sum = [torch.zeros_like(p) for p in params]
    for i in range(2 * b):
        gi = torch.autograd.grad((fake[i] * dl_dx[i]).sum(), params, retain_graph=True,
                                 allow_unused=True)
        for s, g in zip(abs_sum, gi):
            if g is not None:
                s.add_(g.abs())
    u = 2.0**-53
    n_terms = 2 * b * model.window
    gamma = n_terms * u / (1 - n_terms * u)
    worst = 0.0
    for g1, g2, s in zip(g_single, r0["grads"], abs_sum):
        if g1.numel() == 0:
            continue
        diff = (g1 - g2).abs()
        tol = 2 * gamma * s + 4 * u * g1.abs()  # + the final rounding of each entry
        worst = max(worst, float((diff / tol.clamp_min(1e-300)).max()))
        assert bool((diff <= tol).all()), (diff.max(), tol.min())
    print(f"{method}: max |g_2ranks - g_1rank| / tolerance = {worst:.3g}")


def test_calibrate_two_ranks_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """nsf.calibrate under 2 ranks: interrupted after step 3 (checkpoint at step 2) and resumed,
    it reaches the weights of an uninterrupted 2-rank run exactly; both ranks agree."""
    W.run(W.calibrate_worker, (str(tmp_path), "run"))
    W.run(W.calibrate_worker, (str(tmp_path), "resume"))
    w0 = {n: torch.load(tmp_path / f"{n}-0.pt", weights_only=True) for n in ("full", "resumed")}
    w1 = {n: torch.load(tmp_path / f"{n}-1.pt", weights_only=True) for n in ("full", "resumed")}
    for k, v in w0["full"].items():
        assert torch.equal(v, w0["resumed"][k]), k
        assert torch.equal(v, w1["full"][k]) and torch.equal(v, w1["resumed"][k]), k
    assert (tmp_path / "full" / "checkpoint.pt").exists()
    assert (tmp_path / "full" / "model.pt").exists()
    saved = nsf.load_model(tmp_path / "full" / "model.pt")
    for k, v in saved.state_dict().items():
        assert torch.equal(v, w0["full"][k].to(v.dtype)), k
    # the 2-rank run is the 1-rank run up to rounding: same data, same global batch
    single = nsf.calibrate(W.tiny_prices(), checkpoint_dir=None, **W.CAL)
    for k, v in single.state_dict().items():
        assert torch.allclose(v, w0["full"][k], rtol=1e-4, atol=1e-5), k


def test_write_samples_file_or_directory(tmp_path: Path) -> None:
    """The CLI's entry point: a .parquet file (one process) or a directory of shards."""
    from neuralsde_fin._distributed import write_samples

    model = W.tiny_model()
    f, n1 = write_samples(model, tmp_path / "one.parquet", 40, 5, seed=4, chunk_size=16)
    d, n2 = write_samples(model, tmp_path / "dir", 40, 5, seed=4, chunk_size=16)
    assert n1 == n2 == 40
    assert Path(d) == tmp_path / "dir" / "part-0.parquet"
    a, b = nsf.Scenarios.from_parquet(f), nsf.Scenarios.from_parquet(tmp_path / "dir")
    assert torch.equal(a.prices, b.prices)
    assert torch.equal(a.prices, model.sample(40, 5, seed=4, chunk_size=16).prices)
