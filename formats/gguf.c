/* GGUF reader: header, metadata of every value type, tensor infos, data
 * section.  Every count is checked against the bytes that remain before
 * anything is allocated for it, so a hostile header costs an error message,
 * never memory. */
#include "tc/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/cursor.h"

#define GGUF_DEFAULT_ALIGNMENT 32

/* The fewest bytes one metadata entry can take: key length, a one-byte key,
 * value type, a one-byte value. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)
/* ... and one tensor info: name length, a one-byte name, n_dims, one ne,
 * ggml type, offset. */
#define MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8)

/* Keys and names are printed at most this long in messages. */
#define SHOWN(s) (int)((s).len > 80 ? 80 : (s).len), (s).ptr

/* ---- Type tables ---------------------------------------------------------- */

static const char *const value_type_names[] = {
    [TC_GGUF_U8] = "u8",   [TC_GGUF_I8] = "i8",       [TC_GGUF_U16] = "u16",   [TC_GGUF_I16] = "i16",
    [TC_GGUF_U32] = "u32", [TC_GGUF_I32] = "i32",     [TC_GGUF_F32] = "f32",   [TC_GGUF_BOOL] = "bool",
    [TC_GGUF_STRING] = "string", [TC_GGUF_ARRAY] = "array", [TC_GGUF_U64] = "u64", [TC_GGUF_I64] = "i64",
    [TC_GGUF_F64] = "f64",
};

const char *tc_gguf_type_name(tc_gguf_type t)
{
    return (unsigned)t <= TC_GGUF_F64 ? value_type_names[t] : "?";
}

static const char *const ggml_names[] = {
    "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",   "Q5_0",     "Q5_1",     "Q8_0",
    "Q8_1",    "Q2_K",   "Q3_K",    "Q4_K",  "Q5_K",   "Q6_K",   "Q8_K",     "IQ2_XXS",  "IQ2_XS",
    "IQ3_XXS", "IQ1_S",  "IQ4_NL",  "IQ3_S", "IQ2_S",  "IQ4_XS", "I8",       "I16",      "I32",
    "I64",     "F64",    "IQ1_M",   "BF16",  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
    "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

const char *tc_gguf_ggml_type_name(uint32_t ggml_type)
{
    return ggml_type < sizeof ggml_names / sizeof ggml_names[0] ? ggml_names[ggml_type] : "?";
}

static const struct {
    uint32_t ggml;
    tc_dtype dtype;
} type_map[] = {
    {0, TC_F32},   {1, TC_F16},   {8, TC_Q8_0},  {24, TC_I8},    {25, TC_I16},   {26, TC_I32},
    {27, TC_I64},  {28, TC_F64},  {30, TC_BF16}, {34, TC_TQ1_0}, {35, TC_TQ2_0},
    {2, TC_Q4_0},  {3, TC_Q4_1},  {6, TC_Q5_0},  {7, TC_Q5_1},   {10, TC_Q2_K},  {11, TC_Q3_K},
    {12, TC_Q4_K}, {13, TC_Q5_K}, {14, TC_Q6_K}, {20, TC_IQ4_NL}, {23, TC_IQ4_XS},
    {36, TC_I2_S}, /* bitnet.cpp's ggml (ggml.h: GGML_TYPE_I2_S = 36); stock ggml has no type 36 */
};

int tc_gguf_dtype_from_ggml(uint32_t ggml_type, tc_dtype *out)
{
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++) {
        if (type_map[i].ggml == ggml_type) {
            *out = type_map[i].dtype;
            return TC_OK;
        }
    }
    return TC_ERR;
}

int tc_gguf_ggml_from_dtype(tc_dtype t, uint32_t *out)
{
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++) {
        if (type_map[i].dtype == t) {
            *out = type_map[i].ggml;
            return TC_OK;
        }
    }
    return TC_ERR;
}

/* Bytes the smallest value of a type takes in the file (0: no such type).
 * Array lengths are checked against this before their items are allocated. */
static uint64_t min_value_bytes(uint32_t type)
{
    switch (type) {
    case TC_GGUF_U8: case TC_GGUF_I8: case TC_GGUF_BOOL: return 1;
    case TC_GGUF_U16: case TC_GGUF_I16: return 2;
    case TC_GGUF_U32: case TC_GGUF_I32: case TC_GGUF_F32: return 4;
    case TC_GGUF_U64: case TC_GGUF_I64: case TC_GGUF_F64: return 8;
    case TC_GGUF_STRING: return 8;      /* the length of an empty string */
    case TC_GGUF_ARRAY: return 4 + 8;   /* element type and length of an empty array */
    default: return 0;
    }
}

