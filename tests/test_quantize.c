/* Whole-model quantization: lossless on already-ternary weights, packed and
 * GGUF outputs decode to the computed codes and scales, the calibrated
 * method on a real model, the tool end to end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "tc/ggml_ternary.h"
#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/prune.h"
#include "tc/quantize.h"
#include "tc/synth.h"
#include "tc/tmodel.h"

static const int linear[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};

static tc_quantize_opts opts_of(tc_tmethod meth, tc_tpack_layout lay, tc_tgroup_kind g, int cols, tc_qformat f)
{
    tc_quantize_opts o = {.q = {.method = meth, .layout = lay, .group = {g, cols}}, .format = f,
                          .verify = 1, .n_threads = 1};
    return o;
}

/* Already ternary weights come back exactly with the optimal fit, in every layout. */
static void test_lossless(const char *dir)
{
    tc_error err = {{0}};
    tc_synth_spec s = {.cfg = tc_synth_config(2, 64, 4, 2, 96, 80), .seed = 7, .ternary = 1};
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    char path[512];
    snprintf(path, sizeof path, "%s/lossless.tcq", dir);
    for (int lay = 0; lay < TC_TPACK_LAYOUT_COUNT; lay++) {
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, (tc_tpack_layout)lay, TC_TGROUP_ROW, 0, TC_QFORMAT_PACKED);
        o.float_dtype = TC_F32;
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, path, &o, &rep, &err), &err);
        CHECK(rep.verified == 1);
        CHECK(rep.n_tensors == 1 + 2 * 7);
        CHECK(rep.rel_weight_error < 1e-7);
        CHECK(rep.rel_output_error == -1);
        CHECK(rep.linear_params == 2ull * (64 * 64 * 2 + 32 * 64 * 2 + 96 * 64 * 3));
        CHECK(rep.bpw_linear > 1.5 && rep.bpw_linear < 3.5);
        tc_quantize_report_free(&rep);
        tc_tmodel t;
        CHECK_OK(tc_tmodel_open(&t, path, &err), &err);
        CHECK(t.quant.layout == (tc_tpack_layout)lay && t.quant.method == TC_TMETHOD_OPTIMAL);
        for (int l = 0; l < 2; l++) {
            tc_layer_f32 w;
            CHECK_OK(tc_model_load_layer(&m, l, &w, &err), &err);
            for (int i = 0; i < 7; i++) {
                const tc_tmodel_tensor *q = tc_tmodel_find(&t, l, linear[i]);
                CHECK(q && q->ternary);
                if (!q)
                    continue;
                size_t n = (size_t)(q->shape[0] * q->shape[1]);
                float *v = malloc(n * sizeof *v);
                CHECK_OK(tc_tmodel_tensor_f32(q, v, &err), &err);
                CHECK(memcmp(v, w.w[linear[i]], n * sizeof *v) == 0);
                free(v);
            }
            const tc_tmodel_tensor *nrm = tc_tmodel_find(&t, l, TC_ATTN_NORM);
            CHECK(nrm && !nrm->ternary && nrm->dtype == TC_F32 &&
                  memcmp(nrm->data, w.w[TC_ATTN_NORM], 64 * sizeof(float)) == 0);
            tc_layer_f32_free(&w);
        }
        tc_tmodel_close(&t);
    }
    /* Worker threads change nothing in the output. */
    {
        tc_synth_spec r = {.cfg = tc_synth_config(2, 64, 4, 2, 96, 80), .seed = 8};
        tc_model rm;
        CHECK_OK(tc_synth_model(&rm, &r, &err), &err);
        char p1[600], p4[600];
        snprintf(p1, sizeof p1, "%s/t1.tcq", dir);
        snprintf(p4, sizeof p4, "%s/t4.tcq", dir);
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_TL2, TC_TGROUP_COLS, 48, TC_QFORMAT_PACKED);
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&rm, p1, &o, &rep, &err), &err);
        tc_quantize_report_free(&rep);
        o.n_threads = 4;
        CHECK_OK(tc_quantize_model(&rm, p4, &o, &rep, &err), &err);
        tc_quantize_report_free(&rep);
        tc_mapfile a, b;
        CHECK_OK(tc_mapfile_open(&a, p1, &err), &err);
        CHECK_OK(tc_mapfile_open(&b, p4, &err), &err);
        CHECK(a.size == b.size && a.size > 0 && memcmp(a.data, b.data, (size_t)a.size) == 0);
        tc_mapfile_close(&a);
        tc_mapfile_close(&b);
        tc_model_close(&rm);
    }
    /* Ternary embeddings: the synthetic embedding is not ternary, so only a fit. */
    tc_quantize_opts o = opts_of(TC_TMETHOD_ABSMEAN, TC_TPACK_I2, TC_TGROUP_COLS, 32, TC_QFORMAT_PACKED);
    o.quantize_embeddings = 1;
    tc_quantize_report rep;
    CHECK_OK(tc_quantize_model(&m, path, &o, &rep, &err), &err);
    CHECK(rep.verified && rep.tensors[0].ternary && strcmp(rep.tensors[0].name, "token_embd") == 0);
    CHECK(rep.tensors[0].rel_weight_error > 0 && rep.tensors[0].rel_weight_error < 1);
    tc_quantize_report_free(&rep);
    tc_tmodel t;
    CHECK_OK(tc_tmodel_open(&t, path, &err), &err);
    const tc_tmodel_tensor *e = tc_tmodel_find(&t, -1, TC_G_EMBD);
    CHECK(e && e->ternary && e->plan.group.cols == 32);
    tc_tmodel_close(&t);

    /* TQ blocks need rows of 256: a 64-wide model with an FFN of 96 has not one, so its GGUF
     * would hold no TQ2_0 tensor and is refused before anything is written, unless the
     * fallback was chosen explicitly.  Then every row (64 or 96 long: whole 32-blocks)
     * holds its ternary codes as Q4_0, nothing falls back, and strict has nothing to refuse. */
    snprintf(path, sizeof path, "%s/narrow.gguf", dir);
    o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_GGUF_TQ2);
    CHECK(tc_quantize_model(&m, path, &o, &rep, &err) == TC_ERR);
    CHECK_MSG(strstr(err.msg, "TQ2_0") && strstr(err.msg, "64 and 96") && strstr(err.msg, "explicitly"), "%s",
              err.msg);
    CHECK(access(path, F_OK) != 0);
    o.fallback_explicit = 1;
    o.strict = 1;
    CHECK_OK(tc_quantize_model(&m, path, &o, &rep, &err), &err);
    CHECK(rep.n_fallback == 0 && rep.fallback == TC_Q8_0 && rep.verified);
    for (size_t i = 1; i < rep.n_tensors; i++)
        CHECK_MSG(rep.tensors[i].ternary && rep.tensors[i].dtype == TC_Q4_0, "%s", rep.tensors[i].name);
    CHECK(rep.rel_weight_error < 1e-7);
    tc_quantize_report_free(&rep);
    /* Calibrated without data is refused. */
    o = opts_of(TC_TMETHOD_CALIBRATED, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_PACKED);
    CHECK(tc_quantize_model(&m, path, &o, &rep, &err) == TC_ERR);
    tc_model_close(&m);
}

