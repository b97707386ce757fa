#include "tc/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"
#include "tc/mapfile.h"
#include "tc/outfile.h"
#include "tc/version.h"

/* ------------------------------------------------------------- ranking */

static double rank_key(double importance)
{
    return isnan(importance) ? INFINITY : importance;
}

static int rank_cmp(const void *pa, const void *pb)
{
    const tc_rank_entry *a = pa, *b = pb;
    double ka = rank_key(a->importance), kb = rank_key(b->importance);
    if (ka != kb)
        return ka < kb ? -1 : 1;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return (int)a->module - (int)b->module;
}

int tc_report_ranking(const tc_analysis *a, tc_rank_entry **out, size_t *n, tc_error *err)
{
    *out = NULL;
    *n = 0;
    if (a->n_layers <= 0 || !a->layers)
        return TC_OK;
    tc_rank_entry *r = malloc((size_t)a->n_layers * TC_N_MODULES * sizeof *r);
    if (!r)
        return tc_err(err, "out of memory ranking %d layers", a->n_layers);
    size_t k = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < TC_N_MODULES; m++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (!s->present)
                continue;
            r[k++] = (tc_rank_entry){.layer = l, .module = (tc_module)m, .cos = s->cos_mean,
                                     .importance = 1.0 - s->cos_mean, .measured = s->measured,
                                     .dnll = s->measured ? s->dnll : NAN, .kl = s->measured ? s->kl : NAN};
        }
    qsort(r, k, sizeof *r, rank_cmp);
    if (k == 0) {
        free(r);
        r = NULL;
    }
    *out = r;
    *n = k;
    return TC_OK;
}

/* ------------------------------------------------------- JSON: writing */

/* Adds v under key; a failed allocation anywhere clears *ok, so the
 * builders read straight and check once at the end. */
void tc_json_put(cJSON *obj, const char *key, cJSON *v, int *ok)
{
    if (!v || !obj || !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        *ok = 0;
    }
}

/* cJSON prints doubles with 15 digits and accepts an approximate match, so
 * values would not survive a round trip; this writes the shortest decimal
 * that reads back to exactly v.  Non-finite values become null. */
cJSON *tc_json_num(double v)
{
    if (!isfinite(v))
        return cJSON_CreateNull();
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *module_json(const tc_module_stats *s, int *ok)
{
    cJSON *o = cJSON_CreateObject();
    int p = s->present;
    tc_json_put(o, "present", cJSON_CreateBool(p), ok);
    tc_json_put(o, "cos", tc_json_num(p ? s->cos_mean : NAN), ok);
    tc_json_put(o, "cos_std", tc_json_num(p ? s->cos_std : NAN), ok);
    tc_json_put(o, "cos_min", tc_json_num(p ? s->cos_min : NAN), ok);
    tc_json_put(o, "importance", tc_json_num(p ? 1.0 - s->cos_mean : NAN), ok);
    tc_json_put(o, "dnll", tc_json_num(p && s->measured ? s->dnll : NAN), ok);
    tc_json_put(o, "kl", tc_json_num(p && s->measured ? s->kl : NAN), ok);
    return o;
}

static cJSON *layer_json(const tc_analysis *a, int l, int *ok)
{
    const tc_layer_stats *ls = &a->layers[l];
    cJSON *o = cJSON_CreateObject();
    tc_json_put(o, "index", cJSON_CreateNumber(l), ok);
    for (int m = 0; m < TC_N_MODULES; m++)
        tc_json_put(o, tc_module_name((tc_module)m), module_json(&ls->mod[m], ok), ok);
    cJSON *heads = cJSON_CreateArray();
    for (int h = 0; ls->heads && h < a->n_heads; h++) {
        cJSON *e = cJSON_CreateObject();
        tc_json_put(e, "entropy", tc_json_num(ls->heads[h].entropy), ok);
        tc_json_put(e, "top10_mass", tc_json_num(ls->heads[h].top10_mass), ok);
        if (!e || !heads || !cJSON_AddItemToArray(heads, e)) {
            cJSON_Delete(e);
            *ok = 0;
        }
    }
    tc_report_attn_layer_json(a, l, o, heads, ok);
    tc_json_put(o, "heads", heads, ok);
    return o;
}

static cJSON *ranking_json(const tc_rank_entry *r, size_t n, int *ok)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        tc_json_put(e, "rank", cJSON_CreateNumber((double)(i + 1)), ok);
        tc_json_put(e, "layer", cJSON_CreateNumber(r[i].layer), ok);
        tc_json_put(e, "module", cJSON_CreateString(tc_module_name(r[i].module)), ok);
        tc_json_put(e, "cos", tc_json_num(r[i].cos), ok);
        tc_json_put(e, "importance", tc_json_num(r[i].importance), ok);
        tc_json_put(e, "dnll", tc_json_num(r[i].dnll), ok);
        tc_json_put(e, "kl", tc_json_num(r[i].kl), ok);
        if (!e || !arr || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            *ok = 0;
        }
    }
    return arr;
}

static cJSON *copy_object(const cJSON *o)
{
    return o ? cJSON_Duplicate(o, 1) : cJSON_CreateObject();
}

static int check_analysis(const tc_analysis *a, tc_error *err)
{
    if (a->n_layers < 1 || a->n_layers > TC_REPORT_MAX_LAYERS || !a->layers)
        return tc_err(err, "report: invalid layer count %d", a->n_layers);
    if (a->n_heads < 0 || a->n_heads > TC_REPORT_MAX_HEADS)
        return tc_err(err, "report: invalid head count %d", a->n_heads);
    return TC_OK;
}

