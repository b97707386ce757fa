/* Ternary kernels: matrix-vector speed per layout, kernel path and thread
 * count at LLM layer shapes, beside baselines measured in the same run:
 * OpenBLAS sgemv on fp32 weights, a plain int8 dot-product kernel on int8
 * weights, and this machine's read bandwidth. Then decode tokens/s of a
 * synthetic 2B-shaped ternary model (dim 2560, 30 layers, ffn 6912, 20
 * heads, 5 kv heads) built in memory from random codes, on the fastest
 * kernel path this CPU runs or the one --decode-path names.
 *
 *   bench_kernels [--json] [--quick] [--decode-only] [--paths LIST] [--decode-path P]
 *                 [--vocab V] [--decode-tokens N]
 *
 * Every timed product rotates through enough copies of its weights
 * (>= 256 MiB) that no cache holds them. The memory rate of this (shared,
 * virtual) machine drifts by tens of percent within seconds, so each
 * product is timed in rounds that alternate with a plain read of the same
 * copies by the same threads (a vector sum over four streams a thread, with
 * and without prefetching: the fastest read this program knows): one round = one pass of each over all copies. "read" is the best
 * read round, "GB/s" the best product round (bytes of packed weights, or
 * of fp32 / int8 weights for the baselines, per second), "share" their
 * ratio and "median" the median of the per-round ratios, which pairs two
 * passes measured a few milliseconds apart. "hot" is the product's rate
 * with the weights in L2 (one copy of 256 rows, repeated): what the kernel
 * computes when memory is not the limit. Per row "cpu" is the process's
 * CPU time over wall time x threads: below 100 % the figures include time
 * spent waiting for a core. */
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
#define TILE_HOT 256 /* rows of the in-cache product */

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

static void timing_start(double *w, double *c)
{
    *w = now();
    *c = cpu_now();
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static volatile int64_t sink;

/* ---- plain reads -------------------------------------------------------- */

/* A read pass: every buffer's first `bytes` bytes summed, the buffers one
 * after another, each split between the workers like the rows of a product. */
typedef struct read_job {
    const uint8_t *const *bufs;
    int n_bufs;
    uint64_t bytes;
    const uint8_t *buf; /* the one being read */
    int prefetch;
    int64_t sums[64];
} read_job;

#if defined(__x86_64__)
/* A 512-bit sum over four streams at once (the quarters of the range), with
 * or without software prefetching 2048 bytes ahead: on this machine class
 * one core reads about 1.3x faster from four streams than from one and
 * faster with 512-bit loads than with scalar ones, and prefetching adds a
 * few percent to four streams (all measured). A read pass takes the faster
 * of the two, so that no product's share of it flatters the product. */
__attribute__((target("avx512f"))) static int64_t sum_avx512(const uint8_t *p, uint64_t n,
                                                             int prefetch)
{
    uint64_t q = n / 4 / 64 * 64;
    const uint8_t *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (uint64_t i = 0; i < q; i += 64) {
        if (prefetch) {
            _mm_prefetch((const char *)p + i + 2048, _MM_HINT_T0);
            _mm_prefetch((const char *)p1 + i + 2048, _MM_HINT_T0);
            _mm_prefetch((const char *)p2 + i + 2048, _MM_HINT_T0);
            _mm_prefetch((const char *)p3 + i + 2048, _MM_HINT_T0);
        }
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p1 + i));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p2 + i));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p3 + i));
    }
    int64_t s = _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1),
                                                         _mm512_add_epi64(a2, a3)));
    for (uint64_t i = 4 * q; i < n; i++)
        s += p[i];
    return s;
}
#endif

static int use_avx512_read;

static int64_t sum_scalar(const uint8_t *p, uint64_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, i = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t v[8];
        memcpy(v, p + i, sizeof v);
        s0 += v[0], s1 += v[1], s2 += v[2], s3 += v[3], s4 += v[4], s5 += v[5], s6 += v[6],
            s7 += v[7];
    }
    for (; i < n; i++)
        s0 += p[i];
    return (int64_t)(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
}

