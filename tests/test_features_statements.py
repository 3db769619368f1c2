"""Statements are usable from the trading day after their effective disclosure day (15:00 JST cutoff)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.features import build_features
from gogooku3.features.prepare import (
    FeatureInputError,
    disclosure_after_cutoff,
    effective_disclosure_day,
    statements_asof_table,
    usable_from,
)

D = dt.date


@pytest.mark.parametrize(
    ("disclosed", "time", "effective", "usable"),
    [
        (D(2024, 1, 15), "11:30:00", D(2024, 1, 15), D(2024, 1, 16)),  # Mon in session -> Tue
        (D(2024, 1, 15), "14:59:59", D(2024, 1, 15), D(2024, 1, 16)),
        (D(2024, 1, 15), "15:00:00", D(2024, 1, 16), D(2024, 1, 17)),  # at the cutoff -> next day's
        (D(2024, 1, 15), "15:30", D(2024, 1, 16), D(2024, 1, 17)),
        (D(2024, 1, 5), "16:00:00", D(2024, 1, 9), D(2024, 1, 10)),  # Fri evening, Mon 8 Jan is a holiday
        (D(2024, 1, 13), "10:00:00", D(2024, 1, 15), D(2024, 1, 16)),  # Saturday -> Monday's
        (D(2024, 12, 30), "15:00:00", D(2025, 1, 6), D(2025, 1, 7)),  # over the year-end closure
        (D(2024, 1, 15), None, D(2024, 1, 16), D(2024, 1, 17)),  # unknown time: conservative
    ],
)
def test_effective_day_and_usable_from(disclosed, time, effective, usable):
    assert effective_disclosure_day(disclosed, time) == effective
    assert usable_from(disclosed, time) == usable


def test_bad_time_is_named():
    with pytest.raises(FeatureInputError, match="DisclosedTime 'noon'"):
        disclosure_after_cutoff("noon")


def _quotes(code: str, days: tuple[dt.date, ...]) -> pl.DataFrame:
    n = len(days)
    px = [100.0 + k for k in range(n)]
    return pl.DataFrame(
        {
            "Date": days,
            "Code": [code] * n,
            "Open": px,
            "High": px,
            "Low": px,
            "Close": px,
            "Volume": [1000.0] * n,
            "TurnoverValue": [1e5] * n,
            "AdjustmentFactor": [1.0] * n,
            "AdjustmentClose": px,
        }
    )


def _statement(code, disclosed, time, number, sales, profit, period_end, period="FY", **extra):
    row = {
        "Code": code,
        "DisclosedDate": disclosed,
        "DisclosedTime": time,
        "DisclosureNumber": number,
        "TypeOfCurrentPeriod": period,
        "CurrentPeriodEndDate": period_end,
        "NetSales": sales,
        "OperatingProfit": profit * 1.5,
        "Profit": profit,
        "Equity": 1000.0,
        "TotalAssets": 4000.0,
        "EarningsPerShare": profit / 10,
        "ForecastEarningsPerShare": extra.get("feps"),
        "ForecastOperatingProfit": extra.get("fop"),
    }
    return row


def test_feature_switches_on_exactly_on_the_usable_day():
    days = trading_days(D(2024, 1, 4), D(2024, 1, 31))
    q = pl.concat([_quotes("11110", days), _quotes("22220", days)])
    st = pl.DataFrame(
        [
            _statement("11110", D(2024, 1, 15), "11:30:00", "1", 1000.0, 100.0, D(2023, 12, 31)),
            _statement("22220", D(2024, 1, 15), "15:00:00", "2", 2000.0, 300.0, D(2023, 12, 31)),
            # a correction later the same evening replaces the morning figures from its usable day
            _statement("11110", D(2024, 1, 15), "18:00:00", "3", 1000.0, 50.0, D(2023, 12, 31)),
        ],
        schema_overrides={"ForecastEarningsPerShare": pl.Float64, "ForecastOperatingProfit": pl.Float64},
    )
    df = build_features(q, statements=st, with_targets=False)
    roe = {
        (r["Code"], r["Date"]): r["fin_roe"]
        for r in df.select("Code", "Date", "fin_roe").iter_rows(named=True)
    }
    assert roe[("11110", D(2024, 1, 15))] is None
    assert roe[("11110", D(2024, 1, 16))] == pytest.approx(0.1)  # 100 / 1000, from Tue
    assert roe[("11110", D(2024, 1, 17))] == pytest.approx(0.05)  # the 18:00 correction, from Wed
    assert roe[("22220", D(2024, 1, 16))] is None  # 15:00 sharp counts for Tue, usable Wed
    assert roe[("22220", D(2024, 1, 17))] == pytest.approx(0.3)
    days_since = df.filter((pl.col("Code") == "22220") & (pl.col("Date") == D(2024, 1, 19)))
    assert days_since.item(0, "fin_days_since_disclosure") == 4.0
    assert days_since.item(0, "fin_available") == 1


def test_year_on_year_growth_uses_the_same_period_a_year_earlier():
    st = pl.DataFrame(
        [
            _statement("11110", D(2023, 2, 10), "15:00", "1", 800.0, 40.0, D(2022, 12, 31), "3Q"),
            _statement("11110", D(2023, 5, 10), "15:00", "2", 1000.0, 50.0, D(2023, 3, 31), "FY", feps=6.0),
            _statement("11110", D(2023, 8, 10), "15:00", "3", 300.0, 20.0, D(2023, 6, 30), "1Q"),
            _statement("11110", D(2024, 2, 9), "15:00", "4", 900.0, 60.0, D(2023, 12, 31), "3Q"),
            _statement("11110", D(2024, 5, 10), "15:00", "5", 1200.0, 70.0, D(2024, 3, 31), "FY"),
        ],
        schema_overrides={"ForecastEarningsPerShare": pl.Float64, "ForecastOperatingProfit": pl.Float64},
    )
    t = statements_asof_table(st).sort("available")
    rows = t.to_dicts()
    assert rows[3]["stmt_prev_net_sales"] == 800.0  # 3Q 2024 vs 3Q 2023
    assert rows[4]["stmt_prev_net_sales"] == 1000.0  # FY vs FY
    assert rows[2]["stmt_prev_net_sales"] is None  # no 1Q a year earlier
    assert rows[2]["stmt_prev_forecast_eps"] == 6.0  # the forecast outstanding before it
    assert rows[4]["available"] == D(2024, 5, 14)  # Fri 15:00 -> Mon 13 effective -> Tue 14
