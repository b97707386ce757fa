/* The GPTQ column sweep, shared by the symmetric (ternary_gptq.c) and the
 * affine (ternary_affine.c) calibrated quantizers: they differ only in how a
 * column is rounded onto their grid, and the affine one in fitting a group's
 * grid when the sweep reaches it. */
#include <cblas.h>
#include <stdlib.h>

#include "ternary_internal.h"

int tc_gptq_sweep_alloc(tc_gptq_sweep *s, int M, int K, int B)
{
    s->M = M;
    s->K = K;
    s->B = B;
    s->linv = NULL;
    s->work = malloc((size_t)M * (size_t)K * sizeof(float));
    s->wb = malloc((size_t)B * (size_t)M * sizeof(float));
    s->eb = malloc((size_t)B * (size_t)M * sizeof(float));
    /* B x (K - B) U entries, or B floats of block-start scratch */
    s->urest = malloc(((size_t)B * (size_t)K + (size_t)B) * sizeof(float));
    return s->work && s->wb && s->eb && s->urest ? 0 : -1;
}

void tc_gptq_sweep_free(tc_gptq_sweep *s)
{
    free(s->work);
    free(s->wb);
    free(s->eb);
    free(s->urest);
    s->work = s->wb = s->eb = s->urest = NULL;
}

/* Columns [q0, q0 + nb) of the corrected weight: each rounded in turn, its
 * scaled error taken off the block's later columns at once; then all of the
 * block's errors reach the columns to its right in one GEMM (the lazy
 * update). */
static void sweep_block(tc_gptq_sweep *s, int q0, int nb)
{
    for (int j = 0; j < nb; j++)
        for (int m = 0; m < s->M; m++)
            s->wb[(size_t)j * s->M + m] = s->work[(size_t)m * s->K + q0 + j];
    if (s->block)
        s->block(s->ctx, q0, nb, s->wb, s->urest); /* urest is free until the update */
    for (int j = 0; j < nb; j++) {
        float *e = s->eb + (size_t)j * s->M;
        s->column(s->ctx, q0 + j, s->wb + (size_t)j * s->M, e, tc_gptq_u(s->linv, s->K, q0 + j, q0 + j));
        for (int jj = j + 1; jj < nb; jj++) {
            float u = (float)tc_gptq_u(s->linv, s->K, q0 + j, q0 + jj);
            float *w = s->wb + (size_t)jj * s->M;
            for (int m = 0; m < s->M; m++)
                w[m] -= e[m] * u;
        }
    }
    int rest = s->K - q0 - nb;
    if (rest == 0)
        return;
    for (int j = 0; j < nb; j++)
        for (int r = 0; r < rest; r++)
            s->urest[(size_t)j * rest + r] = (float)tc_gptq_u(s->linv, s->K, q0 + j, q0 + nb + r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->M, rest, nb, -1.0f, s->eb, s->M, s->urest, rest, 1.0f,
                s->work + q0 + nb, s->K);
}

void tc_gptq_sweep_run(tc_gptq_sweep *s)
{
    for (int q0 = 0; q0 < s->K; q0 += s->B)
        sweep_block(s, q0, s->K - q0 < s->B ? s->K - q0 : s->B);
}
