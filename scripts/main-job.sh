#!/usr/bin/env bash
# The README's main job, when the shared data exists (../shared/data, or $PTQ_DATA_DIR): `ptq
# quantize` the real model to a GGUF file, `ptq eval` that file, then the default recipe table
# (`ptq table`); else the synthetic ptq_demo.
# Builds what it needs (Release) in build-main/ (or $PTQ_BUILD_DIR). Takes < 2 minutes once built.
#
#   scripts/main-job.sh [ptq table options, e.g. --set bits or --recipe 'w=int3-asym:g32,algo=awq+gptq']
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PTQ_BUILD_DIR:-$root/build-main}"
data="${PTQ_DATA_DIR:-$root/../shared/data}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTQ_BUILD_TESTS=OFF \
    -DPTQ_BUILD_BENCHMARKS=OFF -DPTQ_BUILD_EXAMPLES=ON -DPTQ_BUILD_TOOLS=ON >/dev/null
fi
if [ -f "$data/stories260K/stories260K.bin" ] && [ -f "$data/tinystories/valid.txt" ]; then
  cmake --build "$build" -j"$(nproc)" --target ptq_cli
  ptq="$build/tools/ptq/ptq"
  if [ $# -eq 0 ]; then
    # The product path: a model file in, a file an engine loads out (llama.cpp's Q4_0), and the
    # NLL of that file read back through ggml's dequantization.
    out="$build/stories260K-awq-gptq-q4_0.gguf"
    echo "main-job: ptq quantize stories260K (AWQ + GPTQ, int4-sym g32) -> $out" >&2
    "$ptq" quantize "$data/stories260K/stories260K.bin" --tokenizer "$data/stories260K/tok512.bin" \
      --recipe 'w=int4-sym:g32,algo=awq+gptq' --calib tinystories \
      --calib-tokens 16384 --out "$out" --format gguf
    "$ptq" eval "$out" --text "$data/tinystories/valid.txt"
    # The best 4-bit recipe found by the search (preset w4: int4-asym g32, GPTQ act-order, GPTAQ,
    # coordinate descent with scale refit) written as a GPTQ checkpoint, and that file evaluated.
    out4="$build/stories260K-w4-gptq"
    echo "main-job: ptq quantize stories260K (preset w4) -> $out4" >&2
    "$ptq" quantize "$data/stories260K/stories260K.bin" --tokenizer "$data/stories260K/tok512.bin" \
      --recipe preset=w4 --calib tinystories --out "$out4" --format gptq
    "$ptq" eval "$out4" --tokenizer "$data/stories260K/tok512.bin" --text "$data/tinystories/valid.txt"
  fi
  echo "main-job: default recipe table on $data/stories260K (calibration: 16384 TinyStories tokens)" >&2
  exec "$ptq" table --data "$data" --calib-tokens 16384 "$@"
else
  cmake --build "$build" -j"$(nproc)" --target ptq_demo
  echo "main-job: no shared data at $data (set PTQ_DATA_DIR); running the synthetic demo" >&2
  exec "$build/examples/ptq_demo"
fi
