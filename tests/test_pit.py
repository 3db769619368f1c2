"""The publication and usability rules of gogooku3.pit, checked against the JPX calendar."""

from __future__ import annotations

import datetime as dt

import pytest

from gogooku3.calendar import is_trading_day, next_trading_day, trading_days
from gogooku3.pit import (
    derivatives_usable_from,
    dividends_usable_from,
    earnings_calendar_usable_from,
    evening_publication_usable_from,
    is_week_end,
    margin_published_on,
    margin_record_published_on,
    margin_usable_from,
    partition_published_on,
    published_on,
    short_selling_usable_from,
)

DAYS = trading_days(dt.date(2019, 1, 1), dt.date(2025, 12, 31))
CALENDAR = [
    dt.date(2019, 1, 1) + dt.timedelta(days=k)
    for k in range((dt.date(2025, 12, 31) - dt.date(2019, 1, 1)).days)
]


@pytest.mark.parametrize("dataset", ["weekly_margin_interest", "daily_quotes", "short_selling"])
def test_the_partition_published_on_a_day_and_its_publication_day_agree(dataset: str) -> None:
    """The two directions the fetch (final-after) and the daily run (which partition) read."""
    record_dated = dataset == "weekly_margin_interest"
    published = [d for d in DAYS[5:-5] if partition_published_on(dataset, d) is not None]
    assert len(published) < len(DAYS) / 4 if record_dated else published == list(DAYS[5:-5])
    for day in published:
        partition = partition_published_on(dataset, day)
        assert published_on(dataset, partition) == day
        assert (partition < day) if record_dated else (partition == day)


def test_a_week_end_is_the_last_trading_day_of_its_iso_week() -> None:
    ends = [d for d in DAYS if is_week_end(d)]
    weeks = {d.isocalendar()[:2] for d in DAYS}
    assert len(ends) == len(weeks)  # one per week that has a trading day
    assert all(max(x for x in DAYS if x.isocalendar()[:2] == d.isocalendar()[:2]) == d for d in ends[:60])
    # a holiday Friday moves the record date to Thursday (2024-02-23, the Emperor's Birthday)
    assert is_week_end(dt.date(2024, 2, 22)) and not is_week_end(dt.date(2024, 2, 23))


def test_margin_publication_is_two_trading_days_after_the_record_and_invertible() -> None:
    days = trading_days(dt.date(2018, 12, 1), DAYS[-1])  # records published early in 2019 too
    index = {d: k for k, d in enumerate(days)}
    published = {}
    for record in (d for d in days[:-5] if is_week_end(d)):
        day = margin_published_on(record)
        assert index[day] == index[record] + 2
        assert margin_usable_from(record) == next_trading_day(day) > day
        published[day] = record
    for day in CALENDAR[:-10]:
        assert margin_record_published_on(day) == published.get(day), day
    # the usual case: Friday's balances out on Tuesday, usable from Wednesday
    assert margin_published_on(dt.date(2024, 3, 8)) == dt.date(2024, 3, 12)
    assert margin_usable_from(dt.date(2024, 3, 8)) == dt.date(2024, 3, 13)


@pytest.mark.parametrize(
    "rule",
    [
        short_selling_usable_from,
        earnings_calendar_usable_from,
        derivatives_usable_from,
        evening_publication_usable_from,
    ],
)
def test_evening_publications_are_usable_from_the_next_trading_day(rule) -> None:
    for day in CALENDAR[:400]:
        usable = rule(day)
        assert usable > day and is_trading_day(usable)
        assert not any(is_trading_day(day + dt.timedelta(days=k)) for k in range(1, (usable - day).days))


def test_a_dividend_notice_is_usable_like_a_statement() -> None:
    """T+1 after the effective day: before 15:00 the announcement day, from 15:00 the next trading day."""
    monday, tuesday, wednesday = dt.date(2024, 6, 17), dt.date(2024, 6, 18), dt.date(2024, 6, 19)
    assert dividends_usable_from(monday, "14:59") == tuesday
    assert dividends_usable_from(monday, "15:00") == wednesday
    assert dividends_usable_from(dt.date(2024, 6, 15), "10:00") == tuesday  # a Saturday counts as Monday