/* ---- Metadata values ---------------------------------------------------------- */

typedef struct reader {
    tc_cursor c;
    const char *path;
    tc_gguf_str key;      /* the entry being read, for messages */
    char what[128];       /* "the value of key '...'", for the cursor's messages */
    uint64_t items;       /* array elements decoded so far */
} reader;

static void free_value(tc_gguf_value *v)
{
    if (v->type != TC_GGUF_ARRAY || !v->v.arr.items)
        return;
    for (uint64_t i = 0; i < v->v.arr.n; i++)
        free_value(&v->v.arr.items[i]);
    free(v->v.arr.items);
    v->v.arr.items = NULL;
    v->v.arr.n = 0;
}

static int read_str(reader *r, tc_gguf_str *s, const char *what, tc_error *err)
{
    uint64_t len;
    const uint8_t *p;
    if (tc_cursor_u64(&r->c, &len, what, err) || tc_cursor_bytes(&r->c, len, &p, what, err))
        return TC_ERR;
    s->ptr = (const char *)p;
    s->len = len;
    return TC_OK;
}

static int read_value(reader *r, uint32_t type, tc_gguf_value *v, int depth, tc_error *err);

static int read_array(reader *r, tc_gguf_value *v, int depth, tc_error *err)
{
    uint32_t et;
    uint64_t n;
    if (depth >= TC_GGUF_MAX_DEPTH)
        return tc_err(err, "%s: key '%.*s' nests arrays deeper than %d levels", r->path, SHOWN(r->key),
                      TC_GGUF_MAX_DEPTH);
    if (tc_cursor_u32(&r->c, &et, r->what, err) || tc_cursor_u64(&r->c, &n, r->what, err))
        return TC_ERR;
    uint64_t min = min_value_bytes(et);
    if (min == 0)
        return tc_err(err, "%s: key '%.*s' is an array of unknown value type %u", r->path, SHOWN(r->key),
                      et);
    if (n > tc_cursor_left(&r->c) / min)
        return tc_err(err, "%s: key '%.*s' claims %llu array elements, more than the %llu bytes left "
                      "could hold", r->path, SHOWN(r->key), (unsigned long long)n,
                      (unsigned long long)tc_cursor_left(&r->c));
    if (n > TC_GGUF_MAX_ITEMS - r->items)
        return tc_err(err, "%s: key '%.*s' takes the metadata past %llu array elements in all",
                      r->path, SHOWN(r->key), (unsigned long long)TC_GGUF_MAX_ITEMS);
    r->items += n;
    v->v.arr.type = (tc_gguf_type)et;
    if (n == 0)
        return TC_OK;
    /* Zeroed items are u8 values, which free_value passes over if reading stops halfway. */
    tc_gguf_value *items = calloc((size_t)n, sizeof *items);
    if (!items)
        return tc_err(err, "%s: out of memory for the %llu elements of key '%.*s'", r->path,
                      (unsigned long long)n, SHOWN(r->key));
    v->v.arr.items = items;
    v->v.arr.n = n;
    for (uint64_t i = 0; i < n; i++)
        if (read_value(r, et, &items[i], depth + 1, err))
            return TC_ERR;
    return TC_OK;
}

