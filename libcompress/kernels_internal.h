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

/* One layout on one path; multi and blocks may be NULL (then tokens and
 * row blocks go one by one), build NULL for the styles portable C builds
 * (I16, SPLIT; ACT4 and W32 need a build). */
typedef struct tc_klayout {
    tc_ktab_style style;
    tc_kblock_fn one;
    tc_kmulti_fn multi;
    tc_kblocks_fn blocks;
    tc_kbuild_fn build;
} tc_klayout;

struct tc_kimpl {
    tc_klayout layout[TC_TPACK_LAYOUT_COUNT]; /* indexed by tc_tpack_layout */
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TC_KERNELS_X86 1
extern const struct tc_kimpl tc_kimpl_avx2;
extern const struct tc_kimpl tc_kimpl_avx512;
extern const struct tc_kimpl tc_kimpl_avx512vnni;
#endif

#endif