cJSON *tc_report_to_json(const tc_analysis *a, const cJSON *model, const cJSON *calibration, tc_error *err)
{
    if (check_analysis(a, err))
        return NULL;
    if ((model && !cJSON_IsObject(model)) || (calibration && !cJSON_IsObject(calibration))) {
        tc_err(err, "report: the model and calibration information must be JSON objects");
        return NULL;
    }
    tc_rank_entry *rank;
    size_t n_rank;
    if (tc_report_ranking(a, &rank, &n_rank, err))
        return NULL;
    int ok = 1;
    cJSON *root = cJSON_CreateObject();
    tc_json_put(root, "schema", cJSON_CreateString(TC_REPORT_SCHEMA), &ok);
    tc_json_put(root, "schema_version", cJSON_CreateNumber(TC_REPORT_SCHEMA_VERSION), &ok);
    tc_json_put(root, "tool_version", cJSON_CreateString(tc_version()), &ok);
    tc_json_put(root, "model", copy_object(model), &ok);
    tc_json_put(root, "calibration", copy_object(calibration), &ok);
    tc_json_put(root, "ppl", tc_json_num(a->ppl), &ok);
    tc_json_put(root, "nll", tc_json_num(a->nll), &ok);
    tc_json_put(root, "n_tokens", tc_json_num((double)a->n_tokens), &ok);
    tc_json_put(root, "n_predicted", tc_json_num((double)a->n_predicted), &ok);
    tc_json_put(root, "seconds", tc_json_num(a->seconds), &ok);
    tc_json_put(root, "n_layers", cJSON_CreateNumber(a->n_layers), &ok);
    tc_json_put(root, "n_heads", cJSON_CreateNumber(a->n_heads), &ok);
    cJSON *layers = cJSON_CreateArray();
    for (int l = 0; l < a->n_layers; l++) {
        cJSON *e = layer_json(a, l, &ok);
        if (!e || !layers || !cJSON_AddItemToArray(layers, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
    }
    tc_json_put(root, "layers", layers, &ok);
    tc_json_put(root, "ranking", ranking_json(rank, n_rank, &ok), &ok);
    tc_report_attn_root_json(a, root, &ok);
    free(rank);
    if (!ok) {
        cJSON_Delete(root);
        tc_err(err, "report: out of memory building the JSON report");
        return NULL;
    }
    return root;
}

static int write_atomically(const char *path, const char *text, size_t n, tc_error *err)
{
    tc_outfile o;
    if (tc_outfile_open(&o, path, err))
        return TC_ERR;
    if (tc_outfile_write(&o, text, n, err) || tc_outfile_commit(&o, err)) {
        tc_outfile_abort(&o);
        return TC_ERR;
    }
    return TC_OK;
}

int tc_report_write_json(const char *path, const tc_analysis *a, const cJSON *model, const cJSON *calibration,
                         tc_error *err)
{
    cJSON *root = tc_report_to_json(a, model, calibration, err);
    if (!root)
        return tc_err_prefix(err, "%s", path);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return tc_err(err, "%s: out of memory printing the report", path);
    tc_outfile o;
    int rc = tc_outfile_open(&o, path, err);
    /* cJSON_Print leaves out the final newline that text files end with. */
    if (rc == TC_OK && (tc_outfile_write(&o, text, strlen(text), err) || tc_outfile_write(&o, "\n", 1, err) ||
                        tc_outfile_commit(&o, err))) {
        tc_outfile_abort(&o);
        rc = TC_ERR;
    }
    free(text);
    return rc;
}

/* ------------------------------------------------------- JSON: reading */

const cJSON *tc_jfield(const tc_jwhere *w, const cJSON *obj, const char *key, tc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v && w->path[0])
        tc_err(err, "%s: %s has no \"%s\" field", w->file, w->path, key);
    else if (!v)
        tc_err(err, "%s: the report has no \"%s\" field", w->file, key);
    return v;
}

/* A finite number in [lo, hi]; with nullable, JSON null reads as NaN. */
int tc_jwant_num(const tc_jwhere *w, const cJSON *obj, const char *key, double lo, double hi, int nullable,
                    double *out, tc_error *err)
{
    const cJSON *v = tc_jfield(w, obj, key, err);
    if (!v)
        return TC_ERR;
    const char *dot = w->path[0] ? "." : "";
    if (nullable && cJSON_IsNull(v)) {
        *out = NAN;
        return TC_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return tc_err(err, "%s: %s%s%s must be a number%s", w->file, w->path, dot, key, nullable ? " or null" : "");
    if (v->valuedouble < lo || v->valuedouble > hi)
        return tc_err(err, "%s: %s%s%s = %g is outside the valid range [%g, %g]", w->file, w->path, dot, key,
                      v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return TC_OK;
}

int tc_jwant_int(const tc_jwhere *w, const cJSON *obj, const char *key, double lo, double hi, int64_t *out,
                    tc_error *err)
{
    double d = 0;
    if (tc_jwant_num(w, obj, key, lo, hi, 0, &d, err))
        return TC_ERR;
    if (d != floor(d))
        return tc_err(err, "%s: %s%s%s must be an integer", w->file, w->path, w->path[0] ? "." : "", key);
    *out = (int64_t)d;
    return TC_OK;
}

const cJSON *tc_jwant_type(const tc_jwhere *w, const cJSON *obj, const char *key, int (*is)(const cJSON *),
                              const char *what, tc_error *err)
{
    const cJSON *v = tc_jfield(w, obj, key, err);
    if (v && !is(v)) {
        tc_err(err, "%s: %s%s%s must be %s", w->file, w->path, w->path[0] ? "." : "", key, what);
        return NULL;
    }
    return v;
}

int tc_jis_object(const cJSON *v) { return cJSON_IsObject(v); }
int tc_jis_array(const cJSON *v) { return cJSON_IsArray(v); }
int tc_jis_string(const cJSON *v) { return cJSON_IsString(v); }
int tc_jis_bool(const cJSON *v) { return cJSON_IsBool(v); }

#define COS_EPS 1e-6

static int read_module(const tc_jwhere *lw, const cJSON *layer, tc_module m, tc_module_stats *s, tc_error *err)
{
    tc_jwhere w = {.file = lw->file};
    const cJSON *o = tc_jwant_type(lw, layer, tc_module_name(m), tc_jis_object, "an object", err);
    if (!o)
        return TC_ERR;
    snprintf(w.path, sizeof w.path, "%s.%s", lw->path, tc_module_name(m));
    const cJSON *present = tc_jwant_type(&w, o, "present", tc_jis_bool, "true or false", err);
    if (!present)
        return TC_ERR;
    memset(s, 0, sizeof *s);
    if (!cJSON_IsTrue(present))
        return TC_OK;
    s->present = 1;
    double importance = 0, dnll = 0, kl = 0;
    if (tc_jwant_num(&w, o, "cos", -1 - COS_EPS, 1 + COS_EPS, 0, &s->cos_mean, err) ||
        tc_jwant_num(&w, o, "cos_std", 0, 2 + COS_EPS, 0, &s->cos_std, err) ||
        tc_jwant_num(&w, o, "cos_min", -1 - COS_EPS, 1 + COS_EPS, 0, &s->cos_min, err) ||
        tc_jwant_num(&w, o, "importance", -COS_EPS, 2 + COS_EPS, 0, &importance, err) ||
        tc_jwant_num(&w, o, "dnll", -1e9, 1e9, 1, &dnll, err) || tc_jwant_num(&w, o, "kl", -COS_EPS, 1e9, 1, &kl, err))
        return TC_ERR;
    if (s->cos_min > s->cos_mean + COS_EPS)
        return tc_err(err, "%s: %s.cos_min %g is larger than its mean cos %g", w.file, w.path, s->cos_min,
                      s->cos_mean);
    if (fabs(importance - (1.0 - s->cos_mean)) > 1e-9)
        return tc_err(err, "%s: %s.importance %g is not 1 - cos (%g)", w.file, w.path, importance,
                      1.0 - s->cos_mean);
    if (isnan(dnll) != isnan(kl))
        return tc_err(err, "%s: %s: dnll and kl must both be measured or both be null", w.file, w.path);
    s->measured = !isnan(dnll);
    s->dnll = s->measured ? dnll : 0;
    s->kl = s->measured ? kl : 0;
    return TC_OK;
}

static int read_heads(const tc_jwhere *w, const cJSON *layer, int n_heads, tc_layer_stats *ls, tc_error *err)
{
    const cJSON *heads = tc_jwant_type(w, layer, "heads", tc_jis_array, "an array", err);
    if (!heads)
        return TC_ERR;
    int n = cJSON_GetArraySize(heads);
    if (n == 0)
        return TC_OK;
    if (n != n_heads)
        return tc_err(err, "%s: %s.heads has %d entries, but n_heads is %d", w->file, w->path, n, n_heads);
    ls->heads = calloc((size_t)n, sizeof *ls->heads);
    if (!ls->heads)
        return tc_err(err, "%s: out of memory", w->file);
    int h = 0;
    for (const cJSON *e = heads->child; e; e = e->next, h++) {
        tc_jwhere hw = {.file = w->file};
        snprintf(hw.path, sizeof hw.path, "%s.heads[%d]", w->path, h);
        if (!cJSON_IsObject(e))
            return tc_err(err, "%s: %s must be an object", w->file, hw.path);
        if (tc_jwant_num(&hw, e, "entropy", 0, 1e3, 1, &ls->heads[h].entropy, err) ||
            tc_jwant_num(&hw, e, "top10_mass", 0, 1 + COS_EPS, 1, &ls->heads[h].top10_mass, err) ||
            tc_report_attn_read_head(&hw, e, &ls->heads[h], err))
            return TC_ERR;
    }
    return TC_OK;
}

static int read_layers(const tc_jwhere *top, const cJSON *root, tc_analysis *a, tc_error *err)
{
    const cJSON *layers = tc_jwant_type(top, root, "layers", tc_jis_array, "an array", err);
    if (!layers)
        return TC_ERR;
    if (cJSON_GetArraySize(layers) != a->n_layers)
        return tc_err(err, "%s: the layers array has %d entries, but n_layers is %d", top->file,
                      cJSON_GetArraySize(layers), a->n_layers);
    a->layers = calloc((size_t)a->n_layers, sizeof *a->layers);
    if (!a->layers)
        return tc_err(err, "%s: out of memory", top->file);
    int l = 0;
    for (const cJSON *e = layers->child; e; e = e->next, l++) {
        tc_jwhere w = {.file = top->file};
        snprintf(w.path, sizeof w.path, "layers[%d]", l);
        int64_t index = 0;
        if (!cJSON_IsObject(e))
            return tc_err(err, "%s: %s must be an object", w.file, w.path);
        if (tc_jwant_int(&w, e, "index", 0, TC_REPORT_MAX_LAYERS, &index, err))
            return TC_ERR;
        if (index != l)
            return tc_err(err, "%s: %s has index %lld; layers must be listed in order", w.file, w.path,
                          (long long)index);
        for (int m = 0; m < TC_N_MODULES; m++)
            if (read_module(&w, e, (tc_module)m, &a->layers[l].mod[m], err))
                return TC_ERR;
        if (read_heads(&w, e, a->n_heads, &a->layers[l], err) ||
            tc_report_attn_read_layer(&w, e, a, &a->layers[l].tokens, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int module_from_name(const char *s)
{
    for (int m = 0; m < TC_N_MODULES; m++)
        if (strcmp(s, tc_module_name((tc_module)m)) == 0)
            return m;
    return -1;
}

/* The ranking is derived data: checked for shape, then recomputed by whoever needs it. */
static int read_ranking(const tc_jwhere *top, const cJSON *root, const tc_analysis *a, tc_error *err)
{
    const cJSON *r = tc_jwant_type(top, root, "ranking", tc_jis_array, "an array", err);
    if (!r)
        return TC_ERR;
    int i = 0;
    for (const cJSON *e = r->child; e; e = e->next, i++) {
        tc_jwhere w = {.file = top->file};
        snprintf(w.path, sizeof w.path, "ranking[%d]", i);
        int64_t layer = 0;
        if (!cJSON_IsObject(e))
            return tc_err(err, "%s: %s must be an object", w.file, w.path);
        const cJSON *mod = tc_jwant_type(&w, e, "module", tc_jis_string, "a string", err);
        if (!mod || tc_jwant_int(&w, e, "layer", 0, a->n_layers - 1, &layer, err))
            return TC_ERR;
        int m = module_from_name(mod->valuestring);
        if (m < 0)
            return tc_err(err, "%s: %s.module must be attn, mlp or block", w.file, w.path);
        if (!a->layers[layer].mod[m].present)
            return tc_err(err, "%s: %s names layer %lld %s, which the layers array marks absent", w.file, w.path,
                          (long long)layer, mod->valuestring);
    }
    return TC_OK;
}

static int read_header(const tc_jwhere *top, const cJSON *root, tc_error *err)
{
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, TC_REPORT_SCHEMA) != 0)
        return tc_err(err, "%s: not a tc-analyze report (its \"schema\" field is not \"%s\")", top->file,
                      TC_REPORT_SCHEMA);
    int64_t version = 0;
    if (tc_jwant_int(top, root, "schema_version", 0, 1e9, &version, err))
        return TC_ERR;
    if (version != TC_REPORT_SCHEMA_VERSION)
        return tc_err(err, "%s: report schema version %lld is not supported (this build reads version %d)",
                      top->file, (long long)version, TC_REPORT_SCHEMA_VERSION);
    if (!tc_jwant_type(top, root, "tool_version", tc_jis_string, "a string", err))
        return TC_ERR;
    return TC_OK;
}

static int read_summary(const tc_jwhere *top, const cJSON *root, tc_analysis *a, tc_error *err)
{
    const double max_count = 9007199254740992.0; /* 2^53: larger counts do not survive JSON numbers */
    int64_t n_tokens = 0, n_predicted = 0, n_layers = 0, n_heads = 0;
    if (tc_jwant_num(top, root, "ppl", 1 - COS_EPS, INFINITY, 1, &a->ppl, err) ||
        tc_jwant_num(top, root, "nll", -COS_EPS, 1e6, 1, &a->nll, err) ||
        tc_jwant_int(top, root, "n_tokens", 0, max_count, &n_tokens, err) ||
        tc_jwant_int(top, root, "n_predicted", 0, max_count, &n_predicted, err) ||
        tc_jwant_num(top, root, "seconds", 0, 1e12, 0, &a->seconds, err) ||
        tc_jwant_int(top, root, "n_layers", 1, TC_REPORT_MAX_LAYERS, &n_layers, err) ||
        tc_jwant_int(top, root, "n_heads", 0, TC_REPORT_MAX_HEADS, &n_heads, err))
        return TC_ERR;
    if (n_predicted > n_tokens)
        return tc_err(err, "%s: n_predicted (%lld) exceeds n_tokens (%lld)", top->file, (long long)n_predicted,
                      (long long)n_tokens);
    a->n_tokens = (uint64_t)n_tokens;
    a->n_predicted = (uint64_t)n_predicted;
    a->n_layers = (int)n_layers;
    a->n_heads = (int)n_heads;
    return TC_OK;
}

static int read_root(const char *name, const cJSON *root, tc_analysis *a, cJSON **model, cJSON **calibration,
                     tc_error *err)
{
    tc_jwhere top = {.file = name};
    if (!cJSON_IsObject(root))
        return tc_err(err, "%s: not a tc-analyze report (the top level is not a JSON object)", name);
    const cJSON *m, *c;
    if (read_header(&top, root, err) || !(m = tc_jwant_type(&top, root, "model", tc_jis_object, "an object", err)) ||
        !(c = tc_jwant_type(&top, root, "calibration", tc_jis_object, "an object", err)) ||
        read_summary(&top, root, a, err) || tc_report_attn_read_root(&top, root, a, err) ||
        read_layers(&top, root, a, err) || read_ranking(&top, root, a, err))
        return TC_ERR;
    if ((model && !(*model = cJSON_Duplicate(m, 1))) || (calibration && !(*calibration = cJSON_Duplicate(c, 1))))
        return tc_err(err, "%s: out of memory", name);
    return TC_OK;
}

int tc_report_parse(const char *text, size_t len, const char *name, tc_analysis *a, cJSON **model,
                    cJSON **calibration, tc_error *err)
{
    memset(a, 0, sizeof *a);
    if (model)
        *model = NULL;
    if (calibration)
        *calibration = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return tc_err(err, "%s: not valid JSON (near byte %zu)", name, at);
    }
    int rc = read_root(name, root, a, model, calibration, err);
    cJSON_Delete(root);
    if (rc) {
        tc_analysis_free(a);
        if (model) {
            cJSON_Delete(*model);
            *model = NULL;
        }
        if (calibration) {
            cJSON_Delete(*calibration);
            *calibration = NULL;
        }
    }
    return rc;
}

int tc_report_read(const char *path, tc_analysis *a, cJSON **model, cJSON **calibration, tc_error *err)
{
    memset(a, 0, sizeof *a);
    char *text;
    uint64_t len;
    if (tc_read_small_file(path, TC_REPORT_MAX_BYTES, &text, &len, err))
        return TC_ERR;
    int rc = tc_report_parse(text, (size_t)len, path, a, model, calibration, err);
    free(text);
    return rc;
}

/* ----------------------------------------------------- growable text */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void tc_sb_printf(tc_sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if (b->p && (size_t)k < b->cap - b->n) {
        b->n += (size_t)k;
        return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n <= (size_t)k)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void tc_sb_put(tc_sbuf *b, const char *s)
{
    tc_sb_printf(b, "%s", s);
}

/* Text from files (model names, paths) goes into the page only through here. */
void tc_sb_escape(tc_sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': tc_sb_put(b, "&amp;"); break;
        case '<': tc_sb_put(b, "&lt;"); break;
        case '>': tc_sb_put(b, "&gt;"); break;
        case '"': tc_sb_put(b, "&quot;"); break;
        case '\'': tc_sb_put(b, "&#39;"); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                tc_sb_put(b, " ");
            else
                tc_sb_printf(b, "%c", *s);
        }
    }
}

int tc_sb_finish(tc_sbuf *b, char **out, const char *what, tc_error *err)
{
    if (b->oom || !b->p) {
        free(b->p);
        *out = NULL;
        return tc_err(err, "report: out of memory rendering the %s", what);
    }
    *out = b->p;
    return TC_OK;
}

/* ------------------------------------------------------- text table */

void tc_fmt_num(char *buf, size_t n, const char *fmt, double v)
{
    if (isfinite(v))
        snprintf(buf, n, fmt, v);
    else
        snprintf(buf, n, "-");
}

int tc_report_table(const tc_analysis *a, char **out, tc_error *err)
{
    *out = NULL;
    if (check_analysis(a, err))
        return TC_ERR;
    tc_rank_entry *r;
    size_t n;
    if (tc_report_ranking(a, &r, &n, err))
        return TC_ERR;
    int wr = 4;
    for (size_t k = n; k >= 10000; k /= 10)
        wr++;
    tc_sbuf b = {0};
    /* "ΔNLL" is five bytes but four columns wide, hence the hand-made padding. */
    tc_sb_printf(&b, "%*s  %5s  %-6s  %9s  %10s  %6sΔNLL  %9s\n", wr, "rank", "layer", "module", "cos", "importance",
              "", "KL");
    for (size_t i = 0; i < n; i++) {
        char cos[32], imp[32], dnll[32], kl[32];
        tc_fmt_num(cos, sizeof cos, "%.6f", r[i].cos);
        tc_fmt_num(imp, sizeof imp, "%.6f", r[i].importance);
        tc_fmt_num(dnll, sizeof dnll, "%+.5f", r[i].dnll);
        tc_fmt_num(kl, sizeof kl, "%.5f", r[i].kl);
        tc_sb_printf(&b, "%*zu  %5d  %-6s  %9s  %10s  %10s  %9s\n", wr, i + 1, r[i].layer, tc_module_name(r[i].module),
                  cos, imp, dnll, kl);
    }
    if (n == 0)
        tc_sb_put(&b, "(no modules present)\n");
    free(r);
    return tc_sb_finish(&b, out, "table", err);
}

/* ------------------------------------------------------------- HTML */

static const char *const MOD_COLOR[TC_N_MODULES] = {"#4e79a7", "#f28e2b", "#59a14f"};
static const char *const MOD_LABEL[TC_N_MODULES] = {"attention", "MLP", "block"};

double tc_plot_x(const tc_plot *p, double i)
{
    return p->x0 + p->w * (i + 0.5) / p->n;
}

double tc_plot_y(const tc_plot *p, double v)
{
    return p->y0 + p->h - (v - p->lo) / (p->hi - p->lo) * p->h;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about five ticks. */
static double nice_step(double range)
{
    double raw = range / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return mag * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

void tc_nice_range(double lo, double hi, double *out_lo, double *out_hi, double *step)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.01 : 0.01;
        lo -= pad;
        hi += pad;
    }
    *step = nice_step(hi - lo);
    *out_lo = floor(lo / *step) * *step;
    *out_hi = ceil(hi / *step) * *step;
}

/* The axes of a layer-by-head heat map whose cells are cw x ch from (x0, y0):
 * head numbers along the top (thinned to stay legible), layer numbers down
 * the left, and the two axis labels. */
void tc_svg_heat_axes(tc_sbuf *b, int n_heads, int n_layers, double x0, double y0, double cw, double ch)
{
    int every = 1;
    while (cw * every < 22)
        every++;
    for (int h = 0; h < n_heads; h += every)
        tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"middle\">%d</text>", x0 + cw * (h + 0.5),
                     y0 - 8, h);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"14\" class=\"label\" text-anchor=\"middle\">head</text>\n",
                 x0 + cw * n_heads / 2);
    tc_sb_printf(b, "<text x=\"14\" y=\"%.1f\" class=\"label\" text-anchor=\"middle\" "
                    "transform=\"rotate(-90 14 %.1f)\">layer</text>\n",
                 y0 + ch * n_layers / 2, y0 + ch * n_layers / 2);
    for (int l = 0; l < n_layers; l++)
        tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%d</text>", x0 - 6,
                     y0 + ch * l + ch / 2 + 4, l);
}

