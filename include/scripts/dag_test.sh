#!/usr/bin/env bash
# `make dag-test`: every DAG in dags/ through `airflow dags test <dag_id> <date>` on a throwaway
# AIRFLOW_HOME (SQLite), against the J-Quants emulator, a local Slack capture server and a throwaway
# local lake. <date> is the last JPX trading day before today (JST), inside the emulator's market.
# Every background process is stopped and the temp directory removed on exit (trap).
#
#   DAG_TEST_KEEP=1   keep the temp directory (logs, lake, captured alerts) for inspection
#   DAG_TEST_DATE=YYYY-MM-DD   test another date (the emulator's market is built around it)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gogooku3-dag-test.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "${DAG_TEST_KEEP:-0}" = "1" ]; then
    echo "dag-test: kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "dag-test: $*"; }

free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID NAME LOGFILE: until URL answers (or the process died / 120 s passed).
wait_http() {
  local url=$1 pid=$2 name=$3 logfile=$4
  for _ in $(seq 1 240); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited early:"; tail -n 30 "$logfile" >&2; return 1
    fi
    if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  log "$name did not answer at $url within 120 s:"; tail -n 30 "$logfile" >&2; return 1
}

# A clean Airflow environment: nothing from the developer's shell leaks in.
while IFS='=' read -r name _; do
  case "$name" in AIRFLOW_CONN_*|AIRFLOW__*|GOGOOKU3_*|JQUANTS_*) unset "$name" ;; esac
done < <(env)

export AIRFLOW_HOME="$WORK/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/include/airflow/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:8080"
mkdir -p "$AIRFLOW_HOME"

DATE=${DAG_TEST_DATE:-$(python -c '
import datetime as dt
from gogooku3.calendar import JST, previous_trading_day
print(previous_trading_day(dt.datetime.now(JST).date()))')}
START=$(python -c 'import datetime as dt, sys; print(dt.date.fromisoformat(sys.argv[1]) - dt.timedelta(days=120))' "$DATE")
log "date $DATE (emulator market $START..$DATE, 200 codes), work dir $WORK"

EMU_PORT=$(free_port)
gogooku3 emulator --port "$EMU_PORT" --codes 200 --start "$START" --end "$DATE" --plan premium \
  --page-size 100 >"$WORK/emulator.log" 2>&1 &
PIDS+=($!)
EMU_PID=$!

SLACK_PORT=$(free_port)
python -m gogooku3.devtools.slack_capture --port "$SLACK_PORT" --out "$WORK/slack.json" >"$WORK/slack.log" 2>&1 &
PIDS+=($!)
SLACK_PID=$!

airflow db migrate >"$WORK/migrate.log" 2>&1 || { tail -n 40 "$WORK/migrate.log" >&2; exit 1; }
airflow pools import "$ROOT/include/airflow/pools.json" >"$WORK/pools.log" 2>&1 || { cat "$WORK/pools.log" >&2; exit 1; }

wait_http "http://127.0.0.1:$EMU_PORT/health" "$EMU_PID" emulator "$WORK/emulator.log"
wait_http "http://127.0.0.1:$SLACK_PORT/health" "$SLACK_PID" "slack capture" "$WORK/slack.log"

# The same connections production uses, pointing at the local servers (the emulator's default
# credentials are public test values).
export AIRFLOW_CONN_JQUANTS="{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1:$EMU_PORT/v2\", \"password\": \"emulator-api-key\", \"extra\": {\"api_version\": \"v2\", \"plan\": \"premium\"}}"
export AIRFLOW_CONN_SLACK_ALERTS="{\"conn_type\": \"slack\", \"password\": \"xoxb-dag-test\", \"extra\": {\"channel\": \"#gogooku3-dag-test\", \"base_url\": \"http://127.0.0.1:$SLACK_PORT/api/\"}}"
export GOGOOKU3_LAKE_URI="$WORK/lake"
export GOGOOKU3_PACER_DIR="$WORK/pacer"

# Parse the DAG folder as the DAG processor does; any import error fails the check before a DAG runs.
python - "$WORK/dag_ids" <<'PY' >"$WORK/dagbag.log" 2>&1 || { cat "$WORK/dagbag.log" >&2; exit 1; }
import sys
from pathlib import Path

from airflow import settings
from airflow.dag_processing.dagbag import BundleDagBag

bag = BundleDagBag(dag_folder=settings.DAGS_FOLDER, bundle_path=Path(settings.DAGS_FOLDER))
for path, error in bag.import_errors.items():
    print(f"IMPORT ERROR in {path}:\n{error}", file=sys.stderr)
if bag.import_errors or not bag.dags:
    sys.exit(f"dag-test: {len(bag.import_errors)} import error(s), {len(bag.dags)} DAG(s)")
Path(sys.argv[1]).write_text("\n".join(sorted(bag.dags)) + "\n")
PY
mapfile -t DAG_IDS <"$WORK/dag_ids"

failed=()
for dag_id in "${DAG_IDS[@]}"; do
  log "airflow dags test $dag_id $DATE"
  if airflow dags test "$dag_id" "$DATE" >"$WORK/dags-test-$dag_id.log" 2>&1; then
    log "  ok: $(grep -c 'DAG TEST\] end task' "$WORK/dags-test-$dag_id.log") tasks ran"
  else
    log "  FAILED; last lines of its log:"
    tail -n 40 "$WORK/dags-test-$dag_id.log" >&2
    failed+=("$dag_id")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  log "Slack alerts captured:"
  python -c 'import json, sys; [print("  ", m["body"].get("text", "")) for m in json.load(open(sys.argv[1]))]' "$WORK/slack.json" >&2 || true
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all ${#DAG_IDS[@]} DAG(s) passed for $DATE"
