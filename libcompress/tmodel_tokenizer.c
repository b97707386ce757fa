/* The tokenizer a packed file carries.
 *
 * Rather than a tokenizer format of its own, the file embeds the bytes the
 * source's tokenizer was read from (docs/PACKED_FORMAT.md): a Hugging Face
 * tokenizer.json with the tokenizer_config.json beside it, a llama2.c
 * tokenizer.bin, or, for a GGUF source, a GGUF image holding only its
 * tokenizer.* keys.  Reading them back goes through the same loaders that
 * read the source, so the packed model encodes and decodes text exactly as
 * its source does, and every byte passes the same hardened parsers. */
#include "tc/tmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/mapfile.h"
#include "tc/model_tokenizer.h"
#include "tc/tokenizer.h"

/* As the tokenizer.json loader reads the tokenizer_config.json beside it. */
#define CONFIG_MAX (1u << 26)

static const char *const kind_names[TC_TTOK_COUNT] = {"none", "hf", "llama2c", "gguf"};
static const char *const file_names[TC_TTOK_COUNT][TC_TTOK_MAX_FILES] = {
    {NULL, NULL},
    {"tokenizer.json", "tokenizer_config.json"},
    {"tokenizer.bin", NULL},
    {"tokenizer.gguf", NULL},
};

const char *tc_ttok_kind_name(tc_ttok_kind k)
{
    return (unsigned)k < TC_TTOK_COUNT ? kind_names[k] : "?";
}

const char *tc_ttok_file_name(tc_ttok_kind k, int i)
{
    return (unsigned)k < TC_TTOK_COUNT && i >= 0 && i < TC_TTOK_MAX_FILES ? file_names[k][i] : NULL;
}

void tc_tmodel_tok_free(tc_tmodel_tok *t)
{
    for (int i = 0; i < TC_TTOK_MAX_FILES; i++)
        free(t->owned[i]);
    free(t->origin);
    memset(t, 0, sizeof *t);
}

int tc_tmodel_is_packed(const char *path)
{
    return tc_file_has_magic(path, TC_TMODEL_MAGIC, 8);
}

/* ---- collecting the source's bytes ---------------------------------------- */

static int add_file(tc_tmodel_tok *t, uint8_t *bytes, uint64_t n)
{
    int i = t->n_files++;
    t->owned[i] = bytes;
    t->files[i].data = bytes;
    t->files[i].nbytes = n;
    return TC_OK;
}

static int add_read(tc_tmodel_tok *t, const char *path, uint64_t max, tc_error *err)
{
    char *text;
    uint64_t len;
    if (tc_read_small_file(path, max, &text, &len, err))
        return TC_ERR;
    return add_file(t, (uint8_t *)text, len);
}

/* tokenizer.json, and the tokenizer_config.json beside it when the loader
 * would read one (the same rule: present and readable within its limit). */
static int collect_hf(tc_tmodel_tok *t, const char *json, tc_error *err)
{
    t->kind = TC_TTOK_HF;
    if (add_read(t, json, TC_TTOK_MAX_BYTES, err))
        return TC_ERR;
    const char *slash = strrchr(json, '/');
    size_t dir = slash ? (size_t)(slash - json + 1) : 0;
    char *cfg = malloc(dir + 32);
    if (!cfg)
        return tc_err(err, "out of memory");
    memcpy(cfg, json, dir);
    strcpy(cfg + dir, "tokenizer_config.json");
    char *text;
    uint64_t len;
    tc_error ignored;
    if (tc_read_small_file(cfg, CONFIG_MAX, &text, &len, &ignored) == TC_OK)
        add_file(t, (uint8_t *)text, len);
    free(cfg);
    return TC_OK;
}

