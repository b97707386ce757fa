#include "tc/info.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/tokenizer.h"

static uint64_t linear_params(const tc_model *m)
{
    uint64_t n = 0;
    static const tc_role linear[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++)
            n += tc_model_role_params(m, l, linear[i]);
    /* Heads a layer of the file lacks are zeros of the view, not stored. */
    const tc_config *c = &m->cfg;
    for (int l = 0; m->layer_heads && l < c->n_layers; l++) {
        const tc_layer *L = &m->layers[l];
        uint64_t q = (uint64_t)(c->n_heads - m->layer_heads[l]) * (uint64_t)c->head_dim * (uint64_t)c->dim;
        uint64_t kv = (uint64_t)(c->n_kv_heads - m->layer_heads[c->n_layers + l]) * (uint64_t)c->head_dim * (uint64_t)c->dim;
        if (L->has_attn)
            n -= (L->w[TC_WQ] ? q : 0) + (L->w[TC_WO] ? q : 0) + (L->w[TC_WK] ? kv : 0) + (L->w[TC_WV] ? kv : 0);
    }
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
    cJSON_AddBoolToObject(tr, "diff_attn", t->diff_attn);
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
    if (t->diff_attn)
        PUT(", differential attention");
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
    if (m->layer_heads) {
        cJSON *hq = cJSON_AddArrayToObject(o, "layer_heads"), *hkv = cJSON_AddArrayToObject(o, "layer_kv_heads");
        for (int l = 0; l < c->n_layers; l++) {
            cJSON_AddItemToArray(hq, cJSON_CreateNumber(m->layer_heads[l]));
            cJSON_AddItemToArray(hkv, cJSON_CreateNumber(m->layer_heads[c->n_layers + l]));
        }
    }
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

/* The lines of --info that say what a config computes, common to checkpoints
 * and packed models: arch, shapes, norms, rope and the traits. */
static void config_lines(strbuf *b, const tc_config *c)
{
    sb_printf(b, "%-18s %s\n", "arch", tc_arch_name(c->arch));
    sb_printf(b, "%-18s %d\n", "layers", c->n_layers);
    sb_printf(b, "%-18s %d\n", "dim", c->dim);
    sb_printf(b, "%-18s %d (kv %d, head dim %d)\n", "heads", c->n_heads, c->n_kv_heads, c->head_dim);
    sb_printf(b, "%-18s %d\n", "ffn dim", c->ffn_dim);
    sb_printf(b, "%-18s %d\n", "vocab", c->vocab_size);
    sb_printf(b, "%-18s %d\n", "context", c->max_seq_len);
    sb_printf(b, "%-18s %g\n", "norm eps", c->norm_eps);
    sb_printf(b, "%-18s %g (%s pairs)\n", "rope theta", c->t.rope[0].theta, tc_rope_layout_name(c->rope_layout));
    char traits[1024];
    tc_traits_describe(c, traits, sizeof traits);
    sb_printf(b, "%-18s %s\n", "traits", traits);
}

char *tc_model_info_text(const tc_model *m)
{
    const tc_config *c = &m->cfg;
    strbuf b = {0};
    uint64_t n_params = tc_model_n_params(m);
    char hb[32];
    sb_printf(&b, "%-18s %s\n", "path", m->path);
    sb_printf(&b, "%-18s %s\n", "format", tc_format_name(m->format));
    config_lines(&b, c);
    if (m->layer_heads) {
        sb_printf(&b, "%-18s", "heads per layer");
        for (int l = 0; l < c->n_layers; l++)
            sb_printf(&b, "%s%d/%d", l ? ", " : " ", m->layer_heads[l], m->layer_heads[c->n_layers + l]);
        sb_printf(&b, " (query/kv as stored; read as %d/%d with the missing heads zero)\n", c->n_heads,
                  c->n_kv_heads);
    }
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

/* ---- packed ternary models (.tcq) ------------------------------------------ */

/* What a packed model's tensors hold, by storage (a ternary layout, F16,
 * F32, a block type), and which layers lack a sub-layer. */
static const tc_dtype PLAIN_STORE[] = {TC_F16, TC_F32, TC_Q8_0, TC_Q6_K, TC_Q4_0};
#define N_STORAGE (TC_TPACK_LAYOUT_COUNT + (int)(sizeof PLAIN_STORE / sizeof PLAIN_STORE[0]))
typedef struct tinfo {
    uint64_t bytes[N_STORAGE], params[N_STORAGE];
    uint64_t n_params, linear_params, linear_bytes;
    int *has_attn, *has_mlp;
} tinfo;

static const char *storage_name(int s)
{
    return s < TC_TPACK_LAYOUT_COUNT ? tc_tpack_layout_name((tc_tpack_layout)s)
                                     : tc_dtype_name(PLAIN_STORE[s - TC_TPACK_LAYOUT_COUNT]);
}

static int storage_of(const tc_tmodel_tensor *t)
{
    if (t->ternary)
        return (int)t->plan.layout;
    for (int i = 0; i < N_STORAGE - TC_TPACK_LAYOUT_COUNT; i++)
        if (PLAIN_STORE[i] == t->dtype)
            return TC_TPACK_LAYOUT_COUNT + i;
    return TC_TPACK_LAYOUT_COUNT + 1; /* F32 */
}

static int tinfo_of(const tc_tmodel *m, tinfo *ti)
{
    memset(ti, 0, sizeof *ti);
    int n = m->cfg.n_layers > 0 ? m->cfg.n_layers : 1;
    ti->has_attn = calloc((size_t)n, sizeof(int));
    ti->has_mlp = calloc((size_t)n, sizeof(int));
    if (!ti->has_attn || !ti->has_mlp)
        return TC_ERR;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const tc_tmodel_tensor *t = &m->tensors[i];
        uint64_t np = t->n_dims == 2 ? (uint64_t)t->shape[0] * (uint64_t)t->shape[1] : (uint64_t)t->shape[0];
        int s = storage_of(t);
        ti->bytes[s] += t->nbytes;
        ti->params[s] += np;
        ti->n_params += np;
        if (t->layer >= 0 && tc_role_is_linear(t->role)) {
            ti->linear_params += np;
            ti->linear_bytes += t->nbytes;
            (tc_role_is_attn(t->role) ? ti->has_attn : ti->has_mlp)[t->layer] = 1;
        }
    }
    return TC_OK;
}

static void tinfo_free(tinfo *ti)
{
    free(ti->has_attn);
    free(ti->has_mlp);
}

static void group_name(const tc_tgroup *g, char *buf, size_t n)
{
    if (g->kind == TC_TGROUP_TENSOR)
        snprintf(buf, n, "tensor");
    else if (g->kind == TC_TGROUP_ROW)
        snprintf(buf, n, "row");
    else
        snprintf(buf, n, "%d", (int)g->cols);
}

/* The embedded tokenizer, loaded: its vocabulary and special ids, or why it
 * does not load. */
typedef struct tokinfo {
    int loaded;
    int32_t vocab, bos, eos;
    char error[TC_ERROR_MAX];
} tokinfo;

static void tokinfo_of(const tc_tmodel *m, tokinfo *ki)
{
    memset(ki, 0, sizeof *ki);
    tc_tokenizer *tok = NULL;
    tc_error err = {{0}};
    if (m->tok.kind == TC_TTOK_NONE)
        return;
    if (tc_tmodel_tokenizer(m, &tok, &err)) {
        snprintf(ki->error, sizeof ki->error, "%s", err.msg);
        return;
    }
    ki->loaded = 1;
    ki->vocab = tc_tokenizer_vocab_size(tok);
    ki->bos = tc_tokenizer_bos(tok);
    ki->eos = tc_tokenizer_eos(tok);
    tc_tokenizer_free(tok);
}

cJSON *tc_tmodel_info_json(const tc_tmodel *m)
{
    const tc_config *c = &m->cfg;
    tinfo ti;
    if (tinfo_of(m, &ti)) {
        tinfo_free(&ti);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "tcq");
    cJSON_AddNumberToObject(o, "version", m->version);
    cJSON_AddStringToObject(o, "path", m->path ? m->path : "");
    char name[256], gb[16];
    model_name(m->path ? m->path : "", name, sizeof name);
    cJSON_AddStringToObject(o, "name", name);
    if (m->source)
        cJSON_AddStringToObject(o, "source", m->source);
    tc_config_add_json(o, c);
    cJSON_AddNumberToObject(o, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(o, "eos_id", c->eos_id);
    cJSON *q = cJSON_AddObjectToObject(o, "quantization");
    cJSON_AddStringToObject(q, "method", tc_tmethod_name(m->quant.method));
    cJSON_AddStringToObject(q, "layout", tc_tpack_layout_name(m->quant.layout));
    group_name(&m->quant.group, gb, sizeof gb);
    cJSON_AddStringToObject(q, "group", gb);
    cJSON_AddNumberToObject(q, "calib_tokens", (double)m->quant.calib_tokens);
    cJSON_AddBoolToObject(q, "sequential", m->quant.sequential);
    cJSON_AddNumberToObject(q, "damp_frac", m->quant.damp_frac);
    if (m->tok.kind == TC_TTOK_NONE) {
        cJSON_AddNullToObject(o, "tokenizer");
    } else {
        tokinfo ki;
        tokinfo_of(m, &ki);
        cJSON *tk = cJSON_AddObjectToObject(o, "tokenizer");
        cJSON_AddStringToObject(tk, "kind", tc_ttok_kind_name(m->tok.kind));
        cJSON *files = cJSON_AddArrayToObject(tk, "files");
        for (int i = 0; i < m->tok.n_files; i++) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "name", tc_ttok_file_name(m->tok.kind, i));
            cJSON_AddNumberToObject(f, "bytes", (double)m->tok.files[i].nbytes);
            cJSON_AddItemToArray(files, f);
        }
        if (ki.loaded) {
            cJSON_AddNumberToObject(tk, "vocab_size", ki.vocab);
            cJSON_AddNumberToObject(tk, "bos_id", ki.bos);
            cJSON_AddNumberToObject(tk, "eos_id", ki.eos);
        } else {
            cJSON_AddStringToObject(tk, "error", ki.error);
        }
    }
    uint64_t fb = m->map.size;
    cJSON_AddNumberToObject(o, "n_params", (double)ti.n_params);
    cJSON_AddNumberToObject(o, "n_params_linear", (double)ti.linear_params);
    cJSON_AddNumberToObject(o, "file_bytes", (double)fb);
    cJSON_AddNumberToObject(o, "bits_per_weight", ti.n_params ? 8.0 * (double)fb / (double)ti.n_params : 0.0);
    cJSON_AddNumberToObject(o, "bits_per_weight_linear",
                            ti.linear_params ? 8.0 * (double)ti.linear_bytes / (double)ti.linear_params : 0.0);
    cJSON *bytes = cJSON_AddObjectToObject(o, "bytes_by_storage");
    cJSON *params = cJSON_AddObjectToObject(o, "params_by_storage");
    for (int s = 0; s < N_STORAGE; s++)
        if (ti.params[s]) {
            cJSON_AddNumberToObject(bytes, storage_name(s), (double)ti.bytes[s]);
            cJSON_AddNumberToObject(params, storage_name(s), (double)ti.params[s]);
        }
    cJSON *da = cJSON_AddArrayToObject(o, "dropped_attn");
    cJSON *dm = cJSON_AddArrayToObject(o, "dropped_mlp");
    for (int l = 0; l < c->n_layers; l++) {
        if (!ti.has_attn[l])
            cJSON_AddItemToArray(da, cJSON_CreateNumber(l));
        if (!ti.has_mlp[l])
            cJSON_AddItemToArray(dm, cJSON_CreateNumber(l));
    }
    tinfo_free(&ti);
    return o;
}

