/* llama.cpp's names of byte-level pre-tokenizers, read off a tokenizer.json's
 * structure (the converter hashes an encoding instead), and the structure
 * written back for a name. */
#include "vocab_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- llama.cpp's names of byte-level pre-tokenizers ------------------------
 * A tokenizer.json's normalizer, pre-tokenizer steps (flattened, as
 * normalizer_sig and pre_sig write them) and model.ignore_merges, and the
 * name under which llama.cpp applies exactly those steps: the same regular
 * expressions in the same order (llama.cpp's adaptations of the
 * case-insensitive groups included), merges ignored or not.  llama.cpp does not normalize: NFC is part of the
 * signature only where the family's tokenizer has it. */
#define HF_RE_LLAMA3                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define HF_RE_QWEN2                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define STEP_BYTELEVEL_NOREGEX "ByteLevel prefix=0 regex=0"
#define STEP_BYTELEVEL_GPT2 "ByteLevel prefix=0 regex=1"

static const struct pre_row {
    const char *name;       /* tokenizer.ggml.pre */
    const char *normalizer; /* "" for none */
    const char *steps;
    int ignore_merges;
} PRE_ROWS[] = {
    /* Llama 3: llama.cpp's LLAMA3 type, which ignores merges */
    {"llama-bpe", "", "Split Isolated " HF_RE_LLAMA3 "\n" STEP_BYTELEVEL_NOREGEX, 1},
    /* the same split without ignore_merges: llama.cpp's SMAUG type */
    {"smaug-bpe", "", "Split Isolated " HF_RE_LLAMA3 "\n" STEP_BYTELEVEL_NOREGEX, 0},
    /* Qwen2 (and its derivatives): single digits, NFC */
    {"qwen2", "NFC", "Split Isolated " HF_RE_QWEN2 "\n" STEP_BYTELEVEL_NOREGEX, 0},
    /* GPT-2's own ByteLevel regex */
    {"gpt-2", "", STEP_BYTELEVEL_GPT2, 0},
    /* single digits first, then GPT-2's regex: llama.cpp's STARCODER type */
    {"starcoder", "", "Digits individual=1\n" STEP_BYTELEVEL_GPT2, 0},
};

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* The normalizer's steps ("NFC", "Prepend,Replace", ...), "" for none. */
static void normalizer_sig(sbuf *b, const cJSON *n)
{
    if (!n || cJSON_IsNull(n))
        return;
    const char *type = vj_str(n, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
            normalizer_sig(b, it);
        return;
    }
    if (b->len)
        sb_add(b, ",");
    sb_add(b, type ? type : "?");
}

/* One line per pre-tokenizer step, with the parameters that change ids. */
static void pre_sig(sbuf *b, const cJSON *p)
{
    if (!p || cJSON_IsNull(p))
        return;
    const char *type = vj_str(p, "type");
    if (type && strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            pre_sig(b, it);
        return;
    }
    char tmp[64];
    if (b->len)
        sb_add(b, "\n");
    if (type && strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = vj_str(pat, "Regex"), *lit = vj_str(pat, "String"), *beh = vj_str(p, "behavior");
        sb_add(b, "Split ");
        sb_add(b, beh ? beh : "?");
        sb_add(b, vj_bool(p, "invert", 0) ? " inverted " : " ");
        if (re) {
            sb_add(b, re);
        } else {
            sb_add(b, "string:");
            sb_add(b, lit ? lit : "?");
        }
    } else if (type && strcmp(type, "ByteLevel") == 0) {
        snprintf(tmp, sizeof tmp, "ByteLevel prefix=%d regex=%d", vj_bool(p, "add_prefix_space", 1),
                 vj_bool(p, "use_regex", 1));
        sb_add(b, tmp);
    } else if (type && strcmp(type, "Digits") == 0) {
        snprintf(tmp, sizeof tmp, "Digits individual=%d", vj_bool(p, "individual_digits", 0));
        sb_add(b, tmp);
    } else {
        sb_add(b, type ? type : "?");
    }
}

