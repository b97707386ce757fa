/* The tokenizer's vocabulary, the builder the loaders fill it through, and
 * the public encode/decode entry points. */
#include "tok_internal.h"
#include "tok_nfc.h"

#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/mapfile.h"

/* ---- hashing ---------------------------------------------------------- */

uint64_t tok_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return h;
}

static int strmap_init(tok_strmap *m, size_t n_items)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n_items + 16)
        cap <<= 1;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return TC_ERR;
    memset(m->slots, 0xff, cap * sizeof *m->slots);
    m->mask = cap - 1;
    return TC_OK;
}

static int piece_eq(const tc_tokenizer *t, const tok_piece *p, const char *s, size_t n)
{
    return p->len == n && memcmp(t->arena + p->off, s, n) == 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const tc_tokenizer *t, const tok_piece *pieces,
                       const char *s, size_t n)
{
    if (!m->slots)
        return -1;
    for (uint64_t i = tok_hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slots[i];
        if (id < 0)
            return -1;
        if (piece_eq(t, &pieces[id], s, n))
            return id;
    }
}

/* Later duplicates replace earlier ones, as llama.cpp's map does. */
static void strmap_put(tok_strmap *m, const tc_tokenizer *t, const tok_piece *pieces, int32_t id)
{
    const char *s = t->arena + pieces[id].off;
    size_t n = pieces[id].len;
    for (uint64_t i = tok_hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t cur = m->slots[i];
        if (cur < 0 || piece_eq(t, &pieces[cur], s, n)) {
            m->slots[i] = id;
            return;
        }
    }
}

/* ---- byte-level alphabet ---------------------------------------------
 * GPT-2 writes every byte as one printable character: printable Latin-1
 * bytes as themselves, the other 68 bytes as U+0100 onwards in order. */

