/* The packed ternary model file (.tcq): preamble, JSON header, aligned
 * tensor data, then the embedded tokenizer's files.
 *
 * Preamble (24 bytes, little-endian): magic "TCTMODEL", u32 version, u32
 * flags (0), u64 header length.  The header follows, then zero padding to a
 * multiple of 64 where the data section starts.  Tensor and tokenizer file
 * offsets are relative to the data section; see docs/PACKED_FORMAT.md. */
#include "tc/tmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/info.h"
#include "tc/outfile.h"
#include "tc/qmat.h"

#define PREAMBLE_BYTES 24
#define HEADER_MAX (64u << 20) /* a 100k-tensor table fits comfortably */
#define MAX_LAYERS 4096
#define JSON_INT_MAX 9007199254740992.0 /* 2^53: integers a double holds exactly */

static uint32_t crc_of(const uint8_t *p, uint64_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static const char *global_role_name(int g)
{
    return g == TC_G_EMBD ? "token_embd" : g == TC_G_OUT_NORM ? "output_norm" : "output";
}

/* The plain layouts: float values, and ggml's block types for the embedding
 * and head and (Q8_0, Q4_0) the blocks' linear weights (tc/qmat.h), bytes as
 * GGUF stores them. */
static const struct {
    const char *name;
    tc_dtype dtype;
} PLAIN[] = {{"f32", TC_F32}, {"f16", TC_F16}, {"q8_0", TC_Q8_0}, {"q6_k", TC_Q6_K}, {"q4_0", TC_Q4_0}};

static const char *store_name(const tc_tmodel_tensor *t)
{
    if (t->ternary)
        return tc_tpack_layout_name(t->plan.layout);
    for (size_t i = 0; i < sizeof PLAIN / sizeof PLAIN[0]; i++)
        if (PLAIN[i].dtype == t->dtype)
            return PLAIN[i].name;
    return "f32";
}

/* ---- Header: building -------------------------------------------------- */

static cJSON *group_json(const tc_tgroup *g)
{
    if (g->kind == TC_TGROUP_TENSOR)
        return cJSON_CreateString("tensor");
    if (g->kind == TC_TGROUP_ROW)
        return cJSON_CreateString("row");
    return cJSON_CreateNumber(g->cols);
}

static cJSON *config_json(const tc_config *c)
{
    cJSON *o = cJSON_CreateObject();
    tc_config_add_json(o, c);
    cJSON_AddNumberToObject(o, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(o, "eos_id", c->eos_id);
    return o;
}

static cJSON *quant_json(const tc_tquant_settings *q)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", tc_tmethod_name(q->method));
    cJSON_AddStringToObject(o, "layout", tc_tpack_layout_name(q->layout));
    cJSON_AddItemToObject(o, "group", group_json(&q->group));
    cJSON_AddNumberToObject(o, "calib_tokens", (double)q->calib_tokens);
    cJSON_AddBoolToObject(o, "sequential", q->sequential);
    cJSON_AddNumberToObject(o, "damp_frac", q->damp_frac);
    if (tc_tmethod_affine(q->method)) { /* version 3 */
        cJSON_AddBoolToObject(o, "act_order", q->act_order);
        cJSON_AddNumberToObject(o, "refit", q->refit);
        cJSON_AddNumberToObject(o, "block_rounds", q->block_rounds);
    }
    return o;
}

static cJSON *tensor_json(const tc_tmodel_tensor *t)
{
    char name[64], crc[16];
    tc_tmodel_tensor_name(t, name, sizeof name);
    snprintf(crc, sizeof crc, "%08x", (unsigned)t->crc32);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "layer", t->layer);
    cJSON_AddStringToObject(o, "role", t->layer >= 0 ? tc_role_name((tc_role)t->role)
                                                     : global_role_name(t->role));
    cJSON_AddStringToObject(o, "layout", store_name(t));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->n_dims; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    if (t->ternary)
        cJSON_AddItemToObject(o, "group", group_json(&t->plan.group));
    if (t->ternary && t->plan.params != TC_TPARAM_SCALE_F32) /* version 3 */
        cJSON_AddStringToObject(o, "params", tc_tparam_kind_name(t->plan.params));
    cJSON_AddNumberToObject(o, "offset", (double)t->offset);
    cJSON_AddNumberToObject(o, "size", (double)t->nbytes);
    cJSON_AddStringToObject(o, "crc32", crc);
    return o;
}

static cJSON *tok_json(const tc_tmodel_tok *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", tc_ttok_kind_name(t->kind));
    cJSON *arr = cJSON_AddArrayToObject(o, "files");
    for (int i = 0; i < t->n_files; i++) {
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", (unsigned)t->files[i].crc32);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", tc_ttok_file_name(t->kind, i));
        cJSON_AddNumberToObject(f, "offset", (double)t->files[i].offset);
        cJSON_AddNumberToObject(f, "size", (double)t->files[i].nbytes);
        cJSON_AddStringToObject(f, "crc32", crc);
        cJSON_AddItemToArray(arr, f);
    }
    return o;
}

/* Version 3 only where it is needed: a file older builds can read otherwise. */
static uint32_t version_of(const tc_tmodel *m)
{
    if (tc_tmethod_affine(m->quant.method))
        return TC_TMODEL_VERSION;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ternary && m->tensors[i].plan.params != TC_TPARAM_SCALE_F32)
            return TC_TMODEL_VERSION;
    return TC_TMODEL_VERSION_PLAIN;
}

const char *tc_tmixed_type_name(int i)
{
    static const char *const names[TC_TMIXED_NTYPES] = {"ternary", "q4_0", "q8_0"};
    return i >= 0 && i < TC_TMIXED_NTYPES ? names[i] : "?";
}

/* The mixed-precision record: a KL that was not measured (NaN) is null. */
static cJSON *mixed_json(const tc_tmixed *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "target_bpw", x->target_bpw);
    cJSON_AddNumberToObject(o, "bpw", x->bpw);
    cJSON_AddStringToObject(o, "measured", tc_tmethod_name(x->measured));
    cJSON_AddNumberToObject(o, "tokens", (double)x->tokens);
    cJSON *a = cJSON_AddArrayToObject(o, "kl");
    for (size_t i = 0; i < x->n_entries; i++) {
        const tc_tmixed_entry *e = &x->entries[i];
        tc_tmodel_tensor t = {.layer = e->layer, .role = e->role};
        char name[64];
        tc_tmodel_tensor_name(&t, name, sizeof name);
        cJSON *k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "name", name);
        for (int j = 0; j < TC_TMIXED_NTYPES; j++)
            cJSON_AddItemToObject(k, tc_tmixed_type_name(j),
                                  isfinite(e->kl[j]) ? cJSON_CreateNumber(e->kl[j]) : cJSON_CreateNull());
        cJSON_AddItemToArray(a, k);
    }
    return o;
}

