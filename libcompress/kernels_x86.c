/* AVX2 and AVX-512 kernels. Each function carries its own target attribute,
 * so this file builds without -mavx flags and the library still runs on any
 * x86-64: tc_kernels_init only picks a path the CPU reports.
 *
 * One chunk plane is 32 bytes = 32 rows. Its low and high nibbles index
 * the low-byte and high-byte tables of a pair or triple (pshufb); the two
 * lookups interleave (unpacklo/hi) into int16 sums of rows 0-7 and 16-23
 * (lo) and 8-15 and 24-31 (hi) and are accumulated in int16 as long as no
 * lane can overflow, then widened to int32. The AVX-512 VNNI kernels at the
 * end read no tables: they multiply the codes themselves (see there). */
#include "kernels_internal.h"

#ifdef TC_KERNELS_X86

#include <immintrin.h>
#include <string.h>

/* Weights stream from DRAM once per token and the lookups keep the core
 * busy, so the hardware prefetcher alone leaves the stream short of DRAM
 * speed: prefetch this far ahead (row blocks are contiguous, so near the end
 * of one block this fetches the next). */
#define PREFETCH_AHEAD 1024

#define TL2_FLUSH_AVX2 10   /* 8 triples per chunk and lane, |entry| <= 384 */
#define TL2_FLUSH_AVX512 20 /* 4 triples per chunk and lane */

/* Rows of the four int32 accumulators: 0-7, 16-23, 8-15, 24-31. */
static void store_rows(const int32_t *a, const int32_t *b, const int32_t *c, const int32_t *d,
                       int32_t out[32])
{
    memcpy(out, a, 32);
    memcpy(out + 16, b, 32);
    memcpy(out + 8, c, 32);
    memcpy(out + 24, d, 32);
}

/* ---- AVX2 ---------------------------------------------------------------- */

/* int16 sums of rows (0-7, 16-23 | 8-15, 24-31) added into int32 lanes. */
__attribute__((target("avx2"))) static inline void widen_avx2(__m256i s0, __m256i s1, __m256i *a0,
                                                              __m256i *a1, __m256i *a2, __m256i *a3)
{
    *a0 = _mm256_add_epi32(*a0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s0)));
    *a1 = _mm256_add_epi32(*a1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s0, 1)));
    *a2 = _mm256_add_epi32(*a2, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s1)));
    *a3 = _mm256_add_epi32(*a3, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s1, 1)));
}

__attribute__((target("avx2"))) static inline void store_avx2(__m256i a0, __m256i a1, __m256i a2,
                                                              __m256i a3, int32_t out[32])
{
    int32_t r0[8], r1[8], r2[8], r3[8];
    _mm256_storeu_si256((__m256i *)(void *)r0, a0);
    _mm256_storeu_si256((__m256i *)(void *)r1, a1);
    _mm256_storeu_si256((__m256i *)(void *)r2, a2);
    _mm256_storeu_si256((__m256i *)(void *)r3, a3);
    store_rows(r0, r1, r2, r3, out);
}

__attribute__((target("avx2"))) static void pairs_avx2(const uint8_t *w, int64_t n,
                                                       const uint8_t *tab, int32_t out[32])
{
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < n;) {
        int64_t end = n - c > TC_KPAIR_FLUSH ? c + TC_KPAIR_FLUSH : n;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        for (; c < end; c++) {
            _mm_prefetch((const char *)(w + c * 32 + PREFETCH_AHEAD), _MM_HINT_T0);
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(w + c * 32));
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const __m128i *t = (const __m128i *)(const void *)(tab + c * 64);
            __m256i t0l = _mm256_broadcastsi128_si256(_mm_loadu_si128(t));
            __m256i t0h = _mm256_broadcastsi128_si256(_mm_loadu_si128(t + 1));
            __m256i t1l = _mm256_broadcastsi128_si256(_mm_loadu_si128(t + 2));
            __m256i t1h = _mm256_broadcastsi128_si256(_mm_loadu_si128(t + 3));
            __m256i l0 = _mm256_shuffle_epi8(t0l, lo), h0 = _mm256_shuffle_epi8(t0h, lo);
            __m256i l1 = _mm256_shuffle_epi8(t1l, hi), h1 = _mm256_shuffle_epi8(t1h, hi);
            s0 = _mm256_add_epi16(s0, _mm256_add_epi16(_mm256_unpacklo_epi8(l0, h0),
                                                       _mm256_unpacklo_epi8(l1, h1)));
            s1 = _mm256_add_epi16(s1, _mm256_add_epi16(_mm256_unpackhi_epi8(l0, h0),
                                                       _mm256_unpackhi_epi8(l1, h1)));
        }
        widen_avx2(s0, s1, &a0, &a1, &a2, &a3);
    }
    store_avx2(a0, a1, a2, a3, out);
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

