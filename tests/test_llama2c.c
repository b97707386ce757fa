/* llama2.c legacy checkpoints: the three real models open with the shapes
 * their authors published, tile their files exactly, and survive a rewrite
 * (weights bit-exact, recomputed RoPE tables within one float ulp); a
 * separate classifier round-trips; every corruption is a clean error. */
#include "testutil.h"

#include <stdint.h>

#include "tc/forward.h"
#include "tc/llama2c.h"
#include "tc/model.h"

/* ---- Small file helpers ---------------------------------------------------- */

static int spew(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int32_t get_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void set_i32(uint8_t *p, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- Expected layout, computed independently of the library ------------------ */

static const char *const LAYER_PARTS[9] = {
    "attention_norm.weight", "attention.wq.weight",    "attention.wk.weight",
    "attention.wv.weight",   "attention.wo.weight",    "ffn_norm.weight",
    "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight"};

/* Names in file order (RoPE tables excluded), written into names[]; returns the count. */
static int file_order(const tc_llama2c_header *h, char names[][64], int cap)
{
    int n = 0;
    snprintf(names[n++], 64, "tok_embeddings.weight");
    for (int p = 0; p < 9; p++)
        for (int l = 0; l < h->n_layers && n < cap; l++)
            snprintf(names[n++], 64, "layers.%d.%s", l, LAYER_PARTS[p]);
    snprintf(names[n++], 64, "norm.weight");
    if (!h->shared_classifier)
        snprintf(names[n++], 64, "output.weight");
    return n;
}

static uint64_t rope_bytes(const tc_llama2c_header *h)
{
    return (uint64_t)h->seq_len * (uint64_t)(h->dim / h->n_heads) * 4u;
}

/* The tensors, in file order, lie back to back from byte 28; the RoPE tables
 * sit between norm.weight and the classifier. */
static void check_tiling(const tc_llama2c *c, const uint8_t *base, uint64_t size)
{
    static char names[9 * 64 + 3][64];
    int n = file_order(&c->hdr, names, 9 * 64 + 3);
    CHECK((size_t)n == c->dir.n_tensors);
    uint64_t off = 28;
    for (int i = 0; i < n; i++) {
        const tc_tensor *t = tc_tensordir_find(&c->dir, names[i]);
        CHECK_MSG(t != NULL, "%s missing", names[i]);
        if (!t)
            return;
        CHECK_MSG((uint64_t)(t->data - base) == off, "%s at %llu, expected %llu", names[i],
                  (unsigned long long)(t->data - base), (unsigned long long)off);
        CHECK(t->dtype == TC_F32);
        off += t->nbytes;
        if (strcmp(names[i], "norm.weight") == 0)
            off += rope_bytes(&c->hdr);
    }
    CHECK(off == size);
}

/* ---- Real checkpoints ------------------------------------------------------------ */

typedef struct known_model {
    const char *rel;
    int32_t dim, hidden, layers, heads, kv_heads, vocab, seq;
} known_model;

static const known_model MODELS[] = {
    {"models/stories260K/stories260K.bin", 64, 172, 5, 8, 4, 512, 512},
    {"models/llama2xs/llama2xs.bin", 64, 192, 5, 8, 4, 512, 256},
    {"models/babyllama105/babyllama105.bin", 128, 352, 5, 8, 4, 105, 256},
};

static void check_shapes(const tc_llama2c *c, const known_model *m)
{
    const tc_llama2c_header *h = &c->hdr;
    CHECK(h->dim == m->dim && h->hidden_dim == m->hidden && h->n_layers == m->layers);
    CHECK(h->n_heads == m->heads && h->n_kv_heads == m->kv_heads);
    CHECK(h->vocab_size == m->vocab && h->seq_len == m->seq && h->shared_classifier == 1);
    CHECK(tc_tensordir_find(&c->dir, "output.weight") == NULL);
    const int64_t hs = m->dim / m->heads;
    const tc_tensor *t = tc_tensordir_find(&c->dir, "tok_embeddings.weight");
    CHECK(t && t->n_dims == 2 && t->shape[0] == m->vocab && t->shape[1] == m->dim);
    t = tc_tensordir_find(&c->dir, "layers.4.attention.wk.weight");
    CHECK(t && t->n_dims == 2 && t->shape[0] == m->kv_heads * hs && t->shape[1] == m->dim);
    t = tc_tensordir_find(&c->dir, "layers.0.attention.wo.weight");
    CHECK(t && t->shape[0] == m->dim && t->shape[1] == m->heads * hs);
    t = tc_tensordir_find(&c->dir, "layers.2.feed_forward.w2.weight");
    CHECK(t && t->shape[0] == m->dim && t->shape[1] == m->hidden);
    t = tc_tensordir_find(&c->dir, "layers.3.feed_forward.w1.weight");
    CHECK(t && t->shape[0] == m->hidden && t->shape[1] == m->dim);
    t = tc_tensordir_find(&c->dir, "layers.1.ffn_norm.weight");
    CHECK(t && t->n_dims == 1 && t->shape[0] == m->dim);
    CHECK(tc_tensordir_find(&c->dir, "layers.5.ffn_norm.weight") == NULL);
}

/* Writes c back out and compares with the original bytes: everything but the
 * RoPE tables must be identical; the recomputed tables must agree to 1e-6. */
static void check_rewrite(const tc_llama2c *c, const uint8_t *orig, size_t size, const char *out,
                          const char *label)
{
    tc_error err;
    tc_out_tensor *ot = calloc(c->dir.n_tensors, sizeof *ot);
    if (!ot) {
        CHECK(0);
        return;
    }
    for (size_t i = 0; i < c->dir.n_tensors; i++) {
        const tc_tensor *t = &c->dir.tensors[i];
        ot[i].name = t->name;
        ot[i].dtype = t->dtype;
        ot[i].n_dims = t->n_dims;
        memcpy(ot[i].shape, t->shape, sizeof t->shape);
        ot[i].data = t->data;
    }
    CHECK_OK(tc_llama2c_write(out, &c->hdr, ot, c->dir.n_tensors, &err), &err);
    free(ot);
    size_t n = 0;
    uint8_t *w = tu_read_file(out, &n);
    CHECK(w && n == size);
    if (!w || n != size) {
        free(w);
        return;
    }
    const tc_tensor *norm = tc_tensordir_find(&c->dir, "norm.weight");
    uint64_t rope_start = (uint64_t)(norm->data - c->dir.maps[0].data) + norm->nbytes;
    uint64_t rope_end = rope_start + rope_bytes(&c->hdr);
    CHECK(memcmp(w, orig, (size_t)rope_start) == 0);
    CHECK(memcmp(w + rope_end, orig + rope_end, size - (size_t)rope_end) == 0);
    double maxdiff = 0;
    uint64_t exact = 0, count = (rope_end - rope_start) / 4;
    for (uint64_t off = rope_start; off < rope_end; off += 4) {
        double d = fabs((double)get_f32(w + off) - (double)get_f32(orig + off));
        maxdiff = d > maxdiff ? d : maxdiff;
        exact += memcmp(w + off, orig + off, 4) == 0;
    }
    printf("%s: recomputed freq_cis: max |difference| %.3g, %llu of %llu values bit-exact\n", label,
           maxdiff, (unsigned long long)exact, (unsigned long long)count);
    CHECK(maxdiff <= 1e-6);
    CHECK(exact * 10 >= count * 9); /* the same float32 recipe, not merely close */
    /* The rewrite itself opens as the same model. */
    tc_llama2c again;
    CHECK_OK(tc_llama2c_open(&again, out, &err), &err);
    CHECK(again.dir.n_tensors == c->dir.n_tensors);
    CHECK(memcmp(&again.hdr, &c->hdr, sizeof again.hdr) == 0);
    tc_llama2c_close(&again);
    free(w);
    unlink(out);
}

static int test_real_models(const char *tmp)
{
    int tested = 0;
    for (size_t k = 0; k < sizeof MODELS / sizeof MODELS[0]; k++) {
        char path[1024], out[1024];
        if (!tu_asset(path, sizeof path, MODELS[k].rel)) {
            printf("note: %s absent, not tested\n", MODELS[k].rel);
            continue;
        }
        tested++;
        tc_llama2c c;
        tc_error err;
        CHECK_OK(tc_llama2c_open(&c, path, &err), &err);
        if (c.dir.n_maps != 1)
            continue;
        size_t size = 0;
        uint8_t *orig = tu_read_file(path, &size);
        CHECK(orig && size == c.dir.maps[0].size);
        check_shapes(&c, &MODELS[k]);
        check_tiling(&c, c.dir.maps[0].data, c.dir.maps[0].size);
        /* Values come from the file, not merely its offsets. */
        const tc_tensor *emb = tc_tensordir_find(&c.dir, "tok_embeddings.weight");
        CHECK(orig && emb && get_f32(orig + 28) == get_f32(emb->data));
        snprintf(out, sizeof out, "%s/rewrite.bin", tmp);
        if (orig)
            check_rewrite(&c, orig, size, out, MODELS[k].rel);
        free(orig);
        tc_llama2c_close(&c);
        CHECK(c.path == NULL && c.dir.n_tensors == 0);
    }
    return tested;
}

/* ---- A synthetic model with a separate classifier ---------------------------------- */

typedef struct synth {
    tc_llama2c_header hdr;
    float *values[9 * 2 + 3]; /* one array per tensor, in file order */
    char names[9 * 2 + 3][64];
    tc_out_tensor out[9 * 2 + 3];
    int n;
} synth;

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Copies the tensor's values through the fill callback, so both ways a
 * writer gets bytes are exercised. */
static int fill_from_ctx(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    uint64_t n;
    if (tc_out_tensor_nbytes(t, &n, err))
        return TC_ERR;
    memcpy(dst, ctx, (size_t)n);
    return TC_OK;
}

static void shape_of(const tc_llama2c_header *h, const char *name, int *nd, int64_t *shape)
{
    const int64_t d = h->dim, hs = h->dim / h->n_heads, hid = h->hidden_dim;
    *nd = 2;
    if (strstr(name, "norm")) {
        *nd = 1;
        shape[0] = d;
    } else if (strstr(name, "tok_embeddings") || strstr(name, "output")) {
        shape[0] = h->vocab_size, shape[1] = d;
    } else if (strstr(name, ".wq.")) {
        shape[0] = h->n_heads * hs, shape[1] = d;
    } else if (strstr(name, ".wk.") || strstr(name, ".wv.")) {
        shape[0] = h->n_kv_heads * hs, shape[1] = d;
    } else if (strstr(name, ".wo.")) {
        shape[0] = d, shape[1] = h->n_heads * hs;
    } else if (strstr(name, ".w2.")) {
        shape[0] = d, shape[1] = hid;
    } else {
        shape[0] = hid, shape[1] = d;
    }
}

static void synth_make(synth *s)
{
    memset(s, 0, sizeof *s);
    s->hdr = (tc_llama2c_header){8, 12, 2, 2, 1, 10, 4, 0, 0, 0};
    s->n = file_order(&s->hdr, s->names, 9 * 2 + 3);
    uint32_t seed = 1234;
    for (int i = 0; i < s->n; i++) {
        tc_out_tensor *o = &s->out[i];
        o->name = s->names[i];
        o->dtype = TC_F32;
        shape_of(&s->hdr, s->names[i], &o->n_dims, o->shape);
        int64_t n = o->n_dims == 1 ? o->shape[0] : o->shape[0] * o->shape[1];
        s->values[i] = malloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++)
            s->values[i][j] = (float)lcg(&seed) / (float)(1u << 24) - 0.5f;
        if (i % 2) {
            o->fill = fill_from_ctx;
            o->ctx = s->values[i];
        } else {
            o->data = s->values[i];
        }
    }
}

static void synth_free(synth *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->values[i]);
}

