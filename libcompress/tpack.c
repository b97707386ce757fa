/* Packing ternary codes into the I2, TL1 and TL2 layouts, their exact
 * inverses, and the scalar LUT matvecs that define what a kernel computes.
 *
 * Index coding:
 *   I2 nibble  (a, b) -> (a+1) | (b+1) << 2        (digit 3 unused)
 *   TL1 index  (a, b) -> 3(a+1) + (b+1)            in 0..8
 *   TL2 index  (a, b, c): v = 9(a+1) + 3(b+1) + (c+1) in 0..26; negation maps
 *              v to 26 - v and the zero triple is v = 13, so v >= 13 holds the
 *              zero triple and the 13 triples whose first nonzero is +1.
 *              index = v - 13 in 0..13 with sign 0, or 13 - v with sign 1. */
#include "tc/tpack.h"

#include "forward_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc/checked.h"
#include "tc/dtype.h"

#define TILE TC_TPACK_TILE_ROWS
#define TL2_TRIPLES 8 /* triples per TL2 chunk */
#define TL2_SIGNS 128 /* offset of the sign plane in a TL2 chunk */

const char *tc_tpack_layout_name(tc_tpack_layout layout)
{
    switch (layout) {
    case TC_TPACK_I2:
        return "i2";
    case TC_TPACK_TL1:
        return "tl1";
    case TC_TPACK_TL2:
        return "tl2";
    default:
        return "?";
    }
}

const char *tc_tparam_kind_name(tc_tparam_kind k)
{
    static const char *const names[TC_TPARAM_KIND_COUNT] = {"f32-scale", "f16-affine"};
    return (unsigned)k < TC_TPARAM_KIND_COUNT ? names[k] : "?";
}

int tc_tparam_kind_from_name(const char *s, tc_tparam_kind *out)
{
    for (int k = 0; k < TC_TPARAM_KIND_COUNT; k++)
        if (s && strcmp(s, tc_tparam_kind_name((tc_tparam_kind)k)) == 0) {
            *out = (tc_tparam_kind)k;
            return TC_OK;
        }
    return TC_ERR;
}

int tc_tpack_plan_make(tc_tpack_layout layout, int64_t M, int64_t K, const tc_tgroup *g,
                       tc_tpack_plan *plan, tc_error *err)
{
    return tc_tpack_plan_make_params(layout, M, K, g, TC_TPARAM_SCALE_F32, plan, err);
}

int tc_tpack_plan_make_params(tc_tpack_layout layout, int64_t M, int64_t K, const tc_tgroup *g,
                              tc_tparam_kind params, tc_tpack_plan *plan, tc_error *err)
{
    tc_tpack_plan p;
    memset(&p, 0, sizeof p);
    if ((unsigned)layout >= TC_TPACK_LAYOUT_COUNT)
        return tc_err(err, "tpack: unknown layout %d", (int)layout);
    if ((unsigned)params >= TC_TPARAM_KIND_COUNT)
        return tc_err(err, "tpack: unknown parameter kind %d", (int)params);
    p.params = params;
    p.offset = params == TC_TPARAM_AFFINE_F16;
    p.group_bytes = 4;
    if (tc_ternary_scale_count(g, M, K, &p.n_scales, err))
        return TC_ERR;
    p.layout = layout;
    p.rows = M;
    p.cols = K;
    p.group = *g;
    p.chunk_cols = layout == TC_TPACK_TL2 ? 3 * TL2_TRIPLES : 4;
    p.chunk_bytes = layout == TC_TPACK_TL2 ? TL2_SIGNS + 4 * TL2_TRIPLES : TILE;
    /* M and K are already known to fit in memory as fp32, so padding them to
     * 32 and 24 cannot overflow; the byte products are still checked. */
    p.rows_padded = (M + TILE - 1) / TILE * TILE;
    p.cols_padded = (K + p.chunk_cols - 1) / p.chunk_cols * p.chunk_cols;
    uint64_t chunks = (uint64_t)(p.cols_padded / p.chunk_cols), scale_bytes;
    if (tc_mul_u64(chunks, p.chunk_bytes, &p.row_block_bytes) ||
        tc_mul_u64(p.row_block_bytes, (uint64_t)(p.rows_padded / TILE), &p.weight_bytes) ||
        tc_mul_u64((uint64_t)p.n_scales, p.group_bytes, &scale_bytes) ||
        tc_add_u64(p.weight_bytes, scale_bytes, &p.total_bytes))
        return tc_err(err, "tpack: packed size of a %lld x %lld weight overflows", (long long)M,
                      (long long)K);
    p.scale_offset = p.weight_bytes;
    *plan = p;
    return TC_OK;
}

