/* The tools under mpirun (-DTC_MPI=ON): with 1, 2, 3 and 4 ranks on this
 * machine (--oversubscribe), the analysis report, the pruned checkpoint, the
 * quantized files (calibrated and affine-calibrated), --sensitivity's ranking,
 * the perplexity and --compare's figures are the same bytes as those of the
 * tools built without MPI (tc-*-one).  And the faults: a rank that cannot
 * open the model fails the whole job with one line naming it; a rank killed
 * with SIGKILL, or mpirun interrupted with SIGINT, leaves no output and no
 * temporary file.  Skipped when mpirun or the assets are absent. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char mpirun[1024], bin[1024], dir[512];
static char A_gguf[1024], A_deep[1024], A_stories[1024], A_gut[1024];

/* The "seconds" line of a report is the wall time: everything else must match. */
static char *without_seconds(char *s)
{
    char *p = s ? strstr(s, "\"seconds\":") : NULL;
    if (p) {
        char *e = strchr(p, '\n');
        memmove(p, e ? e : p + strlen(p), strlen(e ? e : p + strlen(p)) + 1);
    }
    return s;
}

static int same_files(const char *a, const char *b, int strip_seconds)
{
    size_t na, nb;
    uint8_t *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int same = x && y;
    if (same && strip_seconds) {
        without_seconds((char *)x);
        without_seconds((char *)y);
        same = strcmp((char *)x, (char *)y) == 0;
    } else if (same) {
        same = na == nb && memcmp(x, y, na) == 0;
    }
    if (!same)
        fprintf(stderr, "differ: %s %s\n", a, b);
    free(x);
    free(y);
    return same;
}

/* Files in dir (and its run folders n0 .. n4) whose names contain ".tmp.":
 * temporaries left behind. */
static int temporaries(void)
{
    int n = 0;
    for (int k = -1; k <= 4; k++) {
        char path[600];
        if (k < 0)
            snprintf(path, sizeof path, "%s", dir);
        else
            snprintf(path, sizeof path, "%s/n%d", dir, k);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strstr(e->d_name, ".tmp."))
                n++;
        if (d)
            closedir(d);
    }
    return n;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs `tool args` without MPI (N = 0) or under mpirun -np N in the folder
 * dir/nN (so that outputs named alike print alike), stdout into out_path;
 * returns the exit status. */
static int run_tool(int N, const char *tool, const char *args, const char *out_path)
{
    char cmd[16384];
    if (N == 0)
        snprintf(cmd, sizeof cmd, "cd %s/n0 && %s/%s-one %s > %s", dir, bin, tool, args, out_path);
    else
        snprintf(cmd, sizeof cmd, "cd %s/n%d && %s --oversubscribe -np %d %s/%s %s > %s", dir, N, mpirun, N, bin,
                 tool, args, out_path);
    char *o = NULL;
    int rc = tu_run(cmd, &o);
    free(o);
    if (rc != 0)
        fprintf(stderr, "exit %d: %s\n", rc, cmd);
    return rc;
}

/* One case: the tool's stdout and its output file (args hold OUT where the
 * file goes) for N = 0 (without MPI) and 1..4 ranks, compared. */
static void identical(const char *name, const char *tool, const char *args_fmt, int strip_seconds, int cmp_stdout)
{
    char ref_out[1024], ref_file[1024];
    for (int N = 0; N <= 4; N++) {
        char args[4096], stdout_path[1024], file[1024];
        snprintf(file, sizeof file, "%s/n%d/%s", dir, N, name);
        snprintf(stdout_path, sizeof stdout_path, "%s/n%d/%s.stdout", dir, N, name);
        snprintf(args, sizeof args, args_fmt, name);
        CHECK_MSG(run_tool(N, tool, args, stdout_path) == 0, "%s with %d ranks", name, N);
        if (N == 0) {
            snprintf(ref_out, sizeof ref_out, "%s", stdout_path);
            snprintf(ref_file, sizeof ref_file, "%s", file);
            continue;
        }
        if (cmp_stdout)
            CHECK_MSG(same_files(ref_out, stdout_path, 0), "%s: stdout with %d ranks", name, N);
        if (exists(ref_file))
            CHECK_MSG(same_files(ref_file, file, strip_seconds), "%s: output with %d ranks", name, N);
    }
    CHECK(temporaries() == 0);
}

/* A /proc file (whose size reads as 0) as malloc'd bytes, NUL-terminated. */
static char *read_proc(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16;
    char *b = malloc(cap + 1);
    size_t k;
    while (b && (k = fread(b + *n, 1, cap - *n, f)) > 0) {
        *n += k;
        if (*n == cap) {
            char *g = realloc(b, 2 * cap + 1);
            if (!g) {
                free(b);
                b = NULL;
                break;
            }
            b = g;
            cap *= 2;
        }
    }
    fclose(f);
    if (b)
        b[*n] = 0;
    return b;
}

