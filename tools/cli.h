/* What every tool shares: exit codes, --info, error printing, progress bar. */
#ifndef TC_TOOLS_CLI_H
#define TC_TOOLS_CLI_H

#include <stdio.h>

#include "tc/dist.h"
#include "tc/dtype.h"
#include "tc/error.h"
#include "tc/pathguard.h"

/* Exit codes, documented in README.md. */
enum {
    TC_EXIT_OK = 0,
    TC_EXIT_FAIL = 1,  /* the work failed: bad input file, write error, ... */
    TC_EXIT_USAGE = 2, /* bad command line */
};

/* Process set-up, first thing in main():
 * - SIGINT, SIGTERM and SIGHUP end the tool cleanly: every temporary file the
 *   library's writers have open is removed and the process exits with 128 +
 *   the signal number (130 for Ctrl-C);
 * - large freed blocks stay in malloc's heap instead of going back to the
 *   kernel, so converting a model layer after layer reuses the same pages
 *   rather than faulting in a fresh layer's worth each time (ten times
 *   faster on virtual machines, where page faults are dear); the peak is
 *   still one layer. */
void cli_init(void);

/* Joins the MPI job when started by mpirun (tc/dist.h; a job of one
 * otherwise), after cli_init.  Ranks other than 0 write nothing: their stdout
 * and stderr go to /dev/null, and what must be said (a failure on any rank)
 * rank 0 says.  The job is left when the process exits. */
void cli_dist_init(tc_dist *d, int *argc, char ***argv);

/* After a step that may fail on some ranks and not others (opening the model,
 * reading the calibration text, the work): rc is this rank's TC_OK or TC_ERR
 * with err.  Returns TC_EXIT_OK when every rank succeeded; otherwise rank 0
 * prints one line, "tool: rank R: reason" for the lowest failing rank (as
 * cli_fail in a job of one), and every rank returns TC_EXIT_FAIL. */
int cli_dist_check(const char *tool, tc_dist *d, int rc, tc_error *err);

/* Prints "tool: message" on stderr and returns TC_EXIT_FAIL. */
int cli_fail(const char *tool, const tc_error *err);
/* Prints "tool: message" and a hint to --help; returns TC_EXIT_USAGE. */
int cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --info MODEL [--json]: the shared implementation of every tool. */
int cli_info(const char *tool, const char *model_path, int json);

/* A progress bar on stderr with the elapsed time and the time left at the
 * rate so far, drawn only when stderr is a terminal and not --quiet. */
typedef struct cli_progress {
    const char *label;
    int enabled;
    int last_permille;
    long last_second;
    double start; /* monotonic seconds at init: the elapsed time and the ETA */
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, int quiet);
void cli_progress_update(void *p, double fraction);
void cli_progress_done(cli_progress *p);

/* Options every tool takes.  Each tool's getopt_long table starts with
 * CLI_COMMON_LONG_OPTIONS and hands unknown codes to cli_common_option(). */
typedef struct cli_common {
    int info, json, quiet, threads;
    const char *tokenizer;
    int force; /* --force, in the tools that write (CLI_FORCE_LONG_OPTION) */
} cli_common;

enum { CLI_OPT_INFO = 1000, CLI_OPT_JSON, CLI_OPT_VERSION, CLI_OPT_TOKENIZER, CLI_OPT_THREADS, CLI_OPT_FORCE,
       CLI_OPT_TOOL_BASE = 1100 };

/* The tools that write files add this to their table and CLI_FORCE_HELP to
 * their help. */
#define CLI_FORCE_LONG_OPTION {"force", no_argument, 0, CLI_OPT_FORCE}

#define CLI_FORCE_HELP                                                                       \
    "  --force            replace an existing output: a file, or a directory as a whole\n"   \
    "                     (nothing of the old one survives; only an empty directory or a\n" \
    "                     checkpoint directory, one with config.json, is replaced).\n"       \
    "                     Without it an existing output is refused.  An output is never\n"  \
    "                     an input, nor inside an input directory, nor a directory\n"       \
    "                     holding an input, --force or not.\n"

#define CLI_COMMON_LONG_OPTIONS                                                  \
    {"info", no_argument, 0, CLI_OPT_INFO}, {"json", no_argument, 0, CLI_OPT_JSON}, \
    {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},               \
    {"version", no_argument, 0, CLI_OPT_VERSION},                                \
    {"tokenizer", required_argument, 0, CLI_OPT_TOKENIZER},                      \
    {"threads", required_argument, 0, CLI_OPT_THREADS}

#define CLI_COMMON_HELP                                                                  \
    "Common options:\n"                                                                  \
    "  --info             print what the checkpoint holds (shapes, parameters, bytes by\n" \
    "                     dtype, bits per weight) and exit\n"                             \
    "  --json             machine-readable output on stdout\n"                           \
    "  --tokenizer FILE   tokenizer for a checkpoint without one (llama2.c); a GGUF\n"    \
    "                     output carries it as its vocabulary\n"                      \
    "  --threads N        worker threads (default: all cores)\n"                         \
    "  -q, --quiet        no progress bar or log lines on stderr\n"                      \
    "  -h, --help         this help\n"                                                   \
    "      --version      print the version\n"                                           \
    "\n"                                                                                 \
    "Exit codes: 0 success, 1 the work failed (bad input file, write error, ...),\n"     \
    "2 bad command line (an output that is refused included).\n"

/* Handles a common option: returns 0 when handled and the tool goes on, 1
 * when it should exit with *exit_code (help, version, bad value), -1 when the
 * option is not a common one. */
int cli_common_option(const char *tool, int code, const char *arg, cli_common *c, void (*usage)(void),
                      int *exit_code);

