/* The packed ternary model file: round trip of every layout and grouping,
 * and refusal of corrupt or hostile variants. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"
#include "tc/model_tokenizer.h"
#include "tc/synth.h"
#include "tc/tmodel.h"
#include "tc/tokenizer.h"
#include "tc/trun.h"

/* A seeded model held in memory: ternary matrices, F32 norms, F16 embedding. */
typedef struct fixture {
    tc_tmodel m;
    uint8_t **bufs;
    int8_t **codes;
    float **scales;
    float **offsets; /* affine fixtures (version 3) */
} fixture;

static uint64_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Configs with traits other than Llama's, which the header must carry
 * exactly; every trait that adds tensors (biases, q/k norms, post-norms, an
 * ungated MLP) gets them, so the file is a complete model of its config. */
static void set_traits(tc_config *c, int variant)
{
    tc_traits *t = &c->t;
    c->norm_eps = 1.2345678e-6f;
    c->max_seq_len = 777;
    c->bos_id = 3;
    c->eos_id = 79;
    c->rope_layout = TC_ROPE_ADJACENT;
    if (variant == 0) {
        c->arch = TC_ARCH_GEMMA2;
        t->norm = TC_NORM_RMS_1P;
        t->act = TC_ACT_GELU_TANH;
        t->attn_scale = 0.123456789f;
        t->attn_softcap = 50.0f;
        t->final_softcap = 30.0f;
        t->embed_scale = 8.0f;
        t->window = 7;
        t->local[1] = 1;
        t->qk_norm = 1;
        t->post_norms = 1;
        t->rope[0].kind = TC_ROPE_LONGROPE;
        t->rope[0].factor = 3.0;
        t->rope[0].orig_max_pos = 64;
        t->rope[0].max_pos = 192;
        t->rope[0].attn_factor = 1.1180339887498949;
        for (int i = 0; i < t->rope[0].rot_dims / 2; i++) {
            t->rope[0].short_factor[i] = 1.0f + 0.1f * (float)i;
            t->rope[0].long_factor[i] = 2.0f + 0.37f * (float)i;
        }
        t->rope[1] = tc_rope_default(10000.0, 12);
    } else if (variant == 1) {
        c->arch = TC_ARCH_QWEN2;
        c->qkv_bias = 1;
        t->act = TC_ACT_RELU2;
        t->ungated = 1;
        t->o_bias = 1;
        t->mlp_bias = 1;
        t->window = 3;
        t->local[0] = 1;
        t->rope[0].kind = TC_ROPE_YARN;
        t->rope[0].factor = 4.0;
        t->rope[0].max_pos = 4096;
        t->rope[0].orig_max_pos = 1024;
        t->rope[0].attn_factor = 1.2;
        t->rope[0].beta_fast = 32.0;
        t->rope[0].beta_slow = 1.0;
        t->rope[0].truncate = 1;
        t->rope[1] = tc_rope_default(123456.0, 8);
        t->rope[1].kind = TC_ROPE_DYNAMIC;
        t->rope[1].factor = 2.5;
        t->rope[1].max_pos = 2048;
        t->rope[1].orig_max_pos = 2048;
        t->rope[1].attn_factor = 1.0;
        t->diff_attn = 1; /* a header trait like the rest (the runner reads it) */
    } else {
        c->arch = TC_ARCH_PHI3;
        t->act = TC_ACT_GELU;
        t->mlp_bias = 1;
        t->rope[0].kind = TC_ROPE_LLAMA3;
        t->rope[0].theta = 500000.0;
        t->rope[0].rot_dims = 8;
        t->rope[0].factor = 8.0;
        t->rope[0].max_pos = 8192;
        t->rope[0].orig_max_pos = 8192;
        t->rope[0].attn_factor = 1.0;
        t->rope[0].low_freq_factor = 1.0;
        t->rope[0].high_freq_factor = 4.0;
        t->rope[1] = tc_rope_default(10000.0, 16);
        t->rope[1].kind = TC_ROPE_LINEAR;
        t->rope[1].factor = 1.5;
        t->rope[1].max_pos = 512;
        t->rope[1].orig_max_pos = 512;
        t->rope[1].attn_factor = 1.0;
    }
}