/* ---- a GGUF image of tokenizer.* keys --------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    int fail;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->fail)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n && cap < SIZE_MAX / 2)
            cap *= 2;
        uint8_t *p = cap >= b->n + n ? realloc(b->p, cap) : NULL;
        if (!p) {
            b->fail = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int bytes)
{
    uint8_t le[8];
    for (int i = 0; i < bytes; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    put(b, le, (size_t)bytes);
}

static void put_str(buf *b, const char *s, uint64_t n)
{
    put_le(b, n, 8);
    put(b, s, (size_t)n);
}

/* A value's payload as GGUF stores it (the type tag is the caller's). */
static void put_payload(buf *b, const tc_gguf_value *v)
{
    switch (v->type) {
    case TC_GGUF_U8: case TC_GGUF_BOOL: put_le(b, v->v.u, 1); break;
    case TC_GGUF_I8: put_le(b, (uint64_t)v->v.i, 1); break;
    case TC_GGUF_U16: put_le(b, v->v.u, 2); break;
    case TC_GGUF_I16: put_le(b, (uint64_t)v->v.i, 2); break;
    case TC_GGUF_U32: put_le(b, v->v.u, 4); break;
    case TC_GGUF_I32: put_le(b, (uint64_t)v->v.i, 4); break;
    case TC_GGUF_U64: put_le(b, v->v.u, 8); break;
    case TC_GGUF_I64: put_le(b, (uint64_t)v->v.i, 8); break;
    case TC_GGUF_F32: {
        float f = (float)v->v.f; /* read from an F32, so exact */
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(b, u, 4);
        break;
    }
    case TC_GGUF_F64: {
        uint64_t u;
        memcpy(&u, &v->v.f, 8);
        put_le(b, u, 8);
        break;
    }
    case TC_GGUF_STRING: put_str(b, v->v.s.ptr, v->v.s.len); break;
    case TC_GGUF_ARRAY:
        put_le(b, (uint64_t)v->v.arr.type, 4);
        put_le(b, v->v.arr.n, 8);
        for (uint64_t i = 0; i < v->v.arr.n; i++)
            put_payload(b, &v->v.arr.items[i]);
        break;
    }
}

static int is_tokenizer_key(const tc_gguf_str *k)
{
    return k->len > 10 && memcmp(k->ptr, "tokenizer.", 10) == 0;
}

static int collect_gguf(tc_tmodel_tok *t, const tc_gguf *g, tc_error *err)
{
    t->kind = TC_TTOK_GGUF;
    uint64_t n_kv = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        n_kv += is_tokenizer_key(&g->kvs[i].key);
    buf b = {0};
    put(&b, "GGUF", 4);
    put_le(&b, 3, 4);
    put_le(&b, 0, 8); /* tensors */
    put_le(&b, n_kv, 8);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const tc_gguf_kv *kv = &g->kvs[i];
        if (!is_tokenizer_key(&kv->key))
            continue;
        put_str(&b, kv->key.ptr, kv->key.len);
        put_le(&b, (uint64_t)kv->value.type, 4);
        put_payload(&b, &kv->value);
    }
    if (b.fail || b.n > TC_TTOK_MAX_BYTES) {
        free(b.p);
        return tc_err(err, "%s: the vocabulary is too large to embed", g->path);
    }
    return add_file(t, b.p, b.n);
}

/* ---- loading ------------------------------------------------------------ */

static int load(const tc_tmodel_tok *t, const char *name, int vocab_size, struct tc_tokenizer **out,
                tc_error *err)
{
    char what[600];
    snprintf(what, sizeof what, "%s (embedded %s)", name, tc_ttok_file_name(t->kind, 0));
    const tc_ttok_file *f = t->files;
    switch (t->kind) {
    case TC_TTOK_HF:
        return tc_tokenizer_from_hf_json_mem(out, what, (const char *)f[0].data, (size_t)f[0].nbytes,
                                             t->n_files > 1 ? (const char *)f[1].data : NULL,
                                             t->n_files > 1 ? (size_t)f[1].nbytes : 0, err);
    case TC_TTOK_LLAMA2C:
        return tc_tokenizer_from_llama2c_mem(out, what, f[0].data, f[0].nbytes, vocab_size, err);
    case TC_TTOK_GGUF: {
        tc_gguf g;
        if (tc_gguf_open_mem(&g, what, f[0].data, f[0].nbytes, err))
            return TC_ERR;
        int rc = tc_tokenizer_from_gguf(out, &g, err);
        tc_gguf_close(&g);
        return rc;
    }
    default:
        *out = NULL;
        return TC_OK;
    }
}

