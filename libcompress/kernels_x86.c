/* AVX2 and AVX-512 kernels. Each function carries its own target attribute,
 * so this file builds without -mavx flags and the library still runs on any
 * x86-64: tc_kernels_init only picks a path the CPU reports.
 *
 * One chunk plane is 32 bytes = 32 rows. I2 and TL1 multiply their codes
 * by the activations: on AVX2 (and on AVX-512 without VNNI) two chunks'
 * planes interleave into int16 lanes for vpmaddubsw, on AVX-512 VNNI four
 * chunks' into int32 lanes for vpdpbusd. TL2 on AVX2 looks its nibbles up
 * in the low-byte and high-byte tables of a triple (pshufb), the two
 * lookups interleaved (unpacklo/hi) into int16 sums of rows 0-7 and 16-23
 * (lo) and 8-15 and 24-31 (hi); on AVX-512 it looks 32 rows up per vpermw.
 * Sums stay int16 as long as no lane can overflow, then widen to int32.
 * docs/KERNELS.md says why each is shaped as it is. */
#include "kernels_internal.h"

#ifdef TC_KERNELS_X86

#include <immintrin.h>
#include <string.h>

/* Weights stream from DRAM once per token and the lookups keep the core
 * busy, so the hardware prefetcher alone leaves the stream short of DRAM
 * speed: prefetch this far ahead (row blocks are contiguous, so near the end
 * of one block this fetches the next). */
#define PREFETCH_AHEAD 1024

/* The distance at which the LUT and multiply-add kernels below prefetch
 * (0: not at all). Measured here with four streams of weights, one thread,
 * 6912x2560 and 4096x11008, alternating builds: 2048 bytes beats 0 by
 * 20-40 %, 1024 and 4096 by 5-15 %, 1536 and 3072 by 0-10 %. */
#ifndef PREFETCH_LUT
#define PREFETCH_LUT 2048
#endif
#ifndef PREFETCH_MADD
#define PREFETCH_MADD 2048
#endif
#ifndef PREFETCH_HINT
#define PREFETCH_HINT _MM_HINT_T0
#endif

#define TL2_FLUSH_AVX2 10 /* 8 triples per chunk and lane, |entry ^ sign| <= 385 */

/* TL1 pair index i = 3(a+1) + (b+1) -> a+1 and b+1 (the zero pair past 8). */
#define TL1_A(i) ((i) < 9 ? (i) / 3 : 1)
#define TL1_B(i) ((i) < 9 ? (i) % 3 : 1)
#define TL1_ROW(F) F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), F(10), F(11),  \
                   F(12), F(13), F(14), F(15)
static const uint8_t tl1_fields[2][16] = {{TL1_ROW(TL1_A)}, {TL1_ROW(TL1_B)}};
#undef TL1_ROW
#undef TL1_B
#undef TL1_A

/* ---- AVX2 ---------------------------------------------------------------- */

/* int16 sums (rows 0-7, 16-23 | 8-15, 24-31) added into the int32 sums
 * of rows 0-31 at out. */
static inline __attribute__((always_inline, target("avx2"))) void
widen_avx2(__m256i s0, __m256i s1, int32_t *out)
{
    const __m256i *src[4] = {&s0, &s0, &s1, &s1};
    static const int at[4] = {0, 16, 8, 24};
    for (int i = 0; i < 4; i++) {
        __m128i h = i % 2 ? _mm256_extracti128_si256(*src[i], 1) : _mm256_castsi256_si128(*src[i]);
        __m256i *o = (__m256i *)(void *)(out + at[i]);
        _mm256_storeu_si256(o, _mm256_add_epi32(_mm256_loadu_si256(o), _mm256_cvtepi16_epi32(h)));
    }
}

/* ---- AVX2: TL2 by pshufb tables ------------------------------------------ */

/* Sign bit r of a triple's 32-bit sign word (row r) as byte mask r: byte r
 * of the broadcast word is its byte r / 8 (spread), tested against bit
 * r % 8. In vector registers: the scalar expansion of the word into two
 * 16-bit lane masks, broadcast twice, was most of the kernel's work. */
static inline __attribute__((always_inline, target("avx2"))) __m256i
tl2_sign_bytes_avx2(const uint8_t *p, __m256i spread, __m256i bits)
{
    int32_t word;
    memcpy(&word, p, sizeof word);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(word), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bits), bits);
}

/* int8 counts of rows 0-31 (row order) added into their int32 sums. */
static inline __attribute__((always_inline, target("avx2"))) void tl2_add_counts(__m256i cnt,
                                                                                int32_t *out)
{
    int8_t c[32];
    _mm256_storeu_si256((__m256i *)(void *)c, cnt);
    for (int i = 0; i < 4; i++) {
        __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(c + 8 * i));
        __m256i *o = (__m256i *)(void *)(out + 8 * i);
        _mm256_storeu_si256(o, _mm256_add_epi32(_mm256_loadu_si256(o), _mm256_cvtepi8_epi32(q)));
    }
}

/* Negation as (u ^ m) - m, split: the XOR on the looked-up bytes (the same
 * mask for both bytes of a lane, so no interleaved mask is needed) and the
 * - m counted per row in bytes, added at each flush (at most 8 triples x
 * TL2_FLUSH_AVX2 chunks = 80 a row). */
__attribute__((target("avx2"))) static void tl2_avx2(const uint8_t *w, int64_t n,
                                                     const uint8_t *tab, int32_t out[32])
{
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                            2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    memset(out, 0, 32 * sizeof *out);
    for (int64_t c = 0; c < n;) {
        int64_t end = n - c > TL2_FLUSH_AVX2 ? c + TL2_FLUSH_AVX2 : n;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, cnt = s0;
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
                    __m256i m = tl2_sign_bytes_avx2(cw + 128 + 4 * t, spread, bits);
                    __m256i L = _mm256_xor_si256(
                        m, _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(tt)),
                                               idx[h]));
                    __m256i H = _mm256_xor_si256(
                        m, _mm256_shuffle_epi8(
                               _mm256_broadcastsi128_si256(_mm_loadu_si128(tt + 1)), idx[h]));
                    s0 = _mm256_add_epi16(s0, _mm256_unpacklo_epi8(L, H));
                    s1 = _mm256_add_epi16(s1, _mm256_unpackhi_epi8(L, H));
                    cnt = _mm256_sub_epi8(cnt, m);
                    /* one add at a time: reassociated into a tree of the
                     * chunk's eight terms, the terms spilled */
                    __asm__("" : "+x"(s0), "+x"(s1), "+x"(cnt));
                }
            }
        }
        widen_avx2(s0, s1, out); /* the int32 sums wait in out: registers are few */
        tl2_add_counts(cnt, out);
    }
}

