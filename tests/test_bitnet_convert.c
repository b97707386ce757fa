/* Ternary-trained models written out and read back, bit for bit.
 *
 * bitnet12 (HF packed), bitnet12-bf16 (HF bf16 masters, autobitlinear) and
 * deep16-1.58 (a Llama with a bitnet quantization config) are converted to
 * the packed format (codes and scales carried over), and the packed files are
 * written back:
 *   - as HF packed: bitnet12's and deep16-1.58's every tensor byte for byte
 *     the checkpoint's (HF -> tcq -> HF); bitnet12-bf16's codes those its
 *     linear class derives from the masters, its float32 absmean scales
 *     stored as F32 weight_scales;
 *   - as GGUF bitnet TQ1_0, TQ2_0 and bitnet.cpp's I2_S: read back by tc, every
 *     linear's codes and scale exactly the tiles' (the scale in the `.scale`
 *     tensor or in I2_S's tail, down projections of 688 columns, no whole
 *     block of either type, as F32 values code x scale); the I2_S file
 *     converted to packed and back gives every tensor byte for byte again
 *     (GGUF -> tcq -> GGUF), and written as HF its codes again;
 *   - tc's function on each GGUF: the logits of 256 tokens of references.json
 *     (64 under a sanitizer)
 *     against the checkpoint's, position 0 within 1e-5 of max |logit| (the
 *     scale is multiplied there, not divided: a float rounding apart), top-1
 *     agreement >= 97 %.
 *
 * Stock llama.cpp: its bitnet graph hard-codes SiLU, which BitNet b1.58 (and
 * bitnet12) replace with relu2, so llama.cpp cannot compute bitnet12.  The
 * test therefore gives bitnet12 SiLU (a model of llama.cpp's graph, trained
 * or not) and writes it as GGUF TQ2_0 with stories260K's vocabulary (its
 * own); llama.cpp's greedy continuations of BOS and of references.json's
 * prompt must be tc's, token for token up to near ties (tc's logit for
 * llama.cpp's token within NEAR of its best: llama.cpp rounds activations to
 * Q8_K blocks, tc per token as the model does).  The relu2 export is read
 * back by tc as relu2 (bitnet.hidden_activation).
 *
 * Analysis and pruning: tc-analyze's baseline on 4 windows of references.json
 * (1 under a sanitizer)
 * is transformers' NLL of them (the quantized function: within the
 * perplexity bar), and its measured cost of skipping a module is
 * tc_perplexity's with that module skipped.  bitnet12 pruned (block 3, the
 * attention of layer 5, the MLP of layer 7) and written as HF packed loads
 * back with the same logits as the original with those modules skipped,
 * bit for bit; bitnet12-bf16 likewise as HF bf16; bitnet12 with block 3
 * dropped as GGUF TQ2_0 within the GGUF bar above, and its SiLU variant in
 * llama.cpp as above.
 *
 * The tools: tc-quantize's --format conversions of a checkpoint and of a
 * .tcq, and its refusals (a .tcq packed again, --method, --group, a float
 * model's I2_S); tc-prune's refusals of sub-layer drops and --type for GGUF
 * bitnet. */
#include "llamacpp.h"

#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tc/analyze.h"
#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/prune.h"
#include "tc/quantize.h"
#include "tc/tmodel.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Under a sanitizer, where everything runs unoptimised, the logits are
 * compared over the first 64 tokens and the analysis runs on one window. */
#define N_TOKENS (SANITIZED ? 64 : 256)
#define N_WINDOWS (SANITIZED ? 1 : 4)

#define N_GEN 32
#define NEAR 0.15
#define TOP1_MIN 0.97
#define PPL_REL 5e-4

static char g_tmp[1024];

/* ---- helpers ---------------------------------------------------------------- */

static int32_t *json_ids(const cJSON *a, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) ids[i++] = (int32_t)x->valueint;
    return ids;
}

static cJSON *references(const char *model)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/references.json", model);
    char *text = tu_slurp(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static int keep_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    memcpy((float *)ctx + tok0 * (size_t)vocab, logits, n * (size_t)vocab * sizeof *logits);
    return TC_OK;
}

