/* GGUF vocabularies written from tokenizer files (tc/vocab.h).
 *
 * What llama.cpp's own converter wrote from the same tokenizers is in the
 * assets (the GGUF files of tokenizers/llamacpp, stories260K.gguf): tc's tokens, merges,
 * scores and types must equal it.  Each family's vocabulary, written as a
 * GGUF and read back by tc's GGUF tokenizer (which reproduces llama.cpp's,
 * pre-tokenizer by name and SentencePiece merges by score), must encode the
 * case files to the reference ids.  Then the refusals: a pre-tokenizer
 * llama.cpp has no name for, merges that scores cannot order, a tokenizer
 * larger than the model; and the special-token ids, flags and chat template
 * read from tokenizer_config.json and config.json.  (test_llamacpp_vocab runs
 * the files in llama.cpp itself.) */
#include "testutil.h"

#include "tc/gguf.h"
#include "tc/tokenizer.h"
#include "tc/vocab.h"

static char g_dir[256];

static const tc_gguf_value *arr(const tc_vocab *v, const char *key)
{
    const tc_gguf_value *a = tc_vocab_find(v, key);
    return a && a->type == TC_GGUF_ARRAY ? a : NULL;
}

static int same_value(const tc_gguf_value *a, const tc_gguf_value *b)
{
    if (a->type == TC_GGUF_STRING || b->type == TC_GGUF_STRING)
        return a->type == b->type && a->v.s.len == b->v.s.len && memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0;
    if (a->type == TC_GGUF_F32 || b->type == TC_GGUF_F32)
        return a->type == b->type && a->v.f == b->v.f;
    return a->v.i == b->v.i;
}

/* How many elements of key differ between the vocabulary and a GGUF (-1: the
 * lengths differ or a side lacks the key). */
static long count_diff(const tc_vocab *v, const tc_gguf *g, const char *key)
{
    const tc_gguf_value *a = arr(v, key), *b = tc_gguf_find(g, key);
    if (!a || !b || b->type != TC_GGUF_ARRAY || a->v.arr.n != b->v.arr.n) {
        fprintf(stderr, "%s: %s absent or of another length\n", g->path, key);
        return -1;
    }
    long d = 0;
    for (uint64_t i = 0; i < a->v.arr.n; i++)
        d += !same_value(&a->v.arr.items[i], &b->v.arr.items[i]);
    return d;
}

static int str_is(const tc_vocab *v, const char *key, const char *want)
{
    const tc_gguf_value *s = tc_vocab_find(v, key);
    return s && s->type == TC_GGUF_STRING && s->v.s.len == strlen(want) && memcmp(s->v.s.ptr, want, s->v.s.len) == 0;
}

static long u32_of(const tc_vocab *v, const char *key)
{
    const tc_gguf_value *s = tc_vocab_find(v, key);
    return s && (s->type == TC_GGUF_U32 || s->type == TC_GGUF_BOOL) ? (long)s->v.u : -1;
}

