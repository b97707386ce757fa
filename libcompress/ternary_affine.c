/* Asymmetric ternary quantization: W ~ alpha * T + mu per scale group.
 *
 * Three pieces:
 *   affine             iterative ternary fitting of each group alone: the
 *                      rounding of W to the grid and the least-squares grid of
 *                      those codes alternate (each step lowers the error);
 *   affine_calibrated  GPTQ's column sweep on that grid (act-order optional),
 *                      then rounds of grid refitting in the H norm, each
 *                      followed by another sweep;
 *   refit              (alpha, mu) of fixed codes fitted by least squares in
 *                      the H norm, i.e. to the layer's outputs on the
 *                      calibration data.
 * The sweep follows ternary_gptq.c (same factor, same lazy block update); the
 * differences are the grid, the column order and the grid fitted per group. */
#include "tc/ternary.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/dtype.h"
#include "ternary_internal.h"

#define ITF_ROUNDS 32
#define SCALE_FLOOR 1e-5

static float f16_round(double v)
{
    return tc_f16_to_f32(tc_f32_to_f16((float)v));
}

void tc_ternary_affine_round(float *alpha, float *mu)
{
    float a = *alpha >= SCALE_FLOOR ? f16_round(*alpha) : f16_round(SCALE_FLOOR); /* NaN too */
    double m = isfinite(*mu) ? (double)*mu : 0.0;
    /* mu = a + l with l an f16: ggml's Q4_1 stores the lowest level l. */
    float l = f16_round(m - (double)a);
    double m2 = (double)a + (double)l;
    float out = (double)f16_round(m2) == m2 ? (float)m2 : f16_round(m);
    *alpha = a;
    *mu = out;
}

static inline int8_t tround(double v)
{
    return (int8_t)((v >= 0.5) - (v <= -0.5));
}

/* ---- iterative ternary fitting of one group -------------------------------- */

typedef struct itf_work {
    uint32_t *keys; /* 2 n */
    float *buf;     /* n */
} itf_work;

/* Codes of w rounded to the grid (alpha, mu); returns how many changed. */
static size_t round_to_grid(const float *w, size_t n, double alpha, double mu, int8_t *codes)
{
    size_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        int8_t t = tround(((double)w[i] - mu) / alpha);
        changed += t != codes[i];
        codes[i] = t;
    }
    return changed;
}

/* The least-squares (alpha, mu) of fixed codes; alpha kept where the codes
 * do not determine it (all equal). */
static void fit_grid(const float *w, size_t n, const int8_t *codes, double *alpha, double *mu)
{
    double St = 0, Stt = 0, Sw = 0, Stw = 0;
    for (size_t i = 0; i < n; i++) {
        double t = codes[i], x = w[i];
        St += t;
        Stt += t * t;
        Sw += x;
        Stw += t * x;
    }
    double N = (double)n, det = Stt * N - St * St;
    if (det > 0) {
        *alpha = (N * Stw - St * Sw) / det;
        *mu = (Stt * Sw - St * Stw) / det;
    } else {
        *mu = (Sw - *alpha * St) / N;
    }
}

/* Groups up to this many weights are fitted exactly (below); longer ones by
 * iteration. */
#define EXACT_MAX 256

