#!/usr/bin/env bash
# The GPU check, in one go on a GPU host with no Rust: runs the prebuilt binaries in gpu-bundle/
# (made by bundle.sh) with a timeout per step, goes on after a failure, writes full logs and
# always prints a short table last. Leaves out: building anything (there is no cargo there).
# Usage, from the repository root: bash cuda/gpu-check/run.sh [LOG_DIR]
# Steps: availability, NVRTC compile with the host's CUDA, CPU-vs-CUDA op properties, whole
# training steps, bf16/f16 GEMMs and loss scaling (cuda_precision), one real-MNIST epoch
# (timed), pure training time per epoch (cuda_speed: f32, bf16, f16), `mnist train --backend
# cuda --epochs 12` in f32, bf16 and f16, and the PyTorch reference for 6 epochs. With $OUT
# set, the logs and table are copied there.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle="${MNIST_GPU_BUNDLE:-gpu-bundle}"
logs="${1:-gpu-check-logs}"
mkdir -p "$logs"
logs="$(cd "$logs" && pwd)"
summary="$logs/summary.txt"
: >"$summary"

# CUDA 13's libraries: /usr/local/cuda first, then any pip wheel folders (PyTorch's).
lib_dirs=""
for lib in libcuda.so.1 libnvrtc.so.13 libcublas.so.13; do
  for dir in /usr/local/nvidia/lib64 /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
    $(python3 -c 'import site; print(" ".join(p + "/nvidia/cu13/lib " + p + "/nvidia/cublas/lib " + p + "/nvidia/cuda_nvrtc/lib" for p in site.getsitepackages()))' 2>/dev/null); do
    if [ -e "$dir/$lib" ]; then
      case ":$lib_dirs:" in *":$dir:"*) ;; *) lib_dirs="${lib_dirs:+$lib_dirs:}$dir" ;; esac
      break
    fi
  done
done
export LD_LIBRARY_PATH="${lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MNIST_REQUIRE_GPU=1 MNIST_REQUIRE_NVRTC=1 RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
[ -d /usr/local/cuda/include ] && export MNIST_CUDA_INCLUDE=/usr/local/cuda/include

data=""
for candidate in "${MNIST_DATA:-}" "$bundle/mnist.npz" ../shared/data/mnist.npz shared/data/mnist.npz; do
  if [ -n "$candidate" ] && [ -f "$candidate" ]; then
    data="$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")"
    break
  fi
done
[ -n "$data" ] && export MNIST_DATA="$data"

# One table row per step: name, status, seconds, result.
# The summary also goes to $OUT after every row, so a run cut off by the call's limit still
# returns what it finished.
row() {
  printf '%-14s %-8s %7s  %s\n' "$1" "$2" "$3" "$4" >>"$summary"
  if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$summary" "$OUT/summary.txt"; fi
}

# step NAME TIMEOUT_S COMMAND...: runs with a timeout, logs to NAME.log, records status.
step() {
  local name=$1 limit=$2
  shift 2
  local log="$logs/$name.log" t0=$SECONDS status
  echo "=== $name (limit ${limit}s): $*" | tee "$log"
  timeout --kill-after=5 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then status=ok; elif [ $rc -ge 124 ]; then status=TIMEOUT; else status=FAIL; fi
  if grep -q "SKIPPED" "$log" && [ $rc -eq 0 ]; then status=skipped; fi
  LAST_STATUS=$status
  LAST_SECONDS=$((SECONDS - t0))
  echo "=== $name: $status (rc $rc) in ${LAST_SECONDS}s" | tee -a "$log"
  tail -n 4 "$log" | sed 's/^/    /'
}

# Test binaries: the result column counts passed/failed tests from libtest's summary. A name
# NAME#K runs NAME's binary again (its K-th run, with a log of its own).
test_step() {
  local name=$1 limit=$2 bin="$bundle/bin/${1%%#*}"
  shift 2
  if [ ! -x "$bin" ]; then
    row "$name" missing 0 "$bin not found: run cuda/gpu-check/bundle.sh where Rust is"
    return
  fi
  step "$name" "$limit" "$bin" --nocapture "$@"
  local result
  result=$(grep -E "^test result:" "$logs/$name.log" | tail -1 | sed -E 's/test result: ([A-Za-z]+)\. ([0-9]+ passed); ([0-9]+ failed).*/\1, \2, \3/')
  # The line after "panicked at" holds the assertion's message.
  [ "$LAST_STATUS" = FAIL ] && result="$result; first failure: $(grep -m1 -A1 "panicked at" "$logs/$name.log" | tail -1 | cut -c1-200)"
  row "$name" "$LAST_STATUS" "$LAST_SECONDS" "${result:-see $name.log}"
}

