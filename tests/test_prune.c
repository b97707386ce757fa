/* Pruning: plan selection on hand-made analyses, explicit lists, costs, and
 * pruned checkpoints in every format re-opened and run against the original
 * with the same modules skipped. */
#include <stdint.h>

#include "testutil.h"
#include "tc/analyze.h"
#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/prune.h"
#include "tc/synth.h"

/* ---- Hand-made analyses -------------------------------------------------------- */

#define NL 6

/* cos per layer for attn, mlp, block; dnll and kl derived from them so each
 * criterion has its own order. */
static void make_analysis(tc_analysis *a, const double cos[NL][3], int measured)
{
    memset(a, 0, sizeof *a);
    a->n_layers = NL;
    a->layers = calloc(NL, sizeof *a->layers);
    for (int l = 0; l < NL; l++) {
        for (int k = 0; k < TC_N_MODULES; k++) {
            tc_module_stats *s = &a->layers[l].mod[k];
            s->present = 1;
            s->cos_mean = cos[l][k];
            s->measured = measured;
            s->dnll = 1.0 - cos[l][k];         /* same order as cos */
            s->kl = (double)((l * 7 + k) % 5); /* an order of its own */
        }
    }
}

static const double COS[NL][3] = {
    /* attn  mlp   block */
    {0.10, 0.20, 0.05},
    {0.95, 0.30, 0.40},
    {0.90, 0.85, 0.80},
    {0.50, 0.97, 0.60},
    {0.99, 0.40, 0.70},
    {0.60, 0.96, 0.90},
};

static int dropped(const tc_prune_plan *p, tc_module k, int l)
{
    return p->drop[k][l];
}

static void test_criteria(void)
{
    tc_error err = {{0}};
    tc_analysis a;
    make_analysis(&a, COS, 1);
    tc_prune_plan p;

    /* cos: the highest cosines go. */
    tc_prune_opts o = {.criterion = TC_CRIT_COS, .drop_attn = 2, .drop_mlp = 1, .drop_blocks = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_BLOCK, 5));                          /* block cos 0.90 */
    CHECK(dropped(&p, TC_MOD_ATTN, 4) && dropped(&p, TC_MOD_ATTN, 1)); /* 0.99, 0.95 */
    CHECK(dropped(&p, TC_MOD_MLP, 3));                            /* 0.97 (layer 5 went as a block) */
    CHECK(tc_prune_plan_count(&p, TC_MOD_ATTN) == 2 && tc_prune_plan_count(&p, TC_MOD_MLP) == 1 &&
          tc_prune_plan_count(&p, TC_MOD_BLOCK) == 1);
    tc_prune_plan_free(&p);

    /* dnll: the smallest increase goes (here the same order as cos). */
    o = (tc_prune_opts){.criterion = TC_CRIT_DNLL, .drop_attn = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 4) && tc_prune_plan_count(&p, TC_MOD_ATTN) == 1);
    tc_prune_plan_free(&p);

    /* kl: attn kl = (7l) % 5 -> 0,2,4,1,3,0: layers 0 and 5 tie at 0, the deeper goes first. */
    o = (tc_prune_opts){.criterion = TC_CRIT_KL, .drop_attn = 2};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 5) && dropped(&p, TC_MOD_ATTN, 0));
    tc_prune_plan_free(&p);

    /* joint: attention and MLP in one ranking by cos: 0.99 attn4, 0.97 mlp3, 0.96 mlp5. */
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .joint = 3};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 4) && dropped(&p, TC_MOD_MLP, 3) && dropped(&p, TC_MOD_MLP, 5));
    CHECK(tc_prune_plan_count(&p, TC_MOD_ATTN) + tc_prune_plan_count(&p, TC_MOD_MLP) == 3);
    tc_prune_plan_free(&p);

    /* keep-first / keep-last: layers 0 and 4..5 are protected. */
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .drop_attn = 2, .keep_first = 1, .keep_last = 2};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 1) && dropped(&p, TC_MOD_ATTN, 2) && !dropped(&p, TC_MOD_ATTN, 4));
    tc_prune_plan_free(&p);

    /* Too many asked for once protected layers are out. */
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .drop_mlp = 4, .keep_first = 1, .keep_last = 2};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK(tc_prune_select(&p, &a, NULL, &o, &err) == TC_ERR && strstr(err.msg, "only 3 can go"));
    tc_prune_plan_free(&p);

    /* Absent modules are never chosen. */
    a.layers[4].mod[TC_MOD_ATTN].present = 0;
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .drop_attn = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(!dropped(&p, TC_MOD_ATTN, 4) && dropped(&p, TC_MOD_ATTN, 1));
    tc_prune_plan_free(&p);

    /* Explicit drops come first and are not chosen again; a protected one is refused. */
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .drop_attn = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, "attn:1", "--layers", &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 1) && dropped(&p, TC_MOD_ATTN, 2) && tc_prune_plan_count(&p, TC_MOD_ATTN) == 2);
    tc_prune_plan_free(&p);
    o = (tc_prune_opts){.criterion = TC_CRIT_COS, .keep_first = 2};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, "mlp:1", "--layers", &err), &err);
    CHECK(tc_prune_select(&p, &a, NULL, &o, &err) == TC_ERR && strstr(err.msg, "mlp:1"));
    tc_prune_plan_free(&p);

    /* Measured criteria need measured figures. */
    tc_analysis_free(&a);
    make_analysis(&a, COS, 0);
    o = (tc_prune_opts){.criterion = TC_CRIT_KL, .drop_mlp = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK(tc_prune_select(&p, &a, NULL, &o, &err) == TC_ERR && strstr(err.msg, "did not measure kl"));
    tc_prune_plan_free(&p);
    /* A count without any analysis. */
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK(tc_prune_select(&p, NULL, NULL, &o, &err) == TC_ERR && strstr(err.msg, "needs an analysis"));
    tc_prune_plan_free(&p);
    tc_analysis_free(&a);

    tc_prune_criterion c;
    CHECK(tc_prune_criterion_parse("dnll", &c) == TC_OK && c == TC_CRIT_DNLL);
    CHECK(tc_prune_criterion_parse("ppl", &c) == TC_ERR);
}

