/* Reports: JSON written and read back, the ranking, the text table, the HTML
 * page (escaping, charts, and a headless-browser rendering when a browser is
 * installed), and hostile report files. */
#include "testutil.h"

#include <stdint.h>

#include "tc/report.h"
#include "tc/version.h"

static char dir[256];

static const char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *write_text(const char *name, const char *s)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(s, 1, strlen(s), f) != strlen(s)) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fclose(f);
    return p;
}

static uint64_t rng_state = 12345;

static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* A hand-made result: cos falls towards the middle layers as in real models;
 * in the 4-layer case layer 2 lost its MLP (pruned), layer 3 has no head
 * statistics and layer 1 was not measured for loss. */
static void make_analysis(tc_analysis *a, int n_layers, int n_heads)
{
    memset(a, 0, sizeof *a);
    a->n_layers = n_layers;
    a->n_heads = n_heads;
    a->layers = calloc((size_t)n_layers, sizeof *a->layers);
    for (int l = 0; l < n_layers; l++) {
        tc_layer_stats *ls = &a->layers[l];
        double depth = (double)l / (n_layers > 1 ? n_layers - 1 : 1);
        for (int m = 0; m < TC_N_MODULES; m++) {
            tc_module_stats *s = &ls->mod[m];
            s->present = 1;
            s->cos_mean = 0.80 + 0.19 * depth * (m == TC_MOD_ATTN ? 1.0 : 0.8) + 0.01 * urand();
            s->cos_std = 0.02 + 0.05 * urand();
            s->cos_min = s->cos_mean - 0.1 - 0.2 * urand();
            s->measured = 1;
            s->dnll = (m == TC_MOD_BLOCK ? 0.5 : 0.2) * (1.05 - depth) * (0.5 + urand()) - 0.01;
            s->kl = fabs(s->dnll) * 1.3 + 0.001;
        }
        if (n_heads) {
            ls->heads = calloc((size_t)n_heads, sizeof *ls->heads);
            for (int h = 0; h < n_heads; h++) {
                tc_head_stats *hs = &ls->heads[h];
                hs->entropy = 0.3 + 3.0 * urand() * (0.3 + depth);
                hs->top10_mass = 0.2 + 0.7 * urand();
                hs->sink = h == 1 && l > 0 ? 0.95 + 0.04 * urand() : 0.3 * urand();
                hs->prev = 0.5 * urand();
                hs->diag = 0.3 * urand();
                hs->k90 = 0.05 + 0.9 * urand();
                hs->measured = 1;
                hs->dnll = 0.05 * (1.1 - depth) * urand() - 0.002;
                hs->kl = fabs(hs->dnll) + 0.01 * urand();
            }
        }
        /* Tokens: droppable from the deeper layers on. */
        tc_token_stats *ts = &ls->tokens;
        ts->measured = 1;
        for (int k = 0; k < 2; k++) {
            tc_received *r = k ? &ts->mean : &ts->last;
            r->first = 0.1 + 0.8 * depth * urand();
            for (int b = 0; b < TC_RECV_BINS; b++)
                r->bins[b] = (1 - r->first) / TC_RECV_BINS;
            r->bins[0] += r->first;
            r->keys50 = 0.1 * urand();
            r->keys90 = 0.2 + 0.5 * urand();
        }
        for (int g = 0; g < TC_TOKEN_GRID_MAX; g++)
            ts->drop_dnll[g] = ts->drop_se[g] = NAN;
        for (int g = 0; l > 0 && g < 5; g++) {
            ts->drop_dnll[g] = 0.004 * (g + 1) * (1.2 - depth);
            ts->drop_se[g] = 0.003;
        }
        ts->keep[0] = l > 0 ? 0.9 - 0.1 * (int)(4 * depth) : NAN;
        ts->keep[1] = l > 0 ? 0.5 - 0.1 * (int)(4 * depth) : NAN;
    }
    a->heads.measured = n_heads > 0;
    a->heads.windows = 8;
    a->heads.n_predicted = 8 * 255;
    a->heads.nll = 1.9;
    a->heads.n_curve = 3;
    for (int i = 0; i < 3; i++) {
        a->heads.curve_k[i] = 1 << i;
        a->heads.curve_dnll[i] = 0.001 * (1 << i);
    }
    tc_token_measure *tm = &a->tokens;
    tm->measured = 1;
    tm->windows = 32;
    tm->window_len = 255;
    tm->nll_last = 1.7;
    tm->n_grid = 5;
    for (int g = 0; g < 5; g++)
        tm->grid[g] = 0.9 - 0.2 * g;
    tm->budget = 0.01;
    tm->n_candidates = 2;
    for (int i = 0; i < 2; i++) {
        tc_schedule *c = &tm->candidates[i];
        c->n_stages = 2 + i;
        c->lambda = 0.5 + 0.25 * i;
        c->boundary[0] = n_layers / (2 + i);
        if (i)
            c->boundary[1] = 2 * n_layers / 3;
        c->dnll = 0.01 + 0.01 * i;
        c->dnll_se = 0.004;
        c->flop_saving = 0.2 + 0.1 * i;
    }
    tm->chosen = 0;
    a->nll = 1.8623456789012345;
    a->ppl = exp(a->nll);
    a->n_tokens = 64 * 256;
    a->n_predicted = 64 * 255;
    a->seconds = 3.25;
}

