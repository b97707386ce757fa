/* Structured pruning: a plan says which attention sub-layers, MLP sub-layers
 * and whole blocks go.  Plans are chosen from an analysis (or listed by
 * hand), previewed virtually by the forward pass as a skip mask, costed, and
 * applied physically by writing a checkpoint that runtimes load. */
#ifndef TC_PRUNE_H
#define TC_PRUNE_H

#include <stdint.h>

#include "tc/analysis.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/model.h"
#include "tc/model_write.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_prune_plan {
    int n_layers;
    uint8_t *drop[TC_N_MODULES]; /* per layer, indexed by tc_module: 1 = goes */
    int n_heads;                 /* > 0 once heads are dropped: */
    uint8_t *drop_heads;         /* [n_layers][n_heads]: 1 = the query head goes */
} tc_prune_plan;

/* Makes room for head drops (idempotent). */
int tc_prune_plan_heads(tc_prune_plan *p, int n_heads, tc_error *err);
/* Heads the plan drops in layers it keeps the attention of. */
int tc_prune_plan_count_heads(const tc_prune_plan *p);

int tc_prune_plan_init(tc_prune_plan *p, int n_layers, tc_error *err);
void tc_prune_plan_free(tc_prune_plan *p);
/* Modules the plan drops, counted by kind (a block counts once). */
int tc_prune_plan_count(const tc_prune_plan *p, tc_module kind);

/* After the plan, does layer l still compute its attention / MLP?  `m` (may be
 * NULL) supplies the sub-layers already absent in the input. */
int tc_prune_keeps(const tc_prune_plan *p, const tc_model *m, int l, tc_module which);

/* Adds explicit drops: "attn:3,attn:4,mlp:2,block:1" (ranges "attn:3-5" too).
 * Errors name `what` (the option or file) and the offending item. */
int tc_prune_parse_list(tc_prune_plan *p, const char *list, const char *what, tc_error *err);

typedef enum tc_prune_criterion {
    TC_CRIT_COS,  /* most redundant first: highest cosine of input and output */
    TC_CRIT_DNLL, /* smallest measured increase of the NLL first */
    TC_CRIT_KL,   /* smallest measured KL divergence first */
} tc_prune_criterion;

const char *tc_prune_criterion_name(tc_prune_criterion c);
int tc_prune_criterion_parse(const char *s, tc_prune_criterion *out);

typedef struct tc_prune_opts {
    tc_prune_criterion criterion;
    int drop_attn;   /* attention sub-layers to drop */
    int drop_mlp;    /* MLP sub-layers to drop */
    int drop_blocks; /* whole blocks to drop */
    int joint;       /* sub-layers to drop, attention and MLP ranked together */
    int keep_first;  /* layers 0 .. keep_first-1 are never dropped */
    int keep_last;   /* nor the last keep_last layers */
    int drop_heads;  /* query heads to drop, ranked by the KL (or, with TC_CRIT_DNLL, the NLL change) of
                        masking each alone; a layer left without heads loses its attention */
} tc_prune_opts;

/* Adds opts' drops to p (which may already hold explicit ones), ranking by
 * a's figures: blocks first, then attention, MLP, then the joint ranking,
 * each among what is still there.  Modules absent in the input (a's
 * `present`, and m's layers when m is not NULL) are never chosen.  Fails
 * when fewer candidates remain than asked for, when a criterion's figure was
 * not measured, or when an explicit drop touches a kept layer. */
int tc_prune_select(tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *opts,
                    tc_error *err);

/* How many modules of one kind (attention, MLP or block) could go at most:
 * those of m outside keep-first and keep-last that p does not drop yet (and,
 * for sub-layers, that m has).  A count above it cannot be met whatever an
 * analysis says, so a tool refuses it before analysing. */
int tc_prune_available(const tc_prune_plan *p, const tc_model *m, const tc_prune_opts *opts, tc_module kind);

/* TC_ERR, with the reason, for a model whose heads cannot be dropped. */
int tc_prune_heads_refused(const tc_model *m, tc_error *err);

/* How many query heads could go at most (as tc_prune_available). */
int tc_prune_available_heads(const tc_prune_plan *p, const tc_model *m, const tc_prune_opts *opts);

/* Measures the model with plan p applied virtually (skipped sub-layers are the
 * identity), filling a fresh analysis; the caller frees it. */
