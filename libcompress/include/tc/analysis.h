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

typedef struct tc_head_stats {
    double entropy;     /* mean attention entropy (nats) over queries */
    double top10_mass;  /* mean share of attention mass on the top 10 % of keys */
} tc_head_stats;

typedef struct tc_layer_stats {
    tc_module_stats mod[TC_N_MODULES];
    tc_head_stats *heads; /* n_heads, or NULL */
} tc_layer_stats;

typedef struct tc_analysis {
    int n_layers, n_heads;
    tc_layer_stats *layers;
    double nll;          /* mean NLL per predicted token */
    double ppl;          /* exp(nll) */
    uint64_t n_tokens;   /* tokens run through the model */
    uint64_t n_predicted;/* next-token predictions scored */
    double seconds;
} tc_analysis;

const char *tc_module_name(tc_module m); /* "attn", "mlp", "block" */

void tc_analysis_free(tc_analysis *a);

#ifdef __cplusplus
}
#endif

#endif
