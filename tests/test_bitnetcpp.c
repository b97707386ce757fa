/* bitnet.cpp runs tc's I2_S export of bitnet12.
 *
 * Optional: TC_BITNETCPP names the bin folder of a bitnet.cpp build
 * (bench/build_bitnetcpp.sh); without it, or without bitnet12 or
 * stories260K's vocabulary in the assets, the test is skipped (77).
 *
 * tc writes I2_S files as bitnet.cpp's bitnet-b1.58 (tc-quantize --format
 * gguf-i2s).  The bitnet.cpp reachable here (microsoft/BitNet 425fbbc^ with
 * its llama.cpp fork's merge-dev branch of October 2024) reads I2_S only in
 * llama.cpp's bitnet graph, which computes SiLU where bitnet12 (like BitNet
 * b1.58 2B4T) has relu2.  So the export is copied under the architecture
 * name bitnet (bench/gguf_bitnet_arch), and:
 *   - given SiLU (--silu: tc then computes the fork's function), the fork's
 *     llama-cli continues references.json's prompt greedily with tc's text
 *     (bitnet12 given SiLU is a poor model: ten " i" and EOS), and the
 *     fork's llama-perplexity on 4 chunks of 64 tokens of the held-out text
 *     is tc's, computed as llama-perplexity computes it, within PPL_REL
 *     (measured: 606.08 against 601.50).  What parts them: the fork keeps
 *     K and V in F16 (F32 with flash attention: 604.65), and it multiplies
 *     the down projections, whose 688 columns are no whole I2_S block and
 *     which are stored as F32 values code x scale, by float activations
 *     where the model (and tc) rounds them to int8 per token.  A wrong code
 *     order or scale moves it by far more: relu2 against SiLU is 7.4
 *     against 606;
 *   - with relu2 (bitnet.hidden_activation, which the fork does not read)
 *     the fork's text and perplexity are its SiLU ones, not
 *     references.json's, which tc gives from the same file (printed: that
 *     the fork's graph cannot compute bitnet12 is the finding, not a
 *     failure). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "tc/forward.h"
#include "tc/model.h"
#include "tc/model_tokenizer.h"
#include "tc/model_write.h"
#include "tc/tokenizer.h"

#define N_GEN 32
#define CTX 64          /* llama-perplexity's -c */
#define CHUNKS 4
#define TEXT_BYTES 4000 /* enough for CHUNKS x CTX tokens of a 512-token vocabulary */
#define PPL_REL 0.02   /* see above: 0.8 % measured */

static char g_tmp[1024];

static int32_t *json_ids(const cJSON *a, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) ids[i++] = (int32_t)x->valueint;
    return ids;
}

/* Leading and trailing white space off, in place. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* The fork's llama-cli: greedy continuation of prompt, at most N_GEN tokens
 * (it stops at EOS); stdout is the prompt and the continuation.  NULL when
 * it fails. */
static char *fork_text(const char *bin, const char *model, const char *prompt)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "'%s/llama-cli' -m '%s' -p '%s' -n %d --temp 0 -t 1 -c 256 -s 1 2>/dev/null", bin, model,
             prompt, N_GEN);
    int code = tu_run(cmd, &out);
    if (code != 0) {
        fprintf(stderr, "llama-cli on %s: exit %d\n", model, code);
        free(out);
        return NULL;
    }
    return out;
}

/* tc's greedy continuation of prefix, stopping after EOS or N_GEN tokens,
 * as text (prefix included). */
static char *tc_text(const char *path, const int32_t *prefix, size_t np)
{
    tc_error err = {{0}};
    tc_model m;
    tc_tokenizer *tok = NULL;
    tc_decoder *d = NULL;
    char *text = NULL;
    size_t len, n = 0;
    if (tc_model_open(&m, path, &err))
        return fprintf(stderr, "%s\n", err.msg), NULL;
    tc_decoder_opts o = {.max_len = (int)np + N_GEN + 1};
    float *lg = malloc((size_t)m.cfg.vocab_size * sizeof *lg);
    int32_t *ids = malloc((np + N_GEN) * sizeof *ids);
    int rc = lg && ids ? tc_decoder_new(&d, &m, &o, &err) : TC_ERR;
    for (size_t i = 0; rc == TC_OK && i < np; i++) {
        ids[n++] = prefix[i];
        rc = tc_decoder_step(d, prefix[i], lg, &err);
    }
    for (int i = 0; rc == TC_OK && i < N_GEN; i++) {
        int b = 0;
        for (int v = 1; v < m.cfg.vocab_size; v++)
            b = lg[v] > lg[b] ? v : b;
        ids[n++] = b;
        if (b == m.cfg.eos_id)
            break;
        rc = tc_decoder_step(d, b, lg, &err);
    }
    if (rc == TC_OK)
        rc = tc_model_tokenizer(&m, NULL, &tok, &err);
    if (rc == TC_OK)
        rc = tc_tokenizer_decode(tok, ids, n, &text, &len, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    tc_tokenizer_free(tok);
    free(ids);
    free(lg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK ? text : NULL;
}

/* The fork's llama-perplexity on text: chunks of CTX tokens (the text's
 * tokens after BOS, each chunk's first replaced by BOS), the second half of
 * each scored; its final estimate, or -1. */
static double fork_ppl(const char *bin, const char *model, const char *text)
{
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "'%s/llama-perplexity' -m '%s' -f '%s' -c %d -b %d --chunks %d -t 1 2>&1", bin, model,
             text, CTX, CTX, CHUNKS);
    int code = tu_run(cmd, &out);
    const char *p = strstr(out, "Final estimate: PPL = ");
    double ppl = code == 0 && p ? atof(p + strlen("Final estimate: PPL = ")) : -1;
    if (ppl < 0)
        fprintf(stderr, "llama-perplexity on %s: exit %d\n%s\n", model, code, out);
    free(out);
    return ppl;
}

static int keep_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    memcpy((float *)ctx + tok0 * (size_t)vocab, logits, n * (size_t)vocab * sizeof *logits);
    return TC_OK;
}

