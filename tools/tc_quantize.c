/* tc-quantize: post-training ternary quantization and LUT-ready packing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "tc/calib.h"
#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/model_write.h"
#include "tc/qmat.h"
#include "tc/quantize.h"
#include "tc/tmodel.h"
#include "tc/mixed.h"
#include "tc/sensitivity.h"

static const char *const TOOL = "tc-quantize";

static void usage(void)
{
    printf("Usage: %s [OPTIONS] MODEL -o OUT\n"
           "       %s --info MODEL [--json]\n"
           "\n"
           "Quantizes the linear weights of every block (q, k, v, o, gate, up, down) to ternary\n"
           "values {-1, 0, +1} with scales, one layer at a time, and writes either the packed\n"
           "file (.tcq: lookup-table-ready tiles, docs/PACKED_FORMAT.md) or a GGUF with ggml\n"
           "TQ1_0 / TQ2_0 blocks that llama.cpp runs.  Norms and biases stay in float; the\n"
           "embedding and the output head too (packed) or in the fallback type (GGUF, below).\n"
           "A .tcq carries the model's tokenizer (its tokenizer.json, GGUF vocabulary, or the\n"
           "tokenizer.bin given with --tokenizer), so tc-run needs nothing else.  The written\n"
           "file is reopened and checked unless --no-verify.\n"
           "\n"
           "MODEL is a Hugging Face directory (config.json + safetensors), a GGUF file or a\n"
           "llama2.c checkpoint.\n"
           "\n"
           "A model that is already ternary (a BitNet checkpoint, a bitnet quantization config,\n"
           "a GGUF bitnet file; --info names its linear kind) is converted instead, nothing\n"
           "requantized: to the packed format (its codes and its one scale per tensor go into\n"
           "the tiles as they are: method source, group tensor), or with --format to another\n"
           "checkpoint format: gguf-tq1 / gguf-tq2 (llama.cpp's bitnet graph: TQ blocks with\n"
           "d = 1 and the scale in each projection's .scale tensor), gguf-i2s (bitnet.cpp's\n"
           "bitnet-b1.58 with I2_S tensors) or hf (BitNetForCausalLM packed: uint8 codes four\n"
           "to a byte and a weight_scale).  Rows that are not whole blocks of the GGUF type are\n"
           "stored as F32 values code x scale.  --method, --group, calibration data and\n"
           "--quantize-embeddings are refused for it.  A packed file of such a model (MODEL a\n"
           ".tcq) is written back the same ways, bit for bit; --vocab SRC copies a GGUF's\n"
           "tokenizer keys (GGUF output) or an HF directory's tokenizer files (hf output).\n"
           "llama.cpp's bitnet graph computes SiLU: a relu2 model (BitNet b1.58) is written with\n"
           "bitnet.hidden_activation = relu2, which tc reads and stock llama.cpp ignores.\n"
           "\n"
           "Quantization:\n"
           "  -o, --output OUT      the file to write (required); never an input, nor inside\n"
           "                        an input directory; a name ending in .gguf needs a GGUF\n"
           "                        --format, one ending in .tcq the packed one\n"
           "  --force               replace an existing OUT (refused without it)\n"
           "  --method M            absmean (BitNet b1.58 rule), optimal (least-squares fit per\n"
           "                        group; default), calibrated (GPTQ on the ternary grid;\n"
           "                        needs --calib or --calib-tokens), affine (W ~ a*T + mu\n"
           "                        per group, least-squares fit) or affine-calibrated (the\n"
           "                        affine grid in GPTQ, block by block, each weight fitted\n"
           "                        to the original's outputs on the quantized model's\n"
           "                        inputs; needs calibration data)\n"
           "  --act-order           affine-calibrated: sweep columns by decreasing H[k][k]\n"
           "  --refit N             affine-calibrated: rounds of (a, mu) refitted in the\n"
           "                        Hessian norm, each followed by a sweep (default 2)\n"
           "  --sensitivity         write nothing: quantize each linear weight alone (the\n"
           "                        method's uncalibrated fit) and rank the weights by the\n"
           "                        mean KL it costs on the calibration data (no -o)\n"
           "  --target-bpw B        mixed precision: each linear weight ternary (--method), Q4_0\n"
           "                        or Q8_0 so that the linear weights average at most B bits\n"
           "                        per weight as stored (embedding and head apart); each\n"
           "                        weight's KL alone in each type is measured on the first 4\n"
           "                        calibration windows and the upgrades saving the most KL\n"
           "                        per extra bit are made greedily (docs/QUANTIZE.md).  B\n"
           "                        from the all-ternary bits to 8.5; needs calibration data;\n"
           "                        the assignment goes to stderr, --json and the file\n"
           "  --costs-from X.tcq    --target-bpw: take the measured costs from an earlier\n"
           "                        --target-bpw file of the same model and method\n"
           "  --group G             scale groups: tensor, row (default) or N = one scale per N\n"
           "                        input columns of a row, 32 <= N <= 256\n"
           "  --layout L            packed tile layout: i2, tl1 or tl2 (default tl2)\n"
           "  --format F            packed (default), gguf-tq1 or gguf-tq2; for ternary-trained\n"
           "                        models also gguf-i2s and hf\n"
           "  --vocab SRC           ternary-trained models' conversions: where the vocabulary\n"
           "                        comes from (a GGUF file, or an HF directory)\n"
           "  --sequential          calibrated: take each layer's inputs through the layers\n"
           "                        already quantized (default: through the original model;\n"
           "                        affine-calibrated always does)\n"
           "  --damp F              calibrated: damping as a fraction of mean diag(X^T X)\n"
           "                        (default 0.01)\n"
           "  --f32                 keep float tensors in F32 rather than F16\n"
           "  --quantize-embeddings packed format only: the embedding and output head become\n"
           "                        ternary too (optimal fit, or absmean with --method absmean)\n"
           "  --embd-type T         packed format only: the embedding and output head as f16\n"
           "                        (default: the model's own values, F32 where F16 cannot hold\n"
           "                        them) or in a block type tc-run multiplies with int8\n"
           "                        activations: q8_0, q6_k or q4_0 (ggml's layouts and\n"
           "                        rounding; rows whole blocks of 32, 256 for q6_k).  They\n"
           "                        read 1.9x, 2.4x and 3.6x fewer bytes per token than F16\n"
           "                        and change the function a little: docs/QUANTIZE.md gives\n"
           "                        the measured perplexity cost of each\n"
           "  --fallback T          GGUF: the type of the matrices that cannot be ternary (linear\n"
           "                        weights whose rows are not whole 32-blocks, the embedding,\n"
           "                        the output head): q8_0 (default), q4_0, q4_k, q6_k or f16;\n"
           "                        F16 where rows are not whole blocks of T.  Naming it also\n"
           "                        allows a file without a single TQ tensor\n"
           "  --strict              GGUF: fail when some linear weight cannot be ternary instead\n"
           "                        of storing it in the fallback type\n"
           "  --keep-ffn-width      GGUF: write the FFN width as it is; by default a width that\n"
           "                        is not a multiple of 256 is padded up to one with zero rows\n"
           "                        and columns when that makes the file smaller (the down\n"
           "                        projections become TQ; the function does not change)\n"
           "  --no-verify           skip the check of the written file\n"
           "\n"
           "GGUF notes: with --target-bpw, Q4_0 and Q8_0 weights are written as those ggml\n"
           "types (the same bytes).  With the affine methods every ternary weight is Q4_1 (codes, scale\n"
           "and offset per 32 weights, 5 bits per weight; TQ1_0 / TQ2_0 hold no offset),\n"
           "groups must be whole 32-blocks.  Otherwise rows that are whole 256-weight blocks\n"
           "become TQ1_0 / TQ2_0; rows that\n"
           "are whole 32-weight blocks hold the same ternary codes exactly as Q4_0 (4.5 bits per\n"
           "weight); other rows go to the fallback type.  A file that would hold no TQ tensor\n"
           "is refused unless --fallback is given.  Each block gets one scale, the mean of the\n"
           "group scales over its nonzero codes (exact with --group row or tensor, or groups of\n"
           "a multiple of the block, up to the f16 rounding of the scale).  The GGUF carries the\n"
           "model's vocabulary: a GGUF input's, or tokenizer.json (Hugging Face) or the\n"
           "--tokenizer file (llama2.c) as llama.cpp's converter writes it (docs/VOCAB.md);\n"
           "an input without a tokenizer is refused.\n"
           "\n"
           "Calibration data gives every tensor its relative output error; it is optional\n"
           "except for --method calibrated.  The packed file records which windows of which\n"
           "text calibrated, so that tc-run --compare on the same text leaves them out.\n"
           "\n"
           "Output: a per-tensor table on stderr (unless --quiet), a summary on stdout (JSON\n"
           "with --json) giving the bits per weight of the whole file and of its parts:\n"
           "ternary weights, fallback, embeddings (and head), norms.\n"
           "\n"
           "Under mpirun (a build with -DTC_MPI=ON) the calibration windows, and those of\n"
           "--sensitivity, are spread over the ranks; the file and the figures are those a\n"
           "single process computes, bit for bit, given the same --threads.  Rank 0 writes.\n"
           "\n" CLI_CALIB_HELP "\n" CLI_COMMON_HELP,
           TOOL, TOOL);
}

static int parse_group(const char *s, tc_tgroup *g)
{
    if (strcmp(s, "tensor") == 0)
        return g->kind = TC_TGROUP_TENSOR, 0;
    if (strcmp(s, "row") == 0)
        return g->kind = TC_TGROUP_ROW, 0;
    long n = cli_parse_long(s, TC_TGROUP_COLS_MIN, TC_TGROUP_COLS_MAX);
    if (n < 0)
        return -1;
    g->kind = TC_TGROUP_COLS;
    g->cols = (int32_t)n;
    return 0;
}

static const char *group_text(const tc_tgroup *g, char *buf, size_t n)
{
    if (g->kind == TC_TGROUP_TENSOR)
        return "tensor";
    if (g->kind == TC_TGROUP_ROW)
        return "row";
    snprintf(buf, n, "%d", g->cols);
    return buf;
}

static void print_table(const tc_quantize_report *r, const tc_quantize_opts *o)
{
    int gguf = o->format != TC_QFORMAT_PACKED;
    fprintf(stderr, "%-16s %11s %8s %8s %9s %9s %8s%s\n", "tensor", "shape", "zeros", "w.err", "out.err",
            "bytes", "seconds", gguf ? "  type" : "");
    for (size_t i = 0; i < r->n_tensors; i++) {
        const tc_qtensor_report *t = &r->tensors[i];
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->rows, (long long)t->cols);
        if (!t->ternary) {
            fprintf(stderr, "%-16s %11s  kept as %s: %s\n", t->name, shape, tc_dtype_name(t->dtype),
                    t->why ? t->why : "not quantized");
            continue;
        }
        char oe[16] = "-";
        if (t->rel_output_error >= 0)
            snprintf(oe, sizeof oe, "%.4f", t->rel_output_error);
        fprintf(stderr, "%-16s %11s %7.1f%% %8.4f %9s %9llu %8.3f%s%s\n", t->name, shape, 100 * t->zero_share,
                t->rel_weight_error, oe, (unsigned long long)t->bytes, t->seconds, gguf ? "  " : "",
                gguf ? tc_dtype_name(t->dtype) : "");
    }
}

static double part_bpw(const tc_qpart_size *p)
{
    return p->params ? 8.0 * (double)p->bytes / (double)p->params : 0;
}

/* How many of a part's matrices are stored in each type. */
static void part_counts(const tc_quantize_report *r, tc_qpart part, int *count)
{
    memset(count, 0, TC_DTYPE_COUNT * sizeof *count);
    for (size_t i = 0; i < r->n_tensors; i++) {
        const tc_qtensor_report *t = &r->tensors[i];
        tc_qpart p = t->layer < 0 ? TC_QPART_EMBEDDINGS : t->ternary ? TC_QPART_TERNARY : TC_QPART_FALLBACK;
        if (p == part && t->dtype >= 0 && t->dtype < TC_DTYPE_COUNT)
            count[t->dtype]++;
    }
}