/* ---- AVX2: I2 and TL1 by multiply-add -------------------------------------- */
/* The planes of two chunks interleave bytewise (unpacklo/hi), so that int16
 * lane r holds row r's byte of each (rows 0-7, 16-23 | 8-15, 24-31). Field
 * e of those bytes is column e of both chunks; vpmaddubsw multiplies it by
 * the two chunks' activations of that column (one word of the ACT4 table,
 * broadcast) and adds the two products into the row's int16 lane. Fields
 * are code + 1 in {0, 1, 2} (I2 masked from the byte, TL1 looked up in
 * tl1_fields) and the sum of the segment's activations is subtracted at the
 * end, as on VNNI. Against pair tables looked up by pshufb, one
 * multiply-add does the work of two lookups, an interleave and an add, and
 * the activations stay 16 bytes per 16 columns, so row blocks share them in
 * L1.
 *
 * A quad of chunks adds at most 2 pairs x 4 fields x 2 x 2 x 128 = 4096 in
 * magnitude to an int16 lane: the lanes widen into int32 every 7 quads. */
#define MADD_FLUSH_AVX2 7

/* The four fields of interleaved bytes u, unscaled. */
static inline __attribute__((always_inline, target("avx2"))) void
madd_fields_avx2(__m256i u, const int tl1, __m256i f[4])
{
    if (tl1) {
        const __m256i m15 = _mm256_set1_epi8(15);
        const __m256i ta = _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[0]));
        const __m256i tb = _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[1]));
        __m256i nl = _mm256_and_si256(u, m15);
        __m256i nh = _mm256_and_si256(_mm256_srli_epi16(u, 4), m15);
        f[0] = _mm256_shuffle_epi8(ta, nl);
        f[1] = _mm256_shuffle_epi8(tb, nl);
        f[2] = _mm256_shuffle_epi8(ta, nh);
        f[3] = _mm256_shuffle_epi8(tb, nh);
    } else {
        const __m256i m3 = _mm256_set1_epi8(3);
        f[0] = _mm256_and_si256(u, m3);
        f[1] = _mm256_and_si256(_mm256_srli_epi16(u, 2), m3);
        f[2] = _mm256_and_si256(_mm256_srli_epi16(u, 4), m3);
        f[3] = _mm256_and_si256(_mm256_srli_epi16(u, 6), m3);
    }
}

/* u8 fields times the 32 signed bytes at p, pairs of products added: the
 * activations as a memory operand, so that the words of a quad, shared by
 * every row block, take no register (with them in registers GCC kept the
 * int16 sums on the stack). */
static inline __attribute__((always_inline, target("avx2"))) __m256i maddubs_at(__m256i f,
                                                                               const __m256i *p)
{
    __m256i r;
    __asm__("vpmaddubsw %2, %1, %0" : "=x"(r) : "x"(f), "m"(*p));
    return r;
}

/* s + the products of u's fields with the activation words x[0..3]. */
static inline __attribute__((always_inline, target("avx2"))) __m256i
madd_pair_avx2(__m256i s, __m256i u, const __m256i *x, const int tl1)
{
    __m256i f[4];
    madd_fields_avx2(u, tl1, f);
    __m256i t = _mm256_add_epi16(maddubs_at(f[0], x), maddubs_at(f[1], x + 1));
    t = _mm256_add_epi16(t, _mm256_add_epi16(maddubs_at(f[2], x + 2), maddubs_at(f[3], x + 3)));
    return _mm256_add_epi16(s, t);
}

/* The four planes of the quad at chunk q: whole, or the n - q < 4 chunks
 * left at the end of a run (the rest zero, never read). */
static inline __attribute__((always_inline, target("avx2"))) void
madd_quad_load(const uint8_t *p, int64_t left, __m256i c[4])
{
    for (int j = 0; j < 4; j++)
        c[j] = j < left ? _mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * j))
                        : _mm256_setzero_si256();
}

/* nb (1 or TC_KBLOCKS) row blocks at w + b * stride, one token. The int32
 * sums wait in out and the activation words of a quad on the stack, so
 * that the int16 sums have the registers. */
static inline __attribute__((always_inline, target("avx2"))) void
madd_blocks_avx2(const uint8_t *w, uint64_t stride, int64_t n, const uint8_t *tab, int32_t *out,
                 const int tl1, const int nb)
{
    const uint8_t *act = tab + TC_KACT_HEADER;
    memset(out, 0, (size_t)nb * 32 * sizeof *out);
    for (int64_t q = 0; q < n;) {
        int64_t end = n - q > 4 * MADD_FLUSH_AVX2 ? q + 4 * MADD_FLUSH_AVX2 : n;
        __m256i s[TC_KBLOCKS][2];
        for (int b = 0; b < nb; b++)
            s[b][0] = s[b][1] = _mm256_setzero_si256();
        for (; q < end; q += 4) {
            __m256i x[2][4]; /* chunks 0 and 1, then 2 and 3; field e */
            for (int k = 0; k < 2; k++)
                for (int e = 0; e < 4; e++) {
                    int16_t v;
                    memcpy(&v, act + q * 4 + 4 * e + 2 * k, sizeof v);
                    x[k][e] = _mm256_set1_epi16(v);
                }
            for (int b = 0; b < nb; b++) {
                const uint8_t *p = w + (uint64_t)b * stride + q * 32;
                if (PREFETCH_MADD) {
                    _mm_prefetch((const char *)p + PREFETCH_MADD, PREFETCH_HINT);
                    _mm_prefetch((const char *)p + PREFETCH_MADD + 64, PREFETCH_HINT);
                }
                __m256i c[4];
                madd_quad_load(p, n - q, c);
                for (int k = 0; k < 2; k++) {
                    s[b][0] = madd_pair_avx2(s[b][0], _mm256_unpacklo_epi8(c[2 * k], c[2 * k + 1]),
                                             x[k], tl1);
                    s[b][1] = madd_pair_avx2(s[b][1], _mm256_unpackhi_epi8(c[2 * k], c[2 * k + 1]),
                                             x[k], tl1);
                }
            }
        }
        for (int b = 0; b < nb; b++)
            widen_avx2(s[b][0], s[b][1], out + 32 * b);
    }
    int32_t sum_x;
    memcpy(&sum_x, tab, sizeof sum_x);
    for (int i = 0; i < nb * 32; i++)
        out[i] -= sum_x;
}

