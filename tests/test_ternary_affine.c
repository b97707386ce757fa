/* Asymmetric ternary quantizers (W ~ alpha * T + mu per group) against plain
 * fp64 implementations written here: iterative ternary fitting, the GPTQ
 * sweep on the affine grid (textbook form: the explicit inverse, updated
 * after every column), the least-squares refit in the H norm; the stored
 * rounding of (alpha, mu); the measurements with offsets; lossless on
 * weights already on an affine ternary grid. */
#include "testutil.h"

#include <stdint.h>

#include "tc/dtype.h"
#include "tc/ternary.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double uniform(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* Gaussian weights with a per-row offset of up to half their spread. */
static float *random_weight(int64_t M, int64_t K)
{
    float *w = malloc((size_t)(M * K) * sizeof *w);
    for (int64_t m = 0; m < M; m++) {
        double off = 0.01 * (uniform() - 0.5);
        for (int64_t k = 0; k < K; k++)
            w[m * K + k] = (float)(0.02 * gauss() + off);
    }
    return w;
}

static const int64_t SHAPES[][2] = {{1, 1}, {1, 3}, {3, 7}, {7, 33}, {5, 100}, {33, 257}, {17, 300}};
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static const tc_tgroup GROUPS[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0},
                                   {TC_TGROUP_COLS, 32}, {TC_TGROUP_COLS, 100}};
#define N_GROUPS (int)(sizeof GROUPS / sizeof GROUPS[0])

static int64_t group_of(const tc_tgroup *g, int64_t K, int64_t m, int64_t k)
{
    if (g->kind == TC_TGROUP_TENSOR)
        return 0;
    if (g->kind == TC_TGROUP_ROW)
        return m;
    return m * ((K + g->cols - 1) / g->cols) + k / g->cols;
}

static int64_t n_groups(const tc_tgroup *g, int64_t M, int64_t K)
{
    return group_of(g, K, M - 1, K - 1) + 1;
}

static double f16(double v)
{
    return tc_f16_to_f32(tc_f32_to_f16((float)v));
}

/* ---- the fp64 references -------------------------------------------------- */

static int tround(double v)
{
    return v >= 0.5 ? 1 : v <= -0.5 ? -1 : 0;
}

/* The stored rounding, written from its definition. */
static void ref_round(double *alpha, double *mu)
{
    double a = *alpha >= 1e-5 ? f16(*alpha) : f16(1e-5);
    double m2 = a + f16(*mu - a);
    *mu = f16(m2) == m2 ? m2 : f16(*mu);
    *alpha = a;
}

static int cmp_asc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* The exact fit of a group of up to 256: every split of the sorted values
 * into runs of -1, 0, +1 (cuts between unequal values), its least-squares
 * grid, the largest explained sum of squares with alpha > 0. */
static void ref_exact(const float *w, int n, int *codes, double *alpha, double *mu)
{
    double *v = malloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++)
        v[i] = w[i];
    qsort(v, (size_t)n, sizeof *v, cmp_asc);
    double total = 0;
    for (int i = 0; i < n; i++)
        total += v[i];
    double best = total * total / n, a = 0, m = total / n, lo = -INFINITY, hi = INFINITY;
    for (int na = 0; na <= n; na++) {
        if (na > 0 && na < n && v[na - 1] == v[na])
            continue;
        double bot = 0;
        for (int i = 0; i < na; i++)
            bot += v[i];
        for (int nb = 0; na + nb <= n; nb++) {
            if (nb > 0 && nb < n && v[n - nb - 1] == v[n - nb])
                continue;
            double top = 0;
            for (int i = n - 1; i >= n - nb; i--)
                top += v[i];
            double St = nb - na, Stt = na + nb, Stw = top - bot, det = Stt * n - St * St;
            if (!(det > 0))
                continue;
            double al = (n * Stw - St * total) / det;
            if (!(al > 0))
                continue;
            double mm = (Stt * total - St * Stw) / det, gain = al * Stw + mm * total;
            if (gain > best) {
                best = gain;
                a = al;
                m = mm;
                lo = na > 0 ? v[na - 1] : -INFINITY;
                hi = nb > 0 ? v[n - nb] : INFINITY;
            }
        }
    }
    for (int i = 0; i < n; i++)
        codes[i] = (w[i] >= hi) - (w[i] <= lo);
    *alpha = a;
    *mu = m;
    free(v);
}

/* One group: exact up to 256 weights, else iterative ternary fitting in
 * double: the symmetric least squares fit of w - mean by trying every
 * threshold, then rounding and the closed-form grid alternately. */
