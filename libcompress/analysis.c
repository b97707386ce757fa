/* Redundancy analysis and perplexity: observers of the forward pass.
 *
 * The baseline pass records, per layer, the cosine similarity of every
 * module's input and output, the attention statistics and the NLL.  Measured
 * importance then reruns the model from stored layer inputs with one module
 * skipped and compares its next-token distributions with the baseline's,
 * which are kept as log-softmax rows: a batch holds T x vocab floats of them.
 * Recomputing the baseline beside every rerun would halve the memory but
 * double the work.
 *
 * A batch is one sequence (or a fixed group, with batch_tokens) and sums into
 * a record of its own; the records are added in batch order at the end.  That
 * order is the same in one process and spread over MPI ranks (tc/dist.h), so
 * the results are the same bits. */
#include "tc/analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analysis_internal.h"
#include "tc/checked.h"
#include "tc/dist.h"
#include "tc/parallel.h"

#define PRELOAD_LIMIT ((uint64_t)1 << 30)

/* tc_module_name and tc_analysis_free live in analysis_result.c. */

/* ---- Pieces shared by both runners ----------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* log(sum(exp(row))) in fp64. */
static double row_lse(const float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* The token that position t predicts, or -1 at the end of its sequence. */
static void batch_targets(const tc_batch *b, int32_t *tgt)
{
    for (size_t s = 0; s < b->n_seqs; s++)
        for (size_t t = b->offsets[s]; t < b->offsets[s + 1]; t++)
            tgt[t] = t + 1 < b->offsets[s + 1] ? b->tokens[t + 1] : -1;
}

/* Sequences [s0, end) form the next batch: as many as fit in budget tokens,
 * at least one. */
static size_t batch_end(const size_t *offsets, size_t n_seqs, size_t s0, size_t budget)
{
    size_t s1 = s0 + 1;
    while (s1 < n_seqs && offsets[s1 + 1] - offsets[s0] <= budget)
        s1++;
    return s1;
}

/* Fills sub with sequences [s0, s1) of the whole, offsets rebased into off. */
static void sub_batch(const int32_t *tokens, const size_t *offsets, size_t s0, size_t s1,
                      size_t *off, tc_batch *sub)
{
    for (size_t s = s0; s <= s1; s++)
        off[s - s0] = offsets[s] - offsets[s0];
    sub->tokens = tokens + offsets[s0];
    sub->offsets = off;
    sub->n_seqs = s1 - s0;
}

/* What one token costs in the forward pass's own buffers. */
static uint64_t forward_bytes_per_token(const tc_config *c)
{
    uint64_t f = 3 * (uint64_t)c->dim + 2 * (uint64_t)c->n_heads * c->head_dim +
                 2 * (uint64_t)c->n_kv_heads * c->head_dim + 2;
    return 4 * f;
}

size_t tc_analyze_batch_tokens(const tc_model *m, const tc_analyze_opts *o, uint64_t bytes)
{
    const tc_config *c = &m->cfg;
    int store = !(o && o->no_measure) || (o && o->head_windows > 0);
    /* Targets, two per-token sums, the stored states and (measuring) the
     * baseline's log-probabilities with their normalisers. */
    uint64_t per_token = forward_bytes_per_token(c) + 4 + 16 +
                         (store ? 8 + 4 * (2 * (uint64_t)c->n_layers * (uint64_t)c->dim + (uint64_t)c->vocab_size)
                                : 4 * 2 * (uint64_t)c->dim);
    uint64_t t = bytes / per_token;
    return t < 1 ? 1 : t > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)t;
}

static int check_input(const tc_model *m, const int32_t *tokens, const size_t *offsets,
                       size_t n_seqs, tc_error *err)
{
    tc_batch all = {tokens, offsets, n_seqs};
    if (tc_batch_check(m, &all, "calibration tokens", err))
        return TC_ERR;
    return TC_OK;
}

/* ---- Perplexity -------------------------------------------------------------------------- */

static int nll_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab,
                      tc_error *err)
{
    tc_nll_observer *acc = ctx;
    const tc_batch *b = acc->batch;
    if (tok0 == 0)
        acc->seq = 0;
    for (size_t i = 0; i < n; i++) {
        size_t t = tok0 + i;
        while (t >= b->offsets[acc->seq + 1])
            acc->seq++;
        if (t + 1 >= b->offsets[acc->seq + 1])
            continue;
        const float *row = logits + i * (size_t)vocab;
        double v = row_lse(row, vocab) - row[b->tokens[t + 1]];
        acc->nll_sum += v;
        acc->n_predicted++;
        if (acc->per_seq) {
            acc->per_seq[2 * acc->seq] += v;
            acc->per_seq[2 * acc->seq + 1] += 1.0;
        }
    }
    return TC_OK;
}

tc_observer tc_nll_observer_make(tc_nll_observer *acc, const tc_batch *b)
{
    memset(acc, 0, sizeof *acc);
    acc->batch = b;
    tc_observer o;
    memset(&o, 0, sizeof o);
    o.ctx = acc;
    o.logits = nll_logits;
    return o;
}

