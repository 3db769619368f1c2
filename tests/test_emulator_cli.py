"""``gogooku3 emulator`` serves over HTTP as a separate process (what benchmarks and `make airflow` use)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gogooku3.devtools.ports import wait_for_port_file

pytestmark = pytest.mark.integration


EXE = shutil.which("gogooku3") or str(Path(sys.executable).with_name("gogooku3"))
SMALL = ["--codes", "5", "--start", "2024-01-01", "--end", "2024-01-31"]


def test_cli_emulator_serves_both_protocols_and_stats(tmp_path):
    port_file = tmp_path / "emulator.port"
    args = [
        "--codes",
        "25",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-29",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--page-size",
        "10",
    ]
    proc = subprocess.Popen(
        [EXE, "emulator", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # port 0: the emulator binds a free port itself and reports it, in the file and on stdout
        port = wait_for_port_file(port_file, proc, timeout_s=60)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"J-Quants emulator listening on http://127.0.0.1:{port}"
        assert port_file.read_text() == f"{port}\n"
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/health", timeout=5) as r:  # answers once the file is there
            health = json.loads(r.read())
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
    assert proc.returncode == 0  # SIGTERM is a clean stop


# Each bad value: exit 2 with one "error: <option> <value>: ..." line, no traceback, nothing served.
# Every case passes --port 0, so a value that slipped through could not take a fixed port.
BAD_ARGUMENTS = [
    (["--fault-rate", "2"], "--fault-rate 2.0: must be a number in [0, 1]"),
    (["--fault-rate", "nan"], "--fault-rate nan: must be a number in [0, 1]"),
    (["--port", "99999"], "--port 99999: must be a TCP port in 0..65535"),
    (["--port", "-1"], "--port -1: must be a TCP port in 0..65535"),
    (["--codes", "0"], "--codes 0: must be in 1..8000"),
    (["--codes", "8001"], "--codes 8001: must be in 1..8000"),
    (["--page-size", "0"], "--page-size 0: must be >= 1"),
    (["--latency-ms", "-1"], "--latency-ms -1.0: must be a finite number >= 0"),
    (["--latency-ms", "nan"], "--latency-ms nan: must be a finite number >= 0"),
    (["--latency-ms", "inf"], "--latency-ms inf: must be a finite number >= 0"),
    (["--plan", "gold"], "--plan 'gold': must be one of free, light, standard, premium"),
    (["--faults", "429,bogus"], "--faults '429,bogus': has unknown kind(s) 'bogus'"),
    (
        ["--start", "2024-02-01", "--end", "2024-01-31"],
        "--start '2024-02-01': must not be after end (2024-01-31)",
    ),
    (["--start", "2024-01-06", "--end", "2024-01-08"], "--start '2024-01-06': leaves no JPX trading day"),
    (["--start", "2024-02-30"], "--start '2024-02-30': expected a date as YYYY-MM-DD or YYYYMMDD"),
    (["--end", "soon"], "--end 'soon': expected a date as YYYY-MM-DD or YYYYMMDD"),
    (["--signal", "nan"], "--signal nan: must be a finite number >= 0"),
    (["--signal", "inf"], "--signal inf: must be a finite number >= 0"),
    (["--signal", "-0.5"], "--signal -0.5: must be a finite number >= 0"),
    (["--seed", "-1"], "--seed -1: must be >= 0"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_with_one_error_line(args, message):
    done = subprocess.run(
        [EXE, "emulator", "--port", "0", *SMALL, *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""  # nothing was served


def test_a_busy_port_is_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # held (and listening) for the whole test: no race
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [EXE, "emulator", "--port", str(port), "--port-file", str(tmp_path / "port"), *SMALL],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert f"error: --host/--port: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "port").exists()
