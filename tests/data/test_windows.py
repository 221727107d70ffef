"""nsf.data.windows: shapes and values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import neuralsde_fin as nsf


def _prices(n=10, k=2):
    rng = np.random.default_rng(0)
    p = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(n, k)), axis=0))
    return pd.DataFrame(p, index=pd.date_range("2020-01-01", periods=n, freq="B"))


@pytest.mark.parametrize("window,stride,expected", [(3, 1, 7), (3, 2, 4), (9, 1, 1), (4, 3, 2)])
def test_shapes(window, stride, expected):
    paths, ts = nsf.data.windows(_prices(), window, stride)
    assert paths.shape == (expected, window + 1, 2)
    assert ts.shape == (window + 1,)
    assert paths.dtype == torch.float64


def test_values_and_clock():
    df = _prices()
    paths, ts = nsf.data.windows(df, 3, stride=2)
    logp = np.log(df.to_numpy())
    for k in range(paths.shape[0]):
        np.testing.assert_allclose(paths[k].numpy(), logp[2 * k : 2 * k + 4] - logp[2 * k], atol=0)
    assert torch.all(paths[:, 0] == 0)
    np.testing.assert_allclose(ts.numpy(), np.arange(4) / 252)
    assert nsf.data.TRADING_DAYS == 252


def test_series_and_dtype():
    s = _prices(k=1)[0]
    paths, ts = nsf.data.windows(s, 5, dtype=torch.float32)
    assert paths.shape == (5, 6, 1) and paths.dtype == torch.float32 and ts.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"window": 0}, "window must be a positive integer"),
        ({"window": 3, "stride": 0}, "stride must be a positive integer"),
        ({"window": 10}, "needs at least 11 prices"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nsf.data.windows(_prices(), **kwargs)


def test_bad_price():
    arr = np.ones((5, 1))
    arr[3, 0] = -1
    with pytest.raises(ValueError, match="row 3, asset 0"):
        nsf.data.windows(arr, 2)
