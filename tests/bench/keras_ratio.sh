#!/usr/bin/env bash
# Side-by-side CPU training throughput: `mnist bench` and the Keras 3 + TensorFlow-CPU anchor
# (../shared/anchors/keras_bench.py), run alternately REPEATS times on the same machine; prints
# every run, the medians and the ratio. Usage (from the repo root):
#   bash tests/bench/keras_ratio.sh [REPEATS] [STEPS]
# Needs a venv with tensorflow-cpu at $KERAS_PYTHON (default ~/venvs/tf/bin/python):
#   python3 -m venv ~/venvs/tf && ~/venvs/tf/bin/pip install tensorflow-cpu
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-5}"
steps="${2:-60}"
python="${KERAS_PYTHON:-$HOME/venvs/tf/bin/python}"
data="${MNIST_DATA:-../shared/data/mnist.npz}"
anchor=../shared/anchors/keras_bench.py
cargo build -q --release -p mnist
ours=(); keras=()
for i in $(seq "$repeats"); do
  o=$(./target/release/mnist bench --steps "$steps" --repeats 1 --warmup 5 | sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p')
  k=$("$python" "$anchor" --steps "$steps" --data "$data" 2>/dev/null | sed -n 's/^keras_tf samples_per_s=\([0-9.]*\).*/\1/p')
  echo "run $i: mnist $o samples/s, keras_tf $k samples/s"
  ours+=("$o"); keras+=("$k")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mo=$(median "${ours[@]}"); mk=$(median "${keras[@]}")
echo "median: mnist $mo samples/s, keras_tf $mk samples/s, ratio $(awk -v a="$mo" -v b="$mk" 'BEGIN {printf "%.2f", a/b}')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(date -u +%F)"
