/* tc-run: the reference runner: generation and perplexity. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "tc/analyze.h"
#include "tc/calib.h"
#include "tc/forward.h"
#include "tc/model.h"
#include "tc/model_tokenizer.h"
#include "tc/tmodel.h"
#include "tc/trun.h"

static const char *const TOOL = "tc-run";

static void usage(void)
{
    printf("Usage: %s MODEL --generate PROMPT [-n N] [--temp T] [--seed S]\n"
           "       %s MODEL --ppl FILE [--seq-len L] [--samples N]\n"
           "       %s MODEL --compare ORIGINAL --eval FILE [--samples N] [--seq-len L]\n"
           "       %s MODEL.tcq --verify\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Runs a model: generation from a prompt (an empty prompt starts from BOS) and\n"
           "perplexity of a text.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file, a\n"
           "llama2.c checkpoint, or a packed ternary model (.tcq, written by tc-quantize and\n"
           "detected from its first bytes).  A .tcq runs through the ternary kernels on int8\n"
           "activations (its Q8_0 / Q4_0 weights of a --target-bpw assignment, embedding and\n"
           "head through ggml-layout int8 kernels) and carries its own tokenizer and config:\n"
           "--generate, --ppl and --info need nothing else.\n"
           "\n"
           "Generation:\n"
           "  --generate PROMPT   text to continue (\"\" starts from BOS alone)\n"
           "  -n, --steps N       positions to run, the BOS included, as llama2.c counts\n"
           "                      them (default 256)\n"
           "  --temp T            sampling temperature; 0 is greedy (default 0)\n"
           "  --seed S            sampling seed (default 0); with --samples, also the seed\n"
           "                      that chooses the windows\n"
           "  Text goes to stdout as it is generated and ends with a newline; tokens/s for\n"
           "  the prompt and the generation go to stderr.\n"
           "\n"
           "Perplexity:\n"
           "  --ppl FILE          text (or JSON Lines): every paragraph is a document that\n"
           "                      starts with BOS; the documents are concatenated and cut into\n"
           "                      non-overlapping windows of --seq-len tokens (default:\n"
           "                      min(256, context)); every position but a window's first\n"
           "                      is scored\n"
           "  --seq-len L         window length\n"
           "  --samples N         score N of the windows, chosen with --seed as calibration\n"
           "                      chooses them (docs/CALIBRATION.md); default: every window\n"
           "\n"
           "Packed ternary models (.tcq):\n"
           "  --kernel PATH       scalar, avx2, avx512, avx512vnni or auto (default; also\n"
           "                      the TC_KERNEL environment variable)\n"
           "  --verify            every fast kernel's int32 sums equal the scalar kernel's on\n"
           "                      every layer shape of the model and on awkward random shapes,\n"
           "                      and the model's logits equal the dequantized fp32 reference\n"
           "                      (same int8 activations) within 1e-4 relative; exit 1 if not\n"
           "  --compare ORIGINAL  with --eval FILE: perplexity of ORIGINAL (fp32) and of the\n"
           "                      packed model on the same windows, and the KL divergence\n"
           "                      KL(original || packed) per position: mean, max, 99th\n"
           "                      percentile; top-1 agreement (same argmax, reported as \"same\n"
           "                      top p\" like llama-perplexity).  --samples N windows (default\n"
           "                      64; N at least their number scores every one) of --seq-len\n"
           "                      tokens, chosen with --seed as calibration chooses them; every\n"
           "                      position but a window's first is scored.  When FILE is the\n"
           "                      text that calibrated the packed model (recorded in it), the\n"
           "                      windows sharing a token with its calibration windows are left\n"
           "                      out (docs/CALIBRATION.md).  Each window runs through the\n"
           "                      packed model's multi-token kernels whole; a progress bar and\n"
           "                      the time each model took go to stderr.  The text is tokenized\n"
           "                      with --tokenizer, else the packed model's own tokenizer, else\n"
           "                      ORIGINAL's.  MODEL may also be a checkpoint (a GGUF of\n"
           "                      llama.cpp's block types, say): it runs through the fp32\n"
           "                      decoder on its dequantized weights, its text tokenized with\n"
           "                      --tokenizer, else ORIGINAL's tokenizer\n"
           "  --eval FILE         the text of --compare\n"
           "  --tokenizer FILE    a tokenizer instead of the one the .tcq carries (needed for a\n"
           "                      .tcq written from a llama2.c checkpoint without one)\n"
           "\n" CLI_COMMON_HELP,
           TOOL, TOOL, TOOL, TOOL, TOOL);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (every thread): beside the wall clock,
 * what a step cost on a machine shared with other work. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The prompt's ids with BOS (when the model has one) in front; malloc'd. */
static int encode_prompt(tc_tokenizer *tok, const char *prompt, int32_t model_bos, int32_t **out, size_t *n_out,
                         tc_error *err)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int32_t bos = tc_tokenizer_bos(tok) >= 0 ? tc_tokenizer_bos(tok) : model_bos;
    if (tc_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n_ids, err))
        return TC_ERR;
    int32_t *p = malloc((n_ids + 1) * sizeof *p);
    if (!p) {
        free(ids);
        return tc_err(err, "out of memory");
    }
    size_t n = 0;
    if (bos >= 0)
        p[n++] = bos;
    memcpy(p + n, ids, n_ids * sizeof *ids);
    free(ids);
    *out = p;
    *n_out = n + n_ids;
    return TC_OK;
}

/* A runner that appends tokens and leaves the next-token logits: the fp32
 * decoder or the packed-model runner. */
typedef int (*feed_fn)(void *runner, const int32_t *tokens, size_t n, float *logits, tc_error *err);

typedef struct gen_stats {
    long made;
    double prompt_s, gen_s;
} gen_stats;

/* Feeds the prompt, then samples, prints and feeds one token at a time.  Like
 * llama2.c, `steps` counts positions from the first prompt token, so "-n 200"
 * from BOS alone generates 199 tokens. */