/* ---- index coding -------------------------------------------------------- */

static inline int8_t code_at(const int8_t *codes, const tc_tpack_plan *p, int64_t m, int64_t k)
{
    return m < p->rows && k < p->cols ? codes[(size_t)m * (size_t)p->cols + (size_t)k] : 0;
}

static inline int i2_nibble(int a, int b)
{
    return (a + 1) | (b + 1) << 2;
}

static inline int tl1_index(int a, int b)
{
    return 3 * (a + 1) + (b + 1);
}

static inline int tl2_index(int a, int b, int c, int *sign)
{
    int v = 9 * (a + 1) + 3 * (b + 1) + (c + 1);
    *sign = v < 13;
    return v < 13 ? 13 - v : v - 13;
}

/* Decoders: 0 and the digits on success, -1 for an index outside the table. */
static int i2_pair(int n, int8_t *a, int8_t *b)
{
    if ((n & 3) == 3 || (n >> 2) == 3)
        return -1;
    *a = (int8_t)((n & 3) - 1);
    *b = (int8_t)((n >> 2) - 1);
    return 0;
}

static int tl1_pair(int n, int8_t *a, int8_t *b)
{
    if (n > 8)
        return -1;
    *a = (int8_t)(n / 3 - 1);
    *b = (int8_t)(n % 3 - 1);
    return 0;
}

static int tl2_triple(int n, int sign, int8_t t[3])
{
    if (n > 13 || (n == 0 && sign))
        return -1;
    int v = n + 13, s = sign ? -1 : 1;
    t[0] = (int8_t)(s * (v / 9 - 1));
    t[1] = (int8_t)(s * (v / 3 % 3 - 1));
    t[2] = (int8_t)(s * (v % 3 - 1));
    return 0;
}

/* Offset of chunk c of row block rb in the weight section. */
static uint64_t chunk_off(const tc_tpack_plan *p, int64_t rb, int64_t c)
{
    return (uint64_t)rb * p->row_block_bytes + (uint64_t)c * p->chunk_bytes;
}

/* ---- pack ---------------------------------------------------------------- */

static void pack_pairs_chunk(const tc_tpack_plan *p, const int8_t *codes, int64_t rb, int64_t c,
                             uint8_t *dst)
{
    int64_t k = c * 4;
    for (int r = 0; r < TILE; r++) {
        int64_t m = rb * TILE + r;
        int a = code_at(codes, p, m, k), b = code_at(codes, p, m, k + 1);
        int e = code_at(codes, p, m, k + 2), f = code_at(codes, p, m, k + 3);
        int lo = p->layout == TC_TPACK_I2 ? i2_nibble(a, b) : tl1_index(a, b);
        int hi = p->layout == TC_TPACK_I2 ? i2_nibble(e, f) : tl1_index(e, f);
        dst[r] = (uint8_t)(lo | hi << 4);
    }
}

static void pack_tl2_chunk(const tc_tpack_plan *p, const int8_t *codes, int64_t rb, int64_t c,
                           uint8_t *dst)
{
    memset(dst, 0, p->chunk_bytes);
    for (int t = 0; t < TL2_TRIPLES; t++) {
        int64_t k = c * 3 * TL2_TRIPLES + 3 * t;
        for (int r = 0; r < TILE; r++) {
            int64_t m = rb * TILE + r;
            int sign;
            int n = tl2_index(code_at(codes, p, m, k), code_at(codes, p, m, k + 1),
                              code_at(codes, p, m, k + 2), &sign);
            dst[(t / 2) * TILE + r] |= (uint8_t)(n << 4 * (t % 2));
            dst[TL2_SIGNS + 4 * t + r / 8] |= (uint8_t)(sign << (r % 8));
        }
    }
}

