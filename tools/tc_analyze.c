/* tc-analyze: how much each attention, MLP and block changes the hidden state. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *const TOOL = "tc-analyze";

static void usage(void)
{
    printf("Usage: %s [OPTIONS] MODEL\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Measures per layer how much the attention sub-layer, the MLP sub-layer and the whole\n"
           "block change the hidden state on calibration text, and writes a redundancy report.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.\n"
           "\n"
           "Options:\n"
           "  --info             print what the checkpoint holds and exit\n"
           "  --json             machine-readable output on stdout\n"
           "  --tokenizer FILE   tokenizer for a checkpoint without one (llama2.c)\n"
           "  -q, --quiet        no progress or log lines on stderr\n"
           "  -h, --help         this help\n"
           "      --version      print the version\n"
           "\n"
           "Exit codes: 0 success, 1 failure (bad file, write error), 2 bad command line.\n",
           TOOL, TOOL);
}

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256, OPT_TOKENIZER };
    static const struct option opts[] = {
        {"info", no_argument, 0, 'i'},       {"json", no_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},      {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {0, 0, 0, 0},
    };
    int info = 0, json = 0, c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': info = 1; break;
        case 'j': json = 1; break;
        case 'q': break;
        case 'h': usage(); return TC_EXIT_OK;
        case OPT_VERSION: printf("%s %s\n", TOOL, TC_VERSION); return TC_EXIT_OK;
        case OPT_TOKENIZER: break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    if (info)
        return cli_info(TOOL, argv[optind], json);
    return cli_usage_error(TOOL, "analysis is not available yet; use --info");
}
