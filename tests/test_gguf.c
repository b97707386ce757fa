/* GGUF: the real stories260K model and llama.cpp's vocabulary files open with
 * the expected metadata; files written here read back identically (every
 * value type, nested arrays, every tensor dtype, other alignments); a file
 * laid out byte by byte from the format's description equals the writer's;
 * and every corruption of that file is a clean error naming the file. */
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/resource.h>

#include "tc/dtype.h"
#include "tc/gguf.h"

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

/* ---- Helpers ------------------------------------------------------------------ */

static int value_eq(const tc_gguf_value *a, const tc_gguf_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case TC_GGUF_STRING:
        return a->v.s.len == b->v.s.len && (a->v.s.len == 0 || memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0);
    case TC_GGUF_ARRAY:
        if (a->v.arr.type != b->v.arr.type || a->v.arr.n != b->v.arr.n)
            return 0;
        for (uint64_t i = 0; i < a->v.arr.n; i++)
            if (!value_eq(&a->v.arr.items[i], &b->v.arr.items[i]))
                return 0;
        return 1;
    case TC_GGUF_F32:
    case TC_GGUF_F64:
        return memcmp(&a->v.f, &b->v.f, sizeof a->v.f) == 0;
    case TC_GGUF_I8: case TC_GGUF_I16: case TC_GGUF_I32: case TC_GGUF_I64:
        return a->v.i == b->v.i;
    default:
        return a->v.u == b->v.u;
    }
}

static int key_is(const tc_gguf_kv *kv, const char *key)
{
    return kv->key.len == strlen(key) && memcmp(kv->key.ptr, key, kv->key.len) == 0;
}

/* Same kvs in the same order and the same tensors with the same bytes. */
static void check_same_gguf(const tc_gguf *a, const tc_gguf *b)
{
    CHECK(a->n_kv == b->n_kv);
    for (uint64_t i = 0; i < a->n_kv && i < b->n_kv; i++) {
        CHECK(a->kvs[i].key.len == b->kvs[i].key.len &&
              memcmp(a->kvs[i].key.ptr, b->kvs[i].key.ptr, a->kvs[i].key.len) == 0);
        CHECK_MSG(value_eq(&a->kvs[i].value, &b->kvs[i].value), "key %.*s", (int)a->kvs[i].key.len,
                  a->kvs[i].key.ptr);
    }
    CHECK(a->dir.n_tensors == b->dir.n_tensors);
    for (size_t i = 0; i < a->dir.n_tensors && i < b->dir.n_tensors; i++) {
        const tc_tensor *x = &a->dir.tensors[i], *y = &b->dir.tensors[i];
        CHECK(strcmp(x->name, y->name) == 0);
        CHECK(x->dtype == y->dtype && x->n_dims == y->n_dims && x->nbytes == y->nbytes);
        CHECK(memcmp(x->shape, y->shape, sizeof x->shape) == 0);
        CHECK(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0);
    }
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int read_bytes(const char *path, uint8_t **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc(len > 0 ? (size_t)len : 1);
    *n = (size_t)len;
    int ok = *out && fread(*out, 1, *n, f) == *n;
    fclose(f);
    return ok ? 0 : -1;
}

/* Writer kvs that repeat a file's metadata: the keys need their own
 * NUL-terminated copies, the values are passed through. */
static tc_gguf_writer_kv *writer_kvs_of(const tc_gguf *g)
{
    tc_gguf_writer_kv *kvs = calloc(g->n_kv + 1, sizeof *kvs);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        char *k = malloc(g->kvs[i].key.len + 1);
        memcpy(k, g->kvs[i].key.ptr, g->kvs[i].key.len);
        k[g->kvs[i].key.len] = '\0';
        kvs[i].key = k;
        kvs[i].value = g->kvs[i].value;
    }
    return kvs;
}

static void free_writer_kvs(tc_gguf_writer_kv *kvs, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        free((char *)kvs[i].key);
    free(kvs);
}

static tc_out_tensor out_of(const tc_tensor *t)
{
    tc_out_tensor o;
    memset(&o, 0, sizeof o);
    o.name = t->name;
    o.dtype = t->dtype;
    o.n_dims = t->n_dims;
    memcpy(o.shape, t->shape, sizeof o.shape);
    o.data = t->data;
    return o;
}

/* ---- The real model and vocabularies --------------------------------------------- */

