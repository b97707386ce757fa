/* Tokenizers against their reference implementations: the llama.cpp and
 * Hugging Face case files, SentencePiece's spm_encode run live, the three
 * forms of the stories260K vocabulary agreeing, round trips, and hostile
 * vocabulary files. */
#include "testutil.h"

#include <stdint.h>

#include "tc/gguf.h"
#include "tc/mapfile.h"
#include "tc/tokenizer.h"

#include "../calib/tok_nfc.h"

static int tested_any;

/* ---- case files ------------------------------------------------------- */

typedef struct cases {
    char *inp;   /* the .inp file, cut in place at each separator */
    char **text; /* case starts */
    size_t *len;
    char *out;
    char **ids; /* expected id line per case */
    size_t n;
} cases;

static const char sep[] = "\n__ggml_vocab_test__\n";

static void cases_free(cases *c)
{
    free(c->inp);
    free(c->text);
    free(c->len);
    free(c->out);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

static int cases_load(cases *c, const char *inp_path, const char *out_path)
{
    memset(c, 0, sizeof *c);
    tc_error err;
    uint64_t ni, no;
    if (tc_read_small_file(inp_path, 1 << 24, &c->inp, &ni, &err) ||
        tc_read_small_file(out_path, 1 << 24, &c->out, &no, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        cases_free(c);
        return -1;
    }
    size_t cap = 0;
    for (char *p = c->inp; (p = strstr(p, sep)); p += sizeof sep - 1)
        cap++;
    c->text = calloc(cap + 1, sizeof *c->text);
    c->len = calloc(cap + 1, sizeof *c->len);
    c->ids = calloc(cap + 1, sizeof *c->ids);
    char *p = c->inp;
    for (size_t i = 0; i < cap; i++) {
        char *e = strstr(p, sep);
        c->text[i] = p;
        c->len[i] = (size_t)(e - p);
        p = e + sizeof sep - 1;
    }
    char *q = c->out;
    for (size_t i = 0; i < cap && *q; i++) {
        c->ids[i] = q;
        char *nl = strchr(q, '\n');
        if (!nl)
            break;
        *nl = '\0';
        q = nl + 1;
        c->n = i + 1;
    }
    if (c->n != cap)
        fprintf(stderr, "%s: %zu cases but %zu id lines\n", out_path, cap, c->n);
    return c->n == cap ? 0 : -1;
}

static size_t parse_ids(const char *line, int32_t *ids, size_t cap)
{
    size_t n = 0;
    char *end;
    for (const char *p = line; *p;) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (n < cap)
            ids[n] = (int32_t)v;
        n++;
        p = end;
    }
    return n;
}

static int has_unk(const tc_tokenizer *t, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == tc_tokenizer_unk(t))
            return 1;
    return 0;
}

