"""A local Redis (Debian's ``redis-server``) on a Unix socket, for tests of the cross-host pacer.

In tests::

    from gogooku3.devtools.redis_server import running_redis_server

    with running_redis_server(tmp_path) as redis_url:      # unix:///.../redis.sock
        env = {**os.environ, "GOGOOKU3_PACER_URL": redis_url}

A Unix socket rather than a TCP port: redis-server cannot bind "any free port" and report it (its
``--port 0`` turns TCP off), and a socket in a fresh directory never collides with anything else on
the machine. Nothing is persisted (no RDB, no AOF); the server lives as long as the block.
``include/scripts/host_packages.sh redis-server`` installs the binary.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = "bash include/scripts/host_packages.sh redis-server"


class RedisServerError(RuntimeError):
    pass


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None
    )


@contextlib.contextmanager
def running_redis_server(directory: str | Path, *, timeout_s: float = 20.0) -> Iterator[str]:
    """Start redis-server listening on ``directory/redis.sock`` only; yield its ``unix://`` URL;
    stop it (and wait for it) on exit."""
    import redis

    binary = redis_server_binary()
    if binary is None:
        raise RedisServerError(f"redis-server is not installed (Debian's redis-server: {INSTALL_HINT})")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    sock, log = root / "redis.sock", root / "redis.log"
    argv = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(root), "--logfile", str(log)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"unix://{sock}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RedisServerError(f"redis-server exited {proc.returncode}: {err or tail}")
            if sock.exists():
                try:
                    if redis.Redis.from_url(url, socket_timeout=1).ping():
                        break
                except redis.RedisError:
                    pass
            if time.monotonic() > deadline:
                raise RedisServerError(f"redis-server did not answer on {sock} within {timeout_s} s")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
