"""What every test that needs the Docker engine (or a Debian package it starts, such as redis-server)
shares: start or install it once, and skip - or, in CI, fail - when there is none.

``make test`` (include/scripts/run_tests.sh, which CI runs) starts the engine first, fails at once if it
cannot, and exports ``GOGOOKU3_REQUIRE_DOCKER=1``: from then on an engine that stops answering, or a
tool that dockerd.sh installs going missing, fails the Docker tests instead of turning them into skips
nobody reads. A developer's plain ``pytest`` on a machine without Docker still skips them, each with its
reason (``pytest -rs`` lists them).

Tests reach this through the ``docker_engine`` and ``redis_url`` fixtures (tests/conftest.py) or
:func:`unavailable`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "GOGOOKU3_REQUIRE_DOCKER"
DOCKERD_SH = Path(__file__).resolve().parents[1] / "include" / "scripts" / "dockerd.sh"


def required() -> bool:
    """True when a missing engine must fail the run (``GOGOOKU3_REQUIRE_DOCKER=1``, set by CI)."""
    return os.environ.get(REQUIRE_ENV, "") == "1"  # exactly what run_tests.sh tests for


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test for ``reason``, or fail it when Docker is required."""
    if required():
        pytest.fail(f"{REQUIRE_ENV}=1 (make test / CI) but {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _start() -> str | None:
    """Run ``dockerd.sh start`` once per test process; None when an engine answers, else why not."""
    try:
        started = subprocess.run(
            ["bash", str(DOCKERD_SH), "start"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "include/scripts/dockerd.sh start did not finish within 300 s"
    if started.returncode != 0:
        # dockerd.sh ends with its own "error: ..." line; the daemon log it prints before that is detail.
        lines = (started.stdout + started.stderr).strip().splitlines() or ["(no output)"]
        why = next((ln for ln in reversed(lines) if "error:" in ln), lines[-1])
        tail = " | ".join(ln[:200] for ln in lines[-4:-1])
        return (
            f"no Docker engine could be started here: {why} "
            f"(include/scripts/dockerd.sh start, exit {started.returncode}; before that: {tail})"
        )
    if shutil.which("docker") is None:
        return "dockerd.sh start succeeded but no docker CLI is on PATH"
    return None


def need_engine() -> None:
    """Return once a Docker engine answers; otherwise :func:`unavailable` with dockerd.sh's reason."""
    problem = _start()
    if problem is not None:
        unavailable(problem)


HOST_PACKAGES_SH = DOCKERD_SH.with_name("host_packages.sh")


@functools.cache
def _install(package: str) -> str | None:
    """Run ``host_packages.sh PACKAGE`` once per test process; None when it is there, else why not."""
    done = subprocess.run(
        ["bash", str(HOST_PACKAGES_SH), package],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
        return f"Debian's {package} is missing and include/scripts/host_packages.sh could not install it: {lines[-1]}"
    return None


def need_host_package(package: str) -> None:
    """Return once Debian's ``package`` (one host_packages.sh knows) is installed; otherwise
    :func:`unavailable` with the reason (a failure under ``make test``, as a missing engine is)."""
    problem = _install(package)
    if problem is not None:
        unavailable(problem)
