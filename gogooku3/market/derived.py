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
* **dividends**: notices published with the statements (same day and time), consistent with their
  ``ResultDividendPerShareAnnual``: 70% of the codes pay an interim and a final dividend, the rest
  a final one only. A full-year statement decides the year's final dividend (the annual result
  minus the decided interim) and forecasts the next year's (30% of its forecast profit per share,
  split evenly; 5% of forecasts leave the amount undecided); a 2Q statement decides the interim
  (the forecast, changed by up to +-20% in 30% of cases) and revises the final forecast in 20% of
  cases. A decision or revision of a forecast dividend is a StatusCode 2 notice with the
  forecast's CAReferenceNumber; 1% of forecasts are deleted (StatusCode 3) 1-10 trading days later
  and announced again as a new dividend the day after. The record date is the period end, the
  ex-date one trading day before the last trading day on or before it (two before the T+2
  settlement began on 2019-07-16), payment ~2.5 months after the record date.
* **daily_margin_interest**: margin alerts. Each week 1% of the margin and loan issues not yet
  alerted start an episode of 10-40 trading days; every trading day of it publishes the balances
  of the trading day before (long 2-6 and short 0.5-3 times the 20-day average volume at the start,
  each a daily random walk of sd 5% in logs; 70% standardized), ratios in percent of the shares
  outstanding; all are daily publications, 20% also restricted. 1% of records are revised the next
  trading day (a new record, the same ApplicationDate, balances off by up to 3%).
* **short_selling_positions**: 12 short sellers hold positions in 5% of the codes each; a position
  (percent of the shares outstanding) moves toward its own level of 0.3-1.5% (AR(1), sd 0.03pp a
  day) and is reported when it is 0.5% or more and has moved 0.1pp since the last report, or when it
  first falls below 0.5% (then the position is closed); disclosed 2 trading days after calculation.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from gogooku3.calendar import is_trading_day, on_or_after, previous_trading_day