static int read_value(reader *r, uint32_t type, tc_gguf_value *v, int depth, tc_error *err)
{
    tc_cursor *c = &r->c;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    v->type = (tc_gguf_type)type;
    switch (type) {
    case TC_GGUF_U8:
        if (tc_cursor_u8(c, &u8, r->what, err)) return TC_ERR;
        v->v.u = u8;
        return TC_OK;
    case TC_GGUF_I8:
        if (tc_cursor_u8(c, &u8, r->what, err)) return TC_ERR;
        v->v.i = (int8_t)u8;
        return TC_OK;
    case TC_GGUF_U16:
        if (tc_cursor_u16(c, &u16, r->what, err)) return TC_ERR;
        v->v.u = u16;
        return TC_OK;
    case TC_GGUF_I16:
        if (tc_cursor_u16(c, &u16, r->what, err)) return TC_ERR;
        v->v.i = (int16_t)u16;
        return TC_OK;
    case TC_GGUF_U32:
        if (tc_cursor_u32(c, &u32, r->what, err)) return TC_ERR;
        v->v.u = u32;
        return TC_OK;
    case TC_GGUF_I32:
        if (tc_cursor_u32(c, &u32, r->what, err)) return TC_ERR;
        v->v.i = (int32_t)u32;
        return TC_OK;
    case TC_GGUF_U64:
        if (tc_cursor_u64(c, &u64, r->what, err)) return TC_ERR;
        v->v.u = u64;
        return TC_OK;
    case TC_GGUF_I64:
        if (tc_cursor_u64(c, &u64, r->what, err)) return TC_ERR;
        memcpy(&v->v.i, &u64, sizeof u64);
        return TC_OK;
    case TC_GGUF_F32:
        if (tc_cursor_f32(c, &f32, r->what, err)) return TC_ERR;
        v->v.f = f32;
        return TC_OK;
    case TC_GGUF_F64:
        return tc_cursor_f64(c, &v->v.f, r->what, err);
    case TC_GGUF_BOOL:
        if (tc_cursor_u8(c, &u8, r->what, err)) return TC_ERR;
        if (u8 > 1)
            return tc_err(err, "%s: key '%.*s' holds the byte %u where a bool must be 0 or 1", r->path,
                          SHOWN(r->key), u8);
        v->v.u = u8;
        return TC_OK;
    case TC_GGUF_STRING:
        return read_str(r, &v->v.s, r->what, err);
    case TC_GGUF_ARRAY:
        return read_array(r, v, depth, err);
    default:
        return tc_err(err, "%s: key '%.*s' has unknown value type %u", r->path, SHOWN(r->key), type);
    }
}

static int str_cmp(tc_gguf_str a, tc_gguf_str b)
{
    uint64_t n = a.len < b.len ? a.len : b.len;
    int d = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (d)
        return d;
    return (a.len > b.len) - (a.len < b.len);
}

static int kv_ptr_cmp(const void *a, const void *b)
{
    const tc_gguf_kv *x = *(const tc_gguf_kv *const *)a, *y = *(const tc_gguf_kv *const *)b;
    return str_cmp(x->key, y->key);
}

/* Sorting finds duplicates in n log n; a file may hold many entries. */
static int check_unique_keys(const tc_gguf *g, tc_error *err)
{
    if (g->n_kv < 2)
        return TC_OK;
    const tc_gguf_kv **order = malloc((size_t)g->n_kv * sizeof *order);
    if (!order)
        return tc_err(err, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++)
        order[i] = &g->kvs[i];
    qsort(order, (size_t)g->n_kv, sizeof *order, kv_ptr_cmp);
    int rc = TC_OK;
    for (uint64_t i = 1; i < g->n_kv && rc == TC_OK; i++)
        if (str_cmp(order[i - 1]->key, order[i]->key) == 0)
            rc = tc_err(err, "%s: duplicate metadata key '%.*s'", g->path, SHOWN(order[i]->key));
    free(order);
    return rc;
}

/* Keys and tensor names become C strings and lookup keys: they must be
 * non-empty and free of NUL bytes. */
static int check_name(const char *path, const char *kind, uint64_t index, tc_gguf_str s, tc_error *err)
{
    if (s.len == 0)
        return tc_err(err, "%s: %s %llu is empty", path, kind, (unsigned long long)index);
    if (memchr(s.ptr, '\0', (size_t)s.len))
        return tc_err(err, "%s: %s '%.*s' contains a NUL byte", path, kind, SHOWN(s));
    return TC_OK;
}

static int read_kvs(reader *r, tc_gguf *g, uint64_t n_kv, tc_error *err)
{
    if (n_kv > tc_cursor_left(&r->c) / MIN_KV_BYTES)
        return tc_err(err, "%s: the header claims %llu metadata entries, more than the %llu bytes left "
                      "could hold", g->path, (unsigned long long)n_kv,
                      (unsigned long long)tc_cursor_left(&r->c));
    if (n_kv == 0)
        return TC_OK;
    g->kvs = calloc((size_t)n_kv, sizeof *g->kvs);
    if (!g->kvs)
        return tc_err(err, "%s: out of memory for %llu metadata entries", g->path, (unsigned long long)n_kv);
    g->n_kv = n_kv;
    for (uint64_t i = 0; i < n_kv; i++) {
        tc_gguf_kv *kv = &g->kvs[i];
        uint32_t type;
        if (read_str(r, &kv->key, "a metadata key", err) ||
            check_name(g->path, "metadata key", i, kv->key, err))
            return TC_ERR;
        r->key = kv->key;
        snprintf(r->what, sizeof r->what, "the value of key '%.*s'", SHOWN(kv->key));
        if (tc_cursor_u32(&r->c, &type, r->what, err) || read_value(r, type, &kv->value, 0, err))
            return TC_ERR;
    }
    return check_unique_keys(g, err);
}

