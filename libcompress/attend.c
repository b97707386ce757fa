/* The decoder's attention for one query (forward_math.h says what it
 * computes), one body compiled for three vector widths. */
#include "forward_math.h"

#include <string.h>

/* Eight floats as one value: its operations are lane by lane, so a block of
 * sums held in these registers adds in the same order as one held in
 * memory, without the loads and stores of each pass. */
typedef float v8 __attribute__((vector_size(32)));

/* Macros rather than functions: a function returning a 32-byte vector has
 * an ABI that differs with AVX, and the baseline build has none. */
#define LOAD8(p) (__extension__({ v8 v_; memcpy(&v_, (p), sizeof v_); v_; }))
#define STORE8(p, v) do { v8 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)
#define SPLAT8(x) (__extension__({ float x_ = (x); (v8){x_, x_, x_, x_, x_, x_, x_, x_}; }))

static inline __attribute__((always_inline)) void
attend(const float *restrict q, const float *restrict kt, size_t kt_ld, const float *restrict v,
       size_t v_stride, size_t n_keys, int head_dim, float scale, float softcap, float *restrict p,
       float *restrict out)
{
    /* Every score sums over d in order, every output over keys in order.
     * Scores of 32 keys at a time stay in registers while d runs (the rows
     * of the transposed keys are contiguous runs the prefetcher follows);
     * the keys left over run row by row in memory. */
    size_t j0 = 0;
    for (; j0 + 32 <= n_keys; j0 += 32) {
        v8 a0 = SPLAT8(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < head_dim; d++) {
            const float *row = kt + (size_t)d * kt_ld + j0;
            v8 qd = SPLAT8(q[d]);
            a0 += qd * LOAD8(row);
            a1 += qd * LOAD8(row + 8);
            a2 += qd * LOAD8(row + 16);
            a3 += qd * LOAD8(row + 24);
        }
        STORE8(p + j0, a0);
        STORE8(p + j0 + 8, a1);
        STORE8(p + j0 + 16, a2);
        STORE8(p + j0 + 24, a3);
    }
    for (size_t j = j0; j < n_keys; j++)
        p[j] = 0.0f;
    for (int d = 0; d < head_dim; d++) {
        const float *restrict row = kt + (size_t)d * kt_ld;
        float qd = q[d];
        for (size_t j = j0; j < n_keys; j++)
            p[j] += qd * row[j];
    }
    for (size_t j = 0; j < n_keys; j++)
        p[j] *= scale;
    if (softcap > 0.0f)
        tc_fm_softcap(p, n_keys, softcap);
    tc_fm_softmax(p, n_keys);
    /* Outputs 32 dimensions at a time in registers over the keys, then the
     * dimensions left over. */
    int d0 = 0;
    for (; d0 + 32 <= head_dim; d0 += 32) {
        v8 a0 = SPLAT8(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (size_t j = 0; j < n_keys; j++) {
            const float *vj = v + j * v_stride + d0;
            v8 pj = SPLAT8(p[j]);
            a0 += pj * LOAD8(vj);
            a1 += pj * LOAD8(vj + 8);
            a2 += pj * LOAD8(vj + 16);
            a3 += pj * LOAD8(vj + 24);
        }
        STORE8(out + d0, a0);
        STORE8(out + d0 + 8, a1);
        STORE8(out + d0 + 16, a2);
        STORE8(out + d0 + 24, a3);
    }
    for (int d = d0; d < head_dim; d++)
        out[d] = 0.0f;
    for (size_t j = 0; d0 < head_dim && j < n_keys; j++) {
        const float *restrict vj = v + j * v_stride;
        float pj = p[j];
        for (int d = d0; d < head_dim; d++)
            out[d] += pj * vj[d];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void
attend_avx512(const float *restrict q, const float *restrict kt, size_t kt_ld,
              const float *restrict v, size_t v_stride, size_t n_keys, int head_dim,
              float scale, float softcap, float *restrict p, float *restrict out)
{
    attend(q, kt, kt_ld, v, v_stride, n_keys, head_dim, scale, softcap, p, out);
}

__attribute__((target("avx2"))) static void attend_avx2(const float *restrict q,
                                                        const float *restrict kt, size_t kt_ld,
                                                        const float *restrict v, size_t v_stride,
                                                        size_t n_keys, int head_dim, float scale,
                                                        float softcap, float *restrict p,
                                                        float *restrict out)
{
    attend(q, kt, kt_ld, v, v_stride, n_keys, head_dim, scale, softcap, p, out);
}
#endif

void tc_fm_attend(const float *restrict q, const float *restrict kt, size_t kt_ld,
                  const float *restrict v, size_t v_stride, size_t n_keys, int head_dim, float scale,
                  float softcap, float *restrict p, float *restrict out)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f"))
        attend_avx512(q, kt, kt_ld, v, v_stride, n_keys, head_dim, scale, softcap, p, out);
    else if (__builtin_cpu_supports("avx2"))
        attend_avx2(q, kt, kt_ld, v, v_stride, n_keys, head_dim, scale, softcap, p, out);
    else
#endif
        attend(q, kt, kt_ld, v, v_stride, n_keys, head_dim, scale, softcap, p, out);
}
