/* Opening a checkpoint of any supported format as a model view: detect the
 * format, read its config into tc_config, bind tensor names to roles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "model_internal.h"
#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/llama2c.h"
#include "tc/mapfile.h"

/* ---- Hugging Face ---------------------------------------------------------- */

/* drop_attn_list / drop_mlp_list: integer layer indices of pruned sub-layers. */
static int hf_drop_list(const cJSON *cfg, const char *key, int n_layers, uint8_t *flags,
                        const char *path, tc_error *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!list || cJSON_IsNull(list))
        return TC_OK;
    if (!cJSON_IsArray(list))
        return tc_err(err, "%s/config.json: '%s' is not an array", path, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= n_layers)
            return tc_err(err, "%s/config.json: '%s' holds something that is not a layer index below %d",
                          path, key, n_layers);
        flags[(int)d] = 1;
    }
    return TC_OK;
}

static void close_hf(void *h)
{
    tc_hfdir_close(h);
    free(h);
}

static int open_hf(tc_model *m, const char *dir, tc_error *err)
{
    tc_hfdir *h = calloc(1, sizeof *h);
    if (!h)
        return tc_err(err, "%s: out of memory", dir);
    if (tc_hfdir_open(h, dir, err)) {
        free(h);
        return TC_ERR;
    }
    m->format = TC_FORMAT_HF;
    m->handle = h;
    m->close_handle = close_hf;
    m->dir = &h->dir;
    const tc_naming *names;
    if (tc_hf_config_read(h->config, dir, &m->cfg, &names, &m->ignored_keys, err))
        return TC_ERR;
    uint8_t *drops = calloc(2 * (size_t)m->cfg.n_layers, 1);
    if (!drops)
        return tc_err(err, "%s: out of memory", dir);
    int rc = hf_drop_list(h->config, "drop_attn_list", m->cfg.n_layers, drops, dir, err);
    if (rc == TC_OK)
        rc = hf_drop_list(h->config, "drop_mlp_list", m->cfg.n_layers, drops + m->cfg.n_layers, dir, err);
    if (rc == TC_OK)
        rc = tc_model_bind(m, names, drops, drops + m->cfg.n_layers, err);
    free(drops);
    return rc;
}

/* ---- GGUF -------------------------------------------------------------------- */

static int gguf_key(char *buf, size_t n, const char *arch, const char *suffix)
{
    return snprintf(buf, n, "%s.%s", arch, suffix);
}

static int gguf_u32_arch(const tc_gguf *g, const char *arch, const char *suffix, int required,
                         uint32_t fallback, int *out, tc_error *err)
{
    char key[128];
    gguf_key(key, sizeof key, arch, suffix);
    uint32_t v = fallback;
    if (tc_gguf_find(g, key)) {
        if (tc_gguf_get_u32(g, key, &v, err))
            return TC_ERR;
    } else if (required) {
        return tc_err(err, "%s: missing metadata key '%s'", g->path, key);
    }
    if (v > 0x7fffffffu)
        return tc_err(err, "%s: metadata key '%s' is out of range", g->path, key);
    *out = (int)v;
    return TC_OK;
}

/* A per-layer count that may be one value or an array (deci): fills per[]
 * and returns the largest non-zero value in *maxv. */
