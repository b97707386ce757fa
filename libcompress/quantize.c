/* The model quantizer: one layer at a time, from the source model to a packed
 * ternary file or a ternary GGUF, with per-tensor reports and a verification
 * pass over the written file. */
#define _DEFAULT_SOURCE /* madvise */
#include "tc/quantize.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "model_internal.h"
#include "tc/checked.h"
#include "tc/ggml_quants.h"
#include "tc/ggml_ternary.h"
#include "tc/gguf.h"
#include "tc/model_tokenizer.h"
#include "tc/model_write.h"
#include "tc/outfile.h"
#include "tc/tokenizer.h"
#include "tc/mixed.h"
#include "tc/qmat.h"

static const int linear_roles[] = {TC_WQ, TC_WK, TC_WV, TC_WO, TC_W_GATE, TC_W_UP, TC_W_DOWN};
#define N_LINEAR 7

const char *tc_qformat_name(tc_qformat f)
{
    return f == TC_QFORMAT_GGUF_TQ1 ? "gguf-tq1" : f == TC_QFORMAT_GGUF_TQ2 ? "gguf-tq2" : "packed";
}

const char *tc_qpart_name(tc_qpart p)
{
    static const char *const names[TC_QPART_COUNT] = {"ternary", "fallback", "embeddings", "norms"};
    return p >= 0 && p < TC_QPART_COUNT ? names[p] : "?";
}

static int is_linear(int role)
{
    for (int i = 0; i < N_LINEAR; i++)
        if (linear_roles[i] == role)
            return 1;
    return 0;
}

