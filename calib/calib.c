#include "tc/calib.h"

#define ZLIB_CONST
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tc/checked.h"
#include "tc/cursor.h"
#include "tc/mapfile.h"

/* ---------------------------------------------------------------- files */

static int is_gzip(const tc_mapfile *m)
{
    tc_cursor c;
    uint8_t a, b;
    tc_cursor_init(&c, m->data, m->size, m->path);
    return tc_cursor_u8(&c, &a, "magic", NULL) == TC_OK && tc_cursor_u8(&c, &b, "magic", NULL) == TC_OK &&
           a == 0x1f && b == 0x8b;
}

/* Grows buf so that at least need bytes fit, never beyond limit. */
static int grow_bytes(char **buf, size_t *cap, size_t need, size_t limit)
{
    if (need <= *cap)
        return TC_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n = n > limit / 2 ? limit : n * 2;
    if (n < need)
        return TC_ERR;
    char *p = realloc(*buf, n);
    if (!p)
        return TC_ERR;
    *buf = p;
    *cap = n;
    return TC_OK;
}

/* Inflates every gzip member of the mapping (concatenated members are legal
 * gzip); stops with an error past max_bytes so a small "zip bomb" cannot
 * exhaust memory.  Compressed input is fed in pieces because zlib counts in
 * 32-bit units. */
static int inflate_all(const tc_mapfile *m, uint64_t max_bytes, char **out, size_t *len, tc_error *err)
{
    const size_t out_limit = (size_t)max_bytes + 1; /* one byte more than allowed proves "too large" */
    const uInt piece_max = 1u << 30;
    tc_cursor c;
    tc_cursor_init(&c, m->data, m->size, m->path);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return tc_err(err, "%s: cannot start gzip decompression", m->path);
    char *buf = NULL;
    size_t cap = 0, used = 0;
    int rc, status = TC_OK;
    for (;;) {
        if (zs.avail_in == 0 && tc_cursor_left(&c) > 0) {
            uint64_t piece = tc_cursor_left(&c) < piece_max ? tc_cursor_left(&c) : piece_max;
            const uint8_t *p;
            tc_cursor_bytes(&c, piece, &p, "gzip data", NULL);
            zs.next_in = p;
            zs.avail_in = (uInt)piece;
        }
        if (used == cap) {
            if (cap >= out_limit)
                break;
            size_t ncap = cap < 65536 ? 65536 : (cap > out_limit / 2 ? out_limit : cap * 2);
            ncap = ncap > out_limit ? out_limit : ncap;
            char *p = realloc(buf, ncap + 1);
            if (!p) {
                status = tc_err(err, "%s: out of memory while decompressing", m->path);
                break;
            }
            buf = p;
            cap = ncap;
        }
        size_t room = cap - used > piece_max ? piece_max : cap - used;
        zs.next_out = (Bytef *)buf + used;
        zs.avail_out = (uInt)room;
        rc = inflate(&zs, Z_NO_FLUSH);
        used += room - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0 && tc_cursor_left(&c) == 0)
                break;
            /* Another member follows (trailing junk fails as a bad header). */
            inflateReset(&zs);
            continue;
        }
        if (rc == Z_BUF_ERROR && zs.avail_out > 0 && zs.avail_in == 0 && tc_cursor_left(&c) == 0) {
            status = tc_err(err, "%s: truncated gzip data (the compressed stream ends early)", m->path);
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            status = tc_err(err, "%s: corrupt gzip data: %s", m->path, zs.msg ? zs.msg : "invalid stream");
            break;
        }
    }
    inflateEnd(&zs);
    if (status == TC_OK && used > max_bytes)
        status = tc_err(err, "%s: decompresses to more than the %llu bytes allowed for calibration data",
                        m->path, (unsigned long long)max_bytes);
    if (status) {
        free(buf);
        return TC_ERR;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return TC_OK;
}

