/* Calibration data: reading text, JSON Lines and token lines (plain and
 * gzip), hostile variants of each, the seeded choice of windows, and
 * evaluation windows kept disjoint from the calibration windows of the same
 * text (by file identity or by content), with their records as JSON. */
#include "testutil.h"

#include <stdint.h>
#include <zlib.h>

#include "tc/calib.h"

static char dir[256];

static const char *path_of(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *write_file(const char *name, const void *data, size_t n)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
    return p;
}

static const char *write_text(const char *name, const char *s)
{
    return write_file(name, s, strlen(s));
}

static const char *write_gz(const char *name, const void *data, size_t n)
{
    const char *p = path_of(name);
    gzFile g = gzopen(p, "wb");
    if (!g || (n && gzwrite(g, data, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    return p;
}

static size_t file_bytes(const char *p, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(buf, 1, cap, f) : 0;
    if (f)
        fclose(f);
    return n;
}

static int doc_is(const tc_calib_docs *d, size_t i, const char *s)
{
    if (i >= d->n_docs)
        return 0;
    size_t n = d->offsets[i + 1] - d->offsets[i];
    return n == strlen(s) && memcmp(d->text + d->offsets[i], s, n) == 0;
}

/* The error names the file and contains what. */
static int err_says(const tc_error *e, const char *file, const char *what)
{
    int ok = (!file || strstr(e->msg, file)) && (!what || strstr(e->msg, what));
    if (!ok)
        fprintf(stderr, "  unexpected message: %s\n", e->msg);
    return ok;
}

static const char *PLAIN = "\xef\xbb\xbf"
                           "First paragraph,\r\n"
                           "second line.\r\n"
                           "\n"
                           " \t \n"
                           "\n"
                           "Second doc caf\xc3\xa9.\n"
                           "\n"
                           "Third, no final newline";

static void check_plain_docs(const tc_calib_docs *d)
{
    CHECK(d->n_docs == 3);
    CHECK(doc_is(d, 0, "First paragraph,\nsecond line."));
    CHECK(doc_is(d, 1, "Second doc caf\xc3\xa9."));
    CHECK(doc_is(d, 2, "Third, no final newline"));
}

static void test_plain(void)
{
    tc_error err;
    tc_calib_docs d = {0};
    CHECK_OK(tc_calib_docs_read(&d, write_text("a.txt", PLAIN), TC_CALIB_AUTO, NULL, &err), &err);
    check_plain_docs(&d);
    tc_calib_docs_free(&d);

    /* Detected by magic bytes, whatever the name says. */
    CHECK_OK(tc_calib_docs_read(&d, write_gz("a-gz.txt", PLAIN, strlen(PLAIN)), TC_CALIB_TEXT, NULL, &err), &err);
    check_plain_docs(&d);
    /* Reading a second file appends. */
    CHECK_OK(tc_calib_docs_read(&d, write_text("b.txt", "\n\nmore\n"), TC_CALIB_AUTO, NULL, &err), &err);
    CHECK(d.n_docs == 4 && doc_is(&d, 3, "more"));
    tc_calib_docs_free(&d);

    const char *bad = write_text("bad-utf8.txt", "ok\nfine\nbroken \xc3\x28 here\n");
    CHECK_OK(tc_calib_docs_read(&d, write_text("c.txt", "kept\n"), TC_CALIB_AUTO, NULL, &err), &err);
    CHECK(tc_calib_docs_read(&d, bad, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(d.n_docs == 1 && doc_is(&d, 0, "kept")); /* the failed file added nothing */
    CHECK(err_says(&err, bad, "line 3") && err_says(&err, NULL, "UTF-8"));
    tc_calib_docs_free(&d);
    const char *overlong = write_text("overlong.txt", "\xc0\xaf\n");
    CHECK(tc_calib_docs_read(&d, overlong, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(err_says(&err, overlong, "line 1"));
    tc_calib_docs_free(&d);
    const char *surrogate = write_text("surrogate.txt", "x\n\xed\xa0\x80\n");
    CHECK(tc_calib_docs_read(&d, surrogate, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(err_says(&err, surrogate, "line 2"));
    tc_calib_docs_free(&d);
    const char *cut = write_text("cut.txt", "x\xe2\x82");
    CHECK(tc_calib_docs_read(&d, cut, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    tc_calib_docs_free(&d);
    const char *nul = write_file("nul.txt", "a\n\nb\0c\n", 7);
    CHECK(tc_calib_docs_read(&d, nul, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(err_says(&err, nul, "line 3") && err_says(&err, NULL, "NUL"));
    tc_calib_docs_free(&d);
    const char *empty = write_text("empty.txt", "\n \n\n");
    CHECK(tc_calib_docs_read(&d, empty, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(err_says(&err, empty, "no calibration text"));
    tc_calib_docs_free(&d);
    CHECK(tc_calib_docs_read(&d, path_of("missing.txt"), TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    CHECK(err_says(&err, "missing.txt", NULL));
    CHECK(tc_calib_docs_read(&d, dir, TC_CALIB_TEXT, NULL, &err) == TC_ERR);
    tc_calib_docs_free(&d);
}

static const char *JSONL = "{\"text\": \"one\", \"id\": 1}\n"
                           "\n"
                           "{\"id\": 2, \"text\": \"two\\nlines caf\\u00e9\"}\r\n"
                           "{\"text\": \"\"}\n"
                           "  {\"text\": \"three\", \"body\": \"x\"}  \n";

static void test_jsonl(void)
{
    tc_error err;
    tc_calib_docs d = {0};
    CHECK_OK(tc_calib_docs_read(&d, write_text("a.jsonl", JSONL), TC_CALIB_AUTO, NULL, &err), &err);
    CHECK(d.n_docs == 3);
    CHECK(doc_is(&d, 0, "one") && doc_is(&d, 1, "two\nlines caf\xc3\xa9") && doc_is(&d, 2, "three"));
    tc_calib_docs_free(&d);
    CHECK_OK(tc_calib_docs_read(&d, write_gz("a.jsonl.gz", JSONL, strlen(JSONL)), TC_CALIB_AUTO, NULL, &err),
             &err);
    CHECK(d.n_docs == 3 && doc_is(&d, 2, "three"));
    tc_calib_docs_free(&d);
    /* AUTO on a .txt name reads the same bytes as plain text: one paragraph. */
    CHECK_OK(tc_calib_docs_read(&d, write_text("j.txt", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n"), TC_CALIB_AUTO,
                                NULL, &err), &err);
    CHECK(d.n_docs == 1);
    tc_calib_docs_free(&d);

    const char *body = write_text("body.jsonl", "{\"body\": \"b1\"}\n{\"body\": \"b2\", \"text\": 5}\n");
    CHECK_OK(tc_calib_docs_read(&d, body, TC_CALIB_JSONL, "body", &err), &err);
    CHECK(d.n_docs == 2 && doc_is(&d, 1, "b2"));
    tc_calib_docs_free(&d);

    struct {
        const char *name, *content, *says;
    } bad[] = {
        {"arr.jsonl", "{\"text\": \"a\"}\n[1, 2]\n", "line 2"},
        {"nofield.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"txt\": \"c\"}\n", "line 3"},
        {"number.jsonl", "{\"text\": 7}\n", "not a string"},
        {"broken.jsonl", "{\"text\": \"a\"\n", "not valid JSON"},
        {"two.jsonl", "{\"text\": \"a\"} {\"text\": \"b\"}\n", "more than one"},
        {"scalar.jsonl", "\"just a string\"\n", "object"},
        {"utf8.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n", "line 2"},
        {"surr.jsonl", "{\"text\": \"\\ud800\"}\n", "line 1"},
        {"deep.jsonl", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                       "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
         "line 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = write_text(bad[i].name, bad[i].content);
        CHECK_MSG(tc_calib_docs_read(&d, p, TC_CALIB_JSONL, NULL, &err) == TC_ERR, "%s", bad[i].name);
        CHECK(err_says(&err, bad[i].name, bad[i].says));
        tc_calib_docs_free(&d);
        char gzname[64];
        snprintf(gzname, sizeof gzname, "%s.gz", bad[i].name);
        p = write_gz(gzname, bad[i].content, strlen(bad[i].content));
        CHECK(tc_calib_docs_read(&d, p, TC_CALIB_AUTO, NULL, &err) == TC_ERR);
        CHECK(err_says(&err, gzname, bad[i].says));
        tc_calib_docs_free(&d);
    }
}

static void test_gzip(void)
{
    tc_error err;
    char *buf;
    size_t n;
    /* Concatenated members are one stream. */
    const char *p1 = write_gz("m1.gz", "hello ", 6);
    unsigned char a[256], b[256];
    size_t na = file_bytes(p1, a, sizeof a);
    size_t nb = file_bytes(write_gz("m2.gz", "world", 5), b, sizeof b);
    unsigned char both[512];
    memcpy(both, a, na);
    memcpy(both + na, b, nb);
    const char *cat = write_file("cat.gz", both, na + nb);
    CHECK_OK(tc_calib_read_file(cat, 1000, &buf, &n, &err), &err);
    CHECK(n == 11 && buf && strcmp(buf, "hello world") == 0);
    free(buf);

    /* The cap on decompressed size: a small file that inflates past it is refused. */
    static char zeros[100000];
    const char *bomb = write_gz("bomb.gz", zeros, sizeof zeros);
    CHECK(tc_calib_read_file(bomb, 50000, &buf, &n, &err) == TC_ERR);
    CHECK(err_says(&err, "bomb.gz", "more than") && buf == NULL);
    CHECK_OK(tc_calib_read_file(bomb, sizeof zeros, &buf, &n, &err), &err);
    CHECK(n == sizeof zeros);
    free(buf);
    const char *plain = write_file("zeros.bin", zeros, 1000);
    CHECK(tc_calib_read_file(plain, 999, &buf, &n, &err) == TC_ERR);
    CHECK(err_says(&err, "zeros.bin", "more than"));

    /* Truncated at every length, and corrupted: clean errors naming the file. */
    static unsigned char gz[4096];
    const char *text = "Some text that compresses into a few dozen bytes, some text, some text.\n";
    size_t ng = file_bytes(write_gz("t.gz", text, strlen(text)), gz, sizeof gz);
    int all_failed = 1;
    for (size_t k = 2; k < ng; k++) {
        const char *p = write_file("trunc.gz", gz, k);
        if (tc_calib_read_file(p, 1000, &buf, &n, &err) == TC_OK) {
            all_failed = 0;
            free(buf);
        } else if (!strstr(err.msg, "trunc.gz")) {
            all_failed = 0;
        }
    }
    CHECK(all_failed);
    memcpy(a, gz, ng);
    a[ng / 2] ^= 0x55;
    a[ng / 2 + 1] ^= 0xaa;
    CHECK(tc_calib_read_file(write_file("corrupt.gz", a, ng), 1000, &buf, &n, &err) == TC_ERR);
    CHECK(err_says(&err, "corrupt.gz", NULL));
    memcpy(a, gz, ng);
    memcpy(a + ng, "junk", 4);
    CHECK(tc_calib_read_file(write_file("junk.gz", a, ng + 4), 1000, &buf, &n, &err) == TC_ERR);
    CHECK(err_says(&err, "junk.gz", NULL));
}

static void test_tokens(void)
{
    tc_error err;
    tc_calib_set s;
    const char *ok = "[1, 2, 3]\n\n[0]\r\n[99, 98, 97, 96]\n [5,6] \n";
    CHECK_OK(tc_calib_read_tokens(write_text("tok.jsonl", ok), 100, 4, &s, &err), &err);
    CHECK(s.n_seqs == 4 && s.n_tokens == 10);
    CHECK(s.offsets[0] == 0 && s.offsets[1] == 3 && s.offsets[2] == 4 && s.offsets[3] == 8 && s.offsets[4] == 10);
    CHECK(s.tokens[0] == 1 && s.tokens[3] == 0 && s.tokens[4] == 99 && s.tokens[9] == 6);

    /* Picking 2 of 4 keeps whole sequences, in file order, deterministically. */
    tc_calib_set t;
    CHECK_OK(tc_calib_read_tokens(write_gz("tok.jsonl.gz", ok, strlen(ok)), 100, 4, &t, &err), &err);
    CHECK(t.n_tokens == 10 && memcmp(t.tokens, s.tokens, 10 * sizeof *t.tokens) == 0);
    CHECK_OK(tc_calib_set_pick(&t, 2, 7, &err), &err);
    CHECK(t.n_seqs == 2 && t.warning[0] == '\0');
    int found = 0, last = -1, ordered = 1;
    for (size_t i = 0; i < t.n_seqs; i++) {
        size_t len = t.offsets[i + 1] - t.offsets[i];
        for (int j = 0; j < 4; j++)
            if (s.offsets[j + 1] - s.offsets[j] == len &&
                memcmp(t.tokens + t.offsets[i], s.tokens + s.offsets[j], len * sizeof *s.tokens) == 0) {
                found++;
                ordered &= j > last;
                last = j;
            }
    }
    CHECK(found == 2 && ordered && t.n_tokens == t.offsets[2]);
    CHECK_OK(tc_calib_set_pick(&t, 5, 7, &err), &err);
    CHECK(t.n_seqs == 2 && strstr(t.warning, "only 2"));
    tc_calib_set_free(&t);
    tc_calib_set_free(&s);

    struct {
        const char *name, *content, *says;
    } bad[] = {
        {"neg.tok", "[1]\n[1, -2]\n", "line 2"},
        {"big.tok", "[1]\n[100]\n", "outside the vocabulary"},
        {"frac.tok", "[1.5]\n", "not an integer"},
        {"str.tok", "[\"1\"]\n", "not an integer"},
        {"huge.tok", "[1e999]\n", "not an integer"},
        {"empty.tok", "[1]\n[]\n", "empty"},
        {"long.tok", "[1, 2, 3, 4, 5]\n", "maximum sequence length"},
        {"obj.tok", "{\"ids\": [1]}\n", "array"},
        {"junk.tok", "[1, 2\n", "line 1"},
        {"nothing.tok", "\n\n", "no token sequences"},
        {"utf8.tok", "[1]\n[2] \xfe\n", "line 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = write_text(bad[i].name, bad[i].content);
        CHECK_MSG(tc_calib_read_tokens(p, 100, 4, &s, &err) == TC_ERR, "%s", bad[i].name);
        CHECK(err_says(&err, bad[i].name, bad[i].says));
        CHECK(s.tokens == NULL && s.offsets == NULL);
    }
    CHECK(tc_calib_read_tokens(write_text("v.tok", "[1]\n"), 0, 4, &s, &err) == TC_ERR);
}

/* Fake tokenizers: bytes to ids, and one whose ids count positions in the
 * stream, so a window's first id tells where it came from. */
static int encode_bytes(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, tc_error *err)
{
    (void)ctx;
    *ids = malloc(len ? len * sizeof **ids : 1);
    if (!*ids)
        return tc_err(err, "out of memory");
    for (size_t i = 0; i < len; i++)
        (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return TC_OK;
}

static int encode_counter(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, tc_error *err)
{
    int32_t *next = ctx;
    (void)text;
    *ids = malloc(len ? len * sizeof **ids : 1);
    if (!*ids)
        return tc_err(err, "out of memory");
    for (size_t i = 0; i < len; i++)
        (*ids)[i] = (*next)++;
    *n = len;
    return TC_OK;
}

static int encode_fail(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, tc_error *err)
{
    (void)ctx;
    if (len > 2 && text[0] == '!')
        return tc_err(err, "cannot encode '!'");
    return encode_bytes(ctx, text, len, ids, n, err);
}

static void make_docs(tc_calib_docs *d, size_t n_docs, uint64_t seed)
{
    tc_error err;
    char buf[200];
    for (size_t i = 0; i < n_docs; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 20 + (size_t)(seed >> 33) % 150;
        for (size_t j = 0; j < len; j++)
            buf[j] = (char)('a' + (i + j * 7) % 26);
        if (tc_calib_docs_add(d, buf, len, &err))
            exit(1);
    }
}

static int same_set(const tc_calib_set *a, const tc_calib_set *b)
{
    return a->n_seqs == b->n_seqs && a->n_tokens == b->n_tokens &&
           memcmp(a->offsets, b->offsets, (a->n_seqs + 1) * sizeof *a->offsets) == 0 &&
           memcmp(a->tokens, b->tokens, a->n_tokens * sizeof *a->tokens) == 0;
}

static void test_sampling(void)
{
    tc_error err;
    tc_calib_docs d = {0};
    make_docs(&d, 60, 1);
    size_t total = d.offsets[d.n_docs];
    const size_t L = 32;
    tc_calib_opts o = {.n_samples = 10, .seq_len = L, .seed = 42, .bos_id = -1};
    int32_t counter = 0;
    tc_calib_set s;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &s, &err), &err);
    CHECK(counter == (int32_t)total);
    CHECK(s.n_seqs == 10 && s.n_tokens == 10 * L && s.warning[0] == '\0');
    /* Every window is L consecutive stream tokens starting at a multiple of L,
     * distinct and in stream order. */
    int good = 1;
    int32_t prev = -1;
    for (size_t i = 0; i < s.n_seqs; i++) {
        const int32_t *w = s.tokens + s.offsets[i];
        good &= s.offsets[i + 1] - s.offsets[i] == L;
        good &= w[0] % (int32_t)L == 0 && w[0] > prev && (size_t)w[0] + L <= total;
        for (size_t j = 1; j < L; j++)
            good &= w[j] == w[0] + (int32_t)j;
        prev = w[0];
    }
    CHECK(good);

    /* Same seed, same windows; another seed, other windows. */
    tc_calib_set again, other;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err), &err);
    CHECK(same_set(&s, &again));
    o.seed = 43;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &other, &err), &err);
    CHECK(other.n_seqs == 10 && !same_set(&s, &other));
    tc_calib_set_free(&s);
    tc_calib_set_free(&again);
    tc_calib_set_free(&other);

    /* Over many seeds every window is chosen about equally often (600
     * choices among ~22 windows: ~27 each). */
    const size_t L2 = 256, W2 = total / L2;
    int hits[64] = {0};
    o.n_samples = 3;
    o.seq_len = L2;
    for (uint64_t seed = 0; seed < 200; seed++) {
        o.seed = seed;
        counter = 0;
        CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &s, &err), &err);
        for (size_t i = 0; i < s.n_seqs; i++)
            hits[s.tokens[s.offsets[i]] / (int32_t)L2]++;
        tc_calib_set_free(&s);
    }
    int even = W2 >= 10 && W2 < 64;
    for (size_t w = 0; w < W2 && w < 64; w++)
        even &= hits[w] >= 8 && hits[w] <= 60;
    CHECK(even);
    o.seq_len = L;
    size_t W = total / L;

    /* Asking for more windows than exist: all of them, and a warning. */
    o.n_samples = W + 5;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &s, &err), &err);
    CHECK(s.n_seqs == W && strstr(s.warning, "only"));
    CHECK(s.tokens[s.offsets[W - 1]] == (int32_t)((W - 1) * L));
    tc_calib_set_free(&s);
    tc_calib_docs_free(&d);
}

/* ---- Evaluation disjoint from calibration ------------------------------------- */

/* Text of n paragraphs whose bytes vary with seed, so two seeds give two texts. */
static char *make_text(size_t n_docs, unsigned seed)
{
    size_t cap = n_docs * 200 + 1, at = 0;
    char *t = malloc(cap);
    for (size_t i = 0; i < n_docs; i++) {
        size_t len = 40 + (i * 37 + seed) % 120;
        for (size_t j = 0; j < len; j++)
            t[at++] = (char)('a' + (i * 11 + j * 7 + seed) % 26);
        t[at++] = '\n';
        t[at++] = '\n';
    }
    t[at] = '\0';
    return t;
}

/* The stream positions [index * L, index * L + L) of two sets never meet. */
static int ranges_disjoint(const tc_calib_set *a, const tc_calib_set *b)
{
    for (size_t i = 0; i < a->n_seqs; i++)
        for (size_t j = 0; j < b->n_seqs; j++) {
            uint64_t a0 = (uint64_t)a->win.index[i] * a->win.seq_len, a1 = a0 + a->win.seq_len;
            uint64_t b0 = (uint64_t)b->win.index[j] * b->win.seq_len, b1 = b0 + b->win.seq_len;
            if (a0 < b1 && b0 < a1)
                return 0;
        }
    return 1;
}

/* With encode_counter every id is its position in the stream: two sets share
 * a token position exactly when they share an id. */
static int ids_disjoint(const tc_calib_set *a, const tc_calib_set *b)
{
    for (size_t i = 0; i < a->n_tokens; i++)
        for (size_t j = 0; j < b->n_tokens; j++)
            if (a->tokens[i] == b->tokens[j])
                return 0;
    return 1;
}

/* Each window's tokens are the stream's tokens at its recorded range. */
static int windows_match_tokens(const tc_calib_set *s)
{
    int ok = s->win.n_windows == s->n_seqs;
    for (size_t i = 0; ok && i < s->n_seqs; i++)
        ok = s->tokens[s->offsets[i]] == (int32_t)(s->win.index[i] * s->win.seq_len);
    return ok;
}

static void test_disjoint_in_memory(void)
{
    tc_error err;
    tc_calib_docs d = {0};
    make_docs(&d, 60, 1);
    const size_t L = 32;
    int32_t counter = 0;
    tc_calib_opts o = {.n_samples = 10, .seq_len = L, .seed = 42, .bos_id = -1};
    tc_calib_set cal, ev, again, plain;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &cal, &err), &err);
    CHECK(windows_match_tokens(&cal) && cal.n_avoided == 0 && cal.win.kind == TC_CALIB_KIND_TEXT);
    CHECK(cal.win.stream_tokens == (uint64_t)counter && cal.n_grid == (size_t)counter / L);
    CHECK(cal.win.source == NULL && !cal.win.have_file);

    /* Same stream (documents added by hand: no file, so the fingerprint
     * decides), same settings: the evaluation leaves out the 10 calibration
     * windows and takes 10 others. */
    o.avoid = &cal.win;
    o.n_avoid = 1;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &ev, &err), &err);
    CHECK(ev.n_seqs == 10 && ev.n_avoided == 10 && ev.n_avoid_applied == 1 && ev.warning[0] == '\0');
    CHECK(ranges_disjoint(&cal, &ev) && ids_disjoint(&cal, &ev) && windows_match_tokens(&ev));
    /* Deterministic for a seed. */
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err), &err);
    CHECK(same_set(&ev, &again));
    tc_calib_set_free(&again);

    /* Another window length: overlap is judged by token ranges, so a window of
     * 48 that shares even one token with a calibration window is left out. */
    o.seq_len = 48;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err), &err);
    CHECK(again.n_seqs == 10 && again.n_avoided >= 10 && ranges_disjoint(&cal, &again) && ids_disjoint(&cal, &again));
    tc_calib_set_free(&again);
    o.seq_len = 20;
    o.n_samples = TC_CALIB_ALL;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err), &err);
    CHECK(again.n_seqs == again.n_grid - again.n_avoided && again.warning[0] == '\0');
    CHECK(ranges_disjoint(&cal, &again) && ids_disjoint(&cal, &again));
    tc_calib_set_free(&again);

    /* Another text (one document more changes the stream): unaffected, the
     * same windows as without any record. */
    tc_calib_docs d2 = {0};
    make_docs(&d2, 61, 1);
    o.seq_len = L;
    o.n_samples = 10;
    counter = 0;
    CHECK_OK(tc_calib_sample(&d2, encode_bytes, NULL, &o, &again, &err), &err);
    o.avoid = NULL;
    o.n_avoid = 0;
    CHECK_OK(tc_calib_sample(&d2, encode_bytes, NULL, &o, &plain, &err), &err);
    CHECK(again.n_avoided == 0 && again.n_avoid_applied == 0 && same_set(&again, &plain));
    tc_calib_set_free(&again);
    tc_calib_set_free(&plain);
    tc_calib_docs_free(&d2);

    /* Every window calibrated: nothing left is an error, not a silent overlap. */
    o.n_samples = TC_CALIB_ALL;
    counter = 0;
    tc_calib_set all;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &all, &err), &err);
    o.avoid = &all.win;
    o.n_avoid = 1;
    counter = 0;
    CHECK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err) == TC_ERR);
    CHECK(err_says(&err, NULL, "none is left") && again.tokens == NULL);
    tc_calib_set_free(&all);
    /* Fewer eligible windows than asked: all of them, and a warning saying why. */
    o.n_samples = cal.n_grid - 4;
    counter = 0;
    o.avoid = &cal.win;
    CHECK_OK(tc_calib_sample(&d, encode_counter, &counter, &o, &again, &err), &err);
    CHECK(again.n_seqs == cal.n_grid - 10 && strstr(again.warning, "do not overlap the calibration windows"));
    CHECK(ranges_disjoint(&cal, &again));
    tc_calib_set_free(&again);
    tc_calib_set_free(&ev);
    tc_calib_set_free(&cal);
    tc_calib_docs_free(&d);
}