static void ref_itf(const float *w, int n, int *codes, double *alpha, double *mu)
{
    if (n <= 256) {
        double a, m;
        ref_exact(w, n, codes, &a, &m);
        ref_round(&a, &m);
        for (int i = 0; i < n; i++)
            codes[i] = tround(((double)w[i] - m) / a);
        *alpha = a;
        *mu = m;
        return;
    }
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += w[i];
    mean /= n;
    float *b = malloc((size_t)n * sizeof *b);
    double *mag = malloc((size_t)n * sizeof *mag);
    for (int i = 0; i < n; i++) {
        b[i] = (float)((double)w[i] - mean);
        mag[i] = fabsf(b[i]);
    }
    qsort(mag, (size_t)n, sizeof *mag, cmp_asc);
    for (int i = 0; i < n / 2; i++) { double t = mag[i]; mag[i] = mag[n - 1 - i]; mag[n - 1 - i] = t; }
    double sum = 0, best_v = 0, a = 0, thr = INFINITY;
    for (int k = 1; k <= n; k++) {
        sum += mag[k - 1];
        if (k < n && mag[k] == mag[k - 1])
            continue;
        if (sum * sum / k > best_v * (1 + 1e-15)) {
            best_v = sum * sum / k;
            a = sum / k;
            thr = mag[k - 1];
        }
    }
    for (int i = 0; i < n; i++)
        codes[i] = fabsf(b[i]) >= thr ? (b[i] > 0) - (b[i] < 0) : 0;
    if (!(a >= 1e-5))
        a = 1e-5;
    double m = mean;
    for (int r = 0; r < 32; r++) {
        double St = 0, Stt = 0, Sw = 0, Stw = 0;
        for (int i = 0; i < n; i++) {
            St += codes[i];
            Stt += codes[i] * codes[i];
            Sw += w[i];
            Stw += codes[i] * (double)w[i];
        }
        double det = Stt * n - St * St;
        if (det > 0) {
            a = (n * Stw - St * Sw) / det;
            m = (Stt * Sw - St * Stw) / det;
        } else {
            m = (Sw - a * St) / n;
        }
        if (a < 0) {
            a = -a;
            for (int i = 0; i < n; i++)
                codes[i] = -codes[i];
        }
        if (!(a >= 1e-5))
            a = 1e-5;
        int changed = 0;
        for (int i = 0; i < n; i++) {
            int t = tround(((double)w[i] - m) / a);
            changed += t != codes[i];
            codes[i] = t;
        }
        if (!changed)
            break;
    }
    ref_round(&a, &m);
    for (int i = 0; i < n; i++)
        codes[i] = tround(((double)w[i] - m) / a);
    *alpha = a;
    *mu = m;
    free(b);
    free(mag);
}

/* The groups of a weight as index lists (a tensor group is the whole matrix). */
static void ref_affine(const float *W, int64_t M, int64_t K, const tc_tgroup *g, int *codes,
                       double *sc, double *off)
{
    int64_t ng = n_groups(g, M, K);
    float *w = malloc((size_t)(M * K) * sizeof *w);
    int *c = malloc((size_t)(M * K) * sizeof *c);
    int64_t *idx = malloc((size_t)(M * K) * sizeof *idx);
    for (int64_t gi = 0; gi < ng; gi++) {
        int n = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++)
                if (group_of(g, K, m, k) == gi) {
                    idx[n] = m * K + k;
                    w[n++] = W[m * K + k];
                }
        ref_itf(w, n, c, &sc[gi], &off[gi]);
        for (int i = 0; i < n; i++)
            codes[idx[i]] = c[i];
    }
    free(w);
    free(c);
    free(idx);
}

static double h_error(const float *W, const int *codes, const double *sc, const double *off,
                      int64_t M, int64_t K, const tc_tgroup *g, const double *H)
{
    double e = 0;
    double *d = malloc((size_t)K * sizeof *d);
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < K; k++) {
            int64_t gi = group_of(g, K, m, k);
            d[k] = W[m * K + k] - (sc[gi] * codes[m * K + k] + off[gi]);
        }
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < K; j++)
                e += d[i] * H[i * K + j] * d[j];
    }
    free(d);
    return e;
}

