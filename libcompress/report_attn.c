/* The heads and tokens parts of a tc-analyze report in JSON, written and
 * read back (docs/REPORT.md lists the fields).  They are optional within
 * schema version 1: a report without them reads as "not measured". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

/* ------------------------------------------------------------ writing */

static void add_to_array(cJSON *arr, cJSON *e, int *ok)
{
    if (!e || !arr || !cJSON_AddItemToArray(arr, e)) {
        cJSON_Delete(e);
        *ok = 0;
    }
}

static cJSON *received_json(const tc_received *r, int *ok)
{
    cJSON *o = cJSON_CreateObject(), *bins = cJSON_CreateArray();
    tc_json_put(o, "first", tc_json_num(r->first), ok);
    for (int b = 0; b < TC_RECV_BINS; b++)
        add_to_array(bins, tc_json_num(r->bins[b]), ok);
    tc_json_put(o, "bins", bins, ok);
    tc_json_put(o, "keys50", tc_json_num(r->keys50), ok);
    tc_json_put(o, "keys90", tc_json_num(r->keys90), ok);
    return o;
}

void tc_report_attn_layer_json(const tc_analysis *a, int l, cJSON *layer, cJSON *heads, int *ok)
{
    const tc_layer_stats *ls = &a->layers[l];
    int h = 0;
    for (cJSON *e = heads ? heads->child : NULL; e && ls->heads && h < a->n_heads; e = e->next, h++) {
        const tc_head_stats *hs = &ls->heads[h];
        tc_json_put(e, "sink", tc_json_num(hs->sink), ok);
        tc_json_put(e, "prev", tc_json_num(hs->prev), ok);
        tc_json_put(e, "diag", tc_json_num(hs->diag), ok);
        tc_json_put(e, "k90", tc_json_num(hs->k90), ok);
        tc_json_put(e, "dnll", tc_json_num(hs->measured ? hs->dnll : NAN), ok);
        tc_json_put(e, "kl", tc_json_num(hs->measured ? hs->kl : NAN), ok);
    }
    if (!a->tokens.measured)
        return;
    const tc_token_stats *ts = &ls->tokens;
    cJSON *t = cJSON_CreateObject();
    tc_json_put(t, "measured", cJSON_CreateBool(ts->measured), ok);
    tc_json_put(t, "received_last", received_json(&ts->last, ok), ok);
    tc_json_put(t, "received_mean", received_json(&ts->mean, ok), ok);
    cJSON *d = cJSON_CreateArray();
    for (int g = 0; g < a->tokens.n_grid; g++)
        add_to_array(d, tc_json_num(ts->drop_dnll[g]), ok);
    tc_json_put(t, "drop_dnll", d, ok);
    cJSON *se = cJSON_CreateArray();
    for (int g = 0; g < a->tokens.n_grid; g++)
        add_to_array(se, tc_json_num(ts->drop_se[g]), ok);
    tc_json_put(t, "drop_se", se, ok);
    tc_json_put(t, "keep_1pct", tc_json_num(ts->keep[0]), ok);
    tc_json_put(t, "keep_5pct", tc_json_num(ts->keep[1]), ok);
    tc_json_put(layer, "tokens", t, ok);
}

/* Share of the droppable tokens that layer l sees under schedule s. */
static double schedule_share(const tc_schedule *s, int l)
{
    double share = 1.0;
    for (int i = 0; i + 1 < s->n_stages; i++)
        if (l >= s->boundary[i])
            share *= s->lambda;
    return share;
}

static cJSON *schedule_json(const tc_analysis *a, const tc_schedule *s, int with_curve, int *ok)
{
    cJSON *o = cJSON_CreateObject(), *b = cJSON_CreateArray();
    tc_json_put(o, "stages", cJSON_CreateNumber(s->n_stages), ok);
    tc_json_put(o, "lambda", tc_json_num(s->lambda), ok);
    for (int i = 0; i + 1 < s->n_stages; i++)
        add_to_array(b, cJSON_CreateNumber(s->boundary[i]), ok);
    tc_json_put(o, "boundaries", b, ok);
    tc_json_put(o, "dnll", tc_json_num(s->dnll), ok);
    tc_json_put(o, "dnll_se", tc_json_num(s->dnll_se), ok);
    tc_json_put(o, "dnll_rel", tc_json_num(a->tokens.nll_last > 0 ? s->dnll / a->tokens.nll_last : NAN), ok);
    tc_json_put(o, "flop_saving", tc_json_num(s->flop_saving), ok);
    if (with_curve) {
        cJSON *k = cJSON_CreateArray();
        for (int l = 0; l < a->n_layers; l++)
            add_to_array(k, tc_json_num(schedule_share(s, l)), ok);
        tc_json_put(o, "keep_by_layer", k, ok);
    }
    return o;
}