static void test_lists(void)
{
    tc_error err = {{0}};
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, "attn:3,attn:4, mlp:2,block:1,mlp:4-5", "--layers", &err), &err);
    CHECK(p.drop[TC_MOD_ATTN][3] && p.drop[TC_MOD_ATTN][4] && p.drop[TC_MOD_MLP][2] && p.drop[TC_MOD_BLOCK][1]);
    CHECK(p.drop[TC_MOD_MLP][4] && p.drop[TC_MOD_MLP][5] && !p.drop[TC_MOD_MLP][3]);
    CHECK(tc_prune_plan_count(&p, TC_MOD_ATTN) == 2 && tc_prune_plan_count(&p, TC_MOD_MLP) == 3);
    tc_skip sk[NL];
    tc_prune_skip_mask(&p, sk);
    CHECK(sk[1].attn && sk[1].mlp && sk[3].attn && !sk[3].mlp && sk[2].mlp && !sk[0].attn);
    tc_prune_plan_free(&p);

    static const struct {
        const char *list, *needle;
    } bad[] = {
        {"", "empty"},
        {"attn3", "'attn3' is not KIND:LAYER"},
        {"head:1", "names no module kind"},
        {"attn:", "needs a layer index"},
        {"attn:x", "needs a layer index"},
        {"attn:-1", "needs a layer index"},
        {"attn:1x", "needs a layer index"},
        {"attn:6", "beyond the model's 6 layers"},
        {"mlp:2-9", "beyond"},
        {"mlp:3-1", "empty range"},
        {"attn:1,,mlp:2", "empty item"},
        {"attn:1,", "empty item"},
        {"attn:1,attn:1", "listed twice"},
        {"attn:99999999999999", "needs a layer index"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
        int rc = tc_prune_parse_list(&p, bad[i].list, "--layers", &err);
        CHECK_MSG(rc == TC_ERR && strstr(err.msg, bad[i].needle) && strncmp(err.msg, "--layers", 8) == 0,
                  "'%s' gave '%s'", bad[i].list, rc ? err.msg : "success");
        tc_prune_plan_free(&p);
    }
}

/* A measurer whose figures depend on the plan: once attention 4 is gone,
 * attention 1 becomes essential (cos 0), so iterative selection takes
 * attention 2 second where one-shot selection takes attention 1. */
typedef struct fake_ctx {
    int calls;
} fake_ctx;

static int fake_measure(void *ctx, const tc_prune_plan *p, tc_analysis *out, tc_error *err)
{
    (void)err;
    fake_ctx *f = ctx;
    f->calls++;
    make_analysis(out, COS, 1);
    if (p->drop[TC_MOD_ATTN][4])
        out->layers[1].mod[TC_MOD_ATTN].cos_mean = 0.0;
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < TC_N_MODULES; k++)
            if (p->drop[k][l])
                out->layers[l].mod[k].present = 0;
    return TC_OK;
}

