/* The vocabulary embedded in a GGUF file (tokenizer.ggml.*), with llama.cpp's
 * meaning: model "llama" is SentencePiece-style BPE whose merges follow the
 * token scores; model "gpt2" is byte-level BPE whose merges follow the merge
 * list, split first by the regular expressions its "pre" name stands for. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* The pre-tokenizer regexes llama.cpp applies for each "pre" name. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                              \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"   \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"   \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_def {
    const char *names[8];
    const char *regex[6];
    int ignore_merges;
} pre_def;

static const pre_def pre_defs[] = {
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     0},
    {{"llama3", "llama-v3", "llama-bpe"}, {RE_LLAMA3}, 1},
    {{"dbrx", "smaug-bpe"}, {RE_LLAMA3}, 0},
    {{"gpt-2", "mpt", "olmo", "jais"}, {RE_GPT2}, 0},
    {{"qwen2", "stablelm2"}, {RE_QWEN2}, 0},
    {{"deepseek-coder"},
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}"},
     0},
    {{"falcon"},
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
     0},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"},
     {"\\p{N}", RE_GPT2},
     0},
};

static const pre_def *find_pre(const char *name)
{
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
        for (int k = 0; k < 8 && pre_defs[i].names[k]; k++)
            if (strcmp(pre_defs[i].names[k], name) == 0)
                return &pre_defs[i];
    return NULL;
}

/* The array under key with elements of one of the accepted kinds, n items. */
static int get_array(const tc_gguf *g, const char *key, int want_string, uint64_t n_expect,
                     const tc_gguf_value **out, tc_error *err)
{
    const tc_gguf_value *v = tc_gguf_find(g, key);
    *out = NULL;
    if (!v)
        return TC_OK;
    if (v->type != TC_GGUF_ARRAY)
        return tc_err(err, "%s: %s is not an array", g->path, key);
    tc_gguf_type et = v->v.arr.type;
    int is_string = et == TC_GGUF_STRING;
    int is_number = et != TC_GGUF_STRING && et != TC_GGUF_ARRAY && et != TC_GGUF_BOOL;
    if (want_string ? !is_string : !is_number)
        return tc_err(err, "%s: %s has elements of type %d", g->path, key, (int)et);
    if (n_expect && v->v.arr.n != n_expect)
        return tc_err(err, "%s: %s has %llu entries but the vocabulary has %llu", g->path, key,
                      (unsigned long long)v->v.arr.n, (unsigned long long)n_expect);
    *out = v;
    return TC_OK;
}

static double num_of(const tc_gguf_value *v)
{
    switch (v->type) {
    case TC_GGUF_F32:
    case TC_GGUF_F64:
        return v->v.f;
    case TC_GGUF_I8:
    case TC_GGUF_I16:
    case TC_GGUF_I32:
    case TC_GGUF_I64:
        return (double)v->v.i;
    default:
        return (double)v->v.u;
    }
}

/* A token id key: absent or the all-ones "none" gives fallback. */
static int get_id(const tc_gguf *g, const char *key, int32_t fallback, int32_t *out, tc_error *err)
{
    *out = fallback;
    if (!tc_gguf_find(g, key))
        return TC_OK;
    uint64_t v;
    if (tc_gguf_get_u64(g, key, &v, err))
        return TC_ERR;
    if (v == UINT32_MAX || v == UINT64_MAX)
        *out = -1;
    else if (v > INT32_MAX)
        return tc_err(err, "%s: %s = %llu is not a token id", g->path, key, (unsigned long long)v);
    else
        *out = (int32_t)v;
    return TC_OK;
}

static int get_flag(const tc_gguf *g, const char *key, int fallback, int *out, tc_error *err)
{
    *out = fallback;
    return tc_gguf_find(g, key) ? tc_gguf_get_bool(g, key, out, err) : TC_OK;
}

