/* One writer for every format: builds the list of output tensors with fill
 * callbacks (names from the target's naming, dtype conversion, rope layout
 * conversion) and hands it to the format's container writer. */
#include "tc/model_write.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model_internal.h"
#include "tc/checked.h"
#include "tc/ggml_ternary.h"
#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/llama2c.h"
#include "tc/outfile.h"
#include "tc/vocab.h"

tc_rope_layout tc_format_rope_layout(tc_format fmt, tc_arch arch)
{
    if (fmt == TC_FORMAT_HF || fmt == TC_FORMAT_MEMORY)
        return TC_ROPE_HALF;
    /* llama.cpp's rope type of the family: NEOX (rotate-half) or NORM (adjacent). */
    const tc_gguf_family *f = fmt == TC_FORMAT_GGUF ? tc_gguf_family_of(arch, 0) : NULL;
    return f ? f->layout : TC_ROPE_ADJACENT;
}

/* One output tensor's provenance. */
typedef struct out_item {
    const tc_model_src *src;
    int layer, which; /* which: a tc_role, or a tc_global when layer == -1 */
    tc_rope_layout to;
    int stub;         /* a GGUF stand-in for a dropped sub-layer (see stand_in) */
    int parts;        /* > 0: a fused tensor of roles which .. which+parts-1, rows one after the other */
    int tern;         /* 1: a ternary linear's codes, 2: its scale (tc_model_src.ternary) */
    char name[160];
} out_item;

/* The heads layer l keeps, or NULL when it keeps the source's. */
static const tc_head_layout *layer_heads(const tc_model_src *s, int l)
{
    return s->heads && l >= 0 ? &s->heads[l] : NULL;
}

/* Does role r of a layer keeping hl's heads hold per-head rows (q, k, v and
 * their biases) or columns (the output projection)?  Which heads, and how
 * many the source has. */
static int head_role(const tc_config *c, const tc_head_layout *hl, int r, const int **src, int *n_out,
                     int *n_src, int *cols)
{
    if (!hl)
        return 0;
    switch (r) {
    case TC_WQ: case TC_BQ: case TC_WO:
        *src = hl->q_src;
        *n_out = hl->n_q;
        *n_src = c->n_heads;
        break;
    case TC_WK: case TC_WV: case TC_BK: case TC_BV:
        *src = hl->kv_src;
        *n_out = hl->n_kv;
        *n_src = c->n_kv_heads;
        break;
    default: return 0;
    }
    *cols = r == TC_WO;
    return 1;
}

/* The source's whole tensor of a head role, cut to the kept heads' rows (or
 * columns) into f (n values). */
static int fill_heads(const out_item *it, int role, float *f, uint64_t n, const char *name, tc_error *err)
{
    const tc_model_src *s = it->src;
    const tc_config *c = &s->cfg;
    const int *src = NULL;
    int n_out = 0, n_src = 0, by_cols = 0;
    head_role(c, layer_heads(s, it->layer), role, &src, &n_out, &n_src, &by_cols);
    int64_t shape[2];
    int nd = tc_role_shape(c, (tc_role)role, shape);
    uint64_t full = (uint64_t)shape[0] * (uint64_t)(nd == 2 ? shape[1] : 1), hd = (uint64_t)c->head_dim;
    uint64_t other = by_cols ? (uint64_t)shape[0] : nd == 2 ? (uint64_t)shape[1] : 1;
    if (n != (uint64_t)n_out * hd * other)
        return tc_err(err, "tensor '%s': internal: %llu values for %d heads", name, (unsigned long long)n, n_out);
    float *all = malloc(full ? (size_t)full * sizeof *all : 1);
    if (!all)
        return tc_err(err, "tensor '%s': out of memory", name);
    int rc = s->fill(s->ctx, it->layer, role, all, full, err);
    for (int i = 0; rc == TC_OK && i < n_out; i++) {
        if (src[i] < 0 || src[i] >= n_src) {
            rc = tc_err(err, "tensor '%s': head %d is not one of the source's %d", name, src[i], n_src);
            break;
        }
        if (by_cols) /* [dim][heads * hd]: the head's columns of every row */
            for (uint64_t r = 0; r < other; r++)
                memcpy(f + r * (uint64_t)n_out * hd + (uint64_t)i * hd,
                       all + r * (uint64_t)n_src * hd + (uint64_t)src[i] * hd, (size_t)hd * sizeof *f);
        else /* [heads * hd][cols]: the head's rows */
            memcpy(f + (uint64_t)i * hd * other, all + (uint64_t)src[i] * hd * other, (size_t)(hd * other) * sizeof *f);
    }
    free(all);
    return rc;
}

/* ---- Ternary linears ---- */

/* The codes of a ternary role in the target's rope layout, and its scale
 * as a multiplier (GGUF) or a divisor (HF's weight_scale). */
static int ternary_codes(const out_item *it, int8_t **codes, float *mul, float *div, tc_error *err)
{
    const tc_model_src *s = it->src;
    int64_t shape[2];
    tc_role_shape(&s->cfg, (tc_role)it->which, shape);
    size_t n = (size_t)(shape[0] * shape[1]);
    int8_t *c = malloc(n ? n : 1);
    float scale = 0.0f;
    int divides = 1;
    if (!c)
        return tc_err(err, "tensor '%s': out of memory", it->name);
    if (s->ternary(s->ctx, it->layer, it->which, c, &scale, &divides, err)) {
        free(c);
        return TC_ERR;
    }
    *mul = divides ? 1.0f / scale : scale;
    *div = divides ? scale : 1.0f / scale;
    int is_qk = it->which == TC_WQ || it->which == TC_WK;
    if (is_qk && s->cfg.rope_layout != it->to) {
        float *f = malloc(2 * n * sizeof *f);
        if (!f) {
            free(c);
            return tc_err(err, "tensor '%s': out of memory", it->name);
        }
        for (size_t i = 0; i < n; i++)
            f[i] = c[i];
        tc_rope_permute_rows(f, f + n, it->which == TC_WQ ? s->cfg.n_heads : s->cfg.n_kv_heads, s->cfg.head_dim,
                             (int)shape[1], s->cfg.rope_layout, it->to);
        for (size_t i = 0; i < n; i++)
            c[i] = (int8_t)f[n + i];
        free(f);
    }
    *codes = c;
    return TC_OK;
}

static int fill_ternary(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const out_item *it = ctx;
    int8_t *c = NULL;
    float mul = 0.0f, div = 0.0f;
    if (ternary_codes(it, &c, &mul, &div, err))
        return TC_ERR;
    int64_t shape[2];
    tc_role_shape(&it->src->cfg, (tc_role)it->which, shape);
    size_t rows = (size_t)shape[0], cols = (size_t)shape[1], n = rows * cols;
    int rc = TC_OK;
    if (it->tern == 2) {
        /* HF: weight_scale, the divisor; GGUF: `.scale`, the multiplier. */
        size_t len = strlen(t->name);
        int gguf = len > 6 && strcmp(t->name + len - 6, ".scale") == 0;
        float v = gguf ? mul : div;
        rc = tc_convert_from_f32(t->dtype, &v, 1, dst, err);
    } else if (t->dtype == TC_U8) {
        /* transformers' pack_weights: byte [i][k] holds rows i, i + R, i + 2R,
         * i + 3R (R = rows / 4) in bits 0-1 .. 6-7, each as code + 1. */
        size_t R = rows / 4;
        uint8_t *o = dst;
        for (size_t i = 0; i < R; i++)
            for (size_t k = 0; k < cols; k++) {
                unsigned v = 0;
                for (size_t j = 0; j < 4; j++)
                    v |= (unsigned)(c[(j * R + i) * cols + k] + 1) << (2 * j);
                o[i * cols + k] = (uint8_t)v;
            }
    } else if (t->dtype == TC_I2_S) {
        rc = tc_i2s_encode(c, n, mul, dst, err);
    } else if (t->dtype == TC_TQ1_0 || t->dtype == TC_TQ2_0) {
        /* d = 1 in every block: the scale is the `.scale` tensor's, exactly. */
        uint64_t row_bytes;
        size_t nb = cols / TC_TQ_BLOCK_ELEMS;
        float *ones = malloc((nb ? nb : 1) * sizeof *ones);
        rc = ones ? tc_ggml_ternary_row_bytes(t->dtype, (int64_t)cols, &row_bytes, err)
                  : tc_err(err, "tensor '%s': out of memory", t->name);
        for (size_t b = 0; rc == TC_OK && b < nb; b++)
            ones[b] = 1.0f;
        for (size_t i = 0; rc == TC_OK && i < rows; i++)
            rc = tc_ggml_ternary_encode(t->dtype, c + i * cols, ones, (int64_t)cols, (uint8_t *)dst + i * row_bytes,
                                        err);
        free(ones);
    } else if (t->dtype == TC_F32) {
        float *o = dst;
        for (size_t i = 0; i < n; i++)
            o[i] = (float)c[i] * mul;
    } else {
        rc = tc_err(err, "tensor '%s': internal: ternary codes as %s", t->name, tc_dtype_name(t->dtype));
    }
    free(c);
    if (rc)
        tc_err_prefix(err, "tensor '%s'", t->name);
    return rc;
}

