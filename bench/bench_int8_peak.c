/* The int8 multiply-add peak of this CPU: a loop of nothing but the widest
 * int8 multiply-add instruction it has, on independent registers, so that
 * its throughput (not latency, not memory) is what is timed.
 *
 *   bench_int8_peak [--seconds S] [--threads N] [--json]
 *
 * Instruction: vpdpbusd zmm (AVX-512 VNNI, 64 multiply-adds: four u8 x s8
 * products summed into each int32 lane), else vpdpbusd ymm (AVX-VNNI, 32),
 * else vpmaddubsw ymm (AVX2, 32 multiply-adds: pairs of u8 x s8 products
 * summed into int16 lanes).  Twelve independent accumulators, unrolled,
 * inline assembly (the compiler can neither drop nor merge them).  Every
 * thread (1..N, default 1 and 2) runs the loop for S seconds (default 1)
 * and the best of 3 rounds counts; the rate per CPU-second the threads got
 * is given too, which is the core's rate when other processes share it.  Reported: multiply-adds per second and
 * int8 operations per second (a multiply-add is two operations: the figure a
 * prompt's rate is compared with, docs/RESULTS.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { I_NONE, I_MADDUBSW, I_VNNI256, I_VNNI512 } instr;

static const char *instr_name(instr i)
{
    static const char *n[] = {"none", "vpmaddubsw ymm (AVX2)", "vpdpbusd ymm (AVX-VNNI)",
                              "vpdpbusd zmm (AVX-512 VNNI)"};
    return n[i];
}

/* multiply-adds per instruction */
static int macs_of(instr i)
{
    return i == I_VNNI512 ? 64 : 32;
}

static instr best_instr(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        int avx512f = (b >> 16) & 1, avx512vnni = (c >> 11) & 1;
        if (avx512f && avx512vnni && __builtin_cpu_supports("avx512f"))
            return I_VNNI512;
        unsigned a1, b1, c1, d1;
        if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && ((a1 >> 4) & 1))
            return I_VNNI256;
    }
    if (__builtin_cpu_supports("avx2"))
        return I_MADDUBSW;
#endif
    return I_NONE;
}

#define ITERS 4096L /* per timing check: 12 instructions each */

#if defined(__x86_64__)
#define R12(op, a, b)                                                                                  \
    op " " a ", " b ", %%" "ymm4\n\t" op " " a ", " b ", %%ymm5\n\t" op " " a ", " b ", %%ymm6\n\t"        \
    op " " a ", " b ", %%ymm7\n\t" op " " a ", " b ", %%ymm8\n\t" op " " a ", " b ", %%ymm9\n\t"           \
    op " " a ", " b ", %%ymm10\n\t" op " " a ", " b ", %%ymm11\n\t" op " " a ", " b ", %%ymm12\n\t"        \
    op " " a ", " b ", %%ymm13\n\t" op " " a ", " b ", %%ymm14\n\t" op " " a ", " b ", %%ymm15\n\t"

