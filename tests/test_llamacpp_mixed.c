/* A mixed-precision GGUF (tc/mixed.h) as stock llama.cpp runs it.
 *
 * deep16 (dim 256: its linear weights can be TQ2_0) is written as a GGUF
 * with stories260K's vocabulary (its own) and quantized with a fixed mixed
 * assignment: some linear weights Q8_0, some Q4_0, the rest ternary as
 * TQ2_0 (the FFN padded to 768 so that the down projections are TQ2_0 too).
 * The file must hold exactly those types, the Q8_0 / Q4_0 ones byte for byte
 * what ggml's reference quantizer writes (tc writes them with it; the
 * runner's dequantized values are checked against tc_qmat_round's).
 *
 * llama.cpp then generates 48 tokens greedily from BOS, and tc's greedy
 * text from the same file must be llama.cpp's up to a near tie: at every
 * position of llama.cpp's continuation, tc's logit for llama.cpp's token is
 * within NEAR of tc's best (llama.cpp rounds activations to 8 bits for
 * TQ2_0, Q4_0 and Q8_0, sixteen layers deep; tc's decoder multiplies the
 * dequantized weights by fp32 activations), and tc's top-1 agrees with
 * llama.cpp's token at 90 % of positions or more; the figures are printed. */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/model_write.h"
#include "tc/qmat.h"
#include "tc/quantize.h"

#define N_GEN 48
#define NEAR 0.15 /* test_llamacpp_tq's bound for deep16 in TQ2_0 */

/* The fixed assignment: per layer, q and v Q8_0 in the first four layers,
 * o and gate Q4_0 in the last four, up Q4_0 in every other layer. */
static tc_dtype type_of(int l, int role, int n_layers)
{
    if (l < 4 && (role == TC_WQ || role == TC_WV))
        return TC_Q8_0;
    if (l >= n_layers - 4 && (role == TC_WO || role == TC_W_GATE))
        return TC_Q4_0;
    if (l % 2 == 0 && role == TC_W_UP)
        return TC_Q4_0;
    return TC_F32;
}

