/* Token-by-token decoding with a KV cache, sampling and generation.  The
 * arithmetic is forward_math.h's, the same as the batched pass uses, so both
 * give the same logits to float rounding. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_math.h"
#include "tc/checked.h"
#include "tc/forward.h"

struct tc_decoder {
    const tc_model *m;
    tc_weights own;       /* filled when the caller lent none */
    const tc_weights *w;
    tc_skip *skip;        /* n_layers, a copy */
    int max_len, pos, n_threads;
    int qdim, kvdim;
    float *kc;            /* [n_layers][n_kv_heads][head_dim][max_len]: keys transposed */
    float *vc;            /* [n_layers][max_len][kvdim] */
    float *k;             /* this position's keys [kvdim] */
    float *x, *xn, *q, *att, *g, *u, *probs, *cs, *logits;
    float *tmp;           /* a sub-layer's output before its norm [dim] */
    tc_fm_rope_freqs freqs;
};

void tc_decoder_free(tc_decoder *d)
{
    if (!d)
        return;
    tc_weights_free(&d->own);
    free(d->skip);
    free(d->kc);
    free(d->vc);
    free(d->x);
    free(d->xn);
    free(d->q);
    free(d->k);
    free(d->att);
    free(d->g);
    free(d->u);
    free(d->probs);
    free(d->cs);
    free(d->logits);
    free(d->tmp);
    free(d);
}

static float *alloc_f(size_t n, int *fail)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        *fail = 1;
    return p;
}

static int alloc_buffers(tc_decoder *d, tc_error *err)
{
    const tc_config *c = &d->m->cfg;
    uint64_t cache;
    if (tc_mul_u64((uint64_t)c->n_layers, (uint64_t)d->max_len, &cache) ||
        tc_mul_u64(cache, (uint64_t)d->kvdim, &cache) ||
        tc_mul_u64(cache, sizeof(float), &cache) || cache > SIZE_MAX / 2)
        return tc_err(err, "%s: a KV cache of %d positions is too large", d->m->path, d->max_len);
    int fail = 0;
    size_t cells = (size_t)cache / sizeof(float);
    d->kc = alloc_f(cells, &fail);
    d->vc = alloc_f(cells, &fail);
    d->x = alloc_f((size_t)c->dim, &fail);
    d->xn = alloc_f((size_t)c->dim, &fail);
    d->q = alloc_f((size_t)d->qdim, &fail);
    d->k = alloc_f((size_t)d->kvdim, &fail);
    d->att = alloc_f((size_t)d->qdim, &fail);
    d->g = alloc_f((size_t)c->ffn_dim, &fail);
    d->u = alloc_f((size_t)c->ffn_dim, &fail);
    d->probs = alloc_f((size_t)d->max_len * (c->t.diff_attn ? 2 : 1), &fail);
    d->cs = alloc_f((size_t)c->head_dim, &fail);
    d->tmp = alloc_f((size_t)(c->dim > c->head_dim ? c->dim : c->head_dim), &fail);
    d->logits = alloc_f((size_t)c->vocab_size, &fail);
    d->skip = calloc(c->n_layers > 0 ? (size_t)c->n_layers : 1, sizeof *d->skip);
    if (fail || !d->skip)
        return tc_err(err, "%s: out of memory for the decoder's buffers", d->m->path);
    return TC_OK;
}

