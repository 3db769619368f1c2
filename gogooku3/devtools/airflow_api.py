"""A small client of Airflow 3's REST API (``/api/v2``), as a script or a test uses a deployment.

    api = AirflowApi.login("http://127.0.0.1:8080", "admin", password)   # POST /auth/token
    run = api.trigger("features_daily", conf={"start": "2024-03-29", "end": "2024-03-29"})
    api.wait_for_run("features_daily", run["dag_run_id"])                   # polls to a final state

Every call carries the JWT ``/auth/token`` returned; an answer other than 2xx raises
:class:`ApiError` with the method, path, status and the body's head (never the token).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

FINAL_RUN_STATES = ("success", "failed")


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


def _request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class AirflowApi:
    base_url: str
    token: str

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> AirflowApi:
        """A JWT from ``POST /auth/token`` (the auth manager's login, as the UI's)."""
        base = base_url.rstrip("/")
        status, raw = _request("POST", f"{base}/auth/token", {"username": username, "password": password})
        if status not in (200, 201):
            raise ApiError("POST", "/auth/token", status, raw.decode(errors="replace"))
        return cls(base, json.loads(raw)["access_token"])

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        url = f"{self.base_url}/api/v2{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        status, raw = _request(method, url, body, {"Authorization": f"Bearer {self.token}"})
        if not 200 <= status < 300:
            raise ApiError(method, path, status, raw.decode(errors="replace"))
        return json.loads(raw) if raw else None

    # -- what a person does in the UI ---------------------------------------------------------------
    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self.call("PATCH", f"/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> dict:
        """A manual run (``logical_date`` None: Airflow 3's run without a logical date)."""
        return self.call(
            "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
        )

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", limit=100, order_by="run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        """Task id -> its task instance (state, queue, hostname, try_number, ...)."""
        tis = self.call(
            "GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances", limit=100
        )
        return {ti["task_id"]: ti for ti in tis["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        run = urllib.parse.quote(run_id, safe="")
        got = self.call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}",
            full_content="true",
        )
        content = got.get("content", "")
        if isinstance(content, list):  # structured log lines
            return "\n".join(
                line.get("event", "") if isinstance(line, dict) else str(line) for line in content
            )
        return str(content)

    def create_backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        max_active_runs: int = 10,
        reprocess_behavior: str = "none",
    ) -> dict:
        return self.call(
            "POST",
            "/backfills",
            {
                "dag_id": dag_id,
                "from_date": from_date,
                "to_date": to_date,
                "max_active_runs": max_active_runs,
                "reprocess_behavior": reprocess_behavior,
                "run_backwards": False,
                "dag_run_conf": {},
            },
        )

    def backfills(self, dag_id: str) -> list[dict]:
        return self.call("GET", "/backfills", dag_id=dag_id, limit=100)["backfills"]

    def wait_for_backfills(self, dag_id: str, timeout_s: float = 600, poll_s: float = 3) -> list[dict]:
        """Poll until every backfill of ``dag_id`` has completed (the scheduler marks one completed
        once its runs have ended; Airflow refuses a new backfill for the DAG before that)."""
        deadline = time.monotonic() + timeout_s
        while True:
            backfills = self.backfills(dag_id)
            if all(b["completed_at"] for b in backfills):
                return backfills
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"backfills of {dag_id} not completed after {timeout_s:.0f} s: {backfills}"
                )
            time.sleep(poll_s)

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 600, poll_s: float = 3) -> dict:
        """Poll the run until it succeeds or fails; returns it. Raises TimeoutError naming the task
        states when it is still going after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        while True:
            run = self.call("GET", path)
            if run["state"] in FINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                states = {t: ti["state"] for t, ti in self.task_instances(dag_id, run_id).items()}
                raise TimeoutError(
                    f"{dag_id} {run_id} still {run['state']} after {timeout_s:.0f} s: {states}"
                )
            time.sleep(poll_s)
