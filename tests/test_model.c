/* The model view over every format: the right figures for every model in the
 * assets, bit-identical weights across the llama2.c, GGUF and HF copies of
 * stories260K, the F16/BF16 copies within their rounding, lossless writers,
 * and clear errors for configs that are wrong. */
#include "testutil.h"

#include <limits.h>

#include <cjson/cJSON.h>

#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/synth.h"

typedef struct expect {
    const char *rel;
    tc_format format;
    int layers, dim, heads, kv, head_dim, ffn, vocab, tied;
    tc_rope_layout rope;
    uint64_t n_params;
} expect;

/* Figures from the assets' MANIFEST.md.  stories260K stores the classifier
 * separately in GGUF (48 tensors) and shares it elsewhere. */
static const expect models[] = {
    {"models/stories260K/stories260K.bin", TC_FORMAT_LLAMA2C, 5, 64, 8, 4, 8, 172, 512, 1, TC_ROPE_ADJACENT, 260032},
    {"models/stories260K/stories260K.gguf", TC_FORMAT_GGUF, 5, 64, 8, 4, 8, 172, 512, 0, TC_ROPE_ADJACENT, 292800},
    {"models/stories260K-hf", TC_FORMAT_HF, 5, 64, 8, 4, 8, 172, 512, 1, TC_ROPE_HALF, 260032},
    {"models/stories260K-hf-f16-sharded", TC_FORMAT_HF, 5, 64, 8, 4, 8, 172, 512, 1, TC_ROPE_HALF, 260032},
    {"models/stories260K-hf-bf16", TC_FORMAT_HF, 5, 64, 8, 4, 8, 172, 512, 1, TC_ROPE_HALF, 260032},
    {"models/llama2xs/llama2xs.bin", TC_FORMAT_LLAMA2C, 5, 64, 8, 4, 8, 192, 512, 1, TC_ROPE_ADJACENT, 0},
    {"models/babyllama105/babyllama105.bin", TC_FORMAT_LLAMA2C, 5, 128, 8, 4, 16, 352, 105, 1, TC_ROPE_ADJACENT, 0},
    {"models/babyllama105-hf", TC_FORMAT_HF, 5, 128, 8, 4, 16, 352, 105, 1, TC_ROPE_HALF, 0},
    {"models/deep16-hf", TC_FORMAT_HF, 16, 256, 8, 4, 32, 688, 512, 1, TC_ROPE_HALF, 0},
};

static int test_asset_figures(void)
{
    int tested = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const expect *e = &models[i];
        char path[512];
        if (!tu_asset(path, sizeof path, e->rel)) {
            printf("skipping %s: not in the assets\n", e->rel);
            continue;
        }
        tc_model m;
        tc_error err;
        CHECK_OK(tc_model_open(&m, path, &err), &err);
        if (!m.layers)
            continue;
        tested++;
        const tc_config *c = &m.cfg;
        CHECK_MSG(m.format == e->format && c->n_layers == e->layers && c->dim == e->dim &&
                      c->n_heads == e->heads && c->n_kv_heads == e->kv && c->head_dim == e->head_dim &&
                      c->ffn_dim == e->ffn && c->vocab_size == e->vocab &&
                      c->tied_embeddings == e->tied && c->rope_layout == e->rope,
                  "%s: figures differ from the manifest", e->rel);
        if (e->n_params)
            CHECK_MSG(tc_model_n_params(&m) == e->n_params, "%s: %llu params", e->rel,
                      (unsigned long long)tc_model_n_params(&m));
        for (int l = 0; l < c->n_layers; l++)
            CHECK(m.layers[l].has_attn && m.layers[l].has_mlp);
        tc_model_close(&m);
    }
    return tested;
}

/* Compares every role of two models in fp32, undoing the Q/K row order of b
 * into a's layout.  Returns the largest relative difference. */
