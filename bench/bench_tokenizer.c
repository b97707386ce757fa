/* Encoding speed of each tokenizer family on the project's English texts:
 * MB of UTF-8 input per second on one core, whole file per call.  The
 * baseline, measured in the same run on the same text, is a plain split of
 * the text at white space (the least any tokenizer must do), so the ratio
 * column says how many such passes one encode costs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc/mapfile.h"
#include "tc/tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Counts white-space separated words: the baseline pass over the text. */
static size_t split_words(const unsigned char *s, size_t n)
{
    size_t words = 0;
    int in_word = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r';
        words += !sp && !in_word;
        in_word = !sp;
    }
    return words;
}

static double baseline_mb_per_s(const unsigned char *s, size_t n)
{
    double best = 0;
    volatile size_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        sink += split_words(s, n);
        double dt = now() - t0;
        double r = dt > 0 ? (double)n / 1e6 / dt : 0;
        best = r > best ? r : best;
    }
    (void)sink;
    return best;
}

static const char *vocabs[] = {
    "models/stories260K/tok512.bin",
    "models/stories260K/stories260K.gguf",
    "models/stories260K-hf/tokenizer.json",
    "tokenizers/llama2c/llama2-tokenizer.bin",
    "tokenizers/hf/mistral/tokenizer.json",
    "tokenizers/llamacpp/ggml-vocab-gpt-2.gguf",
    "tokenizers/hf/llama3/tokenizer.json",
    "tokenizers/hf/qwen2/tokenizer.json",
};

static const char *texts[] = {"text/tinystories_valid_1000.txt", "text/gutenberg_heldout.txt",
                              "text/wikitext2_test_raw.txt"};

int main(int argc, char **argv)
{
    int json = argc > 1 && strcmp(argv[1], "--json") == 0;
    const char *assets = getenv("TC_ASSETS");
    if (!assets || !*assets)
        assets = "../shared/assets";
    char path[2048];
    tc_error err;
    if (!json)
        printf("%-42s %-32s %6s %8s %9s %9s %10s\n", "tokenizer (1 thread)", "text", "MB",
               "tokens", "enc MB/s", "dec MB/s", "split/enc");
    else
        printf("[\n");
    int first = 1;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        snprintf(path, sizeof path, "%s/%s", assets, vocabs[v]);
        tc_tokenizer *t;
        double t0 = now();
        if (tc_tokenizer_open(&t, path, &err) != TC_OK) {
            fprintf(stderr, "skipping %s: %s\n", vocabs[v], err.msg);
            continue;
        }
        double load_s = now() - t0;
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            snprintf(path, sizeof path, "%s/%s", assets, texts[k]);
            tc_mapfile m;
            if (tc_mapfile_open(&m, path, &err) != TC_OK) {
                fprintf(stderr, "skipping %s: %s\n", texts[k], err.msg);
                continue;
            }
            int32_t *ids = NULL;
            size_t n = 0;
            t0 = now();
            int rc = tc_tokenizer_encode(t, (const char *)m.data, (size_t)m.size, 0, &ids, &n, &err);
            double enc_s = now() - t0;
            char *back = NULL;
            size_t blen = 0;
            t0 = now();
            if (rc == TC_OK)
                rc = tc_tokenizer_decode(t, ids, n, &back, &blen, &err);
            double dec_s = now() - t0;
            double mb = (double)m.size / 1e6;
            double base = baseline_mb_per_s(m.data, (size_t)m.size);
            if (rc != TC_OK) {
                fprintf(stderr, "%s on %s: %s\n", vocabs[v], texts[k], err.msg);
            } else if (json) {
                printf("%s  {\"tokenizer\": \"%s\", \"text\": \"%s\", \"threads\": 1, "
                       "\"input_mb\": %.3f, \"tokens\": %zu, \"load_s\": %.3f, "
                       "\"encode_mb_per_s\": %.2f, \"decode_mb_per_s\": %.2f, "
                       "\"baseline_split_mb_per_s\": %.1f}",
                       first ? "" : ",\n", vocabs[v], texts[k], mb, n, load_s, mb / enc_s,
                       mb / dec_s, base);
                first = 0;
            } else {
                printf("%-42s %-32s %6.2f %8zu %9.2f %9.1f %9.0fx\n", vocabs[v], texts[k], mb, n,
                       mb / enc_s, mb / dec_s, base * enc_s / mb);
            }
            free(ids);
            free(back);
            tc_mapfile_close(&m);
        }
        if (!json)
            printf("%-42s (load %.3f s, one thread)\n", "", load_s);
        tc_tokenizer_free(t);
    }
    if (json)
        printf("\n]\n");
    return 0;
}