/* n fp32 values of one role of the item's layer into f, in the target's
 * rope layout. */
static int fill_role(const out_item *it, int role, float *f, uint64_t n, int cols, const char *name,
                     tc_error *err)
{
    const tc_model_src *s = it->src;
    if (it->stub) {
        for (uint64_t i = 0; i < n; i++)
            f[i] = role == TC_FFN_NORM || role == TC_ATTN_NORM ? 1.0f : 0.0f;
        return TC_OK;
    }
    const tc_head_layout *hl = layer_heads(s, it->layer);
    const int *hsrc;
    int hn, hs, hc;
    if (head_role(&s->cfg, hl, role, &hsrc, &hn, &hs, &hc) ? fill_heads(it, role, f, n, name, err)
                                                           : s->fill(s->ctx, it->layer, role, f, n, err))
        return TC_ERR;
    int is_qk = it->layer >= 0 && (role == TC_WQ || role == TC_WK || role == TC_BQ || role == TC_BK);
    if (!is_qk || s->cfg.rope_layout == it->to)
        return TC_OK;
    float *p = malloc(n ? (size_t)n * sizeof *p : 1);
    if (!p)
        return tc_err(err, "tensor '%s': out of memory", name);
    int heads = role == TC_WQ || role == TC_BQ ? (hl ? hl->n_q : s->cfg.n_heads) : (hl ? hl->n_kv : s->cfg.n_kv_heads);
    tc_rope_permute_rows(f, p, heads, s->cfg.head_dim, cols, s->cfg.rope_layout, it->to);
    memcpy(f, p, (size_t)n * sizeof *p);
    free(p);
    return TC_OK;
}

