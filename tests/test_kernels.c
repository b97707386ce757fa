/* Kernels: every path this CPU runs (forced one at a time) gives int32 sums
 * per row and scale group exactly equal to the plain integer matvec on the
 * codes, for every layout and grouping, at awkward shapes; the thread count
 * changes nothing; the float product applies the scales as documented, and
 * the offsets of affine weights (mu times the group's activation sum) give
 * the same bits on every path. */
#include "testutil.h"

#include <stdint.h>

#include "tc/kernels.h"
#include "tc/tpack.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const tc_tpack_layout LAYOUTS[] = {TC_TPACK_I2, TC_TPACK_TL1, TC_TPACK_TL2};

/* Sums per row and group straight from the codes. */
static void ref_groups(const int8_t *codes, int64_t M, int64_t K, const tc_tgroup *g,
                       const int8_t *x, int32_t *y)
{
    int64_t G = g->kind == TC_TGROUP_COLS ? g->cols : K, ng = (K + G - 1) / G;
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < ng; j++) {
            int32_t s = 0;
            for (int64_t k = j * G; k < K && k < (j + 1) * G; k++)
                s += codes[m * K + k] * x[k];
            y[m * ng + j] = s;
        }
}

typedef struct shape {
    int64_t M, K;
} shape;

/* One layout, shape, grouping and token count on one path. Modes 1-3 are
 * extreme products, so that an int16 or int32 accumulator that can overflow
 * shows: codes -1 with activations -128, random codes with 127, codes +1
 * with -128. */
static int check_case(const tc_kernels *k, tc_kpool *pool, tc_kwork *w, tc_tpack_layout layout,
                      shape s, tc_tgroup g, int64_t n_tok, int mode)
{
    tc_error err;
    tc_tpack_plan p;
    if (tc_tpack_plan_make(layout, s.M, s.K, &g, &p, &err))
        return -1;
    size_t MK = (size_t)(s.M * s.K);
    int8_t *codes = malloc(MK), *x = malloc((size_t)(n_tok * s.K));
    float *scales = malloc((size_t)p.n_scales * sizeof(float));
    uint8_t *packed = malloc(p.total_bytes);
    int64_t ng = tc_kern_groups(&p);
    int32_t *want = malloc((size_t)(n_tok * s.M * ng) * 4), *got = malloc((size_t)(n_tok * s.M * ng) * 4);
    for (size_t i = 0; i < MK; i++)
        codes[i] = mode == 1 ? -1 : mode == 3 ? 1 : (int8_t)((int)(rng_next() % 3) - 1);
    for (int64_t i = 0; i < n_tok * s.K; i++)
        x[i] = mode == 1 || mode == 3 ? -128 : mode == 2 ? 127 : (int8_t)(rng_next() & 0xff);
    for (int64_t i = 0; i < p.n_scales; i++)
        scales[i] = 0.5f + (float)(i % 7);
    int bad = 0;
    CHECK_OK(tc_tpack_pack(&p, codes, scales, packed, &err), &err);
    for (int64_t t = 0; t < n_tok; t++)
        ref_groups(codes, s.M, s.K, &g, x + t * s.K, want + t * s.M * ng);
    memset(got, 0x5a, (size_t)(n_tok * s.M * ng) * 4);
    CHECK_OK(tc_kern_matmul_i32(k, pool, w, &p, packed, p.total_bytes, x, n_tok, got, &err), &err);
    if (memcmp(want, got, (size_t)(n_tok * s.M * ng) * 4) != 0) {
        bad = 1;
        fprintf(stderr, "%s %s %lldx%lld group %d/%d tokens %lld mode %d: sums differ\n",
                tc_kpath_name(k->path), tc_tpack_layout_name(layout), (long long)s.M,
                (long long)s.K, (int)g.kind, g.cols, (long long)n_tok, mode);
    }
    CHECK(!bad);
    /* The float product: scale x sum / act_scale, per group. */
    float *y = malloc((size_t)(n_tok * s.M) * sizeof(float)), act[4] = {2.0f, 4.0f, 8.0f, 16.0f};
    if (n_tok <= 4) {
        CHECK_OK(tc_kern_matmul(k, pool, w, &p, packed, p.total_bytes, x, act, n_tok, y, &err),
                 &err);
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t m = 0; m < s.M; m++) {
                double e = 0;
                for (int64_t j = 0; j < ng; j++) {
                    int64_t si = g.kind == TC_TGROUP_TENSOR ? 0 : g.kind == TC_TGROUP_ROW ? m : m * ng + j;
                    e += (double)scales[si] * want[(t * s.M + m) * ng + j];
                }
                e /= act[t];
                CHECK_NEAR(y[t * s.M + m], e, 1e-5 * (fabs(e) + 1));
            }
    }
    free(y);
    free(codes);
    free(x);
    free(scales);
    free(packed);
    free(want);
    free(got);
    return bad;
}

