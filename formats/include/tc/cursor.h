/* The one bounds-checked reader every parser uses on file bytes.
 *
 * A cursor walks a byte span [base, base+size).  Every read checks the bytes
 * remain and fails (returning TC_ERR with a message naming the file, the field
 * and the offset) instead of reading past the end.  No parser does pointer
 * arithmetic on file data itself. */
#ifndef TC_CURSOR_H
#define TC_CURSOR_H

#include <stdint.h>
#include <stddef.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *name; /* file name for messages */
} tc_cursor;

void tc_cursor_init(tc_cursor *c, const void *base, uint64_t size, const char *name);

uint64_t tc_cursor_left(const tc_cursor *c);

/* Each reader names the field it reads, for the error message. */
int tc_cursor_u8(tc_cursor *c, uint8_t *v, const char *what, tc_error *err);
int tc_cursor_u16(tc_cursor *c, uint16_t *v, const char *what, tc_error *err);
int tc_cursor_u32(tc_cursor *c, uint32_t *v, const char *what, tc_error *err);
int tc_cursor_i32(tc_cursor *c, int32_t *v, const char *what, tc_error *err);
int tc_cursor_u64(tc_cursor *c, uint64_t *v, const char *what, tc_error *err);
int tc_cursor_f32(tc_cursor *c, float *v, const char *what, tc_error *err);
int tc_cursor_f64(tc_cursor *c, double *v, const char *what, tc_error *err);

/* Points *p at the next n bytes (no copy) and advances. */
int tc_cursor_bytes(tc_cursor *c, uint64_t n, const uint8_t **p, const char *what, tc_error *err);
int tc_cursor_skip(tc_cursor *c, uint64_t n, const char *what, tc_error *err);
/* Advances to the next multiple of align (a power of two or any positive value). */
int tc_cursor_align(tc_cursor *c, uint64_t align, const char *what, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