static void make_small(tc_analysis *a)
{
    make_analysis(a, 4, 3);
    a->layers[2].mod[TC_MOD_MLP].present = 0;
    free(a->layers[3].heads);
    a->layers[3].heads = NULL;
    for (int m = 0; m < TC_N_MODULES; m++)
        a->layers[1].mod[m].measured = 0;
    /* A tie in importance with a different layer: ranks by layer. */
    a->layers[0].mod[TC_MOD_BLOCK].cos_mean = a->layers[3].mod[TC_MOD_ATTN].cos_mean;
    a->layers[0].mod[TC_MOD_BLOCK].cos_min = a->layers[0].mod[TC_MOD_BLOCK].cos_mean - 0.1;
}

static int same_num(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static int same_analysis(const tc_analysis *a, const tc_analysis *b)
{
    if (a->n_layers != b->n_layers || a->n_heads != b->n_heads || a->nll != b->nll || a->ppl != b->ppl ||
        a->n_tokens != b->n_tokens || a->n_predicted != b->n_predicted || a->seconds != b->seconds)
        return 0;
    for (int l = 0; l < a->n_layers; l++) {
        const tc_layer_stats *x = &a->layers[l], *y = &b->layers[l];
        for (int m = 0; m < TC_N_MODULES; m++) {
            const tc_module_stats *s = &x->mod[m], *t = &y->mod[m];
            if (s->present != t->present)
                return 0;
            if (!s->present)
                continue;
            if (s->cos_mean != t->cos_mean || s->cos_std != t->cos_std || s->cos_min != t->cos_min ||
                s->measured != t->measured)
                return 0;
            if (s->measured && (s->dnll != t->dnll || s->kl != t->kl))
                return 0;
        }
        if ((x->heads == NULL) != (y->heads == NULL))
            return 0;
        for (int h = 0; x->heads && h < a->n_heads; h++) {
            const tc_head_stats *p = &x->heads[h], *q = &y->heads[h];
            if (p->entropy != q->entropy || p->top10_mass != q->top10_mass || p->sink != q->sink ||
                p->prev != q->prev || p->diag != q->diag || p->k90 != q->k90 || p->measured != q->measured ||
                (p->measured && (p->dnll != q->dnll || p->kl != q->kl)))
                return 0;
        }
        const tc_token_stats *p = &x->tokens, *q = &y->tokens;
        if (p->measured != q->measured || memcmp(&p->last, &q->last, sizeof p->last) ||
            memcmp(&p->mean, &q->mean, sizeof p->mean) || !same_num(p->keep[0], q->keep[0]) ||
            !same_num(p->keep[1], q->keep[1]))
            return 0;
        for (int g = 0; g < a->tokens.n_grid; g++)
            if (!same_num(p->drop_dnll[g], q->drop_dnll[g]) || !same_num(p->drop_se[g], q->drop_se[g]))
                return 0;
    }
    const tc_token_measure *s = &a->tokens, *t = &b->tokens;
    if (s->measured != t->measured || s->windows != t->windows || s->n_grid != t->n_grid ||
        s->n_candidates != t->n_candidates || s->chosen != t->chosen || s->nll_last != t->nll_last ||
        memcmp(s->grid, t->grid, sizeof s->grid) || a->heads.n_curve != b->heads.n_curve ||
        memcmp(a->heads.curve_dnll, b->heads.curve_dnll, sizeof a->heads.curve_dnll))
        return 0;
    for (int i = 0; i < s->n_candidates; i++)
        if (memcmp(&s->candidates[i], &t->candidates[i], sizeof s->candidates[i]))
            return 0;
    return 1;
}

static cJSON *model_info(const char *name)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "path", "/models/a&b/\"quoted\".gguf");
    cJSON_AddNumberToObject(m, "n_layers", 4);
    cJSON_AddNumberToObject(m, "dim", 64);
    return m;
}