static int read_alignment(tc_gguf *g, tc_error *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const tc_gguf_value *v = tc_gguf_find(g, "general.alignment");
    if (!v)
        return TC_OK;
    if (v->type != TC_GGUF_U32)
        return tc_err(err, "%s: general.alignment has type %s, not u32", g->path, tc_gguf_type_name(v->type));
    if (v->v.u == 0 || (v->v.u & (v->v.u - 1)) != 0)
        return tc_err(err, "%s: general.alignment %llu is not a non-zero power of two", g->path,
                      (unsigned long long)v->v.u);
    g->alignment = v->v.u;
    return TC_OK;
}

/* ---- Header and tensor infos ------------------------------------------------ */

static int read_header(reader *r, tc_gguf *g, uint64_t *n_tensors, uint64_t *n_kv, tc_error *err)
{
    const uint8_t *magic;
    uint32_t version;
    if (tc_cursor_bytes(&r->c, 4, &magic, "the magic", err))
        return TC_ERR;
    if (memcmp(magic, "GGUF", 4) != 0)
        return tc_err(err, "%s: not a GGUF file (the first four bytes are not \"GGUF\")", g->path);
    if (tc_cursor_u32(&r->c, &version, "the version", err))
        return TC_ERR;
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        if (swapped >= 1 && swapped <= 3)
            return tc_err(err, "%s: big-endian GGUF files are not supported", g->path);
        return tc_err(err, "%s: GGUF version %u is not supported (only versions 2 and 3)", g->path, version);
    }
    g->version = version;
    if (tc_cursor_u64(&r->c, n_tensors, "the tensor count", err) ||
        tc_cursor_u64(&r->c, n_kv, "the metadata count", err))
        return TC_ERR;
    return TC_OK;
}

typedef struct tensor_info {
    tc_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[TC_MAX_DIMS]; /* innermost first, as stored */
    uint32_t ggml_type;
    tc_dtype dtype;
    uint64_t offset;          /* relative to the data section */
    uint64_t n_elements, nbytes;
    uint64_t index;           /* position in the file, for stable messages after sorting */
} tensor_info;

static int check_tensor_shape(const char *path, tensor_info *t, tc_error *err)
{
    if (t->n_dims < 1 || t->n_dims > TC_MAX_DIMS)
        return tc_err(err, "%s: tensor '%.*s' has %u dimensions (1 to %d are supported)", path,
                      SHOWN(t->name), t->n_dims, TC_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] > (uint64_t)INT64_MAX || tc_mul_u64(n, t->ne[d], &n) || n > (uint64_t)INT64_MAX)
            return tc_err(err, "%s: tensor '%.*s' has an element count that overflows", path,
                          SHOWN(t->name));
    }
    t->n_elements = n;
    return TC_OK;
}

static int check_tensor_type(const char *path, tensor_info *t, tc_error *err)
{
    if (tc_gguf_dtype_from_ggml(t->ggml_type, &t->dtype))
        return tc_err(err, "%s: tensor '%.*s' has ggml type %u (%s), which is not supported", path,
                      SHOWN(t->name), t->ggml_type, tc_gguf_ggml_type_name(t->ggml_type));
    /* Blocks never straddle rows: ggml quantizes each row on its own. */
    uint64_t be = tc_dtype_block_elems(t->dtype);
    if (t->ne[0] % be != 0)
        return tc_err(err, "%s: tensor '%.*s' has rows of %llu elements, not a whole number of %s blocks "
                      "of %llu", path, SHOWN(t->name), (unsigned long long)t->ne[0],
                      tc_dtype_name(t->dtype), (unsigned long long)be);
    if (tc_dtype_span(t->dtype, t->n_elements, &t->nbytes, err))
        return tc_err_prefix(err, "%s: tensor '%.*s'", path, SHOWN(t->name));
    return TC_OK;
}

