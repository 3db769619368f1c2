#!/usr/bin/env bash
# `make airflow`: Airflow standalone (api-server, scheduler, dag-processor, triggerer) on
# http://127.0.0.1:8080 with the project's DAGs and plugin, its pools and connections created, and
# local stand-ins for the outside world, all on 127.0.0.1:
#
#   J-Quants  the emulator (v2, Premium plan limits)   http://127.0.0.1:${EMULATOR_PORT:-8765}
#   Slack     a capture server; alerts land in .airflow/slack.json  http://127.0.0.1:${SLACK_PORT:-8766}
#   S3        a moto server (bucket gogooku3-lake) for the s3_lake connection  ${S3_PORT:-9000}
#   MLflow    the real `mlflow server` for the mlflow connection (walk_forward_retrain)
#             http://127.0.0.1:${MLFLOW_PORT:-5000}: SQLite store in .airflow/run/mlflow, artifacts
#             proxied to s3://gogooku3-lake/mlflow. The S3 server keeps objects in memory only, so the
#             store starts afresh with every `make airflow`: runs and models last as long as it runs.
#
# A port of 0 (e.g. EMULATOR_PORT=0) binds a free one; the connections use the ports the servers report
# in their port files (lib.sh), so a busy port fails at once with that server's log.
# State (SQLite DB, logs) lives in .airflow/ and survives restarts; the lake defaults to ./data/lake
# (GOGOOKU3_LAKE_URI=s3://gogooku3-lake/lake uses the S3 server instead). The DAGs start paused:
# jquants_daily has catchup=True, so unpausing it backfills every trading day since its start date.
# Login is disabled (every visitor is admin): this is a local development instance bound to 127.0.0.1.
# Ctrl-C (or TERM) stops every Airflow process and every helper process.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

EMULATOR_PORT=${EMULATOR_PORT:-8765}
SLACK_PORT=${SLACK_PORT:-8766}
S3_PORT=${S3_PORT:-9000}
# Read before local_airflow_env, which unsets every MLFLOW_* variable of the caller.
TRACKING_PORT=${MLFLOW_PORT:-5000}
EMULATOR_CODES=${GOGOOKU3_EMULATOR_CODES:-4000}
EMULATOR_START=${GOGOOKU3_EMULATOR_START:-2019-01-01}

HOME_DIR="${GOGOOKU3_AIRFLOW_HOME:-$ROOT/.airflow}"
LAKE=${GOGOOKU3_LAKE_URI:-$ROOT/data/lake}
RUN="$HOME_DIR/run"
mkdir -p "$RUN"

PIDS=()
AIRFLOW_PGID=""
cleanup() {
  # Airflow standalone runs in its own process group (setsid below): stop the whole group -
  # scheduler, executor workers, api-server, dag-processor, triggerer - not just its parent.
  if [ -n "$AIRFLOW_PGID" ] && kill -0 -- "-$AIRFLOW_PGID" 2>/dev/null; then
    log "stopping Airflow"
    kill -TERM -- "-$AIRFLOW_PGID" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 -- "-$AIRFLOW_PGID" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$AIRFLOW_PGID" 2>/dev/null || true
  fi
  stop_pids
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "airflow-standalone: $*"; }

local_airflow_env "$HOME_DIR"
# What only the UI instance adds: dates shown in JST, no login (127.0.0.1 only), its address.
export AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Tokyo
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=8080
export GOGOOKU3_LAKE_URI=$LAKE

log "emulator: $EMULATOR_CODES codes from $EMULATOR_START, port $EMULATOR_PORT"
start_emulator "$EMULATOR_PORT" "$RUN/emulator.port" "$RUN/emulator.log" \
  --codes "$EMULATOR_CODES" --start "$EMULATOR_START"
start_slack_capture "$SLACK_PORT" "$HOME_DIR/slack.json" "$RUN/slack.port" "$RUN/slack.log"
start_s3_server "$S3_PORT" gogooku3-lake "$RUN/s3.port" "$RUN/s3.log"

S3_PORT=$(wait_port_file "$RUN/s3.port" "$S3_PID" "S3 server" "$RUN/s3.log")
# The store would name artifacts that a restarted (in-memory) S3 server no longer has.
rm -rf "$RUN/mlflow"
start_mlflow_server "$S3_PORT" gogooku3-lake "$RUN/mlflow" "$RUN/mlflow.port" "$RUN/mlflow.log" "$TRACKING_PORT"

airflow db migrate >"$RUN/migrate.log" 2>&1 || { tail -n 40 "$RUN/migrate.log" >&2; exit 1; }
airflow pools import "$ROOT/include/airflow/pools.json" >/dev/null

# The ports the servers bound (the ones asked for, unless 0 was).
EMULATOR_PORT=$(wait_port_file "$RUN/emulator.port" "$EMU_PID" emulator "$RUN/emulator.log")
SLACK_PORT=$(wait_port_file "$RUN/slack.port" "$SLACK_PID" "slack capture" "$RUN/slack.log")
TRACKING_PORT=$(wait_port_file "$RUN/mlflow.port" "$MLFLOW_PID" "mlflow server" "$RUN/mlflow.log" 300)
log "emulator on 127.0.0.1:$EMULATOR_PORT, slack capture on 127.0.0.1:$SLACK_PORT, S3 on 127.0.0.1:$S3_PORT"
log "MLflow UI on http://127.0.0.1:$TRACKING_PORT (artifacts s3://gogooku3-lake/mlflow)"

# Connections in the metadata DB (visible and editable in the UI), pointing at the local servers.
# The credentials are the emulator's and the S3 server's public test values, not secrets.
python -m gogooku3.devtools.airflow_env --connections-json "$RUN/connections.json" \
  --jquants-url "http://127.0.0.1:$EMULATOR_PORT/v2" --slack-url "http://127.0.0.1:$SLACK_PORT/api/" \
  --s3-endpoint "http://127.0.0.1:$S3_PORT" --mlflow-url "http://127.0.0.1:$TRACKING_PORT"
airflow connections import --overwrite "$RUN/connections.json" >/dev/null

log "Airflow UI on http://127.0.0.1:8080 (DAGs paused; alerts -> $HOME_DIR/slack.json; lake $GOGOOKU3_LAKE_URI)"
# In the background, in its own session/process group, so that Ctrl-C (or a TERM to this script)
# runs the cleanup above at once, which stops every Airflow process and then the helpers.
setsid airflow standalone &
AIRFLOW_PGID=$!
wait "$AIRFLOW_PGID"
