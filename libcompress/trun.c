/* The ternary runner: a KV-cache decoder over a tc_tmodel whose linear
 * layers go through the LUT kernels on int8 activations. The fp32 arithmetic
 * around them is forward_math.h's, shared with the fp32 forward pass. */
#include "tc/trun.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_math.h"
#include "tc/checked.h"
#include "tc/qmat.h"

/* Tokens processed together by tc_trun_feed (the chunk): every product,
 * the attention and the output head are handed to the pool once per chunk
 * (the kernels read each weight once per eight of its tokens).  Every
 * hand-over is a barrier, and on a machine busy with other work a barrier
 * waits for a worker that lost its core, so a chunk is as long as the
 * buffers allow: up to CHUNK_MAX tokens (a whole 256-token window at once:
 * five hand-overs a layer), within CHUNK_BYTES of per-token buffers
 * (a large vocabulary's logits shorten it), never below CHUNK_MIN. */
#define CHUNK_MAX 256
#define CHUNK_MIN 16
#define CHUNK_BYTES ((size_t)64 << 20)

static const tc_role LINEAR[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
#define N_LINEAR (sizeof LINEAR / sizeof LINEAR[0])

typedef struct lin {
    int present, ternary, rows, cols;
    tc_dtype qt;  /* a block type (tc/qmat.h: Q8_0, Q4_0) the weight is stored in, else TC_F32 */
    tc_tpack_plan plan;
    const uint8_t *data;
    uint64_t nbytes;
    float *dense; /* fp32 [rows][cols]: plain weights, or ternary and block ones in REF mode */
} lin;

typedef struct tlayer {
    lin w[TC_N_ROLES];
    float *vec[TC_N_ROLES]; /* norms and biases */
    int has_attn, has_mlp;
} tlayer;

struct tc_trun_trace {
    int8_t *q;
    float *s;
    size_t nq, ns, capq, caps; /* used and allocated */
    size_t rq, rs;             /* replay positions */
};

struct tc_trun {
    tc_trun_trace *trace;
    int replay;
    const tc_tmodel *m;
    tc_config c;
    tc_trun_mode mode;
    tc_kernels k;
    tc_kpool *pool;
    tc_kwork *work;
    int n_threads, max_len, pos, qdim, kvdim, max_k, chunk;
    tlayer *layers;
    float *embd, *out_norm, *output; /* output == embd when tied; NULL where a block type is read */
    /* An embedding or head in a block type (tc/qmat.h): rows are converted
     * when looked up, the head multiplies int8 activations (hq, hd) in the
     * LUT mode and is kept dequantized in output for the REF mode. */
    const tc_tmodel_tensor *embd_q, *out_q;
    int8_t *hq;
    float *hd;
    /* Linear weights in a block type read their input quantized per 32
     * columns (hq, hd, made once per input: bq_valid); the REF mode
     * multiplies it dequantized (bxd). */
    int bq_valid;
    float *bxd;
    /* Keys transposed per kv head, [n_layers][n_kv_heads][head_dim][max_len],
     * so that a query's scores are contiguous multiply-adds over keys (the
     * fp32 decoder's layout); values [n_layers][max_len][kvdim]. */
    float *kc, *vc;
    float *x, *xn, *xd, *q, *kb, *vb, *att, *g, *u, *tmp, *act_s, *probs, *cs, *logits;
    int8_t *xq;
    tc_fm_rope_freqs freqs;
};

static const char *path_of(const tc_tmodel *m)
{
    return m->path ? m->path : "ternary model";
}

static int is_linear(int role)
{
    for (size_t i = 0; i < N_LINEAR; i++)
        if ((int)LINEAR[i] == role)
            return 1;
    return 0;
}

static int to_f32(const tc_tmodel_tensor *t, float **out, tc_error *err)
{
    uint64_t n = t->n_dims == 2 ? (uint64_t)t->shape[0] * (uint64_t)t->shape[1]
                                : (uint64_t)t->shape[0];
    uint64_t bytes;
    if (tc_mul_u64(n, sizeof(float), &bytes) || bytes > SIZE_MAX / 2 ||
        !(*out = malloc(bytes ? (size_t)bytes : 1)))
        return tc_err(err, "out of memory converting a tensor of %llu values",
                      (unsigned long long)n);
    return tc_tmodel_tensor_f32(t, *out, err);
}

static int load_linear(tc_trun *r, const tc_tmodel_tensor *t, lin *L, tc_error *err)
{
    L->present = 1;
    L->ternary = t->ternary;
    L->rows = (int)t->shape[0];
    L->cols = (int)t->shape[1];
    L->qt = !t->ternary && tc_qmat_linear_type_ok(t->dtype) ? t->dtype : TC_F32;
    if (t->ternary || L->qt != TC_F32) {
        L->plan = t->plan;
        L->data = t->data;
        L->nbytes = t->nbytes;
    }
    if (L->cols > r->max_k)
        r->max_k = L->cols;
    if (L->qt != TC_F32 && tc_qmat_check(L->qt, t->data, t->shape[0], t->shape[1], err))
        return TC_ERR;
    if ((!t->ternary && L->qt == TC_F32) || r->mode == TC_TRUN_REF)
        return to_f32(t, &L->dense, err);
    return TC_OK;
}

static int load_layer(tc_trun *r, int l, tc_error *err)
{
    tlayer *L = &r->layers[l];
    for (int role = 0; role < TC_N_ROLES; role++) {
        const tc_tmodel_tensor *t = tc_tmodel_find(r->m, l, role);
        if (!t)
            continue;
        int rc = is_linear(role) ? load_linear(r, t, &L->w[role], err) : to_f32(t, &L->vec[role], err);
        if (rc) {
            char name[64];
            tc_tmodel_tensor_name(t, name, sizeof name);
            return tc_err_prefix(err, "%s: tensor '%s'", path_of(r->m), name);
        }
    }
    L->has_attn = L->vec[TC_ATTN_NORM] && L->w[TC_WQ].present && L->w[TC_WK].present &&
                  L->w[TC_WV].present && L->w[TC_WO].present;
    L->has_mlp = L->vec[TC_FFN_NORM] && (L->w[TC_W_GATE].present || r->c.t.ungated) &&
                 L->w[TC_W_UP].present && L->w[TC_W_DOWN].present;
    return TC_OK;
}

static int load_globals(tc_trun *r, tc_error *err)
{
    const tc_tmodel_tensor *e = tc_tmodel_find(r->m, -1, TC_G_EMBD);
    const tc_tmodel_tensor *n = tc_tmodel_find(r->m, -1, TC_G_OUT_NORM);
    const tc_tmodel_tensor *o = tc_tmodel_find(r->m, -1, TC_G_OUTPUT);
    if (!e || !n || (!o && !r->c.tied_embeddings))
        return tc_err(err, "%s: the token embedding, final norm or output head is missing",
                      path_of(r->m));
    const tc_tmodel_tensor *h = o ? o : e;
    if (tc_qmat_type_ok(e->dtype)) {
        r->embd_q = e;
        if (tc_qmat_check(e->dtype, e->data, e->shape[0], e->shape[1], err))
            return tc_err_prefix(err, "%s: tensor 'token_embd'", path_of(r->m));
    } else if (to_f32(e, &r->embd, err)) {
        return tc_err_prefix(err, "%s", path_of(r->m));
    }
    if (to_f32(n, &r->out_norm, err))
        return tc_err_prefix(err, "%s", path_of(r->m));
    if (tc_qmat_type_ok(h->dtype)) {
        r->out_q = h;
        if (o && tc_qmat_check(o->dtype, o->data, o->shape[0], o->shape[1], err))
            return tc_err_prefix(err, "%s: tensor 'output'", path_of(r->m));
        if (r->mode == TC_TRUN_REF && to_f32(h, &r->output, err))
            return tc_err_prefix(err, "%s", path_of(r->m));
        return TC_OK;
    }
    if (!o) {
        r->output = r->embd;
        return TC_OK;
    }
    if (to_f32(o, &r->output, err))
        return tc_err_prefix(err, "%s", path_of(r->m));
    return TC_OK;
}

/* A worker's attention scratch: the scores of one head, or for
 * differential attention both maps of a pair and a head's output. */
static size_t probs_stride(const tc_trun *r)
{
    size_t ml = (size_t)r->max_len;
    return r->c.t.diff_attn ? 2 * ml + (size_t)r->c.head_dim : ml;
}

static float *alloc_f(size_t n, int *fail)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        *fail = 1;
    return p;
}