{
  echo "commit: $(cat "$bundle/commit.txt" 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "MNIST_DATA=${MNIST_DATA:-<none found>}"
  for lib in libcuda.so.1 libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
    found=$(for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/$lib" ] && echo "$d/$lib" && break; done)
    echo "$lib: ${found:-NOT FOUND on LD_LIBRARY_PATH (may still come from ldconfig)}"
  done
} >"$logs/environment.log" 2>&1
cat "$logs/environment.log"

# 12 epochs with validation through the real CLI in one precision: train12 NAME PRECISION.
train12() {
  local name=$1 precision=$2
  step "$name" 40 "$bundle/bin/mnist" train --backend cuda --precision "$precision" --epochs 12 --data "$data" --out-dir "$logs/$name" --heartbeat-secs 0
  local history="$logs/$name/history.csv" result="see $name.log"
  if [ -f "$history" ]; then
    # Epoch seconds: the first (with warm-up) and the median of the rest; the last val_acc.
    result=$(python3 - "$history" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
secs = [float(r["seconds"]) for r in rows]
rest = statistics.median(secs[1:]) if len(secs) > 1 else float("nan")
print(f"epochs={len(rows)} first_epoch_s={secs[0]:.3f} median_epoch_s={rest:.3f} val_acc={rows[-1]['val_acc']} loss={rows[-1]['loss']}")
PY
)
    # f16's loss scale at the end and the steps it skipped.
    result="$result $(grep -m1 -o 'f16 loss scale.*' "$logs/$name.log")"
  fi
  row "$name" "$LAST_STATUS" "$LAST_SECONDS" "$result"
}

# Limits sized so the whole check ends in under 9 minutes even if every step hangs (it
# takes about a minute when all is well): 465 s of limits plus 5 s per kill.
test_step availability 10
test_step nvrtc_compile 20
test_step cuda_vs_cpu 40
# Three runs: a step recording once failed inside cuBLAS in 2 of 4 runs of this binary.
test_step cuda_network 30
test_step "cuda_network#2" 30
test_step "cuda_network#3" 30
test_step cuda_precision 40
if [ -n "$data" ]; then
  for line in $(grep "^GPU_PRECISION" "$logs/cuda_precision.log" | sed 's/^GPU_PRECISION //; s/ /,/g'); do
    row "  one epoch" "" "" "${line//,/ }"
  done
  test_step cuda_mnist 25
  epoch=$(grep -m1 "^GPU_EPOCH" "$logs/cuda_mnist.log" | sed 's/^GPU_EPOCH //')
  [ -n "$epoch" ] && row "  one epoch" "" "" "$epoch"

  # Pure training time per epoch (no validation, synchronised): f32 with graphs on and off,
  # TF32, bf16 and f16; compare with the torch row's epoch_s (also training only).
  test_step cuda_speed 45
  speed=$(grep -m1 "^GPU_SPEED" "$logs/cuda_speed.log" | sed 's/^GPU_SPEED //')
  [ -n "$speed" ] && row "  train epoch" "" "" "$speed"

  # The product's own benchmark on the GPU (what a user would run), in bf16.
  step bench_bf16 30 "$bundle/bin/mnist" bench --backend cuda --precision bf16 --data "$data" --steps 200 --warmup 20 --repeats 3
  row bench_bf16 "$LAST_STATUS" "$LAST_SECONDS" "$(grep -m1 '^mnist_cuda ' "$logs/bench_bf16.log" || echo 'see bench_bf16.log')"

  train12 train12 f32
  train12 train12_bf16 bf16
  train12 train12_f16 f16

  if [ -f "$bundle/torch_mnist_cnn.py" ]; then
    # Six epochs: the script reports the median of all but the first, and PyTorch eager's epoch
    # (launch-bound on the host CPU) moved 0.79-1.22 s between runs with only two.
    step torch 45 python3 "$bundle/torch_mnist_cnn.py" --data "$data" --epochs 6
    row torch "$LAST_STATUS" "$LAST_SECONDS" "$(grep -m1 '^torch ' "$logs/torch.log" || echo 'see torch.log')"
    # Training vs training: PyTorch eager's median epoch over ours, per precision (the goal
    # is >= 3).
    ratio=$(python3 - "$logs/torch.log" "$logs/cuda_speed.log" <<'PY' 2>/dev/null
import re, sys
torch = re.search(r"^torch .*epoch_s=([0-9.]+)", open(sys.argv[1]).read(), re.M)
speed = re.search(r"^GPU_SPEED .*", open(sys.argv[2]).read(), re.M)
if not (torch and speed):
    print("n/a")
else:
    ours = dict(re.findall(r"(\w+_epoch_s)=([0-9.]+)", speed.group(0)))
    t = float(torch.group(1))
    print(" ".join(f"torch / {k} = {t / float(v):.2f}x" for k, v in ours.items()))
PY
)
    row "  speedup" "" "" "${ratio:-n/a}"
  else
    row torch missing 0 "$bundle/torch_mnist_cnn.py not found"
  fi
else
  row cuda_mnist skipped 0 "no mnist.npz: set MNIST_DATA or run bundle.sh without --no-data"
fi

{
  echo
  echo "GPU check: $(head -2 "$logs/environment.log" | tr '\n' ' ')"
  printf '%-14s %-8s %7s  %s\n' step status seconds result
  cat "$summary"
  echo "total ${SECONDS}s; full logs in $logs"
} | tee "$logs/table.txt"

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  # The device tool returns at most 8 files: the table and one archive of everything.
  cp "$logs/table.txt" "$OUT/table.txt"
  tar -czf "$OUT/gpu-check-logs.tgz" -C "$(dirname "$logs")" "$(basename "$logs")"
fi
