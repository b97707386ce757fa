/* llama2.c checkpoints, in the three layouts karpathy/llama2.c's export.py
 * writes:
 *
 *   version 0 (legacy_export): a 7 x int32 header, then every fp32 weight
 *     array in a fixed order, each one holding all layers back to back, with
 *     the RoPE tables between the final norm and the classifier;
 *   version 1 (version1_export): a 256-byte header that starts with a magic
 *     and a version, then the fp32 arrays in another order, without RoPE
 *     tables;
 *   version 2 (version2_export): the same header plus a group size; the
 *     norms in fp32, then every matrix as int8 values followed by one fp32
 *     scale per group of values.
 *
 * The files carry no names and no offsets, so the whole layout follows from
 * the header; the reader therefore trusts nothing until the size that header
 * implies equals the file's size exactly.  Only version 0 is written. */
#include "tc/llama2c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/mapfile.h"
#include "tc/outfile.h"

#define LEGACY_HEADER_BYTES 28u
#define VERSIONED_HEADER_BYTES 256u
/* "ak42" as export.py packs it: struct.pack('I', 0x616b3432), so the file's
 * first four bytes are '2' '4' 'k' 'a'. */
#define MAGIC 0x616b3432u
/* Far beyond any real model, yet small enough that no product of these can
 * wrap a uint64_t; the checked arithmetic below guards regardless. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define ROPE_THETA 10000.0

/* ---- Layout ---------------------------------------------------------------
 * One section is one array of the file: per layer or global, with the shape
 * of one slice.  Two sections hold the RoPE tables (version 0 only), which
 * are derived data: they get no tensor name and the writer recomputes them.
 * In version 2 every matrix slice is quantized: its values as int8, then
 * one fp32 scale per group_size consecutive values of the flattened slice
 * (groups may straddle rows), and a value is q * scale. */
typedef enum section_id {
    S_TOK, S_ATT_NORM, S_WQ, S_WK, S_WV, S_WO, S_FFN_NORM, S_W1, S_W2, S_W3, S_NORM, S_COS, S_SIN, S_OUT,
    N_SECTIONS
} section_id;

typedef enum rope_part { NOT_ROPE, ROPE_COS, ROPE_SIN } rope_part;

typedef struct section {
    const char *name;   /* layer-relative for per-layer sections; NULL for RoPE */
    const char *what;   /* how messages call it */
    rope_part rope;
    int per_layer;
    int n_dims;
    int64_t shape[2];
    int quant;          /* stored as int8 values and fp32 group scales */
} section;

/* File order of each layout, as export.py writes them. */
static const uint8_t ORDER_V0[N_SECTIONS] = {S_TOK, S_ATT_NORM, S_WQ, S_WK, S_WV,  S_WO,  S_FFN_NORM,
                                             S_W1,  S_W2,       S_W3, S_NORM, S_COS, S_SIN, S_OUT};
static const uint8_t ORDER_V12[N_SECTIONS - 2] = {S_ATT_NORM, S_FFN_NORM, S_NORM, S_TOK, S_WQ, S_WK,
                                                  S_WV,       S_WO,       S_W1,   S_W2,  S_W3, S_OUT};

