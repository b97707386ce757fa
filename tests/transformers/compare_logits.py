#!/usr/bin/env python3
"""Checks tc's forward pass against Hugging Face transformers.

    compare_logits.py MODEL_DIR TOKENS.jsonl TC_LOGITS.f32

Loads MODEL_DIR with stock transformers (AutoModelForCausalLM, fp32), runs
every token sequence of TOKENS.jsonl and compares the logits with those tc
wrote (tc-dump-logits).  A config.json with drop_attn_list / drop_mlp_list
(tc-prune's attention or MLP drops) is loaded by replacing those sub-layers
with modules that add nothing, which is what the lists mean.  Prints one JSON
line; exits 1 when the largest difference exceeds --tol.
"""
import argparse
import json
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM


class ZeroAttention(torch.nn.Module):
    """Attention that was pruned away: its residual branch adds zero."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states), None


class ZeroMLP(torch.nn.Module):
    """An MLP that was pruned away."""

    def forward(self, hidden_states):
        return torch.zeros_like(hidden_states)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("tokens")
    ap.add_argument("logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    cfg = AutoConfig.from_pretrained(a.model)
    drop_attn = getattr(cfg, "drop_attn_list", None) or []
    drop_mlp = getattr(cfg, "drop_mlp_list", None) or []
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
    model.eval()
    for l in drop_attn:
        model.model.layers[l].self_attn = ZeroAttention()
        model.model.layers[l].input_layernorm = torch.nn.Identity()
    for l in drop_mlp:
        model.model.layers[l].mlp = ZeroMLP()
        model.model.layers[l].post_attention_layernorm = torch.nn.Identity()

    seqs = [json.loads(line) for line in open(a.tokens) if line.strip()]
    vocab = cfg.vocab_size
    ours = np.fromfile(a.logits, dtype="<f4").reshape(-1, vocab)
    theirs = []
    with torch.no_grad():
        for s in seqs:
            out = model(torch.tensor([s])).logits[0].float().numpy()
            theirs.append(out)
    theirs = np.concatenate(theirs)
    diff = np.abs(theirs - ours)
    scale = np.abs(theirs).max()
    top1 = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
    res = {"model": a.model, "tokens": int(ours.shape[0]), "max_abs_diff": float(diff.max()),
           "max_rel_diff": float(diff.max() / scale), "top1_agreement": top1,
           "drop_attn": drop_attn, "drop_mlp": drop_mlp, "layers": cfg.num_hidden_layers}
    print(json.dumps(res))
    sys.exit(0 if res["max_rel_diff"] <= a.tol else 1)


if __name__ == "__main__":
    main()
