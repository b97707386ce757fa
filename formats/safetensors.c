#include "tc/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/outfile.h"

/* Real headers stay far below 1 MiB even for the largest models; cJSON's tree
 * costs about 40 bytes per header byte, so 16 MiB bounds what a hostile header
 * can make us allocate (the reference implementation allows 100 MB). */
#define ST_MAX_HEADER ((uint64_t)16 << 20)
/* Integers beyond 2^53 - 1 have no exact double, and cJSON parses to double. */
#define ST_MAX_EXACT_INT 9007199254740991.0

/* ---- Header text -------------------------------------------------------- */

static int utf8_tail(const uint8_t *s, uint64_t left, int n)
{
    if ((uint64_t)n > left)
        return 0;
    for (int i = 0; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return 1;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0 when it is malformed. */
static int utf8_sequence(const uint8_t *s, uint64_t left)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return utf8_tail(s + 1, left - 1, 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!utf8_tail(s + 1, left - 1, 2))
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!utf8_tail(s + 1, left - 1, 3))
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/* Offset of the first byte that breaks UTF-8 (NUL counts: it would cut the
 * text short for the JSON parser), or n when the text is clean. */
static uint64_t utf8_first_bad(const uint8_t *s, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        if (s[i] == 0)
            return i;
        int k = utf8_sequence(s + i, n - i);
        if (k == 0)
            return i;
        i += (uint64_t)k;
    }
    return n;
}

static int utf8_valid(const char *s)
{
    size_t n = strlen(s);
    return utf8_first_bad((const uint8_t *)s, n) == n;
}

static int json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Copies the header out of the mapping (so the parser sees a terminated
 * string), checks its encoding and padding, and parses it. */
static int parse_header(const char *path, const uint8_t *text, uint64_t n, cJSON **out, tc_error *err)
{
    *out = NULL;
    uint64_t bad = utf8_first_bad(text, n);
    if (bad != n)
        return tc_err(err, "%s: the header is not valid UTF-8 (byte 0x%02x at header offset %llu)", path,
                      text[bad], (unsigned long long)bad);
    if (text[0] != '{')
        return tc_err(err, "%s: the header does not start with '{'", path);
    char *buf = malloc((size_t)n + 1);
    if (!buf)
        return tc_err(err, "%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    memcpy(buf, text, (size_t)n);
    buf[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 0);
    if (!root) {
        long at = end ? (long)(end - buf) : -1;
        free(buf);
        return tc_err(err, "%s: the header is not valid JSON (near header offset %ld)", path, at);
    }
    for (const char *p = end; *p; p++) {
        if (!json_space(*p)) {
            long at = (long)(p - buf);
            free(buf);
            cJSON_Delete(root);
            return tc_err(err, "%s: the header has bytes other than space padding after its JSON (header offset %ld)",
                          path, at);
        }
    }
    free(buf);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tc_err(err, "%s: the header is not a JSON object", path);
    }
    *out = root;
    return TC_OK;
}

/* ---- Header fields ------------------------------------------------------ */

/* A JSON number that is exactly a non-negative integer a double can hold. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > ST_MAX_EXACT_INT || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* The dtypes the safetensors format defines (the directory knows block types
 * too, which no safetensors file may claim). */
static int st_known(tc_dtype t)
{
    switch (t) {
    case TC_F32: case TC_F16: case TC_BF16: case TC_F64: case TC_I8:
    case TC_U8: case TC_I16: case TC_I32: case TC_I64: case TC_BOOL:
        return 1;
    default:
        return 0;
    }
}

static int st_dtype(const char *s, tc_dtype *t)
{
    return tc_dtype_from_name(s, t) == TC_OK && st_known(*t);
}

typedef struct st_entry {
    const char *name; /* inside the parsed header */
    tc_dtype dtype;
    int n_dims;
    int64_t shape[TC_MAX_DIMS];
    uint64_t begin, end; /* relative to the data section */
} st_entry;

