/* Token redundancy, measured: which tokens later layers can do without.
 *
 * Each window is run without its last token, and the NLL with which its last
 * position predicts that token is the figure of merit (the prefill of a
 * prompt: only the last position's prediction is used).  Dropping tokens
 * from layer l on means layers l .. L-1 run on the kept tokens alone: their
 * queries are computed for kept tokens only, their keys and values are the
 * kept tokens', and the kept tokens keep their positions.  Which tokens go
 * is the FastV / PyramidDrop rule: the window's first token (the attention
 * sink) and its last position are always kept; the others are ranked by the
 * attention the last position gives them at layer l - 1 (mean over heads),
 * and the highest-ranked share r of them stays.
 *
 * The pass keeps one layer's input for every window (X_l) and advances it
 * one layer at a time; at each layer it runs every ratio of the grid, from
 * the largest down, until one costs more than 5 % of the baseline NLL, and
 * at the first boundary of each PyramidDrop-style schedule it runs that
 * schedule's stages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis_internal.h"

static const double GRID[] = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02};
static const double LAMBDAS[] = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1};
static const int STAGES[] = {2, 3, 4};
static const double THRESHOLDS[2] = {0.01, 0.05};
#define N_GRID ((int)(sizeof GRID / sizeof GRID[0]))
#define N_LAMBDAS ((int)(sizeof LAMBDAS / sizeof LAMBDAS[0]))
#define N_STAGE_KINDS ((int)(sizeof STAGES / sizeof STAGES[0]))
#define BUDGET_BYTES ((uint64_t)256 << 20)

typedef struct tok_run {
    const tc_analysis_ctx *x;
    const tc_model *m;
    int L, dim, nh;
    size_t W;          /* windows (each at least 3 tokens long) */
    int32_t *tok;      /* input tokens: each window but its last token */
    size_t *off;       /* [W + 1] */
    int32_t *target;   /* [W]: the last token of each window */
    size_t n;          /* input tokens in all */
    size_t budget;     /* tokens per pass */
    double *base;      /* [W]: baseline NLL of the last prediction */
    float *X;          /* [n][dim]: the current layer's input */
    float *score;      /* [n]: attention from the last position at the layer before (mean over heads) */
    /* Baseline observers: the received attention per layer. */
    tc_received *acc_last, *acc_mean; /* [L] sums over windows */
    uint64_t *acc_n;                  /* [L] windows summed */
    float *tmp;        /* [longest window] scratch */
    float *tmp2;
    /* The batch being run. */
    size_t b0, b1;     /* windows [b0, b1) */
    const size_t *boff;/* the batch's offsets (its own token indices) */
    int capture_layer; /* hidden state after this layer goes to xcap, scores to scap; -1: none */
    float *xcap, *scap;
    double *nll_out;   /* [b1 - b0]: last-position NLL, or NULL */
} tok_run;

static void tok_free(tok_run *t)
{
    free(t->tok);
    free(t->off);
    free(t->target);
    free(t->base);
    free(t->X);
    free(t->score);
    free(t->acc_last);
    free(t->acc_mean);
    free(t->acc_n);
    free(t->tmp);
    free(t->tmp2);
}

