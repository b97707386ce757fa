/* Inputs are never outputs: whether a path may be written, decided by file
 * identity (device and inode) rather than by spelling.
 *
 * A program names its inputs first (a model file or directory, reports,
 * calibration and evaluation text, a tokenizer): every file and directory
 * inside an input directory counts too, each after resolving links.  Then
 * each output is checked before any work starts.  An output is refused when
 *   - it is an input, or a file of an input directory (`./m`, `m/`, `$PWD/m`,
 *     a symbolic or hard link to m: all the same file);
 *   - it would be written inside an input directory, at any depth;
 *   - it is an existing directory that holds an input (replacing it would
 *     delete the input);
 *   - it exists and replacing was not asked for; or it exists and cannot be
 *     replaced by an output of its kind (a directory where a file goes, a
 *     device, a directory that is not a checkpoint directory);
 *   - its folder does not exist;
 *   - another output of the same program already goes there.
 * The refusal is one sentence naming the output and, where there is one, the
 * input it would destroy.
 *
 * Input directories are looked through to a depth of 8 and 65536 entries,
 * beyond anything a checkpoint holds. */
#ifndef TC_PATHGUARD_H
#define TC_PATHGUARD_H

#include <stddef.h>
#include <stdint.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_pathguard_entry {
    uint64_t dev, ino;
    int is_dir;
    size_t input; /* the named input it belongs to */
    char *inner;  /* its path, when found inside an input directory (else NULL) */
    char *real;   /* resolved path of a named input or of a link inside one (else NULL) */
} tc_pathguard_entry;

typedef struct tc_pathguard_output {
    uint64_t dev, ino; /* of its folder */
    char *name, *path;
} tc_pathguard_output;

typedef struct tc_pathguard {
    char **inputs; /* as named */
    size_t n_inputs;
    tc_pathguard_entry *e;
    size_t n, cap;
    tc_pathguard_output *outs;
    size_t n_outs;
} tc_pathguard;

void tc_pathguard_init(tc_pathguard *g);
void tc_pathguard_free(tc_pathguard *g);

/* Adds an input (NULL or one that does not exist is ignored: opening it is
 * where a missing input is reported). */
int tc_pathguard_add_input(tc_pathguard *g, const char *path, tc_error *err);

/* What the output will be. */
typedef enum { TC_OUTPUT_FILE, TC_OUTPUT_DIR } tc_output_kind;

/* Why an output was refused. */
typedef enum {
    TC_OUTPUT_FREE = 0, /* not refused */
    TC_OUTPUT_EXISTS,   /* it exists and replace was 0: it could be replaced */
    TC_OUTPUT_CLASH,    /* any other reason: an input, or a place it cannot go */
} tc_output_verdict;

/* TC_OK when path may be written as kind (replace: an existing output may be
 * replaced); otherwise TC_ERR with err saying why, and *verdict (may be NULL)
 * telling an output that merely exists from the rest.  An output that passes
 * is remembered, so that a second one to the same place is refused. */
int tc_pathguard_check(tc_pathguard *g, const char *path, tc_output_kind kind, int replace,
                       tc_output_verdict *verdict, tc_error *err);

#ifdef __cplusplus
}
#endif

#endif