static int stream_text(feed_fn feed, void *runner, tc_tokenizer *tok, const char *prompt, const int32_t *ids,
                       size_t n_prompt, long steps, int max_len, int vocab, int32_t eos, float temp,
                       unsigned long long seed, gen_stats *st, tc_error *err)
{
    steps = steps - (long)n_prompt + 1;
    if ((long)n_prompt + steps > (long)max_len)
        steps = max_len - (long)n_prompt;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    if (!logits)
        return tc_err(err, "out of memory");
    tc_rng rng;
    tc_rng_seed(&rng, seed);
    double t0 = now();
    int rc = feed(runner, ids, n_prompt, logits, err);
    double t1 = now();
    int32_t prev = ids[n_prompt - 1];
    st->made = 0;
    size_t plen = strlen(prompt);
    char last = plen ? prompt[plen - 1] : '\0'; /* the last byte printed */
    if (rc == TC_OK)
        fputs(prompt, stdout);
    for (; rc == TC_OK && st->made < steps; st->made++) {
        int32_t next = tc_sample(logits, vocab, temp, &rng);
        if (next == eos || next == tc_tokenizer_eos(tok))
            break;
        const char *piece;
        size_t len;
        if (tc_tokenizer_piece(tok, prev, next, &piece, &len, err) == TC_OK && len > 0) {
            fwrite(piece, 1, len, stdout);
            last = piece[len - 1];
        }
        fflush(stdout);
        prev = next;
        if (st->made + 1 < steps)
            rc = feed(runner, &next, 1, logits, err);
    }
    /* The text ends its line, so that what follows on stdout or on the
     * terminal (the statistics on stderr) starts on a line of its own. */
    if (last && last != '\n')
        fputc('\n', stdout);
    fflush(stdout);
    double t2 = now();
    st->prompt_s = t1 - t0 > 0 ? t1 - t0 : 1e-9;
    st->gen_s = t2 - t1 > 0 ? t2 - t1 : 1e-9;
    free(logits);
    return rc;
}

static int feed_decoder(void *d, const int32_t *tokens, size_t n, float *logits, tc_error *err)
{
    return tc_decoder_feed(d, tokens, n, logits, err);
}

static int feed_packed(void *r, const int32_t *tokens, size_t n, float *logits, tc_error *err)
{
    return tc_trun_feed(r, tokens, n, logits, 0, err);
}

/* Streams generated text to stdout token by token. */
static int generate(const tc_model *m, tc_tokenizer *tok, const char *prompt, long steps, float temp,
                    unsigned long long seed, const cli_common *com, tc_error *err)
{
    int32_t *ids;
    size_t n_prompt;
    if (encode_prompt(tok, prompt, m->cfg.bos_id, &ids, &n_prompt, err))
        return TC_ERR;
    tc_decoder *d = NULL;
    tc_decoder_opts dopts = {.n_threads = 1};
    gen_stats st = {0};
    int rc = n_prompt == 0 ? tc_err(err, "the prompt is empty and the model has no BOS token")
                           : tc_decoder_new(&d, m, &dopts, err);
    if (rc == TC_OK)
        rc = stream_text(feed_decoder, d, tok, prompt, ids, n_prompt, steps, m->cfg.max_seq_len,
                         m->cfg.vocab_size, m->cfg.eos_id, temp, seed, &st, err);
    if (rc == TC_OK && !com->quiet)
        fprintf(stderr, "%s: prompt %zu tokens at %.1f tokens/s; generated %ld tokens at %.1f tokens/s\n", TOOL,
                n_prompt, (double)n_prompt / st.prompt_s, st.made, (double)st.made / st.gen_s);
    tc_decoder_free(d);
    free(ids);
    return rc;
}

/* What --ppl prints, for either kind of model. */
static void print_ppl(const char *model, const char *file, const tc_ppl *r, const tc_calib_set *set,
                      const cli_common *com)
{
    size_t len = set->n_seqs ? set->offsets[1] - set->offsets[0] : 0;
    if (com->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "text", file);
        cJSON_AddNumberToObject(o, "ppl", r->ppl);
        cJSON_AddNumberToObject(o, "nll", r->nll);
        cJSON_AddNumberToObject(o, "n_windows", (double)set->n_seqs);
        cJSON_AddNumberToObject(o, "seq_len", (double)len);
        cJSON_AddNumberToObject(o, "n_tokens", (double)r->n_tokens);
        cJSON_AddNumberToObject(o, "n_predicted", (double)r->n_predicted);
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("perplexity %.6f (mean NLL %.6f) over %llu predicted tokens in %zu windows of %zu (%zu tokens of %s)\n",
               r->ppl, r->nll, (unsigned long long)r->n_predicted, set->n_seqs, len, set->n_tokens, file);
    }
}

/* Windows of a text to score: every one (-1: no shortage warning), or --samples of them. */
static cli_calib windows_of(const char *file, long samples, long seq_len, unsigned long long seed)
{
    cli_calib c = {.text = file, .samples = samples > 0 ? samples : -1, .seq_len = seq_len, .seed = seed};
    return c;
}

static int perplexity(const tc_model *m, const char *file, long samples, long seq_len, unsigned long long seed,
                      const cli_common *com, tc_dist *dist, tc_error *err)
{
    cli_calib c = windows_of(file, samples, seq_len, seed);
    tc_calib_set set;
    if (cli_calib_load(&c, m, com->tokenizer, &set, err))
        return TC_ERR;
    cli_progress bar;
    cli_progress_init(&bar, "ppl", com->quiet);
    tc_ppl_opts po = {
        .n_threads = com->threads > 0 ? com->threads : cli_default_threads(),
        .dist = dist,
        .progress = cli_progress_update,
        .progress_ctx = &bar,
    };
    tc_ppl r;
    int rc = tc_perplexity(m, set.tokens, set.offsets, set.n_seqs, &po, &r, err);
    cli_progress_done(&bar);
    if (rc == TC_OK)
        print_ppl(m->path, file, &r, &set, com);
    tc_calib_set_free(&set);
    return rc;
}

/* ---- packed ternary models ------------------------------------------------ */

typedef struct run_cfg {
    tc_kpath kernel;
    int threads;
} run_cfg;

static uint64_t vstate = 0x2545f4914f6cdd1dull;

static uint64_t vrand(void)
{
    vstate ^= vstate << 13;
    vstate ^= vstate >> 7;
    vstate ^= vstate << 17;
    return vstate;
}

typedef struct vcount {
    long shapes, checks, mismatches;
} vcount;

/* The int32 sums of every available fast path against the scalar path on
 * n_tok random tokens; with codes, the scalar path also against the plain
 * integer matvec per group. */