static void read_part(void *arg, int w, int nw)
{
    read_job *j = arg;
    uint64_t a = j->bytes * (uint64_t)w / (uint64_t)nw / 64 * 64;
    uint64_t b = w + 1 == nw ? j->bytes : j->bytes * (uint64_t)(w + 1) / (uint64_t)nw / 64 * 64;
#if defined(__x86_64__)
    if (use_avx512_read) {
        j->sums[w] += sum_avx512(j->buf + a, b - a, j->prefetch);
        return;
    }
#endif
    j->sums[w] += sum_scalar(j->buf + a, b - a);
}

/* Seconds of one read pass over every buffer: the faster of a plain and a
 * prefetching pass (the scalar sum only has the plain one). */
static double read_pass(read_job *j, tc_kpool *pool)
{
    double best = 1e30;
    for (int pf = 0; pf < (use_avx512_read ? 2 : 1); pf++) {
        j->prefetch = pf;
        double t = now();
        for (int i = 0; i < j->n_bufs; i++) {
            j->buf = j->bufs[i];
            tc_kpool_run(pool, read_part, j);
        }
        t = now() - t;
        best = t < best ? t : best;
    }
    sink += j->sums[0];
    return best;
}

/* GB/s of the best of 4 read passes over a fresh 512 MiB buffer. */
static double read_gbps(tc_kpool *pool)
{
    uint64_t bytes = 512ull << 20;
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return NAN;
    memset(buf, 1, bytes);
    const uint8_t *bufs[1] = {buf};
    read_job j = {bufs, 1, bytes, NULL, 0, {0}};
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double t = read_pass(&j, pool);
        best = t < best ? t : best;
    }
    free(buf);
    return (double)bytes / best / 1e9;
}

/* ---- timing products on rotating copies ---------------------------------- */

/* What a round measured: a pass of the product over every copy, and a read
 * pass over the same bytes just before it. */
typedef struct timing {
    double op, read;   /* best seconds per copy of each */
    double median;     /* of the rounds' read / op time ratios */
    double cpu_share;  /* of the product passes */
} timing;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_ROUNDS 64

/* Rounds until >= 5 rounds and >= 0.4 s of products. */
static timing time_rounds(void (*one)(void *ctx, int copy), void *ctx, int n_copies,
                          read_job *rd, tc_kpool *pool, int threads)
{
    timing tm = {1e30, 1e30, 0, 0};
    double ratio[MAX_ROUNDS], total = 0, cpu = 0;
    int n = 0;
    while (n < MAX_ROUNDS && (n < 5 || total < 0.4)) {
        double r = read_pass(rd, pool);
        double w0, c0;
        timing_start(&w0, &c0);
        for (int i = 0; i < n_copies; i++)
            one(ctx, i);
        double op = now() - w0;
        cpu += (cpu_now() - c0) / (op * threads);
        total += op;
        ratio[n++] = r / op;
        tm.op = op < tm.op ? op : tm.op;
        tm.read = r < tm.read ? r : tm.read;
    }
    qsort(ratio, (size_t)n, sizeof ratio[0], cmp_double);
    tm.median = n % 2 ? ratio[n / 2] : (ratio[n / 2 - 1] + ratio[n / 2]) / 2;
    tm.op /= n_copies;
    tm.read /= n_copies;
    tm.cpu_share = cpu / n;
    return tm;
}

typedef struct case_job {
    const tc_kernels *k;
    tc_kwork *w;
    const tc_tpack_plan *plan;
    uint8_t **copies;
    const int8_t *x;
    float act;
    float *y;
    tc_kpool *pool;
} case_job;

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

/* Best seconds of one product whose weights stay in L2. */
static double time_hot(case_job *c)
{
    double best = 1e30, total = 0;
    for (int i = 0; i < 20 || total < 0.1; i++) {
        double t = now();
        one_ternary(c, 0);
        t = now() - t;
        total += t;
        best = t < best ? t : best;
    }
    return best;
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
    double bits_per_weight, us, gbps, read_gbps, share, median, hot_gbps, cpu_share;
    double x_sgemv; /* sgemv's time over this row's, same shape and threads */
} row;

static row rows[512];
static int n_rows;