static char *header_text(const tc_tmodel *m)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "tcq");
    cJSON_AddNumberToObject(root, "version", version_of(m));
    if (m->source)
        cJSON_AddStringToObject(root, "source", m->source);
    cJSON_AddItemToObject(root, "config", config_json(&m->cfg));
    cJSON_AddItemToObject(root, "quantization", quant_json(&m->quant));
    if (m->calib)
        cJSON_AddItemToObject(root, "calibration", tc_calib_windows_to_json(m->calib));
    if (m->mixed)
        cJSON_AddItemToObject(root, "mixed", mixed_json(m->mixed));
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < m->n_tensors; i++)
        cJSON_AddItemToArray(arr, tensor_json(&m->tensors[i]));
    if (m->tok.kind != TC_TTOK_NONE)
        cJSON_AddItemToObject(root, "tokenizer", tok_json(&m->tok));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* ---- Writing ------------------------------------------------------------ */

static int expected_bytes(const tc_tmodel_tensor *t, uint64_t *bytes, tc_error *err)
{
    if (t->ternary)
        return *bytes = t->plan.total_bytes, TC_OK;
    uint64_t n = t->n_dims == 2 ? (uint64_t)t->shape[0] * (uint64_t)t->shape[1] : (uint64_t)t->shape[0];
    return tc_dtype_span(t->dtype, n, bytes, err);
}

static int write_preamble(tc_outfile *o, uint32_t v, uint64_t header_len, tc_error *err)
{
    uint8_t p[PREAMBLE_BYTES];
    memcpy(p, TC_TMODEL_MAGIC, 8);
    for (int i = 0; i < 4; i++)
        p[8 + i] = (uint8_t)(v >> (8 * i)), p[12 + i] = 0;
    for (int i = 0; i < 8; i++)
        p[16 + i] = (uint8_t)(header_len >> (8 * i));
    return tc_outfile_write(o, p, sizeof p, err);
}

/* Offsets are known before any byte is produced (sizes follow from plans),
 * CRCs only after: the header is written with zero CRCs (fixed-width hex, so
 * the same length) and rewritten in place at the end. */
static int plan_offsets(tc_tmodel *m, tc_error *err)
{
    uint64_t off = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        tc_tmodel_tensor *t = &m->tensors[i];
        uint64_t want;
        if (expected_bytes(t, &want, err))
            return TC_ERR;
        if (t->nbytes != want)
            return tc_err(err, "tensor %zu holds %llu bytes but its layout needs %llu", i,
                          (unsigned long long)t->nbytes, (unsigned long long)want);
        off = (off + TC_TMODEL_ALIGN - 1) / TC_TMODEL_ALIGN * TC_TMODEL_ALIGN;
        t->offset = off;
        t->crc32 = 0;
        if (tc_add_u64(off, t->nbytes, &off))
            return tc_err(err, "tensor sizes overflow");
    }
    /* The tokenizer's files follow the tensors; their bytes are at hand, so
     * their CRCs go into the first header already. */
    tc_tmodel_tok *tk = &m->tok;
    if ((unsigned)tk->kind >= TC_TTOK_COUNT || tk->n_files < 0 || tk->n_files > TC_TTOK_MAX_FILES ||
        (tk->kind == TC_TTOK_NONE) != (tk->n_files == 0))
        return tc_err(err, "the tokenizer to embed is malformed");
    for (int i = 0; i < tk->n_files; i++) {
        tc_ttok_file *f = &tk->files[i];
        if (!tc_ttok_file_name(tk->kind, i) || !f->data || f->nbytes > TC_TTOK_MAX_BYTES)
            return tc_err(err, "the tokenizer to embed is malformed or too large");
        off = (off + TC_TMODEL_ALIGN - 1) / TC_TMODEL_ALIGN * TC_TMODEL_ALIGN;
        f->offset = off;
        f->crc32 = crc_of(f->data, f->nbytes);
        if (tc_add_u64(off, f->nbytes, &off))
            return tc_err(err, "tensor sizes overflow");
    }
    return TC_OK;
}

static int write_tensors(tc_outfile *o, tc_tmodel *m, uint64_t data_off, tc_tmodel_fill_fn fill,
                         void *ctx, tc_error *err)
{
    uint8_t *buf = NULL;
    int rc = TC_OK;
    for (size_t i = 0; i < m->n_tensors && rc == TC_OK; i++) {
        tc_tmodel_tensor *t = &m->tensors[i];
        const uint8_t *src = t->data;
        if (!src) {
            if (!fill || t->nbytes > SIZE_MAX)
                return free(buf), tc_err(err, "tensor %zu has no data", i);
            free(buf);
            buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
            if (!buf)
                return tc_err(err, "out of memory for tensor %zu", i);
            if (fill(ctx, i, buf, err))
                return free(buf), TC_ERR;
            src = buf;
        }
        t->crc32 = crc_of(src, t->nbytes);
        rc = tc_outfile_pad(o, TC_TMODEL_ALIGN, err);
        if (rc == TC_OK && o->written != data_off + t->offset)
            rc = tc_err(err, "internal error: tensor %zu lands at the wrong offset", i);
        if (rc == TC_OK)
            rc = tc_outfile_write(o, src, (size_t)t->nbytes, err);
        if (src == buf) {
            free(buf);
            buf = NULL;
        }
    }
    free(buf);
    for (int i = 0; i < m->tok.n_files && rc == TC_OK; i++) {
        const tc_ttok_file *f = &m->tok.files[i];
        rc = tc_outfile_pad(o, TC_TMODEL_ALIGN, err);
        if (rc == TC_OK && o->written != data_off + f->offset)
            rc = tc_err(err, "internal error: the tokenizer lands at the wrong offset");
        if (rc == TC_OK)
            rc = tc_outfile_write(o, f->data, (size_t)f->nbytes, err);
    }
    return rc;
}

static int rewrite_header(tc_outfile *o, const char *text, size_t len, tc_error *err)
{
    long end = ftell(o->f);
    uint64_t written = o->written;
    if (end < 0 || fseek(o->f, PREAMBLE_BYTES, SEEK_SET) != 0)
        return tc_err(err, "%s: cannot seek in the output", o->path);
    if (tc_outfile_write(o, text, len, err))
        return TC_ERR;
    if (fseek(o->f, end, SEEK_SET) != 0)
        return tc_err(err, "%s: cannot seek in the output", o->path);
    o->written = written;
    return TC_OK;
}

