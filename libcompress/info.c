#include "tc/info.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t linear_params(const tc_model *m)
{
    uint64_t n = 0;
    static const tc_role linear[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++)
            n += tc_model_role_params(m, l, linear[i]);
    return n;
}

/* Weights a stored tensor holds: a bitlinear checkpoint's U8 tensors are its
 * packed ternary codes, four to a byte. */
static uint64_t tensor_weights(const tc_model *m, const tc_tensor *t)
{
    return m->cfg.t.linear == TC_LINEAR_BITLINEAR && t->dtype == TC_U8 ? 4 * t->n_elements : t->n_elements;
}

/* The last component of the path, without a trailing slash: a file name or
 * a Hugging Face directory's name. */
static void model_name(const char *path, char *buf, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, cap, "%.*s", (int)(n - start), path + start);
}

void tc_config_add_json(cJSON *o, const tc_config *c)
{
    cJSON_AddStringToObject(o, "arch", tc_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_seq_len", c->max_seq_len);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->t.rope[0].theta);
    cJSON_AddStringToObject(o, "rope_layout", tc_rope_layout_name(c->rope_layout));
    cJSON_AddBoolToObject(o, "tied_embeddings", c->tied_embeddings);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddItemToObject(o, "traits", tc_traits_json(c));
}

/* Every trait with its stored value (0 for an unset scale or cap means the
 * default: 1 / sqrt(head_dim), none, 1), so that a reader rebuilds the
 * same config bit for bit. */
static cJSON *rope_json(const tc_rope *r)
{
    cJSON *ro = cJSON_CreateObject();
    cJSON_AddStringToObject(ro, "kind", tc_rope_kind_name(r->kind));
    cJSON_AddNumberToObject(ro, "theta", r->theta);
    cJSON_AddNumberToObject(ro, "rot_dims", r->rot_dims);
    if (r->kind == TC_ROPE_DEFAULT)
        return ro;
    cJSON_AddNumberToObject(ro, "factor", r->factor);
    cJSON_AddNumberToObject(ro, "max_pos", r->max_pos);
    cJSON_AddNumberToObject(ro, "original_max_pos", r->orig_max_pos);
    cJSON_AddNumberToObject(ro, "attn_factor", r->attn_factor);
    if (r->kind == TC_ROPE_LLAMA3) {
        cJSON_AddNumberToObject(ro, "low_freq_factor", r->low_freq_factor);
        cJSON_AddNumberToObject(ro, "high_freq_factor", r->high_freq_factor);
    }
    if (r->kind == TC_ROPE_YARN) {
        cJSON_AddNumberToObject(ro, "beta_fast", r->beta_fast);
        cJSON_AddNumberToObject(ro, "beta_slow", r->beta_slow);
        cJSON_AddBoolToObject(ro, "truncate", r->truncate);
    }
    if (r->kind == TC_ROPE_LONGROPE) {
        cJSON *sf = cJSON_AddArrayToObject(ro, "short_factor"), *lf = cJSON_AddArrayToObject(ro, "long_factor");
        for (int i = 0; i < r->rot_dims / 2; i++) {
            cJSON_AddItemToArray(sf, cJSON_CreateNumber(r->short_factor[i]));
            cJSON_AddItemToArray(lf, cJSON_CreateNumber(r->long_factor[i]));
        }
    }
    return ro;
}

cJSON *tc_traits_json(const tc_config *c)
{
    const tc_traits *t = &c->t;
    cJSON *tr = cJSON_CreateObject();
    cJSON_AddStringToObject(tr, "norm", tc_norm_kind_name(t->norm));
    cJSON_AddStringToObject(tr, "activation", tc_act_name(t->act));
    cJSON_AddBoolToObject(tr, "gated", !t->ungated);
    cJSON_AddBoolToObject(tr, "o_bias", t->o_bias);
    cJSON_AddBoolToObject(tr, "mlp_bias", t->mlp_bias);
    cJSON_AddBoolToObject(tr, "qk_norm", t->qk_norm);
    cJSON_AddBoolToObject(tr, "post_norms", t->post_norms);
    cJSON_AddBoolToObject(tr, "sub_norms", t->sub_norms);
    cJSON_AddStringToObject(tr, "linear", tc_linear_kind_name(t->linear));
    cJSON_AddNumberToObject(tr, "attn_scale", t->attn_scale);
    cJSON_AddNumberToObject(tr, "attn_softcap", t->attn_softcap);
    cJSON_AddNumberToObject(tr, "final_softcap", t->final_softcap);
    cJSON_AddNumberToObject(tr, "embed_scale", t->embed_scale);
    cJSON_AddNumberToObject(tr, "window", t->window);
    cJSON *loc = cJSON_AddArrayToObject(tr, "local_layers");
    for (int l = 0; l < c->n_layers && l < TC_MAX_LAYERS; l++)
        if (tc_layer_is_local(c, l))
            cJSON_AddItemToArray(loc, cJSON_CreateNumber(l));
    cJSON_AddItemToObject(tr, "rope", rope_json(&t->rope[0]));
    cJSON_AddItemToObject(tr, "rope_local", rope_json(&t->rope[1]));
    return tr;
}

void tc_traits_describe(const tc_config *c, char *buf, size_t cap)
{
    const tc_traits *t = &c->t;
    size_t n = 0;
#define PUT(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__), n = n < cap ? n : cap)
    buf[0] = '\0';
    PUT("%s, %s%s", tc_norm_kind_name(t->norm), tc_act_name(t->act), t->ungated ? "" : " gated");
    const tc_rope *r = &t->rope[0];
    PUT(", rope %s", tc_rope_kind_name(r->kind));
    if (r->kind == TC_ROPE_LINEAR || r->kind == TC_ROPE_DYNAMIC)
        PUT(" x%g", r->factor);
    else if (r->kind != TC_ROPE_DEFAULT)
        PUT(" x%g (original context %d)", r->factor, r->orig_max_pos);
    if (r->rot_dims != c->head_dim)
        PUT(", rotary %d of %d dims", r->rot_dims, c->head_dim);
    if (t->window > 0) {
        int n_local = 0;
        for (int l = 0; l < c->n_layers && l < TC_MAX_LAYERS; l++)
            n_local += tc_layer_is_local(c, l);
        PUT(", window %d on %d of %d layers", t->window, n_local, c->n_layers);
        if (memcmp(&t->rope[1], r, sizeof *r) != 0)
            PUT(" (local rope %s, theta %g)", tc_rope_kind_name(t->rope[1].kind), t->rope[1].theta);
    }
    if (c->qkv_bias || t->o_bias || t->mlp_bias)
        PUT(", biases%s%s%s", c->qkv_bias ? " qkv" : "", t->o_bias ? " o" : "", t->mlp_bias ? " mlp" : "");
    if (t->qk_norm)
        PUT(", q/k norms");
    if (t->post_norms)
        PUT(", post-norms");
    if (t->sub_norms)
        PUT(", sub-norms (attention output, MLP product)");
    if (t->linear == TC_LINEAR_BITLINEAR)
        PUT(", ternary linear layers (bitlinear: ternary codes, one scale per tensor, int8 per-token "
            "activations)");
    else if (t->linear == TC_LINEAR_AUTOBITLINEAR)
        PUT(", ternary linear layers (autobitlinear: absmean of float masters at load, int8 per-token "
            "activations)");
    if (t->attn_scale != 0)
        PUT(", attention scale %g", t->attn_scale);
    if (t->attn_softcap != 0)
        PUT(", attention softcap %g", t->attn_softcap);
    if (t->final_softcap != 0)
        PUT(", logit softcap %g", t->final_softcap);
    if (t->embed_scale != 0)
        PUT(", embedding x%g", t->embed_scale);
#undef PUT
}

cJSON *tc_model_info_json(const tc_model *m)
{
    const tc_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "format", tc_format_name(m->format));
    cJSON_AddStringToObject(o, "path", m->path);
    char name[256];
    model_name(m->path, name, sizeof name);
    cJSON_AddStringToObject(o, "name", name);
    tc_config_add_json(o, c);
    uint64_t n_params = tc_model_n_params(m);
    cJSON_AddNumberToObject(o, "n_params", (double)n_params);
    cJSON_AddNumberToObject(o, "n_params_linear", (double)linear_params(m));
    cJSON_AddNumberToObject(o, "file_bytes", (double)m->file_bytes);
    cJSON_AddNumberToObject(o, "bits_per_weight",
                            n_params ? 8.0 * (double)m->file_bytes / (double)n_params : 0.0);
    cJSON *bytes = cJSON_AddObjectToObject(o, "bytes_by_dtype");
    cJSON *params = cJSON_AddObjectToObject(o, "params_by_dtype");
    for (int t = 0; t < TC_DTYPE_COUNT; t++) {
        uint64_t nb = 0, np = 0;
        for (size_t i = 0; i < m->dir->n_tensors; i++) {
            if (m->dir->tensors[i].dtype == (tc_dtype)t) {
                nb += m->dir->tensors[i].nbytes;
                np += tensor_weights(m, &m->dir->tensors[i]);
            }
        }
        if (np) {
            cJSON_AddNumberToObject(bytes, tc_dtype_name((tc_dtype)t), (double)nb);
            cJSON_AddNumberToObject(params, tc_dtype_name((tc_dtype)t), (double)np);
        }
    }
    cJSON *da = cJSON_AddArrayToObject(o, "dropped_attn");
    cJSON *dm = cJSON_AddArrayToObject(o, "dropped_mlp");
    for (int l = 0; l < c->n_layers; l++) {
        if (!m->layers[l].has_attn)
            cJSON_AddItemToArray(da, cJSON_CreateNumber(l));
        if (!m->layers[l].has_mlp)
            cJSON_AddItemToArray(dm, cJSON_CreateNumber(l));
    }
    return o;
}