from gogooku3.jquants.datasets import (
    DAILY_MARGIN_INTEREST,
    DIVIDEND_DECIDED,
    DIVIDEND_DELETED,
    DIVIDEND_FINAL,
    DIVIDEND_FORECAST,
    DIVIDEND_INTERIM,
    DIVIDEND_NEW,
    DIVIDEND_REVISED,
    DIVIDENDS,
    EARNINGS_CALENDAR,
    FISCAL_QUARTERS,
    INDICES,
    MARKET_CODES,
    PUBLISH_REASONS,
    SECTOR_INDEX_CODES,
    SHORT_SELLING,
    SHORT_SELLING_POSITIONS,
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


#: The first record date settled T+2 (JPX shortened settlement on 2019-07-16): its ex-date is one
#: trading day before the record day; before it, two.
T2_SETTLEMENT_FROM = dt.date(2019, 7, 16)


def ex_date(record_date: dt.date) -> dt.date:
    """The ex-dividend date of ``record_date``: the trading day after the last day to buy with the
    right (one trading day before the effective record day under T+2, two under T+3); a record date
    on a closed day counts from the last trading day before it."""
    effective = record_date
    while not is_trading_day(effective):
        effective -= dt.timedelta(days=1)
    ex = previous_trading_day(effective)
    return ex if effective >= T2_SETTLEMENT_FROM else previous_trading_day(ex)


def dividends(sim: Simulation, seed: int) -> pl.DataFrame:
    """Dividend notices, one row per ReferenceNumber, sorted by (AnnouncementDate, ReferenceNumber)."""
    rng = derived_stream(seed, "dividends")
    n_codes = len(sim.codes)
    semiannual = rng.random(n_codes) < 0.7
    code_pos = {c: k for k, c in enumerate(sim.codes.tolist())}
    day_pos = {d: t for t, d in enumerate(sim.days)}
    last_day = sim.days[-1]
    shares_col = "NumberOfIssuedAndOutstandingSharesAtTheEndOfFiscalYearIncludingTreasuryStock"
    events = (
        sim.statements.filter(
            pl.col("TypeOfCurrentPeriod").is_in(["2Q", "FY"]) & pl.col("NetSales").is_not_null()
        )
        .group_by("Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate", maintain_order=True)
        .first()
        .sort("Code", "DisclosedDate", "DisclosedTime")
    )
    notices: list[dict] = []
    ex_dates: dict[dt.date, dt.date] = {}  # record date -> ex-date (on the calendar followed now)
    # per code: (record date, interim/final) -> [CA key, amount]; the CA key is the notice index
    # of the dividend's first notice, turned into its ReferenceNumber at the end.
    open_: dict[tuple[str, dt.date, str], list] = {}
    decided_interim: dict[tuple[str, dt.date], float] = {}

    def notice(code, day, time, status, kind, fr, record, amount, ca=None) -> int:
        k = len(notices)
        payable = None
        if fr == DIVIDEND_DECIDED:
            payable = on_or_after(record + dt.timedelta(days=75))
        notices.append(
            {
                "AnnouncementDate": day,
                "AnnouncementTime": time[:5],
                "Code": code,
                "StatusCode": status,
                "BoardMeetingDate": day,
                "InterimFinalCode": kind,
                "ForecastResultCode": fr,
                "InterimFinalTerm": f"{record:%Y-%m}",
                "GrossDividendRate": amount,
                "RecordDate": record,
                "ExDate": ex_dates.get(record) or ex_dates.setdefault(record, ex_date(record)),
                "ActualRecordDate": record,
                "PayableDate": payable,
                "_ca": k if ca is None else ca,
                "CommemorativeSpecialCode": "0",
            }
        )
        return k

    def decide(code, day, time, kind, record, amount) -> None:
        prior = open_.pop((code, record, kind), None)
        if prior is None:
            notice(code, day, time, DIVIDEND_NEW, kind, DIVIDEND_DECIDED, record, amount)
        else:
            notice(code, day, time, DIVIDEND_REVISED, kind, DIVIDEND_DECIDED, record, amount, prior[0])

    def forecast(code, day, time, kind, record, amount) -> None:
        undecided = rng.random() < 0.05
        value = None if undecided else amount
        ca = notice(code, day, time, DIVIDEND_NEW, kind, DIVIDEND_FORECAST, record, value)
        open_[(code, record, kind)] = [ca, amount]
        if rng.random() < 0.01:  # withdrawn as erroneous, announced again as a new dividend
            t_del = day_pos[day] + int(rng.integers(1, 11))
            if t_del + 1 >= len(sim.days):
                return
            gone, again = sim.days[t_del], sim.days[t_del + 1]
            notice(code, gone, "16:00", DIVIDEND_DELETED, kind, DIVIDEND_FORECAST, record, value, ca)
            ca = notice(code, again, "16:00", DIVIDEND_NEW, kind, DIVIDEND_FORECAST, record, value)
            open_[(code, record, kind)] = [ca, amount]

    for row in events.iter_rows(named=True):
        code, day, time = row["Code"], row["DisclosedDate"], row["DisclosedTime"]
        i = code_pos[code]
        shares = row[shares_col]
        fy_end = row["CurrentFiscalYearEndDate"]
        if row["TypeOfCurrentPeriod"] == "2Q":
            if not semiannual[i]:
                continue
            record = row["CurrentPeriodEndDate"]
            prior = open_.get((code, record, DIVIDEND_INTERIM))
            base = prior[1] if prior else _per_share(row["ForecastProfit"], shares) / 2
            change = rng.uniform(-0.2, 0.2) if rng.random() < 0.3 else 0.0
            amount = round(base * (1.0 + change), 1)
            decide(code, day, time, DIVIDEND_INTERIM, record, amount)
            decided_interim[(code, fy_end)] = amount
            final = open_.get((code, fy_end, DIVIDEND_FINAL))
            if final is not None and rng.random() < 0.2:
                revised = round(max(_per_share(row["ForecastProfit"], shares) - amount, 0.0), 1)
                kind = DIVIDEND_FINAL
                notice(code, day, time, DIVIDEND_REVISED, kind, DIVIDEND_FORECAST, fy_end, revised, final[0])
                final[1] = revised
            continue
        annual = row["ResultDividendPerShareAnnual"]
        if annual is not None and (annual > 0 or (code, fy_end, DIVIDEND_FINAL) in open_):
            amount = round(max(annual - decided_interim.get((code, fy_end), 0.0), 0.0), 1)
            decide(code, day, time, DIVIDEND_FINAL, fy_end, amount)
        total = _per_share(row["ForecastProfit"], shares)
        if total <= 0:
            continue
        next_end = _month_end_after(fy_end, 12)
        if semiannual[i]:
            interim = round(total / 2, 1)
            forecast(code, day, time, DIVIDEND_INTERIM, _month_end_after(fy_end, 6), interim)
            forecast(code, day, time, DIVIDEND_FINAL, next_end, round(total - interim, 1))
        else:
            forecast(code, day, time, DIVIDEND_FINAL, next_end, round(total, 1))
    if not notices:
        return pl.DataFrame(schema=DIVIDENDS.schema)
    df = pl.DataFrame(notices, infer_schema_length=None).with_row_index("_k")
    df = df.filter(pl.col("AnnouncementDate") <= last_day)
    # ReferenceNumber: announcement date + a sequence in (date, time, code, notice) order.
    df = df.sort("AnnouncementDate", "AnnouncementTime", "Code", "_k").with_columns(
        (
            pl.col("AnnouncementDate").dt.strftime("%Y%m%d")
            + pl.int_range(1, pl.len() + 1).over("AnnouncementDate").cast(pl.String).str.zfill(6)
        ).alias("ReferenceNumber")
    )
    ref_of = df.select(pl.col("_k").alias("_ca"), pl.col("ReferenceNumber").alias("CAReferenceNumber"))
    df = df.join(ref_of, on="_ca", how="left", maintain_order="left")
    return df.select(
        [
            (pl.col(f.name) if f.name in df.columns else pl.lit(None)).cast(f.dtype).alias(f.name)
            for f in DIVIDENDS.fields
        ]
    )


def _per_share(profit: float | None, shares: float | None) -> float:
    """30% of ``profit`` per share (the statements' payout rule), 0 when either is missing."""
    if profit is None or not shares:
        return 0.0
    return max(profit, 0.0) * 0.3 / shares


def _month_end_after(day: dt.date, months: int) -> dt.date:
    """The last day of the month ``months`` after ``day``'s month."""
    k = day.year * 12 + day.month - 1 + months + 1
    return dt.date(k // 12, k % 12 + 1, 1) - dt.timedelta(days=1)


def _shares_outstanding(sim: Simulation) -> np.ndarray:
    """(T, N) shares outstanding in each day's share units (the first day's times later splits)."""
    return sim.shares[None, :] * sim.adj_mult / sim.adj_mult[:1, :]


def daily_margin_interest(sim: Simulation, seed: int) -> pl.DataFrame:
    """Daily published margin balances per (PublishedDate, Code, ApplicationDate), in that order."""
    rng = derived_stream(seed, "daily_margin_interest")
    T, N = len(sim.days), len(sim.codes)
    eligible = np.isin(sim.margin, ("1", "2"))
    listed = _listed_mask(sim)
    shares = _shares_outstanding(sim)
    csum = np.vstack([np.zeros((1, N)), np.cumsum(sim.volume, axis=0)])
    rows: list[dict] = []
    busy_until = np.zeros(N, dtype=np.int64)
    for t in range(1, T):
        if sim.days[t].weekday() != 0 and sim.days[t - 1].isocalendar()[1] == sim.days[t].isocalendar()[1]:
            continue  # episodes start on a week's first trading day
        start = np.nonzero(eligible & listed[t] & (busy_until <= t) & (rng.random(N) < 0.01))[0]
        for i in start:
            length = int(rng.integers(10, 41))
            lo = max(t - 20, int(sim.list_idx[i]))
            adv = max((csum[t, i] - csum[lo, i]) / max(t - lo, 1), 100.0)
            long_, short = adv * rng.uniform(2, 6), adv * rng.uniform(0.5, 3)
            restricted = rng.random() < 0.2
            end = min(t + length, int(sim.delist_idx[i]), T)
            busy_until[i] = end
            prev = None
            for u in range(t, end):
                long_ *= np.exp(0.05 * rng.standard_normal())
                short *= np.exp(0.05 * rng.standard_normal())
                now = (np.round(long_, -2), np.round(short, -2))
                rows.append(_margin_alert_row(sim, i, u, u - 1, now, prev, shares[u - 1, i], restricted))
                if rng.random() < 0.01 and u + 1 < T:  # a revision published the next trading day
                    off = rng.uniform(0.97, 1.03)
                    fixed = (np.round(now[0] * off, -2), np.round(now[1] * off, -2))
                    rows.append(
                        _margin_alert_row(sim, i, u + 1, u - 1, fixed, prev, shares[u - 1, i], restricted)
                    )
                prev = now
    if not rows:
        return pl.DataFrame(schema=DAILY_MARGIN_INTEREST.schema)
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df.select(
        [
            (pl.col(f.name) if f.name in df.columns else pl.lit(None)).cast(f.dtype).alias(f.name)
            for f in DAILY_MARGIN_INTEREST.fields
        ]
    ).sort("PublishedDate", "Code", "ApplicationDate")


def _margin_alert_row(sim, i, t_pub, t_app, now, prev, shares, restricted) -> dict:
    long_, short = now
    row = {
        "PublishedDate": sim.days[t_pub],
        "Code": sim.codes[i],
        "ApplicationDate": sim.days[t_app],
        **{f"PublishReason{k}": False for k in PUBLISH_REASONS},
        "PublishReasonDailyPublication": True,
        "PublishReasonRestricted": bool(restricted),
        "ShortMarginOutstanding": short,
        "DailyChangeShortMarginOutstanding": None if prev is None else short - prev[1],
        "ShortMarginOutstandingListedShareRatio": round(100 * short / shares, 2),
        "LongMarginOutstanding": long_,
        "DailyChangeLongMarginOutstanding": None if prev is None else long_ - prev[0],
        "LongMarginOutstandingListedShareRatio": round(100 * long_ / shares, 2),
        "ShortLongRatio": round(100 * short / long_, 2) if long_ > 0 else None,
        "ShortStandardizedMarginOutstanding": np.round(short * 0.7, -2),
        "ShortNegotiableMarginOutstanding": short - np.round(short * 0.7, -2),
        "LongStandardizedMarginOutstanding": np.round(long_ * 0.7, -2),
        "LongNegotiableMarginOutstanding": long_ - np.round(long_ * 0.7, -2),
    }
    return row


#: The synthetic short sellers (name, address).
SHORT_SELLERS = tuple(
    (f"Synthetic Capital Partners {k:02d}", f"{k} Example Street, Synthetic City") for k in range(1, 13)
)
#: Reporting threshold and the change that triggers a new report (percent of shares outstanding).
REPORT_THRESHOLD, REPORT_STEP = 0.5, 0.1
DISCLOSURE_LAG = 2


def short_selling_positions(sim: Simulation, seed: int) -> pl.DataFrame:
    """Short position reports, sorted by (DisclosedDate, CalculatedDate, Code, ShortSellerName)."""
    rng = derived_stream(seed, "short_selling_positions")
    T, N = len(sim.days), len(sim.codes)
    shares = _shares_outstanding(sim)
    listed = _listed_mask(sim)
    rows: list[dict] = []
    for name, address in SHORT_SELLERS:
        codes = np.nonzero(rng.random(N) < 0.05)[0]
        for i in codes:
            level = rng.uniform(0.3, 1.5)
            pos, last = 0.0, None  # last: (t, ratio) of the last report
            noise = 0.03 * rng.standard_normal(T)
            for t in range(T):
                if not listed[t, i]:
                    continue
                pos = max(pos + 0.05 * (level - pos) + noise[t], 0.0)
                ratio = round(pos, 2)
                above = ratio >= REPORT_THRESHOLD
                moved = last is None or abs(ratio - last[1]) >= REPORT_STEP
                closing = last is not None and last[1] >= REPORT_THRESHOLD and not above
                if not ((above and moved) or closing):
                    continue
                if t + DISCLOSURE_LAG < T:
                    rows.append(
                        {
                            "DisclosedDate": sim.days[t + DISCLOSURE_LAG],
                            "CalculatedDate": sim.days[t],
                            "Code": sim.codes[i],
                            "ShortSellerName": name,
                            "ShortSellerAddress": address,
                            "ShortPositionsToSharesOutstandingRatio": ratio,
                            "ShortPositionsInSharesNumber": float(np.round(ratio / 100 * shares[t, i], -2)),
                            "ShortPositionsInTradingUnitsNumber": float(
                                np.round(ratio / 100 * shares[t, i] / 100)
                            ),
                            "CalculationInPreviousReportingDate": None if last is None else sim.days[last[0]],
                            "ShortPositionsInPreviousReportingRatio": None if last is None else last[1],
                        }
                    )
                last = None if closing else (t, ratio)
                if closing:
                    level = rng.uniform(0.3, 1.5)  # a new position may build up later
                    pos = 0.0
    if not rows:
        return pl.DataFrame(schema=SHORT_SELLING_POSITIONS.schema)
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df.select(
        [
            (pl.col(f.name) if f.name in df.columns else pl.lit(None)).cast(f.dtype).alias(f.name)
            for f in SHORT_SELLING_POSITIONS.fields
        ]
    ).sort("DisclosedDate", "CalculatedDate", "Code", "ShortSellerName")
