/* tc-prune: drop the most redundant attention layers, MLP layers or whole blocks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "tc/analyze.h"
#include "tc/calib.h"
#include "tc/prune.h"
#include "tc/report.h"

static const char *const TOOL = "tc-prune";

static void usage(void)
{
    printf("Usage: %s [OPTIONS] MODEL -o OUT\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Drops the most redundant attention layers, MLP layers or whole blocks and writes a\n"
           "checkpoint that runtimes load.  The plan and its predicted savings are printed before\n"
           "anything is written (on stderr; on stdout as JSON with --json).\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.\n"
           "\n"
           "What to drop:\n"
           "  --drop-attn K      the K most redundant attention sub-layers\n"
           "  --drop-mlp K       the K most redundant MLP sub-layers\n"
           "  --drop-blocks K    the K most redundant whole blocks\n"
           "  --joint K          K sub-layers, attention and MLP ranked together\n"
           "  --drop-heads K     the K attention heads whose masking alone changes the next-token\n"
           "                     distributions least (KL; with --criterion dnll, the NLL); a layer\n"
           "                     left without heads loses its attention.  GGUF holds any set as\n"
           "                     llama.cpp's deci with per-layer head counts (kept heads of a\n"
           "                     key/value group split into groups of equal size, each with a copy\n"
           "                     of the key/value head); a Hugging Face config holds one count for\n"
           "                     every layer, so HF takes only drops that leave every layer the\n"
           "                     same counts; llama2.c none\n"
           "  --head-samples N   windows over which each head is masked when ranking them from\n"
           "                     --calib (default 8)\n"
           "  --layers LIST      these modules, e.g. attn:3,attn:4,mlp:2,block:1 (ranges: attn:3-5);\n"
           "                     counts above then choose among the rest\n"
           "  --keep-first N     never drop anything in the first N layers\n"
           "  --keep-last N      nor in the last N layers\n"
           "  --criterion C      cos (default): highest cosine of a module's input and output goes\n"
           "                     first; dnll / kl: smallest measured loss when skipped goes first\n"
           "  --iterative        drop one module at a time, analysing the pruned model again\n"
           "                     before each choice (needs --calib)\n"
           "\n"
           "Where the ranking comes from: --report FILE (a JSON report written by tc-analyze)\n"
           "or calibration data analysed now (below).\n"
           "\n"
           "Output:\n"
           "  -o, --output OUT   the pruned checkpoint (a directory for HF); never an input, nor\n"
           "                     inside an input directory\n"
           CLI_FORCE_HELP
           "  --format F         hf, gguf or llama2c (default: gguf when OUT ends in .gguf, else\n"
           "                     the input's format); llama2.c holds whole-block drops only\n"
           "  --type T           GGUF: store the linear layers as q8_0, q4_0, q4_k, q6_k (ggml's\n"
           "                     reference rounding), f16, bf16 or f32 where their rows are whole\n"
           "                     blocks of it (default: every tensor keeps its input type, byte for byte)\n"
           "                     A ternary-trained model (BitNet) keeps its codes and scales whatever\n"
           "                     the format: HF packed or bf16 as its input, GGUF bitnet in the input's\n"
           "                     ternary type (TQ2_0 for an HF input); GGUF holds whole-block drops\n"
           "                     only for it, and --type does not apply\n"
           "  --dry-run          print the plan and stop\n"
           "  --context N        context length the FLOPs estimate assumes (default: the model's)\n"
           "  --eval FILE        after writing, compare the pruned checkpoint with the original on\n"
           "                     this text: perplexity of both, mean KL(original || pruned) and\n"
           "                     top-1 agreement over every next-token prediction of windows\n"
           "                     sampled from it as calibration windows are (--samples,\n"
           "                     --seq-len, --seed); with --dry-run the plan is applied virtually.\n"
           "                     When FILE is the calibration text (--calib, or the one the\n"
           "                     report records), windows sharing a token with a calibration\n"
           "                     window are left out (docs/CALIBRATION.md).  The text is read\n"
           "                     before anything is written\n"
           "\n"
           "Savings: parameters and bytes as stored; FLOPs per token = 2 x parameters of the\n"
           "linear layers (output head included) + 4 x heads x head_dim x context per attention\n"
           "layer; KV cache per token = 2 x kv_heads x head_dim x 2 bytes (fp16) per attention\n"
           "layer.\n"
           "\n" CLI_CALIB_HELP "\n" CLI_COMMON_HELP,
           TOOL, TOOL);
}

enum {
    OPT_DROP_ATTN = CLI_OPT_TOOL_BASE, OPT_DROP_MLP, OPT_DROP_BLOCKS, OPT_JOINT, OPT_LAYERS, OPT_KEEP_FIRST,
    OPT_KEEP_LAST, OPT_CRITERION, OPT_ITERATIVE, OPT_REPORT, OPT_FORMAT, OPT_TYPE, OPT_DRY_RUN, OPT_CONTEXT, OPT_EVAL,
    OPT_DROP_HEADS, OPT_HEAD_SAMPLES,
};

/* The windows that chose the drops, for an evaluation to leave out. */
typedef struct calib_record {
    tc_calib_windows win;
    int known;        /* win holds them */
    const char *from; /* where they were recorded: the report, or "--calib" */
} calib_record;