static void test_separate_classifier(const synth *s, const char *path)
{
    tc_error err;
    CHECK_OK(tc_llama2c_write(path, &s->hdr, s->out, (size_t)s->n, &err), &err);
    size_t size = 0;
    uint8_t *b = tu_read_file(path, &size);
    CHECK(b && size >= 28 && get_i32(b + 20) == -10); /* negative vocab: classifier stored */
    tc_llama2c c;
    CHECK_OK(tc_llama2c_open(&c, path, &err), &err);
    CHECK(c.hdr.vocab_size == 10 && c.hdr.shared_classifier == 0);
    CHECK(c.dir.n_tensors == (size_t)s->n);
    if (c.dir.n_maps == 1)
        check_tiling(&c, c.dir.maps[0].data, c.dir.maps[0].size);
    for (int i = 0; i < s->n; i++) {
        const tc_tensor *t = tc_tensordir_find(&c.dir, s->names[i]);
        CHECK_MSG(t && memcmp(t->data, s->values[i], (size_t)t->nbytes) == 0, "%s differs", s->names[i]);
    }
    const tc_tensor *out = tc_tensordir_find(&c.dir, "output.weight");
    CHECK(out && out->shape[0] == 10 && out->shape[1] == 8);
    /* The RoPE tables follow norm.weight: head size 4, so two frequencies,
     * 1 and 1/100; row t=1 holds cos/sin of those angles. */
    const tc_tensor *norm = tc_tensordir_find(&c.dir, "norm.weight");
    if (norm) {
        const uint8_t *re = norm->data + norm->nbytes, *im = re + 4 * 2 * 4;
        CHECK(get_f32(re) == 1.0f && get_f32(re + 4) == 1.0f && get_f32(im) == 0.0f);
        CHECK_NEAR(get_f32(re + 8), cos(1.0), 1e-7);
        CHECK_NEAR(get_f32(im + 8), sin(1.0), 1e-7);
        CHECK_NEAR(get_f32(im + 12), sin(0.01), 2e-9);
        CHECK_NEAR(get_f32(re + 3 * 8 + 4), cos(0.03), 1e-7);
    }
    tc_llama2c_close(&c);
    /* The same weights with a shared classifier: positive vocab, no output.weight. */
    tc_llama2c_header shared = s->hdr;
    shared.shared_classifier = 1;
    CHECK_OK(tc_llama2c_write(path, &shared, s->out, (size_t)s->n - 1, &err), &err);
    CHECK_OK(tc_llama2c_open(&c, path, &err), &err);
    CHECK(c.hdr.shared_classifier == 1 && c.hdr.vocab_size == 10);
    CHECK(tc_tensordir_find(&c.dir, "output.weight") == NULL);
    CHECK(c.dir.n_tensors == (size_t)s->n - 1);
    tc_llama2c_close(&c);
    free(b);
}