static int build2(fixture *f, tc_tpack_layout layout, const tc_tgroup *g, int tied, int variant, int affine,
                  tc_error *err)
{
    memset(f, 0, sizeof *f);
    tc_config c = tc_synth_config(2, 64, 4, 2, 96, 80);
    c.tied_embeddings = tied;
    if (!tied)
        set_traits(&c, variant);
    f->m.cfg = c;
    f->m.quant.method = affine ? TC_TMETHOD_AFFINE_CALIBRATED : TC_TMETHOD_OPTIMAL;
    f->m.quant.act_order = affine;
    f->m.quant.refit = 2 * affine;
    f->m.quant.layout = layout;
    f->m.quant.group = *g;
    size_t cap = (size_t)c.n_layers * TC_N_ROLES + 3;
    f->m.tensors = calloc(cap, sizeof *f->m.tensors);
    f->bufs = calloc(cap, sizeof *f->bufs);
    f->codes = calloc(cap, sizeof *f->codes);
    f->scales = calloc(cap, sizeof *f->scales);
    f->offsets = calloc(cap, sizeof *f->offsets);
    uint64_t seed = 42;
    for (int l = -1; l < c.n_layers; l++) {
        int nr = l < 0 ? (tied ? 2 : 3) : TC_N_ROLES;
        for (int k = 0; k < nr; k++) {
            if (l >= 0 && !tc_role_needed(&c, (tc_role)k))
                continue;
            size_t i = f->m.n_tensors++;
            tc_tmodel_tensor *t = &f->m.tensors[i];
            t->layer = l;
            t->role = k;
            t->n_dims = tc_tmodel_expected_shape(&c, l, t->role, t->shape);
            uint64_t n = t->n_dims == 2 ? (uint64_t)(t->shape[0] * t->shape[1]) : (uint64_t)t->shape[0];
            if (t->n_dims == 2 && l >= 0) {
                t->ternary = 1;
                if (tc_tpack_plan_make_params(layout, t->shape[0], t->shape[1], g,
                                              affine ? TC_TPARAM_AFFINE_F16 : TC_TPARAM_SCALE_F32, &t->plan, err))
                    return TC_ERR;
                f->codes[i] = malloc(n);
                f->scales[i] = malloc((size_t)t->plan.n_scales * sizeof(float));
                f->offsets[i] = calloc((size_t)t->plan.n_scales, sizeof(float));
                for (uint64_t e = 0; e < n; e++)
                    f->codes[i][e] = (int8_t)((int)(rng(&seed) % 3) - 1);
                for (int64_t s = 0; s < t->plan.n_scales; s++) {
                    f->scales[i][s] = 0.01f + (float)(rng(&seed) % 1000) * 1e-4f;
                    if (affine) { /* f16 values: what the file stores */
                        f->offsets[i][s] = ((float)(rng(&seed) % 1000) - 500.0f) * 1e-5f;
                        tc_ternary_affine_round(&f->scales[i][s], &f->offsets[i][s]);
                    }
                }
                f->bufs[i] = malloc(t->plan.total_bytes);
                if (tc_tpack_pack_affine(&t->plan, f->codes[i], f->scales[i], affine ? f->offsets[i] : NULL,
                                         f->bufs[i], err))
                    return TC_ERR;
                t->nbytes = t->plan.total_bytes;
            } else {
                t->dtype = t->n_dims == 2 ? TC_F16 : TC_F32;
                float *v = malloc(n * sizeof *v);
                for (uint64_t e = 0; e < n; e++)
                    v[e] = (float)((int)(rng(&seed) % 2001) - 1000) / 512.0f;
                if (tc_dtype_span(t->dtype, n, &t->nbytes, err))
                    return TC_ERR;
                f->bufs[i] = malloc(t->nbytes);
                if (tc_convert_from_f32(t->dtype, v, n, f->bufs[i], err))
                    return TC_ERR;
                free(v);
            }
            t->data = f->bufs[i];
        }
    }
    return TC_OK;
}

static int build(fixture *f, tc_tpack_layout layout, const tc_tgroup *g, int tied, int variant, tc_error *err)
{
    return build2(f, layout, g, tied, variant, 0, err);
}

/* Every field of the config, the traits bit for bit. */
static int same_config(const tc_config *a, const tc_config *b)
{
    return a->arch == b->arch && a->n_layers == b->n_layers && a->dim == b->dim && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim && a->ffn_dim == b->ffn_dim &&
           a->vocab_size == b->vocab_size && a->max_seq_len == b->max_seq_len && a->norm_eps == b->norm_eps &&
           a->rope_layout == b->rope_layout && a->tied_embeddings == b->tied_embeddings &&
           a->qkv_bias == b->qkv_bias && a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
           memcmp(&a->t, &b->t, sizeof a->t) == 0;
}

