// The Brownian tree's level update in one pass over memory (see _brownian/_native.py):
//   table[start + r, 2j + s] = (ca_r table[ra_r, 2j + s] + cb_r table[rb_r, 2j + s]) + sig_r N_rjs
// with N the Box-Muller pair of SplitMix64(states_r + j G). The same at::vec operations in the
// same order as the torch.compile kernel of _brownian/_kernels.py: the values agree bit for bit.
// Built by neuralsde_fin/_native.py with SCALAR (float / double) and NI (int64 vectors per
// SCALAR vector) defined.
extern "C" void kernel(SCALAR* table, const int64_t* ra, const int64_t* rb,
                       const SCALAR* ca, const SCALAR* cb, const SCALAR* sig,
                       const int64_t* states, const int64_t* pairs, const int64_t n_cols,
                       const int64_t start, const int64_t n_rows, const int64_t n_table_rows)
{
    if (start < 1 || start + n_rows > n_table_rows || n_cols % 2 != 0)
        throw std::out_of_range("level_update: rows start .. start + R outside the table");
    for (int64_t r = 0; r < n_rows; ++r)
        if (ra[r] < 0 || ra[r] >= start || rb[r] < 0 || rb[r] >= start)
            throw std::out_of_range("level_update: parent row not below the level");
    using V = at::vec::Vectorized<SCALAR>;
    using VI = at::vec::VectorizedN<int64_t, NI>;
    constexpr int64_t L = V::size();
    constexpr int64_t BLOCK = 1024;  // pairs per work item
    const int64_t n_pairs = n_cols / 2;
    const int64_t n_blocks = (n_pairs + BLOCK - 1) / BLOCK;
    const int64_t n_items = n_rows * n_blocks;
    const SCALAR c_u1 = static_cast<SCALAR>(2.3283064365386963e-10);  // 2^-32
    const SCALAR c_theta = static_cast<SCALAR>(6.283185307179586 * 2.3283064365386963e-10);
    #pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < n_items; ++item) {
        const int64_t r = item / n_blocks;
        const int64_t p0 = (item % n_blocks) * BLOCK;
        const int64_t p1 = std::min(p0 + BLOCK, n_pairs);
        const SCALAR* A = table + ra[r] * n_cols;
        const SCALAR* B = table + rb[r] * n_cols;
        SCALAR* O = table + (start + r) * n_cols;
        const V vca(ca[r]), vcb(cb[r]), vsig(sig[r]);
        const VI vs(states[r]);
        for (int64_t p = p0; p < p1; p += L) {
            const int64_t cnt = std::min(L, p1 - p);
            VI x = vs + VI::loadu(pairs + p, cnt);
            x = x ^ ((x >> VI(30)) & VI(17179869183LL));
            x = x * VI(-4658895280553007687LL);
            x = x ^ ((x >> VI(27)) & VI(137438953471LL));
            x = x * VI(-7723592293110705685LL);
            x = x ^ ((x >> VI(31)) & VI(8589934591LL));
            const VI hi = (x >> VI(32)) & VI(4294967295LL);
            const VI lo = x & VI(4294967295LL);
            const V u1 = (at::vec::convert<SCALAR, 1, int64_t, NI>(hi)
                          + V(static_cast<SCALAR>(0.5))) * V(c_u1);
            const V rad = (u1.log() * V(static_cast<SCALAR>(-2.0))).sqrt();
            const V theta = at::vec::convert<SCALAR, 1, int64_t, NI>(lo) * V(c_theta);
            const auto z = at::vec::interleave2(rad * theta.cos(), rad * theta.sin());
            const int64_t c = 2 * p;
            const int64_t n0 = std::min(L, 2 * cnt), n1 = 2 * cnt - n0;
            const V v0 = (vca * V::loadu(A + c, n0) + vcb * V::loadu(B + c, n0))
                         + vsig * std::get<0>(z);
            v0.store(O + c, n0);
            if (n1 > 0) {
                const V v1 = (vca * V::loadu(A + c + L, n1) + vcb * V::loadu(B + c + L, n1))
                             + vsig * std::get<1>(z);
                v1.store(O + c + L, n1);
            }
        }
    }
}
