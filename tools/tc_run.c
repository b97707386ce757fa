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

static const char *const TOOL = "tc-run";

static void usage(void)
{
    printf("Usage: %s MODEL --generate PROMPT [-n N] [--temp T] [--seed S]\n"
           "       %s MODEL --ppl FILE [--seq-len L]\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Runs a model: generation from a prompt (an empty prompt starts from BOS) and\n"
           "perplexity of a text.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.\n"
           "\n"
           "Generation:\n"
           "  --generate PROMPT   text to continue (\"\" starts from BOS alone)\n"
           "  -n, --steps N       positions to run, the BOS included, as llama2.c counts\n"
           "                      them (default 256)\n"
           "  --temp T            sampling temperature; 0 is greedy (default 0)\n"
           "  --seed S            sampling seed (default 0)\n"
           "  Text goes to stdout as it is generated; tokens/s for the prompt and the\n"
           "  generation go to stderr.\n"
           "\n"
           "Perplexity:\n"
           "  --ppl FILE          text (or JSON Lines): every paragraph is a document that\n"
           "                      starts with BOS; the documents are concatenated and cut into\n"
           "                      non-overlapping windows of --seq-len tokens (default:\n"
           "                      min(256, context)); every position but a window's first\n"
           "                      is scored\n"
           "  --seq-len L         window length\n"
           "\n" CLI_COMMON_HELP,
           TOOL, TOOL, TOOL);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Streams generated text to stdout token by token. */
static int generate(const tc_model *m, tc_tokenizer *tok, const char *prompt, long steps, float temp,
                    unsigned long long seed, const cli_common *com, tc_error *err)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int32_t bos = tc_tokenizer_bos(tok) >= 0 ? tc_tokenizer_bos(tok) : m->cfg.bos_id;
    if (tc_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n_ids, err))
        return TC_ERR;
    int32_t *prompt_ids = malloc((n_ids + 1) * sizeof *prompt_ids);
    if (!prompt_ids) {
        free(ids);
        return tc_err(err, "out of memory");
    }
    size_t n_prompt = 0;
    if (bos >= 0)
        prompt_ids[n_prompt++] = bos;
    memcpy(prompt_ids + n_prompt, ids, n_ids * sizeof *ids);
    n_prompt += n_ids;
    free(ids);
    if (n_prompt == 0) {
        free(prompt_ids);
        return tc_err(err, "the prompt is empty and the model has no BOS token");
    }
    tc_decoder *d;
    tc_decoder_opts dopts = {.n_threads = 1};
    if (tc_decoder_new(&d, m, &dopts, err)) {
        free(prompt_ids);
        return TC_ERR;
    }
    /* Like llama2.c, -n counts positions from the first prompt token, so
     * "-n 200" from BOS alone generates 199 tokens. */
    steps = steps - (long)n_prompt + 1;
    if ((long)n_prompt + steps > (long)m->cfg.max_seq_len)
        steps = m->cfg.max_seq_len - (long)n_prompt;
    if (steps < 0)
        steps = 0;
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof *logits);
    int rc = logits ? TC_OK : tc_err(err, "out of memory");
    tc_rng rng;
    tc_rng_seed(&rng, seed);
    double t0 = now();
    if (rc == TC_OK)
        rc = tc_decoder_feed(d, prompt_ids, n_prompt, logits, err);
    double t1 = now();
    int32_t prev = prompt_ids[n_prompt - 1];
    long made = 0;
    fputs(prompt, stdout);
    for (; rc == TC_OK && made < steps; made++) {
        int32_t next = tc_sample(logits, m->cfg.vocab_size, temp, &rng);
        if (next == m->cfg.eos_id || next == tc_tokenizer_eos(tok))
            break;
        const char *piece;
        size_t len;
        if (tc_tokenizer_piece(tok, prev, next, &piece, &len, err) == TC_OK)
            fwrite(piece, 1, len, stdout);
        fflush(stdout);
        prev = next;
        if (made + 1 < steps)
            rc = tc_decoder_step(d, next, logits, err);
    }
    double t2 = now();
    if (rc == TC_OK) {
        if (!com->quiet)
            fprintf(stderr, "%s: prompt %zu tokens at %.1f tokens/s; generated %ld tokens at %.1f tokens/s\n", TOOL,
                    n_prompt, (double)n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), made,
                    (double)made / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    }
    free(logits);
    free(prompt_ids);
    tc_decoder_free(d);
    return rc;
}

