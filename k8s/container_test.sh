#!/usr/bin/env bash
# Builds k8s/Dockerfile's cpu and static targets with podman and runs the images as a user would:
# training on a volume as the non-root user, `podman stop` mid-run (exit 143, a checkpoint) and a
# resumed run (bit-identical to an uninterrupted one), a read-only root filesystem with a tmpfs
# /tmp, the static binary's CUDA fallback, and `mnist serve` answering curl on a published port
# (when the binary has `serve`). Prints the image sizes and start-up times (podman run to the
# first log line, median of 5).
# Leaves out the cuda target: NVIDIA's base image cannot be pulled here and there is no GPU.
# Where podman cannot run containers it says SKIPPED loudly; with MNIST_REQUIRE_PODMAN=1 (CI)
# that is an error. Needs $MNIST_DATA (an mnist.npz), python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${MNIST_CI_CACHE:-$HOME/.cache/mnist-ci}/containers"
# This machine's podman needs runc and rlimits within the host's hard limits (k8s/README.md).
podman_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
images=(cpu static)
static_limit_bytes=15000000
startup_runs=5

cannot() {
  if [ "${MNIST_REQUIRE_PODMAN:-}" = 1 ]; then
    echo "error: the container tests must run (MNIST_REQUIRE_PODMAN=1) but $*" >&2
    exit 1
  fi
  echo "SKIPPED: the container tests did not run: $*" >&2
  echo "SKIPPED: (k8s/Dockerfile was neither built nor run; MNIST_REQUIRE_PODMAN=1 makes this an error)" >&2
  exit 0
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }

for tool in podman runc python3 curl; do
  command -v "$tool" >/dev/null || cannot "$tool is not installed (Debian: apt-get install podman runc python3 curl)"
done
if ! podman image exists docker.io/library/debian:bookworm-slim && ! command -v mmdebstrap >/dev/null; then
  cannot "debian:bookworm-slim is not here and mmdebstrap, which makes its stand-in, is not installed"
fi
[ -f "${MNIST_DATA:-}" ] || cannot "\$MNIST_DATA (an mnist.npz) is not set or missing: ${MNIST_DATA:-unset}"
if ! why=$(podman info 2>&1 >/dev/null); then
  cannot "podman cannot start here: $(tail -n 3 <<<"$why")"
fi
rootless=$(podman info --format '{{.Host.Security.Rootless}}')
if [ "$rootless" = true ]; then
  # Images own files as several users: rootless podman needs a range from /etc/subuid for them.
  ids=$(podman unshare awk '{n += $3} END {print n}' /proc/self/uid_map 2>/dev/null) || ids=0
  [ "$ids" -ge 65536 ] 2>/dev/null ||
    cannot "rootless podman maps $ids user ids, too few for an image's users (add $(id -un) to /etc/subuid and /etc/subgid)"
fi

work=$(mktemp -d)
run_id="mnist-ct-$$"
cleanup() {
  local names
  names=$(podman ps -a --filter "name=^$run_id-" --format '{{.Names}}')
  if [ -n "$names" ]; then
    # shellcheck disable=SC2086 # one word per name
    podman rm -f -t 0 $names >/dev/null 2>&1 || true
  fi
  # The volume's files belong to the container's user: as root, rm works; rootless, unshare does.
  rm -rf "$work" 2>/dev/null || podman unshare rm -rf "$work" || true
}
trap cleanup EXIT

# --- base images and the build --------------------------------------------------------------
echo "--- base images (a pulled image is kept; else a local stand-in: k8s/standin/images.sh)"
bash k8s/standin/images.sh
if ! why=$(podman run --rm "${podman_flags[@]}" docker.io/library/debian:bookworm-slim true 2>&1); then
  cannot "podman cannot run a container here: $why"
fi

# Cache mounts (the cargo registry, target/) live under TMPDIR, so in the CI cache.
mkdir -p "$cache/tmp"
build_flags=("${podman_flags[@]}" --pull=never)
if [ -n "${CARGO_BUILD_JOBS:-}" ]; then
  build_flags+=(--cpuset-cpus "0-$((CARGO_BUILD_JOBS - 1))")
