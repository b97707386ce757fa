/* Ternary kernels: matrix-vector speed per layout, kernel path and thread
 * count at LLM layer shapes, beside baselines measured in the same run:
 * OpenBLAS sgemv on fp32 weights, a plain int8 dot-product kernel on int8
 * weights, and this machine's DRAM read bandwidth (a streaming sum). Every
 * timed product rotates through enough copies of its weights (>= 256 MiB)
 * that no cache holds them: the figures are from DRAM (best of at least 3
 * rounds over all copies). Then decode
 * tokens/s of a synthetic 2B-shaped ternary model (dim 2560, 30 layers,
 * ffn 6912, 20 heads, 5 kv heads) built in memory from random codes.
 *
 *   bench_kernels [--json] [--quick] [--decode-only] [--paths LIST] [--vocab V] [--decode-tokens N]
 *
 * GB/s counts the bytes of packed weights (or fp32 / int8 weights for the
 * baselines) read per second; "of DRAM" divides by the streaming read
 * bandwidth measured with the same thread count. The machine's load average
 * at the start is printed, and per row "cpu" is the process's CPU time over
 * wall time x threads: on a shared machine below 100 % means the figures
 * include time spent waiting for a core. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tc/kernels.h"
#include "tc/synth.h"
#include "tc/trun.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ROTATE_BYTES (256ull << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process: with wall time, how much of the run we
 * were actually on a core (the machine is shared). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double last_cpu_share; /* of the last timed loop: cpu / (wall x threads) */

static void timing_start(double *w, double *c)
{
    *w = now();
    *c = cpu_now();
}

static void timing_end(double w, double c, int threads)
{
    double dw = now() - w, dc = cpu_now() - c;
    last_cpu_share = dc / (dw * threads);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static volatile int64_t sink;

/* ---- DRAM read bandwidth ------------------------------------------------- */

typedef struct stream_job {
    const uint64_t *buf;
    size_t n; /* uint64 words */
    int64_t sums[64];
} stream_job;

/* A sum of every word, 8 independent accumulators; the second variant also
 * prefetches 4 KiB ahead, which on some machines streams faster than the
 * hardware prefetcher alone (it stops at page boundaries). The machine's
 * read bandwidth is taken as the faster of the two, so that no kernel
 * that prefetches looks better than the machine allows. */
static void stream_part_pf(void *arg, int w, int nw, int prefetch)
{
    stream_job *j = arg;
    size_t a = j->n * (size_t)w / (size_t)nw, b = j->n * (size_t)(w + 1) / (size_t)nw;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t i = a; i + 8 <= b; i += 8) {
        if (prefetch)
            __builtin_prefetch(j->buf + i + 512);
        s0 += j->buf[i], s1 += j->buf[i + 1], s2 += j->buf[i + 2], s3 += j->buf[i + 3];
        s4 += j->buf[i + 4], s5 += j->buf[i + 5], s6 += j->buf[i + 6], s7 += j->buf[i + 7];
    }
    j->sums[w] = (int64_t)(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
}

static void stream_part(void *arg, int w, int nw)
{
    stream_part_pf(arg, w, nw, 0);
}

static void stream_part_prefetch(void *arg, int w, int nw)
{
    stream_part_pf(arg, w, nw, 1);
}

/* Best of 8 passes over 512 MiB, half of them prefetching. */
static double dram_gbps(tc_kpool *pool)
{
    size_t bytes = 512ull << 20;
    uint64_t *buf = malloc(bytes);
    if (!buf)
        return NAN;
    for (size_t i = 0; i < bytes / 8; i++)
        buf[i] = i * 0x9e3779b97f4a7c15ull;
    stream_job j = {buf, bytes / 8, {0}};
    double best = 1e30;
    for (int rep = 0; rep < 8; rep++) {
        double t = now();
        tc_kpool_run(pool, rep % 2 ? stream_part_prefetch : stream_part, &j);
        t = now() - t;
        best = t < best ? t : best;
        sink += j.sums[0];
    }
    free(buf);
    return (double)bytes / best / 1e9;
}

/* ---- timing products on rotating copies ---------------------------------- */

typedef struct case_job {
    const tc_kernels *k;
    tc_kwork *w;
    const tc_tpack_plan *plan;
    uint8_t **copies;
    int n_copies;
    const int8_t *x;
    float act;
    float *y;
    tc_kpool *pool;
} case_job;

/* Seconds per product. A round is one product on every copy; rounds run
 * until >= 0.25 s and >= 3 rounds, and the best round counts (the DRAM
 * figure is a best of passes too, so both see the machine at its least
 * disturbed). */
static double time_rounds(void (*one)(void *ctx, int copy), void *ctx, int n_copies, int threads)
{
    double t0, c0, best = 1e30, total = 0;
    timing_start(&t0, &c0);
    for (int round = 0; round < 3 || total < 0.25; round++) {
        double r = now();
        for (int i = 0; i < n_copies; i++)
            one(ctx, i);
        r = now() - r;
        total += r;
        best = r < best ? r : best;
    }
    timing_end(t0, c0, threads);
    return best / n_copies;
}

static void one_ternary(void *ctx, int copy)
{
    case_job *c = ctx;
    tc_error err;
    if (tc_kern_matmul(c->k, c->pool, c->w, c->plan, c->copies[copy], c->plan->total_bytes, c->x,
                       &c->act, 1, c->y, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        exit(1);
    }
}

static double time_ternary(case_job *c)
{
    return time_rounds(one_ternary, c, c->n_copies, tc_kpool_threads(c->pool));
}

typedef struct i8_job {
    const int8_t *w;
    const int8_t *x;
    int32_t *y;
    int64_t M, K;
} i8_job;

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) static int32_t dot_i8_avx512(const int8_t *a,
                                                                         const int8_t *b,
                                                                         int64_t K)
{
    __m512i acc = _mm512_setzero_si512();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i va = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(a + k)));
        __m512i vb = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(b + k)));
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(va, vb));
    }
    int32_t s = _mm512_reduce_add_epi32(acc);
    for (; k < K; k++)
        s += a[k] * b[k];
    return s;
}
#endif

