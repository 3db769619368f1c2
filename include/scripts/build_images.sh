#!/usr/bin/env bash
# Build every image the project needs, without any registry (`make images` = `... all`):
#
#   bash include/scripts/build_images.sh [task]   the task image; last stdout line: its exact ref
#   bash include/scripts/build_images.sh deploy   the deployment's images; stdout: POSTGRES_IMAGE=...,
#                                                 REDIS_IMAGE=..., S3_IMAGE=..., AIRFLOW_IMAGE=...
#   bash include/scripts/build_images.sh all      both (TASK_IMAGE_CPU=... first)
#
# The task image (DockerOperator's, and the emulator's in the compose stack):
#   1. gogooku3/base:bookworm  Debian bookworm (minbase + python3 3.11, python3-venv, ca-certificates,
#                              tini) made with debootstrap and `docker import`. Built once per engine.
#   2. gogooku3/task-cpu-deps  images/cpu/Dockerfile.deps on that base: non-root user and a venv with
#                              every runtime dependency, from a wheelhouse built here on the host
#                              (pip wheel, pinned by constraints.txt) and installed with --no-index.
#   3. gogooku3/task-cpu       images/cpu/Dockerfile: the gogooku3 wheel (built from this checkout) on
#                              top of task-cpu-deps; one small layer. ENTRYPOINT is the gogooku3 CLI.
# The deployment (docker-compose.local.yml names them):
#   gogooku3/infra-base:bookworm  debootstrap with Debian's postgresql-15 and redis-server (--include)
#   gogooku3/postgres, /redis     images/postgres, images/redis on it (the official images' contracts)
#   gogooku3/s3                   images/s3: moto's S3 server (pinned by constraints.txt) on the base
#   gogooku3/airflow-deps         images/airflow/Dockerfile.local-deps: Airflow, providers, the extras
#                                 airflow,quality,tracking,train from a host-built wheelhouse
#   gogooku3/airflow:<ver>-local  images/airflow/Dockerfile.local: the gogooku3 wheel on it
# Every docker build runs with --network none: nothing is pulled or downloaded inside a build.
#
#   GOGOOKU3_IMAGE_EXTRAS=train,quality bash ...  the task image's extras (default: train, what
#                                                 `gogooku3 train` needs: torch's CPU build,
#                                                 torch-geometric, LightGBM); empty for none
#   GOGOOKU3_IMAGE_REBUILD=1 bash ...             rebuild deps and app images even if their tags exist
#
# Caching: each -deps image is tagged with a hash of pyproject.toml, constraints.txt, its Dockerfile and
# the extras; each app image <version>-<hash>, the hash adding its Dockerfile and every file of the
# gogooku3 package; the small images a hash of their folder. A tag that exists is not rebuilt. Every run
# also points <repo>:<version> and :latest at the current image. Progress goes to stderr.
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
# A Debian bookworm rootfs made with debootstrap and imported as <image>, built once per engine.
build_rootfs() { # <image> <--include packages> <message>
  local image=$1 include=$2 message=$3
  if image_exists "$image"; then
    say "$image exists; skipping debootstrap"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "building $image with debootstrap needs root"
  if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    # dockerd.sh installs it with docker.io; an engine that was already there may lack it.
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get"
    say "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >/dev/null; } \
      || die "could not install debootstrap"
  fi
  local t0=$SECONDS rootfs="$WORK/rootfs-${image//[\/:]/-}"
  say "debootstrap bookworm (minbase) + $include from $MIRROR"
  if ! PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase --include="$include" \
      bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  # What an image does not need: downloaded .debs, apt lists (no apt-get at runtime), man pages, and
  # the clusters/configs packages create at install time (the images' entrypoints make their own).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
    "$rootfs"/var/lib/postgresql/*/main "$rootfs"/etc/postgresql/*/main
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "$message" \
    - "$image" >/dev/null
  say "built $image in $((SECONDS - t0))s"
}

