/* Mixed precision under a bit budget (tc-quantize --target-bpw).
 *
 * Each linear weight of the blocks gets one of three types: ternary (the
 * chosen --method), Q4_0 or Q8_0 (ggml's 4-bit and 8-bit types of 32-weight
 * blocks, tc/qmat.h), so that the blocks' linear weights average at most
 * the target bits per weight as stored.  The cost of each weight in each
 * type is measured, not guessed: the mean KL on the calibration tokens of
 * the model with that weight alone in that type (tc_sensitivity_measure_types;
 * the ternary calibrated methods are measured by their uncalibrated fit).
 * Starting from every weight ternary, a greedy pass repeatedly makes the one
 * upgrade (to Q4_0 or Q8_0) that saves the most KL per extra bit and still
 * fits the budget, until none does.  The sum of the chosen weights' KL is
 * the plan's estimate (the weights' costs are taken as additive).
 *
 * A weight whose rows are not whole 32-weight blocks stays ternary.  The
 * embedding and head are not part of the budget (--embd-type sets them). */
#ifndef TC_MIXED_H
#define TC_MIXED_H

#include <stddef.h>
#include <stdint.h>

#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/model.h"
#include "tc/quantize.h"
#include "tc/tmodel.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_MIXED_MAX_BPW 8.5 /* every weight Q8_0 */
/* Calibration windows the costs are measured on (the first ones): each
 * weight in each type costs a pass from its layer to the head, so a
 * 16-layer model's 300 candidates on 4 windows of 256 tokens take minutes. */
#define TC_MIXED_MEASURE_SEQS 4

typedef struct tc_mixed_opts {
    double target_bpw;   /* bits per linear weight of the blocks, as stored */
    tc_tquant_settings q; /* the ternary method, layout and grouping */
    tc_qformat format;   /* how ternary weights are stored: packed plans, or GGUF's TQ1_0 / TQ2_0
                            (Q4_0 where rows are not whole 256-blocks) */
    int n_threads;
    tc_dist *dist;       /* the MPI job the measured windows are spread over, or NULL */
} tc_mixed_opts;

/* One linear weight: what each type costs and what it was given. */
typedef struct tc_mixed_choice {
    int layer, role;
    int64_t rows, cols;
    double bits[TC_TMIXED_NTYPES]; /* bits per weight as stored in each type (0: not a candidate) */
    double kl[TC_TMIXED_NTYPES];   /* measured, nats per token (NaN: not a candidate) */
    int type;                      /* the chosen TC_TMIXED_* */
} tc_mixed_choice;

typedef struct tc_mixed {
    tc_mixed_choice *t;
    size_t n;
    int n_layers;
    double target_bpw;
    double bpw;          /* of the assignment: bits of the chosen types over the linear weights */
    double bpw_ternary;  /* every weight ternary (the least a budget may ask) */
    double bpw_max;      /* every candidate upgraded to Q8_0 */
    double kl_ternary;   /* sum of the weights' ternary KL */
    double kl_est;       /* sum of the chosen types' KL */
    uint64_t params;     /* linear weights of the blocks */
    int n_upgraded[TC_TMIXED_NTYPES];
    tc_dtype *types;     /* [n_layers][TC_N_ROLES]: tc_quantize_opts.linear_types */
    tc_tmixed record;    /* tc_quantize_opts.mixed: written in the packed header */
} tc_mixed;

/* The block type of a linear weight in a types table ([n_layers][TC_N_ROLES]
 * or NULL): TC_Q8_0 or TC_Q4_0, else TC_F32 (ternary). */
tc_dtype tc_mixed_linear_type(const tc_dtype *types, int n_layers, int layer, int role);

/* The ggml type of a TC_TMIXED_* (TC_F32 for ternary). */
tc_dtype tc_mixed_dtype(int type);

/* Every linear weight of m's blocks with its bits per type (no KL yet:
 * NaN), all ternary.  TC_ERR for a target below the all-ternary bits or
 * above TC_MIXED_MAX_BPW, with one sentence giving the range. */
int tc_mixed_init(tc_mixed *x, const tc_model *m, const tc_mixed_opts *o, tc_error *err);

/* Measures every candidate's KL on the first TC_MIXED_MEASURE_SEQS
 * sequences of b. */
int tc_mixed_measure(tc_mixed *x, const tc_model *m, const tc_batch *b, const tc_mixed_opts *o, tc_error *err);

/* Takes the costs from an earlier assignment's record instead (a packed
 * file's `mixed`): every weight of x must be there, measured with the fit
 * o's method measures (else TC_ERR naming what differs). */
int tc_mixed_costs_from(tc_mixed *x, const tc_tmixed *rec, const tc_mixed_opts *o, const char *from,
                        tc_error *err);

/* The greedy assignment under x->target_bpw from the measured KL (which a
 * caller may also fill itself); fills bpw, kl_est, types and record. */
int tc_mixed_assign(tc_mixed *x, tc_error *err);

/* init, measure and assign. */
int tc_mixed_plan(tc_mixed *x, const tc_model *m, const tc_batch *b, const tc_mixed_opts *o, tc_error *err);

void tc_mixed_free(tc_mixed *x);

/* The assignment as text (a table, one weight a line, and the totals) or as
 * a JSON object (cJSON); NULL when out of memory.  The caller frees (free,
 * cJSON_Delete). */
char *tc_mixed_table(const tc_mixed *x);
struct cJSON;
struct cJSON *tc_mixed_json(const tc_mixed *x);

#ifdef __cplusplus
}
#endif

#endif
