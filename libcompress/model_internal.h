/* Shared between model.c (binding) and model_open.c (format readers). */
#ifndef TC_MODEL_INTERNAL_H
#define TC_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tc/model.h"

typedef struct tc_naming {
    const char *tok_embd, *out_norm, *output;
    const char *role[TC_N_ROLES]; /* printf patterns with the layer index; NULL when not stored */
    const char *fused_qkv;        /* q, k, v rows in one tensor; NULL when stored apart */
    const char *fused_gate_up;    /* gate then up rows in one tensor */
} tc_naming;

extern const tc_naming tc_naming_hf, tc_naming_hf_bitnet, tc_naming_hf_gemma, tc_naming_hf_phi3, tc_naming_gguf,
    tc_naming_gguf_phi3, tc_naming_llama2c, tc_naming_hf_diffllama;

/* What llama.cpp's graph computes for one general.architecture, as traits
 * (gguf_family.c): the GGUF reader sets a model's traits from its row and
 * the file's keys, the writer refuses a model whose traits the row cannot
 * hold. */
typedef struct tc_gguf_family {
    const char *name;        /* general.architecture */
    tc_arch arch;
    tc_rope_layout layout;   /* adjacent pairs (NORM) or rotate-half (NEOX) */
    int deci;                /* llama with per-layer head counts and widths */
    int qk_norm, gemma, phi3;
    int n_layers_27b;        /* gemma: the block count llama.cpp reads as the 27B, whose scale differs */
    tc_act act;              /* the MLP's activation */
    int qkv_bias;            /* 0: none, 1: optional, 2: required */
    int o_mlp_bias;          /* output and MLP biases may be present */
    int rope_freqs;          /* reads rope_freqs.weight (Llama 3.1's scaling) */
    int window_pattern;      /* > 0: layer l is local unless l % p == p - 1 */
    const tc_naming *names;
    int bitnet;              /* sub-norms, ternary linears (optional `.scale` tensors), the head tied to
                                the embedding, the activation from {arch}.hidden_activation */
} tc_gguf_family;

extern const tc_gguf_family tc_gguf_families[];
extern const size_t tc_gguf_n_families;

/* The row GGUF files of family a are written as (deci: with sub-layer drops). */
const tc_gguf_family *tc_gguf_family_of(tc_arch a, int deci);

/* The Hugging Face class a family is written as (hf_config.c). */
typedef struct tc_hf_class {
    const char *model_type, *cls;
    int layer_types;         /* the config may carry per-layer attention types */
    const tc_naming *names;
} tc_hf_class;

int tc_hf_class_of(tc_arch a, tc_hf_class *out); /* TC_ERR for a family tc does not write as HF */

/* The tensor names a family uses in a format. */
const tc_naming *tc_naming_for(tc_format fmt, tc_arch arch);

void tc_naming_format(const tc_naming *nm, tc_role r, int layer, char *buf, size_t n);

/* Finds every role's tensor, checks shapes against m->cfg and fills
 * m->tok_embd, m->out_norm, m->output, m->layers.  m->dir, m->path and m->cfg
 * must be set.  Drop flags: 1 the sub-layer is absent; 2: the file holds
 * a stand-in for the dropped sub-layer (GGUF `deci`), whose tensors are left
 * unbound. */
int tc_model_bind(tc_model *m, const tc_naming *nm, const uint8_t *drop_attn, const uint8_t *drop_mlp,
                  tc_error *err);

/* Reads a Hugging Face config.json (hf_config.c): the config with its
 * traits, the family's tensor names, and the keys that were ignored because
 * transformers' class for the family does not define them (a malloc'd,
 * space-separated list, or NULL). */
struct cJSON;
int tc_hf_config_read(const struct cJSON *cfg, const char *path, tc_config *c, const tc_naming **names,
                      char **ignored, tc_error *err);

/* A config.json for a model of this config, from its traits (for sources
 * that are not Hugging Face directories); NULL with err set when the family's
 * class cannot express it: the written config must read back as the same
 * function. */
struct cJSON *tc_hf_config_build(const tc_config *c, tc_error *err);

#endif