static tc_lin_input input_of(int role)
{
    switch (role) {
    case TC_WQ: case TC_WK: case TC_WV: return TC_IN_QKV;
    case TC_WO: return TC_IN_WO;
    case TC_W_GATE: case TC_W_UP: return TC_IN_GATE_UP;
    default: return TC_IN_DOWN;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uLong crc_more(uLong c, const void *p, uint64_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return c;
}

static uint32_t crc_bytes(const void *p, uint64_t n)
{
    return (uint32_t)crc_more(crc32(0L, Z_NULL, 0), p, n);
}

/* The block scales of row m of a K-column matrix stored as rows of Kp >= K
 * columns (zero codes beyond K): d[Kp/block]. */
static void block_scales_row(const int8_t *codes, const float *scales, int64_t K, int64_t Kp, int64_t m,
                             const tc_tgroup *g, int64_t block, float *d)
{
    for (int64_t b = 0; b < Kp / block; b++) {
        double sum = 0;
        int64_t nz = 0, k0 = b * block, k1 = k0 + block < K ? k0 + block : K;
        for (int64_t k = k0; k < k1; k++)
            if (codes[m * K + k]) {
                sum += scales[tc_ternary_scale_index(g, K, m, k)];
                nz++;
            }
        /* An all-zero block decodes to zeros whatever d is: keep its group's scale (0 past the row). */
        d[b] = nz ? (float)(sum / (double)nz) : k0 < K ? scales[tc_ternary_scale_index(g, K, m, k0)] : 0.0f;
    }
}

void tc_quantize_block_scales(const int8_t *codes, const float *scales, int64_t M, int64_t K,
                              const tc_tgroup *g, int64_t block, float *d)
{
    for (int64_t m = 0; m < M; m++)
        block_scales_row(codes, scales, K, K, m, g, block, d + m * (K / block));
}

/* ---- Driver state ------------------------------------------------------- */

typedef struct fingerprint {
    uint32_t codes, scales, offsets;
} fingerprint;

/* One role's buffers, kept from layer to layer: every layer has the same
 * shapes, so after the first one nothing is allocated and no fresh page is
 * touched (a first touch costs more than the quantizer's own work here). */
typedef struct slot {
    float *w;
    int8_t *codes;
    float *scales;
    float *offsets; /* affine methods */
    uint8_t *packed;
    size_t w_cap, codes_cap, scales_cap, offsets_cap, packed_cap;
} slot;

/* p with room for need bytes: p itself when it has it, else a new block (p
 * freed, contents not kept); NULL when out of memory. */
static void *grow(void *p, size_t *cap, uint64_t need)
{
    if (p && *cap >= need)
        return p;
    free(p);
    p = need <= SIZE_MAX ? malloc(need ? (size_t)need : 1) : NULL;
    *cap = p ? (size_t)need : 0;
    return p;
}

typedef struct qdrv {
    const tc_model *m;
    const tc_quantize_opts *o;
    tc_dtype fdt;
    tc_dtype tq;        /* TC_TQ1_0 / TC_TQ2_0 for GGUF, else TC_F32 (unused) */
    tc_dtype fb;        /* GGUF: the fallback type, TC_DTYPE_COUNT for packed output */
    tc_dtype edt;       /* packed: the embedding and head's type (fdt, or a tc/qmat.h block type) */
    tc_config out;      /* the model as written: GGUF may pad the FFN width (ffn_padding) */
    int gguf;
    tc_quantize_report rep;
    fingerprint *fp;    /* per report tensor */
    double w2, e2;      /* sums of ||W||^2 and ||W - W_hat||^2 */
    double oe_sum;
    int oe_n;
    uint64_t zeros, tern_params;
    /* The layer in hand: w, codes and scales point into the slots. */
    int cur;
    tc_layer_f32 w;
    int8_t *codes[TC_N_ROLES];
    float *scales[TC_N_ROLES];
    float *offsets[TC_N_ROLES]; /* affine methods, else NULL */
    slot slots[TC_N_ROLES];
    tc_tgroup group;
    /* Calibration: the windows [q0, q1) of o->calib are this rank's (all of
     * them in a job of one); x and y hold their tokens, from offsets[q0]. */
    size_t n_tok;
    int writer;          /* rank 0 (or a job of one): quantizes, measures and writes */
    size_t q0, q1, tok0, own_tok;
    size_t cur_row;      /* the first row of the window in the pass at hand, in x and y */
    float *x, *y;
    /* The linear inputs of this rank's windows in the layer at hand, in
     * window order: folded into H and the samples window by window. */
    float *xin[TC_N_LIN_INPUTS];
    size_t xin_n[TC_N_LIN_INPUTS], xin_cap[TC_N_LIN_INPUTS];
    double *H[TC_N_LIN_INPUTS];
    float *smp[TC_N_LIN_INPUTS];
    size_t smp_n[TC_N_LIN_INPUTS], smp_cap;
    int in_cols[TC_N_LIN_INPUTS];
    int collect_h, collect_smp, observe_layer;
    tc_layer_f32 *wl;  /* n_layers, all empty except the layer run */
    tc_skip *skip;
    /* The affine calibrated methods (quantize_layer_stages): the original
     * model's hidden state beside the quantized one, and whole linear inputs
     * captured on both. */
    float *xf, *yf;
    float *cap[TC_N_LIN_INPUTS], *capf[TC_N_LIN_INPUTS];
    float **cap_to;     /* where obs_input copies the inputs in cap_mask */
    float *hf, *hq;     /* the hidden state after attention, original and quantized */
    float *h_to;        /* where obs_hidden copies it (NULL: nowhere) */
    unsigned cap_mask;
    float *deq[TC_N_ROLES]; /* the quantized weights in fp32 */
    size_t deq_cap[TC_N_ROLES];
    /* Packed output. */
    tc_tmodel tm;
} qdrv;

static int report_index(const qdrv *d, int layer, int role)
{
    for (size_t i = 0; i < d->rep.n_tensors; i++)
        if (d->rep.tensors[i].layer == layer && d->rep.tensors[i].role == role)
            return (int)i;
    return -1;
}

/* The block type a linear weight of the blocks is stored in (mixed
 * precision, tc/mixed.h), TC_F32 where it is ternary. */
static tc_dtype linear_type(const qdrv *d, int layer, int role)
{
    return tc_mixed_linear_type(d->o->linear_types, d->m->cfg.n_layers, layer, role);
}

/* ---- Running one layer over the calibration tokens ---------------------- */

static int obs_input(void *ctx, int layer, tc_lin_input which, const float *x, size_t tok0,
                     size_t n, int cols, tc_error *err)
{
    qdrv *d = ctx;
    if (layer != d->observe_layer)
        return TC_OK;
    d->in_cols[which] = cols;
    /* Whole inputs for the affine calibrated stages, at this window's rows. */
    if (d->cap_mask & (1u << which)) {
        if (!d->cap_to[which] &&
            !(d->cap_to[which] = malloc((d->own_tok ? d->own_tok : 1) * (size_t)cols * sizeof(float))))
            return tc_err(err, "out of memory for the activations of a %d-wide input", cols);
        memcpy(d->cap_to[which] + (d->cur_row + tok0) * (size_t)cols, x, n * (size_t)cols * sizeof(float));
    }
    if (!d->collect_h && !d->collect_smp)
        return TC_OK;
    /* Kept, to be folded into X^T X and the samples in window order
     * (fold_inputs): one window's rows per pass. */
    size_t need = (d->xin_n[which] + n) * (size_t)cols;
    if (need > d->xin_cap[which]) {
        size_t cap = need > 2 * d->xin_cap[which] ? need : 2 * d->xin_cap[which];
        float *p = realloc(d->xin[which], cap * sizeof *p);
        if (!p)
            return tc_err(err, "out of memory for the activations of a %d-wide input", cols);
        d->xin[which] = p;
        d->xin_cap[which] = cap;
    }
    memcpy(d->xin[which] + d->xin_n[which] * (size_t)cols, x, n * (size_t)cols * sizeof(float));
    d->xin_n[which] += n;
    return TC_OK;
}

static int obs_hidden(void *ctx, int layer, tc_point at, const float *x, size_t n, int dim, tc_error *err)
{
    (void)err;
    qdrv *d = ctx;
    if (layer == d->observe_layer && at == TC_AT_MLP_OUT)
        memcpy(d->y + d->cur_row * (size_t)dim, x, n * (size_t)dim * sizeof(float));
    if (layer == d->observe_layer && at == TC_AT_ATTN_OUT && d->h_to)
        memcpy(d->h_to + d->cur_row * (size_t)dim, x, n * (size_t)dim * sizeof(float));
    return TC_OK;
}

/* d->y = layer l applied to d->x with weights w (every other layer skipped). */
static int run_layer(qdrv *d, int l, const tc_layer_f32 *w, int collect, tc_error *err)
{
    const tc_model *m = d->m;
    for (int i = 0; i < m->cfg.n_layers; i++)
        d->skip[i].attn = d->skip[i].mlp = (uint8_t)(i != l);
    d->wl[l] = *w;
    tc_weights wts = {.n_layers = m->cfg.n_layers, .layers = d->wl};
    tc_observer ob = {.ctx = d, .hidden = obs_hidden, .linear_input = collect ? obs_input : NULL};
    tc_forward_opts fo = {.n_threads = d->o->n_threads, .skip = d->skip, .observers = &ob,
                          .n_observers = 1, .weights = &wts, .no_logits = 1};
    d->observe_layer = l;
    /* Each window a pass of its own: a window's rows then do not depend on
     * its neighbours (BLAS rounds products of other heights differently), so
     * the statistics are the same bits however the windows are spread over
     * ranks. */
    const tc_batch *b = d->o->calib;
    int rc = TC_OK;
    for (size_t s = d->q0; rc == TC_OK && s < d->q1; s++) {
        size_t offs[2] = {0, b->offsets[s + 1] - b->offsets[s]};
        tc_batch one = {b->tokens + b->offsets[s], offs, 1};
        d->cur_row = b->offsets[s] - d->tok0;
        rc = tc_forward_from(m, &one, l, d->x + d->cur_row * (size_t)m->cfg.dim, &fo, err);
    }
    memset(&d->wl[l], 0, sizeof d->wl[l]);
    return rc;
}

/* One linear input's statistics as they travel over the ranks: X^T X (when
 * collected), then the count of sample rows and the rows. */
typedef struct fold_job {
    qdrv *d;
    int which, cols;
    size_t h_bytes;
} fold_job;

static int fold_rows(void *ctx, void *buf, tc_error *err)
{
    fold_job *f = ctx;
    qdrv *d = f->d;
    const tc_batch *b = d->o->calib;
    unsigned char *p = buf;
    double *H = (double *)(void *)p, *smp_n = (double *)(void *)(p + f->h_bytes);
    float *smp = (float *)(void *)(p + f->h_bytes + sizeof(double));
    const float *x = d->xin[f->which];
    size_t have = (size_t)*smp_n, row = 0;
    for (size_t s = d->q0; s < d->q1; s++) {
        size_t n = b->offsets[s + 1] - b->offsets[s];
        if (row + n > d->xin_n[f->which])
            return tc_err(err, "internal: a window's activations are missing");
        const float *xs = x + row * (size_t)f->cols;
        if (f->h_bytes && tc_ternary_hessian_add(xs, (int64_t)n, f->cols, H, err))
            return TC_ERR;
        size_t k = d->smp_cap - have < n ? d->smp_cap - have : n;
        memcpy(smp + have * (size_t)f->cols, xs, k * (size_t)f->cols * sizeof(float));
        have += k;
        row += n;
    }
    *smp_n = (double)have;
    return TC_OK;
}

/* H and the samples of every linear input of the layer just run: each
 * window's rows added in window order, over the ranks in turn. */
static int fold_inputs(qdrv *d, int rc, tc_error *err)
{
    for (int which = 0; which < TC_N_LIN_INPUTS; which++) {
        /* A rank without windows saw no input: the widest is the width. */
        int cols = tc_dist_max_int(d->o->dist, rc ? -1 : d->in_cols[which]);
        if (cols < 0)
            rc = TC_ERR;
        if (cols <= 0 && !rc)
            continue;
        fold_job f = {d, which, cols, d->collect_h ? (size_t)cols * (size_t)cols * sizeof(double) : 0};
        size_t bytes = rc ? 0 : f.h_bytes + sizeof(double) + d->smp_cap * (size_t)cols * sizeof(float);
        unsigned char *buf = rc ? NULL : calloc(1, bytes);
        if (!rc && !buf)
            rc = tc_err(err, "out of memory for the statistics of a %d-wide input", cols);
        rc = tc_dist_chain(d->o->dist, rc, buf, bytes, fold_rows, &f, err);
        if (rc == TC_OK) {
            d->smp_n[which] = (size_t)*(double *)(void *)(buf + f.h_bytes);
            d->smp[which] = malloc(d->smp_cap * (size_t)cols * sizeof(float) + 1);
            if (d->collect_h)
                d->H[which] = malloc(f.h_bytes);
            if (!d->smp[which] || (d->collect_h && !d->H[which])) {
                rc = tc_err(err, "out of memory for the statistics of a %d-wide input", cols);
            } else {
                memcpy(d->smp[which], buf + f.h_bytes + sizeof(double), d->smp_n[which] * (size_t)cols * sizeof(float));
                if (d->collect_h)
                    memcpy(d->H[which], buf, f.h_bytes);
            }
        }
        free(buf);
        free(d->xin[which]);
        d->xin[which] = NULL;
        d->xin_n[which] = d->xin_cap[which] = 0;
        if (rc)
            return TC_ERR;
    }
    return rc;
}

static void reset_stats(qdrv *d)
{
    for (int i = 0; i < TC_N_LIN_INPUTS; i++) {
        free(d->H[i]);
        free(d->smp[i]);
        free(d->xin[i]);
        d->H[i] = NULL;
        d->smp[i] = NULL;
        d->xin[i] = NULL;
        d->smp_n[i] = d->xin_n[i] = d->xin_cap[i] = 0;
        d->in_cols[i] = 0;
    }
}

/* ---- Quantizing one matrix ----------------------------------------------- */

static int quantize_matrix(qdrv *d, const float *W, int64_t M, int64_t K, tc_tmethod method,
                           const double *H, int8_t *codes, float *scales, float *offsets, tc_error *err)
{
    if (method == TC_TMETHOD_AFFINE || (tc_tmethod_affine(method) && !H))
        return tc_ternary_affine(W, M, K, &d->group, codes, scales, offsets, err);
    if (tc_tmethod_affine(method)) {
        tc_ternary_affine_calib_opts ao = {.damp_frac = d->o->q.damp_frac, .act_order = d->o->q.act_order,
                                           .refit = d->o->q.refit};
        return tc_ternary_affine_calibrated(W, M, K, &d->group, H, &ao, codes, scales, offsets, err);
    }
    if (method == TC_TMETHOD_ABSMEAN)
        return tc_ternary_absmean(W, M, K, &d->group, codes, scales, err);
    if (method == TC_TMETHOD_OPTIMAL || !H)
        return tc_ternary_optimal(W, M, K, &d->group, codes, scales, err);
    tc_ternary_calib_opts co = {.damp_frac = d->o->q.damp_frac};
    return tc_ternary_calibrated(W, M, K, &d->group, H, &co, codes, scales, err);
}

/* Enters a measured matrix into the report and the totals (calling thread);
 * X (N rows) may be NULL. */
static int account_matrix(qdrv *d, int ri, const tc_ternary_report *tr, const float *W, const int8_t *codes,
                          const float *scales, const float *offsets, int64_t M, int64_t K, const float *X,
                          size_t N, double seconds, tc_error *err)
{
    tc_qtensor_report *r = &d->rep.tensors[ri];
    double t0 = now_s();
    r->ternary = 1;
    r->zero_share = tr->zero_share;
    r->rel_weight_error = tr->rel_weight_error;
    r->rel_output_error = -1;
    if (X && N > 0) {
        if (tc_ternary_output_error_affine(W, codes, scales, offsets, M, K, &d->group, X, (int64_t)N,
                                           &r->rel_output_error, err))
            return TC_ERR;
        d->oe_sum += r->rel_output_error;
        d->oe_n++;
    }
    d->w2 += tr->weight_sq;
    d->e2 += tr->error_sq;
    d->zeros += tr->zeros;
    d->tern_params += (uint64_t)(M * K);
    r->seconds = seconds + (now_s() - t0);
    return TC_OK;
}

/* ---- One layer ---------------------------------------------------------- */

/* Forgets the layer in hand; its buffers stay in the slots for the next. */
static void release_layer(qdrv *d)
{
    for (int r = 0; r < TC_N_ROLES; r++) {
        d->codes[r] = NULL;
        d->scales[r] = NULL;
        d->offsets[r] = NULL;
        d->w.w[r] = NULL;
    }
}

static void free_slots(qdrv *d)
{
    release_layer(d);
    for (int r = 0; r < TC_N_ROLES; r++) {
        slot *s = &d->slots[r];
        free(s->w);
        free(s->codes);
        free(s->scales);
        free(s->offsets);
        free(s->packed);
        memset(s, 0, sizeof *s);
    }
}

/* GGUF: the type that holds the ternary codes of rows of K weights: with
 * offsets (the affine methods) Q4_1 where they are whole 32-blocks; else TQ1_0 /
 * TQ2_0 where they are whole 256-blocks, else Q4_0 where they are whole
 * 32-blocks (exact, and the smallest ggml type of 32-blocks that is: Q8_0
 * would hold the same values in 8.5 bits per weight rather than 4.5);
 * TC_DTYPE_COUNT when no ggml block fits them. */
static tc_dtype ternary_dtype(const qdrv *d, int64_t K)
{
    static const tc_dtype small = TC_Q4_0, with_offsets = TC_Q4_1;
    /* Offsets: Q4_1 is the one ggml type of whole codes with a minimum per
     * block (TQ1_0 / TQ2_0 have a scale alone). */
    if (tc_tmethod_affine(d->o->q.method))
        return K > 0 && K % tc_ggml_ternary_block_elems(with_offsets) == 0 ? with_offsets : TC_DTYPE_COUNT;
    if (K > 0 && K % tc_ggml_ternary_block_elems(d->tq) == 0)
        return d->tq;
    if (K > 0 && K % tc_ggml_ternary_block_elems(small) == 0)
        return small;
    return TC_DTYPE_COUNT;
}

static int role_ternary(const qdrv *d, int64_t K)
{
    return !d->gguf || ternary_dtype(d, K) != TC_DTYPE_COUNT;
}

/* The shape a tensor is written in (GGUF may pad the FFN width); layer -1: a global. */
static int stored_shape(const qdrv *d, int layer, int which, int64_t shape[2])
{
    return tc_tmodel_expected_shape(&d->out, layer, which, shape);
}

static int64_t stored_cols(const qdrv *d, const tc_qtensor_report *r)
{
    int64_t shape[2];
    stored_shape(d, r->layer, r->role, shape);
    return shape[1];
}

/* The calibration stream moves on: through the quantized layer (sequential)
 * or the original one. */
static int advance_stream(qdrv *d, int l, tc_error *err)
{
    if (d->o->q.sequential && tc_tmethod_calibrated(d->o->q.method)) {
        tc_layer_f32 q = d->w;
        float *own[TC_N_ROLES] = {0};
        int rc = TC_OK;
        for (int r = 0; r < TC_N_ROLES && rc == TC_OK; r++) {
            tc_dtype bt = linear_type(d, l, r);
            if (!d->codes[r] && (bt == TC_F32 || !d->w.w[r]))
                continue;
            const tc_tensor *t = d->m->layers[l].w[r];
            int64_t M = t->shape[0], K = t->shape[1];
            if (!(own[r] = malloc((size_t)(M * K) * sizeof(float))))
                rc = tc_err(err, "out of memory");
            else if (bt != TC_F32)
                rc = tc_qmat_round(bt, d->w.w[r], M, K, own[r], err);
            else
                tc_ternary_dequantize_affine(d->codes[r], d->scales[r], d->offsets[r], M, K, &d->group, own[r]);
            q.w[r] = own[r];
        }
        if (rc == TC_OK)
            rc = run_layer(d, l, &q, 0, err);
        for (int r = 0; r < TC_N_ROLES; r++)
            free(own[r]);
        if (rc)
            return TC_ERR;
    }
    float *t = d->x;
    d->x = d->y;
    d->y = t;
    return TC_OK;
}

/* The tensors of a layer are independent: each one's load, quantization,
 * measurement and packing is one job, and the jobs run on worker threads
 * (calibrated quantization spends its time in OpenBLAS, which has its own
 * threads, so those run in turn).  A job touches only its own slot, report
 * entry and fingerprint. */
typedef struct qjob {
    qdrv *d;
    int role, ri;               /* ri < 0: a tensor that is only loaded */
    int64_t M, K;
    const tc_tensor *src;
    const double *H;
    const tc_tpack_plan *plan;  /* packed format: pack after quantizing */
    int load, quant;            /* what this run of the job does */
    int stream;                 /* all of it, 32 rows at a time (job_stream) */
    tc_ternary_report tr;
    double t_load, t_quant, t_measure, t_pack;
    int rc;
    tc_error err;
} qjob;

typedef struct qpool {
    qjob *jobs;
    const int *order;
    int n, next;
    pthread_mutex_t mu;
} qpool;

/* An already ternary source's linear (tc_linear_is_ternary): its codes and
 * its scale as the packed layout multiplies by it (1 / w_s, so that
 * y = scale * sum / s_x is BitLinear's sum / (w_s s_x)), taken as the model
 * view gives them, and the weights they stand for (code * scale) for the
 * report.  Nothing is requantized. */
static int job_load_ternary(qjob *j)
{
    qdrv *d = j->d;
    slot *s = &d->slots[j->role];
    uint64_t n = (uint64_t)(j->M * j->K);
    float w_s = 0.0f;
    int divides = 1;
    if (!(s->w = grow(s->w, &s->w_cap, n * sizeof(float))) || !(s->codes = grow(s->codes, &s->codes_cap, n)) ||
        !(s->scales = grow(s->scales, &s->scales_cap, sizeof(float))))
        return tc_err(&j->err, "out of memory for a %lld x %lld weight", (long long)j->M, (long long)j->K);
    if (tc_model_ternary_role_as(d->m, d->cur, (tc_role)j->role, s->codes, &w_s, &divides, &j->err))
        return TC_ERR;
    s->scales[0] = divides ? 1.0f / w_s : w_s; /* a GGUF's multiplier exactly */
    for (uint64_t i = 0; i < n; i++)
        s->w[i] = (float)s->codes[i] * s->scales[0];
    d->w.w[j->role] = s->w;
    d->codes[j->role] = s->codes;
    d->scales[j->role] = s->scales;
    return TC_OK;
}

static int job_load(qjob *j)
{
    qdrv *d = j->d;
    slot *s = &d->slots[j->role];
    uint64_t bytes;
    if (j->ri >= 0 && tc_linear_is_ternary(&d->m->cfg))
        return job_load_ternary(j);
    if (tc_mul_u64(j->src->n_elements, sizeof(float), &bytes) ||
        !(s->w = grow(s->w, &s->w_cap, bytes)))
        return tc_err(&j->err, "%s: tensor '%s': out of memory for its fp32 values", j->src->file,
                      j->src->name);
    if (tc_tensor_to_f32(j->src, s->w, &j->err))
        return TC_ERR;
    d->w.w[j->role] = s->w;
    return TC_OK;
}

static int job_quantize(qjob *j)
{
    qdrv *d = j->d;
    slot *s = &d->slots[j->role];
    int64_t ns;
    double t0 = now_s();
    if (tc_ternary_scale_count(&d->group, j->M, j->K, &ns, &j->err))
        return TC_ERR;
    int aff = tc_tmethod_affine(d->o->q.method);
    if (!(s->codes = grow(s->codes, &s->codes_cap, (uint64_t)(j->M * j->K))) ||
        !(s->scales = grow(s->scales, &s->scales_cap, (uint64_t)ns * sizeof(float))) ||
        (aff && !(s->offsets = grow(s->offsets, &s->offsets_cap, (uint64_t)ns * sizeof(float)))))
        return tc_err(&j->err, "out of memory for a %lld x %lld weight", (long long)j->M, (long long)j->K);
    const float *W = d->w.w[j->role];
    float *off = aff ? s->offsets : NULL;
    if (d->o->q.method != TC_TMETHOD_SOURCE &&
        quantize_matrix(d, W, j->M, j->K, d->o->q.method, j->H, s->codes, s->scales, off, &j->err))
        return TC_ERR;
    d->codes[j->role] = s->codes;
    d->scales[j->role] = s->scales;
    d->offsets[j->role] = off;
    double t1 = now_s();
    memset(&j->tr, 0, sizeof j->tr);
    tc_ternary_report_add_affine(W, s->codes, s->scales, off, j->M, j->K, &d->group, &j->tr);
    tc_ternary_report_finish(&j->tr, j->M, j->K);
    /* Fingerprints only serve verification (GGUF takes its own while encoding). */
    int fp = d->o->verify && j->plan;
    if (fp)
        d->fp[j->ri].codes = crc_bytes(s->codes, (uint64_t)(j->M * j->K));
    double t2 = now_s();
    j->t_quant += t1 - t0;
    j->t_measure += t2 - t1;
    if (!j->plan)
        return TC_OK;
    if (!(s->packed = grow(s->packed, &s->packed_cap, j->plan->total_bytes)))
        return tc_err(&j->err, "out of memory for a packed %lld x %lld weight", (long long)j->M,
                      (long long)j->K);
    if (tc_tpack_pack_affine(j->plan, s->codes, s->scales, off, s->packed, &j->err))
        return TC_ERR;
    if (fp) {
        d->fp[j->ri].scales = crc_bytes(s->scales, (uint64_t)j->plan->n_scales * sizeof(float));
        d->fp[j->ri].offsets = off ? crc_bytes(off, (uint64_t)j->plan->n_scales * sizeof(float)) : 0;
    }
    j->t_pack += now_s() - t2;
    return TC_OK;
}

/* Drops the whole pages of [p, p+n) of a mapped source from the process, as
 * tc_tensor_to_f32 does: resident memory stays at one layer. */
static void drop_pages(const uint8_t *p, uint64_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || n < (uint64_t)page)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + (uintptr_t)n) & ~((uintptr_t)page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Whether a job that loads and quantizes in one go (no calibration: with it
 * the layer is loaded, run, then quantized) may run as a stream of row
 * blocks: nothing after it needs the matrix's fp32 values or codes (packed
 * output), every scale group lies within a row, and rows of the source start
 * on whole blocks of its dtype. */
static int job_streams(const qjob *j)
{
    const qdrv *d = j->d;
    uint64_t be = tc_dtype_block_elems(j->src->dtype);
    return j->ri >= 0 && j->plan && d->group.kind != TC_TGROUP_TENSOR &&
           !tc_tmethod_calibrated(d->o->q.method) && be > 0 && (uint64_t)j->K % be == 0;
}

/* Load, quantize, measure and pack 32 rows at a time (one row block of the
 * packed layout): the fp32 rows and their codes stay in cache between the
 * steps, and no fp32 copy of the matrix is ever made.  Produces exactly the
 * bytes, scales and report of the whole-matrix steps. */
static int job_stream(qjob *j)
{
    qdrv *d = j->d;
    slot *s = &d->slots[j->role];
    const tc_tensor *t = j->src;
    const tc_tpack_plan *p = j->plan;
    const tc_tgroup *g = &d->group;
    int64_t M = j->M, K = j->K, gpr = tc_ternary_groups_per_row(g, K), ns;
    uint64_t row_bytes = (uint64_t)K / tc_dtype_block_elems(t->dtype) * tc_dtype_block_bytes(t->dtype);
    if (tc_ternary_scale_count(g, M, K, &ns, &j->err))
        return TC_ERR;
    int aff = tc_tmethod_affine(d->o->q.method);
    if (!(s->w = grow(s->w, &s->w_cap, (uint64_t)(TC_TPACK_TILE_ROWS * K) * sizeof(float))) ||
        !(s->codes = grow(s->codes, &s->codes_cap, (uint64_t)(TC_TPACK_TILE_ROWS * K))) ||
        !(s->scales = grow(s->scales, &s->scales_cap, (uint64_t)ns * sizeof(float))) ||
        (aff && !(s->offsets = grow(s->offsets, &s->offsets_cap, (uint64_t)ns * sizeof(float)))) ||
        !(s->packed = grow(s->packed, &s->packed_cap, p->total_bytes)))
        return tc_err(&j->err, "out of memory for a %lld x %lld weight", (long long)M, (long long)K);
    int fp = d->o->verify;
    uLong crc = crc32(0L, Z_NULL, 0);
    memset(&j->tr, 0, sizeof j->tr);
    for (int64_t m0 = 0; m0 < M; m0 += TC_TPACK_TILE_ROWS) {
        int64_t rows = M - m0 < TC_TPACK_TILE_ROWS ? M - m0 : TC_TPACK_TILE_ROWS;
        float *sc = s->scales + m0 * gpr, *of = aff ? s->offsets + m0 * gpr : NULL;
        double t0 = now_s();
        if (tc_convert_to_f32(t->dtype, t->data + (uint64_t)m0 * row_bytes, (uint64_t)(rows * K), s->w, &j->err))
            return tc_err_prefix(&j->err, "%s: tensor '%s'", t->file, t->name);
        double t1 = now_s();
        int rc = aff ? tc_ternary_affine(s->w, rows, K, g, s->codes, sc, of, &j->err)
                 : d->o->q.method == TC_TMETHOD_ABSMEAN ? tc_ternary_absmean(s->w, rows, K, g, s->codes, sc, &j->err)
                                                        : tc_ternary_optimal(s->w, rows, K, g, s->codes, sc, &j->err);
        if (rc)
            return TC_ERR;
        double t2 = now_s();
        tc_ternary_report_add_affine(s->w, s->codes, sc, of, rows, K, g, &j->tr);
        if (fp)
            crc = crc_more(crc, s->codes, (uint64_t)(rows * K));
        double t3 = now_s();
        if (tc_tpack_pack_block(p, m0 / TC_TPACK_TILE_ROWS, s->codes, s->packed, &j->err))
            return TC_ERR;
        j->t_load += t1 - t0;
        j->t_quant += t2 - t1;
        j->t_measure += t3 - t2;
        j->t_pack += now_s() - t3;
    }
    if (t->mapped)
        drop_pages(t->data, t->nbytes);
    tc_ternary_report_finish(&j->tr, M, K);
    tc_tpack_put_affine(p, s->scales, aff ? s->offsets : NULL, s->packed);
    if (fp) {
        d->fp[j->ri].codes = (uint32_t)crc;
        d->fp[j->ri].scales = crc_bytes(s->scales, (uint64_t)p->n_scales * sizeof(float));
        d->fp[j->ri].offsets = aff ? crc_bytes(s->offsets, (uint64_t)p->n_scales * sizeof(float)) : 0;
    }
    return TC_OK;
}

static void run_job(qjob *j)
{
    if (j->stream) {
        j->rc = job_stream(j);
        return;
    }
    double t0 = now_s();
    if (j->load) {
        j->rc = job_load(j);
        j->t_load += now_s() - t0;
    }
    if (j->rc == TC_OK && j->quant)
        j->rc = job_quantize(j);
}

static void *pool_worker(void *arg)
{
    qpool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->next < p->n ? p->order[p->next++] : -1;
        pthread_mutex_unlock(&p->mu);
        if (i < 0)
            return NULL;
        run_job(&p->jobs[i]);
    }
}