/* The vocabulary against the one llama.cpp's converter wrote. */
static void against_reference(const char *tok_rel, const char *ref_rel, int32_t n_vocab, const char *const *keys,
                              long type_diffs)
{
    char tp[512], rp[512];
    if (!tu_asset(tp, sizeof tp, tok_rel) || !tu_asset(rp, sizeof rp, ref_rel)) {
        printf("%s: skipped (not in the assets)\n", tok_rel);
        return;
    }
    tc_error err = {{0}};
    tc_vocab v;
    tc_gguf g;
    if (tc_vocab_open(&v, tp, n_vocab, &err) || tc_gguf_open(&g, rp, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    for (int i = 0; keys[i]; i++) {
        long d = count_diff(&v, &g, keys[i]);
        CHECK_MSG(d == 0, "%s: %ld entries of %s differ from %s", tok_rel, d, keys[i], ref_rel);
    }
    if (type_diffs >= 0) {
        long d = count_diff(&v, &g, "tokenizer.ggml.token_type");
        CHECK_MSG(d == type_diffs, "%s: %ld token types differ from %s (expected %ld)", tok_rel, d, ref_rel,
                  type_diffs);
    }
    char *pre = NULL;
    if (tc_gguf_find(&g, "tokenizer.ggml.pre") && tc_gguf_get_str(&g, "tokenizer.ggml.pre", &pre, &err) == TC_OK)
        CHECK_MSG(str_is(&v, "tokenizer.ggml.pre", pre), "%s: not the pre-tokenizer \"%s\"", tok_rel, pre);
    free(pre);
    tc_gguf_close(&g);
    tc_vocab_free(&v);
}

/* Writes the vocabulary as a GGUF of its own and encodes the case files with
 * tc's GGUF tokenizer. */
static void cases_through_gguf(const char *name, const char *tok_rel, const char *inp_rel, const char *out_rel)
{
    char tp[512], ip[512], op[512], gp[600];
    if (!tu_asset(tp, sizeof tp, tok_rel) || !tu_asset(ip, sizeof ip, inp_rel) || !tu_asset(op, sizeof op, out_rel)) {
        printf("%s: skipped (not in the assets)\n", name);
        return;
    }
    snprintf(gp, sizeof gp, "%s/%s.gguf", g_dir, name);
    tc_error err = {{0}};
    tc_vocab v;
    if (tc_vocab_open(&v, tp, 0, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK_OK(tc_gguf_write(gp, v.kvs, v.n_kvs, NULL, 0, 32, &err), &err);
    tc_vocab_free(&v);
    tc_tokenizer *t = NULL;
    if (tc_tokenizer_open(&t, gp, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    size_t ni, no;
    char *inp = (char *)tu_read_file(ip, &ni), *out = (char *)tu_read_file(op, &no);
    const char *sep = "\n__ggml_vocab_test__\n";
    int n = 0, bad = 0;
    for (char *p = inp, *o = out, *q; inp && out && (q = strstr(p, sep)) != NULL; p = q + strlen(sep), n++) {
        int32_t *ids = NULL;
        size_t k = 0;
        char *nl = strchr(o, '\n');
        size_t ol = nl ? (size_t)(nl - o) : strlen(o);
        char got[1 << 14];
        size_t gl = 0;
        if (tc_tokenizer_encode(t, p, (size_t)(q - p), 0, &ids, &k, &err) == TC_OK)
            for (size_t i = 0; i < k && gl + 16 < sizeof got; i++)
                gl += (size_t)snprintf(got + gl, sizeof got - gl, " %d", ids[i]);
        else
            gl = (size_t)snprintf(got, sizeof got, "error: %s", err.msg);
        if (gl != ol || memcmp(got, o, ol) != 0)
            bad++;
        free(ids);
        o = nl ? nl + 1 : o + ol;
    }
    CHECK_MSG(n > 0 && bad == 0, "%s: %d of %d cases encode otherwise through the written GGUF", name, bad, n);
    printf("%-8s %d cases encode to the reference ids through the written GGUF\n", name, n);
    free(inp);
    free(out);
    tc_tokenizer_free(t);
}

/* The asset tokenizer.json with one substring replaced, in g_dir/sub/. */
static const char *edited(const char *tok_rel, const char *sub, const char *from, const char *to, char *path,
                          size_t n)
{
    char src[512];
    if (!tu_asset(src, sizeof src, tok_rel))
        return NULL;
    size_t len;
    char *text = (char *)tu_read_file(src, &len), *at = text ? strstr(text, from) : NULL;
    if (!at) {
        free(text);
        CHECK_MSG(0, "%s: \"%s\" not found", tok_rel, from);
        return NULL;
    }
    char dir[400];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, sub);
    mkdir(dir, 0700);
    snprintf(path, n, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(text, 1, (size_t)(at - text), f);
        fputs(to, f);
        fputs(at + strlen(from), f);
        fclose(f);
    }
    free(text);
    return f ? path : NULL;
}

static void refusals(void)
{
    tc_error err = {{0}};
    tc_vocab v;
    char p[600];
    /* A Split regex llama.cpp has no pre-tokenizer for: refused, naming the file. */
    if (edited("tokenizers/hf/llama3/tokenizer.json", "re", "\\\\p{N}{1,3}", "\\\\p{N}{1,4}", p, sizeof p)) {
        CHECK(tc_vocab_from_hf(&v, p, 0, &err) == TC_ERR && strstr(err.msg, p) && strstr(err.msg, "pre-tokenizer"));
        printf("refused: %s\n", err.msg);
    }
    /* The llama-3 split without ignore_merges is llama.cpp's "smaug-bpe". */
    if (edited("tokenizers/hf/llama3/tokenizer.json", "smaug", "\"ignore_merges\": true", "\"ignore_merges\": false",
               p, sizeof p)) {
        CHECK_OK(tc_vocab_from_hf(&v, p, 0, &err), &err);
        CHECK(str_is(&v, "tokenizer.ggml.pre", "smaug-bpe"));
        tc_vocab_free(&v);
    }
    /* A merge list missing a split SentencePiece would take ("▁ t"): the
     * scores could not reproduce it. */
    if (edited("tokenizers/hf/mistral/tokenizer.json", "spm", "\"\xe2\x96\x81 t\",", "", p, sizeof p)) {
        CHECK(tc_vocab_from_hf(&v, p, 0, &err) == TC_ERR && strstr(err.msg, "SentencePiece") && strstr(err.msg, p));
        printf("refused: %s\n", err.msg);
    }
    /* SentencePiece-style without byte fallback. */
    if (edited("tokenizers/hf/mistral/tokenizer.json", "nobf", "\"byte_fallback\": true", "\"byte_fallback\": false",
               p, sizeof p)) {
        CHECK(tc_vocab_from_hf(&v, p, 0, &err) == TC_ERR && strstr(err.msg, "byte_fallback"));
    }
    /* More tokens than the model has; and fewer: padded as the converter pads. */
    char tp[512];
    if (tu_asset(tp, sizeof tp, "tokenizers/hf/llama3/tokenizer.json")) {
        CHECK(tc_vocab_from_hf(&v, tp, 1000, &err) == TC_ERR && strstr(err.msg, "128256"));
        if (tc_vocab_from_hf(&v, tp, 128260, &err) == TC_OK) {
            const tc_gguf_value *t = arr(&v, "tokenizer.ggml.tokens"), *ty = arr(&v, "tokenizer.ggml.token_type");
            CHECK(t && ty && t->v.arr.n == 128260 && t->v.arr.items[128259].v.s.len == 11 &&
                  memcmp(t->v.arr.items[128259].v.s.ptr, "[PAD128259]", 11) == 0 &&
                  ty->v.arr.items[128259].v.i == 5);
            tc_vocab_free(&v);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
    }
    /* A truncated tokenizer.bin names its file. */
    snprintf(p, sizeof p, "%s/short.bin", g_dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        const uint8_t rec[] = {16, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 'a'};
        fwrite(rec, 1, sizeof rec, f);
        fclose(f);
        CHECK(tc_vocab_from_llama2c(&v, p, 2, &err) == TC_ERR && strstr(err.msg, p));
    }
}

/* Encodes a case file with a tokenizer; returns how many cases differ from
 * the reference ids (-1: no cases). */
static int cases_differ(const tc_tokenizer *t, const char *ip, const char *op, int *n_cases)
{
    size_t ni, no;
    char *inp = (char *)tu_read_file(ip, &ni), *out = (char *)tu_read_file(op, &no);
    const char *sep = "\n__ggml_vocab_test__\n";
    int n = 0, bad = 0;
    tc_error err = {{0}};
    for (char *p = inp, *o = out, *q; inp && out && (q = strstr(p, sep)) != NULL; p = q + strlen(sep), n++) {
        int32_t *ids = NULL;
        size_t k = 0;
        char *nl = strchr(o, '\n');
        size_t ol = nl ? (size_t)(nl - o) : strlen(o);
        char got[1 << 14];
        size_t gl = 0;
        if (tc_tokenizer_encode(t, p, (size_t)(q - p), 0, &ids, &k, &err) == TC_OK)
            for (size_t i = 0; i < k && gl + 16 < sizeof got; i++)
                gl += (size_t)snprintf(got + gl, sizeof got - gl, " %d", ids[i]);
        else
            gl = (size_t)snprintf(got, sizeof got, "error: %s", err.msg);
        bad += gl != ol || memcmp(got, o, ol) != 0;
        free(ids);
        o = nl ? nl + 1 : o + ol;
    }
    free(inp);
    free(out);
    *n_cases = n;
    return n ? bad : -1;
}

/* A GGUF's (or tokenizer.bin's) vocabulary written as tokenizer.json and
 * tokenizer_config.json, read back by tc's tokenizer.json reader: the case
 * file's reference ids. */
static void hf_round_trip(const char *name, const char *vocab_rel, int32_t n_vocab, const char *inp_rel,
                          const char *out_rel)
{
    char vp[512], ip[512], op[512], dir[400], json[600];
    if (!tu_asset(vp, sizeof vp, vocab_rel) || !tu_asset(ip, sizeof ip, inp_rel) || !tu_asset(op, sizeof op, out_rel)) {
        printf("%s: skipped (not in the assets)\n", name);
        return;
    }
    snprintf(dir, sizeof dir, "%s/%s-hf", g_dir, name);
    mkdir(dir, 0700);
    tc_error err = {{0}};
    tc_vocab v;
    if (tc_vocab_open(&v, vp, n_vocab, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK_OK(tc_vocab_write_hf(&v, dir, &err), &err);
    tc_vocab_free(&v);
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    tc_tokenizer *t = NULL;
    if (tc_tokenizer_from_hf_json(&t, json, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    int n = 0, bad = cases_differ(t, ip, op, &n);
    CHECK_MSG(bad == 0, "%s: %d of %d cases encode otherwise through the written tokenizer.json", name, bad, n);
    printf("%-8s %d cases encode to the reference ids through the tokenizer.json written from %s\n", name, n,
           strrchr(vocab_rel, '/') + 1);
    tc_tokenizer_free(t);
}

/* A SentencePiece vocabulary with two merged tokens of one score: llama.cpp
 * merges them left to right, which no merge list says. */
static void tied_scores(void)
{
    static const char *const TOK[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "ba"};
    enum { N = 7 };
    tc_gguf_value tok[N], score[N], type[N];
    for (int i = 0; i < N; i++) {
        tok[i] = (tc_gguf_value){.type = TC_GGUF_STRING};
        tok[i].v.s.ptr = TOK[i];
        tok[i].v.s.len = strlen(TOK[i]);
        score[i] = (tc_gguf_value){.type = TC_GGUF_F32};
        score[i].v.f = i >= 5 ? -1.0 : 0.0;
        type[i] = (tc_gguf_value){.type = TC_GGUF_I32};
        type[i].v.i = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    tc_gguf_writer_kv kv[4];
    memset(kv, 0, sizeof kv);
    kv[0].key = "tokenizer.ggml.model";
    kv[0].value.type = TC_GGUF_STRING;
    kv[0].value.v.s.ptr = "llama";
    kv[0].value.v.s.len = 5;
    const char *keys[3] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    tc_gguf_value *items[3] = {tok, score, type};
    tc_gguf_type et[3] = {TC_GGUF_STRING, TC_GGUF_F32, TC_GGUF_I32};
    for (int k = 0; k < 3; k++) {
        kv[1 + k].key = keys[k];
        kv[1 + k].value.type = TC_GGUF_ARRAY;
        kv[1 + k].value.v.arr.type = et[k];
        kv[1 + k].value.v.arr.n = N;
        kv[1 + k].value.v.arr.items = items[k];
    }
    char p[600];
    snprintf(p, sizeof p, "%s/tied.gguf", g_dir);
    tc_error err = {{0}};
    CHECK_OK(tc_gguf_write(p, kv, 4, NULL, 0, 32, &err), &err);
    tc_vocab v;
    if (tc_vocab_from_gguf(&v, p, 0, &err) == TC_OK) {
        CHECK(tc_vocab_write_hf(&v, g_dir, &err) == TC_ERR && strstr(err.msg, "same score") && strstr(err.msg, p));
        printf("refused: %s\n", err.msg);
        tc_vocab_free(&v);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    /* a pre-tokenizer tc has no tokenizer.json form for */
    char dp[512];
    if (tu_asset(dp, sizeof dp, "tokenizers/llamacpp/ggml-vocab-deepseek-coder.gguf") &&
        tc_vocab_from_gguf(&v, dp, 0, &err) == TC_OK) {
        CHECK(tc_vocab_write_hf(&v, g_dir, &err) == TC_ERR && strstr(err.msg, "deepseek-coder"));
        tc_vocab_free(&v);
    }
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Special-token ids, flags and chat template from the files beside
 * tokenizer.json, with deep16's (SentencePiece-style, 512 tokens). */
static void special_vocab(void)
{
    char src[512], dir[400], p[600];
    if (!tu_asset(src, sizeof src, "models/deep16-hf/tokenizer.json"))
        return;
    snprintf(dir, sizeof dir, "%s/special", g_dir);
    mkdir(dir, 0700);
    size_t n;
    char *json = (char *)tu_read_file(src, &n);
    write_text(dir, "tokenizer.json", json ? json : "");
    free(json);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    tc_error err = {{0}};
    tc_vocab v;

    /* No tokenizer_config.json: the template says add BOS, no ids are named. */
    CHECK_OK(tc_vocab_from_hf(&v, p, 0, &err), &err);
    CHECK(str_is(&v, "tokenizer.ggml.model", "llama") && str_is(&v, "tokenizer.ggml.pre", "default"));
    CHECK(u32_of(&v, "tokenizer.ggml.add_bos_token") == 1 && u32_of(&v, "tokenizer.ggml.add_eos_token") == 0);
    CHECK(u32_of(&v, "tokenizer.ggml.bos_token_id") == -1 && !tc_vocab_find(&v, "tokenizer.chat_template"));
    /* the dummy prefix is llama.cpp's default for "llama": not written */
    CHECK(!tc_vocab_find(&v, "tokenizer.ggml.add_space_prefix"));
    tc_vocab_free(&v);

    /* Names in tokenizer_config (a string and an AddedToken-style object),
     * config.json for the rest, the config's flags over the template's. */
    write_text(dir, "tokenizer_config.json",
               "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}, \"unk_token\": \"<unk>\","
               " \"add_bos_token\": false, \"add_eos_token\": true, \"chat_template\": \"{{ messages }}\"}");
    write_text(dir, "config.json", "{\"pad_token_id\": 0, \"bos_token_id\": 7}");
    CHECK_OK(tc_vocab_from_hf(&v, p, 0, &err), &err);
    CHECK(u32_of(&v, "tokenizer.ggml.bos_token_id") == 1 && u32_of(&v, "tokenizer.ggml.eos_token_id") == 2 &&
          u32_of(&v, "tokenizer.ggml.unknown_token_id") == 0 && u32_of(&v, "tokenizer.ggml.padding_token_id") == 0);
    CHECK(u32_of(&v, "tokenizer.ggml.add_bos_token") == 0 && u32_of(&v, "tokenizer.ggml.add_eos_token") == 1);
    CHECK(str_is(&v, "tokenizer.chat_template", "{{ messages }}"));
    const tc_gguf_value *ty = arr(&v, "tokenizer.ggml.token_type");
    CHECK(ty && ty->v.arr.items[0].v.i == 2 && ty->v.arr.items[1].v.i == 3 && ty->v.arr.items[3].v.i == 6 &&
          ty->v.arr.items[300].v.i == 1); /* unknown, control, byte, normal */
    tc_vocab_free(&v);

    /* Named templates; and chat_template.jinja when the config has none. */
    write_text(dir, "tokenizer_config.json",
               "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool use\", "
               "\"template\": \"T\"}]}");
    CHECK_OK(tc_vocab_from_hf(&v, p, 0, &err), &err);
    CHECK(str_is(&v, "tokenizer.chat_template", "D") && str_is(&v, "tokenizer.chat_template.tool_use", "T"));
    const tc_gguf_value *names = arr(&v, "tokenizer.chat_templates");
    CHECK(names && names->v.arr.n == 1);
    tc_vocab_free(&v);
    write_text(dir, "tokenizer_config.json", "{}");
    write_text(dir, "chat_template.jinja", "{% for m in messages %}{{ m }}{% endfor %}");
    CHECK_OK(tc_vocab_from_hf(&v, p, 0, &err), &err);
    CHECK(str_is(&v, "tokenizer.chat_template", "{% for m in messages %}{{ m }}{% endfor %}"));
    tc_vocab_free(&v);

    /* A broken tokenizer_config.json is an error naming it. */
    write_text(dir, "tokenizer_config.json", "{\"bos_token\": ");
    CHECK(tc_vocab_from_hf(&v, p, 0, &err) == TC_ERR && strstr(err.msg, "tokenizer_config.json"));
}

int main(void)
{
    if (!tu_assets())
        return tu_skip("no assets");
    if (!tu_tmpdir(g_dir, sizeof g_dir))
        return tu_skip("no temporary directory");
    static const char *const TOKS_MERGES[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", NULL};
    static const char *const TOKS_SCORES[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", NULL};
    static const char *const TOKS[] = {"tokenizer.ggml.tokens", NULL};
    /* Byte-level: every token, type and merge as llama.cpp's converter wrote them. */
    against_reference("tokenizers/hf/llama3/tokenizer.json", "tokenizers/llamacpp/ggml-vocab-llama-bpe.gguf", 0,
                      TOKS_MERGES, 0);
    /* qwen2's reference file marks the six <|...|> added tokens that are not
     * "special" (<|fim_prefix|> ...) user-defined; convert_hf_to_gguf.py's
     * does_token_look_special makes them control tokens, as tc does. */
    against_reference("tokenizers/hf/qwen2/tokenizer.json", "tokenizers/llamacpp/ggml-vocab-qwen2.gguf", 0,
                      TOKS_MERGES, 6);
    /* llama2.c's tokenizer.bin: tokens, scores and types as the converter's. */
    against_reference("tokenizers/llama2c/llama2-tokenizer.bin", "tokenizers/llamacpp/ggml-vocab-llama-spm.gguf",
                      32000, TOKS_SCORES, 0);
    against_reference("models/stories260K/tok512.bin", "models/stories260K/stories260K.gguf", 512, TOKS_SCORES, 0);
    /* tokenizer.json of the same vocabulary: the same tokens and types (the
     * scores are the merge ranks, not SentencePiece's) */
    against_reference("models/deep16-hf/tokenizer.json", "models/stories260K/stories260K.gguf", 512, TOKS, 0);

    cases_through_gguf("llama3", "tokenizers/hf/llama3/tokenizer.json", "tokenizers/hf/llama3/cases.inp",
                       "tokenizers/hf/llama3/cases.out");
    cases_through_gguf("qwen2", "tokenizers/hf/qwen2/tokenizer.json", "tokenizers/hf/qwen2/cases.inp",
                       "tokenizers/hf/qwen2/cases.out");
    cases_through_gguf("mistral", "tokenizers/hf/mistral/tokenizer.json", "tokenizers/hf/mistral/cases.inp",
                       "tokenizers/hf/mistral/cases.out");
    cases_through_gguf("llama2c", "tokenizers/llama2c/llama2-tokenizer.bin", "tokenizers/llama2c/llama2-cases.inp",
                       "tokenizers/llama2c/llama2-cases.out");
    refusals();
    special_vocab();

    /* The other way: GGUF (and tokenizer.bin) vocabularies as tokenizer.json. */
    static const char *const LLAMACPP[][2] = {{"llama-bpe", "llama3"}, {"qwen2", "qwen2"}, {"llama-spm", "llama2"},
                                              {"gpt-2", "gpt2"}, {"phi-3", "phi3"}};
    for (size_t i = 0; i < sizeof LLAMACPP / sizeof LLAMACPP[0]; i++) {
        char g[200], in[220], out[220];
        snprintf(g, sizeof g, "tokenizers/llamacpp/ggml-vocab-%s.gguf", LLAMACPP[i][0]);
        snprintf(in, sizeof in, "%s.inp", g);
        snprintf(out, sizeof out, "%s.out", g);
        hf_round_trip(LLAMACPP[i][1], g, 0, in, out);
    }
    hf_round_trip("llama2c", "tokenizers/llama2c/llama2-tokenizer.bin", 32000, "tokenizers/llama2c/llama2-cases.inp",
                  "tokenizers/llama2c/llama2-cases.out");
    tied_scores();

    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_dir);
    if (tu_failures == 0)
        CHECK(system(rm) == 0);
    else
        fprintf(stderr, "the files are in %s\n", g_dir);
    return tu_finish("test_vocab");
}
