/* tc/dist.h: the one module that speaks MPI.  Built twice when -DTC_MPI=ON:
 * with TC_HAVE_MPI (the library the tools link) and without (a job of one,
 * which is also what every build without MPI gets). */
#include "tc/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TC_HAVE_MPI
#include <mpi.h>
#endif

int tc_dist_built_with_mpi(void)
{
#ifdef TC_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef TC_HAVE_MPI
/* Started by a launcher: Open MPI, PMIx and Hydra (MPICH) set these.  A plain
 * run of the tool stays a job of one without touching MPI. */
static int launched(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

static int mpi_fail(tc_error *err, const char *what, int code)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof s, "error %d", code);
    return tc_err(err, "MPI: %s failed: %s", what, s);
}
#endif

int tc_dist_init(tc_dist *d, int *argc, char ***argv, tc_error *err)
{
    memset(d, 0, sizeof *d);
    d->size = 1;
#ifdef TC_HAVE_MPI
    if (!launched())
        return TC_OK;
    int provided = 0, rc;
    /* Worker threads compute; only the main thread calls MPI. */
    if ((rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Init_thread", rc);
    d->mpi = 1;
    /* Errors come back as codes and become one sentence, instead of MPI's
     * default of aborting the job with a page of its own. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
#else
    (void)argc;
    (void)argv;
    (void)err;
#endif
    return TC_OK;
}

void tc_dist_finish(tc_dist *d)
{
#ifdef TC_HAVE_MPI
    if (d && d->mpi) {
        MPI_Finalize();
        d->mpi = 0;
    }
#else
    (void)d;
#endif
}

void tc_dist_range(const tc_dist *d, int rank, size_t n, size_t *begin, size_t *end)
{
    size_t size = d && d->size > 1 ? (size_t)d->size : 1, r = d && d->size > 1 ? (size_t)rank : 0;
    /* The first n % size ranks take one item more. */
    size_t q = n / size, rem = n % size;
    *begin = r * q + (r < rem ? r : rem);
    *end = *begin + q + (r < rem ? 1 : 0);
}

int tc_dist_owner(const tc_dist *d, double before, double w, double total)
{
    int size = d && d->size > 1 ? d->size : 1;
    if (size == 1 || !(total > 0))
        return 0;
    double mid = (before + 0.5 * w) / total * (double)size;
    int r = (int)mid;
    return r < 0 ? 0 : r >= size ? size - 1 : r;
}

int tc_dist_agree(tc_dist *d, int rc, tc_error *err, int *failed_rank)
{
    if (failed_rank)
        *failed_rank = rc ? (d ? d->rank : 0) : -1;
    if (!d || !d->mpi || d->size < 2)
        return rc ? TC_ERR : TC_OK;
#ifdef TC_HAVE_MPI
    int mine = rc ? d->rank : d->size, first = d->size, e;
    d->n_collectives++;
    if ((e = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allreduce", e);
    if (first == d->size)
        return TC_OK;
    char msg[TC_ERROR_MAX];
    memset(msg, 0, sizeof msg);
    if (d->rank == first)
        snprintf(msg, sizeof msg, "%s", err->msg[0] ? err->msg : "failed");
    if ((e = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Bcast", e);
    msg[sizeof msg - 1] = 0;
    if (failed_rank)
        *failed_rank = first;
    /* A failure agreed on before keeps the rank it named. */
    if (strncmp(msg, "rank ", 5) == 0)
        return tc_err(err, "%s", msg);
    return tc_err(err, "rank %d: %s", first, msg);
#else
    return TC_OK;
#endif
}

int tc_dist_allgather(tc_dist *d, int rc, void *buf, size_t n, size_t item_bytes, tc_error *err)
{
    if (tc_dist_agree(d, rc, err, NULL))
        return TC_ERR;
    if (!d || !d->mpi || d->size < 2 || n == 0 || item_bytes == 0)
        return TC_OK;
#ifdef TC_HAVE_MPI
    if (n > INT_MAX || item_bytes > INT_MAX)
        return tc_err(err, "MPI: %zu records of %zu bytes are too many to gather at once", n, item_bytes);
    int *counts = malloc(2 * (size_t)d->size * sizeof *counts);
    if (!counts)
        return tc_err(err, "out of memory for the gather's counts");
    int *displs = counts + d->size;
    for (int r = 0; r < d->size; r++) {
        size_t b, e;
        tc_dist_range(d, r, n, &b, &e);
        counts[r] = (int)(e - b);
        displs[r] = (int)b;
    }
    MPI_Datatype item;
    int e = MPI_Type_contiguous((int)item_bytes, MPI_BYTE, &item);
    if (e == MPI_SUCCESS)
        e = MPI_Type_commit(&item);
    if (e == MPI_SUCCESS) {
        e = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, item, MPI_COMM_WORLD);
        MPI_Type_free(&item);
    }
    uint64_t own = (uint64_t)counts[d->rank] * item_bytes;
    d->n_collectives++;
    d->bytes_out += own * (uint64_t)(d->size - 1);
    d->bytes_in += (uint64_t)n * item_bytes - own;
    free(counts);
    if (e != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Allgatherv", e);
    return TC_OK;
#else
    return TC_OK;
#endif
}

int tc_dist_sum_disjoint(tc_dist *d, int rc, double *buf, size_t n, tc_error *err)
{
    if (tc_dist_agree(d, rc, err, NULL))
        return TC_ERR;
#ifdef TC_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        /* In pieces that an int counts. */
        for (size_t at = 0; at < n;) {
            size_t k = n - at < (size_t)1 << 28 ? n - at : (size_t)1 << 28;
            int e = MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            if (e != MPI_SUCCESS)
                return mpi_fail(err, "MPI_Allreduce", e);
            d->n_collectives++;
            /* A ring allreduce sends and receives about twice the buffer. */
            d->bytes_out += 2 * (uint64_t)k * sizeof *buf * (uint64_t)(d->size - 1) / (uint64_t)d->size;
            d->bytes_in += 2 * (uint64_t)k * sizeof *buf * (uint64_t)(d->size - 1) / (uint64_t)d->size;
            at += k;
        }
    }
#endif
    for (size_t i = 0; i < n; i++)
        buf[i] += 0.0;
    return TC_OK;
}

#ifdef TC_HAVE_MPI
/* bytes at p to or from rank peer, in pieces that an int counts. */
static int move_bytes(tc_dist *d, int send, void *p, size_t bytes, int peer)
{
    unsigned char *b = p;
    for (size_t at = 0; at < bytes;) {
        size_t k = bytes - at < ((size_t)1 << 30) ? bytes - at : ((size_t)1 << 30);
        int e = send ? MPI_Send(b + at, (int)k, MPI_BYTE, peer, 1, MPI_COMM_WORLD)
                     : MPI_Recv(b + at, (int)k, MPI_BYTE, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (e != MPI_SUCCESS)
            return e;
        if (send)
            d->bytes_out += k;
        else
            d->bytes_in += k;
        at += k;
    }
    return MPI_SUCCESS;
}
#endif

int tc_dist_chain(tc_dist *d, int rc, void *buf, size_t bytes, tc_dist_fold_fn fold, void *ctx, tc_error *err)
{
    if (!d || !d->mpi || d->size < 2)
        return rc ? TC_ERR : fold(ctx, buf, err);
#ifdef TC_HAVE_MPI
    if (tc_dist_agree(d, rc, err, NULL))
        return TC_ERR;
    /* ok travels with buf: once a fold fails the rest only pass it on. */
    int ok = 1, e = MPI_SUCCESS;
    d->n_collectives++;
    if (d->rank > 0) {
        e = MPI_Recv(&ok, 1, MPI_INT, d->rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (e == MPI_SUCCESS && ok)
            e = move_bytes(d, 0, buf, bytes, d->rank - 1);
    }
    if (e == MPI_SUCCESS && ok && (rc = fold(ctx, buf, err)) != TC_OK)
        ok = 0;
    if (e == MPI_SUCCESS && d->rank < d->size - 1) {
        e = MPI_Send(&ok, 1, MPI_INT, d->rank + 1, 0, MPI_COMM_WORLD);
        if (e == MPI_SUCCESS && ok)
            e = move_bytes(d, 1, buf, bytes, d->rank + 1);
    }
    if (e == MPI_SUCCESS)
        e = MPI_Bcast(&ok, 1, MPI_INT, d->size - 1, MPI_COMM_WORLD);
    for (size_t at = 0; e == MPI_SUCCESS && ok && at < bytes;) {
        size_t k = bytes - at < ((size_t)1 << 30) ? bytes - at : ((size_t)1 << 30);
        e = MPI_Bcast((unsigned char *)buf + at, (int)k, MPI_BYTE, d->size - 1, MPI_COMM_WORLD);
        if (d->rank != d->size - 1)
            d->bytes_in += k;
        at += k;
    }
    if (e != MPI_SUCCESS)
        return mpi_fail(err, "the ordered fold", e);
    /* The failing rank's sentence, on every rank. */
    return tc_dist_agree(d, rc, err, NULL);
#else
    return TC_OK;
#endif
}

void tc_dist_abort(tc_dist *d, int code)
{
#ifdef TC_HAVE_MPI
    if (d && d->mpi && d->size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
    (void)code;
#endif
}

int tc_dist_max_int(tc_dist *d, int v)
{
#ifdef TC_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        int all = v;
        d->n_collectives++;
        if (MPI_Allreduce(&v, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) == MPI_SUCCESS)
            v = all;
        else if (!v)
            v = 1;
    }
#else
    (void)d;
#endif
    return v;
}
