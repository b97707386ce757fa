/* Hugging Face directories: the five real checkpoints open with the right
 * tensors, the half-precision copies are the rounded fp32 weights, a model
 * written whole or in shards reopens byte for byte, and broken directories
 * are refused with a message naming the file at fault. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "tc/dtype.h"
#include "tc/hfdir.h"
#include "tc/safetensors.h"

static char tmp[512];

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char path[700];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* ---- Real checkpoints --------------------------------------------------- */

typedef struct expect {
    const char *dir;
    size_t n_tensors, n_maps;
    tc_dtype dtype;
    int dim, ffn, layers, vocab, kv_dim;
} expect;

static const expect models[] = {
    {"models/stories260K-hf", 47, 1, TC_F32, 64, 172, 5, 512, 32},
    {"models/stories260K-hf-f16-sharded", 47, 2, TC_F16, 64, 172, 5, 512, 32},
    {"models/stories260K-hf-bf16", 47, 1, TC_BF16, 64, 172, 5, 512, 32},
    {"models/deep16-hf", 146, 1, TC_F32, 256, 688, 16, 512, 128},
    {"models/babyllama105-hf", 47, 1, TC_F32, 128, 352, 5, 105, 64},
};

static int shape_is(const tc_hfdir *h, const char *name, tc_dtype dt, int64_t a, int64_t b)
{
    const tc_tensor *t = tc_tensordir_find(&h->dir, name);
    if (!t || t->dtype != dt)
        return 0;
    if (b < 0)
        return t->n_dims == 1 && t->shape[0] == a;
    return t->n_dims == 2 && t->shape[0] == a && t->shape[1] == b;
}