/* The fp32 pass's logits of one sequence (skip may be NULL). */
static float *logits_of(const tc_model *m, const int32_t *ids, size_t n, const tc_skip *skip)
{
    float *out = malloc(n * (size_t)m->cfg.vocab_size * sizeof *out);
    size_t off[2] = {0, n};
    tc_batch b = {.tokens = ids, .offsets = off, .n_seqs = 1};
    tc_observer ob = {.ctx = out, .logits = keep_logits};
    tc_forward_opts o = {.n_threads = 2, .skip = skip, .observers = &ob, .n_observers = 1};
    tc_error err = {{0}};
    if (tc_forward(m, &b, &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        free(out);
        return NULL;
    }
    return out;
}

/* max |a - b| / max |b| at position 0, and the share of positions with b's
 * argmax (or one within 1e-3 max |b| of it). */
static void compare_logits(const float *a, const float *b, size_t n, int V, double *pos0, double *top1)
{
    double mx = 0, d0 = 0;
    for (size_t i = 0; i < n * (size_t)V; i++)
        mx = fmax(mx, fabs((double)b[i]));
    for (int v = 0; v < V; v++)
        d0 = fmax(d0, fabs((double)a[v] - b[v]));
    int agree = 0;
    for (size_t t = 0; t < n; t++) {
        const float *x = a + t * (size_t)V, *y = b + t * (size_t)V;
        int ia = 0, ib = 0;
        for (int v = 1; v < V; v++) {
            ia = x[v] > x[ia] ? v : ia;
            ib = y[v] > y[ib] ? v : ib;
        }
        agree += ia == ib || y[ia] >= y[ib] - 1e-3 * mx;
    }
    *pos0 = d0 / mx;
    *top1 = (double)agree / (double)n;
}

/* Every tensor of a is in b with the same dtype, shape and bytes. */
static int same_tensors(const tc_model *a, const tc_model *b, const char *what)
{
    int differ = 0;
    for (size_t i = 0; i < a->dir->n_tensors; i++) {
        const tc_tensor *t = &a->dir->tensors[i], *u = tc_tensordir_find(b->dir, t->name);
        int same = u && u->dtype == t->dtype && u->n_dims == t->n_dims && u->nbytes == t->nbytes &&
                   memcmp(u->data, t->data, (size_t)t->nbytes) == 0;
        for (int d = 0; same && d < t->n_dims; d++)
            same = u->shape[d] == t->shape[d];
        if (!same && differ++ < 3)
            fprintf(stderr, "%s: tensor '%s' differs\n", what, t->name);
    }
    printf("%-34s %zu tensors, %zu in the copy: %d differ\n", what, a->dir->n_tensors, b->dir->n_tensors, differ);
    return differ == 0 && a->dir->n_tensors == b->dir->n_tensors;
}

static int make_tcq(const tc_model *m, const char *path, tc_tmodel *tm, tc_error *err)
{
    tc_quantize_opts o = {.q = {.method = TC_TMETHOD_SOURCE, .layout = TC_TPACK_TL2, .group = {TC_TGROUP_TENSOR, 0}},
                          .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .verify = 1, .n_threads = 2};
    tc_quantize_report rep;
    if (tc_quantize_model(m, path, &o, &rep, err))
        return TC_ERR;
    tc_quantize_report_free(&rep);
    return tc_tmodel_open(tm, path, err);
}

static const tc_role LIN[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};

/* The model m (a GGUF or HF written from tm) holds tm's codes and scales:
 * the scale as the multiplier the tiles hold (GGUF), or its reciprocal as
 * the divisor stored (HF, to its dtype's rounding). */
static int same_codes(const tc_model *m, const tc_tmodel *tm, const char *what)
{
    int bad = 0, n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t i = 0; i < sizeof LIN / sizeof LIN[0]; i++) {
            const tc_tmodel_tensor *t = tc_tmodel_find(tm, l, LIN[i]);
            size_t k = t ? (size_t)(t->shape[0] * t->shape[1]) : 1;
            int8_t *want = malloc(k), *got = malloc(k);
            float s_want = 0, s_got = 0;
            int divides = 1;
            tc_error err = {{0}};
            int ok = t && tc_tmodel_tensor_unpack(t, want, &s_want, &err) == TC_OK &&
                     tc_model_ternary_role_as(m, l, LIN[i], got, &s_got, &divides, &err) == TC_OK;
            if (!ok && err.msg[0])
                fprintf(stderr, "%s\n", err.msg);
            ok = ok && memcmp(want, got, k) == 0 &&
                 (divides ? fabsf(1.0f / s_got - s_want) <= s_want * 0x1p-22f : s_got == s_want);
            bad += !ok;
            n++;
            free(want);
            free(got);
        }
    printf("%-34s %d linears: %d differ from the packed file's codes and scale\n", what, n, bad);
    return bad == 0;
}

