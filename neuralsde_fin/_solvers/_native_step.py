"""The reversible Heun sampling loop on the CPU: one native kernel for the whole solve.

For an :class:`MLPDriftDiffusion` on the CPU, sampled without autograd (every solve in compiled
mode, ``nsf.compiled_solvers()``; by default the solves of at least ``AUTO_MIN_VALUES`` state
values per time), and in the forward pass of its adjoint solves (``sdeint(..., adjoint=True)``
under the same rule: only y_N and z_N are kept, fed chunk by chunk as the adjoint fetches its
increments, :meth:`NativeSampler.begin`), each step

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
cores) x ``CHUNK_PATH_STEPS / paths`` steps (4096 x 64 for the benchmark, about 0.13 s each),
the block states carried between calls: Ctrl-C is seen between calls, and a large batch is
solved group after group, each through all its steps while its state stays in cache. Chunking
costs nothing measurable. Every path's arithmetic is its own row's, in a fixed order: a path's
values do not depend on the batch size, the block size, the chunking or the number of threads
(tested bit for bit).

On this 2-core machine the loop takes 0.49-0.50 s for benchmark (a) of ``bench_solvers.py``
(4096 paths x 252 steps, precomputed increments, a fresh output) against 0.66-0.68 s for the
previous native loop (MKL GEMMs into buffers kept for the solve, native elementwise kernels
between them) and 0.80 s for the ``torch.compile``-d step. Into an output already in memory:
0.455 s, of which the GEMMs take about 0.35 s (the machine's measured ``torch.mm`` fp32 peak),
LipSwish about 0.075 s (264M exponentials and divisions; 0.105 s before ``vsilu``) and the
update pass 0.04 s; a fresh output's first touch adds 0.04 s. Values agree with the eager solve
to float rounding (the float32 benchmark model gives the MKL-based loop's values exactly;
otherwise the sums of the same products run in another order).

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

from neuralsde_fin import _native as _build

__all__ = ["AUTO_MIN_VALUES", "NativeSampler", "native_sampler", "native_wanted"]

#: ``vexp``: exp of a vector. On AVX2, float32 inlines Sleef's ``Sleef_expf8_u10`` operation for
#: operation (Cody-Waite reduction by ln 2, a degree-6 polynomial, 2^q in two factors; 1 ulp),
#: bit-identical to the library call that ``Vectorized<float>::exp`` makes, and 7% faster over
#: the solve as the call no longer spills the tile's registers; other ISAs and float64 call Sleef.
#: ``vsilu``: LipSwish's silu, x / (1 + exp(-x)). On AVX2 in float32 the exponent is clamped to
#: [-87, 88.3], where 2^q is one normal float (one multiply, no overflow / underflow blends):
#: bit-identical to the unclamped form for x >= -88.3, within 4e-37 of 0 below (tested); 5% off
#: the benchmark's solve (0.536 -> 0.508 s).
_VEXP = r"""
template <typename W> static inline W vexp(W x) { return x.exp(); }
#if defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
// Sleef's reduction and polynomial: exp(d) = u 2^q with q = rint(d / ln 2), u in [0.7, 1.42].
static inline __m256 exp_mantissa(__m256 d, __m256i& qi) {
    const __m256 r = _mm256_mul_ps(d, _mm256_set1_ps(1.442695040888963407359924681f));
    const __m256 q = _mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    qi = _mm256_cvtps_epi32(q);
    __m256 s = _mm256_fmadd_ps(q, _mm256_set1_ps(-0.693145751953125f), d);
    s = _mm256_fmadd_ps(q, _mm256_set1_ps(-1.428606765330187045e-06f), s);
    __m256 u = _mm256_set1_ps(0.000198527617612853646278381f);
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00139304355252534151077271f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00833336077630519866943359f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.0416664853692054748535156f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.166666671633720397949219f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.5f));
    return _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(s, s), u, s));
}