static int gguf_per_layer(const tc_gguf *g, const char *arch, const char *suffix, int n_layers,
                          int *per, int *maxv, tc_error *err)
{
    char key[128];
    gguf_key(key, sizeof key, arch, suffix);
    const tc_gguf_value *v = tc_gguf_find(g, key);
    if (!v)
        return tc_err(err, "%s: missing metadata key '%s'", g->path, key);
    *maxv = 0;
    if (v->type == TC_GGUF_ARRAY) {
        if (v->v.arr.n != (uint64_t)n_layers)
            return tc_err(err, "%s: '%s' has %llu entries for %d layers", g->path, key,
                          (unsigned long long)v->v.arr.n, n_layers);
        for (int l = 0; l < n_layers; l++) {
            const tc_gguf_value *it = &v->v.arr.items[l];
            int64_t x = it->type == TC_GGUF_I8 || it->type == TC_GGUF_I16 || it->type == TC_GGUF_I32 ||
                                it->type == TC_GGUF_I64
                            ? it->v.i
                            : (int64_t)it->v.u;
            if (it->type == TC_GGUF_F32 || it->type == TC_GGUF_F64 || it->type == TC_GGUF_STRING ||
                it->type == TC_GGUF_ARRAY || x < 0 || x > 0x7fffffff)
                return tc_err(err, "%s: '%s' entry %d is not a count", g->path, key, l);
            per[l] = (int)x;
            if (per[l] > *maxv)
                *maxv = per[l];
        }
        return TC_OK;
    }
    uint32_t x;
    if (tc_gguf_get_u32(g, key, &x, err))
        return TC_ERR;
    if (x > 0x7fffffffu)
        return tc_err(err, "%s: '%s' is out of range", g->path, key);
    for (int l = 0; l < n_layers; l++)
        per[l] = (int)x;
    *maxv = (int)x;
    return TC_OK;
}

/* Does layer l hold tensor `suffix` of n elements, all zero? */
static int gguf_zero_tensor(const tc_gguf *g, int l, const char *suffix, uint64_t n)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
    const tc_tensor *t = tc_tensordir_find(&g->dir, name);
    if (!t || t->n_elements != n)
        return 0;
    float *v = NULL;
    if (tc_tensor_load_f32(t, &v, NULL))
        return 0;
    int zero = 1;
    for (uint64_t i = 0; i < n && zero; i++)
        zero = v[i] == 0.0f;
    free(v);
    return zero;
}

/* Is layer l's MLP the stand-in tc writes for a dropped one: width 1 with a
 * down projection of zeros, so it adds exactly 0 (see model_write.c)? */
static int gguf_mlp_stand_in(const tc_gguf *g, int l, int dim)
{
    return gguf_zero_tensor(g, l, "ffn_down.weight", (uint64_t)dim);
}

/* The stand-in for a dropped attention (deci "linear attention": heads but no
 * kv heads) with a zero [dim][dim] output projection and no Q/K/V. */
static int gguf_attn_stand_in(const tc_gguf *g, int l, int dim)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
    return !tc_tensordir_find(&g->dir, name) &&
           gguf_zero_tensor(g, l, "attn_output.weight", (uint64_t)dim * (uint64_t)dim);
}

/* Metadata keys and tensors that change what llama.cpp computes and that tc
 * does not implement yet: refused by name rather than ignored. */
static int gguf_refuse_keys(const tc_gguf *g, const char *arch, tc_error *err)
{
    static const char *const refused[] = {
        "rope.scaling.type", "rope.scaling.factor", "rope.scaling.attn_factor",
        "rope.scaling.original_context_length", "rope.scaling.finetuned", "rope.scaling.yarn_log_multiplier",
        "attention.sliding_window", "attention.logit_softcapping", "final_logit_softcapping",
        "expert_count", "expert_used_count", "attention.layer_norm_epsilon", "attention.causal",
        "attention.clamp_kqv", "attention.max_alibi_bias", "logit_scale", "embedding_scale", "residual_scale",
        "attention.scale", "rope.dimension_sections", "use_parallel_residual",
    };
    char key[128];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        gguf_key(key, sizeof key, arch, refused[i]);
        const tc_gguf_value *v = tc_gguf_find(g, key);
        if (!v)
            continue;
        /* "none" scaling and a factor of 1 compute the plain rope. */
        if (v->type == TC_GGUF_STRING && v->v.s.len == 4 && memcmp(v->v.s.ptr, "none", 4) == 0)
            continue;
        if (v->type == TC_GGUF_F32 && strcmp(refused[i], "rope.scaling.factor") == 0 &&
            (v->v.f == 0.0f || v->v.f == 1.0f))
            continue;
        if (v->type == TC_GGUF_BOOL && strcmp(refused[i], "attention.causal") == 0 && v->v.u)
            continue;
        return tc_err(err, "%s: metadata key '%s' changes what the model computes and tc does not implement it",
                      g->path, key);
    }
    if (tc_tensordir_find(&g->dir, "rope_freqs.weight"))
        return tc_err(err, "%s: tensor 'rope_freqs.weight' (per-pair RoPE frequency factors, as Llama 3.1 files "
                      "carry) is not implemented", g->path);
    return TC_OK;
}

