/* Pruning plans: choosing what goes, costing it, and writing the result. */
#include "tc/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "tc/ggml_quants.h"
#include "tc/hfdir.h"
#include "tc/model_tokenizer.h"
#include "tc/model_write.h"

/* ---- Plans ------------------------------------------------------------------ */

int tc_prune_plan_init(tc_prune_plan *p, int n_layers, tc_error *err)
{
    memset(p, 0, sizeof *p);
    if (n_layers <= 0 || n_layers > 65536)
        return tc_err(err, "a pruning plan needs 1 to 65536 layers, not %d", n_layers);
    p->n_layers = n_layers;
    for (int k = 0; k < TC_N_MODULES; k++) {
        p->drop[k] = calloc((size_t)n_layers, 1);
        if (!p->drop[k]) {
            tc_prune_plan_free(p);
            return tc_err(err, "out of memory");
        }
    }
    return TC_OK;
}

void tc_prune_plan_free(tc_prune_plan *p)
{
    for (int k = 0; k < TC_N_MODULES; k++)
        free(p->drop[k]);
    free(p->drop_heads);
    memset(p, 0, sizeof *p);
}

int tc_prune_plan_heads(tc_prune_plan *p, int n_heads, tc_error *err)
{
    if (p->drop_heads)
        return p->n_heads == n_heads ? TC_OK : tc_err(err, "the plan drops heads of %d per layer, not %d", p->n_heads, n_heads);
    if (n_heads <= 0 || n_heads > 65536)
        return tc_err(err, "a pruning plan needs 1 to 65536 heads per layer, not %d", n_heads);
    p->drop_heads = calloc((size_t)p->n_layers * (size_t)n_heads, 1);
    if (!p->drop_heads)
        return tc_err(err, "out of memory");
    p->n_heads = n_heads;
    return TC_OK;
}

