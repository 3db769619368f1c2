"""trades_spec_weekly: DAG structure, the publication-day timetable (JST, holiday Thursdays), the
fetch window and interim range, dag_run.conf validation, the window split and the quality gate's
failure path (its error, which the Slack alert shows, names the failing expectations)."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pendulum
import polars as pl
import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.base import TimeRestriction
from gogooku3_airflow import callbacks, tasks
from gogooku3_airflow.runconf import TRADES_SPEC_WEEKLY_CONF, RunConfError
from gogooku3_airflow.tasks import expand_range, gate_trades_spec
from gogooku3_airflow.timetables import JpxPublicationDayTimetable

from gogooku3.calendar import publication_days
from gogooku3.flows import expand_to_lake, expand_trades_spec
from gogooku3.flows.fetching import (
    FetchedWindow,
    TradesSpecWindowError,
    fetch_window,
    split_by_published,
)
from gogooku3.jquants.datasets import TRADES_SPEC
from gogooku3.lake import open_lake

DAGS = Path(__file__).resolve().parents[1] / "dags"

JST = "Asia/Tokyo"
TT = JpxPublicationDayTimetable()


def jst(y: int, m: int, d: int, hh: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(y, m, d, hh, tz=JST)


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("trades_spec_weekly_dag", DAGS / "trades_spec_weekly.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.trades_spec_weekly()  # the @dag function builds the DAG


# ------------------------------------------------------------------------------ DAG structure


def test_tasks_dependencies_pool_and_conventions(dag) -> None:
    assert dag.dag_id == "trades_spec_weekly"
    assert set(dag.task_ids) == {"fetch_trades_spec", "expand", "gate", "publish"}
    down = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert down == {
        "fetch_trades_spec": {"expand"},
        "expand": {"gate", "publish"},
        "gate": {"publish"},
        "publish": set(),
    }
    assert dag.catchup is True
    assert isinstance(dag.timetable, JpxPublicationDayTimetable)
    assert dag.start_date == jst(2019, 1, 1)
    assert {"gogooku3", "weekly"} <= set(dag.tags)
    for t in dag.tasks:
        assert t.owner == "gogooku3-data"
        assert t.retries == 4 and t.retry_exponential_backoff
        assert callbacks.on_task_failure in (
            t.on_failure_callback if isinstance(t.on_failure_callback, list) else [t.on_failure_callback]
        )
    assert dag.get_task("fetch_trades_spec").pool == "jquants_api"
    assert dag.get_task("expand").pool != "jquants_api"
    outlets = [a.uri for a in dag.get_task("publish").outlets]
    assert outlets == ["gogooku3://lake/interim/trades_spec_daily"]


# ------------------------------------------------------------------------------ schedule


def run_infos(start: pendulum.DateTime, n: int, *, catchup: bool = True):
    restriction = TimeRestriction(earliest=start, latest=None, catchup=catchup)
    infos, last = [], None
    for _ in range(n):
        info = TT.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        infos.append(info)
        last = info.data_interval
    return infos


def test_fires_at_18_jst_on_thursdays_and_the_next_trading_day_after_a_holiday_thursday() -> None:
    infos = run_infos(jst(2023, 11, 1), 6)
    days = [JpxPublicationDayTimetable.day_of(i.data_interval) for i in infos]
    # 2023-11-23 (Thursday) is Labour Thanksgiving Day: that week is published on Friday the 24th.
    assert days == [dt.date(2023, 11, 2), dt.date(2023, 11, 9), dt.date(2023, 11, 16), dt.date(2023, 11, 24),
                    dt.date(2023, 11, 30), dt.date(2023, 12, 7)]  # fmt: skip
    for info, day in zip(infos, days, strict=True):
        assert info.run_after == jst(day.year, day.month, day.day, 18)
        assert info.data_interval.start == jst(day.year, day.month, day.day)  # logical date: that JST day
        assert info.run_after.in_timezone("UTC").hour == 9


@pytest.mark.parametrize(
    ("thursday", "published"),
    [
        (dt.date(2025, 3, 20), dt.date(2025, 3, 21)),  # Vernal Equinox Day
        (dt.date(2020, 12, 31), dt.date(2021, 1, 4)),  # year-end closure, then New Year's Day, weekend
        (dt.date(2024, 5, 2), dt.date(2024, 5, 2)),  # Golden Week, but Thursday itself is open
    ],
)
def test_holiday_cases(thursday: dt.date, published: dt.date) -> None:
    assert thursday.weekday() == 3
    infos = run_infos(jst(thursday.year, thursday.month, thursday.day) - dt.timedelta(days=2), 1)
    assert JpxPublicationDayTimetable.day_of(infos[0].data_interval) == published


def test_a_year_of_runs_is_one_per_week() -> None:
    days = [JpxPublicationDayTimetable.day_of(i.data_interval) for i in run_infos(jst(2023, 1, 1), 52)]
    assert len(set(days)) == 52 and days == sorted(days)
    assert sum(d.weekday() != 3 for d in days) == 3  # 2023: Feb 23, May 4 and Nov 23 are holidays
    assert {d.weekday() for d in days} <= {3, 4, 0}


def test_without_catchup_starts_at_the_latest_due_publication() -> None:
    now = pendulum.datetime(2023, 11, 28, 3, tz="UTC")  # Tuesday; last due publication: Fri 11-24
    with mock.patch("pendulum.now", return_value=now):
        (info,) = run_infos(jst(2023, 1, 1), 1, catchup=False)
    assert JpxPublicationDayTimetable.day_of(info.data_interval) == dt.date(2023, 11, 24)


def test_timetable_round_trips_through_serialization() -> None:
    again = JpxPublicationDayTimetable.deserialize(TT.serialize())
    assert again == TT and again.run_at == dt.time(18, 0)
    assert JpxPublicationDayTimetable(dt.time(20, 0)) != TT


# ------------------------------------------------------------------------------ window and range


@pytest.mark.parametrize(
    ("day", "window", "expand"),
    [
        # Regular Thursday: the 7 days since the previous Thursday; final through Friday,
        # provisional through next Thursday.
        (dt.date(2023, 12, 7), (dt.date(2023, 12, 1), dt.date(2023, 12, 7)),
         (dt.date(2023, 12, 4), dt.date(2023, 12, 8), dt.date(2023, 12, 14))),
        # Holiday-shifted Friday: 8 days back to the previous Thursday; nothing after Friday is final.
        (dt.date(2023, 11, 24), (dt.date(2023, 11, 17), dt.date(2023, 11, 24)),
         (dt.date(2023, 11, 20), dt.date(2023, 11, 24), dt.date(2023, 11, 30))),
        # The Thursday after it: at least 7 days (re-fetches that Friday, harmlessly).
        (dt.date(2023, 11, 30), (dt.date(2023, 11, 24), dt.date(2023, 11, 30)),
         (dt.date(2023, 11, 27), dt.date(2023, 12, 1), dt.date(2023, 12, 7))),
    ],
)  # fmt: skip
def test_fetch_window_and_expand_range(day, window, expand) -> None:
    assert fetch_window(day) == window
    assert expand_range(day, window[0]) == expand


def test_windows_of_consecutive_runs_cover_every_calendar_day() -> None:
    pubs = publication_days(dt.date(2019, 1, 1), dt.date(2025, 12, 31))
    covered: set[dt.date] = set()
    for p in pubs:
        start, end = fetch_window(p)
        covered |= {start + dt.timedelta(days=i) for i in range((end - start).days + 1)}
    every = {pubs[0] + dt.timedelta(days=i) for i in range((pubs[-1] - pubs[0]).days + 1)}
    assert every <= covered


# ------------------------------------------------------------------------------ dag_run.conf


def test_conf_range_is_parsed() -> None:
    assert TRADES_SPEC_WEEKLY_CONF.parse(None) == {}
    opts = TRADES_SPEC_WEEKLY_CONF.parse({"start": "2023-01-05", "end": "2023-03-30"})
    assert (opts["start"], opts["end"]) == (dt.date(2023, 1, 5), dt.date(2023, 3, 30))


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"start": "2023-01-05", "ends": "2023-01-06"}, "unknown key(s) ['ends']"),
        ({"start": "2023-01-05"}, "dag_run.conf['end'] is missing"),
        ({"start": "2023-01-05", "end": "06/01/2023"}, "dag_run.conf['end']: bad date '06/01/2023'"),
        ({"start": 20230105, "end": "2023-01-06"}, "dag_run.conf['start']: bad date 20230105"),
        ({"start": "2023161", "end": "2023-01-06"}, "dag_run.conf['start']: bad date '2023161'"),
        ({"start": "2023-01-05", "end": "2023-02-30"}, "'2023-02-30': that day does not exist"),
        (
            {"start": "2023-02-01", "end": "2023-01-06"},
            "dag_run.conf['start'] 2023-02-01 is after dag_run.conf['end'] 2023-01-06",
        ),
    ],
)
def test_bad_conf_is_named(conf: dict, named: str) -> None:
    with pytest.raises(RunConfError) as err:
        TRADES_SPEC_WEEKLY_CONF.parse(conf)
    assert named in str(err.value)
    # In the task it fails at once (AirflowFailException: no retries) before fetching anything.
    with pytest.raises(AirflowFailException, match="RunConfError"):
        tasks.fetch_trades_spec(logical_date=jst(2023, 12, 7), dag_run=SimpleNamespace(conf=conf))


# ------------------------------------------------------------------------------ window split


def _records(*published: dt.date) -> pl.DataFrame:
    rows = [
        {"PublishedDate": p, "StartDate": p - dt.timedelta(days=10), "EndDate": p - dt.timedelta(days=6),
         "Section": f"S{i}", "ForeignersBalance": float(i)}
        for i, p in enumerate(published)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema={**{k: TRADES_SPEC.schema[k] for k in TRADES_SPEC.key}, "EndDate": pl.Date,
                                      "ForeignersBalance": pl.Float64})  # fmt: skip


def test_split_gives_every_day_of_the_window_its_records() -> None:
    thu, sat = dt.date(2023, 12, 7), dt.date(2023, 12, 2)
    frames = split_by_published(_records(thu, sat, thu), dt.date(2023, 12, 1), thu)
    assert list(frames) == [dt.date(2023, 12, d) for d in range(1, 8)]
    assert {d: f.height for d, f in frames.items() if f.height} == {sat: 1, thu: 2}
    assert frames[dt.date(2023, 12, 4)].schema == frames[thu].schema
    assert set(frames[thu]["Section"]) == {"S0", "S2"}


def test_split_rejects_records_outside_the_window_and_duplicates() -> None:
    with pytest.raises(TradesSpecWindowError, match="PublishedDate 2023-11-30 outside"):
        split_by_published(_records(dt.date(2023, 11, 30)), dt.date(2023, 12, 1), dt.date(2023, 12, 7))
    frame = _records(dt.date(2023, 12, 7)).with_columns(pl.lit(None, pl.Date).alias("PublishedDate"))
    with pytest.raises(TradesSpecWindowError, match="null"):
        split_by_published(frame, dt.date(2023, 12, 1), dt.date(2023, 12, 7))
    dup = pl.concat([_records(dt.date(2023, 12, 7))] * 2)
    with pytest.raises(TradesSpecWindowError, match="share a key"):
        split_by_published(dup, dt.date(2023, 12, 1), dt.date(2023, 12, 7))


def test_fetched_window_affected_range() -> None:
    fw = FetchedWindow(
        start=dt.date(2023, 12, 1),
        end=dt.date(2023, 12, 7),
        rows_by_day={dt.date(2023, 12, 1) + dt.timedelta(days=i): (8 if i == 6 else 0) for i in range(7)},
        requests=3,
        pages=3,
    )
    assert fw.rows == 8
    assert fw.earliest_usable == dt.date(2023, 12, 8)  # published Thursday -> usable Friday
    assert fw.affected_start == dt.date(2023, 12, 4)  # usable_date(window start, a Friday) = Monday
    assert fw.to_json()["rows_by_day"]["2023-12-07"] == 8


# ------------------------------------------------------------------------------ gate


def use_lake(monkeypatch: pytest.MonkeyPatch, lake) -> None:
    """The tasks' settings: this lake, no connections (as in a task without any defined)."""
    from gogooku3_airflow import hooks

    monkeypatch.setattr(hooks, "airflow_connection", lambda conn_id: None)
    monkeypatch.setenv("GOGOOKU3_LAKE_URI", lake.root)


