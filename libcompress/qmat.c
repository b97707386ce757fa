/* Block-quantized embedding / head products (tc/qmat.h): activation
 * quantization, the scalar row kernels that define the arithmetic, the
 * dispatch and the split over threads.  The AVX2 kernels are in qmat_x86.c. */
#include "tc/qmat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "qmat_internal.h"
#include "tc/ggml_quants.h"

int tc_qmat_type_ok(tc_dtype t)
{
    return t == TC_Q8_0 || t == TC_Q6_K || t == TC_Q4_0;
}

int tc_qmat_linear_type_ok(tc_dtype t)
{
    return t == TC_Q8_0 || t == TC_Q4_0;
}

int tc_qmat_round(tc_dtype t, const float *W, int64_t rows, int64_t cols, float *out, tc_error *err)
{
    if (!tc_qmat_type_ok(t) || cols <= 0 || rows < 0 || cols % tc_qmat_block(t) != 0)
        return tc_err(err, "a %s matrix of %lld columns is not whole blocks", tc_dtype_name(t), (long long)cols);
    uint64_t rb = tc_qmat_row_bytes(t, cols);
    uint8_t *row = malloc((size_t)rb);
    if (!row)
        return tc_err(err, "out of memory");
    int rc = TC_OK;
    for (int64_t i = 0; i < rows && rc == TC_OK; i++) {
        rc = tc_ggml_quant_quantize(t, W + i * cols, (uint64_t)cols, row, err);
        if (rc == TC_OK)
            rc = tc_ggml_quant_dequantize(t, row, (uint64_t)cols, out + i * cols, err);
    }
    free(row);
    return rc;
}

int64_t tc_qmat_block(tc_dtype t)
{
    return t == TC_Q6_K ? 256 : 32;
}

uint64_t tc_qmat_row_bytes(tc_dtype t, int64_t cols)
{
    return (uint64_t)(cols / tc_qmat_block(t)) * tc_dtype_block_bytes(t);
}

void tc_qmat_quantize_act(tc_dtype t, const float *x, int64_t n, int64_t cols, int8_t *xq, float *xd)
{
    int64_t B = tc_qmat_block(t), nb = cols / B;
    for (int64_t i = 0; i < n * nb; i++) {
        const float *v = x + i * B;
        int8_t *q = xq + i * B;
        float amax = 0.0f;
        for (int64_t j = 0; j < B; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        for (int64_t j = 0; j < B; j++)
            if (!isfinite(v[j]))
                amax = NAN;
        if (!(amax <= 3.0e38f)) { /* NaN or infinite: NaN products rather than garbage */
            memset(q, 0, (size_t)B);
            xd[i] = NAN;
            continue;
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        xd[i] = amax / 127.0f;
        for (int64_t j = 0; j < B; j++) {
            float r = roundf(v[j] * id);
            q[j] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
        }
    }
}

/* ---- the scalar kernels: the definition of the arithmetic ---------------- */

static float half_at(const uint8_t *p)
{
    return tc_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)): the order of the AVX2 reduction. */
static float hsum8(const float a[8])
{
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    float u0 = s0 + s2, u1 = s1 + s3;
    return u0 + u1;
}

/* A 32-column block of values v (int) against x: lane l sums columns
 * 4l..4l+3, and is fused into acc[l] with scale s. */
static void lanes32(const int v[32], const int8_t *x, float s, float acc[8])
{
    for (int l = 0; l < 8; l++) {
        int32_t p = 0;
        for (int i = 0; i < 4; i++)
            p += v[4 * l + i] * x[4 * l + i];
        acc[l] = fmaf((float)p, s, acc[l]);
    }
}

static float row_q8_0(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    float acc[8] = {0};
    int v[32];
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q8_0_BYTES, x += 32) {
        for (int j = 0; j < 32; j++)
            v[j] = (int8_t)w[2 + j];
        lanes32(v, x, half_at(w) * xd[b], acc);
    }
    return hsum8(acc);
}

static float row_q4_0(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    float acc[8] = {0};
    int v[32];
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q4_0_BYTES, x += 32) {
        for (int j = 0; j < 16; j++) {
            v[j] = (w[2 + j] & 0x0F) - 8;
            v[j + 16] = (w[2 + j] >> 4) - 8;
        }
        lanes32(v, x, half_at(w) * xd[b], acc);
    }
    return hsum8(acc);
}

/* Q6_K: value of column 32c + j (c = 0..7 within the 256-column block) is
 * built from ql, qh as ggml lays them out: half h = c / 4, part p = c % 4;
 * low nibble (p < 2) or high nibble (p >= 2) of ql[64h + 32(p & 1) + j],
 * bits 2p..2p+1 of qh[32h + j] above it, minus 32.  Lane l of chunk c is
 * scales[2c + l / 4] times the sum of columns 32c + 4l .. 32c + 4l + 3; the
 * lanes add up over the 8 chunks in int32, then one fused multiply-add per
 * lane and block. */
static float row_q6_k(const uint8_t *w, int64_t nb, const int8_t *x, const float *xd)
{
    float acc[8] = {0};
    for (int64_t b = 0; b < nb; b++, w += TC_QMAT_Q6_K_BYTES, x += 256) {
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        int32_t lane[8] = {0};
        for (int c = 0; c < 8; c++) {
            int h = c / 4, p = c % 4;
            for (int l = 0; l < 8; l++) {
                int32_t s = 0;
                for (int i = 0; i < 4; i++) {
                    int j = 4 * l + i;
                    int lo = ql[64 * h + 32 * (p & 1) + j];
                    lo = p < 2 ? lo & 0x0F : lo >> 4;
                    int v = (lo | ((qh[32 * h + j] >> (2 * p)) & 3) << 4) - 32;
                    s += v * x[32 * c + j];
                }
                lane[l] += sc[2 * c + l / 4] * s;
            }
        }
        float sb = half_at(w + 208) * xd[b];
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf((float)lane[l], sb, acc[l]);
    }
    return hsum8(acc);
}

