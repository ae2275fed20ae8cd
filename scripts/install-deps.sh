#!/usr/bin/env bash
# Installs what ptq needs on Debian 12 (bookworm), only if something is missing.
# Packages: compiler + build tools, Eigen 3.4, xsimd 8.1, doctest, Google Benchmark,
# nlohmann-json3-dev (JSON of safetensors headers, for the ptq::io headers only).
# libcli11-dev (command line of the ptq tool, tools/ptq), libsentencepiece-dev + pkg-config
# (tokenizer.model files in the ptq tool), libopenblas-dev (optional BLAS backend of ptq's own
# programs: CMake option PTQ_BLAS).
# clang-14: the test build compiles with it (README: 2-5x less CPU time than GCC 12 on the
# Eigen/xsimd test files at -O0, which GCC 12 cannot use with xsimd's AVX-512 code).
# With --sanitize also clang's sanitizer runtimes (the CI's ASan + UBSan build and libFuzzer).
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libeigen3-dev libxsimd-dev doctest-dev libbenchmark-dev nlohmann-json3-dev
      libcli11-dev libsentencepiece-dev libopenblas-dev clang-14)
if [ "${1:-}" = "--sanitize" ]; then pkgs+=(libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all of ${pkgs[*]} are installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
