"""The CPU task image on a real Docker engine: started by include/scripts/dockerd.sh, built without any
registry by include/scripts/build_images.sh (cached by source hash), then run the way the DAG runs it.

Skips, with the reason, only when no engine can be started on this machine (not root, no apt, no
kernel support), and fails instead under GOGOOKU3_REQUIRE_DOCKER=1 (``make test``, CI): see
tests/docker_env.py. Once an engine answers, a failed image build is a failure, not a skip.

The image is built from a frozen copy of the sources: other work in the checkout edits gogooku3/ while
this module runs, and a moving source hash would leave "unchanged sources are not rebuilt" untestable.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from test_features_compiled import PROBE as KERNEL_CACHE_PROBE

from gogooku3 import containers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "include" / "scripts"


def _run(args: list[str], timeout: float, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of exactly what build_images.sh hashes and builds, taken once for this module."""
    snap = tmp_path_factory.mktemp("sources")
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, snap / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "gogooku3", snap / "gogooku3", ignore=skip)
    shutil.copytree(ROOT / "images" / "cpu", snap / "images" / "cpu")
    (snap / "include" / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPTS / "build_images.sh", snap / "include" / "scripts" / "build_images.sh")
    (snap / ".venv").symlink_to(ROOT / ".venv")  # the script builds the wheels with <root>/.venv's Python
    return snap


def _build(sources: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = sources / "include" / "scripts" / "build_images.sh"
    return _run(["bash", str(script)], timeout=1200, env={**os.environ, **env})


@pytest.fixture(scope="module")
def task_image(docker_engine: None, sources: Path) -> str:
    """The hash-tagged CPU task image for the frozen sources (built once, cached afterwards)."""
    built = _build(sources)
    assert built.returncode == 0, f"build_images.sh failed:\n{built.stderr[-3000:]}"
    ref = built.stdout.strip().splitlines()[-1]
    assert ref.startswith("gogooku3/task-cpu:"), built.stdout
    return ref


def test_build_is_cached_and_latest_points_at_it(task_image: str, sources: Path, tmp_path: Path) -> None:
    # Hold the machine's build lock (the one build_images.sh takes; its run here gets a private one) so
    # no other checkout's build re-points :latest between this build and the inspection below.
    with open(os.environ.get("GOGOOKU3_IMAGE_LOCK", "/var/tmp/gogooku3-build-images.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        again = _build(sources, GOGOOKU3_IMAGE_LOCK=str(tmp_path / "build.lock"))
        assert again.returncode == 0, again.stderr[-2000:]
        ref = again.stdout.strip().splitlines()[-1]
        assert ref == task_image  # the same sources give the same hash-tagged image...
        assert f"{task_image} exists (sources unchanged); skipping build" in again.stderr  # ...not rebuilt
        ids = {
            tag: _run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], timeout=30).stdout.strip()
            for tag in (ref, "gogooku3/task-cpu:latest")
        }
        assert len(set(ids.values())) == 1 and all(ids.values()), ids
        label = _run(
            [
                "docker",
                "image",
                "inspect",
                "--format",
                '{{index .Config.Labels "io.gogooku3.source-hash"}}',
                ref,
            ],
            timeout=30,
        )
        assert ref.endswith("-" + label.stdout.strip())


def test_entrypoint_is_the_cli_and_runs_as_non_root(task_image: str) -> None:
    helped = _run(["docker", "run", "--rm", "--network", "none", task_image, "--help"], timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "Usage" in helped.stdout and "fetch" in helped.stdout and "features" in helped.stdout
    uid = _run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "id", task_image, "-u"], timeout=120
    )
    assert uid.returncode == 0, uid.stderr
    assert int(uid.stdout.strip()) != 0
    # An unknown command is the CLI's own usage error, proving arguments reach it through tini.
    bad = _run(["docker", "run", "--rm", "--network", "none", task_image, "no-such-command"], timeout=120)
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


