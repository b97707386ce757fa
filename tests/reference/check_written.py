#!/usr/bin/env python3
"""Checks checkpoints that tc wrote with transformers itself.

    TC_REFERENCE_OUT=DIR ./build/test_reference      # tc writes its copies into DIR
    python tests/reference/check_written.py DIR      # on a machine with PyTorch and transformers

Every directory under DIR holds a Hugging Face checkpoint written by tc (the
reference cases rewritten from their config, rewritten from their traits
alone, or pruned), tokens.json and tc_logits.f32: tc's own logits on that
checkpoint, [n_tokens][vocab] float32.  Each is loaded with stock
transformers in float64 (eager attention) and run on the same tokens; the
logits must equal tc's within 1e-4 of max |logit|.  A config with tc-prune's
drop_attn_list / drop_mlp_list gets those sub-layers replaced by modules that
add zero, which is what the lists mean (tests/transformers/compare_logits.py).

A ternary-trained checkpoint (quantization_config.quant_method "bitnet",
written by TC_REFERENCE_OUT=DIR ./build/test_bitnet_convert) quantizes its
activations to int8, where a float difference of 1e-7 can move one value
across a rounding boundary and a later logit by ~0.1; it is judged as
tc's BitNet tests judge it: >= 99 % of positions within 1e-3 of max |logit|
and top-1 agreement >= 99 %.

Prints one line per checkpoint and exits 1 when any differs.
"""
import json
import pathlib
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

TOL = 1e-4


class ZeroAttention(torch.nn.Module):
    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states), None


class ZeroMLP(torch.nn.Module):
    def forward(self, hidden_states):
        return torch.zeros_like(hidden_states)


def check(d: pathlib.Path):
    cfg = json.loads((d / "config.json").read_text())
    tokens = json.loads((d / "tokens.json").read_text())["tokens"]
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
    model.eval()
    for layer in cfg.get("drop_attn_list", []):
        model.model.layers[layer].self_attn = ZeroAttention()
    for layer in cfg.get("drop_mlp_list", []):
        model.model.layers[layer].mlp = ZeroMLP()
    with torch.no_grad():
        got = model(torch.tensor([tokens])).logits[0].numpy()
    want = np.fromfile(d / "tc_logits.f32", dtype="<f4").reshape(got.shape)
    scale = np.abs(want).max()
    rel = float(np.abs(got - want).max() / scale)
    same_argmax = int((got.argmax(-1) == want.argmax(-1)).sum())
    n = len(tokens)
    if cfg.get("quantization_config", {}).get("quant_method") == "bitnet":
        near = int((np.abs(got - want).max(-1) <= 1e-3 * scale).sum())
        ok = near >= 0.99 * n and same_argmax >= 0.99 * n
        return rel, same_argmax, n, ok, f", {near}/{n} positions within 1e-3"
    return rel, same_argmax, n, rel <= TOL, ""


def main():
    root = pathlib.Path(sys.argv[1])
    bad = 0
    for d in sorted(p for p in root.iterdir() if (p / "tc_logits.f32").exists()):
        try:
            rel, same, n, ok, extra = check(d)
            print(f"{d.name:24s} transformers vs tc {rel:.3g} of max|logit|, argmax {same}/{n}{extra}  "
                  f"{'PASS' if ok else 'FAIL'}")
        except Exception as e:  # a checkpoint transformers cannot load fails the check
            ok = False
            print(f"{d.name:24s} ERROR {type(e).__name__}: {e}")
        bad += not ok
    print(f"{bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
