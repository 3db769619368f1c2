"""Hooks: the project's four outside systems, each behind an Airflow connection, and the settings a task
runs with.

Each hook parses its connection into the library's typed settings (:mod:`gogooku3.config`), laid
over what the environment says (``GOGOOKU3_*``, ``JQUANTS_*``, ``AWS_*``): a connection that is not
defined leaves the environment's values in place, so the same DAGs run with connections (production,
``make airflow``) or with plain environment variables. The connection forms in the UI are described
once, in :mod:`gogooku3.airflow_provider` (the provider metadata Airflow reads without importing
these classes); ``get_ui_field_behaviour`` answers from the same table.

=========================  ================  ==================  ====================================
hook                       connection id     type                what it yields
=========================  ================  ==================  ====================================
:class:`JQuantsHook`       ``jquants``       ``jquants``         :class:`~gogooku3.config.JQuantsSettings`
:class:`S3LakeHook`        ``s3_lake``       ``gogooku3_s3``     :class:`~gogooku3.config.S3Settings`,
                                                                 the lake URI
:class:`SlackAlertsHook`   ``slack_alerts``  ``gogooku3_slack``  :class:`~gogooku3.config.SlackSettings`,
                                                                 the Slack provider's ``WebClient``
:class:`MlflowHook`        ``mlflow``        ``gogooku3_mlflow`` :class:`~gogooku3.config.MlflowSettings`
=========================  ================  ==================  ====================================

Connections, e.g. as ``AIRFLOW_CONN_<ID>`` JSON (the type is informational: any type parses)::

    jquants       {"conn_type": "jquants", "host": "https://api.jquants.com/v2",
                   "password": "<API key (v2) or account password (v1)>", "login": "<e-mail, v1 only>",
                   "extra": {"api_version": "v2", "plan": "premium", "api_key": "<optional; wins for v2>",
                             "refresh_token": "<optional, v1>", "rate_per_minute": 480,
                             "concurrency": 8, "timeout_s": 30, "max_retries": 6, "pacer_dir": "/shared/pacer",
                             "pacer_url": "<optional redis://host:6379/1: one schedule for every host>"}}
    slack_alerts  {"conn_type": "gogooku3_slack", "password": "xoxb-<bot token>",
                   "extra": {"channel": "#alerts", "base_url": "<optional, e.g. a capture server>"}}
    s3_lake       {"conn_type": "gogooku3_s3", "login": "<access key id>", "password": "<secret key>",
                   "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1",
                             "lake_uri": "<optional s3://bucket/prefix>"}}
    mlflow        {"conn_type": "gogooku3_mlflow", "host": "mlflow", "port": 5000, "schema": "http",
                   "login": "<optional>", "password": "<optional>", "extra": {"experiment": "gogooku3-walk-forward"}}

A malformed value raises :class:`~gogooku3.config.ConfigError` naming the connection and field.
Settings for a task come from :func:`task_settings`: a task that only touches the lake does not
need J-Quants credentials, and every secret is registered with Airflow's task-log masker.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cached_property
from typing import Any, Protocol

from airflow.providers.slack.hooks.slack import SlackHook
from airflow.sdk import BaseHook

from gogooku3.airflow_provider import field_behaviour
from gogooku3.config import (
    DEFAULT_JQUANTS_BASE_URL,
    PLAN_RATE_PER_MINUTE,
    ConfigError,
    JQuantsSettings,
    MlflowSettings,
    S3Settings,
    Secret,
    Settings,
    SlackSettings,
    pacer_url,
)


class ConnectionLike(Protocol):
    """The fields of an Airflow connection the hooks read."""

    conn_id: str
    conn_type: str | None
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
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


# ------------------------------------------------------------------------------ parsing helpers


def _extra(conn: ConnectionLike) -> dict[str, Any]:
    """The connection's extra as a dict, with the UI form's fields (stored by older UIs as
    ``extra__<conn_type>__<field>``) under their plain names."""
    try:
        extra = conn.extra_dejson
    except Exception as exc:  # malformed extra JSON
        raise ConfigError(f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"connection {conn.conn_id!r}: extra must be a JSON object")
    prefix = f"extra__{conn.conn_type}__" if conn.conn_type else None
    plain = {k: v for k, v in extra.items() if not (prefix and k.startswith(prefix))}
    if prefix:
        for key, value in extra.items():
            if key.startswith(prefix):
                plain.setdefault(key[len(prefix) :], value)
    return plain


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


def _http_url(conn: ConnectionLike, field: str, value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"connection {conn.conn_id!r}: {field}={value!r} is not an http(s) URL")
    return value


# ------------------------------------------------------------------------------ J-Quants


class JQuantsHook(BaseHook):
    """The J-Quants API (or the emulator): base URL, credentials for API v2 or v1, plan and pacing.

    :param jquants_conn_id: the connection to read (default ``jquants``); undefined means the
        environment's ``JQUANTS_*`` settings alone.
    """

    conn_name_attr = "jquants_conn_id"
    default_conn_name = "jquants"
    conn_type = "jquants"
    hook_name = "J-Quants API (gogooku3)"

    def __init__(self, jquants_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.jquants_conn_id = jquants_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return field_behaviour(cls.conn_type)

    def get_conn(self) -> JQuantsSettings:
        """The J-Quants settings this connection (over the environment) describes."""
        base = JQuantsSettings.from_env()
        conn = airflow_connection(self.jquants_conn_id)
        return base if conn is None else self.overlay(conn, base)

    @staticmethod
    def overlay(
        conn: ConnectionLike, base: JQuantsSettings, env: Mapping[str, str] | None = None
    ) -> JQuantsSettings:
        """``base`` (the environment's settings) with what ``conn`` specifies laid over it."""
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
                base.rate_per_minute
                if env.get("JQUANTS_RATE_PER_MINUTE")
                else float(PLAN_RATE_PER_MINUTE[plan])
            )
        base_url = _base_url(conn, extra)
        if base_url is None:
            # Switching protocol without a host means the official URL of that protocol.
            base_url = base.base_url if version == base.api_version else DEFAULT_JQUANTS_BASE_URL[version]
        else:
            _http_url(conn, "host", base_url)
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
        if _text(extra.get("pacer_url")):
            changes["pacer_url"] = pacer_url(
                _text(extra["pacer_url"]), f"connection {conn.conn_id!r}: extra.pacer_url"
            )
        return replace(base, **changes)


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