static void test_block_scales(void)
{
    /* One row of 512: groups of 128 with scales 1, 2, 3, 4; block 0 has codes only in group 0
     * (scale 1) and one in group 1 (scale 2); block 1 is all zero. */
    int8_t codes[512] = {0};
    float scales[4] = {1, 2, 3, 4}, d[2];
    codes[0] = 1;
    codes[1] = -1;
    codes[130] = 1;
    tc_tgroup g = {TC_TGROUP_COLS, 128};
    tc_quantize_block_scales(codes, scales, 1, 512, &g, 256, d);
    CHECK_NEAR(d[0], 4.0 / 3.0, 1e-6);
    CHECK(d[1] == 3.0f);
    /* Blocks of 32 (Q4_0 holding ternary codes) lie inside groups of 128: each gets its group's scale. */
    float d32[16];
    tc_quantize_block_scales(codes, scales, 1, 512, &g, 32, d32);
    CHECK(d32[0] == 1.0f && d32[4] == 2.0f && d32[8] == 3.0f && d32[15] == 4.0f);
}

/* A 256-wide synthetic checkpoint as GGUF, with the stories260K vocabulary when available. */
static int write_wide_gguf(const char *path, int ternary, tc_error *err)
{
    static tc_synth_spec s;
    s = (tc_synth_spec){.cfg = tc_synth_config(2, 256, 4, 2, 768, 512), .seed = 11, .ternary = ternary};
    char vb[512];
    const char *vocab = tu_asset(vb, sizeof vb, "models/stories260K/stories260K.gguf");
    tc_gguf g;
    int have = vocab && tc_gguf_open(&g, vocab, err) == TC_OK;
    tc_model_src src = {.cfg = s.cfg, .dtype = TC_F16, .fill = tc_synth_fill, .ctx = &s,
                        .gguf_vocab = have ? &g : NULL, .name = "wide"};
    int rc = tc_model_write(path, TC_FORMAT_GGUF, &src, err);
    if (have)
        tc_gguf_close(&g);
    return rc;
}

/* Ternary input: the TQ GGUF dequantizes (ggml's rule) to exactly the input weights. */
static void test_gguf_exact(const char *dir)
{
    tc_error err = {{0}};
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/wide_t.gguf", dir);
    CHECK_OK(write_wide_gguf(in, 1, &err), &err);
    for (int src = 0; src < 3; src++) {
    /* src 0: the GGUF file (adjacent rope rows); src 1: the same model in memory in
     * Hugging Face order, so Q and K rows must be reordered on the way out; src 2: a
     * Phi-3 directory, whose fused q/k/v and gate/up go out fused as llama.cpp's
     * attn_qkv and ffn_up. */
    tc_model m;
    if (src == 0) {
        CHECK_OK(tc_model_open(&m, in, &err), &err);
    } else if (src == 2) {
        char phi[512], tok[512];
        snprintf(phi, sizeof phi, "%s/phi3_t", dir);
        /* a GGUF written from a Hugging Face directory carries its tokenizer.json */
        if (!tu_asset(tok, sizeof tok, "models/deep16-hf/tokenizer.json")) {
            printf("Phi-3 directory skipped: no tokenizer.json of 512 tokens in the assets\n");
            continue;
        }
        tc_synth_spec s = {.cfg = tc_synth_config(2, 256, 4, 2, 768, 512), .seed = 11, .ternary = 1, .tokenizer = tok};
        CHECK_OK(tc_synth_family(&s.cfg, "phi3", 0, &err), &err);
        CHECK_OK(tc_synth_write(phi, TC_FORMAT_HF, TC_F16, &s, &err), &err);
        CHECK_OK(tc_model_open(&m, phi, &err), &err);
    } else {
        tc_synth_spec s = {.cfg = tc_synth_config(2, 256, 4, 2, 768, 512), .seed = 11, .ternary = 1};
        CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    }
    for (int f = TC_QFORMAT_GGUF_TQ1; f <= TC_QFORMAT_GGUF_TQ2; f++) {
        snprintf(out, sizeof out, "%s/wide_t_%d_%d.gguf", dir, src, f);
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, (tc_qformat)f);
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK(rep.verified && rep.n_fallback == 0);
        CHECK(rep.bpw_linear > (f == TC_QFORMAT_GGUF_TQ1 ? 1.68 : 2.06) &&
              rep.bpw_linear < (f == TC_QFORMAT_GGUF_TQ1 ? 1.70 : 2.07));
        tc_quantize_report_free(&rep);
        tc_model q;
        CHECK_OK(tc_model_open(&q, out, &err), &err);
        tc_dtype want = f == TC_QFORMAT_GGUF_TQ1 ? TC_TQ1_0 : TC_TQ2_0;
        for (int l = 0; l < 2; l++) {
            tc_layer_f32 w;
            CHECK_OK(tc_model_load_layer(&m, l, &w, &err), &err);
            for (int i = 0; i < 7; i++) {
                const tc_tensor *t = q.layers[l].w[linear[i]];
                CHECK(t && t->dtype == want);
                if (!t)
                    continue;
                int64_t M = t->shape[0], K = t->shape[1];
                uint64_t rb;
                CHECK_OK(tc_ggml_ternary_row_bytes(want, K, &rb, &err), &err);
                float *v = malloc((size_t)(M * K) * sizeof *v);
                for (int64_t r = 0; r < M; r++)
                    CHECK_OK(tc_ggml_ternary_dequantize(want, t->data + (uint64_t)r * rb, K, v + r * K, &err), &err);
                const float *want_w = w.w[linear[i]];
                float *perm = NULL;
                if (m.cfg.rope_layout != q.cfg.rope_layout && (linear[i] == TC_WQ || linear[i] == TC_WK)) {
                    perm = malloc((size_t)(M * K) * sizeof *perm);
                    tc_rope_permute_rows(want_w, perm, linear[i] == TC_WQ ? 4 : 2, 64, (int)K,
                                         m.cfg.rope_layout, q.cfg.rope_layout);
                    want_w = perm;
                }
                /* The F16 file holds f16 values, so its scales survive exactly; the fp32
                 * model's scales are rounded to f16 (relative 2^-11). */
                int ok = 1;
                for (int64_t e = 0; e < M * K; e++)
                    ok &= src != 1 ? v[e] == want_w[e]
                                   : (v[e] == 0) == (want_w[e] == 0) && fabsf(v[e] - want_w[e]) <= 5e-4f * fabsf(want_w[e]);
                CHECK_MSG(ok, "source %d layer %d %s", src, l, tc_role_name((tc_role)linear[i]));
                free(perm);
                free(v);
            }
            tc_layer_f32_free(&w);
        }
        tc_gguf *g = tc_model_gguf(&q);
        char vb[512];
        if (src == 0 && tu_asset(vb, sizeof vb, "models/stories260K/stories260K.gguf"))
            CHECK(g && tc_gguf_find(g, "tokenizer.ggml.tokens") != NULL);
        uint32_t ft = 0;
        CHECK_OK(tc_gguf_get_u32(g, "general.file_type", &ft, &err), &err);
        CHECK(ft == (f == TC_QFORMAT_GGUF_TQ1 ? 36u : 37u));
        tc_model_close(&q);
    }
    tc_model_close(&m);
    }
}