/* "96 TQ2_0, 16 Q4_0": the stored types of a part's matrices. */
static void part_types(const tc_quantize_report *r, tc_qpart part, char *buf, size_t n)
{
    int count[TC_DTYPE_COUNT];
    part_counts(r, part, count);
    size_t k = 0;
    buf[0] = '\0';
    for (int d = 0; d < TC_DTYPE_COUNT && k < n; d++)
        if (count[d])
            k += (size_t)snprintf(buf + k, n - k, "%s%d %s", k ? ", " : "", count[d], tc_dtype_name((tc_dtype)d));
}

static cJSON *summary_json(const tc_quantize_report *r, const tc_quantize_opts *o, const char *in,
                           const char *out, int ffn_dim, const tc_calib_set *set)
{
    char gb[16];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "input", in);
    cJSON_AddStringToObject(j, "output", out);
    cJSON_AddStringToObject(j, "format", tc_qformat_name(o->format));
    cJSON_AddStringToObject(j, "method", tc_tmethod_name(o->q.method));
    if (o->format == TC_QFORMAT_PACKED)
        cJSON_AddStringToObject(j, "layout", tc_tpack_layout_name(o->q.layout));
    cJSON_AddStringToObject(j, "group", group_text(&o->q.group, gb, sizeof gb));
    cJSON_AddNumberToObject(j, "calib_tokens", (double)r->calib_tokens);
    if (set)
        cJSON_AddItemToObject(j, "calibration", tc_calib_windows_to_json(&set->win));
    cJSON_AddBoolToObject(j, "sequential", o->q.sequential);
    cJSON_AddNumberToObject(j, "zero_share", r->zero_share);
    cJSON_AddNumberToObject(j, "rel_weight_error", r->rel_weight_error);
    if (r->rel_output_error >= 0)
        cJSON_AddNumberToObject(j, "rel_output_error", r->rel_output_error);
    else
        cJSON_AddNullToObject(j, "rel_output_error");
    cJSON_AddNumberToObject(j, "file_bytes", (double)r->file_bytes);
    cJSON_AddNumberToObject(j, "params", (double)r->params);
    cJSON_AddNumberToObject(j, "bits_per_weight", r->bpw_file);
    cJSON_AddNumberToObject(j, "linear_params", (double)r->linear_params);
    cJSON_AddNumberToObject(j, "linear_bytes", (double)r->linear_bytes);
    cJSON_AddNumberToObject(j, "linear_bits_per_weight", r->bpw_linear);
    cJSON_AddNumberToObject(j, "tensor_bytes", (double)r->tensor_bytes);
    if (r->fallback != TC_DTYPE_COUNT) {
        cJSON_AddStringToObject(j, "fallback", tc_dtype_name(r->fallback));
        cJSON_AddBoolToObject(j, "fallback_explicit", o->fallback_explicit);
        cJSON_AddNumberToObject(j, "fallback_tensors", r->n_fallback);
        cJSON_AddNumberToObject(j, "fallback_float_tensors", r->n_fallback_float);
        cJSON_AddNumberToObject(j, "ffn_dim", ffn_dim);
        cJSON_AddNumberToObject(j, "ffn_dim_stored", r->ffn_dim_stored);
    }
    /* Every tensor of the file is in one part: the bytes add up to tensor_bytes. */
    cJSON *parts = cJSON_AddObjectToObject(j, "parts");
    for (int p = 0; p < TC_QPART_COUNT; p++) {
        const tc_qpart_size *ps = &r->parts[p];
        cJSON *e = cJSON_AddObjectToObject(parts, tc_qpart_name((tc_qpart)p));
        cJSON_AddNumberToObject(e, "params", (double)ps->params);
        cJSON_AddNumberToObject(e, "bytes", (double)ps->bytes);
        cJSON_AddNumberToObject(e, "bits_per_weight", part_bpw(ps));
        if (o->format != TC_QFORMAT_PACKED && p != TC_QPART_NORMS) {
            int count[TC_DTYPE_COUNT];
            part_counts(r, (tc_qpart)p, count);
            cJSON *ty = cJSON_AddObjectToObject(e, "types"); /* matrices per stored type */
            for (int d = 0; d < TC_DTYPE_COUNT; d++)
                if (count[d])
                    cJSON_AddNumberToObject(ty, tc_dtype_name((tc_dtype)d), count[d]);
        }
    }
    if (o->format == TC_QFORMAT_PACKED) {
        cJSON *tk = cJSON_AddObjectToObject(j, "tokenizer");
        cJSON_AddStringToObject(tk, "kind", tc_ttok_kind_name(r->tokenizer));
        if (r->tokenizer != TC_TTOK_NONE)
            cJSON_AddStringToObject(tk, "from", r->tokenizer_from);
        if (r->tokenizer_note[0])
            cJSON_AddStringToObject(tk, "note", r->tokenizer_note);
    }
    cJSON_AddBoolToObject(j, "verified", r->verified);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    /* Stages on worker threads in thread-seconds, the rest in wall seconds (tc/quantize.h). */
    cJSON *tm = cJSON_AddObjectToObject(j, "times");
    cJSON_AddNumberToObject(tm, "load", r->times.load);
    cJSON_AddNumberToObject(tm, "quantize", r->times.quantize);
    cJSON_AddNumberToObject(tm, "measure", r->times.measure);
    cJSON_AddNumberToObject(tm, "pack", r->times.pack);
    cJSON_AddNumberToObject(tm, "calib", r->times.calib);
    cJSON_AddNumberToObject(tm, "produce", r->times.produce);
    cJSON_AddNumberToObject(tm, "write", r->times.write);
    cJSON_AddNumberToObject(tm, "verify", r->times.verify);
    cJSON *arr = cJSON_AddArrayToObject(j, "tensors");
    for (size_t i = 0; i < r->n_tensors; i++) {
        const tc_qtensor_report *t = &r->tensors[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", t->name);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->rows));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->cols));
        cJSON_AddBoolToObject(e, "ternary", t->ternary);
        if (t->ternary && o->format != TC_QFORMAT_PACKED)
            cJSON_AddStringToObject(e, "dtype", tc_dtype_name(t->dtype));
        if (t->ternary) {
            cJSON_AddNumberToObject(e, "zero_share", t->zero_share);
            cJSON_AddNumberToObject(e, "rel_weight_error", t->rel_weight_error);
            if (t->rel_output_error >= 0)
                cJSON_AddNumberToObject(e, "rel_output_error", t->rel_output_error);
            cJSON_AddNumberToObject(e, "seconds", t->seconds);
        } else {
            cJSON_AddStringToObject(e, "dtype", tc_dtype_name(t->dtype));
            if (t->why)
                cJSON_AddStringToObject(e, "not_ternary_because", t->why);
        }
        cJSON_AddNumberToObject(e, "bytes", (double)t->bytes);
        cJSON_AddItemToArray(arr, e);
    }
    return j;
}

