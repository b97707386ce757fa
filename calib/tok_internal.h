/* Shared internals of the tokenizer: the vocabulary, the loaders' builder
 * interface, the merge engine and the pre-tokenizer. */
#ifndef TC_TOK_INTERNAL_H
#define TC_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tc/error.h"
#include "tc/tokenizer.h"

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
enum {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6,
};

enum { TOK_FAMILY_SPM = 1, TOK_FAMILY_BYTELEVEL = 2 };

/* How the dummy prefix is added to a run of plain text (SPM family). */
enum {
    TOK_PREFIX_NONE = 0,
    TOK_PREFIX_ALWAYS = 1,       /* SentencePiece, HF Prepend normalizer */
    TOK_PREFIX_UNLESS_SPACE = 2, /* HF Metaspace: not when the text already starts with one */
};

/* Open addressing table from byte strings (in the tokenizer's arena) to ids. */
typedef struct tok_strmap {
    int32_t *slots; /* -1 empty */
    uint64_t mask;
} tok_strmap;

/* Open addressing table from a pair of ids to the merge's rank and result. */
typedef struct tok_pairmap {
    uint64_t *keys; /* UINT64_MAX empty */
    int32_t *rank;
    int32_t *result;
    uint64_t mask;
} tok_pairmap;

typedef struct tok_piece {
    uint32_t off, len;
} tok_piece;

struct tc_tokenizer {
    char *source; /* file name, for messages */
    int family;
    int32_t n_vocab;

    char *arena; /* every token's texts */
    size_t arena_len, arena_cap;
    tok_piece *text; /* as stored by the source (byte-level: its escaped form) */
    tok_piece *key;  /* what input text matches: byte-level pieces unescaped to bytes */
    tok_piece *dec;  /* what decoding emits */
    float *score;
    uint8_t *type;

    tok_strmap vocab;      /* key -> id for tokens merges may form or text may start as */
    int32_t byte_id[256];  /* byte fallback (<0xNN>) or the single-byte token; -1 absent */
    int use_ranks;         /* merge priority: ranks (pairs) or scores (vocab lookup) */
    tok_pairmap merges;
    int ignore_merges;     /* a whole pre-token found in the vocabulary is taken as is */

    /* SPM family text handling. */
    char space[8];         /* the piece text standing for ' ' (U+2581, or ' ' in llama2.c) */
    size_t space_len;
    int prefix;            /* TOK_PREFIX_* */
    int prefix_first_only; /* HF Metaspace "first": only where the input starts */
    int split_on_space;    /* HF Metaspace split: each word merged on its own */
    int words_separable;   /* no merge can cross into a space symbol after text */
    int strip_decoded_space;
    int fuse_unk;

    /* Byte-level family pre-tokenizer: applied in sequence, each splitting
     * every piece into matches and the text between them. */
    pcre2_code **regex;
    int n_regex;
    int nfc; /* text is put in Unicode NFC first */

    /* Tokens matched as whole text before the model sees it. */
    int32_t *special; /* grouped by first byte, longest text first */
    int n_special;
    int n_user;                /* how many of them are always matched */
    int32_t special_first[257]; /* special[special_first[b] ..] start with byte b */

    int32_t bos, eos, unk;
    unsigned default_flags;
};

/* ---- builder (tokenizer.c) ---- */
tc_tokenizer *tok_new(const char *source, int family, int32_t n_vocab, tc_error *err);
/* Stores a token's source text, score and type. */
int tok_set(tc_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type,
            tc_error *err);
/* Computes keys, decoded pieces, lookup tables; call after every tok_set. */
int tok_finish(tc_tokenizer *t, tc_error *err);
/* Compiles and appends a pre-tokenizer regex. */
int tok_add_regex(tc_tokenizer *t, const char *pattern, tc_error *err);
/* Adds merges given as "left right" source texts; rank is the list order.
 * Call after tok_finish.  A merge naming a token absent from the
 * vocabulary is an error. */
int tok_merges_begin(tc_tokenizer *t, size_t n, tc_error *err);
int tok_merge_add(tc_tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen,
                  int32_t rank, tc_error *err);
/* The merge of the pair (l, r): 1 and its rank and resulting token, or 0. */
int tok_pair_get(const tc_tokenizer *t, int32_t l, int32_t r, int32_t *rank, int32_t *result);
/* Id of a source text (a linear search; not for hot paths); -1 when absent. */
int32_t tok_find_text(const tc_tokenizer *t, const char *s, size_t len);