static const shape SHAPES[] = {{1, 1},   {1, 5},    {3, 7},     {31, 23},  {32, 24},
                               {33, 25}, {64, 128}, {65, 257},  {40, 300}, {7, 1000},
                               {96, 3 * 24 * 43 + 1}, {2, 4000}, {130, 4096 + 7},
                               {200, 1000}, {257, 77}};

static void test_path(tc_kpath path)
{
    tc_error err;
    tc_kernels k;
    CHECK_OK(tc_kernels_init(&k, path, &err), &err);
    tc_kwork *w = tc_kwork_new();
    tc_kpool *pool1 = NULL, *pool3 = NULL;
    CHECK_OK(tc_kpool_new(&pool1, 1, &err), &err);
    CHECK_OK(tc_kpool_new(&pool3, 3, &err), &err);
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 32},
                                {TC_TGROUP_COLS, 33}, {TC_TGROUP_COLS, 128}, {TC_TGROUP_COLS, 256}};
    int cases = 0, failed = 0;
    for (size_t l = 0; l < 3; l++)
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
                if (groups[gi].kind == TC_TGROUP_COLS && SHAPES[si].K > 2000 && gi != 4)
                    continue; /* keep the run short */
                /* 1..6 tokens: the 4-token kernels and their remainders */
                int64_t nt = 1 + (int64_t)((si + gi) % 6);
                failed += check_case(&k, (si + gi) % 2 ? pool3 : pool1, w, LAYOUTS[l], SHAPES[si],
                                     groups[gi], nt, 0) != 0;
                cases++;
            }
    /* Overflow guards: long rows of extreme products. The longest row
     * crosses several folds of the multiply-add kernels' scaled
     * accumulators into int32 totals (every 32768 chunks). */
    for (size_t l = 0; l < 3; l++) {
        for (int mode = 1; mode <= 3; mode++) {
            const shape s = {33, 9000};
            failed += check_case(&k, pool1, w, LAYOUTS[l], s, groups[0], 1, mode) != 0;
            failed += check_case(&k, pool3, w, LAYOUTS[l], s, groups[5], 5, mode) != 0;
            cases += 2;
        }
        /* five row blocks on one thread: the four-block kernels and one more */
        const shape longest = {129, 4 * 131072 + 4099}, longest_few = {33, longest.K};
        failed += check_case(&k, pool1, w, LAYOUTS[l], longest, groups[1], 1, 3) != 0;
        failed += check_case(&k, pool3, w, LAYOUTS[l], longest_few, groups[1], 5, 3) != 0;
        cases += 2;
    }
    printf("path %s: %d cases, %d failed\n", tc_kpath_name(path), cases, failed);
    tc_kpool_free(pool1);
    tc_kpool_free(pool3);
    tc_kwork_free(w);
}