/* Fast paths for a chunk that lies wholly inside the weight (every chunk
 * but those of the last row block or column chunk of a ragged shape): no
 * bounds checks, each byte written once.  They produce exactly the bytes of
 * the general versions above. */
/* Pair layouts: a chunk is one byte per row, so a row is walked once,
 * left to right, its bytes landing TILE apart. */
static void pack_pairs_rows(tc_tpack_layout layout, const int8_t *codes, int64_t K, int64_t m0,
                            int64_t n_chunks, uint64_t chunk_bytes, uint8_t *dst)
{
    for (int r = 0; r < TILE; r++) {
        const int8_t *w = codes + (size_t)(m0 + r) * (size_t)K;
        uint8_t *o = dst + r;
        if (layout == TC_TPACK_I2)
            for (int64_t c = 0; c < n_chunks; c++, w += 4)
                o[c * chunk_bytes] = (uint8_t)(i2_nibble(w[0], w[1]) | i2_nibble(w[2], w[3]) << 4);
        else
            for (int64_t c = 0; c < n_chunks; c++, w += 4)
                o[c * chunk_bytes] = (uint8_t)(tl1_index(w[0], w[1]) | tl1_index(w[2], w[3]) << 4);
    }
}

/* With s = 9a + 3b + c, tl2_index is |s| with sign s < 0. */
static void pack_tl2_full(const int8_t *codes, int64_t K, int64_t m0, int64_t k0, uint8_t *dst)
{
    uint32_t signs[TL2_TRIPLES] = {0};
    for (int r = 0; r < TILE; r++) {
        const int8_t *w = codes + (size_t)(m0 + r) * (size_t)K + (size_t)k0;
        int s[TL2_TRIPLES];
        for (int t = 0; t < TL2_TRIPLES; t++) {
            s[t] = 9 * w[3 * t] + 3 * w[3 * t + 1] + w[3 * t + 2];
            signs[t] |= (uint32_t)(s[t] < 0) << r;
        }
        for (int h = 0; h < TL2_TRIPLES / 2; h++)
            dst[h * TILE + r] = (uint8_t)(abs(s[2 * h]) | abs(s[2 * h + 1]) << 4);
    }
    for (int t = 0; t < TL2_TRIPLES; t++)
        for (int b = 0; b < 4; b++)
            dst[TL2_SIGNS + 4 * t + b] = (uint8_t)(signs[t] >> 8 * b);
}

