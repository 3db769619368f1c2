"""Input preparation: lake datasets -> one (Code, Date) panel of base columns, shared by both engines.

Joins are cheap next to the windowed feature maths, so both engines start from this Polars panel
(the GPU engine copies it to the device once). Every base column below is what the catalogue may
read; all of them are known at the close of their row's Date (no later information).

Statement timing (P0, no leakage), defined precisely:

* The *effective disclosure day* E of a statement is its ``DisclosedDate`` when that is a trading
  day and ``DisclosedTime`` is before 15:00:00 JST; a disclosure at or after 15:00:00 (or with no
  time), or one on a non-trading day, counts as disclosed on the next trading day after
  ``DisclosedDate``... more exactly: ``E = on_or_after(DisclosedDate)`` if before 15:00 else
  ``next_trading_day(DisclosedDate)``.
* The statement is *usable* from ``A = next_trading_day(E)`` (T+1): the panel row of date D sees
  the latest statement with ``A <= D``.

Examples: Mon 11:30 -> E Mon, usable Tue. Mon 15:00 -> E Tue, usable Wed. Sat 10:00 -> E Mon,
usable Tue.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl

from gogooku3.calendar import next_trading_day, on_or_after
from gogooku3.features.peers import PEER_COLUMNS, PEER_HISTORY, peer_columns

#: Base columns of the panel (besides Date, Code, Sector33Code, MarketCode) -> meaning.
BASE_COLUMNS: dict[str, str] = {
    "px_open": "split-adjusted open (AdjustmentOpen); the carried close on days without trades",
    "px_high": "split-adjusted high; the carried close on days without trades",
    "px_low": "split-adjusted low; the carried close on days without trades",
    "px_close": "split-adjusted close (AdjustmentClose), carried forward over days without trades",
    "raw_close": "unadjusted close, carried forward (for per-share statement ratios)",
    "volume": "split-adjusted volume (AdjustmentVolume), 0 on days without trades",
    "turnover": "turnover value in yen, 0 on days without trades",
    "mkt_close": "TOPIX close of the same date",
    "obs_count": "rows of this code so far, this one included (1 on its first row)",
    "flow_foreigners_net_ratio_in": "foreigners' net buying ratio of the stock's Section (latest usable week)",
    "flow_individuals_net_ratio_in": "individuals' net buying ratio of the stock's Section",
    "flow_smart_money_in": "smart-money index (foreigners minus individuals net ratio) of the Section",
    "flow_smart_money_wow_in": "smart-money index minus the previous week's",
    "flow_smart_money_z_in": "smart-money index z-score over the Section's last 52 weeks",
    "flow_days_since_published_in": "trading days since that trades_spec week became usable (1 on its first day)",
    "flow_is_fresh_in": "1.0 on the first day a week's flows are usable, else 0.0",
    "stmt_disclosed_date": "DisclosedDate of the statement in use (as of T+1 with the 15:00 cutoff)",
    "stmt_net_sales": "NetSales (cumulative) of the statement in use",
    "stmt_operating_profit": "OperatingProfit (cumulative)",
    "stmt_profit": "Profit (cumulative)",
    "stmt_eps": "EarningsPerShare (cumulative)",
    "stmt_equity": "Equity",
    "stmt_total_assets": "TotalAssets",
    "stmt_bps": "BookValuePerShare",
    "stmt_dividend": "ResultDividendPerShareAnnual (the last one reported, carried over quarterly statements)",
    "stmt_forecast_operating_profit": "ForecastOperatingProfit (full year)",
    "stmt_forecast_eps": "ForecastEarningsPerShare (full year)",
    "stmt_annualize": "factor turning cumulative figures into a year: 1Q 4, 2Q 2, 3Q 4/3, FY 1",
    "stmt_prev_net_sales": "NetSales of the same period type one fiscal year earlier (first version)",
    "stmt_prev_operating_profit": "OperatingProfit of the same period one year earlier",
    "stmt_prev_profit": "Profit of the same period one year earlier",
    "stmt_prev_forecast_eps": "ForecastEarningsPerShare of the code's previous statement",
    "stmt_prev_forecast_operating_profit": "ForecastOperatingProfit of the code's previous statement",
    # the market-wide datasets, point in time (gogooku3.features.asof, rules in gogooku3.pit)
    "margin_long_in": "long margin balance (shares) of the latest usable week (T+3 trading days after its record)",
    "margin_short_in": "short margin balance (shares) of the latest usable week",
    "margin_net_wow_in": "change of the net (long - short) margin balance vs the week before (shares)",
    "margin_ratio_z_in": "z-score of short/long margin balance over the code's last 52 weekly records",
    "short_share_in": "short sales / all sales in the stock's sector, the previous trading day's",
    "short_share_z_in": "z-score of that sector short share over the sector's last 60 trading days",
    "short_share_mom_5d_in": "sector short share minus its value 5 trading days earlier",
    "earn_next_date": "the latest announced earnings date of the code while it lies ahead (announced by T-1)",
    "div_next_ex_date": "the earliest ex-date on or after T of the code's dividends known on T (null: none ahead)",
    "div_last_ex_date": "the latest ex-date before T of the code's dividends known on T",
    "div_fwd_amount_in": "sum of the decided amounts per share of the known dividends with an ex-date on or after T",
    "alert_short_long_in": "short / long balance of the latest usable daily margin alert, while its balances are at most 10 days old",
    "short_pos_ratio_in": "sum of the open reported short positions (percent of the shares outstanding), usable the day after disclosure",
    "short_pos_sellers_in": "number of short sellers with an open reported position",
    "fut_overnight_ret_in": "central TOPIX future: night-session close / previous day-session close - 1 (the previous trading day's)",
    "fut_basis_z_in": "z-score of the central TOPIX future's annualised basis to TOPIX over 60 days (the previous trading day's)",
    "opt_atm_iv_30d_in": "Nikkei 225 options' ATM implied volatility interpolated to 30 days (the previous trading day's)",
    "opt_iv_term_slope_in": "ATM implied volatility of the second expiry minus the first's (the previous trading day's)",
    "opt_put_call_oi_in": "Nikkei 225 options' put open interest / call open interest (the previous trading day's)",
    "sec_idx_close": "close of the stock's 33-sector index, same date (like mkt_close)",
    "mkt_drawdown_252d_in": "TOPIX close / its 252-day high - 1",
    "mkt_ret_z_252d_in": "z-score of TOPIX's daily return over 252 days",
    "mkt_vol_z_252d_in": "z-score of TOPIX's 20-day volatility over 252 days",
    **PEER_COLUMNS,
}
#: Rows of a code's own history a base column needs before it can have a value, where more than one
#: (the catalogue's ``min_history`` and the gate's maturity conditions start from these): the
#: market-wide tables' warm-up (:mod:`gogooku3.features.asof`) plus their publication lag. A code
#: with that many rows has that much history in the lake, so the tables have theirs.
BASE_HISTORY: dict[str, int] = {
    "margin_long_in": 9,  # the first week end (<= 5 days), then 3 trading days to usable
    "margin_short_in": 9,
    "margin_net_wow_in": 14,  # two weekly records
    "margin_ratio_z_in": 69,  # 13 weekly records
    "short_share_in": 2,  # the previous day's
    "short_share_z_in": 21,
    "short_share_mom_5d_in": 7,
    "fut_overnight_ret_in": 3,  # the previous day's, which needs its day before
    "fut_basis_z_in": 21,
    "opt_atm_iv_30d_in": 2,
    "opt_iv_term_slope_in": 2,
    "opt_put_call_oi_in": 2,
    "mkt_drawdown_252d_in": 60,
    "mkt_ret_z_252d_in": 61,
    "mkt_vol_z_252d_in": 80,  # 60 values of a 20-day volatility of returns
    **dict.fromkeys(PEER_COLUMNS, PEER_HISTORY),  # enough returns in the window to be linked
}
#: Base columns holding dates (the rest are Float64).
DATE_BASE_COLUMNS = frozenset(
    {"stmt_disclosed_date", "earn_next_date", "div_next_ex_date", "div_last_ex_date"}
)

#: Non-feature columns of the panel: identity, sector/market, and two integer group keys the
#: engines group by (integers hash faster than strings and a single key beats two):
#: ``code_id`` (dense rank of Code) and ``date_sector`` (Date x Sector33Code, null without a sector).
KEY_COLUMNS = ("Code", "Date", "Sector33Code", "MarketCode", "code_id", "date_sector")

#: 15:00:00 JST: at or after it a disclosure counts as next trading day's.
CUTOFF = dt.time(15, 0)

_ANNUALIZE = {"1Q": 4.0, "2Q": 2.0, "3Q": 4.0 / 3.0, "4Q": 1.0, "FY": 1.0}

#: Base column -> the helper FLOWS column (``interim/trades_spec_daily``) it is taken from.
FLOW_SOURCES = {
    "flow_foreigners_net_ratio_in": "flow_foreigners_net_ratio",
    "flow_individuals_net_ratio_in": "flow_individuals_net_ratio",
    "flow_smart_money_in": "flow_smart_money_idx",
    "flow_smart_money_wow_in": "flow_smart_money_idx_wow",
    "flow_smart_money_z_in": "flow_smart_money_idx_z",
    "flow_days_since_published_in": "flow_days_since_published",
    "flow_is_fresh_in": "flow_is_fresh",
}


class FeatureInputError(ValueError):
    """An input frame cannot be used (missing column, duplicate key, wrong type); names the problem."""


def _require(df: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatureInputError(f"{name} is missing column(s) {missing}; it has {df.columns}")


def disclosure_after_cutoff(time_text: str | None) -> bool:
    """True when ``DisclosedTime`` (``HH:MM[:SS]``) is at/after 15:00 or unknown (conservative)."""
    if time_text is None or not str(time_text).strip():
        return True
    parts = str(time_text).strip().split(":")
    try:
        hh, mm = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        ss = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise FeatureInputError(f"statements: DisclosedTime {time_text!r} is not HH:MM[:SS]") from None
    return dt.time(min(hh, 23), mm, ss) >= CUTOFF


def effective_disclosure_day(disclosed: dt.date, time_text: str | None) -> dt.date:
    """The trading day a disclosure counts for (see the module docstring)."""
    return next_trading_day(disclosed) if disclosure_after_cutoff(time_text) else on_or_after(disclosed)


def usable_from(disclosed: dt.date, time_text: str | None) -> dt.date:
    """First trading date whose features may use the statement: the day after the effective day."""
    return next_trading_day(effective_disclosure_day(disclosed, time_text))


def statements_asof_table(statements: pl.DataFrame) -> pl.DataFrame:
    """One row per (Code, usable date) with the stmt_* base columns, sorted by usable date.

    Only statements with actual figures (NetSales or Profit present) are kept; forecast-only
    revisions do not replace the figures in use. ``stmt_prev_*`` year-earlier values come from
    the *first* version of that earlier period (always disclosed before the current one).
    """
    _require(statements, "statements", ("Code", "DisclosedDate", "DisclosedTime", "NetSales", "Profit"))
    s = statements.with_columns(
        [
            pl.lit(None, dtype=pl.Float64).alias(c)
            for c in (
                "OperatingProfit",
                "EarningsPerShare",
                "Equity",
                "TotalAssets",
                "BookValuePerShare",
                "ResultDividendPerShareAnnual",
                "ForecastOperatingProfit",
                "ForecastEarningsPerShare",
            )
            if c not in statements.columns
        ]
        + [
            pl.lit(None, dtype=pl.String).alias(c)
            for c in ("TypeOfCurrentPeriod", "DisclosureNumber")
            if c not in statements.columns
        ]
        + [pl.lit(None, dtype=pl.Date).alias("CurrentPeriodEndDate")]
        * ("CurrentPeriodEndDate" not in statements.columns)
    ).filter(pl.col("NetSales").is_not_null() | pl.col("Profit").is_not_null())
    if s.height == 0:
        return _empty_asof()
    pairs = s.select("DisclosedDate", "DisclosedTime").unique()
    usable = [usable_from(d, t) for d, t in pairs.iter_rows()]
    pairs = pairs.with_columns(pl.Series("available", usable, dtype=pl.Date))
    s = (
        s.join(pairs, on=["DisclosedDate", "DisclosedTime"], how="left", nulls_equal=True)
        .sort("Code", "available", "DisclosedDate", "DisclosedTime", "DisclosureNumber", nulls_last=False)
        .with_columns(
            # Quarterly summaries leave the annual dividend empty: carry the last one reported.
            pl.col("ResultDividendPerShareAnnual").forward_fill().over("Code"),
            pl.col("ForecastEarningsPerShare").shift(1).over("Code").alias("stmt_prev_forecast_eps"),
            pl.col("ForecastOperatingProfit")
            .shift(1)
            .over("Code")
            .alias("stmt_prev_forecast_operating_profit"),
        )
    )
    # Year-earlier figures: first version of each (Code, period type, period end), previous period end.
    periods = (
        s.filter(pl.col("CurrentPeriodEndDate").is_not_null() & pl.col("TypeOfCurrentPeriod").is_not_null())
        .group_by("Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate", maintain_order=True)
        .first()
        .sort("Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate")
        .with_columns(
            [
                pl.col(c).shift(1).over("Code", "TypeOfCurrentPeriod").alias(f"_prev_{c}")
                for c in ("NetSales", "OperatingProfit", "Profit", "CurrentPeriodEndDate")
            ]
        )
        .with_columns(
            _gap=(pl.col("CurrentPeriodEndDate") - pl.col("_prev_CurrentPeriodEndDate")).dt.total_days()
        )
        .select(
            "Code",
            "TypeOfCurrentPeriod",
            "CurrentPeriodEndDate",
            *[
                pl.when(pl.col("_gap").is_between(300, 430))
                .then(pl.col(f"_prev_{c}"))
                .alias(f"stmt_prev_{n}")
                for c, n in (
                    ("NetSales", "net_sales"),
                    ("OperatingProfit", "operating_profit"),
                    ("Profit", "profit"),
                )
            ],
        )
    )
    s = s.join(
        periods, on=["Code", "TypeOfCurrentPeriod", "CurrentPeriodEndDate"], how="left", nulls_equal=False
    )
    out = s.select(
        "Code",
        "available",
        pl.col("DisclosedDate").alias("stmt_disclosed_date"),
        pl.col("NetSales").alias("stmt_net_sales"),
        pl.col("OperatingProfit").alias("stmt_operating_profit"),
        pl.col("Profit").alias("stmt_profit"),
        pl.col("EarningsPerShare").alias("stmt_eps"),
        pl.col("Equity").alias("stmt_equity"),
        pl.col("TotalAssets").alias("stmt_total_assets"),
        pl.col("BookValuePerShare").alias("stmt_bps"),
        pl.col("ResultDividendPerShareAnnual").alias("stmt_dividend"),
        pl.col("ForecastOperatingProfit").alias("stmt_forecast_operating_profit"),
        pl.col("ForecastEarningsPerShare").alias("stmt_forecast_eps"),
        pl.col("TypeOfCurrentPeriod")
        .replace_strict(_ANNUALIZE, default=None, return_dtype=pl.Float64)
        .alias("stmt_annualize"),
        "stmt_prev_net_sales",
        "stmt_prev_operating_profit",
        "stmt_prev_profit",
        "stmt_prev_forecast_eps",
        "stmt_prev_forecast_operating_profit",
    )
    # Several statements usable from the same day: the last disclosed one wins.
    return out.group_by("Code", "available", maintain_order=True).last().sort("available", "Code")


def _empty_asof() -> pl.DataFrame:
    cols = {c: pl.Float64 for c in BASE_COLUMNS if c.startswith("stmt_")}
    cols["stmt_disclosed_date"] = pl.Date
    return pl.DataFrame(schema={"Code": pl.String, "available": pl.Date, **cols})


def prepare_panel(
    daily_quotes: pl.DataFrame,
    *,
    listed_info: pl.DataFrame | None = None,
    topix: pl.DataFrame | None = None,
    statements: pl.DataFrame | None = None,
    flows: pl.DataFrame | None = None,
    indices: pl.DataFrame | None = None,
    short_selling: pl.DataFrame | None = None,
    weekly_margin_interest: pl.DataFrame | None = None,
    earnings_calendar: pl.DataFrame | None = None,
    dividends: pl.DataFrame | None = None,
    futures: pl.DataFrame | None = None,
    index_option: pl.DataFrame | None = None,
    daily_margin_interest: pl.DataFrame | None = None,
    short_selling_positions: pl.DataFrame | None = None,
    peers_since: dt.date | None = None,
    timings: dict[str, float] | None = None,
    checkpoint: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Build the base panel, sorted by (Code, Date), one row per daily_quotes row.

    ``checkpoint`` (:mod:`gogooku3.features.checkpoint`: one day's ``Date``, ``Code`` and
    checkpoint columns) resumes the codes that have a row on its day: ``obs_count`` counts on from
    it, the carried closes carry on from it, and its EMA state columns are kept on those rows for
    the engines. ``daily_quotes`` then starts on the checkpoint's day.

    The peer columns (:mod:`gogooku3.features.peers`, a correlation matrix per day) are computed
    for the days >= ``peers_since`` (default: every day) and null before: a build passes its first
    output day, since no feature reads them on history rows. ``timings`` receives their seconds
    (``peers_s``), most of a backfill's preparation.

    ``listed_info`` may hold one snapshot or many (``Date`` column); each row takes the latest
    snapshot on or before its date, else the earliest one (sector membership is treated as static
    metadata). Missing optional inputs give null base columns (and null features).
    """
    _require(daily_quotes, "daily_quotes", ("Date", "Code", "Close", "AdjustmentClose"))
    q = daily_quotes
    for c in ("Open", "High", "Low", "Volume", "TurnoverValue"):
        if c not in q.columns:
            raise FeatureInputError(f"daily_quotes is missing column {c!r}")
    adj = pl.col("AdjustmentClose") / pl.col("Close")
    by_code = "code_id"  # integer key: grouping on it is cheaper than on the Code strings

    def _adj(name: str) -> pl.Expr:
        raw = pl.col(name) * adj
        src = pl.coalesce(pl.col(f"Adjustment{name}"), raw) if f"Adjustment{name}" in q.columns else raw
        return pl.coalesce(src, pl.col("px_close"))

    vol = pl.col("AdjustmentVolume") if "AdjustmentVolume" in q.columns else pl.col("Volume") / adj
    q = q.with_columns(pl.col("Code").cast(pl.String), pl.col("Date").cast(pl.Date))
    # code_id: the dense rank of Code (1 = the smallest), looked up from the few thousand distinct
    # codes rather than ranked over every row.
    codes = q.get_column("Code").unique().sort()
    code_ids = pl.int_range(1, codes.len() + 1, dtype=pl.UInt32, eager=True)
    # Every join below keeps the left row order, so the panel stays sorted by (Code, Date); the
    # sorted flag on code_id lets the per-code steps work on contiguous slices.
    lf = (
        q.lazy()
        .with_columns(pl.col("Code").replace_strict(codes, code_ids).alias("code_id"))
        .sort("code_id", "Date")
        .with_columns(pl.col("code_id").set_sorted())
    )
    states: list[str] = []
    resumed_close, resumed_raw, rows_before = pl.lit(None), pl.lit(None), pl.lit(0.0)
    if checkpoint is not None:
        from gogooku3.features.checkpoint import BASE_STATE, CHECKPOINT_COLUMNS

        states = [c for c in CHECKPOINT_COLUMNS if c not in BASE_STATE]
        _require(checkpoint, "checkpoint", ("Date", "Code", *CHECKPOINT_COLUMNS))
        ck = checkpoint.select(
            pl.col("Date").cast(pl.Date),
            pl.col("Code").cast(pl.String),
            pl.col("obs_count").alias("_ck_obs"),
            pl.col("px_close").alias("_ck_close"),
            pl.col("raw_close").alias("_ck_raw"),
            *states,
        )
        lf = lf.join(ck.lazy(), on=["Code", "Date"], how="left", maintain_order="left")
        # the checkpoint row is its code's first: its close carries on, its count goes on from it
        resumed_close, resumed_raw = pl.col("_ck_close"), pl.col("_ck_raw")
        rows_before = (pl.col("_ck_obs").first().over(by_code) - 1).fill_null(0.0)
    lf = lf.with_columns(
        pl.coalesce("AdjustmentClose", resumed_close).forward_fill().over(by_code).alias("px_close"),
        pl.coalesce("Close", resumed_raw).forward_fill().over(by_code).alias("raw_close"),
        pl.coalesce(vol, pl.lit(0.0)).cast(pl.Float64).alias("volume"),
        pl.col("TurnoverValue").fill_null(0.0).cast(pl.Float64).alias("turnover"),
        ((pl.int_range(pl.len()).over(by_code) + 1).cast(pl.Float64) + rows_before).alias("obs_count"),
    )
    lf = lf.with_columns(
        _adj("Open").alias("px_open"), _adj("High").alias("px_high"), _adj("Low").alias("px_low")
    )
    base = lf.collect(engine="in-memory")
    # sorted by (code_id, Date): a duplicate key is a row equal to the one before it
    dup = base.select((pl.col("code_id").diff() == 0) & (pl.col("Date").diff() == pl.duration(days=0)))
    if dup.to_series().any():
        first = base.filter(dup.to_series()).row(0, named=True)
        raise FeatureInputError(
            f"daily_quotes has duplicate (Code, Date) rows, e.g. Code {first['Code']} on {first['Date']}"
        )
    # The as-of joins group by the integer code_id rather than the Code strings (cheaper).
    code_map = base.select("Code", "code_id").unique("Code")
    lf = base.lazy()
    # sector and section
    if listed_info is not None:
        _require(listed_info, "listed_info", ("Code", "Sector33Code", "MarketCode"))
        li = (
            listed_info.select(
                pl.col("Date").cast(pl.Date)
                if "Date" in listed_info.columns
                else pl.lit(dt.date.min).alias("Date"),
                pl.col("Code").cast(pl.String),
                pl.col("Sector33Code").cast(pl.String),
                pl.col("MarketCode").cast(pl.String),
            )
            .unique(["Code", "Date"], keep="last")
            .join(code_map, on="Code", how="inner")
            .drop("Code")
            .sort("Date")
        )
        first = (
            li.group_by("code_id")
            .first()
            .select("code_id", pl.col("Sector33Code").alias("_s0"), pl.col("MarketCode").alias("_m0"))
        )
        # join_asof "by" needs each Code's rows sorted by Date, which (Code, Date) order gives.
        lf = (
            lf.join_asof(
                li.lazy().rename({"Date": "_li_date"}),
                left_on="Date",
                right_on="_li_date",
                by="code_id",
                strategy="backward",
                check_sortedness=False,
            )
            .join(first.lazy(), on="code_id", how="left", maintain_order="left")
            .with_columns(
                pl.coalesce("Sector33Code", "_s0").alias("Sector33Code"),
                pl.coalesce("MarketCode", "_m0").alias("MarketCode"),
            )
            .drop("_li_date", "_s0", "_m0")
        )
    else:
        lf = lf.with_columns(
            pl.lit(None, dtype=pl.String).alias("Sector33Code"),
            pl.lit(None, dtype=pl.String).alias("MarketCode"),
        )
    # market
    if topix is not None:
        _require(topix, "topix", ("Date", "Close"))
        tp = topix.select(
            pl.col("Date").cast(pl.Date), pl.col("Close").cast(pl.Float64).alias("mkt_close")
        ).unique("Date", keep="last")
        lf = lf.join(tp.lazy(), on="Date", how="left", maintain_order="left")
    else:
        lf = lf.with_columns(pl.lit(None, dtype=pl.Float64).alias("mkt_close"))
    # flows: helper FLOWS' attachment (stock -> its market's Section on that date, with fallback)
    if flows is not None and flows.height:
        if listed_info is None:
            raise FeatureInputError("flows need listed_info (MarketCode) to map stocks to Sections")
        from gogooku3.flows import attach_flows_to_stocks

        wanted = [
            c
            for c in FLOW_SOURCES.values()
            if c in flows.columns
            and c.startswith("flow_")
            and c not in ("flow_days_since_published", "flow_is_fresh")
        ]
        history = listed_info.select(
            pl.col("Date").cast(pl.Date)
            if "Date" in listed_info.columns
            else pl.lit(dt.date.min).alias("Date"),
            pl.col("Code").cast(pl.String),
            pl.col("MarketCode").cast(pl.String),
        )
        # attach re-sorts by (Date, Code); a row number brings its columns back in panel order.
        keys = base.select("Date", "Code").with_row_index("_row")
        attached = attach_flows_to_stocks(flows, history, panel=keys, columns=wanted).sort("_row")
        if attached.height != base.height:
            raise FeatureInputError(
                f"trades_spec_daily attachment returned {attached.height} rows for {base.height} stock-days"
            )
        picked = []
        for out, src in FLOW_SOURCES.items():
            col = pl.col(src).cast(pl.Float64) if src in attached.columns else pl.lit(None, dtype=pl.Float64)
            picked.append(col.alias(out))
        lf = pl.concat([lf, attached.lazy().select(picked)], how="horizontal")
    else:
        lf = lf.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in FLOW_SOURCES])
    # statements as of T+1 / 15:00
    asof = (
        statements_asof_table(statements) if statements is not None and statements.height else _empty_asof()
    )
    lf = _join_by_code(lf, asof, code_map)
    lf = _join_market_datasets(
        lf,
        base.select("Date").unique().sort("Date"),
        code_map,
        indices=indices,
        short_selling=short_selling,
        margin=weekly_margin_interest,
        earnings=earnings_calendar,
        dividends=dividends,
        futures=futures,
        options=index_option,
        alerts=daily_margin_interest,
        short_positions=short_selling_positions,
        topix=topix,
    )
    lf = lf.with_columns(
        (pl.col("Date").cast(pl.Int64) * 100_000 + pl.col("Sector33Code").cast(pl.Int64, strict=False)).alias(
            "date_sector"
        ),
    )
    joined = [c for c in BASE_COLUMNS if c not in PEER_COLUMNS]
    out = lf.select(*KEY_COLUMNS, *joined, *states).collect(engine="in-memory")
    out = out.with_columns(pl.col(c).cast(pl.Float64) for c in joined if c not in DATE_BASE_COLUMNS)
    t0 = time.perf_counter()
    peers = peer_columns(out, peers_since)
    if timings is not None:
        timings["peers_s"] = time.perf_counter() - t0
    return out.hstack(peers)


