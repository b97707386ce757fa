/* Dequantization speed of every GGUF type tc reads, beside reading F16 and
 * copying F32, in one run.
 *
 *   bench_dequant [--mb N] [--repeat N] [--json]
 *
 * Each type's blocks are ggml's own (tests/ggml/ggml_types.gguf, found
 * through TC_SOURCE or the current directory), tiled to about N MB of fp32
 * output (default 64, larger than the caches), and converted to fp32 with
 * tc_convert_to_f32 on one thread, best of --repeat (default 5).  MB/s
 * counts the fp32 bytes written; "in" the stored bytes read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc/dtype.h"
#include "tc/gguf.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const TYPES[] = {"F16",  "F32",  "BF16", "Q8_0", "Q4_0",   "Q4_1",   "Q5_0", "Q5_1",
                                    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};

int main(int argc, char **argv)
{
    long mb = 64, repeat = 5;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = atol(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_dequant [--mb N] [--repeat N] [--json]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (mb < 1 || repeat < 1) {
        fprintf(stderr, "bench_dequant: --mb and --repeat must be positive\n");
        return 2;
    }
    const char *src = getenv("TC_SOURCE");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/ggml/ggml_types.gguf", src && *src ? src : ".");
    tc_gguf g;
    tc_error err = {{0}};
    if (tc_gguf_open(&g, path, &err)) {
        fprintf(stderr, "bench_dequant: %s\n", err.msg);
        return 1;
    }
    const tc_tensor *f32 = tc_tensordir_find(&g.dir, "q4_0.in");
    uint64_t n = (uint64_t)mb << 18; /* weights: mb MB of fp32 */
    n -= n % 1536;
    float *out = malloc(n * sizeof *out);
    uint8_t *in = malloc(n * 4);
    if (!f32 || !out || !in) {
        fprintf(stderr, "bench_dequant: the vector file or memory is missing\n");
        return 1;
    }
    memset(out, 0, n * sizeof *out); /* fault the pages in once, before any timing */
    memset(in, 0, n * 4);
    if (json)
        printf("{\"weights\": %llu, \"threads\": 1, \"repeat\": %ld, \"types\": [", (unsigned long long)n, repeat);
    else
        printf("%llu weights (%.0f MB of fp32) per type, one thread, best of %ld\n%-7s %10s %10s %8s\n",
               (unsigned long long)n, (double)n * 4 / 1e6, repeat, "type", "MB/s out", "MB/s in", "vs F16");
    double f16_rate = 0.0;
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        tc_dtype t;
        if (tc_dtype_from_name(TYPES[k], &t))
            continue;
        /* Source bytes: the vector file's blocks of the type, or its fp32 inputs converted. */
        char name[64];
        snprintf(name, sizeof name, "%s.blocks", TYPES[k]);
        for (char *c = name; *c && *c != '.'; c++)
            if (*c >= 'A' && *c <= 'Z' && !(*c == 'K' && c[-1] == '_'))
                *c = (char)(*c - 'A' + 'a');
        const tc_tensor *b = tc_tensordir_find(&g.dir, name);
        uint8_t unit[1536 * 4];
        uint64_t unit_bytes;
        if (b) {
            unit_bytes = b->nbytes;
            memcpy(unit, b->data, (size_t)unit_bytes);
        } else if (tc_dtype_span(t, 1536, &unit_bytes, &err) ||
                   tc_convert_from_f32(t, (const float *)f32->data, 1536, unit, &err)) {
            continue;
        }
        uint64_t total = n / 1536 * unit_bytes;
        for (uint64_t off = 0; off < total; off += unit_bytes)
            memcpy(in + off, unit, (size_t)unit_bytes);
        double best = 1e300;
        for (long r = 0; r < repeat; r++) {
            double t0 = now();
            if (tc_convert_to_f32(t, in, n, out, &err)) {
                fprintf(stderr, "bench_dequant: %s: %s\n", TYPES[k], err.msg);
                return 1;
            }
            double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        double rate = (double)n * 4 / best / 1e6, in_rate = (double)total / best / 1e6;
        if (t == TC_F16)
            f16_rate = rate;
        if (json)
            printf("%s{\"type\": \"%s\", \"mb_per_s_out\": %.1f, \"mb_per_s_in\": %.1f, \"vs_f16\": %.3f}",
                   k ? ", " : "", TYPES[k], rate, in_rate, f16_rate > 0 ? rate / f16_rate : 0.0);
        else
            printf("%-7s %10.0f %10.0f %7.2fx\n", TYPES[k], rate, in_rate, f16_rate > 0 ? rate / f16_rate : 0.0);
    }
    if (json)
        printf("]}\n");
    free(in);
    free(out);
    tc_gguf_close(&g);
    return 0;
}