/* Whether every code is -1, 0 or 1; branch-free so that it vectorises. */
static int codes_valid(const int8_t *codes, size_t n, size_t *bad_at)
{
    enum { SPAN = 4096 };
    for (size_t i = 0; i < n; i += SPAN) {
        size_t end = n - i < SPAN ? n : i + SPAN;
        unsigned bad = 0;
        for (size_t j = i; j < end; j++)
            bad |= (uint8_t)(codes[j] + 1) > 2;
        if (bad)
            for (size_t j = i; j < end; j++)
                if (codes[j] < -1 || codes[j] > 1) {
                    *bad_at = j;
                    return 0;
                }
    }
    return 1;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> 8 * i);
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Row block rb of the weight section. */
static void pack_block(const tc_tpack_plan *plan, const int8_t *codes, int64_t rb, uint8_t *out)
{
    int64_t chunks = plan->cols_padded / plan->chunk_cols;
    int64_t full_chunks = plan->cols / plan->chunk_cols, c0 = 0;
    int full_block = (rb + 1) * TILE <= plan->rows;
    if (full_block && plan->layout != TC_TPACK_TL2) {
        pack_pairs_rows(plan->layout, codes, plan->cols, rb * TILE, full_chunks, plan->chunk_bytes,
                        out + chunk_off(plan, rb, 0));
        c0 = full_chunks;
    }
    for (int64_t c = c0; c < chunks; c++) {
        uint8_t *dst = out + chunk_off(plan, rb, c);
        if (plan->layout != TC_TPACK_TL2)
            pack_pairs_chunk(plan, codes, rb, c, dst);
        else if (full_block && c < full_chunks)
            pack_tl2_full(codes, plan->cols, rb * TILE, c * plan->chunk_cols, dst);
        else
            pack_tl2_chunk(plan, codes, rb, c, dst);
    }
}

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = tc_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static float get_f16(const uint8_t *p)
{
    return tc_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

void tc_tpack_put_affine(const tc_tpack_plan *plan, const float *scales, const float *offsets,
                         uint8_t *out)
{
    uint8_t *dst = out + plan->scale_offset;
    if (plan->params == TC_TPARAM_SCALE_F32) {
        for (int64_t i = 0; i < plan->n_scales; i++)
            put_f32(dst + 4 * (uint64_t)i, scales[i]);
        return;
    }
    for (int64_t i = 0; i < plan->n_scales; i++) {
        put_f16(dst + 4 * (uint64_t)i, scales[i]);
        put_f16(dst + 4 * (uint64_t)i + 2, offsets ? offsets[i] : 0.0f);
    }
}

void tc_tpack_put_scales(const tc_tpack_plan *plan, const float *scales, uint8_t *out)
{
    tc_tpack_put_affine(plan, scales, NULL, out);
}

int tc_tpack_pack_affine(const tc_tpack_plan *plan, const int8_t *codes, const float *scales,
                         const float *offsets, uint8_t *out, tc_error *err)
{
    size_t n = (size_t)plan->rows * (size_t)plan->cols, bad;
    if (!codes_valid(codes, n, &bad))
        return tc_err(err, "tpack: code %d at weight %zu is not -1, 0 or 1", (int)codes[bad], bad);
    for (int64_t rb = 0; rb < plan->rows_padded / TILE; rb++)
        pack_block(plan, codes, rb, out);
    tc_tpack_put_affine(plan, scales, offsets, out);
    return TC_OK;
}

int tc_tpack_pack(const tc_tpack_plan *plan, const int8_t *codes, const float *scales,
                  uint8_t *out, tc_error *err)
{
    return tc_tpack_pack_affine(plan, codes, scales, NULL, out, err);
}

int tc_tpack_pack_block(const tc_tpack_plan *plan, int64_t rb, const int8_t *codes, uint8_t *out,
                        tc_error *err)
{
    if (rb < 0 || rb >= plan->rows_padded / TILE)
        return tc_err(err, "tpack: row block %lld is outside the weight", (long long)rb);
    /* The block as a weight of its own: its bytes are those of block rb. */
    tc_tpack_plan q = *plan;
    q.rows = plan->rows - rb * TILE < TILE ? plan->rows - rb * TILE : TILE;
    q.rows_padded = TILE;
    size_t n = (size_t)q.rows * (size_t)q.cols, bad;
    if (!codes_valid(codes, n, &bad))
        return tc_err(err, "tpack: code %d at weight %zu of row block %lld is not -1, 0 or 1",
                      (int)codes[bad], bad, (long long)rb);
    pack_block(&q, codes, 0, out + (uint64_t)rb * plan->row_block_bytes);
    return TC_OK;
}

/* ---- unpack -------------------------------------------------------------- */

/* Stores a decoded code, or checks that padding decoded to 0. */
static int put_code(const tc_tpack_plan *p, int8_t *codes, int64_t m, int64_t k, int8_t v)
{
    if (m < p->rows && k < p->cols) {
        codes[(size_t)m * (size_t)p->cols + (size_t)k] = v;
        return 0;
    }
    return v == 0 ? 0 : -1;
}

static int unpack_pairs_chunk(const tc_tpack_plan *p, const uint8_t *src, int64_t rb, int64_t c,
                              int8_t *codes)
{
    for (int r = 0; r < TILE; r++) {
        int64_t m = rb * TILE + r;
        for (int h = 0; h < 2; h++) {
            int n = src[r] >> 4 * h & 15;
            int8_t a, b;
            int bad = p->layout == TC_TPACK_I2 ? i2_pair(n, &a, &b) : tl1_pair(n, &a, &b);
            int64_t k = c * 4 + 2 * h;
            if (bad || put_code(p, codes, m, k, a) || put_code(p, codes, m, k + 1, b))
                return -1;
        }
    }
    return 0;
}

static int unpack_tl2_chunk(const tc_tpack_plan *p, const uint8_t *src, int64_t rb, int64_t c,
                            int8_t *codes)
{
    for (int t = 0; t < TL2_TRIPLES; t++) {
        int64_t k = c * 3 * TL2_TRIPLES + 3 * t;
        for (int r = 0; r < TILE; r++) {
            int64_t m = rb * TILE + r;
            int n = src[(t / 2) * TILE + r] >> 4 * (t % 2) & 15;
            int sign = src[TL2_SIGNS + 4 * t + r / 8] >> (r % 8) & 1;
            int8_t v[3];
            if (tl2_triple(n, sign, v) || put_code(p, codes, m, k, v[0]) ||
                put_code(p, codes, m, k + 1, v[1]) || put_code(p, codes, m, k + 2, v[2]))
                return -1;
        }
    }
    return 0;
}

/* Decoding tables for the fast paths: entry n holds the digits of index n
 * and whether n is inside the table (built from the decoders above). */
typedef struct dec_tables {
    int8_t pair[16][2], triple[16][3];
    uint8_t pair_ok[16], triple_ok[16];
} dec_tables;

static void dec_tables_make(tc_tpack_layout layout, dec_tables *d)
{
    memset(d, 0, sizeof *d);
    for (int n = 0; n < 16; n++) {
        int8_t a = 0, b = 0;
        int bad = layout == TC_TPACK_I2 ? i2_pair(n, &a, &b) : tl1_pair(n, &a, &b);
        if (!bad) {
            d->pair[n][0] = a;
            d->pair[n][1] = b;
            d->pair_ok[n] = 1;
        }
        d->triple_ok[n] = tl2_triple(n, 0, d->triple[n]) == 0;
        if (!d->triple_ok[n])
            memset(d->triple[n], 0, 3);
    }
}

/* A chunk wholly inside the weight: no padding to check, one table look-up
 * per index; -1 if some index is outside its table (as the general
 * versions). */
static int unpack_pairs_full(const dec_tables *d, const uint8_t *src, int8_t *codes, int64_t K, int64_t m0,
                             int64_t k0)
{
    unsigned ok = 1;
    for (int r = 0; r < TILE; r++) {
        int8_t *w = codes + (size_t)(m0 + r) * (size_t)K + (size_t)k0;
        int lo = src[r] & 15, hi = src[r] >> 4;
        ok &= d->pair_ok[lo] & d->pair_ok[hi];
        w[0] = d->pair[lo][0];
        w[1] = d->pair[lo][1];
        w[2] = d->pair[hi][0];
        w[3] = d->pair[hi][1];
    }
    return ok ? 0 : -1;
}

static int unpack_tl2_full(const dec_tables *d, const uint8_t *src, int8_t *codes, int64_t K, int64_t m0,
                           int64_t k0)
{
    unsigned ok = 1;
    for (int r = 0; r < TILE; r++) {
        int8_t *w = codes + (size_t)(m0 + r) * (size_t)K + (size_t)k0;
        for (int t = 0; t < TL2_TRIPLES; t++) {
            int n = src[(t / 2) * TILE + r] >> 4 * (t % 2) & 15;
            int sign = src[TL2_SIGNS + 4 * t + r / 8] >> (r % 8) & 1;
            ok &= d->triple_ok[n] & !(n == 0 && sign);
            int8_t sg = (int8_t)(1 - 2 * sign);
            w[3 * t] = (int8_t)(sg * d->triple[n][0]);
            w[3 * t + 1] = (int8_t)(sg * d->triple[n][1]);
            w[3 * t + 2] = (int8_t)(sg * d->triple[n][2]);
        }
    }
    return ok ? 0 : -1;
}

int tc_tpack_unpack(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                    int8_t *codes, float *scales, tc_error *err)
{
    return tc_tpack_unpack_affine(plan, packed, len, codes, scales, NULL, err);
}

int tc_tpack_unpack_affine(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                           int8_t *codes, float *scales, float *offsets, tc_error *err)
{
    dec_tables dt;
    dec_tables_make(plan->layout, &dt);
    int64_t full_blocks = plan->rows / TILE, full_chunks = plan->cols / plan->chunk_cols;
    if (len < plan->total_bytes)
        return tc_err(err, "tpack: %s weight needs %llu bytes but has %llu",
                      tc_tpack_layout_name(plan->layout), (unsigned long long)plan->total_bytes,
                      (unsigned long long)len);
    int64_t blocks = plan->rows_padded / TILE, chunks = plan->cols_padded / plan->chunk_cols;
    for (int64_t rb = 0; rb < blocks; rb++)
        for (int64_t c = 0; c < chunks; c++) {
            const uint8_t *src = packed + chunk_off(plan, rb, c);
            int full = rb < full_blocks && c < full_chunks, bad;
            if (plan->layout == TC_TPACK_TL2)
                bad = full ? unpack_tl2_full(&dt, src, codes, plan->cols, rb * TILE, c * plan->chunk_cols)
                           : unpack_tl2_chunk(plan, src, rb, c, codes);
            else
                bad = full ? unpack_pairs_full(&dt, src, codes, plan->cols, rb * TILE, c * plan->chunk_cols)
                           : unpack_pairs_chunk(plan, src, rb, c, codes);
            if (bad)
                return tc_err(err,
                              "tpack: %s weight has an invalid index or non-zero padding in "
                              "rows %lld..%lld, chunk %lld",
                              tc_tpack_layout_name(plan->layout), (long long)(rb * TILE),
                              (long long)(rb * TILE + TILE - 1), (long long)c);
        }
    const uint8_t *src = packed + plan->scale_offset;
    for (int64_t i = 0; i < plan->n_scales; i++) {
        int aff = plan->params == TC_TPARAM_AFFINE_F16;
        scales[i] = aff ? get_f16(src + 4 * (uint64_t)i) : get_f32(src + 4 * (uint64_t)i);
        if (offsets)
            offsets[i] = aff ? get_f16(src + 4 * (uint64_t)i + 2) : 0.0f;
    }
    return TC_OK;
}

/* ---- LUT matvec ---------------------------------------------------------- */

static inline int32_t x_at(const int8_t *x, int64_t K, int64_t k)
{
    return k < K ? x[k] : 0;
}

/* The 16-entry table of a pair of activations: entry n holds the sum the
 * nibble n stands for; entries outside the layout's code read 0. */
static void pair_table(tc_tpack_layout layout, int32_t x0, int32_t x1, int32_t t[16])
{
    for (int n = 0; n < 16; n++) {
        int8_t a, b;
        int bad = layout == TC_TPACK_I2 ? i2_pair(n, &a, &b) : tl1_pair(n, &a, &b);
        t[n] = bad ? 0 : a * x0 + b * x1;
    }
}

/* The 14 sums of a triple of activations (16 slots, the last two 0). */
static void triple_table(int32_t x0, int32_t x1, int32_t x2, int32_t t[16])
{
    for (int n = 0; n < 16; n++) {
        int8_t v[3];
        t[n] = tl2_triple(n, 0, v) ? 0 : v[0] * x0 + v[1] * x1 + v[2] * x2;
    }
}

static void lut_pairs_chunk(const tc_tpack_plan *p, const uint8_t *packed, int64_t c,
                            const int8_t *x, int32_t *y)
{
    int32_t lo[16], hi[16];
    int64_t k = c * 4;
    pair_table(p->layout, x_at(x, p->cols, k), x_at(x, p->cols, k + 1), lo);
    pair_table(p->layout, x_at(x, p->cols, k + 2), x_at(x, p->cols, k + 3), hi);
    for (int64_t rb = 0; rb < p->rows_padded / TILE; rb++) {
        const uint8_t *src = packed + chunk_off(p, rb, c);
        int rows = p->rows - rb * TILE < TILE ? (int)(p->rows - rb * TILE) : TILE;
        for (int r = 0; r < rows; r++)
            y[rb * TILE + r] += lo[src[r] & 15] + hi[src[r] >> 4];
    }
}

static void lut_tl2_chunk(const tc_tpack_plan *p, const uint8_t *packed, int64_t c,
                          const int8_t *x, int32_t *y)
{
    int32_t tab[TL2_TRIPLES][16];
    for (int t = 0; t < TL2_TRIPLES; t++) {
        int64_t k = c * 3 * TL2_TRIPLES + 3 * t;
        triple_table(x_at(x, p->cols, k), x_at(x, p->cols, k + 1), x_at(x, p->cols, k + 2),
                     tab[t]);
    }
    for (int64_t rb = 0; rb < p->rows_padded / TILE; rb++) {
        const uint8_t *src = packed + chunk_off(p, rb, c);
        int rows = p->rows - rb * TILE < TILE ? (int)(p->rows - rb * TILE) : TILE;
        for (int t = 0; t < TL2_TRIPLES; t++)
            for (int r = 0; r < rows; r++) {
                int32_t v = tab[t][src[(t / 2) * TILE + r] >> 4 * (t % 2) & 15];
                int sign = src[TL2_SIGNS + 4 * t + r / 8] >> (r % 8) & 1;
                y[rb * TILE + r] += sign ? -v : v;
            }
    }
}

/* Column chunks outside, row blocks inside: the tables of one chunk are built
 * once and serve every row, the order a kernel keeping its tables in L1 would
 * use. */
int tc_tpack_matvec_lut(const tc_tpack_plan *plan, const uint8_t *packed, uint64_t len,
                        const int8_t *x, int32_t *y, tc_error *err)
{
    if (len < plan->weight_bytes)
        return tc_err(err, "tpack: %s weight needs %llu bytes but has %llu",
                      tc_tpack_layout_name(plan->layout), (unsigned long long)plan->weight_bytes,
                      (unsigned long long)len);
    memset(y, 0, (size_t)plan->rows * sizeof *y);
    for (int64_t c = 0; c < plan->cols_padded / plan->chunk_cols; c++) {
        if (plan->layout == TC_TPACK_TL2)
            lut_tl2_chunk(plan, packed, c, x, y);
        else
            lut_pairs_chunk(plan, packed, c, x, y);
    }
    return TC_OK;
}

void tc_tpack_matvec_ref(const int8_t *codes, int64_t M, int64_t K, const int8_t *x, int32_t *y)
{
    for (int64_t m = 0; m < M; m++) {
        const int8_t *c = codes + (size_t)m * (size_t)K;
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++)
            s += c[k] * x[k];
        y[m] = s;
    }
}