/* The sections of a file of the given version, in file order; returns their count. */
static int layout(const tc_llama2c_header *h, int version, section s[N_SECTIONS])
{
    const int64_t dim = h->dim, hid = h->hidden_dim, vocab = h->vocab_size;
    const int64_t hs = dim / h->n_heads, q = h->n_heads * hs, kv = h->n_kv_heads * hs;
    const section all[N_SECTIONS] = {
        [S_TOK] = {"tok_embeddings.weight", "token embedding table", NOT_ROPE, 0, 2, {vocab, dim}, 0},
        [S_ATT_NORM] = {"attention_norm.weight", "rms_att_weight", NOT_ROPE, 1, 1, {dim, 0}, 0},
        [S_WQ] = {"attention.wq.weight", "wq", NOT_ROPE, 1, 2, {q, dim}, 0},
        [S_WK] = {"attention.wk.weight", "wk", NOT_ROPE, 1, 2, {kv, dim}, 0},
        [S_WV] = {"attention.wv.weight", "wv", NOT_ROPE, 1, 2, {kv, dim}, 0},
        [S_WO] = {"attention.wo.weight", "wo", NOT_ROPE, 1, 2, {dim, q}, 0},
        [S_FFN_NORM] = {"ffn_norm.weight", "rms_ffn_weight", NOT_ROPE, 1, 1, {dim, 0}, 0},
        [S_W1] = {"feed_forward.w1.weight", "w1", NOT_ROPE, 1, 2, {hid, dim}, 0},
        [S_W2] = {"feed_forward.w2.weight", "w2", NOT_ROPE, 1, 2, {dim, hid}, 0},
        [S_W3] = {"feed_forward.w3.weight", "w3", NOT_ROPE, 1, 2, {hid, dim}, 0},
        [S_NORM] = {"norm.weight", "rms_final_weight", NOT_ROPE, 0, 1, {dim, 0}, 0},
        [S_COS] = {NULL, "freq_cis_real", ROPE_COS, 0, 2, {h->seq_len, hs / 2}, 0},
        [S_SIN] = {NULL, "freq_cis_imag", ROPE_SIN, 0, 2, {h->seq_len, hs / 2}, 0},
        [S_OUT] = {"output.weight", "classifier", NOT_ROPE, 0, 2, {vocab, dim}, 0},
    };
    const uint8_t *order = version == 0 ? ORDER_V0 : ORDER_V12;
    int n_order = version == 0 ? (int)sizeof ORDER_V0 : (int)sizeof ORDER_V12, n = 0;
    for (int i = 0; i < n_order; i++) {
        if (order[i] == S_OUT && h->shared_classifier)
            continue;
        s[n] = all[order[i]];
        s[n].quant = version == 2 && s[n].n_dims == 2;
        n++;
    }
    return n;
}

static uint64_t header_bytes(int version)
{
    return version == 0 ? LEGACY_HEADER_BYTES : VERSIONED_HEADER_BYTES;
}

static uint64_t slice_elements(const section *s)
{
    return s->n_dims == 1 ? (uint64_t)s->shape[0] : (uint64_t)s->shape[0] * (uint64_t)s->shape[1];
}

/* Bytes of one slice in the file: fp32 values, or int8 values and their
 * fp32 scales.  The caller has checked that groups tile the slice. */
static int slice_bytes(const section *s, int32_t group_size, uint64_t *out)
{
    uint64_t n = slice_elements(s), scales;
    if (!s->quant)
        return tc_mul_u64(n, sizeof(float), out);
    return tc_mul_u64(n / (uint64_t)group_size, sizeof(float), &scales) || tc_add_u64(n, scales, out);
}

static void slice_name(char *buf, size_t n, const section *s, int layer)
{
    if (s->per_layer)
        snprintf(buf, n, "layers.%d.%s", layer, s->name);
    else
        snprintf(buf, n, "%s", s->name);
}

/* ---- Header validation -----------------------------------------------------
 * ctx begins every message after the path: "llama2.c version 1", or for a
 * file without the magic why it was read as the legacy format at all. */

static int check_field(const char *path, const char *ctx, const char *field, int32_t v, int32_t max,
                       tc_error *err)
{
    if (v <= 0)
        return tc_err(err, "%s: %s header field %s is %d but must be positive", path, ctx, field, (int)v);
    if (v > max)
        return tc_err(err, "%s: %s header field %s is %d, above the supported %d", path, ctx, field,
                      (int)v, (int)max);
    return TC_OK;
}

/* Checks a header whose vocab_size is already positive. */
static int check_header(const char *path, const char *ctx, const tc_llama2c_header *h, tc_error *err)
{
    if (check_field(path, ctx, "dim", h->dim, MAX_DIM, err) ||
        check_field(path, ctx, "hidden_dim", h->hidden_dim, MAX_DIM, err) ||
        check_field(path, ctx, "n_layers", h->n_layers, MAX_LAYERS, err) ||
        check_field(path, ctx, "n_heads", h->n_heads, MAX_DIM, err) ||
        check_field(path, ctx, "n_kv_heads", h->n_kv_heads, MAX_DIM, err) ||
        check_field(path, ctx, "vocab_size", h->vocab_size, MAX_DIM, err) ||
        check_field(path, ctx, "seq_len", h->seq_len, MAX_DIM, err))
        return TC_ERR;
    if (h->dim % h->n_heads != 0)
        return tc_err(err, "%s: %s dim %d is not divisible by n_heads %d", path, ctx, (int)h->dim,
                      (int)h->n_heads);
    if (h->n_heads % h->n_kv_heads != 0)
        return tc_err(err, "%s: %s n_heads %d is not divisible by n_kv_heads %d", path, ctx,
                      (int)h->n_heads, (int)h->n_kv_heads);
    /* RoPE rotates pairs, so an odd head size has no freq_cis layout. */
    if ((h->dim / h->n_heads) % 2 != 0)
        return tc_err(err, "%s: %s head size %d (dim / n_heads) is odd", path, ctx,
                      (int)(h->dim / h->n_heads));
    return TC_OK;
}

