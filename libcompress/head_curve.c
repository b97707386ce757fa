/* Masking the least important heads together: after every head was masked
 * alone, the k heads whose loss was smallest go at once, for k = 1, 2, 4, ...
 * Heads interact (two heads may each be redundant only while the other is
 * there), so the sum of their single losses does not predict it; this
 * measures it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis_internal.h"

/* Summed NLL of every prediction of sequences [0, n_win) with `mask` applied.
 * The passes are grouped as the analysis groups them (one sequence, or
 * batch_tokens), so that masking nothing gives the baseline's bits; each
 * pass's sum is kept apart, the passes are spread over the ranks of
 * o->dist, and the sums are added in sequence order. */
static int masked_nll(const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                      const uint8_t *mask, double *nll, uint64_t *pred, tc_error *err)
{
    size_t *off = malloc((n_win + 1) * sizeof *off), *bseq = malloc((n_win + 1) * sizeof *bseq), nb = 0;
    double *rec = calloc(2 * n_win + 1, sizeof *rec); /* per pass: NLL sum, predictions */
    int rc = off && bseq && rec ? TC_OK : tc_err(err, "%s: out of memory", x->m->path);
    for (size_t s0 = 0; !rc && s0 < n_win; nb++) {
        bseq[nb] = s0;
        size_t s1 = s0 + 1;
        while (x->o->batch_tokens && s1 < n_win && offsets[s1 + 1] - offsets[s0] <= x->o->batch_tokens)
            s1++;
        s0 = s1;
    }
    if (!rc)
        bseq[nb] = n_win;
    size_t b0 = 0, b1 = 0;
    tc_dist_range(x->o->dist, x->o->dist ? x->o->dist->rank : 0, nb, &b0, &b1);
    for (size_t i = b0; i < b1 && !rc; i++) {
        size_t s0 = bseq[i], s1 = bseq[i + 1];
        for (size_t s = s0; s <= s1; s++)
            off[s - s0] = offsets[s] - offsets[s0];
        tc_batch b = {tokens + offsets[s0], off, s1 - s0};
        tc_nll_observer acc;
        tc_observer ob = tc_nll_observer_make(&acc, &b);
        tc_forward_opts fo;
        memset(&fo, 0, sizeof fo);
        fo.n_threads = x->o->n_threads;
        fo.skip = x->o->skip;
        fo.weights = x->weights;
        fo.ws = x->ws;
        fo.observers = &ob;
        fo.n_observers = 1;
        fo.head_mask = mask;
        rc = tc_forward(x->m, &b, &fo, err);
        rec[2 * i] = acc.nll_sum;
        rec[2 * i + 1] = (double)acc.n_predicted;
        tc_analysis_progress(x, (double)(offsets[s1] - offsets[s0]) * (x->m->cfg.n_layers + 1));
    }
    rc = tc_dist_allgather(x->o->dist, rc, rec, nb, 2 * sizeof *rec, err);
    *nll = 0.0;
    *pred = 0;
    for (size_t i = 0; !rc && i < nb; i++) {
        *nll += rec[2 * i];
        *pred += (uint64_t)rec[2 * i + 1];
    }
    free(off);
    free(bseq);
    free(rec);
    return rc;
}

int tc_analysis_head_curve(const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                           double base_nll, uint64_t base_pred, tc_analysis *out, tc_error *err)
{
    tc_head_measure *hm = &out->heads;
    memset(hm, 0, sizeof *hm);
    if (n_win == 0 || base_pred == 0)
        return TC_OK;
    hm->measured = 1;
    hm->windows = n_win;
    hm->n_predicted = base_pred;
    hm->nll = base_nll / (double)base_pred;
    int *rank = NULL;
    size_t nr = 0;
    if (tc_analysis_head_ranking(out, TC_HEAD_BY_KL, &rank, &nr, err))
        return TC_ERR;
    uint8_t *mask = calloc((size_t)out->n_layers * (size_t)out->n_heads + 1, 1);
    int rc = mask ? TC_OK : tc_err(err, "%s: out of memory", x->m->path);
    size_t most = nr / 2 > 0 ? nr / 2 : nr;
    for (size_t k = 1, done = 0; rc == TC_OK && k <= most && hm->n_curve < TC_HEAD_CURVE_MAX; k *= 2) {
        for (; done < k; done++)
            mask[rank[done]] = 1;
        double nll = 0.0;
        uint64_t pred = 0;
        rc = masked_nll(x, tokens, offsets, n_win, mask, &nll, &pred, err);
        if (rc == TC_OK && pred != base_pred)
            rc = tc_err(err, "%s: internal: %llu predictions with heads masked, %llu without", x->m->path,
                        (unsigned long long)pred, (unsigned long long)base_pred);
        if (rc == TC_OK) {
            hm->curve_k[hm->n_curve] = (int)k;
            hm->curve_dnll[hm->n_curve] = (nll - base_nll) / (double)base_pred;
            hm->n_curve++;
        }
    }
    free(mask);
    free(rank);
    return rc;
}