static void add_row(const char *kernel, int64_t M, int64_t K, int threads, double bytes,
                    timing tm, double hot_bytes, double hot_secs)
{
    row *r = &rows[n_rows++];
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    r->M = M;
    r->K = K;
    r->threads = threads;
    r->bits_per_weight = bytes * 8 / ((double)M * (double)K);
    r->us = tm.op * 1e6;
    r->gbps = bytes / tm.op / 1e9;
    r->read_gbps = bytes / tm.read / 1e9;
    r->share = tm.read / tm.op;
    r->median = tm.median;
    r->hot_gbps = hot_secs > 0 ? hot_bytes / hot_secs / 1e9 : 0;
    r->cpu_share = tm.cpu_share;
    char hot[16] = "      -";
    if (hot_secs > 0)
        snprintf(hot, sizeof hot, "%7.2f", r->hot_gbps);
    printf("%-18s %6lld x %-6lld %2d  %6.2f  %10.1f  %7.2f  %7.2f  %6.1f%%  %6.1f%%  %s  %5.0f%%\n",
           kernel, (long long)M, (long long)K, threads, r->bits_per_weight, r->us, r->gbps,
           r->read_gbps, 100 * r->share, 100 * r->median, hot, 100 * r->cpu_share);
    fflush(stdout);
}

typedef struct decode_row {
    char layout[8], kernel[16];
    int threads;
    double tok_s, gbps, read_gbps, share, median, prompt_tok_s;
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
                        tc_kpool *pools[2])
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
        tc_tpack_plan plan, hot;
        if (tc_tpack_plan_make((tc_tpack_layout)l, M, K, &row_g, &plan, &err) ||
            tc_tpack_plan_make((tc_tpack_layout)l, TILE_HOT, K, &row_g, &hot, &err))
            exit(1);
        int nc = copies_for(plan.total_bytes);
        uint8_t **cp = malloc((size_t)nc * sizeof *cp);
        for (int i = 0; i < nc; i++) {
            cp[i] = malloc(plan.total_bytes);
            for (uint64_t b = 0; b < plan.total_bytes; b++)
                cp[i][b] = (uint8_t)(next() & 0x77); /* nibbles <= 7: valid in every table */
        }
        read_job rd = {(const uint8_t *const *)cp, nc, plan.weight_bytes, NULL, 0, {0}};
        for (int p = 0; p < n_paths; p++)
            for (int t = 0; t < 2; t++) {
                tc_kernels k;
                if (tc_kernels_init(&k, paths[p], &err))
                    continue;
                case_job c = {&k, w, &plan, cp, x, 1.0f, y, pools[t]};
                case_job ch = {&k, w, &hot, cp, x, 1.0f, y, pools[t]};
                char name[32];
                snprintf(name, sizeof name, "%s/%s", tc_tpack_layout_name((tc_tpack_layout)l),
                         tc_kpath_name(k.path));
                double hs = time_hot(&ch);
                timing tm = time_rounds(one_ternary, &c, nc, &rd, pools[t], t + 1);
                add_row(name, M, K, t + 1, (double)plan.weight_bytes, tm,
                        (double)hot.weight_bytes, hs);
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
        read_job rd = {(const uint8_t *const *)cp, nc, bytes, NULL, 0, {0}};
        for (int t = 0; t < 2; t++) {
            i8_case c = {cp, M, K, x, y32, pools[t]};
            timing tm = time_rounds(one_i8, &c, nc, &rd, pools[t], t + 1);
            add_row(use_avx512_dot ? "int8-dot/avx512" : "int8-dot/scalar", M, K, t + 1,
                    (double)bytes, tm, 0, 0);
        }
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
        read_job rd = {(const uint8_t *const *)cp, nc, bytes, NULL, 0, {0}};
        for (int t = 0; t < 2; t++) {
            openblas_set_num_threads(t + 1);
            sgemv_case c = {cp, M, K, xf, y};
            timing tm = time_rounds(one_sgemv, &c, nc, &rd, pools[t], t + 1);
            add_row("sgemv-f32/openblas", M, K, t + 1, (double)bytes, tm, 0, 0);
        }
        for (int i = 0; i < nc; i++)
            free(cp[i]);
        free(cp);
        free(xf);
    }
    free(x);
    free(y);
    speedups(M, K, first_row);
}

/* Decode in rounds of DECODE_ROUND tokens, each after a read pass over a
 * 512 MiB buffer by the same threads. */
#define DECODE_ROUND 8