/* A float's bits as a key that orders like the float (negatives reversed). */
static uint32_t order_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_float(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The exact fit: for a fixed grid the best codes round to it, so in sorted
 * order they are a run of -1, a run of 0 and a run of +1.  Every pair of
 * run lengths (a at the bottom, b at the top, cut only between unequal
 * values) is tried with its least-squares (alpha, mu) from prefix sums;
 * the pair with the largest explained sum of squares and alpha > 0 wins
 * (the first in the order tried on a tie).  Returns the thresholds: codes
 * are -1 for w <= lo, +1 for w >= hi. */
static void exact_span(const float *w, size_t n, itf_work *wk, double *alpha, double *mu, float *lo,
                       float *hi)
{
    uint32_t *keys = wk->keys;
    for (size_t i = 0; i < n; i++)
        keys[i] = order_key(w[i]);
    tc_ternary_sort_keys(keys, keys + n, n);
    float *v = wk->buf;
    for (size_t i = 0; i < n; i++)
        v[i] = key_float(keys[i]);
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i];
    double N = (double)n, best = total * total / N, bot = 0;
    *alpha = 0;
    *mu = total / N;
    *lo = -INFINITY;
    *hi = INFINITY;
    for (size_t a = 0; a <= n; a++) {
        if (a > 0)
            bot += v[a - 1];
        if (a > 0 && a < n && v[a - 1] == v[a])
            continue;
        double top = 0;
        for (size_t b = 0; a + b <= n; b++) {
            if (b > 0)
                top += v[n - b];
            if (b > 0 && b < n && v[n - b - 1] == v[n - b])
                continue;
            double St = (double)b - (double)a, Stt = (double)a + (double)b, Stw = top - bot;
            double det = Stt * N - St * St;
            if (!(det > 0))
                continue;
            double al = (N * Stw - St * total) / det;
            if (!(al > 0))
                continue;
            double m = (Stt * total - St * Stw) / det, gain = al * Stw + m * total;
            if (gain > best) {
                best = gain;
                *alpha = al;
                *mu = m;
                *lo = a > 0 ? v[a - 1] : -INFINITY;
                *hi = b > 0 ? v[n - b] : INFINITY;
            }
        }
    }
}

/* One group: codes, alpha and mu (rounded as stored). */
static void itf_span(const float *w, size_t n, itf_work *wk, int8_t *codes, float *alpha,
                     float *mu)
{
    double a, m;
    if (n <= EXACT_MAX) {
        float lo, hi;
        exact_span(w, n, wk, &a, &m, &lo, &hi);
        for (size_t i = 0; i < n; i++)
            codes[i] = (int8_t)((w[i] >= hi) - (w[i] <= lo));
    } else {
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += w[i];
        double mean = sum / (double)n;
        m = mean;
        for (size_t i = 0; i < n; i++)
            wk->buf[i] = (float)((double)w[i] - mean);
        float thr = tc_ternary_best_threshold(wk->buf, n, wk->keys, wk->keys + n, &a);
        for (size_t i = 0; i < n; i++)
            codes[i] = (int8_t)((fabsf(wk->buf[i]) >= thr) * ((wk->buf[i] > 0) - (wk->buf[i] < 0)));
        if (!(a >= SCALE_FLOOR))
            a = SCALE_FLOOR;
        for (int r = 0; r < ITF_ROUNDS; r++) {
            fit_grid(w, n, codes, &a, &m);
            if (a < 0) { /* the same grid with the codes negated */
                a = -a;
                for (size_t i = 0; i < n; i++)
                    codes[i] = (int8_t)-codes[i];
            }
            if (!(a >= SCALE_FLOOR))
                a = SCALE_FLOOR;
            if (round_to_grid(w, n, a, m, codes) == 0)
                break;
        }
    }
    float fa = (float)a, fm = (float)m;
    tc_ternary_affine_round(&fa, &fm);
    round_to_grid(w, n, fa, fm, codes);
    *alpha = fa;
    *mu = fm;
}

static int itf_work_new(itf_work *wk, size_t n)
{
    wk->keys = malloc(2 * n * sizeof *wk->keys);
    wk->buf = malloc(n * sizeof *wk->buf);
    return wk->keys && wk->buf ? 0 : -1;
}

static void itf_work_free(itf_work *wk)
{
    free(wk->keys);
    free(wk->buf);
}

/* Start and length of group gi within the row-major weight. */
static void span_of(const tc_tgroup *g, int64_t M, int64_t K, int64_t gi, size_t *start, size_t *len)
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

