"""The hooks: each names its connection the way Airflow's own hooks do, the UI's connection form comes
from one table (what the API server serves is checked against a real one), and a connection edited in
that form (its fields stored as ``extra__<type>__<field>``) parses like one written as JSON."""

from __future__ import annotations

import json
import urllib.request

import pytest
from airflow.sdk import Connection
from airflow_harness import api_server
from gogooku3_airflow.hooks import (
    JQuantsHook,
    MlflowHook,
    S3LakeHook,
    SlackAlertsHook,
    resolve_settings,
    secret_values,
)

from gogooku3.airflow_provider import CONNECTION_TYPES, field_behaviour, get_provider_info
from gogooku3.config import ConfigError, JQuantsSettings, MlflowSettings, Secret, SlackSettings

HOOKS = (JQuantsHook, S3LakeHook, SlackAlertsHook, MlflowHook)


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.__name__)
def test_each_hook_names_its_connection_and_its_form(hook) -> None:
    entry = CONNECTION_TYPES[hook.conn_type]
    assert entry["hook-class-name"] == f"gogooku3_airflow.hooks.{hook.__name__}"
    assert entry["hook-name"] == hook.hook_name
    assert getattr(hook(), hook.conn_name_attr) == hook.default_conn_name
    assert hook.get_ui_field_behaviour() == field_behaviour(hook.conn_type)
    assert {t["connection-type"] for t in get_provider_info()["connection-types"]} == set(CONNECTION_TYPES)


def test_the_jquants_password_is_labelled_as_the_api_key() -> None:
    assert JQuantsHook.get_ui_field_behaviour()["relabeling"]["password"] == "API key"
    assert S3LakeHook.get_ui_field_behaviour()["relabeling"] == {
        "login": "Access key ID",
        "password": "Secret access key",
    }


def test_a_connection_saved_by_the_form_parses_like_json_extras() -> None:
    form = Connection(
        conn_id="jquants",
        conn_type="jquants",
        host="https://api.example.com/v2",
        password="form-key-0001",
        extra=json.dumps({"extra__jquants__plan": "light", "extra__jquants__rate_per_minute": "30"}),
    )
    j = JQuantsHook.overlay(form, JQuantsSettings(), {})
    assert (j.plan, j.rate_per_minute, j.api_key.get()) == ("light", 30.0, "form-key-0001")
    slack = Connection(
        conn_id="slack_alerts",
        conn_type="gogooku3_slack",
        password="xoxb-form-token",
        extra=json.dumps({"extra__gogooku3_slack__channel": "#ops"}),
    )
    assert SlackAlertsHook.overlay(slack, SlackSettings()).channel == "#ops"
    s3 = Connection(
        conn_id="s3_lake",
        conn_type="gogooku3_s3",
        login="AKIAFORM",
        password="form-secret",
        extra=json.dumps({"extra__gogooku3_s3__endpoint_url": "http://127.0.0.1:9000"}),
    )
    settings = resolve_settings(lambda cid: {"s3_lake": s3}.get(cid), {})
    assert (
        settings.s3.endpoint_url == "http://127.0.0.1:9000" and settings.s3.access_key_id.get() == "AKIAFORM"
    )


def test_the_mlflow_connection_becomes_a_tracking_uri_without_credentials_in_it() -> None:
    conn = Connection(
        conn_id="mlflow",
        conn_type="gogooku3_mlflow",
        host="mlflow.internal",
        port=5000,
        login="retrain",
        password="mlflow-pass-0001",
        extra=json.dumps({"experiment": "weekly"}),
    )
    m = MlflowHook.overlay(conn, MlflowSettings(tracking_uri="http://elsewhere:1"))
    assert (m.tracking_uri, m.username, m.password.get(), m.experiment) == (
        "http://mlflow.internal:5000",
        "retrain",
        "mlflow-pass-0001",
        "weekly",
    )
    assert "mlflow-pass-0001" not in repr(m)
    settings = resolve_settings(lambda cid: conn if cid == "mlflow" else None, {})
    assert settings.mlflow == m and any(s.get() == "mlflow-pass-0001" for s in secret_values(settings))
    env = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "GOGOOKU3_MLFLOW_EXPERIMENT": "e",
        "GOGOOKU3_MLFLOW_MODEL": "m",
    }
    alone = resolve_settings(lambda cid: None, env).mlflow
    assert (alone.tracking_uri, alone.experiment, alone.model_name) == ("http://127.0.0.1:5000", "e", "m")
    # The environment alone, and what is refused.
    assert resolve_settings(
        lambda cid: None, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    ).mlflow.tracking_uri == ("http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match="must be http or https"):
        MlflowHook.overlay(
            Connection(conn_id="mlflow", conn_type="x", host="h", schema="file"), MlflowSettings()
        )
    with pytest.raises(ConfigError, match="bare host name"):
        MlflowHook.overlay(Connection(conn_id="mlflow", conn_type="x", host="u:p@h"), MlflowSettings())
    with pytest.raises(ConfigError, match=r"//\*\*\*@h"):
        MlflowSettings.from_env({"MLFLOW_TRACKING_URI": "http://u:secret@h:5000"})
    with pytest.raises(ConfigError, match="refuses file stores"):
        MlflowSettings.from_env({"MLFLOW_TRACKING_URI": "./mlruns"})


def test_the_slack_client_is_the_providers_with_the_resolved_token_and_url() -> None:
    from slack_sdk import WebClient

    hook = SlackAlertsHook(
        settings=SlackSettings(
            token=Secret("xoxb-t-1234"),
            base_url="http://127.0.0.1:9/api",
        )
    )
    client = hook.client
    assert isinstance(client, WebClient)
    assert client.token == "xoxb-t-1234" and client.base_url == "http://127.0.0.1:9/api/"
    assert client.timeout == 10


@pytest.mark.integration
def test_the_api_server_serves_the_forms_to_the_ui(tmp_path, airflow_env_factory) -> None:
    env = airflow_env_factory(tmp_path / "airflow_home") | {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    with api_server(env, tmp_path / "api-server.log", apps="core") as url:
        with urllib.request.urlopen(f"{url}/ui/connections/hook_meta", timeout=60) as answer:
            meta = {m["connection_type"]: m for m in json.load(answer)}
    jquants = meta["jquants"]
    assert jquants["hook_name"] == "J-Quants API (gogooku3)"
    assert jquants["standard_fields"]["password"]["title"] == "API key"
    assert jquants["standard_fields"]["host"]["title"] == "Base URL"
    assert jquants["standard_fields"]["port"]["hidden"] is True
    assert "plan" in json.dumps(jquants["extra_fields"])
    assert meta["gogooku3_s3"]["standard_fields"]["login"]["title"] == "Access key ID"
    assert "channel" in json.dumps(meta["gogooku3_slack"]["extra_fields"])
