/* Whole-model quantization throughput on a synthetic 1B-shaped checkpoint
 * (TinyLlama's shape: dim 2048, ffn 5632, 32 heads, 4 key/value heads, vocab
 * 32000, 22 layers), stored as F16 safetensors in a temporary directory.
 *
 *   bench_quantize_model [--json] [--layers N] [--dir DIR] [--out-dir DIR]
 *                        [--fast-dir DIR|none] [--keep] [--skip-calibrated]
 *                        [--skip-optimal] [--calib-tokens N] [--layout i2|tl1|tl2]
 *                        [--threads N] [--reps N] [--verify]
 *
 * Each method writes a packed file (verification off unless --verify), once
 * into --out-dir (default: beside DIR, on the same disk as the input) and once
 * into --fast-dir (default /dev/shm when it has room), a memory-backed target
 * that shows the quantizer's own rate when the disk is the limit.  Throughput
 * is GB/s of fp32 linear weights (4 bytes per linear parameter over the whole
 * run's wall time: reading, quantizing, packing, CRC-32, writing, the final
 * fsync and rename).  Each run also says where its time went (the report's
 * stage times: load / quantize / measure / pack are thread-seconds summed
 * over the workers; produce / write / verify are wall seconds).  With --reps N
 * every run is repeated and the fastest kept (the machine may be shared).
 *
 * Machine limits measured in the same run:
 *   baseline-load  loading every layer to fp32 with tc_model_load_layer, one
 *                  thread (the F16 read and conversion of the old path);
 *   disk-write     writing a file of the absmean output's size through the
 *                  project's writer (tc_outfile: buffered writes, fsync,
 *                  rename) into --out-dir; its GB/s column is the fp32 input
 *                  rate a run would reach if writing were all it did.
 * calibrated also runs the calibration tokens through each layer and builds
 * X^T X.
 *
 * Measured on the 2-core development machine (shared, load average about 3;
 * best of 3; docs/QUANTIZE.md has the tool's figures): absmean 1.93 s = 2.01
 * GB/s into the disk and 1.78 s = 2.18 GB/s into /dev/shm, optimal 6.45 s =
 * 0.60 GB/s, disk-write 0.28 s, baseline-load 2.12 s.  Before the streamed
 * quantizer the same bench gave absmean 10.44 s = 0.37 GB/s and optimal
 * 17.82 s = 0.22 GB/s (its float tensors then went to F32, 131 MB more
 * output). */
#include <math.h>
#include <stdint.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "tc/forward.h"
#include "tc/model.h"
#include "tc/outfile.h"
#include "tc/quantize.h"
#include "tc/synth.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct row {
    const char *what, *target;
    double seconds, gbps, rel_error, bpw;
    uint64_t out_bytes;
    tc_quantize_times t;
    int has_times;
} row;

static int fail(const tc_error *e)
{
    fprintf(stderr, "bench_quantize_model: %s\n", e->msg);
    return 1;
}

/* Writes `bytes` bytes of a fixed pattern to path through tc_outfile, as the
 * packed writer does (4 MiB pieces, then fsync and rename). */
