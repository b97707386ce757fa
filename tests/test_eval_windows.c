/* Evaluation is kept apart from calibration across separate runs of the
 * tools: tc-analyze's report records its windows and tc-prune --eval leaves
 * them out; tc-quantize records its windows in the packed file and tc-run
 * --compare leaves them out.  The same text under another name counts as the
 * same; another text is unaffected; a text too small for both is refused. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "tc/calib.h"
#include "tc/model.h"
#include "tc/tmodel.h"
#include "tc/trun.h"

static char dir[256];
static char model[512], text[512];

static const char *path_in(const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Whole lines of src, from line `first` (0-based), until at least `bytes`. */
static int write_lines(const char *src, const char *dst, size_t first, size_t bytes)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char line[8192];
    size_t n = 0, k = 0;
    int ok = in && out;
    while (ok && n < bytes && fgets(line, sizeof line, in))
        if (k++ >= first) {
            ok = fputs(line, out) >= 0;
            n += strlen(line);
        }
    if (in)
        fclose(in);
    if (out && fclose(out))
        ok = 0;
    return ok && n >= bytes ? 0 : -1;
}

static cJSON *run_json(const char *cmd)
{
    char *o;
    int rc = tu_run(cmd, &o);
    cJSON *j = rc == 0 ? cJSON_Parse(o) : NULL;
    if (!j)
        fprintf(stderr, "  exit %d, not JSON: %.300s\n  from %s\n", rc, o, cmd);
    free(o);
    return j;
}

/* A record's windows as token ranges [i * L, (i + 1) * L). */
typedef struct ranges {
    size_t n, L;
    long idx[4096];
} ranges;

static int get_ranges(const cJSON *rec, ranges *r)
{
    const cJSON *w = cJSON_GetObjectItem(rec, "windows"), *L = cJSON_GetObjectItem(rec, "seq_len");
    r->n = 0;
    r->L = cJSON_IsNumber(L) ? (size_t)L->valuedouble : 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, w)
    {
        if (r->n < sizeof r->idx / sizeof *r->idx)
            r->idx[r->n++] = (long)e->valuedouble;
    }
    return cJSON_IsArray(w) && r->L >= 2 && r->n > 0;
}

static int shared_tokens(const ranges *a, const ranges *b)
{
    int shared = 0;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++) {
            long a0 = a->idx[i] * (long)a->L, a1 = a0 + (long)a->L;
            long b0 = b->idx[j] * (long)b->L, b1 = b0 + (long)b->L;
            shared += a0 < b1 && b0 < a1;
        }
    return shared;
}

static int same_ranges(const ranges *a, const ranges *b)
{
    return a->n == b->n && a->L == b->L && memcmp(a->idx, b->idx, a->n * sizeof *a->idx) == 0;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The eval object of tc-prune --json, its windows and calibration. */
static int prune_eval(const char *args, ranges *ev, cJSON **calib_out)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --dry-run --json -q %s", tu_bin(), model, args);
    cJSON *j = run_json(cmd);
    cJSON *e = j ? cJSON_GetObjectItem(j, "eval") : NULL;
    int ok = e && get_ranges(cJSON_GetObjectItem(e, "eval_windows"), ev);
    if (ok && calib_out)
        *calib_out = cJSON_Duplicate(cJSON_GetObjectItem(e, "calibration"), 1);
    cJSON_Delete(j);
    return ok;
}