static int alloc_buffers(tc_trun *r, tc_error *err)
{
    const tc_config *c = &r->c;
    uint64_t cache;
    if (tc_mul_u64((uint64_t)c->n_layers, (uint64_t)r->max_len, &cache) ||
        tc_mul_u64(cache, (uint64_t)r->kvdim, &cache) ||
        tc_mul_u64(cache, sizeof(float), &cache) || cache > SIZE_MAX / 2)
        return tc_err(err, "%s: a KV cache of %d positions is too large", path_of(r->m),
                      r->max_len);
    int fail = 0;
    size_t cells = (size_t)cache / sizeof(float), widest = (size_t)r->max_k;
    if (widest < (size_t)c->dim)
        widest = (size_t)c->dim;
    size_t per_tok = sizeof(float) * (4 * (size_t)c->dim + widest + 2 * (size_t)r->qdim + 2 * (size_t)r->kvdim +
                                      2 * (size_t)c->ffn_dim + 1 + (size_t)c->vocab_size) + widest;
    size_t chunk = CHUNK_BYTES / per_tok;
    chunk = chunk > CHUNK_MAX ? CHUNK_MAX : chunk < CHUNK_MIN ? CHUNK_MIN : chunk;
    if (r->chunk > 0)
        chunk = (size_t)r->chunk;
    if (chunk > (size_t)r->max_len)
        chunk = (size_t)r->max_len;
    r->chunk = (int)chunk;
    const size_t CHUNK = chunk;
    r->kc = alloc_f(cells, &fail);
    r->vc = alloc_f(cells, &fail);
    r->x = alloc_f(CHUNK * (size_t)c->dim, &fail);
    r->xn = alloc_f(CHUNK * (size_t)c->dim, &fail);
    r->xd = alloc_f(CHUNK * widest, &fail);
    r->q = alloc_f(CHUNK * (size_t)r->qdim, &fail);
    r->kb = alloc_f(CHUNK * (size_t)r->kvdim, &fail);
    r->vb = alloc_f(CHUNK * (size_t)r->kvdim, &fail);
    r->att = alloc_f(CHUNK * (size_t)r->qdim, &fail);
    r->g = alloc_f(CHUNK * (size_t)c->ffn_dim, &fail);
    r->u = alloc_f(CHUNK * (size_t)c->ffn_dim, &fail);
    r->tmp = alloc_f(CHUNK * (size_t)c->dim, &fail);
    r->act_s = alloc_f(CHUNK, &fail);
    r->probs = alloc_f((size_t)r->n_threads * probs_stride(r), &fail); /* one per worker */
    r->cs = alloc_f((size_t)c->head_dim, &fail);
    r->logits = alloc_f(CHUNK * (size_t)c->vocab_size, &fail);
    r->xq = malloc(CHUNK * widest);
    r->hq = malloc(CHUNK * widest);
    r->hd = alloc_f(CHUNK * widest / 32 + 1, &fail);
    r->bxd = alloc_f(CHUNK * widest, &fail);
    if (fail || !r->xq || !r->hq)
        return tc_err(err, "%s: out of memory for the runner's buffers", path_of(r->m));
    return TC_OK;
}