static double compare_models(const tc_model *a, const tc_model *b)
{
    double worst = 0;
    tc_error err;
    const tc_tensor *ga[3] = {a->tok_embd, a->out_norm, a->output};
    const tc_tensor *gb[3] = {b->tok_embd, b->out_norm, b->output};
    for (int g = 0; g < 3; g++) {
        float *x = NULL, *y = NULL;
        CHECK_OK(tc_tensor_load_f32(ga[g], &x, &err), &err);
        CHECK_OK(tc_tensor_load_f32(gb[g], &y, &err), &err);
        for (uint64_t i = 0; x && y && i < ga[g]->n_elements; i++) {
            double d = fabs((double)x[i] - y[i]) / (fabs((double)x[i]) + 1e-3);
            if (d > worst)
                worst = d;
        }
        free(x);
        free(y);
    }
    for (int l = 0; l < a->cfg.n_layers; l++) {
        tc_layer_f32 wa, wb;
        CHECK_OK(tc_model_load_layer(a, l, &wa, &err), &err);
        CHECK_OK(tc_model_load_layer(b, l, &wb, &err), &err);
        for (int r = 0; r < TC_N_ROLES; r++) {
            const tc_tensor *t = a->layers[l].w[r];
            if (!t || !wa.w[r] || !wb.w[r])
                continue;
            float *y = wb.w[r];
            float *tmp = NULL;
            if ((r == TC_WQ || r == TC_WK) && a->cfg.rope_layout != b->cfg.rope_layout) {
                int heads = r == TC_WQ ? a->cfg.n_heads : a->cfg.n_kv_heads;
                tmp = malloc(t->n_elements * sizeof *tmp);
                tc_rope_permute_rows(y, tmp, heads, a->cfg.head_dim, a->cfg.dim, b->cfg.rope_layout,
                                     a->cfg.rope_layout);
                y = tmp;
            }
            for (uint64_t i = 0; i < t->n_elements; i++) {
                double d = fabs((double)wa.w[r][i] - y[i]) / (fabs((double)wa.w[r][i]) + 1e-3);
                if (d > worst)
                    worst = d;
            }
            free(tmp);
        }
        tc_layer_f32_free(&wa);
        tc_layer_f32_free(&wb);
    }
    return worst;
}

static int open_asset(tc_model *m, const char *rel)
{
    char path[512];
    tc_error err;
    if (!tu_asset(path, sizeof path, rel))
        return -1;
    if (tc_model_open(m, path, &err)) {
        fprintf(stderr, "%s: %s\n", rel, err.msg);
        tu_failures++;
        return -1;
    }
    return 0;
}

static void test_cross_format(void)
{
    tc_model bin, gguf, hf, f16, bf16;
    if (open_asset(&bin, "models/stories260K/stories260K.bin"))
        return;
    if (open_asset(&gguf, "models/stories260K/stories260K.gguf") == 0) {
        CHECK(compare_models(&bin, &gguf) == 0.0);
        tc_model_close(&gguf);
    }
    if (open_asset(&hf, "models/stories260K-hf") == 0) {
        CHECK(compare_models(&bin, &hf) == 0.0);
        if (open_asset(&f16, "models/stories260K-hf-f16-sharded") == 0) {
            double d = compare_models(&hf, &f16);
            CHECK_MSG(d > 0 && d < 1e-3, "f16 vs f32 relative difference %g", d);
            tc_model_close(&f16);
        }
        if (open_asset(&bf16, "models/stories260K-hf-bf16") == 0) {
            double d = compare_models(&hf, &bf16);
            CHECK_MSG(d > 0 && d < 8e-3, "bf16 vs f32 relative difference %g", d);
            tc_model_close(&bf16);
        }
        tc_model_close(&hf);
    }
    tc_model_close(&bin);
}

/* Writes a model in every format and reads it back: the same weights, exactly
 * (after the writer's and the reader's rope layout conversions). */
static void roundtrip(const tc_model *m, const char *dir, const char *tag)
{
    static const tc_format fmts[] = {TC_FORMAT_HF, TC_FORMAT_GGUF, TC_FORMAT_LLAMA2C};
    static const char *names[] = {"hf", "model.gguf", "model.bin"};
    for (int f = 0; f < 3; f++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s-%s", dir, tag, names[f]);
        tc_model_copy cp = {.model = m};
        tc_model_src src = {.cfg = m->cfg, .dtype = TC_F32, .fill = tc_model_copy_fill, .ctx = &cp};
        tc_error err;
        if (fmts[f] == TC_FORMAT_LLAMA2C && !m->cfg.tied_embeddings && m->output == m->tok_embd)
            continue;
        CHECK_OK(tc_model_write(path, fmts[f], &src, &err), &err);
        tc_model back;
        if (tc_model_open(&back, path, &err)) {
            CHECK_MSG(0, "%s: %s", path, err.msg);
            continue;
        }
        CHECK(back.cfg.n_layers == m->cfg.n_layers && back.cfg.dim == m->cfg.dim &&
              back.cfg.ffn_dim == m->cfg.ffn_dim && back.cfg.n_kv_heads == m->cfg.n_kv_heads);
        CHECK_MSG(compare_models(m, &back) == 0.0, "%s round trip differs", path);
        tc_model_close(&back);
    }
}

