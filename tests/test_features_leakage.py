"""P0: no feature on date <= T reads anything dated after T; targets (and only targets) do."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.features import OUTPUT_FEATURES, TARGET_NAMES, build_features
from gogooku3.features.testing import market_inputs
from gogooku3.jquants.datasets import PRICE_COLUMNS

START, END = dt.date(2022, 1, 4), dt.date(2023, 3, 31)
T = dt.date(2022, 11, 15)


@pytest.fixture(scope="module")
def inputs():
    return market_inputs(40, START, END, seed=11)


@pytest.fixture(scope="module")
def base(inputs):
    return build_features(inputs.daily_quotes, **inputs.kwargs())


def _perturb_future(inputs, t: dt.date, seed: int = 0):
    """Every input changed after ``t`` (prices scaled, rows dropped, statements/flows/TOPIX altered)."""
    rng = np.random.default_rng(seed)
    q = inputs.daily_quotes
    n = q.height
    scale = pl.Series(rng.uniform(0.5, 1.5, n))
    future = pl.col("Date") > t
    price_cols = list(PRICE_COLUMNS)
    q2 = q.with_columns(
        [pl.when(future).then(pl.col(c) * scale).otherwise(pl.col(c)).alias(c) for c in price_cols]
        + [
            pl.when(future).then(pl.col(c) * 3.0).otherwise(pl.col(c)).alias(c)
            for c in ("Volume", "AdjustmentVolume", "TurnoverValue")
        ]
    )
    # drop a third of the future rows too (delistings / missing days must not matter either)
    keep = pl.Series(rng.uniform(size=n) > 0.33)
    q2 = q2.filter(~future | keep)
    tp = inputs.topix.with_columns(
        pl.when(future).then(pl.col("Close") * 1.7).otherwise(pl.col("Close")).alias("Close")
    )
    # statements disclosed on T itself are usable only from T+1 at the earliest
    st_future = pl.col("DisclosedDate") >= t
    num = [c for c, d in inputs.statements.schema.items() if d == pl.Float64]
    st = inputs.statements.with_columns(
        [pl.when(st_future).then(pl.col(c) * -7.0 + 1.0).otherwise(pl.col(c)).alias(c) for c in num]
    )
    fnum = [c for c, d in inputs.flows.schema.items() if d == pl.Float64]
    fl = inputs.flows.with_columns(
        [pl.when(future).then(pl.col(c) + 0.5).otherwise(pl.col(c)).alias(c) for c in fnum]
    )
    # the market-wide datasets: everything not yet usable on T (gogooku3.pit) changes, including
    # what is published on T itself after the close, and the margin records published on T
    ix = inputs.indices.with_columns(
        [
            pl.when(future).then(pl.col(c) * 1.3).otherwise(pl.col(c)).alias(c)
            for c in ("Open", "High", "Low", "Close")
        ]
    )
    ss_num = [c for c, d in inputs.short_selling.schema.items() if d == pl.Float64]
    ss = inputs.short_selling.with_columns(
        [
            pl.when(pl.col("Date") >= t).then(pl.col(c) * rng.uniform(0.2, 3.0)).otherwise(pl.col(c)).alias(c)
            for c in ss_num
        ]
    )
    # a weekly margin record is published 2 trading days after its record date (16:30, after the close)
    days = sorted(set(q.get_column("Date").to_list()))
    published = {d: days[k + 2] for k, d in enumerate(days[:-2])}
    unusable = pl.col("Date").map_elements(lambda d: published.get(d, d.max) >= t, return_dtype=pl.Boolean)
    mg_num = [c for c, d in inputs.weekly_margin_interest.schema.items() if d == pl.Float64]
    mg = inputs.weekly_margin_interest.with_columns(
        [pl.when(unusable).then(pl.col(c) * 5.0 + 100.0).otherwise(pl.col(c)).alias(c) for c in mg_num]
    )
    ec = inputs.earnings_calendar.with_columns(
        pl.when(pl.col("PublishedDate") >= t)
        .then(pl.col("Date") - pl.duration(days=3))
        .otherwise(pl.col("Date"))
        .alias("Date")
    )
    # a dividend notice is usable the trading day after its effective day (15:00 cutoff), so one
    # announced on T, or after 15:00 on the trading day before, is not usable on T either
    before_t = days[days.index(t) - 1]
    late = (pl.col("AnnouncementDate") >= t) | (
        (pl.col("AnnouncementDate") == before_t) & (pl.col("AnnouncementTime") >= "15:00")
    )
    dv = inputs.dividends.with_columns(
        pl.when(late)
        .then(pl.col("ExDate") - pl.duration(days=3))
        .otherwise(pl.col("ExDate"))
        .alias("ExDate"),
        pl.when(late).then(pl.col("GrossDividendRate") * 2 + 1).otherwise(pl.col("GrossDividendRate")),
        pl.when(late).then(pl.lit("3")).otherwise(pl.col("StatusCode")).alias("StatusCode"),
    )
    assert dv.filter(late).height > 0
    # derivatives bars of D are usable from D+1: those of T and later change
    fu = inputs.futures.with_columns(
        [
            pl.when(pl.col("Date") >= t).then(pl.col(c) * 1.05).otherwise(pl.col(c)).alias(c)
            for c in ("NightSessionClose", "DaySessionClose", "SettlementPrice")
        ]
    )
    op = inputs.index_option.with_columns(
        [
            pl.when(pl.col("Date") >= t).then(pl.col(c) * 1.5).otherwise(pl.col(c)).alias(c)
            for c in ("ImpliedVolatility", "OpenInterest")
        ]
    )
    # margin alerts and short position reports: usable the trading day after publication
    al = inputs.daily_margin_interest.with_columns(
        pl.when(pl.col("PublishedDate") >= t)
        .then(pl.col("ShortLongRatio") * 3)
        .otherwise(pl.col("ShortLongRatio"))
    )
    sp = inputs.short_selling_positions.with_columns(
        pl.when(pl.col("DisclosedDate") >= t)
        .then(pl.col("ShortPositionsToSharesOutstandingRatio") + 1.0)
        .otherwise(pl.col("ShortPositionsToSharesOutstandingRatio"))
    )
    market_wide = {
        "indices": ix,
        "short_selling": ss,
        "weekly_margin_interest": mg,
        "earnings_calendar": ec,
        "dividends": dv,
        "futures": fu,
        "index_option": op,
        "daily_margin_interest": al,
        "short_selling_positions": sp,
    }
    return q2, {"listed_info": inputs.listed_info, "topix": tp, "statements": st, "flows": fl, **market_wide}


def test_future_perturbation_changes_no_feature_on_or_before_t(inputs, base):
    q2, kw = _perturb_future(inputs, T)
    other = build_features(q2, **kw)
    cols = ["Date", "Code", *OUTPUT_FEATURES]
    a = base.filter(pl.col("Date") <= T).select(cols)
    b = other.filter(pl.col("Date") <= T).select(cols)
    assert a.height > 5000
    changed = [c for c in OUTPUT_FEATURES if not a.get_column(c).equals(b.get_column(c))]
    assert changed == [], f"features reading the future: {changed}"
    # ... while the perturbation really changed features after T (the test can fail)
    after_a = base.filter(pl.col("Date") > T).select(cols)
    after_b = (
        other.filter(pl.col("Date") > T)
        .join(after_a.select("Date", "Code"), on=["Date", "Code"])
        .select(cols)
    )
    after_a = after_a.join(after_b.select("Date", "Code"), on=["Date", "Code"]).select(cols)
    moved = [c for c in OUTPUT_FEATURES if not after_a.get_column(c).equals(after_b.get_column(c))]
    assert len(moved) > 0.8 * len(OUTPUT_FEATURES)


def test_targets_do_read_the_future(inputs, base):
    q2, kw = _perturb_future(inputs, T)
    other = build_features(q2, **kw)
    # on T itself every horizon reaches past T
    day = base.filter(pl.col("Date") == T)
    day2 = other.filter(pl.col("Date") == T)
    for name in ("target_ret_1d", "target_ret_5d", "target_ret_20d"):
        assert not day.get_column(name).equals(day2.get_column(name)), name


def test_rows_after_end_are_ignored_and_start_only_trims(inputs, base):
    cut = build_features(
        inputs.daily_quotes, **inputs.kwargs(), start=dt.date(2022, 9, 1), end=T, with_targets=False
    )
    assert cut.get_column("Date").min() >= dt.date(2022, 9, 1)
    assert cut.get_column("Date").max() <= T
    expect = base.filter(pl.col("Date").is_between(dt.date(2022, 9, 1), T)).select(cut.columns)
    assert cut.equals(expect)


def test_range_equals_concatenation_of_sub_ranges(inputs):
    whole = build_features(
        inputs.daily_quotes,
        **inputs.kwargs(),
        start=dt.date(2022, 10, 3),
        end=dt.date(2022, 12, 28),
        with_targets=False,
    )
    parts = [
        build_features(inputs.daily_quotes, **inputs.kwargs(), start=s, end=e, with_targets=False)
        for s, e in (
            (dt.date(2022, 10, 3), dt.date(2022, 11, 10)),
            (dt.date(2022, 11, 11), dt.date(2022, 12, 28)),
        )
    ]
    assert whole.equals(pl.concat(parts))


def test_output_ordered_by_date_unique_keys_and_no_nan(base):
    assert base.get_column("Date").is_sorted()
    assert not base.select(pl.struct("Date", "Code").is_duplicated().any()).item()
    floats = [c for c, t in base.schema.items() if t == pl.Float64]
    nan = base.select(pl.sum_horizontal(pl.col(floats).is_nan().sum())).item()
    assert nan == 0, "non-finite values must be null, not NaN"
    assert set(TARGET_NAMES) <= set(base.columns)
