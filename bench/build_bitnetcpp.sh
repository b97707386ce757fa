#!/usr/bin/env bash
# Builds bitnet.cpp (microsoft/BitNet) from git mirrors into a scratch folder,
# without network: the steps of its setup_env.py (kernel generation, cmake)
# by hand, none of its downloads or model conversions.
#
#   bench/build_bitnetcpp.sh BITNET_GIT FORK_GIT DIR [i2s|tl2]...
#
# BITNET_GIT  git directory of microsoft/BitNet (a bare mirror will do)
# FORK_GIT    git directory of its llama.cpp fork (Eddie-Wang1120/llama.cpp)
# DIR         scratch folder: DIR/src is the source tree (BitNet at
#             BITNET_REV, default 425fbbc^, with the fork in 3rdparty/llama.cpp),
#             DIR/build-i2s and DIR/build-tl2 the builds (default: i2s only)
#
# BitNet's 425fbbc^ pins the fork at the commit its 3rdparty/llama.cpp
# gitlink names; when the fork's mirror lacks it, FORK_REV (default
# merge-dev, the branch .gitmodules names) is used and a line says so.
# The fork's vocabulary GGUFs under models/ are left out (not needed to
# build; a mirror may lack them, and git archive then names one it cannot
# read, though the rest of the tree is written).
#
# setup_env.py for x86: -DBITNET_X86_TL2=OFF (I2_S) or ON (TL2), clang, a
# Release build.  Its gen_code() always runs utils/codegen_tl2.py; the
# header it writes (include/bitnet-lut-kernels.h) is compiled only under
# GGML_BITNET_X86_TL2, so the I2_S build does not depend on it.  For
# BitNet-b1.58-2B-4T setup_env.py passes "--model bitnet_b1_58-3B --BM
# 160,320,320 --BK 96,96,96 --bm 32,32,32", i.e. kernels for the 3B model's
# shapes (3200, 8640), which dispatch on (M, K) and do nothing for other
# shapes; the tl2 build here generates them for 2B4T's own shapes instead
# (M x K: 2560 x 6912, 2560 x 2560, 640 x 2560, 6912 x 2560), with the
# BK and bm setup_env.py uses.
#
# Make the binaries with -j2 by default (JOBS): llama-cli, llama-bench,
# llama-perplexity, llama-quantize.
set -euo pipefail
bitnet_git=${1:?usage: build_bitnetcpp.sh BITNET_GIT FORK_GIT DIR [i2s|tl2]...}
fork_git=${2:?usage: build_bitnetcpp.sh BITNET_GIT FORK_GIT DIR [i2s|tl2]...}
dir=${3:?usage: build_bitnetcpp.sh BITNET_GIT FORK_GIT DIR [i2s|tl2]...}
shift 3
kinds=${*:-i2s}
bitnet_rev=${BITNET_REV:-425fbbc^}
jobs=${JOBS:-2}
src=$dir/src
mkdir -p "$dir"

if [ ! -f "$src/.prepared" ]; then
  rm -rf "$src"
  mkdir -p "$src/3rdparty/llama.cpp"
  git --git-dir="$bitnet_git" archive "$bitnet_rev" | tar -x -C "$src"
  pin=$(git --git-dir="$bitnet_git" ls-tree "$bitnet_rev" 3rdparty/llama.cpp | awk '{print $3}')
  if git --git-dir="$fork_git" cat-file -e "$pin^{commit}" 2>/dev/null; then
    fork_rev=$pin
  else
    fork_rev=${FORK_REV:-merge-dev}
    echo "build_bitnetcpp: the pinned fork commit $pin is not in $fork_git; using $fork_rev" \
         "($(git --git-dir="$fork_git" rev-parse --short "$fork_rev"))" >&2
  fi
  git --git-dir="$fork_git" archive "$fork_rev" -- . ':!models/*.gguf' | tar -x -C "$src/3rdparty/llama.cpp"
  { echo "bitnet $(git --git-dir="$bitnet_git" rev-parse "$bitnet_rev")"
    echo "fork $(git --git-dir="$fork_git" rev-parse "$fork_rev")"; } > "$src/.prepared"
fi
cat "$src/.prepared" >&2

for kind in $kinds; do
  case $kind in
    i2s) tl2=OFF ;;
    tl2) tl2=ON
      # 2B4T's shapes beside the three models codegen_tl2.py knows
      grep -q '"bitnet2b4t"' "$src/utils/codegen_tl2.py" ||
        sed -i 's|^    ModelShapeDict = {|    ModelShapeDict = {\n        "bitnet2b4t" : [[2560, 6912], [2560, 2560], [640, 2560], [6912, 2560]],|' \
          "$src/utils/codegen_tl2.py"
      (cd "$src" && python3 utils/codegen_tl2.py --model bitnet2b4t \
         --BM 160,160,160,256 --BK 96,96,96,96 --bm 32,32,32,32) ;;
    *) echo "build_bitnetcpp: unknown build $kind (i2s or tl2)" >&2; exit 2 ;;
  esac
  cmake -S "$src" -B "$dir/build-$kind" -DBITNET_X86_TL2=$tl2 \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ > "$dir/build-$kind.log" 2>&1
  cmake --build "$dir/build-$kind" --config Release -j"$jobs" \
        --target llama-cli llama-bench llama-perplexity llama-quantize >> "$dir/build-$kind.log" 2>&1
  echo "build_bitnetcpp: $dir/build-$kind/bin" >&2
done