/* Every case must encode to the expected ids and decode back to itself. */
static void run_cases(const tc_tokenizer *t, const char *inp_rel, const char *out_rel)
{
    char ip[1024], op[1024];
    if (!tu_asset(ip, sizeof ip, inp_rel) || !tu_asset(op, sizeof op, out_rel)) {
        printf("  (skipping %s: absent)\n", inp_rel);
        return;
    }
    cases c;
    CHECK(cases_load(&c, ip, op) == 0);
    size_t bad = 0;
    int32_t *want = malloc(65536 * sizeof *want);
    for (size_t i = 0; i < c.n; i++) {
        tc_error err;
        int32_t *ids = NULL;
        size_t n = 0;
        size_t nw = parse_ids(c.ids[i], want, 65536);
        if (tc_tokenizer_encode(t, c.text[i], c.len[i], 0, &ids, &n, &err) != TC_OK) {
            fprintf(stderr, "%s case %zu: %s\n", inp_rel, i, err.msg);
            bad++;
            continue;
        }
        int same = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
        if (!same) {
            bad++;
            fprintf(stderr, "%s case %zu \"%.*s\":\n  want", inp_rel, i, (int)(c.len[i] > 60 ? 60 : c.len[i]),
                    c.text[i]);
            for (size_t k = 0; k < nw && k < 40; k++)
                fprintf(stderr, " %d", want[k]);
            fprintf(stderr, "\n  got ");
            for (size_t k = 0; k < n && k < 40; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        if (!has_unk(t, ids, n)) {
            char *back;
            size_t blen;
            CHECK_OK(tc_tokenizer_decode(t, ids, n, &back, &blen, &err), &err);
            int round = blen == c.len[i] && memcmp(back, c.text[i], blen) == 0;
            CHECK_MSG(round, "%s case %zu does not decode back to its text", inp_rel, i);
            free(back);
        }
        free(ids);
    }
    CHECK_MSG(bad == 0, "%s: %zu of %zu cases differ", inp_rel, bad, c.n);
    printf("  %s: %zu cases, %zu differ\n", inp_rel, c.n, bad);
    tested_any = 1;
    free(want);
    cases_free(&c);
}

/* Large vocabularies are loaded once per run and shared by the tests. */
static struct {
    const char *rel;
    tc_tokenizer *t;
} cache[16];

static tc_tokenizer *shared_asset(const char *rel);

static void cache_free(void)
{
    for (size_t i = 0; i < sizeof cache / sizeof cache[0]; i++)
        tc_tokenizer_free(cache[i].t);
}

static tc_tokenizer *open_asset(const char *rel)
{
    char p[1024];
    if (!tu_asset(p, sizeof p, rel)) {
        printf("  (skipping %s: absent)\n", rel);
        return NULL;
    }
    tc_tokenizer *t = NULL;
    tc_error err;
    CHECK_OK(tc_tokenizer_open(&t, p, &err), &err);
    return t;
}

static tc_tokenizer *shared_asset(const char *rel)
{
    size_t i = 0;
    for (; i < sizeof cache / sizeof cache[0] && cache[i].rel; i++)
        if (strcmp(cache[i].rel, rel) == 0)
            return cache[i].t;
    if (i == sizeof cache / sizeof cache[0])
        return NULL;
    cache[i].rel = rel;
    cache[i].t = open_asset(rel);
    return cache[i].t;
}

static void test_case_file(const char *vocab, const char *inp, const char *out)
{
    tc_tokenizer *t = shared_asset(vocab);
    if (t)
        run_cases(t, inp, out);
}

static void test_case_files(void)
{
    static char v_names[16][256];
    size_t nv = 0;
    static const char *ll[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon",
                               "llama-bpe", "qwen2"};
    char v[256], i[300], o[300];
    for (size_t k = 0; k < sizeof ll / sizeof ll[0]; k++) {
        snprintf(v, sizeof v, "tokenizers/llamacpp/ggml-vocab-%s.gguf", ll[k]);
        strcpy(v_names[nv], v);
        snprintf(i, sizeof i, "%s.inp", v);
        snprintf(o, sizeof o, "%s.out", v);
        test_case_file(v_names[nv++], i, o);
    }
    static const char *hf[] = {"llama3", "qwen2", "mistral"};
    for (size_t k = 0; k < sizeof hf / sizeof hf[0]; k++) {
        snprintf(v, sizeof v, "tokenizers/hf/%s/tokenizer.json", hf[k]);
        strcpy(v_names[nv], v);
        snprintf(i, sizeof i, "tokenizers/hf/%s/cases.inp", hf[k]);
        snprintf(o, sizeof o, "tokenizers/hf/%s/cases.out", hf[k]);
        test_case_file(v_names[nv++], i, o);
    }
    test_case_file("tokenizers/llama2c/llama2-tokenizer.bin", "tokenizers/llama2c/llama2-cases.inp",
                   "tokenizers/llama2c/llama2-cases.out");
}


/* ---- helpers ------------------------------------------------------------ */

static int encode_eq(const tc_tokenizer *t, const char *text, unsigned flags, const int32_t *want,
                     size_t nw)
{
    tc_error err;
    int32_t *ids;
    size_t n;
    if (tc_tokenizer_encode(t, text, strlen(text), flags, &ids, &n, &err) != TC_OK) {
        fprintf(stderr, "encode \"%s\": %s\n", text, err.msg);
        return 0;
    }
    int same = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "encode \"%s\": got", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return same;
}

/* Up to max lines of a text asset, spaces collapsed and trimmed the way
 * SentencePiece's default normalization does, so that every form of a
 * vocabulary sees the same input. */
static char **sample_lines(const char *rel, size_t max, size_t *n_out)
{
    char p[1024];
    char *text;
    uint64_t len;
    tc_error err;
    *n_out = 0;
    if (!tu_asset(p, sizeof p, rel) || tc_read_small_file(p, 1ull << 30, &text, &len, &err))
        return NULL;
    char **lines = calloc(max, sizeof *lines);
    char *s = text;
    size_t n = 0;
    while (n < max && *s) {
        char *nl = strchr(s, '\n');
        size_t k = nl ? (size_t)(nl - s) : strlen(s);
        char *line = malloc(k + 1);
        size_t o = 0;
        for (size_t i = 0; i < k; i++) {
            if (s[i] == ' ' && (o == 0 || line[o - 1] == ' '))
                continue;
            line[o++] = s[i];
        }
        while (o && line[o - 1] == ' ')
            o--;
        line[o] = '\0';
        lines[n++] = line;
        s = nl ? nl + 1 : s + k;
    }
    free(text);
    *n_out = n;
    return lines;
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static const char *texts[] = {"text/tinystories_valid_1000.txt", "text/gutenberg_heldout.txt",
                              "text/wikitext2_test_raw.txt"};

/* ---- SentencePiece, live ------------------------------------------------ */

/* Runs spm_encode over the lines; returns one malloc'd id line per line. */
static char **spm_ids(const char *model, char **lines, size_t n)
{
    char dir[512], in[600], cmd[2048];
    if (!tu_tmpdir(dir, sizeof dir))
        return NULL;
    snprintf(in, sizeof in, "%s/lines.txt", dir);
    FILE *f = fopen(in, "w");
    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "spm_encode --model='%s' --output_format=id < '%s'", model, in);
    FILE *pp = popen(cmd, "r");
    if (!pp)
        return NULL;
    char **out = calloc(n, sizeof *out);
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap);
    while (got < n && fgets(buf, (int)cap, pp)) {
        buf[strcspn(buf, "\n")] = '\0';
        out[got++] = strdup(buf);
    }
    free(buf);
    pclose(pp);
    remove(in);
    rmdir(dir);
    if (got != n) {
        fprintf(stderr, "spm_encode gave %zu lines for %zu\n", got, n);
        free_lines(out, got);
        return NULL;
    }
    return out;
}

static void compare_with_spm(const char *model_rel, const char *const *vocabs, size_t n_vocabs)
{
    char model[1024];
    if (!tu_asset(model, sizeof model, model_rel)) {
        printf("  (skipping %s: absent)\n", model_rel);
        return;
    }
    tc_tokenizer *toks[4] = {0};
    for (size_t v = 0; v < n_vocabs; v++)
        toks[v] = open_asset(vocabs[v]);
    int32_t *want = malloc(65536 * sizeof *want);
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        size_t n;
        char **lines = sample_lines(texts[k], 300, &n);
        char **ref = lines ? spm_ids(model, lines, n) : NULL;
        CHECK_MSG(!lines || ref, "spm_encode failed on %s", texts[k]);
        for (size_t v = 0; ref && v < n_vocabs; v++) {
            size_t bad = 0;
            for (size_t i = 0; toks[v] && i < n; i++) {
                size_t nw = parse_ids(ref[i], want, 65536);
                bad += !encode_eq(toks[v], lines[i], 0, want, nw);
            }
            CHECK_MSG(bad == 0, "%s vs spm_encode on %s: %zu of %zu lines differ", vocabs[v],
                      texts[k], bad, n);
            if (toks[v])
                printf("  %s vs spm_encode %s on %zu lines of %s: %zu differ\n", vocabs[v],
                       model_rel, n, texts[k], bad);
            tested_any = 1;
        }
        if (ref)
            free_lines(ref, n);
        if (lines)
            free_lines(lines, n);
    }
    free(want);
    for (size_t v = 0; v < n_vocabs; v++)
        tc_tokenizer_free(toks[v]);
}

