/* Prompt processing and decoding speed of a packed model file, measured as
 * llama-bench measures them, so that the two can be set side by side.
 *
 *   bench_trun MODEL.tcq [--threads N] [--prompt P] [--gen G] [--reps R]
 *              [--kernel PATH] [--json]
 *
 * pp: P random tokens (default 128) fed from an empty cache in one call
 * (the runner's groups of 16), logits of the last; tg: G tokens (default 32)
 * decoded one at a time from an empty cache, each token the argmax of the
 * previous logits.  Each of R repetitions (default 3) times both; reported:
 * the mean and the spread of the tokens/s, the load average before the run,
 * the process's CPU time over wall time x threads (below 100 %: other
 * processes had the cores), and the best tokens per CPU-second x threads
 * (what the threads compute when they have their cores; with several threads
 * it counts the pool's spinning too).  One untimed token first maps the weights in. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tc/kernels.h"
#include "tc/tmodel.h"
#include "tc/trun.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static double load1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static void stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *kname = "auto";
    int threads = 1, prompt = 128, gen = 32, reps = 3, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
            prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
            gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kernel") && i + 1 < argc)
            kname = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: bench_trun MODEL.tcq [--threads N] [--prompt P] [--gen G] [--reps R] "
                            "[--kernel PATH] [--json]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (!path || threads < 1 || prompt < 1 || gen < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_trun: needs MODEL.tcq, and positive --threads, --prompt, --gen, --reps (<= 100)\n");
        return 2;
    }
    tc_error err = {{0}};
    tc_kpath kp;
    tc_tmodel m;
    if (tc_kpath_parse(kname, &kp, &err) || tc_tmodel_open(&m, path, &err)) {
        fprintf(stderr, "bench_trun: %s\n", err.msg);
        return 1;
    }
    int V = m.cfg.vocab_size, maxlen = (prompt > gen ? prompt : gen) + 1;
    tc_trun_opts o = {.mode = TC_TRUN_LUT, .kernel = kp, .n_threads = threads, .max_len = maxlen};
    tc_trun *r = NULL;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *toks = malloc((size_t)prompt * sizeof *toks);
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    double pp_cpu = 0, tg_cpu = 0; /* best tokens per CPU-second x threads */
    double l0 = load1();
    if (!logits || !toks || !pp || !tg || tc_trun_new(&r, &m, &o, &err) || tc_trun_step(r, 1, logits, &err)) {
        fprintf(stderr, "bench_trun: %s\n", err.msg[0] ? err.msg : "out of memory");
        return 1;
    }
    uint64_t seed = 12345;
    double c0 = cpu_s(), w0 = now();
    for (int k = 0; k < reps && !err.msg[0]; k++) {
        for (int i = 0; i < prompt; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            toks[i] = (int32_t)((seed >> 33) % (uint64_t)V);
        }
        tc_trun_reset(r);
        double t0 = now(), u0 = cpu_s();
        if (tc_trun_feed(r, toks, (size_t)prompt, logits, 0, &err))
            break;
        pp[k] = prompt / (now() - t0);
        pp_cpu = fmax(pp_cpu, prompt * threads / (cpu_s() - u0));
        tc_trun_reset(r);
        int32_t tok = toks[0];
        t0 = now();
        u0 = cpu_s();
        for (int i = 0; i < gen; i++) {
            if (tc_trun_step(r, tok, logits, &err))
                break;
            tok = argmax(logits, V);
        }
        tg[k] = gen / (now() - t0);
        tg_cpu = fmax(tg_cpu, gen * threads / (cpu_s() - u0));
    }
    double cpu = (cpu_s() - c0) / ((now() - w0) * threads);
    if (err.msg[0]) {
        fprintf(stderr, "bench_trun: %s\n", err.msg);
        return 1;
    }
    double ppm, pps, tgm, tgs;
    stats(pp, reps, &ppm, &pps);
    stats(tg, reps, &tgm, &tgs);
    const tc_tmodel_tensor *e = tc_tmodel_find(&m, -1, TC_G_EMBD);
    const char *lay = "?";
    for (size_t i = 0; i < m.n_tensors; i++)
        if (m.tensors[i].ternary) {
            lay = tc_tpack_layout_name(m.tensors[i].plan.layout);
            break;
        }
    tc_tmodel_size sz;
    tc_tmodel_size_of(&m, &sz);
    if (json)
        printf("{\"model\": \"%s\", \"layout\": \"%s\", \"embd\": \"%s\", \"bytes\": %llu, \"kernel\": \"%s\", "
               "\"threads\": %d, \"pp\": %d, \"pp_tps\": %.3f, \"pp_sd\": %.3f, \"tg\": %d, \"tg_tps\": %.3f, "
               "\"tg_sd\": %.3f, \"pp_tps_cpu\": %.3f, \"tg_tps_cpu\": %.3f, \"reps\": %d, \"load1\": %.2f, \"cpu\": %.3f}\n",
               path, lay, e ? tc_dtype_name(e->dtype) : "?", (unsigned long long)sz.bytes,
               tc_kpath_name(tc_trun_kernels(r)->path), threads, prompt, ppm, pps, gen, tgm, tgs, pp_cpu, tg_cpu, reps, l0, cpu);
    else
        printf("%s (%s, embd %s, %.0f MB) %s, %d thread(s): pp%d %.2f +- %.2f t/s, tg%d %.2f +- %.2f t/s "
               "(per CPU-second: pp %.2f, tg %.2f; load %.2f, cpu %.0f %%)\n",
               path, lay, e ? tc_dtype_name(e->dtype) : "?", sz.bytes / 1e6, tc_kpath_name(tc_trun_kernels(r)->path),
               threads, prompt, ppm, pps, gen, tgm, tgs, pp_cpu, tg_cpu, l0, 100 * cpu);
    tc_trun_free(r);
    tc_tmodel_close(&m);
    free(logits), free(toks), free(pp), free(tg);
    return 0;
}