static void test_stories(const char *path)
{
    tc_gguf g;
    tc_error err;
    CHECK_OK(tc_gguf_open(&g, path, &err), &err);
    if (!g.path)
        return;
    CHECK(g.version == 3 && g.alignment == 32);
    CHECK(g.dir.n_tensors == 48);
    CHECK(g.data_offset % 32 == 0);
    uint32_t u = 0;
    CHECK_OK(tc_gguf_get_u32(&g, "llama.embedding_length", &u, &err), &err);
    CHECK(u == 64);
    CHECK_OK(tc_gguf_get_u32(&g, "llama.block_count", &u, &err), &err);
    CHECK(u == 5);
    CHECK_OK(tc_gguf_get_u32(&g, "llama.feed_forward_length", &u, &err), &err);
    CHECK(u == 172);
    CHECK_OK(tc_gguf_get_u32(&g, "llama.attention.head_count", &u, &err), &err);
    CHECK(u == 8);
    CHECK_OK(tc_gguf_get_u32(&g, "llama.attention.head_count_kv", &u, &err), &err);
    CHECK(u == 4);
    float eps = 0;
    CHECK_OK(tc_gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), &err);
    CHECK_NEAR(eps, 1e-5, 1e-9);
    char *arch = NULL;
    CHECK_OK(tc_gguf_get_str(&g, "general.architecture", &arch, &err), &err);
    CHECK(arch && strcmp(arch, "llama") == 0);
    free(arch);
    /* A u32 key read as a string, and an absent key: errors naming both. */
    CHECK(tc_gguf_get_str(&g, "llama.block_count", &arch, &err) == TC_ERR && arch == NULL);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "llama.block_count"));
    CHECK(tc_gguf_get_u32(&g, "no.such.key", &u, &err) == TC_ERR);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "no.such.key"));
    /* The separator id is 0xffffffff: a u32, but no bool. */
    uint64_t u64 = 0;
    CHECK_OK(tc_gguf_get_u64(&g, "tokenizer.ggml.seperator_token_id", &u64, &err), &err);
    CHECK(u64 == 0xffffffffu);
    int b;
    CHECK(tc_gguf_get_bool(&g, "tokenizer.ggml.seperator_token_id", &b, &err) == TC_ERR);

    const tc_gguf_value *tok = tc_gguf_find(&g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == TC_GGUF_ARRAY && tok->v.arr.type == TC_GGUF_STRING && tok->v.arr.n == 512);
    if (tok && tok->type == TC_GGUF_ARRAY && tok->v.arr.n == 512) {
        const tc_gguf_str *s0 = &tok->v.arr.items[0].v.s, *s1 = &tok->v.arr.items[1].v.s;
        CHECK(s0->len == 5 && memcmp(s0->ptr, "<unk>", 5) == 0);
        CHECK(s1->len == 3 && memcmp(s1->ptr, "<s>", 3) == 0);
    }
    const tc_gguf_value *scores = tc_gguf_find(&g, "tokenizer.ggml.scores");
    CHECK(scores && scores->type == TC_GGUF_ARRAY && scores->v.arr.type == TC_GGUF_F32 &&
          scores->v.arr.n == 512);

    const tc_tensor *emb = tc_tensordir_find(&g.dir, "token_embd.weight");
    CHECK(emb && emb->dtype == TC_F32 && emb->n_dims == 2 && emb->shape[0] == 512 && emb->shape[1] == 64);
    const tc_tensor *down = tc_tensordir_find(&g.dir, "blk.4.ffn_down.weight");
    CHECK(down && down->n_dims == 2 && down->shape[0] == 64 && down->shape[1] == 172);
    const tc_tensor *k = tc_tensordir_find(&g.dir, "blk.0.attn_k.weight");
    CHECK(k && k->shape[0] == 32 && k->shape[1] == 64);
    /* The first tensor starts the data section. */
    CHECK(emb && emb->data == g.dir.maps[0].data + g.data_offset);
    tc_gguf_close(&g);
}

static void test_vocab_files(void)
{
    char dir[4096];
    if (!tu_asset(dir, sizeof dir, "tokenizers/llamacpp")) {
        printf("note: tokenizers/llamacpp is absent; vocabulary files not tested\n");
        return;
    }
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return;
    int opened = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        tc_gguf g;
        tc_error err;
        CHECK_OK(tc_gguf_open(&g, path, &err), &err);
        if (!g.path)
            continue;
        opened++;
        /* Vocabulary files end with their header, unpadded. */
        struct stat st;
        CHECK(g.dir.n_tensors == 0 && stat(path, &st) == 0 && g.data_offset == (uint64_t)st.st_size);
        const tc_gguf_value *tok = tc_gguf_find(&g, "tokenizer.ggml.tokens");
        CHECK(tok && tok->type == TC_GGUF_ARRAY && tok->v.arr.type == TC_GGUF_STRING &&
              tok->v.arr.n >= 30000);
        const tc_gguf_value *tt = tc_gguf_find(&g, "tokenizer.ggml.token_type");
        CHECK(tok && tt && tt->type == TC_GGUF_ARRAY && tt->v.arr.n == tok->v.arr.n);
        char *model = NULL;
        CHECK_OK(tc_gguf_get_str(&g, "tokenizer.ggml.model", &model, &err), &err);
        CHECK(model && (strcmp(model, "llama") == 0 || strcmp(model, "gpt2") == 0));
        free(model);
        tc_gguf_close(&g);
    }
    closedir(d);
    CHECK(opened >= 1);
}

/* ---- Round trips ---------------------------------------------------------------- */