static void test_sentencepiece_live(void)
{
    if (system("command -v spm_encode >/dev/null 2>&1") != 0) {
        printf("  spm_encode is not on PATH: skipping the live SentencePiece comparison\n");
        return;
    }
    static const char *const v512[] = {"models/stories260K/tok512.bin",
                                       "models/stories260K/stories260K.gguf",
                                       "models/stories260K-hf/tokenizer.json"};
    static const char *const v105[] = {"models/babyllama105/tok105.bin"};
    compare_with_spm("models/stories260K/tok512.model", v512, 3);
    compare_with_spm("models/babyllama105/tok105.model", v105, 1);
}

/* ---- the three forms of one vocabulary ----------------------------------- */

/* tokenizer.bin, GGUF and tokenizer.json of stories260K agree on raw text
 * (whole paragraphs, spaces and newlines untouched), and decoding restores
 * the text. */
static void test_forms_agree(void)
{
    tc_tokenizer *bin = open_asset("models/stories260K/tok512.bin");
    tc_tokenizer *gg = open_asset("models/stories260K/stories260K.gguf");
    tc_tokenizer *js = open_asset("models/stories260K-hf/tokenizer.json");
    char p[1024];
    char *text = NULL;
    uint64_t len = 0;
    tc_error err;
    if (bin && gg && js && tu_asset(p, sizeof p, texts[0]) &&
        tc_read_small_file(p, 1ull << 30, &text, &len, &err) == TC_OK) {
        size_t chunk = len < 200000 ? (size_t)len : 200000;
        int32_t *a, *b, *c;
        size_t na, nb, nc;
        CHECK_OK(tc_tokenizer_encode(bin, text, chunk, TC_TOK_BOS, &a, &na, &err), &err);
        CHECK_OK(tc_tokenizer_encode(gg, text, chunk, TC_TOK_BOS, &b, &nb, &err), &err);
        CHECK_OK(tc_tokenizer_encode(js, text, chunk, TC_TOK_BOS, &c, &nc, &err), &err);
        CHECK(na == nb && na == nc && na > chunk / 8);
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
        CHECK(na == nc && memcmp(a, c, na * sizeof *a) == 0);
        CHECK(a[0] == 1);
        tc_tokenizer *all[3] = {bin, gg, js};
        for (int k = 0; k < 3; k++) {
            char *back;
            size_t blen;
            CHECK_OK(tc_tokenizer_decode(all[k], a, na, &back, &blen, &err), &err);
            CHECK(blen == chunk && memcmp(back, text, chunk) == 0);
            free(back);
        }
        /* streaming pieces concatenate to the same text */
        size_t o = 0;
        int ok = 1;
        for (size_t i = 1; i < na && ok; i++) {
            const char *piece;
            size_t pl;
            ok = tc_tokenizer_piece(bin, a[i - 1], a[i], &piece, &pl, &err) == TC_OK &&
                 o + pl <= chunk && memcmp(text + o, piece, pl) == 0;
            o += pl;
        }
        CHECK(ok && o == chunk);
        free(a);
        free(b);
        free(c);
        tested_any = 1;
    }
    free(text);
    if (bin && gg && js) {
        CHECK(tc_tokenizer_vocab_size(bin) == 512 && tc_tokenizer_vocab_size(gg) == 512 &&
              tc_tokenizer_vocab_size(js) == 512);
        CHECK(tc_tokenizer_bos(bin) == 1 && tc_tokenizer_bos(gg) == 1 && tc_tokenizer_bos(js) == 1);
        CHECK(tc_tokenizer_eos(bin) == 2 && tc_tokenizer_eos(gg) == 2 && tc_tokenizer_eos(js) == 2);
        /* a character outside the 512 pieces falls back to its bytes */
        /* byte tokens <0x00>.. start at id 3 */
        const int32_t snow[] = {3 + 0xe2, 3 + 0x98, 3 + 0x83};
        for (int k = 0; k < 3; k++) {
            tc_tokenizer *t = k == 0 ? bin : k == 1 ? gg : js;
            int32_t *ids;
            size_t n;
            CHECK_OK(tc_tokenizer_encode(t, "\xe2\x98\x83", 3, TC_TOK_BOS | TC_TOK_EOS, &ids, &n,
                                         &err), &err);
            /* BOS, the dummy-prefix piece, three byte tokens, EOS */
            CHECK(n == 6 && ids[0] == 1 && ids[2] == snow[0] && ids[3] == snow[1] &&
                  ids[4] == snow[2] && ids[5] == 2);
            free(ids);
        }
    }
    tc_tokenizer_free(bin);
    tc_tokenizer_free(gg);
    tc_tokenizer_free(js);
}

