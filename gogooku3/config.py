"""Typed settings: the one place configuration is read.

Settings come from the environment (``GOGOOKU3_*`` for the pipeline, ``JQUANTS_*`` for the API as
the official client names them, ``RMM_POOL_SIZE`` for the GPU pool). Airflow connections
(``jquants``, ``slack_alerts``, ``s3_lake``) are resolved by the Airflow glue in ``dags/`` into the
same dataclasses, so the library never imports Airflow. A missing or malformed setting raises
:class:`ConfigError` naming the variable at start, never halfway through a run.

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value, so a settings
object can be logged safely.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gogooku3.redaction import ScrubbedMessage, register_secret

#: Requests per minute of each J-Quants plan.
PLAN_RATE_PER_MINUTE: dict[str, int] = {"free": 5, "light": 60, "standard": 120, "premium": 500}

DEFAULT_JQUANTS_BASE_URL = {"v1": "https://api.jquants.com/v1", "v2": "https://api.jquants.com/v2"}


class ConfigError(ScrubbedMessage, ValueError):
    """A setting is missing or malformed; the message names the variable (never a secret's value)."""


class Secret:
    """A string that never prints itself (logs, reprs, rendered templates).

    Creating one registers its value with :mod:`gogooku3.redaction`, so the library scrubs it by value
    from every message and log line of this process, wherever else it turns up.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float | None, *, minimum: float = 0.0) -> float | None:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        # float() reads "nan" and "inf"; either would switch the pacer or a timeout off silently.
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value <= minimum:
        raise ConfigError(f"{name}={value} must be > {minimum}")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str, *, name: str = "size") -> int:
    """Parse ``70GB``, ``70GiB``, ``68719476736`` into bytes (``ki``/``mi``/``gi`` are powers of 2)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{name}={text!r} is not a size (e.g. 70GB, 64GiB, 1000000)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    letter = unit[:1] if unit[:1] in ("k", "m", "g", "t") else ""
    if letter and "i" in unit:
        factor = 1024 ** ("kmgt".index(letter) + 1)
    else:
        factor = _UNITS[letter]
    return int(number * factor)


def parse_user(text: str, *, name: str) -> tuple[int, int]:
    """``uid:gid`` (or ``uid``, meaning ``uid:uid``) as numbers; names are refused (a container's
    /etc/passwd is not the host's, so only numbers mean the same on both sides), and so is uid 0:
    task containers never run as root."""
    m = re.fullmatch(r"\s*([0-9]+)(?::([0-9]+))?\s*", text)
    if not m:
        raise ConfigError(f"{name}={text!r} must be a numeric uid:gid (e.g. 10001:10001)")
    uid = int(m.group(1))
    gid = int(m.group(2)) if m.group(2) is not None else uid
    if uid == 0:
        raise ConfigError(f"{name}={text!r}: task containers never run as root (uid 0)")
    return uid, gid


@dataclass(frozen=True)
class JQuantsSettings:
    """How to reach J-Quants (or the emulator): protocol, credentials, pacing."""

    api_version: Literal["v1", "v2"] = "v2"
    base_url: str = DEFAULT_JQUANTS_BASE_URL["v2"]
    api_key: Secret = field(default_factory=lambda: Secret(""))
    email: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))
    refresh_token: Secret = field(default_factory=lambda: Secret(""))
    plan: str = "standard"
    #: Requests per minute the pacer allows; defaults to the plan's limit.
    rate_per_minute: float = PLAN_RATE_PER_MINUTE["standard"]
    concurrency: int = 8
    timeout_s: float = 30.0
    max_retries: int = 6
    #: Directory for the cross-process rate-limit state shared by parallel DAG runs (one host).
    pacer_dir: str = ""
    #: ``redis://host:6379/N`` (or ``rediss://``, ``unix://``): the rate-limit state in Redis, shared
    #: by every worker host; wins over ``pacer_dir`` (see :mod:`gogooku3.jquants.pacer`).
    pacer_url: str = ""

    def check_credentials(self) -> None:
        """Fail fast naming the missing variable for the chosen protocol."""
        if self.api_version == "v2" and not self.api_key:
            raise ConfigError("JQUANTS_API_KEY is not set (needed for JQUANTS_API_VERSION=v2)")
        if self.api_version == "v1" and not self.refresh_token and not (self.email and self.password):
            raise ConfigError(
                "JQUANTS_API_VERSION=v1 needs JQUANTS_REFRESH_TOKEN or both "
                "JQUANTS_AUTH_EMAIL and JQUANTS_AUTH_PASSWORD"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JQuantsSettings:
        env = os.environ if env is None else env
        version = (_get(env, "JQUANTS_API_VERSION", "v2") or "v2").lower()
        if version not in ("v1", "v2"):
            raise ConfigError(f"JQUANTS_API_VERSION={version!r} must be v1 or v2")
        plan = (_get(env, "JQUANTS_PLAN", "standard") or "standard").lower()
        if plan not in PLAN_RATE_PER_MINUTE:
            raise ConfigError(f"JQUANTS_PLAN={plan!r} must be one of {', '.join(PLAN_RATE_PER_MINUTE)}")
        rate = _float(env, "JQUANTS_RATE_PER_MINUTE", float(PLAN_RATE_PER_MINUTE[plan]))
        base_url = _get(env, "JQUANTS_BASE_URL", DEFAULT_JQUANTS_BASE_URL[version]) or ""
        if not re.match(r"^https?://", base_url):
            raise ConfigError(f"JQUANTS_BASE_URL={base_url!r} must start with http:// or https://")
        return cls(
            api_version=version,  # type: ignore[arg-type]
            base_url=base_url.rstrip("/"),
            api_key=Secret(_get(env, "JQUANTS_API_KEY", "") or ""),
            email=Secret(_get(env, "JQUANTS_AUTH_EMAIL", "") or ""),
            password=Secret(_get(env, "JQUANTS_AUTH_PASSWORD", "") or ""),
            refresh_token=Secret(_get(env, "JQUANTS_REFRESH_TOKEN", "") or ""),
            plan=plan,
            rate_per_minute=float(rate or PLAN_RATE_PER_MINUTE[plan]),
            concurrency=_int(env, "GOGOOKU3_JQUANTS_CONCURRENCY", 8),
            timeout_s=float(_float(env, "GOGOOKU3_JQUANTS_TIMEOUT_S", 30.0) or 30.0),
            max_retries=_int(env, "GOGOOKU3_JQUANTS_MAX_RETRIES", 6, minimum=0),
            pacer_dir=_get(env, "GOGOOKU3_PACER_DIR", "") or "",
            pacer_url=pacer_url(_get(env, "GOGOOKU3_PACER_URL", "") or "", "GOGOOKU3_PACER_URL"),
        )


def pacer_url(url: str, source: str) -> str:
    """``url`` checked as a Redis URL for the pacer ("" = none); its password, if any, becomes a
    secret (scrubbed from every message of this process)."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"{source}: expected a redis://, rediss:// or unix:// URL, got scheme {parts.scheme!r}"
        )
    if parts.password:
        register_secret(parts.password)
    return url


@dataclass(frozen=True)
class S3Settings:
    """Credentials and endpoint for an ``s3://`` lake (the ``s3_lake`` connection or AWS_* env)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: Secret = field(default_factory=lambda: Secret(""))
    secret_access_key: Secret = field(default_factory=lambda: Secret(""))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if env is None else env
        endpoint = _get(env, "GOGOOKU3_S3_ENDPOINT_URL") or _get(env, "AWS_ENDPOINT_URL")
        if endpoint and not re.match(r"^https?://", endpoint):
            raise ConfigError(f"GOGOOKU3_S3_ENDPOINT_URL={endpoint!r} must start with http:// or https://")
        return cls(
            endpoint_url=endpoint,
            region=_get(env, "AWS_DEFAULT_REGION", "us-east-1") or "us-east-1",
            access_key_id=Secret(_get(env, "AWS_ACCESS_KEY_ID", "") or ""),
            secret_access_key=Secret(_get(env, "AWS_SECRET_ACCESS_KEY", "") or ""),
        )


@dataclass(frozen=True)
class MlflowSettings:
    """Where runs and models are tracked: the ``mlflow`` connection or ``MLFLOW_TRACKING_URI``
    (an ``http(s)://`` server; its basic-auth user and password, when the server has them, in
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, never in the URI)."""

    tracking_uri: str | None = None
    experiment: str = "gogooku3-walk-forward"
    #: The registered model retrains add versions to (``GOGOOKU3_MLFLOW_MODEL``).
    model_name: str = "gogooku3-atft-gat-fan"
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))

    @property
    def configured(self) -> bool:
        return bool(self.tracking_uri)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MlflowSettings:
        env = os.environ if env is None else env
        uri = _get(env, "MLFLOW_TRACKING_URI")
        if uri and not re.match(r"^https?://[^/@]+(/.*)?$", uri):
            shown = re.sub(r"//[^/@]*@", "//***@", uri)
            raise ConfigError(
                f"MLFLOW_TRACKING_URI={shown!r} must be an http(s)://host[:port] server without credentials "
                "(MLflow 3 refuses file stores; put a user and password in MLFLOW_TRACKING_USERNAME/PASSWORD)"
            )
        return cls(
            tracking_uri=uri,
            experiment=_get(env, "GOGOOKU3_MLFLOW_EXPERIMENT", "gogooku3-walk-forward")
            or "gogooku3-walk-forward",
            model_name=_get(env, "GOGOOKU3_MLFLOW_MODEL", "gogooku3-atft-gat-fan") or "gogooku3-atft-gat-fan",
            username=_get(env, "MLFLOW_TRACKING_USERNAME", "") or "",
            password=Secret(_get(env, "MLFLOW_TRACKING_PASSWORD", "") or ""),
        )