int tc_trun_new(tc_trun **out, const tc_tmodel *m, const tc_trun_opts *opts, tc_error *err)
{
    tc_trun_opts def;
    memset(&def, 0, sizeof def);
    if (!opts)
        opts = &def;
    *out = NULL;
    const tc_config *c = &m->cfg;
    if (c->n_layers < 0 || c->dim <= 0 || c->vocab_size <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 || c->head_dim % 2)
        return tc_err(err, "%s: unsupported model shape (%d heads, %d kv heads, head_dim %d)",
                      path_of(m), c->n_heads, c->n_kv_heads, c->head_dim);
    tc_trun *r = calloc(1, sizeof *r);
    if (!r)
        return tc_err(err, "%s: out of memory for a runner", path_of(m));
    r->m = m;
    r->c = *c;
    tc_fm_rope_freqs_init(&r->freqs, c);
    r->mode = opts->mode;
    r->n_threads = opts->n_threads > 0 ? opts->n_threads : 1;
    r->max_len = opts->max_len > 0 ? opts->max_len : c->max_seq_len > 0 ? c->max_seq_len : 2048;
    r->chunk = opts->chunk > 0 ? (opts->chunk < (1 << 16) ? opts->chunk : 1 << 16) : 0;
    r->qdim = c->n_heads * c->head_dim;
    r->kvdim = c->n_kv_heads * c->head_dim;
    r->max_k = c->dim;
    r->layers = calloc(c->n_layers > 0 ? (size_t)c->n_layers : 1, sizeof *r->layers);
    r->work = tc_kwork_new();
    if (!r->layers || !r->work) {
        tc_err(err, "%s: out of memory for a runner", path_of(m));
        goto fail;
    }
    if (tc_kernels_init(&r->k, opts->kernel, err) ||
        tc_kpool_new(&r->pool, r->n_threads, err) || load_globals(r, err))
        goto fail;
    for (int l = 0; l < c->n_layers; l++)
        if (load_layer(r, l, err))
            goto fail;
    if (alloc_buffers(r, err))
        goto fail;
    *out = r;
    return TC_OK;
fail:
    tc_trun_free(r);
    return TC_ERR;
}

