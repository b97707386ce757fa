#!/usr/bin/env bash
# Speed at BitNet b1.58 2B4T's shape (dim 2560, 30 layers, ffn 6912, 20/5
# heads, vocab 128256, tied): tc-run beside llama.cpp and bitnet.cpp,
# interleaved in one run.
#
#   bench/bitnet2b_table.sh WORK [LLAMA_BENCH] [ROUNDS]
#   BITNETCPP=DIR (a bitnet.cpp build's bin folder, bench/build_bitnetcpp.sh)
#
# Makes once, under WORK (never in the repository: about 12 GB), with
# tc-synth and tc-quantize:
#   bitnet2b-hf/              tc-synth --family bitnet --ternary (relu2, sub-norms), F16
#   bitnet2b-i2-T.tcq         packed I2, embedding and head in T (q4_0 q6_k q8_0 f16)
#   bitnet2b-tl2-q4_0.tcq     packed TL2, Q4_0 embedding and head
#   llama2b-f16.gguf          the same shape as a llama GGUF (SiLU, no sub-norms: llama.cpp's
#                             bitnet architecture is not written by this build) with
#                             llama.cpp's LLaMA-3 vocabulary (--tokenizer), F16
#   llama2b-tq2-T.gguf        TQ2_0 blocks, embedding and head in T (q4_0 q6_k q8_0)
#   llama2b-i2s-T.gguf        with BITNETCPP: bitnet.cpp's I2_S (its llama-quantize, one
#                             thread as its setup_env.py runs it, from llama2b-f16.gguf),
#                             embedding and head in T (q4_0 q6_k q8_0); the llama graph,
#                             as llama.cpp's rows: the fork's bitnet graph reads the same
#                             I2_S tensors and differs by the sub-norms and SiLU
# then ROUNDS (default 3) rounds, each running every configuration once, at 1
# and 2 threads: bench_trun (tc), llama-bench (LLAMA_BENCH, if given) and
# bitnet.cpp's llama-bench (BITNETCPP/llama-bench, if given):
# pp128 (a 128-token prompt) and tg32 (32 tokens decoded from an empty cache),
# REPS (default 3) repetitions each.  Each line of WORK/bitnet2b_runs.jsonl is one
# measurement with the load average before it; WORK/bitnet2b_table.md and
# .json give per configuration the best round (the machine is shared: the
# best round is the one least disturbed) and the median; tc's rows also give
# tokens per CPU-second x threads (bench_trun), and the prompt's int8 share of
# the peak both ways (wall clock; per CPU-second of each, which holds when
# other processes share the cores).  bench_int8_peak
# runs in every round too; prompt rates are also given as int8 operations
# per second (two per ternary weight and token) over its peak.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TC_BIN:-$here/build}
work=${1:?usage: bitnet2b_table.sh WORK [LLAMA_BENCH] [ROUNDS]}
llama=${2:-}
bitnetcpp=${BITNETCPP:-}
rounds=${3:-3}
reps=${REPS:-3}          # repetitions of each test within a round
vocab=${TC_LLAMA_VOCAB:-/work/scratch/llama.cpp/models/ggml-vocab-llama-bpe.gguf}
mkdir -p "$work"
shape="--layers 30 --dim 2560 --heads 20 --kv-heads 5 --ffn 6912 --vocab 128256 --context 4096 --ternary --dtype f16"
[ -d "$work/bitnet2b-hf" ] || "$bin/tc-synth" -q $shape --family bitnet --format hf -o "$work/bitnet2b-hf"
for t in q4_0 q6_k q8_0 f16; do
  f=$work/bitnet2b-i2-$t.tcq
  [ -f "$f" ] || "$bin/tc-quantize" -q "$work/bitnet2b-hf" --method absmean --layout i2 --embd-type $t --no-verify -o "$f" > /dev/null
done
f=$work/bitnet2b-tl2-q4_0.tcq
[ -f "$f" ] || "$bin/tc-quantize" -q "$work/bitnet2b-hf" --method absmean --layout tl2 --embd-type q4_0 --no-verify -o "$f" > /dev/null
if [ -n "$llama$bitnetcpp" ]; then
  [ -f "$work/llama2b-f16.gguf" ] || "$bin/tc-synth" -q $shape --family llama --format gguf --tokenizer "$vocab" -o "$work/llama2b-f16.gguf"
  for t in q4_0 q6_k q8_0; do
    f=$work/llama2b-tq2-$t.gguf
    if [ -n "$llama" ] && [ ! -f "$f" ]; then
      "$bin/tc-quantize" -q "$work/llama2b-f16.gguf" --method absmean --format gguf-tq2 --fallback $t --no-verify -o "$f" > /dev/null
    fi
    f=$work/llama2b-i2s-$t.gguf
    if [ -n "$bitnetcpp" ] && [ ! -f "$f" ]; then
      "$bitnetcpp/llama-quantize" --token-embedding-type $t "$work/llama2b-f16.gguf" "$f.part" I2_S 1 > "$f.log" 2>&1
      mv "$f.part" "$f"
    fi
  done
fi