static int bytelevel_is_self(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* Code point -> byte for the 324 code points the alphabet uses; -1 else. */
static int bytelevel_byte_of(uint32_t cp)
{
    if (cp < 256)
        return bytelevel_is_self(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    unsigned k = cp - 256;
    for (unsigned b = 0; b < 256; b++) {
        if (bytelevel_is_self(b))
            continue;
        if (k-- == 0)
            return (int)b;
    }
    return -1;
}

/* Decodes one UTF-8 sequence; returns its length (0 when invalid). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n || c >= 0xf8)
        return 0;
    uint32_t v = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    *cp = v;
    return len;
}

long tok_bytelevel_unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = k ? bytelevel_byte_of(cp) : -1;
        if (b < 0)
            return -1;
        out[o++] = (char)b;
        i += k;
    }
    return (long)o;
}

/* ---- builder -------------------------------------------------------- */

tc_tokenizer *tok_new(const char *source, int family, int32_t n_vocab, tc_error *err)
{
    if (n_vocab <= 0) {
        tc_err(err, "%s: empty vocabulary", source);
        return NULL;
    }
    tc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tc_err(err, "%s: out of memory", source);
        return NULL;
    }
    size_t n = (size_t)n_vocab;
    t->source = strdup(source);
    t->text = calloc(n, sizeof *t->text);
    t->key = calloc(n, sizeof *t->key);
    t->dec = calloc(n, sizeof *t->dec);
    t->score = calloc(n, sizeof *t->score);
    t->type = calloc(n, sizeof *t->type);
    if (!t->source || !t->text || !t->key || !t->dec || !t->score || !t->type) {
        tc_tokenizer_free(t);
        tc_err(err, "%s: out of memory for %ld tokens", source, (long)n_vocab);
        return NULL;
    }
    t->family = family;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->unk = -1;
    memcpy(t->space, "\xe2\x96\x81", 3);
    t->space_len = 3;
    t->prefix = family == TOK_FAMILY_SPM ? TOK_PREFIX_ALWAYS : TOK_PREFIX_NONE;
    t->strip_decoded_space = family == TOK_FAMILY_SPM;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    return t;
}

static int arena_append(tc_tokenizer *t, const char *s, size_t n, tok_piece *p)
{
    if (n > UINT32_MAX || t->arena_len + n > UINT32_MAX)
        return TC_ERR;
    if (t->arena_len + n > t->arena_cap || !t->arena) { /* never NULL: pieces point into it */
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return TC_ERR;
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n)
        memcpy(t->arena + t->arena_len, s, n);
    p->off = (uint32_t)t->arena_len;
    p->len = (uint32_t)n;
    t->arena_len += n;
    return TC_OK;
}

int tok_set(tc_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type,
            tc_error *err)
{
    if (id < 0 || id >= t->n_vocab)
        return tc_err(err, "%s: token id %ld out of range (vocabulary of %ld)", t->source,
                      (long)id, (long)t->n_vocab);
    if (type < TOK_NORMAL || type > TOK_BYTE)
        return tc_err(err, "%s: token %ld has unknown type %d", t->source, (long)id, type);
    if (arena_append(t, text, len, &t->text[id]))
        return tc_err(err, "%s: out of memory storing token %ld", t->source, (long)id);
    t->score[id] = score;
    t->type[id] = (uint8_t)type;
    return TC_OK;
}

/* "<0xNN>" -> NN, or -1. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The text an SPM piece decodes to: the space symbol becomes ' '. */
static int spm_decoded(tc_tokenizer *t, int32_t id, tok_piece *out)
{
    const tok_piece p = t->text[id];
    size_t start = t->arena_len;
    tok_piece tmp;
    for (size_t i = 0; i < p.len;) {
        const char *s = t->arena + p.off + i;
        if (p.len - i >= t->space_len && memcmp(s, t->space, t->space_len) == 0) {
            if (arena_append(t, " ", 1, &tmp))
                return TC_ERR;
            i += t->space_len;
        } else {
            /* s may move when the arena grows: copy the byte first */
            char c = *s;
            if (arena_append(t, &c, 1, &tmp))
                return TC_ERR;
            i++;
        }
    }
    out->off = (uint32_t)start;
    out->len = (uint32_t)(t->arena_len - start);
    return TC_OK;
}

static const char unk_surface[] = " \xe2\x81\x87 "; /* SentencePiece's " ⁇ " */

static int set_keys_and_pieces(tc_tokenizer *t, int32_t id)
{
    tok_piece p = t->text[id];
    int type = t->type[id];
    t->key[id] = p;
    if (type == TOK_CONTROL || type == 0) {
        t->dec[id].off = 0;
        t->dec[id].len = 0;
        return TC_OK;
    }
    if (type == TOK_UNKNOWN && t->family == TOK_FAMILY_SPM)
        return arena_append(t, unk_surface, sizeof unk_surface - 1, &t->dec[id]);
    if (t->family == TOK_FAMILY_SPM) {
        int b = type == TOK_BYTE ? byte_token_value(t->arena + p.off, p.len) : -1;
        if (b >= 0) {
            char c = (char)b;
            return arena_append(t, &c, 1, &t->dec[id]);
        }
        return spm_decoded(t, id, &t->dec[id]);
    }
    if (type == TOK_NORMAL || type == TOK_UNUSED || type == TOK_BYTE) {
        char *tmp = malloc(p.len ? p.len : 1);
        if (!tmp)
            return TC_ERR;
        long k = tok_bytelevel_unescape(t->arena + p.off, p.len, tmp);
        int rc = TC_OK;
        if (k >= 0) {
            rc = arena_append(t, tmp, (size_t)k, &t->key[id]);
            t->dec[id] = t->key[id];
        } else {
            t->dec[id] = p; /* not in the alphabet: kept as written */
        }
        free(tmp);
        return rc;
    }
    t->dec[id] = p;
    return TC_OK;
}

/* Which tokens merges may form and plain text may start as. */
static int is_mergeable(const tc_tokenizer *t, int32_t id)
{
    int type = t->type[id];
    if (t->family == TOK_FAMILY_SPM)
        return type == TOK_NORMAL || type == TOK_USER || type == TOK_UNUSED;
    return type == TOK_NORMAL || type == TOK_UNUSED || type == TOK_BYTE;
}

static int is_special_type(int type)
{
    return type == TOK_CONTROL || type == TOK_USER || type == TOK_UNKNOWN;
}

typedef struct special_ent {
    uint64_t key; /* first byte, then longer texts first, then lower ids */
    int32_t id;
} special_ent;

static int special_ent_cmp(const void *a, const void *b)
{
    uint64_t x = ((const special_ent *)a)->key, y = ((const special_ent *)b)->key;
    return x < y ? -1 : x > y;
}

/* Special and user-defined tokens grouped by first byte, longest first
 * within a group, so that the longest text wins at a position and a byte no
 * special text starts with costs one lookup. */
static int collect_specials(tc_tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        n += is_special_type(t->type[id]) && t->text[id].len;
    special_ent *e = malloc((n ? n : 1) * sizeof *e);
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    if (!e || !t->special) {
        free(e);
        return TC_ERR;
    }
    size_t k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_piece *p = &t->text[id];
        if (!is_special_type(t->type[id]) || !p->len)
            continue;
        uint64_t first = (unsigned char)t->arena[p->off];
        e[k].key = first << 56 | (uint64_t)(UINT32_MAX - p->len) << 24 | (uint64_t)k;
        e[k++].id = id;
        t->n_user += t->type[id] == TOK_USER;
    }
    qsort(e, n, sizeof *e, special_ent_cmp);
    for (int b = 0; b <= 256; b++)
        t->special_first[b] = (int32_t)n;
    for (size_t i = n; i-- > 0;) {
        t->special[i] = e[i].id;
        t->special_first[e[i].key >> 56] = (int32_t)i;
    }
    for (int b = 255; b >= 0; b--)
        if (t->special_first[b] > t->special_first[b + 1])
            t->special_first[b] = t->special_first[b + 1];
    t->n_special = (int)n;
    free(e);
    return TC_OK;
}

