#!/usr/bin/env bash
# Fetches NVRTC 13.0 and the CUDA 13.0 headers from their PyPI wheels into DIR (downloaded and
# unzipped, never installed), so CI can compile every kernel without a GPU or a CUDA toolkit.
# Idempotent: a second run finds the unpacked files and downloads nothing. Leaves out: libcuda.
set -euo pipefail
dir="${1:?usage: fetch_nvrtc.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
lib="$dir/nvidia/cu13/lib"
include="$dir/nvidia/cu13/include"
if [ ! -e "$lib/libnvrtc.so.13" ] || [ ! -e "$include/cuda_fp16.h" ]; then
  mkdir -p "$dir/wheels"
  python3 -m pip download -q --no-deps nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 -d "$dir/wheels" >&2
  for wheel in "$dir"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$dir" >&2
  done
fi
if [ ! -e "$lib/libnvrtc.so.13" ]; then
  echo "fetch_nvrtc.sh: $lib/libnvrtc.so.13 is missing after unpacking" >&2
  exit 1
fi
# The facts cuda/tests/nvrtc_compile.rs needs, as lines a caller can eval.
echo "export LD_LIBRARY_PATH=$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
echo "export MNIST_CUDA_INCLUDE=$include"
