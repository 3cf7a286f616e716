#!/usr/bin/env bash
# Side-by-side CPU training throughput: `mnist bench`, the Keras 3 + TensorFlow-CPU anchor
# (../shared/anchors/keras_bench.py) and, when $MXNET_PYTHON is set, MXNet 1.9.1 Gluon
# (tests/bench/mxnet_bench.py), run one after another REPEATS times on the same machine; prints
# every run, the medians and the ratios. Usage (from the repo root):
#   KERAS_PYTHON=... [MXNET_PYTHON=...] bash tests/bench/keras_ratio.sh [REPEATS] [STEPS]
# Set up the anchors once:
#   python3 -m venv ~/venvs/tf && ~/venvs/tf/bin/pip install tensorflow-cpu
#   python3 -m venv ~/venvs/mxnet && ~/venvs/mxnet/bin/pip install mxnet==1.9.1 numpy==1.23.5
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-5}"
steps="${2:-60}"
keras_python="${KERAS_PYTHON:-$HOME/venvs/tf/bin/python}"
mxnet_python="${MXNET_PYTHON:-}"
data="${MNIST_DATA:-../shared/data/mnist.npz}"
cargo build -q --release -p mnist
rate() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p' | tail -1; }
ours=(); keras=(); mxnet=()
for i in $(seq "$repeats"); do
  o=$(./target/release/mnist bench --steps "$steps" --repeats 1 --warmup 5 --data "$data" | rate)
  k=$("$keras_python" ../shared/anchors/keras_bench.py --steps "$steps" --data "$data" 2>/dev/null | rate)
  line="run $i: mnist $o, keras_tf $k"
  ours+=("$o"); keras+=("$k")
  if [ -n "$mxnet_python" ]; then
    m=$("$mxnet_python" tests/bench/mxnet_bench.py --steps "$steps" --data "$data" 2>/dev/null | rate)
    mxnet+=("$m"); line="$line, mxnet $m"
  fi
  echo "$line samples/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mo=$(median "${ours[@]}"); mk=$(median "${keras[@]}")
summary="median samples/s: mnist $mo, keras_tf $mk (mnist/keras $(ratio "$mo" "$mk"))"
if [ -n "$mxnet_python" ]; then
  mm=$(median "${mxnet[@]}")
  summary="$summary, mxnet $mm (mnist/mxnet $(ratio "$mo" "$mm"))"
fi
echo "$summary"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, flags: $(grep -m1 -o 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')$(date -u +%F)"
