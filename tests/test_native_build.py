"""The native-kernel builder: the fast loader, and the fallback when a build fails."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

import neuralsde_fin as nsf
from neuralsde_fin import _native

_SCRIPT = """
import sys, torch, neuralsde_fin as nsf
m = nsf.MarketModel(1, latent=2, width=8, depth=1)
m.sample(64, 5)
print("inductor" if "torch._inductor.codecache" in sys.modules else "direct")
"""


def test_second_process_loads_built_kernels_without_inductor(tmp_path):
    """After one process built (or found) the kernels, the next loads their libraries from the
    index without importing Inductor's toolchain."""
    env = {**os.environ, "NEURALSDE_FIN_CACHE": str(tmp_path)}
    env.pop("NEURALSDE_FIN_COMPILE", None)
    runs = [subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert runs[0].stdout.split()[-1] == "inductor"  # a fresh index: built by the toolchain
    assert runs[1].stdout.split()[-1] == "direct"
    assert list(tmp_path.glob("native-*.json"))


def test_a_failed_build_falls_back_to_the_same_values(monkeypatch):
    """With every build failing (no compiler), the tree and the solve take their eager paths,
    which give the native kernels' values to float rounding."""
    model = nsf.MarketModel(1, latent=3, width=16, depth=2)
    kw = dict(measure="risk_neutral", r=0.02, seed=4, dtype=torch.float64)
    native = model.sample(300, 40, **kw).prices
    monkeypatch.setattr(_native, "FORCE_FAIL", True)
    assert not _native.available(torch.float64, torch.device("cpu"), ())
    fallback = model.sample(300, 40, **kw).prices
    err = (fallback / native - 1).abs().max().item()
    print("max relative difference, eager fallback vs native:", err)
    assert err < 1e-12
