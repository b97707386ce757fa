/* Builds the seed corpora of the fuzz harnesses at run time:
 *
 *   fuzz_seeds OUTDIR [ASSETS]
 *
 * writes OUTDIR/<harness>/<name> for every harness: tiny valid files made by
 * the library's own writers (synthetic models in every format and dtype),
 * small handmade edge cases, and, when ASSETS is given and present, the
 * first SEED_PREFIX bytes of each real checkpoint plus the real config and
 * index files whole.  Nothing here is stored in the repository. */
#include <errno.h>

#include "targets.h"
#include "tc/quantize.h"

/* Enough for every real header here (stories260K's GGUF vocabulary ends at
 * about 20 kB) while keeping inputs small enough for fast iterations. */
#define SEED_PREFIX (64 * 1024)

static int g_failed;

static void put(const char *out, const char *harness, const char *name, const void *data, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", out, harness);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", out, harness, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "fuzz_seeds: cannot write %s: %s\n", p, strerror(errno));
        g_failed = 1;
    }
    if (f)
        fclose(f);
}

/* The first max bytes of a file (all of it when max is 0); NULL if absent. */
static uint8_t *slurp(const char *path, size_t max, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t want = cap - len;
        if (max && want > max - len)
            want = max - len;
        size_t k = fread(buf + len, 1, want, f);
        len += k;
        if (k < want || (max && len >= max))
            break;
        uint8_t *b = realloc(buf, cap *= 2);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
    }
    fclose(f);
    *n = len;
    return buf;
}

static void put_file(const char *out, const char *harness, const char *name, const char *path, size_t max)
{
    size_t n;
    uint8_t *b = slurp(path, max, &n);
    if (b)
        put(out, harness, name, b, n);
    free(b);
}

/* config.json, a NUL byte, then an index: the hfdir harness's two-file input. */
static void put_pair(const char *out, const char *name, const char *config, const char *index)
{
    size_t nc, ni;
    uint8_t *c = slurp(config, 0, &nc), *i = slurp(index, 0, &ni);
    uint8_t *b = c && i ? malloc(nc + ni + 1) : NULL;
    if (b) {
        memcpy(b, c, nc);
        b[nc] = 0;
        memcpy(b + nc + 1, i, ni);
        put(out, "hfdir", name, b, nc + ni + 1);
    }
    free(b);
    free(c);
    free(i);
}