/* True when every token that merges may form has space symbols only in a
 * leading run: then no merge can join text to a following space symbol. */
static int words_separable(const tc_tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_mergeable(t, id))
            continue;
        const char *s = t->arena + t->key[id].off;
        size_t n = t->key[id].len, i = 0;
        while (n - i >= t->space_len && memcmp(s + i, t->space, t->space_len) == 0)
            i += t->space_len;
        for (; i + t->space_len <= n; i++)
            if (memcmp(s + i, t->space, t->space_len) == 0)
                return 0;
    }
    return 1;
}

int tok_finish(tc_tokenizer *t, tc_error *err)
{
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (set_keys_and_pieces(t, id))
            return tc_err(err, "%s: out of memory", t->source);
    if (strmap_init(&t->vocab, (size_t)t->n_vocab))
        return tc_err(err, "%s: out of memory", t->source);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_mergeable(t, id) || t->key[id].len == 0)
            continue;
        strmap_put(&t->vocab, t, t->key, id);
        if (t->family == TOK_FAMILY_BYTELEVEL && t->key[id].len == 1)
            t->byte_id[(unsigned char)t->arena[t->key[id].off]] = id;
    }
    if (t->family == TOK_FAMILY_SPM) {
        for (int32_t id = 0; id < t->n_vocab; id++) {
            int b = t->type[id] == TOK_BYTE
                        ? byte_token_value(t->arena + t->text[id].off, t->text[id].len)
                        : -1;
            if (b >= 0 && t->byte_id[b] < 0)
                t->byte_id[b] = id;
        }
    }
    if (collect_specials(t))
        return tc_err(err, "%s: out of memory", t->source);
    t->words_separable = t->family == TOK_FAMILY_SPM && words_separable(t);
    for (int i = 0; i < 3; i++) {
        int32_t *p = i == 0 ? &t->bos : i == 1 ? &t->eos : &t->unk;
        if (*p >= t->n_vocab)
            return tc_err(err, "%s: %s token id %ld out of range (vocabulary of %ld)", t->source,
                          i == 0 ? "BOS" : i == 1 ? "EOS" : "unknown", (long)*p,
                          (long)t->n_vocab);
    }
    return TC_OK;
}