static void run_jobs(qjob *jobs, const int *order, int n, int threads)
{
    if (threads > n)
        threads = n;
    if (threads <= 1) {
        for (int i = 0; i < n; i++)
            run_job(&jobs[order[i]]);
        return;
    }
    qpool p = {.jobs = jobs, .order = order, .n = n};
    pthread_mutex_init(&p.mu, NULL);
    pthread_t th[TC_N_ROLES];
    int started = 0;
    for (int i = 0; i < threads - 1; i++)
        if (pthread_create(&th[started], NULL, pool_worker, &p) == 0)
            started++;
    pool_worker(&p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.mu);
}

/* The jobs of layer l, biggest first so that the last job to start is a
 * small one (the threads finish together). */
static int layer_jobs(qdrv *d, int l, int calib, qjob *jobs, int *order)
{
    int n = 0;
    for (int r = 0; r < TC_N_ROLES; r++) {
        const tc_tensor *t = d->m->layers[l].w[r];
        if (!t)
            continue;
        qjob *j = &jobs[n];
        *j = (qjob){.d = d, .role = r, .ri = -1, .src = t};
        int64_t sh[2];
        stored_shape(d, l, r, sh);
        if (is_linear(r) && t->n_dims == 2 && role_ternary(d, sh[1]) && linear_type(d, l, r) == TC_F32 &&
            (j->ri = report_index(d, l, r)) >= 0) {
            int64_t shape[2]; /* as the config has it: a packed source stores four rows to a byte */
            tc_role_shape(&d->m->cfg, (tc_role)r, shape);
            j->M = shape[0];
            j->K = shape[1];
            j->H = calib ? d->H[input_of(r)] : NULL;
            const tc_tmodel_tensor *pt = d->gguf ? NULL : tc_tmodel_find(&d->tm, l, r);
            j->plan = pt && pt->ternary ? &pt->plan : NULL;
        }
        order[n] = n;
        n++;
    }
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && jobs[order[k]].src->n_elements > jobs[order[k - 1]].src->n_elements; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    return n;
}

/* Runs the given phase of every job; the first failure (in role order) wins. */
static int run_phase(qdrv *d, int l, qjob *jobs, const int *order, int n, int load, int quant, int threads,
                     tc_error *err)
{
    for (int i = 0; i < n; i++) {
        jobs[i].load = load;
        jobs[i].quant = quant && jobs[i].ri >= 0;
        jobs[i].stream = load && quant && job_streams(&jobs[i]);
    }
    run_jobs(jobs, order, n, threads);
    for (int i = 0; i < n; i++) {
        qjob *j = &jobs[i];
        if (j->rc == TC_OK)
            continue;
        *err = j->err;
        if (j->load && !j->stream && !d->w.w[j->role])
            return TC_ERR; /* the reader's message names the file and tensor */
        return tc_err_prefix(err, "%s: layer %d %s", d->m->path, l, tc_role_name((tc_role)j->role));
    }
    return TC_OK;
}

/* ---- The affine calibrated methods: stage by stage within a block ---------
 *
 * The weights of a block are quantized in the order the block reads them:
 * q, k and v; o; gate and up; down.  Each stage's inputs are taken by
 * running the block on the quantized model's hidden state with the stages
 * before it already quantized (Xq), and beside them the original model's
 * inputs on its own hidden state (Xf).  Each weight W is replaced by the
 * weights whose output on Xq best matches the original's output Xf W^T
 * (tc_ternary_target_weights), which is then quantized in the norm of H =
 * Xq^T Xq: the quantization error of everything before a weight, in this
 * block and the earlier ones, is corrected where that weight can correct
 * it. */

/* A stage whose output is added to the residual stream also makes up what
 * that stream lost: o the block's input, down the state after attention. */
typedef enum { RESID_NONE, RESID_BLOCK_IN, RESID_ATTN_OUT } resid_at;

typedef struct qstage {
    tc_lin_input in;
    int roles[3], n;
    resid_at resid;
} qstage;

static const qstage STAGES[] = {{TC_IN_QKV, {TC_WQ, TC_WK, TC_WV}, 3, RESID_NONE},
                                {TC_IN_WO, {TC_WO}, 1, RESID_BLOCK_IN},
                                {TC_IN_GATE_UP, {TC_W_GATE, TC_W_UP}, 2, RESID_NONE},
                                {TC_IN_DOWN, {TC_W_DOWN}, 1, RESID_ATTN_OUT}};

static void free_captures(qdrv *d)
{
    for (int i = 0; i < TC_N_LIN_INPUTS; i++) {
        free(d->cap[i]);
        free(d->capf[i]);
        d->cap[i] = d->capf[i] = NULL;
    }
}

/* Runs layer l with weights w on the hidden state x (d->x or d->xf), copying
 * the inputs in mask to `to`; the output goes to d->y. */
static int run_capture(qdrv *d, int l, const tc_layer_f32 *w, float *x, unsigned mask, float **to, int smp,
                       tc_error *err)
{
    float *keep = d->x;
    d->x = x;
    d->cap_mask = mask;
    d->cap_to = to;
    d->collect_h = 0;
    d->collect_smp = smp;
    int rc = run_layer(d, l, w, mask != 0 || smp, err);
    d->x = keep;
    d->cap_mask = 0;
    return rc;
}

/* Quantizes role r of layer l from its target weights; packs it and enters
 * it in the report.  H and D are the stage's statistics. */
static int stage_matrix(qdrv *d, int l, const qjob *j, const double *H, const double *D, const double *G,
                        tc_error *err)
{
    slot *s = &d->slots[j->role];
    int64_t M = j->M, K = j->K, ns;
    double t0 = now_s();
    if (tc_ternary_scale_count(&d->group, M, K, &ns, err))
        return TC_ERR;
    uint64_t nw = (uint64_t)(M * K);
    float *Wt = malloc((size_t)nw * sizeof *Wt);
    if (!Wt || !(s->codes = grow(s->codes, &s->codes_cap, nw)) ||
        !(s->scales = grow(s->scales, &s->scales_cap, (uint64_t)ns * sizeof(float))) ||
        !(s->offsets = grow(s->offsets, &s->offsets_cap, (uint64_t)ns * sizeof(float))) ||
        !(d->deq[j->role] = grow(d->deq[j->role], &d->deq_cap[j->role], nw * sizeof(float)))) {
        free(Wt);
        return tc_err(err, "out of memory for a %lld x %lld weight", (long long)M, (long long)K);
    }
    const float *W = d->w.w[j->role];
    int rc = tc_ternary_target_weights(W, M, K, H, D, G, d->o->q.damp_frac, Wt, err);
    if (rc == TC_OK)
        rc = quantize_matrix(d, Wt, M, K, d->o->q.method, H, s->codes, s->scales, s->offsets, err);
    free(Wt);
    if (rc)
        return TC_ERR;
    d->codes[j->role] = s->codes;
    d->scales[j->role] = s->scales;
    d->offsets[j->role] = s->offsets;
    tc_ternary_dequantize_affine(s->codes, s->scales, s->offsets, M, K, &d->group, d->deq[j->role]);
    double t1 = now_s();
    tc_ternary_report tr;
    memset(&tr, 0, sizeof tr);
    tc_ternary_report_add_affine(W, s->codes, s->scales, s->offsets, M, K, &d->group, &tr);
    tc_ternary_report_finish(&tr, M, K);
    if (j->plan) {
        if (!(s->packed = grow(s->packed, &s->packed_cap, j->plan->total_bytes)))
            return tc_err(err, "out of memory for a packed %lld x %lld weight", (long long)M, (long long)K);
        if (tc_tpack_pack_affine(j->plan, s->codes, s->scales, s->offsets, s->packed, err))
            return TC_ERR;
        if (d->o->verify) {
            d->fp[j->ri].codes = crc_bytes(s->codes, nw);
            d->fp[j->ri].scales = crc_bytes(s->scales, (uint64_t)ns * sizeof(float));
            d->fp[j->ri].offsets = crc_bytes(s->offsets, (uint64_t)ns * sizeof(float));
        }
    }
    double t2 = now_s();
    d->rep.times.quantize += t1 - t0;
    d->rep.times.pack += t2 - t1;
    tc_lin_input in = input_of(j->role);
    if (!d->writer) /* its codes serve this rank's next stages only */
        return TC_OK;
    return account_matrix(d, j->ri, &tr, W, s->codes, s->scales, s->offsets, M, K, d->smp[in], d->smp_n[in],
                          t2 - t0, err);
}