def test_gate_failure_names_the_expectations_in_the_alert(tmp_path, monkeypatch) -> None:
    from gogooku3.emulator.testing import small_config
    from gogooku3.market import generate_market

    market = generate_market(
        small_config(codes=5, start=dt.date(2023, 9, 1), end=dt.date(2023, 12, 7)).market
    )
    lake = open_lake(str(tmp_path / "lake"))
    for i in range(98):
        d = dt.date(2023, 9, 1) + dt.timedelta(days=i)
        lake.write_partition("raw", "trades_spec", d, market.frame("trades_spec", d), source="t",
                             sort_by=TRADES_SPEC.key, date_column="PublishedDate")  # fmt: skip
    written = {
        m.date.isoformat(): m.rows for m in expand_to_lake(lake, dt.date(2023, 12, 4), dt.date(2023, 12, 5))
    }
    good = sorted(written)
    use_lake(monkeypatch, lake)
    assert gate_trades_spec({"days": written}) == {"passed": good, "not_gated": []}

    # Corrupt one day: a net ratio outside [-1, 1].
    bad_day = dt.date(2023, 12, 5)
    frame = expand_trades_spec(
        lake.read_range("raw", "trades_spec", dt.date(2023, 9, 1), bad_day), bad_day, bad_day
    )
    frame = frame.with_columns(pl.lit(3.0).alias("flow_foreigners_net_ratio"))
    lake.write_partition("interim", "trades_spec_daily", bad_day, frame, source="t", sort_by=("Date", "Section"),
                         date_column="Date")  # fmt: skip
    with pytest.raises(AirflowFailException) as err:
        gate_trades_spec({"days": written})
    message = str(err.value)
    assert message.startswith("QualityGateFailed: interim/trades_spec_daily")
    assert "['2023-12-05']" in message and "flow_foreigners_net_ratio" in message

    # The failure callback's alert carries those first lines.
    ti = SimpleNamespace(dag_id="trades_spec_weekly", task_id="gate", try_number=1, log_url="http://x/log")
    ctx = {"ti": ti, "logical_date": jst(2023, 12, 7), "dag_run": None, "exception": err.value}
    alert = callbacks.alert_context(ctx)
    assert "flow_foreigners_net_ratio" in alert.error_head and "2023-12-05" in alert.error_head


