/* Shared between model.c (binding) and model_open.c (format readers). */
#ifndef TC_MODEL_INTERNAL_H
#define TC_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tc/model.h"

typedef struct tc_naming {
    const char *tok_embd, *out_norm, *output;
    const char *role[TC_N_ROLES]; /* printf patterns with the layer index; NULL when not stored */
} tc_naming;

extern const tc_naming tc_naming_hf, tc_naming_gguf, tc_naming_llama2c;

void tc_naming_format(const tc_naming *nm, tc_role r, int layer, char *buf, size_t n);

/* Finds every role's tensor, checks shapes against m->cfg and fills
 * m->tok_embd, m->out_norm, m->output, m->layers.  m->dir, m->path and m->cfg
 * must be set.  Drop flags: 1 the sub-layer is absent; 2: the file holds
 * a stand-in for the dropped sub-layer (GGUF `deci`), whose tensors are left
 * unbound. */
int tc_model_bind(tc_model *m, const tc_naming *nm, const uint8_t *drop_attn, const uint8_t *drop_mlp,
                  tc_error *err);

#endif
