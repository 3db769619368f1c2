"""Airflow connections -> :class:`gogooku3.config.Settings`.

The library reads only typed settings; this module is where Airflow's connections meet them.
Start from ``Settings.from_env()`` (``GOGOOKU3_*``, ``JQUANTS_*``, ``AWS_*``) and overlay whatever
each connection specifies, with ``dataclasses.replace``. A connection that is not defined leaves
the environment's values in place, so the same DAGs run with connections (production, ``make
airflow``) or with plain environment variables.

Connections (e.g. as ``AIRFLOW_CONN_<ID>`` JSON)::

    jquants       {"conn_type": "http", "host": "https://api.jquants.com/v2",
                   "password": "<API key (v2) or account password (v1)>",
                   "login": "<e-mail, v1 only>",
                   "extra": {"api_version": "v2", "plan": "premium",
                             "api_key": "<optional; overrides password for v2>",
                             "refresh_token": "<optional, v1>", "rate_per_minute": 480,
                             "concurrency": 8, "pacer_dir": "/shared/pacer"}}
    slack_alerts  {"conn_type": "slack", "password": "xoxb-<bot token>",
                   "extra": {"channel": "#alerts", "base_url": "<optional, e.g. a capture server>"}}
    s3_lake       {"conn_type": "aws", "login": "<access key id>", "password": "<secret key>",
                   "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1",
                             "lake_uri": "<optional s3://bucket/prefix>"}}

A malformed value raises :class:`~gogooku3.config.ConfigError` naming the connection and field.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from gogooku3.config import (
    DEFAULT_JQUANTS_BASE_URL,
    PLAN_RATE_PER_MINUTE,
    ConfigError,
    JQuantsSettings,
    S3Settings,
    Secret,
    Settings,
    SlackSettings,
)

JQUANTS_CONN_ID = "jquants"
SLACK_CONN_ID = "slack_alerts"
S3_CONN_ID = "s3_lake"


class ConnectionLike(Protocol):
    """The fields of an Airflow connection this module reads."""

    conn_id: str
    host: str | None
    login: str | None
    password: str | None
    port: int | None
    schema: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


#: Looks a connection up by id; None when it is not defined.
GetConnection = Callable[[str], "ConnectionLike | None"]


def airflow_connection(conn_id: str) -> ConnectionLike | None:
    """Airflow's connection ``conn_id`` (secrets backends, env, metadata DB), or None if undefined.

    Only callable inside a running task or callback (the Task SDK asks the supervisor).
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def _extra(conn: ConnectionLike) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except Exception as exc:  # malformed extra JSON
        raise ConfigError(f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"connection {conn.conn_id!r}: extra must be a JSON object")
    return extra


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(conn: ConnectionLike, extra: Mapping[str, Any], key: str, *, integer: bool) -> float | None:
    if key not in extra or extra[key] in (None, ""):
        return None
    raw = extra[key]
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"connection {conn.conn_id!r}: extra.{key}={raw!r} is not {kind}") from None
    if not math.isfinite(value) or value <= 0:  # NaN passes `<= 0`; inf would switch pacing off
        raise ConfigError(f"connection {conn.conn_id!r}: extra.{key}={raw!r} must be a finite number > 0")
    return value


def _base_url(conn: ConnectionLike, extra: Mapping[str, Any]) -> str | None:
    """``extra.base_url``, else ``host`` (with scheme, or https:// + host[:port][/schema])."""
    url = _text(extra.get("base_url")) or _text(conn.host)
    if not url:
        return None
    if not re.match(r"^https?://", url):
        url = "https://" + url + (f":{conn.port}" if conn.port else "")
        if conn.schema:
            url += "/" + conn.schema.strip("/")
    return url.rstrip("/")


def jquants_from_connection(
    conn: ConnectionLike, base: JQuantsSettings, env: Mapping[str, str] | None = None
) -> JQuantsSettings:
    """Overlay the ``jquants`` connection on ``base`` (the environment's settings)."""
    env = os.environ if env is None else env
    extra = _extra(conn)
    cid = conn.conn_id
    version = (_text(extra.get("api_version")) or base.api_version).lower()
    if version not in ("v1", "v2"):
        raise ConfigError(f"connection {cid!r}: extra.api_version={version!r} must be v1 or v2")
    plan = (_text(extra.get("plan")) or base.plan).lower()
    if plan not in PLAN_RATE_PER_MINUTE:
        raise ConfigError(
            f"connection {cid!r}: extra.plan={plan!r} must be one of {', '.join(PLAN_RATE_PER_MINUTE)}"
        )

    rate = _number(conn, extra, "rate_per_minute", integer=False)
    if rate is None:
        # An explicit JQUANTS_RATE_PER_MINUTE still wins; otherwise the rate follows the plan.
        rate = (
            base.rate_per_minute if env.get("JQUANTS_RATE_PER_MINUTE") else float(PLAN_RATE_PER_MINUTE[plan])
        )

    base_url = _base_url(conn, extra)
    if base_url is None:
        # Switching protocol without a host means the official URL of that protocol.
        base_url = base.base_url if version == base.api_version else DEFAULT_JQUANTS_BASE_URL[version]
    elif not re.match(r"^https?://[^/\s]+", base_url):
        raise ConfigError(f"connection {cid!r}: host={base_url!r} is not an http(s) URL")

    password = _text(conn.password)
    api_key = _text(extra.get("api_key")) or (password if version == "v2" else "")
    changes: dict[str, Any] = {
        "api_version": version,
        "base_url": base_url,
        "plan": plan,
        "rate_per_minute": float(rate),
    }
    if api_key:
        changes["api_key"] = Secret(api_key)
    if version == "v1":
        if _text(conn.login):
            changes["email"] = Secret(_text(conn.login))
        if password:
            changes["password"] = Secret(password)
    if _text(extra.get("refresh_token")):
        changes["refresh_token"] = Secret(_text(extra["refresh_token"]))
    for key, integer in (("concurrency", True), ("timeout_s", False), ("max_retries", True)):
        value = _number(conn, extra, key, integer=integer)
        if value is not None:
            changes[key] = value
    if _text(extra.get("pacer_dir")):
        changes["pacer_dir"] = _text(extra["pacer_dir"])
    return replace(base, **changes)


