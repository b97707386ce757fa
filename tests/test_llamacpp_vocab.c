/* The vocabulary of every tokenizer family, written by tc into GGUF, as
 * stock llama.cpp (node-llama-cpp, tests/llamacpp/vocab.mjs) reads it.
 *
 * For each of Llama 3, Qwen2 and Mistral (tokenizer.json) a small synthetic
 * Hugging Face checkpoint carrying the tokenizer (vocabulary of the
 * tokenizer's size, dim 16) and a tokenizer_config.json as the families
 * ship it; for the Llama 2 tokenizer.bin a synthetic llama2.c checkpoint.
 * tc-prune drops a block and writes each as GGUF (the llama2.c one with
 * --tokenizer).  llama.cpp must then
 *  - tokenize the family's case file to the reference ids;
 *  - tokenize strings holding control and user-defined tokens as tc's
 *    reader of the original tokenizer does, with special-token text parsed
 *    and without: a control token written as normal, or a user-defined one
 *    as control, changes these.  (Not Qwen's <|fim_prefix|> and the like:
 *    added tokens that are not special but look it, which the converter,
 *    and tc with it, makes control tokens, so that llama.cpp matches their
 *    text only when parsing special tokens, where transformers always does);
 *  - continue the BOS (Qwen2: EOS) greedily as tc does on the same file.
 * The GGUF must name the pre-tokenizer as llama.cpp does and carry the ids
 * and chat template of tokenizer_config.json.  Two trained models must give
 * tc's greedy text too: stories260K's llama2.c file with tok512.bin, and
 * deep16's Hugging Face directory.
 *
 * Skipped when node or node-llama-cpp is absent (tests/llamacpp.h). */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/synth.h"
#include "tc/tokenizer.h"

#define N_GEN 24
#define SEP "\n__ggml_vocab_test__\n"

typedef struct family {
    const char *name;
    const char *tokenizer; /* asset */
    const char *cases;     /* asset .inp; the .out beside it (cases.out, or .inp -> .out) */
    const char *config;    /* tokenizer_config.json written beside it (HF), or NULL (llama2.c) */
    const char *specials;  /* strings with control and user-defined tokens, SEP-terminated, or NULL */
    const char *model, *pre;
    long bos, eos;         /* expected ids (-1: none written) */
} family;

static const family FAMILIES[] = {
    {"llama3", "tokenizers/hf/llama3/tokenizer.json", "tokenizers/hf/llama3/cases.inp",
     "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|end_of_text|>\", \"add_bos_token\": true,"
     " \"chat_template\": \"{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\\n\\n"
     "{{ m['content'] }}<|eot_id|>{% endfor %}\"}",
     "<|begin_of_text|>Hello<|end_of_text|> <|reserved_special_token_5|>x" SEP "a<|eot_id|>b c" SEP,
     "gpt2", "llama-bpe", 128000, 128001},
    {"qwen2", "tokenizers/hf/qwen2/tokenizer.json", "tokenizers/hf/qwen2/cases.inp",
     "{\"bos_token\": null, \"eos_token\": \"<|im_end|>\", \"pad_token\": \"<|endoftext|>\","
     " \"chat_template\": \"{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] +"
     " '<|im_end|>\\n' }}{% endfor %}\"}",
     "<|im_start|>user\nhi<|im_end|>\n<think>\nok</think><tool_call>x" SEP "x</tool_call> <|endoftext|>y" SEP,
     "gpt2", "qwen2", -1, 151645},
    {"mistral", "tokenizers/hf/mistral/tokenizer.json", "tokenizers/hf/mistral/cases.inp",
     "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"unk_token\": \"<unk>\", \"add_bos_token\": true,"
     " \"add_eos_token\": false, \"chat_template\": \"{{ bos_token }}{% for m in messages %}[INST] "
     "{{ m['content'] }} [/INST]{% endfor %}\"}",
     "<s>[INST] hi [/INST]</s> <unk>" SEP " </s>x" SEP, "llama", "default", 1, 2},
    /* tokenizer.bin names BOS and EOS "\n<s>\n" and "\n</s>\n": there is no
     * special-token text to compare */
    {"llama2c", "tokenizers/llama2c/llama2-tokenizer.bin", "tokenizers/llama2c/llama2-cases.inp", NULL, NULL,
     "llama", "default", 1, 2},
};
enum { N_FAM = sizeof FAMILIES / sizeof FAMILIES[0], N_FILES = N_FAM + 2 };