int tok_add_regex(tc_tokenizer *t, const char *pattern, tc_error *err)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return tc_err(err, "%s: pre-tokenizer regex does not compile at offset %lu: %s",
                      t->source, (unsigned long)at, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter remains */
    pcre2_code **r = realloc(t->regex, (size_t)(t->n_regex + 1) * sizeof *r);
    if (!r) {
        pcre2_code_free(re);
        return tc_err(err, "%s: out of memory", t->source);
    }
    t->regex = r;
    t->regex[t->n_regex++] = re;
    return TC_OK;
}

/* ---- merges ---------------------------------------------------------- */

int tok_merges_begin(tc_tokenizer *t, size_t n, tc_error *err)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16)
        cap <<= 1;
    tok_pairmap *m = &t->merges;
    m->keys = malloc(cap * sizeof *m->keys);
    m->rank = malloc(cap * sizeof *m->rank);
    m->result = malloc(cap * sizeof *m->result);
    if (!m->keys || !m->rank || !m->result)
        return tc_err(err, "%s: out of memory for %lu merges", t->source, (unsigned long)n);
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1;
    t->use_ranks = 1;
    return TC_OK;
}

static uint64_t pair_key(int32_t l, int32_t r)
{
    return (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
}

static uint64_t pair_hash(uint64_t k)
{
    k *= 0x9e3779b97f4a7c15ull;
    return k ^ (k >> 31);
}

int tok_pair_get(const tc_tokenizer *t, int32_t l, int32_t r, int32_t *rank, int32_t *result)
{
    const tok_pairmap *m = &t->merges;
    if (!m->keys)
        return 0;
    uint64_t k = pair_key(l, r);
    for (uint64_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == UINT64_MAX)
            return 0;
        if (m->keys[i] == k) {
            *rank = m->rank[i];
            *result = m->result[i];
            return 1;
        }
    }
}

/* A merge part as the vocabulary's key: byte-level texts are unescaped. */
static int32_t merge_part_id(const tc_tokenizer *t, const char *s, size_t n, char *tmp)
{
    if (t->family != TOK_FAMILY_BYTELEVEL)
        return tok_strmap_get(&t->vocab, t, t->key, s, n);
    long k = tok_bytelevel_unescape(s, n, tmp);
    return k < 0 ? -1 : tok_strmap_get(&t->vocab, t, t->key, tmp, (size_t)k);
}

int tok_merge_add(tc_tokenizer *t, const char *left, size_t llen, const char *right, size_t rlen,
                  int32_t rank, tc_error *err)
{
    char *tmp = malloc(llen + rlen + 1);
    if (!tmp)
        return tc_err(err, "%s: out of memory", t->source);
    int32_t l = merge_part_id(t, left, llen, tmp);
    int32_t r = merge_part_id(t, right, rlen, tmp);
    free(tmp);
    if (l < 0 || r < 0) {
        const char *s = l < 0 ? left : right;
        size_t n = l < 0 ? llen : rlen;
        return tc_err(err, "%s: merge %ld names \"%.*s\", which is not in the vocabulary",
                      t->source, (long)rank, (int)(n > 64 ? 64 : n), s);
    }
    /* the merged text must itself be a token, or the merge can never apply */
    size_t a = t->key[l].len, b = t->key[r].len;
    char *cat = malloc(a + b + 1);
    if (!cat)
        return tc_err(err, "%s: out of memory", t->source);
    memcpy(cat, t->arena + t->key[l].off, a);
    memcpy(cat + a, t->arena + t->key[r].off, b);
    int32_t res = tok_strmap_get(&t->vocab, t, t->key, cat, a + b);
    free(cat);
    if (res < 0)
        return TC_OK;
    tok_pairmap *m = &t->merges;
    uint64_t k = pair_key(l, r);
    for (uint64_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == k)
            return TC_OK; /* the first listing of a pair keeps its rank */
        if (m->keys[i] == UINT64_MAX) {
            m->keys[i] = k;
            m->rank[i] = rank;
            m->result[i] = res;
            return TC_OK;
        }
    }
}

