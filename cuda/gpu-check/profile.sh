#!/usr/bin/env bash
# Where a training step's GPU time goes: per-kernel times for a short CUDA training run with
# step graphs off (so every kernel launch is visible), using nsys when the host has it, else
# ncu on one window of launches. The run is cuda_speed's ignored profile_one_epoch (one epoch
# of 6,400 MNIST samples, batch 128), which takes MNIST_CUDA_GRAPHS and MNIST_CUDA_PRECISION
# from here: the library reads no variables. Run from the repo root on the GPU host with
# gpu-bundle/.
# Leaves out: building (bundle.sh does that) and correctness (run.sh).
# Usage: cuda/gpu-check/profile.sh [f32|bf16|f16] [detail]   (the precision profiled, default
# f32; `detail`: ncu's throughput, occupancy and stall sections for one launch of each of our
# own kernels instead of per-kernel times)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/profile-out}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
precision="${1:-f32}"
export MNIST_CUDA_GRAPHS=0 MNIST_CUDA_PRECISION="$precision" MNIST_REQUIRE_GPU=1
export MNIST_DATA="${MNIST_DATA:-$PWD/gpu-bundle/mnist.npz}"
train=(gpu-bundle/bin/cuda_speed profile_one_epoch --exact --ignored --nocapture --test-threads 1)
echo "nsys: $(command -v nsys || echo none); ncu: $(command -v ncu || echo none)"
if [ "${2:-}" = detail ]; then
  # After the first two steps (set-up), one launch of each kernel we wrote.
  timeout 150 ncu --launch-skip 120 --launch-count 40 -k 'regex:^(sgemm_rows128|sgemm_rows64|im2col|im2col_half|col2im|conv2d_direct|conv2d_dkernel_partial|bias_act|bias_grad_partial|bias_grad_partial_half|maxpool2d_forward|maxpool2d_backward|dropout|adadelta|to_half)$' \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats "${train[@]}" >"$out/ncu-detail-$precision.txt" 2>&1
  grep -E "^  [a-z_0-9]+ \(|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Stall" "$out/ncu-detail-$precision.txt" | head -120
elif command -v nsys >/dev/null; then
  timeout 120 nsys profile -o /tmp/prof --force-overwrite true -t cuda "${train[@]}" >"$out/train-$precision.log" 2>&1
  timeout 60 nsys stats --report cuda_gpu_kern_sum --format csv /tmp/prof.nsys-rep >"$out/kernels-$precision.csv" 2>"$out/stats-$precision.err"
  head -30 "$out/kernels-$precision.csv"
else
  # Steps 1-2 set things up; launches 300..419 cover about three steady steps.
  timeout 150 ncu --launch-skip 300 --launch-count 120 --metrics gpu__time_duration.sum --print-summary per-kernel \
    "${train[@]}" >"$out/ncu-$precision.txt" 2>&1
  grep -E "^  [A-Za-z_]|gpu__time_duration" "$out/ncu-$precision.txt" | head -80
fi