void tc_report_attn_root_json(const tc_analysis *a, cJSON *root, int *ok)
{
    const tc_head_measure *hm = &a->heads;
    if (hm->measured) {
        cJSON *o = cJSON_CreateObject(), *rank = cJSON_CreateArray(), *curve = cJSON_CreateArray();
        tc_json_put(o, "windows", tc_json_num((double)hm->windows), ok);
        tc_json_put(o, "n_predicted", tc_json_num((double)hm->n_predicted), ok);
        tc_json_put(o, "nll", tc_json_num(hm->nll), ok);
        int *ids = NULL;
        size_t n = 0;
        tc_error e2;
        if (tc_analysis_head_ranking(a, TC_HEAD_BY_KL, &ids, &n, &e2))
            *ok = 0;
        for (size_t i = 0; i < n; i++) {
            int l = ids[i] / a->n_heads, h = ids[i] % a->n_heads;
            const tc_head_stats *hs = &a->layers[l].heads[h];
            cJSON *e = cJSON_CreateObject();
            tc_json_put(e, "layer", cJSON_CreateNumber(l), ok);
            tc_json_put(e, "head", cJSON_CreateNumber(h), ok);
            tc_json_put(e, "dnll", tc_json_num(hs->dnll), ok);
            tc_json_put(e, "kl", tc_json_num(hs->kl), ok);
            add_to_array(rank, e, ok);
        }
        free(ids);
        tc_json_put(o, "ranking", rank, ok);
        for (int i = 0; i < hm->n_curve; i++) {
            cJSON *e = cJSON_CreateObject();
            tc_json_put(e, "k", cJSON_CreateNumber(hm->curve_k[i]), ok);
            tc_json_put(e, "dnll", tc_json_num(hm->curve_dnll[i]), ok);
            add_to_array(curve, e, ok);
        }
        tc_json_put(o, "drop_curve", curve, ok);
        tc_json_put(root, "heads", o, ok);
    }
    const tc_token_measure *tm = &a->tokens;
    if (tm->measured) {
        cJSON *o = cJSON_CreateObject(), *grid = cJSON_CreateArray(), *th = cJSON_CreateArray();
        cJSON *cand = cJSON_CreateArray();
        tc_json_put(o, "windows", tc_json_num((double)tm->windows), ok);
        tc_json_put(o, "window_len", tc_json_num(tm->window_len), ok);
        tc_json_put(o, "nll_last", tc_json_num(tm->nll_last), ok);
        add_to_array(th, tc_json_num(0.01), ok);
        add_to_array(th, tc_json_num(0.05), ok);
        tc_json_put(o, "thresholds", th, ok);
        for (int g = 0; g < tm->n_grid; g++)
            add_to_array(grid, tc_json_num(tm->grid[g]), ok);
        tc_json_put(o, "grid", grid, ok);
        tc_json_put(o, "budget", tc_json_num(tm->budget), ok);
        for (int i = 0; i < tm->n_candidates; i++)
            add_to_array(cand, schedule_json(a, &tm->candidates[i], 0, ok), ok);
        tc_json_put(o, "candidates", cand, ok);
        int c = tm->chosen;
        tc_json_put(o, "chosen", c >= 0 ? cJSON_CreateNumber(c) : cJSON_CreateNull(), ok);
        tc_json_put(o, "schedule", c >= 0 ? schedule_json(a, &tm->candidates[c], 1, ok) : cJSON_CreateNull(), ok);
        tc_json_put(root, "tokens", o, ok);
    }
}

/* ------------------------------------------------------------ reading */