static void test_disjoint_files(void)
{
    tc_error err;
    char *text = make_text(300, 1), *other = make_text(300, 2);
    const char *f = write_text("g.txt", text);
    char spelled[600], linked[600], hard[600];
    snprintf(spelled, sizeof spelled, "%s/./g.txt", dir);
    snprintf(linked, sizeof linked, "%s/g-link.txt", dir);
    snprintf(hard, sizeof hard, "%s/g-hard.txt", dir);
    CHECK(symlink(f, linked) == 0 && link(f, hard) == 0);
    const char *copy = write_text("g-copy.txt", text);
    const char *diff = write_text("h.txt", other);

    tc_calib_docs d = {0};
    CHECK_OK(tc_calib_docs_read(&d, f, TC_CALIB_AUTO, NULL, &err), &err);
    CHECK(d.n_files == 1 && d.source && strcmp(d.source, f) == 0);
    tc_calib_opts o = {.n_samples = 16, .seq_len = 64, .seed = 0, .bos_id = 1};
    tc_calib_set cal;
    CHECK_OK(tc_calib_sample(&d, encode_bytes, NULL, &o, &cal, &err), &err);
    CHECK(cal.win.have_file && cal.win.source && strcmp(cal.win.source, f) == 0 && cal.n_seqs == 16);
    tc_calib_docs_free(&d);

    /* The record goes through JSON, as it does through a report or a packed file. */
    cJSON *j = tc_calib_windows_to_json(&cal.win);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    cJSON *back_j = cJSON_Parse(txt);
    tc_calib_windows rec;
    CHECK_OK(tc_calib_windows_from_json(back_j, "r.json", &rec, &err), &err);
    cJSON_Delete(back_j);
    free(txt);
    CHECK(rec.n_windows == 16 && rec.seq_len == 64 && rec.fingerprint == cal.win.fingerprint &&
          rec.stream_tokens == cal.win.stream_tokens && rec.have_file && rec.file.ino == cal.win.file.ino &&
          memcmp(rec.index, cal.win.index, 16 * sizeof *rec.index) == 0);

    /* Every spelling of the same file, a link to it, a hard link, and a copy
     * of its bytes: the evaluation leaves the calibration windows out. */
    const char *same[] = {f, spelled, linked, hard, copy};
    o.avoid = &rec;
    o.n_avoid = 1;
    tc_calib_set first = {0};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        tc_calib_docs e = {0};
        tc_calib_set ev;
        CHECK_OK(tc_calib_docs_read(&e, same[i], TC_CALIB_AUTO, NULL, &err), &err);
        CHECK_OK(tc_calib_sample(&e, encode_bytes, NULL, &o, &ev, &err), &err);
        CHECK_MSG(ev.n_seqs == 16 && ev.n_avoided == 16 && ranges_disjoint(&cal, &ev) && ev.warning[0] == '\0', "%s",
                  same[i]);
        if (i == 0)
            first = ev;
        else {
            CHECK(same_set(&first, &ev));
            tc_calib_set_free(&ev);
        }
        tc_calib_docs_free(&e);
    }
    CHECK(first.win.index[0] != cal.win.index[0] || first.win.index[1] != cal.win.index[1]);
    /* The relation says why: same file, or the same stream in another file. */
    CHECK(tc_calib_windows_relation(&rec, &first.win.file, first.win.stream_tokens, first.win.fingerprint) == 2);
    tc_file_id cid;
    CHECK_OK(tc_file_id_of(copy, &cid, &err), &err);
    CHECK(tc_calib_windows_relation(&rec, &cid, first.win.stream_tokens, first.win.fingerprint) == 1);
    CHECK(tc_calib_windows_relation(&rec, &cid, first.win.stream_tokens, first.win.fingerprint ^ 1) == 0);

    /* Another file: the same windows as with no record at all. */
    tc_calib_docs e = {0};
    tc_calib_set ev, plain;
    tc_calib_opts none = {.n_samples = 16, .seq_len = 64, .bos_id = 1};
    CHECK_OK(tc_calib_docs_read(&e, diff, TC_CALIB_AUTO, NULL, &err), &err);
    CHECK_OK(tc_calib_sample(&e, encode_bytes, NULL, &o, &ev, &err), &err);
    CHECK_OK(tc_calib_sample(&e, encode_bytes, NULL, &none, &plain, &err), &err);
    CHECK(ev.n_avoided == 0 && ev.n_avoid_applied == 0 && same_set(&ev, &plain));
    tc_calib_set_free(&ev);
    tc_calib_set_free(&plain);
    tc_calib_docs_free(&e);

    /* The same file changed since (same inode, other bytes): its recorded
     * ranges are still left out, and a warning says the texts differ. */
    char *changed = make_text(290, 1);
    FILE *w = fopen(f, "wb");
    CHECK(w && fwrite(changed, 1, strlen(changed), w) == strlen(changed));
    if (w)
        fclose(w);
    CHECK_OK(tc_calib_docs_read(&e, f, TC_CALIB_AUTO, NULL, &err), &err);
    CHECK_OK(tc_calib_sample(&e, encode_bytes, NULL, &o, &ev, &err), &err);
    CHECK(ev.n_avoid_applied == 1 && ev.n_avoided > 0 && strstr(ev.warning, "not the one") && ranges_disjoint(&cal, &ev));
    tc_calib_set_free(&ev);
    tc_calib_docs_free(&e);

    /* A text too small for both: calibration took every window. */
    const char *small = write_text("small.txt", "just a few words here\n\nand a few more\n");
    tc_calib_docs sd = {0};
    tc_calib_set sc;
    CHECK_OK(tc_calib_docs_read(&sd, small, TC_CALIB_AUTO, NULL, &err), &err);
    tc_calib_opts so = {.n_samples = 64, .seq_len = 8, .bos_id = 1};
    CHECK_OK(tc_calib_sample(&sd, encode_bytes, NULL, &so, &sc, &err), &err);
    CHECK(strstr(sc.warning, "only"));
    so.avoid = &sc.win;
    so.n_avoid = 1;
    CHECK(tc_calib_sample(&sd, encode_bytes, NULL, &so, &ev, &err) == TC_ERR);
    CHECK(err_says(&err, small, "none is left"));
    tc_calib_set_free(&sc);
    tc_calib_docs_free(&sd);

    /* One line for a person: counts, tokens, the file and the windows as runs. */
    char *line = tc_calib_windows_describe(&cal.win);
    char want[700];
    snprintf(want, sizeof want, "16 windows of 64 tokens (1024 tokens) of %s: windows ", f);
    CHECK_MSG(line && strncmp(line, want, strlen(want)) == 0, "%s", line ? line : "(null)");
    free(line);
    tc_calib_windows run = {.kind = TC_CALIB_KIND_TEXT, .seq_len = 4, .stream_tokens = 40, .n_windows = 5,
                            .index = (size_t[]){0, 1, 2, 5, 7}};
    line = tc_calib_windows_describe(&run);
    CHECK_MSG(line && strstr(line, ": windows 0-2, 5, 7 of 10"), "%s", line ? line : "(null)");
    free(line);

    tc_calib_set_free(&first);
    tc_calib_windows_free(&rec);
    tc_calib_set_free(&cal);
    free(changed);
    free(text);
    free(other);
}