int tc_decoder_new(tc_decoder **out, const tc_model *m, const tc_decoder_opts *opts,
                   tc_error *err)
{
    const tc_config *c = &m->cfg;
    tc_decoder_opts def;
    memset(&def, 0, sizeof def);
    if (!opts)
        opts = &def;
    *out = NULL;
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 ||
        c->head_dim % 2)
        return tc_err(err, "%s: unsupported attention shape (%d heads, %d kv heads, head_dim %d)",
                      m->path, c->n_heads, c->n_kv_heads, c->head_dim);
    tc_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return tc_err(err, "%s: out of memory for a decoder", m->path);
    d->m = m;
    d->max_len = opts->max_len > 0 ? opts->max_len : c->max_seq_len;
    if (d->max_len <= 0)
        d->max_len = 2048;
    d->n_threads = opts->n_threads > 0 ? opts->n_threads : 1;
    tc_fm_rope_freqs_init(&d->freqs, c);
    d->qdim = c->n_heads * c->head_dim;
    d->kvdim = c->n_kv_heads * c->head_dim;
    if (alloc_buffers(d, err))
        goto fail;
    if (opts->skip)
        memcpy(d->skip, opts->skip, (size_t)c->n_layers * sizeof *d->skip);
    if (opts->weights) {
        d->w = opts->weights;
    } else {
        if (tc_weights_load(&d->own, m, err))
            goto fail;
        d->w = &d->own;
    }
    *out = d;
    return TC_OK;
fail:
    tc_decoder_free(d);
    return TC_ERR;
}

void tc_decoder_reset(tc_decoder *d)
{
    d->pos = 0;
}

int tc_decoder_pos(const tc_decoder *d)
{
    return d->pos;
}

/* y[out] = W[out][in] . x (+ y when accumulate). */
static void matvec(const float *w, const float *x, float *y, int in, int out, int accumulate)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1,
                accumulate ? 1.0f : 0.0f, y, 1);
}

/* x quantized in place for a ternary linear kind (its s_x returned), or
 * left as it is (0). */
static double quant(const tc_decoder *d, float *x, int n)
{
    const tc_config *c = &d->m->cfg;
    return tc_linear_is_ternary(c) ? tc_fm_act_quant_f32(x, (size_t)n, c->t.linear) : 0.0;
}

/* The output of a ternary linear from its integer sums (nothing to do for
 * a float one: s_x is 0). */
static void unscale(float *y, int n, float w_scale, double s_x)
{
    if (s_x != 0.0)
        tc_fm_unscale(y, (size_t)n, w_scale, s_x);
}

static void add_bias(float *y, const float *b, int n)
{
    if (b)
        for (int i = 0; i < n; i++)
            y[i] += b[i];
}

/* x += y, or x += norm(y) when the model norms sub-layer outputs. */
static void residual_add(tc_decoder *d, const float *y, const float *post_norm)
{
    const tc_config *c = &d->m->cfg;
    if (c->t.post_norms) {
        tc_fm_norm(y, post_norm, d->xn, c->dim, c->norm_eps, c->t.norm);
        y = d->xn;
    }
    for (int i = 0; i < c->dim; i++)
        d->x[i] += y[i];
}


