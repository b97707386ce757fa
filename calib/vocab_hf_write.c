/* A GGUF vocabulary as Hugging Face tokenizer files: tokenizer.json and
 * tokenizer_config.json that transformers tokenizes with as llama.cpp does
 * with the keys.  See tc_vocab_write_hf in tc/vocab.h. */
#include "tok_internal.h"
#include "vocab_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/outfile.h"

/* The keys, read back. */
typedef struct hfv {
    const char *src;
    int spm;
    int32_t n;
    const tc_gguf_value *tok, *score, *type, *merges;
    char *pre;
    long id[VB_N_IDS];
    int add_bos, add_eos, prefix;
} hfv;

static const tc_gguf_value *find_arr(const tc_vocab *v, const char *key, tc_gguf_type et)
{
    const tc_gguf_value *a = tc_vocab_find(v, key);
    if (!a || a->type != TC_GGUF_ARRAY)
        return NULL;
    if (et == TC_GGUF_I32) /* any integer type */
        return a->v.arr.type != TC_GGUF_STRING && a->v.arr.type != TC_GGUF_ARRAY && a->v.arr.type != TC_GGUF_F32 &&
                       a->v.arr.type != TC_GGUF_F64 ? a : NULL;
    if (et == TC_GGUF_F32)
        return a->v.arr.type == TC_GGUF_F32 || a->v.arr.type == TC_GGUF_F64 ? a : NULL;
    return a->v.arr.type == et ? a : NULL;
}

/* A string value as a new C string; NULL when it holds a NUL byte. */
static char *cstr(const tc_gguf_value *v)
{
    if (v->type != TC_GGUF_STRING || memchr(v->v.s.ptr, 0, (size_t)v->v.s.len))
        return NULL;
    char *s = malloc((size_t)v->v.s.len + 1);
    if (s) {
        memcpy(s, v->v.s.ptr, (size_t)v->v.s.len);
        s[v->v.s.len] = '\0';
    }
    return s;
}

static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

static long id_value(const tc_vocab *v, const char *key, int32_t n)
{
    const tc_gguf_value *x = tc_vocab_find(v, key);
    if (!x || (x->type != TC_GGUF_U32 && x->type != TC_GGUF_I32 && x->type != TC_GGUF_U64))
        return -1;
    long id = x->type == TC_GGUF_I32 ? (long)x->v.i : (long)x->v.u;
    return id >= 0 && id < n ? id : -1;
}

static int flag_value(const tc_vocab *v, const char *key, int fallback)
{
    const tc_gguf_value *x = tc_vocab_find(v, key);
    return x && x->type == TC_GGUF_BOOL ? (int)x->v.u : fallback;
}