void tc_trun_free(tc_trun *r)
{
    if (!r)
        return;
    for (int l = 0; r->layers && l < r->c.n_layers; l++)
        for (int role = 0; role < TC_N_ROLES; role++) {
            free(r->layers[l].w[role].dense);
            free(r->layers[l].vec[role]);
        }
    free(r->layers);
    if (r->output != r->embd)
        free(r->output);
    free(r->embd);
    free(r->out_norm);
    float *bufs[] = {r->kc, r->vc,  r->x,  r->xn,  r->xd,    r->q,     r->kb,  r->vb,
                     r->att, r->g,  r->u,  r->tmp, r->act_s, r->probs, r->cs, r->logits, r->hd, r->bxd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(r->xq);
    free(r->hq);
    tc_kwork_free(r->work);
    tc_kpool_free(r->pool);
    free(r);
}

const tc_kernels *tc_trun_kernels(const tc_trun *r)
{
    return &r->k;
}

tc_kpool *tc_trun_pool(const tc_trun *r)
{
    return r->pool;
}

void tc_trun_reset(tc_trun *r)
{
    r->pos = 0;
}

int tc_trun_pos(const tc_trun *r)
{
    return r->pos;
}

/* ---- traces -------------------------------------------------------------- */

tc_trun_trace *tc_trun_trace_new(void)
{
    return calloc(1, sizeof(tc_trun_trace));
}

void tc_trun_trace_free(tc_trun_trace *t)
{
    if (!t)
        return;
    free(t->q);
    free(t->s);
    free(t);
}

void tc_trun_set_trace(tc_trun *r, tc_trun_trace *t, int replay)
{
    r->trace = t;
    r->replay = replay;
    if (t) {
        t->rq = 0;
        t->rs = 0;
    }
}

static int trace_put(tc_trun_trace *t, const int8_t *q, const float *s, size_t nq, size_t ns)
{
    if (t->nq + nq > t->capq) {
        size_t cap = (t->nq + nq) * 2;
        int8_t *p = realloc(t->q, cap);
        if (!p)
            return -1;
        t->q = p;
        t->capq = cap;
    }
    if (t->ns + ns > t->caps) {
        size_t cap = (t->ns + ns) * 2;
        float *p = realloc(t->s, cap * sizeof *p);
        if (!p)
            return -1;
        t->s = p;
        t->caps = cap;
    }
    memcpy(t->q + t->nq, q, nq);
    memcpy(t->s + t->ns, s, ns * sizeof *s);
    t->nq += nq;
    t->ns += ns;
    return 0;
}

static int trace_get(tc_trun_trace *t, int8_t *q, float *s, size_t nq, size_t ns)
{
    if (t->rq + nq > t->nq || t->rs + ns > t->ns)
        return -1;
    memcpy(q, t->q + t->rq, nq);
    memcpy(s, t->s + t->rs, ns * sizeof *s);
    t->rq += nq;
    t->rs += ns;
    return 0;
}

/* ---- one linear layer ---------------------------------------------------- */

/* One token's activations to int8: as the model's ternary linear kind
 * computes it (a ternary-trained checkpoint, forward_math.h), else tc's own
 * rule for the models it quantized (tc_tpack_quantize_act). */
static float quantize_act(const tc_trun *r, const float *x, int K, int8_t *q)
{
    if (tc_linear_is_ternary(&r->c))
        return (float)tc_fm_act_quant_i8(x, (size_t)K, r->c.t.linear, q);
    return tc_tpack_quantize_act(x, K, q);
}

/* Quantizes T rows of K activations to int8 per token (and, for REF, back to
 * fp32 as x_q / s): done once for every layer sharing the input. With a
 * trace, records them or takes them from it. */
static int quantize_rows(tc_trun *r, const float *in, int T, int K, tc_error *err)
{
    size_t nq = (size_t)T * (size_t)K;
    if (r->trace && r->replay) {
        if (trace_get(r->trace, r->xq, r->act_s, nq, (size_t)T))
            return tc_err(err, "%s: the activation trace ends before this run's calls",
                          path_of(r->m));
    } else {
        for (int t = 0; t < T; t++)
            r->act_s[t] = quantize_act(r, in + (size_t)t * (size_t)K, K, r->xq + (size_t)t * (size_t)K);
        if (r->trace && trace_put(r->trace, r->xq, r->act_s, nq, (size_t)T))
            return tc_err(err, "%s: out of memory for the activation trace", path_of(r->m));
    }
    r->bq_valid = 0;
    for (int t = 0; t < T; t++) {
        int8_t *xq = r->xq + (size_t)t * (size_t)K;
        if (r->mode == TC_TRUN_REF) {
            float inv = 1.0f / r->act_s[t];
            for (int k = 0; k < K; k++)
                r->xd[(size_t)t * (size_t)K + (size_t)k] = (float)xq[k] * inv;
        }
    }
    return TC_OK;
}

/* out[T][rows] = x[T][cols] W^T for a dense fp32 W[rows][cols], the rows
 * split over the pool's workers.  tc_fm_dense_rows gives every output the
 * same bits whatever T and the split, so the runner's batched logits equal
 * its one-token logits. */
typedef struct dense_job {
    const float *x, *W;
    float *out;
    int T, rows, cols;
} dense_job;

static void dense_part(void *arg, int worker, int n_workers)
{
    const dense_job *j = arg;
    /* whole blocks of 16 rows per worker */
    int blocks = (j->rows + 15) / 16;
    int r0 = blocks * worker / n_workers * 16, r1 = blocks * (worker + 1) / n_workers * 16;
    if (r1 > j->rows)
        r1 = j->rows;
    if (r0 < r1)
        tc_fm_dense_rows(j->x, j->T, j->W, j->cols, r0, r1, j->out, (size_t)j->rows);
}

static void dense_rows(tc_trun *r, int T, int rows, int cols, const float *x, const float *W, float *out)
{
    dense_job j = {x, W, out, T, rows, cols};
    tc_kpool_run(r->pool, dense_part, &j);
}

/* T rows of K activations quantized per 32 columns for block-type weights
 * (hq, hd), recorded in or taken from the trace as the per-token ones are:
 * once per input (quantize_rows clears bq_valid), however many of the
 * weights reading it are in a block type.  Q8_0 and Q4_0 share the 32-column
 * activation blocks.  REF also makes them fp32 again (bxd). */
static int quantize_blocks(tc_trun *r, const float *in, int T, int K, tc_error *err)
{
    if (r->bq_valid)
        return TC_OK;
    size_t nq = (size_t)T * (size_t)K, ns = nq / 32;
    if (r->trace && r->replay) {
        if (trace_get(r->trace, r->hq, r->hd, nq, ns))
            return tc_err(err, "%s: the activation trace ends before this run's calls", path_of(r->m));
    } else {
        tc_qmat_quantize_act(TC_Q8_0, in, T, K, r->hq, r->hd);
        if (r->trace && trace_put(r->trace, r->hq, r->hd, nq, ns))
            return tc_err(err, "%s: out of memory for the activation trace", path_of(r->m));
    }
    if (r->mode == TC_TRUN_REF)
        for (size_t i = 0; i < nq; i++)
            r->bxd[i] = (float)r->hq[i] * r->hd[i / 32];
    r->bq_valid = 1;
    return TC_OK;
}

/* out[T][rows] = layer(in[T][cols]); quantize_rows(in) must have run. */
static int apply(tc_trun *r, const lin *L, const float *in, int T, float *out, tc_error *err)
{
    if (L->qt != TC_F32) {
        if (quantize_blocks(r, in, T, L->cols, err))
            return TC_ERR;
        if (r->mode == TC_TRUN_REF) {
            dense_rows(r, T, L->rows, L->cols, r->bxd, L->dense, out);
            return TC_OK;
        }
        return tc_qmat_matmul(&r->k, r->pool, L->qt, L->data, L->nbytes, L->rows, L->cols, r->hq, r->hd, T, out,
                              err);
    }
    if (L->ternary && r->mode == TC_TRUN_LUT)
        return tc_kern_matmul(&r->k, r->pool, r->work, &L->plan, L->data, L->nbytes, r->xq,
                              r->act_s, T, out, err);
    const float *x = L->ternary ? r->xd : in;
    dense_rows(r, T, L->rows, L->cols, x, L->dense, out);
    return TC_OK;
}

/* Layers that read the same input: one pass of the kernels' pool for all
 * where they are ternary with one layout and grouping, else one by one. */
static int apply_set(tc_trun *r, const lin *const *Ls, float *const *outs, int n,
                     const float *in, int T, tc_error *err)
{
    int together = r->mode == TC_TRUN_LUT;
    tc_kmat mats[3]; /* n <= 3: q, k, v */
    for (int i = 0; i < n; i++) {
        together = together && Ls[i]->ternary && tc_kern_same_input(&Ls[i]->plan, &Ls[0]->plan);
        mats[i] = (tc_kmat){&Ls[i]->plan, Ls[i]->data, Ls[i]->nbytes, outs[i]};
    }
    if (together)
        return tc_kern_matmul_set(&r->k, r->pool, r->work, mats, n, r->xq, r->act_s, T, err);
    for (int i = 0; i < n; i++)
        if (apply(r, Ls[i], in, T, outs[i], err))
            return TC_ERR;
    return TC_OK;
}

static void add_bias(float *y, const float *b, int T, int n)
{
    if (b)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < n; i++)
                y[(size_t)t * (size_t)n + (size_t)i] += b[i];
}

