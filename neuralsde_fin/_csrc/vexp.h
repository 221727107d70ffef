// vexp / vsilu: exp and LipSwish's silu of a vector for the sampling kernel (solve.cpp).
// vexp: on AVX2, float32 inlines Sleef's Sleef_expf8_u10 operation for operation (Cody-Waite
// reduction by ln 2, a degree-6 polynomial, 2^q in two factors; 1 ulp), bit-identical to the
// library call that Vectorized<float>::exp makes; other ISAs and float64 call Sleef.
// vsilu: x / (1 + exp(-x)); on AVX2 in float32 the exponent is clamped to [-87, 88.3], where 2^q
// is one normal float: bit-identical to the unclamped form for x >= -88.3, within 4e-37 of 0
// below (both tested, tests/solvers/test_native_step.py).
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
