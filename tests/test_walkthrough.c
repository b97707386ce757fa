/* The README's walkthrough, run exactly as written, and the figures the README
 * quotes from it checked against what it prints.
 *
 * The walkthrough is the README's shell block that starts with
 * `A=../shared/assets`.  It runs in a scratch folder laid out as a clone is:
 * `build` is the build directory, `../shared/assets` the assets.  Every
 * command must succeed.  The README then quotes figures between the markers
 * <!-- walkthrough figures --> and <!-- /walkthrough figures -->: each number
 * there must be printed by the run, to the digits the README gives (one unit
 * of the last digit apart, for the last bits of floating point that other
 * CPUs' BLAS kernels may round differently).
 *
 * It takes minutes (a 16-layer model analysed, pruned, quantized with GPTQ and
 * compared), so the sanitizer build leaves it out (label "walkthrough"). */
#include "testutil.h"

#include <ctype.h>
#include <unistd.h>

#define FIG_OPEN "<!-- walkthrough figures -->"
#define FIG_CLOSE "<!-- /walkthrough figures -->"

/* The walkthrough's lines, from README text; NULL when absent. */
static char *walkthrough(const char *readme)
{
    const char *start = strstr(readme, "```sh\nA=../shared/assets\n");
    if (!start)
        return NULL;
    start += strlen("```sh\n");
    const char *end = strstr(start, "\n```");
    if (!end)
        return NULL;
    size_t n = (size_t)(end - start) + 1;
    char *s = malloc(n + 1);
    memcpy(s, start, n);
    s[n] = 0;
    return s;
}

/* A decimal number's value and how many digits follow its point. */
typedef struct fig {
    double v;
    int decimals;
    char text[32];
} fig;

/* The numbers of text with a decimal point (a figure, not a count or an
 * option), in order. */
static size_t numbers(const char *text, fig *out, size_t max)
{
    size_t n = 0;
    for (const char *p = text; *p && n < max; p++) {
        if (!isdigit((unsigned char)*p) || (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '.')))
            continue;
        const char *q = p;
        while (isdigit((unsigned char)*q))
            q++;
        if (*q != '.' || !isdigit((unsigned char)q[1])) {
            p = q - 1;
            continue;
        }
        const char *d = q + 1;
        while (isdigit((unsigned char)*d))
            d++;
        size_t len = (size_t)(d - p) < sizeof out[n].text ? (size_t)(d - p) : sizeof out[n].text - 1;
        memcpy(out[n].text, p, len);
        out[n].text[len] = 0;
        out[n].v = strtod(out[n].text, NULL);
        out[n].decimals = (int)(d - q - 1);
        n++;
        p = d - 1;
    }
    return n;
}

int main(void)
{
    char assets[512], dir[256], path[1024];
    if (!tu_asset(assets, sizeof assets, "models/deep16-hf/config.json"))
        return tu_skip("the walkthrough's model, models/deep16-hf, is not in the assets");
    const char *src = getenv("TC_SOURCE");
    snprintf(path, sizeof path, "%s/README.md", src && *src ? src : ".");
    char *readme = tu_slurp(path);
    CHECK_MSG(readme != NULL, "cannot read %s", path);
    char *script = readme ? walkthrough(readme) : NULL;
    CHECK_MSG(script != NULL, "README.md has no walkthrough (a sh block starting with A=../shared/assets)");
    const char *fo = readme ? strstr(readme, FIG_OPEN) : NULL, *fc = fo ? strstr(fo, FIG_CLOSE) : NULL;
    CHECK_MSG(fo && fc, "README.md quotes no walkthrough figures between %s and %s", FIG_OPEN, FIG_CLOSE);
    if (!script || !fo || !fc || !tu_tmpdir(dir, sizeof dir)) {
        free(script);
        free(readme);
        return tu_finish("test_walkthrough");
    }

    /* A clone's layout: work/build and shared/assets beside work. */
    char cmd[8192], bin[1024], *out = NULL;
    if (!realpath(tu_bin(), bin))
        snprintf(bin, sizeof bin, "%s", tu_bin());
    tu_asset(assets, sizeof assets, "");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/work' '%s/shared' && ln -s '%s' '%s/work/build' && ln -s '%s' '%s/shared/assets'",
             dir, dir, bin, dir, assets, dir);
    CHECK(tu_run(cmd, &out) == 0);
    free(out);
    snprintf(path, sizeof path, "%s/work/walkthrough.sh", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs("set -e\n", f) >= 0 && fputs(script, f) >= 0);
    if (f)
        fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s/work' && bash walkthrough.sh 2>&1", dir);
    int rc = tu_run(cmd, &out);
    printf("%s", out); /* what a user of the README sees */
    CHECK_MSG(rc == 0, "the walkthrough failed (exit %d)", rc);

    /* Every quoted figure was printed, to the README's digits. */
    static fig quoted[256], printed[65536];
    size_t len = (size_t)(fc - fo);
    char *block = malloc(len + 1);
    memcpy(block, fo, len);
    block[len] = 0;
    size_t nq = numbers(block, quoted, 256);
    free(block);
    size_t np = numbers(out, printed, sizeof printed / sizeof printed[0]);
    CHECK_MSG(nq > 0, "the README quotes no figures");
    for (size_t i = 0; i < nq; i++) {
        double unit = pow(10.0, -quoted[i].decimals);
        int found = 0;
        for (size_t j = 0; j < np && !found; j++)
            found = fabs(printed[j].v - quoted[i].v) <= 1.0001 * unit;
        CHECK_MSG(found, "the README quotes %s, which the walkthrough does not print", quoted[i].text);
    }
    printf("walkthrough ran; %zu quoted figures, each printed\n", nq);
    free(out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    tu_run(cmd, &out);
    free(out);
    free(script);
    free(readme);
    return tu_finish("test_walkthrough");
}
