"""The project's Airflow provider metadata: its connection types and how the UI's connection form shows
them, as plain data (no Airflow import: this is what the ``apache_airflow_provider`` entry point in
pyproject.toml hands to Airflow's providers manager).

Airflow (3.2 and later) reads a connection form's labels, placeholders and extra fields from this
metadata without importing the hook; the hooks in ``dags/gogooku3_airflow/hooks.py`` answer
``get_ui_field_behaviour`` from the same table, so the two cannot drift apart.

=================  ============================================  =========================================
connection type    hook (default connection id)                  what the form asks for
=================  ============================================  =========================================
``jquants``        ``JQuantsHook`` (``jquants``)                 base URL, API key (v2) or e-mail/password
                                                                 (v1), plan, rate, pacer directory
``gogooku3_s3``    ``S3LakeHook`` (``s3_lake``)                  access key id, secret key, endpoint,
                                                                 region, lake URI
``gogooku3_slack`` ``SlackAlertsHook`` (``slack_alerts``)        bot token, channel, base URL, timeout
=================  ============================================  =========================================
"""

from __future__ import annotations

import json
from typing import Any

PACKAGE_NAME = "gogooku3"
HOOKS_MODULE = "gogooku3_airflow.hooks"


def _field(label: str, kind: str | list[str], description: str, **schema: Any) -> dict[str, Any]:
    types = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    return {"label": label, "schema": {"type": types, **schema}, "description": description}


#: connection type -> its provider-info entry (kebab-case keys, as Airflow reads them).
CONNECTION_TYPES: dict[str, dict[str, Any]] = {
    "jquants": {
        "connection-type": "jquants",
        "hook-class-name": f"{HOOKS_MODULE}.JQuantsHook",
        "hook-name": "J-Quants API (gogooku3)",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"host": "Base URL", "login": "E-mail (API v1 only)", "password": "API key"},
            "placeholders": {
                "host": "https://api.jquants.com/v2",
                "login": "v1 only: the account's e-mail address",
                "password": "v2: the API key (v1: the account password)",
                "extra": json.dumps({"api_version": "v2", "plan": "standard"}),
            },
        },
        "conn-fields": {
            "api_version": _field(
                "API version", "string", "v2 (x-api-key, default) or v1 (tokens)", enum=["v1", "v2"]
            ),
            "plan": _field(
                "Plan",
                "string",
                "free, light, standard or premium: the plan's request rate limit",
                enum=["free", "light", "standard", "premium"],
            ),
            "rate_per_minute": _field(
                "Requests per minute",
                "number",
                "Optional. Overrides the plan's rate (e.g. a share of it per host).",
            ),
            "pacer_dir": _field(
                "Pacer directory", "string", "Optional. Shared directory of the cross-process rate pacer."
            ),
            "pacer_url": _field(
                "Pacer Redis URL",
                "string",
                "Optional. redis://host:6379/N shared by every worker host, so the plan rate holds "
                "across hosts (wins over the pacer directory).",
            ),
        },
    },
    "gogooku3_s3": {
        "connection-type": "gogooku3_s3",
        "hook-class-name": f"{HOOKS_MODULE}.S3LakeHook",
        "hook-name": "gogooku3 S3 lake",
        "ui-field-behaviour": {
            "hidden-fields": ["host", "schema", "port"],
            "relabeling": {"login": "Access key ID", "password": "Secret access key"},
            "placeholders": {
                "login": "leave empty to use the worker's own AWS identity",
                "extra": json.dumps({"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}),
            },
        },
        "conn-fields": {
            "endpoint_url": _field(
                "Endpoint URL", "string", "Optional. An S3-compatible server (MinIO, ...)."
            ),
            "region_name": _field("Region", "string", "Optional. Default us-east-1."),
            "lake_uri": _field(
                "Lake URI", "string", "Optional. s3://bucket/prefix; overrides GOGOOKU3_LAKE_URI."
            ),
        },
    },
    "gogooku3_slack": {
        "connection-type": "gogooku3_slack",
        "hook-class-name": f"{HOOKS_MODULE}.SlackAlertsHook",
        "hook-name": "gogooku3 Slack alerts",
        "ui-field-behaviour": {
            "hidden-fields": ["login", "host", "schema", "port", "extra"],
            "relabeling": {"password": "Bot token"},
            "placeholders": {"password": "xoxb-...", "channel": "#gogooku3-alerts"},
        },
        "conn-fields": {
            "channel": _field("Channel", "string", "Where failure alerts go (default #gogooku3-alerts)."),
            "base_url": _field(
                "Base URL", "string", "Optional. The Slack API base URL (a capture server in tests)."
            ),
            "timeout": _field("Timeout", "integer", "Optional. Seconds to wait for Slack."),
        },
    },
    "gogooku3_mlflow": {
        "connection-type": "gogooku3_mlflow",
        "hook-class-name": f"{HOOKS_MODULE}.MlflowHook",
        "hook-name": "gogooku3 MLflow tracking server",
        "ui-field-behaviour": {
            "hidden-fields": ["extra"],
            "relabeling": {"schema": "Scheme (http or https)", "login": "User", "password": "Password"},
            "placeholders": {
                "host": "mlflow",
                "port": "5000",
                "schema": "http",
                "login": "leave empty without auth",
            },
        },
        "conn-fields": {
            "experiment": _field(
                "Experiment",
                "string",
                "Optional. The experiment retrains record into (default gogooku3-walk-forward).",
            ),
        },
    },
}


def field_behaviour(conn_type: str) -> dict[str, Any]:
    """The connection form's behaviour in ``get_ui_field_behaviour``'s (Python-style) keys."""
    behaviour = CONNECTION_TYPES[conn_type]["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour["hidden-fields"]),
        "relabeling": dict(behaviour["relabeling"]),
        "placeholders": dict(behaviour["placeholders"]),
    }


def get_provider_info() -> dict[str, Any]:
    """The ``apache_airflow_provider`` entry point: what Airflow's providers manager reads."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "gogooku3",
        "description": "gogooku3's connections: the J-Quants API, the S3 lake and Slack alerts.",
        "connection-types": list(CONNECTION_TYPES.values()),
    }
