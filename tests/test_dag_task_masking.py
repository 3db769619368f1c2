"""Task-log masking: a secret that reached a task only through the environment (Airflow masks a
connection's password by itself, an env var it cannot know) is registered with Airflow's masker by the
glue, so a task that logs it and raises with it shows ``***`` in its task log, never the value.

The probe DAG lives in a throwaway DAG folder (it is not a project DAG); it uses the glue exactly as
the project's tasks do (``task_settings``), then logs the key through a plain logger and raises with it:
neither passes through the library's own scrubbing, so only Airflow's masker stands in the way.

Masking happens where a supervised task's log is written, which plain ``airflow dags test`` (tasks
in-process, printed as they go) skips. So the task runs the production way: ``dags test
--use-executor`` with the LocalExecutor, whose supervisor talks to a real execution API server
(``airflow api-server --apps execution``, started on port 0; its port is read back from its log).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from airflow_harness import ROOT, api_server, tail

pytestmark = pytest.mark.integration

KEY = "env-only-key-5d6e7f8091"

PROBE_DAG = textwrap.dedent(
    """
    import logging

    import pendulum
    from airflow.sdk import dag, task


    @dag(dag_id="mask_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
    def mask_probe():
        @task(retries=0)
        def leak():
            from gogooku3_airflow.hooks import task_settings

            key = task_settings().jquants.api_key.get()
            logging.getLogger("probe").warning("the key is %s", key)
            raise RuntimeError(f"failing with {key}")

        leak()


    mask_probe()
    """
)


def test_a_key_from_the_environment_is_masked_in_the_task_log(tmp_path: Path, airflow_env_factory) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "mask_probe.py").write_text(PROBE_DAG)
    env = airflow_env_factory(tmp_path / "airflow_home") | {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # One worker process instead of 32 forked at start: with 32, the executor's shutdown now and
        # then left a worker idle without its stop message and waited for it forever (2 of 8 runs
        # beside two busy cores; 0 of 12 with one worker), so `dags test` never returned.
        "AIRFLOW__CORE__PARALLELISM": "1",
        # both the API server and the supervisor sign and check the task's token with this secret
        "AIRFLOW__API_AUTH__JWT_SECRET": "mask-probe-jwt-secret-" + "0" * 48,
        "PYTHONPATH": str(ROOT / "dags"),
    }
    with api_server(env, tmp_path / "api-server.log", apps="execution") as url:
        cmd = [sys.executable, "-m", "airflow", "dags", "test", "--use-executor", "mask_probe", "2024-05-13"]
        proc = subprocess.run(
            cmd,
            env=env
            | {"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/", "JQUANTS_API_KEY": KEY},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode != 0, tail(proc)
    (task_log,) = (tmp_path / "airflow_home" / "logs").rglob("task_id=leak/attempt=1.log")
    text = task_log.read_text()
    assert "the key is ***" in text and "failing with ***" in text, text[-4000:]
    assert KEY not in text