static const tc_qrow_fns qrow_scalar = {row_q8_0, row_q4_0, row_q6_k};

/* ---- dispatch and threads -------------------------------------------------- */

/* The AVX2 kernels also need FMA and F16C (cpuid leaf 1, ECX bits 12, 29):
 * read directly, as not every compiler's __builtin_cpu_supports knows F16C. */
static int has_fma_f16c(void)
{
#ifdef TC_QMAT_X86
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 12)) && (c & (1u << 29));
#else
    return 0;
#endif
}

int tc_qmat_path_simd(tc_kpath p)
{
#ifdef TC_QMAT_X86
    return p != TC_KPATH_SCALAR && p != TC_KPATH_AUTO && tc_kpath_available(p) &&
           tc_kpath_available(TC_KPATH_AVX2) && has_fma_f16c();
#else
    (void)p;
    return 0;
#endif
}

static tc_qrow_fn row_fn(tc_kpath path, tc_dtype t)
{
    const tc_qrow_fns *f = &qrow_scalar;
#ifdef TC_QMAT_X86
    if (tc_qmat_path_simd(path))
        f = &tc_qrow_avx2;
#else
    (void)path;
#endif
    return t == TC_Q8_0 ? f->q8_0 : t == TC_Q4_0 ? f->q4_0 : f->q6_k;
}

/* Rows are taken as four streams at once (row r0 + i of each quarter in
 * turn): one stream of reads leaves this kind of machine's memory short of
 * its rate (docs/KERNELS.md).  Each row's arithmetic is the same either way. */
static void rows_with(tc_qrow_fn fn, uint64_t rb, int64_t nb, int64_t cols, const uint8_t *w,
                      int64_t r0, int64_t r1, const int8_t *xq, const float *xd, int64_t n, float *y,
                      int64_t ldy)
{
    int64_t len = r1 - r0, q = (len + 3) / 4;
    for (int64_t i = 0; i < q; i++)
        for (int64_t s = 0; s < 4; s++) {
            int64_t r = r0 + s * q + i;
            if (r >= r1)
                continue;
            const uint8_t *wr = w + (uint64_t)r * rb;
            for (int64_t t = 0; t < n; t++)
                y[t * ldy + r] = fn(wr, nb, xq + t * cols, xd + t * nb);
        }
}

void tc_qmat_rows(tc_kpath path, tc_dtype t, const uint8_t *w, int64_t cols, int64_t r0, int64_t r1,
                  const int8_t *xq, const float *xd, int64_t n, float *y, int64_t ldy)
{
    rows_with(row_fn(path, t), tc_qmat_row_bytes(t, cols), cols / tc_qmat_block(t), cols, w, r0, r1, xq, xd,
              n, y, ldy);
}

typedef struct qjob {
    tc_qrow_fn fn;
    uint64_t rb;
    int64_t nb, rows, cols, n;
    const uint8_t *w;
    const int8_t *xq;
    const float *xd;
    float *y;
} qjob;

static void qjob_run(void *ctx, int worker, int n_workers)
{
    const qjob *j = ctx;
    int64_t a = j->rows * worker / n_workers, b = j->rows * (worker + 1) / n_workers;
    rows_with(j->fn, j->rb, j->nb, j->cols, j->w, a, b, j->xq, j->xd, j->n, j->y, j->rows);
}

int tc_qmat_matmul(const tc_kernels *k, tc_kpool *pool, tc_dtype t, const uint8_t *w, uint64_t len,
                   int64_t rows, int64_t cols, const int8_t *xq, const float *xd, int64_t n, float *y,
                   tc_error *err)
{
    if (!tc_qmat_type_ok(t) || cols <= 0 || cols % tc_qmat_block(t) != 0)
        return tc_err(err, "a %s matrix of %lld columns is not whole blocks", tc_dtype_name(t), (long long)cols);
    uint64_t rb = tc_qmat_row_bytes(t, cols);
    if (rows < 0 || (rows > 0 && len / rb < (uint64_t)rows))
        return tc_err(err, "a %s matrix of %lld rows needs %llu bytes a row, and %llu bytes are short of that",
                      tc_dtype_name(t), (long long)rows, (unsigned long long)rb, (unsigned long long)len);
    qjob j = {row_fn(k->path, t), rb, cols / tc_qmat_block(t), rows, cols, n, w, xq, xd, y};
    tc_kpool_run(pool, qjob_run, &j);
    return TC_OK;
}

int tc_qmat_check(tc_dtype t, const uint8_t *w, int64_t rows, int64_t cols, tc_error *err)
{
    uint64_t bb = tc_dtype_block_bytes(t), at = t == TC_Q6_K ? 208 : 0;
    uint64_t per_row = (uint64_t)(cols / tc_qmat_block(t));
    for (uint64_t i = 0; i < (uint64_t)rows * per_row; i++) {
        const uint8_t *p = w + i * bb + at;
        if (((p[0] | p[1] << 8) & 0x7c00) == 0x7c00)
            return tc_err(err, "row %llu of a %s matrix has a block scale that is infinite or NaN",
                          (unsigned long long)(i / per_row), tc_dtype_name(t));
    }
    return TC_OK;
}
