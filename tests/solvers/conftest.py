"""Fixtures for the solver tests: a Brownian motion that replays given grid increments."""

from __future__ import annotations

import pytest
import torch


class ReplayBrownian:
    """W on a fixed grid from precomputed increments; answers bm(s, t) and bm.increments(ts).

    Both neuralsde_fin and torchsde accept it, so peers are compared on identical noise.
    """

    def __init__(self, grid: torch.Tensor, increments: torch.Tensor) -> None:
        self.grid = grid
        zero = torch.zeros_like(increments[:1])
        self.w = torch.cat([zero, increments.cumsum(0)])
        self.incr = increments
        self.shape = tuple(increments.shape[1:])
        self.dtype = increments.dtype
        self.device = increments.device
        self.levy_area_approximation = "none"  # torchsde reads this

    def _index(self, t) -> int:
        t = torch.as_tensor(t, dtype=self.grid.dtype)
        i = int(torch.argmin((self.grid - t).abs()))
        if abs(float(self.grid[i] - t)) > 1e-9:
            raise KeyError(f"time {float(t)} is not on the replay grid")
        return i

    def __call__(self, s, t=None):
        if t is None:
            s, t = self.grid[0], s
        i, j = self._index(s), self._index(t)
        if j == i + 1:
            return self.incr[i]
        return self.w[j] - self.w[i]

    def increments(self, ts: torch.Tensor) -> torch.Tensor:
        ts = torch.as_tensor(ts, dtype=self.grid.dtype)
        idx = torch.searchsorted(self.grid, ts).clamp(max=len(self.grid) - 1)
        lower = (idx - 1).clamp(min=0)
        closer = (self.grid[lower] - ts).abs() < (self.grid[idx] - ts).abs()
        idx = torch.where(closer, lower, idx)
        if float((self.grid[idx] - ts).abs().max()) > 1e-9:
            raise KeyError("a time is not on the replay grid")
        return self.w[idx[1:]] - self.w[idx[:-1]]


@pytest.fixture
def replay():
    """Factory: replay(grid, n_paths, noise, dtype, seed) -> ReplayBrownian with N(0, dt) draws."""

    def make(grid, n_paths, noise, dtype=torch.float64, seed=0):
        gen = torch.Generator().manual_seed(seed)
        dt = (grid[1:] - grid[:-1]).to(dtype)
        z = torch.randn(len(grid) - 1, n_paths, noise, generator=gen, dtype=dtype)
        return ReplayBrownian(grid.to(dtype), z * dt.sqrt()[:, None, None])

    make.from_increments = ReplayBrownian  # replay(...) or replay.from_increments(grid, incr)
    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tests are small, and the machine's cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class MLPSDE(torch.nn.Module):
    """A small torchsde-protocol SDE written the ordinary way (t concatenated to y)."""

    def __init__(self, d, m, noise_type="general", sde_type="stratonovich", width=16):
        super().__init__()
        self.noise_type, self.sde_type, self.d, self.m = noise_type, sde_type, d, m
        gout = {"diagonal": d, "scalar": d, "general": d * m, "additive": d * m}[noise_type]
        self.fn = torch.nn.Sequential(
            torch.nn.Linear(d + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, d)
        )
        self.gn = torch.nn.Sequential(
            torch.nn.Linear(d + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, gout)
        )
        if noise_type == "additive":
            self.gn = torch.nn.Linear(1, gout)

    def _in(self, t, y):
        return torch.cat([y, t.expand(y.shape[0], 1)], 1)

    def f(self, t, y):
        return self.fn(self._in(t, y))

    def g(self, t, y):
        if self.noise_type == "additive":
            return self.gn(t.reshape(1, 1)).expand(y.shape[0], -1).view(-1, self.d, self.m)
        out = self.gn(self._in(t, y))
        if self.noise_type == "diagonal":
            return out
        if self.noise_type == "scalar":
            return out.unsqueeze(-1)
        return out.view(-1, self.d, self.m)


@pytest.fixture
def mlp_sde():
    """Factory: mlp_sde(d, m, noise_type, sde_type) -> float64 MLPSDE with seeded weights."""

    def make(d, m, noise_type="general", sde_type="stratonovich", seed=0):
        torch.manual_seed(seed)
        return MLPSDE(d, m, noise_type, sde_type).double()

    return make