int main(void)
{
    char vocab_path[512], deep_dir[512], pkg[1024], script[1024], dir[256];
    if (!tu_asset(vocab_path, sizeof vocab_path, "models/stories260K/stories260K.gguf") ||
        !tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf/config.json"))
        return tu_skip("stories260K.gguf or deep16-hf is not in the assets");
    tu_asset(deep_dir, sizeof deep_dir, "models/deep16-hf");
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why)
        return tu_skip(why);
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");

    tc_error err = {{0}};
    tc_gguf vocab;
    tc_model dm;
    char base[600], mixed[600];
    snprintf(base, sizeof base, "%s/deep16.gguf", dir);
    snprintf(mixed, sizeof mixed, "%s/deep16-mixed.gguf", dir);
    CHECK_OK(tc_gguf_open(&vocab, vocab_path, &err), &err);
    CHECK_OK(tc_model_open(&dm, deep_dir, &err), &err);
    tc_model_copy cp = {.model = &dm, .float_dtype = TC_F32, .matrices = TC_DTYPE_COUNT};
    tc_model_src ds = {.cfg = dm.cfg, .dtype = TC_F32, .fill = tc_model_copy_fill, .ctx = &cp, .gguf_vocab = &vocab,
                       .name = "deep16"};
    CHECK_OK(tc_model_write(base, TC_FORMAT_GGUF, &ds, &err), &err);
    tc_model_close(&dm);
    tc_gguf_close(&vocab);

    CHECK_OK(tc_model_open(&dm, base, &err), &err);
    int L = dm.cfg.n_layers, n_q8 = 0, n_q4 = 0;
    tc_dtype *types = calloc((size_t)L * TC_N_ROLES, sizeof *types);
    for (int l = 0; l < L; l++)
        for (int r = 0; r < TC_N_ROLES; r++) {
            types[l * TC_N_ROLES + r] = type_of(l, r, L);
            n_q8 += types[l * TC_N_ROLES + r] == TC_Q8_0;
            n_q4 += types[l * TC_N_ROLES + r] == TC_Q4_0;
        }
    tc_quantize_opts qo = {.format = TC_QFORMAT_GGUF_TQ2, .float_dtype = TC_F16, .verify = 1, .n_threads = 2,
                           .pad_ffn = 1, .linear_types = types};
    qo.q.method = TC_TMETHOD_OPTIMAL;
    qo.q.group.kind = TC_TGROUP_ROW;
    tc_quantize_report rep = {0};
    CHECK_OK(tc_quantize_model(&dm, mixed, &qo, &rep, &err), &err);
    int tq2 = 0;
    for (size_t i = 0; i < rep.n_tensors; i++)
        tq2 += rep.tensors[i].layer >= 0 && rep.tensors[i].ternary && rep.tensors[i].dtype == TC_TQ2_0;
    printf("deep16 mixed GGUF: %d TQ2_0, %d Q8_0, %d Q4_0 linear weights, %.3f bits per linear weight\n", tq2, n_q8,
           n_q4, rep.bpw_linear);
    CHECK(tq2 + n_q8 + n_q4 == 7 * L && rep.verified && rep.ffn_dim_stored == 768);
    tc_quantize_report_free(&rep);

    /* The file's types, and its block weights exactly as ggml's reference rounding gives them. */
    tc_model q;
    CHECK_OK(tc_model_open(&q, mixed, &err), &err);
    int checked = 0;
    for (int l = 0; l < L && q.layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++) {
            const tc_tensor *t = q.layers[l].w[r];
            if (!t || !tc_role_is_linear(r))
                continue;
            tc_dtype want = types[l * TC_N_ROLES + r] != TC_F32 ? types[l * TC_N_ROLES + r] : TC_TQ2_0;
            CHECK_MSG(t->dtype == want, "layer %d %s is %s, not %s", l, tc_role_name((tc_role)r),
                      tc_dtype_name(t->dtype), tc_dtype_name(want));
            if (want == TC_TQ2_0) /* the source is a GGUF: no rows are permuted */
                continue;
            /* gate and up have 80 zero rows more (the FFN padded to 768) */
            float *a = NULL, *b = NULL, *src = NULL;
            int64_t M = dm.layers[l].w[r]->shape[0], K = t->shape[1];
            CHECK_OK(tc_tensor_load_f32(t, &a, &err), &err);
            CHECK_OK(tc_tensor_load_f32(dm.layers[l].w[r], &src, &err), &err);
            b = malloc((size_t)(M * K) * sizeof *b);
            if (a && b && src) {
                CHECK_OK(tc_qmat_round(want, src, M, K, b, &err), &err);
                CHECK_MSG(memcmp(a, b, (size_t)(M * K) * sizeof *a) == 0, "layer %d %s", l, tc_role_name((tc_role)r));
                int nonzero = 0;
                for (int64_t k = M * K; k < t->shape[0] * K; k++)
                    nonzero += a[k] != 0.0f;
                CHECK(nonzero == 0);
                checked++;
            }
            free(a);
            free(b);
            free(src);
        }
    CHECK(checked > 0);
    if (q.layers)
        tc_model_close(&q);
    tc_model_close(&dm);
    free(types);

    int32_t ids[N_GEN], *outs[1] = {ids}, want[N_GEN];
    int n_out[1] = {0};
    const char *files[1] = {mixed};
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, 1, outs, n_out) == 0, "node did not run the file");
    CHECK_MSG(n_out[0] == N_GEN, "llama.cpp did not run the mixed file");
    if (n_out[0] == N_GEN) {
        double a = llamacpp_tc_agreement(mixed, ids, N_GEN);
        CHECK_MSG(llamacpp_tc_greedy(mixed, N_GEN, want) == 0, "tc could not decode the file");
        int first = -1;
        for (int j = 0; j < N_GEN && first < 0; j++)
            if (ids[j] != want[j])
                first = j;
        double gap = llamacpp_tc_max_gap(mixed, ids, N_GEN);
        printf("deep16 mixed: llama.cpp's %d greedy tokens %s tc's", N_GEN, first < 0 ? "equal" : "differ from");
        if (first >= 0)
            printf(" from token %d", first);
        printf("; top-1 agreement %.1f%%; tc's logit for llama.cpp's token within %.4f of its best at every "
               "position\n", 100 * a, gap);
        CHECK_MSG(a >= 0.9, "agreement %.3f is below 0.9", a);
        CHECK_MSG(gap >= 0 && gap <= NEAR, "tc's logit for a llama.cpp token is %.4f below its best", gap);
    }
    return tu_finish("test_llamacpp_mixed");
}