/* The bytes a matrix should hold in the fallback type: its float values, Q/K
 * rows in the output's rope layout, encoded by tc's (ggml-exact) encoder. */
static int fallback_bytes_equal(const tc_tensor *t, const float *src, const tc_model *m, const tc_model *q, int role,
                                tc_dtype want)
{
    int64_t M = t->shape[0], K = t->shape[1];
    uint64_t nb;
    tc_error err = {{0}};
    if (t->dtype != want || tc_dtype_span(want, (uint64_t)(M * K), &nb, &err) || nb != t->nbytes)
        return 0;
    float *perm = NULL;
    if (role >= 0 && m->cfg.rope_layout != q->cfg.rope_layout && (role == TC_WQ || role == TC_WK)) {
        perm = malloc((size_t)(M * K) * sizeof *perm);
        tc_rope_permute_rows(src, perm, role == TC_WQ ? m->cfg.n_heads : m->cfg.n_kv_heads, m->cfg.head_dim, (int)K,
                             m->cfg.rope_layout, q->cfg.rope_layout);
        src = perm;
    }
    uint8_t *b = malloc((size_t)nb);
    int ok = b && tc_convert_from_f32(want, src, (uint64_t)(M * K), b, &err) == TC_OK &&
             memcmp(b, t->data, (size_t)nb) == 0;
    free(b);
    free(perm);
    return ok;
}

/* The parts of a report add up to the file: every tensor's bytes in the file
 * are in exactly one part, the report's matrices as stored, the norms the
 * file's vectors. */
