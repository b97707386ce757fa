/* GGUF bitnet files as other writers store them, and what tc refuses in them.
 *
 * bitnet12 is written as GGUF bitnet (TQ2_0, d = 1, scales in `.scale`
 * tensors: tc's own convention) and then rewritten tensor by tensor as:
 *   - llama.cpp's converter stores a BitNet model (convert_hf_to_gguf.py's
 *     weight_quant): F32 values code x scale, no `.scale` tensors;
 *   - llama-quantize's TQ2_0 of that: every block's d the scale (as f16), no
 *     `.scale`;
 *   - the TQ2_0 blocks with d = 2 and a `.scale` of scale / 2 (the product
 *     is the weight), and bitnet.cpp's architecture name bitnet-b1.58;
 * each read back with every linear's codes the checkpoint's and its scale
 * the multiplier the file states (f16(scale) for the quantized one), and the
 * same greedy continuation as the checkpoint; the quantized one written as
 * HF keeps its codes, its scales as F32 weight_scales in an F32 model.  Refused by name: one block of
 * a tensor with another d, an F32 tensor holding a third magnitude, an
 * output.weight (llama.cpp's bitnet graph never reads it), a bias,
 * bitnet.hidden_activation = gelu, an I2_S byte holding the 2-bit value 3. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "tc/forward.h"
#include "tc/ggml_ternary.h"
#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/model_write.h"

static char g_tmp[1024];

typedef enum variant {
    V_F32,        /* code x scale in F32, no .scale */
    V_TQ2_D,      /* TQ2_0 with d = f16(scale), no .scale */
    V_TQ2_SPLIT,  /* TQ2_0 with d = 2, .scale = scale / 2, arch bitnet-b1.58 */
    V_BAD_BLOCK,  /* V_TQ2_D with one block's d doubled */
    V_BAD_VALUES, /* V_F32 with one value 3 x scale */
    V_OUTPUT,     /* an output.weight added */
    V_BIAS,       /* blk.0.attn_q.bias added */
    V_GELU,       /* bitnet.hidden_activation = gelu */
    V_I2S_THREE,  /* blk.0.attn_q.weight as I2_S with one 2-bit value 3 */
    V_COUNT
} variant;

static const char *const VNAMES[V_COUNT] = {
    "F32 code x scale", "TQ2_0, d = scale", "TQ2_0, d = 2, .scale", "a block of another d", "a third magnitude",
    "output.weight", "a bias", "hidden_activation gelu", "an I2_S value 3",
};

/* What a refused variant's message must name. */
static const char *const WHY[V_COUNT] = {
    NULL, NULL, NULL, "blocks of different scales", "no ternary codes with one scale", "output.weight",
    "attn_q.bias", "hidden_activation", "value 3",
};

typedef struct rewrite {
    const tc_model *m; /* the base model */
    variant v;
} rewrite;

typedef struct item {
    const rewrite *rw;
    const tc_tensor *src; /* copied as it is when role < 0 */
    int layer, role;
    int scale;            /* the .scale tensor of (layer, role) */
} item;

static const tc_role LIN[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};

static int fill(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const item *it = ctx;
    const rewrite *rw = it->rw;
    if (it->role < 0) {
        if (it->src)
            memcpy(dst, it->src->data, (size_t)it->src->nbytes);
        else
            memset(dst, 0, (size_t)(t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1) * 4)); /* F32 zeros */
        return TC_OK;
    }
    int64_t shape[2];
    tc_role_shape(&rw->m->cfg, (tc_role)it->role, shape);
    size_t rows = (size_t)shape[0], cols = (size_t)shape[1], n = rows * cols;
    int8_t *c = malloc(n);
    float s;
    int divides;
    if (tc_model_ternary_role_as(rw->m, it->layer, (tc_role)it->role, c, &s, &divides, err)) {
        free(c);
        return TC_ERR;
    }
    int rc = TC_OK;
    if (it->scale) {
        float half = s / 2;
        memcpy(dst, &half, sizeof half);
    } else if (t->dtype == TC_F32) {
        float *o = dst;
        for (size_t i = 0; i < n; i++)
            o[i] = (float)c[i] * s;
        if (rw->v == V_BAD_VALUES && it->layer == 1)
            o[7] = 3 * s;
    } else if (t->dtype == TC_I2_S) {
        rc = tc_i2s_encode(c, n, s, dst, err);
        ((uint8_t *)dst)[5] |= 0xC0; /* weight 5's two bits: 3 */
    } else {
        float d[64];
        uint64_t rb;
        tc_ggml_ternary_row_bytes(TC_TQ2_0, (int64_t)cols, &rb, err);
        for (size_t b = 0; b < cols / 256; b++)
            d[b] = rw->v == V_TQ2_SPLIT ? 2.0f : s;
        for (size_t i = 0; rc == TC_OK && i < rows; i++) {
            if (rw->v == V_BAD_BLOCK && it->layer == 2 && i == 3)
                d[0] *= 2;
            rc = tc_ggml_ternary_encode(TC_TQ2_0, c + i * cols, d, (int64_t)cols, (uint8_t *)dst + i * rb, err);
        }
    }
    free(c);
    return rc;
}