int tc_tmodel_write(const char *path, tc_tmodel *m, tc_tmodel_fill_fn fill, void *ctx, tc_error *err)
{
    if (plan_offsets(m, err))
        return tc_err_prefix(err, "%s", path);
    char *h0 = header_text(m);
    if (!h0)
        return tc_err(err, "%s: out of memory building the header", path);
    size_t len = strlen(h0);
    uint64_t data_off = (PREAMBLE_BYTES + len + TC_TMODEL_ALIGN - 1) / TC_TMODEL_ALIGN * TC_TMODEL_ALIGN;
    tc_outfile o;
    int rc = tc_outfile_open(&o, path, err);
    if (rc == TC_OK)
        rc = write_preamble(&o, version_of(m), len, err);
    if (rc == TC_OK)
        rc = tc_outfile_write(&o, h0, len, err);
    free(h0);
    if (rc == TC_OK)
        rc = tc_outfile_pad(&o, TC_TMODEL_ALIGN, err);
    if (rc == TC_OK)
        rc = write_tensors(&o, m, data_off, fill, ctx, err);
    if (rc == TC_OK) {
        char *h1 = header_text(m);
        if (!h1 || strlen(h1) != len)
            rc = tc_err(err, "%s: internal error: the header changed size", path);
        else
            rc = rewrite_header(&o, h1, len, err);
        free(h1);
    }
    if (rc == TC_OK)
        rc = tc_outfile_commit(&o, err);
    if (rc != TC_OK) {
        tc_outfile_abort(&o);
        if (err && strncmp(err->msg, path, strlen(path)) != 0)
            tc_err_prefix(err, "%s", path);
    }
    return rc;
}

/* ---- Reading ------------------------------------------------------------ */

typedef struct reader {
    const char *path;
    tc_error *err;
} reader;

static int get_num(const reader *r, const cJSON *o, const char *key, double lo, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return tc_err(r->err, "%s: header field '%s' is missing or not a number", r->path, key);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi)
        return tc_err(r->err, "%s: header field '%s' = %g is out of range", r->path, key, x);
    *out = x;
    return TC_OK;
}

static int get_int(const reader *r, const cJSON *o, const char *key, double lo, double hi, int64_t *out)
{
    double x = 0;
    if (get_num(r, o, key, lo, hi, &x))
        return TC_ERR;
    if (x != floor(x))
        return tc_err(r->err, "%s: header field '%s' = %g is not an integer", r->path, key, x);
    *out = (int64_t)x;
    return TC_OK;
}

static int get_i(const reader *r, const cJSON *o, const char *key, double lo, double hi, int *out)
{
    int64_t v;
    if (get_int(r, o, key, lo, hi, &v))
        return TC_ERR;
    *out = (int)v;
    return TC_OK;
}

static const char *get_str(const reader *r, const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) {
        tc_err(r->err, "%s: header field '%s' is missing or not a string", r->path, key);
        return NULL;
    }
    return v->valuestring;
}

static int get_bool(const reader *r, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v))
        return tc_err(r->err, "%s: header field '%s' is missing or not a boolean", r->path, key);
    *out = cJSON_IsTrue(v);
    return TC_OK;
}

static int parse_group(const reader *r, const cJSON *v, tc_tgroup *g)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, "tensor") == 0)
        return g->kind = TC_TGROUP_TENSOR, g->cols = 0, TC_OK;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "row") == 0)
        return g->kind = TC_TGROUP_ROW, g->cols = 0, TC_OK;
    if (cJSON_IsNumber(v) && v->valuedouble >= TC_TGROUP_COLS_MIN && v->valuedouble <= TC_TGROUP_COLS_MAX &&
        v->valuedouble == floor(v->valuedouble))
        return g->kind = TC_TGROUP_COLS, g->cols = (int32_t)v->valuedouble, TC_OK;
    return tc_err(r->err, "%s: unknown scale grouping in the header (expected \"tensor\", \"row\" "
                  "or a column count in %d..%d)", r->path, TC_TGROUP_COLS_MIN, TC_TGROUP_COLS_MAX);
}

static int parse_rope(const reader *r, const cJSON *o, const tc_config *c, tc_rope *rp)
{
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header traits have no rope object", r->path);
    const char *kind = get_str(r, o, "kind");
    if (!kind)
        return TC_ERR;
    double theta = 0, dims = 0;
    if (get_num(r, o, "theta", 1e-9, 1e15, &theta) || get_num(r, o, "rot_dims", 2, c->head_dim, &dims))
        return TC_ERR;
    *rp = tc_rope_default(theta, (int)dims);
    if (tc_rope_kind_from_name(kind, &rp->kind))
        return tc_err(r->err, "%s: unknown rope kind '%s'", r->path, kind);
    if ((int)dims % 2 || dims != floor(dims))
        return tc_err(r->err, "%s: rope rot_dims must be an even integer", r->path);
    if (rp->kind == TC_ROPE_DEFAULT)
        return TC_OK;
    if (get_num(r, o, "factor", 1e-9, 1e9, &rp->factor) || get_i(r, o, "max_pos", 0, 1 << 30, &rp->max_pos) ||
        get_i(r, o, "original_max_pos", 1, 1 << 30, &rp->orig_max_pos) ||
        get_num(r, o, "attn_factor", 0, 1e9, &rp->attn_factor))
        return TC_ERR;
    if (rp->kind == TC_ROPE_LLAMA3 && (get_num(r, o, "low_freq_factor", 0, 1e9, &rp->low_freq_factor) ||
                                       get_num(r, o, "high_freq_factor", 0, 1e9, &rp->high_freq_factor)))
        return TC_ERR;
    if (rp->kind == TC_ROPE_YARN && (get_num(r, o, "beta_fast", 0, 1e9, &rp->beta_fast) ||
                                     get_num(r, o, "beta_slow", 0, 1e9, &rp->beta_slow) ||
                                     get_bool(r, o, "truncate", &rp->truncate)))
        return TC_ERR;
    if (rp->kind == TC_ROPE_LONGROPE) {
        const char *keys[2] = {"short_factor", "long_factor"};
        float *dst[2] = {rp->short_factor, rp->long_factor};
        for (int k = 0; k < 2; k++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, keys[k]), *it;
            if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != rp->rot_dims / 2 || rp->rot_dims / 2 > TC_ROPE_MAX_PAIRS)
                return tc_err(r->err, "%s: rope '%s' must hold one number per rotated pair", r->path, keys[k]);
            int i = 0;
            cJSON_ArrayForEach(it, a) {
                if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !isfinite(it->valuedouble))
                    return tc_err(r->err, "%s: rope '%s' holds a value that is not a positive number", r->path,
                                  keys[k]);
                dst[k][i++] = (float)it->valuedouble;
            }
        }
    }
    return TC_OK;
}

