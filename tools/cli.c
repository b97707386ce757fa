#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1 /* syscall */
#endif
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tc/calib.h"
#include "tc/hfdir.h"
#include "tc/info.h"
#include "tc/model_tokenizer.h"
#include "tc/model.h"
#include "tc/outfile.h"
#include "tc/version.h"
#include "tc/tmodel.h"

/* ---- Signals ----------------------------------------------------------------
 * The temporaries open right now, in fixed slots the handler can walk without
 * locks or allocation: a slot's path is complete before `used` is set, and
 * the handler only reads.  A writer holds one temporary at a time, so a few
 * slots are plenty; one that finds no free slot is simply not removed. */
#define CLI_MAX_TEMPS 16
#define CLI_TEMP_PATH 4096

static struct cli_temp {
    volatile sig_atomic_t used;
    char path[CLI_TEMP_PATH];
} cli_temps[CLI_MAX_TEMPS];

static void temp_created(void *ctx, const char *tmp)
{
    (void)ctx;
    if (strlen(tmp) >= CLI_TEMP_PATH)
        return;
    for (int i = 0; i < CLI_MAX_TEMPS; i++) {
        if (!cli_temps[i].used) {
            strcpy(cli_temps[i].path, tmp);
            cli_temps[i].used = 1;
            return;
        }
    }
}

static void temp_finished(void *ctx, const char *tmp)
{
    (void)ctx;
    for (int i = 0; i < CLI_MAX_TEMPS; i++)
        if (cli_temps[i].used && strcmp(cli_temps[i].path, tmp) == 0)
            cli_temps[i].used = 0;
}

/* Empties and removes a temporary directory (a Hugging Face output being
 * written) with async-signal-safe calls only: open, the getdents64 system
 * call, unlinkat, close, rmdir.  Its files are flat; a subdirectory (of an old
 * output being removed under the temporary's name) goes only when empty. */
static void remove_temp_dir(const char *path)
{
#ifdef SYS_getdents64
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0)
        return;
    /* Rounds until a read finds nothing left to remove: entries removed
     * while the directory is read may make a read skip others. */
    for (int round = 0, removed = 1; removed && round < 64; round++) {
        long n;
        char buf[4096] __attribute__((aligned(8)));
        removed = 0;
        lseek(fd, 0, SEEK_SET);
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                /* struct linux_dirent64: ino 8, off 8, reclen 2, type 1, name */
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *name = buf + off + 19;
                if (!(name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))))
                    if (unlinkat(fd, name, 0) == 0 || unlinkat(fd, name, AT_REMOVEDIR) == 0)
                        removed = 1;
                off += reclen;
            }
        }
    }
    close(fd);
#endif
    rmdir(path);
}

/* Only async-signal-safe calls: unlink, the directory removal above, _exit.
 * Files first, so a temporary directory is emptied of the temporaries inside
 * it before it goes. */
