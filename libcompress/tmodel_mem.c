/* In-memory ternary models: quantized from a tc_model, or random for speed
 * measurements. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/forward.h"
#include "tc/ternary.h"
#include "tc/trun.h"

void tc_tmodel_mem_free(tc_tmodel_mem *mm)
{
    if (!mm)
        return;
    for (size_t i = 0; i < mm->n_bufs; i++)
        free(mm->bufs[i]);
    free(mm->bufs);
    free(mm->m.tensors);
    free(mm->m.source);
    tc_tmodel_tok_free(&mm->m.tok);
    memset(mm, 0, sizeof *mm);
}

static int is_linear_role(int role)
{
    return role == TC_WQ || role == TC_WK || role == TC_WV || role == TC_WO ||
           role == TC_W_GATE || role == TC_W_UP || role == TC_W_DOWN;
}

/* Room for every tensor a config can have. */
static int mem_init(tc_tmodel_mem *mm, const tc_config *cfg, tc_error *err)
{
    memset(mm, 0, sizeof *mm);
    size_t cap = 3 + (size_t)(cfg->n_layers > 0 ? cfg->n_layers : 0) * TC_N_ROLES;
    mm->m.cfg = *cfg;
    mm->m.tensors = calloc(cap, sizeof *mm->m.tensors);
    mm->bufs = calloc(cap, sizeof *mm->bufs);
    if (!mm->m.tensors || !mm->bufs) {
        tc_tmodel_mem_free(mm);
        return tc_err(err, "out of memory for a model of %d layers", cfg->n_layers);
    }
    return TC_OK;
}

/* Takes ownership of buf (freed with the model, also on error). */
static tc_tmodel_tensor *add_tensor(tc_tmodel_mem *mm, int layer, int role, uint8_t *buf,
                                    uint64_t nbytes)
{
    mm->bufs[mm->n_bufs++] = buf;
    tc_tmodel_tensor *t = &mm->m.tensors[mm->m.n_tensors++];
    memset(t, 0, sizeof *t);
    t->layer = layer;
    t->role = role;
    t->n_dims = tc_tmodel_expected_shape(&mm->m.cfg, layer, role, t->shape);
    t->data = buf;
    t->nbytes = nbytes;
    t->dtype = TC_F32;
    return t;
}

static uint64_t elems(const tc_config *c, int layer, int role)
{
    int64_t s[2];
    int nd = tc_tmodel_expected_shape(c, layer, role, s);
    return nd == 2 ? (uint64_t)s[0] * (uint64_t)s[1] : (uint64_t)s[0];
}

static int add_f32(tc_tmodel_mem *mm, int layer, int role, const float *v, tc_error *err)
{
    uint64_t n = elems(&mm->m.cfg, layer, role);
    uint8_t *buf = malloc((size_t)n * sizeof(float));
    if (!buf)
        return tc_err(err, "out of memory for a tensor of %llu values", (unsigned long long)n);
    memcpy(buf, v, (size_t)n * sizeof(float));
    add_tensor(mm, layer, role, buf, n * sizeof(float));
    return TC_OK;
}

static int add_ternary(tc_tmodel_mem *mm, int layer, int role, const float *W,
                       tc_tpack_layout layout, const tc_tgroup *g, tc_error *err)
{
    int64_t s[2];
    tc_tmodel_expected_shape(&mm->m.cfg, layer, role, s);
    tc_tpack_plan plan;
    if (tc_tpack_plan_make(layout, s[0], s[1], g, &plan, err))
        return TC_ERR;
    int8_t *codes = malloc((size_t)(s[0] * s[1]));
    float *scales = malloc((size_t)plan.n_scales * sizeof(float));
    uint8_t *buf = malloc((size_t)plan.total_bytes);
    int rc = TC_ERR;
    if (!codes || !scales || !buf)
        tc_err(err, "out of memory quantizing a %lld x %lld weight", (long long)s[0],
               (long long)s[1]);
    else if (tc_ternary_optimal(W, s[0], s[1], g, codes, scales, err) == TC_OK &&
             tc_tpack_pack(&plan, codes, scales, buf, err) == TC_OK) {
        tc_tmodel_tensor *t = add_tensor(mm, layer, role, buf, plan.total_bytes);
        t->ternary = 1;
        t->plan = plan;
        buf = NULL;
        rc = TC_OK;
    }
    free(codes);
    free(scales);
    free(buf);
    return rc;
}

