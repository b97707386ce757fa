/* Ternary GGUF exports (TQ1_0, TQ2_0) as stock llama.cpp runs them.
 *
 * A synthetic Llama model whose every width is a multiple of 256 (so every
 * linear weight can be ternary in GGUF) carries stories260K's vocabulary; tc
 * quantizes it to TQ1_0 and TQ2_0 and llama.cpp generates greedily from BOS.
 * tc then reads llama.cpp's continuation token by token and predicts each next
 * token itself from the same file (dequantized, fp32 activations).  llama.cpp
 * quantizes activations to 8 bits inside its TQ dot products, so the two can
 * disagree where the top two logits are close: the test states the agreement
 * it needs (at least 90 % of positions) and prints the figure. */
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

    int32_t ids[2][N_GEN], *outs[2] = {ids[0], ids[1]};
    int n_out[2] = {0, 0};
    const char *files[2] = {tq[0], tq[1]};
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, 2, outs, n_out) == 0, "node did not run both files");
    for (int f = 0; f < 2; f++) {
        CHECK_MSG(n_out[f] == N_GEN, "TQ%d_0: llama.cpp did not run the file", f + 1);
        if (n_out[f] != N_GEN)
            continue;
        double a = llamacpp_tc_agreement(tq[f], ids[f], N_GEN);
        printf("TQ%d_0: top-1 agreement of tc with llama.cpp's greedy continuation: %.1f%% of %d positions\n",
               f + 1, 100 * a, N_GEN);
        CHECK_MSG(a >= 0.9, "TQ%d_0: agreement %.3f is below 0.9", f + 1, a);
    }
    return tu_finish("test_llamacpp_tq");
}