/* Gauss-Jordan inverse with partial pivoting (n x n, in place via a copy). */
static void invert(const double *A, int n, double *out)
{
    double *a = malloc((size_t)(n * 2 * n) * sizeof *a);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++)
            a[i * 2 * n + j] = j < n ? A[i * n + j] : (j - n == i);
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r * 2 * n + c]) > fabs(a[p * 2 * n + c]))
                p = r;
        for (int j = 0; j < 2 * n; j++) {
            double t = a[c * 2 * n + j];
            a[c * 2 * n + j] = a[p * 2 * n + j];
            a[p * 2 * n + j] = t;
        }
        double piv = a[c * 2 * n + c];
        for (int j = 0; j < 2 * n; j++)
            a[c * 2 * n + j] /= piv;
        for (int r = 0; r < n; r++)
            if (r != c) {
                double f = a[r * 2 * n + c];
                for (int j = 0; j < 2 * n; j++)
                    a[r * 2 * n + j] -= f * a[c * 2 * n + j];
            }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            out[i * n + j] = a[i * 2 * n + n + j];
    free(a);
}

/* GPTQ as first written (optimal brain quantization, one column at a time,
 * the inverse updated after each) on the affine grid, in double. */
static void ref_gptq(const float *W, int64_t M, int64_t K, const tc_tgroup *g, const double *H,
                     double damp, int act_order, int *codes, double *sc, double *off)
{
    int n = (int)K;
    double *Hd = malloc((size_t)(n * n) * sizeof *Hd), *Hi = malloc((size_t)(n * n) * sizeof *Hi);
    memcpy(Hd, H, (size_t)(n * n) * sizeof *Hd);
    double mean = 0;
    for (int i = 0; i < n; i++) {
        if (Hd[i * n + i] == 0) {
            for (int j = 0; j < n; j++)
                Hd[i * n + j] = Hd[j * n + i] = 0;
            Hd[i * n + i] = 1;
        }
        mean += Hd[i * n + i];
    }
    mean /= n;
    for (int i = 0; i < n; i++)
        Hd[i * n + i] += damp * mean;
    invert(Hd, n, Hi);
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    if (act_order) /* decreasing H[k][k], ties by index */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0; j--) {
                double a = H[order[j] * n + order[j]], b = H[order[j - 1] * n + order[j - 1]];
                if (!(a > b))
                    break;
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    int dynamic = g->kind == TC_TGROUP_COLS && !act_order;
    if (!dynamic)
        ref_affine(W, M, K, g, codes, sc, off);
    double *w = malloc((size_t)(M * K) * sizeof *w);
    for (int64_t i = 0; i < M * K; i++)
        w[i] = W[i];
    float *buf = malloc((size_t)K * sizeof *buf);
    int *cb = malloc((size_t)K * sizeof *cb);
    for (int s = 0; s < n; s++) {
        int q = order[s];
        if (dynamic && q % g->cols == 0) {
            int k1 = q + g->cols < n ? q + g->cols : n;
            for (int64_t m = 0; m < M; m++) {
                for (int k = q; k < k1; k++)
                    buf[k - q] = (float)w[m * K + k];
                int64_t gi = group_of(g, K, m, q);
                ref_itf(buf, k1 - q, cb, &sc[gi], &off[gi]);
            }
        }
        double d = Hi[q * n + q];
        for (int64_t m = 0; m < M; m++) {
            int64_t gi = group_of(g, K, m, q);
            int t = tround((w[m * K + q] - off[gi]) / sc[gi]);
            codes[m * K + q] = t;
            double e = (w[m * K + q] - (sc[gi] * t + off[gi])) / d;
            for (int r = s + 1; r < n; r++)
                w[m * K + order[r]] -= e * Hi[q * n + order[r]];
        }
        /* q eliminated from the inverse */
        for (int r = s + 1; r < n; r++)
            for (int c = s + 1; c < n; c++) {
                int i = order[r], j = order[c];
                Hi[i * n + j] -= Hi[i * n + q] * Hi[q * n + j] / d;
            }
    }
    free(Hd);
    free(Hi);
    free(order);
    free(w);
    free(buf);
    free(cb);
}

/* Correlated activations (AR(1) features) and H = X^T X. */
static double *make_h(int64_t K, int64_t N, float **Xout)
{
    float *X = malloc((size_t)(N * K) * sizeof *X);
    for (int64_t t = 0; t < N; t++) {
        double prev = gauss();
        for (int64_t k = 0; k < K; k++) {
            prev = 0.8 * prev + 0.6 * gauss();
            X[t * K + k] = (float)(prev * (1 + (k % 5 == 0)));
        }
    }
    double *H = calloc((size_t)(K * K), sizeof *H);
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < K; j++)
                H[i * K + j] += (double)X[t * K + i] * X[t * K + j];
    if (Xout)
        *Xout = X;
    else
        free(X);
    return H;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_round(void)
{
    int q41 = 0, total = 0;
    for (int i = 0; i < 2000; i++) {
        float a = (float)(0.001 + 0.05 * uniform()), m = (float)(a * (uniform() - 0.5));
        float a0 = a, m0 = m;
        tc_ternary_affine_round(&a, &m);
        double ra = a0, rm = m0;
        ref_round(&ra, &rm);
        CHECK(a == (float)ra && m == (float)rm);
        CHECK(f16(a) == a && f16(m) == m);
        CHECK(fabs(a - a0) <= 0x1p-11 * a0 && fabs(m - m0) <= 0x1p-11 * (fabs(m0) + a0));
        q41 += f16((double)m - a) == (double)m - a; /* Q4_1's lowest level is an f16 */
        total++;
    }
    CHECK_MSG(q41 == total, "%d of %d pairs are exact in Q4_1", q41, total);
    float a = 0, m = NAN;
    tc_ternary_affine_round(&a, &m);
    CHECK(a > 0 && m == 0);
}