/* tc's perplexity of text as llama-perplexity computes it (above), or -1. */
static double tc_ppl(const char *path, const char *text)
{
    tc_error err = {{0}};
    tc_model m;
    tc_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    double nll = 0, ppl = -1;
    int count = 0;
    char *s = tu_slurp(text);
    if (!s || tc_model_open(&m, path, &err)) {
        free(s);
        return -1;
    }
    int V = m.cfg.vocab_size;
    float *lg = malloc((size_t)CTX * (size_t)V * sizeof *lg);
    int rc = lg ? tc_model_tokenizer(&m, NULL, &tok, &err) : TC_ERR;
    if (rc == TC_OK)
        rc = tc_tokenizer_encode(tok, s, strlen(s), TC_TOK_BOS, &ids, &n, &err);
    if (rc == TC_OK && n < (size_t)CTX * CHUNKS)
        rc = tc_err(&err, "%s: %zu tokens, fewer than %d", text, n, CTX * CHUNKS);
    for (int c = 0; rc == TC_OK && c < CHUNKS; c++) {
        int32_t seq[CTX];
        memcpy(seq, ids + (size_t)c * CTX, sizeof seq);
        seq[0] = m.cfg.bos_id;
        size_t off[2] = {0, CTX};
        tc_batch b = {.tokens = seq, .offsets = off, .n_seqs = 1};
        tc_observer ob = {.ctx = lg, .logits = keep_logits};
        tc_forward_opts o = {.n_threads = 1, .observers = &ob, .n_observers = 1};
        rc = tc_forward(&m, &b, &o, &err);
        for (int j = CTX / 2; rc == TC_OK && j < CTX - 1; j++) {
            const float *l = lg + (size_t)j * (size_t)V;
            double mx = l[0], z = 0;
            for (int v = 1; v < V; v++)
                mx = fmax(mx, (double)l[v]);
            for (int v = 0; v < V; v++)
                z += exp((double)l[v] - mx);
            nll += mx + log(z) - (double)l[seq[j + 1]];
            count++;
        }
    }
    if (rc == TC_OK)
        ppl = exp(nll / count);
    else
        fprintf(stderr, "%s\n", err.msg);
    tc_tokenizer_free(tok);
    free(ids);
    free(lg);
    free(s);
    tc_model_close(&m);
    return ppl;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *bin = getenv("TC_BITNETCPP");
    char dir[1024], vocab_path[1024], cli[1200], arch[1200];
    struct stat st;
    if (!bin || !*bin)
        return tu_skip("TC_BITNETCPP (a bitnet.cpp build's bin folder) is not set");
    snprintf(cli, sizeof cli, "%s/llama-cli", bin);
    if (stat(cli, &st) != 0)
        return tu_skip("TC_BITNETCPP has no llama-cli");
    snprintf(arch, sizeof arch, "%s/gguf_bitnet_arch", tu_bin());
    if (stat(arch, &st) != 0)
        return tu_skip("gguf_bitnet_arch is not built");
    if (!tu_asset(dir, sizeof dir, "models/bitnet12"))
        return tu_skip("models/bitnet12 is not in the assets");
    if (!tu_asset(vocab_path, sizeof vocab_path, "models/stories260K/stories260K.gguf"))
        return tu_skip("stories260K.gguf (the vocabulary) is not in the assets");
    if (!tu_tmpdir(g_tmp, sizeof g_tmp))
        return tu_skip("no scratch directory");

    char path[1200];
    snprintf(path, sizeof path, "%s/references.json", dir);
    char *json = tu_slurp(path);
    cJSON *refs = json ? cJSON_Parse(json) : NULL;
    free(json);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(refs, "greedy"), "from_prompt");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(fp, "prompt");
    CHECK_MSG(cJSON_IsString(prompt), "%s: no greedy.from_prompt.prompt", path);
    if (!cJSON_IsString(prompt)) {
        cJSON_Delete(refs);
        return tu_finish("test_bitnetcpp");
    }
    size_t np;
    int32_t *prefix = json_ids(cJSON_GetObjectItemCaseSensitive(fp, "prefix_ids"), &np);

    /* tc's I2_S export, and its copies under the fork's architecture name */
    char i2s[1200], relu[1200], silu[1200], cmd[8192], *out;
    snprintf(i2s, sizeof i2s, "%s/b12-i2s.gguf", g_tmp);
    snprintf(relu, sizeof relu, "%s/b12-bitnet.gguf", g_tmp);
    snprintf(silu, sizeof silu, "%s/b12-bitnet-silu.gguf", g_tmp);
    tc_error err = {{0}};
    tc_gguf vocab;
    tc_model m;
    CHECK_OK(tc_gguf_open(&vocab, vocab_path, &err), &err);
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    CHECK_OK(tc_model_write_ternary(&m, i2s, TC_FORMAT_GGUF, TC_I2_S, &vocab, NULL, &err), &err);
    tc_model_close(&m);
    tc_gguf_close(&vocab);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' && '%s' '%s' '%s' --silu", arch, i2s, relu, arch, i2s, silu);
    CHECK_MSG(tu_run(cmd, &out) == 0, "gguf_bitnet_arch failed: %s", out);
    free(out);

    /* a text of one line (its newlines made spaces), as both tokenize it */
    char text[1200], hpath[1024];
    snprintf(text, sizeof text, "%s/text.txt", g_tmp);
    char *held = tu_asset(hpath, sizeof hpath, "text/gutenberg_heldout.txt") ? tu_slurp(hpath) : NULL;
    CHECK_MSG(held != NULL, "text/gutenberg_heldout.txt is not in the assets");
    if (held) {
        size_t k = strlen(held) < TEXT_BYTES ? strlen(held) : TEXT_BYTES;
        while (k && held[k] != ' ')
            k--;
        for (size_t i = 0; i < k; i++)
            held[i] = held[i] == '\n' ? ' ' : held[i];
        FILE *f = fopen(text, "w");
        CHECK(f != NULL && fwrite(held, 1, k, f) == k && fclose(f) == 0);
        free(held);
    }

    /* given SiLU: the fork's function is tc's */
    char *f_silu = fork_text(bin, silu, prompt->valuestring);
    char *t_silu = tc_text(silu, prefix, np);
    CHECK_MSG(f_silu != NULL, "bitnet.cpp's llama-cli did not run tc's I2_S export");
    double fp_silu = fork_ppl(bin, silu, text), tp_silu = tc_ppl(silu, text);
    if (f_silu && t_silu) {
        char *a = trim(f_silu), *b = trim(t_silu);
        printf("bitnet12 given SiLU, I2_S, greedy:\n  bitnet.cpp: %s\n  tc:         %s\n", a, b);
        CHECK_MSG(strcmp(a, b) == 0, "bitnet.cpp's greedy text is not tc's");
    }
    printf("  perplexity (%d chunks of %d): bitnet.cpp %.4f, tc %.4f\n", CHUNKS, CTX, fp_silu, tp_silu);
    CHECK_MSG(fp_silu > 0 && tp_silu > 0 && fabs(tp_silu / fp_silu - 1) < PPL_REL,
              "bitnet.cpp's perplexity %.4f, tc's %.4f", fp_silu, tp_silu);

    /* relu2: the fork computes SiLU all the same */
    char *f_relu = fork_text(bin, relu, prompt->valuestring);
    char *t_relu = tc_text(relu, prefix, np);
    double fp_relu = fork_ppl(bin, relu, text), tp_relu = tc_ppl(relu, text);
    CHECK(f_relu != NULL && t_relu != NULL);
    if (f_relu && t_relu && f_silu) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(fp, "text");
        char *a = trim(f_relu), *b = trim(t_relu);
        printf("bitnet12 (relu2), I2_S, greedy:\n  bitnet.cpp: %s\n  tc:         %s\n  references.json: %s\n", a, b,
               cJSON_IsString(ref) ? ref->valuestring : "?");
        CHECK_MSG(strcmp(a, trim(f_silu)) == 0, "bitnet.cpp's text with relu2 is not its SiLU text");
        CHECK_MSG(cJSON_IsString(ref) && strncmp(b, ref->valuestring, strlen(b)) == 0,
                  "tc's text of the I2_S export is not references.json's");
    }
    printf("  perplexity: bitnet.cpp %.4f (its SiLU), tc %.4f\n", fp_relu, tp_relu);
    CHECK_MSG(fp_relu == fp_silu, "bitnet.cpp's perplexity with relu2 %.4f, with SiLU %.4f", fp_relu, fp_silu);
    free(f_silu);
    free(t_silu);
    free(f_relu);
    free(t_relu);
    free(prefix);
    cJSON_Delete(refs);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0);
    return tu_finish("test_bitnetcpp");
}