static void test_roundtrip_stories(const char *src, const char *tmp)
{
    tc_gguf g, h;
    tc_error err;
    char out[4200];
    if (tc_gguf_open(&g, src, &err) != TC_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    tc_gguf_writer_kv *kvs = writer_kvs_of(&g);
    tc_out_tensor *ts = calloc(g.dir.n_tensors, sizeof *ts);
    for (size_t i = 0; i < g.dir.n_tensors; i++)
        ts[i] = out_of(&g.dir.tensors[i]);
    snprintf(out, sizeof out, "%s/stories-copy.gguf", tmp);
    CHECK_OK(tc_gguf_write(out, kvs, g.n_kv, ts, g.dir.n_tensors, 0, &err), &err);
    CHECK_OK(tc_gguf_open(&h, out, &err), &err);
    if (h.path) {
        check_same_gguf(&g, &h);
        CHECK(h.data_offset == g.data_offset);
        tc_gguf_close(&h);
    }
    /* Same metadata and tensors in the same order and alignment: the original
     * file's layout is the only one, so the copy is byte-identical. */
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK(read_bytes(src, &a, &na) == 0 && read_bytes(out, &b, &nb) == 0);
    CHECK(na == nb && a && b && memcmp(a, b, na) == 0);
    free(a);
    free(b);
    unlink(out);
    free(ts);
    free_writer_kvs(kvs, g.n_kv);
    tc_gguf_close(&g);
}

/* Fills a tensor by converting the fp32 source tensor in ctx to its dtype. */
static int fill_converted(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const tc_tensor *src = ctx;
    float *f;
    if (tc_tensor_load_f32(src, &f, err))
        return TC_ERR;
    int rc = tc_convert_from_f32(t->dtype, f, src->n_elements, dst, err);
    free(f);
    return rc;
}

/* stories260K written in F16 and BF16 through fill callbacks: each value is
 * the source rounded to the narrower type. */
static void test_stories_converted(const char *src, const char *tmp, tc_dtype dtype)
{
    tc_gguf g, h;
    tc_error err;
    char out[4200];
    if (tc_gguf_open(&g, src, &err) != TC_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    tc_gguf_writer_kv *kvs = writer_kvs_of(&g);
    tc_out_tensor *ts = calloc(g.dir.n_tensors, sizeof *ts);
    for (size_t i = 0; i < g.dir.n_tensors; i++) {
        ts[i] = out_of(&g.dir.tensors[i]);
        ts[i].dtype = dtype;
        ts[i].data = NULL;
        ts[i].fill = fill_converted;
        ts[i].ctx = &g.dir.tensors[i];
    }
    snprintf(out, sizeof out, "%s/stories-%s.gguf", tmp, tc_dtype_name(dtype));
    CHECK_OK(tc_gguf_write(out, kvs, g.n_kv, ts, g.dir.n_tensors, 0, &err), &err);
    CHECK_OK(tc_gguf_open(&h, out, &err), &err);
    if (h.path) {
        CHECK(h.n_kv == g.n_kv && h.dir.n_tensors == g.dir.n_tensors);
        size_t bad = 0;
        for (size_t i = 0; i < h.dir.n_tensors && i < g.dir.n_tensors; i++) {
            const tc_tensor *x = &g.dir.tensors[i], *y = &h.dir.tensors[i];
            CHECK(y->dtype == dtype && strcmp(x->name, y->name) == 0 && y->n_elements == x->n_elements);
            CHECK((uintptr_t)(y->data - h.dir.maps[0].data) % 32 == 0);
            float *fx = NULL, *fy = NULL;
            CHECK_OK(tc_tensor_load_f32(x, &fx, &err), &err);
            CHECK_OK(tc_tensor_load_f32(y, &fy, &err), &err);
            for (uint64_t j = 0; fx && fy && j < x->n_elements; j++) {
                float r = dtype == TC_F16 ? tc_f16_to_f32(tc_f32_to_f16(fx[j]))
                                          : tc_bf16_to_f32(tc_f32_to_bf16(fx[j]));
                bad += fy[j] != r;
            }
            free(fx);
            free(fy);
        }
        CHECK(bad == 0);
        tc_gguf_close(&h);
    }
    unlink(out);
    free(ts);
    free_writer_kvs(kvs, g.n_kv);
    tc_gguf_close(&g);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Every value type, nested arrays, every tensor dtype, alignment 64. */
static void test_roundtrip_synthetic(const char *tmp)
{
    tc_error err;
    char out[4200];
    snprintf(out, sizeof out, "%s/synthetic.gguf", tmp);

    tc_gguf_value strs[3] = {
        {.type = TC_GGUF_STRING, .v.s = {"alpha", 5}},
        {.type = TC_GGUF_STRING, .v.s = {"", 0}},
        {.type = TC_GGUF_STRING, .v.s = {"nul\0inside", 10}},
    };
    tc_gguf_value i16s[2] = {{.type = TC_GGUF_I16, .v.i = -300}, {.type = TC_GGUF_I16, .v.i = 32767}};
    tc_gguf_value inner[3] = {
        {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_STRING, 3, strs}},
        {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_I16, 2, i16s}},
        {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_U8, 0, NULL}},
    };
    tc_gguf_value outer[2] = {
        {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_ARRAY, 3, inner}},
        {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_ARRAY, 0, NULL}},
    };
    tc_gguf_writer_kv kvs[] = {
        {"t.u8", {.type = TC_GGUF_U8, .v.u = 255}},
        {"t.i8", {.type = TC_GGUF_I8, .v.i = -128}},
        {"t.u16", {.type = TC_GGUF_U16, .v.u = 65535}},
        {"t.i16", {.type = TC_GGUF_I16, .v.i = -32768}},
        {"t.u32", {.type = TC_GGUF_U32, .v.u = 4000000000u}},
        {"t.i32", {.type = TC_GGUF_I32, .v.i = -5}},
        {"t.f32", {.type = TC_GGUF_F32, .v.f = 0.25}},
        {"t.bool", {.type = TC_GGUF_BOOL, .v.u = 1}},
        {"t.str", {.type = TC_GGUF_STRING, .v.s = {"h\xc3\xa9llo", 6}}},
        {"t.u64", {.type = TC_GGUF_U64, .v.u = UINT64_MAX}},
        {"t.i64", {.type = TC_GGUF_I64, .v.i = INT64_MIN}},
        {"t.f64", {.type = TC_GGUF_F64, .v.f = -1e300}},
        {"t.strs", {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_STRING, 3, strs}}},
        {"t.nested", {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_ARRAY, 2, outer}}},
    };
    const size_t n_kv = sizeof kvs / sizeof kvs[0];

    static const struct {
        const char *name;
        tc_dtype dtype;
        int n_dims;
        int64_t shape[4];
    } spec[] = {
        {"f32", TC_F32, 2, {3, 5}},          {"f16", TC_F16, 1, {7}},
        {"bf16", TC_BF16, 3, {2, 3, 4}},     {"q8_0", TC_Q8_0, 2, {3, 64}},
        {"tq1_0", TC_TQ1_0, 2, {2, 256}},    {"tq2_0", TC_TQ2_0, 1, {512}},
        {"f64", TC_F64, 4, {1, 2, 1, 3}},    {"i8", TC_I8, 1, {5}},
        {"empty", TC_F32, 2, {0, 4}},
    };
    enum { N_T = sizeof spec / sizeof spec[0] };
    tc_out_tensor ts[N_T];
    uint8_t *bufs[N_T];
    uint32_t seed = 12345;
    for (int i = 0; i < N_T; i++) {
        memset(&ts[i], 0, sizeof ts[i]);
        ts[i].name = spec[i].name;
        ts[i].dtype = spec[i].dtype;
        ts[i].n_dims = spec[i].n_dims;
        memcpy(ts[i].shape, spec[i].shape, sizeof ts[i].shape);
        uint64_t nb = 0;
        CHECK_OK(tc_out_tensor_nbytes(&ts[i], &nb, &err), &err);
        bufs[i] = malloc(nb + 1);
        for (uint64_t j = 0; j < nb; j++)
            bufs[i][j] = (uint8_t)lcg(&seed);
        ts[i].data = bufs[i];
    }
    CHECK_OK(tc_gguf_write(out, kvs, n_kv, ts, N_T, 64, &err), &err);

    tc_gguf g;
    CHECK_OK(tc_gguf_open(&g, out, &err), &err);
    if (g.path) {
        CHECK(g.version == 3 && g.alignment == 64 && g.data_offset % 64 == 0);
        /* The writer added general.alignment after the given kvs. */
        CHECK(g.n_kv == n_kv + 1);
        for (size_t i = 0; i < n_kv && i < g.n_kv; i++) {
            CHECK(key_is(&g.kvs[i], kvs[i].key));
            CHECK_MSG(value_eq(&g.kvs[i].value, &kvs[i].value), "key %s", kvs[i].key);
        }
        if (g.n_kv == n_kv + 1) {
            CHECK(key_is(&g.kvs[n_kv], "general.alignment"));
            CHECK(g.kvs[n_kv].value.type == TC_GGUF_U32 && g.kvs[n_kv].value.v.u == 64);
        }
        CHECK(g.dir.n_tensors == N_T);
        for (int i = 0; i < N_T && (size_t)i < g.dir.n_tensors; i++) {
            const tc_tensor *t = &g.dir.tensors[i];
            uint64_t nb = 0;
            CHECK_OK(tc_out_tensor_nbytes(&ts[i], &nb, &err), &err);
            CHECK(strcmp(t->name, spec[i].name) == 0 && t->dtype == spec[i].dtype);
            CHECK(t->n_dims == spec[i].n_dims && memcmp(t->shape, spec[i].shape, sizeof t->shape) == 0);
            CHECK(t->nbytes == nb && memcmp(t->data, bufs[i], nb) == 0);
            CHECK((uint64_t)(t->data - g.dir.maps[0].data) % 64 == 0);
        }
        /* Getters across types. */
        uint32_t u32;
        uint64_t u64;
        float f;
        int b;
        CHECK_OK(tc_gguf_get_u32(&g, "t.u8", &u32, &err), &err);
        CHECK(u32 == 255);
        CHECK(tc_gguf_get_u32(&g, "t.u64", &u32, &err) == TC_ERR && strstr(err.msg, out));
        CHECK_OK(tc_gguf_get_u64(&g, "t.u64", &u64, &err), &err);
        CHECK(u64 == UINT64_MAX);
        CHECK(tc_gguf_get_u64(&g, "t.i32", &u64, &err) == TC_ERR && strstr(err.msg, "negative"));
        CHECK(tc_gguf_get_u32(&g, "t.f32", &u32, &err) == TC_ERR);
        CHECK_OK(tc_gguf_get_f32(&g, "t.i16", &f, &err), &err);
        CHECK(f == -32768.0f);
        CHECK_OK(tc_gguf_get_f32(&g, "t.f32", &f, &err), &err);
        CHECK(f == 0.25f);
        CHECK_OK(tc_gguf_get_bool(&g, "t.bool", &b, &err), &err);
        CHECK(b == 1);
        char *s = NULL;
        CHECK_OK(tc_gguf_get_str(&g, "t.str", &s, &err), &err);
        CHECK(s && strcmp(s, "h\xc3\xa9llo") == 0);
        free(s);
        tc_gguf_close(&g);
    }
    /* The same data at the default alignment: no general.alignment added. */
    CHECK_OK(tc_gguf_write(out, kvs, n_kv, ts, N_T, 0, &err), &err);
    CHECK_OK(tc_gguf_open(&g, out, &err), &err);
    if (g.path) {
        CHECK(g.n_kv == n_kv && g.alignment == 32 && !tc_gguf_find(&g, "general.alignment"));
        tc_gguf_close(&g);
    }
    unlink(out);

    /* What the writer refuses, leaving no file behind. */
    char refused[4200];
    snprintf(refused, sizeof refused, "%s/refused.gguf", tmp);
    CHECK(tc_gguf_write(refused, kvs, n_kv, ts, N_T, 48, &err) == TC_ERR && strstr(err.msg, "power of two"));
    tc_gguf_writer_kv dup[2] = {kvs[0], kvs[0]};
    CHECK(tc_gguf_write(refused, dup, 2, ts, N_T, 0, &err) == TC_ERR && strstr(err.msg, "duplicate"));
    tc_gguf_writer_kv align[1] = {{"general.alignment", {.type = TC_GGUF_U32, .v.u = 32}}};
    CHECK(tc_gguf_write(refused, align, 1, ts, N_T, 64, &err) == TC_ERR && strstr(err.msg, "alignment"));
    tc_gguf_writer_kv range[1] = {{"x", {.type = TC_GGUF_U8, .v.u = 256}}};
    CHECK(tc_gguf_write(refused, range, 1, NULL, 0, 0, &err) == TC_ERR && strstr(err.msg, "range"));
    tc_gguf_value mixed_items[2] = {{.type = TC_GGUF_U8, .v.u = 1}, {.type = TC_GGUF_I8, .v.i = 1}};
    tc_gguf_writer_kv mixed[1] = {{"x", {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_U8, 2, mixed_items}}}};
    CHECK(tc_gguf_write(refused, mixed, 1, NULL, 0, 0, &err) == TC_ERR && strstr(err.msg, refused));
    tc_out_tensor two[2] = {ts[0], ts[0]};
    CHECK(tc_gguf_write(refused, kvs, n_kv, two, 2, 0, &err) == TC_ERR && strstr(err.msg, "duplicate"));
    tc_out_tensor bad = ts[3];
    bad.shape[1] = 48; /* Q8_0 rows of 48: not whole blocks of 32 */
    bad.shape[0] = 2;
    CHECK(tc_gguf_write(refused, NULL, 0, &bad, 1, 0, &err) == TC_ERR && strstr(err.msg, "blocks"));
    bad = ts[0];
    bad.name = "a.name.that.is.far.too.long.for.ggml.which.keeps.sixty.four.bytes";
    CHECK(tc_gguf_write(refused, NULL, 0, &bad, 1, 0, &err) == TC_ERR && strstr(err.msg, refused));
    CHECK(access(refused, F_OK) != 0);
    for (int i = 0; i < N_T; i++)
        free(bufs[i]);
}