static void test_prune(const char *eval, const char *alias, const char *other)
{
    char cmd[3000], args[2000], *o;
    const char *report = path_in("r.json");
    snprintf(cmd, sizeof cmd, "%s/tc-analyze '%s' --calib '%s' --samples 8 --seq-len 64 --no-measured --no-heads "
             "--report '%s' -q", tu_bin(), model, eval, report);
    CHECK(tu_run(cmd, &o) == 0);
    free(o);
    char *rtext = tu_slurp(report);
    cJSON *r = rtext ? cJSON_Parse(rtext) : NULL;
    free(rtext);
    ranges cal, ev, again;
    CHECK(r && get_ranges(cJSON_GetObjectItem(r, "calibration"), &cal) && cal.n == 8 && cal.L == 64);
    cJSON_Delete(r);

    /* The same text under another name (a symbolic link): none of the 8
     * windows, nor any window sharing a token with them. */
    cJSON *c = NULL;
    snprintf(args, sizeof args, "--report '%s' --drop-attn 1 --eval '%s' --samples 8 --seq-len 64", report, alias);
    CHECK(prune_eval(args, &ev, &c));
    CHECK_MSG(ev.n == 8 && shared_tokens(&cal, &ev) == 0, "%zu windows, %d shared", ev.n, shared_tokens(&cal, &ev));
    CHECK(c && cJSON_IsTrue(cJSON_GetObjectItem(c, "same_text")) && num(c, "left_out") == 8);
    cJSON_Delete(c);
    /* Deterministic for a seed; another window length is judged by tokens. */
    CHECK(prune_eval(args, &again, NULL) && same_ranges(&ev, &again));
    snprintf(args, sizeof args, "--report '%s' --drop-attn 1 --eval '%s' --samples 40 --seq-len 48", report, eval);
    CHECK(prune_eval(args, &ev, NULL) && ev.n == 40 && ev.L == 48 && shared_tokens(&cal, &ev) == 0);

    /* Another text: exactly the windows it gets with no calibration at all. */
    snprintf(args, sizeof args, "--report '%s' --drop-attn 1 --eval '%s' --samples 8 --seq-len 64", report, other);
    CHECK(prune_eval(args, &ev, &c));
    CHECK(c && cJSON_IsFalse(cJSON_GetObjectItem(c, "same_text")) && num(c, "left_out") == 0);
    cJSON_Delete(c);
    snprintf(args, sizeof args, "--layers attn:1 --eval '%s' --samples 8 --seq-len 64", other);
    CHECK(prune_eval(args, &again, NULL) && same_ranges(&ev, &again));

    /* Calibration in the same run (--calib): the record goes to the JSON and
     * the evaluation keeps clear of it. */
    snprintf(args, sizeof args, "--calib '%s' --drop-mlp 1 --eval '%s' --samples 8 --seq-len 64", eval, alias);
    c = NULL;
    CHECK(prune_eval(args, &ev, &c));
    ranges cal2;
    CHECK(c && get_ranges(cJSON_GetObjectItem(c, "record"), &cal2) && same_ranges(&cal, &cal2));
    CHECK(ev.n == 8 && shared_tokens(&cal2, &ev) == 0);
    cJSON_Delete(c);

    /* The terminal says which windows and what they were kept apart from. */
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --dry-run --report '%s' --drop-attn 1 --eval '%s' --samples 8 "
             "--seq-len 64 2>&1", tu_bin(), model, report, alias);
    CHECK(tu_run(cmd, &o) == 0);
    CHECK_MSG(strstr(o, "evaluation: 8 windows of 64 tokens (512 tokens) of") && strstr(o, ": windows ") &&
              strstr(o, "the 8 calibration windows recorded in") && strstr(o, "none shared"), "%s", o);
    free(o);

    /* A text too small for both: calibration took every window. */
    const char *small = path_in("small.txt"), *sreport = path_in("s.json");
    CHECK(write_lines(eval, small, 0, 600) == 0);
    snprintf(cmd, sizeof cmd, "%s/tc-analyze '%s' --calib '%s' --samples 1000 --seq-len 16 --no-measured "
             "--report '%s' -q 2>&1", tu_bin(), model, small, sreport);
    CHECK(tu_run(cmd, &o) == 0);
    free(o);
    snprintf(cmd, sizeof cmd, "%s/tc-prune '%s' --dry-run --report '%s' --drop-attn 1 --eval '%s' --seq-len 16 2>&1",
             tu_bin(), model, sreport, small);
    CHECK(tu_run(cmd, &o) == 1);
    CHECK_MSG(strstr(o, small) && strstr(o, "none is left"), "%s", o);
    free(o);
}

