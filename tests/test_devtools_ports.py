"""Reading back the port a server bound: gogooku3.devtools.ports and lib.sh's wait_port_file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gogooku3.devtools.ports import read_port_file, wait_for_port_file, write_port_file

LIB = Path(__file__).resolve().parents[1] / "include" / "scripts" / "lib.sh"

# A stand-in server: reports port 43210 after a moment, then keeps running like a server would.
REPORTS_LATE = (
    "import sys, time; from gogooku3.devtools.ports import write_port_file; "
    "time.sleep(0.3); write_port_file(sys.argv[1], 43210); time.sleep(30)"
)
# One that dies before it listens.
DIES = "import sys; print('boom: address already in use', file=sys.stderr); sys.exit(3)"


def _spawn(code: str, port_file: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=10)


def test_write_port_file_leaves_only_the_port(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "server.port"
    assert read_port_file(path) is None
    write_port_file(path, 8765)
    assert path.read_text() == "8765\n" and read_port_file(path) == 8765
    assert [p.name for p in path.parent.iterdir()] == ["server.port"]  # no temporary file left


def test_wait_for_port_file_returns_the_port_once_written(tmp_path: Path) -> None:
    proc = _spawn(REPORTS_LATE, tmp_path / "port")
    try:
        assert wait_for_port_file(tmp_path / "port", proc, timeout_s=30) == 43210
    finally:
        _stop(proc)


def test_wait_for_port_file_fails_with_the_output_when_the_server_dies(tmp_path: Path) -> None:
    proc = _spawn(DIES, tmp_path / "port")
    with pytest.raises(RuntimeError, match=r"exited with status 3 before writing .*\n.*boom"):
        wait_for_port_file(tmp_path / "port", proc, timeout_s=30)


def test_wait_for_port_file_gives_up_after_the_timeout(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="no port in .* after 0.3 s"):
        wait_for_port_file(tmp_path / "port", None, timeout_s=0.3)
    assert time.monotonic() - t0 < 5


def _wait_port_file(tmp_path: Path, code: str, timeout_s: int) -> subprocess.CompletedProcess:
    """lib.sh's wait_port_file on a stand-in server started from bash, as the scripts do."""
    script = f"""
set -euo pipefail
source "{LIB}"
log() {{ echo "test: $*"; }}
python -c "$1" "$2/port" >"$2/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
PORT=$(wait_port_file "$2/port" "$PID" "stand-in" "$2/server.log" {timeout_s})
echo "port=$PORT"
"""
    return subprocess.run(
        ["bash", "-c", script, "test", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )


def test_lib_wait_port_file_prints_the_port(tmp_path: Path) -> None:
    done = _wait_port_file(tmp_path, REPORTS_LATE, timeout_s=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "port=43210\n"


def test_lib_wait_port_file_fails_with_the_log_when_the_server_dies(tmp_path: Path) -> None:
    done = _wait_port_file(tmp_path, DIES, timeout_s=30)
    assert done.returncode == 1 and "port=" not in done.stdout
    assert "test: stand-in exited before it listened:" in done.stderr
    assert "boom: address already in use" in done.stderr


def test_lib_wait_port_file_is_bounded(tmp_path: Path) -> None:
    silent = "import time; time.sleep(30)"
    t0 = time.monotonic()
    done = _wait_port_file(tmp_path, silent, timeout_s=1)
    assert done.returncode == 1 and "test: stand-in did not listen within 1 s:" in done.stderr
    assert time.monotonic() - t0 < 15