static int fill_item(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const out_item *it = ctx;
    const tc_model_src *s = it->src;
    if (t->dtype != s->dtype && t->n_dims == 2 && s->encode) {
        if (!it->parts) {
            uint64_t nb;
            if (tc_out_tensor_nbytes(t, &nb, err))
                return TC_ERR;
            return s->encode(s->ctx, it->layer, it->which, it->to, dst, nb, err);
        }
        /* A fused tensor of encoded rows: each part's rows in turn (every
         * type tc encodes is whole rows of blocks). */
        uint8_t *p = dst;
        for (int k = 0; k < it->parts; k++) {
            tc_out_tensor part = *t;
            int64_t shape[2];
            tc_role_shape(&s->cfg, (tc_role)(it->which + k), shape);
            part.shape[0] = shape[0];
            uint64_t nb;
            if (tc_out_tensor_nbytes(&part, &nb, err) ||
                s->encode(s->ctx, it->layer, it->which + k, it->to, p, nb, err))
                return TC_ERR;
            p += nb;
        }
        return TC_OK;
    }
    uint64_t n = 1, bytes;
    for (int i = 0; i < t->n_dims; i++)
        n *= (uint64_t)t->shape[i];
    if (tc_mul_u64(n, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return tc_err(err, "tensor '%s' is too large", t->name);
    float *f = malloc(bytes ? (size_t)bytes : 1);
    if (!f)
        return tc_err(err, "tensor '%s': out of memory", t->name);
    int rc = TC_OK, cols = t->n_dims == 2 ? (int)t->shape[1] : 1;
    if (it->parts) {
        /* A fused tensor: each part's rows in turn. */
        uint64_t off = 0;
        for (int k = 0; rc == TC_OK && k < it->parts; k++) {
            int64_t shape[2];
            tc_role_shape(&s->cfg, (tc_role)(it->which + k), shape);
            uint64_t pn = (uint64_t)shape[0] * (uint64_t)cols;
            rc = off + pn > n ? tc_err(err, "tensor '%s': internal: parts exceed the tensor", t->name)
                              : fill_role(it, it->which + k, f + off, pn, cols, t->name, err);
            off += pn;
        }
    } else {
        rc = fill_role(it, it->which, f, n, cols, t->name, err);
    }
    if (rc == TC_OK)
        rc = tc_convert_from_f32(t->dtype, f, n, dst, err);
    free(f);
    return rc;
}

/* A role's shape in output layer l: the config's, with the kept heads. */
static void role_dims(const tc_model_src *s, int l, int role, int *nd, int64_t *shape)
{
    *nd = tc_role_shape(&s->cfg, (tc_role)role, shape);
    const int *src;
    int n_out, n_src, by_cols;
    if (head_role(&s->cfg, layer_heads(s, l), role, &src, &n_out, &n_src, &by_cols))
        shape[by_cols ? 1 : 0] = (int64_t)n_out * s->cfg.head_dim;
}

/* Stand-ins for llama.cpp's `deci` graph, which tc's reader recognises and
 * reads as dropped sub-layers:
 *  - MLP: a layer whose feed_forward_length is 0 contributes nothing at all
 *    (its attention output is discarded too), so a dropped MLP is written as
 *    an MLP of width 1 whose down projection is zero: it adds exactly 0.
 *  - attention of layer 0: llama.cpp takes the head size and RoPE width from
 *    layer 0's head count, so that layer cannot have 0 heads; its dropped
 *    attention is written as deci's "linear attention" (heads, no kv heads:
 *    attn_norm and a [dim][dim] attn_output) with a zero output projection. */
static int stand_in(const tc_model_src *s, int stubs, int l, int r)
{
    if (!stubs)
        return 0;
    if (!tc_role_is_attn(r))
        return s->drop_mlp && s->drop_mlp[l] &&
               (r == TC_FFN_NORM || r == TC_W_GATE || r == TC_W_UP || r == TC_W_DOWN);
    return l == 0 && s->drop_attn && s->drop_attn[0] && (r == TC_ATTN_NORM || r == TC_WO);
}

static int role_kept(const tc_model_src *s, int l, int r)
{
    if (!tc_role_needed(&s->cfg, (tc_role)r))
        return 0;
    if (tc_role_is_attn(r))
        return !(s->drop_attn && s->drop_attn[l]);
    return !(s->drop_mlp && s->drop_mlp[l]);
}

/* A ternary linear (o, x: its item as built for the float path) stored as
 * codes, and the item of its scale (so, sx); returns 1 when a scale item
 * was made, -1 when HF's packed layout cannot hold the rows.
 * (tc_model_src.ternary says what goes where.) */
static int ternary_item(const tc_model_src *s, tc_format fmt, tc_out_tensor *o, out_item *x, tc_out_tensor *so,
                        out_item *sx)
{
    int64_t rows = o->shape[0], cols = o->shape[1];
    x->tern = 1;
    o->fill = fill_ternary;
    *sx = *x;
    sx->tern = 2;
    *so = (tc_out_tensor){.name = sx->name, .dtype = TC_F32, .n_dims = 1, .shape = {1}, .fill = fill_ternary,
                          .ctx = sx};
    if (fmt == TC_FORMAT_HF) {
        if (rows % 4 != 0)
            return -1; /* transformers' packed layout holds four rows to a byte */
        o->dtype = TC_U8;
        o->shape[0] = rows / 4;
        so->dtype = s->scale_dtype == TC_BF16 || s->scale_dtype == TC_F16 ? s->scale_dtype : TC_F32;
        snprintf(sx->name, sizeof sx->name, "%s_scale", x->name);
        return 1;
    }
    tc_dtype want = s->ternary_dtype;
    int64_t block = want == TC_I2_S ? TC_I2S_BLOCK : TC_TQ_BLOCK_ELEMS;
    if (cols % block != 0) {
        o->dtype = TC_F32; /* code * scale, exactly */
        return 0;
    }
    o->dtype = want;
    if (want == TC_I2_S)
        return 0; /* the scale is in the tensor's tail */
    size_t len = strlen(x->name);
    if (len > 7 && strcmp(x->name + len - 7, ".weight") == 0)
        snprintf(sx->name, sizeof sx->name, "%.*s.scale", (int)(len - 7), x->name);
    return 1;
}

/* Builds the output tensor list in the target's naming.  llama2.c order is
 * imposed by its writer; HF and GGUF get embeddings, layers, then head. */
static int build_list(const tc_model_src *s, const tc_naming *nm, tc_rope_layout to, tc_format fmt,
                      tc_out_tensor **out, out_item **items, size_t *count, tc_error *err)
{
    int stubs = fmt == TC_FORMAT_GGUF;
    /* Ternary linears written as codes: every one of a GGUF, a bitlinear's of an HF directory. */
    int tern = s->ternary && tc_linear_is_ternary(&s->cfg) &&
               (fmt == TC_FORMAT_GGUF || s->cfg.t.linear == TC_LINEAR_BITLINEAR);
    size_t cap = 3 + (size_t)s->cfg.n_layers * TC_N_ROLES * 2, n = 0;
    tc_out_tensor *t = calloc(cap, sizeof *t);
    out_item *it = calloc(cap, sizeof *it);
    if (!t || !it) {
        free(t);
        free(it);
        return tc_err(err, "out of memory");
    }
    /* Norms stay fp32 (llama.cpp and transformers both accept it) unless an
     * HF source asks for its own. */
    const tc_dtype norm_dt = fmt == TC_FORMAT_HF && (s->norm_dtype == TC_BF16 || s->norm_dtype == TC_F16)
                                 ? s->norm_dtype
                                 : TC_F32;
    /* Globals first. */
    for (int g = TC_G_EMBD; g <= TC_G_OUTPUT; g++) {
        if (g == TC_G_OUTPUT && s->cfg.tied_embeddings)
            continue;
        const char *name = g == TC_G_EMBD ? nm->tok_embd : g == TC_G_OUT_NORM ? nm->out_norm : nm->output;
        out_item *x = &it[n];
        x->src = s;
        x->layer = -1;
        x->which = g;
        x->to = to;
        snprintf(x->name, sizeof x->name, "%s", name);
        tc_out_tensor *o = &t[n++];
        o->name = x->name;
        o->dtype = g == TC_G_OUT_NORM ? norm_dt : s->dtype;
        if (g == TC_G_OUT_NORM) {
            o->n_dims = 1;
            o->shape[0] = s->cfg.dim;
        } else {
            o->n_dims = 2;
            o->shape[0] = s->cfg.vocab_size;
            o->shape[1] = s->cfg.dim;
            if (s->dtype_of)
                o->dtype = s->dtype_of(s->ctx, -1, g);
        }
        o->fill = fill_item;
        o->ctx = x;
    }
    for (int l = 0; l < s->cfg.n_layers; l++) {
        for (int r = 0; r < TC_N_ROLES; r++) {
            int stub = stand_in(s, stubs, l, r);
            if (!role_kept(s, l, r) && !stub)
                continue;
            /* Fused tensors hold q, k, v (or gate, up) as consecutive rows:
             * written once, at their first role. */
            int parts = nm->fused_qkv && r == TC_WQ ? 3 : nm->fused_gate_up && r == TC_W_GATE ? 2 : 0;
            if ((nm->fused_qkv && (r == TC_WK || r == TC_WV)) || (nm->fused_gate_up && r == TC_W_UP))
                continue;
            int mixed = 0; /* the parts of a fused tensor share one stored type */
            for (int k = 1; parts && s->dtype_of && k < parts; k++)
                mixed |= s->dtype_of(s->ctx, l, r + k) != s->dtype_of(s->ctx, l, r);
            if (parts && s->heads) {
                free(t);
                free(it);
                return tc_err(err, "dropped heads of fused-tensor models are not implemented");
            }
            if (parts && (stub || mixed)) {
                free(t);
                free(it);
                return tc_err(err, "%s of fused-tensor models are not implemented",
                              stub ? "stand-ins for dropped sub-layers" : "parts of one fused tensor in different types");
            }
            if (!nm->role[r] && !parts) {
                free(t);
                free(it);
                return tc_err(err, "the target format has no tensor name for role %s of this model",
                              tc_role_name((tc_role)r));
            }
            out_item *x = &it[n];
            x->src = s;
            x->layer = l;
            x->which = r;
            x->to = to;
            x->stub = stub;
            x->parts = parts;
            if (parts)
                snprintf(x->name, sizeof x->name, r == TC_WQ ? nm->fused_qkv : nm->fused_gate_up, l);
            else
                tc_naming_format(nm, (tc_role)r, l, x->name, sizeof x->name);
            tc_out_tensor *o = &t[n++];
            o->name = x->name;
            role_dims(s, l, r, &o->n_dims, o->shape);
            for (int k = 1; k < parts; k++) {
                int64_t shape[2];
                tc_role_shape(&s->cfg, (tc_role)(r + k), shape);
                o->shape[0] += shape[0];
            }
            if (stub && r == TC_WO)
                o->shape[1] = s->cfg.dim;
            else if (stub && r >= TC_W_GATE)
                o->shape[r == TC_W_DOWN ? 1 : 0] = 1;
            /* Stand-ins are zeros of odd shapes, and matrices cut to their
             * kept heads are cut in float: both always plain floats. */
            const int *hs_src;
            int hs_n, hs_full, hs_cols;
            int cut = head_role(&s->cfg, layer_heads(s, l), r, &hs_src, &hs_n, &hs_full, &hs_cols);
            o->dtype = o->n_dims == 1                  ? norm_dt
                       : (!stub && !cut && s->dtype_of) ? s->dtype_of(s->ctx, l, r)
                                                        : s->dtype;
            o->fill = fill_item;
            o->ctx = x;
            int made = tern && tc_role_is_linear(r) && !stub && !parts ? ternary_item(s, fmt, o, x, &t[n], &it[n]) : 0;
            if (made < 0) {
                free(t);
                free(it);
                return tc_err(err, "tensor '%s' has %lld rows, not a multiple of 4, which a BitNet checkpoint packs "
                              "four to a byte", x->name, (long long)o->shape[0]);
            }
            n += (size_t)made;
        }
    }
    *out = t;
    *items = it;
    *count = n;
    return TC_OK;
}

/* ---- HF ---- */

static const char *dtype_json(tc_dtype d)
{
    return d == TC_F16 ? "float16" : d == TC_BF16 ? "bfloat16" : "float32";
}

/* A config written from scratch (the source was GGUF or llama2.c): every key
 * a plain model of the family needs. */
static cJSON *hf_config_new(const tc_model_src *s, const char *path, tc_error *err)
{
    cJSON *cfg = tc_hf_config_build(&s->cfg, err);
    if (!cfg)
        tc_err_prefix(err, "%s", path);
    return cfg;
}

/* The source's config with only what the change rewrites: the layer count,
 * per-layer arrays, drop lists and the stored dtype.  Everything else (rope
 * parameters, activations, windows, softcaps, token ids) is the model's
 * own and is carried as it is. */
static int write_hf(const char *path, const tc_model_src *s, const tc_out_tensor *t, size_t n, tc_error *err)
{
    const tc_config *c = &s->cfg;
    tc_hf_class hc;
    if (tc_hf_class_of(c->arch, &hc))
        return tc_err(err, "%s: tc does not write %s models as Hugging Face directories", path, tc_arch_name(c->arch));
    /* A config holds one head count for every layer: head drops must leave
     * every attention with the same counts. */
    int hq = -1, hkv = -1;
    for (int l = 0; s->heads && l < c->n_layers; l++) {
        if (s->drop_attn && s->drop_attn[l])
            continue;
        const tc_head_layout *hl = &s->heads[l];
        if (hq >= 0 && (hl->n_q != hq || hl->n_kv != hkv))
            return tc_err(err, "%s: a Hugging Face %s config holds one head count for every layer, but the heads "
                          "left differ (layer %d keeps %d query / %d key-value heads, an earlier one %d / %d); write "
                          "GGUF, whose deci architecture holds per-layer counts", path, hc.model_type, l, hl->n_q,
                          hl->n_kv, hq, hkv);
        hq = hl->n_q;
        hkv = hl->n_kv;
    }
    cJSON *cfg = s->hf_config ? cJSON_Duplicate(s->hf_config, 1) : hf_config_new(s, path, err);
    if (!cfg)
        return s->hf_config ? tc_err(err, "%s: out of memory", path) : TC_ERR;
#define SET(key, item) (cJSON_DeleteItemFromObjectCaseSensitive(cfg, key), cJSON_AddItemToObject(cfg, key, item))
    SET("num_hidden_layers", cJSON_CreateNumber(c->n_layers));
    if (hq > 0) {
        /* head_dim written out: its default is hidden_size / num_attention_heads. */
        SET("num_attention_heads", cJSON_CreateNumber(hq));
        SET("num_key_value_heads", cJSON_CreateNumber(hkv));
        SET("head_dim", cJSON_CreateNumber(c->head_dim));
    }
    const char *dkey = cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype") ? "torch_dtype" : "dtype";
    SET(dkey, cJSON_CreateString(dtype_json(s->dtype)));
    if (hc.layer_types && (cJSON_GetObjectItemCaseSensitive(cfg, "layer_types") || c->t.window > 0)) {
        /* Written out in full: a rule (max_window_layers, a pattern) would
         * put the windows on other layers once blocks are gone.  (Families
         * without layer types slide on every layer or none.) */
        cJSON *lt = cJSON_CreateArray();
        for (int l = 0; l < c->n_layers; l++)
            cJSON_AddItemToArray(lt, cJSON_CreateString(c->t.local[l] ? "sliding_attention" : "full_attention"));
        SET("layer_types", lt);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "drop_attn_list");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "drop_mlp_list");
    const uint8_t *drops[2] = {s->drop_attn, s->drop_mlp};
    const char *keys[2] = {"drop_attn_list", "drop_mlp_list"};
    for (int k = 0; k < 2; k++) {
        if (!drops[k])
            continue;
        cJSON *list = cJSON_CreateArray();
        for (int l = 0; l < c->n_layers; l++)
            if (drops[k][l])
                cJSON_AddItemToArray(list, cJSON_CreateNumber(l));
        if (cJSON_GetArraySize(list) > 0)
            cJSON_AddItemToObject(cfg, keys[k], list);
        else
            cJSON_Delete(list);
    }
#undef SET
    /* The directory is written as a whole beside the target and then takes
     * its place, so nothing of an earlier output survives in it. */
    tc_outdir d;
    int rc = tc_outdir_open(&d, path, err);
    if (rc == TC_OK && s->hf_src_dir)
        rc = tc_hfdir_copy_side_files(s->hf_src_dir, d.tmp, NULL, err);
    else if (rc == TC_OK && s->vocab && s->vocab->n_kvs)
        /* a GGUF's or llama2.c's vocabulary as tokenizer.json and tokenizer_config.json */
        rc = tc_vocab_write_hf(s->vocab, d.tmp, err);
    if (rc == TC_OK)
        rc = tc_hfdir_write(d.tmp, cfg, t, n, 0, err);
    if (rc == TC_OK)
        rc = tc_outdir_commit(&d, err);
    tc_outdir_abort(&d);
    cJSON_Delete(cfg);
    return rc;
}

/* ---- GGUF ---- */

/* Is a (not NUL-terminated) GGUF string equal to s? */
static int key_is(const tc_gguf_str *a, const char *s)
{
    size_t n = strlen(s);
    return a->len == n && memcmp(a->ptr, s, n) == 0;
}

static tc_gguf_value gv_u32(uint32_t x)
{
    tc_gguf_value v = {.type = TC_GGUF_U32};
    v.v.u = x;
    return v;
}

static tc_gguf_value gv_f32(float x)
{
    tc_gguf_value v = {.type = TC_GGUF_F32};
    v.v.f = x;
    return v;
}

static tc_gguf_value gv_str(const char *s)
{
    tc_gguf_value v = {.type = TC_GGUF_STRING};
    v.v.s.ptr = s;
    v.v.s.len = strlen(s);
    return v;
}

static int near_f(double a, double b)
{
    return fabs(a - b) <= 1e-6 * fabs(b);
}

/* The attention scale llama.cpp's graph uses for the family: gemma2/gemma3
 * 1/sqrt(key_length), except their 27B (46 / 62 layers) 1/sqrt(n_embd /
 * n_head); every other family 1/sqrt(head_dim). */
static float gguf_llamacpp_scale(const tc_config *c, const tc_gguf_family *f)
{
    int is27 = f->gemma && c->n_layers == f->n_layers_27b;
    return is27 ? 1.0f / sqrtf((float)(c->dim / c->n_heads)) : 1.0f / sqrtf((float)c->head_dim);
}

/* NULL when llama.cpp's graph for the family (row f) computes what the model
 * does, else the trait it cannot hold (written into why). */
static const char *gguf_unwritable(const tc_model_src *s, const tc_gguf_family *f, char *why, size_t n)
{
    const tc_config *c = &s->cfg;
    const tc_traits *t = &c->t;
    const char *a = tc_arch_name(c->arch);
#define NO(...) return snprintf(why, n, __VA_ARGS__), why
    if (!f)
        NO(s->heads ? "dropped heads (only llama's deci graph holds per-layer head counts)"
           : s->drop_attn || s->drop_mlp ? "dropped attention or MLP sub-layers (only llama's deci graph holds them)"
                                         : "a family llama.cpp has no graph for");
    if (t->ungated)
        NO("an ungated MLP");
    if (t->act != f->act && !(f->bitnet && t->act == TC_ACT_RELU2))
        NO("activation %s (llama.cpp's %s uses %s)", tc_act_name(t->act), f->name, tc_act_name(f->act));
    if (tc_linear_is_ternary(c) != f->bitnet)
        NO(f->bitnet ? "float linear layers (llama.cpp's bitnet graph is for ternary ones)"
                     : "ternary linear layers outside llama.cpp's bitnet graph, which needs sub-norms");
    if (f->bitnet && !c->tied_embeddings)
        NO("an untied head (llama.cpp's bitnet graph takes the head from the token embedding)");
    if (f->bitnet && c->n_heads * c->head_dim != c->dim)
        NO("heads x head_dim %d other than the width %d (llama.cpp's bitnet graph sizes attn_sub_norm by the width)",
           c->n_heads * c->head_dim, c->dim);
    if ((t->o_bias || t->mlp_bias) && !f->o_mlp_bias)
        NO("output or MLP biases");
    if (c->qkv_bias && !f->qkv_bias)
        NO("q/k/v biases");
    if (!c->qkv_bias && f->qkv_bias == 2)
        NO("%s without q/k/v biases", a);
    if (t->qk_norm != f->qk_norm)
        NO(t->qk_norm ? "q/k norms" : "no q/k norms");
    if (t->post_norms != (f->gemma != 0))
        NO(t->post_norms ? "post-sub-layer norms" : "no post-sub-layer norms");
    if (t->sub_norms != f->bitnet)
        NO(t->sub_norms ? "sub-norms outside llama.cpp's bitnet graph" : "bitnet without sub-norms");
    if (!near_f(t->embed_scale == 0.0f ? 1.0 : t->embed_scale, f->gemma ? sqrtf((float)c->dim) : 1.0))
        NO("embedding scale %g", (double)t->embed_scale);
    double scale = t->attn_scale != 0.0f ? t->attn_scale : 1.0 / sqrt((double)c->head_dim);
    if (!near_f(scale, gguf_llamacpp_scale(c, f)))
        NO("attention scale %g (llama.cpp's %s uses %g)", scale, f->name, (double)gguf_llamacpp_scale(c, f));
    if (t->attn_softcap != 0.0f && f->gemma != 2)
        NO("attention logit softcapping");
    if (f->gemma == 2 && (t->attn_softcap == 0.0f || t->final_softcap == 0.0f))
        NO("gemma2 without %s softcapping (llama.cpp's default applies)", t->attn_softcap == 0.0f ? "attention" : "final");
    if (t->final_softcap != 0.0f && !f->gemma)
        NO("final logit softcapping");
    int pattern = f->window_pattern;
    if (t->window > 0 || f->gemma == 2) {
        if (!pattern)
            NO("sliding-window attention (llama.cpp's %s has none)", f->name);
        if (t->window <= 0)
            NO("%s without a sliding window", a);
        for (int l = 0; l < c->n_layers; l++)
            if (!!tc_layer_is_local(c, l) != (l % pattern < pattern - 1))
                NO("sliding-window layers other than llama.cpp's pattern (layer %d %s; %s: every %d%s layer "
                   "is global)", l, tc_layer_is_local(c, l) ? "local" : "global", f->name, pattern,
                   pattern == 2 ? "nd" : "th");
    }
    if (c->norm_eps <= 0)
        NO("norm epsilon");
    if (f->gemma && c->tied_embeddings == 0)
        NO("an untied output head (llama.cpp's %s ties it)", f->name);
    const tc_rope *r = &t->rope[0], *lr = &t->rope[1];
    switch (r->kind) {
    case TC_ROPE_DEFAULT:
    case TC_ROPE_LINEAR: break;
    case TC_ROPE_YARN:
        /* llama.cpp's YaRN has fixed betas, a rounded range and its own attention factor. */
        if (r->beta_fast != 32.0 || r->beta_slow != 1.0 || !r->truncate ||
            !near_f(r->attn_factor, 1.0 + 0.1 * log(r->factor)) || !(r->factor > 1.0))
            NO("yarn rope with betas %g/%g, %struncated range or attention factor %g (llama.cpp's yarn uses 32/1, "
               "a truncated range and 1 + 0.1 ln factor)", r->beta_fast, r->beta_slow, r->truncate ? "" : "an un",
               r->attn_factor);
        break;
    case TC_ROPE_LLAMA3:
        if (!f->rope_freqs)
            NO("rope scaling 'llama3' (llama.cpp's %s reads no rope_freqs.weight)", f->name);
        break;
    case TC_ROPE_LONGROPE: {
        int same = memcmp(r->short_factor, r->long_factor, (size_t)(r->rot_dims / 2) * sizeof(float)) == 0;
        if (f->phi3)
            break;
        if (f->rope_freqs && same && r->orig_max_pos == 0x7fffffff && r->attn_factor == 1.0)
            break; /* a file's rope_freqs.weight as read */
        NO("rope scaling 'longrope' outside phi3");
    }
    default: NO("rope scaling '%s'", tc_rope_kind_name(r->kind));
    }
    if (f->gemma == 3 && t->window > 0 &&
        (lr->kind != TC_ROPE_DEFAULT || lr->rot_dims != r->rot_dims || lr->attn_factor != r->attn_factor))
        NO("local layers' rope '%s' (llama.cpp's gemma3 rotates them unscaled)", tc_rope_kind_name(lr->kind));
    if (f->gemma != 3 && memcmp(lr, r, sizeof *r) != 0 && t->window > 0)
        NO("a separate rope for the local layers");
    if (r->rot_dims != c->head_dim && s->cfg.rope_layout != f->layout)
        NO("partial rotary dimensions with a rope layout conversion");
    return NULL;
#undef NO
}

/* Converter's conversions applied on the way out: (1 + w) norms stored as
 * 1 + w, fused phi3 projections, and the parts of a fused tensor. */
typedef struct gguf_wrap {
    const tc_out_tensor *part[3];
    int n_parts;
    int add_one;
} gguf_wrap;

static int gguf_wrap_fill(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const gguf_wrap *w = ctx;
    uint8_t *p = dst;
    for (int i = 0; i < w->n_parts; i++) {
        uint64_t nb;
        if (tc_out_tensor_nbytes(w->part[i], &nb, err) || tc_out_tensor_produce(w->part[i], p, err))
            return TC_ERR;
        p += nb;
    }
    if (w->add_one) {
        if (t->dtype != TC_F32)
            return tc_err(err, "tensor '%s': internal: norm not in F32", t->name);
        float *f = dst;
        for (int64_t i = 0; i < t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1); i++)
            f[i] += 1.0f;
    }
    return TC_OK;
}