int32_t tok_find_text(const tc_tokenizer *t, const char *s, size_t len)
{
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (piece_eq(t, &t->text[id], s, len))
            return id;
    return -1;
}

/* ---- encoding ---------------------------------------------------------- */

void tok_work_free(tok_work *w)
{
    if (!w)
        return;
    free(w->sym);
    free(w->heap);
    free(w->out);
    free(w->span[0]);
    free(w->span[1]);
    free(w->buf);
    free(w->cps);
    pcre2_match_data_free(w->md);
    free(w);
}

int tok_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return TC_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return TC_ERR;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q)
        return TC_ERR;
    *p = q;
    *cap = c;
    return TC_OK;
}

int tok_out_push(tok_work *w, int32_t id)
{
    if (tok_grow((void **)&w->out, &w->out_cap, w->out_len + 1, sizeof *w->out))
        return TC_ERR;
    w->out[w->out_len++] = id;
    w->prev_unk = 0;
    return TC_OK;
}

/* The special token whose text starts s (longest first), or -1. */
static int32_t special_at(const tc_tokenizer *t, const char *s, size_t n, unsigned flags)
{
    unsigned b = (unsigned char)s[0];
    for (int32_t i = t->special_first[b]; i < t->special_first[b + 1]; i++) {
        int32_t id = t->special[i];
        const tok_piece *p = &t->text[id];
        if (p->len > n || (unsigned char)t->arena[p->off] != (unsigned char)s[0])
            continue;
        if (t->type[id] != TOK_USER && !(flags & TC_TOK_PARSE_SPECIAL))
            continue;
        if (memcmp(t->arena + p->off, s, p->len) == 0)
            return id;
    }
    return -1;
}

/* Writes the SPM form of a run of text into w->buf: the dummy prefix, then
 * every space as the space symbol. */
static int spm_escape(const tc_tokenizer *t, tok_work *w, const char *s, size_t n, int prefixed,
                      size_t *out_len)
{
    int prefix = prefixed && (t->prefix == TOK_PREFIX_ALWAYS ||
                              (t->prefix == TOK_PREFIX_UNLESS_SPACE && s[0] != ' '));
    uint64_t need;
    if (tc_mul_u64(n + 1, t->space_len, &need))
        return TC_ERR;
    if (tok_grow((void **)&w->buf, &w->buf_cap, (size_t)need, 1))
        return TC_ERR;
    size_t o = 0;
    if (prefix) {
        memcpy(w->buf, t->space, t->space_len);
        o = t->space_len;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w->buf + o, t->space, t->space_len);
            o += t->space_len;
        } else {
            w->buf[o++] = s[i];
        }
    }
    *out_len = o;
    return TC_OK;
}

static int is_space_at(const tc_tokenizer *t, const char *s, size_t n, size_t i)
{
    return n - i >= t->space_len && memcmp(s + i, t->space, t->space_len) == 0;
}

/* Where a word may end: before every space symbol (HF Metaspace split), or,
 * when no token has a space symbol after other text (see words_separable),
 * before a space symbol that follows other text: no merge can cross there,
 * so merging words one by one gives the same tokens as merging the whole
 * run, and keeps the heap small. */
static int word_ends_at(const tc_tokenizer *t, const char *s, size_t n, size_t i)
{
    if (!is_space_at(t, s, n, i))
        return 0;
    if (t->split_on_space)
        return 1;
    return t->words_separable && i >= t->space_len && !is_space_at(t, s, n, i - t->space_len);
}

static int encode_spm_run(const tc_tokenizer *t, tok_work *w, const char *s, size_t n,
                          size_t offset, int prefixed, tc_error *err)
{
    size_t m;
    if (spm_escape(t, w, s, n, prefixed, &m))
        return tc_err(err, "%s: out of memory encoding %lu bytes", t->source, (unsigned long)n);
    if (!t->split_on_space && !t->words_separable)
        return tok_spm_word(t, w, w->buf, m, offset, err);
    size_t start = 0;
    for (size_t i = 1; i <= m; i++) {
        if (i == m || word_ends_at(t, w->buf, m, i)) {
            if (tok_spm_word(t, w, w->buf + start, i - start, offset, err))
                return TC_ERR;
            start = i;
        }
    }
    return TC_OK;
}