typedef struct args {
    cli_common com;
    cli_calib cal;
    const char *model, *output, *layers, *report, *eval, *format, *type;
    tc_prune_opts po;
    int iterative, dry_run, context, have_calib, head_samples;
    tc_dtype matrices; /* --type, or TC_DTYPE_COUNT */
    tc_dist *dist;     /* the MPI job (rank 0 writes), or a job of one */
} args;

static int parse_count(const char *opt, const char *v, int *out)
{
    long x = cli_parse_long(v, 0, 1 << 20);
    if (x < 0) {
        cli_usage_error(TOOL, "%s needs a count from 0 to %d, not '%s'", opt, 1 << 20, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, args *a)
{
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        CLI_CALIB_LONG_OPTIONS,
        {"output", required_argument, 0, 'o'},
        {"drop-attn", required_argument, 0, OPT_DROP_ATTN},
        {"drop-mlp", required_argument, 0, OPT_DROP_MLP},
        {"drop-blocks", required_argument, 0, OPT_DROP_BLOCKS},
        {"joint", required_argument, 0, OPT_JOINT},
        {"drop-heads", required_argument, 0, OPT_DROP_HEADS},
        {"head-samples", required_argument, 0, OPT_HEAD_SAMPLES},
        {"layers", required_argument, 0, OPT_LAYERS},
        {"keep-first", required_argument, 0, OPT_KEEP_FIRST},
        {"keep-last", required_argument, 0, OPT_KEEP_LAST},
        {"criterion", required_argument, 0, OPT_CRITERION},
        {"iterative", no_argument, 0, OPT_ITERATIVE},
        {"report", required_argument, 0, OPT_REPORT},
        {"format", required_argument, 0, OPT_FORMAT}, {"type", required_argument, 0, OPT_TYPE},
        {"dry-run", no_argument, 0, OPT_DRY_RUN},
        {"context", required_argument, 0, OPT_CONTEXT},
        {"eval", required_argument, 0, OPT_EVAL},
        CLI_FORCE_LONG_OPTION,
        {0, 0, 0, 0},
    };
    int c, code;
    while ((c = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &a->com, usage, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        r = cli_calib_option(TOOL, c, optarg, &a->cal, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        switch (c) {
        case 'o': a->output = optarg; break;
        case OPT_DROP_ATTN: if (parse_count("--drop-attn", optarg, &a->po.drop_attn)) return TC_EXIT_USAGE; break;
        case OPT_DROP_MLP: if (parse_count("--drop-mlp", optarg, &a->po.drop_mlp)) return TC_EXIT_USAGE; break;
        case OPT_DROP_BLOCKS: if (parse_count("--drop-blocks", optarg, &a->po.drop_blocks)) return TC_EXIT_USAGE; break;
        case OPT_JOINT: if (parse_count("--joint", optarg, &a->po.joint)) return TC_EXIT_USAGE; break;
        case OPT_DROP_HEADS: if (parse_count("--drop-heads", optarg, &a->po.drop_heads)) return TC_EXIT_USAGE; break;
        case OPT_HEAD_SAMPLES:
            if (parse_count("--head-samples", optarg, &a->head_samples))
                return TC_EXIT_USAGE;
            if (a->head_samples == 0)
                return cli_usage_error(TOOL, "--head-samples needs at least 1 window");
            break;
        case OPT_KEEP_FIRST: if (parse_count("--keep-first", optarg, &a->po.keep_first)) return TC_EXIT_USAGE; break;
        case OPT_KEEP_LAST: if (parse_count("--keep-last", optarg, &a->po.keep_last)) return TC_EXIT_USAGE; break;
        case OPT_CONTEXT: if (parse_count("--context", optarg, &a->context)) return TC_EXIT_USAGE; break;
        case OPT_LAYERS: a->layers = optarg; break;
        case OPT_CRITERION:
            if (tc_prune_criterion_parse(optarg, &a->po.criterion))
                return cli_usage_error(TOOL, "--criterion is cos, dnll or kl, not '%s'", optarg);
            break;
        case OPT_ITERATIVE: a->iterative = 1; break;
        case OPT_REPORT: a->report = optarg; break;
        case OPT_FORMAT: a->format = optarg; break;
        case OPT_TYPE: a->type = optarg; break;
        case OPT_DRY_RUN: a->dry_run = 1; break;
        case OPT_EVAL: a->eval = optarg; break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    a->model = argv[optind];
    a->have_calib = a->cal.text || a->cal.tokens;
    if (a->com.info)
        return -1;
    if (!a->output && !a->dry_run)
        return cli_usage_error(TOOL, "-o OUT is required (or --dry-run)");
    if (a->report && a->have_calib)
        return cli_usage_error(TOOL, "give either --report or --calib, not both");
    if (a->iterative && !a->have_calib)
        return cli_usage_error(TOOL, "--iterative analyses the model again after each drop: it needs --calib");
    int counts = a->po.drop_attn + a->po.drop_mlp + a->po.drop_blocks + a->po.joint + a->po.drop_heads;
    if (!counts && !a->layers)
        return cli_usage_error(TOOL, "nothing to drop: give --drop-attn, --drop-mlp, --drop-blocks, --joint, "
                               "--drop-heads or --layers");
    if (a->iterative && a->po.drop_heads)
        return cli_usage_error(TOOL, "--iterative chooses sub-layers and blocks; it does not combine with --drop-heads");
    if (counts && !a->report && !a->have_calib)
        return cli_usage_error(TOOL, "choosing what to drop needs --report FILE or --calib FILE");
    if (a->format && strcmp(a->format, "hf") && strcmp(a->format, "gguf") && strcmp(a->format, "llama2c"))
        return cli_usage_error(TOOL, "--format is hf, gguf or llama2c, not '%s'", a->format);
    /* The output's name may say the format: model.gguf is a GGUF file. */
    const char *named = cli_name_format(a->output);
    if (named && !strcmp(named, "tcq"))
        return cli_usage_error(TOOL, "-o %s names a packed ternary file, which tc-quantize writes", a->output);
    if (named && a->format && strcmp(a->format, named))
        return cli_usage_error(TOOL, "-o %s names a %s file, but --format is %s", a->output, named, a->format);
    if (named)
        a->format = named;
    a->matrices = TC_DTYPE_COUNT;
    if (a->type) {
        if (cli_parse_dtype(a->type, &a->matrices) ||
            !(a->matrices == TC_F32 || a->matrices == TC_F16 || a->matrices == TC_BF16 || a->matrices == TC_Q8_0 ||
              a->matrices == TC_Q4_0 || a->matrices == TC_Q4_K || a->matrices == TC_Q6_K))
            return cli_usage_error(TOOL, "--type is q8_0, q4_0, q4_k, q6_k, f16, bf16 or f32, not '%s'", a->type);
    }
    return -1;
}

/* ---- Calibration windows ----------------------------------------------------------- */

/* cal's windows, or with text != NULL windows of that text sampled the same way. */
static int load_windows(const args *a, const tc_model *m, const char *text, tc_calib_set *set, tc_error *err)
{
    cli_calib c = a->cal;
    if (text) {
        c.text = text;
        c.tokens = NULL;
    }
    if (cli_calib_load(&c, m, a->com.tokenizer, set, err))
        return TC_ERR;
    if (set->warning[0] && !a->com.quiet)
        fprintf(stderr, "%s: %s\n", TOOL, set->warning);
    return TC_OK;
}

/* ---- Analysis ------------------------------------------------------------------------ */

typedef struct measurer {
    const tc_model *m;
    const tc_calib_set *set;
    int threads, need_measure, quiet;
    size_t head_windows;
    tc_dist *dist;
    cli_progress bar;
} measurer;

static int measure(void *ctx, const tc_prune_plan *p, tc_analysis *out, tc_error *err)
{
    measurer *me = ctx;
    tc_skip *skip = NULL;
    if (p) {
        skip = calloc((size_t)p->n_layers, sizeof *skip);
        if (!skip)
            return tc_err(err, "out of memory");
        tc_prune_skip_mask(p, skip);
    }
    cli_progress_init(&me->bar, "analysing", me->quiet);
    tc_analyze_opts o = {.n_threads = me->threads, .no_measure = !me->need_measure, .no_head_stats = 1,
                         .skip = skip, .progress = cli_progress_update, .progress_ctx = &me->bar,
                         .head_windows = me->head_windows, .dist = me->dist};
    int rc = tc_analyze(me->m, me->set->tokens, me->set->offsets, me->set->n_seqs, &o, out, err);
    cli_progress_done(&me->bar);
    free(skip);
    return rc;
}

/* ---- Printing the plan ------------------------------------------------------------- */

/* The relative change, signed: splitting a key/value group for --drop-heads
 * copies key/value heads, so the KV cache of a GGUF can grow. */
static double pct(uint64_t before, uint64_t after)
{
    return before ? 100.0 * ((double)after - (double)before) / (double)before : 0.0;
}

static void print_plan_text(const tc_model *m, const tc_prune_plan *p, const tc_prune_cost *c0,
                            const tc_prune_cost *c1, int ctx)
{
    FILE *f = stderr;
    fprintf(f, "plan for %s (%d layers):\n", m->path, m->cfg.n_layers);
    int any = 0;
    for (int l = 0; l < p->n_layers; l++) {
        const char *what = p->drop[TC_MOD_BLOCK][l] ? "block"
                           : p->drop[TC_MOD_ATTN][l] && p->drop[TC_MOD_MLP][l] ? "attn + mlp (whole block)"
                           : p->drop[TC_MOD_ATTN][l] ? "attn" : p->drop[TC_MOD_MLP][l] ? "mlp" : NULL;
        if (what) {
            fprintf(f, "  drop layer %3d  %s\n", l, what);
            any = 1;
        }
    }
    for (int l = 0; p->drop_heads && l < p->n_layers; l++) {
        if (!tc_prune_keeps(p, m, l, TC_MOD_ATTN))
            continue;
        int k = 0;
        for (int h = 0; h < p->n_heads; h++)
            k += p->drop_heads[(size_t)l * p->n_heads + h];
        if (!k)
            continue;
        fprintf(f, "  drop layer %3d  heads", l);
        for (int h = 0; h < p->n_heads; h++)
            if (p->drop_heads[(size_t)l * p->n_heads + h])
                fprintf(f, " %d", h);
        fprintf(f, " (%d of %d)\n", k, p->n_heads);
        any = 1;
    }
    if (!any)
        fprintf(f, "  nothing to drop\n");
    fprintf(f, "predicted savings:\n");
    fprintf(f, "  parameters        %14llu -> %14llu  (%+.1f%%)\n", (unsigned long long)c0->params,
            (unsigned long long)c1->params, pct(c0->params, c1->params));
    fprintf(f, "  bytes             %14llu -> %14llu  (%+.1f%%)\n", (unsigned long long)c0->bytes,
            (unsigned long long)c1->bytes, pct(c0->bytes, c1->bytes));
    fprintf(f, "  FLOPs/token @%-5d %14llu -> %14llu  (%+.1f%%)\n", ctx, (unsigned long long)c0->flops_per_token,
            (unsigned long long)c1->flops_per_token, pct(c0->flops_per_token, c1->flops_per_token));
    fprintf(f, "  KV bytes/token    %14llu -> %14llu  (%+.1f%%)\n", (unsigned long long)c0->kv_bytes_per_token,
            (unsigned long long)c1->kv_bytes_per_token, pct(c0->kv_bytes_per_token, c1->kv_bytes_per_token));
}

static cJSON *cost_json(const tc_prune_cost *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "params", (double)c->params);
    cJSON_AddNumberToObject(o, "bytes", (double)c->bytes);
    cJSON_AddNumberToObject(o, "flops_per_token", (double)c->flops_per_token);
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", (double)c->kv_bytes_per_token);
    return o;
}

static cJSON *plan_json(const tc_model *m, const tc_prune_plan *p, const tc_prune_opts *po,
                        const tc_prune_cost *c0, const tc_prune_cost *c1, int ctx)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", m->path);
    cJSON_AddNumberToObject(o, "n_layers", m->cfg.n_layers);
    cJSON_AddStringToObject(o, "criterion", tc_prune_criterion_name(po->criterion));
    for (int k = 0; k < TC_N_MODULES; k++) {
        cJSON *list = cJSON_CreateArray();
        for (int l = 0; l < p->n_layers; l++)
            if (p->drop[k][l] && (k == TC_MOD_BLOCK || !p->drop[TC_MOD_BLOCK][l]))
                cJSON_AddItemToArray(list, cJSON_CreateNumber(l));
        char key[32];
        snprintf(key, sizeof key, "drop_%s", tc_module_name((tc_module)k));
        cJSON_AddItemToObject(o, key, list);
    }
    cJSON *heads = cJSON_CreateArray();
    for (int l = 0; p->drop_heads && l < p->n_layers; l++) {
        if (!tc_prune_keeps(p, m, l, TC_MOD_ATTN))
            continue;
        for (int h = 0; h < p->n_heads; h++)
            if (p->drop_heads[(size_t)l * p->n_heads + h]) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "layer", l);
                cJSON_AddNumberToObject(e, "head", h);
                cJSON_AddItemToArray(heads, e);
            }
    }
    cJSON_AddItemToObject(o, "drop_heads", heads);
    int left = 0;
    for (int l = 0; l < p->n_layers; l++)
        left += tc_prune_keeps(p, m, l, TC_MOD_ATTN) || tc_prune_keeps(p, m, l, TC_MOD_MLP);
    cJSON_AddNumberToObject(o, "n_layers_after", left);
    cJSON_AddNumberToObject(o, "context", ctx);
    cJSON_AddItemToObject(o, "before", cost_json(c0));
    cJSON_AddItemToObject(o, "after", cost_json(c1));
    return o;
}

/* ---- Main ------------------------------------------------------------------------------ */

/* A count above what the model has is a bad command line, told before any
 * analysis. */
static int counts_fit(const args *a, const tc_model *m, const tc_prune_plan *p, tc_error *err)
{
    int attn = tc_prune_available(p, m, &a->po, TC_MOD_ATTN), mlp = tc_prune_available(p, m, &a->po, TC_MOD_MLP);
    const struct {
        const char *opt;
        int count, can;
    } rows[] = {
        {"--drop-blocks", a->po.drop_blocks, tc_prune_available(p, m, &a->po, TC_MOD_BLOCK)},
        {"--drop-attn", a->po.drop_attn, attn},
        {"--drop-mlp", a->po.drop_mlp, mlp},
        {"--joint", a->po.joint, attn + mlp},
        {"--drop-heads", a->po.drop_heads, tc_prune_available_heads(p, m, &a->po)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].count > rows[i].can)
            return tc_err(err, "%s %d: %s has %d layers, of which %d %s can go (keep-first %d, keep-last %d, "
                          "sub-layers it lacks and --layers excluded)", rows[i].opt, rows[i].count, m->path,
                          m->cfg.n_layers, rows[i].can, i == 4 ? "heads" : "modules", a->po.keep_first,
                          a->po.keep_last);
    return TC_OK;
}

static tc_format out_format(const args *a, const tc_model *m)
{
    if (!a->format)
        return m->format == TC_FORMAT_MEMORY ? TC_FORMAT_HF : m->format;
    return !strcmp(a->format, "hf") ? TC_FORMAT_HF : !strcmp(a->format, "gguf") ? TC_FORMAT_GGUF : TC_FORMAT_LLAMA2C;
}

/* The report (read) or the calibration windows (loaded) give the ranking. */
static int choose(const args *a, const tc_model *m, const tc_analysis *report, const tc_calib_set *calib,
                  tc_prune_plan *p, tc_error *err)
{
    if (a->report)
        return tc_prune_select(p, report, m, &a->po, err);
    if (!a->have_calib)
        return tc_prune_select(p, NULL, m, &a->po, err);
    int modules = a->po.drop_attn + a->po.drop_mlp + a->po.drop_blocks + a->po.joint;
    measurer me = {.m = m, .set = calib, .threads = a->com.threads > 0 ? a->com.threads : cli_default_threads(), .quiet = a->com.quiet,
                   .need_measure = modules > 0 && a->po.criterion != TC_CRIT_COS,
                   .head_windows = a->po.drop_heads > 0 ? (size_t)(a->head_samples ? a->head_samples : 8) : 0,
                   .dist = a->dist};
    int rc;
    if (a->iterative) {
        rc = tc_prune_select_iterative(p, m, &a->po, measure, &me, err);
    } else {
        tc_analysis an;
        rc = measure(&me, NULL, &an, err);
        if (rc == TC_OK) {
            rc = tc_prune_select(p, &an, m, &a->po, err);
            tc_analysis_free(&an);
        }
    }
    return rc;
}

/* The report's record of its calibration windows: absent in reports of an
 * older tc-analyze (a warning says the evaluation may then overlap them). */
static int report_record(const args *a, const cJSON *calj, calib_record *rec, tc_error *err)
{
    rec->from = a->report;
    if (!cJSON_GetObjectItemCaseSensitive(calj, "windows")) {
        if (a->eval && !a->com.quiet)
            fprintf(stderr, "%s: %s does not record its calibration windows (an older tc-analyze wrote it): the "
                    "evaluation may overlap them\n", TOOL, a->report);
        return TC_OK;
    }
    if (tc_calib_windows_from_json(calj, a->report, &rec->win, err))
        return TC_ERR;
    rec->known = 1;
    return TC_OK;
}

/* The windows of --calib: printed, and recorded for the evaluation. */
static int calib_windows(const args *a, const tc_calib_set *calib, calib_record *rec, tc_error *err)
{
    rec->from = a->cal.tokens ? "--calib-tokens" : "--calib";
    if (!a->com.quiet && !a->com.json) {
        char *line = tc_calib_windows_describe(&calib->win);
        fprintf(stderr, "%s: calibration: %s\n", TOOL, line ? line : "(out of memory)");
        free(line);
    }
    if (tc_calib_windows_copy(&rec->win, &calib->win, err))
        return TC_ERR;
    rec->known = 1;
    return TC_OK;
}

/* What the evaluation kept apart from, in words: "the 64 calibration windows
 * recorded in r.json: none shared (66 windows left out)". */
static void apart_text(const calib_record *rec, const tc_calib_set *set, char *buf, size_t n)
{
    if (!rec->from)
        snprintf(buf, n, "none (the drops were given with --layers)");
    else if (!rec->known)
        snprintf(buf, n, "not recorded in %s: the windows may overlap", rec->from);
    else if (!set->n_avoid_applied)
        snprintf(buf, n, "nothing: calibration was on another text, %s%s%s", rec->win.source ? rec->win.source : "?",
                 rec->from[0] == '-' ? "" : ", recorded in ", rec->from[0] == '-' ? "" : rec->from);
    else
        snprintf(buf, n, "the %zu calibration windows %s%s: none shared (%zu windows of the text left out)",
                 rec->win.n_windows, rec->from[0] == '-' ? "of this run's " : "recorded in ", rec->from,
                 set->n_avoided);
}

/* eval_set: the windows of --eval, loaded before anything was written,
 * clear of the windows of rec when they are of the same text. */
static int evaluate(const args *a, const tc_model *m, const tc_prune_plan *p, const tc_calib_set *eval_set,
                    const calib_record *rec, cJSON *json, tc_error *err)
{
    const tc_calib_set set = *eval_set; /* (a view: the caller frees it) */
    tc_model q;
    tc_skip *skip = NULL;
    const tc_model *pruned = m;
    int rc = TC_OK;
    if (a->dry_run) { /* nothing written: the plan is applied virtually */
        skip = calloc((size_t)p->n_layers, sizeof *skip);
        if (!skip)
            rc = tc_err(err, "out of memory");
        else
            tc_prune_skip_mask(p, skip);
    } else {
        rc = tc_model_open(&q, a->output, err);
        pruned = &q;
    }
    tc_prune_eval ev;
    if (rc == TC_OK)
        rc = tc_prune_evaluate_masked(m, NULL, pruned, skip, a->dry_run ? p->drop_heads : NULL, set.tokens,
                                      set.offsets, set.n_seqs, a->com.threads > 0 ? a->com.threads : cli_default_threads(),
                                      &ev, err);
    if (rc == TC_OK) {
        char apart[TC_ERROR_MAX];
        apart_text(rec, &set, apart, sizeof apart);
        if (json) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "text", a->eval);
            cJSON_AddNumberToObject(e, "windows", (double)set.n_seqs);
            cJSON_AddNumberToObject(e, "seq_len", (double)set.win.seq_len);
            cJSON_AddNumberToObject(e, "n_tokens", (double)set.n_tokens);
            cJSON_AddItemToObject(e, "eval_windows", tc_calib_windows_to_json(&set.win));
            cJSON *c = cJSON_AddObjectToObject(e, "calibration");
            if (rec->from)
                cJSON_AddStringToObject(c, "recorded_in", rec->from);
            cJSON_AddBoolToObject(c, "known", rec->known);
            cJSON_AddBoolToObject(c, "same_text", set.n_avoid_applied > 0);
            cJSON_AddNumberToObject(c, "left_out", (double)set.n_avoided);
            cJSON_AddStringToObject(c, "summary", apart);
            if (rec->known)
                cJSON_AddItemToObject(c, "record", tc_calib_windows_to_json(&rec->win));
            if (set.warning[0])
                cJSON_AddStringToObject(e, "warning", set.warning);
            cJSON_AddNumberToObject(e, "predictions", (double)ev.n_predicted);
            cJSON_AddNumberToObject(e, "ppl_original", ev.ppl_ref);
            cJSON_AddNumberToObject(e, "ppl_pruned", ev.ppl);
            cJSON_AddNumberToObject(e, "kl", ev.kl);
            cJSON_AddNumberToObject(e, "top1_agreement", ev.top1);
            cJSON_AddItemToObject(json, "eval", e);
        } else {
            char *line = tc_calib_windows_describe(&set.win);
            fprintf(stderr, "evaluation: %s\n", line ? line : "(out of memory)");
            fprintf(stderr, "  kept apart from   %s\n", apart);
            fprintf(stderr, "  predictions       %llu\n", (unsigned long long)ev.n_predicted);
            fprintf(stderr, "  perplexity        %.4f -> %.4f\n", ev.ppl_ref, ev.ppl);
            free(line);
            fprintf(stderr, "  mean KL           %.6f nats\n", ev.kl);
            fprintf(stderr, "  top-1 agreement   %.2f%%\n", 100.0 * ev.top1);
        }
    }
    if (pruned == &q) /* (a failed open leaves q cleared: closing it is harmless) */
        tc_model_close(&q);
    free(skip);
    return rc;
}

