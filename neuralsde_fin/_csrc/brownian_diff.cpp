// Grid increments of the Brownian tree: out[q] = table[r1_q] - table[r0_q] (see
// _brownian/_native.py). Built by neuralsde_fin/_native.py with SCALAR defined.
extern "C" void kernel(const SCALAR* table, const int64_t* r0, const int64_t* r1, SCALAR* out,
                       const int64_t n_cols, const int64_t n_q, const int64_t n_table_rows)
{
    for (int64_t q = 0; q < n_q; ++q)
        if (r0[q] < 0 || r0[q] >= n_table_rows || r1[q] < 0 || r1[q] >= n_table_rows)
            throw std::out_of_range("gather_diff: row index outside the table");
    using V = at::vec::Vectorized<SCALAR>;
    constexpr int64_t L = V::size();
    constexpr int64_t BLOCK = 4096;  // values per work item
    const int64_t n_blocks = (n_cols + BLOCK - 1) / BLOCK;
    #pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < n_q * n_blocks; ++item) {
        const int64_t q = item / n_blocks;
        const int64_t c0 = (item % n_blocks) * BLOCK;
        const int64_t c1 = std::min(c0 + BLOCK, n_cols);
        const SCALAR* A = table + r1[q] * n_cols;
        const SCALAR* B = table + r0[q] * n_cols;
        SCALAR* O = out + q * n_cols;
        for (int64_t c = c0; c < c1; c += L) {
            const int64_t cnt = std::min(L, c1 - c);
            (V::loadu(A + c, cnt) - V::loadu(B + c, cnt)).store(O + c, cnt);
        }
    }
}
