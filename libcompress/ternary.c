/* Ternary quantizers without calibration data (absmean, optimal) and the
 * measurements shared by all quantizers.
 *
 * Every scale group is one contiguous span of the row-major weight: the whole
 * matrix, one row, or `cols` columns of one row. Group i's scale is scales[i],
 * so the quantizers walk spans in order and never look at (m, k) pairs. */
#include "tc/ternary.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "ternary_internal.h"

#define SCALE_FLOOR 1e-5f

/* The hot loops over a span are written once (TC_BODY) and compiled twice on
 * x86-64: for the baseline and for AVX2, chosen at run time.  The two do the
 * same operations in the same order on the same lanes (no FMA), so they give
 * the same bits; AVX2 only does them on twice as many lanes at once. */
#define TC_BODY static inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__)
#define TC_DISPATCH 1
#define TC_AVX2 __attribute__((target("avx2")))
#endif

int64_t tc_ternary_groups_per_row(const tc_tgroup *g, int64_t K)
{
    return g->kind == TC_TGROUP_COLS ? (K + g->cols - 1) / g->cols : 1;
}

int tc_ternary_scale_count(const tc_tgroup *g, int64_t M, int64_t K, int64_t *n_scales,
                           tc_error *err)
{
    uint64_t n;
    if (M < 1 || K < 1)
        return tc_err(err, "ternary: weight shape %lld x %lld is empty", (long long)M,
                      (long long)K);
    /* Bytes of the fp32 weight must be addressable: the quantizers index it
     * with size_t. */
    if (tc_mul_u64((uint64_t)M, (uint64_t)K, &n) || tc_mul_u64(n, 4, &n) || n > SIZE_MAX / 2)
        return tc_err(err, "ternary: weight shape %lld x %lld is too large", (long long)M,
                      (long long)K);
    switch (g->kind) {
    case TC_TGROUP_TENSOR:
        *n_scales = 1;
        return TC_OK;
    case TC_TGROUP_ROW:
        *n_scales = M;
        return TC_OK;
    case TC_TGROUP_COLS:
        if (g->cols < TC_TGROUP_COLS_MIN || g->cols > TC_TGROUP_COLS_MAX)
            return tc_err(err, "ternary: group of %d columns is outside %d..%d", (int)g->cols,
                          TC_TGROUP_COLS_MIN, TC_TGROUP_COLS_MAX);
        *n_scales = M * tc_ternary_groups_per_row(g, K);
        return TC_OK;
    }
    return tc_err(err, "ternary: unknown grouping kind %d", (int)g->kind);
}

/* Start and length of scale group gi. */
static void group_span(const tc_tgroup *g, int64_t M, int64_t K, int64_t gi, size_t *start,
                       size_t *len)
{
    if (g->kind == TC_TGROUP_TENSOR) {
        *start = 0;
        *len = (size_t)M * (size_t)K;
    } else if (g->kind == TC_TGROUP_ROW) {
        *start = (size_t)gi * (size_t)K;
        *len = (size_t)K;
    } else {
        int64_t per_row = tc_ternary_groups_per_row(g, K);
        int64_t m = gi / per_row, k0 = (gi % per_row) * g->cols;
        *start = (size_t)m * (size_t)K + (size_t)k0;
        *len = (size_t)(K - k0 < g->cols ? K - k0 : g->cols);
    }
}

/* The ternary rounding rule clamp(roundf(v), -1, 1) with roundf's halves away
 * from zero: nonzero exactly when |v| >= 0.5. Written as comparisons so that
 * the loops around it vectorise. */
TC_BODY int8_t ternary_round(float v)
{
    return (int8_t)((v >= 0.5f) - (v <= -0.5f));
}

TC_BODY void round_span_body(const float *w, size_t n, float scale, int8_t *codes)
{
    for (size_t i = 0; i < n; i++)
        codes[i] = ternary_round(w[i] / scale);
}

#ifdef TC_DISPATCH
TC_AVX2 static void round_span_avx2(const float *w, size_t n, float scale, int8_t *codes)
{
    round_span_body(w, n, scale, codes);
}
#endif