static inline at::vec::Vectorized<float> vexp(at::vec::Vectorized<float> v) {
    const __m256 d = v;
    __m256i qi;
    __m256 u = exp_mantissa(d, qi);
    const __m256i h = _mm256_srai_epi32(qi, 1);  // 2^q as 2^h 2^(q - h): no overflow of 2^q
    const __m256i bias = _mm256_set1_epi32(0x7f);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    const __m256 p2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(qi, h), bias), 23));
    u = _mm256_mul_ps(_mm256_mul_ps(u, p1), p2);
    u = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(-104.0f), _CMP_LT_OQ), u);
    return _mm256_blendv_ps(u, _mm256_set1_ps(INFINITY),
                            _mm256_cmp_ps(_mm256_set1_ps(104.0f), d, _CMP_LT_OQ));
}
#endif
template <typename W> static inline W vsilu(W x) {
    return x / (W(typename W::value_type(1)) + vexp(x.neg()));
}
#if defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
// silu(x) = x / (1 + exp(-x)) with exp(-x) on [-87, 88.3] only, where 2^q is one normal float:
// there it is vexp bit for bit; for x > 87, 1 + exp(-x) rounds to 1 either way; for x < -88.3
// x is clamped too, giving -4e-37 where the unclamped form gives -0.0 (silu(-88.3) is -2e-37).
static inline at::vec::Vectorized<float> vsilu(at::vec::Vectorized<float> v) {
    const __m256 x = v;
    const __m256 xc = _mm256_max_ps(_mm256_set1_ps(-88.3f), x);  // NaN stays NaN
    const __m256 d = _mm256_max_ps(_mm256_set1_ps(-87.0f), _mm256_sub_ps(_mm256_setzero_ps(), xc));
    __m256i qi;
    __m256 u = exp_mantissa(d, qi);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(qi, _mm256_set1_epi32(0x7f)), 23);
    u = _mm256_mul_ps(u, _mm256_castsi256_ps(e));
    return _mm256_div_ps(xc, _mm256_add_ps(_mm256_set1_ps(1.0f), u));
}
#endif
"""

_SOLVE = _build.PREFIX + r"""
#include <vector>
using S = SCALAR;
using V = at::vec::Vectorized<S>;
constexpr int64_t L = V::size();
""" + _VEXP + r"""

// Output activations: 0 none, 1 tanh, 2 sigmoid, 3 softplus (threshold 20, as F.softplus).
static inline V activate(V x, int64_t code) {
    if (code == 1) return x.tanh();
    if (code == 2) return V(S(1)) / (V(S(1)) + vexp(x.neg()));
    if (code == 3) return V::blendv(vexp(x).log1p(), x, x > V(S(20)));
    return x;
}

// C[MR, NV vectors] = epi(A[MR, K] B[K, NV vectors] + bias), B a packed panel (row stride ldb,
// zero-padded); the last vector stores c <= L columns. epi: -1 silu (hidden layers), else an
// output activation code.
template <int MR, int NV>
static inline void tile(const S* A, int64_t lda, const S* B, int64_t ldb, int64_t K, S* C,
                        int64_t ldc, const S* bias, int64_t epi, int64_t c)
{
    V acc[MR][NV];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = V(S(0));
    for (int64_t k = 0; k < K; ++k) {
        V b[NV];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) b[v] = V::loadu(B + k * ldb + v * L);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const V a(A[r * lda + k]);
            #pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] = at::vec::fmadd(a, b[v], acc[r][v]);
        }
    }
    #pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
        const int64_t cnt = v == NV - 1 ? c : L;
        const V bv = V::loadu(bias + v * L, cnt);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            V x = acc[r][v] + bv;
            x = epi < 0 ? vsilu(x) : activate(x, epi);
            x.store(C + r * ldc + v * L, cnt);
        }
    }
}

