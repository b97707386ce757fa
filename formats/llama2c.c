/* llama2.c legacy checkpoints: a 7 x int32 header, then every fp32 weight
 * array in a fixed order, each one holding all layers back to back.  The file
 * carries no names and no offsets, so its whole layout follows from the
 * header; the reader therefore trusts nothing until the size that header
 * implies equals the file's size exactly. */
#include "tc/llama2c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/mapfile.h"
#include "tc/outfile.h"

#define HEADER_BYTES 28u
/* Far beyond any real model, yet small enough that no product of these can
 * wrap a uint64_t; the checked arithmetic below guards regardless. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define ROPE_THETA 10000.0

/* ---- Layout ---------------------------------------------------------------
 * One section is one array of the file: per layer or global, with the shape
 * of one slice.  Two sections hold the RoPE tables, which are derived data:
 * they get no tensor name and the writer recomputes them. */
enum { N_SECTIONS = 14 };

typedef enum rope_part { NOT_ROPE, ROPE_COS, ROPE_SIN } rope_part;

typedef struct section {
    const char *name;   /* layer-relative for per-layer sections; NULL for RoPE */
    const char *what;   /* how messages call it */
    rope_part rope;
    int per_layer;
    int n_dims;
    int64_t shape[2];
} section;

static int layout(const tc_llama2c_header *h, section s[N_SECTIONS])
{
    const int64_t dim = h->dim, hid = h->hidden_dim, vocab = h->vocab_size;
    const int64_t hs = dim / h->n_heads, q = h->n_heads * hs, kv = h->n_kv_heads * hs;
    const section all[N_SECTIONS] = {
        {"tok_embeddings.weight", "token embedding table", NOT_ROPE, 0, 2, {vocab, dim}},
        {"attention_norm.weight", "rms_att_weight", NOT_ROPE, 1, 1, {dim, 0}},
        {"attention.wq.weight", "wq", NOT_ROPE, 1, 2, {q, dim}},
        {"attention.wk.weight", "wk", NOT_ROPE, 1, 2, {kv, dim}},
        {"attention.wv.weight", "wv", NOT_ROPE, 1, 2, {kv, dim}},
        {"attention.wo.weight", "wo", NOT_ROPE, 1, 2, {dim, q}},
        {"ffn_norm.weight", "rms_ffn_weight", NOT_ROPE, 1, 1, {dim, 0}},
        {"feed_forward.w1.weight", "w1", NOT_ROPE, 1, 2, {hid, dim}},
        {"feed_forward.w2.weight", "w2", NOT_ROPE, 1, 2, {dim, hid}},
        {"feed_forward.w3.weight", "w3", NOT_ROPE, 1, 2, {hid, dim}},
        {"norm.weight", "rms_final_weight", NOT_ROPE, 0, 1, {dim, 0}},
        {NULL, "freq_cis_real", ROPE_COS, 0, 2, {h->seq_len, hs / 2}},
        {NULL, "freq_cis_imag", ROPE_SIN, 0, 2, {h->seq_len, hs / 2}},
        {"output.weight", "classifier", NOT_ROPE, 0, 2, {vocab, dim}},
    };
    memcpy(s, all, sizeof all);
    return h->shared_classifier ? N_SECTIONS - 1 : N_SECTIONS;
}

static uint64_t slice_elements(const section *s)
{
    return s->n_dims == 1 ? (uint64_t)s->shape[0] : (uint64_t)s->shape[0] * (uint64_t)s->shape[1];
}

static void slice_name(char *buf, size_t n, const section *s, int layer)
{
    if (s->per_layer)
        snprintf(buf, n, "layers.%d.%s", layer, s->name);
    else
        snprintf(buf, n, "%s", s->name);
}

/* ---- Header validation ----------------------------------------------------- */

static int check_field(const char *path, const char *field, int32_t v, int32_t max, tc_error *err)
{
    if (v <= 0)
        return tc_err(err, "%s: llama2.c header field %s is %d but must be positive", path, field, (int)v);
    if (v > max)
        return tc_err(err, "%s: llama2.c header field %s is %d, above the supported %d", path, field,
                      (int)v, (int)max);
    return TC_OK;
}