static void test_itf_against_reference(void)
{
    tc_error err;
    for (int si = 0; si < N_SHAPES; si++)
        for (int gi = 0; gi < N_GROUPS; gi++) {
            int64_t M = SHAPES[si][0], K = SHAPES[si][1], ng = n_groups(&GROUPS[gi], M, K);
            const tc_tgroup *g = &GROUPS[gi];
            float *W = random_weight(M, K);
            int8_t *c = malloc((size_t)(M * K));
            float *s = malloc((size_t)ng * sizeof *s), *o = malloc((size_t)ng * sizeof *o);
            int *rc = malloc((size_t)(M * K) * sizeof *rc);
            double *rs = malloc((size_t)ng * sizeof *rs), *ro = malloc((size_t)ng * sizeof *ro);
            CHECK_OK(tc_ternary_affine(W, M, K, g, c, s, o, &err), &err);
            ref_affine(W, M, K, g, rc, rs, ro);
            int bad_c = 0, bad_p = 0;
            for (int64_t i = 0; i < M * K; i++)
                bad_c += c[i] != rc[i];
            for (int64_t i = 0; i < ng; i++)
                bad_p += s[i] != (float)rs[i] || o[i] != (float)ro[i];
            CHECK_MSG(bad_c == 0 && bad_p == 0, "M=%lld K=%lld group %d: %d codes, %d groups differ",
                      (long long)M, (long long)K, gi, bad_c, bad_p);
            /* Against the symmetric least-squares fit: an offset can only help
             * on weights that have one (every row here). */
            int8_t *c2 = malloc((size_t)(M * K));
            float *s2 = malloc((size_t)ng * sizeof *s2);
            CHECK_OK(tc_ternary_optimal(W, M, K, g, c2, s2, &err), &err);
            tc_ternary_report ra, rb;
            memset(&ra, 0, sizeof ra);
            memset(&rb, 0, sizeof rb);
            tc_ternary_report_add_affine(W, c, s, o, M, K, g, &ra);
            tc_ternary_report_add(W, c2, s2, M, K, g, &rb);
            if (M * K >= 100)
                CHECK_MSG(ra.error_sq < rb.error_sq, "M=%lld K=%lld group %d: %.6g vs symmetric %.6g",
                          (long long)M, (long long)K, gi, ra.error_sq, rb.error_sq);
            /* The report's sums against a direct computation. */
            double e = 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t q = group_of(g, K, m, k);
                    double d = W[m * K + k] - ((double)s[q] * c[m * K + k] + o[q]);
                    e += d * d;
                }
            CHECK_NEAR(ra.error_sq, e, 1e-9 * e + 1e-15);
            float *D = malloc((size_t)(M * K) * sizeof *D);
            tc_ternary_dequantize_affine(c, s, o, M, K, g, D);
            int bad_d = 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    int64_t q = group_of(g, K, m, k);
                    bad_d += D[m * K + k] != s[q] * (float)c[m * K + k] + o[q];
                }
            CHECK(bad_d == 0);
            free(D);
            free(W);
            free(c);
            free(s);
            free(o);
            free(rc);
            free(rs);
            free(ro);
            free(c2);
            free(s2);
        }
}

/* Weights on an affine ternary grid (stored values, every level used) come
 * back exactly. */
