/* Hugging Face tokenizer.json with a BPE model, read the way the tokenizers
 * library reads it: the vocabulary and merge list of the model, added
 * tokens (special ones parsed only on request, the others always), and the
 * normalizer and pre-tokenizer steps this project knows how to reproduce
 * exactly; any other step is refused rather than approximated. */
#include "tok_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tc/mapfile.h"

#define SPACE_SYMBOL "\xe2\x96\x81"
#define RE_BYTELEVEL                                                                           \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Settings gathered from the normalizer and pre-tokenizer. */
typedef struct json_setup {
    int prefix;        /* TOK_PREFIX_* */
    int first_only;
    int replace_space; /* spaces become the space symbol */
    int split;
    int nfc;
    char space[8];
    int n_regex;
    const char *regex[16];
    char *owned[16]; /* regexes built here */
} json_setup;

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int bool_of(const cJSON *o, const char *key, int fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

static int set_space(json_setup *s, const char *sym, const char *path, tc_error *err)
{
    size_t n = strlen(sym);
    if (n == 0 || n >= sizeof s->space)
        return tc_err(err, "%s: unsupported space replacement \"%s\"", path, sym);
    memcpy(s->space, sym, n + 1);
    return TC_OK;
}

static int add_regex(json_setup *s, const char *re, char *owned, const char *path, tc_error *err)
{
    if (s->n_regex >= 16) {
        free(owned);
        return tc_err(err, "%s: too many pre-tokenizer steps", path);
    }
    s->owned[s->n_regex] = owned;
    s->regex[s->n_regex++] = re;
    return TC_OK;
}

static int normalizer(json_setup *s, const cJSON *n, const char *path, tc_error *err)
{
    if (!n || cJSON_IsNull(n))
        return TC_OK;
    const char *type = str_of(n, "type");
    if (!type)
        return tc_err(err, "%s: normalizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
            if (normalizer(s, item, path, err))
                return TC_ERR;
        return TC_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *p = str_of(n, "prepend");
        if (!p || set_space(s, p, path, err))
            return tc_err(err, "%s: unsupported Prepend normalizer", path);
        s->prefix = TOK_PREFIX_ALWAYS;
        return TC_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = str_of(pat, "String"), *to = str_of(n, "content");
        if (!from || !to || strcmp(from, " ") != 0)
            return tc_err(err, "%s: unsupported Replace normalizer (only \" \" to a symbol)", path);
        s->replace_space = 1;
        return set_space(s, to, path, err);
    }
    if (strcmp(type, "NFC") == 0) {
        s->nfc = 1;
        return TC_OK;
    }
    return tc_err(err, "%s: unsupported normalizer \"%s\"", path, type);
}

static int split_step(json_setup *s, const cJSON *p, const char *path, tc_error *err)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = str_of(pat, "Regex"), *lit = str_of(pat, "String");
    const char *behavior = str_of(p, "behavior");
    if ((!re && !lit) || !behavior || strcmp(behavior, "Isolated") != 0 ||
        bool_of(p, "invert", 0))
        return tc_err(err, "%s: unsupported Split pre-tokenizer (only Isolated, not inverted)",
                      path);
    if (re)
        return add_regex(s, re, NULL, path, err);
    size_t n = strlen(lit);
    char *q = malloc(n + 5);
    if (!q)
        return tc_err(err, "%s: out of memory", path);
    if (strstr(lit, "\\E")) {
        free(q);
        return tc_err(err, "%s: unsupported Split string pattern", path);
    }
    snprintf(q, n + 5, "\\Q%s\\E", lit);
    return add_regex(s, q, q, path, err);
}