/* Calibration options shared by tc-analyze, tc-prune and tc-quantize. */
typedef struct cli_calib {
    const char *text;        /* --calib FILE (text or JSON Lines, optionally gzip) */
    const char *tokens;      /* --calib-tokens FILE (JSON Lines of id arrays) */
    const char *text_field;  /* --text-field NAME */
    long samples, seq_len;   /* --samples N --seq-len L (0: defaults; samples < 0: every window) */
    unsigned long long seed; /* --seed S */
    /* Set by the tool, not an option: windows that calibrated, which an
     * evaluation of the same text leaves out (tc/calib.h). */
    const struct tc_calib_windows *avoid;
    size_t n_avoid;
} cli_calib;

enum { CLI_OPT_CALIB = 1050, CLI_OPT_CALIB_TOKENS, CLI_OPT_TEXT_FIELD, CLI_OPT_SAMPLES, CLI_OPT_SEQ_LEN,
       CLI_OPT_SEED };

#define CLI_CALIB_LONG_OPTIONS                                                       \
    {"calib", required_argument, 0, CLI_OPT_CALIB},                                  \
    {"calib-tokens", required_argument, 0, CLI_OPT_CALIB_TOKENS},                    \
    {"text-field", required_argument, 0, CLI_OPT_TEXT_FIELD},                        \
    {"samples", required_argument, 0, CLI_OPT_SAMPLES},                              \
    {"seq-len", required_argument, 0, CLI_OPT_SEQ_LEN},                              \
    {"seed", required_argument, 0, CLI_OPT_SEED}

#define CLI_CALIB_HELP                                                                      \
    "Calibration data:\n"                                                                   \
    "  --calib FILE        text (paragraphs separated by blank lines are documents) or\n"   \
    "                      JSON Lines (.jsonl), either optionally gzip-compressed\n"        \
    "  --text-field NAME   the JSON Lines field holding the text (default: text)\n"         \
    "  --calib-tokens FILE pre-tokenized JSON Lines: one array of token ids per line,\n"    \
    "                      each used as one sequence exactly as given\n"                    \
    "  --samples N         windows to sample (default 64)\n"                                \
    "  --seq-len L         tokens per window (default: min(256, model context))\n"          \
    "  --seed S            sampling seed (default 0)\n"                                     \
    "  Documents are tokenized, each preceded by BOS, concatenated and cut into\n"         \
    "  non-overlapping windows of L tokens; N of them are chosen with the seed and\n"      \
    "  kept in text order (docs/CALIBRATION.md).\n"

/* Handles a calibration option (same contract as cli_common_option). */
int cli_calib_option(const char *tool, int code, const char *arg, cli_calib *c, int *exit_code);

struct tc_model;
struct tc_calib_set;
/* Loads the calibration set for a model: pre-tokenized lines, or text through
 * the model's tokenizer (tokenizer_path overrides it).  Returns TC_ERR with
 * err filled; set->warning (may be "") says when fewer samples existed or a
 * record to avoid could not be matched. */
int cli_calib_load(const cli_calib *c, const struct tc_model *m, const char *tokenizer_path,
                   struct tc_calib_set *set, tc_error *err);

/* "tool: what: 64 windows of 256 tokens (16384 tokens) of FILE: windows 3, 9,
 * ... of 1823" on stderr, and the set's warning before it (unless quiet). */
void cli_print_windows(const char *tool, const char *what, const struct tc_calib_set *set, int quiet);

/* An output a tool is about to write. */
typedef struct cli_output {
    const char *path; /* NULL: not asked for */
    tc_output_kind kind;
} cli_output;

struct tc_model;
/* Inputs are sacred, outputs deliberate: before any work, refuses outputs
 * that are an input (or a file of an input directory), would be written inside
 * an input directory or are a directory holding an input, outputs that exist
 * without --force, and two outputs to one place (tc/pathguard.h).  The inputs
 * are the model m (its file, and its directory for Hugging Face; may be NULL)
 * and inputs[] (NULL entries skipped).  Prints one line and returns
 * TC_EXIT_USAGE when refused, TC_EXIT_OK otherwise. */
int cli_guard_outputs(const char *tool, const struct tc_model *m, const char *const *inputs, size_t n_inputs,
                      const cli_output *outs, size_t n_outs, int force);

/* Opens a --tokenizer FILE given for model m and lets it go: a bad one is
 * reported before any work, even when nothing needs it. */
int cli_tokenizer_check(const struct tc_model *m, const char *path, tc_error *err);

/* Gives the model the --tokenizer file (NULL: none) and, when the output is
 * a GGUF, makes sure now, before any work, that it can carry the model's
 * vocabulary (llama.cpp loads no GGUF without one).  TC_ERR with err filled. */
int cli_model_tokenizer(struct tc_model *m, const char *tokenizer_path, int gguf_output, tc_error *err);

/* The same for a model given by its config and an open tokenizer (a packed
 * model); tok may be NULL with --calib-tokens. */
struct tc_config;
struct tc_tokenizer;
int cli_calib_load_with(const cli_calib *c, const struct tc_config *cfg, struct tc_tokenizer *tok,
                        struct tc_calib_set *set, tc_error *err);

/* The format an output's name asks for: "gguf" for a name ending in .gguf,
 * "tcq" for .tcq (any case), NULL for any other name.  A tool infers its
 * format from it or refuses a --format that contradicts it, so that
 * `-o model.gguf` never writes a directory. */
const char *cli_name_format(const char *path);

/* The number of online cores (the default for --threads). */
int cli_default_threads(void);

/* Parses a positive integer option value; returns -1 on error. */
long cli_parse_long(const char *s, long min, long max);

/* A type name in any case ("q4_k", "Q4_K", "f16"); returns -1 when it names none. */
int cli_parse_dtype(const char *s, tc_dtype *out);

#endif