static int read_shape(const char *path, const char *name, const cJSON *shape, st_entry *e, tc_error *err)
{
    if (!cJSON_IsArray(shape))
        return tc_err(err, "%s: tensor '%s' has no \"shape\" array", path, name);
    int n = cJSON_GetArraySize(shape);
    if (n > TC_MAX_DIMS)
        return tc_err(err, "%s: tensor '%s' has %d dimensions (at most %d supported)", path, name, n,
                      TC_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return tc_err(err, "%s: tensor '%s' has a shape entry that is not a non-negative integer", path,
                          name);
        e->shape[i] = (int64_t)v;
    }
    e->n_dims = n;
    return TC_OK;
}

static int read_offsets(const char *path, const char *name, const cJSON *offs, st_entry *e, tc_error *err)
{
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return tc_err(err, "%s: tensor '%s' has no \"data_offsets\" pair", path, name);
    if (!json_uint(offs->child, &e->begin) || !json_uint(offs->child->next, &e->end))
        return tc_err(err, "%s: tensor '%s' has data_offsets that are not non-negative integers", path, name);
    if (e->end < e->begin)
        return tc_err(err, "%s: tensor '%s' ends (offset %llu) before it begins (offset %llu)", path, name,
                      (unsigned long long)e->end, (unsigned long long)e->begin);
    return TC_OK;
}

static int read_entry(const char *path, const cJSON *item, st_entry *e, tc_error *err)
{
    const char *name = item->string;
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!cJSON_IsObject(item))
        return tc_err(err, "%s: header entry '%s' is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype))
        return tc_err(err, "%s: tensor '%s' has no \"dtype\" string", path, name);
    if (!st_dtype(dtype->valuestring, &e->dtype))
        return tc_err(err, "%s: tensor '%s' has unknown dtype '%s'", path, name, dtype->valuestring);
    if (read_shape(path, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), e, err))
        return TC_ERR;
    return read_offsets(path, name, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), e, err);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps repeated keys (reading) and writes them without complaint
 * (writing); sorting finds them in n log n. */
static int check_unique(const char *path, const char **names, size_t n, const char *what, tc_error *err)
{
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return tc_err(err, "%s: %s '%s' appears twice", path, what, names[i]);
    return TC_OK;
}

static int read_metadata(const char *path, const cJSON *md, tc_safetensors *info, tc_error *err)
{
    if (!cJSON_IsObject(md))
        return tc_err(err, "%s: \"__metadata__\" is not an object", path);
    size_t n = 0;
    for (const cJSON *kv = md->child; kv; kv = kv->next, n++)
        if (!cJSON_IsString(kv))
            return tc_err(err, "%s: metadata value '%s' is not a string", path, kv->string);
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return tc_err(err, "%s: out of memory", path);
    n = 0;
    for (const cJSON *kv = md->child; kv; kv = kv->next)
        keys[n++] = kv->string;
    int rc = check_unique(path, keys, n, "metadata key", err);
    free(keys);
    if (rc || !info)
        return rc;
    info->metadata = calloc(n ? n : 1, sizeof *info->metadata);
    if (!info->metadata)
        return tc_err(err, "%s: out of memory", path);
    for (const cJSON *kv = md->child; kv; kv = kv->next) {
        tc_kv_str *d = &info->metadata[info->n_metadata++];
        d->key = strdup(kv->string);
        d->value = strdup(kv->valuestring);
        if (!d->key || !d->value)
            return tc_err(err, "%s: out of memory", path);
    }
    return TC_OK;
}