static cJSON *calib_info(void)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "file", "text/<b>bold</b>.txt");
    cJSON_AddNumberToObject(c, "samples", 64);
    cJSON_AddNumberToObject(c, "seq_len", 256);
    cJSON_AddNumberToObject(c, "seed", 0);
    return c;
}

static void test_ranking(void)
{
    tc_analysis a;
    tc_error err;
    make_small(&a);
    tc_rank_entry *r;
    size_t n;
    CHECK_OK(tc_report_ranking(&a, &r, &n, &err), &err);
    CHECK(n == 11); /* 12 modules, one absent */
    int sorted = 1, absent_seen = 0;
    for (size_t i = 0; i < n; i++) {
        const tc_module_stats *s = &a.layers[r[i].layer].mod[r[i].module];
        sorted &= r[i].importance == 1 - s->cos_mean;
        if (i > 0) {
            sorted &= r[i - 1].importance <= r[i].importance;
            if (r[i - 1].importance == r[i].importance)
                sorted &= r[i - 1].layer < r[i].layer;
        }
        absent_seen |= r[i].layer == 2 && r[i].module == TC_MOD_MLP;
    }
    CHECK(sorted && !absent_seen);
    /* The most redundant is the one with the highest cos. */
    double best = -2;
    for (int l = 0; l < 4; l++)
        for (int m = 0; m < TC_N_MODULES; m++)
            if (a.layers[l].mod[m].present)
                best = fmax(best, a.layers[l].mod[m].cos_mean);
    CHECK(n > 0 && a.layers[r[0].layer].mod[r[0].module].cos_mean == best);
    /* The tie: layer 0 block before layer 3 attn. */
    int i0 = -1, i3 = -1;
    for (size_t i = 0; i < n; i++) {
        if (r[i].layer == 0 && r[i].module == TC_MOD_BLOCK)
            i0 = (int)i;
        if (r[i].layer == 3 && r[i].module == TC_MOD_ATTN)
            i3 = (int)i;
    }
    CHECK(i0 >= 0 && i3 == i0 + 1);
    /* Unmeasured modules carry NaN loss. */
    for (size_t i = 0; i < n; i++)
        if (r[i].layer == 1)
            CHECK(!r[i].measured && isnan(r[i].dnll));

    char *table;
    CHECK_OK(tc_report_table(&a, &table, &err), &err);
    if (table) {
        char first[256] = "";
        const char *nl = strchr(table, '\n');
        CHECK(nl && strstr(table, "ΔNLL") < nl && strstr(table, "importance") < nl);
        if (nl)
            sscanf(nl + 1, "%255[^\n]", first);
        int rank = 0, layer = -1;
        char mod[16] = "";
        double cos = 0;
        CHECK(sscanf(first, "%d %d %15s %lf", &rank, &layer, mod, &cos) == 4);
        CHECK(rank == 1 && layer == r[0].layer && strcmp(mod, tc_module_name(r[0].module)) == 0);
        CHECK_NEAR(cos, r[0].cos, 1e-6);
        /* Every line has the same display width (columns aligned); ΔNLL counts as 4. */
        int lines = 0, aligned = 1;
        size_t width = 0;
        for (const char *s = table; *s;) {
            const char *e = strchr(s, '\n');
            size_t w = (size_t)(e - s);
            const char *d = strstr(s, "ΔNLL");
            if (d && d < e)
                w -= 1;
            if (lines == 0)
                width = w;
            aligned &= w == width;
            lines++;
            s = e + 1;
        }
        CHECK(lines == 12 && aligned);
        /* Unmeasured loss shows as "-". */
        CHECK(strstr(table, " -\n"));
        free(table);
    }
    free(r);
    tc_analysis_free(&a);
}

