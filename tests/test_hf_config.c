/* Right or refused: every Hugging Face config key that changes what the
 * model computes and that tc does not implement is refused with one line
 * naming the key and the file; keys transformers' class for the family does
 * not define are listed as ignored, as transformers ignores them.
 *
 * Each case edits the config.json of a committed reference checkpoint
 * (tests/reference/data, and tests/reference/bitnet for the ternary-trained
 * ones) in a scratch copy and opens it.  quantization_config is read when it
 * asks for transformers' BitNet layers in a pairing tc implements (bitlinear
 * offline, autobitlinear online); every other method, key or setting is
 * refused by name. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "tc/model.h"

static char g_tmp[1024];

/* A scratch copy of reference case `name` whose config.json is edit()ed;
 * returns the directory (static buffer). */
static const char *variant(const char *name, void (*edit)(cJSON *cfg), int n)
{
    static char dir[2048];
    const char *src = getenv("TC_SOURCE");
    char from[2048], path[4096];
    snprintf(from, sizeof from, "%s/tests/reference/data/%s", src && *src ? src : ".", name);
    snprintf(dir, sizeof dir, "%s/v%d", g_tmp, n);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", from);
    char link[2100];
    snprintf(link, sizeof link, "%s/model.safetensors", dir);
    CHECK(symlink(path, link) == 0);
    snprintf(path, sizeof path, "%s/config.json", from);
    char *text = tu_slurp(path);
    CHECK_MSG(text != NULL, "%s is missing", path);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cfg)
        return dir;
    edit(cfg);
    char *out = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(out, f);
        fclose(f);
    }
    free(out);
    return dir;
}

static void set(cJSON *o, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    cJSON_AddItemToObject(o, key, v);
}

static cJSON *rope(cJSON *cfg)
{
    return cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
}

static void quant(cJSON *c, const char *json) { set(c, "quantization_config", cJSON_Parse(json)); }
static void e_quant(cJSON *c) { quant(c, "{\"quant_method\": \"awq\", \"bits\": 4}"); }
static void e_quant_float(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\"}"); }
static void e_quant_auto_offline(cJSON *c)
{
    quant(c, "{\"quant_method\": \"bitnet\", \"linear_class\": \"autobitlinear\", \"quantization_mode\": \"offline\"}");
}
static void e_quant_bit_online(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\", \"quantization_mode\": \"online\"}"); }
static void e_quant_rms(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\", \"use_rms_norm\": true}"); }
static void e_quant_keep(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\", \"modules_to_not_convert\": [\"mlp\"]}"); }
static void e_quant_key(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\", \"group_size\": 128}"); }
static void e_quant_class(cJSON *c) { quant(c, "{\"quant_method\": \"bitnet\", \"linear_class\": \"bitlinear2\"}"); }
static void e_quant_online(cJSON *c)
{
    quant(c, "{\"quant_method\": \"bitnet\", \"linear_class\": \"autobitlinear\", \"quantization_mode\": \"online\"}");
}
static void e_bitnet_heads(cJSON *c) { set(c, "head_dim", cJSON_CreateNumber(16)); }
static void e_auto_map(cJSON *c) { set(c, "auto_map", cJSON_Parse("{\"AutoModel\": \"x.Y\"}")); }
static void e_rope_type(cJSON *c) { set(rope(c), "rope_type", cJSON_CreateString("mrope")); }
static void e_rope_key(cJSON *c) { set(rope(c), "mrope_section", cJSON_Parse("[2, 2]")); }
static void e_legacy_scaling(cJSON *c) { set(c, "rope_scaling", cJSON_Parse("{\"type\": \"su\", \"factor\": 2}")); }
static void e_act(cJSON *c) { set(c, "hidden_act", cJSON_CreateString("relu6")); }
static void e_partial(cJSON *c) { set(c, "partial_rotary_factor", cJSON_CreateNumber(0.5)); }
static void e_untied(cJSON *c) { set(c, "tie_word_embeddings", cJSON_CreateBool(0)); }
static void e_extra_tensor(cJSON *c) { set(c, "attention_bias", cJSON_CreateBool(0)); }
static void e_mistral_types(cJSON *c) { set(c, "layer_types", cJSON_Parse("[\"full_attention\", \"sliding_attention\"]")); }
static void e_qwen_types(cJSON *c)
{
    set(c, "use_sliding_window", cJSON_CreateBool(0));
    set(c, "layer_types", cJSON_Parse("[\"full_attention\", \"sliding_attention\", \"sliding_attention\"]"));
}
static void e_bidir(cJSON *c) { set(c, "use_bidirectional_attention", cJSON_CreateBool(1)); }
static void e_llama3_missing(cJSON *c) { cJSON_DeleteItemFromObjectCaseSensitive(rope(c), "low_freq_factor"); }
static void e_longrope_short(cJSON *c) { set(rope(c), "short_factor", cJSON_Parse("[1, 1]")); }
static void e_family(cJSON *c) { set(c, "model_type", cJSON_CreateString("gpt_neox")); }
static void e_unknown(cJSON *c) { set(c, "some_future_key", cJSON_CreateNumber(3)); }