static int by_span(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Two tensors sharing bytes would let a write through one corrupt the other;
 * the format forbids it. */
static int check_overlaps(const char *path, st_entry *e, size_t n, tc_error *err)
{
    if (n < 2)
        return TC_OK;
    const st_entry **order = malloc(n * sizeof *order);
    if (!order)
        return tc_err(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        order[i] = &e[i];
    qsort(order, n, sizeof *order, by_span);
    int rc = TC_OK;
    for (size_t i = 1; i < n && rc == TC_OK; i++)
        if (order[i]->begin < order[i - 1]->end)
            rc = tc_err(err, "%s: tensors '%s' and '%s' overlap in the data section", path, order[i - 1]->name,
                        order[i]->name);
    free(order);
    return rc;
}

/* Reads every header entry into e (which holds one slot per child) and checks
 * each span lies in the data section. */
static int read_entries(const char *path, const cJSON *root, uint64_t data_size, st_entry *e, size_t *n_out,
                        tc_safetensors *info, tc_error *err)
{
    size_t n = 0;
    int saw_metadata = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (saw_metadata++)
                return tc_err(err, "%s: the header has two \"__metadata__\" entries", path);
            if (read_metadata(path, item, info, err))
                return TC_ERR;
            continue;
        }
        if (read_entry(path, item, &e[n], err))
            return TC_ERR;
        if (e[n].end > data_size)
            return tc_err(err, "%s: tensor '%s' spans data bytes %llu..%llu beyond the data section (%llu bytes)",
                          path, e[n].name, (unsigned long long)e[n].begin, (unsigned long long)e[n].end,
                          (unsigned long long)data_size);
        n++;
    }
    *n_out = n;
    return check_overlaps(path, e, n, err);
}

/* ---- Opening ------------------------------------------------------------ */

/* Removes the tensors added since n0, so a failed open leaves dir as it was. */
static void rollback(tc_tensordir *dir, size_t n0)
{
    tc_tensordir_truncate(dir, n0);
}

static int add_entries(tc_tensordir *dir, const tc_mapfile *m, tc_cursor *data, const st_entry *e, size_t n,
                       tc_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p;
        data->pos = e[i].begin;
        if (tc_cursor_bytes(data, e[i].end - e[i].begin, &p, e[i].name, err))
            return TC_ERR;
        if (tc_tensordir_add(dir, e[i].name, e[i].dtype, e[i].n_dims, e[i].shape, p, e[i].end - e[i].begin,
                             m->path, err))
            return TC_ERR;
    }
    return TC_OK;
}

/* Locates the header: its length field, its bytes, the data section after it. */
static int split_file(const tc_mapfile *m, const uint8_t **header, uint64_t *header_len, tc_cursor *data,
                      tc_error *err)
{
    tc_cursor c;
    tc_cursor_init(&c, m->data, m->size, m->path);
    if (tc_cursor_u64(&c, header_len, "the header length", err))
        return TC_ERR;
    if (*header_len > ST_MAX_HEADER)
        return tc_err(err, "%s: header length %llu is larger than the %llu allowed", m->path,
                      (unsigned long long)*header_len, (unsigned long long)ST_MAX_HEADER);
    if (*header_len < 2)
        return tc_err(err, "%s: header length %llu is too short for a JSON object", m->path,
                      (unsigned long long)*header_len);
    if (tc_cursor_bytes(&c, *header_len, header, "the header", err))
        return TC_ERR;
    tc_cursor_init(data, *header + *header_len, tc_cursor_left(&c), m->path);
    return TC_OK;
}

static int add_mapped(tc_tensordir *dir, tc_mapfile *m, tc_safetensors *info, tc_error *err)
{
    const uint8_t *header;
    uint64_t header_len;
    tc_cursor data;
    cJSON *root = NULL;
    if (split_file(m, &header, &header_len, &data, err) ||
        parse_header(m->path, header, header_len, &root, err))
        return TC_ERR;
    int n_items = cJSON_GetArraySize(root);
    st_entry *e = malloc((n_items ? (size_t)n_items : 1) * sizeof *e);
    if (!e) {
        cJSON_Delete(root);
        return tc_err(err, "%s: out of memory", m->path);
    }
    size_t n = 0, n0 = dir->n_tensors;
    int rc = read_entries(m->path, root, data.size, e, &n, info, err);
    if (rc == TC_OK)
        rc = add_entries(dir, m, &data, e, n, err);
    if (rc != TC_OK)
        rollback(dir, n0);
    free(e);
    cJSON_Delete(root);
    return rc;
}

