/* tc-synth: write a seeded synthetic Llama-family checkpoint (tests, benchmarks, demos). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tc/gguf.h"
#include "tc/synth.h"

static const char *const TOOL = "tc-synth";

static void usage(void)
{
    printf("Usage: %s -o OUT [--format hf|gguf|llama2c] [--dtype f32|f16|bf16] [SHAPE OPTIONS]\n"
           "\n"
           "Writes a synthetic Llama-family checkpoint with seeded random weights, one tensor\n"
           "at a time (a 7B-shaped F16 file needs memory for one tensor only).\n"
           "\n"
           "Shape (defaults in brackets):\n"
           "  --layers N [4]  --dim N [64]  --heads N [4]  --kv-heads N [2]  --ffn N [172]\n"
           "  --vocab N [512]  --context N [512]  --untied  --qkv-bias (a qwen2 model)\n"
           "  --family F [llama]  llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, diffllama or bitnet:\n"
           "                      that family's traits as its Hugging Face config gives them by default\n"
           "  --window N          the sliding window of mistral and gemma (their default: 4096)\n"
           "Content:\n"
           "  --seed S [1]\n"
           "  --weak-attn L,L,...   layers whose attention output projection is scaled by 1e-3\n"
           "  --weak-mlp L,L,...    layers whose MLP down projection is scaled by 1e-3\n"
           "                        (planted redundancy: an analysis must rank these first)\n"
           "  --zero-heads L:H,...  heads whose columns of the output projection are zero\n"
           "  --sink-heads L:H,...  heads that attend only to the BOS token\n"
           "  --sink-layers L,...   layers whose every head attends only to BOS: each position's\n"
           "                        attention output is a copy of BOS's value, so no other token\n"
           "                        matters from there on (planted structure for tc-analyze's heads\n"
           "                        and tokens; BOS must start every window)\n"
           "  --ternary             linear weights already in {-g, 0, +g}\n"
           "Output:\n"
           "  -o, --output OUT   the checkpoint (a directory for hf)\n"
           CLI_FORCE_HELP
           "  --json             after writing, print the written checkpoint's --info as JSON\n"
           "Tokenizer:\n"
           "  --tokenizer FILE      the checkpoint carries it: GGUF, its vocabulary as llama.cpp's\n"
           "                        converter writes it (FILE: tokenizer.json, tokenizer.bin or a\n"
           "                        GGUF); HF, tokenizer.json and the files beside it.  --vocab\n"
           "                        defaults to its size, BOS and EOS are its own\n"
           "\n" CLI_COMMON_HELP,
           TOOL);
}

/* "0:1,2:3" -> ids {0 * heads + 1, 2 * heads + 3}; the count, or -1. */
static int parse_heads(const char *s, int n_layers, int n_heads, int **ids)
{
    char *copy = strdup(s), *save = NULL;
    int n = 0, ok = copy != NULL;
    *ids = calloc(strlen(s) + 1, sizeof **ids);
    ok &= *ids != NULL;
    for (char *tok = ok ? strtok_r(copy, ",", &save) : NULL; ok && tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon) {
            ok = 0;
            break;
        }
        *colon = '\0';
        long l = cli_parse_long(tok, 0, n_layers - 1), h = cli_parse_long(colon + 1, 0, n_heads - 1);
        if (l < 0 || h < 0)
            ok = 0;
        else
            (*ids)[n++] = (int)(l * n_heads + h);
    }
    free(copy);
    return ok && n > 0 ? n : -1;
}

