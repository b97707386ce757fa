/* Atomic output: bytes go to a temporary file beside the target, which is
 * renamed into place only when everything was written and synced.  A failed
 * or interrupted run leaves the target as it was (absent or the old file).
 * A directory output (a Hugging Face checkpoint) is written the same way as a
 * whole: into a temporary directory beside the target, which then takes the
 * target's place (tc_outdir). */
#ifndef TC_OUTFILE_H
#define TC_OUTFILE_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

#include "tc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_outfile {
    char *path;  /* the target */
    char *tmp;   /* the temporary beside it */
    FILE *f;
    uint64_t written;
} tc_outfile;

int tc_outfile_open(tc_outfile *o, const char *path, tc_error *err);
int tc_outfile_write(tc_outfile *o, const void *p, size_t n, tc_error *err);
/* Writes zero bytes up to the next multiple of align. */
int tc_outfile_pad(tc_outfile *o, uint64_t align, tc_error *err);
/* Flushes, syncs, renames into place and releases o. */
int tc_outfile_commit(tc_outfile *o, tc_error *err);
/* Removes the temporary and releases o; safe to call after commit or on a
 * zeroed struct. */
void tc_outfile_abort(tc_outfile *o);

/* A directory written as a whole.  The writer puts its files (each through
 * tc_outfile) into d->tmp, a fresh directory `<target>.tmp.XXXXXX` beside the
 * target; commit then puts it in the target's place. */
typedef struct tc_outdir {
    char *path; /* the target, without trailing slashes */
    char *tmp;  /* the temporary directory the files go to */
} tc_outdir;

int tc_outdir_open(tc_outdir *d, const char *path, tc_error *err);
/* Syncs the temporary directory and moves it into place.  A target that
 * exists (an earlier directory, or a file) is exchanged with it in one step
 * (renameat2 RENAME_EXCHANGE; where that is missing the old one is first
 * moved aside) and then removed with everything in it, so no file of the old
 * target survives beside the new ones.  Deciding whether an existing target
 * may be replaced is the caller's (tc/pathguard.h).  Releases d. */
int tc_outdir_commit(tc_outdir *d, tc_error *err);
/* Removes the temporary directory with its files and releases d; safe to
 * call after commit or on a zeroed struct. */
void tc_outdir_abort(tc_outdir *d);

/* Hooks told about every temporary file and directory: `created` right after
 * it exists, `finished` once it was renamed into place or removed.  A program
 * uses them to remove its temporaries when a signal ends it (tools/cli.c
 * does, for SIGINT, SIGTERM and SIGHUP: a path that unlink refuses is a
 * temporary directory, emptied and removed).  tmp is only valid during the
 * call.  A temporary created a few instructions before `created` runs, or one
 * left by SIGKILL, is still left behind: the target itself is never partial. */
typedef struct tc_outfile_hooks {
    void (*created)(void *ctx, const char *tmp);
    void (*finished)(void *ctx, const char *tmp);
    void *ctx;
} tc_outfile_hooks;

/* Registers hooks for every later tc_outfile of the process (NULL: none).
 * The library's only process-wide setting, so it is meant to be called once
 * by main() before any thread starts or any file is written; see "Signals"
 * in docs/ARCHITECTURE.md for why it is not a per-writer argument. */
void tc_outfile_set_hooks(const tc_outfile_hooks *hooks);

/* Whether two paths name the same existing file (tc/pathguard.h decides
 * whether an output may be written, over every file of the inputs). */
int tc_same_file(const char *a, const char *b);

#ifdef __cplusplus
}
#endif

#endif
