#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for tc's model families.

    python tests/reference/make_refs.py OUTDIR [--only CASE ...] [--list]

For every case of the CASES table below it builds a tiny model with
transformers' own classes (eager attention), gives every parameter seeded,
non-trivial random values (so that a missing norm, bias or scale shows in the
logits), saves it with save_pretrained in bfloat16 and reloads the saved
directory in float64.  One seeded random token sequence goes through the
reloaded model on the CPU; its logits are the reference.  It writes

    OUTDIR/<case>/config.json        as save_pretrained wrote it
    OUTDIR/<case>/model.safetensors  bfloat16 weights
    OUTDIR/<case>/ref.json           case, family, tokens, notes, what was checked
    OUTDIR/<case>/logits.f32         float32 little-endian, [n_tokens][vocab]
    OUTDIR/summary.json              one entry per case (or its error)

ref.json also records what transformers did, for whoever implements the
family in C: the rotary tables before and after the pass (dynamic and longrope
change them with the sequence length), whether they match the formulas in
expected_inv_freq() below, how many keys the last query of each layer
attended (the sliding-window boundary, measured from eager attention weights),
and "ablations": the same weights run with one trait changed, and how much
that moves the logits (a trait that moves them by less than the harness
tolerance cannot be tested by it).

Written for transformers 5.x (config.rope_parameters, from_pretrained(dtype=))
and PyTorch 2.x.  CPU only; it takes well under a minute.  The exit status is
1 when any case failed.
"""
import argparse
import json
import math
import os
import shutil
import sys
import traceback
import zlib

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

# ---- The common shape -------------------------------------------------------

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 64, 4, 2, 16, 96, 96

BASE = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=FFN,
    num_hidden_layers=2,
    num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS,
    rms_norm_eps=1e-5,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    pad_token_id=None,
    bos_token_id=1,
    eos_token_id=2,
)


def rope(kind="default", theta=10000.0, **kw):
    return dict(rope_type=kind, rope_theta=theta, **kw)


def full_layers(d):
    d["layer_types"] = ["full_attention"] * d["num_hidden_layers"]
    return d


# ---- Ablations: change one trait of a saved case ----------------------------
# cfg(d) edits the config dict before the reload; model(m) edits the loaded model.


def ab_cfg(what, fn):
    return dict(what=what, cfg=fn)


def ab_model(what, fn):
    return dict(what=what, model=fn)


def set_keys(**kw):
    def fn(d):
        d.update(kw)
        return d

    return fn


def set_rope(rp):
    return set_keys(rope_parameters=rp)


def zero_biases(m):
    for n, p in m.named_parameters():
        if n.endswith(".bias"):
            p.zero_()


def drop_qk_norm(m):
    for layer in m.model.layers:
        layer.self_attn.q_norm = torch.nn.Identity()
        layer.self_attn.k_norm = torch.nn.Identity()


def diff_lambda_init(value):
    """DiffLlama: every layer's lambda_init set to `value` (its index decides it otherwise)."""
    def fn(m):
        for layer in m.model.layers:
            layer.self_attn.lambda_init = value
    return fn


def diff_lambda_zero(m):
    """DiffLlama: the four lambda vectors zero, so that lambda = lambda_init."""
    for layer in m.model.layers:
        for n in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
            getattr(layer.self_attn, n).zero_()


def diff_no_groupnorm(m):
    for layer in m.model.layers:
        layer.self_attn.groupnorm = torch.nn.Identity()


def untie_head(m):
    # The head becomes an independent copy, then is perturbed: shows the head is the embedding.
    w = m.get_input_embeddings().weight.detach().clone()
    m.lm_head.weight = torch.nn.Parameter(w + 0.1 * torch.randn(w.shape, dtype=w.dtype))


def rot_pairs(d):
    """Rotated pairs of one head, as the case's config says."""
    hd = d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"]
    prf = d.get("partial_rotary_factor") or (d.get("rope_parameters") or {}).get("partial_rotary_factor") or 1.0
    return int(hd * prf) // 2