int tc_prune_plan_count_heads(const tc_prune_plan *p)
{
    int n = 0;
    for (int l = 0; p->drop_heads && l < p->n_layers; l++)
        for (int h = 0; h < p->n_heads; h++)
            n += p->drop_heads[(size_t)l * p->n_heads + h] && !p->drop[TC_MOD_ATTN][l] && !p->drop[TC_MOD_BLOCK][l];
    return n;
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

void tc_prune_head_layout(const tc_config *c, const uint8_t *drop, int *q_src, int *kv_src, tc_head_layout *out)
{
    int group = c->n_heads / c->n_kv_heads, g = 0;
    for (int j = 0; j < c->n_kv_heads; j++) {
        int kept = 0;
        for (int h = j * group; h < (j + 1) * group; h++)
            kept += !(drop && drop[h]);
        g = kept ? gcd(g, kept) : g;
    }
    out->n_q = out->n_kv = 0;
    out->q_src = q_src;
    out->kv_src = kv_src;
    for (int j = 0; g > 0 && j < c->n_kv_heads; j++) {
        int in_group = 0;
        for (int h = j * group; h < (j + 1) * group; h++) {
            if (drop && drop[h])
                continue;
            if (in_group++ % g == 0)
                kv_src[out->n_kv++] = j;
            q_src[out->n_q++] = h;
        }
    }
}

int tc_prune_plan_count(const tc_prune_plan *p, tc_module kind)
{
    int n = 0;
    for (int l = 0; l < p->n_layers; l++)
        n += p->drop[kind][l] && (kind == TC_MOD_BLOCK || !p->drop[TC_MOD_BLOCK][l]);
    return n;
}

static int input_has(const tc_model *m, int l, tc_module which)
{
    if (!m || l >= m->cfg.n_layers)
        return 1;
    return which == TC_MOD_ATTN ? m->layers[l].has_attn : m->layers[l].has_mlp;
}

int tc_prune_keeps(const tc_prune_plan *p, const tc_model *m, int l, tc_module which)
{
    if (p && (p->drop[TC_MOD_BLOCK][l] || p->drop[which][l]))
        return 0;
    return input_has(m, l, which);
}

/* Does layer l drop some of its heads (and keep its attention)? */
static int cuts_heads(const tc_prune_plan *p, const tc_model *m, int l)
{
    if (!p || !p->drop_heads || !tc_prune_keeps(p, m, l, TC_MOD_ATTN))
        return 0;
    for (int h = 0; h < p->n_heads; h++)
        if (p->drop_heads[(size_t)l * p->n_heads + h])
            return 1;
    return 0;
}

void tc_prune_skip_mask(const tc_prune_plan *p, tc_skip *skip)
{
    for (int l = 0; l < p->n_layers; l++) {
        skip[l].attn = p->drop[TC_MOD_BLOCK][l] || p->drop[TC_MOD_ATTN][l];
        skip[l].mlp = p->drop[TC_MOD_BLOCK][l] || p->drop[TC_MOD_MLP][l];
    }
}

/* ---- Explicit lists -------------------------------------------------------- */

static int parse_index(const char *s, const char *end, long *out)
{
    if (s == end || s[0] < '0' || s[0] > '9')
        return -1;
    long v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9' || v > 1000000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

/* One item "kind:i" or "kind:i-j" of length n. */
static int parse_item(tc_prune_plan *p, const char *item, size_t n, const char *what, tc_error *err)
{
    const char *colon = memchr(item, ':', n), *end = item + n;
    if (!colon)
        return tc_err(err, "%s: '%.*s' is not KIND:LAYER (KIND is attn, mlp or block)", what, (int)n, item);
    size_t kn = (size_t)(colon - item);
    int kind = -1;
    for (int k = 0; k < TC_N_MODULES; k++)
        if (strlen(tc_module_name((tc_module)k)) == kn && memcmp(item, tc_module_name((tc_module)k), kn) == 0)
            kind = k;
    if (kind < 0)
        return tc_err(err, "%s: '%.*s' names no module kind (attn, mlp or block)", what, (int)n, item);
    const char *dash = memchr(colon + 1, '-', (size_t)(end - colon - 1));
    long lo, hi;
    if (parse_index(colon + 1, dash ? dash : end, &lo) || (dash && parse_index(dash + 1, end, &hi)))
        return tc_err(err, "%s: '%.*s' needs a layer index or a range like 3-5 after the colon", what,
                      (int)n, item);
    if (!dash)
        hi = lo;
    if (hi < lo)
        return tc_err(err, "%s: '%.*s' is an empty range", what, (int)n, item);
    if (hi >= p->n_layers)
        return tc_err(err, "%s: '%.*s' is beyond the model's %d layers (0 to %d)", what, (int)n, item,
                      p->n_layers, p->n_layers - 1);
    for (long l = lo; l <= hi; l++) {
        if (p->drop[kind][l])
            return tc_err(err, "%s: %s:%ld is listed twice", what, tc_module_name((tc_module)kind), l);
        p->drop[kind][l] = 1;
    }
    return TC_OK;
}

int tc_prune_parse_list(tc_prune_plan *p, const char *list, const char *what, tc_error *err)
{
    const char *s = list;
    if (!*s)
        return tc_err(err, "%s: the list is empty", what);
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        while (n && (*s == ' '))
            s++, n--;
        while (n && s[n - 1] == ' ')
            n--;
        if (n == 0)
            return tc_err(err, "%s: empty item in '%s'", what, list);
        if (parse_item(p, s, n, what, err))
            return TC_ERR;
        if (!comma)
            return TC_OK;
        s = comma + 1;
    }
}

/* ---- Criteria ---------------------------------------------------------------- */

const char *tc_prune_criterion_name(tc_prune_criterion c)
{
    return c == TC_CRIT_COS ? "cos" : c == TC_CRIT_DNLL ? "dnll" : "kl";
}

int tc_prune_criterion_parse(const char *s, tc_prune_criterion *out)
{
    for (int c = TC_CRIT_COS; c <= TC_CRIT_KL; c++) {
        if (strcmp(s, tc_prune_criterion_name((tc_prune_criterion)c)) == 0) {
            *out = (tc_prune_criterion)c;
            return TC_OK;
        }
    }
    return TC_ERR;
}

/* ---- Selection ------------------------------------------------------------------ */

/* A candidate's cost of going: lower goes first. */
typedef struct cand {
    int layer;
    tc_module kind;
    double cost;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost < y->cost ? -1 : 1;
    if (x->layer != y->layer) /* ties: the deeper layer goes first (it is usually the more redundant) */
        return x->layer > y->layer ? -1 : 1;
    return (int)x->kind - (int)y->kind;
}

static int protected_layer(const tc_prune_opts *o, int n_layers, int l)
{
    return l < o->keep_first || l >= n_layers - o->keep_last;
}

/* Could `kind` of layer l still go, given what p already drops? */
static int available(const tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *o,
                     int l, tc_module kind)
{
    if (protected_layer(o, p->n_layers, l) || p->drop[TC_MOD_BLOCK][l])
        return 0;
    if (kind == TC_MOD_BLOCK)
        return !a || a->layers[l].mod[TC_MOD_BLOCK].present || input_has(m, l, TC_MOD_ATTN) ||
               input_has(m, l, TC_MOD_MLP);
    if (p->drop[kind][l] || !input_has(m, l, kind))
        return 0;
    return !a || a->layers[l].mod[kind].present;
}

static int figure(const tc_analysis *a, int l, tc_module kind, tc_prune_criterion c, double *out,
                  tc_error *err)
{
    const tc_module_stats *s = &a->layers[l].mod[kind];
    if (c == TC_CRIT_COS) {
        *out = -s->cos_mean;
        return TC_OK;
    }
    if (!s->measured)
        return tc_err(err, "the analysis did not measure %s for layer %d's %s (run it with the measured "
                      "criteria, or use --criterion cos)", tc_prune_criterion_name(c), l,
                      tc_module_name(kind));
    *out = c == TC_CRIT_DNLL ? s->dnll : s->kl;
    return TC_OK;
}

/* Drops the `count` best candidates among `kinds` (nk of them). */
static int drop_best(tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *o,
                     const tc_module *kinds, int nk, int count, const char *what, tc_error *err)
{
    if (count <= 0)
        return TC_OK;
    cand *c = malloc((size_t)p->n_layers * (size_t)nk * sizeof *c);
    if (!c)
        return tc_err(err, "out of memory");
    int n = 0;
    for (int l = 0; l < p->n_layers; l++) {
        for (int k = 0; k < nk; k++) {
            if (!available(p, a, m, o, l, kinds[k]))
                continue;
            c[n].layer = l;
            c[n].kind = kinds[k];
            if (figure(a, l, kinds[k], o->criterion, &c[n].cost, err)) {
                free(c);
                return TC_ERR;
            }
            n++;
        }
    }
    if (n < count) {
        free(c);
        return tc_err(err, "asked to drop %d %s but only %d can go (after keep-first %d, keep-last %d and "
                      "what is already dropped or absent)", count, what, n, o->keep_first, o->keep_last);
    }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    for (int i = 0; i < count; i++)
        p->drop[c[i].kind][c[i].layer] = 1;
    free(c);
    return TC_OK;
}

static int check_opts(const tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *o,
                      tc_error *err)
{
    if (o->drop_attn < 0 || o->drop_mlp < 0 || o->drop_blocks < 0 || o->joint < 0 || o->keep_first < 0 ||
        o->keep_last < 0 || o->drop_heads < 0)
        return tc_err(err, "pruning counts must not be negative");
    if (a && a->n_layers != p->n_layers)
        return tc_err(err, "the analysis covers %d layers but the model has %d", a->n_layers, p->n_layers);
    if (m && m->cfg.n_layers != p->n_layers)
        return tc_err(err, "%s: the plan covers %d layers but the model has %d", m->path, p->n_layers,
                      m->cfg.n_layers);
    for (int l = 0; l < p->n_layers; l++) {
        for (int k = 0; k < TC_N_MODULES; k++) {
            if (!p->drop[k][l])
                continue;
            if (protected_layer(o, p->n_layers, l))
                return tc_err(err, "%s:%d is listed for dropping but keep-first %d / keep-last %d protect "
                              "layer %d", tc_module_name((tc_module)k), l, o->keep_first, o->keep_last, l);
            if (k != TC_MOD_BLOCK && !input_has(m, l, (tc_module)k))
                return tc_err(err, "%s: %s:%d is listed for dropping but the model has no such sub-layer",
                              m->path, tc_module_name((tc_module)k), l);
        }
    }
    return TC_OK;
}

/* Models whose heads tc-prune cannot drop, refused before any work:
 * differential attention's heads come in pairs, and a ternary-trained
 * model's linears go out as packed codes with one scale per tensor, where
 * heads are cut from float tensors. */
int tc_prune_heads_refused(const tc_model *m, tc_error *err)
{
    if (m->cfg.t.diff_attn)
        return tc_err(err, "%s: dropping heads of differential attention (DiffLlama) is not implemented", m->path);
    if (tc_linear_is_ternary(&m->cfg))
        return tc_err(err, "%s: dropping heads of a ternary-trained (%s) model is not implemented; drop attention "
                      "sub-layers or blocks", m->path, tc_linear_kind_name(m->cfg.t.linear));
    return TC_OK;
}

/* Heads that could go: those of attentions p and m keep, outside keep-first and keep-last. */
static int heads_available(const tc_prune_plan *p, const tc_model *m, const tc_prune_opts *o, int n_heads)
{
    int n = 0;
    for (int l = 0; l < p->n_layers; l++) {
        if (protected_layer(o, p->n_layers, l) || !tc_prune_keeps(p, m, l, TC_MOD_ATTN))
            continue;
        for (int h = 0; h < n_heads; h++)
            n += !(p->drop_heads && p->drop_heads[(size_t)l * n_heads + h]);
    }
    return n;
}

int tc_prune_available_heads(const tc_prune_plan *p, const tc_model *m, const tc_prune_opts *o)
{
    return heads_available(p, m, o, m->cfg.n_heads);
}

typedef struct head_cand {
    int layer, head;
    double cost, other;
} head_cand;

static int head_cand_cmp(const void *a, const void *b)
{
    const head_cand *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost < y->cost ? -1 : 1;
    if (x->other != y->other)
        return x->other < y->other ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->head - y->head;
}

/* The o->drop_heads heads whose masking cost least go; a layer left without
 * heads loses its attention (what masking every head computes, without an
 * output bias). */
static int drop_heads_best(tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *o,
                           tc_error *err)
{
    if (o->drop_heads <= 0)
        return TC_OK;
    if (!a || a->n_heads <= 0)
        return tc_err(err, "dropping heads needs an analysis that masked them (tc-analyze --head-samples)");
    if (m && m->cfg.n_heads != a->n_heads)
        return tc_err(err, "%s: the analysis covers %d heads per layer but the model has %d", m->path, a->n_heads,
                      m->cfg.n_heads);
    if (m && m->cfg.t.diff_attn)
        return tc_err(err, "%s: dropping heads of differential attention (DiffLlama) is not implemented", m->path);
    if (tc_prune_plan_heads(p, a->n_heads, err))
        return TC_ERR;
    head_cand *c = malloc((size_t)p->n_layers * (size_t)a->n_heads * sizeof *c);
    if (!c)
        return tc_err(err, "out of memory");
    int n = 0;
    for (int l = 0; l < p->n_layers; l++) {
        if (protected_layer(o, p->n_layers, l) || !tc_prune_keeps(p, m, l, TC_MOD_ATTN))
            continue;
        for (int h = 0; h < a->n_heads; h++) {
            const tc_head_stats *hs = a->layers[l].heads ? &a->layers[l].heads[h] : NULL;
            if (p->drop_heads[(size_t)l * p->n_heads + h])
                continue;
            if (!hs || !hs->measured) {
                free(c);
                return tc_err(err, "the analysis did not mask layer %d's head %d (run it with head masking: "
                              "tc-analyze --head-samples)", l, h);
            }
            int by_dnll = o->criterion == TC_CRIT_DNLL;
            c[n++] = (head_cand){l, h, by_dnll ? hs->dnll : hs->kl, by_dnll ? hs->kl : hs->dnll};
        }
    }
    if (n < o->drop_heads) {
        free(c);
        return tc_err(err, "asked to drop %d heads but only %d can go (after keep-first %d, keep-last %d and what "
                      "is already dropped or absent)", o->drop_heads, n, o->keep_first, o->keep_last);
    }
    qsort(c, (size_t)n, sizeof *c, head_cand_cmp);
    for (int i = 0; i < o->drop_heads; i++)
        p->drop_heads[(size_t)c[i].layer * p->n_heads + c[i].head] = 1;
    free(c);
    for (int l = 0; l < p->n_layers; l++) {
        int left = 0;
        for (int h = 0; h < p->n_heads; h++)
            left += !p->drop_heads[(size_t)l * p->n_heads + h];
        if (left || !tc_prune_keeps(p, m, l, TC_MOD_ATTN))
            continue;
        if (m && m->cfg.t.o_bias)
            return tc_err(err, "%s: every head of layer %d would go, which leaves its output bias: not the same "
                          "as dropping the attention; drop fewer heads", m->path, l);
        p->drop[TC_MOD_ATTN][l] = 1;
    }
    return TC_OK;
}

int tc_prune_available(const tc_prune_plan *p, const tc_model *m, const tc_prune_opts *o, tc_module kind)
{
    int n = 0;
    for (int l = 0; l < p->n_layers; l++)
        n += available(p, NULL, m, o, l, kind);
    return n;
}

static const tc_module K_BLOCK[] = {TC_MOD_BLOCK}, K_ATTN[] = {TC_MOD_ATTN}, K_MLP[] = {TC_MOD_MLP},
                       K_JOINT[] = {TC_MOD_ATTN, TC_MOD_MLP};

int tc_prune_select(tc_prune_plan *p, const tc_analysis *a, const tc_model *m, const tc_prune_opts *o,
                    tc_error *err)
{
    if (check_opts(p, a, m, o, err))
        return TC_ERR;
    int wants = o->drop_blocks + o->drop_attn + o->drop_mlp + o->joint + o->drop_heads;
    if (wants > 0 && !a)
        return tc_err(err, "choosing what to drop needs an analysis (a report or calibration text)");
    if (drop_best(p, a, m, o, K_BLOCK, 1, o->drop_blocks, "blocks", err) ||
        drop_best(p, a, m, o, K_ATTN, 1, o->drop_attn, "attention sub-layers", err) ||
        drop_best(p, a, m, o, K_MLP, 1, o->drop_mlp, "MLP sub-layers", err) ||
        drop_best(p, a, m, o, K_JOINT, 2, o->joint, "sub-layers (attention and MLP jointly)", err) ||
        drop_heads_best(p, a, m, o, err))
        return TC_ERR;
    return TC_OK;
}

int tc_prune_select_iterative(tc_prune_plan *p, const tc_model *m, const tc_prune_opts *o,
                              tc_prune_measure_fn measure, void *ctx, tc_error *err)
{
    if (check_opts(p, NULL, m, o, err))
        return TC_ERR;
    struct {
        const tc_module *kinds;
        int nk, count;
        const char *what;
    } steps[] = {
        {K_BLOCK, 1, o->drop_blocks, "blocks"},
        {K_ATTN, 1, o->drop_attn, "attention sub-layers"},
        {K_MLP, 1, o->drop_mlp, "MLP sub-layers"},
        {K_JOINT, 2, o->joint, "sub-layers (attention and MLP jointly)"},
    };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        for (int i = 0; i < steps[s].count; i++) {
            tc_analysis a;
            memset(&a, 0, sizeof a);
            if (measure(ctx, p, &a, err)) {
                tc_analysis_free(&a);
                return TC_ERR;
            }
            int rc = TC_OK;
            if (a.n_layers != p->n_layers)
                rc = tc_err(err, "the measurement covers %d layers but the model has %d", a.n_layers,
                            p->n_layers);
            if (rc == TC_OK)
                rc = drop_best(p, &a, m, o, steps[s].kinds, steps[s].nk, 1, steps[s].what, err);
            tc_analysis_free(&a);
            if (rc)
                return rc;
        }
    }
    return TC_OK;
}

