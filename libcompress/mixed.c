/* Mixed precision under a bit budget (tc/mixed.h): the candidates' bits,
 * their measured KL, the greedy assignment and its record. */
#include "tc/mixed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tc/ggml_ternary.h"
#include "tc/qmat.h"
#include "tc/sensitivity.h"
#include "tc/ternary.h"
#include "tc/tpack.h"

static const int linear_roles[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
#define N_LINEAR 7

tc_dtype tc_mixed_linear_type(const tc_dtype *types, int n_layers, int layer, int role)
{
    if (!types || layer < 0 || layer >= n_layers || role < 0 || role >= TC_N_ROLES)
        return TC_F32;
    tc_dtype t = types[(size_t)layer * TC_N_ROLES + (size_t)role];
    return tc_qmat_linear_type_ok(t) ? t : TC_F32;
}

tc_dtype tc_mixed_dtype(int type)
{
    return type == TC_TMIXED_Q4_0 ? TC_Q4_0 : type == TC_TMIXED_Q8_0 ? TC_Q8_0 : TC_F32;
}

/* Bits per weight of an M x K weight stored ternary: the packed plan's
 * bytes, or what the GGUF writer uses (TQ1_0 / TQ2_0 where rows are whole
 * 256-blocks, Q4_0 where they are whole 32-blocks, Q4_1 with offsets, else
 * TQ over the padded width).  The padded rows of gate and up are not
 * counted: the GGUF's bits per weight may exceed the plan's by that much. */
static int ternary_bits(const tc_mixed_opts *o, int64_t M, int64_t K, double *bits, tc_error *err)
{
    int aff = tc_tmethod_affine(o->q.method);
    if (o->format == TC_QFORMAT_PACKED) {
        tc_tpack_plan p;
        if (tc_tpack_plan_make_params(o->q.layout, M, K, &o->q.group,
                                      aff ? TC_TPARAM_AFFINE_F16 : TC_TPARAM_SCALE_F32, &p, err))
            return TC_ERR;
        *bits = 8.0 * (double)p.total_bytes / (double)(M * K);
        return TC_OK;
    }
    tc_dtype tq = o->format == TC_QFORMAT_GGUF_TQ1 ? TC_TQ1_0 : TC_TQ2_0;
    tc_dtype t = aff ? (K % 32 == 0 ? TC_Q4_1 : TC_F16)
                     : K % TC_TQ_BLOCK_ELEMS == 0 ? tq : K % 32 == 0 ? TC_Q4_0 : tq;
    *bits = 8.0 * (double)tc_dtype_block_bytes(t) / (double)tc_dtype_block_elems(t);
    /* Rows of no block: the writer pads the FFN width to whole 256-blocks
     * (the down projections' rows; the default), so they are TQ with zeros. */
    if (t == tq && K % TC_TQ_BLOCK_ELEMS != 0)
        *bits *= (double)((K + TC_TQ_BLOCK_ELEMS - 1) / TC_TQ_BLOCK_ELEMS * TC_TQ_BLOCK_ELEMS) / (double)K;
    return TC_OK;
}

static double bits_of(const tc_mixed *x, int chosen_only, int type)
{
    double b = 0;
    for (size_t i = 0; i < x->n; i++) {
        const tc_mixed_choice *c = &x->t[i];
        int k = chosen_only ? c->type : type;
        if (k != TC_TMIXED_TERNARY && c->bits[k] <= 0)
            k = TC_TMIXED_TERNARY;
        b += c->bits[k] * (double)(c->rows * c->cols);
    }
    return b;
}

int tc_mixed_init(tc_mixed *x, const tc_model *m, const tc_mixed_opts *o, tc_error *err)
{
    memset(x, 0, sizeof *x);
    const tc_config *c = &m->cfg;
    x->n_layers = c->n_layers;
    x->target_bpw = o->target_bpw;
    x->t = calloc((size_t)(c->n_layers > 0 ? c->n_layers : 1) * N_LINEAR, sizeof *x->t);
    x->types = calloc((size_t)(c->n_layers > 0 ? c->n_layers : 1) * TC_N_ROLES, sizeof *x->types);
    if (!x->t || !x->types)
        return tc_err(err, "%s: out of memory for a mixed-precision plan", m->path);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N_LINEAR; i++) {
            const tc_tensor *t = m->layers[l].w[linear_roles[i]];
            if (!t)
                continue;
            int64_t shape[2];
            tc_role_shape(c, (tc_role)linear_roles[i], shape);
            tc_mixed_choice *ch = &x->t[x->n++];
            ch->layer = l;
            ch->role = linear_roles[i];
            ch->rows = shape[0];
            ch->cols = shape[1];
            if (ternary_bits(o, shape[0], shape[1], &ch->bits[TC_TMIXED_TERNARY], err))
                return tc_err_prefix(err, "%s: layer %d %s", m->path, l, tc_role_name((tc_role)ch->role));
            for (int k = 0; k < TC_TMIXED_NTYPES; k++)
                ch->kl[k] = NAN;
            for (int k = TC_TMIXED_Q4_0; k < TC_TMIXED_NTYPES; k++) {
                tc_dtype dt = tc_mixed_dtype(k);
                if (shape[1] % tc_qmat_block(dt) == 0)
                    ch->bits[k] = 8.0 * (double)tc_dtype_block_bytes(dt) / (double)tc_dtype_block_elems(dt);
            }
            x->params += (uint64_t)(shape[0] * shape[1]);
        }
    if (x->n == 0)
        return tc_err(err, "%s: the model has no linear weights to give types", m->path);
    x->bpw_ternary = bits_of(x, 0, TC_TMIXED_TERNARY) / (double)x->params;
    x->bpw_max = bits_of(x, 0, TC_TMIXED_Q8_0) / (double)x->params;
    x->bpw = x->bpw_ternary;
    /* A little slack below the all-ternary bits: the target is a decimal. */
    if (!(o->target_bpw >= x->bpw_ternary - 1e-9) || !(o->target_bpw <= TC_MIXED_MAX_BPW))
        return tc_err(err, "%s: --target-bpw %g is outside what the types can give: %.4f (every linear weight %s "
                      "ternary) to %.1f (every one Q8_0)", m->path, o->target_bpw, x->bpw_ternary,
                      tc_tmethod_name(o->q.method), TC_MIXED_MAX_BPW);
    return TC_OK;
}

