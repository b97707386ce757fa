/* Post-training ternary quantization: a weight W [M][K] (M output rows, K
 * input columns, fp32 row-major) becomes codes in {-1, 0, +1} [M][K] plus one
 * fp32 scale per scale group, so that W ~ scale * code.
 *
 * Three quantizers share one grouping description and one output shape:
 *   absmean     the BitNet b1.58 rule (scale = mean |W| of the group),
 *   optimal     the least-squares ternary fit of each group (exact search),
 *   calibrated  GPTQ on the ternary grid: rounding errors are pushed onto the
 *               columns not yet quantized, weighted by H = X^T X of the layer's
 *               calibration inputs, so that X W^T rather than W is preserved.
 *
 * Scales are laid out row-major [M][groups per row] (a single scale for a
 * per-tensor grouping). */
#ifndef TC_TERNARY_H
#define TC_TERNARY_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_tgroup_kind {
    TC_TGROUP_TENSOR, /* one scale for the whole matrix */
    TC_TGROUP_ROW,    /* one scale per output row: M scales */
    TC_TGROUP_COLS,   /* one scale per `cols` input columns of a row: M * ceil(K/cols) */
} tc_tgroup_kind;

#define TC_TGROUP_COLS_MIN 32
#define TC_TGROUP_COLS_MAX 256

typedef struct tc_tgroup {
    tc_tgroup_kind kind;
    int32_t cols; /* TC_TGROUP_COLS only: 32..256, any K (the last group of a row may be short) */
} tc_tgroup;

/* Checks the grouping against the shape and returns the number of scales.
 * TC_ERR for a bad grouping, M or K < 1, or an element count that does not
 * fit in memory. */
int tc_ternary_scale_count(const tc_tgroup *g, int64_t M, int64_t K, int64_t *n_scales,
                           tc_error *err);

/* Groups per row (1 for tensor and row groupings: every row has one scale slot
 * in the sense of tc_ternary_scale_index). */
int64_t tc_ternary_groups_per_row(const tc_tgroup *g, int64_t K);

/* Index into the scales array of the scale that applies to W[m][k]. */
static inline int64_t tc_ternary_scale_index(const tc_tgroup *g, int64_t K, int64_t m, int64_t k)
{
    switch (g->kind) {
    case TC_TGROUP_TENSOR:
        return 0;
    case TC_TGROUP_ROW:
        return m;
    default:
        return m * ((K + g->cols - 1) / g->cols) + k / g->cols;
    }
}

/* BitNet b1.58: per group gamma = max(mean |W|, 1e-5), code = clamp(round(W /
 * gamma), -1, 1) with round half away from zero, scale = gamma. */
int tc_ternary_absmean(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                       float *scales, tc_error *err);

/* Per group, the threshold tau and scale alpha minimising ||W - alpha*T||^2
 * with T = sign(W) * [|W| > tau], found exactly over all thresholds. Scales
 * are floored at 1e-5 like absmean's (only all-zero groups reach the floor). */
int tc_ternary_optimal(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                       float *scales, tc_error *err);

/* Where the fixed scales of the calibrated quantizer come from. */
typedef enum tc_tscale_init {
    TC_TSCALE_OPTIMAL = 0, /* default: least-squares scales of the original W */
    TC_TSCALE_ABSMEAN,
} tc_tscale_init;

typedef struct tc_ternary_calib_opts {
    double damp_frac;          /* lambda = damp_frac * mean(diag H); 0 means 0.01 */
    int32_t block;             /* columns per lazy-update block; 0 means 128 */
    tc_tscale_init scale_init; /* TC_TSCALE_OPTIMAL unless told otherwise */
} tc_ternary_calib_opts;

/* GPTQ on the ternary grid. H is the K x K matrix X^T X (fp64, row-major,
 * symmetric; only read) accumulated from the layer's calibration inputs X
 * [N][K]. Scales are fixed first (opts->scale_init on the original W), then
 * columns are quantized left to right with nearest rounding to {-s, 0, s} and
 * each column's error is propagated to the remaining columns through the
 * upper Cholesky factor of (H + lambda I)^-1. Columns with H[k][k] == 0 never
 * see any input: they are rounded alone and propagate nothing. opts may be
 * NULL. TC_ERR if H cannot be factorised even after raising the damping. */