static void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->m.n_tensors; i++) {
        free(f->bufs[i]);
        free(f->codes[i]);
        free(f->scales[i]);
        free(f->offsets[i]);
    }
    free(f->bufs);
    free(f->codes);
    free(f->scales);
    free(f->offsets);
    free(f->m.tensors);
}

/* Half the tensors come from the fill callback, to test both paths. */
static int fill_from_fixture(void *ctx, size_t i, uint8_t *dst, tc_error *err)
{
    (void)err;
    const fixture *f = ctx;
    memcpy(dst, f->bufs[i], f->m.tensors[i].nbytes);
    return TC_OK;
}

static void check_round_trip(fixture *f, const char *path)
{
    tc_error err = {{0}};
    tc_tmodel r;
    CHECK_OK(tc_tmodel_open(&r, path, &err), &err);
    CHECK(r.n_tensors == f->m.n_tensors);
    CHECK_MSG(same_config(&r.cfg, &f->m.cfg), "the config read back differs from the one written (%s)",
              tc_arch_name(f->m.cfg.arch));
    int affine = f->m.quant.method == TC_TMETHOD_AFFINE_CALIBRATED;
    CHECK(r.version == (affine ? TC_TMODEL_VERSION : TC_TMODEL_VERSION_PLAIN) && r.tok.kind == f->m.tok.kind &&
          r.tok.n_files == f->m.tok.n_files);
    for (int i = 0; i < r.tok.n_files && i < f->m.tok.n_files; i++)
        CHECK(r.tok.files[i].nbytes == f->m.tok.files[i].nbytes && r.tok.files[i].offset % TC_TMODEL_ALIGN == 0 &&
              memcmp(r.tok.files[i].data, f->m.tok.files[i].data, (size_t)r.tok.files[i].nbytes) == 0);
    CHECK(r.quant.layout == f->m.quant.layout && r.quant.group.kind == f->m.quant.group.kind &&
          r.quant.group.cols == f->m.quant.group.cols && r.quant.method == f->m.quant.method &&
          r.quant.act_order == f->m.quant.act_order && r.quant.refit == f->m.quant.refit);
    for (size_t i = 0; i < f->m.n_tensors && i < r.n_tensors; i++) {
        const tc_tmodel_tensor *a = &f->m.tensors[i], *b = tc_tmodel_find(&r, a->layer, a->role);
        CHECK(b != NULL);
        if (!b)
            continue;
        CHECK(b->offset % TC_TMODEL_ALIGN == 0);
        CHECK(b->nbytes == a->nbytes && memcmp(b->data, f->bufs[i], a->nbytes) == 0);
        CHECK(b->crc32 == a->crc32);
        if (a->ternary) {
            uint64_t n = (uint64_t)(a->shape[0] * a->shape[1]);
            int8_t *codes = malloc(n);
            float *scales = malloc((size_t)a->plan.n_scales * sizeof(float));
            float *offsets = malloc((size_t)a->plan.n_scales * sizeof(float));
            CHECK(b->plan.params == a->plan.params && b->plan.total_bytes == a->plan.total_bytes);
            CHECK_OK(tc_tmodel_tensor_unpack_affine(b, codes, scales, offsets, &err), &err);
            CHECK(memcmp(codes, f->codes[i], n) == 0);
            CHECK(memcmp(scales, f->scales[i], (size_t)a->plan.n_scales * sizeof(float)) == 0);
            CHECK(memcmp(offsets, f->offsets[i], (size_t)a->plan.n_scales * sizeof(float)) == 0);
            float *w = malloc(n * sizeof *w);
            CHECK_OK(tc_tmodel_tensor_f32(b, w, &err), &err);
            int64_t K = a->shape[1], gi = tc_ternary_scale_index(&a->plan.group, K, 1, 1);
            CHECK(w[K + 1] == f->codes[i][K + 1] * f->scales[i][gi] + f->offsets[i][gi]);
            free(w);
            free(codes);
            free(scales);
            free(offsets);
        }
    }
    tc_tmodel_size sz;
    tc_tmodel_size_of(&r, &sz);
    int mats = f->m.cfg.t.ungated ? 2 : 3;
    CHECK(sz.ternary_params == 2ull * (64 * 64 * 2 + 32 * 64 * 2 + 96 * 64 * (uint64_t)mats));
    tc_tmodel_close(&r);
}