int tc_tmodel_mem_quantize(tc_tmodel_mem *out, const tc_model *src, tc_tpack_layout layout,
                           const tc_tgroup *g, tc_error *err)
{
    const tc_config *c = &src->cfg;
    if (mem_init(out, c, err))
        return TC_ERR;
    tc_weights w;
    memset(&w, 0, sizeof w);
    float *embd = malloc((size_t)c->vocab_size * (size_t)c->dim * sizeof(float));
    int rc = embd ? TC_OK : tc_err(err, "out of memory for the embedding");
    for (int i = 0; rc == TC_OK && i < c->vocab_size; i++)
        rc = tc_model_embed(src, i, embd + (size_t)i * (size_t)c->dim, err);
    if (rc == TC_OK)
        rc = tc_weights_load(&w, src, err);
    if (rc == TC_OK)
        rc = add_f32(out, -1, TC_G_EMBD, embd, err);
    if (rc == TC_OK)
        rc = add_f32(out, -1, TC_G_OUT_NORM, w.out_norm, err);
    if (rc == TC_OK && !c->tied_embeddings)
        rc = add_f32(out, -1, TC_G_OUTPUT, w.output, err);
    for (int l = 0; rc == TC_OK && l < c->n_layers; l++)
        for (int role = 0; rc == TC_OK && role < TC_N_ROLES; role++) {
            float *v = w.layers[l].w[role];
            if (!v)
                continue;
            /* A ternary linear kind hands out codes and w_s: the weights are
             * code / w_s, which the optimal fit takes back exactly. */
            if (tc_linear_is_ternary(c) && is_linear_role(role)) {
                int64_t shape[2];
                tc_role_shape(c, (tc_role)role, shape);
                float inv = 1.0f / w.layers[l].scale[role];
                for (int64_t k = 0; k < shape[0] * shape[1]; k++)
                    v[k] *= inv;
            }
            rc = is_linear_role(role) ? add_ternary(out, l, role, v, layout, g, err)
                                      : add_f32(out, l, role, v, err);
        }
    free(embd);
    tc_weights_free(&w);
    if (rc)
        tc_tmodel_mem_free(out);
    return rc;
}

/* ---- random models ------------------------------------------------------- */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniformly random valid index of a layout (each code a third each of
 * -1, 0, +1): a pair nibble, or a triple's index and sign. */
static int random_index(tc_tpack_layout layout, uint64_t r, int *sign)
{
    int v = (int)(r % (layout == TC_TPACK_TL2 ? 27 : 9));
    if (layout == TC_TPACK_TL2) {
        *sign = v < 13;
        return v < 13 ? 13 - v : v - 13;
    }
    *sign = 0;
    return layout == TC_TPACK_I2 ? (v / 3) | (v % 3) << 2 : v;
}

/* Full chunks get random bytes directly; a chunk with padding is packed from
 * random codes so that its padding is the code 0. */
static int random_weight(const tc_tpack_plan *p, uint8_t *dst, uint64_t *seed, tc_error *err)
{
    int64_t blocks = p->rows_padded / 32, chunks = p->cols_padded / p->chunk_cols;
    int64_t cc = p->chunk_cols;
    for (int64_t rb = 0; rb < blocks; rb++)
        for (int64_t c = 0; c < chunks; c++) {
            uint8_t *d = dst + (uint64_t)rb * p->row_block_bytes + (uint64_t)c * p->chunk_bytes;
            int64_t rows = p->rows - rb * 32 < 32 ? p->rows - rb * 32 : 32;
            int64_t cols = p->cols - c * cc < cc ? p->cols - c * cc : cc;
            if (rows < 32 || cols < cc) {
                tc_tpack_plan one;
                tc_tgroup tensor = {TC_TGROUP_TENSOR, 0};
                int8_t codes[32 * 24];
                uint8_t tmp[160 + 4];
                float s = 1;
                for (int64_t i = 0; i < rows * cols; i++)
                    codes[i] = (int8_t)((int)(mix(seed) % 3) - 1);
                if (tc_tpack_plan_make(p->layout, rows, cols, &tensor, &one, err) ||
                    tc_tpack_pack(&one, codes, &s, tmp, err))
                    return TC_ERR;
                memcpy(d, tmp, p->chunk_bytes);
                continue;
            }
            if (p->layout != TC_TPACK_TL2) {
                for (int r = 0; r < 32; r++) {
                    uint64_t x = mix(seed);
                    int s;
                    d[r] = (uint8_t)(random_index(p->layout, x, &s) |
                                     random_index(p->layout, x >> 32, &s) << 4);
                }
                continue;
            }
            memset(d, 0, 160);
            for (int t = 0; t < 8; t++)
                for (int r = 0; r < 32; r++) {
                    int s, n = random_index(p->layout, mix(seed), &s);
                    d[(t / 2) * 32 + r] |= (uint8_t)(n << 4 * (t % 2));
                    d[128 + 4 * t + r / 8] |= (uint8_t)(s << (r % 8));
                }
        }
    return TC_OK;
}

