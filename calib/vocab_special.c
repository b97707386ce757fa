/* The files beside a tokenizer.json and what the converter's SpecialVocab
 * reads from them and from the post-processor: special-token ids, add-BOS/EOS
 * flags, the chat template. */
#include "vocab_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tc/mapfile.h"

/* ---- the side files --------------------------------------------------------- */

/* path's directory joined with name (malloc'd). */
char *vocab_beside(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dir + strlen(name) + 1);
    if (p) {
        memcpy(p, path, dir);
        strcpy(p + dir, name);
    }
    return p;
}

/* Parses a JSON file beside path; NULL when absent.  A present file that is
 * not valid JSON is an error. */
int vocab_json_beside(const char *path, const char *name, cJSON **out, tc_error *err)
{
    *out = NULL;
    char *p = vocab_beside(path, name);
    if (!p)
        return tc_err(err, "%s: out of memory", path);
    struct stat st;
    int rc = TC_OK;
    if (stat(p, &st) == 0) {
        char *text = NULL;
        uint64_t len = 0;
        /* messages name the file and the tokenizer it was read for */
        rc = tc_read_small_file(p, 1 << 26, &text, &len, err);
        if (rc != TC_OK)
            tc_err_prefix(err, "%s", path);
        else if (!(*out = cJSON_ParseWithLength(text, (size_t)len)))
            rc = tc_err(err, "%s: %s beside it is not valid JSON", path, p);
        if (rc == TC_OK && !cJSON_IsObject(*out)) {
            cJSON_Delete(*out);
            *out = NULL;
            rc = tc_err(err, "%s: %s beside it is not a JSON object", path, p);
        }
        free(text);
    }
    free(p);
    return rc;
}

/* ---- special tokens, flags, chat template (SpecialVocab) ---------------------- */

/* A special token named in tokenizer_config.json: absent, a string, or
 * another value (an AddedToken object), which compares equal to nothing. */
typedef struct named {
    int kind; /* 0 absent, 1 string, 2 other */
    const char *s;
    const cJSON *obj; /* kind 2 */
} named;

static named named_of(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    named r = {0, NULL, NULL};
    if (cJSON_IsString(v))
        r = (named){1, v->valuestring, NULL};
    else if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
        r = (named){2, NULL, v};
    return r;
}

static named named_str(const char *s)
{
    return (named){1, s, NULL};
}

static int truthy(named n)
{
    return n.kind == 2 || (n.kind == 1 && n.s[0]);
}

static int same(named n, const char *s)
{
    return n.kind == 1 && s && strcmp(n.s, s) == 0;
}

/* The types SpecialVocab looks up, with the slot each one fills (cls has no
 * GGUF key; eot and eom join when the template's last token replaces EOS). */
static const struct {
    const char *name;
    int slot;
} SPECIAL_TYPES[] = {{"bos", VB_BOS}, {"eos", VB_EOS}, {"unk", VB_UNK}, {"sep", VB_SEP},
                     {"pad", VB_PAD}, {"cls", -1},     {"mask", VB_MASK}, {"eot", VB_EOT}, {"eom", VB_EOM}};
enum { N_TYPES = sizeof SPECIAL_TYPES / sizeof SPECIAL_TYPES[0], BASE_TYPES = 7 };

typedef struct specials {
    named tok[N_TYPES];   /* tokenizer_config's {type}_token, as updated from the template */
    int active[N_TYPES];  /* eot, eom only once added */
    int set[N_TYPES];     /* id already set: the first setting wins */
} specials;

static void set_special(vocab_build *b, specials *sp, int k, long id)
{
    if (id < 0 || id >= b->n || sp->set[k])
        return;
    sp->set[k] = 1;
    if (SPECIAL_TYPES[k].slot >= 0)
        b->id[SPECIAL_TYPES[k].slot] = (int32_t)id;
}

static int type_index(const char *name)
{
    for (int k = 0; k < N_TYPES; k++)
        if (strcmp(SPECIAL_TYPES[k].name, name) == 0)
            return k;
    return -1;
}

/* The first added token whose content is s, or -1. */
static long added_id(const cJSON *root, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const char *c = vj_str(e, "content");
        if (c && s && strcmp(c, s) == 0)
            return (long)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
    }
    return -1;
}