/* Checks a header whose vocab_size is already positive. */
static int check_header(const char *path, const tc_llama2c_header *h, tc_error *err)
{
    if (check_field(path, "dim", h->dim, MAX_DIM, err) ||
        check_field(path, "hidden_dim", h->hidden_dim, MAX_DIM, err) ||
        check_field(path, "n_layers", h->n_layers, MAX_LAYERS, err) ||
        check_field(path, "n_heads", h->n_heads, MAX_DIM, err) ||
        check_field(path, "n_kv_heads", h->n_kv_heads, MAX_DIM, err) ||
        check_field(path, "vocab_size", h->vocab_size, MAX_DIM, err) ||
        check_field(path, "seq_len", h->seq_len, MAX_DIM, err))
        return TC_ERR;
    if (h->dim % h->n_heads != 0)
        return tc_err(err, "%s: llama2.c dim %d is not divisible by n_heads %d", path, (int)h->dim,
                      (int)h->n_heads);
    if (h->n_heads % h->n_kv_heads != 0)
        return tc_err(err, "%s: llama2.c n_heads %d is not divisible by n_kv_heads %d", path,
                      (int)h->n_heads, (int)h->n_kv_heads);
    /* RoPE rotates pairs, so an odd head size has no freq_cis layout. */
    if ((h->dim / h->n_heads) % 2 != 0)
        return tc_err(err, "%s: llama2.c head size %d (dim / n_heads) is odd", path,
                      (int)(h->dim / h->n_heads));
    return TC_OK;
}

/* Total file size the header implies, overflow-checked. */
static int expected_size(const char *path, const tc_llama2c_header *h, uint64_t *out, tc_error *err)
{
    section s[N_SECTIONS];
    int n = layout(h, s);
    uint64_t total = HEADER_BYTES;
    for (int i = 0; i < n; i++) {
        uint64_t bytes;
        if (tc_mul_u64(slice_elements(&s[i]), s[i].per_layer ? (uint64_t)h->n_layers : 1u, &bytes) ||
            tc_mul_u64(bytes, sizeof(float), &bytes) || tc_add_u64(total, bytes, &total))
            return tc_err(err, "%s: the llama2.c header implies a file size that overflows", path);
    }
    *out = total;
    return TC_OK;
}

static void describe(char *buf, size_t n, const tc_llama2c_header *h)
{
    snprintf(buf, n, "dim %d, hidden %d, %d layers, %d/%d heads, vocab %d%s, seq %d", (int)h->dim,
             (int)h->hidden_dim, (int)h->n_layers, (int)h->n_heads, (int)h->n_kv_heads,
             (int)h->vocab_size, h->shared_classifier ? "" : " (separate classifier)", (int)h->seq_len);
}

/* ---- Reading --------------------------------------------------------------- */

static int read_header(tc_cursor *cur, tc_llama2c_header *h, tc_error *err)
{
    int32_t *fields[7] = {&h->dim, &h->hidden_dim, &h->n_layers, &h->n_heads,
                          &h->n_kv_heads, &h->vocab_size, &h->seq_len};
    static const char *names[7] = {"header field dim",        "header field hidden_dim",
                                   "header field n_layers",   "header field n_heads",
                                   "header field n_kv_heads", "header field vocab_size",
                                   "header field seq_len"};
    for (int i = 0; i < 7; i++)
        if (tc_cursor_i32(cur, fields[i], names[i], err))
            return TC_ERR;
    h->shared_classifier = h->vocab_size > 0;
    /* Bound before negating: -INT32_MIN does not exist. */
    if (h->vocab_size < 0) {
        if (h->vocab_size < -MAX_DIM)
            return tc_err(err, "%s: llama2.c header field vocab_size is %d, beyond the supported %d",
                          cur->name, (int)h->vocab_size, MAX_DIM);
        h->vocab_size = -h->vocab_size;
    }
    return TC_OK;
}

static int check_file_size(const char *path, const tc_llama2c_header *h, uint64_t size, tc_error *err)
{
    uint64_t want = 0;
    if (expected_size(path, h, &want, err))
        return TC_ERR;
    if (size == want)
        return TC_OK;
    char d[200];
    describe(d, sizeof d, h);
    if (size < want)
        return tc_err(err,
                      "%s: truncated llama2.c checkpoint: its header (%s) needs %llu bytes but the file has %llu",
                      path, d, (unsigned long long)want, (unsigned long long)size);
    return tc_err(err,
                  "%s: llama2.c checkpoint has %llu trailing bytes: its header (%s) needs %llu bytes but the "
                  "file has %llu",
                  path, (unsigned long long)(size - want), d, (unsigned long long)want,
                  (unsigned long long)size);
}

/* Walks the sections in file order, adding every weight slice to the
 * directory and stepping over the RoPE tables. */
static int add_tensors(tc_llama2c *c, tc_cursor *cur, const char *file, tc_error *err)
{
    section s[N_SECTIONS];
    int n = layout(&c->hdr, s);
    char name[128];
    for (int i = 0; i < n; i++) {
        int layers = s[i].per_layer ? c->hdr.n_layers : 1;
        uint64_t bytes = slice_elements(&s[i]) * sizeof(float); /* bounded by the size check */
        for (int l = 0; l < layers; l++) {
            const uint8_t *p;
            if (tc_cursor_bytes(cur, bytes, &p, s[i].what, err))
                return TC_ERR;
            if (!s[i].name)
                continue;
            slice_name(name, sizeof name, &s[i], l);
            if (tc_tensordir_add(&c->dir, name, TC_F32, s[i].n_dims, s[i].shape, p, bytes, file, err))
                return TC_ERR;
        }
    }
    return TC_OK;
}