/* One stage's statistics as they travel over the ranks, in one buffer: H =
 * Xq^T Xq and D = Xq^T (Xf - Xq) (K x K each), then G = (Rf - Rq)^T Xq (dim x
 * K) for a stage whose output joins the residual stream.  Each rank adds its
 * windows' rows one window at a time, in window order, as a job of one adds
 * them all: the sums are the same bits for any number of ranks. */
typedef struct stage_fold {
    qdrv *d;
    const qstage *sg;
    int K;
} stage_fold;

static int fold_stage(void *ctx, void *buf, tc_error *err)
{
    const stage_fold *f = ctx;
    const qdrv *d = f->d;
    const tc_batch *b = d->o->calib;
    size_t dim = (size_t)d->m->cfg.dim, K = (size_t)f->K;
    double *H = buf, *D = H + K * K, *G = D + K * K;
    const float *xq = d->cap[f->sg->in], *xf = d->capf[f->sg->in];
    const float *rf = f->sg->resid == RESID_BLOCK_IN ? d->xf : d->hf;
    const float *rq = f->sg->resid == RESID_BLOCK_IN ? d->x : d->hq;
    for (size_t s = d->q0; s < d->q1; s++) {
        size_t row = b->offsets[s] - d->tok0;
        int64_t n = (int64_t)(b->offsets[s + 1] - b->offsets[s]);
        if (tc_ternary_hessian_add(xq + row * K, n, f->K, H, err) ||
            tc_ternary_cross_add(xq + row * K, xf + row * K, n, f->K, D, err) ||
            (f->sg->resid != RESID_NONE &&
             tc_ternary_residual_add(rf + row * dim, rq + row * dim, xq + row * K, n, (int64_t)dim, f->K, G, err)))
            return TC_ERR;
    }
    return TC_OK;
}

/* Every rank runs the stages on its own windows and quantizes every weight
 * itself from the statistics folded over all of them (the same bits on every
 * rank), since its next stage's inputs run through those weights; rank 0
 * alone packs and reports.  A step that fails on one rank fails every rank
 * at the next exchange. */
static int quantize_layer_stages(qdrv *d, int l, qjob *jobs, int n, tc_error *err)
{
    const tc_model *m = d->m;
    tc_dist *dist = d->o->dist;
    size_t dim = (size_t)m->cfg.dim, own = d->own_tok;
    double t0 = now_s();
    reset_stats(d);
    free_captures(d);
    /* The original block on the original hidden state: its inputs, and the
     * next original hidden state; the samples for the report in window order. */
    d->h_to = d->hf;
    int rc0 = run_capture(d, l, &d->w, d->xf, (1u << TC_N_LIN_INPUTS) - 1, d->capf, 1, err);
    d->h_to = NULL;
    if (fold_inputs(d, rc0, err))
        return TC_ERR;
    memcpy(d->yf, d->y, own * dim * sizeof(float));
    d->rep.times.calib += now_s() - t0;
    tc_layer_f32 q = d->w;
    /* Weights stored in a block type (mixed precision) are the rounded ones
     * in the quantized block: the ternary stages after them see their error. */
    for (int r = 0; r < TC_N_ROLES; r++) {
        tc_dtype bt = linear_type(d, l, r);
        const tc_tensor *t = m->layers[l].w[r];
        if (bt == TC_F32 || !t || !d->w.w[r])
            continue;
        int64_t M = t->shape[0], K = t->shape[1];
        if (!(d->deq[r] = grow(d->deq[r], &d->deq_cap[r], (uint64_t)(M * K) * sizeof(float))))
            return tc_err(err, "out of memory for a %lld x %lld weight", (long long)M, (long long)K);
        if (tc_qmat_round(bt, d->w.w[r], M, K, d->deq[r], err))
            return tc_err_prefix(err, "%s: layer %d %s", m->path, l, tc_role_name((tc_role)r));
        q.w[r] = d->deq[r];
    }
    for (size_t st = 0; st < sizeof STAGES / sizeof STAGES[0]; st++) {
        const qstage *sg = &STAGES[st];
        const qjob *js[3];
        int nj = 0;
        for (int k = 0; k < sg->n; k++)
            for (int i = 0; i < n; i++)
                if (jobs[i].role == sg->roles[k] && jobs[i].ri >= 0)
                    js[nj++] = &jobs[i];
        if (nj == 0)
            continue;
        double t1 = now_s();
        d->h_to = sg->resid == RESID_ATTN_OUT ? d->hq : NULL;
        int rc = run_capture(d, l, &q, d->x, 1u << sg->in, d->cap, 0, err);
        d->h_to = NULL;
        /* A rank without windows saw no input: the widest is the width. */
        int K = tc_dist_max_int(dist, rc ? -1 : d->in_cols[sg->in]);
        if (rc == TC_OK && K <= 0)
            rc = tc_err(err, "%s: layer %d: the input of %s was not seen", m->path, l,
                        tc_role_name((tc_role)sg->roles[0]));
        if (rc == TC_OK && d->q1 > d->q0 && (!d->capf[sg->in] || !d->cap[sg->in] || d->in_cols[sg->in] != K))
            rc = tc_err(err, "%s: layer %d: the original's %d-wide input was not seen", m->path, l, K);
        size_t kk = K > 0 ? (size_t)K * (size_t)K : 0;
        size_t bytes = (2 * kk + (sg->resid != RESID_NONE ? dim * (size_t)(K > 0 ? K : 0) : 0)) * sizeof(double);
        double *buf = rc ? NULL : calloc(1, bytes);
        if (rc == TC_OK && !buf)
            rc = tc_err(err, "out of memory for the statistics of a %d-wide input", K);
        stage_fold f = {d, sg, K};
        rc = tc_dist_chain(dist, rc, buf, rc ? 0 : bytes, fold_stage, &f, err);
        d->rep.times.calib += now_s() - t1;
        const double *H = buf, *D = buf ? buf + kk : NULL, *G = buf && sg->resid != RESID_NONE ? buf + 2 * kk : NULL;
        for (int i = 0; rc == TC_OK && i < nj; i++) {
            rc = stage_matrix(d, l, js[i], H, D, G, err);
            if (rc)
                tc_err_prefix(err, "%s: layer %d %s", m->path, l, tc_role_name((tc_role)js[i]->role));
            q.w[js[i]->role] = d->deq[js[i]->role];
        }
        free(buf);
        if (tc_dist_agree(dist, rc, err, NULL))
            return TC_ERR;
    }
    /* The quantized block on the quantized hidden state: the next one. */
    double t2 = now_s();
    if (tc_dist_agree(dist, run_capture(d, l, &q, d->x, 0, NULL, 0, err), err, NULL))
        return TC_ERR;
    float *t = d->x;
    d->x = d->y;
    d->y = t;
    t = d->xf;
    d->xf = d->yf;
    d->yf = t;
    free_captures(d);
    reset_stats(d);
    d->rep.times.calib += now_s() - t2;
    return TC_OK;
}

static int quantize_layer(qdrv *d, int l, tc_error *err)
{
    release_layer(d);
    d->cur = l;
    int calib = d->o->calib && d->n_tok > 0;
    qjob jobs[TC_N_ROLES];
    int order[TC_N_ROLES];
    int n = layer_jobs(d, l, calib, jobs, order);
    int threads = d->o->n_threads > 0 ? d->o->n_threads : 1;
    int stages = calib && (d->o->q.method == TC_TMETHOD_AFFINE_CALIBRATED ||
                           d->o->q.method == TC_TMETHOD_AFFINE_BLOCK);
    if (stages) {
        if (run_phase(d, l, jobs, order, n, 1, 0, threads, err) || quantize_layer_stages(d, l, jobs, n, err))
            return TC_ERR;
        for (int i = 0; i < n; i++)
            d->rep.times.load += jobs[i].t_load;
        if (d->o->progress)
            d->o->progress(d->o->progress_ctx, (double)(l + 1) / d->m->cfg.n_layers);
        return TC_OK;
    }
    if (calib) {
        if (run_phase(d, l, jobs, order, n, 1, 0, threads, err))
            return TC_ERR;
        double t0 = now_s();
        reset_stats(d);
        d->collect_h = tc_tmethod_calibrated(d->o->q.method);
        d->collect_smp = 1;
        if (fold_inputs(d, run_layer(d, l, &d->w, 1, err), err))
            return TC_ERR;
        for (int i = 0; i < n; i++)
            if (jobs[i].ri >= 0)
                jobs[i].H = d->H[input_of(jobs[i].role)];
        d->rep.times.calib += now_s() - t0;
        /* A rank that does not write needs the codes only to move a
         * sequential stream through the quantized layer. */
        if (!d->writer && !(d->o->q.sequential && tc_tmethod_calibrated(d->o->q.method))) {
            reset_stats(d);
            return advance_stream(d, l, err);
        }
        if (run_phase(d, l, jobs, order, n, 0, 1, tc_tmethod_calibrated(d->o->q.method) ? 1 : threads,
                      err))
            return TC_ERR;
    } else if (run_phase(d, l, jobs, order, n, 1, 1, threads, err)) {
        return TC_ERR;
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        qjob *j = &jobs[i];
        d->rep.times.load += j->t_load;
        d->rep.times.quantize += j->t_quant;
        d->rep.times.measure += j->t_measure;
        d->rep.times.pack += j->t_pack;
        if (j->ri < 0)
            continue;
        tc_lin_input in = input_of(j->role);
        if (account_matrix(d, j->ri, &j->tr, d->w.w[j->role], d->codes[j->role], d->scales[j->role],
                           d->offsets[j->role], j->M, j->K, calib ? d->smp[in] : NULL, calib ? d->smp_n[in] : 0,
                           j->t_quant + j->t_measure + j->t_pack, err))
            return tc_err_prefix(err, "%s: layer %d %s", d->m->path, l, tc_role_name((tc_role)j->role));
    }
    if (calib) {
        reset_stats(d);
        if (advance_stream(d, l, err))
            return TC_ERR;
        d->rep.times.calib += now_s() - t0;
    }
    if (d->o->progress)
        d->o->progress(d->o->progress_ctx, (double)(l + 1) / d->m->cfg.n_layers);
    return TC_OK;
}

/* Layers are produced in order; a layer without tensors still moves the
 * calibration stream. */
static int ensure_layer(qdrv *d, int l, tc_error *err)
{
    while (d->cur < l)
        if (quantize_layer(d, d->cur + 1, err))
            return TC_ERR;
    return TC_OK;
}

/* ---- Setup and teardown ------------------------------------------------- */

static int add_report(qdrv *d, int layer, int role, int64_t M, int64_t K)
{
    tc_qtensor_report *r = &d->rep.tensors[d->rep.n_tensors++];
    memset(r, 0, sizeof *r);
    r->layer = layer;
    r->role = role;
    r->rows = M;
    r->cols = K;
    r->rel_output_error = -1;
    tc_tmodel_tensor t = {.layer = layer, .role = role};
    tc_tmodel_tensor_name(&t, r->name, sizeof r->name);
    return TC_OK;
}

/* Whether every value of t survives F16 exactly (converted a chunk at a time). */
static int f16_holds(const tc_tensor *t)
{
    enum { CHUNK = 1 << 16 };
    uint64_t be = tc_dtype_block_elems(t->dtype), bb = tc_dtype_block_bytes(t->dtype);
    float *a = malloc(CHUNK * sizeof *a), *b = malloc(CHUNK * sizeof *b);
    uint16_t *h = malloc(CHUNK * sizeof *h);
    int ok = a && b && h && be == 1;
    for (uint64_t i = 0; ok && i < t->n_elements; i += CHUNK) {
        uint64_t k = t->n_elements - i < CHUNK ? t->n_elements - i : CHUNK;
        ok = tc_convert_to_f32(t->dtype, t->data + i * bb, k, a, NULL) == TC_OK &&
             tc_convert_from_f32(TC_F16, a, k, h, NULL) == TC_OK && tc_convert_to_f32(TC_F16, h, k, b, NULL) == TC_OK &&
             memcmp(a, b, (size_t)k * sizeof *a) == 0;
    }
    free(a);
    free(b);
    free(h);
    return ok;
}

