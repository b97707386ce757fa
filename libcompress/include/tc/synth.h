/* Synthetic Llama-family checkpoints for tests and benchmarks: any shape,
 * seeded, optionally with planted redundancy (chosen layers whose attention
 * or MLP output projection is scaled close to zero, so the right answer of an
 * analysis is known) or with weights that are already ternary. */
#ifndef TC_SYNTH_H
#define TC_SYNTH_H

#include <stdint.h>

#include "tc/model.h"
#include "tc/model_write.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_synth_spec {
    tc_config cfg;          /* shapes (values are generated in rotate-half order) */
    uint64_t seed;
    const uint8_t *weak_attn; /* per layer: scale wo by weak_scale (NULL: none) */
    const uint8_t *weak_mlp;  /* per layer: scale w_down by weak_scale (NULL: none) */
    float weak_scale;         /* e.g. 1e-3 */
    int ternary;              /* linear weights in {-g, 0, +g}, g per output row */
    const char *tokenizer;    /* tc_synth_write: a tokenizer the checkpoint carries (a GGUF: its
                                 vocabulary; HF: a tokenizer.json and the files beside it, or another
                                 tokenizer converted to tokenizer.json), or NULL */
    /* Planted attention structure (heads as layer * n_heads + head): */
    const int *zero_heads;    /* heads whose columns of the output projection are zero */
    int n_zero_heads;
    const int *sink_heads;    /* heads that attend only to the BOS token (see tc_synth_fill) */
    int n_sink_heads;
    const uint8_t *sink_layers; /* per layer (NULL: none): every head of the layer is a sink head, so
                                   that every position's attention output is a copy of BOS's value */
} tc_synth_spec;

/* A config with the given shape and sensible defaults (llama, theta 10000,
 * eps 1e-5, HF rope layout, tied embeddings, bos 1, eos 2). */
tc_config tc_synth_config(int n_layers, int dim, int n_heads, int n_kv_heads, int ffn_dim, int vocab);

/* Gives a config the traits of a family as its Hugging Face config class
 * gives them by default ("llama", "mistral", "qwen2", "qwen3", "gemma2",
 * "gemma3", "phi3", "bitnet"): Mistral's 4096-key window on every layer, Qwen2's q/k/v
 * biases, Qwen3's q/k norms, Gemma's (1 + w) norms, tanh GELU, post-norms,
 * sqrt(dim) embedding scale, tied head and local layers (every other one for
 * Gemma 2 with softcaps 50 and 30, five of six for Gemma 3 with q/k norms and
 * a 10000 local rope base under a 10^6 global one), Phi-3's fused tensors; BitNet b1.58's relu2, sub-norms and rope base 500000
 * (with plain float linears).
 * window > 0 replaces the family's window size.  Shapes are kept. */
int tc_synth_family(tc_config *c, const char *family, int window, tc_error *err);

/* Fills one tensor's values (the tc_model_fill_fn of a synthetic source):
 * each tensor is generated from (seed, layer, role) alone, so any tensor can
 * be produced in any order without holding the others.
 *
 * Sink heads are built from two dimensions of the residual stream that no
 * layer writes (rows 0 and 1 of every output and down projection are zero):
 * the token embedding holds a constant in dimension 1 and, for the BOS token
 * alone, a flag in dimension 0.  The head's query reads dimension 1 and its
 * key head dimension 0, both into one component of the slowest-rotating RoPE
 * pair (or an unrotated one), with weights large enough that the score of
 * BOS exceeds every other (zero) score by more than 40: the head puts all but
 * ~e^-40 of its weight on BOS at every position, wherever BOS sits.  The key
 * head's other components are zero, so the other query heads sharing it
 * score every key 0 and average uniformly. */
int tc_synth_fill(void *spec, int layer, int which, float *dst, uint64_t n, tc_error *err);

/* Checks a spec's planted structure against its config: heads within range,
 * BOS known, sinks only where q/k norms do not undo them. */
int tc_synth_check(const tc_synth_spec *s, tc_error *err);

/* The model in memory (fp32). */
int tc_synth_model(tc_model *m, const tc_synth_spec *s, tc_error *err);

/* Writes the model to disk in fmt with matrices stored as dtype, one tensor at
 * a time (a 7B-shaped F16 checkpoint needs memory for one tensor only).
 * With a tokenizer, the config's BOS and EOS are the tokenizer's and a
 * vocabulary size of 0 becomes the tokenizer's; a llama2.c checkpoint holds
 * no tokenizer and is refused one. */
int tc_synth_write(const char *path, tc_format fmt, tc_dtype dtype, const tc_synth_spec *s, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
