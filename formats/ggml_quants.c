/* ggml's block-quantized types (tc/ggml_quants.h): each decoder is the
 * arithmetic of ggml's reference dequantizer, operation for operation and in
 * the same types, so that every weight comes out as the same float (the
 * build fuses no multiply-add: -ffp-contract=off).  Blocks are read from
 * byte offsets with explicit little-endian loads, never through structs. */
#include "tc/ggml_quants.h"

#include <string.h>

#include "tc/dtype.h"

#define QK_K 256

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

static uint16_t u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An f16 scale that is infinite or NaN makes every weight of its block
 * meaningless: such a file is refused rather than computed with. */
static int half(const uint8_t *p, float *out)
{
    uint16_t h = u16(p);
    if ((h & 0x7c00) == 0x7c00)
        return -1;
    *out = tc_f16_to_f32(h);
    return 0;
}

static int q4_0(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        const int x0 = (qs[j] & 0x0F) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
    return 0;
}

static int q4_1(const uint8_t *b, float *y)
{
    float d, m;
    if (half(b, &d) || half(b + 2, &m))
        return -1;
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        const int x0 = qs[j] & 0x0F;
        const int x1 = qs[j] >> 4;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
    return 0;
}

static int q5_0(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    uint32_t qh = u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = (uint8_t)((qh >> (j + 12)) & 0x10);
        const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
    return 0;
}

static int q5_1(const uint8_t *b, float *y)
{
    float d, m;
    if (half(b, &d) || half(b + 2, &m))
        return -1;
    uint32_t qh = u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = (uint8_t)((qh >> (j + 12)) & 0x10);
        const int x0 = (qs[j] & 0x0F) | xh_0;
        const int x1 = (qs[j] >> 4) | xh_1;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
    return 0;
}

static int q8_0(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    for (int j = 0; j < 32; ++j)
        y[j] = (int8_t)b[2 + j] * d;
    return 0;
}

/* scales[16] qs[64] d dmin */
static int q2_k(const uint8_t *b, float *y)
{
    float d, min;
    if (half(b + 80, &d) || half(b + 82, &min))
        return -1;
    const uint8_t *scales = b, *q = b + 16;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            uint8_t sc = scales[is++];
            float dl = d * (sc & 0xF), ml = min * (sc >> 4);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
            sc = scales[is++];
            dl = d * (sc & 0xF);
            ml = min * (sc >> 4);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
            shift += 2;
        }
        q += 32;
    }
    return 0;
}

/* hmask[32] qs[64] scales[12] d */
static int q3_k(const uint8_t *b, float *y)
{
    float d_all;
    if (half(b + 108, &d_all))
        return -1;
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    for (int k = 0; k < 3; k++)
        aux[k] = u32(b + 96 + 4 * k);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    for (int k = 0; k < 16; k++) /* the bytes of aux in memory order, little endian */
        scales[k] = (int8_t)(uint8_t)(aux[k / 4] >> (8 * (k % 4)));
    const uint8_t *q = b + 32, *hm = b;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            float dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m = (uint8_t)(m << 1);
        }
        q += 32;
    }
    return 0;
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* d dmin scales[12] qs[128] */
static int q4_k(const uint8_t *b, float *y)
{
    float d, min;
    if (half(b, &d) || half(b + 2, &min))
        return -1;
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
    return 0;
}

/* d dmin scales[12] qh[32] qs[128] */
static int q5_k(const uint8_t *b, float *y)
{
    float d, min;
    if (half(b, &d) || half(b + 2, &min))
        return -1;
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
    return 0;
}

/* ql[128] qh[64] scales[16] (int8) d */
static int q6_k(const uint8_t *b, float *y)
{
    float d;
    if (half(b + 208, &d))
        return -1;
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
    return 0;
}

static int iq4_nl(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j + 0] = d * kvalues_iq4nl[qs[j] & 0xf];
        y[j + 16] = d * kvalues_iq4nl[qs[j] >> 4];
    }
    return 0;
}

/* d scales_h(u16) scales_l[4] qs[128] */
static int iq4_xs(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    uint16_t scales_h = u16(b + 2);
    const uint8_t *scales_l = b + 4, *qs = b + 8;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
        const float dl = d * (ls - 32);
        for (int j = 0; j < 16; ++j) {
            y[j + 0] = dl * kvalues_iq4nl[qs[j] & 0xf];
            y[j + 16] = dl * kvalues_iq4nl[qs[j] >> 4];
        }
        y += 32;
        qs += 16;
    }
    return 0;
}

typedef int (*block_fn)(const uint8_t *block, float *out);

static block_fn decoder(tc_dtype t)
{
    switch (t) {
    case TC_Q4_0: return q4_0;
    case TC_Q4_1: return q4_1;
    case TC_Q5_0: return q5_0;
    case TC_Q5_1: return q5_1;
    case TC_Q8_0: return q8_0;
    case TC_Q2_K: return q2_k;
    case TC_Q3_K: return q3_k;
    case TC_Q4_K: return q4_k;
    case TC_Q5_K: return q5_k;
    case TC_Q6_K: return q6_k;
    case TC_IQ4_NL: return iq4_nl;
    case TC_IQ4_XS: return iq4_xs;
    default: return NULL;
    }
}

int tc_ggml_quant_is(tc_dtype t)
{
    return decoder(t) != NULL;
}

int tc_ggml_quant_dequantize(tc_dtype t, const void *src, uint64_t n, float *dst, tc_error *err)
{
    block_fn f = decoder(t);
    uint64_t be = tc_dtype_block_elems(t), bb = tc_dtype_block_bytes(t);
    if (!f)
        return tc_err(err, "%s is not a ggml block type", tc_dtype_name(t));
    if (n % be)
        return tc_err(err, "%s tensor of %llu elements is not whole blocks of %llu", tc_dtype_name(t),
                      (unsigned long long)n, (unsigned long long)be);
    const uint8_t *p = src;
    for (uint64_t b = 0; b < n / be; b++)
        if (f(p + b * bb, dst + b * be))
            return tc_err(err, "%s block %llu has an infinite or NaN scale", tc_dtype_name(t), (unsigned long long)b);
    return TC_OK;
}