/* One row block, TC_KMULTI tokens (prompts): the fields of a quad are made
 * once and multiplied with each token's activations, so the weights are
 * read and unpacked once per four tokens.  A token's broadcast activation
 * words are memory operands, as above. */
static inline __attribute__((always_inline, target("avx2"))) void
madd_multi_avx2(const uint8_t *w, int64_t n, const uint8_t *const *tabs, int32_t *out, const int tl1)
{
    memset(out, 0, TC_KMULTI * 32 * sizeof *out);
    for (int64_t q = 0; q < n;) {
        int64_t end = n - q > 4 * MADD_FLUSH_AVX2 ? q + 4 * MADD_FLUSH_AVX2 : n;
        __m256i s[TC_KMULTI][2];
        for (int t = 0; t < TC_KMULTI; t++)
            s[t][0] = s[t][1] = _mm256_setzero_si256();
        for (; q < end; q += 4) {
            __m256i x[TC_KMULTI][2][4];
            for (int t = 0; t < TC_KMULTI; t++)
                for (int k = 0; k < 2; k++)
                    for (int e = 0; e < 4; e++) {
                        int16_t v;
                        memcpy(&v, tabs[t] + TC_KACT_HEADER + q * 4 + 4 * e + 2 * k, sizeof v);
                        x[t][k][e] = _mm256_set1_epi16(v);
                    }
            const uint8_t *p = w + q * 32;
            if (PREFETCH_MADD) {
                _mm_prefetch((const char *)p + PREFETCH_MADD, PREFETCH_HINT);
                _mm_prefetch((const char *)p + PREFETCH_MADD + 64, PREFETCH_HINT);
            }
            __m256i c[4];
            madd_quad_load(p, n - q, c);
            for (int k = 0; k < 2; k++)
                for (int h = 0; h < 2; h++) {
                    __m256i u = h ? _mm256_unpackhi_epi8(c[2 * k], c[2 * k + 1])
                                  : _mm256_unpacklo_epi8(c[2 * k], c[2 * k + 1]);
                    __m256i f[4];
                    madd_fields_avx2(u, tl1, f);
                    for (int t = 0; t < TC_KMULTI; t++) {
                        __m256i a = _mm256_add_epi16(maddubs_at(f[0], &x[t][k][0]), maddubs_at(f[1], &x[t][k][1]));
                        a = _mm256_add_epi16(a, _mm256_add_epi16(maddubs_at(f[2], &x[t][k][2]),
                                                                 maddubs_at(f[3], &x[t][k][3])));
                        s[t][h] = _mm256_add_epi16(s[t][h], a);
                    }
                }
        }
        for (int t = 0; t < TC_KMULTI; t++)
            widen_avx2(s[t][0], s[t][1], out + 32 * t);
    }
    for (int t = 0; t < TC_KMULTI; t++) {
        int32_t sum_x;
        memcpy(&sum_x, tabs[t], sizeof sum_x);
        for (int i = 0; i < 32; i++)
            out[32 * t + i] -= sum_x;
    }
}

__attribute__((target("avx2"))) static void i2_avx2_multi(const uint8_t *w, int64_t n,
                                                          const uint8_t *const *tabs, int32_t *out)
{
    madd_multi_avx2(w, n, tabs, out, 0);
}

__attribute__((target("avx2"))) static void tl1_avx2_multi(const uint8_t *w, int64_t n,
                                                           const uint8_t *const *tabs, int32_t *out)
{
    madd_multi_avx2(w, n, tabs, out, 1);
}

__attribute__((target("avx2"))) static void i2_avx2(const uint8_t *w, int64_t n,
                                                    const uint8_t *tab, int32_t out[32])
{
    madd_blocks_avx2(w, 0, n, tab, out, 0, 1);
}

__attribute__((target("avx2"))) static void tl1_avx2(const uint8_t *w, int64_t n,
                                                     const uint8_t *tab, int32_t out[32])
{
    madd_blocks_avx2(w, 0, n, tab, out, 1, 1);
}

__attribute__((target("avx2"))) static void i2_avx2_blocks(const uint8_t *w, uint64_t stride,
                                                           int64_t n, const uint8_t *tab,
                                                           int32_t *out)
{
    madd_blocks_avx2(w, stride, n, tab, out, 0, TC_KBLOCKS);
}

__attribute__((target("avx2"))) static void tl1_avx2_blocks(const uint8_t *w, uint64_t stride,
                                                            int64_t n, const uint8_t *tab,
                                                            int32_t *out)
{
    madd_blocks_avx2(w, stride, n, tab, out, 1, TC_KBLOCKS);
}

/* ---- AVX-512 ------------------------------------------------------------- */

#define AVX512 "avx512f,avx512bw,avx512vl"