static void bench_decode(tc_tpack_layout layout, tc_kpath path, int vocab, int n_tokens)
{
    tc_error err;
    tc_config c = tc_synth_config(30, 2560, 20, 5, 6912, vocab);
    int rounds = (n_tokens + DECODE_ROUND - 1) / DECODE_ROUND;
    c.max_seq_len = rounds * DECODE_ROUND + PROMPT + 8;
    tc_tmodel_mem mm;
    tc_tgroup row_g = {TC_TGROUP_ROW, 0};
    if (tc_tmodel_mem_random(&mm, &c, layout, &row_g, 11, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return;
    }
    tc_tmodel_size sz;
    tc_tmodel_size_of(&mm.m, &sz);
    uint64_t rbytes = 512ull << 20;
    uint8_t *buf = malloc(rbytes);
    memset(buf, 1, rbytes);
    const uint8_t *bufs[1] = {buf};
    for (int t = 1; t <= 2; t++) {
        tc_trun *r;
        tc_trun_opts o = {TC_TRUN_LUT, path, t, 0, 0};
        if (tc_trun_new(&r, &mm.m, &o, &err)) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            break;
        }
        tc_kpool *pool = tc_trun_pool(r);
        read_job rd = {bufs, 1, rbytes, NULL, 0, {0}};
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
        double best_step = 1e30, best_read = 1e30, ratio[MAX_ROUNDS];
        int n = 0;
        for (; n < rounds && n < MAX_ROUNDS; n++) {
            double rs = read_pass(&rd, pool) / (double)rbytes; /* seconds per byte */
            double t0 = now();
            for (int i = 0; i < DECODE_ROUND; i++)
                if (tc_trun_step(r, (int32_t)(next() % (uint64_t)vocab), lg, &err))
                    break;
            double step = (now() - t0) / DECODE_ROUND;
            best_step = step < best_step ? step : best_step;
            best_read = rs < best_read ? rs : best_read;
            ratio[n] = rs * (double)sz.ternary_bytes / step;
        }
        qsort(ratio, (size_t)n, sizeof ratio[0], cmp_double);
        decode_row *d = &drows[n_drows++];
        snprintf(d->layout, sizeof d->layout, "%s", tc_tpack_layout_name(layout));
        snprintf(d->kernel, sizeof d->kernel, "%s", tc_kpath_name(tc_trun_kernels(r)->path));
        d->threads = t;
        d->tok_s = 1 / best_step;
        d->prompt_tok_s = PROMPT / tp;
        d->gbps = (double)sz.ternary_bytes * d->tok_s / 1e9;
        d->read_gbps = 1 / best_read / 1e9;
        d->share = d->gbps / d->read_gbps;
        d->median = n % 2 ? ratio[n / 2] : (ratio[n / 2 - 1] + ratio[n / 2]) / 2;
        printf("decode %-4s %-10s %d thread%s  %6.1f tokens/s  (%.0f MB ternary weights/token, "
               "%.2f GB/s; read %.2f GB/s; share %.0f%%, median %.0f%%); prompt of %d: %.1f "
               "tokens/s\n",
               d->layout, d->kernel, t, t > 1 ? "s" : " ", d->tok_s,
               (double)sz.ternary_bytes / 1e6, d->gbps, d->read_gbps, 100 * d->share,
               100 * d->median, PROMPT, d->prompt_tok_s);
        fflush(stdout);
        free(lg);
        tc_trun_free(r);
    }
    free(buf);
    tc_tmodel_mem_free(&mm);
}

/* ---- the packed model's batched forward ----------------------------------
 * What --compare and --ppl run: windows of L tokens, each from an empty
 * cache, whole through tc_trun_batch (64-token chunks, the multi-token
 * kernels, one pass of the attention per chunk), beside the same windows
 * fed one token at a time (tc_trun_step, the decode path) in the same run.
 * Both give the same logits bit for bit; the table says so for the first
 * window. */
typedef struct window_row {
    char model[64], layout[8], kernel[16];
    int threads, n_windows, seq_len;
    double batched_s, step_s, batched_tok_s, step_tok_s, cpu_share, step_cpu_share;
    int identical;
} window_row;

static window_row wrows[8];
static int n_wrows;

static int on_window_logits(void *ctx, const float *lg, size_t tok0, size_t n, int vocab, tc_error *err)
{
    float *dst = ctx;
    (void)err;
    size_t V = (size_t)vocab;
    if (dst)
        memcpy(dst + tok0 * V, lg, n * V * sizeof *lg);
    return TC_OK;
}