def longrope_factors(n):
    short = [round(1.0 + 1.0 * i / max(n - 1, 1), 4) for i in range(n)]
    long = [round(2.0 + 6.0 * i / max(n - 1, 1), 4) for i in range(n)]
    return short, long


SHORT8, LONG8 = longrope_factors(8)

# ---- The cases ----------------------------------------------------------------
# cls: transformers' class name prefix (XxxConfig, XxxForCausalLM).  cfg: config
# kwargs over BASE.  variants: alternative kwargs tried in order when a config
# is refused or does not keep what it was given (checked by `verify`).

CASES = [
    dict(name="llama", family="llama", cls="Llama", n_tokens=64,
         cfg=dict(rope_parameters=rope()),
         notes="plain Llama: RMSNorm, GQA 4/2, SwiGLU, default RoPE theta 1e4, untied head",
         ablations=[ab_cfg("rms_norm_eps=0.5", set_keys(rms_norm_eps=0.5)),
                    ab_cfg("rope_theta=1e5", set_rope(rope(theta=1e5)))]),
    dict(name="llama_tied", family="llama", cls="Llama", n_tokens=64,
         cfg=dict(rope_parameters=rope(), tie_word_embeddings=True),
         notes="tie_word_embeddings: the head is the token embedding (no lm_head tensor stored)",
         ablations=[ab_model("head = embedding + noise", untie_head)]),
    dict(name="llama_bias", family="llama", cls="Llama", n_tokens=64,
         cfg=dict(rope_parameters=rope(), attention_bias=True, mlp_bias=True, head_dim=24),
         notes="attention_bias (q, k, v and o biases), mlp_bias (gate, up, down biases), "
               "head_dim 24 != hidden/heads (q is 96 wide, k/v 48)",
         ablations=[ab_model("all biases zero", zero_biases)]),
    dict(name="llama_gelu", family="llama", cls="Llama", n_tokens=64, mlp_gain=2.0,
         cfg=dict(rope_parameters=rope(), hidden_act="gelu"),
         notes="hidden_act gelu (exact, erf) in the gated MLP: gelu(gate) * up",
         ablations=[ab_cfg("hidden_act=silu", set_keys(hidden_act="silu")),
                    ab_cfg("hidden_act=gelu_pytorch_tanh", set_keys(hidden_act="gelu_pytorch_tanh"))]),
    dict(name="llama_gelu_tanh", family="llama", cls="Llama", n_tokens=64, mlp_gain=2.0,
         cfg=dict(rope_parameters=rope(), hidden_act="gelu_pytorch_tanh"),
         notes="hidden_act gelu_pytorch_tanh (tanh approximation) in the gated MLP",
         ablations=[ab_cfg("hidden_act=gelu (erf)", set_keys(hidden_act="gelu"))]),
    dict(name="llama_linear", family="llama", cls="Llama", n_tokens=256,
         cfg=dict(rope_parameters=rope("linear", 10000.0, factor=4.0)),
         notes="RoPE linear scaling, factor 4: inv_freq / 4",
         ablations=[ab_cfg("rope default", set_rope(rope()))]),
    dict(name="llama_dynamic", family="llama", cls="Llama", n_tokens=256,
         cfg=dict(rope_parameters=rope("dynamic", 10000.0, factor=2.0), max_position_embeddings=64),
         notes="RoPE dynamic NTK, factor 2, max_position_embeddings 64 and 256 tokens: the base "
               "grows to theta * (factor*seq_len/max_pos - (factor-1))^(d/(d-2)) with seq_len = 256, "
               "for every position of the pass",
         ablations=[ab_cfg("rope default", set_rope(rope()))]),
    dict(name="llama3", family="llama", cls="Llama", n_tokens=512,
         cfg=dict(rope_parameters=rope("llama3", 500000.0, factor=8.0, low_freq_factor=1.0,
                                       high_freq_factor=4.0, original_max_position_embeddings=64),
                  max_position_embeddings=2048),
         notes="RoPE llama3 (Llama 3.1), factor 8, low/high freq factors 1/4, original context 64, "
               "theta 5e5",
         ablations=[ab_cfg("rope default (theta 5e5)", set_rope(rope(theta=500000.0))),
                    ab_cfg("rope linear factor 8", set_rope(rope("linear", 500000.0, factor=8.0)))]),
    dict(name="llama_yarn", family="llama", cls="Llama", n_tokens=256,
         cfg=dict(rope_parameters=rope("yarn", 10000.0, factor=4.0, original_max_position_embeddings=64),
                  max_position_embeddings=256),
         notes="RoPE yarn, factor 4, original context 64, max_position_embeddings 256: ramped "
               "interpolation (beta_fast 32, beta_slow 1) and cos/sin times the attention factor "
               "0.1*ln(factor)+1",
         ablations=[ab_cfg("rope default", set_rope(rope())),
                    ab_cfg("yarn attention_factor=1",
                           set_rope(rope("yarn", 10000.0, factor=4.0, original_max_position_embeddings=64,
                                         attention_factor=1.0)))]),
    dict(name="mistral_swa", family="mistral", cls="Mistral", n_tokens=64,
         cfg=dict(rope_parameters=rope(), sliding_window=16, head_dim=16),
         notes="Mistral with sliding_window 16 on every layer",
         ablations=[ab_cfg("sliding_window=4096", set_keys(sliding_window=4096))]),
    dict(name="qwen2", family="qwen2", cls="Qwen2", n_tokens=64,
         cfg=dict(rope_parameters=rope(theta=1e6)),
         notes="Qwen2: q/k/v biases (no o bias), rope theta 1e6, no sliding window",
         ablations=[ab_model("q/k/v biases zero", zero_biases)]),
    dict(name="qwen2_swa", family="qwen2", cls="Qwen2", n_tokens=64,
         cfg=dict(rope_parameters=rope(theta=1e6), num_hidden_layers=3, use_sliding_window=True,
                  sliding_window=16, max_window_layers=1),
         expect_layer_types=["full_attention", "sliding_attention", "sliding_attention"],
         notes="Qwen2 use_sliding_window, sliding_window 16, max_window_layers 1: layer 0 full, "
               "layers 1-2 sliding",
         ablations=[ab_cfg("sliding_window=4096", set_keys(sliding_window=4096)),
                    ab_cfg("every layer full", full_layers)]),
    dict(name="qwen3", family="qwen3", cls="Qwen3", n_tokens=64,
         cfg=dict(rope_parameters=rope(theta=1e6), head_dim=16),
         notes="Qwen3: RMSNorm of each q and k head (weight [head_dim]) before RoPE, no biases",
         ablations=[ab_model("no q/k norm", drop_qk_norm)]),
    dict(name="qwen3_swa", family="qwen3", cls="Qwen3", n_tokens=64,
         cfg=dict(rope_parameters=rope(theta=1e6), head_dim=16, num_hidden_layers=3,
                  use_sliding_window=True, sliding_window=16, max_window_layers=1),
         expect_layer_types=["full_attention", "sliding_attention", "sliding_attention"],
         notes="Qwen3 with q/k norms, use_sliding_window, sliding_window 16, max_window_layers 1: "
               "layer 0 full, layers 1-2 sliding",
         ablations=[ab_cfg("sliding_window=4096", set_keys(sliding_window=4096))]),
    dict(name="gemma2", family="gemma2", cls="Gemma2", n_tokens=64, qk_gain=2.0,
         cfg=dict(rope_parameters=rope(), num_hidden_layers=4, head_dim=16, sliding_window=16,
                  layer_types=["sliding_attention", "full_attention"] * 2,
                  attn_logit_softcapping=5.0, final_logit_softcapping=3.0, query_pre_attn_scalar=24,
                  hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, rms_norm_eps=1e-6,
                  pad_token_id=0),
         expect_layer_types=["sliding_attention", "full_attention"] * 2,
         notes="Gemma2: embedding * sqrt(hidden), (1+w) RMSNorms, 4 norms per layer (input, "
               "post-attention, pre- and post-feedforward), GeGLU (gelu_pytorch_tanh), attention "
               "scale query_pre_attn_scalar^-0.5 = 24^-0.5, attention logit softcap 5, final logit "
               "softcap 3, sliding window 16 on layers 0 and 2, tied head",
         ablations=[ab_cfg("attn_logit_softcapping=None", set_keys(attn_logit_softcapping=None)),
                    ab_cfg("final_logit_softcapping=None", set_keys(final_logit_softcapping=None)),
                    ab_cfg("query_pre_attn_scalar=16", set_keys(query_pre_attn_scalar=16)),
                    ab_cfg("sliding_window=4096", set_keys(sliding_window=4096)),
                    ab_cfg("hidden_activation=gelu (erf)", set_keys(hidden_activation="gelu"))]),
    dict(name="gemma3", family="gemma3", cls="Gemma3Text", model_cls="Gemma3ForCausalLM", n_tokens=64,
         cfg=dict(num_hidden_layers=4, head_dim=16, sliding_window=16,
                  layer_types=["sliding_attention", "full_attention"] * 2,
                  rope_parameters={"full_attention": rope("linear", 1e6, factor=8.0),
                                   "sliding_attention": rope("default", 10000.0)},
                  query_pre_attn_scalar=24, hidden_activation="gelu_pytorch_tanh",
                  tie_word_embeddings=True, rms_norm_eps=1e-6, pad_token_id=0),
         variants=[dict(rope_parameters=None, rope_theta=1e6, rope_local_base_freq=10000.0,
                        rope_scaling=dict(rope_type="linear", factor=8.0))],
         expect_layer_types=["sliding_attention", "full_attention"] * 2,
         notes="Gemma3 text: Gemma2's layer shape plus (1+w) RMSNorm of each q and k head, no "
               "softcaps, attention scale 24^-0.5, sliding window 16 on layers 0 and 2; RoPE per "
               "layer type: full layers linear factor 8 theta 1e6, sliding layers default theta 1e4",
         ablations=[ab_cfg("full-attention rope default theta 1e6",
                           lambda d: set_rope({"full_attention": rope("default", 1e6),
                                               "sliding_attention": rope("default", 10000.0)})(d)),
                    ab_cfg("sliding rope theta 1e6",
                           lambda d: set_rope({"full_attention": rope("linear", 1e6, factor=8.0),
                                               "sliding_attention": rope("default", 1e6)})(d)),
                    ab_cfg("query_pre_attn_scalar=16", set_keys(query_pre_attn_scalar=16)),
                    ab_cfg("sliding_window=4096", set_keys(sliding_window=4096))]),
    dict(name="phi3", family="phi3", cls="Phi3", n_tokens=64,
         cfg=dict(rope_parameters=rope()),
         notes="Phi3: fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows)",
         ablations=[ab_cfg("rms_norm_eps=0.5", set_keys(rms_norm_eps=0.5))]),
    dict(name="phi3_partial", family="phi3", cls="Phi3", n_tokens=64,
         cfg=dict(rope_parameters=rope(partial_rotary_factor=0.5), partial_rotary_factor=0.5),
         variants=[dict(rope_parameters=rope(), partial_rotary_factor=0.5)],
         expect_rot_pairs=4,
         notes="Phi3 partial_rotary_factor 0.5: RoPE (rotate-half) on the first 8 of 16 dims of each "
               "head, the rest unrotated",
         ablations=[ab_cfg("partial_rotary_factor=1",
                           set_keys(partial_rotary_factor=1.0, rope_parameters=rope(partial_rotary_factor=1.0)))]),
    dict(name="phi3_longrope", family="phi3", cls="Phi3", n_tokens=128,
         cfg=dict(rope_parameters=rope("longrope", 10000.0, short_factor=SHORT8, long_factor=LONG8,
                                       original_max_position_embeddings=64),
                  original_max_position_embeddings=64, max_position_embeddings=256),
         notes="Phi3 longrope: 128 tokens > original context 64, so the long factors apply (to every "
               "position of the pass); attention factor sqrt(1 + ln(256/64)/ln(64)) on cos/sin",
         ablations=[ab_cfg("long factors = short factors",
                           set_rope(rope("longrope", 10000.0, short_factor=SHORT8, long_factor=SHORT8,
                                         original_max_position_embeddings=64)))]),
    dict(name="diffllama", family="diffllama", cls="DiffLlama", n_tokens=64,
         cfg=dict(rope_parameters=rope(), num_hidden_layers=3, head_dim=16),
         variants=[dict(rope_parameters=None, rope_theta=10000.0)],
         notes="DiffLlama: differential attention. Query heads j and j+2 form pair j; the pair's map is "
               "softmax_j - lambda * softmax_(j+2) over the values of both heads' kv heads side by side "
               "(repeat_kv, then the heads' halves concatenated), each pair's 32-wide output RMS-normed without "
               "a weight (eps rms_norm_eps) times 1 - lambda_init; lambda = exp(lq1.lk1) - exp(lq2.lk2) + "
               "lambda_init, lambda_init = 0.8 - 0.6 exp(-0.3 layer) (0.2, 0.356, 0.471 over 3 layers); "
               "lambda vectors N(0, 0.3^2)",
         ablations=[ab_model("lambda_init 0 (plain difference, no output scale)", diff_lambda_init(0.0)),
                    ab_model("lambda_init of layer 0 on every layer", diff_lambda_init(0.2)),
                    ab_model("lambda vectors zero (lambda = lambda_init)", diff_lambda_zero),
                    ab_model("no groupnorm", diff_no_groupnorm)]),
    dict(name="diffllama_bias", family="diffllama", cls="DiffLlama", n_tokens=64,
         cfg=dict(rope_parameters=rope(), attention_bias=True, head_dim=16),
         variants=[dict(rope_parameters=None, rope_theta=10000.0)],
         notes="DiffLlama with attention_bias (q, k, v and o biases)",
         ablations=[ab_model("all biases zero", zero_biases)]),
]