static int is_norm_item(const out_item *x)
{
    if (x->layer < 0)
        return x->which == TC_G_OUT_NORM;
    return x->which == TC_ATTN_NORM || x->which == TC_FFN_NORM || x->which == TC_POST_ATTN_NORM ||
           x->which == TC_POST_FFN_NORM || x->which == TC_Q_NORM || x->which == TC_K_NORM;
}

/* Llama 3.1's per-pair divisors as convert_hf_to_gguf.py computes them (float32). */
static void llama3_rope_freqs(const tc_rope *r, float *ff)
{
    tc_rope d = tc_rope_default(r->theta, r->rot_dims);
    float inv[TC_ROPE_MAX_PAIRS];
    tc_rope_inv_freq(&d, 0, inv);
    float low_wl = (float)r->orig_max_pos / (float)r->low_freq_factor;
    float high_wl = (float)r->orig_max_pos / (float)r->high_freq_factor;
    for (int i = 0; i < r->rot_dims / 2; i++) {
        float wl = (float)(2.0 * M_PI) / inv[i];
        if (wl < high_wl) {
            ff[i] = 1.0f;
        } else if (wl > low_wl) {
            ff[i] = (float)r->factor;
        } else {
            float smooth = ((float)r->orig_max_pos / wl - (float)r->low_freq_factor) /
                           (float)(r->high_freq_factor - r->low_freq_factor);
            ff[i] = 1.0f / ((1.0f - smooth) / (float)r->factor + smooth);
        }
    }
}

