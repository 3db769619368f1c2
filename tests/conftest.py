"""Shared pytest fixtures: the Docker engine, a migrated local Airflow home, the cuDF stand-in, the
synthetic features lakes, a Redis server, an MLflow server on a local S3 server, and Airflow's logging set-up undone
once for every module."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cudf_standin
import docker_env
import pytest

from gogooku3.devtools.airflow_env import (
    init_metadata_db,
    isolated,
    local_airflow_env,
    local_connections,
)

# Importing Airflow configures the root logger (handlers, level), once per process. Do it here, before
# any test module imports it, and undo it, so every module sees pytest's own logging set-up.
_root = logging.getLogger()
_saved_logging = (list(_root.handlers), _root.level)
import airflow.sdk  # noqa: E402, F401
import airflow.timetables.base  # noqa: E402, F401

_root.handlers[:] = _saved_logging[0]
_root.setLevel(_saved_logging[1])


#: Test modules that run one after another in one worker process under pytest-xdist (``make test``
#: runs two): they share a session fixture too costly to build twice (the CI market's walk-forward
#: runs), and they train networks, torch's and LightGBM's OpenMP threads on every core: two such
#: modules side by side on two cores each ran ~4x slower than alone (spinning threads, measured).
#: In this order: the retrain's end-to-end test last, as it waits for the task image, which the
#: deployment's test is building on the other worker when the run starts.
SHARED_WORKER = dict.fromkeys(
    (
        "test_training_run",
        "test_tracking",
        "test_training_runstore",
        "test_dag_walk_forward_retrain_e2e",
    ),
    "training",
)

#: The slowest modules (or groups), slowest first, as measured on a 2-core host (the README's "How
#: `make test` runs" has figures): the workers take them first, so that no long module starts last
#: and leaves one worker idle at the end. Every other module follows in collection order.
SLOWEST_FIRST = (
    "training",
    "test_deploy",
    "test_dag_features_daily_e2e",
    "test_dag_trades_spec_weekly_e2e",
    "test_dag_jquants_daily_e2e",
)


def worker_group(nodeid: str) -> str:
    """The unit of work one xdist worker takes whole: the test's module (module- and session-scoped
    fixtures are built once per worker, so a module never spreads over two), or the shared group of
    :data:`SHARED_WORKER`."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return SHARED_WORKER.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest groups first (:data:`SLOWEST_FIRST`), the modules of a shared group in
    :data:`SHARED_WORKER`'s order; modules keep their tests' order."""
    rank = {group: i for i, group in enumerate(SLOWEST_FIRST)}
    within = {module: i for i, module in enumerate(SHARED_WORKER)}

    def key(item: pytest.Item) -> tuple[int, int]:
        return rank.get(worker_group(item.nodeid), len(rank)), within.get(item.path.stem, 0)

    items.sort(key=key)  # stable


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``pytest -n N --dist loadscope`` (``make test``): loadscope's scheduling (whole units, in
    collection order with ``--no-loadscope-reorder``), its unit being :func:`worker_group`.
    (``--dist loadgroup`` would do with marks, but pytest-xdist 3.8 under pytest 9 does not group
    marked tests: tried.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkerGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return WorkerGroupScheduling(config, log)


@pytest.fixture(autouse=True)
def _calendar_on_the_rule() -> Any:
    """Each test starts on gogooku3.calendar's rule and leaves it so: following a lake's exchange
    calendar (gogooku3.exchange_calendar) installs process-wide overrides."""
    from gogooku3.calendar import set_exchange_overrides

    set_exchange_overrides({})
    yield
    set_exchange_overrides({})


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers, started by include/scripts/dockerd.sh once per session.

    Without one the test is skipped with dockerd.sh's reason, or fails under GOGOOKU3_REQUIRE_DOCKER=1
    (set by ``make test``, i.e. in CI): see tests/docker_env.py.
    """
    docker_env.need_engine()


