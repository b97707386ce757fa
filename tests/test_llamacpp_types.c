/* The four types tc writes, run by stock llama.cpp: a synthetic llama
 * (dim 256, ffn 512, so that every linear layer's rows are whole blocks of
 * every type) carrying stories260K's vocabulary is written by tc-prune's
 * writer with its matrices as Q8_0, Q4_0, Q4_K and Q6_K.  Each file must
 * hold its linear layers in that type, and llama.cpp's greedy continuation
 * must equal tc's on it.  The llama.cpp part is skipped, said so, when node
 * or node-llama-cpp is absent (tests/llamacpp.h); the rest always runs.
 *
 * The random-weight model's next-token distributions are flat, so near ties
 * decide some of its tokens.  deep16, trained and sharp, written the same way
 * (it uses stories260K's tokenizer, so that vocabulary is its own), must give
 * exactly tc's greedy text in every type. */
#include "llamacpp.h"

#include "tc/gguf.h"
#include "tc/model_write.h"
#include "tc/prune.h"
#include "tc/synth.h"

#define N_GEN 32

int main(void)
{
    char vocab_path[512], dir[256], base[512];
    if (!tu_asset(vocab_path, sizeof vocab_path, "models/stories260K/stories260K.gguf"))
        return tu_skip("stories260K.gguf (the vocabulary) is not in the assets");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no scratch directory");
    tc_error err = {{0}};
    tc_gguf vocab;
    if (tc_gguf_open(&vocab, vocab_path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return tu_finish("test_llamacpp_types");
    }
    snprintf(base, sizeof base, "%s/base.gguf", dir);
    tc_synth_spec s = {.cfg = tc_synth_config(2, 256, 4, 2, 512, 512), .seed = 3};
    tc_model_src src = {.cfg = s.cfg, .dtype = TC_F32, .fill = tc_synth_fill, .ctx = &s, .gguf_vocab = &vocab,
                        .name = "types"};
    CHECK_OK(tc_model_write(base, TC_FORMAT_GGUF, &src, &err), &err);
    tc_gguf_close(&vocab);
    tc_model m;
    if (tc_model_open(&m, base, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return tu_finish("test_llamacpp_types");
    }
    static const tc_dtype TYPES[] = {TC_Q8_0, TC_Q4_0, TC_Q4_K, TC_Q6_K};
    enum { N = sizeof TYPES / sizeof TYPES[0] };
    char paths[N][600];
    const char *files[N];
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, m.cfg.n_layers, &err), &err);
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.gguf", dir, tc_dtype_name(TYPES[i]));
        files[i] = paths[i];
        CHECK_OK(tc_prune_write_as(&m, &p, paths[i], TC_FORMAT_GGUF, TYPES[i], &err), &err);
        tc_model q;
        if (tc_model_open(&q, paths[i], &err) == TC_OK) {
            int all = 1;
            for (int l = 0; l < q.cfg.n_layers; l++)
                for (int r = 0; r < TC_N_ROLES; r++)
                    if (tc_role_is_linear(r) && q.layers[l].w[r])
                        all &= q.layers[l].w[r]->dtype == TYPES[i];
            CHECK_MSG(all, "%s: a linear layer is not stored as %s", paths[i], tc_dtype_name(TYPES[i]));
            tc_model_close(&q);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
    }
    tc_prune_plan_free(&p);
    tc_model_close(&m);
    /* A type tc does not write is refused by name. */
    CHECK(tc_prune_write_as(&m, &p, base, TC_FORMAT_GGUF, TC_Q5_K, &err) == TC_ERR && strstr(err.msg, "Q5_K"));

    /* deep16 in the four types: its down projections (rows of 688) are whole blocks of none
     * and stay F32. */
    char deep_dir[512], deep[N][600];
    const char *deep_files[N];
    int have_deep = tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf/config.json") != NULL;
    if (have_deep) {
        tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf");
        tc_model dm;
        CHECK_OK(tc_gguf_open(&vocab, vocab_path, &err), &err);
        CHECK_OK(tc_model_open(&dm, deep_dir, &err), &err);
        for (int i = 0; i < N; i++) {
            snprintf(deep[i], sizeof deep[i], "%s/deep16-%s.gguf", dir, tc_dtype_name(TYPES[i]));
            deep_files[i] = deep[i];
            tc_model_copy cp = {.model = &dm, .float_dtype = TC_F32, .matrices = TYPES[i]};
            tc_model_src ds = {.cfg = dm.cfg, .dtype = TC_F32, .fill = tc_model_copy_fill, .ctx = &cp,
                               .gguf_vocab = &vocab, .name = "deep16", .dtype_of = tc_model_copy_dtype,
                               .encode = tc_model_copy_encode};
            CHECK_OK(tc_model_write(deep[i], TC_FORMAT_GGUF, &ds, &err), &err);
            tc_model q;
            if (tc_model_open(&q, deep[i], &err) == TC_OK) {
                int typed = 0;
                for (int l = 0; l < q.cfg.n_layers; l++)
                    for (int r = 0; r < TC_N_ROLES; r++)
                        typed += tc_role_is_linear(r) && q.layers[l].w[r] && q.layers[l].w[r]->dtype == TYPES[i];
                CHECK_MSG(typed == 6 * q.cfg.n_layers, "deep16 %s: %d linear layers of that type, expected %d",
                          tc_dtype_name(TYPES[i]), typed, 6 * q.cfg.n_layers);
                tc_model_close(&q);
            } else {
                CHECK_MSG(0, "%s", err.msg);
            }
        }
        tc_model_close(&dm);
        tc_gguf_close(&vocab);
    } else {
        printf("deep16 part skipped: models/deep16-hf is not in the assets\n");
    }

    char pkg[1024], script[1024];
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why) {
        printf("llama.cpp part skipped: %s\n", why);
    } else {
        int32_t ids[N][N_GEN], *outs[N];
        int n_out[N];
        for (int i = 0; i < N; i++)
            outs[i] = ids[i];
        CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, N, outs, n_out) == 0, "node did not run every file");
        for (int i = 0; i < N; i++) {
            int32_t want[N_GEN];
            if (llamacpp_tc_greedy(paths[i], N_GEN, want) != 0) {
                CHECK_MSG(0, "%s: tc could not decode it", paths[i]);
                continue;
            }
            /* llama.cpp multiplies these types by activations it rounds to
             * 8 bits (Q8_0, Q8_K), so a near tie can go either way: tc must
             * pick llama.cpp's next token given its tokens so far. */
            int first = -1;
            for (int j = 0; j < n_out[i] && first < 0; j++)
                if (ids[i][j] != want[j])
                    first = j;
            double near = -1;
            double a = n_out[i] == N_GEN ? llamacpp_tc_agreement_near(paths[i], ids[i], N_GEN, 0.05, &near) : -1;
            CHECK_MSG(a >= 0.85 && near == 1.0,
                      "%s: llama.cpp ran %d tokens; tc's top-1 agrees on %.3f of them, within 0.05 on %.3f",
                      tc_dtype_name(TYPES[i]), n_out[i], a, near);
            printf("%-5s tc's top-1 is llama.cpp's next token at %.1f%% of %d positions (the rest within 0.05 "
                   "of tc's top: %.1f%% in all); the same greedy tokens for %d\n", tc_dtype_name(TYPES[i]), 100 * a,
                   N_GEN, 100 * near, first < 0 ? n_out[i] : first);
        }
        if (have_deep) {
            CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, deep_files, N, outs, n_out) == 0,
                      "node did not run every deep16 file");
            for (int i = 0; i < N; i++) {
                int32_t want[N_GEN];
                if (llamacpp_tc_greedy(deep[i], N_GEN, want) != 0) {
                    CHECK_MSG(0, "%s: tc could not decode it", deep[i]);
                    continue;
                }
                int same = n_out[i] == N_GEN;
                for (int j = 0; j < n_out[i]; j++)
                    same &= ids[i][j] == want[j];
                CHECK_MSG(same, "deep16 %s: llama.cpp's greedy text differs from tc's", tc_dtype_name(TYPES[i]));
                printf("deep16 %-5s llama.cpp's %d greedy tokens %s tc's\n", tc_dtype_name(TYPES[i]), n_out[i],
                       same ? "equal" : "differ from");
            }
        }
    }
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (tu_failures == 0)
        CHECK(system(rm) == 0);
    else
        fprintf(stderr, "the files are in %s\n", dir);
    return tu_finish("test_llamacpp_types");
}
