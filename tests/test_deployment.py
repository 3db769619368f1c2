"""The deployment's init job (gogooku3.deployment): the production secrets check and the admin
password file. The job's other steps run against the real stack in tests/test_deploy.py."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from gogooku3.config import ConfigError
from gogooku3.deployment import (
    check_secrets,
    parse_env_file,
    secret_names,
    unsafe_secrets,
    write_passwords_file,
)
from gogooku3.devtools.deploy_stack import PausedDagError, StackError, backfill

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / ".env.example").read_text()


def _own_secrets() -> dict[str, str]:
    example = parse_env_file(EXAMPLE)
    return example | {k: f"own-{k.lower()}-value" for k in secret_names(example) if example[k]}


def test_production_refuses_every_example_secret_naming_it_never_its_value() -> None:
    example = parse_env_file(EXAMPLE)
    env = _own_secrets() | {"AIRFLOW_JWT_SECRET": example["AIRFLOW_JWT_SECRET"], "POSTGRES_PASSWORD": ""}
    with pytest.raises(ConfigError) as err:
        check_secrets(env, EXAMPLE)
    message = str(err.value)
    assert "AIRFLOW_JWT_SECRET is still the example value" in message
    assert "POSTGRES_PASSWORD is not set" in message
    assert example["AIRFLOW_JWT_SECRET"] not in message
    assert unsafe_secrets(_own_secrets(), example) == []
    check_secrets(_own_secrets(), EXAMPLE)  # every secret its own: starts


def test_development_mode_starts_with_the_examples_and_says_so(caplog) -> None:
    env = parse_env_file(EXAMPLE) | {"GOGOOKU3_DEPLOY_MODE": "development"}
    with caplog.at_level(logging.WARNING, logger="gogooku3.deployment"):
        check_secrets(env, EXAMPLE)
    assert "AIRFLOW_FERNET_KEY is still the example value" in caplog.text
    with pytest.raises(ConfigError, match="GOGOOKU3_DEPLOY_MODE='staging'"):
        check_secrets(env | {"GOGOOKU3_DEPLOY_MODE": "staging"}, EXAMPLE)


def test_optional_secrets_left_empty_are_fine_but_not_the_examples_values() -> None:
    example = {"GOGOOKU3_SLACK_TOKEN": "", "JQUANTS_API_KEY": "example-key"}
    assert unsafe_secrets({"GOGOOKU3_SLACK_TOKEN": ""}, example) == ["JQUANTS_API_KEY is not set"]


def test_the_admin_password_file_is_what_the_auth_manager_reads(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "passwords.json"
    write_passwords_file(path, "s3cret-admin", uid=os.getuid())
    assert json.loads(path.read_text()) == {"admin": "s3cret-admin"}
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    with pytest.raises(ConfigError, match="no account without a password"):
        write_passwords_file(path, "", uid=os.getuid())
    assert json.loads(path.read_text()) == {"admin": "s3cret-admin"}  # untouched by the refusal


def _fake_airflow(paused: bool, calls: list[tuple[str, ...]]):
    def airflow(*args: str) -> str:
        calls.append(args)
        if args[:2] == ("dags", "list"):  # as the CLI prints it: a log line, then the JSON
            return f'WARNING - a log line\n[{{"dag_id": "jquants_daily", "is_paused": "{paused}"}}]\n'
        return "ok\n"

    return airflow


def test_backfill_reads_its_bounds_as_jst_days_and_refuses_a_paused_dag_unless_told() -> None:
    calls: list[tuple[str, ...]] = []
    with pytest.raises(PausedDagError, match="jquants_daily is paused"):
        backfill(_fake_airflow(True, calls), "jquants_daily", "2024-03-29", "2024-04-01")
    assert [c[0] for c in calls] == ["dags"]  # nothing created, nothing unpaused
    calls.clear()
    backfill(
        _fake_airflow(True, calls), "jquants_daily", "2024-03-29", "2024-04-01", max_active=2, unpause=True
    )
    assert calls[1:] == [
        ("dags", "unpause", "jquants_daily"),
        (
            "backfill",
            "create",
            "--dag-id",
            "jquants_daily",
            "--from-date",
            "2024-03-29T00:00:00+09:00",
            "--to-date",
            "2024-04-01T00:00:00+09:00",
            "--max-active-runs",
            "2",
        ),
    ]
    calls.clear()
    backfill(_fake_airflow(False, calls), "jquants_daily", "2024-03-29T12:00:00+09:00", "2024-04-01")
    assert calls[-1][4:8] == (
        "--from-date",
        "2024-03-29T12:00:00+09:00",
        "--to-date",
        "2024-04-01T00:00:00+09:00",
    )
    with pytest.raises(StackError, match="no DAG 'nope'"):
        backfill(_fake_airflow(False, []), "nope", "2024-03-29", "2024-04-01")