static void round_span(const float *w, size_t n, float scale, int8_t *codes)
{
#ifdef TC_DISPATCH
    if (__builtin_cpu_supports("avx2")) {
        round_span_avx2(w, n, scale, codes);
        return;
    }
#endif
    round_span_body(w, n, scale, codes);
}

/* sum |w| with independent float lanes (vectorisable), folded into a double
 * every few thousand elements so that long spans keep their precision. */
TC_BODY double abs_sum_body(const float *w, size_t n)
{
    enum { LANES = 16, CHUNK = 4096 };
    double total = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i < CHUNK ? n : i + CHUNK;
        float acc[LANES] = {0};
        for (; i + LANES <= end; i += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += fabsf(w[i + j]);
        for (; i < end; i++)
            acc[0] += fabsf(w[i]);
        for (int j = 0; j < LANES; j++)
            total += acc[j];
    }
    return total;
}

#ifdef TC_DISPATCH
TC_AVX2 static double abs_sum_avx2(const float *w, size_t n)
{
    return abs_sum_body(w, n);
}
#endif

static double abs_sum(const float *w, size_t n)
{
#ifdef TC_DISPATCH
    if (__builtin_cpu_supports("avx2"))
        return abs_sum_avx2(w, n);
#endif
    return abs_sum_body(w, n);
}

int tc_ternary_absmean(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                       float *scales, tc_error *err)
{
    int64_t ns;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    for (int64_t gi = 0; gi < ns; gi++) {
        size_t s, n;
        group_span(g, M, K, gi, &s, &n);
        float gamma = (float)(abs_sum(W + s, n) / (double)n);
        if (!(gamma >= SCALE_FLOOR)) /* also catches NaN */
            gamma = SCALE_FLOOR;
        scales[gi] = gamma;
        round_span(W + s, n, gamma, codes + s);
    }
    return TC_OK;
}

/* ---- optimal: exact least-squares threshold ------------------------------ */

/* Sorts non-negative float bit patterns ascending (as integers they order
 * like the floats). LSD radix, 8 bits a pass, with all four histograms taken
 * in one read and passes skipped where every key shares the digit; insertion
 * sort for short spans. */
