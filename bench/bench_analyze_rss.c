/* Memory of the analysis on a large checkpoint: the forward pass converts one
 * layer at a time, so peak resident memory should be one layer in fp32 plus
 * the activations, not the model.
 *
 *   bench_analyze_rss [--path FILE] [--layers N] [--dim N] [--ffn N] [--heads N]
 *                     [--vocab N] [--tokens N] [--keep] [--json]
 *
 * Defaults: a 7B-shaped F16 GGUF (32 layers, dim 4096, ffn 11008, 32 heads,
 * vocab 32000; 13.5 GB) written with the synthetic generator to
 * /tmp/tc-bench-7b.gguf (reused when present; removed unless --keep), then
 * analysed (cosines only) on 2 sequences of --tokens/2 tokens. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tc/analyze.h"
#include "tc/synth.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

int main(int argc, char **argv)
{
    /* As the tools do (tools/cli.c): freed layers stay in the heap for the next one. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    const char *path = "/tmp/tc-bench-7b.gguf";
    int layers = 32, dim = 4096, ffn = 11008, heads = 32, vocab = 32000, tokens = 256, keep = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--keep")) keep = 1;
        else if (v && !strcmp(a, "--path")) path = argv[++i];
        else if (v && !strcmp(a, "--layers")) layers = atoi(argv[++i]);
        else if (v && !strcmp(a, "--dim")) dim = atoi(argv[++i]);
        else if (v && !strcmp(a, "--ffn")) ffn = atoi(argv[++i]);
        else if (v && !strcmp(a, "--heads")) heads = atoi(argv[++i]);
        else if (v && !strcmp(a, "--vocab")) vocab = atoi(argv[++i]);
        else if (v && !strcmp(a, "--tokens")) tokens = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_analyze_rss [--path FILE] [--layers N] [--dim N] [--ffn N] "
                            "[--heads N] [--vocab N] [--tokens N] [--keep] [--json]\n");
            return 2;
        }
    }
    tc_error err = {{0}};
    tc_synth_spec s = {.cfg = tc_synth_config(layers, dim, heads, heads, ffn, vocab), .seed = 1};
    s.cfg.max_seq_len = 4096;
    struct stat st;
    double t_write = 0, rss_after_write = 0;
    int wrote = 0;
    if (stat(path, &st) != 0) {
        double t0 = now();
        if (tc_synth_write(path, TC_FORMAT_GGUF, TC_F16, &s, &err)) {
            fprintf(stderr, "bench_analyze_rss: %s\n", err.msg);
            return 1;
        }
        t_write = now() - t0;
        rss_after_write = peak_rss_bytes();
        wrote = 1;
        stat(path, &st);
    }
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "bench_analyze_rss: %s\n", err.msg);
        return 1;
    }
    int n_seqs = 2, len = tokens / 2;
    int32_t *tok = malloc((size_t)tokens * sizeof *tok);
    size_t offsets[3] = {0, (size_t)len, (size_t)2 * len};
    for (int i = 0; i < tokens; i++)
        tok[i] = (int32_t)((i * 7919u + 1) % (unsigned)vocab);
    double rss_before = peak_rss_bytes();
    tc_analyze_opts o = {.n_threads = 2, .no_measure = 1, .no_head_stats = 1};
    tc_analysis a = {0};
    double t0 = now();
    int rc = tc_analyze(&m, tok, offsets, (size_t)n_seqs, &o, &a, &err);
    double t_an = now() - t0;
    if (rc) {
        fprintf(stderr, "bench_analyze_rss: %s\n", err.msg);
        return 1;
    }
    double peak = peak_rss_bytes();
    const tc_config *c = &m.cfg;
    double layer_params = 2.0 * dim * dim + 2.0 * dim * (c->n_kv_heads * c->head_dim) + 3.0 * dim * ffn;
    double layer_f32 = 4.0 * layer_params, head_f32 = 4.0 * vocab * dim;
    double one = layer_f32 > head_f32 ? layer_f32 : head_f32;
    /* Activations the pass holds: hidden states, q/k/v, attention, the MLP's
     * two ffn-wide products, and a chunk of logits. */
    double act = 4.0 * tokens * (6.0 * dim + 3.0 * ffn) + 4.0 * (double)len * len * heads + 4.0 * 256 * vocab;
    double budget = 1.1 * (one + act);
    if (json) {
        printf("{\"file\":\"%s\",\"file_bytes\":%.0f,\"layers\":%d,\"dim\":%d,\"ffn\":%d,\"vocab\":%d,"
               "\"tokens\":%d,\"write_seconds\":%.2f,\"write_gb_s\":%.3f,\"analysis_seconds\":%.2f,"
               "\"tokens_per_s\":%.2f,\"peak_rss_bytes\":%.0f,\"one_layer_fp32_bytes\":%.0f,"
               "\"activation_bytes_est\":%.0f,\"budget_bytes\":%.0f,\"ratio_to_budget\":%.3f,"
               "\"rss_before_analysis\":%.0f,\"rss_after_write\":%.0f}\n",
               path, (double)st.st_size, layers, dim, ffn, vocab, tokens, t_write,
               wrote ? (double)st.st_size / t_write / 1e9 : 0.0, t_an, tokens / t_an, peak, one, act, budget,
               peak / budget, rss_before, rss_after_write);
    } else {
        printf("checkpoint            %s (%.2f GB)\n", path, (double)st.st_size / 1e9);
        if (wrote)
            printf("written in            %.1f s (%.2f GB/s), peak RSS while writing %.0f MB\n", t_write,
                   (double)st.st_size / t_write / 1e9, rss_after_write / 1e6);
        printf("analysis              %d tokens in %.1f s (%.2f tokens/s, 2 threads, cosines only)\n", tokens,
               t_an, tokens / t_an);
        printf("peak RSS              %.0f MB\n", peak / 1e6);
        printf("one layer in fp32     %.0f MB (output head %.0f MB)\n", layer_f32 / 1e6, head_f32 / 1e6);
        printf("activations (est.)    %.0f MB\n", act / 1e6);
        printf("goal                  <= %.0f MB (one layer + activations + 10%%): %s (%.2fx)\n", budget / 1e6,
               peak <= budget ? "met" : "missed", peak / budget);
    }
    tc_analysis_free(&a);
    tc_model_close(&m);
    free(tok);
    if (wrote && !keep)
        unlink(path);
    return 0;
}