/* The traits object (tc_traits_json); files written before traits existed
 * have none and hold plain Llama models. */
static int parse_traits(const reader *r, const cJSON *o, tc_config *c, double theta)
{
    tc_traits *t = &c->t;
    tc_traits_llama(t, theta, c->head_dim);
    if (!o)
        return TC_OK;
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header 'traits' is not an object", r->path);
    const char *norm = get_str(r, o, "norm"), *act = norm ? get_str(r, o, "activation") : NULL;
    if (!act)
        return TC_ERR;
    if (strcmp(norm, tc_norm_kind_name(TC_NORM_RMS)) == 0)
        t->norm = TC_NORM_RMS;
    else if (strcmp(norm, tc_norm_kind_name(TC_NORM_RMS_1P)) == 0)
        t->norm = TC_NORM_RMS_1P;
    else
        return tc_err(r->err, "%s: unknown norm kind '%s'", r->path, norm);
    int found = 0;
    for (int a = 0; a < TC_ACT_COUNT; a++)
        if (strcmp(act, tc_act_name((tc_act)a)) == 0)
            t->act = (tc_act)a, found = 1;
    if (!found)
        return tc_err(r->err, "%s: unknown activation '%s'", r->path, act);
    int gated = 1;
    double as = 0, ac = 0, fc = 0, es = 0;
    if (get_bool(r, o, "gated", &gated) || get_bool(r, o, "o_bias", &t->o_bias) ||
        get_bool(r, o, "mlp_bias", &t->mlp_bias) || get_bool(r, o, "qk_norm", &t->qk_norm) ||
        get_bool(r, o, "post_norms", &t->post_norms) || get_num(r, o, "attn_scale", 0, 1e6, &as) ||
        get_num(r, o, "attn_softcap", 0, 1e9, &ac) || get_num(r, o, "final_softcap", 0, 1e9, &fc) ||
        get_num(r, o, "embed_scale", 0, 1e9, &es) || get_i(r, o, "window", 0, 1 << 30, &t->window))
        return TC_ERR;
    t->ungated = !gated;
    /* Sub-norms and the linear kind came later: absent, the plain values. */
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(o, "sub_norms");
    if (sn && get_bool(r, o, "sub_norms", &t->sub_norms))
        return TC_ERR;
    const cJSON *da = cJSON_GetObjectItemCaseSensitive(o, "diff_attn");
    if (da && get_bool(r, o, "diff_attn", &t->diff_attn))
        return TC_ERR;
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(o, "linear");
    if (lk) {
        const char *kind = get_str(r, o, "linear");
        int k = 0;
        while (kind && k < TC_LINEAR_COUNT && strcmp(kind, tc_linear_kind_name((tc_linear_kind)k)) != 0)
            k++;
        if (!kind || k == TC_LINEAR_COUNT)
            return kind ? tc_err(r->err, "%s: unknown linear kind '%s'", r->path, kind) : TC_ERR;
        t->linear = (tc_linear_kind)k;
    }
    t->attn_scale = (float)as;
    t->attn_softcap = (float)ac;
    t->final_softcap = (float)fc;
    t->embed_scale = (float)es;
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(o, "local_layers"), *it;
    if (!cJSON_IsArray(loc))
        return tc_err(r->err, "%s: header traits have no 'local_layers' list", r->path);
    cJSON_ArrayForEach(it, loc) {
        double l = it->valuedouble;
        if (!cJSON_IsNumber(it) || l != floor(l) || l < 0 || l >= c->n_layers)
            return tc_err(r->err, "%s: 'local_layers' holds something that is not a layer index", r->path);
        t->local[(int)l] = 1;
    }
    return parse_rope(r, cJSON_GetObjectItemCaseSensitive(o, "rope"), c, &t->rope[0]) ||
           parse_rope(r, cJSON_GetObjectItemCaseSensitive(o, "rope_local"), c, &t->rope[1]);
}

static int parse_config(const reader *r, const cJSON *o, tc_config *c)
{
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header has no 'config' object", r->path);
    memset(c, 0, sizeof *c);
    const char *arch = get_str(r, o, "arch");
    if (!arch)
        return TC_ERR;
    int found = 0;
    for (int a = 0; a < TC_ARCH_COUNT; a++)
        if (strcmp(arch, tc_arch_name((tc_arch)a)) == 0)
            c->arch = (tc_arch)a, found = 1;
    if (!found)
        return tc_err(r->err, "%s: unknown architecture '%s'", r->path, arch);
    double eps = 0, theta = 0;
    if (get_i(r, o, "n_layers", 1, MAX_LAYERS, &c->n_layers) || get_i(r, o, "dim", 1, 1 << 20, &c->dim) ||
        get_i(r, o, "n_heads", 1, 1 << 16, &c->n_heads) ||
        get_i(r, o, "n_kv_heads", 1, 1 << 16, &c->n_kv_heads) ||
        get_i(r, o, "head_dim", 1, 1 << 16, &c->head_dim) ||
        get_i(r, o, "ffn_dim", 1, 1 << 24, &c->ffn_dim) ||
        get_i(r, o, "vocab_size", 1, 1 << 24, &c->vocab_size) ||
        get_i(r, o, "max_seq_len", 1, 1 << 26, &c->max_seq_len) ||
        get_num(r, o, "norm_eps", 0, 1, &eps) || get_num(r, o, "rope_theta", 0, 1e12, &theta) ||
        get_bool(r, o, "tied_embeddings", &c->tied_embeddings) ||
        get_bool(r, o, "qkv_bias", &c->qkv_bias) ||
        get_i(r, o, "bos_id", -1, c->vocab_size - 1, &c->bos_id) ||
        get_i(r, o, "eos_id", -1, c->vocab_size - 1, &c->eos_id))
        return TC_ERR;
    c->norm_eps = (float)eps;
    if (parse_traits(r, cJSON_GetObjectItemCaseSensitive(o, "traits"), c, theta))
        return TC_ERR;
    const char *rl = get_str(r, o, "rope_layout");
    if (!rl)
        return TC_ERR;
    if (strcmp(rl, "adjacent") == 0)
        c->rope_layout = TC_ROPE_ADJACENT;
    else if (strcmp(rl, "half") == 0)
        c->rope_layout = TC_ROPE_HALF;
    else
        return tc_err(r->err, "%s: unknown rope layout '%s'", r->path, rl);
    if (c->n_heads % c->n_kv_heads != 0 || (int64_t)c->n_heads * c->head_dim > (1 << 24))
        return tc_err(r->err, "%s: config heads (%d query, %d key/value, head_dim %d) are inconsistent",
                      r->path, c->n_heads, c->n_kv_heads, c->head_dim);
    return TC_OK;
}