static int read_tensor_info(reader *r, tc_gguf *g, uint64_t i, tensor_info *t, tc_error *err)
{
    t->index = i;
    if (read_str(r, &t->name, "a tensor name", err) || check_name(g->path, "tensor name", i, t->name, err))
        return TC_ERR;
    snprintf(r->what, sizeof r->what, "the info of tensor '%.*s'", SHOWN(t->name));
    if (tc_cursor_u32(&r->c, &t->n_dims, r->what, err))
        return TC_ERR;
    if (t->n_dims < 1 || t->n_dims > TC_MAX_DIMS)
        return check_tensor_shape(g->path, t, err);
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (tc_cursor_u64(&r->c, &t->ne[d], r->what, err))
            return TC_ERR;
    if (tc_cursor_u32(&r->c, &t->ggml_type, r->what, err) || tc_cursor_u64(&r->c, &t->offset, r->what, err))
        return TC_ERR;
    if (check_tensor_shape(g->path, t, err) || check_tensor_type(g->path, t, err))
        return TC_ERR;
    if (t->offset % g->alignment != 0)
        return tc_err(err, "%s: tensor '%.*s' has offset %llu, not a multiple of the alignment %llu",
                      g->path, SHOWN(t->name), (unsigned long long)t->offset,
                      (unsigned long long)g->alignment);
    return TC_OK;
}

static int info_offset_cmp(const void *a, const void *b)
{
    const tensor_info *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Spans must lie in the file and not share bytes.  (Sorts the infos.) */
static int check_spans(const tc_gguf *g, uint64_t file_size, tensor_info *ts, uint64_t n, tc_error *err)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t start;
        char what[128];
        snprintf(what, sizeof what, "tensor '%.*s'", SHOWN(ts[i].name));
        if (tc_add_u64(g->data_offset, ts[i].offset, &start))
            return tc_err(err, "%s: tensor '%.*s' has offset %llu beyond any file", g->path,
                          SHOWN(ts[i].name), (unsigned long long)ts[i].offset);
        if (tc_span_check(start, ts[i].nbytes, file_size, g->path, what, err))
            return TC_ERR;
    }
    qsort(ts, (size_t)n, sizeof *ts, info_offset_cmp);
    uint64_t end = 0;
    const tensor_info *last = NULL;
    for (uint64_t i = 0; i < n; i++) {
        if (ts[i].nbytes == 0)
            continue;
        if (last && ts[i].offset < end)
            return tc_err(err, "%s: tensors '%.*s' and '%.*s' overlap", g->path, SHOWN(last->name),
                          SHOWN(ts[i].name));
        end = ts[i].offset + ts[i].nbytes;
        last = &ts[i];
    }
    return TC_OK;
}

