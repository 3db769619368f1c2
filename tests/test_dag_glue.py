"""The Airflow glue in dags/gogooku3_airflow: connections -> settings, run options, the JST day a
run covers, and the failure callback (delivering to a real capture server)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from types import SimpleNamespace

import pendulum
import pytest

# Importing Airflow configures the root logger; undo that so other test modules see pytest's setup.
_root = logging.getLogger()
_saved_logging = (list(_root.handlers), _root.level)
from airflow.sdk import Connection  # noqa: E402

_root.handlers[:] = _saved_logging[0]
_root.setLevel(_saved_logging[1])

from gogooku3_airflow import callbacks, hooks  # noqa: E402
from gogooku3_airflow.hooks import resolve_settings, resolve_slack, secret_values  # noqa: E402
from gogooku3_airflow.runconf import RunConfError  # noqa: E402
from gogooku3_airflow.tasks import fetch_dataset, fetch_days, requested_datasets  # noqa: E402
from gogooku3_airflow.timetables import run_day  # noqa: E402

from gogooku3.config import ConfigError, Secret  # noqa: E402
from gogooku3.devtools.slack_capture import running_slack_capture  # noqa: E402

DATASETS = (
    "trading_calendar",
    "listed_info",
    "daily_quotes",
    "statements",
    "topix",
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
)


def conn(conn_id: str, **fields) -> Connection:
    """A connection exactly as Airflow builds it from an ``AIRFLOW_CONN_<ID>`` JSON value."""
    return Connection.from_json(json.dumps(fields), conn_id=conn_id)


def getter(*conns: Connection):
    by_id = {c.conn_id: c for c in conns}
    return lambda conn_id: by_id.get(conn_id)


# -- connections -> settings ---------------------------------------------------------------------


def test_no_connections_fall_back_to_env() -> None:
    env = {"JQUANTS_API_KEY": "env-key-123", "JQUANTS_PLAN": "light", "GOGOOKU3_LAKE_URI": "/tmp/lake"}
    s = resolve_settings(getter(), env)
    assert s.jquants.api_key.get() == "env-key-123"
    assert s.jquants.plan == "light" and s.jquants.rate_per_minute == 60
    assert s.lake_uri == "/tmp/lake"
    assert not s.slack.configured


def test_jquants_v2_connection_overlays_env() -> None:
    env = {"JQUANTS_API_KEY": "env-key-123", "GOGOOKU3_JQUANTS_CONCURRENCY": "3"}
    c = conn(
        "jquants",
        conn_type="http",
        host="http://127.0.0.1:8765/v2/",
        password="conn-api-key-456",
        extra={"api_version": "v2", "plan": "premium", "pacer_dir": "/shared/pacer"},
    )
    j = resolve_settings(getter(c), env).jquants
    assert j.api_version == "v2"
    assert j.base_url == "http://127.0.0.1:8765/v2"
    assert j.api_key.get() == "conn-api-key-456"
    assert j.plan == "premium" and j.rate_per_minute == 500  # the rate follows the connection's plan
    assert j.concurrency == 3  # not in the connection: the environment's value stays
    assert j.pacer_dir == "/shared/pacer"


def test_jquants_connection_pacer_url_is_checked_and_wins_over_the_environment() -> None:
    env = {"GOGOOKU3_PACER_URL": "redis://env-redis:6379/0"}
    c = conn("jquants", conn_type="http", password="k", extra={"pacer_url": "redis://broker:6379/1"})
    assert resolve_settings(getter(c), env).jquants.pacer_url == "redis://broker:6379/1"
    assert (
        resolve_settings(getter(conn("jquants", password="k")), env).jquants.pacer_url
        == env["GOGOOKU3_PACER_URL"]
    )
    bad = conn("jquants", conn_type="http", password="k", extra={"pacer_url": "https://broker"})
    with pytest.raises(ConfigError, match=r"connection 'jquants': extra.pacer_url: expected a redis://"):
        resolve_settings(getter(bad), {})


def test_extra_api_key_wins_and_explicit_env_rate_is_kept() -> None:
    env = {"JQUANTS_RATE_PER_MINUTE": "100"}
    c = conn(
        "jquants",
        conn_type="http",
        password="pw-ignored",
        extra={"api_key": "extra-key-789", "plan": "premium"},
    )
    j = resolve_settings(getter(c), env).jquants
    assert j.api_key.get() == "extra-key-789"
    assert j.rate_per_minute == 100
    assert j.base_url == "https://api.jquants.com/v2"


def test_jquants_v1_connection_uses_login_and_password() -> None:
    c = conn(
        "jquants",
        conn_type="http",
        login="quant@example.com",
        password="emulator-password",
        extra={"api_version": "v1", "plan": "standard"},
    )
    j = resolve_settings(getter(c), {}).jquants
    assert j.api_version == "v1"
    assert j.base_url == "https://api.jquants.com/v1"  # switching protocol switches the default URL
    assert j.email.get() == "quant@example.com" and j.password.get() == "emulator-password"
    assert not j.api_key
    j.check_credentials()


def test_jquants_uri_form_host_is_completed() -> None:
    c = Connection.from_uri("http://:secret-key-0001@api.example.com:8443/v2?plan=light", conn_id="jquants")
    j = resolve_settings(getter(c), {}).jquants
    assert j.base_url == "https://api.example.com:8443/v2"
    assert j.api_key.get() == "secret-key-0001" and j.plan == "light"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"api_version": "v3"}, "extra.api_version='v3'"),
        ({"plan": "gold"}, "extra.plan='gold'"),
        ({"rate_per_minute": "fast"}, "extra.rate_per_minute='fast'"),
        ({"concurrency": 0}, "extra.concurrency=0"),
        ({"rate_per_minute": "nan"}, "extra.rate_per_minute='nan' must be a finite number"),
        ({"rate_per_minute": float("inf")}, "extra.rate_per_minute=inf must be a finite number"),
        ({"timeout_s": "inf"}, "extra.timeout_s='inf' must be a finite number"),
    ],
)
def test_malformed_jquants_connection_names_the_field(extra: dict, named: str) -> None:
    c = conn("jquants", conn_type="http", password="k-12345", extra=extra)
    with pytest.raises(ConfigError) as err:
        resolve_settings(getter(c), {})
    assert "connection 'jquants'" in str(err.value) and named in str(err.value)


def test_slack_and_s3_connections() -> None:
    slack = conn(
        "slack_alerts",
        conn_type="slack",
        password="xoxb-bot-token",
        extra={"channel": "#ops", "base_url": "http://127.0.0.1:9/api/"},
    )
    s3 = conn(
        "s3_lake",
        conn_type="aws",
        login="AKIAEXAMPLE",
        password="s3-secret-key",
        extra={
            "endpoint_url": "http://127.0.0.1:9000",
            "region_name": "ap-northeast-1",
            "lake_uri": "s3://lake/raw-test",
        },
    )
    s = resolve_settings(getter(slack, s3), {})
    assert s.slack.token.get() == "xoxb-bot-token" and s.slack.channel == "#ops"
    assert s.slack.base_url == "http://127.0.0.1:9/api/"
    assert s.s3.endpoint_url == "http://127.0.0.1:9000" and s.s3.region == "ap-northeast-1"
    assert s.s3.access_key_id.get() == "AKIAEXAMPLE" and s.s3.secret_access_key.get() == "s3-secret-key"
    assert s.lake_uri == "s3://lake/raw-test"
    assert resolve_slack(getter(slack), {}) == s.slack
    secrets = {x.get() for x in secret_values(s)}
    assert {"xoxb-bot-token", "AKIAEXAMPLE", "s3-secret-key"} <= secrets
    # Settings print without their secrets.
    assert "s3-secret-key" not in repr(s) and "xoxb-bot-token" not in repr(s)


def test_bad_s3_endpoint_is_named() -> None:
    s3 = conn("s3_lake", conn_type="aws", extra={"endpoint_url": "localhost:9000"})
    with pytest.raises(ConfigError, match="connection 's3_lake': extra.endpoint_url='localhost:9000'"):
        resolve_settings(getter(s3), {})


# -- run options and the day a run covers ------------------------------------------------------


def run_with(conf) -> SimpleNamespace:
    return SimpleNamespace(conf=conf)


def test_run_conf_defaults_to_all_datasets() -> None:
    assert requested_datasets(run_with(None)) == DATASETS
    assert requested_datasets(run_with({})) == DATASETS
    assert requested_datasets(run_with({"endpoints": ["topix", "topix", "daily_quotes"]})) == (
        "topix",
        "daily_quotes",
    )


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"endpoints": ["daily_quotes", "bogus"]}, "['bogus']"),
        ({"endpoints": "daily_quotes"}, "dag_run.conf['endpoints']='daily_quotes'"),
        ({"endpoints": []}, "dag_run.conf['endpoints']=[]"),
        ({"endpoint": ["topix"]}, "unknown key(s) ['endpoint']"),
        ({"endpoints": ["trades_spec"]}, "['trades_spec']"),  # a real dataset, but not this DAG's
    ],
)
def test_bad_run_conf_is_named(conf: dict, named: str) -> None:
    from gogooku3_airflow.runconf import JQUANTS_DAILY_CONF

    with pytest.raises(RunConfError) as err:
        JQUANTS_DAILY_CONF.parse(conf)
    assert named in str(err.value)


def test_run_day_is_the_jst_date_of_the_logical_date() -> None:
    # The run for 14 June: logical date = interval start = 14 June 00:00 JST = 13 June 15:00 UTC.
    start = pendulum.datetime(2024, 6, 13, 15, tz="UTC")
    assert run_day(start, start) == dt.date(2024, 6, 14)
    # `airflow dags trigger -l 2024-05-13` infers the interval from "now": the logical date wins.
    now_interval = pendulum.datetime(2026, 11, 19, 15, tz="UTC")
    logical = pendulum.datetime(2024, 5, 13, tz="UTC")
    assert run_day(logical, now_interval) == dt.date(2024, 5, 13)
    # 23:00 UTC is already the next day in Tokyo.
    assert run_day(pendulum.datetime(2024, 6, 14, 23, tz="UTC")) == dt.date(2024, 6, 15)
    # No logical date (Airflow 3 allows it): the interval, then run_after.
    assert run_day(None, start) == dt.date(2024, 6, 14)
    run = SimpleNamespace(logical_date=None, run_after=pendulum.datetime(2024, 6, 17, 10, tz="UTC"))
    assert run_day(dag_run=run) == dt.date(2024, 6, 17)
    with pytest.raises(ValueError, match="no logical date"):
        run_day()


@pytest.mark.parametrize("dataset", ["statements", "dividends"])
def test_late_batch_datasets_refetch_since_the_previous_trading_day(dataset) -> None:
    assert fetch_days("daily_quotes", dt.date(2024, 6, 17)) == [dt.date(2024, 6, 17)]
    # Monday: Friday's 24:30 batch and anything dated on the weekend.
    assert fetch_days(dataset, dt.date(2024, 6, 17)) == [
        dt.date(2024, 6, 14),
        dt.date(2024, 6, 15),
        dt.date(2024, 6, 16),
        dt.date(2024, 6, 17),
    ]
    assert fetch_days(dataset, dt.date(2024, 6, 18)) == [dt.date(2024, 6, 17), dt.date(2024, 6, 18)]


def test_weekly_margin_is_fetched_on_its_publication_day_by_record_date() -> None:
    # Friday 2024-06-14's balances are published on Tuesday the 18th; other days publish none.
    assert fetch_days("weekly_margin_interest", dt.date(2024, 6, 18)) == [dt.date(2024, 6, 14)]
    assert fetch_days("weekly_margin_interest", dt.date(2024, 6, 17)) == []
    # a holiday Monday (2024-07-15, Marine Day) moves the publication to Wednesday
    assert fetch_days("weekly_margin_interest", dt.date(2024, 7, 16)) == []
    assert fetch_days("weekly_margin_interest", dt.date(2024, 7, 17)) == [dt.date(2024, 7, 12)]


def test_fetch_task_skips_with_a_visible_reason_or_fails_without_retry(monkeypatch, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    monkeypatch.setenv("GOGOOKU3_LAKE_URI", str(tmp_path / "lake"))  # the task reads its calendar there

    saturday = pendulum.datetime(2024, 6, 15, tz="Asia/Tokyo")
    with pytest.raises(AirflowSkipException, match=r"2024-06-15 \(Saturday\) is not a JPX trading day"):
        fetch_dataset("daily_quotes", logical_date=saturday, dag_run=run_with({}))
    friday = pendulum.datetime(2024, 6, 14, tz="Asia/Tokyo")
    with pytest.raises(AirflowSkipException, match="daily_quotes: not in dag_run.conf"):
        fetch_dataset("daily_quotes", logical_date=friday, dag_run=run_with({"endpoints": ["topix"]}))
    # AirflowFailException: a bad conf fails at once instead of burning the retries.
    with pytest.raises(AirflowFailException, match=r"RunConfError: .*\['nope'\]"):
        fetch_dataset("topix", logical_date=friday, dag_run=run_with({"endpoints": ["topix", "nope"]}))


def test_tasks_follow_the_exchange_calendar_in_the_lake(monkeypatch, tmp_path) -> None:
    """A day the rule calls a trading day but the lake's calendar snapshot marks closed: the run skips."""
    import polars as pl
    from airflow.sdk.exceptions import AirflowSkipException
    from gogooku3_airflow.tasks import gate_raw

    from gogooku3.lake import open_lake

    monkeypatch.setenv("GOGOOKU3_LAKE_URI", str(tmp_path / "lake"))
    closed = dt.date(2024, 6, 12)  # a Wednesday
    snapshot = pl.DataFrame({"Date": [closed], "HolidayDivision": ["0"]})
    open_lake(str(tmp_path / "lake")).write_partition(
        "raw", "trading_calendar", dt.date(2024, 6, 11), snapshot, source="t"
    )
    when = pendulum.datetime(2024, 6, 12, tz="Asia/Tokyo")
    with pytest.raises(AirflowSkipException, match=r"2024-06-12 \(Wednesday\) is not a JPX trading day"):
        fetch_dataset("daily_quotes", logical_date=when, dag_run=run_with({}))
    with pytest.raises(AirflowSkipException, match="2024-06-12 is not a JPX trading day"):
        gate_raw("daily_quotes", logical_date=when, dag_run=run_with({}))


