/* The tokenizer that goes with a model: from the checkpoint when it carries
 * one (a GGUF vocabulary, a Hugging Face tokenizer.json), else from a file
 * the user names. */
#ifndef TC_MODEL_TOKENIZER_H
#define TC_MODEL_TOKENIZER_H

#include "tc/model.h"
#include "tc/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* path: a tokenizer file given by the user (tokenizer.bin, tokenizer.json or
 * a GGUF), or NULL to take the checkpoint's own.  A checkpoint without one
 * and no path is an error that says which file to pass.  The tokenizer's
 * vocabulary must fit the model's. */
int tc_model_tokenizer(const tc_model *m, const char *path, tc_tokenizer **out, tc_error *err);

/* A tc_encode_fn (calib.h) over a tokenizer: no BOS, no special-token parsing. */
int tc_model_tokenizer_encode(void *tokenizer, const char *text, size_t len, int32_t **ids, size_t *n,
                              tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
