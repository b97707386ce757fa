/* Ternary codes in ggml blocks (TQ1_0, TQ2_0, and Q4_0 / Q8_0 holding -1, 0,
 * 1; Q4_1 holding codes with an offset): hand-computed bytes pin ggml's
 * element and trit order, random rows round-trip, dequantization is code *
 * f16(d) (for Q4_0 / Q8_0 also through ggml's own Q4_0 / Q8_0 decoder; Q4_1
 * code * d + mu up to the f16 rounding of the minimum, through ggml's Q4_1
 * decoder), and bad input is refused. */
#include "testutil.h"

#include <stdint.h>

#include "tc/ggml_quants.h"
#include "tc/ggml_ternary.h"

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One block whose only nonzero code is +1 at position e. */
static void encode_single(tc_dtype t, int e, uint8_t *blk)
{
    int8_t c[256] = {0};
    float d = 1.0f;
    tc_error err;
    c[e] = 1;
    CHECK_OK(tc_ggml_ternary_encode(t, c, &d, 256, blk, &err), &err);
}

static void test_known_bytes(void)
{
    uint8_t b[66];
    /* TQ2_0: field = code + 1; element e sits in byte (e/128)*32 + e%32 at
     * bits 2*((e%128)/32). All zeros are 0x55. */
    encode_single(TC_TQ2_0, 0, b);
    CHECK(b[0] == 0x56 && b[1] == 0x55 && b[63] == 0x55);
    CHECK(b[64] == 0x00 && b[65] == 0x3c); /* f16 1.0, little-endian */
    encode_single(TC_TQ2_0, 32, b);
    CHECK(b[0] == 0x59);
    encode_single(TC_TQ2_0, 127, b);
    CHECK(b[31] == 0x95);
    encode_single(TC_TQ2_0, 128 + 64 + 5, b);
    CHECK(b[32 + 5] == 0x65);

    /* TQ1_0: a byte of five trits t0..t4 (t0 from the lowest element) holds
     * ceil(256 * sum t_n 3^(4-n) / 243). All zeros (trits 1): v = 121 -> 128.
     * qh bytes hold four trits shifted up one: v = 40 * 3 = 120 -> 127. */
    encode_single(TC_TQ1_0, 0, b);
    CHECK(b[0] == 213); /* v = 2*81 + 27 + 9 + 3 + 1 = 202 */
    CHECK(b[1] == 128 && b[47] == 128 && b[48] == 127 && b[51] == 127);
    CHECK(b[52] == 0x00 && b[53] == 0x3c);
    encode_single(TC_TQ1_0, 32, b);
    CHECK(b[0] == 156); /* v = 81 + 2*27 + 9 + 3 + 1 = 148 */
    encode_single(TC_TQ1_0, 159, b);
    CHECK(b[31] == 129); /* v = 122 */
    encode_single(TC_TQ1_0, 160 + 16 * 2 + 3, b);
    CHECK(b[35] == 137); /* v = 121 + 9 = 130 */
    encode_single(TC_TQ1_0, 240 + 4 * 1 + 2, b);
    CHECK(b[50] == 155); /* v = (27 + 2*9 + 3 + 1) * 3 = 147 */

    /* All +1: 242 -> 255; qh 80 * 3 = 240 -> 253. */
    int8_t ones[256];
    float d = -0.5f;
    tc_error err;
    memset(ones, 1, sizeof ones);
    CHECK_OK(tc_ggml_ternary_encode(TC_TQ1_0, ones, &d, 256, b, &err), &err);
    CHECK(b[0] == 255 && b[47] == 255 && b[48] == 253);
    CHECK(b[52] == 0x00 && b[53] == 0xb8); /* f16 -0.5 */
}

/* ggml's reading of a TQ1_0 byte, written out here as the definition. */
static int trit_of(uint8_t byte, int n)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[n]);
    return ((unsigned)q * 3) >> 8;
}

