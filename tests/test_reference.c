/* tc's forward pass against Hugging Face transformers, family by family.
 *
 * Every directory under $TC_SOURCE/tests/reference/data/ is one case that
 * tests/reference/make_refs.py wrote: a tiny random-weight checkpoint saved by
 * transformers (config.json + bfloat16 model.safetensors), one token sequence
 * (ref.json) and the logits transformers computed for it in float64
 * (logits.f32, [n_tokens][vocab]).  tc opens the checkpoint, runs the
 * sequence and must match: max |tc - ref| <= 1e-4 * max |ref|, and at every
 * position tc's argmax must be a token whose reference logit is within that
 * tolerance of the reference maximum (the same argmax, unless the reference's
 * top two are closer than the tolerance).
 *
 * The mutation table then proves that the comparison can fail: each entry
 * re-opens a case, changes one thing in the opened model (a config field, a
 * role) and checks that the logits now differ clearly (max rel diff > 1e-3 or
 * some argmax differs).  A trait whose mutation still passes is not tested by
 * its case.
 *
 * The data is committed, so a missing data directory is a failure, not a skip,
 * and every case directory present must be one that was run. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "tc/forward.h"
#include "tc/model.h"

#define REL_TOL 1e-4      /* pass: max |diff| <= REL_TOL * max |ref| */
#define MUTATED_REL 1e-3  /* a mutation must move the logits by more than this (or an argmax) */

/* ---- One case's reference data --------------------------------------------- */

typedef struct ref_case {
    char name[256];
    char dir[4096 + 256 + 2];
    int n_tokens, vocab;
    int32_t *tokens;   /* n_tokens */
    float *logits;     /* [n_tokens][vocab] */
    double max_abs;    /* max |logit| over the stored floats */
} ref_case;

static void ref_case_free(ref_case *c)
{
    free(c->tokens);
    free(c->logits);
    c->tokens = NULL;
    c->logits = NULL;
}

/* Reads ref.json and the logits file; on failure writes why into `why`. */
static int ref_case_load(ref_case *c, const char *root, const char *name, char *why, size_t why_n)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/%s", root, name);
    char path[sizeof c->dir + 16];
    snprintf(path, sizeof path, "%s/ref.json", c->dir);
    char *text = tu_slurp(path);
    if (!text) {
        snprintf(why, why_n, "%s: cannot read", path);
        return -1;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    int rc = -1;
    const cJSON *nt = cJSON_GetObjectItemCaseSensitive(j, "n_tokens");
    const cJSON *vo = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    const cJSON *lf = cJSON_GetObjectItemCaseSensitive(j, "logits_file");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "case");
    if (!j || !cJSON_IsNumber(nt) || !cJSON_IsNumber(vo) || !cJSON_IsArray(toks) ||
        !cJSON_IsString(lf) || !cJSON_IsString(cn)) {
        snprintf(why, why_n, "%s: not a reference (n_tokens, vocab, tokens, logits_file, case)", path);
        goto done;
    }
    if (strcmp(cn->valuestring, name) != 0) {
        snprintf(why, why_n, "%s: case \"%s\" in directory \"%s\"", path, cn->valuestring, name);
        goto done;
    }
    c->n_tokens = nt->valueint;
    c->vocab = vo->valueint;
    if (c->n_tokens < 1 || c->n_tokens > 1 << 20 || c->vocab < 2 || c->vocab > 1 << 22 ||
        cJSON_GetArraySize(toks) != c->n_tokens || strchr(lf->valuestring, '/') || strlen(lf->valuestring) > 200) {
        snprintf(why, why_n, "%s: bad n_tokens, vocab, tokens or logits_file", path);
        goto done;
    }
    c->tokens = malloc((size_t)c->n_tokens * sizeof *c->tokens);
    if (!c->tokens) {
        snprintf(why, why_n, "%s: out of memory", path);
        goto done;
    }
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, toks)
    {
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= c->vocab) {
            snprintf(why, why_n, "%s: token %d is not in [0, %d)", path, i, c->vocab);
            goto done;
        }
        c->tokens[i++] = (int32_t)t->valueint;
    }

    char lpath[sizeof c->dir + 256];
    snprintf(lpath, sizeof lpath, "%s/%s", c->dir, lf->valuestring);
    size_t nbytes;
    uint8_t *raw = tu_read_file(lpath, &nbytes);
    size_t want = (size_t)c->n_tokens * (size_t)c->vocab * 4;
    if (!raw || nbytes != want) {
        snprintf(why, why_n, "%s: %s (want %zu bytes)", lpath, raw ? "wrong size" : "cannot read",
                 want);
        free(raw);
        goto done;
    }
    c->logits = malloc(want);
    if (!c->logits) {
        free(raw);
        snprintf(why, why_n, "%s: out of memory", lpath);
        goto done;
    }
    for (size_t k = 0; k < want / 4; k++) { /* little-endian float32, whatever the host */
        uint32_t u = (uint32_t)raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 |
                     (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
        memcpy(&c->logits[k], &u, 4);
        double a = fabs((double)c->logits[k]);
        if (!(a < 1e30)) {
            snprintf(why, why_n, "%s: non-finite logit at %zu", lpath, k);
            free(raw);
            goto done;
        }
        if (a > c->max_abs)
            c->max_abs = a;
    }
    free(raw);
    rc = c->max_abs > 0 ? 0 : -1;
    if (rc)
        snprintf(why, why_n, "%s: every logit is zero", lpath);
done:
    cJSON_Delete(j);
    if (rc)
        ref_case_free(c);
    return rc;
}