/* The pid of rank `rank` of a job started by mpirun, found by its
 * environment; 0 when none (yet). */
static pid_t find_rank(const char *tool, int rank)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = 0;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (d && !found && (e = readdir(d))) {
        char path[300];
        pid_t pid = (pid_t)atol(e->d_name);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        size_t n;
        char *cmd = read_proc(path, &n);
        for (size_t i = 0; cmd && i < n; i++) /* the arguments, NUL-separated */
            if (!cmd[i])
                cmd[i] = ' ';
        int ours = cmd && strstr(cmd, tool) && strstr(cmd, dir) && !strstr(cmd, "mpirun");
        free(cmd);
        if (!ours)
            continue;
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        char *env = read_proc(path, &n);
        for (size_t i = 0; env && i < n; i += strlen(env + i) + 1)
            if (!strcmp(env + i, want))
                found = pid;
        free(env);
    }
    if (d)
        closedir(d);
    return found;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* mpirun -np 2 tc-prune on deep16 with measured importance, interrupted by
 * `sig` sent to rank 1 (SIGKILL) or to mpirun (SIGINT) once rank 1 runs:
 * the job fails, and no output or temporary is left. */
static void interrupted(int sig)
{
    char out[1024], errp[1024], cmd[16384];
    snprintf(out, sizeof out, "%s/killed-%d.gguf", dir, sig);
    snprintf(errp, sizeof errp, "%s/killed-%d.stderr", dir, sig);
    snprintf(cmd, sizeof cmd,
             "exec %s --oversubscribe -np 2 %s/tc-prune %s --calib %s --samples 8 --seq-len 128 --drop-attn 2 "
             "--criterion dnll --format gguf -o %s -q 2> %s",
             mpirun, bin, A_deep, A_gut, out, errp);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    pid_t victim = 0;
    for (int i = 0; i < 6000 && !victim; i++) {
        victim = find_rank("tc-prune", 1);
        if (!victim)
            sleep_ms(10);
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            CHECK_MSG(0, "the job ended before rank 1 was seen");
            return;
        }
    }
    CHECK(victim > 0);
    if (sig == SIGKILL)
        kill(victim, SIGKILL);
    else
        kill(pid, sig);
    int st = 0;
    waitpid(pid, &st, 0);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("signal %d: mpirun exit %d\n", sig, code);
    CHECK_MSG(code != 0, "signal %d: the job succeeded", sig);
    CHECK(!exists(out));
    CHECK(temporaries() == 0);
    /* Nothing of the job left running. */
    sleep_ms(200);
    CHECK(find_rank("tc-prune", 0) == 0 && find_rank("tc-prune", 1) == 0);
}

