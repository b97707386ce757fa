/* Forward-pass and analysis throughput, beside what cblas_sgemm alone
 * achieves on the same matrix shapes in the same run.
 *
 *   bench_forward [--model PATH] [--threads N] [--tokens N] [--seq N]
 *                 [--analysis-tokens N] [--repeat N] [--json]
 *
 * --analysis-tokens 0 skips the analysis timings (reported as 0).
 *
 * GFLOP/s are counted two ways.  "Linear" counts only the products with
 * weight matrices (2 * in * out per token for wq, wk, wv, wo, gate, up, down
 * and the head): the forward's time (which includes attention, norms, RoPE,
 * SwiGLU, the embedding lookup and the per-layer weight conversion) is
 * credited with exactly the FLOPs that cblas_sgemm performs on the same
 * shapes, so "forward linear / sgemm" is the share of the pass that runs at
 * sgemm speed (the goal is >= 0.70).  "All" adds causal attention, 4 * head_dim
 * per (query, key <= query) pair and head (QK^T and AV), which the sgemm
 * reference does not run.  The forward and the reference are timed
 * alternately --repeat times (default 3) and the best of each is reported:
 * on a shared machine the best run is the least disturbed one.
 *
 * Without --model it uses deep16 from the assets folder when present, else a
 * random model of the same shape.
 *
 * --families LIST (comma-separated, or "all") times instead the forward of
 * synthetic models of deep16's shape with each family's traits (llama,
 * mistral, qwen2, qwen3, gemma2, gemma3, phi3; tc_synth_family), best of
 * --repeat each, and prints
 * each one's tokens/s beside llama's.  Families with sliding windows get a
 * window of --window keys (default 128, half the default sequence) so that
 * the window changes the work. */
#include <cblas.h>
#include <stdint.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc/analyze.h"
#include "tc/forward.h"
#include "tc/synth.h"

typedef struct bench_opts {
    const char *model;
    const char *families;
    int window;
    int threads;
    size_t tokens, seq, analysis_tokens;
    int repeat;
    int json;
} bench_opts;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->tokens = 4096;
    o->seq = 256;
    o->analysis_tokens = 1024;
    o->repeat = 3;
    o->window = 128;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h") || strncmp(a, "--", 2) != 0 ||
            !strstr(" --model --threads --tokens --seq --repeat --analysis-tokens --families --window ", a)) {
            fprintf(stderr,
                    "usage: bench_forward [--model PATH] [--threads N] [--tokens N] [--seq N]\n"
                    "                     [--analysis-tokens N] [--repeat N] [--json]\n"
                    "       bench_forward --families all|LIST [--window N] [--threads N] [--tokens N]\n"
                    "                     [--seq N] [--repeat N] [--json]\n");
            return -1;
        }
        if (!v) {
            fprintf(stderr, "bench_forward: %s needs a value\n", a);
            return -1;
        }
        if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--tokens"))
            o->tokens = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seq"))
            o->seq = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(a, "--repeat"))
            o->repeat = atoi(v);
        else if (!strcmp(a, "--analysis-tokens"))
            o->analysis_tokens = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(a, "--families"))
            o->families = v;
        else if (!strcmp(a, "--window"))
            o->window = atoi(v);
        else {
            fprintf(stderr, "bench_forward: unknown option %s\n", a);
            return -1;
        }
        i++;
    }
    if (o->threads < 1 || o->seq < 2 || o->tokens < o->seq ||
        (o->analysis_tokens && o->analysis_tokens < o->seq) ||
        o->repeat < 1) {
        fprintf(stderr, "bench_forward: need threads >= 1, seq >= 2, tokens >= seq, repeat >= 1\n");
        return -1;
    }
    return 0;
}

/* deep16's shape (8 layers) with random weights. */
static int synthetic(tc_model *m, tc_error *err)
{
    tc_synth_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.cfg = tc_synth_config(8, 256, 8, 4, 688, 512);
    spec.cfg.max_seq_len = 512;
    spec.seed = 1;
    return tc_synth_model(m, &spec, err);
}

/* Uniform in [-1, 1): splitmix64. */
static float uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* deep16 in the assets folder (TC_ASSETS, else ../shared/assets), or NULL. */
static const char *deep16_path(char *buf, size_t n)
{
    const char *a = getenv("TC_ASSETS");
    snprintf(buf, n, "%s/models/deep16-hf", a && *a ? a : "../shared/assets");
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/config.json", buf);
    FILE *f = fopen(cfg, "rb");
    if (!f)
        return NULL;
    fclose(f);
    return buf;
}

