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
#include "tc/tmodel.h"
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

/* ---- GGUF families -------------------------------------------------------------
 *
 * What llama.cpp (src/llama-model.cpp, llama-hparams, the per-arch graphs)
 * computes for each general.architecture tc reads, as traits:
 *
 *   arch    rope pairs   extra
 *   llama   adjacent     optional q/k/v/o and MLP biases; rope_freqs.weight
 *   deci    adjacent     llama with per-layer head counts and widths
 *   qwen2   half (NEOX)  q/k/v biases
 *   qwen3   half         q/k norms before RoPE
 *   gemma2  half         norms as stored (the converter stores 1 + w), post-norms, GeGLU (tanh),
 *                        embedding * sqrt(n_embd), scale 1/sqrt(key_length) (46 layers, the 27B:
 *                        1/sqrt(n_embd / n_head)), attention softcap (default 50), final softcap
 *                        (default 30), sliding window (default 4096) on layers l % 2 == 0
 *   gemma3  half         gemma2's shape plus q/k norms, no attention softcap, final softcap only if
 *                        the key is there, window on layers l % 6 < 5 when sliding_window > 0,
 *                        those layers' RoPE rope.freq_base_swa (default 10000) unscaled; the 27B
 *                        has 62 layers
 *   phi3    half         fused attn_qkv ([q; k; v] rows) and ffn_up ([gate; up] rows); longrope
 *                        factors rope_factors_long/short.weight; llama.cpp ignores
 *                        attention.sliding_window for phi3 (it disables Phi SWA)
 *
 * Keys read ({arch}.): block_count, embedding_length, context_length,
 * feed_forward_length, attention.head_count(_kv), attention.key_length,
 * attention.value_length (must equal key_length), attention.layer_norm_rms_epsilon,
 * rope.dimension_count, rope.freq_base, rope.scaling.type (none, linear),
 * rope.scaling.factor (linear: llama.cpp's freq_scale = 1 / factor),
 * rope.scaling.attn_factor (cos and sin times it, every arch),
 * rope.scaling.original_context_length (phi3: picks the long factors),
 * rope.scaling.finetuned (metadata), vocab_size, and the gemma keys above.
 * Keys in gguf_refuse_keys change the function and are refused by name. */

/* Metadata keys and tensors that change what llama.cpp computes and that tc
 * does not implement: refused by name rather than ignored.  `allow` lists
 * the families that read the key (it is then handled in gguf_config). */
static int gguf_refuse_keys(const tc_gguf *g, const char *arch, const tc_gguf_family *f, tc_error *err)
{
    static const struct {
        const char *key;
        int gemma2, gemma3; /* read by that family */
    } refused[] = {
        {"rope.scaling.yarn_log_multiplier", 0, 0}, {"rope.scaling.yarn_ext_factor", 0, 0},
        {"rope.scaling.yarn_attn_factor", 0, 0}, {"rope.scaling.yarn_beta_fast", 0, 0},
        {"rope.scaling.yarn_beta_slow", 0, 0}, {"rope.scaling.alpha", 0, 0}, {"rope.scale_linear", 0, 0},
        {"rope.freq_base_per_layer", 0, 0}, {"rope.freq_base_swa", 0, 1},
        {"attention.sliding_window", 1, 1}, {"attention.sliding_window_pattern", 0, 0},
        {"attention.logit_softcapping", 1, 0}, {"final_logit_softcapping", 1, 1},
        {"expert_count", 0, 0}, {"expert_used_count", 0, 0}, {"attention.layer_norm_epsilon", 0, 0},
        {"attention.causal", 0, 0}, {"attention.clamp_kqv", 0, 0}, {"attention.max_alibi_bias", 0, 0},
        {"logit_scale", 0, 0}, {"embedding_scale", 0, 0}, {"residual_scale", 0, 0}, {"attention.scale", 0, 0},
        {"rope.dimension_sections", 0, 0}, {"use_parallel_residual", 0, 0}, {"attention.q_lora_rank", 0, 0},
        {"attention.kv_lora_rank", 0, 0}, {"attention.temperature_scale", 0, 0},
        {"attention.output_scale", 0, 0}, {"attn_logit_softcapping", 1, 0},
    };
    char key[128];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if ((f->gemma == 2 && refused[i].gemma2) || (f->gemma == 3 && refused[i].gemma3))
            continue;
        /* llama.cpp ignores phi3's sliding window (Phi SWA is disabled), so tc does too. */
        if (f->phi3 && strcmp(refused[i].key, "attention.sliding_window") == 0)
            continue;
        gguf_key(key, sizeof key, arch, refused[i].key);
        const tc_gguf_value *v = tc_gguf_find(g, key);
        if (!v)
            continue;
        if (v->type == TC_GGUF_BOOL && strcmp(refused[i].key, "attention.causal") == 0 && v->v.u)
            continue;
        return tc_err(err, "%s: metadata key '%s' changes what the model computes and tc does not implement it",
                      g->path, key);
    }
    return TC_OK;
}

