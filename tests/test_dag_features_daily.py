"""features_daily's glue: which dates a run builds (conf, asset events, logical date), where it runs
(the runtime plan and its loud fallbacks) and what its task container receives (the base operator of
every task container). The gates' failure path is in test_dag_gates.py."""

from __future__ import annotations

import datetime as dt
import logging
import os
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException
from gogooku3_airflow import operators, tasks
from gogooku3_airflow.runconf import FEATURES_DAILY_CONF, RunConfError

from gogooku3.containers import TaskRuntime

D = dt.date


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"start": "2024-05-01"}, "dag_run.conf['end'] is missing: 'start' and 'end' go together"),
        ({"engine": "gpu"}, "dag_run.conf['engine'] needs 'start' and 'end' as well"),
        ({"start": "2024-05-01", "end": "2024-05-02", "engine": "tpu"}, "'tpu'"),
        ({"start": "2024-05-01", "end": "2024-13-02"}, "dag_run.conf['end']"),
        ({"start": "202451", "end": "2024-05-02"}, "dag_run.conf['start']: bad date '202451'"),
        ({"start": 20240501, "end": "2024-05-02"}, "dag_run.conf['start']: bad date 20240501"),
        ({"start": "2024-05-01", "end": "2024-04-31"}, "'2024-04-31': that day does not exist"),
        (
            {"start": "2024-05-03", "end": "2024-05-02"},
            "dag_run.conf['start'] 2024-05-03 is after dag_run.conf['end'] 2024-05-02",
        ),
        ({"from": "2024-05-01"}, "unknown key(s) ['from']"),
    ],
)
def test_bad_conf_is_named(conf, named) -> None:
    with pytest.raises(RunConfError) as err:
        FEATURES_DAILY_CONF.parse(conf)
    assert named in str(err.value)


def feature_range(conf=None, events=None, logical_date=None):
    return tasks.feature_range(
        logical_date=logical_date, dag_run=SimpleNamespace(conf=conf), triggering_asset_events=events
    )


def test_conf_then_asset_events_then_logical_date() -> None:
    conf = {"start": "2024-05-01", "end": "2024-05-02", "engine": "cpu"}
    assert feature_range(conf) == (D(2024, 5, 1), D(2024, 5, 2), "cpu")
    events = {
        "raw": [SimpleNamespace(extra={"date": "2024-05-10", "rows": 4000})],
        "interim": [SimpleNamespace(extra={"start": "2024-05-07", "end": "2024-05-16"})],
    }
    assert feature_range({}, events) == (D(2024, 5, 7), D(2024, 5, 16), None)
    # A manual run without conf: the run's JST logical date (15:00 UTC is the next day in JST).
    manual = feature_range(logical_date=pendulum.datetime(2024, 5, 12, 15, tz="UTC"))
    assert manual == (D(2024, 5, 13), D(2024, 5, 13), None)
    with pytest.raises(AirflowFailException, match="RunConfError"):
        feature_range({"start": "x", "end": "y"})


def test_plan_logs_a_cpu_fallback_loudly_and_refuses_a_gpu_it_cannot_have(monkeypatch, caplog) -> None:
    cpu = TaskRuntime("cpu", "gogooku3/task-cpu:latest", 'no GPU: could not select device driver ""')
    monkeypatch.setattr("gogooku3.containers.plan_task_runtime", lambda want_gpu=True: cpu)
    run = SimpleNamespace(conf={"start": "2024-05-01", "end": "2024-05-02"})
    with caplog.at_level(logging.WARNING):
        plan = tasks.plan_feature_build(logical_date=None, dag_run=run, triggering_asset_events=None)
    assert plan["mode"] == "cpu" and plan["engine"] == "cpu" and plan["image"] == cpu.image
    assert "engine has no GPU runtime; running the same image on CPU" in caplog.text
    assert tasks.choose_build(plan) == "build_features"
    gpu_run = SimpleNamespace(conf={"start": "2024-05-01", "end": "2024-05-02", "engine": "gpu"})
    with pytest.raises(AirflowFailException, match="asked for engine 'gpu'"):
        tasks.plan_feature_build(logical_date=None, dag_run=gpu_run, triggering_asset_events=None)
    none = TaskRuntime("in-process", None, "Docker engine unreachable")
    monkeypatch.setattr("gogooku3.containers.plan_task_runtime", lambda want_gpu=True: none)
    with caplog.at_level(logging.WARNING):
        plan = tasks.plan_feature_build(logical_date=None, dag_run=run, triggering_asset_events=None)
    assert tasks.choose_build(plan) == "build_features_in_process"
    assert "NO DOCKER ENGINE" in caplog.text