#define EPS 1e-6

/* w's path and ".key", cut to fit (only messages read it). */
static void sub_path(tc_jwhere *out, const tc_jwhere *w, const char *key)
{
    out->file = w->file;
    size_t n = strlen(w->path), k = strlen(key), cap = sizeof out->path - 1;
    n = n < cap ? n : cap;
    memcpy(out->path, w->path, n);
    if (n < cap)
        out->path[n++] = '.';
    k = k < cap - n ? k : cap - n;
    memcpy(out->path + n, key, k);
    out->path[n + k] = '\0';
}

int tc_report_attn_read_head(const tc_jwhere *w, const cJSON *e, tc_head_stats *hs, tc_error *err)
{
    hs->sink = hs->prev = hs->diag = hs->k90 = hs->dnll = hs->kl = NAN;
    hs->measured = 0;
    /* Reports written before these fields existed have none of them. */
    if (!cJSON_GetObjectItemCaseSensitive(e, "sink"))
        return TC_OK;
    if (tc_jwant_num(w, e, "sink", -EPS, 1 + EPS, 1, &hs->sink, err) ||
        tc_jwant_num(w, e, "prev", -EPS, 1 + EPS, 1, &hs->prev, err) ||
        tc_jwant_num(w, e, "diag", -EPS, 1 + EPS, 1, &hs->diag, err) ||
        tc_jwant_num(w, e, "k90", 0, 1 + EPS, 1, &hs->k90, err) ||
        tc_jwant_num(w, e, "dnll", -1e9, 1e9, 1, &hs->dnll, err) ||
        tc_jwant_num(w, e, "kl", -EPS, 1e9, 1, &hs->kl, err))
        return TC_ERR;
    if (isnan(hs->dnll) != isnan(hs->kl))
        return tc_err(err, "%s: %s: dnll and kl must both be measured or both be null", w->file, w->path);
    hs->measured = !isnan(hs->dnll);
    return TC_OK;
}

/* An array of exactly n numbers in [lo, hi] (null allowed: NaN). */
static int read_numbers(const tc_jwhere *w, const cJSON *obj, const char *key, int n, double lo, double hi,
                        double *out, tc_error *err)
{
    const cJSON *arr = tc_jwant_type(w, obj, key, tc_jis_array, "an array", err);
    if (!arr)
        return TC_ERR;
    if (cJSON_GetArraySize(arr) != n)
        return tc_err(err, "%s: %s.%s has %d entries, not %d", w->file, w->path, key, cJSON_GetArraySize(arr), n);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        if (cJSON_IsNull(e)) {
            out[i] = NAN;
            continue;
        }
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < lo || e->valuedouble > hi)
            return tc_err(err, "%s: %s.%s[%d] must be a number in [%g, %g] or null", w->file, w->path, key, i, lo, hi);
        out[i] = e->valuedouble;
    }
    return TC_OK;
}

static int read_received(const tc_jwhere *lw, const cJSON *t, const char *key, tc_received *r, tc_error *err)
{
    const cJSON *o = tc_jwant_type(lw, t, key, tc_jis_object, "an object", err);
    if (!o)
        return TC_ERR;
    tc_jwhere w;
    sub_path(&w, lw, key);
    return tc_jwant_num(&w, o, "first", -EPS, 1 + EPS, 1, &r->first, err) ||
                   read_numbers(&w, o, "bins", TC_RECV_BINS, -EPS, 1 + EPS, r->bins, err) ||
                   tc_jwant_num(&w, o, "keys50", 0, 1 + EPS, 1, &r->keys50, err) ||
                   tc_jwant_num(&w, o, "keys90", 0, 1 + EPS, 1, &r->keys90, err)
               ? TC_ERR
               : TC_OK;
}

