"""The datasets derived from the synthetic market agree with the prices and statements they come from."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.jquants.datasets import FISCAL_QUARTERS, SECTOR_INDEX_CODES
from gogooku3.market import MarketConfig, generate_market
from gogooku3.market.market import DERIVED_DATASETS
from gogooku3.pit import is_week_end

CFG = MarketConfig(seed=5, n_codes=60, start=dt.date(2023, 1, 1), end=dt.date(2023, 12, 31))


@pytest.fixture(scope="module")
def market():
    return generate_market(CFG)


def test_a_one_stock_sector_index_moves_with_that_stock(market) -> None:
    listed = market.listed_info(market.end)
    counts = listed.group_by("Sector33Code").len().filter(pl.col("len") == 1)
    alone = listed.join(counts, on="Sector33Code").filter(
        pl.col("Code").is_in(
            [c for c in market.codes if market.listing_span(c) == (market.trading_days[0], None)]
        )
    )
    assert alone.height, "the market must have a sector of one stock listed all year"
    code, sector = alone.row(0, named=True)["Code"], alone.row(0, named=True)["Sector33Code"]
    stock = (
        market.daily_quotes(code)
        .select("Date", "AdjustmentClose")
        .with_columns(pl.col("AdjustmentClose").forward_fill())
    )
    index = market.derived("indices", code=SECTOR_INDEX_CODES[sector]).select("Date", "Close")
    both = stock.join(index, on="Date").sort("Date")
    r_stock = (both["AdjustmentClose"] / both["AdjustmentClose"].shift(1)).to_numpy()[1:]
    r_index = (both["Close"] / both["Close"].shift(1)).to_numpy()[1:]
    np.testing.assert_allclose(r_index, r_stock, rtol=2e-5)  # the index is rounded to 0.01
    assert both.height == len(market.trading_days)


def test_short_selling_splits_half_of_each_sectors_turnover(market) -> None:
    day = market.trading_days[100]
    quotes = market.frame("daily_quotes", day).join(
        market.listed_info(day).select("Code", "Sector33Code"), on="Code"
    )
    half = quotes.group_by("Sector33Code").agg((pl.col("TurnoverValue").sum() * 0.5).round().alias("half"))
    got = market.frame("short_selling", day).join(half, on="Sector33Code", how="full", coalesce=True)
    total = (
        pl.col("SellingExcludingShortSellingTurnoverValue")
        + pl.col("ShortSellingWithRestrictionsTurnoverValue")
        + pl.col("ShortSellingWithoutRestrictionsTurnoverValue")
    )
    got = got.filter(pl.col("half") > 0)
    assert got.height > 10 and got.select((total == pl.col("half")).all()).item()
    share = got.select(((total - pl.col("SellingExcludingShortSellingTurnoverValue")) / total).alias("s"))[
        "s"
    ]
    assert share.min() >= 0.15 - 1e-9 and share.max() <= 0.65 + 1e-9


def test_weekly_margin_balances_are_consistent_and_recorded_at_week_ends(market) -> None:
    m = market.derived("weekly_margin_interest")
    assert m.height > 1000
    assert all(is_week_end(d) for d in m.get_column("Date").unique().to_list())
    assert m.select(
        (
            pl.col("LongMarginTradeVolume")
            == pl.col("LongNegotiableMarginTradeVolume") + pl.col("LongStandardizedMarginTradeVolume")
        ).all()
        & (
            pl.col("ShortMarginTradeVolume")
            == pl.col("ShortNegotiableMarginTradeVolume") + pl.col("ShortStandardizedMarginTradeVolume")
        ).all()
    ).item()
    # margin-only issues (IssueType 1) cannot sell short on standardized margin; others are not eligible
    assert m.filter(pl.col("IssueType") == "1")["ShortStandardizedMarginTradeVolume"].max() == 0
    eligible = market.listed_info(market.end).filter(pl.col("MarginCode").is_in(["1", "2"]))["Code"]
    assert set(m["Code"].unique()) <= set(market.codes) and set(
        m.filter(pl.col("Date") == m["Date"].max())["Code"]
    ) <= set(eligible)


def test_every_earnings_date_is_announced_before_it_and_the_last_announcement_is_right(market) -> None:
    cal = market.derived("earnings_calendar")
    assert cal.height > 100 and cal.select((pl.col("PublishedDate") < pl.col("Date")).all()).item()
    actual = (
        market.statements()
        .filter(pl.col("NetSales").is_not_null())
        .group_by("Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate", maintain_order=True)
        .first()
        .select(
            "Code",
            pl.col("DisclosedDate").alias("Date"),
            pl.col("TypeOfCurrentPeriod").replace_strict(FISCAL_QUARTERS).alias("FiscalQuarter"),
        )
    )
    # the latest announcement of each event (code, quarter, scheduled near the disclosure) is its date
    last = (
        cal.sort("PublishedDate")
        .group_by("Code", "FiscalQuarter", pl.col("Date").dt.truncate("1mo").alias("m"))
        .last()
    )
    hits = last.join(actual, on=["Code", "FiscalQuarter", "Date"], how="semi").height
    assert hits / last.height > 0.9
    revised = cal.group_by("Code", "FiscalQuarter").agg(
        pl.col("Date").n_unique() > pl.col("Date").dt.truncate("1mo").n_unique()
    )
    assert revised["Date"].any(), "some dates must be corrected by a later announcement"


def test_derived_datasets_are_deterministic() -> None:
    a, b = generate_market(CFG), generate_market.__wrapped__(CFG)
    for name in DERIVED_DATASETS:
        assert a.derived(name).equals(b.derived(name)), name
    assert a.daily_panel().equals(b.daily_panel())


def test_dividends_agree_with_the_statements_and_revisions_point_at_their_dividend(market) -> None:
    div = market.derived("dividends")
    assert div.height > 100 and div["ReferenceNumber"].n_unique() == div.height
    assert div.select((pl.col("ExDate") < pl.col("RecordDate")).all()).item()
    # every revision or deletion names a dividend first announced earlier, for the same code and record
    first = div.filter(pl.col("ReferenceNumber") == pl.col("CAReferenceNumber"))
    later = div.filter(pl.col("ReferenceNumber") != pl.col("CAReferenceNumber"))
    assert later.height > 0 and set(later["StatusCode"]) <= {"2", "3"}
    joined = later.join(first, left_on="CAReferenceNumber", right_on="ReferenceNumber", suffix="_first")
    assert joined.height == later.height
    assert (
        joined.select(
            (pl.col("Code") == pl.col("Code_first"))
            & (pl.col("RecordDate") == pl.col("RecordDate_first"))
            & (pl.col("AnnouncementDate") >= pl.col("AnnouncementDate_first"))
        )
        .to_series()
        .all()
    )
    # the decided interim and final of a fiscal year add up to the statement's annual dividend
    decided = (
        div.filter(pl.col("ForecastResultCode") == "1")
        .sort("AnnouncementDate", "ReferenceNumber")
        .group_by("CAReferenceNumber")
        .last()
    )
    fy = (
        market.statements()
        .filter(
            (pl.col("TypeOfCurrentPeriod") == "FY") & pl.col("ResultDividendPerShareAnnual").is_not_null()
        )
        .group_by("Code", "CurrentFiscalYearEndDate", maintain_order=True)
        .first()
    )
    finals = decided.filter(pl.col("InterimFinalCode") == "2").select(
        "Code",
        pl.col("RecordDate").alias("CurrentFiscalYearEndDate"),
        pl.col("GrossDividendRate").alias("final"),
    )
    interims = decided.filter(pl.col("InterimFinalCode") == "1").select(
        "Code",
        pl.col("RecordDate").dt.offset_by("6mo").dt.month_end().alias("CurrentFiscalYearEndDate"),
        pl.col("GrossDividendRate").alias("interim"),
    )
    years = fy.join(finals, on=["Code", "CurrentFiscalYearEndDate"]).join(
        interims, on=["Code", "CurrentFiscalYearEndDate"], how="left"
    )
    assert years.height > 30
    total = pl.col("final") + pl.col("interim").fill_null(0.0)
    paid = years.filter(pl.col("ResultDividendPerShareAnnual") >= total)  # a cut interim leaves final 0
    assert paid.height > 0.9 * years.height
    assert paid.select(((total - pl.col("ResultDividendPerShareAnnual")).abs() <= 0.051).all()).item()


def test_an_ex_date_is_one_trading_day_before_the_record_day_two_under_t3() -> None:
    from gogooku3.market.derived import ex_date

    assert ex_date(dt.date(2024, 3, 31)) == dt.date(2024, 3, 28)  # Sunday: record day Fri 29th
    assert ex_date(dt.date(2024, 9, 30)) == dt.date(2024, 9, 27)
    assert ex_date(dt.date(2019, 3, 31)) == dt.date(2019, 3, 27)  # T+3 settlement
    assert ex_date(dt.date(2019, 9, 30)) == dt.date(2019, 9, 27)  # T+2 from 2019-07-16


def test_futures_track_topix_with_a_small_basis_and_expire_on_their_sq_day(market) -> None:
    from gogooku3.market.derivatives import sq_day

    fut = market.derived("futures")
    topix = market.topix().select("Date", pl.col("Close").alias("spot"))
    front = fut.filter(pl.col("CentralContractMonthFlag") == "1").join(topix, on="Date")
    assert front.height == len(market.trading_days)  # one central contract a day
    assert front.select(((pl.col("SettlementPrice") / pl.col("spot") - 1).abs() < 0.01).all()).item()
    assert fut.select((pl.col("LastTradingDay") >= pl.col("Date")).all()).item()
    assert sq_day(2023, 3) == dt.date(2023, 3, 10) and sq_day(2023, 3).weekday() == 4
    assert set(fut["ContractMonth"].str.slice(5, 2)) <= {"03", "06", "09", "12"}


def test_option_implied_volatility_follows_the_market_and_puts_outweigh_calls(market) -> None:
    from gogooku3.features.asof import options_table

    table = options_table(market.derived("index_option"))
    close = market.topix().sort("Date")["Close"].to_numpy()
    ret = np.diff(np.log(close))
    rv = np.array([ret[max(0, t - 19) : t + 1].std() * np.sqrt(252) for t in range(len(ret))])
    iv = table.sort("available")["opt_atm_iv_30d"].to_numpy()[1:]
    assert np.corrcoef(rv[20:], iv[20 : len(rv)])[0, 1] > 0.5
    assert table.select((pl.col("opt_put_call_oi") > 1.0).mean()).item() > 0.8


def test_margin_alerts_publish_the_previous_trading_days_balances_and_revisions_add_records(market) -> None:
    alerts = market.derived("daily_margin_interest")
    days = list(market.trading_days)
    assert alerts.height > 50
    previous = pl.col("PublishedDate").map_elements(lambda d: days[days.index(d) - 1], return_dtype=pl.Date)
    is_regular = pl.col("ApplicationDate") == previous
    regular, revised = alerts.filter(is_regular), alerts.filter(~is_regular)
    assert 0 < revised.height < 0.05 * alerts.height
    # a revision: the same ApplicationDate as an earlier record of the code, published later
    assert (
        revised.join(regular, on=["Code", "ApplicationDate"], suffix="_first")
        .select((pl.col("PublishedDate") > pl.col("PublishedDate_first")).all())
        .item()
    )
    assert alerts["PublishReasonDailyPublication"].all()
    eligible = set(market.listed_info(market.end).filter(pl.col("MarginCode").is_in(["1", "2"]))["Code"])
    assert set(alerts.filter(pl.col("PublishedDate") == alerts["PublishedDate"].max())["Code"]) <= eligible


def test_short_positions_are_reported_by_the_rule(market) -> None:
    reports = market.derived("short_selling_positions").sort("ShortSellerName", "Code", "CalculatedDate")
    assert reports.height > 50
    ratio = pl.col("ShortPositionsToSharesOutstandingRatio")
    prev = ratio.shift(1).over("ShortSellerName", "Code")
    checked = reports.with_columns(prev.alias("_prev"))
    # every report is at or above 0.5%, or the first one below it after a report above it
    assert checked.filter(ratio < 0.5).select((pl.col("_prev") >= 0.5).all()).item()
    # a report repeats the previous one's ratio, and moved by 0.1pp or more unless it closed
    follow = checked.filter(pl.col("_prev").is_not_null() & (pl.col("_prev") >= 0.5))
    assert follow.select((pl.col("ShortPositionsInPreviousReportingRatio") == pl.col("_prev")).all()).item()
    assert follow.filter(ratio >= 0.5).select(((ratio - pl.col("_prev")).abs() >= 0.1 - 1e-9).all()).item()