void tc_ternary_sort_keys(uint32_t *a, uint32_t *tmp, size_t n)
{
    if (n < 64) {
        for (size_t i = 1; i < n; i++) {
            uint32_t v = a[i];
            size_t j = i;
            for (; j > 0 && a[j - 1] > v; j--)
                a[j] = a[j - 1];
            a[j] = v;
        }
        return;
    }
    size_t count[4][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 4; d++)
            count[d][(a[i] >> 8 * d) & 255]++;
    uint32_t *src = a, *dst = tmp;
    for (int d = 0; d < 4; d++) {
        int shift = 8 * d;
        size_t *c = count[d];
        if (c[(src[0] >> shift) & 255] == n)
            continue;
        size_t pos = 0;
        for (int v = 0; v < 256; v++) {
            size_t k = c[v];
            c[v] = pos;
            pos += k;
        }
        for (size_t i = 0; i < n; i++)
            dst[c[(src[i] >> shift) & 255]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

static uint32_t abs_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x7fffffffu;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* For the top-k magnitudes the best scale is their mean and the error is
 * ||w||^2 - S_k^2 / k, so the best threshold maximises S_k^2 / k. Only k that
 * end a run of equal magnitudes are candidates, so that the chosen set is
 * exactly {|w| >= threshold}. Returns the threshold (+inf for none). */
float tc_ternary_best_threshold(const float *w, size_t n, uint32_t *keys, uint32_t *tmp,
                                double *alpha)
{
    for (size_t i = 0; i < n; i++)
        keys[i] = abs_bits(w[i]);
    tc_ternary_sort_keys(keys, tmp, n);
    /* v_k = S_k^2 / k compared as S_k^2 * k_best > S_best^2 * k: no division
     * in the scan. */
    double sum = 0, best_sum = 0, best_sq = 0, best_k = 1;
    float thr = INFINITY;
    *alpha = 0;
    for (size_t k = 1; k <= n; k++) {
        size_t i = n - k;
        float a = bits_float(keys[i]);
        sum += a;
        if (i > 0 && keys[i - 1] == keys[i])
            continue;
        if (sum * sum * best_k > best_sq * (double)k) {
            best_sum = sum;
            best_sq = sum * sum;
            best_k = (double)k;
            thr = a;
        }
    }
    if (thr < INFINITY)
        *alpha = best_sum / best_k;
    return thr;
}

static void threshold_span(const float *w, size_t n, float thr, int8_t *codes)
{
    /* Branch-free: whether a weight clears the threshold is a coin flip to
     * the branch predictor. */
    for (size_t i = 0; i < n; i++)
        codes[i] = (int8_t)((fabsf(w[i]) >= thr) * ((w[i] > 0) - (w[i] < 0)));
}

int tc_ternary_optimal(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                       float *scales, tc_error *err)
{
    int64_t ns;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    size_t s, longest;
    group_span(g, M, K, 0, &s, &longest);
    uint32_t *keys = malloc(2 * longest * sizeof *keys);
    if (!keys)
        return tc_err(err, "ternary: out of memory sorting groups of %zu weights", longest);
    for (int64_t gi = 0; gi < ns; gi++) {
        size_t n;
        double alpha;
        group_span(g, M, K, gi, &s, &n);
        float thr = tc_ternary_best_threshold(W + s, n, keys, keys + longest, &alpha);
        float scale = (float)alpha;
        scales[gi] = scale >= SCALE_FLOOR ? scale : SCALE_FLOOR;
        threshold_span(W + s, n, thr, codes + s);
    }
    free(keys);
    return TC_OK;
}

/* ---- measurements ------------------------------------------------------- */

void tc_ternary_dequantize_affine(const int8_t *codes, const float *scales, const float *offsets,
                                  int64_t M, int64_t K, const tc_tgroup *g, float *W_hat)
{
    int64_t per_row = tc_ternary_groups_per_row(g, K);
    for (int64_t m = 0; m < M; m++) {
        const int8_t *c = codes + (size_t)m * (size_t)K;
        float *o = W_hat + (size_t)m * (size_t)K;
        for (int64_t j = 0; j < per_row; j++) {
            int64_t k0 = g->kind == TC_TGROUP_COLS ? j * g->cols : 0;
            int64_t k1 = g->kind == TC_TGROUP_COLS && k0 + g->cols < K ? k0 + g->cols : K;
            int64_t gi = tc_ternary_scale_index(g, K, m, k0);
            float s = scales[gi];
            if (offsets) {
                float mu = offsets[gi];
                for (int64_t k = k0; k < k1; k++)
                    o[k] = s * (float)c[k] + mu;
            } else {
                for (int64_t k = k0; k < k1; k++)
                    o[k] = s * (float)c[k];
            }
        }
    }
}

void tc_ternary_dequantize(const int8_t *codes, const float *scales, int64_t M, int64_t K,
                           const tc_tgroup *g, float *W_hat)
{
    tc_ternary_dequantize_affine(codes, scales, NULL, M, K, g, W_hat);
}

/* Squared error and squared weight of one scale group, in independent
 * double lanes so that the loop vectorises. */
TC_BODY void span_errors_body(const float *w, const int8_t *c, size_t n, double scale, double off,
                             double *e2, double *r2, uint64_t *zeros)
{
    enum { LANES = 8 };
    double ea[LANES] = {0}, ra[LANES] = {0};
    uint64_t z = 0;
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double x = w[i + j], d = x - (scale * c[i + j] + off);
            ea[j] += d * d;
            ra[j] += x * x;
            z += c[i + j] == 0;
        }
    for (; i < n; i++) {
        double x = w[i], d = x - (scale * c[i] + off);
        ea[0] += d * d;
        ra[0] += x * x;
        z += c[i] == 0;
    }
    for (int j = 0; j < LANES; j++) {
        *e2 += ea[j];
        *r2 += ra[j];
    }
    *zeros += z;
}

#ifdef TC_DISPATCH
TC_AVX2 static void span_errors_avx2(const float *w, const int8_t *c, size_t n, double scale, double off,
                                     double *e2, double *r2, uint64_t *zeros)
{
    span_errors_body(w, c, n, scale, off, e2, r2, zeros);
}
#endif

static void span_errors(const float *w, const int8_t *c, size_t n, double scale, double off, double *e2,
                        double *r2, uint64_t *zeros)
{
#ifdef TC_DISPATCH
    if (__builtin_cpu_supports("avx2")) {
        span_errors_avx2(w, c, n, scale, off, e2, r2, zeros);
        return;
    }
#endif
    span_errors_body(w, c, n, scale, off, e2, r2, zeros);
}

void tc_ternary_report_add_affine(const float *W, const int8_t *codes, const float *scales,
                                  const float *offsets, int64_t M, int64_t K, const tc_tgroup *g,
                                  tc_ternary_report *acc)
{
    int64_t ns = g->kind == TC_TGROUP_TENSOR ? 1 : M * tc_ternary_groups_per_row(g, K);
    for (int64_t gi = 0; gi < ns; gi++) {
        size_t s, n;
        group_span(g, M, K, gi, &s, &n);
        /* + 0.0 leaves scale * code exact: the symmetric sums are unchanged. */
        span_errors(W + s, codes + s, n, (double)scales[gi], offsets ? (double)offsets[gi] : 0.0,
                    &acc->error_sq, &acc->weight_sq, &acc->zeros);
    }
}

void tc_ternary_report_add(const float *W, const int8_t *codes, const float *scales, int64_t M,
                           int64_t K, const tc_tgroup *g, tc_ternary_report *acc)
{
    tc_ternary_report_add_affine(W, codes, scales, NULL, M, K, g, acc);
}

void tc_ternary_report_finish(tc_ternary_report *acc, int64_t M, int64_t K)
{
    acc->zero_share = (double)acc->zeros / ((double)M * (double)K);
    acc->rel_weight_error = acc->weight_sq > 0 ? sqrt(acc->error_sq / acc->weight_sq) : 0;
}

void tc_ternary_report_make(const float *W, const int8_t *codes, const float *scales, int64_t M,
                            int64_t K, const tc_tgroup *g, tc_ternary_report *out)
{
    memset(out, 0, sizeof *out);
    tc_ternary_report_add(W, codes, scales, M, K, g, out);
    tc_ternary_report_finish(out, M, K);
}

static double sum_squares(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return s;
}

int tc_ternary_output_error(const float *W, const int8_t *codes, const float *scales, int64_t M,
                            int64_t K, const tc_tgroup *g, const float *X, int64_t N,
                            double *rel, tc_error *err)
{
    return tc_ternary_output_error_affine(W, codes, scales, NULL, M, K, g, X, N, rel, err);
}

int tc_ternary_output_error_affine(const float *W, const int8_t *codes, const float *scales,
                                   const float *offsets, int64_t M, int64_t K, const tc_tgroup *g,
                                   const float *X, int64_t N, double *rel, tc_error *err)
{
    int64_t ns;
    uint64_t ny;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    if (N < 1 || N > INT_MAX || M > INT_MAX || K > INT_MAX ||
        tc_mul_u64((uint64_t)N, (uint64_t)M, &ny) || ny > SIZE_MAX / 8)
        return tc_err(err, "ternary: activation sample of %lld rows is unusable", (long long)N);
    size_t nw = (size_t)M * (size_t)K;
    float *D = malloc(nw * sizeof *D);
    float *Y = malloc((size_t)ny * sizeof *Y);
    float *E = malloc((size_t)ny * sizeof *E);
    if (!D || !Y || !E) {
        free(D);
        free(Y);
        free(E);
        return tc_err(err, "ternary: out of memory measuring output error of %lld x %lld",
                      (long long)M, (long long)K);
    }
    /* X (W - W_hat)^T directly: the difference of two large products would
     * cancel most of its digits. */
    tc_ternary_dequantize_affine(codes, scales, offsets, M, K, g, D);
    for (size_t i = 0; i < nw; i++)
        D[i] = W[i] - D[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)M, (int)K, 1.0f, X, (int)K,
                W, (int)K, 0.0f, Y, (int)M);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)M, (int)K, 1.0f, X, (int)K,
                D, (int)K, 0.0f, E, (int)M);
    double y2 = sum_squares(Y, (size_t)ny), e2 = sum_squares(E, (size_t)ny);
    *rel = y2 > 0 ? sqrt(e2 / y2) : 0;
    free(D);
    free(Y);
    free(E);
    return TC_OK;
}
