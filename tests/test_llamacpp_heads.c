/* Dropped heads as stock llama.cpp runs them: stories260K with heads removed
 * by tc (GGUF deci with per-layer head counts: groups keeping different
 * counts split with copied key/value heads, a whole group gone, a layer left
 * without heads, the same head of every group, and the heads an analysis
 * ranks least important), greedy continuations from llama.cpp against tc's
 * decoder on the same files.
 *
 * Needs node and node-llama-cpp (tests/llamacpp.h); skipped when absent. */
#include "llamacpp.h"

#include "tc/analyze.h"
#include "tc/prune.h"

#define N_GEN 32
#define N_VARIANTS 4

int main(void)
{
    char model[512], pkg[1024], dir[256], script[1024];
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf"))
        return tu_skip("stories260K.gguf is not in the assets");
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
    const int L = m.cfg.n_layers, H = m.cfg.n_heads;
    static const char *const names[N_VARIANTS] = {"mixed", "mixed_attn", "uniform", "measured"};
    char paths[N_VARIANTS][600];
    for (int v = 0; v < N_VARIANTS; v++) {
        snprintf(paths[v], sizeof paths[v], "%s/%s.gguf", dir, names[v]);
        tc_prune_plan p;
        CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
        CHECK_OK(tc_prune_plan_heads(&p, H, &err), &err);
        if (v <= 1) {
            /* layer 0: one head of group 0; layer 1: group 1 whole; layer 3: three heads of three groups */
            const int drops[][2] = {{0, 0}, {1, 2}, {1, 3}, {3, 1}, {3, 4}, {3, 7}};
            for (size_t i = 0; i < sizeof drops / sizeof *drops; i++)
                p.drop_heads[drops[i][0] * H + drops[i][1]] = 1;
            if (v == 1) { /* and every head of layer 2 */
                for (int h = 0; h < H; h++)
                    p.drop_heads[2 * H + h] = 1;
                p.drop[TC_MOD_ATTN][2] = 1;
            }
        } else if (v == 2) {
            for (int l = 0; l < L; l++)
                for (int h = 1; h < H; h += 2)
                    p.drop_heads[l * H + h] = 1;
        } else {
            /* The 8 heads an analysis ranks least important, on 8 windows the
             * model wrote itself (sampled after BOS). */
            enum { NW = 8, WL = 64 };
            static int32_t tok[NW * WL];
            size_t off[NW + 1] = {0};
            tc_decoder *d = NULL;
            tc_decoder_opts dopt = {.max_len = WL};
            CHECK_OK(tc_decoder_new(&d, &m, &dopt, &err), &err);
            for (int w = 0; d && w < NW; w++) {
                int32_t bos = m.cfg.bos_id;
                size_t got = 0;
                tc_generate_opts g = {.temperature = 1.0f, .seed = 40 + (uint64_t)w, .stop_token = -1};
                tok[w * WL] = bos;
                CHECK_OK(tc_generate(d, &bos, 1, WL - 1, &g, tok + w * WL + 1, &got, &err), &err);
                off[w + 1] = off[w] + 1 + got;
                memmove(tok + off[w], tok + w * WL, (1 + got) * sizeof *tok);
            }
            tc_decoder_free(d);
                        tc_analyze_opts ao = {.n_threads = 2, .no_measure = 1, .no_head_stats = 1, .head_windows = 8};
            tc_analysis a;
            memset(&a, 0, sizeof a);
            CHECK_OK(tc_analyze(&m, tok, off, NW, &ao, &a, &err), &err);
            tc_prune_opts o = {.criterion = TC_CRIT_KL, .drop_heads = 8};
            CHECK_OK(a.layers ? tc_prune_select(&p, &a, &m, &o, &err) : TC_ERR, &err);
            tc_analysis_free(&a);
        }
        CHECK_OK(tc_prune_write(&m, &p, paths[v], TC_FORMAT_GGUF, &err), &err);
        tc_prune_plan_free(&p);
    }
    tc_model_close(&m);

    int32_t ids[N_VARIANTS][N_GEN], *outs[N_VARIANTS];
    int n_out[N_VARIANTS];
    const char *files[N_VARIANTS];
    for (int v = 0; v < N_VARIANTS; v++) {
        outs[v] = ids[v];
        files[v] = paths[v];
    }
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, N_VARIANTS, outs, n_out) == 0, "node did not run every file");
    /* The heads removed change what the model writes (else the agreement would show little). */
    int32_t orig[N_GEN];
    int changed = 0;
    CHECK(llamacpp_tc_greedy(model, N_GEN, orig) == 0);
    for (int v = 0; v < N_VARIANTS; v++) {
        int32_t want[N_GEN];
        CHECK_MSG(n_out[v] == N_GEN, "%s: llama.cpp could not run it", names[v]);
        if (n_out[v] != N_GEN)
            continue;
        if (llamacpp_tc_greedy(paths[v], N_GEN, want) != 0) {
            CHECK_MSG(0, "%s: tc could not decode it", names[v]);
            continue;
        }
        int first = -1;
        for (int j = 0; j < N_GEN && first < 0; j++)
            if (ids[v][j] != want[j])
                first = j;
        CHECK_MSG(first < 0, "%s: llama.cpp and tc part at generated token %d (of %d)", names[v], first, N_GEN);
        int same = memcmp(want, orig, sizeof orig) == 0;
        changed += !same;
        if (first < 0)
            printf("%s: llama.cpp and tc agree on %d greedy tokens (%s the unpruned model's)\n", names[v], N_GEN,
                   same ? "the same as" : "not");
    }
    CHECK_MSG(changed >= 2, "only %d of the pruned files write other text than the original", changed);
    return tu_finish("test_llamacpp_heads");
}
