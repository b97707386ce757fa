/* Throughput of the ternary quantizers on layer-shaped weights, in GB/s of
 * fp32 input, beside a baseline measured in the same run: one plain pass
 * summing |w| over the same matrix (the memory-bound floor a quantizer that
 * reads its input twice can be compared with).
 *
 *   bench_quantize [--json] [--group N] [--skip-calibrated] [--reps N]
 *
 * absmean and optimal run single-threaded; calibrated spends most of its time
 * in OpenBLAS (factorising H, the lazy GEMM updates), whose thread count is
 * reported. Its time includes the factorisation but not building H. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc/ternary.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float gauss(void)
{
    double u, v;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u = (double)(rng >> 11) / 9007199254740992.0 + 1e-300;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    v = (double)(rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static volatile double sink;

static double baseline_pass(const float *w, size_t n)
{
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += fabsf(w[i + j]);
    double s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    return s;
}

typedef struct result {
    const char *method;
    int64_t M, K;
    double seconds, gbps, ratio;
    int threads;
    double rel_error;
} result;

int main(int argc, char **argv)
{
    int json = 0, skip_cal = 0, reps = 3;
    tc_tgroup g = {TC_TGROUP_ROW, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--skip-calibrated"))
            skip_cal = 1;
        else if (!strcmp(argv[i], "--group") && i + 1 < argc)
            g = (tc_tgroup){TC_TGROUP_COLS, atoi(argv[++i])};
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
        else {
            fprintf(stderr,
                    "usage: %s [--json] [--group N] [--skip-calibrated] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    static const int64_t shapes[][2] = {{2048, 2048}, {2048, 5632}};
    result res[8];
    int nres = 0;
    tc_error err;
    for (int si = 0; si < 2; si++) {
        int64_t M = shapes[si][0], K = shapes[si][1];
        size_t n = (size_t)(M * K);
        double gb = (double)n * 4 / 1e9;
        int64_t ns;
        if (tc_ternary_scale_count(&g, M, K, &ns, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        float *W = malloc(n * sizeof *W), *scales = malloc((size_t)ns * sizeof *scales);
        int8_t *codes = malloc(n);
        /* Touch the outputs first so no quantizer pays for page faults. */
        memset(codes, 0, n);
        memset(scales, 0, (size_t)ns * sizeof *scales);
        for (size_t i = 0; i < n; i++)
            W[i] = 0.02f * gauss();

        double best = INFINITY;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            sink = baseline_pass(W, n);
            best = fmin(best, now() - t0);
        }
        double base_gbps = gb / best;
        res[nres++] = (result){"baseline-read", M, K, best, base_gbps, 1.0, 1, 0};

        typedef int (*qfn)(const float *, int64_t, int64_t, const tc_tgroup *, int8_t *, float *,
                           tc_error *);
        const struct {
            const char *name;
            qfn fn;
        } plain[] = {{"absmean", tc_ternary_absmean}, {"optimal", tc_ternary_optimal}};
        for (int q = 0; q < 2; q++) {
            best = INFINITY;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                if (plain[q].fn(W, M, K, &g, codes, scales, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                best = fmin(best, now() - t0);
            }
            tc_ternary_report rep;
            tc_ternary_report_make(W, codes, scales, M, K, &g, &rep);
            res[nres++] = (result){plain[q].name, M, K, best, gb / best,
                                   gb / best / base_gbps, 1, rep.rel_weight_error};
        }
        if (!skip_cal) {
            /* Correlated inputs: an AR(1) chain along the features. */
            int64_t N = 512;
            float *X = malloc((size_t)(N * K) * sizeof *X);
            double *H = calloc((size_t)(K * K), sizeof *H);
            for (int64_t r = 0; r < N; r++) {
                float prev = 0;
                for (int64_t k = 0; k < K; k++)
                    X[r * K + k] = prev = 0.9f * prev + 0.45f * gauss();
            }
            if (!H || tc_ternary_hessian_add(X, N, K, H, &err)) {
                fprintf(stderr, "%s\n", H ? err.msg : "out of memory");
                return 1;
            }
            double t0 = now();
            if (tc_ternary_calibrated(W, M, K, &g, H, NULL, codes, scales, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double t = now() - t0;
            tc_ternary_report rep;
            tc_ternary_report_make(W, codes, scales, M, K, &g, &rep);
            res[nres++] = (result){"calibrated", M, K, t, gb / t, gb / t / base_gbps,
                                   openblas_get_num_threads(), rep.rel_weight_error};
            free(X);
            free(H);
        }
        free(W);
        free(scales);
        free(codes);
    }

    char grouping[32];
    if (g.kind == TC_TGROUP_COLS)
        snprintf(grouping, sizeof grouping, "cols%d", (int)g.cols);
    else
        snprintf(grouping, sizeof grouping, "row");
    if (json) {
        printf("[\n");
        for (int i = 0; i < nres; i++)
            printf("  {\"bench\": \"quantize\", \"method\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
                   "\"grouping\": \"%s\", \"threads\": %d, \"seconds\": %.6f, "
                   "\"throughput\": %.4f, \"unit\": \"GB/s of fp32 input\", "
                   "\"ratio_to_baseline\": %.4f, \"rel_weight_error\": %.6f}%s\n",
                   res[i].method, (long long)res[i].M, (long long)res[i].K, grouping,
                   res[i].threads, res[i].seconds, res[i].gbps, res[i].ratio, res[i].rel_error,
                   i + 1 < nres ? "," : "");
        printf("]\n");
    } else {
        printf("ternary quantization, grouping %s, best of %d (calibrated: 1 run)\n", grouping,
               reps);
        printf("%-14s %11s %7s %10s %14s %9s %10s\n", "method", "shape", "threads", "seconds",
               "GB/s fp32 in", "x base", "rel err W");
        for (int i = 0; i < nres; i++) {
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)res[i].M, (long long)res[i].K);
            printf("%-14s %11s %7d %10.4f %14.3f %9.3f %10.4f\n", res[i].method, shape,
                   res[i].threads, res[i].seconds, res[i].gbps, res[i].ratio, res[i].rel_error);
        }
    }
    return 0;
}
