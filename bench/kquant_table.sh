#!/usr/bin/env bash
# llama.cpp's own quantization of the models of quant_table.sh, scored on the
# same text and the same windows: stories260K, llama2xs and babyllama105
# (TinyStories: calibrated on the last 2000 lines, evaluated on every window of
# the first 1200) and deep16 (gutenberg_heldout.txt: calibrated on the first
# 1000 lines, evaluated on 128 windows of the rest); windows of 256, every
# position but a window's first scored.  For each model: an F16 GGUF written by
# tc (build/float_gguf: F16 matrices and embedding, F32 norms, as
# convert_hf_to_gguf.py --outtype f16 writes a checkpoint), then
# llama-quantize into each type as llama.cpp mixes it, with and without an
# importance matrix that llama-imatrix computes on the calibration text
# (32 chunks of 256 tokens: as many tokens as quant_table.sh's 32 calibration
# windows), each file scored by tc-run --compare against the fp32 original.
# A model whose width is a multiple of 256 but whose FFN width is not (deep16:
# 688) has rows whose down projections no K-quant holds; it is also written
# with its FFN padded with zeros to the next multiple of 256 (the same
# function, as tc-quantize pads a ternary GGUF) and quantized again.
# Where tc-run refuses a tensor type of a mix, the row says so and is
# quantized again with --pure.  Prints a Markdown table; needs the assets,
# ./build and llama.cpp's tools.
#   LLAMA_BIN=DIR       where llama-quantize and llama-imatrix are (default:
#                       ../scratch/llama.cpp/build/bin beside the checkout)
#   ONLY="name ..."     a subset of the models (default: all four)
#   TYPES="T ..."       llama-quantize types (default below; F16 is the input
#                       itself)
#   IMATRIX_TYPES="T ..." the types also quantized with the importance matrix
#                       (default below; empty: no llama-imatrix)
#   PADDED_TYPES="T ...", PADDED_IMATRIX_TYPES="T ..." the same for the padded
#                       FFN (default below)
#   EVAL_SAMPLES=N      evaluation windows per model (default: as quant_table.sh)
#   THREADS=N           threads of every tool (default 1: on a shared machine
#                       whose cores are oversubscribed, threads that meet at
#                       barriers run several times slower than one)
#   KEEP=DIR            keep the GGUF files there
#   NO_HEADER=1         leave out the header
# Columns: the linear layers' types as stored, with their share of the linear
# weights (rows that are not whole blocks of a type fall back to another, F16
# where none fits: deep16's FFN down projections, rows of 688, stay F16);
# bits per linear weight measured from the file's tensors (attention and MLP
# matrices, over the model's own weight count: a padded FFN's zeros count as
# cost); the embedding / output head apart (one tensor when tied).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
assets=${TC_ASSETS:-$here/../shared/assets}
llama=${LLAMA_BIN:-$here/../scratch/llama.cpp/build/bin}
types=${TYPES-"F16 Q8_0 Q4_0 Q4_K_M Q3_K_M Q3_K_S Q2_K"}
imatrix_types=${IMATRIX_TYPES-"Q4_K_M Q3_K_S Q2_K"}
padded_types=${PADDED_TYPES-"Q4_K_M Q3_K_S Q2_K"}
padded_imatrix_types=${PADDED_IMATRIX_TYPES-"Q3_K_S Q2_K"}
threads=${THREADS:-1}
for t in "$bin/float_gguf" "$bin/tc-run" "$llama/llama-quantize"; do
  [ -x "$t" ] || { echo "kquant_table.sh: $t is missing" >&2; exit 1; }
done
if [ -n "$imatrix_types$padded_imatrix_types" ] && [ ! -x "$llama/llama-imatrix" ]; then
  echo "kquant_table.sh: $llama/llama-imatrix is missing (IMATRIX_TYPES= runs without it)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The splits of quant_table.sh.
tail -n 2000 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_calib.txt"
head -n 1200 "$assets/text/tinystories_valid_1000.txt" > "$tmp/ts_eval.txt"
head -n 1000 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_calib.txt"
tail -n +1001 "$assets/text/gutenberg_heldout.txt" > "$tmp/gb_eval.txt"
s=$assets/models
only=${ONLY:-"stories260K llama2xs babyllama105 deep16"}