static void bench_windows(const tc_tmodel *m, const char *name, int n_windows, int seq_len)
{
    tc_error err;
    size_t n = (size_t)n_windows * (size_t)seq_len, V = (size_t)m->cfg.vocab_size;
    int32_t *tok = malloc(n * sizeof *tok);
    size_t *off = malloc(((size_t)n_windows + 1) * sizeof *off);
    float *a = malloc((size_t)seq_len * V * sizeof *a), *b = malloc((size_t)seq_len * V * sizeof *b);
    float *scratch = malloc(V * sizeof *scratch);
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(next() % V);
    for (int w = 0; w <= n_windows; w++)
        off[w] = (size_t)w * (size_t)seq_len;
    tc_batch all = {tok, off, (size_t)n_windows};
    size_t one_off[2] = {0, (size_t)seq_len};
    tc_batch first = {tok, one_off, 1};
    for (int t = 1; t <= 2; t++) {
        tc_trun *r;
        tc_trun_opts o = {TC_TRUN_LUT, TC_KPATH_AUTO, t, seq_len, 0};
        if (tc_trun_new(&r, m, &o, &err)) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            break;
        }
        window_row *wr = &wrows[n_wrows++];
        snprintf(wr->model, sizeof wr->model, "%s", name);
        snprintf(wr->layout, sizeof wr->layout, "%s", tc_tpack_layout_name(m->quant.layout));
        snprintf(wr->kernel, sizeof wr->kernel, "%s", tc_kpath_name(tc_trun_kernels(r)->path));
        wr->threads = t;
        wr->n_windows = n_windows;
        wr->seq_len = seq_len;
        /* warm-up: the first window, batched, its logits kept */
        tc_trun_batch(r, &first, on_window_logits, a, &err);
        double w0, c0;
        timing_start(&w0, &c0);
        int rc = tc_trun_batch(r, &all, on_window_logits, NULL, &err);
        wr->batched_s = now() - w0;
        wr->cpu_share = (cpu_now() - c0) / (wr->batched_s * t);
        timing_start(&w0, &c0);
        for (int w = 0; rc == TC_OK && w < n_windows; w++) {
            tc_trun_reset(r);
            for (int i = 0; rc == TC_OK && i < seq_len; i++)
                rc = tc_trun_step(r, tok[(size_t)w * (size_t)seq_len + (size_t)i],
                                  w ? scratch : b + (size_t)i * V, &err);
        }
        wr->step_s = now() - w0;
        wr->step_cpu_share = (cpu_now() - c0) / (wr->step_s * t);
        if (rc != TC_OK)
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
        wr->batched_tok_s = (double)n / wr->batched_s;
        wr->step_tok_s = (double)n / wr->step_s;
        wr->identical = rc == TC_OK && memcmp(a, b, (size_t)seq_len * V * sizeof *a) == 0;
        printf("%-22s %-4s %-10s %2d  %3d x %-5d %9.0f %6.0f%%  %9.0f %6.0f%%  %6.2fx  %s\n", wr->model,
               wr->layout, wr->kernel, t, n_windows, seq_len, wr->batched_tok_s, 100 * wr->cpu_share,
               wr->step_tok_s, 100 * wr->step_cpu_share, wr->batched_tok_s / wr->step_tok_s,
               wr->identical ? "yes" : "NO");
        fflush(stdout);
        tc_trun_free(r);
    }
    free(tok);
    free(off);
    free(a);
    free(b);
    free(scratch);
}

static void window_section(const char *model_path, int n_windows, int seq_len)
{
    tc_error err;
    printf("\nbatched forward of the packed model: %d windows of %d tokens, each from an empty cache, "
           "whole (tc_trun_batch) vs one token at a time (tc_trun_step); tokens/s over the wall clock, cpu = "
           "CPU time / (wall x threads); same = the first window's logits are bit-identical\n",
           n_windows, seq_len);
    printf("%-22s %-4s %-10s %2s  %-11s %9s %7s  %9s %7s  %7s  %s\n", "model", "lay", "kernel", "th", "windows",
           "batched", "cpu", "one-tok", "cpu", "speedup", "same");
    if (model_path) {
        tc_tmodel m;
        if (tc_tmodel_open(&m, model_path, &err)) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            return;
        }
        const char *slash = strrchr(model_path, '/');
        bench_windows(&m, slash ? slash + 1 : model_path, n_windows, seq_len);
        tc_tmodel_close(&m);
        return;
    }
    /* deep16's shape with random codes (tc-quantize of the real model gives
     * the same shapes and speed; --model runs a file) */
    tc_config c = tc_synth_config(16, 256, 8, 4, 688, 512);
    c.max_seq_len = seq_len;
    tc_tmodel_mem mm;
    tc_tgroup row_g = {TC_TGROUP_ROW, 0};
    if (tc_tmodel_mem_random(&mm, &c, TC_TPACK_TL2, &row_g, 5, &err)) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return;
    }
    mm.m.quant.layout = TC_TPACK_TL2;
    bench_windows(&mm.m, "deep16-shaped (random)", n_windows, seq_len);
    tc_tmodel_mem_free(&mm);
}