# ---- Steps ------------------------------------------------------------------------


def case_seed(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def classes(case):
    cfg_cls = getattr(transformers, case["cls"] + "Config")
    model_cls = getattr(transformers, case.get("model_cls", case["cls"] + "ForCausalLM"))
    return cfg_cls, model_cls


def build_config(case):
    """The case's config; the first variant that transformers accepts and keeps."""
    cfg_cls, _ = classes(case)
    tried = []
    for extra in [{}] + case.get("variants", []):
        kw = dict(BASE, **case["cfg"])
        kw.update(extra)
        kw = {k: v for k, v in kw.items() if not (v is None and k in extra)}
        try:
            cfg = cfg_cls(**kw)
            check_config(case, cfg)
            return cfg, extra
        except Exception as e:  # noqa: BLE001 - try the next variant
            tried.append(f"{type(e).__name__}: {e}")
    raise RuntimeError("config refused: " + " | ".join(tried))


def check_config(case, cfg):
    want = case.get("expect_layer_types")
    if want is not None and list(getattr(cfg, "layer_types", None) or []) != want:
        raise ValueError(f"layer_types {getattr(cfg, 'layer_types', None)} != {want}")
    for k in ("sliding_window", "attn_logit_softcapping", "final_logit_softcapping",
              "query_pre_attn_scalar", "head_dim", "attention_bias", "mlp_bias"):
        if k in case["cfg"] and getattr(cfg, k, None) != case["cfg"][k]:
            raise ValueError(f"config did not keep {k}={case['cfg'][k]} (has {getattr(cfg, k, None)})")


def norm_is_offset(name, family):
    """Gemma's RMSNorms multiply by (1 + w)."""
    return family in ("gemma2", "gemma3") and "norm" in name


@torch.no_grad()
def reinit(model, case, seed):
    """Every parameter gets seeded values that make each trait visible."""
    g = torch.Generator().manual_seed(seed)
    qk_gain = case.get("qk_gain", 1.0)
    mlp_gain = case.get("mlp_gain", 1.0)
    # Gemma multiplies the embedding by sqrt(hidden) = 8 and ties the head: a larger
    # embedding would make the residual stream (and the argmax) the input token's row.
    emb_std = 0.1 if case["family"] in ("gemma2", "gemma3") else 0.5
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.ndim == 1 and name.endswith("bias"):
            v = 0.3 * r
        elif p.ndim == 1 and ".lambda_" in name:
            # DiffLlama's lambda vectors: dot products of about +-0.4, so lambda
            # moves around lambda_init without swamping it.
            v = 0.3 * r
        elif p.ndim == 1:
            v = 0.3 * r if norm_is_offset(name, case["family"]) else 1.0 + 0.3 * r
        elif "embed_tokens" in name:
            v = emb_std * r
        else:
            fan_in = p.shape[1]
            if "lm_head" in name:
                gain = 3.0
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                gain = qk_gain
            elif name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight")):
                gain = mlp_gain
            else:
                gain = 1.0
            v = gain / math.sqrt(fan_in) * r
        p.copy_(v.to(p.dtype))


def save_bf16(model, out_dir):
    model = model.to(torch.bfloat16)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    for f in os.listdir(out_dir):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out_dir, f))
    return {n: p.detach().to(torch.float64).clone() for n, p in model.state_dict().items()}


