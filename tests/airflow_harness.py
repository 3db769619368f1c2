"""Shared helpers for end-to-end DAG tests: a throwaway, migrated AIRFLOW_HOME (SQLite) whose
connections point at local servers, and ``airflow dags test`` as a subprocess.

Usage in a test module::

    @pytest.fixture(scope="module")
    def airflow_env(tmp_path_factory, emulator):
        return make_airflow_env(tmp_path_factory.mktemp("airflow_home"), emulator=emulator)

    proc = dags_test(airflow_env, "trades_spec_weekly", day, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert proc.returncode == 0, tail(proc)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Environment variables of the developer's shell that must not leak into the Airflow subprocess.
ISOLATE = ("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME", "GOGOOKU3_", "JQUANTS_", "AWS_")


def make_airflow_env(
    home: Path,
    *,
    emulator: Any | None = None,
    slack: Any | None = None,
    slack_token: str = "xoxb-harness-bot-token",
    plan: str = "premium",
) -> dict[str, str]:
    """Environment for a migrated AIRFLOW_HOME at ``home`` with the project's DAGs, plugins and
    pools, the ``jquants`` connection on ``emulator`` (v2, when given) and, with ``slack`` (a running
    ``gogooku3.devtools.slack_capture``), the ``slack_alerts`` connection on it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATE)}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "include" / "airflow" / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__API__BASE_URL="http://127.0.0.1:8080",
        GOGOOKU3_PACER_DIR=str(home / "pacer"),
    )
    if emulator is not None:
        env["AIRFLOW_CONN_JQUANTS"] = json.dumps(
            {
                "conn_type": "http",
                "host": emulator.base_url_v2,
                "password": emulator.api_key,
                "extra": {"api_version": "v2", "plan": plan},
            }
        )
    if slack is not None:
        env["AIRFLOW_CONN_SLACK_ALERTS"] = json.dumps(
            {
                "conn_type": "slack",
                "password": slack_token,
                "extra": {"channel": "#gogooku3-e2e", "base_url": slack.base_url},
            }
        )
    for cmd in (["db", "migrate"], ["pools", "import", str(ROOT / "include" / "airflow" / "pools.json")]):
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *cmd], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"airflow {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}"
    return env


def dags_test(
    env: dict[str, str], dag_id: str, day: dt.date, *, conf: dict[str, Any] | None = None, **extra_env: str
) -> subprocess.CompletedProcess:
    """``airflow dags test <dag_id> <day>`` (optionally ``--conf``) with ``extra_env`` on top of ``env``."""
    cmd = [sys.executable, "-m", "airflow", "dags", "test", dag_id, day.isoformat()]
    if conf is not None:
        cmd += ["--conf", json.dumps(conf)]
    return subprocess.run(cmd, env={**env, **extra_env}, capture_output=True, text=True, timeout=300)


def tail(proc: subprocess.CompletedProcess, n: int = 6000) -> str:
    return (proc.stdout + proc.stderr)[-n:]


def asset_events(env: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Every asset event in the Airflow DB, oldest first, as (asset URI, extra)."""
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        rows = db.execute(
            "SELECT a.uri, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()
    finally:
        db.close()
    return [(uri, json.loads(extra) if extra else {}) for uri, extra in rows]