int tc_mixed_measure(tc_mixed *x, const tc_model *m, const tc_batch *b, const tc_mixed_opts *o, tc_error *err)
{
    static const tc_dtype types[TC_TMIXED_NTYPES] = {TC_F32, TC_Q4_0, TC_Q8_0};
    tc_sensitivity s[TC_TMIXED_NTYPES];
    tc_batch first = *b;
    if (first.n_seqs > TC_MIXED_MEASURE_SEQS)
        first.n_seqs = TC_MIXED_MEASURE_SEQS;
    if (tc_sensitivity_measure_types_dist(m, &first, &o->q, types, TC_TMIXED_NTYPES, o->n_threads, o->dist, s, err))
        return TC_ERR;
    int rc = TC_OK;
    for (size_t i = 0; i < x->n && rc == TC_OK; i++) {
        tc_mixed_choice *ch = &x->t[i];
        int found = 0;
        for (size_t e = 0; e < s[0].n_entries && !found; e++) {
            if (s[0].entries[e].layer != ch->layer || s[0].entries[e].role != ch->role)
                continue;
            found = 1;
            for (int k = 0; k < TC_TMIXED_NTYPES; k++)
                ch->kl[k] = ch->bits[k] > 0 || k == TC_TMIXED_TERNARY ? s[k].entries[e].kl : NAN;
        }
        if (!found)
            rc = tc_err(err, "%s: layer %d %s was not measured", m->path, ch->layer, tc_role_name((tc_role)ch->role));
    }
    x->record.measured = s[0].method;
    x->record.tokens = s[0].n_tokens;
    for (int k = 0; k < TC_TMIXED_NTYPES; k++)
        tc_sensitivity_free(&s[k]);
    return rc;
}

