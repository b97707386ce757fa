/* Makes tc's ggml type vectors with ggml itself: inputs, ggml's reference
 * quantization of them (ggml_quantize_chunk, no importance matrix) and
 * ggml's dequantization of those blocks, one GGUF. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "gguf.h"

static unsigned long long st = 0x9E3779B97F4A7C15ull;
static double uni(void) { st = st * 6364136223846793005ull + 1442695040888963407ull; return (double)(st >> 11) / 9007199254740992.0; }

int main(int argc, char **argv) {
    const char *out = argv[1];
    enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
                              GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
                              GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
    const int nt = sizeof types / sizeof types[0];
    const int64_t K = 512, R = 3; /* rows of two superblocks */
    struct ggml_init_params ip = {.mem_size = 64 << 20, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *ctx = ggml_init(ip);
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "ggml-vectors");
    gguf_set_val_str(g, "general.description", "inputs, ggml_quantize_chunk blocks and ggml's to_float of them");
    float *x = malloc(K * R * sizeof *x), *y = malloc(K * R * sizeof *y);
    for (int i = 0; i < nt; i++) {
        enum ggml_type t = types[i];
        /* Rows of different character: gaussian-ish, one with an outlier and zeros, one tiny. */
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < K; k++) {
                double v = (uni() + uni() + uni() - 1.5) * 2.0;
                if (r == 1) v = (k % 37 == 0) ? 0.0 : (k == 100 ? 40.0 : v * (1.0 + k / 256.0));
                if (r == 2) v *= 1e-3 * (1 + (k % 7));
                x[r * K + k] = (float)v;
            }
        char name[64];
        snprintf(name, sizeof name, "%s.in", ggml_type_name(t));
        struct ggml_tensor *tin = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, R);
        ggml_set_name(tin, name);
        memcpy(tin->data, x, K * R * sizeof *x);
        struct ggml_tensor *tq = ggml_new_tensor_2d(ctx, t, K, R);
        snprintf(name, sizeof name, "%s.blocks", ggml_type_name(t));
        ggml_set_name(tq, name);
        ggml_quantize_chunk(t, x, tq->data, 0, R, K, NULL);
        ggml_get_type_traits(t)->to_float(tq->data, y, K * R);
        struct ggml_tensor *to = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, R);
        snprintf(name, sizeof name, "%s.out", ggml_type_name(t));
        ggml_set_name(to, name);
        memcpy(to->data, y, K * R * sizeof *y);
        gguf_add_tensor(g, tin);
        gguf_add_tensor(g, tq);
        gguf_add_tensor(g, to);
    }
    /* The types tc writes, on 64 more varied rows of 256: scales over six
     * decades, all-positive rows, constant rows, rows with one outlier. */
    enum ggml_type wtypes[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const int64_t WK = 256, WR = 64;
    float *wx = malloc(WK * WR * sizeof *wx);
    for (int64_t r = 0; r < WR; r++) {
        double scale = pow(10.0, -4.0 + 6.0 * (double)r / (double)(WR - 1));
        for (int64_t k = 0; k < WK; k++) {
            double v = (uni() + uni() + uni() + uni() - 2.0) * scale;
            if (r % 8 == 1) v = fabs(v) + 0.1 * scale;          /* all positive */
            if (r % 8 == 2) v = 0.37 * scale;                   /* constant */
            if (r % 8 == 3 && k == 77) v = 50.0 * scale;        /* an outlier */
            if (r % 8 == 4 && k % 3 == 0) v = 0.0;              /* many zeros */
            if (r % 8 == 5) v = -fabs(v);                       /* all negative */
            wx[r * WK + k] = (float)v;
        }
    }
    for (size_t i = 0; i < sizeof wtypes / sizeof wtypes[0]; i++) {
        enum ggml_type t = wtypes[i];
        char name[64];
        struct ggml_tensor *tin = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, WK, WR);
        snprintf(name, sizeof name, "%s.enc_in", ggml_type_name(t));
        ggml_set_name(tin, name);
        memcpy(tin->data, wx, WK * WR * sizeof *wx);
        struct ggml_tensor *tq = ggml_new_tensor_2d(ctx, t, WK, WR);
        snprintf(name, sizeof name, "%s.enc_blocks", ggml_type_name(t));
        ggml_set_name(tq, name);
        ggml_quantize_chunk(t, wx, tq->data, 0, WR, WK, NULL);
        gguf_add_tensor(g, tin);
        gguf_add_tensor(g, tq);
    }
    if (!gguf_write_to_file(g, out, false)) { fprintf(stderr, "write failed\n"); return 1; }
    printf("wrote %s\n", out);
    return 0;
}