static int verify_weight(const tc_tpack_plan *p, const uint8_t *data, const int8_t *codes,
                         vcount *vc, tc_error *err)
{
    int64_t ng = tc_kern_groups(p), n_tok = 3;
    size_t ny = (size_t)(n_tok * p->rows * ng);
    int8_t *x = malloc((size_t)(n_tok * p->cols));
    int32_t *want = malloc(ny * 4), *got = malloc(ny * 4);
    tc_kwork *w = tc_kwork_new();
    int rc = x && want && got && w ? TC_OK : tc_err(err, "out of memory verifying kernels");
    for (int64_t i = 0; rc == TC_OK && i < n_tok * p->cols; i++)
        x[i] = i < p->cols ? (i % 2 ? -128 : 127) : (int8_t)(vrand() & 0xff);
    tc_kernels ks;
    if (rc == TC_OK)
        rc = tc_kernels_init(&ks, TC_KPATH_SCALAR, err);
    if (rc == TC_OK)
        rc = tc_kern_matmul_i32(&ks, NULL, w, p, data, p->weight_bytes, x, n_tok, want, err);
    if (rc == TC_OK && codes) {
        int64_t G = p->group.kind == TC_TGROUP_COLS ? p->group.cols : p->cols;
        for (int64_t t = 0; t < n_tok; t++)
            for (int64_t m = 0; m < p->rows; m++)
                for (int64_t g = 0; g < ng; g++) {
                    int32_t s = 0;
                    for (int64_t k = g * G; k < p->cols && k < (g + 1) * G; k++)
                        s += codes[m * p->cols + k] * x[t * p->cols + k];
                    vc->checks++;
                    if (s != want[(t * p->rows + m) * ng + g])
                        vc->mismatches++;
                }
    }
    for (int path = TC_KPATH_AVX2; rc == TC_OK && path < TC_KPATH_COUNT; path++) {
        tc_kernels k;
        if (!tc_kpath_available((tc_kpath)path) || tc_kernels_init(&k, (tc_kpath)path, err))
            continue;
        rc = tc_kern_matmul_i32(&k, NULL, w, p, data, p->weight_bytes, x, n_tok, got, err);
        vc->checks++;
        if (rc == TC_OK && memcmp(want, got, ny * 4) != 0)
            vc->mismatches++;
    }
    vc->shapes++;
    tc_kwork_free(w);
    free(x);
    free(want);
    free(got);
    return rc;
}

static int verify_random_shapes(vcount *vc, tc_error *err)
{
    static const int64_t shapes[][2] = {{1, 1},   {1, 7},   {5, 3},    {31, 23},  {33, 25},
                                        {64, 97}, {97, 64}, {130, 301}, {3, 1001}, {47, 4099}};
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0},
                                {TC_TGROUP_COLS, 32}, {TC_TGROUP_COLS, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int l = 0; l < TC_TPACK_LAYOUT_COUNT; l++)
            for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
                tc_tpack_plan p;
                if (tc_tpack_plan_make((tc_tpack_layout)l, shapes[s][0], shapes[s][1], &groups[g],
                                       &p, err))
                    return TC_ERR;
                int8_t *codes = malloc((size_t)(p.rows * p.cols));
                float *sc = calloc((size_t)p.n_scales, sizeof(float));
                uint8_t *data = malloc(p.total_bytes);
                int rc = codes && sc && data ? TC_OK : tc_err(err, "out of memory");
                for (int64_t i = 0; rc == TC_OK && i < p.rows * p.cols; i++)
                    codes[i] = (int8_t)((int)(vrand() % 3) - 1);
                if (rc == TC_OK)
                    rc = tc_tpack_pack(&p, codes, sc, data, err);
                if (rc == TC_OK)
                    rc = verify_weight(&p, data, codes, vc, err);
                free(codes);
                free(sc);
                free(data);
                if (rc)
                    return TC_ERR;
            }
    return TC_OK;
}

static int same_plan(const tc_tpack_plan *a, const tc_tpack_plan *b)
{
    return a->layout == b->layout && a->rows == b->rows && a->cols == b->cols &&
           a->group.kind == b->group.kind && a->group.cols == b->group.cols;
}

/* Logits of a seeded token sequence on the LUT path and on the dequantized
 * reference fed the LUT run's own int8 activations: max |difference| / max
 * |reference|. */
