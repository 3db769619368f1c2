"""The one local Airflow environment: what ``make dag-test``, ``make demo``, ``make airflow``, the
tests and the DAG-parse benchmark run Airflow with, and the connections pointing at the local servers.

A local Airflow home is SQLite in a throwaway directory with the project's DAG and plugin folders
(:data:`LAYOUT`, paths relative to the checkout; the compose file mounts the checkout at
``/opt/gogooku3`` and uses the same relative paths, which a test checks). Nothing Airflow-, J-Quants-,
AWS- or gogooku3-specific leaks in from the caller's environment (:data:`ISOLATED_PREFIXES`).

From Python (tests, benchmarks)::

    env = local_airflow_env(home) | local_connections(jquants_url=..., api_key=...)

From the shell scripts (``include/scripts/lib.sh``)::

    eval "$(python -m gogooku3.devtools.airflow_env --home "$WORK/airflow")"       # a fresh environment
    eval "$(python -m gogooku3.devtools.airflow_env --jquants-url URL --api-key K)"  # + connections

``--init-db`` migrates the metadata DB of the environment it runs in and imports the pools
(:func:`init_metadata_db`, which the tests, benchmarks and the deployment's init job call too).
``--home`` prints ``unset`` lines for the caller's leaking variables and ``export`` lines for the
Airflow settings; the connection options print their ``AIRFLOW_CONN_*`` exports, or, with
``--connections-json PATH``, write them for ``airflow connections import`` (``make airflow``: in the
metadata DB, the UI shows and edits them). The credentials default to the emulator's and the local
S3 server's public test values.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The checkout this module belongs to (the project installs itself editable).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Airflow settings that are paths inside the checkout: the same relative paths in every deployment.
LAYOUT = {
    "AIRFLOW__CORE__DAGS_FOLDER": "dags",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "include/airflow/plugins",
}
#: The pools the scripts import (``airflow pools import``): their sizes are defined once, there.
POOLS_FILE = "include/airflow/pools.json"

#: Variables of the caller's environment a local Airflow run must not inherit.
ISOLATED_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME", "GOGOOKU3_", "JQUANTS_", "AWS_", "MLFLOW_")

#: Where the local API server is (task log URLs in alerts point here).
LOCAL_API_URL = "http://127.0.0.1:8080"


def isolated(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables in :data:`ISOLATED_PREFIXES`."""
    return {k: v for k, v in env.items() if not k.startswith(ISOLATED_PREFIXES)}


def local_airflow_env(home: Path | str, root: Path | str = REPO_ROOT) -> dict[str, str]:
    """The Airflow settings of a local home at ``home`` (SQLite) for the checkout at ``root``."""
    home, root = Path(home), Path(root)
    return {
        "AIRFLOW_HOME": str(home),
        **{name: str(root / rel) for name, rel in LAYOUT.items()},
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__API__BASE_URL": LOCAL_API_URL,
    }


def init_metadata_db(
    env: Mapping[str, str] | None = None,
    *,
    airflow: Sequence[str] = (sys.executable, "-m", "airflow"),
    root: Path | str = REPO_ROOT,
    timeout: float = 300,
) -> None:
    """Migrate the metadata DB of the Airflow configured by ``env`` (default: this process's) and import
    the project's pools (:data:`POOLS_FILE`): how every environment starts, local or deployed.

    Raises RuntimeError naming the command and the tail of its output when either step fails."""
    for args in (["db", "migrate"], ["pools", "import", str(Path(root) / POOLS_FILE)]):
        done = subprocess.run(
            [*airflow, *args],
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args[:2])} exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )


def connection_specs(
    *,
    jquants_url: str | None = None,
    api_key: str | None = None,
    plan: str = "premium",
    slack_url: str | None = None,
    slack_token: str = "xoxb-local-capture",
    slack_channel: str = "#gogooku3-alerts",
    s3_endpoint: str | None = None,
    s3_key_id: str | None = None,
    s3_secret: str | None = None,
    mlflow_url: str | None = None,
    mlflow_experiment: str | None = None,
) -> dict[str, dict]:
    """Connection id -> its fields (``conn_type``, ``host``, ``login``, ``password``, ``extra``) for the
    connections production uses, pointing at local servers: ``jquants`` (v2) at ``jquants_url``,
    ``slack_alerts`` at a Slack capture, ``s3_lake`` at an S3 server, ``mlflow`` at an MLflow server
    (``http://host:port``); each only when its URL is given."""
    conns: dict[str, dict] = {}
    if jquants_url is not None:
        conns["jquants"] = {
            "conn_type": "jquants",
            "host": jquants_url,
            "password": api_key or "",
            "extra": {"api_version": "v2", "plan": plan},
        }
    if slack_url is not None:
        conns["slack_alerts"] = {
            "conn_type": "gogooku3_slack",
            "password": slack_token,
            "extra": {"channel": slack_channel, "base_url": slack_url},
        }
    if s3_endpoint is not None:
        conns["s3_lake"] = {
            "conn_type": "gogooku3_s3",
            "login": s3_key_id or "",
            "password": s3_secret or "",
            "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
        }
    if mlflow_url is not None:
        scheme, _, hostport = mlflow_url.partition("://")
        host, _, port = hostport.rstrip("/").partition(":")
        conns["mlflow"] = {
            "conn_type": "gogooku3_mlflow",
            "schema": scheme,
            "host": host,
            **({"port": int(port)} if port else {}),
            "extra": {"experiment": mlflow_experiment} if mlflow_experiment else {},
        }
    return conns


def local_connections(**specs: Any) -> dict[str, str]:
    """:func:`connection_specs` as ``AIRFLOW_CONN_<ID>`` JSON variables."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
        for conn_id, conn in connection_specs(**specs).items()
    }


def shell_lines(env: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``unset`` lines for the variables of ``current`` that must not leak, then ``export`` lines."""
    unset = [
        f"unset {name}" for name in sorted(current) if name.startswith(ISOLATED_PREFIXES) and name not in env
    ]
    return unset + [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def main(argv: list[str] | None = None) -> None:
    from gogooku3.devtools.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    from gogooku3.emulator.config import DEFAULT_API_KEY

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", help="start a fresh environment with this Airflow home (created)")
    ap.add_argument("--root", default=str(REPO_ROOT), help="the checkout (default: this one)")
    ap.add_argument("--jquants-url", help="the emulator's v2 URL for the jquants connection")
    ap.add_argument("--api-key", default=DEFAULT_API_KEY, help="its API key (default: the emulator's)")
    ap.add_argument("--slack-url", help="a Slack capture's API base URL for the slack_alerts connection")
    ap.add_argument("--slack-channel", default="#gogooku3-alerts")
    ap.add_argument("--s3-endpoint", help="an S3 server for the s3_lake connection")
    ap.add_argument("--s3-key-id", default=ACCESS_KEY_ID)
    ap.add_argument("--s3-secret", default=SECRET_ACCESS_KEY)
    ap.add_argument("--mlflow-url", help="an MLflow server (http://host:port) for the mlflow connection")
    ap.add_argument("--connections-json", help="write the connections here for `airflow connections import`")
    ap.add_argument(
        "--init-db",
        action="store_true",
        help="migrate the current environment's metadata DB, import the pools",
    )
    args = ap.parse_args(argv)
    if args.init_db:
        try:
            init_metadata_db(root=args.root)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        return
    specs = {
        "jquants_url": args.jquants_url,
        "api_key": args.api_key,
        "slack_url": args.slack_url,
        "slack_channel": args.slack_channel,
        "s3_endpoint": args.s3_endpoint,
        "s3_key_id": args.s3_key_id,
        "s3_secret": args.s3_secret,
        "mlflow_url": args.mlflow_url,
    }
    if args.connections_json:
        doc = {cid: {**c, "extra": json.dumps(c["extra"])} for cid, c in connection_specs(**specs).items()}
        Path(args.connections_json).write_text(json.dumps(doc, indent=2) + "\n")
        return
    env: dict[str, str] = {}
    if args.home:
        Path(args.home).mkdir(parents=True, exist_ok=True)
        env = local_airflow_env(args.home, args.root)
    env |= local_connections(**specs)
    print("\n".join(shell_lines(env, os.environ if args.home else {})))


if __name__ == "__main__":
    main()