/* ---- Corrupt variants -------------------------------------------------- */

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob slurp(const char *path)
{
    blob b;
    b.p = tu_read_file(path, &b.n);
    return b;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static uint64_t header_len(const blob *b)
{
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | b->p[16 + i];
    return h;
}

static uint64_t align64(uint64_t x)
{
    return (x + 63) / 64 * 64;
}

/* Rebuilds the file around a new header text, keeping the data section. */
static void write_with_header(const char *path, const blob *b, const char *text)
{
    uint64_t old_data = align64(24 + header_len(b)), len = strlen(text);
    uint64_t new_data = align64(24 + len);
    size_t n = (size_t)(new_data + (b->n - old_data));
    uint8_t *p = calloc(1, n);
    memcpy(p, b->p, 16);
    for (int i = 0; i < 8; i++)
        p[16 + i] = (uint8_t)(len >> (8 * i));
    memcpy(p + 24, text, len);
    memcpy(p + new_data, b->p + old_data, b->n - old_data);
    spit(path, p, n);
    free(p);
}

static cJSON *header_json(const blob *b)
{
    return cJSON_ParseWithLength((const char *)b->p + 24, (size_t)header_len(b));
}

static void expect_refused(const char *path, const char *what, const char *needle)
{
    tc_error err = {{0}};
    tc_tmodel r;
    int rc = tc_tmodel_open(&r, path, &err);
    CHECK_MSG(rc == TC_ERR, "%s was accepted", what);
    if (rc == TC_OK) {
        tc_tmodel_close(&r);
        return;
    }
    CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
    if (needle)
        CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message lacks '%s': %s", what, needle, err.msg);
}

/* Edits one tensor entry (by index) or the whole header, writes the variant. */
typedef void (*edit_fn)(cJSON *root);

static void variant(const char *dir, const blob *b, const char *what, edit_fn edit, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.tcq", dir);
    cJSON *root = header_json(b);
    edit(root);
    char *text = cJSON_PrintUnformatted(root);
    write_with_header(path, b, text);
    free(text);
    cJSON_Delete(root);
    expect_refused(path, what, needle);
}

static cJSON *tensor_at(cJSON *root, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "tensors"), i);
}

static void set_num(cJSON *o, const char *k, double v)
{
    cJSON_ReplaceItemInObjectCaseSensitive(o, k, cJSON_CreateNumber(v));
}

static void set_str(cJSON *o, const char *k, const char *v)
{
    cJSON_ReplaceItemInObjectCaseSensitive(o, k, cJSON_CreateString(v));
}

/* Tensor 0 is the embedding, 1 the final norm, 2 blk.0.attn_norm, 3 blk.0.wq. */
static void e_layout(cJSON *r) { set_str(tensor_at(r, 3), "layout", "tl9"); }
static void e_offset(cJSON *r) { set_num(tensor_at(r, 3), "offset", 1099511627776.0); }
static void e_size(cJSON *r) { set_num(tensor_at(r, 3), "size", 1099511627776.0); }
static void e_unaligned(cJSON *r) { set_num(tensor_at(r, 3), "offset", 65); }
static void e_overlap(cJSON *r)
{
    /* Two F32 vectors of the same size: the second on top of the first. */
    double off = cJSON_GetObjectItem(tensor_at(r, 1), "offset")->valuedouble;
    set_num(tensor_at(r, 2), "offset", off);
}
static void e_shape(cJSON *r)
{
    cJSON *s = cJSON_GetObjectItem(tensor_at(r, 3), "shape");
    cJSON_ReplaceItemInArray(s, 0, cJSON_CreateNumber(1ll << 40));
}
static void e_group(cJSON *r) { cJSON_ReplaceItemInObject(tensor_at(r, 3), "group", cJSON_CreateNumber(7)); }
static void e_version(cJSON *r) { set_num(r, "version", 3); }
/* The embedded tokenizer's entry (the fixture carries one). */
static cJSON *tok_file(cJSON *r, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tokenizer"), "files"), i);
}
static void e_tok_kind(cJSON *r) { set_str(cJSON_GetObjectItem(r, "tokenizer"), "kind", "sentencepiece"); }
static void e_tok_name(cJSON *r) { set_str(tok_file(r, 0), "name", "vocab.json"); }
static void e_tok_overlap(cJSON *r)
{
    set_num(tok_file(r, 0), "offset", cJSON_GetObjectItem(tensor_at(r, 3), "offset")->valuedouble);
}
static void e_tok_past(cJSON *r) { set_num(tok_file(r, 1), "size", 1e9); }
static void e_tok_files(cJSON *r) { cJSON_AddItemToArray(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "tokenizer"), "files"), cJSON_Duplicate(tok_file(r, 0), 1)); }
static void e_tok_type(cJSON *r) { cJSON_ReplaceItemInObject(r, "tokenizer", cJSON_CreateString("tokenizer.json")); }
static void e_role(cJSON *r) { set_str(tensor_at(r, 3), "role", "wz"); }
static void e_name(cJSON *r) { set_str(tensor_at(r, 3), "name", "blk.1.wq"); }
static void e_dup(cJSON *r)
{
    cJSON *t = tensor_at(r, 4);
    set_str(t, "role", "wq");
    set_str(t, "name", "blk.0.wq");
}
static void e_missing(cJSON *r) { cJSON_DeleteItemFromArray(cJSON_GetObjectItem(r, "tensors"), 3); }
static void e_layers(cJSON *r) { set_num(cJSON_GetObjectItem(r, "config"), "n_layers", 1e9); }
static void e_crcfmt(cJSON *r) { set_str(tensor_at(r, 3), "crc32", "xyz"); }
static void e_count(cJSON *r)
{
    cJSON *a = cJSON_GetObjectItem(r, "tensors");
    for (int i = 0; i < 40; i++)
        cJSON_AddItemToArray(a, cJSON_Duplicate(tensor_at(r, 3), 1));
}

