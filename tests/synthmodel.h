/* Small random Llama models held as plain float arrays, bound to the model
 * view through tc_model_from_memory.  Tests edit the arrays (zero a
 * projection, permute rows) and bind again; a naive reference reads them
 * directly. */
#ifndef TC_SYNTHMODEL_H
#define TC_SYNTHMODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/model.h"
#include "tc/tensordir.h"

#define SM_MAX_LAYERS 8

typedef struct sm_model {
    tc_config cfg;
    float *emb;                          /* [vocab][dim] */
    float *norm;                         /* [dim] */
    float *out;                          /* [vocab][dim], NULL when tied */
    float *w[SM_MAX_LAYERS][TC_N_ROLES]; /* NULL where absent */
} sm_model;

static inline uint64_t sm_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float sm_uniform(uint64_t *s)
{
    return (float)((double)(sm_rng(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static inline void sm_role_shape(const tc_config *c, tc_role r, int64_t *rows, int64_t *cols)
{
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    *cols = 1;
    switch (r) {
    case TC_ATTN_NORM:
    case TC_FFN_NORM: *rows = c->dim; break;
    case TC_WQ: *rows = q; *cols = c->dim; break;
    case TC_WK:
    case TC_WV: *rows = kv; *cols = c->dim; break;
    case TC_WO: *rows = c->dim; *cols = q; break;
    case TC_BQ: *rows = q; break;
    case TC_BK:
    case TC_BV: *rows = kv; break;
    case TC_W_GATE:
    case TC_W_UP: *rows = c->ffn_dim; *cols = c->dim; break;
    case TC_W_DOWN: *rows = c->dim; *cols = c->ffn_dim; break;
    case TC_LAMBDA_Q1:
    case TC_LAMBDA_K1:
    case TC_LAMBDA_Q2:
    case TC_LAMBDA_K2: *rows = c->head_dim; break;
    default: *rows = 0; break;
    }
}

static inline size_t sm_role_elems(const tc_config *c, tc_role r)
{
    int64_t rows, cols;
    sm_role_shape(c, r, &rows, &cols);
    return (size_t)(rows * cols);
}

static inline int sm_is_norm(tc_role r)
{
    return r == TC_ATTN_NORM || r == TC_FFN_NORM;
}

static inline int sm_is_bias(tc_role r)
{
    return r == TC_BQ || r == TC_BK || r == TC_BV;
}

static inline int sm_is_lambda(tc_role r)
{
    return r >= TC_LAMBDA_Q1 && r <= TC_LAMBDA_K2;
}

static inline float *sm_fill(size_t n, float center, float spread, uint64_t *s)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = center + spread * sm_uniform(s);
    return p;
}

/* Weights scaled like a trained model's (~1/sqrt(fan-in)), so activations stay O(1). */
static inline void sm_init(sm_model *sm, const tc_config *cfg, uint64_t seed)
{
    memset(sm, 0, sizeof *sm);
    sm->cfg = *cfg;
    uint64_t s = seed;
    size_t ve = (size_t)cfg->vocab_size * cfg->dim;
    sm->emb = sm_fill(ve, 0.0f, 1.0f, &s);
    sm->norm = sm_fill((size_t)cfg->dim, 1.0f, 0.2f, &s);
    sm->out = cfg->tied_embeddings ? NULL : sm_fill(ve, 0.0f, 0.5f, &s);
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int r = 0; r < TC_N_ROLES; r++) {
            if ((sm_is_bias((tc_role)r) && !cfg->qkv_bias) || !tc_role_needed(cfg, (tc_role)r))
                continue;
            int64_t rows, cols;
            sm_role_shape(cfg, (tc_role)r, &rows, &cols);
            if (rows == 0)
                continue; /* a role of traits these tests do not use */
            float spread = sm_is_norm((tc_role)r) ? 0.2f
                         : sm_is_bias((tc_role)r) || sm_is_lambda((tc_role)r) ? 0.3f
                                                  : (float)(1.7 / sqrt((double)cols));
            sm->w[l][r] = sm_fill((size_t)(rows * cols), sm_is_norm((tc_role)r) ? 1.0f : 0.0f,
                                  spread, &s);
        }
    }
}

static inline void sm_copy(sm_model *dst, const sm_model *src)
{
    const tc_config *c = &src->cfg;
    size_t ve = (size_t)c->vocab_size * c->dim;
    memset(dst, 0, sizeof *dst);
    dst->cfg = *c;
    dst->emb = malloc(ve * sizeof(float));
    memcpy(dst->emb, src->emb, ve * sizeof(float));
    dst->norm = malloc((size_t)c->dim * sizeof(float));
    memcpy(dst->norm, src->norm, (size_t)c->dim * sizeof(float));
    if (src->out) {
        dst->out = malloc(ve * sizeof(float));
        memcpy(dst->out, src->out, ve * sizeof(float));
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++)
            if (src->w[l][r]) {
                size_t n = sm_role_elems(c, (tc_role)r);
                dst->w[l][r] = malloc(n * sizeof(float));
                memcpy(dst->w[l][r], src->w[l][r], n * sizeof(float));
            }
}

static inline void sm_free(sm_model *sm)
{
    free(sm->emb);
    free(sm->norm);
    free(sm->out);
    for (int l = 0; l < SM_MAX_LAYERS; l++)
        for (int r = 0; r < TC_N_ROLES; r++)
            free(sm->w[l][r]);
    memset(sm, 0, sizeof *sm);
}

static const char *const sm_names[TC_N_ROLES] = {
    [TC_ATTN_NORM] = "input_layernorm.weight", [TC_WQ] = "self_attn.q_proj.weight",
    [TC_WK] = "self_attn.k_proj.weight", [TC_WV] = "self_attn.v_proj.weight",
    [TC_WO] = "self_attn.o_proj.weight", [TC_BQ] = "self_attn.q_proj.bias",
    [TC_BK] = "self_attn.k_proj.bias", [TC_BV] = "self_attn.v_proj.bias",
    [TC_FFN_NORM] = "post_attention_layernorm.weight", [TC_W_GATE] = "mlp.gate_proj.weight",
    [TC_W_UP] = "mlp.up_proj.weight", [TC_W_DOWN] = "mlp.down_proj.weight",
    [TC_LAMBDA_Q1] = "self_attn.lambda_q1", [TC_LAMBDA_K1] = "self_attn.lambda_k1",
    [TC_LAMBDA_Q2] = "self_attn.lambda_q2", [TC_LAMBDA_K2] = "self_attn.lambda_k2",
};

static inline int sm_add(tc_tensordir *d, const char *name, const float *src, int64_t rows, int64_t cols,
                  tc_error *err)
{
    size_t n = (size_t)(rows * cols);
    float *buf = malloc(n * sizeof *buf);
    if (!buf)
        return tc_err(err, "out of memory");
    memcpy(buf, src, n * sizeof *buf);
    if (tc_tensordir_adopt_buffer(d, buf, err))
        return -1;
    int64_t shape[2] = {rows, cols};
    return tc_tensordir_add(d, name, TC_F32, cols == 1 ? 1 : 2, shape, (const uint8_t *)buf,
                            n * sizeof *buf, "(synthetic)", err);
}

/* Binds a copy of the arrays as an in-memory model with Hugging Face names. */
static inline int sm_bind(const sm_model *sm, tc_model *m, tc_error *err)
{
    const tc_config *c = &sm->cfg;
    tc_tensordir d;
    tc_tensordir_init(&d);
    int rc = sm_add(&d, "model.embed_tokens.weight", sm->emb, c->vocab_size, c->dim, err);
    if (!rc)
        rc = sm_add(&d, "model.norm.weight", sm->norm, c->dim, 1, err);
    if (!rc && sm->out)
        rc = sm_add(&d, "lm_head.weight", sm->out, c->vocab_size, c->dim, err);
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (int r = 0; !rc && r < TC_N_ROLES; r++) {
            if (!sm->w[l][r])
                continue;
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, sm_names[r]);
            int64_t rows, cols;
            sm_role_shape(c, (tc_role)r, &rows, &cols);
            rc = sm_add(&d, name, sm->w[l][r], rows, cols, err);
        }
    if (rc) {
        tc_tensordir_free(&d);
        return rc;
    }
    return tc_model_from_memory(m, &d, c, err);
}

