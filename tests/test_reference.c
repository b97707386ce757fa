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
#include "tc/hfdir.h"
#include "tc/json_text.h"
#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/prune.h"

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

/* The same sequence through the KV-cache decoder, token by token.  Returns
 * 1 (nothing run) for a rope whose frequencies depend on the length of the
 * whole pass (dynamic, longrope): transformers computes a pass with the
 * frequencies of its full length, a decoder can only know the positions so
 * far. */
static int run_decoder(const ref_case *c, float *logits, tc_error *err)
{
    tc_model m;
    if (tc_model_open(&m, c->dir, err))
        return TC_ERR;
    int rc = TC_ERR;
    tc_decoder *d = NULL;
    if (tc_rope_depends_on_length(&m.cfg.t.rope[0]) || tc_rope_depends_on_length(&m.cfg.t.rope[1])) {
        rc = 1;
        goto done;
    }
    tc_decoder_opts o = {.max_len = c->n_tokens};
    if (tc_decoder_new(&d, &m, &o, err))
        goto done;
    for (int t = 0; t < c->n_tokens; t++)
        if (tc_decoder_step(d, c->tokens[t], logits + (size_t)t * (size_t)c->vocab, err))
            goto done;
    rc = TC_OK;
done:
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc;
}

/* The case written back as a Hugging Face directory by tc's writer (as
 * tc-prune writes one), into dir. */
static int write_hf_copy(const ref_case *c, const char *dir, int from_traits, tc_error *err)
{
    tc_model m;
    if (tc_model_open(&m, c->dir, err))
        return TC_ERR;
    tc_model_copy cp = {.model = &m};
    tc_model_src src = {
        .cfg = m.cfg, .dtype = TC_BF16, .fill = tc_model_copy_fill, .ctx = &cp,
        .hf_config = from_traits ? NULL : tc_model_hfdir(&m)->config, .name = "test",
    };
    int rc = tc_model_write(dir, TC_FORMAT_HF, &src, err);
    tc_model_close(&m);
    return rc;
}

/* Beside a written checkpoint: tc's logits on it (tc_logits.f32, [n][vocab])
 * and the tokens (tokens.json), for check_written.py. */
static void save_tc_logits(const ref_case *c, const char *dir)
{
    ref_case w = *c;
    snprintf(w.dir, sizeof w.dir, "%s", dir);
    size_t n = (size_t)c->n_tokens * (size_t)c->vocab;
    float *lg = calloc(n, sizeof *lg);
    tc_error err = {{0}};
    if (lg && run_tc(&w, NULL, lg, &err) == TC_OK)
        CHECK(tu_write_logits(dir, c->name, c->tokens, (size_t)c->n_tokens, lg, (size_t)c->vocab) == 0);
    free(lg);
}

/* Every key of the source config.json comes out with the same value, but
 * the ones a writer rewrites. */
/* Whether every number of a is spelled as b spells it (3.0 or 3): Python
 * reads the two as different types, and transformers refuses an int for some
 * float fields. */
static const char *same_number_kinds(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && (a->type & TC_JSON_FLOAT) != (b->type & TC_JSON_FLOAT))
        return a->string ? a->string : "(an array element)";
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next) {
        const cJSON *o = cJSON_IsObject(a) ? cJSON_GetObjectItemCaseSensitive(b, x->string) : y;
        const char *bad = o ? same_number_kinds(x, o) : NULL;
        if (bad)
            return bad;
    }
    return NULL;
}

static int same_config(const char *a_dir, const char *b_dir, char *why, size_t n)
{
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/config.json", a_dir);
    snprintf(pb, sizeof pb, "%s/config.json", b_dir);
    char *ta = tu_slurp(pa), *tb = tu_slurp(pb);
    cJSON *a = ta ? cJSON_Parse(ta) : NULL, *b = tb ? cJSON_Parse(tb) : NULL;
    int ok = a && b;
    const cJSON *it;
    if (ok) {
        tc_json_mark_floats(a, ta);
        tc_json_mark_floats(b, tb);
        cJSON_ArrayForEach(it, a) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(b, it->string);
            if (strcmp(it->string, "num_hidden_layers") == 0 || strcmp(it->string, "dtype") == 0 ||
                strcmp(it->string, "torch_dtype") == 0)
                continue;
            if (!o || !cJSON_Compare(it, o, 1)) {
                snprintf(why, n, "key '%s' is %s", it->string, o ? "changed" : "lost");
                ok = 0;
                break;
            }
            const char *kind = same_number_kinds(it, o);
            if (kind) {
                snprintf(why, n, "key '%s' holds a number spelled as another type than the source's (3 for 3.0)",
                         kind);
                ok = 0;
                break;
            }
        }
    } else {
        snprintf(why, n, "a config.json does not parse");
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(ta);
    free(tb);
    return ok;
}

