/* What a kernel path provides: for each layout, how it wants the
 * activations of a token laid out (its "tables") and the functions that sum
 * 32 rows over a run of chunks, one token or TC_KMULTI tokens at a time. */
#ifndef TC_KERNELS_INTERNAL_H
#define TC_KERNELS_INTERNAL_H

#include <stdint.h>

#include "tc/tpack.h"

/* Table styles:
 *   I16        16 int16 entries per pair or triple of activations,
 *              [chunk][table][16] (the scalar kernels).
 *   SPLIT      16 low bytes then 16 high bytes per table, [chunk][table]
 *              (TL2 on AVX2).
 *   ACT4       no table, the activations themselves for the multiply-add
 *              kernels of I2 and TL1 (AVX2, AVX-512 VNNI): a header of TC_KACT_HEADER bytes whose
 *              first int32 is the sum of the segment's activations, then per
 *              quad of chunks (16 columns) four dwords, dword e holding
 *              column e of each of the four chunks (byte j: x[16q + 4j + e]),
 *              zero outside the group, padded with zeros to whole quads and
 *              to a multiple of 64 bytes.
 *   W32        TL2 table lookups by vpermw: per chunk, per plane p, 32
 *              int16 sums: entries 0-15 those of triple 2p+1 (the plane's
 *              high nibbles), entries 16-31 those of triple 2p (its low
 *              nibbles), 256 bytes a chunk. */
typedef enum tc_ktab_style {
    TC_KTAB_I16,
    TC_KTAB_SPLIT,
    TC_KTAB_ACT4,
    TC_KTAB_W32
} tc_ktab_style;

#define TC_KACT_HEADER 64

/* out[r] = sums of rows 0..31 of one row block over n_chunks chunks starting
 * at w, with the tables of those chunks at tab. */
typedef void (*tc_kblock_fn)(const uint8_t *w, int64_t n_chunks, const uint8_t *tab,
                             int32_t out[32]);

/* The same for TC_KMULTI tokens at once: tabs[t] are the tables of token t,
 * out is [TC_KMULTI][32]. */
#define TC_KMULTI 4
typedef void (*tc_kmulti_fn)(const uint8_t *w, int64_t n_chunks, const uint8_t *const *tabs,
                             int32_t *out);

/* The same for TC_KBLOCKS row blocks at once, block b at w + b * stride,
 * one token: out is [TC_KBLOCKS][32]. A single stream of weights leaves
 * this machine class's memory well short of its rate (the hardware
 * prefetcher runs a limited distance ahead of each stream); four streams
 * read as fast as a plain read does. */
#define TC_KBLOCKS 4
typedef void (*tc_kblocks_fn)(const uint8_t *w, uint64_t stride, int64_t n_chunks,
                              const uint8_t *tab, int32_t *out);

/* Writes the tables of n_chunks chunks from xs, the run's activations
 * (n_chunks times the chunk's columns, zero outside the segment, and 64
 * more zero bytes), to dst: for ACT4 what follows the header. */
typedef void (*tc_kbuild_fn)(const int8_t *xs, int64_t n_chunks, uint8_t *dst);

/* ---- the prompt path (kernels_gemm.c) ----------------------------------
 * With many tokens a product decodes each row block's codes once into a
 * panel of fields c + 1 in {0, 1, 2} and multiplies every token with it.
 * A panel holds a run of quads (4 columns) of one 32-row block as two
 * halves, `half` bytes apart, each 64 bytes a quad: two 8-row octets of 32
 * bytes, dword l of an octet being the quad's four fields of one row.
 * Octet i (0-3; half i / 2) holds rows 4i..4i+3 in dwords 0-3 and
 * 16+4i..16+4i+3 in dwords 4-7. */
#define TC_KGEMM_MIN_TOKENS 12 /* fewer tokens: the table path (faster below 8, even at 8) */
#define TC_KGEMM_QUADS 64      /* int16 sums hold 64 quads: |pair| <= 2 * 2 * 128 */
#define TC_KGEMM_TOKENS 6      /* most tokens of one microkernel call */

/* Decodes n_chunks chunks of one row block at w into quads 0.. of panel. */
typedef void (*tc_kdecode_fn)(const uint8_t *w, int64_t n_chunks, uint8_t *panel, size_t half);

/* sums[t * s_stride + r] = the products of quads 0..nq-1 of panel with the
 * activations of token t (t < nt <= TC_KGEMM_TOKENS) at x + t * x_stride,
 * four bytes a quad, minus xsum[t * xsum_stride] (the fields' + 1). */
typedef void (*tc_kgemm_fn)(const uint8_t *panel, size_t half, int64_t nq, const int8_t *x,
                            size_t x_stride, int nt, const int32_t *xsum, size_t xsum_stride,
                            int32_t *sums, size_t s_stride);

/* One layout on one path; multi and blocks may be NULL (then tokens and
 * row blocks go one by one), build NULL for the styles portable C builds
 * (I16, SPLIT; ACT4 and W32 need a build), decode NULL where the path has
 * no prompt path. */
typedef struct tc_klayout {
    tc_ktab_style style;
    tc_kblock_fn one;
    tc_kmulti_fn multi;
    tc_kblocks_fn blocks;
    tc_kbuild_fn build;
    tc_kdecode_fn decode;
} tc_klayout;

struct tc_kimpl {
    tc_klayout layout[TC_TPACK_LAYOUT_COUNT]; /* indexed by tc_tpack_layout */
    tc_kgemm_fn gemm;                         /* NULL: no prompt path */
};

/* A run of chunks whose sums form one scale group of every row. */
typedef struct kseg {
    int64_t c0, n_chunks; /* chunk range */
    int64_t k0, k1;       /* the group's columns */
    size_t tab_off;       /* offset of its tables within one token's tables */
} kseg;

/* The sums of segment s of one row block (w: its first chunk) for n_tok
 * tokens into sums[t * s_stride + r] (r < 32): xa is [n_tok][x_stride]
 * activations, zero past the columns, and xsum[t * xsum_stride] token t's
 * sum over the segment's columns; panel is scratch of two halves of
 * `half` >= 64 * 4 * s->n_chunks * p->chunk_cols / 16 bytes. */
void tc_kgemm_block(const struct tc_kimpl *impl, const tc_tpack_plan *p, const uint8_t *w,
                    const kseg *s, const int8_t *xa, size_t x_stride, int64_t n_tok,
                    const int32_t *xsum, size_t xsum_stride, uint8_t *panel, size_t half,
                    int32_t *sums, size_t s_stride);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TC_KERNELS_X86 1
extern const struct tc_kimpl tc_kimpl_avx2;
extern const struct tc_kimpl tc_kimpl_avx512;
extern const struct tc_kimpl tc_kimpl_avx512vnni;
/* The prompt path on AVX2 (kernels_gemm.c). */
void tc_kdecode_i2_avx2(const uint8_t *w, int64_t n_chunks, uint8_t *panel, size_t half);
void tc_kdecode_tl1_avx2(const uint8_t *w, int64_t n_chunks, uint8_t *panel, size_t half);
void tc_kdecode_tl2_avx2(const uint8_t *w, int64_t n_chunks, uint8_t *panel, size_t half);
void tc_kgemm_avx2(const uint8_t *panel, size_t half, int64_t nq, const int8_t *x, size_t x_stride,
                   int nt, const int32_t *xsum, size_t xsum_stride, int32_t *sums,
                   size_t s_stride);
#endif

#endif
