"""Datasets derived from a simulated market: sector indices, sector short selling, weekly margin
balances and the earnings calendar, each consistent with the prices and statements it is built on.

None of them feeds back into returns: no new signal is planted here (the four planted predictors
are listed in :data:`gogooku3.market.market.SIGNAL_COLUMNS`). Each draws from its own RNG stream
(:data:`gogooku3.market.generator.DERIVED_STREAMS`), so adding one never changes another or the
prices.

* **indices**: one chain-linked, cap-weighted index per 33-sector (base 1000 on the first day),
  computed like TOPIX from the sector's codes listed on both days; index codes 0040..0060
  (:data:`gogooku3.jquants.datasets.SECTOR_INDEX_CODES`).
* **short_selling**: per sector and trading day, half the sector's turnover is selling; its short
  share follows a per-sector level (0.30..0.48) plus an AR(1) term, and rises after the sector's
  5-day losses (shorts chase falls); 70-85% of short sales carry the price restriction.
* **weekly_margin_interest**: on each week's last trading day, for margin (IssueType 1) and loan
  (2) issues: long and short balances as multiples of the code's 20-day average raw volume, each
  with a weekly AR(1) state; margin-only issues have small, negotiable-only short balances.
* **earnings_calendar**: every statement with actual figures (its first version per period) is
  announced 10-30 trading days ahead; 8% are first announced 1-3 trading days off and corrected by
  a later announcement before either date.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from gogooku3.jquants.datasets import (
    EARNINGS_CALENDAR,
    FISCAL_QUARTERS,
    INDICES,
    MARKET_CODES,
    SECTOR_INDEX_CODES,
    SHORT_SELLING,
    WEEKLY_MARGIN_INTEREST,
)
from gogooku3.market.generator import Simulation, derived_stream
from gogooku3.market.reference import RESTRUCTURE_DATE, SECTOR_33
from gogooku3.pit import is_week_end

SECTOR_INDEX_BASE = 1000.0


def _sector_onehot(sim: Simulation) -> np.ndarray:
    """(N, 33) membership matrix."""
    onehot = np.zeros((len(sim.codes), len(SECTOR_33)))
    onehot[np.arange(len(sim.codes)), sim.sector] = 1.0
    return onehot


def _listed_mask(sim: Simulation) -> np.ndarray:
    rows = np.arange(len(sim.days))[:, None]
    return (rows >= sim.list_idx[None, :]) & (rows < sim.delist_idx[None, :])


def _ffill(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs down each column (rows before the first value stay NaN)."""
    idx = np.where(np.isnan(a), 0, np.arange(a.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return a[idx, np.arange(a.shape[1])]


def sector_indices(sim: Simulation) -> pl.DataFrame:
    """The 33 sector indices' daily OHLC, sorted by (Date, Code)."""
    T = len(sim.days)
    listed = _listed_mask(sim)
    close_ff = _ffill(sim.close.astype(np.float64))
    cum = np.cumprod(sim.factor, axis=0)  # raw price = economic price * cum
    prev_close = np.vstack([np.full((1, close_ff.shape[1]), np.nan), close_ff[:-1]])
    base = prev_close * sim.factor  # yesterday's close in today's share units
    both = listed & np.vstack([np.zeros((1, listed.shape[1]), bool), listed[:-1]]) & ~np.isnan(base)
    weight = np.where(both, sim.shares * prev_close / np.vstack([cum[:1], cum[:-1]]), 0.0)
    onehot = _sector_onehot(sim)
    w_sum = weight @ onehot
    ratios = {}
    for name in ("open", "high", "low", "close"):
        px = getattr(sim, name).astype(np.float64)
        ratio = np.where(sim.traded & both, px / np.where(both, base, 1.0), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios[name] = np.where(w_sum > 0, ((weight * ratio) @ onehot) / w_sum, 1.0)
    level = SECTOR_INDEX_BASE * np.cumprod(ratios["close"], axis=0)
    prev_level = np.vstack([np.full((1, level.shape[1]), SECTOR_INDEX_BASE), level[:-1]])
    o, h, lo = (prev_level * ratios[k] for k in ("open", "high", "low"))
    h, lo = np.maximum.reduce([h, o, level]), np.minimum.reduce([lo, o, level])
    codes = [SECTOR_INDEX_CODES[s[0]] for s in SECTOR_33]
    k = len(codes)
    return pl.DataFrame(
        {
            "Date": np.repeat(np.array(sim.days, dtype="datetime64[D]"), k),
            "Code": codes * T,
            "Open": np.round(o, 2).ravel(),
            "High": np.round(h, 2).ravel(),
            "Low": np.round(lo, 2).ravel(),
            "Close": np.round(level, 2).ravel(),
        }
    ).select([pl.col(f.name).cast(f.dtype) for f in INDICES.fields])


def short_selling(sim: Simulation, seed: int, indices: pl.DataFrame) -> pl.DataFrame:
    """Sector selling turnover split into long and short sales, per (Date, Sector33Code);
    ``indices`` is :func:`sector_indices` of the same simulation."""
    rng = derived_stream(seed, "short_selling")
    T, S = len(sim.days), len(SECTOR_33)
    selling = np.round(0.5 * (sim.turnover @ _sector_onehot(sim)))
    level = rng.uniform(0.30, 0.48, S)
    restricted = rng.uniform(0.70, 0.85, S)
    index_close = indices.get_column("Close").to_numpy().reshape(T, S)
    past = np.vstack([np.full((5, S), np.nan), index_close[:-5]])[:T]
    with np.errstate(invalid="ignore", divide="ignore"):
        loss_5d = np.nan_to_num(-np.log(index_close / past), nan=0.0)
    state = np.zeros(S)
    share = np.empty((T, S))
    for t in range(T):
        state = 0.85 * state + 0.02 * rng.standard_normal(S)
        share[t] = np.clip(level + state + 0.8 * loss_5d[t], 0.15, 0.65)
    short = selling * share
    with_res = np.round(short * restricted)
    t_idx, s_idx = np.nonzero(selling > 0)
    return pl.DataFrame(
        {
            "Date": np.array(sim.days, dtype="datetime64[D]")[t_idx],
            "Sector33Code": np.array([s[0] for s in SECTOR_33])[s_idx],
            "SellingExcludingShortSellingTurnoverValue": (selling - np.round(short))[t_idx, s_idx],
            "ShortSellingWithRestrictionsTurnoverValue": with_res[t_idx, s_idx],
            "ShortSellingWithoutRestrictionsTurnoverValue": (np.round(short) - with_res)[t_idx, s_idx],
        }
    ).select([pl.col(f.name).cast(f.dtype) for f in SHORT_SELLING.fields])


def weekly_margin_interest(sim: Simulation, seed: int) -> pl.DataFrame:
    """Weekly margin balances per (record date, Code), sorted by (Date, Code)."""
    rng = derived_stream(seed, "weekly_margin_interest")
    N = len(sim.codes)
    weeks = np.array([t for t, d in enumerate(sim.days) if is_week_end(d)], dtype=np.int64)
    eligible = np.isin(sim.margin, ("1", "2"))
    loan = sim.margin == "2"
    long_mult = np.exp(rng.normal(np.log(3.0), 0.5, N))
    short_mult = np.exp(rng.normal(np.log(0.8), 0.6, N)) * np.where(loan, 1.0, 0.2)
    long_std = rng.uniform(0.6, 0.9, N)
    short_std = np.where(loan, rng.uniform(0.7, 0.95, N), 0.0)
    csum = np.vstack([np.zeros((1, N)), np.cumsum(sim.volume, axis=0)])
    listed = _listed_mask(sim)
    z_long, z_short = np.zeros(N), np.zeros(N)
    frames = []
    for t in weeks:
        z_long = 0.8 * z_long + 0.3 * rng.standard_normal(N)
        z_short = 0.8 * z_short + 0.4 * rng.standard_normal(N)
        lo = np.maximum(t - 19, sim.list_idx)
        adv = (csum[t + 1] - csum[lo, np.arange(N)]) / np.maximum(t + 1 - lo, 1)
        i = np.nonzero(eligible & listed[t] & (adv > 0))[0]
        long_vol = np.round(adv[i] * long_mult[i] * np.exp(z_long[i]), -2)
        short_vol = np.round(adv[i] * short_mult[i] * np.exp(z_short[i]), -2)
        long_s = np.round(long_vol * long_std[i], -2)
        short_s = np.round(short_vol * short_std[i], -2)
        frames.append(
            pl.DataFrame(
                {
                    "Date": np.full(len(i), np.datetime64(sim.days[t], "D")),
                    "Code": sim.codes[i],
                    "ShortMarginTradeVolume": short_vol,
                    "LongMarginTradeVolume": long_vol,
                    "ShortNegotiableMarginTradeVolume": short_vol - short_s,
                    "LongNegotiableMarginTradeVolume": long_vol - long_s,
                    "ShortStandardizedMarginTradeVolume": short_s,
                    "LongStandardizedMarginTradeVolume": long_s,
                    "IssueType": sim.margin[i],
                }
            )
        )
    cols = [pl.col(f.name).cast(f.dtype) for f in WEEKLY_MARGIN_INTEREST.fields]
    if not frames:
        return pl.DataFrame(schema=WEEKLY_MARGIN_INTEREST.schema)
    return pl.concat(frames).select(cols)


def earnings_calendar(sim: Simulation, seed: int) -> pl.DataFrame:
    """Announced earnings dates, one row per (PublishedDate, Code), sorted by (PublishedDate, Code)."""
    rng = derived_stream(seed, "earnings_calendar")
    events = (
        sim.statements.filter(pl.col("NetSales").is_not_null())
        .group_by("Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate", maintain_order=True)
        .first()
        .select("Code", "DisclosedDate", "TypeOfCurrentPeriod", "CurrentFiscalYearEndDate")
    )
    day_arr = np.array(sim.days, dtype="datetime64[D]")
    n = events.height
    date = events.get_column("DisclosedDate").to_numpy().astype("datetime64[D]")
    t_event = np.searchsorted(day_arr, date)
    t_pub = t_event - rng.integers(10, 31, n)
    revised = rng.random(n) < 0.08
    shift = rng.integers(1, 4, n) * np.where(rng.random(n) < 0.5, -1, 1)
    t_first = np.clip(t_event + shift, 0, len(day_arr) - 1)
    # the correction comes out after the first announcement and before either date
    t_fix = (
        t_pub + 1 + (rng.random(n) * np.maximum(np.minimum(t_event, t_first) - t_pub - 2, 0)).astype(np.int64)
    )
    revised &= (t_fix < np.minimum(t_event, t_first)) & (t_first != t_event)
    code_pos = {c: k for k, c in enumerate(sim.codes.tolist())}
    codes = events.get_column("Code").to_list()
    i = np.array([code_pos[c] for c in codes], dtype=np.int64)
    rows: dict[str, list] = {name: [] for name in EARNINGS_CALENDAR.columns}

    def add(k: int, t_published: int, scheduled: np.datetime64) -> None:
        if t_published < 0:  # announced before the market's first day: outside its history
            return
        published = sim.days[t_published]
        market = sim.market_from[i[k]] if published >= RESTRUCTURE_DATE else sim.market_before[i[k]]
        fy_end = events["CurrentFiscalYearEndDate"][k]
        rows["PublishedDate"].append(published)
        rows["Date"].append(scheduled.astype(dt.date))
        rows["Code"].append(codes[k])
        rows["CompanyName"].append(f"シンセティック{codes[k][:4]}")
        rows["FiscalYear"].append(f"{fy_end.month}月{fy_end.day}日" if fy_end else None)
        rows["SectorName"].append(SECTOR_33[sim.sector[i[k]]][1])
        rows["FiscalQuarter"].append(FISCAL_QUARTERS.get(events["TypeOfCurrentPeriod"][k], "通期"))
        rows["Section"].append(MARKET_CODES.get(market))

    for k in range(n):
        if revised[k]:
            add(k, int(t_pub[k]), day_arr[t_first[k]])
            add(k, int(t_fix[k]), date[k])
        else:
            add(k, int(t_pub[k]), date[k])
    df = pl.DataFrame(rows, schema=EARNINGS_CALENDAR.schema).sort("PublishedDate", "Code", "Date")
    # One announcement per code and day (the dataset's key): the nearest scheduled date wins.
    return df.unique(["PublishedDate", "Code"], keep="first", maintain_order=True)