static double row_lse(const float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* ---- Observers ----------------------------------------------------------------------- */

static int obs_hidden(void *ctx, int layer, tc_point at, const float *x, size_t n, int dim, tc_error *err)
{
    (void)err;
    tok_run *t = ctx;
    if (layer == t->capture_layer && at == TC_AT_MLP_OUT && t->xcap)
        memcpy(t->xcap, x, n * (size_t)dim * sizeof *x);
    return TC_OK;
}

static int float_desc(const void *pa, const void *pb)
{
    float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b;
}

/* Fewest of w[0..n) (largest first) holding `share` of their sum, as a fraction of n. */
static double key_fraction(const float *w, size_t n, double share, float *scratch)
{
    double total = 0.0;
    for (size_t j = 0; j < n; j++) {
        scratch[j] = w[j];
        total += w[j];
    }
    qsort(scratch, n, sizeof *scratch, float_desc);
    double acc = 0.0;
    size_t k = 0;
    while (k < n && acc < share * total)
        acc += scratch[k++];
    return n ? (double)k / (double)n : 0.0;
}

static void add_received(tc_received *r, const float *w, size_t n, float *scratch)
{
    r->first += n ? w[0] : 0.0;
    for (size_t j = 0; j < n; j++)
        r->bins[j * TC_RECV_BINS / n] += w[j];
    r->keys50 += key_fraction(w, n, 0.5, scratch);
    r->keys90 += key_fraction(w, n, 0.9, scratch);
}

static int obs_received(void *ctx, int layer, const float *last, const float *all, size_t n, int nh, tc_error *err)
{
    (void)err;
    tok_run *t = ctx;
    /* The ranking: mean over heads of the last position's weights. */
    if (layer == t->capture_layer && t->scap)
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int h = 0; h < nh; h++)
                s += last[(size_t)h * n + i];
            t->scap[i] = (float)(s / nh);
        }
    if (!t->acc_n || t->capture_layer >= 0)
        return TC_OK; /* the received statistics come from the baseline alone */
    for (size_t s = 0; s + t->b0 < t->b1; s++) {
        size_t o = t->boff[s], len = t->boff[s + 1] - o;
        for (size_t j = 0; j < len; j++) {
            double a = 0.0, b = 0.0;
            for (int h = 0; h < nh; h++) {
                a += last[(size_t)h * n + o + j];
                b += all[(size_t)h * n + o + j];
            }
            t->tmp[j] = (float)(a / nh);
            t->tmp2[j] = (float)(b / nh / (double)len);
        }
        float *scratch = t->tmp + len; /* tmp holds twice the longest window */
        add_received(&t->acc_last[layer], t->tmp, len, scratch);
        add_received(&t->acc_mean[layer], t->tmp2, len, scratch);
        t->acc_n[layer]++;
    }
    return TC_OK;
}

static int obs_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    tok_run *t = ctx;
    if (!t->nll_out)
        return TC_OK;
    for (size_t s = 0; s + t->b0 < t->b1; s++) {
        size_t last = t->boff[s + 1] - 1;
        if (last < tok0 || last >= tok0 + n)
            continue;
        const float *row = logits + (last - tok0) * (size_t)vocab;
        t->nll_out[s] = row_lse(row, vocab) - row[t->target[t->b0 + s]];
    }
    return TC_OK;
}

static tc_observer observer(tok_run *t, int want_received)
{
    tc_observer ob;
    memset(&ob, 0, sizeof ob);
    ob.ctx = t;
    ob.hidden = obs_hidden;
    ob.received = obs_received;
    ob.want_received = want_received;
    ob.logits = obs_logits;
    return ob;
}

static void fwd_opts(const tok_run *t, tc_forward_opts *fo, const tc_observer *ob)
{
    memset(fo, 0, sizeof *fo);
    fo->n_threads = t->x->o->n_threads;
    fo->skip = t->x->o->skip;
    fo->weights = t->x->weights;
    fo->ws = t->x->ws;
    fo->observers = ob;
    fo->n_observers = 1;
}

static int has_attn(const tok_run *t, int l)
{
    const tc_skip *sk = t->x->o->skip;
    return t->m->layers[l].has_attn && !(sk && sk[l].attn);
}

/* Windows [b0, b1) form the next pass. */
static size_t batch_end(const tok_run *t, size_t b0)
{
    size_t b1 = b0 + 1;
    while (b1 < t->W && t->off[b1 + 1] - t->off[b0] <= t->budget)
        b1++;
    return b1;
}

/* ---- Plans: which tokens each stage keeps ------------------------------------------------ */

typedef struct cand {
    float score;
    uint32_t pos;
} cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int pos_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return a < b ? -1 : a > b;
}

/* From `n` kept rows (in position order, scores sc[]), keeps the first, the
 * last and the `k` best-scored others, in position order: writes the rows
 * kept (indices into the n) to rows and returns their count. */
