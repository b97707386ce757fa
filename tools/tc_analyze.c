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
           "  --no-heads          skip per-head attention statistics\n"
           "\n" CLI_CALIB_HELP "\n" CLI_COMMON_HELP,
           TOOL, TOOL);
}

int main(int argc, char **argv)
{
    enum { OPT_REPORT = CLI_OPT_TOOL_BASE, OPT_HTML, OPT_NO_MEASURED, OPT_NO_HEADS };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        CLI_CALIB_LONG_OPTIONS,
        {"report", required_argument, 0, OPT_REPORT},
        {"html", required_argument, 0, OPT_HTML},
        {"no-measured", no_argument, 0, OPT_NO_MEASURED},
        {"no-heads", no_argument, 0, OPT_NO_HEADS},
        CLI_FORCE_LONG_OPTION,
        {0, 0, 0, 0},
    };
    cli_common com = {0};
    cli_init();
    cli_calib cal = {0};
    const char *report = NULL, *html = NULL;
    int no_measured = 0, no_heads = 0, c, code;
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

    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, argv[optind], &err))
        return cli_fail(TOOL, &err);
    { /* the outputs are checked against every input (and each other) before any work */
        const char *inputs[] = {cal.text, cal.tokens, com.tokenizer};
        cli_output outs[] = {{report, TC_OUTPUT_FILE}, {html, TC_OUTPUT_FILE}};
        code = cli_guard_outputs(TOOL, &m, inputs, sizeof inputs / sizeof inputs[0], outs, 2, com.force);
        if (code == TC_EXIT_OK && cli_tokenizer_check(&m, com.tokenizer, &err))
            code = cli_fail(TOOL, &err);
        if (code) {
            tc_model_close(&m);
            return code;
        }
    }
    tc_calib_set set;
    if (cli_calib_load(&cal, &m, com.tokenizer, &set, &err)) {
        tc_model_close(&m);
        return cli_fail(TOOL, &err);
    }
    cli_print_windows(TOOL, "calibration", &set, com.quiet);
    cli_progress bar;
    cli_progress_init(&bar, "analyze", com.quiet);
    tc_analyze_opts ao = {
        .n_threads = com.threads > 0 ? com.threads : cli_default_threads(),
        .no_measure = no_measured,
        .no_head_stats = no_heads,
        .progress = cli_progress_update,
        .progress_ctx = &bar,
    };
    tc_analysis a = {0};
    int rc = tc_analyze(&m, set.tokens, set.offsets, set.n_seqs, &ao, &a, &err);
    cli_progress_done(&bar);
    cJSON *info = NULL, *calib = NULL;
    if (rc == TC_OK) {
        info = tc_model_info_json(&m);
        /* The record of the windows: tc-prune --eval leaves them out of an
         * evaluation of the same text. */
        calib = tc_calib_windows_to_json(&set.win);
        if (report)
            rc = tc_report_write_json(report, &a, info, calib, &err);
        if (rc == TC_OK && html)
            rc = tc_report_write_html(html, &a, info, calib, &err);
    }
    if (rc == TC_OK && com.json) {
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
    return rc == TC_OK ? TC_EXIT_OK : cli_fail(TOOL, &err);
}
