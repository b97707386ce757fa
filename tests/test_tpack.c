/* Packed layouts: sizes, bytes of known codes, exact round trips at awkward
 * shapes, LUT matvec == plain integer matvec, hostile packed bytes, and the
 * activation quantizer. */
#include "testutil.h"

#include <stdint.h>

#include "tc/tpack.h"

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static const tc_tpack_layout LAYOUTS[] = {TC_TPACK_I2, TC_TPACK_TL1, TC_TPACK_TL2};

static void test_sizes(void)
{
    tc_error err;
    tc_tpack_plan p;
    tc_tgroup row = {TC_TGROUP_ROW, 0}, cols = {TC_TGROUP_COLS, 32};
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL1, 33, 7, &row, &p, &err), &err);
    CHECK(p.rows_padded == 64 && p.cols_padded == 8);
    CHECK(p.weight_bytes == 64 * 8 / 4 && p.total_bytes == p.weight_bytes + 33 * 4);
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_I2, 1, 1, &row, &p, &err), &err);
    CHECK(p.weight_bytes == 32 && p.total_bytes == 36);
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL2, 33, 7, &cols, &p, &err), &err);
    CHECK(p.cols_padded == 24 && p.weight_bytes == 2 * 160 && p.n_scales == 33);
    /* 1.67 bits per weight once the shape is a whole number of tiles. */
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL2, 2048, 5760, &row, &p, &err), &err);
    CHECK(p.weight_bytes * 8 * 3 == 2048ull * 5760 * 5);
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_I2, 2048, 2048, &row, &p, &err), &err);
    CHECK(p.weight_bytes == 2048ull * 2048 / 4);
    CHECK(tc_tpack_plan_make((tc_tpack_layout)7, 3, 3, &row, &p, &err) == TC_ERR);
    CHECK(tc_tpack_plan_make(TC_TPACK_TL2, 0, 3, &row, &p, &err) == TC_ERR);
}

/* Bytes of hand-coded chunks, so the layout is pinned independently of the
 * unpacker. */
static void test_known_bytes(void)
{
    tc_error err;
    tc_tpack_plan p;
    tc_tgroup tensor = {TC_TGROUP_TENSOR, 0};
    const int8_t codes[6] = {1, -1, 0, 1, 1, -1};
    float scale = 0.25f;
    uint8_t buf[400];

    /* I2: (a+1) | (b+1) << 2 per nibble, low nibble first. */
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_I2, 1, 6, &tensor, &p, &err), &err);
    CHECK_OK(tc_tpack_pack(&p, codes, &scale, buf, &err), &err);
    CHECK(buf[0] == 0x92);       /* (1,-1) -> 2, (0,1) -> 9 */
    CHECK(buf[1] == 0x55);       /* padding row: zeros */
    CHECK(buf[32] == 0x52);      /* (1,-1) -> 2, padding (0,0) -> 5 */
    CHECK(buf[64] == 0 && buf[65] == 0 && buf[66] == 0x80 && buf[67] == 0x3e); /* 0.25f LE */

    /* TL1: 3(a+1) + (b+1). */
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL1, 1, 6, &tensor, &p, &err), &err);
    CHECK_OK(tc_tpack_pack(&p, codes, &scale, buf, &err), &err);
    CHECK(buf[0] == 0x56 && buf[1] == 0x44 && buf[32] == 0x46);

    /* TL2, two rows: row 0 = (1,0,-1 | -1,0,1), row 1 = (0,0,0 | 0,1,1). */
    const int8_t t2[12] = {1, 0, -1, -1, 0, 1, 0, 0, 0, 0, 1, 1};
    CHECK_OK(tc_tpack_plan_make(TC_TPACK_TL2, 2, 6, &tensor, &p, &err), &err);
    CHECK_OK(tc_tpack_pack(&p, t2, &scale, buf, &err), &err);
    /* (1,0,-1): v = 21 -> index 8; (-1,0,1): v = 5 -> index 8, sign; (0,1,1):
     * v = 17 -> index 4. */
    CHECK(buf[0] == 0x88 && buf[1] == 0x40 && buf[2] == 0x00);
    CHECK(buf[128] == 0x00);                          /* triple 0: no signs */
    CHECK(buf[132] == 0x01 && buf[133] == 0 && buf[135] == 0); /* triple 1: row 0 */
}