@dataclass(frozen=True)
class SlackSettings:
    """Where alerts go: a bot token + channel (optionally a base_url for a capture server)."""

    token: Secret = field(default_factory=lambda: Secret(""))
    channel: str = "#gogooku3-alerts"
    base_url: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackSettings:
        env = os.environ if env is None else env
        return cls(
            token=Secret(_get(env, "GOGOOKU3_SLACK_TOKEN", "") or ""),
            channel=_get(env, "GOGOOKU3_SLACK_CHANNEL", "#gogooku3-alerts") or "#gogooku3-alerts",
            base_url=_get(env, "GOGOOKU3_SLACK_BASE_URL"),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline reads from its environment."""

    lake_uri: str = "./data/lake"
    jquants: JQuantsSettings = field(default_factory=JQuantsSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    #: RMM pool size in bytes for the GPU feature build; None = derive from the device's memory.
    rmm_pool_size: int | None = None
    #: ``(uid, gid)`` the task containers run as (``GOGOOKU3_TASK_USER``); None = the image's own
    #: non-root user. Never root.
    task_user: tuple[int, int] | None = None
    #: The Docker network task containers join for an ``s3://`` lake (``GOGOOKU3_TASK_NETWORK``):
    #: ``host`` by default; the compose deployment names its own network, where ``s3`` resolves.
    task_network: str = "host"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        lake = _get(env, "GOGOOKU3_LAKE_URI", "./data/lake") or "./data/lake"
        if lake.startswith("s3://") and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", lake):
            raise ConfigError(f"GOGOOKU3_LAKE_URI={lake!r} is not a valid s3://bucket/prefix URI")
        if "://" in lake and not lake.startswith(("s3://", "file://")):
            raise ConfigError(
                f"GOGOOKU3_LAKE_URI={lake!r}: only local paths, file:// and s3:// are supported"
            )
        rmm = _get(env, "RMM_POOL_SIZE")
        task_user = _get(env, "GOGOOKU3_TASK_USER")
        return cls(
            lake_uri=lake,
            jquants=JQuantsSettings.from_env(env),
            s3=S3Settings.from_env(env),
            slack=SlackSettings.from_env(env),
            mlflow=MlflowSettings.from_env(env),
            rmm_pool_size=parse_size(rmm, name="RMM_POOL_SIZE") if rmm else None,
            task_user=parse_user(task_user, name="GOGOOKU3_TASK_USER") if task_user else None,
            task_network=_get(env, "GOGOOKU3_TASK_NETWORK", "host") or "host",
        )


#: Airflow's own default queue ([operators] default_queue).
DEFAULT_QUEUE = "default"


def gpu_task_queue(env: Mapping[str, str] | None = None) -> str:
    """The Celery queue of the GPU-bound tasks (feature build, training): ``GOGOOKU3_GPU_QUEUE``,
    else Airflow's default queue. Read when DAG files are parsed, so on its own, not through
    :meth:`Settings.from_env` (a bad credential must not break parsing)."""
    env = os.environ if env is None else env
    return _get(env, "GOGOOKU3_GPU_QUEUE", DEFAULT_QUEUE) or DEFAULT_QUEUE


#: The first retry's delay of every task (later ones double, capped at an hour).
DEFAULT_RETRY_DELAY_S = 120


def task_retry_delay_s(env: Mapping[str, str] | None = None) -> float:
    """Seconds before a failed task's first retry: ``GOGOOKU3_RETRY_DELAY_S`` (default 120; the
    deploy test shortens it). Read when DAG files are parsed, like :func:`gpu_task_queue`."""
    env = os.environ if env is None else env
    raw = _get(env, "GOGOOKU3_RETRY_DELAY_S", "") or ""
    if not raw:
        return DEFAULT_RETRY_DELAY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"GOGOOKU3_RETRY_DELAY_S={raw!r}: expected seconds between 0 and 3600")
    return value