static int gguf_f32_arch(const tc_gguf *g, const char *arch, const char *suffix, float *out, int *found,
                         tc_error *err)
{
    char key[128];
    gguf_key(key, sizeof key, arch, suffix);
    *found = tc_gguf_find(g, key) != NULL;
    return *found ? tc_gguf_get_f32(g, key, out, err) : TC_OK;
}

/* A per-pair factor tensor (rope_freqs, rope_factors_*) of rot_dims / 2 floats. */
static int gguf_rope_factors(const tc_gguf *g, const char *name, int rot_dims, float *out, tc_error *err)
{
    const tc_tensor *t = tc_tensordir_find(&g->dir, name);
    if (t->n_elements != (uint64_t)(rot_dims / 2) || rot_dims / 2 > TC_ROPE_MAX_PAIRS)
        return tc_err(err, "%s: tensor '%s' has %llu elements for %d rotated pairs", g->path, name,
                      (unsigned long long)t->n_elements, rot_dims / 2);
    if (tc_tensor_to_f32(t, out, err))
        return TC_ERR;
    for (int i = 0; i < rot_dims / 2; i++)
        if (!(out[i] > 0) || !isfinite(out[i]))
            return tc_err(err, "%s: tensor '%s' entry %d is not a positive factor", g->path, name, i);
    return TC_OK;
}

/* The RoPE: base, rotated dimensions, linear scaling, attention factor and
 * the per-pair factor tensors; and for gemma3 the local layers' rope. */