static int perplexity(const tc_model *m, const char *file, long seq_len, const cli_common *com, tc_error *err)
{
    cli_calib c = {.text = file, .samples = 1L << 30, .seq_len = seq_len};
    tc_calib_set set;
    if (cli_calib_load(&c, m, com->tokenizer, &set, err))
        return TC_ERR;
    cli_progress bar;
    cli_progress_init(&bar, "ppl", com->quiet);
    tc_ppl_opts po = {
        .n_threads = com->threads > 0 ? com->threads : cli_default_threads(),
        .progress = cli_progress_update,
        .progress_ctx = &bar,
    };
    tc_ppl r;
    int rc = tc_perplexity(m, set.tokens, set.offsets, set.n_seqs, &po, &r, err);
    cli_progress_done(&bar);
    if (rc == TC_OK) {
        if (com->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", m->path);
            cJSON_AddStringToObject(o, "text", file);
            cJSON_AddNumberToObject(o, "ppl", r.ppl);
            cJSON_AddNumberToObject(o, "nll", r.nll);
            cJSON_AddNumberToObject(o, "n_windows", (double)set.n_seqs);
            cJSON_AddNumberToObject(o, "seq_len", set.n_seqs ? (double)(set.offsets[1] - set.offsets[0]) : 0);
            cJSON_AddNumberToObject(o, "n_tokens", (double)r.n_tokens);
            cJSON_AddNumberToObject(o, "n_predicted", (double)r.n_predicted);
            char *s = cJSON_Print(o);
            printf("%s\n", s);
            free(s);
            cJSON_Delete(o);
        } else {
            printf("perplexity %.6f (mean NLL %.6f) over %llu predicted tokens in %zu windows of %zu\n", r.ppl, r.nll,
                   (unsigned long long)r.n_predicted, set.n_seqs,
                   set.n_seqs ? set.offsets[1] - set.offsets[0] : 0);
        }
    }
    tc_calib_set_free(&set);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_GENERATE = CLI_OPT_TOOL_BASE, OPT_TEMP, OPT_SEED, OPT_PPL, OPT_SEQ_LEN };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        {"generate", required_argument, 0, OPT_GENERATE},
        {"steps", required_argument, 0, 'n'},
        {"temp", required_argument, 0, OPT_TEMP},
        {"seed", required_argument, 0, OPT_SEED},
        {"ppl", required_argument, 0, OPT_PPL},
        {"seq-len", required_argument, 0, OPT_SEQ_LEN},
        {0, 0, 0, 0},
    };
    cli_common com = {0};
    cli_install_signals();
    const char *prompt = NULL, *ppl_file = NULL;
    long steps = 256, seq_len = 0;
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
        case OPT_SEQ_LEN:
            if ((seq_len = cli_parse_long(optarg, 2, 1L << 24)) < 0)
                return cli_usage_error(TOOL, "--seq-len needs a number >= 2, not '%s'", optarg);
            break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    if (com.info)
        return cli_info(TOOL, argv[optind], com.json);
    if (!prompt && !ppl_file)
        return cli_usage_error(TOOL, "nothing to do: give --generate PROMPT or --ppl FILE");
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, argv[optind], &err))
        return cli_fail(TOOL, &err);
    int rc = TC_OK;
    if (ppl_file)
        rc = perplexity(&m, ppl_file, seq_len, &com, &err);
    if (rc == TC_OK && prompt) {
        tc_tokenizer *tok;
        rc = tc_model_tokenizer(&m, com.tokenizer, &tok, &err);
        if (rc == TC_OK) {
            rc = generate(&m, tok, prompt, steps, temp, seed, &com, &err);
            tc_tokenizer_free(tok);
        }
    }
    tc_model_close(&m);
    return rc == TC_OK ? TC_EXIT_OK : cli_fail(TOOL, &err);
}
