/* Tokenizers against their reference implementations: the llama.cpp and
 * Hugging Face case files, SentencePiece's spm_encode run live, the three
 * forms of the stories260K vocabulary agreeing, round trips, and hostile
 * vocabulary files. */
#include "testutil.h"

#include <stdint.h>

#include "tc/gguf.h"
#include "tc/mapfile.h"
#include "tc/tokenizer.h"

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

static void test_case_file(const char *vocab, const char *inp, const char *out)
{
    tc_tokenizer *t = open_asset(vocab);
    if (!t)
        return;
    run_cases(t, inp, out);
    tc_tokenizer_free(t);
}

static void test_case_files(void)
{
    static const char *ll[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon",
                               "llama-bpe", "qwen2"};
    char v[256], i[300], o[300];
    for (size_t k = 0; k < sizeof ll / sizeof ll[0]; k++) {
        snprintf(v, sizeof v, "tokenizers/llamacpp/ggml-vocab-%s.gguf", ll[k]);
        snprintf(i, sizeof i, "%s.inp", v);
        snprintf(o, sizeof o, "%s.out", v);
        test_case_file(v, i, o);
    }
    static const char *hf[] = {"llama3", "qwen2", "mistral"};
    for (size_t k = 0; k < sizeof hf / sizeof hf[0]; k++) {
        snprintf(v, sizeof v, "tokenizers/hf/%s/tokenizer.json", hf[k]);
        snprintf(i, sizeof i, "tokenizers/hf/%s/cases.inp", hf[k]);
        snprintf(o, sizeof o, "tokenizers/hf/%s/cases.out", hf[k]);
        test_case_file(v, i, o);
    }
    test_case_file("tokenizers/llama2c/llama2-tokenizer.bin", "tokenizers/llama2c/llama2-cases.inp",
                   "tokenizers/llama2c/llama2-cases.out");
}

int main(void)
{
    if (!tu_assets())
        return tu_skip("no assets folder (set TC_ASSETS)");
    test_case_files();
    if (!tested_any)
        return tu_skip("no tokenizer assets found");
    return tu_finish("test_tokenizer");
}