/* Version 2's groups: export.py halves its group size until it divides dim,
 * and every quantized matrix has dim as one side, so its values then split
 * into whole groups. */
static int check_group_size(const char *path, const tc_llama2c_header *h, tc_error *err)
{
    if (h->group_size <= 0)
        return tc_err(err, "%s: llama2.c version 2 header field group_size is %d but must be positive", path,
                      (int)h->group_size);
    if (h->dim % h->group_size != 0)
        return tc_err(err, "%s: llama2.c version 2 group_size %d does not divide dim %d", path,
                      (int)h->group_size, (int)h->dim);
    return TC_OK;
}

/* Total file size the header implies, overflow-checked. */
static int expected_size(const char *path, const tc_llama2c_header *h, int version, uint64_t *out,
                         tc_error *err)
{
    section s[N_SECTIONS];
    int n = layout(h, version, s);
    uint64_t total = header_bytes(version);
    for (int i = 0; i < n; i++) {
        uint64_t bytes;
        if (s[i].quant && slice_elements(&s[i]) % (uint64_t)h->group_size != 0)
            return tc_err(err, "%s: llama2.c version 2 %s holds %llu values, not whole groups of %d", path,
                          s[i].what, (unsigned long long)slice_elements(&s[i]), (int)h->group_size);
        if (slice_bytes(&s[i], h->group_size, &bytes) ||
            tc_mul_u64(bytes, s[i].per_layer ? (uint64_t)h->n_layers : 1u, &bytes) ||
            tc_add_u64(total, bytes, &total))
            return tc_err(err, "%s: the llama2.c header implies a file size that overflows", path);
    }
    *out = total;
    return TC_OK;
}

static void describe(char *buf, size_t n, const tc_llama2c_header *h, int version)
{
    char group[32] = "";
    if (version == 2)
        snprintf(group, sizeof group, ", int8 groups of %d", (int)h->group_size);
    snprintf(buf, n, "dim %d, hidden %d, %d layers, %d/%d heads, vocab %d%s, seq %d%s", (int)h->dim,
             (int)h->hidden_dim, (int)h->n_layers, (int)h->n_heads, (int)h->n_kv_heads,
             (int)h->vocab_size, h->shared_classifier ? "" : " (separate classifier)", (int)h->seq_len,
             group);
}

/* ---- Reading --------------------------------------------------------------- */

/* The seven int32 fields every layout shares; kind names the layout in
 * messages ("llama2.c legacy", "llama2.c version 1"). */
static int read_fields(tc_cursor *cur, tc_llama2c_header *h, const char *kind, tc_error *err)
{
    int32_t *fields[7] = {&h->dim, &h->hidden_dim, &h->n_layers, &h->n_heads,
                          &h->n_kv_heads, &h->vocab_size, &h->seq_len};
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                   "seq_len"};
    char what[96];
    for (int i = 0; i < 7; i++) {
        snprintf(what, sizeof what, "%s header field %s", kind, names[i]);
        if (tc_cursor_i32(cur, fields[i], what, err))
            return TC_ERR;
    }
    return TC_OK;
}

/* Version 0: a negative vocab size marks a separate classifier. */
static int read_legacy_header(tc_cursor *cur, tc_llama2c_header *h, const char *ctx, tc_error *err)
{
    if (read_fields(cur, h, "llama2.c legacy", err))
        return TC_ERR;
    h->version = 0;
    h->group_size = 0;
    h->shared_classifier = h->vocab_size > 0;
    /* Bound before negating: -INT32_MIN does not exist. */
    if (h->vocab_size < 0) {
        if (h->vocab_size < -MAX_DIM)
            return tc_err(err, "%s: %s header field vocab_size is %d, beyond the supported %d", cur->name,
                          ctx, (int)h->vocab_size, MAX_DIM);
        h->vocab_size = -h->vocab_size;
    }
    return TC_OK;
}

