/* The installed library as a program that uses it sees it.  `cmake --install`
 * puts this build into a fresh prefix, then:
 *  - the layout: libtc.a, libtc.so with its SONAME and version, tc.pc, the
 *    CMake package, the tools (whose --version is tc_version()), and under
 *    include/tc exactly the headers of the three layers' include folders;
 *  - every installed header has extern "C" guards, includes only installed
 *    headers and system ones (never a private header such as
 *    kernels_internal.h), compiles on its own as C11 with nothing but
 *    `pkg-config --cflags tc`, and all of them together as C++ (g++, else
 *    clang++ or c++; skipped when there is none);
 *  - tests/install/consumer.c built with `pkg-config --cflags --libs tc`
 *    (libtc.so, and libtc.a from `--static`) and by a CMake project with
 *    find_package(tc) (tc::tc and tc::tc_static) opens an asset model through
 *    the public API and prints its shape and tc_version().
 * The programs are built with the compiler of this build; a sanitizer build's
 * tc.pc and tc::tc carry -fsanitize for the link, so they link there too. */
#include "testutil.h"

#include <dirent.h>
#include <stdarg.h>
#include <limits.h>

#include "tc/version.h"

static const char *const layers[] = {"formats", "calib", "libcompress"};
static const char *const tools[] = {"tc-analyze", "tc-prune", "tc-quantize", "tc-run", "tc-synth"};

#define MAX_HEADERS 256
#define CMD_MAX 8192

/* snprintf that counts a truncated result as a failed check. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void fmt_into(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    CHECK_MSG(n >= 0 && (size_t)n < cap, "%zu bytes are too few for '%s'", cap, buf);
}
#define SPRINTF(buf, ...) fmt_into(buf, sizeof buf, __VA_ARGS__)

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* Runs cmd with stderr merged into its output; prints both when the exit
 * status is not the expected one.  Returns the status. */
static int run_logged(const char *cmd, char **out)
{
    char full[CMD_MAX + 16];
    SPRINTF(full, "%s 2>&1", cmd);
    int rc = tu_run(full, out);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n%s\n", rc, cmd, *out);
    return rc;
}

/* The .h files of a folder, sorted, into names[]; returns how many. */
static int list_headers(const char *dir, char names[][NAME_MAX + 1], int cap)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort), k = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(ents[i]->d_name);
        if (len > 2 && strcmp(ents[i]->d_name + len - 2, ".h") == 0 && k < cap)
            snprintf(names[k++], NAME_MAX + 1, "%s", ents[i]->d_name);
        free(ents[i]);
    }
    if (n >= 0)
        free(ents);
    return k;
}

static int in_list(const char *name, char names[][NAME_MAX + 1], int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The value of `readelf -d`'s line naming tag (SONAME, NEEDED), all of them
 * joined by spaces, into buf; returns readelf's status. */
static int elf_dynamic(const char *path, const char *tag, char *buf, size_t cap)
{
    char cmd[CMD_MAX], *out;
    SPRINTF(cmd, "readelf -d '%s'", path);
    int rc = run_logged(cmd, &out);
    size_t len = 0;
    buf[0] = '\0';
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char *open = strchr(line, '['), *close = open ? strchr(open, ']') : NULL;
        if (!strstr(line, tag) || !close)
            continue;
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%.*s", len ? " " : "",
                                (int)(close - open - 1), open + 1);
    }
    free(out);
    return rc;
}

static char prefix[PATH_MAX], libdir[PATH_MAX], incdir[PATH_MAX], bindir[PATH_MAX], work[PATH_MAX];
static char installed[MAX_HEADERS][NAME_MAX + 1];
static int n_installed;
static char soname[256];

