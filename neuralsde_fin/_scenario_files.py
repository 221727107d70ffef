"""Scenario files: the Parquet layout, streamed writing and reading, and sharded folders.

Layout (``"wide"``, version 2). One row per path. Columns: ``path`` (int64, the global path
id), then one float column per asset and time step, ``"<asset>:<step>"`` (float32 or float64,
the samples' dtype), in asset-major order. Rows are written in row groups of
``ROW_GROUP_PATHS`` paths, whatever chunks they are sampled in, so a file written chunk by chunk
equals, byte for byte, the file written from the whole sample at once. The provenance (measure,
r, q, seed, model, valuation date, antithetic flag, asset names, dtype, the time grid, and a
shard's range) is a JSON string in the file's key-value metadata under ``"neuralsde_fin"``.

Why this layout: a price column holds only prices, with no repeated path / step / time / date
columns; the floats are stored BYTE_STREAM_SPLIT-encoded and LZ4-compressed (about 3.2 bytes
per float32 price for price paths, against 4 raw, and no slower to read), plus 8 bytes per path
for its id; a column per step has no nesting, so it decodes at memory speed, and a European
option at one maturity reads two columns of the file (the spot and the maturity) instead of
every value. Measured sizes and read times:
``benchmarks/README.md``. Files of the earlier long layout (one row per path and step) are still
read.

Shards. Under ``torchrun`` rank r of W writes ``DIR/part-<r>.parquet`` holding the global paths
``shard_range(n_paths, r, W)``, with its range in the metadata; :func:`read_scenarios` and
:func:`iter_scenarios` read a shard folder as one sample, in global path order, after checking
that the parts come from one run and cover every path id once.

References:
    Apache Parquet format specification (row groups, column chunks, key-value metadata).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuralsde_fin._io import atomic_writer

__all__ = ["META_KEY", "PART_PATTERN", "ROW_GROUP_PATHS", "ScenarioWriter", "iter_chunks",
           "read_arrays", "sample_to_parquet", "shard_files"]

META_KEY = b"neuralsde_fin"
LAYOUT = "wide"
VERSION = 2
#: Paths per row group (the unit of streamed reading).
ROW_GROUP_PATHS = 16384
PART_PATTERN = "part-{rank}.parquet"
_PART_RE = re.compile(r"^part-(\d+)\.parquet$")


def column_names(asset_names: list[str], n_times: int) -> list[str]:
    """The price columns of the layout, asset-major: ``"<asset>:<step>"``."""
    return [f"{a}:{k}" for a in asset_names for k in range(n_times)]


class ScenarioWriter:
    """Write scenarios chunk by chunk to one Parquet file, atomically, in fixed row groups.

    Memory is bounded by one row group plus the chunk being written. The file appears at
    ``path`` only when :meth:`close` succeeds (temp file, fsync, rename, the umask's mode).

    Args:
        path: the file.
        meta: the provenance (``Scenarios.metadata()``); ``times`` and ``n_times`` are added.
        times: the time grid, (n_times,) years.
        dtype: ``"float32"`` or ``"float64"``.

    Shape:
        ``write(ids, prices)``: ids (n,), prices (n, n_times, n_assets) numpy arrays.
    """

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any], times: np.ndarray,
                 dtype: str) -> None:
        import pyarrow as pa

        self.path = os.fspath(path)
        self.times = np.asarray(times, dtype=np.float64)
        self.assets = list(meta["asset_names"])
        self.n_times = len(self.times)
        self.np_dtype = np.float32 if dtype == "float32" else np.float64
        info = {**dict(meta), "layout": LAYOUT, "version": VERSION,
                "times": [float(t) for t in self.times], "dtype": dtype}
        fields = [pa.field("path", pa.int64(), nullable=False)]
        ptype = pa.float32() if dtype == "float32" else pa.float64()
        fields += [pa.field(c, ptype, nullable=False)
                   for c in column_names(self.assets, self.n_times)]
        self.schema = pa.schema(fields, metadata={META_KEY: json.dumps(info).encode()})
        self._ctx = atomic_writer(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = None
        self._ids: list[np.ndarray] = []
        self._prices: list[np.ndarray] = []
        self._buffered = 0
        self.n_written = 0

    def write(self, ids: np.ndarray, prices: np.ndarray) -> None:
        """Append paths ``ids`` (in order) with their ``prices``."""
        prices = np.ascontiguousarray(prices, dtype=self.np_dtype)
        if prices.shape[1:] != (self.n_times, len(self.assets)):
            raise ValueError(f"prices must have shape (n, {self.n_times}, {len(self.assets)}), "
                             f"got {prices.shape}")
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self._prices.append(prices)
        self._buffered += prices.shape[0]
        while self._buffered >= ROW_GROUP_PATHS:
            self._flush(ROW_GROUP_PATHS)

    def _flush(self, n: int) -> None:
        import pyarrow as pa

        ids = np.concatenate(self._ids) if len(self._ids) > 1 else self._ids[0]
        p = np.concatenate(self._prices) if len(self._prices) > 1 else self._prices[0]
        head_ids, head = ids[:n], p[:n]
        self._ids, self._prices = ([ids[n:]], [p[n:]]) if n < len(ids) else ([], [])
        self._buffered -= n
        cols = [pa.array(head_ids)]
        for j in range(len(self.assets)):
            block = np.ascontiguousarray(head[:, :, j].T)  # (n_times, n): one column per step
            cols.extend(pa.array(block[k]) for k in range(self.n_times))
        table = pa.Table.from_arrays(cols, schema=self.schema)
        if self._writer is None:
            self._writer = _open_writer(self._tmp, self.schema)
        self._writer.write_table(table, row_group_size=n)
        self.n_written += n

    def close(self) -> str:
        """Write the last row group and publish the file; returns its path."""
        if self._buffered:
            self._flush(self._buffered)
        if self._writer is None:  # no paths: an empty file with the schema
            self._writer = _open_writer(self._tmp, self.schema)
        self._writer.close()
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (nothing appears at ``path``)."""
        if self._writer is not None:
            self._writer.close()
        exc = RuntimeError("scenario writing aborted")
        self._ctx.__exit__(RuntimeError, exc, None)  # removes the temp file; returns False

    def __enter__(self) -> ScenarioWriter:
        return self

    def __exit__(self, typ, exc, tb) -> None:
        if typ is None:
            self.close()
        else:
            self.abort()


def sample_to_parquet(
    model: Any,
    path: str | os.PathLike,
    n_paths: int,
    horizon: int,
    *,
    chunk_size: int = 65536,
    path_offset: int = 0,
    shard: Mapping[str, Any] | None = None,
    progress: bool = False,
    **sample_options: Any,
) -> str:
    """Sample ``n_paths`` paths chunk by chunk straight to one Parquet file (bounded memory).

    Each chunk is ``model.sample(chunk, horizon, path_offset=..., **sample_options)`` (any
    model with the shared sampling signature) and is written as soon as it is drawn, so memory
    is one chunk (and one row group) whatever ``n_paths`` is. With counter-based noise the file
    equals, byte for byte, ``model.sample(n_paths, horizon, ...).to_parquet(path)`` for the
    same seed.

    Args:
        model: the model.
        path: the file (written atomically).
        n_paths: number of paths.
        horizon: steps per path.
        chunk_size: paths sampled at once.
        path_offset: global id of the first path (a shard).
        shard: a shard's range, stored in the metadata (``nsf.sample_shard``).
        progress: a progress bar over the paths.
        **sample_options: ``measure``, ``r``, ``q``, ``spot``, ``seed``, ``dt``, ``dtype``, ...

    Returns:
        The path written.
    """
    from tqdm.auto import tqdm

    from neuralsde_fin._validate import check_int

    check_int("n_paths", n_paths)
    check_int("chunk_size", chunk_size)
    if sample_options.get("antithetic") and (chunk_size % 2 or path_offset % 2):
        raise ValueError("antithetic sampling to a file needs an even chunk_size and path_offset")
    writer = None
    bar = tqdm(total=n_paths, desc="sample", unit="path", unit_scale=True, disable=not progress)
    try:
        for lo in range(0, n_paths, chunk_size):
            hi = min(n_paths, lo + chunk_size)
            scen = model.sample(hi - lo, horizon, path_offset=path_offset + lo, **sample_options)
            if writer is None:
                meta = scen.metadata()
                if shard is not None:
                    meta["shard"] = dict(shard)
                writer = ScenarioWriter(path, meta, scen.times.detach().cpu().double().numpy(),
                                        meta["dtype"])
            ids = np.arange(path_offset + lo, path_offset + hi, dtype=np.int64)
            writer.write(ids, scen.prices.detach().cpu().numpy())
            bar.update(hi - lo)
            del scen
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    return writer.close()


def _open_writer(path: str, schema):
    """The Parquet writer of the layout: price columns BYTE_STREAM_SPLIT-encoded (the bytes of
    the floats regrouped by significance) and LZ4-compressed, no dictionaries, no statistics."""
    import pyarrow.parquet as pq

    prices = [f.name for f in schema if f.name != "path"]
    return pq.ParquetWriter(path, schema, compression="lz4", use_dictionary=False,
                            write_statistics=False,
                            column_encoding=dict.fromkeys(prices, "BYTE_STREAM_SPLIT"))


# ------------------------------------------------------------------------------------ reading
def _meta_of(schema, where: str) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{where!r} has no neuralsde_fin metadata: not written by this package")
    return json.loads(raw)


def shard_files(directory: str | os.PathLike) -> list[str]:
    """The ``part-<rank>.parquet`` files of ``directory``, in rank order."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise ValueError(f"directory {d!r} does not exist")
    found = []
    for f in glob.glob(os.path.join(d, "part-*.parquet")):
        m = _PART_RE.match(os.path.basename(f))
        if m:
            found.append((int(m.group(1)), f))
    if not found:
        raise ValueError(f"directory {d!r} holds no part-<rank>.parquet files")
    return [f for _, f in sorted(found)]


@dataclass
class _Source:
    """The files of a sample (one, or a shard folder's parts in rank order) and its metadata."""

    files: list[str]
    meta: dict[str, Any]
    n_paths: int


def _open(path: str | os.PathLike) -> _Source:
    import pyarrow.parquet as pq

    p = os.fspath(path)
    if not os.path.exists(p):
        raise ValueError(f"path {p!r} does not exist")
    if not os.path.isdir(p):
        meta = _meta_of(pq.read_schema(p), p)
        return _Source([p], meta, _n_rows(p, meta))
    files = shard_files(p)
    metas = [_meta_of(pq.read_schema(f), f) for f in files]
    first = metas[0]
    if not any("shard" in m for m in metas):
        return _plain_parts(p, files, metas)
    world = first["shard"]["world_size"]
    keys = [k for k in first if k != "shard"] + ["n_paths_total", "world_size"]
    ref = {**{k: v for k, v in first.items() if k != "shard"}, **first["shard"]}
    for f, m in zip(files, metas):
        if "shard" not in m:
            raise ValueError(f"{f!r} is not a shard written by sample_shard (no shard metadata)")
        merged = {**{k: v for k, v in m.items() if k != "shard"}, **m["shard"]}
        bad = [k for k in keys if merged.get(k) != ref.get(k)]
        if bad:
            raise ValueError(f"{f!r} is from a different sampling run ({', '.join(bad)} differ)")
    ranks = [m["shard"]["rank"] for m in metas]
    if ranks != list(range(world)):
        raise ValueError(f"directory {p!r} holds the shards of ranks {ranks}, expected "
                         f"0..{world - 1}")
    offsets = [m["shard"]["path_offset"] for m in metas]
    ends = [o + m["shard"]["n_paths_local"] for o, m in zip(offsets, metas)]
    total = first["shard"]["n_paths_total"]
    if offsets[0] != 0 or ends[-1] != total or offsets[1:] != ends[:-1]:
        raise ValueError(f"the shards of {p!r} do not cover the paths 0..{total - 1} exactly once")
    for f, m in zip(files, metas):
        n = _n_rows(f, m)
        if n != m["shard"]["n_paths_local"]:
            raise ValueError(f"{f!r}: {n} paths, its metadata says {m['shard']['n_paths_local']}")
    meta = {k: v for k, v in first.items() if k != "shard"}
    return _Source(files, meta, total)


def _plain_parts(directory: str, files: list[str], metas: list[dict[str, Any]]) -> _Source:
    """Parts without shard metadata (each written by ``to_parquet`` with global path ids): read
    in the order of their first path id, checked to share the sampling run's metadata."""
    import pyarrow.parquet as pq

    keys = [k for k in metas[0] if k not in ("shard",)]
    for f, m in zip(files, metas):
        bad = [k for k in keys if m.get(k) != metas[0].get(k)]
        if bad:
            raise ValueError(f"{f!r} is from a different sampling run ({', '.join(bad)} differ)")
    firsts = []
    for f in files:
        ids = pq.read_table(f, columns=["path"]).column("path").to_numpy()
        firsts.append(int(ids.min()) if len(ids) else 0)
    order = [f for _, f in sorted(zip(firsts, files))]
    return _Source(order, metas[0], sum(_n_rows(f, metas[0]) for f in order))


def _n_rows(path: str, meta: dict[str, Any]) -> int:
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(path).metadata.num_rows
    if meta.get("layout") == LAYOUT:
        return rows
    n_times = int(meta.get("n_times") or 0) or _legacy_n_times(path)
    return rows // max(n_times, 1)


def _legacy_n_times(path: str) -> int:
    import pyarrow.parquet as pq

    steps = pq.read_table(path, columns=["step"]).column("step").to_numpy()
    return int(steps.max()) + 1 if len(steps) else 0


def read_times(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The time grid and the number of paths of a scenario file or shard folder."""
    src = _open(path)
    if src.meta.get("layout") == LAYOUT:
        return np.asarray(src.meta["times"], dtype=np.float64), src.n_paths
    times, ids, _ = _read_legacy(src)
    return times, len(ids)


def iter_chunks(path: str | os.PathLike, *, steps: list[int] | None = None
                ) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(meta, times, ids, prices)`` row group by row group, in global path order.

    Args:
        path: a scenario file or a shard folder.
        steps: read only these time steps (e.g. ``[0, k]`` for one maturity); None: all.

    Shape:
        times: (n_steps,); ids: (n,); prices: (n, n_steps, n_assets) numpy arrays.
    """
    import pyarrow.parquet as pq

    src = _open(path)
    meta = src.meta
    if steps is not None:  # the spot is always read (Scenarios start at time 0)
        steps = sorted({0, *(int(k) for k in steps)})
    if meta.get("layout") != LAYOUT:  # the long layout of version 1: read whole
        times, ids, prices = _read_legacy(src)
        sel = slice(None) if steps is None else steps
        yield meta, times[sel], ids, prices[:, sel]
        return
    times = np.asarray(meta["times"], dtype=np.float64)
    ks = list(range(len(times))) if steps is None else [int(k) for k in steps]
    names = meta["asset_names"]
    cols = ["path"] + [f"{a}:{k}" for a in names for k in ks]
    for f in src.files:
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=cols)
            ids = t.column(0).to_numpy()
            block = np.stack([t.column(i).to_numpy() for i in range(1, t.num_columns)], axis=1)
            prices = block.reshape(len(ids), len(names), len(ks)).transpose(0, 2, 1)
            yield meta, times[ks], ids, np.ascontiguousarray(prices)


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The whole sample: ``(meta, times, prices)`` in global path order."""
    chunks = list(iter_chunks(path))
    meta, times = chunks[0][0], chunks[0][1]
    prices = (chunks[0][3] if len(chunks) == 1
              else np.concatenate([c[3] for c in chunks], axis=0))
    return meta, times, prices


def _read_legacy(src: _Source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A version-1 (long layout) sample: one row per (path, step)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in src.files]
    frame = pa.concat_tables(tables).to_pandas().sort_values(["path", "step"], kind="stable")
    paths = frame["path"].to_numpy()
    ids = np.unique(paths)
    n_times = len(frame) // max(len(ids), 1)
    if len(ids) * n_times != len(frame):
        raise ValueError(f"{src.files[0]!r}: paths have unequal lengths")
    names = list(src.meta["asset_names"])
    prices = np.stack([frame[n].to_numpy() for n in names], axis=-1)
    times = frame["time"].to_numpy()[:n_times].astype(np.float64)
    return times, ids, prices.reshape(len(ids), n_times, len(names))
