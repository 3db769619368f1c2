"""The JPX trading-day timetable: which days run, when (JST), and what each run covers."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from gogooku3_airflow import timetables as tt_module
from gogooku3_airflow.timetables import JpxTradingDayTimetable

from gogooku3.calendar import is_trading_day, trading_days

JST = "Asia/Tokyo"
TT = JpxTradingDayTimetable()


def jst(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(y, m, d, hh, mm, tz=JST)


def run_days(start: pendulum.DateTime, n: int, *, catchup: bool = True) -> list[dt.date]:
    """The trading days of the first ``n`` scheduled runs from ``start`` (as the scheduler asks)."""
    restriction = TimeRestriction(earliest=start, latest=None, catchup=catchup)
    days, last = [], None
    for _ in range(n):
        info = TT.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        days.append(JpxTradingDayTimetable.day_of(info.data_interval))
        last = info.data_interval
    return days


def test_interval_is_the_jst_day_and_run_starts_at_19_jst() -> None:
    info = TT.info_for(dt.date(2024, 6, 14))
    assert info.data_interval.start == jst(2024, 6, 14)
    assert info.data_interval.end == jst(2024, 6, 15)
    assert info.run_after == jst(2024, 6, 14, 19)
    # The logical date is the previous day in UTC: the trap the tasks avoid by converting to JST.
    assert info.logical_date.in_timezone("UTC") == pendulum.datetime(2024, 6, 13, 15, tz="UTC")
    assert info.run_after.in_timezone("UTC") == pendulum.datetime(2024, 6, 14, 10, tz="UTC")


def test_runs_only_on_trading_days_over_a_year_with_catchup() -> None:
    days = run_days(jst(2024, 1, 1), 245)
    expected = list(trading_days(dt.date(2024, 1, 1), dt.date(2024, 12, 31)))
    assert days == expected[:245]
    assert all(is_trading_day(d) for d in days)
    assert len(set(days)) == len(days)


def test_weekend_and_holidays_are_skipped() -> None:
    # Golden Week 2024: Fri 3 May (Constitution Day), Sat, Sun, Mon 6 May (substitute holiday).
    assert run_days(jst(2024, 5, 2), 2) == [dt.date(2024, 5, 2), dt.date(2024, 5, 7)]
    # A plain weekend.
    assert run_days(jst(2024, 6, 14), 2) == [dt.date(2024, 6, 14), dt.date(2024, 6, 17)]


def test_year_end_closure() -> None:
    # 30 Dec 2024 is the last session; 31 Dec-3 Jan closed; 4-5 Jan 2025 a weekend; 6 Jan opens.
    assert run_days(jst(2024, 12, 27), 3) == [
        dt.date(2024, 12, 27),
        dt.date(2024, 12, 30),
        dt.date(2025, 1, 6),
    ]


def test_start_date_on_a_holiday_starts_at_the_next_trading_day() -> None:
    assert run_days(jst(2025, 1, 1), 1) == [dt.date(2025, 1, 6)]


def test_start_date_inside_a_jst_day_starts_the_next_day() -> None:
    # 10:00 JST on 14 June is after that day's interval began: the first run is 17 June.
    assert run_days(jst(2024, 6, 14, 10), 1) == [dt.date(2024, 6, 17)]


def test_utc_start_date_is_read_in_jst() -> None:
    # 2024-06-13 15:00 UTC is exactly 2024-06-14 00:00 JST: the 14th is the first day.
    start = pendulum.datetime(2024, 6, 13, 15, tz="UTC")
    assert run_days(start, 1) == [dt.date(2024, 6, 14)]
    # One minute later it is inside the 14th (JST), so the 17th (Monday) is first.
    assert run_days(start.add(minutes=1), 1) == [dt.date(2024, 6, 17)]


def test_next_after_last_run_is_the_next_trading_day() -> None:
    last = TT.interval_for(dt.date(2024, 12, 30))
    restriction = TimeRestriction(earliest=jst(2019, 1, 1), latest=None, catchup=True)
    info = TT.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    assert JpxTradingDayTimetable.day_of(info.data_interval) == dt.date(2025, 1, 6)
    assert info.run_after == jst(2025, 1, 6, 19)


def test_end_date_stops_scheduling() -> None:
    restriction = TimeRestriction(earliest=jst(2024, 6, 13), latest=jst(2024, 6, 14), catchup=True)
    first = TT.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert JpxTradingDayTimetable.day_of(first.data_interval) == dt.date(2024, 6, 13)
    second = TT.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
    assert JpxTradingDayTimetable.day_of(second.data_interval) == dt.date(2024, 6, 14)
    third = TT.next_dagrun_info(last_automated_data_interval=second.data_interval, restriction=restriction)
    assert third is None


def test_no_start_date_no_schedule() -> None:
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)
    assert TT.next_dagrun_info(last_automated_data_interval=None, restriction=restriction) is None


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Monday 17 June 2024, 20:00 JST: today's run (19:00) is due -> the 17th.
        (jst(2024, 6, 17, 20), dt.date(2024, 6, 17)),
        # Same Monday, 18:59 JST: today's run is not due yet -> Friday the 14th is the latest due.
        (jst(2024, 6, 17, 18, 59), dt.date(2024, 6, 14)),
        # Sunday: Friday's run is the latest due.
        (jst(2024, 6, 16, 12), dt.date(2024, 6, 14)),
        # 09:30 UTC on the 17th is 18:30 JST, before the run time -> the 14th.
        (pendulum.datetime(2024, 6, 17, 9, 30, tz="UTC"), dt.date(2024, 6, 14)),
        # 10:00 UTC is 19:00 JST -> the 17th is due.
        (pendulum.datetime(2024, 6, 17, 10, 0, tz="UTC"), dt.date(2024, 6, 17)),
    ],
)
def test_without_catchup_missed_days_are_skipped(now: pendulum.DateTime, expected: dt.date) -> None:
    restriction = TimeRestriction(earliest=jst(2024, 1, 1), latest=None, catchup=False)
    with mock.patch.object(tt_module.pendulum, "now", return_value=now.in_timezone("UTC")):
        first = TT.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        assert JpxTradingDayTimetable.day_of(first.data_interval) == expected
        # After a run long ago, too, the next run jumps to the latest due day.
        old = TT.interval_for(dt.date(2024, 3, 1))
        after_old = TT.next_dagrun_info(last_automated_data_interval=old, restriction=restriction)
        assert JpxTradingDayTimetable.day_of(after_old.data_interval) == expected
        # After the latest due run, the next is simply the next trading day (not yet due).
        nxt = TT.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
        assert JpxTradingDayTimetable.day_of(nxt.data_interval) > expected


def test_with_catchup_missed_days_are_all_run() -> None:
    restriction = TimeRestriction(earliest=jst(2024, 1, 1), latest=None, catchup=True)
    with mock.patch.object(
        tt_module.pendulum, "now", return_value=pendulum.datetime(2024, 6, 17, 12, tz="UTC")
    ):
        first = TT.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert JpxTradingDayTimetable.day_of(first.data_interval) == dt.date(2024, 1, 4)


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        (pendulum.datetime(2024, 6, 14, tz="UTC"), dt.date(2024, 6, 14)),  # `dags test ... 2024-06-14`
        (jst(2024, 6, 14), dt.date(2024, 6, 14)),
        (pendulum.datetime(2024, 6, 13, 16, tz="UTC"), dt.date(2024, 6, 14)),  # Fri 01:00 JST (UTC Thu)
        (pendulum.datetime(2024, 6, 14, 16, tz="UTC"), dt.date(2024, 6, 15)),  # Sat 01:00 JST (UTC Fri)
        (jst(2025, 1, 3, 12), dt.date(2025, 1, 3)),  # a closed day: the tasks skip it visibly
    ],
)
def test_manual_runs_cover_the_jst_day_of_their_date(run_after: pendulum.DateTime, expected: dt.date) -> None:
    interval = TT.infer_manual_data_interval(run_after=run_after)
    assert isinstance(interval, DataInterval)
    assert JpxTradingDayTimetable.day_of(interval) == expected
    assert interval == TT.interval_for(expected)


def test_serialization_round_trip_and_custom_time() -> None:
    custom = JpxTradingDayTimetable(run_at=dt.time(20, 30))
    again = JpxTradingDayTimetable.deserialize(custom.serialize())
    assert again == custom and again != TT
    assert again.run_after_for(dt.date(2024, 6, 14)) == jst(2024, 6, 14, 20, 30)
    assert "20:30 JST" in again.summary
    with pytest.raises(ValueError, match="naive"):
        JpxTradingDayTimetable(run_at=dt.time(19, tzinfo=dt.UTC))
