"""Benchmark: one ``walk_forward_retrain`` DAG run end to end, on this machine's CPU.

Setup: the CI market's features (300 codes, 2022-2023, 140 features; quick: 100 codes) in a local
lake marked good; the project's S3 server and a real ``mlflow server`` on it; a fresh local Airflow
home (:mod:`gogooku3.devtools.airflow_env`, SQLite). ``airflow dags test walk_forward_retrain`` runs
for a Saturday with ``{"start", "end", "folds": 4, "epochs": 4}`` (quick: 2 folds, 1 epoch) and the
size the DAG picks without a GPU: ``tiny``. The training runs in the task image on the Docker engine
that ``include/scripts/dockerd.sh`` starts (the image built by ``build_images.sh``, cached by hash,
not timed); where there is no engine the DAG falls back to training in-process, and the ``mode``
column says which ran.

Reported: the wall time of the whole ``dags test`` (Airflow's own start-up included), and each
task's duration from the Airflow DB.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gogooku3.devtools.airflow_env import REPO_ROOT

SATURDAY = dt.date(2024, 1, 6)
SCRIPTS = REPO_ROOT / "include" / "scripts"


def _container_engine() -> str | None:
    """None when the Docker engine runs and the task image is built; else why not."""
    for script, timeout in (("dockerd.sh", 300), ("build_images.sh", 1800)):
        proc = subprocess.run(
            ["bash", str(SCRIPTS / script)], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            return f"{script} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None


def _airflow(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args[:3])} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def _task_seconds(home: Path) -> dict[str, float]:
    db = sqlite3.connect(home / "airflow.db")
    try:
        rows = db.execute(
            "SELECT task_id, state, start_date, end_date FROM task_instance WHERE dag_id = 'walk_forward_retrain'"
        ).fetchall()
    finally:
        db.close()
    seconds = {}
    for task_id, state, start, end in rows:
        if state == "success" and start and end:
            took = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
            seconds[task_id] = took.total_seconds()
    return seconds


def run(quick: bool) -> list[dict]:
    from gogooku3.devtools.airflow_env import init_metadata_db, isolated, local_airflow_env, local_connections
    from gogooku3.devtools.mlflow_server import running_mlflow_server
    from gogooku3.devtools.s3_server import running_s3_server
    from gogooku3.devtools.seed_features import CI_MARKET, seed_features
    from gogooku3.lake import open_lake

    n_codes = 100 if quick else CI_MARKET["n_codes"]
    folds, epochs = (2, 1) if quick else (4, 4)
    no_engine = _container_engine()
    with tempfile.TemporaryDirectory(prefix="bench_retrain_") as tmp_dir:
        tmp = Path(tmp_dir)
        lake = open_lake(tmp / "lake")
        seed_features(lake, n_codes, CI_MARKET["start"], CI_MARKET["end"])
        days = lake.list_partitions("features", "features")
        lake.mark_good("features", "features", days[-1], validation_ref="bench")
        conf = {"start": days[0].isoformat(), "end": days[-1].isoformat(), "folds": folds, "epochs": epochs}
        with running_s3_server() as s3, running_mlflow_server(tmp / "mlflow", s3) as mlflow:
            home = tmp / "airflow_home"
            env = isolated(os.environ) | local_airflow_env(home)
            env |= local_connections(mlflow_url=mlflow.tracking_uri, mlflow_experiment="bench-retrain")
            env["GOGOOKU3_LAKE_URI"] = str(tmp / "lake")
            init_metadata_db(env)
            t0 = time.perf_counter()
            proc = _airflow(
                env,
                "dags",
                "test",
                "walk_forward_retrain",
                SATURDAY.isoformat(),
                "--conf",
                json.dumps(conf),
                timeout=3600,
            )
            wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        tasks = _task_seconds(home)
    mode = "in-process" if "train_in_process" in tasks else "task image, CPU"
    if no_engine:
        mode += f" ({no_engine})"
    elif "retrain IN-PROCESS" in log:
        mode += " (the engine did not answer the DAG)"
    common = {"mode": mode, "codes": n_codes, "days": len(days), "folds": folds, "max epochs": epochs}
    rows = [{"step": "walk_forward_retrain, airflow dags test (tiny)", **common, "seconds": round(wall, 1)}]
    for task_id, seconds in sorted(tasks.items(), key=lambda kv: -kv[1]):
        rows.append({"step": f"  task {task_id}", **common, "seconds": round(seconds, 1)})
    return rows
