"""Quarterly financial statements (kessan tanshin summaries) of the synthetic market.

Each company has a fiscal year ending in March (most), December, September or June and
discloses four times a year: 1Q/2Q/3Q about 30-45 days after the quarter end, FY 40-50 days
after the year end, on a trading day, at a time drawn from 11:30 to 17:00 JST (many at
15:00:00 or later, which counts as disclosed the next trading day). Values are cumulative from
the fiscal year start (a 2Q Profit covers two quarters), as J-Quants serves them. About 8% of
company-years also carry an ``EarnForecastRevision`` with only forecast fields.

The latent return on equity of each company-year drives Profit; the *published* ROE
(``Profit * 4 / quarters_elapsed / Equity``) is one of the planted return predictors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from gogooku3.jquants.datasets import STATEMENTS

DISCLOSURE_TIMES = ("11:30:00", "13:00:00", "14:00:00", "15:00:00", "15:30:00", "16:00:00", "17:00:00")
_TIME_P = np.array([0.05, 0.08, 0.07, 0.35, 0.25, 0.12, 0.08])
#: A statement disclosed at or after this time is only known at the next trading day's close.
CLOSE_TIME = "15:00:00"
_KINDS = ("Consolidated_JP", "NonConsolidated_JP", "Consolidated_IFRS")
_FY_END_MONTHS = np.array([3, 12, 9, 6])
_FY_END_P = np.array([0.70, 0.15, 0.10, 0.05])


@dataclass(frozen=True)
class Universe:
    """What the statements need to know about the listed companies."""

    codes: np.ndarray  # str, (N,)
    list_date: np.ndarray  # datetime64[D], (N,)
    delist_date: np.ndarray  # datetime64[D], (N,); far future when never delisted
    cap0: np.ndarray  # initial market cap, yen
    shares: np.ndarray  # shares outstanding in pre-split units


#: Statement values a revision-only disclosure leaves empty (results), and its forecasts.
_RESULT_FIELDS = (
    "NetSales",
    "OperatingProfit",
    "OrdinaryProfit",
    "Profit",
    "EarningsPerShare",
    "TotalAssets",
    "Equity",
    "EquityToAssetRatio",
    "BookValuePerShare",
    "CashFlowsFromOperatingActivities",
    "ResultDividendPerShareAnnual",
)
_FORECAST_FIELDS = (
    "ForecastNetSales",
    "ForecastOperatingProfit",
    "ForecastProfit",
    "ForecastEarningsPerShare",
)


def _month_end(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Last day of (year, month), vectorised; month may exceed 12 (rolls into next years)."""
    y = year + (month - 1) // 12
    m = (month - 1) % 12 + 1
    first_next = (y - 1970) * 12 + m  # months since 1970-01 of the month after
    return (first_next.astype("datetime64[M]").astype("datetime64[D]")) - np.timedelta64(1, "D")


