#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc/info.h"
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

void cli_install_signals(void)
{
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