static void print_summary(const tc_quantize_report *r, const tc_quantize_opts *o, const char *out, int ffn_dim)
{
    char gb[16];
    printf("%s: %s, method %s, group %s%s%s\n", out, tc_qformat_name(o->format), tc_tmethod_name(o->q.method),
           group_text(&o->q.group, gb, sizeof gb), o->format == TC_QFORMAT_PACKED ? ", layout " : "",
           o->format == TC_QFORMAT_PACKED ? tc_tpack_layout_name(o->q.layout) : "");
    printf("  zeros %.1f %%, relative weight error %.4f", 100 * r->zero_share, r->rel_weight_error);
    if (r->rel_output_error >= 0)
        printf(", mean relative output error %.4f (%llu calibration tokens)", r->rel_output_error,
               (unsigned long long)r->calib_tokens);
    printf("\n  file %llu bytes, %.3f bits per weight; linear layers %.3f bits per weight\n",
           (unsigned long long)r->file_bytes, r->bpw_file, r->bpw_linear);
    if (o->format == TC_QFORMAT_PACKED && r->tokenizer != TC_TTOK_NONE)
        printf("  tokenizer embedded from %s\n", r->tokenizer_from);
    else if (o->format == TC_QFORMAT_PACKED)
        printf("  no tokenizer embedded%s%s\n", r->tokenizer_note[0] ? ": " : " (pass --tokenizer FILE to embed one)",
               r->tokenizer_note);
    if (r->fallback != TC_DTYPE_COUNT) {
        printf("  fallback %s%s: ", tc_dtype_name(r->fallback), o->fallback_explicit ? "" : " (default)");
        if (r->n_fallback)
            printf("%d linear weights cannot be ternary (rows not whole 32-blocks)", r->n_fallback);
        else
            printf("every linear weight is ternary; the embedding and the head are in the fallback");
        if (r->n_fallback_float)
            printf("; %d matrices are %s, their rows not whole blocks of %s", r->n_fallback_float,
                   o->float_dtype == TC_F32 ? "F32" : "F16", tc_dtype_name(r->fallback));
        printf("\n");
    }
    if (r->fallback != TC_DTYPE_COUNT && r->ffn_dim_stored != ffn_dim)
        printf("  FFN width %d padded to %d with zero rows and columns (the same function) so that the down "
               "projections are %s\n", ffn_dim, r->ffn_dim_stored, o->format == TC_QFORMAT_GGUF_TQ1 ? "TQ1_0" : "TQ2_0");
    /* The parts add up to the file's tensor bytes; the rest is header and metadata. */
    printf("  %-10s %12s %12s %8s  %s\n", "part", "weights", "bytes", "bits/w", "stored as");
    for (int p = 0; p < TC_QPART_COUNT; p++) {
        const tc_qpart_size *ps = &r->parts[p];
        if (!ps->params)
            continue;
        char types[256] = "F32";
        if (p != TC_QPART_NORMS)
            part_types(r, (tc_qpart)p, types, sizeof types);
        if (p == TC_QPART_TERNARY && o->format == TC_QFORMAT_PACKED)
            snprintf(types, sizeof types, "%s tiles", tc_tpack_layout_name(o->q.layout));
        printf("  %-10s %12llu %12llu %8.3f  %s\n", tc_qpart_name((tc_qpart)p), (unsigned long long)ps->params,
               (unsigned long long)ps->bytes, part_bpw(ps), types);
    }
    printf("  %-10s %12s %12llu\n", "header", "", (unsigned long long)(r->file_bytes - r->tensor_bytes));
    printf("  %s in %.1f s (producing %.1f s, writing %.1f s, verifying %.1f s)\n",
           r->verified ? "verified" : "not verified", r->seconds, r->times.produce, r->times.write, r->times.verify);
}

