#!/usr/bin/env bash
# Build the task images without any registry:
#
#   1. gogooku3/base:bookworm  Debian bookworm (minbase + python3 3.11, python3-venv, ca-certificates,
#                              tini) made with debootstrap and `docker import`. Built once per engine.
#   2. gogooku3/task-cpu-deps  images/cpu/Dockerfile.deps on that base: non-root user and a venv with
#                              every runtime dependency, from a wheelhouse built here on the host
#                              (pip wheel, pinned by constraints.txt) and installed with --no-index.
#   3. gogooku3/task-cpu       images/cpu/Dockerfile: the gogooku3 wheel (built from this checkout) on
#                              top of task-cpu-deps; one small layer. ENTRYPOINT is the gogooku3 CLI.
# Every docker build runs with --network none: nothing is pulled or downloaded inside a build.
#
#   bash include/scripts/build_images.sh          build what is missing, print the task image ref
#   GOGOOKU3_IMAGE_EXTRAS=train,quality bash ...  the extras to install (default: train, what
#                                                 `gogooku3 train` needs: torch's CPU build,
#                                                 torch-geometric, LightGBM); empty for none
#   GOGOOKU3_IMAGE_REBUILD=1 bash ...             rebuild deps and task image even if their tags exist
#
# Caching: task-cpu-deps is tagged with a hash of pyproject.toml, constraints.txt, Dockerfile.deps and
# the extras; task-cpu is tagged <version>-<hash>, the hash adding images/cpu/Dockerfile and every file
# of the gogooku3 package. A tag that exists is not rebuilt. Every run also points
# gogooku3/task-cpu:<version> and :latest at the current image. The last line of stdout is the exact
# image ref (for scripts); progress goes to stderr.
# Needs a running engine (include/scripts/dockerd.sh start) and root for debootstrap (first run only).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BASE_IMAGE="${GOGOOKU3_BASE_IMAGE:-gogooku3/base:bookworm}"
TASK_REPO="${GOGOOKU3_TASK_REPO:-gogooku3/task-cpu}"
MIRROR="${GOGOOKU3_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
EXTRAS="${GOGOOKU3_IMAGE_EXTRAS-train}"
WORK_PARENT="${GOGOOKU3_IMAGE_WORKDIR:-/var/tmp}"
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed, nothing pulled for a frontend

say() { echo "build_images: $*" >&2; }
die() { echo "build_images: error: $*" >&2; exit 1; }

if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="${PYTHON:-python3.11}"; fi
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "$PY is not Python 3.11; the wheelhouse must match the image's Python (bookworm: 3.11)"
timeout 10 docker info >/dev/null 2>&1 || die "no Docker engine answers; run include/scripts/dockerd.sh start"

# One build at a time per machine (parallel test runs, a DAG run beside `make test`): a second caller
# waits here and then finds the images cached. Also keeps the stage clean-up below from racing a build.
exec 9>"${GOGOOKU3_IMAGE_LOCK:-/var/tmp/gogooku3-build-images.lock}"
flock -w 1800 9 || die "timed out waiting for another build_images.sh to finish"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

