/* Failure safety of everything that writes: a run killed, interrupted or
 * starved of disk never leaves a partial target and never touches its input;
 * a target that cannot be created gives one clear sentence; the same seed
 * gives the same bytes.
 *
 * Slow writes are made by a fill callback that sleeps between tensors, in a
 * forked child the parent watches through the directory (the temporary
 * appears, then the parent kills or interrupts the child). */
#define _DEFAULT_SOURCE 1 /* tools/cli.c, included below, calls syscall() */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/synth.h"

/* The tools' signal handling, as the tools link it. */
#include "../tools/cli.c"

static char g_dir[512];

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void join(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in dir whose name starts with prefix and holds ".tmp.". */
static int count_temps(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

/* Size of the first temporary of prefix in g_dir (-1 when there is none). */
static long temp_size(const char *prefix)
{
    DIR *d = opendir(g_dir);
    if (!d)
        return -1;
    long size = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && size < 0) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp.")) {
            char p[1024];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            if (stat(p, &st) == 0)
                size = (long)st.st_size;
        }
    }
    closedir(d);
    return size;
}

static void remove_temps(const char *prefix)
{
    DIR *d = opendir(g_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp.")) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

static int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void put_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* ---- A slow copy of an input checkpoint ------------------------------------ */

typedef struct slow_copy {
    tc_model_copy copy;
    long delay; /* microseconds per tensor */
} slow_copy;

static int slow_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    slow_copy *s = ctx;
    sleep_us(s->delay);
    return tc_model_copy_fill(&s->copy, layer, which, dst, n, err);
}

/* Child: copies input to target as GGUF, slowly; exits 0 if it finished. */
static void child_copy(const char *input, const char *target, int with_signals)
{
    if (with_signals)
        cli_init();
    tc_model m;
    tc_error err = {{0}};
    if (tc_model_open(&m, input, &err)) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(3);
    }
    slow_copy s = {.copy = {.model = &m}, .delay = 20000};
    tc_model_src src = {.cfg = m.cfg, .dtype = TC_F32, .fill = slow_fill, .ctx = &s};
    int rc = tc_model_write(target, TC_FORMAT_GGUF, &src, &err);
    tc_model_close(&m);
    _exit(rc == TC_OK ? 0 : 4);
}

/* Waits until the temporary beside target has some bytes, up to 20 s. */
static int wait_for_temp(const char *prefix, pid_t child)
{
    for (int i = 0; i < 2000; i++) {
        if (temp_size(prefix) > 0)
            return 1;
        if (waitpid(child, NULL, WNOHANG) == child)
            return 0;
        sleep_us(10000);
    }
    return 0;
}