int tc_perplexity(const tc_model *m, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
                  const tc_ppl_opts *opts, tc_ppl *out, tc_error *err)
{
    tc_ppl_opts def;
    memset(&def, 0, sizeof def);
    if (!opts)
        opts = &def;
    if (check_input(m, tokens, offsets, n_seqs, err))
        return TC_ERR;
    size_t n = offsets[n_seqs];
    /* One sequence per pass unless batch_tokens groups them: each sequence's
     * NLL is summed on its own and the sums are added in sequence order, so
     * that the result does not depend on how the sequences are spread over
     * ranks (tc/dist.h). */
    size_t *off = malloc((n_seqs + 1) * sizeof *off), *bseq = malloc((n_seqs + 1) * sizeof *bseq), nb = 0;
    double *rec = calloc(n_seqs ? 2 * n_seqs : 1, sizeof *rec); /* per sequence: NLL, predictions */
    int rc = off && bseq && rec ? TC_OK : tc_err(err, "%s: out of memory for batch offsets", m->path);
    for (size_t s0 = 0; !rc && s0 < n_seqs; nb++) {
        bseq[nb] = s0;
        s0 = opts->batch_tokens ? batch_end(offsets, n_seqs, s0, opts->batch_tokens) : s0 + 1;
    }
    if (!rc)
        bseq[nb] = n_seqs;
    size_t b0 = 0, b1 = 0;
    tc_dist_range(opts->dist, opts->dist ? opts->dist->rank : 0, nb, &b0, &b1);
    size_t t0 = rc ? 0 : offsets[bseq[b0]], t1 = rc ? 0 : offsets[bseq[b1]];
    tc_forward_ws *ws = tc_forward_ws_new(); /* NULL only costs speed */
    for (size_t i = b0; i < b1 && !rc; i++) {
        size_t s0 = bseq[i], s1 = bseq[i + 1];
        tc_batch b;
        sub_batch(tokens, offsets, s0, s1, off, &b);
        tc_nll_observer acc;
        tc_observer ob = tc_nll_observer_make(&acc, &b);
        acc.per_seq = rec + 2 * s0;
        tc_forward_opts fo;
        memset(&fo, 0, sizeof fo);
        fo.n_threads = opts->n_threads;
        fo.skip = opts->skip;
        fo.weights = opts->weights;
        fo.ws = ws;
        fo.observers = &ob;
        fo.n_observers = 1;
        rc = tc_forward(m, &b, &fo, err);
        if (opts->progress && t1 > t0)
            opts->progress(opts->progress_ctx, (double)(offsets[s1] - t0) / (double)(t1 - t0));
    }
    tc_forward_ws_free(ws);
    rc = tc_dist_allgather(opts->dist, rc, rec, n_seqs, 2 * sizeof *rec, err);
    double nll = 0.0;
    uint64_t pred = 0;
    for (size_t s = 0; !rc && s < n_seqs; s++) {
        nll += rec[2 * s];
        pred += (uint64_t)rec[2 * s + 1];
    }
    free(off);
    free(bseq);
    free(rec);
    if (rc)
        return TC_ERR;
    out->n_tokens = n;
    out->n_predicted = pred;
    out->nll = pred ? nll / (double)pred : NAN;
    out->ppl = pred ? exp(out->nll) : NAN;
    return TC_OK;
}

/* ---- The analysis ------------------------------------------------------------------------ */

/* Running mean and sum of squared deviations (Welford): cosines of nearly
 * redundant modules sit within 1e-6 of 1, where sum-of-squares minus the
 * squared mean would cancel. */
typedef struct cos_acc {
    double mean, m2, min;
    double n; /* a count: every field of a record is a double (sum_disjoint) */
} cos_acc;

typedef struct analysis_run {
    const tc_model *m;
    const tc_analyze_opts *o;
    int L, dim, vocab, n_heads, measure;
    int store;            /* X, H and log-probabilities are kept for reruns */
    size_t head_win;      /* heads are masked over sequences [0, head_win) */
    tc_skip *base_skip;   /* [L]: the caller's mask (or none) */
    tc_skip *skip;        /* [L]: the mask of the current rerun */
    uint8_t (*present)[TC_N_MODULES];
    const tc_weights *weights;
    tc_forward_ws *ws;    /* buffers shared by every pass, or NULL */
    /* The current batch. */
    tc_batch b;
    size_t n;
    int32_t *tgt;         /* [Tmax] */
    float *xs, *hs;       /* [L or 1][Tmax][dim] stored X and H */
    float *base_lp;       /* [Tmax][vocab] baseline log-softmax, when measuring */
    double *base_lz;      /* [Tmax] log of the sum of exp(base_lp) of each row */
    size_t tmax;          /* the largest batch */
    /* Batches: batch i is sequences [bseq[i], bseq[i + 1]), fixed by the
     * sequences alone, never by the number of ranks. */
    size_t *bseq, n_batches;
    /* Every batch sums into a record of its own (rec_bytes at recs + i *
     * rec_bytes); the totals are the records added in batch order.  The
     * pointers below point into the record in hand: a batch's while it runs,
     * the totals' when the results are made. */
    unsigned char *recs, *totals;
    size_t rec_bytes;
    cos_acc (*cos)[TC_N_MODULES];
    double *hsum;         /* [HSUM_N][L][n_heads] head statistics */
    double *queries;      /* [L] (counts, exact in a double) */
    double *later;        /* [L]: queries at positions >= 1 */
    double *nll;
    double *n_pred;
    double (*nll_skip)[TC_N_MODULES], (*kl)[TC_N_MODULES];
    double *acc_nll, *acc_kl; /* where the current rerun's sums go */
    /* Masking heads. */
    uint8_t *head_mask;   /* [L][n_heads] */
    double *head_nll, *head_kl; /* [L][n_heads] */
    double head_base;     /* baseline NLL summed over the head windows */
    uint64_t head_pred;
    double *val, *val2;   /* [Tmax] per-token values, summed in token order */
    /* Progress in token-layers. */
    double done, total;
} analysis_run;

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0.0 || bb == 0.0)
        return aa == bb ? 1.0 : 0.0;
    return ab / sqrt(aa * bb);
}