static void test_json_roundtrip(void)
{
    tc_analysis a, b;
    tc_error err;
    make_small(&a);
    cJSON *model = model_info("stories260K"), *cal = calib_info();
    const char *p = path_of("report.json");
    CHECK_OK(tc_report_write_json(p, &a, model, cal, &err), &err);
    cJSON *m2 = NULL, *c2 = NULL;
    CHECK_OK(tc_report_read(p, &b, &m2, &c2, &err), &err);
    CHECK(same_analysis(&a, &b));
    CHECK(m2 && c2 && cJSON_Compare(model, m2, 1) && cJSON_Compare(cal, c2, 1));
    CHECK(b.layers && b.layers[3].heads == NULL && !b.layers[2].mod[TC_MOD_MLP].present);
    CHECK(b.layers && !b.layers[1].mod[TC_MOD_ATTN].measured && b.layers[0].mod[TC_MOD_ATTN].measured);
    /* Read back and written again: the same bytes. */
    const char *p2 = path_of("again.json");
    CHECK_OK(tc_report_write_json(p2, &b, m2, c2, &err), &err);
    char *t1 = tu_slurp(p), *t2 = tu_slurp(p2);
    CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    free(t1);
    free(t2);
    tc_analysis_free(&b);
    cJSON_Delete(m2);
    cJSON_Delete(c2);

    /* The documented fields are there with the documented types. */
    char *text = tu_slurp(p);
    CHECK(text && text[strlen(text) - 1] == '\n');
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(root != NULL);
    if (root) {
        CHECK(strcmp(cJSON_GetObjectItem(root, "schema")->valuestring, "tc-analyze-report") == 0);
        CHECK(cJSON_GetObjectItem(root, "schema_version")->valueint == 1);
        CHECK(strcmp(cJSON_GetObjectItem(root, "tool_version")->valuestring, tc_version()) == 0);
        const cJSON *l1 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "layers"), 1);
        const cJSON *attn = cJSON_GetObjectItem(l1, "attn");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(attn, "dnll")) && cJSON_IsNull(cJSON_GetObjectItem(attn, "kl")));
        CHECK_NEAR(cJSON_GetObjectItem(attn, "importance")->valuedouble, 1 - a.layers[1].mod[0].cos_mean, 1e-15);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(l1, "heads")) == 3);
        const cJSON *rank = cJSON_GetObjectItem(root, "ranking");
        CHECK(cJSON_GetArraySize(rank) == 11);
        const cJSON *r0 = cJSON_GetArrayItem(rank, 0);
        CHECK(cJSON_IsString(cJSON_GetObjectItem(r0, "module")) && cJSON_IsNumber(cJSON_GetObjectItem(r0, "layer")));
        cJSON_Delete(root);
    }

    /* An empty result is refused rather than written as an unreadable report. */
    tc_analysis none = {0};
    char *txt = NULL;
    CHECK(tc_report_to_json(&none, NULL, NULL, &err) == NULL);
    CHECK(tc_report_table(&none, &txt, &err) == TC_ERR && txt == NULL);
    CHECK(tc_report_write_json(path_of("none.json"), &none, NULL, NULL, &err) == TC_ERR);
    CHECK(strstr(err.msg, "none.json") && access(path_of("none.json"), F_OK) != 0);

    /* NULL info objects are written as empty objects. */
    cJSON *t = tc_report_to_json(&a, NULL, NULL, &err);
    CHECK(t && cJSON_IsObject(cJSON_GetObjectItem(t, "model")) && !cJSON_GetObjectItem(t, "model")->child);
    cJSON_Delete(t);
    cJSON_Delete(model);
    cJSON_Delete(cal);
    tc_analysis_free(&a);
}

/* Applies one change to a valid report and expects a clean refusal. */
typedef void (*mutate_fn)(cJSON *root);

static cJSON *layer0(cJSON *r, const char *mod)
{
    cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "layers"), 0);
    return mod ? cJSON_GetObjectItem(l, mod) : l;
}

static void set(cJSON *obj, const char *key, cJSON *v)
{
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
}