/* Greedy continuation ids by tc's decoder from prefix (n_gen tokens). */
static int tc_greedy(const char *path, const int32_t *prefix, size_t np, int32_t *out, int n_gen)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = (int)np + n_gen + 1};
    float *lg = malloc((size_t)m.cfg.vocab_size * sizeof *lg);
    int rc = tc_decoder_new(&d, &m, &o, &err);
    for (size_t i = 0; rc == TC_OK && i < np; i++)
        rc = tc_decoder_step(d, prefix[i], lg, &err);
    for (int i = 0; rc == TC_OK && i < n_gen; i++) {
        int b = 0;
        for (int v = 1; v < m.cfg.vocab_size; v++)
            b = lg[v] > lg[b] ? v : b;
        out[i] = b;
        if (i + 1 < n_gen)
            rc = tc_decoder_step(d, b, lg, &err);
    }
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    free(lg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK ? 0 : -1;
}

/* llama.cpp's greedy continuations of prefix (comma-separated ids) for two
 * files in one run: N_GEN ids into out[i], n[i] how many (-1: refused). */
static void llamacpp_run(const char *pkg, const char *script, const char *prefix, const char *const models[2],
                         int32_t out[2][N_GEN], int n[2])
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' %d %s '%s' '%s' 2>&1", script, pkg, N_GEN, prefix, models[0], models[1]);
    n[0] = n[1] = -1;
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    char line[16384];
    int i = 0;
    while (i < 2 && fgets(line, sizeof line, p)) {
        if (strncmp(line, "error ", 6) == 0) {
            fprintf(stderr, "llama.cpp: %s: %s", models[i], line);
            i++;
        }
        if (strncmp(line, "ok ", 3) != 0)
            continue;
        n[i] = 0;
        char *s = line + 3, *end;
        while (n[i] < N_GEN) {
            long v = strtol(s, &end, 10);
            if (end == s)
                break;
            out[i][n[i]++] = (int32_t)v;
            s = end;
        }
        i++;
    }
    pclose(p);
}

/* tc, reading llama.cpp's continuation: at every step, llama.cpp's token is
 * tc's best or within NEAR of it.  Returns the positions where it is not
 * tc's best (-1 on failure); *worst the largest gap. */