static int copy_plain(const tc_mapfile *m, uint64_t max_bytes, char **out, size_t *len, tc_error *err)
{
    if (m->size > max_bytes)
        return tc_err(err, "%s: %llu bytes is more than the %llu allowed for calibration data", m->path,
                      (unsigned long long)m->size, (unsigned long long)max_bytes);
    char *buf = malloc((size_t)m->size + 1);
    if (!buf)
        return tc_err(err, "%s: out of memory", m->path);
    tc_cursor c;
    const uint8_t *p = NULL;
    tc_cursor_init(&c, m->data, m->size, m->path);
    if (m->size && tc_cursor_bytes(&c, m->size, &p, "text", err)) {
        free(buf);
        return TC_ERR;
    }
    if (m->size)
        memcpy(buf, p, (size_t)m->size);
    buf[m->size] = '\0';
    *out = buf;
    *len = (size_t)m->size;
    return TC_OK;
}

int tc_calib_read_file(const char *path, uint64_t max_bytes, char **out, size_t *len, tc_error *err)
{
    *out = NULL;
    *len = 0;
    if (max_bytes > SIZE_MAX - 2)
        max_bytes = SIZE_MAX - 2;
    tc_mapfile m;
    if (tc_mapfile_open(&m, path, err))
        return TC_ERR;
    int rc = is_gzip(&m) ? inflate_all(&m, max_bytes, out, len, err) : copy_plain(&m, max_bytes, out, len, err);
    tc_mapfile_close(&m);
    return rc;
}

/* ---------------------------------------------------------------- lines */

typedef struct line_reader {
    tc_cursor c;
    size_t number; /* 1-based number of the line last returned */
} line_reader;