/* ---- Writer refusals ---------------------------------------------------------------- */

static void expect_write_error(const char *path, const tc_llama2c_header *h, const tc_out_tensor *t,
                               size_t n, const char *needle)
{
    tc_error err;
    unlink(path);
    CHECK(tc_llama2c_write(path, h, t, n, &err) == TC_ERR);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, needle), "message: %s", err.msg);
    CHECK(access(path, F_OK) != 0); /* nothing half-written left behind */
}

static void test_write_errors(synth *s, const char *path)
{
    const size_t n = (size_t)s->n;
    expect_write_error(path, &s->hdr, s->out, n - 1, "output.weight"); /* missing */
    tc_llama2c_header shared = s->hdr;
    shared.shared_classifier = 1;
    expect_write_error(path, &shared, s->out, n, "no place"); /* a classifier nowhere to go */
    tc_out_tensor saved = s->out[3];
    s->out[3].shape[0]++;
    expect_write_error(path, &s->hdr, s->out, n, "shape");
    s->out[3] = saved;
    s->out[3].dtype = TC_F16;
    expect_write_error(path, &s->hdr, s->out, n, "F32");
    s->out[3] = saved;
    s->out[3].name = s->out[4].name;
    expect_write_error(path, &s->hdr, s->out, n, "twice");
    s->out[3] = saved;
    s->out[3].name = "layers.7.attention.wq.weight";
    expect_write_error(path, &s->hdr, s->out, n, "no place");
    s->out[3] = saved;
    tc_llama2c_header bad = s->hdr;
    bad.n_heads = 3;
    expect_write_error(path, &bad, s->out, n, "divisible");
    /* A tensor that cannot produce its bytes aborts the write and leaves no file. */
    saved = s->out[1];
    s->out[1].data = NULL;
    s->out[1].fill = NULL;
    expect_write_error(path, &s->hdr, s->out, n, "fill");
    s->out[1] = saved;
    tc_error err;
    CHECK_OK(tc_llama2c_write(path, &s->hdr, s->out, n, &err), &err);
}

/* ---- Hostile files ------------------------------------------------------------------ */

static void expect_open_error(const char *path, const void *bytes, size_t n, const char *needle,
                              const char *label)
{
    tc_llama2c c;
    tc_error err;
    if (spew(path, bytes, n)) {
        CHECK(0);
        return;
    }
    int rc = tc_llama2c_open(&c, path, &err);
    CHECK_MSG(rc == TC_ERR, "%s opened", label);
    if (rc != TC_ERR) {
        tc_llama2c_close(&c);
        return;
    }
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", label, err.msg);
    CHECK_MSG(!needle || strstr(err.msg, needle), "%s: expected '%s' in: %s", label, needle, err.msg);
    CHECK_MSG(!strchr(err.msg, '\n'), "%s: message of more than one line: %s", label, err.msg);
    CHECK(c.path == NULL && c.dir.n_tensors == 0 && c.dir.n_maps == 0);
    tc_llama2c_close(&c); /* harmless after a failed open */
}

static void with_field(const uint8_t *good, size_t n, uint8_t *buf, int field, int32_t v)
{
    memcpy(buf, good, n);
    set_i32(buf + 4 * field, v);
}

static void with_header(const uint8_t *good, size_t n, uint8_t *buf, const int32_t h[7])
{
    memcpy(buf, good, n);
    for (int i = 0; i < 7; i++)
        set_i32(buf + 4 * i, h[i]);
}