__attribute__((target("avx2"))) static void tl2_avx2(const uint8_t *w, int64_t n,
                                                     const uint8_t *tab, int32_t out[32])
{
    const __m256i m4 = _mm256_set1_epi8(15);
    /* lane i of an int16 vector tests bit i of a 16-bit sign mask */
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048,
                                          4096, 8192, 16384, (short)-32768);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < n;) {
        int64_t end = n - c > TL2_FLUSH_AVX2 ? c + TL2_FLUSH_AVX2 : n;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        for (; c < end; c++) {
            const uint8_t *cw = w + c * 160, *tb = tab + c * 256;
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD + 64), _MM_HINT_T0);
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD + 128), _MM_HINT_T0);
            for (int p = 0; p < 4; p++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(cw + 32 * p));
                __m256i idx[2] = {_mm256_and_si256(v, m4),
                                  _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)};
                for (int h = 0; h < 2; h++) {
                    int t = 2 * p + h;
                    const __m128i *tt = (const __m128i *)(const void *)(tb + 32 * t);
                    __m256i L = _mm256_shuffle_epi8(
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(tt)), idx[h]);
                    __m256i H = _mm256_shuffle_epi8(
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(tt + 1)), idx[h]);
                    uint32_t sg = load_u32(cw + 128 + 4 * t);
                    int m0 = (int)((sg & 0xff) | (sg >> 8 & 0xff00));
                    int m1 = (int)((sg >> 8 & 0xff) | (sg >> 16 & 0xff00));
                    __m256i n0 = _mm256_cmpeq_epi16(
                        _mm256_and_si256(_mm256_set1_epi16((short)m0), bit), bit);
                    __m256i n1 = _mm256_cmpeq_epi16(
                        _mm256_and_si256(_mm256_set1_epi16((short)m1), bit), bit);
                    __m256i u0 = _mm256_unpacklo_epi8(L, H), u1 = _mm256_unpackhi_epi8(L, H);
                    /* (u ^ m) - m negates where m is all ones */
                    s0 = _mm256_add_epi16(s0, _mm256_sub_epi16(_mm256_xor_si256(u0, n0), n0));
                    s1 = _mm256_add_epi16(s1, _mm256_sub_epi16(_mm256_xor_si256(u1, n1), n1));
                }
            }
        }
        widen_avx2(s0, s1, &a0, &a1, &a2, &a3);
    }
    store_avx2(a0, a1, a2, a3, out);
}

/* ---- AVX-512 ------------------------------------------------------------- */
/* One 512-bit vector holds two 32-byte planes (two chunks for pairs, two
 * nibble planes for TL2); the duplicated tables give each 128-bit lane its
 * plane's table. After widening, lanes 0-15 and 16-31 of an int16
 * accumulator hold the same rows of the two planes, which are added. */

#define AVX512 "avx512f,avx512bw,avx512vl"

/* Both halves of each int16 accumulator (the same rows of two planes)
 * added into int32 lanes. */
__attribute__((target(AVX512))) static inline void widen_avx512(__m512i s0, __m512i s1, __m512i *a0,
                                                                __m512i *a1)
{
    *a0 = _mm512_add_epi32(*a0, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(s0)));
    *a0 = _mm512_add_epi32(*a0, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(s0, 1)));
    *a1 = _mm512_add_epi32(*a1, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(s1)));
    *a1 = _mm512_add_epi32(*a1, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(s1, 1)));
}

