/* The fp32 forward pass of a Llama-family model over a batch of sequences.
 *
 * It runs one layer at a time over the whole batch: layer l's weights are
 * converted to fp32, applied to every token, and freed before layer l+1, so
 * memory holds one layer plus the activations.  At fixed points it calls
 * observers (hidden states, inputs of the linear layers, logits, attention
 * statistics): analysis, calibration statistics, perplexity and KL are all
 * observers of one pass.
 *
 * Every layer computes
 *     H = X + Attn(RMSNorm(X))        Y = H + MLP(RMSNorm(H))
 * with causal grouped-query attention, RoPE in the model's stored layout and
 * a SwiGLU MLP.  A missing or skipped sub-layer is the identity.
 *
 * Results do not depend on the thread count nor on how sequences are grouped
 * into batches (beyond float rounding of the BLAS products, ~1e-6): attention
 * runs per (sequence, head) in a fixed order whatever thread picks it up. */
#ifndef TC_FORWARD_H
#define TC_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"
#include "tc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sequences as one token array: sequence s is tokens[offsets[s] ..
 * offsets[s+1]), so offsets holds n_seqs + 1 entries with offsets[0] = 0.
 * Positions (for RoPE and causality) restart at 0 in every sequence. */
typedef struct tc_batch {
    const int32_t *tokens;
    const size_t *offsets;
    size_t n_seqs;
} tc_batch;

static inline size_t tc_batch_tokens(const tc_batch *b)
{
    return b->offsets[b->n_seqs];
}

/* Per layer: sub-layers treated as the identity (how pruning is previewed). */
typedef struct tc_skip {
    uint8_t attn;
    uint8_t mlp;
} tc_skip;

/* Where a hidden state is observed within layer l (all tokens, [n][dim]). */
typedef enum tc_point {
    TC_AT_ATTN_IN,  /* X: the layer's input */
    TC_AT_ATTN_OUT, /* H = X + Attn(RMSNorm(X)) */
    TC_AT_MLP_OUT,  /* Y = H + MLP(RMSNorm(H)): the next layer's X */
    TC_N_POINTS
} tc_point;

/* The activations that feed linear layers (rows are tokens). */
typedef enum tc_lin_input {
    TC_IN_QKV,     /* RMSNorm(X), feeding wq, wk, wv   [n][dim] */
    TC_IN_WO,      /* attention output, feeding wo      [n][n_heads*head_dim] */
    TC_IN_GATE_UP, /* RMSNorm(H), feeding w_gate, w_up  [n][dim] */
    TC_IN_DOWN,    /* silu(gate) * up, feeding w_down   [n][ffn_dim] */
    TC_N_LIN_INPUTS
} tc_lin_input;

/* Per head of one layer, sums over the queries of a batch of what each
 * head's attention weights look like (arrays of n_heads).  entropy (nats) and
 * top10 (share of mass on the top ceil(0.1 * keys) keys) are summed over
 * every query; sink (weight on the sequence's first token), prev (on the
 * previous token), diag (on the query itself) and k90 (the fraction of the
 * visible keys that hold 90 % of the mass, the fewest largest weights that
 * reach it) over the queries at positions >= 1, whose weights are not fixed
 * by causality alone. */
typedef struct tc_head_sums {
    const double *entropy, *top10, *sink, *prev, *diag, *k90;
    uint64_t n_queries; /* every query of the batch */
    uint64_t n_later;   /* queries at positions >= 1 */
    int n_heads;
} tc_head_sums;

/* Callbacks of one consumer; any may be NULL.  Token indices are into the
 * batch's token array.  A callback returning TC_ERR (with err filled) stops
 * the pass with that error.  Callbacks run on the calling thread. */
typedef struct tc_observer {
    void *ctx;
    int (*hidden)(void *ctx, int layer, tc_point at, const float *x, size_t n_tokens, int dim,
                  tc_error *err);
    /* May come in several chunks of consecutive tokens per (layer, which). */
    int (*linear_input)(void *ctx, int layer, tc_lin_input which, const float *x, size_t tok0,
                        size_t n_tokens, int cols, tc_error *err);
    /* Logits of tokens tok0 .. tok0+n_tokens-1, [n_tokens][vocab]; chunks
     * come in increasing token order. */
    int (*logits)(void *ctx, const float *logits, size_t tok0, size_t n_tokens, int vocab,
                  tc_error *err);
    /* Per layer: the heads' attention statistics (tc_head_sums).  Computing
     * them costs two selections per query; only done when some observer
     * sets want_head_stats. */
    int (*head_stats)(void *ctx, int layer, const tc_head_sums *sums, tc_error *err);
    int want_head_stats;
    /* Per layer: the attention each key receives, [n_heads][n_tokens] each
     * (token indices into the batch): last[h][t] is the weight head h of the
     * last query of t's sequence puts on t; all[h][t] the sum over every
     * query of t's sequence of the weights on t.  Only computed when some
     * observer sets want_received. */
    int (*received)(void *ctx, int layer, const float *last, const float *all, size_t n_tokens, int n_heads,
                    tc_error *err);
    int want_received;
} tc_observer;

/* Every weight of a model in fp32 at once: for callers that run many passes
 * or decode token by token, where converting each layer on every use would
 * dominate.  Costs 4 bytes per parameter. */
typedef struct tc_weights {
    int n_layers;
    tc_layer_f32 *layers;
    float *out_norm; /* [dim] */
    float *output;   /* [vocab][dim] (a copy of the embedding when tied) */
} tc_weights;

