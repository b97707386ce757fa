/* Ternary codes in ggml blocks: TQ1_0 and TQ2_0, and Q4_0 / Q8_0 blocks whose
 * integers are -1, 0 or 1; Q4_1 blocks whose integers are 0, 1 or 2 (codes
 * with an offset).
 *
 * TQ1_0 stores five trits t0..t4 (t0 most significant) of a byte as
 * ceil(v * 256 / 243) with v = sum t_n 3^(4-n): the value becomes a fixed-point
 * fraction of 3^5, so multiplying the byte by 3^n (mod 256) moves trit n to
 * the top and (byte * 3) >> 8 reads it off. The four-trit qh bytes are shifted
 * by one trit (v * 3) so the same reading works. */
#include "tc/ggml_ternary.h"

#include <string.h>

#define QS1 48 /* TQ1_0 five-trit bytes */
#define QH1 4  /* TQ1_0 four-trit bytes */
#define QS2 64 /* TQ2_0 bytes */
#define QK 32  /* Q4_0 / Q4_1 / Q8_0 block */

/* Byte and trit position of element e of a TQ1_0 block: elements 0..159 go
 * down the 32 first bytes one trit at a time, 160..239 likewise down the next
 * 16, 240..255 down the 4 qh bytes. */
static void tq1_place(int e, int *byte, int *trit)
{
    if (e < 160) {
        *byte = e % 32;
        *trit = e / 32;
    } else if (e < 240) {
        *byte = 32 + (e - 160) % 16;
        *trit = (e - 160) / 16;
    } else {
        *byte = QS1 + (e - 240) % QH1;
        *trit = (e - 240) / QH1;
    }
}

/* Byte and bit shift of element e of a TQ2_0 block: each 128 elements fill
 * 32 bytes, 32 elements per 2-bit plane. */
static void tq2_place(int e, int *byte, int *shift)
{
    *byte = (e / 128) * 32 + e % 32;
    *shift = 2 * ((e % 128) / 32);
}

static void encode_tq1(const int8_t *c, uint8_t *blk)
{
    static const int pow3[5] = {81, 27, 9, 3, 1};
    int v[QS1 + QH1] = {0};
    for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++) {
        int byte, trit;
        tq1_place(e, &byte, &trit);
        v[byte] += (c[e] + 1) * pow3[trit];
    }
    /* ceil(v * 256 / 243) fits a byte because v <= 242. */
    for (int i = 0; i < QS1 + QH1; i++)
        blk[i] = (uint8_t)((v[i] * 256 + 242) / 243);
}

static void encode_tq2(const int8_t *c, uint8_t *blk)
{
    memset(blk, 0, QS2);
    for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++) {
        int byte, shift;
        tq2_place(e, &byte, &shift);
        blk[byte] |= (uint8_t)((c[e] + 1) << shift);
    }
}

/* Q4_0: byte j holds element j in its low nibble and j + 16 in its high one,
 * each as value + 8 (ggml's dequantize_row_q4_0). */
static void encode_q4_0(const int8_t *c, uint8_t *qs)
{
    for (int j = 0; j < QK / 2; j++)
        qs[j] = (uint8_t)((c[j] + 8) | (c[j + QK / 2] + 8) << 4);
}

/* Q4_1: as Q4_0, each nibble the code + 1 (ggml's dequantize_row_q4_1:
 * nibble * d + m). */
static void encode_q4_1(const int8_t *c, uint8_t *qs)
{
    for (int j = 0; j < QK / 2; j++)
        qs[j] = (uint8_t)((c[j] + 1) | (c[j + QK / 2] + 1) << 4);
}

static void encode_q8_0(const int8_t *c, uint8_t *qs)
{
    for (int j = 0; j < QK; j++)
        qs[j] = (uint8_t)c[j];
}

/* The integers of one block, in element order, as ggml reads them: TQ trits
 * minus 1 (a TQ2_0 field of 3 reads as +2), Q4_0 nibbles minus 8, Q8_0 bytes. */
static void values_tq1(const uint8_t *blk, int8_t *v)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++) {
        int byte, pos;
        tq1_place(e, &byte, &pos);
        uint8_t q = (uint8_t)(blk[byte] * pow3[pos]);
        v[e] = (int8_t)((int)(((unsigned)q * 3) >> 8) - 1);
    }
}

static void values_tq2(const uint8_t *blk, int8_t *v)
{
    for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++) {
        int byte, pos;
        tq2_place(e, &byte, &pos);
        v[e] = (int8_t)(((blk[byte] >> pos) & 3) - 1);
    }
}

static void values_q4_0(const uint8_t *qs, int8_t *v)
{
    for (int j = 0; j < QK / 2; j++) {
        v[j] = (int8_t)((qs[j] & 0x0f) - 8);
        v[j + QK / 2] = (int8_t)((qs[j] >> 4) - 8);
    }
}

