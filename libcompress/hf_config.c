/* Reading a Hugging Face config.json into tc_config and its traits.
 *
 * Each family is one row below: the model_type, its tensor names, the
 * defaults transformers' config class gives to absent keys, and the keys
 * that class defines.  Every key of the class is either read here (and
 * implemented exactly as transformers computes it) or refused when set to a
 * value tc does not implement.  Keys the class does not define are ignored
 * by transformers' modelling code too, so tc ignores them as well and lists
 * them in --info.  Two keys act on any family: auto_map is refused, and
 * quantization_config is read when it asks for transformers' BitNet linear
 * layers (read_quant) and refused otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tc/json_text.h"
#include "model_internal.h"

/* How a family places sliding-window attention. */
typedef enum window_rule {
    WIN_NONE,        /* no window (the key is not the class's) */
    WIN_ALL,         /* sliding_window, when set, on every layer (mistral, phi3) */
    WIN_QWEN,        /* use_sliding_window: layers from max_window_layers on, or layer_types */
    WIN_LAYER_TYPES, /* layer_types, or every pattern-th layer global (gemma) */
} window_rule;

typedef struct hf_family {
    const char *model_type;
    const char *cls;        /* the class tc's writer names in "architectures" */
    tc_arch arch;
    const tc_naming *names;
    const char *act_key;    /* the activation's key in this class */
    const char *act_default;
    int tied_default;       /* tie_word_embeddings when absent */
    double eps_default;
    window_rule window;
    int window_default;     /* sliding_window when absent (0: none) */
    int window_pattern;     /* WIN_LAYER_TYPES: every pattern-th layer is global */
    int qkv_bias_always;    /* qwen2 */
    int attention_bias_key; /* attention_bias biases q, k, v and o */
    int mlp_bias_key;       /* llama's mlp_bias */
    int qk_norm;            /* qwen3, gemma3 */
    int gemma;              /* (1+w) norms, sqrt(dim) embedding scale, post-norms, query_pre_attn_scalar */
    double attn_softcap_default, final_softcap_default;
    int partial_rotary;     /* the family applies partial_rotary_factor */
    int phi3_rope;          /* Phi-3's rope conventions: a top-level original_max_position_embeddings that wins,
                               and "su" / "yarn" as older names of longrope */
    int per_layer_rope;     /* rope_parameters may hold full_attention / sliding_attention dicts */
    int diff_attn;          /* differential attention (DiffLlama) */
    double local_theta_default;
    double theta_default;
    int sub_norms;          /* bitnet: attn_sub_norm and ffn_sub_norm */
} hf_family;

/* Keys of the generic PretrainedConfig and of the families' classes that do
 * not change what the model computes. */
static const char *const inert_keys[] = {
    "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "_name_or_path",
    "initializer_range", "use_cache", "pad_token_id", "attention_dropout", "resid_pdrop", "embd_pdrop",
    "output_attentions", "output_hidden_states", "return_dict", "pretraining_tp", "is_encoder_decoder",
    "id2label", "label2id", "problem_type", "tokenizer_class", "task_specific_params", "max_length",
    "use_return_dict", "chunk_size_feed_forward", "tf_legacy_loss", "pruned_heads", "torchscript",
    "finetuning_task", "prefix", "sep_token_id", "decoder_start_token_id", "cache_implementation",
    "rope_theta", "rope_scaling", "rope_parameters", "lambda_std_dev", NULL,
};

/* Each row: what transformers' class for the family computes by default.
 * Fields not named are 0: no bias keys, no window, no q/k norms, plain
 * norms, no softcaps, whole-head rope of base 10000. */
static const hf_family families[] = {
    {.model_type = "llama", .cls = "LlamaForCausalLM", .arch = TC_ARCH_LLAMA, .names = &tc_naming_hf,
     .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-6, .window = WIN_NONE,
     .attention_bias_key = 1, .mlp_bias_key = 1, .theta_default = 10000.0},
    {.model_type = "mistral", .cls = "MistralForCausalLM", .arch = TC_ARCH_MISTRAL, .names = &tc_naming_hf,
     .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-6, .window = WIN_ALL,
     .window_default = 4096, .theta_default = 10000.0},
    {.model_type = "qwen2", .cls = "Qwen2ForCausalLM", .arch = TC_ARCH_QWEN2, .names = &tc_naming_hf,
     .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-6, .window = WIN_QWEN,
     .window_default = 4096, .qkv_bias_always = 1, .theta_default = 10000.0},
    {.model_type = "qwen3", .cls = "Qwen3ForCausalLM", .arch = TC_ARCH_QWEN3, .names = &tc_naming_hf,
     .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-6, .window = WIN_QWEN,
     .window_default = 4096, .attention_bias_key = 1, .qk_norm = 1, .theta_default = 10000.0},
    {.model_type = "gemma2", .cls = "Gemma2ForCausalLM", .arch = TC_ARCH_GEMMA2, .names = &tc_naming_hf_gemma,
     .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh", .tied_default = 1, .eps_default = 1e-6,
     .window = WIN_LAYER_TYPES, .window_default = 4096, .window_pattern = 2, .attention_bias_key = 1,
     .gemma = 1, .attn_softcap_default = 50.0, .final_softcap_default = 30.0, .theta_default = 10000.0},
    {.model_type = "gemma3_text", .cls = "Gemma3ForCausalLM", .arch = TC_ARCH_GEMMA3,
     .names = &tc_naming_hf_gemma, .act_key = "hidden_activation", .act_default = "gelu_pytorch_tanh",
     .tied_default = 1, .eps_default = 1e-6, .window = WIN_LAYER_TYPES, .window_default = 4096,
     .window_pattern = 6, .attention_bias_key = 1, .qk_norm = 1, .gemma = 1, .per_layer_rope = 1,
     .local_theta_default = 10000.0, .theta_default = 1000000.0},
    {.model_type = "phi3", .cls = "Phi3ForCausalLM", .arch = TC_ARCH_PHI3, .names = &tc_naming_hf_phi3,
     .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-5, .window = WIN_ALL,
     .partial_rotary = 1, .phi3_rope = 1, .theta_default = 10000.0},
    /* DiffLlamaConfig: attention_bias on q, k, v and o; no mlp_bias; lambda_std_dev
     * only initialises. */
    {.model_type = "diffllama", .cls = "DiffLlamaForCausalLM", .arch = TC_ARCH_DIFFLLAMA,
     .names = &tc_naming_hf_diffllama, .act_key = "hidden_act", .act_default = "silu", .eps_default = 1e-5,
     .window = WIN_NONE, .attention_bias_key = 1, .diff_attn = 1, .theta_default = 10000.0},
    {.model_type = "bitnet", .cls = "BitNetForCausalLM", .arch = TC_ARCH_BITNET, .names = &tc_naming_hf_bitnet,
     .act_key = "hidden_act", .act_default = "relu2", .eps_default = 1e-5, .window = WIN_NONE,
     .attention_bias_key = 1, .theta_default = 500000.0, .sub_norms = 1},
};

