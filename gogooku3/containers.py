"""Where a containerised task can run: GPU container, CPU container, or (only without Docker) in-process.

The feature build runs in the task image through Airflow's DockerOperator. Which way it runs depends on
the engine the scheduler can reach, and the choice (with its reason) belongs in the task log:

- ``docker_reachable()``: does an engine answer at all?
- ``gpu_runtime_available(client)``: can that engine honour a GPU device request (``--gpus all``)?
  An engine without the NVIDIA container toolkit refuses with ``could not select device driver ""
  with capabilities: [[gpu]]``; the only reliable test is to ask, so this starts a throw-away container
  with the request (``true`` as its command, no network) and reports the engine's own answer.
- ``plan_task_runtime()``: the decision the DAG applies: ``gpu`` with the GPU image, else ``cpu`` with
  the CPU image, else ``in-process`` when no engine is reachable at all.
- ``image_user()`` / ``grant_lake_access()``: who the container runs as (never root: the configured
  ``GOGOOKU3_TASK_USER``, else the image's own non-root USER) and making a bind-mounted lake usable by
  that user before it starts.

The ``docker`` SDK (shipped with apache-airflow-providers-docker) is imported lazily, so importing this
module needs nothing beyond the standard library. No Airflow imports here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_CPU_IMAGE = "gogooku3/task-cpu:latest"
DEFAULT_GPU_IMAGE = "gogooku3/task-gpu:latest"
CPU_IMAGE_ENV = "GOGOOKU3_TASK_IMAGE_CPU"
GPU_IMAGE_ENV = "GOGOOKU3_TASK_IMAGE_GPU"
PROBE_LABEL = "io.gogooku3.probe"

Mode = Literal["gpu", "cpu", "in-process"]


@dataclass(frozen=True)
class Availability:
    """A yes/no answer with the reason to log. Truthy only when ``ok``; unpacks as ``ok, reason``."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self) -> Iterator[Any]:
        yield self.ok
        yield self.reason


@dataclass(frozen=True)
class TaskRuntime:
    """How to run a containerised task: ``mode``, the image to run (None in-process), and why."""

    mode: Mode
    image: str | None
    reason: str

    @property
    def use_gpu(self) -> bool:
        return self.mode == "gpu"


def task_images(env: dict[str, str] | None = None) -> tuple[str, str]:
    """(cpu_image, gpu_image): ``GOGOOKU3_TASK_IMAGE_CPU`` / ``_GPU`` or the images build_images.sh tags."""
    env = os.environ if env is None else env
    return env.get(CPU_IMAGE_ENV) or DEFAULT_CPU_IMAGE, env.get(GPU_IMAGE_ENV) or DEFAULT_GPU_IMAGE


