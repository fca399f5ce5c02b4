#!/usr/bin/env bash
# make container-test: build the image from the Dockerfile with podman and run the demo inside it,
# on a machine like CI's (root, apt and the package index reachable, no container registry).
#   1. tools: podman, buildah, debootstrap, runc from apt when missing;
#   2. base image: Debian bookworm made by debootstrap (cached as a tarball), given the machine's CA
#      bundle and pip configuration, imported under the Dockerfile's base image name;
#   3. wheelhouse/: the torch wheel this machine's pip resolves for the pin (the CPU build on disk);
#   4. podman build, timed, and the image's size;
#   5. tests/packaging/test_container_image.py: the demo's participant and group levels inside the
#      image, offline, read-only, as arbitrary uids, with every output and leftover checked.
# Usage: scripts/container_test.sh  (make container-test calls it; environment knobs below)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PY:-.venv/bin/python}
CACHE_DIR=${CONTAINER_CACHE_DIR:-$PWD/.cache/container}
VERSION=$("$PY" -c 'import latentbids; print(latentbids.__version__)')
IMAGE=${CONTAINER_IMAGE:-localhost/latentbids/latentbids:$VERSION}
# The name the Dockerfile's BASE_IMAGE default carries (without its digest: the debootstrap'd image
# has its own), so the build resolves it locally and never asks a registry.
BASE_NAME=docker.io/library/python:3.11-slim-bookworm
DEPS_IMAGE=localhost/latentbids-ci/deps:latest
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
# crun fails on the hybrid cgroup layout of these sandboxes; runc with explicit ulimits works.
export LATENTBIDS_PODMAN_RUN_ARGS=${LATENTBIDS_PODMAN_RUN_ARGS:---runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768}
METRICS="$CACHE_DIR/metrics.json"

log() { printf '[container-test] %s\n' "$*" >&2; }
die() { printf '[container-test] error: %s\n' "$*" >&2; exit 1; }

ensure_tools() {
  local missing=()
  for tool in podman buildah debootstrap runc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing and apt-get needs root: run 'sudo apt-get install -y podman buildah debootstrap runc', or make test SKIP_CONTAINER_TEST=1"
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah debootstrap runc >/dev/null
}

# Debian bookworm with Python 3.11 (what python:3.11-slim-bookworm is), made once per package list
# and mirror and kept as a tarball: debootstrap takes about 1.5 min, the import seconds.
base_rootfs_tar() {
  local key tar tmp
  key=$(printf '%s %s' "$BASE_PACKAGES" "$DEBIAN_MIRROR" | sha256sum | cut -c1-12)
  tar="$CACHE_DIR/bookworm-$key.tar"
  if [ ! -f "$tar" ]; then
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    log "debootstrap bookworm ($BASE_PACKAGES) from $DEBIAN_MIRROR"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$tmp/root" "$DEBIAN_MIRROR" \
      >"$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
    tar --numeric-owner -C "$tmp/root" -cf "$tmp/rootfs.tar" .
    mv "$tmp/rootfs.tar" "$tar"
    rm -rf "$tmp"
  fi
  printf '%s\n' "$tar"
}

# Local folders this machine's pip configuration names (find-links, file:// indexes): mounted
# read-only into the build so pip inside it reaches the same packages as pip here.
pip_local_sources() {
  "$PY" -m pip config list 2>/dev/null \
    | grep -E '(find-links|index-url)=' | cut -d= -f2- | tr -d "'" | tr ' ' '\n' \
    | sed 's|^file://||' | grep '^/' | sort -u \
    | while read -r path; do [ -e "$path" ] && printf '%s\n' "$path"; done
  return 0
}

ensure_base_image() {
  local tar key ctx rootfs_image
  tar=$(base_rootfs_tar)
  key=$(basename "$tar" .tar)
  rootfs_image="localhost/latentbids-ci/$key"
  podman image exists "$rootfs_image" || {
    log "importing $tar as $rootfs_image"
    podman import --quiet "$tar" "$rootfs_image" >/dev/null
  }
  # The machine's CA bundle and pip configuration on top (a cheap layer, rebuilt every run so it
  # follows the machine), tagged with the base image's name.
  ctx=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  mkdir -p "$ctx/etc"
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$ctx/etc/"
  [ -d /etc/xdg/pip ] && mkdir -p "$ctx/etc/xdg" && cp -r /etc/xdg/pip "$ctx/etc/xdg/"
  # As in Debian's own slim images: apt keeps no package caches in image layers.
  mkdir -p "$ctx/etc/apt/apt.conf.d"
  cat >"$ctx/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  {
    echo "FROM $rootfs_image"
    echo "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"
    echo "COPY etc/ /etc/"
    echo 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8'
    env | grep '^PIP_' | sed 's/^\([^=]*\)=\(.*\)$/ENV \1="\2"/' || true
    echo 'CMD ["python3"]'
  } >"$ctx/Containerfile"
  podman build --quiet --isolation=chroot --pull=never -t "$BASE_NAME" "$ctx" >/dev/null
  rm -rf "$ctx"
}

fill_wheelhouse() {
  # pip copies the wheel it resolves for the pin (here the CPU build in /opt/wheels); once there it is kept.
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -c constraints/pins.txt torch -d wheelhouse
}

build_image() {
  local mounts=() args start end size
  while read -r path; do mounts+=(-v "$path:$path:ro"); done < <(pip_local_sources)
  args=(--isolation=chroot --pull=never --layers "${mounts[@]}"
        --build-arg BASE_IMAGE="$BASE_NAME" --build-arg TORCH_VARIANT=cpu --build-arg TORCH_INDEX_URL=
        --build-arg VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)")
  log "podman build -t $IMAGE ($((${#mounts[@]} / 2)) local pip sources mounted read-only)"
  start=$(date +%s)
  podman build "${args[@]}" -t "$IMAGE" . >"$CACHE_DIR/build.log" 2>&1 \
    || { tail -40 "$CACHE_DIR/build.log" >&2; die "podman build failed (log: $CACHE_DIR/build.log)"; }
  end=$(date +%s)
  size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  log "built $IMAGE in $((end - start)) s, $(numfmt --to=si --round=nearest "$size")B"
  printf '{"image": "%s", "build_seconds": %d, "size_bytes": %d}\n' "$IMAGE" $((end - start)) "$size" >"$METRICS"
  # The dependency stage stays tagged (the next build's layer cache); what this build replaced
  # (the previous image, an outdated dependency stage) is left untagged and removed, not to fill the disk.
  podman build --quiet "${args[@]}" --target deps -t "$DEPS_IMAGE" . >/dev/null
  # Cleanup only: an image still held by a build that was killed (buildah's stale working container) is
  # left for later instead of failing a test whose image is built and tagged.
  podman image prune --force >/dev/null 2>&1 || log "image prune skipped (an old image is still held by a stale build container)"
}

main() {
  ensure_tools
  mkdir -p "$CACHE_DIR"
  ensure_base_image
  fill_wheelhouse
  build_image
  LATENTBIDS_TEST_IMAGE="$IMAGE" LATENTBIDS_CONTAINER_METRICS="$METRICS" \
    "$PY" -m pytest -p no:cacheprovider --basetemp="$CACHE_DIR/pytest" tests/packaging/test_container_image.py "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