static int pre_tokenizer(json_setup *s, const cJSON *p, const char *path, tc_error *err)
{
    if (!p || cJSON_IsNull(p))
        return TC_OK;
    const char *type = str_of(p, "type");
    if (!type)
        return tc_err(err, "%s: pre-tokenizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            if (pre_tokenizer(s, item, path, err))
                return TC_ERR;
        return TC_OK;
    }
    if (strcmp(type, "Split") == 0)
        return split_step(s, p, path, err);
    if (strcmp(type, "ByteLevel") == 0) {
        if (bool_of(p, "add_prefix_space", 0))
            return tc_err(err, "%s: unsupported ByteLevel pre-tokenizer with add_prefix_space",
                          path);
        return bool_of(p, "use_regex", 1) ? add_regex(s, RE_BYTELEVEL, NULL, path, err) : TC_OK;
    }
    if (strcmp(type, "Digits") == 0)
        return add_regex(s, bool_of(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", NULL,
                         path, err);
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep = str_of(p, "replacement");
        const char *scheme = str_of(p, "prepend_scheme");
        if (set_space(s, rep ? rep : SPACE_SYMBOL, path, err))
            return TC_ERR;
        int prepend = scheme ? strcmp(scheme, "never") != 0 : bool_of(p, "add_prefix_space", 1);
        if (scheme && strcmp(scheme, "always") && strcmp(scheme, "first") && strcmp(scheme, "never"))
            return tc_err(err, "%s: unsupported Metaspace prepend_scheme \"%s\"", path, scheme);
        s->prefix = prepend ? TOK_PREFIX_UNLESS_SPACE : TOK_PREFIX_NONE;
        s->first_only = scheme && strcmp(scheme, "first") == 0;
        s->replace_space = 1;
        s->split = bool_of(p, "split", 1);
        return TC_OK;
    }
    return tc_err(err, "%s: unsupported pre-tokenizer \"%s\"", path, type);
}

static int mentions_bytelevel(const cJSON *node)
{
    if (!node)
        return 0;
    if (cJSON_IsString(node))
        return strcmp(node->valuestring, "ByteLevel") == 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, node)
        if (mentions_bytelevel(c))
            return 1;
    return 0;
}

/* A non-negative integral JSON number below limit, or -1. */
long tok_json_id(const cJSON *v, long limit)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)limit) || d != floor(d))
        return -1;
    return (long)d;
}

int tok_is_byte_token(const char *s)
{
    return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

int tok_json_count_ids(const char *path, const cJSON *vocab, const cJSON *added, long *n_ids, tc_error *err)
{
    long n_entries = cJSON_GetArraySize(vocab) + (cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0);
    /* ids beyond twice the entries would leave most of the table empty:
     * refuse them rather than allocate from an unchecked number */
    long limit = 2 * n_entries + 1024, max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        long id = tok_json_id(e, limit);
        if (id < 0)
            return tc_err(err, "%s: vocabulary entry \"%.64s\" has an invalid id", path, e->string);
        max_id = id > max_id ? id : max_id;
    }
    cJSON_ArrayForEach(e, added) {
        long id = tok_json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), limit);
        if (id < 0 || !str_of(e, "content"))
            return tc_err(err, "%s: an added token has an invalid id or no content", path);
        max_id = id > max_id ? id : max_id;
    }
    *n_ids = max_id + 1;
    return TC_OK;
}

/* The vocabulary: the model's entries, then the added tokens over them. */
static int read_vocab(tc_tokenizer **out, const char *path, const cJSON *root, const cJSON *model,
                      int family, tc_error *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab))
        return tc_err(err, "%s: model.vocab is not an object", path);
    long n_ids;
    if (tok_json_count_ids(path, vocab, added, &n_ids, err))
        return TC_ERR;
    tc_tokenizer *t = tok_new(path, family, (int32_t)n_ids, err);
    if (!t)
        return TC_ERR;
    int byte_fallback = bool_of(model, "byte_fallback", 0);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int type = family == TOK_FAMILY_SPM && byte_fallback && tok_is_byte_token(e->string)
                       ? TOK_BYTE : TOK_NORMAL;
        if (tok_set(t, (int32_t)e->valuedouble, e->string, strlen(e->string), 0.0f, type, err))
            goto fail;
    }
    cJSON_ArrayForEach(e, added) {
        const char *s = str_of(e, "content");
        int type = bool_of(e, "special", 0) ? TOK_CONTROL : TOK_USER;
        long id = tok_json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), n_ids); /* checked above */
        if (tok_set(t, (int32_t)id, s, strlen(s), 0.0f, type, err))
            goto fail;
    }
    *out = t;
    return TC_OK;
fail:
    tc_tokenizer_free(t);
    return TC_ERR;
}