static int32_t dot_i8_scalar(const int8_t *a, const int8_t *b, int64_t K)
{
    int32_t s = 0;
    for (int64_t k = 0; k < K; k++)
        s += a[k] * b[k];
    return s;
}

static int use_avx512_dot;

static void i8_part(void *arg, int w, int nw)
{
    i8_job *j = arg;
    int64_t a = j->M * w / nw, b = j->M * (w + 1) / nw;
    for (int64_t m = a; m < b; m++) {
#if defined(__x86_64__)
        if (use_avx512_dot) {
            j->y[m] = dot_i8_avx512(j->w + m * j->K, j->x, j->K);
            continue;
        }
#endif
        j->y[m] = dot_i8_scalar(j->w + m * j->K, j->x, j->K);
    }
}

typedef struct i8_case {
    int8_t **copies;
    int64_t M, K;
    const int8_t *x;
    int32_t *y;
    tc_kpool *pool;
} i8_case;

static void one_i8(void *ctx, int copy)
{
    i8_case *c = ctx;
    i8_job j = {c->copies[copy], c->x, c->y, c->M, c->K};
    tc_kpool_run(c->pool, i8_part, &j);
}

static double time_i8(int8_t **copies, int n_copies, int64_t M, int64_t K, const int8_t *x,
                      int32_t *y, tc_kpool *pool)
{
    i8_case c = {copies, M, K, x, y, pool};
    return time_rounds(one_i8, &c, n_copies, tc_kpool_threads(pool));
}

typedef struct sgemv_case {
    float **copies;
    int64_t M, K;
    const float *x;
    float *y;
} sgemv_case;

static void one_sgemv(void *ctx, int copy)
{
    sgemv_case *c = ctx;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)c->M, (int)c->K, 1.0f, c->copies[copy],
                (int)c->K, c->x, 1, 0.0f, c->y, 1);
}