static void synthetic(const char *out, const char *scratch)
{
    static const struct { const char *name; tc_dtype dt; int layers, dim, heads, kv, ffn, vocab; } shapes[] = {
        {"f32", TC_F32, 2, 16, 4, 2, 24, 32},
        {"f16", TC_F16, 1, 8, 2, 1, 12, 16},
        {"bf16", TC_BF16, 3, 8, 2, 2, 8, 8},
    };
    char p[600], q[700];
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        tc_synth_spec s = {.cfg = tc_synth_config(shapes[i].layers, shapes[i].dim, shapes[i].heads,
                                                  shapes[i].kv, shapes[i].ffn, shapes[i].vocab),
                           .seed = 11 + i};
        tc_error err = {{0}};
        char name[64];
        snprintf(p, sizeof p, "%s/hf-%s", scratch, shapes[i].name);
        if (tc_synth_write(p, TC_FORMAT_HF, shapes[i].dt, &s, &err) == TC_OK) {
            snprintf(q, sizeof q, "%s/model.safetensors", p);
            snprintf(name, sizeof name, "synth-%s", shapes[i].name);
            put_file(out, "safetensors", name, q, 0);
            snprintf(q, sizeof q, "%s/config.json", p);
            put_file(out, "hfdir", name, q, 0);
        } else {
            fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
            g_failed = 1;
        }
        snprintf(p, sizeof p, "%s/synth-%s.gguf", scratch, shapes[i].name);
        if (tc_synth_write(p, TC_FORMAT_GGUF, shapes[i].dt, &s, &err) == TC_OK) {
            snprintf(name, sizeof name, "synth-%s", shapes[i].name);
            put_file(out, "gguf", name, p, 0);
        } else {
            fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
            g_failed = 1;
        }
        /* The packed ternary file of the same model, in each tile layout. */
        static const tc_tpack_layout layouts[] = {TC_TPACK_I2, TC_TPACK_TL1, TC_TPACK_TL2};
        tc_model sm;
        if (tc_synth_model(&sm, &s, &err) == TC_OK) {
            for (int l = 0; l < 3; l++) {
                tc_quantize_opts qo = {.format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .n_threads = 1};
                qo.q.method = TC_TMETHOD_ABSMEAN;
                qo.q.layout = layouts[l];
                qo.q.group.kind = l == 2 ? TC_TGROUP_COLS : TC_TGROUP_ROW;
                qo.q.group.cols = l == 2 ? 32 : 0;
                tc_quantize_report rep = {0};
                snprintf(p, sizeof p, "%s/synth.tcq", scratch);
                snprintf(name, sizeof name, "synth-%s-%s", shapes[i].name, tc_tpack_layout_name(layouts[l]));
                if (tc_quantize_model(&sm, p, &qo, &rep, &err) == TC_OK)
                    put_file(out, "tmodel", name, p, 0);
                else
                    fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
                tc_quantize_report_free(&rep);
            }
            tc_model_close(&sm);
        }
        if (shapes[i].dt != TC_F32)
            continue;
        snprintf(p, sizeof p, "%s/synth.bin", scratch);
        s.cfg.tied_embeddings = 0; /* a separate classifier: the negative-vocab header */
        if (tc_synth_write(p, TC_FORMAT_LLAMA2C, TC_F32, &s, &err) == TC_OK)
            put_file(out, "llama2c", "synth-untied", p, 0);
        s.cfg.tied_embeddings = 1;
        if (tc_synth_write(p, TC_FORMAT_LLAMA2C, TC_F32, &s, &err) == TC_OK)
            put_file(out, "llama2c", "synth-tied", p, 0);
    }
    /* The fixture's own three shards and index, as the hfdir harness sees them. */
    snprintf(p, sizeof p, "%s/config.json", fz_s.sharded);
    snprintf(q, sizeof q, "%s/model.safetensors.index.json", fz_s.sharded);
    put_pair(out, "synth-sharded", p, q);
    DIR *d = opendir(fz_s.sharded);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
            char name[300];
            snprintf(name, sizeof name, "synth-%s", e->d_name);
            snprintf(p, sizeof p, "%s/%s", fz_s.sharded, e->d_name);
            put_file(out, "safetensors", name, p, 0);
        }
    }
    if (d)
        closedir(d);
}

/* llama2.c versions 1 and 2 as export.py writes them, for a model of dim 8,
 * hidden 16, 1 layer, 2/1 heads, vocab 4, seq 4: a 256-byte header (uint32
 * magic 0x616b3432, int32 version, the 7 fields, the shared-classifier byte,
 * for version 2 an int32 group size at byte 37, zeros), the norms in fp32,
 * then the matrices in fp32 (version 1) or as int8 values followed by one
 * fp32 scale per group (version 2).  Returns the size written into b. */
static void l2c_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void l2c_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    l2c_le32(p, u);
}