/* ---- TL2 by table lookups of int16 sums (vpermw) ------------------------- */
/* One plane of a chunk holds two triples per row (low and high nibble). Its
 * 32 bytes widen to 32 int16 lanes, one per row; vpermw looks up all 32
 * rows at once in the plane's table of 32 sums, entries 16-31 for the low
 * nibble (the index with bit 4 set) and 0-15 for the high one (the byte
 * shifted right by 4). Sums stay int16 for TL2_FLUSH chunks: each
 * accumulator lane gains four triples a chunk, |sum| <= 384.
 *
 * Signs, two ways. AVX-512 BW: the sign words are the masks of a masked
 * negation, lane r being row r. With VBMI: one vpmultishiftqb copies sign
 * bit r of both triples of a plane next to lane r's two indices, and a
 * two-table vpermi2w looks the negative lanes up in the negated table:
 * merge-masked operations and mask loads were the bottleneck of the first
 * form (one mask load and masked op pair issues about 1.4 times a cycle
 * here), the second runs on pipes the lookups leave idle (weights in L2,
 * four blocks: 38 -> 41.5 GB/s; one multishift a plane instead of one a
 * triple: 42-43 -> 45-46 GB/s). */

#define TL2_FLUSH 20

/* A plane's table as a way of applying signs wants it. */
typedef struct tl2_tabs {
    __m512i t[4];
} tl2_tabs;

/* Masks: the table as it is; the low nibble's index gets bit 4. */
static inline __attribute__((always_inline, target(AVX512))) tl2_tabs tl2_tabs_mask(__m512i T)
{
    tl2_tabs tt = {{T, T, T, T}};
    return tt;
}

/* The 32 int16 sums of plane q of chunk cw (its bytes widened to wq),
 * signed. */
static inline __attribute__((always_inline, target(AVX512))) __m512i
tl2_plane_mask(const uint8_t *cw, int q, __m512i wq, const tl2_tabs *tt)
{
    uint32_t s_lo, s_hi;
    memcpy(&s_lo, cw + 128 + 8 * q, 4);
    memcpy(&s_hi, cw + 132 + 8 * q, 4);
    __m512i z = _mm512_setzero_si512();
    __m512i vl = _mm512_permutexvar_epi16(_mm512_or_si512(wq, _mm512_set1_epi16(16)), tt->t[0]);
    __m512i vh = _mm512_permutexvar_epi16(_mm512_srli_epi16(wq, 4), tt->t[0]);
    vl = _mm512_mask_sub_epi16(vl, (__mmask32)s_lo, z, vl);
    vh = _mm512_mask_sub_epi16(vh, (__mmask32)s_hi, z, vh);
    return _mm512_add_epi16(vl, vh);
}

#define VNNI AVX512 ",avx512vnni,avx512vbmi"

/* Shifted signs: index bit 5 picks the negated half of a two-register
 * table. The low nibble's table is its 16 sums twice, so that bit 4 of its
 * index (the high nibble's lowest bit) need not be cleared. */
static inline __attribute__((always_inline, target(VNNI))) tl2_tabs tl2_tabs_shift(__m512i T)
{
    __m512i z = _mm512_setzero_si512(), lo = _mm512_shuffle_i64x2(T, T, 0xEE); /* 16-31 twice */
    tl2_tabs tt = {{lo, _mm512_sub_epi16(z, lo), T, _mm512_sub_epi16(z, T)}};
    return tt;
}

/* Byte 2r: sign bit r of the plane's low-nibble triple (bits 0-31 of the
 * broadcast sign qword) at bit 5; byte 2r + 1: bit r of its high-nibble
 * triple (bits 32-63) at bit 1, which is lane bit 9 and becomes index bit 5
 * once the high nibble is shifted down. One multishift thus serves both
 * triples of a plane. */
#define SGN2(r) (uint8_t)(((r) - 5) & 63), (uint8_t)(((r) + 31) & 63)
#define SGN8(r) SGN2(r), SGN2((r) + 1), SGN2((r) + 2), SGN2((r) + 3)
static const uint8_t tl2_sign_ctl[64] = {SGN8(0), SGN8(4), SGN8(8), SGN8(12),
                                         SGN8(16), SGN8(20), SGN8(24), SGN8(28)};
#undef SGN8
#undef SGN2

static inline __attribute__((always_inline, target(VNNI))) __m512i
tl2_plane_shift(const uint8_t *cw, int q, __m512i wq, const tl2_tabs *tt)
{
    long long sq;
    memcpy(&sq, cw + 128 + 8 * q, 8);
    const __m512i s = _mm512_set1_epi64(sq);
    __m512i ms = _mm512_multishift_epi64_epi8(_mm512_loadu_si512(tl2_sign_ctl), s);
    /* 0xD8: the constant's bits taken from ms, the rest from wq. Two merges,
     * as lane bit 5 is both the low index's sign and the high nibble's bit 1. */
    __m512i il = _mm512_ternarylogic_epi32(wq, ms, _mm512_set1_epi16(0x0020), 0xD8);
    __m512i ih = _mm512_ternarylogic_epi32(wq, ms, _mm512_set1_epi16(0x0200), 0xD8);
    ih = _mm512_srli_epi16(ih, 4);
    return _mm512_add_epi16(_mm512_permutex2var_epi16(tt->t[0], il, tt->t[1]),
                            _mm512_permutex2var_epi16(tt->t[2], ih, tt->t[3]));
}

/* The bytes of plane q, one int16 lane a row. */
#define TL2_WIDEN(cw, q)                                                                       \
    _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)((cw) + 32 * (q))))

/* int16 sums of rows 0-31 added into the int32 sums of rows 0-15 and 16-31. */
static inline __attribute__((always_inline, target(AVX512))) void
tl2_widen(__m512i s, __m512i *r0, __m512i *r1)
{
    *r0 = _mm512_add_epi32(*r0, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(s)));
    *r1 = _mm512_add_epi32(*r1, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(s, 1)));
}

static inline __attribute__((always_inline)) void tl2_prefetch(const uint8_t *cw)
{
    if (PREFETCH_LUT == 0)
        return;
    _mm_prefetch((const char *)cw + PREFETCH_LUT, PREFETCH_HINT);
    _mm_prefetch((const char *)cw + PREFETCH_LUT + 64, PREFETCH_HINT);
    _mm_prefetch((const char *)cw + PREFETCH_LUT + 128, PREFETCH_HINT);
}

/* The TL2 kernels (one token on one or four row blocks, four tokens) for a
 * target and a way of applying the signs. */
