/* The merge engine shared by both families: symbols in a linked list, the
 * candidate merges of adjacent symbols in a binary heap, so that a word of
 * n symbols costs O(n log n) rather than a rescan per merge. */
#include "tok_internal.h"

#include <stdio.h>
#include <string.h>

static int cand_less(const tok_cand *a, const tok_cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(tok_work *w, const tok_cand *c)
{
    if (tok_grow((void **)&w->heap, &w->heap_cap, w->heap_len + 1, sizeof *w->heap))
        return TC_ERR;
    size_t i = w->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(c, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = *c;
    return TC_OK;
}

static tok_cand heap_pop(tok_work *w)
{
    tok_cand top = w->heap[0];
    tok_cand last = w->heap[--w->heap_len];
    size_t n = w->heap_len, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!cand_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

/* Queues the merge of symbol left with its right neighbour, if the
 * vocabulary has one: by merge rank, or by the merged token's score. */
static int try_pair(const tc_tokenizer *t, tok_work *w, const char *s, int32_t left)
{
    if (left < 0)
        return TC_OK;
    const tok_sym *l = &w->sym[left];
    if (l->next < 0)
        return TC_OK;
    const tok_sym *r = &w->sym[l->next];
    tok_cand c;
    if (t->use_ranks) {
        int32_t rank, res;
        if (l->id < 0 || r->id < 0 || !tok_pair_get(t, l->id, r->id, &rank, &res))
            return TC_OK;
        c.key = (double)rank;
        c.id = res;
    } else {
        int32_t id = tok_strmap_get(&t->vocab, t, t->key, s + l->start, (size_t)l->len + r->len);
        if (id < 0)
            return TC_OK;
        c.key = -(double)t->score[id];
        c.id = id;
    }
    c.left = left;
    c.llen = l->len;
    c.rlen = r->len;
    return heap_push(w, &c);
}

static int merge_all(const tc_tokenizer *t, tok_work *w, const char *s, int32_t n)
{
    w->heap_len = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (try_pair(t, w, s, i))
            return TC_ERR;
    while (w->heap_len) {
        tok_cand c = heap_pop(w);
        tok_sym *l = &w->sym[c.left];
        if (l->len != c.llen || l->next < 0)
            continue;
        tok_sym *r = &w->sym[l->next];
        if (r->len != c.rlen)
            continue;
        l->len += r->len;
        l->id = c.id;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->sym[r->next].prev = c.left;
        if (try_pair(t, w, s, l->prev) || try_pair(t, w, s, c.left))
            return TC_ERR;
    }
    return TC_OK;
}

static int init_symbols(tok_work *w, size_t n)
{
    if (n > INT32_MAX)
        return TC_ERR;
    return tok_grow((void **)&w->sym, &w->sym_cap, n, sizeof *w->sym);
}

static void link_symbol(tok_work *w, int32_t i, uint32_t start, uint32_t len, int32_t id)
{
    tok_sym *y = &w->sym[i];
    y->prev = i - 1;
    y->next = i + 1;
    y->start = start;
    y->len = len;
    y->id = id;
}

/* Byte length of the UTF-8 sequence a lead byte starts (1 for stray bytes),
 * the same split SentencePiece and llama.cpp make. */
static size_t utf8_len(unsigned char c)
{
    static const unsigned char lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

static int push_unknown(const tc_tokenizer *t, tok_work *w, const char *s, uint32_t len,
                        size_t offset, tc_error *err)
{
    int have_bytes = 1;
    for (uint32_t k = 0; k < len; k++)
        have_bytes &= t->byte_id[(unsigned char)s[k]] >= 0;
    if (have_bytes) {
        for (uint32_t k = 0; k < len; k++)
            if (tok_out_push(w, t->byte_id[(unsigned char)s[k]]))
                return TC_ERR;
        return TC_OK;
    }
    if (t->unk >= 0) {
        if (t->fuse_unk && w->prev_unk)
            return TC_OK;
        if (tok_out_push(w, t->unk))
            return TC_ERR;
        w->prev_unk = 1;
        return TC_OK;
    }
    char hex[16] = "";
    for (uint32_t k = 0; k < len && k < 4; k++)
        snprintf(hex + 3 * k, sizeof hex - 3 * k, "%s%02x", k ? " " : "", (unsigned char)s[k]);
    return tc_err(err,
                  "%s: cannot encode the character (bytes %s) near byte %lu of the text: it is "
                  "not in the vocabulary, which has neither byte fallback nor an unknown token",
                  t->source, hex, (unsigned long)offset);
}

int tok_spm_word(const tc_tokenizer *t, tok_work *w, const char *s, size_t n, size_t offset,
                 tc_error *err)
{
    if (n == 0)
        return TC_OK;
    if (n > UINT32_MAX || init_symbols(w, n))
        return tc_err(err, "%s: out of memory encoding %lu bytes", t->source, (unsigned long)n);
    int32_t count = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((unsigned char)s[i]);
        if (k > n - i)
            k = n - i;
        int32_t id = tok_strmap_get(&t->vocab, t, t->key, s + i, k);
        link_symbol(w, count++, (uint32_t)i, (uint32_t)k, id);
        i += k;
    }
    w->sym[count - 1].next = -1;
    if (merge_all(t, w, s, count))
        return tc_err(err, "%s: out of memory encoding %lu bytes", t->source, (unsigned long)n);
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const tok_sym *y = &w->sym[i];
        if (y->id >= 0) {
            if (tok_out_push(w, y->id))
                return tc_err(err, "%s: out of memory", t->source);
        } else if (push_unknown(t, w, s + y->start, y->len, offset, err)) {
            if (!err || !err->msg[0])
                tc_err(err, "%s: out of memory", t->source);
            return TC_ERR;
        }
    }
    return TC_OK;
}

int tok_bytelevel_word(const tc_tokenizer *t, tok_work *w, const char *s, size_t n,
                       tc_error *err)
{
    if (n == 0)
        return TC_OK;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab, t, t->key, s, n);
        if (id >= 0)
            return tok_out_push(w, id) ? tc_err(err, "%s: out of memory", t->source) : TC_OK;
    }
    if (n > UINT32_MAX || init_symbols(w, n))
        return tc_err(err, "%s: out of memory encoding %lu bytes", t->source, (unsigned long)n);
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(unsigned char)s[i]];
        if (id < 0)
            return tc_err(err, "%s: byte 0x%02x has no token in this byte-level vocabulary",
                          t->source, (unsigned char)s[i]);
        link_symbol(w, (int32_t)i, (uint32_t)i, 1, id);
    }
    w->sym[n - 1].next = -1;
    if (merge_all(t, w, s, (int32_t)n))
        return tc_err(err, "%s: out of memory encoding %lu bytes", t->source, (unsigned long)n);
    for (int32_t i = 0; i >= 0; i = w->sym[i].next)
        if (tok_out_push(w, w->sym[i].id))
            return tc_err(err, "%s: out of memory", t->source);
    return TC_OK;
}