/* Per-token work of the observers runs on every thread; per-token results
 * land in r->val (and r->val2) and are summed in token order, so the sums do
 * not depend on the thread count. */
#define MIN_TOKENS_PER_THREAD 32

typedef struct cos_job {
    analysis_run *r;
    const float *a, *b;
} cos_job;

static void cos_range(void *ctx, size_t begin, size_t end)
{
    cos_job *j = ctx;
    int dim = j->r->dim;
    for (size_t t = begin; t < end; t++)
        j->r->val[t] = cosine(j->a + t * dim, j->b + t * dim, dim);
}

static void cos_add(analysis_run *r, cos_acc *c, const float *a, const float *b, size_t n)
{
    cos_job j = {r, a, b};
    tc_parallel_for(r->o->n_threads, n, MIN_TOKENS_PER_THREAD, cos_range, &j);
    for (size_t t = 0; t < n; t++) {
        double v = r->val[t];
        if (c->n == 0 || v < c->min)
            c->min = v;
        c->n++;
        double delta = v - c->mean;
        c->mean += delta / (double)c->n;
        c->m2 += delta * (v - c->mean);
    }
}

static float *stored(const analysis_run *r, float *base, int layer)
{
    size_t slot = r->store ? (size_t)layer : 0;
    return base + slot * r->tmax * (size_t)r->dim;
}

static int base_hidden(void *ctx, int layer, tc_point at, const float *x, size_t n, int dim,
                       tc_error *err)
{
    analysis_run *r = ctx;
    float *xs = stored(r, r->xs, layer), *hs = stored(r, r->hs, layer);
    const uint8_t *pr = r->present[layer];
    size_t bytes = n * (size_t)dim * sizeof *x;
    if (at == TC_AT_ATTN_IN) {
        memcpy(xs, x, bytes);
    } else if (at == TC_AT_ATTN_OUT) {
        if (pr[TC_MOD_ATTN])
            cos_add(r, &r->cos[layer][TC_MOD_ATTN], xs, x, n);
        memcpy(hs, x, bytes);
    } else {
        if (pr[TC_MOD_MLP])
            cos_add(r, &r->cos[layer][TC_MOD_MLP], hs, x, n);
        if (pr[TC_MOD_BLOCK])
            cos_add(r, &r->cos[layer][TC_MOD_BLOCK], xs, x, n);
    }
    return TC_OK;
}

typedef struct logits_job {
    analysis_run *r;
    const float *logits;
    size_t tok0;
} logits_job;

/* NLL of each predicted position into val; the log-softmax rows kept. */
static void base_range(void *ctx, size_t begin, size_t end)
{
    logits_job *j = ctx;
    analysis_run *r = j->r;
    int vocab = r->vocab;
    for (size_t i = begin; i < end; i++) {
        size_t t = j->tok0 + i;
        const float *row = j->logits + i * (size_t)vocab;
        double lse = row_lse(row, vocab);
        r->val[i] = r->tgt[t] >= 0 ? lse - row[r->tgt[t]] : 0.0;
        if (r->store) {
            float *lp = r->base_lp + t * (size_t)vocab;
            double z = 0.0;
            for (int v = 0; v < vocab; v++) {
                lp[v] = (float)(row[v] - lse);
                z += exp((double)lp[v]);
            }
            r->base_lz[t] = log(z);
        }
    }
}

static int base_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab,
                       tc_error *err)
{
    analysis_run *r = ctx;
    logits_job j = {r, logits, tok0};
    tc_parallel_for(r->o->n_threads, n, MIN_TOKENS_PER_THREAD, base_range, &j);
    for (size_t i = 0; i < n; i++)
        if (r->tgt[tok0 + i] >= 0) {
            *r->nll += r->val[i];
            (*r->n_pred)++;
        }
    return TC_OK;
}

enum { HSUM_ENT, HSUM_TOP, HSUM_SINK, HSUM_PREV, HSUM_DIAG, HSUM_K90, HSUM_N };