static int drv_init(qdrv *d, const tc_model *m, const tc_quantize_opts *o, tc_error *err)
{
    memset(d, 0, sizeof *d);
    d->m = m;
    d->o = o;
    d->cur = -1;
    d->group = o->q.group;
    d->fdt = o->float_dtype == TC_F32 ? TC_F32 : TC_F16;
    d->gguf = o->format != TC_QFORMAT_PACKED;
    d->tq = o->format == TC_QFORMAT_GGUF_TQ1 ? TC_TQ1_0 : TC_TQ2_0;
    d->out = m->cfg;
    const tc_config *c = &m->cfg;
    if (tc_tmethod_calibrated(o->q.method) && (!o->calib || tc_batch_tokens(o->calib) == 0))
        return tc_err(err, "%s: the %s method needs calibration data", m->path, tc_tmethod_name(o->q.method));
    if (o->q.method == TC_TMETHOD_AFFINE_BLOCK)
        return tc_err(err, "%s: the affine-block method (block-wise reconstruction) is not implemented; "
                      "affine-calibrated is the nearest", m->path);
    /* GGUF holds one scale and one offset per 32-block: the groups must be whole blocks. */
    if (d->gguf && tc_tmethod_affine(o->q.method) && o->q.group.kind == TC_TGROUP_COLS && o->q.group.cols % 32)
        return tc_err(err, "%s: the %s method's groups of %d columns fit no ggml block (Q4_1 holds an offset "
                      "per 32 columns): use --group row or a multiple of 32", m->path, tc_tmethod_name(o->q.method),
                      o->q.group.cols);
    if (d->gguf && o->quantize_embeddings)
        return tc_err(err, "%s: ternary embeddings are only available in the packed format", m->path);
    /* An already ternary source is converted, not quantized: its codes and
     * scales (one per tensor) go into the tiles as they are. */
    int ternary_src = tc_linear_is_ternary(c);
    if (ternary_src != (o->q.method == TC_TMETHOD_SOURCE))
        return ternary_src ? tc_err(err, "%s: the model is already ternary (%s); it is converted with the method "
                                    "'source', which carries its codes and scales over, not requantized with '%s'",
                                    m->path, tc_linear_kind_name(c->t.linear), tc_tmethod_name(o->q.method))
                           : tc_err(err, "%s: the method 'source' converts an already ternary model, and this one "
                                    "is float", m->path);
    if (ternary_src && (d->gguf || o->quantize_embeddings || o->calib || o->q.group.kind != TC_TGROUP_TENSOR))
        return tc_err(err, "%s: an already ternary model (%s) converts to the packed format with its one scale per "
                      "tensor only (%s is not implemented for it)", m->path, tc_linear_kind_name(c->t.linear),
                      d->gguf ? "GGUF output" : o->quantize_embeddings ? "ternary embeddings"
                      : o->calib ? "calibration" : "another scale grouping");
    /* The conversion is exact: a float embedding or head that F16 cannot
     * hold (BF16 values below F16's normal range) stays F32. */
    if (ternary_src && d->fdt == TC_F16 && (!f16_holds(m->tok_embd) || !f16_holds(m->output)))
        d->fdt = TC_F32;
    d->edt = d->fdt;
    if (o->embd_dtype != TC_F32) {
        if (d->gguf || o->quantize_embeddings || !tc_qmat_type_ok(o->embd_dtype))
            return tc_err(err, "%s: an embedding type (%s) is for the packed format's float embedding and head: "
                          "Q8_0, Q6_K or Q4_0%s", m->path, tc_dtype_name(o->embd_dtype),
                          d->gguf ? " (GGUF output has --fallback)"
                          : o->quantize_embeddings ? ", not with ternary embeddings" : "");
        if (c->dim % tc_qmat_block(o->embd_dtype) != 0)
            return tc_err(err, "%s: rows of the embedding (%d values) are not whole %s blocks of %lld", m->path,
                          c->dim, tc_dtype_name(o->embd_dtype), (long long)tc_qmat_block(o->embd_dtype));
        d->edt = o->embd_dtype;
    }
    if (o->linear_types && (ternary_src || o->q.method == TC_TMETHOD_SOURCE))
        return tc_err(err, "%s: mixed precision applies to float models (this one is already ternary)", m->path);
    for (int l = 0; o->linear_types && l < c->n_layers; l++)
        for (int i = 0; i < N_LINEAR; i++) {
            tc_dtype bt = tc_mixed_linear_type(o->linear_types, c->n_layers, l, linear_roles[i]);
            int64_t shape[2];
            tc_role_shape(c, (tc_role)linear_roles[i], shape);
            if (bt != TC_F32 && shape[1] % tc_qmat_block(bt) != 0)
                return tc_err(err, "%s: layer %d %s has rows of %lld weights, not whole %s blocks of %lld", m->path,
                              l, tc_role_name((tc_role)linear_roles[i]), (long long)shape[1], tc_dtype_name(bt),
                              (long long)tc_qmat_block(bt));
        }
    d->fb = TC_DTYPE_COUNT;
    if (o->fallback != TC_F32 || o->fallback_explicit) {
        if (!d->gguf)
            return tc_err(err, "%s: a fallback type (%s) needs a GGUF output; the packed format keeps the "
                          "other tensors in float", m->path,
                          tc_dtype_name(o->fallback == TC_F32 ? TC_Q8_0 : o->fallback));
        if (o->fallback != TC_F32 && o->fallback != TC_F16 && !tc_ggml_quant_can_encode(o->fallback))
            return tc_err(err, "%s: the fallback type must be Q8_0, Q4_0, Q4_K, Q6_K or F16, not %s", m->path,
                          tc_dtype_name(o->fallback));
    }
    if (d->gguf)
        d->fb = o->fallback == TC_F32 ? TC_Q8_0 : o->fallback;
    d->rep.fallback = d->fb;
    size_t cap = (size_t)c->n_layers * N_LINEAR + 2;
    d->rep.tensors = calloc(cap, sizeof *d->rep.tensors);
    d->fp = calloc(cap, sizeof *d->fp);
    d->wl = calloc((size_t)c->n_layers, sizeof *d->wl);
    d->skip = calloc((size_t)c->n_layers, sizeof *d->skip);
    if (!d->rep.tensors || !d->fp || !d->wl || !d->skip)
        return tc_err(err, "out of memory");
    add_report(d, -1, TC_G_EMBD, c->vocab_size, c->dim);
    if (!c->tied_embeddings)
        add_report(d, -1, TC_G_OUTPUT, c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N_LINEAR; i++) {
            int64_t shape[2]; /* as the config has it: a packed source stores four rows to a byte */
            tc_role_shape(c, (tc_role)linear_roles[i], shape);
            if (m->layers[l].w[linear_roles[i]])
                add_report(d, l, linear_roles[i], shape[0], shape[1]);
        }
    if (o->calib) {
        d->n_tok = tc_batch_tokens(o->calib);
        if (tc_batch_check(m, o->calib, "calibration data", err))
            return TC_ERR;
        /* This rank's windows; a job of one has them all. */
        tc_dist_range(o->dist, o->dist ? o->dist->rank : 0, o->calib->n_seqs, &d->q0, &d->q1);
        d->tok0 = o->calib->offsets[d->q0];
        size_t own = d->own_tok = o->calib->offsets[d->q1] - d->tok0;
        uint64_t nx;
        if (tc_mul_u64((uint64_t)own, (uint64_t)c->dim * sizeof(float), &nx) || nx > SIZE_MAX / 2)
            return tc_err(err, "calibration data too large");
        d->x = malloc(nx ? (size_t)nx : 1);
        d->y = malloc(nx ? (size_t)nx : 1);
        if (!d->x || !d->y)
            return tc_err(err, "out of memory for the calibration activations");
        for (size_t t = 0; t < own; t++)
            if (tc_model_embed_input(m, o->calib->tokens[d->tok0 + t], d->x + t * (size_t)c->dim, err))
                return TC_ERR;
        if (o->q.method == TC_TMETHOD_AFFINE_CALIBRATED || o->q.method == TC_TMETHOD_AFFINE_BLOCK) {
            d->xf = malloc(nx ? (size_t)nx : 1);
            d->yf = malloc(nx ? (size_t)nx : 1);
            d->hf = malloc(nx ? (size_t)nx : 1);
            d->hq = malloc(nx ? (size_t)nx : 1);
            if (!d->xf || !d->yf || !d->hf || !d->hq)
                return tc_err(err, "out of memory for the calibration activations");
            memcpy(d->xf, d->x, (size_t)nx);
        }
        d->smp_cap = o->error_sample_tokens ? o->error_sample_tokens : 256;
        d->rep.calib_tokens = d->n_tok;
    }
    return TC_OK;
}

static void drv_free(qdrv *d)
{
    free_slots(d);
    reset_stats(d);
    free(d->x);
    free(d->y);
    free(d->xf);
    free(d->yf);
    free(d->hf);
    free(d->hq);
    free_captures(d);
    for (int r = 0; r < TC_N_ROLES; r++)
        free(d->deq[r]);
    free(d->wl);
    free(d->skip);
    free(d->fp);
    free(d->tm.tensors);
    tc_tmodel_tok_free(&d->tm.tok);
    free(d->rep.tensors);
}

/* ---- Global matrices (embedding, output head) ----------------------------- */

static const tc_tensor *global_tensor(const tc_model *m, int which)
{
    return which == TC_G_EMBD ? m->tok_embd : which == TC_G_OUT_NORM ? m->out_norm : m->output;
}

/* Quantizes a global matrix (packed, --quantize-embeddings) into packed bytes. */
static int global_ternary(qdrv *d, const tc_tmodel_tensor *t, uint8_t *dst, tc_error *err)
{
    float *W = NULL;
    int64_t M = t->shape[0], K = t->shape[1];
    int8_t *codes = malloc((size_t)(M * K));
    float *scales = malloc((size_t)t->plan.n_scales * sizeof(float));
    int ri = report_index(d, -1, t->role);
    double t0 = now_s();
    tc_tmethod meth = d->o->q.method == TC_TMETHOD_ABSMEAN ? TC_TMETHOD_ABSMEAN : TC_TMETHOD_OPTIMAL;
    int rc = !codes || !scales ? tc_err(err, "out of memory for a %lld x %lld weight", (long long)M, (long long)K)
                               : tc_tensor_load_f32(global_tensor(d->m, t->role), &W, err);
    double t1 = now_s();
    if (rc == TC_OK)
        rc = quantize_matrix(d, W, M, K, meth, NULL, codes, scales, NULL, err);
    double t2 = now_s();
    if (rc == TC_OK) {
        tc_ternary_report tr;
        tc_ternary_report_make(W, codes, scales, M, K, &d->group, &tr);
        d->fp[ri].codes = crc_bytes(codes, (uint64_t)(M * K));
        rc = account_matrix(d, ri, &tr, W, codes, scales, NULL, M, K, NULL, 0, now_s() - t1, err);
    }
    double t3 = now_s();
    if (rc == TC_OK)
        rc = tc_tpack_pack(&t->plan, codes, scales, dst, err);
    if (rc == TC_OK)
        d->fp[ri].scales = crc_bytes(scales, (uint64_t)t->plan.n_scales * sizeof(float));
    d->rep.times.load += t1 - t0;
    d->rep.times.quantize += t2 - t1;
    d->rep.times.measure += t3 - t2;
    d->rep.times.pack += now_s() - t3;
    free(W);
    free(codes);
    free(scales);
    return rc;
}

/* What a 16-bit float value becomes through fp32 and back, for every bit
 * pattern (NaN payloads, for one, do not survive).  0 if dt is not a 16-bit
 * float type or the conversion fails. */
static int roundtrip_table(tc_dtype dt, uint16_t *map)
{
    if (dt != TC_F16 && dt != TC_BF16)
        return 0;
    enum { N = 1 << 16 };
    uint8_t *a = malloc(2 * N);
    float *f = malloc(N * sizeof *f);
    int ok = a && f;
    if (ok) {
        for (uint32_t i = 0; i < N; i++) {
            a[2 * i] = (uint8_t)i;
            a[2 * i + 1] = (uint8_t)(i >> 8);
        }
        ok = tc_convert_to_f32(dt, a, N, f, NULL) == TC_OK && tc_convert_from_f32(dt, f, N, a, NULL) == TC_OK;
        for (uint32_t i = 0; ok && i < N; i++)
            map[i] = (uint16_t)(a[2 * i] | a[2 * i + 1] << 8);
    }
    free(a);
    free(f);
    return ok;
}

/* Whether writing src's bytes as they are gives exactly the bytes of
 * converting it to fp32 and back to dt (the writer's rule for float tensors). */
static int copy_is_exact(const tc_tensor *src, tc_dtype dt, uint64_t nbytes)
{
    if (src->dtype != dt || src->nbytes != nbytes)
        return 0;
    if (dt == TC_F32)
        return 1;
    uint16_t *map = malloc((1u << 16) * sizeof *map);
    int exact = map && roundtrip_table(dt, map);
    const uint8_t *p = src->data;
    for (uint64_t i = 0; exact && i < nbytes / 2; i += 4096) {
        uint64_t end = nbytes / 2 - i < 4096 ? nbytes / 2 : i + 4096;
        unsigned diff = 0;
        for (uint64_t k = i; k < end; k++) {
            unsigned h = (unsigned)p[2 * k] | (unsigned)p[2 * k + 1] << 8;
            diff |= map[h] ^ h;
        }
        exact = diff == 0;
    }
    free(map);
    return exact;
}

/* A float global tensor (embedding, head) converted to its stored dtype a
 * few megabytes at a time: no fp32 copy of a vocab x dim matrix. */
static int global_float(qdrv *d, const tc_tmodel_tensor *t, uint8_t *dst, uint64_t n, tc_error *err)
{
    const tc_tensor *src = global_tensor(d->m, t->role);
    uint64_t be = tc_dtype_block_elems(src->dtype), bb = tc_dtype_block_bytes(src->dtype);
    uint64_t ob = tc_dtype_block_bytes(t->dtype), oe = tc_dtype_block_elems(t->dtype);
    uint64_t chunk = (1u << 20) / be * be / oe * oe; /* whole blocks of both types */
    if (src->n_elements != n || chunk == 0) {
        float *v = NULL;
        int rc = tc_tensor_load_f32(src, &v, err);
        if (rc == TC_OK)
            rc = tc_convert_from_f32(t->dtype, v, n, dst, err);
        free(v);
        return rc;
    }
    float *buf = malloc((size_t)chunk * sizeof *buf);
    if (!buf)
        return tc_err(err, "out of memory");
    int rc = TC_OK;
    for (uint64_t i = 0; i < n && rc == TC_OK; i += chunk) {
        uint64_t k = n - i < chunk ? n - i : chunk;
        if (tc_convert_to_f32(src->dtype, src->data + i / be * bb, k, buf, err))
            rc = tc_err_prefix(err, "%s: tensor '%s'", src->file, src->name);
        else
            rc = tc_convert_from_f32(t->dtype, buf, k, dst + i / oe * ob, err);
    }
    free(buf);
    return rc;
}