__attribute__((target(AVX512))) static inline void store_avx512(__m512i a0, __m512i a1,
                                                                int32_t out[32])
{
    int32_t r0[16], r1[16];
    _mm512_storeu_si512(r0, a0);
    _mm512_storeu_si512(r1, a1);
    store_rows(r0, r0 + 8, r1, r1 + 8, out);
}

__attribute__((target(AVX512))) static void pairs_avx512(const uint8_t *w, int64_t n,
                                                         const uint8_t *tab, int32_t out[32])
{
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    int64_t pairs = (n + 1) / 2;
    for (int64_t q = 0; q < pairs;) {
        int64_t end = pairs - q > TC_KPAIR_FLUSH ? q + TC_KPAIR_FLUSH : pairs;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0;
        for (; q < end; q++) {
            const uint8_t *src = w + q * 64;
            _mm_prefetch((const char *)(src + PREFETCH_AHEAD), _MM_HINT_T0);
            /* an odd last chunk: its partner's tables are zero, its bytes not read */
            __m512i v = 2 * q + 1 < n ? _mm512_loadu_si512(src)
                                      : _mm512_maskz_loadu_epi8(0xffffffffull, src);
            __m512i lo = _mm512_and_si512(v, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            const uint8_t *t = tab + q * 256;
            __m512i l0 = _mm512_shuffle_epi8(_mm512_loadu_si512(t), lo);
            __m512i h0 = _mm512_shuffle_epi8(_mm512_loadu_si512(t + 64), lo);
            __m512i l1 = _mm512_shuffle_epi8(_mm512_loadu_si512(t + 128), hi);
            __m512i h1 = _mm512_shuffle_epi8(_mm512_loadu_si512(t + 192), hi);
            s0 = _mm512_add_epi16(s0, _mm512_add_epi16(_mm512_unpacklo_epi8(l0, h0),
                                                       _mm512_unpacklo_epi8(l1, h1)));
            s1 = _mm512_add_epi16(s1, _mm512_add_epi16(_mm512_unpackhi_epi8(l0, h0),
                                                       _mm512_unpackhi_epi8(l1, h1)));
        }
        widen_avx512(s0, s1, &a0, &a1);
    }
    store_avx512(a0, a1, out);
}

__attribute__((target(AVX512))) static void tl2_avx512(const uint8_t *w, int64_t n,
                                                       const uint8_t *tab, int32_t out[32])
{
    const __m512i m4 = _mm512_set1_epi8(15);
    /* Sign masks: for plane pair q (128-bit lane q of the sign plane, words
     * of triples 4q..4q+3), dwords [lo nibble: rows 0-7,16-23 | rows 8-15,
     * 24-31; hi nibble: the same], each from the sign bytes of triples
     * 4q+h and 4q+2+h. */
    const __m256i sel = _mm256_setr_epi8(0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15, 0,
                                         2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    for (int64_t c = 0; c < n;) {
        int64_t end = n - c > TL2_FLUSH_AVX512 ? c + TL2_FLUSH_AVX512 : n;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0;
        for (; c < end; c++) {
            const uint8_t *cw = w + c * 160, *tb = tab + c * 512;
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD + 64), _MM_HINT_T0);
            _mm_prefetch((const char *)(cw + PREFETCH_AHEAD + 128), _MM_HINT_T0);
            uint32_t mk[8];
            _mm256_storeu_si256(
                (__m256i *)(void *)mk,
                _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(cw + 128)),
                                    sel));
            for (int q = 0; q < 2; q++) {
                __m512i v = _mm512_loadu_si512(cw + 64 * q);
                __m512i idx[2] = {_mm512_and_si512(v, m4),
                                  _mm512_and_si512(_mm512_srli_epi16(v, 4), m4)};
                for (int h = 0; h < 2; h++) {
                    const uint8_t *t = tb + (q * 2 + h) * 128;
                    __m512i L = _mm512_shuffle_epi8(_mm512_loadu_si512(t), idx[h]);
                    __m512i H = _mm512_shuffle_epi8(_mm512_loadu_si512(t + 64), idx[h]);
                    __m512i u0 = _mm512_unpacklo_epi8(L, H), u1 = _mm512_unpackhi_epi8(L, H);
                    __m512i z = _mm512_setzero_si512();
                    u0 = _mm512_mask_sub_epi16(u0, (__mmask32)mk[q * 4 + h * 2], z, u0);
                    u1 = _mm512_mask_sub_epi16(u1, (__mmask32)mk[q * 4 + h * 2 + 1], z, u1);
                    s0 = _mm512_add_epi16(s0, u0);
                    s1 = _mm512_add_epi16(s1, u1);
                }
            }
        }
        widen_avx512(s0, s1, &a0, &a1);
    }
    store_avx512(a0, a1, out);
}