static int load_tokens(tc_tokenizer *t, const tc_gguf *g, const tc_gguf_value *toks,
                       const tc_gguf_value *scores, const tc_gguf_value *types, tc_error *err)
{
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const tc_gguf_str *s = &toks->v.arr.items[i].v.s;
        double type = types ? num_of(&types->v.arr.items[i]) : TOK_NORMAL;
        float score = scores ? (float)num_of(&scores->v.arr.items[i]) : 0.0f;
        if (!(type >= TOK_NORMAL && type <= TOK_BYTE))
            return tc_err(err, "%s: token %ld has unknown type %g", g->path, (long)i, type);
        if (tok_set(t, i, s->ptr, (size_t)s->len, score, (int)type, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int load_merges(tc_tokenizer *t, const tc_gguf *g, tc_error *err)
{
    const tc_gguf_value *m;
    if (get_array(g, "tokenizer.ggml.merges", 1, 0, &m, err))
        return TC_ERR;
    if (!m)
        return tc_err(err, "%s: byte-level vocabulary without tokenizer.ggml.merges", g->path);
    if (m->v.arr.n > INT32_MAX)
        return tc_err(err, "%s: too many merges", g->path);
    if (tok_merges_begin(t, (size_t)m->v.arr.n, err))
        return TC_ERR;
    for (uint64_t i = 0; i < m->v.arr.n; i++) {
        const tc_gguf_str *s = &m->v.arr.items[i].v.s;
        /* the separator is the first space after the first byte, as llama.cpp reads it */
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', (size_t)s->len - 1) : NULL;
        if (!sp)
            return tc_err(err, "%s: merge %llu (\"%.*s\") is not two tokens separated by a space",
                          g->path, (unsigned long long)i, (int)(s->len > 64 ? 64 : s->len),
                          s->ptr);
        size_t l = (size_t)(sp - s->ptr);
        if (tok_merge_add(t, s->ptr, l, sp + 1, (size_t)s->len - l - 1, (int32_t)i, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int setup_model(tc_tokenizer *t, const tc_gguf *g, const char *pre, tc_error *err)
{
    int add_bos, add_eos, add_space;
    int spm = t->family == TOK_FAMILY_SPM;
    if (get_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &t->bos, err) ||
        get_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &t->eos, err) ||
        get_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &t->unk, err) ||
        get_flag(g, "tokenizer.ggml.add_bos_token", spm, &add_bos, err) ||
        get_flag(g, "tokenizer.ggml.add_eos_token", 0, &add_eos, err) ||
        get_flag(g, "tokenizer.ggml.add_space_prefix", 1, &add_space, err))
        return TC_ERR;
    t->default_flags = (add_bos ? TC_TOK_BOS : 0u) | (add_eos ? TC_TOK_EOS : 0u);
    if (spm) {
        t->prefix = add_space ? TOK_PREFIX_ALWAYS : TOK_PREFIX_NONE;
        t->strip_decoded_space = add_space;
        t->fuse_unk = 1;
        return tok_finish(t, err);
    }
    const pre_def *d = find_pre(pre);
    if (!d)
        return tc_err(err, "%s: unsupported pre-tokenizer \"%s\"", g->path, pre);
    t->ignore_merges = d->ignore_merges;
    if (tok_finish(t, err))
        return TC_ERR;
    for (int i = 0; i < 6 && d->regex[i]; i++)
        if (tok_add_regex(t, d->regex[i], err))
            return TC_ERR;
    return load_merges(t, g, err);
}

int tc_tokenizer_from_gguf(tc_tokenizer **out, const tc_gguf *g, tc_error *err)
{
    *out = NULL;
    char *model = NULL, *pre = NULL;
    if (!tc_gguf_find(g, "tokenizer.ggml.model"))
        return tc_err(err, "%s: no tokenizer.ggml.model: the file carries no vocabulary", g->path);
    if (tc_gguf_get_str(g, "tokenizer.ggml.model", &model, err))
        return TC_ERR;
    int family = strcmp(model, "llama") == 0 ? TOK_FAMILY_SPM
                 : strcmp(model, "gpt2") == 0 ? TOK_FAMILY_BYTELEVEL : 0;
    if (!family) {
        tc_err(err, "%s: unsupported tokenizer model \"%s\"", g->path, model);
        free(model);
        return TC_ERR;
    }
    free(model);
    if (tc_gguf_find(g, "tokenizer.ggml.pre")) {
        if (tc_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err))
            return TC_ERR;
    }
    const tc_gguf_value *toks, *scores, *types;
    tc_tokenizer *t = NULL;
    int rc = get_array(g, "tokenizer.ggml.tokens", 1, 0, &toks, err);
    if (rc == TC_OK && (!toks || toks->v.arr.n == 0 || toks->v.arr.n > INT32_MAX))
        rc = tc_err(err, "%s: tokenizer.ggml.tokens is missing, empty or too long", g->path);
    if (rc == TC_OK)
        rc = get_array(g, "tokenizer.ggml.scores", 0, toks->v.arr.n, &scores, err);
    if (rc == TC_OK)
        rc = get_array(g, "tokenizer.ggml.token_type", 0, toks->v.arr.n, &types, err);
    if (rc == TC_OK && !(t = tok_new(g->path, family, (int32_t)toks->v.arr.n, err)))
        rc = TC_ERR;
    if (rc == TC_OK)
        rc = load_tokens(t, g, toks, scores, types, err);
    if (rc == TC_OK)
        rc = setup_model(t, g, pre ? pre : "default", err);
    free(pre);
    if (rc != TC_OK) {
        tc_tokenizer_free(t);
        return TC_ERR;
    }
    *out = t;
    return TC_OK;
}