/* A config written from traits alone holds floats where transformers' class
 * types them as floats, and no pad id a small vocabulary cannot hold (the
 * Phi-3 class defaults it to 32000). */
static int python_types(const char *dir, char *why, size_t n)
{
    static const char *const floats[] = {"rms_norm_eps", "attn_logit_softcapping", "final_logit_softcapping"};
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *t = tu_slurp(p);
    cJSON *c = t ? cJSON_Parse(t) : NULL;
    int ok = c != NULL;
    if (ok) {
        tc_json_mark_floats(c, t);
        for (size_t i = 0; i < sizeof floats / sizeof floats[0] && ok; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, floats[i]);
            if (cJSON_IsNumber(v) && !(v->type & TC_JSON_FLOAT)) {
                snprintf(why, n, "%s is written as an int", floats[i]);
                ok = 0;
            }
        }
        if (ok && !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c, "pad_token_id"))) {
            snprintf(why, n, "pad_token_id is not null");
            ok = 0;
        }
    } else {
        snprintf(why, n, "config.json does not parse");
    }
    cJSON_Delete(c);
    free(t);
    return ok;
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
    double min_rel; /* how far it must move the logits; 0: MUTATED_REL */
} mutation;

static void mut_norm_eps(tc_model *m)
{
    m->cfg.norm_eps = 0.5f;
}

/* Each implemented trait switched off (or set to Llama's) on the case that
 * has it. */
static void rope_plain(tc_rope *r)
{
    r->kind = TC_ROPE_DEFAULT;
    r->attn_factor = 1.0;
}

static void unbind(tc_model *m, tc_role r)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        m->layers[l].w[r] = NULL;
}

static void mut_rope_plain(tc_model *m) { rope_plain(&m->cfg.t.rope[0]); m->cfg.t.rope[1] = m->cfg.t.rope[0]; }
static void mut_act_silu(tc_model *m) { m->cfg.t.act = TC_ACT_SILU; }
static void mut_act_gelu(tc_model *m) { m->cfg.t.act = TC_ACT_GELU; }
static void mut_no_window(tc_model *m) { m->cfg.t.window = 0; }
static void mut_no_qkv_bias(tc_model *m) { unbind(m, TC_BQ); unbind(m, TC_BK); unbind(m, TC_BV); }
static void mut_no_o_bias(tc_model *m) { unbind(m, TC_BO); }
static void mut_no_mlp_bias(tc_model *m) { unbind(m, TC_B_GATE); unbind(m, TC_B_UP); unbind(m, TC_B_DOWN); }
static void mut_no_qk_norm(tc_model *m) { m->cfg.t.qk_norm = 0; }
static void mut_norm_w(tc_model *m) { m->cfg.t.norm = TC_NORM_RMS; }
static void mut_no_post_norms(tc_model *m) { m->cfg.t.post_norms = 0; }
static void mut_attn_scale(tc_model *m) { m->cfg.t.attn_scale = 0.0f; }
static void mut_no_attn_softcap(tc_model *m) { m->cfg.t.attn_softcap = 0.0f; }
static void mut_no_final_softcap(tc_model *m) { m->cfg.t.final_softcap = 0.0f; }
static void mut_no_embed_scale(tc_model *m) { m->cfg.t.embed_scale = 0.0f; }
static void mut_local_rope_global(tc_model *m) { m->cfg.t.rope[1] = m->cfg.t.rope[0]; }
static void mut_global_rope_plain(tc_model *m) { rope_plain(&m->cfg.t.rope[0]); }
static void mut_full_rotary(tc_model *m)
{
    m->cfg.t.rope[0].rot_dims = m->cfg.t.rope[1].rot_dims = m->cfg.head_dim;
}
static void mut_long_is_short(tc_model *m)
{
    memcpy(m->cfg.t.rope[0].long_factor, m->cfg.t.rope[0].short_factor, sizeof m->cfg.t.rope[0].long_factor);
}
static void mut_attn_factor(tc_model *m) { m->cfg.t.rope[0].attn_factor = 1.0; }

