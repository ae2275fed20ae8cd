#!/usr/bin/env bash
# The README's main job: quantize a real model with the default recipe table when the shared
# data exists (../shared/data, or $PTQ_DATA_DIR), else run the synthetic ptq_demo.
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
  echo "main-job: default recipe table on $data/stories260K (calibration: 16384 TinyStories tokens)" >&2
  exec "$build/tools/ptq/ptq" table --data "$data" --calib-tokens 16384 "$@"
else
  cmake --build "$build" -j"$(nproc)" --target ptq_demo
  echo "main-job: no shared data at $data (set PTQ_DATA_DIR); running the synthetic demo" >&2
  exec "$build/examples/ptq_demo"
fi
