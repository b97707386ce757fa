/* The tensor directory: what every format reader yields.
 *
 * A directory lists tensors by name, each with dtype, shape and the span of
 * bytes that holds it inside a mapped file (or a heap buffer for synthetic
 * models).  It knows nothing of models: the model view maps names to roles.
 *
 * Shapes are outermost first, as safetensors and PyTorch write them: a linear
 * weight is [out_features][in_features].  (GGUF stores ne[] innermost first;
 * its reader reverses them.) */
#ifndef TC_TENSORDIR_H
#define TC_TENSORDIR_H

#include <stdint.h>
#include <stddef.h>

#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/mapfile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TC_MAX_DIMS 4

typedef struct tc_tensor {
    char *name;                    /* owned by the directory */
    tc_dtype dtype;
    int n_dims;
    int64_t shape[TC_MAX_DIMS];    /* outermost first */
    uint64_t n_elements;
    const uint8_t *data;           /* inside a mapping or buffer the directory owns */
    uint64_t nbytes;
    const char *file;              /* path of the holding file, for messages */
    int mapped;                    /* data lies in a file mapping (tc_tensordir_mark_mapped) */
} tc_tensor;

typedef struct tc_tensordir {
    tc_tensor *tensors;
    size_t n_tensors, cap_tensors;
    tc_mapfile *maps;              /* owned mappings, closed by tc_tensordir_free */
    size_t n_maps;
    void **buffers;                /* owned heap buffers (synthetic models) */
    size_t n_buffers;
    size_t *index;                 /* open-addressing hash of names: tensor index + 1, 0 empty */
    size_t index_cap;              /* a power of two, at least twice n_tensors */
} tc_tensordir;

void tc_tensordir_init(tc_tensordir *d);
void tc_tensordir_free(tc_tensordir *d);

/* Takes ownership of an open mapping; returns the stable index of its copy
 * (use d->maps[i] after all maps are added: the array may move). */
int tc_tensordir_adopt_map(tc_tensordir *d, tc_mapfile *m, size_t *index, tc_error *err);
/* Takes ownership of a malloc'd buffer. */
int tc_tensordir_adopt_buffer(tc_tensordir *d, void *buf, tc_error *err);

/* Adds a tensor after checking: name unique and non-empty, 1..4 dims, every
 * dim >= 0, element count and byte span without overflow, nbytes equal to
 * shape x dtype.  The caller has checked that data..data+nbytes lies inside
 * the file.  The name is copied. */
int tc_tensordir_add(tc_tensordir *d, const char *name, tc_dtype dtype, int n_dims,
                     const int64_t *shape, const uint8_t *data, uint64_t nbytes,
                     const char *file, tc_error *err);

/* Lookup by name in constant expected time (files may hold 10^5 tensors). */
const tc_tensor *tc_tensordir_find(const tc_tensordir *d, const char *name);

/* Removes the tensors added after the first n (a reader undoing a failed file). */
void tc_tensordir_truncate(tc_tensordir *d, size_t n);

/* Marks the tensors whose bytes lie in one of the directory's file mappings,
 * so that converting them can hand their pages back (below). */
void tc_tensordir_mark_mapped(tc_tensordir *d);

/* Converts a tensor to fp32 into dst, which holds n_elements floats.  A
 * mapped tensor's file pages are dropped from the process afterwards
 * (madvise): converting a model layer by layer then keeps resident memory at
 * one layer, not the whole file, and a later read simply faults them in
 * again from the page cache. */
int tc_tensor_to_f32(const tc_tensor *t, float *dst, tc_error *err);
/* Same, into a new malloc'd array. */
int tc_tensor_load_f32(const tc_tensor *t, float **out, tc_error *err);

/* Checks that [off, off+len) lies within a file of file_size bytes. */
int tc_span_check(uint64_t off, uint64_t len, uint64_t file_size, const char *file,
                  const char *what, tc_error *err);

/* ---- Writing ---------------------------------------------------------------
 * Writers take a list of output tensors.  Each either points at its bytes
 * (data) or fills them on demand (fill), so a writer holds one tensor at a
 * time and a 7B checkpoint can be written without holding the model. */
typedef struct tc_out_tensor tc_out_tensor;
typedef int (*tc_fill_fn)(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err);

struct tc_out_tensor {
    const char *name;
    tc_dtype dtype;
    int n_dims;
    int64_t shape[TC_MAX_DIMS]; /* outermost first */
    const void *data;           /* exactly the stored bytes, or NULL to use fill */
    tc_fill_fn fill;            /* writes tc_out_tensor_nbytes() bytes into dst */
    void *ctx;
};

/* Byte size of an output tensor (checked). */
int tc_out_tensor_nbytes(const tc_out_tensor *t, uint64_t *nbytes, tc_error *err);
/* Produces its bytes into dst (copy or fill). */
int tc_out_tensor_produce(const tc_out_tensor *t, void *dst, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
