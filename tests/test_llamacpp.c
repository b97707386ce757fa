/* Pruned GGUF files as stock llama.cpp runs them: block, attention and MLP
 * drops of stories260K written by tc, greedy continuations from llama.cpp
 * (the prebuilt binaries of the node-llama-cpp package, driven by
 * tests/llamacpp/greedy.mjs) against tc's own decoder on the same files.
 *
 * Needs node and the package: TC_NODE_LLAMA_CPP names the node_modules
 * folder holding node-llama-cpp (default: $TC_SOURCE/build/node_modules, then
 * $TC_SOURCE/node_modules); skipped when either is absent. */
#include "testutil.h"

#include <sys/wait.h>

#include "tc/forward.h"
#include "tc/prune.h"

#define N_GEN 32

static const char *find_package(char *buf, size_t n)
{
    const char *env = getenv("TC_NODE_LLAMA_CPP");
    const char *src = getenv("TC_SOURCE");
    char probe[1200];
    const char *cands[3] = {env && *env ? env : NULL, NULL, NULL};
    char c1[1024], c2[1024];
    if (src && *src) {
        snprintf(c1, sizeof c1, "%s/build/node_modules", src);
        snprintf(c2, sizeof c2, "%s/node_modules", src);
        cands[1] = c1;
        cands[2] = c2;
    }
    for (int i = 0; i < 3; i++) {
        if (!cands[i])
            continue;
        snprintf(probe, sizeof probe, "%s/node-llama-cpp/dist/index.js", cands[i]);
        if (access(probe, R_OK) == 0) {
            snprintf(buf, n, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

static int have_node(void)
{
    FILE *p = popen("node --version 2>/dev/null", "r");
    if (!p)
        return 0;
    char line[64] = "";
    int ok = fgets(line, sizeof line, p) && line[0] == 'v';
    return pclose(p) == 0 && ok;
}

/* tc's greedy continuation of BOS on the file at path. */
static int tc_greedy(const char *path, int32_t *out)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = 64};
    size_t n = 0;
    int32_t bos = 1;
    tc_generate_opts g = {.temperature = 0, .stop_token = -1};
    int rc = tc_decoder_new(&d, &m, &o, &err);
    if (rc == TC_OK)
        rc = tc_generate(d, &bos, 1, N_GEN, &g, out, &n, &err);
    if (rc != TC_OK)
        fprintf(stderr, "%s\n", err.msg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK && n == N_GEN ? 0 : -1;
}

typedef struct variant {
    const char *name, *list;
} variant;

static const variant VARIANTS[] = {
    {"original", NULL},
    {"block2", "block:2"},
    {"attn1_3", "attn:1,attn:3"},
    {"mlp2", "mlp:2"},
    {"mlp0_3", "mlp:0,mlp:3"},
    {"mixed", "mlp:0,attn:4,block:2"},
    {"attn0", "attn:0,mlp:4"}, /* layer 0 needs its own stand-in */
};
#define N_VARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

int main(void)
{
    char model[512], pkg[1024], dir[256];
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf"))
        return tu_skip("stories260K.gguf is not in the assets");
    if (!have_node())
        return tu_skip("node is not installed");
    if (!find_package(pkg, sizeof pkg))
        return tu_skip("node-llama-cpp is not installed (set TC_NODE_LLAMA_CPP to its node_modules folder)");
    const char *src = getenv("TC_SOURCE");
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/llamacpp/greedy.mjs", src && *src ? src : ".");
    if (access(script, R_OK) != 0)
        return tu_skip("tests/llamacpp/greedy.mjs not found (set TC_SOURCE)");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");

    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, model, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char paths[N_VARIANTS][600];
    for (size_t i = 0; i < N_VARIANTS; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.gguf", dir, VARIANTS[i].name);
        tc_prune_plan p;
        CHECK_OK(tc_prune_plan_init(&p, m.cfg.n_layers, &err), &err);
        if (VARIANTS[i].list)
            CHECK_OK(tc_prune_parse_list(&p, VARIANTS[i].list, "variant", &err), &err);
        CHECK_OK(tc_prune_write(&m, &p, paths[i], TC_FORMAT_GGUF, &err), &err);
        tc_prune_plan_free(&p);
    }
    tc_model_close(&m);

    size_t cmd_len = 4096 + N_VARIANTS * 620;
    char *cmd = malloc(cmd_len);
    int k = snprintf(cmd, cmd_len, "node '%s' '%s' %d 1", script, pkg, N_GEN);
    for (size_t i = 0; i < N_VARIANTS; i++)
        k += snprintf(cmd + k, cmd_len - (size_t)k, " '%s'", paths[i]);
    snprintf(cmd + k, cmd_len - (size_t)k, " 2>&1");
    FILE *pipe = popen(cmd, "r");
    free(cmd);
    if (!pipe)
        return tu_skip("cannot start node");
    char line[8192];
    size_t i = 0;
    while (i < N_VARIANTS && fgets(line, sizeof line, pipe)) {
        if (strncmp(line, "ok ", 3) != 0 && strncmp(line, "error ", 6) != 0)
            continue; /* llama.cpp's own log lines */
        CHECK_MSG(strncmp(line, "ok ", 3) == 0, "%s: llama.cpp could not run it: %s", VARIANTS[i].name, line);
        int32_t want[N_GEN], got[N_GEN];
        int n = 0;
        char *s = line + 3, *end;
        while (n < N_GEN) {
            long v = strtol(s, &end, 10);
            if (end == s)
                break;
            got[n++] = (int32_t)v;
            s = end;
        }
        if (strncmp(line, "ok ", 3) == 0 && tc_greedy(paths[i], want) == 0) {
            int first = -1;
            for (int j = 0; j < N_GEN && first < 0; j++)
                if (j >= n || got[j] != want[j])
                    first = j;
            CHECK_MSG(first < 0, "%s: llama.cpp and tc part at generated token %d (of %d)", VARIANTS[i].name,
                      first, N_GEN);
        } else if (strncmp(line, "ok ", 3) == 0) {
            CHECK_MSG(0, "%s: tc could not decode it", VARIANTS[i].name);
        }
        i++;
    }
    int st = pclose(pipe);
    CHECK_MSG(i == N_VARIANTS, "node printed results for %zu of %zu files", i, N_VARIANTS);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return tu_finish("test_llamacpp");
}
