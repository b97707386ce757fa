/* The batched fp32 forward pass: one layer at a time over every token of a
 * batch of sequences, observers called at fixed points. */
/* madvise(MADV_DONTNEED) is a Linux/BSD call beyond POSIX. */
#define _DEFAULT_SOURCE
#include "tc/forward.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "forward_math.h"
#include "tc/checked.h"
#include "tc/parallel.h"

/* ---- Wider vectors for the exponentials -----------------------------------------
 * Softmax and the gated activations are exponentials over rows: the same source compiled for
 * AVX2 or AVX-512 runs two or four times as many lanes as baseline x86-64.
 * The code is element-wise IEEE arithmetic without fused multiply-adds (no
 * "fma" in the targets), and every reduction runs over fixed lanes, so each
 * path gives bit-identical results; only the speed depends on the CPU. */

typedef void (*softmax_fn)(float *p, size_t n);
typedef void (*softcap_fn)(float *p, size_t n, float cap);
typedef void (*swiglu_fn)(float *g, const float *u, size_t n, tc_act act);

static void softmax_base(float *p, size_t n)
{
    tc_fm_softmax(p, n);
}

static void softcap_base(float *p, size_t n, float cap)
{
    tc_fm_softcap(p, n, cap);
}

static void swiglu_base(float *g, const float *u, size_t n, tc_act act)
{
    tc_fm_act(g, u, n, act);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TC_FWD_X86 1
__attribute__((target("avx2"))) static void softmax_avx2(float *p, size_t n)
{
    tc_fm_softmax(p, n);
}

__attribute__((target("avx2"))) static void softcap_avx2(float *p, size_t n, float cap)
{
    tc_fm_softcap(p, n, cap);
}

__attribute__((target("avx2"))) static void swiglu_avx2(float *g, const float *u, size_t n, tc_act act)
{
    tc_fm_act(g, u, n, act);
}

__attribute__((target("avx512f"))) static void softmax_avx512(float *p, size_t n)
{
    tc_fm_softmax(p, n);
}

__attribute__((target("avx512f"))) static void softcap_avx512(float *p, size_t n, float cap)
{
    tc_fm_softcap(p, n, cap);
}

__attribute__((target("avx512f"))) static void swiglu_avx512(float *g, const float *u, size_t n, tc_act act)
{
    tc_fm_act(g, u, n, act);
}
#endif

static void pick_vector_path(softmax_fn *sm, swiglu_fn *sw, softcap_fn *sc)
{
    *sm = softmax_base;
    *sw = swiglu_base;
    *sc = softcap_base;
#ifdef TC_FWD_X86
    if (__builtin_cpu_supports("avx512f")) {
        *sm = softmax_avx512;
        *sw = swiglu_avx512;
        *sc = softcap_avx512;
    } else if (__builtin_cpu_supports("avx2")) {
        *sm = softmax_avx2;
        *sw = swiglu_avx2;
        *sc = softcap_avx2;
    }
#endif
}

/* ---- Whole-model fp32 weights ---------------------------------------------- */

uint64_t tc_weights_bytes(const tc_model *m)
{
    uint64_t total = 0, elems;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++)
            if (tc_add_u64(total, tc_model_role_params(m, l, (tc_role)r), &total))
                return UINT64_MAX;
    if (tc_add_u64(total, m->out_norm->n_elements, &total) ||
        tc_add_u64(total, m->output->n_elements, &total) ||
        tc_mul_u64(total, sizeof(float), &elems))
        return UINT64_MAX;
    return elems;
}

void tc_weights_free(tc_weights *w)
{
    if (w->layers)
        for (int l = 0; l < w->n_layers; l++)
            tc_layer_f32_free(&w->layers[l]);
    free(w->layers);
    free(w->out_norm);
    free(w->output);
    memset(w, 0, sizeof *w);
}

int tc_weights_load(tc_weights *w, const tc_model *m, tc_error *err)
{
    memset(w, 0, sizeof *w);
    w->layers = calloc(m->cfg.n_layers > 0 ? (size_t)m->cfg.n_layers : 1, sizeof *w->layers);
    if (!w->layers)
        return tc_err(err, "%s: out of memory for the layer table", m->path);
    w->n_layers = m->cfg.n_layers;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (tc_model_load_layer(m, l, &w->layers[l], err))
            goto fail;
    if (tc_tensor_load_f32(m->out_norm, &w->out_norm, err) ||
        tc_tensor_load_f32(m->output, &w->output, err))
        goto fail;
    return TC_OK;
fail:
    tc_weights_free(w);
    return TC_ERR;
}

/* ---- Batches ----------------------------------------------------------------- */

int tc_batch_check(const tc_model *m, const tc_batch *b, const char *what, tc_error *err)
{
    if (!b->offsets || b->offsets[0] != 0)
        return tc_err(err, "%s: sequence offsets must start at 0", what);
    for (size_t s = 0; s < b->n_seqs; s++)
        if (b->offsets[s + 1] < b->offsets[s])
            return tc_err(err, "%s: sequence %zu ends before it starts", what, s);
    size_t n = tc_batch_tokens(b);
    if (n > INT_MAX)
        return tc_err(err, "%s: %zu tokens in one batch (at most %d)", what, n, INT_MAX);
    for (size_t t = 0; t < n; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->cfg.vocab_size)
            return tc_err(err, "%s: token %zu is %d, outside the vocabulary of %d", what, t,
                          (int)b->tokens[t], m->cfg.vocab_size);
    return TC_OK;
}

/* ---- The pass ------------------------------------------------------------------ */

/* Every buffer of a pass, kept in a workspace so that callers running many
 * passes (the analysis reruns) reuse memory instead of faulting in fresh
 * pages each time. */
enum {
    BUF_ROPE, BUF_ROPE_LOCAL, BUF_POS, BUF_X, BUF_XN, BUF_Q, BUF_K, BUF_V, BUF_ATT, BUF_G, BUF_U, BUF_LOGITS,
    BUF_SCRATCH, BUF_HEAD_CELLS, BUF_HEAD_SUM, BUF_RECV, BUF_SX, N_BUFS
};

struct tc_forward_ws {
    void *buf[N_BUFS];
    size_t cap[N_BUFS]; /* bytes */
};

tc_forward_ws *tc_forward_ws_new(void)
{
    return calloc(1, sizeof(tc_forward_ws));
}

static void ws_release(tc_forward_ws *ws)
{
    for (int i = 0; i < N_BUFS; i++)
        free(ws->buf[i]);
    memset(ws, 0, sizeof *ws);
}

void tc_forward_ws_free(tc_forward_ws *ws)
{
    if (!ws)
        return;
    ws_release(ws);
    free(ws);
}

