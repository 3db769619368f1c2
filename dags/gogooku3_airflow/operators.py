"""Operators: the project's task containers.

:class:`TaskContainerOperator` is what every containerised task (the feature build today, the
retraining next) has in common, on top of the Docker provider's ``DockerOperator``; a subclass says
only which CLI command runs and which lake directories it writes.

What the base decides at run time, from the runtime plan an upstream task pushed to XCom
(:func:`gogooku3.containers.plan_task_runtime` as JSON: ``mode``, ``image``, ``engine``):

* **image and GPU**: the plan's image; a GPU device request (``--gpus all``), ``CUDA_VISIBLE_DEVICES``
  and ``RMM_POOL_SIZE`` only when the plan's engine is ``gpu``.
* **lake**: a local lake is bind-mounted at ``/lake`` and the container gets no network at all; an
  ``s3://`` lake gets the S3 endpoint and region in the environment, the keys in the container's
  private environment (never a rendered template field, never logged), and the network
  ``GOGOOKU3_TASK_NETWORK`` names (default the host's; the S3 endpoint is the one place it needs to
  reach, and in the compose deployment it resolves only on the stack's own network).
* **user**: never root. ``GOGOOKU3_TASK_USER`` when set, else the image's own USER as the engine
  reports it; a bind-mounted lake is opened to that user first
  (:func:`gogooku3.containers.grant_lake_access`).
* **clean-up**: the container is removed when it succeeds (kept for inspection when it fails).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.docker.operators.docker import DockerOperator

log = logging.getLogger(__name__)

#: Where the task image sees a local lake.
CONTAINER_LAKE = "/lake"


def local_lake_path(lake_uri: str) -> str | None:
    """The absolute host path of a local lake URI, None for an ``s3://`` lake."""
    from gogooku3.lake.uri import is_s3_uri

    if is_s3_uri(lake_uri):
        return None
    return os.path.abspath(lake_uri.removeprefix("file://"))