static int open_model(const bench_opts *o, tc_model *m, char *buf, size_t n, const char **name,
                      tc_error *err)
{
    const char *path = o->model ? o->model : deep16_path(buf, n);
    if (path) {
        *name = path;
        return tc_model_open(m, path, err);
    }
    *name = "synthetic (deep16 shape, 8 layers)";
    return synthetic(m, err);
}

/* Sequences of o->seq tokens with pseudo-random ids. */
static void make_tokens(size_t n, size_t seq, int vocab, int32_t *tok, size_t *off, size_t *n_seqs)
{
    uint64_t s = 77;
    for (size_t t = 0; t < n; t++)
        tok[t] = (int32_t)((uniform(&s) + 1.0f) * 0.5f * (float)vocab) % vocab;
    *n_seqs = n / seq;
    for (size_t i = 0; i <= *n_seqs; i++)
        off[i] = i * seq;
}

typedef struct shape {
    const char *what;
    int m_out, k_in; /* y[T][out] = x[T][in] . w[out][in]^T */
} shape;

static int layer_shapes(const tc_config *c, shape *s)
{
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    shape all[8] = {{"wq", q, c->dim},        {"wk", kv, c->dim},
                    {"wv", kv, c->dim},       {"wo", c->dim, q},
                    {"w_gate", c->ffn_dim, c->dim}, {"w_up", c->ffn_dim, c->dim},
                    {"w_down", c->dim, c->ffn_dim}, {"output", c->vocab_size, c->dim}};
    memcpy(s, all, sizeof all);
    return 8;
}

/* FLOPs of one forward over n_seqs sequences of seq tokens. */
static double forward_flops(const tc_config *c, size_t n_seqs, size_t seq, double *linear)
{
    shape s[8];
    layer_shapes(c, s);
    double per_tok = 0.0;
    for (int i = 0; i < 7; i++)
        per_tok += 2.0 * s[i].m_out * s[i].k_in;
    double T = (double)n_seqs * seq;
    *linear = T * (per_tok * c->n_layers + 2.0 * s[7].m_out * s[7].k_in);
    double attn = 4.0 * c->head_dim * c->n_heads * (double)seq * (seq + 1) / 2.0;
    return *linear + attn * (double)n_seqs * c->n_layers;
}

/* cblas_sgemm alone on every linear shape of the pass, as many times as the
 * pass runs it: the ceiling for the forward's matrix work. */
static double sgemm_seconds(const tc_config *c, size_t T, int threads)
{
    shape s[8];
    layer_shapes(c, s);
    size_t maxk = 0, maxm = 0;
    for (int i = 0; i < 8; i++) {
        maxk = (size_t)s[i].k_in > maxk ? (size_t)s[i].k_in : maxk;
        maxm = (size_t)s[i].m_out > maxm ? (size_t)s[i].m_out : maxm;
    }
    /* Logits go in chunks, as the pass computes them. */
    size_t chunk = (size_t)(1u << 24) / (size_t)c->vocab_size;
    chunk = chunk < 16 ? 16 : chunk > 8192 ? 8192 : chunk;
    float *x = malloc(T * maxk * sizeof *x), *w = malloc(maxm * maxk * sizeof *w);
    float *y = malloc(T * maxm * sizeof *y);
    uint64_t seed = 3;
    for (size_t i = 0; i < T * maxk; i++)
        x[i] = uniform(&seed);
    for (size_t i = 0; i < maxm * maxk; i++)
        w[i] = uniform(&seed);
    openblas_set_num_threads(threads);
    double t0 = now();
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < 7; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, s[i].m_out, s[i].k_in,
                        1.0f, x, s[i].k_in, w, s[i].k_in, 0.0f, y, s[i].m_out);
    for (size_t t0c = 0; t0c < T; t0c += chunk) {
        size_t cn = T - t0c < chunk ? T - t0c : chunk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cn, s[7].m_out, s[7].k_in, 1.0f,
                    x, s[7].k_in, w, s[7].k_in, 0.0f, y, s[7].m_out);
    }
    double dt = now() - t0;
    free(x);
    free(w);
    free(y);
    return dt;
}