static int write_gguf(const char *path, const tc_model_src *s, const tc_out_tensor *t, size_t n,
                      tc_error *err)
{
    const tc_config *c = &s->cfg;
    char why[256];
    int deci = (s->drop_attn || s->drop_mlp || s->heads);
    const tc_gguf_family *f = tc_gguf_family_of(c->arch, deci);
    if (gguf_unwritable(s, f, why, sizeof why))
        return tc_err(err, "%s: writing GGUF for a %s model with %s is not implemented", path,
                      tc_arch_name(c->arch), why);
    const char *arch = f->name;
    for (size_t i = 0; f->bitnet && i < n; i++)
        if (t[i].dtype == TC_I2_S)
            arch = "bitnet-b1.58"; /* bitnet.cpp's name for the graph that reads I2_S */
    const tc_rope *rope = &c->t.rope[0];
    /* The tensors as llama.cpp names them: norms + 1 for (1 + w) models,
     * phi3's q/k/v and gate/up concatenated, rope factor tensors added. */
    size_t cap_t = n + 3;
    tc_out_tensor *ot = calloc(cap_t, sizeof *ot);
    gguf_wrap *wr = calloc(cap_t, sizeof *wr);
    char (*names)[64] = calloc(cap_t, sizeof *names);
    float *factors = calloc(3 * TC_ROPE_MAX_PAIRS, sizeof *factors);
    size_t cap = 50 + (s->gguf_vocab ? (size_t)s->gguf_vocab->n_kv : 0) + (s->vocab ? s->vocab->n_kvs : 0);
    tc_gguf_writer_kv *kv = calloc(cap, sizeof *kv);
    char (*keys)[96] = calloc(32, sizeof *keys);
    tc_gguf_value *arrays = calloc(3 * (size_t)c->n_layers, sizeof *arrays);
    size_t k = 0, nk = 0, no = 0;
    int rc = TC_ERR;
    if (!kv || !keys || !arrays || !ot || !wr || !names || !factors) {
        tc_err(err, "%s: out of memory", path);
        goto done;
    }
    int pairs = rope->rot_dims / 2;
    if (rope->kind == TC_ROPE_LLAMA3 || (rope->kind == TC_ROPE_LONGROPE && !f->phi3)) {
        if (rope->kind == TC_ROPE_LLAMA3)
            llama3_rope_freqs(rope, factors);
        else
            memcpy(factors, rope->short_factor, (size_t)pairs * sizeof *factors);
        ot[no++] = (tc_out_tensor){.name = "rope_freqs.weight", .dtype = TC_F32, .n_dims = 1, .shape = {pairs},
                                   .data = factors};
    } else if (rope->kind == TC_ROPE_LONGROPE) {
        memcpy(factors, rope->long_factor, (size_t)pairs * sizeof *factors);
        memcpy(factors + TC_ROPE_MAX_PAIRS, rope->short_factor, (size_t)pairs * sizeof *factors);
        ot[no++] = (tc_out_tensor){.name = "rope_factors_long.weight", .dtype = TC_F32, .n_dims = 1,
                                   .shape = {pairs}, .data = factors};
        ot[no++] = (tc_out_tensor){.name = "rope_factors_short.weight", .dtype = TC_F32, .n_dims = 1,
                                   .shape = {pairs}, .data = factors + TC_ROPE_MAX_PAIRS};
    }
    for (size_t i = 0; i < n; i++) {
        const out_item *x = t[i].ctx;
        ot[no] = t[i];
        if (c->t.norm == TC_NORM_RMS_1P && is_norm_item(x)) {
            /* convert_hf_to_gguf.py stores Gemma's norms as 1 + w; llama.cpp scales by the stored value. */
            wr[no].part[0] = &t[i];
            wr[no].n_parts = 1;
            wr[no].add_one = 1;
            ot[no].data = NULL;
            ot[no].fill = gguf_wrap_fill;
            ot[no].ctx = &wr[no];
        }
        no++;
    }
    kv[k].key = "general.architecture";
    kv[k++].value = gv_str(arch);
    /* The source's own name is carried with its other general.* keys below. */
    if (!s->gguf_vocab || !tc_gguf_find(s->gguf_vocab, "general.name")) {
        kv[k].key = "general.name";
        kv[k++].value = gv_str(s->name ? s->name : "tc");
    }
#define ARCH_KV(suffix, val)                                                   \
    do {                                                                       \
        snprintf(keys[nk], sizeof keys[nk], "%s.%s", arch, suffix);            \
        kv[k].key = keys[nk++];                                                \
        kv[k++].value = (val);                                                 \
    } while (0)
    ARCH_KV("context_length", gv_u32((uint32_t)c->max_seq_len));
    ARCH_KV("embedding_length", gv_u32((uint32_t)c->dim));
    ARCH_KV("block_count", gv_u32((uint32_t)c->n_layers));
    if (deci) {
        /* Per-layer arrays: 0 heads mark a dropped attention, 0 kv heads the
         * stand-in of layer 0, width 1 an MLP stand-in. */
        tc_gguf_value *heads = arrays, *kvh = arrays + c->n_layers, *ffn = arrays + 2 * c->n_layers;
        for (int l = 0; l < c->n_layers; l++) {
            int da = s->drop_attn && s->drop_attn[l], dm = s->drop_mlp && s->drop_mlp[l];
            const tc_head_layout *hl = layer_heads(s, l);
            heads[l] = gv_u32(da && l > 0 ? 0 : da || !hl ? (uint32_t)c->n_heads : (uint32_t)hl->n_q); /* layer 0: see stand_in */
            kvh[l] = gv_u32(da ? 0 : hl ? (uint32_t)hl->n_kv : (uint32_t)c->n_kv_heads);
            ffn[l] = gv_u32(dm ? 1 : (uint32_t)c->ffn_dim); /* 1: the stand-in of mlp_stub */
        }
        tc_gguf_value a = {.type = TC_GGUF_ARRAY};
        a.v.arr.type = TC_GGUF_U32;
        a.v.arr.n = (uint64_t)c->n_layers;
        a.v.arr.items = heads;
        ARCH_KV("attention.head_count", a);
        a.v.arr.items = kvh;
        ARCH_KV("attention.head_count_kv", a);
        a.v.arr.items = ffn;
        ARCH_KV("feed_forward_length", a);
    } else {
        ARCH_KV("feed_forward_length", gv_u32((uint32_t)c->ffn_dim));
        ARCH_KV("attention.head_count", gv_u32((uint32_t)c->n_heads));
        ARCH_KV("attention.head_count_kv", gv_u32((uint32_t)c->n_kv_heads));
    }
    ARCH_KV("rope.dimension_count", gv_u32((uint32_t)rope->rot_dims));
    ARCH_KV("attention.key_length", gv_u32((uint32_t)c->head_dim));
    ARCH_KV("attention.value_length", gv_u32((uint32_t)c->head_dim));
    ARCH_KV("attention.layer_norm_rms_epsilon", gv_f32(c->norm_eps));
    ARCH_KV("rope.freq_base", gv_f32((float)rope->theta));
    ARCH_KV("vocab_size", gv_u32((uint32_t)c->vocab_size));
    if (rope->kind == TC_ROPE_LINEAR || rope->kind == TC_ROPE_YARN) {
        ARCH_KV("rope.scaling.type", gv_str(rope->kind == TC_ROPE_YARN ? "yarn" : "linear"));
        ARCH_KV("rope.scaling.factor", gv_f32((float)rope->factor));
    }
    if (rope->kind == TC_ROPE_YARN)
        ARCH_KV("rope.scaling.original_context_length", gv_u32((uint32_t)rope->orig_max_pos));
    else if (rope->attn_factor != 1.0) /* yarn's is llama.cpp's own */
        ARCH_KV("rope.scaling.attn_factor", gv_f32((float)rope->attn_factor));
    if (rope->kind == TC_ROPE_LONGROPE && f->phi3)
        ARCH_KV("rope.scaling.original_context_length", gv_u32((uint32_t)rope->orig_max_pos));
    if (f->gemma) {
        if (c->t.window > 0)
            ARCH_KV("attention.sliding_window", gv_u32((uint32_t)c->t.window));
        if (f->gemma == 2)
            ARCH_KV("attn_logit_softcapping", gv_f32(c->t.attn_softcap));
        if (c->t.final_softcap != 0.0f)
            ARCH_KV("final_logit_softcapping", gv_f32(c->t.final_softcap));
        if (f->gemma == 3 && c->t.window > 0)
            ARCH_KV("rope.freq_base_swa", gv_f32((float)c->t.rope[1].theta));
    }
    /* llama.cpp's bitnet graph computes SiLU whatever this says; tc (and graphs
     * that read the key) compute relu2, the model's own (docs/FORWARD.md). */
    if (f->bitnet && c->t.act == TC_ACT_RELU2)
        ARCH_KV("hidden_activation", gv_str("relu2"));
#undef ARCH_KV
    /* llama_ftype: 0 all F32, 1 mostly F16, 32 mostly BF16, 36 mostly TQ1_0, 37 mostly TQ2_0,
     * 40 mostly I2_S (bitnet.cpp) */
    uint32_t ftype = s->dtype == TC_F16 ? 1 : s->dtype == TC_BF16 ? 32 : 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].dtype == TC_TQ1_0 || t[i].dtype == TC_TQ2_0 || t[i].dtype == TC_I2_S)
            ftype = t[i].dtype == TC_TQ1_0 ? 36 : t[i].dtype == TC_TQ2_0 ? 37 : 40;
    kv[k].key = "general.file_type";
    kv[k++].value = gv_u32(ftype);
    int own_vocab = s->vocab && s->vocab->n_kvs > 0;
    const tc_gguf_value *toks = own_vocab ? tc_vocab_find(s->vocab, "tokenizer.ggml.tokens") : NULL;
    if (own_vocab && (!toks || toks->type != TC_GGUF_ARRAY || toks->v.arr.n != (uint64_t)c->vocab_size)) {
        tc_err(err, "%s: the vocabulary has %llu tokens but the model %d", path,
               toks && toks->type == TC_GGUF_ARRAY ? (unsigned long long)toks->v.arr.n : 0ull, c->vocab_size);
        goto done;
    }
    for (size_t i = 0; own_vocab && i < s->vocab->n_kvs && k < cap; i++)
        kv[k++] = s->vocab->kvs[i];
    /* BOS and EOS the tokenizer's files leave unnamed come from the model's
     * config, as the converter takes them from config.json */
    static const char *const id_keys[2] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    const int ids[2] = {c->bos_id, c->eos_id};
    for (int i = 0; own_vocab && i < 2; i++) {
        if (ids[i] >= 0 && ids[i] < c->vocab_size && !tc_vocab_find(s->vocab, id_keys[i])) {
            kv[k].key = id_keys[i];
            kv[k++].value = gv_u32((uint32_t)ids[i]);
        }
    }
    size_t first_vocab = k;
    if (s->gguf_vocab) {
        /* Carried from the source: the tokenizer and every general.* key but
         * those written above; the architecture's own keys are rewritten
         * from the model as it now is. */
        for (uint64_t i = 0; i < s->gguf_vocab->n_kv; i++) {
            const tc_gguf_kv *src = &s->gguf_vocab->kvs[i];
            int tok = !own_vocab && src->key.len > 10 && memcmp(src->key.ptr, "tokenizer.", 10) == 0;
            int gen = src->key.len > 8 && memcmp(src->key.ptr, "general.", 8) == 0 &&
                      !key_is(&src->key, "general.architecture") && !key_is(&src->key, "general.file_type") &&
                      !key_is(&src->key, "general.alignment");
            if ((tok || gen) && k < cap) {
                /* Keys in the source are not NUL-terminated: copy into the key buffer pool. */
                char *name = malloc((size_t)src->key.len + 1);
                if (!name)
                    continue;
                memcpy(name, src->key.ptr, (size_t)src->key.len);
                name[src->key.len] = '\0';
                kv[k].key = name;
                kv[k++].value = src->value;
            }
        }
    }
    rc = tc_gguf_write(path, kv, k, ot, no, 32, err);
    for (size_t i = first_vocab; i < k; i++)
        free((char *)kv[i].key);
