/* Overflow-checked size arithmetic: every product that sizes an allocation or
 * a file span goes through these. Each returns 0 on success, 1 on overflow. */
#ifndef TC_CHECKED_H
#define TC_CHECKED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline int tc_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline int tc_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

#ifdef __cplusplus
}
#endif

#endif