static int parse_quant(const reader *r, const cJSON *o, uint32_t version, tc_tquant_settings *q)
{
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header has no 'quantization' object", r->path);
    const char *meth = get_str(r, o, "method"), *lay = meth ? get_str(r, o, "layout") : NULL;
    if (!lay)
        return TC_ERR;
    if (tc_tmethod_from_name(meth, &q->method))
        return tc_err(r->err, "%s: unknown quantization method '%s'", r->path, meth);
    if (tc_tpack_layout_from_name(lay, &q->layout))
        return tc_err(r->err, "%s: unknown layout '%s'", r->path, lay);
    int64_t ct;
    if (parse_group(r, cJSON_GetObjectItemCaseSensitive(o, "group"), &q->group) ||
        get_int(r, o, "calib_tokens", 0, JSON_INT_MAX, &ct) || get_bool(r, o, "sequential", &q->sequential) ||
        get_num(r, o, "damp_frac", 0, 1e6, &q->damp_frac))
        return TC_ERR;
    q->calib_tokens = (uint64_t)ct;
    if (tc_tmethod_affine(q->method)) {
        if (version < 3)
            return tc_err(r->err, "%s: method '%s' in a version %u file (it needs version 3)", r->path, meth,
                          version);
        int64_t refit, rounds;
        if (get_bool(r, o, "act_order", &q->act_order) || get_int(r, o, "refit", 0, 1000, &refit) ||
            get_int(r, o, "block_rounds", 0, 1000000, &rounds))
            return TC_ERR;
        q->refit = (int)refit;
        q->block_rounds = (int)rounds;
    }
    return TC_OK;
}

static int parse_role(const reader *r, const char *s, int layer, int *role)
{
    if (layer >= 0) {
        for (int i = 0; i < TC_N_ROLES; i++)
            if (strcmp(s, tc_role_name((tc_role)i)) == 0)
                return *role = i, TC_OK;
    } else {
        for (int g = TC_G_EMBD; g <= TC_G_OUTPUT; g++)
            if (strcmp(s, global_role_name(g)) == 0)
                return *role = g, TC_OK;
    }
    return tc_err(r->err, "%s: unknown tensor role '%s'", r->path, s);
}

static int parse_store(const reader *r, const char *name, const char *s, tc_tmodel_tensor *t)
{
    tc_tpack_layout l;
    for (size_t i = 0; i < sizeof PLAIN / sizeof PLAIN[0]; i++)
        if (strcmp(s, PLAIN[i].name) == 0) {
            /* Block types: the embedding and head (any of them), a block's
             * linear weight (Q8_0, Q4_0: mixed precision); nothing else. */
            int global = t->layer < 0 && (t->role == TC_G_EMBD || t->role == TC_G_OUTPUT);
            int linear = t->layer >= 0 && tc_role_is_linear(t->role) && tc_qmat_linear_type_ok(PLAIN[i].dtype);
            if (tc_qmat_type_ok(PLAIN[i].dtype) && !global && !linear)
                return tc_err(r->err, "%s: tensor '%s' has layout '%s', which only the embedding, the output "
                              "head and (q8_0, q4_0) a block's linear weights may have", r->path, name, s);
            return t->dtype = PLAIN[i].dtype, TC_OK;
        }
    if (tc_tpack_layout_from_name(s, &l) == TC_OK)
        return t->ternary = 1, t->plan.layout = l, TC_OK;
    return tc_err(r->err, "%s: tensor '%s' has unknown layout '%s'", r->path, name, s);
}

static int parse_shape(const reader *r, const char *name, const cJSON *o, const tc_config *c,
                       tc_tmodel_tensor *t)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "shape");
    int64_t want[2];
    int nd = tc_tmodel_expected_shape(c, t->layer, t->role, want);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != nd)
        return tc_err(r->err, "%s: tensor '%s' must have a %d-dimensional shape", r->path, name, nd);
    for (int d = 0; d < nd; d++) {
        const cJSON *v = cJSON_GetArrayItem(a, d);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)want[d])
            return tc_err(r->err, "%s: tensor '%s' has a shape that does not match the config "
                          "(dimension %d should be %lld)", r->path, name, d, (long long)want[d]);
        t->shape[d] = want[d];
    }
    t->n_dims = nd;
    if (t->ternary && nd != 2)
        return tc_err(r->err, "%s: tensor '%s' is a vector and cannot be ternary", r->path, name);
    if (!t->ternary && tc_qmat_type_ok(t->dtype) && t->shape[1] % tc_qmat_block(t->dtype) != 0)
        return tc_err(r->err, "%s: tensor '%s' has rows of %lld values, not whole %s blocks of %lld", r->path, name,
                      (long long)t->shape[1], tc_dtype_name(t->dtype), (long long)tc_qmat_block(t->dtype));
    return TC_OK;
}

/* offset, size and crc32 of a tensor or an embedded file: aligned, inside
 * the data section. */
static int parse_span(const reader *r, const cJSON *o, const char *what, uint64_t data_size, uint64_t *offset,
                      uint64_t *nbytes, uint32_t *crc32)
{
    int64_t off, size;
    if (get_int(r, o, "offset", 0, JSON_INT_MAX, &off) || get_int(r, o, "size", 0, JSON_INT_MAX, &size))
        return TC_ERR;
    if ((uint64_t)off % TC_TMODEL_ALIGN != 0)
        return tc_err(r->err, "%s: %s is not %d-byte aligned", r->path, what, TC_TMODEL_ALIGN);
    if ((uint64_t)off > data_size || (uint64_t)size > data_size - (uint64_t)off)
        return tc_err(r->err, "%s: %s extends past the end of the file (truncated?)", r->path, what);
    *offset = (uint64_t)off;
    *nbytes = (uint64_t)size;
    const char *crc = get_str(r, o, "crc32");
    char *end;
    if (!crc)
        return TC_ERR;
    unsigned long v = strtoul(crc, &end, 16);
    if (strlen(crc) != 8 || *end)
        return tc_err(r->err, "%s: %s has a malformed crc32", r->path, what);
    *crc32 = (uint32_t)v;
    return TC_OK;
}

