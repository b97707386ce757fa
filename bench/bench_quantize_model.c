/* Whole-model quantization throughput on a synthetic 1B-shaped checkpoint
 * (TinyLlama's shape: dim 2048, ffn 5632, 32 heads, 4 key/value heads, vocab
 * 32000, 22 layers), stored as F16 safetensors in a temporary directory.
 *
 *   bench_quantize_model [--json] [--layers N] [--dir DIR] [--keep] [--skip-calibrated]
 *                        [--calib-tokens N] [--layout i2|tl1|tl2]
 *
 * Each method writes a packed file (verification off).  Throughput is GB/s of
 * fp32 linear weights quantized (4 bytes per linear parameter over the whole
 * run's wall time), beside a baseline measured in the same run: loading every
 * layer to fp32 (the F16 read and conversion every method pays).  calibrated
 * also runs the calibration tokens through each layer and builds X^T X. */
#include <math.h>
#include <stdint.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tc/forward.h"
#include "tc/model.h"
#include "tc/quantize.h"
#include "tc/synth.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct row {
    const char *what;
    double seconds, gbps, ratio, rel_error, bpw;
} row;

static int fail(const tc_error *e)
{
    fprintf(stderr, "bench_quantize_model: %s\n", e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    /* As the tools do (tools/cli.c): freed layers stay in the heap for the next one. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    int json = 0, layers = 22, keep = 0, skip_cal = 0;
    long calib_tokens = 128;
    const char *dir = "/tmp/tc-bench-1b";
    tc_tpack_layout layout = TC_TPACK_TL2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--skip-calibrated"))
            skip_cal = 1;
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calib-tokens") && i + 1 < argc && atol(argv[i + 1]) > 1)
            calib_tokens = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--layout") && i + 1 < argc && !tc_tpack_layout_from_name(argv[i + 1], &layout))
            i++;
        else {
            fprintf(stderr, "usage: %s [--json] [--layers N] [--dir DIR] [--keep] [--skip-calibrated] "
                    "[--calib-tokens N] [--layout i2|tl1|tl2]\n", argv[0]);
            return 2;
        }
    }
    tc_error err = {{0}};
    tc_synth_spec spec = {.cfg = tc_synth_config(layers, 2048, 32, 4, 5632, 32000), .seed = 1};
    spec.cfg.max_seq_len = 2048;
    char cfgpath[1024];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
    struct stat st;
    if (!keep || stat(cfgpath, &st) != 0) {
        mkdir(dir, 0755);
        double t0 = now();
        if (tc_synth_write(dir, TC_FORMAT_HF, TC_F16, &spec, &err))
            return fail(&err);
        fprintf(stderr, "wrote %s (%d layers, F16) in %.1f s\n", dir, layers, now() - t0);
    }
    tc_model m;
    if (tc_model_open(&m, dir, &err))
        return fail(&err);
    uint64_t lin = 0;
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int r = 0; r < TC_N_ROLES; r++) {
            const tc_tensor *t = m.layers[l].w[r];
            if (t && t->n_dims == 2)
                lin += t->n_elements;
        }
    double gb = 4.0 * (double)lin / 1e9;

    row rows[4];
    int n = 0;
    double t0 = now();
    for (int l = 0; l < m.cfg.n_layers; l++) {
        tc_layer_f32 w;
        if (tc_model_load_layer(&m, l, &w, &err))
            return fail(&err);
        tc_layer_f32_free(&w);
    }
    double tb = now() - t0, base = gb / tb;
    rows[n++] = (row){"baseline-load", tb, base, 1.0, 0, 0};

    /* Calibration tokens: two sequences of seeded ids. */
    size_t nt = (size_t)calib_tokens, offsets[3] = {0, nt / 2, nt};
    int32_t *tokens = malloc(nt * sizeof *tokens);
    uint64_t s = 3;
    for (size_t i = 0; i < nt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((s >> 33) % 32000);
    }
    tc_batch b = {tokens, offsets, 2};
    char out[1100];
    snprintf(out, sizeof out, "%s.tmodel", dir);
    for (int meth = 0; meth < 3; meth++) {
        if (meth == TC_TMETHOD_CALIBRATED && skip_cal)
            continue;
        tc_quantize_opts o = {.q = {.method = (tc_tmethod)meth, .layout = layout,
                                    .group = {TC_TGROUP_ROW, 0}},
                              .format = TC_QFORMAT_PACKED, .n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN),
                              .calib = meth == TC_TMETHOD_CALIBRATED ? &b : NULL};
        tc_quantize_report rep;
        t0 = now();
        if (tc_quantize_model(&m, out, &o, &rep, &err))
            return fail(&err);
        double t = now() - t0;
        rows[n++] = (row){tc_tmethod_name((tc_tmethod)meth), t, gb / t, gb / t / base, rep.rel_weight_error,
                          rep.bpw_linear};
        tc_quantize_report_free(&rep);
        unlink(out);
    }
    free(tokens);
    tc_model_close(&m);
    if (json) {
        printf("[\n");
        for (int i = 0; i < n; i++)
            printf("  {\"bench\": \"quantize_model\", \"method\": \"%s\", \"layers\": %d, \"dim\": 2048, "
                   "\"ffn\": 5632, \"layout\": \"%s\", \"grouping\": \"row\", \"calib_tokens\": %ld, "
                   "\"seconds\": %.4f, \"throughput\": %.4f, \"unit\": \"GB/s of fp32 linear weights\", "
                   "\"ratio_to_baseline\": %.4f, \"rel_weight_error\": %.6f, \"linear_bpw\": %.4f}%s\n",
                   rows[i].what, layers, tc_tpack_layout_name(layout), calib_tokens, rows[i].seconds,
                   rows[i].gbps, rows[i].ratio, rows[i].rel_error, rows[i].bpw, i + 1 < n ? "," : "");
        printf("]\n");
    } else {
        printf("model quantization, %d layers of dim 2048 / ffn 5632 (%.2f GB fp32 linear), layout %s, "
               "group row, %ld calibration tokens\n", layers, gb, tc_tpack_layout_name(layout), calib_tokens);
        printf("%-14s %10s %14s %9s %10s %8s\n", "method", "seconds", "GB/s fp32 in", "x base", "rel err W",
               "bpw lin");
        for (int i = 0; i < n; i++)
            printf("%-14s %10.2f %14.3f %9.3f %10.4f %8.3f\n", rows[i].what, rows[i].seconds, rows[i].gbps,
                   rows[i].ratio, rows[i].rel_error, rows[i].bpw);
    }
    return 0;
}