done:
    free(kv);
    free(keys);
    free(arrays);
    free(ot);
    free(wr);
    free(names);
    free(factors);
    return rc;
}

/* ---- llama2.c ---- */

static int write_llama2c(const char *path, const tc_model_src *s, const tc_out_tensor *t, size_t n,
                         tc_error *err)
{
    const tc_config *c = &s->cfg;
    if (s->drop_attn || s->drop_mlp)
        return tc_err(err, "%s: llama2.c checkpoints cannot hold a model with dropped attention or MLP "
                      "sub-layers; drop whole blocks, or write HF or GGUF", path);
    if (s->heads)
        return tc_err(err, "%s: llama2.c checkpoints cannot hold dropped heads (their head size is dim / heads); "
                      "write GGUF", path);
    /* run.c computes a plain llama with rope base 10000 and norm epsilon 1e-5. */
    const char *trait = tc_traits_non_llama(c);
    if (s->dtype != TC_F32 || c->qkv_bias || trait || c->head_dim * c->n_heads != c->dim ||
        c->t.rope[0].theta != 10000.0 || c->norm_eps != 1e-5f)
        return tc_err(err, "%s: llama2.c checkpoints hold only fp32 llama models without biases, with rope base "
                      "10000, norm epsilon 1e-5 and head_dim * heads == dim%s%s", path, trait ? "; this one has " : "",
                      trait ? trait : "");
    tc_llama2c_header h = {
        .dim = c->dim, .hidden_dim = c->ffn_dim, .n_layers = c->n_layers, .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads, .vocab_size = c->vocab_size, .seq_len = c->max_seq_len,
        .shared_classifier = c->tied_embeddings,
    };
    return tc_llama2c_write(path, &h, t, n, err);
}