int tc_hf_class_of(tc_arch a, tc_hf_class *out)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const hf_family *f = &families[i];
        if (f->arch != a)
            continue;
        out->model_type = f->model_type;
        out->cls = f->cls;
        out->layer_types = f->window == WIN_QWEN || f->window == WIN_LAYER_TYPES;
        out->names = f->names;
        return TC_OK;
    }
    return TC_ERR;
}

/* The keys this reader understands for every family (read below, each
 * refused where its value is not implemented for the family). */
static const char *const read_keys[] = {
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
    "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id", "head_dim",
    "rms_norm_eps", "tie_word_embeddings", "hidden_act", "hidden_activation", "attention_bias", "mlp_bias",
    "sliding_window", "use_sliding_window", "max_window_layers", "layer_types", "sliding_window_pattern",
    "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "rope_local_base_freq",
    "partial_rotary_factor", "original_max_position_embeddings", "use_bidirectional_attention",
    "drop_attn_list", "drop_mlp_list", "quantization_config", NULL,
};

static int in_list(const char *const *list, const char *key)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

/* ---- Typed reads --------------------------------------------------------------- */

typedef struct reader {
    const cJSON *cfg;
    const char *path; /* the model directory */
    const hf_family *fam;
    tc_error *err;
} reader;

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_int(const reader *r, const cJSON *o, const char *key, int required, int fallback, int *out)
{
    const cJSON *v = get(o, key);
    if (!v) {
        if (required)
            return tc_err(r->err, "%s/config.json: missing field '%s'", r->path, key);
        *out = fallback;
        return TC_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < -1 || d > 2147483647.0)
        return tc_err(r->err, "%s/config.json: field '%s' is not a non-negative integer", r->path, key);
    *out = (int)d;
    return TC_OK;
}

static int get_num(const reader *r, const cJSON *o, const char *key, double fallback, double *out)
{
    const cJSON *v = get(o, key);
    if (!v) {
        *out = fallback;
        return TC_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return tc_err(r->err, "%s/config.json: field '%s' is not a number", r->path, key);
    *out = v->valuedouble;
    return TC_OK;
}

static int get_bool(const reader *r, const cJSON *o, const char *key, int fallback, int *out)
{
    const cJSON *v = get(o, key);
    if (!v) {
        *out = fallback;
        return TC_OK;
    }
    if (!cJSON_IsBool(v))
        return tc_err(r->err, "%s/config.json: field '%s' is not true or false", r->path, key);
    *out = cJSON_IsTrue(v);
    return TC_OK;
}

/* A key that changes the function in a way tc does not implement. */
static int refuse(const reader *r, const char *key, const char *why)
{
    return tc_err(r->err, "%s/config.json: '%s' %s, which tc does not implement", r->path, key, why);
}

/* ---- RoPE ------------------------------------------------------------------------- */

/* The keys a rope dict may hold, by kind; any other key is refused. */
static int rope_key_known(tc_rope_kind k, const char *key)
{
    static const char *const common[] = {"rope_type", "type", "rope_theta", "partial_rotary_factor", NULL};
    static const char *const by_kind[TC_ROPE_KIND_COUNT][9] = {
        [TC_ROPE_DEFAULT] = {NULL},
        [TC_ROPE_LINEAR] = {"factor", NULL},
        [TC_ROPE_DYNAMIC] = {"factor", NULL},
        [TC_ROPE_LLAMA3] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
                            NULL},
        [TC_ROPE_YARN] = {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
                          "beta_slow", "mscale", "mscale_all_dim", "truncate", NULL},
        [TC_ROPE_LONGROPE] = {"factor", "original_max_position_embeddings", "attention_factor", "short_factor",
                              "long_factor", NULL},
    };
    return in_list(common, key) || in_list(by_kind[k], key);
}

static int rope_factors(const reader *r, const cJSON *d, const char *key, int n, float *out)
{
    const cJSON *a = get(d, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return tc_err(r->err, "%s/config.json: rope '%s' must be a list of %d numbers (one per rotated pair)",
                      r->path, key, n);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || !(it->valuedouble > 0))
            return tc_err(r->err, "%s/config.json: rope '%s' holds something that is not a positive number",
                          r->path, key);
        out[i++] = (float)it->valuedouble;
    }
    return TC_OK;
}