/* ---- Running tc ---------------------------------------------------------------- */

typedef struct logit_sink {
    float *buf; /* [n_tokens][vocab] */
    size_t n_tokens;
    int vocab;
    size_t filled;
} logit_sink;

static int sink_logits(void *ctx, const float *logits, size_t tok0, size_t n_tokens, int vocab,
                       tc_error *err)
{
    logit_sink *s = ctx;
    if (vocab != s->vocab || tok0 != s->filled || tok0 + n_tokens > s->n_tokens)
        return tc_err(err, "logits observer: chunk %zu+%zu of vocab %d, expected %zu.. of %d", tok0,
                      n_tokens, vocab, s->filled, s->vocab);
    memcpy(s->buf + tok0 * (size_t)vocab, logits, n_tokens * (size_t)vocab * sizeof *logits);
    s->filled += n_tokens;
    return TC_OK;
}

typedef void (*mutate_fn)(tc_model *m);

/* Opens the case's checkpoint, applies mutate (may be NULL) and runs the
 * sequence; logits must hold n_tokens * vocab floats. */
static int run_tc(const ref_case *c, mutate_fn mutate, float *logits, tc_error *err)
{
    tc_model m;
    if (tc_model_open(&m, c->dir, err))
        return TC_ERR;
    int rc = TC_ERR;
    if (m.cfg.vocab_size != c->vocab) {
        tc_err(err, "%s: tc reads vocab %d, the reference has %d", c->dir, m.cfg.vocab_size, c->vocab);
        goto done;
    }
    if (mutate)
        mutate(&m);
    size_t offsets[2] = {0, (size_t)c->n_tokens};
    tc_batch b = {.tokens = c->tokens, .offsets = offsets, .n_seqs = 1};
    if (tc_batch_check(&m, &b, c->name, err))
        goto done;
    logit_sink sink = {.buf = logits, .n_tokens = (size_t)c->n_tokens, .vocab = c->vocab};
    tc_observer obs = {.ctx = &sink, .logits = sink_logits};
    tc_forward_opts opts = {.n_threads = 1, .observers = &obs, .n_observers = 1};
    if (tc_forward(&m, &b, &opts, err))
        goto done;
    if (sink.filled != (size_t)c->n_tokens) {
        tc_err(err, "%s: tc produced logits for %zu of %d tokens", c->dir, sink.filled, c->n_tokens);
        goto done;
    }
    rc = TC_OK;
done:
    tc_model_close(&m);
    return rc;
}

