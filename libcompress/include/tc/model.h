/* The model view: one description of a Llama-family model whatever file it
 * came from.  Everything above this layer speaks roles (wq, w_gate, ...),
 * never file-specific tensor names. */
#ifndef TC_MODEL_H
#define TC_MODEL_H

#include <stdint.h>

#include "tc/error.h"
#include "tc/tensordir.h"

typedef enum tc_format {
    TC_FORMAT_HF,      /* config.json + safetensors (one file or shards) */
    TC_FORMAT_GGUF,
    TC_FORMAT_LLAMA2C,
    TC_FORMAT_MEMORY,  /* built in memory (synthetic models) */
} tc_format;

typedef enum tc_arch {
    TC_ARCH_LLAMA,
    TC_ARCH_MISTRAL,
    TC_ARCH_QWEN2,
} tc_arch;

/* Which rows of Q and K form a rotated pair.  ADJACENT: rows (2i, 2i+1) of
 * each head, as llama2.c and GGUF `llama` store them.  HALF: rows (i, i+hd/2),
 * Hugging Face's rotate-half order.  The forward pass applies the stored one. */
typedef enum tc_rope_layout {
    TC_ROPE_ADJACENT,
    TC_ROPE_HALF,
} tc_rope_layout;

typedef struct tc_config {
    tc_arch arch;
    int n_layers;
    int dim;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int ffn_dim;
    int vocab_size;
    int max_seq_len;      /* trained context length */
    float norm_eps;
    float rope_theta;
    tc_rope_layout rope_layout;
    int tied_embeddings;  /* output head shares the token embedding */
    int qkv_bias;         /* q/k/v projections carry biases (qwen2) */
    int bos_id, eos_id;   /* -1 when unknown */
} tc_config;

typedef enum tc_role {
    TC_ATTN_NORM,
    TC_WQ,
    TC_WK,
    TC_WV,
    TC_WO,
    TC_BQ,
    TC_BK,
    TC_BV,
    TC_FFN_NORM,
    TC_W_GATE,
    TC_W_UP,
    TC_W_DOWN,
    TC_N_ROLES
} tc_role;

const char *tc_role_name(tc_role r); /* "attn_norm", "wq", ... */

typedef struct tc_layer {
    const tc_tensor *w[TC_N_ROLES]; /* NULL where absent */
    int has_attn;                   /* attn_norm, wq, wk, wv, wo present */
    int has_mlp;                    /* ffn_norm, w_gate, w_up, w_down present */
} tc_layer;

typedef struct tc_model {
    tc_format format;
    char *path;
    tc_config cfg;
    const tc_tensordir *dir;   /* every stored tensor */
    const tc_tensor *tok_embd; /* [vocab][dim] */
    const tc_tensor *out_norm; /* [dim] */
    const tc_tensor *output;   /* [vocab][dim]; == tok_embd when tied */
    tc_layer *layers;          /* n_layers */
    uint64_t file_bytes;       /* total size of the files read */
    void *handle;              /* the format's own reader (tc_gguf, tc_hfdir, ...) */
    void (*close_handle)(void *handle);
} tc_model;

/* Opens a checkpoint: a Hugging Face directory (or a .safetensors file inside
 * one), a GGUF file or a llama2.c checkpoint, detected from the path and the
 * file's first bytes.  Checks every role's shape against the config. */
int tc_model_open(tc_model *m, const char *path, tc_error *err);

/* Binds a model to an in-memory directory with Hugging Face tensor names
 * (used by synthetic checkpoints); the model takes ownership of dir. */
int tc_model_from_memory(tc_model *m, tc_tensordir *dir, const tc_config *cfg, tc_error *err);

void tc_model_close(tc_model *m);

/* The format-specific handles, or NULL when the model is of another format. */
struct tc_gguf *tc_model_gguf(const tc_model *m);
struct tc_hfdir *tc_model_hfdir(const tc_model *m);

/* One layer's weights in fp32, converted on demand: memory grows with one
 * layer, not with the model.  Absent roles stay NULL. */
typedef struct tc_layer_f32 {
    float *w[TC_N_ROLES];
} tc_layer_f32;

int tc_model_load_layer(const tc_model *m, int layer, tc_layer_f32 *out, tc_error *err);
void tc_layer_f32_free(tc_layer_f32 *w);

/* Row `token` of the token embedding, in fp32 (dim floats). */
int tc_model_embed(const tc_model *m, int token, float *out, tc_error *err);

/* Parameters stored in the model's tensors, and in its linear layers alone. */
uint64_t tc_model_n_params(const tc_model *m);

/* Reorders the rows of a Q or K weight (or bias: cols = 1) from one RoPE
 * layout to the other, head by head.  rows = n_heads * head_dim. */
void tc_rope_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols,
                          tc_rope_layout from, tc_rope_layout to);

const char *tc_format_name(tc_format f);
const char *tc_arch_name(tc_arch a);
const char *tc_rope_layout_name(tc_rope_layout r);

#endif