static int gguf_rope(const tc_gguf *g, const char *arch, const tc_gguf_family *f, tc_config *c, tc_error *err)
{
    char key[128];
    float theta = 10000.0f, factor = 0.0f, attn_factor = 1.0f;
    int found, rot_dims = 0, orig = 0;
    if (gguf_f32_arch(g, arch, "rope.freq_base", &theta, &found, err) ||
        gguf_u32_arch(g, arch, "rope.dimension_count", 0, (uint32_t)c->head_dim, &rot_dims, err) ||
        gguf_f32_arch(g, arch, "rope.scaling.factor", &factor, &found, err) ||
        gguf_f32_arch(g, arch, "rope.scaling.attn_factor", &attn_factor, &found, err) ||
        gguf_u32_arch(g, arch, "rope.scaling.original_context_length", 0, 0, &orig, err))
        return TC_ERR;
    tc_traits_llama(&c->t, theta, rot_dims);
    /* llama.cpp: the type defaults to linear; "none" never scales; factor 0 means 1. */
    char *type = NULL;
    gguf_key(key, sizeof key, arch, "rope.scaling.type");
    if (tc_gguf_find(g, key) && tc_gguf_get_str(g, key, &type, err))
        return TC_ERR;
    int none = type && strcmp(type, "none") == 0, yarn = type && strcmp(type, "yarn") == 0;
    if (type && !none && !yarn && strcmp(type, "linear") != 0) {
        tc_err(err, "%s: metadata key '%s' is '%.32s'; tc implements 'none', 'linear' and 'yarn' (llama.cpp's "
               "%.32s scaling is not implemented)", g->path, key, type, type);
        free(type);
        return TC_ERR;
    }
    free(type);
    tc_rope *r = &c->t.rope[0];
    if (!none && factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0))
            return tc_err(err, "%s: rope.scaling.factor %g is not positive", g->path, (double)factor);
        r->kind = yarn ? TC_ROPE_YARN : TC_ROPE_LINEAR;
        r->factor = factor;
    }
    if (!(attn_factor > 0) || !isfinite(attn_factor))
        return tc_err(err, "%s: rope.scaling.attn_factor %g is not positive", g->path, (double)attn_factor);
    r->attn_factor = attn_factor;
    if (r->kind == TC_ROPE_YARN) {
        /* llama.cpp's YaRN: the ramp between rotation counts beta_fast (32)
         * and beta_slow (1) of the original context, the correction range
         * rounded outward, and cos/sin times attn_factor * (1 + 0.1 ln
         * factor): transformers' yarn with its default attention factor. */
        if (orig <= 0)
            return tc_err(err, "%s: yarn rope needs %s.rope.scaling.original_context_length", g->path, arch);
        r->orig_max_pos = orig;
        r->max_pos = c->max_seq_len;
        r->beta_fast = 32.0;
        r->beta_slow = 1.0;
        r->truncate = 1;
        r->attn_factor = attn_factor * (1.0 + 0.1 * log(factor));
    }
    int freqs = tc_tensordir_find(&g->dir, "rope_freqs.weight") != NULL;
    int longf = tc_tensordir_find(&g->dir, "rope_factors_long.weight") != NULL;
    int shortf = tc_tensordir_find(&g->dir, "rope_factors_short.weight") != NULL;
    if (freqs && f->rope_freqs) {
        /* Llama 3.1's scaling as llama.cpp applies it: theta_i = pos * base^(-2i/n) / freqs[i].
         * That is tc's longrope with both factor sets the tensor and a context never
         * outgrown (orig_max_pos INT32_MAX), the attention factor kept. */
        if (r->kind != TC_ROPE_DEFAULT)
            return tc_err(err, "%s: tensor 'rope_freqs.weight' together with linear rope scaling is not "
                          "implemented", g->path);
        if (gguf_rope_factors(g, "rope_freqs.weight", rot_dims, r->short_factor, err))
            return TC_ERR;
        memcpy(r->long_factor, r->short_factor, sizeof r->long_factor);
        r->kind = TC_ROPE_LONGROPE;
        r->orig_max_pos = 0x7fffffff;
    }
    if ((longf || shortf) && f->phi3) {
        /* llama.cpp picks the long factors when the context outgrows
         * original_context_length; tc, when the sequence does: the same as
         * llama.cpp run with a context of the sequence's length. */
        if (!(longf && shortf) || orig <= 0)
            return tc_err(err, "%s: phi3 longrope needs rope_factors_long.weight, rope_factors_short.weight and "
                          "%s.rope.scaling.original_context_length", g->path, arch);
        if (r->kind != TC_ROPE_DEFAULT)
            return tc_err(err, "%s: phi3 rope factors together with linear rope scaling are not implemented",
                          g->path);
        if (gguf_rope_factors(g, "rope_factors_long.weight", rot_dims, r->long_factor, err) ||
            gguf_rope_factors(g, "rope_factors_short.weight", rot_dims, r->short_factor, err))
            return TC_ERR;
        r->kind = TC_ROPE_LONGROPE;
        r->orig_max_pos = orig;
    }
    c->t.rope[1] = *r;
    if (f->gemma == 3) {
        /* Local layers: rope.freq_base_swa (10000 when absent), never scaled. */
        float swa_base = 10000.0f;
        if (gguf_f32_arch(g, arch, "rope.freq_base_swa", &swa_base, &found, err))
            return TC_ERR;
        if (r->kind == TC_ROPE_LONGROPE)
            return tc_err(err, "%s: gemma3 with rope factor tensors is not implemented", g->path);
        c->t.rope[1] = tc_rope_default(swa_base, rot_dims);
        c->t.rope[1].attn_factor = attn_factor;
    }
    return TC_OK;
}