int tc_ternary_affine(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int8_t *codes,
                      float *scales, float *offsets, tc_error *err)
{
    int64_t ns;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    size_t s, longest;
    span_of(g, M, K, 0, &s, &longest);
    itf_work wk;
    if (itf_work_new(&wk, longest)) {
        itf_work_free(&wk);
        return tc_err(err, "ternary: out of memory fitting groups of %zu weights", longest);
    }
    for (int64_t gi = 0; gi < ns; gi++) {
        size_t n;
        span_of(g, M, K, gi, &s, &n);
        itf_span(W + s, n, &wk, codes + s, &scales[gi], &offsets[gi]);
    }
    itf_work_free(&wk);
    return TC_OK;
}

/* ---- refitting the grid in the H norm -------------------------------------- */

/* Solves the n x n system A x = b (A symmetric positive semi-definite, row
 * major, overwritten) for the change x from the current parameters; unknowns
 * whose diagonal is 0 (nothing determines them) stay put.  -1 when the
 * system is singular all the same. */
static int solve_spd(double *A, double *b, int n)
{
    double dmax = 0;
    for (int i = 0; i < n; i++)
        dmax = fmax(dmax, A[i * n + i]);
    for (int i = 0; i < n; i++) {
        double d = A[i * n + i];
        if (!(d > 1e-12 * dmax)) {
            for (int j = 0; j < n; j++)
                A[i * n + j] = A[j * n + i] = 0;
            A[i * n + i] = 1;
            b[i] = 0;
        }
    }
    /* A ridge on the change, far below the data's precision, first; a
     * larger one where the system is singular (a group of one column, whose
     * alpha and mu are one unknown): the change then stays small along the
     * direction the data do not see, which costs no error. */
    double *L = malloc((size_t)n * (size_t)n * sizeof *L), *x = malloc((size_t)n * sizeof *x);
    if (!L || !x) {
        free(L);
        free(x);
        return -1;
    }
    static const double ridges[] = {1e-10, 1e-7, 1e-4};
    for (int attempt = 0; attempt < 3; attempt++) {
        memcpy(L, A, (size_t)n * (size_t)n * sizeof *L);
        for (int i = 0; i < n; i++)
            L[i * n + i] *= 1 + ridges[attempt];
        int ok = 1;
        for (int j = 0; j < n && ok; j++) {
            double d = L[j * n + j];
            for (int k = 0; k < j; k++)
                d -= L[j * n + k] * L[j * n + k];
            if (!(d > 1e-13 * A[j * n + j])) {
                ok = 0;
                break;
            }
            L[j * n + j] = sqrt(d);
            for (int i = j + 1; i < n; i++) {
                double v = L[i * n + j];
                for (int k = 0; k < j; k++)
                    v -= L[i * n + k] * L[j * n + k];
                L[i * n + j] = v / L[j * n + j];
            }
        }
        if (!ok)
            continue;
        for (int i = 0; i < n; i++) {
            double v = b[i];
            for (int k = 0; k < i; k++)
                v -= L[i * n + k] * x[k];
            x[i] = v / L[i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double v = x[i];
            for (int k = i + 1; k < n; k++)
                v -= L[k * n + i] * x[k];
            x[i] = v / L[i * n + i];
        }
        memcpy(b, x, (size_t)n * sizeof *b);
        free(L);
        free(x);
        return 0;
    }
    free(L);
    free(x);
    return -1;
}

typedef struct refit_ctx {
    int64_t M, K, G, P;  /* G groups per row; P unknowns per group (1 or 2) */
    int64_t G_cols;      /* columns per group */
    const tc_tgroup *g;
    float *Hf;           /* K x K */
    double *Hv;          /* G x K: row h = H 1_h (offsets only) */
} refit_ctx;

static int64_t gk0(const refit_ctx *c, int64_t h)
{
    return h * c->G_cols;
}

static int64_t gk1(const refit_ctx *c, int64_t h)
{
    int64_t k1 = (h + 1) * c->G_cols;
    return k1 < c->K ? k1 : c->K;
}

/* The normal equations of rows r0 .. r0+R-1 for the change of their
 * parameters: A [R][n][n], b [R][n] with n = G P, unknown (g, 0) = alpha_g,
 * (g, 1) = mu_g; b is the gradient side at the current parameters. */
static void refit_assemble(const refit_ctx *c, const float *W, const int8_t *codes,
                           const float *scales, const float *offsets, int64_t r0, int64_t R,
                           float *T, float *P, float *Dq, double *A, double *b)
{
    int64_t K = c->K, G = c->G, n = G * c->P;
    memset(A, 0, (size_t)(R * n * n) * sizeof *A);
    memset(b, 0, (size_t)(R * n) * sizeof *b);
    /* Dq = (W - W_hat) H for the rows: the gradient side. */
    float *D = T; /* R x K scratch, reused below */
    tc_ternary_dequantize_affine(codes + (size_t)r0 * (size_t)K,
                                 scales + (c->g->kind == TC_TGROUP_TENSOR ? 0 : r0 * G),
                                 offsets ? offsets + (c->g->kind == TC_TGROUP_TENSOR ? 0 : r0 * G)
                                         : NULL,
                                 R, K, c->g, D);
    for (int64_t i = 0; i < R * K; i++)
        D[i] = W[(size_t)r0 * (size_t)K + (size_t)i] - D[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)K, (int)K, 1.0f, D,
                (int)K, c->Hf, (int)K, 0.0f, Dq, (int)K);
    for (int64_t r = 0; r < R; r++) {
        const int8_t *t = codes + (size_t)(r0 + r) * (size_t)K;
        const float *q = Dq + (size_t)r * (size_t)K;
        double *br = b + r * n;
        for (int64_t h = 0; h < G; h++) {
            double sa = 0, sm = 0;
            for (int64_t k = gk0(c, h); k < gk1(c, h); k++) {
                sa += (double)t[k] * q[k];
                sm += q[k];
            }
            br[h * c->P] = sa;
            if (c->P == 2)
                br[h * c->P + 1] = sm;
        }
    }
    /* Columns of group h: P = T_h H[h, :] gives every u_g^T H u_h and
     * 1_g^T H u_h. */
    for (int64_t h = 0; h < G; h++) {
        int64_t k0 = gk0(c, h), nh = gk1(c, h) - k0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < nh; k++)
                T[r * nh + k] = codes[(size_t)(r0 + r) * (size_t)K + (size_t)(k0 + k)];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)K, (int)nh, 1.0f, T,
                    (int)nh, c->Hf + (size_t)k0 * (size_t)K, (int)K, 0.0f, P, (int)K);
        for (int64_t r = 0; r < R; r++) {
            const int8_t *t = codes + (size_t)(r0 + r) * (size_t)K;
            const float *p = P + (size_t)r * (size_t)K;
            double *Ar = A + r * n * n;
            for (int64_t gg = 0; gg < G; gg++) {
                double aa = 0, ma = 0;
                for (int64_t k = gk0(c, gg); k < gk1(c, gg); k++) {
                    aa += (double)t[k] * p[k];
                    ma += p[k];
                }
                int64_t i = gg * c->P, j = h * c->P;
                Ar[i * n + j] = aa;
                if (c->P == 2) {
                    Ar[(i + 1) * n + j] = ma;
                    Ar[j * n + i + 1] = ma;
                }
            }
        }
    }
    if (c->P == 2)
        for (int64_t r = 0; r < R; r++)
            for (int64_t h = 0; h < G; h++)
                for (int64_t gg = 0; gg < G; gg++) {
                    double s = 0;
                    for (int64_t k = gk0(c, gg); k < gk1(c, gg); k++)
                        s += c->Hv[h * K + k];
                    A[r * n * n + (gg * 2 + 1) * n + h * 2 + 1] = s;
                }
}