/* Same sums whatever the thread count: rows are split, never the sums. */
static void test_threads(void)
{
    tc_error err;
    tc_kernels k;
    CHECK_OK(tc_kernels_init(&k, TC_KPATH_AUTO, &err), &err);
    tc_tgroup g = {TC_TGROUP_COLS, 64};
    tc_tpack_plan p;
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL2, 300, 500, &g, &p, &err), &err);
    int8_t *codes = malloc(300 * 500), x[2 * 500];
    float *sc = calloc((size_t)p.n_scales, sizeof(float));
    uint8_t *packed = malloc(p.total_bytes);
    for (int i = 0; i < 300 * 500; i++)
        codes[i] = (int8_t)((int)(rng_next() % 3) - 1);
    for (int i = 0; i < 1000; i++)
        x[i] = (int8_t)(rng_next() & 0xff);
    CHECK_OK(tc_tpack_pack(&p, codes, sc, packed, &err), &err);
    int64_t n = 2 * 300 * tc_kern_groups(&p);
    int32_t *y1 = malloc((size_t)n * 4), *yt = malloc((size_t)n * 4);
    tc_kwork *w = tc_kwork_new();
    CHECK_OK(tc_kern_matmul_i32(&k, NULL, w, &p, packed, p.total_bytes, x, 2, y1, &err), &err);
    for (int t = 2; t <= 11; t += 3) {
        tc_kpool *pool;
        CHECK_OK(tc_kpool_new(&pool, t, &err), &err);
        CHECK(tc_kpool_threads(pool) == t);
        for (int rep = 0; rep < 3; rep++) {
            memset(yt, 0, (size_t)n * 4);
            CHECK_OK(tc_kern_matmul_i32(&k, pool, w, &p, packed, p.total_bytes, x, 2, yt, &err),
                     &err);
            CHECK(memcmp(y1, yt, (size_t)n * 4) == 0);
        }
        tc_kpool_free(pool);
    }
    /* A short buffer is refused. */
    CHECK(tc_kern_matmul_i32(&k, NULL, w, &p, packed, p.weight_bytes - 1, x, 1, y1, &err) ==
          TC_ERR);
    tc_kwork_free(w);
    free(codes);
    free(sc);
    free(packed);
    free(y1);
    free(yt);
}

/* A set of products of one input equals the products one by one, bit for
 * bit, on every path and thread count; a set whose plans differ is
 * refused. */
static void test_set(tc_kpath path)
{
    tc_error err;
    tc_kernels k;
    CHECK_OK(tc_kernels_init(&k, path, &err), &err);
    tc_kwork *w = tc_kwork_new();
    tc_kpool *pool;
    CHECK_OK(tc_kpool_new(&pool, 3, &err), &err);
    const int64_t K = 301, rows[3] = {200, 33, 65};
    const tc_tgroup groups[2] = {{TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 64}};
    for (size_t l = 0; l < 3; l++)
        for (int gi = 0; gi < 2; gi++)
            for (int64_t n = 1; n <= 5; n += 4) {
                tc_tpack_plan p[3];
                uint8_t *packed[3];
                float *one[3], *set[3];
                int8_t *x = malloc((size_t)(n * K));
                for (int64_t i = 0; i < n * K; i++)
                    x[i] = (int8_t)(rng_next() & 0xff);
                float act[5] = {1.5f, 2, 0.25f, 3, 1};
                tc_kmat mats[3];
                for (int m = 0; m < 3; m++) {
                    CHECK_OK(tc_tpack_plan_make(LAYOUTS[l], rows[m], K, &groups[gi], &p[m], &err),
                             &err);
                    int8_t *codes = malloc((size_t)(rows[m] * K));
                    float *sc = malloc((size_t)p[m].n_scales * sizeof(float));
                    for (int64_t i = 0; i < rows[m] * K; i++)
                        codes[i] = (int8_t)((int)(rng_next() % 3) - 1);
                    for (int64_t i = 0; i < p[m].n_scales; i++)
                        sc[i] = 0.01f * (float)(1 + i % 13);
                    packed[m] = malloc(p[m].total_bytes);
                    CHECK_OK(tc_tpack_pack(&p[m], codes, sc, packed[m], &err), &err);
                    one[m] = malloc((size_t)(n * rows[m]) * sizeof(float));
                    set[m] = calloc((size_t)(n * rows[m]), sizeof(float));
                    CHECK_OK(tc_kern_matmul(&k, pool, w, &p[m], packed[m], p[m].total_bytes, x,
                                            act, n, one[m], &err),
                             &err);
                    mats[m] = (tc_kmat){&p[m], packed[m], p[m].total_bytes, set[m]};
                    free(codes);
                    free(sc);
                }
                CHECK_OK(tc_kern_matmul_set(&k, pool, w, mats, 3, x, act, n, &err), &err);
                for (int m = 0; m < 3; m++) {
                    CHECK(memcmp(one[m], set[m], (size_t)(n * rows[m]) * sizeof(float)) == 0);
                    free(packed[m]);
                    free(one[m]);
                    free(set[m]);
                }
                free(x);
            }
    /* plans of different widths or layouts cannot share tables */
    tc_tpack_plan a, b;
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_I2, 32, 64, &groups[0], &a, &err), &err);
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_I2, 32, 68, &groups[0], &b, &err), &err);
    uint8_t *buf = calloc(1, b.total_bytes);
    int8_t xz[68] = {0};
    float y[64], act = 1;
    tc_kmat bad[2] = {{&a, buf, b.total_bytes, y}, {&b, buf, b.total_bytes, y + 32}};
    CHECK(tc_kern_matmul_set(&k, pool, w, bad, 2, xz, &act, 1, &err) == TC_ERR);
    CHECK(strstr(err.msg, "differ") != NULL);
    free(buf);
    tc_kpool_free(pool);
    tc_kwork_free(w);
}

