/* What a kernel path provides: how it wants the activation tables laid out
 * and one function per layout family that sums 32 rows over a run of chunks. */
#ifndef TC_KERNELS_INTERNAL_H
#define TC_KERNELS_INTERNAL_H

#include <stdint.h>

/* Table styles (16 entries per pair or triple of activations):
 *   I16        int16 entries, [chunk][table][16]
 *   SPLIT      16 low bytes then 16 high bytes per table, [chunk][table]
 *   SPLIT_DUP  for 512-bit shuffles, each 16-byte table twice so one load
 *              covers two 128-bit lanes:
 *              pairs: per two chunks c, c+1 and table j: low bytes
 *                     [T_c T_c T_c+1 T_c+1] then high bytes alike (256 B);
 *              TL2:   per chunk, plane pair q and nibble h: low bytes
 *                     [T_4q+h twice, T_4q+2+h twice] then high bytes (512 B).
 *   ACT        no table: for the multiply-add kernels, a header of
 *              TC_KACT_HEADER bytes whose first int32 is the sum of the
 *              segment's activations, then the activations themselves, zero
 *              outside the group, padded with zeros to a multiple of 64
 *              bytes: I2 4 per chunk as they are, TL2 one dword
 *              (x0, x1, x2, 0) per triple (32 bytes per chunk). */
typedef enum tc_ktab_style {
    TC_KTAB_I16,
    TC_KTAB_SPLIT,
    TC_KTAB_SPLIT_DUP,
    TC_KTAB_ACT
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

struct tc_kimpl {
    tc_ktab_style style; /* of the tables pairs and tl2 read */
    tc_kblock_fn pairs;  /* I2 and TL1: they differ only in their tables */
    tc_kblock_fn tl2;
    /* Multiply-add kernels on TC_KTAB_ACT tables, used where not NULL:
     * [0] I2, [1] TL1, and TL2; multi for TC_KMULTI tokens at once. */
    tc_kblock_fn pairs_madd[2];
    tc_kmulti_fn pairs_multi[2];
    tc_kblock_fn tl2_madd;
    tc_kmulti_fn tl2_multi;
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TC_KERNELS_X86 1
extern const struct tc_kimpl tc_kimpl_avx2;
extern const struct tc_kimpl tc_kimpl_avx512;
extern const struct tc_kimpl tc_kimpl_avx512vnni;
#endif

/* int16 pair sums fit 63 chunks (|entry| <= 256, two per chunk and lane). */
#define TC_KPAIR_FLUSH 63

#endif
