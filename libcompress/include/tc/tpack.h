/* Packed ternary layouts for lookup-table (LUT) matrix-vector kernels.
 *
 * A packed weight is a weight section followed by a scale section:
 *   weights: row blocks of 32 rows (the last padded with zero rows), each a
 *            run of column chunks in K order (the last padded with zero
 *            columns); one chunk holds the same columns of all 32 rows,
 *            interleaved so one 32-byte vector of index nibbles feeds one
 *            table lookup for 32 output rows;
 *   params:  each scale group's parameters, in the quantizer's order, as the
 *            plan's parameter kind says: an fp32 scale (W = s * c), or an
 *            f16 scale and an f16 offset (W = s * c + mu; the kernels add
 *            mu times the group's activation sum).
 * Layouts (byte diagrams in docs/LAYOUTS.md):
 *   I2   2 bits per weight (code + 1), columns in pairs -> one nibble;
 *        chunk = 4 columns x 32 rows = 32 bytes.
 *   TL1  a pair of weights -> index 0..8 into the 9 sums of two activations,
 *        two indices per byte; chunk = 4 columns x 32 rows = 32 bytes.
 *   TL2  a triple of weights -> sign bit + index 0..13 into 14 sums of three
 *        activations (the other 13 are their negatives); index nibbles and
 *        sign bits in separate planes; chunk = 24 columns x 32 rows = 160
 *        bytes (1.67 bits per weight).
 * Padding always encodes the code 0, so a kernel may run over it.
 *
 * Each layout has a scalar LUT matvec (the reference the fast kernels are
 * tested against) computing int32 sums y[m] = sum_k code[m][k] * x[k]. */
#ifndef TC_TPACK_H
#define TC_TPACK_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"
#include "tc/ternary.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_TPACK_TILE_ROWS 32

typedef enum tc_tpack_layout {
    TC_TPACK_I2,
    TC_TPACK_TL1,
    TC_TPACK_TL2,
    TC_TPACK_LAYOUT_COUNT
} tc_tpack_layout;

/* How each scale group's parameters follow the tiles (little-endian). */
typedef enum tc_tparam_kind {
    TC_TPARAM_SCALE_F32 = 0, /* one fp32 scale per group: W = s * c (4 bytes) */
    TC_TPARAM_AFFINE_F16,    /* an f16 scale, then an f16 offset: W = s * c + mu (4 bytes) */
    TC_TPARAM_KIND_COUNT
} tc_tparam_kind;

/* "f32-scale", "f16-affine"; TC_ERR for another name. */
const char *tc_tparam_kind_name(tc_tparam_kind k);
int tc_tparam_kind_from_name(const char *s, tc_tparam_kind *out);

typedef struct tc_tpack_plan {
    tc_tpack_layout layout;
    int64_t rows, cols;               /* M, K of the weight */
    int64_t rows_padded, cols_padded; /* to the row block and the chunk width */
    int64_t chunk_cols;               /* 4 (I2, TL1) or 24 (TL2) */
    uint64_t chunk_bytes;             /* 32 or 160 */
    uint64_t row_block_bytes;         /* bytes of one 32-row block of weights */
    tc_tgroup group;
    int64_t n_scales;      /* scale groups */
    tc_tparam_kind params; /* how each group's parameters are stored */
    int offset;            /* 1: each group has an offset (TC_TPARAM_AFFINE_F16) */
    uint32_t group_bytes;  /* bytes of one group's parameters (4) */
    uint64_t weight_bytes; /* the weight section, from offset 0 */
    uint64_t scale_offset; /* == weight_bytes: where the parameters start */
    uint64_t total_bytes;  /* weights + group_bytes * n_scales */
} tc_tpack_plan;

/* "i2", "tl1", "tl2". */
const char *tc_tpack_layout_name(tc_tpack_layout layout);

/* Sizes and offsets of an M x K weight with grouping g. TC_ERR for an unknown
 * layout, a bad grouping or shape, or a size that overflows. */
int tc_tpack_plan_make(tc_tpack_layout layout, int64_t M, int64_t K, const tc_tgroup *g,
                       tc_tpack_plan *plan, tc_error *err);

/* The same with the parameters stored as `params` (tc_tpack_plan_make: fp32
 * scales). */
int tc_tpack_plan_make_params(tc_tpack_layout layout, int64_t M, int64_t K, const tc_tgroup *g,
                              tc_tparam_kind params, tc_tpack_plan *plan, tc_error *err);

/* Writes plan->total_bytes bytes at out. Codes must be in {-1, 0, 1}.
 * Offsets (n_scales of them) are stored where the plan has them (NULL: 0);
 * f16 parameters are rounded to f16. */
int tc_tpack_pack(const tc_tpack_plan *plan, const int8_t *codes, const float *scales,
                  uint8_t *out, tc_error *err);
int tc_tpack_pack_affine(const tc_tpack_plan *plan, const int8_t *codes, const float *scales,
                         const float *offsets, uint8_t *out, tc_error *err);

/* Packing in pieces, for a caller that produces codes 32 rows at a time:
 * pack_block writes row block rb (plan->row_block_bytes at out + rb *
 * row_block_bytes) from the codes of rows 32 rb .. 32 rb + 31 only (fewer in
 * the last block of a ragged weight; codes[0] is row 32 rb); put_scales
 * writes the scale section.  Packing every block and the scales gives the
 * bytes of tc_tpack_pack. */
int tc_tpack_pack_block(const tc_tpack_plan *plan, int64_t rb, const int8_t *codes, uint8_t *out,
                        tc_error *err);
void tc_tpack_put_scales(const tc_tpack_plan *plan, const float *scales, uint8_t *out);
void tc_tpack_put_affine(const tc_tpack_plan *plan, const float *scales, const float *offsets,
                         uint8_t *out);

/* The exact inverse of pack. The packed bytes are checked: TC_ERR if len is
 * short, an index is outside its table, a zero triple carries a sign, or
 * padding holds anything but the code 0. */
int tc_tpack_unpack(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                    int8_t *codes, float *scales, tc_error *err);
/* With the offsets too (0 where the plan has none); offsets may be NULL. */
int tc_tpack_unpack_affine(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                           int8_t *codes, float *scales, float *offsets, tc_error *err);

/* y[m] = sum_k code[m][k] * x[k] through the layout's lookup tables, one
 * table per pair (I2, TL1) or triple (TL2) of activations. x has plan->cols
 * entries. Indices outside a table read 0, so arbitrary bytes are safe.
 * TC_ERR only if len is short. */
int tc_tpack_matvec_lut(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                        const int8_t *x, int32_t *y, tc_error *err);

/* The plain integer matvec on unpacked codes [M][K]. */
void tc_tpack_matvec_ref(const int8_t *codes, int64_t M, int64_t K, const int8_t *x, int32_t *y);

/* BitNet b1.58 per-token activation quantization: s = 127 / max(absmax, 1e-5),
 * xq = clamp(round(x * s), -128, 127) (halves away from zero). Returns s, so
 * x ~ xq / s. */
float tc_tpack_quantize_act(const float *x, int64_t K, int8_t *xq);

#ifdef __cplusplus
}
#endif

#endif