/* ---- Costs -------------------------------------------------------------------- */

/* Adds num/den of a tensor of n weights (the rows or columns of its kept
 * heads; a packed ternary tensor holds several weights to an element). */
static void add_share(tc_prune_cost *c, const tc_tensor *t, uint64_t n, int linear, uint64_t num, uint64_t den)
{
    if (!t || !den)
        return;
    uint64_t w = n / den * num, b = t->nbytes / den * num;
    c->params += w;
    c->bytes += b;
    if (linear)
        c->flops_per_token += 2 * w;
}

static void add_tensor(tc_prune_cost *c, const tc_tensor *t, int linear)
{
    if (t)
        add_share(c, t, t->n_elements, linear, 1, 1);
}

void tc_prune_cost_of(const tc_model *m, const tc_prune_plan *p, int ctx_len, int kv_elem_bytes,
                      tc_prune_cost *out)
{
    const tc_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    add_tensor(out, m->tok_embd, 0);
    add_tensor(out, m->out_norm, 0);
    if (m->output != m->tok_embd)
        add_tensor(out, m->output, 1);
    else /* a tied head still multiplies by the embedding */
        out->flops_per_token += 2 * m->tok_embd->n_elements;
    uint64_t qk_width = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    uint64_t kv_width = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    int *q_src = malloc((size_t)(c->n_heads > 0 ? c->n_heads : 1) * sizeof *q_src);
    int *kv_src = malloc((size_t)(c->n_heads > 0 ? c->n_heads : 1) * sizeof *kv_src);
    for (int l = 0; l < c->n_layers; l++) {
        const tc_layer *L = &m->layers[l];
        int attn = tc_prune_keeps(p, m, l, TC_MOD_ATTN), mlp = tc_prune_keeps(p, m, l, TC_MOD_MLP);
        /* The heads kept: whole counts unless the plan cuts some. */
        tc_head_layout hl = {c->n_heads, c->n_kv_heads, NULL, NULL};
        if (q_src && kv_src && cuts_heads(p, m, l) && p->n_heads == c->n_heads)
            tc_prune_head_layout(c, p->drop_heads + (size_t)l * p->n_heads, q_src, kv_src, &hl);
        for (int r = 0; r < TC_N_ROLES; r++) {
            int is_attn = r <= TC_BV;
            if (is_attn ? !attn : !mlp)
                continue;
            int linear = r == TC_WQ || r == TC_WK || r == TC_WV || r == TC_WO || r == TC_W_GATE ||
                         r == TC_W_UP || r == TC_W_DOWN;
            uint64_t n = tc_model_role_params(m, l, (tc_role)r);
            int q = r == TC_WQ || r == TC_BQ || r == TC_WO, kv = r == TC_WK || r == TC_WV || r == TC_BK || r == TC_BV;
            if (q)
                add_share(out, L->w[r], n, linear, (uint64_t)hl.n_q, (uint64_t)c->n_heads);
            else if (kv)
                add_share(out, L->w[r], n, linear, (uint64_t)hl.n_kv, (uint64_t)c->n_kv_heads);
            else
                add_share(out, L->w[r], n, linear, 1, 1);
        }
        if (attn) {
            /* Q.K over ctx_len keys and the weighted sum of as many values, per head. */
            out->flops_per_token += 4 * qk_width / (uint64_t)c->n_heads * (uint64_t)hl.n_q * (uint64_t)(ctx_len > 0 ? ctx_len : 0);
            out->kv_bytes_per_token += 2 * kv_width / (uint64_t)c->n_kv_heads * (uint64_t)hl.n_kv * (uint64_t)kv_elem_bytes;
        }
    }
    free(q_src);
    free(kv_src);
}

