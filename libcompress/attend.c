/* The decoder's attention for one query (forward_math.h says what it
 * computes), one body compiled for three vector widths. */
#include "forward_math.h"

static inline __attribute__((always_inline)) void
attend(const float *restrict q, const float *restrict kt, size_t kt_ld, const float *restrict v,
       size_t v_stride, size_t n_keys, int head_dim, float scale, float softcap, float *restrict p,
       float *restrict out)
{
    /* Row by row, each a contiguous run the hardware prefetcher follows
     * (every score sums over d in order, every output over keys in order). */
    for (size_t j = 0; j < n_keys; j++)
        p[j] = 0.0f;
    for (int d = 0; d < head_dim; d++) {
        const float *restrict row = kt + (size_t)d * kt_ld;
        float qd = q[d];
        for (size_t j = 0; j < n_keys; j++)
            p[j] += qd * row[j];
    }
    for (size_t j = 0; j < n_keys; j++)
        p[j] *= scale;
    if (softcap > 0.0f)
        tc_fm_softcap(p, n_keys, softcap);
    tc_fm_softmax(p, n_keys);
    for (int d = 0; d < head_dim; d++)
        out[d] = 0.0f;
    for (size_t j = 0; j < n_keys; j++) {
        const float *restrict vj = v + j * v_stride;
        float pj = p[j];
        for (int d = 0; d < head_dim; d++)
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