static void close_gguf(void *h)
{
    tc_gguf_close(h);
    free(h);
}

static int gguf_config(tc_model *m, const tc_gguf *g, uint8_t **drops, tc_error *err)
{
    tc_config *c = &m->cfg;
    char *arch = NULL;
    memset(c, 0, sizeof *c);
    if (tc_gguf_get_str(g, "general.architecture", &arch, err))
        return TC_ERR;
    int deci = 0;
    if (strcmp(arch, "llama") == 0) {
        c->arch = TC_ARCH_LLAMA;
    } else if (strcmp(arch, "deci") == 0) {
        c->arch = TC_ARCH_LLAMA;
        deci = 1;
    } else if (strcmp(arch, "qwen2") == 0) {
        c->arch = TC_ARCH_QWEN2;
    } else {
        tc_err(err, "%s: unsupported architecture '%.64s' (tc reads llama, deci and qwen2)", g->path, arch);
        free(arch);
        return TC_ERR;
    }
    int rc = TC_ERR, *per = NULL, heads_max = 0, kv_max = 0, ffn_max = 0;
    if (gguf_u32_arch(g, arch, "block_count", 1, 0, &c->n_layers, err) ||
        gguf_u32_arch(g, arch, "embedding_length", 1, 0, &c->dim, err) ||
        gguf_u32_arch(g, arch, "context_length", 0, 2048, &c->max_seq_len, err))
        goto done;
    if (c->n_layers <= 0 || c->n_layers > 4096) {
        tc_err(err, "%s: block_count %d is out of range", g->path, c->n_layers);
        goto done;
    }
    per = calloc(3 * (size_t)c->n_layers, sizeof *per);
    *drops = calloc(2 * (size_t)c->n_layers, 1);
    if (!per || !*drops) {
        tc_err(err, "%s: out of memory", g->path);
        goto done;
    }
    int *heads = per, *kv = per + c->n_layers, *ffn = per + 2 * c->n_layers;
    if (gguf_per_layer(g, arch, "attention.head_count", c->n_layers, heads, &heads_max, err) ||
        gguf_per_layer(g, arch, "feed_forward_length", c->n_layers, ffn, &ffn_max, err))
        goto done;
    char key[128];
    gguf_key(key, sizeof key, arch, "attention.head_count_kv");
    if (tc_gguf_find(g, key)) {
        if (gguf_per_layer(g, arch, "attention.head_count_kv", c->n_layers, kv, &kv_max, err))
            goto done;
    } else {
        memcpy(kv, heads, (size_t)c->n_layers * sizeof *kv);
        kv_max = heads_max;
    }
    c->n_heads = heads_max;
    c->n_kv_heads = kv_max;
    if (deci) {
        /* The stand-ins of dropped MLPs (width 1) do not set the model's width. */
        ffn_max = 0;
        for (int l = 0; l < c->n_layers; l++) {
            int stub = ffn[l] == 1 && gguf_mlp_stand_in(g, l, c->dim);
            (*drops)[c->n_layers + l] = stub ? 2 : 0;
            if (!stub && ffn[l] > ffn_max)
                ffn_max = ffn[l];
        }
        if (ffn_max == 0)
            ffn_max = 1;
    }
    c->ffn_dim = ffn_max;
    for (int l = 0; l < c->n_layers; l++) {
        if (deci && heads[l] > 0 && kv[l] == 0) {
            if (!gguf_attn_stand_in(g, l, c->dim)) {
                tc_err(err, "%s: layer %d uses linear attention (heads without key/value heads), which tc "
                       "does not support", g->path, l);
                goto done;
            }
            (*drops)[l] = 2;
            continue;
        }
    }
    for (int l = 0; l < c->n_layers; l++) {
        /* tc models share one head count; a sub-layer with 0 heads or 0 width is dropped. */
        int stub = (*drops)[c->n_layers + l] == 2;
        if ((heads[l] && heads[l] != heads_max) || (kv[l] && kv[l] != kv_max) ||
            (ffn[l] && ffn[l] != ffn_max && !stub)) {
            tc_err(err, "%s: layer %d has its own head count or width; tc needs them equal across layers",
                   g->path, l);
            goto done;
        }
        if ((*drops)[l] != 2)
            (*drops)[l] = heads[l] == 0;
        if (!stub)
            (*drops)[c->n_layers + l] = ffn[l] == 0;
    }
    if (c->n_heads <= 0) {
        tc_err(err, "%s: no layer has attention heads", g->path);
        goto done;
    }
    if (gguf_u32_arch(g, arch, "attention.key_length", 0, (uint32_t)(c->dim / c->n_heads), &c->head_dim,
                      err))
        goto done;
    char k2[128];
    gguf_key(k2, sizeof k2, arch, "attention.layer_norm_rms_epsilon");
    c->norm_eps = 1e-5f;
    if (tc_gguf_find(g, k2) && tc_gguf_get_f32(g, k2, &c->norm_eps, err))
        goto done;
    gguf_key(k2, sizeof k2, arch, "rope.freq_base");
    float theta = 10000.0f;
    if (tc_gguf_find(g, k2) && tc_gguf_get_f32(g, k2, &theta, err))
        goto done;
    int rot_dims = 0;
    if (gguf_u32_arch(g, arch, "rope.dimension_count", 0, (uint32_t)c->head_dim, &rot_dims, err))
        goto done;
    tc_traits_llama(&c->t, theta, rot_dims);
    if (gguf_refuse_keys(g, arch, err))
        goto done;
    gguf_key(k2, sizeof k2, arch, "vocab_size");
    const tc_tensor *emb = tc_tensordir_find(&g->dir, "token_embd.weight");
    const tc_gguf_value *toks = tc_gguf_find(g, "tokenizer.ggml.tokens");
    if (tc_gguf_find(g, k2)) {
        if (gguf_u32_arch(g, arch, "vocab_size", 1, 0, &c->vocab_size, err))
            goto done;
    } else if (emb && emb->n_dims == 2) {
        c->vocab_size = (int)emb->shape[0];
    } else if (toks && toks->type == TC_GGUF_ARRAY) {
        c->vocab_size = (int)toks->v.arr.n;
    }
    /* llama.cpp stores llama Q/K rows in adjacent-pair order; qwen2 uses rotate-half. */
    c->rope_layout = c->arch == TC_ARCH_QWEN2 ? TC_ROPE_HALF : TC_ROPE_ADJACENT;
    c->qkv_bias = c->arch == TC_ARCH_QWEN2;
    c->tied_embeddings = tc_tensordir_find(&g->dir, "output.weight") == NULL;
    uint32_t id;
    c->bos_id = c->eos_id = -1;
    if (tc_gguf_find(g, "tokenizer.ggml.bos_token_id") &&
        tc_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id, NULL) == TC_OK)
        c->bos_id = (int)id;
    if (tc_gguf_find(g, "tokenizer.ggml.eos_token_id") &&
        tc_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id, NULL) == TC_OK)
        c->eos_id = (int)id;
    (void)deci;
    rc = TC_OK;