/* ---- Writing ------------------------------------------------------------------ */

/* The dtype matrices are written in: the input's, where a writer supports it. */
static tc_dtype matrix_dtype(const tc_model *m)
{
    /* A ternary model's linears are codes: its float matrix is the embedding. */
    for (int l = 0; l < m->cfg.n_layers && !tc_linear_is_ternary(&m->cfg); l++) {
        for (int r = TC_WQ; r < TC_N_ROLES; r++) {
            const tc_tensor *t = m->layers[l].w[r];
            if (t && t->n_dims == 2)
                return t->dtype == TC_F16 || t->dtype == TC_BF16 ? t->dtype : TC_F32;
        }
    }
    return m->tok_embd->dtype == TC_F16 || m->tok_embd->dtype == TC_BF16 ? m->tok_embd->dtype : TC_F32;
}

/* The ternary type a GGUF output of a ternary model stores its linears in:
 * the input's (I2_S, TQ1_0, TQ2_0), else TQ2_0. */
static tc_dtype ternary_dtype_of(const tc_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++) {
            const tc_tensor *t = m->layers[l].w[r];
            if (t && tc_role_is_linear(r) && (t->dtype == TC_I2_S || t->dtype == TC_TQ1_0 || t->dtype == TC_TQ2_0))
                return t->dtype;
        }
    return TC_TQ2_0;
}

