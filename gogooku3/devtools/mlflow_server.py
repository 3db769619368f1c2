"""A local MLflow tracking server for tests, ``make dag-test``, ``make demo`` and ``make airflow``:
the real ``mlflow server`` with a SQLite backend store and proxied artifacts on an S3 server.

Clients only ever talk HTTP to it (``http://127.0.0.1:PORT``); artifacts go through the server
(``--serve-artifacts``, ``mlflow-artifacts:/`` URIs) to ``--artifacts-destination s3://BUCKET/mlflow``,
so no client needs S3 credentials for them: the server gets them in its environment (never on its
command line), from the same variables :meth:`gogooku3.config.S3Settings.from_env` reads.

In tests::

    from gogooku3.devtools.mlflow_server import running_mlflow_server

    with running_s3_server() as s3, running_mlflow_server(tmp_path, s3) as mlflow_server:
        mlflow.set_tracking_uri(mlflow_server.tracking_uri)

Standalone (runs until SIGINT/SIGTERM; reads the S3 endpoint and keys from the environment)::

    python -m gogooku3.devtools.mlflow_server --workdir DIR --artifacts-destination s3://BUCKET/mlflow \\
        --port 0 --port-file DIR/mlflow.port

``mlflow server`` binds its port in a worker it spawns, so it cannot be handed a socket: with port 0
this picks a free port, starts the server on it and, if something else took the port meanwhile,
starts again on another (see :mod:`gogooku3.devtools.ports` for why servers report their port).
MLflow 3.13+ refuses a file store; there is no fallback to one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gogooku3.config import S3Settings
from gogooku3.devtools.ports import write_port_file

#: How long a fresh server may take to answer /health (its first start migrates the SQLite schema).
START_TIMEOUT_S = 180.0
_ADDRESS_IN_USE = ("address already in use", "errno 98")


class MlflowServerError(RuntimeError):
    """The server exited or did not answer in time; the message holds the end of its log."""


#: The MLflow server's switch for its job runners (off here unless the environment says otherwise).
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def server_environment(s3: S3Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``mlflow server`` needs to proxy artifacts to ``s3``: boto3's variables plus
    ``MLFLOW_S3_ENDPOINT_URL`` for a non-AWS endpoint, and its job runners off
    (:data:`JOB_EXECUTION`). Keys only when set (an empty one would hide an instance role); any S3
    keys in ``base`` not meant for it are replaced."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
    env.pop("MLFLOW_S3_ENDPOINT_URL", None)
    # MLflow 3's server starts seven huey job consumers (~330 MB and an MLflow import each) for its
    # GenAI jobs; the pipeline uses tracking and the registry only. An explicit setting wins.
    env.setdefault(JOB_EXECUTION, "false")
    env["AWS_DEFAULT_REGION"] = s3.region
    if s3.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
    for name, secret in (
        ("AWS_ACCESS_KEY_ID", s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key),
    ):
        if secret.get():
            env[name] = secret.get()
    return env


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` as a child process (its own process group, stopped with it).

    :param workdir: holds the SQLite store (``mlflow.db``) and the server's log (``mlflow.log``).
    :param artifacts_destination: where the server keeps artifacts, e.g. ``s3://bucket/mlflow``.
    :param s3: the S3 endpoint and keys for that destination.
    """

    def __init__(
        self,
        workdir: str | Path,
        artifacts_destination: str,
        s3: S3Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.workdir = Path(workdir)
        self.artifacts_destination = artifacts_destination
        self.s3 = s3
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mlflow.log"

    @property
    def tracking_uri(self) -> str:
        if self.port is None:
            raise RuntimeError("MlflowServer is not running; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            self.host,
            "--port",
            str(port),
            "--workers",
            "1",
        ]

    def start(self) -> MlflowServer:
        """Start and wait until ``/health`` answers; raises :class:`MlflowServerError` otherwise."""
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            port = self._requested_port or _free_port(self.host)
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self.command(port),
                    env=server_environment(self.s3),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # uvicorn's workers go with it on stop()
                )
            try:
                self._wait_healthy(port)
            except MlflowServerError as exc:
                self.stop()
                raced = self._requested_port == 0 and any(s in str(exc).lower() for s in _ADDRESS_IN_USE)
                if raced:
                    continue
                raise
            self.port = port
            return self
        raise MlflowServerError(f"mlflow server found no free port on {self.host} in 5 tries")

    def _wait_healthy(self, port: int) -> None:
        assert self._proc is not None
        url = f"http://{self.host}:{port}/health"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise MlflowServerError(
                    f"mlflow server exited with status {self._proc.returncode} before answering "
                    f"{url}:\n{self._log_tail()}"
                )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise MlflowServerError(f"mlflow server did not answer {url} within {START_TIMEOUT_S:g} s")
            time.sleep(0.25)

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop the server and its workers (idempotent)."""
        proc, self._proc, self.port = self._proc, None, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment for a client process."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri}


@contextlib.contextmanager
def running_mlflow_server(
    workdir: str | Path, s3_server: Any, *, prefix: str = "mlflow"
) -> Iterator[MlflowServer]:
    """An MLflow server whose artifacts go to ``s3://<s3_server's bucket>/<prefix>``; stopped on exit."""
    with MlflowServer(workdir, f"s3://{s3_server.bucket}/{prefix}", s3_server.s3_settings()) as server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gogooku3.devtools.mlflow_server",
        description="Run a local MLflow server (SQLite store, artifacts proxied to S3) until interrupted.",
    )
    parser.add_argument("--workdir", required=True, type=Path, help="holds mlflow.db and mlflow.log")
    parser.add_argument("--artifacts-destination", required=True, help="e.g. s3://gogooku3-lake/mlflow")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port here (atomically) once /health answers")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = MlflowServer(
        args.workdir, args.artifacts_destination, S3Settings.from_env(), host=args.host, port=args.port
    )
    try:
        server.start()
    except MlflowServerError as exc:
        print(f"mlflow_server: {exc}", file=sys.stderr)
        return 1
    try:
        if args.port_file:
            assert server.port is not None
            write_port_file(args.port_file, server.port)
        print(
            f"mlflow_server: listening on {server.tracking_uri} store={server.backend_store_uri} "
            f"artifacts={args.artifacts_destination}",
            flush=True,
        )
        while not stop.wait(3600):
            pass
    finally:
        server.stop()
    print("mlflow_server: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