int tc_ternary_calibrated(const float *W, int64_t M, int64_t K, const tc_tgroup *g,
                          const double *H, const tc_ternary_calib_opts *opts, int8_t *codes,
                          float *scales, tc_error *err);

/* H += X^T X for a batch of N input rows X [N][K] (fp32); H is K x K fp64,
 * both triangles updated. */
int tc_ternary_hessian_add(const float *X, int64_t N, int64_t K, double *H, tc_error *err);

/* W_hat[m][k] = scale(m, k) * code[m][k]. */
void tc_ternary_dequantize(const int8_t *codes, const float *scales, int64_t M, int64_t K,
                           const tc_tgroup *g, float *W_hat);

typedef struct tc_ternary_report {
    double zero_share;       /* share of codes equal to 0 */
    double rel_weight_error; /* ||W - W_hat|| / ||W|| (0 when W == 0) */
    uint64_t zeros;          /* codes equal to 0 */
    double weight_sq;        /* ||W||^2 */
    double error_sq;         /* ||W - W_hat||^2 */
} tc_ternary_report;

void tc_ternary_report_make(const float *W, const int8_t *codes, const float *scales, int64_t M,
                            int64_t K, const tc_tgroup *g, tc_ternary_report *out);

/* The same in pieces: starting from a zeroed report, _add the rows of W in
 * order (M rows at a time, scales being those rows' scales; with tensor
 * grouping only as one piece), then _finish with the whole shape.  With row
 * or column groups the result equals tc_ternary_report_make's bit for bit. */
void tc_ternary_report_add(const float *W, const int8_t *codes, const float *scales, int64_t M,
                           int64_t K, const tc_tgroup *g, tc_ternary_report *acc);
void tc_ternary_report_finish(tc_ternary_report *acc, int64_t M, int64_t K);

/* ||X W^T - X W_hat^T|| / ||X W^T|| for a sample of activations X [N][K]
 * (0 when X W^T == 0). TC_ERR only when the work buffers cannot be allocated. */
int tc_ternary_output_error(const float *W, const int8_t *codes, const float *scales, int64_t M,
                            int64_t K, const tc_tgroup *g, const float *X, int64_t N,
                            double *rel, tc_error *err);

/* ---- asymmetric ternary: W ~ alpha * code + mu per group ---------------------
 *
 * The affine quantizers give every scale group an offset mu beside its scale
 * alpha (offsets [n_scales], laid out as scales are).  Both are f16 values
 * (what the packed file stores, TC_TPARAM_AFFINE_F16 in tc/tpack.h), and the
 * codes are those that round W to the stored grid {mu - alpha, mu, mu + alpha}.
 * Functions below that take `offsets` accept NULL for a symmetric weight. */

/* Rounds a group's fitted (alpha, mu) to the values it is stored as: alpha
 * to the nearest f16 (1e-5 at least, as the other quantizers' scales), mu to
 * alpha + l with l the f16 nearest mu - alpha where that sum is an f16 (so
 * that ggml's Q4_1, d * q + m with m = mu - alpha, holds the group exactly;
 * mu moves by at most half an f16 step of mu - alpha), else to the nearest
 * f16. */
void tc_ternary_affine_round(float *alpha, float *mu);

/* Per group, the least-squares W ~ alpha * T + mu.  For a fixed grid the
 * best codes round to it, so in sorted order they are runs of -1, 0 and +1:
 * groups of up to 256 weights try every pair of run lengths (exact); longer
 * ones alternate the rounding and the closed-form grid of the codes
 * (iterative ternary fitting, from the symmetric least-squares fit of W -
 * mean(W), at most 32 rounds, the error never rising).  The pair is then
 * rounded as tc_ternary_affine_round does and the codes rounded to it. */
int tc_ternary_affine(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                      float *scales, float *offsets, tc_error *err);

typedef struct tc_ternary_affine_calib_opts {
    double damp_frac; /* lambda = damp_frac * mean(diag H); 0 means 0.01 */
    int32_t act_order; /* 1: columns swept in order of decreasing H[k][k] */
    int32_t refit;     /* rounds of (alpha, mu) refitted to the swept codes by least squares
                          in the H norm, each followed by another sweep on the refitted grid
                          (the best rounds' result is kept); 0: none */
} tc_ternary_affine_calib_opts;