static void mut_no_diff(tc_model *m) { m->cfg.t.diff_attn = 0; }
static void mut_lambda_init(tc_model *m)
{
    for (int r = TC_LAMBDA_Q1; r <= TC_LAMBDA_K2; r++)
        unbind(m, (tc_role)r);
}

/* DiffLlama's traits, on make_refs.py's diffllama case when its data is
 * there (it is generated on a machine with PyTorch). */
static const mutation DIFF_MUTATIONS[] = {
    {"diffllama", "plain attention", mut_no_diff, 0},
    {"diffllama", "lambda vectors absent (lambda = lambda_init)", mut_lambda_init, 0},
};

static const mutation MUTATIONS[] = {
    {"llama", "norm_eps = 0.5", mut_norm_eps, 0},
    {"llama_linear", "rope scaling off", mut_rope_plain, 0},
    {"llama_dynamic", "rope scaling off", mut_rope_plain, 0},
    {"llama3", "rope scaling off", mut_rope_plain, 0},
    {"llama_yarn", "rope scaling off", mut_rope_plain, 0},
    {"llama_yarn", "yarn attention factor 1", mut_attn_factor, 0},
    {"llama_gelu", "activation silu", mut_act_silu, 0},
    {"llama_gelu_tanh", "activation silu", mut_act_silu, 0},
    {"llama_bias", "no q/k/v biases", mut_no_qkv_bias, 0},
    {"llama_bias", "no output bias", mut_no_o_bias, 0},
    {"llama_bias", "no MLP biases", mut_no_mlp_bias, 0},
    {"mistral_swa", "no window", mut_no_window, 0},
    {"qwen2", "no q/k/v biases", mut_no_qkv_bias, 0},
    {"qwen2_swa", "no window", mut_no_window, 0},
    {"qwen3", "no q/k norms", mut_no_qk_norm, 0},
    {"qwen3_swa", "no window", mut_no_window, 0},
    {"gemma2", "norms w, not 1+w", mut_norm_w, 0},
    /* The two GELUs differ by 1e-3 of their input at most: the mutation
     * moves these logits by about 4.6e-4, still 4x the tolerance. */
    {"gemma2", "activation exact gelu", mut_act_gelu, 3 * REL_TOL},
    {"gemma2", "no post-norms", mut_no_post_norms, 0},
    {"gemma2", "attention scale 1/sqrt(head_dim)", mut_attn_scale, 0},
    {"gemma2", "no attention softcap", mut_no_attn_softcap, 0},
    {"gemma2", "no final softcap", mut_no_final_softcap, 0},
    {"gemma2", "no embedding scale", mut_no_embed_scale, 0},
    {"gemma2", "no window", mut_no_window, 0},
    {"gemma3", "no q/k norms", mut_no_qk_norm, 0},
    {"gemma3", "local layers use the global rope", mut_local_rope_global, 0},
    {"gemma3", "global rope scaling off", mut_global_rope_plain, 0},
    {"gemma3", "no window", mut_no_window, 0},
    {"phi3_partial", "full rotary dimensions", mut_full_rotary, 0},
    {"phi3_longrope", "rope scaling off", mut_rope_plain, 0},
    {"phi3_longrope", "long factors = short", mut_long_is_short, 0},
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

    printf("the KV-cache decoder, token by token\n");
    for (size_t i = 0; i < n_dirs && cases && loaded; i++) {
        if (!loaded[i])
            continue;
        float *got = calloc((size_t)cases[i].n_tokens * (size_t)cases[i].vocab, sizeof *got);
        tc_error err = {{0}};
        int rc = got ? run_decoder(&cases[i], got, &err) : TC_ERR;
        if (rc == 1) {
            printf("%-18s (rope depends on the pass's length: the batched pass is the reference's)\n", names[i]);
        } else if (rc == TC_OK) {
            verdict v = compare(&cases[i], got);
            print_verdict(names[i], "decoder", &v, v.pass ? "PASS" : "FAIL");
            CHECK_MSG(v.pass, "case %s: the decoder does not match transformers", names[i]);
        } else {
            CHECK_MSG(0, "case %s: the decoder failed: %s", names[i], err.msg);
        }
        free(got);
    }

    printf("written back by tc's Hugging Face writer, reread\n");
    /* TC_REFERENCE_OUT keeps what tc writes, for checking it with transformers
     * itself (tests/reference/check_written.py). */
    char tmp[1024];
    const char *keep = getenv("TC_REFERENCE_OUT");
    if (keep && *keep) {
        snprintf(tmp, sizeof tmp, "%s", keep);
        mkdir(tmp, 0755);
    } else {
        tu_tmpdir(tmp, sizeof tmp);
    }
    for (size_t i = 0; i < n_dirs && cases && loaded; i++) {
        if (!loaded[i])
            continue;
        char out[2048], why[256] = "";
        snprintf(out, sizeof out, "%s/%s", tmp, names[i]);
        tc_error err = {{0}};
        if (write_hf_copy(&cases[i], out, 0, &err)) {
            CHECK_MSG(0, "case %s: writing it back failed: %s", names[i], err.msg);
            continue;
        }
        CHECK_MSG(same_config(cases[i].dir, out, why, sizeof why), "case %s: the written config.json: %s",
                  names[i], why);
        ref_case copy = cases[i];
        snprintf(copy.dir, sizeof copy.dir, "%s", out);
        verdict v = evaluate(&copy, NULL);
        print_verdict(names[i], "rewritten", &v, v.pass ? "PASS" : "FAIL");
        CHECK_MSG(v.pass, "case %s rewritten by tc does not match transformers", names[i]);
        if (keep && *keep)
            save_tc_logits(&cases[i], out);
        /* The config written from the traits alone (as for a GGUF source). */
        snprintf(out, sizeof out, "%s/%s-traits", tmp, names[i]);
        if (write_hf_copy(&cases[i], out, 1, &err)) {
            CHECK_MSG(0, "case %s: writing a config from its traits failed: %s", names[i], err.msg);
            continue;
        }
        CHECK_MSG(python_types(out, why, sizeof why), "case %s written from its traits: %s", names[i], why);
        snprintf(copy.dir, sizeof copy.dir, "%s", out);
        v = evaluate(&copy, NULL);
        print_verdict(names[i], "from traits", &v, v.pass ? "PASS" : "FAIL");
        CHECK_MSG(v.pass, "case %s written from its traits does not match transformers", names[i]);
        if (keep && *keep)
            save_tc_logits(&cases[i], out);
    }
    /* Pruned as tc-prune writes it: Gemma's attention goes with its
     * post-norm, a whole block with its local-layer type.  The written
     * model must compute what the original does with those sub-layers
     * skipped. */
    static const struct { const char *name, *list; } prunes[] = {
        {"gemma2", "attn:1,mlp:2"}, {"gemma3", "block:1,attn:2"}, {"qwen2_swa", "block:0"}, {"phi3", "mlp:0"},
    };
    for (size_t k = 0; k < sizeof prunes / sizeof prunes[0]; k++) {
        size_t i = 0;
        while (i < n_dirs && strcmp(names[i], prunes[k].name) != 0)
            i++;
        if (i == n_dirs || !loaded || !loaded[i]) {
            CHECK_MSG(0, "prune check: case %s is not there", prunes[k].name);
            continue;
        }
        char out[2048];
        snprintf(out, sizeof out, "%s/pruned-%s", tmp, names[i]);
        tc_error err = {{0}};
        tc_model m, pm;
        tc_prune_plan plan;
        if (tc_model_open(&m, cases[i].dir, &err) || tc_prune_plan_init(&plan, m.cfg.n_layers, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        int rc = tc_prune_parse_list(&plan, prunes[k].list, "test", &err);
        if (!rc)
            rc = tc_prune_write(&m, &plan, out, TC_FORMAT_HF, &err);
        CHECK_MSG(rc == TC_OK, "%s pruned (%s): %s", names[i], prunes[k].list, err.msg);
        if (rc == TC_OK && keep && *keep)
            save_tc_logits(&cases[i], out);
        if (rc == TC_OK && tc_model_open(&pm, out, &err) == TC_OK) {
            /* The original with the plan as a skip mask, against the file. */
            tc_skip *skip = calloc((size_t)m.cfg.n_layers, sizeof *skip);
            for (int l = 0; l < m.cfg.n_layers; l++) {
                skip[l].attn = !tc_prune_keeps(&plan, &m, l, TC_MOD_ATTN);
                skip[l].mlp = !tc_prune_keeps(&plan, &m, l, TC_MOD_MLP);
            }
            size_t nt = (size_t)cases[i].n_tokens, V = (size_t)cases[i].vocab;
            float *a = calloc(nt * V, sizeof *a), *b = calloc(nt * V, sizeof *b);
            size_t offsets[2] = {0, nt};
            tc_batch bt = {.tokens = cases[i].tokens, .offsets = offsets, .n_seqs = 1};
            logit_sink sa = {.buf = a, .n_tokens = nt, .vocab = (int)V}, sb = {.buf = b, .n_tokens = nt, .vocab = (int)V};
            tc_observer oa = {.ctx = &sa, .logits = sink_logits}, ob = {.ctx = &sb, .logits = sink_logits};
            tc_forward_opts fa = {.n_threads = 1, .observers = &oa, .n_observers = 1, .skip = skip};
            tc_forward_opts fb = {.n_threads = 1, .observers = &ob, .n_observers = 1};
            CHECK_OK(tc_forward(&m, &bt, &fa, &err), &err);
            CHECK_OK(tc_forward(&pm, &bt, &fb, &err), &err);
            double worst = 0.0;
            for (size_t j = 0; j < nt * V; j++)
                worst = fmax(worst, fabs((double)a[j] - b[j]));
            CHECK_MSG(worst <= 1e-5 * cases[i].max_abs, "%s pruned (%s) differs from the skipped original by %g",
                      names[i], prunes[k].list, worst);
            printf("%-18s pruned (%s): %d layers, max |d| vs the skipped original %.3g\n", names[i], prunes[k].list,
                   pm.cfg.n_layers, worst);
            free(a);
            free(b);
            free(skip);
            tc_model_close(&pm);
        } else if (rc == TC_OK) {
            CHECK_MSG(0, "%s pruned does not reopen: %s", names[i], err.msg);
        }
        tc_prune_plan_free(&plan);
        tc_model_close(&m);
    }

    char rm[1100];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmp);
    if (!(keep && *keep))
        CHECK(system(rm) == 0);

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
        double need = mu->min_rel > 0 ? mu->min_rel : MUTATED_REL;
        int detected = v.ran && (v.rel > need || v.argmax_ok < v.n_tokens);
        print_verdict(mu->case_name, mu->what, &v, detected ? "DETECTED" : v.ran ? "UNDETECTED" : "REFUSED");
        CHECK_MSG(detected, "mutation \"%s\" of %s does not change the logits clearly", mu->what,
                  mu->case_name);
    }

    size_t di = 0;
    while (di < n_dirs && names && strcmp(names[di], "diffllama") != 0)
        di++;
    if (di == n_dirs || !loaded || !loaded[di]) {
        printf("SKIPPED diffllama: %s/diffllama is absent (tests/reference/make_refs.py writes it on a machine with "
               "PyTorch); differential attention is checked only against test_forward's reference\n", root);
    } else {
        for (size_t k = 0; k < sizeof DIFF_MUTATIONS / sizeof DIFF_MUTATIONS[0]; k++) {
            const mutation *mu = &DIFF_MUTATIONS[k];
            verdict v = evaluate(&cases[di], mu->mutate);
            int detected = v.ran && (v.rel > MUTATED_REL || v.argmax_ok < v.n_tokens);
            print_verdict(mu->case_name, mu->what, &v, detected ? "DETECTED" : v.ran ? "UNDETECTED" : "REFUSED");
            CHECK_MSG(detected, "mutation \"%s\" of %s does not change the logits clearly", mu->what, mu->case_name);
        }
    }

    printf("%zu of %zu cases pass\n", n_pass, n_dirs);
    for (size_t i = 0; i < n_dirs && cases; i++)
        ref_case_free(&cases[i]);
    free(cases);
    free(loaded);
    free_names(names, n_dirs);
    return tu_finish("test_reference");
}