/* A killed (sig) slow copy; returns the child's wait status. */
static int interrupted_copy(const char *input, const char *target, const char *prefix, int sig,
                            int with_signals)
{
    pid_t pid = fork();
    if (pid == 0)
        child_copy(input, target, with_signals);
    CHECK(pid > 0);
    if (pid <= 0)
        return -1;
    int saw = wait_for_temp(prefix, pid);
    CHECK_MSG(saw, "no temporary appeared beside %s", target);
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

/* A small llama2.c input: 4 layers of dim 64, about 0.8 MB, 40 tensors. */
static void make_input(const char *path)
{
    tc_synth_spec s = {.cfg = tc_synth_config(4, 64, 4, 2, 172, 256), .seed = 5};
    tc_error err = {{0}};
    CHECK_OK(tc_synth_write(path, TC_FORMAT_LLAMA2C, TC_F32, &s, &err), &err);
}

static void test_sigkill(const char *input, const char *input_copy)
{
    /* A target that did not exist stays absent; the temporary stays behind
     * (nothing runs after SIGKILL), which is why its name marks it. */
    char target[600];
    join(target, sizeof target, "killed.gguf");
    int status = interrupted_copy(input, target, "killed.gguf", SIGKILL, 1);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(!exists(target));
    CHECK(count_temps(g_dir, "killed.gguf") == 1);
    remove_temps("killed.gguf");

    /* An old target keeps its bytes. */
    join(target, sizeof target, "old.gguf");
    put_text(target, "the old file\n");
    char old_copy[600];
    join(old_copy, sizeof old_copy, "old-copy");
    put_text(old_copy, "the old file\n");
    status = interrupted_copy(input, target, "old.gguf", SIGKILL, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(same_bytes(target, old_copy));
    remove_temps("old.gguf");
    CHECK(same_bytes(input, input_copy));
}

static void test_sigint(const char *input, const char *input_copy)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        char target[600];
        join(target, sizeof target, "interrupted.gguf");
        int status = interrupted_copy(input, target, "interrupted.gguf", sigs[i], 1);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 128 + sigs[i], "status %#x after signal %d",
                  status, sigs[i]);
        CHECK(!exists(target));
        CHECK_MSG(count_temps(g_dir, "interrupted.gguf") == 0, "signal %d left a temporary", sigs[i]);
        remove_temps("interrupted.gguf");
    }
    CHECK(same_bytes(input, input_copy));

    /* Without the handler the default action kills the process and the
     * temporary stays: the test above would notice a handler that did nothing. */
    char target[600];
    join(target, sizeof target, "plain.gguf");
    int status = interrupted_copy(input, target, "plain.gguf", SIGINT, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    CHECK(count_temps(g_dir, "plain.gguf") == 1);
    remove_temps("plain.gguf");
}

/* Does the temporary directory beside prefix hold a temporary file with
 * bytes in it (a weights file being written)? */
static int temp_dir_busy(const char *prefix)
{
    DIR *d = opendir(g_dir);
    if (!d)
        return 0;
    int busy = 0;
    struct dirent *e;
    while (!busy && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) || !strstr(e->d_name, ".tmp."))
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", g_dir, e->d_name);
        DIR *in = opendir(sub);
        struct dirent *f;
        while (in && !busy && (f = readdir(in)) != NULL) {
            char p[1400];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", sub, f->d_name);
            busy = strstr(f->d_name, ".tmp.") && stat(p, &st) == 0 && st.st_size > 0;
        }
        if (in)
            closedir(in);
    }
    closedir(d);
    return busy;
}

/* A Hugging Face directory interrupted while its weights are written: the
 * temporary directory beside the target goes, with the temporary file inside
 * it; the old directory at the target stays as it was. */
static void test_sigint_dir(const char *input)
{
    char target[600], config[700];
    join(target, sizeof target, "interrupted-hf");
    mkdir(target, 0755);
    snprintf(config, sizeof config, "%s/config.json", target);
    put_text(config, "{\"the\": \"old one\"}\n");
    pid_t pid = fork();
    if (pid == 0) {
        cli_init();
        tc_model m;
        tc_error err = {{0}};
        if (tc_model_open(&m, input, &err))
            _exit(3);
        slow_copy sc = {.copy = {.model = &m}, .delay = 20000};
        tc_model_src src = {.cfg = m.cfg, .dtype = TC_F32, .fill = slow_fill, .ctx = &sc};
        int rc = tc_model_write(target, TC_FORMAT_HF, &src, &err);
        _exit(rc == TC_OK ? 0 : 4);
    }
    int saw = 0;
    for (int i = 0; i < 2000 && !saw; i++) {
        saw = temp_dir_busy("interrupted-hf");
        if (!saw)
            sleep_us(10000);
    }
    CHECK_MSG(saw, "no temporary directory with a file being written appeared beside %s", target);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM, "status %#x", status);
    CHECK_MSG(count_temps(g_dir, "interrupted-hf") == 0, "SIGTERM left a temporary directory");
    char *text = tu_slurp(config);
    CHECK(text && strcmp(text, "{\"the\": \"old one\"}\n") == 0);
    free(text);
    CHECK(count_temps(target, "") == 0);
}