static double yarn_mscale(double scale, double m)
{
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

/* Fills *rp from one rope dict (or from the top-level keys when d is NULL),
 * as transformers' ROPE_INIT_FUNCTIONS compute it.  theta: the base when the
 * dict names none; rot_dims: the rotated dimensions. */
static int read_rope(const reader *r, const cJSON *d, double theta, int rot_dims, int max_pos, int orig_top,
                     tc_rope *rp)
{
    *rp = tc_rope_default(theta, rot_dims);
    rp->max_pos = max_pos;
    if (!d)
        return TC_OK;
    if (!cJSON_IsObject(d))
        return tc_err(r->err, "%s/config.json: the rope parameters are not an object", r->path);
    const cJSON *ty = get(d, "rope_type");
    if (!ty)
        ty = get(d, "type");
    if (ty) {
        if (!cJSON_IsString(ty))
            return tc_err(r->err, "%s/config.json: rope_type is not a string", r->path);
        const char *name = ty->valuestring;
        /* Phi-3's older names for longrope. */
        if (r->fam->phi3_rope && (strcmp(name, "su") == 0 || strcmp(name, "yarn") == 0))
            name = "longrope";
        if (tc_rope_kind_from_name(name, &rp->kind))
            return tc_err(r->err, "%s/config.json: rope_type '%.40s' is not implemented (tc implements default, "
                          "linear, dynamic, llama3, yarn and longrope)", r->path, name);
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, d) {
        if (!rope_key_known(rp->kind, it->string) && !cJSON_IsNull(it))
            return tc_err(r->err, "%s/config.json: rope parameter '%.40s' is not implemented for rope_type '%s'",
                          r->path, it->string, tc_rope_kind_name(rp->kind));
    }
    double v = 0;
    if (get_num(r, d, "rope_theta", theta, &rp->theta))
        return TC_ERR;
    if (rp->kind == TC_ROPE_DEFAULT)
        return TC_OK;
    const cJSON *f = get(d, "factor");
    if (f && !cJSON_IsNumber(f))
        return tc_err(r->err, "%s/config.json: rope factor is not a number", r->path);
    int orig = orig_top > 0 ? orig_top : max_pos;
    if (get_int(r, d, "original_max_position_embeddings", 0, orig, &rp->orig_max_pos))
        return TC_ERR;
    if (orig_top > 0)
        rp->orig_max_pos = orig_top; /* Phi-3: the top-level key wins, as in transformers */
    switch (rp->kind) {
    case TC_ROPE_LINEAR:
    case TC_ROPE_DYNAMIC:
    case TC_ROPE_LLAMA3:
        if (!f)
            return tc_err(r->err, "%s/config.json: rope_type '%s' needs a 'factor'", r->path,
                          tc_rope_kind_name(rp->kind));
        rp->factor = f->valuedouble;
        if (rp->kind == TC_ROPE_LLAMA3 &&
            (get_num(r, d, "low_freq_factor", NAN, &rp->low_freq_factor) ||
             get_num(r, d, "high_freq_factor", NAN, &rp->high_freq_factor)))
            return TC_ERR;
        if (rp->kind == TC_ROPE_LLAMA3 && (isnan(rp->low_freq_factor) || isnan(rp->high_freq_factor)))
            return tc_err(r->err, "%s/config.json: llama3 rope needs low_freq_factor and high_freq_factor",
                          r->path);
        return TC_OK;
    case TC_ROPE_YARN: {
        rp->factor = f ? f->valuedouble : (double)max_pos / rp->orig_max_pos;
        double ms = 0, msa = 0, af = NAN, bf = 0, bs = 0;
        if (get_num(r, d, "mscale", 0, &ms) || get_num(r, d, "mscale_all_dim", 0, &msa) ||
            get_num(r, d, "attention_factor", NAN, &af) || get_num(r, d, "beta_fast", 0, &bf) ||
            get_num(r, d, "beta_slow", 0, &bs) || get_bool(r, d, "truncate", 1, &rp->truncate))
            return TC_ERR;
        rp->beta_fast = bf != 0 ? bf : 32.0; /* transformers: `or 32` */
        rp->beta_slow = bs != 0 ? bs : 1.0;
        if (!isnan(af))
            rp->attn_factor = af;
        else if (ms != 0 && msa != 0)
            rp->attn_factor = yarn_mscale(rp->factor, ms) / yarn_mscale(rp->factor, msa);
        else
            rp->attn_factor = yarn_mscale(rp->factor, 1.0);
        return TC_OK;
    }
    case TC_ROPE_LONGROPE: {
        rp->factor = f ? f->valuedouble : (double)max_pos / rp->orig_max_pos;
        if (get_num(r, d, "attention_factor", NAN, &v))
            return TC_ERR;
        if (!isnan(v))
            rp->attn_factor = v;
        else
            rp->attn_factor = rp->factor <= 1.0 ? 1.0 : sqrt(1.0 + log(rp->factor) / log(rp->orig_max_pos));
        int pairs = rot_dims / 2;
        if (pairs > TC_ROPE_MAX_PAIRS)
            return tc_err(r->err, "%s/config.json: longrope over %d pairs is beyond tc's %d", r->path, pairs,
                          TC_ROPE_MAX_PAIRS);
        if (rope_factors(r, d, "short_factor", pairs, rp->short_factor) ||
            rope_factors(r, d, "long_factor", pairs, rp->long_factor))
            return TC_ERR;
        return TC_OK;
    }
    default:
        return TC_OK;
    }
}

/* The rope dict transformers would use: rope_parameters, else the legacy
 * rope_scaling (either may be absent). */
static const cJSON *rope_dict(const cJSON *cfg)
{
    const cJSON *rp = get(cfg, "rope_parameters");
    const cJSON *rs = get(cfg, "rope_scaling");
    /* transformers: `rope_scaling or rope_parameters`, an empty dict being false */
    return rs && !(cJSON_IsObject(rs) && !rs->child) ? rs : rp;
}

static int read_ropes(const reader *r, tc_config *c, int rot_dims)
{
    const hf_family *fam = r->fam;
    double theta = 0;
    int orig_top = 0;
    if (get_num(r, r->cfg, "rope_theta", fam->theta_default, &theta))
        return TC_ERR;
    if (fam->phi3_rope && get_int(r, r->cfg, "original_max_position_embeddings", 0, 0, &orig_top))
        return TC_ERR;
    const cJSON *d = rope_dict(r->cfg);
    if (fam->per_layer_rope) {
        /* Gemma 3: {full_attention: {...}, sliding_attention: {...}}, or a
         * legacy rope_scaling that applies to the global layers, with
         * rope_local_base_freq the local layers' base. */
        const cJSON *rp = get(r->cfg, "rope_parameters"), *rs = get(r->cfg, "rope_scaling");
        const cJSON *full = rp ? get(rp, "full_attention") : NULL, *slide = rp ? get(rp, "sliding_attention") : NULL;
        double local_theta = 0;
        if (get_num(r, r->cfg, "rope_local_base_freq", fam->local_theta_default, &local_theta))
            return TC_ERR;
        if (rp && cJSON_IsObject(rp)) {
            /* transformers reads only the two layer types' dicts of Gemma 3;
             * anything else in rope_parameters would be silently dropped. */
            const cJSON *it;
            cJSON_ArrayForEach(it, rp) {
                if (strcmp(it->string, "full_attention") && strcmp(it->string, "sliding_attention"))
                    return tc_err(r->err, "%s/config.json: rope_parameters key '%.40s' is neither full_attention "
                                  "nor sliding_attention, which %s reads", r->path, it->string, fam->model_type);
            }
        }
        cJSON *merged = NULL;
        if (rs && cJSON_IsObject(rs) && rs->child) {
            /* transformers updates the global layers' dict with it. */
            merged = full ? cJSON_Duplicate(full, 1) : cJSON_CreateObject();
            const cJSON *it;
            cJSON_ArrayForEach(it, rs) {
                if (merged) {
                    cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
                    cJSON_AddItemToObject(merged, it->string, cJSON_Duplicate(it, 1));
                }
            }
            if (!merged)
                return tc_err(r->err, "%s: out of memory", r->path);
            full = merged;
        }
        int rc = read_rope(r, full, theta, rot_dims, c->max_seq_len, 0, &c->t.rope[0]) ||
                 read_rope(r, slide, local_theta, rot_dims, c->max_seq_len, 0, &c->t.rope[1]);
        cJSON_Delete(merged);
        return rc;
    }
    if (read_rope(r, d, theta, rot_dims, c->max_seq_len, orig_top, &c->t.rope[0]))
        return TC_ERR;
    c->t.rope[1] = c->t.rope[0];
    return TC_OK;
}

/* ---- Windows -------------------------------------------------------------------- */

static int read_layer_types(const reader *r, const cJSON *lt, tc_config *c, int *any_local)
{
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return tc_err(r->err, "%s/config.json: 'layer_types' must list one type for each of the %d layers",
                      r->path, c->n_layers);
    int l = 0;
    const cJSON *it;
    *any_local = 0;
    cJSON_ArrayForEach(it, lt) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, "full_attention") == 0)
            c->t.local[l] = 0;
        else if (cJSON_IsString(it) && strcmp(it->valuestring, "sliding_attention") == 0)
            c->t.local[l] = 1, *any_local = 1;
        else
            return tc_err(r->err, "%s/config.json: layer_types entry %d is not 'full_attention' or "
                          "'sliding_attention'", r->path, l);
        l++;
    }
    return TC_OK;
}

