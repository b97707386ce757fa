/* A Hugging Face tokenizer.json (with tokenizer_config.json and config.json
 * beside it) as the GGUF vocabulary convert_hf_to_gguf.py writes for it.
 * See tc/vocab.h for what is written and when tc refuses. */
#include "tok_internal.h"
#include "vocab_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "tc/mapfile.h"

/* ---- llama.cpp's names of byte-level pre-tokenizers ------------------------
 * A tokenizer.json's normalizer, pre-tokenizer steps (flattened, as written
 * by signature()) and model.ignore_merges, and the name under which llama.cpp
 * applies exactly those steps: the same regular expressions in the same
 * order (llama.cpp's adaptations of the case-insensitive groups included),
 * merges ignored or not.  llama.cpp does not normalize: NFC is part of the
 * signature only where the family's tokenizer has it. */
#define HF_RE_LLAMA3                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define HF_RE_QWEN2                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define STEP_BYTELEVEL_NOREGEX "ByteLevel prefix=0 regex=0"
#define STEP_BYTELEVEL_GPT2 "ByteLevel prefix=0 regex=1"

static const struct pre_row {
    const char *name;       /* tokenizer.ggml.pre */
    const char *normalizer; /* "" for none */
    const char *steps;
    int ignore_merges;
} PRE_ROWS[] = {
    /* Llama 3: llama.cpp's LLAMA3 type, which ignores merges */
    {"llama-bpe", "", "Split Isolated " HF_RE_LLAMA3 "\n" STEP_BYTELEVEL_NOREGEX, 1},
    /* the same split without ignore_merges: llama.cpp's SMAUG type */
    {"smaug-bpe", "", "Split Isolated " HF_RE_LLAMA3 "\n" STEP_BYTELEVEL_NOREGEX, 0},
    /* Qwen2 (and its derivatives): single digits, NFC */
    {"qwen2", "NFC", "Split Isolated " HF_RE_QWEN2 "\n" STEP_BYTELEVEL_NOREGEX, 0},
    /* GPT-2's own ByteLevel regex */
    {"gpt-2", "", STEP_BYTELEVEL_GPT2, 0},
    /* single digits first, then GPT-2's regex: llama.cpp's STARCODER type */
    {"starcoder", "", "Digits individual=1\n" STEP_BYTELEVEL_GPT2, 0},
};

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

/* A growing text. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* The normalizer's steps ("NFC", "Prepend,Replace", ...), "" for none. */
static void normalizer_sig(sbuf *b, const cJSON *n)
{
    if (!n || cJSON_IsNull(n))
        return;
    const char *type = str_of(n, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
            normalizer_sig(b, it);
        return;
    }
    if (b->len)
        sb_add(b, ",");
    sb_add(b, type ? type : "?");
}

/* One line per pre-tokenizer step, with the parameters that change ids. */
static void pre_sig(sbuf *b, const cJSON *p)
{
    if (!p || cJSON_IsNull(p))
        return;
    const char *type = str_of(p, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            pre_sig(b, it);
        return;
    }
    char tmp[64];
    if (b->len)
        sb_add(b, "\n");
    if (type && strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = str_of(pat, "Regex"), *lit = str_of(pat, "String"), *beh = str_of(p, "behavior");
        sb_add(b, "Split ");
        sb_add(b, beh ? beh : "?");
        sb_add(b, bool_of(p, "invert", 0) ? " inverted " : " ");
        if (re) {
            sb_add(b, re);
        } else {
            sb_add(b, "string:");
            sb_add(b, lit ? lit : "?");
        }
    } else if (type && strcmp(type, "ByteLevel") == 0) {
        snprintf(tmp, sizeof tmp, "ByteLevel prefix=%d regex=%d", bool_of(p, "add_prefix_space", 1),
                 bool_of(p, "use_regex", 1));
        sb_add(b, tmp);
    } else if (type && strcmp(type, "Digits") == 0) {
        snprintf(tmp, sizeof tmp, "Digits individual=%d", bool_of(p, "individual_digits", 0));
        sb_add(b, tmp);
    } else {
        sb_add(b, type ? type : "?");
    }
}

/* llama.cpp's name for the byte-level pre-tokenizer of root; NULL when the
 * table has none (then *why describes it). */
