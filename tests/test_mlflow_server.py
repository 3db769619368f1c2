"""The local MLflow server (gogooku3.devtools.mlflow_server): a real ``mlflow server`` on a SQLite
store whose artifacts really land in the S3 server's bucket, with the S3 keys kept off its command
line."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gogooku3.config import S3Settings, Secret
from gogooku3.devtools.mlflow_server import JOB_EXECUTION, server_environment
from gogooku3.devtools.ports import wait_for_port_file
from gogooku3.devtools.s3_server import SECRET_ACCESS_KEY

pytestmark = pytest.mark.integration


def test_artifacts_go_through_the_server_to_s3_and_runs_to_sqlite(mlflow_server):
    import mlflow

    client = mlflow.MlflowClient(mlflow_server.tracking_uri)
    experiment = client.create_experiment("test_mlflow_server")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "hello from a test", "notes/hello.txt")

    # Proxied: the client saw only an mlflow-artifacts: URI, the bytes are in the bucket.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    s3 = mlflow_server.s3.client()
    key = f"mlflow/{experiment}/{run.info.run_id}/artifacts/notes/hello.txt"
    assert s3.get_object(Bucket=mlflow_server.s3.bucket, Key=key)["Body"].read() == b"hello from a test"
    # The run is in the SQLite store, not in a file store.
    db = Path(mlflow_server.backend_store_uri.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        (found,) = conn.execute("select count(*) from runs where run_uuid = ?", (run.info.run_id,)).fetchone()
    assert found == 1
    assert not (mlflow_server.workdir / "mlruns").exists() and not Path("mlruns").exists()


def test_s3_keys_reach_the_server_environment_not_its_command_line(mlflow_server):
    cmdline = Path(f"/proc/{mlflow_server._proc.pid}/cmdline").read_bytes().decode()
    environ = Path(f"/proc/{mlflow_server._proc.pid}/environ").read_bytes().decode()
    assert SECRET_ACCESS_KEY not in cmdline and SECRET_ACCESS_KEY not in mlflow_server.log_path.read_text()
    assert f"AWS_SECRET_ACCESS_KEY={SECRET_ACCESS_KEY}\0" in environ
    assert f"MLFLOW_S3_ENDPOINT_URL={mlflow_server.s3.endpoint_url}\0" in environ


def test_the_server_runs_no_job_consumers(mlflow_server):
    """What the running server got: no huey consumer among its descendants (MLflow 3 starts seven
    for its GenAI jobs unless told not to)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
    todo, commands = [mlflow_server._proc.pid], []
    while todo:
        pid = todo.pop()
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    assert any("uvicorn" in c for c in commands), commands  # the walk found the server's workers
    assert not [c for c in commands if "huey" in c], commands


def test_server_environment_replaces_foreign_s3_settings():
    base = {
        "PATH": "/bin",
        "AWS_PROFILE": "prod",
        "AWS_SECRET_ACCESS_KEY": "other",
        "MLFLOW_S3_ENDPOINT_URL": "x",
    }
    env = server_environment(S3Settings(region="ap-northeast-1"), base)
    assert env == {"PATH": "/bin", "AWS_DEFAULT_REGION": "ap-northeast-1", JOB_EXECUTION: "false"}
    assert server_environment(S3Settings(), {JOB_EXECUTION: "true"})[JOB_EXECUTION] == "true"
    env = server_environment(S3Settings("http://127.0.0.1:9", "us-east-1", Secret("id"), Secret("key")), base)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("id", "key")


def test_cli_reports_its_port_and_stops_on_sigterm(mlflow_server, tmp_path):
    port_file = tmp_path / "mlflow.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gogooku3.devtools.mlflow_server",
            "--workdir",
            str(tmp_path / "server"),
            "--artifacts-destination",
            f"s3://{mlflow_server.s3.bucket}/cli",
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        env={**os.environ, **mlflow_server.s3.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = wait_for_port_file(port_file, proc, timeout_s=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"listening on http://127.0.0.1:{port}" in out and out.rstrip().endswith("mlflow_server: stopped")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_a_server_that_cannot_start_says_why(tmp_path):
    from gogooku3.devtools.mlflow_server import MlflowServer, MlflowServerError

    # A backend store MLflow cannot open: the error carries the server's own words.
    server = MlflowServer(tmp_path, "s3://bucket/mlflow", S3Settings())
    server.command = lambda port: [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        "nosuch://x",
        "--port",
        str(port),
    ]
    with pytest.raises(MlflowServerError, match="exited with status .* before answering"):
        server.start()