static int load_checked(const tc_tmodel_tok *t, const char *name, int vocab_size, struct tc_tokenizer **out,
                        tc_error *err)
{
    *out = NULL;
    if (load(t, name, vocab_size, out, err))
        return TC_ERR;
    if (*out && tc_tokenizer_vocab_size(*out) > vocab_size) {
        int32_t nv = tc_tokenizer_vocab_size(*out);
        tc_tokenizer_free(*out);
        *out = NULL;
        return tc_err(err, "%s: the embedded tokenizer has %d tokens but the model only %d", name, nv, vocab_size);
    }
    return TC_OK;
}

int tc_tmodel_tokenizer(const tc_tmodel *m, struct tc_tokenizer **out, tc_error *err)
{
    return load_checked(&m->tok, m->path ? m->path : "packed model", m->cfg.vocab_size, out, err);
}

int tc_tmodel_tokenizer_open(const tc_tmodel *m, const char *path, struct tc_tokenizer **out, tc_error *err)
{
    *out = NULL;
    const char *name = m->path ? m->path : "packed model";
    if (!path) {
        if (tc_tmodel_tokenizer(m, out, err))
            return TC_ERR;
        return *out ? TC_OK
                    : tc_err(err, "%s carries no tokenizer (written from a checkpoint without one, or by an "
                             "older tc); pass --tokenizer FILE", name);
    }
    if (tc_tokenizer_open_for(path, m->cfg.vocab_size, out, err))
        return TC_ERR;
    int32_t nv = tc_tokenizer_vocab_size(*out);
    if (nv > m->cfg.vocab_size) {
        tc_tokenizer_free(*out);
        *out = NULL;
        return tc_err(err, "%s: the tokenizer has %d tokens but %s only %d", path, nv, name, m->cfg.vocab_size);
    }
    return TC_OK;
}

int tc_tmodel_tok_collect(tc_tmodel_tok *out, const tc_model *m, const char *path, tc_error *err)
{
    memset(out, 0, sizeof *out);
    const char *origin = NULL;
    char json[4096];
    int rc = TC_OK;
    if (path) {
        size_t n = strlen(path);
        origin = path;
        if (n >= 5 && strcmp(path + n - 5, ".json") == 0) {
            rc = collect_hf(out, path, err);
        } else if (tc_file_has_magic(path, "GGUF", 4)) {
            tc_gguf g;
            rc = tc_gguf_open(&g, path, err);
            if (rc == TC_OK) {
                rc = tc_gguf_find(&g, "tokenizer.ggml.model") ? collect_gguf(out, &g, err)
                                                               : tc_err(err, "%s: the GGUF file has no vocabulary",
                                                                        path);
                tc_gguf_close(&g);
            }
        } else {
            out->kind = TC_TTOK_LLAMA2C;
            rc = add_read(out, path, TC_TTOK_MAX_BYTES, err);
        }
    } else if (m->format == TC_FORMAT_GGUF && tc_gguf_find(tc_model_gguf(m), "tokenizer.ggml.model")) {
        origin = m->path;
        rc = collect_gguf(out, tc_model_gguf(m), err);
    } else if (m->format == TC_FORMAT_HF) {
        snprintf(json, sizeof json, "%s/tokenizer.json", tc_model_hfdir(m)->path);
        if (tc_file_is_regular(json)) {
            origin = json;
            rc = collect_hf(out, json, err);
        }
    }
    if (rc == TC_OK && origin && !(out->origin = strdup(origin)))
        rc = tc_err(err, "out of memory");
    /* What is embedded must be a tokenizer tc reads, fitting the model. */
    struct tc_tokenizer *tok = NULL;
    if (rc == TC_OK && out->kind != TC_TTOK_NONE)
        rc = load_checked(out, origin, m->cfg.vocab_size, &tok, err);
    tc_tokenizer_free(tok);
    if (rc != TC_OK)
        tc_tmodel_tok_free(out);
    return rc;
}
