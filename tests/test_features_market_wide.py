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


def _notice(ref, day, time, status, kind, record, ex, amount, ca):
    return {
        "AnnouncementDate": day, "AnnouncementTime": time, "Code": "13010", "ReferenceNumber": ref,
        "CAReferenceNumber": ca, "StatusCode": status, "InterimFinalCode": kind, "ExDate": ex,
        "RecordDate": record, "GrossDividendRate": amount,
    }  # fmt: skip


def test_dividend_notices_count_from_their_usable_day_and_revisions_and_deletions_from_theirs() -> None:
    """A notice is usable the trading day after its effective disclosure day (15:00 cutoff); the
    latest usable notice of a dividend (CAReferenceNumber) wins, a deletion drops it, and an ex-date
    moves from "next" to "last" the day after it."""
    from gogooku3.features.asof import dividends_table

    d = dt.date
    notices = pl.DataFrame(
        [
            # Monday 13:00: usable Tuesday; 15:30: counts for Tuesday, usable Wednesday
            _notice("1", d(2024, 5, 13), "13:00", "1", "1", d(2024, 9, 30), d(2024, 9, 27), 20.0, "1"),
            _notice("2", d(2024, 5, 13), "15:30", "1", "2", d(2025, 3, 31), d(2025, 3, 28), 30.0, "2"),
            _notice("3", d(2024, 6, 3), "11:30", "2", "1", d(2024, 9, 30), d(2024, 9, 27), 25.0, "1"),
            _notice("4", d(2024, 7, 1), "16:00", "3", "2", d(2025, 3, 31), d(2025, 3, 28), 30.0, "2"),
        ]
    )
    table = dividends_table(notices)

    def on(day):
        known = table.filter(pl.col("available") <= day)
        if known.height == 0:
            return None
        row = known.sort("available").row(-1, named=True)
        return row["div_next_ex_date"], row["div_last_ex_date"], row["div_fwd_amount"]

    assert on(d(2024, 5, 13)) is None
    assert on(d(2024, 5, 14)) == (d(2024, 9, 27), None, 20.0)
    assert on(d(2024, 5, 15)) == (d(2024, 9, 27), None, 50.0)
    assert on(d(2024, 6, 3)) == (d(2024, 9, 27), None, 50.0)  # the revision is usable on the 4th
    assert on(d(2024, 6, 4)) == (d(2024, 9, 27), None, 55.0)
    assert on(d(2024, 7, 2)) == (d(2024, 9, 27), None, 55.0)  # 16:00 Monday: usable Wednesday
    assert on(d(2024, 7, 3)) == (d(2024, 9, 27), None, 25.0)  # the final is deleted
    assert on(d(2024, 9, 27)) == (d(2024, 9, 27), None, 25.0)  # the ex-date itself: still ahead
    assert on(d(2024, 9, 30)) == (None, d(2024, 9, 27), None)


def test_dividend_features_on_the_panel(inputs, panel) -> None:
    """The panel's dividend columns are the table's, as of each row's day; an ex-date is never behind."""
    div = panel.filter(pl.col("div_next_ex_date").is_not_null())
    assert div.height > 1000
    assert div.select((pl.col("div_next_ex_date") >= pl.col("Date")).all()).item()
    last = panel.filter(pl.col("div_last_ex_date").is_not_null())
    assert last.height > 1000 and last.select((pl.col("div_last_ex_date") < pl.col("Date")).all()).item()


def test_derivatives_reach_the_panel_on_the_next_trading_day(inputs, panel, days) -> None:
    """The futures' and options' day-level values of D are the panel's on D+1, the same for every code."""
    from gogooku3.features.asof import futures_table, options_table

    opt = options_table(inputs.index_option)
    fut = futures_table(inputs.futures, inputs.topix)
    for day in days[30:200:17]:
        usable = _plus(days, day, 1)
        if usable is None:
            continue
        rows = panel.filter(pl.col("Date") == usable)
        assert rows["opt_atm_iv_30d_in"].n_unique() == 1 and rows["fut_basis_z_in"].n_unique() == 1
        want = opt.filter(pl.col("available") == usable).row(0, named=True)
        assert rows["opt_atm_iv_30d_in"][0] == want["opt_atm_iv_30d"]
        assert rows["opt_put_call_oi_in"][0] == want["opt_put_call_oi"]
        assert (
            rows["fut_overnight_ret_in"][0]
            == fut.filter(pl.col("available") == usable)["fut_overnight_ret"][0]
        )
        # and the day's own bars are not used on the day
        same = opt.filter(pl.col("available") == day)
        assert (
            same.height == 0
            or panel.filter(pl.col("Date") == day)["opt_atm_iv_30d_in"][0] == same["opt_atm_iv_30d"][0]
        )


def _report(disclosed, calculated, seller, ratio):
    return {
        "DisclosedDate": disclosed, "CalculatedDate": calculated, "Code": "13010",
        "ShortSellerName": seller, "ShortPositionsToSharesOutstandingRatio": ratio,
    }  # fmt: skip


def test_short_positions_sum_the_open_reports_from_the_day_after_disclosure() -> None:
    from gogooku3.features.asof import short_positions_table

    d = dt.date
    reports = pl.DataFrame(
        [
            _report(d(2024, 6, 12), d(2024, 6, 10), "A", 0.6),  # Wednesday: usable Thursday
            _report(d(2024, 6, 13), d(2024, 6, 11), "B", 0.8),
            _report(d(2024, 6, 14), d(2024, 6, 12), "A", 0.9),  # A's update replaces its 0.6
            _report(d(2024, 6, 17), d(2024, 6, 13), "B", 0.4),  # B falls below 0.5%: closed
        ]
    )
    table = short_positions_table(reports)

    def on(day):
        known = table.filter(pl.col("available") <= day).sort("available")
        return None if known.height == 0 else known.select("short_pos_ratio", "short_pos_sellers").row(-1)

    assert on(d(2024, 6, 12)) is None
    assert on(d(2024, 6, 13)) == pytest.approx((0.6, 1.0))
    assert on(d(2024, 6, 14)) == pytest.approx((1.4, 2.0))
    assert on(d(2024, 6, 17)) == pytest.approx((1.7, 2.0))
    assert on(d(2024, 6, 18)) == pytest.approx((0.9, 1.0))


def test_a_margin_alert_is_used_from_the_day_after_publication_until_it_goes_stale(
    inputs, panel, days
) -> None:
    alerts = inputs.daily_margin_interest.sort("PublishedDate")
    assert alerts.height > 50
    checked = 0
    for published, code in (
        alerts.select("PublishedDate", "Code").unique().sort("PublishedDate").head(200).iter_rows()
    ):
        usable = _plus(days, published, 1)
        if usable is None:
            continue
        row = panel.filter((pl.col("Code") == code) & (pl.col("Date") == usable))
        if row.height:
            assert row["alert_short_long_in"][0] is not None, (code, published)
            checked += 1
    assert checked > 50
    # long after the last alert of a code its ratio is gone (the episode ended)
    last = alerts.group_by("Code").agg(pl.col("ApplicationDate").max()).row(0)
    later = panel.filter((pl.col("Code") == last[0]) & (pl.col("Date") > last[1] + dt.timedelta(days=15)))
    assert later["alert_short_long_in"].null_count() == later.height
