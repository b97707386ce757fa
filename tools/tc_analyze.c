/* tc-analyze: how much each attention, MLP and block changes the hidden state. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "tc/analyze.h"
#include "tc/calib.h"
#include "tc/info.h"
#include "tc/model.h"
#include "tc/report.h"

static const char *const TOOL = "tc-analyze";

static void usage(void)
{
    printf("Usage: %s [OPTIONS] MODEL [TEXT]\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Runs calibration text through the model in fp32 and measures, per layer, how much\n"
           "the attention sub-layer, the MLP sub-layer and the whole block change the hidden\n"
           "state: the cosine similarity of each module's input and output (importance =\n"
           "1 - cos), and the measured change in loss (mean NLL and KL divergence of the\n"
           "next-token distribution) when that one module is skipped.  Prints a ranked table,\n"
           "most redundant first.\n"
           "\n"
           "Per attention head: entropy, top-10%% mass, the weight on the first token (sink),\n"
           "the previous token and the token itself, the share of keys holding 90%% of the\n"
           "mass, and the measured loss of masking that head alone.  Per layer: the attention\n"
           "tokens receive from the last position and on average, and the share of tokens that\n"
           "can be dropped from that layer on (ranked by the last position's attention, as\n"
           "FastV and PyramidDrop do) while the last position's NLL rises by at most 1%% / 5%%,\n"
           "measured by running with the tokens dropped; and a PyramidDrop-style schedule.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.  TEXT is the same as --calib TEXT.\n"
           "\n"
           "Report:\n"
           "  --report FILE       write the JSON report (schema: docs/REPORT.md)\n"
           "  --html FILE         write a self-contained HTML report with charts\n"
           "  --force             replace an existing report or HTML file (refused without it;\n"
           "                      neither may be an input or lie inside an input directory)\n"
           "  --json              print the JSON report on stdout instead of the table\n"
           "  --no-measured       skip the measured loss (one pass instead of ~1.5 per layer)\n"
           "  --no-heads          skip per-head attention statistics and masking\n"
           "  --head-samples N    windows over which each head is masked alone, and the\n"
           "                      least important masked together (default 8; 0: none)\n"
           "  --token-samples N   windows for the token analysis (default 32; 0: none)\n"
           "  --schedule-budget P relative NLL increase, in percent, that the chosen token\n"
           "                      schedule may cost (default 1)\n"
           "  --batch-memory MIB  run as many windows together as the stored states of the\n"
           "                      measured loss fit in MIB MiB (default: one window per pass).\n"
           "                      Fewer, larger passes; the figures depend on the grouping\n"
           "                      in the last bits (BLAS rounds products of other heights\n"
           "                      differently), never on the number of MPI ranks\n"
           "\n"
           "Under mpirun (a build with -DTC_MPI=ON) the windows are spread over the ranks and\n"
           "every figure is the one a single process computes, bit for bit; rank 0 writes.\n"
           "\n" CLI_CALIB_HELP "\n" CLI_COMMON_HELP,
           TOOL, TOOL);
}

int main(int argc, char **argv)
{
    enum { OPT_REPORT = CLI_OPT_TOOL_BASE, OPT_HTML, OPT_NO_MEASURED, OPT_NO_HEADS, OPT_HEAD_SAMPLES,
           OPT_TOKEN_SAMPLES, OPT_BUDGET, OPT_BATCH_MEMORY };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        CLI_CALIB_LONG_OPTIONS,
        {"report", required_argument, 0, OPT_REPORT},
        {"html", required_argument, 0, OPT_HTML},
        {"no-measured", no_argument, 0, OPT_NO_MEASURED},
        {"no-heads", no_argument, 0, OPT_NO_HEADS},
        {"head-samples", required_argument, 0, OPT_HEAD_SAMPLES},
        {"token-samples", required_argument, 0, OPT_TOKEN_SAMPLES},
        {"schedule-budget", required_argument, 0, OPT_BUDGET},
        {"batch-memory", required_argument, 0, OPT_BATCH_MEMORY},
        CLI_FORCE_LONG_OPTION,
        {0, 0, 0, 0},
    };
    cli_common com = {0};
    cli_init();
    tc_dist dist;
    cli_dist_init(&dist, &argc, &argv);
    cli_calib cal = {0};
    const char *report = NULL, *html = NULL;
    int no_measured = 0, no_heads = 0, c, code;
    long head_samples = -1, token_samples = 32; /* -1: 8, or none where heads cannot be masked */
    double budget = 1.0;
    long batch_mib = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &com, usage, &code);
        if (r < 0)
            r = cli_calib_option(TOOL, c, optarg, &cal, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        switch (c) {
        case OPT_REPORT: report = optarg; break;
        case OPT_HTML: html = optarg; break;
        case OPT_NO_MEASURED: no_measured = 1; break;
        case OPT_NO_HEADS: no_heads = 1; break;
        case OPT_HEAD_SAMPLES:
            if ((head_samples = cli_parse_long(optarg, 0, 1 << 20)) < 0)
                return cli_usage_error(TOOL, "--head-samples needs a count from 0 to %d, not '%s'", 1 << 20, optarg);
            break;
        case OPT_TOKEN_SAMPLES:
            if ((token_samples = cli_parse_long(optarg, 0, 1 << 20)) < 0)
                return cli_usage_error(TOOL, "--token-samples needs a count from 0 to %d, not '%s'", 1 << 20, optarg);
            break;
        case OPT_BUDGET: {
            char *end = NULL;
            budget = strtod(optarg, &end);
            if (!end || *end || !(budget > 0 && budget <= 100))
                return cli_usage_error(TOOL, "--schedule-budget is a percentage above 0 and at most 100, not '%s'",
                                       optarg);
            break;
        }
        case OPT_BATCH_MEMORY:
            if ((batch_mib = cli_parse_long(optarg, 1, 1L << 30)) < 0)
                return cli_usage_error(TOOL, "--batch-memory needs MiB from 1 to %ld, not '%s'", 1L << 30, optarg);
            break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind >= argc || argc - optind > 2)
        return cli_usage_error(TOOL, "expected MODEL [TEXT]");
    if (com.info)
        return cli_info(TOOL, argv[optind], com.json);
    if (argc - optind == 2) {
        if (cal.text || cal.tokens)
            return cli_usage_error(TOOL, "give the calibration text once (TEXT or --calib)");
        cal.text = argv[optind + 1];
    }
    if (!cal.text && !cal.tokens)
        return cli_usage_error(TOOL, "no calibration data: give TEXT, --calib FILE or --calib-tokens FILE");

    if (dist.rank != 0) { /* rank 0 writes every output and says everything */
        report = html = NULL;
        com.quiet = 1;
    }
    tc_error err = {{0}};
    tc_model m;
    if ((code = cli_dist_check(TOOL, &dist, tc_model_open(&m, argv[optind], &err), &err)))
        return code;
    { /* the outputs are checked against every input (and each other) before any work */
        const char *inputs[] = {cal.text, cal.tokens, com.tokenizer};
        cli_output outs[] = {{report, TC_OUTPUT_FILE}, {html, TC_OUTPUT_FILE}};
        code = cli_guard_outputs(TOOL, &m, inputs, sizeof inputs / sizeof inputs[0], outs, 2, com.force);
        if (code == TC_EXIT_OK && cli_tokenizer_check(&m, com.tokenizer, &err))
            code = cli_fail(TOOL, &err);
        if ((code = tc_dist_max_int(&dist, code))) {
            tc_model_close(&m);
            return code;
        }
    }
    tc_calib_set set;
    if ((code = cli_dist_check(TOOL, &dist, cli_calib_load(&cal, &m, com.tokenizer, &set, &err), &err))) {
        tc_model_close(&m);
        return code;
    }
    cli_print_windows(TOOL, "calibration", &set, com.quiet);
    if (head_samples < 0 && m.cfg.t.diff_attn && !no_heads) {
        head_samples = 0;
        if (!com.quiet)
            fprintf(stderr, "%s: heads of differential attention are not masked (not implemented); the head "
                    "statistics describe each softmax map\n", TOOL);
    }
    if (head_samples < 0)
        head_samples = 8;
    cli_progress bar;
    cli_progress_init(&bar, "analyze", com.quiet);
    tc_analyze_opts ao = {
        .n_threads = com.threads > 0 ? com.threads : cli_default_threads(),
        .no_measure = no_measured,
        .no_head_stats = no_heads,
        .head_windows = no_heads ? 0 : (size_t)head_samples,
        .token_windows = (size_t)token_samples,
        .schedule_budget = budget / 100.0,
        .dist = &dist,
        .progress = cli_progress_update,
        .progress_ctx = &bar,
    };
    if (batch_mib > 0)
        ao.batch_tokens = tc_analyze_batch_tokens(&m, &ao, (uint64_t)batch_mib << 20);
    tc_analysis a = {0};
    int rc = tc_analyze(&m, set.tokens, set.offsets, set.n_seqs, &ao, &a, &err);
    cli_progress_done(&bar);
    /* The head curve and the token analysis run on every rank alike: a
     * failure of one rank's is every rank's. */
    rc = tc_dist_agree(&dist, rc, &err, NULL);
    cJSON *info = NULL, *calib = NULL;
    if (rc == TC_OK && dist.rank == 0) {
        info = tc_model_info_json(&m);
        /* The record of the windows: tc-prune --eval leaves them out of an
         * evaluation of the same text. */
        calib = tc_calib_windows_to_json(&set.win);
        if (report)
            rc = tc_report_write_json(report, &a, info, calib, &err);
        if (rc == TC_OK && html)
            rc = tc_report_write_html(html, &a, info, calib, &err);
    }
    if (dist.rank != 0) {
        /* nothing to print */
    } else if (rc == TC_OK && com.json) {
        cJSON *j = tc_report_to_json(&a, info, calib, &err);
        char *s = j ? cJSON_Print(j) : NULL;
        if (s)
            printf("%s\n", s);
        else
            rc = TC_ERR;
        free(s);
        cJSON_Delete(j);
    } else if (rc == TC_OK) {
        char *table = NULL;
        rc = tc_report_table(&a, &table, &err);
        if (rc == TC_OK) {
            char what[64];
            if (set.win.kind == TC_CALIB_KIND_TEXT)
                snprintf(what, sizeof what, "%zu calibration windows of %zu tokens", set.n_seqs, set.win.seq_len);
            else
                snprintf(what, sizeof what, "%zu calibration sequences", set.n_seqs);
            printf("%s: perplexity %.4f on %s (%zu tokens, %llu predicted)\n\n", argv[optind], a.ppl, what,
                   set.n_tokens, (unsigned long long)a.n_predicted);
            fputs(table, stdout);
            free(table);
            table = NULL;
            rc = tc_report_summary(&a, &table, &err);
            if (rc == TC_OK)
                fputs(table, stdout);
        }
        free(table);
    }
    if (rc == TC_OK && !com.quiet)
        fprintf(stderr, "%s: analysed in %.1f s%s%s%s%s\n", TOOL, a.seconds, report ? "; report " : "",
                report ? report : "", html ? "; html " : "", html ? html : "");
    cJSON_Delete(info);
    cJSON_Delete(calib);
    tc_analysis_free(&a);
    tc_calib_set_free(&set);
    tc_model_close(&m);
    return cli_dist_check(TOOL, &dist, rc, &err);
}
