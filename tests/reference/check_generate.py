#!/usr/bin/env python3
"""Checks that checkpoints tc wrote load in stock transformers with their own
tokenizer and generate the text tc generates.

    python tests/reference/check_generate.py DIR

Every directory under DIR that holds tc_generate.json is a Hugging Face
checkpoint written by tc (tc-prune), with the tokenizer files tc carried
over.  tc_generate.json: {"prompt": ..., "new_tokens": N, "text": tc's
greedy continuation as tc-run printed it}.  The checkpoint and its tokenizer
are loaded with AutoModelForCausalLM / AutoTokenizer (float64, eager), the
prompt is encoded as the tokenizer does by default (BOS included), N tokens
are generated greedily and decoded; the text must equal tc's.

Prints one line per checkpoint and exits 1 when any differs or fails to load.
"""
import json
import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def check(d: pathlib.Path):
    want = json.loads((d / "tc_generate.json").read_text())
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64, attn_implementation="eager")
    model.eval()
    ids = tok(want["prompt"], return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=want["new_tokens"], do_sample=False, num_beams=1)
    new = out[0, ids.shape[1]:]
    text = tok.decode(new, skip_special_tokens=True)
    return text, want["text"], [int(i) for i in ids[0]], [int(i) for i in new]


def main():
    root = pathlib.Path(sys.argv[1])
    bad = 0
    for d in sorted(p for p in root.iterdir() if (p / "tc_generate.json").exists()):
        try:
            got, want, prompt_ids, new_ids = check(d)
            # tc-run prints the continuation as it decodes pieces; compare without
            # the leading space a SentencePiece word starts with
            same = got.strip() == want.strip()
            print(json.dumps({"checkpoint": d.name, "same": same, "prompt_ids": prompt_ids,
                              "transformers": got, "tc": want, "new_ids": new_ids}))
            bad += not same
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"checkpoint": d.name, "error": repr(e)}))
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