/* New parameters from the solved change x; a row whose alpha would not stay
 * positive keeps its parameters. */
static void refit_apply(const refit_ctx *c, const double *x, float *sc, float *off, int64_t G)
{
    for (int64_t h = 0; h < G; h++)
        if (!((double)sc[h] + x[h * c->P] > 0))
            return;
    for (int64_t h = 0; h < G; h++) {
        float a = (float)((double)sc[h] + x[h * c->P]);
        if (off) {
            float m = (float)((double)off[h] + x[h * c->P + 1]);
            tc_ternary_affine_round(&a, &m);
            off[h] = m;
        }
        sc[h] = a;
    }
}

int tc_ternary_refit(const float *W, int64_t M, int64_t K, const tc_tgroup *g, const double *H,
                     const int8_t *codes, float *scales, float *offsets, tc_error *err)
{
    int64_t ns;
    uint64_t hb;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    if (M > INT_MAX || K > INT_MAX || tc_mul_u64((uint64_t)K, (uint64_t)K, &hb) ||
        hb > SIZE_MAX / 16)
        return tc_err(err, "ternary: weight %lld x %lld is too large to refit", (long long)M,
                      (long long)K);
    refit_ctx c = {M, K, tc_ternary_groups_per_row(g, K), offsets ? 2 : 1,
                   g->kind == TC_TGROUP_COLS ? g->cols : K, g, NULL, NULL};
    int64_t n = c.G * c.P;
    /* Rows per pass: the systems of a pass within about 32 MB. */
    int64_t R = (int64_t)(4u << 20) / (n * n + 1);
    R = R < 1 ? 1 : R > 256 ? 256 : R;
    R = R > M ? M : R;
    int tensor = g->kind == TC_TGROUP_TENSOR;
    c.Hf = malloc((size_t)hb * sizeof(float));
    c.Hv = offsets ? malloc((size_t)(c.G * K) * sizeof(double)) : NULL;
    float *T = malloc((size_t)(R * K) * sizeof(float));
    float *P = malloc((size_t)(R * K) * sizeof(float));
    float *Dq = malloc((size_t)(R * K) * sizeof(float));
    double *A = malloc((size_t)(R * n * n) * sizeof(double));
    double *b = malloc((size_t)(R * n) * sizeof(double));
    double *At = tensor ? calloc((size_t)(n * n), sizeof(double)) : NULL;
    double *bt = tensor ? calloc((size_t)n, sizeof(double)) : NULL;
    int rc = TC_OK;
    if (!c.Hf || (offsets && !c.Hv) || !T || !P || !Dq || !A || !b || (tensor && (!At || !bt)))
        rc = tc_err(err, "ternary: out of memory refitting a %lld x %lld weight", (long long)M,
                    (long long)K);
    if (rc == TC_OK) {
        for (size_t i = 0; i < (size_t)hb; i++)
            c.Hf[i] = (float)H[i];
        for (int64_t h = 0; offsets && h < c.G; h++)
            for (int64_t i = 0; i < K; i++) {
                double s = 0;
                for (int64_t k = gk0(&c, h); k < gk1(&c, h); k++)
                    s += H[(size_t)i * (size_t)K + (size_t)k];
                c.Hv[h * K + i] = s;
            }
        for (int64_t r0 = 0; r0 < M; r0 += R) {
            int64_t rows = M - r0 < R ? M - r0 : R;
            refit_assemble(&c, W, codes, scales, offsets, r0, rows, T, P, Dq, A, b);
            for (int64_t r = 0; r < rows; r++) {
                if (tensor) {
                    for (int64_t i = 0; i < n * n; i++)
                        At[i] += A[r * n * n + i];
                    for (int64_t i = 0; i < n; i++)
                        bt[i] += b[r * n + i];
                    continue;
                }
                double *x = b + r * n;
                if (solve_spd(A + r * n * n, x, (int)n) == 0)
                    refit_apply(&c, x, scales + (r0 + r) * c.G, offsets ? offsets + (r0 + r) * c.G : NULL,
                                c.G);
            }
        }
        if (tensor && solve_spd(At, bt, (int)n) == 0)
            refit_apply(&c, bt, scales, offsets, 1);
    }
    free(c.Hf);
    free(c.Hv);
    free(T);
    free(P);
    free(Dq);
    free(A);
    free(b);
    free(At);
    free(bt);
    return rc;
}