/* Starts reading lines of buf, skipping a UTF-8 byte-order mark. */
static void line_reader_init(line_reader *r, const char *buf, size_t n, const char *path)
{
    r->number = 0;
    tc_cursor_init(&r->c, buf, n, path);
    if (n >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        tc_cursor_skip(&r->c, 3, "byte-order mark", NULL);
}

/* The next line without its "\n" (and without a CR before it); 0 at the end. */
static int next_line(line_reader *r, const uint8_t **line, size_t *len)
{
    uint64_t left = tc_cursor_left(&r->c);
    if (left == 0)
        return 0;
    tc_cursor peek = r->c;
    const uint8_t *rest;
    tc_cursor_bytes(&peek, left, &rest, "line", NULL);
    const uint8_t *nl = memchr(rest, '\n', (size_t)left);
    size_t n = nl ? (size_t)(nl - rest) + 1 : (size_t)left;
    tc_cursor_bytes(&r->c, n, line, "line", NULL);
    if (nl)
        n--;
    if (n > 0 && (*line)[n - 1] == '\r')
        n--;
    *len = n;
    r->number++;
    return 1;
}

static int is_blank(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* Length of the longest valid UTF-8 prefix without NUL (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid_prefix(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint32_t cp, min;
        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += k + 1;
    }
    return n;
}

static int check_text(const char *path, size_t line, const uint8_t *p, size_t n, tc_error *err)
{
    size_t ok = utf8_valid_prefix(p, n);
    if (ok == n)
        return TC_OK;
    if (p[ok] == 0)
        return tc_err(err, "%s: line %zu: NUL byte at column %zu (not a text file?)", path, line, ok + 1);
    return tc_err(err, "%s: line %zu: invalid UTF-8 at byte %zu of the line", path, line, ok + 1);
}

/* ------------------------------------------------------------ documents */

static int docs_reserve(tc_calib_docs *d, size_t more_text, tc_error *err)
{
    if (!d->offsets) {
        d->offsets = malloc(16 * sizeof *d->offsets);
        if (!d->offsets)
            return tc_err(err, "out of memory for calibration documents");
        d->cap_docs = 16;
        d->offsets[0] = 0;
    }
    if (d->n_docs + 2 > d->cap_docs) {
        size_t n = d->cap_docs * 2;
        size_t *o = n > SIZE_MAX / sizeof *o ? NULL : realloc(d->offsets, n * sizeof *o);
        if (!o)
            return tc_err(err, "out of memory for calibration documents");
        d->offsets = o;
        d->cap_docs = n;
    }
    size_t used = d->offsets[d->n_docs];
    if (more_text > SIZE_MAX - used - 1 ||
        grow_bytes(&d->text, &d->cap_text, used + more_text + 1, SIZE_MAX))
        return tc_err(err, "out of memory for calibration text");
    return TC_OK;
}

/* The document being built sits after offsets[n_docs]; `open` is its length so far. */
static int doc_append(tc_calib_docs *d, size_t *open, const void *p, size_t n, tc_error *err)
{
    if (docs_reserve(d, *open + n, err))
        return TC_ERR;
    memcpy(d->text + d->offsets[d->n_docs] + *open, p, n);
    *open += n;
    d->text[d->offsets[d->n_docs] + *open] = '\0';
    return TC_OK;
}

static void doc_close(tc_calib_docs *d, size_t *open)
{
    if (*open == 0)
        return;
    d->offsets[d->n_docs + 1] = d->offsets[d->n_docs] + *open;
    d->n_docs++;
    *open = 0;
}

int tc_calib_docs_add(tc_calib_docs *d, const char *text, size_t len, tc_error *err)
{
    size_t open = 0;
    if (len == 0)
        return TC_OK;
    if (doc_append(d, &open, text, len, err))
        return TC_ERR;
    doc_close(d, &open);
    return TC_OK;
}

void tc_calib_docs_free(tc_calib_docs *d)
{
    free(d->text);
    free(d->offsets);
    free(d->source);
    memset(d, 0, sizeof *d);
}

static int parse_plain(tc_calib_docs *d, const char *path, const char *buf, size_t n, tc_error *err)
{
    line_reader r;
    line_reader_init(&r, buf, n, path);
    const uint8_t *line;
    size_t len, open = 0;
    while (next_line(&r, &line, &len)) {
        if (check_text(path, r.number, line, len, err))
            return TC_ERR;
        if (is_blank(line, len)) {
            doc_close(d, &open);
            continue;
        }
        if ((open && doc_append(d, &open, "\n", 1, err)) || doc_append(d, &open, line, len, err))
            return TC_ERR;
    }
    doc_close(d, &open);
    return TC_OK;
}

/* Parses one line as a single JSON value (nothing but whitespace after it). */
static cJSON *parse_json_line(const char *path, size_t number, const uint8_t *line, size_t len, tc_error *err)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)line, len, &end, 0);
    if (!j) {
        tc_err(err, "%s: line %zu: not valid JSON", path, number);
        return NULL;
    }
    size_t used = (size_t)(end - (const char *)line);
    if (used < len && !is_blank(line + used, len - used)) {
        cJSON_Delete(j);
        tc_err(err, "%s: line %zu: more than one JSON value on the line", path, number);
        return NULL;
    }
    return j;
}

