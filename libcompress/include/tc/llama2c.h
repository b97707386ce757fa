/* llama2.c checkpoints (the legacy format: 7 x int32 header, fp32 weights;
 * a negative vocab size means a separate classifier follows; the freq_cis
 * tables are skipped). */
#ifndef TC_LLAMA2C_H
#define TC_LLAMA2C_H

#include <stdint.h>

#include "tc/error.h"
#include "tc/tensordir.h"

typedef struct tc_llama2c_header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* 1 when vocab_size was positive */
} tc_llama2c_header;

typedef struct tc_llama2c {
    char *path;
    tc_llama2c_header hdr; /* vocab_size made positive */
    tc_tensordir dir;
} tc_llama2c;

/* Tensor names (one per layer slice; pointers into the mapping):
 *   tok_embeddings.weight [vocab][dim], norm.weight [dim], output.weight (only
 *   when not shared), layers.N.attention_norm.weight, layers.N.attention.wq
 *   .weight [n_heads*hd][dim], ...wk, ...wv, ...wo [dim][n_heads*hd],
 *   layers.N.ffn_norm.weight, layers.N.feed_forward.w1.weight (gate)
 *   [hidden][dim], ...w2 (down) [dim][hidden], ...w3 (up) [hidden][dim]. */
int tc_llama2c_open(tc_llama2c *c, const char *path, tc_error *err);
void tc_llama2c_close(tc_llama2c *c);

/* Writes a legacy checkpoint atomically from F32 output tensors named as
 * above (every layer present; output.weight only when !shared_classifier),
 * streaming one tensor at a time in llama2.c's order; freq_cis tables are
 * computed with theta 10000 as llama2.c's export writes them. */
int tc_llama2c_write(const char *path, const tc_llama2c_header *hdr, const tc_out_tensor *tensors,
                     size_t n_tensors, tc_error *err);

#endif
