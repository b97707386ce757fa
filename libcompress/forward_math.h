/* The arithmetic shared by the batched forward pass and the KV-cache decoder.
 * Both must compute the same function to float rounding: each step here is
 * written once so that they cannot drift apart. */
#ifndef TC_FORWARD_MATH_H
#define TC_FORWARD_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "tc/model.h"

/* out = x / sqrt(mean(x^2) + eps) * w (or * (1 + w): kind) over one row of
 * n.  The sum of squares runs in fp64 over eight fixed lanes: it vectorises,
 * and its order does not depend on the caller. */
static inline void tc_fm_norm(const float *x, const float *w, float *out, int n, float eps,
                              tc_norm_kind kind)
{
    enum { LANES = 8 };
    double acc[LANES] = {0.0}, ss = 0.0;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += (double)x[i + k] * x[i + k];
    for (int k = 0; k < LANES; k++)
        ss += acc[k];
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    if (kind == TC_NORM_RMS_1P) {
        for (i = 0; i < n; i++)
            out[i] = x[i] * scale * (1.0f + w[i]);
        return;
    }
    for (i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static inline void tc_fm_rmsnorm(const float *x, const float *w, float *out, int n, float eps)
{
    tc_fm_norm(x, w, out, n, eps, TC_NORM_RMS);
}

/* Each head of a row of n_heads * head_dim normed on its own (q/k norms). */
static inline void tc_fm_head_norm(float *v, const float *w, int n_heads, int head_dim, float eps,
                                   tc_norm_kind kind)
{
    for (int h = 0; h < n_heads; h++)
        tc_fm_norm(v + (size_t)h * head_dim, w, v + (size_t)h * head_dim, head_dim, eps, kind);
}

/* The inverse frequencies of a model's two ropes as a decoder keeps them:
 * computed once, except for a rope whose frequencies depend on the length
 * (dynamic, longrope), computed at each position for a sequence ending
 * there. */
typedef struct tc_fm_rope_freqs {
    float inv[2][TC_ROPE_MAX_PAIRS];
} tc_fm_rope_freqs;

static inline void tc_fm_rope_freqs_init(tc_fm_rope_freqs *f, const tc_config *c)
{
    for (int k = 0; k < 2; k++)
        tc_rope_inv_freq(&c->t.rope[k], 1, f->inv[k]);
}

/* cos/sin of position pos for layer l's rope (tc_rope_angles). */
static inline void tc_fm_rope_at(const tc_fm_rope_freqs *f, const tc_config *c, int layer, size_t pos, float *cs)
{
    int k = layer >= 0 && layer < TC_MAX_LAYERS && c->t.local[layer] ? 1 : 0;
    const tc_rope *r = &c->t.rope[k];
    if (!tc_rope_depends_on_length(r)) {
        tc_rope_angles(r, f->inv[k], pos, cs);
        return;
    }
    float inv[TC_ROPE_MAX_PAIRS];
    tc_rope_inv_freq(r, pos + 1, inv);
    tc_rope_angles(r, inv, pos, cs);
}

/* Rotates the first rot_dims dimensions of every head of one token's Q or K
 * row (the rest pass through); the layout says which two rows of a head
 * form pair i: (2i, 2i+1) or (i, i + rot_dims/2). */
static inline void tc_fm_rope(float *v, int n_heads, int head_dim, int rot_dims, tc_rope_layout layout,
                              const float *cs)
{
    int half = rot_dims / 2;
    for (int h = 0; h < n_heads; h++) {
        float *hv = v + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int ia = layout == TC_ROPE_ADJACENT ? 2 * i : i;
            int ib = layout == TC_ROPE_ADJACENT ? 2 * i + 1 : i + half;
            float a = hv[ia], b = hv[ib], c = cs[2 * i], s = cs[2 * i + 1];
            hv[ia] = a * c - b * s;
            hv[ib] = a * s + b * c;
        }
    }
}

/* The vectorised functions below promise the same bits on every path
 * (baseline, AVX2, AVX-512): no multiply-add may be fused.  GCC in ISO C mode
 * does not fuse; clang does by default when the target has FMA (AVX-512
 * does), so it is told not to. */
#ifdef __clang__
#define TC_FM_NO_CONTRACT _Pragma("STDC FP_CONTRACT OFF")
#else
#define TC_FM_NO_CONTRACT
#endif

/* Float bits, and a select by an all-ones/all-zeros mask: integer
 * operations, which compilers vectorise where float conditionals block
 * vectorisation (they might trap). */
static inline int32_t tc_fm_bits(float x)
{
    int32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static inline float tc_fm_float(int32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float tc_fm_select(int32_t mask, int32_t yes, int32_t no)
{
    return tc_fm_float((yes & mask) | (no & ~mask));
}

/* exp(x) in float without a library call, so that loops over rows
 * vectorise: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts so that
 * r is exact), exp(r) by Cephes' expf polynomial, times 2^n built in the
 * exponent bits.  Where the result is a normal float (-87.33 <= x <= 88.72)
 * it lies within a few ulp of exp(x); below it is 0 (expf would give a
 * subnormal), above infinity; NaN stays NaN. */
static inline float tc_fm_exp(float x)
{
TC_FM_NO_CONTRACT
    const float hi = 88.7228f, lo = -87.3365f;
    int32_t over = -(int32_t)(x > hi), under = -(int32_t)(x < lo), nan = -(int32_t)(x != x);
    float xc = tc_fm_select(over, tc_fm_bits(hi), tc_fm_bits(x));
    xc = tc_fm_select(under | nan, tc_fm_bits(under ? lo : 0.0f), tc_fm_bits(xc));
    float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float r2 = r * r;
    float poly = 1.9875691500e-4f;
    poly = poly * r + 1.3981999507e-3f;
    poly = poly * r + 8.3334519073e-3f;
    poly = poly * r + 4.1665795894e-2f;
    poly = poly * r + 1.6666665459e-1f;
    poly = poly * r + 5.0000001201e-1f;
    float e = poly * r2 + r + 1.0f;
    /* 2^n in two halves: n reaches 128 just below the overflow limit. */
    int32_t n = (int32_t)fn, half = n / 2;
    e *= tc_fm_float((half + 127) << 23);
    e *= tc_fm_float((n - half + 127) << 23);
    e = tc_fm_select(over, 0x7f800000, tc_fm_bits(e));
    e = tc_fm_select(under, 0, tc_fm_bits(e));
    return tc_fm_select(nan, tc_fm_bits(x), tc_fm_bits(e));
}

/* p = softmax(p) over n scaled scores: the batched pass and the decoder
 * normalise attention weights with this one function.  The exponentials
 * are one vectorisable pass; their sum is taken in fp64 over eight fixed
 * lanes (a fixed order, so every thread count gives the same result). */
static inline void tc_fm_softmax(float *p, size_t n)
{
TC_FM_NO_CONTRACT
    enum { LANES = 8 };
    float mxl[LANES];
    for (int k = 0; k < LANES; k++)
        mxl[k] = -INFINITY;
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++)
            mxl[k] = p[j + k] > mxl[k] ? p[j + k] : mxl[k];
    float mx = -INFINITY;
    for (int k = 0; k < LANES; k++)
        mx = mxl[k] > mx ? mxl[k] : mx;
    for (; j < n; j++)
        mx = p[j] > mx ? p[j] : mx;
    for (j = 0; j < n; j++)
        p[j] = tc_fm_exp(p[j] - mx);
    double acc[LANES] = {0.0};
    for (j = 0; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += p[j + k];
    double sum = 0.0;
    for (int k = 0; k < LANES; k++)
        sum += acc[k];
    for (; j < n; j++)
        sum += p[j];
    float inv = (float)(1.0 / sum);
    for (j = 0; j < n; j++)
        p[j] *= inv;
}

/* g = silu(g) * u over a row of n, with tc_fm_exp so that the loop
 * vectorises. */
static inline void tc_fm_swiglu(float *restrict g, const float *restrict u, size_t n)
{
TC_FM_NO_CONTRACT
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + tc_fm_exp(-g[i])) * u[i];
}

/* The tanh approximation of GELU, 0.5 x (1 + tanh(y)) with
 * y = sqrt(2/pi) (x + 0.044715 x^3), written as x * sigmoid(2y) so that it
 * is one tc_fm_exp and the loop vectorises; within a few float ulps of the
 * tanh form. */
static inline float tc_fm_gelu_tanh(float x)
{
TC_FM_NO_CONTRACT
    float y = 0.7978845608f * (x + 0.044715f * x * x * x);
    return x / (1.0f + tc_fm_exp(-2.0f * y));
}

static inline void tc_fm_geglu_tanh(float *restrict g, const float *restrict u, size_t n)
{
TC_FM_NO_CONTRACT
    for (size_t i = 0; i < n; i++)
        g[i] = tc_fm_gelu_tanh(g[i]) * u[i];
}

/* g = act(g) (* u when u is not NULL), in the forms transformers writes
 * them. */
static inline float tc_fm_act1(float x, tc_act act)
{
    switch (act) {
    case TC_ACT_SILU: return x / (1.0f + tc_fm_exp(-x));
    case TC_ACT_GELU: return (float)(0.5 * x * (1.0 + erf((double)x * M_SQRT1_2)));
    case TC_ACT_GELU_TANH: return tc_fm_gelu_tanh(x);
    case TC_ACT_RELU2: return x > 0.0f ? x * x : 0.0f;
    case TC_ACT_COUNT: break;
    }
    return x;
}

static inline void tc_fm_act(float *restrict g, const float *restrict u, size_t n, tc_act act)
{
    if (act == TC_ACT_SILU && u) {
        tc_fm_swiglu(g, u, n);
        return;
    }
    if (act == TC_ACT_GELU_TANH && u) {
        tc_fm_geglu_tanh(g, u, n);
        return;
    }
    if (act == TC_ACT_RELU2) { /* the same values without a branch a value: relu² of random
                                  signs mispredicted every other one (5 % of a prompt) */
        size_t i = 0;
#if defined(__SSE__)
        const __m128 z = _mm_setzero_ps(); /* maxps(x, 0): 0 for x <= 0 and NaN, as below */
        for (; i + 4 <= n; i += 4) {
            __m128 m = _mm_max_ps(_mm_loadu_ps(g + i), z);
            m = _mm_mul_ps(m, m);
            _mm_storeu_ps(g + i, u ? _mm_mul_ps(m, _mm_loadu_ps(u + i)) : m);
        }
#endif
        for (; i < n; i++)
            g[i] = tc_fm_act1(g[i], act) * (u ? u[i] : 1.0f);
        return;
    }
    for (size_t i = 0; i < n; i++)
        g[i] = tc_fm_act1(g[i], act) * (u ? u[i] : 1.0f);
}

/* cap * tanh(x / cap) over n values (softcapping; cap > 0), with tanh(z) =
 * 1 - 2 / (exp(2z) + 1) so that the loop vectorises (absolute error of a
 * few float ulps of cap; the argument is clamped where exp would overflow,
 * where tanh is 1 in float anyway). */
static inline void tc_fm_softcap(float *x, size_t n, float cap)
{
TC_FM_NO_CONTRACT
    float inv = 1.0f / cap;
    for (size_t i = 0; i < n; i++) {
        float z = x[i] * inv;
        z = z > 40.0f ? 40.0f : z < -40.0f ? -40.0f : z;
        x[i] = cap * (1.0f - 2.0f / (tc_fm_exp(2.0f * z) + 1.0f));
    }
}

/* ---- Ternary linear layers (tc_linear_kind) --------------------------------
 * The input of every ternary linear layer is quantized per token to int8 as
 * transformers' BitNet layers do it: s_x = 127 / max(max|x|, 1e-5),
 * x_q = clamp(round(x s_x), -128, 127) with halves rounded to even (torch's
 * round).  BitLinear computes in the model's precision, which the float64
 * reference makes double here; AutoBitLinear's ActQuant casts to float32 and
 * computes there.  Rounding is (v + 1.5 2^k) - 1.5 2^k after the clamp
 * (the same as clamping after it, the bounds being integers): exact
 * round-half-even in the default rounding mode, and it vectorises where a
 * call to rint would not.  NaN becomes 0. */
static inline double tc_fm_act_scale(const float *x, size_t n, tc_linear_kind kind)
{
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    if (kind == TC_LINEAR_AUTOBITLINEAR)
        return (double)(127.0f / (amax > 1e-5f ? amax : 1e-5f));
    return 127.0 / ((double)amax > 1e-5 ? (double)amax : 1e-5);
}

static inline float tc_fm_act_code_f64(float x, double s)
{
TC_FM_NO_CONTRACT
    double v = (double)x * s;
    v = v > 127.0 ? 127.0 : v < -128.0 ? -128.0 : v == v ? v : 0.0;
    return (float)((v + 6755399441055744.0) - 6755399441055744.0);
}

static inline float tc_fm_act_code_f32(float x, float s)
{
TC_FM_NO_CONTRACT
    float v = x * s;
    v = v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v == v ? v : 0.0f;
    return (v + 12582912.0f) - 12582912.0f;
}

/* One token's input of n values in place: x[i] becomes its int8 value (an
 * integer in float, so that products with ternary codes sum exactly); returns
 * s_x. */
static inline double tc_fm_act_quant_f32(float *x, size_t n, tc_linear_kind kind)
{
    double s = tc_fm_act_scale(x, n, kind);
    if (kind == TC_LINEAR_AUTOBITLINEAR) {
        float sf = (float)s;
        for (size_t i = 0; i < n; i++)
            x[i] = tc_fm_act_code_f32(x[i], sf);
    } else {
        for (size_t i = 0; i < n; i++)
            x[i] = tc_fm_act_code_f64(x[i], s);
    }
    return s;
}

/* The same into int8 codes (the packed runner's kernels take them). */
static inline double tc_fm_act_quant_i8(const float *x, size_t n, tc_linear_kind kind, int8_t *q)
{
    double s = tc_fm_act_scale(x, n, kind);
    if (kind == TC_LINEAR_AUTOBITLINEAR) {
        float sf = (float)s;
        for (size_t i = 0; i < n; i++)
            q[i] = (int8_t)tc_fm_act_code_f32(x[i], sf);
    } else {
        for (size_t i = 0; i < n; i++)
            q[i] = (int8_t)tc_fm_act_code_f64(x[i], s);
    }
    return s;
}

/* A ternary layer's output from its exact integer sums y[i]: divided by
 * w_s * s_x in double (BitLinear's post_quant_process), rounded once. */
static inline void tc_fm_unscale(float *y, size_t n, float w_scale, double s_x)
{
    double inv = 1.0 / ((double)w_scale * s_x);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)((double)y[i] * inv);
}

/* The attention of one layer as the traits define it: the scale of q.k, the
 * softcap of the scores, and the first key a query at position pos sees. */
static inline float tc_fm_attn_scale(const tc_config *c)
{
    return c->t.attn_scale != 0.0f ? c->t.attn_scale : 1.0f / sqrtf((float)c->head_dim);
}

static inline size_t tc_fm_first_key(const tc_config *c, int layer, size_t pos)
{
    if (!tc_layer_is_local(c, layer) || pos + 1 <= (size_t)c->t.window)
        return 0;
    return pos + 1 - (size_t)c->t.window;
}

/* One query against n_keys keys of one kv head.  Keys come transposed,
 * kt[d * kt_ld + j] = component d of key j, so that every score is built by
 * contiguous, vectorisable multiply-adds over keys in a fixed order (no
 * horizontal sums); values are rows, v[j * v_stride + d].  Leaves the
 * attention weights in p (n_keys floats) and their weighted sum of values in
 * out (head_dim floats).  The decoder's kernel; the batched pass computes the
 * same function with matrix products (forward.c).
 *
 * Decoding a long context spends much of each token here, and the baseline
 * x86-64 build has 4-lane vectors only, so attend.c compiles it once per
 * vector width and picks by the CPU. Every version computes the same sums
 * in the same order (nothing is fused into FMA: -ffp-contract=off), so the
 * result does not depend on the CPU (test_forward.c checks it). */
void tc_fm_attend(const float *restrict q, const float *restrict kt, size_t kt_ld,
                  const float *restrict v, size_t v_stride, size_t n_keys, int head_dim, float scale,
                  float softcap, float *restrict p, float *restrict out);

/* out[t * ld + r] = x[t] . W[r] for T rows of x [T][cols] and rows r0..r1-1
 * of W [rows][cols]: the packed runner's fp32 products (output head, linear
 * layers stored in float).  Every dot product sums over sixteen fixed lanes
 * in a fixed order (dense.c), so one token and a batch of tokens, any vector
 * width and any split of the rows give the same bits: the runner's batched
 * logits equal its one-token logits exactly, which BLAS (sgemv for one
 * token, sgemm for several) does not promise. */
void tc_fm_dense_rows(const float *x, int T, const float *W, int cols, int r0, int r1, float *out, size_t ld);

/* The key cache of one layer as the decoders keep it: transposed per kv
 * head, component e of a key at row e of [kvdim][ml], so that tc_fm_attend
 * reads each head's keys as rows of positions. Stores key k at position pos. */
static inline void tc_fm_cache_key(float *kl, size_t ml, const float *k, int kvdim, size_t pos)
{
    for (int e = 0; e < kvdim; e++)
        kl[(size_t)e * ml + pos] = k[e];
}

/* Query heads h0..h1-1 of q, at position n_keys - 1 of layer `layer`,
 * against the positions it sees of that layer's caches (keys as
 * tc_fm_cache_key stores them, values [position][kvdim]); head h's output
 * goes to out + h * head_dim. */
static inline void tc_fm_attend_heads(const float *q, const float *kl, const float *vl, size_t ml,
                                      const tc_config *c, int layer, int h0, int h1, size_t n_keys,
                                      float *probs, float *out)
{
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t kvdim = (size_t)c->n_kv_heads * (size_t)hd;
    size_t k0 = n_keys ? tc_fm_first_key(c, layer, n_keys - 1) : 0;
    float scale = tc_fm_attn_scale(c);
    for (int h = h0; h < h1; h++) {
        size_t kv = (size_t)(h / group) * (size_t)hd;
        tc_fm_attend(q + (size_t)h * (size_t)hd, kl + kv * ml + k0, ml, vl + k0 * kvdim + kv, kvdim,
                     n_keys - k0, hd, scale, c->t.attn_softcap, probs, out + (size_t)h * (size_t)hd);
    }
}

/* ---- Differential attention (DiffLlama, transformers' eager DiffLlamaAttention) ----
 * Query heads j and j + H/2 (H = n_heads) form pair j.  Each head's softmax
 * map is the usual one over its own key/value head; the pair's map is
 * D = A_j - lambda A_(j+H/2), and its output, 2 * head_dim wide at columns
 * j * 2hd of the output projection's input, is D times the values of both
 * heads' kv heads side by side, RMS-normed without a weight and multiplied
 * by 1 - lambda_init.  lambda is the layer's: exp(lq1 . lk1) - exp(lq2 . lk2)
 * + lambda_init, lambda_init = 0.8 - 0.6 exp(-0.3 layer). */
static inline double tc_fm_diff_lambda_init(int layer)
{
    return 0.8 - 0.6 * exp(-0.3 * (double)layer);
}

/* The dot products are summed in float, as transformers does
 * (torch.sum(..., dtype=float32)); an absent vector counts as zero. */
static inline double tc_fm_diff_lambda(const float *lq1, const float *lk1, const float *lq2, const float *lk2,
                                       int n, int layer)
{
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = 0; lq1 && lk1 && i < n; i++)
        s1 += lq1[i] * lk1[i];
    for (int i = 0; lq2 && lk2 && i < n; i++)
        s2 += lq2[i] * lk2[i];
    return (double)expf(s1) - (double)expf(s2) + tc_fm_diff_lambda_init(layer);
}

