"""A J-Quants server that echoes the API key in its error messages: the key appears nowhere the
project prints it - not in the CLI's retry warnings or its error, not in ``airflow dags test``'s
output (the client's retry warnings, the task's traceback), not in the Slack alert.

The stand-in server answers two 500s and then a 403, each message quoting the key it received in
plain prose (no ``name=value`` shape a pattern could catch): only scrubbing by value can hide it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from airflow_harness import dags_test, tail

from gogooku3.devtools.airflow_env import isolated
from gogooku3.devtools.slack_capture import running_slack_capture

pytestmark = pytest.mark.integration

GOGOOKU3 = str(Path(sys.executable).with_name("gogooku3"))
KEY = "live-key-7c1d9e04b2"
DAY = dt.date(2024, 5, 13)
SLACK_TOKEN = "xoxb-echo-test-token"


@dataclass
class EchoServer:
    """Answers ``statuses`` in turn (the last one from then on), each message quoting the key."""

    statuses: tuple[int, ...] = (500, 500, 403)
    seen: list[int] = field(default_factory=list)
    base_url: str = ""

    def reset(self) -> None:
        self.seen.clear()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server_state = EchoServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            status = server_state.statuses[min(len(server_state.seen), len(server_state.statuses) - 1)]
            server_state.seen.append(status)
            received = self.headers.get("x-api-key", "")
            body = json.dumps({"message": f"the key {received} is not allowed on this plan"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server_state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v2"
    yield server_state
    server.shutdown()
    server.server_close()


def test_the_cli_never_prints_an_echoed_key(echo: EchoServer, tmp_path: Path) -> None:
    echo.reset()
    env = isolated(os.environ)
    env |= {
        "JQUANTS_BASE_URL": echo.base_url,
        "JQUANTS_API_KEY": KEY,
        "GOGOOKU3_PACER_DIR": str(tmp_path / "pacer"),
        "JQUANTS_RATE_PER_MINUTE": "3000",
    }
    args = ["fetch", "--date", DAY.isoformat(), "--endpoint", "topix", "--lake", str(tmp_path / "lake")]
    proc = subprocess.run([GOGOOKU3, *args], env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and echo.seen == [500, 500, 403], out
    assert "retry 1/" in out and "retry 2/" in out  # the warnings that used to quote the server
    assert "403" in out and "the key *** is not allowed" in out
    assert KEY not in out


def test_airflow_output_and_the_alert_never_carry_an_echoed_key(
    echo: EchoServer, tmp_path: Path, airflow_env_factory
) -> None:
    echo.reset()
    with running_slack_capture(expected_token=SLACK_TOKEN) as slack:
        env = airflow_env_factory(tmp_path / "airflow_home", slack=slack, slack_token=SLACK_TOKEN)
        conn = {
            "conn_type": "http",
            "host": echo.base_url,
            "password": KEY,
            "extra": {"api_version": "v2", "plan": "premium", "max_retries": 2},
        }
        proc = dags_test(
            env,
            "jquants_daily",
            DAY,
            GOGOOKU3_LAKE_URI=str(tmp_path / "lake"),
            AIRFLOW_CONN_JQUANTS=json.dumps(conn),
        )
        messages = slack.messages()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, tail(proc)
    assert echo.seen[:3] == [500, 500, 403], echo.seen
    assert "the key *** is not allowed" in out, tail(proc)
    assert KEY not in out
    assert len(messages) == 1, messages
    body = json.dumps(messages[0]["body"])
    assert "AuthError" in body and "***" in body and KEY not in body