void tc_svg_open(tc_sbuf *b, double width, double height, const char *label)
{
    tc_sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%s\">\n",
              width, height, width, height, label);
}

void tc_plot_axes(tc_sbuf *b, const tc_plot *p, double step, const char *ylabel, int decimals)
{
    for (double v = p->lo; v <= p->hi + step * 1e-6; v += step) {
        double y = tc_plot_y(p, v);
        tc_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", p->x0, y,
                  p->x0 + p->w, y);
        tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.*f</text>\n", p->x0 - 6,
                  y + 4, decimals, fabs(v) < step * 1e-6 ? 0.0 : v);
    }
    int every = 1;
    while (p->w / p->n * every < 22)
        every++;
    for (int i = 0; i < p->n; i += every)
        tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"middle\">%d</text>", tc_plot_x(p, i),
                  p->y0 + p->h + 16, i);
    tc_sb_printf(b, "\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", p->x0, p->y0 + p->h,
              p->x0 + p->w, p->y0 + p->h);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"label\" text-anchor=\"middle\">layer</text>",
              p->x0 + p->w / 2, p->y0 + p->h + 34);
    tc_sb_printf(b, "<text x=\"14\" y=\"%.1f\" class=\"label\" text-anchor=\"middle\" "
                 "transform=\"rotate(-90 14 %.1f)\">%s</text>\n",
              p->y0 + p->h / 2, p->y0 + p->h / 2, ylabel);
}