@pytest.fixture(scope="session")
def airflow_env_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, str]]:
    """``make(home, *, emulator=None, slack=None, slack_token=..., plan="premium", mlflow=None,
    mlflow_experiment=None)``: the environment of a migrated local Airflow home at ``home``
    (:mod:`gogooku3.devtools.airflow_env`, the one definition the scripts use too) with the project's
    pools, the ``jquants`` connection on ``emulator`` (a running ``gogooku3.emulator.testing``
    handle), the ``slack_alerts`` connection on ``slack`` (a running Slack capture) and the ``mlflow``
    connection on ``mlflow`` (a running MLflow server), when given; nothing of the developer's shell
    leaks in."""

    def make(
        home: Path,
        *,
        emulator: Any | None = None,
        slack: Any | None = None,
        slack_token: str = "xoxb-harness-bot-token",
        plan: str = "premium",
        mlflow: Any | None = None,
        mlflow_experiment: str | None = None,
    ) -> dict[str, str]:
        import os

        env = (
            isolated(os.environ) | local_airflow_env(home) | {"GOGOOKU3_PACER_DIR": str(Path(home) / "pacer")}
        )
        env |= local_connections(
            jquants_url=emulator.base_url_v2 if emulator is not None else None,
            api_key=emulator.api_key if emulator is not None else None,
            plan=plan,
            slack_url=slack.base_url if slack is not None else None,
            slack_token=slack_token,
            slack_channel="#gogooku3-e2e",
            mlflow_url=mlflow.tracking_uri if mlflow is not None else None,
            mlflow_experiment=mlflow_experiment,
        )
        migrated_db(Path(home))
        return env

    template: list[Path] = []

    def migrated_db(home: Path) -> None:
        # `airflow db migrate` + `pools import` take ~15 s a home (two Airflow CLI processes), and a
        # dozen homes a session; the migrated SQLite file names no path of its home, so it is made
        # once (init_metadata_db, as every environment starts) and copied into each new home.
        import os
        import shutil

        if not template:
            first = tmp_path_factory.mktemp("airflow_home_template")
            init_metadata_db(isolated(os.environ) | local_airflow_env(first))
            template.append(first / "airflow.db")
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template[0], home / "airflow.db")

    return make


@pytest.fixture
def fake_rapids(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuDF, CuPy and RMM replaced by the pandas-backed stand-in (tests/cudf_standin.py) for one test."""
    cudf_standin.install(monkeypatch)


@pytest.fixture(scope="session")
def features_lake_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``factory(signal=1.0, seed=7, n_codes=..., start=..., end=...)`` -> a local lake root holding
    ``features/features`` of that synthetic market, built once per session and argument set. Tests
    must not write into it (copy it first)."""
    from gogooku3.devtools.seed_features import CI_MARKET, seed_features
    from gogooku3.lake import open_lake

    built: dict[tuple, Path] = {}

    def factory(signal: float = 1.0, seed: int = 7, **market: Any) -> Path:
        spec = {**CI_MARKET, **market}
        key = (signal, seed, *sorted(spec.items()))
        if key not in built:
            root = tmp_path_factory.mktemp(f"features_s{signal:g}_n{spec['n_codes']}")
            seed_features(
                open_lake(root),
                spec["n_codes"],
                spec["start"],
                spec["end"],
                seed=seed,
                signal=signal,
            )
            built[key] = root
        return built[key]

    return factory


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real redis-server (Debian's package, installed when missing) for the session, on a Unix
    socket: its ``unix://`` URL. Tests keep apart by their own keys."""
    from gogooku3.devtools.redis_server import running_redis_server

    docker_env.need_host_package("redis-server")
    with running_redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real ``mlflow server`` for the session (SQLite store, artifacts proxied to a local S3
    server's bucket under ``mlflow/``). Its ``s3`` attribute is that S3 server. Tests keep apart by
    their own experiment and model names."""
    from gogooku3.devtools.mlflow_server import running_mlflow_server
    from gogooku3.devtools.s3_server import running_s3_server

    with running_s3_server() as s3, running_mlflow_server(tmp_path_factory.mktemp("mlflow"), s3) as server:
        server.s3 = s3
        yield server


@pytest.fixture(scope="session")
def walk_forward_factory(features_lake_factory, tmp_path_factory) -> Callable[..., dict]:
    """``factory(signal=1.0, features=None, max_epochs=3)`` -> the summary of a walk-forward run of
    the tiny network (at most ``max_epochs``, patience 1, two threads) over the CI market's
    features lake, run once per session and argument set; its out folder is the parent of
    ``summary["oos_predictions"]``. Tests must not write into it."""
    from gogooku3.devtools.seed_features import CI_MARKET
    from gogooku3.lake import open_lake
    from gogooku3.training.trainer import TrainConfig
    from gogooku3.training.walkforward import RunConfig, run_walk_forward

    done: dict[tuple, dict] = {}

    def factory(signal: float = 1.0, features: tuple[str, ...] | None = None, max_epochs: int = 3) -> dict:
        key = (signal, features, max_epochs)
        if key not in done:
            cfg = RunConfig(
                start=CI_MARKET["start"],
                end=CI_MARKET["end"],
                out_dir=tmp_path_factory.mktemp("walk_forward"),
                threads=2,
                features=features,
                train=TrainConfig(size="tiny", max_epochs=max_epochs, patience=1),
            )
            done[key] = run_walk_forward(cfg, open_lake(features_lake_factory(signal=signal)))
        return done[key]

    return factory
