"""Hand-computed cases of the trades_spec expansion: the usability rule, a holiday week, a
revision, z-scores from usable weeks only, input validation.

Values are chosen so that the net ratios are round numbers: for an investor type with purchases
``1000 * (1 + r)`` and sales ``1000 * (1 - r)``, Total = 2000 and Balance = 2000 r, so the net
ratio Balance / Total is exactly ``r``. Individuals default to buys == sells (ratio 0), so the
smart-money index (foreigners' ratio - individuals' ratio) equals the foreigners' ratio.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.flows import OUTPUT_SCHEMA, FlowHistory, SectionLineage, expand_trades_spec
from gogooku3.flows.synthetic import frame, record, week

D = dt.date


def rows_by_day(out: pl.DataFrame, section: str) -> dict[dt.date, dict]:
    return {r["Date"]: r for r in out.filter(pl.col("Section") == section).iter_rows(named=True)}


def test_year_end_holiday_week_is_carried_forward_and_weekend_publication_waits() -> None:
    # Week A (2023-12-18..22) published Thu 2023-12-28 (a trading day) -> usable Fri 2023-12-29.
    # The year-end week B (2023-12-25..29) is only published Thu 2024-01-11 -> usable 2024-01-12.
    # A revision A' of week A is published on Saturday 2024-01-06; Monday 01-08 is Coming-of-Age
    # Day, so A' is first usable on Tuesday 2024-01-09.
    raw = frame(
        [
            week("TSEPrime", D(2023, 12, 18), D(2023, 12, 28), 0.10),
            week("TSEPrime", D(2023, 12, 25), D(2024, 1, 11), 0.30),
            week("TSEPrime", D(2023, 12, 18), D(2024, 1, 6), 0.20),
        ]
    )
    out = expand_trades_spec(raw, D(2023, 12, 27), D(2024, 1, 15))
    got = {
        day: (
            r["EndDate"],
            r["PublishedDate"],
            r["days_since_published"],
            r["is_fresh"],
            r["flow_foreigners_net_ratio"],
        )
        for day, r in rows_by_day(out, "TSEPrime").items()
    }
    A, B = D(2023, 12, 22), D(2023, 12, 29)
    assert got == {
        # 12-27 and 12-28: nothing usable yet (A is published on 12-28 after the close) -> no row.
        D(2023, 12, 29): (A, D(2023, 12, 28), 1, True, 0.10),
        # 12-31..01-03 closed. Trading days since publication keep counting.
        D(2024, 1, 4): (A, D(2023, 12, 28), 2, False, 0.10),
        D(2024, 1, 5): (A, D(2023, 12, 28), 3, False, 0.10),
        # The Saturday revision A' replaces A from Tuesday 01-09 (Monday is a holiday) onward.
        D(2024, 1, 9): (A, D(2024, 1, 6), 1, True, 0.20),
        D(2024, 1, 10): (A, D(2024, 1, 6), 2, False, 0.20),
        # B is published on 01-11 but only usable on 01-12.
        D(2024, 1, 11): (A, D(2024, 1, 6), 3, False, 0.20),
        D(2024, 1, 12): (B, D(2024, 1, 11), 1, True, 0.30),
        D(2024, 1, 15): (B, D(2024, 1, 11), 2, False, 0.30),
    }
    assert out.filter(pl.col("Date") == D(2024, 1, 12)).get_column("UsableDate").to_list() == [D(2024, 1, 12)]


# Four weeks of one Section in May-June 2024 (no holidays), foreigners' ratios r:
#   W1 05-13..17 published Thu 05-23  r=0.1
#   W2 05-20..24 published Thu 05-30  r=0.3, revised on Mon 06-10 to r=0.5 (usable Tue 06-11)
#   W3 05-27..31 published Thu 06-06  r=0.2
#   W4 06-03..07 published Thu 06-13  r=0.4
REVISION_CASE = [
    week("TSEPrime", D(2024, 5, 13), D(2024, 5, 23), 0.1),
    week("TSEPrime", D(2024, 5, 20), D(2024, 5, 30), 0.3),
    week("TSEPrime", D(2024, 5, 27), D(2024, 6, 6), 0.2),
    week("TSEPrime", D(2024, 5, 20), D(2024, 6, 10), 0.5),
    week("TSEPrime", D(2024, 6, 3), D(2024, 6, 13), 0.4),
]


def test_revision_replaces_from_its_usable_day_and_never_rewrites_history() -> None:
    out = expand_trades_spec(frame(REVISION_CASE), D(2024, 5, 24), D(2024, 6, 14), history=FlowHistory(52, 3))
    rows = rows_by_day(out, "TSEPrime")
    z = {day: r["flow_smart_money_idx_z"] for day, r in rows.items()}
    wow = {day: r["flow_smart_money_idx_wow"] for day, r in rows.items()}
    n = {day: r["flow_z_weeks"] for day, r in rows.items()}

    # 05-31: W2 (v1) selected; window {0.1, 0.3}: 2 weeks < min_weeks 3 -> no z.
    assert rows[D(2024, 5, 31)]["EndDate"] == D(2024, 5, 24)
    assert rows[D(2024, 5, 31)]["flow_foreigners_net_ratio"] == pytest.approx(0.3)
    assert z[D(2024, 5, 31)] is None and n[D(2024, 5, 31)] == 2
    assert wow[D(2024, 5, 31)] == pytest.approx(0.3 - 0.1)

    # 06-07 and 06-10: W3 selected, window {0.1, 0.3, 0.2}: mean 0.2, sample std
    # sqrt((0.01 + 0.01 + 0) / 2) = 0.1 -> z = (0.2 - 0.2) / 0.1 = 0. wow = 0.2 - 0.3 = -0.1.
    for day in (D(2024, 6, 7), D(2024, 6, 10)):
        assert z[day] == pytest.approx(0.0, abs=1e-12)
        assert wow[day] == pytest.approx(-0.1)
        assert n[day] == 3

    # 06-11..06-13: the revision of W2 (0.5) is usable; W3 stays selected (not fresh, its values
    # unchanged) but its history now holds W2' = 0.5: window {0.1, 0.5, 0.2}, mean 0.8/3,
    # deviations (-1/6, 7/30, -1/15), sum of squares 0.0866667, std sqrt(0.0433333) = 0.2081666,
    # z = (0.2 - 0.2666667) / 0.2081666 = -0.3202563; wow = 0.2 - 0.5 = -0.3.
    # 06-13: W4 is published that day, so it is not usable yet and not in the window.
    for day in (D(2024, 6, 11), D(2024, 6, 12), D(2024, 6, 13)):
        assert rows[day]["EndDate"] == D(2024, 5, 31)
        assert rows[day]["is_fresh"] is False
        assert rows[day]["flow_foreigners_net_ratio"] == pytest.approx(0.2)
        assert z[day] == pytest.approx(-0.3202563, abs=1e-6)
        assert wow[day] == pytest.approx(-0.3)

    # 06-14: W4 usable: window {0.1, 0.5, 0.2, 0.4}, mean 0.3, std sqrt(0.1 / 3) = 0.1825742,
    # z = 0.1 / 0.1825742 = 0.5477226; wow = 0.4 - 0.2 = 0.2.
    assert rows[D(2024, 6, 14)]["is_fresh"] is True
    assert z[D(2024, 6, 14)] == pytest.approx(0.5477226, abs=1e-6)
    assert wow[D(2024, 6, 14)] == pytest.approx(0.2)

    # History is not rewritten: the days before 06-11 are what they were without the revision.
    before = out.filter(pl.col("Date") < D(2024, 6, 11))
    without = expand_trades_spec(
        frame([r for r in REVISION_CASE if r["PublishedDate"] != D(2024, 6, 10)]),
        D(2024, 5, 24),
        D(2024, 6, 10),
        history=FlowHistory(52, 3),
    )
    assert before.equals(without)


def test_z_window_is_weeks_back_from_the_selected_week() -> None:
    # weeks=2: the window is EndDate in (06-07 - 14 days, 06-07] = {W3, W4} = {0.2, 0.4} on 06-14:
    # mean 0.3, std sqrt(0.02) = 0.1414214, z = 0.1 / 0.1414214 = 0.7071068.
    out = expand_trades_spec(frame(REVISION_CASE), D(2024, 6, 14), D(2024, 6, 14), history=FlowHistory(2, 2))
    row = out.row(0, named=True)
    assert row["flow_z_weeks"] == 2
    assert row["flow_smart_money_idx_z"] == pytest.approx(0.7071068, abs=1e-6)
    assert row["flow_foreigners_net_ratio_z"] == pytest.approx(0.7071068, abs=1e-6)
    # Individuals' ratio is 0 every week: zero std -> no z-score rather than a division by zero.
    assert row["flow_individuals_net_ratio_z"] is None


def test_output_schema_investor_columns_and_net_ratios() -> None:
    rec = record(
        "TSEStandard",
        D(2024, 6, 3),
        D(2024, 6, 7),
        D(2024, 6, 13),
        purchases={"Foreigners": 300.0, "Individuals": 100.0, "TrustBanks": 0.0},
        sales={"Foreigners": 100.0, "Individuals": 300.0, "TrustBanks": 0.0},
    )
    out = expand_trades_spec(frame([rec]), D(2024, 6, 14), D(2024, 6, 14))
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    row = out.row(0, named=True)
    # Foreigners: (300 - 100) / 400 = 0.5; individuals: -0.5; smart money = 0.5 - (-0.5) = 1.0.
    assert row["flow_foreigners_net_ratio"] == pytest.approx(0.5)
    assert row["flow_individuals_net_ratio"] == pytest.approx(-0.5)
    assert row["flow_smart_money_idx"] == pytest.approx(1.0)
    # Trust banks did not trade: Total 0 -> no ratio (not NaN, not inf).
    assert row["flow_trust_banks_net_ratio"] is None
    # Investor columns exactly as published.
    assert (
        row["ForeignersPurchases"],
        row["ForeignersSales"],
        row["ForeignersTotal"],
        row["ForeignersBalance"],
    ) == (
        300.0,
        100.0,
        400.0,
        200.0,
    )
    assert row["flow_smart_money_idx_wow"] is None and row["flow_smart_money_idx_z"] is None
    assert row["flow_smart_money_extreme"] is None


def test_extreme_flag_follows_z() -> None:
    # Nine calm weeks (r alternating 0.0/0.02) then a spike 0.5: z well above 2 -> +1.
    recs = [
        week(
            "TSEPrime",
            D(2024, 1, 8) + dt.timedelta(days=7 * i),
            D(2024, 1, 18) + dt.timedelta(days=7 * i),
            0.02 * (i % 2),
        )
        for i in range(9)
    ]
    recs.append(week("TSEPrime", D(2024, 3, 11), D(2024, 3, 21), 0.5))
    out = expand_trades_spec(frame(recs), D(2024, 3, 21), D(2024, 3, 22))
    rows = rows_by_day(out, "TSEPrime")
    # 03-21: the calm 9th week (r=0) is selected: z = (0 - 0.0089) / 0.0105 = -0.84 -> 0.
    assert rows[D(2024, 3, 21)]["flow_smart_money_extreme"] == 0
    assert rows[D(2024, 3, 21)]["EndDate"] == D(2024, 3, 8)
    assert rows[D(2024, 3, 22)]["flow_smart_money_idx_z"] > 2
    assert rows[D(2024, 3, 22)]["flow_smart_money_extreme"] == 1


def test_sections_exist_from_their_first_usable_week_only() -> None:
    raw = frame(
        [
            week("TSEPrime", D(2024, 5, 13), D(2024, 5, 23), 0.1),
            week("TSEGrowth", D(2024, 5, 20), D(2024, 5, 30), 0.1),
        ]
    )
    out = expand_trades_spec(raw, D(2024, 5, 22), D(2024, 6, 3))
    per_day = out.group_by("Date").agg(pl.col("Section").sort()).sort("Date")
    assert dict(per_day.iter_rows()) == {
        D(2024, 5, 24): ["TSEPrime"],
        D(2024, 5, 27): ["TSEPrime"],
        D(2024, 5, 28): ["TSEPrime"],
        D(2024, 5, 29): ["TSEPrime"],
        D(2024, 5, 30): ["TSEPrime"],
        D(2024, 5, 31): ["TSEGrowth", "TSEPrime"],
        D(2024, 6, 3): ["TSEGrowth", "TSEPrime"],
    }


def test_old_section_retires_when_successor_arrives_and_history_is_joined() -> None:
    # TSE1st weeks up to 2022-04-01; the first TSEPrime week (04-04..08) is published 04-14 and
    # usable 04-15: TSE1st has rows through 04-14 and none from 04-15.
    raw = frame(
        [
            week("TSE1st", D(2022, 3, 14), D(2022, 3, 24), 0.1),
            week("TSE1st", D(2022, 3, 21), D(2022, 3, 31), 0.3),
            week("TSE1st", D(2022, 3, 28), D(2022, 4, 7), 0.2),
            week("TSEPrime", D(2022, 4, 4), D(2022, 4, 14), 0.4),
        ]
    )
    out = expand_trades_spec(raw, D(2022, 4, 13), D(2022, 4, 18), history=FlowHistory(52, 3))
    assert out.select("Date", "Section").rows() == [
        (D(2022, 4, 13), "TSE1st"),
        (D(2022, 4, 14), "TSE1st"),
        (D(2022, 4, 15), "TSEPrime"),
        (D(2022, 4, 18), "TSEPrime"),
    ]
    prime = out.filter(pl.col("Date") == D(2022, 4, 15)).row(0, named=True)
    # Joined history {0.1, 0.3, 0.2, 0.4}: mean 0.25, std sqrt(0.05 / 3) = 0.1290994,
    # z = 0.15 / 0.1290994 = 1.1618950; wow against TSE1st's last week: 0.4 - 0.2 = 0.2.
    assert prime["flow_z_weeks"] == 4
    assert prime["flow_smart_money_idx_z"] == pytest.approx(1.1618950, abs=1e-6)
    assert prime["flow_smart_money_idx_wow"] == pytest.approx(0.2)
    # Without the lineage every Section stands alone: TSE1st is never retired, TSEPrime has one week.
    alone = expand_trades_spec(raw, D(2022, 4, 15), D(2022, 4, 15), lineage=SectionLineage.none())
    assert sorted(alone.get_column("Section").to_list()) == ["TSE1st", "TSEPrime"]
    assert alone.filter(pl.col("Section") == "TSEPrime").get_column("flow_z_weeks").to_list() == [1]


def test_empty_input_and_ranges() -> None:
    empty = expand_trades_spec(frame([]), D(2024, 1, 1), D(2024, 1, 31))
    assert empty.is_empty() and empty.schema == pl.Schema(OUTPUT_SCHEMA)
    # A range without trading days.
    raw = frame([week("TSEPrime", D(2024, 5, 13), D(2024, 5, 23), 0.1)])
    assert expand_trades_spec(raw, D(2024, 6, 1), D(2024, 6, 2)).is_empty()
    with pytest.raises(ValueError, match="after end"):
        expand_trades_spec(raw, D(2024, 6, 2), D(2024, 6, 1))
    # Lazy input gives the same result as eager input.
    lazy = expand_trades_spec(raw.lazy(), D(2024, 5, 24), D(2024, 5, 31))
    assert lazy.equals(expand_trades_spec(raw, D(2024, 5, 24), D(2024, 5, 31)))


def test_bad_input_is_named() -> None:
    good = frame([week("TSEPrime", D(2024, 5, 13), D(2024, 5, 23), 0.1)])
    day = D(2024, 5, 31)
    with pytest.raises(ValueError, match="missing required column.*ForeignersBalance"):
        expand_trades_spec(good.drop("ForeignersBalance"), day, day)
    with pytest.raises(ValueError, match="null Section"):
        expand_trades_spec(good.with_columns(pl.lit(None, pl.String).alias("Section")), day, day)
    with pytest.raises(ValueError, match="EndDate before StartDate"):
        expand_trades_spec(good.with_columns(pl.lit(D(2024, 5, 1)).alias("EndDate")), day, day)
    with pytest.raises(ValueError, match="PublishedDate before EndDate"):
        expand_trades_spec(good.with_columns(pl.lit(D(2024, 5, 14)).alias("PublishedDate")), day, day)
    with pytest.raises(ValueError, match="column ForeignersSales .* cannot be cast"):
        expand_trades_spec(good.with_columns(pl.lit("lots").alias("ForeignersSales")), day, day)
    conflicting = pl.concat([good, good.with_columns(pl.lit(5.0).alias("ForeignersSales"))])
    with pytest.raises(ValueError, match=r"share \(Section, EndDate, PublishedDate\)"):
        expand_trades_spec(conflicting, day, day)
    # Exact duplicates (a partition read twice) are harmless.
    assert expand_trades_spec(pl.concat([good, good]), day, day).equals(expand_trades_spec(good, day, day))
    # Castable dtypes (dates as strings from a CSV, say) are accepted.
    as_text = good.with_columns(pl.col("PublishedDate").cast(pl.String))
    assert expand_trades_spec(as_text, day, day).equals(expand_trades_spec(good, day, day))