int main(void)
{
    const char *m = getenv("TC_MPIRUN");
    if (!m || !*m || access(m, X_OK) != 0)
        return tu_skip("mpirun not found");
    snprintf(mpirun, sizeof mpirun, "%s", m);
    snprintf(bin, sizeof bin, "%s", tu_bin());
    if (!tu_asset(A_gguf, sizeof A_gguf, "models/stories260K/stories260K.gguf") ||
        !tu_asset(A_deep, sizeof A_deep, "models/deep16-hf") ||
        !tu_asset(A_stories, sizeof A_stories, "text/tinystories_valid_1000.txt") ||
        !tu_asset(A_gut, sizeof A_gut, "text/gutenberg_heldout.txt"))
        return tu_skip("assets absent");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    /* Open MPI refuses root unless told; CI runs as root. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    for (int N = 0; N <= 4; N++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/n%d", dir, N);
        CHECK(mkdir(sub, 0700) == 0);
    }
    char args[4096];

    /* The analysis: cosines, measured importance, heads masked, tokens
     * dropped; the report and the printed table. */
    snprintf(args, sizeof args,
             "%s --calib %s --samples 7 --seq-len 48 --head-samples 3 --token-samples 3 --threads 1 --report %%s "
             "--force -q",
             A_gguf, A_stories);
    identical("260K.json", "tc-analyze", args, 1, 1);
    snprintf(args, sizeof args,
             "%s --calib %s --samples 5 --seq-len 32 --head-samples 0 --token-samples 0 --threads 1 --report %%s "
             "--force -q",
             A_deep, A_gut);
    identical("deep16.json", "tc-analyze", args, 1, 1);
    /* Pruning by measured loss (the analysis inside), a GGUF out. */
    snprintf(args, sizeof args,
             "%s --calib %s --samples 6 --seq-len 48 --drop-attn 2 --criterion dnll --threads 1 -o %%s --force -q",
             A_gguf, A_stories);
    identical("pruned.gguf", "tc-prune", args, 0, 1);
    /* Perplexity. */
    snprintf(args, sizeof args, "%s --ppl %s --samples 9 --seq-len 64 --threads 1 -q", A_gguf, A_stories);
    identical("ppl", "tc-run", args, 0, 1);
    /* Calibrated ternary quantization, then --compare on the file. */
    snprintf(args, sizeof args,
             "%s --method calibrated --calib %s --samples 6 --seq-len 48 --threads 1 -o %%s --force -q", A_gguf,
             A_stories);
    identical("q.tcq", "tc-quantize", args, 0, 0); /* its summary states the seconds */
    snprintf(args, sizeof args,
             "%s --method calibrated --sequential --format gguf-tq2 --calib %s --samples 5 --seq-len 40 --threads 1 "
             "-o %%s --force -q",
             A_gguf, A_stories);
    identical("q.gguf", "tc-quantize", args, 0, 0);
    /* affine-calibrated: its stages' H, D and G folded window by window, on
     * 3 windows so that 4 ranks leave one without any; groups of 32 and
     * --act-order, and a GGUF (Q4_1 offsets). */
    snprintf(args, sizeof args,
             "%s --method affine-calibrated --group 32 --act-order --calib %s --samples 3 --seq-len 40 --threads 1 "
             "-o %%s --force -q",
             A_gguf, A_stories);
    identical("qa.tcq", "tc-quantize", args, 0, 0);
    snprintf(args, sizeof args,
             "%s --method affine-calibrated --group 32 --format gguf-tq2 --calib %s --samples 5 --seq-len 32 "
             "--threads 1 -o %%s --force -q",
             A_gguf, A_stories);
    identical("qa.gguf", "tc-quantize", args, 0, 0);
    /* --target-bpw: each weight's cost as ternary, Q4_0 and Q8_0 summed over
     * windows in window order, the same assignment on every rank; packed and
     * GGUF (where stories260K's 64-wide rows, no whole TQ2_0 block, make
     * ternary Q4_0 and the budget starts at 4.15 bits). */
    snprintf(args, sizeof args,
             "%s --method calibrated --target-bpw 3 --calib %s --samples 3 --seq-len 40 --threads 1 -o %%s --force -q",
             A_gguf, A_stories);
    identical("qm.tcq", "tc-quantize", args, 0, 0);
    snprintf(args, sizeof args,
             "%s --method calibrated --target-bpw 5 --format gguf-tq2 --calib %s --samples 3 --seq-len 40 "
             "--threads 1 -o %%s --force -q",
             A_gguf, A_stories);
    identical("qm.gguf", "tc-quantize", args, 0, 0);
    /* --sensitivity: each weight's KL summed over windows in window order;
     * its JSON on stdout is all it writes. */
    snprintf(args, sizeof args, "%s --sensitivity --method affine --calib %s --samples 3 --seq-len 40 --threads 1 "
             "--json -q",
             A_gguf, A_stories);
    identical("sensitivity", "tc-quantize", args, 0, 1);
    snprintf(args, sizeof args, "%s/n0/q.tcq --compare %s --eval %s --samples 7 --seq-len 64 --threads 1 -q", dir,
             A_gguf, A_stories);
    identical("compare", "tc-run", args, 0, 1);

    /* A rank that cannot open the model: every rank fails, one line names
     * rank 1 and the file, no report is left. */
    {
        char out[1024], errp[1024], cmd[16384], missing[1024];
        snprintf(out, sizeof out, "%s/missing.json", dir);
        snprintf(errp, sizeof errp, "%s/missing.stderr", dir);
        snprintf(missing, sizeof missing, "%s/no-such-model.gguf", dir);
        const char *rest = "--samples 4 --seq-len 32 --threads 1 -q --report";
        snprintf(cmd, sizeof cmd, "%s --oversubscribe -np 1 %s/tc-analyze %s --calib %s %s %s : -np 1 %s/tc-analyze %s "
                 "--calib %s %s %s 2> %s",
                 mpirun, bin, A_gguf, A_stories, rest, out, bin, missing, A_stories, rest, out, errp);
        char *o = NULL;
        int rc = tu_run(cmd, &o);
        free(o);
        CHECK(rc != 0);
        CHECK(!exists(out));
        CHECK(temporaries() == 0);
        char *e = tu_slurp(errp);
        char want[1200];
        snprintf(want, sizeof want, "tc-analyze: rank 1: %s", missing);
        CHECK_MSG(e && strstr(e, want), "stderr: %s", e ? e : "(none)");
        /* Our line once, not once per rank. */
        int lines = 0;
        for (const char *p = e; p && (p = strstr(p, "tc-analyze:")); p++)
            lines++;
        CHECK_MSG(lines == 1, "%d lines of tc-analyze", lines);
        printf("missing model on rank 1: exit %d, stderr starts: %.120s\n", rc, e ? e : "");
        free(e);
    }
    interrupted(SIGKILL);
    interrupted(SIGINT);
    return tu_finish("test_mpi");
}