runs=$work/bitnet2b_runs.jsonl
: > "$runs"
load() { cut -d' ' -f1 /proc/loadavg; }
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds (load $(load))" >&2
  "$bin/bench_int8_peak" --json --seconds 0.5 | sed "s/^{/{\"round\": $round, \"runtime\": \"peak\", /" >> "$runs"
  for th in 1 2; do
    for f in "$work"/bitnet2b-*.tcq; do
      "$bin/bench_trun" "$f" --threads $th --reps "$reps" --json | sed "s/^{/{\"round\": $round, \"runtime\": \"tc\", /" >> "$runs"
    done
    if [ -n "$llama" ]; then
      for f in "$work"/llama2b-tq2-*.gguf; do
        l=$(load)
        "$llama" -m "$f" -p 128 -n 32 -t $th -r "$reps" -o jsonl 2>/dev/null |
          sed "s|^{|{\"round\": $round, \"runtime\": \"llama.cpp\", \"load1\": $l, \"file\": \"$f\", |" >> "$runs"
      done
    fi
    if [ -n "$bitnetcpp" ]; then
      for f in "$work"/llama2b-i2s-*.gguf; do
        l=$(load)
        "$bitnetcpp/llama-bench" -m "$f" -p 128 -n 32 -t $th -r "$reps" -o jsonl 2>/dev/null |
          sed "s|^{|{\"round\": $round, \"runtime\": \"bitnet.cpp\", \"load1\": $l, \"file\": \"$f\", |" >> "$runs"
      done
    fi
  done
done

python3 - "$runs" "$work" <<'PY'
import json, statistics, sys, os
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
params = 30 * (2560 * 2560 * 2 + 2560 * 640 * 2 + 3 * 2560 * 6912)  # ternary weights per token
peak, peak_cpu = {}, {}
for r in runs:
    if r["runtime"] == "peak":
        for t in r["threads"]:
            peak.setdefault(t["threads"], []).append(t["gops"])
            if "gops_per_cpu_s" in t:
                peak_cpu.setdefault(t["threads"], []).append(t["gops_per_cpu_s"])
rows = {}
for r in runs:
    if r["runtime"] == "tc":
        name = os.path.basename(r["model"])
        for what, key, n in (("pp", "pp_tps", r["pp"]), ("tg", "tg_tps", r["tg"])):
            rows.setdefault(("tc " + r["layout"].upper(), r["embd"], r["threads"], f"{what}{n}", name), []).append(
                (r[key], r["load1"], r.get(key + "_cpu")))
    elif r["runtime"] in ("llama.cpp", "bitnet.cpp"):
        name = os.path.basename(r["file"])
        embd = name.split("-")[-1].split(".")[0].upper()
        what = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        rt = "llama.cpp TQ2_0" if r["runtime"] == "llama.cpp" else "bitnet.cpp I2_S"
        rows.setdefault((rt, embd, r["n_threads"], what, name), []).append((r["avg_ts"], r["load1"], None))
out = []
for (rt, embd, th, what, name), v in sorted(rows.items(), key=lambda kv: (kv[0][3], kv[0][2], kv[0][0], kv[0][1])):
    best = max(v)
    e = {"runtime": rt, "embd": embd, "threads": th, "test": what, "file": name,
         "best_tps": round(best[0], 3), "load_at_best": best[1], "median_tps": round(statistics.median(x[0] for x in v), 3),
         "rounds": len(v)}
    cpu = [x[2] for x in v if x[2]]
    if cpu:
        e["best_tps_per_cpu_s"] = round(max(cpu), 3)
    if what.startswith("pp") and rt.startswith("tc") and th in peak:
        e["int8_share_of_peak"] = round(2 * params * best[0] / 1e9 / max(peak[th]), 4)
        if cpu and th in peak_cpu:
            e["int8_share_of_peak_per_cpu_s"] = round(2 * params * max(cpu) / 1e9 / max(peak_cpu[th]), 4)
    out.append(e)
json.dump({"peak_gops": {str(k): max(v) for k, v in peak.items()},
           "peak_gops_per_cpu_s": {str(k): max(v) for k, v in peak_cpu.items()}, "ternary_params": params, "rows": out},
          open(os.path.join(sys.argv[2], "bitnet2b_table.json"), "w"), indent=1)
with open(os.path.join(sys.argv[2], "bitnet2b_table.md"), "w") as f:
    f.write("| test | threads | runtime | embd/head | best t/s | load | median t/s | t/s per CPU-s | int8 share of peak | per CPU-s |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    for e in out:
        pct = lambda k: f"{100 * e[k]:.1f} %" if k in e else ""
        cps = f"{e['best_tps_per_cpu_s']:.2f}" if "best_tps_per_cpu_s" in e else ""
        f.write(f"| {e['test']} | {e['threads']} | {e['runtime']} | {e['embd']} | {e['best_tps']:.2f} | {e['load_at_best']:.2f} | "
                f"{e['median_tps']:.2f} | {cps} | {pct('int8_share_of_peak')} | {pct('int8_share_of_peak_per_cpu_s')} |\n")
    f.write("\nint8 peak (G ops/s): " + ", ".join(f"{k} thread(s) {max(v):.1f}" for k, v in sorted(peak.items())) +
            "; per CPU-second of its threads: " + ", ".join(f"{k} thread(s) {max(v):.1f}" for k, v in sorted(peak_cpu.items())) + "\n")
print(open(os.path.join(sys.argv[2], "bitnet2b_table.md")).read())
PY