static int failing_measure(void *ctx, const tc_prune_plan *p, tc_analysis *out, tc_error *err)
{
    (void)ctx, (void)p, (void)out;
    return tc_err(err, "calib.txt: measurement failed");
}

static void test_iterative(void)
{
    tc_error err = {{0}};
    tc_prune_plan p;
    fake_ctx f = {0};
    tc_prune_opts o = {.criterion = TC_CRIT_COS, .drop_attn = 2, .drop_mlp = 1};
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select_iterative(&p, NULL, &o, fake_measure, &f, &err), &err);
    CHECK(f.calls == 3);
    CHECK(dropped(&p, TC_MOD_ATTN, 4) && dropped(&p, TC_MOD_ATTN, 2) && !dropped(&p, TC_MOD_ATTN, 1));
    CHECK(dropped(&p, TC_MOD_MLP, 3) && tc_prune_plan_count(&p, TC_MOD_MLP) == 1);
    tc_prune_plan_free(&p);

    /* One-shot selection on the unpruned figures takes attention 1. */
    tc_analysis a;
    make_analysis(&a, COS, 1);
    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK_OK(tc_prune_select(&p, &a, NULL, &o, &err), &err);
    CHECK(dropped(&p, TC_MOD_ATTN, 4) && dropped(&p, TC_MOD_ATTN, 1));
    tc_prune_plan_free(&p);
    tc_analysis_free(&a);

    CHECK_OK(tc_prune_plan_init(&p, NL, &err), &err);
    CHECK(tc_prune_select_iterative(&p, NULL, &o, failing_measure, NULL, &err) == TC_ERR &&
          strstr(err.msg, "calib.txt"));
    tc_prune_plan_free(&p);
}

/* ---- Checkpoints ------------------------------------------------------------------- */

static tc_synth_spec spec(void)
{
    tc_synth_spec s = {.cfg = tc_synth_config(4, 32, 4, 2, 48, 61), .seed = 11};
    return s;
}

/* Logits of a fixed batch, [n_tokens][vocab]. */
typedef struct logit_rec {
    float *v;
    int vocab;
} logit_rec;

static int on_logits(void *ctx, const float *lg, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    logit_rec *r = ctx;
    memcpy(r->v + tok0 * (size_t)vocab, lg, n * (size_t)vocab * sizeof *lg);
    return TC_OK;
}

static const int32_t TOKS[] = {1, 5, 9, 33, 2, 17, 60, 4, 1, 44, 12, 3, 7, 30};
static const size_t OFFS[] = {0, 9, 14};
#define NTOK 14

static float *logits_of(const tc_model *m, const tc_skip *skip)
{
    tc_error err = {{0}};
    logit_rec r = {calloc((size_t)NTOK * (size_t)m->cfg.vocab_size, sizeof(float)), m->cfg.vocab_size};
    tc_observer ob = {.ctx = &r, .logits = on_logits};
    tc_batch b = {TOKS, OFFS, 2};
    tc_forward_opts fo = {.n_threads = 1, .skip = skip, .observers = &ob, .n_observers = 1};
    CHECK_OK(tc_forward(m, &b, &fo, &err), &err);
    return r.v;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double w = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > w)
            w = fabs((double)a[i] - b[i]);
    return w;
}

/* Every stored value of src layer ls equals that of dst layer ld. */
static int layer_equal(const tc_model *src, int ls, const tc_model *dst, int ld)
{
    tc_error err = {{0}};
    tc_layer_f32 a, b;
    if (tc_model_load_layer(src, ls, &a, &err) || tc_model_load_layer(dst, ld, &b, &err))
        return 0;
    int eq = 1;
    for (int r = 0; r < TC_N_ROLES; r++) {
        if (!b.w[r])
            continue;
        if (!a.w[r] || src->layers[ls].w[r]->n_elements != dst->layers[ld].w[r]->n_elements ||
            memcmp(a.w[r], b.w[r], dst->layers[ld].w[r]->n_elements * sizeof(float)) != 0)
            eq = 0;
    }
    tc_layer_f32_free(&a);
    tc_layer_f32_free(&b);
    return eq;
}

static const char *ext(tc_format f)
{
    return f == TC_FORMAT_HF ? "hf" : f == TC_FORMAT_GGUF ? "gguf" : "bin";
}

/* Prunes the model at `in` by `list`, re-opens it, and checks layer count,
 * flags, absent tensors, exact weights and logits against the original run
 * with the same modules skipped. */
