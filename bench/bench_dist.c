/* The analysis spread over MPI ranks: wall time and communication.
 *
 *   mpirun -np N bench_dist [--model PATH] [--windows W] [--seq L] [--threads T]
 *                           [--batch-tokens B] [--repeat R] [--json]
 *
 * Runs the cosine pass (no measured loss) and the measured importance
 * (every module skipped in turn) over W windows of L seeded random tokens,
 * each --repeat times (best kept, on a shared machine the least disturbed),
 * and prints on rank 0: the wall time of each, the ratio of measured to
 * cosine, the time per window and per layer, and what the ranks exchanged
 * (tc/dist.h's counters: the per-window records gathered onto every rank),
 * in total and per layer.  Started without mpirun (or built without MPI) it
 * is a job of one.  docs/SCALING.md extrapolates from these figures.
 *
 * Without --model it uses deep16 from the assets folder (TC_ASSETS, default
 * ../shared/assets). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc/analyze.h"
#include "tc/dist.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct timing {
    double seconds;
    double cpu_max, cpu_sum; /* CPU seconds of the busiest rank, of all ranks */
    uint64_t bytes_out, bytes_in, collectives;
    double ppl;
} timing;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const tc_model *m, const int32_t *tokens, const size_t *offsets, size_t W, tc_analyze_opts *o,
               tc_dist *d, int repeat, timing *best, tc_error *err)
{
    memset(best, 0, sizeof *best);
    for (int r = 0; r < repeat; r++) {
        uint64_t out0 = d->bytes_out, in0 = d->bytes_in, c0 = d->n_collectives;
        tc_analysis a;
        double t0 = now(), u0 = cpu_now();
        if (tc_analyze(m, tokens, offsets, W, o, &a, err))
            return TC_ERR;
        uint64_t c1 = d->n_collectives, out1 = d->bytes_out, in1 = d->bytes_in;
        /* The slowest rank's time is the job's.  On a machine with fewer
         * free cores than ranks the wall time says little; the CPU time of
         * the busiest rank is what the job would take with a core each. */
        double t = now() - t0, u = cpu_now() - u0;
        int ms = tc_dist_max_int(d, (int)(t * 1000.0 + 0.5));
        double *cpu = calloc((size_t)d->size, sizeof *cpu);
        if (!cpu)
            return tc_err(err, "out of memory");
        cpu[d->rank] = u;
        if (tc_dist_allgather(d, TC_OK, cpu, (size_t)d->size, sizeof *cpu, err)) {
            free(cpu);
            return TC_ERR;
        }
        double cmax = 0, csum = 0;
        for (int k = 0; k < d->size; k++) {
            cmax = cpu[k] > cmax ? cpu[k] : cmax;
            csum += cpu[k];
        }
        free(cpu);
        if (r == 0 || ms / 1000.0 < best->seconds) {
            best->seconds = ms / 1000.0;
            best->ppl = a.ppl;
        }
        if (r == 0 || cmax < best->cpu_max) {
            best->cpu_max = cmax;
            best->cpu_sum = csum;
        }
        best->bytes_out = out1 - out0;
        best->bytes_in = in1 - in0;
        best->collectives = c1 - c0;
        tc_analysis_free(&a);
    }
    return TC_OK;
}

