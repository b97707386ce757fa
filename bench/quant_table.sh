#!/usr/bin/env bash
# Accuracy of each ternary quantization method against fp32: stories260K,
# llama2xs and babyllama105, calibrated on the last 2000 lines of TinyStories
# and evaluated on its first 1200 lines (windows of 256, every position but a
# window's first scored).  Prints a Markdown table; needs the assets and ./build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
assets=${TC_ASSETS:-$here/../shared/assets}
layout=${LAYOUT:-tl2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tail -n 2000 "$assets/text/tinystories_valid_1000.txt" > "$tmp/calib.txt"
head -n 1200 "$assets/text/tinystories_valid_1000.txt" > "$tmp/eval.txt"
s=$assets/models
echo "| model | method | bits/weight (linear) | PPL fp32 | PPL ternary | mean KLD | top-1 |"
echo "|---|---|---|---|---|---|---|"
for spec in "stories260K|$s/stories260K/stories260K.bin|$s/stories260K/tok512.bin" \
            "llama2xs|$s/llama2xs/llama2xs.bin|$s/stories260K/tok512.bin" \
            "babyllama105|$s/babyllama105/babyllama105.bin|$s/babyllama105/tok105.bin"; do
  IFS='|' read -r name model tok <<< "$spec"
  for method in absmean optimal calibrated; do
    "$bin/tc-quantize" -q --force "$model" --tokenizer "$tok" -o "$tmp/q.tcq" --method "$method" --layout "$layout" \
        --calib "$tmp/calib.txt" --samples 32 --json > "$tmp/q.json"
    "$bin/tc-run" -q "$tmp/q.tcq" --compare "$model" --tokenizer "$tok" --eval "$tmp/eval.txt" --samples 100000 \
        --json > "$tmp/c.json"
    python3 - "$tmp/q.json" "$tmp/c.json" "$name" "$method" <<'PY'
import json, sys
q = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
def find(d, *names):
    for k in names:
        if k in d:
            return d[k]
    for v in d.values():
        if isinstance(v, dict):
            r = find(v, *names)
            if r is not None:
                return r
    return None
bpw = find(q, "bits_per_weight_linear", "linear_bits_per_weight")
ppl0 = find(c, "ppl_original", "original_ppl"); ppl1 = find(c, "ppl_packed", "packed_ppl")
kl = find(c, "kl_mean", "mean_kl"); top1 = find(c, "top1", "top1_agreement", "same_top_p")
print(f"| {sys.argv[3]} | {sys.argv[4]} | {bpw:.3f} | {ppl0:.3f} | {ppl1:.3f} | {kl:.4f} | {100*top1:.1f}% |")
PY
  done
done