typedef int (*tc_prune_measure_fn)(void *ctx, const tc_prune_plan *p, tc_analysis *out, tc_error *err);

/* As tc_prune_select, one module at a time: before each drop the model, as
 * pruned so far, is measured again and the best remaining candidate goes. */
int tc_prune_select_iterative(tc_prune_plan *p, const tc_model *m, const tc_prune_opts *opts,
                              tc_prune_measure_fn measure, void *ctx, tc_error *err);

/* What a model costs to store and run. */
typedef struct tc_prune_cost {
    uint64_t params;             /* every stored parameter */
    uint64_t bytes;              /* tensor bytes as stored */
    uint64_t flops_per_token;    /* 2 x linear-layer params + attention scores and values at ctx_len */
    uint64_t kv_bytes_per_token; /* 2 x kv heads x head_dim x kv_elem_bytes per attention layer */
} tc_prune_cost;

/* The cost of m after plan p (NULL: as it is), for one token attending to
 * ctx_len positions with a cache of kv_elem_bytes per element. */
void tc_prune_cost_of(const tc_model *m, const tc_prune_plan *p, int ctx_len, int kv_elem_bytes,
                      tc_prune_cost *out);

/* The forward pass's skip mask for p (n_layers entries; a dropped block
 * skips both sub-layers). */
void tc_prune_skip_mask(const tc_prune_plan *p, tc_skip *skip);

/* The heads layer l of a model of config c keeps under `drop` (n_heads
 * flags, NULL: none), as written: the kept query heads in order, grouped by
 * their key/value head; where groups keep different numbers, each group's
 * kept heads are split into groups of the largest size that divides every
 * count (gcd), each with its own copy of the key/value head.  q_src and
 * kv_src hold n_heads entries. */
void tc_prune_head_layout(const tc_config *c, const uint8_t *drop, int *q_src, int *kv_src, tc_head_layout *out);

/* Writes m with p applied to path as fmt: layers whose attention and MLP both
 * go are removed and the rest renumbered; dropped sub-layers are removed
 * (HF: drop_attn_list / drop_mlp_list in config.json; GGUF: the `deci`
 * architecture with per-layer head counts and widths; llama2.c: whole blocks
 * only).  Dropped heads lose their rows of q/k/v and columns of the output
 * projection (GGUF: deci's per-layer head counts; HF: only when every layer
 * keeps as many heads, written as the config's counts; llama2.c: never).
 * Matrices keep the input's precision (F32, F16 or BF16; F32 for anything
 * else).  The input is only read. */
int tc_prune_write(const tc_model *m, const tc_prune_plan *p, const char *path, tc_format fmt,
                   tc_error *err);

/* The same, GGUF only, with the linear layers stored as `matrices` (Q8_0,
 * Q4_0, Q4_K, Q6_K with ggml's reference rounding, or F32/F16/BF16) where
 * their rows are whole blocks of it; the rest, embeddings and head among
 * them, keep the input's type.  TC_DTYPE_COUNT: as tc_prune_write. */
int tc_prune_write_as(const tc_model *m, const tc_prune_plan *p, const char *path, tc_format fmt,
                      tc_dtype matrices, tc_error *err);

/* A pruned model against its original on the same sequences: every
 * position t < n-1 of a sequence predicts token t+1. */
typedef struct tc_prune_eval {
    double nll_ref, nll;   /* mean NLL per prediction (nats): reference, pruned */
    double ppl_ref, ppl;   /* exp of those */
    double kl;             /* mean KL(reference || pruned) of the next-token distributions */
    double top1;           /* share of positions whose most likely token agrees */
    uint64_t n_predicted;
} tc_prune_eval;

/* Runs both models (each with its skip mask, or NULL) over the sequences
 * tokens[offsets[s] .. offsets[s+1]), one sequence at a time. */
int tc_prune_evaluate(const tc_model *ref, const tc_skip *ref_skip, const tc_model *pruned,
                      const tc_skip *pruned_skip, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
                      int n_threads, tc_prune_eval *out, tc_error *err);
/* The same with heads of the pruned model masked ([n_layers][n_heads], or NULL). */
int tc_prune_evaluate_masked(const tc_model *ref, const tc_skip *ref_skip, const tc_model *pruned,
                             const tc_skip *pruned_skip, const uint8_t *pruned_heads, const int32_t *tokens,
                             const size_t *offsets, size_t n_seqs, int n_threads, tc_prune_eval *out, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