done:
    free(per);
    free(arch);
    return rc;
}

static int open_gguf(tc_model *m, const char *path, tc_error *err)
{
    tc_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return tc_err(err, "%s: out of memory", path);
    if (tc_gguf_open(g, path, err)) {
        free(g);
        return TC_ERR;
    }
    m->format = TC_FORMAT_GGUF;
    m->handle = g;
    m->close_handle = close_gguf;
    m->dir = &g->dir;
    uint8_t *drops = NULL;
    int rc = gguf_config(m, g, &drops, err);
    if (rc == TC_OK)
        rc = tc_model_bind(m, &tc_naming_gguf, drops, drops + m->cfg.n_layers, err);
    free(drops);
    return rc;
}

/* ---- llama2.c ----------------------------------------------------------------- */

static void close_llama2c(void *h)
{
    tc_llama2c_close(h);
    free(h);
}

static int open_llama2c(tc_model *m, const char *path, tc_error *err)
{
    tc_llama2c *c = calloc(1, sizeof *c);
    if (!c)
        return tc_err(err, "%s: out of memory", path);
    if (tc_llama2c_open(c, path, err)) {
        free(c);
        return TC_ERR;
    }
    m->format = TC_FORMAT_LLAMA2C;
    m->handle = c;
    m->close_handle = close_llama2c;
    m->dir = &c->dir;
    tc_config *cfg = &m->cfg;
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = TC_ARCH_LLAMA;
    cfg->n_layers = c->hdr.n_layers;
    cfg->dim = c->hdr.dim;
    cfg->n_heads = c->hdr.n_heads;
    cfg->n_kv_heads = c->hdr.n_kv_heads;
    cfg->head_dim = c->hdr.dim / c->hdr.n_heads;
    cfg->ffn_dim = c->hdr.hidden_dim;
    cfg->vocab_size = c->hdr.vocab_size;
    cfg->max_seq_len = c->hdr.seq_len;
    cfg->norm_eps = 1e-5f;      /* llama2.c's run.c */
    tc_traits_llama(&cfg->t, 10000.0, cfg->head_dim); /* llama2.c's run.c: theta 10000 */
    cfg->rope_layout = TC_ROPE_ADJACENT;
    cfg->tied_embeddings = c->hdr.shared_classifier;
    cfg->bos_id = 1;
    cfg->eos_id = 2;
    return tc_model_bind(m, &tc_naming_llama2c, NULL, NULL, err);
}