/* ---- AVX-512 VNNI: I2 by multiply-add ------------------------------------ */
/* I2 fields are c + 1 in {0, 1, 2}, four to a byte, one byte per row and
 * chunk. vpmultishiftqb copies any 8-bit window of a qword into any byte, so
 * four of them spread each row's byte into a dword of its four fields (after
 * masking the two bits), and vpdpbusd multiplies those unsigned fields by the
 * chunk's four int8 activations and sums them into the row's int32 lane:
 * no tables, no int16 overflow to flush. The offset of +1 per field is the
 * segment's activation sum, removed at the end.
 *
 * One 64-byte load is chunks c and c+1 (32 rows x 8 columns). Qword q holds
 * rows 8q..8q+7 of chunk c (q < 4) or of chunk c+1 (q >= 4); vector k takes
 * rows 8q+2k and 8q+2k+1 of every qword, so its dword lanes 2q+e are row
 * 8(q mod 4)+2k+e, lanes 0-7 of chunk c and 8-15 of chunk c+1, which the
 * activation vector matches with chunk c's dword in lanes 0-7 and c+1's in
 * lanes 8-15 (one permute of 16 chunks' dwords). */

#define VNNI AVX512 ",avx512vnni,avx512vbmi"

/* The weights stream from memory once per token. The hardware prefetcher
 * alone left the stream at 75-80 % of a plain streaming read on this
 * machine (it does not cross 4 KiB pages); prefetching 4 KiB ahead brought
 * it to 90-95 % (8 KiB was no better on every shape). */
#define VNNI_AHEAD 4096

static const uint8_t vnni_spread[4][64] = {
#define Q(k) 16 * k, 16 * k + 2, 16 * k + 4, 16 * k + 6, 16 * k + 8, 16 * k + 10, 16 * k + 12, 16 * k + 14
#define V(k) {Q(k), Q(k), Q(k), Q(k), Q(k), Q(k), Q(k), Q(k)}
    V(0), V(1), V(2), V(3)
#undef V
#undef Q
};

static const int32_t vnni_pick[8][16] = {
#define P(j) {2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, \
              2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1}
    P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7)
#undef P
};

/* Row r of a block is lane 2q+e of vector k (r = 8q+2k+e) for chunk c and
 * lane 2q+8+e for chunk c+1; the fields' +1 added sum_x. */
__attribute__((target(VNNI))) static void vnni_store(__m512i a0, __m512i a1, __m512i a2,
                                                     __m512i a3, const uint8_t *tab, int32_t *out)
{
    int32_t sum_x, r[4][16];
    memcpy(&sum_x, tab, sizeof sum_x);
    _mm512_storeu_si512(r[0], a0);
    _mm512_storeu_si512(r[1], a1);
    _mm512_storeu_si512(r[2], a2);
    _mm512_storeu_si512(r[3], a3);
    for (int k = 0; k < 4; k++)
        for (int q = 0; q < 4; q++)
            for (int e = 0; e < 2; e++)
                out[8 * q + 2 * k + e] = r[k][2 * q + e] + r[k][2 * q + 8 + e] - sum_x;
}

