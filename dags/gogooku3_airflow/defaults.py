"""Conventions every gogooku3 DAG shares: owner, retries with exponential backoff, the Slack
failure callback, a JST start date, and the queue of the GPU-bound tasks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum

from gogooku3.config import gpu_task_queue, task_retry_delay_s
from gogooku3_airflow import OWNER
from gogooku3_airflow.callbacks import on_task_failure

#: First day the fetch DAGs may backfill (the origin system's history starts here).
START_DATE = pendulum.datetime(2019, 1, 1, tz="Asia/Tokyo")


def default_args(**overrides: Any) -> dict[str, Any]:
    """Task defaults: 4 retries after 2, 4, 8, 16 minutes (capped at 1 h; the first delay is
    ``GOGOOKU3_RETRY_DELAY_S``), Slack alert on failure.

    The backoff rides out a late publication or a J-Quants outage; errors that retrying cannot
    fix (bad credentials, a bad ``dag_run.conf``) fail at once with AirflowFailException.
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 4,
        "retry_delay": dt.timedelta(seconds=task_retry_delay_s()),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(hours=1),
        "on_failure_callback": on_task_failure,
    }
    args.update(overrides)
    return args


def gpu_queue() -> str:
    """The queue of the tasks that want the GPU host (the feature build, training, and their
    in-process fallbacks): ``GOGOOKU3_GPU_QUEUE`` (``gpu`` in docker-compose.airflow.yml, whose
    ``airflow-worker-gpu`` serves it), else Airflow's default queue."""
    return gpu_task_queue()
