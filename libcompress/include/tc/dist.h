/* Spreading calibration and evaluation windows over the processes of an MPI
 * job (tc built with -DTC_MPI=ON and started by mpirun), so that every result
 * is the one a single process computes, bit for bit.
 *
 * The rule that makes it exact: work is split by window, each window's
 * statistics are computed alone into a record of its own, the records are
 * gathered onto every rank, and the totals are summed over windows in window
 * order.  A single process does the same, so the order of every floating-point
 * addition is fixed by the window indices, never by the number of ranks.
 *
 * This module is the only one that calls MPI; without MPI (or without mpirun)
 * it is a job of one process and every call is a no-op.  Callers pass a
 * tc_dist (or NULL for one process) through their options. */
#ifndef TC_DIST_H
#define TC_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_dist {
    int rank, size;
    int mpi;              /* MPI was initialised by tc_dist_init */
    /* What this rank moved through the collectives (for benchmarks). */
    uint64_t bytes_out, bytes_in;
    uint64_t n_collectives;
} tc_dist;

/* Whether this build can run under mpirun (-DTC_MPI=ON). */
int tc_dist_built_with_mpi(void);

/* Joins the MPI job when built with MPI and started by mpirun (or another
 * MPI launcher); otherwise d is rank 0 of 1.  Call once, first thing. */
int tc_dist_init(tc_dist *d, int *argc, char ***argv, tc_error *err);
/* Leaves the job (MPI_Finalize); safe on a job of one. */
void tc_dist_finish(tc_dist *d);

/* The contiguous, balanced share [*begin, *end) of n items that rank owns. */
void tc_dist_range(const tc_dist *d, int rank, size_t n, size_t *begin, size_t *end);

/* The rank that owns an item of weight w whose predecessors weigh `before`,
 * out of `total`: items in order go to ranks in order, each rank taking about
 * total / size of the weight (the rank under the item's midpoint). */
int tc_dist_owner(const tc_dist *d, double before, double w, double total);

/* Agreement after a step that may fail on some ranks: rc is this rank's
 * result (TC_OK or TC_ERR, err filled on failure).  Returns TC_ERR on every
 * rank when any rank failed; err then holds the lowest failing rank's
 * sentence, prefixed with "rank R: " in a job of more than one.  *failed_rank
 * (may be NULL) receives that rank, or -1. */
int tc_dist_agree(tc_dist *d, int rc, tc_error *err, int *failed_rank);

/* buf holds n items of item_bytes; each rank has filled the items of its
 * tc_dist_range.  Afterwards every rank holds every item.  rc is this rank's
 * result so far: the exchange happens only when every rank succeeded
 * (tc_dist_agree's rule), so a failure on one rank never blocks the others. */
int tc_dist_allgather(tc_dist *d, int rc, void *buf, size_t n, size_t item_bytes, tc_error *err);

/* buf holds n doubles, each of which at most one rank has set (the others
 * hold 0): afterwards every rank holds them all.  Adding zeros is exact, so
 * the result does not depend on the order of the reduction; every element
 * is x + 0.0 (a -0.0 becomes +0.0), on one rank as on many.  rc as for
 * tc_dist_allgather. */
int tc_dist_sum_disjoint(tc_dist *d, int rc, double *buf, size_t n, tc_error *err);

/* An ordered fold over the ranks: rank 0 applies fold to buf (bytes, which
 * the caller has zeroed), passes buf to rank 1, which applies its fold, and so
 * on; the last rank's buf then reaches every rank.  Each rank folds its items
 * in order, so the additions happen in item order whatever the number of
 * ranks — for sums too large to gather per item (a K x K matrix per window).
 * rc as for tc_dist_allgather; a fold that fails fails every rank. */
typedef int (*tc_dist_fold_fn)(void *ctx, void *buf, tc_error *err);
int tc_dist_chain(tc_dist *d, int rc, void *buf, size_t bytes, tc_dist_fold_fn fold, void *ctx, tc_error *err);

/* Ends the whole job now (MPI_Abort with code), for a failure that leaves the
 * other ranks waiting in a step this rank will not reach; a no-op in a job
 * of one. */
void tc_dist_abort(tc_dist *d, int code);

/* The largest of every rank's v (an exit status), on every rank. */
int tc_dist_max_int(tc_dist *d, int v);

#ifdef __cplusplus
}
#endif

#endif