static int parts_add_up(const tc_quantize_report *rep, const char *path)
{
    tc_error err = {{0}};
    tc_gguf g;
    if (tc_gguf_open(&g, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    uint64_t all = 0, mat = 0, vec = 0, vec_n = 0, part[TC_QPART_COUNT] = {0}, sum = 0, reported = 0;
    for (size_t i = 0; i < g.dir.n_tensors; i++) {
        all += g.dir.tensors[i].nbytes;
        if (g.dir.tensors[i].n_dims == 1) {
            vec += g.dir.tensors[i].nbytes;
            vec_n += g.dir.tensors[i].n_elements;
        } else {
            mat += g.dir.tensors[i].nbytes;
        }
    }
    tc_gguf_close(&g);
    for (size_t i = 0; i < rep->n_tensors; i++) {
        const tc_qtensor_report *r = &rep->tensors[i];
        part[r->layer < 0 ? TC_QPART_EMBEDDINGS : r->ternary ? TC_QPART_TERNARY : TC_QPART_FALLBACK] += r->bytes;
        reported += r->bytes;
    }
    /* The file's other matrices are the zero stand-ins of dropped sub-layers (fallback). */
    part[TC_QPART_FALLBACK] += mat - reported;
    part[TC_QPART_NORMS] = vec;
    int ok = 1;
    for (int p = 0; p < TC_QPART_COUNT; p++) {
        sum += rep->parts[p].bytes;
        ok &= rep->parts[p].bytes == part[p];
    }
    ok &= rep->parts[TC_QPART_NORMS].params == vec_n && sum == all && rep->tensor_bytes == all &&
          rep->file_bytes > all;
    if (!ok)
        fprintf(stderr, "%s: parts %llu + %llu + %llu + %llu bytes, file tensors %llu\n", path,
                (unsigned long long)rep->parts[0].bytes, (unsigned long long)rep->parts[1].bytes,
                (unsigned long long)rep->parts[2].bytes, (unsigned long long)rep->parts[3].bytes,
                (unsigned long long)all);
    return ok;
}

/* Rows that are whole 32-blocks but not 256-blocks: the codes in Q4_0, exactly.  A
 * synthetic ternary model stored F16 (so that its scales are f16 values and the
 * round trip can be exact to the bit) with FFN widths 352 (down projections of
 * 352-long rows: Q4_0) and 688 (deep16's: whole blocks of no ggml type, so the
 * declared fallback, which is float there: F16).  Everything else is TQ2_0, the
 * embedding the default fallback Q8_0, and the report's parts add up to the file. */
static void test_gguf_holders(const char *dir)
{
    tc_error err = {{0}};
    static const int ffns[] = {352, 688};
    for (int fi = 0; fi < 2; fi++) {
        char in[512], out[512];
        snprintf(in, sizeof in, "%s/holders_%d.gguf", dir, ffns[fi]);
        snprintf(out, sizeof out, "%s/holders_%d_tq2.gguf", dir, ffns[fi]);
        tc_synth_spec s = {.cfg = tc_synth_config(2, 256, 4, 2, ffns[fi], 512), .seed = 31, .ternary = 1};
        tc_model_src src = {.cfg = s.cfg, .dtype = TC_F16, .fill = tc_synth_fill, .ctx = &s, .name = "holders"};
        CHECK_OK(tc_model_write(in, TC_FORMAT_GGUF, &src, &err), &err);
        tc_model m, q;
        CHECK_OK(tc_model_open(&m, in, &err), &err);
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_GGUF_TQ2);
        o.float_dtype = TC_F16;
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK(rep.verified && rep.fallback == TC_Q8_0);
        CHECK(rep.n_fallback == (ffns[fi] == 688 ? 2 : 0) && rep.n_fallback_float == rep.n_fallback);
        CHECK_MSG(parts_add_up(&rep, out), "ffn %d: the parts do not add up to the file", ffns[fi]);
        CHECK(rep.parts[TC_QPART_TERNARY].params + rep.parts[TC_QPART_FALLBACK].params == rep.linear_params);
        CHECK_OK(tc_model_open(&q, out, &err), &err);
        CHECK(q.tok_embd->dtype == TC_Q8_0);
        for (size_t i = 0; i < rep.n_tensors; i++) {
            const tc_qtensor_report *r = &rep.tensors[i];
            if (r->layer < 0)
                continue;
            const tc_tensor *t = q.layers[r->layer].w[r->role];
            int down = r->role == TC_W_DOWN;
            tc_dtype want = !down ? TC_TQ2_0 : ffns[fi] == 352 ? TC_Q4_0 : TC_F16;
            CHECK_MSG(t && t->dtype == want && r->dtype == want && r->bytes == t->nbytes &&
                      r->ternary == (want != TC_F16), "ffn %d %s: stored %s, expected %s", ffns[fi], r->name,
                      t ? tc_dtype_name(t->dtype) : "nothing", tc_dtype_name(want));
            if (!t || !down)
                continue;
            /* Ternary or not, the down projection decodes to the input's weights bit for bit
             * (a ternary F16 input: its scales are f16 values, its F16 copy is itself). */
            tc_layer_f32 w;
            CHECK_OK(tc_model_load_layer(&m, r->layer, &w, &err), &err);
            float *v = NULL;
            CHECK_OK(tc_tensor_load_f32(t, &v, &err), &err);
            CHECK_MSG(v && memcmp(v, w.w[TC_W_DOWN], (size_t)(r->rows * r->cols) * sizeof *v) == 0,
                      "ffn %d %s: not the input's weights", ffns[fi], r->name);
            CHECK(want != TC_F16 || (r->why && strstr(r->why, "32")));
            free(v);
            tc_layer_f32_free(&w);
        }
        tc_model_close(&q);
        tc_quantize_report_free(&rep);
        tc_model_close(&m);
    }
}

/* The largest difference between the logits of two models over a few tokens. */
static double logits_diff(const tc_model *a, const tc_model *b)
{
    static const int32_t toks[] = {1, 35, 200, 17, 401, 9, 77, 300};
    tc_error err = {{0}};
    tc_decoder *da = NULL, *db = NULL;
    tc_decoder_opts o = {.max_len = 16};
    int V = a->cfg.vocab_size;
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    double diff = -1;
    if (la && lb && tc_decoder_new(&da, a, &o, &err) == TC_OK && tc_decoder_new(&db, b, &o, &err) == TC_OK) {
        diff = 0;
        for (size_t t = 0; t < sizeof toks / sizeof toks[0] && diff >= 0; t++) {
            if (tc_decoder_step(da, toks[t], la, &err) || tc_decoder_step(db, toks[t], lb, &err)) {
                diff = -1;
                break;
            }
            for (int v = 0; v < V; v++)
                diff = fabs((double)la[v] - lb[v]) > diff ? fabs((double)la[v] - lb[v]) : diff;
        }
    }
    if (diff < 0)
        fprintf(stderr, "%s\n", err.msg);
    tc_decoder_free(da);
    tc_decoder_free(db);
    free(la);
    free(lb);
    return diff;
}

/* pad_ffn: an FFN of 688 is written as 768 wide, the added rows of gate and up and
 * columns of down zero, so that the down projections are TQ2_0 too.  The source's
 * weights come back bit for bit beside the zeros, the file computes the source's
 * logits, and its parts add up.  Three sources: a llama GGUF, a Phi-3 directory
 * (fused gate/up, written as llama.cpp's ffn_up) and the llama GGUF pruned of one
 * MLP (deci: the dropped MLP's stand-in stays width 1). */
static void test_gguf_padding(const char *dir)
{
    tc_error err = {{0}};
    char base[512];
    snprintf(base, sizeof base, "%s/pad_base.gguf", dir);
    tc_synth_spec s = {.cfg = tc_synth_config(2, 256, 4, 2, 688, 512), .seed = 41, .ternary = 1};
    tc_model_src src = {.cfg = s.cfg, .dtype = TC_F16, .fill = tc_synth_fill, .ctx = &s, .name = "pad"};
    CHECK_OK(tc_model_write(base, TC_FORMAT_GGUF, &src, &err), &err);
    for (int k = 0; k < 3; k++) {
        char in[512], out[512];
        snprintf(out, sizeof out, "%s/pad_%d_tq2.gguf", dir, k);
        if (k == 0) {
            snprintf(in, sizeof in, "%s", base);
        } else if (k == 1) {
            /* a GGUF written from a Hugging Face directory carries its tokenizer.json */
            char tok[512];
            if (!tu_asset(tok, sizeof tok, "models/deep16-hf/tokenizer.json")) {
                printf("padded Phi-3 directory skipped: no tokenizer.json of 512 tokens in the assets\n");
                continue;
            }
            snprintf(in, sizeof in, "%s/pad_phi3", dir);
            tc_synth_spec p = s;
            p.tokenizer = tok;
            CHECK_OK(tc_synth_family(&p.cfg, "phi3", 0, &err), &err);
            CHECK_OK(tc_synth_write(in, TC_FORMAT_HF, TC_F16, &p, &err), &err);
        } else {
            snprintf(in, sizeof in, "%s/pad_deci.gguf", dir);
            tc_model bm;
            tc_prune_plan plan;
            CHECK_OK(tc_model_open(&bm, base, &err), &err);
            CHECK_OK(tc_prune_plan_init(&plan, 2, &err), &err);
            CHECK_OK(tc_prune_parse_list(&plan, "mlp:1", "test", &err), &err);
            CHECK_OK(tc_prune_write(&bm, &plan, in, TC_FORMAT_GGUF, &err), &err);
            tc_prune_plan_free(&plan);
            tc_model_close(&bm);
        }
        tc_model m, q;
        CHECK_OK(tc_model_open(&m, in, &err), &err);
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_GGUF_TQ2);
        o.float_dtype = TC_F16;
        o.pad_ffn = 1;
        o.fallback = TC_F16; /* the embedding as it is, so that only the padding differs */
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK_MSG(rep.verified && rep.ffn_dim_stored == 768 && rep.n_fallback == 0, "source %d: FFN %d", k,
                  rep.ffn_dim_stored);
        for (size_t i = 0; i < rep.n_tensors; i++)
            CHECK_MSG(rep.tensors[i].layer < 0 || rep.tensors[i].dtype == TC_TQ2_0, "source %d %s", k,
                      rep.tensors[i].name);
        CHECK_MSG(parts_add_up(&rep, out), "source %d: the parts do not add up to the file", k);
        /* The report counts the source's weights, stored in the padded bytes. */
        CHECK(rep.parts[TC_QPART_TERNARY].params == rep.linear_params);
        tc_quantize_report_free(&rep);
        CHECK_OK(tc_model_open(&q, out, &err), &err);
        CHECK(q.cfg.ffn_dim == 768);
        for (int l = 0; l < 2; l++) {
            CHECK(q.layers[l].has_mlp == m.layers[l].has_mlp);
            if (!m.layers[l].has_mlp)
                continue;
            tc_layer_f32 w, wq;
            CHECK_OK(tc_model_load_layer(&m, l, &w, &err), &err);
            CHECK_OK(tc_model_load_layer(&q, l, &wq, &err), &err);
            int bad = 0;
            for (int r = TC_W_GATE; r <= TC_W_DOWN; r++)
                for (int64_t i = 0; i < (r == TC_W_DOWN ? 256 : 768); i++)
                    for (int64_t c = 0; c < (r == TC_W_DOWN ? 768 : 256); c++) {
                        int64_t si = r == TC_W_DOWN ? i : i < 688 ? i : -1;
                        int64_t sc = r == TC_W_DOWN ? (c < 688 ? c : -1) : c;
                        float want = si < 0 || sc < 0 ? 0.0f : w.w[r][si * (r == TC_W_DOWN ? 688 : 256) + sc];
                        bad += wq.w[r][i * (r == TC_W_DOWN ? 768 : 256) + c] != want;
                    }
            CHECK_MSG(bad == 0, "source %d layer %d: %d FFN weights are not the source's or zero", k, l, bad);
            tc_layer_f32_free(&w);
            tc_layer_f32_free(&wq);
        }
        double diff = logits_diff(&m, &q);
        CHECK_MSG(diff >= 0 && diff < 1e-4, "source %d: logits differ by %g", k, diff);
        tc_model_close(&q);
        /* Without padding the down projections go to the fallback: F16 for rows of 688. */
        o.pad_ffn = 0;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK(rep.ffn_dim_stored == 688 && rep.n_fallback == (k == 2 ? 1 : 2));
        tc_quantize_report_free(&rep);
        tc_model_close(&m);
    }
}