static const char *template_special(const cJSON *item)
{
    return vj_str(cJSON_GetObjectItemCaseSensitive(item, "SpecialToken"), "id");
}

/* The post-processor's leading and trailing special tokens decide add-BOS
 * and add-EOS, and name BOS and EOS where the config does not. */
static void post_processor(const cJSON *root, const cJSON *cfg, specials *sp, int *add)
{
    const int BOS = type_index("bos"), EOS = type_index("eos"), CLS = type_index("cls"), SEP = type_index("sep");
    if (!truthy(sp->tok[BOS]) && truthy(sp->tok[CLS]) && cfg)
        sp->tok[BOS] = sp->tok[CLS];
    if (!truthy(sp->tok[EOS]) && truthy(sp->tok[SEP]) && cfg)
        sp->tok[EOS] = sp->tok[SEP];
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!cJSON_IsObject(post))
        return;
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(post, "processors");
    const cJSON *p = cJSON_IsArray(procs) ? procs->child : post;
    for (; p; p = cJSON_IsArray(procs) ? p->next : NULL) {
        const char *type = vj_str(p, "type");
        if (type && strcmp(type, "RobertaProcessing") == 0) {
            add[VB_ADD_BOS] = add[VB_ADD_EOS] = add[VB_ADD_SEP] = 1;
            continue;
        }
        if (!type || strcmp(type, "TemplateProcessing") != 0)
            continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
        int n = cJSON_GetArraySize(single);
        if (n <= 1)
            continue;
        const char *first = template_special(cJSON_GetArrayItem(single, 0));
        if (first) {
            if (!cfg) {
                sp->tok[BOS] = named_str(first);
            } else if (!same(sp->tok[BOS], first) && !same(sp->tok[CLS], first)) {
                if (!truthy(sp->tok[BOS]))
                    sp->tok[BOS] = named_str(first);
                if (!truthy(sp->tok[CLS]))
                    sp->tok[CLS] = named_str(first);
            }
            add[VB_ADD_BOS] = same(sp->tok[BOS], first) || same(sp->tok[CLS], first);
        }
        const char *lastt = template_special(cJSON_GetArrayItem(single, n - 1));
        if (lastt) {
            if (!cfg) {
                sp->tok[EOS] = named_str(lastt);
            } else if (!same(sp->tok[EOS], lastt)) {
                /* the config's EOS is kept as end of turn (or message) */
                int k = !sp->active[type_index("eot")] ? type_index("eot")
                        : !sp->active[type_index("eom")] ? type_index("eom") : -1;
                if (k >= 0) {
                    sp->active[k] = 1;
                    sp->tok[k] = sp->tok[EOS];
                }
                sp->tok[EOS] = named_str(lastt);
            }
            add[VB_ADD_EOS] = same(sp->tok[EOS], lastt);
        }
    }
}

static int set_template(vocab_build *b, const char *text, tc_error *err)
{
    b->has_template = 1;
    return vb_str(b, text, strlen(text), &b->tmpl, err);
}

/* tokenizer_config.json's chat_template (a string, or a list of named
 * templates), else chat_template.jinja, else chat_template.json. */