/* The finished file leaves no temporary and unregisters it (the handler then
 * has nothing to remove: the slots are free again). */
static void test_hooks_released(void)
{
    char target[600];
    join(target, sizeof target, "hooked.safetensors");
    cli_init();
    tc_synth_spec s = {.cfg = tc_synth_config(1, 8, 2, 1, 8, 16), .seed = 3};
    tc_error err = {{0}};
    for (int i = 0; i < CLI_MAX_TEMPS + 2; i++)
        CHECK_OK(tc_synth_write(target, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    int used = 0;
    for (int i = 0; i < CLI_MAX_TEMPS; i++)
        used += cli_temps[i].used != 0;
    CHECK(used == 0);
    CHECK(count_temps(g_dir, "hooked") == 0);
    tc_outfile_set_hooks(NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
}

/* The real tool: tc-analyze on a 16-layer model and a long text, interrupted
 * after a second (well before it could finish), exits with 130 and leaves
 * neither its report nor a temporary. */
static void test_tool_sigint(void)
{
    const char *bin = getenv("TC_BIN");
    char model[600], text[600], tool[600], report[600];
    if (!bin || !tu_asset(model, sizeof model, "models/deep16-hf/config.json") ||
        !tu_asset(text, sizeof text, "text/wikitext2_test_raw.txt")) {
        printf("tc-analyze interruption not tested: TC_BIN or the deep16-hf/wikitext2 assets are missing\n");
        return;
    }
    tu_asset(model, sizeof model, "models/deep16-hf");
    snprintf(tool, sizeof tool, "%s/tc-analyze", bin);
    join(report, sizeof report, "report.json");
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(tool, tool, "-q", "--samples", "64", "--report", report, model, text, (char *)NULL);
        _exit(127);
    }
    sleep_us(1000000);
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 130, "tc-analyze: status %#x after SIGINT", status);
    CHECK(!exists(report));
    CHECK(count_temps(g_dir, "report.json") == 0);
}

/* ---- Targets that cannot be written ---------------------------------------- */

static const struct { const char *ext; tc_format fmt; } FORMATS[] = {
    {"", TC_FORMAT_HF}, {".gguf", TC_FORMAT_GGUF}, {".bin", TC_FORMAT_LLAMA2C},
};

/* A target inside a regular file fails for root too (ENOTDIR). */
static void test_unwritable(void)
{
    char file[600];
    join(file, sizeof file, "a-file");
    put_text(file, "not a directory\n");
    tc_synth_spec s = {.cfg = tc_synth_config(1, 8, 2, 1, 8, 16), .seed = 3};
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++) {
        char target[700];
        snprintf(target, sizeof target, "%s/model%s", file, FORMATS[i].ext);
        tc_error err = {{0}};
        CHECK(tc_synth_write(target, FORMATS[i].fmt, TC_F32, &s, &err) == TC_ERR);
        CHECK_MSG(strstr(err.msg, "a-file/model") != NULL, "message: %s", err.msg);
        CHECK_MSG(strstr(err.msg, "Not a directory") != NULL, "message: %s", err.msg);
        CHECK(!exists(target));
    }
    char copy[600];
    join(copy, sizeof copy, "a-file-copy");
    put_text(copy, "not a directory\n");
    CHECK(same_bytes(file, copy));
}

/* Disk full, as RLIMIT_FSIZE makes it: writes beyond the limit fail with
 * EFBIG once SIGXFSZ is ignored.  Run in a child so the limit stays there. */
