"""The compose deployment's one-shot init job: ``python -m gogooku3.deployment init``.

docker-compose.airflow.yml runs it as ``airflow-init`` before any Airflow component starts (they wait
for it to complete successfully), so whatever it refuses, the stack refuses. In order:

1. **secrets**: in production mode (``GOGOOKU3_DEPLOY_MODE=production``, the default) every secret
   ``.env.example`` ships (a name ending in ``_KEY``, ``_SECRET``, ``_PASSWORD`` or ``_TOKEN``) must
   be set and differ from the example's value; any that is not is named (never its value) and the
   job fails. ``development`` only warns.
2. ``airflow db migrate`` and the project's pools (include/airflow/pools.json).
3. the ``admin`` account's password (SimpleAuthManager's passwords file) from
   ``AIRFLOW_ADMIN_PASSWORD``: no account without a password, none generated into a log.
4. the S3 buckets (``GOGOOKU3_BUCKETS``) and the MLflow database (``GOGOOKU3_MLFLOW_DATABASE``), each
   created only when missing.

Each step is idempotent: a restart of the stack runs the job again and changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gogooku3.config import ConfigError
from gogooku3.devtools.airflow_env import init_metadata_db
from gogooku3.redaction import library_logger

log = library_logger(__name__)

SECRET_SUFFIXES = ("_KEY", "_SECRET", "_PASSWORD", "_TOKEN")
MODES = ("production", "development")
REPO = Path(__file__).resolve().parents[1]


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a docker-compose ``.env`` file (comments and blanks skipped; one level
    of matching quotes removed)."""
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def secret_names(example: Mapping[str, str]) -> list[str]:
    return sorted(k for k in example if k.endswith(SECRET_SUFFIXES))


def unsafe_secrets(env: Mapping[str, str], example: Mapping[str, str]) -> list[str]:
    """What is wrong with the deployment's secrets, one line per secret (names only, never values):
    unset, or still the value ``.env.example`` ships. Secrets the example leaves empty (optional
    ones, such as the Slack token) are checked only for being the example's value."""
    problems = []
    for name in secret_names(example):
        value = env.get(name, "")
        if not value and example[name]:
            problems.append(f"{name} is not set")
        elif value and value == example[name]:
            problems.append(f"{name} is still the example value from .env.example")
    return problems


def check_secrets(env: Mapping[str, str], example_text: str) -> None:
    mode = env.get("GOGOOKU3_DEPLOY_MODE", "production") or "production"
    if mode not in MODES:
        raise ConfigError(f"GOGOOKU3_DEPLOY_MODE={mode!r}: expected one of {', '.join(MODES)}")
    problems = unsafe_secrets(env, parse_env_file(example_text))
    if not problems:
        log.info("secrets: every secret of .env.example is set to a value of its own")
        return
    if mode == "production":
        raise ConfigError(
            "refusing to start in production mode: "
            + "; ".join(problems)
            + " (set them in .env, or GOGOOKU3_DEPLOY_MODE=development for a local trial)"
        )
    log.warning("development mode, starting anyway: %s", "; ".join(problems))


def write_passwords_file(path: Path, password: str, uid: int) -> None:
    """SimpleAuthManager's passwords file with the one ``admin`` account, readable by ``uid`` only
    (group 0, as every Airflow container runs); replaced atomically."""
    if not password:
        raise ConfigError("AIRFLOW_ADMIN_PASSWORD is not set: no account without a password")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"admin": password}) + "\n")
    os.chmod(tmp, 0o640)
    if os.geteuid() == 0:
        os.chown(tmp, uid, 0)
    os.replace(tmp, path)


def ensure_buckets(names: list[str]) -> list[str]:
    """Create each bucket that is missing on the S3 server the environment names; returns the new ones."""
    from botocore.exceptions import ClientError

    from gogooku3.config import S3Settings
    from gogooku3.lake.s3 import make_s3_client

    client = make_s3_client(S3Settings.from_env())
    created = []
    for name in names:
        try:
            client.head_bucket(Bucket=name)
        except ClientError:
            client.create_bucket(Bucket=name)
            created.append(name)
    return created


def ensure_database(sqlalchemy_url: str, name: str) -> bool:
    """Create database ``name`` on the server of Airflow's metadata DB when missing (MLflow's store)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlalchemy_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        engine.dispose()


def init(env: Mapping[str, str]) -> None:
    example = Path(env.get("GOGOOKU3_ENV_EXAMPLE", str(REPO / ".env.example")))
    check_secrets(env, example.read_text())
    log.info("airflow db migrate")
    init_metadata_db(env, airflow=["airflow"], root=REPO)
    passwords = env.get(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "/opt/airflow/auth/passwords.json"
    )
    write_passwords_file(
        Path(passwords), env.get("AIRFLOW_ADMIN_PASSWORD", ""), int(env.get("AIRFLOW_UID", "50000"))
    )
    log.info("admin password written to %s", passwords)
    buckets = [b.strip() for b in env.get("GOGOOKU3_BUCKETS", "").split(",") if b.strip()]
    if buckets:
        log.info("buckets created: %s (of %s)", ensure_buckets(buckets) or "none", ", ".join(buckets))
    database = env.get("GOGOOKU3_MLFLOW_DATABASE", "")
    if database:
        created = ensure_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], database)
        log.info("database %s %s", database, "created" if created else "exists")
    log.info("init done")


def main(argv: list[str] | None = None) -> int:
    import logging

    args = sys.argv[1:] if argv is None else argv
    if args != ["init"]:
        print("usage: python -m gogooku3.deployment init", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s deployment: %(message)s")
    logging.getLogger("gogooku3").setLevel(logging.INFO)
    try:
        init(os.environ)
    except (ConfigError, RuntimeError) as exc:
        print(f"airflow-init: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