/* ---- hashing ---- */
uint64_t tok_hash_bytes(const char *s, size_t n);
int32_t tok_strmap_get(const tok_strmap *m, const tc_tokenizer *t, const tok_piece *pieces,
                       const char *s, size_t n);

/* ---- byte-level escaping (GPT-2's bytes-to-unicode table) ---- */
/* Unescapes UTF-8 text written with the byte-level alphabet into out
 * (capacity >= n); returns the byte count, or -1 when a character is not
 * in the alphabet. */
long tok_bytelevel_unescape(const char *s, size_t n, char *out);

/* ---- merge engine (tok_bpe.c) ---- */
/* A symbol of the word being merged: a span of it, linked to its
 * neighbours; len 0 marks a symbol merged into its left neighbour. */
typedef struct tok_sym {
    int32_t prev, next;
    uint32_t start, len;
    int32_t id; /* -1: no vocabulary entry (byte fallback or unknown later) */
} tok_sym;

/* A candidate merge of symbol left with its right neighbour, valid while
 * both still have the lengths recorded here.  Lower key merges first; ties
 * go to the leftmost pair. */
typedef struct tok_cand {
    double key; /* a merge rank, or minus a score: both exact in a double */
    int32_t left;
    uint32_t llen, rlen;
    int32_t id;
} tok_cand;

/* Scratch space of one encode call, grown as needed and reused for every
 * word, so encoding allocates O(log n) times rather than per word. */
typedef struct tok_work {
    tok_sym *sym;
    size_t sym_cap;
    tok_cand *heap;
    size_t heap_len, heap_cap;
    int32_t *out;
    size_t out_len, out_cap;
    size_t *span[2]; /* pre-token (start, len) pairs, double-buffered */
    size_t span_len[2], span_cap[2];
    char *buf; /* escaped or normalized text */
    size_t buf_cap;
    uint32_t *cps; /* code points, for normalization */
    size_t cps_cap;
    pcre2_match_data *md;
    int prev_unk; /* the last token pushed stands for unknown text */
} tok_work;

void tok_work_free(tok_work *w);
int tok_out_push(tok_work *w, int32_t id);
int tok_grow(void **p, size_t *cap, size_t need, size_t elem);
/* Encodes one already-escaped SPM word; offset is its place in the input,
 * for messages. */
int tok_spm_word(const tc_tokenizer *t, tok_work *w, const char *s, size_t n, size_t offset,
                 tc_error *err);
/* Encodes one byte-level pre-token. */
int tok_bytelevel_word(const tc_tokenizer *t, tok_work *w, const char *s, size_t n,
                       tc_error *err);

/* ---- pre-tokenizer (tok_pretok.c) ---- */
/* Splits s by the tokenizer's regexes, calling fn on every piece in order. */
int tok_pretokenize(const tc_tokenizer *t, tok_work *w, const char *s, size_t n,
                    int (*fn)(const tc_tokenizer *, tok_work *, const char *, size_t, tc_error *),
                    tc_error *err);

/* ---- tokenizer.json pieces the loader and the vocabulary converter share ---- */
struct cJSON;
/* A non-negative integral JSON number below limit, or -1. */
long tok_json_id(const struct cJSON *v, long limit);
/* "<0xAB>": a byte-fallback token. */
int tok_is_byte_token(const char *s);
/* The number of ids of model.vocab and added_tokens (the largest + 1), every
 * id checked to be an integer below twice their count plus 1024. */
int tok_json_count_ids(const char *path, const struct cJSON *vocab, const struct cJSON *added, long *n_ids,
                       tc_error *err);

/* ---- loaders ---- */
int tok_load_llama2c_mem(tc_tokenizer **out, const char *path, const uint8_t *data, uint64_t size,
                         int vocab_size, tc_error *err);
/* cfg_text: the tokenizer_config.json that goes with it, or NULL. */
int tok_load_hf_json_mem(tc_tokenizer **out, const char *path, const char *json, size_t len,
                         const char *cfg_text, size_t cfg_len, tc_error *err);
/* The tokenizer_config.json beside a tokenizer.json (malloc'd), or TC_ERR
 * and NULL when there is none or it cannot be read (it is optional). */
#define TOK_CONFIG_MAX (1u << 26)
int tok_read_config_beside(const char *path, char **text, uint64_t *len);

#endif
