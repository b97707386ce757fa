/* The model view over a tensor directory: roles, shape checks, one layer in
 * fp32 at a time.  Opening files by format lives in model_open.c. */
#include "tc/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/ggml_ternary.h"
#include "model_internal.h"

static const char *const role_names[TC_N_ROLES] = {
    "attn_norm", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "q_norm", "k_norm", "post_attn_norm",
    "ffn_norm", "w_gate", "w_up", "w_down", "b_gate", "b_up", "b_down", "post_ffn_norm",
    "lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2",
    "attn_sub_norm", "ffn_sub_norm",
};

const char *tc_role_name(tc_role r)
{
    return (unsigned)r < TC_N_ROLES ? role_names[r] : "?";
}

const char *tc_format_name(tc_format f)
{
    switch (f) {
    case TC_FORMAT_HF: return "hf";
    case TC_FORMAT_GGUF: return "gguf";
    case TC_FORMAT_LLAMA2C: return "llama2c";
    case TC_FORMAT_MEMORY: return "memory";
    }
    return "?";
}

static const char *const arch_names[TC_ARCH_COUNT] = {
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "diffllama", "bitnet",
};

const char *tc_arch_name(tc_arch a)
{
    return (unsigned)a < TC_ARCH_COUNT ? arch_names[a] : "?";
}

static const char *const act_names[TC_ACT_COUNT] = {"silu", "gelu", "gelu_pytorch_tanh", "relu2"};

const char *tc_act_name(tc_act a)
{
    return (unsigned)a < TC_ACT_COUNT ? act_names[a] : "?";
}

const char *tc_norm_kind_name(tc_norm_kind k)
{
    return k == TC_NORM_RMS_1P ? "rmsnorm(1+w)" : "rmsnorm(w)";
}

static const char *const linear_names[TC_LINEAR_COUNT] = {"float", "bitlinear", "autobitlinear"};

const char *tc_linear_kind_name(tc_linear_kind k)
{
    return (unsigned)k < TC_LINEAR_COUNT ? linear_names[k] : "?";
}

void tc_traits_llama(tc_traits *t, double theta, int head_dim)
{
    memset(t, 0, sizeof *t);
    t->rope[0] = tc_rope_default(theta, head_dim);
    t->rope[1] = t->rope[0];
}

const char *tc_traits_non_llama(const tc_config *c)
{
    const tc_traits *t = &c->t;
    if (t->norm != TC_NORM_RMS)
        return "(1 + w) RMSNorm";
    if (t->act != TC_ACT_SILU)
        return "an activation other than SiLU";
    if (t->ungated)
        return "an ungated MLP";
    if (t->o_bias || t->mlp_bias)
        return "output or MLP biases";
    if (t->qk_norm)
        return "q/k norms";
    if (t->post_norms)
        return "post-sub-layer norms";
    if (t->sub_norms)
        return "sub-norms";
    if (t->linear != TC_LINEAR_FLOAT)
        return "ternary linear layers";
    if (t->attn_scale != 0.0f || t->attn_softcap != 0.0f || t->final_softcap != 0.0f)
        return "a custom attention scale or softcapping";
    if (t->embed_scale != 0.0f)
        return "an embedding scale";
    if (t->window > 0)
        return "sliding-window attention";
    if (t->rope[0].kind != TC_ROPE_DEFAULT)
        return "RoPE scaling";
    if (t->rope[0].rot_dims != c->head_dim)
        return "partial rotary dimensions";
    if (t->diff_attn)
        return "differential attention";
    return NULL;
}

const char *tc_rope_layout_name(tc_rope_layout r)
{
    return r == TC_ROPE_ADJACENT ? "adjacent" : "half";
}

/* Tensor names of each family of files.  "%d" is the layer index. */

/* DiffLlama: Llama's names, the biases of attention_bias, and the four
 * vectors of each layer's lambda (parameters without a ".weight"). */
