"""The exchange's own trading calendar, fetched from J-Quants, taking precedence over the rule.

:mod:`gogooku3.calendar` computes trading days from a rule (weekends, national holidays, the
year-end closure). The exchange can depart from it: the TSE closed for a whole day on 2020-10-01
after a system failure. So the pipeline fetches J-Quants' trading calendar
(``/markets/calendar``, v1 ``/markets/trading_calendar``) and follows it where they disagree:

* ``raw/trading_calendar/date=D`` is a *snapshot*: every day the API answered when fetched on D
  (J-Quants publishes its calendar about a year ahead). ``jquants_daily`` fetches it first in each
  run; ``gogooku3 fetch --endpoint trading_calendar`` does the same by hand.
* :func:`check` (run by the fetch) logs, as a warning, every day on which the API disagrees with the
  rule: the exchange is followed, and a person should know the rule was wrong there.
* :func:`follow_exchange` installs the latest snapshot's disagreements as the process's exchange
  overrides (:func:`gogooku3.calendar.set_exchange_overrides`). Every job that reads or writes the
  lake calls it when it opens the lake (the fetch, the trades_spec expansion, the feature build, the
  training job, each Airflow task), so a special closure is no trading day anywhere: nothing is
  fetched or expected on it, windows skip it, gates do not ask for it.

HolidayDivision, as J-Quants defines it: ``1`` business day, ``2`` half-day session (the cash market
trades), ``0`` non-business day, ``3`` non-business day with a holiday derivatives session (the cash
market does not trade).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from gogooku3.calendar import rule_is_trading_day, set_exchange_overrides
from gogooku3.redaction import library_logger

log = library_logger(__name__)

#: The lake dataset holding the fetched calendar snapshots.
DATASET = "trading_calendar"
#: HolidayDivision values on which the cash market trades.
CASH_MARKET_OPEN = frozenset({"1", "2"})


def official_days(calendar: pl.DataFrame) -> dict[dt.date, bool]:
    """Day -> the cash market is open, per the exchange's calendar (``Date``, ``HolidayDivision``)."""
    missing = [c for c in ("Date", "HolidayDivision") if c not in calendar.columns]
    if missing:
        raise ValueError(f"trading calendar is missing column(s) {missing}; it has {calendar.columns}")
    return {d: h in CASH_MARKET_OPEN for d, h in calendar.select("Date", "HolidayDivision").iter_rows()}


def disagreements(calendar: pl.DataFrame) -> dict[dt.date, bool]:
    """The days (-> open per the exchange) on which the exchange's calendar contradicts the rule."""
    return {d: open_ for d, open_ in official_days(calendar).items() if open_ != rule_is_trading_day(d)}


def describe(day: dt.date, open_: bool) -> str:
    """One disagreement in words."""
    exchange, rule = ("open", "closed") if open_ else ("closed", "open")
    return f"{day.isoformat()} ({day:%a}): the exchange is {exchange}, the rule says {rule}"


def check(calendar: pl.DataFrame, where: str) -> dict[dt.date, bool]:
    """Compare a fetched calendar (``where`` names it) with the rule; log each disagreement as a
    warning and return them (the exchange is followed: see :func:`follow_exchange`)."""
    found = disagreements(calendar)
    if found:
        days = "; ".join(describe(d, o) for d, o in sorted(found.items()))
        log.warning(
            "%s disagrees with gogooku3.calendar's rule on %d day(s), following the exchange: %s",
            where,
            len(found),
            days,
        )
    return found


def follow_exchange(lake: Any) -> dict[dt.date, bool]:
    """Install the exchange overrides of the lake's latest calendar snapshot (none: the rule alone)
    and return them."""
    days = lake.list_partitions("raw", DATASET)
    if not days:
        return set_exchange_overrides({})
    calendar = lake.read_partition("raw", DATASET, days[-1])
    found = set_exchange_overrides(official_days(calendar))
    if found:
        log.info(
            "following the exchange's calendar (raw/%s date=%s) on %d day(s) where the rule differs: %s",
            DATASET,
            days[-1].isoformat(),
            len(found),
            "; ".join(describe(d, o) for d, o in sorted(found.items())),
        )
    return found


def open_lake_following_exchange(uri: str, s3: Any = None) -> Any:
    """Open the lake a job works on (:func:`gogooku3.lake.open_lake`) and follow the exchange's
    calendar it holds (:func:`follow_exchange`): the one way jobs open their lake."""
    from gogooku3.lake import open_lake

    lake = open_lake(uri, s3)
    follow_exchange(lake)
    return lake
