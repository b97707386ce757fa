/* The model view: one description of a Llama-family model whatever file it
 * came from.  Everything above this layer speaks roles (wq, w_gate, ...),
 * never file-specific tensor names. */
#ifndef TC_MODEL_H
#define TC_MODEL_H

#include <stdint.h>

#include "tc/error.h"
#include "tc/rope.h"
#include "tc/tensordir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_format {
    TC_FORMAT_HF,      /* config.json + safetensors (one file or shards) */
    TC_FORMAT_GGUF,
    TC_FORMAT_LLAMA2C,
    TC_FORMAT_MEMORY,  /* built in memory (synthetic models) */
} tc_format;

/* The family a model was read as.  It names the model in messages and picks
 * the tensor names and config keys a writer uses; what the model computes
 * is the traits below, never the family. */
typedef enum tc_arch {
    TC_ARCH_LLAMA,
    TC_ARCH_MISTRAL,
    TC_ARCH_QWEN2,
    TC_ARCH_QWEN3,
    TC_ARCH_GEMMA2,
    TC_ARCH_GEMMA3,
    TC_ARCH_PHI3,
    TC_ARCH_DIFFLLAMA,
    TC_ARCH_BITNET,
    TC_ARCH_COUNT
} tc_arch;

/* Which rows of Q and K form a rotated pair.  ADJACENT: rows (2i, 2i+1) of
 * each head, as llama2.c and GGUF `llama` store them.  HALF: rows (i, i+hd/2),
 * Hugging Face's rotate-half order.  The forward pass applies the stored one. */
typedef enum tc_rope_layout {
    TC_ROPE_ADJACENT,
    TC_ROPE_HALF,
} tc_rope_layout;

/* Every RMSNorm of the model scales by w (Llama) or by 1 + w (Gemma). */
typedef enum tc_norm_kind {
    TC_NORM_RMS,
    TC_NORM_RMS_1P,
} tc_norm_kind;

/* The MLP's activation: act(gate) * up when gated, act(up) otherwise. */
typedef enum tc_act {
    TC_ACT_SILU,
    TC_ACT_GELU,      /* exact, with erf */
    TC_ACT_GELU_TANH, /* the tanh approximation (gelu_pytorch_tanh, gelu_new) */
    TC_ACT_RELU2,     /* relu(x)^2 */
    TC_ACT_COUNT
} tc_act;

/* What a linear layer of the blocks (q, k, v, o, gate, up, down) computes;
 * the embedding and the output head are always float.  The ternary kinds
 * are transformers' BitNet layers (integrations/bitnet.py): per tensor,
 * ternary codes T in {-1, 0, 1} and a scale w_s, and before every product
 * the input of each token quantized to int8 by its absmax,
 * s_x = 127 / max(max|x|, 1e-5), x_q = clamp(round_half_even(x s_x), -128, 127);
 * then y = (x_q . T) / (w_s s_x), the sum over integers exact.  The two kinds
 * differ in where w_s comes from and in the precision of the activations'
 * quantization, as the reference computes them. */
typedef enum tc_linear_kind {
    TC_LINEAR_FLOAT,         /* y = W x */
    TC_LINEAR_BITLINEAR,     /* BitLinear (linear_class bitlinear, offline): codes packed 4 to a byte and
                                w_s = weight_scale as stored; the activations quantized in the model's
                                precision (double here, as the float64 reference) */
    TC_LINEAR_AUTOBITLINEAR, /* AutoBitLinear (autobitlinear, online): float master weights W, ternary at
                                load by absmean in float32: w_s = 1 / max(mean|W|, 1e-5),
                                T = clamp(round(W w_s), -1, 1); the activations quantized in float32 */
    TC_LINEAR_COUNT
} tc_linear_kind;

#define TC_MAX_LAYERS 4096

/* What a model computes beyond its shapes: an architecture is one set of
 * these, filled by the reader from the checkpoint's own keys, and read by
 * every pass (forward, decoder, analysis, writers).  Zero is the plain Llama
 * value of every trait, except where a comment says otherwise. */