def test_local_lake_paths_are_absolute_and_s3_is_not_mounted(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert operators.local_lake_path("./data/lake") == str(tmp_path / "data" / "lake")
    assert operators.local_lake_path("file:///srv/lake") == "/srv/lake"
    assert operators.local_lake_path("s3://bucket/prefix") is None
    # The scheme in any case, as open_lake reads it: never bind-mounted as a local "S3:" directory.
    assert operators.local_lake_path("S3://bucket/prefix") is None


IMAGE_USER = (10001, 10001)


def test_container_for_a_local_lake_has_the_lake_mounted_and_no_network_or_gpu(tmp_path) -> None:
    from gogooku3.config import Settings

    op = operators.FeatureBuildOperator(task_id="build_features")
    plan = {"start": "2024-05-01", "end": "2024-05-02", "engine": "cpu", "image": "img:cpu", "mode": "cpu"}
    op.configure(plan, Settings(lake_uri=str(tmp_path / "lake")), IMAGE_USER)
    assert (op.image, op.network_mode, op.device_requests) == ("img:cpu", "none", None)
    assert op.user == "10001:10001"
    assert (op.auto_remove, op.mount_tmp_dir) == ("success", False)
    (mount,) = op.mounts
    assert (mount["Source"], mount["Target"], mount["Type"]) == (str(tmp_path / "lake"), "/lake", "bind")
    assert (
        op.command == "features build --start 2024-05-01 --end 2024-05-02 --engine cpu --lake /lake".split()
    )
    assert "CUDA_VISIBLE_DEVICES" not in op.environment and "RMM_POOL_SIZE" not in op.environment


class RecordingDockerApi:
    """The docker-py APIClient calls DockerOperator makes, recording what the engine would receive."""

    def __init__(self, image_user: str = "10001:10001") -> None:
        self.image_user = image_user
        self.created: dict | None = None
        self.removed: list[str] = []

    def inspect_image(self, image: str) -> dict:
        return {"Id": "sha256:0", "Config": {"User": self.image_user}}

    def images(self, name: str) -> list[dict]:
        return [{"Id": "sha256:0"}]  # present: nothing is pulled

    def create_host_config(self, **kwargs) -> dict:
        return kwargs

    def create_container(self, **kwargs) -> dict:
        self.created = kwargs
        return {"Id": "c0ffee"}

    def attach(self, **kwargs):
        return iter([b"features: wrote 1 partitions\n"])

    def start(self, container_id: str) -> None:
        pass

    def wait(self, container_id: str) -> dict:
        return {"StatusCode": 0}

    def remove_container(self, container_id: str, **kwargs) -> None:
        self.removed.append(container_id)


def run_operator(monkeypatch, settings, plan, api: RecordingDockerApi) -> operators.FeatureBuildOperator:
    """execute() as the task runs it, the engine replaced by ``api``."""
    from gogooku3_airflow import hooks

    monkeypatch.setattr(hooks, "task_settings", lambda **_: settings)
    op = operators.FeatureBuildOperator(task_id="build_features")
    op.hook = SimpleNamespace(api_client=api)
    ti = SimpleNamespace(xcom_pull=lambda task_ids: plan)
    op.execute({"ti": ti})
    return op


S3_PLAN = {"start": "2024-05-01", "end": "2024-05-01", "engine": "gpu", "image": "img:gpu", "mode": "gpu"}


def s3_settings(**changes):
    from dataclasses import replace

    from gogooku3.config import S3Settings, Secret, Settings

    settings = Settings(
        lake_uri="s3://lake-bucket/prefix",
        s3=S3Settings(
            "http://127.0.0.1:9000",
            "ap-northeast-1",
            Secret("AKIAFEATURESTEST"),
            Secret("s3-secret-never-rendered"),
        ),
        rmm_pool_size=70 * 2**30,
    )
    return replace(settings, **changes)


def test_an_s3_container_receives_the_credentials_and_never_renders_them(monkeypatch) -> None:
    api = RecordingDockerApi()
    op = run_operator(monkeypatch, s3_settings(), S3_PLAN, api)
    created = api.created
    assert created is not None and api.removed == ["c0ffee"]
    env = created["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAFEATURESTEST"
    assert env["AWS_SECRET_ACCESS_KEY"] == "s3-secret-never-rendered"
    assert env["GOGOOKU3_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env["AWS_DEFAULT_REGION"] == "ap-northeast-1" and env["RMM_POOL_SIZE"] == str(70 * 2**30)
    # the build's process starts with its allocator settings (read once, at start)
    from gogooku3.allocator import BUILD_ENVIRONMENT

    assert {k: env.get(k) for k in BUILD_ENVIRONMENT} == BUILD_ENVIRONMENT
    assert "CUDA_VISIBLE_DEVICES" in env
    host = created["host_config"]
    assert host["network_mode"] == "host" and host["mounts"] == []
    (request,) = host["device_requests"]
    assert request["Capabilities"] == [["gpu"]] and request["Count"] == -1
    assert created["image"] == "img:gpu" and created["command"][-2:] == ["--lake", "s3://lake-bucket/prefix"]
    # the keys travel only in the container's environment: no rendered field carries them
    assert "private_environment" not in op.template_fields
    rendered = repr([getattr(op, f) for f in op.template_fields])
    assert "AKIAFEATURESTEST" not in rendered and "s3-secret-never-rendered" not in rendered


def test_an_s3_container_joins_the_network_the_deployment_names(monkeypatch) -> None:
    """docker-compose: the S3 server is ``s3`` on the stack's network, which the host cannot resolve."""
    from gogooku3.config import Settings

    assert Settings.from_env({"GOGOOKU3_TASK_NETWORK": "gogooku3_default"}).task_network == "gogooku3_default"
    api = RecordingDockerApi()
    run_operator(monkeypatch, s3_settings(task_network="gogooku3_default"), S3_PLAN, api)
    assert api.created["host_config"]["network_mode"] == "gogooku3_default"


def test_the_container_runs_as_the_images_user_or_the_configured_one_never_root(monkeypatch) -> None:
    api = RecordingDockerApi(image_user="10001:10001")
    run_operator(monkeypatch, s3_settings(), S3_PLAN, api)
    assert api.created["user"] == "10001:10001"  # not the worker's uid (root here)
    api = RecordingDockerApi(image_user="10001:10001")
    run_operator(monkeypatch, s3_settings(task_user=(50000, 0)), S3_PLAN, api)
    assert api.created["user"] == "50000:0"
    for refused, named in (("", "has no USER"), ("0:0", "never run as root"), ("gogooku3", "numeric")):
        api = RecordingDockerApi(image_user=refused)
        with pytest.raises(AirflowFailException, match=named):
            run_operator(monkeypatch, s3_settings(), S3_PLAN, api)
        assert api.created is None


@pytest.mark.skipif(os.geteuid() != 0, reason="hands lake directories to another uid: needs a root worker")
def test_a_root_worker_opens_a_local_lake_to_the_container_user(monkeypatch, tmp_path) -> None:
    from gogooku3.config import Settings

    lake = tmp_path / "lake"
    (lake / "raw" / "daily_quotes").mkdir(parents=True)
    lake.chmod(0o700)
    kept = lake / "features" / "features" / "date=2024-04-30"  # outside the build's range
    rebuilt = lake / "features" / "features" / "date=2024-05-01"
    checkpoint = lake / "features" / "checkpoints" / "date=2024-05-01"  # the build rewrites it too
    for folder in (kept, rebuilt, checkpoint):
        folder.mkdir(parents=True)
    plan = {"start": "2024-05-01", "end": "2024-05-02", "engine": "cpu", "image": "img:cpu", "mode": "cpu"}
    api = RecordingDockerApi()
    run_operator(monkeypatch, Settings(lake_uri=str(lake)), plan, api)
    assert api.created["user"] == "10001:10001"
    assert api.created["host_config"]["network_mode"] == "none"
    opened = (lake, lake / "features" / "features", rebuilt, lake / "features" / "checkpoints", checkpoint)
    owners = {p: (p.stat().st_uid, p.stat().st_gid) for p in opened}
    assert set(owners.values()) == {IMAGE_USER}, owners
    assert (kept.stat().st_uid, (lake / "raw").stat().st_uid) == (0, 0)  # nothing else changes hands