static void add_rows(float *x, const float *d, int T, int n)
{
    for (size_t i = 0; i < (size_t)T * (size_t)n; i++)
        x[i] += d[i];
}

static void norm_rows(const tc_trun *r, const float *x, const float *w, float *out, int T);

/* x += sub-layer output d (+ bias, then its post-norm where the model has
 * them); d is clobbered. */
static void residual(tc_trun *r, float *d, const float *bias, const float *post_norm, int T)
{
    add_bias(d, bias, T, r->c.dim);
    if (r->c.t.post_norms)
        norm_rows(r, d, post_norm, d, T);
    add_rows(r->x, d, T, r->c.dim);
}

/* ---- layers -------------------------------------------------------------- */

static void norm_rows(const tc_trun *r, const float *x, const float *w, float *out, int T)
{
    for (int t = 0; t < T; t++)
        tc_fm_norm(x + (size_t)t * (size_t)r->c.dim, w, out + (size_t)t * (size_t)r->c.dim, r->c.dim,
                   r->c.norm_eps, r->c.t.norm);
}

/* The sub-norm (bitnet) of T rows of n, in place, where the model has them. */
static void sub_norm_rows(const tc_trun *r, float *x, const float *w, int T, int n)
{
    if (r->c.t.sub_norms)
        for (int t = 0; t < T; t++)
            tc_fm_norm(x + (size_t)t * (size_t)n, w, x + (size_t)t * (size_t)n, n, r->c.norm_eps, r->c.t.norm);
}

/* The heads of T tokens, (token, head) pairs split over the pool's workers
 * (each its own scores): one hand-over of the pool per layer.  Token t sees
 * the keys up to its own position only, so it gets the same sums whether
 * the tokens after it are in the cache yet or not. */
typedef struct attend_job {
    tc_trun *r;
    const float *kl, *vl;
    int layer, T;
    double lambda; /* differential attention: the layer's lambda */
} attend_job;

/* Differential attention (DiffLlama): each token's pairs of softmax maps at
 * once, as the decoder computes them (tc_fm_attend_diff), tokens split over
 * the workers. */