static const char *pre_name(const cJSON *root, const cJSON *model, char *why, size_t n_why)
{
    sbuf ns = {0}, ps = {0};
    sb_add(&ns, "");
    sb_add(&ps, "");
    normalizer_sig(&ns, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    pre_sig(&ps, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    int ignore = bool_of(model, "ignore_merges", 0);
    const char *name = NULL;
    for (size_t i = 0; !ns.oom && !ps.oom && i < sizeof PRE_ROWS / sizeof PRE_ROWS[0] && !name; i++)
        if (strcmp(PRE_ROWS[i].normalizer, ns.p) == 0 && strcmp(PRE_ROWS[i].steps, ps.p) == 0 &&
            PRE_ROWS[i].ignore_merges == ignore)
            name = PRE_ROWS[i].name;
    if (!name) {
        /* the first step, shortened, is enough to recognise the tokenizer */
        const char *first = ps.p && ps.p[0] ? ps.p : "none";
        size_t k = strcspn(first, "\n");
        snprintf(why, n_why, "normalizer %s, pre-tokenizer %.*s%s%s, ignore_merges %s",
                 ns.p && ns.p[0] ? ns.p : "none", (int)(k > 60 ? 60 : k), first, k > 60 ? "..." : "",
                 strchr(first, '\n') ? " (and more steps)" : "", ignore ? "true" : "false");
    }
    free(ns.p);
    free(ps.p);
    return name;
}

/* The tokenizer.json steps of a table row, rebuilt from its signature (the
 * inverse of normalizer_sig and pre_sig for what the rows hold). */
int vocab_pre_json(const char *name, cJSON **normalizer, cJSON **pre, int *ignore_merges)
{
    *normalizer = *pre = NULL;
    const struct pre_row *r = NULL;
    for (size_t i = 0; i < sizeof PRE_ROWS / sizeof PRE_ROWS[0] && !r; i++)
        if (strcmp(PRE_ROWS[i].name, name) == 0)
            r = &PRE_ROWS[i];
    if (!r)
        return TC_ERR;
    *ignore_merges = r->ignore_merges;
    *normalizer = r->normalizer[0] ? cJSON_CreateObject() : cJSON_CreateNull();
    if (r->normalizer[0])
        cJSON_AddStringToObject(*normalizer, "type", r->normalizer);
    *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(*pre, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(*pre, "pretokenizers");
    for (const char *line = r->steps; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *st = cJSON_CreateObject();
        int a, b;
        if (n > 15 && memcmp(line, "Split Isolated ", 15) == 0) {
            char *re = strndup(line + 15, n - 15);
            cJSON_AddStringToObject(st, "type", "Split");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(st, "pattern"), "Regex", re ? re : "");
            cJSON_AddStringToObject(st, "behavior", "Isolated");
            cJSON_AddBoolToObject(st, "invert", 0);
            free(re);
        } else if (sscanf(line, "ByteLevel prefix=%d regex=%d", &a, &b) == 2) {
            cJSON_AddStringToObject(st, "type", "ByteLevel");
            cJSON_AddBoolToObject(st, "add_prefix_space", a);
            cJSON_AddBoolToObject(st, "trim_offsets", 1);
            cJSON_AddBoolToObject(st, "use_regex", b);
        } else if (sscanf(line, "Digits individual=%d", &a) == 1) {
            cJSON_AddStringToObject(st, "type", "Digits");
            cJSON_AddBoolToObject(st, "individual_digits", a);
        }
        cJSON_AddItemToArray(steps, st);
        line = nl ? nl + 1 : NULL;
    }
    return TC_OK;
}

/* ---- the side files --------------------------------------------------------- */

/* path's directory joined with name (malloc'd). */
static char *beside(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dir + strlen(name) + 1);
    if (p) {
        memcpy(p, path, dir);
        strcpy(p + dir, name);
    }
    return p;
}

/* Parses a JSON file beside path; NULL when absent.  A present file that is
 * not valid JSON is an error. */
static int read_json_beside(const char *path, const char *name, cJSON **out, tc_error *err)
{
    *out = NULL;
    char *p = beside(path, name);
    if (!p)
        return tc_err(err, "%s: out of memory", path);
    struct stat st;
    int rc = TC_OK;
    if (stat(p, &st) == 0) {
        char *text = NULL;
        uint64_t len = 0;
        /* messages name the file and the tokenizer it was read for */
        rc = tc_read_small_file(p, 1 << 26, &text, &len, err);
        if (rc != TC_OK)
            tc_err_prefix(err, "%s", path);
        else if (!(*out = cJSON_ParseWithLength(text, (size_t)len)))
            rc = tc_err(err, "%s: %s beside it is not valid JSON", path, p);
        if (rc == TC_OK && !cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
            rc = tc_err(err, "%s: %s beside it is not a JSON object", path, p);
        }
        free(text);
    }
    free(p);
    return rc;
}

/* ---- tokens ----------------------------------------------------------------- */

/* convert_hf_to_gguf.py's does_token_look_special: added tokens some models
 * mark as not special although they are control tokens. */
static int looks_special(const char *s)
{
    static const char *const names[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    size_t n = strlen(s);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return 1;
#define WRAPPED(a, z) (n >= strlen(a) + strlen(z) && memcmp(s, a, strlen(a)) == 0 && strcmp(s + n - strlen(z), z) == 0)
    return WRAPPED("<|", "|>") || WRAPPED("<\xef\xbd\x9c", "\xef\xbd\x9c>") || WRAPPED("<unused", ">");
#undef WRAPPED
}

static int is_byte_token(const char *s)
{
    return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

/* A non-negative integral JSON number below limit, or -1. */
static long id_of(const cJSON *v, long limit)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)limit) || d != floor(d))
        return -1;
    return (long)d;
}