static int near_ties(const char *path, const int32_t *prefix, size_t np, const int32_t *ids, int n, double *worst)
{
    tc_error err = {{0}};
    tc_model m;
    *worst = 0;
    if (tc_model_open(&m, path, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = (int)np + n + 1};
    float *lg = malloc((size_t)m.cfg.vocab_size * sizeof *lg);
    int rc = tc_decoder_new(&d, &m, &o, &err), other = 0;
    for (size_t i = 0; rc == TC_OK && i < np; i++)
        rc = tc_decoder_step(d, prefix[i], lg, &err);
    for (int i = 0; rc == TC_OK && i < n; i++) {
        int b = 0;
        for (int v = 1; v < m.cfg.vocab_size; v++)
            b = lg[v] > lg[b] ? v : b;
        if (ids[i] < 0 || ids[i] >= m.cfg.vocab_size) {
            rc = TC_ERR;
            break;
        }
        other += b != ids[i];
        *worst = fmax(*worst, (double)(lg[b] - lg[ids[i]]));
        rc = tc_decoder_step(d, ids[i], lg, &err);
    }
    free(lg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK ? other : -1;
}

/* ---- the cases -------------------------------------------------------------- */

/* HF -> tcq -> HF: every tensor byte for byte (bf16: the codes and scales). */
static void hf_round_trip(const char *asset, int bytewise)
{
    char rel[256], dir[1024], tcq[1200], out[1200];
    snprintf(rel, sizeof rel, "models/%s", asset);
    if (!tu_asset(dir, sizeof dir, rel)) {
        printf("%s: not in the assets, skipped\n", asset);
        return;
    }
    snprintf(tcq, sizeof tcq, "%s/%s.tcq", g_tmp, asset);
    snprintf(out, sizeof out, "%s/%s-hf", g_tmp, asset);
    tc_error err = {{0}};
    tc_model m, back;
    tc_tmodel tm;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    if (err.msg[0])
        return;
    CHECK_OK(make_tcq(&m, tcq, &tm, &err), &err);
    if (err.msg[0]) {
        tc_model_close(&m);
        return;
    }
    tc_tmodel_export_opts eo = {.format = TC_FORMAT_HF, .hf_src_dir = dir};
    CHECK_OK(tc_tmodel_export(&tm, out, &eo, &err), &err);
    if (tc_model_open(&back, out, &err) == TC_OK) {
        char what[128];
        snprintf(what, sizeof what, "%s: HF -> tcq -> HF", asset);
        CHECK(back.cfg.t.linear == TC_LINEAR_BITLINEAR && back.cfg.t.act == m.cfg.t.act &&
              back.cfg.t.sub_norms == m.cfg.t.sub_norms && back.cfg.n_layers == m.cfg.n_layers);
        if (bytewise)
            CHECK_MSG(same_tensors(&m, &back, what), "%s: tensors differ", what);
        CHECK_MSG(same_codes(&back, &tm, what), "%s: codes or scales differ", what);
        tc_model_close(&back);
    } else {
        CHECK_OK(TC_ERR, &err);
    }
    tc_tmodel_close(&tm);
    tc_model_close(&m);
}

/* bitnet12 -> tcq -> GGUF (TQ1_0, TQ2_0, I2_S): codes and scales exact, tc's
 * function within the bar; I2_S -> tcq -> I2_S byte for byte. */
static void gguf_exports(const char *dir, const int32_t *ids, size_t n)
{
    char tcq[1200];
    snprintf(tcq, sizeof tcq, "%s/b12.tcq", g_tmp);
    tc_error err = {{0}};
    tc_model m;
    tc_tmodel tm;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    if (err.msg[0])
        return;
    CHECK_OK(make_tcq(&m, tcq, &tm, &err), &err);
    float *ref = logits_of(&m, ids, n, NULL);
    static const tc_dtype types[3] = {TC_TQ1_0, TC_TQ2_0, TC_I2_S};
    char i2s[1200] = "";
    for (int k = 0; k < 3 && !err.msg[0]; k++) {
        char path[1200], what[128];
        snprintf(path, sizeof path, "%s/b12-%s.gguf", g_tmp, tc_dtype_name(types[k]));
        snprintf(what, sizeof what, "bitnet12: tcq -> GGUF %s", tc_dtype_name(types[k]));
        tc_tmodel_export_opts eo = {.format = TC_FORMAT_GGUF, .ternary_dtype = types[k]};
        CHECK_OK(tc_tmodel_export(&tm, path, &eo, &err), &err);
        tc_model g;
        if (tc_model_open(&g, path, &err)) {
            CHECK_OK(TC_ERR, &err);
            continue;
        }
        const tc_gguf *gg = tc_model_gguf(&g);
        char *arch = NULL;
        tc_gguf_get_str(gg, "general.architecture", &arch, &err);
        CHECK_MSG(arch && strcmp(arch, types[k] == TC_I2_S ? "bitnet-b1.58" : "bitnet") == 0, "%s: architecture %s",
                  what, arch ? arch : "?");
        free(arch);
        CHECK(g.cfg.t.act == TC_ACT_RELU2 && g.cfg.t.sub_norms && g.cfg.t.linear == TC_LINEAR_BITLINEAR);
        CHECK(g.layers[0].w[TC_WQ]->dtype == types[k] && g.layers[0].w[TC_W_DOWN]->dtype == TC_F32);
        CHECK((g.layers[0].scale[TC_WQ] != NULL) == (types[k] != TC_I2_S));
        CHECK_MSG(same_codes(&g, &tm, what), "%s: codes or scales differ", what);
        float *got = logits_of(&g, ids, n, NULL);
        double pos0 = 1, top1 = 0;
        if (got && ref)
            compare_logits(got, ref, n, m.cfg.vocab_size, &pos0, &top1);
        printf("%-34s logits of %zu tokens against the checkpoint's: position 0 %.1e, top-1 %.1f %%\n", what, n, pos0,
               100 * top1);
        CHECK_MSG(pos0 <= 1e-5 && top1 >= TOP1_MIN, "%s: position 0 %.2e, top-1 %.3f", what, pos0, top1);
        free(got);
        if (types[k] == TC_I2_S) {
            /* GGUF -> tcq -> GGUF */
            char tcq2[1200];
            snprintf(tcq2, sizeof tcq2, "%s/b12-i2s.tcq", g_tmp);
            snprintf(i2s, sizeof i2s, "%s/b12-i2s-again.gguf", g_tmp);
            tc_tmodel tm2;
            CHECK_OK(make_tcq(&g, tcq2, &tm2, &err), &err);
            if (!err.msg[0]) {
                CHECK_OK(tc_tmodel_export(&tm2, i2s, &eo, &err), &err);
                tc_model g2;
                if (tc_model_open(&g2, i2s, &err) == TC_OK) {
                    CHECK_MSG(same_tensors(&g, &g2, "bitnet12: I2_S -> tcq -> I2_S"), "I2_S round trip differs");
                    tc_model_close(&g2);
                } else {
                    CHECK_OK(TC_ERR, &err);
                }
                /* GGUF -> tcq -> HF: these multipliers are reciprocals of bitnet12's BF16
                 * weight_scales, which come back by rounding: BF16 again (test_gguf_bitnet
                 * writes a GGUF's own f32 scales as F32, in an F32 model). */
                char hf[1200];
                snprintf(hf, sizeof hf, "%s/b12-i2s-hf", g_tmp);
                tc_tmodel_export_opts ho = {.format = TC_FORMAT_HF};
                CHECK_OK(tc_tmodel_export(&tm2, hf, &ho, &err), &err);
                if (tc_model_open(&g2, hf, &err) == TC_OK) {
                    CHECK(g2.layers[0].scale[TC_WQ]->dtype == TC_BF16 && g2.tok_embd->dtype == TC_BF16);
                    CHECK_MSG(same_codes(&g2, &tm2, "bitnet12: I2_S -> tcq -> HF"), "I2_S -> HF differs");
                    tc_model_close(&g2);
                } else {
                    CHECK_OK(TC_ERR, &err);
                }
                tc_tmodel_close(&tm2);
            }
        }
        tc_model_close(&g);
    }
    free(ref);
    tc_tmodel_close(&tm);
    tc_model_close(&m);
}

/* tc-analyze on the quantized function: its baseline NLL is transformers'
 * over the same windows, and its measured cost of a skip is the perplexity's. */
static void analysis(const char *dir, const cJSON *refs)
{
    const cJSON *wins = cJSON_GetObjectItemCaseSensitive(refs, "windows");
    const cJSON *nlls = cJSON_GetObjectItemCaseSensitive(refs, "window_nll_sum");
    if (!cJSON_IsArray(wins) || !cJSON_IsArray(nlls)) {
        CHECK_MSG(0, "references.json: no windows");
        return;
    }
    enum { W = N_WINDOWS };
    size_t off[W + 1] = {0}, total = 0;
    int32_t *tokens = NULL;
    double want = 0;
    for (int w = 0; w < W; w++) {
        size_t n;
        int32_t *ids = json_ids(cJSON_GetArrayItem(wins, w), &n);
        tokens = realloc(tokens, (total + n) * sizeof *tokens);
        memcpy(tokens + total, ids, n * sizeof *ids);
        free(ids);
        total += n;
        off[w + 1] = total;
        want += cJSON_GetArrayItem(nlls, w)->valuedouble;
    }
    tc_error err = {{0}};
    tc_model m;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    if (err.msg[0]) {
        free(tokens);
        return;
    }
    tc_analyze_opts ao = {.n_threads = 2, .no_head_stats = 1};
    tc_analysis a;
    CHECK_OK(tc_analyze(&m, tokens, off, W, &ao, &a, &err), &err);
    if (!err.msg[0]) {
        want /= (double)a.n_predicted;
        printf("bitnet12: tc-analyze's baseline NLL on %d windows %.6f, transformers' %.6f (relative %.1e)\n", W, a.nll,
               want, fabs(a.nll - want) / want);
        CHECK_MSG(fabs(exp(a.nll) - exp(want)) <= PPL_REL * 32 / W * exp(want), "analysis NLL %.6f vs %.6f", a.nll,
                  want);
        /* Skipping layer 5's attention: the analysis's measured cost is the
         * quantized model's perplexity with it skipped. */
        tc_skip *skip = calloc((size_t)m.cfg.n_layers, sizeof *skip);
        skip[5].attn = 1;
        tc_ppl_opts po = {.n_threads = 2, .skip = skip};
        tc_ppl p;
        CHECK_OK(tc_perplexity(&m, tokens, off, W, &po, &p, &err), &err);
        double dnll = p.nll - a.nll, got = a.layers[5].mod[TC_MOD_ATTN].dnll;
        printf("bitnet12: skipping layer 5's attention: analysis dNLL %.6f, perplexity pass %.6f\n", got, dnll);
        CHECK_MSG(a.layers[5].mod[TC_MOD_ATTN].measured && fabs(got - dnll) <= 1e-6 * fmax(1, fabs(dnll)),
                  "dnll %.8f vs %.8f", got, dnll);
        free(skip);
        tc_analysis_free(&a);
    }
    free(tokens);
    tc_model_close(&m);
}

/* Pruned and written in the input's format: loads back with the logits of
 * the original with those modules skipped. */
static void prune_case(const char *dir, const char *name, tc_format fmt, const int32_t *ids, size_t n, int block_only)
{
    tc_error err = {{0}};
    tc_model m, p;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    if (err.msg[0])
        return;
    tc_prune_plan plan;
    CHECK_OK(tc_prune_plan_init(&plan, m.cfg.n_layers, &err), &err);
    plan.drop[TC_MOD_BLOCK][3] = 1;
    if (!block_only) {
        plan.drop[TC_MOD_ATTN][5] = 1;
        plan.drop[TC_MOD_MLP][7] = 1;
    }
    char out[1200];
    snprintf(out, sizeof out, "%s/%s", g_tmp, name);
    CHECK_OK(tc_prune_write(&m, &plan, out, fmt, &err), &err);
    tc_skip *skip = calloc((size_t)m.cfg.n_layers, sizeof *skip);
    skip[3].attn = skip[3].mlp = 1;
    if (!block_only) {
        skip[5].attn = 1;
        skip[7].mlp = 1;
    }
    if (!err.msg[0] && tc_model_open(&p, out, &err) == TC_OK) {
        CHECK(p.cfg.n_layers == m.cfg.n_layers - 1 && p.cfg.t.sub_norms == m.cfg.t.sub_norms &&
              p.cfg.t.linear == m.cfg.t.linear);
        /* the sub-norms went with their sub-layers */
        CHECK(block_only || (!p.layers[4].w[TC_ATTN_SUB_NORM] && !p.layers[6].w[TC_FFN_SUB_NORM] &&
                             p.layers[4].w[TC_FFN_SUB_NORM] && p.layers[6].w[TC_ATTN_SUB_NORM]));
        float *a = logits_of(&m, ids, n, skip), *b = logits_of(&p, ids, n, NULL);
        double pos0 = 1, top1 = 0;
        int same = a && b && memcmp(a, b, n * (size_t)m.cfg.vocab_size * sizeof *a) == 0;
        if (a && b)
            compare_logits(b, a, n, m.cfg.vocab_size, &pos0, &top1);
        printf("%-34s logits against the original with the same skips: %s (position 0 %.1e, top-1 %.1f %%)\n", name,
               same ? "identical" : "not identical", pos0, 100 * top1);
        if (fmt == TC_FORMAT_GGUF)
            CHECK_MSG(pos0 <= 1e-5 && top1 >= TOP1_MIN, "%s: position 0 %.2e, top-1 %.3f", name, pos0, top1);
        else
            CHECK_MSG(same, "%s: logits differ from the original's with the modules skipped", name);
        free(a);
        free(b);
        tc_model_close(&p);
    } else if (!err.msg[0]) {
        CHECK_OK(TC_ERR, &err);
    }
    free(skip);
    tc_prune_plan_free(&plan);
    tc_model_close(&m);
}

/* bitnet12 given SiLU (llama.cpp's bitnet graph), written as GGUF TQ2_0 whole
 * and with block 3 dropped: llama.cpp's greedy text is tc's. */
static void llamacpp_case(const char *dir, const cJSON *refs)
{
    char pkg[1024], script[1024], vocab_path[1024];
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (!why && !tu_asset(vocab_path, sizeof vocab_path, "models/stories260K/stories260K.gguf"))
        why = "stories260K.gguf (the vocabulary) is not in the assets";
    if (why) {
        printf("llama.cpp part skipped: %s\n", why);
        return;
    }
    tc_error err = {{0}};
    tc_gguf vocab;
    tc_model m;
    CHECK_OK(tc_gguf_open(&vocab, vocab_path, &err), &err);
    if (err.msg[0])
        return;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    if (err.msg[0]) {
        tc_gguf_close(&vocab);
        return;
    }
    char relu[1200], silu[1200], pruned[1200];
    snprintf(relu, sizeof relu, "%s/b12-relu2-tq2.gguf", g_tmp);
    snprintf(silu, sizeof silu, "%s/b12-silu-tq2.gguf", g_tmp);
    snprintf(pruned, sizeof pruned, "%s/b12-silu-pruned-tq2.gguf", g_tmp);
    CHECK_OK(tc_model_write_ternary(&m, relu, TC_FORMAT_GGUF, TC_TQ2_0, &vocab, NULL, &err), &err);
    tc_model r;
    if (tc_model_open(&r, relu, &err) == TC_OK) {
        CHECK_MSG(r.cfg.t.act == TC_ACT_RELU2, "the relu2 export reads back as %s", tc_act_name(r.cfg.t.act));
        tc_model_close(&r);
    }
    m.cfg.t.act = TC_ACT_SILU;
    CHECK_OK(tc_model_write_ternary(&m, silu, TC_FORMAT_GGUF, TC_TQ2_0, &vocab, NULL, &err), &err);
    tc_model_close(&m);
    tc_gguf_close(&vocab);
    tc_model s;
    if (tc_model_open(&s, silu, &err) == TC_OK) {
        tc_prune_plan plan;
        CHECK_OK(tc_prune_plan_init(&plan, s.cfg.n_layers, &err), &err);
        plan.drop[TC_MOD_BLOCK][3] = 1;
        CHECK_OK(tc_prune_write(&s, &plan, pruned, TC_FORMAT_GGUF, &err), &err);
        tc_prune_plan_free(&plan);
        tc_model_close(&s);
    }
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(refs, "greedy"), "from_prompt");
    size_t np;
    int32_t *prompt = json_ids(cJSON_GetObjectItemCaseSensitive(fp, "prefix_ids"), &np);
    char prompt_s[4096] = "";
    for (size_t i = 0, k = 0; i < np && k < sizeof prompt_s - 16; i++)
        k += (size_t)snprintf(prompt_s + k, sizeof prompt_s - k, "%s%d", i ? "," : "", prompt[i]);
    int32_t bos = 1;
    const char *files[2] = {silu, pruned}, *names[2] = {"bitnet12 (SiLU) TQ2_0", "bitnet12 (SiLU) block 3 dropped"};
    for (int k = 0; k < 2; k++) {
        int32_t lcs[2][N_GEN];
        int nl[2];
        llamacpp_run(pkg, script, k ? prompt_s : "1", files, lcs, nl);
        for (int f = 0; f < 2; f++) {
            int32_t tc[N_GEN], *lc = lcs[f];
            const int32_t *pre = k ? prompt : &bos;
            size_t npre = k ? np : 1;
            CHECK_MSG(nl[f] == N_GEN, "%s: llama.cpp did not run it", names[f]);
            if (nl[f] != N_GEN || tc_greedy(files[f], pre, npre, tc, N_GEN))
                continue;
            int same = 0;
            while (same < N_GEN && tc[same] == lc[same])
                same++;
            double worst;
            int other = near_ties(files[f], pre, npre, lc, N_GEN, &worst);
            printf("%-34s from %-6s: llama.cpp's greedy %d tokens, tc's the same for %d; tc reading llama.cpp's: %d "
                   "other best, largest gap %.3f\n", names[f], k ? "prompt" : "BOS", N_GEN, same, other, worst);
            CHECK_MSG(other >= 0 && worst <= NEAR, "%s: llama.cpp's token %.3f below tc's best", names[f], worst);
        }
    }
    free(prompt);
}

/* The tools: tc-quantize converts a BitNet checkpoint and a packed file of
 * one with --format, refuses what would requantize or does not apply; tc-prune
 * keeps GGUF bitnet to whole blocks. */
static void tools(const char *dir)
{
    const char *bin = getenv("TC_BIN");
    char vocab[1024], deep[1024], cmd[8000];
    if (!bin || !tu_asset(vocab, sizeof vocab, "models/stories260K/stories260K.gguf")) {
        printf("tool checks skipped: TC_BIN or stories260K.gguf missing\n");
        return;
    }
    struct {
        const char *args;
        int code;
        const char *says; /* in stdout + stderr */
    } cases[] = {
        {"'%s' --format gguf-tq2 --vocab '%s' -o '%s/t.gguf' -q", 0, "gguf-tq2"},
        {"'%s' -o '%s/t.tcq' -q", 0, NULL},
        {"'%s/t.tcq' --format gguf-i2s -o '%s/t-i2s.gguf' -q", 0, "gguf-i2s"},
        {"'%s/t.tcq' --format hf --vocab '%s' -o '%s/t-hf' -q", 0, "(hf)"},
        {"'%s/t.tcq' -o '%s/again.tcq'", 2, "is a packed file"},
        {"'%s/t.tcq' --format hf --method absmean -o '%s/x'", 2, "--method does not apply"},
        {"'%s' --format gguf-tq2 --group row -o '%s/x.gguf'", 2, "--group does not apply"},
        {"'%s' --format gguf-i2s -o '%s/x.gguf'", 2, "float model"},
    };
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s", g_tmp);
    int have_deep = tu_asset(deep, sizeof deep, "models/deep16-hf") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[4400];
        switch (i) {
        case 0: snprintf(args, sizeof args, cases[i].args, dir, vocab, tmp); break;
        case 1: snprintf(args, sizeof args, cases[i].args, dir, tmp); break;
        case 3: snprintf(args, sizeof args, cases[i].args, tmp, dir, tmp); break;
        case 6: snprintf(args, sizeof args, cases[i].args, dir, tmp); break;
        case 7:
            if (!have_deep)
                continue;
            snprintf(args, sizeof args, cases[i].args, deep, tmp);
            break;
        default: snprintf(args, sizeof args, cases[i].args, tmp, tmp); break;
        }
        snprintf(cmd, sizeof cmd, "%s/tc-quantize %s 2>&1", bin, args);
        char *out = NULL;
        int code = tu_run(cmd, &out);
        int ok = code == cases[i].code && (!cases[i].says || strstr(out, cases[i].says));
        CHECK_MSG(ok, "tc-quantize %s: exit %d, '%s'", args, code, out);
        free(out);
    }
    tc_error err = {{0}};
    tc_model m;
    char path[1200];
    snprintf(path, sizeof path, "%s/t-i2s.gguf", tmp);
    if (tc_model_open(&m, path, &err) == TC_OK) {
        CHECK(m.layers[0].w[TC_WQ]->dtype == TC_I2_S && m.cfg.t.act == TC_ACT_RELU2);
        tc_model_close(&m);
    } else {
        CHECK_OK(TC_ERR, &err);
    }
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s/t.gguf' --layers attn:2 -o '%s/p.gguf' 2>&1", bin, tmp, tmp);
    char *out = NULL;
    int code = tu_run(cmd, &out);
    CHECK_MSG(code == 1 && strstr(out, "llama models only"), "tc-prune, attention of GGUF bitnet: exit %d, '%s'", code,
              out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s/t.gguf' --layers block:2 --type q8_0 -o '%s/p.gguf' 2>&1", bin, tmp,
             tmp);
    code = tu_run(cmd, &out);
    CHECK_MSG(code == 1 && strstr(out, "would requantize"), "tc-prune --type of GGUF bitnet: exit %d, '%s'", code, out);
    free(out);
    /* Heads are cut from float tensors: refused for packed codes, before anything is written. */
    snprintf(path, sizeof path, "%s/cal.jsonl", tmp);
    FILE *cal = fopen(path, "w");
    CHECK(cal != NULL);
    if (cal) {
        fputs("[1, 410, 417, 30, 61, 99, 7, 12, 200, 301, 5, 44, 90, 12, 13, 14]\n", cal);
        fclose(cal);
    }
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s/t.gguf' --calib-tokens '%s' --drop-heads 1 --head-samples 1 -o '%s/h.gguf' 2>&1",
             bin, tmp, path, tmp);
    code = tu_run(cmd, &out);
    snprintf(path, sizeof path, "%s/h.gguf", tmp);
    CHECK_MSG(code == 1 && strstr(out, "dropping heads of a ternary-trained") && access(path, F_OK) != 0,
              "tc-prune --drop-heads of GGUF bitnet: exit %d, '%s'", code, out);
    free(out);
    printf("tools: tc-quantize conversions and refusals, tc-prune's GGUF bitnet limits checked\n");
}