static void print_json(int json, const double load[3], const double *rate, const double *again, int vocab)
{
    if (!json)
        return;
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "matvec");
    cJSON *la = cJSON_AddArrayToObject(o, "load_average");
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToArray(la, cJSON_CreateNumber(load[i]));
    if (rate && again) {
        cJSON_AddNumberToObject(o, "read_gbps_1_thread_start", rate[0]);
        cJSON_AddNumberToObject(o, "read_gbps_2_threads_start", rate[1]);
        cJSON_AddNumberToObject(o, "read_gbps_1_thread_end", again[0]);
        cJSON_AddNumberToObject(o, "read_gbps_2_threads_end", again[1]);
    }
    for (int i = 0; i < n_rows; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "kernel", rows[i].kernel);
        cJSON_AddNumberToObject(r, "M", (double)rows[i].M);
        cJSON_AddNumberToObject(r, "K", (double)rows[i].K);
        cJSON_AddNumberToObject(r, "threads", rows[i].threads);
        cJSON_AddNumberToObject(r, "bits_per_weight", rows[i].bits_per_weight);
        cJSON_AddNumberToObject(r, "us_per_matvec", rows[i].us);
        cJSON_AddNumberToObject(r, "weight_gbps", rows[i].gbps);
        cJSON_AddNumberToObject(r, "read_gbps", rows[i].read_gbps);
        cJSON_AddNumberToObject(r, "share_of_read", rows[i].share);
        cJSON_AddNumberToObject(r, "median_share_of_read", rows[i].median);
        if (rows[i].hot_gbps > 0)
            cJSON_AddNumberToObject(r, "hot_gbps", rows[i].hot_gbps);
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
        cJSON_AddNumberToObject(r, "read_gbps", drows[i].read_gbps);
        cJSON_AddNumberToObject(r, "share_of_read", drows[i].share);
        cJSON_AddNumberToObject(r, "median_share_of_read", drows[i].median);
        cJSON_AddNumberToObject(r, "prompt_tokens", PROMPT);
        cJSON_AddNumberToObject(r, "prompt_tokens_per_s", drows[i].prompt_tok_s);
        cJSON_AddItemToArray(d, r);
    }
    cJSON *wa = cJSON_AddArrayToObject(o, "windows");
    for (int i = 0; i < n_wrows; i++) {
        const window_row *w = &wrows[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "model", w->model);
        cJSON_AddStringToObject(r, "layout", w->layout);
        cJSON_AddStringToObject(r, "kernel", w->kernel);
        cJSON_AddNumberToObject(r, "threads", w->threads);
        cJSON_AddNumberToObject(r, "n_windows", w->n_windows);
        cJSON_AddNumberToObject(r, "seq_len", w->seq_len);
        cJSON_AddNumberToObject(r, "batched_tokens_per_s", w->batched_tok_s);
        cJSON_AddNumberToObject(r, "batched_cpu_share", w->cpu_share);
        cJSON_AddNumberToObject(r, "one_token_tokens_per_s", w->step_tok_s);
        cJSON_AddNumberToObject(r, "one_token_cpu_share", w->step_cpu_share);
        cJSON_AddNumberToObject(r, "speedup", w->batched_tok_s / w->step_tok_s);
        cJSON_AddBoolToObject(r, "logits_identical", w->identical);
        cJSON_AddItemToArray(wa, r);
    }
    char *s = cJSON_Print(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
    }