int tc_prune_write(const tc_model *m, const tc_prune_plan *p, const char *path, tc_format fmt,
                   tc_error *err)
{
    return tc_prune_write_as(m, p, path, fmt, TC_DTYPE_COUNT, err);
}

int tc_prune_write_as(const tc_model *m, const tc_prune_plan *p, const char *path, tc_format fmt,
                      tc_dtype matrices, tc_error *err)
{
    if (matrices != TC_DTYPE_COUNT && fmt != TC_FORMAT_GGUF)
        return tc_err(err, "%s: storing the matrices as %s needs a GGUF output", path, tc_dtype_name(matrices));
    if (matrices != TC_DTYPE_COUNT && matrices != TC_F32 && matrices != TC_F16 && matrices != TC_BF16 &&
        !tc_ggml_quant_can_encode(matrices))
        return tc_err(err, "%s: tc writes matrices as F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K, not %s", path,
                      tc_dtype_name(matrices));
    const int n = m->cfg.n_layers;
    if (p->n_layers != n)
        return tc_err(err, "%s: the plan covers %d layers but the model has %d", m->path, p->n_layers, n);
    int *keep = malloc((size_t)n * sizeof *keep);
    uint8_t *da = calloc((size_t)n, 1), *dm = calloc((size_t)n, 1);
    size_t nh = (size_t)(m->cfg.n_heads > 0 ? m->cfg.n_heads : 1);
    tc_head_layout *hl = calloc((size_t)n, sizeof *hl);
    int *hsrc = malloc(2 * (size_t)n * nh * sizeof *hsrc);
    if (!keep || !da || !dm || !hl || !hsrc) {
        free(keep), free(da), free(dm), free(hl), free(hsrc);
        return tc_err(err, "%s: out of memory", path);
    }
    if (p->drop_heads && p->n_heads != m->cfg.n_heads) {
        free(keep), free(da), free(dm), free(hl), free(hsrc);
        return tc_err(err, "%s: the plan drops heads of %d per layer but the model has %d", m->path, p->n_heads,
                      m->cfg.n_heads);
    }
    /* A layer left with neither sub-layer is the identity: it goes as a whole. */
    int k = 0, any_a = 0, any_m = 0, any_h = 0;
    for (int l = 0; l < n; l++) {
        int attn = tc_prune_keeps(p, m, l, TC_MOD_ATTN), mlp = tc_prune_keeps(p, m, l, TC_MOD_MLP);
        if (!attn && !mlp)
            continue;
        da[k] = !attn;
        dm[k] = !mlp;
        any_a |= !attn;
        any_m |= !mlp;
        hl[k] = (tc_head_layout){m->cfg.n_heads, m->cfg.n_kv_heads, NULL, NULL};
        if (cuts_heads(p, m, l)) {
            tc_prune_head_layout(&m->cfg, p->drop_heads + (size_t)l * nh, hsrc + 2 * (size_t)k * nh,
                                 hsrc + (2 * (size_t)k + 1) * nh, &hl[k]);
            any_h = 1;
        }
        keep[k++] = l;
    }
    /* Layers that keep every head list them all. */
    for (int i = 0; any_h && i < k; i++) {
        if (hl[i].q_src)
            continue;
        int *q = hsrc + 2 * (size_t)i * nh, *kv = hsrc + (2 * (size_t)i + 1) * nh;
        tc_prune_head_layout(&m->cfg, NULL, q, kv, &hl[i]);
    }
    int rc, renumbered = 0;
    for (int i = 0; i < k; i++)
        renumbered |= keep[i] != i;
    tc_vocab vocab = {0};
    if (k == 0) {
        rc = tc_err(err, "%s: the plan drops every layer; at least one must stay", path);
    } else if (m->cfg.t.diff_attn && renumbered) {
        /* DiffLlama's lambda_init follows the layer's index. */
        rc = tc_err(err, "%s: dropping a block of a DiffLlama model renumbers the layers after it, whose lambda_init "
                    "depends on their index; drop sub-layers, or only the last blocks", path);
    } else if (any_h && tc_prune_heads_refused(m, err)) {
        rc = TC_ERR;
    } else if (fmt == TC_FORMAT_LLAMA2C && (any_a || any_m)) {
        rc = tc_err(err, "%s: llama2.c checkpoints cannot hold dropped attention or MLP sub-layers; drop "
                    "whole blocks, or write HF (--format hf) or GGUF (--format gguf)", path);
    } else if (fmt == TC_FORMAT_GGUF && (any_a || any_m || any_h) &&
               (!tc_gguf_family_of(m->cfg.arch, 1) || m->cfg.qkv_bias)) {
        /* Per-layer sub-layer drops and head counts in GGUF need llama.cpp's
         * `deci` graph, a llama (no q/k/v biases, adjacent RoPE pairs). */
        rc = tc_err(err, "%s: GGUF can hold dropped %s of llama models only, not of this %s model%s; %s", path,
                    any_h ? "heads" : "attention or MLP sub-layers", tc_arch_name(m->cfg.arch),
                    m->cfg.qkv_bias ? " with q/k/v biases" : "",
                    any_h ? "write HF (--format hf) where every layer keeps as many heads"
                          : "drop whole blocks, or write HF (--format hf)");
    } else if (matrices != TC_DTYPE_COUNT && tc_linear_is_ternary(&m->cfg)) {
        rc = tc_err(err, "%s: the linear layers of a ternary-trained model are written as its codes and scales; "
                    "storing them as %s would requantize them", path, tc_dtype_name(matrices));
    } else if (fmt == TC_FORMAT_GGUF && tc_model_vocab(m, &vocab, err)) {
        rc = TC_ERR; /* llama.cpp loads no GGUF without a vocabulary */
    } else if (fmt == TC_FORMAT_HF && !tc_model_hfdir(m) && (m->tokenizer || m->format == TC_FORMAT_GGUF) &&
               tc_model_vocab(m, &vocab, err)) {
        rc = TC_ERR; /* a GGUF's or the given tokenizer, written as tokenizer.json */
    } else {
        tc_model_copy cp = {.model = m, .keep = keep, .float_dtype = matrix_dtype(m), .matrices = matrices};
        tc_model_src src = {
            .cfg = m->cfg,
            .drop_attn = any_a ? da : NULL,
            .drop_mlp = any_m ? dm : NULL,
            .dtype = matrix_dtype(m),
            .fill = tc_model_copy_fill,
            .ctx = &cp,
            .gguf_vocab = tc_model_gguf(m),
            .hf_config = tc_model_hfdir(m) ? tc_model_hfdir(m)->config : NULL,
            .hf_src_dir = tc_model_hfdir(m) ? tc_model_hfdir(m)->path : NULL,
            .vocab = &vocab,
            .name = "tc-prune",
            .heads = any_h ? hl : NULL,
        };
        /* GGUF holds ggml's block types: quantized matrices go out as they
         * came, byte for byte. */
        if (fmt == TC_FORMAT_GGUF) {
            src.dtype_of = tc_model_copy_dtype;
            src.encode = tc_model_copy_encode;
        }
        /* Ternary linears go out as their codes and scales (a GGUF's in the
         * input's ternary type, TQ2_0 for another input's). */
        if (tc_linear_is_ternary(&m->cfg)) {
            src.ternary = tc_model_copy_ternary;
            src.ternary_dtype = ternary_dtype_of(m);
            src.scale_dtype = tc_model_scale_dtype(m);
            /* transformers casts weight_scale to the config's dtype: F32 scales need an F32 model. */
            if (fmt == TC_FORMAT_HF && m->cfg.t.linear == TC_LINEAR_BITLINEAR && src.scale_dtype == TC_F32)
                src.dtype = cp.float_dtype = TC_F32;
        }
        src.cfg.n_layers = k;
        /* Per-layer traits follow their layers. */
        memset(src.cfg.t.local, 0, sizeof src.cfg.t.local);
        for (int i = 0; i < k; i++)
            src.cfg.t.local[i] = m->cfg.t.local[keep[i]];
        rc = tc_model_write(path, fmt, &src, err);
    }
    tc_vocab_free(&vocab);
    free(keep);
    free(da);
    free(dm);
    free(hl);
    free(hsrc);
    return rc;
}

