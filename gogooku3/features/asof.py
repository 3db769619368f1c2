"""Point-in-time tables of the market-wide datasets, ready to join onto the feature panel.

Each table is keyed by what it is joined on (a code, a sector or a date) and by ``available``, the
first feature row that may use it, from the rules in :mod:`gogooku3.pit` (the one place they are
written). Values derived over a dataset's own history (a 52-week z-score, a weekly change) are
computed here on the dataset's own rows, in publication order, so no row reads a later one; the
panel then takes, for each row, the latest table row with ``available <= Date``.

=====================  =======================  ==================================================
table                  keyed by                 columns
=====================  =======================  ==================================================
margin                 Code, available          long/short balances (shares), weekly change of the
                                                net balance, 52-week z of the short/long ratio
short selling          Sector33Code, available  short share of the sector's selling, its 60-day z
                                                and 5-day change
earnings calendar      Code, available          the latest announced earnings date
dividends              Code, available          the next and the last ex-date of the dividends
                                                known, the announced amounts still ahead
margin alerts          Code, available          the latest usable daily-published short/long margin
                                                ratio and the day its balances apply to
short positions        Code, available          the sum of the reported short positions (percent of
                                                the shares outstanding) still open, and their sellers
futures                available (a date)       the central TOPIX future's overnight return (night
                                                session close / previous day session close - 1),
                                                the 60-day z of its annualised basis to TOPIX
index options          available (a date)       30-day ATM implied volatility, the ATM term slope
                                                (second expiry minus first), put/call open interest
sector indices         Sector33Code, Date       the sector index's close (same day, like TOPIX;
                                                the catalogue takes its returns per code)
market regime          Date                     TOPIX drawdown from its 252-day peak, 252-day
                                                z-scores of its daily return and 20-day volatility
=====================  =======================  ==================================================
"""

from __future__ import annotations

import polars as pl

from gogooku3.jquants.datasets import DIVIDEND_DELETED, OPTION_PUT, SECTOR_INDEX_CODES
from gogooku3.pit import (
    derivatives_usable_from,
    dividends_usable_from,
    earnings_calendar_usable_from,
    evening_publication_usable_from,
    margin_usable_from,
    short_selling_usable_from,
)

#: Weekly records in the margin z-score window (52 weeks), and the fewest it is computed from.
MARGIN_Z_WEEKS, MARGIN_Z_MIN = 52, 13
#: Trading days in the short-share z-score window, and the fewest it is computed from.
SHORT_Z_DAYS, SHORT_Z_MIN = 60, 20
#: Trading days of the futures basis z-score window, and the fewest it is computed from.
BASIS_Z_DAYS, BASIS_Z_MIN = 60, 20
#: Short positions are reported from this percent of the shares outstanding on.
SHORT_REPORT_THRESHOLD = 0.5
#: Calendar days an alert's balances stay in use after the day they apply to (an episode's end).
ALERT_STALE_DAYS = 10
#: Days to expiry the options' ATM implied volatility is interpolated to.
ATM_IV_DAYS = 30
#: Trading days of the market-regime windows.
REGIME_DAYS, REGIME_MIN = 252, 60


def _with_available(df: pl.DataFrame, column: str, rule) -> pl.DataFrame:
    """``df`` with ``available`` = ``rule(column)``, evaluated once per distinct date."""
    days = df.get_column(column).unique()
    table = pl.DataFrame(
        {column: days, "available": [rule(d) for d in days.to_list()]},
        schema={column: pl.Date, "available": pl.Date},
    )
    return df.join(table, on=column, how="left")


def _z(x: pl.Expr, window: int, min_samples: int, over: str | None = None) -> pl.Expr:
    mean = x.rolling_mean(window, min_samples=min_samples)
    std = x.rolling_std(window, min_samples=min_samples)
    z = pl.when(std > 0).then((x - mean) / std)
    return z.over(over) if over else z


def margin_table(margin: pl.DataFrame) -> pl.DataFrame:
    """(Code, available) -> margin_long, margin_short, margin_net_wow, margin_ratio_z (shares)."""
    m = _with_available(
        margin.select("Date", "Code", "LongMarginTradeVolume", "ShortMarginTradeVolume"),
        "Date",
        margin_usable_from,
    )
    long, short = pl.col("LongMarginTradeVolume"), pl.col("ShortMarginTradeVolume")
    net = long - short
    ratio = pl.when(long > 0).then(short / long)
    return (
        m.sort("Code", "Date")
        .with_columns(ratio.alias("_ratio"))
        .select(
            "Code",
            "available",
            long.alias("margin_long"),
            short.alias("margin_short"),
            (net - net.shift(1)).over("Code").alias("margin_net_wow"),
            _z(pl.col("_ratio"), MARGIN_Z_WEEKS, MARGIN_Z_MIN, over="Code").alias("margin_ratio_z"),
        )
        .sort("available", "Code")
    )


