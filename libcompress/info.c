#include "tc/info.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t linear_params(const tc_model *m)
{
    uint64_t n = 0;
    static const tc_role linear[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++)
            if (m->layers[l].w[linear[i]])
                n += m->layers[l].w[linear[i]]->n_elements;
    return n;
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
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddStringToObject(o, "rope_layout", tc_rope_layout_name(c->rope_layout));
    cJSON_AddBoolToObject(o, "tied_embeddings", c->tied_embeddings);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
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
                np += m->dir->tensors[i].n_elements;
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
    sb_printf(&b, "%-18s %g (%s pairs)\n", "rope theta", c->rope_theta, tc_rope_layout_name(c->rope_layout));
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
                np += m->dir->tensors[i].n_elements;
            }
        }
        if (np) {
            human_bytes((double)nb, hb, sizeof hb);
            sb_printf(&b, "%-18s %s in %llu weights\n", tc_dtype_name((tc_dtype)t), hb, (unsigned long long)np);
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