/* ---- A file laid out by hand, and its corruptions ---------------------------------- */

typedef struct bytes {
    uint8_t p[4096];
    size_t n;
} bytes;

static void put(bytes *b, uint64_t v, int width)
{
    for (int i = 0; i < width; i++)
        b->p[b->n++] = (uint8_t)(v >> (8 * i));
}

static void put_s(bytes *b, const char *s)
{
    put(b, strlen(s), 8);
    memcpy(b->p + b->n, s, strlen(s));
    b->n += strlen(s);
}

static void pad_to(bytes *b, size_t align)
{
    while (b->n % align)
        b->p[b->n++] = 0;
}

/* Offsets of the fields the corruptions patch. */
typedef struct layout {
    size_t str_len, align_type, align_val, key_a, key_b_len, key_b_last, bool_val, arr_type, arr_len,
        inner_len, f64_type;
    size_t name[3], ndims[3], ne0[3], ne1[3], type[3], offset[3];
} layout;

/* Three tensors: Q8_0 [2][32] (68 bytes, padded to 96), F16 [8] (16, padded
 * to 32), F32 [2][4] (32), so the file ends exactly where the last one does. */
static void build_base(bytes *b, layout *L, uint8_t *data, size_t *data_len)
{
    b->n = 0;
    memcpy(b->p, "GGUF", 4);
    b->n = 4;
    put(b, 3, 4);
    put(b, 3, 8);
    put(b, 6, 8);
    put_s(b, "general.architecture");
    put(b, TC_GGUF_STRING, 4);
    L->str_len = b->n;
    put_s(b, "llama");
    put_s(b, "general.alignment");
    L->align_type = b->n;
    put(b, TC_GGUF_U32, 4);
    L->align_val = b->n;
    put(b, 32, 4);
    L->key_a = b->n;
    put_s(b, "tc.kv_a");
    put(b, TC_GGUF_BOOL, 4);
    L->bool_val = b->n;
    put(b, 1, 1);
    put_s(b, "tc.list");
    put(b, TC_GGUF_ARRAY, 4);
    L->arr_type = b->n;
    put(b, TC_GGUF_STRING, 4);
    L->arr_len = b->n;
    put(b, 2, 8);
    put_s(b, "a");
    put_s(b, "bc");
    put_s(b, "tc.nest");
    put(b, TC_GGUF_ARRAY, 4);
    put(b, TC_GGUF_ARRAY, 4);
    put(b, 2, 8);
    put(b, TC_GGUF_U16, 4);
    L->inner_len = b->n;
    put(b, 2, 8);
    put(b, 1, 2);
    put(b, 2, 2);
    put(b, TC_GGUF_U16, 4);
    put(b, 0, 8);
    L->key_b_len = b->n;
    put_s(b, "tc.kv_b");
    L->key_b_last = b->n - 1;
    L->f64_type = b->n;
    put(b, TC_GGUF_F64, 4);
    double pi = 3.25;
    uint64_t bits;
    memcpy(&bits, &pi, 8);
    put(b, bits, 8);

    static const struct {
        const char *name;
        uint32_t n_dims, type;
        uint64_t ne[2], offset;
    } t[3] = {{"t.0", 2, 8, {32, 2}, 0}, {"t.1", 1, 1, {8, 0}, 96}, {"t.2", 2, 0, {4, 2}, 128}};
    for (int i = 0; i < 3; i++) {
        L->name[i] = b->n;
        put_s(b, t[i].name);
        L->ndims[i] = b->n;
        put(b, t[i].n_dims, 4);
        L->ne0[i] = b->n;
        put(b, t[i].ne[0], 8);
        L->ne1[i] = b->n;
        if (t[i].n_dims == 2)
            put(b, t[i].ne[1], 8);
        L->type[i] = b->n;
        put(b, t[i].type, 4);
        L->offset[i] = b->n;
        put(b, t[i].offset, 8);
    }
    pad_to(b, 32);
    uint32_t seed = 7;
    for (size_t i = 0; i < 160; i++)
        data[i] = (uint8_t)lcg(&seed);
    /* Padding between tensors is zero, as the writer leaves it. */
    memset(data + 68, 0, 96 - 68);
    memset(data + 96 + 16, 0, 16);
    memcpy(b->p + b->n, data, 160);
    b->n += 160;
    *data_len = 160;
}

