/* ggml's block-quantized types (tc/ggml_quants.h): each decoder is the
 * arithmetic of ggml's reference dequantizer, operation for operation and in
 * the same types, so that every weight comes out as the same float (the
 * build fuses no multiply-add: -ffp-contract=off).  Blocks are read from
 * byte offsets with explicit little-endian loads, never through structs. */
#include "tc/ggml_quants.h"

#include <math.h>
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

/* Q5's fifth bits: byte k of qh expanded to eight bytes of 0 or 0x10 (byte i
 * is bit i's), so the weights are built with byte operations alone instead
 * of a shift by a different count for every weight: the loops below then
 * vectorize, with the same integers and so the same floats as ggml. */
#define X5(x) ((((x) >> 0 & 1ull) << 4) | (((x) >> 1 & 1ull) << 12) | (((x) >> 2 & 1ull) << 20) | \
               (((x) >> 3 & 1ull) << 28) | (((x) >> 4 & 1ull) << 36) | (((x) >> 5 & 1ull) << 44) | \
               (((x) >> 6 & 1ull) << 52) | (((x) >> 7 & 1ull) << 60))
#define X5_4(n) X5(n), X5((n) + 1), X5((n) + 2), X5((n) + 3)
#define X5_16(n) X5_4(n), X5_4((n) + 4), X5_4((n) + 8), X5_4((n) + 12)
#define X5_64(n) X5_16(n), X5_16((n) + 16), X5_16((n) + 32), X5_16((n) + 48)
static const uint64_t q5_high[256] = {X5_64(0), X5_64(64), X5_64(128), X5_64(192)};

/* The 32 fifth bits of a block (qh little endian: bit j is weight j's) as bytes. */
static void q5_bits(const uint8_t *qh, uint8_t hb[32])
{
    for (int k = 0; k < 4; k++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(hb + 8 * k, &q5_high[qh[k]], 8); /* byte i of the word is its bits i*8.. */
#else
        for (int i = 0; i < 8; i++)
            hb[8 * k + i] = (uint8_t)(q5_high[qh[k]] >> (8 * i));
#endif
    }
}