/* ---- Comparing -------------------------------------------------------------------- */

typedef struct verdict {
    int ran;          /* tc opened and ran the case */
    double rel;       /* max |tc - ref| / max |ref| */
    int argmax_ok;    /* positions whose argmax agrees (within the tolerance) */
    int n_tokens;
    int pass;
    char err[512];    /* tc's message when it did not run */
} verdict;

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static verdict compare(const ref_case *c, const float *got)
{
    verdict v = {.ran = 1, .n_tokens = c->n_tokens};
    double maxd = 0.0, tol = REL_TOL * c->max_abs;
    for (int t = 0; t < c->n_tokens; t++) {
        const float *r = c->logits + (size_t)t * c->vocab, *g = got + (size_t)t * c->vocab;
        for (int i = 0; i < c->vocab; i++) {
            double d = fabs((double)g[i] - (double)r[i]);
            if (!(d <= maxd)) /* NaN counts as infinitely far */
                maxd = d == d ? d : INFINITY;
        }
        int gi = argmax(g, c->vocab), ri = argmax(r, c->vocab);
        if (gi == ri || (double)r[ri] - (double)r[gi] <= tol)
            v.argmax_ok++;
    }
    v.rel = maxd / c->max_abs;
    v.pass = v.rel <= REL_TOL && v.argmax_ok == c->n_tokens;
    return v;
}

static verdict evaluate(const ref_case *c, mutate_fn mutate)
{
    verdict v = {.n_tokens = c->n_tokens};
    float *got = calloc((size_t)c->n_tokens * (size_t)c->vocab, sizeof *got);
    tc_error err = {{0}};
    if (!got) {
        snprintf(v.err, sizeof v.err, "out of memory");
    } else if (run_tc(c, mutate, got, &err)) {
        snprintf(v.err, sizeof v.err, "%s", err.msg);
    } else {
        v = compare(c, got);
    }
    free(got);
    return v;
}

static void print_verdict(const char *name, const char *what, const verdict *v, const char *label)
{
    char who[512];
    snprintf(who, sizeof who, *what ? "%s [%s]" : "%s", name, what);
    if (!v->ran)
        printf("%-18s %s: %s\n", who, label, v->err);
    else
        printf("%-18s max|d|/max|logit| %-9.3g argmax %4d/%-4d %s\n", who, v->rel, v->argmax_ok,
               v->n_tokens, label);
}

/* ---- Mutations: each must make its case fail --------------------------------------- */

typedef struct mutation {
    const char *case_name;
    const char *what;
    void (*mutate)(tc_model *m);
} mutation;

static void mut_norm_eps(tc_model *m)
{
    m->cfg.norm_eps = 0.5f;
}

static const mutation MUTATIONS[] = {
    {"llama", "norm_eps = 0.5", mut_norm_eps},
};

