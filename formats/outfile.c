#ifdef __linux__
#define _GNU_SOURCE /* sync_file_range, renameat2 */
#endif
#include "tc/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Set once by main() before any writer runs (see tc_outfile_set_hooks), so
 * reading it from writers needs no synchronisation. */
static tc_outfile_hooks g_hooks;

void tc_outfile_set_hooks(const tc_outfile_hooks *hooks)
{
    if (hooks)
        g_hooks = *hooks;
    else
        memset(&g_hooks, 0, sizeof g_hooks);
}

static void tell_finished(const char *tmp)
{
    if (g_hooks.finished)
        g_hooks.finished(g_hooks.ctx, tmp);
}

int tc_outfile_open(tc_outfile *o, const char *path, tc_error *err)
{
    memset(o, 0, sizeof *o);
    size_t n = strlen(path);
    o->path = strdup(path);
    o->tmp = malloc(n + 16);
    if (!o->path || !o->tmp) {
        tc_outfile_abort(o);
        return tc_err(err, "%s: out of memory", path);
    }
    /* mkstemp in the target's directory, so the final rename never crosses filesystems. */
    snprintf(o->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        tc_outfile_abort(o);
        return tc_err(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    if (g_hooks.created)
        g_hooks.created(g_hooks.ctx, o->tmp);
    fchmod(fd, 0644);
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        int e = errno;
        close(fd);
        tc_outfile_abort(o);
        return tc_err(err, "%s: cannot open temporary file: %s", path, strerror(e));
    }
    return TC_OK;
}

/* Every WRITEBACK bytes the kernel is asked to start writing the last ones
 * out.  Otherwise dirty pages wait for the final fsync, which then writes the
 * whole file while the program has nothing left to do: with the writes
 * started early, the disk works while the program is still producing bytes. */
#define WRITEBACK (32u << 20)

static void start_writeback(tc_outfile *o, uint64_t before)
{
#ifdef __linux__
    uint64_t from = before / WRITEBACK * WRITEBACK, to = o->written / WRITEBACK * WRITEBACK;
    if (to > from && fflush(o->f) == 0)
        sync_file_range(fileno(o->f), (off_t)from, (off_t)(to - from), SYNC_FILE_RANGE_WRITE);
#else
    (void)o;
    (void)before;
#endif
}

int tc_outfile_write(tc_outfile *o, const void *p, size_t n, tc_error *err)
{
    if (n == 0)
        return TC_OK;
    if (fwrite(p, 1, n, o->f) != n)
        return tc_err(err, "%s: write failed: %s", o->path, strerror(errno));
    uint64_t before = o->written;
    o->written += n;
    start_writeback(o, before);
    return TC_OK;
}

int tc_outfile_pad(tc_outfile *o, uint64_t align, tc_error *err)
{
    static const uint8_t zeros[64];
    uint64_t pad = align ? (align - o->written % align) % align : 0;
    while (pad > 0) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        if (tc_outfile_write(o, zeros, k, err))
            return TC_ERR;
        pad -= k;
    }
    return TC_OK;
}

int tc_outfile_commit(tc_outfile *o, tc_error *err)
{
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
        return tc_err(err, "%s: write failed: %s", o->path, strerror(errno));
    int rc = fclose(o->f);
    o->f = NULL;
    if (rc != 0)
        return tc_err(err, "%s: write failed: %s", o->path, strerror(errno));
    if (rename(o->tmp, o->path) != 0)
        return tc_err(err, "%s: cannot move the finished file into place: %s", o->path, strerror(errno));
    tell_finished(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    free(o->path);
    o->path = NULL;
    return TC_OK;
}

void tc_outfile_abort(tc_outfile *o)
{
    if (o->f)
        fclose(o->f);
    if (o->tmp) {
        unlink(o->tmp);
        tell_finished(o->tmp);
    }
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}

/* ---- Directories ---------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path); /* what cannot go shows when the root is still there */
    return 0;
}

