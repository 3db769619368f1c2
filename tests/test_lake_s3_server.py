"""The local S3-compatible dev server: in-process context manager and the standalone command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gogooku3.devtools.ports import wait_for_port_file
from gogooku3.devtools.s3_server import S3Server, running_s3_server, upload_tree

pytestmark = pytest.mark.integration


def test_context_manager_serves_s3_over_http_and_stops() -> None:
    with running_s3_server() as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        client = server.client()
        client.put_object(Bucket=server.bucket, Key="k/one.txt", Body=b"hello")
        assert client.get_object(Bucket=server.bucket, Key="k/one.txt")["Body"].read() == b"hello"
        assert server.lake_uri("lake") == f"s3://{server.bucket}/lake"
        env = server.env()
        assert env["GOGOOKU3_S3_ENDPOINT_URL"] == server.endpoint_url
        port = server.port
    assert server.port is None
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.endpoint_url
    import socket

    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_upload_tree_uploads_the_kept_files_under_the_prefix(tmp_path: Path) -> None:
    for i in range(40):
        f = tmp_path / "raw" / f"date={i:02d}" / ("skip.json" if i % 4 == 0 else "part.parquet")
        f.parent.mkdir(parents=True)
        f.write_bytes(f"file {i}".encode())
    with running_s3_server() as server:
        client = server.client()
        n = upload_tree(
            client, tmp_path, server.bucket, "lake", lambda rel: rel.name != "skip.json", workers=8
        )
        listed = client.list_objects_v2(Bucket=server.bucket, Prefix="lake/")["Contents"]
        keys = sorted(o["Key"] for o in listed)
        assert n == 30 and keys == [f"lake/raw/date={i:02d}/part.parquet" for i in range(40) if i % 4]
        body = client.get_object(Bucket=server.bucket, Key="lake/raw/date=39/part.parquet")["Body"].read()
        assert body == b"file 39"


def test_two_servers_get_their_own_ports_and_buckets() -> None:
    with S3Server() as a, S3Server() as b:
        assert a.port != b.port and a.bucket != b.bucket
        names = {x["Name"] for x in b.client().list_buckets()["Buckets"]}
        assert {a.bucket, b.bucket} <= names


def test_standalone_command_serves_until_terminated(tmp_path: Path) -> None:
    ready, port_file = tmp_path / "ready", tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gogooku3.devtools.s3_server",
            "--port",
            "0",
            "--bucket",
            "demo-lake",
            "--ready-file",
            str(ready),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # port 0: the server binds a free port itself and reports it once the bucket exists
        port = wait_for_port_file(port_file, proc, timeout_s=60)
        endpoint = ready.read_text().strip()  # written before the port file
        assert endpoint == f"http://127.0.0.1:{port}"
        from gogooku3.config import S3Settings, Secret
        from gogooku3.lake import open_lake

        settings = S3Settings(endpoint_url=endpoint, access_key_id=Secret("a"), secret_access_key=Secret("b"))
        lake = open_lake("s3://demo-lake/lake", settings)
        import datetime as dt

        import polars as pl

        lake.write_partition("raw", "topix", dt.date(2024, 1, 4), pl.DataFrame({"x": [1.0]}), source="t")
        assert lake.list_partitions("raw", "topix") == [dt.date(2024, 1, 4)]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"s3_server: listening on {endpoint} bucket=demo-lake" in out and "stopped" in out


def test_standalone_command_reports_a_busy_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gogooku3.devtools.s3_server", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
