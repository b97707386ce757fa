/* The planted structure through the tools: tc-synth plants a head with a
 * zero output projection, a head attending only to BOS and two layers of
 * such heads; tc-analyze's report finds exactly them (heads ranked, sinks,
 * tokens free to drop from the copying layers on); tc-prune --drop-heads
 * removes the zero head from a GGUF, and the file read back says what it
 * holds. */
#include "testutil.h"

#include <cjson/cJSON.h>

static char dir[256];

static const char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static cJSON *item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

int main(void)
{
    const char *bin = getenv("TC_BIN");
    if (!bin || !*bin)
        return tu_skip("the tools are not built (set TC_BIN)");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "'%s/tc-synth' -o '%s' --layers 6 --dim 64 --heads 4 --kv-heads 2 --ffn 96 --vocab 96 --seed 11 "
             "--zero-heads 1:2 --sink-heads 2:1 --sink-layers 4,5 -q 2>&1",
             bin, path_of("planted.gguf"));
    CHECK_MSG(tu_run(cmd, &out) == 0, "tc-synth: %s", out);
    free(out);
    /* Windows that start with BOS (id 1) and hold it nowhere else. */
    FILE *f = fopen(path_of("windows.jsonl"), "w");
    uint64_t x = 3;
    for (int w = 0; f && w < 12; w++) {
        fputs("[1", f);
        for (int t = 1; t < 40; t++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            fprintf(f, ", %d", 3 + (int)((x >> 33) % 93));
        }
        fputs("]\n", f);
    }
    if (f)
        fclose(f);
    snprintf(cmd, sizeof cmd,
             "'%s/tc-analyze' '%s' --calib-tokens '%s' --no-measured --head-samples 12 --token-samples 12 "
             "--report '%s' --html '%s' --threads 2 -q 2>&1",
             bin, path_of("planted.gguf"), path_of("windows.jsonl"), path_of("r.json"), path_of("r.html"));
    int rc = tu_run(cmd, &out);
    CHECK_MSG(rc == 0 && strstr(out, "heads masked alone") && strstr(out, "sink heads"), "tc-analyze: %s", out);
    free(out);
    char *text = tu_slurp(path_of("r.json"));
    cJSON *r = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(r != NULL);
    if (r) {
        /* The zero head first, at exactly nothing. */
        const cJSON *first = cJSON_GetArrayItem(item(item(r, "heads"), "ranking"), 0);
        CHECK(first && item(first, "layer")->valueint == 1 && item(first, "head")->valueint == 2 &&
              fabs(item(first, "kl")->valuedouble) < 1e-12 && fabs(item(first, "dnll")->valuedouble) < 1e-12);
        /* Sinks: the planted heads and only they. */
        int exact = 1;
        for (int l = 0; l < 6; l++)
            for (int h = 0; h < 4; h++) {
                const cJSON *hs = cJSON_GetArrayItem(item(cJSON_GetArrayItem(item(r, "layers"), l), "heads"), h);
                double sink = hs ? item(hs, "sink")->valuedouble : -1;
                int planted = (l == 2 && h == 1) || l >= 4;
                exact &= planted ? sink > 0.999 : sink < 0.5;
            }
        CHECK_MSG(exact, "the sinks found are not the planted ones");
        /* From the copying layers on, tokens drop at the smallest ratio for free. */
        const cJSON *grid = item(item(r, "tokens"), "grid");
        double smallest = cJSON_GetArrayItem(grid, cJSON_GetArraySize(grid) - 1)->valuedouble;
        for (int l = 4; l < 6; l++) {
            const cJSON *t = item(cJSON_GetArrayItem(item(r, "layers"), l), "tokens");
            CHECK(t && item(t, "keep_1pct")->valuedouble == smallest && item(t, "keep_5pct")->valuedouble == smallest);
        }
        cJSON_Delete(r);
    }
    char *html = tu_slurp(path_of("r.html"));
    CHECK(html && strstr(html, "measured loss of masking each head") && strstr(html, "token schedule"));
    free(html);

    /* The zero head goes: layer 1's groups keep 2 and 1 heads, so the file holds 3 groups of one. */
    snprintf(cmd, sizeof cmd, "'%s/tc-prune' '%s' --report '%s' --drop-heads 1 -o '%s' 2>&1", bin,
             path_of("planted.gguf"), path_of("r.json"), path_of("pruned.gguf"));
    CHECK_MSG(tu_run(cmd, &out) == 0, "tc-prune: %s", out);
    /* The copied key/value head makes the cache grow, and the plan says so. */
    const char *kvline = out ? strstr(out, "KV bytes/token") : NULL;
    const char *eol = kvline ? strchr(kvline, '\n') : NULL;
    const char *grow = kvline ? strstr(kvline, "(+") : NULL;
    CHECK_MSG(grow && eol && grow < eol, "the plan's KV line: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tc-analyze' --info '%s' --json 2>&1", bin, path_of("pruned.gguf"));
    rc = tu_run(cmd, &out);
    cJSON *info = rc == 0 ? cJSON_Parse(out) : NULL;
    CHECK_MSG(info != NULL, "tc-analyze --info: %s", out);
    free(out);
    if (info) {
        char *q = cJSON_PrintUnformatted(item(info, "layer_heads"));
        char *kv = cJSON_PrintUnformatted(item(info, "layer_kv_heads"));
        CHECK_MSG(q && kv && strcmp(q, "[4,3,4,4,4,4]") == 0 && strcmp(kv, "[2,3,2,2,2,2]") == 0, "heads %s, kv %s", q,
                  kv);
        free(q);
        free(kv);
        cJSON_Delete(info);
    }
    /* Hugging Face cannot hold it; a count above the model's is a bad command line. */
    snprintf(cmd, sizeof cmd, "'%s/tc-prune' '%s' --report '%s' --drop-heads 1 --format hf -o '%s' -q 2>&1", bin,
             path_of("planted.gguf"), path_of("r.json"), path_of("pruned-hf"));
    rc = tu_run(cmd, &out);
    CHECK_MSG(rc == 1 && strstr(out, "one head count"), "HF: exit %d: %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s/tc-prune' '%s' --report '%s' --drop-heads 25 -o '%s' -q 2>&1", bin,
             path_of("planted.gguf"), path_of("r.json"), path_of("more.gguf"));
    rc = tu_run(cmd, &out);
    CHECK_MSG(rc == 2 && strstr(out, "--drop-heads 25"), "too many: exit %d: %s", rc, out);
    free(out);
    return tu_finish("test_attn_cli");
}