/* Conversions of ternary-trained models (and of their packed files) to
 * checkpoint formats: codes and scales as they are. */
typedef enum conv_format { CONV_NONE, CONV_GGUF_TQ1, CONV_GGUF_TQ2, CONV_GGUF_I2S, CONV_HF } conv_format;

static tc_format conv_container(conv_format f)
{
    return f == CONV_HF ? TC_FORMAT_HF : TC_FORMAT_GGUF;
}

static tc_dtype conv_ternary(conv_format f)
{
    return f == CONV_GGUF_TQ1 ? TC_TQ1_0 : f == CONV_GGUF_I2S ? TC_I2_S : TC_TQ2_0;
}

static const char *conv_name(conv_format f)
{
    static const char *const names[] = {"packed", "gguf-tq1", "gguf-tq2", "gguf-i2s", "hf"};
    return names[f];
}

static int is_packed_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[8];
    size_t n = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f)
        fclose(f);
    return n == sizeof magic && memcmp(magic, TC_TMODEL_MAGIC, sizeof magic) == 0;
}

/* The vocabulary source of a conversion: a GGUF file's keys (GGUF output) or
 * an HF directory (its tokenizer files, hf output). */
static int open_vocab(const char *vocab, conv_format conv, tc_gguf *g, int *have_g, tc_error *err)
{
    *have_g = 0;
    if (!vocab || conv == CONV_HF)
        return TC_OK;
    if (tc_gguf_open(g, vocab, err))
        return TC_ERR;
    *have_g = 1;
    return TC_OK;
}

static void print_converted(const char *out, conv_format conv, const char *what, const cli_common *com)
{
    if (!com->quiet)
        fprintf(stderr, "%s: %s: its codes and scales carried over as they are, nothing requantized\n", TOOL, what);
    printf("wrote %s (%s)\n", out, conv_name(conv));
}

static int convert_ternary(const tc_model *m, const char *out, conv_format conv, const char *vocab,
                           const cli_common *com)
{
    tc_error err = {{0}};
    tc_gguf g;
    int have_g;
    if (open_vocab(vocab, conv, &g, &have_g, &err))
        return cli_fail(TOOL, &err);
    int rc = tc_model_write_ternary(m, out, conv_container(conv), conv_ternary(conv), have_g ? &g : NULL,
                                    conv == CONV_HF ? vocab : NULL, &err);
    if (have_g)
        tc_gguf_close(&g);
    if (rc)
        return cli_fail(TOOL, &err);
    print_converted(out, conv, m->path, com);
    return TC_EXIT_OK;
}