/* Runs before every ternary product, on every token, so it is written for
 * the vectoriser: |x| as float bits (their integer order is the values'
 * order; NaN, whose bits lie above infinity's, is skipped as the comparison
 * `|x| > amax` would skip it), the clamps and the rounding as integer
 * selects on comparison masks (float conditionals would block
 * vectorisation), and compiled once per vector width.  Every version gives
 * the same bits as the plain reading: v = x * s; NaN -> 0; clamp to
 * [-128, 127]; roundf (truncate, then step away from zero when the dropped
 * fraction, exact in float, is at least one half). */
static inline __attribute__((always_inline)) float quantize_act(const float *restrict x, int64_t K,
                                                                int8_t *restrict xq)
{
    TC_FM_NO_CONTRACT
    int32_t mb = 0;
    for (int64_t k = 0; k < K; k++) {
        int32_t b = tc_fm_bits(x[k]) & 0x7fffffff;
        b = b > 0x7f800000 ? 0 : b;
        mb = b > mb ? b : mb;
    }
    float amax = tc_fm_float(mb);
    float s = 127.0f / (amax > 1e-5f ? amax : 1e-5f);
    for (int64_t k = 0; k < K; k++) {
        float v = x[k] * s;
        int32_t hi = -(int32_t)(v >= 127.0f), lo = -(int32_t)(v <= -128.0f), nan = -(int32_t)(v != v);
        /* hi, lo and nan exclude each other; NaN becomes +0 */
        v = tc_fm_float((tc_fm_bits(v) & ~(hi | lo | nan)) | (tc_fm_bits(127.0f) & hi) |
                        (tc_fm_bits(-128.0f) & lo));
        float t = (float)(int32_t)v, d = v - t;
        xq[k] = (int8_t)(int32_t)(t + (float)((int32_t)(d >= 0.5f) - (int32_t)(d <= -0.5f)));
    }
    return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bw"))) static float quantize_act_avx512(const float *x, int64_t K, int8_t *xq)
{
    return quantize_act(x, K, xq);
}

__attribute__((target("avx2"))) static float quantize_act_avx2(const float *x, int64_t K, int8_t *xq)
{
    return quantize_act(x, K, xq);
}
#endif

float tc_tpack_quantize_act(const float *x, int64_t K, int8_t *xq)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        return quantize_act_avx512(x, K, xq);
    if (__builtin_cpu_supports("avx2"))
        return quantize_act_avx2(x, K, xq);
#endif
    return quantize_act(x, K, xq);
}