static void test_hostile(const char *good_path, const char *path)
{
    static const char *const FIELDS[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                          "n_kv_heads", "vocab_size", "seq_len"};
    size_t n = 0;
    uint8_t *good = tu_read_file(good_path, &n);
    uint8_t *buf = malloc(n + 16);
    CHECK(good && buf && n > 64);
    if (!good || !buf || n <= 64) {
        free(good);
        free(buf);
        return;
    }
    char label[64];
    /* Truncation inside and at the end of every header field, then in the weights. */
    for (size_t cut = 0; cut < 28; cut++) {
        snprintf(label, sizeof label, "header cut at %zu", cut);
        expect_open_error(path, good, cut, FIELDS[cut / 4], label);
    }
    const size_t cuts[] = {28, 29, 28 + 4 * 8 * 10, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(label, sizeof label, "weights cut at %zu", cuts[i]);
        expect_open_error(path, good, cuts[i], "truncated", label);
    }
    /* Trailing garbage. */
    memcpy(buf, good, n);
    memset(buf + n, 0xab, 16);
    expect_open_error(path, buf, n + 1, "trailing", "one trailing byte");
    expect_open_error(path, buf, n + 16, "trailing", "16 trailing bytes");
    /* Zero, negative and absurd values in every field. */
    const int32_t bad_values[] = {0, -1, INT32_MIN, INT32_MAX, 1 << 21};
    for (int f = 0; f < 7; f++)
        for (size_t v = 0; v < sizeof bad_values / sizeof bad_values[0]; v++) {
            with_field(good, n, buf, f, bad_values[v]);
            snprintf(label, sizeof label, "%s = %d", FIELDS[f], (int)bad_values[v]);
            /* -1 is a valid vocab marker (separate classifier of 1): the size is then wrong. */
            expect_open_error(path, buf, n, f == 5 && bad_values[v] == -1 ? "needs" : FIELDS[f], label);
        }
    /* Shapes that cannot be: heads not dividing dim, kv heads not dividing heads, odd head size. */
    with_header(good, n, buf, (int32_t[7]){8, 12, 2, 3, 1, -10, 4});
    expect_open_error(path, buf, n, "divisible", "dim % n_heads");
    with_header(good, n, buf, (int32_t[7]){8, 12, 2, 2, 3, -10, 4});
    expect_open_error(path, buf, n, "divisible", "n_heads % n_kv_heads");
    with_header(good, n, buf, (int32_t[7]){6, 12, 2, 2, 1, -10, 4});
    expect_open_error(path, buf, n, "odd", "odd head size");
    /* Consistent but wrong-sized headers: the layout must fit the file exactly. */
    with_header(good, n, buf, (int32_t[7]){8, 12, 3, 2, 1, -10, 4});
    expect_open_error(path, buf, n, "needs", "one layer too many");
    with_header(good, n, buf, (int32_t[7]){8, 12, 1, 2, 1, -10, 4});
    expect_open_error(path, buf, n, "trailing", "one layer too few");
    with_header(good, n, buf, (int32_t[7]){8, 12, 2, 2, 1, 10, 4});
    expect_open_error(path, buf, n, "trailing", "classifier present but marked shared");
    /* 2^40 elements in the embedding table alone, and every field at its bound
     * (a product near 2^60 bytes that must neither wrap nor be allocated). */
    with_header(good, n, buf, (int32_t[7]){1 << 20, 12, 2, 2, 1, -(1 << 20), 4});
    expect_open_error(path, buf, n, "needs", "2^40-element embedding");
    with_header(good, n, buf, (int32_t[7]){1 << 20, 1 << 20, 4096, 1 << 10, 1 << 10, 1 << 20, 1 << 20});
    expect_open_error(path, buf, n, "needs", "every field at its bound");
    with_header(good, n, buf, (int32_t[7]){INT32_MAX, INT32_MAX, INT32_MAX, 1, 1, INT32_MAX, INT32_MAX});
    expect_open_error(path, buf, n, "dim", "fields beyond every bound");
    free(good);
    free(buf);
    /* Not a file at all. */
    tc_llama2c c;
    tc_error err;
    char missing[1100];
    snprintf(missing, sizeof missing, "%s.does-not-exist", path);
    CHECK(tc_llama2c_open(&c, missing, &err) == TC_ERR && strstr(err.msg, missing));
    tc_llama2c_close(&c);
}

/* ---- Versions 1 and 2, built by hand as llama2.c's export.py writes them -------------
 * version1_export: uint32 0x616b3432, int32 1, the 7 int32 (vocab positive),
 * a uint8 shared-classifier flag, zeros up to byte 256, then fp32: every
 * layer's attention norm, every layer's ffn norm, the final norm, the
 * embedding, then wq, wk, wv, wo, w1, w2, w3 (each over all layers) and the
 * classifier when it is not shared.  version2_export: the same header with an
 * int32 group size right after the flag (byte 37); the three norms in fp32,
 * then each matrix of that order as int8 values followed by its fp32 scales,
 * one per group of consecutive values of the flattened matrix. */

#define V_MAGIC 0x616b3432u

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put_bytes(bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_i32(bytes *b, int32_t v)
{
    uint8_t t[4];
    set_i32(t, v);
    put_bytes(b, t, 4);
}

static void put_f32(bytes *b, float f)
{
    int32_t v;
    memcpy(&v, &f, 4);
    put_i32(b, v);
}

static const char *const MATRICES[7] = {"attention.wq.weight",    "attention.wk.weight",
                                        "attention.wv.weight",    "attention.wo.weight",
                                        "feed_forward.w1.weight", "feed_forward.w2.weight",
                                        "feed_forward.w3.weight"};

/* export.py's version-1/2 order (names; RoPE tables do not exist there). */
static int versioned_order(const tc_llama2c_header *h, char names[][64], int cap)
{
    int n = 0;
    for (int l = 0; l < h->n_layers && n < cap; l++)
        snprintf(names[n++], 64, "layers.%d.attention_norm.weight", l);
    for (int l = 0; l < h->n_layers && n < cap; l++)
        snprintf(names[n++], 64, "layers.%d.ffn_norm.weight", l);
    snprintf(names[n++], 64, "norm.weight");
    snprintf(names[n++], 64, "tok_embeddings.weight");
    for (int p = 0; p < 7; p++)
        for (int l = 0; l < h->n_layers && n < cap; l++)
            snprintf(names[n++], 64, "layers.%d.%s", l, MATRICES[p]);
    if (!h->shared_classifier)
        snprintf(names[n++], 64, "output.weight");
    return n;
}

/* The fp32 model a version-2 file means: every tensor as runq.c sees it
 * (norms as stored, matrices q * scale), under the legacy names. */
typedef struct dequant {
    int n;
    char (*names)[64];
    float **values;
    tc_out_tensor *out;
} dequant;

static void dequant_free(dequant *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->values[i]);
    free(d->names);
    free(d->values);
    free(d->out);
    memset(d, 0, sizeof *d);
}

static float *tensor_floats(const tc_tensor *t)
{
    float *v = malloc((size_t)t->n_elements * sizeof *v + 1);
    if (v)
        memcpy(v, t->data, (size_t)t->n_elements * sizeof *v);
    return v;
}

