/* llama2.c tokenizer.bin: int32 max_token_length, then per token a float
 * score, an int32 length and the bytes.  The vocabulary size is not stored:
 * the checkpoint gives it, or the tokens run to the end of the file.
 * llama2.c's export writes SentencePiece's U+2581 as a plain space, keeps
 * byte tokens as "<0xNN>" and fixes <unk>, BOS, EOS at ids 0, 1, 2. */
#include "tok_internal.h"

#include <string.h>

#include "tc/cursor.h"
#include "tc/mapfile.h"

/* Reads one token record; the text points into the file. */
static int read_token(tc_cursor *c, int32_t i, float *score, const uint8_t **text, uint32_t *len,
                      tc_error *err)
{
    int32_t n;
    if (tc_cursor_f32(c, score, "token score", err) || tc_cursor_i32(c, &n, "token length", err))
        return TC_ERR;
    if (n < 0 || (uint64_t)n > tc_cursor_left(c))
        return tc_err(err, "%s: token %ld has length %ld but only %llu bytes remain at offset %llu",
                      c->name, (long)i, (long)n, (unsigned long long)tc_cursor_left(c),
                      (unsigned long long)c->pos);
    *len = (uint32_t)n;
    return tc_cursor_bytes(c, (uint64_t)n, text, "token text", err);
}

static int count_tokens(tc_cursor c, int32_t *n, tc_error *err)
{
    int32_t count = 0;
    while (tc_cursor_left(&c) > 0) {
        float score;
        const uint8_t *text;
        uint32_t len;
        if (count == INT32_MAX)
            return tc_err(err, "%s: too many tokens", c.name);
        if (read_token(&c, count, &score, &text, &len, err))
            return TC_ERR;
        count++;
    }
    *n = count;
    return TC_OK;
}

static int token_type(int32_t id, const uint8_t *s, uint32_t n)
{
    if (id == 0 && n == 5 && memcmp(s, "<unk>", 5) == 0)
        return TOK_UNKNOWN;
    if (id == 1 || id == 2)
        return TOK_CONTROL;
    if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>')
        return TOK_BYTE;
    return TOK_NORMAL;
}

static int uses_space_symbol(const tc_tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_piece *p = &t->text[id];
        for (uint32_t i = 0; i + 3 <= p->len; i++)
            if (memcmp(t->arena + p->off + i, "\xe2\x96\x81", 3) == 0)
                return 1;
    }
    return 0;
}

int tok_load_llama2c_mem(tc_tokenizer **out, const char *path, const uint8_t *data, uint64_t size,
                         int vocab_size, tc_error *err)
{
    *out = NULL;
    tc_cursor c;
    tc_cursor_init(&c, data, size, path);
    int32_t max_len;
    if (tc_cursor_i32(&c, &max_len, "max_token_length", err))
        return TC_ERR;
    if (max_len <= 0)
        return tc_err(err, "%s: not a llama2.c tokenizer: max_token_length is %ld", path,
                      (long)max_len);
    int32_t n = vocab_size;
    if (n <= 0 && count_tokens(c, &n, err))
        return TC_ERR;
    if ((uint64_t)n > tc_cursor_left(&c) / 8)
        return tc_err(err, "%s: %ld tokens cannot fit in the %llu bytes after the header", path,
                      (long)n, (unsigned long long)tc_cursor_left(&c));
    tc_tokenizer *t = tok_new(path, TOK_FAMILY_SPM, n, err);
    if (!t)
        return TC_ERR;
    for (int32_t i = 0; i < n; i++) {
        float score;
        const uint8_t *text;
        uint32_t len;
        if (read_token(&c, i, &score, &text, &len, err) ||
            tok_set(t, i, (const char *)text, len, score, token_type(i, text, len), err)) {
            tc_tokenizer_free(t);
            return TC_ERR;
        }
    }
    if (!uses_space_symbol(t)) {
        t->space[0] = ' ';
        t->space_len = 1;
    }
    t->unk = t->type[0] == TOK_UNKNOWN ? 0 : -1;
    t->bos = n > 1 ? 1 : -1;
    t->eos = n > 2 ? 2 : -1;
    t->fuse_unk = 1;
    t->default_flags = TC_TOK_BOS;
    if (tok_finish(t, err)) {
        tc_tokenizer_free(t);
        return TC_ERR;
    }
    *out = t;
    return TC_OK;
}

int tc_tokenizer_from_llama2c(tc_tokenizer **t, const char *path, int vocab_size, tc_error *err)
{
    *t = NULL;
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    int rc = tok_load_llama2c_mem(t, path, m.data, m.size, vocab_size, err);
    tc_mapfile_close(&m);
    return rc;
}

int tc_tokenizer_from_llama2c_mem(tc_tokenizer **t, const char *name, const uint8_t *data, uint64_t size,
                                  int vocab_size, tc_error *err)
{
    return tok_load_llama2c_mem(t, name, data, size, vocab_size, err);
}