static void on_signal(int sig)
{
    int dirs = 0;
    for (int i = 0; i < CLI_MAX_TEMPS; i++)
        if (cli_temps[i].used && unlink(cli_temps[i].path) != 0 && errno != ENOENT)
            dirs = 1;
    for (int i = 0; dirs && i < CLI_MAX_TEMPS; i++)
        if (cli_temps[i].used)
            remove_temp_dir(cli_temps[i].path);
    _exit(128 + sig);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler run at a time */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_init(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    static const tc_outfile_hooks hooks = {temp_created, temp_finished, NULL};
    tc_outfile_set_hooks(&hooks);
    catch_signals();
}

/* The job to leave at exit: every return from a tool's main() after the ranks
 * agreed, on every rank alike. */
static tc_dist *cli_job;

static void leave_job(void)
{
    tc_dist_finish(cli_job);
}

void cli_dist_init(tc_dist *d, int *argc, char ***argv)
{
    tc_error err = {{0}};
    if (tc_dist_init(d, argc, argv, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(TC_EXIT_FAIL);
    }
    if (!d->mpi)
        return;
    cli_job = d;
    atexit(leave_job);
    catch_signals(); /* ours again, whatever MPI set up */
    if (d->rank != 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
    }
}

int cli_dist_check(const char *tool, tc_dist *d, int rc, tc_error *err)
{
    if (tc_dist_agree(d, rc, err, NULL) == TC_OK)
        return TC_EXIT_OK;
    return cli_fail(tool, err); /* on ranks other than 0, into /dev/null */
}

int cli_fail(const char *tool, const tc_error *err)
{
    fprintf(stderr, "%s: %s\n", tool, err->msg[0] ? err->msg : "failed");
    return TC_EXIT_FAIL;
}

int cli_usage_error(const char *tool, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", tool);
    return TC_EXIT_USAGE;
}

/* --info of a packed ternary model (.tcq). */
static int info_packed(const char *tool, const char *path, int json)
{
    tc_tmodel m;
    tc_error err = {{0}};
    if (tc_tmodel_open(&m, path, &err))
        return cli_fail(tool, &err);
    char *s = NULL;
    if (json) {
        cJSON *o = tc_tmodel_info_json(&m);
        s = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
    } else {
        s = tc_tmodel_info_text(&m);
    }
    if (s)
        printf("%s%s", s, json ? "\n" : "");
    free(s);
    tc_tmodel_close(&m);
    return s ? TC_EXIT_OK : TC_EXIT_FAIL;
}

int cli_info(const char *tool, const char *model_path, int json)
{
    tc_model m;
    tc_error err = {{0}};
    if (tc_tmodel_is_packed(model_path))
        return info_packed(tool, model_path, json);
    if (tc_model_open(&m, model_path, &err))
        return cli_fail(tool, &err);
    int rc = TC_EXIT_OK;
    if (json) {
        cJSON *o = tc_model_info_json(&m);
        char *s = o ? cJSON_Print(o) : NULL;
        if (s)
            printf("%s\n", s);
        else
            rc = TC_EXIT_FAIL;
        free(s);
        cJSON_Delete(o);
    } else {
        char *s = tc_model_info_text(&m);
        if (s)
            fputs(s, stdout);
        else
            rc = TC_EXIT_FAIL;
        free(s);
    }
    tc_model_close(&m);
    return rc;
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const char *label, int quiet)
{
    p->label = label;
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->last_permille = -1;
    p->last_second = -1;
    p->start = mono_seconds();
}

/* "1:05:09", "5:09" or "9s" (up to 99999 hours). */
static void clock_text(char *buf, size_t n, double seconds)
{
    int s = seconds > 0 && seconds < 3.6e8 ? (int)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else if (s >= 60)
        snprintf(buf, n, "%d:%02d", s / 60, s % 60);
    else
        snprintf(buf, n, "%ds", s);
}

void cli_progress_update(void *ctx, double fraction)
{
    cli_progress *p = ctx;
    if (!p->enabled)
        return;
    int permille = (int)(fraction * 1000.0 + 0.5);
    double elapsed = mono_seconds() - p->start;
    /* Redrawn when the share or the elapsed second changes. */
    if (permille == p->last_permille && (long)elapsed == p->last_second)
        return;
    p->last_permille = permille;
    p->last_second = (long)elapsed;
    const int width = 30;
    int filled = permille * width / 1000;
    char spent[32], left[32] = "?";
    clock_text(spent, sizeof spent, elapsed);
    /* The rest at the rate so far; unknown until some of it is done. */
    if (fraction >= 0.005)
        clock_text(left, sizeof left, elapsed * (1.0 - fraction) / fraction);
    fprintf(stderr, "\r%-10s [", p->label);
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %5.1f%%  %s elapsed, ETA %s   ", permille / 10.0, spent, left);
    fflush(stderr);
}

void cli_progress_done(cli_progress *p)
{
    if (p->enabled && p->last_permille >= 0)
        fputc('\n', stderr);
}

int cli_parse_dtype(const char *s, tc_dtype *out)
{
    char up[16];
    size_t k = 0;
    for (; s[k] && k + 1 < sizeof up; k++)
        up[k] = (char)(s[k] >= 'a' && s[k] <= 'z' ? s[k] - 'a' + 'A' : s[k]);
    up[k] = '\0';
    return s[k] || tc_dtype_from_name(up, out) ? -1 : 0;
}

long cli_parse_long(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    return v;
}

int cli_common_option(const char *tool, int code, const char *arg, cli_common *c, void (*usage)(void),
                      int *exit_code)
{
    switch (code) {
    case CLI_OPT_INFO: c->info = 1; return 0;
    case CLI_OPT_JSON: c->json = 1; return 0;
    case 'q': c->quiet = 1; return 0;
    case CLI_OPT_TOKENIZER: c->tokenizer = arg; return 0;
    case CLI_OPT_FORCE: c->force = 1; return 0;
    case CLI_OPT_THREADS:
        c->threads = (int)cli_parse_long(arg, 1, 1024);
        if (c->threads < 0) {
            *exit_code = cli_usage_error(tool, "--threads needs a number from 1 to 1024, not '%s'", arg);
            return 1;
        }
        return 0;
    case 'h': usage(); *exit_code = TC_EXIT_OK; return 1;
    case CLI_OPT_VERSION: printf("%s %s\n", tool, tc_version()); *exit_code = TC_EXIT_OK; return 1;
    case '?':
        /* getopt has said which option, once: only the way to help follows. */
        fprintf(stderr, "Try '%s --help'.\n", tool);
        *exit_code = TC_EXIT_USAGE;
        return 1;
    default: return -1;
    }
}

int cli_calib_option(const char *tool, int code, const char *arg, cli_calib *c, int *exit_code)
{
    const char *what = NULL;
    switch (code) {
    case CLI_OPT_CALIB: c->text = arg; return 0;
    case CLI_OPT_CALIB_TOKENS: c->tokens = arg; return 0;
    case CLI_OPT_TEXT_FIELD: c->text_field = arg; return 0;
    case CLI_OPT_SAMPLES:
        if ((c->samples = cli_parse_long(arg, 1, 1L << 30)) < 0)
            what = "--samples needs a number from 1 to 1073741824";
        break;
    case CLI_OPT_SEQ_LEN:
        if ((c->seq_len = cli_parse_long(arg, 2, 1L << 24)) < 0)
            what = "--seq-len needs a number from 2 to 16777216";
        break;
    case CLI_OPT_SEED: {
        char *end;
        errno = 0;
        c->seed = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-')
            what = "--seed needs a non-negative number";
        break;
    }
    default: return -1;
    }
    if (!what)
        return 0;
    *exit_code = cli_usage_error(tool, "%s, not '%s'", what, arg);
    return 1;
}

int cli_model_tokenizer(tc_model *m, const char *tokenizer_path, int gguf_output, tc_error *err)
{
    if (tokenizer_path && tc_model_set_tokenizer(m, tokenizer_path, err))
        return TC_ERR;
    tc_vocab v;
    if (gguf_output && tc_model_vocab(m, &v, err))
        return TC_ERR;
    if (gguf_output)
        tc_vocab_free(&v);
    return TC_OK;
}

int cli_calib_load_with(const cli_calib *c, const tc_config *cfg, tc_tokenizer *tok, tc_calib_set *set,
                        tc_error *err)
{
    memset(set, 0, sizeof *set);
    if (c->tokens && c->text)
        return tc_err(err, "give either --calib or --calib-tokens, not both");
    if (c->tokens) {
        if (tc_calib_read_tokens(c->tokens, cfg->vocab_size, (size_t)cfg->max_seq_len, set, err))
            return TC_ERR;
        if (c->samples > 0 && (size_t)c->samples < set->n_seqs)
            return tc_calib_set_pick(set, (size_t)c->samples, c->seed, err);
        return TC_OK;
    }
    if (!c->text)
        return tc_err(err, "no calibration data: give --calib FILE or --calib-tokens FILE");
    if (!tok)
        return tc_err(err, "%s: text needs a tokenizer", c->text);
    tc_calib_docs docs = {0};
    int rc = tc_calib_docs_read(&docs, c->text, TC_CALIB_AUTO, c->text_field ? c->text_field : "text", err);
    if (rc == TC_OK) {
        int32_t bos = tc_tokenizer_bos(tok) >= 0 ? tc_tokenizer_bos(tok) : cfg->bos_id;
        tc_calib_opts o = tc_calib_default_opts((size_t)cfg->max_seq_len, bos);
        if (c->samples > 0)
            o.n_samples = (size_t)c->samples;
        else if (c->samples < 0)
            o.n_samples = TC_CALIB_ALL;
        o.avoid = c->avoid;
        o.n_avoid = c->n_avoid;
        if (c->seq_len > 0)
            o.seq_len = (size_t)c->seq_len;
        o.seed = c->seed;
        if (o.seq_len > (size_t)cfg->max_seq_len)
            rc = tc_err(err, "--seq-len %zu is longer than the model's context of %d tokens", o.seq_len,
                        cfg->max_seq_len);
        else
            rc = tc_calib_sample(&docs, tc_model_tokenizer_encode, tok, &o, set, err);
    }
    tc_calib_docs_free(&docs);
    return rc;
}

int cli_calib_load(const cli_calib *c, const tc_model *m, const char *tokenizer_path, tc_calib_set *set,
                   tc_error *err)
{
    memset(set, 0, sizeof *set);
    if (c->tokens || !c->text)
        return cli_calib_load_with(c, &m->cfg, NULL, set, err);
    tc_tokenizer *tok;
    if (tc_model_tokenizer(m, tokenizer_path, &tok, err))
        return TC_ERR;
    int rc = cli_calib_load_with(c, &m->cfg, tok, set, err);
    tc_tokenizer_free(tok);
    return rc;
}

void cli_print_windows(const char *tool, const char *what, const tc_calib_set *set, int quiet)
{
    if (quiet)
        return;
    if (set->warning[0])
        fprintf(stderr, "%s: %s\n", tool, set->warning);
    char *line = tc_calib_windows_describe(&set->win);
    fprintf(stderr, "%s: %s: %s\n", tool, what, line ? line : "(out of memory)");
    free(line);
}

int cli_guard_outputs(const char *tool, const tc_model *m, const char *const *inputs, size_t n_inputs,
                      const cli_output *outs, size_t n_outs, int force)
{
    tc_pathguard g;
    tc_pathguard_init(&g);
    tc_error err = {{0}};
    tc_output_verdict why = TC_OUTPUT_FREE;
    int rc = TC_OK;
    if (m) {
        rc = tc_pathguard_add_input(&g, m->path, &err);
        if (rc == TC_OK && tc_model_hfdir(m)) /* a .safetensors file named: its whole directory */
            rc = tc_pathguard_add_input(&g, tc_model_hfdir(m)->path, &err);
    }
    for (size_t i = 0; rc == TC_OK && i < n_inputs; i++)
        rc = tc_pathguard_add_input(&g, inputs[i], &err);
    for (size_t i = 0; rc == TC_OK && i < n_outs; i++)
        if (outs[i].path)
            rc = tc_pathguard_check(&g, outs[i].path, outs[i].kind, force, &why, &err);
    tc_pathguard_free(&g);
    if (rc == TC_OK)
        return TC_EXIT_OK;
    fprintf(stderr, "%s: %s%s\n", tool, err.msg, why == TC_OUTPUT_EXISTS ? " (--force replaces it)" : "");
    return TC_EXIT_USAGE;
}

int cli_tokenizer_check(const tc_model *m, const char *path, tc_error *err)
{
    tc_tokenizer *tok = NULL;
    if (!path)
        return TC_OK;
    int rc = tc_model_tokenizer(m, path, &tok, err);
    tc_tokenizer_free(tok);
    return rc;
}

const char *cli_name_format(const char *path)
{
    static const char *const suffix[][2] = {{".gguf", "gguf"}, {".tcq", "tcq"}};
    size_t n = path ? strlen(path) : 0;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t k = strlen(suffix[i][0]);
        if (n > k && strcasecmp(path + n - k, suffix[i][0]) == 0)
            return suffix[i][1];
    }
    return NULL;
}

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}
