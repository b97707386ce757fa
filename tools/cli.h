/* What every tool shares: exit codes, --info, error printing, progress bar. */
#ifndef TC_TOOLS_CLI_H
#define TC_TOOLS_CLI_H

#include <stdio.h>

#include "tc/error.h"

/* Exit codes, documented in README.md. */
enum {
    TC_EXIT_OK = 0,
    TC_EXIT_FAIL = 1,  /* the work failed: bad input file, write error, ... */
    TC_EXIT_USAGE = 2, /* bad command line */
};

/* Prints "tool: message" on stderr and returns TC_EXIT_FAIL. */
int cli_fail(const char *tool, const tc_error *err);
/* Prints "tool: message" and a hint to --help; returns TC_EXIT_USAGE. */
int cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --info MODEL [--json]: the shared implementation of every tool. */
int cli_info(const char *tool, const char *model_path, int json);

/* A progress bar on stderr, drawn only when stderr is a terminal and not --quiet. */
typedef struct cli_progress {
    const char *label;
    int enabled;
    int last_permille;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, int quiet);
void cli_progress_update(void *p, double fraction);
void cli_progress_done(cli_progress *p);

/* Parses a positive integer option value; returns -1 on error. */
long cli_parse_long(const char *s, long min, long max);

#endif
