/* A model written as an F16 (or F32) GGUF with its vocabulary: the input that
 * bench/kquant_table.sh gives llama-quantize, as llama.cpp's
 * convert_hf_to_gguf.py --outtype f16 writes a checkpoint (F16 matrices, F32
 * norms).
 *
 *   float_gguf MODEL OUT.gguf [--tokenizer FILE] [--f32] [--pad-ffn N]
 *
 * --tokenizer names the tokenizer of a checkpoint without one (llama2.c).
 * --pad-ffn N widens the MLP to the next multiple of N with zero rows of the
 * gate and up projections and zero columns of the down projection: the same
 * function (SiLU(0) * 0 = 0), but rows that llama-quantize can store as
 * 256-weight K-quant blocks, as tc-quantize pads a ternary GGUF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc/model.h"
#include "tc/model_tokenizer.h"
#include "tc/model_write.h"

typedef struct pad_src {
    tc_model_copy cp;
    int ffn, ffn_pad, dim; /* the model's FFN width, the written one, the width */
    float *tmp;            /* [ffn][dim] */
} pad_src;

static int pad_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    pad_src *p = ctx;
    int gate_up = layer >= 0 && (which == TC_W_GATE || which == TC_W_UP);
    int down = layer >= 0 && which == TC_W_DOWN;
    if (p->ffn_pad == p->ffn || (!gate_up && !down))
        return tc_model_copy_fill(&p->cp, layer, which, dst, n, err);
    uint64_t n_src = (uint64_t)p->ffn * (uint64_t)p->dim;
    if (tc_model_copy_fill(&p->cp, layer, which, p->tmp, n_src, err))
        return TC_ERR;
    memset(dst, 0, n * sizeof *dst);
    if (gate_up) /* [ffn_pad][dim]: the first ffn rows */
        memcpy(dst, p->tmp, n_src * sizeof *dst);
    else /* [dim][ffn_pad]: the first ffn columns of each row */
        for (int r = 0; r < p->dim; r++)
            memcpy(dst + (size_t)r * (size_t)p->ffn_pad, p->tmp + (size_t)r * (size_t)p->ffn,
                   (size_t)p->ffn * sizeof *dst);
    return TC_OK;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *tok = NULL;
    tc_dtype dtype = TC_F16;
    long pad = 1;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            tok = argv[++i];
        else if (!strcmp(argv[i], "--pad-ffn") && i + 1 < argc)
            bad |= (pad = strtol(argv[++i], NULL, 10)) < 1 || pad > 65536;
        else if (!strcmp(argv[i], "--f32"))
            dtype = TC_F32;
        else if (argv[i][0] == '-' || (in && out))
            bad = 1;
        else if (!in)
            in = argv[i];
        else
            out = argv[i];
    }
    if (bad || !in || !out) {
        fprintf(stderr, "usage: float_gguf MODEL OUT.gguf [--tokenizer FILE] [--f32] [--pad-ffn N]\n");
        return 2;
    }
    tc_error err = {{0}};
    tc_model m;
    if (tc_model_open(&m, in, &err)) {
        fprintf(stderr, "float_gguf: %s\n", err.msg);
        return 1;
    }
    tc_vocab vocab = {0};
    pad_src p = {.cp = {.model = &m, .float_dtype = dtype, .matrices = TC_DTYPE_COUNT},
                 .ffn = m.cfg.ffn_dim, .dim = m.cfg.dim};
    p.ffn_pad = (int)((m.cfg.ffn_dim + pad - 1) / pad * pad);
    int rc = TC_OK;
    if (tc_linear_is_ternary(&m.cfg))
        rc = tc_err(&err, "%s: a ternary-trained model; its codes would be written as floats", in);
    if (rc == TC_OK && tok)
        rc = tc_model_set_tokenizer(&m, tok, &err);
    if (rc == TC_OK)
        rc = tc_model_vocab(&m, &vocab, &err);
    if (rc == TC_OK && p.ffn_pad != p.ffn &&
        !(p.tmp = malloc((size_t)p.ffn * (size_t)p.dim * sizeof *p.tmp)))
        rc = tc_err(&err, "out of memory");
    if (rc == TC_OK) {
        tc_model_src src = {.cfg = m.cfg, .dtype = dtype, .fill = pad_fill, .ctx = &p,
                            .gguf_vocab = tc_model_gguf(&m), .vocab = &vocab, .name = "float_gguf"};
        src.cfg.ffn_dim = p.ffn_pad;
        rc = tc_model_write(out, TC_FORMAT_GGUF, &src, &err);
    }
    if (rc)
        fprintf(stderr, "float_gguf: %s\n", err.msg);
    tc_vocab_free(&vocab);
    free(p.tmp);
    tc_model_close(&m);
    return rc ? 1 : 0;
}