/* Encodes a run of plain text.  Every run starts the input or follows a
 * special token, and each gets the dummy prefix there, as llama.cpp and the
 * Prepend normalizer do (Metaspace "first": only the run at offset 0). */
static int encode_run(const tc_tokenizer *t, tok_work *w, const char *s, size_t n, size_t offset,
                      tc_error *err)
{
    if (n == 0)
        return TC_OK;
    if (t->family == TOK_FAMILY_SPM)
        return encode_spm_run(t, w, s, n, offset, !t->prefix_first_only || offset == 0, err);
    if (!t->nfc)
        return tok_pretokenize(t, w, s, n, tok_bytelevel_word, err);
    size_t m;
    long rc = tok_nfc(s, n, &w->buf, &w->buf_cap, &m, &w->cps, &w->cps_cap);
    if (rc < 0)
        return tc_err(err, "%s: out of memory normalizing %lu bytes", t->source, (unsigned long)n);
    if (rc > 0)
        return tc_err(err, "%s: the text is not valid UTF-8 (near byte %lu)", t->source,
                      (unsigned long)(offset + (size_t)rc - 1));
    return tok_pretokenize(t, w, w->buf, m, tok_bytelevel_word, err);
}

int tc_tokenizer_encode(const tc_tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t **ids, size_t *n_ids, tc_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    tc_err_clear(err); /* so that a failure below without a message reads as out of memory */
    if ((flags & TC_TOK_BOS) && t->bos < 0)
        return tc_err(err, "%s: BOS requested but the vocabulary has no BOS token", t->source);
    if ((flags & TC_TOK_EOS) && t->eos < 0)
        return tc_err(err, "%s: EOS requested but the vocabulary has no EOS token", t->source);
    if (len && !text)
        return tc_err(err, "%s: no text to encode", t->source);
    tok_work *w = calloc(1, sizeof *w);
    if (!w)
        return tc_err(err, "%s: out of memory", t->source);
    int rc = TC_OK;
    if (flags & TC_TOK_BOS)
        rc = tok_out_push(w, t->bos);
    size_t run = 0;
    int scan = t->n_user > 0 || (t->n_special > 0 && (flags & TC_TOK_PARSE_SPECIAL));
    for (size_t i = 0; i < len && rc == TC_OK;) {
        int32_t sp = scan ? special_at(t, text + i, len - i, flags) : -1;
        if (sp < 0) {
            i++;
            continue;
        }
        rc = encode_run(t, w, text + run, i - run, run, err);
        if (rc == TC_OK)
            rc = tok_out_push(w, sp);
        i += t->text[sp].len;
        run = i;
    }
    if (rc == TC_OK)
        rc = encode_run(t, w, text + run, len - run, run, err);
    if (rc == TC_OK && (flags & TC_TOK_EOS))
        rc = tok_out_push(w, t->eos);
    if (rc == TC_OK) {
        *ids = w->out ? w->out : malloc(sizeof **ids);
        *n_ids = w->out_len;
        w->out = NULL;
        if (!*ids)
            rc = TC_ERR;
    }
    if (rc != TC_OK && err && !err->msg[0])
        tc_err(err, "%s: out of memory while encoding", t->source);
    tok_work_free(w);
    return rc;
}

/* ---- decoding ---------------------------------------------------------- */

static int check_id(const tc_tokenizer *t, int32_t id, tc_error *err)
{
    if (id < 0 || id >= t->n_vocab)
        return tc_err(err, "%s: token id %ld out of range (vocabulary of %ld)", t->source,
                      (long)id, (long)t->n_vocab);
    return TC_OK;
}

