/* The analysis result's own helpers, kept apart from the pass that fills it
 * so that reports can be rendered and read back without running a model. */
#include "tc/analysis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *tc_module_name(tc_module m)
{
    switch (m) {
    case TC_MOD_ATTN:
        return "attn";
    case TC_MOD_MLP:
        return "mlp";
    case TC_MOD_BLOCK:
        return "block";
    default:
        return "?";
    }
}

void tc_analysis_free(tc_analysis *a)
{
    if (!a)
        return;
    if (a->layers)
        for (int i = 0; i < a->n_layers; i++)
            free(a->layers[i].heads);
    free(a->layers);
    memset(a, 0, sizeof *a);
}

typedef struct head_key {
    int id;
    double key[2];
} head_key;

/* key[0] first, then key[1]. */
static int head_key_cmp(const void *pa, const void *pb)
{
    const head_key *a = pa, *b = pb;
    for (int k = 0; k < 2; k++)
        if (a->key[k] != b->key[k])
            return a->key[k] < b->key[k] ? -1 : 1;
    return a->id - b->id; /* layer, then head */
}

int tc_analysis_head_ranking(const tc_analysis *a, tc_head_key by, int **out, size_t *n, tc_error *err)
{
    *out = NULL;
    *n = 0;
    if (!a->layers || a->n_heads <= 0)
        return TC_OK;
    head_key *k = malloc((size_t)a->n_layers * (size_t)a->n_heads * sizeof *k);
    if (!k)
        return tc_err(err, "out of memory ranking %d x %d heads", a->n_layers, a->n_heads);
    size_t m = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++) {
            const tc_head_stats *s = &a->layers[l].heads[h];
            if (!s->measured || isnan(s->dnll) || isnan(s->kl))
                continue;
            k[m].id = l * a->n_heads + h;
            k[m].key[0] = by == TC_HEAD_BY_KL ? s->kl : s->dnll;
            k[m++].key[1] = by == TC_HEAD_BY_KL ? s->dnll : s->kl;
        }
    qsort(k, m, sizeof *k, head_key_cmp);
    int *ids = m ? malloc(m * sizeof *ids) : NULL;
    if (m && !ids) {
        free(k);
        return tc_err(err, "out of memory ranking heads");
    }
    for (size_t i = 0; i < m; i++)
        ids[i] = k[i].id;
    free(k);
    *out = ids;
    *n = m;
    return TC_OK;
}