static void test_lossless(void)
{
    tc_error err;
    for (int gi = 0; gi < N_GROUPS; gi++) {
        const tc_tgroup *g = &GROUPS[gi];
        int64_t M = 9, K = 230, ng = n_groups(g, M, K);
        float *W = malloc((size_t)(M * K) * sizeof *W), *a = malloc((size_t)ng * sizeof *a),
              *m = malloc((size_t)ng * sizeof *m), *s = malloc((size_t)ng * sizeof *s),
              *o = malloc((size_t)ng * sizeof *o);
        int8_t *t = malloc((size_t)(M * K)), *c = malloc((size_t)(M * K));
        for (int64_t i = 0; i < ng; i++) {
            a[i] = (float)(0.01 + 0.02 * uniform());
            m[i] = (float)(0.01 * (uniform() - 0.5));
            tc_ternary_affine_round(&a[i], &m[i]);
        }
        for (int64_t i = 0; i < M * K; i++) {
            t[i] = (int8_t)((int)(rng_next() % 3) - 1);
            if (i % K < 3) /* every group of a row sees all three levels */
                t[i] = (int8_t)(i % K - 1);
        }
        for (int64_t mm = 0; mm < M; mm++)
            for (int64_t k = 0; k < K; k++) {
                int64_t q = group_of(g, K, mm, k);
                if (g->kind == TC_TGROUP_COLS && k % g->cols < 3)
                    t[mm * K + k] = (int8_t)(k % g->cols - 1);
                W[mm * K + k] = a[q] * (float)t[mm * K + k] + m[q];
            }
        CHECK_OK(tc_ternary_affine(W, M, K, g, c, s, o, &err), &err);
        tc_ternary_report r;
        memset(&r, 0, sizeof r);
        tc_ternary_report_add_affine(W, c, s, o, M, K, g, &r);
        CHECK_MSG(r.error_sq == 0 && memcmp(c, t, (size_t)(M * K)) == 0,
                  "group %d: error %.3g, codes %s", gi, r.error_sq,
                  memcmp(c, t, (size_t)(M * K)) ? "differ" : "equal");
        free(W);
        free(a);
        free(m);
        free(s);
        free(o);
        free(t);
        free(c);
    }
}

static void test_calibrated_against_reference(void)
{
    tc_error err;
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {7, 33}, {5, 100}, {33, 130}, {6, 257}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int gi = 0; gi < N_GROUPS; gi++)
            for (int ao = 0; ao < 2; ao++) {
                int64_t M = shapes[si][0], K = shapes[si][1];
                const tc_tgroup *g = &GROUPS[gi];
                int64_t ng = n_groups(g, M, K);
                float *W = random_weight(M, K);
                double *H = make_h(K, 3 * K + 8, NULL);
                if (K > 5) /* a dead input */
                    for (int64_t k = 0; k < K; k++)
                        H[3 * K + k] = H[k * K + 3] = 0;
                int8_t *c = malloc((size_t)(M * K));
                float *s = malloc((size_t)ng * sizeof *s), *o = malloc((size_t)ng * sizeof *o);
                int *rc = malloc((size_t)(M * K) * sizeof *rc), *ic = malloc((size_t)(M * K) * sizeof *ic);
                double *rs = malloc((size_t)ng * sizeof *rs), *ro = malloc((size_t)ng * sizeof *ro);
                double *is = malloc((size_t)ng * sizeof *is), *io = malloc((size_t)ng * sizeof *io);
                tc_ternary_affine_calib_opts opts = {0.01, ao, 0};
                CHECK_OK(tc_ternary_affine_calibrated(W, M, K, g, H, &opts, c, s, o, &err), &err);
                ref_gptq(W, M, K, g, H, 0.01, ao, rc, rs, ro);
                int same = 0;
                for (int64_t i = 0; i < M * K; i++) {
                    same += c[i] == rc[i];
                    ic[i] = c[i];
                }
                for (int64_t i = 0; i < ng; i++) {
                    is[i] = s[i];
                    io[i] = o[i];
                }
                double mine = h_error(W, ic, is, io, M, K, g, H), ref = h_error(W, rc, rs, ro, M, K, g, H);
                /* fp32 sweep against fp64: a rounding at a tie may go the
                 * other way and the columns after it follow; the error may not
                 * be worse. */
                CHECK_MSG(same >= (M * K) * 99 / 100 && mine <= ref * 1.01 + 1e-12,
                          "M=%lld K=%lld group %d act_order %d: %lld of %lld codes equal, error %.6g vs %.6g",
                          (long long)M, (long long)K, gi, ao, (long long)same, (long long)(M * K), mine, ref);
                /* Against the grid alone (no calibration): the sweep must
                 * lower the output error. */
                int *ac = malloc((size_t)(M * K) * sizeof *ac);
                double *as = malloc((size_t)ng * sizeof *as), *aof = malloc((size_t)ng * sizeof *aof);
                ref_affine(W, M, K, g, ac, as, aof);
                double plain = h_error(W, ac, as, aof, M, K, g, H);
                if (K >= 33)
                    CHECK_MSG(mine < plain, "M=%lld K=%lld group %d: %.6g vs %.6g uncalibrated",
                              (long long)M, (long long)K, gi, mine, plain);
                /* Refitting rounds never make it worse, and the library's
                 * measure agrees with the one here. */
                tc_ternary_affine_calib_opts ro2 = {0.01, ao, 2};
                CHECK_OK(tc_ternary_affine_calibrated(W, M, K, g, H, &ro2, c, s, o, &err), &err);
                double e2;
                CHECK_OK(tc_ternary_h_error(W, M, K, g, H, c, s, o, &e2, &err), &err);
                for (int64_t i = 0; i < M * K; i++)
                    ic[i] = c[i];
                for (int64_t i = 0; i < ng; i++) {
                    is[i] = s[i];
                    io[i] = o[i];
                }
                double e2ref = h_error(W, ic, is, io, M, K, g, H);
                CHECK_NEAR(e2, e2ref, 1e-4 * e2ref + 1e-12);
                CHECK_MSG(e2ref <= mine * (1 + 1e-4) + 1e-12, "refit rounds: %.6g vs %.6g", e2ref, mine);
                free(ac);
                free(as);
                free(aof);
                free(W);
                free(H);
                free(c);
                free(s);
                free(o);
                free(rc);
                free(ic);
                free(rs);
                free(ro);
                free(is);
                free(io);
            }
}