const tc_naming tc_naming_hf_diffllama = {
    .tok_embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .role = {
        [TC_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",
        [TC_WQ] = "model.layers.%d.self_attn.q_proj.weight",
        [TC_WK] = "model.layers.%d.self_attn.k_proj.weight",
        [TC_WV] = "model.layers.%d.self_attn.v_proj.weight",
        [TC_WO] = "model.layers.%d.self_attn.o_proj.weight",
        [TC_BQ] = "model.layers.%d.self_attn.q_proj.bias",
        [TC_BK] = "model.layers.%d.self_attn.k_proj.bias",
        [TC_BV] = "model.layers.%d.self_attn.v_proj.bias",
        [TC_BO] = "model.layers.%d.self_attn.o_proj.bias",
        [TC_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
        [TC_W_GATE] = "model.layers.%d.mlp.gate_proj.weight",
        [TC_W_UP] = "model.layers.%d.mlp.up_proj.weight",
        [TC_W_DOWN] = "model.layers.%d.mlp.down_proj.weight",
        [TC_LAMBDA_Q1] = "model.layers.%d.self_attn.lambda_q1",
        [TC_LAMBDA_K1] = "model.layers.%d.self_attn.lambda_k1",
        [TC_LAMBDA_Q2] = "model.layers.%d.self_attn.lambda_q2",
        [TC_LAMBDA_K2] = "model.layers.%d.self_attn.lambda_k2",
    },
};
const tc_naming tc_naming_hf = {
    .tok_embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .role = {
        "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
        "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
        "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
        "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
        "model.layers.%d.self_attn.o_proj.bias", "model.layers.%d.self_attn.q_norm.weight",
        "model.layers.%d.self_attn.k_norm.weight", NULL,
        "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
        "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
        "model.layers.%d.mlp.gate_proj.bias", "model.layers.%d.mlp.up_proj.bias",
        "model.layers.%d.mlp.down_proj.bias", NULL,
    },
};

/* BitNet: Llama's names plus the two sub-norms. */
const tc_naming tc_naming_hf_bitnet = {
    .tok_embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .role = {
        "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
        "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
        "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
        "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
        "model.layers.%d.self_attn.o_proj.bias", NULL, NULL, NULL,
        "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
        "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
        [TC_ATTN_SUB_NORM] = "model.layers.%d.self_attn.attn_sub_norm.weight",
        [TC_FFN_SUB_NORM] = "model.layers.%d.mlp.ffn_sub_norm.weight",
    },
};

/* Gemma 2/3: four norms per layer, and the name "post_attention_layernorm"
 * means the norm of the attention's output, not the MLP's input. */
const tc_naming tc_naming_hf_gemma = {
    .tok_embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .role = {
        "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
        "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
        "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
        "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
        "model.layers.%d.self_attn.o_proj.bias", "model.layers.%d.self_attn.q_norm.weight",
        "model.layers.%d.self_attn.k_norm.weight", "model.layers.%d.post_attention_layernorm.weight",
        "model.layers.%d.pre_feedforward_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
        "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
        "model.layers.%d.mlp.gate_proj.bias", "model.layers.%d.mlp.up_proj.bias",
        "model.layers.%d.mlp.down_proj.bias", "model.layers.%d.post_feedforward_layernorm.weight",
    },
};

/* Phi-3: q, k and v in one fused qkv_proj, gate and up in one gate_up_proj;
 * bind splits them into row ranges (WQ, WK, WV; W_GATE, W_UP). */
const tc_naming tc_naming_hf_phi3 = {
    .tok_embd = "model.embed_tokens.weight",
    .out_norm = "model.norm.weight",
    .output = "lm_head.weight",
    .fused_qkv = "model.layers.%d.self_attn.qkv_proj.weight",
    .fused_gate_up = "model.layers.%d.mlp.gate_up_proj.weight",
    .role = {
        "model.layers.%d.input_layernorm.weight", NULL, NULL, NULL,
        "model.layers.%d.self_attn.o_proj.weight", NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        "model.layers.%d.post_attention_layernorm.weight", NULL, NULL,
        "model.layers.%d.mlp.down_proj.weight", NULL, NULL, NULL, NULL,
    },
};

const tc_naming tc_naming_gguf = {
    .tok_embd = "token_embd.weight",
    .out_norm = "output_norm.weight",
    .output = "output.weight",
    .role = {
        "blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight",
        "blk.%d.attn_v.weight", "blk.%d.attn_output.weight", "blk.%d.attn_q.bias",
        "blk.%d.attn_k.bias", "blk.%d.attn_v.bias", "blk.%d.attn_output.bias",
        "blk.%d.attn_q_norm.weight", "blk.%d.attn_k_norm.weight", "blk.%d.post_attention_norm.weight",
        "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight",
        "blk.%d.ffn_down.weight", "blk.%d.ffn_gate.bias", "blk.%d.ffn_up.bias", "blk.%d.ffn_down.bias",
        "blk.%d.post_ffw_norm.weight",
        [TC_ATTN_SUB_NORM] = "blk.%d.attn_sub_norm.weight", [TC_FFN_SUB_NORM] = "blk.%d.ffn_sub_norm.weight",
    },
};

/* llama.cpp's phi3: q, k, v in one attn_qkv, gate then up rows in one ffn_up
 * (its phi3 graph takes the first half of ffn_up's output as the gate). */
const tc_naming tc_naming_gguf_phi3 = {
    .tok_embd = "token_embd.weight",
    .out_norm = "output_norm.weight",
    .output = "output.weight",
    .fused_qkv = "blk.%d.attn_qkv.weight",
    .fused_gate_up = "blk.%d.ffn_up.weight",
    .role = {
        "blk.%d.attn_norm.weight", NULL, NULL, NULL, "blk.%d.attn_output.weight", NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, "blk.%d.ffn_norm.weight", NULL, NULL, "blk.%d.ffn_down.weight", NULL, NULL, NULL,
        NULL,
    },
};

const tc_naming tc_naming_llama2c = {
    .tok_embd = "tok_embeddings.weight",
    .out_norm = "norm.weight",
    .output = "output.weight",
    .role = {
        "layers.%d.attention_norm.weight", "layers.%d.attention.wq.weight",
        "layers.%d.attention.wk.weight", "layers.%d.attention.wv.weight",
        "layers.%d.attention.wo.weight", NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        "layers.%d.ffn_norm.weight", "layers.%d.feed_forward.w1.weight",
        "layers.%d.feed_forward.w3.weight", "layers.%d.feed_forward.w2.weight", NULL, NULL, NULL, NULL,
    },
};

const tc_naming *tc_naming_for(tc_format fmt, tc_arch arch)
{
    tc_hf_class hc;
    const tc_gguf_family *gf;
    switch (fmt) {
    case TC_FORMAT_HF:
    case TC_FORMAT_MEMORY: /* tc's own: every role under its own name, nothing fused */
        if (tc_hf_class_of(arch, &hc) != TC_OK)
            return NULL;
        if (fmt == TC_FORMAT_MEMORY && (hc.names->fused_qkv || hc.names->fused_gate_up))
            return &tc_naming_hf;
        return hc.names;
    case TC_FORMAT_GGUF: return (gf = tc_gguf_family_of(arch, 0)) ? gf->names : NULL;
    case TC_FORMAT_LLAMA2C: return &tc_naming_llama2c;
    }
    return NULL;
}

void tc_naming_format(const tc_naming *nm, tc_role r, int layer, char *buf, size_t n)
{
    if (!nm->role[r]) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf, n, nm->role[r], layer);
}

/* The shape a role must have, outermost first; n_dims 0 when the role has no
 * tensor in this config. */
int tc_role_shape(const tc_config *c, tc_role r, int64_t shape[2])
{
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    switch (r) {
    case TC_ATTN_NORM:
    case TC_FFN_NORM:
    case TC_POST_ATTN_NORM:
    case TC_POST_FFN_NORM:
    case TC_BO:
    case TC_B_DOWN: shape[0] = c->dim; return 1;
    case TC_Q_NORM:
    case TC_K_NORM:
    case TC_LAMBDA_Q1:
    case TC_LAMBDA_K1:
    case TC_LAMBDA_Q2:
    case TC_LAMBDA_K2: shape[0] = c->head_dim; return 1;
    case TC_B_GATE:
    case TC_B_UP:
    case TC_FFN_SUB_NORM: shape[0] = c->ffn_dim; return 1;
    case TC_ATTN_SUB_NORM: shape[0] = q; return 1;
    case TC_WQ: shape[0] = q; shape[1] = c->dim; return 2;
    case TC_WK:
    case TC_WV: shape[0] = kv; shape[1] = c->dim; return 2;
    case TC_WO: shape[0] = c->dim; shape[1] = q; return 2;
    case TC_BQ: shape[0] = q; return 1;
    case TC_BK:
    case TC_BV: shape[0] = kv; return 1;
    case TC_W_GATE:
    case TC_W_UP: shape[0] = c->ffn_dim; shape[1] = c->dim; return 2;
    case TC_W_DOWN: shape[0] = c->dim; shape[1] = c->ffn_dim; return 2;
    default: return 0;
    }
}

static int check_shape(const tc_model *m, const tc_tensor *t, int n_dims, const int64_t *shape,
                       tc_error *err)
{
    int ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++)
        ok = t->shape[i] == shape[i];
    /* A 1-D tensor stored as [1][n] (some exporters) is accepted too. */
    if (!ok && n_dims == 1 && t->n_dims == 2 && t->shape[0] == 1 && t->shape[1] == shape[0])
        ok = 1;
    if (ok)
        return TC_OK;
    char want[64], got[64];
    if (n_dims == 1)
        snprintf(want, sizeof want, "[%lld]", (long long)shape[0]);
    else
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
    int k = snprintf(got, sizeof got, "[");
    for (int i = 0; i < t->n_dims && k < (int)sizeof got; i++)
        k += snprintf(got + k, sizeof got - (size_t)k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < (int)sizeof got)
        snprintf(got + k, sizeof got - (size_t)k, "]");
    return tc_err(err, "%s: tensor '%s' has shape %s but the config needs %s", m->path, t->name, got,
                  want);
}

