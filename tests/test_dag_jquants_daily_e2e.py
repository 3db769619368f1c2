"""``airflow dags test jquants_daily <date>`` end to end, as a subprocess on a throwaway AIRFLOW_HOME
(SQLite, migrated once for the module) against the J-Quants emulator over real HTTP.

* a local lake and an S3 lake (moto server over HTTP) receive exactly the ground-truth rows;
* rerunning the date rewrites byte-identical partitions (manifest checksums equal);
* ``publish`` records asset events with the partition's date, rows and checksum;
* a forced failure (a refused API key) sends a Slack alert that reaches the capture server with the
  DAG, task, logical date in JST, try number, log URL and the error's head - and no secret.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from airflow_harness import asset_events, tail, task_states
from airflow_harness import dags_test as run_dags_test
from lake_checks import JQUANTS_DAILY_TABLES, assert_raw_is_ground_truth

from gogooku3.calendar import previous_trading_day
from gogooku3.config import S3Settings
from gogooku3.devtools.s3_server import running_s3_server
from gogooku3.devtools.slack_capture import running_slack_capture
from gogooku3.emulator.testing import running_emulator, small_config
from gogooku3.jquants.datasets import get_dataset
from gogooku3.lake import open_lake
from gogooku3.pit import partition_published_on

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 5, 13)  # a Monday in earnings season: statements on the day and the Friday before
DATASETS = JQUANTS_DAILY_TABLES
SLACK_TOKEN = "xoxb-e2e-bot-token"


@pytest.fixture(scope="module")
def emulator():
    cfg = small_config(codes=200, start=dt.date(2024, 1, 1), end=dt.date(2024, 6, 28), page_size=50)
    with running_emulator(cfg) as emu:
        yield emu


@pytest.fixture(scope="module")
def slack():
    with running_slack_capture(expected_token=SLACK_TOKEN) as cap:
        yield cap


@pytest.fixture(scope="module")
def airflow_env(
    tmp_path_factory: pytest.TempPathFactory, airflow_env_factory, emulator, slack
) -> dict[str, str]:
    """A migrated throwaway AIRFLOW_HOME and the connections pointing at the local servers."""
    return airflow_env_factory(
        tmp_path_factory.mktemp("airflow_home"), emulator=emulator, slack=slack, slack_token=SLACK_TOKEN
    )


def dags_test(env: dict[str, str], day: dt.date, **extra_env: str):
    return run_dags_test(env, "jquants_daily", day, **extra_env)


def assert_ground_truth(lake, market, day: dt.date) -> None:
    assert_raw_is_ground_truth(lake, market, day)
    assert market.frame("statements", day).height > 0, "pick a day with statements to make this test bite"


def manifests(lake, day: dt.date) -> dict[str, tuple[int, str]]:
    return {name: (m.rows, m.checksum) for name in DATASETS for m in [lake.read_manifest("raw", name, day)]}


def test_local_lake_gets_ground_truth_and_rerun_is_identical(airflow_env, emulator, tmp_path) -> None:
    lake_dir = tmp_path / "lake"
    first = dags_test(airflow_env, DAY, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert first.returncode == 0, tail(first)
    lake = open_lake(str(lake_dir))
    assert_ground_truth(lake, emulator.market, DAY)
    before = manifests(lake, DAY)
    assert before["daily_quotes"][0] == emulator.market.frame("daily_quotes", DAY).height

    # Each dataset with a raw suite was gated where the run wrote a partition (weekly margin: not
    # on a Monday, when no record is published), and the gate marked it the latest good one.
    states = task_states(airflow_env, "jquants_daily")
    for name in ("daily_quotes", "indices", "short_selling", "weekly_margin_interest", "earnings_calendar"):
        partition = partition_published_on(name, DAY)
        if partition is None:
            assert states[f"gate_{name}"] == "skipped", (name, states)
        else:
            assert states[f"gate_{name}"] == "success", (name, states)
            assert lake.latest_good("raw", name) == partition, name

    # publish recorded one asset event per raw table, carrying the partition's date/rows/checksum.
    events = dict(asset_events(airflow_env))
    for name in DATASETS:
        extra = events[f"gogooku3://lake/raw/{name}"]
        assert extra["date"] == DAY.isoformat()
        assert (extra["rows"], extra["checksum"]) == before[name]

    again = dags_test(airflow_env, DAY, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert again.returncode == 0, tail(again)
    assert manifests(lake, DAY) == before
    assert_ground_truth(lake, emulator.market, DAY)
    # No secret reached the task logs (`dags test` prints them).
    for proc in (first, again):
        output = proc.stdout + proc.stderr
        assert "loc=tasks.py" in output  # the task logs are in there
        assert emulator.api_key not in output and SLACK_TOKEN not in output


def test_s3_lake_on_a_local_s3_server(airflow_env, emulator) -> None:
    with running_s3_server() as s3:
        settings: S3Settings = s3.s3_settings()
        conn = {
            "conn_type": "aws",
            "login": settings.access_key_id.get(),
            "password": settings.secret_access_key.get(),
            "extra": {"endpoint_url": s3.endpoint_url, "region_name": settings.region},
        }
        uri = s3.lake_uri("lake")
        proc = dags_test(airflow_env, DAY, GOGOOKU3_LAKE_URI=uri, AIRFLOW_CONN_S3_LAKE=json.dumps(conn))
        assert proc.returncode == 0, tail(proc)
        lake = open_lake(uri, settings)
        assert_ground_truth(lake, emulator.market, DAY)
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]]
        assert f"lake/raw/daily_quotes/date={DAY.isoformat()}/part-00000.parquet" in keys


def test_forced_failure_alerts_slack(airflow_env, slack, tmp_path) -> None:
    bad_key = "not-the-emulator-key-123"
    conn = json.loads(airflow_env["AIRFLOW_CONN_JQUANTS"]) | {"password": bad_key}
    n_before = len(slack.messages())
    proc = dags_test(
        airflow_env, DAY, GOGOOKU3_LAKE_URI=str(tmp_path / "lake"), AIRFLOW_CONN_JQUANTS=json.dumps(conn)
    )
    assert proc.returncode != 0, "a refused API key must fail the run"
    new = slack.messages()[n_before:]
    # the calendar, the run's first task, fails at once; nothing downstream runs
    assert len(new) == 1, f"expected one alert (trading_calendar fails at once), got {len(new)}"
    body = new[0]["body"]
    assert body["channel"] == "#gogooku3-e2e"
    fields = {
        f["text"].split("\n", 1)[0].strip("*"): f["text"].split("\n", 1)[1]
        for f in body["blocks"][1]["fields"]
    }
    assert fields["DAG"] == "`jquants_daily`"
    assert fields["Task"] == "`trading_calendar`"
    assert fields["Logical date (JST)"] == "2024-05-13 09:00 JST"  # 2024-05-13T00:00Z shown in JST
    assert fields["Data date (JST)"] == DAY.isoformat()
    assert fields["Try"] == "1"  # AuthError is not retried
    error = body["blocks"][2]["text"]["text"]
    assert "AuthError" in error
    log_link = body["blocks"][3]["text"]["text"]
    assert log_link.startswith("<http://127.0.0.1:8080/dags/jquants_daily/runs/")
    assert "/tasks/trading_calendar?try_number=1|" in log_link
    assert bad_key not in json.dumps(body)
    assert not (tmp_path / "lake" / "raw" / "trading_calendar").exists()
    assert not (tmp_path / "lake" / "raw" / "listed_info").exists()


def test_ground_truth_helper_detects_a_wrong_partition(tmp_path, emulator) -> None:
    """The comparison above can fail: a partition with one row dropped is caught."""
    lake = open_lake(str(tmp_path / "lake"))
    for name in DATASETS:
        prev = previous_trading_day(DAY)
        for i in range((DAY - prev).days + 1):
            d = prev + dt.timedelta(days=i)
            frame = emulator.market.frame(name, d)
            if name == "daily_quotes" and d == DAY:
                frame = frame.slice(1)
            if not frame.is_empty() or d == DAY:
                ds = get_dataset(name)
                lake.write_partition(
                    "raw", name, d, frame, source="test", sort_by=ds.key, date_column=ds.partition_by
                )
    with pytest.raises(AssertionError, match="daily_quotes"):
        assert_ground_truth(lake, emulator.market, DAY)
    assert isinstance(lake.read_partition("raw", "topix", DAY), pl.DataFrame)