static void attention_step(tc_decoder *d, int l, const tc_layer_f32 *w)
{
    const tc_config *c = &d->m->cfg;
    int hd = c->head_dim, rot = tc_layer_rope(c, l)->rot_dims;
    size_t ml = (size_t)d->max_len, layer_off = (size_t)l * ml * (size_t)d->kvdim;
    float *kl = d->kc + layer_off, *vl = d->vc + layer_off;
    float *v = vl + (size_t)d->pos * d->kvdim;
    tc_fm_norm(d->x, w->w[TC_ATTN_NORM], d->xn, c->dim, c->norm_eps, c->t.norm);
    double sx = quant(d, d->xn, c->dim);
    matvec(w->w[TC_WQ], d->xn, d->q, c->dim, d->qdim, 0);
    matvec(w->w[TC_WK], d->xn, d->k, c->dim, d->kvdim, 0);
    matvec(w->w[TC_WV], d->xn, v, c->dim, d->kvdim, 0);
    unscale(d->q, d->qdim, w->scale[TC_WQ], sx);
    unscale(d->k, d->kvdim, w->scale[TC_WK], sx);
    unscale(v, d->kvdim, w->scale[TC_WV], sx);
    add_bias(d->q, w->w[TC_BQ], d->qdim);
    add_bias(d->k, w->w[TC_BK], d->kvdim);
    add_bias(v, w->w[TC_BV], d->kvdim);
    if (c->t.qk_norm) {
        tc_fm_head_norm(d->q, w->w[TC_Q_NORM], c->n_heads, hd, c->norm_eps, c->t.norm);
        tc_fm_head_norm(d->k, w->w[TC_K_NORM], c->n_kv_heads, hd, c->norm_eps, c->t.norm);
    }
    tc_fm_rope_at(&d->freqs, c, l, (size_t)d->pos, d->cs);
    tc_fm_rope(d->q, c->n_heads, hd, rot, c->rope_layout, d->cs);
    tc_fm_rope(d->k, c->n_kv_heads, hd, rot, c->rope_layout, d->cs);
    tc_fm_cache_key(kl, ml, d->k, d->kvdim, (size_t)d->pos);
    if (c->t.diff_attn)
        tc_fm_attend_diff(d->q, kl, vl, ml, c, l,
                          tc_fm_diff_lambda(w->w[TC_LAMBDA_Q1], w->w[TC_LAMBDA_K1], w->w[TC_LAMBDA_Q2],
                                            w->w[TC_LAMBDA_K2], hd, l),
                          (size_t)d->pos + 1, d->probs, d->tmp, d->att);
    else
        tc_fm_attend_heads(d->q, kl, vl, ml, c, l, 0, c->n_heads, (size_t)d->pos + 1, d->probs, d->att);
    if (c->t.sub_norms)
        tc_fm_norm(d->att, w->w[TC_ATTN_SUB_NORM], d->att, d->qdim, c->norm_eps, c->t.norm);
    if (!w->w[TC_BO] && !c->t.post_norms && !tc_linear_is_ternary(c)) {
        matvec(w->w[TC_WO], d->att, d->x, d->qdim, c->dim, 1);
        return;
    }
    sx = quant(d, d->att, d->qdim);
    matvec(w->w[TC_WO], d->att, d->tmp, d->qdim, c->dim, 0);
    unscale(d->tmp, c->dim, w->scale[TC_WO], sx);
    add_bias(d->tmp, w->w[TC_BO], c->dim);
    residual_add(d, d->tmp, w->w[TC_POST_ATTN_NORM]);
}

static void mlp_step(tc_decoder *d, const tc_layer_f32 *w)
{
    const tc_config *c = &d->m->cfg;
    size_t F = (size_t)c->ffn_dim;
    tc_fm_norm(d->x, w->w[TC_FFN_NORM], d->xn, c->dim, c->norm_eps, c->t.norm);
    double sx = quant(d, d->xn, c->dim);
    matvec(w->w[TC_W_UP], d->xn, d->u, c->dim, c->ffn_dim, 0);
    unscale(d->u, c->ffn_dim, w->scale[TC_W_UP], sx);
    add_bias(d->u, w->w[TC_B_UP], c->ffn_dim);
    if (c->t.ungated) {
        memcpy(d->g, d->u, F * sizeof *d->g);
        tc_fm_act(d->g, NULL, F, c->t.act);
    } else {
        matvec(w->w[TC_W_GATE], d->xn, d->g, c->dim, c->ffn_dim, 0);
        unscale(d->g, c->ffn_dim, w->scale[TC_W_GATE], sx);
        add_bias(d->g, w->w[TC_B_GATE], c->ffn_dim);
        tc_fm_act(d->g, d->u, F, c->t.act);
    }
    if (c->t.sub_norms)
        tc_fm_norm(d->g, w->w[TC_FFN_SUB_NORM], d->g, c->ffn_dim, c->norm_eps, c->t.norm);
    if (!w->w[TC_B_DOWN] && !c->t.post_norms && !tc_linear_is_ternary(c)) {
        matvec(w->w[TC_W_DOWN], d->g, d->x, c->ffn_dim, c->dim, 1);
        return;
    }
    sx = quant(d, d->g, c->ffn_dim);
    matvec(w->w[TC_W_DOWN], d->g, d->tmp, c->ffn_dim, c->dim, 0);
    unscale(d->tmp, c->dim, w->scale[TC_W_DOWN], sx);
    add_bias(d->tmp, w->w[TC_B_DOWN], c->dim);
    residual_add(d, d->tmp, w->w[TC_POST_FFN_NORM]);
}