def load_f64(model_cls, d, config=None):
    kw = dict(dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    if config is not None:
        kw["config"] = config
    model, info = model_cls.from_pretrained(d, **kw)
    model.eval()
    return model, info


def check_loaded(model, info, saved):
    """The reloaded model holds exactly the saved bf16 values, in float64."""
    # A missing key would have been initialised at random: the value check below catches it.
    bad = [k for k in ("unexpected_keys", "mismatched_keys") if info.get(k)]
    if bad:
        raise RuntimeError("reload: " + "; ".join(f"{k}={info[k]}" for k in bad))
    sd = model.state_dict()
    for n, v in saved.items():
        if n not in sd:
            raise RuntimeError(f"reload lost {n}")
        if sd[n].dtype != torch.float64:
            raise RuntimeError(f"{n} reloaded as {sd[n].dtype}")
        if not torch.equal(sd[n], v):
            raise RuntimeError(f"{n} reloaded with other values")


def random_tokens(seed, n):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, VOCAB, (n,), generator=g)


@torch.no_grad()
def run(model, tokens, want_attn=False):
    out = model(input_ids=tokens[None], use_cache=False, output_attentions=want_attn)
    logits = out.logits[0].to(torch.float64).numpy()
    keys = None
    if want_attn and out.attentions is not None:
        # Keys with non-zero weight for the last query, per layer (max over heads).
        keys = [int((a[0, :, -1, :] > 0).sum(-1).max()) for a in out.attentions]
    return logits, keys