/* The kernels below share this loop skeleton: the fields of chunks c and
 * c+1 spread into f0..f3, then multiplied with each token's dwords.
 *
 * TL1 goes the same way after one step: its pair index i = 3(a+1) + (b+1)
 * becomes I2's nibble (a+1) | (b+1) << 2 through a 16-byte table (one
 * shuffle per nibble), which makes the byte an I2 byte. */
#define VNNI_SETUP                                                                             \
    const __m512i m3 = _mm512_set1_epi8(3), m15 = _mm512_set1_epi8(15);                        \
    const __m512i s0 = _mm512_loadu_si512(vnni_spread[0]);                                     \
    const __m512i s1 = _mm512_loadu_si512(vnni_spread[1]);                                     \
    const __m512i s2 = _mm512_loadu_si512(vnni_spread[2]);                                     \
    const __m512i s3 = _mm512_loadu_si512(vnni_spread[3])

#define VNNI_TL1_SETUP                                                                         \
    const __m512i tl1_lo = _mm512_broadcast_i32x4(                                             \
        _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[0]));                        \
    const __m512i tl1_hi = _mm512_broadcast_i32x4(                                             \
        _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[1]))

#define TL1_NIBBLE(i) ((i) < 9 ? (i) / 3 | (i) % 3 << 2 : 5) /* 5: the zero pair */
static const uint8_t tl1_fields[2][16] = {
    {TL1_NIBBLE(0), TL1_NIBBLE(1), TL1_NIBBLE(2), TL1_NIBBLE(3), TL1_NIBBLE(4), TL1_NIBBLE(5),
     TL1_NIBBLE(6), TL1_NIBBLE(7), TL1_NIBBLE(8), TL1_NIBBLE(9), TL1_NIBBLE(10), TL1_NIBBLE(11),
     TL1_NIBBLE(12), TL1_NIBBLE(13), TL1_NIBBLE(14), TL1_NIBBLE(15)},
    {TL1_NIBBLE(0) << 4, TL1_NIBBLE(1) << 4, TL1_NIBBLE(2) << 4, TL1_NIBBLE(3) << 4,
     TL1_NIBBLE(4) << 4, TL1_NIBBLE(5) << 4, TL1_NIBBLE(6) << 4, TL1_NIBBLE(7) << 4,
     TL1_NIBBLE(8) << 4, TL1_NIBBLE(9) << 4, TL1_NIBBLE(10) << 4, TL1_NIBBLE(11) << 4,
     TL1_NIBBLE(12) << 4, TL1_NIBBLE(13) << 4, TL1_NIBBLE(14) << 4, TL1_NIBBLE(15) << 4}};
#undef TL1_NIBBLE

/* an odd last chunk: its partner's activations are zero, its bytes not read */
#define VNNI_SPREAD(src, whole, tl1)                                                           \
    _mm_prefetch((const char *)(src) + VNNI_AHEAD, _MM_HINT_T0);                               \
    __m512i v = (whole) ? _mm512_loadu_si512(src) : _mm512_maskz_loadu_epi8(0xffffffffull, src); \
    if (tl1)                                                                                   \
        v = _mm512_or_si512(                                                                   \
            _mm512_shuffle_epi8(tl1_lo, _mm512_and_si512(v, m15)),                             \
            _mm512_shuffle_epi8(tl1_hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m15)));      \
    __m512i f0 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s0, v), m3);                    \
    __m512i f1 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s1, v), m3);                    \
    __m512i f2 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s2, v), m3);                    \
    __m512i f3 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s3, v), m3)

#define VNNI_DOT(X, a0, a1, a2, a3)                                                            \
    do {                                                                                       \
        __m512i xa = _mm512_permutexvar_epi32(pick, X);                                        \
        a0 = _mm512_dpbusd_epi32(a0, f0, xa);                                                  \
        a1 = _mm512_dpbusd_epi32(a1, f1, xa);                                                  \
        a2 = _mm512_dpbusd_epi32(a2, f2, xa);                                                  \
        a3 = _mm512_dpbusd_epi32(a3, f3, xa);                                                  \
    } while (0)