/* ---- The cases present ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the subdirectories of root, sorted; NULL when root is unreadable. */
static char **list_cases(const char *root, size_t *n)
{
    *n = 0;
    DIR *d = opendir(root);
    if (!d)
        return NULL;
    size_t cap = 16;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while (names && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4352];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            char **grown = realloc(names, (cap *= 2) * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (names)
        qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* summary.json, written with the data, lists every case make_refs.py made:
 * each must be a directory here (a deleted case would otherwise go unnoticed)
 * and each directory must be listed. */
static void check_summary(const char *root, char **names, size_t n_dirs)
{
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/summary.json", root);
    char *text = tu_slurp(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(j, "cases");
    CHECK_MSG(cJSON_IsArray(cases), "%s: missing or without a \"cases\" array", path);
    size_t listed = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "case");
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(c, "ok");
        if (!cJSON_IsString(name)) {
            CHECK_MSG(0, "%s: a case without a name", path);
            continue;
        }
        CHECK_MSG(cJSON_IsTrue(ok), "%s: make_refs.py failed case %s", path, name->valuestring);
        int found = 0;
        for (size_t i = 0; i < n_dirs && !found; i++)
            found = strcmp(names[i], name->valuestring) == 0;
        CHECK_MSG(found || !cJSON_IsTrue(ok), "case %s is listed in %s but has no directory",
                  name->valuestring, path);
        listed++;
    }
    for (size_t i = 0; i < n_dirs && cJSON_IsArray(cases); i++) {
        int found = 0;
        cJSON_ArrayForEach(c, cases)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "case");
            found |= cJSON_IsString(name) && strcmp(name->valuestring, names[i]) == 0;
        }
        CHECK_MSG(found, "directory %s is not listed in %s", names[i], path);
    }
    CHECK_MSG(listed == n_dirs, "%s lists %zu cases, %zu directories are present", path, listed,
              n_dirs);
    cJSON_Delete(j);
}

int main(void)
{
    const char *src = getenv("TC_SOURCE");
    char root[4096];
    snprintf(root, sizeof root, "%s/tests/reference/data", src && *src ? src : ".");
    size_t n_dirs = 0;
    char **names = list_cases(root, &n_dirs);
    CHECK_MSG(names != NULL, "%s: the reference data directory is missing (it is committed; "
                             "regenerate it with tests/reference/make_refs.py)", root);
    CHECK_MSG(n_dirs > 0, "%s holds no case", root);
    if (names)
        check_summary(root, names, n_dirs);

    printf("reference cases in %s (tolerance %.0e of max|logit|)\n", root, REL_TOL);
    size_t n_tested = 0, n_pass = 0;
    ref_case *cases = calloc(n_dirs + 1, sizeof *cases);
    int *loaded = calloc(n_dirs + 1, sizeof *loaded);
    for (size_t i = 0; i < n_dirs && cases && loaded; i++) {
        char why[8192];
        if (ref_case_load(&cases[i], root, names[i], why, sizeof why)) {
            CHECK_MSG(0, "%s", why);
            printf("%-18s BROKEN: %s\n", names[i], why);
            continue;
        }
        loaded[i] = 1;
        verdict v = evaluate(&cases[i], NULL);
        n_tested++;
        n_pass += v.pass;
        print_verdict(names[i], "", &v, v.pass ? "PASS" : v.ran ? "FAIL" : "REFUSED");
        CHECK_MSG(v.pass, "case %s does not match transformers", names[i]);
    }
    CHECK_MSG(n_tested == n_dirs, "%zu of %zu case directories were tested", n_tested, n_dirs);

    printf("mutations (each must fail)\n");
    for (size_t k = 0; k < sizeof MUTATIONS / sizeof MUTATIONS[0]; k++) {
        const mutation *mu = &MUTATIONS[k];
        size_t i = 0;
        while (i < n_dirs && strcmp(names[i], mu->case_name) != 0)
            i++;
        if (i == n_dirs || !loaded || !loaded[i]) {
            CHECK_MSG(0, "mutation \"%s\": case %s is not there", mu->what, mu->case_name);
            continue;
        }
        verdict v = evaluate(&cases[i], mu->mutate);
        int detected = v.ran && (v.rel > MUTATED_REL || v.argmax_ok < v.n_tokens);
        print_verdict(mu->case_name, mu->what, &v, detected ? "DETECTED" : v.ran ? "UNDETECTED" : "REFUSED");
        CHECK_MSG(detected, "mutation \"%s\" of %s does not change the logits clearly", mu->what,
                  mu->case_name);
    }

    printf("%zu of %zu cases pass\n", n_pass, n_dirs);
    for (size_t i = 0; i < n_dirs && cases; i++)
        ref_case_free(&cases[i]);
    free(cases);
    free(loaded);
    free_names(names, n_dirs);
    return tu_finish("test_reference");
}