/* The same content through the writer. */
static void write_base(const char *path, const uint8_t *data, tc_error *err, int *rc)
{
    tc_gguf_value list[2] = {{.type = TC_GGUF_STRING, .v.s = {"a", 1}},
                             {.type = TC_GGUF_STRING, .v.s = {"bc", 2}}};
    tc_gguf_value u16s[2] = {{.type = TC_GGUF_U16, .v.u = 1}, {.type = TC_GGUF_U16, .v.u = 2}};
    tc_gguf_value nest[2] = {{.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_U16, 2, u16s}},
                             {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_U16, 0, NULL}}};
    tc_gguf_writer_kv kvs[6] = {
        {"general.architecture", {.type = TC_GGUF_STRING, .v.s = {"llama", 5}}},
        {"general.alignment", {.type = TC_GGUF_U32, .v.u = 32}},
        {"tc.kv_a", {.type = TC_GGUF_BOOL, .v.u = 1}},
        {"tc.list", {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_STRING, 2, list}}},
        {"tc.nest", {.type = TC_GGUF_ARRAY, .v.arr = {TC_GGUF_ARRAY, 2, nest}}},
        {"tc.kv_b", {.type = TC_GGUF_F64, .v.f = 3.25}},
    };
    tc_out_tensor ts[3] = {
        {.name = "t.0", .dtype = TC_Q8_0, .n_dims = 2, .shape = {2, 32}, .data = data},
        {.name = "t.1", .dtype = TC_F16, .n_dims = 1, .shape = {8}, .data = data + 96},
        {.name = "t.2", .dtype = TC_F32, .n_dims = 2, .shape = {2, 4}, .data = data + 128},
    };
    *rc = tc_gguf_write(path, kvs, 6, ts, 3, 32, err);
}

