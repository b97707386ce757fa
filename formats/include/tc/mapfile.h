/* A read-only memory mapping of a whole file: weights are never read() into
 * memory, so opening a 7B checkpoint costs address space, not RAM. */
#ifndef TC_MAPFILE_H
#define TC_MAPFILE_H

#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_mapfile {
    char *path;          /* owned copy, for messages */
    const uint8_t *data; /* NULL for an empty file */
    uint64_t size;
} tc_mapfile;

/* Maps path read-only; a directory, a missing file or an unreadable one is an error. */
int tc_mapfile_open(tc_mapfile *m, const char *path, tc_error *err);
void tc_mapfile_close(tc_mapfile *m);

/* Reads a whole small text file (config.json, an index) into a NUL-terminated
 * heap buffer; refuses files larger than max_bytes. */
int tc_read_small_file(const char *path, uint64_t max_bytes, char **out, uint64_t *len, tc_error *err);

/* Whether path is a regular file (after links). */
int tc_file_is_regular(const char *path);

/* Whether path is a file whose first n bytes are magic (a GGUF's "GGUF",
 * a packed model's "TCTMODEL"); 0 when it cannot be read. */
int tc_file_has_magic(const char *path, const void *magic, size_t n);

#ifdef __cplusplus
}
#endif

#endif