static void corrupt_tests(const char *dir, const char *good)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.tcq", dir);
    blob b = slurp(good);
    CHECK(b.n > 0);
    if (!b.n)
        return;
    uint8_t *p = malloc(b.n);

    /* A flipped bit in the embedded tokenizer (the last bytes of the file),
     * then in the last tensor's. */
    memcpy(p, b.p, b.n);
    p[b.n - 1] ^= 0x10;
    spit(path, p, b.n);
    expect_refused(path, "flipped tokenizer bit", "tokenizer_config.json fails its CRC");
    {
        cJSON *h = header_json(&b);
        cJSON *last = tensor_at(h, cJSON_GetArraySize(cJSON_GetObjectItem(h, "tensors")) - 1);
        uint64_t at = align64(24 + header_len(&b)) + (uint64_t)cJSON_GetObjectItem(last, "offset")->valuedouble;
        memcpy(p, b.p, b.n);
        p[at] ^= 0x10;
        spit(path, p, b.n);
        expect_refused(path, "flipped data bit", "CRC");
        cJSON_Delete(h);
    }

    memcpy(p, b.p, b.n);
    p[0] = 'X';
    spit(path, p, b.n);
    expect_refused(path, "bad magic", "magic");

    memcpy(p, b.p, b.n);
    p[8] = 9;
    spit(path, p, b.n);
    expect_refused(path, "preamble version", "version");

    memcpy(p, b.p, b.n);
    p[23] = 0x40; /* header length near 2^62 */
    spit(path, p, b.n);
    expect_refused(path, "absurd header length", NULL);

    /* Truncated everywhere in the preamble and header, then in the data. */
    uint64_t data_off = align64(24 + header_len(&b));
    for (size_t cut = 0; cut < data_off; cut += cut < 32 ? 1 : 97) {
        spit(path, b.p, cut);
        expect_refused(path, "truncated header", NULL);
    }
    for (size_t cut = (size_t)data_off; cut < b.n; cut += (b.n - (size_t)data_off) / 7 + 1) {
        spit(path, b.p, cut);
        expect_refused(path, "truncated data", NULL);
    }

    /* Header text that is not JSON. */
    {
        size_t hl = (size_t)header_len(&b);
        char *t = malloc(hl + 1);
        memcpy(t, b.p + 24, hl);
        t[hl] = 0;
        t[hl / 2] = '\0';
        write_with_header(path, &b, t);
        expect_refused(path, "cut JSON", "JSON");
        write_with_header(path, &b, "[1,2,3]");
        expect_refused(path, "JSON array", "JSON");
        free(t);
    }

    variant(dir, &b, "unknown layout", e_layout, "layout");
    variant(dir, &b, "offset past the end", e_offset, NULL);
    variant(dir, &b, "absurd size", e_size, NULL);
    variant(dir, &b, "unaligned offset", e_unaligned, "aligned");
    variant(dir, &b, "overlapping tensors", e_overlap, "overlap");
    variant(dir, &b, "2^40 rows", e_shape, "shape");
    variant(dir, &b, "bad grouping", e_group, "grouping");
    variant(dir, &b, "header version", e_version, "version");
    variant(dir, &b, "unknown role", e_role, "role");
    variant(dir, &b, "inconsistent name", e_name, "named");
    variant(dir, &b, "duplicate tensor", e_dup, NULL);
    variant(dir, &b, "missing tensor", e_missing, "incomplete");
    variant(dir, &b, "absurd layer count", e_layers, "n_layers");
    variant(dir, &b, "malformed crc", e_crcfmt, "crc32");
    variant(dir, &b, "too many tensors", e_count, NULL);
    variant(dir, &b, "unknown tokenizer kind", e_tok_kind, "sentencepiece");
    variant(dir, &b, "misnamed tokenizer file", e_tok_name, "vocab.json");
    variant(dir, &b, "tokenizer over a tensor", e_tok_overlap, "overlap");
    variant(dir, &b, "tokenizer past the end", e_tok_past, "tokenizer_config.json");
    variant(dir, &b, "three tokenizer files", e_tok_files, "tokenizer");
    variant(dir, &b, "tokenizer not an object", e_tok_type, "tokenizer");
    free(p);
    free(b.p);
}

