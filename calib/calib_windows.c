/* Which windows of which text a calibration or evaluation set holds: the
 * record a report and a packed file carry, so that a later evaluation of the
 * same text can keep clear of the windows that calibrated. */
#include "tc/calib.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tc/checked.h"

/* JSON numbers are doubles: counts above 2^53 would not read back exactly. */
#define JSON_INT_MAX 9007199254740992.0

int tc_file_id_of(const char *path, tc_file_id *id, tc_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return tc_err(err, "%s: cannot examine the file", path);
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    return TC_OK;
}

void tc_calib_windows_free(tc_calib_windows *w)
{
    free(w->source);
    free(w->index);
    memset(w, 0, sizeof *w);
}

int tc_calib_windows_copy(tc_calib_windows *dst, const tc_calib_windows *src, tc_error *err)
{
    *dst = *src;
    dst->source = NULL;
    dst->index = NULL;
    if (src->source && !(dst->source = strdup(src->source)))
        return tc_err(err, "out of memory");
    if (src->n_windows) {
        if (src->n_windows > SIZE_MAX / sizeof *dst->index ||
            !(dst->index = malloc(src->n_windows * sizeof *dst->index))) {
            tc_calib_windows_free(dst);
            return tc_err(err, "out of memory");
        }
        memcpy(dst->index, src->index, src->n_windows * sizeof *dst->index);
    }
    return TC_OK;
}

int tc_calib_windows_relation(const tc_calib_windows *w, const tc_file_id *file, uint64_t stream_tokens,
                              uint64_t fingerprint)
{
    if (w->kind != TC_CALIB_KIND_TEXT)
        return 0;
    int same_file = file && w->have_file && w->file.dev == file->dev && w->file.ino == file->ino;
    int same_stream = w->stream_tokens == stream_tokens && w->fingerprint == fingerprint;
    return same_file ? (same_stream ? 2 : -1) : same_stream ? 1 : 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static int add_u64_string(cJSON *o, const char *key, uint64_t v, const char *fmt)
{
    char buf[32];
    snprintf(buf, sizeof buf, fmt, (unsigned long long)v);
    return cJSON_AddStringToObject(o, key, buf) ? 0 : -1;
}

cJSON *tc_calib_windows_to_json(const tc_calib_windows *w)
{
    cJSON *o = cJSON_CreateObject();
    int bad = !o;
    bad = bad || !cJSON_AddStringToObject(o, "source", w->source ? w->source : "");
    bad = bad || !cJSON_AddStringToObject(o, "kind", w->kind == TC_CALIB_KIND_TEXT ? "text" : "tokens");
    if (!bad && w->have_file) {
        cJSON *f = cJSON_AddObjectToObject(o, "file");
        /* Device and inode as decimal strings: they may exceed a double's exact range. */
        bad = !f || add_u64_string(f, "dev", w->file.dev, "%llu") || add_u64_string(f, "ino", w->file.ino, "%llu");
    }
    uint64_t tokens = 0;
    if (w->kind == TC_CALIB_KIND_TEXT) {
        bad = bad || !cJSON_AddNumberToObject(o, "stream_tokens", (double)w->stream_tokens);
        bad = bad || add_u64_string(o, "stream_fnv1a64", w->fingerprint, "%016llx");
        bad = bad || !cJSON_AddNumberToObject(o, "seq_len", (double)w->seq_len);
        tokens = (uint64_t)w->n_windows * w->seq_len;
    }
    bad = bad || !cJSON_AddNumberToObject(o, "seed", (double)w->seed);
    bad = bad || !cJSON_AddNumberToObject(o, "samples", (double)w->n_windows);
    if (w->kind == TC_CALIB_KIND_TEXT)
        bad = bad || !cJSON_AddNumberToObject(o, "n_tokens", (double)tokens);
    cJSON *arr = bad ? NULL : cJSON_AddArrayToObject(o, "windows");
    bad = bad || !arr;
    for (size_t i = 0; !bad && i < w->n_windows; i++) {
        cJSON *n = cJSON_CreateNumber((double)w->index[i]);
        bad = !n || !cJSON_AddItemToArray(arr, n);
    }
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int get_count(const cJSON *o, const char *name, const char *key, double max, uint64_t *out, tc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return tc_err(err, "%s: the calibration record has no '%s'", name, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > max ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return tc_err(err, "%s: the calibration record's '%s' is not an integer in [0, %.0f]", name, key, max);
    *out = (uint64_t)v->valuedouble;
    return TC_OK;
}

static int get_u64_string(const cJSON *o, const char *name, const char *key, int base, uint64_t *out,
                          tc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    size_t n = s ? strlen(s) : 0;
    int ok = n > 0 && n <= (base == 16 ? 16 : 20);
    uint64_t x = 0;
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : base == 16 && c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 99u;
        ok = d < (unsigned)base && !tc_mul_u64(x, (uint64_t)base, &x) && !tc_add_u64(x, d, &x);
    }
    if (!ok)
        return tc_err(err, "%s: the calibration record's '%s' is not a %s number in a string", name, key,
                      base == 16 ? "hexadecimal" : "decimal");
    *out = x;
    return TC_OK;
}

int tc_calib_windows_from_json(const cJSON *o, const char *name, tc_calib_windows *w, tc_error *err)
{
    memset(w, 0, sizeof *w);
    if (!cJSON_IsObject(o))
        return tc_err(err, "%s: the calibration record is not a JSON object", name);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    if (!cJSON_IsString(src))
        return tc_err(err, "%s: the calibration record's 'source' is not a string", name);
    if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "text") && strcmp(kind->valuestring, "tokens")))
        return tc_err(err, "%s: the calibration record's 'kind' is neither \"text\" nor \"tokens\"", name);
    w->kind = strcmp(kind->valuestring, "text") == 0 ? TC_CALIB_KIND_TEXT : TC_CALIB_KIND_TOKENS;
    uint64_t seq_len = 0, seed = 0, samples = 0;
    int rc = TC_OK;
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
    if (file) {
        if (!cJSON_IsObject(file))
            rc = tc_err(err, "%s: the calibration record's 'file' is not an object", name);
        if (rc == TC_OK && (get_u64_string(file, name, "dev", 10, &w->file.dev, err) ||
                            get_u64_string(file, name, "ino", 10, &w->file.ino, err)))
            rc = TC_ERR;
        w->have_file = rc == TC_OK;
    }
    if (rc == TC_OK && w->kind == TC_CALIB_KIND_TEXT &&
        (get_count(o, name, "stream_tokens", JSON_INT_MAX, &w->stream_tokens, err) ||
         get_u64_string(o, name, "stream_fnv1a64", 16, &w->fingerprint, err) ||
         get_count(o, name, "seq_len", (double)(1u << 30), &seq_len, err)))
        rc = TC_ERR;
    if (rc == TC_OK && w->kind == TC_CALIB_KIND_TEXT && seq_len < 2)
        rc = tc_err(err, "%s: the calibration record's 'seq_len' %llu is below 2", name, (unsigned long long)seq_len);
    if (rc == TC_OK && (get_count(o, name, "seed", JSON_INT_MAX, &seed, err) ||
                        get_count(o, name, "samples", JSON_INT_MAX, &samples, err)))
        rc = TC_ERR;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "windows");
    if (rc == TC_OK && !cJSON_IsArray(arr))
        rc = tc_err(err, "%s: the calibration record has no 'windows' array", name);
    /* A text's windows lie inside its grid; a token file's lines are bounded
     * by the array's own size only (one index per sequence). */
    uint64_t grid = w->kind == TC_CALIB_KIND_TEXT ? w->stream_tokens / (seq_len ? seq_len : 1) : (uint64_t)JSON_INT_MAX;
    size_t n = rc == TC_OK ? (size_t)cJSON_GetArraySize(arr) : 0;
    if (rc == TC_OK && n != samples)
        rc = tc_err(err, "%s: the calibration record lists %zu windows but says 'samples' %llu", name, n,
                    (unsigned long long)samples);
    if (rc == TC_OK && n > grid)
        rc = tc_err(err, "%s: the calibration record lists %zu windows, more than the %llu its text holds", name, n,
                    (unsigned long long)grid);
    if (rc == TC_OK && n && !(w->index = malloc(n * sizeof *w->index)))
        rc = tc_err(err, "%s: out of memory for the calibration record", name);
    size_t k = 0;
    for (const cJSON *e = rc == TC_OK ? arr->child : NULL; e && rc == TC_OK; e = e->next, k++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0) || v >= (double)grid || v != (double)(uint64_t)v)
            rc = tc_err(err, "%s: calibration window %zu is not an index below %llu", name, k, (unsigned long long)grid);
        else if (k > 0 && (size_t)v <= w->index[k - 1])
            rc = tc_err(err, "%s: calibration windows are not in ascending order at window %zu", name, k);
        else
            w->index[k] = (size_t)v;
    }
    if (rc == TC_OK && !(w->source = strdup(src->valuestring)))
        rc = tc_err(err, "%s: out of memory for the calibration record", name);
    if (rc) {
        tc_calib_windows_free(w);
        return TC_ERR;
    }
    w->n_windows = n;
    w->seq_len = (size_t)seq_len;
    w->seed = seed;
    return TC_OK;
}