typedef struct refusal {
    const char *case_name;
    void (*edit)(cJSON *cfg);
    const char *needle; /* the message must name this */
} refusal;

#define BITNET "../bitnet/" /* the ternary-trained references */

static const refusal REFUSED[] = {
    {"llama", e_quant, "quant_method 'awq'"},
    {"llama", e_quant_float, "packed in U8"},
    {"llama", e_quant_auto_offline, "autobitlinear offline"},
    {"llama", e_quant_bit_online, "bitlinear online"},
    {"llama", e_quant_rms, "use_rms_norm"},
    {"llama", e_quant_keep, "modules_to_not_convert"},
    {"llama", e_quant_key, "group_size"},
    {"llama", e_quant_class, "bitlinear2"},
    {"phi3", e_quant_float, "fused projections"},
    {BITNET "bitnet_packed", e_quant_online, "float master weights"},
    {BITNET "bitnet_packed", e_bitnet_heads, "attn_sub_norm"},
    {"llama", e_auto_map, "auto_map"},
    {"llama", e_rope_type, "rope_type 'mrope'"},
    {"llama", e_rope_key, "mrope_section"},
    {"llama", e_legacy_scaling, "rope_type 'su'"},
    {"llama", e_act, "relu6"},
    {"llama", e_partial, "partial_rotary_factor"},
    {"llama_tied", e_untied, "lm_head.weight"},
    {"llama_bias", e_extra_tensor, "q_proj.bias"},
    {"mistral_swa", e_mistral_types, "layer_types"},
    {"qwen2_swa", e_qwen_types, "layer_types"},
    {"gemma2", e_bidir, "use_bidirectional_attention"},
    {"llama3", e_llama3_missing, "low_freq_factor"},
    {"phi3_longrope", e_longrope_short, "short_factor"},
    {"llama", e_family, "gpt_neox"},
};

int main(void)
{
    if (!tu_tmpdir(g_tmp, sizeof g_tmp))
        return tu_skip("no scratch directory");
    tc_error err;
    int n = 0;
    for (size_t i = 0; i < sizeof REFUSED / sizeof REFUSED[0]; i++) {
        const refusal *r = &REFUSED[i];
        const char *dir = variant(r->case_name, r->edit, n++);
        tc_model m;
        memset(&err, 0, sizeof err);
        int rc = tc_model_open(&m, dir, &err);
        CHECK_MSG(rc == TC_ERR, "%s edited to need '%s' opened", r->case_name, r->needle);
        if (rc == TC_OK) {
            tc_model_close(&m);
            continue;
        }
        CHECK_MSG(strstr(err.msg, r->needle) && strstr(err.msg, dir) && !strchr(err.msg, '\n'),
                  "refusal of '%s' says: %s", r->needle, err.msg);
        printf("refused: %s\n", err.msg);
        /* The tools: exit 1 and one line on stderr naming the key. */
        const char *bin = tu_bin();
        if (bin) {
            char cmd[8192], *out;
            snprintf(cmd, sizeof cmd, "%s/tc-analyze --info '%s' 2>&1 >/dev/null", bin, dir);
            int st = tu_run(cmd, &out);
            size_t lines = 0;
            for (const char *p = out; *p; p++)
                lines += *p == '\n';
            CHECK_MSG(st == 1 && lines == 1 && strstr(out, r->needle), "tc-analyze --info: exit %d, stderr: %s", st,
                      out);
            free(out);
        }
    }

    /* A key the family's class does not define: read as transformers reads
     * it (not at all), and listed. */
    const char *dir = variant("llama", e_unknown, n++);
    tc_model m;
    CHECK_OK(tc_model_open(&m, dir, &err), &err);
    CHECK(m.ignored_keys && strstr(m.ignored_keys, "some_future_key"));
    tc_model_close(&m);

    /* --info lists the ignored key. */
    const char *bin = tu_bin();
    if (bin) {
        char cmd[8192], *out;
        int st;
        snprintf(cmd, sizeof cmd, "%s/tc-analyze --info '%s' 2>/dev/null", bin, variant("llama", e_unknown, n++));
        st = tu_run(cmd, &out);
        CHECK_MSG(st == 0 && strstr(out, "some_future_key"), "--info does not list the ignored key: %s", out);
        free(out);
    } else {
        printf("TC_BIN is not set: the tool checks were skipped\n");
    }
    char rm[1100];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_tmp);
    CHECK(system(rm) == 0);
    return tu_finish("test_hf_config");
}
