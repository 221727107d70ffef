"""The signature kernel: one home for the Gram matrices of the calibration loss and of the
evaluation's MMD test.

    k(x, y) = <S(x), S(y)>,

the (untruncated) signature kernel of two paths with a static kernel on R^d, computed by the
Goursat-PDE solver of pysiglib (``dyadic_order`` refinements of the data grid). The static
kernel is ``"rbf"``, exp(-|a - b|^2 / sigma) (bounded: one extreme path cannot dominate an
MMD), or ``"linear"``, scale <a, b>. Both callers pass torch tensors (the loss needs the
gradient) or numpy arrays (the permutation test).

References:
    Salvi, Cass, Foster, Lyons, Yang (2021), "The signature kernel is the solution of a Goursat
    PDE", SIAM J. Math. Data Sci. 3(3).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["default_jobs", "sig_kernel_gram", "static_kernel"]


def default_jobs() -> int:
    """pysiglib threads by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def static_kernel(name: str = "rbf", *, sigma: float = 1.0, scale: float = 1.0):
    """pysiglib's static kernel object: ``"rbf"`` (bandwidth ``sigma``) or ``"linear"``."""
    import pysiglib.torch_api as ps

    if name == "linear":
        return ps.ScaledLinearKernel(scale) if scale != 1.0 else ps.LinearKernel()
    if name == "rbf":
        return ps.RBFKernel(sigma)
    raise ValueError(f"static_kernel must be 'linear' or 'rbf', got {name!r}")


def sig_kernel_gram(x: Any, y: Any, *, kernel: Any = None, dyadic_order: int = 0,
                    time_aug: bool = False, n_jobs: int | None = None) -> Any:
    """Signature-kernel Gram matrix ``K_ij = k(x_i, y_j)``.

    Args:
        x, y: batches of paths (torch tensors, differentiable, or numpy arrays).
        kernel: a :func:`static_kernel` (default RBF, sigma 1).
        dyadic_order: PDE grid refinement 2^dyadic_order per step.
        time_aug: let pysiglib add time on [0, 1] as a channel.
        n_jobs: pysiglib threads (None: :func:`default_jobs`).

    Shape:
        x: (m, length, channels), y: (n, length, channels) -> (m, n).
    """
    import pysiglib.torch_api as ps

    return ps.sig_kernel_gram(
        x, y, dyadic_order=dyadic_order, static_kernel=kernel or static_kernel(),
        time_aug=time_aug, n_jobs=default_jobs() if n_jobs is None else int(n_jobs),
    )
