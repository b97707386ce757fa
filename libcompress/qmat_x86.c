/* AVX2 (+ FMA, F16C) row kernels of tc/qmat.h: the scalar kernels' exact
 * arithmetic in vector lanes.  Signed int8 products go through vpmaddubsw as
 * |w| times x with w's sign (vpsignb): |w| <= 128 and |x| <= 127, so no
 * int16 pair saturates; vpmaddwd then sums four columns into an int32 lane,
 * lane l holding columns 4l..4l+3 of the 32 as in the scalar kernels. */
#include "qmat_internal.h"

#ifdef TC_QMAT_X86

#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma,f16c")))

/* Bytes ahead of the current block to prefetch: each stream of rows is
 * contiguous, so this reaches into the stream's next row. */
#define QPREFETCH 1024

static inline TGT float half_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline TGT float hsum8(__m256 a)
{
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/* int32 lanes of 4-column sums of w (signed bytes) times x. */
static inline TGT __m256i dot4(__m256i w, __m256i x)
{
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static TGT float row_q8_0(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q8_0_BYTES, x += 32) {
        _mm_prefetch((const char *)w + QPREFETCH, _MM_HINT_T0);
        __m256i p = dot4(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_loadu_si256((const __m256i *)x));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_at(w) * xd[b]), acc);
    }
    return hsum8(acc);
}

static TGT float row_q4_0(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    const __m256i lo4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q4_0_BYTES, x += 32) {
        _mm_prefetch((const char *)w + QPREFETCH, _MM_HINT_T0);
        __m128i q = _mm_loadu_si128((const __m128i *)(w + 2));
        __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
        __m256i p = dot4(_mm256_sub_epi8(v, eight), _mm256_loadu_si256((const __m256i *)x));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_at(w) * xd[b]), acc);
    }
    return hsum8(acc);
}

static TGT float row_q6_k(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    const __m256i lo4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q6_K_BYTES, x += 256) {
        _mm_prefetch((const char *)w + QPREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPREFETCH + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPREFETCH + 192, _MM_HINT_T0);
        const int8_t *sc = (const int8_t *)(w + 192);
        __m256i lane = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            __m256i v[4];
            v[0] = _mm256_and_si256(l0, lo4);
            v[1] = _mm256_and_si256(l1, lo4);
            v[2] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4);
            v[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4);
            for (int p = 0; p < 4; p++) {
                int c = 4 * h + p;
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * p), three);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(v[p], _mm256_slli_epi16(hi, 4)), off);
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 32 * c));
                __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * c + 1]), _mm_set1_epi16(sc[2 * c]));
                lane = _mm256_add_epi32(lane, _mm256_madd_epi16(p16, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lane), _mm256_set1_ps(half_at(w + 208) * xd[b]), acc);
    }
    return hsum8(acc);
}

const tc_qrow_fns tc_qrow_avx2 = {row_q8_0, row_q4_0, row_q6_k};

#endif