static int info_index_cmp(const void *a, const void *b)
{
    const tensor_info *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

static int add_tensors(tc_gguf *g, const tc_mapfile *map, tensor_info *ts, uint64_t n, tc_error *err)
{
    qsort(ts, (size_t)n, sizeof *ts, info_index_cmp);
    uint64_t longest = 0;
    for (uint64_t i = 0; i < n; i++)
        longest = ts[i].name.len > longest ? ts[i].name.len : longest;
    char *name = malloc((size_t)longest + 1);
    if (!name)
        return tc_err(err, "%s: out of memory", g->path);
    int rc = TC_OK;
    for (uint64_t i = 0; i < n && rc == TC_OK; i++) {
        const tensor_info *t = &ts[i];
        int64_t shape[TC_MAX_DIMS];
        for (uint32_t d = 0; d < t->n_dims; d++)
            shape[d] = (int64_t)t->ne[t->n_dims - 1 - d];
        memcpy(name, t->name.ptr, (size_t)t->name.len);
        name[t->name.len] = '\0';
        tc_cursor c;
        const uint8_t *data;
        tc_cursor_init(&c, map->data, map->size, g->path);
        rc = tc_cursor_skip(&c, g->data_offset + t->offset, "tensor data", err);
        if (rc == TC_OK)
            rc = tc_cursor_bytes(&c, t->nbytes, &data, "tensor data", err);
        if (rc == TC_OK)
            rc = tc_tensordir_add(&g->dir, name, t->dtype, (int)t->n_dims, shape, data, t->nbytes, g->path,
                                  err);
    }
    free(name);
    return rc;
}

static int read_tensors(reader *r, tc_gguf *g, const tc_mapfile *map, uint64_t n, tc_error *err)
{
    if (n > tc_cursor_left(&r->c) / MIN_TENSOR_INFO_BYTES)
        return tc_err(err, "%s: the header claims %llu tensors, more than the %llu bytes left could "
                      "describe", g->path, (unsigned long long)n, (unsigned long long)tc_cursor_left(&r->c));
    tensor_info *ts = calloc(n ? (size_t)n : 1, sizeof *ts);
    if (!ts)
        return tc_err(err, "%s: out of memory for %llu tensor infos", g->path, (unsigned long long)n);
    int rc = TC_OK;
    for (uint64_t i = 0; i < n && rc == TC_OK; i++)
        rc = read_tensor_info(r, g, i, &ts[i], err);
    /* The data section starts at the next multiple of the alignment, or,
     * as ggml has it, right after the header in a file without tensors
     * (vocabulary files end there, unpadded). */
    if (rc == TC_OK && n == 0)
        g->data_offset = r->c.pos;
    if (rc == TC_OK && n > 0)
        rc = tc_cursor_align(&r->c, g->alignment, "the padding before the tensor data", err);
    if (rc == TC_OK)
        g->data_offset = r->c.pos;
    if (rc == TC_OK)
        rc = check_spans(g, map->size, ts, n, err);
    if (rc == TC_OK)
        rc = add_tensors(g, map, ts, n, err);
    free(ts);
    return rc;
}

/* ---- Open / close ------------------------------------------------------------ */

static int open_file(tc_gguf *g, const char *path, tc_error *err)
{
    tc_mapfile m;
    size_t mi;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    if (tc_tensordir_adopt_map(&g->dir, &m, &mi, err)) {
        tc_mapfile_close(&m);
        return TC_ERR;
    }
    const tc_mapfile *map = &g->dir.maps[mi];
    reader r;
    memset(&r, 0, sizeof r);
    r.path = g->path;
    tc_cursor_init(&r.c, map->data, map->size, g->path);
    uint64_t n_tensors, n_kv;
    if (read_header(&r, g, &n_tensors, &n_kv, err) || read_kvs(&r, g, n_kv, err) ||
        read_alignment(g, err) || read_tensors(&r, g, map, n_tensors, err))
        return TC_ERR;
    return TC_OK;
}

int tc_gguf_open(tc_gguf *g, const char *path, tc_error *err)
{
    memset(g, 0, sizeof *g);
    tc_tensordir_init(&g->dir);
    g->path = strdup(path);
    if (!g->path)
        return tc_err(err, "%s: out of memory", path);
    if (open_file(g, path, err)) {
        tc_gguf_close(g);
        return TC_ERR;
    }
    return TC_OK;
}

int tc_gguf_open_mem(tc_gguf *g, const char *name, const uint8_t *data, uint64_t size, tc_error *err)
{
    memset(g, 0, sizeof *g);
    tc_tensordir_init(&g->dir);
    g->path = strdup(name);
    if (!g->path)
        return tc_err(err, "%s: out of memory", name);
    reader r;
    memset(&r, 0, sizeof r);
    r.path = g->path;
    tc_cursor_init(&r.c, data, size, g->path);
    uint64_t n_tensors, n_kv;
    int rc = read_header(&r, g, &n_tensors, &n_kv, err);
    if (rc == TC_OK && n_tensors != 0)
        rc = tc_err(err, "%s: the embedded GGUF image holds %llu tensors; only metadata is expected", g->path,
                    (unsigned long long)n_tensors);
    if (rc == TC_OK)
        rc = read_kvs(&r, g, n_kv, err);
    if (rc == TC_OK)
        rc = read_alignment(g, err);
    if (rc == TC_OK)
        g->data_offset = r.c.pos;
    if (rc != TC_OK)
        tc_gguf_close(g);
    return rc;
}

void tc_gguf_close(tc_gguf *g)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        free_value(&g->kvs[i].value);
    free(g->kvs);
    tc_tensordir_free(&g->dir);
    free(g->path);
    memset(g, 0, sizeof *g);
}

/* ---- Lookup ------------------------------------------------------------------ */