static void child_full(void)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 * 1024, 64 * 1024};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        _exit(77);
    tc_synth_spec s = {.cfg = tc_synth_config(2, 64, 4, 2, 172, 256), .seed = 9};
    int bad = 0;
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++) {
        char target[700], inner[800];
        snprintf(target, sizeof target, "%s/full%s", g_dir, FORMATS[i].ext);
        tc_error err = {{0}};
        int rc = tc_synth_write(target, FORMATS[i].fmt, TC_F32, &s, &err);
        if (rc != TC_ERR || !strstr(err.msg, "/full") || !strstr(err.msg, "too large")) {
            fprintf(stderr, "disk full, %s: rc %d, message: %s\n", target, rc, err.msg);
            bad = 1;
        }
        if (FORMATS[i].fmt == TC_FORMAT_HF) {
            /* The directory may exist; nothing in it may. */
            snprintf(inner, sizeof inner, "%s/config.json", target);
            bad |= exists(inner);
            snprintf(inner, sizeof inner, "%s/model.safetensors", target);
            bad |= exists(inner);
            bad |= count_temps(target, "") != 0;
        } else {
            bad |= exists(target);
        }
    }
    bad |= count_temps(g_dir, "full") != 0;
    _exit(bad);
}

static void test_disk_full(void)
{
    pid_t pid = fork();
    if (pid == 0)
        child_full();
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}

/* ---- Same seed, same bytes ------------------------------------------------- */

static int same_output(const char *a, const char *b, tc_format fmt)
{
    if (fmt != TC_FORMAT_HF)
        return same_bytes(a, b);
    static const char *const files[] = {"config.json", "model.safetensors"};
    int same = 1;
    for (size_t i = 0; i < 2; i++) {
        char x[800], y[800];
        snprintf(x, sizeof x, "%s/%s", a, files[i]);
        snprintf(y, sizeof y, "%s/%s", b, files[i]);
        same &= same_bytes(x, y);
    }
    return same;
}

static void test_deterministic(void)
{
    static const tc_dtype dtypes[] = {TC_F32, TC_F16, TC_BF16};
    for (size_t f = 0; f < sizeof FORMATS / sizeof FORMATS[0]; f++) {
        for (size_t d = 0; d < 3; d++) {
            if (FORMATS[f].fmt == TC_FORMAT_LLAMA2C && dtypes[d] != TC_F32)
                continue; /* llama2.c checkpoints are fp32 only */
            char a[600], b[600], c[600];
            snprintf(a, sizeof a, "%s/det-a-%zu%s", g_dir, d, FORMATS[f].ext);
            snprintf(b, sizeof b, "%s/det-b-%zu%s", g_dir, d, FORMATS[f].ext);
            snprintf(c, sizeof c, "%s/det-c-%zu%s", g_dir, d, FORMATS[f].ext);
            tc_synth_spec s = {.cfg = tc_synth_config(2, 32, 4, 2, 64, 64), .seed = 1234};
            s.cfg.tied_embeddings = 0;
            tc_error err = {{0}};
            CHECK_OK(tc_synth_write(a, FORMATS[f].fmt, dtypes[d], &s, &err), &err);
            CHECK_OK(tc_synth_write(b, FORMATS[f].fmt, dtypes[d], &s, &err), &err);
            s.seed++;
            CHECK_OK(tc_synth_write(c, FORMATS[f].fmt, dtypes[d], &s, &err), &err);
            CHECK_MSG(same_output(a, b, FORMATS[f].fmt), "%s and %s differ", a, b);
            CHECK_MSG(!same_output(a, c, FORMATS[f].fmt), "seeds 1234 and 1235 gave the same %s", c);
        }
    }
}

int main(void)
{
    if (!tu_tmpdir(g_dir, sizeof g_dir))
        return tu_skip("no temporary directory");
    char input[600], input_copy[600];
    join(input, sizeof input, "input.bin");
    join(input_copy, sizeof input_copy, "input-copy.bin");
    make_input(input);
    make_input(input_copy);
    CHECK(same_bytes(input, input_copy));

    test_deterministic();
    test_unwritable();
    test_disk_full();
    test_hooks_released();
    test_sigkill(input, input_copy);
    test_sigint_dir(input);
    test_sigint(input, input_copy);
    test_tool_sigint();
    if (!tu_failures) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return tu_finish("failsafe");
}
