/* Dropping attention heads: what each layer keeps (groups split where they
 * keep different counts), the choice by measured importance, the costs, and
 * the checkpoints written: GGUF deci with per-layer head counts and Hugging
 * Face with one count, each read back by tc computing what the model with
 * those heads masked computes; what a format cannot hold is refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tc/analyze.h"
#include "tc/forward.h"
#include "tc/prune.h"
#include "tc/synth.h"

#define L 4
#define NH 8
#define NKV 4
#define NS 6
#define SEQ 24

static tc_synth_spec spec(void)
{
    tc_synth_spec s;
    memset(&s, 0, sizeof s);
    s.cfg = tc_synth_config(L, 64, NH, NKV, 96, 64);
    s.seed = 5;
    return s;
}

static void tokens_of(int32_t *tok, size_t *off)
{
    uint64_t x = 9;
    off[0] = 0;
    for (int s = 0; s < NS; s++) {
        off[s + 1] = off[s] + SEQ;
        for (int t = 0; t < SEQ; t++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tok[off[s] + t] = (int32_t)((x >> 33) % 64);
        }
    }
}

typedef struct logits_rec {
    float *v;
} logits_rec;

static int rec_logits(void *ctx, const float *lg, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    logits_rec *r = ctx;
    memcpy(r->v + tok0 * (size_t)vocab, lg, n * (size_t)vocab * sizeof *lg);
    return TC_OK;
}

/* Logits of every token under the plan applied virtually (skips, masks) or not at all. */
static float *logits_of(const tc_model *m, const tc_prune_plan *p, const int32_t *tok, const size_t *off)
{
    size_t n = off[NS];
    float *v = calloc(n * (size_t)m->cfg.vocab_size, sizeof *v);
    logits_rec r = {v};
    tc_observer ob = {.ctx = &r, .logits = rec_logits};
    tc_skip skip[L];
    tc_batch b = {tok, off, NS};
    tc_forward_opts fo = {.n_threads = 2, .observers = &ob, .n_observers = 1};
    if (p) {
        tc_prune_skip_mask(p, skip);
        fo.skip = skip;
        fo.head_mask = p->drop_heads;
    }
    tc_error err = {{0}};
    CHECK_OK(tc_forward(m, &b, &fo, &err), &err);
    return v;
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? d / mx : d;
}

static void test_layout(void)
{
    tc_config c = spec().cfg;
    int q[NH], kv[NH];
    tc_head_layout hl;
    /* Nothing dropped: every head, the groups as they are. */
    tc_prune_head_layout(&c, NULL, q, kv, &hl);
    CHECK(hl.n_q == NH && hl.n_kv == NKV && q[5] == 5 && kv[3] == 3);
    /* A whole group (heads 2, 3 of kv head 1) goes with its kv head. */
    uint8_t d1[NH] = {0, 0, 1, 1, 0, 0, 0, 0};
    tc_prune_head_layout(&c, d1, q, kv, &hl);
    CHECK(hl.n_q == 6 && hl.n_kv == 3 && q[2] == 4 && kv[0] == 0 && kv[1] == 2 && kv[2] == 3);
    /* One head of a group: every group split into groups of one, kv heads copied. */
    uint8_t d2[NH] = {1, 0, 0, 0, 0, 0, 0, 0};
    tc_prune_head_layout(&c, d2, q, kv, &hl);
    CHECK(hl.n_q == 7 && hl.n_kv == 7 && q[0] == 1 && kv[0] == 0 && kv[1] == 1 && kv[2] == 1 && kv[6] == 3);
    /* The same head of every group: groups of one, one kv head each. */
    uint8_t d3[NH] = {0, 1, 0, 1, 0, 1, 0, 1};
    tc_prune_head_layout(&c, d3, q, kv, &hl);
    CHECK(hl.n_q == 4 && hl.n_kv == 4 && q[3] == 6 && kv[3] == 3);
    uint8_t d4[NH] = {1, 1, 1, 1, 1, 1, 1, 1};
    tc_prune_head_layout(&c, d4, q, kv, &hl);
    CHECK(hl.n_q == 0 && hl.n_kv == 0);
}