static int read_window(const reader *r, tc_config *c)
{
    const hf_family *fam = r->fam;
    const cJSON *cfg = r->cfg;
    int window = 0, use = 0, any_local = 0;
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(cfg, "sliding_window");
    int set_null = sw && cJSON_IsNull(sw);
    if (get_int(r, cfg, "sliding_window", 0, set_null ? 0 : fam->window_default, &window))
        return TC_ERR;
    const cJSON *lt = get(cfg, "layer_types");
    switch (fam->window) {
    case WIN_NONE:
        return TC_OK;
    case WIN_ALL:
        if (lt)
            return refuse(r, "layer_types", "asks for alternating attention in a family that has none");
        for (int l = 0; l < c->n_layers; l++)
            c->t.local[l] = 1;
        break;
    case WIN_QWEN: {
        int max_window_layers = 0;
        if (get_bool(r, cfg, "use_sliding_window", 0, &use) ||
            get_int(r, cfg, "max_window_layers", 0, 28, &max_window_layers))
            return TC_ERR;
        if (!use)
            window = 0;
        if (lt) {
            if (read_layer_types(r, lt, c, &any_local))
                return TC_ERR;
            if (any_local && !window)
                return refuse(r, "layer_types", "marks sliding layers without use_sliding_window");
        } else {
            for (int l = 0; l < c->n_layers; l++)
                c->t.local[l] = window > 0 && l >= max_window_layers;
        }
        break;
    }
    case WIN_LAYER_TYPES: {
        int pattern = 0;
        if (get_int(r, cfg, "sliding_window_pattern", 0, fam->window_pattern, &pattern))
            return TC_ERR;
        if (lt) {
            if (read_layer_types(r, lt, c, &any_local))
                return TC_ERR;
        } else {
            if (pattern <= 0)
                return tc_err(r->err, "%s/config.json: sliding_window_pattern must be positive", r->path);
            for (int l = 0; l < c->n_layers; l++)
                c->t.local[l] = (l + 1) % pattern != 0;
        }
        break;
    }
    }
    c->t.window = window;
    if (!window)
        memset(c->t.local, 0, sizeof c->t.local);
    return TC_OK;
}

