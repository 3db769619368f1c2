"""A local S3-compatible server (moto's server app) on 127.0.0.1 for tests, the demo and ``make airflow``.

In tests::

    from gogooku3.devtools.s3_server import running_s3_server

    with running_s3_server() as s3:                 # free port, fresh bucket
        lake = open_lake(s3.lake_uri("lake"), s3.s3_settings())
        subprocess.run([...], env={**os.environ, **s3.env()})   # for child processes

Standalone (runs until SIGINT/SIGTERM; ``--port 0`` binds a free port and ``--port-file`` tells which,
see :mod:`gogooku3.devtools.ports`)::

    python -m gogooku3.devtools.s3_server --port 9000 --bucket gogooku3-lake

moto keeps its buckets in process-wide memory: two servers started in one process share them, and
everything is lost when the process exits. That is why :func:`running_s3_server` picks a unique
bucket name unless told otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gogooku3.config import S3Settings, Secret
from gogooku3.devtools.ports import write_port_file, write_text_atomic

#: moto accepts any credentials; these are placeholders, not secrets. They are distinctive because
#: every Secret is scrubbed from messages by value: a plain word ("testing") would vanish from them.
ACCESS_KEY_ID = "gogooku3-local-s3-key-id"
SECRET_ACCESS_KEY = "gogooku3-local-s3-secret"
REGION = "us-east-1"


class S3Server:
    """moto's S3 server in a background thread of this process, with one bucket created.

    ``port=0`` (the default) picks a free port; read it back from :attr:`port` after :meth:`start`.
    """

    def __init__(
        self, bucket: str | None = None, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True
    ):
        self.bucket = bucket or f"gogooku3-test-{uuid.uuid4().hex[:12]}"
        self.host = host
        self._requested_port = port
        self._quiet = quiet
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def __repr__(self) -> str:
        state = self.endpoint_url if self.port else "stopped"
        return f"S3Server(bucket={self.bucket!r}, {state})"

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("S3Server is not running; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        """Listen (raising :class:`OSError` if the port is taken), serve in a thread, create the bucket."""
        if self._server is not None:
            return self
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        if self._quiet:
            # werkzeug logs every request at INFO to stderr unless its logger is configured.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # moto's handler with its S3 app alone (as images/s3/serve_s3.py: ThreadedMotoServer's app
        # works out the service of every request, ~40% of a GET); and we bind the socket ourselves:
        # ThreadedMotoServer binds inside its thread, where a busy port ends the thread and leaves
        # start() waiting forever.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
            server = make_server(
                self.host,
                sock.getsockname()[1],
                create_backend_app("s3"),
                threaded=True,
                request_handler=MotoRequestHandler,
                fd=sock.fileno(),
            )
        finally:
            sock.close()  # the server holds its own duplicate of the descriptor
        thread = threading.Thread(target=server.serve_forever, name=f"s3-server-{server.port}", daemon=True)
        thread.start()
        self._server, self._thread, self.port = server, thread, server.port
        try:
            self.create_bucket(self.bucket)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = self._thread = None
            self.port = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- ways to reach it

    def s3_settings(self) -> S3Settings:
        """Settings for :func:`gogooku3.lake.open_lake` pointing at this server."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=Secret(ACCESS_KEY_ID),
            secret_access_key=Secret(SECRET_ACCESS_KEY),
        )

    def env(self) -> dict[str, str]:
        """Environment for a child process (``S3Settings.from_env`` reads these)."""
        return {
            "GOGOOKU3_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def lake_uri(self, prefix: str = "") -> str:
        prefix = prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def client(self) -> Any:
        """A boto3 S3 client talking to this server over HTTP."""
        from gogooku3.lake.s3 import make_s3_client

        return make_s3_client(self.s3_settings())

    def create_bucket(self, name: str) -> None:
        """Create ``name`` (fine if this process's moto state already has it)."""
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise


@contextlib.contextmanager
def running_s3_server(
    bucket: str | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[S3Server]:
    """Start a moto S3 server (free port unless given) with ``bucket`` created; stop it on exit."""
    server = S3Server(bucket, host=host, port=port)
    with server:
        yield server


def upload_tree(
    client: Any,
    root: Path,
    bucket: str,
    prefix: str,
    keep: Callable[[Path], bool] = lambda rel: True,
    *,
    workers: int = 16,
) -> int:
    """Upload every file under ``root`` whose relative path ``keep`` accepts to
    ``s3://bucket/prefix/<relative path>``, ``workers`` at a time (a seeded lake is thousands of
    small files: one at a time, the round trips dominate); returns how many were uploaded."""
    files = {p: f"{prefix}/{p.relative_to(root).as_posix()}" for p in sorted(root.rglob("*")) if p.is_file()}
    files = {p: key for p, key in files.items() if keep(p.relative_to(root))}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda item: client.upload_file(str(item[0]), bucket, item[1]), files.items()))
    return len(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gogooku3.devtools.s3_server",
        description="Run a local S3-compatible server (moto) until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    parser.add_argument("--bucket", default="gogooku3-lake", help="bucket to create at start")
    parser.add_argument("--port-file", help="write the port bound here (atomically) once serving")
    parser.add_argument("--ready-file", help="write the endpoint URL here (atomically) once serving")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = S3Server(args.bucket, host=args.host, port=args.port, quiet=not args.verbose)
    try:
        server.start()
    except (OSError, OverflowError) as e:  # OverflowError: a port outside 0..65535
        print(f"s3_server: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    try:
        # Serving, with the bucket created: report where. The port file comes last, as scripts wait
        # for it and may then read the others.
        if args.ready_file:
            write_text_atomic(args.ready_file, server.endpoint_url + "\n")
        if args.port_file:
            assert server.port is not None  # start() returned: it listens
            write_port_file(args.port_file, server.port)
        print(f"s3_server: listening on {server.endpoint_url} bucket={server.bucket}", flush=True)
        while not stop.wait(3600):
            pass
    finally:
        server.stop()
    print("s3_server: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
