/* The embedding and output head of a packed model stored in one of ggml's
 * block types (Q8_0, Q6_K, Q4_0, byte for byte as GGUF stores them), and
 * their products with int8 activations.
 *
 * A large-vocabulary model reads its whole head for every token (BitNet
 * 2B4T: 128256 x 2560, 0.66 GB in F16, more than all its ternary layers), so
 * the head is read in a block type and multiplied as llama.cpp and bitnet.cpp
 * do it: the activations are quantized per block of columns to int8
 * (tc_qmat_quantize_act), each block's integer dot product is exact, and the
 * blocks are combined in float.
 *
 * Every path gives bit for bit the same floats.  The float arithmetic is
 * fixed (docs/KERNELS.md): per block the products of four consecutive
 * columns are summed into one of 8 int32 lanes (for Q6_K each multiplied by
 * its 16-column scale and summed over the 256-column block), each lane is
 * converted to float and fused-multiply-added with the block's
 * scale(weights) x scale(activations) into its own float accumulator, and the
 * 8 accumulators are added as ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).  The
 * scalar path computes exactly that; the AVX2 one in vector lanes. */
#ifndef TC_QMAT_H
#define TC_QMAT_H

#include <stdint.h>

#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether t is a type the embedding and head may have: Q8_0, Q6_K, Q4_0. */
int tc_qmat_type_ok(tc_dtype t);

/* Whether t is a type a block's linear weight may have (mixed precision,
 * tc/mixed.h): the 32-column types Q8_0 and Q4_0. */
int tc_qmat_linear_type_ok(tc_dtype t);

/* W[rows][cols] as block type t stores it: encoded with ggml's reference
 * rounding (tc_ggml_quant_quantize) and decoded again into out; cols must be
 * whole blocks. */
int tc_qmat_round(tc_dtype t, const float *W, int64_t rows, int64_t cols, float *out, tc_error *err);

/* Columns per activation scale for type t: 32 (Q8_0, Q4_0) or 256 (Q6_K);
 * also the columns of one weight block, which rows must be whole blocks of. */
int64_t tc_qmat_block(tc_dtype t);

/* Bytes of one row of cols columns. */
uint64_t tc_qmat_row_bytes(tc_dtype t, int64_t cols);

/* Quantizes n rows of activations x[n][cols] for type t: per block of
 * tc_qmat_block(t) columns d = max|x| / 127 and q = round(x * 127 / max|x|)
 * (halves away from zero) in [-127, 127]; xq[n][cols], xd[n][cols / block].
 * A block with a value that is not finite gets d = NaN (its products are
 * NaN, not garbage). */
void tc_qmat_quantize_act(tc_dtype t, const float *x, int64_t n, int64_t cols, int8_t *xq, float *xd);

/* Whether path p computes these products with its own kernels (avx2 with FMA
 * and F16C, and the wider x86 paths, use the AVX2 ones), else scalar. */
int tc_qmat_path_simd(tc_kpath p);

/* y[t * ldy + r] for rows r0 <= r < r1 and n tokens of activations (xq, xd
 * from tc_qmat_quantize_act), weights w[rows][row_bytes]; path SCALAR or any
 * other (its SIMD kernels where tc_qmat_path_simd says so). */
void tc_qmat_rows(tc_kpath path, tc_dtype t, const uint8_t *w, int64_t cols, int64_t r0, int64_t r1,
                  const int8_t *xq, const float *xd, int64_t n, float *y, int64_t ldy);

/* The same over rows x cols, the rows split over the pool's workers (each row
 * on one worker, so results do not depend on the thread count); y[n][rows].
 * TC_ERR if len is short of rows whole rows. */
int tc_qmat_matmul(const tc_kernels *k, tc_kpool *pool, tc_dtype t, const uint8_t *w, uint64_t len,
                   int64_t rows, int64_t cols, const int8_t *xq, const float *xd, int64_t n, float *y,
                   tc_error *err);

/* Refuses weights whose block scales are infinite or NaN (the message names
 * the first such row). */
int tc_qmat_check(tc_dtype t, const uint8_t *w, int64_t rows, int64_t cols, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