/* tl1 is a constant in every caller, so each gets its own loop. */
static inline __attribute__((always_inline, target(VNNI))) void
pairs_vnni(const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32], const int tl1)
{
    VNNI_SETUP;
    VNNI_TL1_SETUP;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c = 0; c < n; c += 16) {
        __m512i X = _mm512_loadu_si512(tab + TC_KACT_HEADER + c * 4); /* padded to 16 chunks */
        int64_t end = n - c < 16 ? n - c : 16;
        for (int64_t j = 0; j < end; j += 2) {
            VNNI_SPREAD(w + (c + j) * 32, j + 1 < end, tl1);
            __m512i pick = _mm512_loadu_si512(vnni_pick[j / 2]);
            VNNI_DOT(X, a0, a1, a2, a3);
        }
    }
    vnni_store(a0, a1, a2, a3, tab, out);
}

/* Four tokens at once: a prompt spreads each weight's fields once for all
 * four, so the per-token cost is the permute and the multiply-adds. */
static inline __attribute__((always_inline, target(VNNI))) void
pairs_vnni4(const uint8_t *w, int64_t n, const uint8_t *const *tabs, int32_t *out, const int tl1)
{
    VNNI_SETUP;
    VNNI_TL1_SETUP;
    __m512i z = _mm512_setzero_si512();
    __m512i a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512i a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    for (int64_t c = 0; c < n; c += 16) {
        __m512i X0 = _mm512_loadu_si512(tabs[0] + TC_KACT_HEADER + c * 4);
        __m512i X1 = _mm512_loadu_si512(tabs[1] + TC_KACT_HEADER + c * 4);
        __m512i X2 = _mm512_loadu_si512(tabs[2] + TC_KACT_HEADER + c * 4);
        __m512i X3 = _mm512_loadu_si512(tabs[3] + TC_KACT_HEADER + c * 4);
        int64_t end = n - c < 16 ? n - c : 16;
        for (int64_t j = 0; j < end; j += 2) {
            VNNI_SPREAD(w + (c + j) * 32, j + 1 < end, tl1);
            __m512i pick = _mm512_loadu_si512(vnni_pick[j / 2]);
            VNNI_DOT(X0, a00, a01, a02, a03);
            VNNI_DOT(X1, a10, a11, a12, a13);
            VNNI_DOT(X2, a20, a21, a22, a23);
            VNNI_DOT(X3, a30, a31, a32, a33);
        }
    }
    vnni_store(a00, a01, a02, a03, tabs[0], out);
    vnni_store(a10, a11, a12, a13, tabs[1], out + 32);
    vnni_store(a20, a21, a22, a23, tabs[2], out + 64);
    vnni_store(a30, a31, a32, a33, tabs[3], out + 96);
}

__attribute__((target(VNNI))) static void i2_vnni(const uint8_t *w, int64_t n, const uint8_t *tab,
                                                  int32_t out[32])
{
    pairs_vnni(w, n, tab, out, 0);
}

__attribute__((target(VNNI))) static void i2_vnni4(const uint8_t *w, int64_t n,
                                                   const uint8_t *const *tabs, int32_t *out)
{
    pairs_vnni4(w, n, tabs, out, 0);
}

__attribute__((target(VNNI))) static void tl1_vnni(const uint8_t *w, int64_t n, const uint8_t *tab,
                                                   int32_t out[32])
{
    pairs_vnni(w, n, tab, out, 1);
}

__attribute__((target(VNNI))) static void tl1_vnni4(const uint8_t *w, int64_t n,
                                                    const uint8_t *const *tabs, int32_t *out)
{
    pairs_vnni4(w, n, tabs, out, 1);
}

/* TL2 by multiply-add. A triple's 4-bit index goes through a 16-byte table
 * (one shuffle) to the byte of its three fields (a+1) | (b+1) << 2 |
 * (c+1) << 4 for the mirrored triple; a set sign bit turns the byte into
 * 0x2A - byte, which is 2 - f in every field (no borrow: f <= 2), i.e. the
 * negated triple. From there the bytes are I2's with a zero fourth field,
 * so the same four multishifts spread them into per-row dwords, multiplied
 * by (x0, x1, x2, 0) of the triple.
 *
 * One 64-byte load is two nibble planes: its low nibbles are triples t and
 * t+2 (rows 0-31 each), its high nibbles t+1 and t+3; the 64-bit sign mask of
 * a vector is the two triples' sign words side by side. Vector k's lanes
 * 0-7 then hold rows of the first triple and lanes 8-15 of the second, whose
 * activation dwords one permute places there. */