/* --fallback: the matrices that cannot be ternary are stored in the block
 * type where their rows are whole blocks of it, with the reference bytes (Q
 * and K rows reordered for GGUF), and F16 where they are not; the report
 * names each one's type and bytes. */
static void test_gguf_fallback(const char *dir)
{
    tc_error err = {{0}};
    /* wide: dim 256 (q..up TQ2_0), ffn 88 (down: whole blocks of no ggml type); narrow: dim 64
     * (q..up Q4_0, no TQ2_0 tensor: written because the fallback is explicit). */
    static const struct { int dim, heads, kv, ffn; } shapes[] = {{256, 4, 2, 88}, {64, 4, 2, 88}};
    static const tc_dtype fbs[] = {TC_Q8_0, TC_Q4_K};
    for (int sh = 0; sh < 2; sh++) {
        tc_synth_spec s = {.cfg = tc_synth_config(2, shapes[sh].dim, shapes[sh].heads, shapes[sh].kv, shapes[sh].ffn, 512),
                           .seed = 5};
        s.cfg.tied_embeddings = 0;
        tc_model m;
        CHECK_OK(tc_synth_model(&m, &s, &err), &err);
        for (int fi = 0; fi < 2; fi++) {
            tc_dtype fb = fbs[fi];
            char out[512];
            snprintf(out, sizeof out, "%s/fallback_%d_%d.gguf", dir, sh, fi);
            tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_GGUF_TQ2);
            o.fallback = fb;
            o.fallback_explicit = 1;
            o.float_dtype = TC_F16;
            tc_quantize_report rep;
            CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
            CHECK(rep.verified && rep.n_fallback == 2 && rep.fallback == fb);
            CHECK(parts_add_up(&rep, out));
            tc_model q;
            CHECK_OK(tc_model_open(&q, out, &err), &err);
            for (size_t i = 0; i < rep.n_tensors; i++) {
                const tc_qtensor_report *r = &rep.tensors[i];
                const tc_tensor *t = r->layer < 0 ? (r->role == TC_G_EMBD ? q.tok_embd : q.output)
                                                  : q.layers[r->layer].w[r->role];
                CHECK_MSG(t != NULL, "%s", r->name);
                if (!t)
                    continue;
                int fits = r->cols % (int64_t)tc_dtype_block_elems(fb) == 0;
                tc_dtype want = r->ternary ? (r->cols % 256 == 0 ? TC_TQ2_0 : TC_Q4_0) : fits ? fb : TC_F16;
                CHECK_MSG(r->ternary == (r->layer >= 0 && r->role != TC_W_DOWN), "%s", r->name);
                CHECK_MSG(t->dtype == want && (r->ternary || r->dtype == want) && r->bytes == t->nbytes,
                          "%s: stored %s, expected %s", r->name, tc_dtype_name(t->dtype), tc_dtype_name(want));
                if (r->ternary)
                    continue;
                float *src = NULL;
                tc_layer_f32 w = {0};
                if (r->layer < 0) {
                    CHECK_OK(tc_tensor_load_f32(r->role == TC_G_EMBD ? m.tok_embd : m.output, &src, &err), &err);
                } else {
                    CHECK_OK(tc_model_load_layer(&m, r->layer, &w, &err), &err);
                }
                CHECK_MSG(fallback_bytes_equal(t, r->layer < 0 ? src : w.w[r->role], &m, &q, r->layer < 0 ? -1 : r->role, want),
                          "%s: not the reference %s bytes", r->name, tc_dtype_name(want));
                free(src);
                if (r->layer >= 0)
                    tc_layer_f32_free(&w);
            }
            tc_model_close(&q);
            tc_quantize_report_free(&rep);
        }
        /* Only GGUF has a fallback, and only of the types tc encodes or F16. */
        char out[512];
        snprintf(out, sizeof out, "%s/fallback_refused.tcq", dir);
        tc_quantize_opts o = opts_of(TC_TMETHOD_OPTIMAL, TC_TPACK_I2, TC_TGROUP_ROW, 0, TC_QFORMAT_PACKED);
        o.fallback = TC_Q8_0;
        tc_quantize_report rep;
        CHECK(tc_quantize_model(&m, out, &o, &rep, &err) == TC_ERR && strstr(err.msg, "GGUF") != NULL);
        o.format = TC_QFORMAT_GGUF_TQ1;
        o.fallback = TC_Q5_K;
        CHECK(tc_quantize_model(&m, out, &o, &rep, &err) == TC_ERR && strstr(err.msg, "Q5_K") != NULL);
        o.fallback = TC_BF16;
        CHECK(tc_quantize_model(&m, out, &o, &rep, &err) == TC_ERR && strstr(err.msg, "BF16") != NULL);
        CHECK(access(out, F_OK) != 0);
        tc_model_close(&m);
    }
}

