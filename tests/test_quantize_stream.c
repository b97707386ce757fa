/* The quantizer's fast paths give the bytes of the plain ones: packing block
 * by block equals packing a whole weight, reports added up in pieces equal a
 * whole report, unpacking whole chunks by table inverts packing and
 * refuses bad indices, a model quantized as a stream of row blocks (packed, no
 * calibration) holds the same tensors as one quantized whole (the path taken
 * with calibration data), and a float embedding written from the source bytes
 * equals the converted one, NaN payloads included. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "tc/model.h"
#include "tc/quantize.h"
#include "tc/synth.h"
#include "tc/tmodel.h"
#include "tc/tpack.h"

static uint32_t rng_next(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static void test_pack_blocks(void)
{
    tc_error err = {{0}};
    static const int64_t Ms[] = {1, 31, 32, 33, 70}, Ks[] = {1, 5, 24, 25, 100};
    const tc_tgroup row = {TC_TGROUP_ROW, 0};
    uint32_t s = 5;
    for (int lay = 0; lay < TC_TPACK_LAYOUT_COUNT; lay++)
        for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
            for (size_t j = 0; j < sizeof Ks / sizeof *Ks; j++) {
                int64_t M = Ms[i], K = Ks[j];
                tc_tpack_plan p;
                CHECK_OK(tc_tpack_plan_make((tc_tpack_layout)lay, M, K, &row, &p, &err), &err);
                int8_t *c = malloc((size_t)(M * K));
                float *sc = malloc((size_t)M * sizeof *sc);
                uint8_t *whole = malloc(p.total_bytes), *blocks = malloc(p.total_bytes);
                for (int64_t k = 0; k < M * K; k++)
                    c[k] = (int8_t)(rng_next(&s) % 3) - 1;
                for (int64_t m = 0; m < M; m++)
                    sc[m] = 0.25f * (float)(m + 1);
                memset(whole, 0xAA, p.total_bytes);
                memset(blocks, 0x55, p.total_bytes);
                CHECK_OK(tc_tpack_pack(&p, c, sc, whole, &err), &err);
                for (int64_t rb = 0; rb < p.rows_padded / TC_TPACK_TILE_ROWS; rb++)
                    CHECK_OK(tc_tpack_pack_block(&p, rb, c + rb * TC_TPACK_TILE_ROWS * K, blocks, &err), &err);
                tc_tpack_put_scales(&p, sc, blocks);
                CHECK_MSG(memcmp(whole, blocks, p.total_bytes) == 0, "layout %d, %lld x %lld", lay, (long long)M,
                          (long long)K);
                /* A bad code and a block outside the weight are refused. */
                c[0] = 2;
                CHECK(tc_tpack_pack_block(&p, 0, c, blocks, &err) == TC_ERR && strstr(err.msg, "row block 0"));
                CHECK(tc_tpack_pack_block(&p, p.rows_padded / TC_TPACK_TILE_ROWS, c, blocks, &err) == TC_ERR);
                free(c);
                free(sc);
                free(whole);
                free(blocks);
            }
}

/* Unpacking (whose whole chunks take a table-driven path) inverts packing,
 * and an index outside its table inside a whole chunk is still refused. */
static void test_unpack_full(void)
{
    tc_error err = {{0}};
    const tc_tgroup row = {TC_TGROUP_ROW, 0};
    uint32_t s = 21;
    for (int lay = 0; lay < TC_TPACK_LAYOUT_COUNT; lay++) {
        enum { M = 64, K = 48 };
        tc_tpack_plan p;
        CHECK_OK(tc_tpack_plan_make((tc_tpack_layout)lay, M, K, &row, &p, &err), &err);
        int8_t c[M * K], back[M * K];
        float sc[M], sb[M];
        for (int i = 0; i < M * K; i++)
            c[i] = (int8_t)(rng_next(&s) % 3) - 1;
        for (int i = 0; i < M; i++)
            sc[i] = (float)i;
        uint8_t *buf = malloc(p.total_bytes);
        CHECK_OK(tc_tpack_pack(&p, c, sc, buf, &err), &err);
        CHECK_OK(tc_tpack_unpack(&p, buf, p.total_bytes, back, sb, &err), &err);
        CHECK(memcmp(c, back, sizeof c) == 0 && memcmp(sc, sb, sizeof sc) == 0);
        /* Second chunk of the second row block: index 15 (outside every table). */
        uint8_t *chunk = buf + p.row_block_bytes + p.chunk_bytes;
        uint8_t keep = chunk[3];
        chunk[3] = 0xff;
        CHECK(tc_tpack_unpack(&p, buf, p.total_bytes, back, sb, &err) == TC_ERR && strstr(err.msg, "chunk 1"));
        chunk[3] = keep;
        if (lay == TC_TPACK_TL2) {
            /* A zero triple carrying a sign. */
            chunk[0] &= 0xf0;
            chunk[128] |= 1;
            CHECK(tc_tpack_unpack(&p, buf, p.total_bytes, back, sb, &err) == TC_ERR);
        }
        free(buf);
    }
}