static int parse_jsonl(tc_calib_docs *d, const char *path, const char *buf, size_t n, const char *field,
                       tc_error *err)
{
    line_reader r;
    line_reader_init(&r, buf, n, path);
    const uint8_t *line;
    size_t len;
    while (next_line(&r, &line, &len)) {
        if (check_text(path, r.number, line, len, err))
            return TC_ERR;
        if (is_blank(line, len))
            continue;
        cJSON *j = parse_json_line(path, r.number, line, len, err);
        if (!j)
            return TC_ERR;
        const cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, field) : NULL;
        int rc = TC_OK;
        if (!cJSON_IsObject(j))
            rc = tc_err(err, "%s: line %zu: expected a JSON object", path, r.number);
        else if (!t)
            rc = tc_err(err, "%s: line %zu: the object has no \"%s\" field", path, r.number, field);
        else if (!cJSON_IsString(t))
            rc = tc_err(err, "%s: line %zu: the \"%s\" field is not a string", path, r.number, field);
        else if (check_text(path, r.number, (const uint8_t *)t->valuestring, strlen(t->valuestring), err))
            rc = TC_ERR;
        else
            rc = tc_calib_docs_add(d, t->valuestring, strlen(t->valuestring), err);
        cJSON_Delete(j);
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_jsonl_name(const char *path)
{
    return ends_with(path, ".jsonl") || ends_with(path, ".jsonl.gz") || ends_with(path, ".json") ||
           ends_with(path, ".json.gz");
}

int tc_calib_docs_read(tc_calib_docs *d, const char *path, tc_calib_format fmt, const char *text_field,
                       tc_error *err)
{
    char *buf;
    size_t n;
    tc_file_id id;
    if (tc_calib_read_file(path, TC_CALIB_MAX_BYTES, &buf, &n, err))
        return TC_ERR;
    if (tc_file_id_of(path, &id, err)) {
        free(buf);
        return TC_ERR;
    }
    if (fmt == TC_CALIB_AUTO)
        fmt = is_jsonl_name(path) ? TC_CALIB_JSONL : TC_CALIB_TEXT;
    size_t before = d->n_docs;
    int rc = fmt == TC_CALIB_JSONL ? parse_jsonl(d, path, buf, n, text_field ? text_field : "text", err)
                                   : parse_plain(d, path, buf, n, err);
    free(buf);
    if (rc == TC_OK && d->n_docs == before)
        rc = tc_err(err, "%s: no calibration text in the file", path);
    if (rc == TC_OK && d->n_files == 0) {
        if (!(d->source = strdup(path)))
            rc = tc_err(err, "%s: out of memory", path);
        d->file = id;
    }
    if (rc == TC_OK)
        d->n_files++;
    if (rc && d->offsets) {
        d->n_docs = before; /* a failed file adds nothing */
        if (d->text)
            d->text[d->offsets[before]] = '\0';
    }
    return rc;
}

static int docs_copy(const tc_calib_docs *src, size_t first, size_t count, tc_calib_docs *dst, tc_error *err)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = first; i < first + count; i++) {
        size_t a = src->offsets[i], b = src->offsets[i + 1];
        if (tc_calib_docs_add(dst, src->text + a, b - a, err)) {
            tc_calib_docs_free(dst);
            return TC_ERR;
        }
    }
    return TC_OK;
}

int tc_calib_split(const tc_calib_docs *all, size_t n_eval, tc_calib_docs *calib, tc_calib_docs *eval,
                   tc_error *err)
{
    memset(calib, 0, sizeof *calib);
    memset(eval, 0, sizeof *eval);
    if (n_eval == 0 || n_eval >= all->n_docs)
        return tc_err(err, "cannot split %zu calibration documents into %zu for evaluation and the rest for "
                      "calibration: both parts must be non-empty", all->n_docs, n_eval);
    size_t n_cal = all->n_docs - n_eval;
    if (docs_copy(all, 0, n_cal, calib, err))
        return TC_ERR;
    if (docs_copy(all, n_cal, n_eval, eval, err)) {
        tc_calib_docs_free(calib);
        return TC_ERR;
    }
    return TC_OK;
}

/* ------------------------------------------------------------- sampling */

/* splitmix64 (Steele, Lea, Flood 2014): the whole state is one counter, so
 * a seed fully determines the sequence and nothing global is touched. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound): rejects the lowest 2^64 mod bound draws so every
 * residue is equally likely. */
static uint64_t uniform_below(uint64_t *state, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r >= threshold)
            return r % bound;
    }
}

/* Selection sampling: marks k of n items, each k-subset equally likely,
 * visiting items in order so the choice comes out sorted. */