/* ---- special tokens, flags, unknown characters -------------------------- */

static void test_special_tokens(void)
{
    tc_tokenizer *t = shared_asset("tokenizers/llamacpp/ggml-vocab-llama-spm.gguf");
    if (t) {
        tc_error err;
        /* "<s>" is text unless asked: then the BOS token, and the text after
         * it gets its own dummy prefix as llama.cpp does */
        const int32_t plain[] = {529, 29879, 29958, 10994};
        const int32_t parsed[] = {1, 15043};
        CHECK(encode_eq(t, "<s>Hello", 0, plain, 4));
        CHECK(encode_eq(t, "<s>Hello", TC_TOK_PARSE_SPECIAL, parsed, 2));
        const int32_t both[] = {1, 15043, 2};
        CHECK(encode_eq(t, "Hello", TC_TOK_BOS | TC_TOK_EOS, both, 3));
        CHECK(encode_eq(t, "", TC_TOK_BOS, both, 1));
        CHECK(encode_eq(t, "", 0, NULL, 0));
        CHECK(tc_tokenizer_default_flags(t) == TC_TOK_BOS);
        char *back;
        size_t len;
        CHECK_OK(tc_tokenizer_decode(t, both, 3, &back, &len, &err), &err);
        CHECK(strcmp(back, "Hello") == 0);
        free(back);
        const int32_t bad_id[] = {1, 32000};
        CHECK(tc_tokenizer_decode(t, bad_id, 2, &back, &len, &err) == TC_ERR);
        CHECK(strstr(err.msg, "32000") != NULL);
        const char *piece;
        CHECK_OK(tc_tokenizer_piece(t, 1, 15043, &piece, &len, &err), &err);
        CHECK(len == 5 && memcmp(piece, "Hello", 5) == 0);
        CHECK_OK(tc_tokenizer_piece(t, 15043, 15043, &piece, &len, &err), &err);
        CHECK(len == 6 && memcmp(piece, " Hello", 6) == 0);
        CHECK_OK(tc_tokenizer_piece(t, 15043, 3 + 0x41, &piece, &len, &err), &err);
        CHECK(len == 1 && piece[0] == 'A');
    }
    t = shared_asset("tokenizers/hf/llama3/tokenizer.json");
    if (t) {
        const char *s = "<|begin_of_text|>Hi";
        int32_t *a, *b;
        size_t na, nb;
        tc_error err;
        CHECK_OK(tc_tokenizer_encode(t, s, strlen(s), 0, &a, &na, &err), &err);
        CHECK_OK(tc_tokenizer_encode(t, s, strlen(s), TC_TOK_PARSE_SPECIAL, &b, &nb, &err), &err);
        CHECK(na > 2 && nb == 2 && b[0] == 128000 && b[0] == tc_tokenizer_bos(t));
        CHECK(tc_tokenizer_eos(t) == 128001);
        free(a);
        free(b);
        /* control tokens decode to nothing, byte-level pieces to their bytes */
        const int32_t ids[] = {128000, 13347, 1917};
        char *back;
        size_t len;
        CHECK_OK(tc_tokenizer_decode(t, ids, 3, &back, &len, &err), &err);
        CHECK(strcmp(back, "Hi world") == 0);
        free(back);
    }
}

