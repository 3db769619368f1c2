"""Static checks of the deployment files against the project's pinned versions: docker-compose.airflow.yml
and its local and GPU-host override files (also rendered by the compose CLI: required in CI, see
tests/docker_env.py), Dockerfile.gpu (no GPU here), and the registry-free base of the local images.
The stack itself runs in tests/test_deploy.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import docker_env
import pytest
import yaml

from gogooku3.devtools.airflow_env import isolated
from gogooku3.devtools.deploy_stack import StackError, compose_cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.airflow.yml"
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


LOCAL = ROOT / "docker-compose.local.yml"
GPU = ROOT / "docker-compose.gpu.yml"
WORKERS = {"airflow-worker": "default", "airflow-worker-gpu": "gpu"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_cli() -> list[str]:
    try:
        return compose_cli()
    except StackError as exc:
        # dockerd.sh installs Debian's docker-compose, so in CI (GOGOOKU3_REQUIRE_DOCKER=1) this fails
        docker_env.unavailable(str(exc))


def _config(*files: Path, env_file: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [*_compose_cli(), *(a for f in files for a in ("-f", str(f)))]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "POSTGRES", "S3_", "GOGOOKU3"))
    }
    return subprocess.run([*cmd, "config"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_compose_has_every_service_and_valid_dependencies(compose: dict) -> None:
    services = compose["services"]
    expected = {
        "postgres",
        "redis",
        "s3",
        "airflow-init",
        "mlflow",
        "emulator",
        *AIRFLOW_COMPONENTS,
        *WORKERS,
    }
    assert expected <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if name != "airflow-init":
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_healthchecks_that_start_a_cli_run_at_most_once_a_minute(compose: dict) -> None:
    """An `airflow ...` or `celery ...` check imports Airflow (~3.7 s of CPU each): every 15 s, the
    four of them asked for a core of a 2-core host."""
    seconds = {"s": 1, "m": 60}
    cli = {}
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck") or {}
        command = " ".join(check.get("test") or [])
        if re.search(r"(^|\s)(airflow|celery) ", command):
            interval = str(check["interval"])
            cli[name] = int(interval[:-1]) * seconds[interval[-1]]
    assert set(cli) == {"airflow-worker", "airflow-worker-gpu", "airflow-dag-processor", "airflow-triggerer"}
    assert all(s >= 60 for s in cli.values()), cli


def test_airflow_components_run_the_pinned_airflow_on_celery(compose: dict) -> None:
    version = _pins()["apache-airflow"]
    for name, command in {**AIRFLOW_COMPONENTS, **{w: "celery" for w in WORKERS}}.items():
        svc = compose["services"][name]
        assert svc["command"][0] == command
        assert svc["image"].endswith(f":{version}}}") or svc["image"].endswith(f":{version}")
        assert svc["build"]["dockerfile"] == "images/airflow/Dockerfile"
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert env["GOGOOKU3_PACER_URL"].startswith("redis://")  # one request schedule for every host
    froms = [args for op, args in _instructions(ROOT / "images/airflow/Dockerfile") if op in {"ARG", "FROM"}]
    assert f"AIRFLOW_IMAGE=apache/airflow:{version}-python3.11" in froms
    for worker, queue in WORKERS.items():
        assert compose["services"][worker]["command"] == ["celery", "worker", "--queues", queue]


def test_airflow_components_see_the_checkout_as_every_local_environment_does(compose: dict) -> None:
    """The DAG and plugin folders (the plugin registers the timetables) at the checkout's relative
    paths under its mount point: the one layout of gogooku3.devtools.airflow_env."""
    from gogooku3.devtools.airflow_env import LAYOUT

    for name in [*AIRFLOW_COMPONENTS, *WORKERS]:
        svc = compose["services"][name]
        for setting, relative in LAYOUT.items():
            assert svc["environment"][setting] == f"/opt/gogooku3/{relative}", (name, setting)
        mounted = {v.split(":")[1] for v in svc["volumes"] if v.startswith("./")}
        assert {"/opt/gogooku3/dags", "/opt/gogooku3/include"} <= mounted, name


def test_only_the_workers_reach_the_engine_and_their_containers_join_the_stacks_network(
    compose: dict,
) -> None:
    for name, svc in compose["services"].items():
        has_socket = "/var/run/docker.sock:/var/run/docker.sock" in (svc.get("volumes") or [])
        assert has_socket == (name in WORKERS), name
    env = compose["services"]["airflow-worker-gpu"]["environment"]
    assert env["GOGOOKU3_GPU_QUEUE"] == "gpu"
    assert env["GOGOOKU3_TASK_NETWORK"] == compose["networks"]["default"]["name"]
    assert env["GOGOOKU3_LAKE_URI"].split(":-", 1)[1].startswith("s3://")


def test_secrets_come_from_env_and_the_stack_will_not_render_without_any_of_them(tmp_path: Path) -> None:
    """Every secret .env.example ships is a required variable (`${X:?...}`): leave any one out and the
    file does not render, naming it."""
    from gogooku3.deployment import parse_env_file, secret_names

    example = parse_env_file((ROOT / ".env.example").read_text())
    required = [name for name in secret_names(example) if example[name]]
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD", "S3_SECRET_KEY"} <= set(required)
    for name in required:
        env_file = tmp_path / f"without_{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in example.items() if k != name))
        result = _config(COMPOSE, env_file=env_file)
        assert result.returncode != 0 and f"set {name} in .env" in result.stderr, (name, result.stderr[-500:])


@pytest.mark.parametrize(
    "files", [[COMPOSE], [COMPOSE, LOCAL], [COMPOSE, GPU]], ids=["registry", "local", "gpu-host"]
)
def test_compose_cli_accepts_every_variant(files: list[Path]) -> None:
    result = _config(*files, env_file=ROOT / ".env.example")
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    images = {name: svc.get("image", "") for name, svc in rendered["services"].items()}
    if LOCAL in files:
        assert all(image.startswith("gogooku3/") for image in images.values()), images
    else:
        assert images["postgres"].startswith("postgres:") and images["redis"].startswith("redis:")
        assert images["s3"].startswith("minio/minio:")
    gpu = rendered["services"]["airflow-worker-gpu"].get("deploy", {})
    assert bool(gpu) == (GPU in files)


def test_gpu_dockerfile_is_the_cuda_rapids_torch_production_image() -> None:
    instructions = _instructions(ROOT / "Dockerfile.gpu")
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-runtime-ubuntu22\.04", args["CUDA_IMAGE"])
    assert args["TORCH_VERSION"] == _pins()["torch"]
    runs = " ".join(a for op, a in instructions if op == "RUN")
    for package in (
        "cudf-cu12==",
        "rmm-cu12==",
        "cupy-cuda12x",
        "torch==",
        "[gpu,train,quality]",
        "python3.11",
    ):
        assert package in runs, package
    final = _final_stage(instructions)
    user = [a for op, a in final if op == "USER"]
    assert user and not user[-1].startswith(("0", "root"))
    assert [a for op, a in final if op == "ENTRYPOINT"][-1].endswith('"gogooku3"]')


def test_cpu_dockerfiles_need_no_registry_and_run_as_non_root() -> None:
    for name in ("Dockerfile.deps", "Dockerfile"):
        instructions = _instructions(ROOT / "images/cpu" / name)
        defaults = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
        for op, a in instructions:
            if op == "FROM":
                image = a.split()[0]
                image = defaults.get(image.strip("${}"), image) if image.startswith("$") else image
                assert image.startswith("gogooku3/"), f"{name}: FROM {image} would need a registry"
        assert [a for op, a in _final_stage(instructions) if op == "USER"][-1] == "10001:10001"
    final = _final_stage(_instructions(ROOT / "images/cpu/Dockerfile"))
    assert [a for op, a in final if op == "ENTRYPOINT"] == ['["/usr/bin/tini", "--", "gogooku3"]']


def test_the_executor_the_stack_names_loads_with_the_pinned_packages(compose: dict, tmp_path: Path) -> None:
    """The scheduler loads the executor at start; a provider/library mismatch (celery 5.7 against the
    celery provider) stops it there. The Airflow images install what constraints.txt pins, as .venv."""
    executor = compose["services"]["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    code = (
        "from airflow.executors.executor_loader import ExecutorLoader; "
        f"print(ExecutorLoader.load_executor({executor!r}).__class__.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=isolated(os.environ) | {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__EXECUTOR": executor},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == executor
