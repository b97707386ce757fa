#!/usr/bin/env bash
# The one-time check of tc's GGUF reading against llama.cpp's own quantizer
# (README.md beside this file).  Not part of the test suite: it needs a
# llama-quantize built from llama.cpp's source in a scratch folder.
#
#   tests/ggml/llama_quantize_check.sh LLAMA_QUANTIZE TC_BUILD MODEL VOCAB.gguf TOKENS.jsonl
#
# For each of the 12 types, as llama-quantize's usual mix and with --pure, it
# quantizes one F16 GGUF of MODEL, has llama-quantize --allow-requantize turn
# the result back into F32, and compares tc's logits on the two files byte
# for byte.
set -euo pipefail
Q=$1 B=$2 MODEL=$3 VOCAB=$4 TOKENS=$5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -std=c11 -I"$here/../../formats/include" -I"$here/../../calib/include" \
   -I"$here/../../libcompress/include" "$here/f16_gguf.c" "$B/libtc.a" \
   -lcjson -lpcre2-8 -lz -lopenblas -lpthread -lm -o "$work/f16_gguf"
"$work/f16_gguf" "$MODEL" "$VOCAB" "$work/f16.gguf"
fail=0
for t in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K IQ4_NL IQ4_XS; do
  for mode in mix pure; do
    extra=()
    [ $mode = pure ] && extra=(--pure)
    "$Q" "${extra[@]}" "$work/f16.gguf" "$work/q.gguf" $t 2 >"$work/log" 2>&1
    "$Q" --allow-requantize "$work/q.gguf" "$work/back.gguf" F32 2 >"$work/log" 2>&1
    types=$("$B/tc-analyze" --info "$work/q.gguf" | awk '/ in [0-9]+ weights/{printf "%s ", $1}')
    "$B/tc-dump-logits" "$work/q.gguf" "$TOKENS" "$work/a.f32"
    "$B/tc-dump-logits" "$work/back.gguf" "$TOKENS" "$work/b.f32"
    if cmp -s "$work/a.f32" "$work/b.f32"; then r=identical; else r=DIFFERENT; fail=1; fi
    printf '%-7s %-4s [%s] logits %s\n' $t $mode "${types% }" $r
  done
done
exit $fail