def docker_client(base_url: str | None = None, timeout_s: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for ``base_url`` (e.g. ``unix:///var/run/docker.sock``), else from the
    environment (DOCKER_HOST, default socket)."""
    import docker

    if base_url:
        return docker.DockerClient(base_url=base_url, timeout=int(timeout_s))
    return docker.from_env(timeout=int(timeout_s))


def _describe(exc: BaseException) -> str:
    """The engine's own message for an SDK error (``explanation``), else the exception text."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc).strip() or type(exc).__name__


def docker_reachable(base_url: str | None = None, timeout_s: float = 5.0) -> Availability:
    """Whether a Docker engine answers a ping at ``base_url`` (default: DOCKER_HOST or the default socket)."""
    where = base_url or os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        import docker  # noqa: F401
    except ImportError:
        return Availability(False, "the docker Python SDK is not installed (pip install docker)")
    client = None
    try:
        client = docker_client(base_url, timeout_s)
        client.ping()
        version = client.version().get("Version", "?")
    except Exception as exc:  # the SDK raises DockerException, requests' errors or OSError here
        return Availability(False, f"no Docker engine answers at {where}: {_describe(exc)}")
    finally:
        if client is not None:
            client.close()
    return Availability(True, f"Docker engine {version} at {where}")


def gpu_device_requests(count: int = -1) -> list[Any]:
    """The device request ``docker run --gpus all`` makes (``count=-1``: every GPU)."""
    from docker.types import DeviceRequest

    return [DeviceRequest(count=count, capabilities=[["gpu"]])]


def image_present(client: Any, image: str) -> bool:
    """Whether ``image`` exists in the engine's local store (nothing is pulled)."""
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def gpu_runtime_available(
    client: Any, probe_image: str = DEFAULT_CPU_IMAGE, timeout_s: float = 60.0
) -> Availability:
    """Whether the engine behind ``client`` can start a container with a GPU device request.

    Starts ``probe_image`` with ``true`` as its command, every GPU requested and no network, and removes
    it again whatever happens. ``probe_image`` must be present locally (it is not pulled); a missing
    image is reported as not available, with that reason rather than a GPU verdict.
    """
    import docker.errors

    runtimes = ", ".join(sorted((client.info().get("Runtimes") or {}).keys())) or "none listed"
    if not image_present(client, probe_image):
        return Availability(False, f"GPU probe image {probe_image} is not present on the engine")
    container = None
    try:
        container = client.containers.create(
            probe_image,
            entrypoint=["true"],
            command=[],
            device_requests=gpu_device_requests(),
            network_disabled=True,
            labels={PROBE_LABEL: "gpu"},
        )
        container.start()
        status = container.wait(timeout=timeout_s).get("StatusCode", -1)
    except docker.errors.APIError as exc:
        return Availability(
            False, f"engine refused a GPU device request: {_describe(exc)} (runtimes: {runtimes})"
        )
    except Exception as exc:  # a timeout waiting, a dropped connection
        return Availability(False, f"GPU probe failed: {_describe(exc)} (runtimes: {runtimes})")
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass  # already gone; nothing left to clean up
    if status != 0:
        return Availability(False, f"GPU probe container exited with status {status} (runtimes: {runtimes})")
    return Availability(True, f"engine started a container with a GPU device request (runtimes: {runtimes})")


def plan_task_runtime(
    base_url: str | None = None,
    cpu_image: str | None = None,
    gpu_image: str | None = None,
    want_gpu: bool = True,
) -> TaskRuntime:
    """Decide how to run a task: GPU container, CPU container, or in-process (no engine at all).

    A GPU run needs both an engine that honours a GPU device request and ``gpu_image`` present
    locally; otherwise the CPU image runs and the reason says why. Images default to
    :func:`task_images`.
    """
    default_cpu, default_gpu = task_images()
    cpu_image = cpu_image or default_cpu
    gpu_image = gpu_image or default_gpu
    reachable = docker_reachable(base_url)
    if not reachable:
        return TaskRuntime("in-process", None, f"{reachable.reason}; running the CLI in-process instead")
    client = docker_client(base_url)
    try:
        if not image_present(client, cpu_image) and not image_present(client, gpu_image):
            return TaskRuntime(
                "in-process",
                None,
                f"neither {cpu_image} nor {gpu_image} is present on the engine (run include/scripts/"
                "build_images.sh); running the CLI in-process instead",
            )
        if not want_gpu:
            return TaskRuntime("cpu", cpu_image, "GPU not requested; running on CPU")
        probe = gpu_image if image_present(client, gpu_image) else cpu_image
        gpu = gpu_runtime_available(client, probe_image=probe)
        if gpu and probe == gpu_image:
            return TaskRuntime("gpu", gpu_image, gpu.reason)
        if gpu:
            why = f"the engine has a GPU runtime but {gpu_image} is not present"
        else:
            why = f"no GPU: {gpu.reason}"
        if not image_present(client, cpu_image):
            return TaskRuntime(
                "in-process", None, f"{why}, and {cpu_image} is not present; running in-process"
            )
        return TaskRuntime("cpu", cpu_image, f"{why}; running {cpu_image} on CPU")
    finally:
        client.close()


# ---------------------------------------------------------------------------------- container user


class TaskUserError(ValueError):
    """The task container would run as root, or as a user the lake cannot be opened to."""


def image_user(api: Any, image: str) -> tuple[int, int]:
    """The numeric non-root ``(uid, gid)`` that ``image`` runs as (its ``USER``), read from the engine
    through a docker-py ``APIClient`` (``inspect_image``). An image without a USER runs as root, and a
    user name cannot be mapped to host ownership: both are refused, naming GOGOOKU3_TASK_USER."""
    from gogooku3.config import ConfigError, parse_user

    user = str((api.inspect_image(image).get("Config") or {}).get("User") or "")
    if not user:
        raise TaskUserError(
            f"image {image} has no USER, so it would run as root; rebuild it with a non-root USER or "
            "set GOGOOKU3_TASK_USER=uid:gid"
        )
    try:
        return parse_user(user, name=f"USER of image {image}")
    except ConfigError as exc:
        raise TaskUserError(f"{exc}; set GOGOOKU3_TASK_USER=uid:gid") from None


#: Permission bits a directory needs: read + search to read below it, plus write to create in it.
READ_DIR = 0o5
WRITE_DIR = 0o7


def _granted(st: os.stat_result, uid: int, gid: int) -> int:
    """The rwx bits ``uid:gid`` gets on a file with ``st`` (owner, else group, else others): the
    container's process has exactly one group, so supplementary host groups do not count."""
    if st.st_uid == uid:
        return (st.st_mode >> 6) & 0o7
    if st.st_gid == gid:
        return (st.st_mode >> 3) & 0o7
    return st.st_mode & 0o7


def grant_lake_access(
    root: Path, write_dirs: Iterable[Path], uid: int, gid: int, *, euid: int | None = None
) -> list[Path]:
    """Make a bind-mounted local lake usable by the container user ``uid:gid``: ``root`` readable,
    each of ``write_dirs`` (created when missing) writable. A directory that already allows it is
    left alone; otherwise it is handed to ``uid:gid`` (chown) when this process is root, which is
    how a root worker keeps its containers off root. A non-root worker cannot do that, and a lake
    its containers cannot write is an error naming the directory, not a failure halfway through the
    build. Returns the directories whose owner changed.
    """
    euid = os.geteuid() if euid is None else euid
    changed: list[Path] = []
    for path, need in [(root, READ_DIR), *((d, WRITE_DIR) for d in write_dirs)]:
        path.mkdir(parents=True, exist_ok=True)
        st = path.stat()
        if _granted(st, uid, gid) & need == need:
            continue
        if euid != 0:
            raise TaskUserError(
                f"the task container runs as {uid}:{gid} but {path} (owner {st.st_uid}:{st.st_gid}, mode "
                f"{stat.filemode(st.st_mode)}) does not let it {'write' if need == WRITE_DIR else 'read'} "
                "there; set GOGOOKU3_TASK_USER to the lake's owner, or give that user access"
            )
        os.chown(path, uid, gid)
        if (st.st_mode >> 6) & need != need:
            os.chmod(path, st.st_mode | (need << 6))
        changed.append(path)
    return changed