/* ---- The config ------------------------------------------------------------------ */

static int read_act(const reader *r, tc_traits *t)
{
    const hf_family *fam = r->fam;
    /* Only the class's own name counts: Gemma reads hidden_activation and
     * ignores hidden_act, the others the reverse. */
    const char *key = fam->act_key;
    const cJSON *v = get(r->cfg, key);
    const char *name = fam->act_default;
    if (v) {
        if (!cJSON_IsString(v))
            return tc_err(r->err, "%s/config.json: '%s' is not a string", r->path, key);
        name = v->valuestring;
    }
    static const struct { const char *name; tc_act act; } acts[] = {
        {"silu", TC_ACT_SILU}, {"swish", TC_ACT_SILU}, {"gelu", TC_ACT_GELU},
        {"gelu_pytorch_tanh", TC_ACT_GELU_TANH}, {"gelu_new", TC_ACT_GELU_TANH}, {"relu2", TC_ACT_RELU2},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (strcmp(name, acts[i].name) == 0)
            return t->act = acts[i].act, TC_OK;
    return tc_err(r->err, "%s/config.json: '%s' is '%.40s', which tc does not implement (it implements silu, "
                  "gelu, gelu_pytorch_tanh, gelu_new and relu2)", r->path, key, name);
}

static int read_gemma(const reader *r, tc_config *c)
{
    const hf_family *fam = r->fam;
    tc_traits *t = &c->t;
    double qpas = 256, asc = 0, fsc = 0;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r->cfg, "attn_logit_softcapping");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->cfg, "final_logit_softcapping");
    if (get_num(r, r->cfg, "query_pre_attn_scalar", 256, &qpas) ||
        get_num(r, r->cfg, "attn_logit_softcapping", a ? 0 : fam->attn_softcap_default, &asc) ||
        get_num(r, r->cfg, "final_logit_softcapping", f ? 0 : fam->final_softcap_default, &fsc))
        return TC_ERR;
    if (!(qpas > 0) || asc < 0 || fsc < 0)
        return tc_err(r->err, "%s/config.json: query_pre_attn_scalar must be positive and the softcaps not "
                      "negative", r->path);
    t->norm = TC_NORM_RMS_1P;
    t->post_norms = 1;
    /* transformers keeps sqrt(hidden_size) as a float32 tensor */
    t->embed_scale = (float)sqrt((double)c->dim);
    t->attn_scale = (float)pow(qpas, -0.5);
    t->attn_softcap = (float)asc;
    t->final_softcap = (float)fsc;
    int bidir = 0;
    if (get_bool(r, r->cfg, "use_bidirectional_attention", 0, &bidir))
        return TC_ERR;
    if (bidir)
        return refuse(r, "use_bidirectional_attention", "makes attention non-causal");
    return TC_OK;
}

static int read_family(const cJSON *cfg, const char *path, const hf_family **out, tc_error *err)
{
    const cJSON *mt = get(cfg, "model_type");
    if (!cJSON_IsString(mt))
        return tc_err(err, "%s/config.json: missing field 'model_type'", path);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(mt->valuestring, families[i].model_type) == 0)
            return *out = &families[i], TC_OK;
    char names[256];
    size_t k = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0] && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", families[i].model_type);
    return tc_err(err, "%s/config.json: unsupported architecture '%.64s' (tc reads %s)", path, mt->valuestring,
                  names);
}

/* Keys that act on any family's loading. */
static int refuse_global(const reader *r)
{
    if (get(r->cfg, "auto_map"))
        return refuse(r, "auto_map", "names custom modelling code");
    return TC_OK;
}

static int quant_string(const reader *r, const cJSON *q, const char *key, const char *fallback, const char **out)
{
    const cJSON *v = get(q, key);
    if (v && !cJSON_IsString(v))
        return tc_err(r->err, "%s/config.json: quantization_config '%s' is not a string", r->path, key);
    *out = v ? v->valuestring : fallback;
    return TC_OK;
}

/* quantization_config with quant_method "bitnet" (transformers'
 * BitNetQuantConfig): every nn.Linear of the blocks becomes a BitNet layer,
 * the output head excepted (integrations/bitnet.py).  tc implements the two
 * pairings checkpoints use: bitlinear offline (packed codes and an inverse
 * weight_scale: y = x_q.T / (weight_scale s_x)) and autobitlinear online
 * (float masters ternary at run time).  Every key of the class is read; any
 * other method or key, and the settings tc does not implement, are refused
 * by name. */