# -- the failure callback --------------------------------------------------------------------


def _failure_context(exc: BaseException) -> dict:
    interval_start = pendulum.datetime(2024, 6, 13, 15, tz="UTC")
    ti = SimpleNamespace(
        dag_id="jquants_daily",
        task_id="statements",
        try_number=5,
        log_url="http://127.0.0.1:8080/dags/jquants_daily/runs/r/tasks/statements?try_number=5",
    )
    return {
        "ti": ti,
        "dag_run": SimpleNamespace(run_id="scheduled__x", logical_date=interval_start, run_after=None),
        "logical_date": interval_start,
        "data_interval_start": interval_start,
        "run_id": "scheduled__x",
        "exception": exc,
    }


def test_alert_context_from_a_task_context() -> None:
    ctx = callbacks.alert_context(
        _failure_context(RuntimeError("boom with secret-key-0001\nline2")), redact=[Secret("secret-key-0001")]
    )
    assert (ctx.dag_id, ctx.task_id, ctx.try_number) == ("jquants_daily", "statements", 5)
    assert ctx.logical_date_jst == "2024-06-14 00:00 JST"  # not the UTC date (13 June)
    assert ctx.data_date == "2024-06-14"
    assert ctx.error_head.startswith("RuntimeError: boom with ***")
    assert "secret-key-0001" not in ctx.error_head
    assert ctx.log_url.endswith("try_number=5")


