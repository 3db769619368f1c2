"""Glue for ``trades_spec_weekly``: its timetable, its ``dag_run.conf``, its asset and its task bodies.

The schedule rule and the fetch window live in the library (:mod:`gogooku3.flows.fetching`,
pure calendar functions); this module turns them into an Airflow timetable and tasks. Heavy
imports (polars, aiohttp, the lake, Great Expectations) happen inside the task bodies only.

**What each run writes** (publication day ``P``, previous scheduled publication ``P0``, next ``P1``):

* ``raw/trades_spec/date=d`` for every calendar day ``d`` of the window ``[W, P]``
  (:func:`gogooku3.flows.fetching.fetch_window`), empty on a day with nothing published.
* ``interim/trades_spec_daily/date=D`` for every trading day ``D`` in
  ``[usable_date(W), P1]`` (:func:`expand_range`):

  - **final** through ``last_determined_day(P)`` (normally the trading day after P): day D uses
    exactly the records published before D, and every such day is now in the lake;
  - **provisional** after that, through ``P1`` (the trading day before P1's records become
    usable): those rows assume nothing is published between P and D, which holds on the
    regular schedule. The features DAG needs a row for every trading day until the next run,
    so they are written now; the next run's window starts right after P, so it rewrites them
    from ``usable_date(P+1)`` on with whatever an off-schedule publication changed.

**Idempotent**: the raw partitions are the source's answer for fixed dates, and each interim
partition is a pure function of the raw partitions published before its date; both are replaced
atomically, so a rerun (or an overlapping run) writes byte-identical partitions.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gogooku3.calendar import is_publication_day, next_publication_day, next_trading_day, parse_date
from gogooku3_airflow.assets import INTERIM_TRADES_SPEC_DAILY
from gogooku3_airflow.fetching import RunConfError, jst_day
from gogooku3_airflow.timetable import JpxTradingDayTimetable

log = logging.getLogger("gogooku3.dags")

#: Run time on a publication day. J-Quants publishes investor types after the close (around
#: 15:30-16:30 JST); 18:00 leaves ample slack for a late publication, and the task retries with
#: backoff if the week is still missing. It is also before the daily DAG's 19:00 run, so the
#: provisional rows through the next publication exist when that evening's features build starts.
DEFAULT_PUBLICATION_RUN_AT_JST = dt.time(18, 0)

JST_NAME = "Asia/Tokyo"

#: Allowed keys of ``dag_run.conf``.
WEEKLY_CONF_KEYS = ("start", "end")


# ------------------------------------------------------------------------------ timetable


class JpxPublicationDayTimetable(JpxTradingDayTimetable):
    """One run per scheduled trades_spec publication day (Thursday, or the next JPX trading day when
    Thursday is closed) at ``run_at`` JST (default 18:00); the data interval is that JST day, so
    the logical date is the publication day at 00:00 JST, exactly as for
    :class:`~gogooku3_airflow.timetable.JpxTradingDayTimetable`."""

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


# ------------------------------------------------------------------------------ run options


@dataclass(frozen=True)
class WeeklyOptions:
    """``dag_run.conf``: a manual re-expansion range, or None for a regular run."""

    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def reexpand(self) -> bool:
        return self.start is not None


def parse_weekly_conf(conf: Mapping[str, Any] | None) -> WeeklyOptions:
    """Validate ``dag_run.conf``: empty, or ``{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}`` (both).

    Raises :class:`RunConfError` naming the offending key.
    """
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(WEEKLY_CONF_KEYS))
    if unknown:
        raise RunConfError(f"dag_run.conf has unknown key(s) {unknown}; allowed: {list(WEEKLY_CONF_KEYS)}")
    if not conf:
        return WeeklyOptions()
    missing = [k for k in WEEKLY_CONF_KEYS if k not in conf]
    if missing:
        raise RunConfError(
            f"dag_run.conf['{missing[0]}'] is missing: a re-expansion needs both 'start' and 'end'"
        )
    days: dict[str, dt.date] = {}
    for key in WEEKLY_CONF_KEYS:
        try:
            days[key] = parse_date(conf[key])
        except ValueError as exc:
            raise RunConfError(f"dag_run.conf['{key}']: {exc}") from None
    if days["start"] > days["end"]:
        raise RunConfError(
            f"dag_run.conf['start']={conf['start']!r} is after dag_run.conf['end']={conf['end']!r}"
        )
    return WeeklyOptions(start=days["start"], end=days["end"])


def expand_range(day: dt.date, fetched_start: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """``(start, final_through, end)`` of the interim rebuild after fetching ``[fetched_start, day]``.

    ``start = usable_date(fetched_start)``: no earlier row can use a record of the window.
    ``final_through = last_determined_day(day)``; ``end = provisional_through(day)``: the trading day
    before the next publication becomes usable (see the module docstring).
    """
    from gogooku3.flows import last_determined_day, provisional_through

    return next_trading_day(fetched_start), last_determined_day(day), provisional_through(day)


# ------------------------------------------------------------------------------ task bodies


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _options(context: Mapping[str, Any]) -> WeeklyOptions:
    try:
        return parse_weekly_conf(getattr(context.get("dag_run"), "conf", None))
    except RunConfError as exc:
        raise _fail(f"RunConfError: {exc}") from None  # the same conf fails the same way: no retry


def _settings_and_lake():
    from gogooku3.lake import open_lake
    from gogooku3_airflow.fetching import _settings

    settings = _settings()
    return settings, open_lake(settings.lake_uri, settings.s3)


def fetch_trades_spec_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """Fetch the run's window into ``raw/trades_spec``; return the window summary and the interim
    range to rebuild (XCom). A manual re-expansion (``dag_run.conf``) fetches nothing."""
    options = _options(context)
    day = jst_day(context)
    if options.reexpand:
        log.info("re-expansion %s..%s requested in dag_run.conf: nothing fetched", options.start, options.end)
        return {
            "day": day.isoformat(),
            "fetched": None,
            "expand": [options.start.isoformat(), options.end.isoformat()],
            "final_through": None,  # known only from the lake: see expand_task
        }
    from gogooku3.flows.fetching import fetch_window, fetch_window_to_lake_sync
    from gogooku3.jquants.errors import AuthError

    if not is_publication_day(day):
        log.warning("%s is not a scheduled trades_spec publication day; fetching its window anyway", day)
    start, end = fetch_window(day)
    settings, _ = _settings_and_lake()
    try:
        fetched = fetch_window_to_lake_sync(settings, start, end, lake_uri=settings.lake_uri)
    except AuthError as exc:
        raise _fail(f"AuthError: {exc}") from None
    first, final, last = expand_range(day, fetched.start)
    log.info(
        "trades_spec %s..%s: %d records in %d request(s); interim to rebuild %s..%s (final through %s)",
        start,
        end,
        fetched.rows,
        fetched.requests,
        first,
        last,
        final,
    )
    return {
        "day": day.isoformat(),
        "fetched": fetched.to_json(),
        "expand": [first.isoformat(), last.isoformat()],
        "final_through": final.isoformat(),
    }


def expand_task(fetched: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild ``interim/trades_spec_daily`` for ``fetched['expand']``; the written days and rows."""
    from gogooku3.flows import expand_to_lake

    start, end = (dt.date.fromisoformat(d) for d in fetched["expand"])
    _, lake = _settings_and_lake()
    try:
        manifests = expand_to_lake(lake, start, end)
    except ValueError as exc:  # e.g. an unfetched raw layer: retrying cannot help
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    days = {m.date.isoformat(): m.rows for m in manifests}
    final_through = fetched.get("final_through")
    if final_through is None:  # a re-expansion: final through what the raw layer determines
        from gogooku3.flows import last_determined_day

        raw_days = lake.list_partitions("raw", "trades_spec")
        final_through = min(end, last_determined_day(raw_days[-1])).isoformat()
    log.info(
        "interim/trades_spec_daily: %d partitions %s..%s, %d rows", len(days), start, end, sum(days.values())
    )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "final_through": final_through,
        "days": days,
        "rows": sum(days.values()),
    }