/* Random input: GGUF blocks decode to the packed file's codes, with the row's scale as d. */
static void test_gguf_matches_packed(const char *dir)
{
    tc_error err = {{0}};
    char in[512], pk[512], gg[512];
    snprintf(in, sizeof in, "%s/wide_r.gguf", dir);
    snprintf(pk, sizeof pk, "%s/wide_r.tcq", dir);
    snprintf(gg, sizeof gg, "%s/wide_r_tq.gguf", dir);
    CHECK_OK(write_wide_gguf(in, 0, &err), &err);
    tc_model m;
    CHECK_OK(tc_model_open(&m, in, &err), &err);
    tc_quantize_opts o = opts_of(TC_TMETHOD_ABSMEAN, TC_TPACK_TL1, TC_TGROUP_ROW, 0, TC_QFORMAT_PACKED);
    tc_quantize_report rep;
    CHECK_OK(tc_quantize_model(&m, pk, &o, &rep, &err), &err);
    CHECK(rep.zero_share > 0.1 && rep.zero_share < 0.7);
    tc_quantize_report_free(&rep);
    o.format = TC_QFORMAT_GGUF_TQ1;
    CHECK_OK(tc_quantize_model(&m, gg, &o, &rep, &err), &err);
    tc_quantize_report_free(&rep);
    tc_tmodel t;
    tc_gguf g;
    CHECK_OK(tc_tmodel_open(&t, pk, &err), &err);
    CHECK_OK(tc_gguf_open(&g, gg, &err), &err);
    static const char *names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 7; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[i]);
            const tc_tensor *gt = tc_tensordir_find(&g.dir, name);
            const tc_tmodel_tensor *pt = tc_tmodel_find(&t, l, linear[i]);
            CHECK(gt && pt);
            if (!gt || !pt)
                continue;
            int64_t M = pt->shape[0], K = pt->shape[1], nb = K / 256;
            int8_t *c1 = malloc((size_t)(M * K)), *c2 = malloc((size_t)K);
            float *s1 = malloc((size_t)M * sizeof *s1), *d = malloc((size_t)nb * sizeof *d);
            CHECK_OK(tc_tmodel_tensor_unpack(pt, c1, s1, &err), &err);
            uint64_t rb;
            CHECK_OK(tc_ggml_ternary_row_bytes(TC_TQ1_0, K, &rb, &err), &err);
            int same = 1;
            for (int64_t r = 0; r < M; r++) {
                CHECK_OK(tc_ggml_ternary_decode(TC_TQ1_0, gt->data + (uint64_t)r * rb, K, c2, d, &err), &err);
                same &= memcmp(c1 + r * K, c2, (size_t)K) == 0;
                for (int64_t b = 0; b < nb; b++)
                    same &= d[b] == tc_f16_to_f32(tc_f32_to_f16(s1[r]));
            }
            CHECK_MSG(same, "%s", name);
            free(c1);
            free(c2);
            free(s1);
            free(d);
        }
    tc_gguf_close(&g);
    tc_tmodel_close(&t);
    tc_model_close(&m);
}

/* Calibrated on a real model: it beats the uncalibrated fit on the calibration activations. */
static void test_calibrated(const char *dir)
{
    char mp[512], out[512];
    if (!tu_asset(mp, sizeof mp, "models/stories260K/stories260K.gguf")) {
        printf("stories260K missing: calibrated test skipped\n");
        return;
    }
    tc_error err = {{0}};
    tc_model m;
    CHECK_OK(tc_model_open(&m, mp, &err), &err);
    enum { NS = 4, L = 48 };
    int32_t tokens[NS * L];
    size_t offsets[NS + 1];
    uint64_t st = 5;
    for (int i = 0; i < NS * L; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = i % L == 0 ? 1 : (int32_t)(3 + (st >> 33) % 509);
    }
    for (int s = 0; s <= NS; s++)
        offsets[s] = (size_t)s * L;
    tc_batch b = {tokens, offsets, NS};
    snprintf(out, sizeof out, "%s/stories_q.tcq", dir);
    double err_opt = 0, err_cal = 0;
    for (int k = 0; k < 3; k++) {
        tc_quantize_opts o = opts_of(k == 0 ? TC_TMETHOD_OPTIMAL : TC_TMETHOD_CALIBRATED, TC_TPACK_TL2,
                                     TC_TGROUP_COLS, 32, TC_QFORMAT_PACKED);
        o.calib = &b;
        o.q.sequential = k == 2;
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK(rep.verified && rep.calib_tokens == NS * L);
        CHECK(rep.rel_output_error > 0 && rep.rel_output_error < 1);
        size_t n_lin = 0;
        for (size_t i = 0; i < rep.n_tensors; i++) {
            const tc_qtensor_report *r = &rep.tensors[i];
            n_lin += r->layer >= 0;
            CHECK(r->layer < 0 ? !r->ternary && r->why : r->ternary && r->rel_output_error >= 0);
        }
        CHECK(n_lin == 5 * 7);
        if (k == 0)
            err_opt = rep.rel_output_error;
        if (k == 1)
            err_cal = rep.rel_output_error;
        tc_quantize_report_free(&rep);
        tc_tmodel t;
        CHECK_OK(tc_tmodel_open(&t, out, &err), &err);
        CHECK(t.quant.method == o.q.method && t.quant.sequential == (k == 2));
        CHECK(t.quant.calib_tokens == (k ? NS * L : NS * L));
        tc_tmodel_close(&t);
    }
    CHECK_MSG(err_cal < err_opt, "calibrated %.4f vs optimal %.4f", err_cal, err_opt);
    tc_model_close(&m);
}

