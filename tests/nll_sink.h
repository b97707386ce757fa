/* A logits callback that scores windows as perplexity does: the NLL of
 * each token of a window but the first, from the previous position's
 * logits, summed in double.  Shared by the tests that hold a runner's
 * perplexity to a reference's. */
#ifndef TC_TESTS_NLL_SINK_H
#define TC_TESTS_NLL_SINK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

typedef struct nll_sink {
    const int32_t *tokens;
    const size_t *off; /* window starts, n_seqs + 1 */
    size_t n_seqs;
    double sum;
    size_t count;
} nll_sink;

/* NLL of token t + 1 of its window from position t's logits. */
static inline int nll_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    nll_sink *s = ctx;
    for (size_t i = 0; i < n; i++) {
        size_t t = tok0 + i, seq = 0;
        while (seq + 1 < s->n_seqs && t >= s->off[seq + 1])
            seq++;
        if (t + 1 >= s->off[seq + 1])
            continue; /* the last token of a window predicts nothing scored */
        const float *x = logits + i * (size_t)vocab;
        double mx = x[0], z = 0;
        for (int k = 1; k < vocab; k++)
            mx = fmax(mx, x[k]);
        for (int k = 0; k < vocab; k++)
            z += exp((double)x[k] - mx);
        s->sum += mx + log(z) - x[s->tokens[t + 1]];
        s->count++;
    }
    return TC_OK;
}

#endif