/* A written checkpoint, read back, computes the masked model's logits. */
static void check_written(const tc_model *m, const tc_prune_plan *p, const char *out, tc_format fmt,
                          const int32_t *tok, const size_t *off, const char *what)
{
    tc_error err = {{0}};
    CHECK_OK(tc_prune_write(m, p, out, fmt, &err), &err);
    tc_model back;
    if (tc_model_open(&back, out, &err)) {
        CHECK_MSG(0, "%s: %s", what, err.msg);
        return;
    }
    float *want = logits_of(m, p, tok, off), *got = logits_of(&back, NULL, tok, off);
    double d = rel_diff(got, want, off[NS] * (size_t)m->cfg.vocab_size);
    printf("%s: read back, max |logit difference| / max |logit| = %.3g\n", what, d);
    CHECK_MSG(d < 1e-5, "%s: the checkpoint read back differs from the masked model by %g", what, d);
    /* What was stored is what the plan's costs count. */
    tc_prune_cost c;
    tc_prune_cost_of(m, p, 64, 2, &c);
    CHECK_MSG(tc_model_n_params(&back) == c.params, "%s: %llu parameters stored, %llu costed", what,
              (unsigned long long)tc_model_n_params(&back), (unsigned long long)c.params);
    free(want);
    free(got);
    tc_model_close(&back);
}