/* The pair's output row: RMSNorm without a weight (fp64 sum), times scale. */
static inline void tc_fm_diff_norm(float *o, int n, float eps, float scale)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)o[i] * o[i];
    float k = (float)(1.0 / sqrt(ss / n + (double)eps)) * scale;
    for (int i = 0; i < n; i++)
        o[i] *= k;
}

/* The decoder's differential attention of one query (every pair) against
 * n_keys positions of the layer's caches (as tc_fm_attend_heads);
 * probs holds 2 * n_keys floats, tmp head_dim. */
static inline void tc_fm_attend_diff(const float *q, const float *kl, const float *vl, size_t ml, const tc_config *c,
                                     int layer, double lambda, size_t n_keys, float *probs, float *tmp, float *out)
{
    int hd = c->head_dim, half = c->n_heads / 2, group = c->n_heads / c->n_kv_heads;
    size_t kvdim = (size_t)c->n_kv_heads * (size_t)hd;
    size_t k0 = n_keys ? tc_fm_first_key(c, layer, n_keys - 1) : 0, n = n_keys - k0;
    float scale = tc_fm_attn_scale(c), lam = (float)lambda;
    for (int j = 0; j < half; j++) {
        size_t kva = (size_t)(j / group) * (size_t)hd, kvb = (size_t)((j + half) / group) * (size_t)hd;
        tc_fm_attend(q + (size_t)j * hd, kl + kva * ml + k0, ml, vl + k0 * kvdim + kva, kvdim, n, hd, scale,
                     c->t.attn_softcap, probs, tmp);
        tc_fm_attend(q + (size_t)(j + half) * hd, kl + kvb * ml + k0, ml, vl + k0 * kvdim + kvb, kvdim, n, hd, scale,
                     c->t.attn_softcap, probs + n, tmp);
        for (size_t k = 0; k < n; k++)
            probs[k] -= lam * probs[n + k];
        float *o = out + (size_t)j * 2 * hd;
        for (int d = 0; d < 2 * hd; d++)
            o[d] = 0.0f;
        for (size_t k = 0; k < n; k++) {
            const float *va = vl + (k0 + k) * kvdim + kva, *vb = vl + (k0 + k) * kvdim + kvb;
            for (int d = 0; d < hd; d++) {
                o[d] += probs[k] * va[d];
                o[hd + d] += probs[k] * vb[d];
            }
        }
        tc_fm_diff_norm(o, 2 * hd, c->norm_eps, (float)(1.0 - tc_fm_diff_lambda_init(layer)));
    }
}

#endif
