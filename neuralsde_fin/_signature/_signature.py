"""Truncated signatures of time-augmented paths, through signatory or pysiglib.

The signature of a path X: [0, T] -> R^d truncated at depth m is the collection of iterated
integrals

    S(X)^{(k)} = int_{0 < t_1 < ... < t_k < T} dX_{t_1} (x) ... (x) dX_{t_k},   k = 1..m,

flattened level by level, each level in lexicographic word order (the order shared by
signatory and pysiglib), without the constant level-0 term. For a piecewise-linear path the
signature is the product (Chen's identity) of the exponentials of its increments; in
particular, a straight line with increment v has level k equal to v^{(x)k} / k!.

Before the signature is taken the path is augmented (``augment``):

1. optionally the lead-lag transform of the value channels (Chevyrev & Kormilitzin 2016),
   whose level-2 terms carry the quadratic variation;
2. time as the first channel, ``ts`` (default: a uniform grid on [0, 1]);
3. a basepoint: the origin is prepended, so that the signature sees the starting value.

Both backends are differentiable with respect to the path.
"""

from __future__ import annotations

import importlib
import math
from functools import cache

import torch

from neuralsde_fin._validate import check_int

BACKENDS: tuple[str, ...] = ("signatory", "pysiglib")


@cache
def _module(name: str):
    """Import a backend module, or return None when it is not installed (or fails to load)."""
    modname = "signatory" if name == "signatory" else "pysiglib.torch_api"
    try:
        return importlib.import_module(modname)
    except Exception:  # noqa: BLE001 - an installed-but-broken extension counts as missing
        return None


def available_backends() -> list[str]:
    """Names of the signature backends importable here, in order of preference."""
    return [name for name in BACKENDS if _module(name) is not None]


def resolve_backend(backend: str | None = None) -> str:
    """The backend to use: ``backend`` if given (it must be installed), else the first available.

    Raises:
        ValueError: unknown backend name.
        ImportError: the requested backend (or, with ``None``, every backend) is not installed.
    """
    if backend is None:
        avail = available_backends()
        if not avail:
            raise ImportError("no signature backend: install signatory or pysiglib")
        return avail[0]
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if _module(backend) is None:
        hint = "pip install pysiglib" if backend == "pysiglib" else "pip install signatory"
        raise ImportError(f"signature backend {backend!r} is not installed ({hint})")
    return backend


def lead_lag_transform(path: torch.Tensor) -> torch.Tensor:
    """Lead-lag transform of a path.

    Points (x_0, x_0), (x_1, x_0), (x_1, x_1), (x_2, x_1), ... : the lead copy moves first.

    Args:
        path: values of the path.

    Returns:
        The lead-lag path, lead channels first then lag channels.

    Shape:
        path: (batch, length, channels) -> (batch, 2 * length - 1, 2 * channels).

    References:
        Chevyrev & Kormilitzin 2016, "A primer on the signature method in machine learning".
    """
    rep = path.repeat_interleave(2, dim=1)
    lead = rep[:, 1:]
    lag = rep[:, :-1]
    return torch.cat([lead, lag], dim=-1)


def augment(
    path: torch.Tensor,
    *,
    ts: torch.Tensor | None = None,
    time_aug: bool = True,
    basepoint: bool = True,
    lead_lag: bool = False,
) -> torch.Tensor:
    """Augment a path before taking its signature: lead-lag, time channel, basepoint.

    Args:
        path: the path values.
        ts: the observation times, shape (length,); default a uniform grid on [0, 1].
        time_aug: prepend time as the first channel.
        basepoint: prepend the origin as the first point.
        lead_lag: apply the lead-lag transform to the value channels (time follows the lead).

    Returns:
        The augmented path.

    Shape:
        path: (batch, length, channels) -> (batch, length', channels') with
        length' = (2 * length - 1 if lead-lag else length) + basepoint and
        channels' = channels * (2 if lead-lag else 1) + time_aug.
    """
    batch, length, _ = path.shape
    if ts is None:
        ts = torch.linspace(0.0, 1.0, length, dtype=path.dtype, device=path.device)
    else:
        ts = ts.to(dtype=path.dtype, device=path.device)
    if lead_lag:
        path = lead_lag_transform(path)
        ts = ts.repeat_interleave(2)[1:]
    if time_aug:
        path = torch.cat([ts.expand(batch, -1).unsqueeze(-1), path], dim=-1)
    if basepoint:
        path = torch.cat([path.new_zeros(batch, 1, path.shape[-1]), path], dim=1)
    return path