/* gemma2 / gemma3 traits (see the table above). */
static int gguf_gemma(const tc_gguf *g, const char *arch, const tc_gguf_family *f, tc_config *c, tc_error *err)
{
    tc_traits *t = &c->t;
    t->norm = TC_NORM_RMS; /* convert_hf_to_gguf.py stores 1 + w; llama.cpp multiplies by it */
    t->act = TC_ACT_GELU_TANH;
    t->post_norms = 1;
    t->embed_scale = sqrtf((float)c->dim);
    t->attn_scale = c->n_layers == f->n_layers_27b ? 1.0f / sqrtf((float)(c->dim / c->n_heads))
                                                    : 1.0f / sqrtf((float)c->head_dim);
    int found, window = 0;
    float cap = f->gemma == 2 ? 50.0f : 0.0f;
    if (f->gemma == 2 && gguf_f32_arch(g, arch, "attn_logit_softcapping", &cap, &found, err))
        return TC_ERR;
    t->attn_softcap = cap;
    cap = f->gemma == 2 ? 30.0f : 0.0f;
    if (gguf_f32_arch(g, arch, "final_logit_softcapping", &cap, &found, err))
        return TC_ERR;
    t->final_softcap = cap;
    if (!(t->attn_softcap >= 0) || !(t->final_softcap >= 0))
        return tc_err(err, "%s: negative logit softcapping", g->path);
    if (gguf_u32_arch(g, arch, "attention.sliding_window", 0, f->gemma == 2 ? 4096 : 0, &window, err))
        return TC_ERR;
    /* llama.cpp masks key p0 for query p1 when p1 - p0 >= n_swa: n_swa keys, the query's own
     * included, as tc's window counts them. */
    t->window = window;
    int pattern = f->gemma == 2 ? 2 : 6;
    for (int l = 0; l < c->n_layers && l < TC_MAX_LAYERS; l++)
        t->local[l] = window > 0 && l % pattern < pattern - 1;
    return TC_OK;
}

/* llama.cpp's bitnet graph (gguf_family.c): sub-norms, ternary linears with
 * int8 activations as the reference model computes them, no biases, the
 * head tied; the activation SiLU unless {arch}.hidden_activation names relu2. */
static int gguf_bitnet(const tc_gguf *g, const char *arch, tc_config *c, tc_error *err)
{
    c->t.sub_norms = 1;
    c->t.linear = TC_LINEAR_BITLINEAR;
    c->qkv_bias = c->t.o_bias = c->t.mlp_bias = 0; /* a bias tensor is then refused as unread */
    if (!c->tied_embeddings)
        return tc_err(err, "%s: tensor 'output.weight' is present, but llama.cpp's %s graph takes the head from the "
                      "token embedding and never reads it", g->path, arch);
    char key[128];
    gguf_key(key, sizeof key, arch, "hidden_activation");
    if (!tc_gguf_find(g, key))
        return TC_OK;
    char *act = NULL;
    if (tc_gguf_get_str(g, key, &act, err))
        return TC_ERR;
    int rc = TC_OK;
    if (strcmp(act, "relu2") == 0)
        c->t.act = TC_ACT_RELU2;
    else if (strcmp(act, "silu") != 0 && strcmp(act, "swiglu") != 0)
        rc = tc_err(err, "%s: metadata key '%s' is '%.32s'; tc implements silu and relu2 for %s", g->path, key, act,
                    arch);
    free(act);
    return rc;
}

static void close_gguf(void *h)
{
    tc_gguf_close(h);
    free(h);
}

/* deci layers with their own head counts (dropped heads): *layer_heads
 * (malloc'd; NULL when every layer has the model's counts) holds each
 * layer's query heads and then each layer's kv heads, and the config the
 * counts every layer fits in (gguf_pad_heads). */