/* ---- Where the bytes went -------------------------------------------------- */

static void part_add(qdrv *d, tc_qpart p, uint64_t params, uint64_t bytes)
{
    d->rep.parts[p].params += params;
    d->rep.parts[p].bytes += bytes;
    d->rep.tensor_bytes += bytes;
}

/* The report's matrices: ternary, fallback (linear weights that are not) and embeddings. */
static void parts_of_matrices(qdrv *d)
{
    for (size_t i = 0; i < d->rep.n_tensors; i++) {
        const tc_qtensor_report *r = &d->rep.tensors[i];
        tc_qpart p = r->layer < 0 ? TC_QPART_EMBEDDINGS : r->ternary ? TC_QPART_TERNARY : TC_QPART_FALLBACK;
        part_add(d, p, (uint64_t)(r->rows * r->cols), r->bytes);
    }
}

/* ---- Packed output -------------------------------------------------------- */

static int packed_fill(void *ctx, size_t i, uint8_t *dst, tc_error *err)
{
    qdrv *d = ctx;
    const tc_tmodel_tensor *t = &d->tm.tensors[i];
    uint64_t n = t->n_dims == 2 ? (uint64_t)(t->shape[0] * t->shape[1]) : (uint64_t)t->shape[0];
    double t0 = now_s();
    int rc;
    if (t->layer < 0) {
        rc = t->ternary ? global_ternary(d, t, dst, err) : global_float(d, t, dst, n, err);
    } else if (ensure_layer(d, t->layer, err)) {
        rc = TC_ERR;
    } else if (!t->ternary) {
        rc = tc_convert_from_f32(t->dtype, d->w.w[t->role], n, dst, err);
    } else {
        d->rep.tensors[report_index(d, t->layer, t->role)].bytes = t->nbytes;
        memcpy(dst, d->slots[t->role].packed, (size_t)t->nbytes);
        rc = TC_OK;
    }
    d->rep.times.produce += now_s() - t0;
    return rc;
}

static int packed_add(qdrv *d, int layer, int role, int ternary, tc_error *err)
{
    tc_tmodel_tensor *t = &d->tm.tensors[d->tm.n_tensors++];
    memset(t, 0, sizeof *t);
    t->layer = layer;
    t->role = role;
    t->n_dims = tc_tmodel_expected_shape(&d->m->cfg, layer, role, t->shape);
    t->ternary = ternary;
    if (ternary) {
        /* Offsets for the blocks' linear weights of the affine methods; a
         * ternary embedding or head keeps the symmetric fit. */
        tc_tparam_kind pk = layer >= 0 && tc_tmethod_affine(d->o->q.method) ? TC_TPARAM_AFFINE_F16
                                                                             : TC_TPARAM_SCALE_F32;
        if (tc_tpack_plan_make_params(d->o->q.layout, t->shape[0], t->shape[1], &d->group, pk, &t->plan, err))
            return TC_ERR;
        t->nbytes = t->plan.total_bytes;
        return TC_OK;
    }
    /* Vectors (norms, biases) are tiny: always F32. */
    t->dtype = t->n_dims == 1 ? TC_F32 : layer < 0 ? d->edt : linear_type(d, layer, role) != TC_F32 ? linear_type(d, layer, role) : d->fdt;
    uint64_t n = t->n_dims == 2 ? (uint64_t)(t->shape[0] * t->shape[1]) : (uint64_t)t->shape[0];
    return tc_dtype_span(t->dtype, n, &t->nbytes, err);
}

static int packed_build(qdrv *d, tc_error *err)
{
    const tc_model *m = d->m;
    const tc_config *c = &m->cfg;
    d->tm.tensors = calloc((size_t)c->n_layers * TC_N_ROLES + 3, sizeof *d->tm.tensors);
    if (!d->tm.tensors)
        return tc_err(err, "out of memory");
    d->tm.cfg = *c;
    d->tm.quant = d->o->q;
    d->tm.quant.calib_tokens = d->n_tok;
    if (!tc_tmethod_calibrated(d->o->q.method)) {
        d->tm.quant.sequential = 0;
        d->tm.quant.damp_frac = 0;
        d->tm.quant.act_order = d->tm.quant.refit = d->tm.quant.block_rounds = 0;
    } else if (d->tm.quant.damp_frac <= 0) {
        d->tm.quant.damp_frac = 0.01;
    }
    if (d->o->q.method == TC_TMETHOD_AFFINE_CALIBRATED && d->n_tok > 0)
        d->tm.quant.sequential = 1; /* quantize_layer_stages: inputs always through the quantized layers */
    d->tm.source = m->path;
    /* The tokenizer travels with the model.  One the user named must load;
     * a checkpoint's own that tc cannot read leaves the file without one,
     * and the report says why. */
    tc_error terr = {{0}};
    if (tc_tmodel_tok_collect(&d->tm.tok, m, d->o->tokenizer, &terr)) {
        if (d->o->tokenizer) {
            if (err)
                *err = terr;
            return TC_ERR;
        }
        snprintf(d->rep.tokenizer_note, sizeof d->rep.tokenizer_note, "%s", terr.msg);
    }
    d->rep.tokenizer = d->tm.tok.kind;
    if (d->tm.tok.origin)
        snprintf(d->rep.tokenizer_from, sizeof d->rep.tokenizer_from, "%s", d->tm.tok.origin);
    d->tm.calib = (tc_calib_windows *)d->o->calib_windows; /* borrowed: written, never freed here */
    d->tm.mixed = (tc_tmixed *)d->o->mixed;                 /* borrowed likewise */
    int te = d->o->quantize_embeddings;
    if (packed_add(d, -1, TC_G_EMBD, te, err) || packed_add(d, -1, TC_G_OUT_NORM, 0, err) ||
        (!c->tied_embeddings && packed_add(d, -1, TC_G_OUTPUT, te, err)))
        return TC_ERR;
    for (int l = 0; l < c->n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++)
            if (m->layers[l].w[r] && packed_add(d, l, r, is_linear(r) && linear_type(d, l, r) == TC_F32, err))
                return TC_ERR;
    /* A float embedding or head already in the stored dtype is written
     * straight from the source file. */
    for (size_t i = 0; i < d->tm.n_tensors; i++) {
        tc_tmodel_tensor *t = &d->tm.tensors[i];
        const tc_tensor *src = t->layer < 0 && !t->ternary ? global_tensor(m, t->role) : NULL;
        if (src && copy_is_exact(src, t->dtype, t->nbytes))
            t->data = src->data;
    }
    return TC_OK;
}

/* Verification of the packed file: every tensor's stored CRC, and every
 * ternary tensor unpacked and compared with the fingerprints of what was
 * computed.  Tensors are checked on the worker threads, each worker with its
 * own buffers; the first failure in file order is reported. */
typedef struct vcheck {
    qdrv *d;
    const tc_tmodel *r;
    const char *path;
    int *rc;
    tc_error *errs;
    size_t next;
    pthread_mutex_t mu;
} vcheck;

static int verify_tensor(vcheck *v, size_t i, int8_t **codes, size_t *ccap, float **scales, size_t *scap,
                         tc_error *err)
{
    qdrv *d = v->d;
    const tc_tmodel_tensor *w = &d->tm.tensors[i], *t = tc_tmodel_find(v->r, w->layer, w->role);
    char name[64];
    tc_tmodel_tensor_name(w, name, sizeof name);
    if (!t || t->crc32 != w->crc32)
        return tc_err(err, "%s: verification: tensor '%s' differs from what was written", v->path, name);
    if (!t->ternary)
        return TC_OK;
    int ri = report_index(d, w->layer, w->role);
    uint64_t n = (uint64_t)(t->shape[0] * t->shape[1]), sb = (uint64_t)t->plan.n_scales * sizeof(float);
    if (!(*codes = grow(*codes, ccap, n)) || !(*scales = grow(*scales, scap, sb)))
        return tc_err(err, "%s: verification: out of memory", v->path);
    float *off = t->plan.offset ? malloc((size_t)sb) : NULL;
    if (t->plan.offset && !off)
        return tc_err(err, "%s: verification: out of memory", v->path);
    int rc = tc_tmodel_tensor_unpack_affine(t, *codes, *scales, off, err);
    uint32_t oc = off ? crc_bytes(off, sb) : 0;
    free(off);
    if (rc)
        return tc_err_prefix(err, "%s: verification", v->path);
    if (ri < 0 || crc_bytes(*codes, n) != d->fp[ri].codes || crc_bytes(*scales, sb) != d->fp[ri].scales ||
        oc != d->fp[ri].offsets)
        return tc_err(err, "%s: verification: tensor '%s' does not unpack to the computed codes and scales",
                      v->path, name);
    return TC_OK;
}

static void *verify_worker(void *arg)
{
    vcheck *v = arg;
    int8_t *codes = NULL;
    float *scales = NULL;
    size_t ccap = 0, scap = 0;
    for (;;) {
        pthread_mutex_lock(&v->mu);
        size_t i = v->next < v->d->tm.n_tensors ? v->next++ : SIZE_MAX;
        pthread_mutex_unlock(&v->mu);
        if (i == SIZE_MAX)
            break;
        v->rc[i] = verify_tensor(v, i, &codes, &ccap, &scales, &scap, &v->errs[i]);
    }
    free(codes);
    free(scales);
    return NULL;
}

static int packed_verify(qdrv *d, const char *path, tc_error *err)
{
    tc_tmodel r;
    if (tc_tmodel_open(&r, path, err))
        return tc_err_prefix(err, "verification");
    size_t n = d->tm.n_tensors;
    vcheck v = {.d = d, .r = &r, .path = path, .rc = calloc(n ? n : 1, sizeof *v.rc),
                .errs = calloc(n ? n : 1, sizeof *v.errs)};
    int rc = TC_OK;
    if (!v.rc || !v.errs) {
        rc = tc_err(err, "%s: verification: out of memory", path);
    } else {
        pthread_mutex_init(&v.mu, NULL);
        int threads = d->o->n_threads > 1 ? d->o->n_threads : 1;
        pthread_t th[64];
        int started = 0;
        for (int i = 0; i < threads - 1 && i < 64; i++)
            if (pthread_create(&th[started], NULL, verify_worker, &v) == 0)
                started++;
        verify_worker(&v);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        pthread_mutex_destroy(&v.mu);
        for (size_t i = 0; i < n && rc == TC_OK; i++)
            if (v.rc[i]) {
                if (err)
                    *err = v.errs[i];
                rc = TC_ERR;
            }
    }
    /* The embedded tokenizer: the same bytes, and it loads. */
    const tc_tmodel_tok *a = &d->tm.tok, *b = &r.tok;
    int same = a->kind == b->kind && a->n_files == b->n_files;
    for (int i = 0; same && i < a->n_files; i++)
        same = a->files[i].nbytes == b->files[i].nbytes &&
               memcmp(a->files[i].data, b->files[i].data, (size_t)a->files[i].nbytes) == 0;
    if (rc == TC_OK && !same)
        rc = tc_err(err, "%s: verification: the embedded tokenizer differs from what was written", path);
    struct tc_tokenizer *tok = NULL;
    if (rc == TC_OK && tc_tmodel_tokenizer(&r, &tok, err))
        rc = tc_err_prefix(err, "verification");
    tc_tokenizer_free(tok);
    free(v.rc);
    free(v.errs);
    tc_tmodel_close(&r);
    return rc;
}

static int write_packed(qdrv *d, const char *path, tc_error *err)
{
    if (packed_build(d, err))
        return TC_ERR;
    double t0 = now_s();
    if (tc_tmodel_write(path, &d->tm, packed_fill, d, err))
        return TC_ERR;
    d->rep.times.write = now_s() - t0 - d->rep.times.produce;
    if (ensure_layer(d, d->m->cfg.n_layers - 1, err))
        return TC_ERR;
    tc_tmodel_size sz;
    tc_tmodel_size_of(&d->tm, &sz);
    d->rep.params = sz.params;
    for (size_t i = 0; i < d->tm.n_tensors; i++) {
        const tc_tmodel_tensor *t = &d->tm.tensors[i];
        int ri = report_index(d, t->layer, t->role);
        if (ri >= 0)
            d->rep.tensors[ri].bytes = t->nbytes;
        if (t->layer >= 0 && is_linear(t->role)) {
            d->rep.linear_bytes += t->nbytes;
            d->rep.linear_params += (uint64_t)(t->shape[0] * t->shape[1]);
        }
    }
    for (size_t i = 0; i < d->rep.n_tensors; i++)
        if (!d->rep.tensors[i].ternary && d->rep.tensors[i].layer >= 0) {
            d->rep.tensors[i].why = "mixed precision: a block type (--target-bpw)";
            d->rep.tensors[i].dtype = linear_type(d, d->rep.tensors[i].layer, d->rep.tensors[i].role);
        } else if (!d->rep.tensors[i].ternary) {
            d->rep.tensors[i].why = d->edt != d->fdt ? "embedding and output head in a block type (--embd-type)"
                                                     : "embedding and output head stay float (see --quantize-embeddings)";
            d->rep.tensors[i].dtype = d->edt;
        }
    parts_of_matrices(d);
    for (size_t i = 0; i < d->tm.n_tensors; i++) {
        const tc_tmodel_tensor *t = &d->tm.tensors[i];
        if (report_index(d, t->layer, t->role) < 0)
            part_add(d, t->n_dims == 1 ? TC_QPART_NORMS : TC_QPART_FALLBACK,
                     t->n_dims == 2 ? (uint64_t)(t->shape[0] * t->shape[1]) : (uint64_t)t->shape[0], t->nbytes);
    }
    if (d->o->verify) {
        double t1 = now_s();
        if (packed_verify(d, path, err))
            return TC_ERR;
        d->rep.verified = 1;
        d->rep.times.verify = now_s() - t1;
    }
    return TC_OK;
}

