"""The reversible Heun sampling loop on the CPU: one native kernel for the whole solve.

For an :class:`MLPDriftDiffusion` (or a ``MarketModel``) on the CPU, sampled without autograd,
and in the forward pass of its adjoint solves (``sdeint(..., adjoint=True)``: only y_N and z_N
are kept, fed chunk by chunk as the adjoint fetches its increments,
:meth:`NativeSampler.begin`), unless acceleration is switched off (``_accel``), each step

    z1 = 2 y - z + f dt + g dW                       (carried from the previous step)
    f1, g1 = f(t1, z1), g(t1, z1)
    y1 = y + (f + f1) dt / 2 + (g + g1) dW / 2

runs inside one native kernel (``neuralsde_fin._native``) that takes many steps per call. Paths
are independent, so the batch is cut into blocks of R rows (a few dozen) and each thread carries
its blocks through *all* the call's steps: a block's states, hidden activations and field
outputs (about 100 kB) and the fields' weights (about 120 kB for the benchmark model) stay in
the core's L2 cache, and the threads meet once per call instead of at every GEMM.

Per step and block, every layer ``h = act(x W + b)`` is a register-tiled GEMM (6 rows x 2
vectors of accumulators, ``at::vec::fmadd`` over k in order, the weights packed once per call
into zero-padded panels of the tile's width) whose epilogue adds the bias (and the time term
``t w_t`` of the input layer) and applies LipSwish's ``silu`` (its scale is folded into the next
layer's weights, ``_nets``) or the output activation while the tile is still in registers. Then
one pass over the block's rows forms g1 dW_n and g1 dW_{n+1} (noise-major g, or diagonal), y1
(written to the output row when that time is an output) and the next
z2 = g1 dW_{n+1} + f1 dt_{n+1} + 2 y1 - z1.

The solve runs as kernel calls of at most ``CHUNK_PATHS`` paths (more on machines with many
cores) x ``CHUNK_PATH_STEPS / paths`` steps (a fraction of a second each),
the block states carried between calls: Ctrl-C is seen between calls, and a large batch is
solved group after group, each through all its steps while its state stays in cache. Chunking
costs nothing measurable. Every path's arithmetic is its own row's, in a fixed order: a path's
values do not depend on the batch size, the block size, the chunking or the number of threads
(tested bit for bit).

Values agree with the eager solve to float rounding (the sums of the same products run in
another order); measured speed: ``benchmarks/README.md``.

The nets may read a slice of the state (``input_start``, the market model's latent state), and
the field may declare log-price rows (``_fused.LogPriceRows``: drift ``rate + coef |g_i|^2``,
stepped at the left point), which the kernel computes in the same pass: the market model's
risk-neutral sample runs in this one solve.

The source is ``neuralsde_fin/_csrc/solve.cpp``.

Fields with an output activation other than None / tanh / sigmoid / softplus, other devices and
dtypes, and solves that backpropagate through the steps use the other paths (``_compiled``,
``_reversible_heun``).

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun). Goto, van de Geijn (2008), Anatomy of High-Performance
    Matrix Multiplication, ACM TOMS 34(3) (register-tiled GEMM micro-kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralsde_fin import _accel
from neuralsde_fin import _native as _build
from neuralsde_fin._solvers._fused import tanh_from_sigmoid

__all__ = ["NativeSampler", "native_sampler", "native_wanted"]

#: ``vexp``: exp of a vector. On AVX2, float32 inlines Sleef's ``Sleef_expf8_u10`` operation for
#: operation (Cody-Waite reduction by ln 2, a degree-6 polynomial, 2^q in two factors; 1 ulp),
#: bit-identical to the library call that ``Vectorized<float>::exp`` makes, and 7% faster over
#: the solve as the call no longer spills the tile's registers; other ISAs and float64 call Sleef.
#: ``vsilu``: LipSwish's silu, x / (1 + exp(-x)). On AVX2 in float32 the exponent is clamped to
#: [-87, 88.3], where 2^q is one normal float (one multiply, no overflow / underflow blends):
#: bit-identical to the unclamped form for x >= -88.3, within 4e-37 of 0 below (tested); 5% off
#: the benchmark's solve (0.536 -> 0.508 s).
def native_wanted() -> bool:
    """Whether a no-autograd solve should take the native loop: the acceleration switch
    (``_accel.native``: on unless switched off). Every size takes it, so a path's values do not
    depend on the batch it is solved in."""
    return _accel.native()


#: Output activations the kernel applies (code passed to it).
_FINAL_CODES = {None: 0, torch.tanh: 1, torch.sigmoid: 2, F.softplus: 3, tanh_from_sigmoid: 4}

#: Paths per kernel call (at least; 8 blocks per thread on machines with more cores): larger
#: batches are solved group after group, each carried through all its steps while its state
#: (4096 x 32 x 4 values: 2 MB) stays in cache.
CHUNK_PATHS = 4096
#: Paths x steps per kernel call: a fraction of a second for common models, so that Python sees
#: Ctrl-C between calls; each call reloads the block states (a few kB per block).
CHUNK_PATH_STEPS = 1 << 18

#: Rows per block: a multiple of the 6-row register tile (benchmarks/README.md: 24-48 alike).
_BLOCK_ROWS = 48
#: Upper bound of a block's working set (states, activations, field outputs), within L2.
_BLOCK_BYTES = 256 * 1024


def _solve(dtype: torch.dtype):
    args = ["S*"] * 4 + ["const S*"] * 16 + ["S*", "const int64_t*"] + ["const int64_t"] * 17
    return _build.kernel("solve.cpp", dtype, args)


def block_rows(n_paths: int, row_bytes: int, threads: int) -> int:
    """Rows per block: at most ``_BLOCK_ROWS``, a working set within ``_BLOCK_BYTES``, and no
    more than an even share of the paths per thread (a multiple of 6 where possible)."""
    rows = min(_BLOCK_ROWS, max(6, _BLOCK_BYTES // row_bytes // 6 * 6))
    share = -(-n_paths // max(threads, 1))
    return max(1, min(rows, -(-share // 6) * 6))


class NativeSampler:
    """The no-autograd reversible Heun solve of one fused drift / diffusion field (see module).

    Shape:
        y0: (batch, d); dws: (steps, batch, m) (general noise) or (steps, batch, d) (diagonal);
        out: (len(out_steps), batch, d).
    """

    def __init__(self, field, like: Tensor) -> None:
        t = [x.detach().contiguous() for x in field.tensors]
        self.in_w, self.in_t, self.in_b = t[0], t[1].reshape(-1), t[2].reshape(-1)
        self.hid_w, self.hid_b = t[3], t[4]  # (depth - 1, 2, w, w), (depth - 1, 2, 1, w)
        self.out_w, self.out_b = (t[5], t[6]), (t[7].reshape(-1), t[8].reshape(-1))
        self.width = field.width
        self.diagonal = field.diagonal
        self.d = field.shape_g[0]
        self.m = 1 if self.diagonal else field.shape_g[1]
        self.g_width = self.d if self.diagonal else self.m * self.d  # row width of g
        self.codes = [_FINAL_CODES[fn] for fn in field.finals]
        self.in_lo, self.n_euler = field.in_lo, field.euler_rows
        lp = field.log_price
        zero = like.new_zeros(max(self.n_euler, 1))
        self.lp_rate = zero if lp is None else lp.rate.to(like).contiguous()
        self.lp_coef = zero if lp is None else lp.var_coef.to(like).contiguous()
        scale = 1.0 if lp is None or lp.scale is None else float(lp.scale)
        self.lp_scale = torch.tensor([scale], dtype=like.dtype)
        self.kernel = _solve(like.dtype)

    def solve(self, y0: Tensor, tlist, dts, dws: Tensor, out: Tensor, save_at: dict) -> None:
        """Fill ``out[save_at[n]]`` with y_n for the saved steps n > 0 (``out[save_at[0]]`` is
        y0's row if 0 is saved, written by the caller), on the whole grid's increments."""
        self._check(y0, dws, len(dts))
        if dts:
            self.begin(y0, tlist, dts, out, save_at).advance(0, dws, None)

    def _check(self, y0: Tensor, dws: Tensor, n: int) -> None:
        noise = y0.shape[1] if self.diagonal else self.m
        if dws.dtype != y0.dtype or tuple(dws.shape) != (n, y0.shape[0], noise):
            raise ValueError(
                f"Brownian increments must be {y0.dtype} of shape {(n, y0.shape[0], noise)}, "
                f"got {dws.dtype} of shape {tuple(dws.shape)}"
            )

    def begin(self, y0: Tensor, tlist, dts, out: Tensor, save_at: dict) -> _Run:
        """A solve fed chunk by chunk (:meth:`_Run.advance`), as the adjoint fetches increments;
        arguments as :meth:`solve`."""
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        return _Run(self, y0, tlist, dts, out, save_at)


class _Run:
    """One solve in progress: the state (y, z, f, g dW) and the grid, advanced by chunks of
    increments. After the last step ``y`` and ``z`` are y_N and z_N."""

    def __init__(self, sampler: NativeSampler, y0: Tensor, tlist, dts, out: Tensor, save_at):
        self.sampler, self.y0, self.out = sampler, y0, out
        self.n_steps = len(dts)
        self.times = torch.tensor([float(t) for t in tlist], dtype=y0.dtype)
        self.steps = torch.tensor([*map(float, dts), 0.0], dtype=y0.dtype)
        self.save = torch.full((self.n_steps + 1,), -1, dtype=torch.int64)
        for n, k in save_at.items():
            self.save[n] = k
        self.state = [y0.clone(memory_format=torch.contiguous_format)]
        self.state += [torch.empty_like(self.state[0]) for _ in range(3)]  # z, f, g dW
        self.y, self.z = self.state[0], self.state[1]

    def advance(self, lo: int, dws: Tensor, dw_after: Tensor | None) -> None:
        """Steps lo .. lo + len(dws) - 1 on their increments ``dws``; ``dw_after`` is the next
        step's increment (None after the last step). Chunks must come in order from lo = 0."""
        s, (n_paths, d) = self.sampler, self.y0.shape
        self.sampler._check(self.y0, dws, dws.shape[0])
        if (dw_after is None) != (lo + dws.shape[0] == self.n_steps):
            raise ValueError("dw_after must be given for every chunk but the last")
        w, threads = s.width, torch.get_num_threads()
        row_bytes = (6 * w + 5 * d + s.g_width) * self.y0.element_size()
        group = min(n_paths, max(CHUNK_PATHS, 8 * _BLOCK_ROWS * threads))
        chunk = max(1, CHUNK_PATH_STEPS // group)
        dws = dws.contiguous()
        last = lo + dws.shape[0]
        zero = dws.new_zeros(dws.shape[1:])
        after = dw_after.contiguous() if dw_after is not None else zero
        for row0 in range(0, n_paths, group):
            row1 = min(n_paths, row0 + group)
            rows = block_rows(row1 - row0, row_bytes, threads)
            for a in range(lo, last, chunk):
                b = min(a + chunk, last)
                nxt = dws[b - lo] if b < last else after
                s.kernel(*self.state, dws[a - lo : b - lo], nxt, self.times, self.steps, s.in_w,
                         s.in_t, s.in_b, s.hid_w, s.hid_b, *s.out_w, *s.out_b, s.lp_rate,
                         s.lp_coef, s.lp_scale, self.out, self.save, n_paths, d, s.m, w,
                         s.hid_w.shape[0], a, b - a, int(a == 0), int(b < self.n_steps),
                         int(s.diagonal), *s.codes, s.in_lo, s.n_euler, rows, row0, row1)


def native_sampler(field, like: Tensor) -> NativeSampler | None:
    """A :class:`NativeSampler` for ``field`` if it applies: a fused drift / diffusion field
    (two nets) with a supported output activation, float32 / float64 on the CPU, and the
    kernel builds. None otherwise."""
    if getattr(field, "n", 0) != 2 or like.device.type != "cpu":
        return None
    if any(fn not in _FINAL_CODES for fn in field.finals):
        return None
    lp = getattr(field, "log_price", None)
    if lp is not None and torch.is_tensor(lp.scale) and (lp.scale.numel() > 1
                                                         or lp.scale.requires_grad):
        return None  # a volatility scale per path or under autograd: the eager step
    if any(t.dtype != like.dtype or t.device != like.device for t in field.tensors):
        return None  # mixed dtypes: the eager path raises its own error
    if not _build.available(like.dtype, like.device, (_solve,)):
        return None
    return NativeSampler(field, like)