static void attend_diff(const attend_job *j, int worker, int n_workers)
{
    tc_trun *r = j->r;
    size_t ml = (size_t)r->max_len;
    float *probs = r->probs + (size_t)worker * probs_stride(r);
    for (int t = j->T * worker / n_workers; t < j->T * (worker + 1) / n_workers; t++)
        tc_fm_attend_diff(r->q + (size_t)t * (size_t)r->qdim, j->kl, j->vl, ml, &r->c, j->layer, j->lambda,
                          (size_t)(r->pos + t) + 1, probs, probs + 2 * ml, r->att + (size_t)t * (size_t)r->qdim);
}

static void attend_heads(void *arg, int worker, int n_workers)
{
    const attend_job *j = arg;
    if (j->r->c.t.diff_attn) {
        attend_diff(j, worker, n_workers);
        return;
    }
    tc_trun *r = j->r;
    const tc_config *c = &r->c;
    size_t ml = (size_t)r->max_len, items = (size_t)j->T * (size_t)c->n_heads;
    size_t i0 = items * (size_t)worker / (size_t)n_workers, i1 = items * (size_t)(worker + 1) / (size_t)n_workers;
    for (size_t i = i0; i < i1;) {
        int t = (int)(i / (size_t)c->n_heads), h0 = (int)(i % (size_t)c->n_heads);
        size_t end = ((size_t)t + 1) * (size_t)c->n_heads;
        int h1 = (int)((end < i1 ? end : i1) - (size_t)t * (size_t)c->n_heads);
        tc_fm_attend_heads(r->q + (size_t)t * (size_t)r->qdim, j->kl, j->vl, ml, c, j->layer, h0, h1,
                           (size_t)(r->pos + t) + 1, r->probs + (size_t)worker * probs_stride(r),
                           r->att + (size_t)t * (size_t)r->qdim);
        i = (size_t)t * (size_t)c->n_heads + (size_t)h1;
    }
}

static void attend_rows(tc_trun *r, int l, int T)
{
    const tc_config *c = &r->c;
    int hd = c->head_dim;
    size_t ml = (size_t)r->max_len;
    size_t layer_off = (size_t)l * ml * (size_t)r->kvdim;
    float *kl = r->kc + layer_off, *vl = r->vc + layer_off;
    const float *qn = r->layers[l].vec[TC_Q_NORM], *kn = r->layers[l].vec[TC_K_NORM];
    for (int t = 0; t < T; t++) {
        int p = r->pos + t;
        float *q = r->q + (size_t)t * (size_t)r->qdim;
        float *k = r->kb + (size_t)t * (size_t)r->kvdim;
        if (c->t.qk_norm) {
            tc_fm_head_norm(q, qn, c->n_heads, hd, c->norm_eps, c->t.norm);
            tc_fm_head_norm(k, kn, c->n_kv_heads, hd, c->norm_eps, c->t.norm);
        }
        int rot = tc_layer_rope(c, l)->rot_dims;
        tc_fm_rope_at(&r->freqs, c, l, (size_t)p, r->cs);
        tc_fm_rope(q, c->n_heads, hd, rot, c->rope_layout, r->cs);
        tc_fm_rope(k, c->n_kv_heads, hd, rot, c->rope_layout, r->cs);
        tc_fm_cache_key(kl, ml, k, r->kvdim, (size_t)p);
        memcpy(vl + (size_t)p * (size_t)r->kvdim, r->vb + (size_t)t * (size_t)r->kvdim,
               (size_t)r->kvdim * sizeof(float));
    }
    const tlayer *L = &r->layers[l];
    double lambda = c->t.diff_attn ? tc_fm_diff_lambda(L->vec[TC_LAMBDA_Q1], L->vec[TC_LAMBDA_K1], L->vec[TC_LAMBDA_Q2],
                                                       L->vec[TC_LAMBDA_K2], hd, l)
                                   : 0.0;
    attend_job j = {r, kl, vl, l, T, lambda};
    tc_kpool_run(r->pool, attend_heads, &j);
}

static int attention(tc_trun *r, int l, int T, tc_error *err)
{
    const tlayer *L = &r->layers[l];
    norm_rows(r, r->x, L->vec[TC_ATTN_NORM], r->xn, T);
    if (quantize_rows(r, r->xn, T, r->c.dim, err))
        return TC_ERR;
    const lin *qkv[3] = {&L->w[TC_WQ], &L->w[TC_WK], &L->w[TC_WV]};
    float *const qkv_out[3] = {r->q, r->kb, r->vb};
    if (apply_set(r, qkv, qkv_out, 3, r->xn, T, err))
        return TC_ERR;
    add_bias(r->q, L->vec[TC_BQ], T, r->qdim);
    add_bias(r->kb, L->vec[TC_BK], T, r->kvdim);
    add_bias(r->vb, L->vec[TC_BV], T, r->kvdim);
    attend_rows(r, l, T);
    sub_norm_rows(r, r->att, L->vec[TC_ATTN_SUB_NORM], T, r->qdim);
    if (quantize_rows(r, r->att, T, r->qdim, err))
        return TC_ERR;
    if (apply(r, &L->w[TC_WO], r->att, T, r->tmp, err))
        return TC_ERR;
    residual(r, r->tmp, L->vec[TC_BO], L->vec[TC_POST_ATTN_NORM], T);
    return TC_OK;
}