/* babyllama105 has neither byte fallback nor, in its tokenizer.json, an
 * unknown token: a character outside its alphabet is an error there; the
 * tokenizer.bin form has <unk> at id 0 and gives it, fused as SentencePiece
 * does. */
static void test_unknown_characters(void)
{
    tc_tokenizer *js = open_asset("models/babyllama105-hf/tokenizer.json");
    tc_tokenizer *bin = open_asset("models/babyllama105/tok105.bin");
    tc_error err;
    int32_t *ids;
    size_t n;
    const char *s = "a \xc3\x86\xc3\x98 b";
    if (js) {
        CHECK(tc_tokenizer_encode(js, s, strlen(s), 0, &ids, &n, &err) == TC_ERR);
        CHECK(strstr(err.msg, "tokenizer.json") && strstr(err.msg, "cannot encode"));
        CHECK_OK(tc_tokenizer_encode(js, "a b", 3, 0, &ids, &n, &err), &err);
        free(ids);
    }
    if (bin) {
        CHECK_OK(tc_tokenizer_encode(bin, s, strlen(s), 0, &ids, &n, &err), &err);
        int unk = 0;
        for (size_t i = 0; i < n; i++)
            unk += ids[i] == 0;
        CHECK(unk == 1);
        free(ids);
    }
    tc_tokenizer_free(js);
    tc_tokenizer_free(bin);
}

/* ---- arbitrary bytes ------------------------------------------------------ */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* With byte fallback every byte string encodes and decodes back exactly,
 * valid UTF-8 or not (but for a literal U+2581, which decodes as a space, as
 * in SentencePiece, and so is left out of the alphabet); byte-level BPE refuses invalid UTF-8 cleanly and
 * restores valid text exactly. */
static void test_arbitrary_bytes(void)
{
    tc_tokenizer *spm = shared_asset("tokenizers/llamacpp/ggml-vocab-llama-spm.gguf");
    tc_tokenizer *bl = shared_asset("tokenizers/llamacpp/ggml-vocab-gpt-2.gguf");
    static const char *const alphabet[] = {"a", "b", " ", "  ", "\n", "\t", "\xc3\xa9",
                                           "\xf0\x9f\xa6\x99", "1", "'s", ".", "\xe4\xb8\xad", "<s>"};
    char text[512];
    int spm_ok = 1, bl_ok = 1, bl_refused = 1;
    for (int round = 0; round < 300; round++) {
        size_t n = 0;
        int raw = round % 3 == 0;
        while (n < 200) {
            if (raw) {
                text[n++] = (char)(rng() & 0xff);
            } else {
                const char *a = alphabet[rng() % (sizeof alphabet / sizeof alphabet[0])];
                memcpy(text + n, a, strlen(a));
                n += strlen(a);
            }
        }
        for (int k = 0; k < 2; k++) {
            tc_tokenizer *t = k ? bl : spm;
            if (!t)
                continue;
            int32_t *ids;
            size_t m;
            tc_error err;
            int rc = tc_tokenizer_encode(t, text, n, 0, &ids, &m, &err);
            if (k && raw) {
                bl_refused &= rc == TC_ERR && strstr(err.msg, "UTF-8") != NULL;
                if (rc == TC_OK)
                    free(ids);
                continue;
            }
            char *back = NULL;
            size_t blen = 0;
            int ok = rc == TC_OK && tc_tokenizer_decode(t, ids, m, &back, &blen, &err) == TC_OK &&
                     blen == n && memcmp(back, text, n) == 0;
            if (k)
                bl_ok &= ok;
            else
                spm_ok &= ok;
            if (rc == TC_OK)
                free(ids);
            free(back);
        }
    }
    CHECK(spm_ok);
    CHECK(bl_ok);
    CHECK(bl_refused);
}

/* ---- Unicode NFC ----------------------------------------------------------- */

static int nfc_is(const char *in, const char *want)
{
    char *out = NULL;
    size_t cap = 0, len;
    uint32_t *cps = NULL;
    size_t cps_cap = 0;
    long rc = tok_nfc(in, strlen(in), &out, &cap, &len, &cps, &cps_cap);
    int ok = rc == 0 && len == strlen(want) && memcmp(out, want, len) == 0;
    free(out);
    free(cps);
    return ok;
}

