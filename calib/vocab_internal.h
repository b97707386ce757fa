/* Shared by the vocabulary files: the builder the readers fill (vocab.c)
 * and what the Hugging Face reader and writer share (vocab_hf.c,
 * vocab_pre.c, vocab_special.c, vocab_hf_write.c). */
#ifndef TC_VOCAB_INTERNAL_H
#define TC_VOCAB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tc/vocab.h"

/* Special tokens with a GGUF id key, in the order the keys are written. */
enum { VB_BOS, VB_EOS, VB_EOT, VB_EOM, VB_UNK, VB_SEP, VB_PAD, VB_MASK, VB_N_IDS };
/* Flags with a GGUF key: tokenizer.ggml.add_{bos,eos,sep}_token. */
enum { VB_ADD_BOS, VB_ADD_EOS, VB_ADD_SEP, VB_N_ADD };

/* GGUF token types (tokenizer.ggml.token_type). */
enum { VB_NORMAL = 1, VB_UNKNOWN = 2, VB_CONTROL = 3, VB_USER = 4, VB_UNUSED = 5, VB_BYTE = 6 };

typedef struct vb_span {
    uint64_t off;
    uint32_t len;
} vb_span;

typedef struct vocab_build {
    const char *source; /* for messages */
    int32_t n;          /* tokens */
    char *arena;        /* every string */
    size_t len, cap;
    vb_span *tok;
    float *score; /* NULL: no scores */
    int32_t *type; /* 0: not set yet */
    vb_span *merge;
    size_t n_merges, cap_merges;
    const char *model, *pre; /* static strings */
    int32_t id[VB_N_IDS];    /* -1: not written */
    int add[VB_N_ADD];       /* -1: not written */
    int add_space_prefix;    /* -1: not written */
    int has_template;        /* tokenizer.chat_template */
    vb_span tmpl;
    vb_span *tmpl_name, *tmpl_text; /* named templates */
    size_t n_named;
} vocab_build;

int vb_init(vocab_build *b, const char *source, int32_t n, int with_scores, tc_error *err);
void vb_free(vocab_build *b);
/* Copies bytes into the arena. */
int vb_str(vocab_build *b, const char *s, size_t n, vb_span *out, tc_error *err);
int vb_token(vocab_build *b, int32_t id, const char *s, size_t n, float score, int type, tc_error *err);
/* Every token not set: "[PAD<id>]", unused, with score pad_score. */
int vb_pad(vocab_build *b, float pad_score, tc_error *err);
int vb_merge(vocab_build *b, const char *s, size_t n, tc_error *err);
int vb_named_template(vocab_build *b, const char *name, const char *text, tc_error *err);
/* Builds the keys into v; b is emptied. */
int vb_finish(vocab_build *b, tc_vocab *v, tc_error *err);

struct tc_tokenizer;
/* ---- vocab_hf.c ---- */
/* Whether llama.cpp's score-ordered SentencePiece merging forms what the
 * merge list of t (read from a tokenizer.json) forms; score (n_vocab
 * entries, or NULL) receives the scores that make it so. */
int vocab_spm_check(const struct tc_tokenizer *t, const char *source, float *score, tc_error *err);

static inline const char *vj_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline int vj_bool(const cJSON *o, const char *key, int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

/* ---- vocab_pre.c ---- */
/* llama.cpp's name for the byte-level pre-tokenizer of a tokenizer.json
 * (root, its model); NULL when the table has none, *why then describing it. */
const char *vocab_pre_name(const cJSON *root, const cJSON *model, char *why, size_t n_why);
/* The normalizer and pre-tokenizer a tokenizer.json needs for llama.cpp's
 * pre-tokenizer `name`, and its ignore_merges; TC_ERR when the table has no
 * such name. */
int vocab_pre_json(const char *name, cJSON **normalizer, cJSON **pre, int *ignore_merges);

/* ---- vocab_special.c ---- */
/* path's directory joined with name (malloc'd). */
char *vocab_beside(const char *path, const char *name);
/* The JSON object in the file `name` beside path, or NULL when there is no
 * such file; one that is not a JSON object is an error. */
int vocab_json_beside(const char *path, const char *name, cJSON **out, tc_error *err);
/* Special-token ids, add flags and chat template of the tokenizer.json at
 * path (parsed: root), as SpecialVocab reads them. */
int vocab_special(vocab_build *b, const char *path, const cJSON *root, tc_error *err);

/* tc_vocab_from_hf on a tokenizer.json in memory (path names it and
 * locates the files beside it). */
int vocab_hf_mem(tc_vocab *v, const char *path, const char *json, size_t len, int32_t n_vocab, tc_error *err);

#endif