/* Removes path and, for a directory, everything below it, never following a
 * link (a link is removed, not what it points to) nor leaving the file
 * system.  Returns TC_OK when nothing is left. */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? TC_OK : TC_ERR;
    if (S_ISDIR(st.st_mode))
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    else
        remove(path);
    return lstat(path, &st) != 0 && errno == ENOENT ? TC_OK : TC_ERR;
}

int tc_outdir_open(tc_outdir *d, const char *path, tc_error *err)
{
    memset(d, 0, sizeof *d);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    d->path = strndup(path, n);
    d->tmp = malloc(n + 16);
    if (!d->path || !d->tmp) {
        tc_outdir_abort(d);
        return tc_err(err, "%s: out of memory", path);
    }
    /* Beside the target, so that moving it into place is a rename. */
    snprintf(d->tmp, n + 16, "%s.tmp.XXXXXX", d->path);
    if (!mkdtemp(d->tmp)) {
        int e = errno;
        free(d->tmp);
        d->tmp = NULL;
        tc_outdir_abort(d);
        return tc_err(err, "%s: cannot create a temporary directory beside it: %s", path, strerror(e));
    }
    if (g_hooks.created)
        g_hooks.created(g_hooks.ctx, d->tmp);
    chmod(d->tmp, 0755); /* mkdtemp makes it private; a checkpoint directory is not */
    return TC_OK;
}

/* The directory's entries on disk before it is renamed into place. */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return TC_ERR;
    int rc = fsync(fd) == 0 ? TC_OK : TC_ERR;
    close(fd);
    return rc;
}

/* Puts d->tmp in the place of an existing target; on return *old names
 * where the old target now is (to be removed), or is NULL. */
static int swap_in(tc_outdir *d, char **old, tc_error *err)
{
    *old = NULL;
#if defined(__linux__) && defined(RENAME_EXCHANGE)
    if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) == 0) {
        *old = d->tmp; /* the old target now has the temporary's name */
        return TC_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return tc_err(err, "%s: cannot move the finished directory into place: %s", d->path, strerror(errno));
#endif
    /* No exchange on this system or file system: the old target goes aside
     * under a name that marks it, the new one takes its place. */
    size_t n = strlen(d->tmp) + 8;
    char *aside = malloc(n);
    if (!aside)
        return tc_err(err, "%s: out of memory", d->path);
    snprintf(aside, n, "%s.old", d->tmp);
    if (rename(d->path, aside) != 0) {
        int e = errno;
        free(aside);
        return tc_err(err, "%s: cannot move the old output aside: %s", d->path, strerror(e));
    }
    if (rename(d->tmp, d->path) != 0) {
        int e = errno;
        rename(aside, d->path);
        free(aside);
        return tc_err(err, "%s: cannot move the finished directory into place: %s", d->path, strerror(e));
    }
    *old = aside;
    return TC_OK;
}

int tc_outdir_commit(tc_outdir *d, tc_error *err)
{
    if (sync_dir(d->tmp) != TC_OK)
        return tc_err(err, "%s: cannot sync the directory: %s", d->tmp, strerror(errno));
    struct stat st;
    char *old = NULL;
    if (lstat(d->path, &st) != 0) {
        if (rename(d->tmp, d->path) != 0)
            return tc_err(err, "%s: cannot move the finished directory into place: %s", d->path, strerror(errno));
    } else if (swap_in(d, &old, err)) {
        return TC_ERR;
    }
    int rc = TC_OK;
    if (old && remove_tree(old) != TC_OK)
        rc = tc_err(err, "%s: written, but its old contents, moved to %s, could not all be removed", d->path, old);
    /* The temporary's name is released only now: had a signal come while the
     * old contents were being removed under it, the handler finished that. */
    tell_finished(d->tmp);
    if (old != d->tmp)
        free(old);
    free(d->tmp);
    d->tmp = NULL;
    free(d->path);
    d->path = NULL;
    return rc;
}

void tc_outdir_abort(tc_outdir *d)
{
    if (d->tmp) {
        remove_tree(d->tmp);
        tell_finished(d->tmp);
    }
    free(d->tmp);
    free(d->path);
    memset(d, 0, sizeof *d);
}

int tc_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
