/* Ternary codes in ggml blocks, as stored in GGUF files.
 *
 * ggml's ternary block types TQ1_0 and TQ2_0 cover 256 weights with one f16
 * scale d; a weight is (trit - 1) * d with trit in {0, 1, 2}:
 *   TQ1_0, 54 bytes: qs[48] five trits a byte, qh[4] four trits a byte, d;
 *   TQ2_0, 66 bytes: qs[64] four 2-bit fields a byte, d.
 * Bit order and element order follow ggml's dequantize_row_tq1_0/_tq2_0; see
 * docs/LAYOUTS.md.
 *
 * Q4_0 (18 bytes: d, 16 bytes of nibbles q, a weight being (q - 8) * d) and
 * Q8_0 (34 bytes: d, 32 int8 q, a weight being q * d) cover 32 weights; with
 * q - 8 (Q4_0) or q (Q8_0) in {-1, 0, 1} they hold ternary codes exactly, for
 * rows that are whole 32-blocks but not 256-blocks.
 *
 * Q4_1 (20 bytes: d, m, 16 bytes of nibbles q, a weight being q * d + m)
 * holds ternary codes with an offset mu per 32-block: q = code + 1 and m =
 * mu - d, so a weight is code * d + mu up to the f16 rounding of m.
 *
 * The scale is per block, which is not the same as the quantizers' scale
 * groups: callers pick one scale per block. */
#ifndef TC_GGML_TERNARY_H
#define TC_GGML_TERNARY_H

#include <stdint.h>

#include "tc/dtype.h"
#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_TQ_BLOCK_ELEMS 256
#define TC_TQ1_0_BLOCK_BYTES 54
#define TC_TQ2_0_BLOCK_BYTES 66

/* Weights per block of a type that can hold ternary codes (256 for TQ1_0 and
 * TQ2_0, 32 for Q4_0, Q4_1 and Q8_0), 0 for any other type. */
int tc_ggml_ternary_block_elems(tc_dtype type);

/* Whether its blocks hold an offset too (Q4_1). */
int tc_ggml_ternary_has_offset(tc_dtype type);

/* Bytes of one row of K weights; TC_ERR unless type is one of the five above
 * and K is a positive multiple of its block. */
int tc_ggml_ternary_row_bytes(tc_dtype type, int64_t K, uint64_t *bytes, tc_error *err);

/* Encodes K codes in {-1, 0, 1} with one scale per block (d[K/B] for blocks of
 * B weights, stored as f16) into K/B blocks at out. TC_ERR for a code outside
 * {-1, 0, 1} or a bad type or K. */
int tc_ggml_ternary_encode(tc_dtype type, const int8_t *codes, const float *d, int64_t K,
                           uint8_t *out, tc_error *err);

/* The same with an offset per block, mu[K/B] (a weight is code * d + mu):
 * only for a type that holds one (Q4_1); mu NULL writes offsets of 0. */
int tc_ggml_ternary_encode_affine(tc_dtype type, const int8_t *codes, const float *d, const float *mu,
                                  int64_t K, uint8_t *out, tc_error *err);

/* The inverse: codes[K] and the blocks' scales d[K/B] as fp32. A value that
 * is not ternary (a TQ2_0 field of 3, which ggml reads as +2; a Q4_0 or Q8_0
 * integer other than -1, 0, 1; a Q4_1 nibble other than 0, 1, 2) is an
 * error. */
int tc_ggml_ternary_decode(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                           float *d, tc_error *err);

/* With the offsets too: mu[K/B] = f16(m) + f16(d) in fp32 (0 for a type
 * without offsets); mu may be NULL. */
int tc_ggml_ternary_decode_affine(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                                  float *d, float *mu, tc_error *err);

/* ggml's dequantization, bit for bit, whatever the integers: out[K] =
 * (trit - 1) * f16(d), (q - 8) * f16(d), q * f16(d) + f16(m) (Q4_1) or
 * q * f16(d). */
int tc_ggml_ternary_dequantize(tc_dtype type, const uint8_t *blocks, int64_t K, float *out,
                               tc_error *err);

/* bitnet.cpp's I2_S (its ggml type 36, x86 layout, quantize_i2_s with
 * ACT_PARALLEL): the n weights of a whole tensor, in row-major order, in
 * blocks of 128 stored in 32 bytes; byte j of a block holds its weights j,
 * j + 32, j + 64 and j + 96 at bit shifts 6, 4, 2 and 0, as code + 1 (0, 1, 2
 * for -1, 0, +1).  After the n / 4 bytes of codes, a 32-byte tail whose first
 * 4 bytes are the tensor's one f32 scale (the rest zero): a weight is code *
 * scale.  n must be a multiple of 128. */
#define TC_I2S_BLOCK 128
#define TC_I2S_TAIL 32

/* Writes n codes and the scale into n / 4 + 32 bytes at out. */
int tc_i2s_encode(const int8_t *codes, uint64_t n, float scale, uint8_t *out, tc_error *err);

/* Reads them back; the 2-bit value 3 (no code) is an error. */
int tc_i2s_decode(const uint8_t *data, uint64_t n, int8_t *codes, float *scale, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