static int read_keys(hfv *h, const tc_vocab *v, tc_error *err)
{
    static const char *const ID_KEYS[VB_N_IDS] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.mask_token_id"};
    memset(h, 0, sizeof *h);
    h->src = v->source ? v->source : "vocabulary";
    const tc_gguf_value *model = tc_vocab_find(v, "tokenizer.ggml.model");
    char *m = model ? cstr(model) : NULL;
    int known = m && (strcmp(m, "llama") == 0 || strcmp(m, "gpt2") == 0);
    h->spm = m && strcmp(m, "llama") == 0;
    if (!known) {
        int rc = tc_err(err, "%s: tc writes tokenizer.json for the \"llama\" and \"gpt2\" tokenizer models, not \"%s\"",
                        h->src, m ? m : "?");
        free(m);
        return rc;
    }
    free(m);
    h->tok = find_arr(v, "tokenizer.ggml.tokens", TC_GGUF_STRING);
    h->score = find_arr(v, "tokenizer.ggml.scores", TC_GGUF_F32);
    h->type = find_arr(v, "tokenizer.ggml.token_type", TC_GGUF_I32);
    h->merges = find_arr(v, "tokenizer.ggml.merges", TC_GGUF_STRING);
    if (!h->tok || h->tok->v.arr.n == 0 || h->tok->v.arr.n > INT32_MAX)
        return tc_err(err, "%s: no tokens", h->src);
    h->n = (int32_t)h->tok->v.arr.n;
    if ((h->score && h->score->v.arr.n != (uint64_t)h->n) || (h->type && h->type->v.arr.n != (uint64_t)h->n))
        return tc_err(err, "%s: scores or token types do not match the %ld tokens", h->src, (long)h->n);
    if (h->spm && !h->score)
        return tc_err(err, "%s: a \"llama\" vocabulary without scores", h->src);
    if (!h->spm && !h->merges)
        return tc_err(err, "%s: a \"gpt2\" vocabulary without merges", h->src);
    for (int i = 0; i < VB_N_IDS; i++)
        h->id[i] = id_value(v, ID_KEYS[i], h->n);
    h->add_bos = flag_value(v, "tokenizer.ggml.add_bos_token", h->spm);
    h->add_eos = flag_value(v, "tokenizer.ggml.add_eos_token", 0);
    h->prefix = flag_value(v, "tokenizer.ggml.add_space_prefix", 1);
    const tc_gguf_value *pre = tc_vocab_find(v, "tokenizer.ggml.pre");
    h->pre = pre ? cstr(pre) : NULL;
    for (int32_t i = 0; i < h->n; i++) {
        const tc_gguf_value *t = &h->tok->v.arr.items[i];
        if (t->type != TC_GGUF_STRING || memchr(t->v.s.ptr, 0, (size_t)t->v.s.len) ||
            !valid_utf8(t->v.s.ptr, (size_t)t->v.s.len))
            return tc_err(err, "%s: token %ld is not UTF-8 text, which tokenizer.json cannot hold", h->src, (long)i);
    }
    return TC_OK;
}

static int type_of(const hfv *h, int32_t id)
{
    if (!h->type)
        return VB_NORMAL;
    const tc_gguf_value *t = &h->type->v.arr.items[id];
    return (int)(t->type == TC_GGUF_I32 || t->type == TC_GGUF_I8 || t->type == TC_GGUF_I16 || t->type == TC_GGUF_I64
                     ? t->v.i
                     : (int64_t)t->v.u);
}

static cJSON *str_n(const tc_gguf_value *s)
{
    char *c = cstr(s);
    cJSON *j = cJSON_CreateString(c ? c : "");
    free(c);
    return j;
}

/* ---- SentencePiece-style merges from scores -------------------------------- */

typedef struct spm_merge {
    float score;
    int32_t res, l, r;
} spm_merge;

static int by_score(const void *a, const void *b)
{
    const spm_merge *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->res != y->res)
        return x->res < y->res ? -1 : 1;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

/* Open addressing from token text to id over the mergeable tokens. */
typedef struct text_map {
    int32_t *slot;
    uint64_t mask;
} text_map;

static int mergeable(int type)
{
    return type == VB_NORMAL || type == VB_UNUSED;
}

static int32_t map_get(const text_map *m, const hfv *h, const char *s, size_t n)
{
    for (uint64_t i = tok_hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0)
            return -1;
        const tc_gguf_value *t = &h->tok->v.arr.items[id];
        if (t->v.s.len == n && memcmp(t->v.s.ptr, s, n) == 0)
            return id;
    }
}

/* Adds id under its text; returns -1, or the id already there. */
static int32_t map_put(text_map *m, const hfv *h, int32_t id)
{
    const tc_gguf_value *t = &h->tok->v.arr.items[id];
    uint64_t i = tok_hash_bytes(t->v.s.ptr, (size_t)t->v.s.len) & m->mask;
    for (; m->slot[i] >= 0; i = (i + 1) & m->mask) {
        const tc_gguf_value *o = &h->tok->v.arr.items[m->slot[i]];
        if (o->v.s.len == t->v.s.len && memcmp(o->v.s.ptr, t->v.s.ptr, (size_t)t->v.s.len) == 0)
            return m->slot[i];
    }
    m->slot[i] = id;
    return -1;
}