static int q5_0(const uint8_t *b, float *y)
{
    float d;
    if (half(b, &d))
        return -1;
    uint8_t hb[32];
    q5_bits(b + 2, hb);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const int32_t x0 = ((qs[j] & 0x0F) | hb[j]) - 16;
        const int32_t x1 = ((qs[j] >> 4) | hb[j + 16]) - 16;
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
    uint8_t hb[32];
    q5_bits(b + 4, hb);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const int x0 = (qs[j] & 0x0F) | hb[j];
        const int x1 = (qs[j] >> 4) | hb[j + 16];
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

/* scales[16] qs[64] d dmin.  As in Q6_K below, the per-16 products come
 * first and every run of 16 weights is one loop whose bounds depend on the
 * half: the same floats as ggml's, in loops gcc vectorizes (with constant
 * bounds it unrolls them whole first, and then vectorizes nothing). */
static int q2_k(const uint8_t *b, float *y)
{
    float d, min;
    if (half(b + 80, &d) || half(b + 82, &min))
        return -1;
    const uint8_t *scales = b, *q = b + 16;
    float dl[16], ml[16];
    for (int k = 0; k < 16; k++) {
        dl[k] = d * (scales[k] & 0xF);
        ml[k] = min * (scales[k] >> 4);
    }
    for (int n = 0; n < 2; n++)           /* 128 weights from 32 bytes */
        for (int j = 0; j < 4; j++)       /* bit pair j of each byte */
            for (int h = 0; h < 2; h++) { /* bytes 0..15, then 16..31 */
                const int is = 8 * n + 2 * j + h, shift = 2 * j;
                const uint8_t *qq = q + 32 * n;
                const float sd = dl[is], sm = ml[is];
                float *yy = y + 128 * n + 32 * j;
                for (int l = 16 * h; l < 16 * h + 16; ++l)
                    yy[l] = sd * ((int8_t)((qq[l] >> shift) & 3)) - sm;
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
    float dl[16];
    for (int k = 0; k < 16; k++) /* the bytes of aux in memory order, little endian */
        dl[k] = d_all * ((int8_t)(uint8_t)(aux[k / 4] >> (8 * (k % 4))) - 32);
    const uint8_t *q = b + 32, *hm = b;
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                const int is = 8 * n + 2 * j + h, shift = 2 * j;
                const uint8_t m = (uint8_t)(1u << (4 * n + j)); /* the high bit's plane */
                const uint8_t *qq = q + 32 * n;
                const float sd = dl[is];
                float *yy = y + 128 * n + 32 * j;
                for (int l = 16 * h; l < 16 * h + 16; ++l)
                    yy[l] = sd * ((int8_t)((qq[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
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
    /* ggml computes (d * scale) * q: the products d * scale come first, one
     * per 16 weights, then each run of 16 is one contiguous loop. */
    float ds[16];
    for (int k = 0; k < 16; k++)
        ds[k] = d * sc[k];
    for (int n = 0; n < 2; n++, ql += 64, qh += 32, y += 128) {
        for (int part = 0; part < 4; part++) { /* weights part*32 .. part*32+31 of this half */
            const uint8_t *lo = ql + (part & 1) * 32;
            int shift = (part >> 1) * 4, hshift = 2 * part;
            for (int h = 0; h < 2; h++) {
                float s = ds[8 * n + 2 * part + h];
                for (int l = 16 * h; l < 16 * h + 16; ++l) {
                    int8_t q = (int8_t)(((lo[l] >> shift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
                    y[32 * part + l] = s * q;
                }
            }
        }
    }
    return 0;
}

/* ggml multiplies the scale by the table value of each weight; the 16
 * possible products are made once per scale and the weights looked up. */
static void iq4_products(float d, float t[16])
{
    for (int k = 0; k < 16; k++)
        t[k] = d * kvalues_iq4nl[k];
}

static int iq4_nl(const uint8_t *b, float *y)
{
    float d, t[16];
    if (half(b, &d))
        return -1;
    iq4_products(d, t);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j + 0] = t[qs[j] & 0xf];
        y[j + 16] = t[qs[j] >> 4];
    }
    return 0;
}

/* d scales_h(u16) scales_l[4] qs[128] */
static int iq4_xs(const uint8_t *b, float *y)
{
    float d, t[16];
    if (half(b, &d))
        return -1;
    uint16_t scales_h = u16(b + 2);
    const uint8_t *scales_l = b + 4, *qs = b + 8;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
        iq4_products(d * (ls - 32), t);
        for (int j = 0; j < 16; ++j) {
            y[j + 0] = t[qs[j] & 0xf];
            y[j + 16] = t[qs[j] >> 4];
        }
        y += 32;
        qs += 16;
    }
    return 0;
}


/* ---- Encoding: ggml's reference quantizers (no importance matrix) ----------------
 * The same arithmetic in the same order, so that the bytes are those
 * llama.cpp's quantize_row_*_ref writes for the same input. */

/* Round to nearest, ties to even, by the float magic number ggml uses. */
static int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void enc_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    put16(b, tc_f32_to_f16(d));
    for (int j = 0; j < 32; ++j)
        b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void enc_q4_0(const float *x, uint8_t *b)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    put16(b, tc_f32_to_f16(d));
    for (int j = 0; j < 16; ++j) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        int8_t i0 = (int8_t)(x0 + 8.5f), i1 = (int8_t)(x1 + 8.5f);
        const uint8_t xi0 = (uint8_t)(i0 < 15 ? i0 : 15), xi1 = (uint8_t)(i1 < 15 ? i1 : 15);
        b[2 + j] = (uint8_t)(xi0 | xi1 << 4);
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* A scale and a min for n weights on levels 0..nmax, weighted least squares
 * over nstep + 1 candidate scales (ggml's make_qkx2_quants). */
static float qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                  float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float cur_error = 0;
        for (int i = 0; i < n; ++i) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            cur_error += w[i] * (diff * diff);
        }
        if (cur_error < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = cur_error;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

static void enc_q4_k(const float *x, uint8_t *b)
{
    uint8_t L[QK_K], Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32], max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qkx2(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
        max_scale = scales[j] > max_scale ? scales[j] : max_scale;
        max_min = mins[j] > max_min ? mins[j] : max_min;
    }
    uint8_t *sc12 = b + 4, *q = b + 16;
    memset(sc12, 0, 12);
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            sc12[j] = ls;
            sc12[j + 4] = lm;
        } else {
            sc12[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc12[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc12[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    uint16_t hd = tc_f32_to_f16(max_scale / 63.f), hm = tc_f32_to_f16(max_min / 63.f);
    put16(b, hd);
    put16(b + 2, hm);
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, sc12, &sc, &m);
        const float d = tc_f16_to_f32(hd) * sc;
        if (!d)
            continue;
        const float dm = tc_f16_to_f32(hm) * m;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = (uint8_t)clampi(nearest_int((x[32 * j + ii] + dm) / d), 0, 15);
    }
    for (int j = 0; j < QK_K; j += 64) {
        for (int l = 0; l < 32; ++l)
            q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
    }
}

/* A symmetric scale for n weights on levels -nmax..nmax-1, weighted by x^2,
 * refined over 18 nearby scales (ggml's make_qx_quants, rmse_type 1). */
static float qx(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void enc_q6_k(const float *x, uint8_t *b)
{
    int8_t L[QK_K];
    float scales[QK_K / 16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        scales[ib] = qx(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    memset(b, 0, 210);
    if (max_abs_scale < 1e-15f) {
        put16(b + 208, tc_f32_to_f16(0.f));
        return;
    }
    int8_t *sc = (int8_t *)(b + 192);
    float iscale = -128.f / max_scale;
    uint16_t hd = tc_f32_to_f16(1 / iscale);
    put16(b + 208, hd);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        int v = nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = tc_f16_to_f32(hd) * sc[j];
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    uint8_t *ql = b, *qh = b + 128;
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

/* ---- The type table ------------------------------------------------------------------ */

typedef int (*block_fn)(const uint8_t *block, float *out);
typedef void (*enc_fn)(const float *x, uint8_t *block);

/* One row per type: its block decoder and, for the types tc writes, its
 * encoder.  Sizes come from tc_dtype_block_elems / _bytes (dtype.c). */
static const struct {
    tc_dtype type;
    block_fn decode;
    enc_fn encode;
} types[] = {
    {TC_Q4_0, q4_0, enc_q4_0}, {TC_Q4_1, q4_1, NULL}, {TC_Q5_0, q5_0, NULL},     {TC_Q5_1, q5_1, NULL},
    {TC_Q8_0, q8_0, enc_q8_0}, {TC_Q2_K, q2_k, NULL}, {TC_Q3_K, q3_k, NULL},     {TC_Q4_K, q4_k, enc_q4_k},
    {TC_Q5_K, q5_k, NULL},     {TC_Q6_K, q6_k, enc_q6_k}, {TC_IQ4_NL, iq4_nl, NULL}, {TC_IQ4_XS, iq4_xs, NULL},
};

static int row_of(tc_dtype t)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == t)
            return (int)i;
    return -1;
}

int tc_ggml_quant_is(tc_dtype t)
{
    return row_of(t) >= 0;
}

int tc_ggml_quant_can_encode(tc_dtype t)
{
    int r = row_of(t);
    return r >= 0 && types[r].encode;
}

int tc_ggml_quant_dequantize(tc_dtype t, const void *src, uint64_t n, float *dst, tc_error *err)
{
    int r = row_of(t);
    block_fn f = r >= 0 ? types[r].decode : NULL;
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

int tc_ggml_quant_quantize(tc_dtype t, const float *src, uint64_t n, void *dst, tc_error *err)
{
    int r = row_of(t);
    enc_fn f = r >= 0 ? types[r].encode : NULL;
    uint64_t be = tc_dtype_block_elems(t), bb = tc_dtype_block_bytes(t);
    if (!f)
        return tc_err(err, "tc does not write %s", tc_dtype_name(t));
    if (n % be)
        return tc_err(err, "%llu weights are not whole %s blocks of %llu", (unsigned long long)n, tc_dtype_name(t),
                      (unsigned long long)be);
    for (uint64_t b = 0; b < n / be; b++) {
        for (uint64_t i = 0; i < be; i++)
            if (!isfinite(src[b * be + i]))
                return tc_err(err, "a weight to write as %s is not finite (block %llu)", tc_dtype_name(t),
                              (unsigned long long)b);
        f(src + b * be, (uint8_t *)dst + b * bb);
    }
    return TC_OK;
}