static size_t select_rows(const float *sc, size_t n, size_t k, uint32_t *rows, cand *scratch)
{
    if (n <= 2 || k + 2 >= n) {
        for (size_t i = 0; i < n; i++)
            rows[i] = (uint32_t)i;
        return n;
    }
    for (size_t i = 1; i + 1 < n; i++)
        scratch[i - 1] = (cand){sc[i], (uint32_t)i};
    qsort(scratch, n - 2, sizeof *scratch, cand_cmp);
    rows[0] = 0;
    for (size_t i = 0; i < k; i++)
        rows[1 + i] = scratch[i].pos;
    rows[k + 1] = (uint32_t)(n - 1);
    qsort(rows + 1, k, sizeof *rows, pos_cmp);
    return k + 2;
}

/* Droppable tokens a stage keeps: share r of the n - 2 droppable ones. */
static size_t kept_of(double r, size_t n)
{
    if (n <= 2)
        return 0;
    double k = floor(r * (double)(n - 2) + 0.5);
    return k < 0 ? 0 : (size_t)k;
}

/* A plan: stage i (1 .. n_stages-1) runs layers start[i] .. start[i+1]-1
 * (the last one to the end) keeping share[i] of the droppable tokens.
 * Stage 0 (layers 0 .. start[1]-1, every token) is what X and score hold. */
typedef struct plan {
    int n_stages;
    int start[TC_SCHEDULE_MAX_STAGES + 1];
    double share[TC_SCHEDULE_MAX_STAGES + 1];
} plan;

/* Runs the plan over windows [b0, b1); nll[s - b0] gets each last NLL. */
static int run_plan_batch(tok_run *t, const plan *p, size_t b0, size_t b1, double *nll, tc_error *err)
{
    const int dim = t->dim;
    size_t n0 = t->off[b1] - t->off[b0], nw = b1 - b0, longest = 0;
    for (size_t s = b0; s < b1; s++)
        if (t->off[s + 1] - t->off[s] > longest)
            longest = t->off[s + 1] - t->off[s];
    /* The kept rows of every window: positions, scores, hidden states. */
    uint32_t *pos = malloc(n0 * sizeof *pos), *npos = malloc(n0 * sizeof *npos), *rows = malloc(longest * sizeof *rows);
    float *sc = malloc(n0 * sizeof *sc), *xs = malloc(n0 * (size_t)dim * sizeof *xs);
    float *xo = malloc(n0 * (size_t)dim * sizeof *xo);
    int32_t *tk = malloc(n0 * sizeof *tk);
    size_t *cnt = malloc(nw * sizeof *cnt), *off = malloc((nw + 1) * sizeof *off);
    cand *scratch = malloc(longest * sizeof *scratch);
    int rc = TC_OK;
    if (!pos || !npos || !rows || !sc || !xs || !xo || !tk || !cnt || !off || !scratch)
        rc = tc_err(err, "%s: out of memory for token dropping", t->m->path);
    /* Stage 0's output: every token. */
    for (size_t s = 0; rc == TC_OK && s < nw; s++) {
        size_t o = t->off[b0 + s], len = t->off[b0 + s + 1] - o, base = o - t->off[b0];
        cnt[s] = len;
        for (size_t j = 0; j < len; j++) {
            pos[base + j] = (uint32_t)j;
            sc[base + j] = t->score[o + j];
        }
        memcpy(xs + base * (size_t)dim, t->X + o * (size_t)dim, len * (size_t)dim * sizeof *xs);
    }
    for (int st = 1; rc == TC_OK && st < p->n_stages; st++) {
        /* Select the rows this stage keeps, window by window, packing them. */
        size_t in = 0, outn = 0;
        off[0] = 0;
        for (size_t s = 0; s < nw; s++) {
            size_t n = cnt[s], len = t->off[b0 + s + 1] - t->off[b0 + s];
            size_t k = kept_of(p->share[st], len), got = select_rows(sc + in, n, k, rows, scratch);
            for (size_t i = 0; i < got; i++) {
                npos[outn + i] = pos[in + rows[i]];
                tk[outn + i] = t->tok[t->off[b0 + s] + pos[in + rows[i]]];
                memcpy(xo + (outn + i) * (size_t)dim, xs + (in + rows[i]) * (size_t)dim, (size_t)dim * sizeof *xo);
            }
            in += n;
            cnt[s] = got;
            outn += got;
            off[s + 1] = outn;
        }
        memcpy(pos, npos, outn * sizeof *pos);
        float *sw = xs;
        xs = xo;
        xo = sw;
        /* Run the stage's layers on them. */
        int last = st == p->n_stages - 1, end = last ? t->L : p->start[st + 1];
        tc_batch b = {tk, off, nw};
        tc_observer ob = observer(t, !last);
        tc_forward_opts fo;
        fwd_opts(t, &fo, &ob);
        fo.positions = pos;
        fo.end_layer = last ? 0 : end;
        t->b0 = b0;
        t->b1 = b1;
        t->boff = off;
        t->capture_layer = last ? -1 : end - 1;
        t->xcap = last ? NULL : xo;
        t->scap = last ? NULL : sc;
        t->nll_out = last ? nll : NULL;
        if (!last)
            for (size_t i = 0; i < outn; i++)
                sc[i] = 0.0f; /* a layer without attention leaves no ranking */
        rc = tc_forward_from(t->m, &b, p->start[st], xs, &fo, err);
        tc_analysis_progress(t->x, (double)outn * (end - p->start[st] + (last ? 1 : 0)));
        if (!last) {
            sw = xs;
            xs = xo;
            xo = sw;
        }
    }
    t->capture_layer = -1;
    t->xcap = t->scap = NULL;
    t->nll_out = NULL;
    free(pos), free(npos), free(rows), free(sc), free(xs), free(xo), free(tk), free(cnt), free(off);
    free(scratch);
    return rc;
}