static void check_pruned(const char *dir, const char *in, tc_format fmt, const char *list, int n_left,
                         const char *absent_name)
{
    tc_error err = {{0}};
    tc_model m, q;
    char out[512];
    snprintf(out, sizeof out, "%s/pruned-%s-%s", dir, list, ext(fmt));
    for (char *c = out + strlen(dir); *c; c++)
        if (*c == ':' || *c == ',')
            *c = '_';
    CHECK_OK(tc_model_open(&m, in, &err), &err);
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, m.cfg.n_layers, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, list, "--layers", &err), &err);
    CHECK_OK(tc_prune_write(&m, &p, out, fmt, &err), &err);
    if (tc_model_open(&q, out, &err)) {
        CHECK_MSG(0, "%s: %s", out, err.msg);
        tc_prune_plan_free(&p);
        tc_model_close(&m);
        return;
    }
    CHECK_MSG(q.cfg.n_layers == n_left, "%s: %d layers", out, q.cfg.n_layers);
    CHECK(q.format == fmt);
    int j = 0;
    for (int l = 0; l < m.cfg.n_layers && j < q.cfg.n_layers; l++) {
        int ka = tc_prune_keeps(&p, &m, l, TC_MOD_ATTN), km = tc_prune_keeps(&p, &m, l, TC_MOD_MLP);
        if (!ka && !km)
            continue;
        CHECK_MSG(q.layers[j].has_attn == ka && q.layers[j].has_mlp == km, "%s layer %d", out, j);
        /* (another format may store Q/K rows in another RoPE order) */
        if (q.format == m.format)
            CHECK_MSG(layer_equal(&m, l, &q, j), "%s: layer %d differs from the input's layer %d", out, j, l);
        j++;
    }
    if (absent_name)
        CHECK_MSG(!tc_tensordir_find(q.dir, absent_name), "%s still holds %s", out, absent_name);
    /* Logits: the pruned file equals the original with those modules skipped. */
    tc_skip *sk = calloc((size_t)m.cfg.n_layers, sizeof *sk);
    tc_prune_skip_mask(&p, sk);
    float *want = logits_of(&m, sk), *got = logits_of(&q, NULL), *full = logits_of(&m, NULL);
    size_t cells = (size_t)NTOK * (size_t)m.cfg.vocab_size;
    CHECK_MSG(max_diff(want, got, cells) < 1e-5, "%s: logits differ by %g", out, max_diff(want, got, cells));
    CHECK(max_diff(full, got, cells) > 1e-4); /* the drop did change something */
    /* The same through the evaluator: against the skipped original nothing
     * differs; against the full original something does. */
    tc_prune_eval ev;
    CHECK_OK(tc_prune_evaluate(&m, sk, &q, NULL, TOKS, OFFS, 2, 1, &ev, &err), &err);
    CHECK(ev.n_predicted == NTOK - 2 && ev.kl < 1e-9 && ev.top1 == 1.0 && fabs(ev.nll - ev.nll_ref) < 1e-6);
    CHECK_OK(tc_prune_evaluate(&m, NULL, &q, NULL, TOKS, OFFS, 2, 1, &ev, &err), &err);
    CHECK(ev.kl > 0 && ev.ppl > 0 && ev.ppl_ref > 0);
    free(want), free(got), free(full), free(sk);
    tc_model_close(&q);
    tc_prune_plan_free(&p);
    tc_model_close(&m);
}

