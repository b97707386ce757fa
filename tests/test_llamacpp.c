/* Pruned GGUF files as stock llama.cpp runs them: block, attention and MLP
 * drops of stories260K written by tc, greedy continuations from llama.cpp
 * (the prebuilt binaries of the node-llama-cpp package, driven by
 * tests/llamacpp/greedy.mjs) against tc's own decoder on the same files.
 *
 * Needs node and the package: TC_NODE_LLAMA_CPP names the node_modules
 * folder holding node-llama-cpp (default: $TC_SOURCE/build/node_modules, then
 * $TC_SOURCE/node_modules); skipped when either is absent. */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/prune.h"

#define N_GEN 32

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
    char script[1024];
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why)
        return tu_skip(why);
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

    int32_t ids[N_VARIANTS][N_GEN], *outs[N_VARIANTS];
    int n_out[N_VARIANTS];
    const char *files[N_VARIANTS];
    for (size_t i = 0; i < N_VARIANTS; i++) {
        outs[i] = ids[i];
        files[i] = paths[i];
    }
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, N_VARIANTS, outs, n_out) == 0,
              "node did not run every file");
    for (size_t i = 0; i < N_VARIANTS; i++) {
        int32_t want[N_GEN];
        CHECK_MSG(n_out[i] == N_GEN, "%s: llama.cpp could not run it", VARIANTS[i].name);
        if (n_out[i] != N_GEN)
            continue;
        if (llamacpp_tc_greedy(paths[i], N_GEN, want) != 0) {
            CHECK_MSG(0, "%s: tc could not decode it", VARIANTS[i].name);
            continue;
        }
        int first = -1;
        for (int j = 0; j < N_GEN && first < 0; j++)
            if (ids[i][j] != want[j])
                first = j;
        CHECK_MSG(first < 0, "%s: llama.cpp and tc part at generated token %d (of %d)", VARIANTS[i].name, first,
                  N_GEN);
    }
    return tu_finish("test_llamacpp");
}
