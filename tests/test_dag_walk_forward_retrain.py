"""walk_forward_retrain's glue: the weekly JST timetable (the DAG itself comes with its file)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pendulum
import pytest
from airflow.timetables.base import TimeRestriction
from gogooku3_airflow.timetables import JstWeeklyTimetable

TT = JstWeeklyTimetable()


def jst(y: int, m: int, d: int, hh: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(y, m, d, hh, tz="Asia/Tokyo")


def run_infos(start: pendulum.DateTime, n: int, *, catchup: bool = True, tt: JstWeeklyTimetable = TT):
    restriction = TimeRestriction(earliest=start, latest=None, catchup=catchup)
    infos, last = [], None
    for _ in range(n):
        info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        infos.append(info)
        last = info.data_interval
    return infos


def test_saturdays_at_06_jst_holidays_included() -> None:
    infos = run_infos(jst(2024, 4, 24), 4)  # a Wednesday before Golden Week
    days = [JstWeeklyTimetable.day_of(i.data_interval) for i in infos]
    assert days == [dt.date(2024, 4, 27), dt.date(2024, 5, 4), dt.date(2024, 5, 11), dt.date(2024, 5, 18)]
    for info, day in zip(infos, days, strict=True):
        assert info.run_after == jst(day.year, day.month, day.day, 6)
        assert info.data_interval.start == jst(day.year, day.month, day.day)
        assert info.run_after.in_timezone("UTC") == pendulum.datetime(
            day.year, day.month, day.day - 1, 21, tz="UTC"
        )


def test_a_start_on_the_run_day_itself_runs_that_day() -> None:
    (info,) = run_infos(jst(2024, 4, 27), 1)
    assert JstWeeklyTimetable.day_of(info.data_interval) == dt.date(2024, 4, 27)


def test_without_catchup_only_the_latest_due_saturday() -> None:
    now = pendulum.datetime(2024, 5, 15, 3, tz="UTC")  # Wednesday; last due: Sat 05-11
    with mock.patch("pendulum.now", return_value=now):
        (info,) = run_infos(jst(2024, 1, 1), 1, catchup=False)
    assert JstWeeklyTimetable.day_of(info.data_interval) == dt.date(2024, 5, 11)


def test_another_weekday_and_time() -> None:
    tt = JstWeeklyTimetable(weekday=6, run_at=dt.time(22, 30))
    infos = run_infos(jst(2024, 4, 24), 2, tt=tt)
    assert [i.run_after for i in infos] == [
        jst(2024, 4, 28, 22).add(minutes=30),
        jst(2024, 5, 5, 22).add(minutes=30),
    ]
    assert tt.summary == "Sun 22:30 JST"


def test_round_trips_through_serialization_and_validates() -> None:
    again = JstWeeklyTimetable.deserialize(TT.serialize())
    assert again == TT and (again.weekday, again.run_at) == (5, dt.time(6, 0))
    assert JstWeeklyTimetable(weekday=4) != TT
    with pytest.raises(ValueError, match="weekday=7"):
        JstWeeklyTimetable(weekday=7)