int tc_ternary_h_error(const float *W, int64_t M, int64_t K, const tc_tgroup *g, const double *H,
                       const int8_t *codes, const float *scales, const float *offsets,
                       double *out, tc_error *err)
{
    int64_t ns;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    if (M > INT_MAX || K > INT_MAX)
        return tc_err(err, "ternary: weight %lld x %lld is too large", (long long)M, (long long)K);
    size_t nw = (size_t)M * (size_t)K;
    float *D = malloc(nw * sizeof *D), *E = malloc(nw * sizeof *E);
    float *Hf = malloc((size_t)K * (size_t)K * sizeof *Hf);
    if (!D || !E || !Hf) {
        free(D);
        free(E);
        free(Hf);
        return tc_err(err, "ternary: out of memory measuring a %lld x %lld weight", (long long)M,
                      (long long)K);
    }
    for (size_t i = 0; i < (size_t)K * (size_t)K; i++)
        Hf[i] = (float)H[i];
    tc_ternary_dequantize_affine(codes, scales, offsets, M, K, g, D);
    for (size_t i = 0; i < nw; i++)
        D[i] = W[i] - D[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)K, (int)K, 1.0f, D, (int)K,
                Hf, (int)K, 0.0f, E, (int)K);
    double s = 0;
    for (size_t i = 0; i < nw; i++)
        s += (double)D[i] * E[i];
    *out = s;
    free(D);
    free(E);
    free(Hf);
    return TC_OK;
}