static int open_mapped(tc_llama2c *c, tc_mapfile *m, tc_error *err)
{
    tc_cursor cur;
    tc_cursor_init(&cur, m->data, m->size, c->path);
    if (read_header(&cur, &c->hdr, err) || check_header(c->path, &c->hdr, err) ||
        check_file_size(c->path, &c->hdr, m->size, err))
        return TC_ERR;
    size_t idx;
    if (tc_tensordir_adopt_map(&c->dir, m, &idx, err))
        return TC_ERR;
    const tc_mapfile *held = &c->dir.maps[idx];
    tc_cursor_init(&cur, held->data, held->size, held->path);
    cur.pos = HEADER_BYTES;
    return add_tensors(c, &cur, held->path, err);
}

int tc_llama2c_open(tc_llama2c *c, const char *path, tc_error *err)
{
    memset(c, 0, sizeof *c);
    tc_tensordir_init(&c->dir);
    c->path = strdup(path);
    if (!c->path)
        return tc_err(err, "%s: out of memory", path);
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err)) {
        tc_llama2c_close(c);
        return TC_ERR;
    }
    int rc = open_mapped(c, &m, err);
    tc_mapfile_close(&m); /* a no-op once the directory has adopted it */
    if (rc)
        tc_llama2c_close(c);
    return rc;
}

void tc_llama2c_close(tc_llama2c *c)
{
    tc_tensordir_free(&c->dir);
    free(c->path);
    memset(c, 0, sizeof *c);
}

/* ---- Writing --------------------------------------------------------------- */

