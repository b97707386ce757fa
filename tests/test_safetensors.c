/* safetensors: the real checkpoints open with the right tensors, the writer
 * round-trips every dtype byte for byte, and every hostile variant of a
 * small file is refused with a message naming it. */
#include "testutil.h"

#include "tc/dtype.h"
#include "tc/safetensors.h"
#include "tc/tensordir.h"

static char tmp[512];

/* ---- Helpers ------------------------------------------------------------ */

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* A file with the given raw header (length field = strlen) and data_len
 * bytes of data. */
static void write_st(const char *path, const char *header, uint64_t header_len, size_t data_len)
{
    size_t hn = strlen(header);
    size_t n = 8 + hn + data_len;
    uint8_t *buf = calloc(n, 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(header_len >> (8 * i));
    memcpy(buf + 8, header, hn);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hn + i] = (uint8_t)i;
    write_bytes(path, buf, n);
    free(buf);
}

/* Opens path into a fresh directory and expects a clean refusal naming it,
 * with the directory left empty. */
static void expect_refused(const char *path, const char *why)
{
    tc_tensordir d;
    tc_error err;
    tc_safetensors info;
    tc_tensordir_init(&d);
    memset(&err, 0, sizeof err);
    int rc = tc_safetensors_add(&d, path, &info, &err);
    CHECK_MSG(rc == TC_ERR, "%s: accepted", why);
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", why, err.msg);
    CHECK_MSG(d.n_tensors == 0 && d.n_maps == 0, "%s: directory not left empty", why);
    CHECK(info.path == NULL && info.metadata == NULL);
    tc_tensordir_free(&d);
}

static void expect_header_refused(const char *header, size_t data_len, const char *why)
{
    char path[600];
    snprintf(path, sizeof path, "%s/hostile.safetensors", tmp);
    write_st(path, header, strlen(header), data_len);
    expect_refused(path, why);
}

