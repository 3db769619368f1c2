"""``gogooku3 emulator`` serves over HTTP as a separate process (what benchmarks and `make airflow` use)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_emulator_serves_both_protocols_and_stats():
    exe = shutil.which("gogooku3") or str(Path(sys.executable).with_name("gogooku3"))
    port = _free_port()
    args = [
        "--codes",
        "25",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-29",
        "--port",
        str(port),
        "--page-size",
        "10",
    ]
    proc = subprocess.Popen([exe, "emulator", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    health = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.1)
        else:
            pytest.fail("emulator did not come up")
        assert health == {"status": "ok", "codes": 25, "start": "2024-01-01", "end": "2024-02-29"}
        req = urllib.request.Request(
            base + "/v2/equities/bars/daily?date=2024-02-01", headers={"x-api-key": "emulator-api-key"}
        )
        with urllib.request.urlopen(req) as r:
            body = json.loads(r.read())
        assert len(body["data"]) == 10 and "pagination_key" in body
        login = urllib.request.Request(
            base + "/v1/token/auth_user",
            data=json.dumps({"mailaddress": "quant@example.com", "password": "emulator-password"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(login) as r:
            assert "refreshToken" in json.loads(r.read())
        with urllib.request.urlopen(base + "/_stats") as r:
            stats = json.loads(r.read())
        assert stats["requests"]["/v2/equities/bars/daily"] == 1 and stats["pages_served"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