/* ---- GGUF output ---------------------------------------------------------- */

static int gguf_fill_values(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    qdrv *d = ctx;
    if (layer < 0) {
        tc_model_copy cp = {.model = d->m};
        return tc_model_copy_fill(&cp, layer, which, dst, n, err);
    }
    if (ensure_layer(d, layer, err))
        return TC_ERR;
    if (!d->w.w[which])
        return tc_err(err, "%s: layer %d has no %s", d->m->path, layer, tc_role_name((tc_role)which));
    /* The source's rows and columns, then zeros where the FFN width is padded. */
    int64_t so[2], sp[2];
    int nd = tc_tmodel_expected_shape(&d->m->cfg, layer, which, so);
    stored_shape(d, layer, which, sp);
    uint64_t ro = (uint64_t)so[0], co = nd == 2 ? (uint64_t)so[1] : 1, rp = (uint64_t)sp[0],
             cp = nd == 2 ? (uint64_t)sp[1] : 1;
    if (rp * cp != n || rp < ro || cp < co)
        return tc_err(err, "%s: internal error: layer %d %s is not %llu values", d->m->path, layer,
                      tc_role_name((tc_role)which), (unsigned long long)n);
    if (rp == ro && cp == co) {
        memcpy(dst, d->w.w[which], n * sizeof(float));
        return TC_OK;
    }
    memset(dst, 0, n * sizeof(float));
    for (uint64_t i = 0; i < ro; i++)
        memcpy(dst + i * cp, d->w.w[which] + i * co, co * sizeof(float));
    return TC_OK;
}

/* A matrix that is not ternary: the fallback type when its rows are whole
 * blocks of it, else float (llama.cpp's quantizer, too, stores F16 what
 * fits no block). */
static tc_dtype kept_dtype(const qdrv *d, int64_t K)
{
    return d->fb != TC_DTYPE_COUNT && K % (int64_t)tc_dtype_block_elems(d->fb) == 0 ? d->fb : d->fdt;
}

/* The ternary holder of a linear weight of the blocks, TC_DTYPE_COUNT for any other tensor. */
static tc_dtype gguf_ternary_of(const qdrv *d, int layer, int which)
{
    int64_t shape[2];
    if (layer < 0 || !is_linear(which) || linear_type(d, layer, which) != TC_F32)
        return TC_DTYPE_COUNT;
    stored_shape(d, layer, which, shape);
    return ternary_dtype(d, shape[1]);
}

static tc_dtype gguf_dtype_of(void *ctx, int layer, int which)
{
    qdrv *d = ctx;
    int64_t shape[2];
    if (layer < 0)
        return which == TC_G_EMBD || which == TC_G_OUTPUT ? kept_dtype(d, d->m->cfg.dim) : d->fdt;
    if (!is_linear(which))
        return d->fdt;
    if (linear_type(d, layer, which) != TC_F32)
        return linear_type(d, layer, which); /* mixed precision: the same ggml type */
    tc_dtype tt = gguf_ternary_of(d, layer, which);
    stored_shape(d, layer, which, shape);
    return tt != TC_DTYPE_COUNT ? tt : kept_dtype(d, shape[1]);
}

/* Row order of a Q or K weight in the target layout: out row i is source row perm[i]. */
static int rope_perm(const qdrv *d, int which, int64_t M, tc_rope_layout to, int64_t **perm, tc_error *err)
{
    *perm = NULL;
    const tc_config *c = &d->m->cfg;
    if ((which != TC_WQ && which != TC_WK) || c->rope_layout == to)
        return TC_OK;
    float *src = malloc((size_t)M * sizeof *src), *dst = malloc((size_t)M * sizeof *dst);
    *perm = malloc((size_t)M * sizeof **perm);
    int rc = TC_OK;
    if (!src || !dst || !*perm) {
        rc = tc_err(err, "out of memory");
    } else {
        for (int64_t i = 0; i < M; i++)
            src[i] = (float)i;
        tc_rope_permute_rows(src, dst, which == TC_WQ ? c->n_heads : c->n_kv_heads, c->head_dim, 1,
                             c->rope_layout, to);
        for (int64_t i = 0; i < M; i++)
            (*perm)[i] = (int64_t)dst[i];
    }
    free(src);
    free(dst);
    if (rc) {
        free(*perm);
        *perm = NULL;
    }
    return rc;
}

static int gguf_encode_codes(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                             tc_error *err)
{
    qdrv *d = ctx;
    if (ensure_layer(d, layer, err))
        return TC_ERR;
    /* The source's M x K codes, written as the stored M' x K' (FFN padding:
     * zero rows of gate and up, zero columns of down, all-zero blocks with
     * scale 0). */
    const tc_tensor *t = d->m->layers[layer].w[which];
    tc_dtype tt = gguf_ternary_of(d, layer, which);
    int64_t sp[2];
    stored_shape(d, layer, which, sp);
    int64_t Mo = t->shape[0], Ko = t->shape[1], M = sp[0], K = sp[1];
    int64_t B = tc_ggml_ternary_block_elems(tt), nb = B ? K / B : 0;
    uint64_t row_bytes;
    if (tc_ggml_ternary_row_bytes(tt, K, &row_bytes, err))
        return TC_ERR;
    if (row_bytes * (uint64_t)M != nbytes || !d->codes[which] || M < Mo || K < Ko)
        return tc_err(err, "%s: internal error: layer %d %s has no ternary encoding", d->m->path, layer,
                      tc_role_name((tc_role)which));
    int aff = tc_ggml_ternary_has_offset(tt);
    if (aff && !d->offsets[which])
        return tc_err(err, "%s: internal error: layer %d %s has no offsets", d->m->path, layer,
                      tc_role_name((tc_role)which));
    float *dr = malloc((size_t)nb * 2 * sizeof *dr), *mr = dr ? dr + nb : NULL;
    int8_t *rowc = malloc((size_t)K);
    int64_t *perm = NULL;
    int rc = !dr || !rowc ? tc_err(err, "out of memory") : rope_perm(d, which, Mo, to, &perm, err);
    uLong cc = crc32(0L, Z_NULL, 0), cs = crc32(0L, Z_NULL, 0), co = crc32(0L, Z_NULL, 0);
    uint8_t blk[32];
    for (int64_t i = 0; i < M && rc == TC_OK; i++) {
        int64_t sr = perm ? perm[i] : i;
        memset(rowc, 0, (size_t)K);
        memset(mr, 0, (size_t)nb * sizeof *mr);
        if (sr < Mo) {
            memcpy(rowc, d->codes[which] + sr * Ko, (size_t)Ko);
            block_scales_row(d->codes[which], d->scales[which], Ko, K, sr, &d->group, B, dr);
            /* Groups are whole blocks here (drv_init): a block's offset is its group's. */
            for (int64_t b = 0; aff && b * B < Ko; b++)
                mr[b] = d->offsets[which][tc_ternary_scale_index(&d->group, Ko, sr, b * B)];
        } else {
            memset(dr, 0, (size_t)nb * sizeof *dr);
        }
        uint8_t *out = (uint8_t *)dst + (uint64_t)i * row_bytes;
        rc = tc_ggml_ternary_encode_affine(tt, rowc, dr, aff ? mr : NULL, K, out, err);
        cc = crc32(cc, (const Bytef *)rowc, (uInt)K);
        for (int64_t b = 0; b < nb; b++) {
            float f = tc_f16_to_f32(tc_f32_to_f16(dr[b]));
            cs = crc32(cs, (const Bytef *)&f, sizeof f);
        }
        /* The offsets as the file gives them back (the minimum is rounded). */
        for (int64_t b = 0; aff && rc == TC_OK && b < nb; b++) {
            int8_t c[32];
            float db, mb;
            memcpy(blk, out + (uint64_t)b * (row_bytes / (uint64_t)nb), row_bytes / (uint64_t)nb);
            rc = tc_ggml_ternary_decode_affine(tt, blk, B, c, &db, &mb, err);
            co = crc32(co, (const Bytef *)&mb, sizeof mb);
        }
    }
    int ri = report_index(d, layer, which);
    if (rc == TC_OK && ri >= 0) {
        d->fp[ri].codes = (uint32_t)cc;
        d->fp[ri].scales = (uint32_t)cs;
        d->fp[ri].offsets = aff ? (uint32_t)co : 0;
        d->rep.tensors[ri].bytes = nbytes;
    }
    free(dr);
    free(rowc);
    free(perm);
    return rc;
}

/* The GGUF writer's callbacks, timed as producing. */
static int gguf_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    qdrv *d = ctx;
    double t0 = now_s();
    int rc = gguf_fill_values(ctx, layer, which, dst, n, err);
    d->rep.times.produce += now_s() - t0;
    return rc;
}

/* A matrix in the fallback type: its float values, Q/K rows in the target's
 * rope layout, encoded with ggml's reference rounding (or converted, F16). */
static int gguf_encode_fallback(qdrv *d, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                                tc_error *err)
{
    const tc_config *c = &d->m->cfg;
    int64_t shape[2];
    stored_shape(d, layer, which, shape);
    tc_dtype dt = gguf_dtype_of(d, layer, which);
    uint64_t n = (uint64_t)shape[0] * (uint64_t)shape[1], want;
    if (tc_dtype_span(dt, n, &want, err) || want != nbytes)
        return tc_err(err, "%s: internal error: layer %d %s is not %llu bytes of %s", d->m->path, layer,
                      layer < 0 ? "global" : tc_role_name((tc_role)which), (unsigned long long)nbytes,
                      tc_dtype_name(dt));
    int perm = layer >= 0 && (which == TC_WQ || which == TC_WK) && c->rope_layout != to;
    float *f = malloc((size_t)n * sizeof *f), *p = perm ? malloc((size_t)n * sizeof *p) : NULL;
    int rc = !f || (perm && !p) ? tc_err(err, "%s: out of memory", d->m->path)
                                : gguf_fill_values(d, layer, which, f, n, err);
    if (rc == TC_OK && perm) {
        tc_rope_permute_rows(f, p, which == TC_WQ ? c->n_heads : c->n_kv_heads, c->head_dim, (int)shape[1],
                             c->rope_layout, to);
        float *swap = f;
        f = p;
        p = swap;
    }
    if (rc == TC_OK)
        rc = tc_convert_from_f32(dt, f, n, dst, err);
    free(f);
    free(p);
    return rc;
}

static int gguf_encode(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                       tc_error *err)
{
    qdrv *d = ctx;
    double t0 = now_s();
    int rc = gguf_ternary_of(d, layer, which) != TC_DTYPE_COUNT
                 ? gguf_encode_codes(ctx, layer, which, to, dst, nbytes, err)
                 : gguf_encode_fallback(d, layer, which, to, dst, nbytes, err);
    d->rep.times.produce += now_s() - t0;
    return rc;
}

/* The file read back as a model (its view splits fused tensors into
 * roles): each ternary tensor decodes to what was computed. */
static int gguf_verify_tensor(qdrv *d, const tc_model *g, const tc_qtensor_report *r, int ri, tc_error *err)
{
    const tc_tensor *t = r->layer >= 0 && r->layer < g->cfg.n_layers ? g->layers[r->layer].w[r->role] : NULL;
    const char *name = t ? t->name : r->name;
    int64_t sp[2];
    stored_shape(d, r->layer, r->role, sp);
    if (!t || t->dtype != r->dtype || t->n_dims != 2 || t->shape[0] != sp[0] || t->shape[1] != sp[1])
        return tc_err(err, "%s: verification: tensor '%s' is missing or not %s", g->path, name,
                      tc_dtype_name(r->dtype));
    int64_t K = sp[1], nb = K / tc_ggml_ternary_block_elems(r->dtype);
    uint64_t row_bytes;
    if (tc_ggml_ternary_row_bytes(r->dtype, K, &row_bytes, err))
        return TC_ERR;
    int aff = tc_ggml_ternary_has_offset(r->dtype);
    int8_t *codes = malloc((size_t)K);
    float *bs = malloc((size_t)nb * 2 * sizeof *bs), *bm = bs ? bs + nb : NULL;
    int rc = !codes || !bs ? tc_err(err, "out of memory") : TC_OK;
    uLong cc = crc32(0L, Z_NULL, 0), cs = crc32(0L, Z_NULL, 0), co = crc32(0L, Z_NULL, 0);
    for (int64_t i = 0; i < sp[0] && rc == TC_OK; i++) {
        rc = tc_ggml_ternary_decode_affine(r->dtype, t->data + (uint64_t)i * row_bytes, K, codes, bs, bm, err);
        cc = crc32(cc, (const Bytef *)codes, (uInt)K);
        cs = crc32(cs, (const Bytef *)bs, (uInt)((size_t)nb * sizeof *bs));
        if (aff)
            co = crc32(co, (const Bytef *)bm, (uInt)((size_t)nb * sizeof *bm));
    }
    if (rc == TC_OK && ((uint32_t)cc != d->fp[ri].codes || (uint32_t)cs != d->fp[ri].scales ||
                        (aff && (uint32_t)co != d->fp[ri].offsets)))
        rc = tc_err(err, "%s: verification: tensor '%s' does not decode to the computed codes, scales and offsets",
                    g->path, name);
    free(codes);
    free(bs);
    return rc;
}

