/* madvise(MADV_DONTNEED) is a Linux/BSD call beyond POSIX. */
#define _DEFAULT_SOURCE
#include "tc/tensordir.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <string.h>

#include "tc/checked.h"

void tc_tensordir_init(tc_tensordir *d)
{
    memset(d, 0, sizeof *d);
}

void tc_tensordir_free(tc_tensordir *d)
{
    for (size_t i = 0; i < d->n_tensors; i++)
        free(d->tensors[i].name);
    free(d->tensors);
    for (size_t i = 0; i < d->n_maps; i++)
        tc_mapfile_close(&d->maps[i]);
    free(d->maps);
    for (size_t i = 0; i < d->n_buffers; i++)
        free(d->buffers[i]);
    free(d->buffers);
    free(d->index);
    memset(d, 0, sizeof *d);
}

/* FNV-1a: names are short and trusted only as bytes. */
static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)h;
}

static void index_insert(size_t *index, size_t cap, const char *name, size_t slot_value)
{
    size_t i = name_hash(name) & (cap - 1);
    while (index[i])
        i = (i + 1) & (cap - 1);
    index[i] = slot_value;
}

static int index_rebuild(tc_tensordir *d, size_t cap)
{
    size_t *index = calloc(cap, sizeof *index);
    if (!index)
        return TC_ERR;
    for (size_t t = 0; t < d->n_tensors; t++)
        index_insert(index, cap, d->tensors[t].name, t + 1);
    free(d->index);
    d->index = index;
    d->index_cap = cap;
    return TC_OK;
}

void tc_tensordir_truncate(tc_tensordir *d, size_t n)
{
    while (d->n_tensors > n)
        free(d->tensors[--d->n_tensors].name);
    if (d->index_cap && index_rebuild(d, d->index_cap) != TC_OK) {
        free(d->index);
        d->index = NULL;
        d->index_cap = 0;
    }
}

int tc_tensordir_adopt_map(tc_tensordir *d, tc_mapfile *m, size_t *index, tc_error *err)
{
    tc_mapfile *p = realloc(d->maps, (d->n_maps + 1) * sizeof *p);
    if (!p)
        return tc_err(err, "%s: out of memory", m->path);
    d->maps = p;
    d->maps[d->n_maps] = *m;
    memset(m, 0, sizeof *m);
    if (index)
        *index = d->n_maps;
    d->n_maps++;
    return TC_OK;
}

int tc_tensordir_adopt_buffer(tc_tensordir *d, void *buf, tc_error *err)
{
    void **p = realloc(d->buffers, (d->n_buffers + 1) * sizeof *p);
    if (!p) {
        free(buf);
        return tc_err(err, "out of memory");
    }
    d->buffers = p;
    d->buffers[d->n_buffers++] = buf;
    return TC_OK;
}

const tc_tensor *tc_tensordir_find(const tc_tensordir *d, const char *name)
{
    if (!d->index_cap) {
        for (size_t i = 0; i < d->n_tensors; i++)
            if (strcmp(d->tensors[i].name, name) == 0)
                return &d->tensors[i];
        return NULL;
    }
    for (size_t i = name_hash(name) & (d->index_cap - 1); d->index[i]; i = (i + 1) & (d->index_cap - 1))
        if (strcmp(d->tensors[d->index[i] - 1].name, name) == 0)
            return &d->tensors[d->index[i] - 1];
    return NULL;
}

int tc_span_check(uint64_t off, uint64_t len, uint64_t file_size, const char *file,
                  const char *what, tc_error *err)
{
    uint64_t end;
    if (tc_add_u64(off, len, &end) || end > file_size)
        return tc_err(err, "%s: %s spans bytes %llu..%llu beyond the end of the file (%llu bytes)", file,
                      what, (unsigned long long)off, (unsigned long long)off + len,
                      (unsigned long long)file_size);
    return TC_OK;
}

static int shape_elements(const char *file, const char *name, int n_dims, const int64_t *shape,
                          uint64_t *n, tc_error *err)
{
    if (n_dims < 0 || n_dims > TC_MAX_DIMS)
        return tc_err(err, "%s: tensor '%s' has %d dimensions (at most %d supported)", file, name, n_dims,
                      TC_MAX_DIMS);
    uint64_t count = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return tc_err(err, "%s: tensor '%s' has a negative dimension", file, name);
        if (tc_mul_u64(count, (uint64_t)shape[i], &count))
            return tc_err(err, "%s: tensor '%s' element count overflows", file, name);
    }
    *n = count;
    return TC_OK;
}

