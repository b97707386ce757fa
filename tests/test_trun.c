/* The ternary runner on synthetic models whose linear weights are already
 * ternary, so quantization is lossless and the only difference to the fp32
 * model is the int8 activation quantization:
 *   - LUT logits equal the dequantized fp32 reference fed the same int8
 *     activations (replayed from the LUT run) within 1e-4 relative, for
 *     every layout and grouping;
 *   - every kernel path and thread count gives bitwise the same logits;
 *   - LUT logits equal the fp32 decoder's within the int8 activation error
 *     (relative RMS < 2e-2; measured 1.3e-2 to 1.5e-2 on these 64-wide models);
 *   - feeding a sequence at once equals feeding it token by token;
 *   - the batch interface, generation, and the refusals;
 *   - with the assets: tc-run on a packed stories260K (--verify passes;
 *     --compare's original perplexity equals tc-run --ppl's and
 *     tc-analyze's on the same windows; a truncated file fails with exit 1
 *     and a sentence naming it). */
#include "synthmodel.h"
#include "testutil.h"

#include <stdint.h>

#include <cjson/cJSON.h>

#include "tc/forward.h"
#include "tc/synth.h"
#include "tc/trun.h"

#define N_TOK 21

static const int32_t TOKENS[N_TOK] = {1, 5, 9, 33, 2, 7, 60, 61, 12, 3, 4,
                                      8, 44, 17, 19, 0, 6, 50, 22, 30, 11};

