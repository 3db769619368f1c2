"""What ``features_daily``'s tasks do: decide where the feature build runs, run it in the task image
through DockerOperator (or, only without any Docker engine, in-process), gate it and publish it.

Which dates a run builds
------------------------
``dag_run.conf`` ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD", "engine": "cpu"|"gpu"}`` when given
(validated, naming a bad key or value). Otherwise the dates of the asset events that triggered the
run: a raw event carries its JST ``date``; the trades_spec_daily event its ``start``..``end`` (the
days whose flows changed). Otherwise (a manual run without conf) the run's JST logical date. The
build writes a partition for every daily_quotes date in the range, reading all earlier history, so
rebuilding a range is idempotent and equals building its days one by one.

Where it runs
-------------
:func:`gogooku3.containers.plan_task_runtime` asks the Docker engine: a GPU container (cuDF + RMM
pool) when the engine honours a GPU device request and the GPU image is present, else the same
build in the CPU image, else (no engine reachable at all) the same CLI in-process. The reason is
logged as a warning whenever the run is not on a GPU, so a CPU fallback never goes unnoticed.

The container gets the lake as a bind mount (``/lake``, no network at all) for a local lake, or the
S3 endpoint and credentials for an ``s3://`` lake: credentials through DockerOperator's
``private_environment``, which is neither rendered into templates nor logged; the container then
uses the host network, the only network it needs being the S3 endpoint's. It never runs as root:
it runs as ``GOGOOKU3_TASK_USER`` when set (a deployment whose workers run as ``AIRFLOW_UID`` sets
it to that uid, so worker and container own the lake alike), else as the image's own non-root USER
(10001:10001 in the project's images); a bind-mounted lake is opened to that user first (a root
worker hands the directories the build writes to it; a non-root worker that cannot is told so by
name). The container is removed when it succeeds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator

from gogooku3.calendar import parse_date
from gogooku3_airflow.assets import FEATURES
from gogooku3_airflow.fetching import RunConfError, jst_day

log = logging.getLogger(__name__)

FEATURES_CONF_KEYS = ("start", "end", "engine")
ENGINES = ("cpu", "gpu")
#: Where the task image sees a local lake.
CONTAINER_LAKE = "/lake"


@dataclass(frozen=True)
class FeatureRun:
    """The dates a run builds and the engine it asks for (``None``: GPU when the engine has one)."""

    start: dt.date
    end: dt.date
    engine: str | None = None


def parse_features_conf(conf: Mapping[str, Any] | None) -> FeatureRun | None:
    """``dag_run.conf`` as a :class:`FeatureRun`, None when empty; errors name the bad key/value."""
    if not conf:
        return None
    unknown = sorted(set(conf) - set(FEATURES_CONF_KEYS))
    if unknown:
        raise RunConfError(f"dag_run.conf has unknown key(s) {unknown}; expected {list(FEATURES_CONF_KEYS)}")
    engine = conf.get("engine")
    if engine is not None and engine not in ENGINES:
        raise RunConfError(f"dag_run.conf['engine']={engine!r}: expected one of {list(ENGINES)}")
    if ("start" in conf) != ("end" in conf):
        raise RunConfError("dag_run.conf needs both 'start' and 'end' (or neither)")
    if "start" not in conf:
        raise RunConfError("dag_run.conf has 'engine' but no 'start'/'end' range")
    dates = {}
    for key in ("start", "end"):
        try:
            dates[key] = parse_date(conf[key])
        except ValueError as exc:
            raise RunConfError(f"dag_run.conf['{key}']: {exc}") from None
    if dates["start"] > dates["end"]:
        raise RunConfError(f"dag_run.conf: start {dates['start']} is after end {dates['end']}")
    return FeatureRun(dates["start"], dates["end"], engine)


def dates_from_asset_events(events: Mapping[Any, Any] | None) -> tuple[dt.date, dt.date] | None:
    """The date range covered by the triggering asset events' extras (None without any)."""
    days: list[dt.date] = []
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            for key in ("date", "start", "end"):
                if extra.get(key):
                    days.append(dt.date.fromisoformat(str(extra[key])))
    return (min(days), max(days)) if days else None


def feature_run(context: Mapping[str, Any]) -> FeatureRun:
    """conf, else the triggering asset events, else the JST logical date (see the module docstring)."""
    try:
        from_conf = parse_features_conf(getattr(context.get("dag_run"), "conf", None))
    except RunConfError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"RunConfError: {exc}") from None
    if from_conf is not None:
        return from_conf
    triggered = dates_from_asset_events(context.get("triggering_asset_events"))
    if triggered is not None:
        return FeatureRun(*triggered)
    day = jst_day(context)
    return FeatureRun(day, day)