static int verify_logits(const tc_tmodel *tm, const run_cfg *rc_, double *rel, size_t *n_tok,
                         tc_error *err)
{
    size_t n = tm->cfg.max_seq_len > 0 && tm->cfg.max_seq_len < 24 ? (size_t)tm->cfg.max_seq_len
                                                                   : 24;
    size_t V = (size_t)tm->cfg.vocab_size;
    int32_t tokens[24];
    for (size_t i = 0; i < n; i++)
        tokens[i] = i == 0 && tm->cfg.bos_id >= 0 ? tm->cfg.bos_id
                                                  : (int32_t)(vrand() % (uint64_t)V);
    float *a = malloc(n * V * sizeof(float)), *b = malloc(n * V * sizeof(float));
    tc_trun *lut = NULL, *ref = NULL;
    tc_trun_trace *trace = tc_trun_trace_new();
    tc_trun_opts ol = {TC_TRUN_LUT, rc_->kernel, rc_->threads, (int)n, 0};
    tc_trun_opts orf = {TC_TRUN_REF, TC_KPATH_SCALAR, rc_->threads, (int)n, 0};
    int rc = a && b && trace ? TC_OK : tc_err(err, "out of memory for logits");
    if (rc == TC_OK)
        rc = tc_trun_new(&lut, tm, &ol, err);
    if (rc == TC_OK)
        rc = tc_trun_new(&ref, tm, &orf, err);
    if (rc == TC_OK) {
        tc_trun_set_trace(lut, trace, 0);
        tc_trun_set_trace(ref, trace, 1);
    }
    /* a prompt of 9 tokens at once, then token by token, the same calls on both */
    for (int pass = 0; rc == TC_OK && pass < 2; pass++) {
        tc_trun *r = pass ? ref : lut;
        float *out = pass ? b : a;
        size_t first = n < 9 ? n : 9;
        rc = tc_trun_feed(r, tokens, first, out, 1, err);
        for (size_t i = first; rc == TC_OK && i < n; i++)
            rc = tc_trun_step(r, tokens[i], out + i * V, err);
    }
    double dmax = 0, scale = 0;
    for (size_t i = 0; rc == TC_OK && i < n * V; i++) {
        dmax = fmax(dmax, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    *rel = scale > 0 ? dmax / scale : dmax;
    *n_tok = n;
    tc_trun_free(lut);
    tc_trun_free(ref);
    tc_trun_trace_free(trace);
    free(a);
    free(b);
    return rc;
}

static int verify(const tc_tmodel *tm, const run_cfg *rcfg, const cli_common *com, tc_error *err)
{
    vcount model = {0, 0, 0}, rnd = {0, 0, 0};
    tc_tpack_plan seen[64];
    int n_seen = 0, rc = TC_OK;
    for (size_t i = 0; rc == TC_OK && i < tm->n_tensors; i++) {
        const tc_tmodel_tensor *t = &tm->tensors[i];
        if (!t->ternary)
            continue;
        int dup = 0;
        for (int j = 0; j < n_seen; j++)
            dup |= same_plan(&seen[j], &t->plan);
        if (dup)
            continue;
        if (n_seen < 64)
            seen[n_seen++] = t->plan;
        int8_t *codes = malloc((size_t)(t->plan.rows * t->plan.cols));
        float *sc = malloc((size_t)t->plan.n_scales * sizeof(float));
        rc = codes && sc ? tc_tmodel_tensor_unpack(t, codes, sc, err) : tc_err(err, "out of memory");
        if (rc == TC_OK)
            rc = verify_weight(&t->plan, t->data, codes, &model, err);
        free(codes);
        free(sc);
    }
    if (rc == TC_OK)
        rc = verify_random_shapes(&rnd, err);
    double rel = 0;
    size_t n_tok = 0;
    if (rc == TC_OK)
        rc = verify_logits(tm, rcfg, &rel, &n_tok, err);
    if (rc)
        return TC_ERR;
    tc_kernels k;
    if (tc_kernels_init(&k, rcfg->kernel, err))
        return TC_ERR;
    char paths[64] = "scalar";
    for (int p = TC_KPATH_AVX2; p < TC_KPATH_COUNT; p++)
        if (tc_kpath_available((tc_kpath)p)) {
            strcat(paths, ",");
            strcat(paths, tc_kpath_name((tc_kpath)p));
        }
    int ok = model.mismatches == 0 && rnd.mismatches == 0 && rel <= 1e-4;
    if (com->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", ok);
        cJSON_AddStringToObject(o, "paths", paths);
        cJSON_AddStringToObject(o, "logits_kernel", tc_kpath_name(k.path));
        cJSON_AddNumberToObject(o, "model_shapes", (double)model.shapes);
        cJSON_AddNumberToObject(o, "model_checks", (double)model.checks);
        cJSON_AddNumberToObject(o, "model_mismatches", (double)model.mismatches);
        cJSON_AddNumberToObject(o, "random_shapes", (double)rnd.shapes);
        cJSON_AddNumberToObject(o, "random_checks", (double)rnd.checks);
        cJSON_AddNumberToObject(o, "random_mismatches", (double)rnd.mismatches);
        cJSON_AddNumberToObject(o, "logits_tokens", (double)n_tok);
        cJSON_AddNumberToObject(o, "logits_max_rel_diff", rel);
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("kernel paths checked: %s\n", paths);
        printf("model layer shapes: %ld, %ld checks, %ld mismatches\n", model.shapes, model.checks,
               model.mismatches);
        printf("random shapes:      %ld, %ld checks, %ld mismatches\n", rnd.shapes, rnd.checks,
               rnd.mismatches);
        printf("logits (%s) vs dequantized reference on the same int8 activations, %zu tokens: "
               "max relative difference %.3g (limit 1e-4)\n",
               tc_kpath_name(k.path), n_tok, rel);
        printf("%s\n", ok ? "verify: OK" : "verify: MISMATCH");
    }
    if (!ok)
        return tc_err(err, "%s: verification failed", tm->path ? tm->path : "model");
    return TC_OK;
}

/* ---- --compare: perplexity and KL divergence ------------------------------ */

typedef struct kl_acc {
    double nll_b, nll_q;
    double *kl;
    size_t n, cap;
    uint64_t same_top;
    const float *base; /* [window][vocab] logits of the original */
    const int32_t *tokens;
    size_t len;        /* window length */
    double *lp;        /* scratch [2][vocab] */
} kl_acc;

/* log softmax in double. */
static void log_softmax(const float *x, int V, double *out)
{
    double mx = x[0];
    for (int i = 1; i < V; i++)
        mx = fmax(mx, x[i]);
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)x[i] - mx);
    double lz = mx + log(s);
    for (int i = 0; i < V; i++)
        out[i] = (double)x[i] - lz;
}

static int argmax(const float *x, int V)
{
    int b = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static int kl_score(kl_acc *a, const float *qlog, size_t pos, int V, tc_error *err)
{
    if (pos + 1 >= a->len)
        return TC_OK; /* the last position predicts nothing within the window */
    const float *blog = a->base + pos * (size_t)V;
    double *lb = a->lp, *lq = a->lp + V;
    log_softmax(blog, V, lb);
    log_softmax(qlog, V, lq);
    int32_t next = a->tokens[pos + 1];
    a->nll_b -= lb[next];
    a->nll_q -= lq[next];
    double kl = 0;
    for (int i = 0; i < V; i++)
        kl += exp(lb[i]) * (lb[i] - lq[i]);
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 4096;
        double *p = realloc(a->kl, cap * sizeof *p);
        if (!p)
            return tc_err(err, "out of memory for KL values");
        a->kl = p;
        a->cap = cap;
    }
    a->kl[a->n++] = kl;
    a->same_top += argmax(blog, V) == argmax(qlog, V);
    return TC_OK;
}

typedef struct base_rec {
    float *dst;
} base_rec;

static int on_base_logits(void *ctx, const float *lg, size_t tok0, size_t n, int V, tc_error *err)
{
    base_rec *b = ctx;
    memcpy(b->dst + tok0 * (size_t)V, lg, n * (size_t)V * sizeof(float));
    return TC_OK;
}

typedef struct q_rec {
    kl_acc *a;
    size_t first; /* batch index of the window's first token */
} q_rec;

