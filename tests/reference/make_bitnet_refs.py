#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for ternary-trained models.

    python tests/reference/make_bitnet_refs.py OUTDIR [--assets DIR]

Two kinds of case, each written to OUTDIR/<case>/:

* Synthetic checkpoints built here with seeded random weights, stored the way
  the real ones are stored, then loaded by transformers' own from_pretrained
  (so transformers' BitLinear / AutoBitLinear computes the reference):
    bitnet_packed   BitNetForCausalLM, quantization_mode offline: uint8
                    weights packed 4 rows to a byte, one bf16 inverse scale
    bitnet_bf16     BitNetForCausalLM, quantization_mode online: bf16 master
                    weights that transformers quantizes when it runs
    llama_bitnet    LlamaForCausalLM with the same offline quantization_config
                    (no sub-norms), as HF1BitLLM's checkpoints are
  Their shapes are awkward on purpose: hidden 96 (not a multiple of 128), 3
  heads of 32 with 1 kv head, an intermediate size of 160.  Each gets
  config.json, model.safetensors, logits.f32 ([n_tokens][vocab] float32) and
  ref.json (tokens, versions, ablations).
* With --assets DIR: the ternary asset models (models/bitnet12,
  models/bitnet12-bf16, models/deep16-1.58).  Only ref.json and logits.f32
  are written: the logits of the first 128 tokens of the first window of the
  model's references.json.

Ablations: the same checkpoint with the scale multiplied instead of divided,
and with activations left unquantized, and how far each moves the logits
(max |delta| / max |logit|), so a test knows a convention bug is visible.

CPU, float64, eager attention.  Written for transformers 5.x.
"""
import argparse
import json
import os
import sys
import traceback
import zlib

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers.integrations import bitnet as hf_bitnet  # noqa: E402

SHAPE = dict(vocab_size=96, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
             num_attention_heads=3, num_key_value_heads=1, rms_norm_eps=1e-5,
             max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=None,
             bos_token_id=1, eos_token_id=2)
N_TOKENS = 64
OFFLINE = {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}
ONLINE = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}


def seeded(name):
    return zlib.crc32(name.encode())


def build_float(case, cls, cfg_cls, extra):
    torch.manual_seed(seeded(case))
    cfg = cfg_cls(**SHAPE, **extra)
    model = cls(cfg).to(torch.float32)
    g = torch.Generator().manual_seed(seeded(case) + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return cfg, model


def block_linears(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]


def ternary(w):
    """transformers' absmean: the inverse scale and the codes, in float32."""
    w = w.to(torch.float32)
    scale = 1.0 / w.abs().mean().clamp(min=1e-5)
    return scale, (w * scale).round().clamp(-1, 1)


def save(case, out, cfg, model, mode):
    d = os.path.join(out, case)
    os.makedirs(d, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    for name in block_linears(model):
        w = sd[name + ".weight"]
        if mode == "offline":
            scale, t = ternary(w)
            sd[name + ".weight"] = hf_bitnet.pack_weights(t.to(torch.int8).clone())
            sd[name + ".weight_scale"] = scale.reshape(1).to(torch.bfloat16)
    for k, v in sd.items():
        if v.dtype.is_floating_point:
            sd[k] = v.to(torch.bfloat16).contiguous()
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = cfg.to_dict()
    c["quantization_config"] = OFFLINE if mode == "offline" else ONLINE
    c["dtype"] = "bfloat16"
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=1, sort_keys=True)
    return d


def load(d):
    m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
    m.eval()
    return m


def logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].to(torch.float64).numpy()


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def ablations(model, tokens, ref):
    """How far two convention bugs move the logits."""
    out = {}
    lin = [m for m in model.modules() if hasattr(m, "weight_scale")]
    if lin:
        saved = [m.weight_scale.data.clone() for m in lin]
        for m in lin:
            m.weight_scale.data = 1.0 / m.weight_scale.data
        out["scale_multiplied"] = rel(logits(model, tokens), ref)
        for m, s in zip(lin, saved):
            m.weight_scale.data = s
    quant = [m for m in model.modules() if hasattr(m, "activation_quant")]
    if quant:
        saved = [m.activation_quant for m in quant]
        for m in quant:
            m.activation_quant = lambda x, num_bits=8: (x, torch.ones_like(x[..., :1]))
        try:
            out["activations_unquantized"] = rel(logits(model, tokens), ref)
        except Exception as e:  # the module's signature differs: record it, never guess
            out["activations_unquantized"] = "not measured: %s" % e
        for m, s in zip(quant, saved):
            m.activation_quant = s
    return out


def describe(model):
    kinds = sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                    if hasattr(m, "weight_scale") or "BitLinear" in type(m).__name__})
    return {"class": type(model).__name__, "linear_classes": kinds}


def write_case(d, case, tokens, ref, extra):
    ref.astype("<f4").tofile(os.path.join(d, "logits.f32"))
    meta = {"case": case, "tokens": tokens, "vocab": int(ref.shape[1]), "max_abs_logit": float(np.abs(ref).max()),
            "transformers": transformers.__version__, "torch": torch.__version__, "dtype": "float64",
            "attn_implementation": "eager"}
    meta.update(extra)
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(meta, f, indent=1)


SYNTH = [
    ("bitnet_packed", "BitNetForCausalLM", "BitNetConfig", {"hidden_act": "relu2"}, "offline"),
    ("bitnet_bf16", "BitNetForCausalLM", "BitNetConfig", {"hidden_act": "relu2"}, "online"),
    ("llama_bitnet", "LlamaForCausalLM", "LlamaConfig", {"hidden_act": "silu"}, "offline"),
]


def synth_case(out, case, cls, cfg_cls, extra, mode):
    cfg, model = build_float(case, getattr(transformers, cls), getattr(transformers, cfg_cls), extra)
    d = save(case, out, cfg, model, mode)
    m = load(d)
    g = torch.Generator().manual_seed(seeded(case) + 2)
    tokens = [1] + torch.randint(3, SHAPE["vocab_size"], (N_TOKENS - 1,), generator=g).tolist()
    ref = logits(m, tokens)
    again = logits(m, tokens)
    assert np.array_equal(ref, again), "two passes differ"
    write_case(d, case, tokens, ref, {"mode": mode, "loaded": describe(m), "ablations": ablations(m, tokens, ref)})
    return {"case": case, "ok": True, "max_abs_logit": float(np.abs(ref).max())}


def asset_case(out, assets, name):
    src = os.path.join(assets, "models", name)
    with open(os.path.join(src, "references.json")) as f:
        refs = json.load(f)
    tokens = refs["windows"][0][:128]
    m = load(src)
    ref = logits(m, tokens)
    d = os.path.join(out, "asset_" + name.replace("-", "_").replace(".", "_"))
    os.makedirs(d, exist_ok=True)
    write_case(d, name, tokens, ref, {"model": "models/" + name, "loaded": describe(m),
                                      "ablations": ablations(m, tokens, ref)})
    return {"case": name, "ok": True, "max_abs_logit": float(np.abs(ref).max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--assets")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(4)
    summary, bad = [], 0
    jobs = [(synth_case, (a.out,) + c) for c in SYNTH]
    if a.assets:
        jobs += [(asset_case, (a.out, a.assets, n)) for n in ("bitnet12", "bitnet12-bf16", "deep16-1.58")]
    for fn, args in jobs:
        try:
            r = fn(*args)
        except Exception:
            r = {"case": args[1] if fn is synth_case else args[2], "ok": False, "error": traceback.format_exc()}
            bad += 1
        print(json.dumps(r)[:2000], flush=True)
        summary.append(r)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