/* Logits of every position, token by token. */
static int run_steps(tc_trun *r, float *logits, int vocab, tc_error *err)
{
    tc_trun_reset(r);
    for (int i = 0; i < N_TOK; i++)
        if (tc_trun_step(r, TOKENS[i], logits + (size_t)i * (size_t)vocab, err))
            return TC_ERR;
    return TC_OK;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static double rel_rms(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static tc_synth_spec spec_of(int qkv_bias)
{
    tc_synth_spec s;
    memset(&s, 0, sizeof s);
    s.cfg = tc_synth_config(2, 64, 4, 2, 160, 64);
    s.cfg.max_seq_len = 64;
    s.cfg.qkv_bias = qkv_bias;
    s.cfg.tied_embeddings = !qkv_bias;
    s.seed = 7;
    s.ternary = 1;
    return s;
}

static void fp32_logits(const tc_model *m, float *out)
{
    tc_error err;
    tc_decoder *d;
    CHECK_OK(tc_decoder_new(&d, m, NULL, &err), &err);
    if (!d)
        return;
    for (int i = 0; i < N_TOK; i++)
        CHECK_OK(tc_decoder_step(d, TOKENS[i], out + (size_t)i * (size_t)m->cfg.vocab_size, &err),
                 &err);
    tc_decoder_free(d);
}

/* Every trait on (gemma-like norms, softcaps and embedding scale, biases,
 * q/k norms, a window on alternate layers with their own rope, yarn on the
 * others, partial rotary dimensions). */
static tc_synth_spec spec_all_traits(void)
{
    tc_synth_spec s = spec_of(1);
    sm_all_traits(&s.cfg, 6, 12);
    return s;
}

/* DiffLlama: differential attention (pairs of softmax maps subtracted with
 * the layer's lambda, per-head RMS norm); the fp32 decoder that the LUT
 * logits are held to is the one checked against transformers. */
static tc_synth_spec spec_diff(void)
{
    tc_synth_spec s = spec_of(0);
    s.cfg.arch = TC_ARCH_DIFFLLAMA;
    s.cfg.t.diff_attn = 1;
    return s;
}

static void test_model_spec(tc_synth_spec spec, const char *what, tc_tpack_layout layout, tc_tgroup g);

static void test_model(int qkv_bias, tc_tpack_layout layout, tc_tgroup g)
{
    test_model_spec(spec_of(qkv_bias), qkv_bias ? "bias" : "plain", layout, g);
}

static void test_model_spec(tc_synth_spec spec, const char *what, tc_tpack_layout layout, tc_tgroup g)
{
    tc_error err;
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &spec, &err), &err);
    int V = m.cfg.vocab_size;
    size_t n = (size_t)N_TOK * (size_t)V;
    float *want = calloc(n, 4), *ref = calloc(n, 4), *lut = calloc(n, 4), *other = calloc(n, 4);
    fp32_logits(&m, want);
    tc_tmodel_mem mm;
    CHECK_OK(tc_tmodel_mem_quantize(&mm, &m, layout, &g, &err), &err);

    /* The LUT run records its int8 activations; the reference replays them. */
    tc_trun *r;
    tc_trun_trace *trace = tc_trun_trace_new();
    tc_trun_opts o = {TC_TRUN_LUT, TC_KPATH_SCALAR, 1, 0, 0};
    CHECK_OK(tc_trun_new(&r, &mm.m, &o, &err), &err);
    tc_trun_set_trace(r, trace, 0);
    CHECK_OK(run_steps(r, lut, V, &err), &err);
    tc_trun_free(r);
    o.mode = TC_TRUN_REF;
    CHECK_OK(tc_trun_new(&r, &mm.m, &o, &err), &err);
    tc_trun_set_trace(r, trace, 1);
    CHECK_OK(run_steps(r, ref, V, &err), &err);
    /* one call more than was recorded: refused */
    CHECK(tc_trun_step(r, 1, NULL, &err) == TC_ERR && strstr(err.msg, "trace"));
    tc_trun_free(r);
    tc_trun_trace_free(trace);

    double scale = max_abs(ref, n);
    double d_ref = max_diff(lut, ref, n) / scale, d_fp = rel_rms(lut, want, n);
    printf("%s group %d/%d %s: LUT vs reference %.2e (max, relative), vs fp32 model %.2e "
           "(relative RMS)\n",
           tc_tpack_layout_name(layout), (int)g.kind, g.cols, what, d_ref, d_fp);
    CHECK(d_ref <= 1e-4);
    /* int8 per-token absmax activations err by up to 1/254 of each token's
     * largest value; through 4 layers of 7 quantized products that comes to
     * about 2.5 % relative RMS on these unit-scale logits (a wrong scale or
     * code would be of order 1). */
    if (g.kind != TC_TGROUP_TENSOR) /* one scale per tensor is not lossless here */
        CHECK(d_fp < 5e-2);
    CHECK(d_fp > 0); /* the activations are quantized: the paths are not identical */

    /* Every other path and thread count: bitwise the same logits. */
    o.mode = TC_TRUN_LUT;
    for (int p = TC_KPATH_AVX2; p < TC_KPATH_COUNT; p++)
        for (int th = 1; th <= 3; th += 2) {
            if (!tc_kpath_available((tc_kpath)p))
                continue;
            o.kernel = (tc_kpath)p;
            o.n_threads = th;
            CHECK_OK(tc_trun_new(&r, &mm.m, &o, &err), &err);
            memset(other, 0, n * 4);
            CHECK_OK(run_steps(r, other, V, &err), &err);
            CHECK_MSG(memcmp(other, lut, n * 4) == 0, "path %s, %d threads",
                      tc_kpath_name((tc_kpath)p), th);
            tc_trun_free(r);
        }

    /* All tokens at once (chunks of several tokens through the multi-token
     * kernels, the attention of a chunk in one pass of the pool) == one at a
     * time, bit for bit: the int32 sums are exact, every other step is the
     * same arithmetic per token, and the fp32 products sum in a fixed order
     * whatever the number of tokens (tc_fm_dense_rows). */
    o.kernel = TC_KPATH_AUTO;
    for (int th = 1; th <= 3; th += 2)
        for (int ch = 0; ch <= 16; ch += 5) {
        o.n_threads = th;
        o.chunk = ch; /* 0: one chunk here; 5, 10, 15: several, with a shorter last one */
        CHECK_OK(tc_trun_new(&r, &mm.m, &o, &err), &err);
        memset(other, 0, n * 4);
        CHECK_OK(tc_trun_feed(r, TOKENS, N_TOK, other, 1, &err), &err);
        CHECK(tc_trun_pos(r) == N_TOK);
        CHECK_MSG(memcmp(other, lut, n * 4) == 0, "%s: batched logits differ from one-token logits (%d threads, "
                  "chunk %d, max |diff| %g)", what, th, ch, max_diff(other, lut, n));
        float *last = calloc((size_t)V, 4);
        tc_trun_reset(r);
        CHECK_OK(tc_trun_feed(r, TOKENS, N_TOK, last, 0, &err), &err);
        CHECK(memcmp(last, lut + n - (size_t)V, (size_t)V * 4) == 0);
        free(last);
        tc_trun_free(r);
        }
    o.chunk = 0;
    tc_tmodel_mem_free(&mm);
    tc_model_close(&m);
    free(want);
    free(ref);
    free(lut);
    free(other);
}