static int on_q_logits(void *ctx, const float *lg, size_t tok0, size_t n, int V, tc_error *err)
{
    q_rec *q = ctx;
    for (size_t i = 0; i < n; i++)
        if (kl_score(q->a, lg + i * (size_t)V, tok0 - q->first + i, V, err))
            return TC_ERR;
    return TC_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

typedef struct packed_args {
    const char *path, *prompt, *compare, *eval, *ppl;
    long steps, seq_len, samples;
    float temp;
    unsigned long long seed;
    int verify;
    run_cfg rc;
    tc_dist *dist; /* --compare's windows are spread over its ranks */
} packed_args;

/* The tokenizer of --compare: --tokenizer, else the packed model's own,
 * else the original's.  A checkpoint compared (tm NULL) is tokenized as its
 * original. */
static int compare_tokenizer(const tc_tmodel *tm, const tc_model *om, const cli_common *com, tc_tokenizer **tok,
                             tc_error *err)
{
    if (com->tokenizer)
        return tc_model_tokenizer(om, com->tokenizer, tok, err);
    if (tm && tm->tok.kind != TC_TTOK_NONE)
        return tc_tmodel_tokenizer(tm, tok, err);
    return tc_model_tokenizer(om, NULL, tok, err);
}

/* Compares a packed model tm, or (tm NULL) a checkpoint qm run through the
 * fp32 decoder, with the original. */
static int compare(const tc_tmodel *tm, const tc_model *qm, const packed_args *pa, const cli_common *com,
                   tc_error *err)
{
    const char *orig_path = pa->compare, *eval = pa->eval;
    const char *path = tm ? tm->path : qm->path;
    const tc_config *qcfg = tm ? &tm->cfg : &qm->cfg;
    const tc_calib_windows *calib = tm ? tm->calib : NULL;
    const run_cfg *rcfg = &pa->rc;
    tc_model om;
    if (tc_model_open(&om, orig_path, err))
        return TC_ERR;
    int V = om.cfg.vocab_size, rc = TC_OK;
    if (V != qcfg->vocab_size || om.cfg.dim != qcfg->dim) {
        tc_model_close(&om);
        return tc_err(err, "%s: vocabulary or width differs from %s's", orig_path, path ? path : "the model");
    }
    cli_calib c = windows_of(eval, pa->samples > 0 ? pa->samples : 64, pa->seq_len, pa->seed);
    /* Not the windows that calibrated the packed model, when the file records
     * them and the text is the same (docs/CALIBRATION.md). */
    c.avoid = calib;
    c.n_avoid = calib ? 1 : 0;
    tc_calib_set set;
    memset(&set, 0, sizeof set);
    tc_tokenizer *tok = NULL;
    rc = compare_tokenizer(tm, &om, com, &tok, err);
    if (rc == TC_OK)
        rc = cli_calib_load_with(&c, &om.cfg, tok, &set, err);
    tc_tokenizer_free(tok);
    if (rc != TC_OK) {
        tc_model_close(&om);
        return TC_ERR;
    }
    if (!com->quiet && set.warning[0])
        fprintf(stderr, "%s: %s\n", TOOL, set.warning);
    char apart[TC_ERROR_MAX];
    if (!calib)
        snprintf(apart, sizeof apart, "nothing: %s records no calibration windows", path);
    else if (!set.n_avoid_applied)
        snprintf(apart, sizeof apart, "nothing: calibration was on another text, %s, recorded in %s",
                 calib->source ? calib->source : "?", path);
    else
        snprintf(apart, sizeof apart, "%zu windows left out: they share tokens with the %zu calibration windows "
                 "recorded in %s", set.n_avoided, calib->n_windows, path);
    size_t win = 0, total = set.n_tokens;
    for (size_t s = 0; s < set.n_seqs; s++)
        win = set.offsets[s + 1] - set.offsets[s] > win ? set.offsets[s + 1] - set.offsets[s] : win;
    kl_acc a;
    memset(&a, 0, sizeof a);
    float *base = malloc((win ? win : 1) * (size_t)V * sizeof(float));
    a.lp = malloc(2 * (size_t)V * sizeof(double));
    tc_trun *r = NULL;
    tc_trun_opts o = {TC_TRUN_LUT, rcfg->kernel, rcfg->threads, (int)win, 0};
    if (!base || !a.lp)
        rc = tc_err(err, "out of memory for %zu x %d logits", win, V);
    if (rc == TC_OK && tm)
        rc = tc_trun_new(&r, tm, &o, err);
    /* The original's weights converted to fp32 once (as the analysis does,
     * up to 1 GiB) rather than layer by layer for every window, and its
     * pass's buffers kept from window to window; a compared checkpoint's
     * too (dequantized). */
    tc_weights w, qw;
    memset(&w, 0, sizeof w);
    memset(&qw, 0, sizeof qw);
    int have_w = rc == TC_OK && tc_weights_bytes(&om) <= ((uint64_t)1 << 30);
    if (have_w && (rc = tc_weights_load(&w, &om, err)) != TC_OK)
        have_w = 0;
    int have_qw = rc == TC_OK && qm && tc_weights_bytes(qm) <= ((uint64_t)1 << 30);
    if (have_qw && (rc = tc_weights_load(&qw, qm, err)) != TC_OK)
        have_qw = 0;
    tc_forward_ws *ws = tc_forward_ws_new();
    const char *kname = !tm ? "fp32 decoder" : r ? tc_kpath_name(tc_trun_kernels(r)->path) : "";
    cli_progress bar;
    cli_progress_init(&bar, "compare", com->quiet);
    double t_orig = 0, t_packed = 0, c_orig = 0, c_packed = 0;
    /* Each window scores into a record of its own (NLLs, agreements, its
     * KL values); the windows are spread over the ranks of pa->dist and the
     * records added in window order, so that every figure is the same bits
     * in one process and in many. */
    size_t q0 = 0, q1 = 0, rec_n = 4 + (win ? win : 1);
    tc_dist_range(pa->dist, pa->dist ? pa->dist->rank : 0, set.n_seqs, &q0, &q1);
    double *recs = calloc(set.n_seqs ? set.n_seqs * rec_n : 1, sizeof *recs);
    if (rc == TC_OK && !recs)
        rc = tc_err(err, "out of memory for the windows' scores");
    for (size_t s = q0; rc == TC_OK && s < q1; s++) {
        size_t len = set.offsets[s + 1] - set.offsets[s], offs[2] = {0, len};
        tc_batch b = {set.tokens + set.offsets[s], offs, 1};
        base_rec br = {base};
        tc_observer ob = {.ctx = &br, .logits = on_base_logits};
        tc_forward_opts fo = {.n_threads = rcfg->threads, .observers = &ob, .n_observers = 1,
                              .weights = have_w ? &w : NULL, .ws = ws};
        double t0 = now(), c0 = cpu_now();
        rc = tc_forward(&om, &b, &fo, err);
        double t1 = now(), c1 = cpu_now();
        cli_progress_update(&bar, ((double)set.offsets[s] + 0.5 * (double)len) / (double)total);
        a.base = base;
        a.tokens = b.tokens;
        a.len = len;
        q_rec q = {&a, 0};
        a.nll_b = a.nll_q = 0;
        a.same_top = 0;
        a.n = 0;
        /* The whole window at once: the multi-token kernels and one pass
         * of the attention per chunk of tokens. */
        if (rc == TC_OK && tm)
            rc = tc_trun_batch(r, &b, on_q_logits, &q, err);
        if (rc == TC_OK && qm) {
            tc_observer qo = {.ctx = &q, .logits = on_q_logits};
            tc_forward_opts qf = {.n_threads = rcfg->threads, .observers = &qo, .n_observers = 1,
                                  .weights = have_qw ? &qw : NULL, .ws = ws};
            rc = tc_forward(qm, &b, &qf, err);
        }
        if (rc == TC_OK) {
            double *rec = recs + s * rec_n;
            rec[0] = a.nll_b;
            rec[1] = a.nll_q;
            rec[2] = (double)a.same_top;
            rec[3] = (double)a.n;
            memcpy(rec + 4, a.kl, a.n * sizeof *a.kl);
        }
        t_orig += t1 - t0;
        t_packed += now() - t1;
        c_orig += c1 - c0;
        c_packed += cpu_now() - c1;
        cli_progress_update(&bar, (double)set.offsets[s + 1] / (double)total);
    }
    cli_progress_done(&bar);
    rc = tc_dist_allgather(pa->dist, rc, recs, set.n_seqs, rec_n * sizeof *recs, err);
    a.nll_b = a.nll_q = 0;
    a.same_top = 0;
    a.n = 0;
    for (size_t s = 0; rc == TC_OK && s < set.n_seqs; s++) {
        const double *rec = recs + s * rec_n;
        size_t k = (size_t)rec[3];
        if (a.cap < a.n + k) {
            double *p = realloc(a.kl, (a.n + k) * sizeof *p);
            if (!p) {
                rc = tc_err(err, "out of memory for KL values");
                break;
            }
            a.kl = p;
            a.cap = a.n + k;
        }
        a.nll_b += rec[0];
        a.nll_q += rec[1];
        a.same_top += (uint64_t)rec[2];
        memcpy(a.kl + a.n, rec + 4, k * sizeof *a.kl);
        a.n += k;
    }
    free(recs);
    if (rc == TC_OK && a.n == 0)
        rc = tc_err(err, "%s: no position to score", eval);
    if (rc == TC_OK && !com->quiet)
        fprintf(stderr,
                "%s: %zu windows, %zu tokens: original (fp32) %.1f s (CPU %.1f s), %s %.1f s (CPU %.1f s; %.0f "
                "tokens/s, %s kernels, %d thread%s)\n",
                TOOL, set.n_seqs, total, t_orig, c_orig, tm ? "packed" : "model", t_packed, c_packed,
                (double)total / (t_packed > 0 ? t_packed : 1e-9), kname,
                rcfg->threads, rcfg->threads > 1 ? "s" : "");
    if (rc == TC_OK) {
        double sum = 0;
        for (size_t i = 0; i < a.n; i++)
            sum += a.kl[i];
        qsort(a.kl, a.n, sizeof *a.kl, cmp_double);
        double mean = sum / (double)a.n, mx = a.kl[a.n - 1];
        double p99 = a.kl[(size_t)floor(0.99 * (double)(a.n - 1))];
        double top = (double)a.same_top / (double)a.n;
        double top_se = sqrt(top * (1 - top) / (double)a.n);
        double ppl_b = exp(a.nll_b / (double)a.n), ppl_q = exp(a.nll_q / (double)a.n);
        if (com->json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "original", orig_path);
            cJSON_AddStringToObject(j, "packed", path ? path : "");
            cJSON_AddStringToObject(j, "eval", eval);
            cJSON_AddStringToObject(j, "kernel", kname);
            cJSON_AddNumberToObject(j, "threads", rcfg->threads);
            cJSON_AddNumberToObject(j, "n_windows", (double)set.n_seqs);
            cJSON_AddNumberToObject(j, "window", (double)win);
            cJSON_AddNumberToObject(j, "n_tokens", (double)total);
            cJSON_AddNumberToObject(j, "seed", (double)pa->seed);
            cJSON_AddItemToObject(j, "eval_windows", tc_calib_windows_to_json(&set.win));
            if (calib)
                cJSON_AddItemToObject(j, "calibration", tc_calib_windows_to_json(calib));
            cJSON_AddNumberToObject(j, "left_out", (double)set.n_avoided);
            cJSON_AddStringToObject(j, "kept_apart", apart);
            cJSON_AddStringToObject(j, "scored", "every position but each window's first");
            cJSON_AddNumberToObject(j, "n_scored", (double)a.n);
            cJSON_AddNumberToObject(j, "ppl_original", ppl_b);
            cJSON_AddNumberToObject(j, "ppl_packed", ppl_q);
            cJSON_AddNumberToObject(j, "kl_mean", mean);
            cJSON_AddNumberToObject(j, "kl_max", mx);
            cJSON_AddNumberToObject(j, "kl_p99", p99);
            cJSON_AddNumberToObject(j, "top1_agreement", top);
            cJSON_AddNumberToObject(j, "same_top_p_percent", 100 * top);
            cJSON_AddNumberToObject(j, "same_top_p_stderr_percent", 100 * top_se);
            cJSON_AddNumberToObject(j, "seconds_original", t_orig);
            cJSON_AddNumberToObject(j, "seconds_packed", t_packed);
            cJSON_AddNumberToObject(j, "cpu_seconds_original", c_orig);
            cJSON_AddNumberToObject(j, "cpu_seconds_packed", c_packed);
            cJSON_AddNumberToObject(j, "packed_tokens_per_s", (double)total / (t_packed > 0 ? t_packed : 1e-9));
            char *str = cJSON_Print(j);
            printf("%s\n", str);
            free(str);
            cJSON_Delete(j);
        } else {
            char *line = tc_calib_windows_describe(&set.win);
            printf("%zu windows of %zu tokens (%zu tokens), %zu positions scored (all but each window's "
                   "first)\n",
                   set.n_seqs, win, set.n_tokens, a.n);
            printf("windows: %s\n", line ? line : "(out of memory)");
            printf("kept apart from calibration: %s\n", apart);
            free(line);
            const char *label = tm ? "packed" : "model";
            printf("perplexity: original %.6f, %s %.6f (ratio %.4f)\n", ppl_b, label, ppl_q,
                   ppl_q / ppl_b);
            printf("KL divergence (original || %s): mean %.6f, max %.6f, 99%% %.6f\n", label, mean,
                   mx, p99);
            printf("top-1 agreement (same top p): %.3f +- %.3f %%\n", 100 * top, 100 * top_se);
        }
    }
    tc_trun_free(r);
    tc_forward_ws_free(ws);
    if (have_w)
        tc_weights_free(&w);
    if (have_qw)
        tc_weights_free(&qw);
    free(base);
    free(a.lp);
    free(a.kl);
    tc_calib_set_free(&set);
    tc_model_close(&om);
    return rc;
}