int main(int argc, char **argv)
{
    tc_dist d;
    tc_error err = {{0}};
    if (tc_dist_init(&d, &argc, &argv, &err)) {
        fprintf(stderr, "bench_dist: %s\n", err.msg);
        return 1;
    }
    const char *model = NULL;
    size_t W = 16, L = 256, batch_tokens = 0;
    int threads = 1, repeat = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "bench_dist: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--windows"))
            W = (size_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seq"))
            L = (size_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--batch-tokens"))
            batch_tokens = (size_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--repeat"))
            repeat = atoi(v);
        else {
            fprintf(stderr, "bench_dist: unknown option %s\n", a);
            return 2;
        }
    }
    char path[4096];
    if (!model) {
        const char *assets = getenv("TC_ASSETS");
        snprintf(path, sizeof path, "%s/models/deep16-hf", assets && *assets ? assets : "../shared/assets");
        model = path;
    }
    if (W < 1 || L < 2 || threads < 1 || repeat < 1) {
        fprintf(stderr, "bench_dist: bad sizes\n");
        return 2;
    }
    tc_model m;
    int rc = tc_model_open(&m, model, &err);
    rc = tc_dist_agree(&d, rc, &err, NULL);
    if (rc) {
        if (d.rank == 0)
            fprintf(stderr, "bench_dist: %s\n", err.msg);
        tc_dist_finish(&d);
        return 1;
    }
    int32_t *tokens = malloc(W * L * sizeof *tokens);
    size_t *offsets = malloc((W + 1) * sizeof *offsets);
    if (!tokens || !offsets)
        return 1;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < W * L; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        tokens[i] = (int32_t)(s % (uint64_t)m.cfg.vocab_size);
    }
    for (size_t w = 0; w <= W; w++)
        offsets[w] = w * L;
    tc_analyze_opts o;
    memset(&o, 0, sizeof o);
    o.n_threads = threads;
    o.no_head_stats = 1;
    o.batch_tokens = batch_tokens;
    o.dist = &d;
    timing cos, meas;
    o.no_measure = 1;
    rc = run(&m, tokens, offsets, W, &o, &d, repeat, &cos, &err);
    o.no_measure = 0;
    if (rc == TC_OK)
        rc = run(&m, tokens, offsets, W, &o, &d, repeat, &meas, &err);
    rc = tc_dist_agree(&d, rc, &err, NULL);
    int layers = m.cfg.n_layers;
    if (rc == TC_OK && d.rank == 0) {
        double per_layer_bytes = (double)(meas.bytes_out + meas.bytes_in) / layers;
        if (json)
            printf("{\"model\": \"%s\", \"ranks\": %d, \"threads\": %d, \"windows\": %zu, \"seq\": %zu, "
                   "\"batch_tokens\": %zu, \"layers\": %d, \"cosine_s\": %.3f, \"measured_s\": %.3f, "
                   "\"ratio\": %.2f, \"measured_s_per_window_layer\": %.5f, \"cosine_cpu_max_s\": %.3f, "
                   "\"measured_cpu_max_s\": %.3f, \"measured_cpu_sum_s\": %.3f, \"bytes_out\": %llu, "
                   "\"bytes_in\": %llu, \"bytes_per_layer\": %.0f, \"collectives\": %llu, \"ppl\": %.6f}\n",
                   model, d.size, threads, W, L, batch_tokens, layers, cos.seconds, meas.seconds,
                   meas.seconds / cos.seconds, meas.seconds * d.size / ((double)W * layers), cos.cpu_max,
                   meas.cpu_max, meas.cpu_sum, (unsigned long long)meas.bytes_out, (unsigned long long)meas.bytes_in, per_layer_bytes,
                   (unsigned long long)meas.collectives, meas.ppl);
        else
            printf("%d rank%s x %d thread%s, %zu windows of %zu tokens, %d layers%s: cosine %.2f s (busiest rank "
                   "CPU %.2f s), measured %.2f s (%.1f x cosine; busiest rank CPU %.2f s, all ranks %.2f s); rank 0 "
                   "sent %llu B, received %llu B (%.0f B per layer) in %llu collectives; ppl %.4f\n",
                   d.size, d.size > 1 ? "s" : "", threads, threads > 1 ? "s" : "", W, L, layers,
                   batch_tokens ? ", grouped" : "", cos.seconds, cos.cpu_max, meas.seconds,
                   meas.seconds / cos.seconds, meas.cpu_max, meas.cpu_sum, (unsigned long long)meas.bytes_out,
                   (unsigned long long)meas.bytes_in, per_layer_bytes, (unsigned long long)meas.collectives,
                   meas.ppl);
    }
    if (rc && d.rank == 0)
        fprintf(stderr, "bench_dist: %s\n", err.msg);
    free(tokens);
    free(offsets);
    tc_model_close(&m);
    tc_dist_finish(&d);
    return rc ? 1 : 0;
}