int tc_safetensors_add(tc_tensordir *dir, const char *path, tc_safetensors *info, tc_error *err)
{
    tc_mapfile m;
    if (info) {
        memset(info, 0, sizeof *info);
        info->path = strdup(path);
        if (!info->path)
            return tc_err(err, "%s: out of memory", path);
    }
    if (tc_mapfile_open(&m, path, err))
        goto fail;
    size_t n0 = dir->n_tensors;
    if (add_mapped(dir, &m, info, err)) {
        tc_mapfile_close(&m);
        goto fail;
    }
    /* The tensors point into m's pages, which stay put when the copy moves. */
    if (tc_tensordir_adopt_map(dir, &m, NULL, err)) {
        rollback(dir, n0);
        tc_mapfile_close(&m);
        goto fail;
    }
    return TC_OK;
fail:
    tc_safetensors_free(info);
    return TC_ERR;
}

void tc_safetensors_free(tc_safetensors *info)
{
    if (!info)
        return;
    for (size_t i = 0; i < info->n_metadata; i++) {
        free(info->metadata[i].key);
        free(info->metadata[i].value);
    }
    free(info->metadata);
    free(info->path);
    memset(info, 0, sizeof *info);
}

/* ---- Writing ------------------------------------------------------------ */

static int add_raw_uint(cJSON *parent, const char *key, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    /* Raw text: cJSON would print large doubles in exponent form, which
     * integer-typed readers refuse. */
    cJSON *item = cJSON_CreateRaw(num);
    if (!item)
        return TC_ERR;
    if (key)
        return cJSON_AddItemToObject(parent, key, item) ? TC_OK : (cJSON_Delete(item), TC_ERR);
    return cJSON_AddItemToArray(parent, item) ? TC_OK : (cJSON_Delete(item), TC_ERR);
}

static int header_entry(cJSON *root, const tc_out_tensor *t, uint64_t begin, uint64_t end)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return TC_ERR;
    if (!cJSON_AddItemToObject(root, t->name, obj)) {
        cJSON_Delete(obj);
        return TC_ERR;
    }
    cJSON *shape = cJSON_AddArrayToObject(obj, "shape");
    cJSON *offs = NULL;
    if (!cJSON_AddStringToObject(obj, "dtype", tc_dtype_name(t->dtype)) || !shape)
        return TC_ERR;
    for (int i = 0; i < t->n_dims; i++)
        if (add_raw_uint(shape, NULL, (uint64_t)t->shape[i]))
            return TC_ERR;
    offs = cJSON_AddArrayToObject(obj, "data_offsets");
    if (!offs || add_raw_uint(offs, NULL, begin) || add_raw_uint(offs, NULL, end))
        return TC_ERR;
    return TC_OK;
}

static int check_out_tensor(const char *path, const tc_out_tensor *t, tc_error *err)
{
    if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0 || !utf8_valid(t->name))
        return tc_err(err, "%s: tensor name '%s' cannot be stored", path, t->name ? t->name : "(null)");
    if (!st_known(t->dtype))
        return tc_err(err, "%s: tensor '%s' has dtype %s, which safetensors cannot hold", path, t->name,
                      (unsigned)t->dtype < TC_DTYPE_COUNT ? tc_dtype_name(t->dtype) : "(invalid)");
    return TC_OK;
}

static int check_metadata(const char *path, const tc_kv_str *md, size_t n, tc_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!md[i].key || !md[i].value || !utf8_valid(md[i].key) || !utf8_valid(md[i].value))
            return tc_err(err, "%s: metadata entry %zu is not a pair of UTF-8 strings", path, i);
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return tc_err(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        keys[i] = md[i].key;
    int rc = check_unique(path, keys, n, "metadata key", err);
    free(keys);
    return rc;
}

