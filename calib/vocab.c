/* GGUF vocabularies: the builder, the keys it writes, llama2.c's
 * tokenizer.bin as llama.cpp's convert-llama2c-to-ggml reads it, and the
 * tokenizer keys of a GGUF file copied as they are. */
#include "vocab_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/mapfile.h"

/* What a tc_vocab's values point into. */
typedef struct vocab_store {
    tc_gguf_writer_kv *kv;
    size_t n_kv;
    char *arena;
    tc_gguf_value *items; /* array elements of every array key */
    char **keys;          /* key strings built here */
    size_t n_keys;
    tc_gguf *g;           /* a copied GGUF's strings */
    char *source;
} vocab_store;

static const char *const ID_KEYS[VB_N_IDS] = {
    "tokenizer.ggml.bos_token_id",     "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",     "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", /* sic: llama.cpp's spelling */
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.mask_token_id",
};
static const char *const ADD_KEYS[VB_N_ADD] = {
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_sep_token"};

/* ---- builder ------------------------------------------------------------ */

int vb_init(vocab_build *b, const char *source, int32_t n, int with_scores, tc_error *err)
{
    memset(b, 0, sizeof *b);
    b->source = source;
    if (n <= 0)
        return tc_err(err, "%s: empty vocabulary", source);
    b->n = n;
    b->tok = calloc((size_t)n, sizeof *b->tok);
    b->type = calloc((size_t)n, sizeof *b->type);
    b->score = with_scores ? calloc((size_t)n, sizeof *b->score) : NULL;
    if (!b->tok || !b->type || (with_scores && !b->score)) {
        vb_free(b);
        return tc_err(err, "%s: out of memory for %ld tokens", source, (long)n);
    }
    for (int i = 0; i < VB_N_IDS; i++)
        b->id[i] = -1;
    for (int i = 0; i < VB_N_ADD; i++)
        b->add[i] = -1;
    b->add_space_prefix = -1;
    return TC_OK;
}

void vb_free(vocab_build *b)
{
    free(b->arena);
    free(b->tok);
    free(b->score);
    free(b->type);
    free(b->merge);
    free(b->tmpl_name);
    free(b->tmpl_text);
    memset(b, 0, sizeof *b);
}

int vb_str(vocab_build *b, const char *s, size_t n, vb_span *out, tc_error *err)
{
    if (n > UINT32_MAX || b->len + n < b->len)
        return tc_err(err, "%s: a string of %zu bytes is too long", b->source, n);
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        char *a = realloc(b->arena, cap);
        if (!a)
            return tc_err(err, "%s: out of memory", b->source);
        b->arena = a;
        b->cap = cap;
    }
    if (n)
        memcpy(b->arena + b->len, s, n);
    out->off = b->len;
    out->len = (uint32_t)n;
    b->len += n;
    return TC_OK;
}

int vb_token(vocab_build *b, int32_t id, const char *s, size_t n, float score, int type, tc_error *err)
{
    if (id < 0 || id >= b->n)
        return tc_err(err, "%s: token id %ld is outside the vocabulary of %ld", b->source, (long)id, (long)b->n);
    if (vb_str(b, s, n, &b->tok[id], err))
        return TC_ERR;
    if (b->score)
        b->score[id] = score;
    b->type[id] = type;
    return TC_OK;
}

int vb_pad(vocab_build *b, float pad_score, tc_error *err)
{
    for (int32_t i = 0; i < b->n; i++) {
        if (b->type[i])
            continue;
        char text[32];
        int k = snprintf(text, sizeof text, "[PAD%ld]", (long)i);
        if (vb_token(b, i, text, (size_t)k, pad_score, VB_UNUSED, err))
            return TC_ERR;
    }
    return TC_OK;
}

int vb_merge(vocab_build *b, const char *s, size_t n, tc_error *err)
{
    if (b->n_merges == b->cap_merges) {
        size_t cap = b->cap_merges ? 2 * b->cap_merges : 1024;
        vb_span *m = cap < SIZE_MAX / sizeof *m ? realloc(b->merge, cap * sizeof *m) : NULL;
        if (!m)
            return tc_err(err, "%s: out of memory for merges", b->source);
        b->merge = m;
        b->cap_merges = cap;
    }
    return vb_str(b, s, n, &b->merge[b->n_merges++], err);
}

int vb_named_template(vocab_build *b, const char *name, const char *text, tc_error *err)
{
    vb_span *nn = realloc(b->tmpl_name, (b->n_named + 1) * sizeof *nn);
    if (nn)
        b->tmpl_name = nn;
    vb_span *nt = nn ? realloc(b->tmpl_text, (b->n_named + 1) * sizeof *nt) : NULL;
    if (!nt)
        return tc_err(err, "%s: out of memory", b->source);
    b->tmpl_text = nt;
    if (vb_str(b, name, strlen(name), &b->tmpl_name[b->n_named], err) ||
        vb_str(b, text, strlen(text), &b->tmpl_text[b->n_named], err))
        return TC_ERR;
    b->n_named++;
    return TC_OK;
}