/* Opening must fail cleanly: an error naming the file, and never an
 * allocation sized by the corrupted field. */
static void expect_refused(const char *path, const char *what, const char *expect)
{
    tc_gguf g;
    tc_error err;
    err.msg[0] = '\0';
    int rc = tc_gguf_open(&g, path, &err);
    CHECK_MSG(rc == TC_ERR, "%s: opened", what);
    if (rc != TC_ERR) {
        tc_gguf_close(&g);
        return;
    }
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
    CHECK_MSG(strstr(err.msg, "out of memory") == NULL, "%s: %s", what, err.msg);
    if (expect)
        CHECK_MSG(strstr(err.msg, expect) != NULL, "%s: expected '%s' in: %s", what, expect, err.msg);
    if (getenv("TC_SHOW")) /* TC_SHOW=1 lists every refusal message */
        printf("%-28s %s\n", what, err.msg);
    /* The struct is left closed. */
    CHECK(g.path == NULL && g.kvs == NULL && g.dir.n_tensors == 0);
}

typedef struct patch {
    const char *what;
    size_t off;
    int width;
    uint64_t value;
    size_t off2; /* a second field, when width2 > 0 */
    int width2;
    uint64_t value2;
    const char *expect;
} patch;

static void test_hostile(const char *tmp)
{
    bytes base;
    layout L;
    uint8_t data[160];
    size_t data_len;
    tc_error err;
    char path[4200], written[4200];
    build_base(&base, &L, data, &data_len);
    snprintf(path, sizeof path, "%s/hostile.gguf", tmp);
    snprintf(written, sizeof written, "%s/written.gguf", tmp);

    /* The hand-made file opens, and the writer produces exactly its bytes. */
    CHECK(write_bytes(path, base.p, base.n) == 0);
    tc_gguf g;
    CHECK_OK(tc_gguf_open(&g, path, &err), &err);
    if (g.path) {
        CHECK(g.n_kv == 6 && g.dir.n_tensors == 3 && g.data_offset == base.n - 160);
        const tc_tensor *t0 = tc_tensordir_find(&g.dir, "t.0");
        CHECK(t0 && t0->dtype == TC_Q8_0 && t0->shape[0] == 2 && t0->shape[1] == 32 && t0->nbytes == 68);
        const tc_gguf_value *nest = tc_gguf_find(&g, "tc.nest");
        CHECK(nest && nest->v.arr.n == 2 && nest->v.arr.items[0].v.arr.n == 2 &&
              nest->v.arr.items[0].v.arr.items[1].v.u == 2 && nest->v.arr.items[1].v.arr.n == 0);
        tc_gguf_close(&g);
    }
    int rc;
    write_base(written, data, &err, &rc);
    CHECK_MSG(rc == TC_OK, "%s", err.msg);
    uint8_t *w = NULL;
    size_t wn = 0;
    CHECK(read_bytes(written, &w, &wn) == 0);
    CHECK(w && wn == base.n && memcmp(w, base.p, wn) == 0);
    free(w);
    unlink(written);

    /* Version 2 has the same layout. */
    bytes v2 = base;
    v2.p[4] = 2;
    CHECK(write_bytes(path, v2.p, v2.n) == 0);
    CHECK_OK(tc_gguf_open(&g, path, &err), &err);
    if (g.path) {
        CHECK(g.version == 2);
        tc_gguf_close(&g);
    }

    /* Cut short at every byte. */
    for (size_t n = 0; n < base.n; n++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", n);
        CHECK(write_bytes(path, base.p, n) == 0);
        expect_refused(path, what, NULL);
    }

    const uint64_t huge = (uint64_t)1 << 62;
    const patch patches[] = {
        {"bad magic", 0, 1, 'X', 0, 0, 0, "not a GGUF file"},
        {"version 1", 4, 4, 1, 0, 0, 0, "version 1"},
        {"version 4", 4, 4, 4, 0, 0, 0, "version 4"},
        {"big-endian", 4, 4, 0x03000000, 0, 0, 0, "big-endian"},
        {"n_tensors 2^62", 8, 8, huge, 0, 0, 0, "tensors"},
        {"n_kv 2^62", 16, 8, huge, 0, 0, 0, "metadata entries"},
        {"key length 2^62", 24, 8, huge, 0, 0, 0, "truncated"},
        {"string length 2^62", L.str_len, 8, huge, 0, 0, 0, "truncated"},
        {"array length 2^62", L.arr_len, 8, huge, 0, 0, 0, "array elements"},
        {"inner array length 2^62", L.inner_len, 8, huge, 0, 0, 0, "array elements"},
        {"array of type 13", L.arr_type, 4, 13, 0, 0, 0, "unknown value type 13"},
        {"value type 13", L.f64_type, 4, 13, 0, 0, 0, "unknown value type 13"},
        {"bool 2", L.bool_val, 1, 2, 0, 0, 0, "bool"},
        {"alignment 0", L.align_val, 4, 0, 0, 0, 0, "power of two"},
        {"alignment 3", L.align_val, 4, 3, 0, 0, 0, "power of two"},
        {"alignment as i32", L.align_type, 4, TC_GGUF_I32, 0, 0, 0, "u32"},
        {"empty key", L.key_a, 8, 0, 0, 0, 0, "empty"},
        {"NUL in a key", L.key_b_last, 1, 0, 0, 0, 0, "NUL"},
        {"duplicate key", L.key_b_last, 1, 'a', 0, 0, 0, "duplicate metadata key 'tc.kv_a'"},
        {"empty tensor name", L.name[1], 8, 0, 0, 0, 0, "empty"},
        {"duplicate tensor name", L.name[1] + 8 + 2, 1, '0', 0, 0, 0, "duplicate tensor name 't.0'"},
        {"n_dims 0", L.ndims[0], 4, 0, 0, 0, 0, "dimensions"},
        {"n_dims 5", L.ndims[0], 4, 5, 0, 0, 0, "dimensions"},
        {"2^40 elements", L.ne0[1], 8, (uint64_t)1 << 40, 0, 0, 0, "beyond the end"},
        {"ne product overflow", L.ne0[0], 8, (uint64_t)1 << 40, L.ne1[0], 8, (uint64_t)1 << 40,
         "overflows"},
        {"ne 2^63", L.ne0[2], 8, (uint64_t)1 << 63, 0, 0, 0, "overflows"},
        {"type IQ2_XXS", L.type[1], 4, 16, 0, 0, 0, "ggml type 16 (IQ2_XXS)"},
        {"Q4_0 rows of 8", L.type[1], 4, 2, 0, 0, 0, "not a whole number of Q4_0 blocks"},
        {"type 99", L.type[1], 4, 99, 0, 0, 0, "ggml type 99"},
        {"partial Q8_0 block", L.ne0[0], 8, 16, L.ne1[0], 8, 4, "blocks"},
        {"offset beyond file", L.offset[1], 8, 1 << 20, 0, 0, 0, "beyond the end"},
        {"offset near 2^64", L.offset[2], 8, UINT64_MAX - 31, 0, 0, 0, "beyond"},
        {"misaligned offset", L.offset[1], 8, 100, 0, 0, 0, "alignment"},
        {"overlap", L.offset[1], 8, 64, 0, 0, 0, "overlap"},
        {"same offset", L.offset[2], 8, 96, 0, 0, 0, "overlap"},
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        const patch *p = &patches[i];
        bytes c = base;
        for (int k = 0; k < p->width; k++)
            c.p[p->off + (size_t)k] = (uint8_t)(p->value >> (8 * k));
        for (int k = 0; k < p->width2; k++)
            c.p[p->off2 + (size_t)k] = (uint8_t)(p->value2 >> (8 * k));
        CHECK(write_bytes(path, c.p, c.n) == 0);
        expect_refused(path, p->what, p->expect);
    }

    /* Arrays inside arrays: eight levels are read, a ninth is refused, and a
     * deep bomb costs nothing. */
    const int depths[] = {8, 9, 200};
    for (int i = 0; i < 3; i++) {
        bytes bomb;
        bomb.n = 0;
        memcpy(bomb.p, "GGUF", 4);
        bomb.n = 4;
        put(&bomb, 3, 4);
        put(&bomb, 0, 8);
        put(&bomb, 1, 8);
        put_s(&bomb, "bomb");
        put(&bomb, TC_GGUF_ARRAY, 4);
        for (int d = 1; d < depths[i]; d++) {
            put(&bomb, TC_GGUF_ARRAY, 4);
            put(&bomb, 1, 8);
        }
        put(&bomb, TC_GGUF_U8, 4);
        put(&bomb, 1, 8);
        put(&bomb, 42, 1);
        CHECK(write_bytes(path, bomb.p, bomb.n) == 0);
        if (depths[i] <= TC_GGUF_MAX_DEPTH) {
            CHECK_OK(tc_gguf_open(&g, path, &err), &err);
            if (g.path) {
                const tc_gguf_value *v = tc_gguf_find(&g, "bomb");
                for (int d = 0; v && d < depths[i]; d++)
                    v = v->type == TC_GGUF_ARRAY && v->v.arr.n == 1 ? &v->v.arr.items[0] : NULL;
                CHECK(v && v->type == TC_GGUF_U8 && v->v.u == 42);
                tc_gguf_close(&g);
            }
        } else {
            expect_refused(path, "nested arrays", "deeper");
        }
    }

    /* More array elements in all than the reader decodes, though the file
     * holds every byte of them. */
    {
        const size_t n = (size_t)TC_GGUF_MAX_ITEMS + 1;
        bytes head;
        head.n = 0;
        memcpy(head.p, "GGUF", 4);
        head.n = 4;
        put(&head, 3, 4);
        put(&head, 0, 8);
        put(&head, 1, 8);
        put_s(&head, "big");
        put(&head, TC_GGUF_ARRAY, 4);
        put(&head, TC_GGUF_U8, 4);
        put(&head, n, 8);
        uint8_t *big = calloc(head.n + n, 1);
        CHECK(big != NULL);
        if (big) {
            memcpy(big, head.p, head.n);
            CHECK(write_bytes(path, big, head.n + n) == 0);
            expect_refused(path, "too many array elements", "array elements in all");
            free(big);
        }
    }

    /* Not a file at all. */
    expect_refused(tmp, "a directory", NULL);
    unlink(path);
}

int main(void)
{
#ifndef TU_ASAN
    /* A corrupted count that reached malloc would now fail as "out of memory",
     * which expect_refused reports. */
    struct rlimit lim = {(rlim_t)1 << 30, (rlim_t)1 << 30};
    setrlimit(RLIMIT_DATA, &lim);
#endif
    char tmp[4096], stories[4096];
    if (!tu_tmpdir(tmp, sizeof tmp))
        return tu_skip("no temporary directory");
    test_roundtrip_synthetic(tmp);
    test_hostile(tmp);
    if (tu_asset(stories, sizeof stories, "models/stories260K/stories260K.gguf")) {
        test_stories(stories);
        test_roundtrip_stories(stories, tmp);
        test_stories_converted(stories, tmp, TC_F16);
        test_stories_converted(stories, tmp, TC_BF16);
    } else {
        printf("note: models/stories260K/stories260K.gguf is absent; real-model checks skipped\n");
    }
    test_vocab_files();
    rmdir(tmp);
    return tu_finish("test_gguf");
}