/* Checks every tensor and fills sizes[i] with its byte count. */
static int check_tensors(const char *path, const tc_out_tensor *t, size_t n, uint64_t *sizes, tc_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (check_out_tensor(path, &t[i], err))
            return TC_ERR;
        if (tc_out_tensor_nbytes(&t[i], &sizes[i], err))
            return tc_err_prefix(err, "%s", path);
        if (sizes[i] > SIZE_MAX)
            return tc_err(err, "%s: tensor '%s' is too large for this machine", path, t[i].name);
    }
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return tc_err(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        names[i] = t[i].name;
    int rc = check_unique(path, names, n, "tensor name", err);
    free(names);
    return rc;
}

static cJSON *build_header(const tc_out_tensor *t, size_t n, const uint64_t *sizes, const tc_kv_str *md,
                           size_t n_md)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    if (n_md > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m)
            goto fail;
        for (size_t i = 0; i < n_md; i++)
            if (!cJSON_AddStringToObject(m, md[i].key, md[i].value))
                goto fail;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t end;
        if (tc_add_u64(off, sizes[i], &end) || header_entry(root, &t[i], off, end))
            goto fail;
        off = end;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* The length field, the JSON, then spaces so the data section starts on a
 * multiple of 8 bytes. */
static int write_header(tc_outfile *o, const char *json, tc_error *err)
{
    uint64_t len = strlen(json);
    uint64_t padded = (len + 7) / 8 * 8;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(padded >> (8 * i));
    static const char spaces[8] = "        ";
    if (tc_outfile_write(o, le, sizeof le, err) || tc_outfile_write(o, json, (size_t)len, err) ||
        tc_outfile_write(o, spaces, (size_t)(padded - len), err))
        return TC_ERR;
    return TC_OK;
}

/* One tensor's bytes at a time, so a writer never holds the whole model. */
static int write_tensor(tc_outfile *o, const tc_out_tensor *t, uint64_t nbytes, tc_error *err)
{
    void *buf = malloc(nbytes ? (size_t)nbytes : 1);
    if (!buf)
        return tc_err(err, "%s: out of memory for tensor '%s' (%llu bytes)", o->path, t->name,
                      (unsigned long long)nbytes);
    int rc = tc_out_tensor_produce(t, buf, err);
    if (rc)
        tc_err_prefix(err, "%s", o->path);
    else
        rc = tc_outfile_write(o, buf, (size_t)nbytes, err);
    free(buf);
    return rc;
}

static int write_file(const char *path, const char *json, const tc_out_tensor *t, size_t n,
                      const uint64_t *sizes, tc_error *err)
{
    tc_outfile o;
    if (tc_outfile_open(&o, path, err))
        return TC_ERR;
    int rc = write_header(&o, json, err);
    for (size_t i = 0; i < n && rc == TC_OK; i++)
        rc = write_tensor(&o, &t[i], sizes[i], err);
    if (rc == TC_OK)
        rc = tc_outfile_commit(&o, err);
    tc_outfile_abort(&o);
    return rc;
}

int tc_safetensors_write(const char *path, const tc_out_tensor *tensors, size_t n_tensors,
                         const tc_kv_str *metadata, size_t n_metadata, tc_error *err)
{
    if (!metadata)
        n_metadata = 0;
    uint64_t *sizes = malloc((n_tensors ? n_tensors : 1) * sizeof *sizes);
    if (!sizes)
        return tc_err(err, "%s: out of memory", path);
    int rc = TC_ERR;
    cJSON *root = NULL;
    char *json = NULL;
    if (check_tensors(path, tensors, n_tensors, sizes, err) || check_metadata(path, metadata, n_metadata, err))
        goto done;
    root = build_header(tensors, n_tensors, sizes, metadata, n_metadata);
    json = root ? cJSON_PrintUnformatted(root) : NULL;
    if (!json) {
        tc_err(err, "%s: out of memory while building the header", path);
        goto done;
    }
    rc = write_file(path, json, tensors, n_tensors, sizes, err);
done:
    cJSON_free(json);
    cJSON_Delete(root);
    free(sizes);
    return rc;
}
