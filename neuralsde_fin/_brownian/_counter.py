"""Counter-based random numbers: normals and uniforms that are pure functions of integer keys.

A value is addressed by ``(seed, *keys)`` rather than drawn from a stateful stream, so any subset
of values can be recomputed, in any order, on any device, and the value for key ``k`` does not
depend on how many other values are computed alongside it (path ``i`` is the same whether 8 or
4096 paths are drawn).

Hash (SplitMix64, Steele, Lea and Flood 2014, "Fast splittable pseudorandom number
generators"; finaliser "mix13" of Stafford 2011). With ``G = 0x9E3779B97F4A7C15`` and

    mix(x) = x ^= x >>> 30; x *= 0xBF58476D1CE4E5B9; x ^= x >>> 27; x *= 0x94D049BB133111EB;
             x ^= x >>> 31                                           (all mod 2^64)

the keys are absorbed one at a time, ``s_0 = mix(seed * G + C)``, ``s_j = mix(s_{j-1} + k_j G)``,
so the last step is exactly the SplitMix64 output at counter ``k_last`` of the stream seeded by
the previous keys. Everything is computed in int64 tensors: multiplication and addition wrap
mod 2^64 as for uint64, and the logical shift ``>>>`` is an arithmetic shift followed by a mask.

Normals (Box-Muller, 1958). The last key ``j`` is split into a pair index ``j >> 1`` and a side
``j & 1``; the 64-bit hash ``x`` of ``(seed, *keys[:-1], j >> 1)`` gives
``u1 = (hi32(x) + 1/2) / 2^32`` in (0, 1) and ``u2 = lo32(x) / 2^32`` in [0, 1), and

    N = sqrt(-2 log u1) * cos(2 pi u2)   if j is even,   sqrt(-2 log u1) * sin(2 pi u2)   if odd,

so one hash yields two independent standard normals. The integers are identical everywhere;
the floating transform is done in the requested dtype, so float32 and float64 results agree to
float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["counter_normal", "counter_uniform", "derive_seed"]

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    """The int64 with the same 64 bits as the unsigned integer ``c``."""
    c &= _MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_SEED_OFFSET = _signed(0x5851F42D4C957F2D)
_LO32 = (1 << 32) - 1
_TWO_PI = 2.0 * math.pi
_INV_2_32 = 2.0**-32


def _mix_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (for scalar seeds and keys), as a signed int64."""
    x &= _MASK64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return _signed(x)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor (bitwise identical to ``_mix_int``)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _M1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _M2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def key_states_np(states: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``mix(states + keys * G)`` elementwise on int64 NumPy arrays (host-side, exact uint64).

    Shape:
        states, keys: (R,) int64. Returns (R, 1) int64.
    """
    with np.errstate(over="ignore"):
        x = states.astype(np.uint64) + keys.astype(np.uint64) * np.uint64(GOLDEN & _MASK64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(_M1 & _MASK64)
        x ^= x >> np.uint64(27)
        x *= np.uint64(_M2 & _MASK64)
        x ^= x >> np.uint64(31)
    return x.view(np.int64).reshape(-1, 1)


def seed_state(seed: int) -> int:
    """The hash state after absorbing ``seed`` (a Python int, any size)."""
    return _mix_int(int(seed) * 0x9E3779B97F4A7C15 + _SEED_OFFSET)


def absorb(state: int | torch.Tensor, key: int | torch.Tensor) -> int | torch.Tensor:
    """One absorption step ``mix(state + key * G)``; Python ints stay Python ints."""
    if isinstance(state, int) and isinstance(key, int):
        return _mix_int(state + key * 0x9E3779B97F4A7C15)
    return _mix(torch.as_tensor(state, dtype=torch.int64) + torch.as_tensor(key) * GOLDEN)


def derive_seed(seed: int, *keys: int) -> int:
    """An int64 seed that is a pure function of ``(seed, *keys)`` (a sub-stream's seed).

    Used to key a Brownian tree per purpose and training step: ``derive_seed(seed, key, step)``
    never collides with the tree of another (key, step) except by a 64-bit hash collision.
    """
    state = seed_state(seed)
    for k in keys:
        state = absorb(state, int(k))
    return int(state)


def box_muller(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Both Box-Muller normals ``(r cos(2 pi u2), r sin(2 pi u2))`` from 64-bit hashes ``x``."""
    hi = (x >> 32) & _LO32
    lo = x & _LO32
    u1 = (hi.to(dtype) + 0.5) * _INV_2_32
    theta = lo.to(dtype) * (_TWO_PI * _INV_2_32)
    r = torch.sqrt(-2.0 * torch.log(u1))
    return r * torch.cos(theta), r * torch.sin(theta)


def _as_keys(keys: tuple, device) -> list[int | torch.Tensor]:
    out: list[int | torch.Tensor] = []
    for i, k in enumerate(keys):
        if isinstance(k, torch.Tensor):
            if k.dtype.is_floating_point or k.dtype.is_complex or k.dtype == torch.bool:
                raise ValueError(f"keys[{i}] must be an integer tensor, got dtype {k.dtype}")
            out.append(k.to(device=device, dtype=torch.int64))
        elif isinstance(k, int) and not isinstance(k, bool):
            out.append(int(k))
        else:
            kind = type(k).__name__
            raise ValueError(f"keys[{i}] must be an int or an integer tensor, got {kind}")
    return out


def _device_of(keys: tuple, device):
    if device is not None:
        return torch.device(device)
    for k in keys:
        if isinstance(k, torch.Tensor):
            return k.device
    return torch.device("cpu")


def _hash_keys(seed: int, keys: list[int | torch.Tensor], device) -> torch.Tensor:
    """The 64-bit hash of ``(seed, *keys)`` as an int64 tensor of the broadcast shape."""
    state: int | torch.Tensor = seed_state(seed)
    # Absorb the Python-int keys that lead the list on the host, then tensors (broadcasting).
    for k in keys:
        state = absorb(state, k)
    if isinstance(state, int):
        state = torch.tensor(state, dtype=torch.int64)
    return state.to(device)


def counter_normal(
    seed: int,
    *keys: torch.Tensor | int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normals that are a pure function of ``(seed, *keys)``.

    With ``x = H(seed, k_1, ..., k_{n-1}, k_n >> 1)`` the SplitMix64 hash of the keys (see the
    module docstring), ``u1 = (hi32(x) + 1/2) 2^-32`` and ``u2 = lo32(x) 2^-32``,

        N(seed, k_1, ..., k_n) = sqrt(-2 log u1) * (cos(2 pi u2) if k_n even else sin(2 pi u2)),

    so normals at keys differing only in the last key's lowest bit are the two Box-Muller
    outputs of one hash, and are independent.

    Args:
        seed: Any Python int.
        *keys: At least one int64 tensor or Python int; tensors broadcast together.
        dtype: Floating dtype of the result (the integer hash does not depend on it).
        device: Device of the result; defaults to the device of the first tensor key, else CPU.

    Returns:
        A tensor of standard normals.

    Shape:
        The broadcast shape of the tensor keys (a 0-d tensor if all keys are ints).

    References:
        Steele, Lea and Flood (2014), "Fast splittable pseudorandom number generators";
        Salmon et al. (2011), "Parallel random numbers: as easy as 1, 2, 3" (counter-based RNGs);
        Box and Muller (1958), "A note on the generation of random normal deviates".
    """
    if not keys:
        raise ValueError("keys must hold at least one key, got none")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    device = _device_of(keys, device)
    ks = _as_keys(keys, device)
    last = ks[-1]
    if isinstance(last, int):
        pair, odd = last >> 1, torch.tensor(bool(last & 1), device=device)
    else:
        pair, odd = last >> 1, (last & 1).bool()
    x = _hash_keys(seed, [*ks[:-1], pair], device)
    z_cos, z_sin = box_muller(x, dtype)
    return torch.where(odd, z_sin, z_cos)


def normal_pairs_stream(states: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``counter_normal`` with last key ``arange(n)`` for each row state, two normals per hash.

    Equal to ``N(..., j)`` for ``j = 0 .. n-1`` where ``states`` holds the hash state after the
    leading keys (shape ``(R, 1)``): the fast path of the Brownian tree.

    Shape:
        states: (R, 1) int64. Returns (R, n).
    """
    n_pairs = (n + 1) // 2
    pairs = torch.arange(n_pairs, dtype=torch.int64, device=states.device) * GOLDEN
    x = _mix(states + pairs)
    z_cos, z_sin = box_muller(x, dtype)
    return torch.stack((z_cos, z_sin), dim=-1).reshape(states.shape[0], 2 * n_pairs)[:, :n]


def counter_uniform(
    seed: int,
    *keys: torch.Tensor | int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniforms on (0, 1) that are a pure function of ``(seed, *keys)``.

    ``U = ((x >>> 40) + 1/2) 2^-24`` in float32 and ``U = ((x >>> 11) + 1/2) 2^-53`` in float64
    (both exact, never 0 or 1, and equal to float32 rounding), with ``x = H(seed, *keys)`` the
    SplitMix64 hash of all keys (no pairing).

    Args:
        seed: Any Python int.
        *keys: At least one int64 tensor or Python int; tensors broadcast together.
        dtype: Floating dtype of the result.
        device: Device of the result; defaults to the device of the first tensor key, else CPU.

    Returns:
        A tensor of uniforms.

    Shape:
        The broadcast shape of the tensor keys.

    References:
        Steele, Lea and Flood (2014), "Fast splittable pseudorandom number generators".
    """
    if not keys:
        raise ValueError("keys must hold at least one key, got none")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    device = _device_of(keys, device)
    x = _hash_keys(seed, _as_keys(keys, device), device)
    if dtype == torch.float64:
        return (((x >> 11) & ((1 << 53) - 1)).to(dtype) + 0.5) * 2.0**-53
    return (((x >> 40) & ((1 << 24) - 1)).to(dtype) + 0.5) * 2.0**-24