static size_t l2c_versioned(uint8_t b[4096], int version, int shared, int32_t group_size)
{
    static const int32_t fields[7] = {8, 16, 1, 2, 1, 4, 4};
    /* tok_embeddings, wq, wk, wv, wo, w1, w2, w3, then output when not shared. */
    static const size_t matrices[9] = {32, 64, 32, 32, 64, 128, 128, 128, 32};
    memset(b, 0, 4096);
    l2c_le32(b, 0x616b3432u);
    l2c_le32(b + 4, (uint32_t)version);
    for (int i = 0; i < 7; i++)
        l2c_le32(b + 8 + 4 * i, (uint32_t)fields[i]);
    b[36] = (uint8_t)shared;
    if (version == 2)
        l2c_le32(b + 37, (uint32_t)group_size);
    size_t n = 256;
    for (int i = 0; i < 3 * 8; i++, n += 4) /* attention norm, ffn norm, final norm */
        l2c_f32(b + n, 1.0f + 0.01f * (float)i);
    for (int m = 0; m < (shared ? 8 : 9); m++) {
        for (size_t i = 0; i < matrices[m]; i++) {
            if (version == 1) {
                l2c_f32(b + n, (float)((int)((i * 37 + (size_t)m) % 17) - 8) / 16.0f);
                n += 4;
            } else {
                b[n++] = (uint8_t)((i * 37 + (size_t)m) % 255);
            }
        }
        for (size_t g = 0; version == 2 && g < matrices[m] / (size_t)group_size; g++, n += 4)
            l2c_f32(b + n, 0.01f * (float)(g + 1));
    }
    return n;
}

static void handmade(const char *out)
{
    /* safetensors: the smallest files of each kind of header. */
    static const char *const st[] = {
        "{}",
        "{\"__metadata__\":{\"format\":\"pt\"}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
        ("{\"a\":{\"dtype\":\"F16\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
         "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4]}}"),
    };
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        uint8_t b[256] = {0};
        size_t n = strlen(st[i]), padded = (n + 7) / 8 * 8;
        memset(b + 8, ' ', padded);
        memcpy(b + 8, st[i], n);
        for (int k = 0; k < 8; k++)
            b[k] = (uint8_t)((uint64_t)padded >> (8 * k));
        char name[32];
        snprintf(name, sizeof name, "hand-%zu", i);
        put(out, "safetensors", name, b, 8 + padded + 8);
    }
    /* GGUF v2 and v3 with no tensors and no keys. */
    static const uint8_t gguf3[24] = {'G', 'G', 'U', 'F', 3};
    static const uint8_t gguf2[24] = {'G', 'G', 'U', 'F', 2};
    put(out, "gguf", "hand-empty-v3", gguf3, sizeof gguf3);
    put(out, "gguf", "hand-empty-v2", gguf2, sizeof gguf2);
    /* llama2.c: a header alone (dim 8, hidden 8, 1 layer, 2 heads, 2 kv, vocab -4, seq 4). */
    static const int32_t l2c[7] = {8, 8, 1, 2, 2, -4, 4};
    put(out, "llama2c", "hand-header", l2c, sizeof l2c);
    /* llama2.c versions 1 and 2: whole small files, and a version-2 header alone. */
    static uint8_t l2cv[4096];
    put(out, "llama2c", "hand-v1-tied", l2cv, l2c_versioned(l2cv, 1, 1, 0));
    put(out, "llama2c", "hand-v1-untied", l2cv, l2c_versioned(l2cv, 1, 0, 0));
    put(out, "llama2c", "hand-v2-tied-g8", l2cv, l2c_versioned(l2cv, 2, 1, 8));
    put(out, "llama2c", "hand-v2-untied-g4", l2cv, l2c_versioned(l2cv, 2, 0, 4));
    put(out, "llama2c", "hand-v2-header", l2cv, 256);
    /* HF configs that stop early. */
    static const char *const cfg[] = {
        "{}",
        "{\"model_type\":\"llama\"}",
        "{\"model_type\":\"qwen2\",\"num_hidden_layers\":2,\"drop_attn_list\":[0],\"drop_mlp_list\":[1]}",
        /* The fixture's shapes (2 layers, dim 16, 4 heads over 2, ffn 24, vocab 32) in other families. */
        "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"tie_word_embeddings\":true,"
        "\"rope_parameters\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
        "\"original_max_position_embeddings\":16,\"rope_theta\":500000}}",
        "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"tie_word_embeddings\":true,"
        "\"hidden_act\":\"gelu\",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,"
        "\"original_max_position_embeddings\":8,\"beta_fast\":16}}",
        "{\"model_type\":\"qwen2\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"tie_word_embeddings\":true,"
        "\"use_sliding_window\":true,\"sliding_window\":4,\"max_window_layers\":1}",
        "{\"model_type\":\"gemma2\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"head_dim\":4,"
        "\"sliding_window\":4,\"query_pre_attn_scalar\":8,\"attn_logit_softcapping\":5.0}",
        "{\"model_type\":\"gemma3_text\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"head_dim\":4,"
        "\"layer_types\":[\"sliding_attention\",\"full_attention\"],\"rope_parameters\":{\"full_attention\":"
        "{\"rope_type\":\"linear\",\"factor\":8,\"rope_theta\":1000000},\"sliding_attention\":"
        "{\"rope_type\":\"default\",\"rope_theta\":10000}}}",
        "{\"model_type\":\"phi3\",\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"num_key_value_heads\":2,\"intermediate_size\":24,\"vocab_size\":32,\"partial_rotary_factor\":0.5,"
        "\"original_max_position_embeddings\":8,\"max_position_embeddings\":32,\"rope_parameters\":"
        "{\"rope_type\":\"longrope\",\"short_factor\":[1],\"long_factor\":[2]}}",
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "hand-%zu", i);
        put(out, "hfdir", name, cfg[i], strlen(cfg[i]));
    }
}