static void test_nfc(void)
{
    CHECK(nfc_is("plain ASCII", "plain ASCII"));
    CHECK(nfc_is("e\xcc\x81", "\xc3\xa9"));                     /* e + acute -> é */
    CHECK(nfc_is("\xe2\x84\xab", "\xc3\x85"));                 /* Angstrom sign -> Å */
    CHECK(nfc_is("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81")); /* jamo -> 각 */
    CHECK(nfc_is("\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc")); /* excluded: stays apart */
    /* marks reorder by class: dot below (220) before acute (230), then compose */
    CHECK(nfc_is("a\xcc\x81\xcc\xa3", "\xe1\xba\xa1\xcc\x81"));
    char *out = NULL;
    size_t cap = 0, len;
    uint32_t *cps = NULL;
    size_t cps_cap = 0;
    CHECK(tok_nfc("ab\xc3", 3, &out, &cap, &len, &cps, &cps_cap) == 1 + 2);
    free(out);
    free(cps);

    /* Qwen's tokenizer.json declares NFC: decomposed and composed text agree */
    tc_tokenizer *t = shared_asset("tokenizers/hf/qwen2/tokenizer.json");
    if (t) {
        const char *a = "Fu\xcc\x88hrer \xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8";
        const char *b = "F\xc3\xbchrer \xea\xb0\x81";
        int32_t *ia, *ib;
        size_t na, nb;
        tc_error err;
        CHECK_OK(tc_tokenizer_encode(t, a, strlen(a), 0, &ia, &na, &err), &err);
        CHECK_OK(tc_tokenizer_encode(t, b, strlen(b), 0, &ib, &nb, &err), &err);
        CHECK(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0);
        free(ia);
        free(ib);
        CHECK(tc_tokenizer_encode(t, "ab\xff", 3, 0, &ia, &na, &err) == TC_ERR &&
              strstr(err.msg, "UTF-8"));
    }
}

/* ---- synthetic vocabularies: merge order, hostile files ------------------ */

typedef struct tok_def {
    const char *text;
    float score;
} tok_def;

static size_t put_i32(uint8_t *p, int32_t v)
{
    memcpy(p, &v, 4);
    return 4;
}

/* Writes a llama2.c tokenizer.bin of the given tokens; returns its size. */
static size_t make_bin(uint8_t *buf, const tok_def *defs, int n)
{
    size_t o = put_i32(buf, 8);
    for (int i = 0; i < n; i++) {
        memcpy(buf + o, &defs[i].score, 4);
        o += 4;
        o += put_i32(buf + o, (int32_t)strlen(defs[i].text));
        memcpy(buf + o, defs[i].text, strlen(defs[i].text));
        o += strlen(defs[i].text);
    }
    return o;
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static const tok_def small[] = {
    {"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}, {" ", -1}, {"a", -2}, {"b", -3},
    {"aa", -4},   {" a", -5},     {"ab", -6},      {" b", -7}, {"bb", -1.5f},
};

static void test_synthetic_merges(const char *dir)
{
    uint8_t buf[4096];
    char path[1024];
    size_t n = make_bin(buf, small, (int)(sizeof small / sizeof small[0]));
    snprintf(path, sizeof path, "%s/small.bin", dir);
    CHECK(write_file(path, buf, n) == 0);
    tc_tokenizer *t = NULL;
    tc_error err;
    CHECK_OK(tc_tokenizer_from_llama2c(&t, path, 0, &err), &err);
    if (!t)
        return;
    CHECK(tc_tokenizer_vocab_size(t) == 11);
    /* " aaa": the pairs "aa" tie, the leftmost merges first, so " a" never forms */
    const int32_t aaa[] = {3, 6, 4};
    CHECK(encode_eq(t, "aaa", 0, aaa, 3));
    /* "bb" outranks " b" */
    const int32_t bb[] = {3, 10};
    CHECK(encode_eq(t, "bb", 0, bb, 2));
    /* "ab" is scored below " a", which merges first */
    const int32_t ab[] = {7, 5};
    CHECK(encode_eq(t, "ab", 0, ab, 2));
    /* no byte tokens: unknown characters become one <unk> per run */
    const int32_t unk[] = {3, 0, 4};
    CHECK(encode_eq(t, "xyza", 0, unk, 3));
    tc_tokenizer_free(t);

    /* a max_token_length of 123 starts the file with '{': still tokenizer.bin */
    put_i32(buf, 123);
    CHECK(write_file(path, buf, n) == 0);
    CHECK_OK(tc_tokenizer_open(&t, path, &err), &err);
    if (t)
        CHECK(encode_eq(t, "bb", 0, bb, 2));
    tc_tokenizer_free(t);

    /* a vocabulary size larger than the file holds, or smaller, read exactly */
    CHECK(tc_tokenizer_from_llama2c(&t, path, 100000, &err) == TC_ERR);
    CHECK(strstr(err.msg, "small.bin") != NULL);
    CHECK_OK(tc_tokenizer_from_llama2c(&t, path, 5, &err), &err);
    if (t)
        CHECK(tc_tokenizer_vocab_size(t) == 5);
    tc_tokenizer_free(t);
}

/* Every truncation of a tokenizer.bin is refused cleanly with the file's
 * name, as are negative and oversized lengths. */
static void test_hostile_llama2c(const char *dir)
{
    uint8_t buf[4096];
    char path[1024];
    size_t n = make_bin(buf, small, (int)(sizeof small / sizeof small[0]));
    snprintf(path, sizeof path, "%s/cut.bin", dir);
    tc_error err;
    int refused = 0, cuts = 0;
    for (size_t cut = 0; cut < n; cut++) {
        tc_tokenizer *t = NULL;
        CHECK(write_file(path, buf, cut) == 0);
        int rc = tc_tokenizer_from_llama2c(&t, path, 11, &err);
        refused += rc == TC_ERR && strstr(err.msg, "cut.bin") != NULL && t == NULL;
        cuts++;
        tc_tokenizer_free(t);
    }
    CHECK(refused == cuts);
    uint8_t bad[64];
    size_t o = put_i32(bad, 8);
    float sc = 0;
    memcpy(bad + o, &sc, 4);
    o += 4;
    size_t len_at = o;
    o += put_i32(bad + o, -5);
    memcpy(bad + o, "abcd", 4);
    o += 4;
    CHECK(write_file(path, bad, o) == 0);
    tc_tokenizer *t = NULL;
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "length"));
    put_i32(bad + len_at, 1 << 30);
    CHECK(write_file(path, bad, o) == 0);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "cut.bin"));
    put_i32(bad, 0);
    CHECK(write_file(path, bad, 4) == 0);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "max_token_length"));
    CHECK(tc_tokenizer_open(&t, "/nonexistent/tokenizer.bin", &err) == TC_ERR);
}

