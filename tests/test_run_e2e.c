/* tc-run and tc-analyze end to end on the real models: llama2.c's published
 * greedy output of stories260K from the llama2.c, GGUF and Hugging Face
 * copies, byte for byte; perplexity equal across the F32 copies and within
 * 0.5 % for F16/BF16; the JSON report is what docs/REPORT.md promises. */
#include "testutil.h"


#include <cjson/cJSON.h>

static void test_greedy(const char *assets)
{
    char expected_path[600];
    snprintf(expected_path, sizeof expected_path, "%s/models/stories260K/greedy200_expected.txt", assets);
    char *expected = tu_slurp(expected_path);
    if (!expected)
        return;
    const char *models[] = {
        "models/stories260K/stories260K.bin --tokenizer %s/models/stories260K/tok512.bin",
        "models/stories260K/stories260K.gguf",
        "models/stories260K-hf",
    };
    for (size_t i = 0; i < 3; i++) {
        char model[800], cmd[1200], *out;
        char fmt[300];
        snprintf(fmt, sizeof fmt, "%%s/%s", models[i]);
        snprintf(model, sizeof model, fmt, assets, assets);
        snprintf(cmd, sizeof cmd, "%s/tc-run -q %s --generate '' -n 200 --temp 0", tu_bin(), model);
        CHECK(tu_run(cmd, &out) == 0);
        /* The text, ended by a newline (as llama2.c's run.c ends it). */
        size_t n = strlen(out);
        CHECK_MSG(n > 0 && out[n - 1] == '\n' && strlen(expected) == n - 1 && strncmp(out, expected, n - 1) == 0,
                  "greedy output of %s differs:\n%s", models[i], out);
        free(out);
    }
    free(expected);
}

static double ppl_of(const char *model, const char *tokenizer, const char *text)
{
    char cmd[1500], *out;
    snprintf(cmd, sizeof cmd, "%s/tc-run -q --json '%s' --tokenizer '%s' --ppl '%s' --seq-len 128", tu_bin(), model,
             tokenizer, text);
    double ppl = -1;
    if (tu_run(cmd, &out) == 0) {
        cJSON *j = cJSON_Parse(out);
        cJSON *p = j ? cJSON_GetObjectItem(j, "ppl") : NULL;
        if (cJSON_IsNumber(p))
            ppl = p->valuedouble;
        cJSON_Delete(j);
    }
    free(out);
    return ppl;
}

static void test_perplexity(const char *assets, const char *dir)
{
    /* A small text: the first 120 stories, one tokenizer for every copy. */
    char src[600], text[600], tok[600];
    snprintf(src, sizeof src, "%s/text/tinystories_valid_1000.txt", assets);
    snprintf(text, sizeof text, "%s/small.txt", dir);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", assets);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "head -n 600 '%s' > '%s'", src, text);
    if (system(cmd) != 0)
        return;
    static const char *f32[] = {"models/stories260K/stories260K.bin", "models/stories260K/stories260K.gguf",
                                "models/stories260K-hf"};
    static const char *half[] = {"models/stories260K-hf-f16-sharded", "models/stories260K-hf-bf16"};
    char model[800];
    snprintf(model, sizeof model, "%s/%s", assets, f32[0]);
    double ref = ppl_of(model, tok, text);
    CHECK_MSG(ref > 1 && ref < 20, "stories260K perplexity %g", ref);
    for (size_t i = 1; i < 3; i++) {
        snprintf(model, sizeof model, "%s/%s", assets, f32[i]);
        double p = ppl_of(model, tok, text);
        CHECK_MSG(fabs(p - ref) <= 1e-5 * ref, "%s: perplexity %.9g vs %.9g", f32[i], p, ref);
    }
    for (size_t i = 0; i < 2; i++) {
        snprintf(model, sizeof model, "%s/%s", assets, half[i]);
        double p = ppl_of(model, tok, text);
        CHECK_MSG(fabs(p - ref) <= 0.005 * ref && p != ref, "%s: perplexity %.9g vs %.9g", half[i], p, ref);
    }
    unlink(text);
}

static void test_analyze_report(const char *assets, const char *dir)
{
    char cmd[1500], report[600], html[600], *out;
    snprintf(report, sizeof report, "%s/report.json", dir);
    snprintf(html, sizeof html, "%s/report.html", dir);
    snprintf(cmd, sizeof cmd,
             "%s/tc-analyze -q '%s/models/stories260K/stories260K.gguf' --calib '%s/text/tinystories_valid_1000.txt' "
             "--samples 8 --seq-len 128 --report '%s' --html '%s'",
             tu_bin(), assets, assets, report, html);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(strstr(out, "rank") != NULL);
    free(out);
    char *text = tu_slurp(report);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL);
    if (j) {
        cJSON *layers = cJSON_GetObjectItem(j, "layers");
        CHECK(cJSON_GetArraySize(layers) == 5);
        cJSON *l0 = cJSON_GetArrayItem(layers, 0);
        static const char *mods[] = {"attn", "mlp", "block"};
        for (int m = 0; m < 3; m++) {
            cJSON *mod = cJSON_GetObjectItem(l0, mods[m]);
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(mod, "cos")));
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(mod, "dnll")));
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(mod, "kl")));
        }
        cJSON *ppl = cJSON_GetObjectItem(j, "ppl");
        CHECK(cJSON_IsNumber(ppl) && ppl->valuedouble > 1);
        CHECK(cJSON_GetObjectItem(j, "n_tokens")->valuedouble == 8 * 128);
    }
    cJSON_Delete(j);
    free(text);
    char *h = tu_slurp(html);
    CHECK(h && strstr(h, "<svg"));
    free(h);
    unlink(report);
    unlink(html);
}

