/* Tiny test harness shared by every test program.
 *
 * CHECK(cond) records a failure and goes on; the program's exit code is the
 * verdict (0 pass, 1 fail, 77 skipped).  Assets are found through TC_ASSETS;
 * a test that needs one that is missing calls tu_skip(), which reports
 * "skipped" to ctest rather than passing. */
#ifndef TC_TESTUTIL_H
#define TC_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* SANITIZED: built with AddressSanitizer, where everything runs unoptimised
 * and the heaviest tests run on less data. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int tu_failures;
static int tu_checks;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if (!(cond)) {                                                                       \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                 \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if (!(cond)) {                                                                       \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

/* A call that must succeed: prints the library's message when it does not. */
#define CHECK_OK(call, errp)                                                                 \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if ((call) != 0) {                                                                   \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, (errp)->msg); \
        }                                                                                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                \
    do {                                                                                     \
        double tu_a = (a), tu_b = (b);                                                       \
        tu_checks++;                                                                         \
        if (!(fabs(tu_a - tu_b) <= (tol))) {                                                 \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g (tol %g)\n",     \
                    __FILE__, __LINE__, #a, tu_a, #b, tu_b, (double)(tol));                  \
        }                                                                                    \
    } while (0)

/* The asset folder, or NULL when absent. */
static inline const char *tu_assets(void)
{
    const char *a = getenv("TC_ASSETS");
    if (!a || !*a)
        a = "../shared/assets";
    struct stat st;
    if (stat(a, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return a;
}

/* Joins the asset folder and a relative path into buf; returns NULL when the
 * file is absent. */
static inline const char *tu_asset(char *buf, size_t n, const char *rel)
{
    const char *a = tu_assets();
    if (!a)
        return NULL;
    snprintf(buf, n, "%s/%s", a, rel);
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* A fresh temporary directory (removed by the OS's tmp cleaning; tests keep
 * their files small). */
static inline const char *tu_tmpdir(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/tc-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf);
}

/* Runs a shell command, capturing its stdout into a malloc'd string (*out,
 * always set); returns its exit status, or -1 when it did not exit. */
static inline int tu_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, len = 0, k;
    char *buf = malloc(cap);
    while (p && (k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    *out = buf;
    if (!p)
        return -1;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A whole file as malloc'd bytes with a NUL after the last one (so text
 * can be used as a string), its size in *n; NULL if it cannot be read. */
static inline uint8_t *tu_read_file(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *b = len >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)len + 1) : NULL;
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (!b)
        return NULL;
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

/* A whole file as a malloc'd string, or NULL. */
static inline char *tu_slurp(const char *path)
{
    size_t n;
    return (char *)tu_read_file(path, &n);
}

/* Where the built tools are (TC_BIN, set by ctest). */
static inline const char *tu_bin(void)
{
    const char *b = getenv("TC_BIN");
    return b && *b ? b : "./build";
}

/* Beside a checkpoint written for tests/reference/check_written.py: tc's
 * logits on it (tc_logits.f32, [n][vocab] float32) and the tokens they
 * came from (tokens.json, named after the case).  0 when both were written. */
static inline int tu_write_logits(const char *dir, const char *name, const int32_t *tokens, size_t n,
                                  const float *logits, size_t vocab)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tc_logits.f32", dir);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(logits, sizeof *logits, n * vocab, f) == n * vocab;
    if (f)
        ok &= fclose(f) == 0;
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    f = ok ? fopen(path, "w") : NULL;
    if (!f)
        return -1;
    fprintf(f, "{\"case\": \"%s\", \"tokens\": [", name);
    for (size_t t = 0; t < n; t++)
        fprintf(f, "%s%d", t ? ", " : "", (int)tokens[t]);
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static inline int tu_skip(const char *why)
{
    printf("SKIPPED: %s\n", why);
    return 77;
}

static inline int tu_finish(const char *name)
{
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, tu_checks);
    return 0;
}

#endif
