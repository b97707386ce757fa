/* Pieces the ternary quantizers share (ternary.c, ternary_gptq.c,
 * ternary_affine.c, ternary_sweep.c); not installed. */
#ifndef TC_TERNARY_INTERNAL_H
#define TC_TERNARY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

/* The least-squares threshold of one span for T = sign(w) [|w| >= thr]:
 * returns thr (+inf: every code 0) and the scale (the mean kept magnitude)
 * in *alpha.  keys and tmp hold n entries each. */
float tc_ternary_best_threshold(const float *w, size_t n, uint32_t *keys, uint32_t *tmp,
                                double *alpha);

/* Sorts n unsigned keys ascending (tmp: n more). */
void tc_ternary_sort_keys(uint32_t *a, uint32_t *tmp, size_t n);

/* The inverse Cholesky factor GPTQ sweeps with, in a (n x n): Linv of the
 * reversed, damped H with its columns first ordered by perm (NULL: as they
 * are), so that U[i][j] = a[(n-1-i) n + (n-1-j)] is the upper factor of
 * (H[perm][perm] + lambda I)^-1.  Dead inputs (zero diagonal) are isolated. */
int tc_ternary_inverse_factor(const double *H, int n, const int32_t *perm, double damp_frac,
                              double *a, tc_error *err);

/* U[i][j] (j >= i) of the factor tc_ternary_inverse_factor wrote to linv. */
static inline double tc_gptq_u(const double *linv, int n, int i, int j)
{
    return linv[(size_t)(n - 1 - i) * (size_t)n + (size_t)(n - 1 - j)];
}

/* The GPTQ column sweep over a weight of M rows and K columns (in the
 * order of the factor's columns), B columns a block.  The caller fills
 * work (the weight, M x K) and linv, and says how a column is rounded:
 * column(ctx, q, w, e, u_qq) rounds sweep column q from its corrected
 * values w[M], keeps the codes, and writes its scaled errors
 * e[m] = (w[m] - rounded[m]) / u_qq.  block, when set, is called as each
 * block starts with the block's corrected columns (wb: nb x M, one column a
 * row) and B floats of scratch (a grid fitted as the sweep reaches it). */
typedef struct tc_gptq_sweep {
    int M, K, B;
    const double *linv;
    float *work;  /* M x K: the weight as corrected so far */
    float *wb;    /* B x M: the current block, one column a row */
    float *eb;    /* B x M: its columns' scaled errors */
    float *urest; /* B x (K - B): U right of the block */
    void (*column)(void *ctx, int q, const float *w, float *e, double u_qq);
    void (*block)(void *ctx, int q0, int nb, const float *wb, float *scratch);
    void *ctx;
} tc_gptq_sweep;

/* Allocates the buffers (0, or -1 when out of memory: free it all the same). */
int tc_gptq_sweep_alloc(tc_gptq_sweep *s, int M, int K, int B);
void tc_gptq_sweep_free(tc_gptq_sweep *s);
void tc_gptq_sweep_run(tc_gptq_sweep *s);

#endif
