#include "tc/pathguard.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GUARD_DEPTH 8
#define GUARD_ENTRIES 65536

void tc_pathguard_init(tc_pathguard *g)
{
    memset(g, 0, sizeof *g);
}

void tc_pathguard_free(tc_pathguard *g)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        free(g->inputs[i]);
    for (size_t i = 0; i < g->n; i++) {
        free(g->e[i].inner);
        free(g->e[i].real);
    }
    for (size_t i = 0; i < g->n_outs; i++) {
        free(g->outs[i].name);
        free(g->outs[i].path);
    }
    free(g->inputs);
    free(g->e);
    free(g->outs);
    memset(g, 0, sizeof *g);
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

/* Adds an entry; inner and real are taken over (freed on failure). */
static int add_entry(tc_pathguard *g, const struct stat *st, size_t input, char *inner, char *real,
                     tc_error *err)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        tc_pathguard_entry *e = realloc(g->e, cap * sizeof *e);
        if (!e) {
            free(inner);
            free(real);
            return tc_err(err, "%s: out of memory", g->inputs[input]);
        }
        g->e = e;
        g->cap = cap;
    }
    g->e[g->n++] = (tc_pathguard_entry){(uint64_t)st->st_dev, (uint64_t)st->st_ino, S_ISDIR(st->st_mode), input,
                                        inner, real};
    return TC_OK;
}

/* Every entry below dir, each as it resolves; real directories are looked
 * into (links to directories are recorded but not followed, so no loop). */
static int scan(tc_pathguard *g, const char *dir, size_t input, int depth, tc_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return TC_OK; /* unreadable: nothing in it can be written either */
    int rc = TC_OK;
    struct dirent *de;
    while (rc == TC_OK && g->n < GUARD_ENTRIES && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = join(dir, de->d_name);
        if (!p) {
            rc = tc_err(err, "%s: out of memory", dir);
            break;
        }
        struct stat ls, st;
        if (lstat(p, &ls) != 0 || stat(p, &st) != 0) { /* a dangling link names nothing to protect */
            free(p);
            continue;
        }
        char *real = S_ISLNK(ls.st_mode) ? realpath(p, NULL) : NULL;
        int into = S_ISDIR(ls.st_mode) && depth < GUARD_DEPTH;
        char *again = into ? strdup(p) : NULL;
        rc = add_entry(g, &st, input, p, real, err);
        if (rc == TC_OK && into)
            rc = again ? scan(g, again, input, depth + 1, err) : tc_err(err, "%s: out of memory", dir);
        free(again);
    }
    closedir(d);
    return rc;
}

int tc_pathguard_add_input(tc_pathguard *g, const char *path, tc_error *err)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return TC_OK;
    char **in = realloc(g->inputs, (g->n_inputs + 1) * sizeof *in);
    if (!in)
        return tc_err(err, "%s: out of memory", path);
    g->inputs = in;
    if (!(in[g->n_inputs] = strdup(path)))
        return tc_err(err, "%s: out of memory", path);
    size_t input = g->n_inputs++;
    char *real = realpath(path, NULL);
    if (add_entry(g, &st, input, NULL, real, err))
        return TC_ERR;
    return S_ISDIR(st.st_mode) ? scan(g, path, input, 1, err) : TC_OK;
}

/* ---- Checking an output --------------------------------------------------- */

/* path without trailing slashes (but "/" stays "/"); malloc'd. */
static char *strip_slashes(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    return strndup(path, n);
}

/* The folder part of a path without trailing slashes; malloc'd. */
static char *folder_of(const char *p)
{
    const char *slash = strrchr(p, '/');
    if (!slash)
        return strdup(".");
    if (slash == p)
        return strdup("/");
    return strndup(p, (size_t)(slash - p));
}

static const tc_pathguard_entry *find_id(const tc_pathguard *g, const struct stat *st, int dirs_only)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->e[i].dev == (uint64_t)st->st_dev && g->e[i].ino == (uint64_t)st->st_ino &&
            (!dirs_only || g->e[i].is_dir))
            return &g->e[i];
    return NULL;
}

/* Is some folder on the way from real (a resolved path) up to the root the
 * file st?  (real itself included.) */
static int under(const char *real, const struct stat *st)
{
    char *p = strdup(real);
    int found = 0;
    while (p && !found) {
        struct stat a;
        if (stat(p, &a) == 0 && a.st_dev == st->st_dev && a.st_ino == st->st_ino)
            found = 1;
        if (!strcmp(p, "/"))
            break;
        char *up = folder_of(p);
        free(p);
        p = up;
    }
    free(p);
    return found;
}

/* An existing directory that may be replaced as a whole: an empty one or a
 * checkpoint directory (a config.json in it).  Anything else, say a home
 * directory named by mistake, is not deleted for a model. */
static int replaceable_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int empty = 1, config = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        empty = 0;
        config |= !strcmp(de->d_name, "config.json");
    }
    closedir(d);
    return empty || config;
}

