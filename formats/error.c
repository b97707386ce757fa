#include "tc/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int tc_err(tc_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return TC_ERR;
}

int tc_err_prefix(tc_error *err, const char *fmt, ...)
{
    if (!err)
        return TC_ERR;
    char old[TC_ERROR_MAX];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", old);
    return TC_ERR;
}

void tc_err_clear(tc_error *err)
{
    if (err)
        err->msg[0] = '\0';
}
