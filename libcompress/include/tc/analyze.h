/* Running the redundancy analysis and perplexity over calibration sequences.
 * The results are analysis.h's; this is how they are computed.
 *
 * Sequences come as one token array plus offsets (n_seqs + 1 entries,
 * offsets[0] = 0; sequence s is tokens[offsets[s] .. offsets[s+1])).  Within
 * a sequence, position t predicts token t+1: a sequence of n tokens gives
 * n - 1 predictions. */
#ifndef TC_ANALYZE_H
#define TC_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include "tc/analysis.h"
#include "tc/dist.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*tc_progress_fn)(void *ctx, double fraction);

/* Zero-initialised options are the defaults: one thread, measured importance
 * and head statistics on. */
typedef struct tc_analyze_opts {
    int n_threads;
    int no_measure;          /* leave dnll and kl unmeasured (one pass instead of ~1.5 L) */
    int no_head_stats;       /* leave tc_layer_stats.heads NULL */
    const tc_skip *skip;     /* analyse the model with these sub-layers already skipped */
    size_t batch_tokens;     /* > 0: sequences grouped into passes of at most this many tokens; 0: one
                                sequence per pass.  Results depend on the grouping (BLAS rounds a row
                                differently in products of different heights), never on dist */
    tc_dist *dist;           /* the MPI job the batches are spread over, or NULL: one process */
    tc_progress_fn progress; /* called with the fraction of this rank's work done, 0 .. 1 */
    void *progress_ctx;
    size_t head_windows;     /* > 0: each head masked alone over the first head_windows sequences */
    size_t token_windows;    /* > 0: token dropping over the first token_windows sequences */
    double schedule_budget;  /* relative last-position NLL increase the chosen schedule may cost; 0: 0.01 */
} tc_analyze_opts;

/* Computes, per layer, the cosine similarities of each module's input and
 * output (attention: X vs H, MLP: H vs Y, block: X vs Y; per token over the
 * hidden dimension, mean/std/min over every token, in fp64), the attention
 * heads' statistics (entropy, top-10 % mass, weight on the first token, the
 * previous token and the query's own, the share of keys holding 90 % of the
 * mass), the calibration perplexity, and unless disabled the measured
 * importance of every module: the change in mean NLL and the mean
 * KL(original || skipped) over every predicted position when that module
 * alone is skipped.
 *
 * With head_windows, each head is also masked alone (its slice of the
 * attention output zeroed before the output projection) over the first
 * head_windows sequences, rerunning from the stored input of its layer, and
 * the k least important heads are masked together for k = 1, 2, 4, ...
 * (tc_head_measure).  With token_windows, the first token_windows sequences
 * are run without their last token, whose prediction by the last position is
 * scored: the attention each layer's keys receive, the NLL change of
 * dropping the lowest-ranked tokens from each layer on at every ratio of a
 * grid, and PyramidDrop-style schedules, each measured by running with the
 * tokens dropped (tc_token_measure; docs/FORWARD.md says how).
 *
 * Measuring runs layer by layer once, storing each layer's X and H and the
 * baseline log-softmax of every position of the batch (a batch is one
 * sequence, or batch_tokens' group); skipping attention at layer l then reruns layers
 * l .. L-1 from the stored X_l, skipping the MLP or the block reruns l+1 ..
 * L-1 from H_l or X_l.  When every weight fits in 1 GiB as fp32 they are
 * converted once for all reruns.  out is filled only on success; free it with
 * tc_analysis_free. */
int tc_analyze(const tc_model *m, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
               const tc_analyze_opts *opts, tc_analysis *out, tc_error *err);

/* batch_tokens for tc_analyze_opts such that a pass's stored hidden states,
 * baseline log-probabilities and buffers take about `bytes` (at least 1). */
size_t tc_analyze_batch_tokens(const tc_model *m, const tc_analyze_opts *opts, uint64_t bytes);

typedef struct tc_ppl_opts {
    int n_threads;
    const tc_skip *skip;       /* perplexity of the model with these sub-layers skipped */
    const tc_weights *weights; /* preconverted weights, or NULL */
    size_t batch_tokens;       /* > 0: sequences grouped into passes of at most this many tokens;
                                  0: one sequence per pass (as tc_analyze_opts) */
    tc_dist *dist;             /* the MPI job the sequences are spread over, or NULL */
    tc_progress_fn progress;
    void *progress_ctx;
} tc_ppl_opts;

typedef struct tc_ppl {
    double nll;            /* mean NLL per predicted token (nats) */
    double ppl;            /* exp(nll); NAN when nothing was predicted */
    uint64_t n_tokens;
    uint64_t n_predicted;
} tc_ppl;

/* Perplexity over every next-token prediction in every sequence. */
int tc_perplexity(const tc_model *m, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
                  const tc_ppl_opts *opts, tc_ppl *out, tc_error *err);

/* An observer summing the NLL of every next-token prediction of a batch, for
 * adding perplexity to a pass run for other reasons.  The batch must outlive
 * the pass; reset nll_sum and n_predicted to reuse it. */
typedef struct tc_nll_observer {
    const tc_batch *batch;
    double nll_sum;
    uint64_t n_predicted;
    size_t seq;            /* sequence of the last token seen (internal) */
    double *per_seq;       /* NULL, or [n_seqs][2]: each sequence's NLL sum and predictions added here */
} tc_nll_observer;

tc_observer tc_nll_observer_make(tc_nll_observer *acc, const tc_batch *b);

#ifdef __cplusplus
}
#endif

#endif