/* Arbitrary bytes as an embedded tokenizer: opening checks spans and CRCs,
 * not content (tc_tmodel_tokenizer parses). */
static const char TOK_JSON[] = "{\"model\": {\"type\": \"BPE\"}}", TOK_CFG[] = "{\"bos_token\": \"<s>\"}";

static void set_tok(fixture *f, int files)
{
    f->m.tok.kind = files ? TC_TTOK_HF : TC_TTOK_NONE;
    f->m.tok.n_files = files;
    f->m.tok.files[0].data = (const uint8_t *)TOK_JSON;
    f->m.tok.files[0].nbytes = sizeof TOK_JSON - 1;
    f->m.tok.files[1].data = (const uint8_t *)TOK_CFG;
    f->m.tok.files[1].nbytes = sizeof TOK_CFG - 1;
}

/* A version 1 file (written before tokenizers were embedded) still opens,
 * without a tokenizer even if its header names one; version 3 is refused
 * by number. */
static void version_tests(const char *dir, const char *good)
{
    char path[512];
    snprintf(path, sizeof path, "%s/v1.tcq", dir);
    blob b = slurp(good);
    cJSON *h = header_json(&b);
    set_num(h, "version", 1);
    char *text = cJSON_PrintUnformatted(h);
    b.p[8] = 1;
    write_with_header(path, &b, text);
    tc_error err = {{0}};
    tc_tmodel r;
    CHECK_OK(tc_tmodel_open(&r, path, &err), &err);
    CHECK(r.version == 1 && r.tok.kind == TC_TTOK_NONE && r.n_tensors > 0);
    tc_tokenizer *none = (tc_tokenizer *)&r;
    CHECK_OK(tc_tmodel_tokenizer(&r, &none, &err), &err);
    CHECK(none == NULL);
    tc_tmodel_close(&r);
    b.p[8] = 4;
    write_with_header(path, &b, text);
    expect_refused(path, "version 4", "version 4");
    free(text);
    cJSON_Delete(h);
    free(b.p);
    remove(path);
}

static void drop_params(cJSON *root)
{
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "tensors"))
        cJSON_DeleteItemFromObjectCaseSensitive(t, "params");
}

static void bad_params(cJSON *root)
{
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "tensors"))
        if (cJSON_GetObjectItemCaseSensitive(t, "params"))
            cJSON_ReplaceItemInObjectCaseSensitive(t, "params", cJSON_CreateString("f8-affine"));
}

static void params_on_float(cJSON *root)
{
    cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "tensors"), 0);
    cJSON_AddStringToObject(t, "params", "f16-affine");
}

static void no_refit(cJSON *root)
{
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "quantization"), "refit");
}

/* Version 3: tensors with an f16 scale and offset per group round-trip in
 * every layout and grouping (codes, scales, offsets, the dequantized
 * weights); their parameters are declared per tensor and checked; the same
 * header in a version 2 file is refused, as is an unknown parameter kind,
 * one on a float tensor, or a size that is the symmetric plan's. */