/* Appends formatted text to a growing buffer. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !b)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p)
            return;
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void human_bytes(double b, char *buf, size_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

char *tc_model_info_text(const tc_model *m)
{
    const tc_config *c = &m->cfg;
    strbuf b = {0};
    uint64_t n_params = tc_model_n_params(m);
    char hb[32];
    sb_printf(&b, "%-18s %s\n", "path", m->path);
    sb_printf(&b, "%-18s %s\n", "format", tc_format_name(m->format));
    sb_printf(&b, "%-18s %s\n", "arch", tc_arch_name(c->arch));
    sb_printf(&b, "%-18s %d\n", "layers", c->n_layers);
    sb_printf(&b, "%-18s %d\n", "dim", c->dim);
    sb_printf(&b, "%-18s %d (kv %d, head dim %d)\n", "heads", c->n_heads, c->n_kv_heads, c->head_dim);
    sb_printf(&b, "%-18s %d\n", "ffn dim", c->ffn_dim);
    sb_printf(&b, "%-18s %d\n", "vocab", c->vocab_size);
    sb_printf(&b, "%-18s %d\n", "context", c->max_seq_len);
    sb_printf(&b, "%-18s %g\n", "norm eps", c->norm_eps);
    sb_printf(&b, "%-18s %g (%s pairs)\n", "rope theta", c->t.rope[0].theta, tc_rope_layout_name(c->rope_layout));
    char traits[1024];
    tc_traits_describe(c, traits, sizeof traits);
    sb_printf(&b, "%-18s %s\n", "traits", traits);
    if (m->ignored_keys)
        sb_printf(&b, "%-18s %s\n", "ignored keys", m->ignored_keys);
    sb_printf(&b, "%-18s %s\n", "tied embeddings", c->tied_embeddings ? "yes" : "no");
    sb_printf(&b, "%-18s %s\n", "q/k/v bias", c->qkv_bias ? "yes" : "no");
    sb_printf(&b, "%-18s %llu (linear layers %llu)\n", "parameters", (unsigned long long)n_params,
              (unsigned long long)linear_params(m));
    human_bytes((double)m->file_bytes, hb, sizeof hb);
    sb_printf(&b, "%-18s %s (%llu bytes)\n", "file size", hb, (unsigned long long)m->file_bytes);
    sb_printf(&b, "%-18s %.3f\n", "bits per weight", n_params ? 8.0 * (double)m->file_bytes / (double)n_params : 0.0);
    for (int t = 0; t < TC_DTYPE_COUNT; t++) {
        uint64_t nb = 0, np = 0;
        for (size_t i = 0; i < m->dir->n_tensors; i++) {
            if (m->dir->tensors[i].dtype == (tc_dtype)t) {
                nb += m->dir->tensors[i].nbytes;
                np += tensor_weights(m, &m->dir->tensors[i]);
            }
        }
        if (np) {
            human_bytes((double)nb, hb, sizeof hb);
            int codes = (tc_dtype)t == TC_U8 && m->cfg.t.linear == TC_LINEAR_BITLINEAR;
            sb_printf(&b, "%-18s %s in %llu weights%s\n", tc_dtype_name((tc_dtype)t), hb, (unsigned long long)np,
                      codes ? " (ternary codes, four to a byte)" : "");
        }
    }
    for (int s = 0; s < 2; s++) {
        int any = 0;
        for (int l = 0; l < c->n_layers; l++) {
            int dropped = s == 0 ? !m->layers[l].has_attn : !m->layers[l].has_mlp;
            if (dropped) {
                if (any)
                    sb_printf(&b, ",%d", l);
                else
                    sb_printf(&b, "%-18s %d", s == 0 ? "dropped attention" : "dropped MLP", l);
                any = 1;
            }
        }
        if (any)
            sb_printf(&b, "\n");
    }
    return b.p;
}
