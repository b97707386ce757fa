/* How much each linear weight of a model costs when it alone is quantized:
 * the mean KL divergence, over the tokens of a calibration batch, of the
 * model with that one weight replaced by its quantized values from the
 * original model (nats per token).  Measured, not guessed: the ranking a
 * mixed-precision assignment starts from.
 *
 * The original model's hidden state at every layer's input and its log-
 * probabilities are kept, so a weight of layer l costs one pass from layer l
 * to the head.  Memory: every weight in fp32, n_layers + 1 hidden states and
 * [tokens][vocab] doubles (of this rank's windows under MPI). */
#ifndef TC_SENSITIVITY_H
#define TC_SENSITIVITY_H

#include <stdint.h>

#include "tc/dist.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/model.h"
#include "tc/tmodel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_sensitivity_entry {
    int layer, role;   /* a linear role of a block */
    double kl;         /* mean KL(original || with this weight quantized), nats per token */
    double rel_weight_error;
} tc_sensitivity_entry;

typedef struct tc_sensitivity {
    tc_sensitivity_entry *entries; /* layer-major, roles in tc_role order */
    size_t n_entries;
    uint64_t n_tokens;
    tc_tmethod method; /* the quantizer measured (the calibrated methods' uncalibrated fit) */
} tc_sensitivity;

/* The fit a method's costs are measured with: a calibrated method's
 * uncalibrated fit (optimal for calibrated, affine for affine-calibrated),
 * any other method itself. */
tc_tmethod tc_sensitivity_fit(tc_tmethod method);

/* Measures every linear weight of m's blocks quantized with q->method and
 * q->group (calibrated methods measure their uncalibrated fit: optimal for
 * calibrated, affine for affine-calibrated) on the tokens of b. */
int tc_sensitivity_measure(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q, int n_threads,
                           tc_sensitivity *out, tc_error *err);
/* The same under an MPI job (dist, NULL for one process): every rank
 * measures every weight on its share of b's windows, and each weight's KL is
 * summed over windows in window order, so every rank gets the figures of a
 * job of one, bit for bit. */
int tc_sensitivity_measure_dist(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q, int n_threads,
                                tc_dist *dist, tc_sensitivity *out, tc_error *err);

/* The same for several candidate types at once, from one pass of the
 * original model: types[i] TC_F32 is q's ternary fit as above, TC_Q8_0 or
 * TC_Q4_0 that block type with ggml's reference rounding (tc_qmat_round).
 * out[i] (n_types of them) lists the same weights in the same order; a
 * weight whose rows are not whole blocks of a type gets kl = NaN there and
 * costs no pass. */
int tc_sensitivity_measure_types(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q,
                                 const tc_dtype *types, int n_types, int n_threads, tc_sensitivity *out,
                                 tc_error *err);

/* tc_sensitivity_measure_types under an MPI job (dist, NULL for one
 * process), every type's KL summed over windows in window order. */
int tc_sensitivity_measure_types_dist(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q,
                                      const tc_dtype *types, int n_types, int n_threads, tc_dist *dist,
                                      tc_sensitivity *outs, tc_error *err);
void tc_sensitivity_free(tc_sensitivity *s);

#ifdef __cplusplus
}
#endif

#endif
