/* tc-prune as a user runs it: the plan printed before writing, --dry-run,
 * --json, a report as the ranking's source, calibration text, --eval, and
 * clear errors with the documented exit codes. */
#include "testutil.h"


#include <cjson/cJSON.h>

#include "tc/model.h"
#include "tc/report.h"
#include "tc/synth.h"

static int layers_of(const char *path)
{
    tc_model m;
    tc_error err = {{0}};
    if (tc_model_open(&m, path, &err))
        return -1;
    int n = m.cfg.n_layers;
    tc_model_close(&m);
    return n;
}

/* A synthetic model and a report whose ranking puts attention 2 and block 1
 * first. */
static void test_report(const char *dir)
{
    tc_error err = {{0}};
    char model[400], report[400], out[400], cmd[2048], *o;
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(report, sizeof report, "%s/r.json", dir);
    snprintf(out, sizeof out, "%s/pruned.gguf", dir);
    tc_synth_spec s = {.cfg = tc_synth_config(4, 32, 4, 2, 48, 61), .seed = 3};
    CHECK_OK(tc_synth_write(model, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    tc_analysis a = {.n_layers = 4, .n_heads = 4, .nll = 1, .ppl = exp(1.0), .n_tokens = 10, .n_predicted = 9};
    a.layers = calloc(4, sizeof *a.layers);
    for (int l = 0; l < 4; l++) {
        for (int k = 0; k < TC_N_MODULES; k++) {
            tc_module_stats *st = &a.layers[l].mod[k];
            st->present = 1;
            st->cos_mean = 0.1 * l + 0.01 * k;
            st->cos_min = st->cos_mean - 0.1;
        }
    }
    a.layers[2].mod[TC_MOD_ATTN].cos_mean = 0.99;
    a.layers[1].mod[TC_MOD_BLOCK].cos_mean = 0.98;
    CHECK_OK(tc_report_write_json(report, &a, NULL, NULL, &err), &err);
    tc_analysis_free(&a);

    /* --dry-run --json: the plan, nothing written */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s' --report '%s' --drop-attn 1 --drop-blocks 1 --dry-run --json",
             tu_bin(), model, out, report);
    CHECK(tu_run(cmd, &o) == 0);
    cJSON *j = cJSON_Parse(o);
    CHECK_MSG(j != NULL, "not JSON: %s", o);
    if (j) {
        char *da = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "drop_attn"));
        char *db = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "drop_block"));
        CHECK(da && strcmp(da, "[2]") == 0);
        CHECK(db && strcmp(db, "[1]") == 0);
        free(da), free(db);
        CHECK(cJSON_GetObjectItem(j, "n_layers_after")->valueint == 3);
        cJSON *b = cJSON_GetObjectItem(j, "before"), *f = cJSON_GetObjectItem(j, "after");
        CHECK(b && f && cJSON_GetObjectItem(f, "params")->valuedouble < cJSON_GetObjectItem(b, "params")->valuedouble);
        CHECK(cJSON_GetObjectItem(f, "kv_bytes_per_token")->valuedouble == 2 * 2 * 2 * 8 * 2);
    }
    cJSON_Delete(j);
    free(o);
    CHECK(access(out, F_OK) != 0);

    /* Written: the plan on stderr first, then the file. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s' --report '%s' --drop-attn 1 --drop-blocks 1 2>&1", tu_bin(),
             model, out, report);
    CHECK(tu_run(cmd, &o) == 0);
    CHECK(strstr(o, "drop layer   1  block") && strstr(o, "drop layer   2  attn") && strstr(o, "KV bytes/token"));
    CHECK(strstr(o, "predicted savings") < strstr(o, "wrote"));
    free(o);
    CHECK(layers_of(out) == 3);

    /* A report for another model is refused. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/x.gguf' --report '%s' --drop-attn 1 2>&1", tu_bin(), out, dir,
             report);
    CHECK(tu_run(cmd, &o) == 1 && strstr(o, "covers 4 layers"));
    free(o);

    /* Command-line mistakes: exit 2 with the reason. */
    static const struct {
        const char *args, *needle;
    } bad[] = {
        {"--layers attn:4", "beyond"},
        {"--layers attn", "KIND:LAYER"},
        {"--drop-attn 1", "--report FILE or --calib FILE"},
        {"", "nothing to drop"},
        {"--layers attn:1 --format onnx", "--format"},
        {"--drop-attn x", "--drop-attn"},
        {"--criterion ppl --layers attn:1", "--criterion"},
        {"--iterative --drop-attn 1", "needs --calib"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/y.gguf' %s 2>&1", tu_bin(), model, dir, bad[i].args);
        int rc = tu_run(cmd, &o);
        CHECK_MSG(rc == 2 && strstr(o, bad[i].needle), "'%s': exit %d, %s", bad[i].args, rc, o);
        free(o);
    }
    /* The input as output is refused before any work (tests/test_outputs.c
     * tries every spelling). */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s' --layers attn:1 -q 2>&1", tu_bin(), model, model);
    CHECK(tu_run(cmd, &o) == 2 && strstr(o, "overwrite the input"));
    free(o);
    /* Failures of the work: exit 1, one line naming the file. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/z.bin' --format llama2c --layers mlp:1 -q 2>&1", tu_bin(), model,
             dir);
    CHECK(tu_run(cmd, &o) == 1 && strstr(o, "llama2.c") && strstr(o, "z.bin"));
    free(o);
    /* Formats: HF keeps the drop lists, llama2.c takes a block drop. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/h' --format hf --layers attn:0,mlp:3 -q", tu_bin(), model, dir);
    CHECK(tu_run(cmd, &o) == 0);
    free(o);
    snprintf(cmd, sizeof cmd, "%s/h", dir);
    CHECK(layers_of(cmd) == 4);
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/l.bin' --format llama2c --layers block:0-1 -q", tu_bin(), model,
             dir);
    CHECK(tu_run(cmd, &o) == 0);
    free(o);
    snprintf(cmd, sizeof cmd, "%s/l.bin", dir);
    CHECK(layers_of(cmd) == 2);
    /* A name ending in .gguf is a GGUF file, from an HF directory too, and a
     * --format that contradicts the name is refused before any work. */
    char hf[512];
    if (tu_asset(hf, sizeof hf, "models/stories260K-hf")) { /* a GGUF needs the tokenizer an HF directory has */
        snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' -o '%s/from_hf.gguf' --layers block:0 -q", tu_bin(), hf, dir);
        CHECK(tu_run(cmd, &o) == 0);
        free(o);
        snprintf(cmd, sizeof cmd, "%s/from_hf.gguf", dir);
        tc_model g;
        int opened = tc_model_open(&g, cmd, &err) == TC_OK;
        CHECK(opened && g.format == TC_FORMAT_GGUF && g.cfg.n_layers == 4);
        if (opened)
            tc_model_close(&g);
    }
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s/h' -o '%s/x.gguf' --format hf --layers block:0 -q 2>&1", tu_bin(), dir,
             dir);
    CHECK(tu_run(cmd, &o) == 2 && strstr(o, "x.gguf") && strstr(o, "--format is hf"));
    free(o);
    snprintf(cmd, sizeof cmd, "%s/tc-quantize '%s' -o '%s/q.gguf' -q 2>&1", tu_bin(), model, dir);
    CHECK(tu_run(cmd, &o) == 2 && strstr(o, "--format gguf-tq1 or gguf-tq2"));
    free(o);
    snprintf(cmd, sizeof cmd, "%s/x.gguf", dir);
    CHECK(access(cmd, F_OK) != 0);
}

