#!/usr/bin/env bash
# Builds the libFuzzer targets of ptq's file loaders (fuzz/: safetensors, GGUF, llama2.c
# checkpoint and tokenizer) with clang 14 + ASan + UBSan in build-fuzz/, writes the seed corpora
# with ptq's own writers, and runs each target.
#
#   scripts/fuzz.sh            1,000,000 executions per target (the full run)
#   scripts/fuzz.sh --quick    15 s per target, about a minute in total (CI)
#   scripts/fuzz.sh --runs N   N executions per target
#   ... TARGET...              only these targets (safetensors gguf llama_checkpoint llama_tokenizer)
#
# Any crash, sanitizer report, exception other than ptq's, or allocation above 64 MiB (inputs
# are at most 16 KiB, so a bigger one means the loader trusted a size from the file) stops the
# run with a non-zero status; libFuzzer leaves the input in build-fuzz/fuzz/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=runs
runs=1000000
seconds=15
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=time ;;
    --runs) runs="$2"; shift ;;
    safetensors|gguf|llama_checkpoint|llama_tokenizer) targets+=("$1") ;;
    *) echo "usage: $0 [--quick | --runs N] [TARGET...]" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#targets[@]} -eq 0 ]; then targets=(safetensors gguf llama_checkpoint llama_tokenizer); fi
B=build-fuzz
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DPTQ_BUILD_FUZZERS=ON -DPTQ_BUILD_TESTS=OFF -DPTQ_BUILD_BENCHMARKS=OFF -DPTQ_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$B" -j2 --target ptq_fuzz_seeds $(printf 'fuzz_%s ' "${targets[@]}")

seeds="$B/fuzz/seeds"
rm -rf "$seeds"
"$B/fuzz/ptq_fuzz_seeds" "$seeds"

summary=()
for t in "${targets[@]}"; do
  corpus="$B/fuzz/corpus/$t"
  mkdir -p "$corpus"
  if [ "$mode" = time ]; then limit=(-max_total_time="$seconds"); else limit=(-runs="$runs"); fi
  log="$B/fuzz/$t.log"
  echo "== fuzz_$t (${limit[*]}) =="
  # Run from $B/fuzz so that crash-* files land there. -timeout: a hang is a finding too.
  if ! (cd "$B/fuzz" && ./"fuzz_$t" "${limit[@]}" -max_len=16384 -malloc_limit_mb=64 -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 "corpus/$t" "seeds/$t") >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: fuzz_$t FAILED (log: $log)" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/.*Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  summary+=("fuzz_$t: ${execs:-?} executions in ${secs:-?} s, no finding")
done
printf '%s\n' "${summary[@]}"