/* Versions 1 and 2, after the magic: int32 version, the seven fields, a
 * uint8 shared-classifier flag, for version 2 an int32 group size (at byte
 * 37, unaligned, as export.py packs it), zeros up to byte 256. */
static int read_versioned_header(tc_cursor *cur, tc_llama2c_header *h, tc_error *err)
{
    int32_t version;
    if (tc_cursor_i32(cur, &version, "llama2.c version number", err))
        return TC_ERR;
    if (version != 1 && version != 2)
        return tc_err(err,
                      "%s: llama2.c checkpoint with magic 'ak42' has version %d; tc reads versions 1 and 2 "
                      "(and the legacy format, which has no magic)",
                      cur->name, (int)version);
    char kind[32], what[96];
    snprintf(kind, sizeof kind, "llama2.c version %d", (int)version);
    if (read_fields(cur, h, kind, err))
        return TC_ERR;
    h->version = version;
    h->group_size = 0;
    uint8_t flag;
    snprintf(what, sizeof what, "%s header field shared_classifier", kind);
    if (tc_cursor_u8(cur, &flag, what, err))
        return TC_ERR;
    if (flag > 1)
        return tc_err(err, "%s: %s header field shared_classifier is %u, not 0 or 1", cur->name, kind,
                      (unsigned)flag);
    h->shared_classifier = flag;
    if (version == 2) {
        snprintf(what, sizeof what, "%s header field group_size", kind);
        if (tc_cursor_i32(cur, &h->group_size, what, err))
            return TC_ERR;
    }
    snprintf(what, sizeof what, "the rest of the %u-byte %s header", VERSIONED_HEADER_BYTES, kind);
    return tc_cursor_skip(cur, VERSIONED_HEADER_BYTES - cur->pos, what, err);
}

static int check_file_size(const char *path, const tc_llama2c_header *h, uint64_t size, tc_error *err)
{
    uint64_t want = 0;
    if (expected_size(path, h, h->version, &want, err))
        return TC_ERR;
    if (size == want)
        return TC_OK;
    char d[200], kind[32];
    describe(d, sizeof d, h, h->version);
    if (h->version == 0)
        snprintf(kind, sizeof kind, "llama2.c legacy");
    else
        snprintf(kind, sizeof kind, "llama2.c version %d", h->version);
    if (size < want)
        return tc_err(err, "%s: truncated %s checkpoint: its header (%s) needs %llu bytes but the file has %llu",
                      path, kind, d, (unsigned long long)want, (unsigned long long)size);
    return tc_err(err,
                  "%s: %s checkpoint has %llu trailing bytes: its header (%s) needs %llu bytes but the "
                  "file has %llu",
                  path, kind, (unsigned long long)(size - want), d, (unsigned long long)want,
                  (unsigned long long)size);
}

/* A quantized slice (n int8 values, then n / group_size fp32 scales) as an
 * fp32 tensor in a buffer the directory owns: value i is q[i] * scale[i /
 * group_size], one float multiply, as llama2.c's runq.c dequantizes. */
static int add_dequantized(tc_llama2c *c, const char *name, const section *s, const uint8_t *p,
                           uint64_t nbytes, const char *file, tc_error *err)
{
    const uint64_t n = slice_elements(s), gs = (uint64_t)c->hdr.group_size;
    uint64_t fbytes;
    if (tc_mul_u64(n, sizeof(float), &fbytes) || fbytes > SIZE_MAX)
        return tc_err(err, "%s: %s is too large to dequantize on this machine", file, name);
    tc_cursor cur;
    tc_cursor_init(&cur, p, nbytes, file);
    const uint8_t *q;
    if (tc_cursor_bytes(&cur, n, &q, s->what, err))
        return TC_ERR;
    float *dst = malloc(fbytes ? (size_t)fbytes : 1);
    if (!dst)
        return tc_err(err, "%s: out of memory dequantizing %s (%llu bytes)", file, name,
                      (unsigned long long)fbytes);
    if (tc_tensordir_adopt_buffer(&c->dir, dst, err))
        return tc_err_prefix(err, "%s", file);
    for (uint64_t g = 0; g < n / gs; g++) {
        float scale;
        if (tc_cursor_f32(&cur, &scale, "group scale", err))
            return TC_ERR;
        for (uint64_t i = g * gs; i < (g + 1) * gs; i++) {
            int v = q[i] < 128 ? (int)q[i] : (int)q[i] - 256; /* the byte as int8 */
            dst[i] = (float)v * scale;
        }
    }
    return tc_tensordir_add(&c->dir, name, TC_F32, s->n_dims, s->shape, (const uint8_t *)dst, fbytes, file,
                            err);
}