/* ---- Text ------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t n, cap;
    int bad;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->bad)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->bad = 1;
            return;
        }
        if (b->p && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->bad = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

char *tc_calib_windows_describe(const tc_calib_windows *w)
{
    strbuf b = {0};
    const char *src = w->source && w->source[0] ? w->source : "the given text";
    if (w->kind == TC_CALIB_KIND_TEXT)
        sb_printf(&b, "%zu window%s of %zu tokens (%llu tokens) of %s: window%s ", w->n_windows,
                  w->n_windows == 1 ? "" : "s", w->seq_len, (unsigned long long)w->n_windows * w->seq_len, src,
                  w->n_windows == 1 ? "" : "s");
    else
        sb_printf(&b, "%zu sequence%s of %s: line%s ", w->n_windows, w->n_windows == 1 ? "" : "s", src,
                  w->n_windows == 1 ? "" : "s");
    /* Runs of consecutive indices as a-b, so that "every window but a few" stays short. */
    for (size_t i = 0; i < w->n_windows;) {
        size_t j = i;
        while (j + 1 < w->n_windows && w->index[j + 1] == w->index[j] + 1)
            j++;
        if (j == i)
            sb_printf(&b, "%s%zu", i ? ", " : "", w->index[i]);
        else
            sb_printf(&b, "%s%zu-%zu", i ? ", " : "", w->index[i], w->index[j]);
        i = j + 1;
    }
    if (w->kind == TC_CALIB_KIND_TEXT && w->seq_len)
        sb_printf(&b, " of %llu", (unsigned long long)(w->stream_tokens / w->seq_len));
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