fi
for image in "${images[@]}"; do
  echo "--- podman build -f k8s/Dockerfile --target $image -t localhost/mnist:$image ."
  log="$cache/build-$image.log"
  start=$SECONDS
  if ! TMPDIR="$cache/tmp" podman build "${build_flags[@]}" -f k8s/Dockerfile --target "$image" \
    -t "localhost/mnist:$image" . >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "podman build --target $image failed (whole log: $log)"
  fi
  ok "built localhost/mnist:$image in $((SECONDS - start)) s"
done

# --- the tests ------------------------------------------------------------------------------
# The data volume: a host folder that podman hands to the image's user (:U), as `chown 10001`
# would for docker.
vol="$work/vol"
mkdir -p "$vol"
cp "$MNIST_DATA" "$vol/mnist.npz"
run() { podman run --rm "${podman_flags[@]}" -v "$vol:/data:U" "$@"; }
train_args=(train --data /data/mnist.npz --epochs 1)

for image in "${images[@]}"; do
  tag="localhost/mnist:$image"
  user=$(podman image inspect --format '{{.Config.User}}' "$tag")
  [ "$user" = "10001:10001" ] || fail "$tag runs as '$user', not 10001:10001"

  echo "--- $image: train on the volume as the image's user"
  out="$work/$image-train.log"
  run "$tag" "${train_args[@]}" --limit 2400 --out-dir "/data/$image-model" >"$out" 2>&1 ||
    fail "$image: train exited $? ($(tail -n 3 "$out"))"
  grep -q '^Test accuracy: ' "$out" || fail "$image: no 'Test accuracy:' in the log: $(cat "$out")"
  for file in mnist_cnn-symbol.json mnist_cnn-0000.params history.csv training.svg; do
    [ -s "$vol/$image-model/$file" ] || fail "$image: $file was not written to the volume"
  done
  if [ "$rootless" = false ]; then
    owner=$(stat -c %u "$vol/$image-model/mnist_cnn-0000.params")
    [ "$owner" = 10001 ] || fail "$image: the model on the volume belongs to uid $owner, not 10001"
  fi
  predicted=$(run "$tag" predict --model "/data/$image-model/mnist_cnn" --npz /data/mnist.npz 2>&1) ||
    fail "$image: predict on the written model failed: $predicted"
  grep -qE '^10000 images: accuracy 0\.[0-9]+' <<<"$predicted" || fail "$image: predict said: $predicted"
  ok "$image: trained as uid 10001, the model on the volume predicts: $predicted"

  # The image's own CMD writes to /home/mnist/model (and downloads into ~/.cache): its user's.
  # With a CPU limit (the manifests set one), training takes that many threads.
  out="$work/$image-home.log"
  run --cpus 1 "$tag" "${train_args[@]}" --limit 600 --out-dir /home/mnist/model >"$out" 2>&1 ||
    fail "$image: the home folder /home/mnist is not the user's: train exited $? ($(tail -n 3 "$out"))"
  grep -q 'device: cpu (1 thread)' "$out" || fail "$image: --cpus 1 did not give one thread: $(head -n 2 "$out")"
  ok "$image: the user writes its home (the default --out-dir /home/mnist/model); --cpus 1: one thread"

  echo "--- $image: --read-only with a tmpfs /tmp"
  out="$work/$image-ro.log"
  run --read-only --tmpfs /tmp "$tag" "${train_args[@]}" --limit 1200 --out-dir "/data/$image-ro" >"$out" 2>&1 ||
    fail "$image: train on a read-only root exited $? ($(tail -n 3 "$out"))"
  [ -s "$vol/$image-ro/mnist_cnn-0000.params" ] || fail "$image: read-only run wrote no model"
  ok "$image: trains on a read-only root filesystem, writing only to the volume"
done

echo "--- static: CUDA cannot load in a static binary: a clear fallback and a clear error"
out=$(run localhost/mnist:static "${train_args[@]}" --limit 600 --backend auto --out-dir /data/auto 2>&1) ||
  fail "static: --backend auto exited $?: $out"