int tc_model_write(const char *path, tc_format fmt, const tc_model_src *s, tc_error *err)
{
    const tc_naming *nm = tc_naming_for(fmt, s->cfg.arch);
    if (s->cfg.t.diff_attn && fmt != TC_FORMAT_HF)
        return tc_err(err, "%s: differential attention (DiffLlama) is held by Hugging Face directories only (%s has no "
                      "such graph)", path, fmt == TC_FORMAT_GGUF ? "llama.cpp" : "llama2.c");
    if (!nm)
        return tc_err(err, "%s: cannot write models in the %s format", path, tc_format_name(fmt));
    if (s->dtype != TC_F32 && s->dtype != TC_F16 && s->dtype != TC_BF16)
        return tc_err(err, "%s: models are written in F32, F16 or BF16, not %s", path, tc_dtype_name(s->dtype));
    /* A ternary linear kind is written as its codes and scales (or, HF
     * autobitlinear, its float masters); llama2.c has no place for them. */
    int masters = fmt == TC_FORMAT_HF && s->cfg.t.linear == TC_LINEAR_AUTOBITLINEAR;
    if (tc_linear_is_ternary(&s->cfg) && (fmt == TC_FORMAT_LLAMA2C || (!s->ternary && !masters)))
        return tc_err(err, "%s: writing a model with ternary linear layers (%s) as %s is not implemented", path,
                      tc_linear_kind_name(s->cfg.t.linear), tc_format_name(fmt));
    if (tc_linear_is_ternary(&s->cfg) && fmt == TC_FORMAT_GGUF && s->ternary_dtype != TC_TQ1_0 &&
        s->ternary_dtype != TC_TQ2_0 && s->ternary_dtype != TC_I2_S)
        return tc_err(err, "%s: ternary linears are written to GGUF as TQ1_0, TQ2_0 or I2_S, not %s", path,
                      tc_dtype_name(s->ternary_dtype));
    tc_out_tensor *t = NULL;
    out_item *items = NULL;
    size_t n = 0;
    if (build_list(s, nm, tc_format_rope_layout(fmt, s->cfg.arch), fmt, &t, &items, &n, err))
        return TC_ERR;
    int rc = fmt == TC_FORMAT_HF     ? write_hf(path, s, t, n, err)
             : fmt == TC_FORMAT_GGUF ? write_gguf(path, s, t, n, err)
                                     : write_llama2c(path, s, t, n, err);
    free(t);
    free(items);
    return rc;
}

