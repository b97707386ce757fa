/* The command-line tools as a user runs them: --help, --info (text and JSON)
 * on every asset model, exit codes, and one clear line for a bad file. */
#include "testutil.h"


#include <cjson/cJSON.h>

static const char *const tools[] = {"tc-analyze", "tc-prune", "tc-quantize", "tc-run"};

/* Runs a shell command; captures stdout (and stderr when merge) into a malloc'd buffer. */
static void test_help_and_usage(void)
{
    char cmd[1024], *out;
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s --help", tu_bin(), tools[i]);
        CHECK(tu_run(cmd, &out) == 0);
        CHECK(strstr(out, "Usage:") && strstr(out, "--info") && strstr(out, "Exit codes"));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/%s --no-such-option 2>&1", tu_bin(), tools[i]);
        CHECK(tu_run(cmd, &out) == 2);
        free(out);
        snprintf(cmd, sizeof cmd, "%s/%s --version", tu_bin(), tools[i]);
        CHECK(tu_run(cmd, &out) == 0 && strstr(out, tools[i]));
        free(out);
    }
}

static void test_info(void)
{
    static const struct {
        const char *rel;
        const char *format;
        int layers, dim, vocab;
    } models[] = {
        {"models/stories260K/stories260K.bin", "llama2c", 5, 64, 512},
        {"models/stories260K/stories260K.gguf", "gguf", 5, 64, 512},
        {"models/stories260K-hf", "hf", 5, 64, 512},
        {"models/stories260K-hf-f16-sharded", "hf", 5, 64, 512},
        {"models/stories260K-hf-bf16", "hf", 5, 64, 512},
        {"models/llama2xs/llama2xs.bin", "llama2c", 5, 64, 512},
        {"models/babyllama105/babyllama105.bin", "llama2c", 5, 128, 105},
        {"models/babyllama105-hf", "hf", 5, 128, 105},
        {"models/deep16-hf", "hf", 16, 256, 512},
    };
    static const char *keys[] = {"format", "arch", "n_layers", "dim", "n_heads", "n_kv_heads", "head_dim",
                                 "ffn_dim", "vocab_size", "rope_layout", "tied_embeddings", "n_params"};
    char path[512], cmd[1200], *out;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (!tu_asset(path, sizeof path, models[i].rel))
            continue;
        snprintf(cmd, sizeof cmd, "%s/tc-analyze --info --json '%s'", tu_bin(), path);
        CHECK(tu_run(cmd, &out) == 0);
        cJSON *j = cJSON_Parse(out);
        CHECK_MSG(j != NULL, "%s: --json output is not JSON", models[i].rel);
        for (size_t k = 0; j && k < sizeof keys / sizeof keys[0]; k++)
            CHECK_MSG(cJSON_GetObjectItem(j, keys[k]) != NULL, "%s: no key %s", models[i].rel, keys[k]);
        if (j) {
            CHECK(strcmp(cJSON_GetObjectItem(j, "format")->valuestring, models[i].format) == 0);
            CHECK(cJSON_GetObjectItem(j, "n_layers")->valueint == models[i].layers);
            CHECK(cJSON_GetObjectItem(j, "dim")->valueint == models[i].dim);
            CHECK(cJSON_GetObjectItem(j, "vocab_size")->valueint == models[i].vocab);
        }
        cJSON_Delete(j);
        free(out);
        snprintf(cmd, sizeof cmd, "%s/tc-run --info '%s'", tu_bin(), path);
        CHECK(tu_run(cmd, &out) == 0 && strstr(out, "bits per weight"));
        free(out);
    }
}

static void test_bad_file(void)
{
    char dir[256], path[300], cmd[800], *out;
    if (!tu_tmpdir(dir, sizeof dir))
        return;
    snprintf(path, sizeof path, "%s/broken.gguf", dir);
    FILE *f = fopen(path, "wb");
    fwrite("GGUF\x03\x00\x00\x00\xff\xff", 1, 10, f);
    fclose(f);
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s --info '%s' 2>&1 >/dev/null", tu_bin(), tools[i], path);
        CHECK(tu_run(cmd, &out) == 1);
        /* One line, naming the tool and the file. */
        char *nl = strchr(out, '\n');
        CHECK(nl && nl[1] == '\0');
        CHECK(strstr(out, tools[i]) == out && strstr(out, path));
        free(out);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    char probe[600];
    snprintf(probe, sizeof probe, "%s/tc-analyze", tu_bin());
    if (access(probe, X_OK) != 0)
        return tu_skip("the tools are not built (set TC_BIN)");
    test_help_and_usage();
    test_info();
    test_bad_file();
    return tu_finish("test_tools");
}