def short_selling_table(short_selling: pl.DataFrame) -> pl.DataFrame:
    """(Sector33Code, available) -> short_share, short_share_z, short_share_mom_5d."""
    s = _with_available(short_selling, "Date", short_selling_usable_from)
    short = pl.col("ShortSellingWithRestrictionsTurnoverValue") + pl.col(
        "ShortSellingWithoutRestrictionsTurnoverValue"
    )
    total = short + pl.col("SellingExcludingShortSellingTurnoverValue")
    share = pl.col("_share")
    return (
        s.sort("Sector33Code", "Date")
        .with_columns(pl.when(total > 0).then(short / total).alias("_share"))
        .select(
            "Sector33Code",
            "available",
            share.alias("short_share"),
            _z(share, SHORT_Z_DAYS, SHORT_Z_MIN, over="Sector33Code").alias("short_share_z"),
            (share - share.shift(5)).over("Sector33Code").alias("short_share_mom_5d"),
        )
        .sort("available", "Sector33Code")
    )


def earnings_table(calendar: pl.DataFrame) -> pl.DataFrame:
    """(Code, available) -> earn_next_date, the latest announced earnings date (a correction
    replaces the date it corrects from its own usable day on)."""
    c = _with_available(
        calendar.select("PublishedDate", "Code", "Date"), "PublishedDate", earnings_calendar_usable_from
    )
    return (
        c.sort("available", "Code", "PublishedDate")
        .group_by("Code", "available", maintain_order=True)
        .last()
        .select("Code", "available", pl.col("Date").alias("earn_next_date"))
    )


def dividends_table(dividends: pl.DataFrame) -> pl.DataFrame:
    """(Code, available) -> div_next_ex_date, div_last_ex_date, div_fwd_amount.

    The state of a code's dividends known on each day it can change: a notice becoming usable
    (:func:`gogooku3.pit.dividends_usable_from`) or the day after an ex-date. A dividend is the
    latest usable notice with its CAReferenceNumber (a deletion drops it). ``div_next_ex_date``
    is the earliest ex-date on or after the day, ``div_last_ex_date`` the latest before it, and
    ``div_fwd_amount`` the sum of the amounts per share with an ex-date on or after the day (null
    when none is decided, e.g. no dividend ahead or only undecided forecasts).
    """
    cols = ("Code", "AnnouncementDate", "AnnouncementTime", "ReferenceNumber", "CAReferenceNumber",
            "StatusCode", "ExDate", "GrossDividendRate")  # fmt: skip
    pairs = dividends.select("AnnouncementDate", "AnnouncementTime").unique()
    pairs = pairs.with_columns(
        pl.Series("available", [dividends_usable_from(d, t) for d, t in pairs.iter_rows()], dtype=pl.Date)
    )
    notices = dividends.select(cols).join(
        pairs, on=["AnnouncementDate", "AnnouncementTime"], how="left", nulls_equal=True
    )
    points = pl.concat(
        [
            notices.select("Code", pl.col("available").alias("point")),
            notices.select("Code", (pl.col("ExDate") + pl.duration(days=1)).alias("point")),
        ]
    ).unique()
    known = (
        points.join(notices, on="Code")
        .filter(pl.col("available") <= pl.col("point"))
        .sort("Code", "point", "available", "AnnouncementDate", "AnnouncementTime", "ReferenceNumber")
        .group_by("Code", "point", "CAReferenceNumber", maintain_order=True)
        .last()
        .filter(pl.col("StatusCode") != DIVIDEND_DELETED)
    )
    ahead = pl.col("ExDate") >= pl.col("point")
    amounts = pl.col("GrossDividendRate").filter(ahead)
    state = known.group_by("Code", "point").agg(
        pl.col("ExDate").filter(ahead).min().alias("div_next_ex_date"),
        pl.col("ExDate").filter(~ahead).max().alias("div_last_ex_date"),
        pl.when(amounts.count() > 0).then(amounts.sum()).alias("div_fwd_amount"),
    )
    return (
        points.join(state, on=["Code", "point"], how="left")
        .rename({"point": "available"})
        .select("Code", "available", "div_next_ex_date", "div_last_ex_date", "div_fwd_amount")
        .sort("available", "Code")
    )