typedef struct seen {
    size_t next;
    int in_order;
} seen;

static int on_logits(void *ctx, const float *lg, size_t tok0, size_t n, int vocab, tc_error *err)
{
    seen *s = ctx;
    if (tok0 != s->next || !isfinite(lg[(n - 1) * (size_t)vocab]))
        s->in_order = 0;
    s->next = tok0 + n;
    return TC_OK;
}

static void test_batch_and_generate(void)
{
    tc_error err;
    tc_synth_spec spec = spec_of(0);
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &spec, &err), &err);
    tc_tmodel_mem mm;
    tc_tgroup row = {TC_TGROUP_ROW, 0};
    CHECK_OK(tc_tmodel_mem_quantize(&mm, &m, TC_TPACK_TL2, &row, &err), &err);
    tc_trun *r;
    CHECK_OK(tc_trun_new(&r, &mm.m, NULL, &err), &err);
    size_t offsets[3] = {0, 17, N_TOK};
    tc_batch b = {TOKENS, offsets, 2};
    seen s = {0, 1};
    CHECK_OK(tc_trun_batch(r, &b, on_logits, &s, &err), &err);
    CHECK(s.in_order && s.next == N_TOK);

    /* Perplexity through the batched path equals the one computed from the
     * one-token path's logits, to the last bit (what --ppl and --compare
     * report is what token-by-token decoding would give). */
    tc_ppl pp;
    CHECK_OK(tc_trun_perplexity(r, &b, NULL, NULL, &pp, &err), &err);
    {
        int V = m.cfg.vocab_size;
        float *lg = malloc((size_t)V * sizeof *lg);
        double total = 0;
        uint64_t pred = 0;
        for (size_t q = 0; q < 2; q++) {
            double seq = 0;
            tc_trun_reset(r);
            for (size_t t = offsets[q]; t < offsets[q + 1]; t++) {
                CHECK_OK(tc_trun_step(r, TOKENS[t], lg, &err), &err);
                if (t + 1 >= offsets[q + 1])
                    continue;
                float mx = lg[0];
                for (int v = 1; v < V; v++)
                    mx = lg[v] > mx ? lg[v] : mx;
                double e = 0;
                for (int v = 0; v < V; v++)
                    e += exp((double)lg[v] - mx);
                seq += mx + log(e) - lg[TOKENS[t + 1]];
                pred++;
            }
            total += seq;
        }
        CHECK(pp.n_predicted == pred && pp.n_tokens == N_TOK);
        CHECK_MSG(pp.nll == total / (double)pred, "batched perplexity %.17g vs one-token %.17g", pp.nll,
                  total / (double)pred);
        free(lg);
    }

    int32_t out[10], out2[10];
    size_t n_out = 0, n2 = 0;
    tc_generate_opts go = {0.8f, 42, -1};
    CHECK_OK(tc_trun_generate(r, TOKENS, 3, 10, &go, out, &n_out, &err), &err);
    CHECK_OK(tc_trun_generate(r, TOKENS, 3, 10, &go, out2, &n2, &err), &err);
    CHECK(n_out == 10 && n2 == 10 && memcmp(out, out2, sizeof out) == 0);
    for (size_t i = 0; i < n_out; i++)
        CHECK(out[i] >= 0 && out[i] < m.cfg.vocab_size);

    /* Refusals: a token outside the vocabulary, a cache overflow. */
    tc_trun_reset(r);
    CHECK(tc_trun_step(r, m.cfg.vocab_size, NULL, &err) == TC_ERR);
    int32_t many[65] = {0};
    CHECK(tc_trun_feed(r, many, 65, NULL, 0, &err) == TC_ERR);
    CHECK(strstr(err.msg, "positions") != NULL);
    tc_trun_free(r);

    /* A model missing its output norm is refused with a sentence. */
    for (size_t i = 0; i < mm.m.n_tensors; i++)
        if (mm.m.tensors[i].layer == -1 && mm.m.tensors[i].role == TC_G_OUT_NORM)
            mm.m.tensors[i].role = 99;
    CHECK(tc_trun_new(&r, &mm.m, NULL, &err) == TC_ERR && r == NULL);
    tc_tmodel_mem_free(&mm);
    tc_model_close(&m);
}

