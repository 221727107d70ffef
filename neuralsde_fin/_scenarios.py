"""Monte Carlo scenarios: simulated price paths with the metadata needed to price from them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._io import atomic_writer

MEASURES = ("historical", "risk_neutral")
TRADING_DAYS = 252
_META_KEY = b"neuralsde_fin"


def _as_float_tensor(x: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if not t.is_floating_point():
        t = t.to(dtype or torch.get_default_dtype())
    elif dtype is not None:
        t = t.to(dtype)
    return t


class Scenarios:
    r"""Simulated price paths of one or more assets, with their measure and provenance.

    Under ``measure="risk_neutral"`` the discounted price :math:`e^{-(r - q) t} S_t` is a
    martingale, which the pricing layer uses as a control variate; under ``"historical"`` the
    paths follow the real-world law and are meant for risk (VaR, expected shortfall).

    Args:
        times: times in years from the valuation date, increasing, starting at 0.
        prices: price paths; a 2-d tensor is read as a single asset.
        measure: ``"risk_neutral"`` or ``"historical"``.
        r: continuously compounded risk-free rate the paths were simulated with.
        q: continuous dividend yield, a float or one per asset.
        seed: seed the paths were drawn with, if any.
        model: identity of the generating model (a string such as ``"GBM(sigma=0.2)"``).
        valuation_date: date of ``times[0]`` (default: today).
        antithetic: whether paths ``2 j`` and ``2 j + 1`` are antithetic pairs.
        asset_names: one name per asset (default ``"asset0"``, ...).

    Shape:
        ``times``: ``(n_times,)``; ``prices``: ``(n_paths, n_times, n_assets)``.
    """

    def __init__(
        self,
        times: torch.Tensor | np.ndarray | Sequence[float],
        prices: torch.Tensor | np.ndarray,
        measure: str = "risk_neutral",
        r: float = 0.0,
        q: float | Sequence[float] = 0.0,
        *,
        seed: int | None = None,
        model: str | None = None,
        valuation_date: str | pd.Timestamp | None = None,
        antithetic: bool = False,
        asset_names: Sequence[str] | None = None,
    ) -> None:
        prices = _as_float_tensor(prices, "prices")
        if prices.ndim == 2:
            prices = prices.unsqueeze(-1)
        if prices.ndim != 3:
            raise ValueError(
                f"prices must have shape (n_paths, n_times, n_assets), got {tuple(prices.shape)}"
            )
        if not bool(torch.isfinite(prices.detach()).all()):
            raise ValueError("prices must be finite (found NaN or inf)")
        times = _as_float_tensor(times, "times", dtype=prices.dtype).to(prices.device)
        if times.ndim != 1 or times.shape[0] != prices.shape[1]:
            raise ValueError(
                f"times must have shape (n_times,) = ({prices.shape[1]},), got {tuple(times.shape)}"
            )
        if times.shape[0] < 1 or abs(float(times[0])) > 1e-12:
            raise ValueError(f"times must start at 0 (the valuation date), got {float(times[0])}")
        if times.shape[0] > 1 and not bool((times[1:] > times[:-1]).all()):
            raise ValueError("times must be strictly increasing")
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        n_assets = prices.shape[2]
        q_t = torch.as_tensor(q, dtype=torch.float64).flatten()
        if q_t.numel() not in (1, n_assets):
            raise ValueError(f"q must be a float or one value per asset ({n_assets}), got {q!r}")
        if antithetic and prices.shape[0] % 2:
            raise ValueError(f"antithetic scenarios need an even n_paths, got {prices.shape[0]}")
        names = (
            [f"asset{i}" for i in range(n_assets)] if asset_names is None else list(asset_names)
        )
        if len(names) != n_assets:
            raise ValueError(f"asset_names must have {n_assets} entries, got {len(names)}")
        self.times = times
        self.prices = prices
        self.measure = measure
        self.r = float(r)
        self.q = float(q_t[0]) if q_t.numel() == 1 else [float(v) for v in q_t]
        self.seed = None if seed is None else int(seed)
        self.model = None if model is None else str(model)
        self.valuation_date = pd.Timestamp(
            pd.Timestamp.today() if valuation_date is None else valuation_date
        ).normalize()
        self.antithetic = bool(antithetic)
        self.asset_names = names

    # ------------------------------------------------------------------ views
    @property
    def n_paths(self) -> int:
        return self.prices.shape[0]

    @property
    def n_times(self) -> int:
        return self.prices.shape[1]

    @property
    def n_assets(self) -> int:
        return self.prices.shape[2]

    @property
    def spot(self) -> torch.Tensor:
        """Initial prices, shape ``(n_paths, n_assets)``."""
        return self.prices[:, 0]

    def q_vector(self) -> torch.Tensor:
        """Dividend yields as a tensor of shape ``(n_assets,)``."""
        q = torch.as_tensor(self.q, dtype=self.prices.dtype, device=self.prices.device)
        return q.expand(self.n_assets) if q.ndim == 0 else q

    @property
    def dates(self) -> pd.DatetimeIndex:
        """Calendar dates of ``times``: business days when the grid is in trading days.

        A time ``t`` on the ``1/252`` grid is the ``round(252 t)``-th business day after the
        valuation date; other grids map to ``round(365 t)`` calendar days.
        """
        t = self.times.detach().cpu().double().numpy()
        days = t * TRADING_DAYS
        if np.allclose(days, np.round(days), atol=1e-6):
            bday = pd.offsets.BDay()
            return pd.DatetimeIndex(
                [
                    self.valuation_date + int(k) * bday if k else self.valuation_date
                    for k in np.round(days).astype(int)
                ]
            )
        return self.valuation_date + pd.to_timedelta(np.round(t * 365.0).astype(int), unit="D")

    def __len__(self) -> int:
        return self.n_paths

    def __repr__(self) -> str:
        return (
            f"Scenarios(n_paths={self.n_paths}, n_times={self.n_times}, n_assets={self.n_assets}, "
            f"measure={self.measure!r}, r={self.r}, q={self.q}, model={self.model!r}, "
            f"seed={self.seed}, antithetic={self.antithetic})"
        )

    def to_frame(self, asset: int | str | None = None) -> pd.DataFrame:
        """A wide frame: one row per date, one column per path.

        Args:
            asset: index or name of the asset; ``None`` gives all assets with columns
                ``(asset, path)``.

        Returns:
            A DataFrame indexed by :attr:`dates` (named ``"date"``).
        """
        p = self.prices.detach().cpu().numpy()
        index = pd.Index(self.dates, name="date")
        if asset is not None:
            j = self._asset_index(asset)
            frame = pd.DataFrame(p[:, :, j].T, index=index)
            frame.columns.name = "path"
            return frame
        cols = pd.MultiIndex.from_product(
            [self.asset_names, range(self.n_paths)], names=["asset", "path"]
        )
        data = p.transpose(1, 2, 0).reshape(self.n_times, -1)
        return pd.DataFrame(data, index=index, columns=cols)

    def _asset_index(self, asset: int | str) -> int:
        if isinstance(asset, str):
            if asset not in self.asset_names:
                raise ValueError(f"asset {asset!r} not in {self.asset_names}")
            return self.asset_names.index(asset)
        if not 0 <= int(asset) < self.n_assets:
            raise ValueError(f"asset must be in [0, {self.n_assets}), got {asset}")
        return int(asset)

    # --------------------------------------------------------------- parquet
    def metadata(self) -> dict[str, Any]:
        """The provenance stored in the parquet file metadata."""
        return {
            "measure": self.measure,
            "r": self.r,
            "q": self.q,
            "seed": self.seed,
            "model": self.model,
            "valuation_date": self.valuation_date.strftime("%Y-%m-%d"),
            "antithetic": self.antithetic,
            "asset_names": self.asset_names,
            "dtype": str(self.prices.dtype).removeprefix("torch."),
        }

    def to_parquet(
        self,
        path: str | os.PathLike[str],
        *,
        path_offset: int = 0,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a long table (path, step, time, date, one column per asset) atomically.

        The measure, rates, seed, model identity, valuation date and antithetic flag are stored
        in the file's key-value metadata under ``"neuralsde_fin"``. The file is written to a
        temporary file in the same directory and renamed, so it is never left half-written.

        Args:
            path: the file to write.
            path_offset: global id of the first path (a shard of a larger sample): the
                ``path`` column holds ``path_offset .. path_offset + n_paths - 1``.
            extra_metadata: stored in the metadata under ``"shard"`` (see
                ``nsf.sample_shard``).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = self.prices.detach().cpu().numpy()
        n_paths, n_times, _ = p.shape
        cols: dict[str, Any] = {
            "path": np.repeat(
                np.arange(path_offset, path_offset + n_paths, dtype=np.int64), n_times
            ),
            "step": np.tile(np.arange(n_times, dtype=np.int32), n_paths),
            "time": np.tile(self.times.detach().cpu().numpy(), n_paths),
            "date": np.tile(self.dates.values.astype("datetime64[ns]"), n_paths),
        }
        for j, name in enumerate(self.asset_names):
            cols[name] = p[:, :, j].reshape(-1)
        table = pa.table(cols)
        meta = dict(table.schema.metadata or {})
        info = self.metadata()
        if extra_metadata is not None:
            info["shard"] = dict(extra_metadata)
        meta[_META_KEY] = json.dumps(info).encode()
        table = table.replace_schema_metadata(meta)
        with atomic_writer(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> Scenarios:
        """Read scenarios written by :meth:`to_parquet`.

        ``path`` may also be a directory of parts: the ``part-<rank>.parquet`` shards of
        ``nsf.sample_shard`` are checked and combined by ``nsf.combine_shards`` (global path
        order, bit for bit the single-process sample); other ``.parquet`` parts with global
        path ids are read as their union, ordered by path.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = os.fspath(path)
        if not os.path.exists(path):
            raise ValueError(f"path {path!r} does not exist")
        if os.path.isdir(path):
            from neuralsde_fin._distributed import combine_shards, is_shard_dir

            if is_shard_dir(path):
                return combine_shards(path)
            parts = sorted(
                os.path.join(path, f) for f in os.listdir(path)
                if f.endswith(".parquet") and not f.startswith(".")
            )
            if not parts:
                raise ValueError(f"directory {path!r} holds no .parquet file")
            tables = [pq.read_table(f) for f in parts]
            table = pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata)
        else:
            table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise ValueError(f"{path!r} has no neuralsde_fin metadata: not written by to_parquet")
        meta: Mapping[str, Any] = json.loads(raw)
        frame = table.to_pandas().sort_values(["path", "step"], kind="stable")
        paths = frame["path"].to_numpy()
        n_paths = len(np.unique(paths))
        n_times = len(frame) // max(n_paths, 1)
        if n_paths * n_times != len(frame):
            raise ValueError(f"{path!r}: paths have unequal lengths")
        names = list(meta["asset_names"])
        dtype = getattr(torch, meta.get("dtype", "float64"))
        prices = np.stack([frame[n].to_numpy() for n in names], axis=-1)
        prices = torch.as_tensor(prices.reshape(n_paths, n_times, len(names)).copy(), dtype=dtype)
        times = torch.as_tensor(frame["time"].to_numpy()[:n_times].copy(), dtype=dtype)
        return cls._from_meta(times, prices, {**meta, "asset_names": names})

    @classmethod
    def _from_meta(
        cls, times: torch.Tensor, prices: torch.Tensor, meta: dict[str, Any]
    ) -> Scenarios:
        """Scenarios from arrays and the metadata dict written with them in a parquet file."""
        return cls(
            times,
            prices,
            measure=meta["measure"],
            r=meta["r"],
            q=meta["q"],
            seed=meta["seed"],
            model=meta["model"],
            valuation_date=meta["valuation_date"],
            antithetic=meta["antithetic"],
            asset_names=meta["asset_names"],
        )