#define TL2_KERNELS(suffix, TARGET, TABS, PLANE)                                                \
    /* nb (1 or TC_KBLOCKS) row blocks at w + b * stride, one token: nb                          \
     * streams of weights, and each plane's table prepared once for all.                       \
     * The int32 sums wait in out, so that the int16 ones have the registers. */               \
    static inline __attribute__((always_inline, target(TARGET))) void tl2_blocks_body##suffix( \
        const uint8_t *w, uint64_t stride, int64_t n, const uint8_t *tab, int32_t *out,        \
        const int nb)                                                                          \
    {                                                                                          \
        const __m512i z = _mm512_setzero_si512();                                              \
        memset(out, 0, (size_t)nb * 32 * sizeof *out);                                         \
        for (int64_t c = 0; c < n;) {                                                          \
            int64_t end = n - c > TL2_FLUSH ? c + TL2_FLUSH : n;                               \
            __m512i s[TC_KBLOCKS][2];                                                          \
            for (int b = 0; b < nb; b++)                                                       \
                s[b][0] = s[b][1] = z;                                                         \
            for (; c < end; c++) {                                                             \
                const uint8_t *t = tab + c * 256;                                              \
                for (int b = 0; b < nb; b++)                                                   \
                    tl2_prefetch(w + (uint64_t)b * stride + c * 160);                          \
                for (int q = 0; q < 4; q++) {                                                  \
                    tl2_tabs tt = TABS(_mm512_loadu_si512(t + 64 * q));                        \
                    for (int b = 0; b < nb; b++) {                                             \
                        const uint8_t *cw = w + (uint64_t)b * stride + c * 160;                \
                        s[b][q & 1] = _mm512_add_epi16(s[b][q & 1],                            \
                                                       PLANE(cw, q, TL2_WIDEN(cw, q), &tt));   \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (int b = 0; b < nb; b++) {                                                     \
                __m512i r0 = _mm512_loadu_si512(out + 32 * b);                                 \
                __m512i r1 = _mm512_loadu_si512(out + 32 * b + 16);                            \
                tl2_widen(s[b][0], &r0, &r1);                                                  \
                tl2_widen(s[b][1], &r0, &r1);                                                  \
                _mm512_storeu_si512(out + 32 * b, r0);                                         \
                _mm512_storeu_si512(out + 32 * b + 16, r1);                                    \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    __attribute__((target(TARGET))) static void tl2_lut##suffix(                               \
        const uint8_t *w, int64_t n, const uint8_t *tab, int32_t out[32])                      \
    {                                                                                          \
        tl2_blocks_body##suffix(w, 0, n, tab, out, 1);                                         \
    }                                                                                          \
                                                                                               \
    __attribute__((target(TARGET))) static void tl2_lut_blocks##suffix(                        \
        const uint8_t *w, uint64_t stride, int64_t n, const uint8_t *tab, int32_t *out)        \
    {                                                                                          \
        tl2_blocks_body##suffix(w, stride, n, tab, out, TC_KBLOCKS);                           \
    }                                                                                          \
                                                                                               \
    /* Four tokens: the indices of a plane are made once for all four tables. */               \
    __attribute__((target(TARGET))) static void tl2_lut4##suffix(                              \
        const uint8_t *w, int64_t n, const uint8_t *const *tabs, int32_t *out)                 \
    {                                                                                          \
        const __m512i z = _mm512_setzero_si512();                                              \
        __m512i r[TC_KMULTI][2];                                                               \
        for (int i = 0; i < TC_KMULTI; i++)                                                    \
            r[i][0] = r[i][1] = z;                                                             \
        for (int64_t c = 0; c < n;) {                                                          \
            int64_t end = n - c > TL2_FLUSH ? c + TL2_FLUSH : n;                               \
            __m512i s[TC_KMULTI][2];                                                           \
            for (int i = 0; i < TC_KMULTI; i++)                                                \
                s[i][0] = s[i][1] = z;                                                         \
            for (; c < end; c++) {                                                             \
                const uint8_t *cw = w + c * 160;                                               \
                tl2_prefetch(cw);                                                              \
                for (int q = 0; q < 4; q++) {                                                  \
                    __m512i wq = TL2_WIDEN(cw, q);                                             \
                    for (int i = 0; i < TC_KMULTI; i++) {                                      \
                        tl2_tabs tt = TABS(_mm512_loadu_si512(tabs[i] + c * 256 + 64 * q));    \
                        s[i][q & 1] = _mm512_add_epi16(s[i][q & 1], PLANE(cw, q, wq, &tt));    \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (int i = 0; i < TC_KMULTI; i++) {                                              \
                tl2_widen(s[i][0], &r[i][0], &r[i][1]);                                        \
                tl2_widen(s[i][1], &r[i][0], &r[i][1]);                                        \
            }                                                                                  \
        }                                                                                      \
        for (int i = 0; i < TC_KMULTI; i++) {                                                  \
            _mm512_storeu_si512(out + 32 * i, r[i][0]);                                        \
            _mm512_storeu_si512(out + 32 * i + 16, r[i][1]);                                   \
        }                                                                                      \
    }

TL2_KERNELS(_mask, AVX512, tl2_tabs_mask, tl2_plane_mask)
TL2_KERNELS(_shift, VNNI, tl2_tabs_shift, tl2_plane_shift)

/* ---- AVX-512 VNNI: I2 and TL1 by multiply-add ----------------------------- */
/* A quad of chunks (four 32-byte planes, 16 columns of 32 rows) is two
 * 64-byte loads. One two-source byte permute (vpermi2b) per 16 rows gathers
 * row r's byte of each of the four chunks into dword r, so that lane r of a
 * vector is row r. Field e of those bytes (column e of each chunk) then
 * multiplies the quad's activation dword e, broadcast to every lane, in
 * vpdpbusd: four products of unsigned fields by int8 activations summed into
 * the row's int32 lane. Fields are code + 1 in {0, 1, 2}; the sum of the
 * segment's activations is subtracted at the end.
 *
 * One token: I2's fields 0 and 2 are masked after a shift of the bytes by 4
 * for field 2, fields 1 and 3 in place at 4 times their value, each pair in
 * one accumulator (the second shifted down once at the end). TL1 looks its
 * two pair indices per byte up in two 16-byte tables (pshufb), the first
 * and second field of each pair. Four tokens: the fields unscaled, made
 * once for all four. */

/* Quads between folds of the scaled I2 accumulators into int32 totals: a
 * lane gains at most 2 * 4 * 2 * 128 * 4 = 2^13 a quad, so 2^18 quads
 * would overflow; 8192 leaves room and lets a test row of half a million
 * columns cross several folds. */
#define VNNI_FOLD 8192

#define ROWS4(v, i) 16 * (v) + (i), 32 + 16 * (v) + (i), 64 + 16 * (v) + (i), 96 + 16 * (v) + (i)
#define ROWS16(v)                                                                              \
    ROWS4(v, 0), ROWS4(v, 1), ROWS4(v, 2), ROWS4(v, 3), ROWS4(v, 4), ROWS4(v, 5), ROWS4(v, 6),  \
        ROWS4(v, 7), ROWS4(v, 8), ROWS4(v, 9), ROWS4(v, 10), ROWS4(v, 11), ROWS4(v, 12),        \
        ROWS4(v, 13), ROWS4(v, 14), ROWS4(v, 15)
static const uint8_t vnni_rows[2][64] = {{ROWS16(0)}, {ROWS16(1)}};
#undef ROWS16
#undef ROWS4

/* GCC copies a loop-carried vpdpbusd accumulator through a second register
 * on every use; an asm with the accumulator in place avoids the moves
 * (measured in a stand-alone copy of the I2 loop, weights in L2: 61 -> 78
 * GB/s). */
static inline __attribute__((always_inline, target(VNNI))) __m512i dp(__m512i acc, __m512i u8,
                                                                       __m512i s8)
{
#if defined(__clang__)
    return _mm512_dpbusd_epi32(acc, u8, s8);
#else
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
    return acc;
#endif
}

/* The two 64-byte halves of the quad at q: whole, or the n - q < 4 chunks
 * left at the end of a run (the rest zero, never read). */
static inline __attribute__((always_inline, target(VNNI))) void
quad_load(const uint8_t *w, int64_t q, int64_t n, __m512i *z0, __m512i *z1)
{
    const uint8_t *p = w + q * 32;
    if (PREFETCH_MADD) {
        _mm_prefetch((const char *)p + PREFETCH_MADD, PREFETCH_HINT);
        _mm_prefetch((const char *)p + PREFETCH_MADD + 64, PREFETCH_HINT);
    }
    if (n - q >= 4) {
        *z0 = _mm512_loadu_si512(p);
        *z1 = _mm512_loadu_si512(p + 64);
        return;
    }
    int64_t left = n - q;
    *z0 = _mm512_maskz_loadu_epi8(left >= 2 ? ~0ull : 0xffffffffull, p);
    *z1 = _mm512_maskz_loadu_epi8(left == 3 ? 0xffffffffull : 0, p + 64);
}

/* Field vectors f[v][e] (v: rows 0-15, 16-31; e: column within the chunks)
 * of one quad, unscaled: I2's shifted down, TL1's from its tables. */
static inline __attribute__((always_inline, target(VNNI))) void
quad_fields(__m512i z0, __m512i z1, int tl1, __m512i f[2][4])
{
    const __m512i m3 = _mm512_set1_epi8(3), m15 = _mm512_set1_epi8(15);
    for (int v = 0; v < 2; v++) {
        __m512i b = _mm512_permutex2var_epi8(z0, _mm512_loadu_si512(vnni_rows[v]), z1);
        if (tl1) {
            const __m512i ta = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[0]));
            const __m512i tb = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[1]));
            __m512i lo = _mm512_and_si512(b, m15);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m15);
            f[v][0] = _mm512_shuffle_epi8(ta, lo);
            f[v][1] = _mm512_shuffle_epi8(tb, lo);
            f[v][2] = _mm512_shuffle_epi8(ta, hi);
            f[v][3] = _mm512_shuffle_epi8(tb, hi);
        } else {
            f[v][0] = _mm512_and_si512(b, m3);
            f[v][1] = _mm512_and_si512(_mm512_srli_epi16(b, 2), m3);
            f[v][2] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m3);
            f[v][3] = _mm512_and_si512(_mm512_srli_epi16(b, 6), m3);
        }
    }
}