static int export_packed(const char *in, const char *out, conv_format conv, const char *vocab,
                         const cli_common *com)
{
    const char *inputs[] = {in, vocab};
    cli_output o = {out, conv == CONV_HF ? TC_OUTPUT_DIR : TC_OUTPUT_FILE};
    int code = cli_guard_outputs(TOOL, NULL, inputs, 2, &o, 1, com->force);
    if (code)
        return code;
    tc_error err = {{0}};
    tc_tmodel tm;
    if (tc_tmodel_open(&tm, in, &err))
        return cli_fail(TOOL, &err);
    tc_gguf g;
    int have_g;
    if (open_vocab(vocab, conv, &g, &have_g, &err)) {
        tc_tmodel_close(&tm);
        return cli_fail(TOOL, &err);
    }
    tc_tmodel_export_opts eo = {.format = conv_container(conv), .ternary_dtype = conv_ternary(conv),
                                .gguf_vocab = have_g ? &g : NULL, .hf_src_dir = conv == CONV_HF ? vocab : NULL,
                                .name = "tc-quantize"};
    int rc = tc_tmodel_export(&tm, out, &eo, &err);
    if (have_g)
        tc_gguf_close(&g);
    tc_tmodel_close(&tm);
    if (rc)
        return cli_fail(TOOL, &err);
    print_converted(out, conv, in, com);
    return TC_EXIT_OK;
}

static int cmp_kl(const void *a, const void *b)
{
    double x = ((const tc_sensitivity_entry *)a)->kl, y = ((const tc_sensitivity_entry *)b)->kl;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* --sensitivity: every linear weight quantized alone, ranked by the KL it costs. */
static int run_sensitivity(const char *path, const tc_quantize_opts *qo, cli_calib *cal, const cli_common *com,
                           const char *out, tc_dist *dist)
{
    if (out)
        return cli_usage_error(TOOL, "--sensitivity writes no model: leave out -o");
    if (!cal->text && !cal->tokens)
        return cli_usage_error(TOOL, "--sensitivity needs --calib FILE or --calib-tokens FILE");
    /* Under mpirun every rank measures on its share of the windows; rank 0
     * prints the figures, which are those of one process. */
    tc_error err = {{0}};
    tc_model m;
    int code = cli_dist_check(TOOL, dist, tc_model_open(&m, path, &err), &err);
    if (code)
        return code;
    tc_calib_set set = {0};
    if ((code = cli_dist_check(TOOL, dist,
                               cli_model_tokenizer(&m, com->tokenizer, 0, &err) ||
                                       cli_calib_load(cal, &m, com->tokenizer, &set, &err)
                                   ? TC_ERR
                                   : TC_OK,
                               &err))) {
        tc_model_close(&m);
        return code;
    }
    int writer = dist->rank == 0;
    cli_print_windows(TOOL, "calibration", &set, com->quiet || !writer);
    tc_batch b = {set.tokens, set.offsets, set.n_seqs};
    tc_sensitivity sn;
    int rc = tc_sensitivity_measure_dist(&m, &b, &qo->q, com->threads > 0 ? com->threads : cli_default_threads(),
                                         dist, &sn, &err);
    if (rc == TC_OK && writer) {
        qsort(sn.entries, sn.n_entries, sizeof *sn.entries, cmp_kl);
        if (com->json) {
            cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "tensors");
            cJSON_AddStringToObject(j, "input", path);
            cJSON_AddStringToObject(j, "method", tc_tmethod_name(sn.method));
            cJSON_AddNumberToObject(j, "tokens", (double)sn.n_tokens);
            for (size_t i = 0; i < sn.n_entries; i++) {
                cJSON *e = cJSON_CreateObject();
                char name[64];
                tc_tmodel_tensor t = {.layer = sn.entries[i].layer, .role = sn.entries[i].role};
                tc_tmodel_tensor_name(&t, name, sizeof name);
                cJSON_AddStringToObject(e, "name", name);
                cJSON_AddNumberToObject(e, "kl", sn.entries[i].kl);
                cJSON_AddNumberToObject(e, "rel_weight_error", sn.entries[i].rel_weight_error);
                cJSON_AddItemToArray(a, e);
            }
            char *s = cJSON_Print(j);
            if (s)
                printf("%s\n", s);
            free(s);
            cJSON_Delete(j);
        } else {
            printf("%s: each linear weight quantized alone (%s), mean KL over %llu calibration tokens, "
                   "most sensitive first\n", path, tc_tmethod_name(sn.method), (unsigned long long)sn.n_tokens);
            printf("  %-20s %12s %10s\n", "tensor", "KL (nats)", "rel err W");
            for (size_t i = 0; i < sn.n_entries; i++) {
                char name[64];
                tc_tmodel_tensor t = {.layer = sn.entries[i].layer, .role = sn.entries[i].role};
                tc_tmodel_tensor_name(&t, name, sizeof name);
                printf("  %-20s %12.6f %10.4f\n", name, sn.entries[i].kl, sn.entries[i].rel_weight_error);
            }
        }
    }
    if (rc == TC_OK)
        tc_sensitivity_free(&sn);
    tc_calib_set_free(&set);
    tc_model_close(&m);
    return cli_dist_check(TOOL, dist, rc, &err);
}

/* --target-bpw: each linear weight's type from its measured cost (tc/mixed.h);
 * the assignment goes to stderr. */
static int plan_mixed(const tc_model *m, const tc_batch *b, const tc_quantize_opts *qo, double target,
                      const char *costs_from, const cli_common *com, tc_mixed *mx, tc_error *err)
{
    tc_mixed_opts mo = {.target_bpw = target, .q = qo->q, .format = qo->format, .n_threads = qo->n_threads,
                        .dist = qo->dist};
    int quiet = com->quiet || (qo->dist && qo->dist->rank > 0); /* rank 0 speaks for the job */
    if (tc_mixed_init(mx, m, &mo, err))
        return TC_ERR;
    if (costs_from) {
        tc_tmodel prev;
        if (tc_tmodel_open(&prev, costs_from, err))
            return TC_ERR;
        int rc = prev.mixed ? tc_mixed_costs_from(mx, prev.mixed, &mo, costs_from, err)
                            : tc_err(err, "%s: the file has no mixed-precision record to take costs from", costs_from);
        tc_tmodel_close(&prev);
        if (rc)
            return TC_ERR;
    } else {
        if (!quiet)
            fprintf(stderr, "%s: measuring each linear weight alone as ternary, Q4_0 and Q8_0 on the first %d "
                    "calibration windows\n", TOOL, TC_MIXED_MEASURE_SEQS);
        if (tc_mixed_measure(mx, m, b, &mo, err))
            return TC_ERR;
    }
    if (tc_mixed_assign(mx, err))
        return TC_ERR;
    char *t = quiet ? NULL : tc_mixed_table(mx);
    if (t)
        fprintf(stderr, "%s", t);
    free(t);
    return TC_OK;
}

