"""Shared pytest fixtures."""

from __future__ import annotations

import docker_env
import pytest


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers, started by include/scripts/dockerd.sh once per session.

    Without one the test is skipped with dockerd.sh's reason, or fails under GOGOOKU3_REQUIRE_DOCKER=1
    (set by ``make test``, i.e. in CI): see tests/docker_env.py.
    """
    docker_env.need_engine()