/* A .tcq is a model on its own: written from each kind of source, it
 * generates with the tokenizer it carries exactly the greedy text it
 * generates with the source's own tokenizer file, and --info (text and
 * JSON) describes it; the checkpoint tools refuse it by name. */
static void test_packed(const char *assets, const char *dir)
{
    static const struct {
        const char *model, *quant_tok, *orig_tok, *kind;
    } srcs[] = {
        {"models/stories260K/stories260K.gguf", NULL, "models/stories260K/stories260K.gguf", "gguf"},
        {"models/stories260K-hf", NULL, "models/stories260K-hf/tokenizer.json", "hf"},
        {"models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", "models/stories260K/tok512.bin",
         "llama2c"},
    };
    char packed[600], cmd[2400], *out, *alone, *with;
    snprintf(packed, sizeof packed, "%s/x.tcq", dir);
    for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
        char qtok[700] = "";
        if (srcs[i].quant_tok)
            snprintf(qtok, sizeof qtok, "--tokenizer '%s/%s'", assets, srcs[i].quant_tok);
        remove(packed);
        snprintf(cmd, sizeof cmd, "%s/tc-quantize -q '%s/%s' %s -o '%s' --json", tu_bin(), assets, srcs[i].model,
                 qtok, packed);
        CHECK(tu_run(cmd, &out) == 0);
        CHECK_MSG(strstr(out, srcs[i].kind) != NULL, "%s: the summary names no %s tokenizer", srcs[i].model,
                  srcs[i].kind);
        free(out);
        snprintf(cmd, sizeof cmd, "%s/tc-run -q '%s' --generate 'Once upon a time' -n 60 --temp 0", tu_bin(),
                 packed);
        CHECK(tu_run(cmd, &alone) == 0);
        snprintf(cmd, sizeof cmd, "%s/tc-run -q '%s' --tokenizer '%s/%s' --generate 'Once upon a time' -n 60 --temp 0",
                 tu_bin(), packed, assets, srcs[i].orig_tok);
        CHECK(tu_run(cmd, &with) == 0);
        CHECK_MSG(strncmp(alone, "Once upon a time", 16) == 0 && strlen(alone) > 40 && strcmp(alone, with) == 0,
                  "%s: the .tcq alone generates\n%s\nbut with the source's tokenizer\n%s", srcs[i].model, alone,
                  with);
        free(alone);
        free(with);

        snprintf(cmd, sizeof cmd, "%s/tc-run --info '%s'", tu_bin(), packed);
        CHECK(tu_run(cmd, &out) == 0);
        CHECK(strstr(out, "tcq") && strstr(out, "512 tokens") && strstr(out, "tl2"));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/tc-analyze --info --json '%s'", tu_bin(), packed);
        CHECK(tu_run(cmd, &out) == 0);
        cJSON *j = cJSON_Parse(out);
        const cJSON *tk = cJSON_GetObjectItem(j, "tokenizer");
        CHECK(j && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "format")), "tcq") == 0);
        CHECK(cJSON_GetObjectItem(j, "n_layers")->valuedouble == 5 &&
              cJSON_GetObjectItem(j, "vocab_size")->valuedouble == 512);
        CHECK(tk && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(tk, "kind")), srcs[i].kind) == 0 &&
              cJSON_GetObjectItem(tk, "vocab_size")->valuedouble == 512);
        cJSON_Delete(j);
        free(out);
    }
    snprintf(cmd, sizeof cmd, "%s/tc-analyze '%s' --calib '%s/text/tinystories_valid_1000.txt' 2>&1", tu_bin(),
             packed, assets);
    CHECK(tu_run(cmd, &out) == 1);
    CHECK(strstr(out, "packed ternary model (.tcq)") && strstr(out, packed));
    free(out);
    remove(packed);
}

int main(void)
{
    char probe[600], dir[256];
    snprintf(probe, sizeof probe, "%s/tc-run", tu_bin());
    if (access(probe, X_OK) != 0)
        return tu_skip("the tools are not built (set TC_BIN)");
    const char *assets = tu_assets();
    if (!assets)
        return tu_skip("TC_ASSETS is not set and ../shared/assets is absent");
    if (!tu_tmpdir(dir, sizeof dir))
        return 1;
    test_greedy(assets);
    test_perplexity(assets, dir);
    test_analyze_report(assets, dir);
    test_packed(assets, dir);
    rmdir(dir);
    return tu_finish("test_run_e2e");
}
