/* The tokenizer that goes with a model: from the checkpoint when it carries
 * one (a GGUF vocabulary, a Hugging Face tokenizer.json), else from a file
 * the user names. */
#ifndef TC_MODEL_TOKENIZER_H
#define TC_MODEL_TOKENIZER_H

#include "tc/model.h"
#include "tc/tokenizer.h"
#include "tc/vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* path: a tokenizer file given by the user (tokenizer.bin, tokenizer.json or
 * a GGUF), or NULL to take the one set with tc_model_set_tokenizer, else the
 * checkpoint's own.  A checkpoint without one and no path is an error that
 * says which file to pass.  The tokenizer's vocabulary must fit the model's. */
int tc_model_tokenizer(const tc_model *m, const char *path, tc_tokenizer **out, tc_error *err);

/* Gives m a tokenizer file (what a tool's --tokenizer names): it is opened and
 * checked against the model here, before anything is written, and then goes
 * with the model: tc_model_tokenizer uses it, and a GGUF written from a
 * checkpoint that carries no vocabulary of its own (llama2.c) carries it. */
int tc_model_set_tokenizer(tc_model *m, const char *path, tc_error *err);

/* The model's vocabulary as GGUF keys (tc/vocab.h): the tokenizer set with
 * tc_model_set_tokenizer, else a GGUF's own keys (copied), a Hugging Face
 * directory's tokenizer.json (with the files beside it) as llama.cpp's
 * converter writes it.  A GGUF without vocabulary and a synthetic model
 * without tokenizer give an empty one (n_kvs 0).  A Hugging Face or llama2.c
 * checkpoint without a tokenizer is an error: stock llama.cpp loads no GGUF
 * without a vocabulary. */
int tc_model_vocab(const tc_model *m, tc_vocab *out, tc_error *err);

/* A tokenizer file the user names, for a model of vocab_size tokens: a
 * tokenizer.json (with the tokenizer_config.json beside it), a GGUF's
 * vocabulary, or a llama2.c tokenizer.bin (which does not store its size).
 * Does not check the vocabulary against the model. */
int tc_tokenizer_open_for(const char *path, int vocab_size, tc_tokenizer **out, tc_error *err);

/* A tc_encode_fn (calib.h) over a tokenizer: no BOS, no special-token parsing. */
int tc_model_tokenizer_encode(void *tokenizer, const char *text, size_t len, int32_t **ids, size_t *n,
                              tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