/* --ppl on a packed model: the windows of --ppl, each run whole. */
static int packed_perplexity(const tc_tmodel *tm, const packed_args *pa, const cli_common *com, tc_error *err)
{
    tc_tokenizer *tok = NULL;
    if (tc_tmodel_tokenizer_open(tm, com->tokenizer, &tok, err))
        return TC_ERR;
    cli_calib c = windows_of(pa->ppl, pa->samples, pa->seq_len, pa->seed);
    tc_calib_set set;
    int rc = cli_calib_load_with(&c, &tm->cfg, tok, &set, err);
    tc_tokenizer_free(tok);
    if (rc != TC_OK)
        return TC_ERR;
    size_t win = 0;
    for (size_t s = 0; s < set.n_seqs; s++)
        win = set.offsets[s + 1] - set.offsets[s] > win ? set.offsets[s + 1] - set.offsets[s] : win;
    tc_trun *r = NULL;
    tc_trun_opts o = {TC_TRUN_LUT, pa->rc.kernel, pa->rc.threads, (int)(win ? win : 1), 0};
    rc = tc_trun_new(&r, tm, &o, err);
    cli_progress bar;
    cli_progress_init(&bar, "ppl", com->quiet);
    tc_batch b = {set.tokens, set.offsets, set.n_seqs};
    tc_ppl res;
    if (rc == TC_OK)
        rc = tc_trun_perplexity(r, &b, cli_progress_update, &bar, &res, err);
    cli_progress_done(&bar);
    if (rc == TC_OK)
        print_ppl(tm->path, pa->ppl, &res, &set, com);
    tc_trun_free(r);
    tc_calib_set_free(&set);
    return rc;
}