static int parse_tensor(const reader *r, const cJSON *o, const tc_config *c, uint64_t data_size,
                        uint32_t version, tc_tmodel_tensor *t)
{
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: a tensor table entry is not an object", r->path);
    memset(t, 0, sizeof *t);
    const char *name = get_str(r, o, "name");
    if (!name || get_i(r, o, "layer", -1, c->n_layers - 1, &t->layer))
        return TC_ERR;
    const char *role = get_str(r, o, "role");
    if (!role || parse_role(r, role, t->layer, &t->role))
        return TC_ERR;
    char canon[64];
    tc_tmodel_tensor_name(t, canon, sizeof canon);
    if (strcmp(canon, name) != 0)
        return tc_err(r->err, "%s: tensor '%s' is named inconsistently with its layer and role (%s)",
                      r->path, name, canon);
    const char *lay = get_str(r, o, "layout");
    if (!lay || parse_store(r, name, lay, t) || parse_shape(r, name, o, c, t))
        return TC_ERR;
    if (t->ternary) {
        tc_tgroup g;
        if (parse_group(r, cJSON_GetObjectItemCaseSensitive(o, "group"), &g))
            return TC_ERR;
        /* Version 3: how the groups' parameters are stored (absent: fp32 scales). */
        tc_tparam_kind pk = TC_TPARAM_SCALE_F32;
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(o, "params");
        if (pv && version < 3)
            return tc_err(r->err, "%s: tensor '%s' has 'params', which version %u files do not have", r->path,
                          name, version);
        if (pv && (!cJSON_IsString(pv) || tc_tparam_kind_from_name(pv->valuestring, &pk)))
            return tc_err(r->err, "%s: tensor '%s' has unknown params (expected \"f32-scale\" or \"f16-affine\")",
                          r->path, name);
        if (tc_tpack_plan_make_params(t->plan.layout, t->shape[0], t->shape[1], &g, pk, &t->plan, r->err))
            return tc_err_prefix(r->err, "%s: tensor '%s'", r->path, name);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "params")) {
        return tc_err(r->err, "%s: tensor '%s' is not ternary but has 'params'", r->path, name);
    }
    int64_t size;
    if (get_int(r, o, "size", 0, JSON_INT_MAX, &size))
        return TC_ERR;
    uint64_t want;
    if (expected_bytes(t, &want, r->err))
        return tc_err_prefix(r->err, "%s: tensor '%s'", r->path, name);
    if ((uint64_t)size != want)
        return tc_err(r->err, "%s: tensor '%s' declares %lld bytes but its shape and layout need %llu",
                      r->path, name, (long long)size, (unsigned long long)want);
    char what[80];
    snprintf(what, sizeof what, "tensor '%s'", name);
    return parse_span(r, o, what, data_size, &t->offset, &t->nbytes, &t->crc32);
}

/* The embedded tokenizer (version 2): its kind and files, each a span like
 * a tensor's. */
static int parse_tok(const reader *r, const cJSON *o, uint64_t data_size, tc_tmodel_tok *t)
{
    memset(t, 0, sizeof *t);
    if (!o)
        return TC_OK;
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header 'tokenizer' is not an object", r->path);
    const char *kind = get_str(r, o, "kind");
    if (!kind)
        return TC_ERR;
    for (int k = TC_TTOK_NONE + 1; k < TC_TTOK_COUNT; k++)
        if (strcmp(kind, tc_ttok_kind_name((tc_ttok_kind)k)) == 0)
            t->kind = (tc_ttok_kind)k;
    if (t->kind == TC_TTOK_NONE)
        return tc_err(r->err, "%s: unknown tokenizer kind '%s'", r->path, kind);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "files"), *it;
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    int need = tc_ttok_file_name(t->kind, 1) ? 2 : 1;
    /* A tokenizer.json may come without its tokenizer_config.json. */
    if (n < 1 || n > need || (n < need && t->kind != TC_TTOK_HF))
        return tc_err(r->err, "%s: the '%s' tokenizer must list %d file%s", r->path, kind, need,
                      need > 1 ? "s (or just the first)" : "");
    cJSON_ArrayForEach(it, arr) {
        const char *want = tc_ttok_file_name(t->kind, t->n_files), *name;
        if (!cJSON_IsObject(it) || !(name = get_str(r, it, "name")))
            return tc_err(r->err, "%s: a tokenizer file entry has no name", r->path);
        if (strcmp(name, want) != 0)
            return tc_err(r->err, "%s: tokenizer file %d is '%s', expected '%s'", r->path, t->n_files, name, want);
        tc_ttok_file *f = &t->files[t->n_files];
        char what[80];
        snprintf(what, sizeof what, "tokenizer file '%s'", want);
        if (parse_span(r, it, what, data_size, &f->offset, &f->nbytes, &f->crc32))
            return TC_ERR;
        if (f->nbytes > TC_TTOK_MAX_BYTES)
            return tc_err(r->err, "%s: %s is larger than %llu bytes", r->path, what,
                          (unsigned long long)TC_TTOK_MAX_BYTES);
        t->n_files++;
    }
    return TC_OK;
}

/* One stored span: a tensor or an embedded tokenizer file. */
typedef struct span {
    uint64_t offset, nbytes;
    const tc_tmodel_tensor *t; /* NULL: tokenizer file `file` */
    int file;
} span;

