#!/usr/bin/env bash
# Builds, here where Rust is, everything the GPU check runs and gathers it into gpu-bundle/
# (git-ignored; the GPU session carries it): stripped release test binaries of mnist-cuda, the
# release `mnist`, the PyTorch reference and MNIST. Leaves out: running anything on a GPU.
# Usage: cuda/gpu-check/bundle.sh [--no-data]   (--no-data: the host has $MNIST_DATA itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
with_data=1
[ "${1:-}" = "--no-data" ] && with_data=0
bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/bin"

cargo build --release -q -p mnist
# The JSON messages name each test target's executable.
cargo test --release -q -p mnist-cuda --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
' >"$bundle/tests.txt"
while read -r name exe; do
  strip -o "$bundle/bin/$name" "$exe"
done <"$bundle/tests.txt"
strip -o "$bundle/bin/mnist" target/release/mnist
cp ../shared/anchors/torch_mnist_cnn.py "$bundle/"
data="${MNIST_DATA:-$(cd .. && pwd)/shared/data/mnist.npz}"
if [ "$with_data" = 1 ]; then
  # ../shared does not travel to the device machine, so the data goes in the bundle.
  cp "$data" "$bundle/mnist.npz"
fi
git rev-parse HEAD >"$bundle/commit.txt"

# The device machine takes at most 64 MiB: the tracked tree plus what is carried.
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb "$bundle" | cut -f1)
total=$((tracked + carried))
ls -l "$bundle" "$bundle/bin"
echo "gpu-bundle: $((carried / 1048576)) MiB, with the tracked tree $((total / 1048576)) MiB of the 64 MiB that travel"
if [ "$total" -ge $((64 * 1048576)) ]; then
  echo "error: too large to travel; try --no-data" >&2
  exit 1
fi
