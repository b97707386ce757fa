/* Fuzz targets: one function per parser, each feeding one input through the
 * library exactly as a tool would (open, use a little, close).
 *
 * Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, one target each)
 * and by tests/test_fuzz_regressions.c, which replays saved inputs through
 * the same functions in an ordinary build.  Header-only so that both build
 * without extra CMake sources.
 *
 * Parsers take paths, so each input is written to a file in a private
 * directory created on first use (under $TMPDIR, else /dev/shm when it
 * exists, else /tmp) and removed at exit.  A target aborts (which both
 * libFuzzer and the regression test report) when the library breaks one of
 * its promises without crashing: a failure without a message, or a message
 * that does not name the file. */
#ifndef TC_FUZZ_TARGETS_H
#define TC_FUZZ_TARGETS_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc/calib.h"
#include "tc/forward.h"
#include "tc/gguf.h"
#include "tc/hfdir.h"
#include "tc/info.h"
#include "tc/llama2c.h"
#include "tc/model.h"
#include "tc/model_tokenizer.h"
#include "tc/report.h"
#include "tc/safetensors.h"
#include "tc/synth.h"
#include "tc/tmodel.h"
#include "tc/tokenizer.h"
#include "tc/trun.h"
#include "tc/vocab.h"

/* Test-side state only: the scratch directory of this process. */
static struct fz_scratch {
    int ready;
    char dir[200];
    char single[240];  /* an HF directory with model.safetensors */
    char sharded[240]; /* an HF directory with the same tensors in four shards */
} fz_s;

static inline void fz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz target: %s: %s\n", what, detail);
    abort();
}

static inline void fz_path(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* rm -r of a scratch directory: it holds files and directories of files. */
static inline void fz_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
                continue;
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                fz_rmdir(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static inline void fz_cleanup(void)
{
    if (!fz_s.ready)
        return;
    fz_rmdir(fz_s.dir);
}

/* The tiny model behind the HF fixtures: 2 layers, dim 16, GQA, vocab 32. */
static inline tc_synth_spec fz_spec(void)
{
    tc_synth_spec s = {.cfg = tc_synth_config(2, 16, 4, 2, 24, 32), .seed = 7};
    return s;
}

/* Four shards (a greedy cut at a third of the bytes) written from the single-file directory's tensors. */
static inline void fz_make_sharded(void)
{
    tc_error err = {{0}};
    tc_hfdir h;
    if (tc_hfdir_open(&h, fz_s.single, &err))
        fz_die("fixture", err.msg);
    size_t n = h.dir.n_tensors;
    tc_out_tensor *t = calloc(n, sizeof *t);
    if (!t)
        fz_die("fixture", "out of memory");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const tc_tensor *x = &h.dir.tensors[i];
        t[i].name = x->name;
        t[i].dtype = x->dtype;
        t[i].n_dims = x->n_dims;
        memcpy(t[i].shape, x->shape, sizeof t[i].shape);
        t[i].data = x->data;
        total += x->nbytes;
    }
    if (tc_hfdir_write(fz_s.sharded, h.config, t, n, total / 3 + 1, &err))
        fz_die("fixture", err.msg);
    free(t);
    tc_hfdir_close(&h);
}

static inline void fz_setup(void)
{
    if (fz_s.ready)
        return;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                   ? "/dev/shm" : "/tmp";
    snprintf(fz_s.dir, sizeof fz_s.dir, "%s/tc-fuzz.XXXXXX", base);
    if (!mkdtemp(fz_s.dir))
        fz_die("fixture", "cannot create a scratch directory");
    fz_path(fz_s.single, sizeof fz_s.single, fz_s.dir, "single");
    fz_path(fz_s.sharded, sizeof fz_s.sharded, fz_s.dir, "sharded");
    fz_s.ready = 1;
    atexit(fz_cleanup);
    tc_synth_spec s = fz_spec();
    tc_error err = {{0}};
    if (tc_synth_write(fz_s.single, TC_FORMAT_HF, TC_F32, &s, &err))
        fz_die("fixture", err.msg);
    fz_make_sharded();
}

static inline void fz_write(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        fz_die("cannot write", path);
    while (size > 0) {
        ssize_t k = write(fd, data, size);
        if (k <= 0)
            fz_die("cannot write", path);
        data += k;
        size -= (size_t)k;
    }
    close(fd);
}

/* A failure must come with one sentence that names the file (or directory). */
static inline void fz_check_error(const tc_error *err, const char *name)
{
    if (!err->msg[0])
        fz_die("failure without a message", name);
    if (!strstr(err->msg, name))
        fz_die("message does not name the file", err->msg);
}

/* Two decoding steps (the first and last token ids) of a small model: the
 * forward pass over whatever config and weights the file holds. */
static inline void fz_decode_steps(const tc_model *m)
{
    if (tc_model_n_params(m) > (1u << 20) || m->cfg.vocab_size <= 0)
        return;
    tc_decoder_opts o = {.max_len = 4, .n_threads = 1};
    tc_decoder *d = NULL;
    tc_error err = {{0}};
    if (tc_decoder_new(&d, m, &o, &err) != TC_OK)
        return;
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof *logits);
    if (logits && tc_decoder_step(d, 0, logits, &err) == TC_OK)
        tc_decoder_step(d, m->cfg.vocab_size - 1, logits, &err);
    free(logits);
    tc_decoder_free(d);
}

