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
 * A third file has an FFN width of 352 (a multiple of 32, not of 256): its
 * down projections hold their ternary codes as Q4_0 beside TQ2_0, and the
 * embedding and the output head go out in the default fallback type Q8_0.
 *
 * deep16 (trained; ffn 688, whole blocks of no ggml type), written as a GGUF
 * with stories260K's vocabulary (its own) and quantized to TQ2_0 twice: as
 * tc-quantize does by default, its FFN padded to 768 with zeros so that the
 * down projections are TQ2_0 too, and with --keep-ffn-width, its down
 * projections in the fallback, which is F16 for rows of 688; the embedding
 * Q8_0 in both.  llama.cpp's greedy text from BOS must be tc's up to a near
 * tie: at every position tc's logit for llama.cpp's token is within NEAR of
 * tc's best.  llama.cpp rounds activations to 8 bits
 * for TQ2_0 and Q8_0 and to f16 for F16 weights, sixteen layers deep, and
 * ternary quantization leaves deep16 with flatter distributions than its
 * float self, whose greedy text test_llamacpp_types requires exactly.
 *
 * deep16 again with --method affine (a scale and an offset per row), FFN
 * padded: every linear weight is Q4_1 holding the codes and offsets, which
 * llama.cpp must run to the same near-tie standard. */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/model_write.h"
#include "tc/quantize.h"
#include "tc/synth.h"