static int check_rope(const tc_model *m, const tc_rope *r, const char *which, tc_error *err)
{
    const tc_config *c = &m->cfg;
    if (!(r->theta > 0) || !isfinite(r->theta))
        return tc_err(err, "%s: %s rope theta must be positive", m->path, which);
    if (r->rot_dims <= 0 || r->rot_dims > c->head_dim || r->rot_dims % 2 || r->rot_dims / 2 > TC_ROPE_MAX_PAIRS)
        return tc_err(err, "%s: %s rope rotates %d of %d head dimensions (it needs an even count up to the "
                      "head dimension, at most %d)", m->path, which, r->rot_dims, c->head_dim,
                      2 * TC_ROPE_MAX_PAIRS);
    if (r->kind != TC_ROPE_DEFAULT && (!(r->factor > 0) || !isfinite(r->factor)))
        return tc_err(err, "%s: %s rope scaling factor must be positive", m->path, which);
    if ((r->kind == TC_ROPE_LLAMA3 || r->kind == TC_ROPE_YARN || r->kind == TC_ROPE_LONGROPE) &&
        r->orig_max_pos <= 0)
        return tc_err(err, "%s: %s rope needs a positive original_max_position_embeddings", m->path, which);
    if (r->kind == TC_ROPE_DYNAMIC && (r->max_pos <= 0 || r->rot_dims < 4))
        return tc_err(err, "%s: dynamic rope needs max_position_embeddings and at least 4 rotated dimensions",
                      m->path);
    if (r->kind == TC_ROPE_LLAMA3 && !(r->high_freq_factor > r->low_freq_factor))
        return tc_err(err, "%s: llama3 rope needs high_freq_factor above low_freq_factor", m->path);
    return TC_OK;
}

static int check_config(const tc_model *m, tc_error *err)
{
    const tc_config *c = &m->cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->ffn_dim <= 0 || c->vocab_size <= 0)
        return tc_err(err, "%s: the config has a zero or negative size (layers %d, dim %d, heads %d, "
                      "kv heads %d, head dim %d, ffn %d, vocab %d)", m->path, c->n_layers, c->dim,
                      c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim, c->vocab_size);
    if (c->n_layers > TC_MAX_LAYERS || c->dim > (1 << 20) || c->ffn_dim > (1 << 22) || c->n_heads > 4096 ||
        c->head_dim > 4096 || c->vocab_size > (1 << 24))
        return tc_err(err, "%s: the config's sizes are beyond what tc supports", m->path);
    if (c->n_heads % c->n_kv_heads != 0)
        return tc_err(err, "%s: %d attention heads are not a multiple of %d key/value heads", m->path,
                      c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return tc_err(err, "%s: head dimension %d is odd; RoPE needs pairs", m->path, c->head_dim);
    if (!(c->norm_eps > 0))
        return tc_err(err, "%s: norm epsilon must be positive", m->path);
    if (check_rope(m, &c->t.rope[0], "the", err) || check_rope(m, &c->t.rope[1], "the local layers'", err))
        return TC_ERR;
    const tc_traits *t = &c->t;
    if (t->window < 0 || !isfinite(t->attn_scale) || t->attn_scale < 0 || !isfinite(t->attn_softcap) ||
        t->attn_softcap < 0 || !isfinite(t->final_softcap) || t->final_softcap < 0 ||
        !isfinite(t->embed_scale) || t->embed_scale < 0)
        return tc_err(err, "%s: the config's attention window, scale, softcaps or embedding scale are out "
                      "of range", m->path);
    return TC_OK;
}

