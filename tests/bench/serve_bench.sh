#!/usr/bin/env bash
# Throughput and latency of `mnist serve` side by side with the real MXNet Model Server 1.1.11
# in the same run: wrk (Debian's) posting the sample's 7.jpg (fixtures/serve/images/7.jpg, see
# fixtures/serve/README.md) to /predictions/mnist with 1 and then 16 concurrent clients, each
# server alone on the machine while it is measured. Both serve the same model (fixtures/model)
# on 127.0.0.1 with their default settings. Prints req/s, p50, p99 and the ratios.
#
#   bash tests/bench/serve_bench.sh            # DURATION=10 seconds per measurement
# Needs: cargo, curl, wrk (installed from Debian if missing), MMS (fixtures/serve/mms_env.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
duration="${DURATION:-10}"
ours_port="${OURS_PORT:-18680}"
mms_port="${MMS_PORT:-18480}"
image="$root/fixtures/serve/images/7.jpg"

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq wrk >/dev/null
fi
(cd "$root" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build -q --release -p mnist)
source "$root/fixtures/serve/mms_env.sh"
mms_install

work="$(mktemp -d)"
ours_pid=""
cleanup() {
  [ -n "$ours_pid" ] && kill "$ours_pid" 2>/dev/null && wait "$ours_pid" 2>/dev/null
  mms_stop
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/post.lua" <<EOF
local f = assert(io.open("$image", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

# measure NAME CLIENTS URL: a 2 s warm-up, then DURATION seconds; one table row.
measure() {
  local name="$1" clients="$2" url="$3" threads=1
  [ "$clients" -gt 1 ] && threads=2
  wrk -t"$threads" -c"$clients" -d2s -s "$work/post.lua" "$url" >/dev/null
  wrk -t"$threads" -c"$clients" -d"${duration}s" --latency -s "$work/post.lua" "$url" > "$work/out"
  local rps p50 p99 errors
  rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/out")"
  p50="$(awk '$1 == "50%" {print $2}' "$work/out")"
  p99="$(awk '$1 == "99%" {print $2}' "$work/out")"
  errors="$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$work/out")"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$clients" "$rps" "$p50" "$p99" "${errors:-0}" | tee -a "$work/table"
  echo "$name $clients $rps" >> "$work/rps"
}

start_ours() {
  "$root/target/release/mnist" serve --quiet --host 127.0.0.1 --port "$ours_port" \
    --management-port "$((ours_port + 1))" --metrics-port "$((ours_port + 2))" 2> "$work/ours.log" &
  ours_pid=$!
  for _ in $(seq 100); do
    curl -sf -X POST "http://127.0.0.1:$ours_port/predictions/mnist" -T "$image" -o /dev/null && return 0
    sleep 0.1
  done
  cat "$work/ours.log" >&2
  return 1
}

echo "machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| server | clients | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
start_ours
ours="http://127.0.0.1:$ours_port/predictions/mnist"
echo "mnist serve answers: $(curl -s -X POST "$ours" -T "$image")" > "$work/answers"
measure "mnist serve" 1 "$ours"
measure "mnist serve" 16 "$ours"
kill "$ours_pid"; wait "$ours_pid" 2>/dev/null || true; ours_pid=""
mms_start "$mms_port" > /dev/null
mms="http://127.0.0.1:$mms_port/predictions/mnist"
echo "MMS answers:         $(curl -s -X POST "$mms" -T "$image")" >> "$work/answers"
measure "MMS 1.1.11" 1 "$mms"
measure "MMS 1.1.11" 16 "$mms"
mms_stop
echo
cat "$work/answers"
for clients in 1 16; do
  awk -v c="$clients" '$NF && $(NF-1) == c { rps[$1] = $NF } END {
    if (rps["MMS"] > 0) printf "%s clients: mnist serve / MMS = %.1fx req/s\n", c, rps["mnist"] / rps["MMS"] }' "$work/rps"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
