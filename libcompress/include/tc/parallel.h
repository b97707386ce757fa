/* A parallel loop over independent items.  Each thread gets one contiguous
 * range; the caller's function must write only what belongs to its items, so
 * the result is the same for every thread count.  Reductions belong to the
 * caller: store per-item values and add them up in order afterwards. */
#ifndef TC_PARALLEL_H
#define TC_PARALLEL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*tc_range_fn)(void *ctx, size_t begin, size_t end);

/* Runs fn over [0, n) split into up to n_threads ranges of at least
 * min_items items (fewer threads when n is small; a thread that cannot be
 * started leaves its range to the calling thread). */
void tc_parallel_for(int n_threads, size_t n, size_t min_items, tc_range_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