static int is_linear_weight(const tc_model *m, const tc_tensor *t, int *layer, int *role)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t i = 0; i < sizeof LIN / sizeof LIN[0]; i++)
            if (m->layers[l].w[LIN[i]] == t) {
                *layer = l;
                *role = LIN[i];
                return 1;
            }
    return 0;
}

/* Writes the base file's variant v to path. */
static int write_variant(const tc_model *m, variant v, const char *path, tc_error *err)
{
    const tc_gguf *g = tc_model_gguf(m);
    const tc_tensordir *d = m->dir;
    size_t cap = d->n_tensors + 4, n = 0;
    tc_out_tensor *t = calloc(cap, sizeof *t);
    item *it = calloc(cap, sizeof *it);
    rewrite rw = {m, v};
    char (*names)[96] = calloc(cap, sizeof *names);
    /* OUTPUT, BIAS and GELU copy every tensor as it is and add to it. */
    int copy = v == V_OUTPUT || v == V_BIAS || v == V_GELU, f32 = v == V_F32 || v == V_BAD_VALUES;
    for (size_t i = 0; i < d->n_tensors; i++) {
        const tc_tensor *s = &d->tensors[i];
        size_t len = strlen(s->name);
        int is_scale = len > 6 && strcmp(s->name + len - 6, ".scale") == 0;
        int layer = -1, role = -1;
        int lin = is_linear_weight(m, s, &layer, &role);
        if (is_scale && !copy && v != V_TQ2_SPLIT)
            continue; /* the other conventions keep the scale in the blocks or the values */
        it[n] = (item){&rw, s, -1, -1, 0};
        t[n] = (tc_out_tensor){.name = s->name, .dtype = s->dtype, .n_dims = s->n_dims, .fill = fill, .ctx = &it[n]};
        for (int k = 0; k < s->n_dims; k++)
            t[n].shape[k] = s->shape[k];
        if (is_scale && !copy) {
            /* blk.N.<proj>.scale belongs to blk.N.<proj>.weight */
            snprintf(names[n], sizeof names[n], "%.*s.weight", (int)(len - 6), s->name);
            is_linear_weight(m, tc_tensordir_find(d, names[n]), &it[n].layer, &it[n].role);
            it[n].scale = 1;
        } else if (lin && !copy) {
            it[n].layer = layer;
            it[n].role = role;
            if (f32)
                t[n].dtype = TC_F32;
            else if (v == V_I2S_THREE && layer == 0 && role == TC_WQ)
                t[n].dtype = TC_I2_S;
        }
        n++;
    }
    if (v == V_OUTPUT || v == V_BIAS) {
        it[n] = (item){&rw, NULL, -1, -1, 0};
        t[n] = v == V_OUTPUT ? (tc_out_tensor){.name = "output.weight", .dtype = TC_F32, .n_dims = 2,
                                               .shape = {m->cfg.vocab_size, m->cfg.dim}, .fill = fill, .ctx = &it[n]}
                             : (tc_out_tensor){.name = "blk.0.attn_q.bias", .dtype = TC_F32, .n_dims = 1,
                                               .shape = {m->cfg.dim}, .fill = fill, .ctx = &it[n]};
        n++;
    }
    /* Metadata: every key copied (NUL-terminated), the architecture renamed
     * for bitnet-b1.58, hidden_activation (relu2, bitnet12's) made gelu. */
    tc_gguf_writer_kv *kv = calloc(g->n_kv + 2, sizeof *kv);
    char **keys = calloc(g->n_kv + 2, sizeof *keys);
    size_t k = 0;
    const char *arch = v == V_TQ2_SPLIT ? "bitnet-b1.58" : "bitnet";
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const tc_gguf_kv *src = &g->kvs[i];
        char *key = malloc(src->key.len + 32);
        memcpy(key, src->key.ptr, src->key.len);
        key[src->key.len] = '\0';
        if (strncmp(key, "bitnet.", 7) == 0) {
            char rest[256];
            snprintf(rest, sizeof rest, "%s", key + 7);
            snprintf(key, src->key.len + 32, "%s.%s", arch, rest);
        }
        keys[k] = key;
        kv[k].key = key;
        kv[k].value = src->value;
        if (v == V_GELU && strcmp(key, "bitnet.hidden_activation") == 0) {
            kv[k].value.v.s.ptr = "gelu";
            kv[k].value.v.s.len = 4;
        }
        if (strcmp(key, "general.architecture") == 0) {
            kv[k].value.v.s.ptr = arch;
            kv[k].value.v.s.len = strlen(arch);
        }
        if (strcmp(key, "general.alignment") != 0)
            k++;
        else
            free(key);
    }
    int rc = tc_gguf_write(path, kv, k, t, n, 32, err);
    for (size_t i = 0; i < k; i++)
        if (keys[i])
            free(keys[i]);
    free(keys);
    free(kv);
    free(names);
    free(t);
    free(it);
    return rc;
}