build_base() {
  build_rootfs "$BASE_IMAGE" "python3,python3-venv,ca-certificates,tini" \
    "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates tini"
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

deps_hash() { # <extras> <Dockerfile.deps>
  { printf 'extras=%s\n' "$1"; hash_files pyproject.toml constraints.txt "$2"; } \
    | sha256sum | cut -c1-12
}

source_hash() { # <deps hash> <app Dockerfile>
  {
    printf 'deps=%s\n' "$1"
    hash_files "$2"
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
build_deps() { # <repo> <extras> <Dockerfile.deps>: sets DEPS_REF and DEPS_HASH
  local repo=$1 extras=$2 dockerfile=$3
  local hash ref t0=$SECONDS ctx="$WORK/deps-${repo//\//-}"
  hash="$(deps_hash "$extras" "$dockerfile")"
  ref="$repo-deps:$hash"
  if image_exists "$ref" && [ -z "${GOGOOKU3_IMAGE_REBUILD:-}" ]; then
    say "$ref exists (dependencies unchanged); skipping"
  else
    say "building $ref"
    mkdir -p "$ctx/wheelhouse"
    cp "$dockerfile" "$ctx/Dockerfile.deps"
    cp constraints.txt "$ctx/"
    rm -rf "$WORK/depwheel"
    build_app_wheel "$WORK/depwheel"
    # Every runtime dependency as a wheel at the versions constraints.txt pins (pip's cache makes this
    # quick after the first time); the gogooku3 wheel only names them and is dropped.
    "$PY" -m pip wheel -q -c constraints.txt -w "$ctx/wheelhouse" \
      "$(ls "$WORK"/depwheel/gogooku3-*.whl)${extras:+[$extras]}" >"$WORK/pip.log" 2>&1 \
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
  docker tag "$ref" "$repo-deps:latest"
  prune_old_tags "$repo-deps" "$ref"
  DEPS_REF="$ref"
  DEPS_HASH="$hash"
}

# Layer 2: the gogooku3 package; rebuilt when its sources change (seconds).
build_app() { # <repo> <app Dockerfile> <version tag>: on DEPS_REF; sets APP_REF
  local repo=$1 dockerfile=$2 version=$3
  local hash ref t0=$SECONDS ctx="$WORK/app-${repo//\//-}"
  hash="$(source_hash "$DEPS_HASH" "$dockerfile")"
  ref="$repo:$version-$hash"
  if image_exists "$ref" && [ -z "${GOGOOKU3_IMAGE_REBUILD:-}" ]; then
    say "$ref exists (sources unchanged); skipping build"
  else
    say "building $ref"
    mkdir -p "$ctx"
    cp "$dockerfile" "$ctx/Dockerfile"
    build_app_wheel "$ctx/app"
    docker_build app --build-arg "DEPS_IMAGE=$DEPS_REF" --build-arg "GOGOOKU3_VERSION=$version" \
      --build-arg "SOURCE_HASH=$hash" -t "$ref" "$ctx"
    say "built $ref in $((SECONDS - t0))s"
  fi
  docker tag "$ref" "$repo:$version"
  docker tag "$ref" "$repo:latest"
  prune_old_tags "$repo" "$ref"
  say "$repo:latest -> $ref ($(docker image inspect --format '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"
  APP_REF="$ref"
}

project_version() {
  "$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
}

build_task() {
  build_base
  build_deps "$TASK_REPO" "$EXTRAS" images/cpu/Dockerfile.deps
  build_app "$TASK_REPO" images/cpu/Dockerfile "$(project_version)"
  TASK_REF="$APP_REF"
}

# ------------------------------------------------------------------------------- deployment images
# What docker-compose.airflow.yml runs where no registry exists (docker-compose.local.yml points the
# stack at them): the Airflow image (every component, the Celery workers and the MLflow server), and
# stand-ins for the infrastructure images: PostgreSQL and Redis from Debian's packages on a second
# debootstrap rootfs, and moto's S3 server.
AIRFLOW_REPO="${GOGOOKU3_AIRFLOW_REPO:-gogooku3/airflow}"
AIRFLOW_EXTRAS="airflow,quality,tracking,train"
INFRA_BASE="${GOGOOKU3_INFRA_BASE_IMAGE:-gogooku3/infra-base:bookworm}"
AIRFLOW_VERSION="$(sed -n 's/^apache-airflow==\([0-9.]*\)$/\1/p' constraints.txt)"

# A hash-tagged image from the Dockerfile in <folder> on <base>, its tag a hash of the base image, the
# folder's files and <extra>. <prepare>, when given, is a function that fills the build context (a
# copy of the folder) before the build: it runs only when the image is not there yet.
build_small() { # <repo> <folder> <base image> [extra hashed text] [prepare]: sets SMALL_REF
  local repo=$1 dir=$2 base=$3 extra=${4:-} prepare=${5:-} hash ref t0=$SECONDS ctx
  hash="$( { printf 'base=%s\n%s\n' "$(docker image inspect --format '{{.Id}}' "$base")" "$extra"
            find "$dir" -type f -print | LC_ALL=C sort | while IFS= read -r f; do hash_files "$f"; done; } \
          | sha256sum | cut -c1-12)"
  ref="$repo:$hash"
  if image_exists "$ref" && [ -z "${GOGOOKU3_IMAGE_REBUILD:-}" ]; then
    say "$ref exists; skipping"
  else
    say "building $ref"
    ctx="$WORK/ctx-${repo//\//-}"
    mkdir -p "$ctx"
    cp -r "$dir/." "$ctx/"
    if [ -n "$prepare" ]; then "$prepare" "$ctx"; fi
    docker_build "${repo//\//-}" --build-arg "BASE_IMAGE=$base" -t "$ref" "$ctx"
    say "built $ref in $((SECONDS - t0))s"
  fi
  docker tag "$ref" "$repo:latest"
  prune_old_tags "$repo" "$ref"
  SMALL_REF="$ref"
}

# moto's server at the version constraints.txt pins, as a wheelhouse in the build context.
moto_wheelhouse() { # <context>
  "$PY" -m pip wheel -q -c constraints.txt -w "$1/wheelhouse" "moto[server]" >"$WORK/pip-s3.log" 2>&1 \
    || { tail -n 30 "$WORK/pip-s3.log" >&2; die "building the S3 server's wheelhouse failed"; }
}

build_deploy() {
  build_base
  build_rootfs "$INFRA_BASE" "postgresql-15,redis-server,tini,ca-certificates" \
    "debootstrap --variant=minbase bookworm + postgresql-15 redis-server tini ca-certificates"
  build_small gogooku3/postgres images/postgres "$INFRA_BASE"
  echo "POSTGRES_IMAGE=$SMALL_REF"
  build_small gogooku3/redis images/redis "$INFRA_BASE"
  echo "REDIS_IMAGE=$SMALL_REF"
  local moto_pin
  moto_pin="$(grep -i '^moto==' constraints.txt)" || die "constraints.txt pins no moto"
  build_small gogooku3/s3 images/s3 "$BASE_IMAGE" "$moto_pin" moto_wheelhouse
  echo "S3_IMAGE=$SMALL_REF"
  build_deps "$AIRFLOW_REPO" "$AIRFLOW_EXTRAS" images/airflow/Dockerfile.local-deps
  build_app "$AIRFLOW_REPO" images/airflow/Dockerfile.local "$AIRFLOW_VERSION-local"
  echo "AIRFLOW_IMAGE=$APP_REF"
}

case "${1:-task}" in
  task)
    build_task
    echo "$TASK_REF"
    ;;
  deploy)
    build_deploy
    ;;
  all)
    build_task
    echo "TASK_IMAGE_CPU=$TASK_REF"
    build_deploy
    ;;
  *) die "unknown target ${1} (task, deploy or all)" ;;
esac