static size_t utf8_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* Are tokens a and b runs of one and the same character?  SentencePiece
 * gives Llama 2's whitespace runs one score (-1e9); a run of that character
 * merges into the same pieces whichever tie goes first, so transformers'
 * order by token id stands for llama.cpp's leftmost-first (the case files
 * check it).  Any other tie is refused. */
static int same_run(const hfv *h, int32_t a, int32_t b)
{
    const tc_gguf_value *ta = &h->tok->v.arr.items[a], *tb = &h->tok->v.arr.items[b];
    const char *s = ta->v.s.ptr;
    size_t k = ta->v.s.len ? utf8_len((unsigned char)s[0]) : 0;
    if (!k || k > ta->v.s.len || tb->v.s.len < k || memcmp(tb->v.s.ptr, s, k) != 0)
        return 0;
    for (int side = 0; side < 2; side++) {
        const tc_gguf_value *t = side ? tb : ta;
        if (t->v.s.len % k)
            return 0;
        for (size_t i = 0; i < t->v.s.len; i += k)
            if (memcmp(t->v.s.ptr + i, s, k) != 0)
                return 0;
    }
    return 1;
}

/* Every split of a mergeable token into two mergeable tokens, ordered by the
 * joined token's score (then ids), as transformers extracts merges from a
 * SentencePiece model.  Tokens merges form must differ in score: llama.cpp
 * takes the leftmost of equal scores, which a merge list cannot say. */
static int spm_merges(const hfv *h, spm_merge **out, size_t *n_out, tc_error *err)
{
    *out = NULL;
    *n_out = 0;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)h->n + 16)
        cap <<= 1;
    text_map m = {malloc(cap * sizeof(int32_t)), cap - 1};
    size_t n = 0, ncap = 1024;
    spm_merge *mg = malloc(ncap * sizeof *mg);
    int rc = TC_OK;
    if (!m.slot || !mg) {
        rc = tc_err(err, "%s: out of memory", h->src);
        goto done;
    }
    memset(m.slot, 0xff, cap * sizeof(int32_t));
    for (int32_t id = 0; id < h->n; id++) {
        const tc_gguf_value *t = &h->tok->v.arr.items[id];
        if (!mergeable(type_of(h, id)) || t->v.s.len == 0)
            continue;
        uint64_t i = tok_hash_bytes(t->v.s.ptr, (size_t)t->v.s.len) & m.mask;
        while (m.slot[i] >= 0)
            i = (i + 1) & m.mask;
        m.slot[i] = id; /* a duplicate text is found later under its first id, as llama.cpp's map keeps the last */
    }
    for (int32_t id = 0; id < h->n && rc == TC_OK; id++) {
        if (!mergeable(type_of(h, id)))
            continue;
        const tc_gguf_value *t = &h->tok->v.arr.items[id];
        const char *s = t->v.s.ptr;
        size_t len = (size_t)t->v.s.len;
        for (size_t i = len ? utf8_len((unsigned char)s[0]) : 0; i < len; i += utf8_len((unsigned char)s[i])) {
            int32_t l = map_get(&m, h, s, i), r = map_get(&m, h, s + i, len - i);
            if (l < 0 || r < 0)
                continue;
            if (n == ncap) {
                spm_merge *g = realloc(mg, 2 * ncap * sizeof *mg);
                if (!g) {
                    rc = tc_err(err, "%s: out of memory", h->src);
                    break;
                }
                mg = g;
                ncap *= 2;
            }
            mg[n++] = (spm_merge){(float)h->score->v.arr.items[id].v.f, id, l, r};
        }
    }
    if (rc == TC_OK) {
        qsort(mg, n, sizeof *mg, by_score);
        for (size_t i = 1; i < n && rc == TC_OK; i++)
            if (mg[i].score == mg[i - 1].score && mg[i].res != mg[i - 1].res &&
                !same_run(h, mg[i - 1].res, mg[i].res))
                rc = tc_err(err, "%s: tokens %ld and %ld, both formed by merges, have the same score %g: llama.cpp "
                            "merges such ties left to right, which no merge list expresses", h->src,
                            (long)mg[i - 1].res, (long)mg[i].res, (double)mg[i].score);
    }