/* Weights with offsets (f16 scale and offset per group): the float outputs
 * of every path equal the scalar path's bit for bit (the sums are equal and
 * the offsets are applied by one shared routine) and the fp64 value of
 * sum over groups of (s * codes.x + mu * sum x) / act; a set mixing
 * products with and without offsets equals them one by one. */
static void test_affine(tc_kpath path)
{
    tc_error err;
    tc_kernels k, ks;
    CHECK_OK(tc_kernels_init(&k, path, &err), &err);
    CHECK_OK(tc_kernels_init(&ks, TC_KPATH_SCALAR, &err), &err);
    tc_kwork *w = tc_kwork_new();
    tc_kpool *pool;
    CHECK_OK(tc_kpool_new(&pool, 3, &err), &err);
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 32},
                                {TC_TGROUP_COLS, 100}, {TC_TGROUP_COLS, 256}};
    int cases = 0, failed = 0;
    for (size_t l = 0; l < 3; l++)
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
                shape s = SHAPES[si];
                if (s.K > 2000 && gi != 1)
                    continue;
                int64_t n = 1 + (int64_t)((si + gi + l) % 9), ng;
                tc_tpack_plan p;
                CHECK_OK(tc_tpack_plan_make_params(LAYOUTS[l], s.M, s.K, &groups[gi],
                                                   TC_TPARAM_AFFINE_F16, &p, &err),
                         &err);
                ng = tc_kern_groups(&p);
                size_t MK = (size_t)(s.M * s.K);
                int8_t *codes = malloc(MK), *x = malloc((size_t)(n * s.K));
                float *sc = malloc((size_t)p.n_scales * sizeof(float)), *mu = malloc((size_t)p.n_scales * sizeof(float));
                float *act = malloc((size_t)n * sizeof(float));
                float *y = malloc((size_t)(n * s.M) * sizeof(float)), *ys = malloc((size_t)(n * s.M) * sizeof(float));
                uint8_t *packed = malloc(p.total_bytes);
                for (size_t i = 0; i < MK; i++)
                    codes[i] = (int8_t)((int)(rng_next() % 3) - 1);
                for (int64_t i = 0; i < n * s.K; i++)
                    x[i] = (int8_t)(rng_next() & 0xff);
                for (int64_t t = 0; t < n; t++)
                    act[t] = 0.5f + (float)t;
                for (int64_t i = 0; i < p.n_scales; i++) {
                    /* f16 values, so that the fp64 reference sees what is stored */
                    sc[i] = (float)(1 + rng_next() % 1000) / 1024.0f;
                    mu[i] = ((float)(rng_next() % 512) - 256.0f) / 4096.0f;
                }
                CHECK_OK(tc_tpack_pack_affine(&p, codes, sc, mu, packed, &err), &err);
                CHECK_OK(tc_kern_matmul(&k, pool, w, &p, packed, p.total_bytes, x, act, n, y, &err), &err);
                CHECK_OK(tc_kern_matmul(&ks, NULL, w, &p, packed, p.total_bytes, x, act, n, ys, &err), &err);
                int bad = memcmp(y, ys, (size_t)(n * s.M) * sizeof(float)) != 0;
                int64_t G = groups[gi].kind == TC_TGROUP_COLS ? groups[gi].cols : s.K;
                for (int64_t t = 0; t < n && !bad; t++)
                    for (int64_t m = 0; m < s.M; m++) {
                        double e = 0, mag = 0;
                        for (int64_t j = 0; j < ng; j++) {
                            int64_t gix = groups[gi].kind == TC_TGROUP_TENSOR ? 0
                                          : groups[gi].kind == TC_TGROUP_ROW ? m : m * ng + j;
                            double cx = 0, xs = 0;
                            for (int64_t kk = j * G; kk < s.K && kk < (j + 1) * G; kk++) {
                                cx += codes[m * s.K + kk] * x[t * s.K + kk];
                                xs += x[t * s.K + kk];
                            }
                            e += sc[gix] * cx + mu[gix] * xs;
                            mag += fabs(sc[gix] * cx) + fabs(mu[gix] * xs);
                        }
                        e /= act[t];
                        mag /= act[t];
                        if (!(fabs(y[t * s.M + m] - e) <= 1e-5 * (mag + 1)))
                            bad = 1;
                    }
                if (bad)
                    fprintf(stderr, "%s %s %lldx%lld group %d/%d tokens %lld: outputs with offsets differ\n",
                            tc_kpath_name(path), tc_tpack_layout_name(LAYOUTS[l]), (long long)s.M,
                            (long long)s.K, (int)groups[gi].kind, groups[gi].cols, (long long)n);
                failed += bad;
                cases++;
                /* With the offsets of a symmetric plan's codes and scales:
                 * the same products in one set, bit for bit. */
                tc_tpack_plan q;
                CHECK_OK(tc_tpack_plan_make(LAYOUTS[l], s.M, s.K, &groups[gi], &q, &err), &err);
                uint8_t *qp = malloc(q.total_bytes);
                CHECK_OK(tc_tpack_pack(&q, codes, sc, qp, &err), &err);
                float *y2 = malloc((size_t)(n * s.M) * sizeof(float)), *y3 = malloc((size_t)(n * s.M) * sizeof(float));
                CHECK_OK(tc_kern_matmul(&k, pool, w, &q, qp, q.total_bytes, x, act, n, y2, &err), &err);
                tc_kmat mats[2] = {{&p, packed, p.total_bytes, ys}, {&q, qp, q.total_bytes, y3}};
                CHECK_OK(tc_kern_matmul_set(&k, pool, w, mats, 2, x, act, n, &err), &err);
                CHECK(memcmp(y, ys, (size_t)(n * s.M) * sizeof(float)) == 0);
                CHECK(memcmp(y2, y3, (size_t)(n * s.M) * sizeof(float)) == 0);
                /* Unpacking gives back the codes and the f16 parameters. */
                int8_t *c2 = malloc(MK);
                float *s2 = malloc((size_t)p.n_scales * sizeof(float)), *m2 = malloc((size_t)p.n_scales * sizeof(float));
                CHECK_OK(tc_tpack_unpack_affine(&p, packed, p.total_bytes, c2, s2, m2, &err), &err);
                CHECK(memcmp(c2, codes, MK) == 0 && memcmp(s2, sc, (size_t)p.n_scales * 4) == 0 &&
                      memcmp(m2, mu, (size_t)p.n_scales * 4) == 0);
                free(c2);
                free(s2);
                free(m2);
                free(qp);
                free(y2);
                free(y3);
                free(codes);
                free(x);
                free(sc);
                free(mu);
                free(act);
                free(y);
                free(ys);
                free(packed);
            }
    printf("path %s: %d cases with offsets, %d failed\n", tc_kpath_name(path), cases, failed);
    CHECK(failed == 0);
    tc_kpool_free(pool);
    tc_kwork_free(w);
}

