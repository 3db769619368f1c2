"""Helpers for end-to-end DAG tests: ``airflow dags test`` as a subprocess and what to read back from
the Airflow DB afterwards. The migrated AIRFLOW_HOME they run in comes from the ``airflow_env_factory``
fixture (tests/conftest.py)::

    @pytest.fixture(scope="module")
    def airflow_env(tmp_path_factory, airflow_env_factory, emulator):
        return airflow_env_factory(tmp_path_factory.mktemp("airflow_home"), emulator=emulator)

    proc = dags_test(airflow_env, "trades_spec_weekly", day, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert proc.returncode == 0, tail(proc)
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def dags_test(
    env: dict[str, str],
    dag_id: str,
    day: dt.date,
    *,
    conf: dict[str, Any] | None = None,
    timeout_s: int = 300,
    **extra_env: str,
) -> subprocess.CompletedProcess:
    """``airflow dags test <dag_id> <day>`` (optionally ``--conf``) with ``extra_env`` on top of ``env``."""
    cmd = [sys.executable, "-m", "airflow", "dags", "test", dag_id, day.isoformat()]
    if conf is not None:
        cmd += ["--conf", json.dumps(conf)]
    return subprocess.run(cmd, env={**env, **extra_env}, capture_output=True, text=True, timeout=timeout_s)


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


def task_states(env: dict[str, str], dag_id: str) -> dict[str, str]:
    """Task id -> state of the DAG's task instances in the Airflow DB (one run per home)."""
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (dag_id,)).fetchall()
    finally:
        db.close()
    return dict(rows)


@contextmanager
def api_server(env: dict[str, str], log_path: Path, apps: str = "all") -> Iterator[str]:
    """``airflow api-server --apps APPS`` on 127.0.0.1 and a port it picks itself (port 0, read back
    from its log: no free-port race); yields its URL and stops it afterwards."""
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--apps", apps, "-H", "127.0.0.1", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log_path.read_text()):
                yield m.group(1)
                return
            assert proc.poll() is None, f"api-server exited early:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        raise AssertionError(f"api-server did not start within 120 s:\n{log_path.read_text()[-3000:]}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