static void legend(tc_sbuf *b, double x, double y)
{
    for (int m = 0; m < TC_N_MODULES; m++) {
        tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>", x + m * 100.0, y - 10,
                  MOD_COLOR[m]);
        tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%s</text>", x + m * 100.0 + 17, y, MOD_LABEL[m]);
    }
    tc_sb_put(b, "\n");
}

int tc_decimals_for(double step)
{
    int d = 0;
    while (d < 8 && step * pow(10, d) < 0.999)
        d++;
    return d;
}

/* Chart 1: mean cosine similarity of each module's input and output, one line per module. */
static void chart_cos(tc_sbuf *b, const tc_analysis *a)
{
    double lo = 1, hi = -1;
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < TC_N_MODULES; m++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (s->present && isfinite(s->cos_mean)) {
                lo = fmin(lo, s->cos_mean);
                hi = fmax(hi, s->cos_mean);
            }
        }
    if (hi < lo)
        lo = 0, hi = 1;
    double step;
    tc_plot p = {.x0 = 70, .y0 = 30, .w = 820, .h = 260, .n = a->n_layers};
    tc_nice_range(lo, fmin(hi, 1.0), &p.lo, &p.hi, &step);
    tc_svg_open(b, 920, 340, "cosine similarity per layer");
    tc_plot_axes(b, &p, step, "cosine similarity (input, output)", tc_decimals_for(step));
    legend(b, p.x0 + 10, 18);
    for (int m = 0; m < TC_N_MODULES; m++) {
        tc_sb_printf(b, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", MOD_COLOR[m]);
        int pen_down = 0;
        for (int l = 0; l < a->n_layers; l++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (!s->present || !isfinite(s->cos_mean)) {
                pen_down = 0;
                continue;
            }
            tc_sb_printf(b, "%s%.1f %.1f ", pen_down ? "L" : "M", tc_plot_x(&p, l), tc_plot_y(&p, s->cos_mean));
            pen_down = 1;
        }
        tc_sb_put(b, "\"/>\n");
        for (int l = 0; l < a->n_layers; l++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (!s->present || !isfinite(s->cos_mean))
                continue;
            tc_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>layer %d %s: cos %.6f "
                         "(std %.4f, min %.4f), importance %.6f</title></circle>\n",
                      tc_plot_x(&p, l), tc_plot_y(&p, s->cos_mean), MOD_COLOR[m], l, MOD_LABEL[m], s->cos_mean,
                      s->cos_std, s->cos_min, 1 - s->cos_mean);
        }
    }
    tc_sb_put(b, "</svg>\n");
}

