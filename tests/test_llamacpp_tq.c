/* Ternary GGUF exports (TQ1_0, TQ2_0) as stock llama.cpp runs them.
 *
 * A synthetic Llama model whose every width is a multiple of 256 (so every
 * linear weight can be ternary in GGUF) carries stories260K's vocabulary; tc
 * quantizes it to TQ1_0 and TQ2_0 and llama.cpp generates greedily from BOS.
 * tc then reads llama.cpp's continuation token by token and predicts each next
 * token itself from the same file (dequantized, fp32 activations).  llama.cpp
 * quantizes activations to 8 bits inside its TQ dot products, so the two can
 * disagree where the top two logits are close: the test states the agreement
 * it needs (at least 90 % of positions) and prints the figure.
 *
 * A third file has an FFN width of 352 (not a multiple of 256): its down
 * projections, the embedding and the output head go out in the fallback type
 * Q8_0 beside TQ2_0, the mix a user of --fallback-type q8_0 gets. */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/model_write.h"
#include "tc/quantize.h"
#include "tc/synth.h"

#define N_GEN 48

int main(void)
{
    char vocab_path[512], pkg[1024], script[1024], dir[256];
    if (!tu_asset(vocab_path, sizeof vocab_path, "models/stories260K/stories260K.gguf"))
        return tu_skip("stories260K.gguf (the vocabulary) is not in the assets");
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why)
        return tu_skip(why);
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");

    tc_error err = {{0}};
    tc_gguf vocab;
    if (tc_gguf_open(&vocab, vocab_path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* Already-ternary weights: quantization loses nothing, so what is
     * compared is how the two runtimes compute, not what rounding cost. */
    tc_synth_spec s = {.cfg = tc_synth_config(3, 256, 4, 2, 512, 512), .seed = 21, .ternary = 1};
    char base[600], tq[2][600];
    snprintf(base, sizeof base, "%s/base.gguf", dir);
    tc_model_src src = {.cfg = s.cfg, .dtype = TC_F16, .fill = tc_synth_fill, .ctx = &s, .gguf_vocab = &vocab,
                        .name = "tc-ternary-test"};
    src.cfg.rope_layout = TC_ROPE_HALF;
    CHECK_OK(tc_model_write(base, TC_FORMAT_GGUF, &src, &err), &err);
    char base_mixed[600], mixed[600];
    snprintf(base_mixed, sizeof base_mixed, "%s/base-352.gguf", dir);
    snprintf(mixed, sizeof mixed, "%s/model-tq2-q8.gguf", dir);
    tc_synth_spec s2 = {.cfg = tc_synth_config(3, 256, 4, 2, 352, 512), .seed = 22, .ternary = 1};
    src.cfg = s2.cfg;
    src.ctx = &s2;
    CHECK_OK(tc_model_write(base_mixed, TC_FORMAT_GGUF, &src, &err), &err);
    tc_gguf_close(&vocab);

    tc_model m;
    CHECK_OK(tc_model_open(&m, base, &err), &err);
    static const tc_qformat formats[2] = {TC_QFORMAT_GGUF_TQ1, TC_QFORMAT_GGUF_TQ2};
    for (int f = 0; f < 2 && m.layers; f++) {
        snprintf(tq[f], sizeof tq[f], "%s/model-tq%d.gguf", dir, f + 1);
        tc_quantize_opts qo = {.format = formats[f], .strict = 1, .verify = 1, .n_threads = 1};
        qo.q.method = TC_TMETHOD_OPTIMAL;
        qo.q.group.kind = TC_TGROUP_ROW;
        tc_quantize_report rep = {0};
        CHECK_OK(tc_quantize_model(&m, tq[f], &qo, &rep, &err), &err);
        tc_quantize_report_free(&rep);
    }
    if (m.layers)
        tc_model_close(&m);
    if (tc_model_open(&m, base_mixed, &err) == TC_OK) {
        tc_quantize_opts qo = {.format = TC_QFORMAT_GGUF_TQ2, .fallback = TC_Q8_0, .float_dtype = TC_F16,
                               .verify = 1, .n_threads = 1};
        qo.q.method = TC_TMETHOD_OPTIMAL;
        qo.q.group.kind = TC_TGROUP_ROW;
        tc_quantize_report rep = {0};
        CHECK_OK(tc_quantize_model(&m, mixed, &qo, &rep, &err), &err);
        CHECK(rep.n_kept_float == 3);
        tc_quantize_report_free(&rep);
        tc_model_close(&m);
    } else {
        CHECK_OK(TC_ERR, &err);
    }
    tc_model q;
    if (tc_model_open(&q, mixed, &err) == TC_OK) {
        CHECK(q.tok_embd->dtype == TC_Q8_0 && q.layers[0].w[TC_W_DOWN]->dtype == TC_Q8_0 &&
              q.layers[0].w[TC_W_UP]->dtype == TC_TQ2_0);
        tc_model_close(&q);
    }

    static const char *const names[3] = {"TQ1_0", "TQ2_0", "TQ2_0 + Q8_0 fallback"};
    int32_t ids[3][N_GEN], *outs[3] = {ids[0], ids[1], ids[2]};
    int n_out[3] = {0, 0, 0};
    const char *files[3] = {tq[0], tq[1], mixed};
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, 3, outs, n_out) == 0, "node did not run the files");
    for (int f = 0; f < 3; f++) {
        CHECK_MSG(n_out[f] == N_GEN, "%s: llama.cpp did not run the file", names[f]);
        if (n_out[f] != N_GEN)
            continue;
        double a = llamacpp_tc_agreement(files[f], ids[f], N_GEN);
        printf("%s: top-1 agreement of tc with llama.cpp's greedy continuation: %.1f%% of %d positions\n",
               names[f], 100 * a, N_GEN);
        CHECK_MSG(a >= 0.9, "%s: agreement %.3f is below 0.9", names[f], a);
    }
    return tu_finish("test_llamacpp_tq");
}