def margin_alert_table(alerts: pl.DataFrame) -> pl.DataFrame:
    """(Code, available) -> alert_short_long (short / long, a fraction), alert_application_date: the
    record with the latest ApplicationDate usable then (a revision replaces its date's record)."""
    a = _with_available(alerts, "PublishedDate", evening_publication_usable_from)
    return (
        a.sort("Code", "available", "ApplicationDate", "PublishedDate")
        .group_by("Code", "available", maintain_order=True)
        .last()
        .select(
            "Code",
            "available",
            (pl.col("ShortLongRatio") / 100.0).alias("alert_short_long"),
            pl.col("ApplicationDate").alias("alert_application_date"),
        )
        .sort("available", "Code")
    )


def short_positions_table(reports: pl.DataFrame) -> pl.DataFrame:
    """(Code, available) -> short_pos_ratio (percent), short_pos_sellers: over the sellers whose
    latest usable report is at or above the reporting threshold (a report below it closes one).

    Computed as running sums: each report changes its code's total by its seller's new open
    position minus the seller's previous one (the seller's reports in usable, then calculation
    order), so no day-by-seller grid is built.
    """
    ratio = pl.col("ShortPositionsToSharesOutstandingRatio")
    r = _with_available(
        reports.select("DisclosedDate", "CalculatedDate", "Code", "ShortSellerName", ratio),
        "DisclosedDate",
        evening_publication_usable_from,
    )
    seller = ("Code", "ShortSellerName")
    open_ratio = pl.when(ratio >= SHORT_REPORT_THRESHOLD).then(ratio).otherwise(0.0)
    return (
        r.sort("Code", "ShortSellerName", "available", "CalculatedDate")
        .with_columns(open_ratio.alias("_open"))
        .with_columns(
            (pl.col("_open") - pl.col("_open").shift(1, fill_value=0.0).over(seller)).alias("_d_ratio"),
            (
                (pl.col("_open") > 0).cast(pl.Float64)
                - (pl.col("_open") > 0).cast(pl.Float64).shift(1, fill_value=0.0).over(seller)
            ).alias("_d_sellers"),
        )
        .sort("Code", "available", "ShortSellerName", "CalculatedDate")
        .with_columns(
            # ratios have two decimals: rounding drops the running sum's float residue (a closed
            # code is 0.0, not 1e-16)
            pl.col("_d_ratio").cum_sum().over("Code").round(6).alias("short_pos_ratio"),
            pl.col("_d_sellers").cum_sum().over("Code").alias("short_pos_sellers"),
        )
        .group_by("Code", "available", maintain_order=True)
        .last()
        .select("Code", "available", "short_pos_ratio", "short_pos_sellers")
        .sort("available", "Code")
    )


def futures_table(futures: pl.DataFrame, topix: pl.DataFrame) -> pl.DataFrame:
    """available -> fut_overnight_ret, fut_basis_z, from the central contract (CCM flag 1) of each
    day: its night-session close over the same contract's previous day-session close, and the
    z-score of ``ln(F / TOPIX) / years to SQ`` (at least 30 days) over :data:`BASIS_Z_DAYS` days."""
    f = futures.sort("Code", "Date").with_columns(
        pl.col("DaySessionClose").shift(1).over("Code").alias("_prev_day_close")
    )
    front = f.filter(pl.col("CentralContractMonthFlag") == "1").join(
        topix.select(pl.col("Date").cast(pl.Date), pl.col("Close").cast(pl.Float64).alias("_spot")),
        on="Date",
        how="left",
    )
    # a month's floor: the tick rounding of a contract days from its SQ would dominate the basis
    years = pl.max_horizontal((pl.col("SpecialQuotationDay") - pl.col("Date")).dt.total_days(), 30) / 365.0
    basis = (pl.col("SettlementPrice") / pl.col("_spot")).log() / years
    table = (
        front.sort("Date")
        .unique("Date", keep="first", maintain_order=True)
        .with_columns(basis.alias("_basis"))
        .select(
            "Date",
            (pl.col("NightSessionClose") / pl.col("_prev_day_close") - 1.0).alias("fut_overnight_ret"),
            _z(pl.col("_basis"), BASIS_Z_DAYS, BASIS_Z_MIN).alias("fut_basis_z"),
        )
    )
    return _with_available(table, "Date", derivatives_usable_from).drop("Date").sort("available")


