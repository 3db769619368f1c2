"""Targets (separate, forward-looking, bounded) and split-adjusted prices (no crash returns)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.features import TARGET_NAMES, add_targets, build_features
from gogooku3.features.targets import RET_HORIZONS

D = dt.date


def _split_quotes() -> pl.DataFrame:
    """Two codes over 40 days; 22220 splits 1:2 on day 25 (raw price halves, adjusted is smooth)."""
    days = trading_days(D(2024, 2, 1), D(2024, 4, 30))[:40]
    rows = []
    for code in ("11110", "22220"):
        for k, d in enumerate(days):
            adj = 1000.0 * (1.001**k)
            split = code == "22220" and k >= 25
            raw = adj / 2 if split else adj
            factor = 0.5 if code == "22220" and k == 25 else 1.0
            # Adjustment* are expressed in today's (post-split) terms for every row before the split
            adj_c = adj / 2 if code == "22220" else adj
            rows.append(
                {
                    "Date": d,
                    "Code": code,
                    "Open": raw,
                    "High": raw * 1.01,
                    "Low": raw * 0.99,
                    "Close": raw,
                    "Volume": 1000.0 * (2 if split else 1),
                    "TurnoverValue": raw * 1000.0,
                    "AdjustmentFactor": factor,
                    "AdjustmentOpen": adj_c,
                    "AdjustmentHigh": adj_c * 1.01,
                    "AdjustmentLow": adj_c * 0.99,
                    "AdjustmentClose": adj_c,
                    "AdjustmentVolume": 2000.0 if code == "22220" else 1000.0,
                }
            )
    return pl.DataFrame(rows)


def test_split_is_not_a_crash():
    q = _split_quotes()
    df = build_features(q).filter(pl.col("Code") == "22220").sort("Date")
    ex_date = q.filter(pl.col("AdjustmentFactor") == 0.5).item(0, "Date")
    row = df.filter(pl.col("Date") == ex_date)
    raw_ret = 0.5 * 1.001 - 1  # what the unadjusted close would say
    assert raw_ret < -0.4
    assert row.item(0, "ret_1d") == pytest.approx(0.001, abs=1e-9)
    assert row.item(0, "gap_overnight") == pytest.approx(0.001, abs=1e-9)
    assert df.get_column("ret_1d").drop_nulls().min() > -0.01
    assert df.get_column("volume_ratio_5d").drop_nulls().max() == pytest.approx(1.0)
    before = df.filter(pl.col("Date") < ex_date).get_column("target_ret_1d").drop_nulls()
    assert before.min() > -0.01


def test_targets_are_forward_returns_of_the_adjusted_close():
    q = _split_quotes()
    df = build_features(q).sort("Code", "Date")
    one = df.filter(pl.col("Code") == "11110")
    closes = q.filter(pl.col("Code") == "11110").sort("Date").get_column("AdjustmentClose").to_list()
    for h in RET_HORIZONS:
        got = one.get_column(f"target_ret_{h}d").to_list()
        for k in range(len(closes)):
            if k + h < len(closes):
                assert got[k] == pytest.approx(closes[k + h] / closes[k] - 1, rel=1e-12)
            else:
                assert got[k] is None, "no target where the future is unknown"
    assert one.get_column("target_up_1d").drop_nulls().to_list() == [1] * (len(closes) - 1)
    assert [c for c in df.columns if c.startswith("target_")] == list(TARGET_NAMES)


def test_targets_are_bounded_and_clipped_at_five_sigma():
    # 30 codes flat, one code jumps x30 (a data error): its target is clipped to [-1, 10] and 5 sigma
    days = trading_days(D(2024, 2, 1), D(2024, 2, 29))
    rows = [
        {"Date": d, "Code": f"{1000 + c}0", "px_close": 100.0 * (1 + 0.001 * ((c * 7 + k) % 5))}
        for c in range(30)
        for k, d in enumerate(days)
    ]
    panel = pl.DataFrame(rows).with_columns(
        pl.when((pl.col("Code") == "10000") & (pl.col("Date") >= days[5]))
        .then(3000.0)
        .otherwise(pl.col("px_close"))
        .alias("px_close")
    )
    t = add_targets(panel)
    jump = t.filter((pl.col("Code") == "10000") & (pl.col("Date") == days[4])).item(0, "target_ret_1d")
    others = t.filter((pl.col("Code") != "10000") & (pl.col("Date") == days[4])).get_column("target_ret_1d")
    bounded = pl.concat([others, pl.Series([10.0])])  # x30 - 1 = 29 is first bounded to 10
    assert jump == pytest.approx(bounded.mean() + 5 * bounded.std(), rel=1e-12)
    assert jump < 10.0
    assert t.select(pl.col("target_ret_1d").is_between(-1.0, 10.0).all()).item()
    assert t.filter((pl.col("Code") == "10000") & (pl.col("Date") == days[4])).item(0, "target_up_1d") == 1