/* Chart 2: measured loss of skipping each module, grouped bars per layer. */
static void chart_dnll(tc_sbuf *b, const tc_analysis *a)
{
    double lo = 0, hi = 0;
    int any = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < TC_N_MODULES; m++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (s->present && s->measured && isfinite(s->dnll)) {
                lo = fmin(lo, s->dnll);
                hi = fmax(hi, s->dnll);
                any = 1;
            }
        }
    if (!any) {
        tc_sb_put(b, "<p class=\"note\">The loss of skipping modules was not measured in this run.</p>\n");
        return;
    }
    double step;
    tc_plot p = {.x0 = 70, .y0 = 30, .w = 820, .h = 260, .n = a->n_layers};
    tc_nice_range(lo, hi, &p.lo, &p.hi, &step);
    tc_svg_open(b, 920, 340, "increase in loss per layer when a module is skipped");
    tc_plot_axes(b, &p, step, "ΔNLL (nats per token)", tc_decimals_for(step));
    legend(b, p.x0 + 10, 18);
    double band = p.w / p.n, bar = band * 0.8 / TC_N_MODULES, zero = tc_plot_y(&p, 0);
    tc_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", p.x0, zero,
              p.x0 + p.w, zero);
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < TC_N_MODULES; m++) {
            const tc_module_stats *s = &a->layers[l].mod[m];
            if (!s->present || !s->measured || !isfinite(s->dnll))
                continue;
            double x = p.x0 + band * l + band * 0.1 + bar * m, y = tc_plot_y(&p, s->dnll);
            tc_sb_printf(b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>layer %d "
                         "%s: ΔNLL %+.5f, KL %.5f</title></rect>\n",
                      x, fmin(y, zero), bar, fmax(fabs(zero - y), 0.5), MOD_COLOR[m], l, MOD_LABEL[m], s->dnll,
                      s->kl);
        }
    tc_sb_put(b, "</svg>\n");
}