int tc_role_needed(const tc_config *c, tc_role r)
{
    const tc_traits *t = &c->t;
    switch (r) {
    case TC_BQ:
    case TC_BK:
    case TC_BV: return c->qkv_bias;
    case TC_BO: return t->o_bias;
    case TC_Q_NORM:
    case TC_K_NORM: return t->qk_norm;
    case TC_POST_ATTN_NORM:
    case TC_POST_FFN_NORM: return t->post_norms;
    case TC_LAMBDA_Q1:
    case TC_LAMBDA_K1:
    case TC_LAMBDA_Q2:
    case TC_LAMBDA_K2: return t->diff_attn;
    case TC_ATTN_SUB_NORM:
    case TC_FFN_SUB_NORM: return t->sub_norms;
    case TC_W_GATE: return !t->ungated;
    case TC_B_GATE: return t->mlp_bias && !t->ungated;
    case TC_B_UP:
    case TC_B_DOWN: return t->mlp_bias;
    default: return r >= 0 && r < TC_N_ROLES;
    }
}

static int bind_global(tc_model *m, const tc_naming *nm, tc_error *err)
{
    const tc_config *c = &m->cfg;
    int64_t emb[2] = {c->vocab_size, c->dim}, norm[1] = {c->dim};
    m->tok_embd = tc_tensordir_find(m->dir, nm->tok_embd);
    if (!m->tok_embd)
        return tc_err(err, "%s: missing tensor '%s' (token embedding)", m->path, nm->tok_embd);
    if (check_shape(m, m->tok_embd, 2, emb, err))
        return TC_ERR;
    m->out_norm = tc_tensordir_find(m->dir, nm->out_norm);
    if (!m->out_norm)
        return tc_err(err, "%s: missing tensor '%s' (final norm)", m->path, nm->out_norm);
    if (check_shape(m, m->out_norm, 1, norm, err))
        return TC_ERR;
    const tc_tensor *out = tc_tensordir_find(m->dir, nm->output);
    if (out && !m->cfg.tied_embeddings) {
        if (check_shape(m, out, 2, emb, err))
            return TC_ERR;
        m->output = out;
    } else if (!out && !m->cfg.tied_embeddings) {
        return tc_err(err, "%s: missing tensor '%s' (output head) and the config does not tie it to "
                      "the embedding", m->path, nm->output);
    } else {
        m->output = m->tok_embd;
    }
    return TC_OK;
}

/* A row range of a fused 2-D tensor (Phi-3's qkv_proj, gate_up_proj) as a
 * tensor of its own: rows are whole in every dtype, so the range is one
 * byte span of the fused tensor. */
static int add_split(tc_model *m, const tc_tensor *fused, int64_t row0, int64_t rows, const char *part,
                     const tc_tensor **out, tc_error *err)
{
    if (m->n_split == m->cap_split)
        return tc_err(err, "%s: internal: too many split tensors", m->path);
    tc_tensor *t = &m->split[m->n_split];
    uint64_t row_bytes = fused->nbytes / (uint64_t)fused->shape[0];
    size_t n = strlen(fused->name) + strlen(part) + 2;
    *t = *fused;
    t->name = malloc(n);
    if (!t->name)
        return tc_err(err, "%s: out of memory", m->path);
    snprintf(t->name, n, "%s#%s", fused->name, part);
    t->shape[0] = rows;
    t->n_elements = (uint64_t)rows * (uint64_t)fused->shape[1];
    t->data = fused->data + row_bytes * (uint64_t)row0;
    t->nbytes = row_bytes * (uint64_t)rows;
    m->n_split++;
    *out = t;
    return TC_OK;
}

/* Splits layer l's fused projections into their roles. */
static int bind_fused(tc_model *m, const tc_naming *nm, int l, tc_layer *L, int attn, int mlp, tc_error *err)
{
    const tc_config *c = &m->cfg;
    char name[160];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    if (nm->fused_qkv && attn) {
        snprintf(name, sizeof name, nm->fused_qkv, l);
        const tc_tensor *t = tc_tensordir_find(m->dir, name);
        int64_t shape[2] = {q + 2 * kv, c->dim};
        if (!t)
            return tc_err(err, "%s: missing tensor '%s' (layer %d fused q/k/v)", m->path, name, l);
        if (check_shape(m, t, 2, shape, err) ||
            add_split(m, t, 0, q, "q", &L->w[TC_WQ], err) ||
            add_split(m, t, q, kv, "k", &L->w[TC_WK], err) ||
            add_split(m, t, q + kv, kv, "v", &L->w[TC_WV], err))
            return TC_ERR;
    }
    if (nm->fused_gate_up && mlp) {
        snprintf(name, sizeof name, nm->fused_gate_up, l);
        const tc_tensor *t = tc_tensordir_find(m->dir, name);
        int64_t shape[2] = {2 * (int64_t)c->ffn_dim, c->dim};
        if (!t)
            return tc_err(err, "%s: missing tensor '%s' (layer %d fused gate/up)", m->path, name, l);
        if (check_shape(m, t, 2, shape, err) ||
            add_split(m, t, 0, c->ffn_dim, "gate", &L->w[TC_W_GATE], err) ||
            add_split(m, t, c->ffn_dim, c->ffn_dim, "up", &L->w[TC_W_UP], err))
            return TC_ERR;
    }
    return TC_OK;
}

/* A linear's weight scale: one positive, finite float, bound to role r. */
static int bind_scale(const tc_model *m, tc_role r, const tc_tensor *s, tc_layer *L, tc_error *err)
{
    float v = 0.0f;
    if (s->n_elements != 1 || !tc_dtype_is_float_convertible(s->dtype))
        return tc_err(err, "%s: tensor '%s' must hold one float", m->path, s->name);
    if (tc_convert_to_f32(s->dtype, s->data, 1, &v, err))
        return tc_err_prefix(err, "%s: tensor '%s'", m->path, s->name);
    if (!(v > 0.0f) || !isfinite(v))
        return tc_err(err, "%s: tensor '%s' is %g; a weight scale must be positive and finite", m->path, s->name,
                      (double)v);
    L->scale[r] = s;
    return TC_OK;
}