static int chat_template(vocab_build *b, const char *path, const cJSON *cfg, tc_error *err)
{
    char *extra = vocab_beside(path, "additional_chat_templates");
    struct stat st;
    int has_extra = extra && stat(extra, &st) == 0;
    free(extra);
    if (has_extra)
        return tc_err(err, "%s: additional_chat_templates/ beside it is not carried into GGUF by tc", path);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(ct))
        return set_template(b, ct->valuestring, err);
    if (cJSON_IsArray(ct)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, ct) {
            const char *name = vj_str(c, "name"), *text = vj_str(c, "template");
            if (!name || !name[0] || !text)
                continue;
            if (strcmp(name, "default") == 0) {
                if (set_template(b, text, err))
                    return TC_ERR;
                continue;
            }
            char clean[128];
            size_t k = 0;
            for (; name[k] && k + 1 < sizeof clean; k++) {
                char ch = name[k];
                int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                clean[k] = ok ? ch : '_';
            }
            clean[k] = '\0';
            if (vb_named_template(b, clean, text, err))
                return TC_ERR;
        }
        return TC_OK;
    }
    if (ct && !cJSON_IsNull(ct))
        return TC_OK; /* the converter ignores a template of another type */
    char *jinja = vocab_beside(path, "chat_template.jinja");
    if (!jinja)
        return tc_err(err, "%s: out of memory", path);
    int rc = TC_OK;
    if (stat(jinja, &st) == 0) {
        char *text = NULL;
        uint64_t len = 0;
        rc = tc_read_small_file(jinja, 1 << 24, &text, &len, err);
        if (rc != TC_OK)
            tc_err_prefix(err, "%s", path);
        else if (strlen(text) != len)
            rc = tc_err(err, "%s: %s beside it holds a NUL byte", path, jinja);
        if (rc == TC_OK)
            rc = set_template(b, text, err);
        free(text);
        free(jinja);
        return rc;
    }
    free(jinja);
    cJSON *cj = NULL;
    rc = vocab_json_beside(path, "chat_template.json", &cj, err);
    const char *s = vj_str(cj, "chat_template");
    if (rc == TC_OK && s)
        rc = set_template(b, s, err);
    cJSON_Delete(cj);
    return rc;
}

/* SpecialVocab: ids from tokenizer_config.json's token names (looked up among
 * the added tokens), then from config.json's {type}_token_id; the flags from
 * the post-processor, then tokenizer_config's add_{type}_token.  Unlike the
 * converter, add-BOS and add-EOS are always written (false when nothing adds
 * the token): llama.cpp's default when the key is absent differs by family,
 * and the tokenizer's own behaviour is what the file must say. */
int vocab_special(vocab_build *b, const char *path, const cJSON *root, tc_error *err)
{
    cJSON *cfg = NULL, *conf = NULL;
    if (vocab_json_beside(path, "tokenizer_config.json", &cfg, err) ||
        vocab_json_beside(path, "config.json", &conf, err)) {
        cJSON_Delete(cfg);
        return TC_ERR;
    }
    specials sp;
    memset(&sp, 0, sizeof sp);
    for (int k = 0; k < N_TYPES; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", SPECIAL_TYPES[k].name);
        sp.tok[k] = k < BASE_TYPES ? named_of(cfg, key) : (named){0, NULL, NULL};
        sp.active[k] = k < BASE_TYPES;
    }
    int add[VB_N_ADD] = {-1, -1, -1};
    post_processor(root, cfg, &sp, add);
    int rc = TC_OK;
    if (cfg) {
        rc = chat_template(b, path, cfg, err);
        for (int k = 0; k < N_TYPES && rc == TC_OK; k++) {
            if (!sp.active[k])
                continue;
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", SPECIAL_TYPES[k].name);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
            int slot = k == type_index("bos") ? VB_ADD_BOS : k == type_index("eos") ? VB_ADD_EOS
                       : k == type_index("sep") ? VB_ADD_SEP : -1;
            if (cJSON_IsBool(a) && slot >= 0)
                add[slot] = cJSON_IsTrue(a);
            const char *content = sp.tok[k].kind == 1 ? sp.tok[k].s : vj_str(sp.tok[k].obj, "content");
            if (content)
                set_special(b, &sp, k, added_id(root, content));
        }
    }
    for (int k = 0; k < N_TYPES && rc == TC_OK; k++) {
        if (!sp.active[k])
            continue;
        char key[40];
        snprintf(key, sizeof key, "%s_token_id", SPECIAL_TYPES[k].name);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(conf, key);
        if (!v)
            v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(conf, "text_config"), key);
        if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 0 &&
            v->valuedouble < 2147483648.0)
            set_special(b, &sp, k, (long)v->valuedouble);
    }
    b->add[VB_ADD_BOS] = add[VB_ADD_BOS] > 0;
    b->add[VB_ADD_EOS] = add[VB_ADD_EOS] > 0;
    b->add[VB_ADD_SEP] = add[VB_ADD_SEP];
    cJSON_Delete(cfg);
    cJSON_Delete(conf);
    return rc;
}