def options_table(options: pl.DataFrame) -> pl.DataFrame:
    """available -> opt_atm_iv_30d, opt_iv_term_slope, opt_put_call_oi (IV as a fraction).

    Per day and expiry, the ATM IV is the mean IV of the put and call at the strike nearest the
    underlying; the 30-day level interpolates total variance linearly in time between the expiries
    around 30 days (the nearest one outside them); the slope is the second expiry's ATM IV minus the
    first's; put/call is the day's total put open interest over the calls'.
    """
    o = options.with_columns(
        (pl.col("SpecialQuotationDay") - pl.col("Date")).dt.total_days().cast(pl.Float64).alias("_days"),
        (pl.col("StrikePrice") - pl.col("UnderlyingPrice")).abs().alias("_dist"),
    )
    nearest = o.group_by("Date", "_days").agg(pl.col("_dist").min().alias("_min"))
    atm = (
        o.join(nearest, on=["Date", "_days"])
        .filter(pl.col("_dist") == pl.col("_min"))
        .group_by("Date", "_days")
        .agg((pl.col("ImpliedVolatility").mean() / 100.0).alias("_iv"))
        .sort("Date", "_days")
    )
    per_day = atm.group_by("Date", maintain_order=True).agg(pl.col("_days"), pl.col("_iv"))
    rows = []
    for day, days, ivs in per_day.iter_rows():
        rows.append(
            (day, _interpolated_iv(days, ivs, ATM_IV_DAYS), ivs[1] - ivs[0] if len(ivs) > 1 else None)
        )
    table = pl.DataFrame(
        rows,
        schema={"Date": pl.Date, "opt_atm_iv_30d": pl.Float64, "opt_iv_term_slope": pl.Float64},
        orient="row",
    )
    is_put = pl.col("PutCallDivision") == OPTION_PUT
    ratio = o.group_by("Date").agg(
        (pl.col("OpenInterest").filter(is_put).sum() / pl.col("OpenInterest").filter(~is_put).sum()).alias(
            "opt_put_call_oi"
        )
    )
    table = table.join(ratio, on="Date", how="left")
    return _with_available(table, "Date", derivatives_usable_from).drop("Date").sort("available")


def _interpolated_iv(days: list[float], ivs: list[float], target: float) -> float | None:
    """IV at ``target`` days from (days, IV) points sorted by days: total variance linear in time."""
    if not days:
        return None
    if target <= days[0] or len(days) == 1:
        return ivs[0] if target <= days[0] else ivs[-1]
    for (d0, v0), (d1, v1) in zip(
        zip(days, ivs, strict=True), zip(days[1:], ivs[1:], strict=True), strict=False
    ):
        if d0 <= target <= d1:
            w = (v0**2 * d0 + (v1**2 * d1 - v0**2 * d0) * (target - d0) / (d1 - d0)) / target
            return w**0.5
    return ivs[-1]


def sector_index_table(indices: pl.DataFrame) -> pl.DataFrame:
    """(Sector33Code, Date) -> sec_idx_close, the close of the sector's index."""
    sector_of = {code: s33 for s33, code in SECTOR_INDEX_CODES.items()}
    return indices.filter(pl.col("Code").is_in(list(sector_of))).select(
        pl.col("Code").replace_strict(sector_of).alias("Sector33Code"),
        pl.col("Date").cast(pl.Date),
        pl.col("Close").cast(pl.Float64).alias("sec_idx_close"),
    )


def market_regime_table(topix: pl.DataFrame) -> pl.DataFrame:
    """Date -> mkt_drawdown_252d, mkt_ret_z_252d, mkt_vol_z_252d from TOPIX closes."""
    close = pl.col("Close")
    ret = close / close.shift(1) - 1.0
    vol = ret.rolling_std(20, min_samples=20) * 252**0.5
    return (
        topix.select(pl.col("Date").cast(pl.Date), close.cast(pl.Float64))
        .unique("Date", keep="last")
        .sort("Date")
        .with_columns(ret.alias("_ret"), vol.alias("_vol"))
        .select(
            "Date",
            (close / close.rolling_max(REGIME_DAYS, min_samples=REGIME_MIN) - 1.0).alias("mkt_drawdown_252d"),
            _z(pl.col("_ret"), REGIME_DAYS, REGIME_MIN).alias("mkt_ret_z_252d"),
            _z(pl.col("_vol"), REGIME_DAYS, REGIME_MIN).alias("mkt_vol_z_252d"),
        )
    )
