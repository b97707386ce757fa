/* ggml's block types decode exactly as ggml does.
 *
 * tests/ggml/ggml_types.gguf was made once with ggml itself
 * (tests/ggml/make_vectors.c): for each type, three rows of 512 inputs
 * (gaussian-like; with zeros and an outlier; tiny), ggml's reference
 * quantization of them (ggml_quantize_chunk without an importance matrix) and
 * ggml's dequantization of those blocks.  tc must decode the blocks to the
 * same floats, bit for bit; a block with an infinite or NaN scale is
 * refused. */
#include "testutil.h"

#include "tc/ggml_quants.h"
#include "tc/gguf.h"

static const char *const TYPES[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1",   "Q8_0",  "Q2_K",
                                    "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};

static const tc_tensor *find(const tc_gguf *g, const char *type, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", type, what);
    /* ggml's names: lower case but the K of the K-quants (q4_0, q2_K, iq4_xs) */
    for (char *c = name; *c && *c != '.'; c++)
        if (*c >= 'A' && *c <= 'Z' && !(*c == 'K' && c[-1] == '_'))
            *c = (char)(*c - 'A' + 'a');
    const tc_tensor *t = tc_tensordir_find(&g->dir, name);
    CHECK_MSG(t != NULL, "%s is not in the vector file", name);
    return t;
}

int main(void)
{
    const char *src = getenv("TC_SOURCE");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/ggml/ggml_types.gguf", src && *src ? src : ".");
    tc_gguf g;
    tc_error err = {{0}};
    if (tc_gguf_open(&g, path, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return tu_finish("test_ggml_quants");
    }
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        const tc_tensor *blocks = find(&g, TYPES[i], "blocks"), *out = find(&g, TYPES[i], "out");
        if (!blocks || !out)
            continue;
        CHECK_MSG(strcmp(tc_dtype_name(blocks->dtype), TYPES[i]) == 0, "%s read as %s", TYPES[i],
                  tc_dtype_name(blocks->dtype));
        float *got = NULL, *want = NULL;
        CHECK_OK(tc_tensor_load_f32(blocks, &got, &err), &err);
        CHECK_OK(tc_tensor_load_f32(out, &want, &err), &err);
        if (got && want) {
            uint64_t same = 0;
            for (uint64_t k = 0; k < out->n_elements; k++)
                same += memcmp(&got[k], &want[k], sizeof *got) == 0;
            CHECK_MSG(same == out->n_elements, "%s: %llu of %llu weights differ from ggml's", TYPES[i],
                      (unsigned long long)(out->n_elements - same), (unsigned long long)out->n_elements);
            printf("%-7s %llu weights in %llu bytes (%.3f bits per weight): all equal to ggml's\n", TYPES[i],
                   (unsigned long long)blocks->n_elements, (unsigned long long)blocks->nbytes,
                   8.0 * (double)blocks->nbytes / (double)blocks->n_elements);
        }
        /* A block whose scale is not finite is refused, naming it. */
        if (blocks->nbytes) {
            uint8_t *bad = malloc(blocks->nbytes);
            float *scratch = malloc(blocks->n_elements * sizeof *scratch);
            memcpy(bad, blocks->data, blocks->nbytes);
            uint64_t bb = tc_dtype_block_bytes(blocks->dtype);
            /* Every type's first f16 sits at offset 0 except Q2_K (80), Q3_K (108), Q6_K (208). */
            uint64_t at = blocks->dtype == TC_Q2_K ? 80 : blocks->dtype == TC_Q3_K ? 108
                          : blocks->dtype == TC_Q6_K ? 208 : 0;
            bad[bb + at] = 0x00;
            bad[bb + at + 1] = 0x7e; /* NaN */
            int rc = tc_convert_to_f32(blocks->dtype, bad, blocks->n_elements, scratch, &err);
            CHECK_MSG(rc == TC_ERR && strstr(err.msg, "block 1"), "%s: a NaN scale was not refused (%s)",
                      TYPES[i], rc ? err.msg : "accepted");
            free(bad);
            free(scratch);
        }
        /* The types tc writes: ggml's reference bytes from the same inputs. */
        const tc_tensor *in = find(&g, TYPES[i], "in");
        if (in && tc_ggml_quant_can_encode(blocks->dtype)) {
            uint8_t *enc = malloc(blocks->nbytes);
            CHECK_OK(tc_convert_from_f32(blocks->dtype, (const float *)in->data, in->n_elements, enc, &err), &err);
            uint64_t bb = tc_dtype_block_bytes(blocks->dtype), nb = blocks->nbytes / bb, same = 0;
            for (uint64_t k = 0; k < nb; k++)
                same += memcmp(enc + k * bb, blocks->data + k * bb, (size_t)bb) == 0;
            CHECK_MSG(same == nb, "%s: %llu of %llu blocks differ from ggml's quantization", TYPES[i],
                      (unsigned long long)(nb - same), (unsigned long long)nb);
            printf("%-7s written by tc: %llu of %llu blocks equal to ggml's\n", TYPES[i], (unsigned long long)same,
                   (unsigned long long)nb);
            free(enc);
        }
        free(got);
        free(want);
    }
    /* The written types again on 64 more varied rows (six decades of scale,
     * all-positive, constant, outlier, sparse and all-negative rows). */
    static const char *const WRITTEN[] = {"Q8_0", "Q4_0", "Q4_K", "Q6_K"};
    for (size_t i = 0; i < sizeof WRITTEN / sizeof WRITTEN[0]; i++) {
        const tc_tensor *in = find(&g, WRITTEN[i], "enc_in"), *blocks = find(&g, WRITTEN[i], "enc_blocks");
        if (!in || !blocks)
            continue;
        uint8_t *enc = malloc(blocks->nbytes);
        CHECK_OK(tc_convert_from_f32(blocks->dtype, (const float *)in->data, in->n_elements, enc, &err), &err);
        uint64_t bb = tc_dtype_block_bytes(blocks->dtype), nb = blocks->nbytes / bb, same = 0;
        for (uint64_t k = 0; k < nb; k++)
            same += memcmp(enc + k * bb, blocks->data + k * bb, (size_t)bb) == 0;
        CHECK_MSG(same == nb, "%s: %llu of %llu blocks of the varied rows differ from ggml's", WRITTEN[i],
                  (unsigned long long)(nb - same), (unsigned long long)nb);
        printf("%-7s written by tc, varied rows: %llu of %llu blocks equal to ggml's\n", WRITTEN[i],
               (unsigned long long)same, (unsigned long long)nb);
        free(enc);
    }
    tc_gguf_close(&g);
    return tu_finish("test_ggml_quants");
}