static int mlp(tc_trun *r, int l, int T, tc_error *err)
{
    const tlayer *L = &r->layers[l];
    int F = r->c.ffn_dim;
    norm_rows(r, r->x, L->vec[TC_FFN_NORM], r->xn, T);
    if (quantize_rows(r, r->xn, T, r->c.dim, err))
        return TC_ERR;
    const tc_traits *tr = &r->c.t;
    size_t n = (size_t)T * (size_t)F;
    if (tr->ungated) {
        if (apply(r, &L->w[TC_W_UP], r->xn, T, r->g, err))
            return TC_ERR;
        add_bias(r->g, L->vec[TC_B_UP], T, F);
        tc_fm_act(r->g, NULL, n, tr->act);
    } else {
        const lin *gate_up[2] = {&L->w[TC_W_GATE], &L->w[TC_W_UP]};
        float *const gate_up_out[2] = {r->g, r->u};
        if (apply_set(r, gate_up, gate_up_out, 2, r->xn, T, err))
            return TC_ERR;
        add_bias(r->g, L->vec[TC_B_GATE], T, F);
        add_bias(r->u, L->vec[TC_B_UP], T, F);
        tc_fm_act(r->g, r->u, n, tr->act);
    }
    sub_norm_rows(r, r->g, L->vec[TC_FFN_SUB_NORM], T, F);
    if (quantize_rows(r, r->g, T, F, err))
        return TC_ERR;
    if (apply(r, &L->w[TC_W_DOWN], r->g, T, r->tmp, err))
        return TC_ERR;
    residual(r, r->tmp, L->vec[TC_B_DOWN], L->vec[TC_POST_FFN_NORM], T);
    return TC_OK;
}

/* Token tok's embedding row into x. */
static int embed(const tc_trun *r, int32_t tok, float *x, tc_error *err)
{
    size_t dim = (size_t)r->c.dim;
    if (!r->embd_q) {
        memcpy(x, r->embd + (size_t)tok * dim, dim * sizeof(float));
        return TC_OK;
    }
    const tc_tmodel_tensor *e = r->embd_q;
    uint64_t rb = tc_qmat_row_bytes(e->dtype, (int64_t)dim);
    if (tc_convert_to_f32(e->dtype, e->data + (uint64_t)tok * rb, dim, x, err))
        return tc_err_prefix(err, "%s: tensor 'token_embd'", path_of(r->m));
    return TC_OK;
}

/* The logits of n normed rows (r->xn) into out.  A head in a block type
 * multiplies the rows quantized per block to int8 (recorded in and replayed
 * from a trace as the linear layers' are); the REF mode multiplies the
 * dequantized head by the dequantized activations through BLAS. */
static int head(tc_trun *r, int n, float *out, tc_error *err)
{
    const tc_config *c = &r->c;
    if (!r->out_q) {
        dense_rows(r, n, c->vocab_size, c->dim, r->xn, r->output, out);
        return TC_OK;
    }
    tc_dtype t = r->out_q->dtype;
    int64_t B = tc_qmat_block(t);
    size_t nq = (size_t)n * (size_t)c->dim, ns = nq / (size_t)B;
    if (r->trace && r->replay) {
        if (trace_get(r->trace, r->hq, r->hd, nq, ns))
            return tc_err(err, "%s: the activation trace ends before this run's calls", path_of(r->m));
    } else {
        tc_qmat_quantize_act(t, r->xn, n, c->dim, r->hq, r->hd);
        if (r->trace && trace_put(r->trace, r->hq, r->hd, nq, ns))
            return tc_err(err, "%s: out of memory for the activation trace", path_of(r->m));
    }
    if (r->mode == TC_TRUN_LUT)
        return tc_qmat_matmul(&r->k, r->pool, t, r->out_q->data, r->out_q->nbytes, c->vocab_size, c->dim,
                              r->hq, r->hd, n, out, err)
                   ? tc_err_prefix(err, "%s: the output head", path_of(r->m))
                   : TC_OK;
    for (size_t i = 0; i < nq; i++)
        r->xn[i] = (float)r->hq[i] * r->hd[i / (size_t)B];
    dense_rows(r, n, c->vocab_size, c->dim, r->xn, r->output, out);
    return TC_OK;
}

/* Runs T <= r->chunk tokens; logits of rows first..T-1 go to out. */
static int run_chunk(tc_trun *r, const int32_t *tokens, int T, int first, float *out,
                     tc_error *err)
{
    const tc_config *c = &r->c;
    if (r->pos + T > r->max_len)
        return tc_err(err, "%s: the runner holds %d positions and %d more do not fit",
                      path_of(r->m), r->max_len, T);
    for (int t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return tc_err(err, "%s: token %d is outside the vocabulary of %d", path_of(r->m),
                          (int)tokens[t], c->vocab_size);
        float *x = r->x + (size_t)t * (size_t)c->dim;
        if (embed(r, tokens[t], x, err))
            return TC_ERR;
        if (c->t.embed_scale != 0.0f)
            for (int i = 0; i < c->dim; i++)
                x[i] *= c->t.embed_scale;
    }
    for (int l = 0; l < c->n_layers; l++) {
        if (r->layers[l].has_attn && attention(r, l, T, err))
            return TC_ERR;
        if (r->layers[l].has_mlp && mlp(r, l, T, err))
            return TC_ERR;
    }
    r->pos += T;
    if (out && first < T) {
        int n = T - first;
        norm_rows(r, r->x + (size_t)first * (size_t)c->dim, r->out_norm, r->xn, n);
        if (head(r, n, out, err))
            return TC_ERR;
        if (c->t.final_softcap > 0.0f)
            tc_fm_softcap(out, (size_t)n * (size_t)c->vocab_size, c->t.final_softcap);
    }
    return TC_OK;
}

