/* A packed file of a ternary-trained model written back as a checkpoint:
 * its codes and its one scale per tensor as they are in the tiles, every
 * other tensor as stored, through the common writer (model_write.c). */
#include "tc/tmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/qmat.h"

typedef struct export_ctx {
    const tc_tmodel *tm;
    tc_dtype fallback; /* GGUF: the stored type of matrices not kept in a block type */
} export_ctx;

static const tc_tmodel_tensor *find(const tc_tmodel *tm, int layer, int which, tc_error *err)
{
    const tc_tmodel_tensor *t = tc_tmodel_find(tm, layer, which);
    if (!t)
        tc_err(err, "%s: no tensor for layer %d %s", tm->path ? tm->path : "(packed model)", layer,
               layer < 0 ? "global" : tc_role_name((tc_role)which));
    return t;
}

static int export_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    const export_ctx *x = ctx;
    const tc_tmodel_tensor *t = find(x->tm, layer, which, err);
    if (!t)
        return TC_ERR;
    uint64_t have = (uint64_t)t->shape[0] * (uint64_t)(t->n_dims == 2 ? t->shape[1] : 1);
    if (have != n)
        return tc_err(err, "%s: layer %d %s has %llu values, not %llu", x->tm->path ? x->tm->path : "(packed model)",
                      layer, layer < 0 ? "global" : tc_role_name((tc_role)which), (unsigned long long)have,
                      (unsigned long long)n);
    return tc_tmodel_tensor_f32(t, dst, err);
}

/* The tiles' codes and their one scale, which the runner multiplies by. */
static int export_ternary(void *ctx, int layer, int role, int8_t *codes, float *scale, int *divides, tc_error *err)
{
    const export_ctx *x = ctx;
    const tc_tmodel_tensor *t = find(x->tm, layer, role, err);
    if (!t)
        return TC_ERR;
    if (!t->ternary || t->plan.n_scales != 1)
        return tc_err(err, "%s: layer %d %s is not ternary with one scale", x->tm->path ? x->tm->path : "(packed model)",
                      layer, tc_role_name((tc_role)role));
    *divides = 0;
    return tc_tmodel_tensor_unpack(t, codes, scale, err);
}

/* GGUF output: an embedding or head the packed file keeps in a ggml block
 * type (tc-quantize --embd-type) is written in that type, its bytes as they
 * are; every other matrix takes the float path (`fallback`). */
static const tc_tmodel_tensor *block_typed(const tc_tmodel *tm, int layer, int which)
{
    const tc_tmodel_tensor *t = layer < 0 ? tc_tmodel_find(tm, layer, which) : NULL;
    return t && !t->ternary && tc_qmat_type_ok(t->dtype) ? t : NULL;
}

static tc_dtype export_dtype_of(void *ctx, int layer, int which)
{
    const export_ctx *x = ctx;
    const tc_tmodel_tensor *t = block_typed(x->tm, layer, which);
    return t ? t->dtype : x->fallback;
}

static int export_encode(void *ctx, int layer, int which, tc_rope_layout to, void *dst, uint64_t nbytes,
                         tc_error *err)
{
    (void)to; /* the embedding and head have no rope rows */
    const export_ctx *x = ctx;
    const tc_tmodel_tensor *t = block_typed(x->tm, layer, which);
    if (!t || t->nbytes != nbytes)
        return tc_err(err, "%s: the %s's block bytes do not match the GGUF tensor's size",
                      x->tm->path ? x->tm->path : "(packed model)", which == TC_G_EMBD ? "embedding" : "head");
    memcpy(dst, t->data, (size_t)nbytes);
    return TC_OK;
}

/* The narrowest of BF16, F16 and F32 that holds every value of the plain
 * tensors (matrices, or norms) exactly: nothing is rounded on the way out.
 * skip_blocks leaves out the tensors kept in a block type (GGUF keeps them). */
