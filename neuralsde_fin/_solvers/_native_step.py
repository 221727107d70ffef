"""The reversible Heun sampling loop on the CPU: GEMMs into reused buffers, native elementwise work.

For an :class:`MLPDriftDiffusion` solved without autograd in compiled mode
(``nsf.compiled_solvers()``) on the CPU, each step

    z1 = 2 y - z + f dt + g dW                       (carried from the previous step)
    f1, g1 = f(t1, z1), g(t1, z1)
    y1 = y + (f + f1) dt / 2 + (g + g1) dW / 2

runs as the fields' GEMMs (``torch.mm`` with ``out=`` into buffers kept for the whole solve, so
no step allocates or page-faults memory and no GEMM copies a bias first) and two kinds of native
kernels (``neuralsde_fin._native``):

* ``act``: ``h = silu(h + b [+ t w_t])`` in place on a GEMM's output, for every hidden layer
  (the LipSwish scale is folded into the next layer's weights, ``_nets``);
* ``final``: ``f1 = F + b_f``, ``g1 = G + b_g`` (output activation applied), the products
  ``g1 dW_n`` and ``g1 dW_{n+1}`` (noise-major g, or diagonal), ``y1`` written straight into the
  solve's output row (or a scratch buffer when that time is not an output), and the next
  ``z2 = g1 dW_{n+1} + f1 dt_{n+1} + 2 y1 - z1`` in place of ``z1``: one pass over the step's
  state.

On this 2-core machine the loop takes 0.66-0.68 s against 0.80-0.81 s for the ``torch.compile``-d
step (``_compiled._Step``) on the same increments (4096 paths x 252 steps, benchmark (a) of
``bench_solvers.py``): the GEMMs 0.40 s, ``act`` 0.14 s (264M Sleef exponentials and divisions),
``final`` 0.03 s. Values agree with the eager and compiled solves to float rounding (not bit for
bit: the additions are grouped differently).

Fields with an output activation other than None / tanh / sigmoid / softplus, other devices and
dtypes, and solves with autograd use the other paths (``_compiled``, ``_reversible_heun``).

References:
    Kidger, Foster, Li, Lyons (2021), Efficient and Accurate Gradients for Neural SDEs,
    arXiv:2105.13493 (reversible Heun).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralsde_fin import _native as _build

__all__ = ["NativeSampler", "native_sampler"]

_ACT = _build.PREFIX + r"""
extern "C" void kernel(SCALAR* buf, const SCALAR* bias, const SCALAR* wt, const SCALAR* tp,
                       const int64_t M, const int64_t N, const int64_t ld, const int64_t has_t)
{
    using V = at::vec::Vectorized<SCALAR>;
    constexpr int64_t L = V::size();
    const SCALAR t = has_t ? tp[0] : SCALAR(0);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
        SCALAR* row = buf + i * ld;
        for (int64_t k = 0; k < N; k += L) {
            const int64_t c = std::min(L, N - k);
            V b = V::loadu(bias + k, c);
            if (has_t) b = b + V::loadu(wt + k, c) * V(t);
            const V v = V::loadu(row + k, c) + b;
            (v / (V(SCALAR(1)) + v.neg().exp())).store(row + k, c);
        }
    }
}
"""

_FINAL = _build.PREFIX + r"""
template <typename V> static inline V activate(V x, int64_t code) {
    using S = typename V::value_type;
    if (code == 1) return x.tanh();
    if (code == 2) return V(S(1)) / (V(S(1)) + x.neg().exp());
    if (code == 3) return V::blendv((x.exp()).log1p(), x, x > V(S(20)));
    return x;
}

