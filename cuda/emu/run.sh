#!/usr/bin/env bash
# Builds and runs check_kernels.cpp: the CUDA kernels' logic checked on the CPU with g++ (no
# GPU, no CUDA toolkit). Leaves out: cuBLAS and the Rust launches (the GPU tests cover them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/mnist-check-kernels"
g++ -std=c++20 -O1 -pthread -Wall -Wno-unused-function -o "$out" "$here/check_kernels.cpp"
"$out"