static int open_ok(const char *path, tc_tensordir *d, tc_safetensors *info)
{
    tc_error err;
    tc_tensordir_init(d);
    if (tc_safetensors_add(d, path, info, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return TC_ERR;
    }
    return TC_OK;
}

/* ---- Real checkpoints --------------------------------------------------- */

static int test_real(void)
{
    char path[600];
    if (!tu_asset(path, sizeof path, "models/stories260K-hf/model.safetensors"))
        return 0;
    tc_tensordir d;
    tc_safetensors info;
    tc_error err;
    CHECK_OK(open_ok(path, &d, &info), &err);
    CHECK(d.n_tensors == 47);
    CHECK(d.n_maps == 1);
    CHECK(info.n_metadata == 1 && strcmp(info.metadata[0].key, "format") == 0 &&
          strcmp(info.metadata[0].value, "pt") == 0);
    const tc_tensor *emb = tc_tensordir_find(&d, "model.embed_tokens.weight");
    CHECK(emb && emb->dtype == TC_F32 && emb->n_dims == 2 && emb->shape[0] == 512 && emb->shape[1] == 64);
    const tc_tensor *k = tc_tensordir_find(&d, "model.layers.4.self_attn.k_proj.weight");
    CHECK(k && k->shape[0] == 32 && k->shape[1] == 64 && k->nbytes == 32 * 64 * 4);
    const tc_tensor *norm = tc_tensordir_find(&d, "model.norm.weight");
    CHECK(norm && norm->n_dims == 1 && norm->shape[0] == 64);
    /* Every tensor lies inside the mapping, after the header. */
    int inside = 1;
    for (size_t i = 0; i < d.n_tensors; i++) {
        const tc_tensor *t = &d.tensors[i];
        if (t->data < d.maps[0].data + 8 || t->data + t->nbytes > d.maps[0].data + d.maps[0].size)
            inside = 0;
    }
    CHECK(inside);
    CHECK(strcmp(emb->file, path) == 0);
    /* The first embedding row of stories260K is not all zero. */
    float *w = NULL;
    CHECK_OK(tc_tensor_load_f32(emb, &w, &err), &err);
    double s = 0;
    for (int i = 0; i < 64; i++)
        s += fabs(w[i]);
    CHECK(s > 0);
    free(w);

    /* The bf16 copy was rounded from these values to nearest even. */
    char bpath[600];
    if (tu_asset(bpath, sizeof bpath, "models/stories260K-hf-bf16/model.safetensors")) {
        tc_tensordir b;
        CHECK_OK(open_ok(bpath, &b, NULL), &err);
        CHECK(b.n_tensors == d.n_tensors);
        uint64_t mismatches = 0, compared = 0;
        for (size_t i = 0; i < d.n_tensors; i++) {
            const tc_tensor *f = &d.tensors[i];
            const tc_tensor *h = tc_tensordir_find(&b, f->name);
            CHECK_MSG(h && h->dtype == TC_BF16 && h->n_elements == f->n_elements, "%s", f->name);
            if (!h || h->n_elements != f->n_elements)
                continue;
            for (uint64_t j = 0; j < f->n_elements; j++) {
                float x;
                uint16_t y;
                memcpy(&x, f->data + 4 * j, 4);
                memcpy(&y, h->data + 2 * j, 2);
                mismatches += tc_f32_to_bf16(x) != y;
                compared++;
            }
        }
        CHECK(compared == 260032);
        CHECK_MSG(mismatches == 0, "%llu of %llu bf16 values differ from rounding the f32 ones",
                  (unsigned long long)mismatches, (unsigned long long)compared);
        tc_tensordir_free(&b);
    }
    tc_safetensors_free(&info);
    tc_tensordir_free(&d);
    return 1;
}

/* ---- Writer round trip -------------------------------------------------- */

static int fill_ramp(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    (void)ctx;
    float *f = dst;
    for (int64_t i = 0; i < t->shape[0] * t->shape[1]; i++)
        f[i] = (float)i * 0.25f - 3.0f;
    return TC_OK;
}

static int fill_fails(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    return tc_err(err, "no bytes for '%s'", t->name);
}

static void test_roundtrip(void)
{
    static const tc_dtype types[] = {TC_F32, TC_F16, TC_BF16, TC_F64, TC_I8,
                                     TC_U8,  TC_I16, TC_I32,  TC_I64, TC_BOOL};
    enum { NT = sizeof types / sizeof types[0] };
    uint8_t bytes[NT][3 * 5 * 8];
    char names[NT][32];
    tc_out_tensor out[NT + 3];
    uint32_t seed = 12345;
    memset(out, 0, sizeof out);
    for (int i = 0; i < NT; i++) {
        for (size_t j = 0; j < sizeof bytes[i]; j++) {
            seed = seed * 1664525u + 1013904223u;
            bytes[i][j] = (uint8_t)(seed >> 24);
        }
        if (types[i] == TC_BOOL)
            for (size_t j = 0; j < sizeof bytes[i]; j++)
                bytes[i][j] &= 1;
        snprintf(names[i], sizeof names[i], "layer.%d.%s", i, tc_dtype_name(types[i]));
        out[i] = (tc_out_tensor){.name = names[i], .dtype = types[i], .n_dims = 2, .shape = {3, 5},
                                 .data = bytes[i]};
    }
    out[NT] = (tc_out_tensor){.name = "empty", .dtype = TC_F32, .n_dims = 2, .shape = {0, 7}, .data = bytes[0]};
    out[NT + 1] = (tc_out_tensor){.name = "scalar", .dtype = TC_I64, .n_dims = 0, .data = bytes[8]};
    out[NT + 2] = (tc_out_tensor){.name = "caf\xc3\xa9.filled", .dtype = TC_F32, .n_dims = 2,
                                  .shape = {4, 3}, .fill = fill_ramp};
    const tc_kv_str md[] = {{"format", "pt"}, {"note", "quote \" and \xe2\x82\xac"}};
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp);
    tc_error err;
    CHECK_OK(tc_safetensors_write(path, out, NT + 3, md, 2, &err), &err);

    /* The data section starts on a multiple of 8, after space padding. */
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    CHECK(file != NULL && n > 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | file[i];
    CHECK(hl % 8 == 0 && 8 + hl <= n);
    CHECK(file[8] == '{');
    CHECK(n == 8 + hl + 15 * (4 + 2 + 2 + 8 + 1 + 1 + 2 + 4 + 8 + 1) + 8 + 48);
    free(file);

    tc_tensordir d;
    tc_safetensors info;
    CHECK_OK(open_ok(path, &d, &info), &err);
    CHECK(d.n_tensors == NT + 3);
    for (int i = 0; i < NT + 3 && (size_t)i < d.n_tensors; i++) {
        const tc_tensor *t = &d.tensors[i]; /* file order is the given order */
        CHECK(strcmp(t->name, out[i].name) == 0);
        CHECK(t->dtype == out[i].dtype && t->n_dims == out[i].n_dims);
        for (int j = 0; j < t->n_dims; j++)
            CHECK(t->shape[j] == out[i].shape[j]);
        if (out[i].data)
            CHECK(memcmp(t->data, out[i].data, (size_t)t->nbytes) == 0);
    }
    const tc_tensor *fl = tc_tensordir_find(&d, "caf\xc3\xa9.filled");
    CHECK(fl && fl->nbytes == 48);
    if (fl) {
        float v;
        memcpy(&v, fl->data + 4 * 11, 4);
        CHECK(v == 11 * 0.25f - 3.0f);
    }
    CHECK(info.n_metadata == 2);
    if (info.n_metadata == 2) {
        CHECK(strcmp(info.metadata[0].key, "format") == 0 && strcmp(info.metadata[0].value, "pt") == 0);
        CHECK(strcmp(info.metadata[1].key, "note") == 0 && strcmp(info.metadata[1].value, md[1].value) == 0);
    }
    tc_safetensors_free(&info);

    /* A second file with a name already in the directory is a duplicate and
     * leaves the directory as it was. */
    size_t before = d.n_tensors;
    CHECK(tc_safetensors_add(&d, path, NULL, &err) == TC_ERR);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "duplicate"));
    CHECK(d.n_tensors == before && d.n_maps == 1);
    tc_tensordir_free(&d);

    /* No metadata: no "__metadata__" key, and an empty file holds just "{}". */
    CHECK_OK(tc_safetensors_write(path, out, 1, NULL, 0, &err), &err);
    CHECK_OK(open_ok(path, &d, &info), &err);
    CHECK(d.n_tensors == 1 && info.n_metadata == 0);
    tc_safetensors_free(&info);
    tc_tensordir_free(&d);
    CHECK_OK(tc_safetensors_write(path, NULL, 0, NULL, 0, &err), &err);
    CHECK_OK(open_ok(path, &d, NULL), &err);
    CHECK(d.n_tensors == 0);
    tc_tensordir_free(&d);

    /* What the writer refuses, it refuses before touching the target. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/refused.safetensors", tmp);
    tc_out_tensor two[2] = {out[0], out[1]};
    two[1].name = out[0].name;
    CHECK(tc_safetensors_write(bad, two, 2, NULL, 0, &err) == TC_ERR && strstr(err.msg, bad));
    two[1] = out[1];
    two[1].dtype = TC_Q8_0;
    two[1].shape[1] = 32;
    CHECK(tc_safetensors_write(bad, two, 2, NULL, 0, &err) == TC_ERR && strstr(err.msg, bad));
    two[1] = out[1];
    two[1].name = "__metadata__";
    CHECK(tc_safetensors_write(bad, two, 2, NULL, 0, &err) == TC_ERR && strstr(err.msg, bad));
    two[1].name = "bad\xff";
    CHECK(tc_safetensors_write(bad, two, 2, NULL, 0, &err) == TC_ERR && strstr(err.msg, bad));
    const tc_kv_str dup_md[] = {{"a", "1"}, {"a", "2"}};
    CHECK(tc_safetensors_write(bad, out, 1, dup_md, 2, &err) == TC_ERR && strstr(err.msg, bad));
    two[1] = out[1];
    two[1].data = NULL;
    two[1].fill = fill_fails;
    CHECK(tc_safetensors_write(bad, two, 2, NULL, 0, &err) == TC_ERR && strstr(err.msg, bad));
    struct stat st;
    CHECK(stat(bad, &st) != 0);
}

/* ---- Hostile files ------------------------------------------------------ */