/* --families: each family's forward beside llama's, same shape, same tokens. */
static int bench_families(const bench_opts *o)
{
    static const char *const all[] = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"};
    const char *names[16];
    int n = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", o->families);
    if (!strcmp(list, "all")) {
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            names[n++] = all[i];
    } else {
        for (char *tok = strtok(list, ","); tok && n < 16; tok = strtok(NULL, ","))
            names[n++] = tok;
    }
    size_t n_seqs;
    int32_t *tok = malloc(o->tokens * sizeof *tok);
    size_t *off = malloc((o->tokens / o->seq + 1) * sizeof *off);
    make_tokens(o->tokens, o->seq, 512, tok, off, &n_seqs);
    tc_batch b = {tok, off, n_seqs};
    size_t T = off[n_seqs];
    double llama_rate = 0.0;
    int rc = 0;
    if (o->json)
        printf("{\"threads\": %d, \"repeat\": %d, \"seq\": %zu, \"tokens\": %zu, \"window\": %d, \"families\": [",
               o->threads, o->repeat, o->seq, T, o->window);
    else
        printf("synthetic deep16 shape (8 layers, dim 256, 8/4 heads, ffn 688, vocab 512); %zu sequences x %zu "
               "tokens; %d thread(s); best of %d; windows of %d keys\n%-10s %12s %10s\n",
               n_seqs, o->seq, o->threads, o->repeat, o->window, "family", "tokens/s", "vs llama");
    for (int i = 0; i < n && !rc; i++) {
        tc_synth_spec spec;
        memset(&spec, 0, sizeof spec);
        spec.seed = 1;
        tc_error ferr = {{0}};
        spec.cfg = tc_synth_config(8, 256, 8, 4, 688, 512);
        spec.cfg.max_seq_len = 4096;
        if (tc_synth_family(&spec.cfg, names[i], o->window, &ferr)) {
            fprintf(stderr, "bench_forward: %s\n", ferr.msg);
            rc = 2;
            break;
        }
        tc_model m;
        tc_error err = {{0}};
        if (tc_synth_model(&m, &spec, &err)) {
            fprintf(stderr, "bench_forward: %s\n", err.msg);
            rc = 1;
            break;
        }
        tc_forward_opts fo = {0};
        fo.n_threads = o->threads;
        double best = 1e300;
        int frc = tc_forward(&m, &b, &fo, &err); /* warm-up */
        for (int r = 0; !frc && r < o->repeat; r++) {
            double t0 = now();
            frc = tc_forward(&m, &b, &fo, &err);
            double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        tc_model_close(&m);
        if (frc) {
            fprintf(stderr, "bench_forward: %s\n", err.msg);
            rc = 1;
            break;
        }
        double rate = T / best;
        if (!strcmp(names[i], "llama"))
            llama_rate = rate;
        if (o->json)
            printf("%s{\"family\": \"%s\", \"tokens_per_s\": %.1f, \"vs_llama\": %.3f}", i ? ", " : "",
                   names[i], rate, llama_rate > 0 ? rate / llama_rate : 0.0);
        else if (llama_rate > 0)
            printf("%-10s %12.0f %9.2fx\n", names[i], rate, rate / llama_rate);
        else
            printf("%-10s %12.0f %10s\n", names[i], rate, "-");
    }
    if (o->json)
        printf("]}\n");
    free(tok);
    free(off);
    return rc;
}

int main(int argc, char **argv)
{
    /* As the tools do (tools/cli.c): freed layers stay in the heap for the next one. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    bench_opts o;
    if (parse(argc, argv, &o))
        return 2;
    if (o.families)
        return bench_families(&o);
    tc_model m;
    tc_error err = {{0}};
    const char *name;
    char path[1024];
    if (open_model(&o, &m, path, sizeof path, &name, &err)) {
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        return 1;
    }
    const tc_config *c = &m.cfg;
    if (o.seq > (size_t)c->max_seq_len && c->max_seq_len > 0)
        o.seq = (size_t)c->max_seq_len;
    size_t n_seqs, n_aseqs;
    int32_t *tok = malloc(o.tokens * sizeof *tok);
    size_t *off = malloc((o.tokens / o.seq + 1) * sizeof *off);
    make_tokens(o.tokens, o.seq, c->vocab_size, tok, off, &n_seqs);
    size_t T = off[n_seqs];
    tc_batch b = {tok, off, n_seqs};

    /* Warm-up, then the measured passes (weights converted per layer, as in
     * use), each followed by the reference. */
    tc_forward_opts fo = {0};
    fo.n_threads = o.threads;
    int rc = tc_forward(&m, &b, &fo, &err);
    double t0, t_fwd = 1e300, t_gemm = 1e300;
    for (int r = 0; !rc && r < o.repeat; r++) {
        t0 = now();
        rc = tc_forward(&m, &b, &fo, &err);
        double dt = now() - t0, dg = sgemm_seconds(c, T, o.threads);
        t_fwd = dt < t_fwd ? dt : t_fwd;
        t_gemm = dg < t_gemm ? dg : t_gemm;
    }
    double lin, flops = forward_flops(c, n_seqs, o.seq, &lin);

    /* Analysis: the baseline and every measured rerun. */
    size_t at = o.analysis_tokens < T ? o.analysis_tokens : T;
    n_aseqs = at / o.seq;
    tc_analysis a;
    memset(&a, 0, sizeof a);
    tc_analyze_opts ao = {0};
    ao.n_threads = o.threads;
    double t_an = 0.0, t_an_cos = 0.0;
    if (!rc && n_aseqs) {
        t0 = now();
        rc = tc_analyze(&m, tok, off, n_aseqs, &ao, &a, &err);
        t_an = now() - t0;
        tc_analysis_free(&a);
    }
    if (!rc && n_aseqs) {
        ao.no_measure = 1;
        t0 = now();
        rc = tc_analyze(&m, tok, off, n_aseqs, &ao, &a, &err);
        t_an_cos = now() - t0;
        tc_analysis_free(&a);
    }
    if (rc) {
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        free(tok);
        free(off);
        tc_model_close(&m);
        return 1;
    }
    double an_tokens = (double)off[n_aseqs];
    if (!n_aseqs) /* --analysis-tokens 0: not measured */
        t_an = t_an_cos = 1.0;
    double fwd_gflops = flops / t_fwd * 1e-9, lin_gflops = lin / t_fwd * 1e-9;
    double gemm_gflops = lin / t_gemm * 1e-9;
    if (o.json) {
        printf("{\"model\": \"%s\", \"threads\": %d, \"repeat\": %d, \"shape\": {\"layers\": %d, \"dim\": %d, "
               "\"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"ffn\": %d, \"vocab\": %d, "
               "\"seq\": %zu, \"tokens\": %zu},\n",
               name, o.threads, o.repeat, c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim,
               c->ffn_dim, c->vocab_size, o.seq, T);
        printf(" \"forward\": {\"seconds\": %.6f, \"tokens_per_s\": %.1f, \"gflop_per_s\": %.3f, "
               "\"linear_gflop_per_s\": %.3f},\n",
               t_fwd, T / t_fwd, fwd_gflops, lin_gflops);
        printf(" \"sgemm_same_shapes\": {\"seconds\": %.6f, \"gflop_per_s\": %.3f},\n", t_gemm,
               gemm_gflops);
        printf(" \"forward_linear_vs_sgemm\": %.3f, \"forward_all_vs_sgemm\": %.3f,\n",
               lin_gflops / gemm_gflops, fwd_gflops / gemm_gflops);
        printf(" \"analysis\": {\"tokens\": %.0f, \"measured_tokens_per_s\": %.1f, "
               "\"cosine_only_tokens_per_s\": %.1f}}\n",
               an_tokens, an_tokens / t_an, an_tokens / t_an_cos);
    } else {
        printf("model    %s\n", name);
        printf("shape    %d layers, dim %d, %d/%d heads x %d, ffn %d, vocab %d; %zu sequences x %zu "
               "tokens; %d thread(s); best of %d\n",
               c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim,
               c->vocab_size, n_seqs, o.seq, o.threads, o.repeat);
        printf("%-34s %12s %12s\n", "", "tokens/s", "GFLOP/s");
        printf("%-34s %12.0f %12.2f\n", "forward (all FLOPs)", T / t_fwd, fwd_gflops);
        printf("%-34s %12s %12.2f\n", "forward (linear FLOPs only)", "", lin_gflops);
        printf("%-34s %12s %12.2f\n", "cblas_sgemm, same shapes", "", gemm_gflops);
        printf("%-34s %12s %11.2fx\n", "forward linear / sgemm", "", lin_gflops / gemm_gflops);
        printf("%-34s %12s %11.2fx\n", "forward all / sgemm", "", fwd_gflops / gemm_gflops);
        printf("%-34s %12.0f\n", "analysis, measured importance", an_tokens / t_an);
        printf("%-34s %12.0f\n", "analysis, cosines only", an_tokens / t_an_cos);
    }
    free(tok);
    free(off);
    tc_model_close(&m);
    return 0;
}