def lake_settings():
    """Settings for the lake (no J-Quants credentials needed); secrets masked in task logs."""
    from airflow.sdk.exceptions import AirflowFailException

    from gogooku3.config import ConfigError
    from gogooku3_airflow.connections import mask_in_task_logs, resolve_settings, secret_values

    try:
        settings = resolve_settings()
    except ConfigError as exc:
        raise AirflowFailException(f"ConfigError: {exc}") from None
    mask_in_task_logs(secret_values(settings))
    return settings


def plan_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """Decide GPU container / CPU container / in-process for this run and log why."""
    from gogooku3.containers import plan_task_runtime

    run = feature_run(context)
    runtime = plan_task_runtime(want_gpu=run.engine != "cpu")
    if runtime.mode == "gpu":
        log.info("feature build: GPU container %s (%s)", runtime.image, runtime.reason)
    elif runtime.mode == "cpu":
        log.warning(
            "feature build: engine has no GPU runtime; running the same image on CPU: %s", runtime.reason
        )
    else:
        log.warning(
            "feature build: NO DOCKER ENGINE; running the feature build IN-PROCESS: %s", runtime.reason
        )
    if run.engine == "gpu" and runtime.mode != "gpu":
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"dag_run.conf asked for engine 'gpu' but {runtime.reason}")
    return {
        "start": run.start.isoformat(),
        "end": run.end.isoformat(),
        "mode": runtime.mode,
        "image": runtime.image,
        "engine": "gpu" if runtime.use_gpu else "cpu",
        "reason": runtime.reason,
    }


def choose_build(plan: Mapping[str, Any]) -> str:
    """The build task to follow: the container, or the in-process fallback."""
    return "build_features_in_process" if plan["mode"] == "in-process" else "build_features"


def _cli_args(plan: Mapping[str, Any], lake: str) -> list[str]:
    return [
        "features",
        "build",
        "--start",
        plan["start"],
        "--end",
        plan["end"],
        "--engine",
        plan["engine"],
        "--lake",
        lake,
    ]


def local_lake_path(lake_uri: str) -> str | None:
    """The absolute host path of a local lake URI, None for an ``s3://`` lake."""
    if lake_uri.startswith("s3://"):
        return None
    path = lake_uri.removeprefix("file://")
    return os.path.abspath(path)