/* The refit against least squares on the activations themselves: per row,
 * min over (alpha_g, mu_g) of ||X w - X w_hat||^2, solved here from the
 * design matrix's normal equations in fp64. */
static void test_refit_against_reference(void)
{
    tc_error err;
    static const int64_t shapes[][2] = {{1, 3}, {4, 40}, {6, 130}, {3, 257}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int gi = 0; gi < N_GROUPS; gi++)
            for (int with_off = 0; with_off < 2; with_off++) {
                int64_t M = shapes[si][0], K = shapes[si][1], N = 2 * K + 5;
                const tc_tgroup *g = &GROUPS[gi];
                int64_t ng = n_groups(g, M, K);
                float *X, *W = random_weight(M, K);
                double *H = make_h(K, N, &X);
                int8_t *c = malloc((size_t)(M * K));
                float *s = malloc((size_t)ng * sizeof *s), *o = calloc((size_t)ng, sizeof *o);
                CHECK_OK(tc_ternary_affine(W, M, K, g, c, s, o, &err), &err);
                if (!with_off)
                    memset(o, 0, (size_t)ng * sizeof *o);
                double before;
                CHECK_OK(tc_ternary_h_error(W, M, K, g, H, c, s, o, &before, &err), &err);
                CHECK_OK(tc_ternary_refit(W, M, K, g, H, c, s, with_off ? o : NULL, &err), &err);
                double after;
                CHECK_OK(tc_ternary_h_error(W, M, K, g, H, c, s, o, &after, &err), &err);
                /* The reference: unknowns P per group, all rows at once for
                 * a tensor group, else row by row. */
                int P = with_off ? 2 : 1;
                int64_t rows_per_sys = g->kind == TC_TGROUP_TENSOR ? M : 1;
                int64_t G = g->kind == TC_TGROUP_COLS ? (K + g->cols - 1) / g->cols : 1;
                int n = (int)(G * P);
                double best = 0;
                for (int64_t m0 = 0; m0 < M; m0 += rows_per_sys) {
                    double *A = calloc((size_t)(n * n), sizeof *A), *b = calloc((size_t)n, sizeof *b);
                    double *f = malloc((size_t)n * sizeof *f), *Ai = malloc((size_t)(n * n) * sizeof *Ai);
                    for (int64_t m = m0; m < m0 + rows_per_sys; m++)
                        for (int64_t t = 0; t < N; t++) {
                            double y = 0;
                            for (int i = 0; i < n; i++)
                                f[i] = 0;
                            for (int64_t k = 0; k < K; k++) {
                                int64_t q = g->kind == TC_TGROUP_COLS ? k / g->cols : 0;
                                y += (double)X[t * K + k] * W[m * K + k];
                                f[q * P] += (double)X[t * K + k] * c[m * K + k];
                                if (P == 2)
                                    f[q * P + 1] += X[t * K + k];
                            }
                            for (int i = 0; i < n; i++) {
                                b[i] += f[i] * y;
                                for (int j = 0; j < n; j++)
                                    A[i * n + j] += f[i] * f[j];
                            }
                        }
                    for (int i = 0; i < n; i++) /* a group of one column: alpha and mu are one unknown */
                        A[i * n + i] *= 1 + 1e-9;
                    invert(A, n, Ai);
                    double *x = calloc((size_t)n, sizeof *x);
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                            x[i] += Ai[i * n + j] * b[j];
                    /* its error on the same rows, through H, where its alphas
                     * are positive (the codes' signs are kept: otherwise the
                     * library keeps the parameters, and the error it had) */
                    int positive = 1;
                    for (int64_t q = 0; q < G; q++)
                        positive &= x[q * P] > 0;
                    for (int64_t m = m0; m < m0 + rows_per_sys; m++)
                        for (int64_t i = 0; i < K; i++)
                            for (int64_t j = 0; j < K; j++) {
                                int64_t qi = g->kind == TC_TGROUP_COLS ? i / g->cols : 0;
                                int64_t qj = g->kind == TC_TGROUP_COLS ? j / g->cols : 0;
                                int64_t gi_ = group_of(g, K, m, i), gj_ = group_of(g, K, m, j);
                                double di = positive ? W[m * K + i] - (x[qi * P] * c[m * K + i] + (P == 2 ? x[qi * P + 1] : 0))
                                                     : W[m * K + i] - ((double)s[gi_] * c[m * K + i] + o[gi_]);
                                double dj = positive ? W[m * K + j] - (x[qj * P] * c[m * K + j] + (P == 2 ? x[qj * P + 1] : 0))
                                                     : W[m * K + j] - ((double)s[gj_] * c[m * K + j] + o[gj_]);
                                best += di * H[i * K + j] * dj;
                            }
                    free(A);
                    free(b);
                    free(f);
                    free(Ai);
                    free(x);
                }
                /* The library's parameters are f16 values: at the optimum the
                 * error is flat, so rounding them costs almost nothing. */
                CHECK_MSG(after <= before * (1 + 1e-6) + 1e-15 && after <= best * 1.002 + 1e-3 * before + 1e-12,
                          "M=%lld K=%lld group %d offsets %d: %.8g (before %.8g, least squares %.8g)",
                          (long long)M, (long long)K, gi, with_off, after, before, best);
                for (int64_t i = 0; with_off && i < ng; i++)
                    CHECK(f16(s[i]) == s[i] && f16(o[i]) == o[i]);
                free(X);
                free(W);
                free(H);
                free(c);
                free(s);
                free(o);
            }
}