/* Buffer `slot` with room for a x b elements of elem bytes (contents undefined). */
static int ws_get(tc_forward_ws *ws, int slot, size_t a, size_t b, size_t elem, void *out,
                  const char *what, const tc_model *m, tc_error *err)
{
    uint64_t n;
    if (tc_mul_u64(a, b, &n) || tc_mul_u64(n, elem, &n) || n > SIZE_MAX)
        return tc_err(err, "%s: %s buffer of %zu x %zu elements is too large", m->path, what, a, b);
    if (n > ws->cap[slot] || !ws->buf[slot]) {
        free(ws->buf[slot]);
        ws->cap[slot] = 0;
        ws->buf[slot] = malloc(n ? (size_t)n : 1);
        if (!ws->buf[slot])
            return tc_err(err, "%s: out of memory for the %s buffer (%llu bytes)", m->path, what,
                          (unsigned long long)n);
        ws->cap[slot] = (size_t)n;
    }
    memcpy(out, &ws->buf[slot], sizeof(void *));
    return TC_OK;
}

/* Queries per attention tile (see attention_task). */
#define ATT_ROWS 64

/* The head statistics of tc_head_sums, in the order of its fields. */
enum { HS_ENT, HS_TOP, HS_SINK, HS_PREV, HS_DIAG, HS_K90, HS_N };

typedef struct pass {
    const tc_model *m;
    const tc_config *c;
    const tc_batch *b;
    const tc_forward_opts *o;
    tc_forward_ws local;  /* used when the caller lends no workspace */
    tc_forward_ws *ws;
    int n_threads;
    size_t n;          /* tokens */
    size_t max_len;    /* longest sequence */
    int qdim, kvdim;
    int want_heads, want_recv;
    size_t rope_len;   /* positions the rope tables cover */
    double lambda;     /* differential attention: the current layer's lambda */
    softmax_fn softmax;
    swiglu_fn swiglu;
    softcap_fn softcap;
    /* cos/sin tables of the global and the local layers' rope: [position]
     * [rot_dims/2][cos, sin], or [token][...] when the rope depends on the
     * sequence's length (per_token). */
    float *rope[2];
    int rope_per_token[2];
    uint32_t *pos;     /* [n]: each token's position in its sequence */
    float *x;          /* residual stream [n][dim] */
    float *xn;         /* normed rows [n][dim] */
    float *q, *k, *v;  /* [n][qdim], [n][kvdim] x 2 */
    float *att;        /* attention output [n][qdim] */
    size_t chunk;      /* tokens per MLP chunk */
    float *g, *u;      /* [chunk][ffn_dim] */
    float *scratch;    /* per thread: (ATT_ROWS + 1) * max_len */
    size_t scratch_per_thread;
    double *cells;     /* [n_seqs][n_heads][HS_N] head statistics, every cell written */
    double *head_sum;  /* [HS_N][n_heads]: the batch's sums handed to observers */
    float *recv;       /* [2][n_heads][n]: attention received from the last query, from all */
    int ternary;       /* the linear layers quantize their inputs (tc_linear_kind) */
    double *sx;        /* [n]: each row's activation scale s_x for a ternary linear */
} pass;

static void pass_free(pass *p)
{
    ws_release(&p->local);
}

