"""The exchange's calendar takes precedence over gogooku3.calendar's rule, wherever trading days matter."""

from __future__ import annotations

import datetime as dt
import logging

import polars as pl
import pytest

from gogooku3 import calendar
from gogooku3.exchange_calendar import check, follow_exchange, official_days
from gogooku3.jquants.datasets import DATASETS
from gogooku3.lake import open_lake
from gogooku3.market import MarketConfig, generate_market

#: A Thursday the rule calls a trading day (and a trades_spec publication day).
CLOSURE = dt.date(2024, 2, 15)
HOLIDAY = dt.date(2024, 2, 12)  # the substitute holiday for National Foundation Day


def _calendar(divisions: dict[dt.date, str]) -> pl.DataFrame:
    days = sorted(divisions)
    return pl.DataFrame(
        {"Date": days, "HolidayDivision": [divisions[d] for d in days]},
        schema=DATASETS["trading_calendar"].schema,
    )


def test_an_override_moves_every_calendar_function() -> None:
    feb = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert calendar.is_trading_day(CLOSURE) and CLOSURE in calendar.trading_days(*feb)
    installed = calendar.set_exchange_overrides({CLOSURE: False, dt.date(2024, 2, 14): True, HOLIDAY: False})
    assert installed == {CLOSURE: False}  # only what contradicts the rule is kept
    assert not calendar.is_trading_day(CLOSURE)
    assert CLOSURE not in calendar.trading_days(*feb)  # the cached range was dropped
    assert calendar.next_trading_day(dt.date(2024, 2, 14)) == dt.date(2024, 2, 16)
    assert calendar.previous_trading_day(dt.date(2024, 2, 16)) == dt.date(2024, 2, 14)
    # trades_spec's Thursday publication moves to Friday, as on a holiday
    assert calendar.publication_day_for(CLOSURE) == dt.date(2024, 2, 16)
    assert calendar.rule_is_trading_day(CLOSURE)
    with calendar.following_exchange({}):
        assert calendar.is_trading_day(CLOSURE)
    assert not calendar.is_trading_day(CLOSURE)  # put back after the block


def test_holiday_divisions_one_and_two_trade_zero_and_three_do_not() -> None:
    cal = _calendar({dt.date(2024, 2, 13): "1", CLOSURE: "0", dt.date(2024, 2, 16): "2", HOLIDAY: "3"})
    assert official_days(cal) == {
        dt.date(2024, 2, 13): True,
        CLOSURE: False,
        dt.date(2024, 2, 16): True,
        HOLIDAY: False,
    }


def test_a_disagreement_is_logged_naming_the_day(caplog) -> None:
    cal = _calendar({dt.date(2024, 2, 14): "1", CLOSURE: "0", HOLIDAY: "0"})
    with caplog.at_level(logging.WARNING, logger="gogooku3"):
        found = check(cal, "J-Quants' trading calendar fetched on 2024-02-13")
    assert found == {CLOSURE: False}
    assert "2024-02-15 (Thu): the exchange is closed, the rule says open" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gogooku3"):
        assert check(cal.filter(pl.col("Date") != CLOSURE), "agreeing") == {}
    assert caplog.text == ""


def test_the_latest_snapshot_in_the_lake_is_followed(tmp_path) -> None:
    lake = open_lake(tmp_path / "lake")
    assert follow_exchange(lake) == {} and calendar.is_trading_day(CLOSURE)
    old = _calendar({CLOSURE: "1"})
    new = _calendar({CLOSURE: "0"})
    key = DATASETS["trading_calendar"].key
    lake.write_partition("raw", "trading_calendar", dt.date(2024, 2, 1), old, source="t", sort_by=key)
    lake.write_partition("raw", "trading_calendar", dt.date(2024, 2, 13), new, source="t", sort_by=key)
    assert follow_exchange(lake) == {CLOSURE: False}
    assert not calendar.is_trading_day(CLOSURE)
    # a lake without a calendar puts the rule back
    assert follow_exchange(open_lake(tmp_path / "other")) == {} and calendar.is_trading_day(CLOSURE)


def test_a_market_with_a_closure_lives_on_its_own_calendar() -> None:
    cfg = MarketConfig(n_codes=40, start=dt.date(2024, 1, 4), end=dt.date(2024, 3, 29), closures=(CLOSURE,))
    market = generate_market(cfg)
    assert CLOSURE not in market.trading_days
    assert market.frame("daily_quotes", CLOSURE).is_empty()
    cal = market.trading_calendar()
    assert cal.filter(pl.col("Date") == CLOSURE)["HolidayDivision"].to_list() == ["0"]
    assert cal["Date"].max() > cfg.end  # published ahead
    # the market's trades_spec week is published on Friday, its own next trading day
    published = set(market.trades_spec()["PublishedDate"].to_list())
    assert CLOSURE not in published and dt.date(2024, 2, 16) in published
    assert calendar.is_trading_day(CLOSURE), "generating the market left the process on the rule"


def test_a_closure_must_be_a_day_the_rule_calls_open() -> None:
    with pytest.raises(ValueError, match="closures"):
        MarketConfig(n_codes=10, closures=(HOLIDAY,))