/* Writes src's model (opened from any layout) as version 1 or 2 into b, as
 * export.py would; for version 2, quantizes as its quantize_q80 does (scale =
 * max |w| / 127 per group, q = round(w / scale)) and records the fp32 values
 * runq.c would compute in *dq.  The first value of the embedding is stored as
 * -128, which export.py never writes but an int8 holds: a reader must take
 * the byte as signed. */
static void build_versioned(const tc_llama2c *src, int version, int group_size, bytes *b, dequant *dq)
{
    const tc_llama2c_header *h = &src->hdr;
    memset(b, 0, sizeof *b);
    uint8_t zero[256] = {0};
    put_i32(b, (int32_t)V_MAGIC);
    put_i32(b, version);
    const int32_t f[7] = {h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads, h->vocab_size,
                          h->seq_len};
    for (int i = 0; i < 7; i++)
        put_i32(b, f[i]);
    uint8_t flag = (uint8_t)h->shared_classifier;
    put_bytes(b, &flag, 1);
    if (version == 2)
        put_i32(b, group_size); /* at byte 37: export.py packs it unaligned */
    put_bytes(b, zero, 256 - b->n);
    int cap = 9 * h->n_layers + 3;
    char(*names)[64] = calloc((size_t)cap, sizeof *names);
    int n = versioned_order(h, names, cap);
    if (dq) {
        memset(dq, 0, sizeof *dq);
        dq->names = names;
        dq->values = calloc((size_t)n, sizeof *dq->values);
        dq->out = calloc((size_t)n, sizeof *dq->out);
        dq->n = n;
    }
    for (int i = 0; i < n; i++) {
        const tc_tensor *t = tc_tensordir_find(&src->dir, names[i]);
        if (!t) {
            fprintf(stderr, "build_versioned: %s missing\n", names[i]);
            exit(1);
        }
        float *w = tensor_floats(t);
        const uint64_t ne = t->n_elements;
        float *deq = w;
        if (version == 2 && t->n_dims == 2) {
            const uint64_t gs = (uint64_t)group_size;
            int8_t *q = malloc((size_t)ne);
            float *scales = malloc((size_t)(ne / gs) * sizeof *scales + 1);
            deq = malloc((size_t)ne * sizeof *deq);
            for (uint64_t g = 0; g < ne / gs; g++) {
                float wmax = 0;
                for (uint64_t k = g * gs; k < (g + 1) * gs; k++)
                    wmax = fabsf(w[k]) > wmax ? fabsf(w[k]) : wmax;
                float scale = wmax / 127.0f;
                scales[g] = scale;
                for (uint64_t k = g * gs; k < (g + 1) * gs; k++) {
                    float r = scale > 0 ? nearbyintf(w[k] / scale) : 0.0f;
                    q[k] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
                }
            }
            if (strcmp(names[i], "tok_embeddings.weight") == 0)
                q[0] = -128;
            for (uint64_t k = 0; k < ne; k++)
                deq[k] = (float)q[k] * scales[k / gs];
            put_bytes(b, q, (size_t)ne);
            for (uint64_t g = 0; g < ne / gs; g++)
                put_f32(b, scales[g]);
            free(q);
            free(scales);
            free(w);
        } else {
            for (uint64_t k = 0; k < ne; k++)
                put_f32(b, w[k]);
        }
        if (dq) {
            tc_out_tensor *o = &dq->out[i];
            o->name = names[i];
            o->dtype = TC_F32;
            o->n_dims = t->n_dims;
            memcpy(o->shape, t->shape, sizeof o->shape);
            o->data = deq;
            dq->values[i] = deq;
        } else {
            free(deq);
        }
    }
    if (!dq)
        free(names);
}

static int spew_bytes(const char *path, const bytes *b)
{
    return spew(path, b->p, b->n);
}

/* Tensors of a versioned file lie back to back from byte 256 in export.py's
 * order (version 1; in version 2 only the norms lie in the file as fp32). */
static void check_versioned_tiling(const tc_llama2c *c)
{
    int cap = 9 * c->hdr.n_layers + 3;
    char(*names)[64] = calloc((size_t)cap, sizeof *names);
    int n = versioned_order(&c->hdr, names, cap);
    CHECK((size_t)n == c->dir.n_tensors);
    const uint8_t *base = c->dir.n_maps == 1 ? c->dir.maps[0].data : NULL;
    uint64_t off = 256;
    for (int i = 0; base && i < n; i++) {
        const tc_tensor *t = tc_tensordir_find(&c->dir, names[i]);
        CHECK_MSG(t != NULL, "%s missing", names[i]);
        if (!t)
            break;
        CHECK(t->dtype == TC_F32);
        int in_file = c->hdr.version == 1 || t->n_dims == 1;
        int inside = t->data >= base && t->data < base + c->dir.maps[0].size;
        CHECK_MSG(inside == in_file, "%s: %s the mapping", names[i], inside ? "inside" : "outside");
        if (in_file)
            CHECK_MSG((uint64_t)(t->data - base) == off, "%s at %llu, expected %llu", names[i],
                      (unsigned long long)(t->data - base), (unsigned long long)off);
        off += c->hdr.version == 1 || t->n_dims == 1
                   ? t->nbytes
                   : t->n_elements + t->n_elements / (uint64_t)c->hdr.group_size * 4u;
    }
    if (base)
        CHECK(off == c->dir.maps[0].size);
    free(names);
}

/* Every tensor of a equals b's, bit for bit (same names, shapes, values). */
static void check_same_tensors(const tc_tensordir *a, const tc_tensordir *b, const char *label)
{
    CHECK_MSG(a->n_tensors == b->n_tensors, "%s: %zu tensors vs %zu", label, a->n_tensors, b->n_tensors);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const tc_tensor *t = &a->tensors[i], *u = tc_tensordir_find(b, t->name);
        CHECK_MSG(u != NULL, "%s: %s missing", label, t->name);
        if (!u)
            continue;
        CHECK_MSG(t->dtype == u->dtype && t->n_dims == u->n_dims && t->nbytes == u->nbytes &&
                      memcmp(t->shape, u->shape, sizeof t->shape) == 0,
                  "%s: %s differs in shape", label, t->name);
        CHECK_MSG(t->nbytes == u->nbytes && memcmp(t->data, u->data, (size_t)t->nbytes) == 0,
                  "%s: %s differs in value", label, t->name);
    }
}

/* ---- Logits through the model view ------------------------------------------------ */

typedef struct logit_rec {
    float *v;
    size_t n;
    int vocab;
} logit_rec;