static char g_dir[256];

/* Splits a SEP-terminated buffer into its strings (pointers into buf, which
 * gets NULs); returns how many. */
static int split_cases(char *buf, char **out, int max)
{
    int n = 0;
    for (char *p = buf, *q; p && (q = strstr(p, SEP)) != NULL && n < max; p = q + strlen(SEP)) {
        *q = '\0';
        out[n++] = p;
    }
    return n;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int run_tool(const char *cmd)
{
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n-> exit %d: %s\n", cmd, rc, out);
    free(out);
    return rc;
}

/* " 1 2 3" for ids. */
static void ids_text(const int32_t *ids, size_t n, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, " %d", ids[i]);
}

static long key_u32(const tc_gguf *g, const char *key)
{
    uint64_t v;
    tc_error err = {{0}};
    return tc_gguf_find(g, key) && tc_gguf_get_u64(g, key, &v, &err) == TC_OK ? (long)v : -1;
}

static int key_is(const tc_gguf *g, const char *key, const char *want)
{
    char *s = NULL;
    tc_error err = {{0}};
    int ok = tc_gguf_find(g, key) && tc_gguf_get_str(g, key, &s, &err) == TC_OK && strcmp(s, want) == 0;
    free(s);
    return ok;
}

/* tc's greedy continuation of prompt on the file. */
static int tc_greedy(const char *path, int32_t prompt, int32_t *out)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = N_GEN + 1};
    tc_generate_opts g = {.temperature = 0, .stop_token = -1};
    size_t n = 0;
    int rc = tc_decoder_new(&d, &m, &o, &err);
    if (rc == TC_OK)
        rc = tc_generate(d, &prompt, 1, N_GEN, &g, out, &n, &err);
    if (rc != TC_OK)
        fprintf(stderr, "%s\n", err.msg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK && n == N_GEN ? 0 : -1;
}