def rope_tables(model):
    """Every inverse-frequency buffer and attention scaling of the rotary modules."""
    out = {}
    for mname, mod in model.named_modules():
        if not type(mod).__name__.endswith("RotaryEmbedding"):
            continue
        entry = {"class": type(mod).__name__}
        for bname, b in mod.named_buffers(recurse=False):
            if "inv_freq" in bname:
                entry[bname] = [float(x) for x in b.detach().cpu().to(torch.float64)]
                entry[bname + "_dtype"] = str(b.dtype).replace("torch.", "")
        for aname, a in vars(mod).items():
            if any(w in aname for w in ("scaling", "rope_type", "layer_types", "max_seq_len", "original_max")) and \
                    isinstance(a, (int, float, str, list, dict)):
                entry[aname] = a
        out[mname] = entry
    return out


def expected_inv_freq(rp, rot_dim, max_pos, seq_len):
    """transformers' formulas for each rope_type (float64); (inv_freq, attention factor)."""
    kind = rp.get("rope_type", "default")
    base = rp["rope_theta"]
    exps = np.arange(0, rot_dim, 2, dtype=np.float64) / rot_dim
    inv = 1.0 / base ** exps
    attn = 1.0
    if kind == "linear":
        inv = inv / rp["factor"]
    elif kind == "dynamic":
        s = max(seq_len, max_pos)
        f = rp["factor"]
        b = base * (f * s / max_pos - (f - 1)) ** (rot_dim / (rot_dim - 2))
        inv = 1.0 / b ** exps
    elif kind == "llama3":
        f, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / lo, inv / f, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / f + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        inv = np.where(medium, smoothed, scaled)
    elif kind == "yarn":
        f = rp["factor"]
        old = rp.get("original_max_position_embeddings") or max_pos
        attn = rp.get("attention_factor") or 0.1 * math.log(f) + 1.0
        bf, bs = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

        def corr(rot):
            return rot_dim * math.log(old / (rot * 2 * math.pi)) / (2 * math.log(base))

        lo, hi = corr(bf), corr(bs)
        if rp.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, rot_dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(rot_dim // 2, dtype=np.float64) - lo) / (hi - lo), 0, 1)
        extra = 1 - ramp
        inv = (inv / f) * (1 - extra) + inv * extra
    elif kind == "longrope":
        old = rp.get("original_max_position_embeddings") or max_pos
        fac = rp["long_factor"] if seq_len > old else rp["short_factor"]
        inv = inv / np.asarray(fac, dtype=np.float64)
        f = max_pos / old
        attn = rp.get("attention_factor") or (1.0 if f <= 1 else math.sqrt(1 + math.log(f) / math.log(old)))
    return inv, attn


def rope_check(case, cfg_dict, tables, seq_len):
    """Do transformers' buffers after the pass match expected_inv_freq()?"""
    rps = cfg_dict.get("rope_parameters") or {}
    if "rope_type" in rps or "rope_theta" in rps:
        rps = {"default": rps}
    rot_dim = 2 * rot_pairs(cfg_dict)
    got = {f"{m}.{k}": v for m, e in tables.items() for k, v in e.items()
           if "inv_freq" in k and not k.endswith("_dtype") and "original" not in k and "long_inv" not in k}
    res = {}
    for lt, rp in rps.items():
        want, attn = expected_inv_freq(rp, rot_dim, cfg_dict["max_position_embeddings"], seq_len)
        match = [name for name, v in got.items()
                 if len(v) == len(want) and np.allclose(v, want, rtol=2e-6, atol=0)]
        res[lt] = {"expected_inv_freq": [float(x) for x in want], "expected_attention_factor": attn,
                   "matching_buffers": match}
        if rp.get("rope_type") == "llama3":
            old, lo, hi = rp["original_max_position_embeddings"], rp["low_freq_factor"], rp["high_freq_factor"]
            base_inv = 1.0 / rp["rope_theta"] ** (np.arange(0, rot_dim, 2) / rot_dim)
            wl = 2 * math.pi / base_inv
            res[lt]["llama3_pairs"] = ["kept" if w < old / hi else "scaled" if w > old / lo else "smoothed"
                                       for w in wl]
    return res


def rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def ablate(case, model_cls, d, tokens, ref):
    out = []
    with open(os.path.join(d, "config.json")) as f:
        cfg_dict = json.load(f)
    cfg_cls, _ = classes(case)
    for ab in case.get("ablations", []):
        try:
            cfg = None
            if "cfg" in ab:
                cd = ab["cfg"](json.loads(json.dumps(cfg_dict)))
                cfg = cfg_cls.from_dict(cd)
            model, _ = load_f64(model_cls, d, cfg)
            if "model" in ab:
                with torch.no_grad():
                    ab["model"](model)
            logits, _ = run(model, tokens)
            out.append({"what": ab["what"], "max_rel_diff": rel_diff(logits, ref),
                        "argmax_agree": float(np.mean(logits.argmax(-1) == ref.argmax(-1)))})
        except Exception as e:  # noqa: BLE001 - report, do not stop the case
            out.append({"what": ab["what"], "error": f"{type(e).__name__}: {e}"})
    return out


def make_case(case, outdir):
    name = case["name"]
    seed = case_seed(name)
    d = os.path.join(outdir, name)
    shutil.rmtree(d, ignore_errors=True)
    cfg_cls, model_cls = classes(case)

    torch.manual_seed(seed)
    cfg, variant = build_config(case)
    model = model_cls(cfg)
    model.eval()
    reinit(model, case, seed)
    saved = save_bf16(model, d)

    model, info = load_f64(model_cls, d)
    check_loaded(model, info, saved)
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"attention is {model.config._attn_implementation}, not eager")
    tokens = random_tokens(seed, case["n_tokens"])
    rope_init = rope_tables(model)
    logits, keys = run(model, tokens, want_attn=True)
    rope_used = rope_tables(model)
    if not np.all(np.isfinite(logits)):
        raise RuntimeError("non-finite logits")
    again, _ = run(model, tokens)
    if not np.array_equal(again, logits):
        raise RuntimeError("two passes differ")

    with open(os.path.join(d, "config.json")) as f:
        cfg_dict = json.load(f)
    if "expect_rot_pairs" in case:
        lens = {len(v) for e in rope_used.values() for k, v in e.items()
                if "inv_freq" in k and not k.endswith("_dtype")}
        if lens != {case["expect_rot_pairs"]}:
            raise RuntimeError(f"rotary tables have {lens} pairs, want {case['expect_rot_pairs']}")

    logits.astype("<f4").tofile(os.path.join(d, "logits.f32"))
    ref = {
        "case": name,
        "family": case["family"],
        "model_type": cfg_dict.get("model_type"),
        "n_tokens": int(case["n_tokens"]),
        "vocab": int(logits.shape[1]),
        "tokens": [int(t) for t in tokens],
        "logits_file": "logits.f32",
        "max_abs_logit": float(np.max(np.abs(logits))),
        "logit_std": float(np.std(logits)),
        "notes": case["notes"],
        "seed": seed,
        "config_variant": {k: v for k, v in variant.items()} or None,
        "layer_types": cfg_dict.get("layer_types"),
        "keys_attended_by_last_query": keys,
        "rope_before_pass": rope_init,
        "rope_after_pass": rope_used,
        "rope_check": rope_check(case, cfg_dict, rope_used, case["n_tokens"]),
        "ablations": ablate(case, model_cls, d, tokens, logits),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    a = ap.parse_args()
    if a.list:
        print("\n".join(c["name"] for c in CASES))
        return 0
    if not a.outdir:
        ap.error("OUTDIR is required")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    os.makedirs(a.outdir, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")
    summary, failed = [], 0
    for case in CASES:
        if a.only and case["name"] not in a.only:
            continue
        try:
            ref = make_case(case, a.outdir)
            abl = ", ".join(f"{x['what']}: " + (f"{x['max_rel_diff']:.3g}" if "max_rel_diff" in x else x["error"])
                            for x in ref["ablations"])
            print(f"{case['name']:16s} ok  max|logit| {ref['max_abs_logit']:.3f}  keys {ref['keys_attended_by_last_query']}"
                  f"  rope match {[(k, bool(v['matching_buffers'])) for k, v in ref['rope_check'].items()]}"
                  f"  ablations [{abl}]", flush=True)
            summary.append({"case": case["name"], "ok": True, "max_abs_logit": ref["max_abs_logit"],
                            "ablations": ref["ablations"], "rope_check_ok":
                            all(bool(v["matching_buffers"]) for v in ref["rope_check"].values())})
        except Exception as e:  # noqa: BLE001 - one case's failure must not hide the others
            failed += 1
            print(f"{case['name']:16s} FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
            shutil.rmtree(os.path.join(a.outdir, case["name"]), ignore_errors=True)
            summary.append({"case": case["name"], "ok": False, "error": f"{type(e).__name__}: {e}"})
    n_run = len(summary)
    if a.only:
        # The cases not regenerated keep their entries (in the table's order).
        path = os.path.join(a.outdir, "summary.json")
        try:
            with open(path) as f:
                old = {e["case"]: e for e in json.load(f).get("cases", [])}
        except (OSError, ValueError):
            old = {}
        new = {e["case"]: e for e in summary}
        summary = [new.get(c["name"]) or old[c["name"]] for c in CASES if c["name"] in new or c["name"] in old]
    with open(os.path.join(a.outdir, "summary.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "cases": summary}, f,
                  indent=1)
        f.write("\n")
    print(f"{n_run - failed} of {n_run} cases written to {a.outdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
