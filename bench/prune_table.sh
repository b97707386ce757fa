#!/usr/bin/env bash
# Which modules each criterion drops, and what it costs on text not used for
# calibration: stories260K, llama2xs and babyllama105 (TinyStories: the last
# 2000 lines calibrate, the first 6000 evaluate) and deep16 (Gutenberg held-out
# text: the first 1000 lines calibrate, the rest evaluate).
# Prints a Markdown table; needs the assets and a build in ./build.  THREADS (default 1)
# and SAMPLES (default 32) are passed to tc-prune; ONLY="name ..." runs a subset of the
# models and NO_HEADER=1 leaves out the header (to append to an earlier table).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
assets=${TC_ASSETS:-$here/../shared/assets}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tail -n 2000 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_calib.txt"
head -n 6000 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_eval.txt"
head -n 1000 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_calib.txt"
tail -n +1001 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_eval.txt"

samples=${SAMPLES:-32}

row() { # name model-args calib eval what k
  local name=$1 model=$2 calib=$3 eval=$4 what=$5 k=$6
  for crit in cos dnll kl; do
    # shellcheck disable=SC2086
    "$bin/tc-prune" -q --threads "${THREADS:-1}" $model --calib "$calib" --samples "$samples" --seq-len 256 --criterion "$crit" \
        "--drop-$what" "$k" --dry-run --eval "$eval" --json > "$tmp/out.json"
    python3 - "$tmp/out.json" "$name" "$what" "$k" "$crit" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, what, k, crit = sys.argv[2:]
mods = [f"attn {l}" for l in r["drop_attn"]] + [f"mlp {l}" for l in r["drop_mlp"]] + \
       [f"block {l}" for l in r["drop_block"]]
e = r["eval"]
print(f"| {name} | {k} {what} | {crit} | {', '.join(mods)} | {e['ppl_original']:.3f} | "
      f"{e['ppl_pruned']:.3f} | {e['ppl_pruned'] - e['ppl_original']:+.3f} | {e['kl']:.4f} | "
      f"{100 * e['top1_agreement']:.1f}% |")
PY
  done
}

if [ -z "${NO_HEADER:-}" ]; then
  echo "| model | drop | criterion | modules dropped | PPL before | PPL after | ΔPPL | KL | top-1 |"
  echo "|---|---|---|---|---|---|---|---|---|"
fi
s=$assets/models
for spec in "stories260K|$s/stories260K/stories260K.bin --tokenizer $s/stories260K/tok512.bin" \
            "llama2xs|$s/llama2xs/llama2xs.bin --tokenizer $s/stories260K/tok512.bin" \
            "babyllama105|$s/babyllama105/babyllama105.bin --tokenizer $s/babyllama105/tok105.bin"; do
  name=${spec%%|*}; model=${spec#*|}
  case " ${ONLY:-$name} " in *" $name "*) ;; *) continue ;; esac
  for k in 1 2; do row "$name" "$model" "$tmp/ts_calib.txt" "$tmp/ts_eval.txt" attn "$k"; done
  row "$name" "$model" "$tmp/ts_calib.txt" "$tmp/ts_eval.txt" blocks 1
done
case " ${ONLY:-deep16} " in *" deep16 "*) ;; *) exit 0 ;; esac
for k in 1 2 4; do row deep16 "$s/deep16-hf" "$tmp/gb_calib.txt" "$tmp/gb_eval.txt" attn "$k"; done
for k in 1 2; do row deep16 "$s/deep16-hf" "$tmp/gb_calib.txt" "$tmp/gb_eval.txt" blocks "$k"; done
