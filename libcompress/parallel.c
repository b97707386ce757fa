#include "tc/parallel.h"

#include <pthread.h>

#define MAX_THREADS 256

typedef struct range_job {
    tc_range_fn fn;
    void *ctx;
    size_t begin, end;
} range_job;

static void *run_range(void *arg)
{
    range_job *j = arg;
    j->fn(j->ctx, j->begin, j->end);
    return NULL;
}

void tc_parallel_for(int n_threads, size_t n, size_t min_items, tc_range_fn fn, void *ctx)
{
    if (n == 0)
        return;
    size_t parts = n_threads > 1 ? (size_t)n_threads : 1;
    if (min_items < 1)
        min_items = 1;
    if (parts > n / min_items)
        parts = n / min_items ? n / min_items : 1;
    if (parts > MAX_THREADS)
        parts = MAX_THREADS;
    if (parts == 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    for (size_t i = 0; i < parts; i++) {
        jobs[i].fn = fn;
        jobs[i].ctx = ctx;
        jobs[i].begin = n * i / parts;
        jobs[i].end = n * (i + 1) / parts;
    }
    for (size_t i = 1; i < parts; i++)
        started[i] = pthread_create(&tid[i], NULL, run_range, &jobs[i]) == 0;
    run_range(&jobs[0]);
    for (size_t i = 1; i < parts; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            run_range(&jobs[i]);
    }
}