/* ---- generation on a packed model ----------------------------------------- */

static int generate_packed(const tc_tmodel *tm, tc_tokenizer *tok, const char *prompt, long steps,
                           float temp, unsigned long long seed, const run_cfg *rcfg,
                           const cli_common *com, tc_error *err)
{
    int32_t *ids;
    size_t n_prompt;
    if (encode_prompt(tok, prompt, tm->cfg.bos_id, &ids, &n_prompt, err))
        return TC_ERR;
    int max_len = tm->cfg.max_seq_len > 0 ? tm->cfg.max_seq_len : 2048;
    tc_trun *r = NULL;
    tc_trun_opts o = {TC_TRUN_LUT, rcfg->kernel, rcfg->threads, max_len, 0};
    gen_stats st = {0};
    int rc = n_prompt == 0 ? tc_err(err, "the prompt is empty and the model has no BOS token")
                           : tc_trun_new(&r, tm, &o, err);
    if (rc == TC_OK)
        rc = stream_text(feed_packed, r, tok, prompt, ids, n_prompt, steps, max_len, tm->cfg.vocab_size,
                         tm->cfg.eos_id, temp, seed, &st, err);
    if (rc == TC_OK && !com->quiet)
        fprintf(stderr,
                "%s: %s kernels, %d thread%s: prompt %zu tokens at %.1f tokens/s; generated %ld "
                "tokens at %.1f tokens/s\n",
                TOOL, tc_kpath_name(tc_trun_kernels(r)->path), rcfg->threads, rcfg->threads > 1 ? "s" : "",
                n_prompt, (double)n_prompt / st.prompt_s, st.made, (double)st.made / st.gen_s);
    tc_trun_free(r);
    free(ids);
    return rc;
}

/* Every input is opened before the first result is printed: the original,
 * a --tokenizer file, the evaluation and perplexity texts. */
static int check_packed_inputs(const packed_args *pa, const cli_common *com, tc_error *err)
{
    int rc = TC_OK;
    if (pa->compare) {
        tc_model om;
        rc = tc_model_open(&om, pa->compare, err);
        if (rc == TC_OK)
            tc_model_close(&om);
    }
    if (rc == TC_OK && com->tokenizer) {
        tc_tokenizer *tok = NULL;
        rc = tc_tokenizer_open(&tok, com->tokenizer, err);
        tc_tokenizer_free(tok);
    }
    const char *texts[2] = {pa->compare ? pa->eval : NULL, pa->ppl};
    for (int i = 0; i < 2 && rc == TC_OK; i++) {
        if (!texts[i])
            continue;
        tc_calib_docs docs = {0};
        rc = tc_calib_docs_read(&docs, texts[i], TC_CALIB_AUTO, "text", err);
        tc_calib_docs_free(&docs);
    }
    return rc;
}

static int run_packed(const packed_args *pa, const cli_common *com)
{
    tc_error err = {{0}};
    if (!pa->verify && !pa->compare && !pa->prompt && !pa->ppl)
        return cli_usage_error(TOOL, "nothing to do: give --generate PROMPT, --ppl FILE, --compare ORIGINAL "
                                     "--eval FILE or --verify");
    if (pa->compare && !pa->eval && !pa->prompt)
        return cli_usage_error(TOOL, "--compare needs --eval FILE");
    if (pa->eval && !pa->compare)
        return cli_usage_error(TOOL, "--eval FILE goes with --compare ORIGINAL");
    tc_tmodel tm;
    int code = cli_dist_check(TOOL, pa->dist, tc_tmodel_open(&tm, pa->path, &err), &err);
    if (code)
        return code;
    int rc = tc_dist_agree(pa->dist, check_packed_inputs(pa, com, &err), &err, NULL);
    if (rc == TC_OK && pa->verify)
        rc = verify(&tm, &pa->rc, com, &err);
    if (rc == TC_OK && pa->ppl)
        rc = packed_perplexity(&tm, pa, com, &err);
    if (rc == TC_OK && pa->compare && pa->eval)
        rc = compare(&tm, NULL, pa, com, &err);
    if (rc == TC_OK && pa->prompt) {
        /* --tokenizer, else the file's own, else (older files) ORIGINAL's. */
        tc_tokenizer *tok = NULL;
        if (!com->tokenizer && tm.tok.kind == TC_TTOK_NONE && pa->compare) {
            tc_model om;
            rc = tc_model_open(&om, pa->compare, &err);
            if (rc == TC_OK) {
                rc = tc_model_tokenizer(&om, NULL, &tok, &err);
                tc_model_close(&om);
            }
        } else {
            rc = tc_tmodel_tokenizer_open(&tm, com->tokenizer, &tok, &err);
        }
        if (rc == TC_OK)
            rc = generate_packed(&tm, tok, pa->prompt, pa->steps, pa->temp, pa->seed, &pa->rc, com,
                                 &err);
        tc_tokenizer_free(tok);
    }
    tc_tmodel_close(&tm);
    return cli_dist_check(TOOL, pa->dist, rc, &err);
}