static const int32_t tl2_pick[4][16] = {
#define P(a, b) {a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b}
    P(0, 2), P(1, 3), P(4, 6), P(5, 7)
#undef P
};

/* fields of the triple v = i + 13 (digits of v in base 3, most significant
 * first: columns 3t, 3t+1, 3t+2); 14 and 15 are not valid indices */
#define TL2_FIELDS(v) ((v) / 9 | (v) / 3 % 3 << 2 | (v) % 3 << 4)
static const uint8_t tl2_fields[16] = {
    TL2_FIELDS(13), TL2_FIELDS(14), TL2_FIELDS(15), TL2_FIELDS(16), TL2_FIELDS(17), TL2_FIELDS(18),
    TL2_FIELDS(19), TL2_FIELDS(20), TL2_FIELDS(21), TL2_FIELDS(22), TL2_FIELDS(23), TL2_FIELDS(24),
    TL2_FIELDS(25), TL2_FIELDS(26), TL2_FIELDS(13), TL2_FIELDS(13)};
#undef TL2_FIELDS

#define TL2_MADD(F, pk, a0, a1, a2, a3)                                                        \
    do {                                                                                       \
        __m512i xa = _mm512_permutexvar_epi32(_mm512_loadu_si512(tl2_pick[pk]), X);            \
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(_mm512_multishift_epi64_epi8(s0, F), m3), xa); \
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(_mm512_multishift_epi64_epi8(s1, F), m3), xa); \
        a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(_mm512_multishift_epi64_epi8(s2, F), m3), xa); \
        a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(_mm512_multishift_epi64_epi8(s3, F), m3), xa); \
    } while (0)

/* The field bytes of one 64-byte load of chunk cw, with signs applied:
 * lo holds triples 4h and 4h+2, hi triples 4h+1 and 4h+3. */
#define TL2_FIELDS_OF(cw, h, lo, hi)                                                           \
    __m512i v = _mm512_loadu_si512((cw) + 64 * (h));                                           \
    __m512i lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(v, m15));                           \
    __m512i hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), m15));     \
    lo = _mm512_mask_sub_epi8(lo, (__mmask64)sg[4 * (h)] | (__mmask64)sg[4 * (h) + 2] << 32, neg, lo); \
    hi = _mm512_mask_sub_epi8(hi, (__mmask64)sg[4 * (h) + 1] | (__mmask64)sg[4 * (h) + 3] << 32, neg, hi)

#define TL2_SETUP                                                                              \
    VNNI_SETUP;                                                                                \
    const __m512i neg = _mm512_set1_epi8(0x2A);                                                \
    const __m512i lut =                                                                        \
        _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)tl2_fields));    \
    const __m512i z = _mm512_setzero_si512()

static inline __attribute__((always_inline, target(VNNI))) __m512i tl2_act(const uint8_t *tab,
                                                                           int64_t c)
{
    return _mm512_castsi256_si512(
        _mm256_loadu_si256((const __m256i *)(const void *)(tab + TC_KACT_HEADER + c * 32)));
}

/* A 160-byte chunk touches three cache lines at most. */
static inline __attribute__((always_inline)) void tl2_prefetch(const uint8_t *cw)
{
    _mm_prefetch((const char *)cw + VNNI_AHEAD, _MM_HINT_T0);
    _mm_prefetch((const char *)cw + VNNI_AHEAD + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)cw + VNNI_AHEAD + 128, _MM_HINT_T0);
}