int tc_decoder_step(tc_decoder *d, int32_t token, float *logits, tc_error *err)
{
    const tc_config *c = &d->m->cfg;
    if (d->pos >= d->max_len)
        return tc_err(err, "%s: the decoder holds %d positions and all are used", d->m->path,
                      d->max_len);
    if (token < 0 || token >= c->vocab_size)
        return tc_err(err, "%s: token %d is outside the vocabulary of %d", d->m->path, (int)token,
                      c->vocab_size);
    if (tc_model_embed_input(d->m, token, d->x, err))
        return TC_ERR;
    openblas_set_num_threads(d->n_threads);
    for (int l = 0; l < c->n_layers; l++) {
        const tc_layer *lay = &d->m->layers[l];
        if (lay->has_attn && !d->skip[l].attn)
            attention_step(d, l, &d->w->layers[l]);
        if (lay->has_mlp && !d->skip[l].mlp)
            mlp_step(d, &d->w->layers[l]);
    }
    d->pos++;
    if (logits) {
        tc_fm_norm(d->x, d->w->out_norm, d->xn, c->dim, c->norm_eps, c->t.norm);
        matvec(d->w->output, d->xn, logits, c->dim, c->vocab_size, 0);
        if (c->t.final_softcap > 0.0f)
            tc_fm_softcap(logits, (size_t)c->vocab_size, c->t.final_softcap);
    }
    return TC_OK;
}

int tc_decoder_feed(tc_decoder *d, const int32_t *tokens, size_t n, float *logits,
                    tc_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (tc_decoder_step(d, tokens[i], i + 1 == n ? logits : NULL, err))
            return TC_ERR;
    return TC_OK;
}

/* ---- Sampling ------------------------------------------------------------------ */

void tc_rng_seed(tc_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t tc_rng_next(tc_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tc_rng_uniform(tc_rng *r)
{
    return (double)(tc_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

int32_t tc_sample(const float *logits, int n, float temperature, tc_rng *rng)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    if (temperature <= 0.0f || !rng)
        return best;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp(((double)logits[i] - logits[best]) / temperature);
    double r = tc_rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += exp(((double)logits[i] - logits[best]) / temperature);
        if (r < acc)
            return i;
    }
    return best; /* r landed on the rounding slack at the top */
}

int tc_generate(tc_decoder *d, const int32_t *prompt, size_t n_prompt, size_t max_new,
                const tc_generate_opts *opts, int32_t *out, size_t *n_out, tc_error *err)
{
    tc_generate_opts def = {0.0f, 0, -1};
    if (!opts)
        opts = &def;
    *n_out = 0;
    if (n_prompt == 0)
        return tc_err(err, "%s: generation needs at least one prompt token", d->m->path);
    if (n_prompt + (max_new ? max_new - 1 : 0) > (size_t)d->max_len)
        return tc_err(err, "%s: %zu prompt and %zu new tokens exceed the decoder's %d positions",
                      d->m->path, n_prompt, max_new, d->max_len);
    tc_rng rng;
    tc_rng_seed(&rng, opts->seed);
    tc_decoder_reset(d);
    if (tc_decoder_feed(d, prompt, n_prompt, d->logits, err))
        return TC_ERR;
    int vocab = d->m->cfg.vocab_size;
    for (size_t i = 0; i < max_new; i++) {
        int32_t tok = tc_sample(d->logits, vocab, opts->temperature, &rng);
        out[(*n_out)++] = tok;
        if (tok == opts->stop_token || i + 1 == max_new)
            break;
        if (tc_decoder_step(d, tok, d->logits, err))
            return TC_ERR;
    }
    return TC_OK;
}