/* The affine methods on a real model: affine-calibrated (block by block,
 * each weight fitted to the original's outputs on the quantized model's
 * inputs) records offsets and its sequential inputs and beats the plain
 * affine fit; affine-block is refused, not run as something else; GGUF
 * refuses groups its Q4_1 blocks cannot hold. */
static void test_affine_calibrated(const char *dir)
{
    char mp[512], out[512];
    if (!tu_asset(mp, sizeof mp, "models/stories260K/stories260K.gguf")) {
        printf("stories260K missing: affine calibrated test skipped\n");
        return;
    }
    tc_error err = {{0}};
    tc_model m;
    CHECK_OK(tc_model_open(&m, mp, &err), &err);
    enum { NS = 4, L = 48 };
    int32_t tokens[NS * L];
    size_t offsets[NS + 1];
    uint64_t st = 7;
    for (int i = 0; i < NS * L; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = i % L == 0 ? 1 : (int32_t)(3 + (st >> 33) % 509);
    }
    for (int s = 0; s <= NS; s++)
        offsets[s] = (size_t)s * L;
    tc_batch b = {tokens, offsets, NS};
    snprintf(out, sizeof out, "%s/stories_aq.tcq", dir);
    double e[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        tc_quantize_opts o = opts_of(k == 0 ? TC_TMETHOD_AFFINE : TC_TMETHOD_AFFINE_CALIBRATED, TC_TPACK_TL2,
                                     TC_TGROUP_COLS, 32, TC_QFORMAT_PACKED);
        o.calib = &b;
        o.q.refit = 1;
        tc_quantize_report rep;
        CHECK_OK(tc_quantize_model(&m, out, &o, &rep, &err), &err);
        CHECK(rep.verified && rep.calib_tokens == NS * L);
        e[k] = rep.rel_output_error;
        size_t n_lin = 0;
        for (size_t i = 0; i < rep.n_tensors; i++)
            n_lin += rep.tensors[i].layer >= 0 && rep.tensors[i].ternary && rep.tensors[i].rel_output_error >= 0;
        CHECK(n_lin == 5 * 7);
        tc_quantize_report_free(&rep);
        tc_tmodel t;
        CHECK_OK(tc_tmodel_open(&t, out, &err), &err);
        CHECK(t.version == TC_TMODEL_VERSION && t.quant.method == o.q.method);
        CHECK(t.quant.sequential == k);
        const tc_tmodel_tensor *wq = tc_tmodel_find(&t, 2, TC_WQ);
        CHECK(wq && wq->ternary && wq->plan.offset == 1);
        tc_tmodel_close(&t);
    }
    CHECK_MSG(e[1] < e[0], "affine-calibrated %.4f vs affine %.4f", e[1], e[0]);
    tc_quantize_opts o = opts_of(TC_TMETHOD_AFFINE_BLOCK, TC_TPACK_TL2, TC_TGROUP_ROW, 0, TC_QFORMAT_PACKED);
    o.calib = &b;
    tc_quantize_report rep;
    CHECK(tc_quantize_model(&m, out, &o, &rep, &err) == TC_ERR && strstr(err.msg, "affine-block"));
    /* GGUF keeps offsets per 32-block (Q4_1): groups of 48 columns fit none. */
    o = opts_of(TC_TMETHOD_AFFINE, TC_TPACK_TL2, TC_TGROUP_COLS, 48, TC_QFORMAT_GGUF_TQ2);
    snprintf(out, sizeof out, "%s/stories_aq.gguf", dir);
    CHECK(tc_quantize_model(&m, out, &o, &rep, &err) == TC_ERR && strstr(err.msg, "48 columns"));
    tc_model_close(&m);
}