int main(int argc, char **argv)
{
    int json = 0, quick = 0, decode_only = 0, vocab = 1000, n_dec = 32, windows_only = 0, n_win = 8, win_len = 256;
    const char *win_model = NULL;
    tc_kpath decode_path = TC_KPATH_AUTO;
    const char *path_list = "scalar,avx2,avx512,avx512vnni";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--decode-only"))
            decode_only = 1;
        else if (!strcmp(argv[i], "--windows-only"))
            windows_only = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            win_model = argv[++i];
        else if (!strcmp(argv[i], "--windows") && i + 1 < argc)
            n_win = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq-len") && i + 1 < argc)
            win_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--paths") && i + 1 < argc)
            path_list = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc)
            vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode-tokens") && i + 1 < argc)
            n_dec = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode-path") && i + 1 < argc) {
            tc_error err;
            if (tc_kpath_parse(argv[++i], &decode_path, &err) || !tc_kpath_available(decode_path)) {
                fprintf(stderr, "bench_kernels: --decode-path %s: not a path this CPU runs\n",
                        argv[i]);
                return 2;
            }
        } else {
            int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: bench_kernels [--json] [--quick] [--decode-only] [--windows-only] "
                    "[--paths scalar,avx2,avx512,avx512vnni] [--decode-path P] [--vocab V] "
                    "[--decode-tokens N] [--model FILE.tcq] [--windows N] [--seq-len L]\n");
            return help ? 0 : 2;
        }
    }
    if (vocab < 2 || n_dec < 1 || n_win < 1 || win_len < 2 || win_len > 1 << 16)
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
    use_avx512_read = __builtin_cpu_supports("avx512f");
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
    if (windows_only) {
        window_section(win_model, n_win, win_len);
        if (json)
            print_json(json, load, NULL, NULL, vocab);
        tc_kpool_free(pools[0]);
        tc_kpool_free(pools[1]);
        return 0;
    }
    double rate[2] = {read_gbps(pools[0]), read_gbps(pools[1])};
    printf("read bandwidth (%s sum of 512 MiB, four streams a thread, best of plain and prefetching): %.2f GB/s 1 thread, %.2f GB/s 2 threads\n\n",
           use_avx512_read ? "AVX-512" : "scalar", rate[0], rate[1]);
    printf("%-18s %15s %3s %7s %11s %8s %8s %7s %7s %7s %6s\n", "kernel", "M x K", "thr", "bits/w",
           "us/matvec", "GB/s", "read", "share", "median", "hot", "cpu");
    static const int64_t shapes[4][2] = {{2560, 6912}, {6912, 2560}, {4096, 11008}, {11008, 4096}};
    for (int s = 0; s < (decode_only ? 0 : quick ? 1 : 4); s++)
        bench_shape(shapes[s][0], shapes[s][1], paths, n_paths, pools);
    printf("\nend-to-end decode, synthetic 2B-shaped ternary model (dim 2560, 30 layers, ffn 6912, "
           "20/5 heads, row scales, vocab %d, fp32 head)\n",
           vocab);
    for (int l = 0; l < (quick ? 1 : TC_TPACK_LAYOUT_COUNT); l++)
        bench_decode((tc_tpack_layout)l, decode_path, vocab, n_dec);
    window_section(win_model, n_win, win_len);
    double again[2] = {read_gbps(pools[0]), read_gbps(pools[1])};
    printf("\nread bandwidth at the end: %.2f GB/s 1 thread, %.2f GB/s 2 threads\n", again[0],
           again[1]);
    printf("summary (share: best product round over best read round of the same copies; median: "
           "of the paired rounds):\n");
    for (int i = 0; i < n_rows; i++)
        if (!strstr(rows[i].kernel, "scalar"))
            printf("  %-18s %6lld x %-6lld %d thr  %6.2f GB/s  share %5.1f%%  median %5.1f%%  "
                   "%5.1fx sgemv\n",
                   rows[i].kernel, (long long)rows[i].M, (long long)rows[i].K, rows[i].threads,
                   rows[i].gbps, 100 * rows[i].share, 100 * rows[i].median, rows[i].x_sgemv);
    for (int i = 0; i < n_drows; i++)
        printf("  decode %-4s %-10s %d thr  %5.1f tokens/s  share %5.1f%%  median %5.1f%%\n",
               drows[i].layout, drows[i].kernel, drows[i].threads, drows[i].tok_s,
               100 * drows[i].share, 100 * drows[i].median);
    print_json(json, load, rate, again, vocab);
    tc_kpool_free(pools[0]);
    tc_kpool_free(pools[1]);
    return 0;
}