static void select_in_order(size_t n, size_t k, uint64_t seed, unsigned char *chosen)
{
    uint64_t state = seed;
    size_t taken = 0;
    for (size_t i = 0; i < n; i++) {
        chosen[i] = taken < k && uniform_below(&state, n - i) < k - taken;
        taken += chosen[i];
    }
}

typedef struct tok_buf {
    int32_t *p;
    size_t n, cap;
} tok_buf;

static int tok_push(tok_buf *b, const int32_t *ids, size_t n, tc_error *err)
{
    const size_t most = SIZE_MAX / sizeof(int32_t) / 2;
    if (b->n > most || n > most - b->n)
        return tc_err(err, "calibration token stream is too long");
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n)
            cap *= 2;
        int32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p)
            return tc_err(err, "out of memory for %zu calibration tokens", b->n + n);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, ids, n * sizeof *ids);
    b->n += n;
    return TC_OK;
}

static int encode_stream(const tc_calib_docs *docs, tc_encode_fn encode, void *ctx, int32_t bos, tok_buf *s,
                         tc_error *err)
{
    for (size_t i = 0; i < docs->n_docs; i++) {
        if (bos >= 0 && tok_push(s, &bos, 1, err))
            return TC_ERR;
        int32_t *ids = NULL;
        size_t n = 0;
        size_t a = docs->offsets[i], b = docs->offsets[i + 1];
        tc_err_clear(err);
        if (encode(ctx, docs->text + a, b - a, &ids, &n, err)) {
            free(ids);
            if (err && !err->msg[0])
                tc_err(err, "the tokenizer failed");
            return tc_err_prefix(err, "calibration document %zu", i + 1);
        }
        int rc = tok_push(s, ids, n, err);
        free(ids);
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

static int set_alloc(tc_calib_set *out, size_t n_seqs, size_t n_tokens, tc_error *err)
{
    memset(out, 0, sizeof *out);
    uint64_t bytes;
    if (tc_mul_u64(n_tokens, sizeof(int32_t), &bytes) || bytes > SIZE_MAX || n_seqs > SIZE_MAX / sizeof(size_t) - 1)
        return tc_err(err, "calibration set of %zu tokens is too large", n_tokens);
    out->tokens = malloc(bytes ? (size_t)bytes : 1);
    out->offsets = malloc((n_seqs + 1) * sizeof *out->offsets);
    out->win.index = malloc((n_seqs ? n_seqs : 1) * sizeof *out->win.index);
    if (!out->tokens || !out->offsets || !out->win.index) {
        tc_calib_set_free(out);
        return tc_err(err, "out of memory for %zu calibration tokens", n_tokens);
    }
    out->n_seqs = n_seqs;
    out->n_tokens = n_tokens;
    out->offsets[0] = 0;
    out->win.n_windows = n_seqs;
    return TC_OK;
}

tc_calib_opts tc_calib_default_opts(size_t model_context, int32_t bos_id)
{
    tc_calib_opts o = {.n_samples = TC_CALIB_DEFAULT_SAMPLES, .seed = 0, .bos_id = bos_id};
    o.seq_len = model_context && model_context < TC_CALIB_DEFAULT_SEQ_LEN ? model_context : TC_CALIB_DEFAULT_SEQ_LEN;
    return o;
}

/* FNV-1a over the ids as little-endian int32: a fingerprint of the stream
 * that is the same on every machine. */
static uint64_t stream_fingerprint(const int32_t *ids, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xffu;
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

/* Appends to a warning, "; " between parts, cut at cap. */
static void add_warning(char *w, size_t cap, const char *text)
{
    size_t n = strlen(w), k = strlen(text);
    if (n && n + 2 < cap) {
        memcpy(w + n, "; ", 2);
        n += 2;
    }
    if (k > cap - 1 - n)
        k = cap - 1 - n;
    memcpy(w + n, text, k);
    w[n + k] = '\0';
}

/* Marks the grid windows (W of L tokens) that share a token with a window of
 * an avoided record of the same text, by token ranges (a record may have
 * another L).  Returns the number of records that apply. */
static size_t mark_avoided(const tc_calib_opts *o, const tc_calib_docs *docs, uint64_t len, uint64_t fp, size_t L,
                           size_t W, unsigned char *blocked, char *warning, size_t cap)
{
    size_t applied = 0;
    const tc_file_id *file = docs->n_files == 1 ? &docs->file : NULL;
    for (size_t r = 0; o->avoid && r < o->n_avoid; r++) {
        const tc_calib_windows *a = &o->avoid[r];
        int rel = tc_calib_windows_relation(a, file, len, fp);
        if (rel == 0)
            continue;
        if (rel < 0) {
            char msg[TC_ERROR_MAX];
            snprintf(msg, sizeof msg,
                     "%s: its token stream (%llu tokens) is not the one the calibration windows were recorded on "
                     "(%llu tokens; the file changed or another tokenizer encoded it): their token ranges are left "
                     "out all the same, but they may not be the text that calibrated",
                     docs->source, (unsigned long long)len, (unsigned long long)a->stream_tokens);
            add_warning(warning, cap, msg);
        }
        applied++;
        for (size_t k = 0; k < a->n_windows; k++) {
            uint64_t first, end;
            if (tc_mul_u64(a->index[k], a->seq_len, &first) || tc_add_u64(first, a->seq_len, &end) ||
                first >= (uint64_t)W * L)
                continue;
            for (uint64_t i = first / L; i <= (end - 1) / L && i < W; i++)
                blocked[i] = 1;
        }
    }
    return applied;
}

static int fill_windows(tc_calib_windows *w, const tc_calib_docs *docs, const tok_buf *s, uint64_t fp,
                        const tc_calib_opts *opts, tc_error *err)
{
    w->kind = TC_CALIB_KIND_TEXT;
    w->have_file = docs->n_files == 1;
    w->file = docs->file;
    w->stream_tokens = s->n;
    w->fingerprint = fp;
    w->seq_len = opts->seq_len;
    w->seed = opts->seed;
    if (docs->n_files == 1 && docs->source && !(w->source = strdup(docs->source)))
        return tc_err(err, "out of memory");
    return TC_OK;
}

int tc_calib_sample(const tc_calib_docs *docs, tc_encode_fn encode, void *ctx, const tc_calib_opts *opts,
                    tc_calib_set *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    const size_t L = opts->seq_len, N = opts->n_samples;
    if (L < 2)
        return tc_err(err, "calibration sequence length %zu is too short: a window needs at least 2 tokens", L);
    if (N == 0)
        return tc_err(err, "the number of calibration samples must be at least 1");
    if (!encode)
        return tc_err(err, "no tokenizer given for the calibration text");
    if (opts->bos_id < -1)
        return tc_err(err, "invalid BOS id %d", (int)opts->bos_id);
    if (docs->n_docs == 0)
        return tc_err(err, "no calibration text: the documents are empty");
    tok_buf s = {0};
    if (encode_stream(docs, encode, ctx, opts->bos_id, &s, err)) {
        free(s.p);
        return TC_ERR;
    }
    if (s.n < L) {
        free(s.p);
        return tc_err(err, "the calibration text has %zu tokens, fewer than one window of %zu", s.n, L);
    }
    const size_t W = s.n / L;
    const uint64_t fp = stream_fingerprint(s.p, s.n);
    const char *src = docs->source ? docs->source : "the text";
    char warning[TC_ERROR_MAX] = "";
    unsigned char *blocked = calloc(W, 1), *chosen = calloc(W, 1);
    if (!blocked || !chosen) {
        free(blocked);
        free(chosen);
        free(s.p);
        return tc_err(err, "out of memory choosing calibration windows");
    }
    size_t applied = mark_avoided(opts, docs, s.n, fp, L, W, blocked, warning, sizeof warning);
    size_t E = 0; /* eligible windows */
    for (size_t w = 0; w < W; w++)
        E += !blocked[w];
    int rc = TC_OK;
    if (E == 0)
        rc = tc_err(err,
                    "%s: every one of its %zu windows of %zu tokens shares tokens with the calibration windows "
                    "recorded for the same text, so none is left to evaluate on: use another text, or calibrate "
                    "on fewer windows",
                    src, W, L);
    size_t K = N < E ? N : E;
    if (rc == TC_OK)
        rc = set_alloc(out, K, K * L, err);
    if (rc == TC_OK)
        rc = fill_windows(&out->win, docs, &s, fp, opts, err);
    if (rc == TC_OK) {
        /* Chosen among the eligible windows only; with none blocked this is
         * exactly the choice among all W. */
        select_in_order(E, K, opts->seed, chosen);
        size_t j = 0, e = 0;
        for (size_t w = 0; w < W; w++) {
            if (blocked[w] || !chosen[e++])
                continue;
            memcpy(out->tokens + j * L, s.p + w * L, L * sizeof *s.p);
            out->win.index[j] = w;
            j++;
            out->offsets[j] = j * L;
        }
        out->n_grid = W;
        out->n_avoided = W - E;
        out->n_avoid_applied = applied;
        char msg[TC_ERROR_MAX] = "";
        if (K < N && N != TC_CALIB_ALL && E < W)
            snprintf(msg, sizeof msg,
                     "%s: only %zu of its %zu windows of %zu tokens do not overlap the calibration windows; using "
                     "all %zu instead of %zu",
                     src, E, W, L, E, N);
        else if (K < N && N != TC_CALIB_ALL)
            snprintf(msg, sizeof msg,
                     "the calibration text holds only %zu windows of %zu tokens; using all %zu instead of %zu", W, L,
                     W, N);
        if (msg[0])
            add_warning(warning, sizeof warning, msg);
        memcpy(out->warning, warning, sizeof out->warning);
    } else {
        tc_calib_set_free(out);
    }
    free(blocked);
    free(chosen);
    free(s.p);
    return rc;
}

int tc_calib_set_pick(tc_calib_set *s, size_t n, uint64_t seed, tc_error *err)
{
    s->warning[0] = '\0';
    if (n == 0)
        return tc_err(err, "the number of calibration samples must be at least 1");
    if (n >= s->n_seqs) {
        if (n > s->n_seqs)
            snprintf(s->warning, sizeof s->warning,
                     "only %zu calibration sequences exist; using all %zu instead of %zu", s->n_seqs, s->n_seqs, n);
        return TC_OK;
    }
    unsigned char *chosen = calloc(s->n_seqs, 1);
    if (!chosen)
        return tc_err(err, "out of memory choosing calibration sequences");
    select_in_order(s->n_seqs, n, seed, chosen);
    /* Compact in place: destinations never pass their sources. */
    size_t j = 0, at = 0;
    for (size_t i = 0; i < s->n_seqs; i++) {
        size_t a = s->offsets[i], len = s->offsets[i + 1] - a;
        if (!chosen[i])
            continue;
        memmove(s->tokens + at, s->tokens + a, len * sizeof *s->tokens);
        at += len;
        if (s->win.index)
            s->win.index[j] = s->win.index[i];
        s->offsets[++j] = at;
    }
    s->n_seqs = n;
    s->n_tokens = at;
    s->win.n_windows = n;
    s->win.seed = seed;
    free(chosen);
    return TC_OK;
}

void tc_calib_set_free(tc_calib_set *s)
{
    free(s->tokens);
    free(s->offsets);
    tc_calib_windows_free(&s->win);
    memset(s, 0, sizeof *s);
}

/* -------------------------------------------------------- token lines */

static int parse_token_line(const char *path, size_t number, const cJSON *a, int64_t vocab, size_t max_len,
                            tok_buf *toks, tc_error *err)
{
    if (!cJSON_IsArray(a))
        return tc_err(err, "%s: line %zu: expected a JSON array of token ids", path, number);
    int count = cJSON_GetArraySize(a);
    if (count == 0)
        return tc_err(err, "%s: line %zu: empty token sequence", path, number);
    if ((size_t)count > max_len)
        return tc_err(err, "%s: line %zu: %d tokens, more than the maximum sequence length %zu", path, number,
                      count, max_len);
    int k = 0;
    for (const cJSON *e = a->child; e; e = e->next, k++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!isfinite(v) || v != floor(v))
            return tc_err(err, "%s: line %zu: element %d is not an integer token id", path, number, k + 1);
        if (v < 0 || v >= (double)vocab)
            return tc_err(err, "%s: line %zu: token id %.0f (element %d) is outside the vocabulary [0, %lld)",
                          path, number, v, k + 1, (long long)vocab);
        int32_t id = (int32_t)v;
        if (tok_push(toks, &id, 1, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int push_offset(size_t **offs, size_t *n, size_t *cap, size_t value, tc_error *err)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        size_t *p = c > SIZE_MAX / sizeof *p ? NULL : realloc(*offs, c * sizeof *p);
        if (!p)
            return tc_err(err, "out of memory for calibration sequences");
        *offs = p;
        *cap = c;
    }
    (*offs)[(*n)++] = value;
    return TC_OK;
}

int tc_calib_read_tokens(const char *path, int64_t vocab_size, size_t max_seq_len, tc_calib_set *out,
                         tc_error *err)
{
    memset(out, 0, sizeof *out);
    if (vocab_size <= 0 || vocab_size > (int64_t)INT32_MAX + 1 || max_seq_len == 0)
        return tc_err(err, "%s: invalid vocabulary size %lld or maximum sequence length %zu", path,
                      (long long)vocab_size, max_seq_len);
    char *buf;
    size_t n;
    if (tc_calib_read_file(path, TC_CALIB_MAX_BYTES, &buf, &n, err))
        return TC_ERR;
    line_reader r;
    line_reader_init(&r, buf, n, path);
    tok_buf toks = {0};
    size_t *offs = NULL, n_offs = 0, cap_offs = 0;
    int rc = push_offset(&offs, &n_offs, &cap_offs, 0, err);
    const uint8_t *line;
    size_t len;
    while (rc == TC_OK && next_line(&r, &line, &len)) {
        if (is_blank(line, len))
            continue;
        if (check_text(path, r.number, line, len, err)) {
            rc = TC_ERR;
            break;
        }
        cJSON *j = parse_json_line(path, r.number, line, len, err);
        rc = j ? parse_token_line(path, r.number, j, vocab_size, max_seq_len, &toks, err) : TC_ERR;
        cJSON_Delete(j);
        if (rc == TC_OK)
            rc = push_offset(&offs, &n_offs, &cap_offs, toks.n, err);
    }
    free(buf);
    if (rc == TC_OK && n_offs == 1)
        rc = tc_err(err, "%s: no token sequences in the file", path);
    tc_calib_windows *w = &out->win;
    w->kind = TC_CALIB_KIND_TOKENS;
    if (rc == TC_OK && tc_file_id_of(path, &w->file, err) == TC_OK)
        w->have_file = 1;
    else
        rc = TC_ERR;
    if (rc == TC_OK && (!(w->index = malloc((n_offs - 1) * sizeof *w->index)) || !(w->source = strdup(path))))
        rc = tc_err(err, "%s: out of memory", path);
    if (rc) {
        free(toks.p);
        free(offs);
        tc_calib_windows_free(w);
        return TC_ERR;
    }
    for (size_t i = 0; i + 1 < n_offs; i++)
        w->index[i] = i;
    w->n_windows = n_offs - 1;
    out->tokens = toks.p;
    out->offsets = offs;
    out->n_seqs = n_offs - 1;
    out->n_tokens = toks.n;
    return TC_OK;
}
