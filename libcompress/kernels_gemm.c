/* The prompt path: products of many tokens (TC_KGEMM_MIN_TOKENS or more).
 *
 * The table kernels read every row block once per pass of a few tokens and
 * rebuild their fields from the packed bytes each time. Here each row
 * block's run of chunks (one scale group's) is decoded once, for any
 * layout, into a panel of fields c + 1 in {0, 1, 2}, a row's four fields of
 * a quad to a dword (kernels_internal.h gives the order), and the panel is
 * multiplied with every token of the call: per quad, two panel vectors (16
 * rows) stay in registers while the activations of six tokens are
 * broadcast (four bytes each) and vpmaddubsw multiplies them in, twelve
 * int16 accumulators. The decode is thus shared by all the tokens, and the
 * weights are read once per call instead of once per eight tokens.
 *
 * Exactness: |pair| <= 2 * 2 * 128 = 512 per quad and accumulator lane, so
 * 64 quads fit int16 (64 * 512 = 32768 only when every product is
 * 2 * -128: -32768 is an int16); the sums widen into int32 every 64 quads
 * (vpmaddwd with ones), and each token's activation sum over the group
 * (the + 1 of the fields) is subtracted at the end. Columns of the run
 * outside the group (groups that do not start or end on a quad) are zeroed
 * in the panel, so they add nothing whatever the activations there.
 * Integer sums throughout, so they equal the scalar kernels' bit for bit. */
#include "kernels_internal.h"

#include <string.h>

/* Keeps only columns [lo, hi) of quad q of a panel. */
static void mask_quad(uint8_t *panel, size_t half, int64_t q, int lo, int hi)
{
    for (int h = 0; h < 2; h++) {
        uint8_t *b = panel + h * half + q * 64;
        for (int i = 0; i < 64; i++)
            if (i % 4 < lo || i % 4 >= hi)
                b[i] = 0;
    }
}

void tc_kgemm_block(const struct tc_kimpl *impl, const tc_tpack_plan *p, const uint8_t *w,
                    const kseg *s, const int8_t *xa, size_t x_stride, int64_t n_tok,
                    const int32_t *xsum, size_t xsum_stride, uint8_t *panel, size_t half,
                    int32_t *sums, size_t s_stride)
{
    int64_t base = s->c0 * (p->chunk_cols / 4), Q0 = s->k0 / 4, Q1 = (s->k1 + 3) / 4;
    impl->layout[p->layout].decode(w, s->n_chunks, panel, half);
    int64_t qa = Q0 - base, nq = Q1 - Q0; /* the group's quads in the panel */
    int lo = (int)(s->k0 - 4 * Q0), hi = s->k1 < 4 * Q0 + 4 ? (int)(s->k1 - 4 * Q0) : 4;
    if (lo > 0 || hi < 4)
        mask_quad(panel, half, qa, lo, hi);
    if (nq > 1 && s->k1 < 4 * Q1)
        mask_quad(panel, half, qa + nq - 1, 0, (int)(s->k1 - 4 * (Q1 - 1)));
    /* tokens in groups as even as they go (128: 18 x 6 + 4 x 5): a short
     * last group would run at a fraction of the rate */
    int64_t groups = (n_tok + TC_KGEMM_TOKENS - 1) / TC_KGEMM_TOKENS;
    for (int64_t gi = 0, t0 = 0; gi < groups; gi++) {
        int nt = (int)(n_tok / groups + (gi < n_tok % groups));
        impl->gemm(panel + qa * 64, half, nq, xa + (size_t)t0 * x_stride + 4 * Q0, x_stride, nt,
                   xsum + (size_t)t0 * xsum_stride, xsum_stride, sums + (size_t)t0 * s_stride,
                   s_stride);
        t0 += nt;
    }
}

#ifdef TC_KERNELS_X86

#include <immintrin.h>

/* ---- decode -------------------------------------------------------------- */

/* Four vectors of 32 rows' fields (row r in byte r), columns 0-3 of a quad,
 * into the panel's four octets of local quad q. The byte interleave puts
 * rows 0-7 and 16-23 (lo) and 8-15 and 24-31 (hi) as pairs of columns, the
 * word interleave makes them dwords of four: rows 0-3 | 16-19, 4-7 | 20-23,
 * 8-11 | 24-27, 12-15 | 28-31. */
