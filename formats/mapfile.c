#include "tc/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int tc_mapfile_open(tc_mapfile *m, const char *path, tc_error *err)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tc_err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tc_err(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tc_err(err, "%s: not a regular file", path);
    }
    m->path = strdup(path);
    if (!m->path) {
        close(fd);
        return tc_err(err, "%s: out of memory", path);
    }
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m->path);
            m->path = NULL;
            return tc_err(err, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    return TC_OK;
}

void tc_mapfile_close(tc_mapfile *m)
{
    if (m->data)
        munmap((void *)m->data, (size_t)m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

int tc_read_small_file(const char *path, uint64_t max_bytes, char **out, uint64_t *len, tc_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return tc_err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return tc_err(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return tc_err(err, "%s: %lld bytes is larger than the %llu allowed for this kind of file",
                      path, (long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return tc_err(err, "%s: out of memory", path);
    }
    if (n > 0 && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return tc_err(err, "%s: read error", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return TC_OK;
}

int tc_file_is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int tc_file_has_magic(const char *path, const void *magic, size_t n)
{
    unsigned char head[16];
    if (n > sizeof head)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(head, 1, n, f);
    fclose(f);
    return got == n && memcmp(head, magic, n) == 0;
}