static void affine_tests(const char *dir, const char *path)
{
    tc_error err = {{0}};
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 48}};
    for (int l = 0; l < TC_TPACK_LAYOUT_COUNT; l++)
        for (int g = 0; g < 3; g++) {
            fixture f;
            CHECK_OK(build2(&f, (tc_tpack_layout)l, &groups[g], (l + g) % 2, (l + g) % 3, 1, &err), &err);
            CHECK_OK(tc_tmodel_write(path, &f.m, NULL, NULL, &err), &err);
            check_round_trip(&f, path);
            fixture_free(&f);
        }
    blob b = slurp(path);
    CHECK(b.p && b.p[8] == 3);
    variant(dir, &b, "affine tensors without params", drop_params, "offsets");
    variant(dir, &b, "unknown params", bad_params, "params");
    variant(dir, &b, "params on a float tensor", params_on_float, "params");
    variant(dir, &b, "affine settings missing", no_refit, "refit");
    char p2[600];
    snprintf(p2, sizeof p2, "%s/v2.tcq", dir);
    cJSON *h = header_json(&b);
    set_num(h, "version", 2);
    char *text = cJSON_PrintUnformatted(h);
    b.p[8] = 2;
    write_with_header(p2, &b, text);
    expect_refused(p2, "an affine method in version 2", "version 2");
    free(text);
    cJSON_Delete(h);
    free(b.p);
    remove(p2);
}

/* The tokenizer of a real model, embedded and read back, encodes and
 * decodes as the model's own: a Hugging Face tokenizer.json with its
 * tokenizer_config.json, a GGUF vocabulary, a llama2.c tokenizer.bin. */
static void real_tokenizer(const char *dir, const char *model_rel, const char *tok_rel, tc_ttok_kind kind,
                           int n_files, const char *text)
{
    char model[512], tokp[512], path[600];
    if (tok_rel && tok_rel[0] == '/')
        snprintf(tokp, sizeof tokp, "%s", tok_rel);
    else if (tok_rel && !tu_asset(tokp, sizeof tokp, tok_rel))
        tok_rel = "";
    if (!tu_asset(model, sizeof model, model_rel) || (tok_rel && !*tok_rel)) {
        printf("%s is missing: its tokenizer round trip is not tested\n", model_rel);
        return;
    }
    snprintf(path, sizeof path, "%s/real.tcq", dir);
    tc_error err = {{0}};
    tc_model m;
    tc_tmodel_mem mm;
    tc_tgroup g = {TC_TGROUP_ROW, 0};
    CHECK_OK(tc_model_open(&m, model, &err), &err);
    CHECK_OK(tc_tmodel_mem_quantize(&mm, &m, TC_TPACK_TL2, &g, &err), &err);
    CHECK_OK(tc_tmodel_tok_collect(&mm.m.tok, &m, tok_rel ? tokp : NULL, &err), &err);
    CHECK(mm.m.tok.kind == kind && mm.m.tok.n_files == n_files);
    CHECK_OK(tc_tmodel_write(path, &mm.m, NULL, NULL, &err), &err);
    tc_tmodel r;
    tc_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(tc_tmodel_open(&r, path, &err), &err);
    CHECK_OK(tc_tmodel_tokenizer(&r, &a, &err), &err);
    CHECK_OK(tc_model_tokenizer(&m, tok_rel ? tokp : NULL, &b, &err), &err);
    CHECK(a && b);
    if (a && b) {
        int32_t *ia = NULL, *ib = NULL;
        size_t na = 0, nb = 0;
        unsigned fl = TC_TOK_BOS | TC_TOK_EOS;
        CHECK_OK(tc_tokenizer_encode(a, text, strlen(text), fl, &ia, &na, &err), &err);
        CHECK_OK(tc_tokenizer_encode(b, text, strlen(text), fl, &ib, &nb, &err), &err);
        CHECK_MSG(na == nb && na > 10 && memcmp(ia, ib, na * sizeof *ia) == 0, "%s: ids differ", model_rel);
        CHECK(tc_tokenizer_vocab_size(a) == tc_tokenizer_vocab_size(b) && tc_tokenizer_bos(a) == tc_tokenizer_bos(b) &&
              tc_tokenizer_eos(a) == tc_tokenizer_eos(b) && tc_tokenizer_unk(a) == tc_tokenizer_unk(b) &&
              tc_tokenizer_default_flags(a) == tc_tokenizer_default_flags(b));
        char *da = NULL, *db = NULL;
        size_t la = 0, lb = 0;
        CHECK_OK(tc_tokenizer_decode(a, ia, na, &da, &la, &err), &err);
        CHECK_OK(tc_tokenizer_decode(b, ib, nb, &db, &lb, &err), &err);
        CHECK(da && db && la == lb && memcmp(da, db, la) == 0);
        free(da);
        free(db);
        free(ia);
        free(ib);
    }
    tc_tokenizer_free(a);
    tc_tokenizer_free(b);
    tc_tmodel_close(&r);
    tc_tmodel_mem_free(&mm);
    tc_model_close(&m);
    remove(path);
}