static double *hsum_at(const analysis_run *r, int k, int layer)
{
    return r->hsum + ((size_t)k * (size_t)r->L + (size_t)layer) * (size_t)r->n_heads;
}

static int base_heads(void *ctx, int layer, const tc_head_sums *hs, tc_error *err)
{
    analysis_run *r = ctx;
    const double *src[HSUM_N] = {hs->entropy, hs->top10, hs->sink, hs->prev, hs->diag, hs->k90};
    for (int k = 0; k < HSUM_N; k++)
        for (int h = 0; h < hs->n_heads && h < r->n_heads; h++)
            hsum_at(r, k, layer)[h] += src[k][h];
    r->queries[layer] += (double)hs->n_queries;
    r->later[layer] += (double)hs->n_later;
    return TC_OK;
}

/* NLL and KL(baseline || rerun) of every predicted position of a rerun. */
static void skip_range(void *ctx, size_t begin, size_t end)
{
    logits_job *j = ctx;
    analysis_run *r = j->r;
    int vocab = r->vocab;
    for (size_t i = begin; i < end; i++) {
        size_t t = j->tok0 + i;
        r->val[i] = r->val2[i] = 0.0;
        if (r->tgt[t] < 0)
            continue;
        const float *row = j->logits + i * (size_t)vocab, *lp = r->base_lp + t * (size_t)vocab;
        /* The stored rows are log-probabilities rounded to float: renormalised
         * by their own sum they are an exact distribution, whose KL to an
         * identical rerun is 0 to fp64 rounding instead of the ~1e-9 that
         * the rounding of each entry would leave. */
        double lse = row_lse(row, vocab), lz = r->base_lz[t], kl = 0.0;
        for (int v = 0; v < vocab; v++) {
            double lb = (double)lp[v] - lz;
            kl += exp(lb) * (lb - ((double)row[v] - lse));
        }
        r->val[i] = lse - row[r->tgt[t]];
        r->val2[i] = kl;
    }
}

static int skip_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab,
                       tc_error *err)
{
    analysis_run *r = ctx;
    logits_job j = {r, logits, tok0};
    tc_parallel_for(r->o->n_threads, n, MIN_TOKENS_PER_THREAD, skip_range, &j);
    double nll = 0.0, kl = 0.0;
    for (size_t i = 0; i < n; i++) {
        nll += r->val[i];
        kl += r->val2[i];
    }
    *r->acc_nll += nll;
    *r->acc_kl += kl;
    return TC_OK;
}

void tc_analysis_progress(const tc_analysis_ctx *x, double token_layers)
{
    *x->done += token_layers;
    if (x->o->progress && x->total > 0)
        x->o->progress(x->o->progress_ctx, *x->done < x->total ? *x->done / x->total : 1.0);
}

static void report_progress(analysis_run *r, double token_layers)
{
    r->done += token_layers;
    if (r->o->progress && r->total > 0)
        r->o->progress(r->o->progress_ctx, r->done < r->total ? r->done / r->total : 1.0);
}

/* Reruns the batch from hidden state x at layer `first` with r->skip and
 * `mask` (heads; or NULL) applied, summing into *nll and *kl. */
static int rerun_into(analysis_run *r, int first, const float *x, const uint8_t *mask, double *nll, double *kl,
                      tc_error *err)
{
    tc_observer ob;
    memset(&ob, 0, sizeof ob);
    ob.ctx = r;
    ob.logits = skip_logits;
    tc_forward_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.n_threads = r->o->n_threads;
    fo.skip = r->skip;
    fo.weights = r->weights;
    fo.ws = r->ws;
    fo.observers = &ob;
    fo.n_observers = 1;
    fo.head_mask = mask;
    r->acc_nll = nll;
    r->acc_kl = kl;
    if (tc_forward_from(r->m, &r->b, first, x, &fo, err))
        return TC_ERR;
    report_progress(r, (double)r->n * (r->L - first + 1));
    return TC_OK;
}

/* The same with module `mod` of layer l skipped (the caller has set r->skip). */
static int rerun(analysis_run *r, int l, tc_module mod, int first, const float *x, tc_error *err)
{
    return rerun_into(r, first, x, NULL, &r->nll_skip[l][mod], &r->kl[l][mod], err);
}

/* Each head of layer l's attention (when present) masked alone, rerun from
 * the layer's input. */
static int measure_heads_layer(analysis_run *r, int l, tc_error *err)
{
    if (!r->present[l][TC_MOD_ATTN])
        return TC_OK;
    for (int h = 0; h < r->n_heads; h++) {
        size_t id = (size_t)l * (size_t)r->n_heads + (size_t)h;
        r->head_mask[id] = 1;
        int rc = rerun_into(r, l, stored(r, r->xs, l), r->head_mask, &r->head_nll[id], &r->head_kl[id], err);
        r->head_mask[id] = 0;
        if (rc)
            return TC_ERR;
    }
    return TC_OK;
}

