/* Calibrated ternary quantization: GPTQ with the grid {-s, 0, +s}.
 *
 * Quantizing column q of W changes the layer's output on the calibration set
 * by X[:, q] * err; GPTQ cancels the part of that change the remaining
 * columns can absorb, which is err * Hinv[q, q+1:] / Hinv[q, q] after q has
 * been eliminated. The rows of the upper Cholesky factor U of H^-1
 * (H^-1 = U^T U) hold exactly those ratios for every step at once, so the
 * whole pass needs U and nothing else from H.
 *
 * U without forming H^-1: with P the index reversal, factor P H P = L L^T;
 * then H^-1 = (P L^-T P)(P L^-1 P) and P L^-1 P is upper triangular with a
 * positive diagonal, i.e. U[i][j] = Linv[K-1-i][K-1-j]. One Cholesky and one
 * triangular inverse, both blocked so that OpenBLAS does the cubic work. */
#include "tc/ternary.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "ternary_internal.h"

#define PANEL 64      /* columns per panel of the blocked factorisations */
#define MAX_RETRIES 6 /* damping raised tenfold each time the factorisation fails */

/* ---- dense fp64 factorisations (row-major, lower triangle) --------------- */

/* In-place Cholesky of an n x n block; 0 on success, -1 at a non-positive
 * pivot (NaN included). */
static int chol_small(double *a, int n, int lda)
{
    for (int j = 0; j < n; j++) {
        double *rj = a + (size_t)j * lda;
        double d = rj[j];
        for (int k = 0; k < j; k++)
            d -= rj[k] * rj[k];
        if (!(d > 0))
            return -1;
        rj[j] = sqrt(d);
        for (int i = j + 1; i < n; i++) {
            double *ri = a + (size_t)i * lda;
            double s = ri[j];
            for (int k = 0; k < j; k++)
                s -= ri[k] * rj[k];
            ri[j] = s / rj[j];
        }
    }
    return 0;
}

/* Right-looking blocked Cholesky: factor a panel, solve the rows below it,
 * update the trailing matrix with one rank-PANEL syrk. */
static int chol(double *a, int n)
{
    for (int j0 = 0; j0 < n; j0 += PANEL) {
        int jb = n - j0 < PANEL ? n - j0 : PANEL;
        double *a11 = a + (size_t)j0 * n + j0;
        if (chol_small(a11, jb, n))
            return -1;
        int n2 = n - j0 - jb;
        if (n2 == 0)
            break;
        double *a21 = a + (size_t)(j0 + jb) * n + j0;
        double *a22 = a21 + jb;
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, n2, jb, 1.0,
                    a11, n, a21, n);
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n2, jb, -1.0, a21, n, 1.0, a22, n);
    }
    return 0;
}

/* Inverts an n x n lower-triangular block in place, last column first: column
 * j of the inverse below the diagonal is -Linv22 * l21 / l_jj, and Linv22 is
 * already in place. */
static void trinv_small(double *a, int n, int lda)
{
    for (int j = n - 1; j >= 0; j--) {
        double *rj = a + (size_t)j * lda;
        rj[j] = 1.0 / rj[j];
        double neg = -rj[j];
        /* x = Linv22 * x from the bottom up, so each x[k] is read before it
         * is overwritten. */
        for (int i = n - 1; i > j; i--) {
            double *ri = a + (size_t)i * lda;
            double s = 0;
            for (int k = j + 1; k <= i; k++)
                s += ri[k] * a[(size_t)k * lda + j];
            ri[j] = s * neg;
        }
    }
}

/* Blocked in-place inverse of a lower-triangular matrix, last panel first:
 * [L11 0; L21 L22]^-1 = [L11^-1 0; -L22^-1 L21 L11^-1  L22^-1]. */
static void trinv(double *a, int n)
{
    int last = (n - 1) / PANEL * PANEL;
    for (int j0 = last; j0 >= 0; j0 -= PANEL) {
        int jb = n - j0 < PANEL ? n - j0 : PANEL;
        double *a11 = a + (size_t)j0 * n + j0;
        int n2 = n - j0 - jb;
        if (n2 > 0) {
            double *a21 = a + (size_t)(j0 + jb) * n + j0;
            double *a22 = a21 + jb;
            cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n2, jb,
                        1.0, a22, n, a21, n);
            cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, n2, jb,
                        -1.0, a11, n, a21, n);
        }
        trinv_small(a11, jb, n);
    }
}

/* P (H + lambda I) P with dead inputs (zero diagonal) isolated: their row and
 * column are cleared and the diagonal set to 1, so they neither receive nor
 * pass on any correction. perm (NULL: none) orders the columns first: P H P
 * is then taken of H[perm][perm]. Returns mean(diag) after that fix. */