static int gguf_config(tc_model *m, const tc_gguf *g, const tc_gguf_family **fam, uint8_t **drops,
                       int **layer_heads, tc_error *err)
{
    tc_config *c = &m->cfg;
    char *arch = NULL;
    memset(c, 0, sizeof *c);
    if (tc_gguf_get_str(g, "general.architecture", &arch, err))
        return TC_ERR;
    const tc_gguf_family *f = NULL;
    for (size_t i = 0; i < tc_gguf_n_families && !f; i++)
        if (strcmp(arch, tc_gguf_families[i].name) == 0)
            f = &tc_gguf_families[i]; /* the first row of a name: "llama" reads as llama */
    if (!f) {
        tc_err(err, "%s: unsupported architecture '%.64s' (tc reads llama, deci, qwen2, qwen3, gemma2, gemma3, "
               "phi3, bitnet and bitnet-b1.58)", g->path, arch);
        free(arch);
        return TC_ERR;
    }
    *fam = f;
    c->arch = f->arch;
    int deci = f->deci;
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
    /* deci layers may keep fewer heads: each is read into the counts that
     * every layer fits, kv_max key/value heads of the largest group size,
     * with zero weights for the heads it lacks (gguf_pad_heads). */
    int group_max = 0, own_heads = 0;
    for (int l = 0; deci && l < c->n_layers; l++) {
        if (heads[l] == 0 || kv[l] == 0 || (*drops)[l] == 2)
            continue;
        if (heads[l] % kv[l]) {
            tc_err(err, "%s: layer %d has %d heads, not a multiple of its %d key/value heads", g->path, l, heads[l],
                   kv[l]);
            goto done;
        }
        group_max = heads[l] / kv[l] > group_max ? heads[l] / kv[l] : group_max;
    }
    for (int l = 0; deci && group_max && l < c->n_layers; l++)
        own_heads |= heads[l] && kv[l] && (*drops)[l] != 2 && (heads[l] != kv_max * group_max || kv[l] != kv_max);
    if (own_heads) {
        *layer_heads = malloc(2 * (size_t)c->n_layers * sizeof **layer_heads);
        if (!*layer_heads) {
            tc_err(err, "%s: out of memory", g->path);
            goto done;
        }
        memcpy(*layer_heads, heads, (size_t)c->n_layers * sizeof *heads);
        memcpy(*layer_heads + c->n_layers, kv, (size_t)c->n_layers * sizeof *kv);
        c->n_kv_heads = kv_max;
        c->n_heads = kv_max * group_max;
    }
    for (int l = 0; l < c->n_layers; l++) {
        /* tc models share one head count; a sub-layer with 0 heads or 0 width is dropped. */
        int stub = (*drops)[c->n_layers + l] == 2;
        if ((!own_heads && ((heads[l] && heads[l] != heads_max) || (kv[l] && kv[l] != kv_max))) ||
            (ffn[l] && ffn[l] != ffn_max && !stub)) {
            tc_err(err, "%s: layer %d has its own head count or width; tc needs them equal across layers",
                   g->path, l);
            goto done;
        }
        if ((*drops)[l] != 2)
            (*drops)[l] = heads[l] == 0;
        if (!stub)
            (*drops)[c->n_layers + l] = ffn[l] == 0;
        if (!deci && ((*drops)[l] || (*drops)[c->n_layers + l])) {
            tc_err(err, "%s: layer %d has no attention heads or no MLP width; only deci files drop sub-layers",
                   g->path, l);
            goto done;
        }
    }
    if (c->n_heads <= 0) {
        tc_err(err, "%s: no layer has attention heads", g->path);
        goto done;
    }
    /* llama.cpp's default head size divides by layer 0's head count. */
    if (gguf_u32_arch(g, arch, "attention.key_length", 0, (uint32_t)(c->dim / (heads[0] > 0 ? heads[0] : c->n_heads)),
                      &c->head_dim, err))
        goto done;
    int vlen = 0;
    if (gguf_u32_arch(g, arch, "attention.value_length", 0, (uint32_t)c->head_dim, &vlen, err))
        goto done;
    if (vlen != c->head_dim) {
        tc_err(err, "%s: metadata key '%s.attention.value_length' (%d) differs from the key length %d, which tc "
               "does not implement", g->path, arch, vlen, c->head_dim);
        goto done;
    }
    char k2[128];
    gguf_key(k2, sizeof k2, arch, "attention.layer_norm_rms_epsilon");
    c->norm_eps = 1e-5f;
    if (tc_gguf_find(g, k2) && tc_gguf_get_f32(g, k2, &c->norm_eps, err))
        goto done;
    if (gguf_refuse_keys(g, arch, f, err) || gguf_rope(g, arch, f, c, err))
        goto done;
    if (f->gemma && gguf_gemma(g, arch, f, c, err))
        goto done;
    c->t.qk_norm = f->qk_norm;
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
    c->rope_layout = f->layout;
    /* Biases are optional in llama.cpp's llama (q/k/v/o, MLP) and qwen2 (q/k/v): taken from the file. */
    c->qkv_bias = tc_tensordir_find(&g->dir, "blk.0.attn_q.bias") != NULL;
    c->t.o_bias = tc_tensordir_find(&g->dir, "blk.0.attn_output.bias") != NULL;
    c->t.mlp_bias = tc_tensordir_find(&g->dir, "blk.0.ffn_down.bias") != NULL;
    if (f->qkv_bias == 2 && !deci) {
        /* The first layer may be the one without the tensor in no file llama.cpp writes;
         * any layer's bias decides. */
        char nb[64];
        for (int l = 0; l < c->n_layers && !c->qkv_bias; l++) {
            snprintf(nb, sizeof nb, "blk.%d.attn_q.bias", l);
            c->qkv_bias = tc_tensordir_find(&g->dir, nb) != NULL;
        }
    }
    c->tied_embeddings = tc_tensordir_find(&g->dir, "output.weight") == NULL;
    if (f->bitnet && gguf_bitnet(g, arch, c, err))
        goto done;
    uint32_t id;
    c->bos_id = c->eos_id = -1;
    if (tc_gguf_find(g, "tokenizer.ggml.bos_token_id") &&
        tc_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &id, NULL) == TC_OK)
        c->bos_id = (int)id;
    if (tc_gguf_find(g, "tokenizer.ggml.eos_token_id") &&
        tc_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &id, NULL) == TC_OK)
        c->eos_id = (int)id;
    rc = TC_OK;