# The tensors of a GGUF: bits per linear weight (over argv[2] weights), the
# linear types with their shares, the embedding / head.
cat > "$tmp/gguf_bits.py" <<'PY'
import json, struct, sys
# ggml type id: (name, bytes per block, weights per block)
T = {0: ("F32", 4, 1), 1: ("F16", 2, 1), 2: ("Q4_0", 18, 32), 3: ("Q4_1", 20, 32), 6: ("Q5_0", 22, 32),
     7: ("Q5_1", 24, 32), 8: ("Q8_0", 34, 32), 10: ("Q2_K", 84, 256), 11: ("Q3_K", 110, 256),
     12: ("Q4_K", 144, 256), 13: ("Q5_K", 176, 256), 14: ("Q6_K", 210, 256), 20: ("IQ4_NL", 18, 32),
     23: ("IQ4_XS", 136, 256), 30: ("BF16", 2, 1), 34: ("TQ1_0", 54, 256), 35: ("TQ2_0", 66, 256)}
f = open(sys.argv[1], "rb")
def rd(fmt):
    return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]
def rstr():
    return f.read(rd("Q")).decode()
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def skip(t):
    if t == 8:
        rstr()
    elif t == 9:
        et, n = rd("I"), rd("Q")
        for _ in range(n):
            skip(et)
    else:
        rd(SCALAR[t])
assert f.read(4) == b"GGUF", "not a GGUF file"
rd("I")
n_t, n_kv = rd("Q"), rd("Q")
for _ in range(n_kv):
    rstr()
    skip(rd("I"))
LINEAR = ("attn_q.", "attn_k.", "attn_v.", "attn_output.", "ffn_gate.", "ffn_up.", "ffn_down.")
lin_bits = lin_n = 0
lin_types, embd = {}, []
for _ in range(n_t):
    name = rstr()
    dims = [rd("Q") for _ in range(rd("I"))]
    tid = rd("I")
    rd("Q")
    if tid not in T:
        sys.exit(f"{sys.argv[1]}: tensor {name} has ggml type {tid}, not in this table")
    tn, bb, bw = T[tid]
    n = 1
    for d in dims:
        n *= d
    bits = 8 * bb * n / bw
    if name.startswith("blk.") and any(k in name for k in LINEAR) and len(dims) == 2:
        lin_bits += bits
        lin_n += n
        lin_types[tn] = lin_types.get(tn, 0) + n
    elif name in ("token_embd.weight", "output.weight"):
        embd.append(("head" if name == "output.weight" else "embd", tn, bits / n))
shares = sorted(lin_types.items(), key=lambda kv: -kv[1])
print(json.dumps({
    "bpw": lin_bits / float(sys.argv[2]),
    "types": ", ".join(f"{t} {100 * c / lin_n:.0f}%" for t, c in shares),
    "embd": " / ".join(f"{t} ({b:.2f})" for _, t, b in embd) + ("" if len(embd) > 1 else " tied"),
}))
PY

if [ -z "${NO_HEADER:-}" ]; then
  echo "| model | llama.cpp type | linear types (share of weights) | bits/weight (linear) | embedding / head (bits) | PPL fp32 | PPL quantized | ratio | mean KLD | top-1 | quantize s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