static void m_schema(cJSON *r) { set(r, "schema", cJSON_CreateString("something-else")); }
static void m_no_schema(cJSON *r) { cJSON_DeleteItemFromObject(r, "schema"); }
static void m_version(cJSON *r) { set(r, "schema_version", cJSON_CreateNumber(2)); }
static void m_version_str(cJSON *r) { set(r, "schema_version", cJSON_CreateString("1")); }
static void m_model(cJSON *r) { set(r, "model", cJSON_CreateString("x")); }
static void m_nlayers(cJSON *r) { set(r, "n_layers", cJSON_CreateNumber(5)); }
static void m_nlayers_huge(cJSON *r) { set(r, "n_layers", cJSON_CreateNumber(1e12)); }
static void m_nheads_frac(cJSON *r) { set(r, "n_heads", cJSON_CreateNumber(2.5)); }
static void m_ntokens(cJSON *r) { set(r, "n_tokens", cJSON_CreateNumber(-1)); }
static void m_npred(cJSON *r) { set(r, "n_predicted", cJSON_CreateNumber(1e9)); }
static void m_ppl(cJSON *r) { set(r, "ppl", cJSON_CreateString("3.1")); }
static void m_seconds(cJSON *r) { cJSON_DeleteItemFromObject(r, "seconds"); }
static void m_layers(cJSON *r) { set(r, "layers", cJSON_CreateObject()); }
static void m_layer_type(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "layers"), 0, cJSON_CreateNumber(0)); }
static void m_index(cJSON *r) { set(layer0(r, NULL), "index", cJSON_CreateNumber(3)); }
static void m_cos(cJSON *r) { set(layer0(r, "attn"), "cos", cJSON_CreateNumber(1.5)); }
static void m_cos_str(cJSON *r) { set(layer0(r, "mlp"), "cos", cJSON_CreateString("0.9")); }
static void m_cos_null(cJSON *r) { set(layer0(r, "mlp"), "cos", cJSON_CreateNull()); }
static void m_cos_std(cJSON *r) { set(layer0(r, "block"), "cos_std", cJSON_CreateNumber(-0.5)); }
static void m_cos_min(cJSON *r) { set(layer0(r, "attn"), "cos_min", cJSON_CreateNumber(0.999999)); }
static void m_importance(cJSON *r) { set(layer0(r, "attn"), "importance", cJSON_CreateNumber(0.5)); }
static void m_present(cJSON *r) { set(layer0(r, "attn"), "present", cJSON_CreateNumber(1)); }
static void m_dnll_only(cJSON *r) { set(layer0(r, "attn"), "kl", cJSON_CreateNull()); }
static void m_kl_neg(cJSON *r) { set(layer0(r, "attn"), "kl", cJSON_CreateNumber(-1)); }
static void m_no_mlp(cJSON *r) { cJSON_DeleteItemFromObject(layer0(r, NULL), "mlp"); }
static void m_heads_n(cJSON *r) { cJSON_DeleteItemFromArray(layer0(r, "heads"), 0); }
static void m_heads_mass(cJSON *r) { set(cJSON_GetArrayItem(layer0(r, "heads"), 1), "top10_mass", cJSON_CreateNumber(1.5)); }
static void m_heads_entropy(cJSON *r) { set(cJSON_GetArrayItem(layer0(r, "heads"), 0), "entropy", cJSON_CreateNumber(-1)); }
static void m_head_type(cJSON *r) { cJSON_ReplaceItemInArray(layer0(r, "heads"), 0, cJSON_CreateNull()); }
static void m_rank_mod(cJSON *r) { set(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "ranking"), 0), "module", cJSON_CreateString("ffn")); }
static void m_rank_layer(cJSON *r) { set(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "ranking"), 2), "layer", cJSON_CreateNumber(4)); }
static void m_sink(cJSON *r) { set(cJSON_GetArrayItem(layer0(r, "heads"), 1), "sink", cJSON_CreateNumber(1.5)); }
static void m_head_kl(cJSON *r) { set(cJSON_GetArrayItem(layer0(r, "heads"), 2), "kl", cJSON_CreateNull()); }
static void m_tokens_gone(cJSON *r) { cJSON_DeleteItemFromObject(layer0(r, NULL), "tokens"); }
static void m_keep(cJSON *r) { set(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "layers"), 1), "tokens"), "keep_1pct", cJSON_CreateNumber(2)); }
static void m_drop_len(cJSON *r) { cJSON_DeleteItemFromArray(cJSON_GetObjectItem(cJSON_GetObjectItem(layer0(r, NULL), "tokens"), "drop_dnll"), 0); }
static void m_grid(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tokens"), "grid"), 1, cJSON_CreateNumber(0.95)); }
static void m_chosen(cJSON *r) { set(cJSON_GetObjectItem(r, "tokens"), "chosen", cJSON_CreateNumber(7)); }
static void m_bounds(cJSON *r)
{
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tokens"), "candidates"), 1);
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(c, "boundaries"), 1, cJSON_CreateNumber(0));
}
static void m_curve(cJSON *r) { set(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "heads"), "drop_curve"), 1), "k", cJSON_CreateNumber(1)); }

static void m_rank_absent(cJSON *r)
{
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "ranking"), 0);
    set(e, "layer", cJSON_CreateNumber(2));
    set(e, "module", cJSON_CreateString("mlp"));
}

