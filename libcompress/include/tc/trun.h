/* Running a packed ternary model (tc_tmodel): token by token with a KV cache,
 * or several tokens at once (prompts, perplexity windows).
 *
 * Before every ternary linear layer the input is quantized per token to int8
 * (BitNet b1.58 absmax, tc_tpack_quantize_act); the layer's int32 sums come
 * from the LUT kernels (tc/kernels.h) and are scaled back to fp32. Norms,
 * RoPE, attention, softmax, the SwiGLU product and the output head run in
 * fp32 (the head and any linear stored as F32/F16 take fp32 inputs); a head
 * stored in a ggml block type multiplies int8 activations (tc/qmat.h).
 *
 * TC_TRUN_REF runs the same arithmetic with the ternary weights dequantized
 * to fp32 (scale x code) and multiplied by the dequantized int8 activations
 * in fp32: the reference the LUT path is verified against. Rounding to
 * int8 is discontinuous: a float difference of 1e-7 between two paths can
 * move an activation by one step and the logits by ~1e-2, so the comparison
 * feeds the reference the LUT path's own int8 activations (a trace recorded
 * by the LUT run and replayed by the reference run); then the two differ
 * only by float summation order. */
#ifndef TC_TRUN_H
#define TC_TRUN_H

#include <stddef.h>
#include <stdint.h>

#include "tc/analyze.h"
#include "tc/error.h"
#include "tc/forward.h"
#include "tc/kernels.h"
#include "tc/tmodel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_trun_mode {
    TC_TRUN_LUT, /* packed weights through the kernels */
    TC_TRUN_REF, /* dequantized fp32 weights, same int8 activations */
} tc_trun_mode;

typedef struct tc_trun_opts {
    tc_trun_mode mode;
    tc_kpath kernel; /* TC_KPATH_AUTO (0) picks from the CPU */
    int n_threads;   /* the runner's threads (kernels, attention, fp32 products); <= 0: 1 */
    int max_len;     /* KV cache positions; <= 0: the model's max_seq_len */
    int chunk;       /* tokens run together by tc_trun_feed; <= 0: as many as 64 MiB of buffers hold,
                        16 to 256 (the logits are the same bits whatever it is) */
} tc_trun_opts;

typedef struct tc_trun tc_trun;

/* The model must outlive the runner. Fails for a model without the tensors a
 * forward pass needs or with an unsupported attention shape. */
int tc_trun_new(tc_trun **out, const tc_tmodel *m, const tc_trun_opts *opts, tc_error *err);
void tc_trun_free(tc_trun *r);

/* The int8 activations (and their scales) of every ternary linear layer of a
 * run, in call order. */
typedef struct tc_trun_trace tc_trun_trace;
tc_trun_trace *tc_trun_trace_new(void);
void tc_trun_trace_free(tc_trun_trace *t);

/* From now on, record into the trace (replay = 0) or take the int8
 * activations from it instead of quantizing (replay = 1; a replaying run
 * must make the same calls as the recording one: same tokens, same feed
 * sizes, or it fails). NULL stops. The trace must outlive its use. */
void tc_trun_set_trace(tc_trun *r, tc_trun_trace *t, int replay);

/* The kernel path in use ("scalar", "avx2", "avx512", "avx512vnni"). */
const tc_kernels *tc_trun_kernels(const tc_trun *r);

/* The runner's threads, for work that should run on them between steps
 * (a benchmark's memory reads) instead of on more threads than cores. */
tc_kpool *tc_trun_pool(const tc_trun *r);

/* Forgets every position (a new sequence). */
void tc_trun_reset(tc_trun *r);
int tc_trun_pos(const tc_trun *r);

/* Appends n tokens, processed several at a time (one weight pass per group
 * of tokens). logits may be NULL; otherwise it receives the logits of every
 * token ([n][vocab]) when all is set, else those of the last one. */
int tc_trun_feed(tc_trun *r, const int32_t *tokens, size_t n, float *logits, int all,
                 tc_error *err);

/* Appends one token: tc_trun_feed(r, &token, 1, logits, 0, err). */
int tc_trun_step(tc_trun *r, int32_t token, float *logits, tc_error *err);

/* Logits of every token of every sequence of a batch, each sequence run from
 * an empty cache. cb receives them in chunks ([n][vocab], consecutive tokens
 * of one sequence; tok0 indexes the batch's token array). */
typedef int (*tc_trun_logits_fn)(void *ctx, const float *logits, size_t tok0, size_t n, int vocab,
                                 tc_error *err);
int tc_trun_batch(tc_trun *r, const tc_batch *b, tc_trun_logits_fn cb, void *ctx, tc_error *err);

/* Perplexity of a batch as tc_perplexity defines it (every next-token
 * prediction within each sequence, the NLL in fp64), each sequence run
 * whole through tc_trun_batch; progress (may be NULL) gets the fraction of
 * tokens done after each sequence. */
int tc_trun_perplexity(tc_trun *r, const tc_batch *b, void (*progress)(void *ctx, double fraction),
                       void *progress_ctx, tc_ppl *out, tc_error *err);

/* As tc_generate: resets, feeds the prompt, samples up to max_new tokens. */
int tc_trun_generate(tc_trun *r, const int32_t *prompt, size_t n_prompt, size_t max_new,
                     const tc_generate_opts *opts, int32_t *out, size_t *n_out, tc_error *err);

/* ---- in-memory ternary models ---------------------------------------------
 * For tests, benchmarks and verification: a tc_tmodel whose bytes the struct
 * owns. */
typedef struct tc_tmodel_mem {
    tc_tmodel m;
    uint8_t **bufs;
    size_t n_bufs;
} tc_tmodel_mem;

/* Quantizes every linear weight of a model with the optimal quantizer
 * (lossless on weights that are already ternary) and packs it in layout with
 * grouping g; every other tensor is kept as F32. */
int tc_tmodel_mem_quantize(tc_tmodel_mem *out, const tc_model *src, tc_tpack_layout layout,
                           const tc_tgroup *g, tc_error *err);

/* A model of the config's shape with random codes (a third each of -1, 0,
 * +1), random scales near 1/sqrt(cols), unit norms and a random F16
 * embedding (tied head): for speed measurements. */
int tc_tmodel_mem_random(tc_tmodel_mem *out, const tc_config *cfg, tc_tpack_layout layout,
                         const tc_tgroup *g, uint64_t seed, tc_error *err);

void tc_tmodel_mem_free(tc_tmodel_mem *mm);

#ifdef __cplusplus
}
#endif

#endif