/* "1,3,4" -> flags[1] = flags[3] = flags[4] = 1. */
static int parse_layers(const char *s, int n_layers, uint8_t *flags)
{
    char *copy = strdup(s), *save = NULL;
    int ok = copy != NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; ok && tok; tok = strtok_r(NULL, ",", &save)) {
        long l = cli_parse_long(tok, 0, n_layers - 1);
        if (l < 0)
            ok = 0;
        else
            flags[l] = 1;
    }
    free(copy);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    enum { OPT_LAYERS = CLI_OPT_TOOL_BASE, OPT_DIM, OPT_HEADS, OPT_KV, OPT_FFN, OPT_VOCAB, OPT_CONTEXT,
           OPT_UNTIED, OPT_BIAS, OPT_SEED, OPT_WEAK_ATTN, OPT_WEAK_MLP, OPT_TERNARY, OPT_FORMAT, OPT_DTYPE,
           OPT_FAMILY, OPT_WINDOW, OPT_ZERO_HEADS, OPT_SINK_HEADS, OPT_SINK_LAYERS };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        {"output", required_argument, 0, 'o'},  {"layers", required_argument, 0, OPT_LAYERS},
        {"dim", required_argument, 0, OPT_DIM}, {"heads", required_argument, 0, OPT_HEADS},
        {"kv-heads", required_argument, 0, OPT_KV}, {"ffn", required_argument, 0, OPT_FFN},
        {"vocab", required_argument, 0, OPT_VOCAB}, {"context", required_argument, 0, OPT_CONTEXT},
        {"untied", no_argument, 0, OPT_UNTIED}, {"qkv-bias", no_argument, 0, OPT_BIAS},
        {"seed", required_argument, 0, OPT_SEED}, {"weak-attn", required_argument, 0, OPT_WEAK_ATTN},
        {"weak-mlp", required_argument, 0, OPT_WEAK_MLP}, {"ternary", no_argument, 0, OPT_TERNARY},
        {"format", required_argument, 0, OPT_FORMAT}, {"dtype", required_argument, 0, OPT_DTYPE},
        {"family", required_argument, 0, OPT_FAMILY}, {"window", required_argument, 0, OPT_WINDOW},
        {"zero-heads", required_argument, 0, OPT_ZERO_HEADS}, {"sink-heads", required_argument, 0, OPT_SINK_HEADS},
        {"sink-layers", required_argument, 0, OPT_SINK_LAYERS},
        CLI_FORCE_LONG_OPTION,
        {0, 0, 0, 0},
    };
    cli_init();
    cli_common com = {0};
    long v[7] = {4, 64, 4, 2, 172, 0, 512}; /* layers dim heads kv ffn vocab context (0: 512 or the tokenizer's) */
    const char *out = NULL, *weak_attn = NULL, *weak_mlp = NULL, *family = "llama";
    const char *zero_heads = NULL, *sink_heads = NULL, *sink_layers = NULL;
    int untied = 0, bias = 0, ternary = 0, c, code;
    long window = 0;
    long seed = 1;
    tc_format fmt = TC_FORMAT_GGUF;
    tc_dtype dtype = TC_F32;
    while ((c = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &com, usage, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        if (c >= OPT_LAYERS && c <= OPT_CONTEXT) {
            static const char *const names[] = {"--layers", "--dim", "--heads", "--kv-heads", "--ffn", "--vocab",
                                                "--context"};
            if ((v[c - OPT_LAYERS] = cli_parse_long(optarg, 1, 1L << 24)) < 0)
                return cli_usage_error(TOOL, "%s needs a number from 1 to 16777216, not '%s'", names[c - OPT_LAYERS],
                                       optarg);
            continue;
        }
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_UNTIED: untied = 1; break;
        case OPT_BIAS: bias = 1; break;
        case OPT_TERNARY: ternary = 1; break;
        case OPT_SEED:
            if ((seed = cli_parse_long(optarg, 0, 1L << 62)) < 0)
                return cli_usage_error(TOOL, "--seed needs a non-negative number, not '%s'", optarg);
            break;
        case OPT_WEAK_ATTN: weak_attn = optarg; break;
        case OPT_FAMILY: family = optarg; break;
        case OPT_WINDOW:
            if ((window = cli_parse_long(optarg, 1, 1L << 30)) < 0)
                return cli_usage_error(TOOL, "--window needs a number from 1 to 1073741824, not '%s'", optarg);
            break;
        case OPT_WEAK_MLP: weak_mlp = optarg; break;
        case OPT_ZERO_HEADS: zero_heads = optarg; break;
        case OPT_SINK_HEADS: sink_heads = optarg; break;
        case OPT_SINK_LAYERS: sink_layers = optarg; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "hf") == 0) fmt = TC_FORMAT_HF;
            else if (strcmp(optarg, "gguf") == 0) fmt = TC_FORMAT_GGUF;
            else if (strcmp(optarg, "llama2c") == 0) fmt = TC_FORMAT_LLAMA2C;
            else return cli_usage_error(TOOL, "--format is hf, gguf or llama2c, not '%s'", optarg);
            break;
        case OPT_DTYPE:
            if (strcmp(optarg, "f32") == 0) dtype = TC_F32;
            else if (strcmp(optarg, "f16") == 0) dtype = TC_F16;
            else if (strcmp(optarg, "bf16") == 0) dtype = TC_BF16;
            else return cli_usage_error(TOOL, "--dtype is f32, f16 or bf16, not '%s'", optarg);
            break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (com.info && optind == argc - 1)
        return cli_info(TOOL, argv[optind], com.json);
    if (!out || optind != argc)
        return cli_usage_error(TOOL, "expected -o OUT and no other arguments");
    if (v[1] % v[2] != 0 || v[2] % v[3] != 0)
        return cli_usage_error(TOOL, "--dim must be a multiple of --heads, and --heads of --kv-heads");
    if (!v[5] && !com.tokenizer)
        v[5] = 512;
    tc_synth_spec s = {
        .cfg = tc_synth_config((int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5]),
        .seed = (uint64_t)seed, .weak_scale = 1e-3f, .ternary = ternary, .tokenizer = com.tokenizer,
    };
    s.cfg.max_seq_len = (int)v[6];
    s.cfg.tied_embeddings = !untied;
    tc_error ferr = {{0}};
    if (tc_synth_family(&s.cfg, bias ? "qwen2" : family, (int)window, &ferr))
        return cli_usage_error(TOOL, "--family: %s", ferr.msg);
    if (bias && strcmp(family, "llama") && strcmp(family, "qwen2"))
        return cli_usage_error(TOOL, "--qkv-bias makes a qwen2 model; it does not combine with --family %s", family);
    uint8_t *wa = calloc((size_t)v[0], 1), *wm = calloc((size_t)v[0], 1);
    if (!wa || !wm || (weak_attn && parse_layers(weak_attn, (int)v[0], wa)) ||
        (weak_mlp && parse_layers(weak_mlp, (int)v[0], wm))) {
        free(wa);
        free(wm);
        return cli_usage_error(TOOL, "--weak-attn/--weak-mlp take layer indices below --layers");
    }
    s.weak_attn = wa;
    s.weak_mlp = wm;
    int *zh = NULL, *sh = NULL;
    uint8_t *sl = calloc((size_t)v[0], 1);
    if ((zero_heads && (s.n_zero_heads = parse_heads(zero_heads, (int)v[0], (int)v[2], &zh)) < 0) ||
        (sink_heads && (s.n_sink_heads = parse_heads(sink_heads, (int)v[0], (int)v[2], &sh)) < 0) || !sl ||
        (sink_layers && parse_layers(sink_layers, (int)v[0], sl))) {
        free(wa), free(wm), free(zh), free(sh), free(sl);
        return cli_usage_error(TOOL, "--zero-heads/--sink-heads take LAYER:HEAD pairs and --sink-layers layer "
                               "indices, below --layers and --heads");
    }
    s.zero_heads = zh;
    s.sink_heads = sh;
    s.sink_layers = sl;
    cli_output o = {out, fmt == TC_FORMAT_HF ? TC_OUTPUT_DIR : TC_OUTPUT_FILE};
    code = cli_guard_outputs(TOOL, NULL, NULL, 0, &o, 1, com.force);
    tc_error err = {{0}};
    int rc = code ? TC_ERR : tc_synth_write(out, fmt, dtype, &s, &err);
    free(wa);
    free(wm);
    free(zh);
    free(sh);
    free(sl);
    if (code)
        return code;
    if (rc)
        return cli_fail(TOOL, &err);
    if (!com.quiet)
        fprintf(stderr, "%s: wrote %s\n", TOOL, out);
    return com.json ? cli_info(TOOL, out, 1) : TC_EXIT_OK;
}