static void test_report_pieces(void)
{
    enum { M = 45, K = 70 };
    float *W = malloc(M * K * sizeof *W), *sc = malloc(M * 3 * sizeof *sc);
    int8_t *c = malloc(M * K);
    uint32_t s = 9;
    for (int i = 0; i < M * K; i++) {
        W[i] = (float)((int)(rng_next(&s) % 2001) - 1000) / 997.0f;
        c[i] = (int8_t)(rng_next(&s) % 3) - 1;
    }
    for (int i = 0; i < M * 3; i++)
        sc[i] = 0.1f + 0.01f * (float)i;
    const tc_tgroup groups[] = {{TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 32}};
    for (int g = 0; g < 2; g++) {
        int64_t gpr = tc_ternary_groups_per_row(&groups[g], K);
        tc_ternary_report whole, acc;
        tc_ternary_report_make(W, c, sc, M, K, &groups[g], &whole);
        memset(&acc, 0, sizeof acc);
        for (int m0 = 0; m0 < M; m0 += 8) {
            int rows = M - m0 < 8 ? M - m0 : 8;
            tc_ternary_report_add(W + m0 * K, c + m0 * K, sc + m0 * gpr, rows, K, &groups[g], &acc);
        }
        tc_ternary_report_finish(&acc, M, K);
        CHECK(memcmp(&whole, &acc, sizeof whole) == 0);
        CHECK(whole.zeros > 0 && whole.weight_sq > 0 && whole.error_sq > 0);
        CHECK(whole.zero_share == (double)whole.zeros / (M * K));
    }
    free(W);
    free(sc);
    free(c);
}

/* Every tensor of a and b holds the same bytes. */
static void check_same_tensors(const char *a, const char *b)
{
    tc_error err = {{0}};
    tc_tmodel x, y;
    CHECK_OK(tc_tmodel_open(&x, a, &err), &err);
    CHECK_OK(tc_tmodel_open(&y, b, &err), &err);
    CHECK(x.n_tensors == y.n_tensors && x.n_tensors > 0);
    for (size_t i = 0; i < x.n_tensors && i < y.n_tensors; i++) {
        const tc_tmodel_tensor *p = &x.tensors[i], *q = tc_tmodel_find(&y, p->layer, p->role);
        CHECK(q && q->nbytes == p->nbytes && q->crc32 == p->crc32);
        if (q && q->nbytes == p->nbytes)
            CHECK_MSG(memcmp(p->data, q->data, (size_t)p->nbytes) == 0, "tensor %zu", i);
    }
    tc_tmodel_close(&x);
    tc_tmodel_close(&y);
}

/* Streamed (no calibration data) against whole matrices (calibration data
 * present, which only adds output errors): the same tensors, for both
 * methods, ragged shapes (rows not a multiple of 32, columns not of 24) and
 * column groups, with and without worker threads. */
static void test_stream_equals_whole(const char *dir)
{
    tc_error err = {{0}};
    tc_synth_spec s = {.cfg = tc_synth_config(2, 80, 4, 2, 100, 96), .seed = 3};
    tc_model m;
    CHECK_OK(tc_synth_model(&m, &s, &err), &err);
    int32_t tokens[12];
    for (int i = 0; i < 12; i++)
        tokens[i] = (i * 7 + 1) % 96;
    size_t offsets[3] = {0, 6, 12};
    tc_batch b = {tokens, offsets, 2};
    char a[512], w[512];
    snprintf(a, sizeof a, "%s/stream.tcq", dir);
    snprintf(w, sizeof w, "%s/whole.tcq", dir);
    const tc_tgroup groups[] = {{TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 32}};
    for (int meth = 0; meth < 2; meth++)
        for (int lay = 0; lay < TC_TPACK_LAYOUT_COUNT; lay++)
            for (int g = 0; g < 2; g++) {
                tc_quantize_opts o = {.q = {.method = (tc_tmethod)meth, .layout = (tc_tpack_layout)lay,
                                            .group = groups[g]},
                                      .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .verify = 1,
                                      .n_threads = 1 + lay % 2};
                tc_quantize_report r1, r2;
                CHECK_OK(tc_quantize_model(&m, a, &o, &r1, &err), &err);
                o.calib = &b;
                CHECK_OK(tc_quantize_model(&m, w, &o, &r2, &err), &err);
                CHECK(r1.verified && r2.verified);
                CHECK(r1.rel_weight_error == r2.rel_weight_error && r1.zero_share == r2.zero_share);
                CHECK(r1.rel_output_error == -1 && r2.rel_output_error > 0);
                CHECK(r1.times.pack > 0 && r1.times.produce > 0 && r1.times.write > 0 && r1.times.verify > 0);
                check_same_tensors(a, w);
                tc_quantize_report_free(&r1);
                tc_quantize_report_free(&r2);
            }
    tc_model_close(&m);
}