/* The prompt path (a product of 12 tokens or more on a path that has one;
 * on the others the same cases run the table kernels): int32 sums equal the
 * plain integer matvec, and the outputs, with plain scales or with offsets,
 * equal the scalar path's bit for bit, alone and in a set. Ragged rows and
 * columns (not multiples of 32 rows, of a 256-column tile or of the chunk),
 * every grouping, groups that start inside a quad or a TL2 chunk, token
 * counts on both sides of the threshold and every remainder of the six-token
 * microkernel, 1 to 3 threads; extreme products over whole tiles (an int16
 * accumulator at its limit, -32768) and rows of many tiles. */
static int gemm_case(const tc_kernels *k, const tc_kernels *ks, tc_kpool *pool, tc_kwork *w,
                     tc_tpack_layout layout, shape s, tc_tgroup g, tc_tparam_kind params, int64_t n,
                     int mode)
{
    tc_error err;
    tc_tpack_plan p, p2;
    CHECK_OK(tc_tpack_plan_make_params(layout, s.M, s.K, &g, params, &p, &err), &err);
    CHECK_OK(tc_tpack_plan_make_params(layout, s.M + 7, s.K, &g, params, &p2, &err), &err);
    int64_t ng = tc_kern_groups(&p), M2 = s.M + 7;
    size_t MK = (size_t)(M2 * s.K);
    int8_t *codes = malloc(MK), *x = malloc((size_t)(n * s.K));
    float *sc = malloc((size_t)p2.n_scales * sizeof(float)), *mu = malloc((size_t)p2.n_scales * sizeof(float));
    float *act = malloc((size_t)n * sizeof(float));
    uint8_t *packed = malloc(p.total_bytes), *packed2 = malloc(p2.total_bytes);
    int32_t *want = malloc((size_t)(n * s.M * ng) * 4), *got = malloc((size_t)(n * s.M * ng) * 4);
    float *y = malloc((size_t)(n * M2) * sizeof(float)), *ys = malloc((size_t)(n * M2) * sizeof(float));
    float *y2 = malloc((size_t)(n * M2) * sizeof(float)), *y2s = malloc((size_t)(n * M2) * sizeof(float));
    for (size_t i = 0; i < MK; i++)
        codes[i] = mode == 1 ? -1 : mode == 3 ? 1 : (int8_t)((int)(rng_next() % 3) - 1);
    for (int64_t i = 0; i < n * s.K; i++)
        x[i] = mode == 1 || mode == 3 ? -128 : mode == 2 ? 127 : (int8_t)(rng_next() & 0xff);
    for (int64_t t = 0; t < n; t++)
        act[t] = 0.5f + (float)t;
    for (int64_t i = 0; i < p2.n_scales; i++) {
        sc[i] = (float)(1 + rng_next() % 1000) / 1024.0f;
        mu[i] = ((float)(rng_next() % 512) - 256.0f) / 4096.0f;
    }
    CHECK_OK(tc_tpack_pack_affine(&p, codes, sc, mu, packed, &err), &err);
    CHECK_OK(tc_tpack_pack_affine(&p2, codes, sc, mu, packed2, &err), &err);
    for (int64_t t = 0; t < n; t++)
        ref_groups(codes, s.M, s.K, &g, x + t * s.K, want + t * s.M * ng);
    memset(got, 0x5a, (size_t)(n * s.M * ng) * 4);
    CHECK_OK(tc_kern_matmul_i32(k, pool, w, &p, packed, p.total_bytes, x, n, got, &err), &err);
    int bad = memcmp(want, got, (size_t)(n * s.M * ng) * 4) != 0;
    CHECK_OK(tc_kern_matmul(k, pool, w, &p, packed, p.total_bytes, x, act, n, y, &err), &err);
    CHECK_OK(tc_kern_matmul(ks, NULL, w, &p, packed, p.total_bytes, x, act, n, ys, &err), &err);
    bad |= (memcmp(y, ys, (size_t)(n * s.M) * sizeof(float)) != 0) << 1;
    /* a set of two products of different heights, against the scalar path */
    CHECK_OK(tc_kern_matmul(ks, NULL, w, &p2, packed2, p2.total_bytes, x, act, n, y2s, &err), &err);
    tc_kmat mats[2] = {{&p2, packed2, p2.total_bytes, y2}, {&p, packed, p.total_bytes, y}};
    CHECK_OK(tc_kern_matmul_set(k, pool, w, mats, 2, x, act, n, &err), &err);
    bad |= (memcmp(y2, y2s, (size_t)(n * M2) * sizeof(float)) != 0 ||
            memcmp(y, ys, (size_t)(n * s.M) * sizeof(float)) != 0) << 2;
    if (bad)
        fprintf(stderr, "%s %s %lldx%lld group %d/%d %s tokens %lld mode %d threads %d: differ (%d)\n",
                tc_kpath_name(k->path), tc_tpack_layout_name(layout), (long long)s.M, (long long)s.K,
                (int)g.kind, g.cols, tc_tparam_kind_name(params), (long long)n, mode,
                tc_kpool_threads(pool), bad);
    free(codes);
    free(x);
    free(sc);
    free(mu);
    free(act);
    free(packed);
    free(packed2);
    free(want);
    free(got);
    free(y);
    free(ys);
    free(y2);
    free(y2s);
    return bad != 0;
}

