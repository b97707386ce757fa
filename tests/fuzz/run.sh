#!/bin/sh
# Builds the libFuzzer harnesses and runs each one for a bounded time; exits non-zero on any finding.
#
#   tests/fuzz/run.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# SECONDS_PER_HARNESS defaults to 30; HARNESS names (safetensors, gguf, ...) default to every
# fuzz_*.c.  Environment: TC_ASSETS (real files for the seeds; default ../shared/assets from the
# source root), TC_FUZZ_BUILD (build directory; default build-fuzz), TC_FUZZ_CORPUS (where corpora
# grow between runs; default $TC_FUZZ_BUILD/corpus), CC (default clang).
# Findings are written to $TC_FUZZ_BUILD/findings/<harness>-crash-<sha1> and so on.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-30}
[ $# -gt 0 ] && shift
build=${TC_FUZZ_BUILD:-$src/build-fuzz}
assets=${TC_ASSETS:-$src/../shared/assets}
corpus=${TC_FUZZ_CORPUS:-$build/corpus}

CC=${CC:-clang} cmake -S "$src" -B "$build" -DTC_FUZZ=ON -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target fuzz-all >/dev/null

# Seeds are rebuilt every run (synthetic files, handmade cases, prefixes of the real assets).
rm -rf "$build/seeds"
"$build/tests/fuzz/fuzz_seeds" "$build/seeds" "$assets"
mkdir -p "$build/findings"

if [ $# -eq 0 ]; then
    set -- $(cd "$src/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
fi

# A small quarantine: fresh pages for every allocation cost more than the parsers themselves.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16}"

failed=""
for h in "$@"; do
    mkdir -p "$corpus/$h" "$build/seeds/$h"
    dict=""
    [ -f "$src/tests/fuzz/$h.dict" ] && dict="-dict=$src/tests/fuzz/$h.dict"
    echo "== fuzz_$h: ${secs}s"
    log="$build/findings/$h.log"
    # The first corpus directory receives new inputs; the seeds are only read.
    if "$build/tests/fuzz/fuzz_$h" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$build/findings/$h-" $dict \
        "$corpus/$h" "$build/seeds/$h" >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$log" | tr '\n' ' '
        echo
    else
        tail -n 60 "$log"
        failed="$failed $h"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzzing found problems in:$failed (inputs under $build/findings)" >&2
    exit 1
fi
echo "fuzzing: no findings"