static const char good_json[] =
    "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\","
    " \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"\\u2581\": 3, \"a\": 4, \"b\": 5,"
    " \"\\u2581a\": 6, \"ab\": 7, \"\\u2581ab\": 8},"
    " \"merges\": [\"a b\", \"\\u2581 a\", \"\\u2581a b\"]},"
    " \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
    " {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\","
    " \"prepend\": \"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"},"
    " \"content\": \"\\u2581\"}]}, \"pre_tokenizer\": null}";

/* Merge rank, not score, decides for tokenizer.json; then malformed files. */
static void test_json(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(write_file(path, good_json, strlen(good_json)) == 0);
    tc_tokenizer *t = NULL;
    tc_error err;
    CHECK_OK(tc_tokenizer_open(&t, path, &err), &err);
    if (t) {
        /* "a b" ranks before "▁ a", so "ab" forms first; "▁ ab" is no merge,
         * although "▁ab" is a token that "▁a b" would have made */
        const int32_t ab[] = {3, 7};
        CHECK(encode_eq(t, "ab", 0, ab, 2));
        const int32_t ba[] = {3, 5, 6};
        CHECK(encode_eq(t, "b a", 0, ba, 3));
        const int32_t unk[] = {3, 0};
        CHECK(encode_eq(t, "x", 0, unk, 2));
        CHECK(tc_tokenizer_bos(t) == 1 && tc_tokenizer_eos(t) == 2 && tc_tokenizer_unk(t) == 0);
        tc_tokenizer_free(t);
    }
    /* Metaspace: no second prefix before a space; with "first", none after
     * a special token either */
    static const char meta_always[] =
        "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\":"
        " \"\\u2581\", \"prepend_scheme\": \"always\", \"split\": false}}";
    char doc[4096];
    const char *at = strstr(good_json, "\"normalizer\"");
    for (int first = 0; first < 2; first++) {
        snprintf(doc, sizeof doc, "%.*s%s", (int)(at - good_json), good_json, meta_always);
        if (first)
            memcpy(strstr(doc, "always"), "first\" ", 7);
        CHECK(write_file(path, doc, strlen(doc)) == 0);
        t = NULL;
        CHECK_OK(tc_tokenizer_open(&t, path, &err), &err);
        if (!t)
            continue;
        const int32_t sp[] = {3, 7};
        CHECK(encode_eq(t, " ab", 0, sp, 2));
        const int32_t after_always[] = {3, 7, 1, 3, 7};
        const int32_t after_first[] = {3, 7, 1, 7};
        CHECK(encode_eq(t, "ab<s>ab", TC_TOK_PARSE_SPECIAL, first ? after_first : after_always,
                        first ? 4 : 5));
        tc_tokenizer_free(t);
    }
    /* every truncation is invalid JSON, refused with the file's name */
    size_t n = strlen(good_json);
    int refused = 0, cuts = 0;
    for (size_t cut = 1; cut < n; cut += 7) {
        CHECK(write_file(path, good_json, cut) == 0);
        t = NULL;
        refused += tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "tokenizer.json");
        cuts++;
        tc_tokenizer_free(t);
    }
    CHECK(refused == cuts);
    static const struct {
        const char *from, *to, *msg;
    } edits[] = {
        {"\"a b\"", "\"a zz\"", "not in the vocabulary"},
        {"\"a b\"", "\"ab\"", "not a pair"},
        {"\"b\": 5", "\"b\": 1e12", "invalid id"},
        {"\"b\": 5", "\"b\": -1", "invalid id"},
        {"\"b\": 5", "\"b\": \"5\"", "invalid id"},
        {"\"BPE\"", "\"Unigram\"", "unsupported"},
        {"\"Prepend\"", "\"Lowercase\"", "unsupported normalizer"},
        {"\"unk_token\": \"<unk>\"", "\"unk_token\": \"<nope>\"", "unk_token"},
        {"\"merges\": [", "\"merges\": [17, ", "not a pair"},
        {"\"byte_fallback\": true", "\"dropout\": 0.1", "dropout"},
        {"\"byte_fallback\": true", "\"end_of_word_suffix\": \"</w>\"", "suffix"},
        {"\"vocab\": {", "\"vocab\": [", "JSON"},
        {"\"vocab\": {", "\"vocab\": 3, \"x\": {", "not an object"},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        at = strstr(good_json, edits[k].from);
        snprintf(doc, sizeof doc, "%.*s%s%s", (int)(at - good_json), good_json, edits[k].to,
                 at + strlen(edits[k].from));
        CHECK(write_file(path, doc, strlen(doc)) == 0);
        t = NULL;
        int rc = tc_tokenizer_open(&t, path, &err);
        CHECK_MSG(rc == TC_ERR && strstr(err.msg, "tokenizer.json") && strstr(err.msg, edits[k].msg),
                  "edit %zu: %s", k, rc == TC_ERR ? err.msg : "accepted");
        tc_tokenizer_free(t);
    }
}