static void test_hostile(void)
{
    tc_analysis a, b;
    tc_error err;
    make_small(&a);
    cJSON *model = model_info("m"), *cal = calib_info();
    struct {
        const char *name;
        mutate_fn f;
        const char *says;
    } cases[] = {
        {"schema", m_schema, "not a tc-analyze report"},
        {"no-schema", m_no_schema, "not a tc-analyze report"},
        {"version", m_version, "version 2"},
        {"version-str", m_version_str, "schema_version"},
        {"model", m_model, "model"},
        {"nlayers", m_nlayers, "n_layers"},
        {"nlayers-huge", m_nlayers_huge, "n_layers"},
        {"nheads-frac", m_nheads_frac, "integer"},
        {"ntokens", m_ntokens, "n_tokens"},
        {"npred", m_npred, "n_predicted"},
        {"ppl", m_ppl, "ppl"},
        {"seconds", m_seconds, "seconds"},
        {"layers", m_layers, "layers"},
        {"layer-type", m_layer_type, "layers[0]"},
        {"index", m_index, "index"},
        {"cos", m_cos, "layers[0].attn.cos"},
        {"cos-str", m_cos_str, "layers[0].mlp.cos"},
        {"cos-null", m_cos_null, "layers[0].mlp.cos"},
        {"cos-std", m_cos_std, "cos_std"},
        {"cos-min", m_cos_min, "cos_min"},
        {"importance", m_importance, "importance"},
        {"present", m_present, "present"},
        {"dnll-only", m_dnll_only, "both"},
        {"kl-neg", m_kl_neg, "kl"},
        {"no-mlp", m_no_mlp, "mlp"},
        {"heads-n", m_heads_n, "heads"},
        {"heads-mass", m_heads_mass, "top10_mass"},
        {"heads-entropy", m_heads_entropy, "entropy"},
        {"head-type", m_head_type, "heads[0]"},
        {"rank-mod", m_rank_mod, "module"},
        {"rank-layer", m_rank_layer, "ranking[2]"},
        {"rank-absent", m_rank_absent, "absent"},
        {"sink", m_sink, "heads[1].sink"},
        {"head-kl", m_head_kl, "both"},
        {"tokens-gone", m_tokens_gone, "layers[0].tokens"},
        {"keep", m_keep, "layers[1].tokens.keep_1pct"},
        {"drop-len", m_drop_len, "drop_dnll"},
        {"grid", m_grid, "grid"},
        {"chosen", m_chosen, "chosen"},
        {"bounds", m_bounds, "boundaries"},
        {"curve", m_curve, "increase"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *root = tc_report_to_json(&a, model, cal, &err);
        cases[i].f(root);
        char *text = cJSON_Print(root);
        cJSON_Delete(root);
        char name[64];
        snprintf(name, sizeof name, "bad-%s.json", cases[i].name);
        const char *p = write_text(name, text);
        free(text);
        cJSON *m2 = (cJSON *)1, *c2 = (cJSON *)1;
        int rc = tc_report_read(p, &b, &m2, &c2, &err);
        CHECK_MSG(rc == TC_ERR, "%s accepted", name);
        CHECK_MSG(strstr(err.msg, name) && strstr(err.msg, cases[i].says), "%s: %s", name, err.msg);
        CHECK(b.layers == NULL && m2 == NULL && c2 == NULL);
        if (rc == TC_OK)
            tc_analysis_free(&b);
    }

    /* Not JSON, the wrong JSON, a truncated report at many lengths. */
    const char *texts[] = {"", "not json", "[1, 2]", "{\"schema\": \"tc-analyze-report\"", "null",
                           "{\"schema\": 5}"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        const char *p = write_text("junk.json", texts[i]);
        CHECK(tc_report_read(p, &b, NULL, NULL, &err) == TC_ERR);
        CHECK_MSG(strstr(err.msg, "junk.json"), "%s", err.msg);
    }
    cJSON *root = tc_report_to_json(&a, model, cal, &err);
    char *full = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t n = strlen(full);
    int all_refused = 1;
    for (size_t k = 0; k < n; k += 7) {
        if (tc_report_parse(full, k, "cut.json", &b, NULL, NULL, &err) == TC_OK) {
            all_refused = 0;
            tc_analysis_free(&b);
        } else if (!strstr(err.msg, "cut.json")) {
            all_refused = 0;
        }
    }
    CHECK(all_refused);
    CHECK_OK(tc_report_parse(full, n, "full.json", &b, NULL, NULL, &err), &err);
    tc_analysis_free(&b);
    free(full);
    CHECK(tc_report_read(path_of("absent.json"), &b, NULL, NULL, &err) == TC_ERR);
    CHECK(strstr(err.msg, "absent.json"));
    cJSON_Delete(model);
    cJSON_Delete(cal);
    tc_analysis_free(&a);
}

static size_t count(const char *hay, const char *needle)
{
    size_t k = 0;
    for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle))
        k++;
    return k;
}