def test_offline_container_writes_to_a_bind_mounted_lake_as_the_caller(
    task_image: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    script = (
        "import polars as pl, pathlib;"
        "pl.DataFrame({'Code': ['13010', '72030'], 'Close': [1.5, 2.5]}).write_parquet('/lake/x.parquet');"
        "print(sorted(l.split(':')[0].strip() for l in pathlib.Path('/proc/net/dev').read_text().splitlines()[2:]))"
    )
    user = f"{os.getuid()}:{os.getgid()}"
    ran = _run(
        ["docker", "run", "--rm", "--network", "none", "--user", user, "-v", f"{lake}:/lake",
         "--entrypoint", "python3", task_image, "-c", script],
        timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['lo']"  # --network none: loopback only
    written = lake / "x.parquet"
    assert written.stat().st_uid == os.getuid()
    assert pl.read_parquet(written).to_dict(as_series=False) == {
        "Code": ["13010", "72030"],
        "Close": [1.5, 2.5],
    }
    # The CLI itself runs under the same constraints (the feature build will, through DockerOperator).
    cli = _run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            user,
            "-v",
            f"{lake}:/lake",
            task_image,
            "--help",
        ],
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr


def _lasting_probe_containers(client, wait_s: float = 30.0) -> list:
    """Probe containers still on the engine after up to ``wait_s``: other tests' feature builds on
    the same engine (``make test`` runs two workers) probe too, and theirs go within seconds; one
    this probe left behind stays."""
    deadline = time.monotonic() + wait_s
    while (left := client.containers.list(all=True, filters={"label": containers.PROBE_LABEL})) and (
        time.monotonic() < deadline
    ):
        time.sleep(1)
    return left


def test_gpu_probe_agrees_with_the_docker_cli_and_cleans_up(task_image: str) -> None:
    client = containers.docker_client()
    try:
        probe = containers.gpu_runtime_available(client, probe_image=task_image)
        leftovers = _lasting_probe_containers(client)
    finally:
        client.close()
    cli = _run(
        ["docker", "run", "--rm", "--network", "none", "--gpus", "all", "--entrypoint", "true", task_image],
        timeout=120,
    )
    assert bool(probe) == (cli.returncode == 0), (probe, cli.stderr)
    assert leftovers == []
    # The probe's reason must say what the engine did, in either case.
    if cli.returncode == 0:  # an engine with the NVIDIA container runtime
        assert probe.reason.startswith("engine started a container with a GPU device request"), probe.reason
    else:
        # The engine's own refusal, e.g. 'could not select device driver "" with capabilities: [[gpu]]'.
        marker = "Error response from daemon: "
        lines = [line for line in cli.stderr.splitlines() if marker in line]
        assert lines, cli.stderr
        assert probe.reason.startswith("engine refused a GPU device request: "), probe.reason
        assert lines[0].split(marker, 1)[1].strip().rstrip(".") in probe.reason


def test_plan_picks_a_container_when_the_engine_answers(task_image: str) -> None:
    plan = containers.plan_task_runtime(
        cpu_image=task_image, gpu_image=f"gogooku3/task-gpu:absent-{uuid.uuid4().hex}"
    )
    assert plan.mode == "cpu" and plan.image == task_image
    assert "no GPU" in plan.reason or "not present" in plan.reason


def test_image_runs_the_package_built_from_these_sources(task_image: str) -> None:
    code = "import gogooku3, sys; print(gogooku3.__file__); print(sys.version_info[:2])"
    ran = _run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", task_image, "-c", code], 120
    )
    assert ran.returncode == 0, ran.stderr
    path, version = ran.stdout.strip().splitlines()
    assert path.startswith("/opt/gogooku3/") and version == str(sys.version_info[:2])
    listed = _run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", task_image, "-c",
         "import gogooku3, pathlib; print('\\n'.join(sorted(p.name for p in pathlib.Path(gogooku3.__file__).parent.glob('*.py'))))"],
        timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "cli.py" in listed.stdout.split() and "containers.py" in listed.stdout.split()


def test_docker_stop_reaches_the_cli_through_tini(task_image: str) -> None:
    """SIGTERM (docker stop, an Airflow task kill) must reach the CLI. It is sent straight after the
    start, while Python is still importing: as PID 1 itself Python would ignore it and be SIGKILLed
    when the stop timeout runs out (exit status 137); under tini it dies of the SIGTERM (143), or exits
    cleanly (0) if the server's own handler was already installed."""
    name = f"gogooku3-stop-{uuid.uuid4().hex[:8]}"
    started = _run(
        ["docker", "run", "-d", "--name", name, "--network", "none", task_image,
         "emulator", "--codes", "5", "--start", "2024-01-04", "--end", "2024-01-31", "--port", "8765"],
        timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        stopped = _run(["docker", "stop", "-t", "60", name], timeout=180)
        assert stopped.returncode == 0, stopped.stderr
        state = _run(
            ["docker", "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name], timeout=30
        )
        code, oom = state.stdout.split()
        assert oom == "false" and int(code) in {0, 143}, (
            code,
            _run(["docker", "logs", name], timeout=30).stderr,
        )
    finally:
        _run(["docker", "rm", "-f", name], timeout=60)


def test_the_feature_kernels_come_compiled_with_the_image(task_image: str) -> None:
    """The image compiled the feature build's kernels when it was built: a container, as any uid,
    loads every one from the image's numba cache and compiles none."""
    ran = _run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "4242:4242",
            "--entrypoint",
            "python3",
            task_image,
            "-c",
            KERNEL_CACHE_PROBE,
        ],
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    stats = json.loads(ran.stdout.strip().splitlines()[-1])
    assert all(s["misses"] == 0 and s["hits"] > 0 for s in stats.values()), stats
