/* GGUF v2/v3: reading (every metadata value type, nested arrays, tensor
 * infos, general.alignment) and writing files stock llama.cpp loads. */
#ifndef TC_GGUF_H
#define TC_GGUF_H

#include <stdint.h>
#include <stddef.h>

#include "tc/error.h"
#include "tc/tensordir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tc_gguf_type {
    TC_GGUF_U8 = 0,
    TC_GGUF_I8 = 1,
    TC_GGUF_U16 = 2,
    TC_GGUF_I16 = 3,
    TC_GGUF_U32 = 4,
    TC_GGUF_I32 = 5,
    TC_GGUF_F32 = 6,
    TC_GGUF_BOOL = 7,
    TC_GGUF_STRING = 8,
    TC_GGUF_ARRAY = 9,
    TC_GGUF_U64 = 10,
    TC_GGUF_I64 = 11,
    TC_GGUF_F64 = 12,
} tc_gguf_type;

/* A string inside the file (not NUL-terminated). */
typedef struct tc_gguf_str {
    const char *ptr;
    uint64_t len;
} tc_gguf_str;

typedef struct tc_gguf_value tc_gguf_value;
struct tc_gguf_value {
    tc_gguf_type type;
    union {
        uint64_t u;     /* U8, U16, U32, U64, BOOL */
        int64_t i;      /* I8, I16, I32, I64 */
        double f;       /* F32, F64 */
        tc_gguf_str s;  /* STRING */
        struct {
            tc_gguf_type type; /* element type */
            uint64_t n;
            tc_gguf_value *items; /* n decoded elements (owned by the file) */
        } arr;
    } v;
};

/* Limits the reader puts on metadata: nesting of arrays inside arrays, and
 * decoded array elements in all (each takes a tc_gguf_value, 32 bytes, in
 * memory, so this bounds what one file can make the reader allocate; real
 * vocabularies hold well under a million). */
#define TC_GGUF_MAX_DEPTH 8
#define TC_GGUF_MAX_ITEMS ((uint64_t)1 << 24)

typedef struct tc_gguf_kv {
    tc_gguf_str key;
    tc_gguf_value value;
} tc_gguf_kv;

typedef struct tc_gguf {
    char *path;
    uint32_t version;
    uint64_t alignment;
    tc_gguf_kv *kvs;
    uint64_t n_kv;
    uint64_t data_offset; /* start of the tensor data section (the end of the
                             header in a file without tensors) */
    tc_tensordir dir;     /* tensors, shapes outermost first, mapping owned here */
    void *priv;           /* reader's allocations */
} tc_gguf;

/* Opens and checks a file.  Besides the layout itself the reader refuses:
 * duplicate keys or tensor names, empty keys or names, names holding a NUL
 * byte, arrays nested deeper than TC_GGUF_MAX_DEPTH, more than
 * TC_GGUF_MAX_ITEMS array elements in all, BOOL bytes other than 0/1, a
 * general.alignment that is not a non-zero power-of-two u32, tensor offsets
 * not aligned to it, spans beyond the file or overlapping each other, rows
 * that are not whole blocks, and ggml types without a tc dtype. */
int tc_gguf_open(tc_gguf *g, const char *path, tc_error *err);
/* A GGUF image held in memory that has metadata and no tensors (a
 * vocabulary, as a container file embeds one), checked as tc_gguf_open
 * checks a file; an image with tensors is refused.  Strings point into data,
 * which must outlive g; name is used in messages. */
int tc_gguf_open_mem(tc_gguf *g, const char *name, const uint8_t *data, uint64_t size, tc_error *err);
void tc_gguf_close(tc_gguf *g);

/* Lookup by key; NULL when absent. */
const tc_gguf_value *tc_gguf_find(const tc_gguf *g, const char *key);
/* Typed getters: TC_ERR (message names the key and file) when absent or of
 * an incompatible type.  Integer getters accept any integer type whose value
 * fits; the float getter accepts F32/F64 and integers. */
int tc_gguf_get_u32(const tc_gguf *g, const char *key, uint32_t *out, tc_error *err);
int tc_gguf_get_u64(const tc_gguf *g, const char *key, uint64_t *out, tc_error *err);
int tc_gguf_get_f32(const tc_gguf *g, const char *key, float *out, tc_error *err);
int tc_gguf_get_bool(const tc_gguf *g, const char *key, int *out, tc_error *err);
/* Copies a string value into a new malloc'd NUL-terminated buffer. */
int tc_gguf_get_str(const tc_gguf *g, const char *key, char **out, tc_error *err);

/* "u8", "string", "array", ... ("?" when unknown). */
const char *tc_gguf_type_name(tc_gguf_type t);

/* ggml tensor type ids and tc dtypes: F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6,
 * Q5_1 7, Q8_0 8, Q2_K 10, Q3_K 11, Q4_K 12, Q5_K 13, Q6_K 14, IQ4_NL 20,
 * IQ4_XS 23, I8 24, I16 25, I32 26, I64 27, F64 28, BF16 30, TQ1_0 34,
 * TQ2_0 35, and bitnet.cpp's I2_S 36 (its own ggml; stock ggml has no type 36).
 * Each returns TC_ERR when there is no counterpart (the types
 * ggml has and tc does not read are refused by name). */
int tc_gguf_dtype_from_ggml(uint32_t ggml_type, tc_dtype *out);
int tc_gguf_ggml_from_dtype(tc_dtype t, uint32_t *out);
/* ggml's name for a type id ("Q4_K"), for messages; "?" when unknown. */
const char *tc_gguf_ggml_type_name(uint32_t ggml_type);

/* ---- Writing ---------------------------------------------------------------
 * Metadata to write: the caller builds values (strings by pointer+length,
 * arrays by items) and the writer serialises them in order. */
typedef struct tc_gguf_writer_kv {
    const char *key;
    tc_gguf_value value;
} tc_gguf_writer_kv;

/* Writes a GGUF v3 file atomically (temporary beside path, then rename).
 * Tensor dtypes: every one with a ggml id above; shapes outermost first (the writer stores
 * ne[] innermost first); names shorter than 64 bytes, as ggml requires.
 * alignment 0 means 32; when it is not 32 the writer adds general.alignment
 * itself (a general.alignment among kvs must be a u32 equal to it).  Every
 * tensor's data starts at a multiple of the alignment and is padded with
 * zeros to the next one; tensors are produced one at a time.  (Stock ggml
 * reads every value type but arrays of arrays, which it refuses.) */
int tc_gguf_write(const char *path, const tc_gguf_writer_kv *kvs, size_t n_kv,
                  const tc_out_tensor *tensors, size_t n_tensors, uint32_t alignment,
                  tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
