/* Block-quantized embedding / head products (tc/qmat.h): every SIMD path bit
 * for bit equal to the scalar kernels on awkward shapes (rows not multiples
 * of 4 or 32, one block, odd block counts, several tokens, extreme weights
 * and activations), the scalar kernels equal to ggml's dequantized weights
 * times the dequantized activations (layout and scale convention), results
 * independent of the thread count, and bad inputs refused. */
#include "testutil.h"

#include "tc/dtype.h"
#include "tc/ggml_quants.h"
#include "tc/kernels.h"
#include "tc/qmat.h"

static const tc_dtype TYPES[] = {TC_Q8_0, TC_Q4_0, TC_Q6_K};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float uniform(void)
{
    return (float)(next_u32() % 2000001) / 1000000.0f - 1.0f;
}

/* Weights: encoded from floats with ggml's rounding (rows of varied
 * magnitude), or, in every third row, raw random bytes with a finite scale,
 * which reach values the encoder never writes (Q8_0's -128, every Q6_K
 * scale and code). */
static void make_weights(tc_dtype t, int64_t rows, int64_t cols, uint8_t *w)
{
    uint64_t rb = tc_qmat_row_bytes(t, cols), bb = tc_dtype_block_bytes(t);
    float *v = malloc((size_t)cols * sizeof *v);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + (uint64_t)r * rb;
        if (r % 3 == 2) {
            for (uint64_t i = 0; i < rb; i++)
                row[i] = (uint8_t)next_u32();
            for (uint64_t b = 0; b < rb / bb; b++) { /* scale: a finite f16 of either sign */
                uint16_t h = tc_f32_to_f16(uniform() * 0.02f);
                uint8_t *d = row + b * bb + (t == TC_Q6_K ? 208 : 0);
                d[0] = (uint8_t)h;
                d[1] = (uint8_t)(h >> 8);
            }
            continue;
        }
        float mag = r % 3 == 0 ? 1.0f : 1e-3f;
        for (int64_t c = 0; c < cols; c++)
            v[c] = uniform() * mag * (c % 7 == 0 ? 8.0f : 1.0f);
        tc_error err;
        CHECK_OK(tc_ggml_quant_quantize(t, v, (uint64_t)cols, row, &err), &err);
    }
    free(v);
}

static void make_acts(int64_t n, int64_t cols, float *x)
{
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = uniform() * (i % 11 == 0 ? 30.0f : 1.0f);
    if (n * cols >= 64)
        for (int64_t i = 0; i < 32; i++) /* a block of zeros */
            x[32 + i] = 0.0f;
}

static void test_shape(tc_dtype t, int64_t rows, int64_t cols, int64_t n, tc_kpool *pool3)
{
    uint64_t rb = tc_qmat_row_bytes(t, cols);
    int64_t B = tc_qmat_block(t), nb = cols / B;
    uint8_t *w = malloc((size_t)(rb * (uint64_t)rows));
    float *x = malloc((size_t)(n * cols) * sizeof *x), *xd = malloc((size_t)(n * nb) * sizeof *xd);
    int8_t *xq = malloc((size_t)(n * cols));
    float *ys = malloc((size_t)(n * rows) * sizeof *ys), *yp = malloc((size_t)(n * rows) * sizeof *yp);
    float *wf = malloc((size_t)cols * sizeof *wf);
    make_weights(t, rows, cols, w);
    make_acts(n, cols, x);
    tc_qmat_quantize_act(t, x, n, cols, xq, xd);
    tc_error err;

    /* The scalar path against the dequantized product (double). */
    tc_kernels ks;
    CHECK_OK(tc_kernels_init(&ks, TC_KPATH_SCALAR, &err), &err);
    CHECK_OK(tc_qmat_matmul(&ks, NULL, t, w, rb * (uint64_t)rows, rows, cols, xq, xd, n, ys, &err), &err);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        CHECK_OK(tc_convert_to_f32(t, w + (uint64_t)r * rb, (uint64_t)cols, wf, &err), &err);
        for (int64_t tk = 0; tk < n; tk++) {
            double e = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                double term = (double)wf[c] * xq[tk * cols + c] * xd[tk * nb + c / B];
                e += term;
                mag += fabs(term);
            }
            double got = ys[tk * rows + r];
            if (!(fabs(got - e) <= 1e-5 * mag + 1e-30) && bad++ < 5)
                fprintf(stderr, "%s %lldx%lld row %lld token %lld: %.9g, dequantized %.9g\n", tc_dtype_name(t),
                        (long long)rows, (long long)cols, (long long)r, (long long)tk, got, e);
        }
    }
    CHECK(bad == 0);

    /* Every other path, one and three threads: the same bits. */
    for (int p = TC_KPATH_SCALAR; p < TC_KPATH_COUNT; p++) {
        if (!tc_kpath_available((tc_kpath)p))
            continue;
        tc_kernels k;
        CHECK_OK(tc_kernels_init(&k, (tc_kpath)p, &err), &err);
        for (int th = 0; th < 2; th++) {
            memset(yp, 0xff, (size_t)(n * rows) * sizeof *yp);
            CHECK_OK(tc_qmat_matmul(&k, th ? pool3 : NULL, t, w, rb * (uint64_t)rows, rows, cols, xq, xd, n, yp,
                                    &err), &err);
            CHECK_MSG(memcmp(ys, yp, (size_t)(n * rows) * sizeof *ys) == 0, "%s path %s, %d thread(s), %lldx%lld x %lld",
                      tc_dtype_name(t), tc_kpath_name((tc_kpath)p), th ? 3 : 1, (long long)rows, (long long)cols,
                      (long long)n);
        }
    }
    /* A row range on its own gives the same rows. */
    if (rows > 2) {
        memset(yp, 0, (size_t)(n * rows) * sizeof *yp);
        tc_qmat_rows(TC_KPATH_AVX2, t, w, cols, 1, rows - 1, xq, xd, n, yp, rows);
        for (int64_t tk = 0; tk < n; tk++)
            CHECK(memcmp(ys + tk * rows + 1, yp + tk * rows + 1, (size_t)(rows - 2) * sizeof *ys) == 0);
    }
    free(w), free(x), free(xd), free(xq), free(ys), free(yp), free(wf);
}

