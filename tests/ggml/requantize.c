/* A one-time check of tc's GGUF reader against files ggml itself writes (not
 * part of the build; compiled against ggml's ggml-base as make_vectors.c is,
 * see README.md):
 *
 *   requantize IN.gguf TYPE OUT.gguf BACK.gguf
 *
 * OUT.gguf: IN's metadata and tensors, every matrix whose rows are whole
 * blocks of TYPE quantized to it by ggml_quantize_chunk without an importance
 * matrix (what llama-quantize does for a pure TYPE without --imatrix); the
 * others, and the 1-D tensors, as they were.  BACK.gguf: every tensor of OUT
 * converted to F32 by ggml's own to_float, what `llama-quantize
 * --allow-requantize OUT BACK F32` writes.  A reader that decodes TYPE as
 * ggml does computes the same logits from both files, byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ggml.h"
#include "gguf.h"

static struct gguf_context *start(const struct gguf_context *in)
{
    struct gguf_context *g = gguf_init_empty();
    gguf_set_kv(g, in);
    return g;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: requantize IN.gguf TYPE OUT.gguf BACK.gguf\n");
        return 2;
    }
    enum ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *n = ggml_type_name((enum ggml_type)t);
        if (n && strcasecmp(n, argv[2]) == 0)
            type = (enum ggml_type)t;
    }
    if (type == GGML_TYPE_COUNT) {
        fprintf(stderr, "requantize: unknown type %s\n", argv[2]);
        return 2;
    }
    struct ggml_context *src = NULL;
    struct gguf_init_params ip = {.no_alloc = false, .ctx = &src};
    struct gguf_context *in = gguf_init_from_file(argv[1], ip);
    if (!in) {
        fprintf(stderr, "requantize: cannot read %s\n", argv[1]);
        return 1;
    }
    int64_t n = gguf_get_n_tensors(in);
    size_t mem = 0;
    for (int64_t i = 0; i < n; i++)
        mem += 2 * ggml_nelements(ggml_get_tensor(src, gguf_get_tensor_name(in, i))) * sizeof(float) + 1024;
    struct ggml_init_params cp = {.mem_size = mem, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *dst = ggml_init(cp);
    struct gguf_context *out = start(in), *back = start(in);
    float *f = NULL;
    int quantized = 0;
    for (int64_t i = 0; i < n; i++) {
        struct ggml_tensor *t = ggml_get_tensor(src, gguf_get_tensor_name(in, i));
        int64_t nel = ggml_nelements(t), rows = nel / t->ne[0];
        f = realloc(f, (size_t)nel * sizeof *f);
        /* the input's values in F32 */
        if (t->type == GGML_TYPE_F32)
            memcpy(f, t->data, (size_t)nel * sizeof *f);
        else
            ggml_get_type_traits(t->type)->to_float(t->data, f, nel);
        struct ggml_tensor *q = t;
        if (ggml_n_dims(t) == 2 && t->ne[0] % ggml_blck_size(type) == 0) {
            q = ggml_new_tensor(dst, type, ggml_n_dims(t), t->ne);
            ggml_set_name(q, t->name);
            ggml_quantize_chunk(type, f, q->data, 0, rows, t->ne[0], NULL);
            quantized++;
        }
        gguf_add_tensor(out, q);
        struct ggml_tensor *b = ggml_new_tensor(dst, GGML_TYPE_F32, ggml_n_dims(q), q->ne);
        ggml_set_name(b, q->name);
        if (q->type == GGML_TYPE_F32)
            memcpy(b->data, q->data, (size_t)nel * sizeof(float));
        else
            ggml_get_type_traits(q->type)->to_float(q->data, b->data, nel);
        gguf_add_tensor(back, b);
    }
    gguf_set_val_u32(back, "general.file_type", 0);
    int ok = gguf_write_to_file(out, argv[3], false) && gguf_write_to_file(back, argv[4], false);
    fprintf(stderr, "requantize: %s: %d of %lld tensors as %s\n", argv[3], quantized, (long long)n, ggml_type_name(type));
    free(f);
    gguf_free(out);
    gguf_free(back);
    gguf_free(in);
    ggml_free(dst);
    ggml_free(src);
    return ok ? 0 : 1;
}