/* Viridis, sampled at five points and interpolated: readable for colour-blind
 * readers and monotone in lightness. */
void tc_viridis(double t, int rgb[3])
{
    static const int stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    t = isfinite(t) ? fmin(fmax(t, 0), 1) : 0;
    double x = t * 4;
    int i = x >= 4 ? 3 : (int)x;
    double f = x - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (int)lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
}

/* Chart 3: attention entropy per head, layers down, heads across. */
static void chart_heads(tc_sbuf *b, const tc_analysis *a)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++) {
            double e = a->layers[l].heads[h].entropy;
            if (isfinite(e)) {
                lo = fmin(lo, e);
                hi = fmax(hi, e);
            }
        }
    if (a->n_heads == 0 || !(hi >= lo)) {
        tc_sb_put(b, "<p class=\"note\">Attention heads were not measured in this run.</p>\n");
        return;
    }
    double cw = fmin(48, fmax(10, 760.0 / a->n_heads)), ch = fmin(24, fmax(12, 600.0 / a->n_layers));
    double x0 = 70, y0 = 40, width = x0 + cw * a->n_heads + 150, height = y0 + ch * a->n_layers + 20;
    tc_svg_open(b, width, height, "attention entropy per head");
    tc_svg_heat_axes(b, a->n_heads, a->n_layers, x0, y0, cw, ch);
    for (int l = 0; l < a->n_layers; l++) {
        double y = y0 + ch * l;
        for (int h = 0; h < a->n_heads; h++) {
            const tc_head_stats *hs = a->layers[l].heads ? &a->layers[l].heads[h] : NULL;
            double x = x0 + cw * h;
            if (!hs) {
                tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ddd\">"
                             "<title>layer %d head %d: not measured</title></rect>",
                          x, y, cw - 1, ch - 1, l, h);
                continue;
            }
            int rgb[3];
            tc_viridis(hi > lo ? (hs->entropy - lo) / (hi - lo) : 0.5, rgb);
            tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\">"
                         "<title>layer %d head %d: entropy %.4f nats, top-10%% mass %.4f</title></rect>",
                      x, y, cw - 1, ch - 1, rgb[0], rgb[1], rgb[2], l, h, hs->entropy, hs->top10_mass);
        }
        tc_sb_put(b, "\n");
    }
    /* Colour scale. */
    double lx = x0 + cw * a->n_heads + 30, ly = y0, lh = fmax(ch * a->n_layers, 60);
    tc_sb_put(b, "<defs><linearGradient id=\"entropy-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
    for (int i = 0; i <= 8; i++) {
        int rgb[3];
        tc_viridis(i / 8.0, rgb);
        tc_sb_printf(b, "<stop offset=\"%.3f\" stop-color=\"rgb(%d,%d,%d)\"/>", i / 8.0, rgb[0], rgb[1], rgb[2]);
    }
    tc_sb_put(b, "</linearGradient></defs>\n");
    tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"url(#entropy-scale)\"/>", lx, ly,
              fmin(lh, height - ly - 20));
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.3f</text>", lx + 20, ly + 10, hi);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.3f</text>", lx + 20, ly + fmin(lh, height - ly - 20),
              lo);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">nats</text>\n", lx + 20, ly + fmin(lh, height - ly - 20) / 2);
    tc_sb_put(b, "</svg>\n");
}