static void test_writers(const char *dir)
{
    tc_error err = {{0}};
    tc_synth_spec s = spec();
    static const tc_format fmts[] = {TC_FORMAT_GGUF, TC_FORMAT_HF, TC_FORMAT_LLAMA2C};
    for (size_t i = 0; i < 3; i++) {
        char in[512];
        snprintf(in, sizeof in, "%s/synth.%s", dir, ext(fmts[i]));
        CHECK_OK(tc_synth_write(in, fmts[i], TC_F32, &s, &err), &err);
        check_pruned(dir, in, fmts[i], "block:1", 3, NULL);
        check_pruned(dir, in, fmts[i], "block:0,block:3", 2, NULL);
        /* attention and MLP of one layer: the layer goes as a whole */
        check_pruned(dir, in, fmts[i], "attn:2,mlp:2", 3, NULL);
        if (fmts[i] == TC_FORMAT_LLAMA2C) {
            tc_model m;
            tc_prune_plan p;
            char out[512];
            snprintf(out, sizeof out, "%s/bad.bin", dir);
            CHECK_OK(tc_model_open(&m, in, &err), &err);
            CHECK_OK(tc_prune_plan_init(&p, 4, &err), &err);
            p.drop[TC_MOD_ATTN][1] = 1;
            CHECK(tc_prune_write(&m, &p, out, TC_FORMAT_LLAMA2C, &err) == TC_ERR &&
                  strstr(err.msg, "llama2.c") && strstr(err.msg, out));
            CHECK(access(out, F_OK) != 0);
            tc_prune_plan_free(&p);
            tc_model_close(&m);
            continue;
        }
        const int hf = fmts[i] == TC_FORMAT_HF;
        check_pruned(dir, in, fmts[i], "attn:1", 4, hf ? "model.layers.1.self_attn.q_proj.weight" : "blk.1.attn_q.weight");
        check_pruned(dir, in, fmts[i], "attn:0,attn:3", 4, hf ? "model.layers.0.input_layernorm.weight" : "blk.0.attn_q.weight");
        check_pruned(dir, in, fmts[i], "mlp:2", 4, hf ? "model.layers.2.mlp.down_proj.weight" : NULL);
        check_pruned(dir, in, fmts[i], "mlp:0,attn:2,block:3", 3, hf ? "model.layers.0.post_attention_layernorm.weight" : "blk.2.attn_q.weight");
    }

    /* Half precision stays half precision, value for value. */
    char f16[512];
    if (tu_asset(f16, sizeof f16, "models/stories260K-hf-f16-sharded")) {
        check_pruned(dir, f16, TC_FORMAT_HF, "block:1,attn:3", 4, "model.layers.2.self_attn.o_proj.weight");
        char o16[600];
        snprintf(o16, sizeof o16, "%s/pruned-block_1_attn_3-hf", dir);
        tc_model h16;
        if (tc_model_open(&h16, o16, &err) == TC_OK) {
            CHECK(h16.layers[0].w[TC_WQ]->dtype == TC_F16 && h16.tok_embd->dtype == TC_F16);
            tc_model_close(&h16);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
        /* The tokenizer and generation config come along, byte for byte. */
        const char *side[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
        for (int k = 0; k < 3; k++) {
            char pa[800], pb[800];
            snprintf(pa, sizeof pa, "%s/%s", f16, side[k]);
            snprintf(pb, sizeof pb, "%s/%s", o16, side[k]);
            size_t na = 0, nb = 0;
            uint8_t *ba = tu_read_file(pa, &na), *bb = tu_read_file(pb, &nb);
            CHECK_MSG(ba && bb && na == nb && memcmp(ba, bb, na) == 0, "%s was not carried into the pruned model",
                      side[k]);
            free(ba);
            free(bb);
        }
    }

    /* A GGUF source's general.* and tokenizer keys come along. */
    char g260[512];
    if (tu_asset(g260, sizeof g260, "models/stories260K/stories260K.gguf")) {
        tc_model gm;
        tc_prune_plan gp;
        char go[600];
        snprintf(go, sizeof go, "%s/carried.gguf", dir);
        CHECK_OK(tc_model_open(&gm, g260, &err), &err);
        CHECK_OK(tc_prune_plan_init(&gp, gm.cfg.n_layers, &err), &err);
        gp.drop[TC_MOD_BLOCK][1] = 1;
        CHECK_OK(tc_prune_write(&gm, &gp, go, TC_FORMAT_GGUF, &err), &err);
        tc_prune_plan_free(&gp);
        tc_model_close(&gm);
        tc_gguf a, b;
        if (tc_gguf_open(&a, g260, &err) == TC_OK && tc_gguf_open(&b, go, &err) == TC_OK) {
            char *na = NULL, *nb = NULL;
            CHECK(tc_gguf_get_str(&a, "general.name", &na, &err) == TC_OK &&
                  tc_gguf_get_str(&b, "general.name", &nb, &err) == TC_OK && strcmp(na, nb) == 0);
            free(na);
            free(nb);
            size_t n_tok = 0;
            for (uint64_t i = 0; i < a.n_kv; i++)
                if (a.kvs[i].key.len > 10 && memcmp(a.kvs[i].key.ptr, "tokenizer.", 10) == 0) {
                    char key[128];
                    snprintf(key, sizeof key, "%.*s", (int)a.kvs[i].key.len, a.kvs[i].key.ptr);
                    n_tok += tc_gguf_find(&b, key) != NULL;
                    CHECK_MSG(tc_gguf_find(&b, key) != NULL, "%s was not carried", key);
                }
            CHECK(n_tok >= 4);
            tc_gguf_close(&a);
            tc_gguf_close(&b);
        } else {
            CHECK_MSG(0, "%s", err.msg);
        }
    }

    /* q/k/v biases (qwen2) cannot go into llama.cpp's deci graph. */
    {
        tc_synth_spec qs = spec();
        qs.cfg.arch = TC_ARCH_QWEN2;
        qs.cfg.qkv_bias = 1;
        tc_model qm;
        tc_prune_plan qp;
        char qo[600];
        snprintf(qo, sizeof qo, "%s/qwen.gguf", dir);
        CHECK_OK(tc_synth_model(&qm, &qs, &err), &err);
        CHECK_OK(tc_prune_plan_init(&qp, 4, &err), &err);
        qp.drop[TC_MOD_MLP][1] = 1;
        CHECK(tc_prune_write(&qm, &qp, qo, TC_FORMAT_GGUF, &err) == TC_ERR && strstr(err.msg, "biases"));
        qp.drop[TC_MOD_MLP][1] = 0;
        qp.drop[TC_MOD_BLOCK][1] = 1;
        CHECK_OK(tc_prune_write(&qm, &qp, qo, TC_FORMAT_GGUF, &err), &err);
        tc_prune_plan_free(&qp);
        tc_model_close(&qm);
    }

    /* HF config lists and the GGUF `deci` arrays. */
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/synth.gguf", dir);
    tc_model m;
    tc_prune_plan p;
    CHECK_OK(tc_model_open(&m, in, &err), &err);
    CHECK_OK(tc_prune_plan_init(&p, 4, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, "attn:1,mlp:2,mlp:3", "--layers", &err), &err);
    snprintf(out, sizeof out, "%s/lists-hf", dir);
    CHECK_OK(tc_prune_write(&m, &p, out, TC_FORMAT_HF, &err), &err);
    tc_hfdir h;
    if (tc_hfdir_open(&h, out, &err) == TC_OK) {
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(h.config, "drop_attn_list"));
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(h.config, "drop_mlp_list"));
        CHECK(a && strcmp(a, "[1]") == 0);
        CHECK(b && strcmp(b, "[2,3]") == 0);
        free(a), free(b);
        tc_hfdir_close(&h);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    snprintf(out, sizeof out, "%s/lists.gguf", dir);
    CHECK_OK(tc_prune_write(&m, &p, out, TC_FORMAT_GGUF, &err), &err);
    tc_gguf g;
    if (tc_gguf_open(&g, out, &err) == TC_OK) {
        char *arch = NULL;
        CHECK(tc_gguf_get_str(&g, "general.architecture", &arch, &err) == TC_OK && arch && strcmp(arch, "deci") == 0);
        free(arch);
        const tc_gguf_value *hc = tc_gguf_find(&g, "deci.attention.head_count");
        const tc_gguf_value *kv = tc_gguf_find(&g, "deci.attention.head_count_kv");
        const tc_gguf_value *ff = tc_gguf_find(&g, "deci.feed_forward_length");
        CHECK(hc && kv && ff && hc->type == TC_GGUF_ARRAY && ff->v.arr.n == 4);
        if (hc && kv && ff && hc->type == TC_GGUF_ARRAY && kv->type == TC_GGUF_ARRAY && ff->type == TC_GGUF_ARRAY) {
            CHECK(hc->v.arr.items[0].v.u == 4 && hc->v.arr.items[1].v.u == 0 && kv->v.arr.items[1].v.u == 0 &&
                  kv->v.arr.items[2].v.u == 2);
            /* a dropped MLP is a width-1 stand-in with a zero down projection */
            CHECK(ff->v.arr.items[1].v.u == 48 && ff->v.arr.items[2].v.u == 1 && ff->v.arr.items[3].v.u == 1);
        }
        CHECK(!tc_tensordir_find(&g.dir, "blk.1.attn_norm.weight") && !tc_tensordir_find(&g.dir, "blk.1.attn_k.weight"));
        const tc_tensor *down = tc_tensordir_find(&g.dir, "blk.2.ffn_down.weight");
        CHECK(down && down->n_elements == 32);
        tc_gguf_close(&g);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    /* The MLP stand-in is recognised only with a zero down projection: any
     * other width-1 MLP is a layer of its own width, which tc refuses. */
    {
        uint64_t off = 0;
        if (tc_gguf_open(&g, out, &err) == TC_OK) {
            const tc_tensor *down = tc_tensordir_find(&g.dir, "blk.2.ffn_down.weight");
            if (down)
                off = (uint64_t)(down->data - g.dir.maps[0].data) + 4 * 5;
            tc_gguf_close(&g);
        }
        char bad[600];
        snprintf(bad, sizeof bad, "%s/stand-in-nonzero.gguf", dir);
        FILE *src = fopen(out, "rb"), *dst = fopen(bad, "wb");
        int ch;
        uint64_t at = 0;
        while (src && dst && (ch = fgetc(src)) != EOF) {
            if (at >= off && at < off + 4) /* 1.0f, little-endian */
                ch = (int)((0x3f800000u >> (8 * (at - off))) & 0xff);
            fputc(ch, dst);
            at++;
        }
        if (src)
            fclose(src);
        if (dst)
            fclose(dst);
        tc_model bm;
        CHECK(off > 0);
        CHECK(tc_model_open(&bm, bad, &err) == TC_ERR && strstr(err.msg, "layer 2 has its own") &&
              strstr(err.msg, bad));
    }
    /* A pruned file pruned again keeps what the first pass removed. */
    tc_model q;
    CHECK_OK(tc_model_open(&q, out, &err), &err);
    tc_prune_plan p2;
    CHECK_OK(tc_prune_plan_init(&p2, 4, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p2, "block:0", "--layers", &err), &err);
    tc_prune_opts none = {0};
    CHECK(tc_prune_select(&p2, NULL, &q, &none, &err) == TC_OK);
    tc_prune_plan_free(&p2);
    CHECK_OK(tc_prune_plan_init(&p2, 4, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p2, "mlp:2", "--layers", &err), &err);
    CHECK(tc_prune_select(&p2, NULL, &q, &none, &err) == TC_ERR && strstr(err.msg, "no such sub-layer"));
    tc_prune_plan_free(&p2);
    tc_model_close(&q);
    check_pruned(dir, out, TC_FORMAT_GGUF, "block:0", 3, NULL);
    check_pruned(dir, out, TC_FORMAT_HF, "attn:3", 3, NULL); /* layer 3 had no MLP left */
    tc_prune_plan_free(&p);
    tc_model_close(&m);
}

/* ---- Costs ------------------------------------------------------------------------- */

static void test_costs(void)
{
    tc_error err = {{0}};
    tc_synth_spec s = spec();
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    const uint64_t dim = 32, q = 4 * 8, kv = 2 * 8, ffn = 48, vocab = 61, L = 4, T = 100;
    const uint64_t attn = 2 * dim * q + 2 * dim * kv, mlp = 3 * dim * ffn;
    tc_prune_cost c0, c1;
    tc_prune_cost_of(&m, NULL, (int)T, 2, &c0);
    CHECK(c0.params == vocab * dim + dim + L * (attn + mlp + 2 * dim));
    CHECK(c0.bytes == 4 * c0.params);
    CHECK(c0.flops_per_token == 2 * (L * (attn + mlp) + vocab * dim) + L * 4 * q * T);
    CHECK(c0.kv_bytes_per_token == L * 2 * kv * 2);
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, 4, &err), &err);
    CHECK_OK(tc_prune_parse_list(&p, "attn:1,mlp:2,block:3", "--layers", &err), &err);
    tc_prune_cost_of(&m, &p, (int)T, 2, &c1);
    CHECK(c0.params - c1.params == (attn + dim) + (mlp + dim) + (attn + mlp + 2 * dim));
    CHECK(c0.bytes - c1.bytes == 4 * (c0.params - c1.params));
    CHECK(c0.flops_per_token - c1.flops_per_token == 2 * (2 * attn + 2 * mlp) + 2 * 4 * q * T);
    CHECK(c1.kv_bytes_per_token == 2 * 2 * kv * 2);
    tc_prune_plan_free(&p);
    tc_model_close(&m);
}

