/* The analysis result's own helpers, kept apart from the pass that fills it
 * so that reports can be rendered and read back without running a model. */
#include "tc/analysis.h"

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