int main(int argc, char **argv)
{
    cli_init();
    tc_dist dist;
    cli_dist_init(&dist, &argc, &argv);
    args a;
    memset(&a, 0, sizeof a);
    a.po.criterion = TC_CRIT_COS;
    a.dist = &dist;
    int code = parse_args(argc, argv, &a);
    if (code >= 0)
        return code;
    if (a.com.info)
        return cli_info(TOOL, a.model, a.com.json);
    /* Under mpirun every rank analyses its share; rank 0 alone writes,
     * evaluates and says what happened. */
    int writer = dist.rank == 0;
    if (!writer)
        a.com.quiet = 1;
    tc_error err = {{0}};
    tc_model m;
    if ((code = cli_dist_check(TOOL, &dist, tc_model_open(&m, a.model, &err), &err)))
        return code;
    if (!a.dry_run && writer) { /* the output is checked against every input before any work */
        const char *inputs[] = {a.report, a.cal.text, a.cal.tokens, a.eval, a.com.tokenizer};
        cli_output out = {a.output, out_format(&a, &m) == TC_FORMAT_HF ? TC_OUTPUT_DIR : TC_OUTPUT_FILE};
        code = cli_guard_outputs(TOOL, &m, inputs, sizeof inputs / sizeof inputs[0], &out, 1, a.com.force);
    }
    if ((code = tc_dist_max_int(&dist, code))) {
        tc_model_close(&m);
        return code;
    }
    /* The tokenizer given, and the vocabulary a GGUF output must carry, are
     * checked now too, and a model whose heads cannot go. */
    int rc_in = (a.po.drop_heads && tc_prune_heads_refused(&m, &err)) ||
                     cli_model_tokenizer(&m, a.com.tokenizer, out_format(&a, &m) == TC_FORMAT_GGUF, &err)
                 ? TC_ERR
                 : TC_OK;
    if ((code = cli_dist_check(TOOL, &dist, rc_in, &err))) {
        tc_model_close(&m);
        return code;
    }
    tc_prune_plan p;
    cJSON *json = NULL;
    int rc = tc_prune_plan_init(&p, m.cfg.n_layers, &err);
    if (rc == TC_OK && ((a.layers && tc_prune_parse_list(&p, a.layers, "--layers", &err)) ||
                        counts_fit(&a, &m, &p, &err))) {
        /* A bad list, or more to drop than the model has, is a bad command line. */
        tc_prune_plan_free(&p);
        tc_model_close(&m);
        return cli_usage_error(TOOL, "%s", err.msg);
    }
    /* Every input is read before anything is analysed or written: the
     * report, the calibration and evaluation windows, the tokenizer. */
    tc_analysis report = {0};
    tc_calib_set calib, eval;
    memset(&calib, 0, sizeof calib);
    memset(&eval, 0, sizeof eval);
    calib_record rec; /* the calibration windows, which the evaluation leaves out */
    memset(&rec, 0, sizeof rec);
    if (rc == TC_OK && a.report) {
        cJSON *calj = NULL;
        rc = tc_report_read(a.report, &report, NULL, &calj, &err);
        if (rc == TC_OK && report.n_layers != m.cfg.n_layers)
            rc = tc_err(&err, "%s: the report covers %d layers but %s has %d", a.report, report.n_layers, m.path,
                        m.cfg.n_layers);
        if (rc == TC_OK)
            rc = report_record(&a, calj, &rec, &err);
        cJSON_Delete(calj);
    }
    if (rc == TC_OK && a.have_calib) {
        rc = load_windows(&a, &m, NULL, &calib, &err);
        if (rc == TC_OK)
            rc = calib_windows(&a, &calib, &rec, &err);
    }
    if (rc == TC_OK && a.eval) {
        args ea = a;
        if (rec.known) {
            ea.cal.avoid = &rec.win;
            ea.cal.n_avoid = 1;
        }
        rc = load_windows(&ea, &m, a.eval, &eval, &err);
    }
    rc = tc_dist_agree(&dist, rc, &err, NULL); /* every rank read its inputs before the work together */
    if (rc == TC_OK)
        rc = choose(&a, &m, &report, &calib, &p, &err);
    rc = tc_dist_agree(&dist, rc, &err, NULL);
    if (rc == TC_OK) {
        int ctx = a.context > 0 ? a.context : m.cfg.max_seq_len;
        tc_prune_cost c0, c1;
        tc_prune_cost_of(&m, NULL, ctx, 2, &c0);
        tc_prune_cost_of(&m, &p, ctx, 2, &c1);
        if (a.com.json)
            json = plan_json(&m, &p, &a.po, &c0, &c1, ctx);
        else if (!a.com.quiet)
            print_plan_text(&m, &p, &c0, &c1, ctx);
    }
    if (rc == TC_OK && !a.dry_run && writer) {
        rc = tc_prune_write_as(&m, &p, a.output, out_format(&a, &m), a.matrices, &err);
        if (rc == TC_OK && !a.com.quiet && !a.com.json)
            fprintf(stderr, "wrote %s\n", a.output);
        if (rc == TC_OK && json)
            cJSON_AddStringToObject(json, "output", a.output);
    }
    if (rc == TC_OK && a.eval && writer) /* on the file written, which rank 0 alone has */
        rc = evaluate(&a, &m, &p, &eval, &rec, json, &err);
    if (rc == TC_OK && json) {
        char *s = cJSON_Print(json);
        if (s)
            printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(json);
    tc_analysis_free(&report);
    tc_calib_set_free(&calib);
    tc_calib_set_free(&eval);
    tc_calib_windows_free(&rec.win);
    tc_prune_plan_free(&p);
    tc_model_close(&m);
    return cli_dist_check(TOOL, &dist, rc, &err);
}