/* The plan's mean last-position NLL change over every window, and its
 * standard error. */
static int run_plan(tok_run *t, const plan *p, double *dnll, double *se, tc_error *err)
{
    double *nll = malloc(t->W * sizeof *nll);
    if (!nll)
        return tc_err(err, "%s: out of memory", t->m->path);
    int rc = TC_OK;
    for (size_t b0 = 0; rc == TC_OK && b0 < t->W;) {
        size_t b1 = batch_end(t, b0);
        rc = run_plan_batch(t, p, b0, b1, nll + b0, err);
        b0 = b1;
    }
    double d = 0.0, v = 0.0;
    for (size_t s = 0; s < t->W; s++)
        d += nll[s] - t->base[s];
    d /= (double)t->W;
    for (size_t s = 0; s < t->W; s++)
        v += (nll[s] - t->base[s] - d) * (nll[s] - t->base[s] - d);
    *dnll = d;
    *se = t->W > 1 ? sqrt(v / (double)(t->W - 1) / (double)t->W) : NAN;
    free(nll);
    return rc;
}

/* ---- FLOPs ---------------------------------------------------------------------------------- */

static double layer_params(const tok_run *t, int l)
{
    const tc_layer *L = &t->m->layers[l];
    const tc_skip *sk = t->x->o->skip;
    double p = 0.0;
    for (int r = 0; r < TC_N_ROLES; r++) {
        if (!L->w[r] || !tc_role_is_linear(r))
            continue;
        int attn = tc_role_is_attn(r);
        if (attn ? !has_attn(t, l) : (!L->has_mlp || (sk && sk[l].mlp)))
            continue;
        p += (double)L->w[r]->n_elements;
    }
    return p;
}

/* FLOPs of one window of `len` tokens under plan p (NULL: every token), its
 * last position through the head. */
static double plan_flops(const tok_run *t, const plan *p, size_t len)
{
    const tc_config *c = &t->m->cfg;
    double f = 2.0 * c->dim * (double)c->vocab_size, count = (double)len;
    int st = 1;
    for (int l = 0; l < t->L; l++) {
        while (p && st < p->n_stages && l >= p->start[st]) {
            double k = (double)kept_of(p->share[st], len) + 2.0;
            count = k < count ? k : count;
            st++;
        }
        f += 2.0 * layer_params(t, l) * count;
        if (has_attn(t, l))
            f += 4.0 * c->head_dim * (double)c->n_heads * count * (count + 1.0) / 2.0;
    }
    return f;
}

