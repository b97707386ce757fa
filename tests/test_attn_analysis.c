/* Heads and tokens on synthetic models with planted structure: the analysis
 * must find exactly what was planted.
 *   - a head whose output projection is zero: masking it costs exactly
 *     nothing, and it is the least important head;
 *   - a head that attends only to BOS, and layers whose every head does:
 *     those heads, and no others, put (almost) all their weight on the first
 *     token;
 *   - from the first such layer on, every position's attention output is a
 *     copy of BOS's value, so tokens can be dropped there at the smallest
 *     ratio at no cost, but not one layer earlier. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tc/analyze.h"
#include "tc/forward.h"
#include "tc/report.h"
#include "tc/synth.h"

#define L 6
#define NH 4
#define N_WIN 24
#define WIN 48
#define ZERO_LAYER 1
#define ZERO_HEAD 2
#define SINK_LAYER 2
#define SINK_HEAD 1
#define SINK_FROM 4

/* Windows the model itself wrote (sampled at temperature 1 after BOS): on
 * its own text, any change to what a position sees raises the expected NLL
 * by the KL of the change, so that dropping tokens costs where context
 * matters.  (Random tokens would not show it: an untrained model's NLL on
 * them often falls when context is dropped.)  BOS starts each window and
 * nowhere else. */
static void make_windows(const tc_model *m, int32_t *tokens, size_t *offsets)
{
    tc_error err = {{0}};
    tc_decoder *d = NULL;
    tc_decoder_opts dopt = {.max_len = WIN};
    CHECK_OK(tc_decoder_new(&d, m, &dopt, &err), &err);
    int32_t bos = m->cfg.bos_id;
    offsets[0] = 0;
    for (int w = 0; w < N_WIN; w++) {
        offsets[w + 1] = offsets[w] + WIN;
        tokens[offsets[w]] = bos;
        tc_generate_opts g = {.temperature = 1.0f, .seed = 100 + (uint64_t)w, .stop_token = -1};
        size_t got = 0;
        CHECK_OK(d ? tc_generate(d, &bos, 1, WIN - 1, &g, tokens + offsets[w] + 1, &got, &err) : TC_ERR, &err);
        for (size_t t = 1; t < WIN; t++)
            if (t > got || tokens[offsets[w] + t] == bos)
                tokens[offsets[w] + t] = 3;
    }
    tc_decoder_free(d);
}

static void planted_spec(tc_synth_spec *s, int *zero, int *sink, uint8_t *layers)
{
    memset(s, 0, sizeof *s);
    s->cfg = tc_synth_config(L, 64, NH, 2, 96, 96);
    s->seed = 11;
    *zero = ZERO_LAYER * NH + ZERO_HEAD;
    *sink = SINK_LAYER * NH + SINK_HEAD;
    memset(layers, 0, L);
    for (int l = SINK_FROM; l < L; l++)
        layers[l] = 1;
    s->zero_heads = zero;
    s->n_zero_heads = 1;
    s->sink_heads = sink;
    s->n_sink_heads = 1;
    s->sink_layers = layers;
    /* Attention strong enough that what a position sees matters in the
     * layers before the copying ones (an untrained model's attention output
     * is small beside the residual stream). */
    static uint8_t strong[L];
    for (int l = 0; l < SINK_FROM; l++)
        strong[l] = 1;
    s->weak_attn = strong;
    s->weak_scale = 3.0f;
}