fi
for spec in "stories260K|$s/stories260K/stories260K.bin|$s/stories260K/tok512.bin|ts|100000" \
            "llama2xs|$s/llama2xs/llama2xs.bin|$s/stories260K/tok512.bin|ts|100000" \
            "babyllama105|$s/babyllama105/babyllama105.bin|$s/babyllama105/tok105.bin|ts|100000" \
            "deep16|$s/deep16-hf||gb|128"; do
  IFS='|' read -r name model tok text n_eval <<< "$spec"
  case " $only " in *" $name "*) ;; *) continue ;; esac
  tokarg=()
  [ -n "$tok" ] && tokarg=(--tokenizer "$tok")
  "$bin/float_gguf" "$model" "$tmp/$name-F16.gguf" "${tokarg[@]}"
  read -r dim ffn n_linear < <("$bin/tc-run" --info "$tmp/$name-F16.gguf" --json |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["dim"], j["ffn_dim"], j["n_params_linear"])')
  rows=()
  for t in $types; do rows+=("$t||"); done
  for t in $imatrix_types; do rows+=("$t|imatrix|"); done
  if [ $((dim % 256)) -eq 0 ] && [ $((ffn % 256)) -ne 0 ]; then
    "$bin/float_gguf" "$model" "$tmp/$name-F16-padded.gguf" "${tokarg[@]}" --pad-ffn 256
    for t in $padded_types; do rows+=("$t||padded"); done
    for t in $padded_imatrix_types; do rows+=("$t|imatrix|padded"); done
  fi
  for row in "${rows[@]}"; do
    IFS='|' read -r t im pad <<< "$row"
    base=$tmp/$name-F16${pad:+-$pad}.gguf
    imat=$tmp/$name-imatrix${pad:+-$pad}.gguf
    if [ -n "$im" ] && [ ! -e "$imat" ]; then
      # llama.cpp stops at a character that a vocabulary without byte tokens
      # (babyllama105's 105 characters) cannot encode: its calibration text
      # keeps only the characters of the vocabulary, newlines as spaces.
      python3 - "$tmp/${text}_calib.txt" "$tok" > "$tmp/imatrix_calib.txt" <<'PY'
import struct, sys
text = open(sys.argv[1], encoding="utf-8").read()
if sys.argv[2].endswith(".bin"):
    f = open(sys.argv[2], "rb")
    f.read(4)
    vocab = set()
    while head := f.read(8):
        n = struct.unpack("<fi", head)[1]
        vocab.add(f.read(n).decode("utf-8", "replace"))
    if "<0x0A>" not in vocab:
        text = "".join(c for c in text.replace("\n", " ") if c in vocab)
sys.stdout.write(text)
PY
      "$llama/llama-imatrix" -m "$base" -f "$tmp/imatrix_calib.txt" -o "$imat" -c 256 -b 256 \
          --chunks 32 -t "$threads" > "$tmp/imatrix.log" 2>&1 ||
        { echo "kquant_table.sh: llama-imatrix failed on $name:" >&2; tail -5 "$tmp/imatrix.log" >&2; exit 1; }
    fi
    label=$t
    q=$tmp/$name-$t${im:+-$im}${pad:+-$pad}.gguf
    secs=0
    quantize() { # extra llama-quantize options
      local t0 t1
      t0=$(date +%s.%N)
      "$llama/llama-quantize" "$@" ${im:+--imatrix "$imat"} "$base" "$q" "$t" "$threads" > "$tmp/q.log" 2>&1 ||
        { echo "kquant_table.sh: llama-quantize $t failed on $name:" >&2; tail -5 "$tmp/q.log" >&2; exit 1; }
      t1=$(date +%s.%N)
      secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    }
    if [ "$t" = F16 ]; then
      q=$base
      label="F16 (the input)"
    else
      quantize
      [ -n "$im" ] && label="$t + imatrix"
    fi
    [ -n "$pad" ] && label="$label, FFN padded to $(( (ffn + 255) / 256 * 256 ))"
    compare() {
      "$bin/tc-run" -q "$q" --compare "$model" "${tokarg[@]}" --eval "$tmp/${text}_eval.txt" --threads "$threads" \
          --samples "${EVAL_SAMPLES:-$n_eval}" --json > "$tmp/c.json" 2> "$tmp/c.err"
    }
    if ! compare; then
      why=$(head -1 "$tmp/c.err")
      quantize --pure
      label="$label --pure (the mix: $why)"
      compare || { cat "$tmp/c.err" >&2; exit 1; }
    fi
    [ -n "${KEEP:-}" ] && cp "$q" "$KEEP/"
    python3 "$tmp/gguf_bits.py" "$q" "$n_linear" > "$tmp/b.json"
    python3 - "$tmp/b.json" "$tmp/c.json" "$name" "$label" "$secs" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
ppl0, ppl1 = c["ppl_original"], c["ppl_packed"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {b['types']} | {b['bpw']:.3f} | {b['embd']} | {ppl0:.3f} | "
      f"{ppl1:.3f} | {ppl1 / ppl0:.3f} | {c['kl_mean']:.4f} | {100 * c['top1_agreement']:.1f}% | {sys.argv[5]} |")
PY
  done
done