/* ---- Evaluation ---------------------------------------------------------------- */

typedef struct logits_buf {
    float *v;
    size_t n;
} logits_buf;

static int keep_logits(void *ctx, const float *lg, size_t tok0, size_t n, int vocab, tc_error *err)
{
    (void)err;
    logits_buf *b = ctx;
    memcpy(b->v + tok0 * (size_t)vocab, lg, n * (size_t)vocab * sizeof *lg);
    return TC_OK;
}

static int seq_logits(const tc_model *m, const tc_skip *skip, const uint8_t *heads, const int32_t *tokens, size_t n,
                      int n_threads, float *dst, tc_error *err)
{
    size_t offs[2] = {0, n};
    tc_batch b = {tokens, offs, 1};
    logits_buf buf = {dst, n};
    tc_observer ob = {.ctx = &buf, .logits = keep_logits};
    tc_forward_opts fo = {.n_threads = n_threads, .skip = skip, .observers = &ob, .n_observers = 1, .head_mask = heads};
    return tc_forward(m, &b, &fo, err);
}

/* log-softmax of x into out (fp64); returns the index of the maximum. */
static int log_softmax(const float *x, int n, double *out)
{
    int arg = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[arg])
            arg = i;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - x[arg]);
    double lse = x[arg] + log(s);
    for (int i = 0; i < n; i++)
        out[i] = x[i] - lse;
    return arg;
}