# ------------------------------------------------------------------------------ S3


class S3LakeHook(BaseHook):
    """An ``s3://`` lake: access keys (empty: the worker's own AWS identity), endpoint, region and
    optionally the lake URI itself.

    :param s3_conn_id: the connection to read (default ``s3_lake``); undefined means ``AWS_*`` and
        ``GOGOOKU3_S3_ENDPOINT_URL`` alone.
    """

    conn_name_attr = "s3_conn_id"
    default_conn_name = "s3_lake"
    conn_type = "gogooku3_s3"
    hook_name = "gogooku3 S3 lake"

    def __init__(self, s3_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.s3_conn_id = s3_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return field_behaviour(cls.conn_type)

    def get_conn(self) -> S3Settings:
        base = S3Settings.from_env()
        conn = airflow_connection(self.s3_conn_id)
        return base if conn is None else self.overlay(conn, base)

    @staticmethod
    def overlay(conn: ConnectionLike, base: S3Settings) -> S3Settings:
        """``base`` with the connection's keys (login/password), endpoint and region laid over it."""
        extra = _extra(conn)
        endpoint = _text(extra.get("endpoint_url")) or None
        if endpoint:
            _http_url(conn, "extra.endpoint_url", endpoint)
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

    @staticmethod
    def lake_uri(conn: ConnectionLike) -> str | None:
        """``extra.lake_uri`` when the connection names the lake, validated."""
        uri = _text(_extra(conn).get("lake_uri")) or None
        if uri and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", uri):
            raise ConfigError(
                f"connection {conn.conn_id!r}: extra.lake_uri={uri!r} is not a valid s3://bucket/prefix URI"
            )
        return uri


# ------------------------------------------------------------------------------ Slack


class SlackAlertsHook(SlackHook):
    """Slack for the failure alerts: the bot token and channel, sent through the Slack provider's client.

    Without a ``slack_alerts`` connection the environment's ``GOGOOKU3_SLACK_*`` settings are used;
    either way :attr:`client` is the provider's ``WebClient`` (its timeout, retry handlers and proxy
    handling), built from the resolved settings.

    :param slack_conn_id: the connection to read (default ``slack_alerts``).
    :param settings: already resolved settings to send with (the failure callback passes them).
    """

    conn_name_attr = "slack_conn_id"
    default_conn_name = "slack_alerts"
    conn_type = "gogooku3_slack"
    hook_name = "gogooku3 Slack alerts"

    def __init__(self, slack_conn_id: str = default_conn_name, settings: SlackSettings | None = None) -> None:
        from gogooku3.alerts import SLACK_TIMEOUT_S  # an alert must not hold a failing task's worker long

        super().__init__(slack_conn_id=slack_conn_id, timeout=SLACK_TIMEOUT_S)
        self._resolved = settings

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return field_behaviour(cls.conn_type)

    @property
    def settings(self) -> SlackSettings:
        if self._resolved is None:
            base = SlackSettings.from_env()
            conn = airflow_connection(self.slack_conn_id)
            self._resolved = base if conn is None else self.overlay(conn, base)
        return self._resolved

    @staticmethod
    def overlay(conn: ConnectionLike, base: SlackSettings) -> SlackSettings:
        """``base`` with the connection's token (password), channel and base URL laid over it."""
        extra = _extra(conn)
        token = _text(conn.password) or _text(extra.get("token"))
        base_url = _text(extra.get("base_url")) or None
        if base_url:
            _http_url(conn, "extra.base_url", base_url)
        changes: dict[str, Any] = {}
        if token:
            changes["token"] = Secret(token)
        if _text(extra.get("channel")):
            changes["channel"] = _text(extra["channel"])
        if base_url:
            changes["base_url"] = base_url
        return replace(base, **changes)

    @cached_property
    def client(self) -> Any:
        """The provider's ``WebClient`` for the resolved token and base URL."""
        from airflow.sdk import Connection
        from slack_sdk import WebClient

        slack = self.settings
        base_url = slack.base_url or WebClient.BASE_URL
        conn = Connection(
            conn_id=self.slack_conn_id,
            conn_type=self.conn_type,
            password=slack.token.get(),
            # slack_sdk joins method names onto base_url, which therefore must end with "/".
            extra=json.dumps({"base_url": base_url if base_url.endswith("/") else base_url + "/"}),
        )
        return WebClient(**self._get_conn_params(conn))


# ------------------------------------------------------------------------------ MLflow


class MlflowHook(BaseHook):
    """The MLflow tracking server retrains record into: ``http(s)://host:port`` from the connection's
    scheme (``schema``, default http), host and port; its user and password (basic auth) when the
    server has them; the experiment in the extra. Without an ``mlflow`` connection,
    ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) alone.

    :param mlflow_conn_id: the connection to read (default ``mlflow``).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow"
    conn_type = "gogooku3_mlflow"
    hook_name = "gogooku3 MLflow tracking server"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return field_behaviour(cls.conn_type)

    def get_conn(self) -> MlflowSettings:
        base = MlflowSettings.from_env()
        conn = airflow_connection(self.mlflow_conn_id)
        return base if conn is None else self.overlay(conn, base)

    @staticmethod
    def overlay(conn: ConnectionLike, base: MlflowSettings) -> MlflowSettings:
        """``base`` with the connection's server, user, password and experiment laid over it."""
        extra = _extra(conn)
        changes: dict[str, Any] = {}
        host = _text(conn.host)
        if host:
            scheme = _text(conn.schema) or "http"
            if scheme not in ("http", "https"):
                raise ConfigError(f"connection {conn.conn_id!r}: scheme {scheme!r} must be http or https")
            if "/" in host or "@" in host or ":" in host:
                raise ConfigError(
                    f"connection {conn.conn_id!r}: host must be a bare host name (port and credentials "
                    "go in their own fields)"
                )
            port = getattr(conn, "port", None)
            changes["tracking_uri"] = f"{scheme}://{host}" + (f":{int(port)}" if port else "")
        if _text(conn.login):
            changes["username"] = _text(conn.login)
        if _text(conn.password):
            changes["password"] = Secret(_text(conn.password))
        if _text(extra.get("experiment")):
            changes["experiment"] = _text(extra["experiment"])
        return replace(base, **changes)


# ------------------------------------------------------------------------------ the settings a task runs with


def resolve_settings(
    get_connection: GetConnection | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The pipeline's settings: the environment first, each defined connection laid over it.

    ``get_connection`` defaults to :func:`airflow_connection` (looked up when called).
    """
    env = os.environ if env is None else env
    get_connection = get_connection or airflow_connection
    settings = Settings.from_env(env)
    if (conn := get_connection(JQuantsHook.default_conn_name)) is not None:
        settings = replace(settings, jquants=JQuantsHook.overlay(conn, settings.jquants, env))
    if (conn := get_connection(SlackAlertsHook.default_conn_name)) is not None:
        settings = replace(settings, slack=SlackAlertsHook.overlay(conn, settings.slack))
    if (conn := get_connection(MlflowHook.default_conn_name)) is not None:
        settings = replace(settings, mlflow=MlflowHook.overlay(conn, settings.mlflow))
    if (conn := get_connection(S3LakeHook.default_conn_name)) is not None:
        settings = replace(settings, s3=S3LakeHook.overlay(conn, settings.s3))
        if lake_uri := S3LakeHook.lake_uri(conn):
            settings = replace(settings, lake_uri=lake_uri)
    return settings


def resolve_slack(
    get_connection: GetConnection | None = None, env: Mapping[str, str] | None = None
) -> SlackSettings:
    """Only the Slack settings (the failure callback's, which must work even when the J-Quants or S3
    configuration is what failed)."""
    env = os.environ if env is None else env
    get_connection = get_connection or airflow_connection
    slack = SlackSettings.from_env(env)
    if (conn := get_connection(SlackAlertsHook.default_conn_name)) is not None:
        slack = SlackAlertsHook.overlay(conn, slack)
    return slack


def secret_values(settings: Settings) -> list[Secret]:
    """Every secret in ``settings`` (to redact from alert texts and mask in task logs)."""
    j, s3 = settings.jquants, settings.s3
    return [
        s
        for s in (j.api_key, j.email, j.password, j.refresh_token, s3.access_key_id, s3.secret_access_key)
        + (settings.slack.token, settings.mlflow.password)
        if s
    ]


def mask_in_task_logs(secrets: list[Secret]) -> None:
    """Register secrets with Airflow's log masker (values from env vars are not masked otherwise)."""
    from airflow.sdk.log import mask_secret

    for s in secrets:
        mask_secret(s.get())


def task_settings(*, jquants: bool = False) -> Settings:
    """The settings a task runs with, every secret masked in its log. ``jquants=True`` for a task
    that calls the API: its credentials must then be configured. A bad setting fails the task at
    once (``AirflowFailException``: retrying cannot fix configuration)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        settings = resolve_settings()
        if jquants:
            settings.jquants.check_credentials()
    except ConfigError as exc:
        raise AirflowFailException(f"ConfigError: {exc}") from None
    mask_in_task_logs(secret_values(settings))
    return settings