static size_t clamp_size(size_t v, size_t lo, size_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int pass_buffers(pass *p, tc_error *err)
{
    const tc_config *c = p->c;
    const tc_model *m = p->m;
    tc_forward_ws *ws = p->ws;
    size_t n = p->n ? p->n : 1, ffn = (size_t)c->ffn_dim;
    size_t f = sizeof(float);
    size_t rope_rows[2];
    for (int k = 0; k < 2; k++)
        rope_rows[k] = tc_rope_depends_on_length(&c->t.rope[k]) ? n : p->rope_len ? p->rope_len : 1;
    if (ws_get(ws, BUF_ROPE, rope_rows[0], (size_t)c->head_dim, f, &p->rope[0], "rope", m, err) ||
        ws_get(ws, BUF_ROPE_LOCAL, rope_rows[1], (size_t)c->head_dim, f, &p->rope[1], "rope", m, err) ||
        ws_get(ws, BUF_POS, n, 1, sizeof(uint32_t), &p->pos, "position", m, err) ||
        ws_get(ws, BUF_X, n, (size_t)c->dim, f, &p->x, "hidden", m, err) ||
        ws_get(ws, BUF_XN, n, (size_t)c->dim, f, &p->xn, "norm", m, err) ||
        ws_get(ws, BUF_Q, n, (size_t)p->qdim, f, &p->q, "query", m, err) ||
        ws_get(ws, BUF_K, n, (size_t)p->kvdim, f, &p->k, "key", m, err) ||
        ws_get(ws, BUF_V, n, (size_t)p->kvdim, f, &p->v, "value", m, err) ||
        ws_get(ws, BUF_ATT, n, (size_t)p->qdim, f, &p->att, "attention", m, err) ||
        ws_get(ws, BUF_G, p->chunk, ffn, f, &p->g, "gate", m, err) ||
        ws_get(ws, BUF_U, p->chunk, ffn, f, &p->u, "up", m, err) ||
        ws_get(ws, BUF_SCRATCH, (size_t)p->n_threads, p->scratch_per_thread, f, &p->scratch,
               "scores", m, err))
        return TC_ERR;
    size_t seqs = p->b->n_seqs ? p->b->n_seqs : 1, nh = (size_t)c->n_heads;
    if (p->want_recv && ws_get(ws, BUF_RECV, 2 * nh, n, f, &p->recv, "received attention", m, err))
        return TC_ERR;
    if (p->ternary && ws_get(ws, BUF_SX, n, 1, sizeof(double), &p->sx, "activation scale", m, err))
        return TC_ERR;
    if (!p->want_heads)
        return TC_OK;
    if (ws_get(ws, BUF_HEAD_CELLS, seqs * nh, HS_N, sizeof(double), &p->cells, "head statistics", m, err) ||
        ws_get(ws, BUF_HEAD_SUM, HS_N, nh, sizeof(double), &p->head_sum, "head statistics", m, err))
        return TC_ERR;
    return TC_OK;
}

/* The cos/sin tables every layer's rope reads.  A rope whose frequencies
 * depend on the sequence length (dynamic, longrope) gets one row per token,
 * from its own sequence's length, as transformers computes a sequence. */
static void rope_tables(pass *p)
{
    const tc_config *c = p->c;
    size_t hd = (size_t)c->head_dim;
    float inv[TC_ROPE_MAX_PAIRS];
    for (int k = 0; k < 2; k++) {
        const tc_rope *r = &c->t.rope[k];
        if (k == 1 && !tc_rope_depends_on_length(r) && memcmp(r, &c->t.rope[0], sizeof *r) == 0) {
            memcpy(p->rope[1], p->rope[0], p->rope_len * hd * sizeof(float));
            continue;
        }
        p->rope_per_token[k] = tc_rope_depends_on_length(r);
        if (!p->rope_per_token[k]) {
            tc_rope_inv_freq(r, p->rope_len, inv);
            for (size_t pos = 0; pos < p->rope_len; pos++)
                tc_rope_angles(r, inv, pos, p->rope[k] + pos * hd);
            continue;
        }
        /* The sequence's length is its last position + 1 (its token count
         * unless tokens were dropped). */
        for (size_t s = 0; s < p->b->n_seqs; s++) {
            size_t o = p->b->offsets[s], len = p->b->offsets[s + 1] - o;
            if (!len)
                continue;
            tc_rope_inv_freq(r, (size_t)p->pos[o + len - 1] + 1, inv);
            for (size_t t = 0; t < len; t++)
                tc_rope_angles(r, inv, p->pos[o + t], p->rope[k] + (o + t) * hd);
        }
    }
}

static int pass_init(pass *p, const tc_model *m, const tc_batch *b, const tc_forward_opts *o,
                     tc_error *err)
{
    const tc_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    p->m = m;
    p->c = c;
    p->b = b;
    p->o = o;
    p->ws = o->ws ? o->ws : &p->local;
    p->n_threads = o->n_threads > 0 ? o->n_threads : 1;
    pick_vector_path(&p->softmax, &p->swiglu, &p->softcap);
    p->n = tc_batch_tokens(b);
    p->qdim = c->n_heads * c->head_dim;
    p->kvdim = c->n_kv_heads * c->head_dim;
    p->ternary = tc_linear_is_ternary(c);
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 ||
        c->head_dim % 2 || c->ffn_dim <= 0)
        return tc_err(err, "%s: unsupported shape (%d heads, %d kv heads, head_dim %d, ffn %d)",
                      m->path, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim);
    for (size_t s = 0; s < b->n_seqs; s++)
        if (b->offsets[s + 1] - b->offsets[s] > p->max_len)
            p->max_len = b->offsets[s + 1] - b->offsets[s];
    for (size_t i = 0; i < o->n_observers; i++) {
        if (o->observers[i].want_head_stats && o->observers[i].head_stats)
            p->want_heads = 1;
        if (o->observers[i].want_received && o->observers[i].received)
            p->want_recv = 1;
    }
    p->rope_len = p->max_len;
    if (o->positions) {
        for (size_t s = 0; s < b->n_seqs; s++)
            for (size_t t = b->offsets[s]; t < b->offsets[s + 1]; t++)
                if (t > b->offsets[s] && o->positions[t] <= o->positions[t - 1])
                    return tc_err(err, "%s: token positions must increase within a sequence (token %zu)", m->path,
                                  t);
        for (size_t t = 0; t < p->n; t++)
            if ((size_t)o->positions[t] + 1 > p->rope_len)
                p->rope_len = (size_t)o->positions[t] + 1;
        /* A window counts positions, the tiles count tokens: where tokens were
         * dropped the two differ, unless the window covers every position. */
        if (c->t.window > 0 && (size_t)c->t.window < p->rope_len)
            for (int l = 0; l < c->n_layers; l++)
                if (tc_layer_is_local(c, l))
                    return tc_err(err, "%s: a sliding window of %d over positions up to %zu with tokens "
                                  "dropped is not implemented", m->path, c->t.window, p->rope_len - 1);
    }
    p->chunk = clamp_size((size_t)(1u << 23) / (size_t)c->ffn_dim, 16, p->n ? p->n : 1);
    p->scratch_per_thread = ((c->t.diff_attn ? 2 : 1) * (size_t)ATT_ROWS + 1) * (p->max_len ? p->max_len : 1);
    if (c->t.diff_attn && (c->n_heads % 2 || o->head_mask))
        return tc_err(err, "%s: %s", m->path, c->n_heads % 2 ? "differential attention needs an even head count"
                                                            : "masking heads of differential attention is not implemented");
    if (pass_buffers(p, err))
        return TC_ERR;
    for (size_t s = 0; s < b->n_seqs; s++)
        for (size_t t = b->offsets[s]; t < b->offsets[s + 1]; t++)
            p->pos[t] = o->positions ? o->positions[t] : (uint32_t)(t - b->offsets[s]);
    rope_tables(p);
    return TC_OK;
}

/* ---- Observers ------------------------------------------------------------------ */

