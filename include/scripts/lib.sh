# Shared pieces of the operational scripts (dag_test.sh, demo.sh, airflow_standalone.sh): sourced,
# never run. Each script defines log() and a PIDS array its EXIT trap kills.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"

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

# clean_environment: nothing Airflow/J-Quants/gogooku3-specific leaks in from the caller's shell.
clean_environment() {
  local name
  while IFS='=' read -r name _; do
    case "$name" in AIRFLOW_CONN_*|AIRFLOW__*|GOGOOKU3_*|JQUANTS_*) unset "$name" ;; esac
  done < <(env)
}

# airflow_env HOME: an Airflow home on SQLite with the project's DAGs and plugins.
airflow_env() {
  export AIRFLOW_HOME=$1
  export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
  export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/include/airflow/plugins"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
  export AIRFLOW__API__BASE_URL="http://127.0.0.1:8080"
  mkdir -p "$AIRFLOW_HOME"
}

# airflow_init LOGDIR: migrate the metadata DB and create the project's pools.
airflow_init() {
  local dir=$1
  airflow db migrate >"$dir/migrate.log" 2>&1 || { tail -n 40 "$dir/migrate.log" >&2; return 1; }
  airflow pools import "$ROOT/include/airflow/pools.json" >"$dir/pools.log" 2>&1 || { cat "$dir/pools.log" >&2; return 1; }
}

# start_emulator PORT LOGFILE [gogooku3 emulator options...]: sets EMU_PID.
start_emulator() {
  local port=$1 logfile=$2
  shift 2
  gogooku3 emulator --port "$port" --plan premium "$@" >"$logfile" 2>&1 &
  EMU_PID=$!
  PIDS+=("$EMU_PID")
}

# start_slack_capture PORT OUTFILE LOGFILE: sets SLACK_PID.
start_slack_capture() {
  python -m gogooku3.devtools.slack_capture --port "$1" --out "$2" >"$3" 2>&1 &
  SLACK_PID=$!
  PIDS+=("$SLACK_PID")
}

# export_local_connections EMU_PORT SLACK_PORT CHANNEL: the connections production uses, pointing at
# the local servers (the emulator's default credentials are public test values, not secrets).
export_local_connections() {
  export AIRFLOW_CONN_JQUANTS="{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1:$1/v2\", \"password\": \"emulator-api-key\", \"extra\": {\"api_version\": \"v2\", \"plan\": \"premium\"}}"
  export AIRFLOW_CONN_SLACK_ALERTS="{\"conn_type\": \"slack\", \"password\": \"xoxb-local-capture\", \"extra\": {\"channel\": \"$3\", \"base_url\": \"http://127.0.0.1:$2/api/\"}}"
}

# stop_pids: kill and reap every process in PIDS.
stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