/* A bitlinear linear (transformers' BitLinear, offline): its weight is the
 * packed uint8 buffer [rows / 4][cols], four rows to a byte, and beside it
 * a weight_scale of one float.  transformers sizes the buffer rows / 4, so
 * a row count that is not a multiple of 4 cannot be loaded there either. */
static int bind_bitlinear(tc_model *m, tc_role r, const tc_tensor *t, tc_layer *L, tc_error *err)
{
    int64_t shape[2];
    tc_role_shape(&m->cfg, r, shape);
    if (shape[0] % 4 != 0)
        return tc_err(err, "%s: tensor '%s' has %lld rows, not a multiple of 4, which a bitlinear checkpoint "
                      "packs four to a byte", m->path, t->name, (long long)shape[0]);
    if (t->dtype != TC_U8)
        return tc_err(err, "%s: tensor '%s' is %s, but a bitlinear checkpoint stores its ternary weights "
                      "packed in U8", m->path, t->name, tc_dtype_name(t->dtype));
    int64_t packed[2] = {shape[0] / 4, shape[1]};
    if (check_shape(m, t, 2, packed, err))
        return TC_ERR;
    char name[200];
    snprintf(name, sizeof name, "%s_scale", t->name);
    const tc_tensor *s = tc_tensordir_find(m->dir, name);
    if (!s)
        return tc_err(err, "%s: missing tensor '%s' (the weight scale of '%s')", m->path, name, t->name);
    return bind_scale(m, r, s, L, err);
}

/* A ternary linear of a GGUF bitnet file: its codes in a type that holds
 * them exactly (bitnet.cpp's I2_S, ggml's TQ1_0 / TQ2_0, Q4_0 / Q8_0 blocks of
 * -1, 0, 1, or float values 0 and +-a), and beside it an optional one-element
 * `<name>.scale` that llama.cpp's bitnet graph multiplies the product by. */
static int bind_ggml_ternary(const tc_model *m, tc_role r, const tc_tensor *t, tc_layer *L, tc_error *err)
{
    static const tc_dtype holders[] = {TC_I2_S, TC_TQ1_0, TC_TQ2_0, TC_Q4_0, TC_Q8_0, TC_F32, TC_F16, TC_BF16};
    int ok = 0;
    for (size_t i = 0; i < sizeof holders / sizeof holders[0]; i++)
        ok |= t->dtype == holders[i];
    if (!ok)
        return tc_err(err, "%s: tensor '%s' is %s, which cannot hold the ternary codes of a bitnet model exactly "
                      "(I2_S, TQ1_0, TQ2_0, Q4_0, Q8_0 or float values)", m->path, t->name, tc_dtype_name(t->dtype));
    char name[200];
    size_t len = strlen(t->name);
    if (len < 7 || strcmp(t->name + len - 7, ".weight") != 0 || len + 1 > sizeof name)
        return TC_OK;
    snprintf(name, sizeof name, "%.*s.scale", (int)(len - 7), t->name);
    const tc_tensor *s = tc_tensordir_find(m->dir, name);
    if (!s)
        return TC_OK;
    return bind_scale(m, r, s, L, err);
}

/* drop_attn / drop_mlp: per-layer flags saying the sub-layer was pruned away
 * (its tensors must then be absent; 2: the file holds a stand-in for it,
 * which is not bound); NULL when none were. */
int tc_model_bind(tc_model *m, const tc_naming *nm, const uint8_t *drop_attn, const uint8_t *drop_mlp,
                  tc_error *err)
{
    if (check_config(m, err))
        return TC_ERR;
    if (bind_global(m, nm, err))
        return TC_ERR;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers)
        return tc_err(err, "%s: out of memory", m->path);
    if (nm->fused_qkv || nm->fused_gate_up) {
        m->cap_split = 5 * (size_t)m->cfg.n_layers;
        m->split = calloc(m->cap_split, sizeof *m->split);
        if (!m->split)
            return tc_err(err, "%s: out of memory", m->path);
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        tc_layer *L = &m->layers[l];
        char name[160];
        /* 2: the file holds a stand-in for the dropped sub-layer, not bound. */
        int mlp_stand_in = drop_mlp && drop_mlp[l] == 2, attn_stand_in = drop_attn && drop_attn[l] == 2;
        for (int r = 0; r < TC_N_ROLES; r++) {
            tc_naming_format(nm, (tc_role)r, l, name, sizeof name);
            if (!name[0] || (mlp_stand_in && !tc_role_is_attn(r)) || (attn_stand_in && tc_role_is_attn(r)))
                continue;
            const tc_tensor *t = tc_tensordir_find(m->dir, name);
            if (!t)
                continue;
            if (!tc_role_needed(&m->cfg, (tc_role)r))
                return tc_err(err, "%s: tensor '%s' is present but the config has no %s (tc would ignore "
                              "it)", m->path, name, tc_role_name((tc_role)r));
            int64_t shape[2];
            int nd = tc_role_shape(&m->cfg, (tc_role)r, shape);
            int ternary = tc_linear_is_ternary(&m->cfg) && tc_role_is_linear(r);
            if (ternary && m->cfg.t.linear == TC_LINEAR_BITLINEAR && m->format == TC_FORMAT_GGUF) {
                if (check_shape(m, t, nd, shape, err) || bind_ggml_ternary(m, (tc_role)r, t, L, err))
                    return TC_ERR;
            } else if (ternary && m->cfg.t.linear == TC_LINEAR_BITLINEAR) {
                if (bind_bitlinear(m, (tc_role)r, t, L, err))
                    return TC_ERR;
            } else {
                if (ternary && !tc_dtype_is_float_convertible(t->dtype))
                    return tc_err(err, "%s: tensor '%s' is %s, but an autobitlinear checkpoint stores float "
                                  "master weights", m->path, name, tc_dtype_name(t->dtype));
                if (check_shape(m, t, nd, shape, err))
                    return TC_ERR;
            }
            L->w[r] = t;
        }
        L->has_attn = !(drop_attn && drop_attn[l]);
        L->has_mlp = !(drop_mlp && drop_mlp[l]);
        if (bind_fused(m, nm, l, L, L->has_attn, L->has_mlp, err))
            return TC_ERR;
        for (int r = 0; r < TC_N_ROLES; r++) {
            int attn = tc_role_is_attn(r), present = attn ? L->has_attn : L->has_mlp;
            if (!tc_role_needed(&m->cfg, (tc_role)r))
                continue;
            tc_naming_format(nm, (tc_role)r, l, name, sizeof name);
            if (present && !L->w[r])
                return tc_err(err, "%s: missing tensor '%s' (layer %d %s)", m->path, name[0] ? name : "?", l,
                              tc_role_name((tc_role)r));
            if (!present && L->w[r])
                return tc_err(err, "%s: tensor '%s' is present but the config marks layer %d's %s "
                              "as dropped", m->path, name, l, attn ? "attention" : "MLP");
        }
    }
    return TC_OK;
}