/* ---- the column sweep on the affine grid ------------------------------------ */

typedef struct asweep {
    int M, K, B;
    const tc_tgroup *g;
    const int32_t *perm; /* sweep position -> column */
    float *scales, *offsets;
    const double *linv;
    float *work;   /* M x K, corrected weights, columns in sweep order */
    float *wb;     /* B x M: the block transposed */
    float *eb;     /* B x M: scaled errors */
    float *urest;  /* B x (K - B) */
    int8_t *codes; /* M x K, columns in the weight's order */
    int dynamic;   /* fit each group's grid when the sweep reaches it */
    itf_work itf;
    int8_t *tmp_codes;
} asweep;

static inline double u_at(const double *linv, int n, int i, int j)
{
    return linv[(size_t)(n - 1 - i) * n + (n - 1 - j)];
}

static void asweep_column(asweep *s, int q, int j)
{
    float *w = s->wb + (size_t)j * s->M, *e = s->eb + (size_t)j * s->M;
    double inv_d = 1.0 / u_at(s->linv, s->K, q, q);
    int k = s->perm[q];
    for (int m = 0; m < s->M; m++) {
        int64_t gi = tc_ternary_scale_index(s->g, s->K, m, k);
        double a = s->scales[gi], mu = s->offsets[gi];
        int8_t t = tround(((double)w[m] - mu) / a);
        s->codes[(size_t)m * s->K + k] = t;
        e[m] = (float)(((double)w[m] - (a * t + mu)) * inv_d);
    }
}

/* The grid of the group that starts at this block (dynamic only): fitted row
 * by row to the block's corrected weights. */
static void asweep_fit_block(asweep *s, int q0, int nb)
{
    for (int m = 0; m < s->M; m++) {
        float *row = (float *)s->urest; /* free until the block's update */
        for (int j = 0; j < nb; j++)
            row[j] = s->wb[(size_t)j * s->M + m];
        int64_t gi = tc_ternary_scale_index(s->g, s->K, m, s->perm[q0]);
        itf_span(row, (size_t)nb, &s->itf, s->tmp_codes, &s->scales[gi], &s->offsets[gi]);
    }
}

