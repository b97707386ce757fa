/* The quantized model's names, shapes and value access (the file lives in
 * tmodel_file.c, its tokenizer in tmodel_tokenizer.c). */
#include "tc/tmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"

static const char *const method_names[TC_TMETHOD_COUNT] = {
    "absmean", "optimal", "calibrated", "source", "affine", "affine-calibrated", "affine-block"};

int tc_tmethod_calibrated(tc_tmethod m)
{
    return m == TC_TMETHOD_CALIBRATED || m == TC_TMETHOD_AFFINE_CALIBRATED ||
           m == TC_TMETHOD_AFFINE_BLOCK;
}

int tc_tmethod_affine(tc_tmethod m)
{
    return m == TC_TMETHOD_AFFINE || m == TC_TMETHOD_AFFINE_CALIBRATED ||
           m == TC_TMETHOD_AFFINE_BLOCK;
}

const char *tc_tmethod_name(tc_tmethod m)
{
    return (unsigned)m < TC_TMETHOD_COUNT ? method_names[m] : "?";
}

int tc_tmethod_from_name(const char *s, tc_tmethod *out)
{
    for (int i = 0; i < TC_TMETHOD_COUNT; i++)
        if (s && strcmp(s, method_names[i]) == 0) {
            *out = (tc_tmethod)i;
            return TC_OK;
        }
    return TC_ERR;
}

int tc_tpack_layout_from_name(const char *s, tc_tpack_layout *out)
{
    for (int i = 0; i < TC_TPACK_LAYOUT_COUNT; i++)
        if (s && strcmp(s, tc_tpack_layout_name((tc_tpack_layout)i)) == 0) {
            *out = (tc_tpack_layout)i;
            return TC_OK;
        }
    return TC_ERR;
}

void tc_tmodel_tensor_name(const tc_tmodel_tensor *t, char *buf, size_t n)
{
    if (t->layer >= 0)
        snprintf(buf, n, "blk.%d.%s", t->layer, tc_role_name((tc_role)t->role));
    else
        snprintf(buf, n, "%s",
                 t->role == TC_G_EMBD ? "token_embd" : t->role == TC_G_OUT_NORM ? "output_norm" : "output");
}

int tc_tmodel_expected_shape(const tc_config *c, int layer, int role, int64_t shape[2])
{
    shape[1] = 0;
    if (layer < 0) {
        if (role == TC_G_OUT_NORM) {
            shape[0] = c->dim;
            return 1;
        }
        shape[0] = c->vocab_size;
        shape[1] = c->dim;
        return 2;
    }
    return tc_role_shape(c, (tc_role)role, shape);
}

const tc_tmodel_tensor *tc_tmodel_find(const tc_tmodel *m, int layer, int role)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].layer == layer && m->tensors[i].role == role)
            return &m->tensors[i];
    return NULL;
}

static uint64_t tensor_elems(const tc_tmodel_tensor *t)
{
    return t->n_dims == 2 ? (uint64_t)t->shape[0] * (uint64_t)t->shape[1] : (uint64_t)t->shape[0];
}

int tc_tmodel_tensor_unpack_affine(const tc_tmodel_tensor *t, int8_t *codes, float *scales,
                                   float *offsets, tc_error *err)
{
    char name[64];
    tc_tmodel_tensor_name(t, name, sizeof name);
    if (!t->ternary)
        return tc_err(err, "tensor '%s' is not ternary", name);
    if (tc_tpack_unpack_affine(&t->plan, t->data, t->nbytes, codes, scales, offsets, err))
        return tc_err_prefix(err, "tensor '%s'", name);
    return TC_OK;
}

int tc_tmodel_tensor_unpack(const tc_tmodel_tensor *t, int8_t *codes, float *scales, tc_error *err)
{
    return tc_tmodel_tensor_unpack_affine(t, codes, scales, NULL, err);
}

int tc_tmodel_tensor_f32(const tc_tmodel_tensor *t, float *dst, tc_error *err)
{
    uint64_t n = tensor_elems(t);
    if (!t->ternary)
        return tc_convert_to_f32(t->dtype, t->data, n, dst, err);
    int8_t *codes = malloc(n ? (size_t)n : 1);
    float *scales = malloc((size_t)t->plan.n_scales * sizeof *scales);
    float *offsets = t->plan.offset ? malloc((size_t)t->plan.n_scales * sizeof *offsets) : NULL;
    int rc = TC_ERR;
    if (!codes || !scales || (t->plan.offset && !offsets))
        tc_err(err, "out of memory unpacking a ternary tensor");
    else if (tc_tmodel_tensor_unpack_affine(t, codes, scales, offsets, err) == TC_OK) {
        tc_ternary_dequantize_affine(codes, scales, offsets, t->shape[0], t->shape[1], &t->plan.group, dst);
        rc = TC_OK;
    }
    free(codes);
    free(scales);
    free(offsets);
    return rc;
}

void tc_tmodel_size_of(const tc_tmodel *m, tc_tmodel_size *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const tc_tmodel_tensor *t = &m->tensors[i];
        uint64_t n = tensor_elems(t);
        out->bytes += t->nbytes;
        out->params += n;
        if (t->ternary) {
            out->ternary_bytes += t->nbytes;
            out->ternary_params += n;
        }
    }
}