static void free_memory_handle(void *h)
{
    tc_tensordir *d = h;
    tc_tensordir_free(d);
    free(d);
}

int tc_model_from_memory(tc_model *m, tc_tensordir *dir, const tc_config *cfg, tc_error *err)
{
    memset(m, 0, sizeof *m);
    m->format = TC_FORMAT_MEMORY;
    m->cfg = *cfg;
    m->path = strdup("(synthetic)");
    tc_tensordir *own = malloc(sizeof *own);
    if (!m->path || !own) {
        free(own);
        free(m->path);
        tc_tensordir_free(dir);
        return tc_err(err, "out of memory");
    }
    *own = *dir;
    memset(dir, 0, sizeof *dir);
    m->handle = own;
    m->close_handle = free_memory_handle;
    m->dir = own;
    if (tc_model_bind(m, tc_naming_for(TC_FORMAT_MEMORY, cfg->arch), NULL, NULL, err)) {
        tc_model_close(m);
        return TC_ERR;
    }
    return TC_OK;
}

void tc_model_close(tc_model *m)
{
    if (m->close_handle && m->handle)
        m->close_handle(m->handle);
    for (size_t i = 0; i < m->n_split; i++)
        free(m->split[i].name);
    free(m->split);
    free(m->ignored_keys);
    free(m->tokenizer);
    free(m->layer_heads);
    free(m->layers);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* transformers' unpack_weights: byte [i][k] of a packed [R][K] tensor holds
 * column k of rows i, i + R, i + 2R and i + 3R in bits 0-1, 2-3, 4-5 and
 * 6-7, each as code + 1.  The fourth value, 3, is no ternary code (transformers
 * would read it as a weight of 2): refused. */
static int unpack_bitlinear(const tc_model *m, const tc_tensor *t, int8_t *codes, tc_error *err)
{
    size_t R = (size_t)t->shape[0], K = (size_t)t->shape[1];
    for (size_t i = 0; i < R; i++) {
        const uint8_t *row = t->data + i * K;
        for (int j = 0; j < 4; j++) {
            int8_t *out = codes + ((size_t)j * R + i) * K;
            unsigned bad = 0;
            for (size_t k = 0; k < K; k++) {
                unsigned v = (row[k] >> (2 * j)) & 3u;
                bad |= v == 3u;
                out[k] = (int8_t)((int)v - 1);
            }
            if (bad)
                return tc_err(err, "%s: tensor '%s' holds the 2-bit value 3 in row %zu, which is no ternary code",
                              m->path, t->name, (size_t)j * R + i);
        }
    }
    return TC_OK;
}

/* AutoBitLinear's WeightQuant, in float32 as transformers computes it:
 * s = 1 / max(mean|W|, 1e-5), T = clamp(round(W * s), -1, 1).  The mean is
 * taken in double and rounded once (torch sums in float32 with its own order;
 * both give the float nearest the mean but for a rare last-bit tie). */
static int absmean_ternary(const tc_model *m, const tc_tensor *t, const float *w, size_t n, int8_t *codes,
                           float *scale, tc_error *err)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += fabs((double)w[i]);
    if (!isfinite(sum))
        return tc_err(err, "%s: tensor '%s' holds values that are not finite", m->path, t->name);
    float mean = n ? (float)(sum / (double)n) : 0.0f, s;
    if (!(mean >= 1e-5f))
        mean = 1e-5f;
    s = 1.0f / mean;
    for (size_t i = 0; i < n; i++) {
        float v = rintf(w[i] * s);
        codes[i] = (int8_t)(v > 1.0f ? 1 : v < -1.0f ? -1 : (int)v);
    }
    *scale = s;
    return TC_OK;
}

/* The codes of a GGUF ternary tensor and the one magnitude a they stand for
 * (a weight is code * a): I2_S's tail scale, the blocks' d (one value for
 * every block holding a nonzero code: a ternary-trained tensor has one
 * scale), or the float values' one nonzero magnitude.  Anything else is not
 * the ternary tensor of a bitnet model and is refused. */
