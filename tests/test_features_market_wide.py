"""The market-wide datasets reach the feature panel exactly on their usable day, never before.

The usable days are counted here from the market's own trading-day list (not from gogooku3.pit):
a sector's short selling of day D from D+1, a weekly margin record R (published 2 trading days
later, after the close) from R+3, an earnings date announced on P (19:00) from P+1, where +k is k
trading days. A correction replaces the date it corrects only from its own usable day.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.features.prepare import prepare_panel
from gogooku3.features.testing import market_inputs

START, END = dt.date(2022, 6, 1), dt.date(2023, 6, 30)


@pytest.fixture(scope="module")
def inputs():
    return market_inputs(50, START, END, seed=23)


@pytest.fixture(scope="module")
def panel(inputs):
    return prepare_panel(
        inputs.daily_quotes,
        listed_info=inputs.listed_info,
        topix=inputs.topix,
        **{k: v for k, v in inputs.kwargs().items() if k not in ("listed_info", "topix", "flows")},
    )


@pytest.fixture(scope="module")
def days(inputs):
    return sorted(set(inputs.daily_quotes.get_column("Date").to_list()))


def _plus(days: list[dt.date], day: dt.date, k: int) -> dt.date | None:
    i = days.index(day) + k
    return days[i] if i < len(days) else None


def test_sector_short_share_is_the_previous_trading_days(inputs, panel, days) -> None:
    s = inputs.short_selling
    short = pl.col("ShortSellingWithRestrictionsTurnoverValue") + pl.col(
        "ShortSellingWithoutRestrictionsTurnoverValue"
    )
    share = s.select(
        "Date",
        "Sector33Code",
        (short / (short + pl.col("SellingExcludingShortSellingTurnoverValue"))).alias("share"),
    )
    nxt = {d: _plus(days, d, 1) for d in days}
    expected = share.with_columns(pl.col("Date").replace_strict(nxt, default=None).alias("Date")).drop_nulls(
        "Date"
    )
    got = panel.select("Date", "Code", "Sector33Code", "short_share_in").join(
        expected, on=["Date", "Sector33Code"], how="left"
    )
    rows = got.filter(pl.col("Date") > days[0])
    assert rows.height > 5000
    assert rows.select((pl.col("short_share_in") - pl.col("share")).abs().max()).item() < 1e-12
    assert rows.filter(pl.col("share").is_not_null())["short_share_in"].null_count() == 0
    # a sector with no selling on a day has no row: the panel carries its last known share
    assert rows["short_share_in"].null_count() <= rows["share"].null_count() < rows.height / 100
    assert (
        panel.filter(pl.col("Date") == days[0])["short_share_in"].null_count()
        == panel.filter(pl.col("Date") == days[0]).height
    )


def test_weekly_margin_records_are_used_from_the_third_trading_day_after_the_record(
    inputs, panel, days
) -> None:
    m = inputs.weekly_margin_interest.select("Date", "Code", "LongMarginTradeVolume")
    checked = 0
    for record, code, long in m.filter(pl.col("Date") < days[-5]).sample(300, seed=1).iter_rows():
        usable, published = _plus(days, record, 3), _plus(days, record, 2)
        rows = panel.filter((pl.col("Code") == code) & pl.col("Date").is_in([published, usable]))
        if rows.height < 2:
            continue  # the code was not trading on those days
        before, after = rows.sort("Date")["margin_long_in"].to_list()
        assert after == long, (record, code)
        previous = m.filter((pl.col("Code") == code) & (pl.col("Date") < record)).sort("Date")
        assert before == (previous["LongMarginTradeVolume"][-1] if previous.height else None), (record, code)
        checked += 1
    assert checked > 200


def test_earnings_dates_are_used_from_the_day_after_their_announcement_and_corrections_from_theirs(
    inputs, panel, days
) -> None:
    cal = inputs.earnings_calendar.sort("PublishedDate")
    seen_correction = 0
    for published, scheduled, code in cal.select("PublishedDate", "Date", "Code").iter_rows():
        usable = _plus(days, published, 1)
        if usable is None or scheduled < usable:
            continue
        rows = panel.filter((pl.col("Code") == code) & pl.col("Date").is_in([published, usable])).sort("Date")
        if rows.height < 2:
            continue
        before, after = rows["earn_next_date"].to_list()
        assert after == scheduled, (code, published)
        earlier = cal.filter((pl.col("Code") == code) & (pl.col("PublishedDate") < published))
        known = earlier["Date"].to_list()[-1] if earlier.height else None
        assert before == (known if known is not None and known >= published else None), (code, published)
        if known is not None and known >= published and known != scheduled:
            seen_correction += 1  # a correction: the old date stayed in use through its publication day
    assert seen_correction > 0