/* GPTQ on the affine ternary grid: columns swept (left to right, or by
 * decreasing H[k][k] with act_order), each rounded to its group's grid and
 * its error propagated through the inverse Cholesky factor of the damped H,
 * as tc_ternary_calibrated does.  The grid of a group of columns (grouping
 * `cols` without act_order) is fitted by tc_ternary_affine's iteration on
 * the corrected weights when the sweep reaches the group; otherwise on the
 * original W before the sweep.  Then, `refit` times: (alpha, mu) refitted to
 * minimise (w - w_hat)^T H (w - w_hat) row by row with the codes fixed, and
 * the sweep run again on that grid; the result with the least such error is
 * returned.  opts may be NULL. */
int tc_ternary_affine_calibrated(const float *W, int64_t M, int64_t K, const tc_tgroup *g,
                                 const double *H, const tc_ternary_affine_calib_opts *opts,
                                 int8_t *codes, float *scales, float *offsets, tc_error *err);

/* With the codes fixed, (alpha, mu) of every group refitted to minimise
 * sum over rows of (w - w_hat)^T H (w - w_hat) (H: K x K, fp64, X^T X of the
 * layer's inputs), then rounded as tc_ternary_affine_round does.  offsets
 * NULL: the scales alone (symmetric).  A group whose parameters the data do
 * not determine (no input reaches it, or all codes 0) keeps them. */
int tc_ternary_refit(const float *W, int64_t M, int64_t K, const tc_tgroup *g, const double *H,
                     const int8_t *codes, float *scales, float *offsets, tc_error *err);

/* (w - w_hat)^T H (w - w_hat) summed over rows: the output error on the
 * inputs whose X^T X is H. */
int tc_ternary_h_error(const float *W, int64_t M, int64_t K, const tc_tgroup *g, const double *H,
                       const int8_t *codes, const float *scales, const float *offsets,
                       double *out, tc_error *err);

/* D += Xq^T (Xf - Xq) for a batch of N rows of two activations of the same
 * inputs (fp32 [N][K]; D: K x K fp64): Xq as the quantized model computes
 * it, Xf as the original does. */
int tc_ternary_cross_add(const float *Xq, const float *Xf, int64_t N, int64_t K, double *D,
                         tc_error *err);

/* G += (Rf - Rq)^T Xq (G: M x K fp64) for N rows of a residual stream
 * (fp32 [N][M]) in the original (Rf) and the quantized model (Rq), and the
 * quantized model's inputs Xq [N][K] of a weight whose output is added to
 * that stream. */
int tc_ternary_residual_add(const float *Rf, const float *Rq, const float *Xq, int64_t N, int64_t M, int64_t K,
                            double *G, tc_error *err);

/* The weights whose outputs on the quantized model's inputs best match the
 * original's outputs on its own inputs: Wt = W + (W D^T + G) (H + lambda
 * I)^-1 with H = Xq^T Xq, D = Xq^T (Xf - Xq) and lambda = damp_frac *
 * mean(diag H) (0: 0.01): the least-squares solution of Xq Wt^T = Xf W^T +
 * (Rf - Rq) pulled towards W where the inputs are weak.  G (M x K, may be
 * NULL for none) is tc_ternary_residual_add's product for a weight whose
 * output joins a residual stream: the weight then also makes up what the
 * stream it is added to lost.  Quantizing Wt in the H norm then minimises
 * ||Xq W_hat^T - Xf W^T - (Rf - Rq)||. */
int tc_ternary_target_weights(const float *W, int64_t M, int64_t K, const double *H,
                              const double *D, const double *G, double damp_frac, float *Wt, tc_error *err);

/* The measurements above for weights with offsets (NULL: as without). */
void tc_ternary_dequantize_affine(const int8_t *codes, const float *scales, const float *offsets,
                                  int64_t M, int64_t K, const tc_tgroup *g, float *W_hat);
void tc_ternary_report_add_affine(const float *W, const int8_t *codes, const float *scales,
                                  const float *offsets, int64_t M, int64_t K, const tc_tgroup *g,
                                  tc_ternary_report *acc);
int tc_ternary_output_error_affine(const float *W, const int8_t *codes, const float *scales,
                                   const float *offsets, int64_t M, int64_t K, const tc_tgroup *g,
                                   const float *X, int64_t N, double *rel, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