/* What every successfully opened model is asked: --info, one layer, its own
 * tokenizer, two decoding steps. */
static inline void fz_use_model(const tc_model *m)
{
    char *text = tc_model_info_text(m);
    cJSON *json = tc_model_info_json(m);
    free(text);
    cJSON_Delete(json);
    tc_error err = {{0}};
    if (m->cfg.n_layers > 0) {
        tc_layer_f32 w;
        if (tc_model_load_layer(m, 0, &w, &err) == TC_OK)
            tc_layer_f32_free(&w);
    }
    if (m->cfg.dim > 0 && m->cfg.dim <= (1 << 20) && m->cfg.vocab_size > 0) {
        float *row = malloc((size_t)m->cfg.dim * sizeof *row);
        if (row) {
            tc_model_embed(m, m->cfg.vocab_size - 1, row, &err);
            free(row);
        }
    }
    tc_tokenizer *t = NULL;
    if (tc_model_tokenizer(m, NULL, &t, &err) == TC_OK)
        tc_tokenizer_free(t);
    fz_decode_steps(m);
}

static inline void fz_model(const char *path)
{
    tc_model m;
    tc_error err = {{0}};
    if (tc_model_open(&m, path, &err) == TC_OK) {
        fz_use_model(&m);
        tc_model_close(&m);
    } else {
        fz_check_error(&err, fz_s.dir);
    }
}

/* Converts tensors to fp32 (hostile bytes through every dtype decoder), but
 * only small ones: the point is the decoders, not the memory. */
static inline void fz_decode(const tc_tensordir *d)
{
    for (size_t i = 0; i < d->n_tensors; i++) {
        const tc_tensor *t = &d->tensors[i];
        if (t->n_elements == 0 || t->n_elements > (1u << 16))
            continue;
        float *f;
        tc_error err = {{0}};
        if (tc_tensor_load_f32(t, &f, &err) == TC_OK)
            free(f);
    }
}

/* What every successfully loaded tokenizer is asked: encode texts that reach
 * byte fallback, special tokens and long words, decode the ids, stream the
 * pieces, and decode ids at and past the ends of the vocabulary. */
static inline void fz_use_tokenizer(const tc_tokenizer *t)
{
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "<s>hello</s> <unk>\n\n\t  x",
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff\xfe broken \xe2\x82",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "",
    };
    tc_error err = {{0}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        unsigned flags = i & 1 ? TC_TOK_BOS | TC_TOK_EOS | TC_TOK_PARSE_SPECIAL : tc_tokenizer_default_flags(t);
        if (tc_tokenizer_encode(t, texts[i], strlen(texts[i]), flags, &ids, &n, &err) != TC_OK)
            continue;
        char *text = NULL;
        size_t len = 0;
        if (tc_tokenizer_decode(t, ids, n, &text, &len, &err) == TC_OK)
            free(text);
        int32_t prev = -1;
        for (size_t k = 0; k < n; k++) {
            const char *piece;
            size_t plen;
            tc_tokenizer_piece(t, prev, ids[k], &piece, &plen, &err);
            prev = ids[k];
        }
        free(ids);
    }
    int32_t v = tc_tokenizer_vocab_size(t);
    int32_t odd[] = {0, v - 1, v, -1, tc_tokenizer_bos(t), tc_tokenizer_eos(t), tc_tokenizer_unk(t)};
    char *text = NULL;
    size_t len = 0;
    if (tc_tokenizer_decode(t, odd, sizeof odd / sizeof odd[0], &text, &len, &err) == TC_OK)
        free(text);
    for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
        const char *tt;
        size_t tl;
        if (tc_tokenizer_token_text(t, odd[k], &tt, &tl) == TC_OK)
            tc_tokenizer_find(t, tt, tl);
    }
}