static void test_truncation(void)
{
    char path[600], cut[600];
    snprintf(path, sizeof path, "%s/small.safetensors", tmp);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", tmp);
    const float a[4] = {1, 2, 3, 4};
    const uint16_t b[3] = {1, 2, 3};
    const tc_out_tensor t[2] = {
        {.name = "a", .dtype = TC_F32, .n_dims = 2, .shape = {2, 2}, .data = a},
        {.name = "b", .dtype = TC_F16, .n_dims = 1, .shape = {3}, .data = b},
    };
    const tc_kv_str md = {"format", "pt"};
    tc_error err;
    CHECK_OK(tc_safetensors_write(path, t, 2, &md, 1, &err), &err);
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    CHECK(file != NULL);
    if (!file)
        return;
    /* Every proper prefix lacks part of the length, the header or the last
     * tensor's bytes. */
    int refused = 0;
    for (size_t k = 0; k < n; k++) {
        write_bytes(cut, file, k);
        tc_tensordir d;
        tc_tensordir_init(&d);
        if (tc_safetensors_add(&d, cut, NULL, &err) == TC_ERR && strstr(err.msg, cut) && d.n_tensors == 0)
            refused++;
        else
            fprintf(stderr, "prefix of %zu bytes: %s\n", k, err.msg);
        tc_tensordir_free(&d);
    }
    CHECK(refused == (int)n);

    /* Header lengths past the file, absurd, or too small for "{}". */
    uint64_t lens[] = {n - 8 + 1, (uint64_t)1 << 62, UINT64_MAX, 0, 1, 200000000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, file, n);
        for (int j = 0; j < 8; j++)
            copy[j] = (uint8_t)(lens[i] >> (8 * j));
        snprintf(cut, sizeof cut, "%s/len%zu.safetensors", tmp, i);
        write_bytes(cut, copy, n);
        expect_refused(cut, "bad header length");
        free(copy);
    }
    free(file);
}