static int refuse(tc_output_verdict *verdict, tc_output_verdict why)
{
    if (verdict)
        *verdict = why;
    return TC_ERR;
}

static int check(tc_pathguard *g, const char *path, const char *p, tc_output_kind kind, int replace,
                 tc_output_verdict *verdict, tc_error *err)
{
    struct stat st;
    int exists = stat(p, &st) == 0;
    const tc_pathguard_entry *e;

    /* The output is an input, or a file of an input directory. */
    if (exists && (e = find_id(g, &st, 0)) != NULL) {
        if (e->inner)
            return tc_err(err, "%s: would overwrite %s, part of the input %s", path, e->inner, g->inputs[e->input]);
        return tc_err(err, "%s: would overwrite the input %s", path, g->inputs[e->input]);
    }

    /* It would go inside an input directory: from the nearest folder on its
     * way that exists, walk the resolved path up to the root. */
    char *folder = folder_of(p), *up = folder ? strdup(folder) : NULL, *real = NULL;
    while (up && !(real = realpath(up, NULL)) && strcmp(up, "/") && strcmp(up, ".")) {
        char *next = folder_of(up);
        free(up);
        up = next;
    }
    free(up);
    if (!folder || !real) {
        free(folder);
        free(real);
        return tc_err(err, "%s: out of memory or no folder on its way can be resolved", path);
    }
    for (up = strdup(real); up;) {
        struct stat a;
        if (stat(up, &a) == 0 && (e = find_id(g, &a, 1)) != NULL) {
            int rc = tc_err(err, "%s: would be written inside the input %s", path, g->inputs[e->input]);
            free(up);
            free(real);
            free(folder);
            return rc;
        }
        if (!strcmp(up, "/")) {
            free(up);
            break;
        }
        char *next = folder_of(up);
        free(up);
        up = next;
    }
    free(real);
    struct stat fs;
    if (stat(folder, &fs) != 0 || !S_ISDIR(fs.st_mode)) {
        int rc = tc_err(err, "%s: its folder %s does not exist", path, folder);
        free(folder);
        return rc;
    }
    free(folder);
    const size_t len = strlen(path);
    if (kind == TC_OUTPUT_FILE && len > 0 && path[len - 1] == '/')
        return tc_err(err, "%s: names a directory, but the output is a file", path);

    /* An existing directory holding an input: replacing it deletes the input. */
    if (exists && S_ISDIR(st.st_mode)) {
        for (size_t i = 0; i < g->n; i++)
            if (g->e[i].real && under(g->e[i].real, &st))
                return tc_err(err, "%s: holds the input %s, which replacing it would delete", path,
                              g->e[i].inner ? g->e[i].inner : g->inputs[g->e[i].input]);
    }

    /* Two outputs of one run to the same place. */
    const char *name = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
    for (size_t i = 0; i < g->n_outs; i++)
        if (g->outs[i].dev == (uint64_t)fs.st_dev && g->outs[i].ino == (uint64_t)fs.st_ino &&
            !strcmp(g->outs[i].name, name))
            return tc_err(err, "%s: is also the output %s", path, g->outs[i].path);

    if (exists) {
        if (!replace) {
            tc_err(err, "%s: already exists", path);
            return refuse(verdict, TC_OUTPUT_EXISTS);
        }
        if (S_ISDIR(st.st_mode) && kind == TC_OUTPUT_FILE)
            return tc_err(err, "%s: is a directory, but the output is a file", path);
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
            return tc_err(err, "%s: exists and is neither a regular file nor a directory", path);
        if (S_ISDIR(st.st_mode) && !replaceable_dir(p))
            return tc_err(err, "%s: is a directory that is neither empty nor a checkpoint (no config.json): "
                          "it is not replaced", path);
    }

    tc_pathguard_output *o = realloc(g->outs, (g->n_outs + 1) * sizeof *o);
    if (!o)
        return tc_err(err, "%s: out of memory", path);
    g->outs = o;
    o += g->n_outs;
    o->dev = (uint64_t)fs.st_dev;
    o->ino = (uint64_t)fs.st_ino;
    o->name = strdup(name);
    o->path = strdup(path);
    g->n_outs++;
    if (!o->name || !o->path)
        return tc_err(err, "%s: out of memory", path);
    return TC_OK;
}

int tc_pathguard_check(tc_pathguard *g, const char *path, tc_output_kind kind, int replace,
                       tc_output_verdict *verdict, tc_error *err)
{
    if (verdict)
        *verdict = TC_OUTPUT_FREE;
    char *p = path && *path ? strip_slashes(path) : NULL;
    int rc = !path || !*path ? tc_err(err, "the output path is empty")
             : !p            ? tc_err(err, "%s: out of memory", path)
                             : check(g, path, p, kind, replace, verdict, err);
    free(p);
    if (rc != TC_OK && verdict && *verdict == TC_OUTPUT_FREE)
        *verdict = TC_OUTPUT_CLASH;
    return rc;
}
