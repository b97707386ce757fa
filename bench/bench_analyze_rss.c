/* Memory of the analysis on a large checkpoint: the forward pass converts one
 * layer at a time, so peak resident memory should be one layer in fp32 plus
 * the activations, not the model.
 *
 *   bench_analyze_rss [--path FILE] [--layers N] [--dim N] [--ffn N] [--heads N]
 *                     [--vocab N] [--tokens N] [--threads N] [--trace FILE] [--keep] [--json]
 *
 * --trace writes every sample of resident memory during the analysis as
 * "seconds VmRSS RssAnon RssFile" (bytes), one line each.
 *
 * Defaults: a 7B-shaped F16 GGUF (32 layers, dim 4096, ffn 11008, 32 heads,
 * vocab 32000; 13.2 GB) written with the synthetic generator to
 * /tmp/tc-bench-7b.gguf (reused when present; removed unless --keep), then
 * analysed (cosines only) on 2 sequences of --tokens/2 tokens.
 *
 * The peak is VmHWM, restarted just before the analysis (so the writer's own
 * peak is not counted), and the goal is the issue's: at most one layer in fp32
 * (or the output head, if larger) plus the activations, plus 10 %.  The
 * activations are counted buffer by buffer as the pass and the analysis
 * allocate them (activation_bytes). */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* ---- Sampling what is resident -------------------------------------------------
 * getrusage only gives the peak; a thread reading /proc/self/status every
 * few milliseconds also says what the peak was made of (anonymous memory vs
 * mapped file pages) and where in the analysis it happened. */

typedef struct rss_sample {
    double rss, anon, file, shmem; /* bytes */
    double t;                      /* seconds into the analysis */
} rss_sample;

typedef struct rss_sampler {
    pthread_t tid;
    atomic_int stop;
    rss_sample peak;     /* the sample with the largest VmRSS */
    double max_anon, max_file;
    long n_samples;
    double t0;           /* when sampling began */
    FILE *trace;         /* every sample, when asked for */
} rss_sampler;

static double status_kb(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? 1024.0 * strtod(p + strlen(key), NULL) : 0.0;
}