static int check_model(const expect *e)
{
    char path[600];
    if (!tu_asset(path, sizeof path, e->dir))
        return 0;
    tc_hfdir h;
    tc_error err;
    if (tc_hfdir_open(&h, path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return 1;
    }
    CHECK_MSG(h.dir.n_tensors == e->n_tensors, "%s: %zu tensors", e->dir, h.dir.n_tensors);
    CHECK(h.dir.n_maps == e->n_maps);
    const cJSON *hidden = cJSON_GetObjectItemCaseSensitive(h.config, "hidden_size");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(h.config, "num_hidden_layers");
    CHECK(cJSON_IsNumber(hidden) && hidden->valueint == e->dim);
    CHECK(cJSON_IsNumber(layers) && layers->valueint == e->layers);
    int all_dtype = 1;
    for (size_t i = 0; i < h.dir.n_tensors; i++)
        all_dtype &= h.dir.tensors[i].dtype == e->dtype;
    CHECK(all_dtype);
    char name[128];
    CHECK(shape_is(&h, "model.embed_tokens.weight", e->dtype, e->vocab, e->dim));
    CHECK(shape_is(&h, "model.norm.weight", e->dtype, e->dim, -1));
    for (int l = 0; l < e->layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj.weight", l);
        CHECK_MSG(shape_is(&h, name, e->dtype, e->dim, e->dim), "%s %s", e->dir, name);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_proj.weight", l);
        CHECK_MSG(shape_is(&h, name, e->dtype, e->kv_dim, e->dim), "%s %s", e->dir, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
        CHECK_MSG(shape_is(&h, name, e->dtype, e->ffn, e->dim), "%s %s", e->dir, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        CHECK_MSG(shape_is(&h, name, e->dtype, e->dim, e->ffn), "%s %s", e->dir, name);
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        CHECK_MSG(shape_is(&h, name, e->dtype, e->dim, -1), "%s %s", e->dir, name);
    }
    CHECK(tc_tensordir_find(&h.dir, "lm_head.weight") == NULL); /* tied */
    tc_hfdir_close(&h);
    return 1;
}

/* Each half-precision value must be exactly the fp32 one rounded to nearest
 * even, which is how they were made. */
static void check_rounded(const char *half_dir, uint16_t (*round)(float), tc_dtype dt)
{
    char fpath[600], hpath[600];
    if (!tu_asset(fpath, sizeof fpath, "models/stories260K-hf") || !tu_asset(hpath, sizeof hpath, half_dir))
        return;
    tc_hfdir f, h;
    tc_error err;
    CHECK_OK(tc_hfdir_open(&f, fpath, &err), &err);
    CHECK_OK(tc_hfdir_open(&h, hpath, &err), &err);
    uint64_t compared = 0, mismatches = 0;
    double worst = 0;
    for (size_t i = 0; i < f.dir.n_tensors; i++) {
        const tc_tensor *a = &f.dir.tensors[i];
        const tc_tensor *b = tc_tensordir_find(&h.dir, a->name);
        CHECK_MSG(b && b->dtype == dt && b->n_elements == a->n_elements, "%s %s", half_dir, a->name);
        if (!b || b->n_elements != a->n_elements)
            continue;
        float *x = NULL, *y = NULL;
        CHECK_OK(tc_tensor_load_f32(a, &x, &err), &err);
        CHECK_OK(tc_tensor_load_f32(b, &y, &err), &err);
        for (uint64_t j = 0; x && y && j < a->n_elements; j++) {
            uint16_t stored;
            memcpy(&stored, b->data + 2 * j, 2);
            mismatches += round(x[j]) != stored;
            double rel = fabs((double)y[j] - x[j]) / (fabs(x[j]) + 1e-30);
            if (fabs(x[j]) > 1e-4 && rel > worst)
                worst = rel;
            compared++;
        }
        free(x);
        free(y);
    }
    CHECK(compared == 260032);
    CHECK_MSG(mismatches == 0, "%s: %llu values are not the rounded fp32 ones", half_dir,
              (unsigned long long)mismatches);
    CHECK(worst <= (dt == TC_F16 ? 1e-3 : 1e-2 / 2));
    tc_hfdir_close(&f);
    tc_hfdir_close(&h);
}

/* ---- Round trip --------------------------------------------------------- */

static tc_out_tensor *out_tensors(const tc_tensordir *d)
{
    tc_out_tensor *o = calloc(d->n_tensors, sizeof *o);
    for (size_t i = 0; i < d->n_tensors; i++) {
        const tc_tensor *t = &d->tensors[i];
        o[i].name = t->name;
        o[i].dtype = t->dtype;
        o[i].n_dims = t->n_dims;
        memcpy(o[i].shape, t->shape, sizeof o[i].shape);
        o[i].data = t->data;
    }
    return o;
}

static void check_same(const tc_hfdir *a, const tc_hfdir *b)
{
    CHECK(cJSON_Compare(a->config, b->config, 1));
    CHECK(a->dir.n_tensors == b->dir.n_tensors);
    int same = 1;
    for (size_t i = 0; i < a->dir.n_tensors; i++) {
        const tc_tensor *x = &a->dir.tensors[i];
        const tc_tensor *y = tc_tensordir_find(&b->dir, x->name);
        if (!y || y->dtype != x->dtype || y->n_dims != x->n_dims || y->nbytes != x->nbytes ||
            memcmp(y->shape, x->shape, sizeof x->shape) != 0 || memcmp(y->data, x->data, x->nbytes) != 0) {
            fprintf(stderr, "tensor %s differs after the round trip\n", x->name);
            same = 0;
        }
    }
    CHECK(same);
}

static void roundtrip(const char *src_rel, const char *name, uint64_t shard_bytes, size_t want_shards)
{
    char src[600], dst[700];
    if (!tu_asset(src, sizeof src, src_rel))
        return;
    snprintf(dst, sizeof dst, "%s/%s", tmp, name);
    tc_hfdir a, b;
    tc_error err;
    CHECK_OK(tc_hfdir_open(&a, src, &err), &err);
    tc_out_tensor *o = out_tensors(&a.dir);
    CHECK_OK(tc_hfdir_write(dst, a.config, o, a.dir.n_tensors, shard_bytes, &err), &err);
    free(o);
    if (tc_hfdir_open(&b, dst, &err) == TC_OK) {
        check_same(&a, &b);
        CHECK_MSG(b.dir.n_maps == want_shards, "%s: %zu shards", name, b.dir.n_maps);
        /* Every shard but the last stays within the limit (no tensor here is
         * larger than it). */
        for (size_t i = 0; shard_bytes && i < b.dir.n_maps; i++) {
            uint64_t data = 0;
            for (size_t j = 0; j < b.dir.n_tensors; j++)
                if (b.dir.tensors[j].file == b.dir.maps[i].path)
                    data += b.dir.tensors[j].nbytes;
            CHECK(data <= shard_bytes);
        }
        tc_hfdir_close(&b);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    CHECK(exists(dst, "model.safetensors.index.json") == (want_shards > 1));
    CHECK(exists(dst, "model.safetensors") == (want_shards == 1));
    if (want_shards > 1) {
        char shard[64];
        snprintf(shard, sizeof shard, "model-%05zu-of-%05zu.safetensors", want_shards, want_shards);
        CHECK(exists(dst, shard));
    }
    tc_hfdir_close(&a);
}

static void test_roundtrips(void)
{
    roundtrip("models/stories260K-hf", "single", 0, 1);
    roundtrip("models/stories260K-hf", "big-limit", 1ull << 40, 1);
    /* 1040128 bytes of data in tensors of at most 131072: four shards of
     * at most 300000. */
    roundtrip("models/stories260K-hf", "sharded", 300000, 4);
    roundtrip("models/stories260K-hf-f16-sharded", "f16", 0, 1);
    roundtrip("models/stories260K-hf-f16-sharded", "f16-sharded", 200000, 3);
    /* Rewriting a sharded directory as one file removes the stale index, and
     * back again removes the stale single file. */
    roundtrip("models/stories260K-hf", "sharded", 0, 1);
    roundtrip("models/stories260K-hf", "sharded", 300000, 4);

    /* A tensor larger than the limit gets a shard of its own. */
    char dst[700];
    snprintf(dst, sizeof dst, "%s/tiny", tmp);
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    const tc_out_tensor t[3] = {
        {.name = "a", .dtype = TC_F32, .n_dims = 1, .shape = {6}, .data = w},
        {.name = "b", .dtype = TC_F32, .n_dims = 1, .shape = {1}, .data = w},
        {.name = "c", .dtype = TC_F32, .n_dims = 1, .shape = {1}, .data = w + 1},
    };
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "model_type", "llama");
    tc_error err;
    CHECK_OK(tc_hfdir_write(dst, config, t, 3, 8, &err), &err);
    CHECK(exists(dst, "model-00001-of-00002.safetensors") && exists(dst, "model-00002-of-00002.safetensors"));
    tc_hfdir h;
    if (tc_hfdir_open(&h, dst, &err) == TC_OK) {
        CHECK(h.dir.n_tensors == 3 && h.dir.n_maps == 2);
        const tc_tensor *c = tc_tensordir_find(&h.dir, "c");
        CHECK(c && memcmp(c->data, &w[1], 4) == 0);
        CHECK(cJSON_Compare(h.config, config, 1));
        tc_hfdir_close(&h);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    /* Duplicate names across shards are refused before anything is written. */
    const tc_out_tensor dup[2] = {t[0], t[0]};
    snprintf(dst, sizeof dst, "%s/dup", tmp);
    CHECK(tc_hfdir_write(dst, config, dup, 2, 8, &err) == TC_ERR && strstr(err.msg, dst));
    CHECK(!exists(dst, "config.json") && !exists(dst, "model-00001-of-00002.safetensors"));
    /* The parent of the target must exist. */
    snprintf(dst, sizeof dst, "%s/no/such/dir", tmp);
    CHECK(tc_hfdir_write(dst, config, t, 3, 0, &err) == TC_ERR && strstr(err.msg, dst));
    cJSON_Delete(config);
}

/* ---- Hostile directories ------------------------------------------------ */

static void make_shard(const char *dir, const char *file, const char *const *names, size_t n)
{
    static const float w[2] = {1.5f, -2.0f};
    tc_out_tensor t[4];
    char path[700];
    for (size_t i = 0; i < n; i++)
        t[i] = (tc_out_tensor){.name = names[i], .dtype = TC_F32, .n_dims = 1, .shape = {2}, .data = w};
    snprintf(path, sizeof path, "%s/%s", dir, file);
    tc_error err;
    if (tc_safetensors_write(path, t, n, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

/* A fresh directory with a config, two shards (x, y in s1; z in s2) and the
 * given index text. */
static void make_dir(char *dir, size_t cap, const char *name, const char *index)
{
    snprintf(dir, cap, "%s/%s", tmp, name);
    mkdir(dir, 0755);
    write_text(dir, "config.json", "{\"model_type\": \"llama\"}");
    static const char *const s1[] = {"x", "y"}, *const s2[] = {"z"};
    make_shard(dir, "s1.safetensors", s1, 2);
    make_shard(dir, "s2.safetensors", s2, 1);
    if (index)
        write_text(dir, "model.safetensors.index.json", index);
}

static void expect_refused(const char *dir, const char *file, const char *why)
{
    tc_hfdir h;
    tc_error err;
    memset(&err, 0, sizeof err);
    int rc = tc_hfdir_open(&h, dir, &err);
    CHECK_MSG(rc == TC_ERR, "%s: accepted", why);
    if (rc == TC_OK) {
        tc_hfdir_close(&h);
        return;
    }
    char want[800];
    snprintf(want, sizeof want, "%s/%s", dir, file);
    CHECK_MSG(strstr(err.msg, file ? want : dir) != NULL, "%s: message does not name %s: %s", why,
              file ? want : dir, err.msg);
    CHECK(h.path == NULL && h.config == NULL && h.dir.n_tensors == 0 && h.dir.n_maps == 0);
}

#define GOOD_MAP "\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\", \"z\": \"s2.safetensors\""
#define INDEX "model.safetensors.index.json"

static void test_hostile(void)
{
    char dir[600];
    tc_hfdir h;
    tc_error err;

    make_dir(dir, sizeof dir, "good", "{\"metadata\": {}, \"weight_map\": {" GOOD_MAP "}}");
    CHECK_OK(tc_hfdir_open(&h, dir, &err), &err);
    if (h.path) {
        CHECK(h.dir.n_tensors == 3 && h.dir.n_maps == 2);
        tc_hfdir_close(&h);
    }

    static const struct {
        const char *index, *file, *why;
    } cases[] = {
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"s3.safetensors\"}}", "s3.safetensors", "missing shard"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"s1.safetensors\"}}", INDEX, "tensor absent from its shard"},
        {"{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s2.safetensors\", \"z\": \"s2.safetensors\"}}",
         INDEX, "tensor in another shard than indexed"},
        {"{\"weight_map\": {\"x\": \"s1.safetensors\"}}", INDEX,
         "tensor in a shard but not in the index"},
        {"{\"weight_map\": {" GOOD_MAP ", \"x\": \"s1.safetensors\"}}", INDEX, "index lists a tensor twice"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"../good/s1.safetensors\"}}", INDEX, "shard outside"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"sub/s1.safetensors\"}}", INDEX, "shard in a subdirectory"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"..\"}}", INDEX, "shard named .."},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"\"}}", INDEX, "empty shard name"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": 3}}", INDEX, "shard name not a string"},
        {"{\"weight_map\": {" GOOD_MAP ", \"w\": \"config.json\"}}", "config.json", "shard not safetensors"},
        {"{\"weight_map\": {}}", INDEX, "empty weight_map"},
        {"{\"weight_map\": [1]}", INDEX, "weight_map not an object"},
        {"{\"metadata\": {}}", INDEX, "no weight_map"},
        {"[]", INDEX, "index not an object"},
        {"{\"weight_map\": {" GOOD_MAP "}", INDEX, "index not JSON"},
        {"{\"weight_map\": {" GOOD_MAP "}} x", INDEX, "index with trailing bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        make_dir(dir, sizeof dir, name, cases[i].index);
        expect_refused(dir, cases[i].file, cases[i].why);
    }

    /* A tensor in two shards. */
    make_dir(dir, sizeof dir, "twice", "{\"weight_map\": {" GOOD_MAP "}}");
    static const char *const zx[] = {"z", "x"};
    make_shard(dir, "s2.safetensors", zx, 2);
    expect_refused(dir, "s2.safetensors", "tensor in two shards");

    /* A broken shard (one byte long) names itself. */
    make_dir(dir, sizeof dir, "broken", "{\"weight_map\": {" GOOD_MAP "}}");
    write_text(dir, "s2.safetensors", "\x10");
    expect_refused(dir, "s2.safetensors", "truncated shard");

    /* config.json missing, not JSON, not an object. */
    make_dir(dir, sizeof dir, "noconfig", "{\"weight_map\": {" GOOD_MAP "}}");
    char path[700];
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    expect_refused(dir, "config.json", "config.json missing");
    write_text(dir, "config.json", "[1, 2]");
    expect_refused(dir, "config.json", "config.json an array");
    write_text(dir, "config.json", "{\"a\": ");
    expect_refused(dir, "config.json", "config.json not JSON");
    write_text(dir, "config.json", "");
    expect_refused(dir, "config.json", "config.json empty");

    /* Neither weight file. */
    make_dir(dir, sizeof dir, "noweights", NULL);
    expect_refused(dir, NULL, "no weights");
    /* A path that is not a directory at all. */
    snprintf(path, sizeof path, "%s/nowhere", tmp);
    expect_refused(path, "config.json", "no directory");
}

int main(void)
{
    if (!tu_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    int found = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        found += check_model(&models[i]);
    check_rounded("models/stories260K-hf-f16-sharded", tc_f32_to_f16, TC_F16);
    check_rounded("models/stories260K-hf-bf16", tc_f32_to_bf16, TC_BF16);
    test_roundtrips();
    test_hostile();
    if (found < (int)(sizeof models / sizeof models[0]))
        printf("note: %d of %zu model directories present\n", found, sizeof models / sizeof models[0]);
    return tu_finish("test_hfdir");
}
