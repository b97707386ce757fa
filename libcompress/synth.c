#include "tc/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tc/checked.h"
#include "tc/tokenizer.h"
#include "tc/vocab.h"

tc_config tc_synth_config(int n_layers, int dim, int n_heads, int n_kv_heads, int ffn_dim, int vocab)
{
    tc_config c = {
        .arch = TC_ARCH_LLAMA, .n_layers = n_layers, .dim = dim, .n_heads = n_heads,
        .n_kv_heads = n_kv_heads, .head_dim = dim / n_heads, .ffn_dim = ffn_dim, .vocab_size = vocab,
        .max_seq_len = 512, .norm_eps = 1e-5f, .rope_layout = TC_ROPE_HALF,
        .tied_embeddings = 1, .qkv_bias = 0, .bos_id = 1, .eos_id = 2,
    };
    tc_traits_llama(&c.t, 10000.0, n_heads > 0 ? dim / n_heads : 0);
    return c;
}

int tc_synth_family(tc_config *c, const char *family, int window, tc_error *err)
{
    static const struct {
        const char *name;
        tc_arch arch;
        int qkv_bias, qk_norm, gemma, window, pattern, bitnet;
    } rows[] = {
        {"llama", TC_ARCH_LLAMA, 0, 0, 0, 0, 0, 0},      {"mistral", TC_ARCH_MISTRAL, 0, 0, 0, 4096, 1, 0},
        {"qwen2", TC_ARCH_QWEN2, 1, 0, 0, 0, 0, 0},      {"qwen3", TC_ARCH_QWEN3, 0, 1, 0, 0, 0, 0},
        {"gemma2", TC_ARCH_GEMMA2, 0, 0, 2, 4096, 2, 0}, {"gemma3", TC_ARCH_GEMMA3, 0, 1, 3, 4096, 6, 0},
        {"phi3", TC_ARCH_PHI3, 0, 0, 0, 0, 0, 0},        {"diffllama", TC_ARCH_DIFFLLAMA, 0, 0, 0, 0, 0, 0},
        {"bitnet", TC_ARCH_BITNET, 0, 0, 0, 0, 0, 1},
    };
    size_t i = 0;
    while (i < sizeof rows / sizeof rows[0] && strcmp(rows[i].name, family) != 0)
        i++;
    if (i == sizeof rows / sizeof rows[0])
        return tc_err(err, "unknown family '%.40s' (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, diffllama, "
                      "bitnet)", family);
    tc_traits *t = &c->t;
    double theta = t->rope[0].theta;
    tc_traits_llama(t, theta, c->head_dim);
    c->arch = rows[i].arch;
    c->qkv_bias = rows[i].qkv_bias;
    t->qk_norm = rows[i].qk_norm;
    t->diff_attn = rows[i].arch == TC_ARCH_DIFFLLAMA;
    t->window = rows[i].window ? (window > 0 ? window : rows[i].window) : 0;
    for (int l = 0; t->window && l < c->n_layers && l < TC_MAX_LAYERS; l++)
        t->local[l] = rows[i].pattern == 1 || (l + 1) % rows[i].pattern != 0;
    if (rows[i].bitnet) { /* BitNet b1.58 2B4T's: relu2, sub-norms, theta 500000, tied; plain linears */
        tc_traits_llama(t, 500000.0, c->head_dim);
        t->act = TC_ACT_RELU2;
        t->sub_norms = 1;
        c->tied_embeddings = 1;
    }
    if (rows[i].gemma) {
        t->norm = TC_NORM_RMS_1P;
        t->act = TC_ACT_GELU_TANH;
        t->post_norms = 1;
        t->embed_scale = (float)sqrt((double)c->dim);
        t->attn_softcap = rows[i].gemma == 2 ? 50.0f : 0.0f;
        t->final_softcap = rows[i].gemma == 2 ? 30.0f : 0.0f;
        c->tied_embeddings = 1;
        if (rows[i].gemma == 3) {
            t->rope[0].theta = 1000000.0;
            t->rope[1] = tc_rope_default(10000.0, c->head_dim);
        }
    }
    return TC_OK;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float uniform(uint64_t *s)
{
    return (float)((double)(splitmix64(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static int fan_in(const tc_config *c, int layer, int which)
{
    if (layer < 0)
        return c->dim;
    return which == TC_WO ? c->n_heads * c->head_dim : which == TC_W_DOWN ? c->ffn_dim : c->dim;
}

/* ---- Planted attention structure (synth.h says how sinks are built) ---- */

#define SINK_GAIN 64.0f /* query and key weights of a sink head (synth.h) */

static int listed(const int *ids, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static int is_sink(const tc_synth_spec *s, int layer, int head)
{
    return (s->sink_layers && s->sink_layers[layer]) ||
           listed(s->sink_heads, s->n_sink_heads, layer * s->cfg.n_heads + head);
}

static int any_sinks(const tc_synth_spec *s)
{
    for (int l = 0; s->sink_layers && l < s->cfg.n_layers; l++)
        if (s->sink_layers[l])
            return 1;
    return s->n_sink_heads > 0;
}

/* The head component a sink uses: an unrotated one when the rope leaves
 * some, else the first of the slowest-rotating pair (rotate-half order). */
static int sink_component(const tc_config *c, int layer)
{
    int rot = tc_layer_rope(c, layer)->rot_dims;
    return rot < c->head_dim ? c->head_dim - 1 : c->head_dim / 2 - 1;
}

int tc_synth_check(const tc_synth_spec *s, tc_error *err)
{
    const tc_config *c = &s->cfg;
    int total = c->n_layers * c->n_heads;
    for (int i = 0; i < s->n_zero_heads; i++)
        if (s->zero_heads[i] < 0 || s->zero_heads[i] >= total)
            return tc_err(err, "planted head %d is outside the model's %d layers x %d heads", s->zero_heads[i],
                          c->n_layers, c->n_heads);
    for (int i = 0; i < s->n_sink_heads; i++)
        if (s->sink_heads[i] < 0 || s->sink_heads[i] >= total)
            return tc_err(err, "planted head %d is outside the model's %d layers x %d heads", s->sink_heads[i],
                          c->n_layers, c->n_heads);
    if (!any_sinks(s))
        return TC_OK;
    if (c->bos_id < 0 || c->bos_id >= c->vocab_size)
        return tc_err(err, "sink heads attend to BOS, but the model's BOS id %d is not a token", c->bos_id);
    if (c->t.qk_norm)
        return tc_err(err, "sink heads are not planted in models with q/k norms (the norms undo their scale)");
    if (c->dim < 2)
        return tc_err(err, "sink heads need a hidden size of at least 2");
    return TC_OK;
}

/* Applies the plants to a freshly generated tensor. */
static void plant(const tc_synth_spec *s, int layer, int which, float *dst, uint64_t n)
{
    const tc_config *c = &s->cfg;
    int hd = c->head_dim, nh = c->n_heads, group = c->n_kv_heads > 0 ? nh / c->n_kv_heads : 1;
    int sinks = any_sinks(s);
    if (layer < 0) {
        /* Dimension 1 constant, dimension 0 the BOS flag. */
        if (sinks && which == TC_G_EMBD && n == (uint64_t)c->vocab_size * (uint64_t)c->dim)
            for (int v = 0; v < c->vocab_size; v++) {
                dst[(size_t)v * c->dim] = v == c->bos_id ? 1.0f : 0.0f;
                dst[(size_t)v * c->dim + 1] = 1.0f;
            }
        return;
    }
    if (which == TC_WO && n == (uint64_t)c->dim * (uint64_t)(nh * hd)) {
        for (int h = 0; h < nh; h++)
            if (listed(s->zero_heads, s->n_zero_heads, layer * nh + h))
                for (int r = 0; r < c->dim; r++)
                    memset(dst + (size_t)r * nh * hd + (size_t)h * hd, 0, (size_t)hd * sizeof *dst);
    }
    if (!sinks)
        return;
    /* Nothing writes dimensions 0 and 1 of the residual stream. */
    if ((which == TC_WO || which == TC_W_DOWN) && n % (uint64_t)c->dim == 0) {
        uint64_t cols = n / (uint64_t)c->dim;
        memset(dst, 0, 2 * (size_t)cols * sizeof *dst);
    }
    int a = sink_component(c, layer);
    if (which == TC_WK && n == (uint64_t)c->n_kv_heads * hd * (uint64_t)c->dim) {
        for (int k = 0; k < c->n_kv_heads; k++) {
            int planted = 0;
            for (int h = k * group; h < (k + 1) * group; h++)
                planted |= is_sink(s, layer, h);
            if (!planted)
                continue;
            float *rows = dst + (size_t)k * hd * c->dim;
            memset(rows, 0, (size_t)hd * c->dim * sizeof *rows);
            rows[(size_t)a * c->dim + 0] = SINK_GAIN;
        }
    }
    if (which == TC_WQ && n == (uint64_t)nh * hd * (uint64_t)c->dim) {
        for (int k = 0; k < c->n_kv_heads; k++) {
            int planted = 0;
            for (int h = k * group; h < (k + 1) * group; h++)
                planted |= is_sink(s, layer, h);
            for (int h = k * group; planted && h < (k + 1) * group; h++) {
                float *row = dst + ((size_t)h * hd + (size_t)a) * c->dim;
                memset(row, 0, (size_t)c->dim * sizeof *row);
                if (is_sink(s, layer, h))
                    row[1] = SINK_GAIN;
            }
        }
    }
}

int tc_synth_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    const tc_synth_spec *s = ctx;
    const tc_config *c = &s->cfg;
    uint64_t state = s->seed * 0x100000001b3ull + (uint64_t)(layer + 1) * 131 + (uint64_t)which;
    splitmix64(&state);
    int is_norm = layer >= 0 ? (which == TC_ATTN_NORM || which == TC_FFN_NORM || which == TC_Q_NORM ||
                                which == TC_K_NORM || which == TC_POST_ATTN_NORM || which == TC_POST_FFN_NORM ||
                                which == TC_ATTN_SUB_NORM || which == TC_FFN_SUB_NORM)
                             : which == TC_G_OUT_NORM;
    int is_bias = layer >= 0 && !is_norm && !tc_role_is_linear(which);
    if (is_norm) {
        for (uint64_t i = 0; i < n; i++)
            dst[i] = 1.0f + 0.1f * uniform(&state);
        return TC_OK;
    }
    /* Uniform with variance 1/fan_in keeps activations at unit scale through
     * the layers; embeddings (tied to the output head) get variance 1/dim so
     * that logits of a normed state have unit scale rather than a near
     * one-hot softmax. */
    float a = sqrtf(3.0f / (float)fan_in(c, layer, which));
    if (is_bias)
        a = 0.1f;
    float scale = 1.0f;
    if (layer >= 0 && which == TC_WO && s->weak_attn && s->weak_attn[layer])
        scale = s->weak_scale;
    if (layer >= 0 && which == TC_W_DOWN && s->weak_mlp && s->weak_mlp[layer])
        scale = s->weak_scale;
    if (s->ternary && layer >= 0 && !is_bias) {
        /* Rows of {-g, 0, +g}: each weight zero with probability 1/3. */
        uint64_t cols = (uint64_t)fan_in(c, layer, which), rows = cols ? n / cols : 0;
        for (uint64_t r = 0; r < rows; r++) {
            float g = scale * a * (0.75f + 0.25f * uniform(&state));
            for (uint64_t k = 0; k < cols; k++) {
                uint64_t x = splitmix64(&state) % 3;
                dst[r * cols + k] = x == 0 ? 0.0f : x == 1 ? g : -g;
            }
        }
        plant(s, layer, which, dst, n);
        return TC_OK;
    }
    for (uint64_t i = 0; i < n; i++)
        dst[i] = scale * a * uniform(&state);
    plant(s, layer, which, dst, n);
    (void)err;
    return TC_OK;
}

/* Adds one fp32 tensor, generated, to an in-memory directory. */
static int add_tensor(tc_tensordir *d, const tc_synth_spec *s, const char *name, int layer, int which,
                      int n_dims, int64_t r, int64_t c, tc_error *err)
{
    uint64_t n = (uint64_t)r * (uint64_t)(n_dims == 2 ? c : 1), bytes;
    if (tc_mul_u64(n, 4, &bytes) || bytes > SIZE_MAX)
        return tc_err(err, "synthetic tensor '%s' is too large", name);
    float *buf = malloc(bytes ? (size_t)bytes : 1);
    if (!buf)
        return tc_err(err, "synthetic tensor '%s': out of memory", name);
    if (tc_synth_fill((void *)s, layer, which, buf, n, err) || tc_tensordir_adopt_buffer(d, buf, err))
        return TC_ERR;
    int64_t shape[2] = {r, c};
    return tc_tensordir_add(d, name, TC_F32, n_dims, shape, (const uint8_t *)buf, bytes, "(synthetic)", err);
}

int tc_synth_model(tc_model *m, const tc_synth_spec *s, tc_error *err)
{
    const tc_config *c = &s->cfg;
    if (tc_synth_check(s, err))
        return TC_ERR;
    tc_tensordir d;
    tc_tensordir_init(&d);
    int rc = add_tensor(&d, s, tc_naming_hf.tok_embd, -1, TC_G_EMBD, 2, c->vocab_size, c->dim, err);
    if (rc == TC_OK)
        rc = add_tensor(&d, s, tc_naming_hf.out_norm, -1, TC_G_OUT_NORM, 1, c->dim, 0, err);
    if (rc == TC_OK && !c->tied_embeddings)
        rc = add_tensor(&d, s, tc_naming_hf.output, -1, TC_G_OUTPUT, 2, c->vocab_size, c->dim, err);
    const tc_naming *nm = tc_naming_for(TC_FORMAT_MEMORY, c->arch);
    for (int l = 0; rc == TC_OK && l < c->n_layers; l++) {
        for (int r = 0; rc == TC_OK && r < TC_N_ROLES; r++) {
            if (!tc_role_needed(c, (tc_role)r))
                continue;
            char name[160];
            int64_t shape[2] = {0, 0};
            int nd = tc_role_shape(c, (tc_role)r, shape);
            tc_naming_format(nm, (tc_role)r, l, name, sizeof name);
            if (!name[0]) {
                rc = tc_err(err, "synthetic %s models with role %s are not implemented", tc_arch_name(c->arch),
                            tc_role_name((tc_role)r));
                break;
            }
            rc = add_tensor(&d, s, name, l, r, nd, shape[0], nd == 2 ? shape[1] : 0, err);
        }
    }
    if (rc != TC_OK) {
        tc_tensordir_free(&d);
        return TC_ERR;
    }
    tc_config cfg = *c;
    cfg.rope_layout = TC_ROPE_HALF; /* the memory model uses HF names and order */
    return tc_model_from_memory(m, &d, &cfg, err);
}

/* The tokenizer's vocabulary size, BOS and EOS into the config. */
static int synth_tokenizer(const tc_synth_spec *s, tc_config *c, tc_error *err)
{
    tc_tokenizer *t;
    if (tc_tokenizer_open(&t, s->tokenizer, err))
        return TC_ERR;
    int32_t n = tc_tokenizer_vocab_size(t);
    c->bos_id = tc_tokenizer_bos(t);
    c->eos_id = tc_tokenizer_eos(t);
    tc_tokenizer_free(t);
    if (c->vocab_size <= 0)
        c->vocab_size = n;
    if (n > c->vocab_size)
        return tc_err(err, "%s: the tokenizer has %ld tokens but the model only %d", s->tokenizer, (long)n,
                      c->vocab_size);
    return TC_OK;
}

/* A directory's files: path up to its last '/' (or "."). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    return d;
}

int tc_synth_write(const char *path, tc_format fmt, tc_dtype dtype, const tc_synth_spec *s, tc_error *err)
{
    if (tc_synth_check(s, err))
        return tc_err_prefix(err, "%s", path);
    tc_model_src src = {
        .cfg = s->cfg, .dtype = dtype, .fill = tc_synth_fill, .ctx = (void *)s, .name = "tc-synthetic",
    };
    if (!s->tokenizer)
        return tc_model_write(path, fmt, &src, err);
    if (fmt == TC_FORMAT_LLAMA2C)
        return tc_err(err, "%s: a llama2.c checkpoint holds no tokenizer (give it to the tools with --tokenizer)",
                      path);
    if (synth_tokenizer(s, &src.cfg, err))
        return TC_ERR;
    tc_synth_spec spec = *s;
    spec.cfg = src.cfg;
    src.ctx = &spec;
    tc_vocab v = {0};
    char *dir = NULL;
    int rc = TC_OK;
    if (fmt == TC_FORMAT_GGUF) {
        rc = tc_vocab_open(&v, s->tokenizer, src.cfg.vocab_size, err);
        src.vocab = &v;
    } else {
        /* A Hugging Face directory carries tokenizer.json and its companions
         * as files; another tokenizer is converted into them. */
        const char *base = strrchr(s->tokenizer, '/');
        base = base ? base + 1 : s->tokenizer;
        if (strcmp(base, "tokenizer.json") != 0) {
            rc = tc_vocab_open(&v, s->tokenizer, src.cfg.vocab_size, err);
            src.vocab = &v;
        } else if (!(dir = dir_of(s->tokenizer))) {
            rc = tc_err(err, "%s: out of memory", path);
        }
        src.hf_src_dir = dir;
    }
    if (rc == TC_OK)
        rc = tc_model_write(path, fmt, &src, err);
    tc_vocab_free(&v);
    free(dir);
    return rc;
}