/* Records are untrusted (they come from report and packed files). */
static void test_windows_json(void)
{
    tc_error err;
    static const struct {
        const char *json, *says;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"kind\":\"text\"}", "'source'"},
        {"{\"source\":\"t\",\"kind\":\"words\"}", "'kind'"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_fnv1a64\":\"00\",\"seq_len\":4,\"seed\":0,\"samples\":0,"
         "\"windows\":[]}", "'stream_tokens'"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"xyz\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":0,\"windows\":[]}", "hexadecimal"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"0a\",\"seq_len\":1,"
         "\"seed\":0,\"samples\":0,\"windows\":[]}", "below 2"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"0a\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":2,\"windows\":[3]}", "says 'samples'"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"0a\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":2,\"windows\":[3,3]}", "ascending"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"0a\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":1,\"windows\":[10]}", "below 10"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":40,\"stream_fnv1a64\":\"0a\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":1,\"windows\":[1.5]}", "below 10"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"stream_tokens\":-1,\"stream_fnv1a64\":\"0a\",\"seq_len\":4,"
         "\"seed\":0,\"samples\":0,\"windows\":[]}", "'stream_tokens'"},
        {"{\"source\":\"t\",\"kind\":\"text\",\"file\":{\"dev\":1,\"ino\":\"2\"},\"stream_tokens\":40,"
         "\"stream_fnv1a64\":\"0a\",\"seq_len\":4,\"seed\":0,\"samples\":0,\"windows\":[]}", "'dev'"},
        {"{\"source\":\"t\",\"kind\":\"tokens\",\"seed\":0,\"samples\":1}", "'windows'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *j = cJSON_Parse(bad[i].json);
        tc_calib_windows w;
        CHECK_MSG(tc_calib_windows_from_json(j, "r.json", &w, &err) == TC_ERR, "%s", bad[i].json);
        CHECK_MSG(err_says(&err, "r.json", bad[i].says), "%s", bad[i].json);
        CHECK(w.index == NULL && w.source == NULL);
        cJSON_Delete(j);
    }
    /* Token files: their lines, kept through a pick. */
    const char *p = write_text("w.tok", "[1,2]\n\n[3]\n[4,5,6]\n[7]\n");
    tc_calib_set s;
    CHECK_OK(tc_calib_read_tokens(p, 10, 8, &s, &err), &err);
    CHECK(s.win.kind == TC_CALIB_KIND_TOKENS && s.win.n_windows == 4 && s.win.index[3] == 3 && s.win.have_file);
    CHECK_OK(tc_calib_set_pick(&s, 2, 5, &err), &err);
    CHECK(s.win.n_windows == 2 && s.win.index[0] < s.win.index[1] && s.win.index[1] <= 3);
    static const int32_t first_id[] = {1, 3, 4, 7};
    CHECK(s.tokens[s.offsets[1]] == first_id[s.win.index[1]]);
    cJSON *j = tc_calib_windows_to_json(&s.win);
    tc_calib_windows w;
    CHECK_OK(tc_calib_windows_from_json(j, "t.json", &w, &err), &err);
    CHECK(w.kind == TC_CALIB_KIND_TOKENS && w.n_windows == 2 && w.index[1] == s.win.index[1]);
    /* A token record relates to no text. */
    CHECK(tc_calib_windows_relation(&w, &w.file, 0, 0) == 0);
    tc_calib_windows_free(&w);
    cJSON_Delete(j);
    tc_calib_set_free(&s);
}