typedef struct tc_traits {
    tc_norm_kind norm;
    tc_act act;
    int ungated;          /* the MLP is down(act(up(x))): no gate projection */
    int o_bias;           /* the attention's output projection has a bias */
    int mlp_bias;         /* gate, up and down projections have biases */
    int qk_norm;          /* per-head RMSNorm of q and k before RoPE (qwen3, gemma3) */
    int post_norms;       /* RMSNorm of each sub-layer's output before the residual add (gemma2/3) */
    int sub_norms;        /* RMSNorm of the attention output before o and of act(gate) * up before
                             down (bitnet: attn_sub_norm, ffn_sub_norm) */
    tc_linear_kind linear; /* what the blocks' linear layers compute */
    float attn_scale;     /* multiplies q.k; 0: 1 / sqrt(head_dim) */
    float attn_softcap;   /* scores become cap * tanh(scores / cap); 0: none */
    float final_softcap;  /* the same on the logits; 0: none */
    float embed_scale;    /* multiplies the token embedding; 0: 1 */
    int window;           /* keys a query of a local layer sees, itself included; 0: none */
    uint8_t local[TC_MAX_LAYERS]; /* layer l is local (sliding window, rope[1]) */
    tc_rope rope[2];      /* [0]: global layers, [1]: local layers */
    int diff_attn;        /* differential attention (DiffLlama): query heads j and j + n_heads/2 form pair j,
                             whose two softmax maps are subtracted, A_j - lambda A_(j+n/2), over both heads'
                             values; each pair's output RMS-normed (no weight) times 1 - lambda_init
                             (forward_math.h) */
} tc_traits;

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
    tc_rope_layout rope_layout;
    int tied_embeddings;  /* output head shares the token embedding */
    int qkv_bias;         /* q/k/v projections carry biases (qwen2) */
    int bos_id, eos_id;   /* -1 when unknown */
    tc_traits t;
} tc_config;

/* A plain Llama config's traits: default RoPE of base theta over the whole
 * head, no window.  Readers start from it. */
void tc_traits_llama(tc_traits *t, double theta, int head_dim);

/* Is layer l local (sliding-window) attention? */
static inline int tc_layer_is_local(const tc_config *c, int l)
{
    return c->t.window > 0 && l >= 0 && l < TC_MAX_LAYERS && c->t.local[l];
}

/* The RoPE of layer l. */
static inline const tc_rope *tc_layer_rope(const tc_config *c, int l)
{
    return &c->t.rope[l >= 0 && l < TC_MAX_LAYERS && c->t.local[l] ? 1 : 0];
}

/* Traits a consumer that implements only plain Llama arithmetic can check:
 * NULL when the config is plain Llama, else the name of the first trait that
 * is not ("rope scaling 'llama3'", "sliding window", ...). */
const char *tc_traits_non_llama(const tc_config *c);

const char *tc_act_name(tc_act a);
const char *tc_norm_kind_name(tc_norm_kind k);
const char *tc_linear_kind_name(tc_linear_kind k); /* "float", "bitlinear", "autobitlinear" */

/* Do the model's linear layers quantize their inputs to int8 and hold
 * ternary codes (a ternary linear kind)? */
static inline int tc_linear_is_ternary(const tc_config *c)
{
    return c->t.linear != TC_LINEAR_FLOAT;
}

typedef enum tc_role {
    TC_ATTN_NORM,
    TC_WQ,
    TC_WK,
    TC_WV,
    TC_WO,
    TC_BQ,
    TC_BK,
    TC_BV,
    TC_BO,
    TC_Q_NORM,          /* [head_dim], shared by every head */
    TC_K_NORM,
    TC_POST_ATTN_NORM,  /* [dim]: norms the attention output (gemma) */
    TC_FFN_NORM,        /* roles from here on belong to the MLP */
    TC_W_GATE,
    TC_W_UP,
    TC_W_DOWN,
    TC_B_GATE,
    TC_B_UP,
    TC_B_DOWN,
    TC_POST_FFN_NORM,   /* [dim]: norms the MLP output (gemma) */
    TC_LAMBDA_Q1,       /* [head_dim] each: the differential attention's lambda (attention roles) */
    TC_LAMBDA_K1,
    TC_LAMBDA_Q2,
    TC_LAMBDA_K2,
    TC_ATTN_SUB_NORM,   /* [n_heads * head_dim]: norms the attention output before wo (bitnet) */
    TC_FFN_SUB_NORM,    /* [ffn_dim]: norms act(gate) * up before w_down (bitnet) */
    TC_N_ROLES
} tc_role;

const char *tc_role_name(tc_role r); /* "attn_norm", "wq", ... */

/* Does role r belong to the attention sub-layer (else to the MLP)? */
static inline int tc_role_is_attn(int r)
{
    return r < TC_FFN_NORM || (r >= TC_LAMBDA_Q1 && r <= TC_LAMBDA_K2) || r == TC_ATTN_SUB_NORM;
}

/* Is role r a matrix of a linear layer (as opposed to a norm or a bias)? */
static inline int tc_role_is_linear(int r)
{
    return r == TC_WQ || r == TC_WK || r == TC_WV || r == TC_WO || r == TC_W_GATE || r == TC_W_UP ||
           r == TC_W_DOWN;
}

