"""The Brownian motion of a model on a uniform grid: one virtual tree for every horizon and step.

A model samples on grids t_k = k * dt for many horizons and step sizes. :class:`StepBrownian`
gives them all the same Brownian paths: W is the :class:`VirtualBrownianTree` on
[0, 2^UNITS_LOG2] base units (trading days for the market model) with 2^LEAVES_LOG2 leaves per
unit, keyed by (seed, path id). Every grid of step 2^-l units (l <= LEAVES_LOG2) lies on tree
nodes, so

* a longer horizon extends the same paths (the first steps do not change);
* halving the step refines the same paths (W at the coarse times is unchanged): strong
  convergence of a solve can be checked on one path;
* path i is the same whatever the number of paths, the chunking, the ranks or the threads;

and other steps fall between nodes (the tree's bridge inside a leaf; still one Brownian path).
Querying a daily grid of H steps computes about H + 2 log2(H) + UNITS_LOG2 normals per
(path, channel): the walk from the root to the grid is shared.

The solver sees the increments in its own time unit: with ``scale`` model time units per base
unit (the market model's tau = day / window), dW_model = dW_base * sqrt(scale).

References:
    Li, Wong, Chen, Duvenaud (2020), "Scalable Gradients for Stochastic Differential
    Equations" (the virtual Brownian tree).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from neuralsde_fin._brownian._tree import VirtualBrownianTree

__all__ = ["LEAVES_LOG2", "UNITS_LOG2", "StepBrownian"]

#: The tree spans 2^UNITS_LOG2 base units (2^20 trading days: about 4,000 years).
UNITS_LOG2 = 20
#: Leaves per base unit: steps down to 2^-LEAVES_LOG2 units are tree nodes.
LEAVES_LOG2 = 10


class StepBrownian:
    """Increments of a horizon-independent Brownian motion on a uniform solver grid.

    Args:
        n_paths: paths in this batch (global ids ``path_offset ..``).
        channels: Brownian channels.
        seed: the tree's seed (a stream per purpose: ``derive_seed``).
        step: base units per solver step (1 for daily steps, 1/8 for an eighth of a day).
        scale: solver time units per base unit (increments scale by sqrt(scale)).
        path_offset: global id of the first path.
        antithetic: paths 2j and 2j + 1 get opposite increments of the tree's path j.
        dtype: float32 or float64.
        device: device of the increments.

    Shape:
        ``increments(grid)``: (len(grid) - 1, n_paths, channels).
    """

    #: Read by torchsde's solvers (which then accept this object as their ``bm``).
    levy_area_approximation = "none"

    def __init__(
        self,
        n_paths: int,
        channels: int,
        *,
        seed: int,
        step: float,
        scale: float = 1.0,
        path_offset: int = 0,
        antithetic: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.shape = (n_paths, channels)
        self.dtype, self.step, self.scale = dtype, float(step), float(scale)
        self.dt = self.step * self.scale  # solver time per step
        self.device = torch.device("cpu" if device is None else device)
        if antithetic:
            first, last = path_offset // 2, (path_offset + n_paths - 1) // 2
            ids = torch.arange(path_offset, path_offset + n_paths, device=self.device)
            self._index = ids // 2 - first
            self._sign = (1 - 2 * (ids % 2)).to(dtype)[:, None]
            n_tree, offset = last - first + 1, first
        else:
            self._index = None
            n_tree, offset = n_paths, path_offset
        self.tree = VirtualBrownianTree(
            0.0, float(2**UNITS_LOG2), (n_tree, channels), seed=seed, tol=2.0**-LEAVES_LOG2,
            dtype=dtype, device=self.device, path_offset=offset,
        )
        self._root = math.sqrt(self.scale)

    def _grid_index(self, t: Tensor | float) -> int:
        return round(float(t) / self.dt)

    def increments_between(self, k0: int, k1: int, *, every: int = 1) -> Tensor:
        """Increments between grid points k0, k0 + every, ..., k1 (k1 - k0 a multiple of
        ``every``), shape ((k1 - k0) / every, n_paths, channels)."""
        units = np.arange(k0, k1 + 1, every, dtype=np.float64) * self.step
        dw = self.tree.increments(units) * self._root
        if self._index is not None:
            dw = dw.index_select(1, self._index) * self._sign
        return dw

    def increments(self, grid: Tensor) -> Tensor:
        """Increments over a contiguous piece of the uniform solver grid (times k * dt)."""
        k0 = self._grid_index(grid[0])
        return self.increments_between(k0, k0 + len(grid) - 1)

    def __call__(self, s: Tensor | float, t: Tensor | float | None = None) -> Tensor:
        """W(t) - W(s) at grid times (W(s) - W(0) with one argument)."""
        if t is None:
            s, t = 0.0, s
        k0, k1 = self._grid_index(s), self._grid_index(t)
        if k1 == k0:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        if k1 < k0:
            return -self(t, s)
        return self.increments_between(k0, k1, every=k1 - k0)[0]