int tc_report_attn_read_layer(const tc_jwhere *lw, const cJSON *layer, const tc_analysis *a, tc_token_stats *ts,
                              tc_error *err)
{
    ts->keep[0] = ts->keep[1] = NAN;
    for (int g = 0; g < TC_TOKEN_GRID_MAX; g++)
        ts->drop_dnll[g] = ts->drop_se[g] = NAN;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(layer, "tokens");
    if (!a->tokens.measured) {
        if (t)
            return tc_err(err, "%s: %s has a \"tokens\" object but the report has no token analysis", lw->file,
                          lw->path);
        return TC_OK;
    }
    if (!t || !cJSON_IsObject(t))
        return tc_err(err, "%s: %s.tokens must be an object (the report has a token analysis)", lw->file, lw->path);
    tc_jwhere w;
    sub_path(&w, lw, "tokens");
    const cJSON *m = tc_jwant_type(&w, t, "measured", tc_jis_bool, "true or false", err);
    if (!m)
        return TC_ERR;
    ts->measured = cJSON_IsTrue(m);
    if (read_received(&w, t, "received_last", &ts->last, err) || read_received(&w, t, "received_mean", &ts->mean, err) ||
        read_numbers(&w, t, "drop_dnll", a->tokens.n_grid, -1e9, 1e9, ts->drop_dnll, err) ||
        read_numbers(&w, t, "drop_se", a->tokens.n_grid, 0, 1e9, ts->drop_se, err) ||
        tc_jwant_num(&w, t, "keep_1pct", 0, 1, 1, &ts->keep[0], err) ||
        tc_jwant_num(&w, t, "keep_5pct", 0, 1, 1, &ts->keep[1], err))
        return TC_ERR;
    return TC_OK;
}

static int read_heads_root(const tc_jwhere *top, const cJSON *o, tc_analysis *a, tc_error *err)
{
    tc_jwhere w = {.file = top->file, .path = "heads"};
    tc_head_measure *hm = &a->heads;
    int64_t win = 0, pred = 0;
    if (tc_jwant_int(&w, o, "windows", 1, 9007199254740992.0, &win, err) ||
        tc_jwant_int(&w, o, "n_predicted", 0, 9007199254740992.0, &pred, err) ||
        tc_jwant_num(&w, o, "nll", -EPS, 1e6, 0, &hm->nll, err) ||
        !tc_jwant_type(&w, o, "ranking", tc_jis_array, "an array", err))
        return TC_ERR;
    hm->measured = 1;
    hm->windows = (uint64_t)win;
    hm->n_predicted = (uint64_t)pred;
    const cJSON *curve = tc_jwant_type(&w, o, "drop_curve", tc_jis_array, "an array", err);
    if (!curve)
        return TC_ERR;
    if (cJSON_GetArraySize(curve) > TC_HEAD_CURVE_MAX)
        return tc_err(err, "%s: heads.drop_curve has more than %d entries", w.file, TC_HEAD_CURVE_MAX);
    int i = 0;
    for (const cJSON *e = curve->child; e; e = e->next, i++) {
        tc_jwhere ew = {.file = w.file};
        snprintf(ew.path, sizeof ew.path, "heads.drop_curve[%d]", i);
        int64_t k = 0;
        if (!cJSON_IsObject(e))
            return tc_err(err, "%s: %s must be an object", w.file, ew.path);
        if (tc_jwant_int(&ew, e, "k", 1, (double)a->n_layers * a->n_heads, &k, err) ||
            tc_jwant_num(&ew, e, "dnll", -1e9, 1e9, 0, &hm->curve_dnll[i], err))
            return TC_ERR;
        if (i > 0 && k <= hm->curve_k[i - 1])
            return tc_err(err, "%s: %s.k must increase along the curve", w.file, ew.path);
        hm->curve_k[i] = (int)k;
    }
    hm->n_curve = i;
    return TC_OK;
}