static int disk_write(const char *path, uint64_t bytes, double *seconds, tc_error *err)
{
    enum { PIECE = 4 << 20 };
    uint8_t *buf = malloc(PIECE);
    if (!buf)
        return tc_err(err, "out of memory");
    for (size_t i = 0; i < PIECE; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    tc_outfile o;
    double t0 = now();
    int rc = tc_outfile_open(&o, path, err);
    for (uint64_t done = 0; rc == TC_OK && done < bytes; done += PIECE)
        rc = tc_outfile_write(&o, buf, bytes - done < PIECE ? (size_t)(bytes - done) : PIECE, err);
    if (rc == TC_OK)
        rc = tc_outfile_commit(&o, err);
    else
        tc_outfile_abort(&o);
    *seconds = now() - t0;
    free(buf);
    unlink(path);
    return rc;
}

/* Free bytes of the filesystem holding dir (0 if unknown). */
static uint64_t free_bytes(const char *dir)
{
    struct statvfs v;
    return statvfs(dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

typedef struct ctx {
    const tc_model *m;
    tc_tpack_layout layout;
    int threads, reps, verify;
    const tc_batch *calib;
    double gb;
} ctx;

static int run_method(const ctx *c, tc_tmethod meth, const char *target, const char *out, row *r,
                      tc_error *err)
{
    tc_quantize_opts o = {.q = {.method = meth, .layout = c->layout, .group = {TC_TGROUP_ROW, 0}},
                          .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .n_threads = c->threads,
                          .verify = c->verify,
                          .calib = meth == TC_TMETHOD_CALIBRATED ? c->calib : NULL};
    for (int rep = 0; rep < c->reps; rep++) {
        tc_quantize_report q;
        double t0 = now();
        if (tc_quantize_model(c->m, out, &o, &q, err))
            return TC_ERR;
        double t = now() - t0;
        if (rep == 0 || t < r->seconds)
            *r = (row){tc_tmethod_name(meth), target, t, c->gb / t, q.rel_weight_error, q.bpw_linear,
                       q.file_bytes, q.times, 1};
        tc_quantize_report_free(&q);
        unlink(out);
    }
    return TC_OK;
}

static void print_json(const row *rows, int n, int layers, tc_tpack_layout layout, long calib_tokens,
                       int threads, int reps)
{
    printf("[\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("  {\"bench\": \"quantize_model\", \"method\": \"%s\", \"target\": \"%s\", \"layers\": %d, "
               "\"dim\": 2048, \"ffn\": 5632, \"layout\": \"%s\", \"grouping\": \"row\", \"calib_tokens\": %ld, "
               "\"threads\": %d, \"reps\": %d, \"seconds\": %.4f, \"throughput\": %.4f, "
               "\"unit\": \"GB/s of fp32 linear weights\", \"output_bytes\": %llu, \"rel_weight_error\": %.6f, "
               "\"linear_bpw\": %.4f",
               r->what, r->target, layers, tc_tpack_layout_name(layout), calib_tokens, threads, reps, r->seconds,
               r->gbps, (unsigned long long)r->out_bytes, r->rel_error, r->bpw);
        if (r->has_times)
            printf(", \"thread_seconds\": {\"load\": %.4f, \"quantize\": %.4f, \"measure\": %.4f, \"pack\": %.4f}, "
                   "\"wall_seconds\": {\"calib\": %.4f, \"produce\": %.4f, \"write\": %.4f, \"verify\": %.4f}",
                   r->t.load, r->t.quantize, r->t.measure, r->t.pack, r->t.calib, r->t.produce, r->t.write,
                   r->t.verify);
        printf("}%s\n", i + 1 < n ? "," : "");
    }
    printf("]\n");
}

static void print_table(const row *rows, int n, int layers, double gb, tc_tpack_layout layout, long calib_tokens,
                        int threads, int reps)
{
    printf("model quantization, %d layers of dim 2048 / ffn 5632 (%.2f GB fp32 linear), layout %s, group row, "
           "%ld calibration tokens, %d threads, best of %d\n",
           layers, gb, tc_tpack_layout_name(layout), calib_tokens, threads, reps);
    printf("%-14s %-9s %8s %12s %9s | %6s %6s %6s %6s | %6s %6s %6s %6s\n", "method", "target", "seconds",
           "GB/s fp32 in", "out MB", "load", "quant", "meas", "pack", "calib", "prod", "write", "verif");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("%-14s %-9s %8.2f %12.3f %9.1f", r->what, r->target, r->seconds, r->gbps, (double)r->out_bytes / 1e6);
        if (r->has_times)
            printf(" | %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f %6.2f", r->t.load, r->t.quantize, r->t.measure,
                   r->t.pack, r->t.calib, r->t.produce, r->t.write, r->t.verify);
        printf("\n");
    }
    printf("load..pack: thread-seconds summed over workers; calib..verif: wall seconds.  disk-write: a file of\n"
           "the absmean output's size written and synced into the same directory; its GB/s is the fp32-input\n"
           "rate that writing alone would allow.\n");
}

int main(int argc, char **argv)
{
    /* As the tools do (tools/cli.c): freed layers stay in the heap for the next one. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    int json = 0, layers = 22, keep = 0, skip_cal = 0, skip_opt = 0, reps = 1, verify = 0;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    long calib_tokens = 128;
    const char *dir = "/tmp/tc-bench-1b", *out_dir = NULL, *fast_dir = "/dev/shm";
    tc_tpack_layout layout = TC_TPACK_TL2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--verify"))
            verify = 1;
        else if (!strcmp(argv[i], "--skip-calibrated"))
            skip_cal = 1;
        else if (!strcmp(argv[i], "--skip-optimal"))
            skip_opt = 1;
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calib-tokens") && i + 1 < argc && atol(argv[i + 1]) > 1)
            calib_tokens = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--out-dir") && i + 1 < argc)
            out_dir = argv[++i];
        else if (!strcmp(argv[i], "--fast-dir") && i + 1 < argc)
            fast_dir = argv[++i];
        else if (!strcmp(argv[i], "--layout") && i + 1 < argc && !tc_tpack_layout_from_name(argv[i + 1], &layout))
            i++;
        else {
            fprintf(stderr, "usage: %s [--json] [--layers N] [--dir DIR] [--out-dir DIR] [--fast-dir DIR|none] "
                    "[--keep] [--skip-calibrated] [--skip-optimal] [--calib-tokens N] [--layout i2|tl1|tl2] "
                    "[--threads N] [--reps N] [--verify]\n", argv[0]);
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

    row rows[16];
    int n = 0;
    double t0 = now();
    for (int l = 0; l < m.cfg.n_layers; l++) {
        tc_layer_f32 w;
        if (tc_model_load_layer(&m, l, &w, &err))
            return fail(&err);
        tc_layer_f32_free(&w);
    }
    double tb = now() - t0;
    rows[n++] = (row){.what = "baseline-load", .target = "memory", .seconds = tb, .gbps = gb / tb};

    /* Calibration tokens: two sequences of seeded ids. */
    size_t nt = (size_t)calib_tokens, offsets[3] = {0, nt / 2, nt};
    int32_t *tokens = malloc(nt * sizeof *tokens);
    uint64_t s = 3;
    for (size_t i = 0; i < nt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((s >> 33) % 32000);
    }
    tc_batch b = {tokens, offsets, 2};
    ctx c = {.m = &m, .layout = layout, .threads = threads, .reps = reps, .verify = verify, .calib = &b, .gb = gb};
    char out[1100], fast[1100];
    if (out_dir)
        snprintf(out, sizeof out, "%s/tc-bench-quantize.tcq", out_dir);
    else
        snprintf(out, sizeof out, "%s.tcq", dir);
    snprintf(fast, sizeof fast, "%s/tc-bench-quantize.tcq", fast_dir);
    int use_fast = strcmp(fast_dir, "none") != 0 && stat(fast_dir, &st) == 0;
    uint64_t abs_bytes = 0;
    int rc = TC_OK;
    for (int meth = 0; meth < 3 && rc == TC_OK; meth++) {
        if ((meth == TC_TMETHOD_CALIBRATED && skip_cal) || (meth == TC_TMETHOD_OPTIMAL && skip_opt))
            continue;
        rc = run_method(&c, (tc_tmethod)meth, "disk", out, &rows[n++], &err);
        if (rc == TC_OK && meth == TC_TMETHOD_ABSMEAN)
            abs_bytes = rows[n - 1].out_bytes;
        /* The fast target must hold the output with room to spare. */
        if (rc == TC_OK && use_fast && free_bytes(fast_dir) > 2 * rows[n - 1].out_bytes)
            rc = run_method(&c, (tc_tmethod)meth, "memory", fast, &rows[n++], &err);
    }
    if (rc == TC_OK && abs_bytes > 0) {
        double best = 0;
        for (int rep = 0; rep < reps && rc == TC_OK; rep++) {
            double t = 0;
            rc = disk_write(out, abs_bytes, &t, &err);
            if (rep == 0 || t < best)
                best = t;
        }
        if (rc == TC_OK)
            rows[n++] = (row){.what = "disk-write", .target = "disk", .seconds = best, .gbps = gb / best,
                              .out_bytes = abs_bytes};
    }
    free(tokens);
    tc_model_close(&m);
    if (rc)
        return fail(&err);
    if (json)
        print_json(rows, n, layers, layout, calib_tokens, threads, reps);
    else
        print_table(rows, n, layers, gb, layout, calib_tokens, threads, reps);
    return 0;
}