static int ggml_ternary_codes(const tc_model *m, const tc_tensor *t, int8_t *codes, float *a, tc_error *err)
{
    uint64_t n = t->n_elements, cols = (uint64_t)t->shape[1], rows = (uint64_t)t->shape[0];
    *a = 0.0f;
    if (t->dtype == TC_I2_S) {
        if (tc_i2s_decode(t->data, n, codes, a, err))
            return tc_err_prefix(err, "%s: tensor '%s'", m->path, t->name);
    } else if (tc_ggml_ternary_block_elems(t->dtype)) {
        uint64_t be = (uint64_t)tc_ggml_ternary_block_elems(t->dtype), row_bytes;
        float *d = malloc((size_t)(cols / be) * sizeof *d);
        if (!d)
            return tc_err(err, "%s: out of memory", m->path);
        int rc = tc_ggml_ternary_row_bytes(t->dtype, (int64_t)cols, &row_bytes, err);
        for (uint64_t i = 0; rc == TC_OK && i < rows; i++) {
            int8_t *c = codes + i * cols;
            if (tc_ggml_ternary_decode(t->dtype, t->data + i * row_bytes, (int64_t)cols, c, d, err)) {
                rc = tc_err_prefix(err, "%s: tensor '%s'", m->path, t->name);
                break;
            }
            for (uint64_t b = 0; rc == TC_OK && b < cols / be; b++) {
                int any = 0;
                for (uint64_t e = 0; e < be; e++)
                    any |= c[b * be + e] != 0;
                if (!any)
                    continue;
                if (*a == 0.0f)
                    *a = d[b];
                else if (d[b] != *a)
                    rc = tc_err(err, "%s: tensor '%s' has blocks of different scales (%g and %g in row %llu), not "
                                "the one scale per tensor of a ternary-trained model", m->path, t->name,
                                (double)*a, (double)d[b], (unsigned long long)i);
            }
        }
        free(d);
        if (rc)
            return TC_ERR;
    } else {
        float *w = NULL;
        if (tc_tensor_load_f32(t, &w, err))
            return TC_ERR;
        int rc = TC_OK;
        for (uint64_t i = 0; i < n && rc == TC_OK; i++) {
            float v = fabsf(w[i]);
            if (v != 0.0f && *a == 0.0f)
                *a = v;
            if (v != 0.0f && v != *a)
                rc = tc_err(err, "%s: tensor '%s' holds %g and %g: its values are not 0 and +-a for one a, so "
                            "they are no ternary codes with one scale", m->path, t->name, (double)*a, (double)w[i]);
            codes[i] = (int8_t)(w[i] > 0.0f ? 1 : w[i] < 0.0f ? -1 : 0);
        }
        free(w);
        if (rc)
            return rc;
    }
    if (*a == 0.0f)
        *a = 1.0f; /* no nonzero code: any scale computes the same zeros */
    if (!(*a > 0.0f) || !isfinite(*a))
        return tc_err(err, "%s: tensor '%s' has the scale %g; a weight scale must be positive and finite", m->path,
                      t->name, (double)*a);
    return TC_OK;
}

int tc_model_ternary_role_as(const tc_model *m, int layer, tc_role r, int8_t *codes, float *scale, int *divides,
                             tc_error *err)
{
    if (layer < 0 || layer >= m->cfg.n_layers || (unsigned)r >= TC_N_ROLES)
        return tc_err(err, "%s: layer %d role %d out of range", m->path, layer, (int)r);
    const tc_layer *L = &m->layers[layer];
    const tc_tensor *t = L->w[r];
    if (!t || !tc_linear_is_ternary(&m->cfg) || !tc_role_is_linear(r))
        return tc_err(err, "%s: layer %d %s is not a ternary linear of this model", m->path, layer,
                      tc_role_name(r));
    *divides = 1;
    if (m->cfg.t.linear == TC_LINEAR_BITLINEAR && t->dtype != TC_U8) {
        /* GGUF: y = sum * a * .scale / s_x, as llama.cpp multiplies them. */
        float a, s = 1.0f;
        if (ggml_ternary_codes(m, t, codes, &a, err))
            return TC_ERR;
        if (L->scale[r] && tc_convert_to_f32(L->scale[r]->dtype, L->scale[r]->data, 1, &s, err))
            return tc_err_prefix(err, "%s: tensor '%s'", m->path, L->scale[r]->name);
        *scale = a * s;
        *divides = 0;
        return TC_OK;
    }
    if (m->cfg.t.linear == TC_LINEAR_BITLINEAR) {
        if (tc_convert_to_f32(L->scale[r]->dtype, L->scale[r]->data, 1, scale, err))
            return tc_err_prefix(err, "%s: tensor '%s'", m->path, L->scale[r]->name);
        return unpack_bitlinear(m, t, codes, err);
    }
    float *w = NULL;
    if (tc_tensor_load_f32(t, &w, err))
        return TC_ERR;
    int rc = absmean_ternary(m, t, w, (size_t)t->n_elements, codes, scale, err);
    free(w);
    return rc;
}

int tc_model_ternary_role(const tc_model *m, int layer, tc_role r, int8_t *codes, float *scale, tc_error *err)
{
    int divides;
    if (tc_model_ternary_role_as(m, layer, r, codes, scale, &divides, err))
        return TC_ERR;
    if (!divides)
        *scale = 1.0f / *scale; /* within a float rounding of the multiplier's inverse */
    return TC_OK;
}

uint64_t tc_model_role_params(const tc_model *m, int layer, tc_role r)
{
    const tc_tensor *t = m->layers[layer].w[r];
    if (!t)
        return 0;
    if (m->cfg.t.linear == TC_LINEAR_BITLINEAR && tc_role_is_linear(r) && t->dtype == TC_U8)
        return 4 * t->n_elements; /* four codes to a byte */
    return t->n_elements;
}