/* The added token's special flag as transformers loads it: tokenizer_config's
 * added_tokens_decoder entry, when there is one, has the last word. */
static int added_special(const cJSON *tok, long id, const cJSON *cfg)
{
    char key[32];
    snprintf(key, sizeof key, "%ld", id);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder"),
                                                        key);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(dec, "special");
    if (cJSON_IsBool(sp))
        return cJSON_IsTrue(sp);
    return bool_of(tok, "special", 0);
}

/* User-defined tokens are matched in raw text by llama.cpp: the converter
 * writes their U+2581 as the space it stands for. */
static int user_token(vocab_build *b, long id, const char *s, float score, tc_error *err)
{
    size_t n = strlen(s), o = 0;
    char *t = malloc(n + 1);
    if (!t)
        return tc_err(err, "%s: out of memory", b->source);
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            t[o++] = ' ';
            i += 3;
        } else {
            t[o++] = s[i++];
        }
    }
    int rc = vb_token(b, (int32_t)id, t, o, score, VB_USER, err);
    free(t);
    return rc;
}

/* Counts the tokenizer's ids (vocabulary and added tokens). */
static int count_ids(const char *path, const cJSON *vocab, const cJSON *added, long *n_ids, tc_error *err)
{
    long n_entries = cJSON_GetArraySize(vocab) + (cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0);
    long limit = 2 * n_entries + 1024, max_id = -1; /* as the tokenizer reader bounds them */
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        long id = id_of(e, limit);
        if (id < 0)
            return tc_err(err, "%s: vocabulary entry \"%.64s\" has an invalid id", path, e->string);
        max_id = id > max_id ? id : max_id;
    }
    cJSON_ArrayForEach(e, added) {
        long id = id_of(cJSON_GetObjectItemCaseSensitive(e, "id"), limit);
        if (id < 0 || !str_of(e, "content"))
            return tc_err(err, "%s: an added token has an invalid id or no content", path);
        max_id = id > max_id ? id : max_id;
    }
    *n_ids = max_id + 1;
    return TC_OK;
}

/* Every token's text and type (scores come later for SentencePiece-style
 * vocabularies). */