/* The target weights against the textbook: Wt^T = (Xq^T Xq + lambda I)^-1
 * ((Xq^T Xf + lambda I) W^T + Xq^T (Rf - Rq)) in double through an explicit
 * inverse, from the library's D = Xq^T (Xf - Xq) and G = (Rf - Rq)^T Xq
 * checked against their definitions, without and with the residual term;
 * and Xq Wt^T matches its target better than Xq W^T does. */
static void test_target_weights_against_reference(void)
{
    static const int64_t shapes[][3] = {{1, 1, 5}, {3, 7, 40}, {5, 33, 300}, {17, 70, 301}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *Xq = NULL;
        double *Hx = make_h(K, N, &Xq);
        float *Xf = malloc((size_t)(N * K) * sizeof *Xf);
        for (int64_t i = 0; i < N * K; i++)
            Xf[i] = Xq[i] + (float)(0.3 * gauss());
        float *W = random_weight(M, K), *Wt = malloc((size_t)(M * K) * sizeof *Wt);
        double *H = calloc((size_t)(K * K), sizeof *H), *D = calloc((size_t)(K * K), sizeof *D);
        tc_error err;
        CHECK_OK(tc_ternary_hessian_add(Xq, N, K, H, &err), &err);
        CHECK_OK(tc_ternary_cross_add(Xq, Xf, N, K, D, &err), &err);
        double dmax = 0, derr = 0;
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < K; j++) {
                double r = 0;
                for (int64_t t = 0; t < N; t++)
                    r += (double)Xq[t * K + i] * ((double)Xf[t * K + j] - (double)Xq[t * K + j]);
                dmax = fmax(dmax, fabs(r));
                derr = fmax(derr, fabs(r - D[i * K + j]));
            }
        CHECK_MSG(derr <= 1e-9 * (dmax + 1), "K=%lld N=%lld: D off by %g", (long long)K, (long long)N, derr);
        /* A residual stream of M features the output joins, as the original
         * and the quantized model carry it: G = (Rf - Rq)^T Xq. */
        float *Rf = malloc((size_t)(N * M) * sizeof *Rf), *Rq = malloc((size_t)(N * M) * sizeof *Rq);
        double *G = calloc((size_t)(M * K), sizeof *G);
        for (int64_t i = 0; i < N * M; i++) {
            Rf[i] = (float)gauss();
            Rq[i] = Rf[i] + (float)(0.5 * gauss());
        }
        CHECK_OK(tc_ternary_residual_add(Rf, Rq, Xq, N, M, K, G, &err), &err);
        double gmax = 0, gerr = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) {
                double r = 0;
                for (int64_t t = 0; t < N; t++)
                    r += ((double)Rf[t * M + m] - (double)Rq[t * M + m]) * (double)Xq[t * K + k];
                gmax = fmax(gmax, fabs(r));
                gerr = fmax(gerr, fabs(r - G[m * K + k]));
            }
        CHECK_MSG(gerr <= 1e-9 * (gmax + 1), "M=%lld K=%lld N=%lld: G off by %g", (long long)M, (long long)K,
                  (long long)N, gerr);
        double damp = 0.01;
        double mean = 0;
        for (int64_t i = 0; i < K; i++)
            mean += H[i * K + i];
        double lambda = damp * mean / (double)K;
        double *A = malloc((size_t)(K * K) * sizeof *A), *Ai = malloc((size_t)(K * K) * sizeof *Ai);
        for (int64_t i = 0; i < K * K; i++)
            A[i] = H[i];
        for (int64_t i = 0; i < K; i++)
            A[i * K + i] += lambda;
        invert(A, (int)K, Ai);
        for (int with_g = 0; with_g < 2; with_g++) {
            CHECK_OK(tc_ternary_target_weights(W, M, K, H, D, with_g ? G : NULL, damp, Wt, &err), &err);
            /* Wt^T = (H + lambda I)^-1 ((H + lambda I + D) W^T + G^T). */
            double wmax = 0, werr = 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    double r = 0;
                    for (int64_t j = 0; j < K; j++) {
                        double b = with_g ? G[m * K + j] : 0; /* ((A + D) W^T + G^T)[j][m] */
                        for (int64_t i = 0; i < K; i++)
                            b += (A[j * K + i] + D[j * K + i]) * W[m * K + i];
                        r += Ai[k * K + j] * b;
                    }
                    wmax = fmax(wmax, fabs(r));
                    werr = fmax(werr, fabs(r - Wt[m * K + k]));
                }
            CHECK_MSG(werr <= 1e-4 * (wmax + 1), "M=%lld K=%lld N=%lld G %d: target weights off by %g (max %g)",
                      (long long)M, (long long)K, (long long)N, with_g, werr, wmax);
            /* The outputs it aims at: ||Xq Wt^T - Xf W^T - R|| below ||Xq W^T - Xf W^T - R||
             * (R = Rf - Rq with G, else 0). */
            double e_w = 0, e_t = 0;
            for (int64_t t = 0; t < N; t++)
                for (int64_t m = 0; m < M; m++) {
                    double yf = with_g ? (double)Rf[t * M + m] - (double)Rq[t * M + m] : 0, yq = 0, yt = 0;
                    for (int64_t k = 0; k < K; k++) {
                        yf += (double)Xf[t * K + k] * W[m * K + k];
                        yq += (double)Xq[t * K + k] * W[m * K + k];
                        yt += (double)Xq[t * K + k] * Wt[m * K + k];
                    }
                    e_w += (yq - yf) * (yq - yf);
                    e_t += (yt - yf) * (yt - yf);
                }
            CHECK_MSG(e_t < e_w, "M=%lld K=%lld N=%lld G %d: %g not below %g", (long long)M, (long long)K,
                      (long long)N, with_g, e_t, e_w);
        }
        free(Rf);
        free(Rq);
        free(G);
        free(A);
        free(Ai);
        free(H);
        free(D);
        free(Hx);
        free(Xq);
        free(Xf);
        free(W);
        free(Wt);
    }
}

static void test_errors(void)
{
    tc_error err;
    float w[4] = {0}, s[1], o[1];
    int8_t c[4];
    tc_tgroup bad = {TC_TGROUP_COLS, 7};
    CHECK(tc_ternary_affine(w, 1, 4, &bad, c, s, o, &err) == TC_ERR);
    CHECK(strstr(err.msg, "group") != NULL);
    double H[16] = {0};
    tc_tgroup row = {TC_TGROUP_ROW, 0};
    CHECK(tc_ternary_affine_calibrated(w, 1, 0, &row, H, NULL, c, s, o, &err) == TC_ERR);
    /* An all-zero H (no input ever reached the layer): every column dead,
     * the sweep rounds alone. */
    CHECK_OK(tc_ternary_affine_calibrated(w, 1, 4, &row, H, NULL, c, s, o, &err), &err);
    CHECK(c[0] == 0 && c[3] == 0 && o[0] == 0);
}

int main(void)
{
    test_round();
    test_itf_against_reference();
    test_lossless();
    test_calibrated_against_reference();
    test_refit_against_reference();
    test_target_weights_against_reference();
    test_errors();
    return tu_finish("test_ternary_affine");
}
