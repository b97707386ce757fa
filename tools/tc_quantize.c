/* tc-quantize: post-training ternary quantization and LUT-ready packing. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static const char *const TOOL = "tc-quantize";

static void usage(void)
{
    printf("Usage: %s [OPTIONS] MODEL\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Quantizes the linear weights to ternary values {-1, 0, +1} with scales and packs\n"
           "them into lookup-table-ready tiles.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.\n"
           "\n" CLI_COMMON_HELP,
           TOOL, TOOL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_LONG_OPTIONS, {0, 0, 0, 0}};
    cli_common com = {0};
    cli_install_signals();
    int c, code;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &com, usage, &code);
        if (r == 1)
            return code;
        if (r < 0)
            return cli_usage_error(TOOL, "unknown option");
    }
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    if (com.info)
        return cli_info(TOOL, argv[optind], com.json);
    return cli_usage_error(TOOL, "only --info is available in this version");
}
