/* A tokenizer as GGUF metadata: the tokenizer.* keys stock llama.cpp reads,
 * written as llama.cpp's own converters write them (convert_hf_to_gguf.py for
 * Hugging Face tokenizer files, convert-llama2c-to-ggml for llama2.c's
 * tokenizer.bin), so that a GGUF written from a checkpoint of another format
 * loads and tokenizes in llama.cpp as the checkpoint's own tokenizer does.
 *
 * Hugging Face tokenizer.json (BPE):
 *  - byte-level BPE becomes tokenizer.ggml.model "gpt2": the vocabulary as
 *    stored, added tokens as control (special, or looking special: <|...|>)
 *    or user-defined tokens, the merge list, and tokenizer.ggml.pre, the name
 *    llama.cpp gives the pre-tokenizer.  The converter finds that name by
 *    hashing the encoding of a fixed text; tc reads it off the normalizer,
 *    pre-tokenizer and ignore_merges (a table in vocab_pre.c) and refuses a
 *    tokenizer it cannot name rather than guess.
 *  - SentencePiece-style BPE with byte fallback (Llama 2, Mistral) becomes
 *    model "llama", whose merges llama.cpp orders by token score.  A
 *    tokenizer.json has no scores, so tc gives every token minus the rank of
 *    its first merge: merged in that order, llama.cpp forms the tokens the
 *    merge list forms.  That holds when the merges are a SentencePiece
 *    model's (every split of a token into two tokens is a merge, and the
 *    merges of one token are consecutive); tc checks it and refuses a
 *    tokenizer.json where it does not hold.
 *  - Special-token ids, add-BOS/EOS flags and the chat template come from
 *    tokenizer_config.json, the post-processor and config.json beside
 *    tokenizer.json, as the converter's SpecialVocab reads them.
 * llama2.c tokenizer.bin: model "llama", the file's tokens and scores, ids 0,
 * 1, 2 as <unk>, <s>, </s>, spaces written as U+2581.
 *
 * Ids the model has beyond the tokenizer's are written "[PAD<id>]", unused,
 * as the converter pads them. */
#ifndef TC_VOCAB_H
#define TC_VOCAB_H

#include <stdint.h>

#include "tc/error.h"
#include "tc/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_vocab {
    const tc_gguf_writer_kv *kvs; /* the keys, in the converter's order */
    size_t n_kvs;
    const char *source;           /* the file read, for messages */
    void *priv;                   /* what the values point into */
} tc_vocab;

/* From a Hugging Face tokenizer.json and the files beside it
 * (tokenizer_config.json, config.json, chat_template.jinja or .json).
 * n_vocab: the model's vocabulary size (<= 0: the tokenizer's own); a
 * tokenizer with more tokens than that is refused. */
int tc_vocab_from_hf(tc_vocab *v, const char *tokenizer_json, int32_t n_vocab, tc_error *err);

/* From a llama2.c tokenizer.bin holding n_vocab tokens (<= 0: read to the
 * end of the file). */
int tc_vocab_from_llama2c(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err);

/* The tokenizer.* keys of a GGUF file, copied; its token count must be
 * n_vocab (when > 0). */
int tc_vocab_from_gguf(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err);

/* Any of the three, told apart by content (GGUF magic; a JSON object; else
 * tokenizer.bin), as tc_tokenizer_open does. */
int tc_vocab_open(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err);

/* The inverse, for a Hugging Face directory written from a GGUF or
 * llama2.c checkpoint: tokenizer.json and tokenizer_config.json in dir (each
 * written atomically), which transformers tokenizes with as llama.cpp does
 * with the keys.  "llama": a byte-fallback BPE whose merges are every split
 * of a token into two tokens, ordered by the joined token's score
 * (transformers' SentencePiece extraction); "gpt2": the vocabulary and
 * merges with the pre-tokenizer of the name's row in the table.  Refused,
 * naming the source: a pre-tokenizer name the table lacks, scores that tie
 * between tokens merges form (llama.cpp then merges left to right, which no
 * merge list expresses; runs of one character, as Llama 2's whitespace runs,
 * are let through, ordered by id as transformers' conversion orders them),
 * joins llama.cpp could make that no merge list holds, tokens that are not
 * UTF-8 text. */
int tc_vocab_write_hf(const tc_vocab *v, const char *dir, tc_error *err);

void tc_vocab_free(tc_vocab *v);

/* A key's value; NULL when absent. */
const tc_gguf_value *tc_vocab_find(const tc_vocab *v, const char *key);

#ifdef __cplusplus
}
#endif

#endif