static int read_tokens(vocab_build *b, const cJSON *root, const cJSON *model, const cJSON *cfg, int spm,
                       tc_error *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int byte_fallback = bool_of(model, "byte_fallback", 0);
    /* the unknown token keeps SentencePiece's type; a byte-fallback BPE may
     * name it only in tokenizer_config.json */
    const char *unk = str_of(model, "unk_token");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(cfg, "unk_token");
    if (!unk)
        unk = cJSON_IsString(cu) ? cu->valuestring : str_of(cu, "content");
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int type = spm && byte_fallback && is_byte_token(e->string) ? VB_BYTE : VB_NORMAL;
        if (spm && unk && strcmp(e->string, unk) == 0)
            type = VB_UNKNOWN;
        if (vb_token(b, (int32_t)e->valuedouble, e->string, strlen(e->string), 0.0f, type, err))
            return TC_ERR;
    }
    cJSON_ArrayForEach(e, added) {
        const char *s = str_of(e, "content");
        long id = (long)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
        int rc;
        if (spm && unk && strcmp(s, unk) == 0)
            rc = vb_token(b, (int32_t)id, s, strlen(s), 0.0f, VB_UNKNOWN, err); /* SentencePiece's type */
        else if (added_special(e, id, cfg) || looks_special(s))
            rc = vb_token(b, (int32_t)id, s, strlen(s), 0.0f, VB_CONTROL, err);
        else
            rc = user_token(b, id, s, 0.0f, err);
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

/* The merge list as the converter writes it: "left right", a space inside a
 * part (the list-of-pairs form allows them) written as U+0120. */
static int read_merges(vocab_build *b, const cJSON *model, tc_error *err)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *m;
    if (!cJSON_IsArray(merges) || cJSON_GetArraySize(merges) == 0)
        return tc_err(err, "%s: a byte-level BPE without merges", b->source);
    long i = 0;
    cJSON_ArrayForEach(m, merges) {
        if (cJSON_IsString(m)) {
            if (vb_merge(b, m->valuestring, strlen(m->valuestring), err))
                return TC_ERR;
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            const char *l = m->child->valuestring, *r = m->child->next->valuestring;
            size_t n = strlen(l) + strlen(r), o = 0;
            char *t = malloc(2 * n + 2);
            if (!t)
                return tc_err(err, "%s: out of memory", b->source);
            for (int part = 0; part < 2; part++) {
                for (const char *s = part ? r : l; *s; s++) {
                    if (*s == ' ') {
                        memcpy(t + o, "\xc4\xa0", 2);
                        o += 2;
                    } else {
                        t[o++] = *s;
                    }
                }
                if (!part)
                    t[o++] = ' ';
            }
            int rc = vb_merge(b, t, o, err);
            free(t);
            if (rc)
                return TC_ERR;
        } else {
            return tc_err(err, "%s: merge %ld is not a pair of tokens", b->source, i);
        }
        i++;
    }
    return TC_OK;
}

/* ---- SentencePiece-style scores ----------------------------------------------- */

typedef struct rank_ent {
    int32_t rank, result;
} rank_ent;

static int by_rank(const void *a, const void *b)
{
    int32_t x = ((const rank_ent *)a)->rank, y = ((const rank_ent *)b)->rank;
    return (x > y) - (x < y);
}

/* Length of the UTF-8 character at s (1 for a stray byte). */
static size_t char_len(const unsigned char *s, size_t n)
{
    size_t k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 1;
    return k <= n ? k : 1;
}

/* Scores under which llama.cpp's SentencePiece merging (the adjacent pair
 * whose joined text is the best-scored token goes first, the leftmost on a
 * tie) forms the tokens the merge list forms, or a refusal.  The score of a
 * token is minus the rank of its first merge.  That gives the same order
 * when (1) the merges forming one token are consecutive in the list, so
 * that ranks between two of them form nothing else, and (2) every way
 * llama.cpp could join two adjacent symbols into a token (two tokens, or a
 * character outside the vocabulary and a token) is a merge of the list.  A
 * list derived from a SentencePiece model has both properties. */