def test_gate_skips_only_empty_days_before_any_publication(tmp_path, monkeypatch) -> None:
    from gogooku3.emulator.testing import small_config
    from gogooku3.market import generate_market

    market = generate_market(
        small_config(codes=5, start=dt.date(2023, 11, 1), end=dt.date(2023, 12, 7)).market
    )
    lake = open_lake(str(tmp_path / "lake"))
    for i in range(7):  # a fresh lake: only the window of the run for 2023-12-07
        d = dt.date(2023, 12, 1) + dt.timedelta(days=i)
        lake.write_partition("raw", "trades_spec", d, market.frame("trades_spec", d), source="t",
                             sort_by=TRADES_SPEC.key, date_column="PublishedDate")  # fmt: skip
    written = {
        m.date.isoformat(): m.rows for m in expand_to_lake(lake, dt.date(2023, 12, 4), dt.date(2023, 12, 8))
    }
    assert [d for d, n in written.items() if n == 0] == [
        "2023-12-04",
        "2023-12-05",
        "2023-12-06",
        "2023-12-07",
    ]
    use_lake(monkeypatch, lake)
    out = gate_trades_spec({"days": written})
    assert out == {
        "passed": ["2023-12-08"],
        "not_gated": ["2023-12-04", "2023-12-05", "2023-12-06", "2023-12-07"],
    }

    # An empty partition after a week became usable is gated, and fails.
    empty = lake.read_partition("interim", "trades_spec_daily", dt.date(2023, 12, 4))
    lake.write_partition("interim", "trades_spec_daily", dt.date(2023, 12, 8), empty, source="t",
                         sort_by=("Date", "Section"), date_column="Date")  # fmt: skip
    with pytest.raises(AirflowFailException, match=r"failed on 1 day\(s\) \['2023-12-08'\]"):
        gate_trades_spec({"days": {**written, "2023-12-08": 0}})
