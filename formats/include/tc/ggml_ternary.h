/* ggml's ternary block types TQ1_0 and TQ2_0, as stored in GGUF files.
 *
 * Both cover 256 weights with one f16 scale d; a weight is (trit - 1) * d with
 * trit in {0, 1, 2}:
 *   TQ1_0, 54 bytes: qs[48] five trits a byte, qh[4] four trits a byte, d;
 *   TQ2_0, 66 bytes: qs[64] four 2-bit fields a byte, d.
 * Bit order and element order follow ggml's dequantize_row_tq1_0/_tq2_0; see
 * docs/LAYOUTS.md. The scale is per 256-weight block, which is not the same as
 * the quantizers' scale groups: callers pick one scale per block. */
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

/* Bytes of one row of K weights; TC_ERR unless type is TC_TQ1_0 or TC_TQ2_0
 * and K is a positive multiple of 256. */
int tc_ggml_ternary_row_bytes(tc_dtype type, int64_t K, uint64_t *bytes, tc_error *err);

/* Encodes K codes in {-1, 0, 1} with one scale per 256-weight block
 * (d[K/256], stored as f16) into K/256 blocks at out. TC_ERR for a code
 * outside {-1, 0, 1} or a bad type or K. */
int tc_ggml_ternary_encode(tc_dtype type, const int8_t *codes, const float *d, int64_t K,
                           uint8_t *out, tc_error *err);

/* The inverse: codes[K] and the blocks' scales d[K/256] as fp32. A TQ2_0
 * field of 3 (not a ternary value; ggml reads it as +2) is an error. */
int tc_ggml_ternary_decode(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                           float *d, tc_error *err);

/* ggml's dequantization, bit for bit: out[K] = (trit - 1) * f16(d). */
int tc_ggml_ternary_dequantize(tc_dtype type, const uint8_t *blocks, int64_t K, float *out,
                               tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