static int read_quant(const reader *r, tc_config *c)
{
    const cJSON *q = get(r->cfg, "quantization_config");
    if (!q)
        return TC_OK;
    if (!cJSON_IsObject(q))
        return tc_err(r->err, "%s/config.json: 'quantization_config' is not an object", r->path);
    const char *method = NULL, *cls = NULL, *mode = NULL;
    if (quant_string(r, q, "quant_method", "", &method))
        return TC_ERR;
    if (strcmp(method, "bitnet") != 0)
        return tc_err(r->err, "%s/config.json: 'quantization_config' asks for quant_method '%.40s', which tc does "
                      "not implement (it reads bitnet)", r->path, method);
    static const char *const keys[] = {"quant_method", "linear_class", "quantization_mode", "use_rms_norm",
                                       "rms_norm_eps", "modules_to_not_convert", NULL};
    const cJSON *it;
    cJSON_ArrayForEach(it, q) {
        if (!in_list(keys, it->string))
            return tc_err(r->err, "%s/config.json: quantization_config key '%.40s' is not one of BitNet's, and tc "
                          "does not know what it does", r->path, it->string);
    }
    int rms = 0;
    if (quant_string(r, q, "linear_class", "bitlinear", &cls) ||
        quant_string(r, q, "quantization_mode", "offline", &mode) || get_bool(r, q, "use_rms_norm", 0, &rms))
        return TC_ERR;
    if (strcmp(cls, "bitlinear") && strcmp(cls, "autobitlinear"))
        return tc_err(r->err, "%s/config.json: quantization_config linear_class '%.40s' is neither bitlinear nor "
                      "autobitlinear", r->path, cls);
    if (strcmp(mode, "offline") && strcmp(mode, "online"))
        return tc_err(r->err, "%s/config.json: quantization_config quantization_mode '%.40s' is neither offline "
                      "nor online", r->path, mode);
    if (rms)
        return tc_err(r->err, "%s/config.json: quantization_config 'use_rms_norm' puts an RMSNorm inside every "
                      "linear layer, which tc does not implement", r->path);
    /* Substrings of module names stay float; the head always does. */
    const cJSON *keep = get(q, "modules_to_not_convert");
    if (keep && !cJSON_IsArray(keep))
        return tc_err(r->err, "%s/config.json: quantization_config 'modules_to_not_convert' is not a list",
                      r->path);
    cJSON_ArrayForEach(it, keep) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, "lm_head") != 0)
            return tc_err(r->err, "%s/config.json: quantization_config 'modules_to_not_convert' keeps modules "
                          "other than lm_head in float, which tc does not implement", r->path);
    }
    if (r->fam->names->fused_qkv || r->fam->names->fused_gate_up)
        return tc_err(r->err, "%s/config.json: 'quantization_config' makes %s's fused projections ternary, which "
                      "tc does not implement", r->path, r->fam->model_type);
    if (strcmp(cls, "bitlinear") == 0 && strcmp(mode, "offline") == 0)
        c->t.linear = TC_LINEAR_BITLINEAR;
    else if (strcmp(cls, "autobitlinear") == 0 && strcmp(mode, "online") == 0)
        c->t.linear = TC_LINEAR_AUTOBITLINEAR;
    else if (strcmp(cls, "autobitlinear") == 0)
        return tc_err(r->err, "%s/config.json: quantization_config autobitlinear offline multiplies by "
                      "weight_scale (not bitlinear's division), which tc does not implement", r->path);
    else
        return tc_err(r->err, "%s/config.json: quantization_config bitlinear online is not a pairing tc "
                      "implements (it reads bitlinear offline and autobitlinear online)", r->path);
    return TC_OK;
}

int tc_hf_config_read(const cJSON *cfg, const char *path, tc_config *c, const tc_naming **names,
                      char **ignored, tc_error *err)
{
    memset(c, 0, sizeof *c);
    *ignored = NULL;
    const hf_family *fam = NULL;
    if (read_family(cfg, path, &fam, err))
        return TC_ERR;
    reader rd = {cfg, path, fam, err};
    const reader *r = &rd;
    c->arch = fam->arch;
    *names = fam->names;
    double eps = 0;
    if (refuse_global(r) || get_int(r, cfg, "hidden_size", 1, 0, &c->dim) ||
        get_int(r, cfg, "num_hidden_layers", 1, 0, &c->n_layers) ||
        get_int(r, cfg, "num_attention_heads", 1, 0, &c->n_heads) ||
        get_int(r, cfg, "intermediate_size", 1, 0, &c->ffn_dim) ||
        get_int(r, cfg, "vocab_size", 1, 0, &c->vocab_size) ||
        get_int(r, cfg, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads) ||
        get_int(r, cfg, "max_position_embeddings", 0, 2048, &c->max_seq_len) ||
        get_int(r, cfg, "bos_token_id", 0, -1, &c->bos_id) ||
        get_num(r, cfg, "rms_norm_eps", fam->eps_default, &eps))
        return TC_ERR;
    /* eos_token_id may be a list (Llama 3): the first is the one tc stops at. */
    const cJSON *eos = get(cfg, "eos_token_id");
    if (cJSON_IsArray(eos) && cJSON_GetArraySize(eos) > 0) {
        const cJSON *e0 = cJSON_GetArrayItem(eos, 0);
        c->eos_id = cJSON_IsNumber(e0) ? (int)e0->valuedouble : -1;
    } else if (get_int(r, cfg, "eos_token_id", 0, -1, &c->eos_id)) {
        return TC_ERR;
    }
    c->norm_eps = (float)eps;
    if (c->n_heads <= 0)
        return tc_err(err, "%s/config.json: num_attention_heads must be positive", path);
    if (c->n_layers <= 0 || c->n_layers > TC_MAX_LAYERS)
        return tc_err(err, "%s/config.json: num_hidden_layers %d is out of range", path, c->n_layers);
    if (get_int(r, cfg, "head_dim", 0, c->dim / c->n_heads, &c->head_dim))
        return TC_ERR;
    if (c->head_dim <= 0)
        return tc_err(err, "%s/config.json: head_dim must be positive", path);
    c->rope_layout = TC_ROPE_HALF;
    tc_traits *t = &c->t;
    tc_traits_llama(t, 10000.0, c->head_dim);

    /* Partial rotary dimensions, where the family applies them. */
    double prf = 1.0;
    const cJSON *rd_dict = rope_dict(cfg);
    if (get_num(r, cfg, "partial_rotary_factor", 1.0, &prf))
        return TC_ERR;
    if (rd_dict && cJSON_IsObject(rd_dict) && !fam->per_layer_rope &&
        get_num(r, rd_dict, "partial_rotary_factor", prf, &prf))
        return TC_ERR;
    if (prf != 1.0 && !fam->partial_rotary)
        return refuse(r, "partial_rotary_factor", "rotates part of each head in a family whose attention "
                      "rotates all of it");
    if (!(prf > 0 && prf <= 1.0))
        return tc_err(err, "%s/config.json: partial_rotary_factor must lie in (0, 1]", path);
    int rot_dims = (int)(c->head_dim * prf);
    if (read_ropes(r, c, rot_dims) || read_window(r, c) || read_act(r, t))
        return TC_ERR;

    int tied = 0, ab = 0, mb = 0;
    if (get_bool(r, cfg, "tie_word_embeddings", fam->tied_default, &tied))
        return TC_ERR;
    c->tied_embeddings = tied;
    if (fam->attention_bias_key && get_bool(r, cfg, "attention_bias", 0, &ab))
        return TC_ERR;
    if (fam->mlp_bias_key && get_bool(r, cfg, "mlp_bias", 0, &mb))
        return TC_ERR;
    c->qkv_bias = fam->qkv_bias_always || ab;
    t->o_bias = ab;
    t->mlp_bias = mb;
    t->qk_norm = fam->qk_norm;
    t->diff_attn = fam->diff_attn;
    if (fam->diff_attn && c->n_heads % 2)
        return tc_err(err, "%s/config.json: differential attention pairs the first half of the heads with the "
                      "second, which needs an even count, not %d", path, c->n_heads);
    if (fam->gemma && read_gemma(r, c))
        return TC_ERR;
    /* BitNet's attn_sub_norm is hidden_size wide and norms the heads'
     * output: transformers cannot build the model otherwise. */
    t->sub_norms = fam->sub_norms;
    if (t->sub_norms && c->n_heads * c->head_dim != c->dim)
        return tc_err(err, "%s/config.json: %s needs num_attention_heads x head_dim (%d x %d) equal to "
                      "hidden_size (%d) for its attn_sub_norm", path, fam->model_type, c->n_heads, c->head_dim,
                      c->dim);
    if (read_quant(r, c))
        return TC_ERR;

    /* Keys the family's class does not define: inert in transformers too. */
    size_t cap = 0, n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cfg) {
        if (in_list(inert_keys, it->string) || in_list(read_keys, it->string))
            continue;
        size_t k = strlen(it->string) + 2;
        char *grown = realloc(*ignored, cap + k + 1);
        if (!grown)
            return tc_err(err, "%s: out of memory", path);
        *ignored = grown;
        n += (size_t)snprintf(*ignored + n, k + 1, "%s%s", n ? " " : "", it->string);
        cap += k;
    }
    return TC_OK;
}