/* Does a model of this config hold role r in every layer that has the role's
 * sub-layer? */
int tc_role_needed(const tc_config *c, tc_role r);

/* The shape role r has in this config, outermost first; returns its number
 * of dimensions. */
int tc_role_shape(const tc_config *c, tc_role r, int64_t shape[2]);

typedef struct tc_layer {
    const tc_tensor *w[TC_N_ROLES]; /* NULL where absent; a bitlinear model's linear weights are its
                                       packed uint8 tensors [rows / 4][cols] (tc_model_load_role
                                       unpacks them) */
    const tc_tensor *scale[TC_N_ROLES]; /* a bitlinear linear's weight_scale ([1]), or a GGUF bitnet
                                           linear's optional `.scale` ([1]); NULL otherwise */
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
    tc_tensor *split;          /* row ranges of fused tensors (Phi-3), owned */
    char *ignored_keys;        /* config keys the family's reference ignores too (space-separated), or NULL */
    char *tokenizer;           /* a tokenizer file given for the model (tc_model_set_tokenizer), or NULL */
    size_t n_split, cap_split;
    uint64_t file_bytes;       /* total size of the files read */
    void *handle;              /* the format's own reader (tc_gguf, tc_hfdir, ...) */
    void (*close_handle)(void *handle);
    int *layer_heads;          /* a file whose layers keep their own head counts (GGUF deci after dropped heads):
                                  n_layers query counts, then n_layers key/value counts, as stored; the view holds
                                  every layer at cfg's counts, the heads a layer lacks zero.  NULL otherwise */
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
 * layer, not with the model.  Absent roles stay NULL.  With a ternary linear
 * kind a linear role holds its codes (-1, 0, 1 as floats, [rows][cols]) and
 * scale[] its w_s: the layer's integer sums are divided by scale * s_x. */
typedef struct tc_layer_f32 {
    float *w[TC_N_ROLES];
    float scale[TC_N_ROLES]; /* w_s of a ternary linear role; 0 elsewhere */
} tc_layer_f32;

int tc_model_load_layer(const tc_model *m, int layer, tc_layer_f32 *out, tc_error *err);
void tc_layer_f32_free(tc_layer_f32 *w);

/* One role of a layer in fp32 into a new array (as tc_model_load_layer):
 * a ternary linear's codes with *scale its w_s, anything else its values with
 * *scale 0.  TC_ERR when the role is absent. */
int tc_model_load_role(const tc_model *m, int layer, tc_role r, float **out, float *scale, tc_error *err);

/* A ternary linear's codes [rows][cols] and w_s exactly as the checkpoint
 * holds them (bitlinear: unpacked, weight_scale as stored) or as its linear
 * class derives them (autobitlinear: absmean of the masters in float32).
 * TC_ERR for a model of the float kind or a role that is not a linear. */
int tc_model_ternary_role(const tc_model *m, int layer, tc_role r, int8_t *codes, float *scale, tc_error *err);

/* The same with the scale in the convention the source stores it:
 * *divides 1: the sums are divided by *scale (w_s: BitNet checkpoints),
 * 0: multiplied by it (GGUF bitnet files: a ternary type's scale times the
 * optional `.scale` tensor, as llama.cpp multiplies them).
 * tc_model_ternary_role gives 1 / *scale for the latter. */
int tc_model_ternary_role_as(const tc_model *m, int layer, tc_role r, int8_t *codes, float *scale, int *divides,
                             tc_error *err);

/* The weights role r of a layer holds (rows x cols of a matrix, whatever
 * its storage), 0 when absent. */
uint64_t tc_model_role_params(const tc_model *m, int layer, tc_role r);

/* Row `token` of the token embedding, in fp32 (dim floats), as stored. */
int tc_model_embed(const tc_model *m, int token, float *out, tc_error *err);

/* The same times the model's embedding scale: the first layer's input. */
int tc_model_embed_input(const tc_model *m, int token, float *out, tc_error *err);

/* Parameters stored in the model's tensors, and in its linear layers alone. */
uint64_t tc_model_n_params(const tc_model *m);

/* Reorders the rows of a Q or K weight (or bias: cols = 1) from one RoPE
 * layout to the other, head by head.  rows = n_heads * head_dim. */
void tc_rope_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols,
                          tc_rope_layout from, tc_rope_layout to);

const char *tc_format_name(tc_format f);
const char *tc_arch_name(tc_arch a);
const char *tc_rope_layout_name(tc_rope_layout r);

#ifdef __cplusplus
}
#endif

#endif
