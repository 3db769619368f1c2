#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded default, end to end, on this machine.
#
#   1. the J-Quants emulator (API v2, Premium plan limits) over a synthetic market, and a Slack capture
#   2. history: the year before FIRST is seeded from the same market's ground truth (the
#      year-on-year and 52-week features need it; fetching it would take minutes at the plan's
#      rate), then `gogooku3 fetch --date FIRST --end LAST` fetches every logical date from the
#      emulator through the real client (what the DAGs' catchup would do, without one Airflow run per
#      day), then `gogooku3 trades-spec expand` and `gogooku3 features build` build the whole history
#   3. the last day through the real DAGs with `airflow dags test`: jquants_daily (fetch, gate,
#      Assets), trades_spec_weekly (on the last publication day) and features_daily (the feature build
#      in its Docker container when an engine is reachable, then the feature gate)
#   4. the weekly retrain through the real DAG, `airflow dags test walk_forward_retrain`: the tiny
#      network and the baselines over 2 folds of the whole history (in the task image when an engine
#      answers), recorded in a local MLflow server (artifacts on a local S3 server), registered, and
#      judged champion/challenger; DEMO_TRAIN=0 skips it
#   5. a summary: partitions and rows per table, gate results, Slack alerts and notices, how well the
#      built features find the market's planted signal, how much of it each trained model found, the
#      fold table, the registry's champion and challenger, and the MLflow URL
#
# The lake is ./data/lake (GOGOOKU3_LAKE_URI overrides it); logs go to ./data/demo. Reruns are
# idempotent: the same logical dates give the same partitions.
#   DEMO_CODES (default 1000), DEMO_FIRST (2024-05-01), DEMO_LAST (2024-06-28), DEMO_TRAIN (1)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

CODES=${DEMO_CODES:-1000}
SEED=7  # the synthetic market's seed: the emulator, the seeded history and the summary's oracle
FIRST=${DEMO_FIRST:-2024-05-01}
LAST=${DEMO_LAST:-2024-06-28}
WORK="$ROOT/data/demo"
LAKE=${GOGOOKU3_LAKE_URI:-$ROOT/data/lake}
mkdir -p "$WORK"

PIDS=()
trap stop_pids EXIT
trap 'exit 130' INT TERM
log() { echo "demo: $*"; }

local_airflow_env "$WORK/airflow"

# The market starts 15 months before the first fetched day: that much history is seeded.
MARKET_START=$(python -c 'import datetime as dt, sys; print(dt.date.fromisoformat(sys.argv[1]) - dt.timedelta(days=456))' "$FIRST")
BEFORE_FIRST=$(python -c 'import datetime as dt, sys; print(dt.date.fromisoformat(sys.argv[1]) - dt.timedelta(days=1))' "$FIRST")
log "emulator: $CODES codes, market $MARKET_START..$LAST; lake $LAKE; logs $WORK"
# Both servers bind free ports themselves and report them in port files (lib.sh).
start_emulator 0 "$WORK/emulator.port" "$WORK/emulator.log" --seed "$SEED" --codes "$CODES" --start "$MARKET_START" --end "$LAST"
rm -f "$WORK/slack.json"
start_slack_capture 0 "$WORK/slack.json" "$WORK/slack.port" "$WORK/slack.log"
start_s3_server 0 gogooku3-mlflow "$WORK/s3.port" "$WORK/s3.log"
airflow_init "$WORK"
EMU_PORT=$(wait_port_file "$WORK/emulator.port" "$EMU_PID" emulator "$WORK/emulator.log")
SLACK_PORT=$(wait_port_file "$WORK/slack.port" "$SLACK_PID" "slack capture" "$WORK/slack.log")
S3_PORT=$(wait_port_file "$WORK/s3.port" "$S3_PID" "s3 server" "$WORK/s3.log")
# A fresh registry each run: the S3 server keeps its artifacts in memory only.
rm -rf "$WORK/mlflow"
start_mlflow_server "$S3_PORT" gogooku3-mlflow "$WORK/mlflow" "$WORK/mlflow.port" "$WORK/mlflow.log"
MLFLOW_PORT=$(wait_port_file "$WORK/mlflow.port" "$MLFLOW_PID" "mlflow server" "$WORK/mlflow.log" 300)
log "mlflow server on http://127.0.0.1:$MLFLOW_PORT"

export JQUANTS_BASE_URL="http://127.0.0.1:$EMU_PORT/v2" JQUANTS_API_KEY=emulator-api-key JQUANTS_PLAN=premium
export GOGOOKU3_LAKE_URI="$LAKE" GOGOOKU3_PACER_DIR="$WORK/pacer"
export_local_connections "$EMU_PORT" "$SLACK_PORT" "#gogooku3-demo" "$MLFLOW_PORT"