__attribute__((target(VNNI))) static void tl2_vnni(const uint8_t *w, int64_t n, const uint8_t *tab,
                                                   int32_t out[32])
{
    TL2_SETUP;
    __m512i a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
    for (int64_t c = 0; c < n; c++) {
        const uint8_t *cw = w + c * 160;
        tl2_prefetch(cw);
        __m512i X = tl2_act(tab, c);
        uint32_t sg[8];
        memcpy(sg, cw + 128, sizeof sg);
        {
            TL2_FIELDS_OF(cw, 0, lo, hi);
            TL2_MADD(lo, 0, a0, a1, a2, a3);
            TL2_MADD(hi, 1, b0, b1, b2, b3);
        }
        {
            TL2_FIELDS_OF(cw, 1, lo, hi);
            TL2_MADD(lo, 2, a0, a1, a2, a3);
            TL2_MADD(hi, 3, b0, b1, b2, b3);
        }
    }
    vnni_store(_mm512_add_epi32(a0, b0), _mm512_add_epi32(a1, b1), _mm512_add_epi32(a2, b2),
               _mm512_add_epi32(a3, b3), tab, out);
}

/* Four tokens: the field bytes are spread once (f0..f3) and multiplied
 * with each token's activations. */
#define TL2_SPREAD(F)                                                                          \
    __m512i f0 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s0, F), m3);                    \
    __m512i f1 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s1, F), m3);                    \
    __m512i f2 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s2, F), m3);                    \
    __m512i f3 = _mm512_and_si512(_mm512_multishift_epi64_epi8(s3, F), m3)

#define TL2_DOT4(F, pk)                                                                        \
    do {                                                                                       \
        TL2_SPREAD(F);                                                                         \
        __m512i pick = _mm512_loadu_si512(tl2_pick[pk]);                                       \
        VNNI_DOT(X0, a00, a01, a02, a03);                                                      \
        VNNI_DOT(X1, a10, a11, a12, a13);                                                      \
        VNNI_DOT(X2, a20, a21, a22, a23);                                                      \
        VNNI_DOT(X3, a30, a31, a32, a33);                                                      \
    } while (0)

__attribute__((target(VNNI))) static void tl2_vnni4(const uint8_t *w, int64_t n,
                                                    const uint8_t *const *tabs, int32_t *out)
{
    TL2_SETUP;
    __m512i a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512i a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    for (int64_t c = 0; c < n; c++) {
        const uint8_t *cw = w + c * 160;
        tl2_prefetch(cw);
        __m512i X0 = tl2_act(tabs[0], c), X1 = tl2_act(tabs[1], c);
        __m512i X2 = tl2_act(tabs[2], c), X3 = tl2_act(tabs[3], c);
        uint32_t sg[8];
        memcpy(sg, cw + 128, sizeof sg);
        {
            TL2_FIELDS_OF(cw, 0, lo, hi);
            TL2_DOT4(lo, 0);
            TL2_DOT4(hi, 1);
        }
        {
            TL2_FIELDS_OF(cw, 1, lo, hi);
            TL2_DOT4(lo, 2);
            TL2_DOT4(hi, 3);
        }
    }
    vnni_store(a00, a01, a02, a03, tabs[0], out);
    vnni_store(a10, a11, a12, a13, tabs[1], out + 32);
    vnni_store(a20, a21, a22, a23, tabs[2], out + 64);
    vnni_store(a30, a31, a32, a33, tabs[3], out + 96);
}

const struct tc_kimpl tc_kimpl_avx2 = {TC_KTAB_SPLIT, pairs_avx2, tl2_avx2, {NULL}, {NULL}, NULL, NULL};
const struct tc_kimpl tc_kimpl_avx512 = {TC_KTAB_SPLIT_DUP, pairs_avx512, tl2_avx512, {NULL}, {NULL},
                                         NULL, NULL};
const struct tc_kimpl tc_kimpl_avx512vnni = {TC_KTAB_SPLIT_DUP,
                                             pairs_avx512,
                                             tl2_avx512,
                                             {i2_vnni, tl1_vnni},
                                             {i2_vnni4, tl1_vnni4},
                                             tl2_vnni,
                                             tl2_vnni4};

#else
/* Not x86-64: only the scalar path exists (kernels.c). */
typedef int tc_kernels_x86_unused;
#endif