static void asweep_block(asweep *s, int q0, int nb)
{
    for (int j = 0; j < nb; j++)
        for (int m = 0; m < s->M; m++)
            s->wb[(size_t)j * s->M + m] = s->work[(size_t)m * s->K + q0 + j];
    if (s->dynamic)
        asweep_fit_block(s, q0, nb);
    for (int j = 0; j < nb; j++) {
        asweep_column(s, q0 + j, j);
        const float *e = s->eb + (size_t)j * s->M;
        for (int jj = j + 1; jj < nb; jj++) {
            float u = (float)u_at(s->linv, s->K, q0 + j, q0 + jj);
            float *w = s->wb + (size_t)jj * s->M;
            for (int m = 0; m < s->M; m++)
                w[m] -= e[m] * u;
        }
    }
    int rest = s->K - q0 - nb;
    if (rest == 0)
        return;
    for (int j = 0; j < nb; j++)
        for (int r = 0; r < rest; r++)
            s->urest[(size_t)j * rest + r] = (float)u_at(s->linv, s->K, q0 + j, q0 + nb + r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->M, rest, nb, -1.0f, s->eb, s->M,
                s->urest, rest, 1.0f, s->work + q0 + nb, s->K);
}

static void asweep_run(asweep *s, const float *W)
{
    for (int m = 0; m < s->M; m++)
        for (int q = 0; q < s->K; q++)
            s->work[(size_t)m * s->K + q] = W[(size_t)m * s->K + s->perm[q]];
    for (int q0 = 0; q0 < s->K; q0 += s->B)
        asweep_block(s, q0, s->K - q0 < s->B ? s->K - q0 : s->B);
}

/* Columns by decreasing H[k][k], ties by index so that the order is
 * deterministic (a merge sort: qsort has no context argument in C11);
 * dead inputs (0) come last.  diag has room for 2 K doubles: the second half
 * holds the merge's scratch indices. */
static void act_order(const double *H, int K, int32_t *perm, double *diag)
{
    for (int k = 0; k < K; k++) {
        perm[k] = k;
        diag[k] = H[(size_t)k * K + k];
    }
    for (int w = 1; w < K; w *= 2) {
        int32_t *tmp = (int32_t *)(diag + K); /* K more doubles of room: 2K int32 */
        for (int lo = 0; lo < K; lo += 2 * w) {
            int mid = lo + w < K ? lo + w : K, hi = lo + 2 * w < K ? lo + 2 * w : K;
            int a = lo, b = mid, o = lo;
            while (a < mid || b < hi) {
                int take_a = b >= hi || (a < mid && (diag[perm[a]] > diag[perm[b]] ||
                                                     (diag[perm[a]] == diag[perm[b]] && perm[a] < perm[b])));
                tmp[o++] = take_a ? perm[a++] : perm[b++];
            }
        }
        memcpy(perm, tmp, (size_t)K * sizeof *perm);
    }
}

