/* Running stock llama.cpp from tests: the prebuilt binaries of the npm
 * package node-llama-cpp, driven by tests/llamacpp/greedy.mjs.
 * TC_NODE_LLAMA_CPP names the node_modules folder holding the package
 * (default: $TC_SOURCE/build/node_modules, then $TC_SOURCE/node_modules). */
#ifndef TC_TESTS_LLAMACPP_H
#define TC_TESTS_LLAMACPP_H

#include "testutil.h"

#include <stdint.h>
#include <sys/wait.h>

#include "tc/forward.h"

static const char *llamacpp_package(char *buf, size_t n)
{
    const char *env = getenv("TC_NODE_LLAMA_CPP");
    const char *src = getenv("TC_SOURCE");
    char probe[1200], c1[1024], c2[1024];
    const char *cands[3] = {env && *env ? env : NULL, NULL, NULL};
    if (src && *src) {
        snprintf(c1, sizeof c1, "%s/build/node_modules", src);
        snprintf(c2, sizeof c2, "%s/node_modules", src);
        cands[1] = c1;
        cands[2] = c2;
    }
    for (int i = 0; i < 3; i++) {
        if (!cands[i])
            continue;
        snprintf(probe, sizeof probe, "%s/node-llama-cpp/dist/index.js", cands[i]);
        if (access(probe, R_OK) == 0) {
            snprintf(buf, n, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

static int llamacpp_have_node(void)
{
    FILE *p = popen("node --version 2>/dev/null", "r");
    if (!p)
        return 0;
    char line[64] = "";
    int ok = fgets(line, sizeof line, p) && line[0] == 'v';
    return pclose(p) == 0 && ok;
}

/* Why llama.cpp cannot be run here, or NULL when it can; fills pkg and script. */
static const char *llamacpp_unavailable(char *pkg, size_t npkg, char *script, size_t nscript)
{
    if (!llamacpp_have_node())
        return "node is not installed";
    if (!llamacpp_package(pkg, npkg))
        return "node-llama-cpp is not installed (set TC_NODE_LLAMA_CPP to its node_modules folder)";
    const char *src = getenv("TC_SOURCE");
    snprintf(script, nscript, "%s/tests/llamacpp/greedy.mjs", src && *src ? src : ".");
    if (access(script, R_OK) != 0)
        return "tests/llamacpp/greedy.mjs not found (set TC_SOURCE)";
    return NULL;
}

/* Greedy continuations of BOS (token 1) by llama.cpp for n_models files:
 * out[i] receives up to n_gen ids, n_out[i] how many (-1 when llama.cpp
 * refused the file; its message goes to stderr).  Returns 0 when node ran. */
static inline int llamacpp_greedy(const char *pkg, const char *script, int n_gen, const char *const *models,
                           size_t n_models, int32_t *const *out, int *n_out)
{
    size_t cmd_len = 4096;
    for (size_t i = 0; i < n_models; i++)
        cmd_len += strlen(models[i]) + 4;
    char *cmd = malloc(cmd_len);
    int k = snprintf(cmd, cmd_len, "node '%s' '%s' %d 1", script, pkg, n_gen);
    for (size_t i = 0; i < n_models; i++)
        k += snprintf(cmd + k, cmd_len - (size_t)k, " '%s'", models[i]);
    snprintf(cmd + k, cmd_len - (size_t)k, " 2>&1");
    FILE *pipe = popen(cmd, "r");
    free(cmd);
    if (!pipe)
        return -1;
    char line[16384];
    size_t i = 0;
    while (i < n_models && fgets(line, sizeof line, pipe)) {
        if (strncmp(line, "ok ", 3) != 0 && strncmp(line, "error ", 6) != 0)
            continue; /* llama.cpp's own log lines */
        n_out[i] = -1;
        if (strncmp(line, "ok ", 3) == 0) {
            int n = 0;
            char *s = line + 3, *end;
            while (n < n_gen) {
                long v = strtol(s, &end, 10);
                if (end == s)
                    break;
                out[i][n++] = (int32_t)v;
                s = end;
            }
            n_out[i] = n;
        } else {
            fprintf(stderr, "llama.cpp: %s: %s", models[i], line);
        }
        i++;
    }
    int st = pclose(pipe);
    return i == n_models && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The largest gap, over the positions of llama.cpp's continuation, between
 * tc's best logit and its logit for llama.cpp's token (tc reading llama.cpp's
 * tokens so far); -1 on failure. */
static inline double llamacpp_tc_max_gap(const char *path, const int32_t *ids, int n)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = n + 2};
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof *logits);
    double gap = 0;
    int rc = logits ? tc_decoder_new(&d, &m, &o, &err) : TC_ERR;
    int32_t prev = 1;
    for (int i = 0; rc == TC_OK && i < n; i++) {
        rc = tc_decoder_step(d, prev, logits, &err);
        float best = logits[0];
        for (int v = 1; v < m.cfg.vocab_size; v++)
            best = logits[v] > best ? logits[v] : best;
        if (ids[i] >= 0 && ids[i] < m.cfg.vocab_size && best - logits[ids[i]] > gap)
            gap = best - logits[ids[i]];
        prev = ids[i];
    }
    free(logits);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK ? gap : -1;
}

/* Share of positions where tc's argmax, given llama.cpp's tokens so far,
 * equals llama.cpp's next token; *near (may be NULL) gets the share where
 * tc's logit of llama.cpp's token is within `tie` of tc's largest (a near
 * tie that llama.cpp's 8-bit activations can break the other way). */
static inline double llamacpp_tc_agreement_near(const char *path, const int32_t *ids, int n, double tie,
                                                double *near)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = n + 2};
    float *logits = malloc((size_t)m.cfg.vocab_size * sizeof *logits);
    int agree = 0, close = 0, rc = tc_decoder_new(&d, &m, &o, &err);
    int32_t prev = 1;
    for (int i = 0; rc == TC_OK && i < n; i++) {
        rc = tc_decoder_step(d, prev, logits, &err);
        int best = 0;
        for (int v = 1; v < m.cfg.vocab_size; v++)
            if (logits[v] > logits[best])
                best = v;
        agree += best == ids[i];
        close += ids[i] >= 0 && ids[i] < m.cfg.vocab_size && logits[best] - logits[ids[i]] <= tie;
        prev = ids[i];
    }
    if (rc != TC_OK)
        fprintf(stderr, "%s\n", err.msg);
    free(logits);
    tc_decoder_free(d);
    tc_model_close(&m);
    if (near)
        *near = rc == TC_OK ? (double)close / n : -1;
    return rc == TC_OK ? (double)agree / n : -1;
}

static inline double llamacpp_tc_agreement(const char *path, const int32_t *ids, int n)
{
    return llamacpp_tc_agreement_near(path, ids, n, 0.0, NULL);
}

/* tc's greedy continuation of BOS (token 1) on the file at path: n_gen ids
 * into out; 0 on success. */
static inline int llamacpp_tc_greedy(const char *path, int n_gen, int32_t *out)
{
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    tc_decoder *d = NULL;
    tc_decoder_opts o = {.max_len = n_gen + 1};
    size_t n = 0;
    int32_t bos = 1;
    tc_generate_opts g = {.temperature = 0, .stop_token = -1};
    int rc = tc_decoder_new(&d, &m, &o, &err);
    if (rc == TC_OK)
        rc = tc_generate(d, &bos, 1, (size_t)n_gen, &g, out, &n, &err);
    if (rc != TC_OK)
        fprintf(stderr, "%s\n", err.msg);
    tc_decoder_free(d);
    tc_model_close(&m);
    return rc == TC_OK && n == (size_t)n_gen ? 0 : -1;
}

#endif
