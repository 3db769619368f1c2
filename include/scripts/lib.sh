# Shared pieces of the operational scripts (dag_test.sh, demo.sh, airflow_standalone.sh): sourced,
# never run. Each script defines log() and a PIDS array its EXIT trap kills.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"

# The servers below bind the port they are given themselves, 0 meaning any free port, and write the
# port they got to a port file once they listen; callers read it back with wait_port_file. (Picking a
# free port here and passing the number on raced with anything else binding one meanwhile.)

# wait_port_file PORTFILE PID NAME LOGFILE [TIMEOUT_S]: print the port the server PID wrote to
# PORTFILE, waiting at most TIMEOUT_S (default 120; the emulator generates its market first). Fails,
# with the end of LOGFILE on stderr, if the process exits first or the time runs out.
wait_port_file() {
  local file=$1 pid=$2 name=$3 logfile=$4 timeout=${5:-120}
  local deadline=$((SECONDS + timeout))
  # The servers write the file in one rename, so a non-empty file holds the whole port.
  while [ ! -s "$file" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before it listened:" >&2; tail -n 30 "$logfile" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name did not listen within $timeout s:" >&2; tail -n 30 "$logfile" >&2; return 1
    fi
    sleep 0.2
  done
  cat "$file"
}

# local_airflow_env HOME: a fresh local Airflow environment, as gogooku3.devtools.airflow_env defines it
# (the one definition, which the tests and benchmarks use too): the caller's AIRFLOW_*, JQUANTS_*, AWS_*
# and GOGOOKU3_* variables unset, AIRFLOW_HOME=HOME on SQLite with the project's DAGs and plugins.
local_airflow_env() {
  local lines
  lines=$(python -m gogooku3.devtools.airflow_env --home "$1") || return 1
  eval "$lines"
}

# airflow_init LOGDIR: migrate the metadata DB and create the project's pools.
airflow_init() {
  local dir=$1
  mkdir -p "$dir"
  python -m gogooku3.devtools.airflow_env --init-db >"$dir/airflow_init.log" 2>&1 || { tail -n 40 "$dir/airflow_init.log" >&2; return 1; }
}

# start_emulator PORT PORTFILE LOGFILE [gogooku3 emulator options...]: sets EMU_PID. PORT 0 binds a
# free port; either way the port bound is read back with wait_port_file PORTFILE.
start_emulator() {
  local port=$1 portfile=$2 logfile=$3
  shift 3
  rm -f "$portfile"  # a port file left by an earlier run would be read as this run's
  gogooku3 emulator --port "$port" --port-file "$portfile" --plan premium "$@" >"$logfile" 2>&1 &
  EMU_PID=$!
  PIDS+=("$EMU_PID")
}

# start_slack_capture PORT OUTFILE PORTFILE LOGFILE: sets SLACK_PID (PORT and PORTFILE as above).
start_slack_capture() {
  rm -f "$3"
  python -m gogooku3.devtools.slack_capture --port "$1" --out "$2" --port-file "$3" >"$4" 2>&1 &
  SLACK_PID=$!
  PIDS+=("$SLACK_PID")
}

# start_s3_server PORT BUCKET PORTFILE LOGFILE: sets S3_PID; the port file appears once BUCKET exists.
start_s3_server() {
  rm -f "$3"
  python -m gogooku3.devtools.s3_server --port "$1" --bucket "$2" --port-file "$3" >"$4" 2>&1 &
  S3_PID=$!
  PIDS+=("$S3_PID")
}

# start_mlflow_server S3_PORT BUCKET WORKDIR PORTFILE LOGFILE [PORT]: sets MLFLOW_PID. The real
# `mlflow server` (gogooku3.devtools.mlflow_server): SQLite store in WORKDIR, artifacts proxied to
# s3://BUCKET/mlflow on the local S3 server at S3_PORT, whose placeholder keys only this process
# receives. PORT (default 0: any free one); read it back with wait_port_file PORTFILE (its first
# start migrates the store: allow a minute).
start_mlflow_server() {
  rm -f "$4"
  local key_id secret
  read -r key_id secret < <(python -c 'from gogooku3.devtools.s3_server import ACCESS_KEY_ID as k, SECRET_ACCESS_KEY as s; print(k, s)')
  GOGOOKU3_S3_ENDPOINT_URL="http://127.0.0.1:$1" AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret" \
    AWS_DEFAULT_REGION=us-east-1 python -m gogooku3.devtools.mlflow_server --workdir "$3" \
    --artifacts-destination "s3://$2/mlflow" --port "${6:-0}" --port-file "$4" >"$5" 2>&1 &
  MLFLOW_PID=$!
  PIDS+=("$MLFLOW_PID")
}

# export_local_connections EMU_PORT SLACK_PORT CHANNEL [MLFLOW_PORT]: the connections production uses
# (jquants, slack_alerts, and mlflow when its port is given), pointing at the local servers, as
# AIRFLOW_CONN_* variables (the emulator's default credentials are public test values, not secrets).
export_local_connections() {
  local lines mlflow=()
  if [ -n "${4:-}" ]; then mlflow=(--mlflow-url "http://127.0.0.1:$4"); fi
  lines=$(python -m gogooku3.devtools.airflow_env --jquants-url "http://127.0.0.1:$1/v2" \
    --slack-url "http://127.0.0.1:$2/api/" --slack-channel "$3" "${mlflow[@]}") || return 1
  eval "$lines"
}

# stop_pids: kill and reap every process in PIDS.
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