static const char *find_browser(void)
{
    const char *browsers[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"};
    for (size_t i = 0; i < 3; i++)
        if (access(browsers[i], X_OK) == 0)
            return browsers[i];
    return NULL;
}

/* The page as the browser lays it out: a copy of it with a script (the
 * test's, not the report's: reports hold none) that writes, for every SVG,
 * its label, its laid-out size and how many of its shapes have a non-empty
 * box, into the DOM that --dump-dom prints.  Returns the line
 * "SVGCHECK label|WxH|shapes;... END" (malloc'd), or NULL (the script
 * spells both markers in pieces, so that only its output holds them). */
static char *laid_out(const char *browser, const char *html_path)
{
    char *html = tu_slurp(html_path);
    const char *end = html ? strstr(html, "</body>") : NULL;
    if (!end) {
        free(html);
        return NULL;
    }
    static const char script[] =
        "<script>(function(){var s=document.querySelectorAll('svg'),o=[];"
        "for(var i=0;i<s.length;i++){var b=s[i].getBoundingClientRect(),n=0,"
        "e=s[i].querySelectorAll('rect,circle,path,line');"
        "for(var j=0;j<e.length;j++){var q=e[j].getBBox();if(q.width>0||q.height>0)n++;}"
        "o.push(s[i].getAttribute('aria-label')+'|'+Math.round(b.width)+'x'+Math.round(b.height)+'|'+n);}"
        "var p=document.createElement('pre');p.textContent='SVG'+'CHECK '+o.join(';')+' E'+'ND';"
        "document.body.appendChild(p);})();</script>";
    const char *copy = path_of("laid-out.html");
    FILE *f = fopen(copy, "wb");
    if (!f) {
        free(html);
        return NULL;
    }
    fwrite(html, 1, (size_t)(end - html), f);
    fputs(script, f);
    fputs(end, f);
    fclose(f);
    free(html);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout 120 %s --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome2 --window-size=1000,2600 "
             "--dump-dom file://%s 2>/dev/null > %s",
             browser, dir, copy, path_of("dom.txt"));
    if (system(cmd) != 0)
        return NULL;
    char *dom = tu_slurp(path_of("dom.txt"));
    char *at = dom ? strstr(dom, "SVGCHECK ") : NULL, *stop = at ? strstr(at, " END") : NULL;
    char *line = NULL;
    if (stop) {
        line = strndup(at, (size_t)(stop - at) + 4);
    }
    free(dom);
    return line;
}

/* Every chart laid out with a size and shapes of non-zero extent. */
static void check_laid_out(const char *browser, const char *html_path, const char *const *labels, size_t n_labels)
{
    char *line = laid_out(browser, html_path);
    CHECK_MSG(line != NULL, "the browser did not lay out %s", html_path);
    if (!line)
        return;
    printf("laid out: %s\n", line);
    int charts = 0;
    for (char *item = line + 9; item && *item && strncmp(item, "END", 3);) {
        char label[128] = "";
        int w = 0, h = 0, shapes = 0;
        if (sscanf(item, "%127[^|]|%dx%d|%d", label, &w, &h, &shapes) == 4) {
            CHECK_MSG(w > 100 && h > 100 && shapes >= 5, "chart '%s' laid out %dx%d with %d shapes", label, w, h,
                      shapes);
            charts++;
        }
        item = strchr(item, ';');
        item = item ? item + 1 : NULL;
    }
    for (size_t i = 0; i < n_labels; i++)
        CHECK_MSG(strstr(line, labels[i]), "no chart '%s' in the laid-out page", labels[i]);
    CHECK(charts == 7);
    free(line);
}

/* Renders the page with a headless browser when one is installed; returns 0
 * when it did and the picture is more than a blank page. */
static int screenshot(const char *html_path, const char *png_path)
{
    const char *browser = find_browser();
    if (!browser)
        return 77;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout 120 %s --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=%s/chrome "
             "--window-size=1000,2600 --screenshot=%s file://%s >/dev/null 2>&1",
             browser, dir, png_path, html_path);
    if (system(cmd) != 0)
        return 1;
    FILE *f = fopen(png_path, "rb");
    if (!f)
        return 1;
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, 8, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    printf("rendered %s (%ld bytes)\n", png_path, size);
    /* A blank 1000x2600 page compresses to a few kilobytes; charts and text make it far larger. */
    return got == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0 && size > 40000 ? 0 : 1;
}