static inline int fz_safetensors(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "in.safetensors");
    fz_write(path, data, size);
    tc_tensordir dir;
    tc_tensordir_init(&dir);
    tc_safetensors info;
    memset(&info, 0, sizeof info);
    tc_error err = {{0}};
    if (tc_safetensors_add(&dir, path, &info, &err) == TC_OK) {
        fz_decode(&dir);
        tc_safetensors_free(&info);
    } else {
        fz_check_error(&err, "in.safetensors");
    }
    tc_tensordir_free(&dir);
    return 0;
}

static inline int fz_gguf(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "in.gguf");
    fz_write(path, data, size);
    tc_gguf g;
    tc_error err = {{0}};
    if (tc_gguf_open(&g, path, &err) == TC_OK) {
        char *s = NULL;
        uint32_t u;
        float f;
        int b;
        if (tc_gguf_get_str(&g, "general.architecture", &s, &err) == TC_OK)
            free(s);
        tc_gguf_get_u32(&g, "general.alignment", &u, &err);
        tc_gguf_get_f32(&g, "llama.rope.freq_base", &f, &err);
        tc_gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &b, &err);
        fz_decode(&g.dir);
        tc_tokenizer *t = NULL;
        if (tc_tokenizer_from_gguf(&t, &g, &err) == TC_OK) {
            fz_use_tokenizer(t);
            tc_tokenizer_free(t);
        }
        tc_gguf_close(&g);
        fz_model(path);
    } else {
        fz_check_error(&err, "in.gguf");
    }
    return 0;
}

/* The packed ternary file: open (every header field and CRC checked), unpack
 * every tensor, and run two tokens through the LUT kernels. */
static inline int fz_tmodel(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "in.tcq");
    fz_write(path, data, size);
    tc_tmodel m;
    tc_error err = {{0}};
    if (tc_tmodel_open(&m, path, &err) != TC_OK) {
        fz_check_error(&err, "in.tcq");
        return 0;
    }
    for (size_t i = 0; i < m.n_tensors; i++) {
        const tc_tmodel_tensor *t = &m.tensors[i];
        uint64_t n = (uint64_t)t->shape[0] * (uint64_t)(t->shape[1] > 0 ? t->shape[1] : 1);
        if (n > ((uint64_t)1 << 24))
            continue; /* a tiny file cannot hold it: the reader checked sizes */
        float *f = malloc((size_t)n * sizeof *f);
        if (f && tc_tmodel_tensor_f32(t, f, &err) != TC_OK)
            fz_check_error(&err, "in.tcq");
        free(f);
    }
    /* The embedded tokenizer goes through its own loader. */
    tc_tokenizer *tok = NULL;
    if (tc_tmodel_tokenizer(&m, &tok, &err) != TC_OK)
        fz_check_error(&err, "in.tcq");
    tc_tokenizer_free(tok);
    tc_trun *r = NULL;
    tc_trun_opts o = {TC_TRUN_LUT, TC_KPATH_AUTO, 1, 8, 0};
    if (m.cfg.vocab_size > 2 && (uint64_t)m.cfg.dim * (uint64_t)m.cfg.vocab_size < ((uint64_t)1 << 24) &&
        tc_trun_new(&r, &m, &o, &err) == TC_OK) {
        tc_trun_step(r, 1, NULL, &err);
        tc_trun_step(r, 2, NULL, &err);
        tc_trun_free(r);
    }
    tc_tmodel_close(&m);
    return 0;
}

static inline int fz_llama2c(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "in.bin");
    fz_write(path, data, size);
    tc_llama2c c;
    tc_error err = {{0}};
    if (tc_llama2c_open(&c, path, &err) == TC_OK)
        tc_llama2c_close(&c);
    else
        fz_check_error(&err, "in.bin");
    fz_model(path);
    return 0;
}

/* The input is config.json, or config.json, a NUL byte and
 * model.safetensors.index.json; with an index the directory holds the four
 * shards model-0000{1,2,3,4}-of-00004.safetensors of the tiny model, without
 * one it holds its model.safetensors. */
static inline int fz_hfdir(const uint8_t *data, size_t size)
{
    fz_setup();
    const uint8_t *nul = memchr(data, 0, size);
    const char *dir = nul ? fz_s.sharded : fz_s.single;
    char path[300];
    fz_path(path, sizeof path, dir, "config.json");
    fz_write(path, data, nul ? (size_t)(nul - data) : size);
    fz_path(path, sizeof path, dir, "model.safetensors.index.json");
    if (nul)
        fz_write(path, nul + 1, size - (size_t)(nul - data) - 1);
    tc_hfdir h;
    tc_error err = {{0}};
    if (tc_hfdir_open(&h, dir, &err) == TC_OK)
        tc_hfdir_close(&h);
    else
        fz_check_error(&err, dir);
    fz_model(dir);
    return 0;
}

/* A llama2.c tokenizer.bin, read to its end (vocab_size 0) and as the 512
 * tokens a model of that vocabulary would ask for. */