done:
    free(per);
    free(arch);
    return rc;
}

/* llama.cpp refuses a file with tensors its graph does not use; so does tc:
 * every tensor must be bound to a role, be part of a fused one, a deci
 * stand-in, or a rope factor tensor the config consumed. */
static int gguf_check_bound(const tc_model *m, const tc_naming *nm, const uint8_t *drops, tc_error *err)
{
    const tc_tensordir *d = m->dir;
    uint8_t *used = calloc(d->n_tensors ? d->n_tensors : 1, 1);
    if (!used)
        return tc_err(err, "%s: out of memory", m->path);
#define MARK(t)                                                                                \
    do {                                                                                       \
        const tc_tensor *mk_ = (t);                                                            \
        if (mk_ && mk_ >= d->tensors && mk_ < d->tensors + d->n_tensors)                       \
            used[mk_ - d->tensors] = 1;                                                        \
    } while (0)
    MARK(m->tok_embd);
    MARK(m->out_norm);
    MARK(m->output);
    const tc_rope *r = &m->cfg.t.rope[0];
    if (r->kind == TC_ROPE_LONGROPE) {
        MARK(tc_tensordir_find(d, "rope_freqs.weight"));
        MARK(tc_tensordir_find(d, "rope_factors_long.weight"));
        MARK(tc_tensordir_find(d, "rope_factors_short.weight"));
    }
    char name[160];
    int n = m->cfg.n_layers;
    for (int l = 0; l < n; l++) {
        for (int k = 0; k < TC_N_ROLES; k++) {
            const tc_tensor *t = m->layers[l].w[k];
            if (t && (t < d->tensors || t >= d->tensors + d->n_tensors)) {
                /* A row range of a fused tensor: "<fused name>#part". */
                const char *hash = strrchr(t->name, '#');
                if (hash && (size_t)(hash - t->name) < sizeof name) {
                    memcpy(name, t->name, (size_t)(hash - t->name));
                    name[hash - t->name] = '\0';
                    MARK(tc_tensordir_find(d, name));
                }
            } else {
                MARK(t);
            }
            MARK(m->layers[l].scale[k]);
            /* deci stand-ins of dropped sub-layers are consumed by being recognised. */
            int stand_in = tc_role_is_attn(k) ? drops && drops[l] == 2 : drops && drops[n + l] == 2;
            if (stand_in) {
                tc_naming_format(nm, (tc_role)k, l, name, sizeof name);
                if (name[0])
                    MARK(tc_tensordir_find(d, name));
            }
        }
    }
#undef MARK
    int rc = TC_OK;
    for (size_t i = 0; i < d->n_tensors; i++) {
        if (!used[i]) {
            rc = tc_err(err, "%s: tensor '%s' is not part of a %s model as llama.cpp builds it (tc would ignore "
                        "it)", m->path, d->tensors[i].name, tc_arch_name(m->cfg.arch));
            break;
        }
    }
    free(used);
    return rc;
}

/* A head's place in the model's counts: kv head j of a layer keeping
 * `group` query heads per kv head sits at kv head j, its query heads at the
 * start of group j of the model's group size. */
static int padded_head(const tc_config *c, int group, int h)
{
    return h / group * (c->n_heads / c->n_kv_heads) + h % group;
}

