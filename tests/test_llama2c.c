/* llama2.c legacy checkpoints: the three real models open with the shapes
 * their authors published, tile their files exactly, and survive a rewrite
 * (weights bit-exact, recomputed RoPE tables within one float ulp); a
 * separate classifier round-trips; every corruption is a clean error. */
#include "testutil.h"

#include <stdint.h>

#include "tc/llama2c.h"

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
    s->hdr = (tc_llama2c_header){8, 12, 2, 2, 1, 10, 4, 0};
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
    synth_free(&s);
    int real = test_real_models(tmp);
    unlink(synth_path);
    unlink(hostile_path);
    rmdir(tmp);
    if (!real)
        printf("note: no llama2.c checkpoint among the assets; only synthetic files were tested\n");
    return tu_finish("test_llama2c");
}
