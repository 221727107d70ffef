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
        idx = [self._index(t) for t in ts]
        if all(b == a + 1 for a, b in zip(idx[:-1], idx[1:])):
            return self.incr[idx[0] : idx[-1]]
        return torch.stack([self.w[b] - self.w[a] for a, b in zip(idx[:-1], idx[1:])])


@pytest.fixture
def replay():
    """Factory: replay(grid, n_paths, noise, dtype, seed) -> ReplayBrownian with N(0, dt) draws."""

    def make(grid, n_paths, noise, dtype=torch.float64, seed=0):
        gen = torch.Generator().manual_seed(seed)
        dt = (grid[1:] - grid[:-1]).to(dtype)
        z = torch.randn(len(grid) - 1, n_paths, noise, generator=gen, dtype=dtype)
        return ReplayBrownian(grid.to(dtype), z * dt.sqrt()[:, None, None])

    return make