def test_failure_callback_delivers_to_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOGOOKU3_SLACK_TOKEN", "GOGOOKU3_SLACK_BASE_URL", "JQUANTS_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with running_slack_capture(expected_token="xoxb-bot-token") as cap:
        conns = getter(
            conn(
                "slack_alerts",
                conn_type="slack",
                password="xoxb-bot-token",
                extra={"channel": "#ops", "base_url": cap.base_url},
            ),
            conn("jquants", conn_type="http", password="jq-key-abcdef"),
        )
        monkeypatch.setattr(hooks, "airflow_connection", conns)
        callbacks.on_task_failure(_failure_context(RuntimeError("401 for jq-key-abcdef")))
        msgs = cap.messages()
    assert len(msgs) == 1
    dumped = json.dumps(msgs[0]["body"])
    assert msgs[0]["body"]["channel"] == "#ops"
    for value in (
        "jquants_daily",
        "statements",
        "2024-06-14 00:00 JST",
        "try_number=5",
        "RuntimeError: 401 for ***",
    ):
        assert value in dumped
    assert "jq-key-abcdef" not in dumped


def test_failure_callback_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(conn_id: str):
        raise RuntimeError("secrets backend down")

    monkeypatch.setattr(hooks, "airflow_connection", broken)
    monkeypatch.delenv("GOGOOKU3_SLACK_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="gogooku3.alerts"):
        callbacks.on_task_failure(_failure_context(ValueError("the task's own error")))
        callbacks.on_task_failure({})  # not even a task instance: logged, not raised
    assert "secrets backend down" in caplog.text
    assert "SLACK ALERT (not sent" in caplog.text and "the task's own error" in caplog.text


def test_a_task_that_only_touches_the_lake_needs_no_jquants_credentials(monkeypatch, tmp_path) -> None:
    """publish reads manifests; it must run where no J-Quants key is configured at all."""
    import polars as pl
    from gogooku3_airflow.assets import JQUANTS_DAILY_RAW, RAW_ASSETS
    from gogooku3_airflow.tasks import publish_raw

    from gogooku3.lake import open_lake

    for var in ("JQUANTS_API_KEY", "JQUANTS_API_VERSION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hooks, "airflow_connection", getter())
    monkeypatch.setenv("GOGOOKU3_LAKE_URI", str(tmp_path / "lake"))
    day = dt.date(2024, 6, 18)  # a Tuesday: Friday the 14th's weekly margin balances come out
    lake = open_lake(str(tmp_path / "lake"))
    for name in DATASETS:
        partition = dt.date(2024, 6, 14) if name == "weekly_margin_interest" else day
        frame = pl.DataFrame({"Date": [partition]})
        if name == "trading_calendar":  # read by every task that opens the lake
            frame = frame.with_columns(HolidayDivision=pl.lit("1"))
        lake.write_partition("raw", name, partition, frame, source="test")

    class Recorder:
        def __init__(self) -> None:
            self.added: list[tuple[str, dict]] = []

        def add(self, asset, extra) -> None:
            self.added.append((asset.uri, extra))

    events = {JQUANTS_DAILY_RAW: Recorder()}
    published = publish_raw(
        JQUANTS_DAILY_RAW,
        logical_date=pendulum.datetime(2024, 6, 18, tz="Asia/Tokyo"),
        dag_run=run_with({}),
        outlet_events=events,
    )
    assert sorted(published) == sorted(DATASETS)
    assert published["weekly_margin_interest"]["date"] == "2024-06-14"
    assert published["topix"]["date"] == "2024-06-18"
    assert [uri for uri, _ in events[JQUANTS_DAILY_RAW].added] == [RAW_ASSETS[n].uri for n in DATASETS]
    # the fetch tasks, which call the API, still refuse to start without a key
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="JQUANTS_API_KEY is not set"):
        fetch_dataset(
            "topix", logical_date=pendulum.datetime(2024, 6, 14, tz="Asia/Tokyo"), dag_run=run_with({})
        )
