/* The byte-level pre-tokenizer: each regular expression in turn splits every
 * piece into its matches and the text between them (Hugging Face's Split
 * with behaviour "Isolated", llama.cpp's regex list), through PCRE2 with
 * Unicode properties. */
#include "tok_internal.h"

#include <string.h>

static int span_push(tok_work *w, int k, size_t start, size_t len)
{
    if (tok_grow((void **)&w->span[k], &w->span_cap[k], w->span_len[k] + 2, sizeof(size_t)))
        return TC_ERR;
    w->span[k][w->span_len[k]++] = start;
    w->span[k][w->span_len[k]++] = len;
    return TC_OK;
}

/* Splits the piece s[a, a+len) by re into list k. */
static int split_piece(const tc_tokenizer *t, tok_work *w, const pcre2_code *re, const char *s,
                       size_t a, size_t len, int k, tc_error *err)
{
    PCRE2_SPTR subject = (PCRE2_SPTR)(s + a);
    size_t off = 0, gap = 0;
    uint32_t opts = 0; /* the first call checks the piece is UTF-8; the rest need not */
    while (off < len) {
        int rc = pcre2_match(re, subject, len, off, opts, w->md, NULL);
        opts = PCRE2_NO_UTF_CHECK;
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
                return tc_err(err, "%s: the text is not valid UTF-8 (near byte %lu)", t->source,
                              (unsigned long)(a + pcre2_get_startchar(w->md)));
            return tc_err(err, "%s: pre-tokenizer regex failed with PCRE2 error %d", t->source,
                          rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match splits nothing: step over one character */
            off = ms + 1;
            while (off < len && (subject[off] & 0xc0) == 0x80)
                off++;
            continue;
        }
        if (ms > gap && span_push(w, k, a + gap, ms - gap))
            return tc_err(err, "%s: out of memory", t->source);
        if (span_push(w, k, a + ms, me - ms))
            return tc_err(err, "%s: out of memory", t->source);
        off = gap = me;
    }
    if (gap < len && span_push(w, k, a + gap, len - gap))
        return tc_err(err, "%s: out of memory", t->source);
    return TC_OK;
}

int tok_pretokenize(const tc_tokenizer *t, tok_work *w, const char *s, size_t n,
                    int (*fn)(const tc_tokenizer *, tok_work *, const char *, size_t, tc_error *),
                    tc_error *err)
{
    if (t->n_regex == 0)
        return fn(t, w, s, n, err);
    if (!w->md && !(w->md = pcre2_match_data_create(1, NULL)))
        return tc_err(err, "%s: out of memory", t->source);
    int cur = 0;
    w->span_len[0] = 0;
    if (span_push(w, 0, 0, n))
        return tc_err(err, "%s: out of memory", t->source);
    for (int r = 0; r < t->n_regex; r++) {
        int next = !cur;
        w->span_len[next] = 0;
        for (size_t i = 0; i < w->span_len[cur]; i += 2)
            if (split_piece(t, w, t->regex[r], s, w->span[cur][i], w->span[cur][i + 1], next, err))
                return TC_ERR;
        cur = next;
    }
    for (size_t i = 0; i < w->span_len[cur]; i += 2)
        if (fn(t, w, s + w->span[cur][i], w->span[cur][i + 1], err))
            return TC_ERR;
    return TC_OK;
}