extern "C" void kernel(const SCALAR* F, const SCALAR* G, const SCALAR* bf, const SCALAR* bg,
                       const SCALAR* dw, const SCALAR* dwn, const SCALAR* y, SCALAR* f,
                       SCALAR* gdw, SCALAR* z, SCALAR* yout, const SCALAR* dtp,
                       const SCALAR* dtnp, const int64_t M, const int64_t d, const int64_t m,
                       const int64_t diag, const int64_t first, const int64_t act_f,
                       const int64_t act_g)
{
    using V = at::vec::Vectorized<SCALAR>;
    constexpr int64_t L = V::size();
    const SCALAR dt = dtp[0], dtn = dtnp[0];
    const V half_dt(SCALAR(0.5) * dt), half(SCALAR(0.5)), two(SCALAR(2)), vdt(dt), vdtn(dtn);
    const int64_t gw = diag ? d : m * d;  // row width of G
    const int64_t dww = diag ? d : m;     // row width of dW
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
        const SCALAR* Fi = F + i * d;
        const SCALAR* Gi = G + i * gw;
        const SCALAR* dwi = dw + i * dww;
        const SCALAR* dwni = dwn + i * dww;
        const SCALAR* yi = y + i * d;
        SCALAR* fi = f + i * d;
        SCALAR* gi = gdw + i * d;
        SCALAR* zi = z + i * d;
        SCALAR* yo = yout + i * d;
        for (int64_t k = 0; k < d; k += L) {
            const int64_t c = std::min(L, d - k);
            const V f1 = activate(V::loadu(Fi + k, c) + V::loadu(bf + k, c), act_f);
            V prod(SCALAR(0)), prod_next(SCALAR(0));
            if (diag) {
                const V g1 = activate(V::loadu(Gi + k, c) + V::loadu(bg + k, c), act_g);
                prod = g1 * V::loadu(dwi + k, c);
                prod_next = g1 * V::loadu(dwni + k, c);
            } else {
                for (int64_t j = 0; j < m; ++j) {
                    const V g1 = activate(
                        V::loadu(Gi + j * d + k, c) + V::loadu(bg + j * d + k, c), act_g);
                    prod = prod + V(dwi[j]) * g1;
                    prod_next = prod_next + V(dwni[j]) * g1;
                }
            }
            const V yv = V::loadu(yi + k, c);
            if (first) {  // f0, g0 dW0 and z1 = g0 dW0 + f0 dt + 2 y0 - y0
                f1.store(fi + k, c);
                prod.store(gi + k, c);
                (prod + f1 * vdt + two * yv - yv).store(zi + k, c);
            } else {
                const V y1 = yv + (V::loadu(fi + k, c) + f1) * half_dt
                             + half * (V::loadu(gi + k, c) + prod);
                const V z2 = prod_next + f1 * vdtn + two * y1 - V::loadu(zi + k, c);
                y1.store(yo + k, c);
                f1.store(fi + k, c);
                prod_next.store(gi + k, c);
                z2.store(zi + k, c);
            }
        }
    }
}
"""

#: Use the native loop when it applies (tests and benchmarks set it False to run the
#: ``torch.compile``-d step, which other devices use).
ENABLED = True

#: Output activations the ``final`` kernel applies (code passed to the kernel).
_FINAL_CODES = {None: 0, torch.tanh: 1, torch.sigmoid: 2, F.softplus: 3}


def _act(dtype: torch.dtype):
    scalar, _ = _build.scalar(dtype)
    p, cp, i64 = f"{scalar}*", f"const {scalar}*", "const int64_t"
    args = [p, cp, cp, cp, i64, i64, i64, i64]
    return _build.build(f"solvers.act.{scalar}", args, _ACT.replace("SCALAR", scalar))


def _final(dtype: torch.dtype):
    scalar, _ = _build.scalar(dtype)
    p, cp, i64 = f"{scalar}*", f"const {scalar}*", "const int64_t"
    args = [cp] * 7 + [p] * 4 + [cp, cp] + [i64] * 7
    return _build.build(f"solvers.final.{scalar}", args, _FINAL.replace("SCALAR", scalar))


class NativeSampler:
    """The no-autograd reversible Heun loop of one fused drift / diffusion field (see module).

    Shape:
        y0: (batch, d); dws: (steps, batch, m) (general noise) or (steps, batch, d) (diagonal);
        out: (len(out_steps), batch, d).
    """

    def __init__(self, field, like: Tensor) -> None:
        t = [x.detach() for x in field.tensors]
        self.in_w, self.in_t, self.in_b = t[0].contiguous(), t[1].reshape(-1), t[2].reshape(-1)
        self.hid_w, self.hid_b = t[3].contiguous(), t[4].contiguous()
        self.out_w = [t[5].contiguous(), t[6].contiguous()]
        self.out_b = [t[7].reshape(-1).contiguous(), t[8].reshape(-1).contiguous()]
        self.width = field.width
        self.diagonal = field.diagonal
        self.d = field.shape_g[0]
        self.m = 1 if self.diagonal else field.shape_g[1]
        self.codes = [_FINAL_CODES[fn] for fn in field.finals]
        self.act, self.final = _act(like.dtype), _final(like.dtype)
        self.buffers: dict[str, Tensor] = {}

    def _buffer(self, name: str, like: Tensor, *shape: int) -> Tensor:
        b = self.buffers.get(name)
        if b is None or b.shape != shape:
            b = self.buffers[name] = like.new_empty(shape)
        return b

    def _fields(self, t: Tensor, x: Tensor) -> None:
        """The nets' raw outputs F = h_f W_f and G = h_g W_g (biases added by ``final``)."""
        n, w = x.shape[0], self.width
        h = torch.mm(x, self.in_w, out=self._buffer("in", x, n, 2 * w))
        self.act(h, self.in_b, self.in_t, t, n, 2 * w, 2 * w, 1)
        hs = [h[:, :w], h[:, w:]]
        for j in range(self.hid_w.shape[0]):
            outs = []
            for i in range(2):
                o = torch.mm(hs[i], self.hid_w[j, i], out=self._buffer(f"h{j % 2}{i}", x, n, w))
                self.act(o, self.hid_b[j, i], self.hid_b[j, i], t, n, w, w, 0)
                outs.append(o)
            hs = outs
        for i, name in enumerate(("F", "G")):
            torch.mm(hs[i], self.out_w[i], out=self._buffer(name, x, n, self.out_w[i].shape[1]))

    def solve(self, y0: Tensor, tlist, dts, dws: Tensor, out: Tensor, save_at: dict) -> None:
        """Fill ``out[save_at[n]]`` with y_n for the saved steps n (``out[save_at[0]]`` is y0's
        row if 0 is saved, already written by the caller)."""
        n_paths, d = y0.shape
        noise = d if self.diagonal else self.m
        if dws.dtype != y0.dtype or tuple(dws.shape) != (len(dts), n_paths, noise):
            raise ValueError(
                f"Brownian increments must be {y0.dtype} of shape {(len(dts), n_paths, noise)}, "
                f"got {dws.dtype} of shape {tuple(dws.shape)}"
            )
        y0 = y0.contiguous()
        f, gdw, z = (self._buffer(k, y0, n_paths, d) for k in ("f", "gdw", "z"))
        scratch = [self._buffer(k, y0, n_paths, d) for k in ("ya", "yb")]
        dws = dws.contiguous()
        last = dws.shape[0] - 1
        zero = torch.zeros_like(dws[0])  # dW after the last step (its product is never used)
        times = torch.stack([torch.as_tensor(t, dtype=y0.dtype) for t in tlist]).to(y0.device)
        steps = torch.tensor([*dts, 0.0], dtype=y0.dtype, device=y0.device)
        codes, diag, m = self.codes, int(self.diagonal), self.m
        self._fields(times[0], y0)
        self.final(self.buffers["F"], self.buffers["G"], *self.out_b, dws[0], dws[0], y0, f, gdw,
                   z, z, steps[0], steps[0], n_paths, d, m, diag, 1, *codes)
        y = y0
        for n in range(dws.shape[0]):
            k = save_at.get(n + 1)
            y1 = out[k] if k is not None else scratch[0] if y is not scratch[0] else scratch[1]
            self._fields(times[n + 1], z)
            self.final(self.buffers["F"], self.buffers["G"], *self.out_b, dws[n],
                       dws[n + 1] if n < last else zero, y,
                       f, gdw, z, y1, steps[n], steps[n + 1], n_paths, d, m, diag, 0, *codes)
            y = y1


def native_sampler(field, like: Tensor) -> NativeSampler | None:
    """A :class:`NativeSampler` for ``field`` if it applies: a fused drift / diffusion field
    (two nets) with a supported output activation, float32 / float64 on the CPU, and the
    kernels build. None otherwise."""
    if not ENABLED or getattr(field, "n", 0) != 2 or like.device.type != "cpu":
        return None
    if any(fn not in _FINAL_CODES for fn in field.finals):
        return None
    if any(t.dtype != like.dtype or t.device != like.device for t in field.tensors):
        return None  # mixed dtypes: the eager path raises its own error
    if not _build.available(like.dtype, like.device, (_act, _final)):
        return None
    return NativeSampler(field, like)