class FeatureBuildDockerOperator(DockerOperator):
    """DockerOperator for the feature build whose container is configured at run time from the
    ``plan_runtime`` result (image, GPU device request, engine) and the lake settings."""

    def __init__(self, *, plan_task_id: str = "plan_runtime", **kwargs: Any) -> None:
        from gogooku3.containers import DEFAULT_CPU_IMAGE

        kwargs.setdefault("image", DEFAULT_CPU_IMAGE)  # replaced by the plan's image in execute()
        kwargs.setdefault("auto_remove", "success")
        kwargs.setdefault("mount_tmp_dir", False)
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    def configure(self, plan: Mapping[str, Any], settings: Any, user: tuple[int, int]) -> None:
        """Set the container up from the ``plan_runtime`` result, the lake settings and the
        (non-root) ``user`` it runs as: image, command, GPU device request and CUDA/RMM environment
        only for a GPU run, and the lake (bind mount without network, or S3 with credentials kept
        private)."""
        from docker.types import Mount

        from gogooku3.containers import gpu_device_requests

        self.image = plan["image"]
        self.user = f"{user[0]}:{user[1]}"
        self.device_requests = gpu_device_requests() if plan["engine"] == "gpu" else None
        self.environment = {"PYTHONUNBUFFERED": "1"}
        if settings.rmm_pool_size:
            self.environment["RMM_POOL_SIZE"] = str(settings.rmm_pool_size)
        if plan["engine"] == "gpu":
            self.environment["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
        host_lake = local_lake_path(settings.lake_uri)
        # The provider (4.6.x) passes `_private_environment` to create_container; the public
        # constructor argument is only stored there, so the run-time value must go there too.
        self._private_environment = {}
        if host_lake is not None:
            self.mounts = [Mount(source=host_lake, target=CONTAINER_LAKE, type="bind")]
            self.network_mode = "none"
            lake_arg = CONTAINER_LAKE
        else:
            lake_arg = settings.lake_uri
            self.mounts = []
            self.network_mode = "host"  # the S3 endpoint is the one place it needs to reach
            if settings.s3.endpoint_url:
                self.environment["GOGOOKU3_S3_ENDPOINT_URL"] = settings.s3.endpoint_url
            self.environment["AWS_DEFAULT_REGION"] = settings.s3.region
            # Only keys that are set: empty ones would hide an instance role from boto3.
            keys = {
                "AWS_ACCESS_KEY_ID": settings.s3.access_key_id.get(),
                "AWS_SECRET_ACCESS_KEY": settings.s3.secret_access_key.get(),
            }
            self._private_environment = {k: v for k, v in keys.items() if v}
        self.command = _cli_args(plan, lake_arg)

    def container_user(self, plan: Mapping[str, Any], settings: Any) -> tuple[int, int]:
        """``GOGOOKU3_TASK_USER``, else the image's own USER (asked of the engine); never root."""
        from airflow.sdk.exceptions import AirflowFailException

        from gogooku3.containers import TaskUserError, image_user

        if settings.task_user is not None:
            return settings.task_user
        try:
            return image_user(self.cli, plan["image"])
        except TaskUserError as exc:
            raise AirflowFailException(f"TaskUserError: {exc}") from None

    def open_local_lake(self, plan: Mapping[str, Any], host_lake: str, user: tuple[int, int]) -> None:
        """Let ``user`` read the bind-mounted lake and write the partitions this build replaces."""
        from airflow.sdk.exceptions import AirflowFailException

        from gogooku3.containers import TaskUserError, grant_lake_access
        from gogooku3.lake.layout import parse_partition_dir

        root = Path(host_lake)
        features = root / "features" / "features"
        start, end = dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
        days = {folder: parse_partition_dir(folder.name) for folder in sorted(features.glob("date=*"))}
        rewritten = [folder for folder, day in days.items() if day is not None and start <= day <= end]
        try:
            changed = grant_lake_access(root, [features, *rewritten], *user)
        except TaskUserError as exc:
            raise AirflowFailException(f"TaskUserError: {exc}") from None
        if changed:
            log.info(
                "lake directories handed to the task user %d:%d: %s", *user, ", ".join(map(str, changed))
            )

    def execute(self, context: Any) -> Any:
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        settings = lake_settings()
        user = self.container_user(plan, settings)
        host_lake = local_lake_path(settings.lake_uri)
        if host_lake is not None:
            self.open_local_lake(plan, host_lake, user)
        self.configure(plan, settings, user)
        log.info(
            "running %s %s as %s (engine %s, %s)",
            self.image,
            " ".join(self.command),
            self.user,
            plan["engine"],
            "GPU device request" if self.device_requests else "no GPU device request",
        )
        return super().execute(context)


def build_in_process_task(plan: Mapping[str, Any]) -> str:
    """The fallback where no Docker engine is reachable at all: the same CLI code, in this process."""
    from gogooku3.features.cli import build_command, summarize

    log.warning("feature build IN-PROCESS (no Docker engine): %s", plan["reason"])
    settings = lake_settings()
    manifests = build_command(
        dt.date.fromisoformat(plan["start"]),
        dt.date.fromisoformat(plan["end"]),
        plan["engine"],
        None,
        settings,
    )
    return summarize(manifests)


def built_days(lake: Any, plan: Mapping[str, Any]) -> list[dt.date]:
    """The daily_quotes dates in the plan's range: the partitions the build must have written."""
    start, end = dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
    return [d for d in lake.list_partitions("raw", "daily_quotes") if start <= d <= end]


def gate_features_task(plan: Mapping[str, Any]) -> list[str]:
    """The features suite on every built partition (row count against the listed universe); a
    failure alerts Slack with the failing expectations and stops the run (:mod:`.gates`)."""
    from gogooku3.lake import open_lake
    from gogooku3.quality import expected_rows_from_listed_info
    from gogooku3_airflow.gates import gate_days

    settings = lake_settings()
    lake = open_lake(settings.lake_uri, settings.s3)
    return gate_days(
        lake,
        "features",
        "features",
        built_days(lake, plan),
        expected_rows=lambda d: expected_rows_from_listed_info(lake, d),
        build_docs=True,
    )


def publish_features_task(
    context: Mapping[str, Any], plan: Mapping[str, Any], gated: list[str]
) -> dict[str, Any]:
    """One event for the features asset: the gated range, rows and where it was built."""
    from gogooku3.lake import open_lake

    settings = lake_settings()
    lake = open_lake(settings.lake_uri, settings.s3)
    rows = sum(lake.read_manifest("features", "features", d).rows for d in gated)
    extra = {
        "start": plan["start"],
        "end": plan["end"],
        "days": len(gated),
        "rows": rows,
        "engine": plan["engine"],
        "mode": plan["mode"],
        "lake_uri": settings.lake_uri,
    }
    context["outlet_events"][FEATURES].extra.update(extra)
    log.info(
        "published %s %s..%s: %d rows on %s", FEATURES.uri, plan["start"], plan["end"], rows, plan["mode"]
    )
    return extra
