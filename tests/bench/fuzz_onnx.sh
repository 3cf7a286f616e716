#!/usr/bin/env bash
# The ONNX reader's property tests at benchmark size: 100,000 cases per test (CI runs 256).
# Random bytes, damaged exports and field-level lies (tests/tests/onnx_prop.rs) must give Err,
# never a panic or more memory than a fixed multiple of the input. The same line format as
# tests/bench/fuzz_decoders.sh (branch hardening), which can run it as one more decoder:
#   fuzz onnx -p mnist-tests --test onnx_prop onnx_
# Usage: bash tests/bench/fuzz_onnx.sh [CASES]   (record the results in tests/bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
cases="${1:-100000}"
export MNIST_PROPTEST_CASES="$cases" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
cargo test -q --release -p mnist-tests --test onnx_prop --no-run

echo "$cases cases per property test, $(nproc) cores, $(date -u +%FT%TZ)"
status=0
for test in onnx_random_bytes onnx_damaged_exports onnx_lying_fields; do
  started=$SECONDS
  log="$(mktemp)"
  if cargo test -q --release -p mnist-tests --test onnx_prop "$test" >"$log" 2>&1; then
    printf '%-22s ok      %6ss  %s\n' "$test" $((SECONDS - started)) "$(grep -o '[0-9]* passed' "$log" | paste -sd+)"
    rm -f "$log"
  else
    printf '%-22s FAILED  %6ss  (log: %s)\n' "$test" $((SECONDS - started)) "$log"
    grep -E 'panicked|minimal failing|Test failed' "$log" | head -20 || true
    status=1
  fi
done
exit $status