/* Layer l's modules skipped one at a time. */
static int measure_layer(analysis_run *r, int l, tc_error *err)
{
    const uint8_t *pr = r->present[l];
    float *xs = stored(r, r->xs, l), *hs = stored(r, r->hs, l);
    if (pr[TC_MOD_ATTN]) {
        r->skip[l].attn = 1;
        int rc = rerun(r, l, TC_MOD_ATTN, l, xs, err);
        r->skip[l].attn = r->base_skip[l].attn;
        if (rc)
            return TC_ERR;
    }
    if (pr[TC_MOD_MLP] && rerun(r, l, TC_MOD_MLP, l + 1, hs, err))
        return TC_ERR;
    /* With one module present the block is that module: no rerun needed. */
    if (pr[TC_MOD_ATTN] && pr[TC_MOD_MLP] && rerun(r, l, TC_MOD_BLOCK, l + 1, xs, err))
        return TC_ERR;
    return TC_OK;
}

static int baseline_batch(analysis_run *r, tc_error *err)
{
    tc_observer ob;
    memset(&ob, 0, sizeof ob);
    ob.ctx = r;
    ob.hidden = base_hidden;
    ob.logits = base_logits;
    ob.head_stats = base_heads;
    ob.want_head_stats = !r->o->no_head_stats;
    tc_forward_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.n_threads = r->o->n_threads;
    fo.skip = r->base_skip;
    fo.weights = r->weights;
    fo.ws = r->ws;
    fo.observers = &ob;
    fo.n_observers = 1;
    if (tc_forward(r->m, &r->b, &fo, err))
        return TC_ERR;
    report_progress(r, (double)r->n * (r->L + 1));
    return TC_OK;
}

/* Token-layers of work per token of layer l's reruns: its modules skipped
 * (when measuring) and, in a head window, its heads masked. */
static double layer_work(const analysis_run *r, int l, int head_window)
{
    const uint8_t *pr = r->present[l];
    double w = 0;
    if (r->measure) {
        w += pr[TC_MOD_ATTN] ? r->L - l + 1 : 0;
        w += pr[TC_MOD_MLP] ? r->L - l : 0;
        w += pr[TC_MOD_ATTN] && pr[TC_MOD_MLP] ? r->L - l : 0;
    }
    if (head_window && pr[TC_MOD_ATTN])
        w += (double)r->n_heads * (r->L - l + 1);
    return w;
}

static void run_free(analysis_run *r)
{
    free(r->base_skip);
    free(r->skip);
    free(r->present);
    free(r->tgt);
    free(r->xs);
    free(r->hs);
    free(r->base_lp);
    free(r->base_lz);
    free(r->bseq);
    free(r->recs);
    free(r->totals);
    free(r->head_mask);
    free(r->val);
    free(r->val2);
    tc_forward_ws_free(r->ws);
}

static int alloc_array(void **p, uint64_t a, uint64_t b, uint64_t c, const tc_model *m,
                       tc_error *err)
{
    uint64_t n;
    if (tc_mul_u64(a, b, &n) || tc_mul_u64(n, c, &n) || n > SIZE_MAX)
        return tc_err(err, "%s: analysis buffers are too large", m->path);
    *p = calloc(n ? (size_t)n : 1, 1);
    if (!*p)
        return tc_err(err, "%s: out of memory for analysis buffers (%llu bytes)", m->path,
                      (unsigned long long)n);
    return TC_OK;
}

/* Sequences [s0, end) form the next batch: one sequence, or as many as
 * batch_tokens holds when that is set.  A batch never straddles the end of
 * the head windows, so that heads are masked over exactly those.  Batches are
 * the unit of distribution and of summation, and BLAS rounds a row
 * differently in products of different heights, so their bounds depend on
 * the sequences and the options alone. */
static size_t next_batch(const analysis_run *r, const size_t *offsets, size_t n_seqs, size_t s0)
{
    if (!r->o->batch_tokens)
        return s0 + 1;
    return batch_end(offsets, s0 < r->head_win ? r->head_win : n_seqs, s0, r->o->batch_tokens);
}

/* The record layout: every field 8-byte aligned, so that a record moves as
 * bytes between ranks and is read back in place. */
static size_t bind_record(analysis_run *r, unsigned char *base)
{
    size_t L = (size_t)r->L, nh = (size_t)r->n_heads, at = 0;
#define TC_FIELD(ptr, bytes)                                  \
    do {                                                      \
        if (base)                                             \
            ptr = (void *)(base + at);                        \
        at += (bytes);                                        \
    } while (0)
    TC_FIELD(r->cos, L * TC_N_MODULES * sizeof(cos_acc));
    TC_FIELD(r->hsum, HSUM_N * L * nh * sizeof(double));
    TC_FIELD(r->queries, L * sizeof(double));
    TC_FIELD(r->later, L * sizeof(double));
    TC_FIELD(r->nll, sizeof(double));
    TC_FIELD(r->n_pred, sizeof(double));
    TC_FIELD(r->nll_skip, L * TC_N_MODULES * sizeof(double));
    TC_FIELD(r->kl, L * TC_N_MODULES * sizeof(double));
    TC_FIELD(r->head_nll, L * nh * sizeof(double));
    TC_FIELD(r->head_kl, L * nh * sizeof(double));
#undef TC_FIELD
    return at;
}