static void test_gemm(tc_kpath path)
{
    tc_error err;
    tc_kernels k, ks;
    CHECK_OK(tc_kernels_init(&k, path, &err), &err);
    CHECK_OK(tc_kernels_init(&ks, TC_KPATH_SCALAR, &err), &err);
    tc_kwork *w = tc_kwork_new();
    tc_kpool *pools[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(tc_kpool_new(&pools[i], i + 1, &err), &err);
    static const shape shapes[] = {{1, 5},   {31, 23},  {33, 257},          {47, 300},
                                   {70, 1000}, {32, 24 * 11 + 1}, {65, 256 + 24 + 3}, {9, 4}};
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 32},
                                {TC_TGROUP_COLS, 33}, {TC_TGROUP_COLS, 100}, {TC_TGROUP_COLS, 256}};
    static const int64_t tokens[] = {11, 12, 13, 15, 16, 17, 19, 20, 22, 23, 40};
    int cases = 0, failed = 0, c = 0;
    for (size_t l = 0; l < 3; l++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
                for (int pk = 0; pk < TC_TPARAM_KIND_COUNT; pk++, c++) {
                    int64_t n = tokens[c % (sizeof tokens / sizeof tokens[0])];
                    failed += gemm_case(&k, &ks, pools[c % 3], w, LAYOUTS[l], shapes[si], groups[gi],
                                        (tc_tparam_kind)pk, n, 0);
                    cases++;
                }
    /* Extreme products: codes +1 (fields 2) with -128 reach -32768 in an
     * int16 lane after a whole tile; rows of many tiles. */
    for (size_t l = 0; l < 3; l++)
        for (int mode = 1; mode <= 3; mode++) {
            const shape s = {40, 3000};
            failed += gemm_case(&k, &ks, pools[mode % 3], w, LAYOUTS[l], s, groups[mode == 2 ? 4 : 0],
                                TC_TPARAM_SCALE_F32, 16 + mode, mode);
            cases++;
        }
    printf("path %s: %d cases of many tokens, %d failed\n", tc_kpath_name(path), cases, failed);
    CHECK(failed == 0);
    for (int i = 0; i < 3; i++)
        tc_kpool_free(pools[i]);
    tc_kwork_free(w);
}