static int exact_dtype(const tc_tmodel *tm, int matrices, int skip_blocks, tc_dtype *out, tc_error *err)
{
    int bf16 = 1, f16 = 1;
    for (size_t i = 0; i < tm->n_tensors && (bf16 || f16); i++) {
        const tc_tmodel_tensor *t = &tm->tensors[i];
        if (t->ternary || (t->n_dims == 2) != matrices || (skip_blocks && tc_qmat_type_ok(t->dtype)))
            continue;
        uint64_t n = (uint64_t)t->shape[0] * (uint64_t)(t->n_dims == 2 ? t->shape[1] : 1), bytes;
        if (tc_mul_u64(n, sizeof(float), &bytes) || bytes > SIZE_MAX)
            return tc_err(err, "a tensor of the packed model is too large");
        float *f = malloc(bytes ? (size_t)bytes : 1);
        if (!f)
            return tc_err(err, "out of memory");
        if (tc_tmodel_tensor_f32(t, f, err)) {
            free(f);
            return TC_ERR;
        }
        for (uint64_t k = 0; k < n; k++) {
            bf16 &= tc_bf16_to_f32(tc_f32_to_bf16(f[k])) == f[k];
            f16 &= tc_f16_to_f32(tc_f32_to_f16(f[k])) == f[k];
        }
        free(f);
    }
    *out = bf16 ? TC_BF16 : f16 ? TC_F16 : TC_F32;
    return TC_OK;
}

/* BF16 when every tile scale is the reciprocal of a BF16 value to within a
 * float rounding (the weight_scale of a BitNet checkpoint: its BF16 value
 * comes back by rounding), else F32. */
static tc_dtype scale_dtype(const tc_tmodel *tm)
{
    for (size_t i = 0; i < tm->n_tensors; i++) {
        const tc_tmodel_tensor *t = &tm->tensors[i];
        if (!t->ternary || t->plan.n_scales != 1)
            continue;
        const float *sc = (const float *)(t->data + t->nbytes - sizeof(float)); /* the plan's one scale */
        float mul;
        memcpy(&mul, sc, sizeof mul);
        float w = 1.0f / mul, b = tc_bf16_to_f32(tc_f32_to_bf16(w));
        if (!(fabsf(b - w) <= w * 0x1p-23f))
            return TC_F32;
    }
    return TC_BF16;
}

int tc_tmodel_export(const tc_tmodel *tm, const char *path, const tc_tmodel_export_opts *o, tc_error *err)
{
    if (!tc_linear_is_ternary(&tm->cfg) || tm->quant.method != TC_TMETHOD_SOURCE)
        return tc_err(err, "%s: only packed files converted from ternary-trained models (method source) are written "
                      "back as checkpoints; this one was quantized with '%s' from a float model, whose function "
                      "has float activations", path, tc_tmethod_name(tm->quant.method));
    if (o->format != TC_FORMAT_HF && o->format != TC_FORMAT_GGUF)
        return tc_err(err, "%s: packed models are written back as Hugging Face directories or GGUF files", path);
    export_ctx x = {tm, 0};
    tc_model_src s = {
        .cfg = tm->cfg,
        .fill = export_fill,
        .ctx = &x,
        .gguf_vocab = o->gguf_vocab,
        .hf_src_dir = o->hf_src_dir,
        .name = o->name,
        .ternary = export_ternary,
        .ternary_dtype = o->ternary_dtype,
        .scale_dtype = scale_dtype(tm),
    };
    if (exact_dtype(tm, 1, o->format == TC_FORMAT_GGUF, &s.dtype, err))
        return tc_err_prefix(err, "%s", path);
    x.fallback = s.dtype;
    if (o->format == TC_FORMAT_GGUF) {
        s.dtype_of = export_dtype_of;
        s.encode = export_encode;
    }
    /* transformers casts weight_scale to the config's dtype: F32 scales need an F32 model. */
    if (o->format == TC_FORMAT_HF && s.scale_dtype == TC_F32)
        s.dtype = TC_F32;
    if (o->format == TC_FORMAT_HF && exact_dtype(tm, 0, 0, &s.norm_dtype, err))
        return tc_err_prefix(err, "%s", path);
    if (o->format == TC_FORMAT_HF && s.cfg.t.linear == TC_LINEAR_AUTOBITLINEAR)
        s.cfg.t.linear = TC_LINEAR_BITLINEAR; /* the masters are not in the tiles: their codes and scales are */
    return tc_model_write(path, o->format, &s, err);
}
