/* Redundancy analysis: how much each attention sub-layer, MLP sub-layer and
 * whole block changes the hidden state (cosine similarity of its input and
 * output, "What Matters in Transformers? Not All Attention Is Needed"), and
 * what removing it measurably costs (change in NLL, KL divergence). */
#ifndef TC_ANALYSIS_H
#define TC_ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_module {
    TC_MOD_ATTN,
    TC_MOD_MLP,
    TC_MOD_BLOCK,
    TC_N_MODULES
} tc_module;

/* Per module of one layer.  cos is averaged over every token of every
 * sequence (accumulated in fp64); importance = 1 - cos_mean. */
typedef struct tc_module_stats {
    int present;        /* 0 when the layer lacks this module (pruned) */
    double cos_mean, cos_std, cos_min;
    int measured;       /* dnll and kl were measured */
    double dnll;        /* mean NLL with the module skipped minus the baseline */
    double kl;          /* mean KL(original || skipped) of next-token distributions */
} tc_module_stats;

/* Per attention head: what its weights look like (means over queries; sink,
 * prev, diag and k90 over queries at positions >= 1, NaN when not measured)
 * and what masking it alone costs. */
typedef struct tc_head_stats {
    double entropy;     /* mean attention entropy (nats) over queries */
    double top10_mass;  /* mean share of attention mass on the top 10 % of keys */
    double sink;        /* mean weight on the sequence's first token */
    double prev;        /* on the previous token */
    double diag;        /* on the query's own token */
    double k90;         /* mean fraction of the visible keys that hold 90 % of the mass */
    int measured;       /* dnll and kl were measured */
    double dnll;        /* mean NLL with this head's output zeroed minus the baseline */
    double kl;          /* mean KL(original || masked) of next-token distributions */
} tc_head_stats;

/* How the attention a layer's keys receive is spread over a window, averaged
 * over heads and windows: the share on the first token, on each of
 * TC_RECV_BINS equal slices of the window's positions (the first token in
 * slice 0), and the fraction of keys that hold 50 % and 90 % of it (fewest,
 * largest first). */
#define TC_RECV_BINS 8
typedef struct tc_received {
    double first;
    double bins[TC_RECV_BINS];
    double keys50, keys90;
} tc_received;

/* Token dropping: ratios of the grid are shares of the droppable positions
 * (all but the first and the last) that are kept. */
#define TC_TOKEN_GRID_MAX 16
#define TC_SCHEDULE_MAX_STAGES 8
#define TC_SCHEDULE_MAX_CANDIDATES 48
#define TC_HEAD_CURVE_MAX 16

/* Per layer l: the attention received from the window's last position and
 * on average over every query, and what dropping tokens from layer l on
 * costs. */
typedef struct tc_token_stats {
    int measured;                       /* received, drop_dnll and keep were measured */
    tc_received last, mean;
    double drop_dnll[TC_TOKEN_GRID_MAX]; /* per grid ratio: mean last-position NLL change; NaN: not run */
    double drop_se[TC_TOKEN_GRID_MAX];   /* its standard error over windows */
    double keep[2];                     /* the smallest grid ratio at which it and every larger one stay
                                           within 1 % / 5 % of the baseline NLL; 1: none; NaN: not measured */
} tc_token_stats;

typedef struct tc_layer_stats {
    tc_module_stats mod[TC_N_MODULES];
    tc_head_stats *heads; /* n_heads, or NULL */
    tc_token_stats tokens;
} tc_layer_stats;

/* Masking heads: over which windows, and the k least important (by KL)
 * masked together. */
typedef struct tc_head_measure {
    int measured;
    uint64_t windows, n_predicted;
    double nll;                         /* baseline mean NLL over those windows */
    int n_curve;
    int curve_k[TC_HEAD_CURVE_MAX];
    double curve_dnll[TC_HEAD_CURVE_MAX];
} tc_head_measure;

/* A PyramidDrop-style schedule: stage s (0-based) starts at layer
 * boundary[s - 1] (stage 0 at layer 0) and keeps lambda^s of the droppable
 * positions, ranked at the layer before the boundary by the attention the
 * last position gives them (mean over heads). */
typedef struct tc_schedule {
    int n_stages;
    double lambda;
    int boundary[TC_SCHEDULE_MAX_STAGES]; /* n_stages - 1 layer indices, increasing */
    double dnll;                          /* measured mean last-position NLL change */
    double dnll_se;                       /* its standard error over windows */
    double flop_saving;                   /* 1 - FLOPs / FLOPs of the full window (layers and head) */
} tc_schedule;

typedef struct tc_token_measure {
    int measured;
    uint64_t windows;
    double window_len;                  /* mean tokens per window run (the last token is the target) */
    double nll_last;                    /* baseline mean NLL of each window's last prediction */
    int n_grid;
    double grid[TC_TOKEN_GRID_MAX];     /* keep ratios tried, decreasing */
    double budget;                      /* relative NLL increase the chosen schedule may cost */
    int chosen;                         /* index into candidates, or -1 when none fits the budget */
    int n_candidates;
    tc_schedule candidates[TC_SCHEDULE_MAX_CANDIDATES];
} tc_token_measure;

typedef struct tc_analysis {
    int n_layers, n_heads;
    tc_layer_stats *layers;
    double nll;          /* mean NLL per predicted token */
    double ppl;          /* exp(nll) */
    uint64_t n_tokens;   /* tokens run through the model */
    uint64_t n_predicted;/* next-token predictions scored */
    double seconds;
    tc_head_measure heads;
    tc_token_measure tokens;
} tc_analysis;

/* What ranks heads.  KL(original || masked) is zero exactly for a head that
 * changes nothing and positive for any other; the NLL change can be negative
 * (masking a head of an untrained model often lowers it). */
typedef enum tc_head_key {
    TC_HEAD_BY_KL,
    TC_HEAD_BY_DNLL,
} tc_head_key;

/* Every measured head, least important first: by the key ascending (ties:
 * the other figure, then layer, then head); unmeasured heads are left out.
 * *out holds heads as layer * n_heads + head, malloc'd (NULL when there are
 * none).  The report's head ranking and the heads masked together go by
 * TC_HEAD_BY_KL. */
int tc_analysis_head_ranking(const tc_analysis *a, tc_head_key by, int **out, size_t *n, tc_error *err);

const char *tc_module_name(tc_module m); /* "attn", "mlp", "block" */

void tc_analysis_free(tc_analysis *a);

#ifdef __cplusplus
}
#endif

#endif