/* A small analysis result, written as the report writer writes it. */
static void report_seed(const char *out)
{
    tc_analysis a;
    memset(&a, 0, sizeof a);
    a.n_layers = 3;
    a.n_heads = 2;
    a.layers = calloc(3, sizeof *a.layers);
    if (!a.layers)
        return;
    for (int l = 0; l < 3; l++) {
        for (int m = 0; m < TC_N_MODULES; m++) {
            tc_module_stats *st = &a.layers[l].mod[m];
            st->present = !(l == 1 && m == TC_MOD_MLP);
            st->cos_mean = 0.9 + 0.03 * l;
            st->cos_std = 0.01;
            st->cos_min = 0.7;
            st->measured = l != 2;
            st->dnll = 0.1 / (l + 1);
            st->kl = 0.05 / (l + 1);
        }
        if (l != 2) {
            a.layers[l].heads = calloc(2, sizeof *a.layers[l].heads);
            for (int h = 0; a.layers[l].heads && h < 2; h++) {
                a.layers[l].heads[h].entropy = 1.5 + h;
                a.layers[l].heads[h].top10_mass = 0.4;
            }
        }
    }
    a.nll = 1.5;
    a.ppl = 4.4816890703380645;
    a.n_tokens = 512;
    a.n_predicted = 510;
    cJSON *model = cJSON_CreateObject(), *cal = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "format", "gguf");
    cJSON_AddNumberToObject(cal, "n_samples", 2);
    tc_error err = {{0}};
    cJSON *j = tc_report_to_json(&a, model, cal, &err);
    char *text = j ? cJSON_Print(j) : NULL;
    if (text)
        put(out, "report", "synth", text, strlen(text));
    else
        fprintf(stderr, "fuzz_seeds: report: %s\n", err.msg);
    free(text);
    cJSON_Delete(j);
    cJSON_Delete(model);
    cJSON_Delete(cal);
    tc_analysis_free(&a);
}