static void check_layout(const char *source)
{
    char path[PATH_MAX + 64], real[PATH_MAX], buf[1024];
    SPRINTF(path, "%s/libtc.a", libdir);
    CHECK_MSG(is_file(path), "%s is not installed", path);

    /* libtc.so -> libtc.so.SOVERSION (the SONAME) -> libtc.so.VERSION */
    SPRINTF(path, "%s/libtc.so", libdir);
    CHECK_MSG(realpath(path, real) != NULL, "%s is not installed", path);
    CHECK(elf_dynamic(path, "(SONAME)", soname, sizeof soname) == 0);
    char want_real[128];
    SPRINTF(want_real, "libtc.so.%s", tc_version());
    const char *base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
    CHECK_MSG(strcmp(base, want_real) == 0, "libtc.so is %s, not %s", base, want_real);
    size_t sl = strlen(soname);
    CHECK_MSG(sl > strlen("libtc.so.") && strncmp(soname, want_real, sl) == 0 &&
                  (want_real[sl] == '.' || want_real[sl] == '\0'),
              "SONAME '%s' is not a prefix of libtc.so.%s", soname, tc_version());
    SPRINTF(path, "%s/%s", libdir, soname);
    CHECK_MSG(is_file(path), "%s (the SONAME) is not installed", path);

    static const char *const pkg[] = {"pkgconfig/tc.pc", "cmake/tc/tcConfig.cmake",
                                      "cmake/tc/tcConfigVersion.cmake", "cmake/tc/tcTargets.cmake"};
    for (size_t i = 0; i < sizeof pkg / sizeof pkg[0]; i++) {
        SPRINTF(path, "%s/%s", libdir, pkg[i]);
        CHECK_MSG(is_file(path), "%s is not installed", path);
    }

    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        char cmd[CMD_MAX], *out;
        SPRINTF(cmd, "'%s/%s' --version", bindir, tools[i]);
        SPRINTF(buf, "%s %s\n", tools[i], tc_version());
        CHECK_MSG(run_logged(cmd, &out) == 0 && strcmp(out, buf) == 0, "%s --version printed '%s'", tools[i],
                  out);
        free(out);
    }

    /* include/tc holds the three layers' public headers, and no private one. */
    n_installed = list_headers(incdir, installed, MAX_HEADERS);
    int n_public = 0;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        static char names[MAX_HEADERS][NAME_MAX + 1];
        SPRINTF(path, "%s/%s/include/tc", source, layers[l]);
        int n = list_headers(path, names, MAX_HEADERS);
        CHECK_MSG(n > 0, "no headers in %s", path);
        for (int i = 0; i < n; i++)
            CHECK_MSG(in_list(names[i], installed, n_installed), "%s/%s is not installed", path, names[i]);
        n_public += n;
        SPRINTF(path, "%s/%s", source, layers[l]);
        n = list_headers(path, names, MAX_HEADERS);
        for (int i = 0; i < n; i++)
            CHECK_MSG(!in_list(names[i], installed, n_installed), "the private header %s/%s is installed", path,
                      names[i]);
    }
    CHECK_MSG(n_installed == n_public, "%d headers installed, the layers have %d", n_installed, n_public);
}

/* Each installed header: guards for C++, and includes that resolve in the
 * installed tree (or are system headers). */
static void check_header_text(void)
{
    for (int i = 0; i < n_installed; i++) {
        char path[PATH_MAX + NAME_MAX + 2];
        SPRINTF(path, "%s/%s", incdir, installed[i]);
        char *text = tu_slurp(path);
        CHECK_MSG(text != NULL, "cannot read %s", path);
        if (!text)
            continue;
        CHECK_MSG(strstr(text, "#ifdef __cplusplus\nextern \"C\" {") != NULL, "tc/%s has no extern \"C\" guard",
                  installed[i]);
        for (char *p = strstr(text, "#include"); p; p = strstr(p + 1, "#include")) {
            const char *q = p + strlen("#include");
            while (*q == ' ')
                q++;
            char name[NAME_MAX + 1] = "";
            if (sscanf(q, "\"tc/%255[^\"]\"", name) == 1 || sscanf(q, "<tc/%255[^>]>", name) == 1)
                CHECK_MSG(in_list(name, installed, n_installed), "tc/%s includes tc/%s, which is not installed",
                          installed[i], name);
            else
                CHECK_MSG(*q == '<', "tc/%s includes %.40s, which is not an installed header", installed[i], q);
        }
        free(text);
    }
}

/* Each header alone as C11, then all of them in one C++ translation unit.
 * Returns 0, or 1 when no C++ compiler was found. */