int tc_model_copy_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    const tc_model_copy *cp = ctx;
    const tc_model *m = cp->model;
    const tc_tensor *t;
    if (layer < 0) {
        t = which == TC_G_EMBD ? m->tok_embd : which == TC_G_OUT_NORM ? m->out_norm : m->output;
    } else {
        int src_layer = cp->keep ? cp->keep[layer] : layer;
        t = m->layers[src_layer].w[which];
    }
    if (!t)
        return tc_err(err, "%s: no tensor for layer %d %s", m->path, layer,
                      layer < 0 ? "global" : tc_role_name((tc_role)which));
    if (t->n_elements != n)
        return tc_err(err, "%s: tensor '%s' has %llu elements, expected %llu", m->path, t->name,
                      (unsigned long long)t->n_elements, (unsigned long long)n);
    return tc_tensor_to_f32(t, dst, err);
}

int tc_model_copy_ternary(void *ctx, int layer, int role, int8_t *codes, float *scale, int *divides, tc_error *err)
{
    const tc_model_copy *cp = ctx;
    return tc_model_ternary_role_as(cp->model, cp->keep ? cp->keep[layer] : layer, (tc_role)role, codes, scale,
                                    divides, err);
}

tc_dtype tc_model_scale_dtype(const tc_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++) {
            const tc_tensor *t = m->layers[l].scale[r];
            if (t && m->layers[l].w[r] && m->layers[l].w[r]->dtype == TC_U8)
                return t->dtype == TC_BF16 || t->dtype == TC_F16 ? t->dtype : TC_F32;
        }
    return TC_F32;
}

static const tc_tensor *copy_source(const tc_model_copy *cp, int layer, int which)
{
    const tc_model *m = cp->model;
    if (layer < 0)
        return which == TC_G_EMBD ? m->tok_embd : which == TC_G_OUT_NORM ? m->out_norm : m->output;
    int src_layer = cp->keep ? cp->keep[layer] : layer;
    return m->layers[src_layer].w[which];
}

/* Can a matrix of this shape be stored as type t (whole blocks per row)? */
static int rows_fit(const tc_tensor *t, tc_dtype d)
{
    return t->n_dims == 2 && t->shape[1] % (int64_t)tc_dtype_block_elems(d) == 0;
}

tc_dtype tc_model_copy_dtype(void *ctx, int layer, int which)
{
    const tc_model_copy *cp = ctx;
    const tc_tensor *t = copy_source(cp, layer, which);
    uint32_t ggml;
    if (t && layer >= 0 && tc_role_is_linear(which) && cp->matrices != TC_DTYPE_COUNT &&
        rows_fit(t, cp->matrices))
        return cp->matrices;
    if (!t || t->n_dims != 2 || tc_gguf_ggml_from_dtype(t->dtype, &ggml) || !tc_dtype_is_float_convertible(t->dtype))
        return cp->float_dtype;
    return t->dtype;
}

int tc_model_copy_encode(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                         tc_error *err)
{
    const tc_model_copy *cp = ctx;
    const tc_tensor *t = copy_source(cp, layer, which);
    if (!t || (t->nbytes != nbytes && tc_model_copy_dtype(ctx, layer, which) == t->dtype))
        return tc_err(err, "%s: no source of %llu bytes for layer %d %s", cp->model->path, (unsigned long long)nbytes,
                      layer, layer < 0 ? "global" : tc_role_name((tc_role)which));
    const tc_config *c = &cp->model->cfg;
    int is_qk = layer >= 0 && (which == TC_WQ || which == TC_WK);
    tc_dtype want = tc_model_copy_dtype(ctx, layer, which);
    if (want != t->dtype) {
        /* Converted: the input's values, in the target's rope layout, encoded. */
        uint64_t n = t->n_elements;
        float *f = malloc(n ? (size_t)n * sizeof *f : 1), *p = is_qk && c->rope_layout != to ? malloc((size_t)n * sizeof *p) : NULL;
        int rc = !f || (is_qk && c->rope_layout != to && !p) ? tc_err(err, "%s: out of memory", cp->model->path) : TC_OK;
        if (rc == TC_OK)
            rc = tc_tensor_to_f32(t, f, err);
        if (rc == TC_OK && p) {
            tc_rope_permute_rows(f, p, which == TC_WQ ? c->n_heads : c->n_kv_heads, c->head_dim, (int)t->shape[1],
                                 c->rope_layout, to);
            float *swap = f;
            f = p;
            p = swap;
        }
        uint64_t want_bytes = 0;
        if (rc == TC_OK && (tc_dtype_span(want, n, &want_bytes, err) || want_bytes != nbytes))
            rc = rc ? rc : tc_err(err, "%s: internal: %s of %llu bytes", cp->model->path, tc_dtype_name(want),
                                  (unsigned long long)nbytes);
        if (rc == TC_OK)
            rc = tc_convert_from_f32(want, f, n, dst, err);
        free(f);
        free(p);
        return rc;
    }
    if (!is_qk || c->rope_layout == to) {
        memcpy(dst, t->data, (size_t)nbytes);
        return TC_OK;
    }
    /* Rows are whole blocks: the permutation moves rows of bytes. */
    int heads = which == TC_WQ ? c->n_heads : c->n_kv_heads;
    uint64_t row = nbytes / (uint64_t)t->shape[0];
    uint8_t *out = dst;
    size_t hd = (size_t)c->head_dim, half = hd / 2;
    for (int h = 0; h < heads; h++)
        for (size_t i = 0; i < half; i++) {
            size_t a0 = 2 * i, a1 = 2 * i + 1, h0 = i, h1 = i + half;
            size_t s0 = c->rope_layout == TC_ROPE_ADJACENT ? a0 : h0, s1 = c->rope_layout == TC_ROPE_ADJACENT ? a1 : h1;
            size_t d0 = to == TC_ROPE_ADJACENT ? a0 : h0, d1 = to == TC_ROPE_ADJACENT ? a1 : h1;
            size_t base = (size_t)h * hd;
            memcpy(out + (base + d0) * row, t->data + (base + s0) * row, (size_t)row);
            memcpy(out + (base + d1) * row, t->data + (base + s1) * row, (size_t)row);
        }
    return TC_OK;
}

int tc_model_write_ternary(const tc_model *m, const char *path, tc_format fmt, tc_dtype ternary_dtype,
                           const struct tc_gguf *vocab, const char *hf_vocab_dir, tc_error *err)
{
    if (!tc_linear_is_ternary(&m->cfg))
        return tc_err(err, "%s: %s is not a ternary-trained model", path, m->path);
    tc_dtype emb = m->tok_embd->dtype;
    tc_dtype dt = emb == TC_F16 || emb == TC_BF16 ? emb : TC_F32;
    tc_model_copy cp = {.model = m, .float_dtype = dt, .matrices = TC_DTYPE_COUNT};
    tc_model_src src = {
        .cfg = m->cfg,
        .dtype = dt,
        .fill = tc_model_copy_fill,
        .ctx = &cp,
        .gguf_vocab = vocab ? vocab : tc_model_gguf(m),
        .hf_config = tc_model_hfdir(m) ? tc_model_hfdir(m)->config : NULL,
        .hf_src_dir = hf_vocab_dir ? hf_vocab_dir : tc_model_hfdir(m) ? tc_model_hfdir(m)->path : NULL,
        .name = "tc-quantize",
        .ternary = tc_model_copy_ternary,
        .ternary_dtype = ternary_dtype,
        .scale_dtype = tc_model_scale_dtype(m),
    };
    if (fmt == TC_FORMAT_GGUF) {
        src.dtype_of = tc_model_copy_dtype;
        src.encode = tc_model_copy_encode;
    }
    /* transformers casts weight_scale to the config's dtype: F32 scales need an F32 model. */
    if (fmt == TC_FORMAT_HF && m->cfg.t.linear == TC_LINEAR_BITLINEAR && src.scale_dtype == TC_F32)
        src.dtype = cp.float_dtype = TC_F32;
    return tc_model_write(path, fmt, &src, err);
}
