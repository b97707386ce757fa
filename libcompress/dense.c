/* The packed runner's fp32 products (the output head and any linear layer
 * stored in float): forward_math.h says what they compute.  One body,
 * compiled for three vector widths. */
#include "forward_math.h"

/* x . w over n values in sixteen lanes: lane i sums the products at
 * k = i (mod 16) in increasing k, then the lanes are added in a fixed tree.
 * The vectoriser maps the lanes onto vectors of any width without changing
 * one addition, and nothing is fused (-ffp-contract=off), so every CPU and
 * every caller gets the same bits. */
static inline __attribute__((always_inline)) float dot16(const float *restrict x, const float *restrict w,
                                                          int n)
{
    TC_FM_NO_CONTRACT
    float acc[16] = {0};
    int k = 0;
    for (; k + 16 <= n; k += 16)
        for (int i = 0; i < 16; i++)
            acc[i] += x[k + i] * w[k + i];
    for (int i = 0; k + i < n; i++)
        acc[i] += x[k + i] * w[k + i];
    for (int half = 8; half >= 1; half /= 2)
        for (int i = 0; i < half; i++)
            acc[i] += acc[i + half];
    return acc[0];
}

/* Rows are taken four at a time so that each stays in L1 while every token
 * passes it; each output is still one dot16. */
static inline __attribute__((always_inline)) void dense(const float *restrict x, int T, const float *restrict W,
                                                         int cols, int r0, int r1, float *restrict out, size_t ld)
{
    for (int r = r0; r < r1; r += 4) {
        int nr = r1 - r < 4 ? r1 - r : 4;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < nr; j++)
                out[(size_t)t * ld + (size_t)(r + j)] =
                    dot16(x + (size_t)t * (size_t)cols, W + (size_t)(r + j) * (size_t)cols, cols);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void dense_avx512(const float *x, int T, const float *W, int cols,
                                                            int r0, int r1, float *out, size_t ld)
{
    dense(x, T, W, cols, r0, r1, out, ld);
}

__attribute__((target("avx2"))) static void dense_avx2(const float *x, int T, const float *W, int cols, int r0,
                                                       int r1, float *out, size_t ld)
{
    dense(x, T, W, cols, r0, r1, out, ld);
}
#endif

void tc_fm_dense_rows(const float *x, int T, const float *W, int cols, int r0, int r1, float *out, size_t ld)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f"))
        dense_avx512(x, T, W, cols, r0, r1, out, ld);
    else if (__builtin_cpu_supports("avx2"))
        dense_avx2(x, T, W, cols, r0, r1, out, ld);
    else
#endif
        dense(x, T, W, cols, r0, r1, out, ld);
}