static inline __attribute__((always_inline, target("avx2"))) void
put_quad(__m256i f0, __m256i f1, __m256i f2, __m256i f3, uint8_t *panel, size_t half, int64_t q)
{
    __m256i a = _mm256_unpacklo_epi8(f0, f1), b = _mm256_unpackhi_epi8(f0, f1);
    __m256i c = _mm256_unpacklo_epi8(f2, f3), d = _mm256_unpackhi_epi8(f2, f3);
    uint8_t *h0 = panel + q * 64, *h1 = h0 + half;
    _mm256_storeu_si256((__m256i *)(void *)h0, _mm256_unpacklo_epi16(a, c));
    _mm256_storeu_si256((__m256i *)(void *)(h0 + 32), _mm256_unpackhi_epi16(a, c));
    _mm256_storeu_si256((__m256i *)(void *)h1, _mm256_unpacklo_epi16(b, d));
    _mm256_storeu_si256((__m256i *)(void *)(h1 + 32), _mm256_unpackhi_epi16(b, d));
}

/* I2 and TL1: a chunk is a quad, byte r row r, each nibble two columns;
 * ta and tb give a nibble's first and second field. I2's nibble is
 * (a+1) | (b+1) << 2, TL1's 3(a+1) + (b+1) (indices past 8: the zero pair,
 * as the other kernels read them). */
static const uint8_t pair_fields[2][2][16] = {
    {{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}, {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}},
    {{0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1}, {0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 1, 1, 1, 1, 1, 1}}};

static inline __attribute__((always_inline, target("avx2"))) void
decode_pairs(const uint8_t *w, int64_t n, uint8_t *panel, size_t half, const uint8_t tab[2][16])
{
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i ta = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)tab[0]));
    const __m256i tb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)tab[1]));
    for (int64_t c = 0; c < n; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32 * c));
        __m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
        put_quad(_mm256_shuffle_epi8(ta, lo), _mm256_shuffle_epi8(tb, lo), _mm256_shuffle_epi8(ta, hi),
                 _mm256_shuffle_epi8(tb, hi), panel, half, c);
    }
}

__attribute__((target("avx2"))) void tc_kdecode_i2_avx2(const uint8_t *w, int64_t n, uint8_t *panel,
                                                        size_t half)
{
    decode_pairs(w, n, panel, half, pair_fields[0]);
}

__attribute__((target("avx2"))) void tc_kdecode_tl1_avx2(const uint8_t *w, int64_t n, uint8_t *panel,
                                                        size_t half)
{
    decode_pairs(w, n, panel, half, pair_fields[1]);
}

/* TL2: digit d of v = index + 13 is field d of a positive triple, 2 minus
 * it of a negative one; indices 14 and 15 read as the zero triple, as the
 * tables of the other kernels give them. */
#define TL2_D(n, d) ((n) < 14 ? ((n) + 13) / ((d) == 0 ? 9 : (d) == 1 ? 3 : 1) % 3 : 1)
#define TL2_ROW(d, s)                                                                              \
    {(s) ? 2 - TL2_D(0, d) : TL2_D(0, d), (s) ? 2 - TL2_D(1, d) : TL2_D(1, d),                       \
     (s) ? 2 - TL2_D(2, d) : TL2_D(2, d), (s) ? 2 - TL2_D(3, d) : TL2_D(3, d),                       \
     (s) ? 2 - TL2_D(4, d) : TL2_D(4, d), (s) ? 2 - TL2_D(5, d) : TL2_D(5, d),                       \
     (s) ? 2 - TL2_D(6, d) : TL2_D(6, d), (s) ? 2 - TL2_D(7, d) : TL2_D(7, d),                       \
     (s) ? 2 - TL2_D(8, d) : TL2_D(8, d), (s) ? 2 - TL2_D(9, d) : TL2_D(9, d),                       \
     (s) ? 2 - TL2_D(10, d) : TL2_D(10, d), (s) ? 2 - TL2_D(11, d) : TL2_D(11, d),                   \
     (s) ? 2 - TL2_D(12, d) : TL2_D(12, d), (s) ? 2 - TL2_D(13, d) : TL2_D(13, d),                   \
     (s) ? 2 - TL2_D(14, d) : TL2_D(14, d), (s) ? 2 - TL2_D(15, d) : TL2_D(15, d)}
static const uint8_t tl2_fields[2][3][16] = {{TL2_ROW(0, 0), TL2_ROW(1, 0), TL2_ROW(2, 0)},
                                             {TL2_ROW(0, 1), TL2_ROW(1, 1), TL2_ROW(2, 1)}};
#undef TL2_ROW
#undef TL2_D