static double flop_saving(const tok_run *t, const plan *p)
{
    double full = 0.0, part = 0.0;
    for (size_t s = 0; s < t->W; s++) {
        size_t len = t->off[s + 1] - t->off[s];
        full += plan_flops(t, NULL, len);
        part += plan_flops(t, p, len);
    }
    return full > 0 ? 1.0 - part / full : 0.0;
}

/* ---- The pass ---------------------------------------------------------------------------------- */

static int setup(tok_run *t, const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                 tc_error *err)
{
    const tc_config *c = &x->m->cfg;
    memset(t, 0, sizeof *t);
    t->x = x;
    t->m = x->m;
    t->L = c->n_layers;
    t->dim = c->dim;
    t->nh = c->n_heads;
    t->capture_layer = -1;
    size_t n = 0, longest = 0, W = 0;
    for (size_t s = 0; s < n_win; s++) {
        size_t len = offsets[s + 1] - offsets[s];
        if (len < 3)
            continue;
        W++;
        n += len - 1;
        longest = len > longest ? len : longest;
    }
    t->W = W;
    t->n = n;
    t->tok = malloc((n ? n : 1) * sizeof *t->tok);
    t->off = malloc((W + 1) * sizeof *t->off);
    t->target = malloc((W ? W : 1) * sizeof *t->target);
    t->base = calloc(W ? W : 1, sizeof *t->base);
    t->X = malloc((n ? n : 1) * (size_t)c->dim * sizeof *t->X);
    t->score = calloc(n ? n : 1, sizeof *t->score);
    t->acc_last = calloc((size_t)t->L, sizeof *t->acc_last);
    t->acc_mean = calloc((size_t)t->L, sizeof *t->acc_mean);
    t->acc_n = calloc((size_t)t->L, sizeof *t->acc_n);
    t->tmp = malloc((2 * longest + 1) * sizeof *t->tmp);
    t->tmp2 = malloc((longest + 1) * sizeof *t->tmp2);
    if (!t->tok || !t->off || !t->target || !t->base || !t->X || !t->score || !t->acc_last || !t->acc_mean ||
        !t->acc_n || !t->tmp || !t->tmp2)
        return tc_err(err, "%s: out of memory for the token analysis", t->m->path);
    size_t k = 0, w = 0;
    t->off[0] = 0;
    for (size_t s = 0; s < n_win; s++) {
        size_t len = offsets[s + 1] - offsets[s];
        if (len < 3)
            continue;
        memcpy(t->tok + k, tokens + offsets[s], (len - 1) * sizeof *t->tok);
        k += len - 1;
        t->target[w] = tokens[offsets[s] + len - 1];
        t->off[++w] = k;
    }
    /* Per token: the pass's own buffers and the stored rows of a plan. */
    uint64_t per = 4 * (6 * (uint64_t)c->dim + 2 * (uint64_t)c->n_heads * c->head_dim +
                        2 * (uint64_t)c->n_kv_heads * c->head_dim + 4 + 2 * (uint64_t)c->n_heads);
    t->budget = (size_t)(BUDGET_BYTES / per);
    if (t->budget < 1)
        t->budget = 1;
    return TC_OK;
}

/* The baseline over every window: last-position NLL, received attention. */
static int baseline(tok_run *t, tc_error *err)
{
    int rc = TC_OK;
    size_t *off = malloc((t->W + 1) * sizeof *off);
    if (!off)
        return tc_err(err, "%s: out of memory", t->m->path);
    for (size_t b0 = 0; rc == TC_OK && b0 < t->W;) {
        size_t b1 = batch_end(t, b0);
        for (size_t s = b0; s <= b1; s++)
            off[s - b0] = t->off[s] - t->off[b0];
        tc_batch b = {t->tok + t->off[b0], off, b1 - b0};
        tc_observer ob = observer(t, 1);
        tc_forward_opts fo;
        fwd_opts(t, &fo, &ob);
        t->b0 = b0;
        t->b1 = b1;
        t->boff = off;
        t->nll_out = t->base + b0;
        rc = tc_forward(t->m, &b, &fo, err);
        tc_analysis_progress(t->x, (double)(t->off[b1] - t->off[b0]) * (t->L + 1));
        b0 = b1;
    }
    t->nll_out = NULL;
    free(off);
    return rc;
}