static inline __attribute__((always_inline, target(VNNI))) __m512i act_dword(const uint8_t *tab,
                                                                              int64_t q, int e)
{
    int32_t x;
    memcpy(&x, tab + TC_KACT_HEADER + q * 4 + 4 * e, 4);
    return _mm512_set1_epi32(x);
}

/* Rows 0-15 and 16-31 minus the fields' offset. */
static inline __attribute__((always_inline, target(VNNI))) void
vnni_store(__m512i r0, __m512i r1, const uint8_t *tab, int32_t *out)
{
    int32_t sum_x;
    memcpy(&sum_x, tab, sizeof sum_x);
    __m512i sx = _mm512_set1_epi32(sum_x);
    _mm512_storeu_si512(out, _mm512_sub_epi32(r0, sx));
    _mm512_storeu_si512(out + 16, _mm512_sub_epi32(r1, sx));
}

/* Four tokens at once: a quad's fields are made once for all four. */
static inline __attribute__((always_inline, target(VNNI))) void
pairs_vnni4(const uint8_t *w, int64_t n, const uint8_t *const *tabs, int32_t *out, const int tl1)
{
    const __m512i z = _mm512_setzero_si512();
    __m512i a[TC_KMULTI][2];
    for (int i = 0; i < TC_KMULTI; i++)
        a[i][0] = a[i][1] = z;
    for (int64_t q = 0; q < n; q += 4) {
        __m512i z0, z1, f[2][4];
        quad_load(w, q, n, &z0, &z1);
        quad_fields(z0, z1, tl1, f);
        for (int i = 0; i < TC_KMULTI; i++)
            for (int e = 0; e < 4; e++) {
                __m512i x = act_dword(tabs[i], q, e);
                a[i][0] = dp(a[i][0], f[0][e], x);
                a[i][1] = dp(a[i][1], f[1][e], x);
            }
    }
    for (int i = 0; i < TC_KMULTI; i++)
        vnni_store(a[i][0], a[i][1], tabs[i], out + 32 * i);
}