static void test_compare(const char *eval, const char *alias, const char *other)
{
    char cmd[3000];
    const char *packed = path_in("q.tcq");
    snprintf(cmd, sizeof cmd, "%s/tc-quantize '%s' -o '%s' --method calibrated --calib '%s' --samples 8 "
             "--seq-len 64 --json -q", tu_bin(), model, packed, eval);
    cJSON *q = run_json(cmd);
    ranges cal, ev;
    CHECK(q && get_ranges(cJSON_GetObjectItem(q, "calibration"), &cal) && cal.n == 8);
    cJSON_Delete(q);

    /* The packed file carries the record; --compare on the same text leaves
     * its windows out, at the same window length and at another. */
    static const int lens[] = {64, 100};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s/tc-run '%s' --compare '%s' --eval '%s' --seq-len %d --samples 100000 --json -q",
                 tu_bin(), packed, model, alias, lens[i]);
        cJSON *j = run_json(cmd);
        ranges rec;
        CHECK(j && get_ranges(cJSON_GetObjectItem(j, "calibration"), &rec) && same_ranges(&cal, &rec));
        CHECK(j && get_ranges(cJSON_GetObjectItem(j, "eval_windows"), &ev) && ev.L == (size_t)lens[i]);
        const cJSON *e = j ? cJSON_GetObjectItem(j, "eval_windows") : NULL;
        double grid = e ? num(e, "stream_tokens") / lens[i] : 0;
        CHECK_MSG(shared_tokens(&cal, &ev) == 0 && num(j, "left_out") >= 8 &&
                  (double)ev.n == (double)(long)grid - num(j, "left_out") && num(j, "n_windows") == (double)ev.n,
                  "L %d: %zu windows, %d shared, %g left out", lens[i], ev.n, shared_tokens(&cal, &ev),
                  num(j, "left_out"));
        CHECK(i > 0 || num(j, "left_out") == 8);
        CHECK(num(j, "n_tokens") == (double)ev.n * lens[i]);
        cJSON_Delete(j);
    }
    /* The default sample of 64 windows is drawn from the eligible ones too. */
    snprintf(cmd, sizeof cmd, "%s/tc-run '%s' --compare '%s' --eval '%s' --seq-len 64 --json -q", tu_bin(), packed,
             model, alias);
    cJSON *d = run_json(cmd);
    CHECK(d && get_ranges(cJSON_GetObjectItem(d, "eval_windows"), &ev) && ev.n == 64 && num(d, "n_windows") == 64 &&
          shared_tokens(&cal, &ev) == 0);
    cJSON_Delete(d);
    /* Another text: every window. */
    snprintf(cmd, sizeof cmd, "%s/tc-run '%s' --compare '%s' --eval '%s' --seq-len 64 --samples 100000 --json -q",
             tu_bin(), packed, model, other);
    cJSON *j = run_json(cmd);
    const cJSON *e = j ? cJSON_GetObjectItem(j, "eval_windows") : NULL;
    CHECK(e && num(j, "left_out") == 0 && num(j, "n_windows") == (double)(long)(num(e, "stream_tokens") / 64));
    cJSON_Delete(j);
}

/* The record in the packed file is checked on opening like the rest. */
static void test_packed_record(void)
{
    tc_error err;
    tc_model m;
    tc_tmodel_mem mm;
    tc_tgroup g = {TC_TGROUP_ROW, 0};
    if (tc_model_open(&m, model, &err)) {
        CHECK_OK(1, &err);
        return;
    }
    CHECK_OK(tc_tmodel_mem_quantize(&mm, &m, TC_TPACK_I2, &g, &err), &err);
    mm.m.quant.layout = TC_TPACK_I2;
    mm.m.quant.group = g;
    size_t idx[] = {1, 4, 9};
    tc_calib_windows w = {.kind = TC_CALIB_KIND_TEXT, .source = "t.txt", .have_file = 1, .file = {7, 8},
                          .stream_tokens = 1000, .fingerprint = 0x0123456789abcdefull, .seq_len = 64, .seed = 3,
                          .n_windows = 3, .index = idx};
    mm.m.calib = &w;
    const char *ok = path_in("rec.tcq"), *bad = path_in("bad.tcq");
    CHECK_OK(tc_tmodel_write(ok, &mm.m, NULL, NULL, &err), &err);
    idx[2] = 20; /* beyond the 15 windows of 64 that 1000 tokens hold */
    CHECK_OK(tc_tmodel_write(bad, &mm.m, NULL, NULL, &err), &err);
    mm.m.calib = NULL;
    tc_tmodel_mem_free(&mm);
    tc_model_close(&m);
    tc_tmodel t;
    CHECK_OK(tc_tmodel_open(&t, ok, &err), &err);
    CHECK(t.calib && t.calib->n_windows == 3 && t.calib->index[2] == 9 && t.calib->fingerprint == w.fingerprint &&
          t.calib->file.ino == 8 && strcmp(t.calib->source, "t.txt") == 0);
    tc_tmodel_close(&t);
    CHECK(tc_tmodel_open(&t, bad, &err) == TC_ERR);
    CHECK_MSG(strstr(err.msg, bad) && strstr(err.msg, "below 15"), "%s", err.msg);
}

int main(void)
{
    char probe[600];
    snprintf(probe, sizeof probe, "%s/tc-run", tu_bin());
    if (access(probe, X_OK) != 0)
        return tu_skip("the tools are not built (set TC_BIN)");
    if (!tu_asset(model, sizeof model, "models/stories260K/stories260K.gguf") ||
        !tu_asset(text, sizeof text, "text/tinystories_valid_1000.txt"))
        return tu_skip("stories260K or its text is absent");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no temporary directory");
    /* A text of about 60 windows of 64 tokens, the same under another name,
     * and a different text. */
    const char *eval = path_in("eval.txt"), *alias = path_in("alias.txt"), *other = path_in("other.txt");
    CHECK(write_lines(text, eval, 0, 12000) == 0 && symlink(eval, alias) == 0);
    CHECK(write_lines(text, other, 2000, 12000) == 0);
    test_prune(eval, alias, other);
    test_compare(eval, alias, other);
    test_packed_record();
    return tu_finish("test_eval_windows");
}