int main(int argc, char **argv)
{
    enum { OPT_METHOD = CLI_OPT_TOOL_BASE, OPT_GROUP, OPT_LAYOUT, OPT_FORMAT, OPT_SEQ, OPT_DAMP, OPT_F32,
           OPT_QEMB, OPT_STRICT, OPT_NOVERIFY, OPT_FALLBACK, OPT_KEEP_FFN, OPT_VOCAB, OPT_ACT_ORDER, OPT_REFIT,
           OPT_SENS, OPT_EMBD_TYPE, OPT_TARGET_BPW, OPT_COSTS_FROM };
    static const struct option opts[] = {
        CLI_COMMON_LONG_OPTIONS,
        CLI_CALIB_LONG_OPTIONS,
        {"output", required_argument, 0, 'o'},
        {"method", required_argument, 0, OPT_METHOD},
        {"group", required_argument, 0, OPT_GROUP},
        {"layout", required_argument, 0, OPT_LAYOUT},
        {"format", required_argument, 0, OPT_FORMAT},
        {"sequential", no_argument, 0, OPT_SEQ},
        {"damp", required_argument, 0, OPT_DAMP},
        {"f32", no_argument, 0, OPT_F32},
        {"quantize-embeddings", no_argument, 0, OPT_QEMB},
        {"strict", no_argument, 0, OPT_STRICT},
        {"no-verify", no_argument, 0, OPT_NOVERIFY},
        {"fallback", required_argument, 0, OPT_FALLBACK},
        {"keep-ffn-width", no_argument, 0, OPT_KEEP_FFN},
        {"vocab", required_argument, 0, OPT_VOCAB},
        {"act-order", no_argument, 0, OPT_ACT_ORDER},
        {"refit", required_argument, 0, OPT_REFIT},
        {"sensitivity", no_argument, 0, OPT_SENS},
        {"embd-type", required_argument, 0, OPT_EMBD_TYPE},
        {"target-bpw", required_argument, 0, OPT_TARGET_BPW},
        {"costs-from", required_argument, 0, OPT_COSTS_FROM},
        CLI_FORCE_LONG_OPTION,
        {0, 0, 0, 0},
    };
    cli_common com = {0};
    cli_init();
    tc_dist dist;
    cli_dist_init(&dist, &argc, &argv);
    cli_calib cal = {0};
    const char *out = NULL;
    tc_quantize_opts qo = {.q = {.method = TC_TMETHOD_OPTIMAL, .layout = TC_TPACK_TL2,
                                 .group = {TC_TGROUP_ROW, 0}},
                           .format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .verify = 1, .pad_ffn = 1};
    int c, code, method_set = 0, group_set = 0, act_order = 0, refit = -1, sensitivity = 0;
    double target_bpw = 0;
    const char *costs_from = NULL;
    const char *vocab = NULL;
    conv_format conv = CONV_NONE;
    while ((c = getopt_long(argc, argv, "qho:", opts, NULL)) != -1) {
        int r = cli_common_option(TOOL, c, optarg, &com, usage, &code);
        if (r < 0)
            r = cli_calib_option(TOOL, c, optarg, &cal, &code);
        if (r == 1)
            return code;
        if (r == 0)
            continue;
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_METHOD:
            if (tc_tmethod_from_name(optarg, &qo.q.method) || qo.q.method == TC_TMETHOD_SOURCE)
                return cli_usage_error(TOOL, "--method must be absmean, optimal, calibrated, affine, "
                                             "affine-calibrated or affine-block");
            method_set = 1;
            break;
        case OPT_GROUP:
            if (parse_group(optarg, &qo.q.group))
                return cli_usage_error(TOOL, "--group must be tensor, row or a number in %d..%d",
                                       TC_TGROUP_COLS_MIN, TC_TGROUP_COLS_MAX);
            group_set = 1;
            break;
        case OPT_LAYOUT:
            if (tc_tpack_layout_from_name(optarg, &qo.q.layout))
                return cli_usage_error(TOOL, "--layout must be i2, tl1 or tl2");
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "packed") == 0)
                qo.format = TC_QFORMAT_PACKED;
            else if (strcmp(optarg, "gguf-tq1") == 0)
                qo.format = TC_QFORMAT_GGUF_TQ1;
            else if (strcmp(optarg, "gguf-tq2") == 0)
                qo.format = TC_QFORMAT_GGUF_TQ2;
            else if (strcmp(optarg, "gguf-i2s") == 0)
                conv = CONV_GGUF_I2S;
            else if (strcmp(optarg, "hf") == 0)
                conv = CONV_HF;
            else
                return cli_usage_error(TOOL, "--format must be packed, gguf-tq1, gguf-tq2, gguf-i2s or hf");
            break;
        case OPT_SEQ: qo.q.sequential = 1; break;
        case OPT_DAMP: {
            char *end;
            qo.q.damp_frac = strtod(optarg, &end);
            if (*end || !(qo.q.damp_frac > 0 && qo.q.damp_frac <= 10))
                return cli_usage_error(TOOL, "--damp must be a number in (0, 10]");
            break;
        }
        case OPT_F32: qo.float_dtype = TC_F32; break;
        case OPT_QEMB: qo.quantize_embeddings = 1; break;
        case OPT_STRICT: qo.strict = 1; break;
        case OPT_NOVERIFY: qo.verify = 0; break;
        case OPT_FALLBACK:
            if (cli_parse_dtype(optarg, &qo.fallback) ||
                !(qo.fallback == TC_Q8_0 || qo.fallback == TC_Q4_0 || qo.fallback == TC_Q4_K ||
                  qo.fallback == TC_Q6_K || qo.fallback == TC_F16))
                return cli_usage_error(TOOL, "--fallback is q8_0, q4_0, q4_k, q6_k or f16, not '%s'", optarg);
            qo.fallback_explicit = 1;
            break;
        case OPT_KEEP_FFN: qo.pad_ffn = 0; break;
        case OPT_VOCAB: vocab = optarg; break;
        case OPT_ACT_ORDER: act_order = 1; break;
        case OPT_REFIT: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 100)
                return cli_usage_error(TOOL, "--refit must be a number of rounds in 0..100");
            refit = (int)v;
            break;
        }
        case OPT_SENS: sensitivity = 1; break;
        case OPT_EMBD_TYPE:
            if (strcmp(optarg, "f16") == 0)
                qo.embd_dtype = TC_F32; /* float_dtype */
            else if (cli_parse_dtype(optarg, &qo.embd_dtype) || !tc_qmat_type_ok(qo.embd_dtype))
                return cli_usage_error(TOOL, "--embd-type is f16, q8_0, q6_k or q4_0, not '%s'", optarg);
            break;
        case OPT_TARGET_BPW: {
            char *end;
            target_bpw = strtod(optarg, &end);
            if (*end || !(target_bpw > 0) || target_bpw > 64)
                return cli_usage_error(TOOL, "--target-bpw is a number of bits per linear weight, not '%s'", optarg);
            break;
        }
        case OPT_COSTS_FROM: costs_from = optarg; break;
        default: return cli_usage_error(TOOL, "unknown option");
        }
    }
    if (costs_from && !(target_bpw > 0))
        return cli_usage_error(TOOL, "--costs-from goes with --target-bpw");
    if (target_bpw > 0 && (sensitivity || !(cal.text || cal.tokens)))
        return cli_usage_error(TOOL, "--target-bpw %s", sensitivity ? "writes a model: not with --sensitivity"
                                                                     : "measures each weight's cost: it needs --calib "
                                                                       "FILE or --calib-tokens FILE");
    if (optind != argc - 1)
        return cli_usage_error(TOOL, "expected one MODEL argument");
    if (com.info)
        return cli_info(TOOL, argv[optind], com.json);
    if (sensitivity)
        return run_sensitivity(argv[optind], &qo, &cal, &com, out, &dist);
    if (!out)
        return cli_usage_error(TOOL, "no output: give -o OUT");
    if (conv == CONV_NONE && qo.format == TC_QFORMAT_GGUF_TQ1)
        conv = CONV_GGUF_TQ1;
    if (conv == CONV_NONE && qo.format == TC_QFORMAT_GGUF_TQ2)
        conv = CONV_GGUF_TQ2;
    if (is_packed_file(argv[optind])) {
        const char *no = method_set ? "--method" : group_set ? "--group" : cal.text || cal.tokens ? "calibration data"
                         : qo.quantize_embeddings ? "--quantize-embeddings" : qo.fallback_explicit ? "--fallback"
                         : conv == CONV_NONE ? "the packed format" : NULL;
        if (no)
            return cli_usage_error(TOOL, "%s is a packed file: it is written back as a checkpoint (--format gguf-tq1, "
                                   "gguf-tq2, gguf-i2s or hf), so %s does not apply", argv[optind], no);
        /* Nothing to spread: rank 0 writes, the others wait for its status. */
        return tc_dist_max_int(&dist, dist.rank == 0 ? export_packed(argv[optind], out, conv, vocab, &com)
                                                     : TC_EXIT_OK);
    }
    if (tc_tmethod_calibrated(qo.q.method) && !cal.text && !cal.tokens)
        return cli_usage_error(TOOL, "--method %s needs --calib FILE or --calib-tokens FILE",
                               tc_tmethod_name(qo.q.method));
    if (qo.q.sequential && !tc_tmethod_calibrated(qo.q.method))
        return cli_usage_error(TOOL, "--sequential applies to the calibrated methods only");
    int affine_cal = qo.q.method == TC_TMETHOD_AFFINE_CALIBRATED || qo.q.method == TC_TMETHOD_AFFINE_BLOCK;
    if ((act_order == 1 || refit >= 0) && !affine_cal)
        return cli_usage_error(TOOL, "--act-order and --refit apply to affine-calibrated and affine-block only");
    if (affine_cal) {
        qo.q.act_order = act_order;
        qo.q.refit = refit >= 0 ? refit : 2;
        qo.q.sequential = 1; /* its stages always take their inputs through the quantized layers */
    }
    if (qo.quantize_embeddings && qo.format != TC_QFORMAT_PACKED)
        return cli_usage_error(TOOL, "--quantize-embeddings is only available with --format packed");
    if (qo.embd_dtype != TC_F32 && qo.format != TC_QFORMAT_PACKED)
        return cli_usage_error(TOOL, "--embd-type needs --format packed (GGUF output has --fallback)");
    if (qo.embd_dtype != TC_F32 && qo.quantize_embeddings)
        return cli_usage_error(TOOL, "--embd-type and --quantize-embeddings are exclusive");
    if (qo.fallback_explicit && qo.format == TC_QFORMAT_PACKED)
        return cli_usage_error(TOOL, "--fallback needs --format gguf-tq1 or gguf-tq2");
    if (!qo.pad_ffn && qo.format == TC_QFORMAT_PACKED)
        return cli_usage_error(TOOL, "--keep-ffn-width needs --format gguf-tq1 or gguf-tq2");
    /* The output's name must not say another format than the one written. */
    const char *named = cli_name_format(out);
    int writes_gguf = qo.format != TC_QFORMAT_PACKED || conv == CONV_GGUF_I2S;
    int writes_tcq = qo.format == TC_QFORMAT_PACKED && conv == CONV_NONE;
    if (named && !strcmp(named, "gguf") && !writes_gguf)
        return cli_usage_error(TOOL, "-o %s names a GGUF file: give --format gguf-tq1 or gguf-tq2 (the packed "
                               "format is a .tcq file)", out);
    if (named && !strcmp(named, "tcq") && !writes_tcq)
        return cli_usage_error(TOOL, "-o %s names a packed .tcq file, but --format asks for %s", out,
                               conv == CONV_HF ? "a Hugging Face directory" : "a GGUF");

    tc_error err = {{0}};
    tc_model m;
    if ((code = cli_dist_check(TOOL, &dist, tc_model_open(&m, argv[optind], &err), &err)))
        return code;
    /* Under mpirun every rank runs its share of the calibration windows
     * through each layer; rank 0 alone checks and writes the output. */
    if (dist.rank != 0)
        com.quiet = 1;
    if (dist.rank == 0) { /* the output is checked against every input before any work */
        const char *inputs[] = {cal.text, cal.tokens, com.tokenizer, vocab};
        cli_output o = {out, conv == CONV_HF ? TC_OUTPUT_DIR : TC_OUTPUT_FILE};
        code = cli_guard_outputs(TOOL, &m, inputs, sizeof inputs / sizeof inputs[0], &o, 1, com.force);
    }
    if ((code = tc_dist_max_int(&dist, code))) {
        tc_model_close(&m);
        return code;
    }
    /* An already ternary model (a BitNet checkpoint) is converted: its codes
     * and its one scale per tensor go into the tiles as they are.  Options
     * that would requantize it are refused. */
    if (!tc_linear_is_ternary(&m.cfg) && (conv == CONV_GGUF_I2S || conv == CONV_HF || vocab)) {
        tc_model_close(&m);
        return cli_usage_error(TOOL, "%s is a float model: %s applies to ternary-trained models only", argv[optind],
                               vocab ? "--vocab" : conv == CONV_HF ? "--format hf" : "--format gguf-i2s");
    }
    if (tc_linear_is_ternary(&m.cfg)) {
        const char *no = method_set ? "--method" : group_set ? "--group" : cal.text || cal.tokens ? "calibration data"
                         : qo.quantize_embeddings ? "--quantize-embeddings"
                         : qo.fallback_explicit ? "--fallback" : NULL;
        if (no) {
            const char *kind = tc_linear_kind_name(m.cfg.t.linear);
            tc_model_close(&m);
            return cli_usage_error(TOOL, "%s is already ternary (%s): it is converted as it is, so %s does not "
                                   "apply", argv[optind], kind, no);
        }
        if (conv != CONV_NONE) { /* nothing to spread: rank 0 converts, the others wait for its status */
            code = dist.rank == 0 ? convert_ternary(&m, out, conv, vocab, &com) : TC_EXIT_OK;
            tc_model_close(&m);
            return tc_dist_max_int(&dist, code);
        }
        qo.q.method = TC_TMETHOD_SOURCE;
        qo.q.group = (tc_tgroup){TC_TGROUP_TENSOR, 0};
        if (!com.quiet)
            fprintf(stderr, "%s: %s is already ternary (%s): its codes and scales %s are carried over as they are, "
                    "without requantization\n", TOOL, argv[optind], tc_linear_kind_name(m.cfg.t.linear),
                    m.cfg.t.linear == TC_LINEAR_BITLINEAR ? "(packed codes, weight_scale)"
                                                          : "(absmean of its float masters, as its linear class "
                                                            "derives them when it runs)");
    }
    /* The tokenizer given, and the vocabulary a GGUF output must carry. */
    if ((code = cli_dist_check(TOOL, &dist,
                               cli_model_tokenizer(&m, com.tokenizer, qo.format != TC_QFORMAT_PACKED, &err), &err))) {
        tc_model_close(&m);
        return code;
    }
    /* A quantized input (a GGUF as people download it) is quantized again
     * from its dequantized values: say so, naming its types. */
    if (!com.quiet && !tc_linear_is_ternary(&m.cfg)) {
        char types[256] = "";
        size_t k = 0;
        for (int t = 0; t < TC_DTYPE_COUNT; t++) {
            if (tc_dtype_block_elems((tc_dtype)t) == 1)
                continue;
            int used = 0;
            for (size_t i = 0; i < m.dir->n_tensors && !used; i++)
                used = m.dir->tensors[i].dtype == (tc_dtype)t;
            if (used && k < sizeof types)
                k += (size_t)snprintf(types + k, sizeof types - k, "%s%s", k ? ", " : "", tc_dtype_name((tc_dtype)t));
        }
        if (k)
            fprintf(stderr, "%s: %s holds %s tensors: ternary quantization starts from their dequantized values\n",
                    TOOL, argv[optind], types);
    }
    tc_calib_set set = {0};
    tc_batch batch;
    int have_calib = cal.text || cal.tokens;
    if ((code = cli_dist_check(TOOL, &dist, have_calib ? cli_calib_load(&cal, &m, com.tokenizer, &set, &err) : TC_OK,
                               &err))) {
        tc_model_close(&m);
        return code;
    }
    if (have_calib) {
        cli_print_windows(TOOL, "calibration", &set, com.quiet);
        batch = (tc_batch){set.tokens, set.offsets, set.n_seqs};
        qo.calib = &batch;
        qo.calib_windows = &set.win;
    }
    cli_progress bar;
    cli_progress_init(&bar, "quantize", com.quiet);
    qo.tokenizer = com.tokenizer;
    qo.n_threads = com.threads > 0 ? com.threads : cli_default_threads();
    qo.progress = cli_progress_update;
    qo.progress_ctx = &bar;
    qo.dist = &dist;
    tc_mixed mx = {0};
    int rc = TC_OK;
    if (target_bpw > 0 && (rc = plan_mixed(&m, &batch, &qo, target_bpw, costs_from, &com, &mx, &err)) == TC_OK) {
        qo.linear_types = mx.types;
        qo.mixed = &mx.record;
    }
    tc_quantize_report rep;
    if (rc == TC_OK)
        rc = tc_quantize_model(&m, out, &qo, &rep, &err);
    cli_progress_done(&bar);
    if (rc != TC_OK && dist.size > 1 && dist.rank == 0) {
        /* The others may be waiting for a layer rank 0 will not reach:
         * say why, and end the job (its temporary is already gone). */
        cli_fail(TOOL, &err);
        tc_dist_abort(&dist, TC_EXIT_FAIL);
    }
    if (rc == TC_OK && dist.rank == 0) {
        if (!com.quiet)
            print_table(&rep, &qo);
        if (com.json) {
            cJSON *j = summary_json(&rep, &qo, argv[optind], out, m.cfg.ffn_dim, have_calib ? &set : NULL);
            if (target_bpw > 0)
                cJSON_AddItemToObject(j, "mixed", tc_mixed_json(&mx));
            char *s = cJSON_Print(j);
            if (s)
                printf("%s\n", s);
            free(s);
            cJSON_Delete(j);
        } else {
            print_summary(&rep, &qo, out, m.cfg.ffn_dim);
        }
        tc_quantize_report_free(&rep);
    }
    tc_mixed_free(&mx);
    if (have_calib)
        tc_calib_set_free(&set);
    tc_model_close(&m);
    return cli_dist_check(TOOL, &dist, rc, &err);
}