done:
    free(m.slot);
    if (rc != TC_OK) {
        free(mg);
        return TC_ERR;
    }
    *out = mg;
    *n_out = n;
    return TC_OK;
}

/* ---- tokenizer.json ----------------------------------------------------------- */

static cJSON *special_token(const hfv *h, long id, int special)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddItemToObject(o, "content", str_n(&h->tok->v.arr.items[id]));
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", 0);
    cJSON_AddBoolToObject(o, "special", special);
    return o;
}

static cJSON *template_item(const char *kind, const char *id, int type_id)
{
    cJSON *o = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(o, kind);
    cJSON_AddStringToObject(in, "id", id);
    cJSON_AddNumberToObject(in, "type_id", type_id);
    return o;
}

/* BOS and EOS around each sequence, as the add flags say; NULL when neither. */
static cJSON *post_processor(const hfv *h)
{
    long bos = h->add_bos ? h->id[VB_BOS] : -1, eos = h->add_eos ? h->id[VB_EOS] : -1;
    if (bos < 0 && eos < 0)
        return cJSON_CreateNull();
    char *bt = bos >= 0 ? cstr(&h->tok->v.arr.items[bos]) : NULL, *et = eos >= 0 ? cstr(&h->tok->v.arr.items[eos]) : NULL;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(p, "single"), *pair = cJSON_AddArrayToObject(p, "pair");
    for (int k = 0; k < 2; k++) {
        cJSON *list = k ? pair : single;
        for (int part = 0; part <= k; part++) {
            if (bt)
                cJSON_AddItemToArray(list, template_item("SpecialToken", bt, part));
            cJSON_AddItemToArray(list, template_item("Sequence", part ? "B" : "A", part));
            if (et)
                cJSON_AddItemToArray(list, template_item("SpecialToken", et, part));
        }
    }
    cJSON *st = cJSON_AddObjectToObject(p, "special_tokens");
    for (int k = 0; k < 2; k++) {
        const char *t = k ? et : bt;
        long id = k ? eos : bos;
        if (!t || cJSON_GetObjectItemCaseSensitive(st, t))
            continue;
        cJSON *o = cJSON_AddObjectToObject(st, t);
        cJSON_AddStringToObject(o, "id", t);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "ids"), cJSON_CreateNumber((double)id));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "tokens"), cJSON_CreateString(t));
    }
    free(bt);
    free(et);
    return p;
}

static cJSON *replace_step(const char *from, const char *to)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "pattern"), "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

/* The SentencePiece-style steps llama.cpp applies: a space before every run
 * of text (unless add_space_prefix is false), spaces as U+2581, no split. */
static void spm_steps(cJSON *root, const hfv *h)
{
    cJSON *norm = cJSON_CreateObject();
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *ns = cJSON_AddArrayToObject(norm, "normalizers");
    if (h->prefix) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "Prepend");
        cJSON_AddStringToObject(p, "prepend", "\xe2\x96\x81");
        cJSON_AddItemToArray(ns, p);
    }
    cJSON_AddItemToArray(ns, replace_step(" ", "\xe2\x96\x81"));
    cJSON_AddItemToObject(root, "normalizer", norm);
    cJSON_AddNullToObject(root, "pre_tokenizer");
}

static cJSON *spm_decoder(const hfv *h)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", "Sequence");
    cJSON *ds = cJSON_AddArrayToObject(d, "decoders");
    cJSON_AddItemToArray(ds, replace_step("\xe2\x96\x81", " "));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteFallback");
    cJSON_AddItemToArray(ds, o);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Fuse");
    cJSON_AddItemToArray(ds, o);
    if (h->prefix) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "Strip");
        cJSON_AddStringToObject(o, "content", " ");
        cJSON_AddNumberToObject(o, "start", 1);
        cJSON_AddNumberToObject(o, "stop", 0);
        cJSON_AddItemToArray(ds, o);
    }
    return d;
}

