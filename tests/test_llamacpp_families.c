/* Every family's GGUF, as tc writes it, run by stock llama.cpp: each
 * transformers reference checkpoint (tests/reference/data) that tc can write
 * as GGUF is written with a small synthetic vocabulary (llama.cpp loads no
 * file without one), and llama.cpp's greedy continuation of BOS must equal
 * tc's own decoder on the same file.  24 tokens run past the windows of the
 * sliding-window cases (16 keys).
 *
 * The Gemma cases are written with llama.cpp's attention scale
 * (1/sqrt(head_dim): llama.cpp does not read query_pre_attn_scalar) and
 * layer pattern, which the reference cases do not use; tc refuses to write
 * them as they are (test_gguf_families).
 *
 * Skipped when node or node-llama-cpp is absent (see tests/llamacpp.h). */
#include "llamacpp.h"

#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/model_write.h"

#define N_GEN 24
#define MAX_CASES 32

/* SentencePiece's byte fallback needs every byte as a token: llama.cpp
 * (and node-llama-cpp, which tokenizes a few strings as it loads a model)
 * fail on a vocabulary without them.  The reference models have 96 tokens,
 * so the files for llama.cpp carry VOCAB: the model's rows, then copies of
 * row 0 (in the embedding and the head alike, so that choosing one of them
 * is choosing token 0). */
#define VOCAB 265

/* Control tokens llama.cpp looks up by text for some families (phi3). */
static const char *const EXTRA[] = {"<|endoftext|>", "<|end|>", "<|assistant|>", "<|system|>", "<|user|>", "</s>"};

/* A GGUF holding only an SPM vocabulary of n = 265 tokens: <unk>, <s>, a
 * plain token, the 256 bytes, phi3's chat tokens and </s>. */