/* ---- Planted redundancy --------------------------------------------------------------- */

/* Windows sampled from the model itself (temperature 1): on its own text,
 * skipping a module costs in expectation its KL divergence, so the measured
 * NLL change ranks modules as the KL does rather than by the noise of
 * random targets. */
static void windows(const tc_model *m, int32_t *tok, size_t *offs, size_t n_seqs, size_t len)
{
    tc_error err = {{0}};
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = (int)len + 1};
    CHECK_OK(tc_decoder_new(&d, m, &o, &err), &err);
    for (size_t s = 0; s < n_seqs; s++) {
        int32_t first = (int32_t)(s * 7 % (size_t)m->cfg.vocab_size);
        tc_generate_opts g = {.temperature = 1.0f, .seed = 100 + s, .stop_token = -1};
        size_t n = 0;
        tok[s * len] = first;
        if (d)
            CHECK_OK(tc_generate(d, &first, 1, len - 1, &g, tok + s * len + 1, &n, &err), &err);
        for (size_t i = 1 + n; i < len; i++)
            tok[s * len + i] = 0;
    }
    tc_decoder_free(d);
    for (size_t s = 0; s <= n_seqs; s++)
        offs[s] = s * len;
}

typedef struct real_measurer {
    const tc_model *m;
    const int32_t *tok;
    const size_t *offs;
    size_t n_seqs;
    int calls;
} real_measurer;