static void test_writers(const char *dir)
{
    tc_model m;
    tc_error err;
    tc_synth_spec s = {.cfg = tc_synth_config(3, 48, 6, 2, 100, 77), .seed = 7};
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    if (m.layers) {
        roundtrip(&m, dir, "synth");
        tc_model_close(&m);
    }
    s.cfg.tied_embeddings = 0;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    if (m.layers) {
        roundtrip(&m, dir, "untied");
        tc_model_close(&m);
    }
    /* The streamed writer produces the same model as the in-memory one. */
    char path[600];
    snprintf(path, sizeof path, "%s/streamed.gguf", dir);
    CHECK_OK(tc_synth_write(path, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    tc_model a, b;
    CHECK_OK(tc_synth_model(&a, &s, &err), &err);
    CHECK_OK(tc_model_open(&b, path, &err), &err);
    if (a.layers && b.layers)
        CHECK(compare_models(&a, &b) == 0.0);
    tc_model_close(&a);
    tc_model_close(&b);
    if (open_asset(&m, "models/stories260K/stories260K.bin") == 0) {
        roundtrip(&m, dir, "stories");
        tc_model_close(&m);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* config.json problems give one error naming the file and the field. */
static void test_bad_configs(const char *dir)
{
    char src[512];
    if (!tu_asset(src, sizeof src, "models/stories260K-hf/config.json"))
        return;
    char *text = NULL;
    FILE *f = fopen(src, "rb");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)n + 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    fclose(f);
    char weights[PATH_MAX], mdir[600], link[700], cfg[700];
    char rel[512];
    tu_asset(rel, sizeof rel, "models/stories260K-hf/model.safetensors");
    if (!realpath(rel, weights))
        return;
    snprintf(mdir, sizeof mdir, "%s/badcfg", dir);
    mkdir(mdir, 0755);
    snprintf(link, sizeof link, "%s/model.safetensors", mdir);
    CHECK(symlink(weights, link) == 0);
    snprintf(cfg, sizeof cfg, "%s/config.json", mdir);
    static const struct {
        const char *field, *replacement, *want;
    } cases[] = {
        {"\"hidden_size\"", "\"hidden_sizeX\"", "hidden_size"},
        {"\"num_hidden_layers\": 5", "\"num_hidden_layers\": 6", "missing tensor"},
        {"\"intermediate_size\": 172", "\"intermediate_size\": 170", "shape"},
        {"\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", "unsupported architecture"},
        {"\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3", "multiple"},
        {"\"hidden_size\": 64", "\"hidden_size\": -64", "hidden_size"},
        {"\"hidden_size\": 64", "\"hidden_size\": 64.5", "hidden_size"},
        {"\"vocab_size\": 512", "\"vocab_size\": 1e300", "vocab_size"},
        {"\"attention_bias\": false", "\"attention_bias\": true", "q_proj.bias"},
    };
    tc_error err;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = strstr(text, cases[i].field);
        CHECK(p != NULL);
        if (!p)
            continue;
        size_t pre = (size_t)(p - text), fl = strlen(cases[i].field);
        char *mod = malloc(strlen(text) + 64);
        sprintf(mod, "%.*s%s%s", (int)pre, text, cases[i].replacement, p + fl);
        write_file(cfg, mod);
        free(mod);
        tc_model m;
        CHECK(tc_model_open(&m, mdir, &err) == TC_ERR);
        CHECK_MSG(strstr(err.msg, cases[i].want) && strstr(err.msg, "badcfg"), "case %zu: %s", i, err.msg);
    }
    write_file(cfg, "[1, 2]");
    tc_model m;
    CHECK(tc_model_open(&m, mdir, &err) == TC_ERR);
    unlink(cfg);
    CHECK(tc_model_open(&m, mdir, &err) == TC_ERR);
    CHECK(strstr(err.msg, "config.json") != NULL);
    CHECK(tc_model_open(&m, "/nonexistent/model.gguf", &err) == TC_ERR);
    CHECK(strstr(err.msg, "/nonexistent/model.gguf") != NULL);
    unlink(link);
    free(text);
}

static void test_permute(void)
{
    /* adjacent -> half -> adjacent is the identity, and pairs land where RoPE expects them. */
    enum { H = 2, HD = 6, C = 3 };
    float a[H * HD * C], b[H * HD * C], c[H * HD * C];
    for (int i = 0; i < H * HD * C; i++)
        a[i] = (float)i;
    tc_rope_permute_rows(a, b, H, HD, C, TC_ROPE_ADJACENT, TC_ROPE_HALF);
    tc_rope_permute_rows(b, c, H, HD, C, TC_ROPE_HALF, TC_ROPE_ADJACENT);
    CHECK(memcmp(a, c, sizeof a) == 0);
    /* adjacent row 2i+1 of head 1 is half row i + hd/2 of head 1 */
    CHECK(b[(1 * HD + 1 + HD / 2) * C] == a[(1 * HD + 3) * C]);
    CHECK(b[(1 * HD + 1) * C] == a[(1 * HD + 2) * C]);
}

int main(void)
{
    char dir[256];
    if (!tu_tmpdir(dir, sizeof dir))
        return 1;
    test_permute();
    test_writers(dir);
    test_bad_configs(dir);
    int n = test_asset_figures();
    test_cross_format();
    if (n == 0)
        printf("note: no asset models found; only synthetic checks ran\n");
    return tu_finish("test_model");
}
