/* Error records: the library never prints and never exits.
 *
 * A function that can fail returns int (TC_OK or TC_ERR) and, on failure,
 * leaves one human sentence in the caller-owned tc_error naming the file and
 * the problem.  Tools print that sentence and exit with a documented code. */
#ifndef TC_ERROR_H
#define TC_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TC_OK 0
#define TC_ERR (-1)

#define TC_ERROR_MAX 512

typedef struct tc_error {
    char msg[TC_ERROR_MAX];
} tc_error;

/* Formats the message into err (if err is non-NULL) and returns TC_ERR, so a
 * failing path reads `return tc_err(err, "%s: bad magic", path);`. */
int tc_err(tc_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefixes an existing message ("context: old message"); returns TC_ERR. */
int tc_err_prefix(tc_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void tc_err_clear(tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
