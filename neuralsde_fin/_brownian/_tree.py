"""The stateless virtual Brownian tree: W reconstructed from the seed alone, level by level."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuralsde_fin._brownian import _kernels
from neuralsde_fin._brownian._counter import absorb, key_states_np, seed_state
from neuralsde_fin._validate import check_int

__all__ = ["VirtualBrownianTree"]

#: Leaves of a ``tol=None`` tree first queried at points (not on a grid).
DEFAULT_LEAVES = 4096
#: Most leaves allowed (node ids stay far inside int64).
MAX_LEAVES = 2**40
#: Key tags separating the normals of tree nodes from those of sub-leaf bridge samples.
TAG_NODE = 0
TAG_BRIDGE = 1
#: Single queries (``bm(s, t)`` at nodes) are served from cached blocks of this many leaves,
CACHE_LEAVES = 64
#: at most this many blocks,
CACHE_BLOCKS = 2
#: each of at most this many bytes (fewer leaves per block for very wide trees).
CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Plan:
    """The node table of a query, independent of the seed.

    Rows 0 (W(t0) = 0) and 1 .. n_rows - 1, filled level by level: the rows ``start:stop`` of
    one level are ``ca * W[ra] + cb * W[rb] + sig * N(tag, key)``; per-row arrays are indexed
    by ``row - 1``.
    """

    n_rows: int
    bounds: tuple[tuple[int, int], ...]  # (start, stop) rows of each level, in order
    ra: torch.Tensor  # int64 (n_rows - 1, 1)
    rb: torch.Tensor  # int64 (n_rows - 1, 1)
    coef: np.ndarray  # float64 (3, n_rows - 1): ca, cb, sig
    tags: np.ndarray  # int64 (n_rows - 1,)
    keys: np.ndarray  # int64 (n_rows - 1,): node ids (tag 0) or float64 bits of the time
    rows: torch.Tensor  # int64 (n_queries,): row of each query time


def _descend(targets: np.ndarray, n_leaves: int) -> list[tuple[np.ndarray, ...]]:
    """Intervals visited, depth by depth, by walks from the root to each target node.

    The tree over the integer leaves [0, M] splits [a, b] (b - a >= 2) at m = (a + b) // 2; node
    id 1 is the root [0, M] and the children of id are 2 id and 2 id + 1 (heap numbering). Every
    integer 0 < p < M is the split point of exactly one interval.
    """
    depth_levels = []
    a = np.zeros_like(targets)
    b = np.full_like(targets, n_leaves)
    ids = np.ones_like(targets)
    while targets.size:
        m = (a + b) // 2
        uniq, first = np.unique(ids, return_index=True)
        depth_levels.append((uniq, a[first], m[first], b[first]))
        keep = m != targets
        targets, a, b, ids, m = targets[keep], a[keep], b[keep], ids[keep], m[keep]
        left = targets < m
        b = np.where(left, m, b)
        a = np.where(left, a, m)
        ids = 2 * ids + (~left)
    return depth_levels


def _build_plan(x: np.ndarray, n_leaves: int, snap: float, span: float) -> _Plan:
    """Plan the node table for query positions ``x`` (in leaf units, inside [0, M])."""
    nearest = np.rint(x)
    on_node = np.abs(x - nearest) <= snap
    node_q = nearest[on_node].astype(np.int64)
    xb = x[~on_node]
    leaf = np.clip(np.floor(xb), 0, n_leaves - 1).astype(np.int64)
    needed = np.unique(np.concatenate([node_q, leaf, leaf + 1]))
    needed = needed[(needed > 0) & (needed < n_leaves)]

    h = span / n_leaves
    # row 0: W(t0) = 0; row 1: W(t1) = sqrt(t1 - t0) N(node 0)
    positions = [np.array([0, n_leaves], dtype=np.int64)]
    raw = [(1, np.array([0]), np.array([0]), np.array([0.0]), np.array([0.0]),
            np.array([math.sqrt(span)]), TAG_NODE, np.array([0], dtype=np.int64))]
    start = 2
    for ids, a, m, b in _descend(needed, n_leaves):
        w = (b - a).astype(np.float64)
        raw.append((start, a, b, (b - m) / w, (m - a) / w, np.sqrt((m - a) * (b - m) / w * h),
                    TAG_NODE, ids))
        positions.append(m)
        start += len(m)
    all_pos = np.concatenate(positions)
    order = np.argsort(all_pos, kind="stable")
    sorted_pos = all_pos[order]

    def row_of(p: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_pos, p)]

    levels = []
    for st, a, b, ca, cb, sig, tag, keys in raw:
        ra = row_of(a) if st > 1 else a
        rb = row_of(b) if st > 1 else b
        levels.append((st, ra, rb, ca, cb, sig, tag, keys))
    rows = np.empty(len(x), dtype=np.int64)
    rows[on_node] = row_of(node_q)
    if xb.size:
        # Brownian bridge inside the leaf [k, k + 1] at fraction f, keyed by the position's bits
        f = xb - leaf
        levels.append((start, row_of(leaf), row_of(leaf + 1), 1.0 - f, f,
                       np.sqrt(f * (1.0 - f) * h), TAG_BRIDGE,
                       np.ascontiguousarray(xb, dtype=np.float64).view(np.int64)))
        rows[~on_node] = start + np.arange(len(xb))
        start += len(xb)
    bounds = tuple((lv[0], lv[0] + len(lv[1])) for lv in levels)

    def cat(i: int, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(lv[i], dtype=dtype) for lv in levels])

    return _Plan(
        n_rows=start,
        bounds=bounds,
        ra=torch.from_numpy(cat(1, np.int64)).view(-1, 1),
        rb=torch.from_numpy(cat(2, np.int64)).view(-1, 1),
        coef=np.stack([cat(3, np.float64), cat(4, np.float64), cat(5, np.float64)]),
        tags=np.concatenate([np.full(len(lv[1]), lv[6], dtype=np.int64) for lv in levels]),
        keys=cat(7, np.int64),
        rows=torch.from_numpy(rows),
    )


class _PlanCache:
    """A small LRU of plans keyed by the query positions (plans do not depend on the seed)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.store: OrderedDict[Any, _Plan] = OrderedDict()

    def get(self, x: np.ndarray, n_leaves: int, snap: float, span: float) -> _Plan:
        key = (n_leaves, snap, span, x.tobytes())
        plan = self.store.get(key)
        if plan is None:
            plan = _build_plan(x, n_leaves, snap, span)
            self.store[key] = plan
            if len(self.store) > self.size:
                self.store.popitem(last=False)
        else:
            self.store.move_to_end(key)
        return plan


