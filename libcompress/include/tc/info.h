/* `--info`: what a checkpoint holds, as text for people and JSON for programs. */
#ifndef TC_INFO_H
#define TC_INFO_H

#include <cjson/cJSON.h>

#include "tc/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Keys: format, path, arch, n_layers, dim, n_heads, n_kv_heads, head_dim,
 * ffn_dim, vocab_size, max_seq_len, norm_eps, rope_theta, rope_layout,
 * tied_embeddings, qkv_bias, n_params, n_params_linear, file_bytes,
 * bits_per_weight, bytes_by_dtype {dtype: bytes}, params_by_dtype,
 * dropped_attn [layers], dropped_mlp [layers]. */
cJSON *tc_model_info_json(const tc_model *m);

/* Adds a config's shape to o: arch, n_layers, dim, n_heads, n_kv_heads,
 * head_dim, ffn_dim, vocab_size, max_seq_len, norm_eps, rope_theta,
 * rope_layout, tied_embeddings, qkv_bias (in that order). */
void tc_config_add_json(cJSON *o, const tc_config *c);

/* The same as aligned text lines (malloc'd). */
char *tc_model_info_text(const tc_model *m);

/* The traits as a JSON object (what --info --json prints and the packed
 * file's header stores; tc_traits_from_json reads it back exactly). */
cJSON *tc_traits_json(const tc_config *c);

/* One line naming the model's traits ("rmsnorm(w), silu gated, rope llama3 x8 ..."). */
void tc_traits_describe(const tc_config *c, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