static double time_sgemv(float **copies, int n_copies, int64_t M, int64_t K, const float *x,
                         float *y, int threads)
{
    openblas_set_num_threads(threads);
    sgemv_case c = {copies, M, K, x, y};
    return time_rounds(one_sgemv, &c, n_copies, threads);
}

static int copies_for(uint64_t bytes)
{
    uint64_t n = (ROTATE_BYTES + bytes - 1) / bytes;
    return n < 2 ? 2 : (int)n;
}

/* ---- the table ----------------------------------------------------------- */

typedef struct row {
    char kernel[32];
    int64_t M, K;
    int threads;
    double bits_per_weight, us, gbps, of_dram, cpu_share;
    double x_sgemv; /* sgemv's time over this row's, same shape and threads */
} row;

static row rows[512];
static int n_rows;

static void add_row(const char *kernel, int64_t M, int64_t K, int threads, double bytes,
                    double secs, double dram)
{
    row *r = &rows[n_rows++];
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    r->M = M;
    r->K = K;
    r->threads = threads;
    r->bits_per_weight = bytes * 8 / ((double)M * (double)K);
    r->us = secs * 1e6;
    r->gbps = bytes / secs / 1e9;
    r->of_dram = r->gbps / dram;
    r->cpu_share = last_cpu_share;
    printf("%-18s %6lld x %-6lld %2d  %6.2f  %10.1f  %7.2f  %6.1f%%  %5.0f%%\n", kernel,
           (long long)M, (long long)K, threads, r->bits_per_weight, r->us, r->gbps,
           100 * r->of_dram, 100 * r->cpu_share);
    fflush(stdout);
}

typedef struct decode_row {
    char layout[8], kernel[16];
    int threads;
    double tok_s, gbps, of_dram, prompt_tok_s;
} decode_row;

static decode_row drows[32];

#define PROMPT 64
static int n_drows;

/* Every row of this shape against sgemv's at the same thread count. */
static void speedups(int64_t M, int64_t K, int first_row)
{
    for (int t = 1; t <= 2; t++) {
        double base = 0;
        for (int i = first_row; i < n_rows; i++)
            if (rows[i].threads == t && strncmp(rows[i].kernel, "sgemv", 5) == 0)
                base = rows[i].us;
        printf("  %lld x %lld, %d thread%s, speed-up over sgemv fp32:", (long long)M, (long long)K,
               t, t > 1 ? "s" : "");
        for (int i = first_row; i < n_rows; i++)
            if (rows[i].threads == t && base > 0) {
                rows[i].x_sgemv = base / rows[i].us;
                if (strncmp(rows[i].kernel, "sgemv", 5) != 0 &&
                    strstr(rows[i].kernel, "scalar") == NULL)
                    printf(" %s %.1fx", rows[i].kernel, rows[i].x_sgemv);
            }
        printf("\n");
    }
}