static void test_tool(const char *dir)
{
    char mp[512], tp[512], cmd[2048], *out;
    const char *bin = getenv("TC_BIN");
    if (!bin || !*bin)
        bin = "./build";
    if (!tu_asset(mp, sizeof mp, "models/stories260K/stories260K.gguf") ||
        !tu_asset(tp, sizeof tp, "text/tinystories_valid_1000.txt")) {
        printf("assets missing: tool test skipped\n");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "%s/tc-quantize %s -o %s/tool.tcq --method calibrated --calib %s --samples 3 --seq-len 32 "
             "--group 64 --layout i2 --json -q --threads 1",
             bin, mp, dir, tp);
    CHECK(tu_run(cmd, &out) == 0);
    cJSON *j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "verified")));
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tensors")) >= 36);
        CHECK(cJSON_GetObjectItem(j, "calib_tokens")->valuedouble == 96);
        double bpw = cJSON_GetObjectItem(j, "linear_bits_per_weight")->valuedouble;
        CHECK(bpw > 2 && bpw < 4);
        CHECK(strcmp(cJSON_GetObjectItem(j, "method")->valuestring, "calibrated") == 0);
    }
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/tool.tcq --method calibrated 2>&1", bin, mp, dir);
    CHECK(tu_run(cmd, &out) == 2);
    free(out);
    /* affine-calibrated says it took its inputs through the quantized layers; affine-block is refused. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/aff.tcq --method affine-calibrated --calib %s --samples 2 "
             "--seq-len 32 --json -q --threads 1", bin, mp, dir, tp);
    CHECK(tu_run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECK(j && cJSON_IsTrue(cJSON_GetObjectItem(j, "sequential")) &&
          !strcmp(cJSON_GetObjectItem(j, "method")->valuestring, "affine-calibrated"));
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/aff.tcq --force --method affine-block --calib %s --samples 2 "
             "--seq-len 32 -q 2>&1", bin, mp, dir, tp);
    CHECK(tu_run(cmd, &out) == 1 && strstr(out, "not implemented"));
    free(out);
    /* --sensitivity: every linear weight ranked, most costly first; it writes nothing. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s --sensitivity --method affine --calib %s --samples 2 --seq-len 32 "
             "--json -q --threads 1", bin, mp, tp);
    CHECK(tu_run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        cJSON *a = cJSON_GetObjectItem(j, "tensors");
        CHECK(cJSON_GetArraySize(a) == 35 && cJSON_GetObjectItem(j, "tokens")->valuedouble == 64);
        double prev = 1e300;
        for (int i = 0; i < cJSON_GetArraySize(a); i++) {
            double kl = cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), "kl")->valuedouble;
            CHECK(kl > 0 && kl <= prev);
            prev = kl;
        }
    }
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s --sensitivity -o %s/s.tcq --calib %s 2>&1", bin, mp, dir, tp);
    CHECK(tu_run(cmd, &out) == 2 && strstr(out, "-o"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s --sensitivity 2>&1", bin, mp);
    CHECK(tu_run(cmd, &out) == 2 && strstr(out, "--calib"));
    free(out);
    snprintf(cmd, sizeof cmd,
             "%s/tc-quantize %s -o %s/tool.gguf --format gguf-tq2 --strict --fallback q8_0 --keep-ffn-width -q 2>&1",
             bin, mp, dir);
    CHECK(tu_run(cmd, &out) == 1 && strstr(out, "172") && strstr(out, "strict"));
    free(out);
    /* A packed file is written back as a checkpoint only (--format), never packed again. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s/tool.tcq -o %s/x.tcq 2>&1", bin, dir, dir);
    CHECK(tu_run(cmd, &out) == 2 && strstr(out, "is a packed file"));
    free(out);
    /* stories260K (dim 64, ffn 172): by default the FFN is padded to 256 wide, so the down
     * projections are TQ2_0 and the 64-long rows hold their codes as Q4_0: every linear
     * weight is ternary and the file says so. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/pad.gguf --format gguf-tq2 --json -q", bin, mp, dir);
    CHECK(tu_run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        CHECK(cJSON_GetObjectItem(j, "ffn_dim")->valuedouble == 172 &&
              cJSON_GetObjectItem(j, "ffn_dim_stored")->valuedouble == 256);
        CHECK(cJSON_GetObjectItem(j, "fallback_tensors")->valuedouble == 0);
        cJSON *ty = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "parts"), "ternary"), "types");
        CHECK(ty && cJSON_GetObjectItem(ty, "TQ2_0")->valuedouble == 5 && cJSON_GetObjectItem(ty, "Q4_0")->valuedouble == 30);
    }
    cJSON_Delete(j);
    free(out);
    /* Kept 172 wide, it has no row that TQ2_0 can hold: without --fallback the file is
     * refused with one line before anything is written. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/fb.gguf --format gguf-tq2 --keep-ffn-width 2>&1", bin, mp, dir);
    CHECK(tu_run(cmd, &out) == 1);
    CHECK_MSG(strstr(out, "TQ2_0") && strstr(out, "--fallback") && strchr(out, '\n') == out + strlen(out) - 1,
              "%s", out);
    CHECK(access((snprintf(cmd, sizeof cmd, "%s/fb.gguf", dir), cmd), F_OK) != 0);
    free(out);
    /* With --fallback q8_0 it is written, and says so: the 64-long rows of 30 linear weights
     * hold their ternary codes as Q4_0, the 172-long rows of the five down projections are
     * whole blocks of no ggml type (F16), the embedding and the head are Q8_0; the parts add
     * up to the file's tensors. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/fb.gguf --format gguf-tq2 --fallback Q8_0 --keep-ffn-width --json -q",
             bin, mp, dir);
    CHECK(tu_run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "fallback")), "Q8_0") == 0);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "fallback_explicit")));
        CHECK(cJSON_GetObjectItem(j, "fallback_tensors")->valuedouble == 5);
        int q8 = 0, f16 = 0, q4t = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "tensors"))
        {
            const char *dt = cJSON_GetStringValue(cJSON_GetObjectItem(e, "dtype"));
            int tern = cJSON_IsTrue(cJSON_GetObjectItem(e, "ternary"));
            q8 += dt && strcmp(dt, "Q8_0") == 0 && !tern;
            f16 += dt && strcmp(dt, "F16") == 0 && !tern;
            q4t += dt && strcmp(dt, "Q4_0") == 0 && tern;
        }
        CHECK_MSG(q4t == 30 && q8 == 2 && f16 == 5, "ternary Q4_0 %d, Q8_0 %d, F16 %d", q4t, q8, f16);
        double sum = 0, tb = cJSON_GetObjectItem(j, "tensor_bytes")->valuedouble;
        static const char *const parts[] = {"ternary", "fallback", "embeddings", "norms"};
        cJSON *ps = cJSON_GetObjectItem(j, "parts");
        for (int p = 0; p < 4; p++) {
            cJSON *pp = cJSON_GetObjectItem(ps, parts[p]);
            CHECK_MSG(pp != NULL, "part %s", parts[p]);
            if (pp)
                sum += cJSON_GetObjectItem(pp, "bytes")->valuedouble;
        }
        CHECK(sum == tb && tb > 0);
        snprintf(cmd, sizeof cmd, "%s/fb.gguf", dir);
        tc_gguf g;
        tc_error err = {{0}};
        CHECK_OK(tc_gguf_open(&g, cmd, &err), &err);
        double all = 0;
        for (size_t i = 0; i < g.dir.n_tensors; i++)
            all += (double)g.dir.tensors[i].nbytes;
        CHECK_MSG(all == tb, "the file's tensors hold %.0f bytes, the report %.0f", all, tb);
        tc_gguf_close(&g);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(ps, "ternary"), "bits_per_weight")->valuedouble == 4.5);
    }
    cJSON_Delete(j);
    free(out);
    /* The summary states the fallback and the parts. */
    snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/fb.gguf --force --format gguf-tq2 --fallback f16 --keep-ffn-width -q", bin,
             mp, dir);
    CHECK(tu_run(cmd, &out) == 0);
    CHECK_MSG(strstr(out, "fallback F16: 5 linear weights") && strstr(out, "ternary") && strstr(out, "embeddings") &&
              strstr(out, "norms") && strstr(out, "30 Q4_0"), "%s", out);
    free(out);
    static const char *const bad[][2] = {{"--fallback q5_k --format gguf-tq2", "--fallback"},
                                         {"--fallback q8_0", "--fallback"},
                                         {"--fallback-type q8_0 --format gguf-tq2", "option"},
                                         {"--keep-ffn-width", "--keep-ffn-width"}};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s/tc-quantize %s -o %s/fb2.gguf %s 2>&1", bin, mp, dir, bad[i][0]);
        CHECK_MSG(tu_run(cmd, &out) == 2 && strstr(out, bad[i][1]), "%s: %s", bad[i][0], out);
        free(out);
    }
}

int main(void)
{
    char dir[256];
    if (!tu_tmpdir(dir, sizeof dir))
        return 1;
    test_block_scales();
    test_lossless(dir);
    test_gguf_exact(dir);
    test_gguf_matches_packed(dir);
    test_gguf_holders(dir);
    test_gguf_padding(dir);
    test_gguf_fallback(dir);
    test_calibrated(dir);
    test_affine_calibrated(dir);
    test_tool(dir);
    return tu_finish("test_quantize");
}
