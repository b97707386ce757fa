/* tc-run --compare with a checkpoint rather than a packed model (a GGUF of
 * ggml block types, as llama-quantize writes): it runs through the fp32
 * decoder and is scored on the windows a packed model would be.
 *   - the original against itself: KL exactly 0, top-1 100 %, the same
 *     perplexity on both sides;
 *   - a pruned Q8_0 GGUF: its perplexity equals tc-run --ppl's on the same
 *     windows, the original's equals the original's --ppl, KL > 0;
 *   - --verify stays refused for a checkpoint, --compare needs --eval. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"

static double json_num(const char *text, const char *key)
{
    cJSON *j = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
    return d;
}

/* The first paragraphs of the text (about 6000 bytes). */
static int write_head(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char buf[6000];
    size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
    int ok = in && out && n > 0 && fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out))
        ok = 0;
    return ok ? 0 : -1;
}

int main(void)
{
    char model[512], text[512], dir[512], pruned[1100], eval[1100], cmd[4096], *out = NULL;
    const char *bin = tu_bin();
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf") ||
        !tu_asset(text, sizeof text, "text/tinystories_valid_1000.txt"))
        return tu_skip("stories260K or its text is missing");
    CHECK(tu_tmpdir(dir, sizeof dir) != NULL);
    snprintf(pruned, sizeof pruned, "%s/pruned-q8.gguf", dir);
    snprintf(eval, sizeof eval, "%s/eval.txt", dir);
    CHECK(write_head(text, eval) == 0);

    /* The original against itself. */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --compare %s --eval %s --seq-len 64 --samples 100000 --json -q", bin,
             model, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    double ppl_orig = json_num(out, "ppl_original"), n_win = json_num(out, "n_windows");
    CHECK(ppl_orig > 1 && n_win > 10);
    CHECK(json_num(out, "ppl_packed") == ppl_orig);
    CHECK(json_num(out, "kl_mean") == 0 && json_num(out, "kl_max") == 0);
    CHECK(json_num(out, "top1_agreement") == 1);
    free(out);

    /* A different model: the last block dropped, the linear layers Q8_0. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune %s --layers block:4 --type q8_0 -o %s --force -q 2>&1", bin, model,
             pruned);
    CHECK(tu_run(cmd, &out) == 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --compare %s --eval %s --seq-len 64 --samples 100000 --json -q", bin,
             pruned, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    double ppl_q = json_num(out, "ppl_packed");
    CHECK(json_num(out, "ppl_original") == ppl_orig);
    CHECK(json_num(out, "n_windows") == n_win);
    CHECK(json_num(out, "kl_mean") > 0.01 && ppl_q > ppl_orig);
    CHECK(json_num(out, "top1_agreement") < 1);
    free(out);
    /* Each side equals what --ppl computes for that model on the same windows. */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --ppl %s --seq-len 64 --json -q", bin, pruned, eval);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(json_num(out, "n_windows") == n_win);
    CHECK_NEAR(json_num(out, "ppl"), ppl_q, 1e-6 * ppl_q);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --ppl %s --seq-len 64 --json -q", bin, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK_NEAR(json_num(out, "ppl"), ppl_orig, 1e-6 * ppl_orig);
    free(out);
    printf("stories260K on %g windows of 64: original %.6f, last block dropped and Q8_0 %.6f\n", n_win, ppl_orig,
           ppl_q);

    /* What stays refused, in one line. */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --verify 2>&1", bin, pruned);
    CHECK(tu_run(cmd, &out) == 2);
    CHECK(out && strstr(out, "--verify needs a packed ternary model"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --compare %s 2>&1", bin, pruned, model);
    CHECK(tu_run(cmd, &out) == 2);
    CHECK(out && strstr(out, "--compare needs --eval"));
    free(out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(tu_run(cmd, &out) == 0);
    free(out);
    return tu_finish("test_compare_checkpoint");
}