static void store_free(vocab_store *st)
{
    if (!st)
        return;
    free(st->kv);
    free(st->arena);
    free(st->items);
    for (size_t i = 0; i < st->n_keys; i++)
        free(st->keys[i]);
    free(st->keys);
    if (st->g) {
        tc_gguf_close(st->g);
        free(st->g);
    }
    free(st->source);
    free(st);
}

static tc_gguf_value str_value(const char *arena, vb_span s)
{
    tc_gguf_value v = {.type = TC_GGUF_STRING};
    v.v.s.ptr = arena + s.off;
    v.v.s.len = s.len;
    return v;
}

static void put(vocab_store *st, const char *key, tc_gguf_value v)
{
    st->kv[st->n_kv].key = key;
    st->kv[st->n_kv++].value = v;
}

static tc_gguf_value array_value(tc_gguf_type et, uint64_t n, tc_gguf_value *items)
{
    tc_gguf_value v = {.type = TC_GGUF_ARRAY};
    v.v.arr.type = et;
    v.v.arr.n = n;
    v.v.arr.items = items;
    return v;
}

int vb_finish(vocab_build *b, tc_vocab *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    for (int32_t i = 0; i < b->n; i++)
        if (!b->type[i])
            return tc_err(err, "%s: token %ld is missing", b->source, (long)i);
    uint64_t n_items = (uint64_t)b->n * (b->score ? 3 : 2) + b->n_merges + b->n_named;
    vocab_store *st = calloc(1, sizeof *st);
    size_t cap_kv = 16 + VB_N_IDS + VB_N_ADD + b->n_named;
    if (st) {
        st->kv = calloc(cap_kv, sizeof *st->kv);
        st->items = n_items < SIZE_MAX / sizeof *st->items ? malloc((size_t)(n_items ? n_items : 1) * sizeof *st->items)
                                                           : NULL;
        st->keys = calloc(b->n_named + 1, sizeof *st->keys);
    }
    if (!st || !st->kv || !st->items || !st->keys) {
        store_free(st);
        return tc_err(err, "%s: out of memory", b->source);
    }
    for (size_t i = 0; i < b->n_named; i++) {
        const vb_span *nm = &b->tmpl_name[i];
        char *key = malloc(nm->len + 32);
        if (!key) {
            store_free(st);
            return tc_err(err, "%s: out of memory", b->source);
        }
        snprintf(key, nm->len + 32, "tokenizer.chat_template.%.*s", (int)nm->len, b->arena + nm->off);
        st->keys[st->n_keys++] = key;
    }
    st->arena = b->arena; /* the values point into it from here on */
    b->arena = NULL;
    const char *a = st->arena;
    tc_gguf_value *it = st->items;
    tc_gguf_value sv = {.type = TC_GGUF_STRING};
    sv.v.s.ptr = b->model;
    sv.v.s.len = strlen(b->model);
    put(st, "tokenizer.ggml.model", sv);
    if (b->pre) {
        sv.v.s.ptr = b->pre;
        sv.v.s.len = strlen(b->pre);
        put(st, "tokenizer.ggml.pre", sv);
    }
    tc_gguf_value *toks = it;
    for (int32_t i = 0; i < b->n; i++)
        *it++ = str_value(a, b->tok[i]);
    put(st, "tokenizer.ggml.tokens", array_value(TC_GGUF_STRING, (uint64_t)b->n, toks));
    if (b->score) {
        tc_gguf_value *sc = it;
        for (int32_t i = 0; i < b->n; i++, it++) {
            it->type = TC_GGUF_F32;
            it->v.f = b->score[i];
        }
        put(st, "tokenizer.ggml.scores", array_value(TC_GGUF_F32, (uint64_t)b->n, sc));
    }
    tc_gguf_value *ty = it;
    for (int32_t i = 0; i < b->n; i++, it++) {
        it->type = TC_GGUF_I32;
        it->v.i = b->type[i];
    }
    put(st, "tokenizer.ggml.token_type", array_value(TC_GGUF_I32, (uint64_t)b->n, ty));
    if (b->n_merges) {
        tc_gguf_value *mg = it;
        for (size_t i = 0; i < b->n_merges; i++)
            *it++ = str_value(a, b->merge[i]);
        put(st, "tokenizer.ggml.merges", array_value(TC_GGUF_STRING, b->n_merges, mg));
    }
    for (int i = 0; i < VB_N_IDS; i++) {
        if (b->id[i] < 0)
            continue;
        tc_gguf_value v = {.type = TC_GGUF_U32};
        v.v.u = (uint64_t)b->id[i];
        put(st, ID_KEYS[i], v);
    }
    for (int i = 0; i < VB_N_ADD; i++) {
        if (b->add[i] < 0)
            continue;
        tc_gguf_value v = {.type = TC_GGUF_BOOL};
        v.v.u = (uint64_t)b->add[i];
        put(st, ADD_KEYS[i], v);
    }
    if (b->add_space_prefix >= 0) {
        tc_gguf_value v = {.type = TC_GGUF_BOOL};
        v.v.u = (uint64_t)b->add_space_prefix;
        put(st, "tokenizer.ggml.add_space_prefix", v);
    }
    for (size_t i = 0; i < b->n_named; i++)
        put(st, st->keys[i], str_value(a, b->tmpl_text[i]));
    if (b->n_named) {
        tc_gguf_value *nm = it;
        for (size_t i = 0; i < b->n_named; i++)
            *it++ = str_value(a, b->tmpl_name[i]);
        put(st, "tokenizer.chat_templates", array_value(TC_GGUF_STRING, b->n_named, nm));
    }
    if (b->has_template)
        put(st, "tokenizer.chat_template", str_value(a, b->tmpl));
    st->source = strdup(b->source);
    out->kvs = st->kv;
    out->n_kvs = st->n_kv;
    out->source = st->source ? st->source : "vocabulary";
    out->priv = st;
    vb_free(b);
    return TC_OK;
}

