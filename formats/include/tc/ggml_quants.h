/* ggml's block-quantized types as llama.cpp's quantizers write them: Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, the K-quants Q2_K to Q6_K (256-weight
 * super-blocks) and IQ4_NL / IQ4_XS (a fixed non-uniform 16-level grid).
 * Each decodes to fp32 exactly as ggml's reference dequantizer computes it,
 * weight for weight. */
#ifndef TC_GGML_QUANTS_H
#define TC_GGML_QUANTS_H

#include <stdint.h>

#include "tc/dtype.h"
#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Is t one of the types below? */
int tc_ggml_quant_is(tc_dtype t);

/* Decodes n weights (whole blocks) of type t at src; a block whose scale is
 * infinite or NaN fails with a message naming it. */
int tc_ggml_quant_dequantize(tc_dtype t, const void *src, uint64_t n, float *dst, tc_error *err);

/* The types tc writes (Q8_0, Q4_0, Q4_K, Q6_K), with ggml's reference
 * rounding and no importance matrix: the bytes llama.cpp's quantizer writes
 * for the same floats.  Weights that are not finite are refused. */
int tc_ggml_quant_can_encode(tc_dtype t);
int tc_ggml_quant_quantize(tc_dtype t, const float *src, uint64_t n, void *dst, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