static void test_dispatch(void)
{
    tc_error err;
    tc_kpath p;
    CHECK_OK(tc_kpath_parse("avx2", &p, &err), &err);
    CHECK(p == TC_KPATH_AVX2);
    CHECK(tc_kpath_parse("sse9", &p, &err) == TC_ERR);
    CHECK(strstr(err.msg, "sse9") != NULL);
    tc_kernels k;
    CHECK_OK(tc_kernels_init(&k, TC_KPATH_AUTO, &err), &err);
    CHECK(k.path != TC_KPATH_AUTO && tc_kpath_available(k.path));
    CHECK(tc_kpath_available(TC_KPATH_SCALAR));
}

int main(void)
{
    test_dispatch();
    const char *ran[TC_KPATH_COUNT];
    int n_ran = 0;
    for (int p = TC_KPATH_SCALAR; p < TC_KPATH_COUNT; p++) {
        if (!tc_kpath_available((tc_kpath)p)) {
            printf("path %s: not supported by this CPU, not tested\n", tc_kpath_name((tc_kpath)p));
            continue;
        }
        test_path((tc_kpath)p);
        test_set((tc_kpath)p);
        test_affine((tc_kpath)p);
        test_gemm((tc_kpath)p);
        ran[n_ran++] = tc_kpath_name((tc_kpath)p);
    }
    printf("paths tested:");
    for (int i = 0; i < n_ran; i++)
        printf(" %s", ran[i]);
    printf("\n");
    test_threads();
    return tu_finish("test_kernels");
}
