#!/usr/bin/env bash
# `make dag-test`: every DAG in dags/ through `airflow dags test <dag_id> <date>` on a throwaway
# AIRFLOW_HOME (SQLite), against the J-Quants emulator, a local Slack capture server, a local MLflow
# server (artifacts on a local S3 server) and a throwaway local lake. <date> is fixed, 2024-06-13, so
# that a run does not depend on the day it runs: a JPX trading day that is also a Thursday on which
# trades_spec is published, so every DAG does its regular work (fetch, weekly flows, features, a tiny
# 2-fold retrain on the history's features) rather than skip. The emulator's market ends on it.
# The servers bind free ports themselves and report them in port files (lib.sh). Every background
# process is stopped and the temp directory removed on exit (trap).
#
#   DAG_TEST_KEEP=1   keep the temp directory (logs, lake, captured alerts) for inspection
#   DAG_TEST_DATE=YYYY-MM-DD   test another date (the emulator's market is built around it)
#   DAG_TEST_SKIP="dag_id ..."   leave these DAGs out (said in the output; make test skips the retrain,
#                                which its own end-to-end test runs the same way)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gogooku3-dag-test.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  stop_pids
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

local_airflow_env "$WORK/airflow"

DATE=${DAG_TEST_DATE:-2024-06-13}
# 500 days of market: the feature build's year-on-year and 52-week features need more than a year.
START=$(python -c 'import datetime as dt, sys; print(dt.date.fromisoformat(sys.argv[1]) - dt.timedelta(days=500))' "$DATE")
BEFORE=$(python -c 'import datetime as dt, sys; print(dt.date.fromisoformat(sys.argv[1]) - dt.timedelta(days=1))' "$DATE")
log "date $DATE (emulator market $START..$DATE, 200 codes), work dir $WORK"

start_emulator 0 "$WORK/emulator.port" "$WORK/emulator.log" --codes 200 --start "$START" --end "$DATE" --page-size 100
start_slack_capture 0 "$WORK/slack.json" "$WORK/slack.port" "$WORK/slack.log"
# walk_forward_retrain needs an MLflow server (on an S3 server) and the history's features.
RETRAIN=1
if [[ " ${DAG_TEST_SKIP:-} " == *" walk_forward_retrain "* ]]; then RETRAIN=0; fi
if [ "$RETRAIN" = 1 ]; then start_s3_server 0 gogooku3-mlflow "$WORK/s3.port" "$WORK/s3.log"; fi

airflow_init "$WORK"  # while the servers start
EMU_PORT=$(wait_port_file "$WORK/emulator.port" "$EMU_PID" emulator "$WORK/emulator.log")
SLACK_PORT=$(wait_port_file "$WORK/slack.port" "$SLACK_PID" "slack capture" "$WORK/slack.log")
log "emulator on 127.0.0.1:$EMU_PORT, slack capture on 127.0.0.1:$SLACK_PORT"
if [ "$RETRAIN" = 1 ]; then
  S3_PORT=$(wait_port_file "$WORK/s3.port" "$S3_PID" "s3 server" "$WORK/s3.log")
  # It starts (migrating its store) while the lake is seeded below.
  start_mlflow_server "$S3_PORT" gogooku3-mlflow "$WORK/mlflow" "$WORK/mlflow.port" "$WORK/mlflow.log"
fi
export GOGOOKU3_LAKE_URI="$WORK/lake"
export GOGOOKU3_PACER_DIR="$WORK/pacer"

# features_daily runs the task image: build it from these sources when an engine answers (cached by a
# hash of the sources, so this is instant when nothing changed); without an engine the DAG runs the
# build in-process and says so.
if docker info >/dev/null 2>&1; then
  bash "$ROOT/include/scripts/build_images.sh" >"$WORK/build_images.log" 2>&1 \
    || { tail -n 30 "$WORK/build_images.log" >&2; exit 1; }
  log "task image $(tail -n 1 "$WORK/build_images.log")"
else
  log "no Docker engine answers: features_daily will run its build in-process"
fi

# The history before DATE comes straight from the same market's ground truth; DATE itself is fetched
# from the emulator by the DAGs below.
python -m gogooku3.devtools.seed_lake --lake "$GOGOOKU3_LAKE_URI" --codes 200 \
  --market-start "$START" --market-end "$DATE" --start "$START" --end "$BEFORE" >"$WORK/seed.log" 2>&1 \
  || { tail -n 30 "$WORK/seed.log" >&2; exit 1; }
log "$(tail -n 1 "$WORK/seed.log")"
MLFLOW_PORT=
if [ "$RETRAIN" = 1 ]; then
  # The features of that history (walk_forward_retrain trains on them; features_daily builds DATE's).
  gogooku3 features build --start "$START" --end "$BEFORE" --engine cpu >"$WORK/features.log" 2>&1 \
    || { tail -n 30 "$WORK/features.log" >&2; exit 1; }
  log "$(tail -n 1 "$WORK/features.log")"
  MLFLOW_PORT=$(wait_port_file "$WORK/mlflow.port" "$MLFLOW_PID" "mlflow server" "$WORK/mlflow.log" 300)
  log "mlflow server on http://127.0.0.1:$MLFLOW_PORT (store $WORK/mlflow/mlflow.db, artifacts s3://gogooku3-mlflow/mlflow)"
fi
export_local_connections "$EMU_PORT" "$SLACK_PORT" "#gogooku3-dag-test" "$MLFLOW_PORT"

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
mapfile -t FOUND <"$WORK/dag_ids"
# Producers before consumers: the fetch DAGs fill the lake that features_daily reads, and
# walk_forward_retrain trains on its features; any other DAG runs after them, in name order.
PIPELINE_ORDER=(jquants_daily trades_spec_weekly features_daily walk_forward_retrain)
# A DAG's dag_run.conf here: the retrain small enough for a check (tiny is the default off a GPU).
declare -A CONF=([walk_forward_retrain]='{"folds": 2, "epochs": 2}')
DAG_IDS=()
for dag_id in "${PIPELINE_ORDER[@]}"; do
  if printf '%s\n' "${FOUND[@]}" | grep -qx "$dag_id"; then DAG_IDS+=("$dag_id"); fi
done
for dag_id in "${FOUND[@]}"; do
  case " ${PIPELINE_ORDER[*]} " in *" $dag_id "*) ;; *) DAG_IDS+=("$dag_id") ;; esac
done

failed=()
for dag_id in "${DAG_IDS[@]}"; do
  if [[ " ${DAG_TEST_SKIP:-} " == *" $dag_id "* ]]; then
    log "skipped $dag_id (DAG_TEST_SKIP)"
    continue
  fi
  log "airflow dags test $dag_id $DATE"
  conf=()
  if [ -n "${CONF[$dag_id]:-}" ]; then conf=(--conf "${CONF[$dag_id]}"); fi
  if airflow dags test "$dag_id" "$DATE" "${conf[@]}" >"$WORK/dags-test-$dag_id.log" 2>&1; then
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