static int observe_hidden(const pass *p, int layer, tc_point at, tc_error *err)
{
    for (size_t i = 0; i < p->o->n_observers; i++) {
        const tc_observer *ob = &p->o->observers[i];
        if (ob->hidden && ob->hidden(ob->ctx, layer, at, p->x, p->n, p->c->dim, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int observe_input(const pass *p, int layer, tc_lin_input which, const float *x, size_t tok0,
                         size_t n, int cols, tc_error *err)
{
    for (size_t i = 0; i < p->o->n_observers; i++) {
        const tc_observer *ob = &p->o->observers[i];
        if (ob->linear_input && ob->linear_input(ob->ctx, layer, which, x, tok0, n, cols, err))
            return TC_ERR;
    }
    return TC_OK;
}

/* ---- Building blocks ---------------------------------------------------------------- */

/* y[n][out] = x[n][in] . w[out][in]^T, added to y when accumulate. */
static void linear(const float *x, const float *w, float *y, size_t n, int in, int out,
                   int accumulate)
{
    if (n == 0 || in == 0 || out == 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, out, in, 1.0f, x, in, w, in,
                accumulate ? 1.0f : 0.0f, y, out);
}

static void add_bias(float *y, const float *bias, size_t n, int cols)
{
    if (!bias)
        return;
    for (size_t t = 0; t < n; t++)
        for (int j = 0; j < cols; j++)
            y[t * cols + j] += bias[j];
}

/* Element-wise work is split over tokens; below this many tokens per thread
 * starting threads costs more than it saves. */
#define MIN_TOKENS_PER_THREAD 64

typedef struct norm_job {
    const float *x, *w;
    float *out;
    int dim;
    float eps;
    tc_norm_kind kind;
} norm_job;

static void norm_range(void *ctx, size_t begin, size_t end)
{
    const norm_job *j = ctx;
    for (size_t t = begin; t < end; t++)
        tc_fm_norm(j->x + t * j->dim, j->w, j->out + t * j->dim, j->dim, j->eps, j->kind);
}

/* n rows of `width` normed (in place when out == x). */
static void norm_rows(const pass *p, const float *x, const float *w, float *out, size_t n, int width)
{
    norm_job j = {x, w, out, width, p->c->norm_eps, p->c->t.norm};
    tc_parallel_for(p->n_threads, n, MIN_TOKENS_PER_THREAD, norm_range, &j);
}

static void rmsnorm_rows(const pass *p, const float *x, const float *w, float *out, size_t n)
{
    norm_rows(p, x, w, out, n, p->c->dim);
}

/* ---- Ternary linear layers -------------------------------------------------------- */

typedef struct quant_job {
    const pass *p;
    float *x;
    int cols;
} quant_job;

static void quant_range(void *ctx, size_t begin, size_t end)
{
    const quant_job *j = ctx;
    for (size_t t = begin; t < end; t++)
        j->p->sx[t] = tc_fm_act_quant_f32(j->x + t * (size_t)j->cols, (size_t)j->cols, j->p->c->t.linear);
}

/* The input of a ternary linear layer, n rows of cols, quantized in place to
 * int8 values, each row's s_x in p->sx: the products with the codes are then
 * sums of integers, exact in fp32 whatever BLAS's order (|sum| <= 128 cols
 * stays below 2^24). */
static void quant_rows(const pass *p, float *x, size_t n, int cols)
{
    quant_job j = {p, x, cols};
    tc_parallel_for(p->n_threads, n, MIN_TOKENS_PER_THREAD, quant_range, &j);
}

/* y[n][cols]: the integer sums of the rows quant_rows made, to the layer's
 * outputs (divided by w_s * s_x). */
static void unscale_rows(const pass *p, float *y, size_t n, int cols, float w_scale)
{
    for (size_t t = 0; t < n; t++)
        tc_fm_unscale(y + t * (size_t)cols, (size_t)cols, w_scale, p->sx[t]);
}

/* x += y over n rows of dim (a sub-layer's output into the residual). */
static void add_rows(float *x, const float *y, size_t n, int dim)
{
    for (size_t i = 0; i < n * (size_t)dim; i++)
        x[i] += y[i];
}

/* ---- Attention over (sequence, head) tasks --------------------------------------------- */

static void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* Sum of the largest ceil(n/10) of p[0..n): a three-way quickselect moves
 * them to the front in linear expected time (p is clobbered).  A full sort
 * per query would dominate the pass. */
static double top10_mass(float *p, size_t n)
{
    size_t k = (n + 9) / 10, lo = 0, hi = n;
    while (hi - lo > 1) {
        float pivot = p[lo + (hi - lo) / 2];
        size_t lt = lo, i = lo, gt = hi; /* [lo,lt) > pivot, [lt,gt) == pivot, [gt,hi) < pivot */
        while (i < gt) {
            if (p[i] > pivot)
                swap_f(&p[lt++], &p[i++]);
            else if (p[i] < pivot)
                swap_f(&p[i], &p[--gt]);
            else
                i++;
        }
        if (k <= lt)
            hi = lt;
        else if (k <= gt)
            break;
        else
            lo = gt;
    }
    double s = 0.0;
    for (size_t i = 0; i < k; i++)
        s += p[i];
    return s;
}

/* The fewest of p[0..n) whose sum reaches `target`, the largest first: a
 * three-way quickselect that keeps the mass of what it has set aside (p is
 * clobbered).  All of them when even those fall short (rounding). */
static size_t keys_for_mass(float *p, size_t n, double target)
{
    size_t lo = 0, hi = n;
    double acc = 0.0; /* mass of p[0..lo), every one of them larger than p[lo..hi) */
    while (lo < hi) {
        float pivot = p[lo + (hi - lo) / 2];
        size_t lt = lo, i = lo, gt = hi;
        double above = 0.0;
        while (i < gt) {
            if (p[i] > pivot) {
                above += p[i];
                swap_f(&p[lt++], &p[i++]);
            } else if (p[i] < pivot) {
                swap_f(&p[i], &p[--gt]);
            } else {
                i++;
            }
        }
        if (acc + above >= target) {
            if (lt == lo) /* (only when target <= 0) */
                return lo;
            hi = lt;
            continue;
        }
        acc += above;
        double need = target - acc, eq = (double)(gt - lt) * pivot;
        if (pivot > 0.0f && eq >= need) {
            size_t k = (size_t)ceil(need / pivot);
            return lt + (k > gt - lt ? gt - lt : k);
        }
        acc += eq;
        lo = gt;
    }
    return hi;
}

/* One query's attention weights over its visible keys k0 .. k0+n-1, the
 * query itself at key k0+n-1, added to the task's sums (cell[HS_*]; sorted
 * is scratch for the selections). */
static void head_stats_row(const float *probs, size_t n, size_t k0, float *sorted, double *cell)
{
    double ent = 0.0, mass = 0.0;
    for (size_t j = 0; j < n; j++) {
        mass += probs[j];
        if (probs[j] > 0.0f)
            ent -= (double)probs[j] * log((double)probs[j]);
    }
    cell[HS_ENT] += ent;
    memcpy(sorted, probs, n * sizeof *sorted);
    cell[HS_TOP] += top10_mass(sorted, n);
    if (k0 + n < 2) /* the first query: its one weight says nothing */
        return;
    cell[HS_SINK] += k0 == 0 ? probs[0] : 0.0;
    cell[HS_PREV] += n >= 2 ? probs[n - 2] : 0.0;
    cell[HS_DIAG] += probs[n - 1];
    memcpy(sorted, probs, n * sizeof *sorted);
    cell[HS_K90] += (double)keys_for_mass(sorted, n, 0.9 * mass) / (double)n;
}

/* One tile row of a softmax map (standard or one of a differential pair):
 * masked to its keys, normalised, its statistics and received weights taken. */
static void score_row(pass *p, float *row, size_t keys, size_t first, size_t last, size_t k0, size_t i, size_t len,
                     float *sorted, double *cell, float *rlast, float *rall)
{
    if (p->c->t.attn_softcap > 0.0f)
        p->softcap(row + first, last - first, p->c->t.attn_softcap);
    p->softmax(row + first, last - first);
    memset(row, 0, first * sizeof *row);
    memset(row + last, 0, (keys - last) * sizeof *row);
    if (cell)
        head_stats_row(row + first, last - first, k0 + first, sorted, cell);
    if (rall) {
        for (size_t j = first; j < last; j++)
            rall[k0 + j] += row[j];
        if (i == len - 1)
            memcpy(rlast + k0 + first, row + first, (last - first) * sizeof *row);
    }
}

/* Causal attention of head h over sequence s, ATT_ROWS queries at a time:
 * the tile's scores against every key up to its last query are one matrix
 * product, each row is masked and normalised, and the weighted sum of values
 * is a second product.  Keys past a query get weight exactly 0, so the
 * result is the one-query-at-a-time definition; only the diagonal tile does
 * work the mask throws away.  Q, K, V and the output are read and written in
 * place through their row strides. */
static void attention_task(pass *p, int layer, size_t s, int h, float *scratch)
{
    const tc_config *c = p->c;
    int hd = c->head_dim, kvh = h / (c->n_heads / c->n_kv_heads);
    int qdim = p->qdim, kvdim = p->kvdim;
    size_t o = p->b->offsets[s], len = p->b->offsets[s + 1] - o;
    const float *q = p->q + o * (size_t)qdim + (size_t)h * hd;
    const float *k = p->k + o * (size_t)kvdim + (size_t)kvh * hd;
    const float *v = p->v + o * (size_t)kvdim + (size_t)kvh * hd;
    float *out = p->att + o * (size_t)qdim + (size_t)h * hd;
    float *scores = scratch, *sorted = scratch + (size_t)ATT_ROWS * p->max_len;
    float scale = tc_fm_attn_scale(c);
    if (p->o->head_mask && p->o->head_mask[(size_t)layer * (size_t)c->n_heads + (size_t)h]) {
        /* A masked head contributes nothing to the output projection. */
        for (size_t i = 0; i < len; i++)
            memset(out + i * (size_t)qdim, 0, (size_t)hd * sizeof *out);
        return;
    }
    double *cell = p->want_heads ? p->cells + (s * (size_t)c->n_heads + (size_t)h) * HS_N : NULL;
    float *rlast = NULL, *rall = NULL;
    if (p->want_recv) {
        rlast = p->recv + (size_t)h * p->n + o;
        rall = p->recv + ((size_t)c->n_heads + (size_t)h) * p->n + o;
        memset(rlast, 0, len * sizeof *rlast);
        memset(rall, 0, len * sizeof *rall);
    }
    if (cell)
        memset(cell, 0, HS_N * sizeof *cell);
    for (size_t i0 = 0; i0 < len; i0 += ATT_ROWS) {
        /* The tile's queries see keys k0 .. i0+rows-1 at most (a sliding
         * window starts later); each row is masked to its own range. */
        size_t rows = len - i0 < ATT_ROWS ? len - i0 : ATT_ROWS;
        size_t k0 = tc_fm_first_key(c, layer, i0), keys = i0 + rows - k0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, hd, scale,
                    q + i0 * (size_t)qdim, qdim, k + k0 * (size_t)kvdim, kvdim, 0.0f, scores, (int)keys);
        for (size_t r = 0; r < rows; r++) {
            float *row = scores + r * keys;
            size_t first = tc_fm_first_key(c, layer, i0 + r) - k0, last = i0 + r - k0 + 1;
            score_row(p, row, keys, first, last, k0, i0 + r, len, sorted, cell, rlast, rall);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, hd, (int)keys, 1.0f,
                    scores, (int)keys, v + k0 * (size_t)kvdim, kvdim, 0.0f, out + i0 * (size_t)qdim, qdim);
    }
}

/* Differential attention of pair j (heads j and j + H/2, forward_math.h)
 * over sequence s: both maps tile by tile as attention_task makes one, their
 * difference times each head's values into the pair's 2 * head_dim output
 * columns, each row then normed.  The statistics are each map's. */
static void attention_task_diff(pass *p, int layer, size_t s, int j, float *scratch)
{
    const tc_config *c = p->c;
    int hd = c->head_dim, half = c->n_heads / 2, group = c->n_heads / c->n_kv_heads;
    int hh[2] = {j, j + half}, qdim = p->qdim, kvdim = p->kvdim;
    size_t o = p->b->offsets[s], len = p->b->offsets[s + 1] - o;
    const float *q[2], *k[2], *v[2];
    double *cell[2] = {NULL, NULL};
    float *rlast[2] = {NULL, NULL}, *rall[2] = {NULL, NULL};
    for (int m = 0; m < 2; m++) {
        q[m] = p->q + o * (size_t)qdim + (size_t)hh[m] * hd;
        k[m] = p->k + o * (size_t)kvdim + (size_t)(hh[m] / group) * hd;
        v[m] = p->v + o * (size_t)kvdim + (size_t)(hh[m] / group) * hd;
        if (p->want_heads) {
            cell[m] = p->cells + (s * (size_t)c->n_heads + (size_t)hh[m]) * HS_N;
            memset(cell[m], 0, HS_N * sizeof *cell[m]);
        }
        if (p->want_recv) {
            rlast[m] = p->recv + (size_t)hh[m] * p->n + o;
            rall[m] = p->recv + ((size_t)c->n_heads + (size_t)hh[m]) * p->n + o;
            memset(rlast[m], 0, len * sizeof *rlast[m]);
            memset(rall[m], 0, len * sizeof *rall[m]);
        }
    }
    float *out = p->att + o * (size_t)qdim + (size_t)j * 2 * hd;
    float *sc[2] = {scratch, scratch + (size_t)ATT_ROWS * p->max_len};
    float *sorted = scratch + 2 * (size_t)ATT_ROWS * p->max_len;
    float scale = tc_fm_attn_scale(c), lam = (float)p->lambda;
    for (size_t i0 = 0; i0 < len; i0 += ATT_ROWS) {
        size_t rows = len - i0 < ATT_ROWS ? len - i0 : ATT_ROWS;
        size_t k0 = tc_fm_first_key(c, layer, i0), keys = i0 + rows - k0;
        for (int m = 0; m < 2; m++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, hd, scale,
                        q[m] + i0 * (size_t)qdim, qdim, k[m] + k0 * (size_t)kvdim, kvdim, 0.0f, sc[m], (int)keys);
            for (size_t r = 0; r < rows; r++) {
                size_t first = tc_fm_first_key(c, layer, i0 + r) - k0, last = i0 + r - k0 + 1;
                score_row(p, sc[m] + r * keys, keys, first, last, k0, i0 + r, len, sorted, cell[m], rlast[m], rall[m]);
            }
        }
        for (size_t x = 0; x < rows * keys; x++)
            sc[0][x] -= lam * sc[1][x];
        for (int m = 0; m < 2; m++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, hd, (int)keys, 1.0f, sc[0], (int)keys,
                        v[m] + k0 * (size_t)kvdim, kvdim, 0.0f, out + i0 * (size_t)qdim + (size_t)m * hd, qdim);
    }
    float post = (float)(1.0 - tc_fm_diff_lambda_init(layer));
    for (size_t i = 0; i < len; i++)
        tc_fm_diff_norm(out + i * (size_t)qdim, 2 * hd, c->norm_eps, post);
}

typedef struct attn_job {
    pass *p;
    int layer;
    atomic_size_t next;
    size_t n_tasks;
} attn_job;

typedef struct attn_worker {
    attn_job *job;
    float *scratch;
} attn_worker;

static void *attention_worker(void *arg)
{
    attn_worker *w = arg;
    attn_job *job = w->job;
    int diff = job->p->c->t.diff_attn, nh = diff ? job->p->c->n_heads / 2 : job->p->c->n_heads;
    for (;;) {
        size_t t = atomic_fetch_add(&job->next, 1);
        if (t >= job->n_tasks)
            break;
        if (diff)
            attention_task_diff(job->p, job->layer, t / (size_t)nh, (int)(t % (size_t)nh), w->scratch);
        else
            attention_task(job->p, job->layer, t / (size_t)nh, (int)(t % (size_t)nh), w->scratch);
    }
    return NULL;
}

/* Each task writes only its own rows and cells, so the result is the same
 * whichever thread runs it.  A thread that cannot be started leaves its share
 * to the others.  The tasks' small products run single-threaded inside each
 * task: the parallelism is over tasks. */
static void attention_all(pass *p, int layer)
{
    openblas_set_num_threads(1);
    attn_job job;
    job.p = p;
    job.layer = layer;
    atomic_init(&job.next, 0);
    job.n_tasks = p->b->n_seqs * (size_t)(p->c->t.diff_attn ? p->c->n_heads / 2 : p->c->n_heads);
    int nt = p->n_threads;
    if ((size_t)nt > job.n_tasks)
        nt = job.n_tasks ? (int)job.n_tasks : 1;
    pthread_t tid[64];
    attn_worker w[64];
    if (nt > 64)
        nt = 64;
    int started = 0;
    for (int i = 1; i < nt; i++) {
        w[i].job = &job;
        w[i].scratch = p->scratch + (size_t)i * p->scratch_per_thread;
        if (pthread_create(&tid[started + 1], NULL, attention_worker, &w[i]) != 0)
            break;
        started++;
    }
    w[0].job = &job;
    w[0].scratch = p->scratch;
    attention_worker(&w[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
    openblas_set_num_threads(p->n_threads);
}

/* The batch's sums, sequence by sequence in order (a fixed order whatever
 * thread ran each task). */
static int observe_heads(pass *p, int layer, tc_error *err)
{
    int nh = p->c->n_heads;
    double *sum = p->head_sum;
    for (int k = 0; k < HS_N; k++)
        for (int h = 0; h < nh; h++) {
            sum[k * nh + h] = 0.0;
            for (size_t s = 0; s < p->b->n_seqs; s++)
                sum[k * nh + h] += p->cells[(s * (size_t)nh + (size_t)h) * HS_N + (size_t)k];
        }
    uint64_t later = 0;
    for (size_t s = 0; s < p->b->n_seqs; s++)
        later += p->b->offsets[s + 1] - p->b->offsets[s] > 0 ? p->b->offsets[s + 1] - p->b->offsets[s] - 1 : 0;
    tc_head_sums hs = {sum + HS_ENT * nh, sum + HS_TOP * nh, sum + HS_SINK * nh, sum + HS_PREV * nh,
                       sum + HS_DIAG * nh, sum + HS_K90 * nh, (uint64_t)p->n, later, nh};
    for (size_t i = 0; i < p->o->n_observers; i++) {
        const tc_observer *ob = &p->o->observers[i];
        if (ob->want_head_stats && ob->head_stats && ob->head_stats(ob->ctx, layer, &hs, err))
            return TC_ERR;
    }
    return TC_OK;
}

static int observe_received(pass *p, int layer, tc_error *err)
{
    int nh = p->c->n_heads;
    for (size_t i = 0; i < p->o->n_observers; i++) {
        const tc_observer *ob = &p->o->observers[i];
        if (ob->want_received && ob->received &&
            ob->received(ob->ctx, layer, p->recv, p->recv + (size_t)nh * p->n, p->n, nh, err))
            return TC_ERR;
    }
    return TC_OK;
}

/* ---- Sub-layers -------------------------------------------------------------------------- */

typedef struct rope_job {
    pass *p;
    const tc_layer_f32 *w;
    int k; /* which rope: 0 global, 1 local */
} rope_job;

/* Per token: the q/k norms where the model has them, then the rotation. */
static void rope_range(void *ctx, size_t begin, size_t end)
{
    const rope_job *j = ctx;
    pass *p = j->p;
    const tc_config *c = p->c;
    int rot = c->t.rope[j->k].rot_dims;
    for (size_t t = begin; t < end; t++) {
        float *q = p->q + t * p->qdim, *k = p->k + t * p->kvdim;
        if (c->t.qk_norm) {
            tc_fm_head_norm(q, j->w->w[TC_Q_NORM], c->n_heads, c->head_dim, c->norm_eps, c->t.norm);
            tc_fm_head_norm(k, j->w->w[TC_K_NORM], c->n_kv_heads, c->head_dim, c->norm_eps, c->t.norm);
        }
        size_t row = p->rope_per_token[j->k] ? t : (size_t)p->pos[t];
        const float *cs = p->rope[j->k] + row * (size_t)c->head_dim;
        tc_fm_rope(q, c->n_heads, c->head_dim, rot, c->rope_layout, cs);
        tc_fm_rope(k, c->n_kv_heads, c->head_dim, rot, c->rope_layout, cs);
    }
}

static void apply_rope(pass *p, int layer, const tc_layer_f32 *w)
{
    rope_job j = {p, w, tc_layer_is_local(p->c, layer) ? 1 : 0};
    tc_parallel_for(p->n_threads, p->n, MIN_TOKENS_PER_THREAD, rope_range, &j);
}

/* x += Attn(RMSNorm(x)) over every token. */
static int attention_sublayer(pass *p, int layer, const tc_layer_f32 *w, tc_error *err)
{
    const tc_config *c = p->c;
    size_t n = p->n;
    rmsnorm_rows(p, p->x, w->w[TC_ATTN_NORM], p->xn, n);
    if (observe_input(p, layer, TC_IN_QKV, p->xn, 0, n, c->dim, err))
        return TC_ERR;
    if (p->ternary)
        quant_rows(p, p->xn, n, c->dim);
    linear(p->xn, w->w[TC_WQ], p->q, n, c->dim, p->qdim, 0);
    linear(p->xn, w->w[TC_WK], p->k, n, c->dim, p->kvdim, 0);
    linear(p->xn, w->w[TC_WV], p->v, n, c->dim, p->kvdim, 0);
    if (p->ternary) {
        unscale_rows(p, p->q, n, p->qdim, w->scale[TC_WQ]);
        unscale_rows(p, p->k, n, p->kvdim, w->scale[TC_WK]);
        unscale_rows(p, p->v, n, p->kvdim, w->scale[TC_WV]);
    }
    add_bias(p->q, w->w[TC_BQ], n, p->qdim);
    add_bias(p->k, w->w[TC_BK], n, p->kvdim);
    add_bias(p->v, w->w[TC_BV], n, p->kvdim);
    apply_rope(p, layer, w);
    if (c->t.diff_attn)
        p->lambda = tc_fm_diff_lambda(w->w[TC_LAMBDA_Q1], w->w[TC_LAMBDA_K1], w->w[TC_LAMBDA_Q2], w->w[TC_LAMBDA_K2],
                                      c->head_dim, layer);
    attention_all(p, layer);
    if (p->want_heads && observe_heads(p, layer, err))
        return TC_ERR;
    if (p->want_recv && observe_received(p, layer, err))
        return TC_ERR;
    if (c->t.sub_norms)
        norm_rows(p, p->att, w->w[TC_ATTN_SUB_NORM], p->att, n, p->qdim);
    if (observe_input(p, layer, TC_IN_WO, p->att, 0, n, p->qdim, err))
        return TC_ERR;
    if (!w->w[TC_BO] && !c->t.post_norms && !p->ternary) {
        linear(p->att, w->w[TC_WO], p->x, n, p->qdim, c->dim, 1);
        return TC_OK;
    }
    /* The output goes through a scale, a bias or a norm before the residual
     * add: xn (free once q, k and v are made) holds it. */
    if (p->ternary)
        quant_rows(p, p->att, n, p->qdim);
    linear(p->att, w->w[TC_WO], p->xn, n, p->qdim, c->dim, 0);
    if (p->ternary)
        unscale_rows(p, p->xn, n, c->dim, w->scale[TC_WO]);
    add_bias(p->xn, w->w[TC_BO], n, c->dim);
    if (c->t.post_norms)
        rmsnorm_rows(p, p->xn, w->w[TC_POST_ATTN_NORM], p->xn, n);
    add_rows(p->x, p->xn, n, c->dim);
    return TC_OK;
}

/* g = act(g) * u (SiLU on the vectorised path), or g = act(u) ungated. */
static void swiglu_range(void *ctx, size_t begin, size_t end)
{
    pass *p = ctx;
    const tc_traits *t = &p->c->t;
    size_t ffn = (size_t)p->c->ffn_dim, n = (end - begin) * ffn;
    float *g = p->g + begin * ffn, *u = p->u + begin * ffn;
    if (t->ungated) {
        memcpy(g, u, n * sizeof *g);
        tc_fm_act(g, NULL, n, t->act);
    } else {
        p->swiglu(g, u, n, t->act);
    }
}

/* x += MLP(RMSNorm(x)), chunk by chunk of tokens so that the ffn-wide
 * activations stay bounded. */
static int mlp_sublayer(pass *p, int layer, const tc_layer_f32 *w, tc_error *err)
{
    const tc_config *c = p->c;
    int dim = c->dim, ffn = c->ffn_dim;
    for (size_t t0 = 0; t0 < p->n; t0 += p->chunk) {
        size_t cn = p->n - t0 < p->chunk ? p->n - t0 : p->chunk;
        float *x = p->x + t0 * dim, *xn = p->xn + t0 * dim;
        rmsnorm_rows(p, x, w->w[TC_FFN_NORM], xn, cn);
        if (observe_input(p, layer, TC_IN_GATE_UP, xn, t0, cn, dim, err))
            return TC_ERR;
        if (p->ternary)
            quant_rows(p, xn, cn, dim);
        if (!c->t.ungated) {
            linear(xn, w->w[TC_W_GATE], p->g, cn, dim, ffn, 0);
            if (p->ternary)
                unscale_rows(p, p->g, cn, ffn, w->scale[TC_W_GATE]);
            add_bias(p->g, w->w[TC_B_GATE], cn, ffn);
        }
        linear(xn, w->w[TC_W_UP], p->u, cn, dim, ffn, 0);
        if (p->ternary)
            unscale_rows(p, p->u, cn, ffn, w->scale[TC_W_UP]);
        add_bias(p->u, w->w[TC_B_UP], cn, ffn);
        tc_parallel_for(p->n_threads, cn, MIN_TOKENS_PER_THREAD, swiglu_range, p);
        if (c->t.sub_norms)
            norm_rows(p, p->g, w->w[TC_FFN_SUB_NORM], p->g, cn, ffn);
        if (observe_input(p, layer, TC_IN_DOWN, p->g, t0, cn, ffn, err))
            return TC_ERR;
        if (!w->w[TC_B_DOWN] && !c->t.post_norms && !p->ternary) {
            linear(p->g, w->w[TC_W_DOWN], x, cn, ffn, dim, 1);
            continue;
        }
        if (p->ternary)
            quant_rows(p, p->g, cn, ffn);
        linear(p->g, w->w[TC_W_DOWN], xn, cn, ffn, dim, 0);
        if (p->ternary)
            unscale_rows(p, xn, cn, dim, w->scale[TC_W_DOWN]);
        add_bias(xn, w->w[TC_B_DOWN], cn, dim);
        if (c->t.post_norms)
            rmsnorm_rows(p, xn, w->w[TC_POST_FFN_NORM], xn, cn);
        add_rows(x, xn, cn, dim);
    }
    return TC_OK;
}

/* Hands a mapped tensor's whole pages back to the file (they are clean and
 * read-only: a later read faults them in again from the page cache). */
static void drop_mapped(const tc_tensor *t)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!t->mapped || page <= 0)
        return;
    uintptr_t start = (uintptr_t)t->data, end = start + (uintptr_t)t->nbytes;
    uintptr_t a = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t z = end & ~((uintptr_t)page - 1);
    if (z > a)
        madvise((void *)a, z - a, MADV_DONTNEED);
}

/* This layer's weights in fp32.  Tensors already stored as fp32 (little
 * endian, aligned) are used where they lie instead of being copied; the
 * others are converted into `own`.  borrowed[r] marks the former. */
static int layer_weights(const pass *p, int l, tc_layer_f32 *own, uint8_t *borrowed,
                         tc_error *err)
{
    const tc_layer *lay = &p->m->layers[l];
    memset(own, 0, sizeof *own);
    for (int r = 0; r < TC_N_ROLES; r++) {
        const tc_tensor *t = lay->w[r];
        borrowed[r] = 0;
        if (!t)
            continue;
        if (p->ternary && tc_role_is_linear(r)) {
            /* codes, unpacked or derived from the masters */
            if (tc_model_load_role(p->m, l, (tc_role)r, &own->w[r], &own->scale[r], err))
                return TC_ERR;
            if (t->mapped)
                drop_mapped(t);
            continue;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (t->dtype == TC_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
            memcpy(&own->w[r], &t->data, sizeof own->w[r]); /* read only, never written */
            borrowed[r] = 1;
            continue;
        }
#endif
        if (tc_tensor_load_f32(t, &own->w[r], err))
            return TC_ERR;
    }
    return TC_OK;
}

/* Frees what was converted; hands the pages of what was borrowed from a
 * file mapping back (as converting them would have). */
static void layer_weights_release(const pass *p, int l, tc_layer_f32 *own, const uint8_t *borrowed)
{
    for (int r = 0; r < TC_N_ROLES; r++)
        if (borrowed[r]) {
            drop_mapped(p->m->layers[l].w[r]);
            own->w[r] = NULL;
        }
    tc_layer_f32_free(own);
}

static int run_layer(pass *p, int l, tc_error *err)
{
    const tc_layer *lay = &p->m->layers[l];
    const tc_skip *sk = p->o->skip ? &p->o->skip[l] : NULL;
    int do_attn = lay->has_attn && !(sk && sk->attn);
    int do_mlp = lay->has_mlp && !(sk && sk->mlp);
    tc_layer_f32 own;
    uint8_t borrowed[TC_N_ROLES] = {0};
    const tc_layer_f32 *w = NULL;
    memset(&own, 0, sizeof own);
    int rc = TC_OK;
    if (do_attn || do_mlp) {
        if (p->o->weights)
            w = &p->o->weights->layers[l];
        else if (!(rc = layer_weights(p, l, &own, borrowed, err)))
            w = &own;
    }
    if (!rc)
        rc = observe_hidden(p, l, TC_AT_ATTN_IN, err);
    if (!rc && do_attn)
        rc = attention_sublayer(p, l, w, err);
    if (!rc)
        rc = observe_hidden(p, l, TC_AT_ATTN_OUT, err);
    if (!rc && do_mlp)
        rc = mlp_sublayer(p, l, w, err);
    if (!rc)
        rc = observe_hidden(p, l, TC_AT_MLP_OUT, err);
    layer_weights_release(p, l, &own, borrowed);
    return rc;
}

/* ---- The head ------------------------------------------------------------------------------- */

static int run_head(pass *p, tc_error *err)
{
    const tc_config *c = p->c;
    float *norm = NULL, *out = NULL, *logits = NULL;
    const float *normw, *outw;
    int rc = TC_ERR;
    if (p->o->weights) {
        normw = p->o->weights->out_norm;
        outw = p->o->weights->output;
    } else {
        if (tc_tensor_load_f32(p->m->out_norm, &norm, err) ||
            tc_tensor_load_f32(p->m->output, &out, err))
            goto done;
        normw = norm;
        outw = out;
    }
    size_t chunk = p->o->logits_chunk ? p->o->logits_chunk
                                      : clamp_size((size_t)(1u << 24) / (size_t)c->vocab_size, 16,
                                                   8192);
    if (chunk > p->n)
        chunk = p->n ? p->n : 1;
    if (ws_get(p->ws, BUF_LOGITS, chunk, (size_t)c->vocab_size, sizeof(float), &logits, "logits",
               p->m, err))
        goto done;
    for (size_t t0 = 0; t0 < p->n; t0 += chunk) {
        size_t cn = p->n - t0 < chunk ? p->n - t0 : chunk;
        rmsnorm_rows(p, p->x + t0 * c->dim, normw, p->xn, cn);
        linear(p->xn, outw, logits, cn, c->dim, c->vocab_size, 0);
        if (c->t.final_softcap > 0.0f)
            p->softcap(logits, cn * (size_t)c->vocab_size, c->t.final_softcap);
        for (size_t i = 0; i < p->o->n_observers; i++) {
            const tc_observer *ob = &p->o->observers[i];
            if (ob->logits && ob->logits(ob->ctx, logits, t0, cn, c->vocab_size, err))
                goto done;
        }
    }
    rc = TC_OK;
done:
    free(norm);
    free(out);
    return rc;
}

/* ---- Entry points ------------------------------------------------------------------------------ */

static int run_from(pass *p, int first_layer, tc_error *err)
{
    openblas_set_num_threads(p->n_threads);
    int end = p->o->end_layer > 0 && p->o->end_layer < p->c->n_layers ? p->o->end_layer : p->c->n_layers;
    for (int l = first_layer; l < end; l++)
        if (run_layer(p, l, err))
            return TC_ERR;
    if (p->o->no_logits || end < p->c->n_layers)
        return TC_OK;
    return run_head(p, err);
}

static const tc_forward_opts *opts_or_default(const tc_forward_opts *o, tc_forward_opts *def)
{
    if (o)
        return o;
    memset(def, 0, sizeof *def);
    return def;
}

int tc_forward_from(const tc_model *m, const tc_batch *b, int first_layer, const float *x,
                    const tc_forward_opts *opts, tc_error *err)
{
    tc_forward_opts def;
    opts = opts_or_default(opts, &def);
    if (first_layer < 0 || first_layer > m->cfg.n_layers)
        return tc_err(err, "%s: cannot start at layer %d of %d", m->path, first_layer,
                      m->cfg.n_layers);
    if (tc_batch_check(m, b, m->path, err))
        return TC_ERR;
    pass p;
    int rc = pass_init(&p, m, b, opts, err);
    if (!rc) {
        if (p.n)
            memcpy(p.x, x, p.n * (size_t)m->cfg.dim * sizeof *x);
        rc = run_from(&p, first_layer, err);
    }
    pass_free(&p);
    return rc;
}

/* Looking up a few hundred rows of a mapped embedding table leaves far more
 * of it resident than the rows: every fault maps the whole page-cache folio
 * around the row (up to megabytes), about 160 MB for 256 tokens of a
 * 32000 x 4096 F16 table.  Those pages are dropped once the rows are in x. */
static int embed_tokens(const tc_model *m, const tc_batch *b, float *x, size_t n, tc_error *err)
{
    int rc = TC_OK;
    for (size_t t = 0; !rc && t < n; t++)
        rc = tc_model_embed_input(m, b->tokens[t], x + t * (size_t)m->cfg.dim, err);
    if (n)
        drop_mapped(m->tok_embd);
    return rc;
}

int tc_forward(const tc_model *m, const tc_batch *b, const tc_forward_opts *opts, tc_error *err)
{
    tc_forward_opts def;
    opts = opts_or_default(opts, &def);
    if (tc_batch_check(m, b, m->path, err))
        return TC_ERR;
    pass p;
    int rc = pass_init(&p, m, b, opts, err);
    if (!rc)
        rc = embed_tokens(m, b, p.x, p.n, err);
    if (!rc)
        rc = run_from(&p, 0, err);
    pass_free(&p);
    return rc;
}