int tc_mixed_costs_from(tc_mixed *x, const tc_tmixed *rec, const tc_mixed_opts *o, const char *from,
                        tc_error *err)
{
    tc_tmethod want = tc_sensitivity_fit(o->q.method);
    if (rec->measured != want)
        return tc_err(err, "%s: its costs were measured with the %s fit, and --method %s measures %s", from,
                      tc_tmethod_name(rec->measured), tc_tmethod_name(o->q.method), tc_tmethod_name(want));
    for (size_t i = 0; i < x->n; i++) {
        tc_mixed_choice *c = &x->t[i];
        const tc_tmixed_entry *e = NULL;
        for (size_t k = 0; k < rec->n_entries && !e; k++)
            if (rec->entries[k].layer == c->layer && rec->entries[k].role == c->role)
                e = &rec->entries[k];
        if (!e || !isfinite(e->kl[TC_TMIXED_TERNARY]))
            return tc_err(err, "%s: its record has no cost for layer %d %s", from, c->layer,
                          tc_role_name((tc_role)c->role));
        for (int k = 0; k < TC_TMIXED_NTYPES; k++)
            c->kl[k] = k == TC_TMIXED_TERNARY || c->bits[k] > 0 ? e->kl[k] : NAN;
    }
    x->record.measured = rec->measured;
    x->record.tokens = rec->tokens;
    return TC_OK;
}

int tc_mixed_assign(tc_mixed *x, tc_error *err)
{
    double budget = x->target_bpw * (double)x->params, used = bits_of(x, 0, TC_TMIXED_TERNARY);
    memset(x->n_upgraded, 0, sizeof x->n_upgraded);
    for (size_t i = 0; i < x->n; i++) {
        x->t[i].type = TC_TMIXED_TERNARY;
        if (!isfinite(x->t[i].kl[TC_TMIXED_TERNARY]))
            return tc_err(err, "layer %d %s has no measured ternary KL", x->t[i].layer,
                          tc_role_name((tc_role)x->t[i].role));
    }
    /* Greedy: the upgrade saving the most KL per extra bit that still fits.
     * An upgrade that costs no bits (GGUF rows stored Q4_0 anyway) and saves
     * anything comes first; one that saves nothing is never made.  Ties go
     * to the earlier weight, so the result does not depend on anything but
     * the measurements. */
    for (;;) {
        size_t best_i = SIZE_MAX;
        int best_k = 0;
        double best = -1;
        for (size_t i = 0; i < x->n; i++) {
            const tc_mixed_choice *c = &x->t[i];
            double n = (double)(c->rows * c->cols);
            for (int k = c->type + 1; k < TC_TMIXED_NTYPES; k++) {
                if (c->bits[k] <= 0 || !isfinite(c->kl[k]))
                    continue;
                double gain = c->kl[c->type] - c->kl[k], cost = (c->bits[k] - c->bits[c->type]) * n;
                if (!(gain > 0) || used + cost > budget * (1 + 1e-12))
                    continue;
                double r = cost > 0 ? gain / cost : INFINITY;
                if (r > best) {
                    best = r;
                    best_i = i;
                    best_k = k;
                }
            }
        }
        if (best_i == SIZE_MAX)
            break;
        tc_mixed_choice *c = &x->t[best_i];
        used += (c->bits[best_k] - c->bits[c->type]) * (double)(c->rows * c->cols);
        c->type = best_k;
    }
    x->kl_ternary = x->kl_est = 0;
    memset(x->types, 0, (size_t)(x->n_layers > 0 ? x->n_layers : 1) * TC_N_ROLES * sizeof *x->types);
    for (size_t i = 0; i < x->n; i++) {
        const tc_mixed_choice *c = &x->t[i];
        x->kl_ternary += c->kl[TC_TMIXED_TERNARY];
        x->kl_est += c->kl[c->type];
        x->n_upgraded[c->type]++;
        x->types[(size_t)c->layer * TC_N_ROLES + (size_t)c->role] = tc_mixed_dtype(c->type);
    }
    x->bpw = bits_of(x, 1, 0) / (double)x->params;
    /* The record for the header. */
    free(x->record.entries);
    x->record.entries = calloc(x->n, sizeof *x->record.entries);
    if (!x->record.entries)
        return tc_err(err, "out of memory for the mixed-precision record");
    x->record.n_entries = x->n;
    x->record.target_bpw = x->target_bpw;
    x->record.bpw = x->bpw;
    for (size_t i = 0; i < x->n; i++) {
        x->record.entries[i].layer = x->t[i].layer;
        x->record.entries[i].role = x->t[i].role;
        memcpy(x->record.entries[i].kl, x->t[i].kl, sizeof x->t[i].kl);
    }
    return TC_OK;
}