static void tokenizer_seeds(const char *out)
{
    /* tokenizer.bin: max_token_length, then score, length, bytes per token. */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "<0x41>", ("\xe2\x96\x81" "a"), "b", "ab"};
    uint8_t b[256];
    size_t n = 0;
    int32_t max_len = 8;
    memcpy(b, &max_len, 4);
    n = 4;
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        float score = -(float)i;
        int32_t len = (int32_t)strlen(toks[i]);
        memcpy(b + n, &score, 4);
        memcpy(b + n + 4, &len, 4);
        memcpy(b + n + 8, toks[i], (size_t)len);
        n += 8 + (size_t)len;
    }
    put(out, "tokenizer_bin", "hand-7", b, n);
    static const char json[] =
        "{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,"
        "\"</s>\":2,\"a\":3,\"b\":4,\"ab\":5},\"merges\":[\"a b\"]},"
        "\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
        "\"decoder\":{\"type\":\"ByteLevel\"}}";
    put(out, "tokenizer_json", "hand-bpe", json, sizeof json - 1);
    /* Calibration: JSON Lines documents, token lines, plain text. */
    static const char jsonl[] = "{\"text\":\"Once upon a time.\"}\n\n{\"text\":\"\\u00e9t\\u00e9\",\"id\":2}\n"
                                "{\"text\":\"\"}\n";
    put(out, "calib", "hand-jsonl", jsonl, sizeof jsonl - 1);
    static const char tokens[] = "[1, 2, 3, 4]\n[5]\n[511, 0, 7]\n";
    put(out, "calib", "hand-tokens", tokens, sizeof tokens - 1);
    static const char text[] = "\xef\xbb\xbf" "First paragraph,\r\nline two.\n \t\nSecond.\n";
    put(out, "calib", "hand-text", text, sizeof text - 1);
    static const uint8_t gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    put(out, "calib", "hand-gzip-empty", gz, sizeof gz);
}

/* Every ggml block type tc reads, from the committed vectors of ggml's own
 * quantizer: one GGUF whose tensors are the first row of each type's blocks,
 * and the same file with the first Q8_0 and Q4_0 block scales made NaN, so the
 * mutations start from valid blocks of every type and from a refused one. */