template <int NV>
static void tile_rows(const S* A, int64_t lda, const S* B, int64_t ldb, int64_t K, S* C,
                      int64_t ldc, const S* bias, int64_t epi, int64_t c, int64_t R)
{
    int64_t r = 0;
    for (; r + 6 <= R; r += 6)
        tile<6, NV>(A + r * lda, lda, B, ldb, K, C + r * ldc, ldc, bias, epi, c);
    A += r * lda;
    C += r * ldc;
    switch (R - r) {
        case 5: tile<5, NV>(A, lda, B, ldb, K, C, ldc, bias, epi, c); break;
        case 4: tile<4, NV>(A, lda, B, ldb, K, C, ldc, bias, epi, c); break;
        case 3: tile<3, NV>(A, lda, B, ldb, K, C, ldc, bias, epi, c); break;
        case 2: tile<2, NV>(A, lda, B, ldb, K, C, ldc, bias, epi, c); break;
        case 1: tile<1, NV>(A, lda, B, ldb, K, C, ldc, bias, epi, c); break;
        default: break;
    }
}

constexpr int64_t P = 2 * L;  // panel width: the tile's columns

// B[K, N] (row-major) as panels of P columns, each K x P contiguous, the last zero-padded: a
// tile then reads its weights sequentially (a few pages) instead of one row per k at stride N.
static std::vector<S> pack(const S* B, int64_t K, int64_t N)
{
    std::vector<S> out(((N + P - 1) / P) * K * P, S(0));
    for (int64_t n = 0; n < N; n += P)
        for (int64_t k = 0; k < K; ++k)
            std::copy(B + k * N + n, B + k * N + std::min(N, n + P), out.data() + (n * K + k * P));
    return out;
}

// One layer on R rows: C[R, N] = epi(A[R, K] B[K, N] + bias), B packed by pack().
static void layer(const S* A, int64_t lda, const std::vector<S>& Bp, int64_t K, int64_t N, S* C,
                  int64_t ldc, const S* bias, int64_t epi, int64_t R)
{
    for (int64_t n = 0; n < N; n += P) {
        const S* B = Bp.data() + n * K;
        const int64_t cols = std::min(P, N - n);
        if (cols > L) tile_rows<2>(A, lda, B, P, K, C + n, ldc, bias + n, epi, cols - L, R);
        else tile_rows<1>(A, lda, B, P, K, C + n, ldc, bias + n, epi, cols, R);
    }
}