/* acc + the products of u8 with the int32 at p broadcast to every lane,
 * the broadcast folded into the multiply-add (a register saved per
 * activation dword). */
typedef uint32_t u32_alias __attribute__((may_alias));
static inline __attribute__((always_inline, target(VNNI))) __m512i dp_at(__m512i acc, __m512i u8,
                                                                          const uint8_t *p)
{
#if defined(__clang__)
    return _mm512_dpbusd_epi32(acc, u8, _mm512_set1_epi32((int)*(const u32_alias *)p));
#else
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*(const u32_alias *)p));
    return acc;
#endif
}

/* One quad of one row block into its four accumulators (rows 0-15, 16-31;
 * fields 0 and 2, fields 1 and 3). For I2 fields 0 and 2 are masked after a
 * shift of the bytes by 4 for field 2, fields 1 and 3 in place at 4 times
 * their value (the second accumulator is shifted down at the end); TL1's
 * four fields come from its tables unscaled. */
static inline __attribute__((always_inline, target(VNNI))) void
quad_blocks(__m512i z0, __m512i z1, const uint8_t *x, __m512i a[2][2], const int tl1)
{
    const __m512i m3 = _mm512_set1_epi8(3), m12 = _mm512_set1_epi8(12), m15 = _mm512_set1_epi8(15);
    for (int v = 0; v < 2; v++) {
        __m512i by = _mm512_permutex2var_epi8(z0, _mm512_loadu_si512(vnni_rows[v]), z1);
        __m512i hi = _mm512_srli_epi16(by, 4), f0, f1, f2, f3;
        if (tl1) {
            const __m512i ta = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[0]));
            const __m512i tb = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)tl1_fields[1]));
            __m512i nl = _mm512_and_si512(by, m15), nh = _mm512_and_si512(hi, m15);
            f0 = _mm512_shuffle_epi8(ta, nl);
            f1 = _mm512_shuffle_epi8(tb, nl);
            f2 = _mm512_shuffle_epi8(ta, nh);
            f3 = _mm512_shuffle_epi8(tb, nh);
        } else {
            f0 = _mm512_and_si512(by, m3);
            f2 = _mm512_and_si512(hi, m3);
            f1 = _mm512_and_si512(by, m12);
            f3 = _mm512_and_si512(hi, m12);
        }
        a[v][0] = dp_at(dp_at(a[v][0], f0, x), f2, x + 8);
        a[v][1] = dp_at(dp_at(a[v][1], f1, x + 4), f3, x + 12);
    }
}

/* nb (1 or TC_KBLOCKS) row blocks at w + b * stride, one token: whole
 * quads in the loop, the chunks of a last partial quad after it. tl1 and nb
 * are constants in every caller, so each gets its own loop. */
static inline __attribute__((always_inline, target(VNNI))) void
pairs_vnni_blocks(const uint8_t *w, uint64_t stride, int64_t n, const uint8_t *tab, int32_t *out,
                  const int tl1, const int nb)
{
    const __m512i z = _mm512_setzero_si512();
    const uint8_t *act = tab + TC_KACT_HEADER;
    __m512i r[TC_KBLOCKS][2];
    for (int b = 0; b < nb; b++)
        r[b][0] = r[b][1] = z;
    int64_t whole = n / 4 * 4;
    for (int64_t q0 = 0; q0 < n; q0 += 4 * VNNI_FOLD) {
        int64_t q1 = whole - q0 > 4 * VNNI_FOLD ? q0 + 4 * VNNI_FOLD : whole;
        __m512i a[TC_KBLOCKS][2][2];
        for (int b = 0; b < nb; b++)
            a[b][0][0] = a[b][0][1] = a[b][1][0] = a[b][1][1] = z;
        int64_t q = q0;
        for (; q < q1; q += 4)
            for (int b = 0; b < nb; b++) {
                const uint8_t *p = w + (uint64_t)b * stride + q * 32;
                if (PREFETCH_MADD) {
                    _mm_prefetch((const char *)p + PREFETCH_MADD, PREFETCH_HINT);
                    _mm_prefetch((const char *)p + PREFETCH_MADD + 64, PREFETCH_HINT);
                }
                quad_blocks(_mm512_loadu_si512(p), _mm512_loadu_si512(p + 64), act + q * 4, a[b],
                            tl1);
            }
        if (q1 == whole && whole < n) /* the last, partial quad */
            for (int b = 0; b < nb; b++) {
                __m512i z0, z1;
                quad_load(w + (uint64_t)b * stride, whole, n, &z0, &z1);
                quad_blocks(z0, z1, act + whole * 4, a[b], tl1);
            }
        for (int b = 0; b < nb; b++)
            for (int v = 0; v < 2; v++)
                r[b][v] = _mm512_add_epi32(
                    r[b][v], _mm512_add_epi32(a[b][v][0], tl1 ? a[b][v][1]
                                                              : _mm512_srai_epi32(a[b][v][1], 2)));
    }
    for (int b = 0; b < nb; b++)
        vnni_store(r[b][0], r[b][1], tab, out + 32 * b);
}

__attribute__((target(VNNI))) static void i2_vnni(const uint8_t *w, int64_t n, const uint8_t *tab,
                                                  int32_t out[32])
{
    pairs_vnni_blocks(w, 0, n, tab, out, 0, 1);
}

__attribute__((target(VNNI))) static void i2_vnni4(const uint8_t *w, int64_t n,
                                                   const uint8_t *const *tabs, int32_t *out)
{
    pairs_vnni4(w, n, tabs, out, 0);
}

__attribute__((target(VNNI))) static void i2_vnni_blocks(const uint8_t *w, uint64_t stride,
                                                         int64_t n, const uint8_t *tab,
                                                         int32_t *out)
{
    pairs_vnni_blocks(w, stride, n, tab, out, 0, TC_KBLOCKS);
}