static void test_bos_and_errors(void)
{
    tc_error err;
    tc_calib_docs d = {0};
    CHECK_OK(tc_calib_docs_add(&d, "ab", 2, &err), &err);
    CHECK_OK(tc_calib_docs_add(&d, "cde", 3, &err), &err);
    tc_calib_opts o = {.n_samples = 5, .seq_len = 3, .seed = 0, .bos_id = 300};
    tc_calib_set s;
    CHECK_OK(tc_calib_sample(&d, encode_bytes, NULL, &o, &s, &err), &err);
    /* Stream: BOS a b BOS c d e -> windows [BOS a b] [BOS c d]; the tail "e" is dropped. */
    const int32_t want[] = {300, 'a', 'b', 300, 'c', 'd'};
    CHECK(s.n_seqs == 2 && s.n_tokens == 6 && memcmp(s.tokens, want, sizeof want) == 0);
    CHECK(strstr(s.warning, "only 2"));
    tc_calib_set_free(&s);

    o.seq_len = 8;
    CHECK(tc_calib_sample(&d, encode_bytes, NULL, &o, &s, &err) == TC_ERR);
    CHECK(err_says(&err, NULL, "fewer than one window"));
    o.seq_len = 1;
    CHECK(tc_calib_sample(&d, encode_bytes, NULL, &o, &s, &err) == TC_ERR);
    o.seq_len = 2;
    o.n_samples = 0;
    CHECK(tc_calib_sample(&d, encode_bytes, NULL, &o, &s, &err) == TC_ERR);
    o.n_samples = 1;
    CHECK(tc_calib_sample(&d, NULL, NULL, &o, &s, &err) == TC_ERR);
    CHECK_OK(tc_calib_docs_add(&d, "!bang", 5, &err), &err);
    CHECK(tc_calib_sample(&d, encode_fail, NULL, &o, &s, &err) == TC_ERR);
    CHECK(err_says(&err, NULL, "document 3") && err_says(&err, NULL, "cannot encode"));
    CHECK(s.tokens == NULL);
    tc_calib_docs empty = {0};
    CHECK(tc_calib_sample(&empty, encode_bytes, NULL, &o, &s, &err) == TC_ERR);
    CHECK(err_says(&err, NULL, "empty"));
    tc_calib_docs_free(&d);

    tc_calib_opts def = tc_calib_default_opts(512, 1);
    CHECK(def.n_samples == 64 && def.seq_len == 256 && def.seed == 0 && def.bos_id == 1);
    def = tc_calib_default_opts(128, -1);
    CHECK(def.seq_len == 128 && def.bos_id == -1);
}