/* ---- Detection ------------------------------------------------------------------ */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int tc_model_open(tc_model *m, const char *path, tc_error *err)
{
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path)
        return tc_err(err, "%s: out of memory", path);
    int rc;
    if (is_dir(path)) {
        rc = open_hf(m, path, err);
    } else if (ends_with(path, ".safetensors") || ends_with(path, ".json")) {
        /* A file inside a Hugging Face directory: open the directory. */
        char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (!dir) {
            rc = tc_err(err, "%s: out of memory", path);
        } else {
            if (slash)
                *slash = '\0';
            rc = open_hf(m, slash ? dir : ".", err);
        }
        free(dir);
    } else {
        tc_mapfile f;
        if (tc_mapfile_open(&f, path, err)) {
            free(m->path);
            m->path = NULL;
            return TC_ERR;
        }
        int gguf = f.size >= 4 && memcmp(f.data, "GGUF", 4) == 0;
        tc_mapfile_close(&f);
        rc = gguf ? open_gguf(m, path, err) : open_llama2c(m, path, err);
    }
    if (rc != TC_OK) {
        tc_model_close(m);
        return TC_ERR;
    }
    for (size_t i = 0; i < m->dir->n_maps; i++)
        m->file_bytes += m->dir->maps[i].size;
    tc_tensordir_mark_mapped((tc_tensordir *)m->dir);
    return TC_OK;
}
