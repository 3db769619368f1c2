"""Static checks of the files that cannot be run here (no registry, no GPU): docker-compose.airflow.yml
and Dockerfile.gpu, against the project's pinned versions; plus the CPU Dockerfiles' registry-free base.
The compose file is also validated by the compose CLI itself when one is installed (required in CI: see
tests/docker_env.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import docker_env
import pytest
import yaml

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


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_every_service_and_valid_dependencies(compose: dict) -> None:
    services = compose["services"]
    expected = {"postgres", "airflow-init", "minio", "minio-init", "mlflow", "emulator", *AIRFLOW_COMPONENTS}
    assert expected <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_airflow_components_run_the_pinned_airflow(compose: dict) -> None:
    version = _pins()["apache-airflow"]
    for name, command in AIRFLOW_COMPONENTS.items():
        svc = compose["services"][name]
        assert svc["command"] == [command]
        assert svc["image"].endswith(f":{version}")
        assert svc["build"]["dockerfile"] == "images/airflow/Dockerfile"
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    froms = [args for op, args in _instructions(ROOT / "images/airflow/Dockerfile") if op in {"ARG", "FROM"}]
    assert f"AIRFLOW_IMAGE=apache/airflow:{version}-python3.11" in froms


def test_airflow_components_see_the_checkout_as_every_local_environment_does(compose: dict) -> None:
    """The DAG and plugin folders (the plugin registers the timetables) at the checkout's relative
    paths under its mount point: the one layout of gogooku3.devtools.airflow_env."""
    from gogooku3.devtools.airflow_env import LAYOUT

    for name in AIRFLOW_COMPONENTS:
        svc = compose["services"][name]
        for setting, relative in LAYOUT.items():
            assert svc["environment"][setting] == f"/opt/gogooku3/{relative}", (name, setting)
        mounted = {v.split(":")[1] for v in svc["volumes"] if v.startswith("./")}
        assert {"/opt/gogooku3/dags", "/opt/gogooku3/include"} <= mounted, name


def test_the_task_runner_can_reach_the_engine_and_the_lake(compose: dict) -> None:
    scheduler = compose["services"]["airflow-scheduler"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in scheduler["volumes"]
    # Sibling containers get host paths: the lake is mounted at the same path on both sides.
    lake = [v for v in scheduler["volumes"] if "GOGOOKU3_LAKE_HOST_DIR" in v]
    assert len(lake) == 1
    host_side, container_side = lake[0].split("}:", 1)
    assert host_side + "}" == container_side
    assert compose["services"]["emulator"]["pull_policy"] == "never"


def test_compose_cli_accepts_the_file() -> None:
    if shutil.which("docker-compose"):
        cmd = ["docker-compose", "-f", str(COMPOSE), "config", "-q"]
    elif (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        cmd = ["docker", "compose", "-f", str(COMPOSE), "config", "-q"]
    else:
        # dockerd.sh installs Debian's docker-compose, so in CI (GOGOOKU3_REQUIRE_DOCKER=1) this fails
        docker_env.unavailable(
            "no compose CLI installed (include/scripts/dockerd.sh installs docker-compose); "
            "the YAML checks above still ran"
        )
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


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
