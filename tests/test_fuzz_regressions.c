/* Inputs the fuzzers once crashed on (or that broke a parser's promises),
 * replayed through the same entry points as the harnesses (tests/fuzz/
 * targets.h) in the ordinary build, so ASan/UBSan in CI see them every run.
 *
 * Adding a finding: minimise it (fuzz_X -minimize_crash=1 -runs=100000
 * crash-...), paste its bytes below as a C array (xxd -i prints one), name
 * what it broke, and add a row to `cases`.  Inputs that are easier to
 * describe than to list may be generated instead (see `generated`). */
#include "testutil.h"

#include "fuzz/targets.h"

typedef int (*fz_target)(const uint8_t *data, size_t size);

/* tokenizer.bin whose tokens are all empty strings: the decoder offset a NULL
 * string arena (UBSan: applying zero offset to null pointer) in
 * tc_tokenizer_decode.  Fixed by allocating the arena on the first append. */
static const uint8_t tok_bin_empty_pieces[] = {
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x05, 0x00, 0x00, 0x00, 0x3c, 0x75, 0x7e,
    0x6b, 0x3e, 0x00, 0x00, 0x80, 0xbf, 0x03, 0x00, 0x00, 0x00, 0x3c, 0x73, 0x3e, 0x00, 0x00, 0x00,
    0xc0, 0x04, 0x00, 0x00, 0x00, 0x3c, 0x2f, 0x73, 0x3e, 0x00, 0x00, 0x40, 0xc0, 0x06, 0x00, 0x00,
    0x00, 0x3c, 0x24, 0x78, 0x74, 0x31, 0x3e, 0x00, 0x00, 0x80, 0xc0, 0x04, 0x00, 0x00, 0x00, 0xe2,
    0x96, 0x81, 0x61, 0x00, 0x00, 0xa0, 0xc0, 0x01, 0x00, 0x00, 0x00, 0x62, 0x00, 0x00, 0xc0, 0xc0,
    0x02, 0x00, 0x00, 0x00, 0x61, 0x62,
};

static const struct {
    const char *name;
    fz_target target;
    const uint8_t *data;
    size_t size;
} cases[] = {
    {"tokenizer.bin with empty pieces", fz_tokenizer_bin, tok_bin_empty_pieces, sizeof tok_bin_empty_pieces},
};

/* Every target once with degenerate inputs: empty, one byte, a run of 0xff. */
static void generated(void)
{
    static const fz_target all[] = {
        fz_safetensors, fz_gguf, fz_llama2c, fz_hfdir, fz_tokenizer_bin, fz_tokenizer_json, fz_calib, fz_report,
        fz_tmodel,
    };
    uint8_t ff[64];
    memset(ff, 0xff, sizeof ff);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK(all[i]((const uint8_t *)"", 0) == 0);
        CHECK(all[i]((const uint8_t *)"{", 1) == 0);
        CHECK(all[i](ff, sizeof ff) == 0);
    }
}

/* Valid files through every success path (open, --info, layers, tokenizer,
 * decoding), so the targets themselves are known to work on good input. */
static void valid(void)
{
    static const struct { const char *file; tc_format fmt; fz_target target; } files[] = {
        {"v.gguf", TC_FORMAT_GGUF, fz_gguf},
        {"v.bin", TC_FORMAT_LLAMA2C, fz_llama2c},
        {"v-hf/model.safetensors", TC_FORMAT_HF, fz_safetensors},
        {"v-hf/config.json", TC_FORMAT_HF, fz_hfdir},
    };
    fz_setup();
    tc_synth_spec s = fz_spec();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[400], target[400];
        snprintf(path, sizeof path, "%s/%s", fz_s.dir, files[i].file);
        snprintf(target, sizeof target, "%s/%s", fz_s.dir, files[i].fmt == TC_FORMAT_HF ? "v-hf" : files[i].file);
        tc_error err = {{0}};
        CHECK_OK(tc_synth_write(target, files[i].fmt, files[i].fmt == TC_FORMAT_LLAMA2C ? TC_F32 : TC_F16, &s, &err),
                 &err);
        size_t n = 0;
        uint8_t *b = tu_read_file(path, &n);
        CHECK(b != NULL);
        if (b)
            CHECK(files[i].target(b, n) == 0);
        free(b);
    }
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fprintf(stderr, "replaying: %s\n", cases[i].name);
        CHECK(cases[i].target(cases[i].data, cases[i].size) == 0);
    }
    generated();
    valid();
    return tu_finish("fuzz_regressions");
}
