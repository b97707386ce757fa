#!/usr/bin/env bash
# The main job: the whole pipeline on the default model —
#   analyse -> prune -> quantize to ternary -> verify the kernels -> measure the cost.
# The default model is stories260K from the test assets ($TC_ASSETS, default
# ../shared/assets); without the assets, a synthetic checkpoint that tc generates
# (with planted redundancy, so the analysis has a known answer).
# Outputs go to ${OUT:-out/}; a run replaces those of the last one (--force).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
assets=${TC_ASSETS:-$here/../shared/assets}
out=${OUT:-$here/out}
mkdir -p "$out"

if [ -f "$assets/models/stories260K/stories260K.gguf" ]; then
  model=$assets/models/stories260K/stories260K.gguf
  text=$assets/text/tinystories_valid_1000.txt
  # Disjoint parts: the last stories calibrate, the first ones evaluate.
  tail -n 2000 "$text" > "$out/calib.txt"
  head -n 1200 "$text" > "$out/eval.txt"
  calib=(--calib "$out/calib.txt")
  evaluate=(--eval "$out/eval.txt")
  echo "== model: $model"
else
  model=$out/synthetic.gguf
  echo "== no assets at $assets: a synthetic checkpoint with planted redundancy (attention of layers 1 and 2)"
  "$bin/tc-synth" -q --force -o "$model" --layers 6 --dim 128 --heads 4 --kv-heads 2 --ffn 344 --vocab 256 \
      --weak-attn 1,2 --seed 7
  python3 -c 'import random; r=random.Random(1); [print([r.randrange(256) for _ in range(128)]) for _ in range(16)]' \
      > "$out/tokens.jsonl"
  calib=(--calib-tokens "$out/tokens.jsonl")
  evaluate=()
fi

"$bin/tc-analyze" --info "$model"
echo "== 1. analysis: how much each attention, MLP and block changes the hidden state"
"$bin/tc-analyze" "$model" "${calib[@]}" --samples 32 --force --report "$out/report.json" --html "$out/report.html"
echo "== 2. prune the two most redundant attention sub-layers (report: $out/report.html)"
"$bin/tc-prune" "$model" --report "$out/report.json" --drop-attn 2 --force -o "$out/pruned.gguf" "${evaluate[@]}" \
    --samples 64
echo "== 3. ternary quantization of the pruned model (calibrated, TL2 tiles)"
"$bin/tc-quantize" "$out/pruned.gguf" --force -o "$out/quantized.tcq" --method calibrated "${calib[@]}" --samples 16 \
    --layout tl2
echo "== 4. verify the packed model's fast kernels against the scalar reference"
"$bin/tc-run" "$out/quantized.tcq" --verify
if [ ${#evaluate[@]} -gt 0 ]; then
  echo "== 5. what compression cost, against the original"
  "$bin/tc-run" "$out/quantized.tcq" --compare "$model" "${evaluate[@]}"
  echo "== greedy generation: the original, then the pruned ternary model"
  "$bin/tc-run" "$model" --generate "Once upon a time" -n 60
  "$bin/tc-run" "$out/quantized.tcq" --generate "Once upon a time" -n 60
fi
echo "== outputs in $out: report.json, report.html, pruned.gguf, quantized.tcq"