/* Chan et al.'s combination of two Welford accumulators. */
static void cos_merge(cos_acc *t, const cos_acc *a)
{
    if (a->n == 0)
        return;
    if (t->n == 0) {
        *t = *a;
        return;
    }
    double n = t->n + a->n, delta = a->mean - t->mean;
    t->mean += delta * (a->n / n);
    t->m2 += a->m2 + delta * delta * (t->n * a->n / n);
    if (a->min < t->min)
        t->min = a->min;
    t->n += a->n;
}

/* The totals: every batch's record added in batch order; the baseline NLL of
 * the head windows on the side. */
static void sum_records(analysis_run *r)
{
    analysis_run t = *r, b = *r;
    memset(r->totals, 0, r->rec_bytes);
    bind_record(&t, r->totals);
    size_t L = (size_t)r->L, nh = (size_t)r->n_heads;
    for (size_t i = 0; i < r->n_batches; i++) {
        bind_record(&b, r->recs + i * r->rec_bytes);
        for (size_t l = 0; l < L; l++)
            for (int mod = 0; mod < TC_N_MODULES; mod++) {
                cos_merge(&t.cos[l][mod], &b.cos[l][mod]);
                t.nll_skip[l][mod] += b.nll_skip[l][mod];
                t.kl[l][mod] += b.kl[l][mod];
            }
        for (size_t k = 0; k < HSUM_N * L * nh; k++)
            t.hsum[k] += b.hsum[k];
        for (size_t l = 0; l < L; l++) {
            t.queries[l] += b.queries[l];
            t.later[l] += b.later[l];
        }
        for (size_t k = 0; k < L * nh; k++) {
            t.head_nll[k] += b.head_nll[k];
            t.head_kl[k] += b.head_kl[k];
        }
        *t.nll += *b.nll;
        *t.n_pred += *b.n_pred;
        if (r->bseq[i] < r->head_win) {
            r->head_base += *b.nll;
            r->head_pred += (uint64_t)*b.n_pred;
        }
    }
    bind_record(r, r->totals);
}

static int run_init(analysis_run *r, const tc_model *m, const tc_analyze_opts *o,
                    const size_t *offsets, size_t n_seqs, tc_error *err)
{
    const tc_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->o = o;
    r->L = c->n_layers;
    r->dim = c->dim;
    r->vocab = c->vocab_size;
    r->n_heads = c->n_heads;
    r->measure = !o->no_measure;
    r->head_win = o->head_windows < n_seqs ? o->head_windows : n_seqs;
    r->store = r->measure || r->head_win > 0;
    uint64_t L = (uint64_t)r->L, nh = (uint64_t)r->n_heads;
    r->tmax = 0;
    if (alloc_array((void **)&r->bseq, (uint64_t)n_seqs + 1, sizeof(size_t), 1, m, err))
        return TC_ERR;
    for (size_t s0 = 0; s0 < n_seqs;) {
        size_t s1 = next_batch(r, offsets, n_seqs, s0);
        if (offsets[s1] - offsets[s0] > r->tmax)
            r->tmax = offsets[s1] - offsets[s0];
        r->bseq[r->n_batches++] = s0;
        s0 = s1;
    }
    r->bseq[r->n_batches] = n_seqs;
    r->rec_bytes = bind_record(r, NULL);
    uint64_t slots = r->store ? L : 1, T = r->tmax ? r->tmax : 1;
    if (alloc_array((void **)&r->base_skip, L, sizeof(tc_skip), 1, m, err) ||
        alloc_array((void **)&r->skip, L, sizeof(tc_skip), 1, m, err) ||
        alloc_array((void **)&r->present, L, TC_N_MODULES, 1, m, err) ||
        alloc_array((void **)&r->tgt, T, sizeof(int32_t), 1, m, err) ||
        alloc_array((void **)&r->xs, slots * T, (uint64_t)c->dim, sizeof(float), m, err) ||
        alloc_array((void **)&r->hs, slots * T, (uint64_t)c->dim, sizeof(float), m, err) ||
        (r->store &&
         (alloc_array((void **)&r->base_lp, T, (uint64_t)c->vocab_size, sizeof(float), m, err) ||
          alloc_array((void **)&r->base_lz, T, sizeof(double), 1, m, err))) ||
        alloc_array((void **)&r->recs, r->n_batches, r->rec_bytes, 1, m, err) ||
        alloc_array((void **)&r->totals, r->rec_bytes, 1, 1, m, err) ||
        alloc_array((void **)&r->head_mask, L, nh, 1, m, err) ||
        alloc_array((void **)&r->val, T, sizeof(double), 1, m, err) ||
        alloc_array((void **)&r->val2, T, sizeof(double), 1, m, err))
        return TC_ERR;
    r->ws = tc_forward_ws_new(); /* without one each pass allocates its own */
    if (o->skip)
        memcpy(r->base_skip, o->skip, (size_t)L * sizeof *r->base_skip);
    memcpy(r->skip, r->base_skip, (size_t)L * sizeof *r->skip);
    for (int l = 0; l < r->L; l++) {
        uint8_t *pr = r->present[l];
        pr[TC_MOD_ATTN] = m->layers[l].has_attn && !r->base_skip[l].attn;
        pr[TC_MOD_MLP] = m->layers[l].has_mlp && !r->base_skip[l].mlp;
        pr[TC_MOD_BLOCK] = pr[TC_MOD_ATTN] || pr[TC_MOD_MLP];
    }
    return TC_OK;
}

