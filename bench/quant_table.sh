#!/usr/bin/env bash
# Accuracy of each ternary quantization method against fp32 on held-out text:
# stories260K, llama2xs and babyllama105 (calibrated on the last 2000 lines of
# TinyStories, evaluated on its first 1200 lines) and deep16 (Gutenberg
# held-out text: calibrated on the first 1000 lines, evaluated on the rest).
# Windows of 256, every position but a window's first scored; calibration and
# evaluation text never overlap.  Prints a Markdown table; needs the assets
# and ./build.
#   ONLY="name ..."     a subset of the models (default: all four)
#   METHODS="m;m ..."   the rows per model, each a --method and its options
#                       (which come last, so --samples N there overrides the
#                       32 calibration windows), separated by ';' (default below)
#   EVAL_SAMPLES=N      evaluation windows per model (default: every window
#                       of the TinyStories text, 128 of deep16's)
#   NO_HEADER=1         leave out the header (to append to an earlier table)
# Rows may carry --target-bpw B (mixed precision): the first such row of a
# model and method measures each weight's costs, later ones reuse them
# (--costs-from), so a row's quantize seconds include the measurement only
# on the first.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
assets=${TC_ASSETS:-$here/../shared/assets}
layout=${LAYOUT:-tl2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tail -n 2000 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_calib.txt"
head -n 1200 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_eval.txt"
head -n 1000 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_calib.txt"
tail -n +1001 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_eval.txt"
s=$assets/models
methods=${METHODS:-"absmean;optimal;calibrated;affine;affine-calibrated;affine-calibrated --group 128 --samples 128"}
only=${ONLY:-"stories260K llama2xs babyllama105 deep16"}
if [ -z "${NO_HEADER:-}" ]; then
  echo "| model | method | bits/weight (linear) | PPL fp32 | PPL ternary | ratio | mean KLD | top-1 | quantize s |"
  echo "|---|---|---|---|---|---|---|---|---|"
fi
for spec in "stories260K|$s/stories260K/stories260K.bin --tokenizer $s/stories260K/tok512.bin|ts|100000" \
            "llama2xs|$s/llama2xs/llama2xs.bin --tokenizer $s/stories260K/tok512.bin|ts|100000" \
            "babyllama105|$s/babyllama105/babyllama105.bin --tokenizer $s/babyllama105/tok105.bin|ts|100000" \
            "deep16|$s/deep16-hf|gb|128"; do
  IFS='|' read -r name model text n_eval <<< "$spec"
  case " $only " in *" $name "*) ;; *) continue ;; esac
  IFS=';' read -r -a rows <<< "$methods"
  for row in "${rows[@]}"; do
    # Rows with --target-bpw measure each weight's costs once per model and
    # method (the first such row) and take them from that file after.
    extra=()
    costs="$tmp/costs_${name}_${row%% *}.tcq"
    case " $row " in *" --target-bpw "*) [ -f "$costs" ] && extra=(--costs-from "$costs") ;; esac
    # shellcheck disable=SC2086
    "$bin/tc-quantize" -q --force $model -o "$tmp/q.tcq" --layout "$layout" \
        --calib "$tmp/${text}_calib.txt" --samples 32 --json --method $row "${extra[@]}" > "$tmp/q.json"
    case " $row " in *" --target-bpw "*) [ -f "$costs" ] || cp "$tmp/q.tcq" "$costs" ;; esac
    # shellcheck disable=SC2086
    "$bin/tc-run" -q "$tmp/q.tcq" --compare $model --eval "$tmp/${text}_eval.txt" \
        --samples "${EVAL_SAMPLES:-$n_eval}" --json > "$tmp/c.json"
    python3 - "$tmp/q.json" "$tmp/c.json" "$name" "$row" <<'PY'
import json, sys
q = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
bpw = q["linear_bits_per_weight"]
ppl0, ppl1 = c["ppl_original"], c["ppl_packed"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {bpw:.3f} | {ppl0:.3f} | {ppl1:.3f} | {ppl1 / ppl0:.3f} | "
      f"{c['kl_mean']:.4f} | {100 * c['top1_agreement']:.1f}% | {q['seconds']:.1f} |")
PY
  done
done