static void test_every_trit_byte(void)
{
    /* Every five-trit value encodes to a byte that reads back as its trits. */
    int bad = 0;
    for (int v = 0; v < 243; v++) {
        uint8_t byte = (uint8_t)((v * 256 + 242) / 243);
        for (int n = 0, p = 81; n < 5; n++, p /= 3)
            bad += trit_of(byte, n) != v / p % 3;
    }
    CHECK(bad == 0);
}

static void test_round_trip(void)
{
    static const struct { tc_dtype type; int64_t K[3]; } cases[] = {
        {TC_TQ1_0, {256, 512, 2560}}, {TC_TQ2_0, {256, 512, 2560}},
        {TC_Q4_0, {32, 352, 2080}},   {TC_Q8_0, {32, 352, 2080}},
    };
    tc_error err;
    for (size_t ti = 0; ti < sizeof cases / sizeof cases[0]; ti++)
        for (int ki = 0; ki < 3; ki++) {
            tc_dtype type = cases[ti].type;
            int64_t K = cases[ti].K[ki], B = tc_ggml_ternary_block_elems(type), nb = K / B;
            CHECK(B == (type == TC_Q4_0 || type == TC_Q8_0 ? 32 : 256));
            uint64_t bytes;
            CHECK_OK(tc_ggml_ternary_row_bytes(type, K, &bytes, &err), &err);
            CHECK(bytes == (uint64_t)nb * tc_dtype_block_bytes(type));
            int8_t *c = malloc((size_t)K), *back = malloc((size_t)K);
            float *d = malloc((size_t)nb * sizeof *d), *dback = malloc((size_t)nb * sizeof *d);
            float *w = malloc((size_t)K * sizeof *w), *g = malloc((size_t)K * sizeof *g);
            uint8_t *blk = malloc(bytes);
            for (int64_t i = 0; i < K; i++)
                c[i] = (int8_t)(rng_next() % 3) - 1;
            for (int64_t b = 0; b < nb; b++)
                d[b] = (float)((double)(rng_next() % 100000) * 1e-6 - 0.02);
            CHECK_OK(tc_ggml_ternary_encode(type, c, d, K, blk, &err), &err);
            CHECK_OK(tc_ggml_ternary_decode(type, blk, K, back, dback, &err), &err);
            CHECK(memcmp(c, back, (size_t)K) == 0);
            CHECK_OK(tc_ggml_ternary_dequantize(type, blk, K, w, &err), &err);
            /* Q4_0 and Q8_0 are ordinary ggml blocks: ggml's own decoder reads the same weights. */
            int plain = tc_ggml_quant_is(type);
            if (plain)
                CHECK_OK(tc_ggml_quant_dequantize(type, blk, (uint64_t)K, g, &err), &err);
            int bad = 0;
            for (int64_t b = 0; b < nb; b++) {
                float d16 = tc_f16_to_f32(tc_f32_to_f16(d[b]));
                bad += dback[b] != d16;
                for (int64_t i = b * B; i < (b + 1) * B; i++)
                    bad += w[i] != (float)c[i] * d16 || (plain && g[i] != w[i]);
            }
            CHECK_MSG(bad == 0, "%s, K %lld: %d weights differ", tc_dtype_name(type), (long long)K, bad);
            free(c);
            free(back);
            free(d);
            free(dback);
            free(w);
            free(g);
            free(blk);
        }
}

/* Q4_0: element j in byte j's low nibble, j + 16 in its high nibble, as code + 8; Q8_0: one
 * int8 per element; the f16 scale first. */