static void test_hostile_headers(void)
{
    static const struct {
        const char *header;
        size_t data;
        const char *why;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 16, "invalid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}}", 16, "trailing brace"},
        {"{} x", 0, "bytes after the JSON"},
        {"[1,2]", 0, "array header"},
        {"\"str\"", 0, "string header"},
        {"  {}", 0, "header not starting with a brace"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1000]}}", 16, "offsets past the file"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,17]}}", 16, "end one past the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, "end before begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlapping spans"},
        {"{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "span containing another"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "shape x dtype != span"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,16]}}", 16, "2^40 elements"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", 16,
         "element count overflow"},
        {"{\"a\":{\"dtype\":\"F8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"Q8_0\",\"shape\":[32],\"data_offsets\":[0,34]}}", 40, "block dtype"},
        {"{\"a\":{\"dtype\":3,\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "numeric dtype"},
        {"{\"a\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "missing dtype"},
        {"{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", 16, "missing shape"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4]}}", 16, "missing offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}}", 16, "shape not an array"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 16, "fractional dim"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 16, "negative dim"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}}", 16, "string dim"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 16, "huge dim"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740994],\"data_offsets\":[0,4]}}", 16, "dim > 2^53"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,4],\"data_offsets\":[0,4]}}", 16, "five dims"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 16, "three offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 16, "one offset"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0.5,4.5]}}", 16, "fractional offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 16, "negative offset"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[18446744073709551615,"
         "18446744073709551615]}}", 16, "offsets at 2^64"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 16, "duplicate names"},
        {"{\"a\":5}", 16, "entry not an object"},
        {"{\"\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "empty name"},
        {"{\"__metadata__\":[1]}", 0, "metadata not an object"},
        {"{\"__metadata__\":{\"a\":1}}", 0, "metadata value not a string"},
        {"{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate metadata key"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "two metadata objects"},
        {"{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "invalid UTF-8 byte"},
        {"{\"a\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "overlong UTF-8"},
        {"{\"a\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "UTF-8 surrogate"},
        {"{\"a\xf4\x90\x80\x80\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "above U+10FFFF"},
        {"{\"a\xe2\x82\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16, "cut UTF-8 sequence"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}\xe2", 16, "UTF-8 cut at the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_header_refused(cases[i].header, cases[i].data, cases[i].why);

    /* A NUL inside the header (as padding or in a name). */
    char path[600];
    snprintf(path, sizeof path, "%s/nul.safetensors", tmp);
    const char nul_pad[] = {'{', '}', 0, 0, 0, 0, 0, 0};
    uint8_t buf[16] = {8};
    memcpy(buf + 8, nul_pad, 8);
    write_bytes(path, buf, 16);
    expect_refused(path, "NUL padding");
}

/* What the format allows must still open. */
static void test_lenient(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/ok.safetensors", tmp);
    tc_tensordir d;
    tc_error err;
    /* Unaligned tensor, a hole before it, zero-size spans, padding. */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                    "\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[11,11]},"
                    "\"s\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[11,12]},"
                    "\"e\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[12,14]}}     ";
    write_st(path, h, strlen(h), 16);
    CHECK_OK(open_ok(path, &d, NULL), &err);
    CHECK(d.n_tensors == 4);
    const tc_tensor *a = tc_tensordir_find(&d, "a");
    CHECK(a && a->data == d.maps[0].data + 8 + strlen(h) + 3);
    if (a) {
        float f[2];
        uint8_t want[8] = {3, 4, 5, 6, 7, 8, 9, 10};
        float ref[2];
        memcpy(ref, want, 8);
        CHECK_OK(tc_tensor_to_f32(a, f, &err), &err);
        CHECK(memcmp(f, ref, 8) == 0 || (isnan(f[0]) && isnan(ref[0])));
    }
    const tc_tensor *s = tc_tensordir_find(&d, "s");
    CHECK(s && s->n_dims == 0 && s->n_elements == 1 && s->data[0] == 11);
    tc_tensordir_free(&d);

    /* Exact integers in exponent form are still integers; newline padding is
     * JSON whitespace. */
    h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4e0],\"data_offsets\":[0,4.0]}}\n\t ";
    write_st(path, h, strlen(h), 4);
    CHECK_OK(open_ok(path, &d, NULL), &err);
    CHECK(d.n_tensors == 1);
    tc_tensordir_free(&d);
}

int main(void)
{
    if (!tu_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    int real = test_real();
    test_roundtrip();
    test_truncation();
    test_hostile_headers();
    test_lenient();
    if (!real)
        printf("note: stories260K-hf assets absent; only synthetic files were tested\n");
    return tu_finish("test_safetensors");
}