static int read_status(rss_sample *s)
{
    char buf[8192];
    FILE *f = fopen("/proc/self/status", "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    s->rss = status_kb(buf, "VmRSS:");
    s->anon = status_kb(buf, "RssAnon:");
    s->file = status_kb(buf, "RssFile:");
    s->shmem = status_kb(buf, "RssShmem:");
    return 0;
}

static void *sample_loop(void *arg)
{
    rss_sampler *sm = arg;
    struct timespec ts = {0, 2000000};
    while (!atomic_load(&sm->stop)) {
        rss_sample s;
        if (read_status(&s) == 0) {
            s.t = now() - sm->t0;
            if (sm->trace)
                fprintf(sm->trace, "%.3f %.0f %.0f %.0f\n", s.t, s.rss, s.anon, s.file);
            if (s.rss > sm->peak.rss)
                sm->peak = s;
            sm->max_anon = s.anon > sm->max_anon ? s.anon : sm->max_anon;
            sm->max_file = s.file > sm->max_file ? s.file : sm->max_file;
            sm->n_samples++;
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static double peak_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

/* VmHWM: the peak since the last reset through clear_refs. */
static double hwm_bytes(void)
{
    char buf[8192];
    FILE *f = fopen("/proc/self/status", "rb");
    if (!f)
        return 0.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return status_kb(buf, "VmHWM:");
}

static size_t clamp_size(size_t v, size_t lo, size_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* What the cosine analysis holds besides weights, buffer by buffer as
 * forward.c and analysis.c allocate them: per token the residual stream,
 * the normed rows, Q, K, V and the attention output, the stored X and H, the
 * positions, targets and two per-token sums; the MLP's gate and up products
 * and the logits for one chunk of tokens each; per thread one attention
 * tile of 64 queries (plus a row) against the longest sequence; the RoPE
 * table. */
static double activation_bytes(const tc_config *c, size_t n, size_t len, int threads)
{
    double qdim = (double)c->n_heads * c->head_dim, kvdim = (double)c->n_kv_heads * c->head_dim;
    double per_token = 4.0 * (2.0 * c->dim + 2.0 * qdim + 2.0 * kvdim + 2.0 * c->dim) + 4 + 4 + 16;
    size_t mlp_chunk = clamp_size(((size_t)1 << 23) / (size_t)c->ffn_dim, 16, n);
    size_t logit_chunk = clamp_size(((size_t)1 << 24) / (size_t)c->vocab_size, 16, 8192);
    logit_chunk = logit_chunk < n ? logit_chunk : n;
    return per_token * (double)n + 4.0 * 2.0 * (double)mlp_chunk * c->ffn_dim +
           4.0 * (double)logit_chunk * c->vocab_size + 4.0 * threads * 65.0 * (double)len +
           4.0 * (double)len * c->head_dim;
}

int main(int argc, char **argv)
{
    /* As the tools do (tools/cli.c): freed layers stay in the heap for the next one. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    const char *path = "/tmp/tc-bench-7b.gguf";
    int layers = 32, dim = 4096, ffn = 11008, heads = 32, vocab = 32000, tokens = 256, keep = 0, json = 0;
    int threads = 2;
    const char *trace = NULL;
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
        else if (v && !strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (v && !strcmp(a, "--trace")) trace = argv[++i];
        else {
            fprintf(stderr, "usage: bench_analyze_rss [--path FILE] [--layers N] [--dim N] [--ffn N] "
                            "[--heads N] [--vocab N] [--tokens N] [--threads N] [--trace FILE] [--keep] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || tokens < 2 || layers < 1) {
        fprintf(stderr, "bench_analyze_rss: need --threads >= 1, --tokens >= 2, --layers >= 1\n");
        return 2;
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
        /* The writer's freed buffers stay in this process's heap (the
         * mallopt above); give them back, or they would count in the
         * analysis's resident set though the analysis never used them. */
        malloc_trim(0);
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
    rss_sample before;
    read_status(&before);
    /* Writing "5" to clear_refs restarts VmHWM, so the peak below is the
     * analysis's own, not the writer's. */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    int hwm_reset = cr && fputs("5", cr) >= 0;
    if (cr && fclose(cr) != 0)
        hwm_reset = 0;
    rss_sampler sm;
    memset(&sm, 0, sizeof sm);
    atomic_init(&sm.stop, 0);
    sm.t0 = now();
    sm.trace = trace ? fopen(trace, "w") : NULL;
    int sampling = pthread_create(&sm.tid, NULL, sample_loop, &sm) == 0;
    tc_analyze_opts o = {.n_threads = threads, .no_measure = 1, .no_head_stats = 1};
    tc_analysis a = {0};
    double t0 = now();
    int rc = tc_analyze(&m, tok, offsets, (size_t)n_seqs, &o, &a, &err);
    double t_an = now() - t0;
    if (sampling) {
        atomic_store(&sm.stop, 1);
        pthread_join(sm.tid, NULL);
    }
    if (sm.trace)
        fclose(sm.trace);
    if (rc) {
        fprintf(stderr, "bench_analyze_rss: %s\n", err.msg);
        return 1;
    }
    double peak = hwm_reset ? hwm_bytes() : peak_rss_bytes();
    const tc_config *c = &m.cfg;
    double layer_params = 2.0 * dim * dim + 2.0 * dim * (c->n_kv_heads * c->head_dim) + 3.0 * dim * ffn;
    double layer_f32 = 4.0 * layer_params, head_f32 = 4.0 * vocab * dim;
    double one = layer_f32 > head_f32 ? layer_f32 : head_f32;
    double act = activation_bytes(c, (size_t)tokens, (size_t)len, threads);
    double budget = 1.1 * (one + act);
    if (json) {
        printf("{\"file\":\"%s\",\"file_bytes\":%.0f,\"layers\":%d,\"dim\":%d,\"ffn\":%d,\"vocab\":%d,"
               "\"tokens\":%d,\"threads\":%d,\"write_seconds\":%.2f,\"write_gb_s\":%.3f,"
               "\"analysis_seconds\":%.2f,\"tokens_per_s\":%.2f,\"peak_rss_bytes\":%.0f,"
               "\"peak_is_analysis_only\":%d,\"one_layer_fp32_bytes\":%.0f,\"activation_bytes\":%.0f,"
               "\"budget_bytes\":%.0f,\"ratio_to_budget\":%.3f,\"rss_before_analysis\":%.0f,"
               "\"sampled_peak\":{\"rss\":%.0f,\"anon\":%.0f,\"file\":%.0f,\"shmem\":%.0f,"
               "\"seconds\":%.3f},\"sampled_max_anon\":%.0f,\"sampled_max_file\":%.0f,"
               "\"samples\":%ld,\"rss_after_write\":%.0f}\n",
               path, (double)st.st_size, layers, dim, ffn, vocab, tokens, threads, t_write,
               wrote ? (double)st.st_size / t_write / 1e9 : 0.0, t_an, tokens / t_an, peak, hwm_reset, one,
               act, budget, peak / budget, before.rss, sm.peak.rss, sm.peak.anon, sm.peak.file,
               sm.peak.shmem, sm.peak.t, sm.max_anon, sm.max_file, sm.n_samples, rss_after_write);
    } else {
        printf("checkpoint            %s (%.2f GB)\n", path, (double)st.st_size / 1e9);
        if (wrote)
            printf("written in            %.1f s (%.2f GB/s), peak RSS while writing %.0f MB\n", t_write,
                   (double)st.st_size / t_write / 1e9, rss_after_write / 1e6);
        printf("analysis              %d tokens in %.1f s (%.2f tokens/s, %d threads, cosines only)\n", tokens,
               t_an, tokens / t_an, threads);
        printf("resident before       %.0f MB (anonymous %.0f, file %.0f)\n", before.rss / 1e6,
               before.anon / 1e6, before.file / 1e6);
        printf("peak RSS              %.0f MB%s\n", peak / 1e6,
               hwm_reset ? " (VmHWM reset before the analysis)" : " (process lifetime)");
        printf("sampled peak          %.0f MB = anonymous %.0f + file %.0f + shmem %.0f, %.1f s into the "
               "analysis (%ld samples; max anonymous %.0f, max file %.0f)\n",
               sm.peak.rss / 1e6, sm.peak.anon / 1e6, sm.peak.file / 1e6, sm.peak.shmem / 1e6, sm.peak.t,
               sm.n_samples, sm.max_anon / 1e6, sm.max_file / 1e6);
        printf("one layer in fp32     %.0f MB (output head %.0f MB)\n", layer_f32 / 1e6, head_f32 / 1e6);
        printf("activations           %.0f MB\n", act / 1e6);
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