static int gguf_verify(qdrv *d, const char *path, tc_error *err)
{
    tc_model g;
    if (tc_model_open(&g, path, err))
        return tc_err_prefix(err, "verification");
    int rc = TC_OK;
    for (size_t i = 0; i < d->rep.n_tensors && rc == TC_OK; i++)
        if (d->rep.tensors[i].ternary)
            rc = gguf_verify_tensor(d, &g, &d->rep.tensors[i], (int)i, err);
    tc_model_close(&g);
    return rc;
}

/* The parts of the written file: its matrices from the report, its vectors
 * and anything else as the file lists them (the stand-ins of dropped
 * sub-layers, 2-D zeros in float, count as fallback).  The file is read for
 * its header only. */
static int gguf_parts(qdrv *d, const char *path, tc_error *err)
{
    tc_gguf g;
    if (tc_gguf_open(&g, path, err))
        return tc_err_prefix(err, "reading back the tensor list");
    uint64_t mat_params = 0, mat_bytes = 0;
    parts_of_matrices(d);
    uint64_t rep_params = 0, rep_bytes = d->rep.tensor_bytes;
    for (size_t i = 0; i < d->rep.n_tensors; i++) {
        int64_t sp[2];
        stored_shape(d, d->rep.tensors[i].layer, d->rep.tensors[i].role, sp);
        rep_params += (uint64_t)(sp[0] * sp[1]);
    }
    for (size_t i = 0; i < g.dir.n_tensors; i++) {
        const tc_tensor *t = &g.dir.tensors[i];
        if (t->n_dims == 1) {
            part_add(d, TC_QPART_NORMS, t->n_elements, t->nbytes);
        } else {
            mat_params += t->n_elements;
            mat_bytes += t->nbytes;
        }
    }
    tc_gguf_close(&g);
    if (mat_bytes < rep_bytes || mat_params < rep_params)
        return tc_err(err, "%s: internal error: the file's matrices hold %llu bytes, fewer than the %llu reported",
                      path, (unsigned long long)mat_bytes, (unsigned long long)rep_bytes);
    if (mat_bytes > rep_bytes)
        part_add(d, TC_QPART_FALLBACK, mat_params - rep_params, mat_bytes - rep_bytes);
    return TC_OK;
}

/* "64 and 172": the distinct row lengths of the linear weights whose ternary
 * holder is (is_it) or is not `holder` (TC_DTYPE_COUNT: none). */
static void row_lengths(const qdrv *d, tc_dtype holder, int is_it, char *buf, size_t n)
{
    int64_t seen[8];
    int k = 0, more = 0;
    for (size_t i = 0; i < d->rep.n_tensors; i++) {
        const tc_qtensor_report *r = &d->rep.tensors[i];
        int64_t K = stored_cols(d, r);
        if (r->layer < 0 || (ternary_dtype(d, K) == holder) != is_it)
            continue;
        int dup = 0;
        for (int j = 0; j < k; j++)
            dup |= seen[j] == K;
        if (!dup && k < 8)
            seen[k++] = K;
        else if (!dup)
            more = 1;
    }
    size_t at = 0;
    buf[0] = '\0';
    for (int j = 0; j < k && at < n; j++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", j == 0 ? "" : j == k - 1 && !more ? " and " : ", ",
                               (long long)seen[j]);
    if (more && at < n)
        snprintf(buf + at, n - at, ", ...");
}

/* Each matrix's stored type, and why one is not ternary, decided before any
 * byte is written: a partly ternary file is refused with `strict`, and a file
 * without a single TQ tensor (what --format asked for) unless the fallback
 * was chosen explicitly. */
static int gguf_plan(qdrv *d, tc_error *err)
{
    const char *path = d->m->path;
    int fb = 0, tq = 0;
    char first[64] = "", lens[96];
    for (size_t i = 0; i < d->rep.n_tensors; i++) {
        tc_qtensor_report *r = &d->rep.tensors[i];
        r->dtype = gguf_dtype_of(d, r->layer, r->role);
        if (r->layer < 0) {
            r->why = "embedding and output head are not ternary in GGUF";
            d->rep.n_fallback_float += r->dtype != d->fb;
            continue;
        }
        if (linear_type(d, r->layer, r->role) != TC_F32) {
            r->why = "mixed precision: a block type (--target-bpw)";
            continue;
        }
        tc_dtype tt = ternary_dtype(d, stored_cols(d, r));
        /* With offsets the codes are Q4_1 or nothing: no TQ tensor is expected. */
        tq += tt == d->tq || tc_ggml_ternary_has_offset(tt);
        if (tt != TC_DTYPE_COUNT)
            continue;
        r->why = "row length is not a multiple of 32 (ggml holds ternary codes in blocks of 256 or 32)";
        d->rep.n_fallback_float += r->dtype != d->fb;
        if (!fb++)
            snprintf(first, sizeof first, "%s", r->name);
    }
    d->rep.n_fallback = fb;
    if (fb && d->o->strict) {
        row_lengths(d, TC_DTYPE_COUNT, 1, lens, sizeof lens);
        return tc_err(err, "%s: %d linear weights (first '%s') have rows of %s weights, whole blocks of no ggml "
                      "type that holds ternary codes; not writing a partly ternary file (strict)",
                      path, fb, first, lens);
    }
    if (!tq && !d->o->fallback_explicit) {
        row_lengths(d, d->tq, 0, lens, sizeof lens);
        return tc_err(err, "%s: no linear weight can be %s (rows of %s weights are not whole 256-weight blocks): "
                      "the file would hold not one %s tensor; not writing it unless a fallback type is asked "
                      "for explicitly (--fallback)", path, tc_dtype_name(d->tq), lens[0] ? lens : "no", tc_dtype_name(d->tq));
    }
    return TC_OK;
}

/* Bytes of one layer's FFN matrices stored at FFN width f. */
static uint64_t ffn_bytes(qdrv *d, int f)
{
    int keep = d->out.ffn_dim;
    d->out.ffn_dim = f;
    uint64_t total = 0;
    for (int r = TC_W_GATE; r <= TC_W_DOWN; r++) {
        int64_t sh[2];
        uint64_t b = 0;
        if (r == TC_W_GATE && d->m->cfg.t.ungated)
            continue;
        stored_shape(d, 0, r, sh);
        if (tc_dtype_span(gguf_dtype_of(d, 0, r), (uint64_t)(sh[0] * sh[1]), &b, NULL) == TC_OK)
            total += b;
    }
    d->out.ffn_dim = keep;
    return total;
}

/* GGUF with pad_ffn: an FFN width that is not a multiple of 256 is padded up
 * to one when that makes the file smaller (the down projections become TQ
 * instead of Q4_0 or the fallback).  The added rows of gate and up (and of
 * their biases) and columns of down are zeros: the gate and up outputs there
 * are 0, every activation tc knows maps 0 to 0 (and a gated MLP multiplies
 * by up's 0 anyway), and down's zero columns add nothing, so the file
 * computes exactly what the source does. */
static void plan_ffn_padding(qdrv *d)
{
    int f = d->m->cfg.ffn_dim, any_mlp = 0;
    for (int l = 0; l < d->m->cfg.n_layers; l++)
        any_mlp |= d->m->layers[l].has_mlp;
    int pad = (int)(((int64_t)f + TC_TQ_BLOCK_ELEMS - 1) / TC_TQ_BLOCK_ELEMS * TC_TQ_BLOCK_ELEMS);
    if (d->o->pad_ffn && any_mlp && pad != f && pad <= INT32_MAX / 2 && ffn_bytes(d, pad) < ffn_bytes(d, f))
        d->out.ffn_dim = pad;
}

static int write_gguf_tq(qdrv *d, const char *path, tc_error *err)
{
    const tc_model *m = d->m;
    const tc_config *c = &m->cfg;
    plan_ffn_padding(d);
    d->rep.ffn_dim_stored = d->out.ffn_dim;
    if (gguf_plan(d, err))
        return TC_ERR;
    /* llama.cpp loads no GGUF without a vocabulary: the model's, converted */
    tc_vocab vocab;
    if (tc_model_vocab(m, &vocab, err))
        return TC_ERR;
    uint8_t *drop_a = NULL, *drop_m = NULL;
    int any_drop = 0;
    for (int l = 0; l < c->n_layers; l++)
        any_drop |= !m->layers[l].has_attn || !m->layers[l].has_mlp;
    if (any_drop) {
        drop_a = calloc((size_t)c->n_layers, 1);
        drop_m = calloc((size_t)c->n_layers, 1);
        if (!drop_a || !drop_m) {
            free(drop_a);
            free(drop_m);
            tc_vocab_free(&vocab);
            return tc_err(err, "out of memory");
        }
        for (int l = 0; l < c->n_layers; l++) {
            drop_a[l] = !m->layers[l].has_attn;
            drop_m[l] = !m->layers[l].has_mlp;
        }
    }
    tc_model_src src = {.cfg = d->out, .drop_attn = drop_a, .drop_mlp = drop_m, .dtype = d->fdt,
                        .fill = gguf_fill, .ctx = d, .gguf_vocab = tc_model_gguf(m), .name = "tc ternary",
                        .dtype_of = gguf_dtype_of, .encode = gguf_encode, .vocab = &vocab};
    double t0 = now_s();
    int rc = tc_model_write(path, TC_FORMAT_GGUF, &src, err);
    tc_vocab_free(&vocab);
    d->rep.times.write = now_s() - t0 - d->rep.times.produce;
    free(drop_a);
    free(drop_m);
    if (rc == TC_OK)
        rc = ensure_layer(d, c->n_layers - 1, err);
    if (rc)
        return TC_ERR;
    d->rep.params = tc_model_n_params(m);
    for (size_t i = 0; i < d->rep.n_tensors; i++) {
        tc_qtensor_report *r = &d->rep.tensors[i];
        int64_t sp[2];
        stored_shape(d, r->layer, r->role, sp);
        if (!r->ternary && tc_dtype_span(r->dtype, (uint64_t)(sp[0] * sp[1]), &r->bytes, err))
            return TC_ERR;
        if (r->layer >= 0) {
            d->rep.linear_bytes += r->bytes;
            d->rep.linear_params += (uint64_t)(r->rows * r->cols);
        }
    }
    if (gguf_parts(d, path, err))
        return TC_ERR;
    if (d->o->verify) {
        double t1 = now_s();
        if (gguf_verify(d, path, err))
            return TC_ERR;
        d->rep.verified = 1;
        d->rep.times.verify = now_s() - t1;
    }
    return TC_OK;
}

/* ---- Entry ---------------------------------------------------------------- */

static void finish_report(qdrv *d, const char *path, double t0)
{
    tc_quantize_report *r = &d->rep;
    struct stat st;
    if (stat(path, &st) == 0)
        r->file_bytes = (uint64_t)st.st_size;
    r->zero_share = d->tern_params ? (double)d->zeros / (double)d->tern_params : 0;
    r->rel_weight_error = d->w2 > 0 ? sqrt(d->e2 / d->w2) : 0;
    r->rel_output_error = d->oe_n ? d->oe_sum / d->oe_n : -1;
    r->bpw_file = r->params ? 8.0 * (double)r->file_bytes / (double)r->params : 0;
    r->bpw_linear = r->linear_params ? 8.0 * (double)r->linear_bytes / (double)r->linear_params : 0;
    r->seconds = now_s() - t0;
}

int tc_quantize_model(const tc_model *m, const char *out_path, const tc_quantize_opts *opts,
                      tc_quantize_report *rep, tc_error *err)
{
    double t0 = now_s();
    if (rep)
        memset(rep, 0, sizeof *rep);
    if (tc_same_file(m->path, out_path))
        return tc_err(err, "%s: refusing to overwrite the input model", out_path);
    if (m->cfg.t.diff_attn && opts->format != TC_QFORMAT_PACKED)
        return tc_err(err, "%s: %s has differential attention (DiffLlama), which llama.cpp's GGUF does not hold "
                      "(write the packed format)", out_path, m->path);
    qdrv d;
    int rc = tc_dist_agree(opts->dist, drv_init(&d, m, opts, err), err, NULL);
    int writer = !opts->dist || opts->dist->rank == 0;
    d.writer = writer;
    /* What the GGUF writer decides before it asks for a layer (the FFN
     * padding, which tensors are ternary) decides the stream of a sequential
     * quantization too: the other ranks decide it alike. */
    if (rc == TC_OK && !writer && d.gguf) {
        plan_ffn_padding(&d);
        d.rep.ffn_dim_stored = d.out.ffn_dim;
        rc = gguf_plan(&d, err);
    }
    if (rc == TC_OK && opts->progress)
        opts->progress(opts->progress_ctx, 0.0);
    if (rc == TC_OK && writer)
        rc = d.gguf ? write_gguf_tq(&d, out_path, err) : write_packed(&d, out_path, err);
    /* Every rank takes part in every layer's statistics: the writer asks for
     * the layers it writes, the others run them all, and the writer any it
     * did not ask for. */
    if (rc == TC_OK && d.n_tok > 0 && m->cfg.n_layers > 0)
        rc = ensure_layer(&d, m->cfg.n_layers - 1, err);
    if (rc == TC_OK && !writer) {
        drv_free(&d);
        return TC_OK;
    }
    if (rc == TC_OK) {
        finish_report(&d, out_path, t0);
        if (rep) {
            *rep = d.rep;
            d.rep.tensors = NULL;
        }
    }
    drv_free(&d);
    return rc;
}

void tc_quantize_report_free(tc_quantize_report *r)
{
    free(r->tensors);
    memset(r, 0, sizeof *r);
}