static int write_vocab(const char *path, int n, tc_error *err)
{
    tc_gguf_value *tok = calloc((size_t)n, sizeof *tok), *score = calloc((size_t)n, sizeof *score);
    tc_gguf_value *type = calloc((size_t)n, sizeof *type);
    char (*text)[24] = calloc((size_t)n, sizeof *text);
    int rc = TC_ERR;
    if (!tok || !score || !type || !text) {
        tc_err(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (i == 0)
            snprintf(text[i], sizeof text[i], "<unk>");
        else if (i == 1)
            snprintf(text[i], sizeof text[i], "<s>");
        else if (i == 2)
            snprintf(text[i], sizeof text[i], "t2");
        else if (i < 259)
            snprintf(text[i], sizeof text[i], "<0x%02X>", i - 3);
        else
            snprintf(text[i], sizeof text[i], "%s", EXTRA[i - 259]);
        tok[i].type = TC_GGUF_STRING;
        tok[i].v.s.ptr = text[i];
        tok[i].v.s.len = strlen(text[i]);
        score[i].type = TC_GGUF_F32;
        score[i].v.f = -(double)i;
        type[i].type = TC_GGUF_I32;
        type[i].v.i = i == 0 ? 2 : i == 1 || i >= 259 ? 3 : i == 2 ? 1 : 6; /* unknown, control, normal, byte */
    }
    tc_gguf_writer_kv kv[7];
    memset(kv, 0, sizeof kv);
    kv[0].key = "tokenizer.ggml.model";
    kv[0].value.type = TC_GGUF_STRING;
    kv[0].value.v.s.ptr = "llama";
    kv[0].value.v.s.len = 5;
    const char *arr_keys[3] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    tc_gguf_value *arrs[3] = {tok, score, type};
    tc_gguf_type types[3] = {TC_GGUF_STRING, TC_GGUF_F32, TC_GGUF_I32};
    for (int k = 0; k < 3; k++) {
        kv[1 + k].key = arr_keys[k];
        kv[1 + k].value.type = TC_GGUF_ARRAY;
        kv[1 + k].value.v.arr.type = types[k];
        kv[1 + k].value.v.arr.n = (uint64_t)n;
        kv[1 + k].value.v.arr.items = arrs[k];
    }
    const char *ids[3] = {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id",
                          "tokenizer.ggml.eos_token_id"};
    /* End of generation is one of the extra tokens, whose rows copy row 0
     * and so never win: every run goes the full length. */
    const uint64_t id_values[3] = {0, 1, 259};
    for (int k = 0; k < 3; k++) {
        kv[4 + k].key = ids[k];
        kv[4 + k].value.type = TC_GGUF_U32;
        kv[4 + k].value.v.u = id_values[k];
    }
    rc = tc_gguf_write(path, kv, 7, NULL, 0, 32, err);
done:
    free(tok);
    free(score);
    free(type);
    free(text);
    return rc;
}

/* llama.cpp's gemma graphs: scale 1/sqrt(head_dim), windows on every layer
 * but each pattern-th. */
static void llamacpp_gemma(tc_config *c, int pattern)
{
    c->t.attn_scale = 0.0f;
    for (int l = 0; l < c->n_layers; l++)
        c->t.local[l] = l % pattern < pattern - 1;
}

typedef struct padded {
    tc_model_copy cp;
    int vocab, dim; /* the model's own vocabulary */
} padded;

/* The model's tensors, the embedding and head grown to VOCAB rows. */
static int padded_fill(void *ctx, int layer, int which, float *dst, uint64_t n, tc_error *err)
{
    padded *p = ctx;
    if (layer >= 0 || which == TC_G_OUT_NORM)
        return tc_model_copy_fill(&p->cp, layer, which, dst, n, err);
    uint64_t own = (uint64_t)p->vocab * (uint64_t)p->dim;
    if (tc_model_copy_fill(&p->cp, layer, which, dst, own, err))
        return TC_ERR;
    for (uint64_t r = (uint64_t)p->vocab; r * (uint64_t)p->dim < n; r++)
        memcpy(dst + r * (uint64_t)p->dim, dst, (size_t)p->dim * sizeof *dst);
    return TC_OK;
}

/* Writes reference case `name` as GGUF with the vocabulary of `vocab`;
 * TC_ERR with the writer's refusal in err. */
static int write_case(const char *root, const char *name, const tc_gguf *vocab, const char *out, tc_error *err)
{
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    tc_model m;
    if (tc_model_open(&m, dir, err))
        return TC_ERR;
    padded pd = {.cp = {.model = &m}, .vocab = m.cfg.vocab_size, .dim = m.cfg.dim};
    tc_model_src src = {.cfg = m.cfg, .dtype = TC_F32, .fill = padded_fill, .ctx = &pd,
                        .gguf_vocab = vocab, .name = name};
    src.cfg.vocab_size = VOCAB;
    if (m.cfg.arch == TC_ARCH_GEMMA2)
        llamacpp_gemma(&src.cfg, 2);
    if (m.cfg.arch == TC_ARCH_GEMMA3)
        llamacpp_gemma(&src.cfg, 6);
    int rc = tc_model_write(out, TC_FORMAT_GGUF, &src, err);
    tc_model_close(&m);
    return rc;
}

int main(void)
{
    char pkg[1024], script[1024], tmp[256];
    const char *why = llamacpp_unavailable(pkg, sizeof pkg, script, sizeof script);
    if (why)
        return tu_skip(why);
    if (!tu_tmpdir(tmp, sizeof tmp))
        return tu_skip("no temporary directory");
    const char *src = getenv("TC_SOURCE");
    char root[1024], vpath[512];
    snprintf(root, sizeof root, "%s/tests/reference/data", src && *src ? src : ".");
    static const char *const cases[] = {"llama", "llama_tied", "llama_bias", "llama_linear", "llama3", "qwen2",
                                        "qwen3", "gemma2", "gemma3", "phi3", "phi3_partial", "llama_yarn"};
    const size_t n_cases = sizeof cases / sizeof cases[0];
    tc_error err = {{0}};
    snprintf(vpath, sizeof vpath, "%s/vocab.gguf", tmp);
    CHECK_OK(write_vocab(vpath, VOCAB, &err), &err);
    tc_gguf vocab;
    if (tc_gguf_open(&vocab, vpath, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return tu_finish("test_llamacpp_families");
    }
    char paths[MAX_CASES][600];
    const char *files[MAX_CASES];
    for (size_t i = 0; i < n_cases; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.gguf", tmp, cases[i]);
        files[i] = paths[i];
        CHECK_OK(write_case(root, cases[i], &vocab, paths[i], &err), &err);
    }
    tc_gguf_close(&vocab);
    const int real_vocab = 96; /* the reference models' */
    int32_t ids[MAX_CASES][N_GEN], *outs[MAX_CASES];
    int n_out[MAX_CASES];
    for (size_t i = 0; i < n_cases; i++)
        outs[i] = ids[i];
    CHECK_MSG(llamacpp_greedy(pkg, script, N_GEN, files, n_cases, outs, n_out) == 0, "node did not run every file");
    for (size_t i = 0; i < n_cases; i++) {
        int32_t want[N_GEN];
        if (llamacpp_tc_greedy(paths[i], N_GEN, want) != 0) {
            CHECK_MSG(0, "%s: tc could not decode its own file", cases[i]);
            continue;
        }
        /* llama.cpp stops at an end-of-generation token; tc goes on. */
        /* A padded row is row 0 (in the embedding too): choosing between
         * them is a tie broken by float rounding, and the same choice. */
        int first = -1, n = n_out[i];
        for (int j = 0; j < n && first < 0; j++)
            if ((ids[i][j] < real_vocab ? ids[i][j] : 0) != (want[j] < real_vocab ? want[j] : 0))
                first = j;
        CHECK_MSG(n == N_GEN, "%s: llama.cpp ran %d tokens", cases[i], n);
        CHECK_MSG(first < 0, "%s: llama.cpp and tc part at generated token %d", cases[i], first);
        if (first >= 0 || n != N_GEN) {
            fprintf(stderr, "  tc:       ");
            for (int j = 0; j < N_GEN; j++)
                fprintf(stderr, " %d", want[j]);
            fprintf(stderr, "\n  llama.cpp:");
            for (int j = 0; j < n; j++)
                fprintf(stderr, " %d", ids[i][j]);
            fprintf(stderr, "\n");
        }
        printf("%-14s llama.cpp and tc agree on %d greedy tokens\n", cases[i], first < 0 ? n : first);
    }
    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmp);
    if (tu_failures == 0) /* kept to look at otherwise */
        CHECK(system(rm) == 0);
    else
        fprintf(stderr, "the files are in %s\n", tmp);
    return tu_finish("test_llamacpp_families");
}