/* A random model runs and its packed bytes are valid (they unpack). */
static void test_random_model(void)
{
    tc_error err;
    tc_config c = tc_synth_config(1, 80, 4, 2, 100, 50);
    for (int l = 0; l < 3; l++) {
        tc_tmodel_mem mm;
        tc_tgroup row = {TC_TGROUP_ROW, 0};
        CHECK_OK(tc_tmodel_mem_random(&mm, &c, (tc_tpack_layout)l, &row, 3, &err), &err);
        for (size_t i = 0; i < mm.m.n_tensors; i++)
            if (mm.m.tensors[i].ternary) {
                const tc_tmodel_tensor *t = &mm.m.tensors[i];
                int8_t *codes = malloc((size_t)(t->shape[0] * t->shape[1]));
                float *sc = malloc((size_t)t->plan.n_scales * 4);
                CHECK_OK(tc_tmodel_tensor_unpack(t, codes, sc, &err), &err);
                free(codes);
                free(sc);
            }
        tc_trun *r;
        float lg[50];
        CHECK_OK(tc_trun_new(&r, &mm.m, NULL, &err), &err);
        CHECK_OK(tc_trun_step(r, 3, lg, &err), &err);
        CHECK(isfinite(lg[0]) && isfinite(lg[49]));
        tc_trun_free(r);
        tc_tmodel_mem_free(&mm);
    }
}

/* ---- the tool, on a real model ------------------------------------------- */

static double json_num(const char *text, const char *key)
{
    cJSON *j = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
    return d;
}

/* The first paragraphs of the evaluation text (about 6000 bytes). */
static int write_head(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char buf[6000];
    size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
    int ok = in && out && n > 0 && fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out))
        ok = 0;
    return ok ? 0 : -1;
}

