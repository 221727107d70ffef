"""Shared pytest configuration: CPU, deterministic, few threads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

# (the suite runs the default mode: native CPU kernels, no torch.compile)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield
