/* Element types of stored tensors and their conversion to fp32. */
#ifndef TC_DTYPE_H
#define TC_DTYPE_H

#include <stdint.h>
#include <stddef.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_dtype {
    TC_F32,
    TC_F16,
    TC_BF16,
    TC_F64,
    TC_I8,
    TC_U8,
    TC_I16,
    TC_I32,
    TC_I64,
    TC_BOOL,
    TC_Q8_0,  /* ggml: blocks of 32 int8 with one f16 scale (34 bytes) */
    TC_TQ1_0, /* ggml ternary, 256-weight blocks, 54 bytes */
    TC_TQ2_0, /* ggml ternary, 256-weight blocks, 66 bytes */
    /* ggml's other block types (tc/ggml_quants.h): weights per block, bytes */
    TC_Q4_0,   /* 32, 18 */
    TC_Q4_1,   /* 32, 20 */
    TC_Q5_0,   /* 32, 22 */
    TC_Q5_1,   /* 32, 24 */
    TC_Q2_K,   /* 256, 84 */
    TC_Q3_K,   /* 256, 110 */
    TC_Q4_K,   /* 256, 144 */
    TC_Q5_K,   /* 256, 176 */
    TC_Q6_K,   /* 256, 210 */
    TC_IQ4_NL, /* 32, 18 */
    TC_IQ4_XS, /* 256, 136 */
    TC_I2_S,   /* bitnet.cpp's ternary type: 2 bits a weight in blocks of 128 over the whole tensor,
                  then one f32 scale in a 32-byte tail (tc/ggml_ternary.h); a tensor's bytes are
                  n / 4 + 32, so it is never read in part */
    TC_DTYPE_COUNT
} tc_dtype;

/* "F32", "BF16", "Q8_0", ... as safetensors / GGUF spell them. */
const char *tc_dtype_name(tc_dtype t);
/* Parses a safetensors dtype string; returns TC_ERR if unknown. */
int tc_dtype_from_name(const char *s, tc_dtype *out);

/* Elements per block (1 for plain types) and bytes per block. */
uint64_t tc_dtype_block_elems(tc_dtype t);
uint64_t tc_dtype_block_bytes(tc_dtype t);

/* Bytes needed for n elements; TC_ERR on overflow or when n is not a whole
 * number of blocks. */
int tc_dtype_span(tc_dtype t, uint64_t n, uint64_t *bytes, tc_error *err);

/* Whether tc_convert_to_f32 can read this type. */
int tc_dtype_is_float_convertible(tc_dtype t);

/* Converts n elements of type t at src (any alignment) to fp32. */
int tc_convert_to_f32(tc_dtype t, const void *src, uint64_t n, float *dst, tc_error *err);
/* fp32 -> F32, F16 or BF16 (round to nearest even). */
int tc_convert_from_f32(tc_dtype t, const float *src, uint64_t n, void *dst, tc_error *err);

float tc_f16_to_f32(uint16_t h);
uint16_t tc_f32_to_f16(float f);
float tc_bf16_to_f32(uint16_t h);
uint16_t tc_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif

#endif
