"""Counter-based normals and uniforms: distribution, independence, purity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from neuralsde_fin._brownian import counter_normal, counter_uniform
from neuralsde_fin._brownian._counter import (
    _mix,
    _mix_int,
    absorb,
    normal_pairs_stream,
    seed_state,
)

_MASK = (1 << 64) - 1


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops: one thread avoids OpenMP barrier stalls on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _splitmix64_reference(state: int) -> int:
    """Textbook SplitMix64 ``next()`` on Python ints: output for the incremented state."""
    z = (state + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def test_mix_matches_splitmix64_reference():
    for s in [0, 1, 12345, 2**63 + 7]:
        assert _mix_int(s + 0x9E3779B97F4A7C15) & _MASK == _splitmix64_reference(s)
    xs = [0, 1, -1, 2**63 - 1, -(2**63), 1234567890123456789]
    assert _mix(torch.tensor(xs)).tolist() == [_mix_int(x) for x in xs]
    # known first output of SplitMix64 seeded with 0
    assert _splitmix64_reference(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normals_ks_and_moments(dtype):
    n = 400_000
    z = counter_normal(0, torch.arange(n), dtype=dtype)
    assert z.dtype == dtype and z.shape == (n,)
    p = stats.kstest(z.double().numpy(), "norm").pvalue
    se_mean, se_var = 1 / math.sqrt(n), math.sqrt(2 / n)
    print(f"KS p={p:.3g} mean={z.mean():.2e} (se {se_mean:.1e})")
    print(f"var={z.var():.5f} (se {se_var:.1e})")
    assert p > 0.01
    assert abs(z.mean().item()) < 4 * se_mean
    assert abs(z.var().item() - 1) < 4 * se_var
    # fourth moment = 3, se = sqrt((105 - 9) / n)
    assert abs((z.double() ** 4).mean().item() - 3) < 4 * math.sqrt(96 / n)


def test_neighbouring_keys_and_seeds_uncorrelated():
    n = 200_000
    se = 1 / math.sqrt(n)
    a = counter_normal(7, torch.arange(2 * n)).double()
    b = counter_normal(8, torch.arange(2 * n)).double()
    c = counter_normal(7, 1, torch.arange(2 * n)).double()
    pairs = {
        "consecutive keys": (a[:-1], a[1:]),
        "Box-Muller partners (2j, 2j+1)": (a[0::2], a[1::2]),
        "partners of neighbouring pairs (2j+1, 2j+2)": (a[1:-1:2], a[2::2]),
        "seed 7 vs seed 8": (a, b),
        "extra leading key": (a, c),
        "squares of partners": (a[0::2] ** 2, a[1::2] ** 2),
    }
    for name, (x, y) in pairs.items():
        r = float(np.corrcoef(x.numpy(), y.numpy())[0, 1])
        print(f"{name}: corr={r:.2e}, 4 se={4 * se * math.sqrt(len(a) / len(x)):.2e}")
        assert abs(r) < 4 * se * math.sqrt(len(a) / len(x))


def test_multi_key_lattice_ks():
    # neighbouring counters along every key axis of a 3-d key lattice
    i = torch.arange(64).view(64, 1, 1)
    j = torch.arange(64).view(1, 64, 1)
    k = torch.arange(32).view(1, 1, 32)
    z = counter_normal(3, i, j, k)
    assert z.shape == (64, 64, 32)
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 0.01
    for dim in range(3):
        x, y = z.narrow(dim, 0, z.shape[dim] - 1), z.narrow(dim, 1, z.shape[dim] - 1)
        r = float(np.corrcoef(x.flatten().numpy(), y.flatten().numpy())[0, 1])
        assert abs(r) < 4 / math.sqrt(x.numel()), (dim, r)


def test_pure_function_of_keys():
    keys = torch.arange(1000)
    full = counter_normal(5, 2, keys)
    # any subset, any order, any batch, scalar keys
    perm = torch.randperm(1000)
    assert torch.equal(counter_normal(5, 2, keys[perm]), full[perm])
    assert torch.equal(counter_normal(5, 2, keys[10:17]), full[10:17])
    assert counter_normal(5, 2, 123).item() == full[123].item()
    assert counter_normal(5, torch.tensor(2), keys[3:4]).item() == full[3].item()
    # broadcasting equals the explicit product of keys
    grid = counter_normal(5, torch.arange(3).view(3, 1), torch.arange(4).view(1, 4))
    for a in range(3):
        assert torch.equal(grid[a], counter_normal(5, a, torch.arange(4)))
    assert not torch.equal(counter_normal(6, 2, keys), full)
    # float32 and float64 agree to float32 rounding
    f64 = counter_normal(5, 2, keys, dtype=torch.float64)
    assert (f64 - full.double()).abs().max() < 1e-5


def test_pair_stream_equals_counter_normal():
    states = torch.tensor([[absorb(absorb(seed_state(3), 11), k)] for k in range(5)])
    for n in (1, 6, 7):
        fast = normal_pairs_stream(states, n, torch.float64)
        rows = torch.arange(5).view(5, 1)
        ref = counter_normal(3, 11, rows, torch.arange(n), dtype=torch.float64)
        assert torch.equal(fast, ref)


def test_uniform_range_and_ks():
    for dtype in (torch.float32, torch.float64):
        u = counter_uniform(1, torch.arange(200_000), dtype=dtype)
        assert u.dtype == dtype and 0 < u.min() and u.max() < 1
        assert stats.kstest(u.double().numpy(), "uniform").pvalue > 0.01
    u32 = counter_uniform(1, torch.arange(1000))
    u64 = counter_uniform(1, torch.arange(1000), dtype=torch.float64)
    assert (u32.double() - u64).abs().max() < 2**-23


def test_arguments_validated():
    with pytest.raises(ValueError, match="keys"):
        counter_normal(0)
    with pytest.raises(ValueError, match="keys\\[0\\]"):
        counter_normal(0, torch.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        counter_normal(0, 1, dtype=torch.int64)