int main(int argc, char **argv)
{
    enum { OPT_GENERATE = CLI_OPT_TOOL_BASE, OPT_TEMP, OPT_SEED, OPT_PPL, OPT_SEQ_LEN, OPT_KERNEL,
           OPT_VERIFY, OPT_COMPARE, OPT_EVAL, OPT_SAMPLES };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        {"generate", required_argument, 0, OPT_GENERATE},
        {"steps", required_argument, 0, 'n'},
        {"temp", required_argument, 0, OPT_TEMP},
        {"seed", required_argument, 0, OPT_SEED},
        {"ppl", required_argument, 0, OPT_PPL},
        {"seq-len", required_argument, 0, OPT_SEQ_LEN},
        {"kernel", required_argument, 0, OPT_KERNEL},
        {"verify", no_argument, 0, OPT_VERIFY},
        {"compare", required_argument, 0, OPT_COMPARE},
        {"eval", required_argument, 0, OPT_EVAL},
        {"samples", required_argument, 0, OPT_SAMPLES},
        {0, 0, 0, 0},
    };
    cli_common com = {0};
    cli_init();
    tc_dist dist;
    cli_dist_init(&dist, &argc, &argv);
    const char *prompt = NULL, *ppl_file = NULL, *compare_path = NULL, *eval_file = NULL;
    const char *kernel = getenv("TC_KERNEL");
    int verify_flag = 0;
    long steps = 256, seq_len = 0, samples = 0;
    float temp = 0.0f;
    unsigned long long seed = 0;
    int c, code;
    while ((c = getopt_long(argc, argv, "qhn:", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &com, usage, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        char *end;
        switch (c) {
        case OPT_GENERATE: prompt = optarg; break;
        case 'n':
            if ((steps = cli_parse_long(optarg, 0, 1L << 30)) < 0)
                return cli_usage_error(TOOL, "-n needs a non-negative number, not '%s'", optarg);
            break;
        case OPT_TEMP:
            temp = strtof(optarg, &end);
            if (*end || end == optarg || !(temp >= 0) || !isfinite(temp))
                return cli_usage_error(TOOL, "--temp needs a number >= 0, not '%s'", optarg);
            break;
        case OPT_SEED:
            seed = strtoull(optarg, &end, 10);
            if (*end || end == optarg)
                return cli_usage_error(TOOL, "--seed needs a number, not '%s'", optarg);
            break;
        case OPT_PPL: ppl_file = optarg; break;
        case OPT_KERNEL: kernel = optarg; break;
        case OPT_VERIFY: verify_flag = 1; break;
        case OPT_COMPARE: compare_path = optarg; break;
        case OPT_EVAL: eval_file = optarg; break;
        case OPT_SEQ_LEN:
            if ((seq_len = cli_parse_long(optarg, 2, 1L << 24)) < 0)
                return cli_usage_error(TOOL, "--seq-len needs a number >= 2, not '%s'", optarg);
            break;
        case OPT_SAMPLES:
            if ((samples = cli_parse_long(optarg, 1, 1L << 30)) < 0)
                return cli_usage_error(TOOL, "--samples needs a number >= 1, not '%s'", optarg);
            break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    if (com.info)
        return cli_info(TOOL, argv[optind], com.json);
    tc_kpath kpath = TC_KPATH_AUTO;
    if (kernel && *kernel) {
        tc_error kerr;
        if (tc_kpath_parse(kernel, &kpath, &kerr))
            return cli_usage_error(TOOL, "%s", kerr.msg);
    }
    if (tc_tmodel_is_packed(argv[optind])) {
        packed_args pa = {argv[optind], prompt, compare_path, eval_file, ppl_file, steps, seq_len, samples,
                          temp, seed, verify_flag,
                          {kpath, com.threads > 0 ? com.threads : cli_default_threads()}, &dist};
        return run_packed(&pa, &com);
    }
    if (verify_flag)
        return cli_usage_error(TOOL, "--verify needs a packed ternary model (.tcq)");
    if (compare_path && !eval_file)
        return cli_usage_error(TOOL, "--compare needs --eval FILE");
    if (eval_file && !compare_path)
        return cli_usage_error(TOOL, "--eval FILE goes with --compare ORIGINAL");
    if (!prompt && !ppl_file && !compare_path)
        return cli_usage_error(TOOL, "nothing to do: give --generate PROMPT, --ppl FILE or --compare ORIGINAL "
                                     "--eval FILE");
    tc_error err = {{0}};
    tc_model m;
    if ((code = cli_dist_check(TOOL, &dist, tc_model_open(&m, argv[optind], &err), &err)))
        return code;
    packed_args pa = {argv[optind], prompt, compare_path, eval_file, NULL, steps, seq_len, samples,
                      temp, seed, 0, {kpath, com.threads > 0 ? com.threads : cli_default_threads()}, &dist};
    int rc = compare_path ? check_packed_inputs(&pa, &com, &err) : TC_OK;
    if (rc == TC_OK && ppl_file)
        rc = perplexity(&m, ppl_file, samples, seq_len, seed, &com, &dist, &err);
    if (rc == TC_OK && compare_path)
        rc = compare(NULL, &m, &pa, &com, &err);
    if (rc == TC_OK && prompt) {
        tc_tokenizer *tok;
        rc = tc_model_tokenizer(&m, com.tokenizer, &tok, &err);
        if (rc == TC_OK) {
            rc = generate(&m, tok, prompt, steps, temp, seed, &com, &err);
            tc_tokenizer_free(tok);
        }
    }
    tc_model_close(&m);
    return cli_dist_check(TOOL, &dist, rc, &err);
}