static void bench_shape(int64_t M, int64_t K, const tc_kpath *paths, int n_paths,
                        tc_kpool *pools[2], const double dram[2])
{
    int first_row = n_rows;
    tc_error err;
    int8_t *x = malloc((size_t)K);
    float *y = malloc((size_t)M * sizeof(float));
    for (int64_t i = 0; i < K; i++)
        x[i] = (int8_t)(next() & 0xff);
    tc_kwork *w = tc_kwork_new();
    tc_tgroup row_g = {TC_TGROUP_ROW, 0};
    for (int l = 0; l < TC_TPACK_LAYOUT_COUNT; l++) {
        tc_tpack_plan plan;
        if (tc_tpack_plan_make((tc_tpack_layout)l, M, K, &row_g, &plan, &err))
            exit(1);
        int nc = copies_for(plan.total_bytes);
        uint8_t **cp = malloc((size_t)nc * sizeof *cp);
        for (int i = 0; i < nc; i++) {
            cp[i] = malloc(plan.total_bytes);
            for (uint64_t b = 0; b < plan.total_bytes; b++)
                cp[i][b] = (uint8_t)(next() & 0x77); /* nibbles <= 7: valid in every table */
        }
        for (int p = 0; p < n_paths; p++)
            for (int t = 0; t < 2; t++) {
                tc_kernels k;
                if (tc_kernels_init(&k, paths[p], &err))
                    continue;
                case_job c = {&k, w, &plan, cp, nc, x, 1.0f, y, pools[t]};
                char name[32];
                snprintf(name, sizeof name, "%s/%s", tc_tpack_layout_name((tc_tpack_layout)l),
                         tc_kpath_name(k.path));
                add_row(name, M, K, t + 1, (double)plan.weight_bytes, time_ternary(&c), dram[t]);
            }
        for (int i = 0; i < nc; i++)
            free(cp[i]);
        free(cp);
    }
    tc_kwork_free(w);
    /* int8 weights, plain dot products */
    {
        uint64_t bytes = (uint64_t)M * (uint64_t)K;
        int nc = copies_for(bytes);
        int8_t **cp = malloc((size_t)nc * sizeof *cp);
        for (int i = 0; i < nc; i++) {
            cp[i] = malloc(bytes);
            for (uint64_t b = 0; b < bytes; b++)
                cp[i][b] = (int8_t)(next() & 0xff);
        }
        int32_t *y32 = malloc((size_t)M * 4);
        for (int t = 0; t < 2; t++)
            add_row(use_avx512_dot ? "int8-dot/avx512" : "int8-dot/scalar", M, K, t + 1,
                    (double)bytes, time_i8(cp, nc, M, K, x, y32, pools[t]), dram[t]);
        for (int i = 0; i < nc; i++)
            free(cp[i]);
        free(cp);
        free(y32);
    }
    /* fp32 weights, OpenBLAS sgemv */
    {
        uint64_t bytes = (uint64_t)M * (uint64_t)K * 4;
        int nc = copies_for(bytes);
        float **cp = malloc((size_t)nc * sizeof *cp);
        float *xf = malloc((size_t)K * 4);
        for (int64_t i = 0; i < K; i++)
            xf[i] = x[i];
        for (int i = 0; i < nc; i++) {
            cp[i] = malloc(bytes);
            for (uint64_t b = 0; b < bytes / 4; b++)
                cp[i][b] = (float)((int)(next() % 3) - 1);
        }
        for (int t = 0; t < 2; t++)
            add_row("sgemv-f32/openblas", M, K, t + 1, (double)bytes,
                    time_sgemv(cp, nc, M, K, xf, y, t + 1), dram[t]);
        for (int i = 0; i < nc; i++)
            free(cp[i]);
        free(cp);
        free(xf);
    }
    free(x);
    free(y);
    speedups(M, K, first_row);
}

static void bench_decode(tc_tpack_layout layout, int vocab, int n_tokens, const double dram[2])
{
    tc_error err;
    tc_config c = tc_synth_config(30, 2560, 20, 5, 6912, vocab);
    c.max_seq_len = n_tokens + PROMPT + 8;
    tc_tmodel_mem mm;
    tc_tgroup row_g = {TC_TGROUP_ROW, 0};
    if (tc_tmodel_mem_random(&mm, &c, layout, &row_g, 11, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return;
    }
    tc_tmodel_size sz;
    tc_tmodel_size_of(&mm.m, &sz);
    for (int t = 1; t <= 2; t++) {
        tc_trun *r;
        tc_trun_opts o = {TC_TRUN_LUT, TC_KPATH_AUTO, t, 0};
        if (tc_trun_new(&r, &mm.m, &o, &err)) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            break;
        }
        float *lg = malloc((size_t)vocab * 4);
        /* a prompt of PROMPT tokens first: the matrix-matrix path */
        int32_t prompt[PROMPT];
        for (int i = 0; i < PROMPT; i++)
            prompt[i] = (int32_t)(next() % (uint64_t)vocab);
        tc_trun_step(r, 1, lg, &err); /* warm-up: first touches of every buffer */
        tc_trun_reset(r);
        double tp = now();
        if (tc_trun_feed(r, prompt, PROMPT, lg, 0, &err)) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            free(lg);
            tc_trun_free(r);
            break;
        }
        tp = now() - tp;
        double t0 = now();
        for (int i = 0; i < n_tokens; i++)
            if (tc_trun_step(r, (int32_t)(next() % (uint64_t)vocab), lg, &err))
                break;
        double secs = now() - t0;
        decode_row *d = &drows[n_drows++];
        snprintf(d->layout, sizeof d->layout, "%s", tc_tpack_layout_name(layout));
        snprintf(d->kernel, sizeof d->kernel, "%s", tc_kpath_name(tc_trun_kernels(r)->path));
        d->threads = t;
        d->tok_s = n_tokens / secs;
        d->prompt_tok_s = PROMPT / tp;
        d->gbps = (double)sz.ternary_bytes * d->tok_s / 1e9;
        d->of_dram = d->gbps / dram[t - 1];
        printf("decode %-4s %-10s %d thread%s  %6.1f tokens/s  (%.0f MB ternary weights/token, "
               "%.2f GB/s, %.0f%% of DRAM); prompt of %d: %.1f tokens/s\n",
               d->layout, d->kernel, t, t > 1 ? "s" : " ", d->tok_s,
               (double)sz.ternary_bytes / 1e6, d->gbps, 100 * d->of_dram, PROMPT, d->prompt_tok_s);
        fflush(stdout);
        free(lg);
        tc_trun_free(r);
    }
    tc_tmodel_mem_free(&mm);
}