static int greedy(const tc_model *m, int32_t *out, int n)
{
    tc_error err = {{0}};
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = n + 1};
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof *lg);
    int rc = tc_decoder_new(&d, m, &o, &err), tok = 1;
    for (int i = 0; rc == TC_OK && i < n; i++) {
        rc = tc_decoder_step(d, tok, lg, &err);
        int b = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            b = lg[v] > lg[b] ? v : b;
        out[i] = tok = b;
    }
    free(lg);
    tc_decoder_free(d);
    return rc;
}

int main(void)
{
    char dir[1024];
    if (!tu_asset(dir, sizeof dir, "models/bitnet12"))
        return tu_skip("models/bitnet12 is not in the assets");
    if (!tu_tmpdir(g_tmp, sizeof g_tmp))
        return tu_skip("no scratch directory");
    tc_error err = {{0}};
    tc_model hf, base;
    char base_path[1200];
    snprintf(base_path, sizeof base_path, "%s/base.gguf", g_tmp);
    CHECK_OK(tc_model_open(&hf, dir, &err), &err);
    if (err.msg[0])
        return 1;
    CHECK_OK(tc_model_write_ternary(&hf, base_path, TC_FORMAT_GGUF, TC_TQ2_0, NULL, NULL, &err), &err);
    CHECK_OK(tc_model_open(&base, base_path, &err), &err);
    if (err.msg[0])
        return 1;
    enum { N = 24 };
    int32_t want[N], got[N];
    CHECK_OK(greedy(&hf, want, N), &err);
    for (int v = 0; v < V_COUNT; v++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/v%d.gguf", g_tmp, v);
        tc_error e = {{0}};
        CHECK_OK(write_variant(&base, (variant)v, path, &e), &e);
        tc_model m;
        int rc = tc_model_open(&m, path, &e);
        if (WHY[v]) {
            /* Codes are read when used: every linear is read until one fails. */
            for (int l = 0; rc == TC_OK && l < m.cfg.n_layers; l++)
                for (size_t i = 0; rc == TC_OK && i < sizeof LIN / sizeof LIN[0]; i++) {
                    int8_t *c = malloc((size_t)tc_model_role_params(&m, l, LIN[i]));
                    float sc;
                    int dv;
                    rc = tc_model_ternary_role_as(&m, l, LIN[i], c, &sc, &dv, &e);
                    free(c);
                }
            if (m.layers)
                tc_model_close(&m);
            printf("%-24s refused: %s\n", VNAMES[v], rc ? e.msg : "(read)");
            CHECK_MSG(rc == TC_ERR && strstr(e.msg, WHY[v]), "%s: '%s' does not name '%s'", VNAMES[v], e.msg, WHY[v]);
            continue;
        }
        CHECK_OK(rc, &e);
        if (rc)
            continue;
        int bad = 0, n = 0;
        for (int l = 0; l < m.cfg.n_layers; l++)
            for (size_t i = 0; i < sizeof LIN / sizeof LIN[0]; i++) {
                size_t k = (size_t)tc_model_role_params(&hf, l, LIN[i]);
                int8_t *a = malloc(k), *b = malloc(k);
                float sa, sb;
                int da, db;
                int ok = tc_model_ternary_role_as(&hf, l, LIN[i], a, &sa, &da, &e) == TC_OK &&
                         tc_model_ternary_role_as(&m, l, LIN[i], b, &sb, &db, &e) == TC_OK;
                /* the multiplier the file states: the blocks' d (f16) times .scale */
                float mul = 1.0f / sa;
                int cols_whole = m.layers[l].w[LIN[i]]->dtype == TC_TQ2_0;
                float expect = v == V_TQ2_D && cols_whole   ? tc_f16_to_f32(tc_f32_to_f16(mul))
                               : v == V_TQ2_SPLIT && cols_whole ? 2.0f * (mul / 2)
                                                            : mul;
                bad += !ok || memcmp(a, b, k) != 0 || da != 1 || db != 0 || sb != expect;
                n++;
                free(a);
                free(b);
            }
        CHECK_OK(greedy(&m, got, N), &e);
        int same = memcmp(want, got, sizeof want) == 0;
        printf("%-24s read: %d of %d linears differ from the checkpoint's codes or the file's scale; greedy %s\n",
               VNAMES[v], bad, n, same ? "the checkpoint's" : "differs");
        CHECK_MSG(bad == 0 && same, "%s: %d linears differ, greedy %s", VNAMES[v], bad, same ? "same" : "differs");
        if (v == V_TQ2_D) {
            /* Written as HF: its f16 scales are no BF16 values, so the weight_scales are F32,
             * and so is the model, since transformers casts them to the config's dtype. */
            char hfdir[1200];
            snprintf(hfdir, sizeof hfdir, "%s/v%d-hf", g_tmp, v);
            CHECK_OK(tc_model_write_ternary(&m, hfdir, TC_FORMAT_HF, TC_TQ2_0, NULL, NULL, &e), &e);
            tc_model h;
            if (tc_model_open(&h, hfdir, &e) == TC_OK) {
                int8_t *a = malloc((size_t)(m.cfg.dim * m.cfg.dim)), *b = malloc((size_t)(m.cfg.dim * m.cfg.dim));
                float sa, sb;
                int da, db;
                CHECK_OK(tc_model_ternary_role_as(&m, 0, TC_WQ, a, &sa, &da, &e), &e);
                CHECK_OK(tc_model_ternary_role_as(&h, 0, TC_WQ, b, &sb, &db, &e), &e);
                printf("%-24s as HF: weight_scale %s, model %s, codes %s\n", VNAMES[v],
                       tc_dtype_name(h.layers[0].scale[TC_WQ]->dtype), tc_dtype_name(h.tok_embd->dtype),
                       memcmp(a, b, (size_t)(m.cfg.dim * m.cfg.dim)) ? "differ" : "equal");
                CHECK(h.layers[0].scale[TC_WQ]->dtype == TC_F32 && h.tok_embd->dtype == TC_F32 && db && !da &&
                      memcmp(a, b, (size_t)(m.cfg.dim * m.cfg.dim)) == 0 && sb == 1.0f / sa);
                free(a);
                free(b);
                tc_model_close(&h);
            } else {
                CHECK_OK(TC_ERR, &e);
            }
        }
        if (v == V_TQ2_SPLIT) {
            char *arch = NULL;
            tc_gguf_get_str(tc_model_gguf(&m), "general.architecture", &arch, &e);
            CHECK(arch && strcmp(arch, "bitnet-b1.58") == 0 && m.cfg.t.act == TC_ACT_RELU2);
            free(arch);
        }
        tc_model_close(&m);
    }
    tc_model_close(&base);
    tc_model_close(&hf);
    char rm[1100];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_tmp);
    CHECK(system(rm) == 0);
    printf("%d checks, %d failures\n", tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}