static void values_q4_1(const uint8_t *qs, int8_t *v)
{
    for (int j = 0; j < QK / 2; j++) {
        v[j] = (int8_t)((qs[j] & 0x0f) - 1);
        v[j + QK / 2] = (int8_t)((qs[j] >> 4) - 1);
    }
}

static void values_q8_0(const uint8_t *qs, int8_t *v)
{
    for (int j = 0; j < QK; j++)
        v[j] = (int8_t)qs[j];
}

/* Each type's block: weights, bytes, where the f16 scale sits, where the
 * f16 minimum sits (-1: none) and where the integers start. */
typedef struct tern_type {
    tc_dtype type;
    int elems, bytes, d_at, m_at, q_at;
    void (*encode)(const int8_t *codes, uint8_t *q);
    void (*values)(const uint8_t *q, int8_t *v);
} tern_type;

static const tern_type TYPES[] = {
    {TC_TQ1_0, TC_TQ_BLOCK_ELEMS, TC_TQ1_0_BLOCK_BYTES, TC_TQ1_0_BLOCK_BYTES - 2, -1, 0, encode_tq1, values_tq1},
    {TC_TQ2_0, TC_TQ_BLOCK_ELEMS, TC_TQ2_0_BLOCK_BYTES, TC_TQ2_0_BLOCK_BYTES - 2, -1, 0, encode_tq2, values_tq2},
    {TC_Q4_0, QK, 2 + QK / 2, 0, -1, 2, encode_q4_0, values_q4_0},
    {TC_Q4_1, QK, 4 + QK / 2, 0, 2, 4, encode_q4_1, values_q4_1},
    {TC_Q8_0, QK, 2 + QK, 0, -1, 2, encode_q8_0, values_q8_0},
};

static const tern_type *type_of(tc_dtype type)
{
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type)
            return &TYPES[i];
    return NULL;
}

int tc_ggml_ternary_block_elems(tc_dtype type)
{
    const tern_type *t = type_of(type);
    return t ? t->elems : 0;
}

int tc_ggml_ternary_has_offset(tc_dtype type)
{
    const tern_type *t = type_of(type);
    return t && t->m_at >= 0;
}

static const tern_type *checked(tc_dtype type, int64_t K, uint64_t *bytes, tc_error *err)
{
    const tern_type *t = type_of(type);
    if (!t) {
        tc_err(err, "ggml ternary: %s cannot hold ternary codes", tc_dtype_name(type));
        return NULL;
    }
    if (K < 1 || K % t->elems) {
        tc_err(err, "ggml ternary: row of %lld weights is not a whole number of %d-weight %s blocks",
               (long long)K, t->elems, tc_dtype_name(type));
        return NULL;
    }
    if ((uint64_t)K / (uint64_t)t->elems > UINT64_MAX / (uint64_t)t->bytes) {
        tc_err(err, "ggml ternary: row of %lld weights is too long", (long long)K);
        return NULL;
    }
    *bytes = (uint64_t)K / (uint64_t)t->elems * (uint64_t)t->bytes;
    return t;
}

int tc_ggml_ternary_row_bytes(tc_dtype type, int64_t K, uint64_t *bytes, tc_error *err)
{
    return checked(type, K, bytes, err) ? TC_OK : TC_ERR;
}

