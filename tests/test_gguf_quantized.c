/* A GGUF whose matrices mix ggml's block types, as llama-quantize's _M / _S
 * mixes do: tc opens it, computes with the dequantized weights, and tc-prune
 * writes every kept tensor in its input type, byte for byte.
 *
 * The file is built here: a synthetic llama (dim 512, so that every type's
 * rows are whole blocks) whose matrices hold rows of ggml's own blocks from
 * tests/ggml/ggml_types.gguf (valid encodings, made by ggml), one type per
 * role. */
#include "testutil.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/prune.h"
#include "tc/synth.h"

static const char *const ROLE_TYPE[][2] = {
    {"attn_q", "q4_K"}, {"attn_k", "q5_0"}, {"attn_v", "q6_K"}, {"attn_output", "q4_0"},
    {"ffn_gate", "q2_K"}, {"ffn_up", "q3_K"}, {"ffn_down", "iq4_xs"},
};

typedef struct tiled {
    const tc_tensor *blocks; /* 3 rows of 512 weights */
} tiled;

/* Rows of the vector file's blocks, repeated. */
static int tile_fill(void *ctx, const tc_out_tensor *t, void *dst, tc_error *err)
{
    const tiled *x = ctx;
    uint64_t row = x->blocks->nbytes / 3, nbytes;
    if (tc_out_tensor_nbytes(t, &nbytes, err))
        return TC_ERR;
    for (uint64_t r = 0; r * row < nbytes; r++)
        memcpy((uint8_t *)dst + r * row, x->blocks->data + (r % 3) * row, (size_t)row);
    return TC_OK;
}

static int write_mixed(const char *plain, const char *out, const tc_gguf *vec, tc_error *err)
{
    tc_gguf g;
    if (tc_gguf_open(&g, plain, err))
        return TC_ERR;
    size_t n = g.dir.n_tensors;
    tc_out_tensor *t = calloc(n, sizeof *t);
    tiled *ctx = calloc(n, sizeof *ctx);
    tc_gguf_writer_kv *kv = calloc((size_t)g.n_kv, sizeof *kv);
    char (*keys)[128] = calloc((size_t)g.n_kv, sizeof *keys);
    int rc = TC_OK;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)g.kvs[i].key.len, g.kvs[i].key.ptr);
        kv[i].key = keys[i];
        kv[i].value = g.kvs[i].value;
    }
    for (size_t i = 0; i < n && rc == TC_OK; i++) {
        const tc_tensor *s = &g.dir.tensors[i];
        t[i].name = s->name;
        t[i].dtype = s->dtype;
        t[i].n_dims = s->n_dims;
        memcpy(t[i].shape, s->shape, sizeof t[i].shape);
        t[i].data = s->data;
        for (size_t k = 0; k < sizeof ROLE_TYPE / sizeof ROLE_TYPE[0]; k++) {
            char suffix[64];
            snprintf(suffix, sizeof suffix, ".%s.weight", ROLE_TYPE[k][0]);
            if (!strstr(s->name, suffix))
                continue;
            char vname[64];
            snprintf(vname, sizeof vname, "%s.blocks", ROLE_TYPE[k][1]);
            ctx[i].blocks = tc_tensordir_find(&vec->dir, vname);
            if (!ctx[i].blocks) {
                rc = tc_err(err, "%s is not in the vector file", vname);
                break;
            }
            t[i].dtype = ctx[i].blocks->dtype;
            t[i].data = NULL;
            t[i].fill = tile_fill;
            t[i].ctx = &ctx[i];
        }
    }
    if (rc == TC_OK)
        rc = tc_gguf_write(out, kv, (size_t)g.n_kv, t, n, 32, err);
    free(t);
    free(ctx);
    free(kv);
    free(keys);
    tc_gguf_close(&g);
    return rc;
}

int main(void)
{
    const char *src = getenv("TC_SOURCE");
    char dir[256], vpath[1024], plain[512], mixed[512], pruned[512];
    snprintf(vpath, sizeof vpath, "%s/tests/ggml/ggml_types.gguf", src && *src ? src : ".");
    if (!tu_tmpdir(dir, sizeof dir))
        return tu_skip("no scratch directory");
    snprintf(plain, sizeof plain, "%s/plain.gguf", dir);
    snprintf(mixed, sizeof mixed, "%s/mixed.gguf", dir);
    snprintf(pruned, sizeof pruned, "%s/pruned.gguf", dir);
    tc_error err = {{0}};
    tc_gguf vec;
    if (tc_gguf_open(&vec, vpath, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return tu_finish("test_gguf_quantized");
    }
    tc_synth_spec s = {.cfg = tc_synth_config(3, 512, 4, 2, 512, 64), .seed = 5};
    CHECK_OK(tc_synth_write(plain, TC_FORMAT_GGUF, TC_F32, &s, &err), &err);
    CHECK_OK(write_mixed(plain, mixed, &vec, &err), &err);

    /* It opens, and computes with the dequantized weights (finite logits). */
    tc_model m;
    if (tc_model_open(&m, mixed, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        tc_gguf_close(&vec);
        return tu_finish("test_gguf_quantized");
    }
    CHECK(m.layers[0].w[TC_WQ]->dtype == TC_Q4_K && m.layers[2].w[TC_W_DOWN]->dtype == TC_IQ4_XS);
    tc_decoder *d = NULL;
    float lg[64];
    CHECK_OK(tc_decoder_new(&d, &m, NULL, &err), &err);
    int finite = 1;
    for (int i = 0; d && i < 8; i++) {
        CHECK_OK(tc_decoder_step(d, i + 1, lg, &err), &err);
        for (int v = 0; v < 64; v++)
            finite &= isfinite(lg[v]);
    }
    CHECK(finite);
    tc_decoder_free(d);

    /* Pruned: every kept tensor is the input's, in its type, byte for byte. */
    tc_prune_plan p;
    CHECK_OK(tc_prune_plan_init(&p, 3, &err), &err);
    p.drop[TC_MOD_BLOCK][1] = 1;
    CHECK_OK(tc_prune_write(&m, &p, pruned, TC_FORMAT_GGUF, &err), &err);
    tc_prune_plan_free(&p);
    tc_model q;
    if (tc_model_open(&q, pruned, &err) == TC_OK) {
        CHECK(q.cfg.n_layers == 2);
        static const int keep[2] = {0, 2};
        int same = 1, n = 0;
        for (int l = 0; l < 2; l++)
            for (int r = 0; r < TC_N_ROLES; r++) {
                const tc_tensor *a = m.layers[keep[l]].w[r], *b = q.layers[l].w[r];
                if (!a && !b)
                    continue;
                n++;
                int ok = a && b && a->dtype == b->dtype && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
                CHECK_MSG(ok, "layer %d %s changed in the pruned file", l, tc_role_name((tc_role)r));
                same &= ok;
            }
        printf("pruned mixed-type GGUF: %d tensors kept byte for byte%s\n", n, same ? "" : " (NOT)");
        tc_model_close(&q);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    tc_model_close(&m);
    tc_gguf_close(&vec);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    CHECK(system(rm) == 0);
    return tu_finish("test_gguf_quantized");
}