static int read_merges(tc_tokenizer *t, const cJSON *model, tc_error *err)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges))
        return tc_err(err, "%s: model.merges is not an array", t->source);
    if (tok_merges_begin(t, (size_t)cJSON_GetArraySize(merges), err))
        return TC_ERR;
    int32_t rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                l = s;
                ll = (size_t)(sp - s);
                r = sp + 1;
                rl = strlen(r);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            l = m->child->valuestring;
            ll = strlen(l);
            r = m->child->next->valuestring;
            rl = strlen(r);
        }
        if (!l)
            return tc_err(err, "%s: merge %ld is not a pair of tokens", t->source, (long)rank);
        if (tok_merge_add(t, l, ll, r, rl, rank, err))
            return TC_ERR;
        rank++;
    }
    return TC_OK;
}

/* A special token named in a config: a string or {"content": ...}. */
static int32_t named_token(const tc_tokenizer *t, const cJSON *v)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : str_of(v, "content");
    return s ? tok_find_text(t, s, strlen(s)) : -1;
}

static int32_t first_present(const tc_tokenizer *t, const char *const *names)
{
    for (; *names; names++) {
        int32_t id = tok_find_text(t, *names, strlen(*names));
        if (id >= 0 && t->type[id] == TOK_CONTROL)
            return id;
    }
    return -1;
}

/* BOS and EOS: the post-processor's template says which tokens surround a
 * sequence; tokenizer_config.json beside the file, when present, has the
 * last word; failing both, the usual names. */
