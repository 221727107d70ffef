"""The single source of randomness of the classical samplers.

Every standard normal drawn by :class:`~neuralsde_fin.GBM` and :class:`~neuralsde_fin.Heston`
comes from :func:`normals`, a pure function of ``(seed, stream, path, step, dim)`` built on the
counter-based generator of :mod:`neuralsde_fin._brownian`. Path ``i`` therefore does not depend on
how many paths are drawn, nor on whether the steps are drawn one at a time or all at once, and the
same seed gives bit-identical samples on every run.
"""

from __future__ import annotations

import torch

from neuralsde_fin._brownian._counter import counter_normal


def normals(
    seed: int,
    n_paths: int,
    n_steps: int,
    n_dims: int,
    *,
    stream: int = 0,
    step0: int = 0,
    path0: int = 0,
    antithetic: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normals keyed by ``(stream, path, step0 + step, dim)``.

    The paths are the global ids ``path0 .. path0 + n_paths - 1``. With ``antithetic=True``
    paths come in interleaved pairs: path ``2 j`` gets ``Z_j`` and path ``2 j + 1`` gets
    ``-Z_j``, where ``Z_j`` is keyed by the pair index ``j``.

    Args:
        seed: the generator's seed.
        n_paths: number of paths (even when ``antithetic``).
        n_steps: number of time steps drawn, starting at step ``step0``.
        n_dims: number of independent normals per path and step.
        stream: separates the draws of different models or purposes.
        step0: index of the first step drawn.
        path0: global id of the first path.
        antithetic: interleaved antithetic pairs ``(Z, -Z)``.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        A tensor of independent standard normals.

    Shape:
        ``(n_paths, n_steps, n_dims)``.
    """
    ids = torch.arange(path0, path0 + n_paths, dtype=torch.int64, device=device)
    path = (ids // 2 if antithetic else ids).view(-1, 1, 1)
    step = torch.arange(step0, step0 + n_steps, dtype=torch.int64, device=device).view(1, -1, 1)
    dim = torch.arange(n_dims, dtype=torch.int64, device=device).view(1, 1, -1)
    z = counter_normal(seed, stream, path, step, dim, dtype=dtype, device=device)
    if antithetic:
        z = z * (1 - 2 * (ids % 2)).to(dtype).view(-1, 1, 1)
    return z