int main(int argc, char **argv)
{
    int json = 0, quick = 0, decode_only = 0, vocab = 1000, n_dec = 16;
    const char *path_list = "scalar,avx2,avx512,avx512vnni";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--decode-only"))
            decode_only = 1;
        else if (!strcmp(argv[i], "--paths") && i + 1 < argc)
            path_list = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode-tokens") && i + 1 < argc)
            n_dec = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_kernels [--json] [--quick] [--decode-only] "
                    "[--paths scalar,avx2,avx512,avx512vnni] [--vocab V] [--decode-tokens N]\n");
            return 2;
        }
    }
    if (vocab < 2 || n_dec < 1)
        return 2;
    tc_kpath paths[TC_KPATH_COUNT];
    int n_paths = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path_list);
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
        tc_error err;
        tc_kpath p;
        if (tc_kpath_parse(s, &p, &err) == 0 && tc_kpath_available(p))
            paths[n_paths++] = p;
    }
#if defined(__x86_64__)
    use_avx512_dot = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = NAN;
        fclose(f);
    }
    tc_error err;
    tc_kpool *pools[2];
    if (tc_kpool_new(&pools[0], 1, &err) || tc_kpool_new(&pools[1], 2, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    printf("load average %.2f %.2f %.2f (1, 5, 15 min)\n", load[0], load[1], load[2]);
    double dram[2] = {dram_gbps(pools[0]), dram_gbps(pools[1])};
    printf("DRAM read bandwidth (streaming sum of 512 MiB, best of plain and prefetching): %.2f "
           "GB/s 1 thread, %.2f GB/s 2 threads\n\n",
           dram[0], dram[1]);
    printf("%-18s %15s %3s %7s %11s %8s %7s %6s\n", "kernel", "M x K", "thr", "bits/w",
           "us/matvec", "GB/s", "of DRAM", "cpu");
    static const int64_t shapes[4][2] = {{2560, 6912}, {6912, 2560}, {4096, 11008}, {11008, 4096}};
    for (int s = 0; s < (decode_only ? 0 : quick ? 1 : 4); s++) {
        if (s > 0) /* the machine's rate drifts; keep the highest seen */
            for (int t = 0; t < 2; t++) {
                double d = dram_gbps(pools[t]);
                dram[t] = d > dram[t] ? d : dram[t];
            }
        bench_shape(shapes[s][0], shapes[s][1], paths, n_paths, pools, dram);
    }
    printf("\nend-to-end decode, synthetic 2B-shaped ternary model (dim 2560, 30 layers, ffn 6912, "
           "20/5 heads, row scales, vocab %d, fp32 head)\n",
           vocab);
    for (int l = 0; l < (quick ? 1 : TC_TPACK_LAYOUT_COUNT); l++)
        bench_decode((tc_tpack_layout)l, vocab, n_dec, dram);
    /* The rate drifts with what else the machine runs: every share is
     * finally taken of the highest rate measured in this run (at the start,
     * before every shape and now), so none is flattered by a slow moment. */
    double again[2] = {dram_gbps(pools[0]), dram_gbps(pools[1])};
    printf("\nDRAM read bandwidth measured again: %.2f GB/s 1 thread, %.2f GB/s 2 threads\n",
           again[0], again[1]);
    for (int t = 0; t < 2; t++)
        dram[t] = again[t] > dram[t] ? again[t] : dram[t];
    printf("shares of the highest rate measured in this run (%.2f / %.2f GB/s):\n", dram[0],
           dram[1]);
    for (int i = 0; i < n_rows; i++) {
        rows[i].of_dram = rows[i].gbps / dram[rows[i].threads - 1];
        if (!strstr(rows[i].kernel, "scalar"))
            printf("  %-18s %6lld x %-6lld %d thr  %6.2f GB/s  %5.1f%% of DRAM  %5.1fx sgemv\n",
                   rows[i].kernel, (long long)rows[i].M, (long long)rows[i].K, rows[i].threads,
                   rows[i].gbps, 100 * rows[i].of_dram, rows[i].x_sgemv);
    }
    for (int i = 0; i < n_drows; i++) {
        drows[i].of_dram = drows[i].gbps / dram[drows[i].threads - 1];
        printf("  decode %-4s %d thr  %5.1f tokens/s  %5.1f%% of DRAM\n", drows[i].layout,
               drows[i].threads, drows[i].tok_s, 100 * drows[i].of_dram);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "matvec");
        cJSON *la = cJSON_AddArrayToObject(o, "load_average");
        for (int i = 0; i < 3; i++)
            cJSON_AddItemToArray(la, cJSON_CreateNumber(load[i]));
        cJSON_AddNumberToObject(o, "dram_read_gbps_1_thread", dram[0]);
        cJSON_AddNumberToObject(o, "dram_read_gbps_2_threads", dram[1]);
        cJSON_AddStringToObject(o, "dram_note",
                                "highest of the measurements at the start, before every shape and at the end");
        for (int i = 0; i < n_rows; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "kernel", rows[i].kernel);
            cJSON_AddNumberToObject(r, "M", (double)rows[i].M);
            cJSON_AddNumberToObject(r, "K", (double)rows[i].K);
            cJSON_AddNumberToObject(r, "threads", rows[i].threads);
            cJSON_AddNumberToObject(r, "bits_per_weight", rows[i].bits_per_weight);
            cJSON_AddNumberToObject(r, "us_per_matvec", rows[i].us);
            cJSON_AddNumberToObject(r, "weight_gbps", rows[i].gbps);
            cJSON_AddNumberToObject(r, "share_of_dram", rows[i].of_dram);
            cJSON_AddNumberToObject(r, "speedup_over_sgemv", rows[i].x_sgemv);
            cJSON_AddNumberToObject(r, "cpu_share", rows[i].cpu_share);
            cJSON_AddItemToArray(a, r);
        }
        cJSON *d = cJSON_AddArrayToObject(o, "decode");
        for (int i = 0; i < n_drows; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "layout", drows[i].layout);
            cJSON_AddStringToObject(r, "kernel", drows[i].kernel);
            cJSON_AddNumberToObject(r, "threads", drows[i].threads);
            cJSON_AddNumberToObject(r, "vocab", vocab);
            cJSON_AddNumberToObject(r, "tokens_per_s", drows[i].tok_s);
            cJSON_AddNumberToObject(r, "weight_gbps", drows[i].gbps);
            cJSON_AddNumberToObject(r, "share_of_dram", drows[i].of_dram);
            cJSON_AddNumberToObject(r, "prompt_tokens", PROMPT);
            cJSON_AddNumberToObject(r, "prompt_tokens_per_s", drows[i].prompt_tok_s);
            cJSON_AddItemToArray(d, r);
        }
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    tc_kpool_free(pools[0]);
    tc_kpool_free(pools[1]);
    return 0;
}
