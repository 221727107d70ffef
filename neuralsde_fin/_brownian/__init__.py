"""Brownian motion: counter-based normals and the stateless virtual Brownian tree."""

from __future__ import annotations

from neuralsde_fin._brownian._counter import counter_normal, counter_uniform, derive_seed
from neuralsde_fin._brownian._tree import VirtualBrownianTree

__all__ = ["VirtualBrownianTree", "counter_normal", "counter_uniform", "derive_seed"]