/* ---- Writing a config from the traits ------------------------------------------------- */

static cJSON *rope_dict_of(const tc_rope *r, int partial_rotary, int head_dim)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "rope_type", tc_rope_kind_name(r->kind));
    tc_json_add_float(d, "rope_theta", r->theta);
    if (partial_rotary && r->rot_dims != head_dim)
        tc_json_add_float(d, "partial_rotary_factor", (double)r->rot_dims / head_dim);
    if (r->kind == TC_ROPE_DEFAULT)
        return d;
    tc_json_add_float(d, "factor", r->factor);
    if (r->kind == TC_ROPE_LINEAR || r->kind == TC_ROPE_DYNAMIC)
        return d;
    cJSON_AddNumberToObject(d, "original_max_position_embeddings", r->orig_max_pos);
    if (r->kind == TC_ROPE_LLAMA3) {
        tc_json_add_float(d, "low_freq_factor", r->low_freq_factor);
        tc_json_add_float(d, "high_freq_factor", r->high_freq_factor);
        return d;
    }
    tc_json_add_float(d, "attention_factor", r->attn_factor);
    if (r->kind == TC_ROPE_YARN) {
        tc_json_add_float(d, "beta_fast", r->beta_fast);
        tc_json_add_float(d, "beta_slow", r->beta_slow);
        cJSON_AddBoolToObject(d, "truncate", r->truncate);
        return d;
    }
    cJSON *sf = cJSON_AddArrayToObject(d, "short_factor"), *lf = cJSON_AddArrayToObject(d, "long_factor");
    for (int i = 0; i < r->rot_dims / 2; i++) {
        cJSON_AddItemToArray(sf, tc_json_float(tc_json_float32_value(r->short_factor[i])));
        cJSON_AddItemToArray(lf, tc_json_float(tc_json_float32_value(r->long_factor[i])));
    }
    return d;
}

/* Does config b compute what a does (read back from the config written for a)? */
static int same_function(const tc_config *a, const tc_config *b)
{
    tc_config x = *a, y = *b;
    x.bos_id = y.bos_id = x.eos_id = y.eos_id = 0;
    for (int k = 0; k < 2; k++) /* only dynamic rope reads max_pos */
        if (x.t.rope[k].kind != TC_ROPE_DYNAMIC)
            x.t.rope[k].max_pos = y.t.rope[k].max_pos = 0;
    /* An unset attention scale is 1/sqrt(head_dim); Gemma's config holds it
     * as query_pre_attn_scalar, which gives it back to a float's rounding. */
    float sx = x.t.attn_scale != 0.0f ? x.t.attn_scale : 1.0f / sqrtf((float)x.head_dim);
    float sy = y.t.attn_scale != 0.0f ? y.t.attn_scale : 1.0f / sqrtf((float)y.head_dim);
    if (fabsf(sx - sy) > 1e-6f * sx)
        return 0;
    x.t.attn_scale = y.t.attn_scale = 0.0f;
    if (!x.t.window) /* the local flags mean nothing without a window */
        memset(x.t.local, 0, sizeof x.t.local), memset(y.t.local, 0, sizeof y.t.local);
    return memcmp(&x, &y, sizeof x) == 0;
}