int tc_mixed_plan(tc_mixed *x, const tc_model *m, const tc_batch *b, const tc_mixed_opts *o, tc_error *err)
{
    if (tc_mixed_init(x, m, o, err) || tc_mixed_measure(x, m, b, o, err) || tc_mixed_assign(x, err))
        return TC_ERR;
    return TC_OK;
}

void tc_mixed_free(tc_mixed *x)
{
    if (!x)
        return;
    free(x->t);
    free(x->types);
    free(x->record.entries);
    memset(x, 0, sizeof *x);
}

static void name_of(const tc_mixed_choice *c, char *buf, size_t n)
{
    tc_tmodel_tensor t = {.layer = c->layer, .role = c->role};
    tc_tmodel_tensor_name(&t, buf, n);
}

char *tc_mixed_table(const tc_mixed *x)
{
    size_t cap = 256 + x->n * 96, at = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
#define PUT(...) (at += (size_t)snprintf(s + at, at < cap ? cap - at : 0, __VA_ARGS__))
    PUT("mixed precision: target %.3f bits per linear weight, %.4f assigned (all ternary %.4f); measured KL "
        "per weight alone (%s fit, %llu tokens), nats/token\n",
        x->target_bpw, x->bpw, x->bpw_ternary, tc_tmethod_name(x->record.measured),
        (unsigned long long)x->record.tokens);
    PUT("  %-16s %-7s %10s %10s %10s\n", "tensor", "type", "ternary", "q4_0", "q8_0");
    for (size_t i = 0; i < x->n; i++) {
        const tc_mixed_choice *c = &x->t[i];
        char name[64], k[3][16];
        name_of(c, name, sizeof name);
        for (int j = 0; j < 3; j++)
            if (isfinite(c->kl[j]))
                snprintf(k[j], sizeof k[j], "%.6f", c->kl[j]);
            else
                snprintf(k[j], sizeof k[j], "-");
        PUT("  %-16s %-7s %10s %10s %10s\n", name, tc_tmixed_type_name(c->type), k[0], k[1], k[2]);
    }
    PUT("  %d ternary, %d q4_0, %d q8_0; summed KL %.5f (all ternary %.5f)\n", x->n_upgraded[0],
        x->n_upgraded[1], x->n_upgraded[2], x->kl_est, x->kl_ternary);
#undef PUT
    if (at >= cap)
        s[cap - 1] = '\0';
    return s;
}

cJSON *tc_mixed_json(const tc_mixed *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "target_bpw", x->target_bpw);
    cJSON_AddNumberToObject(o, "bpw", x->bpw);
    cJSON_AddNumberToObject(o, "bpw_all_ternary", x->bpw_ternary);
    cJSON_AddStringToObject(o, "measured", tc_tmethod_name(x->record.measured));
    cJSON_AddNumberToObject(o, "tokens", (double)x->record.tokens);
    cJSON_AddNumberToObject(o, "kl_sum", x->kl_est);
    cJSON_AddNumberToObject(o, "kl_sum_all_ternary", x->kl_ternary);
    cJSON *a = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < x->n; i++) {
        const tc_mixed_choice *c = &x->t[i];
        char name[64];
        name_of(c, name, sizeof name);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "type", tc_tmixed_type_name(c->type));
        cJSON *kl = cJSON_AddObjectToObject(e, "kl");
        for (int j = 0; j < TC_TMIXED_NTYPES; j++)
            cJSON_AddItemToObject(kl, tc_tmixed_type_name(j),
                                  isfinite(c->kl[j]) ? cJSON_CreateNumber(c->kl[j]) : cJSON_CreateNull());
        cJSON_AddItemToArray(a, e);
    }
    return o;
}
