/* TQ1_0 and TQ2_0 block coding.
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

static int block_bytes(tc_dtype type)
{
    return type == TC_TQ1_0 ? TC_TQ1_0_BLOCK_BYTES : TC_TQ2_0_BLOCK_BYTES;
}

int tc_ggml_ternary_row_bytes(tc_dtype type, int64_t K, uint64_t *bytes, tc_error *err)
{
    if (type != TC_TQ1_0 && type != TC_TQ2_0)
        return tc_err(err, "ggml ternary: %s is not a ternary block type", tc_dtype_name(type));
    if (K < 1 || K % TC_TQ_BLOCK_ELEMS)
        return tc_err(err, "ggml ternary: row of %lld weights is not a whole number of %d-weight "
                      "blocks", (long long)K, TC_TQ_BLOCK_ELEMS);
    if ((uint64_t)K / TC_TQ_BLOCK_ELEMS > UINT64_MAX / TC_TQ2_0_BLOCK_BYTES)
        return tc_err(err, "ggml ternary: row of %lld weights is too long", (long long)K);
    *bytes = (uint64_t)K / TC_TQ_BLOCK_ELEMS * (uint64_t)block_bytes(type);
    return TC_OK;
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

int tc_ggml_ternary_encode(tc_dtype type, const int8_t *codes, const float *d, int64_t K,
                           uint8_t *out, tc_error *err)
{
    uint64_t bytes;
    if (tc_ggml_ternary_row_bytes(type, K, &bytes, err))
        return TC_ERR;
    for (int64_t i = 0; i < K; i++)
        if (codes[i] < -1 || codes[i] > 1)
            return tc_err(err, "ggml ternary: code %d at weight %lld is not -1, 0 or 1",
                          (int)codes[i], (long long)i);
    int bb = block_bytes(type);
    for (int64_t b = 0; b < K / TC_TQ_BLOCK_ELEMS; b++) {
        const int8_t *c = codes + b * TC_TQ_BLOCK_ELEMS;
        uint8_t *blk = out + b * bb;
        if (type == TC_TQ1_0)
            encode_tq1(c, blk);
        else
            encode_tq2(c, blk);
        put_f16(blk + bb - 2, d[b]);
    }
    return TC_OK;
}

/* Trits 0..2 of one block, in element order. Returns -1 if a TQ2_0 field
 * holds 3. */
static int block_trits(tc_dtype type, const uint8_t *blk, int8_t *t)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    int bad = 0;
    for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++) {
        int byte, pos;
        if (type == TC_TQ1_0) {
            tq1_place(e, &byte, &pos);
            uint8_t q = (uint8_t)(blk[byte] * pow3[pos]);
            t[e] = (int8_t)(((unsigned)q * 3) >> 8);
        } else {
            tq2_place(e, &byte, &pos);
            t[e] = (int8_t)((blk[byte] >> pos) & 3);
            bad |= t[e] == 3;
        }
    }
    return bad ? -1 : 0;
}

int tc_ggml_ternary_decode(tc_dtype type, const uint8_t *blocks, int64_t K, int8_t *codes,
                           float *d, tc_error *err)
{
    uint64_t bytes;
    if (tc_ggml_ternary_row_bytes(type, K, &bytes, err))
        return TC_ERR;
    int bb = block_bytes(type);
    for (int64_t b = 0; b < K / TC_TQ_BLOCK_ELEMS; b++) {
        const uint8_t *blk = blocks + b * bb;
        int8_t *c = codes + b * TC_TQ_BLOCK_ELEMS;
        if (block_trits(type, blk, c))
            return tc_err(err, "ggml ternary: TQ2_0 block %lld holds the non-ternary field 3",
                          (long long)b);
        for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++)
            c[e] = (int8_t)(c[e] - 1);
        d[b] = get_f16(blk + bb - 2);
    }
    return TC_OK;
}

int tc_ggml_ternary_dequantize(tc_dtype type, const uint8_t *blocks, int64_t K, float *out,
                               tc_error *err)
{
    uint64_t bytes;
    if (tc_ggml_ternary_row_bytes(type, K, &bytes, err))
        return TC_ERR;
    int bb = block_bytes(type);
    int8_t t[TC_TQ_BLOCK_ELEMS];
    for (int64_t b = 0; b < K / TC_TQ_BLOCK_ELEMS; b++) {
        const uint8_t *blk = blocks + b * bb;
        float d = get_f16(blk + bb - 2);
        block_trits(type, blk, t); /* a TQ2_0 field of 3 reads as +2, as in ggml */
        for (int e = 0; e < TC_TQ_BLOCK_ELEMS; e++)
            out[b * TC_TQ_BLOCK_ELEMS + e] = (float)(t[e] - 1) * d;
    }
    return TC_OK;
}