void tc_vocab_free(tc_vocab *v)
{
    if (!v)
        return;
    store_free(v->priv);
    memset(v, 0, sizeof *v);
}

const tc_gguf_value *tc_vocab_find(const tc_vocab *v, const char *key)
{
    for (size_t i = 0; i < v->n_kvs; i++)
        if (strcmp(v->kvs[i].key, key) == 0)
            return &v->kvs[i].value;
    return NULL;
}

/* ---- llama2.c tokenizer.bin ---------------------------------------------- */

/* Token i's text as convert-llama2c-to-ggml writes it: ids 0-2 renamed
 * (llama2.c's export writes BOS and EOS as "\n<s>\n" and "\n</s>\n"), every
 * space as U+2581; and its type. */
static int llama2c_token(vocab_build *b, int32_t i, const uint8_t *s, uint32_t n, float score, tc_error *err)
{
    static const char *const fixed[3] = {"<unk>", "<s>", "</s>"};
    static const int fixed_type[3] = {VB_UNKNOWN, VB_CONTROL, VB_CONTROL};
    if (i < 3)
        return vb_token(b, i, fixed[i], strlen(fixed[i]), score, fixed_type[i], err);
    int type = n == 0 ? VB_CONTROL
               : n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' ? VB_BYTE
                                                                     : VB_NORMAL;
    size_t spaces = 0;
    for (uint32_t k = 0; k < n; k++)
        spaces += s[k] == ' ';
    char *t = malloc(n + 2 * spaces + 1);
    if (!t)
        return tc_err(err, "%s: out of memory", b->source);
    size_t o = 0;
    for (uint32_t k = 0; k < n; k++) {
        if (s[k] == ' ') {
            memcpy(t + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            t[o++] = (char)s[k];
        }
    }
    int rc = vb_token(b, i, t, o, score, type, err);
    free(t);
    return rc;
}

static int read_record(tc_cursor *c, int32_t i, float *score, const uint8_t **s, uint32_t *n, tc_error *err)
{
    int32_t len;
    if (tc_cursor_f32(c, score, "token score", err) || tc_cursor_i32(c, &len, "token length", err))
        return TC_ERR;
    if (len < 0 || (uint64_t)len > tc_cursor_left(c))
        return tc_err(err, "%s: token %ld has length %ld but only %llu bytes remain at offset %llu", c->name,
                      (long)i, (long)len, (unsigned long long)tc_cursor_left(c), (unsigned long long)c->pos);
    *n = (uint32_t)len;
    return tc_cursor_bytes(c, (uint64_t)len, s, "token text", err);
}

int tc_vocab_from_llama2c(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err)
{
    memset(v, 0, sizeof *v);
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    tc_cursor c;
    tc_cursor_init(&c, m.data, m.size, path);
    int32_t max_len, n = n_vocab;
    int rc = tc_cursor_i32(&c, &max_len, "max_token_length", err);
    if (rc == TC_OK && max_len <= 0)
        rc = tc_err(err, "%s: not a llama2.c tokenizer: max_token_length is %ld", path, (long)max_len);
    if (rc == TC_OK && n <= 0) {
        tc_cursor probe = c;
        for (n = 0; rc == TC_OK && tc_cursor_left(&probe) > 0 && n < INT32_MAX; n++) {
            float sc;
            const uint8_t *s;
            uint32_t len;
            rc = read_record(&probe, n, &sc, &s, &len, err);
        }
    }
    if (rc == TC_OK && (uint64_t)n > tc_cursor_left(&c) / 8)
        rc = tc_err(err, "%s: %ld tokens cannot fit in the %llu bytes after the header", path, (long)n,
                    (unsigned long long)tc_cursor_left(&c));
    vocab_build b;
    memset(&b, 0, sizeof b);
    if (rc == TC_OK)
        rc = vb_init(&b, path, n, 1, err);
    for (int32_t i = 0; rc == TC_OK && i < n; i++) {
        float sc;
        const uint8_t *s;
        uint32_t len;
        rc = read_record(&c, i, &sc, &s, &len, err);
        if (rc == TC_OK)
            rc = llama2c_token(&b, i, s, len, sc, err);
    }
    if (rc == TC_OK) {
        /* convert-llama2c-to-ggml's fixed ids; llama2.c's run.c starts every
         * text with BOS and adds no EOS, as llama.cpp does for "llama" */
        b.model = "llama";
        b.pre = "default";
        b.id[VB_UNK] = 0;
        b.id[VB_BOS] = n > 1 ? 1 : -1;
        b.id[VB_EOS] = n > 2 ? 2 : -1;
        b.add[VB_ADD_BOS] = 1;
        b.add[VB_ADD_EOS] = 0;
        rc = vb_finish(&b, v, err);
    }
    vb_free(&b);
    tc_mapfile_close(&m);
    return rc;
}

/* ---- a GGUF's own keys ---------------------------------------------------- */

int tc_vocab_from_gguf(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err)
{
    memset(v, 0, sizeof *v);
    vocab_store *st = calloc(1, sizeof *st);
    if (!st || !(st->g = calloc(1, sizeof *st->g))) {
        free(st);
        return tc_err(err, "%s: out of memory", path);
    }
    if (tc_gguf_open(st->g, path, err)) {
        free(st->g);
        st->g = NULL;
        store_free(st);
        return TC_ERR;
    }
    const tc_gguf *g = st->g;
    const tc_gguf_value *toks = tc_gguf_find(g, "tokenizer.ggml.tokens");
    int rc = TC_OK;
    if (!tc_gguf_find(g, "tokenizer.ggml.model") || !toks || toks->type != TC_GGUF_ARRAY)
        rc = tc_err(err, "%s: the GGUF file carries no vocabulary (tokenizer.ggml.model and .tokens)", path);
    else if (n_vocab > 0 && toks->v.arr.n != (uint64_t)n_vocab)
        rc = tc_err(err, "%s: the vocabulary has %llu tokens but the model %ld", path,
                    (unsigned long long)toks->v.arr.n, (long)n_vocab);
    if (rc == TC_OK) {
        st->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *st->kv);
        st->keys = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *st->keys);
        if (!st->kv || !st->keys)
            rc = tc_err(err, "%s: out of memory", path);
    }
    for (uint64_t i = 0; rc == TC_OK && i < g->n_kv; i++) {
        const tc_gguf_kv *kv = &g->kvs[i];
        if (kv->key.len <= 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0)
            continue;
        char *key = malloc((size_t)kv->key.len + 1);
        if (!key) {
            rc = tc_err(err, "%s: out of memory", path);
            break;
        }
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = '\0';
        st->keys[st->n_keys++] = key;
        put(st, key, kv->value);
    }
    if (rc != TC_OK) {
        store_free(st);
        return TC_ERR;
    }
    st->source = strdup(path);
    v->kvs = st->kv;
    v->n_kvs = st->n_kv;
    v->source = st->source ? st->source : "vocabulary";
    v->priv = st;
    return TC_OK;
}

/* ---- detection -------------------------------------------------------------- */

int tc_vocab_open(tc_vocab *v, const char *path, int32_t n_vocab, tc_error *err)
{
    memset(v, 0, sizeof *v);
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    const uint8_t *d = m.data;
    uint64_t i = 0;
    while (i < m.size && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r'))
        i++;
    int gguf = m.size >= 4 && memcmp(d, "GGUF", 4) == 0;
    /* '{' then a key or '}': JSON (a tokenizer.bin whose max_token_length is
     * 123 also starts with '{', followed by zero bytes) */
    uint64_t k = i + 1;
    while (k < m.size && (d[k] == ' ' || d[k] == '\t' || d[k] == '\n' || d[k] == '\r'))
        k++;
    int json = !gguf && i < m.size && d[i] == '{' && k < m.size && (d[k] == '"' || d[k] == '}');
    tc_mapfile_close(&m);
    if (gguf)
        return tc_vocab_from_gguf(v, path, n_vocab, err);
    if (json)
        return tc_vocab_from_hf(v, path, n_vocab, err);
    return tc_vocab_from_llama2c(v, path, n_vocab, err);
}