int tc_tensordir_add(tc_tensordir *d, const char *name, tc_dtype dtype, int n_dims,
                     const int64_t *shape, const uint8_t *data, uint64_t nbytes,
                     const char *file, tc_error *err)
{
    if (!file)
        file = "(memory)";
    if (!name || !name[0])
        return tc_err(err, "%s: a tensor has an empty name", file);
    if (tc_tensordir_find(d, name))
        return tc_err(err, "%s: duplicate tensor name '%s'", file, name);
    uint64_t n = 0, want;
    if (shape_elements(file, name, n_dims, shape, &n, err))
        return TC_ERR;
    if (tc_dtype_span(dtype, n, &want, err))
        return tc_err_prefix(err, "%s: tensor '%s'", file, name);
    if (want != nbytes)
        return tc_err(err, "%s: tensor '%s' holds %llu bytes but its shape and dtype %s need %llu", file,
                      name, (unsigned long long)nbytes, tc_dtype_name(dtype), (unsigned long long)want);
    if (d->n_tensors == d->cap_tensors) {
        size_t cap = d->cap_tensors ? 2 * d->cap_tensors : 64;
        tc_tensor *p = realloc(d->tensors, cap * sizeof *p);
        if (!p)
            return tc_err(err, "%s: out of memory", file);
        d->tensors = p;
        d->cap_tensors = cap;
    }
    tc_tensor *t = &d->tensors[d->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return tc_err(err, "%s: out of memory", file);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++)
        t->shape[i] = shape[i];
    t->n_elements = n;
    t->data = data;
    t->nbytes = nbytes;
    t->file = file;
    d->n_tensors++;
    if (2 * d->n_tensors > d->index_cap) {
        if (index_rebuild(d, d->index_cap ? 2 * d->index_cap : 128)) {
            free(t->name);
            d->n_tensors--;
            return tc_err(err, "%s: out of memory", file);
        }
    } else {
        index_insert(d->index, d->index_cap, t->name, d->n_tensors);
    }
    return TC_OK;
}

void tc_tensordir_mark_mapped(tc_tensordir *d)
{
    for (size_t i = 0; i < d->n_tensors; i++) {
        tc_tensor *t = &d->tensors[i];
        t->mapped = 0;
        for (size_t k = 0; k < d->n_maps && !t->mapped; k++) {
            const tc_mapfile *m = &d->maps[k];
            t->mapped = m->data && t->data >= m->data && t->data + t->nbytes <= m->data + m->size;
        }
    }
}

/* Drops the whole pages inside [p, p+n) from the process; a page shared with
 * bytes outside the span simply stays. */
static void drop_pages(const uint8_t *p, uint64_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n < (uint64_t)page)
        return;
    uintptr_t start = (uintptr_t)p, end = start + (uintptr_t)n;
    uintptr_t a = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), b = end & ~((uintptr_t)page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

int tc_tensor_to_f32(const tc_tensor *t, float *dst, tc_error *err)
{
    /* A mapped tensor converts in chunks of about 8 MB of file bytes, each
     * dropped once read, so no more than a chunk of it is ever resident. */
    uint64_t be = tc_dtype_block_elems(t->dtype), bb = tc_dtype_block_bytes(t->dtype);
    uint64_t chunk = t->mapped ? ((8u << 20) / bb) * be : t->n_elements;
    if (chunk == 0)
        chunk = be;
    for (uint64_t i = 0; i < t->n_elements; i += chunk) {
        uint64_t n = t->n_elements - i < chunk ? t->n_elements - i : chunk;
        const uint8_t *src = t->data + i / be * bb;
        if (tc_convert_to_f32(t->dtype, src, n, dst + i, err))
            return tc_err_prefix(err, "%s: tensor '%s'", t->file, t->name);
        if (t->mapped)
            drop_pages(src, n / be * bb);
    }
    return TC_OK;
}

int tc_tensor_load_f32(const tc_tensor *t, float **out, tc_error *err)
{
    uint64_t bytes;
    *out = NULL;
    if (tc_mul_u64(t->n_elements, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return tc_err(err, "%s: tensor '%s' is too large to convert", t->file, t->name);
    float *p = malloc(bytes ? (size_t)bytes : 1);
    if (!p)
        return tc_err(err, "%s: tensor '%s': out of memory for %llu bytes", t->file, t->name,
                      (unsigned long long)bytes);
    if (tc_tensor_to_f32(t, p, err)) {
        free(p);
        return TC_ERR;
    }
    *out = p;
    return TC_OK;
}

int tc_out_tensor_nbytes(const tc_out_tensor *t, uint64_t *nbytes, tc_error *err)
{
    uint64_t n = 0;
    if (shape_elements("output", t->name, t->n_dims, t->shape, &n, err))
        return TC_ERR;
    if (tc_dtype_span(t->dtype, n, nbytes, err))
        return tc_err_prefix(err, "output tensor '%s'", t->name);
    return TC_OK;
}

int tc_out_tensor_produce(const tc_out_tensor *t, void *dst, tc_error *err)
{
    uint64_t n;
    if (tc_out_tensor_nbytes(t, &n, err))
        return TC_ERR;
    if (t->data) {
        memcpy(dst, t->data, (size_t)n);
        return TC_OK;
    }
    if (!t->fill)
        return tc_err(err, "output tensor '%s' has neither data nor a fill function", t->name);
    return t->fill(t->ctx, t, dst, err);
}
