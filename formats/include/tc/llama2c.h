/* llama2.c checkpoints, in every layout karpathy/llama2.c's export.py writes:
 *
 *   version 0, "legacy": a 7 x int32 header (dim, hidden_dim, n_layers,
 *     n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab size means
 *     a separate classifier follows), fp32 weights, the freq_cis tables
 *     (skipped);
 *   version 1: a 256-byte header (uint32 magic 0x616b3432 "ak42", int32
 *     version, the same 7 x int32 with a positive vocab size, a uint8
 *     shared-classifier flag, zeros), fp32 weights in another order, no
 *     freq_cis tables;
 *   version 2: the version-1 header with an int32 group size after the
 *     flag; the norms in fp32, then every matrix (the embedding and a
 *     separate classifier too) as int8 values followed by one fp32 scale per
 *     group_size consecutive values.
 *
 * Versions 0 and 1 are read in place from the file's mapping, so opening
 * costs no memory and the model view converts one layer at a time.  Version
 * 2 has no tc dtype (its scales are fp32 and its groups of any size, where
 * GGUF's Q8_0 has f16 scales over blocks of 32), so its matrices are
 * dequantized to fp32 when the file opens, value = q * scale of its group as
 * llama2.c's runq.c computes it, into buffers the directory owns: an open
 * version-2 checkpoint holds 4 bytes per weight, about four times the file's
 * size, until it is closed. */
#ifndef TC_LLAMA2C_H
#define TC_LLAMA2C_H

#include <stdint.h>

#include "tc/error.h"
#include "tc/tensordir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_llama2c_header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier; /* 1 when vocab_size was positive (version 0) or the flag was set */
    int version;           /* 0, 1 or 2, as read; the writer ignores it */
    int32_t group_size;    /* version 2's quantization group; 0 otherwise */
} tc_llama2c_header;

typedef struct tc_llama2c {
    char *path;
    tc_llama2c_header hdr; /* vocab_size made positive */
    tc_tensordir dir;
} tc_llama2c;

/* Tensor names (one per layer slice; all F32, pointers into the mapping
 * except version 2's dequantized matrices):
 *   tok_embeddings.weight [vocab][dim], norm.weight [dim], output.weight (only
 *   when not shared), layers.N.attention_norm.weight, layers.N.attention.wq
 *   .weight [n_heads*hd][dim], ...wk, ...wv, ...wo [dim][n_heads*hd],
 *   layers.N.ffn_norm.weight, layers.N.feed_forward.w1.weight (gate)
 *   [hidden][dim], ...w2 (down) [dim][hidden], ...w3 (up) [hidden][dim]. */
/* The layout is told by the first four bytes: the magic means version 1 or
 * 2, anything else is read as version 0, and an error says which layout the
 * file was read as. */
int tc_llama2c_open(tc_llama2c *c, const char *path, tc_error *err);
void tc_llama2c_close(tc_llama2c *c);

/* Writes a legacy (version 0) checkpoint, whatever hdr->version says, the
 * one layout llama2.c's run.c reads: atomically, from F32 output tensors
 * named as above (every layer present; output.weight only when
 * !shared_classifier), streaming one tensor at a time in llama2.c's order;
 * freq_cis tables are computed with theta 10000 as llama2.c's export writes
 * them. */
int tc_llama2c_write(const char *path, const tc_llama2c_header *hdr, const tc_out_tensor *tensors,
                     size_t n_tensors, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
