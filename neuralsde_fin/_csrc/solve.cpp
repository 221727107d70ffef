// The reversible Heun sampling solve of a fused drift / diffusion MLP pair in one kernel (see
// neuralsde_fin/_solvers/_native_step.py for the scheme, the blocking and the arguments).
// Built by neuralsde_fin/_native.py with SCALAR (float / double) defined.
//
// vexp: exp of a vector. On AVX2, float32 inlines Sleef's Sleef_expf8_u10 operation for
// operation (Cody-Waite reduction by ln 2, a degree-6 polynomial, 2^q in two factors; 1 ulp),
// bit-identical to the library call that Vectorized<float>::exp makes; other ISAs and float64
// call Sleef. vsilu: LipSwish's silu, x / (1 + exp(-x)); on AVX2 in float32 the exponent is
// clamped to [-87, 88.3], where 2^q is one normal float: bit-identical to the unclamped form
// for x >= -88.3, within 4e-37 of 0 below (both tested).
#include <vector>
using S = SCALAR;
using V = at::vec::Vectorized<S>;
constexpr int64_t L = V::size();

#include "vexp.h"


// Output activations: 0 none, 1 tanh, 2 sigmoid, 3 softplus (threshold 20, as F.softplus),
// 4 2 sigmoid(x) - 1 (tanh(x / 2): the fused fields' tanh, with the 2 folded into the weights).
static inline V activate(V x, int64_t code) {
    if (code == 1) return x.tanh();
    if (code == 2) return V(S(1)) / (V(S(1)) + vexp(x.neg()));
    if (code == 3) return V::blendv(vexp(x).log1p(), x, x > V(S(20)));
    if (code == 4) return V(S(2)) / (V(S(1)) + vexp(x.neg())) - V(S(1));
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
// dW_{lo+count} (has_after = 0 at the solve's end). The nets read the state from column in_lo
// on. The first n_euler rows are log-price rows: their diffusion is scaled by lp_scale[0], their
// drift is lp_rate + lp_coef |g_row|^2 and they are stepped at the left point,
// y1 = y + f dt + g dW (f, g dW the carried values).
extern "C" void kernel(S* ys, S* zs, S* fs, S* gs, const S* dws, const S* dw_after,
                       const S* times, const S* dts, const S* in_w, const S* in_t,
                       const S* in_b, const S* hid_w, const S* hid_b, const S* w_f,
                       const S* w_g, const S* b_f, const S* b_g, const S* lp_rate,
                       const S* lp_coef, const S* lp_scale, S* out, const int64_t* save,
                       const int64_t M, const int64_t d, const int64_t m, const int64_t w,
                       const int64_t n_hid, const int64_t lo, const int64_t count,
                       const int64_t first, const int64_t has_after, const int64_t diag,
                       const int64_t act_f, const int64_t act_g, const int64_t in_lo,
                       const int64_t n_euler, const int64_t R, const int64_t row0,
                       const int64_t row1)
{
    const int64_t gw = diag ? d : m * d;  // row width of g (noise-major)
    const int64_t dww = diag ? d : m;     // row width of dW
    const int64_t d_in = d - in_lo;       // columns the nets read
    const int64_t n_blocks = (row1 - row0 + R - 1) / R;
    const std::vector<S> in_p = pack(in_w, d_in, 2 * w), f_p = pack(w_f, w, d),
                         g_p = pack(w_g, w, gw);
    std::vector<std::vector<S>> hid_p;
    for (int64_t j = 0; j < 2 * n_hid; ++j) hid_p.push_back(pack(hid_w + j * w * w, w, w));
    #pragma omp parallel
    {
        std::vector<S> mem(R * (6 * w + 5 * d + gw) + 2 * w + n_euler);
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
        S* ye = bt + 2 * w;        // n_euler: the log-price rows' left-point step
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
                layer((n == 0 ? yb : zb) + in_lo, d, in_p, d_in, 2 * w, h0, 2 * w, bt, -1, nr);
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
                // log-price rows: diffusion scaled, drift rate + coef |g_row|^2 at the same point
                for (int64_t i = 0; i < nr && n_euler; ++i)
                    for (int64_t e = 0; e < n_euler; ++e) {
                        S ss = S(0);
                        for (int64_t j = 0; j < (diag ? 1 : m); ++j) {
                            S& gv = Gb[i * gw + j * d + e];
                            gv *= lp_scale[0];
                            ss += gv * gv;
                        }
                        Fb[i * d + e] = lp_rate[e] + lp_coef[e] * ss;
                    }

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
                    if (n > 0)  // log-price rows at the left point, before f and g dW move on
                        for (int64_t e = 0; e < n_euler; ++e) ye[e] = (gi[e] + fi[e] * dt) + yi[e];
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
                    if (n > 0)
                        for (int64_t e = 0; e < n_euler; ++e) {
                            yi[e] = ye[e];
                            if (dwni) zi[e] = ye[e];  // never read by the nets (in_lo >= n_euler)
                            if (yo) yo[i * d + e] = ye[e];
                        }
                }
            }
            for (int64_t a = 0; a < 4; ++a)
                std::copy(state[a], state[a] + nr * d, global[a] + r0 * d);
        }
    }
}
