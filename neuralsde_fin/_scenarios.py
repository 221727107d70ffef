"""Monte Carlo scenarios: simulated price paths with the metadata needed to price from them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuralsde_fin._calendar import MEASURES, TRADING_DAYS
from neuralsde_fin._io import atomic_write_text


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

    def to_csv(self, path: str | os.PathLike[str], layout: str = "long") -> None:
        """Write the paths as CSV, atomically.

        Args:
            path: the file to write.
            layout: ``"long"``: one row per (path, step) with columns ``path, step, time,
                date`` and one price column per asset; ``"wide"``: one row per date, one
                column per path (``asset/pathN`` with several assets).
        """
        if layout not in ("long", "wide"):
            raise ValueError(f"layout must be 'long' or 'wide', got {layout!r}")
        if layout == "wide":
            frame = self.to_frame()
            if self.n_assets == 1:
                frame.columns = [f"path{p}" for _, p in frame.columns]
            else:
                frame.columns = [f"{a}/path{p}" for a, p in frame.columns]
            text = frame.to_csv(date_format="%Y-%m-%d")
        else:
            p = self.prices.detach().cpu().numpy()
            n_paths, n_times, _ = p.shape
            cols: dict[str, Any] = {
                "path": np.repeat(np.arange(n_paths), n_times),
                "step": np.tile(np.arange(n_times), n_paths),
                "time": np.tile(self.times.detach().cpu().numpy(), n_paths),
                "date": np.tile(self.dates.strftime("%Y-%m-%d").to_numpy(), n_paths),
            }
            for j, name in enumerate(self.asset_names):
                cols[name] = p[:, :, j].reshape(-1)
            text = pd.DataFrame(cols).to_csv(index=False)
        atomic_write_text(path, text)

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
        """Write the paths to a Parquet file, atomically (layout: ``_scenario_files``).

        One row per path (its global id, then one column per asset and time step), row groups
        of ``ROW_GROUP_PATHS`` paths; the measure, rates, seed, model identity, valuation date,
        antithetic flag and time grid in the file's metadata under ``"neuralsde_fin"``.
        ``nsf.sample_to_parquet`` writes the same file chunk by chunk.

        Args:
            path: the file to write.
            path_offset: global id of the first path (a shard of a larger sample).
            extra_metadata: stored in the metadata under ``"shard"`` (see
                ``nsf.sample_shard``).
        """
        from neuralsde_fin._scenario_files import ScenarioWriter

        meta = self.metadata()
        if extra_metadata is not None:
            meta["shard"] = dict(extra_metadata)
        with ScenarioWriter(path, meta, self.times.detach().cpu().double().numpy(),
                            meta["dtype"]) as w:
            ids = np.arange(path_offset, path_offset + self.n_paths, dtype=np.int64)
            w.write(ids, self.prices.detach().cpu().numpy())

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str]) -> Scenarios:
        """Read scenarios written by :meth:`to_parquet` or ``nsf.sample_to_parquet``.

        ``path`` may also be a folder of ``part-<rank>.parquet`` shards (``nsf.sample_shard``):
        they are checked to come from one run and to cover every path id once, and are read in
        global path order, bit for bit the single-process sample. Files of the earlier long
        layout are read too. For files larger than memory, price and measure risk from the file
        itself (``nsf.price(path, ...)``, ``nsf.var_es(path, ...)``), chunk by chunk.
        """
        from neuralsde_fin._scenario_files import read_arrays

        meta, times, prices = read_arrays(path)
        dtype = getattr(torch, meta.get("dtype", "float64"))
        return cls._from_meta(torch.as_tensor(times, dtype=dtype),
                              torch.as_tensor(prices, dtype=dtype), meta)

    @classmethod
    def iter_parquet(cls, path: str | os.PathLike[str], *, steps: list[int] | None = None
                     ) -> Iterator[Scenarios]:
        """The scenarios of a file or shard folder, one row group at a time (bounded memory).

        Each chunk is a ``Scenarios`` with the file's metadata (antithetic pairs stay whole:
        row groups hold an even number of paths). ``steps`` reads only those time steps.
        """
        from neuralsde_fin._scenario_files import iter_chunks

        for meta, times, _ids, prices in iter_chunks(path, steps=steps):
            dtype = getattr(torch, meta.get("dtype", "float64"))
            yield cls._from_meta(torch.as_tensor(times, dtype=dtype),
                                 torch.as_tensor(prices, dtype=dtype), meta)

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