static int cmp_offset(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void span_name(const tc_tmodel *m, const span *s, char *buf, size_t n)
{
    if (s->t)
        tc_tmodel_tensor_name(s->t, buf, n);
    else
        snprintf(buf, n, "%s", tc_ttok_file_name(m->tok.kind, s->file));
}

static int check_overlaps(const reader *r, const tc_tmodel *m)
{
    size_t n = m->n_tensors + (size_t)m->tok.n_files;
    span *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return tc_err(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i < m->n_tensors; i++)
        s[i] = (span){m->tensors[i].offset, m->tensors[i].nbytes, &m->tensors[i], 0};
    for (int i = 0; i < m->tok.n_files; i++)
        s[m->n_tensors + (size_t)i] = (span){m->tok.files[i].offset, m->tok.files[i].nbytes, NULL, i};
    qsort(s, n, sizeof *s, cmp_offset);
    int rc = TC_OK;
    for (size_t i = 1; i < n && rc == TC_OK; i++)
        if (s[i - 1].offset + s[i - 1].nbytes > s[i].offset) {
            char a[64], b[64];
            span_name(m, &s[i - 1], a, sizeof a);
            span_name(m, &s[i], b, sizeof b);
            rc = tc_err(r->err, "%s: '%s' and '%s' overlap", r->path, a, b);
        }
    free(s);
    return rc;
}

/* Every needed tensor present once; a sub-layer is all there or all absent. */
static int check_complete(const reader *r, const tc_tmodel *m)
{
    const tc_config *c = &m->cfg;
    for (size_t i = 0; i < m->n_tensors; i++)
        for (size_t j = 0; j < i; j++)
            if (m->tensors[i].layer == m->tensors[j].layer && m->tensors[i].role == m->tensors[j].role) {
                char n[64];
                tc_tmodel_tensor_name(&m->tensors[i], n, sizeof n);
                return tc_err(r->err, "%s: tensor '%s' appears twice", r->path, n);
            }
    if (!tc_tmodel_find(m, -1, TC_G_EMBD) || !tc_tmodel_find(m, -1, TC_G_OUT_NORM))
        return tc_err(r->err, "%s: the token embedding or the final norm is missing", r->path);
    if (!c->tied_embeddings && !tc_tmodel_find(m, -1, TC_G_OUTPUT))
        return tc_err(r->err, "%s: the output head is missing (embeddings are not tied)", r->path);
    if (c->tied_embeddings && tc_tmodel_find(m, -1, TC_G_OUTPUT))
        return tc_err(r->err, "%s: an output head is stored although embeddings are tied", r->path);
    /* A sub-layer holds every role its config needs, or none. */
    for (int l = 0; l < c->n_layers; l++) {
        int have[2] = {0, 0}, need[2] = {0, 0};
        for (int k = 0; k < TC_N_ROLES; k++) {
            int s = tc_role_is_attn(k) ? 0 : 1, there = tc_tmodel_find(m, l, k) != NULL;
            if (!tc_role_needed(c, (tc_role)k)) {
                if (there)
                    return tc_err(r->err, "%s: layer %d holds a %s tensor its config has no use for", r->path, l,
                                  tc_role_name((tc_role)k));
                continue;
            }
            need[s]++;
            have[s] += there;
        }
        if ((have[0] != 0 && have[0] != need[0]) || (have[1] != 0 && have[1] != need[1]))
            return tc_err(r->err, "%s: layer %d has an incomplete attention or MLP", r->path, l);
    }
    return TC_OK;
}

static int check_crcs(const reader *r, const tc_tmodel *m)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const tc_tmodel_tensor *t = &m->tensors[i];
        if (crc_of(t->data, t->nbytes) != t->crc32) {
            char n[64];
            tc_tmodel_tensor_name(t, n, sizeof n);
            return tc_err(r->err, "%s: tensor '%s' fails its CRC check (the file is corrupt)", r->path, n);
        }
    }
    for (int i = 0; i < m->tok.n_files; i++)
        if (crc_of(m->tok.files[i].data, m->tok.files[i].nbytes) != m->tok.files[i].crc32)
            return tc_err(r->err, "%s: the embedded %s fails its CRC check (the file is corrupt)", r->path,
                          tc_ttok_file_name(m->tok.kind, i));
    return TC_OK;
}

/* The mixed-precision record (optional, informative): every field checked
 * like the rest; a tensor must be a linear weight of a layer the config has,
 * listed once. */
static int parse_mixed(const reader *r, const cJSON *o, const tc_config *c, tc_tmixed *x)
{
    if (!cJSON_IsObject(o))
        return tc_err(r->err, "%s: header field 'mixed' is not an object", r->path);
    int64_t tok;
    const char *meth;
    if (get_num(r, o, "target_bpw", 0, 64, &x->target_bpw) || get_num(r, o, "bpw", 0, 64, &x->bpw) ||
        get_int(r, o, "tokens", 0, JSON_INT_MAX, &tok) || !(meth = get_str(r, o, "measured")))
        return TC_ERR;
    x->tokens = (uint64_t)tok;
    if (tc_tmethod_from_name(meth, &x->measured))
        return tc_err(r->err, "%s: the mixed record names an unknown method '%s'", r->path, meth);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "kl");
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (n < 0 || (int64_t)n > (int64_t)c->n_layers * TC_N_ROLES)
        return tc_err(r->err, "%s: the mixed record's 'kl' is not an array of at most one entry per linear weight",
                      r->path);
    if (n > 0 && !(x->entries = calloc((size_t)n, sizeof *x->entries)))
        return tc_err(r->err, "%s: out of memory", r->path);
    const cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        tc_tmixed_entry *e = &x->entries[x->n_entries];
        const char *name = cJSON_IsObject(it) ? get_str(r, it, "name") : NULL;
        char role[32] = "";
        int layer = -1, used = 0;
        if (!name || sscanf(name, "blk.%d.%31[a-z_]%n", &layer, role, &used) != 2 || name[used] != '\0' ||
            layer < 0 || layer >= c->n_layers || parse_role(r, role, layer, &e->role) ||
            !tc_role_is_linear(e->role))
            return tc_err(r->err, "%s: the mixed record lists '%s', not a linear weight of the model's blocks",
                          r->path, name ? name : "(no name)");
        e->layer = layer;
        for (size_t k = 0; k < x->n_entries; k++)
            if (x->entries[k].layer == e->layer && x->entries[k].role == e->role)
                return tc_err(r->err, "%s: the mixed record lists '%s' twice", r->path, name);
        for (int j = 0; j < TC_TMIXED_NTYPES; j++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, tc_tmixed_type_name(j));
            if (cJSON_IsNull(v)) {
                e->kl[j] = NAN;
            } else if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0) {
                return tc_err(r->err, "%s: the mixed record's %s KL of '%s' is not a non-negative number or null",
                              r->path, tc_tmixed_type_name(j), name);
            } else {
                e->kl[j] = v->valuedouble;
            }
        }
        x->n_entries++;
    }
    return TC_OK;
}