int vocab_spm_check(const tc_tokenizer *t, const char *source, float *score, tc_error *err)
{
    const tok_pairmap *pm = &t->merges;
    size_t n = 0;
    for (uint64_t i = 0; pm->keys && i <= pm->mask; i++)
        n += pm->keys[i] != UINT64_MAX;
    rank_ent *e = malloc((n ? n : 1) * sizeof *e);
    int32_t *first = malloc((size_t)t->n_vocab * sizeof *first), *last = malloc((size_t)t->n_vocab * sizeof *last);
    int32_t *count = calloc((size_t)t->n_vocab, sizeof *count);
    int rc = TC_OK;
    if (!e || !first || !last || !count) {
        rc = tc_err(err, "%s: out of memory", source);
        goto done;
    }
    n = 0;
    for (uint64_t i = 0; pm->keys && i <= pm->mask; i++)
        if (pm->keys[i] != UINT64_MAX) {
            e[n].rank = pm->rank[i];
            e[n++].result = pm->result[i];
        }
    qsort(e, n, sizeof *e, by_rank);
    for (int32_t id = 0; id < t->n_vocab; id++)
        first[id] = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t r = e[i].result;
        if (first[r] < 0)
            first[r] = (int32_t)i;
        last[r] = (int32_t)i;
        count[r]++;
    }
    for (int32_t id = 0; id < t->n_vocab && rc == TC_OK; id++) {
        if (first[id] < 0)
            continue;
        if (last[id] - first[id] + 1 != count[id]) {
            const char *s = t->arena + t->text[id].off;
            rc = tc_err(err, "%s: the merges forming token %ld (\"%.*s\") are not consecutive in the merge list, "
                        "so llama.cpp's score-ordered merging cannot reproduce it; not a SentencePiece-derived "
                        "tokenizer", source, (long)id, (int)(t->text[id].len > 40 ? 40 : t->text[id].len), s);
            break;
        }
        if (score)
            score[id] = -(float)e[first[id]].rank;
    }
    /* (2): every split of a normal token into two symbols llama.cpp could hold */
    for (int32_t id = 0; id < t->n_vocab && rc == TC_OK; id++) {
        if (t->type[id] != TOK_NORMAL)
            continue;
        const unsigned char *s = (const unsigned char *)t->arena + t->key[id].off;
        size_t len = t->key[id].len;
        for (size_t i = len ? char_len(s, len) : len; i < len; i += char_len(s + i, len - i)) {
            int32_t l = tok_strmap_get(&t->vocab, t, t->key, (const char *)s, i);
            int32_t r = tok_strmap_get(&t->vocab, t, t->key, (const char *)s + i, len - i);
            int l_sym = l >= 0 || char_len(s, len) == i;
            int r_sym = r >= 0 || char_len(s + i, len - i) == len - i;
            int32_t rank, res;
            if (!l_sym || !r_sym || (l >= 0 && r >= 0 && tok_pair_get(t, l, r, &rank, &res) && res == id))
                continue;
            rc = tc_err(err, "%s: token %ld (\"%.*s\") can be joined from \"%.*s\" and \"%.*s\", which the merge "
                        "list does not join, so llama.cpp's score-ordered merging would form it where the "
                        "tokenizer does not; not a SentencePiece-derived tokenizer", source, (long)id,
                        (int)(len > 40 ? 40 : len), (const char *)s, (int)(i > 40 ? 40 : i), (const char *)s,
                        (int)(len - i > 40 ? 40 : len - i), (const char *)s + i);
            break;
        }
    }
done:
    free(e);
    free(first);
    free(last);
    free(count);
    return rc;
}

/* ---- special tokens, flags, chat template (SpecialVocab) ---------------------- */

/* A special token named in tokenizer_config.json: absent, a string, or
 * another value (an AddedToken object), which compares equal to nothing. */
typedef struct named {
    int kind; /* 0 absent, 1 string, 2 other */
    const char *s;
    const cJSON *obj; /* kind 2 */
} named;

static named named_of(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    named r = {0, NULL, NULL};
    if (cJSON_IsString(v))
        r = (named){1, v->valuestring, NULL};
    else if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
        r = (named){2, NULL, v};
    return r;
}

static named named_str(const char *s)
{
    return (named){1, s, NULL};
}

static int truthy(named n)
{
    return n.kind == 2 || (n.kind == 1 && n.s[0]);
}

static int same(named n, const char *s)
{
    return n.kind == 1 && s && strcmp(n.s, s) == 0;
}

/* The types SpecialVocab looks up, with the slot each one fills (cls has no
 * GGUF key; eot and eom join when the template's last token replaces EOS). */
static const struct {
    const char *name;
    int slot;
} SPECIAL_TYPES[] = {{"bos", VB_BOS}, {"eos", VB_EOS}, {"unk", VB_UNK}, {"sep", VB_SEP},
                     {"pad", VB_PAD}, {"cls", -1},     {"mask", VB_MASK}, {"eot", VB_EOT}, {"eom", VB_EOM}};
enum { N_TYPES = sizeof SPECIAL_TYPES / sizeof SPECIAL_TYPES[0], BASE_TYPES = 7 };

typedef struct specials {
    named tok[N_TYPES];   /* tokenizer_config's {type}_token, as updated from the template */
    int active[N_TYPES];  /* eot, eom only once added */
    int set[N_TYPES];     /* id already set: the first setting wins */
} specials;