__attribute__((target("avx2"))) void tc_kdecode_tl2_avx2(const uint8_t *w, int64_t n, uint8_t *panel,
                                                        size_t half)
{
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                            2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i pos[3], neg[3];
    for (int d = 0; d < 3; d++) {
        pos[d] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)tl2_fields[0][d]));
        neg[d] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)tl2_fields[1][d]));
    }
    for (int64_t c = 0; c < n; c++) {
        const uint8_t *cw = w + 160 * c;
        __m256i f[24];
        for (int t = 0; t < 8; t++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(cw + 32 * (t / 2)));
            __m256i idx = _mm256_and_si256(t % 2 ? _mm256_srli_epi16(v, 4) : v, m15);
            int32_t word; /* sign bit r of the triple: row r */
            memcpy(&word, cw + 128 + 4 * t, sizeof word);
            __m256i sb = _mm256_shuffle_epi8(_mm256_set1_epi32(word), spread);
            __m256i m = _mm256_cmpeq_epi8(_mm256_and_si256(sb, bits), bits);
            for (int d = 0; d < 3; d++)
                f[3 * t + d] = _mm256_blendv_epi8(_mm256_shuffle_epi8(pos[d], idx),
                                                  _mm256_shuffle_epi8(neg[d], idx), m);
        }
        for (int j = 0; j < 6; j++)
            put_quad(f[4 * j], f[4 * j + 1], f[4 * j + 2], f[4 * j + 3], panel, half, 6 * c + j);
    }
}

/* ---- the microkernel ----------------------------------------------------- */

/* Half h times nt < 4 tokens (calls of fewer than 12 tokens, or groups of a call of 7): the int16
 * sums of nq <= 64 quads into acc[2t], acc[2t + 1]. */
static inline __attribute__((always_inline, target("avx2"))) void
gemm_half(const uint8_t *ph, int64_t nq, const int8_t *x, size_t xs, __m256i *acc, const int nt)
{
    for (int t = 0; t < nt; t++)
        acc[2 * t] = acc[2 * t + 1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < nq; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(ph + 64 * q));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(ph + 64 * q + 32));
        for (int t = 0; t < nt; t++) {
            int32_t v;
            memcpy(&v, x + (size_t)t * xs + 4 * q, sizeof v);
            __m256i xb = _mm256_set1_epi32(v);
            acc[2 * t] = _mm256_add_epi16(acc[2 * t], _mm256_maddubs_epi16(w0, xb));
            acc[2 * t + 1] = _mm256_add_epi16(acc[2 * t + 1], _mm256_maddubs_epi16(w1, xb));
        }
    }
}

/* Half h times nt = 4, 5 or 6 tokens: up to twelve int16 accumulators, the
 * two weight vectors, a broadcast and a product take all sixteen
 * registers, and GCC spilled accumulators when this was written with
 * intrinsics, so the loop is assembly (one vpaddw per vpmaddubsw, as it
 * must be). The accumulators go to acc at the end. */
#define GEMM_ZERO(i) "vmovdqa %%ymm0, %%ymm" #i "\n\t"
#define GEMM_TOKEN(a, b, addr)                                                                     \
    "vpbroadcastd " addr ", %%ymm14\n\t"                                                           \
    "vpmaddubsw %%ymm14, %%ymm12, %%ymm15\n\t"                                                     \
    "vpaddw %%ymm15, %%ymm" a ", %%ymm" a "\n\t"                                                   \
    "vpmaddubsw %%ymm14, %%ymm13, %%ymm15\n\t"                                                     \
    "vpaddw %%ymm15, %%ymm" b ", %%ymm" b "\n\t"
#define GEMM_PUT(i) "vmovdqu %%ymm" #i ", " #i "*32(%[acc])\n\t"
#define GEMM_HEAD                                                                                  \
    "vpxor %%xmm0, %%xmm0, %%xmm0\n\t" GEMM_ZERO(1) GEMM_ZERO(2) GEMM_ZERO(3) GEMM_ZERO(4)         \
        GEMM_ZERO(5) GEMM_ZERO(6) GEMM_ZERO(7) GEMM_ZERO(8) GEMM_ZERO(9) GEMM_ZERO(10)             \
            GEMM_ZERO(11) "1:\n\t"                                                                 \
                          "vmovdqu (%[w]), %%ymm12\n\t"                                            \
                          "vmovdqu 32(%[w]), %%ymm13\n\t" GEMM_TOKEN("0", "1", "(%[xa])")          \
                              GEMM_TOKEN("2", "3", "(%[xa],%[s],1)")                               \
                                  GEMM_TOKEN("4", "5", "(%[xa],%[s],2)")                           \
                                      GEMM_TOKEN("6", "7", "(%[xb])")