class TaskContainerOperator(DockerOperator):
    """Run one ``gogooku3`` CLI command in the task image the runtime plan chose (see the module
    docstring for what is decided at run time).

    :param plan_task_id: the task whose XCom is the runtime plan (default ``plan_runtime``).
    :param kwargs: passed to ``DockerOperator``; ``image`` is only a placeholder (the plan's image
        replaces it), ``auto_remove`` defaults to ``"success"`` and ``mount_tmp_dir`` to False.
    """

    def __init__(self, *, plan_task_id: str = "plan_runtime", **kwargs: Any) -> None:
        from gogooku3.containers import DEFAULT_CPU_IMAGE

        kwargs.setdefault("image", DEFAULT_CPU_IMAGE)  # replaced by the plan's image in execute()
        kwargs.setdefault("auto_remove", "success")
        kwargs.setdefault("mount_tmp_dir", False)
        super().__init__(**kwargs)
        self.plan_task_id = plan_task_id

    # -- what a subclass says ------------------------------------------------------------------
    def cli_args(self, plan: Mapping[str, Any], lake: str) -> list[str]:
        """The ``gogooku3`` command line (after the image's entrypoint) for ``plan`` on ``lake``."""
        raise NotImplementedError

    def written_dirs(self, plan: Mapping[str, Any], lake_root: Path) -> list[Path]:
        """The directories of a local lake the command creates files in (opened to the container's
        user before it starts)."""
        raise NotImplementedError

    # -- the container ---------------------------------------------------------------------------
    def process_environment(self) -> Mapping[str, str]:
        """Environment the container's process must start with (set before the settings' own)."""
        return {}

    def configure(self, plan: Mapping[str, Any], settings: Any, user: tuple[int, int]) -> None:
        """Set the container up from the runtime ``plan``, the lake ``settings`` and the (non-root)
        ``user`` it runs as."""
        from docker.types import Mount

        from gogooku3.containers import gpu_device_requests

        gpu = plan["engine"] == "gpu"
        self.image = plan["image"]
        self.user = f"{user[0]}:{user[1]}"
        self.device_requests = gpu_device_requests() if gpu else None
        self.environment = {**self.process_environment(), "PYTHONUNBUFFERED": "1"}
        if gpu:
            self.environment["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
            if settings.rmm_pool_size:
                self.environment["RMM_POOL_SIZE"] = str(settings.rmm_pool_size)
        # The provider (4.6.x) hands `_private_environment` to create_container; its constructor
        # argument is only stored there, so the run-time value must go there too.
        self._private_environment = {}
        host_lake = local_lake_path(settings.lake_uri)
        if host_lake is not None:
            self.mounts = [Mount(source=host_lake, target=CONTAINER_LAKE, type="bind")]
            self.network_mode = "none"
            lake = CONTAINER_LAKE
        else:
            lake = settings.lake_uri
            self.mounts = []
            self.network_mode = settings.task_network
            if settings.s3.endpoint_url:
                self.environment["GOGOOKU3_S3_ENDPOINT_URL"] = settings.s3.endpoint_url
            self.environment["AWS_DEFAULT_REGION"] = settings.s3.region
            # Only keys that are set: empty ones would hide an instance role from boto3.
            keys = {
                "AWS_ACCESS_KEY_ID": settings.s3.access_key_id.get(),
                "AWS_SECRET_ACCESS_KEY": settings.s3.secret_access_key.get(),
            }
            self._private_environment = {k: v for k, v in keys.items() if v}
        self.command = self.cli_args(plan, lake)

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

    def open_local_lake(self, plan: Mapping[str, Any], lake_root: Path, user: tuple[int, int]) -> None:
        """Let ``user`` read the bind-mounted lake and write where the command writes."""
        from airflow.sdk.exceptions import AirflowFailException

        from gogooku3.containers import TaskUserError, grant_lake_access

        try:
            changed = grant_lake_access(lake_root, self.written_dirs(plan, lake_root), *user)
        except TaskUserError as exc:
            raise AirflowFailException(f"TaskUserError: {exc}") from None
        if changed:
            log.info(
                "lake directories handed to the task user %d:%d: %s", *user, ", ".join(map(str, changed))
            )

    def execute(self, context: Any) -> Any:
        from gogooku3_airflow.hooks import task_settings

        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        settings = task_settings()
        user = self.container_user(plan, settings)
        host_lake = local_lake_path(settings.lake_uri)
        if host_lake is not None:
            self.open_local_lake(plan, Path(host_lake), user)
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


class FeatureBuildOperator(TaskContainerOperator):
    """``gogooku3 features build`` for the plan's ``start``..``end`` on the plan's engine: writes
    ``features/features/date=D/`` and ``features/checkpoints/date=D/`` for every daily_quotes date
    in the range.

    :param plan_task_id: the task whose XCom is the runtime plan with ``start``, ``end``, ``engine``
        and ``image`` (default ``plan_runtime``).
    """

    def cli_args(self, plan: Mapping[str, Any], lake: str) -> list[str]:
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

    def process_environment(self) -> Mapping[str, str]:
        """The feature build's allocator settings (:data:`gogooku3.allocator.BUILD_ENVIRONMENT`)."""
        from gogooku3.allocator import BUILD_ENVIRONMENT

        return BUILD_ENVIRONMENT

    def written_dirs(self, plan: Mapping[str, Any], lake_root: Path) -> list[Path]:
        """``features/features`` and ``features/checkpoints`` (new partitions) and the partitions
        of the range already there."""
        from gogooku3.lake.layout import parse_partition_dir

        start, end = dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
        dirs: list[Path] = []
        for dataset in ("features", "checkpoints"):
            folder = lake_root / "features" / dataset
            days = {part: parse_partition_dir(part.name) for part in sorted(folder.glob("date=*"))}
            dirs += [folder, *(part for part, day in days.items() if day is not None and start <= day <= end)]
        return dirs


class RetrainOperator(TaskContainerOperator):
    """``gogooku3 train`` for the plan (:func:`gogooku3_airflow.tasks.plan_retrain`) on the plan's
    engine (``--device cuda`` in the GPU image): writes the walk-forward run folder under the lake's
    ``models/atft-gat-fan/runs/``; a retry of the task resumes at the first unfinished fold there.

    :param shm_size: the container's ``/dev/shm`` in bytes (default 2 GiB: torch's data paths use it).
    """

    def __init__(self, *, shm_size: int = 2 * 1024**3, **kwargs: Any) -> None:
        super().__init__(shm_size=shm_size, **kwargs)

    def cli_args(self, plan: Mapping[str, Any], lake: str) -> list[str]:
        from gogooku3_airflow.tasks import train_cli_args

        return train_cli_args(plan, lake)

    def written_dirs(self, plan: Mapping[str, Any], lake_root: Path) -> list[Path]:
        """The runs folder, this run's folder and what an earlier try created in it."""
        from gogooku3_airflow.tasks import RETRAIN_RUNS_DIR

        run = lake_root / plan["out"]
        earlier = sorted(p for p in run.rglob("*") if p.is_dir()) if run.is_dir() else []
        return [lake_root / RETRAIN_RUNS_DIR, run, *earlier]