static int parse_header(const reader *r, tc_tmodel *m, const char *text, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tc_err(r->err, "%s: the header is not valid JSON", r->path);
    }
    int64_t ver;
    int rc = get_int(r, root, "version", 0, JSON_INT_MAX, &ver);
    if (rc == TC_OK && ver != (int64_t)m->version)
        rc = tc_err(r->err, "%s: header version %lld differs from the preamble's %u", r->path, (long long)ver,
                    m->version);
    if (rc == TC_OK)
        rc = parse_config(r, cJSON_GetObjectItemCaseSensitive(root, "config"), &m->cfg);
    if (rc == TC_OK)
        rc = parse_quant(r, cJSON_GetObjectItemCaseSensitive(root, "quantization"), m->version, &m->quant);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "source");
    if (rc == TC_OK && cJSON_IsString(src) && !(m->source = strdup(src->valuestring)))
        rc = tc_err(r->err, "%s: out of memory", r->path);
    /* Optional: which windows of which text calibrated (an evaluation of the
     * same text leaves them out). */
    const cJSON *cal = cJSON_GetObjectItemCaseSensitive(root, "calibration");
    if (rc == TC_OK && cal) {
        if (!(m->calib = calloc(1, sizeof *m->calib)))
            rc = tc_err(r->err, "%s: out of memory", r->path);
        else if (tc_calib_windows_from_json(cal, r->path, m->calib, r->err))
            rc = TC_ERR;
    }
    const cJSON *mix = cJSON_GetObjectItemCaseSensitive(root, "mixed");
    if (rc == TC_OK && mix) {
        if (!(m->mixed = calloc(1, sizeof *m->mixed)))
            rc = tc_err(r->err, "%s: out of memory", r->path);
        else
            rc = parse_mixed(r, mix, &m->cfg, m->mixed);
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    if (rc == TC_OK && !cJSON_IsArray(arr))
        rc = tc_err(r->err, "%s: header has no 'tensors' array", r->path);
    if (rc == TC_OK) {
        int n = cJSON_GetArraySize(arr);
        int64_t cap = (int64_t)m->cfg.n_layers * TC_N_ROLES + 3;
        if (n < 1 || n > cap)
            rc = tc_err(r->err, "%s: the tensor table lists %d tensors (expected 1..%lld)", r->path, n,
                        (long long)cap);
        else if (!(m->tensors = calloc((size_t)n, sizeof *m->tensors)))
            rc = tc_err(r->err, "%s: out of memory", r->path);
        uint64_t data_size = m->map.size - m->data_offset;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (rc != TC_OK)
                break;
            tc_tmodel_tensor *t = &m->tensors[m->n_tensors];
            rc = parse_tensor(r, it, &m->cfg, data_size, m->version, t);
            if (rc == TC_OK) {
                t->data = m->map.data + m->data_offset + t->offset;
                m->n_tensors++;
            }
        }
    }
    /* The affine methods store every block weight with its offsets: a header
     * that says otherwise would read their bytes as fp32 scales. */
    for (size_t i = 0; rc == TC_OK && tc_tmethod_affine(m->quant.method) && i < m->n_tensors; i++) {
        const tc_tmodel_tensor *t = &m->tensors[i];
        if (t->ternary && t->layer >= 0 && !t->plan.offset) {
            char name[64];
            tc_tmodel_tensor_name(t, name, sizeof name);
            rc = tc_err(r->err, "%s: tensor '%s' has no offsets (params) although method '%s' gives them", r->path,
                        name, tc_tmethod_name(m->quant.method));
        }
    }
    /* Version 1 files carry no tokenizer. */
    if (rc == TC_OK && m->version >= 2) {
        rc = parse_tok(r, cJSON_GetObjectItemCaseSensitive(root, "tokenizer"), m->map.size - m->data_offset,
                       &m->tok);
        for (int i = 0; rc == TC_OK && i < m->tok.n_files; i++)
            m->tok.files[i].data = m->map.data + m->data_offset + m->tok.files[i].offset;
    }
    cJSON_Delete(root);
    return rc;
}

int tc_tmodel_open(tc_tmodel *m, const char *path, tc_error *err)
{
    memset(m, 0, sizeof *m);
    reader r = {path, err};
    if (tc_mapfile_open(&m->map, path, err))
        return TC_ERR;
    if (!(m->path = strdup(path))) {
        tc_tmodel_close(m);
        return tc_err(err, "%s: out of memory", path);
    }
    tc_cursor c;
    tc_cursor_init(&c, m->map.data, m->map.size, path);
    const uint8_t *magic, *text;
    uint32_t ver = 0, flags = 0;
    uint64_t hlen;
    int rc = tc_cursor_bytes(&c, 8, &magic, "magic", err);
    if (rc == TC_OK && memcmp(magic, TC_TMODEL_MAGIC, 8) != 0)
        rc = tc_err(err, "%s: not a packed ternary model (.tcq): bad magic", path);
    if (rc == TC_OK)
        rc = tc_cursor_u32(&c, &ver, "version", err);
    if (rc == TC_OK && (ver < TC_TMODEL_VERSION_MIN || ver > TC_TMODEL_VERSION))
        rc = tc_err(err, "%s: .tcq version %u is not supported (this build reads versions %d to %d%s)", path, ver,
                    TC_TMODEL_VERSION_MIN, TC_TMODEL_VERSION, ver > TC_TMODEL_VERSION ? "; a newer tc wrote it" : "");
    m->version = ver;
    if (rc == TC_OK)
        rc = tc_cursor_u32(&c, &flags, "flags", err);
    if (rc == TC_OK && flags != 0)
        rc = tc_err(err, "%s: unknown flags 0x%x in the preamble", path, flags);
    if (rc == TC_OK)
        rc = tc_cursor_u64(&c, &hlen, "header length", err);
    if (rc == TC_OK && hlen > HEADER_MAX)
        rc = tc_err(err, "%s: header length %llu is absurd", path, (unsigned long long)hlen);
    if (rc == TC_OK)
        rc = tc_cursor_bytes(&c, hlen, &text, "header", err);
    if (rc == TC_OK) {
        m->data_offset = (PREAMBLE_BYTES + hlen + TC_TMODEL_ALIGN - 1) / TC_TMODEL_ALIGN * TC_TMODEL_ALIGN;
        if (m->data_offset > m->map.size)
            rc = tc_err(err, "%s: the file ends before its data section", path);
    }
    if (rc == TC_OK)
        rc = parse_header(&r, m, (const char *)text, (size_t)hlen);
    if (rc == TC_OK)
        rc = check_complete(&r, m);
    if (rc == TC_OK)
        rc = check_overlaps(&r, m);
    if (rc == TC_OK)
        rc = check_crcs(&r, m);
    if (rc != TC_OK)
        tc_tmodel_close(m);
    return rc;
}

void tc_tmodel_close(tc_tmodel *m)
{
    tc_tmodel_tok_free(&m->tok);
    tc_mapfile_close(&m->map);
    free(m->tensors);
    free(m->source);
    free(m->path);
    if (m->calib)
        tc_calib_windows_free(m->calib);
    free(m->calib);
    if (m->mixed)
        free(m->mixed->entries);
    free(m->mixed);
    memset(m, 0, sizeof *m);
}
