/* Shared between analysis.c (the pass over the calibration windows) and the
 * measurements it hands on: masking heads together (head_curve.c) and
 * dropping tokens (token_drop.c). */
#ifndef TC_ANALYSIS_INTERNAL_H
#define TC_ANALYSIS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tc/analyze.h"

typedef struct tc_analysis_ctx {
    const tc_model *m;
    const tc_analyze_opts *o;
    const tc_weights *weights; /* every weight in fp32, or NULL: per layer */
    tc_forward_ws *ws;         /* buffers shared by every pass, or NULL */
    double *done;              /* token-layers of work done so far (progress) */
    double total;              /* the whole analysis's token-layers */
} tc_analysis_ctx;

/* Adds token_layers of work done and reports the fraction. */
void tc_analysis_progress(const tc_analysis_ctx *x, double token_layers);

/* Token-layers that the head curve and the token analysis will run at most. */
double tc_analysis_extra_work(const tc_model *m, const size_t *offsets, size_t n_seqs, const tc_analyze_opts *o);

/* With every head of out measured (masked alone) over sequences [0, n_win),
 * whose baseline NLL sums to base_nll over base_pred predictions: masks the
 * k least important together for k = 1, 2, 4, ... (at most half of them)
 * and fills out->heads. */
int tc_analysis_head_curve(const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                           double base_nll, uint64_t base_pred, tc_analysis *out, tc_error *err);

/* The token analysis over sequences [0, n_win) (tc_analyze's comment):
 * fills out->tokens and each layer's tokens. */
int tc_analysis_tokens(const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                       tc_analysis *out, tc_error *err);

#endif