int tc_prune_evaluate(const tc_model *ref, const tc_skip *ref_skip, const tc_model *pruned,
                      const tc_skip *pruned_skip, const int32_t *tokens, const size_t *offsets, size_t n_seqs,
                      int n_threads, tc_prune_eval *out, tc_error *err)
{
    return tc_prune_evaluate_masked(ref, ref_skip, pruned, pruned_skip, NULL, tokens, offsets, n_seqs, n_threads, out,
                                    err);
}

int tc_prune_evaluate_masked(const tc_model *ref, const tc_skip *ref_skip, const tc_model *pruned,
                             const tc_skip *pruned_skip, const uint8_t *pruned_heads, const int32_t *tokens,
                             const size_t *offsets, size_t n_seqs, int n_threads, tc_prune_eval *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    const int V = ref->cfg.vocab_size;
    if (pruned->cfg.vocab_size != V)
        return tc_err(err, "%s: vocabulary of %d tokens, but %s has %d", pruned->path, pruned->cfg.vocab_size,
                      ref->path, V);
    size_t longest = 0;
    for (size_t s = 0; s < n_seqs; s++)
        if (offsets[s + 1] - offsets[s] > longest)
            longest = offsets[s + 1] - offsets[s];
    float *a = malloc((longest ? longest : 1) * (size_t)V * sizeof *a);
    float *b = malloc((longest ? longest : 1) * (size_t)V * sizeof *b);
    double *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    int rc = TC_OK;
    if (!a || !b || !la || !lb)
        rc = tc_err(err, "out of memory");
    double nll_a = 0, nll_b = 0, kl = 0;
    uint64_t agree = 0, n_pred = 0;
    for (size_t s = 0; s < n_seqs && rc == TC_OK; s++) {
        const int32_t *t = tokens + offsets[s];
        size_t n = offsets[s + 1] - offsets[s];
        if (n < 2)
            continue;
        rc = seq_logits(ref, ref_skip, NULL, t, n, n_threads, a, err);
        if (rc == TC_OK)
            rc = seq_logits(pruned, pruned_skip, pruned_heads, t, n, n_threads, b, err);
        for (size_t i = 0; rc == TC_OK && i + 1 < n; i++) {
            int ia = log_softmax(a + i * (size_t)V, V, la), ib = log_softmax(b + i * (size_t)V, V, lb);
            nll_a -= la[t[i + 1]];
            nll_b -= lb[t[i + 1]];
            double d = 0;
            for (int v = 0; v < V; v++)
                d += exp(la[v]) * (la[v] - lb[v]);
            kl += d;
            agree += ia == ib;
            n_pred++;
        }
    }
    if (rc == TC_OK && n_pred == 0)
        rc = tc_err(err, "no sequence has two tokens: nothing to evaluate");
    if (rc == TC_OK) {
        out->n_predicted = n_pred;
        out->nll_ref = nll_a / (double)n_pred;
        out->nll = nll_b / (double)n_pred;
        out->ppl_ref = exp(out->nll_ref);
        out->ppl = exp(out->nll);
        out->kl = kl / (double)n_pred;
        out->top1 = (double)agree / (double)n_pred;
    }
    free(a), free(b), free(la), free(lb);
    return rc;
}
