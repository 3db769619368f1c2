"""The JPX trading calendar and JST time helpers.

Everything in the pipeline is scheduled and partitioned by JST (Asia/Tokyo) trading dates.
The Tokyo Stock Exchange is closed on weekends, on Japanese national holidays (including
substitute holidays, from ``jpholiday``) and over the year-end closure (31 December to
3 January). This module is the one definition of that rule: the emulator's synthetic market,
the Airflow timetable and the feature build all ask it.

The exchange's own calendar takes precedence over the rule: a special closure (the TSE closed on
2020-10-01 after a system failure) or an extra session is known only from the exchange. The days
where J-Quants' trading calendar disagrees with the rule are installed here as *exchange
overrides* (:func:`set_exchange_overrides`, from the latest fetched calendar:
:mod:`gogooku3.exchange_calendar`), and every function below follows them; :func:`rule_is_trading_day`
is the bare rule.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from zoneinfo import ZoneInfo

import jpholiday

JST = ZoneInfo("Asia/Tokyo")

#: (month, day) pairs on which the exchange is closed every year (year-end/new-year closure).
YEAR_END_CLOSURE: frozenset[tuple[int, int]] = frozenset({(12, 31), (1, 1), (1, 2), (1, 3)})


def holiday_division(day: dt.date) -> str:
    """J-Quants ``HolidayDivision`` for ``day``: "1" business day, "0" non-business day.

    (J-Quants also uses "2"/"3" for derivatives-only sessions; the cash market does not need them.)
    """
    return "1" if is_trading_day(day) else "0"


def rule_is_trading_day(day: dt.date) -> bool:
    """The rule alone: not a weekend, a national holiday or the year-end closure."""
    if day.weekday() >= 5:
        return False
    if (day.month, day.day) in YEAR_END_CLOSURE:
        return False
    return not jpholiday.is_holiday(day)


#: Days the exchange's calendar decides against the rule: day -> open (see the module docstring).
_overrides: dict[dt.date, bool] = {}
_overrides_lock = threading.Lock()


def is_trading_day(day: dt.date) -> bool:
    """True when the TSE cash market is open on ``day``: the exchange's calendar where it was
    installed and disagrees with the rule, else the rule."""
    if _overrides:
        open_ = _overrides.get(day)
        if open_ is not None:
            return open_
    return rule_is_trading_day(day)


def exchange_overrides() -> dict[dt.date, bool]:
    """The installed exchange overrides (day -> open), a copy."""
    return dict(_overrides)


def set_exchange_overrides(official: Mapping[dt.date, bool]) -> dict[dt.date, bool]:
    """Follow the exchange: for every day of ``official`` (day -> open, e.g. a fetched calendar)
    that disagrees with the rule, the exchange wins. Replaces what was installed before; returns the
    disagreements now installed (empty: the rule holds on every day given)."""
    found = {d: bool(v) for d, v in official.items() if bool(v) != rule_is_trading_day(d)}
    with _overrides_lock:
        if found != _overrides:
            _overrides.clear()
            _overrides.update(found)
            trading_days.cache_clear()
    return dict(found)


@contextmanager
def following_exchange(official: Mapping[dt.date, bool]) -> Iterator[dict[dt.date, bool]]:
    """Install ``official`` (see :func:`set_exchange_overrides`) for the ``with`` block, then put back
    what was installed before. Process-wide: meant for generating a market with its own closures."""
    before = exchange_overrides()
    try:
        yield set_exchange_overrides(official)
    finally:
        set_exchange_overrides(before)


@lru_cache(maxsize=256)
def trading_days(start: dt.date, end: dt.date) -> tuple[dt.date, ...]:
    """All trading days in the closed interval [start, end], ascending."""
    if end < start:
        return ()
    out = []
    day = start
    one = dt.timedelta(days=1)
    while day <= end:
        if is_trading_day(day):
            out.append(day)
        day += one
    return tuple(out)


def next_trading_day(day: dt.date) -> dt.date:
    """The first trading day strictly after ``day``."""
    nxt = day + dt.timedelta(days=1)
    while not is_trading_day(nxt):
        nxt += dt.timedelta(days=1)
    return nxt


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day strictly before ``day``."""
    prv = day - dt.timedelta(days=1)
    while not is_trading_day(prv):
        prv -= dt.timedelta(days=1)
    return prv


def on_or_after(day: dt.date) -> dt.date:
    """``day`` itself when it is a trading day, else the next one."""
    return day if is_trading_day(day) else next_trading_day(day)


# ------------------------------------------------------------------ trades_spec publication days
# J-Quants publishes a week's investor-type data after the close on the Thursday of the following
# week; when that Thursday is not a trading day, on the next trading day.

_THURSDAY = 3


def publication_day_for(thursday: dt.date) -> dt.date:
    """The scheduled publication day of the week published on ``thursday``: that Thursday when it
    is a JPX trading day, else the next trading day."""
    if thursday.weekday() != _THURSDAY:
        raise ValueError(f"{thursday} is a {thursday:%A}, not a Thursday")
    return on_or_after(thursday)


def _thursday_on_or_before(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=(day.weekday() - _THURSDAY) % 7)


def publication_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every scheduled publication day in [start, end], ascending."""
    # A holiday shift moves a publication at most a few days later, so Thursdays from two weeks
    # before ``start`` on cover every publication landing in the range.
    thursday = _thursday_on_or_before(start) - dt.timedelta(days=14)
    days: set[dt.date] = set()
    while thursday <= end:
        day = publication_day_for(thursday)
        if start <= day <= end:
            days.add(day)
        thursday += dt.timedelta(days=7)
    return sorted(days)


def is_publication_day(day: dt.date) -> bool:
    """True when ``day`` is a scheduled publication day."""
    return publication_days(day, day) == [day]


def next_publication_day(day: dt.date) -> dt.date:
    """The first scheduled publication day strictly after ``day``."""
    days = publication_days(day + dt.timedelta(days=1), day + dt.timedelta(days=21))
    return days[0]


def previous_publication_day(day: dt.date) -> dt.date:
    """The last scheduled publication day strictly before ``day``."""
    days = publication_days(day - dt.timedelta(days=21), day - dt.timedelta(days=1))
    return days[-1]


def to_jst_date(moment: dt.datetime) -> dt.date:
    """The JST calendar date of an aware datetime (Airflow's logical dates are UTC)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware datetime (UTC or JST)")
    return moment.astimezone(JST).date()


#: The two accepted spellings of a date: ISO ``YYYY-MM-DD`` and J-Quants' 8-digit ``YYYYMMDD``.
_DATE_FORMS = (
    re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"),
    re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})"),
)


def parse_date(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD`` or J-Quants' ``YYYYMMDD`` (exactly 8 digits) into a date.

    Nothing else is accepted: ``strptime`` alone would read ``202461`` as 2024-06-01 and
    ``2024-6-1`` as a date too, and a backfill over a misread range is worse than an error. A
    well-formed date that does not exist (``2024-02-30``) is named as such.
    """
    if not isinstance(text, str):
        raise ValueError(f"bad date {text!r}: expected a string YYYY-MM-DD")
    raw = text.strip()
    for pattern in _DATE_FORMS:
        match = pattern.fullmatch(raw)
        if match is None:
            continue
        year, month, day = (int(g) for g in match.groups())
        try:
            return dt.date(year, month, day)
        except ValueError as exc:  # "month must be in 1..12", "day is out of range for month"
            raise ValueError(f"bad date {text!r}: that day does not exist ({exc})") from None
    raise ValueError(f"bad date {text!r}: expected YYYY-MM-DD (or YYYYMMDD)")
