"""Shared pytest configuration: CPU, deterministic, few threads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# Brownian kernels run eagerly in the suite: torch.compile warm-up (10-60 s) stays out of it.
os.environ.setdefault("NEURALSDE_FIN_COMPILE", "0")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield
