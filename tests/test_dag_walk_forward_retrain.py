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


# ------------------------------------------------------------------------------ dag_run.conf


def test_conf_is_parsed() -> None:
    from gogooku3_airflow.runconf import WALK_FORWARD_RETRAIN_CONF

    got = WALK_FORWARD_RETRAIN_CONF.parse(
        {
            "start": "2024-01-04",
            "end": "2024-06-28",
            "folds": 2,
            "size": "tiny",
            "horizons": [5, 1, 5],
            "epochs": 3.0,
            "seed": 7,
        }
    )
    assert got == {
        "start": dt.date(2024, 1, 4),
        "end": dt.date(2024, 6, 28),
        "folds": 2,
        "size": "tiny",
        "horizons": (1, 5),
        "epochs": 3,
        "seed": 7,
    }


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"fold": 2}, "unknown key(s) ['fold']"),
        ({"folds": "4"}, "dag_run.conf['folds']='4': expected an integer in 1..20"),
        ({"folds": 0}, "dag_run.conf['folds']=0: expected an integer in 1..20"),
        ({"epochs": 2.5}, "dag_run.conf['epochs']=2.5: expected an integer"),
        ({"seed": True}, "dag_run.conf['seed']=True: expected an integer"),
        ({"size": "huge"}, "dag_run.conf['size']='huge': expected one of ['tiny', 'small', 'base', 'large']"),
        ({"horizons": []}, "dag_run.conf['horizons']=[]: expected a non-empty list of integers in 1..60"),
        ({"horizons": "1,5"}, "dag_run.conf['horizons']='1,5'"),
        ({"horizons": [1, 0]}, "dag_run.conf['horizons']=0: expected an integer in 1..60"),
        ({"start": "2024-01-04"}, "dag_run.conf['end'] is missing"),
        ({"start": "2024-06-28", "end": "2024-01-04"}, "dag_run.conf['start'] 2024-06-28 is after"),
    ],
)
def test_bad_conf_is_named(conf: dict, named: str) -> None:
    from gogooku3_airflow.runconf import WALK_FORWARD_RETRAIN_CONF, RunConfError

    with pytest.raises(RunConfError) as exc:
        WALK_FORWARD_RETRAIN_CONF.parse(conf)
    assert named in str(exc.value)


# ------------------------------------------------------------------------------ what a run trains on


@pytest.fixture
def features_lake(tmp_path):
    """features/features partitions for 2024-05-01..2024-06-28 (one row each); good through 06-21."""
    import polars as pl

    from gogooku3.calendar import trading_days
    from gogooku3.lake import open_lake

    lake = open_lake(tmp_path / "lake")
    for day in trading_days(dt.date(2024, 5, 1), dt.date(2024, 6, 28)):
        frame = pl.DataFrame({"Date": [day], "Code": ["1301"], "ret_1d": [0.0]})
        lake.write_partition("features", "features", day, frame, source="test")
    lake.mark_good("features", "features", dt.date(2024, 6, 21), validation_ref="test")
    return lake


def test_a_saturday_run_trains_through_fridays_features(features_lake) -> None:
    from gogooku3_airflow import tasks

    features_lake.mark_good("features", "features", dt.date(2024, 6, 28), validation_ref="test")
    assert tasks.retrain_range(features_lake, dt.date(2024, 6, 29), {}) == (
        dt.date(2024, 5, 1),
        dt.date(2024, 6, 28),
    )
    with mock.patch.object(tasks, "RETRAIN_HISTORY_DAYS", 10):
        assert tasks.retrain_range(features_lake, dt.date(2024, 6, 29), {})[0] == dt.date(2024, 6, 17)


def test_stale_features_fail_saying_how_stale(features_lake) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from gogooku3_airflow import tasks

    with pytest.raises(
        AirflowFailException,
        match=r"latest good features day is 2024-06-21, 5 trading day\(s\) before 2024-06-28",
    ):
        tasks.retrain_range(features_lake, dt.date(2024, 6, 29), {})


def test_a_conf_range_must_be_gated(features_lake) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from gogooku3_airflow import tasks

    conf = {"start": dt.date(2024, 5, 1), "end": dt.date(2024, 6, 20)}
    assert tasks.retrain_range(features_lake, dt.date(2024, 6, 29), conf) == (
        dt.date(2024, 5, 1),
        dt.date(2024, 6, 20),
    )
    with pytest.raises(AirflowFailException, match="after the latest good features day 2024-06-21"):
        tasks.retrain_range(features_lake, dt.date(2024, 6, 29), {**conf, "end": dt.date(2024, 6, 24)})


def test_the_container_and_the_fallback_run_one_command_line() -> None:
    from gogooku3_airflow.operators import RetrainOperator
    from gogooku3_airflow.tasks import retrain_run_folder, train_cli_args

    plan = {
        "start": "2024-05-01",
        "end": "2024-06-28",
        "folds": 2,
        "size": "tiny",
        "horizons": [1, 5],
        "epochs": 3,
        "seed": 0,
        "engine": "cpu",
        "out": retrain_run_folder("scheduled__2024-06-28T21:00:00+00:00"),
    }
    args = train_cli_args(plan, "/lake")
    assert (
        args[args.index("--out") + 1] == "/lake/models/atft-gat-fan/runs/scheduled__2024-06-28T21_00_00_00_00"
    )
    assert args[args.index("--device") + 1] == "cpu" and args[args.index("--horizons") + 1] == "1,5"
    assert args[args.index("--patience") + 1] == "3"
    assert RetrainOperator(task_id="t").cli_args(plan, "/lake") == args
    assert train_cli_args({**plan, "engine": "gpu"}, "/lake")[args.index("--device") + 1] == "cuda"