/* X and score from layer l - 1's input to layer l's (l = 1: from the tokens). */
static int advance(tok_run *t, int l, tc_error *err)
{
    int rc = TC_OK;
    size_t *off = malloc((t->W + 1) * sizeof *off);
    if (!off)
        return tc_err(err, "%s: out of memory", t->m->path);
    for (size_t b0 = 0; rc == TC_OK && b0 < t->W;) {
        size_t b1 = batch_end(t, b0);
        size_t o = t->off[b0];
        for (size_t s = b0; s <= b1; s++)
            off[s - b0] = t->off[s] - o;
        tc_batch b = {t->tok + o, off, b1 - b0};
        tc_observer ob = observer(t, 1);
        tc_forward_opts fo;
        fwd_opts(t, &fo, &ob);
        fo.end_layer = l;
        t->b0 = b0;
        t->b1 = b1;
        t->boff = off;
        t->capture_layer = l - 1;
        t->xcap = t->X + o * (size_t)t->dim;
        t->scap = t->score + o;
        /* (A layer without attention calls no observer: the ranking of the
         * layer before it stays.) */
        rc = l == 1 ? tc_forward(t->m, &b, &fo, err)
                    : tc_forward_from(t->m, &b, l - 1, t->X + o * (size_t)t->dim, &fo, err);
        tc_analysis_progress(t->x, (double)(t->off[b1] - o));
        b0 = b1;
    }
    t->capture_layer = -1;
    t->xcap = t->scap = NULL;
    free(off);
    return rc;
}

/* The smallest grid ratio at which it and every larger one stay within
 * `limit`, or 1 when the largest does not. */
static double keep_ratio(const double *dnll, int n, double limit)
{
    double keep = 1.0;
    for (int g = 0; g < n && !isnan(dnll[g]) && dnll[g] <= limit; g++)
        keep = GRID[g];
    return keep;
}

/* The schedules whose first boundary is layer l, each lambda from the largest
 * down until one exceeds the budget. */
static int schedules_at(tok_run *t, int l, double budget_nll, tc_token_measure *tm, tc_error *err)
{
    for (int k = 0; k < N_STAGE_KINDS; k++) {
        int S = STAGES[k];
        plan p = {.n_stages = S};
        int ok = 1;
        for (int i = 1; i < S; i++) {
            p.start[i] = (int)floor((double)i * t->L / S + 0.5);
            ok &= p.start[i] >= 1 && p.start[i] < t->L && p.start[i] > p.start[i - 1];
        }
        if (!ok || p.start[1] != l)
            continue;
        for (int j = 0; j < N_LAMBDAS && tm->n_candidates < TC_SCHEDULE_MAX_CANDIDATES; j++) {
            for (int i = 1; i < S; i++)
                p.share[i] = pow(LAMBDAS[j], i);
            double d, se;
            if (run_plan(t, &p, &d, &se, err))
                return TC_ERR;
            tc_schedule *c = &tm->candidates[tm->n_candidates++];
            memset(c, 0, sizeof *c);
            c->n_stages = S;
            c->lambda = LAMBDAS[j];
            for (int i = 1; i < S; i++)
                c->boundary[i - 1] = p.start[i];
            c->dnll = d;
            c->dnll_se = se;
            c->flop_saving = flop_saving(t, &p);
            if (d > budget_nll)
                break;
        }
    }
    return TC_OK;
}

static void finish_received(const tc_received *sum, uint64_t n, tc_received *out)
{
    double d = n ? (double)n : NAN;
    out->first = sum->first / d;
    for (int b = 0; b < TC_RECV_BINS; b++)
        out->bins[b] = sum->bins[b] / d;
    out->keys50 = sum->keys50 / d;
    out->keys90 = sum->keys90 / d;
}