static void random_codes(int8_t *c, size_t n, int zero_pct)
{
    for (size_t i = 0; i < n; i++)
        c[i] = (int8_t)((int)(rng_next() % 100) < zero_pct ? 0 : rng_next() % 2 ? 1 : -1);
}

static void test_round_trip_and_matvec(void)
{
    static const int64_t Ms[] = {1, 3, 7, 32, 33, 100};
    static const int64_t Ks[] = {1, 2, 3, 4, 5, 7, 23, 24, 25, 33, 100, 257, 1000};
    tc_error err;
    int fails = 0, checked = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (int li = 0; li < 3; li++) {
                int64_t M = Ms[mi], K = Ks[ki];
                tc_tgroup g = {K >= 64 ? TC_TGROUP_COLS : TC_TGROUP_ROW, 32};
                tc_tpack_plan p;
                CHECK_OK(tc_tpack_plan_make(LAYOUTS[li], M, K, &g, &p, &err), &err);
                size_t n = (size_t)(M * K);
                int8_t *c = malloc(n), *back = malloc(n), *x = malloc((size_t)K);
                float *s = malloc((size_t)p.n_scales * sizeof *s);
                float *sback = malloc((size_t)p.n_scales * sizeof *s);
                uint8_t *buf = malloc(p.total_bytes);
                int32_t *y1 = malloc((size_t)M * sizeof *y1), *y2 = malloc((size_t)M * sizeof *y2);
                random_codes(c, n, (int)(ki * 7 % 90));
                for (int64_t i = 0; i < p.n_scales; i++)
                    s[i] = (float)(rng_next() % 1000) * 1e-3f - 0.5f;
                if (p.n_scales > 1)
                    s[1] = NAN; /* scales are carried bit for bit */
                for (int64_t k = 0; k < K; k++)
                    x[k] = (int8_t)(rng_next() % 256); /* the full int8 range, -128 too */
                x[0] = -128;
                CHECK_OK(tc_tpack_pack(&p, c, s, buf, &err), &err);
                CHECK_OK(tc_tpack_unpack(&p, buf, p.total_bytes, back, sback, &err), &err);
                int ok = memcmp(c, back, n) == 0 &&
                         memcmp(s, sback, (size_t)p.n_scales * sizeof *s) == 0;
                CHECK_OK(tc_tpack_matvec_lut(&p, buf, p.total_bytes, x, y1, &err), &err);
                tc_tpack_matvec_ref(c, M, K, x, y2);
                ok &= memcmp(y1, y2, (size_t)M * sizeof *y1) == 0;
                if (!ok && fails++ < 5)
                    fprintf(stderr, "%s M=%lld K=%lld: round trip or matvec differs\n",
                            tc_tpack_layout_name(LAYOUTS[li]), (long long)M, (long long)K);
                checked++;
                free(c);
                free(back);
                free(x);
                free(s);
                free(sback);
                free(buf);
                free(y1);
                free(y2);
            }
    CHECK(fails == 0);
    CHECK(checked == 6 * 13 * 3);
}

/* Extreme sums: all +1 codes against all -128 activations. */
static void test_matvec_extremes(void)
{
    tc_error err;
    int64_t M = 5, K = 1001;
    tc_tgroup row = {TC_TGROUP_ROW, 0};
    int8_t *c = malloc((size_t)(M * K)), *x = malloc((size_t)K);
    float s[5] = {1, 1, 1, 1, 1};
    memset(c, 1, (size_t)(M * K));
    for (int64_t m = 0; m < K; m++)
        c[K + m] = -1;
    memset(x, 0x80, (size_t)K);
    for (int li = 0; li < 3; li++) {
        tc_tpack_plan p;
        CHECK_OK(tc_tpack_plan_make(LAYOUTS[li], M, K, &row, &p, &err), &err);
        uint8_t *buf = malloc(p.total_bytes);
        int32_t y[5];
        CHECK_OK(tc_tpack_pack(&p, c, s, buf, &err), &err);
        CHECK_OK(tc_tpack_matvec_lut(&p, buf, p.total_bytes, x, y, &err), &err);
        CHECK(y[0] == -128 * 1001 && y[1] == 128 * 1001);
        free(buf);
    }
    free(c);
    free(x);
}

