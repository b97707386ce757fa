#include "cli.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc/calib.h"
#include "tc/info.h"
#include "tc/model_tokenizer.h"
#include "tc/model.h"
#include "tc/outfile.h"

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

/* Only async-signal-safe calls: unlink and _exit. */
static void on_signal(int sig)
{
    for (int i = 0; i < CLI_MAX_TEMPS; i++)
        if (cli_temps[i].used)
            unlink(cli_temps[i].path);
    _exit(128 + sig);
}

void cli_init(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    static const tc_outfile_hooks hooks = {temp_created, temp_finished, NULL};
    tc_outfile_set_hooks(&hooks);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* one handler run at a time */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
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

int cli_info(const char *tool, const char *model_path, int json)
{
    tc_model m;
    tc_error err = {{0}};
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

void cli_progress_init(cli_progress *p, const char *label, int quiet)
{
    p->label = label;
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->last_permille = -1;
}

void cli_progress_update(void *ctx, double fraction)
{
    cli_progress *p = ctx;
    if (!p->enabled)
        return;
    int permille = (int)(fraction * 1000.0 + 0.5);
    if (permille == p->last_permille)
        return;
    p->last_permille = permille;
    const int width = 40;
    int filled = permille * width / 1000;
    fprintf(stderr, "\r%-10s [", p->label);
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %5.1f%%", permille / 10.0);
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
    case CLI_OPT_THREADS:
        c->threads = (int)cli_parse_long(arg, 1, 1024);
        if (c->threads < 0) {
            *exit_code = cli_usage_error(tool, "--threads needs a number from 1 to 1024, not '%s'", arg);
            return 1;
        }
        return 0;
    case 'h': usage(); *exit_code = TC_EXIT_OK; return 1;
    case CLI_OPT_VERSION: printf("%s %s\n", tool, TC_VERSION); *exit_code = TC_EXIT_OK; return 1;
    case '?': *exit_code = cli_usage_error(tool, "invalid option or missing value"); return 1;
    default: return -1;
    }
}

int cli_calib_option(const char *tool, int code, const char *arg, cli_calib *c, int *exit_code)
{
    switch (code) {
    case CLI_OPT_CALIB: c->text = arg; return 0;
    case CLI_OPT_CALIB_TOKENS: c->tokens = arg; return 0;
    case CLI_OPT_TEXT_FIELD: c->text_field = arg; return 0;
    case CLI_OPT_SAMPLES:
        if ((c->samples = cli_parse_long(arg, 1, 1L << 30)) < 0)
            break;
        return 0;
    case CLI_OPT_SEQ_LEN:
        if ((c->seq_len = cli_parse_long(arg, 2, 1L << 24)) < 0)
            break;
        return 0;
    case CLI_OPT_SEED: {
        char *end;
        errno = 0;
        c->seed = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-')
            break;
        return 0;
    }
    default: return -1;
    }
    *exit_code = cli_usage_error(tool, "bad value '%s' for a calibration option", arg);
    return 1;
}

int cli_calib_load(const cli_calib *c, const tc_model *m, const char *tokenizer_path, tc_calib_set *set,
                   tc_error *err)
{
    memset(set, 0, sizeof *set);
    if (c->tokens && c->text)
        return tc_err(err, "give either --calib or --calib-tokens, not both");
    if (c->tokens) {
        if (tc_calib_read_tokens(c->tokens, m->cfg.vocab_size, (size_t)m->cfg.max_seq_len, set, err))
            return TC_ERR;
        if (c->samples > 0 && (size_t)c->samples < set->n_seqs)
            return tc_calib_set_pick(set, (size_t)c->samples, c->seed, err);
        return TC_OK;
    }
    if (!c->text)
        return tc_err(err, "no calibration data: give --calib FILE or --calib-tokens FILE");
    tc_tokenizer *tok;
    if (tc_model_tokenizer(m, tokenizer_path, &tok, err))
        return TC_ERR;
    tc_calib_docs docs = {0};
    int rc = tc_calib_docs_read(&docs, c->text, TC_CALIB_AUTO, c->text_field ? c->text_field : "text", err);
    if (rc == TC_OK) {
        int32_t bos = tc_tokenizer_bos(tok) >= 0 ? tc_tokenizer_bos(tok) : m->cfg.bos_id;
        tc_calib_opts o = tc_calib_default_opts((size_t)m->cfg.max_seq_len, bos);
        if (c->samples > 0)
            o.n_samples = (size_t)c->samples;
        else if (c->samples < 0)
            o.n_samples = TC_CALIB_ALL;
        o.avoid = c->avoid;
        o.n_avoid = c->n_avoid;
        if (c->seq_len > 0)
            o.seq_len = (size_t)c->seq_len;
        o.seed = c->seed;
        if (o.seq_len > (size_t)m->cfg.max_seq_len)
            rc = tc_err(err, "--seq-len %zu is longer than the model's context of %d tokens", o.seq_len,
                        m->cfg.max_seq_len);
        else
            rc = tc_calib_sample(&docs, tc_model_tokenizer_encode, tok, &o, set, err);
    }
    tc_calib_docs_free(&docs);
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

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}