static void special_ids(tc_tokenizer *t, const cJSON *root, const char *cfg_text, size_t cfg_len)
{
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>",
                                            NULL};
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(post, "processors");
    const cJSON *p = post;
    for (const cJSON *c = procs ? procs->child : NULL; c; c = c->next)
        if (str_of(c, "type") && strcmp(str_of(c, "type"), "TemplateProcessing") == 0)
            p = c;
    int seen_seq = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(p, "single")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence"))
            seen_seq = 1;
        int32_t id = sp ? named_token(t, cJSON_GetObjectItemCaseSensitive(sp, "id")) : -1;
        if (id >= 0 && !seen_seq) {
            t->bos = id;
            t->default_flags |= TC_TOK_BOS;
        } else if (id >= 0) {
            t->eos = id;
            t->default_flags |= TC_TOK_EOS;
        }
    }
    if (t->bos < 0)
        t->bos = first_present(t, bos_names);
    if (t->eos < 0)
        t->eos = first_present(t, eos_names);

    if (!cfg_text)
        return;
    cJSON *cfg = cJSON_ParseWithLength(cfg_text, cfg_len);
    int32_t id;
    if ((id = named_token(t, cJSON_GetObjectItemCaseSensitive(cfg, "bos_token"))) >= 0)
        t->bos = id;
    if ((id = named_token(t, cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"))) >= 0)
        t->eos = id;
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (cJSON_IsBool(ab))
        t->default_flags = (t->default_flags & ~TC_TOK_BOS) | (cJSON_IsTrue(ab) ? TC_TOK_BOS : 0);
    if (cJSON_IsBool(ae))
        t->default_flags = (t->default_flags & ~TC_TOK_EOS) | (cJSON_IsTrue(ae) ? TC_TOK_EOS : 0);
    cJSON_Delete(cfg);
}

static int configure(tc_tokenizer *t, const json_setup *s, const cJSON *root, const cJSON *model,
                     const char *cfg_text, size_t cfg_len, tc_error *err)
{
    if (t->family == TOK_FAMILY_SPM) {
        if (!s->replace_space)
            return tc_err(err, "%s: unsupported BPE tokenizer: neither byte-level nor "
                               "SentencePiece-style (spaces are not replaced)", t->source);
        if (s->n_regex)
            return tc_err(err, "%s: unsupported Split pre-tokenizer on a SentencePiece-style "
                               "vocabulary", t->source);
        size_t n = strlen(s->space);
        memcpy(t->space, s->space, n);
        t->space_len = n;
        t->prefix = s->prefix;
        t->prefix_first_only = s->first_only;
        t->split_on_space = s->split;
        t->strip_decoded_space = s->prefix != TOK_PREFIX_NONE;
    } else {
        if (s->replace_space || s->prefix)
            return tc_err(err, "%s: unsupported mix of byte-level and Metaspace steps", t->source);
        t->nfc = s->nfc;
    }
    const char *cont = str_of(model, "continuing_subword_prefix");
    const char *suffix = str_of(model, "end_of_word_suffix");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if ((cont && *cont) || (suffix && *suffix))
        return tc_err(err, "%s: unsupported BPE with a subword prefix or word suffix", t->source);
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return tc_err(err, "%s: unsupported BPE dropout (encoding would not be deterministic)",
                      t->source);
    t->fuse_unk = bool_of(model, "fuse_unk", 0);
    t->ignore_merges = bool_of(model, "ignore_merges", 0);
    const char *unk = str_of(model, "unk_token");
    if (unk && (t->unk = tok_find_text(t, unk, strlen(unk))) < 0)
        return tc_err(err, "%s: unk_token \"%.64s\" is not in the vocabulary", t->source, unk);
    special_ids(t, root, cfg_text, cfg_len);
    if (tok_finish(t, err))
        return TC_ERR;
    for (int i = 0; i < s->n_regex; i++)
        if (tok_add_regex(t, s->regex[i], err))
            return TC_ERR;
    return read_merges(t, model, err);
}

int tok_load_hf_json_mem(tc_tokenizer **out, const char *path, const char *json, size_t len,
                         const char *cfg_text, size_t cfg_len, tc_error *err)
{
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
        return tc_err(err, "%s: not valid JSON (near byte %ld)", path, off);
    }
    json_setup s;
    memset(&s, 0, sizeof s);
    tc_tokenizer *t = NULL;
    int rc = TC_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *type = str_of(model, "type");
    if (!cJSON_IsObject(model))
        rc = tc_err(err, "%s: no \"model\" object: not a tokenizer.json", path);
    else if (type ? strcmp(type, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        rc = tc_err(err, "%s: unsupported tokenizer model \"%s\" (only BPE)", path,
                    type ? type : "?");
    int family = mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) ||
                         mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "decoder"))
                     ? TOK_FAMILY_BYTELEVEL : TOK_FAMILY_SPM;
    if (rc == TC_OK)
        rc = normalizer(&s, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path, err);
    if (rc == TC_OK)
        rc = pre_tokenizer(&s, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path, err);
    if (rc == TC_OK)
        rc = read_vocab(&t, path, root, model, family, err);
    if (rc == TC_OK)
        rc = configure(t, &s, root, model, cfg_text, cfg_len, err);
    for (int i = 0; i < s.n_regex; i++)
        free(s.owned[i]);
    cJSON_Delete(root);
    if (rc != TC_OK) {
        tc_tokenizer_free(t);
        return TC_ERR;
    }
    *out = t;
    return TC_OK;
}

int tok_read_config_beside(const char *path, char **text, uint64_t *len)
{
    *text = NULL;
    *len = 0;
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *cfg_path = malloc(dir + 32);
    tc_error ignored;
    if (!cfg_path)
        return TC_ERR;
    memcpy(cfg_path, path, dir);
    strcpy(cfg_path + dir, "tokenizer_config.json");
    int rc = tc_read_small_file(cfg_path, TOK_CONFIG_MAX, text, len, &ignored);
    free(cfg_path);
    if (rc != TC_OK) {
        *text = NULL;
        *len = 0;
    }
    return rc;
}

int tc_tokenizer_from_hf_json(tc_tokenizer **t, const char *path, tc_error *err)
{
    *t = NULL;
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    char *cfg;
    uint64_t cfg_len;
    tok_read_config_beside(path, &cfg, &cfg_len);
    int rc = tok_load_hf_json_mem(t, path, (const char *)m.data, (size_t)m.size, cfg, (size_t)cfg_len, err);
    free(cfg);
    tc_mapfile_close(&m);
    return rc;
}

int tc_tokenizer_from_hf_json_mem(tc_tokenizer **t, const char *name, const char *json, size_t len,
                                  const char *config, size_t config_len, tc_error *err)
{
    return tok_load_hf_json_mem(t, name, json, len, config, config_len, err);
}
