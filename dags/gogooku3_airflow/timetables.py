"""The project's timetables, all in JST, and the JST day a run covers.

* :class:`JpxTradingDayTimetable` (``jquants_daily``): one run per JPX trading day.
* :class:`JpxPublicationDayTimetable` (``trades_spec_weekly``): one run per scheduled trades_spec
  publication day (the Thursday after each week, or the next trading day when it is closed), at 18:00.
* :class:`JstWeeklyTimetable` (``walk_forward_retrain``): one run a week, Saturday 06:00 by default.
* :func:`run_day`: the JST date a run covers, for every kind of run (scheduled, manual, ``dags test``).

All three classes are registered by the one plugin in ``include/airflow/plugins`` so the scheduler and the
API server can deserialize the DAGs that use them.

The trading-day timetable in detail:

**When.** The run for trading day *D* is created at **19:00 JST on D** (10:00 UTC). J-Quants
publishes the day's data on trading days at roughly these JST times: daily bars and TOPIX after
the close (~16:30-17:00), listed info during the late afternoon, and financial statements in two
batches, 18:00 and 24:30 (00:30 the next calendar day). 19:00 is after every same-day publication
except the 24:30 statements batch, with an hour of slack for a late publication (a day that is
still empty at 19:00 fails the fetch task, which retries with backoff). The 24:30 batch is picked
up by the *next* trading day's run: the statements task of the run for D re-fetches every
calendar day since the previous trading day, which completes (idempotently rewrites) that day's
partition and also catches disclosures dated on the weekend or a holiday in between.

**Data interval.** The run for D covers D's JST calendar day, ``[D 00:00 JST, D+1 00:00 JST)``, so
its logical date (the interval start) is D at midnight JST, which is **15:00 UTC on the previous
calendar day**. Tasks must therefore derive their date with ``to_jst_date(data_interval_start)``,
never from the UTC date. The run starts at 19:00 JST, before its interval ends: the data for D is
complete once published, and waiting for midnight would gain nothing.

**Which days.** Only days where :func:`gogooku3.calendar.is_trading_day` is true (weekends,
Japanese holidays and the 31 Dec-3 Jan closure get no run). ``start_date`` is the first day that
may be fetched; with ``catchup=True`` every trading day since then gets a run (backfills), with
``catchup=False`` only the latest due trading day and those after it.

**Manual runs** (``airflow dags test <dag> <date>``, a trigger from the UI or CLI) cover the JST
day of their logical date. That day may not be a trading day; the tasks then skip with that reason
(see :func:`run_day`, which reads the logical date because ``airflow dags trigger -l`` infers
the data interval from the trigger time rather than from ``-l``).

``AIRFLOW__CORE__PLUGINS_FOLDER`` must point at ``include/airflow/plugins`` (the one local Airflow
environment, :mod:`gogooku3.devtools.airflow_env`, and the compose file do).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

from gogooku3.calendar import (
    JST,
    is_publication_day,
    is_trading_day,
    next_publication_day,
    next_trading_day,
    to_jst_date,
)

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction

#: The default time of day (JST) at which a trading day's run starts; see the module docstring.
DEFAULT_RUN_AT_JST = dt.time(19, 0)

_UTC = pendulum.UTC


class JpxTradingDayTimetable(Timetable):
    """One run per JPX trading day at ``run_at`` JST (default 19:00), covering that JST day."""

    def __init__(self, run_at: dt.time = DEFAULT_RUN_AT_JST) -> None:
        if run_at.tzinfo is not None:
            raise ValueError(f"run_at={run_at!r} must be a naive time; it is read as JST")
        self.run_at = run_at
        self.description = f"JPX trading days at {run_at:%H:%M} JST (data interval = that JST day)"

    # -- the one mapping between a trading day and its run -------------------------------------
    def interval_for(self, day: dt.date) -> DataInterval:
        """``[day 00:00 JST, day+1 00:00 JST)`` as aware UTC datetimes."""
        start = pendulum.datetime(day.year, day.month, day.day, tz=JST).in_timezone(_UTC)
        end = pendulum.datetime(day.year, day.month, day.day, tz=JST).add(days=1).in_timezone(_UTC)
        return DataInterval(start=start, end=end)

    def run_after_for(self, day: dt.date) -> pendulum.DateTime:
        """When the run for ``day`` may start: ``day`` at ``run_at`` JST, as aware UTC."""
        at = self.run_at
        return pendulum.datetime(
            day.year, day.month, day.day, at.hour, at.minute, at.second, tz=JST
        ).in_timezone(_UTC)

    def info_for(self, day: dt.date) -> DagRunInfo:
        return DagRunInfo(run_after=self.run_after_for(day), data_interval=self.interval_for(day))

    @staticmethod
    def day_of(interval: DataInterval) -> dt.date:
        """The JST trading day a data interval of this timetable covers."""
        return to_jst_date(interval.start)

    # -- Timetable protocol ------------------------------------------------------------------
    @property
    def summary(self) -> str:
        return f"JPX trading days {self.run_at:%H:%M} JST"

    def infer_manual_data_interval(self, *, run_after: dt.datetime) -> DataInterval:
        return self.interval_for(to_jst_date(run_after))

    # -- which days get a run: the only rule a subclass changes --------------------------------
    def is_run_day(self, day: dt.date) -> bool:
        return is_trading_day(day)

    def next_run_day(self, day: dt.date) -> dt.date:
        """The first run day strictly after ``day``."""
        return next_trading_day(day)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None:
            day = self.next_run_day(self.day_of(last_automated_data_interval))
        elif restriction.earliest is None:
            return None  # no start_date: nothing to schedule
        else:
            day = to_jst_date(restriction.earliest)
            if self.interval_for(day).start < restriction.earliest:
                # start_date falls inside that JST day: the day is not wholly after it.
                day += dt.timedelta(days=1)
            if not self.is_run_day(day):
                day = self.next_run_day(day)
        if not restriction.catchup:
            # Skip missed days: start from the latest run day whose run is already due.
            latest_due = self._latest_due_day(pendulum.now(_UTC))
            if latest_due > day:
                day = latest_due
        if restriction.latest is not None and self.interval_for(day).start > restriction.latest:
            return None  # past end_date
        return self.info_for(day)

    def _latest_due_day(self, now: dt.datetime) -> dt.date:
        """The latest run day whose run time is at or before ``now``."""
        day = to_jst_date(now) + dt.timedelta(days=1)
        while True:
            day -= dt.timedelta(days=1)
            if self.is_run_day(day) and self.run_after_for(day) <= now:
                return day

    # -- (de)serialization: the scheduler rebuilds the timetable from this ----------------------
    def serialize(self) -> dict[str, Any]:
        return {"run_at": self.run_at.isoformat(timespec="seconds")}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> JpxTradingDayTimetable:
        return cls(run_at=dt.time.fromisoformat(data.get("run_at", DEFAULT_RUN_AT_JST.isoformat())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JpxTradingDayTimetable) and other.run_at == self.run_at

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.run_at))

    def __repr__(self) -> str:
        return f"JpxTradingDayTimetable(run_at={self.run_at!r})"


#: Run time on a publication day. J-Quants publishes investor types after the close (around
#: 15:30-16:30 JST); 18:00 leaves ample slack for a late publication, and the task retries with
#: backoff if the week is still missing. It is also before the daily DAG's 19:00 run, so the
#: provisional rows through the next publication exist when that evening's features build starts.
DEFAULT_PUBLICATION_RUN_AT_JST = dt.time(18, 0)

JST_NAME = "Asia/Tokyo"


class JpxPublicationDayTimetable(JpxTradingDayTimetable):
    """One run per scheduled trades_spec publication day (Thursday, or the next JPX trading day when
    Thursday is closed) at ``run_at`` JST (default 18:00); the data interval is that JST day, so
    the logical date is the publication day at 00:00 JST, exactly as for
    :class:`~JpxTradingDayTimetable`."""

    def __init__(self, run_at: dt.time = DEFAULT_PUBLICATION_RUN_AT_JST) -> None:
        super().__init__(run_at=run_at)
        self.description = (
            f"trades_spec publication days (Thursday, or the next JPX trading day) at {run_at:%H:%M} JST"
        )

    @property
    def summary(self) -> str:
        return f"JPX publication Thursdays {self.run_at:%H:%M} JST"

    def is_run_day(self, day: dt.date) -> bool:
        return is_publication_day(day)

    def next_run_day(self, day: dt.date) -> dt.date:
        return next_publication_day(day)

    def serialize(self) -> dict[str, Any]:
        # The timezone is fixed (JST); it is recorded so the serialized DAG says so.
        return {"run_at": self.run_at.isoformat(timespec="seconds"), "timezone": JST_NAME}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> JpxPublicationDayTimetable:
        return cls(
            run_at=dt.time.fromisoformat(data.get("run_at", DEFAULT_PUBLICATION_RUN_AT_JST.isoformat()))
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JpxPublicationDayTimetable) and other.run_at == self.run_at

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.run_at))

    def __repr__(self) -> str:
        return f"JpxPublicationDayTimetable(run_at={self.run_at!r})"


def run_day(
    logical_date: dt.datetime | None = None,
    data_interval_start: dt.datetime | None = None,
    dag_run: Any = None,
) -> dt.date:
    """The JST date a run covers: the JST date of its logical date.

    Never the UTC date: the run for trading day D has its logical date (= data interval start) at
    D 00:00 JST, which is the previous day in UTC. The logical date is read first because it is
    what every kind of run agrees on (scheduled: the interval start; ``dags test`` and UI triggers:
    the date given; ``airflow dags trigger -l``: the date given, while Airflow infers that run's
    data interval from the trigger time). Runs without a logical date use their data interval's
    start, then their ``run_after``. Tasks pass the context values of the same names.
    """
    moment = (
        logical_date
        or data_interval_start
        or getattr(dag_run, "logical_date", None)
        or getattr(dag_run, "run_after", None)
    )
    if moment is None:
        raise ValueError("the run has no logical date, data interval or run_after: no day to work on")
    return to_jst_date(moment)


#: The weekly retrain: Saturday 06:00 JST, after Friday's data, features and gates (Friday 19:00 on)
#: and before Monday's open, with the weekend to retry.
DEFAULT_RETRAIN_WEEKDAY = 5  # Monday = 0
DEFAULT_RETRAIN_RUN_AT_JST = dt.time(6, 0)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class JstWeeklyTimetable(JpxTradingDayTimetable):
    """One run a week, on ``weekday`` (Monday = 0; default Saturday) at ``run_at`` JST (default
    06:00), whether or not that day is a trading day; the data interval is that JST day, as for
    the other timetables, so tasks read the day with :func:`run_day`."""

    def __init__(
        self, weekday: int = DEFAULT_RETRAIN_WEEKDAY, run_at: dt.time = DEFAULT_RETRAIN_RUN_AT_JST
    ) -> None:
        if not 0 <= weekday <= 6:
            raise ValueError(f"weekday={weekday!r} must be 0 (Monday) .. 6 (Sunday)")
        super().__init__(run_at=run_at)
        self.weekday = weekday
        self.description = f"every {_WEEKDAYS[weekday]} at {run_at:%H:%M} JST"

    @property
    def summary(self) -> str:
        return f"{_WEEKDAYS[self.weekday][:3]} {self.run_at:%H:%M} JST"

    def is_run_day(self, day: dt.date) -> bool:
        return day.weekday() == self.weekday

    def next_run_day(self, day: dt.date) -> dt.date:
        return day + dt.timedelta(days=(self.weekday - day.weekday() - 1) % 7 + 1)

    def serialize(self) -> dict[str, Any]:
        return {
            "weekday": self.weekday,
            "run_at": self.run_at.isoformat(timespec="seconds"),
            "timezone": JST_NAME,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> JstWeeklyTimetable:
        return cls(
            weekday=int(data.get("weekday", DEFAULT_RETRAIN_WEEKDAY)),
            run_at=dt.time.fromisoformat(data.get("run_at", DEFAULT_RETRAIN_RUN_AT_JST.isoformat())),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JstWeeklyTimetable) and (other.weekday, other.run_at) == (
            self.weekday,
            self.run_at,
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.weekday, self.run_at))

    def __repr__(self) -> str:
        return f"JstWeeklyTimetable(weekday={self.weekday}, run_at={self.run_at!r})"
