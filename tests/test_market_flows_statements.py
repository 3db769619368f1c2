"""trades_spec publication/revisions and statement disclosures of the synthetic market."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.calendar import is_trading_day, next_trading_day, on_or_after
from gogooku3.jquants.datasets import INVESTOR_TYPES, SECTIONS_BEFORE_2022, SECTIONS_FROM_2022
from gogooku3.market import MarketConfig, generate_market
from gogooku3.market.flows import trading_weeks

CFG = MarketConfig(seed=11, n_codes=150, start=dt.date(2021, 10, 1), end=dt.date(2023, 9, 30))


@pytest.fixture(scope="module")
def market():
    return generate_market(CFG)


def test_trading_weeks_publish_the_thursday_after_or_next_trading_day():
    days = tuple(
        d for d in (dt.date(2023, 4, 17) + dt.timedelta(days=k) for k in range(21)) if is_trading_day(d)
    )
    weeks = trading_weeks(days)
    # Golden Week 2023: Thu 2023-05-04 is a holiday, so the week of 04-24 publishes on Mon 05-08
    by_start = {w.start: w for w in weeks}
    assert by_start[dt.date(2023, 4, 17)].published == dt.date(2023, 4, 27)
    assert by_start[dt.date(2023, 4, 24)].end == dt.date(2023, 4, 28)
    assert by_start[dt.date(2023, 4, 24)].published == dt.date(2023, 5, 8)
    assert by_start[dt.date(2023, 5, 1)].start == dt.date(2023, 5, 1)
    assert by_start[dt.date(2023, 5, 1)].end == dt.date(2023, 5, 2)


def test_trades_spec_publication_rule(market):
    ts = market.trades_spec()
    originals = ts.sort("PublishedDate").unique(["Section", "StartDate"], keep="first", maintain_order=True)
    for start, end, published in (
        originals.select("StartDate", "EndDate", "PublishedDate").unique().iter_rows()
    ):
        assert is_trading_day(start) and is_trading_day(end) and is_trading_day(published)
        monday = start - dt.timedelta(days=start.weekday())
        assert end - monday < dt.timedelta(days=5)
        assert published == on_or_after(monday + dt.timedelta(days=10))
        assert published > end
    assert ts.select(pl.struct("PublishedDate", "Section", "StartDate").is_unique().all()).item()
    # every published frame holds only that day's publications
    day = originals["PublishedDate"][10]
    assert (market.frame("trades_spec", day)["PublishedDate"] == day).all()


def test_trades_spec_sections_switch_at_the_restructuring(market):
    ts = market.trades_spec()
    before = set(ts.filter(pl.col("StartDate") < dt.date(2022, 4, 4))["Section"])
    after = set(ts.filter(pl.col("StartDate") >= dt.date(2022, 4, 4))["Section"])
    assert before == set(SECTIONS_BEFORE_2022)
    assert after == set(SECTIONS_FROM_2022)


def test_trades_spec_values_are_consistent(market):
    ts = market.trades_spec()
    for t, _ in INVESTOR_TYPES:
        assert (ts[f"{t}Total"] == ts[f"{t}Sales"] + ts[f"{t}Purchases"]).all(), t
        assert (ts[f"{t}Balance"] == ts[f"{t}Purchases"] - ts[f"{t}Sales"]).all(), t
    for m in ("Sales", "Purchases"):
        assert (ts[f"Total{m}"] == ts[f"Proprietary{m}"] + ts[f"Brokerage{m}"]).all()
    # TokyoNagoya aggregates the other Sections of the same publication
    parts = (
        ts.filter(pl.col("Section") != "TokyoNagoya")
        .group_by("PublishedDate", "StartDate")
        .agg(pl.col("ForeignersSales").sum())
    )
    total = ts.filter(pl.col("Section") == "TokyoNagoya").select(
        "PublishedDate", "StartDate", "ForeignersSales"
    )
    joined = parts.join(total, on=["PublishedDate", "StartDate"], suffix="_tn")
    assert joined.height == total.height
    assert (joined["ForeignersSales"] == joined["ForeignersSales_tn"]).all()


def test_trades_spec_revisions_republish_with_newer_date(market):
    ts = market.trades_spec()
    counts = ts.group_by("Section", "StartDate", "EndDate").agg(
        pl.len().alias("n"),
        pl.col("PublishedDate").min().alias("first"),
        pl.col("PublishedDate").max().alias("last"),
    )
    revised = counts.filter(pl.col("n") > 1)
    assert revised.height > 0
    assert (revised["last"] > revised["first"]).all()
    assert (revised["StartDate"] >= dt.date(2023, 3, 20)).all()
    section, start = revised.row(0)[:2]
    versions = ts.filter((pl.col("Section") == section) & (pl.col("StartDate") == start)).sort(
        "PublishedDate"
    )
    assert versions["ForeignersSales"][0] != versions["ForeignersSales"][-1]


def test_statements_disclosure_times_and_rules(market):
    st = market.statements()
    assert st["DisclosureNumber"].is_unique().all()
    times = set(st["DisclosedTime"])
    assert any(t < "15:00:00" for t in times) and any(t > "15:00:00" for t in times) and "15:00:00" in times
    assert all(is_trading_day(d) for d in st["DisclosedDate"].unique().to_list())
    assert {"1Q", "2Q", "3Q", "FY"} <= set(st["TypeOfCurrentPeriod"])
    docs = set(st["TypeOfDocument"])
    assert "FYFinancialStatements_Consolidated_JP" in docs and "1QFinancialStatements_Consolidated_JP" in docs
    assert "EarnForecastRevision" in docs
    revisions = st.filter(pl.col("TypeOfDocument") == "EarnForecastRevision")
    assert revisions["NetSales"].null_count() == revisions.height
    assert revisions["ForecastProfit"].null_count() == 0
    day = st["DisclosedDate"][0]
    assert market.frame("statements", day).equals(st.filter(pl.col("DisclosedDate") == day))


def test_statements_are_cumulative_within_the_fiscal_year(market):
    st = market.statements().filter(pl.col("TypeOfDocument") != "EarnForecastRevision")
    by_year = st.group_by("Code", "CurrentFiscalYearStartDate").agg(
        pl.col("NetSales").sort_by("CurrentPeriodEndDate"),
        pl.col("TypeOfCurrentPeriod").sort_by("CurrentPeriodEndDate"),
        pl.col("CurrentPeriodStartDate").n_unique().alias("starts"),
    )
    full = by_year.filter(pl.col("TypeOfCurrentPeriod").list.len() == 4)
    assert full.height > 0
    for sales, periods, starts in full.select("NetSales", "TypeOfCurrentPeriod", "starts").iter_rows():
        assert periods == ["1Q", "2Q", "3Q", "FY"]
        assert starts == 1  # every period starts at the fiscal year start
        assert sales[0] < sales[1] < sales[2] < sales[3]


def test_statements_only_while_listed(market):
    st = market.statements()
    for code in st["Code"].unique().to_list()[:40]:
        first, gone = market.listing_span(code)
        dates = st.filter(pl.col("Code") == code)["DisclosedDate"]
        assert dates.min() >= first
        if gone is not None:
            assert dates.max() < gone


def test_statement_after_close_is_used_from_next_trading_day(market):
    st = market.statements().filter(pl.col("Profit").is_not_null() & (pl.col("DisclosedTime") >= "15:00:00"))
    late = st.filter(pl.col("DisclosedDate") < market.trading_days[-2]).row(0, named=True)
    day, code = late["DisclosedDate"], late["Code"]
    roe = (
        late["Profit"]
        * 4
        / {"1Q": 1, "2Q": 2, "3Q": 3, "FY": 4}[late["TypeOfCurrentPeriod"]]
        / late["Equity"]
    )
    seen_day = market.planted(day).filter(pl.col("Code") == code)["roe"].item()
    seen_next = market.planted(next_trading_day(day)).filter(pl.col("Code") == code)["roe"].item()
    assert seen_next == pytest.approx(roe, rel=1e-5)
    assert seen_day is None or seen_day != pytest.approx(roe, rel=1e-5)