static int rec_logits(void *ctx, const float *logits, size_t tok0, size_t n_tokens, int vocab, tc_error *err)
{
    logit_rec *r = ctx;
    if (vocab != r->vocab || tok0 + n_tokens > r->n)
        return tc_err(err, "unexpected logits chunk");
    memcpy(r->v + tok0 * (size_t)vocab, logits, n_tokens * (size_t)vocab * sizeof(float));
    return TC_OK;
}

/* Logits of two short sequences (token ids reduced mod the vocabulary), or NULL. */
static float *model_logits(const char *path, size_t *count)
{
    tc_model m;
    tc_error err;
    *count = 0;
    int rc = tc_model_open(&m, path, &err);
    CHECK_OK(rc, &err);
    if (rc)
        return NULL;
    CHECK(m.format == TC_FORMAT_LLAMA2C && m.cfg.norm_eps == 1e-5f);
    const int v = m.cfg.vocab_size;
    int32_t tokens[7] = {1, 5 % v, 3 % v, 9 % v, 2, 7 % v, 4 % v};
    size_t offsets[3] = {0, 4, 7};
    tc_batch b = {tokens, offsets, 2};
    logit_rec r = {calloc(7 * (size_t)v, sizeof(float)), 7, v};
    tc_observer ob = {.ctx = &r, .logits = rec_logits};
    tc_forward_opts o = {0};
    o.n_threads = 1;
    o.observers = &ob;
    o.n_observers = 1;
    rc = tc_forward(&m, &b, &o, &err);
    CHECK_OK(rc, &err);
    tc_model_close(&m);
    if (rc) {
        free(r.v);
        return NULL;
    }
    *count = 7 * (size_t)v;
    return r.v;
}

static void check_same_logits(const char *a, const char *b, const char *label)
{
    size_t na = 0, nb = 0;
    float *la = model_logits(a, &na), *lb = model_logits(b, &nb);
    CHECK_MSG(la && lb && na == nb && na > 0 && memcmp(la, lb, na * sizeof(float)) == 0,
              "%s: logits differ", label);
    if (la && lb && na == nb) {
        size_t exact = 0;
        for (size_t i = 0; i < na; i++)
            exact += memcmp(&la[i], &lb[i], sizeof(float)) == 0;
        printf("%s: %zu of %zu logits bit-identical\n", label, exact, na);
    }
    free(la);
    free(lb);
}

/* The model view over a version-2 file converts each layer to exactly the
 * values runq.c computes. */
static void check_model_view_v2(const char *path, const dequant *dq)
{
    tc_model m;
    tc_error err;
    int rc = tc_model_open(&m, path, &err);
    CHECK_OK(rc, &err);
    if (rc)
        return;
    static const struct { tc_role role; const char *part; } roles[] = {
        {TC_ATTN_NORM, "attention_norm.weight"}, {TC_WQ, "attention.wq.weight"},
        {TC_WK, "attention.wk.weight"},          {TC_WV, "attention.wv.weight"},
        {TC_WO, "attention.wo.weight"},          {TC_FFN_NORM, "ffn_norm.weight"},
        {TC_W_GATE, "feed_forward.w1.weight"},   {TC_W_DOWN, "feed_forward.w2.weight"},
        {TC_W_UP, "feed_forward.w3.weight"},
    };
    char name[64];
    for (int l = 0; l < m.cfg.n_layers; l++) {
        tc_layer_f32 w;
        CHECK_OK(tc_model_load_layer(&m, l, &w, &err), &err);
        for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, roles[r].part);
            int k = 0;
            while (k < dq->n && strcmp(dq->names[k], name) != 0)
                k++;
            const tc_tensor *t = tc_tensordir_find(m.dir, name);
            CHECK_MSG(k < dq->n && t && w.w[roles[r].role] &&
                          memcmp(w.w[roles[r].role], dq->values[k], (size_t)t->n_elements * 4) == 0,
                      "layer %d %s differs from q * scale", l, roles[r].part);
        }
        tc_layer_f32_free(&w);
    }
    /* Embedding rows, including the -128 planted in row 0. */
    int k = 0;
    while (k < dq->n && strcmp(dq->names[k], "tok_embeddings.weight") != 0)
        k++;
    float *row = malloc((size_t)m.cfg.dim * sizeof *row);
    for (int tok = 0; k < dq->n && row && tok < m.cfg.vocab_size; tok += m.cfg.vocab_size - 1) {
        CHECK_OK(tc_model_embed(&m, tok, row, &err), &err);
        CHECK(memcmp(row, dq->values[k] + (size_t)tok * (size_t)m.cfg.dim, (size_t)m.cfg.dim * 4) == 0);
    }
    free(row);
    CHECK(m.cfg.tied_embeddings == (m.output == m.tok_embd));
    tc_model_close(&m);
}

/* Writes the legacy file at legacy_path as version 1 and as version 2 (at
 * group_size) and checks both against it: version 1 holds the same tensors
 * bit for bit and gives the same logits; version 2 holds q * scale and gives
 * the logits of the legacy file written from those values. */