static double load_reversed(const double *H, int n, const int32_t *perm, double *a)
{
    double diag_sum = 0;
    for (int i = 0; i < n; i++) {
        int si = perm ? perm[n - 1 - i] : n - 1 - i;
        const double *src = H + (size_t)si * n;
        double *dst = a + (size_t)i * n;
        if (perm)
            for (int j = 0; j < n; j++)
                dst[j] = src[perm[n - 1 - j]];
        else
            for (int j = 0; j < n; j++)
                dst[j] = src[n - 1 - j];
    }
    for (int i = 0; i < n; i++) {
        if (a[(size_t)i * n + i] == 0) {
            for (int j = 0; j < n; j++)
                a[(size_t)i * n + j] = a[(size_t)j * n + i] = 0;
            a[(size_t)i * n + i] = 1;
        }
        diag_sum += a[(size_t)i * n + i];
    }
    return diag_sum / n;
}

/* Linv of the reversed, damped H (columns in perm's order), in a (n x n). */
int tc_ternary_inverse_factor(const double *H, int n, const int32_t *perm, double damp_frac,
                              double *a, tc_error *err)
{
    double lambda = -1;
    for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
        double mean = load_reversed(H, n, perm, a);
        if (lambda < 0)
            lambda = damp_frac * mean;
        if (!(lambda > 0))
            lambda = damp_frac;
        for (int i = 0; i < n; i++)
            a[(size_t)i * n + i] += lambda;
        if (chol(a, n) == 0) {
            trinv(a, n);
            return TC_OK;
        }
        lambda *= 10;
    }
    return tc_err(err,
                  "ternary: calibration Hessian (%d x %d) is not positive definite even with "
                  "damping %g",
                  n, n, lambda / 10);
}

/* U[i][j] for j >= i. */
static inline double u_at(const double *linv, int n, int i, int j)
{
    return linv[(size_t)(n - 1 - i) * n + (n - 1 - j)];
}

/* ---- the column sweep ---------------------------------------------------- */

typedef struct sweep {
    int M, K, B;
    const tc_tgroup *g;
    const float *scales;
    const double *linv;
    float *work;   /* M x K, the weight as corrected so far */
    float *wb;     /* B x M, the current block transposed: one column per row */
    float *eb;     /* B x M, scaled errors of the block's columns */
    float *urest;  /* B x (K - B), U rows of the block right of it */
    int8_t *codes; /* M x K output */
} sweep;

static inline int8_t ternary_round(float v)
{
    return (int8_t)((v >= 0.5f) - (v <= -0.5f));
}

/* Quantizes column q (row j of the block) and records its scaled error. */
static void quantize_column(sweep *s, int q, int j)
{
    float *w = s->wb + (size_t)j * s->M, *e = s->eb + (size_t)j * s->M;
    float inv_d = (float)(1.0 / u_at(s->linv, s->K, q, q));
    for (int m = 0; m < s->M; m++) {
        float scale = s->scales[tc_ternary_scale_index(s->g, s->K, m, q)];
        int8_t c = ternary_round(w[m] / scale);
        s->codes[(size_t)m * s->K + q] = c;
        e[m] = (w[m] - scale * (float)c) * inv_d;
    }
}

static void sweep_block(sweep *s, int q0, int nb)
{
    for (int j = 0; j < nb; j++)
        for (int m = 0; m < s->M; m++)
            s->wb[(size_t)j * s->M + m] = s->work[(size_t)m * s->K + q0 + j];
    for (int j = 0; j < nb; j++) {
        quantize_column(s, q0 + j, j);
        const float *e = s->eb + (size_t)j * s->M;
        for (int jj = j + 1; jj < nb; jj++) {
            float u = (float)u_at(s->linv, s->K, q0 + j, q0 + jj);
            float *w = s->wb + (size_t)jj * s->M;
            for (int m = 0; m < s->M; m++)
                w[m] -= e[m] * u;
        }
    }
    /* The lazy update: all of the block's errors reach the columns to its
     * right in one GEMM. */
    int rest = s->K - q0 - nb;
    if (rest == 0)
        return;
    for (int j = 0; j < nb; j++)
        for (int r = 0; r < rest; r++)
            s->urest[(size_t)j * rest + r] = (float)u_at(s->linv, s->K, q0 + j, q0 + nb + r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->M, rest, nb, -1.0f, s->eb, s->M,
                s->urest, rest, 1.0f, s->work + q0 + nb, s->K);
}

static int init_scales(const float *W, int64_t M, int64_t K, const tc_tgroup *g,
                       tc_tscale_init how, int8_t *codes, float *scales, tc_error *err)
{
    if (how == TC_TSCALE_ABSMEAN)
        return tc_ternary_absmean(W, M, K, g, codes, scales, err);
    return tc_ternary_optimal(W, M, K, g, codes, scales, err);
}