/* Real text on stories260K: calibration, the measured criterion, --eval. */
static void test_stories(const char *dir)
{
    char model[512], text[512], cmd[2048], *o;
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf") ||
        !tu_asset(text, sizeof text, "text/tinystories_valid_1000.txt")) {
        printf("note: stories260K or its text is absent; calibration checks skipped\n");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "%s/tc-prune '%s' -o '%s/s.gguf' --calib '%s' --samples 4 --seq-len 64 --criterion kl --drop-mlp 1 "
             "--keep-first 1 --keep-last 1 --eval '%s' --json -q",
             tu_bin(), model, dir, text, text);
    CHECK(tu_run(cmd, &o) == 0);
    cJSON *j = cJSON_Parse(o);
    CHECK_MSG(j != NULL, "not JSON: %s", o);
    if (j) {
        cJSON *mlp = cJSON_GetObjectItem(j, "drop_mlp");
        CHECK(cJSON_GetArraySize(mlp) == 1);
        int l = cJSON_GetArrayItem(mlp, 0) ? cJSON_GetArrayItem(mlp, 0)->valueint : -1;
        CHECK(l >= 1 && l <= 3);
        cJSON *e = cJSON_GetObjectItem(j, "eval");
        CHECK(e && cJSON_GetObjectItem(e, "predictions")->valuedouble == 4 * 63);
        double kl = cJSON_GetObjectItem(e, "kl")->valuedouble, t1 = cJSON_GetObjectItem(e, "top1_agreement")->valuedouble;
        double p0 = cJSON_GetObjectItem(e, "ppl_original")->valuedouble;
        CHECK(kl > 0 && kl < 5 && t1 > 0.2 && t1 <= 1 && p0 > 1 && p0 < 50);
    }
    cJSON_Delete(j);
    free(o);
    snprintf(cmd, sizeof cmd, "%s/s.gguf", dir);
    CHECK(layers_of(cmd) == 5);
}

int main(void)
{
    char probe[600], dir[256];
    snprintf(probe, sizeof probe, "%s/tc-prune", tu_bin());
    if (access(probe, X_OK) != 0)
        return tu_skip("tc-prune is not built (set TC_BIN)");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    test_report(dir);
    test_stories(dir);
    return tu_finish("test_prune_cli");
}