def first_published(lake: Any) -> dt.date | None:
    """The earliest ``raw/trades_spec`` partition holding records (None without any); reads
    manifests in date order and stops at the first non-empty one."""
    for day in lake.list_partitions("raw", "trades_spec"):
        if lake.read_manifest("raw", "trades_spec", day).rows:
            return day
    return None


def gate_task(expanded: Mapping[str, Any]) -> dict[str, Any]:
    """Run the ``trades_spec_daily`` quality gate on every written partition; any failure fails the
    task at once (no retry: the data would not change) with the failing expectations, which the
    failure callback sends to Slack, and nothing downstream runs.

    An empty partition on a day before any record was published (the first days of a fresh lake:
    no week usable yet) is correct and is not gated (the suite has nothing to check on zero rows);
    an empty partition on a later day is gated, and fails.
    """
    from gogooku3.quality import QualityGateFailed, gate_partition
    from gogooku3_airflow.gates import QualityGateStop, gate_failure_message

    _, lake = _settings_and_lake()
    empty = [d for d, rows in expanded["days"].items() if rows == 0]
    first = first_published(lake) if empty else None
    failures: dict[str, list[str]] = {}
    passed, not_gated = [], []
    for day, rows in expanded["days"].items():
        if rows == 0 and (first is None or dt.date.fromisoformat(day) <= first):
            log.info(
                "%s: no trades_spec week published before it in the lake; empty partition not gated", day
            )
            not_gated.append(day)
            continue
        try:
            gate_partition(lake, "interim", "trades_spec_daily", day, build_docs=False)
            passed.append(day)
        except QualityGateFailed as exc:
            failures[day] = list(exc.result.summary_lines())
    if failures:
        raise QualityGateStop(gate_failure_message(failures, f"interim/trades_spec_daily in {lake.uri}"))
    log.info("quality gate passed for %d partition(s), %d empty before any week", len(passed), len(not_gated))
    return {"passed": sorted(passed), "not_gated": sorted(not_gated)}


def publish_task(context: Mapping[str, Any], expanded: Mapping[str, Any]) -> dict[str, Any]:
    """Attach the rebuilt range (start, end, final_through, rows, days) to the interim asset event."""
    settings, _ = _settings_and_lake()
    extra = {
        "start": expanded["start"],
        "end": expanded["end"],
        "final_through": expanded["final_through"],
        "rows": expanded["rows"],
        "days": len(expanded["days"]),
        "lake_uri": settings.lake_uri,
        "publication_day": jst_day(context).isoformat(),
    }
    context["outlet_events"][INTERIM_TRADES_SPEC_DAILY].extra.update(extra)
    log.info(
        "published %s %s..%s: %d rows",
        INTERIM_TRADES_SPEC_DAILY.uri,
        extra["start"],
        extra["end"],
        extra["rows"],
    )
    return extra