_PLANS = _PlanCache()


def _as_float(name: str, v: Any) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(v.shape)}")
        v = v.item()
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {v!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _scalar_time(name: str, v: Any) -> Any:
    """A one-element time: a tensor is kept (its dtype sets the node snapping), else a float."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(v.shape)}")
        return v
    return _as_float(name, v)


class VirtualBrownianTree:
    r"""A Brownian motion on [t0, t1] reconstructed on demand from its seed: no stored path.

    W is defined by recursive Brownian-bridge splits of [t0, t1] into ``M`` leaves of width
    ``h = (t1 - t0) / M <= tol``: W(t0) = 0, W(t1) = sqrt(t1 - t0) N(0), and an interval
    [a, b] of the tree (integer leaf positions, b - a >= 2) is split at m = floor((a + b) / 2)
    with the exact conditional law

    .. math::

        W(m) = \frac{(b - m) W(a) + (m - a) W(b)}{b - a}
               + \sqrt{\frac{(m - a)(b - m)}{b - a} h}\; N(\mathrm{node}),

    which for power-of-two ``M`` is the midpoint rule (W(a) + W(b)) / 2 + sqrt((b - a) h / 4) N.
    N(node) = ``counter_normal(seed, 0, node_id, i * C + c)`` for path i and channel c (C =
    prod(shape[1:])), a pure function of (seed, node, path, channel): path i is the same whatever
    ``shape[0]``, values do not depend on which or how many queries are made, in which order, or
    on the device. The law is exact at the nodes t0 + k h. A time inside a leaf [a, b] gets the
    Brownian bridge W(t) = W(a) + f (W(b) - W(a)) + sqrt(f (1 - f) h) N', f = (t - a) / h, with
    N' keyed by the time's float64 bits; times within a few float ulps of a node are that node.
    Two query times in one leaf are therefore not jointly exact (the bridge error is of order
    sqrt(h)); any grid with spacing >= h is sampled exactly.

    Grid queries (``increments``) are planned on the host (the union of the walks from the
    root to every needed node) and computed level by level, one vectorised hash + Box-Muller +
    bridge update per depth for all nodes at once; a uniform grid whose spacing is a multiple
    of h costs one normal per grid step per (path, channel) when ``tol`` equals the spacing.

    Single queries at nodes (``bm(s, t)`` one step at a time, as torchsde's solvers and
    adjoints make them) are served from a small LRU cache of blocks of ``CACHE_LEAVES``
    consecutive nodes, each computed by one grid query, so that a step costs about one normal
    per (path, channel) instead of a walk from the root. The cache holds at most
    ``CACHE_BLOCKS`` blocks of at most ``CACHE_BYTES`` each and changes no value.

    Args:
        t0: Start time.
        t1: End time, > t0.
        shape: Shape of W(t): (n_paths, *channels); shape[0] indexes the paths.
        seed: Any int; with the times and the shape it fixes every value.
        tol: Leaf width bound; ``M = ceil((t1 - t0) / tol)`` leaves (rounded when within 1e-6
            of an integer, so ``tol = dt`` of a uniform grid puts every grid time on a node,
            one normal per step per (path, channel)). Default (None): chosen from the grid
            the tree is first asked for (``increments(ts)``: the smallest spacing of ``ts``),
            or ``(t1 - t0) / 4096`` if it is first queried at points. The tree is then fixed:
            every later query reads the same values, in any order; but two default trees
            first asked for different grids are different trees (pass ``tol`` to fix the
            structure in advance, e.g. to share paths across programs).
        dtype: float32 or float64. Node positions, weights and keys are always computed in
            float64/int64 on the host, so float64 trees are exact to float64 rounding.
        device: Device of the values.
        path_offset: Global id of the first path: row i of ``shape[0]`` is path
            ``path_offset + i`` of the seed's stream (a chunk or shard of a larger sample has
            exactly the values of those paths in the whole).

    Attributes:
        t0, t1, shape, seed, dtype, device: As given.
        n_leaves: The number M of leaves; ``tol``: the leaf width (t1 - t0) / M actually used.

    Shape:
        ``bm(t)`` and ``bm(s, t)``: ``shape``. ``bm.increments(ts)``: (len(ts) - 1, *shape).

    References:
        Li, Wong, Chen and Duvenaud (2020), "Scalable Gradients for Stochastic Differential
        Equations" (virtual Brownian tree); Kidger, Foster, Li and Lyons (2021), "Efficient and
        Accurate Gradients for Neural SDEs" (the Brownian Interval); Salmon et al. (2011),
        "Parallel random numbers: as easy as 1, 2, 3" (counter-based generators).
    """

    def __init__(
        self,
        t0: float,
        t1: float,
        shape: tuple[int, ...] | torch.Size | list[int] | int,
        *,
        seed: int = 0,
        tol: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        path_offset: int = 0,
    ) -> None:
        t0, t1 = _as_float("t0", t0), _as_float("t1", t1)
        if not t1 > t0:
            raise ValueError(f"t1 must be greater than t0, got t0={t0}, t1={t1}")
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be a tuple of positive ints, got {shape!r}") from None
        if len(shape) == 0 or any(s <= 0 for s in shape):
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        check_int("path_offset", path_offset, 0)
        span = t1 - t0
        self._span = span
        self.t0, self.t1, self.shape = t0, t1, shape
        self.seed = int(seed)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_leaves: int | None = None
        self.tol: float | None = None
        if tol is not None:
            self._set_leaves(_as_float("tol", tol))
        self._channels = math.prod(shape[1:])
        self._n_flat = shape[0] * self._channels
        self.path_offset = int(path_offset)
        # columns of the flat (path, channel) index: global k = (path_offset + i) C + c; the
        # table starts at the pair of the first one (its first `_lead` column is dropped)
        k0 = self.path_offset * self._channels
        self._lead = k0 & 1
        self._state = seed_state(self.seed)
        self._tag_states = np.array([absorb(self._state, tag) for tag in (TAG_NODE, TAG_BRIDGE)],
                                    dtype=np.int64)
        width = self._lead + self._n_flat
        self._n_pad = width + (width & 1)
        self._compiled = _kernels.use_compiled(self._n_flat, self.device, dtype)
        self._pairs = _kernels.pair_offsets(self._n_pad // 2, self.device, start=k0 >> 1)
        # leaves per cached block of single-query nodes: at most CACHE_LEAVES, and a block
        # of at most CACHE_BYTES (no cache when fewer than 4 leaves would fit)
        itemsize = torch.finfo(dtype).bits // 8
        fit = CACHE_BYTES // (self._n_pad * itemsize) - 1
        self._block_leaves = min(CACHE_LEAVES, fit) if fit >= 4 else 0
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    def __repr__(self) -> str:
        return (f"VirtualBrownianTree(t0={self.t0}, t1={self.t1}, shape={self.shape}, "
                f"seed={self.seed}, tol={self.tol}, dtype={self.dtype}, device={self.device}, "
                f"path_offset={self.path_offset})")

    def _set_leaves(self, tol: float) -> None:
        """Fix the leaf width: M = ceil((t1 - t0) / tol) leaves (rounded within 1e-6)."""
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        ratio = self._span / tol
        if ratio > MAX_LEAVES:
            least = self._span / MAX_LEAVES
            raise ValueError(f"tol must be >= (t1 - t0) / 2**40 = {least}, got {tol}")
        n_leaves = round(ratio)
        if abs(ratio - n_leaves) > 1e-6 * max(ratio, 1.0):
            n_leaves = math.ceil(ratio)
        self.n_leaves = max(n_leaves, 1)
        self.tol = self._span / self.n_leaves

    def _fix_leaves(self, ts: Any = None) -> None:
        """A ``tol=None`` tree takes its leaves from its first query: the smallest spacing of
        a grid (every time of a uniform grid is then a node), else DEFAULT_LEAVES."""
        if self.n_leaves is not None:
            return
        if ts is not None:
            t = np.asarray(ts.detach().cpu().double() if isinstance(ts, torch.Tensor) else ts,
                           dtype=np.float64).reshape(-1)
            gaps = np.diff(t)
            gaps = gaps[gaps > 0]
            if gaps.size and np.isfinite(gaps).all():
                self._set_leaves(max(float(gaps.min()), self._span / MAX_LEAVES))
                return
        self.n_leaves = DEFAULT_LEAVES
        self.tol = self._span / DEFAULT_LEAVES

    def _cols(self, row: torch.Tensor) -> torch.Tensor:
        """The (path, channel) values of a table row (drops the lead / padding columns)."""
        return row[self._lead : self._lead + self._n_flat]

    # ----------------------------------------------------------------------------- queries
    def _positions(self, ts: Any, name: str) -> tuple[np.ndarray, float]:
        """Leaf-unit positions of the query times (float64) and the node-snapping tolerance."""
        self._fix_leaves()
        eps = float(np.finfo(np.float64).eps)
        if isinstance(ts, float) or (isinstance(ts, torch.Tensor) and ts.numel() == 1):
            return self._position(ts, name, eps)
        if isinstance(ts, torch.Tensor):
            if ts.dtype.is_floating_point:
                eps = max(eps, float(torch.finfo(ts.dtype).eps))
            t = ts.detach().to("cpu", torch.float64).numpy().reshape(-1)
        else:
            t = np.asarray(ts, dtype=np.float64).reshape(-1)
        if not np.isfinite(t).all():
            raise ValueError(f"{name} must be finite, got {t.tolist()}")
        slack, snap = self._tolerances(eps)
        if t.min() < self.t0 - slack or t.max() > self.t1 + slack:
            bad = t[(t < self.t0 - slack) | (t > self.t1 + slack)][0]
            raise ValueError(f"{name} must lie in [t0, t1] = [{self.t0}, {self.t1}], got {bad}")
        x = np.clip((t - self.t0) / self._span * self.n_leaves, 0.0, float(self.n_leaves))
        return x, snap

    def _tolerances(self, eps: float) -> tuple[float, float]:
        """(slack of the [t0, t1] range check, node-snapping tolerance in leaf units)."""
        scale = max(abs(self.t0), abs(self.t1))
        snap = min(0.25, 8 * eps * self.n_leaves * max(1.0, scale / self._span))
        return 4 * eps * scale, snap

    def _position(
        self, ts: float | torch.Tensor, name: str, eps: float
    ) -> tuple[np.ndarray, float]:
        """:meth:`_positions` of one time in Python floats (a step query's hot path)."""
        if isinstance(ts, torch.Tensor):
            if ts.dtype.is_floating_point:
                eps = max(eps, float(torch.finfo(ts.dtype).eps))
            ts = float(ts.detach().reshape(()).to("cpu", torch.float64))
        if not math.isfinite(ts):
            raise ValueError(f"{name} must be finite, got {[ts]}")
        slack, snap = self._tolerances(eps)
        if ts < self.t0 - slack or ts > self.t1 + slack:
            raise ValueError(f"{name} must lie in [t0, t1] = [{self.t0}, {self.t1}], got {ts}")
        x = min(max((ts - self.t0) / self._span * self.n_leaves, 0.0), float(self.n_leaves))
        return np.array([x]), snap

    def _table(self, x: np.ndarray, snap: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The node table (rows, n_paths * C [+ 1 if odd]) and the row of each position."""
        plan = _PLANS.get(x, self.n_leaves, snap, self._span)
        dev, dtype = self.device, self.dtype
        table = torch.empty(plan.n_rows, self._n_pad, dtype=dtype, device=dev)
        table[0].zero_()
        states = torch.from_numpy(key_states_np(self._tag_states[plan.tags], plan.keys)).to(dev)
        ca, cb, sig = torch.from_numpy(plan.coef).to(dev, dtype).unsqueeze(2).unbind(0)
        ra, rb = plan.ra.to(dev), plan.rb.to(dev)
        for start, stop in plan.bounds:
            i, j = start - 1, stop - 1
            _kernels.fill_level(table, start, ra[i:j], rb[i:j], ca[i:j], cb[i:j], sig[i:j],
                                states[i:j], self._pairs, self._compiled)
        return table, plan.rows.to(dev)

    def _values(self, x: np.ndarray, snap: float) -> torch.Tensor:
        """W at positions ``x`` (leaf units): a (len(x), n_paths * C [+ 1 if odd]) tensor."""
        table, rows = self._table(x, snap)
        return table.index_select(0, rows)

    def __call__(self, s: Any, t: Any = None) -> torch.Tensor:
        """W(s) - W(t0) when called with one time; W(t) - W(s) when called with two.

        Args:
            s: A time in [t0, t1] (float or 0-d tensor).
            t: Optional second time in [t0, t1].

        Returns:
            A tensor of ``shape``.
        """
        if t is None:
            x, snap = self._positions(_scalar_time("t", s), "t")
            w = self._node_values(x, snap)
            if w is None:
                w = self._values(x, snap)
            return self._cols(w[0]).view(self.shape)
        x0, snap0 = self._positions(_scalar_time("s", s), "s")
        x1, snap1 = self._positions(_scalar_time("t", t), "t")
        x, snap = np.concatenate([x0, x1]), max(snap0, snap1)
        w = self._node_values(x, snap)
        if w is None:
            w = self._values(x, snap)
        return (self._cols(w[1]) - self._cols(w[0])).view(self.shape)

    # ------------------------------------------------------------ block cache of node values
    def _node_values(self, x: np.ndarray, snap: float) -> list[torch.Tensor] | None:
        """W at node positions ``x`` (one row each) from cached blocks; None if one is not a node.

        Queried one step at a time (``bm(s, t)``, as torchsde's solvers and adjoints do), each
        call would otherwise walk from the root, about 2 log2(M) normals per (path, channel).
        Instead the block of ``_block_leaves`` consecutive leaves around a node is computed
        in one grid query and kept (the least recently used of ``CACHE_BLOCKS`` blocks is
        dropped). The values are those of any other query, bit for bit: a node's value depends
        only on the seed and its position.
        """
        size = self._block_leaves
        if size == 0:
            return None
        nearest = np.rint(x)
        if np.any(np.abs(x - nearest) > snap):
            return None
        last = (self.n_leaves - 1) // size
        rows = []
        for p in nearest.astype(np.int64).tolist():
            k = min(p // size, last)
            rows.append(self._block(k)[p - k * size])
        return rows

    def _block(self, k: int) -> torch.Tensor:
        """W at the nodes k B .. min((k + 1) B, M) (B = ``_block_leaves``), cached (LRU)."""
        block = self._cache.get(k)
        if block is not None:
            self._cache.move_to_end(k)
            return block
        lo = k * self._block_leaves
        hi = min(lo + self._block_leaves, self.n_leaves)
        block = self._values(np.arange(lo, hi + 1, dtype=np.float64), 0.0)
        self._cache[k] = block
        if len(self._cache) > CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return block

    def increments(self, ts: Any) -> torch.Tensor:
        """All increments W(ts[k+1]) - W(ts[k]) of a grid, in one vectorised computation.

        Equal, to float rounding, to ``bm(ts[k], ts[k+1])`` and to the increments of any
        sub-grid call (the values at each time do not depend on the query).

        Args:
            ts: Increasing 1-D times in [t0, t1] (tensor or sequence), at least 2 of them.

        Returns:
            A tensor of increments.

        Shape:
            (len(ts) - 1, *shape).
        """
        if isinstance(ts, torch.Tensor) and ts.dim() != 1:
            raise ValueError(f"ts must be 1-D, got shape {tuple(ts.shape)}")
        try:
            self._fix_leaves(ts)
        except (TypeError, ValueError):
            pass  # bad times: _positions names the problem
        x, snap = self._positions(ts, "ts")
        if x.size < 2:
            raise ValueError(f"ts must hold at least 2 times, got {x.size}")
        if (np.diff(x) < 0).any():
            raise ValueError("ts must be non-decreasing")
        w = self._node_values(x, snap) if x.size == 2 else None  # one step: the block cache
        if w is not None:
            return (self._cols(w[1]) - self._cols(w[0])).view(1, *self.shape)
        table, rows = self._table(x, snap)
        dw = _kernels.increments(table, rows[:-1], rows[1:], self._compiled)
        if self._n_pad != self._n_flat:
            dw = dw[:, self._lead : self._lead + self._n_flat]
        return dw.view(len(x) - 1, *self.shape)