static void ggml_type_seeds(const char *out, const char *vectors)
{
    tc_gguf g;
    tc_error err = {{0}};
    if (tc_gguf_open(&g, vectors, &err) != TC_OK) {
        fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
        g_failed = 1;
        return;
    }
    tc_out_tensor ts[32];
    uint8_t *bufs[32];
    size_t n = 0;
    for (size_t i = 0; i < g.dir.n_tensors && n < 32; i++) {
        const tc_tensor *t = &g.dir.tensors[i];
        const char *dot = strrchr(t->name, '.');
        uint64_t row;
        if (!dot || strcmp(dot, ".blocks") != 0 || t->n_dims != 2 ||
            tc_dtype_span(t->dtype, (uint64_t)t->shape[1], &row, &err) != TC_OK || row > t->nbytes)
            continue;
        bufs[n] = malloc(row);
        if (!bufs[n])
            break;
        memcpy(bufs[n], t->data, row);
        ts[n] = (tc_out_tensor){.name = t->name, .dtype = t->dtype, .n_dims = 1,
                                .shape = {t->shape[1]}, .data = bufs[n]};
        n++;
    }
    char p[300];
    fz_path(p, sizeof p, fz_s.dir, "ggml-types.gguf");
    for (int nan = 0; nan < 2; nan++) {
        for (size_t i = 0; nan && i < n; i++)
            if (strcmp(ts[i].name, "q8_0.blocks") == 0 || strcmp(ts[i].name, "q4_0.blocks") == 0)
                bufs[i][0] = 0x00, bufs[i][1] = 0x7e; /* the leading f16 scale d */
        if (tc_gguf_write(p, NULL, 0, ts, n, 0, &err) == TC_OK) {
            put_file(out, "gguf", nan ? "ggml-types-nan-scale" : "ggml-types", p, 0);
        } else {
            fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
            g_failed = 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    if (n < 12) {
        fprintf(stderr, "fuzz_seeds: %s holds %zu block types, expected 12\n", vectors, n);
        g_failed = 1;
    }
    tc_gguf_close(&g);
}

static void real(const char *out, const char *assets, const char *scratch)
{
    static const struct { const char *harness, *name, *rel; } files[] = {
        {"safetensors", "stories260K", "models/stories260K-hf/model.safetensors"},
        {"safetensors", "stories260K-bf16", "models/stories260K-hf-bf16/model.safetensors"},
        {"safetensors", "stories260K-f16-shard1", "models/stories260K-hf-f16-sharded/model-00001-of-00002.safetensors"},
        {"safetensors", "babyllama105", "models/babyllama105-hf/model.safetensors"},
        {"gguf", "stories260K", "models/stories260K/stories260K.gguf"},
        {"llama2c", "stories260K", "models/stories260K/stories260K.bin"},
        {"llama2c", "llama2xs", "models/llama2xs/llama2xs.bin"},
        {"llama2c", "babyllama105", "models/babyllama105/babyllama105.bin"},
        {"hfdir", "stories260K", "models/stories260K-hf/config.json"},
        {"hfdir", "babyllama105", "models/babyllama105-hf/config.json"},
        {"hfdir", "deep16", "models/deep16-hf/config.json"},
        {"tokenizer_bin", "tok512", "models/stories260K/tok512.bin"},
        {"tokenizer_bin", "tok105", "models/babyllama105/tok105.bin"},
        {"tokenizer_json", "stories260K", "models/stories260K-hf/tokenizer.json"},
        {"tokenizer_json", "babyllama105", "models/babyllama105-hf/tokenizer.json"},
        {"calib", "tinystories", "text/tinystories_valid_1000.txt"},
        {"calib", "gutenberg", "text/gutenberg_heldout.txt"},
    };
    char p[1024], q[1024];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", assets, files[i].rel);
        /* Calibration texts are long: a few paragraphs are as good a seed. */
        put_file(out, files[i].harness, files[i].name, p,
                 strcmp(files[i].harness, "calib") == 0 ? 4096 : SEED_PREFIX);
    }
    snprintf(p, sizeof p, "%s/models/stories260K-hf-f16-sharded/config.json", assets);
    snprintf(q, sizeof q, "%s/models/stories260K-hf-f16-sharded/model.safetensors.index.json", assets);
    put_pair(out, "stories260K-f16-sharded", p, q);
    /* Packed files carrying each kind of embedded tokenizer. */
    static const struct { const char *name, *model, *tok; } packed[] = {
        {"stories260K-tok-gguf", "models/stories260K/stories260K.gguf", NULL},
        {"stories260K-tok-hf", "models/stories260K-hf", NULL},
        {"stories260K-tok-llama2c", "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin"},
    };
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++) {
        tc_error err = {{0}};
        tc_model m;
        char tok[1024];
        snprintf(p, sizeof p, "%s/%s", assets, packed[i].model);
        snprintf(tok, sizeof tok, "%s/%s", assets, packed[i].tok ? packed[i].tok : "");
        snprintf(q, sizeof q, "%s/real.tcq", scratch);
        if (tc_model_open(&m, p, &err) != TC_OK) {
            fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
            continue;
        }
        tc_quantize_opts qo = {.format = TC_QFORMAT_PACKED, .float_dtype = TC_F16, .n_threads = 1};
        qo.q.method = TC_TMETHOD_ABSMEAN;
        qo.q.layout = TC_TPACK_TL2;
        qo.q.group.kind = TC_TGROUP_ROW;
        qo.tokenizer = packed[i].tok ? tok : NULL;
        tc_quantize_report rep = {0};
        if (tc_quantize_model(&m, q, &qo, &rep, &err) == TC_OK)
            put_file(out, "tmodel", packed[i].name, q, 0);
        else
            fprintf(stderr, "fuzz_seeds: %s\n", err.msg);
        tc_quantize_report_free(&rep);
        tc_model_close(&m);
        remove(q);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fuzz_seeds OUTDIR [ASSETS]\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    fz_setup();
    char scratch[300];
    fz_path(scratch, sizeof scratch, fz_s.dir, "seeds");
    mkdir(scratch, 0755);
    synthetic(argv[1], scratch);
    handmade(argv[1]);
    tokenizer_seeds(argv[1]);
    report_seed(argv[1]);
    ggml_type_seeds(argv[1], TC_GGML_VECTORS);
    struct stat st;
    if (argc == 3 && stat(argv[2], &st) == 0 && S_ISDIR(st.st_mode))
        real(argv[1], argv[2], scratch);
    else
        fprintf(stderr, "fuzz_seeds: no assets, seeds are synthetic only\n");
    return g_failed;
}