/* Offset of tensor `name`'s data in a safetensors file. */
static long tensor_offset(const char *path, const char *name)
{
    FILE *f = fopen(path, "rb");
    uint8_t n8[8];
    long off = -1;
    if (!f || fread(n8, 1, 8, f) != 8) {
        if (f)
            fclose(f);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)n8[i] << 8 * i;
    char *h = n < (1u << 24) ? malloc((size_t)n + 1) : NULL;
    if (h && fread(h, 1, (size_t)n, f) == n) {
        h[n] = 0;
        cJSON *j = cJSON_Parse(h);
        cJSON *t = cJSON_GetObjectItemCaseSensitive(j, name);
        cJSON *o = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        if (cJSON_IsArray(o) && cJSON_IsNumber(cJSON_GetArrayItem(o, 0)))
            off = (long)(8 + n) + (long)cJSON_GetArrayItem(o, 0)->valuedouble;
        cJSON_Delete(j);
    }
    free(h);
    fclose(f);
    return off;
}

/* The embedding of an F16 checkpoint is written from the source bytes,
 * except when a value would not survive the conversion (a NaN's payload):
 * then it is converted, exactly as before. */
static void test_embedding_copy(const char *dir)
{
    tc_error err = {{0}};
    char src[512], st[600], out[512];
    snprintf(src, sizeof src, "%s/f16model", dir);
    snprintf(st, sizeof st, "%s/model.safetensors", src);
    snprintf(out, sizeof out, "%s/f16.tcq", dir);
    tc_synth_spec s = {.cfg = tc_synth_config(1, 64, 4, 2, 96, 64), .seed = 11};
    CHECK_OK(tc_synth_write(src, TC_FORMAT_HF, TC_F16, &s, &err), &err);
    tc_quantize_opts o = {.q = {.method = TC_TMETHOD_ABSMEAN, .layout = TC_TPACK_TL2, .group = {TC_TGROUP_ROW, 0}},
                          .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .verify = 1, .n_threads = 2};
    for (int nan = 0; nan < 2; nan++) {
        if (nan) {
            /* Element 5 of the embedding becomes a NaN with payload 0x155. */
            long off = tensor_offset(st, "model.embed_tokens.weight");
            CHECK(off > 0);
            FILE *f = fopen(st, "r+b");
            const uint8_t bits[2] = {0x55, 0x7d};
            CHECK(f && fseek(f, off + 10, SEEK_SET) == 0 && fwrite(bits, 1, 2, f) == 2);
            if (f)
                fclose(f);
        }
        tc_model m;
        CHECK_OK(tc_model_open(&m, src, &err), &err);
        CHECK_OK(tc_quantize_model(&m, out, &o, NULL, &err), &err);
        tc_tmodel t;
        CHECK_OK(tc_tmodel_open(&t, out, &err), &err);
        const tc_tmodel_tensor *e = tc_tmodel_find(&t, -1, TC_G_EMBD);
        CHECK(e && e->dtype == TC_F16 && e->nbytes == m.tok_embd->nbytes);
        if (e && e->nbytes == m.tok_embd->nbytes) {
            uint64_t n = m.tok_embd->n_elements;
            float *v = malloc((size_t)n * sizeof *v);
            uint8_t *conv = malloc((size_t)e->nbytes);
            CHECK_OK(tc_convert_to_f32(TC_F16, m.tok_embd->data, n, v, &err), &err);
            CHECK_OK(tc_convert_from_f32(TC_F16, v, n, conv, &err), &err);
            CHECK(memcmp(conv, e->data, (size_t)e->nbytes) == 0);
            /* Without the NaN the bytes are the source's; with it only that value changed. */
            int same_as_src = memcmp(m.tok_embd->data, e->data, (size_t)e->nbytes) == 0;
            CHECK(same_as_src == !nan);
            if (nan)
                CHECK(e->data[10] == 0x00 && e->data[11] == 0x7e);
            free(v);
            free(conv);
        }
        tc_tmodel_close(&t);
        tc_model_close(&m);
    }
}

int main(void)
{
    char dir[256];
    if (!tu_tmpdir(dir, sizeof dir))
        return 1;
    test_pack_blocks();
    test_unpack_full();
    test_report_pieces();
    test_stream_equals_whole(dir);
    test_embedding_copy(dir);
    return tu_finish("test_quantize_stream");
}