static void finish_module(const analysis_run *r, int l, tc_module mod, tc_module_stats *st)
{
    const cos_acc *c = &r->cos[l][mod];
    memset(st, 0, sizeof *st);
    st->present = r->present[l][mod];
    if (!st->present)
        return;
    if (c->n) {
        double var = c->m2 / (double)c->n;
        st->cos_mean = c->mean;
        st->cos_std = var > 0.0 ? sqrt(var) : 0.0;
        st->cos_min = c->min;
    }
    if (!r->measure || !*r->n_pred)
        return;
    /* The block of a layer with a single module is that module. */
    tc_module src = mod;
    if (mod == TC_MOD_BLOCK && !(r->present[l][TC_MOD_ATTN] && r->present[l][TC_MOD_MLP]))
        src = r->present[l][TC_MOD_ATTN] ? TC_MOD_ATTN : TC_MOD_MLP;
    st->measured = 1;
    st->dnll = (r->nll_skip[l][src] - *r->nll) / (double)*r->n_pred;
    st->kl = r->kl[l][src] / (double)*r->n_pred;
}

static int finish(const analysis_run *r, tc_analysis *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    out->n_layers = r->L;
    out->n_heads = r->n_heads;
    out->layers = calloc((size_t)r->L, sizeof *out->layers);
    if (!out->layers)
        return tc_err(err, "%s: out of memory for analysis results", r->m->path);
    for (int l = 0; l < r->L; l++) {
        tc_layer_stats *ls = &out->layers[l];
        for (int mod = 0; mod < TC_N_MODULES; mod++)
            finish_module(r, l, (tc_module)mod, &ls->mod[mod]);
        if (!r->present[l][TC_MOD_ATTN] || ((r->o->no_head_stats || !r->queries[l]) && !r->head_win))
            continue;
        ls->heads = calloc((size_t)r->n_heads, sizeof *ls->heads);
        if (!ls->heads) {
            tc_analysis_free(out);
            return tc_err(err, "%s: out of memory for analysis results", r->m->path);
        }
        double later = r->later[l] ? r->later[l] : NAN, queries = r->queries[l] ? r->queries[l] : NAN;
        for (int h = 0; h < r->n_heads; h++) {
            tc_head_stats *hs = &ls->heads[h];
            size_t id = (size_t)l * (size_t)r->n_heads + (size_t)h;
            hs->entropy = hsum_at(r, HSUM_ENT, l)[h] / queries;
            hs->top10_mass = hsum_at(r, HSUM_TOP, l)[h] / queries;
            hs->sink = hsum_at(r, HSUM_SINK, l)[h] / later;
            hs->prev = hsum_at(r, HSUM_PREV, l)[h] / later;
            hs->diag = hsum_at(r, HSUM_DIAG, l)[h] / later;
            hs->k90 = hsum_at(r, HSUM_K90, l)[h] / later;
            hs->measured = r->head_win > 0 && r->head_pred > 0;
            hs->dnll = hs->measured ? (r->head_nll[id] - r->head_base) / (double)r->head_pred : NAN;
            hs->kl = hs->measured ? r->head_kl[id] / (double)r->head_pred : NAN;
        }
    }
    for (int l = 0; l < r->L; l++) {
        tc_token_stats *ts = &out->layers[l].tokens;
        ts->keep[0] = ts->keep[1] = NAN;
        for (int g = 0; g < TC_TOKEN_GRID_MAX; g++)
            ts->drop_dnll[g] = ts->drop_se[g] = NAN;
    }
    out->tokens.chosen = -1;
    out->nll = *r->n_pred ? *r->nll / (double)*r->n_pred : NAN;
    out->ppl = *r->n_pred ? exp(out->nll) : NAN;
    out->n_predicted = (uint64_t)*r->n_pred;
    return TC_OK;
}