// Steps lo .. lo + count - 1 (y_{lo+1} .. y_{lo+count}) of a solve, for the paths row0 .. row1 - 1,
// on the state y, z, f, gdw (M x d each, read and written): y = y_n, z = z_{n+1},
// f = f(t_n, z_n), gdw = g(t_n, z_n) dW_n after step n - 1; with first = 1 (lo = 0), y holds y0
// and the rest is set here. dws holds dW_lo .. dW_{lo+count-1} (count x M x noise); dw_after is
// dW_{lo+count} (has_after = 0 at the solve's end).
extern "C" void kernel(S* ys, S* zs, S* fs, S* gs, const S* dws, const S* dw_after,
                       const S* times, const S* dts, const S* in_w, const S* in_t,
                       const S* in_b, const S* hid_w, const S* hid_b, const S* w_f,
                       const S* w_g, const S* b_f, const S* b_g, S* out, const int64_t* save,
                       const int64_t M, const int64_t d, const int64_t m, const int64_t w,
                       const int64_t n_hid, const int64_t lo, const int64_t count,
                       const int64_t first, const int64_t has_after, const int64_t diag,
                       const int64_t act_f, const int64_t act_g, const int64_t R,
                       const int64_t row0, const int64_t row1)
{
    const int64_t gw = diag ? d : m * d;  // row width of g (noise-major)
    const int64_t dww = diag ? d : m;     // row width of dW
    const int64_t n_blocks = (row1 - row0 + R - 1) / R;
    const std::vector<S> in_p = pack(in_w, d, 2 * w), f_p = pack(w_f, w, d), g_p = pack(w_g, w, gw);
    std::vector<std::vector<S>> hid_p;
    for (int64_t j = 0; j < 2 * n_hid; ++j) hid_p.push_back(pack(hid_w + j * w * w, w, w));
    #pragma omp parallel
    {
        std::vector<S> mem(R * (6 * w + 5 * d + gw) + 2 * w);
        S* h0 = mem.data();        // R x 2w: the input layer of both nets
        S* ha = h0 + R * 2 * w;    // R x 2w, R x 2w: hidden layers, alternating
        S* hb = ha + R * 2 * w;
        S* Fb = hb + R * 2 * w;    // R x d: f1
        S* Gb = Fb + R * d;        // R x gw: g1
        S* yb = Gb + R * gw;       // R x d each: y, z, f, g dW of the block
        S* zb = yb + R * d;
        S* fb = zb + R * d;
        S* gb = fb + R * d;
        S* bt = gb + R * d;        // 2w: input bias + t w_t
        #pragma omp for schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t r0 = row0 + blk * R, nr = std::min(R, row1 - r0);
            S* const state[4] = {yb, zb, fb, gb};
            S* const global[4] = {ys, zs, fs, gs};
            for (int64_t a = 0; a < (first ? 1 : 4); ++a)
                std::copy(global[a] + r0 * d, global[a] + (r0 + nr) * d, state[a]);
            // fields at (t_0, y0) for n = 0 (first), else at (t_n, z_n), then the step to n
            for (int64_t n = first ? 0 : lo + 1; n <= lo + count; ++n) {
                const S t = times[n];
                for (int64_t k = 0; k < 2 * w; ++k) bt[k] = in_b[k] + t * in_t[k];
                layer(n == 0 ? yb : zb, d, in_p, d, 2 * w, h0, 2 * w, bt, -1, nr);
                const S* hin = h0;
                S* hout = ha;
                for (int64_t j = 0; j < n_hid; ++j) {
                    for (int64_t i = 0; i < 2; ++i)
                        layer(hin + i * w, 2 * w, hid_p[j * 2 + i], w, w,
                              hout + i * w, 2 * w, hid_b + (j * 2 + i) * w, -1, nr);
                    hin = hout;
                    hout = hout == ha ? hb : ha;
                }
                layer(hin, 2 * w, f_p, w, d, Fb, d, b_f, act_f, nr);
                layer(hin + w, 2 * w, g_p, w, gw, Gb, gw, b_g, act_g, nr);

                // n = 0: f0, g0 dW_0, z1 = g0 dW_0 + f0 dt_0 + 2 y0 - y0; else the step to n.
                const S dt = dts[n == 0 ? 0 : n - 1], dtn = dts[n];
                const int64_t i0 = n == 0 ? 0 : n - 1 - lo;  // dW_{n-1} (dW_0 for n = 0)
                const S* dw = dws + (i0 * M + r0) * dww;
                const S* dwn = n < lo + count ? dws + ((n - lo) * M + r0) * dww
                               : has_after ? dw_after + r0 * dww : nullptr;
                S* yo = n > 0 && save[n] >= 0 ? out + (save[n] * M + r0) * d : nullptr;
                const V half_dt(S(0.5) * dt), half(S(0.5)), two(S(2)), vdt(dt), vdtn(dtn);
                for (int64_t i = 0; i < nr; ++i) {
                    const S* Fi = Fb + i * d;
                    const S* Gi = Gb + i * gw;
                    const S* dwi = dw + i * dww;
                    const S* dwni = dwn ? dwn + i * dww : nullptr;
                    S* yi = yb + i * d;
                    S* fi = fb + i * d;
                    S* gi = gb + i * d;
                    S* zi = zb + i * d;
                    for (int64_t k = 0; k < d; k += L) {
                        const int64_t c = std::min(L, d - k);
                        const V f1 = V::loadu(Fi + k, c);
                        V prod(S(0)), prod_next(S(0));
                        if (diag) {
                            const V g1 = V::loadu(Gi + k, c);
                            prod = g1 * V::loadu(dwi + k, c);
                            if (dwni) prod_next = g1 * V::loadu(dwni + k, c);
                        } else {
                            for (int64_t j = 0; j < m; ++j) {
                                const V g1 = V::loadu(Gi + j * d + k, c);
                                prod = prod + V(dwi[j]) * g1;
                                if (dwni) prod_next = prod_next + V(dwni[j]) * g1;
                            }
                        }
                        const V yv = V::loadu(yi + k, c);
                        if (n == 0) {
                            f1.store(fi + k, c);
                            prod.store(gi + k, c);
                            (prod + f1 * vdt + two * yv - yv).store(zi + k, c);
                        } else {
                            const V y1 = yv + (V::loadu(fi + k, c) + f1) * half_dt
                                         + half * (V::loadu(gi + k, c) + prod);
                            const V z2 = prod_next + f1 * vdtn + two * y1 - V::loadu(zi + k, c);
                            y1.store(yi + k, c);
                            if (yo) y1.store(yo + i * d + k, c);
                            f1.store(fi + k, c);
                            prod_next.store(gi + k, c);
                            if (dwni) z2.store(zi + k, c);  // at the end z stays z_N
                        }
                    }
                }
            }
            for (int64_t a = 0; a < 4; ++a)
                std::copy(state[a], state[a] + nr * d, global[a] + r0 * d);
        }
    }
}
"""

#: Use the native loop when it applies (tests and benchmarks set it False to run the
#: ``torch.compile``-d step, which other devices use).
ENABLED = True

#: Without an explicit mode (``nsf.compiled_solvers`` / ``NEURALSDE_FIN_COMPILE`` unset), solves
#: of at least this many state values per time (paths x state) take the native loop: the
#: Brownian tree's kernel rule (``_brownian._kernels.COMPILE_MIN_ELEMENTS``), so the first such
#: solve in a process pays the kernels' loading (2.5-3 s, mostly importing Inductor) once.
AUTO_MIN_VALUES = 2**14


def native_wanted(mode: bool | None, n_values: int) -> bool:
    """Whether a no-autograd solve with ``n_values`` state values per time should take the
    native loop: the explicit compile ``mode`` if one is set, else ``n_values`` of at least
    ``AUTO_MIN_VALUES``."""
    return mode if mode is not None else n_values >= AUTO_MIN_VALUES

#: Output activations the kernel applies (code passed to it).
_FINAL_CODES = {None: 0, torch.tanh: 1, torch.sigmoid: 2, F.softplus: 3}

#: Paths per kernel call (at least; 8 blocks per thread on machines with more cores): larger
#: batches are solved group after group, each carried through all its steps while its state
#: (4096 x 32 x 4 values: 2 MB) stays in cache.
CHUNK_PATHS = 4096
#: Paths x steps per kernel call: about 0.13 s for the benchmark model, so that Python sees
#: Ctrl-C between calls; each call reloads the block states (a few kB per block).
CHUNK_PATH_STEPS = 1 << 18

#: Rows per block: a multiple of the 6-row register tile; 24-48 measured alike here.
_BLOCK_ROWS = 48
#: Upper bound of a block's working set (states, activations, field outputs), within L2.
_BLOCK_BYTES = 256 * 1024


def _solve(dtype: torch.dtype):
    scalar, _ = _build.scalar(dtype)
    p, cp, i64 = f"{scalar}*", f"const {scalar}*", "const int64_t"
    args = [p] * 4 + [cp] * 13 + [p, "const int64_t*"] + [i64] * 15
    return _build.build(f"solvers.solve.{scalar}", args, _SOLVE.replace("SCALAR", scalar))


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
                         s.in_t, s.in_b, s.hid_w, s.hid_b, *s.out_w, *s.out_b, self.out,
                         self.save, n_paths, d, s.m, w, s.hid_w.shape[0], a, b - a, int(a == 0),
                         int(b < self.n_steps), int(s.diagonal), *s.codes, rows, row0, row1)


def native_sampler(field, like: Tensor) -> NativeSampler | None:
    """A :class:`NativeSampler` for ``field`` if it applies: a fused drift / diffusion field
    (two nets) with a supported output activation, float32 / float64 on the CPU, and the
    kernel builds. None otherwise."""
    if not ENABLED or getattr(field, "n", 0) != 2 or like.device.type != "cpu":
        return None
    if any(fn not in _FINAL_CODES for fn in field.finals):
        return None
    if any(t.dtype != like.dtype or t.device != like.device for t in field.tensors):
        return None  # mixed dtypes: the eager path raises its own error
    if not _build.available(like.dtype, like.device, (_solve,)):
        return None
    return NativeSampler(field, like)
