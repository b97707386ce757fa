/* `--info`: what a checkpoint holds, as text for people and JSON for programs. */
#ifndef TC_INFO_H
#define TC_INFO_H

#include <cjson/cJSON.h>

#include "tc/model.h"
#include "tc/tmodel.h"

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

/* --info of a packed ternary model (.tcq): the config and traits as for a
 * checkpoint (tc_config_add_json's keys), then format "tcq", version,
 * source, quantization {method, layout, group, calib_tokens, sequential,
 * damp_frac}, tokenizer ({kind, files [{name, bytes}], vocab_size, bos_id,
 * eos_id}, or null when none is embedded), n_params, n_params_linear,
 * file_bytes, bits_per_weight (file), bits_per_weight_linear,
 * bytes_by_storage / params_by_storage {i2|tl1|tl2|F16|F32: n},
 * dropped_attn, dropped_mlp.  NULL when out of memory. */
cJSON *tc_tmodel_info_json(const tc_tmodel *m);
char *tc_tmodel_info_text(const tc_tmodel *m);
#ifdef __cplusplus
}
#endif

#endif