int tc_ternary_calibrated(const float *W, int64_t M, int64_t K, const tc_tgroup *g,
                          const double *H, const tc_ternary_calib_opts *opts, int8_t *codes,
                          float *scales, tc_error *err)
{
    tc_ternary_calib_opts o = {0.01, 128, TC_TSCALE_OPTIMAL};
    int64_t ns;
    uint64_t hb;
    if (opts) {
        o = *opts;
        if (!(o.damp_frac > 0))
            o.damp_frac = 0.01;
        if (o.block <= 0)
            o.block = 128;
    }
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    if (M > INT_MAX || K > INT_MAX || tc_mul_u64((uint64_t)K, (uint64_t)K, &hb) ||
        tc_mul_u64(hb, sizeof(double), &hb) || hb > SIZE_MAX / 2)
        return tc_err(err, "ternary: weight %lld x %lld is too large for calibration",
                      (long long)M, (long long)K);
    if (init_scales(W, M, K, g, o.scale_init, codes, scales, err))
        return TC_ERR;

    int B = o.block < K ? (int)o.block : (int)K;
    sweep s = {(int)M, (int)K, B, g, scales, NULL, NULL, NULL, NULL, NULL, codes};
    size_t nw = (size_t)M * (size_t)K;
    double *linv = malloc((size_t)hb);
    s.work = malloc(nw * sizeof(float));
    s.wb = malloc((size_t)B * (size_t)M * sizeof(float));
    s.eb = malloc((size_t)B * (size_t)M * sizeof(float));
    s.urest = malloc((size_t)B * (size_t)K * sizeof(float));
    int rc = TC_OK;
    if (!linv || !s.work || !s.wb || !s.eb || !s.urest)
        rc = tc_err(err, "ternary: out of memory calibrating a %lld x %lld weight", (long long)M,
                    (long long)K);
    else
        rc = tc_ternary_inverse_factor(H, (int)K, NULL, o.damp_frac, linv, err);
    if (rc == TC_OK) {
        s.linv = linv;
        memcpy(s.work, W, nw * sizeof(float));
        for (int q0 = 0; q0 < s.K; q0 += B)
            sweep_block(&s, q0, s.K - q0 < B ? s.K - q0 : B);
    }
    free(linv);
    free(s.work);
    free(s.wb);
    free(s.eb);
    free(s.urest);
    return rc;
}

int tc_ternary_hessian_add(const float *X, int64_t N, int64_t K, double *H, tc_error *err)
{
    enum { ROWS = 256 };
    if (N < 0 || K < 1 || K > INT_MAX || (uint64_t)K > SIZE_MAX / sizeof(double) / ROWS)
        return tc_err(err, "ternary: activation batch of %lld x %lld is unusable", (long long)N,
                      (long long)K);
    if (N == 0)
        return TC_OK;
    double *xd = malloc((size_t)ROWS * (size_t)K * sizeof *xd);
    if (!xd)
        return tc_err(err, "ternary: out of memory accumulating a %lld x %lld Hessian",
                      (long long)K, (long long)K);
    for (int64_t r0 = 0; r0 < N; r0 += ROWS) {
        int rows = N - r0 < ROWS ? (int)(N - r0) : ROWS;
        const float *x = X + (size_t)r0 * (size_t)K;
        for (size_t i = 0; i < (size_t)rows * (size_t)K; i++)
            xd[i] = x[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)K, rows, 1.0, xd, (int)K, 1.0, H,
                    (int)K);
    }
    free(xd);
    /* syrk wrote the upper triangle; mirror it so H is whole again. */
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < i; j++)
            H[(size_t)i * (size_t)K + (size_t)j] = H[(size_t)j * (size_t)K + (size_t)i];
    return TC_OK;
}

int tc_ternary_cross_add(const float *Xq, const float *Xf, int64_t N, int64_t K, double *D,
                         tc_error *err)
{
    enum { ROWS = 256 };
    if (N < 0 || K < 1 || K > INT_MAX || (uint64_t)K > SIZE_MAX / sizeof(double) / ROWS / 2)
        return tc_err(err, "ternary: activation batch of %lld x %lld is unusable", (long long)N,
                      (long long)K);
    if (N == 0)
        return TC_OK;
    double *a = malloc((size_t)ROWS * (size_t)K * 2 * sizeof *a);
    if (!a)
        return tc_err(err, "ternary: out of memory accumulating a %lld x %lld cross product",
                      (long long)K, (long long)K);
    double *b = a + (size_t)ROWS * (size_t)K;
    for (int64_t r0 = 0; r0 < N; r0 += ROWS) {
        int rows = N - r0 < ROWS ? (int)(N - r0) : ROWS;
        size_t off = (size_t)r0 * (size_t)K, n = (size_t)rows * (size_t)K;
        for (size_t i = 0; i < n; i++) {
            a[i] = Xq[off + i];
            b[i] = (double)Xf[off + i] - (double)Xq[off + i];
        }
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)K, rows, 1.0, a, (int)K, b,
                    (int)K, 1.0, D, (int)K);
    }
    free(a);
    return TC_OK;
}