static void test_q_blocks(void)
{
    tc_error err;
    int8_t c[32] = {0};
    c[0] = 1;
    c[17] = -1;
    float d = 0.5f;
    uint8_t b4[18], b8[34];
    CHECK_OK(tc_ggml_ternary_encode(TC_Q4_0, c, &d, 32, b4, &err), &err);
    CHECK(b4[0] == 0x00 && b4[1] == 0x38); /* 0.5 as f16 */
    CHECK(b4[2] == 0x89 && b4[3] == 0x78 && b4[4] == 0x88 && b4[17] == 0x88);
    CHECK_OK(tc_ggml_ternary_encode(TC_Q8_0, c, &d, 32, b8, &err), &err);
    CHECK(b8[0] == 0x00 && b8[1] == 0x38 && b8[2] == 1 && b8[19] == 0xff && b8[3] == 0);
    /* A row that is not whole 32-blocks, and integers that are not ternary. */
    uint64_t bytes;
    CHECK(tc_ggml_ternary_row_bytes(TC_Q4_0, 688, &bytes, &err) == TC_ERR && strstr(err.msg, "688") != NULL);
    CHECK(tc_ggml_ternary_row_bytes(TC_Q4_K, 256, &bytes, &err) == TC_ERR);
    CHECK(tc_ggml_ternary_block_elems(TC_Q4_K) == 0 && tc_ggml_ternary_block_elems(TC_F16) == 0);
    int8_t back[32];
    b4[2] = 0x8a;
    CHECK(tc_ggml_ternary_decode(TC_Q4_0, b4, 32, back, &d, &err) == TC_ERR && strstr(err.msg, "Q4_0 block 0"));
    b8[5] = 2;
    CHECK(tc_ggml_ternary_decode(TC_Q8_0, b8, 32, back, &d, &err) == TC_ERR && strstr(err.msg, "Q8_0 block 0"));
}

/* Q4_1: codes with an offset per block.  Hand-computed bytes; random rows
 * round-trip (codes, d and the offset as stored); ggml's Q4_1 decoder reads
 * code * d + mu within the f16 rounding of the minimum m = mu - d. */
static void test_q4_1_offsets(void)
{
    tc_error err;
    int8_t c[32] = {0};
    c[0] = 1;
    c[17] = -1;
    float d = 0.5f, mu = 0.25f;
    uint8_t b[20];
    CHECK(tc_ggml_ternary_has_offset(TC_Q4_1) && !tc_ggml_ternary_has_offset(TC_Q4_0) &&
          !tc_ggml_ternary_has_offset(TC_TQ2_0) && tc_ggml_ternary_block_elems(TC_Q4_1) == 32);
    CHECK_OK(tc_ggml_ternary_encode_affine(TC_Q4_1, c, &d, &mu, 32, b, &err), &err);
    CHECK(b[0] == 0x00 && b[1] == 0x38); /* d = 0.5 */
    CHECK(b[2] == 0x00 && b[3] == 0xb4); /* m = 0.25 - 0.5 = -0.25 */
    CHECK(b[4] == 0x12 && b[5] == 0x01 && b[6] == 0x11 && b[19] == 0x11);
    CHECK(tc_ggml_ternary_encode_affine(TC_Q4_0, c, &d, &mu, 32, b, &err) == TC_ERR &&
          strstr(err.msg, "offset") != NULL);
    enum { K = 32 * 7 };
    int8_t codes[K], back[K];
    float ds[K / 32], mus[K / 32], d2[K / 32], mu2[K / 32], w[K], wg[K];
    uint8_t row[20 * (K / 32)];
    uint64_t bytes;
    CHECK_OK(tc_ggml_ternary_row_bytes(TC_Q4_1, K, &bytes, &err), &err);
    CHECK(bytes == sizeof row);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < K; i++)
            codes[i] = (int8_t)((int)(rng_next() % 3) - 1);
        for (int b2 = 0; b2 < K / 32; b2++) {
            ds[b2] = (float)((double)(rng_next() % 10000) / 7919.0 + 1e-3);
            mus[b2] = (float)(((double)(rng_next() % 20001) - 10000.0) / 13001.0);
        }
        CHECK_OK(tc_ggml_ternary_encode_affine(TC_Q4_1, codes, ds, mus, K, row, &err), &err);
        CHECK_OK(tc_ggml_ternary_decode_affine(TC_Q4_1, row, K, back, d2, mu2, &err), &err);
        CHECK(memcmp(codes, back, K) == 0);
        CHECK_OK(tc_ggml_ternary_dequantize(TC_Q4_1, row, K, w, &err), &err);
        CHECK_OK(tc_ggml_quant_dequantize(TC_Q4_1, row, K, wg, &err), &err);
        int bad = 0, far = 0;
        for (int i = 0; i < K; i++) {
            int b2 = i / 32;
            bad += w[i] != wg[i];
            double want = (double)codes[i] * d2[b2] + mus[b2];
            /* d2 is f16(d); the minimum's rounding is at most half an f16 ulp of |mu - d|. */
            far += fabs((double)w[i] - want) > fabs((double)mus[b2] - d2[b2]) * 0x1p-11 + 1e-6 * fabs(want) + 1e-7;
            far += fabs((double)d2[b2] - ds[b2]) > fabs((double)ds[b2]) * 0x1p-11;
            far += fabs((double)mu2[b2] - mus[b2]) > fabs((double)mus[b2] - d2[b2]) * 0x1p-11 + 1e-7;
        }
        CHECK(bad == 0 && far == 0);
    }
    /* A nibble beyond 2 is not a ternary code. */
    row[4] = 0x13;
    CHECK(tc_ggml_ternary_decode_affine(TC_Q4_1, row, K, back, d2, mu2, &err) == TC_ERR &&
          strstr(err.msg, "Q4_1 block 0"));
}