__attribute__((target("avx2"))) static void loop_maddubsw(long n)
{
    __asm__ volatile("vpcmpeqb %%ymm0, %%ymm0, %%ymm0\n\t"
                     "vpabsb %%ymm0, %%ymm1\n\t"
                     "1:\n\t" R12("vpmaddubsw", "%%ymm0", "%%ymm1") "dec %0\n\t"
                     "jnz 1b\n\t"
                     "vzeroupper\n\t"
                     : "+r"(n)
                     :
                     : "xmm0", "xmm1", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15", "cc");
}

__attribute__((target("avxvnni"))) static void loop_vnni256(long n)
{
    __asm__ volatile("vpcmpeqb %%ymm0, %%ymm0, %%ymm0\n\t"
                     "vpabsb %%ymm0, %%ymm1\n\t"
                     "1:\n\t" R12("%{vex%} vpdpbusd", "%%ymm0", "%%ymm1") "dec %0\n\t"
                     "jnz 1b\n\t"
                     "vzeroupper\n\t"
                     : "+r"(n)
                     :
                     : "xmm0", "xmm1", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15", "cc");
}

#define Z12(op)                                                                                        \
    op " %%zmm0, %%zmm1, %%zmm4\n\t" op " %%zmm0, %%zmm1, %%zmm5\n\t" op " %%zmm0, %%zmm1, %%zmm6\n\t"   \
    op " %%zmm0, %%zmm1, %%zmm7\n\t" op " %%zmm0, %%zmm1, %%zmm8\n\t" op " %%zmm0, %%zmm1, %%zmm9\n\t"   \
    op " %%zmm0, %%zmm1, %%zmm10\n\t" op " %%zmm0, %%zmm1, %%zmm11\n\t" op " %%zmm0, %%zmm1, %%zmm12\n\t" \
    op " %%zmm0, %%zmm1, %%zmm13\n\t" op " %%zmm0, %%zmm1, %%zmm14\n\t" op " %%zmm0, %%zmm1, %%zmm15\n\t"

__attribute__((target("avx512f,avx512vnni"))) static void loop_vnni512(long n)
{
    __asm__ volatile("vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n\t"
                     "vpabsd %%zmm0, %%zmm1\n\t"
                     "1:\n\t" Z12("vpdpbusd") "dec %0\n\t"
                     "jnz 1b\n\t"
                     "vzeroupper\n\t"
                     : "+r"(n)
                     :
                     : "xmm0", "xmm1", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                       "xmm13", "xmm14", "xmm15", "cc");
}
#endif

typedef struct job {
    instr in;
    double seconds, macs_per_s, macs_per_cpu_s;
} job;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *run(void *arg)
{
    job *j = arg;
    long done = 0;
    double t0 = now(), t = t0, c0 = thread_cpu_s();
    while (t - t0 < j->seconds) {
#if defined(__x86_64__)
        if (j->in == I_VNNI512)
            loop_vnni512(ITERS);
        else if (j->in == I_VNNI256)
            loop_vnni256(ITERS);
        else
            loop_maddubsw(ITERS);
#endif
        done += ITERS;
        t = now();
    }
    j->macs_per_s = (double)done * 12.0 * macs_of(j->in) / (t - t0);
    j->macs_per_cpu_s = (double)done * 12.0 * macs_of(j->in) / (thread_cpu_s() - c0);
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    int json = 0, max_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            max_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_int8_peak [--seconds S] [--threads N] [--json]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (!(seconds > 0) || max_threads < 1 || max_threads > 256) {
        fprintf(stderr, "bench_int8_peak: --seconds must be positive, --threads 1..256\n");
        return 2;
    }
    instr in = best_instr();
    if (in == I_NONE) {
        fprintf(stderr, "bench_int8_peak: this CPU has no AVX2 or VNNI int8 multiply-add\n");
        return 1;
    }
    double load[1] = {-1};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf", &load[0]) != 1)
            load[0] = -1;
        fclose(lf);
    }
    if (json)
        printf("{\"instruction\": \"%s\", \"macs_per_instruction\": %d, \"load1\": %.2f, \"threads\": [", instr_name(in),
               macs_of(in), load[0]);
    else
        printf("int8 peak: %s, %d multiply-adds per instruction, 12 independent accumulators (load %.2f)\n",
               instr_name(in), macs_of(in), load[0]);
    for (int th = 1; th <= max_threads; th++) {
        double best = 0, best_cpu = 0;
        for (int round = 0; round < 3; round++) {
            job *jobs = calloc((size_t)th, sizeof *jobs);
            pthread_t *tid = calloc((size_t)th, sizeof *tid);
            for (int i = 0; i < th; i++) {
                jobs[i] = (job){in, seconds, 0, 0};
                pthread_create(&tid[i], NULL, run, &jobs[i]);
            }
            double sum = 0, sum_cpu = 0;
            for (int i = 0; i < th; i++) {
                pthread_join(tid[i], NULL);
                sum += jobs[i].macs_per_s;
                sum_cpu += jobs[i].macs_per_cpu_s;
            }
            best = sum > best ? sum : best;
            best_cpu = sum_cpu > best_cpu ? sum_cpu : best_cpu;
            free(jobs);
            free(tid);
        }
        if (json)
            printf("%s{\"threads\": %d, \"gmacs\": %.2f, \"gops\": %.2f, \"gops_per_cpu_s\": %.2f}", th > 1 ? ", " : "",
                   th, best * 1e-9, 2e-9 * best, 2e-9 * best_cpu);
        else
            printf("  %d thread%s: %7.1f G multiply-adds/s = %7.1f G int8 ops/s (per CPU-second of the threads: "
                   "%.1f G ops)\n", th, th > 1 ? "s" : " ", best * 1e-9, 2e-9 * best, 2e-9 * best_cpu);
    }
    if (json)
        printf("]}\n");
    return 0;
}