__attribute__((target(VNNI))) static void tl1_vnni_blocks(const uint8_t *w, uint64_t stride,
                                                          int64_t n, const uint8_t *tab,
                                                          int32_t *out)
{
    pairs_vnni_blocks(w, stride, n, tab, out, 1, TC_KBLOCKS);
}

__attribute__((target(VNNI))) static void tl1_vnni(const uint8_t *w, int64_t n, const uint8_t *tab,
                                                   int32_t out[32])
{
    pairs_vnni_blocks(w, 0, n, tab, out, 1, 1);
}

__attribute__((target(VNNI))) static void tl1_vnni4(const uint8_t *w, int64_t n,
                                                    const uint8_t *const *tabs, int32_t *out)
{
    pairs_vnni4(w, n, tabs, out, 1);
}

/* ---- table builders ------------------------------------------------------ */

/* W32: the plane's 32 sums are c0 * x0 + c1 * x1 + c2 * x2 per lane, the
 * coefficients being the digits of the lane's triple minus one and the
 * activations those of the triple the lane belongs to (lanes 0-15: the
 * plane's second triple, 16-31: its first). */
#define TL2_DIGIT(i, d) ((i) % 16 < 14 ? ((i) % 16 + 13) / (d == 0 ? 9 : d == 1 ? 3 : 1) % 3 - 1 : 0)
#define C8(d, i) TL2_DIGIT(i, d), TL2_DIGIT(i + 1, d), TL2_DIGIT(i + 2, d), TL2_DIGIT(i + 3, d),    \
                 TL2_DIGIT(i + 4, d), TL2_DIGIT(i + 5, d), TL2_DIGIT(i + 6, d), TL2_DIGIT(i + 7, d)
#define C32(d) {C8(d, 0), C8(d, 8), C8(d, 16), C8(d, 24)}
static const int16_t tl2_coef[3][32] = {C32(0), C32(1), C32(2)};
#undef C32
#undef C8
#undef TL2_DIGIT

__attribute__((target(AVX512))) static void build_w32(const int8_t *xs, int64_t n, uint8_t *dst)
{
    __m512i c[3], first[3];
    for (int d = 0; d < 3; d++) {
        c[d] = _mm512_loadu_si512(tl2_coef[d]);
        /* lane l takes column 3 + d (l < 16) or d (l >= 16) of the plane */
        first[d] = _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16((short)(3 + d)),
                                           _mm512_set1_epi16((short)d));
    }
    const __m512i six = _mm512_set1_epi16(6);
    for (int64_t j = 0; j < n; j++) {
        __m512i x = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256((const __m256i *)(const void *)(xs + 24 * j)));
        __m512i idx[3] = {first[0], first[1], first[2]};
        for (int q = 0; q < 4; q++) {
            __m512i t = _mm512_mullo_epi16(c[0], _mm512_permutexvar_epi16(idx[0], x));
            t = _mm512_add_epi16(t, _mm512_mullo_epi16(c[1], _mm512_permutexvar_epi16(idx[1], x)));
            t = _mm512_add_epi16(t, _mm512_mullo_epi16(c[2], _mm512_permutexvar_epi16(idx[2], x)));
            _mm512_storeu_si512(dst + 256 * j + 64 * q, t);
            for (int d = 0; d < 3; d++)
                idx[d] = _mm512_add_epi16(idx[d], six);
        }
    }
}

/* ACT4: within every 16 columns, byte 4e + c takes column 4c + e, a
 * permutation inside each 16 bytes, so one pshufb per 128-bit lane builds
 * it on every x86 path. */
#define T4(e) (e), 4 + (e), 8 + (e), 12 + (e)
static const uint8_t act4_order[16] = {T4(0), T4(1), T4(2), T4(3)};
#undef T4

__attribute__((target("avx2"))) static void build_act4(const int8_t *xs, int64_t n, uint8_t *dst)
{
    const __m256i order = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)act4_order));
    for (int64_t c = 0; c < n; c += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 4 * c));
        _mm256_storeu_si256((__m256i *)(void *)(dst + 4 * c), _mm256_shuffle_epi8(v, order));
    }
}

const struct tc_kimpl tc_kimpl_avx2 = {
    {{TC_KTAB_ACT4, i2_avx2, i2_avx2_multi, i2_avx2_blocks, build_act4, tc_kdecode_i2_avx2},
     {TC_KTAB_ACT4, tl1_avx2, tl1_avx2_multi, tl1_avx2_blocks, build_act4, tc_kdecode_tl1_avx2},
     {TC_KTAB_SPLIT, tl2_avx2, NULL, NULL, NULL, tc_kdecode_tl2_avx2}},
    tc_kgemm_avx2};
/* Without VNNI, I2 and TL1 run the AVX2 multiply-add kernels: a 512-bit
 * version of the old pair tables, one row block a call, read 12.7-13.0
 * GB/s at 6912 x 2560 on one thread against their 16.7-17.7. */
const struct tc_kimpl tc_kimpl_avx512 = {
    {{TC_KTAB_ACT4, i2_avx2, i2_avx2_multi, i2_avx2_blocks, build_act4, NULL},
     {TC_KTAB_ACT4, tl1_avx2, tl1_avx2_multi, tl1_avx2_blocks, build_act4, NULL},
     {TC_KTAB_W32, tl2_lut_mask, tl2_lut4_mask, tl2_lut_blocks_mask, build_w32, NULL}},
    NULL};
const struct tc_kimpl tc_kimpl_avx512vnni = {
    {{TC_KTAB_ACT4, i2_vnni, i2_vnni4, i2_vnni_blocks, build_act4, NULL},
     {TC_KTAB_ACT4, tl1_vnni, tl1_vnni4, tl1_vnni_blocks, build_act4, NULL},
     {TC_KTAB_W32, tl2_lut_shift, tl2_lut4_shift, tl2_lut_blocks_shift, build_w32, NULL}},
    NULL};

#else
/* Not x86-64: only the scalar path exists (kernels.c). */
typedef int tc_kernels_x86_unused;
#endif
