/* A copy of a GGUF bitnet-b1.58 file (what tc-quantize --format gguf-i2s
 * writes) under llama.cpp's architecture name bitnet, for builds of
 * bitnet.cpp whose llama.cpp fork predates bitnet-b1.58 (its fork's
 * merge-dev branch of October 2024 reads I2_S only in the bitnet graph).
 *
 *   gguf_bitnet_arch IN.gguf OUT.gguf [--silu]
 *
 * general.architecture becomes "bitnet" and every "bitnet-b1.58." key
 * "bitnet."; the tensors are copied as they are.  That graph computes SiLU
 * whatever the file says; --silu drops bitnet.hidden_activation, so that tc
 * (which reads it) computes the same function as the fork: a relu2 model
 * becomes another model, used to compare the two runtimes, not the model's
 * own function.  OUT must not exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tc/gguf.h"

#define FROM "bitnet-b1.58"
#define TO "bitnet"

static int copy(const char *in, const char *out, int silu, tc_error *err)
{
    tc_gguf g;
    if (tc_gguf_open(&g, in, err))
        return TC_ERR;
    int rc = TC_ERR;
    size_t nf = strlen(FROM), k = 0;
    tc_gguf_writer_kv *kv = calloc(g.n_kv + 1, sizeof *kv);
    char (*keys)[256] = calloc(g.n_kv + 1, sizeof *keys);
    tc_out_tensor *t = calloc(g.dir.n_tensors + 1, sizeof *t);
    const tc_gguf_value *arch = tc_gguf_find(&g, "general.architecture");
    if (!kv || !keys || !t) {
        tc_err(err, "%s: out of memory", in);
        goto done;
    }
    if (!arch || arch->type != TC_GGUF_STRING || arch->v.s.len != nf || memcmp(arch->v.s.ptr, FROM, nf) != 0) {
        tc_err(err, "%s: general.architecture is not %s", in, FROM);
        goto done;
    }
    for (uint64_t i = 0; i < g.n_kv; i++) {
        tc_gguf_str s = g.kvs[i].key;
        int ours = s.len > nf && memcmp(s.ptr, FROM ".", nf + 1) == 0;
        if (s.len + 1 > sizeof keys[0]) {
            tc_err(err, "%s: a key of %llu bytes", in, (unsigned long long)s.len);
            goto done;
        }
        if (ours)
            snprintf(keys[k], sizeof keys[k], "%s%.*s", TO, (int)(s.len - nf), s.ptr + nf);
        else
            snprintf(keys[k], sizeof keys[k], "%.*s", (int)s.len, s.ptr);
        if (silu && strcmp(keys[k], TO ".hidden_activation") == 0)
            continue;
        kv[k].key = keys[k];
        kv[k].value = g.kvs[i].value;
        if (strcmp(keys[k], "general.architecture") == 0)
            kv[k].value.v.s = (tc_gguf_str){TO, strlen(TO)};
        k++;
    }
    for (size_t i = 0; i < g.dir.n_tensors; i++) {
        const tc_tensor *s = &g.dir.tensors[i];
        t[i].name = s->name;
        t[i].dtype = s->dtype;
        t[i].n_dims = s->n_dims;
        memcpy(t[i].shape, s->shape, sizeof t[i].shape);
        t[i].data = s->data;
    }
    rc = tc_gguf_write(out, kv, k, t, g.dir.n_tensors, (uint32_t)g.alignment, err);
done:
    free(kv);
    free(keys);
    free(t);
    tc_gguf_close(&g);
    return rc;
}

int main(int argc, char **argv)
{
    int silu = argc == 4 && strcmp(argv[3], "--silu") == 0;
    if (argc != 3 && !silu) {
        fprintf(stderr, "usage: gguf_bitnet_arch IN.gguf OUT.gguf [--silu]\n");
        return 2;
    }
    struct stat st;
    if (stat(argv[2], &st) == 0) {
        fprintf(stderr, "gguf_bitnet_arch: %s exists\n", argv[2]);
        return 2;
    }
    tc_error err = {{0}};
    if (copy(argv[1], argv[2], silu, &err)) {
        fprintf(stderr, "gguf_bitnet_arch: %s\n", err.msg);
        return 1;
    }
    return 0;
}