def generate_statements(
    rng: np.random.Generator,
    uni: Universe,
    days: tuple[dt.date, ...],
    split_cum: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> pl.DataFrame:
    """All statements disclosed on trading days in ``days`` while the company was listed.

    ``split_cum(code_idx, dates)`` gives the cumulative split factor in force on each date (to
    express share counts in the share units of that date). Sorted by DisclosureNumber, which is
    ``YYYYMMDD`` + a 6-digit sequence in (DisclosedDate, DisclosedTime, Code) order.
    """
    n = len(uni.codes)
    if n == 0 or not days:
        return pl.DataFrame(schema=STATEMENTS.schema)
    day_arr = np.array(days, dtype="datetime64[D]")
    first, last = day_arr[0], day_arr[-1]
    fy_end_month = rng.choice(_FY_END_MONTHS, size=n, p=_FY_END_P)
    kind = rng.choice(len(_KINDS), size=n, p=[0.75, 0.15, 0.10])
    pb = np.exp(rng.normal(np.log(1.2), 0.5, n))
    margin = rng.uniform(0.03, 0.2, n)
    eq_ratio = rng.uniform(0.2, 0.7, n)
    roe_level = np.clip(rng.normal(0.08, 0.06, n), -0.2, 0.35)
    equity0 = uni.cap0 / pb

    year0 = int(str(first)[:4]) - 1
    year1 = int(str(last)[:4]) + 1
    cols: dict[str, list[np.ndarray]] = {}

    def add(**arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            cols.setdefault(k, []).append(v)

    idx = np.arange(n)
    for y in range(year0, year1 + 1):
        fy_end = _month_end(np.full(n, y), fy_end_month)
        fy_start = _month_end(np.full(n, y - 1), fy_end_month) + np.timedelta64(1, "D")
        years_in = y - year0
        roe = np.clip(roe_level + rng.normal(0.0, 0.03, n), -0.4, 0.5)
        equity = equity0 * (1.0 + 0.6 * np.clip(roe_level, 0, None)) ** years_in
        profit_annual = roe * equity
        op_annual = profit_annual / 0.68
        # operating margin of 3-20% on sales; sales never below 20% of equity
        sales = np.maximum(np.abs(op_annual) / margin, 0.2 * equity)
        forecast_noise = rng.normal(0.0, 0.05, n)
        next_forecast_noise = rng.normal(0.0, 0.08, n)
        cum_noise = np.exp(rng.normal(0.0, 0.05, (4, n)))
        lags = np.stack([rng.integers(30, 46, n), rng.integers(30, 46, n), rng.integers(30, 46, n),
                         rng.integers(40, 51, n)])  # fmt: skip
        times = rng.choice(len(DISCLOSURE_TIMES), size=(5, n), p=_TIME_P)
        for q in range(1, 5):
            period_end = _month_end(np.full(n, y - 1), fy_end_month + 3 * q)
            disclosed = period_end + lags[q - 1].astype("timedelta64[D]")
            frac = q / 4.0
            shares_pub = uni.shares / split_cum(idx, period_end)
            profit = profit_annual * frac * cum_noise[q - 1]
            op = op_annual * frac * cum_noise[q - 1]
            net_sales = sales * frac * np.exp(rng.normal(0.0, 0.03, n))
            q_equity = equity * (1.0 + roe * frac * 0.6)
            assets = q_equity / eq_ratio
            is_fy = q == 4
            # the FY disclosure forecasts the next year; earlier ones forecast this year
            f_scale = (1.0 + roe_level * 0.3 + next_forecast_noise) if is_fy else (1.0 + forecast_noise)
            f_profit = profit_annual * f_scale
            add(
                code_idx=idx,
                disclosed=disclosed,
                time_idx=times[q - 1],
                q=np.full(n, q),
                doc=np.full(n, 0),
                period_start=fy_start,
                period_end=period_end,
                fy_start=fy_start,
                fy_end=fy_end,
                NetSales=np.round(net_sales, -6),
                OperatingProfit=np.round(op, -6),
                OrdinaryProfit=np.round(op * 1.04, -6),
                Profit=np.round(profit, -6),
                EarningsPerShare=np.round(np.round(profit, -6) / shares_pub, 2),
                TotalAssets=np.round(assets, -6),
                Equity=np.round(q_equity, -6),
                EquityToAssetRatio=np.round(np.round(q_equity, -6) / np.round(assets, -6), 3),
                BookValuePerShare=np.round(q_equity / shares_pub, 2),
                CashFlowsFromOperatingActivities=(
                    np.round(profit * rng.uniform(0.8, 1.6, n), -6) if q in (2, 4) else np.full(n, np.nan)
                ),
                ForecastNetSales=np.round(sales * f_scale, -6),
                ForecastOperatingProfit=np.round(op_annual * f_scale, -6),
                ForecastProfit=np.round(f_profit, -6),
                ForecastEarningsPerShare=np.round(f_profit / shares_pub, 2),
                ResultDividendPerShareAnnual=(
                    np.round(np.clip(profit, 0, None) * 0.3 / shares_pub, 1) if is_fy else np.full(n, np.nan)
                ),
                Shares=np.round(shares_pub),
            )
        # forecast revisions, disclosed some weeks after the 2Q results
        revise = rng.random(n) < 0.08
        period_end_2q = _month_end(np.full(n, y - 1), fy_end_month + 6)
        rev_date = period_end_2q + rng.integers(50, 80, n).astype("timedelta64[D]")
        r_scale = 1.0 + rng.normal(0.0, 0.15, n)
        nan = np.full(n, np.nan)
        shares_pub = uni.shares / split_cum(idx, rev_date)
        sel = np.nonzero(revise)[0]
        add(
            code_idx=idx[sel],
            disclosed=rev_date[sel],
            time_idx=times[4][sel],
            q=np.full(len(sel), 4),
            doc=np.full(len(sel), 1),
            period_start=fy_start[sel],
            period_end=fy_end[sel],
            fy_start=fy_start[sel],
            fy_end=fy_end[sel],
            **{k: nan[sel] for k in (*_RESULT_FIELDS, "Shares")},
            ForecastNetSales=np.round(sales * r_scale, -6)[sel],
            ForecastOperatingProfit=np.round(op_annual * r_scale, -6)[sel],
            ForecastProfit=np.round(profit_annual * r_scale, -6)[sel],
            ForecastEarningsPerShare=np.round(profit_annual * r_scale / shares_pub, 2)[sel],
        )

    c = {k: np.concatenate(v) for k, v in cols.items()}
    # disclose on the next trading day when the date is closed; keep listed, in-range ones
    pos = np.searchsorted(day_arr, c["disclosed"], side="left")
    inside = pos < len(day_arr)
    pos_c = np.minimum(pos, len(day_arr) - 1)
    disclosed = day_arr[pos_c]
    ci = c["code_idx"]
    keep = (
        inside
        & (c["disclosed"] >= first)
        & (disclosed >= uni.list_date[ci])
        & (disclosed < uni.delist_date[ci])
    )
    k = np.nonzero(keep)[0]
    ci = ci[k]
    q = c["q"][k]
    doc = c["doc"][k]
    kinds = np.array(_KINDS)[kind[ci]]
    qlabel = np.array(["", "1Q", "2Q", "3Q", "FY"])[q]
    doc_type = np.where(
        doc == 1,
        "EarnForecastRevision",
        np.char.add(np.char.add(qlabel, "FinancialStatements_"), kinds),
    )
    df = pl.DataFrame(
        {
            "DisclosedDate": disclosed[k],
            "DisclosedTime": np.array(DISCLOSURE_TIMES)[c["time_idx"][k]],
            "Code": uni.codes[ci],
            "TypeOfDocument": doc_type,
            "TypeOfCurrentPeriod": qlabel,
            "CurrentPeriodStartDate": c["period_start"][k],
            "CurrentPeriodEndDate": c["period_end"][k],
            "CurrentFiscalYearStartDate": c["fy_start"][k],
            "CurrentFiscalYearEndDate": c["fy_end"][k],
            **{name: c[name][k] for name in (*_RESULT_FIELDS, *_FORECAST_FIELDS)},
            "NumberOfIssuedAndOutstandingSharesAtTheEndOfFiscalYearIncludingTreasuryStock": c["Shares"][k],
        },
        nan_to_null=True,
    )
    df = df.with_columns(pl.col(pl.Date).cast(pl.Date)).sort(
        "DisclosedDate", "DisclosedTime", "Code", "TypeOfDocument"
    )
    seq = pl.int_range(1, pl.len() + 1).over("DisclosedDate")
    df = df.with_columns(
        (pl.col("DisclosedDate").dt.strftime("%Y%m%d") + seq.cast(pl.String).str.zfill(6)).alias(
            "DisclosureNumber"
        )
    )
    return df.select([pl.col(f.name).cast(f.dtype) for f in STATEMENTS.fields])


def published_roe(statements: pl.DataFrame) -> pl.DataFrame:
    """Annualised ROE of each full statement: ``Profit * 4 / quarters elapsed / Equity``."""
    quarters = pl.col("TypeOfCurrentPeriod").replace_strict(
        {"1Q": 1, "2Q": 2, "3Q": 3, "FY": 4}, default=None
    )
    return statements.filter(
        pl.col("Profit").is_not_null() & pl.col("Equity").is_not_null() & (pl.col("Equity") > 0)
    ).with_columns((pl.col("Profit") * 4.0 / quarters / pl.col("Equity")).alias("ROE"))
