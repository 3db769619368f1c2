#!/usr/bin/env bash
# Start (or stop) the Docker engine the feature build's DockerOperator talks to.
#
#   bash include/scripts/dockerd.sh [start|stop|status]      (default: start)
#
# start  is idempotent: when an engine already answers `docker info` it does nothing. Otherwise it
#        installs Debian's docker.io (and debootstrap, which build_images.sh needs, and
#        docker-compose, which checks docker-compose.airflow.yml) when missing,
#        starts dockerd detached from this shell (setsid + nohup, so it outlives the script, the test
#        run and the CI step that called it) and waits, bounded, until the engine answers.
# stop   stops only a dockerd this script started (the pid in its pidfile), never another one.
# status prints whether an engine answers; exit 0 if it does, 1 if not.
#
# The engine listens on the default socket (/var/run/docker.sock), so the docker CLI, docker-py and
# Airflow's DockerOperator reach it with no DOCKER_HOST. Images live in the default data-root
# (/var/lib/docker) so every checkout on the machine shares the build cache.
#
# Settings (environment):
#   GOGOOKU3_DOCKERD_WAIT_S   seconds to wait for the engine to answer (default 60)
#   GOGOOKU3_DOCKERD_LOG      dockerd's log file (default <repo>/.run/dockerd.log)
#   GOGOOKU3_DOCKERD_PIDFILE  dockerd's pidfile (default /var/run/gogooku3-dockerd.pid)
#   GOGOOKU3_DOCKER_DATA_ROOT data-root (default /var/lib/docker)
# Needs root (or password-less sudo) to install packages and start the daemon; no stdin is read.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODE="${1:-start}"
WAIT_S="${GOGOOKU3_DOCKERD_WAIT_S:-60}"
LOG="${GOGOOKU3_DOCKERD_LOG:-$ROOT/.run/dockerd.log}"
PIDFILE="${GOGOOKU3_DOCKERD_PIDFILE:-/var/run/gogooku3-dockerd.pid}"
DATA_ROOT="${GOGOOKU3_DOCKER_DATA_ROOT:-/var/lib/docker}"

say() { echo "dockerd.sh: $*"; }
die() { echo "dockerd.sh: error: $*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through password-less sudo (never prompts).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root or password-less sudo to run: $*"
  fi
}

engine_answers() {
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

ensure_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  # docker.io also brings the client; a client already on PATH (another install) is fine.
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  # a compose CLI checks docker-compose.airflow.yml in the tests (Debian's docker-compose 1.29)
  command -v docker-compose >/dev/null 2>&1 || { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; } \
    || missing+=(docker-compose)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq </dev/null
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
}

start() {
  if engine_answers; then
    say "engine already answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null)); nothing to do"
    return 0
  fi
  ensure_packages
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "dockerd (pid $(cat "$PIDFILE")) is running but not answering yet; waiting"
  else
    mkdir -p "$(dirname "$LOG")"
    as_root mkdir -p "$DATA_ROOT"
    say "starting dockerd (data-root $DATA_ROOT, log $LOG)"
    # setsid + nohup: a new session, so the daemon is not killed with this shell's process group.
    as_root setsid nohup dockerd --data-root "$DATA_ROOT" --pidfile "$PIDFILE" \
      </dev/null >>"$LOG" 2>&1 &
  fi
  local waited=0
  until engine_answers; do
    if [ "$waited" -ge "$WAIT_S" ]; then
      echo "dockerd.sh: last lines of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      die "engine did not answer within ${WAIT_S}s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "engine ready after ${waited}s ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
}

stop() {
  if [ ! -f "$PIDFILE" ]; then
    say "no pidfile $PIDFILE: no dockerd started by this script; nothing to stop"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if ! kill -0 "$pid" 2>/dev/null; then
    say "dockerd pid $pid is not running; removing stale pidfile"
    as_root rm -f "$PIDFILE"
    return 0
  fi
  say "stopping dockerd (pid $pid)"
  as_root kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    [ "$waited" -ge "$WAIT_S" ] && die "dockerd pid $pid still running after ${WAIT_S}s"
    sleep 1
    waited=$((waited + 1))
  done
  say "stopped after ${waited}s"
}

case "$MODE" in
  start) start ;;
  stop) stop ;;
  status)
    if engine_answers; then
      say "engine answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
    else
      say "no engine answers"
      exit 1
    fi
    ;;
  *) die "unknown mode '$MODE' (use start, stop or status)" ;;
esac
