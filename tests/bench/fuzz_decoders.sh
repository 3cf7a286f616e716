#!/usr/bin/env bash
# The decoders' property tests at benchmark size: 100,000 cases per test (CI runs 256), each
# decoder's group timed on its own. Random bytes and mutated real files (see
# tests/tests/codecs_prop.rs) must give Err, never a panic or unbounded memory.
# Usage: bash tests/bench/fuzz_decoders.sh [CASES]   (with $MNIST_DATA for real-digit seeds and
# Debian's dataset-fashion-mnist for real .gz seeds; record the results in tests/bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
cases="${1:-100000}"
export MNIST_PROPTEST_CASES="$cases" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
# Compile first, so the times below are the tests alone.
cargo test -q --release -p mnist-tests --test codecs_prop --no-run
cargo test -q --release -p mnist-tests --test onnx_prop --no-run
cargo test -q --release -p mnist-core --lib --no-run

status=0
fuzz() { # NAME, then the cargo test arguments selecting that decoder's property tests
  local name="$1" started=$SECONDS log
  shift
  log="$(mktemp)"
  if cargo test -q --release "$@" >"$log" 2>&1; then
    printf '%-14s ok      %6ss  %s\n' "$name" $((SECONDS - started)) "$(grep -o '[0-9]* passed' "$log" | paste -sd+)"
  else
    printf '%-14s FAILED  %6ss  (log: %s)\n' "$name" $((SECONDS - started)) "$log"
    grep -E 'panicked|minimal failing|Test failed' "$log" | head -20 || true
    status=1
    return
  fi
  rm -f "$log"
}

echo "$cases cases per property test, $(nproc) cores, $(date -u +%FT%TZ)"
# One line per decoder.
fuzz npy          -p mnist-tests --test codecs_prop npy_
fuzz npz/zip      -p mnist-tests --test codecs_prop npz_
fuzz idx/gzip     -p mnist-tests --test codecs_prop idx_
fuzz mxnet        -p mnist-tests --test codecs_prop mxnet_
fuzz mxnet-tiny   -p mnist-core --lib codec::mxnet::tests
fuzz onnx         -p mnist-tests --test onnx_prop onnx_
exit $status
