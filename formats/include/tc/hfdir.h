/* Hugging Face checkpoint directories: config.json plus model.safetensors,
 * or shards listed in model.safetensors.index.json. */
#ifndef TC_HFDIR_H
#define TC_HFDIR_H

#include <cjson/cJSON.h>

#include "tc/error.h"
#include "tc/tensordir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_hfdir {
    char *path;      /* the directory */
    cJSON *config;   /* parsed config.json (owned) */
    tc_tensordir dir;
} tc_hfdir;

/* Opens a directory: parses config.json (it must be a JSON object), then
 * model.safetensors or every shard named by the index (each shard opened once;
 * a shard named by the index but missing, a weight_map entry whose tensor is
 * not in its shard, or a tensor in two shards is an error). */
int tc_hfdir_open(tc_hfdir *h, const char *path, tc_error *err);
void tc_hfdir_close(tc_hfdir *h);

/* Writes a directory: config.json (pretty-printed) and model.safetensors, or
 * shards of at most shard_bytes each plus the index when shard_bytes > 0 and
 * the tensors exceed it.  Creates the directory if needed; every file goes
 * through the atomic writer. */
int tc_hfdir_write(const char *path, const cJSON *config, const tc_out_tensor *tensors,
                   size_t n_tensors, uint64_t shard_bytes, tc_error *err);

/* The files of a model directory beside its weights and config that a
 * runtime loads with it: tokenizer (tokenizer.json, tokenizer.model,
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json,
 * vocab.json, merges.txt, chat_template.jinja, chat_template.json) and
 * generation_config.json.
 * Copies those present in src into dst, each atomically; *copied counts
 * them (may be NULL). */
int tc_hfdir_copy_side_files(const char *src, const char *dst, int *copied, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