grep -q 'training on the CPU because' <<<"$out" || fail "static: --backend auto gave no reason for the CPU: $out"
rc=0
out=$(run localhost/mnist:static "${train_args[@]}" --limit 600 --backend cuda 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "static: --backend cuda exited $rc, not 2: $out"
grep -q 'no usable CUDA GPU: static build' <<<"$out" || fail "static: --backend cuda did not say it is a static build: $out"
! grep -q 'panicked' <<<"$out" || fail "static: --backend cuda panicked: $out"
ok "static: --backend cuda exits 2: $(tail -n 1 <<<"$out")"

echo "--- cpu: podman stop mid-run exits 143 with a checkpoint; a second run resumes and completes"
name="$run_id-stop"
resume_args=("${train_args[@]}" --limit 12000 --checkpoint-dir /data/ckpt --heartbeat-secs 1 --out-dir /data/resumed)
podman run -d --name "$name" "${podman_flags[@]}" -v "$vol:/data:U" localhost/mnist:cpu "${resume_args[@]}" >/dev/null
for _ in $(seq 1200); do
  if podman logs "$name" 2>&1 | grep -q '^Epoch 1/1 - step '; then break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] ||
    fail "cpu: the run ended before its first heartbeat: $(podman logs "$name" 2>&1 | tail -n 5)"
  sleep 0.1
done
podman stop -t 60 "$name" >/dev/null
rc=$(podman inspect --format '{{.State.ExitCode}}' "$name")
stopped=$(podman logs "$name" 2>&1)
podman rm "$name" >/dev/null
[ "$rc" = 143 ] || fail "cpu: podman stop gave exit $rc, not 143: $(tail -n 5 <<<"$stopped")"
grep -qE '^error: stopped by SIGTERM at epoch 1, step [0-9]+; checkpoint written to /data/ckpt/' <<<"$stopped" ||
  fail "cpu: the stopped run did not report its checkpoint: $(tail -n 5 <<<"$stopped")"
checkpoint=$(find "$vol/ckpt" -name 'checkpoint-e0000-s*.ckpt' | head -n 1)
[ -n "$checkpoint" ] || fail "cpu: no mid-epoch checkpoint in the volume: $(ls -l "$vol/ckpt")"
ok "cpu: podman stop: exit 143, $(grep -o 'stopped by SIGTERM.*' <<<"$stopped")"
out="$work/resumed.log"
run localhost/mnist:cpu "${resume_args[@]}" >"$out" 2>&1 || fail "cpu: the resumed run exited $? ($(tail -n 3 "$out"))"
grep -q "^resuming from /data/ckpt/$(basename "$checkpoint") (epoch 1, step " "$out" ||
  fail "cpu: the second run did not resume from $(basename "$checkpoint"): $(head -n 8 "$out")"
grep -q '^Test accuracy: ' "$out" || fail "cpu: the resumed run did not complete: $(tail -n 5 "$out")"
[ -s "$vol/resumed/mnist_cnn-0000.params" ] || fail "cpu: the resumed run wrote no model"
# The same run without the stop (same thread count): the resumed model must be bit-identical.
straight=("${train_args[@]}" --limit 12000 --out-dir /data/straight)
run localhost/mnist:cpu "${straight[@]}" >"$work/straight.log" 2>&1 || fail "cpu: the uninterrupted run failed"
cmp -s "$vol/resumed/mnist_cnn-0000.params" "$vol/straight/mnist_cnn-0000.params" ||
  fail "cpu: the resumed model differs from an uninterrupted run's"
ok "cpu: $(grep '^resuming from' "$out"), then $(grep '^Test accuracy' "$out"), bit-identical to a run without the stop"