/* Every trait switched on, for tests of the passes that apply them:
 * Gemma-like (1 + w) norms, tanh GELU, softcaps and embedding scale, every
 * bias, q/k and post norms, an attention scale, a window of `window` keys on
 * the even layers with their own default rope of rot_dims / 2 + 2 pairs...
 * and yarn on the odd layers over rot_dims dimensions (partial rotary).  The
 * arch is one whose tensor names hold every role. */
static inline void sm_all_traits(tc_config *c, int window, int rot_dims)
{
    c->arch = TC_ARCH_GEMMA2;
    c->qkv_bias = 1;
    tc_traits *t = &c->t;
    t->norm = TC_NORM_RMS_1P;
    t->act = TC_ACT_GELU_TANH;
    t->o_bias = t->mlp_bias = t->qk_norm = t->post_norms = 1;
    t->attn_scale = 0.3f;
    t->attn_softcap = 2.0f;
    t->final_softcap = 3.0f;
    t->embed_scale = 2.5f;
    t->window = window;
    for (int l = 0; l < c->n_layers; l++)
        t->local[l] = l % 2 == 0;
    t->rope[0].kind = TC_ROPE_YARN;
    t->rope[0].factor = 4.0;
    t->rope[0].orig_max_pos = 8;
    t->rope[0].beta_fast = 32.0;
    t->rope[0].beta_slow = 1.0;
    t->rope[0].truncate = 1;
    t->rope[0].attn_factor = 1.1386;
    t->rope[0].rot_dims = rot_dims;
    t->rope[1] = tc_rope_default(500.0, rot_dims + 2 <= c->head_dim ? rot_dims + 2 : c->head_dim);
}

/* The awkward little shapes every test uses: dim 24, 3 heads sharing 1 kv
 * head of 8, ffn 40, vocab 37. */
static inline tc_config sm_config_small(void)
{
    tc_config c;
    memset(&c, 0, sizeof c);
    c.arch = TC_ARCH_LLAMA;
    c.n_layers = 3;
    c.dim = 24;
    c.n_heads = 3;
    c.n_kv_heads = 1;
    c.head_dim = 8;
    c.ffn_dim = 40;
    c.vocab_size = 37;
    c.max_seq_len = 64;
    c.norm_eps = 1e-5f;
    tc_traits_llama(&c.t, 10000.0, c.head_dim);
    c.rope_layout = TC_ROPE_ADJACENT;
    c.tied_embeddings = 1;
    c.qkv_bias = 0;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

/* Qwen2-like: q/k/v biases, separate output head, rotate-half RoPE, 4 heads
 * over 2 kv heads of 6, a larger theta. */
static inline tc_config sm_config_biased(void)
{
    tc_config c = sm_config_small();
    c.arch = TC_ARCH_QWEN2;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 6;
    tc_traits_llama(&c.t, 1000000.0, c.head_dim);
    c.rope_layout = TC_ROPE_HALF;
    c.tied_embeddings = 0;
    c.qkv_bias = 1;
    c.norm_eps = 1e-6f;
    return c;
}

#endif