def sig_channels(channels: int, depth: int) -> int:
    """Number of terms of a depth-``depth`` signature of a ``channels``-dimensional path."""
    return sum(channels**k for k in range(1, depth + 1))


def split_levels(sig: torch.Tensor, channels: int, depth: int) -> list[torch.Tensor]:
    """Split a flattened signature into its levels 1..depth.

    Shape:
        sig: (..., sig_channels(channels, depth)) -> [(..., channels**k) for k = 1..depth].
    """
    return list(torch.split(sig, [channels**k for k in range(1, depth + 1)], dim=-1))


def raw_signature(path: torch.Tensor, depth: int, *, backend: str | None = None) -> torch.Tensor:
    """Truncated signature of a piecewise-linear path as given (no augmentation).

    Args:
        path: the path.
        depth: truncation depth m >= 1.
        backend: "signatory" or "pysiglib"; default the first one installed.

    Returns:
        Levels 1..m flattened, each in lexicographic word order.

    Shape:
        path: (batch, length, channels) -> (batch, sig_channels(channels, depth)).
    """
    name = resolve_backend(backend)
    mod = _module(name)
    if path.shape[1] < 2:
        # A single point has the trivial signature (all levels zero).
        return path.new_zeros(path.shape[0], sig_channels(path.shape[-1], depth))
    if name == "signatory":
        return mod.signature(path.contiguous(), depth)
    return mod.sig(path.contiguous(), depth)


def signature(
    path: torch.Tensor,
    depth: int,
    *,
    ts: torch.Tensor | None = None,
    time_aug: bool = True,
    basepoint: bool = True,
    lead_lag: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """Truncated signature of the time-augmented path with basepoint.

        S(X)^{(k)} = int_{0 < t_1 < ... < t_k < T} dX_{t_1} (x) ... (x) dX_{t_k},  X = (t, x),

    for k = 1..depth, of the piecewise-linear interpolation of the augmented path.

    Args:
        path: the path values, differentiable.
        depth: truncation depth m >= 1.
        ts: observation times (length,); default uniform on [0, 1].
        time_aug: add time as the first channel.
        basepoint: prepend the origin.
        lead_lag: lead-lag transform the value channels first.
        backend: "signatory" | "pysiglib"; default signatory when importable, else pysiglib.

    Returns:
        The flattened signature (levels in order, words lexicographic, no scalar term).

    Shape:
        path: (batch, length, channels) -> (batch, sig_channels(d, depth)) with
        d = channels * (2 if lead_lag else 1) + time_aug.

    References:
        Lyons, Caruana & Levy 2007, "Differential equations driven by rough paths";
        Kidger & Lyons 2021, "Signatory: differentiable computations of the signature and
        logsignature transforms, on both CPU and GPU".
    """
    if not isinstance(path, torch.Tensor) or path.dim() != 3:
        shape = tuple(path.shape) if isinstance(path, torch.Tensor) else type(path).__name__
        raise ValueError(f"path must be a tensor of shape (batch, length, channels), got {shape}")
    check_int("depth", depth)
    if ts is not None and ts.shape != (path.shape[1],):
        raise ValueError(f"ts must have shape ({path.shape[1]},), got {tuple(ts.shape)}")
    aug = augment(path, ts=ts, time_aug=time_aug, basepoint=basepoint, lead_lag=lead_lag)
    return raw_signature(aug, depth, backend=backend)


def expected_signature_line(increment: torch.Tensor, depth: int) -> torch.Tensor:
    """Closed form: the signature of a straight line with increment v is exp(v).

        S^{(k)} = v^{(x)k} / k!

    Shape:
        increment: (batch, channels) -> (batch, sig_channels(channels, depth)).
    """
    levels = []
    term = increment
    for k in range(1, depth + 1):
        levels.append(term / math.factorial(k))
        if k < depth:
            term = (term.unsqueeze(-1) * increment.unsqueeze(-2)).flatten(-2)
    return torch.cat(levels, dim=-1)