static void put_i32(uint8_t *p, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static int write_header(tc_outfile *o, const tc_llama2c_header *h, tc_error *err)
{
    const int32_t v[7] = {h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads,
                          h->shared_classifier ? h->vocab_size : -h->vocab_size, h->seq_len};
    uint8_t b[HEADER_BYTES];
    for (int i = 0; i < 7; i++)
        put_i32(b + 4 * i, v[i]);
    return tc_outfile_write(o, b, sizeof b, err);
}

static const tc_out_tensor *find_out(const tc_out_tensor *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].name && strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

static int check_out_shape(const char *path, const tc_out_tensor *t, const section *s, tc_error *err)
{
    if (t->dtype != TC_F32)
        return tc_err(err, "%s: tensor '%s' is %s but a llama2.c checkpoint stores F32 only", path,
                      t->name, tc_dtype_name(t->dtype));
    int same = t->n_dims == s->n_dims;
    for (int i = 0; same && i < s->n_dims; i++)
        same = t->shape[i] == s->shape[i];
    if (!same) {
        char want[64];
        if (s->n_dims == 1)
            snprintf(want, sizeof want, "[%lld]", (long long)s->shape[0]);
        else
            snprintf(want, sizeof want, "[%lld x %lld]", (long long)s->shape[0], (long long)s->shape[1]);
        return tc_err(err, "%s: tensor '%s' does not have the shape %s that the llama2.c header implies", path,
                      t->name, want);
    }
    return TC_OK;
}

static int is_slot(const section *s, int ns, int n_layers, const char *name)
{
    char buf[128];
    for (int k = 0; k < ns; k++) {
        if (!s[k].name)
            continue;
        for (int l = 0; l < (s[k].per_layer ? n_layers : 1); l++) {
            slice_name(buf, sizeof buf, &s[k], l);
            if (strcmp(buf, name) == 0)
                return 1;
        }
    }
    return 0;
}

/* Every input tensor must land in exactly one slot: a stray or duplicated
 * name is a caller's mistake that would otherwise vanish silently. */
static int check_inputs(const char *path, const tc_llama2c_header *h, const tc_out_tensor *t, size_t n,
                        tc_error *err)
{
    section s[N_SECTIONS];
    int ns = layout(h, s);
    char name[128];
    for (size_t i = 0; i < n; i++) {
        if (!t[i].name)
            return tc_err(err, "%s: an output tensor has no name", path);
        if (find_out(t, n, t[i].name) != &t[i])
            return tc_err(err, "%s: tensor '%s' is given twice", path, t[i].name);
        if (!is_slot(s, ns, h->n_layers, t[i].name))
            return tc_err(err, "%s: tensor '%s' has no place in a llama2.c checkpoint%s", path, t[i].name,
                          strcmp(t[i].name, "output.weight") == 0 ? " whose classifier is shared" : "");
    }
    for (int i = 0; i < ns; i++) {
        if (!s[i].name)
            continue;
        for (int l = 0; l < (s[i].per_layer ? h->n_layers : 1); l++) {
            slice_name(name, sizeof name, &s[i], l);
            const tc_out_tensor *o = find_out(t, n, name);
            if (!o)
                return tc_err(err, "%s: tensor '%s' is missing for the llama2.c checkpoint", path, name);
            if (check_out_shape(path, o, &s[i], err))
                return TC_ERR;
        }
    }
    return TC_OK;
}

/* Writes one tensor's bytes, straight from its data or through a buffer its
 * fill function produces, so only one tensor is ever held. */
static int write_tensor(tc_outfile *o, const tc_out_tensor *t, tc_error *err)
{
    uint64_t bytes;
    if (tc_out_tensor_nbytes(t, &bytes, err))
        return TC_ERR;
    if (bytes > SIZE_MAX)
        return tc_err(err, "%s: tensor '%s' is too large for this machine", o->path, t->name);
    if (t->data)
        return tc_outfile_write(o, t->data, (size_t)bytes, err);
    void *buf = malloc(bytes ? (size_t)bytes : 1);
    if (!buf)
        return tc_err(err, "%s: out of memory for tensor '%s' (%llu bytes)", o->path, t->name,
                      (unsigned long long)bytes);
    int rc = tc_out_tensor_produce(t, buf, err);
    if (rc != TC_OK)
        tc_err_prefix(err, "%s", o->path);
    else
        rc = tc_outfile_write(o, buf, (size_t)bytes, err);
    free(buf);
    return rc;
}

/* One RoPE table as llama2.c's export computes it in float32:
 * freq_i = 1 / theta^(2i / head_size), angle = t * freq_i, one row per
 * position holding cos (the real table) or sin (the imaginary one). */
static int write_rope_table(tc_outfile *o, const tc_llama2c_header *h, rope_part part, tc_error *err)
{
    const int hs = h->dim / h->n_heads, half = hs / 2;
    float *freq = malloc(2 * (size_t)half * sizeof *freq);
    if (!freq)
        return tc_err(err, "%s: out of memory", o->path);
    float *row = freq + half;
    for (int i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)hs;
        freq[i] = 1.0f / (float)pow(ROPE_THETA, (double)expo);
    }
    int rc = TC_OK;
    for (int t = 0; t < h->seq_len && rc == TC_OK; t++) {
        for (int i = 0; i < half; i++) {
            /* The product is rounded to float first, as torch.outer does. */
            float angle = (float)t * freq[i];
            row[i] = (float)(part == ROPE_COS ? cos((double)angle) : sin((double)angle));
        }
        rc = tc_outfile_write(o, row, (size_t)half * sizeof *row, err);
    }
    free(freq);
    return rc;
}

static int write_body(tc_outfile *o, const tc_llama2c_header *h, const tc_out_tensor *t, size_t n,
                      tc_error *err)
{
    section s[N_SECTIONS];
    int ns = layout(h, s);
    char name[128];
    if (write_header(o, h, err))
        return TC_ERR;
    for (int i = 0; i < ns; i++) {
        if (s[i].rope != NOT_ROPE) {
            if (write_rope_table(o, h, s[i].rope, err))
                return TC_ERR;
            continue;
        }
        int layers = s[i].per_layer ? h->n_layers : 1;
        for (int l = 0; l < layers; l++) {
            slice_name(name, sizeof name, &s[i], l);
            if (write_tensor(o, find_out(t, n, name), err))
                return TC_ERR;
        }
    }
    return TC_OK;
}

int tc_llama2c_write(const char *path, const tc_llama2c_header *hdr, const tc_out_tensor *tensors,
                     size_t n_tensors, tc_error *err)
{
    if (check_header(path, hdr, err) || check_inputs(path, hdr, tensors, n_tensors, err))
        return TC_ERR;
    uint64_t want = 0;
    if (expected_size(path, hdr, &want, err))
        return TC_ERR;
    tc_outfile o;
    if (tc_outfile_open(&o, path, err))
        return TC_ERR;
    if (write_body(&o, hdr, tensors, n_tensors, err)) {
        tc_outfile_abort(&o);
        return TC_ERR;
    }
    if (o.written != want) {
        tc_outfile_abort(&o);
        return tc_err(err, "%s: wrote %llu bytes where the llama2.c layout needs %llu", path,
                      (unsigned long long)o.written, (unsigned long long)want);
    }
    if (tc_outfile_commit(&o, err)) {
        tc_outfile_abort(&o);
        return TC_ERR;
    }
    return TC_OK;
}