static void set_special(vocab_build *b, specials *sp, int k, long id)
{
    if (id < 0 || id >= b->n || sp->set[k])
        return;
    sp->set[k] = 1;
    if (SPECIAL_TYPES[k].slot >= 0)
        b->id[SPECIAL_TYPES[k].slot] = (int32_t)id;
}

static int type_index(const char *name)
{
    for (int k = 0; k < N_TYPES; k++)
        if (strcmp(SPECIAL_TYPES[k].name, name) == 0)
            return k;
    return -1;
}

/* The first added token whose content is s, or -1. */
static long added_id(const cJSON *root, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const char *c = str_of(e, "content");
        if (c && s && strcmp(c, s) == 0)
            return (long)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
    }
    return -1;
}

static const char *template_special(const cJSON *item)
{
    return str_of(cJSON_GetObjectItemCaseSensitive(item, "SpecialToken"), "id");
}

/* The post-processor's leading and trailing special tokens decide add-BOS
 * and add-EOS, and name BOS and EOS where the config does not. */
static void post_processor(const cJSON *root, const cJSON *cfg, specials *sp, int *add)
{
    const int BOS = type_index("bos"), EOS = type_index("eos"), CLS = type_index("cls"), SEP = type_index("sep");
    if (!truthy(sp->tok[BOS]) && truthy(sp->tok[CLS]) && cfg)
        sp->tok[BOS] = sp->tok[CLS];
    if (!truthy(sp->tok[EOS]) && truthy(sp->tok[SEP]) && cfg)
        sp->tok[EOS] = sp->tok[SEP];
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!cJSON_IsObject(post))
        return;
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(post, "processors");
    const cJSON *p = cJSON_IsArray(procs) ? procs->child : post;
    for (; p; p = cJSON_IsArray(procs) ? p->next : NULL) {
        const char *type = str_of(p, "type");
        if (type && strcmp(type, "RobertaProcessing") == 0) {
            add[VB_ADD_BOS] = add[VB_ADD_EOS] = add[VB_ADD_SEP] = 1;
            continue;
        }
        if (!type || strcmp(type, "TemplateProcessing") != 0)
            continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        int n = cJSON_GetArraySize(single);
        if (n <= 1)
            continue;
        const char *first = template_special(cJSON_GetArrayItem(single, 0));
        if (first) {
            if (!cfg) {
                sp->tok[BOS] = named_str(first);
            } else if (!same(sp->tok[BOS], first) && !same(sp->tok[CLS], first)) {
                if (!truthy(sp->tok[BOS]))
                    sp->tok[BOS] = named_str(first);
                if (!truthy(sp->tok[CLS]))
                    sp->tok[CLS] = named_str(first);
            }
            add[VB_ADD_BOS] = same(sp->tok[BOS], first) || same(sp->tok[CLS], first);
        }
        const char *lastt = template_special(cJSON_GetArrayItem(single, n - 1));
        if (lastt) {
            if (!cfg) {
                sp->tok[EOS] = named_str(lastt);
            } else if (!same(sp->tok[EOS], lastt)) {
                /* the config's EOS is kept as end of turn (or message) */
                int k = !sp->active[type_index("eot")] ? type_index("eot")
                        : !sp->active[type_index("eom")] ? type_index("eom") : -1;
                if (k >= 0) {
                    sp->active[k] = 1;
                    sp->tok[k] = sp->tok[EOS];
                }
                sp->tok[EOS] = named_str(lastt);
            }
            add[VB_ADD_EOS] = same(sp->tok[EOS], lastt);
        }
    }
}

static int set_template(vocab_build *b, const char *text, tc_error *err)
{
    b->has_template = 1;
    return vb_str(b, text, strlen(text), &b->tmpl, err);
}

/* tokenizer_config.json's chat_template (a string, or a list of named
 * templates), else chat_template.jinja, else chat_template.json. */
