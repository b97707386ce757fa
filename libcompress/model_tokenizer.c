#include "tc/model_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/mapfile.h"

int tc_tokenizer_open_for(const char *path, int vocab_size, tc_tokenizer **out, tc_error *err)
{
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0)
        return tc_tokenizer_from_hf_json(out, path, err);
    if (tc_file_has_magic(path, "GGUF", 4))
        return tc_tokenizer_open(out, path, err);
    /* llama2.c's tokenizer.bin does not store its size: the model says it. */
    return tc_tokenizer_from_llama2c(out, path, vocab_size, err);
}

int tc_model_tokenizer(const tc_model *m, const char *path, tc_tokenizer **out, tc_error *err)
{
    *out = NULL;
    int rc;
    if (!path)
        path = m->tokenizer;
    if (path) {
        rc = tc_tokenizer_open_for(path, m->cfg.vocab_size, out, err);
    } else if (m->format == TC_FORMAT_GGUF) {
        const tc_gguf *g = tc_model_gguf(m);
        if (!tc_gguf_find(g, "tokenizer.ggml.model"))
            return tc_err(err, "%s: the GGUF file has no vocabulary; pass --tokenizer FILE", m->path);
        rc = tc_tokenizer_from_gguf(out, g, err);
    } else if (m->format == TC_FORMAT_HF) {
        const tc_hfdir *h = tc_model_hfdir(m);
        char json[4096];
        snprintf(json, sizeof json, "%s/tokenizer.json", h->path);
        if (!tc_file_is_regular(json))
            return tc_err(err, "%s: no tokenizer.json in the model directory; pass --tokenizer FILE", h->path);
        rc = tc_tokenizer_from_hf_json(out, json, err);
    } else {
        return tc_err(err, "%s: a llama2.c checkpoint carries no tokenizer; pass --tokenizer FILE "
                      "(its tokenizer.bin, e.g. tok512.bin for stories260K)", m->path);
    }
    if (rc != TC_OK)
        return TC_ERR;
    int32_t nv = tc_tokenizer_vocab_size(*out);
    if (nv > m->cfg.vocab_size) {
        tc_tokenizer_free(*out);
        *out = NULL;
        return tc_err(err, "%s: the tokenizer has %d tokens but the model only %d", path ? path : m->path, nv,
                      m->cfg.vocab_size);
    }
    return TC_OK;
}

int tc_model_set_tokenizer(tc_model *m, const char *path, tc_error *err)
{
    tc_tokenizer *t;
    if (tc_model_tokenizer(m, path, &t, err))
        return TC_ERR;
    tc_tokenizer_free(t);
    char *copy = strdup(path);
    if (!copy)
        return tc_err(err, "%s: out of memory", path);
    free(m->tokenizer);
    m->tokenizer = copy;
    return TC_OK;
}

int tc_model_vocab(const tc_model *m, tc_vocab *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    if (m->tokenizer)
        return tc_vocab_open(out, m->tokenizer, m->cfg.vocab_size, err);
    if (m->format == TC_FORMAT_GGUF && tc_gguf_find(tc_model_gguf(m), "tokenizer.ggml.model"))
        return tc_vocab_from_gguf(out, m->path, m->cfg.vocab_size, err);
    if (m->format == TC_FORMAT_GGUF || m->format == TC_FORMAT_MEMORY)
        return TC_OK; /* nothing to carry: a GGUF without vocabulary, a synthetic model */
    if (m->format == TC_FORMAT_HF) {
        const tc_hfdir *h = tc_model_hfdir(m);
        char json[4096];
        snprintf(json, sizeof json, "%s/tokenizer.json", h->path);
        if (tc_file_is_regular(json))
            return tc_vocab_from_hf(out, json, m->cfg.vocab_size, err);
        return tc_err(err, "%s: no tokenizer.json in the model directory, and llama.cpp loads no GGUF without a "
                      "vocabulary; pass --tokenizer FILE", h->path);
    }
    return tc_err(err, "%s: a llama2.c checkpoint carries no tokenizer, and llama.cpp loads no GGUF without a "
                  "vocabulary; pass --tokenizer FILE (its tokenizer.bin, e.g. tok512.bin for stories260K)", m->path);
}

int tc_model_tokenizer_encode(void *tokenizer, const char *text, size_t len, int32_t **ids, size_t *n,
                              tc_error *err)
{
    return tc_tokenizer_encode(tokenizer, text, len, 0, ids, n, err);
}
