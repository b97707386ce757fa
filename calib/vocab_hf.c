/* A Hugging Face tokenizer.json (with tokenizer_config.json and config.json
 * beside it) as the GGUF vocabulary convert_hf_to_gguf.py writes for it:
 * tokens, types, merges, SentencePiece scores.  See tc/vocab.h for what is
 * written and when tc refuses. */
#include "tok_internal.h"
#include "vocab_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/mapfile.h"

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
    return vj_bool(tok, "special", 0);
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


/* Every token's text and type (scores come later for SentencePiece-style
 * vocabularies). */
static int read_tokens(vocab_build *b, const cJSON *root, const cJSON *model, const cJSON *cfg, int spm,
                       tc_error *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int byte_fallback = vj_bool(model, "byte_fallback", 0);
    /* the unknown token keeps SentencePiece's type; a byte-fallback BPE may
     * name it only in tokenizer_config.json */
    const char *unk = vj_str(model, "unk_token");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(cfg, "unk_token");
    if (!unk)
        unk = cJSON_IsString(cu) ? cu->valuestring : vj_str(cu, "content");
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int type = spm && byte_fallback && tok_is_byte_token(e->string) ? VB_BYTE : VB_NORMAL;
        if (spm && unk && strcmp(e->string, unk) == 0)
            type = VB_UNKNOWN;
        if (vb_token(b, (int32_t)e->valuedouble, e->string, strlen(e->string), 0.0f, type, err))
            return TC_ERR;
    }
    cJSON_ArrayForEach(e, added) {
        const char *s = vj_str(e, "content");
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
    const char *type = vj_str(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(model, "vocab")))
        return tc_err(err, "%s: no model.vocab object: not a tokenizer.json", path);
    if (type ? strcmp(type, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return tc_err(err, "%s: tc writes GGUF vocabularies of BPE tokenizers only, not \"%s\"", path,
                      type ? type : "?");
    int spm = !mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) &&
              !mentions_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    long n_ids = 0;
    if (tok_json_count_ids(path, cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                  cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &n_ids, err))
        return TC_ERR;
    if (n_vocab > 0 && n_ids > n_vocab)
        return tc_err(err, "%s: the tokenizer has %ld tokens but the model only %ld", path, n_ids, (long)n_vocab);
    char why[256];
    const char *pre = spm ? "default" : vocab_pre_name(root, model, why, sizeof why);
    if (!pre)
        return tc_err(err, "%s: llama.cpp has no pre-tokenizer known to tc for this byte-level tokenizer (%s); "
                      "not writing a GGUF vocabulary that would tokenize differently", path, why);
    if (spm && !vj_bool(model, "byte_fallback", 0))
        return tc_err(err, "%s: a SentencePiece-style BPE without byte_fallback has no llama.cpp "
                      "equivalent (llama.cpp falls back to byte tokens)", path);
    cJSON *cfg = NULL;
    if (vocab_json_beside(path, "tokenizer_config.json", &cfg, err) ||
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
        rc = tok_load_hf_json_mem(&t, path, json, len, NULL, 0, err);
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
        rc = vocab_special(b, path, root, err);
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