def _join_by_code(lf: pl.LazyFrame, table: pl.DataFrame, code_map: pl.DataFrame) -> pl.LazyFrame:
    """Each panel row gets the latest ``table`` row of its code with ``available <= Date``."""
    table = table.join(code_map, on="Code", how="inner").drop("Code").sort("available")
    # join_asof "by" needs each code's rows sorted by Date, which the panel's (Code, Date) order gives.
    return lf.join_asof(
        table.lazy(),
        left_on="Date",
        right_on="available",
        by="code_id",
        strategy="backward",
        check_sortedness=False,
    ).drop("available")


def _null(columns: list[str], dtype: pl.DataType = pl.Float64) -> list[pl.Expr]:
    return [pl.lit(None, dtype=dtype).alias(c) for c in columns]


def _join_market_datasets(
    lf: pl.LazyFrame,
    days: pl.DataFrame,
    code_map: pl.DataFrame,
    *,
    indices: pl.DataFrame | None,
    short_selling: pl.DataFrame | None,
    margin: pl.DataFrame | None,
    earnings: pl.DataFrame | None,
    dividends: pl.DataFrame | None,
    futures: pl.DataFrame | None,
    options: pl.DataFrame | None,
    alerts: pl.DataFrame | None,
    short_positions: pl.DataFrame | None,
    topix: pl.DataFrame | None,
) -> pl.LazyFrame:
    """The base columns of :mod:`gogooku3.features.asof`'s tables; an input that is None gives
    null columns."""
    from gogooku3.features import asof

    def renamed(table: pl.DataFrame, keep: tuple[str, ...]) -> pl.DataFrame:
        return table.rename({c: f"{c}_in" for c in table.columns if c not in keep})

    margin_cols = ["margin_long_in", "margin_short_in", "margin_net_wow_in", "margin_ratio_z_in"]
    if margin is not None and margin.height:
        lf = _join_by_code(lf, renamed(asof.margin_table(margin), ("Code", "available")), code_map)
    else:
        lf = lf.with_columns(_null(margin_cols))
    if earnings is not None and earnings.height:
        lf = _join_by_code(lf, asof.earnings_table(earnings), code_map).with_columns(
            pl.when(pl.col("earn_next_date") >= pl.col("Date"))
            .then(pl.col("earn_next_date"))
            .alias("earn_next_date")
        )
    else:
        lf = lf.with_columns(_null(["earn_next_date"], pl.Date))
    if dividends is not None and dividends.height:
        table = asof.dividends_table(dividends).rename({"div_fwd_amount": "div_fwd_amount_in"})
        lf = _join_by_code(lf, table, code_map)
    else:
        lf = lf.with_columns(
            *_null(["div_next_ex_date", "div_last_ex_date"], pl.Date), *_null(["div_fwd_amount_in"])
        )
    if alerts is not None and alerts.height:
        stale = pl.col("Date") - pl.col("alert_application_date") > pl.duration(days=asof.ALERT_STALE_DAYS)
        lf = _join_by_code(lf, asof.margin_alert_table(alerts), code_map).with_columns(
            pl.when(~stale).then(pl.col("alert_short_long")).alias("alert_short_long_in")
        )
    else:
        lf = lf.with_columns(_null(["alert_short_long_in"]))
    if short_positions is not None and short_positions.height:
        table = renamed(asof.short_positions_table(short_positions), ("Code", "available"))
        lf = _join_by_code(lf, table, code_map).with_columns(
            pl.col("short_pos_ratio_in", "short_pos_sellers_in").fill_null(0.0)  # none reported yet
        )
    else:
        lf = lf.with_columns(_null(["short_pos_ratio_in", "short_pos_sellers_in"]))
    # date-level tables, as of each panel day (the latest row usable on it), then an equi-join
    for table, columns in (
        (
            asof.futures_table(futures, topix)
            if futures is not None and futures.height and topix is not None
            else None,
            ["fut_overnight_ret_in", "fut_basis_z_in"],
        ),
        (
            asof.options_table(options) if options is not None and options.height else None,
            ["opt_atm_iv_30d_in", "opt_iv_term_slope_in", "opt_put_call_oi_in"],
        ),
    ):
        if table is None:
            lf = lf.with_columns(_null(columns))
            continue
        table = renamed(table, ("available",))
        grid = days.sort("Date").join_asof(table, left_on="Date", right_on="available").drop("available")
        lf = lf.join(grid.lazy(), on="Date", how="left", maintain_order="left")
    short_cols = ["short_share_in", "short_share_z_in", "short_share_mom_5d_in"]
    if short_selling is not None and short_selling.height:
        # as of each panel day per sector (a small grid), then an equi-join: the panel is not in
        # date order within a sector, which a join_asof "by" sector would need.
        table = renamed(asof.short_selling_table(short_selling), ("Sector33Code", "available"))
        grid = (
            days.join(table.select("Sector33Code").unique(), how="cross")
            .sort("Sector33Code", "Date")
            .join_asof(
                table.sort("available"),
                left_on="Date",
                right_on="available",
                by="Sector33Code",
                check_sortedness=False,
            )
            .drop("available")
        )
        lf = lf.join(grid.lazy(), on=["Sector33Code", "Date"], how="left", maintain_order="left")
    else:
        lf = lf.with_columns(_null(short_cols))
    if indices is not None and indices.height:
        table = asof.sector_index_table(indices)
        lf = lf.join(table.lazy(), on=["Sector33Code", "Date"], how="left", maintain_order="left")
    else:
        lf = lf.with_columns(_null(["sec_idx_close"]))
    regime_cols = ["mkt_drawdown_252d_in", "mkt_ret_z_252d_in", "mkt_vol_z_252d_in"]
    if topix is not None and topix.height:
        table = renamed(asof.market_regime_table(topix), ("Date",))
        lf = lf.join(table.lazy(), on="Date", how="left", maintain_order="left")
    else:
        lf = lf.with_columns(_null(regime_cols))
    return lf