/* Walks the sections in file order, adding every weight slice to the
 * directory and stepping over the RoPE tables. */
static int add_tensors(tc_llama2c *c, tc_cursor *cur, const char *file, tc_error *err)
{
    section s[N_SECTIONS];
    int n = layout(&c->hdr, c->hdr.version, s);
    char name[128];
    for (int i = 0; i < n; i++) {
        int layers = s[i].per_layer ? c->hdr.n_layers : 1;
        uint64_t bytes;
        if (slice_bytes(&s[i], c->hdr.group_size, &bytes)) /* bounded by the size check */
            return tc_err(err, "%s: %s overflows", file, s[i].what);
        for (int l = 0; l < layers; l++) {
            const uint8_t *p;
            if (tc_cursor_bytes(cur, bytes, &p, s[i].what, err))
                return TC_ERR;
            if (!s[i].name)
                continue;
            slice_name(name, sizeof name, &s[i], l);
            if (s[i].quant ? add_dequantized(c, name, &s[i], p, bytes, file, err)
                           : tc_tensordir_add(&c->dir, name, TC_F32, s[i].n_dims, s[i].shape, p, bytes, file,
                                              err))
                return TC_ERR;
        }
    }
    return TC_OK;
}

/* Why a file without the magic was read as the legacy format, for the
 * messages its header fields give: the first bytes when they look like
 * another format's magic. */
static void legacy_context(char *buf, size_t n, const uint8_t *data, uint64_t size)
{
    int text = size >= 4;
    for (int i = 0; text && i < 4; i++)
        text = data[i] >= 0x20 && data[i] < 0x7f;
    if (text)
        snprintf(buf, n, "read as a llama2.c legacy checkpoint (it starts with '%c%c%c%c', not the magic "
                 "'ak42'), its", data[0], data[1], data[2], data[3]);
    else
        snprintf(buf, n, "read as a llama2.c legacy checkpoint (no magic 'ak42'), its");
}

static int read_header(const tc_mapfile *m, tc_llama2c_header *h, tc_error *err)
{
    tc_cursor cur;
    tc_cursor_init(&cur, m->data, m->size, m->path);
    uint32_t magic = 0;
    if (m->size >= 4) {
        tc_cursor peek = cur;
        if (tc_cursor_u32(&peek, &magic, "llama2.c magic", err))
            return TC_ERR;
    }
    if (magic == MAGIC) {
        cur.pos = 4;
        if (read_versioned_header(&cur, h, err) ||
            check_header(m->path, h->version == 1 ? "llama2.c version 1" : "llama2.c version 2", h, err))
            return TC_ERR;
        return h->version == 2 ? check_group_size(m->path, h, err) : TC_OK;
    }
    if (magic == 0x32346b61u) /* the bytes 'a' 'k' '4' '2' */
        return tc_err(err, "%s: the file starts with llama2.c's magic 'ak42' in big-endian byte order; tc "
                      "reads the little-endian files llama2.c's export.py writes", m->path);
    char ctx[160];
    legacy_context(ctx, sizeof ctx, m->data, m->size);
    return read_legacy_header(&cur, h, ctx, err) || check_header(m->path, ctx, h, err);
}

static int open_mapped(tc_llama2c *c, tc_mapfile *m, tc_error *err)
{
    if (read_header(m, &c->hdr, err) || check_file_size(c->path, &c->hdr, m->size, err))
        return TC_ERR;
    size_t idx;
    if (tc_tensordir_adopt_map(&c->dir, m, &idx, err))
        return TC_ERR;
    const tc_mapfile *held = &c->dir.maps[idx];
    tc_cursor cur;
    tc_cursor_init(&cur, held->data, held->size, held->path);
    cur.pos = header_bytes(c->hdr.version);
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
    uint8_t b[LEGACY_HEADER_BYTES];
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
    int ns = layout(h, 0, s);
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
    int ns = layout(h, 0, s);
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
    if (check_header(path, "llama2.c", hdr, err) || check_inputs(path, hdr, tensors, n_tensors, err))
        return TC_ERR;
    uint64_t want = 0;
    if (expected_size(path, hdr, 0, &want, err))
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