int tc_ternary_affine_calibrated(const float *W, int64_t M, int64_t K, const tc_tgroup *g,
                                 const double *H, const tc_ternary_affine_calib_opts *opts,
                                 int8_t *codes, float *scales, float *offsets, tc_error *err)
{
    tc_ternary_affine_calib_opts o = {0.01, 0, 0};
    int64_t ns;
    uint64_t hb;
    if (opts)
        o = *opts;
    if (!(o.damp_frac > 0))
        o.damp_frac = 0.01;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    if (M > INT_MAX || K > INT_MAX || tc_mul_u64((uint64_t)K, (uint64_t)K, &hb) ||
        tc_mul_u64(hb, sizeof(double), &hb) || hb > SIZE_MAX / 2)
        return tc_err(err, "ternary: weight %lld x %lld is too large for calibration",
                      (long long)M, (long long)K);
    int dynamic = g->kind == TC_TGROUP_COLS && !o.act_order;
    int B = dynamic ? g->cols : 128;
    B = B < K ? B : (int)K;
    asweep s = {(int)M, (int)K, B, g, NULL, scales, offsets, NULL, NULL, NULL, NULL, NULL, codes,
                dynamic, {NULL, NULL}, NULL};
    size_t nw = (size_t)M * (size_t)K;
    double *linv = malloc((size_t)hb);
    int32_t *perm = malloc((size_t)K * sizeof *perm);
    double *diag = malloc((size_t)K * 2 * sizeof *diag);
    s.work = malloc(nw * sizeof(float));
    s.wb = malloc((size_t)B * (size_t)M * sizeof(float));
    s.eb = malloc((size_t)B * (size_t)M * sizeof(float));
    s.urest = malloc(((size_t)B * (size_t)K + (size_t)B) * sizeof(float));
    s.tmp_codes = malloc((size_t)B);
    int8_t *best_codes = o.refit > 0 ? malloc(nw) : NULL;
    float *best_sc = o.refit > 0 ? malloc((size_t)ns * sizeof(float)) : NULL;
    float *best_off = o.refit > 0 ? malloc((size_t)ns * sizeof(float)) : NULL;
    int rc = TC_OK;
    if (!linv || !perm || !diag || !s.work || !s.wb || !s.eb || !s.urest || !s.tmp_codes ||
        itf_work_new(&s.itf, (size_t)B) ||
        (o.refit > 0 && (!best_codes || !best_sc || !best_off)))
        rc = tc_err(err, "ternary: out of memory calibrating a %lld x %lld weight", (long long)M,
                    (long long)K);
    if (rc == TC_OK) {
        if (o.act_order)
            act_order(H, (int)K, perm, diag);
        else
            for (int k = 0; k < K; k++)
                perm[k] = k;
        s.perm = perm;
        rc = tc_ternary_inverse_factor(H, (int)K, perm, o.damp_frac, linv, err);
    }
    /* The static grid: each group fitted alone on the original weights. */
    if (rc == TC_OK && !dynamic)
        rc = tc_ternary_affine(W, M, K, g, codes, scales, offsets, err);
    double best = INFINITY;
    for (int round = 0; rc == TC_OK; round++) {
        s.linv = linv;
        asweep_run(&s, W);
        s.dynamic = 0; /* later rounds sweep on the refitted grid */
        if (o.refit <= 0)
            break;
        double e;
        if ((rc = tc_ternary_h_error(W, M, K, g, H, codes, scales, offsets, &e, err)))
            break;
        if (e < best) {
            best = e;
            memcpy(best_codes, codes, nw);
            memcpy(best_sc, scales, (size_t)ns * sizeof(float));
            memcpy(best_off, offsets, (size_t)ns * sizeof(float));
        }
        if (round == o.refit)
            break;
        if ((rc = tc_ternary_refit(W, M, K, g, H, codes, scales, offsets, err)))
            break;
        if ((rc = tc_ternary_h_error(W, M, K, g, H, codes, scales, offsets, &e, err)))
            break;
        if (e < best) {
            best = e;
            memcpy(best_codes, codes, nw);
            memcpy(best_sc, scales, (size_t)ns * sizeof(float));
            memcpy(best_off, offsets, (size_t)ns * sizeof(float));
        }
    }
    if (rc == TC_OK && o.refit > 0) {
        memcpy(codes, best_codes, nw);
        memcpy(scales, best_sc, (size_t)ns * sizeof(float));
        memcpy(offsets, best_off, (size_t)ns * sizeof(float));
    }
    itf_work_free(&s.itf);
    free(linv);
    free(perm);
    free(diag);
    free(s.work);
    free(s.wb);
    free(s.eb);
    free(s.urest);
    free(s.tmp_codes);
    free(best_codes);
    free(best_sc);
    free(best_off);
    return rc;
}