const tc_gguf_value *tc_gguf_find(const tc_gguf *g, const char *key)
{
    tc_gguf_str k = {key, strlen(key)};
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_cmp(g->kvs[i].key, k) == 0)
            return &g->kvs[i].value;
    return NULL;
}

static int find_or_err(const tc_gguf *g, const char *key, const tc_gguf_value **v, tc_error *err)
{
    *v = tc_gguf_find(g, key);
    if (!*v)
        return tc_err(err, "%s: metadata key '%s' is missing", g->path, key);
    return TC_OK;
}

static int is_unsigned(tc_gguf_type t)
{
    return t == TC_GGUF_U8 || t == TC_GGUF_U16 || t == TC_GGUF_U32 || t == TC_GGUF_U64;
}

static int is_signed(tc_gguf_type t)
{
    return t == TC_GGUF_I8 || t == TC_GGUF_I16 || t == TC_GGUF_I32 || t == TC_GGUF_I64;
}

static int get_uint(const tc_gguf *g, const char *key, uint64_t max, uint64_t *out, tc_error *err)
{
    const tc_gguf_value *v;
    if (find_or_err(g, key, &v, err))
        return TC_ERR;
    if (is_unsigned(v->type)) {
        *out = v->v.u;
    } else if (is_signed(v->type)) {
        if (v->v.i < 0)
            return tc_err(err, "%s: metadata key '%s' is negative (%lld)", g->path, key, (long long)v->v.i);
        *out = (uint64_t)v->v.i;
    } else {
        return tc_err(err, "%s: metadata key '%s' is a %s, not an integer", g->path, key,
                      tc_gguf_type_name(v->type));
    }
    if (*out > max)
        return tc_err(err, "%s: metadata key '%s' is %llu, larger than %llu", g->path, key,
                      (unsigned long long)*out, (unsigned long long)max);
    return TC_OK;
}

int tc_gguf_get_u32(const tc_gguf *g, const char *key, uint32_t *out, tc_error *err)
{
    uint64_t v;
    if (get_uint(g, key, UINT32_MAX, &v, err))
        return TC_ERR;
    *out = (uint32_t)v;
    return TC_OK;
}

int tc_gguf_get_u64(const tc_gguf *g, const char *key, uint64_t *out, tc_error *err)
{
    return get_uint(g, key, UINT64_MAX, out, err);
}

int tc_gguf_get_f32(const tc_gguf *g, const char *key, float *out, tc_error *err)
{
    const tc_gguf_value *v;
    if (find_or_err(g, key, &v, err))
        return TC_ERR;
    if (v->type == TC_GGUF_F32 || v->type == TC_GGUF_F64)
        *out = (float)v->v.f;
    else if (is_unsigned(v->type))
        *out = (float)v->v.u;
    else if (is_signed(v->type))
        *out = (float)v->v.i;
    else
        return tc_err(err, "%s: metadata key '%s' is a %s, not a number", g->path, key,
                      tc_gguf_type_name(v->type));
    return TC_OK;
}

int tc_gguf_get_bool(const tc_gguf *g, const char *key, int *out, tc_error *err)
{
    const tc_gguf_value *v;
    if (find_or_err(g, key, &v, err))
        return TC_ERR;
    if (v->type != TC_GGUF_BOOL)
        return tc_err(err, "%s: metadata key '%s' is a %s, not a bool", g->path, key,
                      tc_gguf_type_name(v->type));
    *out = v->v.u != 0;
    return TC_OK;
}

int tc_gguf_get_str(const tc_gguf *g, const char *key, char **out, tc_error *err)
{
    const tc_gguf_value *v;
    *out = NULL;
    if (find_or_err(g, key, &v, err))
        return TC_ERR;
    if (v->type != TC_GGUF_STRING)
        return tc_err(err, "%s: metadata key '%s' is a %s, not a string", g->path, key,
                      tc_gguf_type_name(v->type));
    if (v->v.s.len >= SIZE_MAX)
        return tc_err(err, "%s: metadata key '%s' is too long", g->path, key);
    char *s = malloc((size_t)v->v.s.len + 1);
    if (!s)
        return tc_err(err, "%s: out of memory for metadata key '%s'", g->path, key);
    if (v->v.s.len)
        memcpy(s, v->v.s.ptr, (size_t)v->v.s.len);
    s[v->v.s.len] = '\0';
    *out = s;
    return TC_OK;
}