static int read_schedule(const tc_jwhere *w, const cJSON *e, const tc_analysis *a, tc_schedule *s, tc_error *err)
{
    int64_t stages = 0;
    if (!cJSON_IsObject(e))
        return tc_err(err, "%s: %s must be an object", w->file, w->path);
    if (tc_jwant_int(w, e, "stages", 2, TC_SCHEDULE_MAX_STAGES, &stages, err) ||
        tc_jwant_num(w, e, "lambda", EPS, 1, 0, &s->lambda, err) ||
        tc_jwant_num(w, e, "dnll", -1e9, 1e9, 0, &s->dnll, err) ||
        tc_jwant_num(w, e, "dnll_se", 0, 1e9, 1, &s->dnll_se, err) ||
        tc_jwant_num(w, e, "flop_saving", -1, 1, 0, &s->flop_saving, err))
        return TC_ERR;
    s->n_stages = (int)stages;
    double b[TC_SCHEDULE_MAX_STAGES];
    if (read_numbers(w, e, "boundaries", s->n_stages - 1, 1, a->n_layers - 1, b, err))
        return TC_ERR;
    for (int i = 0; i + 1 < s->n_stages; i++) {
        if (isnan(b[i]) || b[i] != floor(b[i]) || (i > 0 && b[i] <= b[i - 1]))
            return tc_err(err, "%s: %s.boundaries must be increasing layer indices", w->file, w->path);
        s->boundary[i] = (int)b[i];
    }
    return TC_OK;
}

static int read_tokens_root(const tc_jwhere *top, const cJSON *o, tc_analysis *a, tc_error *err)
{
    tc_jwhere w = {.file = top->file, .path = "tokens"};
    tc_token_measure *tm = &a->tokens;
    int64_t win = 0;
    if (tc_jwant_int(&w, o, "windows", 1, 9007199254740992.0, &win, err) ||
        tc_jwant_num(&w, o, "window_len", 0, 1e12, 0, &tm->window_len, err) ||
        tc_jwant_num(&w, o, "nll_last", -EPS, 1e6, 0, &tm->nll_last, err) ||
        tc_jwant_num(&w, o, "budget", EPS, 1, 0, &tm->budget, err))
        return TC_ERR;
    tm->windows = (uint64_t)win;
    const cJSON *grid = tc_jwant_type(&w, o, "grid", tc_jis_array, "an array", err);
    if (!grid)
        return TC_ERR;
    int n = cJSON_GetArraySize(grid);
    if (n < 1 || n > TC_TOKEN_GRID_MAX)
        return tc_err(err, "%s: tokens.grid must hold 1 to %d ratios", w.file, TC_TOKEN_GRID_MAX);
    if (read_numbers(&w, o, "grid", n, EPS, 1, tm->grid, err))
        return TC_ERR;
    for (int g = 0; g < n; g++)
        if (isnan(tm->grid[g]) || (g > 0 && tm->grid[g] >= tm->grid[g - 1]))
            return tc_err(err, "%s: tokens.grid must be decreasing ratios", w.file);
    tm->n_grid = n;
    const cJSON *cand = tc_jwant_type(&w, o, "candidates", tc_jis_array, "an array", err);
    if (!cand)
        return TC_ERR;
    if (cJSON_GetArraySize(cand) > TC_SCHEDULE_MAX_CANDIDATES)
        return tc_err(err, "%s: tokens.candidates has more than %d entries", w.file, TC_SCHEDULE_MAX_CANDIDATES);
    int i = 0;
    for (const cJSON *e = cand->child; e; e = e->next, i++) {
        tc_jwhere cw = {.file = w.file};
        snprintf(cw.path, sizeof cw.path, "tokens.candidates[%d]", i);
        if (read_schedule(&cw, e, a, &tm->candidates[i], err))
            return TC_ERR;
    }
    tm->n_candidates = i;
    const cJSON *ch = tc_jfield(&w, o, "chosen", err);
    if (!ch)
        return TC_ERR;
    tm->chosen = -1;
    if (!cJSON_IsNull(ch)) {
        int64_t c = 0;
        if (tc_jwant_int(&w, o, "chosen", 0, tm->n_candidates - 1, &c, err))
            return TC_ERR;
        tm->chosen = (int)c;
    }
    tm->measured = 1;
    return TC_OK;
}

int tc_report_attn_read_root(const tc_jwhere *top, const cJSON *root, tc_analysis *a, tc_error *err)
{
    a->tokens.chosen = -1;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "heads");
    if (h && !cJSON_IsObject(h))
        return tc_err(err, "%s: \"heads\" must be an object", top->file);
    if (h && read_heads_root(top, h, a, err))
        return TC_ERR;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (t && !cJSON_IsObject(t))
        return tc_err(err, "%s: \"tokens\" must be an object", top->file);
    if (t && read_tokens_root(top, t, a, err))
        return TC_ERR;
    return TC_OK;
}
