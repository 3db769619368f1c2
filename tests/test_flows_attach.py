"""Sections to stocks across the 2022-04-04 market restructuring (hand-computed)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.flows import (
    MARKET_SECTIONS,
    attach_flows_to_stocks,
    expand_trades_spec,
    fallback_section_for_market_code,
    section_for_market_code,
)
from gogooku3.flows.synthetic import frame, week
from gogooku3.jquants.datasets import MARKET_CODES, SECTIONS_BEFORE_2022, SECTIONS_FROM_2022

D = dt.date


def test_market_code_mapping() -> None:
    assert [section_for_market_code(c) for c in ("0101", "0102", "0104", "0106", "0107")] == [
        "TSE1st",
        "TSE2nd",
        "TSEMothers",
        "TSEJASDAQ",
        "TSEJASDAQ",
    ]
    assert [section_for_market_code(c) for c in ("0111", "0112", "0113")] == [
        "TSEPrime",
        "TSEStandard",
        "TSEGrowth",
    ]
    # Across the restructuring: JASDAQ Standard -> Standard, JASDAQ Growth -> Growth, and back.
    assert [fallback_section_for_market_code(c) for c in ("0101", "0102", "0104", "0106", "0107")] == [
        "TSEPrime",
        "TSEStandard",
        "TSEGrowth",
        "TSEStandard",
        "TSEGrowth",
    ]
    assert [fallback_section_for_market_code(c) for c in ("0111", "0112", "0113")] == [
        "TSE1st",
        "TSE2nd",
        "TSEMothers",
    ]
    # TOKYO PRO MARKET and "other" have no investor-type Section.
    assert section_for_market_code("0105") is None and section_for_market_code("0109") is None
    with pytest.raises(ValueError, match="unknown MarketCode '9999'"):
        section_for_market_code("9999")
    # Every mapped code is a real market code, and every Section is a real trades_spec Section.
    assert set(MARKET_SECTIONS) <= set(MARKET_CODES)
    sections = set(SECTIONS_BEFORE_2022) | set(SECTIONS_FROM_2022)
    assert {s for pair in MARKET_SECTIONS.values() for s in pair} <= sections


# Flows around the restructuring (usable = next trading day after publication):
#   TSE1st     03-21..25 pub 03-31 -> usable 04-01   r=0.1
#   TSE1st     03-28..04-01 pub 04-07 -> usable 04-08   r=0.2
#   TSEPrime   04-04..08 pub 04-14 -> usable 04-15   r=0.3   (TSE1st retires on 04-15)
#   TSEMothers 03-28..04-01 pub 04-07 -> usable 04-08   r=-0.1
#   TSEGrowth  04-04..08 pub 04-14 -> usable 04-15   r=-0.2
RAW = frame(
    [
        week("TSE1st", D(2022, 3, 21), D(2022, 3, 31), 0.1),
        week("TSE1st", D(2022, 3, 28), D(2022, 4, 7), 0.2),
        week("TSEPrime", D(2022, 4, 4), D(2022, 4, 14), 0.3),
        week("TSEMothers", D(2022, 3, 28), D(2022, 4, 7), -0.1),
        week("TSEGrowth", D(2022, 4, 4), D(2022, 4, 14), -0.2),
    ]
)
# Sparse listed_info history:
#   13010: TSE1st until the restructuring, Prime from 04-04.
#   13020: only an old snapshot (TSE1st) -> stale after 04-04.
#   13030: JASDAQ Growth, then Growth from 04-04.
#   13040: TOKYO PRO MARKET -> no Section.
#   13050: listed only from 04-11 (on Prime).
LISTED = pl.DataFrame(
    {
        "Date": [
            D(2022, 3, 1),
            D(2022, 4, 4),
            D(2022, 3, 1),
            D(2022, 3, 1),
            D(2022, 4, 4),
            D(2022, 3, 1),
            D(2022, 4, 11),
        ],
        "Code": ["13010", "13010", "13020", "13030", "13030", "13040", "13050"],
        "MarketCode": ["0101", "0111", "0101", "0107", "0113", "0105", "0111"],
    }
)


def test_stocks_follow_their_market_across_2022_04_04() -> None:
    flows = expand_trades_spec(RAW, D(2022, 4, 1), D(2022, 4, 15))
    out = attach_flows_to_stocks(flows, LISTED)
    got = {
        (r["Date"], r["Code"]): (r["flow_section"], r["flow_week_end"], r["flow_foreigners_net_ratio"])
        for r in out.iter_rows(named=True)
    }
    # 2022-04-01 (Fri, last old-market day): TSE1st week 03-25 is usable; Mothers has no week yet.
    assert got[(D(2022, 4, 1), "13010")] == ("TSE1st", D(2022, 3, 25), 0.1)
    assert got[(D(2022, 4, 1), "13030")] == (None, None, None)  # TSEJASDAQ has no flows here
    # 2022-04-04 (Mon, first new-market day): 13010 is now Prime but no TSEPrime week is usable
    # until 04-15, so it continues on the TSE1st row (fallback), without a gap.
    assert got[(D(2022, 4, 4), "13010")] == ("TSE1st", D(2022, 3, 25), 0.1)
    assert got[(D(2022, 4, 8), "13010")] == ("TSE1st", D(2022, 4, 1), 0.2)
    # Growth stock 13030 falls back to Mothers once Mothers has a usable week (04-08).
    assert got[(D(2022, 4, 4), "13030")] == (None, None, None)
    assert got[(D(2022, 4, 8), "13030")] == ("TSEMothers", D(2022, 4, 1), -0.1)
    # 04-15: the first TSEPrime/TSEGrowth weeks are usable; TSE1st and TSEMothers retire.
    assert got[(D(2022, 4, 15), "13010")] == ("TSEPrime", D(2022, 4, 8), 0.3)
    assert got[(D(2022, 4, 15), "13030")] == ("TSEGrowth", D(2022, 4, 8), -0.2)
    # The stale TSE1st code of 13020 falls forward to TSEPrime once TSE1st has retired.
    assert got[(D(2022, 4, 14), "13020")] == ("TSE1st", D(2022, 4, 1), 0.2)
    assert got[(D(2022, 4, 15), "13020")] == ("TSEPrime", D(2022, 4, 8), 0.3)
    # TOKYO PRO MARKET: rows, but no flows.
    assert got[(D(2022, 4, 15), "13040")] == (None, None, None)
    # 13050 has no rows before its first listed_info date.
    assert min(d for d, c in got if c == "13050") == D(2022, 4, 11)
    # One row per (Date, Code), sorted.
    assert out.select("Date", "Code").is_duplicated().sum() == 0
    assert out.select("Date", "Code").rows() == sorted(out.select("Date", "Code").rows())


def test_attach_to_a_panel_keeps_its_rows_and_columns() -> None:
    flows = expand_trades_spec(RAW, D(2022, 4, 1), D(2022, 4, 15))
    panel = pl.DataFrame(
        {
            "Date": [D(2022, 4, 15), D(2022, 4, 4), D(2022, 4, 4)],
            "Code": ["13010", "13010", "99990"],  # 99990 has no listed_info row at all
            "Close": [1.0, 2.0, 3.0],
            "MarketCode": ["x", "y", "z"],  # the panel's own column is left alone
        }
    )
    out = attach_flows_to_stocks(flows, LISTED, panel=panel)
    assert out.select("Date", "Code", "Close", "MarketCode").rows() == [
        (D(2022, 4, 4), "13010", 2.0, "y"),
        (D(2022, 4, 4), "99990", 3.0, "z"),
        (D(2022, 4, 15), "13010", 1.0, "x"),
    ]
    assert out.get_column("flow_section").to_list() == ["TSE1st", None, "TSEPrime"]
    assert out.get_column("flow_days_since_published").to_list() == [2, None, 1]
    assert out.get_column("flow_is_fresh").to_list() == [False, None, True]


def test_attach_rejects_bad_listed_info() -> None:
    flows = expand_trades_spec(RAW, D(2022, 4, 1), D(2022, 4, 15))
    with pytest.raises(ValueError, match="unknown MarketCode.*0199"):
        attach_flows_to_stocks(flows, LISTED.with_columns(pl.lit("0199").alias("MarketCode")))
    with pytest.raises(ValueError, match="missing column.*MarketCode"):
        attach_flows_to_stocks(flows, LISTED.drop("MarketCode"))
    clash = pl.concat([LISTED, LISTED.head(1).with_columns(pl.lit("0102").alias("MarketCode"))])
    with pytest.raises(ValueError, match="Code 13010 has 2 different MarketCodes on 2022-03-01"):
        attach_flows_to_stocks(flows, clash)