/* llama.cpp's name for the byte-level pre-tokenizer of root; NULL when the
 * table has none (then *why describes it). */
const char *vocab_pre_name(const cJSON *root, const cJSON *model, char *why, size_t n_why)
{
    sbuf ns = {0}, ps = {0};
    sb_add(&ns, "");
    sb_add(&ps, "");
    normalizer_sig(&ns, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    pre_sig(&ps, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    int ignore = vj_bool(model, "ignore_merges", 0);
    const char *name = NULL;
    for (size_t i = 0; !ns.oom && !ps.oom && i < sizeof PRE_ROWS / sizeof PRE_ROWS[0] && !name; i++)
        if (strcmp(PRE_ROWS[i].normalizer, ns.p) == 0 && strcmp(PRE_ROWS[i].steps, ps.p) == 0 &&
            PRE_ROWS[i].ignore_merges == ignore)
            name = PRE_ROWS[i].name;
    if (!name) {
        /* the first step, shortened, is enough to recognise the tokenizer */
        const char *first = ps.p && ps.p[0] ? ps.p : "none";
        size_t k = strcspn(first, "\n");
        snprintf(why, n_why, "normalizer %s, pre-tokenizer %.*s%s%s, ignore_merges %s",
                 ns.p && ns.p[0] ? ns.p : "none", (int)(k > 60 ? 60 : k), first, k > 60 ? "..." : "",
                 strchr(first, '\n') ? " (and more steps)" : "", ignore ? "true" : "false");
    }
    free(ns.p);
    free(ps.p);
    return name;
}

/* The tokenizer.json steps of a table row, rebuilt from its signature (the
 * inverse of normalizer_sig and pre_sig for what the rows hold). */
int vocab_pre_json(const char *name, cJSON **normalizer, cJSON **pre, int *ignore_merges)
{
    *normalizer = *pre = NULL;
    const struct pre_row *r = NULL;
    for (size_t i = 0; i < sizeof PRE_ROWS / sizeof PRE_ROWS[0] && !r; i++)
        if (strcmp(PRE_ROWS[i].name, name) == 0)
            r = &PRE_ROWS[i];
    if (!r)
        return TC_ERR;
    *ignore_merges = r->ignore_merges;
    *normalizer = r->normalizer[0] ? cJSON_CreateObject() : cJSON_CreateNull();
    if (r->normalizer[0])
        cJSON_AddStringToObject(*normalizer, "type", r->normalizer);
    *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(*pre, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(*pre, "pretokenizers");
    for (const char *line = r->steps; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        cJSON *st = cJSON_CreateObject();
        int a, b;
        if (n > 15 && memcmp(line, "Split Isolated ", 15) == 0) {
            char *re = strndup(line + 15, n - 15);
            cJSON_AddStringToObject(st, "type", "Split");
            cJSON_AddStringToObject(cJSON_AddObjectToObject(st, "pattern"), "Regex", re ? re : "");
            cJSON_AddStringToObject(st, "behavior", "Isolated");
            cJSON_AddBoolToObject(st, "invert", 0);
            free(re);
        } else if (sscanf(line, "ByteLevel prefix=%d regex=%d", &a, &b) == 2) {
            cJSON_AddStringToObject(st, "type", "ByteLevel");
            cJSON_AddBoolToObject(st, "add_prefix_space", a);
            cJSON_AddBoolToObject(st, "trim_offsets", 1);
            cJSON_AddBoolToObject(st, "use_regex", b);
        } else if (sscanf(line, "Digits individual=%d", &a) == 1) {
            cJSON_AddStringToObject(st, "type", "Digits");
            cJSON_AddBoolToObject(st, "individual_digits", a);
        }
        cJSON_AddItemToArray(steps, st);
        line = nl ? nl + 1 : NULL;
    }
    return TC_OK;
}