static cJSON *build_json(const hfv *h, tc_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int32_t id = 0; id < h->n; id++) {
        int ty = type_of(h, id);
        if (ty == VB_CONTROL || ty == VB_UNKNOWN || ty == VB_USER)
            cJSON_AddItemToArray(added, special_token(h, id, ty != VB_USER));
    }
    int ignore_merges = 0;
    if (h->spm) {
        spm_steps(root, h);
    } else {
        cJSON *norm = NULL, *pre = NULL;
        if (!h->pre || vocab_pre_json(h->pre, &norm, &pre, &ignore_merges) != TC_OK) {
            cJSON_Delete(root);
            tc_err(err, "%s: pre-tokenizer \"%s\" has no tokenizer.json form known to tc", h->src,
                   h->pre ? h->pre : "(none)");
            return NULL;
        }
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    }
    cJSON_AddItemToObject(root, "post_processor", post_processor(h));
    if (h->spm) {
        cJSON_AddItemToObject(root, "decoder", spm_decoder(h));
    } else {
        cJSON *d = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(d, "type", "ByteLevel");
        cJSON_AddBoolToObject(d, "add_prefix_space", 1);
        cJSON_AddBoolToObject(d, "trim_offsets", 1);
        cJSON_AddBoolToObject(d, "use_regex", 1);
    }
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    long unk = h->spm ? h->id[VB_UNK] : -1;
    if (unk >= 0)
        cJSON_AddItemToObject(model, "unk_token", str_n(&h->tok->v.arr.items[unk]));
    else
        cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", h->spm);
    cJSON_AddBoolToObject(model, "byte_fallback", h->spm);
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    /* The model's vocabulary: every token for "llama" (llama.cpp may join
     * into any of them), the byte-level alphabet's tokens for "gpt2" (added
     * tokens apart, unused padding left out). */
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)h->n + 16)
        cap <<= 1;
    text_map seen = {malloc(cap * sizeof(int32_t)), cap - 1}; /* a JSON object holds each text once */
    int ok = seen.slot != NULL;
    if (!ok)
        tc_err(err, "%s: out of memory", h->src);
    else
        memset(seen.slot, 0xff, cap * sizeof(int32_t));
    for (int32_t id = 0; id < h->n && ok; id++) {
        int ty = type_of(h, id);
        if (!h->spm && ty != VB_NORMAL && ty != VB_BYTE)
            continue;
        int32_t dup = map_put(&seen, h, id);
        char *t = dup < 0 ? cstr(&h->tok->v.arr.items[id]) : NULL;
        if (!t) {
            ok = 0;
            tc_err(err, "%s: token %ld is also token %ld; a tokenizer.json vocabulary holds each text once", h->src,
                   (long)id, (long)dup);
            break;
        }
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber(id));
        free(t);
    }
    free(seen.slot);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    if (h->spm) {
        spm_merge *mg;
        size_t n;
        if (spm_merges(h, &mg, &n, err)) {
            cJSON_Delete(root);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, str_n(&h->tok->v.arr.items[mg[i].l]));
            cJSON_AddItemToArray(pair, str_n(&h->tok->v.arr.items[mg[i].r]));
            cJSON_AddItemToArray(merges, pair);
        }
        free(mg);
    } else {
        for (uint64_t i = 0; i < h->merges->v.arr.n; i++)
            cJSON_AddItemToArray(merges, str_n(&h->merges->v.arr.items[i]));
    }
    return root;
}

/* ---- tokenizer_config.json ------------------------------------------------------ */