WORK="$(mktemp -d "$WORK_PARENT/gogooku3-images.XXXXXX")"
# A failed debootstrap can leave proc/sys/dev mounted inside the rootfs: unmount them (deepest first)
# and never let rm cross into another file system.
cleanup() {
  awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while IFS= read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------- base image
build_base() {
  if image_exists "$BASE_IMAGE"; then
    say "$BASE_IMAGE exists; skipping debootstrap"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "building $BASE_IMAGE with debootstrap needs root"
  if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    # dockerd.sh installs it with docker.io; an engine that was already there may lack it.
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get"
    say "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >/dev/null; } \
      || die "could not install debootstrap"
  fi
  local t0=$SECONDS rootfs="$WORK/rootfs"
  say "debootstrap bookworm (minbase) from $MIRROR"
  if ! PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase \
      --include=python3,python3-venv,ca-certificates,tini \
      bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  # What an image does not need: downloaded .debs, apt lists (no apt-get at runtime), man pages.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates tini" \
    - "$BASE_IMAGE" >/dev/null
  say "built $BASE_IMAGE in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------- task image
# Hashes of what goes into each layer. File names are hashed too, so adding or removing a module
# changes the hash; caches and bytecode do not.
hash_files() {
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    cat "$f"
  done
}

deps_hash() {
  { printf 'extras=%s\n' "$EXTRAS"; hash_files pyproject.toml constraints.txt images/cpu/Dockerfile.deps; } \
    | sha256sum | cut -c1-12
}

source_hash() {
  {
    printf 'deps=%s\n' "$1"
    hash_files images/cpu/Dockerfile
    find gogooku3 -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print \
      | LC_ALL=C sort | while IFS= read -r f; do hash_files "$f"; done
  } | sha256sum | cut -c1-12
}

# The gogooku3 wheel, from a copy holding exactly what the hash covers (no stray build/ dirs).
build_app_wheel() {
  local out="$1" src="$WORK/src/project"
  mkdir -p "$out" "$src"
  cp -r pyproject.toml gogooku3 "$src/"
  if [ -f README.md ]; then cp README.md "$src/"; fi
  find "$src" \( -name '__pycache__' -o -name '*.egg-info' \) -prune -exec rm -rf {} +
  # Without build isolation when the venv has setuptools (no download); else pip fetches it.
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$out" "$src" >"$WORK/pip.log" 2>&1 \
    || "$PY" -m pip wheel -q --no-deps -w "$out" "$src" >"$WORK/pip.log" 2>&1 \
    || { tail -n 30 "$WORK/pip.log" >&2; die "building the gogooku3 wheel failed"; }
}

docker_build() { # <log name> <docker build args...>
  local log="$WORK/$1.log"
  shift
  docker build --network none --force-rm "$@" >"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; die "docker build failed (log above)"; }
  say "  docker build: $(grep -c 'Using cache' "$log" || true) steps from cache"
  # The classic builder leaves each build stage behind as an untagged image; drop ours.
  docker image prune -f --filter "label=io.gogooku3.stage=build" >/dev/null 2>&1 || true
}

# Each source change leaves a hash-tagged image behind; keep the newest few (other checkouts on this
# engine may be using them) and untag the rest so `docker image prune` can reclaim the space.
prune_old_tags() { # <repo> <current ref>
  local keep="${GOGOOKU3_IMAGE_KEEP:-3}" repo="$1" current="$2"
  docker image ls "$repo" --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' \
    | grep -E ':[^:]*[0-9a-f]{12}$' | LC_ALL=C sort -r | cut -f2 | tail -n "+$((keep + 1))" \
    | while IFS= read -r old; do
        [ "$old" = "$current" ] && continue
        say "untagging old $old"
        docker rmi "$old" >/dev/null 2>&1 || true # still used by a container or a child image: keep
      done
}

# Layer 1: user + venv with every dependency; rebuilt only when dependencies change.
build_deps() {
  local hash ref t0=$SECONDS ctx="$WORK/deps"
  hash="$(deps_hash)"
  ref="$TASK_REPO-deps:$hash"
  if image_exists "$ref" && [ -z "${GOGOOKU3_IMAGE_REBUILD:-}" ]; then
    say "$ref exists (dependencies unchanged); skipping"
  else
    say "building $ref"
    mkdir -p "$ctx/wheelhouse"
    cp images/cpu/Dockerfile.deps constraints.txt "$ctx/"
    build_app_wheel "$WORK/depwheel"
    # Every runtime dependency as a wheel at the versions constraints.txt pins (pip's cache makes this
    # quick after the first time); the gogooku3 wheel only names them and is dropped.
    "$PY" -m pip wheel -q -c constraints.txt -w "$ctx/wheelhouse" \
      "$(ls "$WORK"/depwheel/gogooku3-*.whl)${EXTRAS:+[$EXTRAS]}" >"$WORK/pip.log" 2>&1 \
      || { tail -n 30 "$WORK/pip.log" >&2; die "building the wheelhouse failed"; }
    # Requirements whose markers the host's Python answers differently from the image's (bookworm's
    # 3.11.2): redis needs async-timeout below 3.11.3, which the host's newer 3.11 skips.
    "$PY" -m pip wheel -q --no-deps -w "$ctx/wheelhouse" "async-timeout>=4.0.3" >>"$WORK/pip.log" 2>&1 \
      || { tail -n 30 "$WORK/pip.log" >&2; die "building the wheelhouse's extra wheels failed"; }
    rm -f "$ctx"/wheelhouse/gogooku3-*.whl
    say "  wheelhouse: $(find "$ctx/wheelhouse" -name "*.whl" | wc -l) wheels, $(du -sh "$ctx/wheelhouse" | cut -f1)"
    docker_build deps -f "$ctx/Dockerfile.deps" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --build-arg "DEPS_HASH=$hash" -t "$ref" "$ctx"
    say "built $ref in $((SECONDS - t0))s"
  fi
  docker tag "$ref" "$TASK_REPO-deps:latest"
  prune_old_tags "$TASK_REPO-deps" "$ref"
  DEPS_REF="$ref"
  DEPS_HASH="$hash"
}

# Layer 2: the gogooku3 package; rebuilt when its sources change (seconds).
build_task() {
  local version hash ref t0=$SECONDS ctx="$WORK/app"
  version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
  hash="$(source_hash "$DEPS_HASH")"
  ref="$TASK_REPO:$version-$hash"
  if image_exists "$ref" && [ -z "${GOGOOKU3_IMAGE_REBUILD:-}" ]; then
    say "$ref exists (sources unchanged); skipping build"
  else
    say "building $ref"
    mkdir -p "$ctx"
    cp images/cpu/Dockerfile "$ctx/"
    build_app_wheel "$ctx/app"
    docker_build app --build-arg "DEPS_IMAGE=$DEPS_REF" --build-arg "GOGOOKU3_VERSION=$version" \
      --build-arg "SOURCE_HASH=$hash" -t "$ref" "$ctx"
    say "built $ref in $((SECONDS - t0))s"
  fi
  docker tag "$ref" "$TASK_REPO:$version"
  docker tag "$ref" "$TASK_REPO:latest"
  prune_old_tags "$TASK_REPO" "$ref"
  say "$TASK_REPO:latest -> $ref ($(docker image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$ref"
}

build_base
build_deps
build_task