int tc_analyze(const tc_model *m, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
               const tc_analyze_opts *opts, tc_analysis *out, tc_error *err)
{
    double t0 = now_seconds();
    tc_analyze_opts def;
    memset(&def, 0, sizeof def);
    if (!opts)
        opts = &def;
    if (check_input(m, tokens, offsets, n_seqs, err))
        return TC_ERR;
    size_t n = offsets[n_seqs];
    if (n == 0)
        return tc_err(err, "%s: no calibration tokens to analyse", m->path);
    if (opts->head_windows > 0 && m->cfg.t.diff_attn)
        return tc_err(err, "%s: masking heads of differential attention (DiffLlama) is not implemented", m->path);
    analysis_run r;
    tc_weights w;
    memset(&w, 0, sizeof w);
    size_t *off = malloc((n_seqs + 1) * sizeof *off);
    int rc = off ? run_init(&r, m, opts, offsets, n_seqs, err)
                 : tc_err(err, "%s: out of memory for batch offsets", m->path);
    if (!off)
        memset(&r, 0, sizeof r);
    int extra = opts->head_windows > 0 || opts->token_windows > 0;
    if (!rc && (r.measure || extra) && tc_weights_bytes(m) <= PRELOAD_LIMIT) {
        rc = tc_weights_load(&w, m, err);
        r.weights = rc ? NULL : &w;
    }
    /* The work items: per batch, its baseline (the cosines, head sums and
     * NLL) and each layer's reruns (its modules skipped, and in the head
     * windows its heads masked).  Items go to ranks in order by weight, so a
     * batch's layers may be spread over several ranks, each of which runs
     * the batch's baseline to get the stored states; only the owner of the
     * baseline item keeps its sums.  A job of one owns every item. */
    size_t L = (size_t)r.L, n_items = rc ? 0 : r.n_batches * (L + 1);
    int *owner = rc ? NULL : malloc((n_items ? n_items : 1) * sizeof *owner);
    unsigned char *scratch = rc ? NULL : calloc(1, r.rec_bytes);
    if (!rc && (!owner || !scratch))
        rc = tc_err(err, "%s: out of memory for the analysis's work list", m->path);
    int me = opts->dist ? opts->dist->rank : 0;
    if (!rc) {
        double all = 0.0, before = 0.0;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t b = 0; b < r.n_batches; b++) {
                double T = (double)(offsets[r.bseq[b + 1]] - offsets[r.bseq[b]]);
                int heads = r.bseq[b] < r.head_win;
                for (size_t k = 0; k <= L; k++) {
                    double wt = k == 0 ? T * (r.L + 1) : T * layer_work(&r, (int)k - 1, heads);
                    if (pass == 1) {
                        owner[b * (L + 1) + k] = tc_dist_owner(opts->dist, before, wt, all);
                        before += wt;
                    } else {
                        all += wt;
                    }
                }
            }
        }
        /* Progress: this rank's items, and the baselines it runs for them. */
        for (size_t b = 0; b < r.n_batches; b++) {
            double T = (double)(offsets[r.bseq[b + 1]] - offsets[r.bseq[b]]);
            int any = 0;
            for (size_t k = 0; k <= L; k++)
                if (owner[b * (L + 1) + k] == me) {
                    any = 1;
                    if (k > 0)
                        r.total += T * layer_work(&r, (int)k - 1, r.bseq[b] < r.head_win);
                }
            r.total += any ? T * (r.L + 1) : 0.0;
        }
        r.total += tc_analysis_extra_work(m, offsets, n_seqs, opts);
    }
    for (size_t i = 0; !rc && i < r.n_batches; i++) {
        const int *own = owner + i * (L + 1);
        int any = 0;
        for (size_t k = 0; k <= L; k++)
            any |= own[k] == me && (k == 0 || layer_work(&r, (int)k - 1, r.bseq[i] < r.head_win) > 0);
        if (!any)
            continue;
        size_t s0 = r.bseq[i], s1 = r.bseq[i + 1];
        sub_batch(tokens, offsets, s0, s1, off, &r.b);
        r.n = tc_batch_tokens(&r.b);
        batch_targets(&r.b, r.tgt);
        bind_record(&r, own[0] == me ? r.recs + i * r.rec_bytes : scratch);
        rc = baseline_batch(&r, err);
        bind_record(&r, r.recs + i * r.rec_bytes);
        for (int l = 0; !rc && l < r.L; l++) {
            if (own[l + 1] != me)
                continue;
            if (r.measure)
                rc = measure_layer(&r, l, err);
            if (!rc && s0 < r.head_win)
                rc = measure_heads_layer(&r, l, err);
        }
    }
    free(owner);
    free(scratch);
    /* Every field of every record was set by one rank: summed over the
     * ranks they are on every rank, and every rank adds the records in the
     * same order, so the totals are the same bits whatever the number of
     * ranks. */
    rc = tc_dist_sum_disjoint(opts->dist, rc, (double *)(void *)r.recs, rc ? 0 : r.n_batches * r.rec_bytes / sizeof(double),
                              err);
    if (!rc) {
        sum_records(&r);
        rc = finish(&r, out, err);
    }
    if (!rc && r.head_win > 0) {
        tc_analysis_ctx ctx = {m, opts, r.weights, r.ws, &r.done, r.total};
        rc = tc_analysis_head_curve(&ctx, tokens, offsets, r.head_win, r.head_base, r.head_pred, out, err);
        if (rc)
            tc_analysis_free(out);
    }
    if (!rc && opts->token_windows > 0) {
        tc_analysis_ctx ctx = {m, opts, r.weights, r.ws, &r.done, r.total};
        rc = tc_analysis_tokens(&ctx, tokens, offsets, n_seqs < opts->token_windows ? n_seqs : opts->token_windows,
                                out, err);
        if (rc)
            tc_analysis_free(out);
    }
    if (!rc) {
        out->n_tokens = n;
        out->seconds = now_seconds() - t0;
    }
    tc_weights_free(&w);
    run_free(&r);
    free(off);
    return rc;
}