static void put_f16(uint8_t *p, float d)
{
    uint16_t h = tc_f32_to_f16(d);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static float get_f16(const uint8_t *p)
{
    return tc_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

int tc_ggml_ternary_encode(tc_dtype type, const int8_t *codes, const float *d, int64_t K,
                           uint8_t *out, tc_error *err)
{
    return tc_ggml_ternary_encode_affine(type, codes, d, NULL, K, out, err);
}

int tc_ggml_ternary_encode_affine(tc_dtype type, const int8_t *codes, const float *d, const float *mu,
                                  int64_t K, uint8_t *out, tc_error *err)
{
    uint64_t bytes;
    const tern_type *t = checked(type, K, &bytes, err);
    if (!t)
        return TC_ERR;
    if (mu && t->m_at < 0)
        return tc_err(err, "ggml ternary: %s holds no offset", tc_dtype_name(type));
    for (int64_t i = 0; i < K; i++)
        if (codes[i] < -1 || codes[i] > 1)
            return tc_err(err, "ggml ternary: code %d at weight %lld is not -1, 0 or 1",
                          (int)codes[i], (long long)i);
    for (int64_t b = 0; b < K / t->elems; b++) {
        uint8_t *blk = out + b * t->bytes;
        t->encode(codes + b * t->elems, blk + t->q_at);
        put_f16(blk + t->d_at, d[b]);
        /* A weight is (c + 1) * d + m: m = mu - d, d as stored. */
        if (t->m_at >= 0)
            put_f16(blk + t->m_at, (mu ? mu[b] : 0.0f) - get_f16(blk + t->d_at));
    }
    return TC_OK;
}

int tc_ggml_ternary_decode(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                           float *d, tc_error *err)
{
    return tc_ggml_ternary_decode_affine(type, blocks, K, codes, d, NULL, err);
}

int tc_ggml_ternary_decode_affine(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                                  float *d, float *mu, tc_error *err)
{
    uint64_t bytes;
    const tern_type *t = checked(type, K, &bytes, err);
    if (!t)
        return TC_ERR;
    for (int64_t b = 0; b < K / t->elems; b++) {
        const uint8_t *blk = blocks + b * t->bytes;
        int8_t *c = codes + b * t->elems;
        t->values(blk + t->q_at, c);
        for (int e = 0; e < t->elems; e++)
            if (c[e] < -1 || c[e] > 1)
                return tc_err(err, "ggml ternary: %s block %lld holds the value %d, which is not -1, 0 or 1",
                              tc_dtype_name(type), (long long)b, (int)c[e]);
        d[b] = get_f16(blk + t->d_at);
        if (mu)
            mu[b] = t->m_at >= 0 ? get_f16(blk + t->m_at) + d[b] : 0.0f;
    }
    return TC_OK;
}

int tc_ggml_ternary_dequantize(tc_dtype type, const uint8_t *blocks, int64_t K, float *out,
                               tc_error *err)
{
    uint64_t bytes;
    const tern_type *t = checked(type, K, &bytes, err);
    if (!t)
        return TC_ERR;
    int8_t v[TC_TQ_BLOCK_ELEMS];
    for (int64_t b = 0; b < K / t->elems; b++) {
        const uint8_t *blk = blocks + b * t->bytes;
        float d = get_f16(blk + t->d_at);
        t->values(blk + t->q_at, v); /* whatever the integers are, as ggml reads them */
        if (t->m_at >= 0) { /* Q4_1: nibble * d + m, the nibble being v + 1 */
            float m = get_f16(blk + t->m_at);
            for (int e = 0; e < t->elems; e++)
                out[b * t->elems + e] = (float)(v[e] + 1) * d + m;
        } else {
            for (int e = 0; e < t->elems; e++)
                out[b * t->elems + e] = (float)v[e] * d;
        }
    }
    return TC_OK;
}

int tc_i2s_encode(const int8_t *codes, uint64_t n, float scale, uint8_t *out, tc_error *err)
{
    if (n % TC_I2S_BLOCK)
        return tc_err(err, "I2_S: %llu weights is not a whole number of blocks of 128", (unsigned long long)n);
    for (uint64_t b = 0; b < n / TC_I2S_BLOCK; b++) {
        const int8_t *c = codes + b * TC_I2S_BLOCK;
        uint8_t *q = out + b * (TC_I2S_BLOCK / 4);
        for (int j = 0; j < TC_I2S_BLOCK / 4; j++) {
            unsigned v = 0;
            for (int g = 0; g < 4; g++) {
                int x = c[g * 32 + j];
                if (x < -1 || x > 1)
                    return tc_err(err, "I2_S: code %d at weight %llu is not -1, 0 or 1", x,
                                  (unsigned long long)(b * TC_I2S_BLOCK + (uint64_t)(g * 32 + j)));
                v |= (unsigned)(x + 1) << (6 - 2 * g);
            }
            q[j] = (uint8_t)v;
        }
    }
    uint8_t *tail = out + n / 4;
    memset(tail, 0, TC_I2S_TAIL);
    memcpy(tail, &scale, sizeof scale); /* little-endian f32, as the host */
    return TC_OK;
}

int tc_i2s_decode(const uint8_t *data, uint64_t n, int8_t *codes, float *scale, tc_error *err)
{
    if (n % TC_I2S_BLOCK)
        return tc_err(err, "I2_S: %llu weights is not a whole number of blocks of 128", (unsigned long long)n);
    for (uint64_t b = 0; b < n / TC_I2S_BLOCK; b++) {
        const uint8_t *q = data + b * (TC_I2S_BLOCK / 4);
        int8_t *c = codes + b * TC_I2S_BLOCK;
        unsigned bad = 0;
        for (int j = 0; j < TC_I2S_BLOCK / 4; j++)
            for (int g = 0; g < 4; g++) {
                unsigned v = (q[j] >> (6 - 2 * g)) & 3u;
                bad |= v == 3u;
                c[g * 32 + j] = (int8_t)((int)v - 1);
            }
        if (bad)
            return tc_err(err, "I2_S: block %llu holds the 2-bit value 3, which is no ternary code",
                          (unsigned long long)b);
    }
    memcpy(scale, data + n / 4, sizeof *scale);
    return TC_OK;
}
