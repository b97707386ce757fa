/* Writing a Llama-family model in any supported format, one tensor at a time
 * (the source produces fp32 values on demand, so nothing holds the model). */
#ifndef TC_MODEL_WRITE_H
#define TC_MODEL_WRITE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tc_gguf;

/* The tensors that belong to no layer. */
typedef enum tc_global {
    TC_G_EMBD,     /* token embedding [vocab][dim] */
    TC_G_OUT_NORM, /* final norm [dim] */
    TC_G_OUTPUT,   /* output head [vocab][dim] (only when not tied) */
} tc_global;

/* The attention heads one output layer keeps (head drops): its query head i
 * is the source's query head q_src[i] and its key/value head j the source's
 * kv head kv_src[j].  n_q is a multiple of n_kv, query head i using kv head
 * i / (n_q / n_kv) as every format computes it; a source kv head may appear
 * more than once (kept query heads of one group split into groups of equal
 * size).  n_q == 0: the attention keeps no head. */
typedef struct tc_head_layout {
    int n_q, n_kv;
    const int *q_src, *kv_src;
} tc_head_layout;

/* Fills n fp32 values of a tensor: a role of `layer`, or (layer == -1) the
 * global tensor `which`.  Values are in the source's rope layout. */
typedef int (*tc_model_fill_fn)(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err);

typedef struct tc_model_src {
    tc_config cfg;              /* the model as written (n_layers after any block drop) */
    const uint8_t *drop_attn;   /* per layer: attention pruned away (NULL: none) */
    const uint8_t *drop_mlp;    /* per layer: MLP pruned away (NULL: none) */
    tc_dtype dtype;             /* matrices: F32, F16 or BF16 */
    tc_dtype norm_dtype;        /* HF: norms and biases (0: F32); GGUF's are always F32 */
    tc_model_fill_fn fill;
    void *ctx;
    const struct tc_gguf *gguf_vocab; /* GGUF output: tokenizer.* keys copied from here (optional) */
    const struct tc_vocab *vocab; /* GGUF output: the tokenizer.* keys written (optional; when it has keys,
                                     gguf_vocab's tokenizer keys are not copied) */
    const cJSON *hf_config;     /* HF output: fields kept from this config.json (optional) */
    const char *hf_src_dir;     /* HF output: tokenizer and generation config copied from here (optional) */
    const char *name;           /* general.name (optional) */
    /* Optional, for matrices the source encodes itself (ternary GGUF blocks):
     * dtype_of gives the stored dtype of a 2-D tensor (layer -1: a global), or
     * `dtype` for the float path; encode then writes nbytes bytes of that type
     * with Q/K rows already in the target's rope layout `to`. */
    tc_dtype (*dtype_of)(void *ctx, int layer, int which);
    int (*encode)(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                  tc_error *err);
    /* Per output layer, the attention heads kept (NULL: every head).  fill
     * still produces the source's whole tensors (cfg's head counts); the
     * writer keeps the rows and columns of the kept heads, in float.  GGUF
     * holds per-layer counts as llama.cpp's `deci`; a Hugging Face config
     * only one count for every layer; llama2.c none other than its own. */
    const tc_head_layout *heads;
    /* Ternary linear kinds (cfg.t.linear not float): the codes [rows][cols]
     * of a linear role of a layer (in cfg.rope_layout) and its one scale,
     * which the sums are divided by (*divides 1, a BitNet checkpoint's w_s) or
     * multiplied by (0).  Written as they are: HF bitlinear as packed uint8
     * with a weight_scale (of scale_dtype: F32, F16 or BF16), GGUF as
     * `ternary_dtype` (TQ1_0 or TQ2_0 blocks whose d is 1 with the scale in the
     * projection's `.scale` tensor, as llama.cpp's bitnet graph multiplies
     * it; I2_S with the scale in its tail, general.architecture bitnet-b1.58
     * for bitnet.cpp) where rows are whole blocks of it, else F32 values
     * code * scale.  An autobitlinear model written as HF keeps its float
     * masters (fill) instead. */
    int (*ternary)(void *ctx, int layer, int role, int8_t *codes, float *scale, int *divides, tc_error *err);
    tc_dtype ternary_dtype;
    tc_dtype scale_dtype; /* HF: the weight_scale tensors' dtype (0: F32) */
} tc_model_src;

/* Writes src as fmt (TC_FORMAT_HF: a directory; TC_FORMAT_GGUF; TC_FORMAT_LLAMA2C)
 * atomically.  Rope layouts are converted to the target's convention. */
int tc_model_write(const char *path, tc_format fmt, const tc_model_src *src, tc_error *err);

/* A source reading from an open model (optionally keeping only some of its
 * layers: keep[i] = source layer of output layer i). */
typedef struct tc_model_copy {
    const tc_model *model;
    const int *keep;      /* NULL: every layer */
    tc_dtype float_dtype; /* tc_model_copy_dtype's answer for matrices not of a ggml block type */
    tc_dtype matrices;    /* GGUF: the linear layers' stored type (Q8_0, Q4_0, Q4_K, Q6_K, F16, ...);
                             TC_DTYPE_COUNT keeps each one's input type */
} tc_model_copy;

int tc_model_copy_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err);

/* The ternary callback of a copy: tc_model_ternary_role_as of the kept layer. */
int tc_model_copy_ternary(void *ctx, int layer, int role, int8_t *codes, float *scale, int *divides, tc_error *err);

/* The dtype of a ternary model's stored weight scales (a BitNet checkpoint's
 * weight_scale: BF16 as bitnet-b1.58-2B-4T), F32 for any other source. */
tc_dtype tc_model_scale_dtype(const tc_model *m);

/* For a GGUF output: the stored type of a source matrix when GGUF can hold
 * it (F32, F16, BF16, ggml's block types: kept as it is), else the copy's
 * float_dtype (the float path, which must be the source's
 * tc_model_src.dtype); and the encoder that copies such a matrix's bytes
 * unchanged, its rows reordered only where the rope layout of Q or K
 * differs.  Pruning a quantized GGUF therefore requantizes nothing.  With
 * `matrices` set, the linear layers whose rows are whole blocks of that type
 * are stored in it instead (converted from the input's values, unless they
 * are of that type already); the others keep the input's. */
tc_dtype tc_model_copy_dtype(void *ctx, int layer, int which);
int tc_model_copy_encode(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                         tc_error *err);

/* A ternary-trained model (tc_linear_is_ternary) written whole as fmt, its
 * codes and scales as they are (tc_model_src.ternary says how each format
 * stores them; GGUF linears as ternary_dtype: TQ1_0, TQ2_0 or I2_S): the
 * conversion of BitNet checkpoints between formats, nothing requantized.
 * GGUF tokenizer keys from vocab, else from a GGUF input; HF tokenizer files
 * from hf_vocab_dir, else from an HF input's directory. */
int tc_model_write_ternary(const tc_model *m, const char *path, tc_format fmt, tc_dtype ternary_dtype,
                           const struct tc_gguf *vocab, const char *hf_vocab_dir, tc_error *err);

/* The rope layout a format stores Q/K rows in. */
tc_rope_layout tc_format_rope_layout(tc_format fmt, tc_arch arch);

#ifdef __cplusplus
}
#endif

#endif