static int test_tool(void)
{
    char model[512], text[512], dir[512], packed[1100], eval[1100], cmd[4096], *out;
    const char *bin = getenv("TC_BIN");
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf") ||
        !tu_asset(text, sizeof text, "text/tinystories_valid_1000.txt") || !bin || !*bin) {
        printf("stories260K, its text or TC_BIN is missing: tc-run not tested\n");
        return 0;
    }
    tc_error err;
    tc_model m;
    tc_tmodel_mem mm;
    tc_tgroup g = {TC_TGROUP_COLS, 64};
    CHECK(tu_tmpdir(dir, sizeof dir) != NULL);
    snprintf(packed, sizeof packed, "%s/s260.tcq", dir);
    snprintf(eval, sizeof eval, "%s/eval.txt", dir);
    CHECK(write_head(text, eval) == 0);
    CHECK_OK(tc_model_open(&m, model, &err), &err);
    CHECK_OK(tc_tmodel_mem_quantize(&mm, &m, TC_TPACK_TL2, &g, &err), &err);
    mm.m.quant.layout = TC_TPACK_TL2;
    mm.m.quant.group = g;
    mm.m.quant.method = TC_TMETHOD_OPTIMAL;
    CHECK_OK(tc_tmodel_write(packed, &mm.m, NULL, NULL, &err), &err);
    tc_tmodel_mem_free(&mm);
    tc_model_close(&m);

    snprintf(cmd, sizeof cmd, "%s/tc-run %s --verify --threads 2", bin, packed);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(strstr(out, "verify: OK") && strstr(out, " 0 mismatches"));
    free(out);

    snprintf(cmd, sizeof cmd, "%s/tc-run %s --compare %s --eval %s --seq-len 64 --samples 100000 --json -q", bin,
             packed, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    double ppl_cmp = json_num(out, "ppl_original"), ppl_q = json_num(out, "ppl_packed");
    double kl = json_num(out, "kl_mean"), top = json_num(out, "top1_agreement");
    CHECK(ppl_q > 1 && kl >= 0 && top >= 0 && top <= 1);
    double n_win = json_num(out, "n_windows");
    free(out);
    /* --ppl on the packed model scores the same windows as --compare's
     * packed side (this file carries no tokenizer: the GGUF's is given). */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --tokenizer %s --ppl %s --seq-len 64 --json -q", bin, packed, model,
             eval);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(json_num(out, "n_windows") == n_win);
    CHECK_NEAR(json_num(out, "ppl"), ppl_q, 1e-9 * ppl_q);
    free(out);
    /* --samples picks that many windows, the same for the same --seed. */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --compare %s --eval %s --seq-len 64 --samples 3 --seed 5 --json -q",
             bin, packed, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(json_num(out, "n_windows") == 3 && json_num(out, "n_tokens") == 3 * 64);
    double kl3 = json_num(out, "kl_mean");
    free(out);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK(json_num(out, "kl_mean") == kl3);
    free(out);
    /* Without a tokenizer of its own, generating needs one. */
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --generate '' -n 5 2>&1", bin, packed);
    CHECK(tu_run(cmd, &out) == 1);
    CHECK(strstr(out, "carries no tokenizer") && strstr(out, packed));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-run %s --ppl %s --seq-len 64 --json -q", bin, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    double ppl_run = json_num(out, "ppl");
    free(out);
    snprintf(cmd, sizeof cmd,
             "%s/tc-analyze %s --calib %s --samples 100000 --seq-len 64 --no-measured --json -q "
             "2>/dev/null",
             bin, model, eval);
    CHECK(tu_run(cmd, &out) == 0);
    double ppl_an = json_num(out, "ppl");
    free(out);
    printf("stories260K fp32 perplexity: tc-run %.6f, tc-analyze %.6f, tc-run --compare %.6f; "
           "packed TL2 %.3f\n",
           ppl_run, ppl_an, ppl_cmp, ppl_q);
    CHECK_NEAR(ppl_run, ppl_an, 1e-6 * ppl_an);
    CHECK_NEAR(ppl_cmp, ppl_an, 1e-5 * ppl_an);

    /* A truncated packed file: exit 1 and one sentence naming it. */
    snprintf(cmd, sizeof cmd, "truncate -s 5000 %s && %s/tc-run %s --verify 2>&1", packed, bin,
             packed);
    CHECK(tu_run(cmd, &out) == 1);
    CHECK(strstr(out, packed) != NULL);
    free(out);
    remove(packed);
    remove(eval);
    rmdir(dir);
    return 1;
}

int main(void)
{
    const tc_tgroup row = {TC_TGROUP_ROW, 0}, cols = {TC_TGROUP_COLS, 32},
                    tensor = {TC_TGROUP_TENSOR, 0};
    for (int l = 0; l < 3; l++) {
        test_model(0, (tc_tpack_layout)l, row);
        test_model(1, (tc_tpack_layout)l, cols);
    }
    test_model(0, TC_TPACK_TL1, tensor);
    test_model_spec(spec_all_traits(), "all traits", TC_TPACK_TL2, row);
    test_model_spec(spec_all_traits(), "all traits", TC_TPACK_I2, cols);
    test_model_spec(spec_diff(), "differential attention", TC_TPACK_TL2, row);
    test_model_spec(spec_diff(), "differential attention", TC_TPACK_I2, cols);
    test_batch_and_generate();
    test_random_model();
    if (!test_tool())
        printf("tool checks skipped\n");
    return tu_finish("test_trun");
}