int tc_analysis_tokens(const tc_analysis_ctx *x, const int32_t *tokens, const size_t *offsets, size_t n_win,
                       tc_analysis *out, tc_error *err)
{
    tok_run t;
    tc_token_measure *tm = &out->tokens;
    memset(tm, 0, sizeof *tm);
    tm->chosen = -1;
    int rc = setup(&t, x, tokens, offsets, n_win, err);
    if (rc == TC_OK && t.W == 0) {
        tok_free(&t);
        return TC_OK; /* no window long enough: nothing measured */
    }
    if (rc == TC_OK)
        rc = baseline(&t, err);
    double nll_last = 0.0;
    for (size_t s = 0; s < t.W; s++)
        nll_last += t.base[s];
    nll_last /= t.W ? (double)t.W : 1.0;
    tm->measured = rc == TC_OK;
    tm->windows = t.W;
    tm->window_len = t.W ? (double)t.n / (double)t.W : 0.0;
    tm->nll_last = nll_last;
    tm->n_grid = N_GRID;
    memcpy(tm->grid, GRID, sizeof GRID);
    tm->budget = x->o->schedule_budget > 0 ? x->o->schedule_budget : THRESHOLDS[0];
    for (int l = 0; rc == TC_OK && l < t.L; l++) {
        tc_token_stats *ts = &out->layers[l].tokens;
        ts->measured = t.acc_n[l] > 0;
        finish_received(&t.acc_last[l], t.acc_n[l], &ts->last);
        finish_received(&t.acc_mean[l], t.acc_n[l], &ts->mean);
    }
    /* The received statistics are the baseline's: the passes below only rank. */
    free(t.acc_n);
    t.acc_n = NULL;
    for (int l = 1; rc == TC_OK && l < t.L; l++) {
        tc_token_stats *ts = &out->layers[l].tokens;
        rc = advance(&t, l, err);
        for (int g = 0; rc == TC_OK && g < N_GRID; g++) {
            plan p = {.n_stages = 2, .start = {0, l}, .share = {1.0, GRID[g]}};
            double d = NAN, se = NAN;
            rc = run_plan(&t, &p, &d, &se, err);
            ts->drop_dnll[g] = d;
            ts->drop_se[g] = se;
            if (rc || d > THRESHOLDS[1] * nll_last)
                break;
        }
        for (int k = 0; k < 2; k++)
            ts->keep[k] = keep_ratio(ts->drop_dnll, N_GRID, THRESHOLDS[k] * nll_last);
        if (rc == TC_OK)
            rc = schedules_at(&t, l, tm->budget * nll_last, tm, err);
    }
    double best = -INFINITY;
    for (int i = 0; rc == TC_OK && i < tm->n_candidates; i++)
        if (tm->candidates[i].dnll <= tm->budget * nll_last && tm->candidates[i].flop_saving > best) {
            best = tm->candidates[i].flop_saving;
            tm->chosen = i;
        }
    tok_free(&t);
    return rc;
}

double tc_analysis_extra_work(const tc_model *m, const size_t *offsets, size_t n_seqs, const tc_analyze_opts *o)
{
    double L = m->cfg.n_layers, w = 0.0;
    size_t hw = o->head_windows < n_seqs ? o->head_windows : n_seqs;
    size_t tw = o->token_windows < n_seqs ? o->token_windows : n_seqs;
    /* The head curve: about log2(heads) passes. */
    if (hw) {
        double heads = L * m->cfg.n_heads, passes = 0;
        for (double k = 1; k <= heads / 2 && passes < TC_HEAD_CURVE_MAX; k *= 2)
            passes++;
        w += (double)offsets[hw] * (L + 1) * passes;
    }
    /* Tokens: the baseline, the advancing pass, and about a third of the
     * grid's reruns at an average share of a half (an estimate: the grid
     * stops where the loss passes 5 %). */
    if (tw)
        w += (double)offsets[tw] * ((L + 1) + L + (L * (L + 1) / 2) * N_GRID / 3.0 * 0.5 + N_STAGE_KINDS * 3 * L);
    return w;
}