/* Layers of a deci file that keep fewer heads than the model's counts are
 * read as layers with every head, the missing ones zero: a zero query head
 * attends uniformly and its zero output columns add exactly nothing, a zero
 * kv head serves only zero query heads.  The layer's q/k/v weights and
 * biases and output projection are converted to fp32 in the model's shape
 * and take the place of the file's in the directory (the memory of those
 * layers' attention in fp32). */
static int gguf_pad_heads(tc_model *m, tc_gguf *g, const tc_naming *nm, const int *layer_heads, const uint8_t *drops,
                          tc_error *err)
{
    const tc_config *c = &m->cfg;
    const int *heads = layer_heads, *kv = layer_heads + c->n_layers;
    int64_t hd = c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        if (!heads[l] || !kv[l] || drops[l] == 2 || (heads[l] == c->n_heads && kv[l] == c->n_kv_heads))
            continue;
        int group = heads[l] / kv[l];
        for (int r = TC_WQ; r <= TC_BV; r++) {
            char name[160];
            tc_naming_format(nm, (tc_role)r, l, name, sizeof name);
            const tc_tensor *ct = name[0] ? tc_tensordir_find(&g->dir, name) : NULL;
            if (!ct)
                continue;
            tc_tensor *t = &g->dir.tensors[ct - g->dir.tensors];
            int q = r == TC_WQ || r == TC_BQ || r == TC_WO, cols = r == TC_WO;
            int have = q ? heads[l] : kv[l], want = q ? c->n_heads : c->n_kv_heads;
            int64_t other = cols ? c->dim : t->n_dims == 2 ? t->shape[1] : 1;
            int64_t shape[2] = {cols ? c->dim : (int64_t)want * hd, cols ? (int64_t)want * hd : other};
            if ((int64_t)t->n_elements != (int64_t)have * hd * other)
                return tc_err(err, "%s: tensor '%s' does not hold layer %d's %d heads", m->path, name, l, have);
            float *src = NULL, *dst = calloc((size_t)(shape[0] * shape[1]), sizeof *dst);
            if (!dst)
                return tc_err(err, "%s: out of memory for layer %d's attention", m->path, l);
            if (tc_tensordir_adopt_buffer(&g->dir, dst, err)) {
                free(dst);
                return TC_ERR;
            }
            if (tc_tensor_load_f32(t, &src, err))
                return TC_ERR;
            for (int h = 0; h < have; h++) {
                int to = q ? padded_head(c, group, h) : h;
                if (cols)
                    for (int64_t row = 0; row < c->dim; row++)
                        memcpy(dst + row * (int64_t)want * hd + to * hd, src + row * (int64_t)have * hd + h * hd,
                               (size_t)hd * sizeof *dst);
                else
                    memcpy(dst + to * hd * other, src + h * hd * other, (size_t)(hd * other) * sizeof *dst);
            }
            free(src);
            t->dtype = TC_F32;
            t->n_dims = t->n_dims == 2 ? 2 : 1;
            t->shape[0] = shape[0];
            if (t->n_dims == 2)
                t->shape[1] = shape[1];
            t->n_elements = (uint64_t)(shape[0] * shape[1]);
            t->data = (const uint8_t *)dst;
            t->nbytes = t->n_elements * sizeof(float);
            t->mapped = 0;
        }
    }
    return TC_OK;
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
    int *layer_heads = NULL;
    const tc_gguf_family *f = NULL;
    int rc = gguf_config(m, g, &f, &drops, &layer_heads, err);
    const tc_naming *nm = tc_naming_for(TC_FORMAT_GGUF, m->cfg.arch);
    if (rc == TC_OK && layer_heads)
        rc = gguf_pad_heads(m, g, nm, layer_heads, drops, err);
    if (rc == TC_OK && layer_heads) {
        m->layer_heads = layer_heads; /* the model owns it now */
        layer_heads = NULL;
    }
    if (rc == TC_OK)
        rc = tc_model_bind(m, nm, drops, drops + m->cfg.n_layers, err);
    if (rc == TC_OK)
        rc = gguf_check_bound(m, nm, drops, err);
    free(drops);
    free(layer_heads);
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
        int packed = f.size >= 8 && memcmp(f.data, TC_TMODEL_MAGIC, 8) == 0;
        tc_mapfile_close(&f);
        if (packed)
            rc = tc_err(err, "%s is a packed ternary model (.tcq): tc-run runs it and --info describes it, but "
                        "this needs a Hugging Face, GGUF or llama2.c checkpoint", path);
        else
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
