/* Per-weight sensitivity: the KL of quantizing one linear weight alone. */
#include "tc/sensitivity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/qmat.h"
#include "tc/ternary.h"

static const int linear_roles[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
#define N_LINEAR 7

typedef struct sens_ctx {
    int n_layers, dim;
    size_t n_tok;      /* this rank's tokens (all of them in a job of one) */
    size_t row, win_n; /* the rows of the window in the pass at hand */
    float **xs;        /* [n_layers][n_tok][dim]: each layer's input in the original model */
    double *logp;      /* [n_tok][vocab]: the original's log-probabilities */
    int vocab;
    double kl_sum;     /* of the pass being scored */
    int scoring;       /* 0: the original pass (keep), 1: compare */
} sens_ctx;

static int obs_hidden(void *ctx, int layer, tc_point at, const float *x, size_t n, int dim, tc_error *err)
{
    sens_ctx *c = ctx;
    if (c->scoring || at != TC_AT_ATTN_IN || layer < 0 || layer >= c->n_layers)
        return TC_OK;
    if (n != c->win_n || dim != c->dim)
        return tc_err(err, "sensitivity: layer %d's input came as %zu x %d, not %zu x %d", layer, n, dim, c->win_n,
                      c->dim);
    memcpy(c->xs[layer] + c->row * (size_t)dim, x, n * (size_t)dim * sizeof(float));
    return TC_OK;
}

/* log-softmax of one row, in double (float would leave KL noise of 1e-8). */
static void log_softmax(const float *z, int v, double *out)
{
    double mx = z[0];
    for (int i = 1; i < v; i++)
        mx = z[i] > mx ? z[i] : mx;
    double s = 0;
    for (int i = 0; i < v; i++)
        s += exp((double)z[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < v; i++)
        out[i] = (double)z[i] - lse;
}

static int obs_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    sens_ctx *c = ctx;
    double *row = malloc((size_t)vocab * sizeof *row);
    if (!row)
        return tc_err(err, "out of memory for a row of %d logits", vocab);
    for (size_t t = 0; t < n; t++) {
        log_softmax(logits + t * (size_t)vocab, vocab, row);
        double *ref = c->logp + (c->row + tok0 + t) * (size_t)vocab;
        if (!c->scoring) {
            memcpy(ref, row, (size_t)vocab * sizeof *row);
            continue;
        }
        double kl = 0;
        for (int i = 0; i < vocab; i++)
            kl += exp(ref[i]) * (ref[i] - row[i]);
        c->kl_sum += kl > 0 ? kl : 0;
    }
    free(row);
    return TC_OK;
}

/* The quantizer measured for a method, and W_hat = its dequantized fit of W. */
static int quantize_alone(tc_tmethod meth, const tc_tgroup *g, const float *W, int64_t M, int64_t K, float *W_hat,
                          tc_error *err)
{
    int64_t ns;
    if (tc_ternary_scale_count(g, M, K, &ns, err))
        return TC_ERR;
    int8_t *codes = malloc((size_t)(M * K));
    float *sc = malloc((size_t)ns * sizeof *sc), *off = malloc((size_t)ns * sizeof *off);
    int rc = codes && sc && off ? TC_OK : tc_err(err, "out of memory for a %lld x %lld weight", (long long)M,
                                                 (long long)K);
    int aff = tc_tmethod_affine(meth);
    if (rc == TC_OK)
        rc = aff ? tc_ternary_affine(W, M, K, g, codes, sc, off, err)
             : meth == TC_TMETHOD_ABSMEAN ? tc_ternary_absmean(W, M, K, g, codes, sc, err)
                                          : tc_ternary_optimal(W, M, K, g, codes, sc, err);
    if (rc == TC_OK)
        tc_ternary_dequantize_affine(codes, sc, aff ? off : NULL, M, K, g, W_hat);
    free(codes);
    free(sc);
    free(off);
    return rc;
}

tc_tmethod tc_sensitivity_fit(tc_tmethod method)
{
    return method == TC_TMETHOD_CALIBRATED ? TC_TMETHOD_OPTIMAL
           : tc_tmethod_affine(method)     ? TC_TMETHOD_AFFINE
                                           : method;
}

void tc_sensitivity_free(tc_sensitivity *s)
{
    if (!s)
        return;
    free(s->entries);
    memset(s, 0, sizeof *s);
}

int tc_sensitivity_measure(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q, int n_threads,
                           tc_sensitivity *out, tc_error *err)
{
    return tc_sensitivity_measure_dist(m, b, q, n_threads, NULL, out, err);
}

int tc_sensitivity_measure_dist(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q, int n_threads,
                                tc_dist *dist, tc_sensitivity *out, tc_error *err)
{
    static const tc_dtype ternary = TC_F32;
    return tc_sensitivity_measure_types_dist(m, b, q, &ternary, 1, n_threads, dist, out, err);
}

int tc_sensitivity_measure_types(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q,
                                 const tc_dtype *types, int n_types, int n_threads, tc_sensitivity *outs,
                                 tc_error *err)
{
    return tc_sensitivity_measure_types_dist(m, b, q, types, n_types, n_threads, NULL, outs, err);
}

/* The windows [q0, q1) of b are this rank's; each window is a pass of its
 * own (its rows then do not depend on its neighbours'), and each weight's KL
 * is kept per window, so that the sums over windows are added in window order
 * whatever the number of ranks. */
int tc_sensitivity_measure_types_dist(const tc_model *m, const tc_batch *b, const tc_tquant_settings *q,
                                      const tc_dtype *types, int n_types, int n_threads, tc_dist *dist,
                                      tc_sensitivity *outs, tc_error *err)
{
    if (n_types < 1)
        return tc_err(err, "%s: sensitivity of no type", m->path);
    for (int k = 0; k < n_types; k++) {
        memset(&outs[k], 0, sizeof outs[k]);
        if (types[k] != TC_F32 && !tc_qmat_linear_type_ok(types[k]))
            return tc_err(err, "%s: sensitivity of %s weights is not measured (ternary, Q8_0 or Q4_0)", m->path,
                          tc_dtype_name(types[k]));
    }
    const tc_config *cfg = &m->cfg;
    size_t n_tok = tc_batch_tokens(b), q0, q1;
    if (n_tok == 0)
        return tc_err(err, "%s: sensitivity needs calibration tokens", m->path);
    if (tc_batch_check(m, b, "calibration data", err))
        return TC_ERR;
    tc_dist_range(dist, dist ? dist->rank : 0, b->n_seqs, &q0, &q1);
    size_t tok0 = b->offsets[q0], own = b->offsets[q1] - tok0, n_win = b->n_seqs;
    size_t per_type = (size_t)cfg->n_layers * N_LINEAR;
    uint64_t hs, lp, kl_bytes;
    if (tc_mul_u64((uint64_t)own, (uint64_t)cfg->dim * sizeof(float), &hs) ||
        tc_mul_u64((uint64_t)own, (uint64_t)cfg->vocab_size * sizeof(double), &lp) ||
        tc_mul_u64((uint64_t)per_type * (uint64_t)n_types, (uint64_t)n_win * sizeof(double), &kl_bytes) ||
        hs > SIZE_MAX || lp > SIZE_MAX || kl_bytes > SIZE_MAX)
        return tc_err(err, "%s: %zu calibration tokens are too many to measure sensitivity", m->path, n_tok);
    tc_tmethod meth = tc_sensitivity_fit(q->method);
    /* From here a failure on one rank reaches the others at the exchange. */
    tc_weights w;
    int rc = tc_weights_load(&w, m, err);
    sens_ctx c = {.n_layers = cfg->n_layers, .dim = cfg->dim, .n_tok = own, .vocab = cfg->vocab_size};
    c.xs = calloc((size_t)cfg->n_layers, sizeof *c.xs);
    c.logp = malloc(lp ? (size_t)lp : 1);
    /* [type][entry][window]: each set by the rank that owns the window. */
    double *kl = calloc(1, kl_bytes ? (size_t)kl_bytes : 1);
    if (rc == TC_OK && !(c.xs && c.logp && kl))
        rc = tc_err(err, "%s: out of memory measuring sensitivity", m->path);
    for (int k = 0; rc == TC_OK && k < n_types; k++)
        if (!(outs[k].entries = calloc(per_type, sizeof *outs[k].entries)))
            rc = tc_err(err, "%s: out of memory measuring sensitivity", m->path);
    for (int l = 0; rc == TC_OK && l < cfg->n_layers; l++)
        if (!(c.xs[l] = malloc(hs ? (size_t)hs : 1)))
            rc = tc_err(err, "%s: out of memory for the hidden states", m->path);
    tc_observer ob = {.ctx = &c, .hidden = obs_hidden, .logits = obs_logits};
    tc_forward_opts fo = {.n_threads = n_threads, .observers = &ob, .n_observers = 1, .weights = &w};
    for (size_t s = q0; rc == TC_OK && s < q1; s++) {
        size_t offs[2] = {0, b->offsets[s + 1] - b->offsets[s]};
        tc_batch one = {b->tokens + b->offsets[s], offs, 1};
        c.row = b->offsets[s] - tok0;
        c.win_n = offs[1];
        rc = tc_forward(m, &one, &fo, err);
    }
    ob.hidden = NULL;
    c.scoring = 1;
    float *buf = NULL;
    size_t buf_cap = 0;
    for (int l = 0; rc == TC_OK && l < cfg->n_layers; l++)
        for (int i = 0; rc == TC_OK && i < N_LINEAR; i++) {
            int r = linear_roles[i];
            const tc_tensor *t = m->layers[l].w[r];
            float *W = w.layers[l].w[r];
            if (!t || !W || t->n_dims != 2)
                continue;
            int64_t M = t->shape[0], K = t->shape[1];
            size_t need = (size_t)(M * K) * sizeof(float);
            if (need > buf_cap) {
                free(buf);
                buf_cap = 0;
                if (!(buf = malloc(need))) {
                    rc = tc_err(err, "%s: out of memory", m->path);
                    break;
                }
                buf_cap = need;
            }
            for (int k = 0; rc == TC_OK && k < n_types; k++) {
                tc_sensitivity_entry *e = &outs[k].entries[outs[k].n_entries];
                double *kw = kl + ((size_t)k * per_type + outs[k].n_entries) * n_win;
                outs[k].n_entries++;
                e->layer = l;
                e->role = r;
                if (types[k] != TC_F32 && K % tc_qmat_block(types[k]) != 0) {
                    e->kl = e->rel_weight_error = NAN; /* not a candidate: no pass */
                    continue;
                }
                rc = types[k] == TC_F32 ? quantize_alone(meth, &q->group, W, M, K, buf, err)
                                        : tc_qmat_round(types[k], W, M, K, buf, err);
                if (rc)
                    break;
                double e2 = 0, w2 = 0;
                for (int64_t j = 0; j < M * K; j++) {
                    double dlt = (double)W[j] - buf[j];
                    e2 += dlt * dlt;
                    w2 += (double)W[j] * W[j];
                }
                w.layers[l].w[r] = buf;
                for (size_t s = q0; rc == TC_OK && s < q1; s++) {
                    size_t offs[2] = {0, b->offsets[s + 1] - b->offsets[s]};
                    tc_batch one = {b->tokens + b->offsets[s], offs, 1};
                    c.row = b->offsets[s] - tok0;
                    c.kl_sum = 0;
                    rc = tc_forward_from(m, &one, l, c.xs[l] + c.row * (size_t)cfg->dim, &fo, err);
                    kw[s] = c.kl_sum;
                }
                w.layers[l].w[r] = W;
                e->rel_weight_error = w2 > 0 ? sqrt(e2 / w2) : 0;
            }
        }
    /* Every rank has measured the same weights; the windows' sums meet. */
    rc = tc_dist_sum_disjoint(dist, rc, kl, rc ? 0 : per_type * (size_t)n_types * n_win, err);
    for (int k = 0; rc == TC_OK && k < n_types; k++) {
        for (size_t i = 0; i < outs[k].n_entries; i++) {
            if (isnan(outs[k].entries[i].rel_weight_error))
                continue; /* not a candidate of this type */
            const double *kw = kl + ((size_t)k * per_type + i) * n_win;
            double sum = 0;
            for (size_t s = 0; s < n_win; s++)
                sum += kw[s];
            outs[k].entries[i].kl = sum / (double)n_tok;
        }
        outs[k].n_tokens = n_tok;
        outs[k].method = meth;
    }
    free(buf);
    free(kl);
    for (int l = 0; c.xs && l < cfg->n_layers; l++)
        free(c.xs[l]);
    free(c.xs);
    free(c.logp);
    tc_weights_free(&w);
    for (int k = 0; rc && k < n_types; k++)
        tc_sensitivity_free(&outs[k]);
    return rc;
}
