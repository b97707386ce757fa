/* Writes a model's fp32 logits for fixed token sequences, so another
 * implementation (Hugging Face transformers, compare_logits.py) can be
 * checked against tc's forward pass.
 *
 *   tc-dump-logits MODEL TOKENS.jsonl OUT.f32
 *
 * TOKENS.jsonl: one JSON array of token ids per line.  OUT.f32: the logits of
 * every position of every sequence in order, [n_tokens][vocab] little-endian
 * float32. */
#include <stdio.h>
#include <stdlib.h>

#include "tc/calib.h"
#include "tc/forward.h"
#include "tc/outfile.h"

typedef struct sink {
    tc_outfile *out;
} sink;

static int on_logits(void *ctx, const float *logits, size_t tok0, size_t n, int vocab, tc_error *err)
{
    sink *s = ctx;
    (void)tok0;
    return tc_outfile_write(s->out, logits, n * (size_t)vocab * sizeof *logits, err);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tc-dump-logits MODEL TOKENS.jsonl OUT.f32\n");
        return 2;
    }
    tc_error err = {{0}};
    tc_model m;
    tc_calib_set set = {0};
    tc_outfile out = {0};
    int rc = tc_model_open(&m, argv[1], &err);
    if (rc == TC_OK)
        rc = tc_calib_read_tokens(argv[2], m.cfg.vocab_size, (size_t)m.cfg.max_seq_len, &set, &err);
    if (rc == TC_OK)
        rc = tc_outfile_open(&out, argv[3], &err);
    if (rc == TC_OK) {
        sink s = {&out};
        tc_observer obs = {.ctx = &s, .logits = on_logits};
        tc_batch b = {.tokens = set.tokens, .offsets = set.offsets, .n_seqs = set.n_seqs};
        tc_forward_opts o = {.n_threads = 1, .observers = &obs, .n_observers = 1};
        rc = tc_forward(&m, &b, &o, &err);
        if (rc == TC_OK)
            rc = tc_outfile_commit(&out, &err);
        else
            tc_outfile_abort(&out);
    }
    tc_calib_set_free(&set);
    if (m.layers)
        tc_model_close(&m);
    if (rc != TC_OK) {
        fprintf(stderr, "tc-dump-logits: %s\n", err.msg);
        return 1;
    }
    return 0;
}
