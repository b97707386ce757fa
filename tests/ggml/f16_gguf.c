/* The input of the one-time llama-quantize check (see README.md; not part of
 * the build): a model written as an F16 GGUF, carrying the vocabulary of a
 * GGUF file so that llama.cpp's tools accept it.
 *
 *   f16_gguf MODEL VOCAB.gguf OUT.gguf
 *
 * Matrices go out as F16, as convert_hf_to_gguf.py --outtype f16 writes
 * them; the embedding and norms stay F32. */
#include <stdio.h>

#include "tc/gguf.h"
#include "tc/model.h"
#include "tc/model_write.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: f16_gguf MODEL VOCAB.gguf OUT.gguf\n");
        return 2;
    }
    tc_error err = {{0}};
    tc_gguf vocab;
    tc_model m;
    if (tc_gguf_open(&vocab, argv[2], &err)) {
        fprintf(stderr, "f16_gguf: %s\n", err.msg);
        return 1;
    }
    if (tc_model_open(&m, argv[1], &err)) {
        fprintf(stderr, "f16_gguf: %s\n", err.msg);
        tc_gguf_close(&vocab);
        return 1;
    }
    tc_model_copy cp = {.model = &m, .float_dtype = TC_F16, .matrices = TC_F16};
    tc_model_src src = {.cfg = m.cfg, .dtype = TC_F16, .fill = tc_model_copy_fill, .ctx = &cp,
                        .gguf_vocab = &vocab, .name = "f16", .dtype_of = tc_model_copy_dtype,
                        .encode = tc_model_copy_encode};
    int rc = tc_model_write(argv[3], TC_FORMAT_GGUF, &src, &err);
    if (rc)
        fprintf(stderr, "f16_gguf: %s\n", err.msg);
    tc_model_close(&m);
    tc_gguf_close(&vocab);
    return rc ? 1 : 0;
}