static int add_random_ternary(tc_tmodel_mem *mm, int layer, int role, tc_tpack_layout layout,
                              const tc_tgroup *g, uint64_t *seed, tc_error *err)
{
    int64_t s[2];
    tc_tmodel_expected_shape(&mm->m.cfg, layer, role, s);
    tc_tpack_plan plan;
    if (tc_tpack_plan_make(layout, s[0], s[1], g, &plan, err))
        return TC_ERR;
    uint8_t *buf = malloc((size_t)plan.total_bytes);
    if (!buf)
        return tc_err(err, "out of memory for a %lld x %lld weight", (long long)s[0],
                      (long long)s[1]);
    tc_tmodel_tensor *t = add_tensor(mm, layer, role, buf, plan.total_bytes);
    t->ternary = 1;
    t->plan = plan;
    if (random_weight(&plan, buf, seed, err))
        return TC_ERR;
    float scale = (float)(1.0 / sqrt((double)s[1] * 2.0 / 3.0));
    uint32_t u;
    memcpy(&u, &scale, 4);
    for (int64_t i = 0; i < plan.n_scales; i++)
        for (int b = 0; b < 4; b++)
            buf[plan.scale_offset + 4 * (uint64_t)i + (uint64_t)b] = (uint8_t)(u >> 8 * b);
    return TC_OK;
}

int tc_tmodel_mem_random(tc_tmodel_mem *out, const tc_config *cfg, tc_tpack_layout layout,
                         const tc_tgroup *g, uint64_t seed, tc_error *err)
{
    tc_config c = *cfg;
    c.tied_embeddings = 1;
    if (mem_init(out, &c, err))
        return TC_ERR;
    uint64_t n_embd = (uint64_t)c.vocab_size * (uint64_t)c.dim;
    uint16_t *embd = malloc((size_t)n_embd * 2);
    float *ones = malloc((size_t)(c.dim > c.ffn_dim ? c.dim : c.ffn_dim) * sizeof(float));
    int rc = embd && ones ? TC_OK : tc_err(err, "out of memory for a random model");
    if (rc == TC_OK) {
        for (uint64_t i = 0; i < n_embd; i++)
            embd[i] = tc_f32_to_f16((float)((double)(mix(&seed) >> 11) * 0x1p-53 - 0.5));
        tc_tmodel_tensor *t = add_tensor(out, -1, TC_G_EMBD, (uint8_t *)embd, n_embd * 2);
        t->dtype = TC_F16;
        embd = NULL;
        for (int i = 0; i < (c.dim > c.ffn_dim ? c.dim : c.ffn_dim); i++)
            ones[i] = 1.0f;
        rc = add_f32(out, -1, TC_G_OUT_NORM, ones, err);
    }
    for (int l = 0; rc == TC_OK && l < c.n_layers; l++) {
        rc = add_f32(out, l, TC_ATTN_NORM, ones, err);
        if (rc == TC_OK)
            rc = add_f32(out, l, TC_FFN_NORM, ones, err);
        for (int role = 0; rc == TC_OK && role < TC_N_ROLES; role++)
            if (is_linear_role(role))
                rc = add_random_ternary(out, l, role, layout, g, &seed, err);
    }
    free(embd);
    free(ones);
    if (rc)
        tc_tmodel_mem_free(out);
    return rc;
}