int main(void)
{
    char dir[256], path[512];
    if (!tu_tmpdir(dir, sizeof dir))
        return 1;
    snprintf(path, sizeof path, "%s/m.tcq", dir);
    tc_error err = {{0}};
    const tc_tgroup groups[] = {{TC_TGROUP_TENSOR, 0}, {TC_TGROUP_ROW, 0}, {TC_TGROUP_COLS, 48}};
    for (int l = 0; l < TC_TPACK_LAYOUT_COUNT; l++)
        for (int g = 0; g < 3; g++) {
            fixture f;
            int tied = (l + g) % 2;
            CHECK_OK(build(&f, (tc_tpack_layout)l, &groups[g], tied, (l + g) % 3, &err), &err);
            set_tok(&f, g % 3);
            /* Every other tensor is produced by the fill callback. */
            for (size_t i = 0; i < f.m.n_tensors; i += 2)
                f.m.tensors[i].data = NULL;
            CHECK_OK(tc_tmodel_write(path, &f.m, fill_from_fixture, &f, &err), &err);
            check_round_trip(&f, path);
            fixture_free(&f);
        }
    /* Every trait variant once more, untied. */
    for (int v = 0; v < 3; v++) {
        fixture f;
        CHECK_OK(build(&f, TC_TPACK_I2, &groups[1], 0, v, &err), &err);
        CHECK_OK(tc_tmodel_write(path, &f.m, NULL, NULL, &err), &err);
        check_round_trip(&f, path);
        fixture_free(&f);
    }

    /* A tensor whose byte count disagrees with its plan is refused at write. */
    {
        fixture f;
        CHECK_OK(build(&f, TC_TPACK_TL2, &groups[1], 1, 0, &err), &err);
        set_tok(&f, 2);
        f.m.tensors[3].nbytes -= 1;
        char p2[600];
        snprintf(p2, sizeof p2, "%s/never.tcq", dir);
        CHECK(tc_tmodel_write(p2, &f.m, NULL, NULL, &err) == TC_ERR);
        CHECK(access(p2, F_OK) != 0);
        f.m.tensors[3].nbytes += 1;
        snprintf(p2, sizeof p2, "%s/no/such/dir/x.tcq", dir);
        CHECK(tc_tmodel_write(p2, &f.m, NULL, NULL, &err) == TC_ERR && strstr(err.msg, p2));
        CHECK_OK(tc_tmodel_write(path, &f.m, NULL, NULL, &err), &err);
        fixture_free(&f);
    }
    corrupt_tests(dir, path);
    version_tests(dir, path);
    affine_tests(dir, path);
    const char *text = "Once upon a time, Lily met a dragon named \"Zoe\" -- 42 times!\n\xc3\xa9\xe4\xb8\xad  end";
    real_tokenizer(dir, "models/stories260K-hf", NULL, TC_TTOK_HF, 2, text);
    real_tokenizer(dir, "models/deep16-hf", NULL, TC_TTOK_HF, 2, text);
    real_tokenizer(dir, "models/stories260K/stories260K.gguf", NULL, TC_TTOK_GGUF, 1, text);
    real_tokenizer(dir, "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", TC_TTOK_LLAMA2C, 1,
                   text);
    real_tokenizer(dir, "models/babyllama105-hf", NULL, TC_TTOK_HF, 2, "once upon a time there was a cat.");
    /* A tokenizer.json given alone, with no tokenizer_config.json beside it. */
    char src[512], lone[600], cmd[1400];
    snprintf(lone, sizeof lone, "%s/tokenizer.json", dir);
    if (tu_asset(src, sizeof src, "models/stories260K-hf/tokenizer.json")) {
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, lone);
        CHECK(system(cmd) == 0);
        real_tokenizer(dir, "models/stories260K/stories260K.bin", lone, TC_TTOK_HF, 1, text);
        remove(lone);
    }
    remove(path);
    return tu_finish("test_tmodel_file");
}