static void test_errors(void)
{
    tc_error err;
    int8_t c[256] = {0};
    float d = 1, w[256];
    uint8_t b[66];
    uint64_t bytes;
    CHECK(tc_ggml_ternary_row_bytes(TC_TQ1_0, 100, &bytes, &err) == TC_ERR);
    CHECK(strstr(err.msg, "100") != NULL);
    CHECK(tc_ggml_ternary_row_bytes(TC_F32, 256, &bytes, &err) == TC_ERR);
    CHECK(tc_ggml_ternary_row_bytes(TC_TQ2_0, 0, &bytes, &err) == TC_ERR);
    c[7] = 2;
    CHECK(tc_ggml_ternary_encode(TC_TQ2_0, c, &d, 256, b, &err) == TC_ERR);
    CHECK(strstr(err.msg, "weight 7") != NULL);
    /* A TQ2_0 field of 3 is not ternary: decode refuses it, ggml's
     * dequantization reads it as +2. */
    c[7] = 0;
    CHECK_OK(tc_ggml_ternary_encode(TC_TQ2_0, c, &d, 256, b, &err), &err);
    b[0] = 0x57;
    CHECK(tc_ggml_ternary_decode(TC_TQ2_0, b, 256, c, &d, &err) == TC_ERR);
    CHECK_OK(tc_ggml_ternary_dequantize(TC_TQ2_0, b, 256, w, &err), &err);
    CHECK(w[0] == 2.0f && w[1] == 0.0f);
    /* Any TQ1_0 byte decodes, and decode agrees with ggml's dequantization
     * on bytes no encoder writes. */
    memset(b, 0xff, 54);
    b[52] = 0x00;
    b[53] = 0x3c;
    CHECK_OK(tc_ggml_ternary_decode(TC_TQ1_0, b, 256, c, &d, &err), &err);
    CHECK_OK(tc_ggml_ternary_dequantize(TC_TQ1_0, b, 256, w, &err), &err);
    int bad = 0;
    for (int e = 0; e < 256; e++)
        bad += w[e] != (float)c[e];
    CHECK(bad == 0);
}

int main(void)
{
    rng_state = 0x853c49e6748fea9bull;
    test_known_bytes();
    test_every_trit_byte();
    test_round_trip();
    test_q_blocks();
    test_q4_1_offsets();
    test_errors();
    return tu_finish("test_ggml_ternary");
}