static int check_header_compiles(const char *cc, const char *pkgcfg)
{
    char dir[PATH_MAX + 16], path[PATH_MAX + NAME_MAX + 32], cmd[CMD_MAX], *out;
    SPRINTF(dir, "%s/headers", work);
    CHECK(mkdir(dir, 0755) == 0);
    SPRINTF(cmd, "%s -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only %s", cc, pkgcfg);
    size_t len = strlen(cmd);
    SPRINTF(path, "%s/all.cpp", dir);
    FILE *all = fopen(path, "w");
    CHECK(all != NULL);
    for (int i = 0; i < n_installed; i++) {
        SPRINTF(path, "%s/%.*s.c", dir, (int)strlen(installed[i]) - 2, installed[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f) {
            fprintf(f, "#include <tc/%s>\n", installed[i]);
            fclose(f);
        }
        if (all)
            fprintf(all, "#include <tc/%s>\n", installed[i]);
        if (len < sizeof cmd)
            len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s'", path);
    }
    if (all)
        fclose(all);
    CHECK_MSG(len < sizeof cmd, "too many headers for one command line");
    CHECK_MSG(run_logged(cmd, &out) == 0, "the installed headers do not compile one by one as C11");
    free(out);

    static const char *const cxx[] = {"g++", "clang++", "c++"};
    for (size_t i = 0; i < sizeof cxx / sizeof cxx[0]; i++) {
        SPRINTF(cmd, "command -v %s >/dev/null", cxx[i]);
        if (system(cmd) != 0)
            continue;
        SPRINTF(cmd, "%s -std=c++11 -Wall -Wextra -pedantic -Werror -fsyntax-only %s '%s/all.cpp'",
                 cxx[i], pkgcfg, dir);
        CHECK_MSG(run_logged(cmd, &out) == 0, "the installed headers do not compile as C++ (%s)", cxx[i]);
        free(out);
        printf("headers compiled as C++ by %s\n", cxx[i]);
        return 0;
    }
    return 1;
}

/* Runs a built consumer on model and checks what it prints. */
static void check_consumer(const char *exe, const char *model, int shared)
{
    char cmd[CMD_MAX], want[256], needed[1024], *out;
    SPRINTF(cmd, "'%s' '%s'", exe, model);
    CHECK_MSG(run_logged(cmd, &out) == 0, "%s failed", exe);
    SPRINTF(want, "tc %s\nformat hf\narch llama\nlayers 16\ndim 256\n", tc_version());
    CHECK_MSG(strncmp(out, want, strlen(want)) == 0, "%s printed:\n%s", exe, out);
    free(out);
    CHECK(elf_dynamic(exe, "(NEEDED)", needed, sizeof needed) == 0);
    if (shared)
        CHECK_MSG(*soname && strstr(needed, soname) != NULL, "%s needs '%s', not %s", exe, needed, soname);
    else
        CHECK_MSG(strstr(needed, "libtc") == NULL, "%s (static) needs '%s'", exe, needed);
}

int main(void)
{
    const char *source = env_or("TC_SOURCE", ".");
    const char *cmake = env_or("TC_CMAKE", "cmake");
    const char *cc = env_or("TC_CC", "cc");
    const char *pkgconfig = env_or("TC_PKG_CONFIG", "pkg-config");
    char cmd[CMD_MAX], *out;

    CHECK(tu_tmpdir(work, sizeof work) != NULL);
    SPRINTF(prefix, "%s/prefix", work);
    SPRINTF(libdir, "%s/%s", prefix, env_or("TC_INSTALL_LIBDIR", "lib"));
    SPRINTF(incdir, "%s/%s/tc", prefix, env_or("TC_INSTALL_INCLUDEDIR", "include"));
    SPRINTF(bindir, "%s/%s", prefix, env_or("TC_INSTALL_BINDIR", "bin"));

    SPRINTF(cmd, "'%s' --install '%s' --prefix '%s'", cmake, tu_bin(), prefix);
    if (run_logged(cmd, &out) != 0) {
        free(out);
        CHECK_MSG(0, "cmake --install failed");
        return tu_finish("test_install");
    }
    free(out);

    check_layout(source);
    check_header_text();

    /* What a program's build asks pkg-config, with the installed tree first. */
    char pc[CMD_MAX / 4], cflags[CMD_MAX / 4] = "", libs[CMD_MAX / 4] = "", libs_static[CMD_MAX / 4] = "";
    SPRINTF(pc, "PKG_CONFIG_PATH='%s/pkgconfig' '%s'", libdir, pkgconfig);
    const struct {
        const char *args;
        char *dst;
    } queries[] = {{"--cflags", cflags}, {"--libs", libs}, {"--static --libs", libs_static}};
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        SPRINTF(cmd, "%s %s tc", pc, queries[i].args);
        CHECK_MSG(run_logged(cmd, &out) == 0, "pkg-config %s tc failed", queries[i].args);
        out[strcspn(out, "\n")] = '\0';
        fmt_into(queries[i].dst, CMD_MAX / 4, "%s", out);
        free(out);
    }
    CHECK_MSG(strstr(libs, "-ltc") && strstr(libs, "-lcjson"), "pkg-config --libs tc: %s", libs);
    CHECK_MSG(strstr(libs_static, "-lpcre2-8") && strstr(libs_static, "-lz") && strstr(libs_static, "-lopenblas"),
              "pkg-config --static --libs tc: %s", libs_static);

    const char *skipped = NULL;
    if (check_header_compiles(cc, cflags))
        skipped = "no C++ compiler (g++, clang++, c++): the headers were not compiled as C++";

    char model[PATH_MAX];
    if (!tu_asset(model, sizeof model, "models/deep16-hf")) {
        skipped = "the asset models/deep16-hf is absent: no program was built against the installed tree";
    } else {
        /* pkg-config, shared: found at run time through the rpath. */
        char exe[PATH_MAX + 32];
        SPRINTF(exe, "%s/consumer", work);
        SPRINTF(cmd, "%s -Wall -Wextra -Werror -o '%s' '%s/tests/install/consumer.c' %s %s -Wl,-rpath,'%s'",
                 cc, exe, source, cflags, libs, libdir);
        if (run_logged(cmd, &out) == 0)
            check_consumer(exe, model, 1);
        else
            CHECK_MSG(0, "the consumer does not build with pkg-config --cflags --libs tc");
        free(out);

        /* pkg-config --static: libtc.a named as the file, since -ltc finds
         * libtc.so first. */
        char *ltc = strstr(libs_static, "-ltc ");
        if (!ltc && strlen(libs_static) >= 4 && strcmp(libs_static + strlen(libs_static) - 4, "-ltc") == 0)
            ltc = libs_static + strlen(libs_static) - 4;
        CHECK_MSG(ltc != NULL, "no -ltc in pkg-config --static --libs tc: %s", libs_static);
        if (ltc) {
            SPRINTF(exe, "%s/consumer_static", work);
            SPRINTF(cmd, "%s -Wall -Wextra -Werror -o '%s' '%s/tests/install/consumer.c' %s %.*s-l:libtc.a%s",
                     cc, exe, source, cflags, (int)(ltc - libs_static), libs_static, ltc + 4);
            if (run_logged(cmd, &out) == 0)
                check_consumer(exe, model, 0);
            else
                CHECK_MSG(0, "the consumer does not build with pkg-config --static --libs tc");
            free(out);
        }

        /* find_package(tc VERSION EXACT): tc::tc and tc::tc_static. */
        SPRINTF(cmd,
                "'%s' -S '%s/tests/install' -B '%s/cmake' -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER='%s' "
                "-DCMAKE_PREFIX_PATH='%s' -DTC_EXPECT_VERSION=%s && '%s' --build '%s/cmake'",
                cmake, source, work, cc, prefix, tc_version(), cmake, work);
        if (run_logged(cmd, &out) == 0) {
            SPRINTF(exe, "%s/cmake/consumer", work);
            check_consumer(exe, model, 1);
            SPRINTF(exe, "%s/cmake/consumer_static", work);
            check_consumer(exe, model, 0);
        } else {
            CHECK_MSG(0, "the find_package(tc) consumer does not build");
        }
        free(out);
    }

    if (tu_failures) {
        fprintf(stderr, "the installed tree is kept in %s\n", work);
        return tu_finish("test_install");
    }
    SPRINTF(cmd, "rm -rf '%s'", work);
    CHECK(system(cmd) == 0);
    if (skipped)
        return tu_skip(skipped);
    return tu_finish("test_install");
}
