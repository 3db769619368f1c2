"""features_daily's glue: which dates a run builds, where it runs, and the gates' failure path
(a failing gate names its expectations, and the standard failure callback delivers them to Slack)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dags"))

from airflow.sdk.exceptions import AirflowFailException  # noqa: E402
from gogooku3_airflow import features as glue  # noqa: E402
from gogooku3_airflow.callbacks import on_task_failure  # noqa: E402
from gogooku3_airflow.fetching import RunConfError  # noqa: E402
from gogooku3_airflow.gates import gate_days  # noqa: E402

from gogooku3.containers import TaskRuntime  # noqa: E402
from gogooku3.devtools.slack_capture import running_slack_capture  # noqa: E402
from gogooku3.lake import open_lake  # noqa: E402
from gogooku3.market import MarketConfig, generate_market  # noqa: E402

D = dt.date


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"start": "2024-05-01"}, "both 'start' and 'end'"),
        ({"engine": "gpu"}, "no 'start'/'end'"),
        ({"start": "2024-05-01", "end": "2024-05-02", "engine": "tpu"}, "'tpu'"),
        ({"start": "2024-05-01", "end": "2024-13-02"}, "dag_run.conf['end']"),
        ({"start": "2024-05-03", "end": "2024-05-02"}, "start 2024-05-03 is after end 2024-05-02"),
        ({"from": "2024-05-01"}, "unknown key(s) ['from']"),
    ],
)
def test_bad_conf_is_named(conf, named) -> None:
    with pytest.raises(RunConfError) as err:
        glue.parse_features_conf(conf)
    assert named in str(err.value)


def test_conf_then_asset_events_then_logical_date() -> None:
    conf = {"start": "2024-05-01", "end": "2024-05-02", "engine": "cpu"}
    assert glue.parse_features_conf(conf) == glue.FeatureRun(D(2024, 5, 1), D(2024, 5, 2), "cpu")
    events = {
        "raw": [SimpleNamespace(extra={"date": "2024-05-10", "rows": 4000})],
        "interim": [SimpleNamespace(extra={"start": "2024-05-07", "end": "2024-05-16"})],
    }
    by_events = glue.feature_run({"dag_run": SimpleNamespace(conf={}), "triggering_asset_events": events})
    assert (by_events.start, by_events.end) == (D(2024, 5, 7), D(2024, 5, 16))
    # A manual run without conf: the run's JST logical date (15:00 UTC is the next day in JST).
    manual = glue.feature_run({"logical_date": pendulum.datetime(2024, 5, 12, 15, tz="UTC")})
    assert (manual.start, manual.end) == (D(2024, 5, 13), D(2024, 5, 13))
    with pytest.raises(AirflowFailException, match="RunConfError"):
        glue.feature_run({"dag_run": SimpleNamespace(conf={"start": "x", "end": "y"})})


def test_plan_logs_a_cpu_fallback_loudly_and_refuses_a_gpu_it_cannot_have(monkeypatch, caplog) -> None:
    cpu = TaskRuntime("cpu", "gogooku3/task-cpu:latest", 'no GPU: could not select device driver ""')
    monkeypatch.setattr("gogooku3.containers.plan_task_runtime", lambda want_gpu=True: cpu)
    ctx = {"dag_run": SimpleNamespace(conf={"start": "2024-05-01", "end": "2024-05-02"})}
    with caplog.at_level(logging.WARNING):
        plan = glue.plan_task(ctx)
    assert plan["mode"] == "cpu" and plan["engine"] == "cpu" and plan["image"] == cpu.image
    assert "engine has no GPU runtime; running the same image on CPU" in caplog.text
    assert glue.choose_build(plan) == "build_features"
    gpu_conf = {
        "dag_run": SimpleNamespace(conf={"start": "2024-05-01", "end": "2024-05-02", "engine": "gpu"})
    }
    with pytest.raises(AirflowFailException, match="asked for engine 'gpu'"):
        glue.plan_task(gpu_conf)
    none = TaskRuntime("in-process", None, "Docker engine unreachable")
    monkeypatch.setattr("gogooku3.containers.plan_task_runtime", lambda want_gpu=True: none)
    with caplog.at_level(logging.WARNING):
        plan = glue.plan_task(ctx)
    assert glue.choose_build(plan) == "build_features_in_process"
    assert "NO DOCKER ENGINE" in caplog.text


def test_local_lake_paths_are_absolute_and_s3_is_not_mounted(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert glue.local_lake_path("./data/lake") == str(tmp_path / "data" / "lake")
    assert glue.local_lake_path("file:///srv/lake") == "/srv/lake"
    assert glue.local_lake_path("s3://bucket/prefix") is None


@pytest.fixture(scope="module")
def day_of_quotes():
    market = generate_market(MarketConfig(seed=5, n_codes=60, start=D(2024, 1, 1), end=D(2024, 2, 29)))
    day = D(2024, 2, 15)
    return market.frame("daily_quotes", day), day


def test_failing_gate_names_the_expectation_and_the_alert_carries_it(tmp_path, day_of_quotes) -> None:
    quotes, day = day_of_quotes
    lake = open_lake(str(tmp_path / "lake"))
    lake.write_partition("raw", "daily_quotes", day, quotes.vstack(quotes.head(3)), source="test")
    with pytest.raises(AirflowFailException) as err:
        gate_days(lake, "raw", "daily_quotes", [day], build_docs=False)
    message = str(err.value)
    assert message.startswith("QualityGateFailed: raw/daily_quotes")
    assert "expect_compound_columns_to_be_unique(Date,Code)" in message
    assert lake.latest_good("raw", "daily_quotes") is None
    assert lake.list_artifacts("raw", "daily_quotes", day), "the failed validation is kept next to the data"

    # The DAGs' standard failure callback turns that error into the Slack alert.
    with running_slack_capture(expected_token="xoxb-gate-test") as slack:
        os.environ["GOGOOKU3_SLACK_TOKEN"] = "xoxb-gate-test"
        os.environ["GOGOOKU3_SLACK_BASE_URL"] = slack.base_url
        try:
            ti = SimpleNamespace(
                task_id="gate_daily_quotes", dag_id="jquants_daily", try_number=1, log_url="http://x/log"
            )
            on_task_failure(
                {
                    "exception": err.value,
                    "ti": ti,
                    "task_instance": ti,
                    "dag": SimpleNamespace(dag_id="jquants_daily"),
                    "logical_date": pendulum.datetime(2024, 2, 14, 15, tz="UTC"),
                }
            )
        finally:
            del os.environ["GOGOOKU3_SLACK_TOKEN"], os.environ["GOGOOKU3_SLACK_BASE_URL"]
        (alert,) = slack.messages()
    text = str(alert["body"])
    assert "expect_compound_columns_to_be_unique(Date,Code)" in text
    assert "gate_daily_quotes" in text


def test_missing_partition_fails_the_gate_naming_it(tmp_path) -> None:
    lake = open_lake(str(tmp_path / "lake"))
    with pytest.raises(AirflowFailException, match="missing partition"):
        gate_days(lake, "features", "features", [D(2024, 2, 15)], build_docs=False)