char *tc_tmodel_info_text(const tc_tmodel *m)
{
    const tc_config *c = &m->cfg;
    tinfo ti;
    if (tinfo_of(m, &ti)) {
        tinfo_free(&ti);
        return NULL;
    }
    strbuf b = {0};
    char hb[32], gb[16];
    uint64_t fb = m->map.size;
    sb_printf(&b, "%-18s %s\n", "path", m->path ? m->path : "");
    sb_printf(&b, "%-18s tcq (packed ternary model, version %u)\n", "format", m->version);
    if (m->source)
        sb_printf(&b, "%-18s %s\n", "made from", m->source);
    config_lines(&b, c);
    sb_printf(&b, "%-18s %s\n", "tied embeddings", c->tied_embeddings ? "yes" : "no");
    sb_printf(&b, "%-18s %s\n", "q/k/v bias", c->qkv_bias ? "yes" : "no");
    group_name(&m->quant.group, gb, sizeof gb);
    sb_printf(&b, "%-18s %s, layout %s, group %s", "quantization", tc_tmethod_name(m->quant.method),
              tc_tpack_layout_name(m->quant.layout), gb);
    if (m->quant.method == TC_TMETHOD_CALIBRATED)
        sb_printf(&b, ", %llu calibration tokens%s, damping %g", (unsigned long long)m->quant.calib_tokens,
                  m->quant.sequential ? " (sequential)" : "", m->quant.damp_frac);
    sb_printf(&b, "\n");
    if (m->tok.kind == TC_TTOK_NONE) {
        sb_printf(&b, "%-18s none embedded (give --tokenizer FILE to generate or read text)\n", "tokenizer");
    } else {
        tokinfo ki;
        tokinfo_of(m, &ki);
        sb_printf(&b, "%-18s %s", "tokenizer", tc_ttok_kind_name(m->tok.kind));
        for (int i = 0; i < m->tok.n_files; i++)
            sb_printf(&b, "%s %s (%llu bytes)", i ? "," : ":", tc_ttok_file_name(m->tok.kind, i),
                      (unsigned long long)m->tok.files[i].nbytes);
        if (ki.loaded)
            sb_printf(&b, "; %d tokens, BOS %d, EOS %d\n", ki.vocab, ki.bos, ki.eos);
        else
            sb_printf(&b, "; does not load: %s\n", ki.error);
    }
    sb_printf(&b, "%-18s %llu (linear layers %llu)\n", "parameters", (unsigned long long)ti.n_params,
              (unsigned long long)ti.linear_params);
    human_bytes((double)fb, hb, sizeof hb);
    sb_printf(&b, "%-18s %s (%llu bytes)\n", "file size", hb, (unsigned long long)fb);
    sb_printf(&b, "%-18s %.3f (linear layers %.3f)\n", "bits per weight",
              ti.n_params ? 8.0 * (double)fb / (double)ti.n_params : 0.0,
              ti.linear_params ? 8.0 * (double)ti.linear_bytes / (double)ti.linear_params : 0.0);
    for (int s = 0; s < N_STORAGE; s++)
        if (ti.params[s]) {
            human_bytes((double)ti.bytes[s], hb, sizeof hb);
            sb_printf(&b, "%-18s %s in %llu weights\n", storage_name(s), hb, (unsigned long long)ti.params[s]);
        }
    for (int s = 0; s < 2; s++) {
        int any = 0;
        for (int l = 0; l < c->n_layers; l++)
            if (!(s == 0 ? ti.has_attn : ti.has_mlp)[l]) {
                if (any)
                    sb_printf(&b, ",%d", l);
                else
                    sb_printf(&b, "%-18s %d", s == 0 ? "dropped attention" : "dropped MLP", l);
                any = 1;
            }
        if (any)
            sb_printf(&b, "\n");
    }
    tinfo_free(&ti);
    return b.p;
}