# The DAGs run the task image when an engine answers: build it from these sources (cached by a hash
# of the sources: instant when nothing changed); without an engine they run in-process and say so.
if docker info >/dev/null 2>&1; then
  bash "$ROOT/include/scripts/build_images.sh" >"$WORK/build_images.log" 2>&1 \
    || { tail -n 30 "$WORK/build_images.log" >&2; exit 1; }
  log "task image $(tail -n 1 "$WORK/build_images.log")"
fi

log "1/5 seeding $MARKET_START..$BEFORE_FIRST from the market's ground truth, then fetching $FIRST..$LAST from the emulator"
python -m gogooku3.devtools.seed_lake --lake "$LAKE" --seed "$SEED" --codes "$CODES" --market-start "$MARKET_START" \
  --market-end "$LAST" --start "$MARKET_START" --end "$BEFORE_FIRST" | sed 's/^/    /'

gogooku3 fetch --date "$FIRST" --end "$LAST" >"$WORK/backfill.log" 2>&1 \
  || { tail -n 30 "$WORK/backfill.log" >&2; exit 1; }
log "    $(grep -c ': wrote' "$WORK/backfill.log") partitions written, $(grep -c 'already complete' "$WORK/backfill.log") already complete in the lake (not requested again), $(grep -c 'not a JPX trading day' "$WORK/backfill.log") non-trading-day skips"

log "2/5 expanding trades_spec to point-in-time daily rows, then building features for the history"
gogooku3 trades-spec expand --start "$MARKET_START" --end "$LAST" | sed 's/^/    /'
gogooku3 features build --start "$MARKET_START" --end "$LAST" --engine cpu | sed 's/^/    /'

PUBLICATION=$(python -c '
import datetime as dt, sys
from gogooku3.calendar import is_publication_day, previous_publication_day
day = dt.date.fromisoformat(sys.argv[1])
print(day if is_publication_day(day) else previous_publication_day(day))' "$LAST")

log "3/5 the DAGs, through airflow dags test"
for spec in "jquants_daily $LAST" "trades_spec_weekly $PUBLICATION" "features_daily $LAST"; do
  set -- $spec
  if [ ! -f "dags/$1.py" ]; then
    log "    $1: no such DAG in dags/, skipped"
    continue
  fi
  if airflow dags test "$1" "$2" >"$WORK/dags-test-$1.log" 2>&1; then
    log "    $1 $2: ok ($(grep -c 'DAG TEST\] end task' "$WORK/dags-test-$1.log") tasks)"
  else
    log "    $1 $2: FAILED; last lines of $WORK/dags-test-$1.log:"
    tail -n 30 "$WORK/dags-test-$1.log" >&2
    exit 1
  fi
done

TRAIN_ARGS=()
if [ "${DEMO_TRAIN:-1}" = 1 ]; then
  log "4/5 walk_forward_retrain $LAST: the tiny ATFT-GAT-FAN and the baselines over 2 folds of $MARKET_START..$LAST (a few minutes)"
  if airflow dags test walk_forward_retrain "$LAST" --conf '{"folds": 2, "epochs": 3, "size": "tiny"}' \
    >"$WORK/dags-test-walk_forward_retrain.log" 2>&1; then
    log "    walk_forward_retrain $LAST: ok ($(grep -c 'DAG TEST\] end task' "$WORK/dags-test-walk_forward_retrain.log") tasks)"
  else
    log "    walk_forward_retrain $LAST: FAILED; last lines of $WORK/dags-test-walk_forward_retrain.log:"
    tail -n 30 "$WORK/dags-test-walk_forward_retrain.log" >&2
    exit 1
  fi
  RUN_FOLDER=$(ls -td "$LAKE"/models/atft-gat-fan/runs/*/ | head -n 1)
  TRAIN_ARGS=(--train "$RUN_FOLDER" --market-seed "$SEED" --market-codes "$CODES" --market-start "$MARKET_START"
    --mlflow "http://127.0.0.1:$MLFLOW_PORT")
else
  log "4/5 walk_forward_retrain skipped (DEMO_TRAIN=0)"
fi

log "5/5 summary"
python -m gogooku3.devtools.demo_summary --lake "$LAKE" --start "$MARKET_START" --end "$LAST" \
  --slack "$WORK/slack.json" --emulator "http://127.0.0.1:$EMU_PORT" "${TRAIN_ARGS[@]}"