static void info_table(tc_sbuf *b, const char *title, const cJSON *obj)
{
    tc_sb_put(b, "<section class=\"info\"><h2>");
    tc_sb_escape(b, title);
    tc_sb_put(b, "</h2><table>\n");
    int rows = 0;
    for (const cJSON *e = obj ? obj->child : NULL; e; e = e->next, rows++) {
        tc_sb_put(b, "<tr><th>");
        tc_sb_escape(b, e->string ? e->string : "");
        tc_sb_put(b, "</th><td>");
        if (cJSON_IsString(e)) {
            tc_sb_escape(b, e->valuestring);
        } else {
            char *v = cJSON_PrintUnformatted(e);
            tc_sb_escape(b, v ? v : "?");
            free(v);
        }
        tc_sb_put(b, "</td></tr>\n");
    }
    if (rows == 0)
        tc_sb_put(b, "<tr><td>(none given)</td></tr>\n");
    tc_sb_put(b, "</table></section>\n");
}

static void summary(tc_sbuf *b, const tc_analysis *a)
{
    char ppl[32], nll[32];
    tc_fmt_num(ppl, sizeof ppl, "%.4f", a->ppl);
    tc_fmt_num(nll, sizeof nll, "%.5f", a->nll);
    tc_sb_printf(b, "<section class=\"info\"><h2>Baseline</h2><table>\n"
                 "<tr><th>perplexity</th><td>%s</td></tr>\n<tr><th>mean NLL</th><td>%s nats/token</td></tr>\n"
                 "<tr><th>tokens</th><td>%llu</td></tr>\n<tr><th>predictions</th><td>%llu</td></tr>\n"
                 "<tr><th>layers × heads</th><td>%d × %d</td></tr>\n<tr><th>time</th><td>%.2f s</td></tr>\n"
                 "</table></section>\n",
              ppl, nll, (unsigned long long)a->n_tokens, (unsigned long long)a->n_predicted, a->n_layers, a->n_heads,
              a->seconds);
}