static int real_measure(void *ctx, const tc_prune_plan *p, tc_analysis *out, tc_error *err)
{
    real_measurer *r = ctx;
    tc_skip sk[8];
    tc_prune_skip_mask(p, sk);
    tc_analyze_opts o = {.n_threads = 1, .no_head_stats = 1, .skip = sk};
    r->calls++;
    return tc_analyze(r->m, r->tok, r->offs, r->n_seqs, &o, out, err);
}

/* A model whose attention 1 and MLP 3 are planted near-zero: every criterion,
 * one-shot and iterative, drops exactly those, and the written file computes
 * what the original does with them skipped. */
static void test_planted(const char *dir)
{
    tc_error err = {{0}};
    static const uint8_t weak_attn[5] = {0, 1, 0, 0, 0}, weak_mlp[5] = {0, 0, 0, 1, 0};
    tc_synth_spec s = {.cfg = tc_synth_config(5, 32, 4, 2, 48, 61), .seed = 5, .weak_attn = weak_attn,
                       .weak_mlp = weak_mlp, .weak_scale = 1e-3f};
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    enum { NS = 8, LEN = 32 };
    int32_t tok[NS * LEN];
    size_t offs[NS + 1];
    windows(&m, tok, offs, NS, LEN);
    tc_analysis a;
    tc_analyze_opts ao = {.n_threads = 1, .no_head_stats = 1};
    if (tc_analyze(&m, tok, offs, NS, &ao, &a, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        tc_model_close(&m);
        return;
    }
    for (int c = TC_CRIT_COS; c <= TC_CRIT_KL; c++) {
        tc_prune_plan p;
        tc_prune_opts o = {.criterion = (tc_prune_criterion)c, .drop_attn = 1, .drop_mlp = 1};
        CHECK_OK(tc_prune_plan_init(&p, 5, &err), &err);
        CHECK_OK(tc_prune_select(&p, &a, &m, &o, &err), &err);
        CHECK_MSG(p.drop[TC_MOD_ATTN][1] && p.drop[TC_MOD_MLP][3] && tc_prune_plan_count(&p, TC_MOD_ATTN) == 1 &&
                  tc_prune_plan_count(&p, TC_MOD_MLP) == 1, "criterion %s", tc_prune_criterion_name(c));
        tc_prune_plan_free(&p);
        /* joint: the two planted modules rank first */
        o = (tc_prune_opts){.criterion = (tc_prune_criterion)c, .joint = 2};
        CHECK_OK(tc_prune_plan_init(&p, 5, &err), &err);
        CHECK_OK(tc_prune_select(&p, &a, &m, &o, &err), &err);
        CHECK_MSG(p.drop[TC_MOD_ATTN][1] && p.drop[TC_MOD_MLP][3], "joint, criterion %s",
                  tc_prune_criterion_name(c));
        tc_prune_plan_free(&p);
    }
    tc_analysis_free(&a);

    real_measurer r = {&m, tok, offs, NS, 0};
    tc_prune_plan p;
    tc_prune_opts o = {.criterion = TC_CRIT_KL, .drop_attn = 1, .drop_mlp = 1};
    CHECK_OK(tc_prune_plan_init(&p, 5, &err), &err);
    CHECK_OK(tc_prune_select_iterative(&p, &m, &o, real_measure, &r, &err), &err);
    CHECK(r.calls == 2 && p.drop[TC_MOD_ATTN][1] && p.drop[TC_MOD_MLP][3]);
    /* The planted modules removed from a GGUF: only they are gone. */
    char in[512];
    snprintf(in, sizeof in, "%s/planted.gguf", dir);
    CHECK_OK(tc_synth_write(in, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    tc_prune_plan_free(&p);
    tc_model_close(&m);
    check_pruned(dir, in, TC_FORMAT_GGUF, "attn:1,mlp:3", 5, "blk.1.attn_q.weight");
}

int main(void)
{
    char dir[256];
    test_criteria();
    test_lists();
    test_iterative();
    test_costs();
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    test_writers(dir);
    test_planted(dir);
    return tu_finish("test_prune");
}
