"""Argument validators: one behaviour for bools, numpy integers and floats everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import neuralsde_fin as nsf
from neuralsde_fin._validate import check_int, check_number


def test_integers_numpy_accepted_bools_and_floats_refused():
    assert check_int("n", np.int64(3)) == 3 and check_int("n", 0, 0) == 0
    for bad in (True, 3.0, "3", 0, -1, None):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            check_int("n", bad)
    with pytest.raises(ValueError, match=r"k must be an integer >= 2, <= 5, got 7"):
        check_int("k", 7, 2, 5)
    assert check_number("dt", np.float32(0.5), positive=True) == 0.5
    for bad in (True, float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="dt must be a positive number"):
            check_number("dt", bad, positive=True)


def test_the_public_calls_agree_on_bool_and_numpy_counts():
    """The same argument gets the same treatment across the package."""
    model = nsf.MarketModel(1, latent=2, width=8, depth=1)
    gbm = nsf.GBM(0.2)
    for fn in (lambda n: model.sample(n, 3), lambda n: gbm.sample(n, 3),
               lambda n: nsf.Heston(1.0, 0.04, 0.3, -0.5, 0.04).sample(n, 3)):
        with pytest.raises(ValueError, match="n_paths must be a positive integer"):
            fn(True)
        assert fn(np.int64(4)).n_paths == 4
