"""The one metadata-DB initialisation every environment uses (scripts, tests, benchmarks, deployment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gogooku3.devtools.airflow_env import POOLS_FILE, REPO_ROOT, init_metadata_db, isolated, local_airflow_env


def test_init_db_cli_migrates_and_imports_the_project_pools(tmp_path: Path) -> None:
    env = isolated(os.environ) | local_airflow_env(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "gogooku3.devtools.airflow_env", "--init-db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    exported = tmp_path / "pools.json"
    subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "export", str(exported)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    wanted = json.loads((REPO_ROOT / POOLS_FILE).read_text())
    got = json.loads(exported.read_text())
    assert {name: got[name]["slots"] for name in wanted} == {name: p["slots"] for name, p in wanted.items()}


def test_a_failed_step_names_the_command_and_its_output() -> None:
    failing = [sys.executable, "-c", "import sys; print('migration 42 broke'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"(?s)airflow db migrate exited 3:.*migration 42 broke"):
        init_metadata_db(airflow=failing)
