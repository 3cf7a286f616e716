#!/usr/bin/env bash
# Makes locally the two base images that k8s/Dockerfile's cpu and static targets pull, for
# machines that cannot reach Docker Hub (CI): docker.io/library/debian:bookworm-slim from a
# Debian bookworm rootfs (mmdebstrap minbase, slimmed as the official image is), and
# docker.io/library/rust:<version>-slim-bookworm from that plus the host's rustup toolchain
# (rust.Containerfile). Then `podman build --pull=never` builds the published Dockerfile as it is.
# Idempotent: an image already there (a real pull or an earlier stand-in) is kept; the rootfs
# tarball is cached. Leaves out nvidia/cuda: the cuda target is not built here.
set -euo pipefail
cd "$(dirname "$0")/../.."

# This machine's podman needs runc and rlimits within the host's hard limits (see k8s/README.md).
podman_flags=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
cache="${MNIST_CI_CACHE:-$HOME/.cache/mnist-ci}/containers"
mkdir -p "$cache"
stand_in="mnist.stand-in=true"

debian=docker.io/library/debian:bookworm-slim
if podman image exists "$debian"; then
  echo "kept: $debian"
else
  # What the official slim image leaves out (debuerreotype --slimify), and its apt sources.
  slim=()
  for path in doc info linda lintian/overrides locale man groff; do
    slim+=("--dpkgopt=path-exclude=/usr/share/$path/*")
  done
  slim+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")
  # Merged /usr by symlinks, as debootstrap makes it: the usrmerge package would pull in perl.
  slim+=("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
  sources=("deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main")
  # The tarball is named by the options that make it, so changing them makes a new one.
  key=$(printf '%s\n' "${slim[@]}" "${sources[@]}" | sha256sum | cut -c1-12)
  rootfs="$cache/bookworm-minbase-$key.tar"
  if [ ! -s "$rootfs" ]; then
    echo "making $rootfs with mmdebstrap (downloads from deb.debian.org, about a minute)"
    partial="$cache/partial-bookworm.tar"
    if ! mmdebstrap --variant=minbase --quiet "${slim[@]}" bookworm "$partial" "${sources[@]}" \
      </dev/null >"$cache/mmdebstrap.log" 2>&1; then
      tail -n 30 "$cache/mmdebstrap.log" >&2
      echo "error: mmdebstrap failed (whole log: $cache/mmdebstrap.log)" >&2
      exit 1
    fi
    rm -f "$cache"/bookworm-minbase-*.tar # made with other options
    mv "$partial" "$rootfs"
  fi
  podman import --quiet --change 'CMD ["bash"]' \
    --change "LABEL $stand_in org.opencontainers.image.description=\"local stand-in: mmdebstrap --variant=minbase bookworm\"" \
    "$rootfs" "$debian" >/dev/null
  echo "imported: $debian from $rootfs"
fi

# The builder: the Rust version the Dockerfile names must be the host's, or the stand-in lies.
want=$(sed -nE 's/^FROM rust:([0-9.]+)-slim-bookworm.*/\1/p' k8s/Dockerfile | sort -u)
if [ "$(wc -l <<<"$want")" -ne 1 ] || [ -z "$want" ]; then
  echo "error: k8s/Dockerfile should name one rust:<version>-slim-bookworm, found: ${want:-none}" >&2
  exit 1
fi
have=$(rustc --version | cut -d' ' -f2)
case "$have" in
  "$want" | "$want".*) ;;
  *)
    echo "error: k8s/Dockerfile builds with Rust $want but the host has $have: no honest stand-in" >&2
    exit 1
    ;;
esac
rust="docker.io/library/rust:$want-slim-bookworm"
built_from="mnist.stand-in.rustc=$have"
if podman image exists "$rust" &&
  [ "$(podman image inspect --format '{{index .Labels "mnist.stand-in.rustc"}}' "$rust")" != "" ] &&
  [ "$(podman image inspect --format '{{index .Labels "mnist.stand-in.rustc"}}' "$rust")" != "$have" ]; then
  echo "the stand-in $rust was made from another host toolchain: making it again"
  podman rmi --force "$rust" >/dev/null
fi
if podman image exists "$rust"; then
  echo "kept: $rust"
else
  sysroot=$(rustc --print sysroot)
  host_ca=/usr/local/share/ca-certificates
  if [ ! -d "$host_ca" ]; then host_ca=$(mktemp -d); fi
  podman build "${podman_flags[@]}" --pull=never --quiet \
    --build-arg "RUST_VERSION=$have" --label "$stand_in" --label "$built_from" \
    -v "$sysroot:/host-toolchain:ro" -v "$(command -v rustup):/host-rustup:ro" -v "$host_ca:/host-ca:ro" \
    -f k8s/standin/rust.Containerfile -t "$rust" k8s/standin >/dev/null
  echo "built: $rust from the host's $sysroot (rustc $have)"
fi