static cJSON *build_config(const hfv *h, const tc_vocab *v)
{
    static const struct {
        const char *key;
        int slot;
    } NAMES[] = {{"bos_token", VB_BOS}, {"eos_token", VB_EOS}, {"unk_token", VB_UNK},
                 {"sep_token", VB_SEP}, {"pad_token", VB_PAD}, {"mask_token", VB_MASK}};
    cJSON *c = cJSON_CreateObject();
    cJSON_AddBoolToObject(c, "add_bos_token", h->add_bos);
    cJSON_AddBoolToObject(c, "add_eos_token", h->add_eos);
    cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
    for (int32_t id = 0; id < h->n; id++) {
        int ty = type_of(h, id);
        if (ty != VB_CONTROL && ty != VB_UNKNOWN && ty != VB_USER)
            continue;
        char key[16];
        snprintf(key, sizeof key, "%ld", (long)id);
        cJSON *o = special_token(h, id, ty != VB_USER);
        cJSON_DeleteItemFromObjectCaseSensitive(o, "id");
        cJSON_AddItemToObject(dec, key, o);
    }
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (h->id[NAMES[i].slot] >= 0)
            cJSON_AddItemToObject(c, NAMES[i].key, str_n(&h->tok->v.arr.items[h->id[NAMES[i].slot]]));
    /* the chat templates: the default one alone as a string, with named ones as a list */
    const tc_gguf_value *def = tc_vocab_find(v, "tokenizer.chat_template");
    const tc_gguf_value *names = find_arr(v, "tokenizer.chat_templates", TC_GGUF_STRING);
    if (names && names->v.arr.n) {
        cJSON *list = cJSON_AddArrayToObject(c, "chat_template");
        if (def && def->type == TC_GGUF_STRING) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", "default");
            cJSON_AddItemToObject(o, "template", str_n(def));
            cJSON_AddItemToArray(list, o);
        }
        for (uint64_t i = 0; i < names->v.arr.n; i++) {
            char *nm = cstr(&names->v.arr.items[i]), key[200];
            snprintf(key, sizeof key, "tokenizer.chat_template.%s", nm ? nm : "");
            const tc_gguf_value *t = tc_vocab_find(v, key);
            if (nm && t && t->type == TC_GGUF_STRING) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "name", nm);
                cJSON_AddItemToObject(o, "template", str_n(t));
                cJSON_AddItemToArray(list, o);
            }
            free(nm);
        }
    } else if (def && def->type == TC_GGUF_STRING) {
        cJSON_AddItemToObject(c, "chat_template", str_n(def));
    }
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", 0);
    /* the generic fast tokenizer takes tokenizer.json as it is */
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    return c;
}

static int write_json_file(const char *dir, const char *name, const cJSON *j, tc_error *err)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    char *text = cJSON_PrintUnformatted(j);
    int rc = TC_OK;
    if (!path || !text) {
        rc = tc_err(err, "%s: out of memory", dir);
    } else {
        snprintf(path, n, "%s/%s", dir, name);
        tc_outfile o;
        rc = tc_outfile_open(&o, path, err);
        if (rc == TC_OK)
            rc = tc_outfile_write(&o, text, strlen(text), err);
        if (rc == TC_OK)
            rc = tc_outfile_commit(&o, err);
        tc_outfile_abort(&o);
    }
    free(path);
    free(text);
    return rc;
}

int tc_vocab_write_hf(const tc_vocab *v, const char *dir, tc_error *err)
{
    hfv h;
    int rc = read_keys(&h, v, err);
    cJSON *json = rc == TC_OK ? build_json(&h, err) : NULL, *cfg = NULL;
    if (rc == TC_OK && !json)
        rc = TC_ERR;
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    if (rc == TC_OK && !text)
        rc = tc_err(err, "%s: out of memory", h.src);
    if (rc == TC_OK && h.spm) {
        /* what the merge list forms, llama.cpp's scores must form: read the
         * file back as tc reads tokenizer.json and check it */
        tc_tokenizer *t = NULL;
        rc = tok_load_hf_json_mem(&t, h.src, text, strlen(text), NULL, 0, err);
        if (rc == TC_OK)
            rc = vocab_spm_check(t, h.src, NULL, err);
        tc_tokenizer_free(t);
    }
    if (rc == TC_OK && !(cfg = build_config(&h, v)))
        rc = tc_err(err, "%s: out of memory", h.src);
    if (rc == TC_OK)
        rc = write_json_file(dir, "tokenizer.json", json, err);
    if (rc == TC_OK)
        rc = write_json_file(dir, "tokenizer_config.json", cfg, err);
    free(text);
    free(h.pre);
    cJSON_Delete(json);
    cJSON_Delete(cfg);
    return rc;
}