int tc_model_load_role(const tc_model *m, int layer, tc_role r, float **out, float *scale, tc_error *err)
{
    *out = NULL;
    *scale = 0.0f;
    if (layer < 0 || layer >= m->cfg.n_layers || (unsigned)r >= TC_N_ROLES || !m->layers[layer].w[r])
        return tc_err(err, "%s: layer %d has no %s", m->path, layer, tc_role_name(r));
    const tc_tensor *t = m->layers[layer].w[r];
    if (!tc_linear_is_ternary(&m->cfg) || !tc_role_is_linear(r))
        return tc_tensor_load_f32(t, out, err);
    uint64_t n = tc_model_role_params(m, layer, r), bytes;
    if (tc_mul_u64(n, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return tc_err(err, "%s: tensor '%s' is too large", m->path, t->name);
    int8_t *codes = malloc(n ? (size_t)n : 1);
    float *f = malloc(bytes ? (size_t)bytes : 1);
    int rc = !codes || !f ? tc_err(err, "%s: tensor '%s': out of memory", m->path, t->name)
                          : tc_model_ternary_role(m, layer, r, codes, scale, err);
    if (rc == TC_OK)
        for (uint64_t i = 0; i < n; i++)
            f[i] = (float)codes[i];
    free(codes);
    if (rc != TC_OK) {
        free(f);
        return TC_ERR;
    }
    *out = f;
    return TC_OK;
}

int tc_model_load_layer(const tc_model *m, int layer, tc_layer_f32 *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    if (layer < 0 || layer >= m->cfg.n_layers)
        return tc_err(err, "%s: layer %d out of range", m->path, layer);
    const tc_layer *L = &m->layers[layer];
    for (int r = 0; r < TC_N_ROLES; r++) {
        if (!L->w[r])
            continue;
        if (tc_model_load_role(m, layer, (tc_role)r, &out->w[r], &out->scale[r], err)) {
            tc_layer_f32_free(out);
            return TC_ERR;
        }
    }
    return TC_OK;
}

void tc_layer_f32_free(tc_layer_f32 *w)
{
    for (int r = 0; r < TC_N_ROLES; r++)
        free(w->w[r]);
    memset(w, 0, sizeof *w);
}

int tc_model_embed(const tc_model *m, int token, float *out, tc_error *err)
{
    const tc_tensor *t = m->tok_embd;
    if (token < 0 || token >= m->cfg.vocab_size)
        return tc_err(err, "%s: token id %d is outside the vocabulary (%d)", m->path, token,
                      m->cfg.vocab_size);
    uint64_t row_bytes = t->nbytes / (uint64_t)m->cfg.vocab_size;
    uint64_t dim = (uint64_t)m->cfg.dim;
    if (tc_convert_to_f32(t->dtype, t->data + row_bytes * (uint64_t)token, dim, out, err))
        return tc_err_prefix(err, "%s: tensor '%s'", m->path, t->name);
    return TC_OK;
}

int tc_model_embed_input(const tc_model *m, int token, float *out, tc_error *err)
{
    if (tc_model_embed(m, token, out, err))
        return TC_ERR;
    float s = m->cfg.t.embed_scale;
    if (s != 0.0f)
        for (int i = 0; i < m->cfg.dim; i++)
            out[i] *= s;
    return TC_OK;
}

uint64_t tc_model_n_params(const tc_model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < m->dir->n_tensors; i++)
        n += m->dir->tensors[i].n_elements;
    /* Packed ternary tensors hold four weights in each stored element. */
    if (m->cfg.t.linear == TC_LINEAR_BITLINEAR)
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int r = 0; r < TC_N_ROLES; r++)
                if (tc_role_is_linear(r) && m->layers[l].w[r] && m->layers[l].w[r]->dtype == TC_U8)
                    n += 3 * m->layers[l].w[r]->n_elements;
    /* Heads a layer of the file lacks are zeros of the view, not stored. */
    const tc_config *c = &m->cfg;
    for (int l = 0; m->layer_heads && l < c->n_layers; l++) {
        const tc_layer *L = &m->layers[l];
        if (!L->has_attn)
            continue;
        uint64_t q = (uint64_t)(c->n_heads - m->layer_heads[l]) * (uint64_t)c->head_dim;
        uint64_t kv = (uint64_t)(c->n_kv_heads - m->layer_heads[c->n_layers + l]) * (uint64_t)c->head_dim;
        n -= (L->w[TC_WQ] ? q * (uint64_t)c->dim : 0) + (L->w[TC_WO] ? q * (uint64_t)c->dim : 0) +
             (L->w[TC_WK] ? kv * (uint64_t)c->dim : 0) + (L->w[TC_WV] ? kv * (uint64_t)c->dim : 0) +
             (L->w[TC_BQ] ? q : 0) + (L->w[TC_BK] ? kv : 0) + (L->w[TC_BV] ? kv : 0);
    }
    return n;
}

struct tc_gguf *tc_model_gguf(const tc_model *m)
{
    return m->format == TC_FORMAT_GGUF ? m->handle : NULL;
}

struct tc_hfdir *tc_model_hfdir(const tc_model *m)
{
    return m->format == TC_FORMAT_HF ? m->handle : NULL;
}

void tc_rope_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols,
                          tc_rope_layout from, tc_rope_layout to)
{
    size_t row = (size_t)cols, hd = (size_t)head_dim, half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + (size_t)h * hd * row;
        float *d = dst + (size_t)h * hd * row;
        for (size_t i = 0; i < half; i++) {
            /* Pair i: adjacent rows (2i, 2i+1) <-> half rows (i, i+hd/2). */
            size_t a0 = 2 * i, a1 = 2 * i + 1, h0 = i, h1 = i + half;
            size_t s0 = from == TC_ROPE_ADJACENT ? a0 : h0, s1 = from == TC_ROPE_ADJACENT ? a1 : h1;
            size_t d0 = to == TC_ROPE_ADJACENT ? a0 : h0, d1 = to == TC_ROPE_ADJACENT ? a1 : h1;
            memcpy(d + d0 * row, s + s0 * row, row * sizeof *d);
            memcpy(d + d1 * row, s + s1 * row, row * sizeof *d);
        }
    }
}