static inline int fz_tokenizer_bin(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "tokenizer.bin");
    fz_write(path, data, size);
    static const int sizes[] = {0, 512};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        tc_tokenizer *t = NULL;
        tc_error err = {{0}};
        if (tc_tokenizer_from_llama2c(&t, path, sizes[i], &err) == TC_OK) {
            fz_use_tokenizer(t);
            tc_tokenizer_free(t);
        } else {
            fz_check_error(&err, "tokenizer.bin");
        }
        /* and as the vocabulary a GGUF output carries */
        tc_vocab v;
        if (tc_vocab_from_llama2c(&v, path, sizes[i], &err) == TC_OK)
            tc_vocab_free(&v);
        else
            fz_check_error(&err, "tokenizer.bin");
    }
    return 0;
}

static inline int fz_tokenizer_json(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "tokenizer.json");
    fz_write(path, data, size);
    tc_tokenizer *t = NULL;
    tc_error err = {{0}};
    if (tc_tokenizer_from_hf_json(&t, path, &err) == TC_OK) {
        fz_use_tokenizer(t);
        tc_tokenizer_free(t);
    } else {
        fz_check_error(&err, "tokenizer.json");
    }
    /* and as the vocabulary a GGUF output carries */
    tc_vocab v;
    if (tc_vocab_from_hf(&v, path, 0, &err) == TC_OK)
        tc_vocab_free(&v);
    else
        fz_check_error(&err, "tokenizer.json");
    return 0;
}

/* A splitting "tokenizer" for sampling: one id per byte. */
static inline int fz_bytes_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n,
                                  tc_error *err)
{
    (void)ctx;
    *ids = malloc((len ? len : 1) * sizeof **ids);
    if (!*ids)
        return tc_err(err, "out of memory");
    for (size_t i = 0; i < len; i++)
        (*ids)[i] = (uint8_t)text[i];
    *n = len;
    return TC_OK;
}

/* Calibration files: the input as JSON Lines documents (then sampled into
 * windows), as plain text, and as token lines. */
static inline int fz_calib(const uint8_t *data, size_t size)
{
    fz_setup();
    char path[300];
    fz_path(path, sizeof path, fz_s.dir, "calib.jsonl");
    fz_write(path, data, size);
    static const tc_calib_format fmts[] = {TC_CALIB_JSONL, TC_CALIB_TEXT};
    for (size_t i = 0; i < 2; i++) {
        tc_calib_docs d;
        memset(&d, 0, sizeof d);
        tc_error err = {{0}};
        if (tc_calib_docs_read(&d, path, fmts[i], i ? NULL : "text", &err) == TC_OK) {
            tc_calib_opts o = {.n_samples = 4, .seq_len = 8, .seed = 1, .bos_id = 1};
            tc_calib_set set;
            memset(&set, 0, sizeof set);
            if (tc_calib_sample(&d, fz_bytes_encode, NULL, &o, &set, &err) == TC_OK)
                tc_calib_set_free(&set);
        } else {
            fz_check_error(&err, "calib.jsonl");
        }
        tc_calib_docs_free(&d);
    }
    tc_calib_set set;
    memset(&set, 0, sizeof set);
    tc_error err = {{0}};
    if (tc_calib_read_tokens(path, 512, 64, &set, &err) == TC_OK) {
        tc_calib_set_pick(&set, 2, 3, &err);
        tc_calib_set_free(&set);
    } else {
        fz_check_error(&err, "calib.jsonl");
    }
    return 0;
}

/* An analysis report (JSON), then the table, the HTML page and the
 * calibration record made from it. */
static inline int fz_report(const uint8_t *data, size_t size)
{
    tc_analysis a;
    cJSON *model = NULL, *cal = NULL;
    tc_error err = {{0}};
    if (tc_report_parse((const char *)data, size, "report.json", &a, &model, &cal, &err) == TC_OK) {
        char *out = NULL;
        if (tc_report_table(&a, &out, &err) == TC_OK)
            free(out);
        out = NULL;
        if (tc_report_html(&a, model, cal, &out, &err) == TC_OK)
            free(out);
        /* The calibration record tc-prune --eval reads from it. */
        tc_calib_windows w;
        if (tc_calib_windows_from_json(cal, "report.json", &w, &err) == TC_OK) {
            char *line = tc_calib_windows_describe(&w);
            free(line);
            tc_calib_windows_free(&w);
        } else {
            fz_check_error(&err, "report.json");
        }
        tc_analysis_free(&a);
        cJSON_Delete(model);
        cJSON_Delete(cal);
    } else {
        fz_check_error(&err, "report.json");
    }
    return 0;
}

#endif