static int chat_template(vocab_build *b, const char *path, const cJSON *cfg, tc_error *err)
{
    char *extra = beside(path, "additional_chat_templates");
    struct stat st;
    int has_extra = extra && stat(extra, &st) == 0;
    free(extra);
    if (has_extra)
        return tc_err(err, "%s: additional_chat_templates/ beside it is not carried into GGUF by tc", path);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(ct))
        return set_template(b, ct->valuestring, err);
    if (cJSON_IsArray(ct)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, ct) {
            const char *name = str_of(c, "name"), *text = str_of(c, "template");
            if (!name || !name[0] || !text)
                continue;
            if (strcmp(name, "default") == 0) {
                if (set_template(b, text, err))
                    return TC_ERR;
                continue;
            }
            char clean[128];
            size_t k = 0;
            for (; name[k] && k + 1 < sizeof clean; k++) {
                char ch = name[k];
                int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                clean[k] = ok ? ch : '_';
            }
            clean[k] = '\0';
            if (vb_named_template(b, clean, text, err))
                return TC_ERR;
        }
        return TC_OK;
    }
    if (ct && !cJSON_IsNull(ct))
        return TC_OK; /* the converter ignores a template of another type */
    char *jinja = beside(path, "chat_template.jinja");
    if (!jinja)
        return tc_err(err, "%s: out of memory", path);
    int rc = TC_OK;
    if (stat(jinja, &st) == 0) {
        char *text = NULL;
        uint64_t len = 0;
        rc = tc_read_small_file(jinja, 1 << 24, &text, &len, err);
        if (rc != TC_OK)
            tc_err_prefix(err, "%s", path);
        else if (strlen(text) != len)
            rc = tc_err(err, "%s: %s beside it holds a NUL byte", path, jinja);
        if (rc == TC_OK)
            rc = set_template(b, text, err);
        free(text);
        free(jinja);
        return rc;
    }
    free(jinja);
    cJSON *cj = NULL;
    rc = read_json_beside(path, "chat_template.json", &cj, err);
    const char *s = str_of(cj, "chat_template");
    if (rc == TC_OK && s)
        rc = set_template(b, s, err);
    cJSON_Delete(cj);
    return rc;
}

/* SpecialVocab: ids from tokenizer_config.json's token names (looked up among
 * the added tokens), then from config.json's {type}_token_id; the flags from
 * the post-processor, then tokenizer_config's add_{type}_token.  Unlike the
 * converter, add-BOS and add-EOS are always written (false when nothing adds
 * the token): llama.cpp's default when the key is absent differs by family,
 * and the tokenizer's own behaviour is what the file must say. */
static int special_vocab(vocab_build *b, const char *path, const cJSON *root, tc_error *err)
{
    cJSON *cfg = NULL, *conf = NULL;
    if (read_json_beside(path, "tokenizer_config.json", &cfg, err) ||
        read_json_beside(path, "config.json", &conf, err)) {
        cJSON_Delete(cfg);
        return TC_ERR;
    }
    specials sp;
    memset(&sp, 0, sizeof sp);
    for (int k = 0; k < N_TYPES; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", SPECIAL_TYPES[k].name);
        sp.tok[k] = k < BASE_TYPES ? named_of(cfg, key) : (named){0, NULL, NULL};
        sp.active[k] = k < BASE_TYPES;
    }
    int add[VB_N_ADD] = {-1, -1, -1};
    post_processor(root, cfg, &sp, add);
    int rc = TC_OK;
    if (cfg) {
        rc = chat_template(b, path, cfg, err);
        for (int k = 0; k < N_TYPES && rc == TC_OK; k++) {
            if (!sp.active[k])
                continue;
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", SPECIAL_TYPES[k].name);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
            int slot = k == type_index("bos") ? VB_ADD_BOS : k == type_index("eos") ? VB_ADD_EOS
                       : k == type_index("sep") ? VB_ADD_SEP : -1;
            if (cJSON_IsBool(a) && slot >= 0)
                add[slot] = cJSON_IsTrue(a);
            const char *content = sp.tok[k].kind == 1 ? sp.tok[k].s : str_of(sp.tok[k].obj, "content");
            if (content)
                set_special(b, &sp, k, added_id(root, content));
        }
    }
    for (int k = 0; k < N_TYPES && rc == TC_OK; k++) {
        if (!sp.active[k])
            continue;
        char key[40];
        snprintf(key, sizeof key, "%s_token_id", SPECIAL_TYPES[k].name);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(conf, key);
        if (!v)
            v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(conf, "text_config"), key);
        if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 0 &&
            v->valuedouble < 2147483648.0)
            set_special(b, &sp, k, (long)v->valuedouble);
    }
    b->add[VB_ADD_BOS] = add[VB_ADD_BOS] > 0;
    b->add[VB_ADD_EOS] = add[VB_ADD_EOS] > 0;
    b->add[VB_ADD_SEP] = add[VB_ADD_SEP];
    cJSON_Delete(cfg);
    cJSON_Delete(conf);
    return rc;
}

