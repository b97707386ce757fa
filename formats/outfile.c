#ifdef __linux__
#define _GNU_SOURCE /* sync_file_range */
#include <fcntl.h>
#endif
#include "tc/outfile.h"

#include <errno.h>
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

int tc_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
