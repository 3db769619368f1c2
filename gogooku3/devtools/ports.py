"""Port 0 for the local servers, and how their callers learn the port they bound.

Picking a free port for another process (bind port 0, read the number, close the socket, pass the
number on) races with everything else on the machine that binds port 0 meanwhile: on a loaded CI
runner the server then dies with "address already in use". So the servers (``gogooku3 emulator``,
``python -m gogooku3.devtools.slack_capture``, ``python -m gogooku3.devtools.s3_server``) take
``--port 0``, bind it themselves and report the port with ``--port-file PATH`` (written once the
socket listens) and a ``listening on http://HOST:PORT`` line on stdout. Shell scripts read the file
with ``wait_port_file`` of include/scripts/lib.sh; Python callers with :func:`wait_for_port_file`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename, so a reader polling for it sees all or nothing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_port_file(path: str | Path, port: int) -> None:
    """Write ``port`` and a newline to ``path`` atomically; call it only once the socket listens."""
    write_text_atomic(path, f"{port}\n")


def read_port_file(path: str | Path) -> int | None:
    """The port in ``path``, or None while there is none (no file yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return int(text.strip())


def wait_for_port_file(
    path: str | Path, proc: subprocess.Popen | None = None, *, timeout_s: float = 120.0, poll_s: float = 0.05
) -> int:
    """The port a server process reports in ``path``, waiting at most ``timeout_s``.

    Raises :class:`RuntimeError` when ``proc`` exits before writing it (with the end of its output
    on the pipes it has, which are then drained) or when the time runs out. A stale file from an
    earlier run would be read as this run's port: remove it before starting the server.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        port = read_port_file(path)
        if port is not None:
            return port
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with status {proc.returncode} before writing {path}{_output_tail(proc)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"no port in {path} after {timeout_s:g} s")
        time.sleep(poll_s)


def _output_tail(proc: subprocess.Popen, chars: int = 2000) -> str:
    """The end of what the exited ``proc`` wrote to its stdout and stderr pipes (those it has)."""
    parts = []
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            out = stream.read()
            parts.append(out.decode(errors="replace") if isinstance(out, bytes) else out)
    text = "".join(parts)
    return ":\n" + text[-chars:] if text else ""