#define N_GEN 48
#define N_FILES 6
#define NEAR 0.15 /* measured: one near tie, tc's two best logits 7.623 and 7.531 */

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
    char base_mixed[600], mixed[600], deep[600] = "", deep_pad[600] = "", deep_aff[600] = "";
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
        tc_quantize_opts qo = {.format = TC_QFORMAT_GGUF_TQ2, .float_dtype = TC_F16, .verify = 1, .n_threads = 1};
        qo.q.method = TC_TMETHOD_OPTIMAL;
        qo.q.group.kind = TC_TGROUP_ROW;
        tc_quantize_report rep = {0};
        CHECK_OK(tc_quantize_model(&m, mixed, &qo, &rep, &err), &err);
        CHECK(rep.n_fallback == 0 && rep.fallback == TC_Q8_0);
        tc_quantize_report_free(&rep);
        tc_model_close(&m);
    } else {
        CHECK_OK(TC_ERR, &err);
    }
    tc_model q;
    if (tc_model_open(&q, mixed, &err) == TC_OK) {
        CHECK(q.tok_embd->dtype == TC_Q8_0 && q.layers[0].w[TC_W_DOWN]->dtype == TC_Q4_0 &&
              q.layers[0].w[TC_W_UP]->dtype == TC_TQ2_0);
        tc_model_close(&q);
    }
    char deep_dir[512];
    if (tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf/config.json")) {
        tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf");
        char deep_base[600];
        snprintf(deep_base, sizeof deep_base, "%s/deep16.gguf", dir);
        snprintf(deep, sizeof deep, "%s/deep16-tq2.gguf", dir);
        snprintf(deep_pad, sizeof deep_pad, "%s/deep16-tq2-pad.gguf", dir);
        tc_model dm;
        CHECK_OK(tc_gguf_open(&vocab, vocab_path, &err), &err);
        CHECK_OK(tc_model_open(&dm, deep_dir, &err), &err);
        tc_model_copy cp = {.model = &dm, .float_dtype = TC_F32, .matrices = TC_DTYPE_COUNT};
        tc_model_src ds = {.cfg = dm.cfg, .dtype = TC_F32, .fill = tc_model_copy_fill, .ctx = &cp,
                           .gguf_vocab = &vocab, .name = "deep16"};
        CHECK_OK(tc_model_write(deep_base, TC_FORMAT_GGUF, &ds, &err), &err);
        tc_model_close(&dm);
        tc_gguf_close(&vocab);
        CHECK_OK(tc_model_open(&dm, deep_base, &err), &err);
        tc_quantize_opts qo = {.format = TC_QFORMAT_GGUF_TQ2, .float_dtype = TC_F16, .verify = 1, .n_threads = 2};
        qo.q.method = TC_TMETHOD_OPTIMAL;
        qo.q.group.kind = TC_TGROUP_ROW;
        tc_quantize_report rep = {0};
        CHECK_OK(tc_quantize_model(&dm, deep, &qo, &rep, &err), &err);
        tc_quantize_report pad = {0};
        qo.pad_ffn = 1;
        CHECK_OK(tc_quantize_model(&dm, deep_pad, &qo, &pad, &err), &err);
        snprintf(deep_aff, sizeof deep_aff, "%s/deep16-q4_1-affine.gguf", dir);
        tc_quantize_report aff = {0};
        qo.q.method = TC_TMETHOD_AFFINE;
        CHECK_OK(tc_quantize_model(&dm, deep_aff, &qo, &aff, &err), &err);
        int q41 = 0;
        for (size_t i = 0; i < aff.n_tensors; i++)
            q41 += aff.tensors[i].layer >= 0 && aff.tensors[i].ternary && aff.tensors[i].dtype == TC_Q4_1;
        CHECK_MSG(q41 == 7 * 16 && aff.verified, "deep16 affine: %d Q4_1", q41);
        tc_quantize_report_free(&aff);
        tc_model_close(&dm);
        int tq2_pad = 0;
        for (size_t i = 0; i < pad.n_tensors; i++)
            tq2_pad += pad.tensors[i].layer >= 0 && pad.tensors[i].ternary && pad.tensors[i].dtype == TC_TQ2_0;
        CHECK_MSG(tq2_pad == 7 * 16 && pad.ffn_dim_stored == 768 && pad.n_fallback == 0,
                  "deep16 padded: %d TQ2_0, FFN %d", tq2_pad, pad.ffn_dim_stored);
        tc_quantize_report_free(&pad);
        /* Every down projection is in the declared fallback (F16: rows of 688 fit no block), the rest TQ2_0. */
        int down_fb = 0, tq2 = 0;
        for (size_t i = 0; i < rep.n_tensors; i++) {
            const tc_qtensor_report *r = &rep.tensors[i];
            down_fb += r->layer >= 0 && r->role == TC_W_DOWN && !r->ternary && r->dtype == TC_F16;
            tq2 += r->layer >= 0 && r->ternary && r->dtype == TC_TQ2_0;
        }
        CHECK_MSG(down_fb == 16 && tq2 == 6 * 16 && rep.n_fallback == 16 && rep.fallback == TC_Q8_0,
                  "deep16: %d down projections in the fallback, %d TQ2_0", down_fb, tq2);
        tc_quantize_report_free(&rep);
    } else {
        printf("deep16 part skipped: models/deep16-hf is not in the assets\n");
    }

    static const char *const names[N_FILES] = {"TQ1_0", "TQ2_0", "TQ2_0 + Q4_0 + Q8_0", "deep16 TQ2_0 + fallback",
                                               "deep16 TQ2_0, FFN padded", "deep16 affine Q4_1, FFN padded"};
    int32_t ids[N_FILES][N_GEN], *outs[N_FILES] = {ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]};
    int n_out[N_FILES] = {0, 0, 0, 0, 0, 0};
    const char *files[N_FILES] = {tq[0], tq[1], mixed, deep, deep_pad, deep_aff};
    int n_files = deep[0] ? N_FILES : N_FILES - 3;
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, (size_t)n_files, outs, n_out) == 0,
              "node did not run the files");
    for (int f = 0; f < n_files; f++) {
        CHECK_MSG(n_out[f] == N_GEN, "%s: llama.cpp did not run the file", names[f]);
        if (n_out[f] != N_GEN)
            continue;
        double a = llamacpp_tc_agreement(files[f], ids[f], N_GEN);
        printf("%s: top-1 agreement of tc with llama.cpp's greedy continuation: %.1f%% of %d positions\n",
               names[f], 100 * a, N_GEN);
        CHECK_MSG(a >= 0.9, "%s: agreement %.3f is below 0.9", names[f], a);
        if (f >= 3) {
            /* deep16 is trained: its greedy text is compared as a whole. */
            int32_t want[N_GEN];
            int first = -1;
            CHECK_MSG(llamacpp_tc_greedy(files[f], N_GEN, want) == 0, "%s: tc could not decode it", names[f]);
            for (int j = 0; j < N_GEN && first < 0; j++)
                if (ids[f][j] != want[j])
                    first = j;
            double gap = llamacpp_tc_max_gap(files[f], ids[f], N_GEN);
            printf("%s: llama.cpp's %d greedy tokens %s tc's", names[f], N_GEN, first < 0 ? "equal" : "differ from");
            if (first >= 0)
                printf(" from token %d", first);
            printf("; tc's logit for llama.cpp's token is within %.4f of its best at every position\n", gap);
            CHECK_MSG(gap >= 0 && gap <= NEAR, "%s: tc's logit for a llama.cpp token is %.4f below its best", names[f],
                      gap);
        }
    }
    return tu_finish("test_llamacpp_tq");
}