static void check_versions_of(const char *legacy_path, int group_size, const char *tmp, const char *label)
{
    tc_llama2c legacy, c;
    tc_error err;
    if (tc_llama2c_open(&legacy, legacy_path, &err)) {
        CHECK_OK(TC_ERR, &err);
        return;
    }
    char v1[600], v2[600], deq_path[600], what[200];
    snprintf(v1, sizeof v1, "%s/v1.bin", tmp);
    snprintf(v2, sizeof v2, "%s/v2.bin", tmp);
    snprintf(deq_path, sizeof deq_path, "%s/v2-dequantized.bin", tmp);
    bytes b;
    build_versioned(&legacy, 1, 0, &b, NULL);
    CHECK(spew_bytes(v1, &b) == 0);
    free(b.p);
    dequant dq;
    build_versioned(&legacy, 2, group_size, &b, &dq);
    CHECK(spew_bytes(v2, &b) == 0);
    free(b.p);

    snprintf(what, sizeof what, "%s as version 1", label);
    CHECK_OK(tc_llama2c_open(&c, v1, &err), &err);
    if (c.path) {
        CHECK(c.hdr.version == 1 && c.hdr.group_size == 0);
        tc_llama2c_header h1 = c.hdr, h0 = legacy.hdr;
        h1.version = h0.version = 0;
        CHECK(memcmp(&h1, &h0, sizeof h1) == 0);
        check_same_tensors(&legacy.dir, &c.dir, what);
        check_versioned_tiling(&c);
        tc_llama2c_close(&c);
    }
    check_same_logits(legacy_path, v1, what);

    snprintf(what, sizeof what, "%s as version 2 (groups of %d)", label, group_size);
    CHECK_OK(tc_llama2c_open(&c, v2, &err), &err);
    if (c.path) {
        CHECK(c.hdr.version == 2 && c.hdr.group_size == group_size);
        CHECK(c.hdr.shared_classifier == legacy.hdr.shared_classifier);
        CHECK(c.dir.n_tensors == (size_t)dq.n);
        for (int i = 0; i < dq.n; i++) {
            const tc_tensor *t = tc_tensordir_find(&c.dir, dq.names[i]);
            CHECK_MSG(t && t->dtype == TC_F32 && t->nbytes == (uint64_t)tc_tensordir_find(&legacy.dir, dq.names[i])->nbytes &&
                          memcmp(t->data, dq.values[i], (size_t)t->nbytes) == 0,
                      "%s: %s is not q * scale", what, dq.names[i]);
        }
        /* Quantization changed something, so the comparison above has teeth. */
        const tc_tensor *a = tc_tensordir_find(&c.dir, "layers.0.attention.wq.weight"),
                        *e = tc_tensordir_find(&legacy.dir, "layers.0.attention.wq.weight");
        CHECK(a && e && memcmp(a->data, e->data, (size_t)e->nbytes) != 0);
        check_versioned_tiling(&c);
        tc_llama2c_close(&c);
    }
    tc_llama2c_header hq = legacy.hdr;
    CHECK_OK(tc_llama2c_write(deq_path, &hq, dq.out, (size_t)dq.n, &err), &err);
    check_same_logits(deq_path, v2, what);
    check_model_view_v2(v2, &dq);
    dequant_free(&dq);
    tc_llama2c_close(&legacy);
    unlink(v1);
    unlink(v2);
    unlink(deq_path);
}

/* ---- Hostile versioned files ---------------------------------------------------------- */

static void expect_model_error(const char *path, const void *data, size_t n, const char *needle,
                               const char *label)
{
    tc_model m;
    tc_error err;
    if (spew(path, data, n)) {
        CHECK(0);
        return;
    }
    int rc = tc_model_open(&m, path, &err);
    CHECK_MSG(rc == TC_ERR, "%s opened as a model", label);
    if (rc != TC_ERR) {
        tc_model_close(&m);
        return;
    }
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, needle) && !strchr(err.msg, '\n'),
              "%s: expected '%s' in: %s", label, needle, err.msg);
}

static void set_header(uint8_t *buf, int version, const int32_t f[7])
{
    set_i32(buf + 4, version);
    for (int i = 0; i < 7; i++)
        set_i32(buf + 8 + 4 * i, f[i]);
}

static void test_hostile_versioned(const uint8_t *good, size_t n, int version, const char *path)
{
    static const char *const FIELDS[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                          "n_kv_heads", "vocab_size", "seq_len"};
    uint8_t *buf = malloc(n + 16);
    if (!buf) {
        CHECK(0);
        return;
    }
    char label[96], want[96];
    const int32_t h[7] = {get_i32(good + 8),  get_i32(good + 12), get_i32(good + 16), get_i32(good + 20),
                          get_i32(good + 24), get_i32(good + 28), get_i32(good + 32)};
    /* Cut at every byte of the header, then inside the weights. */
    for (size_t cut = 0; cut <= 256; cut++) {
        const char *needle;
        if (cut < 4) {
            needle = "legacy header field dim"; /* no magic yet: read as version 0 */
        } else if (cut < 8) {
            needle = "version number";
        } else if (cut < 36) {
            snprintf(want, sizeof want, "version %d header field %s", version, FIELDS[(cut - 8) / 4]);
            needle = want;
        } else if (cut < 37) {
            needle = "shared_classifier";
        } else if (version == 2 && cut < 41) {
            needle = "group_size";
        } else if (cut < 256) {
            needle = "256-byte";
        } else {
            snprintf(want, sizeof want, "truncated llama2.c version %d checkpoint", version);
            needle = want;
        }
        snprintf(label, sizeof label, "version %d cut at %zu", version, cut);
        expect_open_error(path, good, cut, needle, label);
    }
    const size_t cuts[] = {257, 300, n / 2, n - 4, n - 1};
    snprintf(want, sizeof want, "truncated llama2.c version %d checkpoint", version);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(label, sizeof label, "version %d weights cut at %zu", version, cuts[i]);
        expect_open_error(path, good, cuts[i], want, label);
    }
    memcpy(buf, good, n);
    memset(buf + n, 0, 16);
    expect_open_error(path, buf, n + 1, "trailing", "one trailing byte");
    expect_open_error(path, buf, n + 16, "trailing", "16 trailing bytes");

    /* Magic and version. */
    memcpy(buf, good, n);
    memcpy(buf, "GGUF", 4);
    expect_open_error(path, buf, n, "read as a llama2.c legacy checkpoint (it starts with 'GGUF'", "GGUF magic");
    memcpy(buf, "\x01\x02\x03\x04", 4);
    expect_open_error(path, buf, n, "read as a llama2.c legacy checkpoint (no magic 'ak42'), its header field dim",
                      "unknown binary magic");
    expect_model_error(path, buf, n, "read as a llama2.c legacy checkpoint", "unknown magic, model view");
    memset(buf, 0, 4);
    expect_open_error(path, buf, n, "header field dim is 0", "zero magic");
    memcpy(buf, "ak42", 4);
    expect_open_error(path, buf, n, "big-endian", "byte-swapped magic");
    static const int32_t bad_versions[] = {3, 0, -1, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_versions / sizeof bad_versions[0]; i++) {
        memcpy(buf, good, n);
        set_i32(buf + 4, bad_versions[i]);
        snprintf(want, sizeof want, "magic 'ak42' has version %d; tc reads versions 1 and 2",
                 (int)bad_versions[i]);
        snprintf(label, sizeof label, "version %d", (int)bad_versions[i]);
        expect_open_error(path, buf, n, want, label);
        if (i == 0)
            expect_model_error(path, buf, n, want, "version 3, model view");
    }
    /* The other layout's version number: the sizes no longer match. */
    memcpy(buf, good, n);
    set_i32(buf + 4, version == 1 ? 2 : 1);
    expect_open_error(path, buf, n, "version", "the other version");

    /* Header fields: zero, negative, absurd; a vocab made negative as version 0 marks it. */
    const int32_t bad_values[] = {0, -1, INT32_MIN, INT32_MAX, 1 << 21};
    for (int f = 0; f < 7; f++)
        for (size_t v = 0; v < sizeof bad_values / sizeof bad_values[0]; v++) {
            memcpy(buf, good, n);
            set_i32(buf + 8 + 4 * f, bad_values[v]);
            snprintf(want, sizeof want, "version %d header field %s", version, FIELDS[f]);
            snprintf(label, sizeof label, "version %d %s = %d", version, FIELDS[f], (int)bad_values[v]);
            expect_open_error(path, buf, n, want, label);
        }
    memcpy(buf, good, n);
    buf[36] = 2;
    expect_open_error(path, buf, n, "shared_classifier is 2, not 0 or 1", "flag 2");
    memcpy(buf, good, n);
    buf[36] = (uint8_t)!good[36];
    expect_open_error(path, buf, n, good[36] ? "needs" : "trailing", "flag flipped");
    memcpy(buf, good, n);
    set_header(buf, version, (int32_t[7]){h[0], h[1], h[2], 3, 1, h[5], h[6]});
    expect_open_error(path, buf, n, "divisible", "dim % n_heads");
    set_header(buf, version, (int32_t[7]){h[0], h[1], h[2] + 1, h[3], h[4], h[5], h[6]});
    expect_open_error(path, buf, n, "needs", "one layer too many");
    /* Sizes near 2^54 bytes: neither wrapped nor allocated. */
    set_header(buf, version, (int32_t[7]){1 << 20, 1 << 20, 4096, 1 << 10, 1 << 10, 1 << 20, 1 << 20});
    if (version == 2)
        set_i32(buf + 37, 1);
    expect_open_error(path, buf, n, "needs", "every field at its bound");
    expect_model_error(path, buf, n, "needs", "every field at its bound, model view");

    if (version == 2) {
        const int32_t bad_groups[] = {0, -8, INT32_MIN, 3, h[0] * 2, INT32_MAX};
        for (size_t i = 0; i < sizeof bad_groups / sizeof bad_groups[0]; i++) {
            memcpy(buf, good, n);
            set_i32(buf + 37, bad_groups[i]);
            snprintf(want, sizeof want, bad_groups[i] <= 0 ? "group_size is %d but must be positive"
                                                           : "group_size %d does not divide dim",
                     (int)bad_groups[i]);
            snprintf(label, sizeof label, "group size %d", (int)bad_groups[i]);
            expect_open_error(path, buf, n, want, label);
            if (i == 0 || i == 3)
                expect_model_error(path, buf, n, want, label);
        }
        /* A consistent group size of another value: the sizes no longer match. */
        memcpy(buf, good, n);
        set_i32(buf + 37, get_i32(good + 37) / 2);
        expect_open_error(path, buf, n, "needs", "smaller group size");
    }
    free(buf);
}

