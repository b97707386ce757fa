/* GGUF v3 writer: everything is validated before the first byte is written,
 * then header, metadata, tensor infos and the aligned data section go out
 * through the atomic output file, one tensor in memory at a time. */
#include "tc/gguf.h"

#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/outfile.h"

#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
/* ggml keeps names in a 64-byte field including the terminating NUL. */
#define GGML_MAX_NAME 64

/* ---- Validation ---------------------------------------------------------------- */

static int int_fits(tc_gguf_type t, const tc_gguf_value *v)
{
    switch (t) {
    case TC_GGUF_U8: return v->v.u <= UINT8_MAX;
    case TC_GGUF_U16: return v->v.u <= UINT16_MAX;
    case TC_GGUF_U32: return v->v.u <= UINT32_MAX;
    case TC_GGUF_BOOL: return v->v.u <= 1;
    case TC_GGUF_I8: return v->v.i >= INT8_MIN && v->v.i <= INT8_MAX;
    case TC_GGUF_I16: return v->v.i >= INT16_MIN && v->v.i <= INT16_MAX;
    case TC_GGUF_I32: return v->v.i >= INT32_MIN && v->v.i <= INT32_MAX;
    default: return 1;
    }
}

static int check_value(const char *path, const char *key, const tc_gguf_value *v, int depth, tc_error *err)
{
    if ((unsigned)v->type > TC_GGUF_F64)
        return tc_err(err, "%s: metadata key '%s' has unknown value type %d", path, key, (int)v->type);
    if (!int_fits(v->type, v))
        return tc_err(err, "%s: metadata key '%s' holds a value out of range for a %s", path, key,
                      tc_gguf_type_name(v->type));
    if (v->type == TC_GGUF_STRING && v->v.s.len && !v->v.s.ptr)
        return tc_err(err, "%s: metadata key '%s' has a string without bytes", path, key);
    if (v->type != TC_GGUF_ARRAY)
        return TC_OK;
    if (depth >= TC_GGUF_MAX_DEPTH)
        return tc_err(err, "%s: metadata key '%s' nests arrays deeper than %d levels", path, key,
                      TC_GGUF_MAX_DEPTH);
    if ((unsigned)v->v.arr.type > TC_GGUF_F64)
        return tc_err(err, "%s: metadata key '%s' is an array of unknown value type %d", path, key,
                      (int)v->v.arr.type);
    if (v->v.arr.n && !v->v.arr.items)
        return tc_err(err, "%s: metadata key '%s' is an array without items", path, key);
    for (uint64_t i = 0; i < v->v.arr.n; i++) {
        const tc_gguf_value *it = &v->v.arr.items[i];
        if (it->type != v->v.arr.type)
            return tc_err(err, "%s: metadata key '%s' is an array of %s holding a %s at index %llu", path,
                          key, tc_gguf_type_name(v->v.arr.type), tc_gguf_type_name(it->type),
                          (unsigned long long)i);
        if (check_value(path, key, it, depth + 1, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names sorted, so duplicates sit side by side. */
static int check_unique(const char *path, const char *kind, const char **names, size_t n, tc_error *err)
{
    qsort(names, n, sizeof *names, str_ptr_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return tc_err(err, "%s: duplicate %s '%s'", path, kind, names[i]);
    return TC_OK;
}

/* Returns whether kvs already carry general.alignment (then it must agree). */
static int check_kvs(const char *path, const tc_gguf_writer_kv *kvs, size_t n, uint32_t alignment,
                     int *has_alignment, tc_error *err)
{
    *has_alignment = 0;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return tc_err(err, "%s: out of memory", path);
    int rc = TC_OK;
    for (size_t i = 0; i < n && rc == TC_OK; i++) {
        const tc_gguf_writer_kv *kv = &kvs[i];
        names[i] = kv->key ? kv->key : "";
        if (!kv->key || !kv->key[0]) {
            rc = tc_err(err, "%s: metadata entry %zu has an empty key", path, i);
            break;
        }
        rc = check_value(path, kv->key, &kv->value, 0, err);
        if (rc == TC_OK && strcmp(kv->key, "general.alignment") == 0) {
            *has_alignment = 1;
            if (kv->value.type != TC_GGUF_U32 || kv->value.v.u != alignment)
                rc = tc_err(err, "%s: general.alignment must be the u32 %u the data is aligned to", path,
                            alignment);
        }
    }
    if (rc == TC_OK)
        rc = check_unique(path, "metadata key", names, n, err);
    free(names);
    return rc;
}

typedef struct planned {
    uint32_t ggml_type;
    uint64_t nbytes, offset;
} planned;

static int plan_tensor(const char *path, const tc_out_tensor *t, uint32_t alignment, uint64_t *end,
                       planned *p, tc_error *err)
{
    if (!t->name || !t->name[0])
        return tc_err(err, "%s: a tensor has an empty name", path);
    if (strlen(t->name) >= GGML_MAX_NAME)
        return tc_err(err, "%s: tensor name '%s' is longer than the %d bytes ggml allows", path, t->name,
                      GGML_MAX_NAME - 1);
    if (t->n_dims < 1 || t->n_dims > TC_MAX_DIMS)
        return tc_err(err, "%s: tensor '%s' has %d dimensions (1 to %d are supported)", path, t->name,
                      t->n_dims, TC_MAX_DIMS);
    if (tc_gguf_ggml_from_dtype(t->dtype, &p->ggml_type))
        return tc_err(err, "%s: tensor '%s' has dtype %s, which GGUF cannot hold", path, t->name,
                      tc_dtype_name(t->dtype));
    if (tc_out_tensor_nbytes(t, &p->nbytes, err))
        return tc_err_prefix(err, "%s", path);
    uint64_t be = tc_dtype_block_elems(t->dtype);
    if (t->shape[t->n_dims - 1] % (int64_t)be != 0)
        return tc_err(err, "%s: tensor '%s' has rows of %lld elements, not a whole number of %s blocks",
                      path, t->name, (long long)t->shape[t->n_dims - 1], tc_dtype_name(t->dtype));
    uint64_t padded;
    p->offset = *end;
    if (tc_add_u64(p->nbytes, alignment - 1, &padded) ||
        tc_add_u64(*end, padded / alignment * alignment, end))
        return tc_err(err, "%s: the tensor data exceeds 64-bit offsets", path);
    return TC_OK;
}

static int plan_tensors(const char *path, const tc_out_tensor *ts, size_t n, uint32_t alignment,
                        planned *plan, tc_error *err)
{
    uint64_t end = 0;
    for (size_t i = 0; i < n; i++)
        if (plan_tensor(path, &ts[i], alignment, &end, &plan[i], err))
            return TC_ERR;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return tc_err(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        names[i] = ts[i].name;
    int rc = check_unique(path, "tensor name", names, n, err);
    free(names);
    return rc;
}

/* ---- Serialisation ---------------------------------------------------------------- */

static int put_le(tc_outfile *o, uint64_t v, int n, tc_error *err)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return tc_outfile_write(o, b, (size_t)n, err);
}

static int put_str(tc_outfile *o, const char *p, uint64_t len, tc_error *err)
{
    if (put_le(o, len, 8, err))
        return TC_ERR;
    return tc_outfile_write(o, p, (size_t)len, err);
}

static int put_payload(tc_outfile *o, const tc_gguf_value *v, tc_error *err)
{
    float f32;
    uint32_t b32;
    uint64_t b64;
    switch (v->type) {
    case TC_GGUF_U8: case TC_GGUF_BOOL: return put_le(o, v->v.u, 1, err);
    case TC_GGUF_U16: return put_le(o, v->v.u, 2, err);
    case TC_GGUF_U32: return put_le(o, v->v.u, 4, err);
    case TC_GGUF_U64: return put_le(o, v->v.u, 8, err);
    case TC_GGUF_I8: return put_le(o, (uint64_t)v->v.i, 1, err);
    case TC_GGUF_I16: return put_le(o, (uint64_t)v->v.i, 2, err);
    case TC_GGUF_I32: return put_le(o, (uint64_t)v->v.i, 4, err);
    case TC_GGUF_I64: return put_le(o, (uint64_t)v->v.i, 8, err);
    case TC_GGUF_F32:
        f32 = (float)v->v.f;
        memcpy(&b32, &f32, 4);
        return put_le(o, b32, 4, err);
    case TC_GGUF_F64:
        memcpy(&b64, &v->v.f, 8);
        return put_le(o, b64, 8, err);
    case TC_GGUF_STRING: return put_str(o, v->v.s.ptr, v->v.s.len, err);
    case TC_GGUF_ARRAY:
        if (put_le(o, (uint64_t)v->v.arr.type, 4, err) || put_le(o, v->v.arr.n, 8, err))
            return TC_ERR;
        for (uint64_t i = 0; i < v->v.arr.n; i++)
            if (put_payload(o, &v->v.arr.items[i], err))
                return TC_ERR;
        return TC_OK;
    }
    return TC_OK;
}

static int put_kv(tc_outfile *o, const char *key, const tc_gguf_value *v, tc_error *err)
{
    if (put_str(o, key, strlen(key), err) || put_le(o, (uint64_t)v->type, 4, err))
        return TC_ERR;
    return put_payload(o, v, err);
}

static int put_tensor_info(tc_outfile *o, const tc_out_tensor *t, const planned *p, tc_error *err)
{
    if (put_str(o, t->name, strlen(t->name), err) || put_le(o, (uint64_t)t->n_dims, 4, err))
        return TC_ERR;
    for (int d = t->n_dims - 1; d >= 0; d--)
        if (put_le(o, (uint64_t)t->shape[d], 8, err))
            return TC_ERR;
    if (put_le(o, p->ggml_type, 4, err))
        return TC_ERR;
    return put_le(o, p->offset, 8, err);
}

static int put_tensor_data(tc_outfile *o, const tc_out_tensor *t, const planned *p, uint32_t alignment,
                           tc_error *err)
{
    if (t->data) {
        if (tc_outfile_write(o, t->data, (size_t)p->nbytes, err))
            return TC_ERR;
    } else {
        void *buf = malloc(p->nbytes ? (size_t)p->nbytes : 1);
        if (!buf)
            return tc_err(err, "%s: out of memory for the %llu bytes of tensor '%s'", o->path,
                          (unsigned long long)p->nbytes, t->name);
        int rc = tc_out_tensor_produce(t, buf, err);
        if (rc)
            tc_err_prefix(err, "%s", o->path);
        if (rc == TC_OK)
            rc = tc_outfile_write(o, buf, (size_t)p->nbytes, err);
        free(buf);
        if (rc)
            return TC_ERR;
    }
    return tc_outfile_pad(o, alignment, err);
}

static int put_file(tc_outfile *o, const tc_gguf_writer_kv *kvs, size_t n_kv, int add_alignment,
                    const tc_out_tensor *ts, size_t n_ts, const planned *plan, uint32_t alignment,
                    tc_error *err)
{
    if (tc_outfile_write(o, "GGUF", 4, err) || put_le(o, GGUF_VERSION, 4, err) ||
        put_le(o, n_ts, 8, err) || put_le(o, n_kv + (add_alignment ? 1 : 0), 8, err))
        return TC_ERR;
    for (size_t i = 0; i < n_kv; i++)
        if (put_kv(o, kvs[i].key, &kvs[i].value, err))
            return TC_ERR;
    if (add_alignment) {
        tc_gguf_value a = {.type = TC_GGUF_U32, .v.u = alignment};
        if (put_kv(o, "general.alignment", &a, err))
            return TC_ERR;
    }
    for (size_t i = 0; i < n_ts; i++)
        if (put_tensor_info(o, &ts[i], &plan[i], err))
            return TC_ERR;
    if (tc_outfile_pad(o, alignment, err))
        return TC_ERR;
    for (size_t i = 0; i < n_ts; i++)
        if (put_tensor_data(o, &ts[i], &plan[i], alignment, err))
            return TC_ERR;
    return TC_OK;
}

int tc_gguf_write(const char *path, const tc_gguf_writer_kv *kvs, size_t n_kv,
                  const tc_out_tensor *tensors, size_t n_tensors, uint32_t alignment,
                  tc_error *err)
{
    if (alignment == 0)
        alignment = GGUF_DEFAULT_ALIGNMENT;
    if ((alignment & (alignment - 1)) != 0)
        return tc_err(err, "%s: alignment %u is not a power of two", path, alignment);
    int has_alignment;
    if (check_kvs(path, kvs, n_kv, alignment, &has_alignment, err))
        return TC_ERR;
    planned *plan = calloc(n_tensors ? n_tensors : 1, sizeof *plan);
    if (!plan)
        return tc_err(err, "%s: out of memory", path);
    int rc = plan_tensors(path, tensors, n_tensors, alignment, plan, err);
    tc_outfile o;
    if (rc == TC_OK)
        rc = tc_outfile_open(&o, path, err);
    if (rc == TC_OK) {
        int add_alignment = alignment != GGUF_DEFAULT_ALIGNMENT && !has_alignment;
        rc = put_file(&o, kvs, n_kv, add_alignment, tensors, n_tensors, plan, alignment, err);
        if (rc == TC_OK)
            rc = tc_outfile_commit(&o, err);
        tc_outfile_abort(&o);
    }
    free(plan);
    return rc;
}