static void test_hostile(void)
{
    tc_error err;
    tc_tgroup row = {TC_TGROUP_ROW, 0};
    int64_t M = 3, K = 5;
    int8_t c[15] = {0}, back[15];
    float s[3] = {1, 2, 3}, sb[3];
    for (int li = 0; li < 3; li++) {
        tc_tpack_plan p;
        CHECK_OK(tc_tpack_plan_make(LAYOUTS[li], M, K, &row, &p, &err), &err);
        uint8_t *buf = malloc(p.total_bytes), *bad = malloc(p.total_bytes);
        CHECK_OK(tc_tpack_pack(&p, c, s, buf, &err), &err);
        CHECK(tc_tpack_unpack(&p, buf, p.total_bytes - 1, back, sb, &err) == TC_ERR);
        CHECK(strstr(err.msg, "bytes") != NULL);
        int32_t y[3];
        CHECK(tc_tpack_matvec_lut(&p, buf, p.weight_bytes - 1, (const int8_t *)c, y, &err) ==
              TC_ERR);

        /* An index outside the table in a real row. */
        memcpy(bad, buf, p.total_bytes);
        bad[0] = 0xff;
        CHECK(tc_tpack_unpack(&p, bad, p.total_bytes, back, sb, &err) == TC_ERR);
        CHECK(strstr(err.msg, tc_tpack_layout_name(LAYOUTS[li])) != NULL);
        /* ... and the LUT matvec reads it as 0 without going out of bounds. */
        int8_t x[5] = {1, 2, 3, 4, 5};
        CHECK_OK(tc_tpack_matvec_lut(&p, bad, p.total_bytes, x, y, &err), &err);

        /* A nonzero code in a padding row (row 3 of the 32-row block). */
        memcpy(bad, buf, p.total_bytes);
        bad[3] = LAYOUTS[li] == TC_TPACK_I2 ? 0x56 : LAYOUTS[li] == TC_TPACK_TL1 ? 0x45 : 0x01;
        CHECK(tc_tpack_unpack(&p, bad, p.total_bytes, back, sb, &err) == TC_ERR);

        /* A nonzero code in a padding column of a real row. */
        memcpy(bad, buf, p.total_bytes);
        if (LAYOUTS[li] == TC_TPACK_TL2)
            bad[2 * 32] = 0x01; /* triple 4, columns 12..14 */
        else
            bad[32] = LAYOUTS[li] == TC_TPACK_I2 ? 0x65 : 0x54; /* column 5 of row 0 */
        CHECK(tc_tpack_unpack(&p, bad, p.total_bytes, back, sb, &err) == TC_ERR);

        if (LAYOUTS[li] == TC_TPACK_TL2) { /* a sign on the zero triple */
            memcpy(bad, buf, p.total_bytes);
            bad[128] = 0x01;
            CHECK(tc_tpack_unpack(&p, bad, p.total_bytes, back, sb, &err) == TC_ERR);
        }
        /* Random bytes never crash either reader. */
        for (int trial = 0; trial < 50; trial++) {
            for (uint64_t i = 0; i < p.total_bytes; i++)
                bad[i] = (uint8_t)rng_next();
            (void)tc_tpack_unpack(&p, bad, p.total_bytes, back, sb, &err);
            CHECK_OK(tc_tpack_matvec_lut(&p, bad, p.total_bytes, x, y, &err), &err);
        }
        const int8_t wrong[15] = {2};
        CHECK(tc_tpack_pack(&p, wrong, s, buf, &err) == TC_ERR);
        free(buf);
        free(bad);
    }
}