cJSON *tc_hf_config_build(const tc_config *c, tc_error *err)
{
    const hf_family *fam = NULL;
    for (size_t i = 0; i < sizeof families / sizeof families[0] && !fam; i++)
        if (families[i].arch == c->arch)
            fam = &families[i];
    if (!fam) {
        tc_err(err, "tc does not write %s models as Hugging Face configs", tc_arch_name(c->arch));
        return NULL;
    }
    const tc_traits *t = &c->t;
    cJSON *cfg = cJSON_CreateObject();
    if (!cfg) {
        tc_err(err, "out of memory");
        return NULL;
    }
    cJSON *archs = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(fam->cls));
    cJSON_AddStringToObject(cfg, "model_type", fam->model_type);
    cJSON_AddNumberToObject(cfg, "hidden_size", c->dim);
    cJSON_AddNumberToObject(cfg, "intermediate_size", c->ffn_dim);
    cJSON_AddNumberToObject(cfg, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(cfg, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(cfg, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(cfg, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(cfg, "max_position_embeddings", c->max_seq_len);
    tc_json_add_float(cfg, "rms_norm_eps", tc_json_float32_value(c->norm_eps));
    cJSON_AddBoolToObject(cfg, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(cfg, fam->act_key, tc_act_name(t->act));
    if (fam->attention_bias_key)
        cJSON_AddBoolToObject(cfg, "attention_bias", t->o_bias);
    if (fam->mlp_bias_key)
        cJSON_AddBoolToObject(cfg, "mlp_bias", t->mlp_bias);
    if (c->bos_id >= 0)
        cJSON_AddNumberToObject(cfg, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0)
        cJSON_AddNumberToObject(cfg, "eos_token_id", c->eos_id);
    /* Unknown here, and some classes default it to an id (Phi-3: 32000) that
     * a smaller vocabulary does not hold, which transformers refuses. */
    cJSON_AddNullToObject(cfg, "pad_token_id");
    if (fam->per_layer_rope) {
        cJSON *rp = cJSON_AddObjectToObject(cfg, "rope_parameters");
        cJSON_AddItemToObject(rp, "full_attention", rope_dict_of(&t->rope[0], 0, c->head_dim));
        cJSON_AddItemToObject(rp, "sliding_attention", rope_dict_of(&t->rope[1], 0, c->head_dim));
    } else {
        cJSON_AddItemToObject(cfg, "rope_parameters", rope_dict_of(&t->rope[0], fam->partial_rotary, c->head_dim));
        if (fam->phi3_rope && t->rope[0].kind != TC_ROPE_DEFAULT && t->rope[0].kind != TC_ROPE_LINEAR &&
            t->rope[0].kind != TC_ROPE_DYNAMIC) /* phi3 reads the top-level key first */
            cJSON_AddNumberToObject(cfg, "original_max_position_embeddings", t->rope[0].orig_max_pos);
    }
    if (fam->window != WIN_NONE) {
        if (t->window > 0)
            cJSON_AddNumberToObject(cfg, "sliding_window", t->window);
        else
            cJSON_AddNullToObject(cfg, "sliding_window");
        if (fam->window == WIN_QWEN)
            cJSON_AddBoolToObject(cfg, "use_sliding_window", t->window > 0);
        if (fam->window == WIN_QWEN || fam->window == WIN_LAYER_TYPES) {
            cJSON *lt = cJSON_AddArrayToObject(cfg, "layer_types");
            for (int l = 0; l < c->n_layers; l++)
                cJSON_AddItemToArray(lt, cJSON_CreateString(tc_layer_is_local(c, l) ? "sliding_attention"
                                                                                   : "full_attention"));
        }
    }
    if (t->linear != TC_LINEAR_FLOAT) {
        cJSON *q = cJSON_AddObjectToObject(cfg, "quantization_config");
        int offline = t->linear == TC_LINEAR_BITLINEAR;
        cJSON_AddStringToObject(q, "quant_method", "bitnet");
        cJSON_AddStringToObject(q, "linear_class", offline ? "bitlinear" : "autobitlinear");
        cJSON_AddStringToObject(q, "quantization_mode", offline ? "offline" : "online");
    }
    if (fam->gemma) {
        float s = t->attn_scale != 0.0f ? t->attn_scale : 1.0f / sqrtf((float)c->head_dim);
        cJSON_AddNumberToObject(cfg, "query_pre_attn_scalar", floor(1.0 / ((double)s * s) + 0.5));
        if (t->attn_softcap > 0)
            tc_json_add_float(cfg, "attn_logit_softcapping", tc_json_float32_value(t->attn_softcap));
        else
            cJSON_AddNullToObject(cfg, "attn_logit_softcapping");
        if (t->final_softcap > 0)
            tc_json_add_float(cfg, "final_logit_softcapping", tc_json_float32_value(t->final_softcap));
        else
            cJSON_AddNullToObject(cfg, "final_logit_softcapping");
    }
    /* The config must read back as the same function: whatever the family's
     * class cannot say (q/k norms on llama, post-norms outside Gemma, a window
     * on some layers of Mistral...) is refused here rather than written. */
    tc_config back;
    const tc_naming *names;
    char *ignored = NULL;
    tc_error rerr = {{0}};
    int ok = tc_hf_config_read(cfg, "(written)", &back, &names, &ignored, &rerr) == TC_OK;
    free(ignored);
    tc_config want = *c;
    want.rope_layout = TC_ROPE_HALF; /* the writer stores rotate-half rows */
    if (!ok || !same_function(&want, &back)) {
        const char *trait = tc_traits_non_llama(c);
        tc_err(err, "a %s Hugging Face config cannot express this model%s%s%s%s", fam->model_type,
               trait ? " (" : "", trait ? trait : "", trait ? ")" : "", ok ? "" : rerr.msg);
        cJSON_Delete(cfg);
        return NULL;
    }
    return cfg;
}