/* The checks of one family's GGUF that need no llama.cpp: its keys. */
static void check_keys(const family *f, const char *gguf, const char *config)
{
    tc_gguf g;
    tc_error err = {{0}};
    if (tc_gguf_open(&g, gguf, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    CHECK_MSG(key_is(&g, "tokenizer.ggml.model", f->model) && key_is(&g, "tokenizer.ggml.pre", f->pre),
              "%s: not model %s, pre %s", f->name, f->model, f->pre);
    CHECK_MSG(key_u32(&g, "tokenizer.ggml.bos_token_id") == f->bos && key_u32(&g, "tokenizer.ggml.eos_token_id") == f->eos,
              "%s: BOS %ld, EOS %ld", f->name, key_u32(&g, "tokenizer.ggml.bos_token_id"),
              key_u32(&g, "tokenizer.ggml.eos_token_id"));
    if (config) {
        /* the template as tokenizer_config.json holds it (JSON-unescaped) */
        cJSON *j = cJSON_Parse(config);
        const cJSON *t = cJSON_GetObjectItem(j, "chat_template");
        CHECK_MSG(cJSON_IsString(t) && key_is(&g, "tokenizer.chat_template", t->valuestring),
                  "%s: the chat template was not carried", f->name);
        cJSON_Delete(j);
    }
    tc_gguf_close(&g);
}

int main(void)
{
    char pkg[1024], script[1024], tmp[512];
    if (!tu_asset(tmp, sizeof tmp, "tokenizers/hf/llama3/tokenizer.json"))
        return tu_skip("the tokenizer families are not in the assets");
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why)
        return tu_skip(why);
    snprintf(script + strlen(script) - strlen("greedy.mjs"), 16, "vocab.mjs");
    if (!tu_tmpdir(g_dir, sizeof g_dir))
        return tu_skip("no temporary directory");
    tc_error err = {{0}};

    /* The GGUF files, all written by tc-prune. */
    char gguf[N_FILES][600], cases[N_FILES][600], specials[N_FILES][600], cmd[4096];
    int32_t prompt[N_FILES];
    int ok[N_FILES];
    for (int i = 0; i < N_FAM; i++) {
        const family *f = &FAMILIES[i];
        char tok[512], model[600];
        ok[i] = tu_asset(tok, sizeof tok, f->tokenizer) && tu_asset(cases[i], sizeof cases[i], f->cases);
        if (!ok[i]) {
            CHECK_MSG(0, "%s: the tokenizer or its cases are missing from the assets", f->name);
            continue;
        }
        snprintf(gguf[i], sizeof gguf[i], "%s/%s.gguf", g_dir, f->name);
        snprintf(specials[i], sizeof specials[i], "-");
        if (f->specials) {
            snprintf(specials[i], sizeof specials[i], "%s/%s.special", g_dir, f->name);
            write_text(specials[i], f->specials);
        }
        tc_synth_spec s = {.cfg = tc_synth_config(3, 16, 2, 1, 32, 0), .seed = 40 + (uint64_t)i};
        if (f->config) {
            snprintf(model, sizeof model, "%s/%s-hf", g_dir, f->name);
            s.tokenizer = tok;
            CHECK_OK(tc_synth_write(model, TC_FORMAT_HF, TC_F32, &s, &err), &err);
            char cfg[700];
            snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", model);
            write_text(cfg, f->config);
            snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --layers block:1 --format gguf -o '%s' -q 2>&1", tu_bin(),
                     model, gguf[i]);
        } else {
            tc_tokenizer *t;
            CHECK_OK(tc_tokenizer_open(&t, tok, &err), &err);
            s.cfg.vocab_size = t ? tc_tokenizer_vocab_size(t) : 1;
            tc_tokenizer_free(t);
            snprintf(model, sizeof model, "%s/%s.bin", g_dir, f->name);
            CHECK_OK(tc_synth_write(model, TC_FORMAT_LLAMA2C, TC_F32, &s, &err), &err);
            snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --tokenizer '%s' --layers block:1 --format gguf -o '%s' -q 2>&1",
                     tu_bin(), model, tok, gguf[i]);
        }
        ok[i] = run_tool(cmd) == 0;
        CHECK_MSG(ok[i], "%s: tc-prune failed", f->name);
        if (ok[i])
            check_keys(f, gguf[i], f->config);
        prompt[i] = (int32_t)(f->bos >= 0 ? f->bos : f->eos);
    }
    /* The trained models. */
    char bin[512], tok512[512], deep[512];
    int n_files = N_FAM;
    if (tu_asset(bin, sizeof bin, "models/stories260K/stories260K.bin") &&
        tu_asset(tok512, sizeof tok512, "models/stories260K/tok512.bin")) {
        snprintf(gguf[n_files], sizeof gguf[n_files], "%s/stories260K.gguf", g_dir);
        snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --tokenizer '%s' --layers block:4 --format gguf -o '%s' -q 2>&1",
                 tu_bin(), bin, tok512, gguf[n_files]);
        ok[n_files] = run_tool(cmd) == 0;
        CHECK_MSG(ok[n_files], "stories260K: tc-prune failed");
        prompt[n_files] = 1;
        snprintf(cases[n_files], sizeof cases[n_files], "-");
        snprintf(specials[n_files++], sizeof specials[0], "-");
    }
    if (tu_asset(deep, sizeof deep, "models/deep16-hf")) {
        snprintf(gguf[n_files], sizeof gguf[n_files], "%s/deep16.gguf", g_dir);
        snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --layers block:15 --format gguf -o '%s' -q 2>&1", tu_bin(), deep,
                 gguf[n_files]);
        ok[n_files] = run_tool(cmd) == 0;
        CHECK_MSG(ok[n_files], "deep16: tc-prune failed");
        prompt[n_files] = 1;
        snprintf(cases[n_files], sizeof cases[n_files], "-");
        snprintf(specials[n_files++], sizeof specials[0], "-");
    }

    /* One llama.cpp process for every file. */
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "node '%s' '%s' %d", script, pkg, N_GEN);
    for (int i = 0; i < n_files; i++)
        if (ok[i])
            len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s' '%s' '%s' %d", gguf[i], cases[i], specials[i],
                                    prompt[i]);
    snprintf(cmd + len, sizeof cmd - len, " 2>/dev/null");
    char *out = NULL;
    CHECK_MSG(tu_run(cmd, &out) == 0, "node failed: %s", out ? out : "");
    char *line = out, *save = NULL;
    line = strtok_r(out, "\n", &save);
    for (int i = 0; i < n_files; i++) {
        if (!ok[i])
            continue;
        const family *f = i < N_FAM ? &FAMILIES[i] : NULL;
        const char *name = f ? f->name : i == N_FAM && strstr(gguf[i], "stories") ? "stories260K" : "deep16";
        /* the reference ids and the special strings */
        char *want = NULL, *sp = NULL, *want_lines[64], *sp_cases[8];
        int n_want = 0, n_sp = 0;
        if (f) {
            char outp[600];
            snprintf(outp, sizeof outp, "%s", cases[i]);
            snprintf(outp + strlen(outp) - 4, 5, ".out");
            want = tu_slurp(outp);
            for (char *p = want, *q; p && *p && n_want < 64; p = q + 1) {
                q = strchr(p, '\n');
                if (!q)
                    break;
                *q = '\0';
                want_lines[n_want++] = p;
            }
            if (f->specials && (sp = strdup(f->specials)) != NULL)
                n_sp = split_cases(sp, sp_cases, 8);
        }
        if (line && strncmp(line, "error", 5) == 0) {
            CHECK_MSG(0, "%s: llama.cpp refused the file: %s", name, line);
            line = strtok_r(NULL, "\n", &save);
            free(want);
            free(sp);
            continue;
        }
        /* Case files: the reference ids. */
        int bad = 0;
        for (int k = 0; k < n_want; k++, line = strtok_r(NULL, "\n", &save)) {
            const char *got = line && strncmp(line, "case", 4) == 0 ? line + 4 : "?";
            if (strcmp(got, want_lines[k]) != 0 && bad++ < 2)
                fprintf(stderr, "%s case %d:\n  llama.cpp%s\n  reference%s\n", name, k, got, want_lines[k]);
        }
        if (f) {
            CHECK_MSG(bad == 0, "%s: llama.cpp tokenizes %d of %d cases otherwise", name, bad, n_want);
            printf("%-8s llama.cpp tokenizes %d of %d cases to the reference ids\n", name, n_want - bad, n_want);
        }
        /* Control and user-defined tokens: as tc's reader of the original tokenizer. */
        tc_tokenizer *ref = NULL;
        if (n_sp) {
            char tok[512];
            tu_asset(tok, sizeof tok, f->tokenizer);
            CHECK_OK(tc_tokenizer_open(&ref, tok, &err), &err);
        }
        int sp_bad = 0;
        for (int k = 0; k < n_sp; k++) {
            for (int mode = 0; mode < 2; mode++, line = strtok_r(NULL, "\n", &save)) {
                const char *tag = mode ? "special" : "plain";
                const char *got = line && strncmp(line, tag, strlen(tag)) == 0 ? line + strlen(tag) : "?";
                int32_t *ids = NULL;
                size_t n = 0;
                char exp[4096] = "?";
                if (ref && tc_tokenizer_encode(ref, sp_cases[k], strlen(sp_cases[k]), mode ? TC_TOK_PARSE_SPECIAL : 0,
                                               &ids, &n, &err) == TC_OK)
                    ids_text(ids, n, exp, sizeof exp);
                free(ids);
                sp_bad += strcmp(got, exp) != 0;
                CHECK_MSG(strcmp(got, exp) == 0, "%s: \"%s\" with special tokens %s:\n  llama.cpp%s\n  tc       %s",
                          name, sp_cases[k], mode ? "parsed" : "as text", got, exp);
            }
        }
        if (n_sp)
            printf("%-8s llama.cpp gives %d of %d tokenizations of strings with control and user-defined tokens as the tokenizer "
                   "does, special-token text parsed and not\n", name, 2 * n_sp - sp_bad, 2 * n_sp);
        tc_tokenizer_free(ref);
        /* Greedy continuation: tc's on the same file. */
        int32_t got[N_GEN], mine[N_GEN];
        int n = 0;
        if (line && strncmp(line, "ok", 2) == 0) {
            char *p = line + 2, *end;
            for (long v; n < N_GEN && (v = strtol(p, &end, 10), end != p); p = end)
                got[n++] = (int32_t)v;
        }
        line = strtok_r(NULL, "\n", &save);
        int same = n == N_GEN && tc_greedy(gguf[i], prompt[i], mine) == 0;
        for (int k = 0; same && k < N_GEN; k++)
            same = got[k] == mine[k];
        CHECK_MSG(same, "%s: llama.cpp's greedy continuation (%d tokens) differs from tc's", name, n);
        printf("%-11s llama.cpp's %d greedy tokens after %d %s tc's\n", name, n, prompt[i], same ? "equal" : "differ from");
        free(want);
        free(sp);
    }
    free(out);

    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_dir);
    if (tu_failures == 0)
        CHECK(system(rm) == 0);
    else
        fprintf(stderr, "the files are in %s\n", g_dir);
    return tu_finish("test_llamacpp_vocab");
}