/* The rule as first written, one value at a time. */
static float quantize_act_ref(const float *x, int64_t K, int8_t *xq)
{
    float amax = 0;
    for (int64_t k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        amax = a > amax ? a : amax;
    }
    float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    for (int64_t k = 0; k < K; k++) {
        float v = x[k] * s;
        v = v >= 127 ? 127 : v <= -128 ? -128 : v == v ? v : 0;
        float t = (float)(int32_t)v, d = v - t;
        xq[k] = (int8_t)(t + (float)((d >= 0.5f) - (d <= -0.5f)));
    }
    return s;
}

static void test_quantize_act(void)
{
    const float x[5] = {0.5f, -1.0f, 0.25f, 0.0f, -0.5f};
    int8_t q[5];
    float s = tc_tpack_quantize_act(x, 5, q);
    CHECK(s == 127.0f);
    CHECK(q[0] == 64 && q[1] == -127 && q[2] == 32 && q[3] == 0 && q[4] == -64);
    const float z[3] = {0, 0, 0};
    s = tc_tpack_quantize_act(z, 3, q);
    CHECK(s == 127.0f / 1e-5f && q[0] == 0 && q[2] == 0);
    const float n[2] = {NAN, 2.0f};
    s = tc_tpack_quantize_act(n, 2, q);
    CHECK(q[0] == 0 && q[1] == 127);
    /* The documented formula, on values whose scaled form lands on halves
     * (127 * k / 254), next to halves (one ulp either side) and anywhere. */
    enum { N = 4096 };
    float *v = malloc(N * sizeof(float));
    int8_t *got = malloc(N);
    for (int rep = 0; rep < 8; rep++) {
        for (int i = 0; i < N; i++) {
            float h = (float)(i % 509 - 254) / 254.0f;
            v[i] = rep % 3 == 0   ? h
                   : rep % 3 == 1 ? nextafterf(h, i % 2 ? 2.0f : -2.0f)
                                  : (float)((int64_t)(rng_next() % 2000001) - 1000000) * 1e-6f;
        }
        v[rep] = rep % 2 ? 1.0f : -1.0f; /* pins max|x| (and so s) to 127 */
        float sc = tc_tpack_quantize_act(v, N, got);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float r = roundf(v[i] * sc);
            int8_t want = (int8_t)(r >= 127 ? 127 : r <= -128 ? -128 : r);
            bad += got[i] != want;
        }
        CHECK(bad == 0);
    }
    free(v);
    free(got);
    /* The vectorised function equals the plain reading of the rule on every
     * length (vector bodies and tails) and on NaN, infinities, signed zeros
     * and subnormals. */
    for (int len = 1; len <= 70; len++)
        for (int rep = 0; rep < 6; rep++) {
            float w[70];
            int8_t a[70], b[70];
            for (int i = 0; i < len; i++) {
                uint64_t r = rng_next();
                w[i] = (float)((int64_t)(r % 2001) - 1000) * (rep < 3 ? 1e-3f : 1e-8f);
                if (r % 37 == 0)
                    w[i] = r % 2 ? NAN : -0.0f;
                if (r % 53 == 0)
                    w[i] = 1e-40f * (float)(r % 7);
                if (rep == 5 && i == len / 2)
                    w[i] = r % 2 ? INFINITY : -INFINITY;
            }
            float sa = tc_tpack_quantize_act(w, len, a), sb = quantize_act_ref(w, len, b);
            CHECK_MSG(sa == sb && memcmp(a, b, (size_t)len) == 0, "quantize_act: length %d, case %d", len, rep);
        }
}

int main(void)
{
    rng_state = 0x2545f4914f6cdd1dull;
    test_sizes();
    test_known_bytes();
    test_round_trip_and_matvec();
    test_matvec_extremes();
    test_hostile();
    test_quantize_act();
    return tu_finish("test_tpack");
}