static void test_html(void)
{
    tc_analysis a;
    tc_error err;
    make_small(&a);
    cJSON *model = model_info("<script>alert('x')</script> & \"friends\""), *cal = calib_info();
    char *html;
    CHECK_OK(tc_report_html(&a, model, cal, &html, &err), &err);
    if (html) {
        CHECK(strncmp(html, "<!DOCTYPE html>", 15) == 0 && strstr(html, "</html>"));
        /* Cosine, loss, entropy; head importance, sinks, keep ratio, schedule. */
        CHECK(count(html, "<svg") == 7 && count(html, "</svg>") == 7);
        CHECK(!strstr(html, "<script") && !strstr(html, "<b>"));
        CHECK(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;friends&quot;"));
        CHECK(strstr(html, "text/&lt;b&gt;bold&lt;/b&gt;.txt"));
        CHECK(strstr(html, "/models/a&amp;b/&quot;quoted&quot;.gguf"));
        /* No external resources: nothing fetched from anywhere. */
        CHECK(!strstr(html, "src=") && !strstr(html, "href=") && !strstr(html, "@import") &&
              !strstr(html, "url(http"));
        for (int l = 0; l < a.n_layers; l++) {
            char label[32];
            snprintf(label, sizeof label, "<title>layer %d ", l);
            CHECK_MSG(strstr(html, label), "no label for layer %d", l);
        }
        /* Every head of the measured layers has a heat-map cell; layer 3's are grey. */
        CHECK(count(html, "nats, top-10% mass") == 9);
        CHECK(count(html, "not measured</title>") == 3);
        /* Ranked table: 11 rows; the schedules' table: 2. */
        CHECK(count(html, "<tr><td>") == 13);
        /* Every head has an importance cell, layer 3's grey; each layer with a
         * keep ratio two points (the first layer has none). */
        CHECK(count(html, "masked alone ΔNLL") == 9 && count(html, "not masked</title>") == 3);
        CHECK(count(html, "of the droppable tokens: NLL within") == 6);
        CHECK(strstr(html, "(chosen)"));
        /* Every chart of the page has a caption; nothing here stands out, so no axis is cut. */
        CHECK(count(html, "<p class=\"caption\">") == 3);
        CHECK(!strstr(html, "The axis is cut"));
        free(html);
    }
    tc_analysis_free(&a);

    /* One layer dominating (its block costs 5 nats skipped, its attention
     * has cosine 0.1): both axes are cut below it, so that the rest stay
     * readable, and it is drawn broken / on the axis with its value. */
    make_analysis(&a, 16, 8);
    double second = 0;
    for (int l = 1; l < a.n_layers; l++)
        for (int m = 0; m < TC_N_MODULES; m++)
            second = fmax(second, a.layers[l].mod[m].dnll);
    a.layers[0].mod[TC_MOD_BLOCK].dnll = 5.0;
    a.layers[0].mod[TC_MOD_ATTN].cos_mean = 0.1;
    CHECK_OK(tc_report_html(&a, model, cal, &html, &err), &err);
    if (html) {
        CHECK(count(html, "The axis is cut at") == 2);
        CHECK(count(html, "above the cut axis</title>") == 1 && count(html, "below the cut axis</title>") == 1);
        const char *c = strstr(html, "the broken bars");
        const char *at = c ? strstr(html, "The axis is cut at") : NULL;
        at = at ? strstr(at + 1, "The axis is cut at") : NULL; /* the loss chart's, after the cosine's */
        double cut = at ? strtod(at + strlen("The axis is cut at"), NULL) : 0;
        CHECK_MSG(cut >= second && cut < 2 * second, "the loss axis is cut at %g; the next largest bar is %g", cut,
                  second);
        free(html);
    }
    const char *p = path_of("report.html");
    CHECK_OK(tc_report_write_html(p, &a, model, cal, &err), &err);
    char *back = tu_slurp(p);
    CHECK(back && strstr(back, "<svg"));
    free(back);
    CHECK(tc_report_write_html(path_of("no/such/dir/r.html"), &a, model, cal, &err) == TC_ERR);
    CHECK(strstr(err.msg, "r.html"));
    tc_analysis_free(&a);
    cJSON_Delete(model);

    /* A realistic 16-layer, 8-head page, rendered by a browser if there is one. */
    make_analysis(&a, 16, 8);
    model = model_info("deep16-hf");
    p = path_of("deep16.html");
    CHECK_OK(tc_report_write_html(p, &a, model, cal, &err), &err);
    int rc = screenshot(p, path_of("deep16.png"));
    if (rc == 77) {
        printf("note: no headless browser installed, rendering check skipped\n");
    } else {
        CHECK_MSG(rc == 0, "the browser did not render %s into a useful picture", p);
        static const char *const labels[] = {
            "cosine similarity per layer", "increase in loss per layer when a module is skipped",
            "attention entropy per head", "measured loss of masking each head", "weight on the first token by layer",
            "keep ratio by layer", "token schedule"};
        check_laid_out(find_browser(), p, labels, sizeof labels / sizeof *labels);
    }
    tc_analysis_free(&a);
    cJSON_Delete(model);
    cJSON_Delete(cal);
}

int main(void)
{
    if (!tu_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_ranking();
    test_json_roundtrip();
    test_hostile();
    test_html();
    return tu_finish("test_report");
}
