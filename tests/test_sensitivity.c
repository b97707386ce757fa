/* Per-weight sensitivity (tc/sensitivity.h): zero for weights the quantizer
 * reproduces exactly; on a real model, every weight's KL equals a plain
 * computation (the whole model run again from the embedding with that one
 * weight replaced, KL against the original's log-probabilities in double). */
#include "testutil.h"

#include "tc/forward.h"
#include "tc/model.h"
#include "tc/sensitivity.h"
#include "tc/synth.h"
#include "tc/ternary.h"

typedef struct logits_keep {
    double *lp; /* [n][vocab] log-probabilities */
} logits_keep;

static int keep_logits(void *ctx, const float *z, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    logits_keep *k = ctx;
    for (size_t t = 0; t < n; t++) {
        const float *r = z + t * (size_t)vocab;
        double mx = r[0], s = 0;
        for (int i = 1; i < vocab; i++)
            mx = r[i] > mx ? r[i] : mx;
        for (int i = 0; i < vocab; i++)
            s += exp((double)r[i] - mx);
        for (int i = 0; i < vocab; i++)
            k->lp[(tok0 + t) * (size_t)vocab + (size_t)i] = (double)r[i] - mx - log(s);
    }
    return TC_OK;
}

static void run_logits(const tc_model *m, const tc_batch *b, const tc_weights *w, double *lp)
{
    logits_keep k = {lp};
    tc_observer ob = {.ctx = &k, .logits = keep_logits};
    tc_forward_opts fo = {.n_threads = 1, .observers = &ob, .n_observers = 1, .weights = w};
    tc_error err = {{0}};
    CHECK_OK(tc_forward(m, b, &fo, &err), &err);
}

static void make_batch(int n_seq, int len, int vocab, int32_t *tok, size_t *off)
{
    uint64_t st = 11;
    for (int i = 0; i < n_seq * len; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = i % len == 0 ? 1 : (int32_t)(3 + (st >> 33) % (uint64_t)(vocab - 3));
    }
    for (int s = 0; s <= n_seq; s++)
        off[s] = (size_t)s * (size_t)len;
}

static void test_lossless(void)
{
    tc_error err = {{0}};
    tc_synth_spec s = {.cfg = tc_synth_config(2, 64, 4, 2, 96, 80), .seed = 3, .ternary = 1};
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    enum { NS = 2, L = 16 };
    int32_t tok[NS * L];
    size_t off[NS + 1];
    make_batch(NS, L, 80, tok, off);
    tc_batch b = {tok, off, NS};
    tc_tquant_settings q = {.method = TC_TMETHOD_OPTIMAL, .group = {TC_TGROUP_ROW, 0}};
    tc_sensitivity sn;
    CHECK_OK(tc_sensitivity_measure(&m, &b, &q, 1, &sn, &err), &err);
    CHECK(sn.n_entries == 2 * 7 && sn.n_tokens == NS * L && sn.method == TC_TMETHOD_OPTIMAL);
    for (size_t i = 0; i < sn.n_entries; i++)
        CHECK_MSG(sn.entries[i].kl < 1e-9 && sn.entries[i].rel_weight_error < 1e-7, "layer %d role %d: kl %g",
                  sn.entries[i].layer, sn.entries[i].role, sn.entries[i].kl);
    tc_sensitivity_free(&sn);
    tc_batch empty = {tok, off, 0};
    CHECK(tc_sensitivity_measure(&m, &empty, &q, 1, &sn, &err) == TC_ERR && strstr(err.msg, "tokens"));
    tc_model_close(&m);
}

static void test_against_plain(void)
{
    char mp[512];
    if (!tu_asset(mp, sizeof mp, "models/stories260K/stories260K.gguf")) {
        printf("stories260K missing: sensitivity on a real model skipped\n");
        return;
    }
    tc_error err = {{0}};
    tc_model m;
    CHECK_OK(tc_model_open(&m, mp, &err), &err);
    enum { NS = 3, L = 40 };
    int32_t tok[NS * L];
    size_t off[NS + 1];
    make_batch(NS, L, m.cfg.vocab_size, tok, off);
    tc_batch b = {tok, off, NS};
    tc_tquant_settings q = {.method = TC_TMETHOD_AFFINE_CALIBRATED, .group = {TC_TGROUP_COLS, 32}};
    tc_sensitivity sn;
    CHECK_OK(tc_sensitivity_measure(&m, &b, &q, 1, &sn, &err), &err);
    CHECK(sn.n_entries == 5 * 7 && sn.method == TC_TMETHOD_AFFINE);
    tc_weights w;
    CHECK_OK(tc_weights_load(&w, &m, &err), &err);
    size_t V = (size_t)m.cfg.vocab_size, N = NS * L;
    double *ref = malloc(N * V * sizeof *ref), *lp = malloc(N * V * sizeof *lp);
    run_logits(&m, &b, &w, ref);
    for (size_t i = 0; i < sn.n_entries; i++) {
        const tc_sensitivity_entry *e = &sn.entries[i];
        const tc_tensor *t = m.layers[e->layer].w[e->role];
        int64_t M = t->shape[0], K = t->shape[1], ns;
        CHECK_OK(tc_ternary_scale_count(&q.group, M, K, &ns, &err), &err);
        int8_t *c = malloc((size_t)(M * K));
        float *sc = malloc((size_t)ns * sizeof *sc), *of = malloc((size_t)ns * sizeof *of);
        float *wh = malloc((size_t)(M * K) * sizeof *wh), *keep = w.layers[e->layer].w[e->role];
        CHECK_OK(tc_ternary_affine(keep, M, K, &q.group, c, sc, of, &err), &err);
        tc_ternary_dequantize_affine(c, sc, of, M, K, &q.group, wh);
        w.layers[e->layer].w[e->role] = wh;
        run_logits(&m, &b, &w, lp);
        w.layers[e->layer].w[e->role] = keep;
        double kl = 0;
        for (size_t k = 0; k < N * V; k++)
            kl += exp(ref[k]) * (ref[k] - lp[k]);
        kl /= (double)N;
        CHECK_MSG(e->kl > 0 && fabs(e->kl - kl) <= 1e-4 * kl + 1e-9, "layer %d role %d: %.9g, plainly %.9g",
                  e->layer, e->role, e->kl, kl);
        free(c);
        free(sc);
        free(of);
        free(wh);
    }
    free(ref);
    free(lp);
    tc_weights_free(&w);
    tc_sensitivity_free(&sn);
    tc_model_close(&m);
}

int main(void)
{
    test_lossless();
    test_against_plain();
    return tu_finish("test_sensitivity");
}