/* GGUF vocabularies with missing or mistyped arrays are refused. */
static void test_hostile_gguf(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab.gguf", dir);
    tc_gguf_value toks[3], types[3], scores[2];
    const char *names[3] = {"<unk>", "a", "b"};
    for (int i = 0; i < 3; i++) {
        toks[i].type = TC_GGUF_STRING;
        toks[i].v.s.ptr = names[i];
        toks[i].v.s.len = strlen(names[i]);
        types[i].type = TC_GGUF_I32;
        types[i].v.i = i == 0 ? 2 : 1;
    }
    for (int i = 0; i < 2; i++) {
        scores[i].type = TC_GGUF_F32;
        scores[i].v.f = 0;
    }
    tc_gguf_writer_kv kv[4];
    memset(kv, 0, sizeof kv);
    kv[0].key = "tokenizer.ggml.model";
    kv[0].value.type = TC_GGUF_STRING;
    kv[0].value.v.s.ptr = "llama";
    kv[0].value.v.s.len = 5;
    kv[1].key = "tokenizer.ggml.tokens";
    kv[1].value.type = TC_GGUF_ARRAY;
    kv[1].value.v.arr.type = TC_GGUF_STRING;
    kv[1].value.v.arr.n = 3;
    kv[1].value.v.arr.items = toks;
    kv[2].key = "tokenizer.ggml.token_type";
    kv[2].value.type = TC_GGUF_ARRAY;
    kv[2].value.v.arr.type = TC_GGUF_I32;
    kv[2].value.v.arr.n = 3;
    kv[2].value.v.arr.items = types;
    kv[3].key = "tokenizer.ggml.scores";
    kv[3].value.type = TC_GGUF_ARRAY;
    kv[3].value.v.arr.type = TC_GGUF_F32;
    kv[3].value.v.arr.n = 2; /* one short */
    kv[3].value.v.arr.items = scores;
    tc_error err;
    tc_tokenizer *t = NULL;
    if (tc_gguf_write(path, kv, 4, NULL, 0, 0, &err) != TC_OK) {
        printf("  (cannot write a GGUF here: %s)\n", err.msg);
        return;
    }
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "scores"));
    CHECK(tc_gguf_write(path, kv, 3, NULL, 0, 0, &err) == TC_OK);
    CHECK_OK(tc_tokenizer_open(&t, path, &err), &err);
    tc_tokenizer_free(t);
    tc_gguf_writer_kv kv5[4];
    memcpy(kv5, kv, 3 * sizeof *kv);
    kv5[3].key = "tokenizer.ggml.bos_token_id";
    kv5[3].value.type = TC_GGUF_U32;
    kv5[3].value.v.u = 99;
    CHECK(tc_gguf_write(path, kv5, 4, NULL, 0, 0, &err) == TC_OK);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "BOS"));
    types[1].v.i = 9;
    CHECK(tc_gguf_write(path, kv, 3, NULL, 0, 0, &err) == TC_OK);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "type"));
    types[1].v.i = 1;
    kv[0].value.v.s.ptr = "gpt2"; /* byte-level without merges */
    kv[0].value.v.s.len = 4;
    CHECK(tc_gguf_write(path, kv, 3, NULL, 0, 0, &err) == TC_OK);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "merges"));
    kv[0].value.v.s.ptr = "bert";
    CHECK(tc_gguf_write(path, kv, 3, NULL, 0, 0, &err) == TC_OK);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "unsupported"));
    CHECK(tc_gguf_write(path, kv + 1, 2, NULL, 0, 0, &err) == TC_OK);
    CHECK(tc_tokenizer_open(&t, path, &err) == TC_ERR && strstr(err.msg, "vocab.gguf"));
}

int main(void)
{
    if (!tu_assets())
        printf("  no assets folder (set TC_ASSETS): only synthetic vocabularies are tested\n");
    char dir[512];
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    test_synthetic_merges(dir);
    tested_any = 1;
    test_hostile_llama2c(dir);
    test_json(dir);
    test_hostile_gguf(dir);
    test_case_files();
    test_sentencepiece_live();
    test_forms_agree();
    test_special_tokens();
    test_unknown_characters();
    test_nfc();
    test_arbitrary_bytes();
    cache_free();
    if (!tested_any)
        return tu_skip("no tokenizer assets found");
    return tu_finish("test_tokenizer");
}
