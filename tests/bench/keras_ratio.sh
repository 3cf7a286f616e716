#!/usr/bin/env bash
# Side-by-side CPU training throughput: `mnist bench`, the Keras 3 + TensorFlow-CPU anchor
# (../shared/anchors/keras_bench.py), when $KERAS_JAX_PYTHON is set Keras 3 on JAX
# (tests/bench/keras_jax_bench.py) and, when $MXNET_PYTHON is set, MXNet 1.9.1 Gluon
# (tests/bench/mxnet_bench.py), run one after another REPEATS times on the same machine; prints
# every run, the medians and the ratios, the better Keras being the one to beat. Extra flags for
# `mnist bench` (e.g. --precision bf16) go in $MNIST_FLAGS. Usage (from the repo root):
#   KERAS_PYTHON=... [KERAS_JAX_PYTHON=...] [MXNET_PYTHON=...] bash tests/bench/keras_ratio.sh [REPEATS] [STEPS]
# Set up the anchors once:
#   python3 -m venv ~/venvs/tf && ~/venvs/tf/bin/pip install tensorflow-cpu
#   python3 -m venv ~/venvs/jax && ~/venvs/jax/bin/pip install "jax[cpu]" keras
#   python3 -m venv ~/venvs/mxnet && ~/venvs/mxnet/bin/pip install mxnet==1.9.1 numpy==1.23.5
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-5}"
steps="${2:-60}"
keras_python="${KERAS_PYTHON:-$HOME/venvs/tf/bin/python}"
mxnet_python="${MXNET_PYTHON:-}"
jax_python="${KERAS_JAX_PYTHON:-}"
read -r -a mnist_flags <<< "${MNIST_FLAGS:-}"
data="${MNIST_DATA:-../shared/data/mnist.npz}"
cargo build -q --release -p mnist
rate() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p' | tail -1; }
ours=(); keras=(); jax=(); mxnet=()
for i in $(seq "$repeats"); do
  o=$(./target/release/mnist bench --steps "$steps" --repeats 1 --warmup 5 --data "$data" "${mnist_flags[@]}" | rate)
  k=$("$keras_python" ../shared/anchors/keras_bench.py --steps "$steps" --data "$data" 2>/dev/null | rate)
  line="run $i: mnist $o, keras_tf $k"
  ours+=("$o"); keras+=("$k")
  if [ -n "$jax_python" ]; then
    j=$("$jax_python" tests/bench/keras_jax_bench.py --steps "$steps" --data "$data" 2>/dev/null | rate)
    jax+=("$j"); line="$line, keras_jax $j"
  fi
  if [ -n "$mxnet_python" ]; then
    m=$("$mxnet_python" tests/bench/mxnet_bench.py --steps "$steps" --data "$data" 2>/dev/null | rate)
    mxnet+=("$m"); line="$line, mxnet $m"
  fi
  echo "$line samples/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mo=$(median "${ours[@]}"); mk=$(median "${keras[@]}")
summary="median samples/s: mnist $mo, keras_tf $mk (mnist/keras_tf $(ratio "$mo" "$mk"))"
best="$mk"; best_name=keras_tf
if [ -n "$jax_python" ]; then
  mj=$(median "${jax[@]}")
  summary="$summary, keras_jax $mj (mnist/keras_jax $(ratio "$mo" "$mj"))"
  if awk -v a="$mj" -v b="$mk" 'BEGIN {exit !(a > b)}'; then best="$mj"; best_name=keras_jax; fi
fi
if [ -n "$mxnet_python" ]; then
  mm=$(median "${mxnet[@]}")
  summary="$summary, mxnet $mm (mnist/mxnet $(ratio "$mo" "$mm"))"
fi
echo "$summary"
echo "the Keras to beat: $best_name $best samples/s, mnist/best_keras $(ratio "$mo" "$best")${MNIST_FLAGS:+ (mnist flags: $MNIST_FLAGS)}"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, flags: $(grep -m1 -o 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')$(date -u +%F)"