int main(void)
{
    (void)llamacpp_greedy; /* BOS only: llamacpp_run gives the prompt too */
    setvbuf(stdout, NULL, _IOLBF, 0);
    char dir[1024];
    if (!tu_asset(dir, sizeof dir, "models/bitnet12"))
        return tu_skip("models/bitnet12 is not in the assets");
    if (!tu_tmpdir(g_tmp, sizeof g_tmp))
        return tu_skip("no scratch directory");
    cJSON *refs = references(dir);
    CHECK_MSG(refs != NULL, "%s/references.json: unreadable", dir);
    size_t n = 0;
    int32_t *ids = refs ? json_ids(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(refs, "windows"), 0), &n) : NULL;
    if (n > (size_t)N_TOKENS)
        n = N_TOKENS;
    hf_round_trip("bitnet12", 1);
    hf_round_trip("deep16-1.58", 1);
    hf_round_trip("bitnet12-bf16", 0);
    if (ids) {
        gguf_exports(dir, ids, n);
        analysis(dir, refs);
        prune_case(dir, "bitnet12-pruned-hf", TC_FORMAT_HF, ids, n, 0);
        prune_case(dir, "bitnet12-pruned.gguf", TC_FORMAT_GGUF, ids, n, 1);
        char bf[1024];
        if (tu_asset(bf, sizeof bf, "models/bitnet12-bf16"))
            prune_case(bf, "bitnet12-bf16-pruned-hf", TC_FORMAT_HF, ids, n, 0);
        llamacpp_case(dir, refs);
    }
    tools(dir);
    free(ids);
    cJSON_Delete(refs);
    char rm[1100];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_tmp);
    CHECK(system(rm) == 0);
    printf("%d checks, %d failures\n", tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}