static void rank_table(tc_sbuf *b, const tc_rank_entry *r, size_t n)
{
    tc_sb_put(b, "<table class=\"rank\"><thead><tr><th>rank</th><th>layer</th><th>module</th><th>cos</th>"
              "<th>importance</th><th>ΔNLL</th><th>KL</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        char cos[32], imp[32], dnll[32], kl[32];
        tc_fmt_num(cos, sizeof cos, "%.6f", r[i].cos);
        tc_fmt_num(imp, sizeof imp, "%.6f", r[i].importance);
        tc_fmt_num(dnll, sizeof dnll, "%+.5f", r[i].dnll);
        tc_fmt_num(kl, sizeof kl, "%.5f", r[i].kl);
        tc_sb_printf(b, "<tr><td>%zu</td><td>%d</td><td><span class=\"dot\" style=\"background:%s\"></span>%s</td>"
                     "<td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
                  i + 1, r[i].layer, MOD_COLOR[r[i].module], tc_module_name(r[i].module), cos, imp, dnll, kl);
    }
    tc_sb_put(b, "</tbody></table>\n");
}

static const char *CSS =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:980px;"
    "color:#222;background:#fff;line-height:1.4}\n"
    "h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin:28px 0 8px}\n"
    ".sub{color:#666;margin-top:0}.info{display:inline-block;vertical-align:top;margin-right:32px}\n"
    ".info table{border-collapse:collapse}.info th{text-align:left;font-weight:600;padding:2px 12px 2px 0;"
    "color:#444}.info td{padding:2px 0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;"
    "word-break:break-all}\n"
    "svg{display:block;max-width:100%;height:auto}svg text{font-family:system-ui,sans-serif}\n"
    ".tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.grid{stroke:#e4e4e4}.axis{stroke:#888}\n"
    ".note{color:#666;font-style:italic}\n"
    "table.rank{border-collapse:collapse;font-size:.9em}table.rank th,table.rank td{padding:3px 10px;"
    "text-align:right;border-bottom:1px solid #eee}table.rank th{background:#f5f5f5}\n"
    "table.rank td:nth-child(3){text-align:left}.dot{display:inline-block;width:9px;height:9px;"
    "border-radius:50%;margin-right:6px}\n";

int tc_report_html(const tc_analysis *a, const cJSON *model, const cJSON *calibration, char **out, tc_error *err)
{
    *out = NULL;
    if (check_analysis(a, err))
        return TC_ERR;
    tc_rank_entry *r;
    size_t n;
    if (tc_report_ranking(a, &r, &n, err))
        return TC_ERR;
    const cJSON *name = model ? cJSON_GetObjectItemCaseSensitive(model, "name") : NULL;
    const char *title = cJSON_IsString(name) ? name->valuestring : "model";
    tc_sbuf b = {0};
    tc_sb_put(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Redundancy report: ");
    tc_sb_escape(&b, title);
    tc_sb_printf(&b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>Redundancy report: ", CSS);
    tc_sb_escape(&b, title);
    tc_sb_printf(&b, "</h1>\n<p class=\"sub\">tc-analyze %s, report schema %s version %d</p>\n", tc_version(),
              TC_REPORT_SCHEMA, TC_REPORT_SCHEMA_VERSION);
    info_table(&b, "Model", model);
    info_table(&b, "Calibration", calibration);
    summary(&b, a);
    if (a->n_layers > 0) {
        tc_sb_put(&b, "<h2>Cosine similarity of each module's input and output</h2>\n<p class=\"sub\">Near 1: the "
                   "module barely changes the hidden state, so it is a candidate for removal.</p>\n");
        chart_cos(&b, a);
        tc_sb_put(&b, "<h2>Measured loss of skipping each module</h2>\n");
        chart_dnll(&b, a);
        tc_sb_put(&b, "<h2>Attention entropy per head</h2>\n");
        chart_heads(&b, a);
        tc_report_attn_html(&b, a);
    }
    tc_sb_put(&b, "<h2>Ranking, most redundant first</h2>\n");
    rank_table(&b, r, n);
    tc_sb_put(&b, "</body>\n</html>\n");
    free(r);
    return tc_sb_finish(&b, out, "HTML report", err);
}

int tc_report_write_html(const char *path, const tc_analysis *a, const cJSON *model, const cJSON *calibration,
                         tc_error *err)
{
    char *html;
    if (tc_report_html(a, model, calibration, &html, err))
        return tc_err_prefix(err, "%s", path);
    int rc = write_atomically(path, html, strlen(html), err);
    free(html);
    return rc;
}