static void test_written(const char *dir)
{
    tc_error err = {{0}};
    tc_synth_spec s = spec();
    char in[512], out[600];
    snprintf(in, sizeof in, "%s/heads.gguf", dir);
    CHECK_OK(tc_synth_write(in, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    tc_model m;
    if (tc_model_open(&m, in, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    int32_t tok[NS * SEQ];
    size_t off[NS + 1];
    tokens_of(tok, off);

    /* Groups keeping different counts, a whole group, and every head of a
     * layer (its attention goes). */
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    CHECK_OK(tc_prune_plan_heads(&p, NH, &err), &err);
    const int drops[][2] = {{0, 0}, {1, 2}, {1, 3}, {2, 1}, {2, 4}, {2, 7}};
    for (size_t i = 0; i < sizeof drops / sizeof *drops; i++)
        p.drop_heads[drops[i][0] * NH + drops[i][1]] = 1;
    CHECK(tc_prune_plan_count_heads(&p) == 6);
    snprintf(out, sizeof out, "%s/mixed.gguf", dir);
    check_written(&m, &p, out, TC_FORMAT_GGUF, tok, off, "mixed drops, GGUF");
    tc_model back;
    if (tc_model_open(&back, out, &err) == TC_OK) {
        /* As stored: layer 0 7/7 (groups of one), layer 1 6/3, layer 2 5/5, layer 3 8/4;
         * read as 7 kv heads of groups of 2 (the largest), the missing heads zero. */
        static const int want[2 * L] = {7, 6, 5, 8, 7, 3, 5, 4};
        CHECK(back.layer_heads && memcmp(back.layer_heads, want, sizeof want) == 0);
        CHECK(back.cfg.n_heads == 14 && back.cfg.n_kv_heads == 7);
        tc_model_close(&back);
    }
    /* Hugging Face configs hold one count for every layer: refused, and nothing written. */
    snprintf(out, sizeof out, "%s/mixed-hf", dir);
    CHECK(tc_prune_write(&m, &p, out, TC_FORMAT_HF, &err) == TC_ERR && strstr(err.msg, "one head count") &&
          strstr(err.msg, "GGUF"));
    CHECK(access(out, F_OK) != 0);
    snprintf(out, sizeof out, "%s/mixed.bin", dir);
    CHECK(tc_prune_write(&m, &p, out, TC_FORMAT_LLAMA2C, &err) == TC_ERR && strstr(err.msg, "llama2.c"));
    /* Every head of layer 3 goes with its attention. */
    for (int h = 0; h < NH; h++)
        p.drop_heads[3 * NH + h] = 1;
    p.drop[TC_MOD_ATTN][3] = 1;
    snprintf(out, sizeof out, "%s/attn3.gguf", dir);
    check_written(&m, &p, out, TC_FORMAT_GGUF, tok, off, "mixed drops and a layer without heads, GGUF");
    tc_prune_plan_free(&p);

    /* The same head of every group in every layer: the counts stay uniform. */
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    CHECK_OK(tc_prune_plan_heads(&p, NH, &err), &err);
    for (int l = 0; l < L; l++)
        for (int h = 1; h < NH; h += 2)
            p.drop_heads[l * NH + h] = 1;
    snprintf(out, sizeof out, "%s/uniform-hf", dir);
    check_written(&m, &p, out, TC_FORMAT_HF, tok, off, "uniform drops, HF");
    if (tc_model_open(&back, out, &err) == TC_OK) {
        CHECK(back.cfg.n_heads == 4 && back.cfg.n_kv_heads == 4 && back.cfg.head_dim == 8 && !back.layer_heads);
        tc_model_close(&back);
    }
    snprintf(out, sizeof out, "%s/uniform.gguf", dir);
    check_written(&m, &p, out, TC_FORMAT_GGUF, tok, off, "uniform drops, GGUF");
    tc_prune_plan_free(&p);
    tc_model_close(&m);
}

/* Chosen by measured importance: the heads whose masking costs least. */
static void test_selection(void)
{
    tc_error err = {{0}};
    tc_synth_spec s = spec();
    int zero[3] = {1 * NH + 5, 2 * NH + 0, 2 * NH + 6};
    s.zero_heads = zero;
    s.n_zero_heads = 3;
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    int32_t tok[NS * SEQ];
    size_t off[NS + 1];
    tokens_of(tok, off);
    tc_analyze_opts ao = {.n_threads = 2, .no_measure = 1, .head_windows = NS};
    tc_analysis a;
    CHECK_OK(tc_analyze(&m, tok, off, NS, &ao, &a, &err), &err);
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    tc_prune_opts o = {.criterion = TC_CRIT_KL, .drop_heads = 3};
    CHECK(tc_prune_available_heads(&p, &m, &o) == L * NH);
    CHECK_OK(tc_prune_select(&p, &a, &m, &o, &err), &err);
    /* The three heads that do nothing are the three that go. */
    CHECK(p.drop_heads && tc_prune_plan_count_heads(&p) == 3);
    for (int i = 0; p.drop_heads && i < 3; i++)
        CHECK(p.drop_heads[zero[i]]);
    tc_prune_plan_free(&p);
    /* Protected layers are not touched; asking for more than there is fails. */
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    tc_prune_opts o2 = {.criterion = TC_CRIT_DNLL, .drop_heads = 2 * NH, .keep_first = 1, .keep_last = 1};
    CHECK_OK(tc_prune_select(&p, &a, &m, &o2, &err), &err);
    for (int h = 0; h < NH; h++)
        CHECK(!p.drop_heads[h] && !p.drop_heads[3 * NH + h]);
    tc_prune_plan_free(&p);
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    o2.drop_heads = 2 * NH + 1;
    CHECK(tc_prune_select(&p, &a, &m, &o2, &err) == TC_ERR && strstr(err.msg, "only 16 can go"));
    tc_prune_plan_free(&p);
    /* Every head of a layer: its attention goes. */
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    o2.drop_heads = 2 * NH;
    CHECK_OK(tc_prune_select(&p, &a, &m, &o2, &err), &err);
    CHECK(p.drop[TC_MOD_ATTN][1] && p.drop[TC_MOD_ATTN][2] && tc_prune_plan_count_heads(&p) == 0);
    tc_prune_plan_free(&p);
    /* An analysis without masked heads cannot choose them. */
    tc_analyze_opts plain = {.n_threads = 2, .no_measure = 1};
    tc_analysis b;
    CHECK_OK(tc_analyze(&m, tok, off, NS, &plain, &b, &err), &err);
    CHECK_OK(tc_prune_plan_init(&p, L, &err), &err);
    CHECK(tc_prune_select(&p, &b, &m, &o, &err) == TC_ERR && strstr(err.msg, "--head-samples"));
    tc_prune_plan_free(&p);
    tc_analysis_free(&b);
    tc_analysis_free(&a);
    tc_model_close(&m);
}

int main(void)
{
    char dir[256];
    test_layout();
    test_selection();
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    test_written(dir);
    return tu_finish("test_prune_heads");
}