def slack_from_connection(conn: ConnectionLike, base: SlackSettings) -> SlackSettings:
    """Overlay the ``slack_alerts`` connection: password = bot token, extra channel/base_url."""
    extra = _extra(conn)
    token = _text(conn.password) or _text(extra.get("token"))
    base_url = _text(extra.get("base_url")) or None
    if base_url and not re.match(r"^https?://", base_url):
        raise ConfigError(f"connection {conn.conn_id!r}: extra.base_url={base_url!r} is not an http(s) URL")
    changes: dict[str, Any] = {}
    if token:
        changes["token"] = Secret(token)
    if _text(extra.get("channel")):
        changes["channel"] = _text(extra["channel"])
    if base_url:
        changes["base_url"] = base_url
    return replace(base, **changes)


def s3_from_connection(conn: ConnectionLike, base: S3Settings) -> S3Settings:
    """Overlay the ``s3_lake`` (aws-type) connection: login/password = keys, extra endpoint_url."""
    extra = _extra(conn)
    endpoint = _text(extra.get("endpoint_url")) or None
    if endpoint and not re.match(r"^https?://", endpoint):
        raise ConfigError(
            f"connection {conn.conn_id!r}: extra.endpoint_url={endpoint!r} is not an http(s) URL"
        )
    changes: dict[str, Any] = {}
    if endpoint:
        changes["endpoint_url"] = endpoint
    region = _text(extra.get("region_name")) or _text(extra.get("region"))
    if region:
        changes["region"] = region
    key_id = _text(conn.login) or _text(extra.get("aws_access_key_id"))
    secret = _text(conn.password) or _text(extra.get("aws_secret_access_key"))
    if key_id:
        changes["access_key_id"] = Secret(key_id)
    if secret:
        changes["secret_access_key"] = Secret(secret)
    return replace(base, **changes)


def _lake_uri_from_connection(conn: ConnectionLike) -> str | None:
    uri = _text(_extra(conn).get("lake_uri")) or None
    if uri and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", uri):
        raise ConfigError(
            f"connection {conn.conn_id!r}: extra.lake_uri={uri!r} is not a valid s3://bucket/prefix URI"
        )
    return uri


def resolve_settings(
    get_connection: GetConnection | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The pipeline's settings: environment first, each defined connection overlaid on top.

    ``get_connection`` defaults to :func:`airflow_connection` (looked up when called).
    """
    env = os.environ if env is None else env
    get_connection = get_connection or airflow_connection
    settings = Settings.from_env(env)
    if (conn := get_connection(JQUANTS_CONN_ID)) is not None:
        settings = replace(settings, jquants=jquants_from_connection(conn, settings.jquants, env))
    if (conn := get_connection(SLACK_CONN_ID)) is not None:
        settings = replace(settings, slack=slack_from_connection(conn, settings.slack))
    if (conn := get_connection(S3_CONN_ID)) is not None:
        settings = replace(settings, s3=s3_from_connection(conn, settings.s3))
        if lake_uri := _lake_uri_from_connection(conn):
            settings = replace(settings, lake_uri=lake_uri)
    return settings


def resolve_slack(
    get_connection: GetConnection | None = None,
    env: Mapping[str, str] | None = None,
) -> SlackSettings:
    """Only the Slack settings (used by the failure callback, which must work even when the
    J-Quants or S3 configuration is what failed)."""
    env = os.environ if env is None else env
    get_connection = get_connection or airflow_connection
    slack = SlackSettings.from_env(env)
    if (conn := get_connection(SLACK_CONN_ID)) is not None:
        slack = slack_from_connection(conn, slack)
    return slack


def secret_values(settings: Settings) -> list[Secret]:
    """Every secret in ``settings`` (to redact from alert texts and mask in task logs)."""
    j, s3 = settings.jquants, settings.s3
    return [
        s
        for s in (j.api_key, j.email, j.password, j.refresh_token, s3.access_key_id, s3.secret_access_key)
        + (settings.slack.token,)
        if s
    ]


def mask_in_task_logs(secrets: list[Secret]) -> None:
    """Register secrets with Airflow's log masker (values from env vars are not masked otherwise)."""
    from airflow.sdk.log import mask_secret

    for s in secrets:
        mask_secret(s.get())