echo "--- mnist serve in the container, on a published port"
# The MNIST test set's first digit as a PNG (Python's standard library only), and its label.
label=$(python3 - "$MNIST_DATA" "$work/digit.png" <<'EOF'
import struct, sys, zipfile, zlib
def npy(z, name):  # a C-ordered uint8 .npy: skip its header, return the data
    raw = z.read(name)
    assert raw[:6] == b"\x93NUMPY" and b"'|u1'" in raw[:128], name + " is not a uint8 .npy"
    header_len = struct.unpack("<H", raw[8:10])[0] if raw[6] == 1 else struct.unpack("<I", raw[8:12])[0]
    return raw[(10 if raw[6] == 1 else 12) + header_len:]
with zipfile.ZipFile(sys.argv[1]) as z:
    pixels, label = npy(z, "x_test.npy")[:784], npy(z, "y_test.npy")[0]
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\0" + pixels[r * 28:(r + 1) * 28] for r in range(28))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
open(sys.argv[2], "wb").write(png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
print(label)
EOF
)
# The Deployment's own container args (k8s/serve.yaml), as a pod would run them.
serve_args=()
if [ -f k8s/serve.yaml ]; then
  listed=$(python3 -c '
import json, re, sys
found = re.search(r"^ *args: (\[.*\])$", open(sys.argv[1]).read(), re.M)
print("\n".join(json.loads(found.group(1))))' k8s/serve.yaml) || fail "no args: [...] line in k8s/serve.yaml"
  mapfile -t serve_args <<<"$listed"
fi
for image in "${images[@]}"; do
  tag="localhost/mnist:$image"
  if ! podman run --rm "${podman_flags[@]}" "$tag" help | grep -q '^  serve '; then
    echo "SKIPPED: $image: this binary has no 'serve' subcommand yet; mnist serve was not tested" >&2
    continue
  fi
  name="$run_id-serve-$image"
  start=$(date +%s%N)
  podman run -d --name "$name" "${podman_flags[@]}" --read-only --tmpfs /tmp -p 127.0.0.1::8080 \
    "$tag" "${serve_args[@]:-serve}" >/dev/null
  port=$(podman port "$name" 8080/tcp | sed 's/.*://')
  ping=""
  for _ in $(seq 300); do
    if ping=$(curl -sf "http://127.0.0.1:$port/ping"); then break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] ||
      fail "$image: mnist serve ended: $(podman logs "$name" 2>&1 | tail -n 5)"
    sleep 0.1
  done
  grep -q '"Healthy"' <<<"$ping" || fail "$image: /ping on port $port answered '$ping'"
  ready_ms=$((($(date +%s%N) - start) / 1000000))
  answer=$(curl -sf -X POST "http://127.0.0.1:$port/predictions/mnist" -T "$work/digit.png") ||
    fail "$image: /predictions/mnist failed: $(podman logs "$name" 2>&1 | tail -n 5)"
  grep -q "Prediction is \[$label\]" <<<"$answer" || fail "$image: a $label was answered with: $answer"
  podman stop -t 30 "$name" >/dev/null
  rc=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  podman rm "$name" >/dev/null
  [ "$rc" = 0 ] || fail "$image: mnist serve exited $rc after SIGTERM, not 0"
  ok "$image: mnist ${serve_args[*]:-serve} on 127.0.0.1:$port (read-only root): /ping Healthy $ready_ms ms after podman run; a $label: $answer; SIGTERM: exit 0"
done

# --- sizes and start-up ---------------------------------------------------------------------
echo "--- image sizes and start-up (podman run to the first log line, median of $startup_runs)"
first_line_ms() {
  local start
  start=$(date +%s%N)
  run "$@" 2>&1 | {
    IFS= read -r _
    echo $((($(date +%s%N) - start) / 1000000))
    cat >/dev/null
  }
}
for image in "${images[@]}"; do
  tag="localhost/mnist:$image"
  size=$(podman image inspect --format '{{.Size}}' "$tag")
  times=()
  for _ in $(seq "$startup_runs"); do
    times+=("$(first_line_ms "$tag" "${train_args[@]}" --limit 600 --out-dir /data/startup)")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((startup_runs + 1) / 2))p")
  echo "result: $image image $size bytes ($((size / 1000000)) MB); start-up median $median ms (runs: ${times[*]} ms)"
done
size=$(podman image inspect --format '{{.Size}}' localhost/mnist:static)
[ "$size" -le "$static_limit_bytes" ] || fail "the static image is $size bytes, over its $static_limit_bytes goal"
echo "--- container tests passed"