int tc_tokenizer_piece(const tc_tokenizer *t, int32_t prev, int32_t id, const char **piece,
                       size_t *len, tc_error *err)
{
    if (check_id(t, id, err))
        return TC_ERR;
    const tok_piece *p = &t->dec[id];
    const char *s = t->arena + p->off;
    size_t n = p->len;
    if (t->strip_decoded_space && (prev < 0 || prev == t->bos) && n && s[0] == ' ') {
        s++;
        n--;
    }
    *piece = s;
    *len = n;
    return TC_OK;
}

int tc_tokenizer_decode(const tc_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, tc_error *err)
{
    *text = NULL;
    *len = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (check_id(t, ids[i], err))
            return TC_ERR;
        if (tc_add_u64(total, t->dec[ids[i]].len, &total))
            return tc_err(err, "%s: decoded text too long", t->source);
    }
    char *out = total < SIZE_MAX ? malloc((size_t)total + 1) : NULL;
    if (!out)
        return tc_err(err, "%s: out of memory decoding %lu tokens", t->source, (unsigned long)n);
    size_t o = 0;
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        const tok_piece *p = &t->dec[ids[i]];
        const char *s = t->arena + p->off;
        size_t k = p->len;
        /* the dummy prefix: one space at the very start of the output */
        if (first && t->strip_decoded_space && k && s[0] == ' ') {
            s++;
            k--;
        }
        first &= p->len == 0;
        memcpy(out + o, s, k);
        o += k;
    }
    out[o] = '\0';
    *text = out;
    *len = o;
    return TC_OK;
}

/* ---- getters, lifetime, detection --------------------------------------- */

int32_t tc_tokenizer_vocab_size(const tc_tokenizer *t) { return t->n_vocab; }
int32_t tc_tokenizer_bos(const tc_tokenizer *t) { return t->bos; }
int32_t tc_tokenizer_eos(const tc_tokenizer *t) { return t->eos; }
int32_t tc_tokenizer_unk(const tc_tokenizer *t) { return t->unk; }
unsigned tc_tokenizer_default_flags(const tc_tokenizer *t) { return t->default_flags; }

int tc_tokenizer_token_text(const tc_tokenizer *t, int32_t id, const char **text, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return TC_ERR;
    *text = t->arena + t->text[id].off;
    *len = t->text[id].len;
    return TC_OK;
}

int32_t tc_tokenizer_find(const tc_tokenizer *t, const char *text, size_t len)
{
    return tok_find_text(t, text, len);
}

void tc_tokenizer_free(tc_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->regex[i]);
    free(t->regex);
    free(t->vocab.slots);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.result);
    free(t->special);
    free(t->arena);
    free(t->text);
    free(t->key);
    free(t->dec);
    free(t->score);
    free(t->type);
    free(t->source);
    free(t);
}

/* A JSON object: '{', then (after white space) a key or '}'.  A
 * tokenizer.bin whose max_token_length happens to be 123 also starts with
 * '{', followed by zero bytes. */
static int looks_like_json(const uint8_t *d, uint64_t n)
{
    uint64_t i = 0;
    int seen_brace = 0;
    for (; i < n; i++) {
        uint8_t c = d[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (!seen_brace && c == '{') {
            seen_brace = 1;
            continue;
        }
        return seen_brace && (c == '"' || c == '}');
    }
    return 0;
}

int tc_tokenizer_open(tc_tokenizer **t, const char *path, tc_error *err)
{
    *t = NULL;
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    int rc;
    if (m.size >= 4 && memcmp(m.data, "GGUF", 4) == 0) {
        tc_gguf g;
        rc = tc_gguf_open(&g, path, err);
        if (rc == TC_OK) {
            rc = tc_tokenizer_from_gguf(t, &g, err);
            tc_gguf_close(&g);
        }
    } else if (looks_like_json(m.data, m.size)) {
        char *cfg;
        uint64_t cfg_len;
        tok_read_config_beside(path, &cfg, &cfg_len);
        rc = tok_load_hf_json_mem(t, path, (const char *)m.data, (size_t)m.size, cfg, (size_t)cfg_len, err);
        free(cfg);
    } else {
        rc = tok_load_llama2c_mem(t, path, m.data, m.size, 0, err);
    }
    tc_mapfile_close(&m);
    return rc;
}
