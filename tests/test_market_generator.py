"""The synthetic market: determinism, calendar, schema, corporate actions, planted signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.calendar import is_trading_day, trading_days
from gogooku3.jquants.datasets import DATASET_NAMES, DATASETS, MARKET_CODES, PRICE_COLUMNS
from gogooku3.market import SIGNAL_COLUMNS, MarketConfig, generate_market

CFG = MarketConfig(seed=11, n_codes=150, start=dt.date(2021, 10, 1), end=dt.date(2023, 9, 30))


@pytest.fixture(scope="module")
def market():
    return generate_market(CFG)


@pytest.fixture(scope="module")
def panel(market):
    return market.daily_panel()


def test_same_seed_same_frames_and_different_seed_differs(market):
    again = generate_market.__wrapped__(CFG)  # bypass the cache: regenerate from scratch
    other = generate_market(MarketConfig(seed=12, n_codes=150, start=CFG.start, end=CFG.end))
    day = dt.date(2022, 6, 15)
    for name in (*DATASET_NAMES, "trading_calendar"):
        assert again.frame(name, day).equals(market.frame(name, day)), name
    assert again.daily_panel().equals(market.daily_panel())
    assert not other.frame("daily_quotes", day).equals(market.frame("daily_quotes", day))
    assert other.codes != market.codes


def test_codes_are_unique_sorted_five_char(market):
    codes = list(market.codes)
    assert codes == sorted(set(codes))
    assert all(len(c) == 5 and c.isdigit() and c.endswith("0") for c in codes)
    assert len(codes) == CFG.n_codes


def test_rows_only_on_trading_days(market, panel):
    days = set(panel["Date"].unique().to_list())
    assert days == set(trading_days(CFG.start, CFG.end)) == set(market.trading_days)
    assert all(is_trading_day(d) for d in days)
    for d in days:
        assert d.weekday() < 5 and (d.month, d.day) not in {(12, 31), (1, 1), (1, 2), (1, 3)}
    holiday = dt.date(2022, 11, 3)  # Culture Day
    assert market.frame("daily_quotes", holiday).is_empty()
    assert market.frame("topix", dt.date(2022, 12, 31)).is_empty()
    cal = market.frame("trading_calendar", holiday)
    assert cal["HolidayDivision"].to_list() == ["0"]
    assert market.frame("trading_calendar", dt.date(2022, 11, 4))["HolidayDivision"].to_list() == ["1"]


@pytest.mark.parametrize("name", [*DATASET_NAMES, "trading_calendar"])
def test_frames_have_the_exact_canonical_schema(market, name):
    ds = DATASETS[name]
    for day in (dt.date(2022, 4, 14), dt.date(2023, 5, 11), dt.date(2022, 1, 1)):
        df = market.frame(name, day)
        assert df.columns == list(ds.columns)
        assert dict(df.schema) == ds.schema
        if not df.is_empty():
            assert (df[ds.partition_by] == day).all()
            # OHLC may be null on days without trades; everything else required is always there
            never_null = [
                c
                for c in ds.required
                if name != "daily_quotes" or c not in ("Open", "High", "Low", "Close", "AdjustmentClose")
            ]
            assert df.select(never_null).null_count().row(0) == (0,) * len(never_null)


def test_daily_quotes_unique_and_consistent(panel):
    assert panel.select(pl.struct("Date", "Code").is_unique().all()).item()
    traded = panel.filter(pl.col("Close").is_not_null())
    assert traded.select(
        (
            (pl.col("Low") <= pl.min_horizontal("Open", "Close"))
            & (pl.col("High") >= pl.max_horizontal("Open", "Close"))
        ).all()
    ).item()
    assert (traded["Volume"] > 0).all()
    assert (traded["TurnoverValue"] > 0).all()


def test_no_trade_days_are_null_with_zero_volume(panel):
    idle = panel.filter(pl.col("Close").is_null())
    assert idle.height > 0
    for col in PRICE_COLUMNS:
        assert idle[col].null_count() == idle.height, col
    assert (idle["Volume"] == 0).all() and (idle["TurnoverValue"] == 0).all()
    assert (idle["AdjustmentFactor"] == 1.0).all()
    assert not idle["UpperLimit"].any() and not idle["LowerLimit"].any()


def test_split_adjusted_close_is_continuous_while_close_jumps(market, panel):
    splits = panel.filter(pl.col("AdjustmentFactor") != 1.0)
    assert splits.height > 0
    checked = 0
    for code, ex_date, factor in splits.select("Code", "Date", "AdjustmentFactor").iter_rows():
        bars = panel.filter((pl.col("Code") == code) & pl.col("Close").is_not_null()).sort("Date")
        before = bars.filter(pl.col("Date") < ex_date).tail(1)
        on = bars.filter(pl.col("Date") == ex_date)
        if before.is_empty():
            continue
        raw_ratio = on["Close"].item() / before["Close"].item()
        adj_ratio = on["AdjustmentClose"].item() / before["AdjustmentClose"].item()
        # the raw price jumps by about the factor; the adjusted one moves like a normal day
        assert abs(np.log(raw_ratio) - np.log(factor)) < 0.4
        assert abs(np.log(adj_ratio)) < 0.4
        assert abs(np.log(raw_ratio / adj_ratio) - np.log(factor)) < 1e-6
        checked += 1
    assert checked > 0
    # after the last split (and for codes that never split) adjusted == raw
    last = panel.filter(pl.col("Date") == market.trading_days[-1]).drop_nulls("Close")
    assert (last["AdjustmentClose"] == last["Close"]).all()


def test_limit_moves_are_flagged_at_the_price_limit(panel):
    up = panel.filter(pl.col("UpperLimit"))
    down = panel.filter(pl.col("LowerLimit"))
    assert up.height > 0 and down.height > 0
    prev = panel.sort("Code", "Date").with_columns(pl.col("Close").shift(1).over("Code").alias("Prev"))
    stop_high = prev.filter(pl.col("UpperLimit") & (pl.col("AdjustmentFactor") == 1.0)).drop_nulls("Prev")
    # a stop-high day's High is well above the previous close (at least ~5% for any price band)
    assert (stop_high["High"] / stop_high["Prev"] > 1.05).all()


def test_listings_and_delistings(market, panel):
    first_day, last_day = market.trading_days[0], market.trading_days[-1]
    spans = panel.group_by("Code").agg(
        pl.col("Date").min().alias("first"), pl.col("Date").max().alias("last")
    )
    assert (spans["first"] > first_day).any(), "no mid-history listing"
    assert (spans["last"] < last_day).any(), "no delisting"
    code, first = spans.filter(pl.col("first") > first_day).row(0)[:2]
    assert code not in market.frame("listed_info", first - dt.timedelta(days=1))["Code"].to_list()
    assert code in market.frame("listed_info", first)["Code"].to_list()
    # daily_quotes rows exist exactly on listed days
    day = dt.date(2023, 3, 1)
    assert set(market.frame("daily_quotes", day)["Code"]) == set(market.frame("listed_info", day)["Code"])


def test_market_codes_restructure_on_2022_04_04(market):
    before = market.frame("listed_info", dt.date(2022, 4, 1))
    after = market.frame("listed_info", dt.date(2022, 4, 4))
    assert set(before["MarketCode"]) <= {"0101", "0102", "0104", "0106", "0107"}
    assert set(after["MarketCode"]) <= {"0111", "0112", "0113"}
    assert {"0101", "0106"} <= set(before["MarketCode"]) and {"0111", "0112", "0113"} <= set(
        after["MarketCode"]
    )
    for df in (before, after):
        assert df.select(
            (pl.col("MarketCodeName") == pl.col("MarketCode").replace_strict(MARKET_CODES)).all()
        ).item()
    assert before["Sector33Code"].n_unique() > 20
    assert before.select(pl.col("Sector17Code").is_in([str(k) for k in range(1, 18)]).all()).item()


def test_topix_tracks_cap_weighted_market(market, panel):
    tp = market.topix()
    assert tp.height == len(market.trading_days)
    assert (tp["High"] >= tp["Close"]).all() and (tp["Low"] <= tp["Open"]).all()
    ret = tp.select(pl.col("Close").log().diff().alias("r"), "Date").drop_nulls()
    avg = (
        panel.sort("Code", "Date")
        .with_columns(
            pl.col("AdjustmentClose").forward_fill().over("Code").log().diff().over("Code").alias("r")
        )
        .group_by("Date")
        .agg(pl.col("r").mean().alias("avg"))
    )
    both = ret.join(avg, on="Date").drop_nulls()
    assert both.select(pl.corr("r", "avg")).item() > 0.8


def _next_day_returns(panel: pl.DataFrame) -> pl.DataFrame:
    return (
        panel.sort("Code", "Date")
        .with_columns(pl.col("AdjustmentClose").forward_fill().over("Code").alias("c"))
        .with_columns((pl.col("c").shift(-1).over("Code") / pl.col("c")).log().alias("fwd"))
        .select("Date", "Code", "c", "fwd")
    )


def _mean_rank_ic(df: pl.DataFrame, col: str) -> float:
    ic = df.drop_nulls([col, "fwd"]).group_by("Date").agg(pl.corr(col, "fwd", method="spearman").alias("ic"))
    return float(ic["ic"].drop_nans().mean())


def _composite(df: pl.DataFrame) -> pl.DataFrame:
    coef = {c.name: c.coefficient for c in SIGNAL_COLUMNS}
    return df.with_columns(
        (
            coef["reversal_5d"] * pl.col("reversal_5d").clip(-0.5, 0.5)
            + coef["volume_shock"] * pl.col("volume_shock")
            + coef["foreign_flow"] * pl.col("foreign_flow")
            + coef["roe"] * (pl.col("roe") - 0.08).clip(-0.3, 0.3).fill_null(0.0)
        ).alias("composite")
    )


@pytest.mark.parametrize("signal", [1.0, 0.0])
def test_planted_signal_predicts_next_day_only_when_switched_on(signal):
    cfg = MarketConfig(
        seed=5, n_codes=250, start=dt.date(2022, 1, 1), end=dt.date(2023, 6, 30), signal=signal
    )
    m = generate_market(cfg)
    df = _composite(m.planted().join(_next_day_returns(m.daily_panel()), on=["Date", "Code"]))
    ic = _mean_rank_ic(df, "composite")
    if signal:
        assert ic > 0.05
        assert _mean_rank_ic(df, "reversal_5d") < -0.03
        assert df.select(pl.col("planted_alpha").std()).item() > 0
        # planted_alpha is exactly the composite scaled by the signal
        assert (df["planted_alpha"] - df["composite"]).abs().max() < 1e-6
    else:
        assert abs(ic) < 0.02
        assert (df["planted_alpha"] == 0).all()


def test_planted_predictors_are_computable_from_published_past_data(market, panel):
    planted = market.planted()
    r5 = (
        _next_day_returns(panel)
        .with_columns((pl.col("c") / pl.col("c").shift(5).over("Code")).log().alias("r5"))
        .join(planted, on=["Date", "Code"])
        .drop_nulls("r5")
    )
    assert r5.height > 0
    assert (r5["r5"] - r5["reversal_5d"]).abs().max() < 1e-5
    # foreign_flow is the Foreigners' ratio of a published record (never a future one)
    ts = market.trades_spec()
    ratios = set((ts["ForeignersBalance"] / ts["ForeignersTotal"]).round(6).to_list()) | {0.0}
    day = dt.date(2023, 2, 16)
    published = market.trades_spec(end=day)
    allowed = set((published["ForeignersBalance"] / published["ForeignersTotal"]).round(6).to_list()) | {0.0}
    seen = set(market.planted(day)["foreign_flow"].round(6).to_list())
    assert seen <= allowed <= ratios
    assert market.expected_return(day).columns == ["Date", "Code", "ExpectedReturn"]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="n_codes"):
        MarketConfig(n_codes=0)
    with pytest.raises(ValueError, match="end"):
        MarketConfig(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="unknown endpoint"):
        generate_market(CFG).frame("prices", dt.date(2022, 6, 1))