static void test_quantize_act(void)
{
    float x[64], xd[2];
    int8_t q[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)(i - 20) * 0.37f;
    tc_qmat_quantize_act(TC_Q8_0, x, 1, 64, q, xd);
    int ok = 1;
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[32 * b + i]));
        ok = ok && xd[b] == amax / 127.0f;
        for (int i = 0; i < 32; i++)
            ok = ok && q[32 * b + i] != -128 &&
                 fabsf(q[32 * b + i] * xd[b] - x[32 * b + i]) <= 0.5001f * xd[b];
    }
    CHECK(ok);
    /* The largest magnitude maps to +-127, halves round away from zero. */
    float h[32] = {127.0f, -127.0f, 2.5f, -2.5f, 0.5f};
    tc_qmat_quantize_act(TC_Q8_0, h, 1, 32, q, xd);
    CHECK(xd[0] == 1.0f && q[0] == 127 && q[1] == -127 && q[2] == 3 && q[3] == -3 && q[4] == 1);
    /* Zeros: scale 0, codes 0; a NaN or infinity: scale NaN. */
    memset(x, 0, sizeof x);
    x[40] = INFINITY;
    tc_qmat_quantize_act(TC_Q4_0, x, 1, 64, q, xd);
    CHECK(xd[0] == 0.0f && q[0] == 0 && isnan(xd[1]));
}

static void test_refusals(void)
{
    tc_error err;
    tc_kernels k;
    CHECK_OK(tc_kernels_init(&k, TC_KPATH_AUTO, &err), &err);
    uint8_t w[2 * 34] = {0};
    int8_t xq[32] = {0};
    float xd[1] = {1}, y[2];
    CHECK(tc_qmat_matmul(&k, NULL, TC_Q8_0, w, 67, 2, 32, xq, xd, 1, y, &err) == TC_ERR);
    CHECK(strstr(err.msg, "short") != NULL);
    CHECK(tc_qmat_matmul(&k, NULL, TC_Q8_0, w, 68, 2, 33, xq, xd, 1, y, &err) == TC_ERR);
    CHECK(tc_qmat_matmul(&k, NULL, TC_Q4_K, w, 68, 2, 32, xq, xd, 1, y, &err) == TC_ERR);
    CHECK_OK(tc_qmat_check(TC_Q8_0, w, 2, 32, &err), &err);
    w[34 + 1] = 0x7c; /* row 1's scale: +inf */
    CHECK(tc_qmat_check(TC_Q8_0, w, 2, 32, &err) == TC_ERR);
    CHECK(strstr(err.msg, "row 1 ") != NULL);
    CHECK(tc_qmat_type_ok(TC_Q8_0) && tc_qmat_type_ok(TC_Q6_K) && tc_qmat_type_ok(TC_Q4_0) &&
          !tc_qmat_type_ok(TC_F16) && !tc_qmat_type_ok(TC_Q4_K));
}

int main(void)
{
    tc_error err;
    tc_kpool *pool3 = NULL;
    CHECK_OK(tc_kpool_new(&pool3, 3, &err), &err);
    static const int64_t ROWS[] = {1, 3, 5, 33, 70};
    static const int64_t COLS32[] = {32, 96, 288, 2560};
    static const int64_t COLS256[] = {256, 768, 2560};
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        tc_dtype t = TYPES[ti];
        const int64_t *cols = t == TC_Q6_K ? COLS256 : COLS32;
        size_t nc = t == TC_Q6_K ? 3 : 4;
        for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++)
            for (size_t c = 0; c < nc; c++)
                for (int64_t n = 1; n <= 3; n += 2)
                    test_shape(t, ROWS[r], cols[c], n, pool3);
    }
    printf("SIMD products of the block types: %s\n",
           tc_qmat_path_simd(TC_KPATH_AVX2) ? "compared with scalar" : "not available on this CPU, scalar only");
    test_quantize_act();
    test_refusals();
    tc_kpool_free(pool3);
    return tu_finish("test_qmat");
}