int tc_trun_feed(tc_trun *r, const int32_t *tokens, size_t n, float *logits, int all,
                 tc_error *err)
{
    size_t V = (size_t)r->c.vocab_size;
    size_t C = (size_t)r->chunk;
    for (size_t i = 0; i < n; i += C) {
        int T = n - i < C ? (int)(n - i) : (int)C;
        int last = i + (size_t)T == n;
        float *out = NULL;
        int first = T;
        if (logits && all) {
            out = logits + i * V;
            first = 0;
        } else if (logits && last) {
            out = logits;
            first = T - 1;
        }
        if (run_chunk(r, tokens + i, T, first, out, err))
            return TC_ERR;
    }
    return TC_OK;
}

int tc_trun_step(tc_trun *r, int32_t token, float *logits, tc_error *err)
{
    return tc_trun_feed(r, &token, 1, logits, 0, err);
}

int tc_trun_batch(tc_trun *r, const tc_batch *b, tc_trun_logits_fn cb, void *ctx, tc_error *err)
{
    int V = r->c.vocab_size;
    for (size_t s = 0; s < b->n_seqs; s++) {
        size_t a = b->offsets[s], e = b->offsets[s + 1];
        if (e < a || e - a > (size_t)r->max_len)
            return tc_err(err, "%s: sequence %zu has %zu tokens, more than the runner's %d",
                          path_of(r->m), s, e - a, r->max_len);
        tc_trun_reset(r);
        for (size_t i = a; i < e; i += (size_t)r->chunk) {
            size_t n = e - i < (size_t)r->chunk ? e - i : (size_t)r->chunk;
            if (tc_trun_feed(r, b->tokens + i, n, r->logits, 1, err) ||
                (cb && cb(ctx, r->logits, i, n, V, err)))
                return TC_ERR;
        }
    }
    return TC_OK;
}

int tc_trun_perplexity(tc_trun *r, const tc_batch *b, void (*progress)(void *ctx, double fraction),
                       void *progress_ctx, tc_ppl *out, tc_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = b->n_seqs ? b->offsets[b->n_seqs] : 0;
    double nll = 0;
    uint64_t pred = 0;
    /* One sequence at a time, so that the progress moves with the work. */
    for (size_t s = 0; s < b->n_seqs; s++) {
        size_t offs[2] = {0, b->offsets[s + 1] - b->offsets[s]};
        tc_batch one = {b->tokens + b->offsets[s], offs, 1};
        tc_nll_observer acc;
        tc_observer ob = tc_nll_observer_make(&acc, &one);
        if (tc_trun_batch(r, &one, ob.logits, ob.ctx, err))
            return TC_ERR;
        nll += acc.nll_sum;
        pred += acc.n_predicted;
        if (progress && n)
            progress(progress_ctx, (double)b->offsets[s + 1] / (double)n);
    }
    out->n_tokens = n;
    out->n_predicted = pred;
    out->nll = pred ? nll / (double)pred : NAN;
    out->ppl = pred ? exp(out->nll) : NAN;
    return TC_OK;
}

int tc_trun_generate(tc_trun *r, const int32_t *prompt, size_t n_prompt, size_t max_new,
                     const tc_generate_opts *opts, int32_t *out, size_t *n_out, tc_error *err)
{
    tc_generate_opts def = {0.0f, 0, -1};
    if (!opts)
        opts = &def;
    *n_out = 0;
    if (n_prompt == 0)
        return tc_err(err, "%s: generation needs at least one prompt token", path_of(r->m));
    if (n_prompt + (max_new ? max_new - 1 : 0) > (size_t)r->max_len)
        return tc_err(err, "%s: %zu prompt and %zu new tokens exceed the runner's %d positions",
                      path_of(r->m), n_prompt, max_new, r->max_len);
    tc_rng rng;
    tc_rng_seed(&rng, opts->seed);
    tc_trun_reset(r);
    if (tc_trun_feed(r, prompt, n_prompt, r->logits, 0, err))
        return TC_ERR;
    for (size_t i = 0; i < max_new; i++) {
        int32_t tok = tc_sample(r->logits, r->c.vocab_size, opts->temperature, &rng);
        out[(*n_out)++] = tok;
        if (tok == opts->stop_token || i + 1 == max_new)
            break;
        if (tc_trun_step(r, tok, r->logits, err))
            return TC_ERR;
    }
    return TC_OK;
}
