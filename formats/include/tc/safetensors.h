/* safetensors: 8-byte little-endian header length, a JSON header (through
 * cJSON) mapping names to dtype/shape/data_offsets plus an optional
 * "__metadata__" string map, then the data section. */
#ifndef TC_SAFETENSORS_H
#define TC_SAFETENSORS_H

#include <stddef.h>

#include "tc/error.h"
#include "tc/tensordir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_kv_str {
    char *key;
    char *value;
} tc_kv_str;

typedef struct tc_safetensors {
    char *path;
    tc_kv_str *metadata; /* "__metadata__", in file order */
    size_t n_metadata;
} tc_safetensors;

/* Opens path, maps it, checks every header field and adds its tensors to dir
 * (which takes ownership of the mapping).  Several files may be added to one
 * directory (shards); a name already present is a "duplicate" error.  info
 * may be NULL; when given it receives the metadata (free with
 * tc_safetensors_free). */
int tc_safetensors_add(tc_tensordir *dir, const char *path, tc_safetensors *info, tc_error *err);
void tc_safetensors_free(tc_safetensors *info);

/* Writes a safetensors file atomically: header padded with spaces to a
 * multiple of 8, tensors in the given order, metadata (may be NULL/0). */
int tc_safetensors_write(const char *path, const tc_out_tensor *tensors, size_t n_tensors,
                         const tc_kv_str *metadata, size_t n_metadata, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