#define GEMM_TAIL                                                                                  \
    "add $64, %[w]\n\t"                                                                            \
    "add $4, %[xa]\n\t"                                                                            \
    "add $4, %[xb]\n\t"                                                                            \
    "dec %[n]\n\t"                                                                                 \
    "jnz 1b\n\t" GEMM_PUT(0) GEMM_PUT(1) GEMM_PUT(2) GEMM_PUT(3) GEMM_PUT(4) GEMM_PUT(5)           \
        GEMM_PUT(6) GEMM_PUT(7) GEMM_PUT(8) GEMM_PUT(9) GEMM_PUT(10) GEMM_PUT(11)
#define GEMM_OPERANDS                                                                              \
    : [w] "+r"(ph), [xa] "+r"(xa), [xb] "+r"(xb), [n] "+r"(nq)                                      \
    : [s] "r"(xs), [acc] "r"(acc)                                                                  \
    : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",      \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"

static inline __attribute__((always_inline, target("avx2"))) void
gemm_half_asm(const uint8_t *ph, int64_t nq, const int8_t *x, size_t xs, __m256i *acc, const int nt)
{
    const int8_t *xa = x, *xb = x + 3 * xs;
    if (nt == 6)
        __asm__ volatile(GEMM_HEAD GEMM_TOKEN("8", "9", "(%[xb],%[s],1)")
                             GEMM_TOKEN("10", "11", "(%[xb],%[s],2)") GEMM_TAIL GEMM_OPERANDS);
    else if (nt == 5)
        __asm__ volatile(GEMM_HEAD GEMM_TOKEN("8", "9", "(%[xb],%[s],1)") GEMM_TAIL GEMM_OPERANDS);
    else
        __asm__ volatile(GEMM_HEAD GEMM_TAIL GEMM_OPERANDS);
}
#undef GEMM_OPERANDS
#undef GEMM_TAIL
#undef GEMM_HEAD
#undef GEMM_PUT
#undef GEMM_TOKEN
#undef GEMM_ZERO

/* Both halves, nt tokens: int16 sums of up to 64 quads at a time, widened
 * into int32 (vpmaddwd with ones), then stored by row: octet i holds rows
 * 4i.. in dwords 0-3 and 16 + 4i.. in 4-7. */
static inline __attribute__((always_inline, target("avx2"))) void
gemm_tokens(const uint8_t *panel, size_t half, int64_t nq, const int8_t *x, size_t xs,
            const int32_t *xsum, size_t xss, int32_t *sums, size_t ss, const int nt)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ph = panel + (size_t)h * half;
        __m256i wide[2 * TC_KGEMM_TOKENS], acc[2 * TC_KGEMM_TOKENS];
        for (int i = 0; i < 2 * nt; i++)
            wide[i] = _mm256_setzero_si256();
        for (int64_t q = 0; q < nq; q += TC_KGEMM_QUADS) {
            int64_t m = nq - q < TC_KGEMM_QUADS ? nq - q : TC_KGEMM_QUADS;
            if (nt >= 4)
                gemm_half_asm(ph + 64 * q, m, x + 4 * q, xs, acc, nt);
            else
                gemm_half(ph + 64 * q, m, x + 4 * q, xs, acc, nt);
            for (int i = 0; i < 2 * nt; i++)
                wide[i] = _mm256_add_epi32(wide[i], _mm256_madd_epi16(acc[i], ones));
        }
        for (int t = 0; t < nt; t++) {
            __m256i off = _mm256_set1_epi32(xsum[(size_t)t * xss]);
            int32_t *st = sums + (size_t)t * ss;
            for (int o = 0; o < 2; o++) {
                int i = 2 * h + o;
                __m256i v = _mm256_sub_epi32(wide[2 * t + o], off);
                _mm_storeu_si128((__m128i *)(void *)(st + 4 * i), _mm256_castsi256_si128(v));
                _mm_storeu_si128((__m128i *)(void *)(st + 16 + 4 * i), _mm256_extracti128_si256(v, 1));
            }
        }
    }
}

__attribute__((target("avx2"))) void tc_kgemm_avx2(const uint8_t *panel, size_t half, int64_t nq,
                                                   const int8_t *x, size_t xs, int nt,
                                                   const int32_t *xsum, size_t xss, int32_t *sums,
                                                   size_t ss)
{
    switch (nt) {
    case 6:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 6);
        break;
    case 5:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 5);
        break;
    case 4:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 4);
        break;
    case 3:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 3);
        break;
    case 2:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 2);
        break;
    default:
        gemm_tokens(panel, half, nq, x, xs, xsum, xss, sums, ss, 1);
        break;
    }
}

#endif