/* Versions 1 and 2 of the synthetic model, with a separate classifier and
 * with a shared one, then hostile copies of them. */
static void test_versions(const synth *s, const char *tmp)
{
    char legacy[600], path[600], hostile[600];
    snprintf(legacy, sizeof legacy, "%s/synth-legacy.bin", tmp);
    snprintf(hostile, sizeof hostile, "%s/hostile-versioned.bin", tmp);
    tc_error err;
    for (int shared = 0; shared <= 1; shared++) {
        tc_llama2c_header h = s->hdr;
        h.shared_classifier = shared;
        CHECK_OK(tc_llama2c_write(legacy, &h, s->out, (size_t)s->n - (size_t)shared, &err), &err);
        /* Groups of 8 straddle the 12-wide rows of w2; groups of 2 are tiny. */
        check_versions_of(legacy, 8, tmp, shared ? "synthetic, shared classifier" : "synthetic, separate classifier");
        check_versions_of(legacy, 2, tmp, shared ? "synthetic, shared classifier" : "synthetic, separate classifier");
    }
    /* Hostile copies of both versions (separate classifier). */
    CHECK_OK(tc_llama2c_write(legacy, &s->hdr, s->out, (size_t)s->n, &err), &err);
    tc_llama2c c;
    CHECK_OK(tc_llama2c_open(&c, legacy, &err), &err);
    if (c.path) {
        for (int version = 1; version <= 2; version++) {
            bytes b;
            build_versioned(&c, version, 8, &b, NULL);
            snprintf(path, sizeof path, "%s/good-v%d.bin", tmp, version);
            CHECK(spew_bytes(path, &b) == 0);
            tc_llama2c ok;
            CHECK_OK(tc_llama2c_open(&ok, path, &err), &err);
            tc_llama2c_close(&ok);
            test_hostile_versioned(b.p, b.n, version, hostile);
            free(b.p);
            unlink(path);
        }
        tc_llama2c_close(&c);
    }
    unlink(legacy);
    unlink(hostile);
}

/* The real legacy checkpoints, re-exported as versions 1 and 2 with
 * export.py's default group size of 64 (halved until it divides dim). */
static void test_real_versions(const char *tmp)
{
    for (size_t k = 0; k < sizeof MODELS / sizeof MODELS[0]; k++) {
        char path[1024];
        if (!tu_asset(path, sizeof path, MODELS[k].rel))
            continue;
        int gs = 64;
        while (MODELS[k].dim % gs != 0)
            gs /= 2;
        check_versions_of(path, gs, tmp, MODELS[k].rel);
    }
}

int main(void)
{
    char tmp[256], synth_path[512], hostile_path[512];
    if (!tu_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    snprintf(synth_path, sizeof synth_path, "%s/synth.bin", tmp);
    snprintf(hostile_path, sizeof hostile_path, "%s/hostile.bin", tmp);
    synth s;
    synth_make(&s);
    test_separate_classifier(&s, synth_path);
    test_write_errors(&s, synth_path); /* ends by writing the separate-classifier file again */
    test_hostile(synth_path, hostile_path);
    test_versions(&s, tmp);
    synth_free(&s);
    int real = test_real_models(tmp);
    test_real_versions(tmp);
    unlink(synth_path);
    unlink(hostile_path);
    rmdir(tmp);
    if (!real)
        printf("note: no llama2.c checkpoint among the assets; only synthetic files were tested\n");
    return tu_finish("test_llama2c");
}