static void test_planted(void)
{
    tc_synth_spec spec;
    int zero, sink;
    uint8_t layers[L];
    planted_spec(&spec, &zero, &sink, layers);
    tc_model m;
    tc_error err = {{0}};
    CHECK_OK(tc_synth_model(&m, &spec, &err), &err);
    static int32_t tokens[N_WIN * WIN];
    size_t offsets[N_WIN + 1];
    make_windows(&m, tokens, offsets);
    tc_analyze_opts o = {.n_threads = 2, .no_measure = 1, .head_windows = N_WIN, .token_windows = N_WIN};
    tc_analysis a;
    CHECK_OK(tc_analyze(&m, tokens, offsets, N_WIN, &o, &a, &err), &err);
    if (!a.layers) {
        tc_model_close(&m);
        return;
    }

    /* The zero head: masking it changes nothing, and it ranks first. */
    const tc_head_stats *z = &a.layers[ZERO_LAYER].heads[ZERO_HEAD];
    CHECK(z->measured);
    CHECK_MSG(fabs(z->dnll) < 1e-12 && fabs(z->kl) < 1e-12, "zero head: dnll %g kl %g", z->dnll, z->kl);
    int *rank = NULL;
    size_t nr = 0;
    CHECK_OK(tc_analysis_head_ranking(&a, TC_HEAD_BY_KL, &rank, &nr, &err), &err);
    CHECK(nr == L * NH && rank && rank[0] == zero);
    double least_other = 1e300;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++)
            if (l * NH + h != zero && a.layers[l].heads[h].kl < least_other)
                least_other = a.layers[l].heads[h].kl;
    CHECK_MSG(least_other > 1e-6, "another head's KL is %g, as small as a head that does nothing", least_other);
    printf("zero head L%d.h%d: dnll %g kl %g; the next least important head's KL %.3g\n", ZERO_LAYER, ZERO_HEAD,
           z->dnll, z->kl, least_other);
    CHECK(a.heads.measured && a.heads.n_curve >= 3 && a.heads.curve_k[0] == 1 && fabs(a.heads.curve_dnll[0]) < 1e-12);

    /* Sinks: exactly the planted heads put (almost) all their weight on the first token. */
    double most_other = 0.0, least_sink = 1.0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) {
            double s = a.layers[l].heads[h].sink;
            int planted = l * NH + h == sink || layers[l];
            if (planted)
                least_sink = s < least_sink ? s : least_sink;
            else
                most_other = s > most_other ? s : most_other;
        }
    printf("sinks: planted heads put at least %.6f on the first token, the others at most %.3f\n", least_sink,
           most_other);
    CHECK(least_sink > 0.999 && most_other < 0.5);
    /* One key holds 90 %: the query at position t has t + 1 keys. */
    double k90 = 0.0;
    for (int t = 1; t < WIN; t++)
        k90 += 1.0 / (t + 1) / (WIN - 1);
    CHECK_NEAR(a.layers[SINK_LAYER].heads[SINK_HEAD].k90, k90, 1e-9);

    /* Tokens: free to drop from the first copying layer on, not a layer earlier. */
    const tc_token_measure *tm = &a.tokens;
    CHECK(tm->measured && tm->windows == N_WIN && tm->n_grid > 2);
    double smallest = tm->grid[tm->n_grid - 1];
    for (int l = 1; l < L; l++) {
        const tc_token_stats *ts = &a.layers[l].tokens;
        printf("layer %d: keep %.2f / %.2f, last->first %.3f, at the smallest ratio dnll %+.3g\n", l, ts->keep[0],
               ts->keep[1], ts->last.first, ts->drop_dnll[tm->n_grid - 1]);
        if (l >= SINK_FROM) {
            CHECK(ts->keep[0] == smallest && ts->keep[1] == smallest);
            for (int g = 0; g < tm->n_grid; g++)
                CHECK_MSG(fabs(ts->drop_dnll[g]) < 1e-4 * tm->nll_last, "layer %d ratio %g: dnll %g", l, tm->grid[g],
                          ts->drop_dnll[g]);
            CHECK(ts->last.first > 0.999 && ts->mean.first > 0.999);
        }
    }
    /* One layer earlier the dropped tokens are still seen: dropping them
     * moves the prediction (up or down; how far depends on the weights). */
    double moved = 0.0;
    for (int g = 0; g < tm->n_grid; g++) {
        double d = fabs(a.layers[SINK_FROM - 1].tokens.drop_dnll[g]);
        moved = d > moved ? d : moved;
    }
    CHECK_MSG(moved > 1e-3 * tm->nll_last, "dropping tokens from layer %d moves the NLL by %g only", SINK_FROM - 1,
              moved);
    CHECK(isnan(a.layers[0].tokens.keep[0]) && a.layers[0].tokens.measured);
    CHECK(tm->chosen >= 0 && tm->candidates[tm->chosen].dnll <= tm->budget * tm->nll_last);

    /* The report carries it all and reads back to the same JSON. */
    cJSON *j = tc_report_to_json(&a, NULL, NULL, &err);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    tc_analysis b;
    CHECK(text && tc_report_parse(text, strlen(text), "planted.json", &b, NULL, NULL, &err) == TC_OK);
    if (text && b.layers) {
        cJSON *j2 = tc_report_to_json(&b, NULL, NULL, &err);
        char *text2 = j2 ? cJSON_PrintUnformatted(j2) : NULL;
        CHECK(text2 && strcmp(text, text2) == 0);
        CHECK(b.layers[ZERO_LAYER].heads[ZERO_HEAD].measured && b.tokens.chosen == tm->chosen);
        free(text2);
        cJSON_Delete(j2);
        tc_analysis_free(&b);
    }
    char *summary = NULL;
    CHECK_OK(tc_report_summary(&a, &summary, &err), &err);
    CHECK(summary && strstr(summary, "heads masked alone") && strstr(summary, "schedule"));
    if (summary)
        fputs(summary, stdout);
    free(summary);
    free(text);
    cJSON_Delete(j);
    free(rank);
    tc_analysis_free(&a);
    tc_model_close(&m);
}

/* What planting refuses. */
static void test_refused(void)
{
    tc_synth_spec spec;
    int zero, sink;
    uint8_t layers[L];
    planted_spec(&spec, &zero, &sink, layers);
    tc_error err = {{0}};
    tc_model m;
    int far = L * NH;
    spec.zero_heads = &far;
    CHECK(tc_synth_model(&m, &spec, &err) == TC_ERR && strstr(err.msg, "outside"));
    planted_spec(&spec, &zero, &sink, layers);
    spec.cfg.t.qk_norm = 1;
    CHECK(tc_synth_model(&m, &spec, &err) == TC_ERR && strstr(err.msg, "q/k norms"));
    planted_spec(&spec, &zero, &sink, layers);
    spec.cfg.bos_id = -1;
    CHECK(tc_synth_model(&m, &spec, &err) == TC_ERR && strstr(err.msg, "BOS"));
}

int main(void)
{
    test_planted();
    test_refused();
    return tu_finish("test_attn_analysis");
}