/* ---- the whole ------------------------------------------------------------- */

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

static int build(vocab_build *b, const char *path, const char *json, size_t len, const cJSON *root,
                 int32_t n_vocab, tc_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *type = str_of(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(model, "vocab")))
        return tc_err(err, "%s: no model.vocab object: not a tokenizer.json", path);
    if (type ? strcmp(type, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return tc_err(err, "%s: tc writes GGUF vocabularies of BPE tokenizers only, not \"%s\"", path,
                      type ? type : "?");
    int spm = !mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) &&
              !mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    long n_ids = 0;
    if (count_ids(path, cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                  cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &n_ids, err))
        return TC_ERR;
    if (n_vocab > 0 && n_ids > n_vocab)
        return tc_err(err, "%s: the tokenizer has %ld tokens but the model only %ld", path, n_ids, (long)n_vocab);
    char why[256];
    const char *pre = spm ? "default" : pre_name(root, model, why, sizeof why);
    if (!pre)
        return tc_err(err, "%s: llama.cpp has no pre-tokenizer known to tc for this byte-level tokenizer (%s); "
                      "not writing a GGUF vocabulary that would tokenize differently", path, why);
    if (spm && !bool_of(model, "byte_fallback", 0))
        return tc_err(err, "%s: a SentencePiece-style BPE without byte_fallback has no llama.cpp "
                      "equivalent (llama.cpp falls back to byte tokens)", path);
    cJSON *cfg = NULL;
    if (read_json_beside(path, "tokenizer_config.json", &cfg, err) ||
        vb_init(b, path, n_vocab > 0 ? n_vocab : (int32_t)n_ids, spm, err)) {
        cJSON_Delete(cfg);
        return TC_ERR;
    }
    b->model = spm ? "llama" : "gpt2";
    b->pre = pre;
    int rc = read_tokens(b, root, model, cfg, spm, err);
    cJSON_Delete(cfg);
    if (rc == TC_OK && !spm)
        rc = read_merges(b, model, err);
    if (rc == TC_OK && spm) {
        /* tc's own reader checks the normalizer and pre-tokenizer are ones
         * it reproduces, and gives the merge table the checks need */
        tc_tokenizer *t = NULL;
        rc = tok_load_hf_json_mem(&t, path, json, len, err);
        if (rc == TC_OK && t->split_on_space && !t->words_separable)
            rc = tc_err(err, "%s: the pre-tokenizer splits words at spaces and some token holds a space inside, "
                        "which llama.cpp's SentencePiece-style tokenizer (no split) would form", path);
        if (rc == TC_OK)
            rc = vocab_spm_check(t, b->source, b->score, err);
        /* llama.cpp adds the dummy-prefix space unless told not to */
        if (rc == TC_OK && t->prefix == TOK_PREFIX_NONE)
            b->add_space_prefix = 0;
        tc_tokenizer_free(t);
    }
    if (rc == TC_OK)
        rc = vb_pad(b, -10000.0f, err);
    if (rc == TC_OK)
        rc = special_vocab(b, path, root, err);
    return rc;
}

int vocab_hf_mem(tc_vocab *v, const char *path, const char *json, size_t len, int32_t n_vocab, tc_error *err)
{
    memset(v, 0, sizeof *v);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return tc_err(err, "%s: not valid JSON", path);
    vocab_build b;
    memset(&b, 0, sizeof b);
    int rc = build(&b, path, json, len, root, n_vocab, err);
    if (rc == TC_OK)
        rc = vb_finish(&b, v, err);
    vb_free(&b);
    cJSON_Delete(root);
    return rc;
}

int tc_vocab_from_hf(tc_vocab *v, const char *tokenizer_json, int32_t n_vocab, tc_error *err)
{
    memset(v, 0, sizeof *v);
    tc_mapfile m;
    if (tc_mapfile_open(&m, tokenizer_json, err))
        return TC_ERR;
    int rc = vocab_hf_mem(v, tokenizer_json, (const char *)m.data, (size_t)m.size, n_vocab, err);
    tc_mapfile_close(&m);
    return rc;
}
