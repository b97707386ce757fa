/* What every tool shares: option helpers, --info, exit codes. */
#ifndef TC_TOOLS_CLI_H
#define TC_TOOLS_CLI_H

/* Exit codes, documented in README.md. */
enum {
    TC_EXIT_OK = 0,
    TC_EXIT_FAIL = 1,   /* the work failed: bad input file, write error, ... */
    TC_EXIT_USAGE = 2,  /* bad command line */
};

#endif