static void test_split(void)
{
    tc_error err;
    tc_calib_docs d = {0}, cal, ev;
    const char *names[] = {"d0", "d1", "d2", "d3", "d4"};
    for (int i = 0; i < 5; i++)
        CHECK_OK(tc_calib_docs_add(&d, names[i], 2, &err), &err);
    CHECK_OK(tc_calib_split(&d, 2, &cal, &ev, &err), &err);
    CHECK(cal.n_docs == 3 && ev.n_docs == 2);
    CHECK(doc_is(&cal, 0, "d0") && doc_is(&cal, 2, "d2") && doc_is(&ev, 0, "d3") && doc_is(&ev, 1, "d4"));
    tc_calib_docs_free(&cal);
    tc_calib_docs_free(&ev);
    CHECK(tc_calib_split(&d, 0, &cal, &ev, &err) == TC_ERR);
    CHECK(tc_calib_split(&d, 5, &cal, &ev, &err) == TC_ERR);
    CHECK(err_says(&err, NULL, "non-empty"));
    tc_calib_docs_free(&d);
}

static void test_assets(void)
{
    char buf[1024];
    const char *p = tu_asset(buf, sizeof buf, "text/tinystories_valid_1000.txt");
    if (!p) {
        printf("note: TinyStories text absent, real-text check skipped\n");
        return;
    }
    tc_error err;
    tc_calib_docs d = {0}, cal, ev;
    CHECK_OK(tc_calib_docs_read(&d, p, TC_CALIB_AUTO, NULL, &err), &err);
    /* Stories and their paragraphs are blank-line separated: more paragraphs than stories. */
    CHECK(d.n_docs > 1000);
    int no_blank_lines = 1;
    for (size_t i = 0; i < d.n_docs; i++) {
        size_t a = d.offsets[i], b = d.offsets[i + 1];
        no_blank_lines &= b > a && d.text[a] != '\n' && d.text[b - 1] != '\n';
    }
    CHECK(no_blank_lines);
    CHECK_OK(tc_calib_split(&d, 200, &cal, &ev, &err), &err);
    tc_calib_opts o = tc_calib_default_opts(512, 1);
    tc_calib_set s;
    CHECK_OK(tc_calib_sample(&ev, encode_bytes, NULL, &o, &s, &err), &err);
    CHECK(s.n_seqs == 64 && s.n_tokens == 64 * 256);
    tc_calib_set_free(&s);
    tc_calib_docs_free(&cal);
    tc_calib_docs_free(&ev);
    tc_calib_docs_free(&d);
}

int main(void)
{
    if (!tu_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_plain();
    test_jsonl();
    test_gzip();
    test_tokens();
    test_sampling();
    test_bos_and_errors();
    test_split();
    test_disjoint_in_memory();
    test_disjoint_files();
    test_windows_json();
    test_assets();
    return tu_finish("test_calib");
}