int tc_ternary_residual_add(const float *Rf, const float *Rq, const float *Xq, int64_t N, int64_t M, int64_t K,
                            double *G, tc_error *err)
{
    enum { ROWS = 256 };
    if (N < 0 || K < 1 || M < 1 || K > INT_MAX || M > INT_MAX ||
        (uint64_t)(K > M ? K : M) > SIZE_MAX / sizeof(double) / ROWS / 2)
        return tc_err(err, "ternary: residual batch of %lld x %lld x %lld is unusable", (long long)N,
                      (long long)M, (long long)K);
    if (N == 0)
        return TC_OK;
    double *r = malloc((size_t)ROWS * (size_t)M * sizeof *r), *x = malloc((size_t)ROWS * (size_t)K * sizeof *x);
    if (!r || !x) {
        free(r);
        free(x);
        return tc_err(err, "ternary: out of memory accumulating a %lld x %lld residual product", (long long)M,
                      (long long)K);
    }
    for (int64_t r0 = 0; r0 < N; r0 += ROWS) {
        int rows = N - r0 < ROWS ? (int)(N - r0) : ROWS;
        for (size_t i = 0; i < (size_t)rows * (size_t)M; i++)
            r[i] = (double)Rf[(size_t)r0 * (size_t)M + i] - (double)Rq[(size_t)r0 * (size_t)M + i];
        for (size_t i = 0; i < (size_t)rows * (size_t)K; i++)
            x[i] = Xq[(size_t)r0 * (size_t)K + i];
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)K, rows, 1.0, r, (int)M, x, (int)K, 1.0,
                    G, (int)K);
    }
    free(r);
    free(x);
    return TC_OK;
}

int tc_ternary_target_weights(const float *W, int64_t M, int64_t K, const double *H,
                              const double *D, const double *G, double damp_frac, float *Wt, tc_error *err)
{
    uint64_t hb;
    if (M < 1 || K < 1 || M > INT_MAX || K > INT_MAX || tc_mul_u64((uint64_t)K, (uint64_t)K, &hb) ||
        tc_mul_u64(hb, sizeof(double), &hb) || hb > SIZE_MAX / 4)
        return tc_err(err, "ternary: weight %lld x %lld is too large for target weights", (long long)M,
                      (long long)K);
    if (!(damp_frac > 0))
        damp_frac = 0.01;
    int n = (int)K, m = (int)M;
    double *A = malloc((size_t)hb), *Wd = malloc((size_t)M * (size_t)K * sizeof(double));
    double *Z = malloc((size_t)M * (size_t)K * sizeof(double));
    if (!A || !Wd || !Z) {
        free(A);
        free(Wd);
        free(Z);
        return tc_err(err, "ternary: out of memory for the target weights of a %lld x %lld weight",
                      (long long)M, (long long)K);
    }
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += H[(size_t)i * n + i];
    mean /= n;
    double lambda = damp_frac * mean > 0 ? damp_frac * mean : damp_frac;
    for (size_t i = 0; i < (size_t)M * (size_t)K; i++)
        Wd[i] = W[i];
    /* Z = W D^T + G (M x K); then Z (H + lambda I)^-1 through the Cholesky factor
     * L L^T of the damped H: two triangular solves from the right. */
    if (G)
        memcpy(Z, G, (size_t)M * (size_t)K * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, n, 1.0, Wd, n, D, n, G ? 1.0 : 0.0, Z, n);
    int rc = TC_OK;
    for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
        memcpy(A, H, (size_t)hb);
        for (int i = 0; i < n; i++)
            A[(size_t)i * n + i] += lambda;
        if (chol(A, n) == 0)
            break;
        lambda *= 10;
        if (attempt == MAX_RETRIES - 1)
            rc = tc_err(err, "ternary: calibration Hessian (%d x %d) is not positive definite even "
                             "with damping %g",
                        n, n, lambda / 10);
    }
    if (rc == TC_OK) {
        /* Z L^-T L^-1: solve X L^T = Z, then Y L = X. */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, n, 1.0, A, n, Z, n);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, m, n, 1.0, A, n, Z, n);
        for (size_t i = 0; i < (size_t)M * (size_t)K; i++)
            Wt[i] = (float)(Wd[i] + Z[i]);
    }
    free(A);
    free(Wd);
    free(Z);
    return rc;
}
