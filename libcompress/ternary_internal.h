/* Pieces the ternary quantizers share (ternary.c, ternary_gptq.c,
 * ternary_affine.c); not installed. */
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

#endif
