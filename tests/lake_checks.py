"""Checks of what the fetch DAG wrote, shared by its end-to-end test and the deployment's test."""

from __future__ import annotations

import datetime as dt

from polars.testing import assert_frame_equal

from gogooku3.calendar import previous_trading_day
from gogooku3.jquants.datasets import get_dataset

#: The raw tables ``jquants_daily`` writes for each of its days.
JQUANTS_DAILY_TABLES = ("listed_info", "daily_quotes", "statements", "topix")


def assert_raw_is_ground_truth(lake, market, day: dt.date) -> None:
    """Every raw partition ``jquants_daily`` writes for ``day`` holds exactly the emulator's ground
    truth (the market's frame) for its date, and its trading calendar snapshot the market's calendar."""
    for name in JQUANTS_DAILY_TABLES:
        key = list(get_dataset(name).key)
        days = [day]
        if name == "statements":  # the run also completes the days since the previous session
            prev = previous_trading_day(day)
            days = [prev + dt.timedelta(days=i) for i in range((day - prev).days + 1)]
        for d in days:
            truth = market.frame(name, d)
            if truth.is_empty() and not lake.has_partition("raw", name, d):
                continue  # non-trading day with nothing disclosed: nothing to write
            got = lake.read_partition("raw", name, d)
            assert got.height == truth.height, f"{name} {d}: {got.height} rows, truth {truth.height}"
            assert_frame_equal(got.sort(key), truth.sort(key), check_column_order=False)
    # the exchange's calendar: the whole calendar as the run fetched it (a snapshot)
    assert_frame_equal(lake.read_partition("raw", "trading_calendar", day), market.trading_calendar())