int tc_weights_load(tc_weights *w, const tc_model *m, tc_error *err);
void tc_weights_free(tc_weights *w);
/* Bytes tc_weights_load would allocate (saturates at UINT64_MAX). */
uint64_t tc_weights_bytes(const tc_model *m);

/* Buffers kept from one pass to the next, for callers that run many passes
 * over batches of similar size (they grow to the largest).  One pass at a
 * time per workspace. */
typedef struct tc_forward_ws tc_forward_ws;

tc_forward_ws *tc_forward_ws_new(void); /* NULL when out of memory */
void tc_forward_ws_free(tc_forward_ws *ws);

typedef struct tc_forward_opts {
    int n_threads;                 /* <= 0: 1; also sets OpenBLAS's (process-wide) thread count */
    const tc_skip *skip;           /* n_layers entries, or NULL */
    const tc_observer *observers;  /* n_observers entries */
    size_t n_observers;
    const tc_weights *weights;     /* preconverted weights, or NULL: per layer */
    int no_logits;                 /* stop after the last layer */
    size_t logits_chunk;           /* tokens per logits chunk; 0: chosen by vocab */
    tc_forward_ws *ws;             /* buffers to reuse, or NULL: the pass's own */
    /* Analyses that change the function (NULL / 0: none): */
    const uint8_t *head_mask;      /* [n_layers][n_heads]: nonzero zeroes that head's slice of the
                                      attention output before the output projection */
    const uint32_t *positions;     /* [n_tokens]: each token's RoPE position (increasing within a
                                      sequence, e.g. what is left after tokens were dropped); NULL: its
                                      index in its sequence */
    int end_layer;                 /* > 0: stop after layer end_layer - 1 (no head) */
} tc_forward_opts;

/* Embeds the batch's tokens and runs every layer, then the head. */
int tc_forward(const tc_model *m, const tc_batch *b, const tc_forward_opts *opts, tc_error *err);

/* Runs layers first_layer .. n_layers-1 and the head from x, the hidden state
 * at layer first_layer's input ([n_tokens][dim]; first_layer == n_layers runs
 * the head alone).  x is not modified.  Observers see only those layers. */
int tc_forward_from(const tc_model *m, const tc_batch *b, int first_layer, const float *x,
                    const tc_forward_opts *opts, tc_error *err);

/* Checks a batch against a model: offsets increasing, tokens within the
 * vocabulary.  `what` names the batch's origin in the message. */
int tc_batch_check(const tc_model *m, const tc_batch *b, const char *what, tc_error *err);

/* ---- Token-by-token decoding ----------------------------------------------
 * A KV-cache decoder: feed a prompt, then one token at a time; each step is a
 * matrix-vector product per weight.  It holds every layer in fp32 (a
 * tc_weights, its own or the caller's) because converting each layer at each
 * step would cost more than the step itself; the models it serves are small.
 * Cache: 2 * n_layers * max_len * n_kv_heads * head_dim floats. */
typedef struct tc_decoder tc_decoder;

typedef struct tc_decoder_opts {
    int max_len;                /* positions kept; <= 0: the model's max_seq_len */
    const tc_skip *skip;        /* n_layers entries, or NULL */
    const tc_weights *weights;  /* borrowed (must outlive the decoder), or NULL: loads its own */
    int n_threads;              /* OpenBLAS threads; <= 0: 1 */
} tc_decoder_opts;

int tc_decoder_new(tc_decoder **out, const tc_model *m, const tc_decoder_opts *opts,
                   tc_error *err);
void tc_decoder_free(tc_decoder *d);
/* Forgets every position (a new sequence). */
void tc_decoder_reset(tc_decoder *d);
/* Positions filled so far. */
int tc_decoder_pos(const tc_decoder *d);
/* Appends one token; logits (vocab floats, may be NULL) predict the next. */
int tc_decoder_step(tc_decoder *d, int32_t token, float *logits, tc_error *err);
/* Appends n tokens; logits (may be NULL) are those after the last one. */
int tc_decoder_feed(tc_decoder *d, const int32_t *tokens, size_t n, float *logits,
                    tc_error *err);

/* ---- Sampling ---------------------------------------------------------------
 * A splitmix64 generator: all state in the caller's struct. */
typedef struct tc_rng {
    uint64_t state;
} tc_rng;

void tc_rng_seed(tc_rng *r, uint64_t seed);
uint64_t tc_rng_next(tc_rng *r);
double tc_rng_uniform(tc_rng *r); /* [0, 1) with 53 random bits */

/* temperature <= 0: the first index of the maximum (greedy); otherwise a draw
 * from softmax(logits / temperature). */
int32_t tc_sample(const float *logits, int n, float temperature, tc_rng *rng);

typedef struct tc_generate_opts {
    float temperature;  /* 0: greedy */
    uint64_t seed;
    int32_t stop_token; /* generation ends after emitting it; -1: never */
} tc_generate_opts;

/* Resets the decoder, feeds the prompt (n_prompt >= 1) and generates up to
 * max_new tokens into out; *n_out is the count produced.  Fails when the
 * decoder's max_len cannot hold prompt + max_new - 1 positions. */
int tc_generate(tc_decoder *d, const int32_t *prompt, size_t n_prompt, size_t max_new,
                const tc_generate_opts *opts, int32_t *out, size_t *n_out, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
