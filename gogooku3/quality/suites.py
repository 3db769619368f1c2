"""Expectation suites of the quality gates, kept as GX 1.x suite JSON in ``include/expectations/``.

The files are the source of truth the gate loads (:func:`load_suite`); this module is how they are
generated from the schemas they guard, so that a schema change and its suite change together
(regenerate with ``python -m gogooku3.quality.suites``; a test fails when a file has drifted).
Pure: no Great Expectations import here, only plain dicts in GX's serialised suite format.

Suites and what they check
--------------------------
``daily_quotes`` (``raw/daily_quotes``, schema :data:`gogooku3.jquants.datasets.DAILY_QUOTES`),
``trades_spec_daily`` (``interim/trades_spec_daily``, :data:`gogooku3.flows.OUTPUT_SCHEMA`) and
``features`` (``features/features``, ``include/features/catalogue.json`` plus the key columns):

* the exact column set and each column's dtype (Polars dtype -> the pandas dtype GX sees, see
  :data:`GX_TYPES`; the gate converts Polars to pandas nullable dtypes so widths survive);
* the key is unique (``expect_compound_columns_to_be_unique``, a one-column key
  ``expect_column_values_to_be_unique``) and never null;
* no row dated after the logical date (``max(Date) <= $logical_date``) and the set of dates is
  exactly ``$expected_dates`` (by default the JPX trading days the frame spans: a missing trading
  day inside a multi-day frame or a non-trading date fails);
* row count in ``[$min_rows, $max_rows]`` (the gate derives them from the expected universe and
  :data:`ROW_COUNT_TOLERANCE`);
* coverage: every value column non-null on at least :data:`COVERAGE` (98%) of its mature rows
  (``mostly``); maturity is a row condition stored with the expectation (features: the
  ``is_mature_<N>d`` flag covering the feature's whole lookback chain; flows: enough weeks for a
  z-score); documented exceptions are in :data:`FEATURE_COVERAGE_EXCEPTIONS`;
* value ranges: returns (``ret_*d``, ``target_ret_*``) within [-1, 10], prices positive, flow
  net ratios within [-1, 1] ...

``$NAME`` values are GX suite parameters, supplied by the gate at validation time.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from gogooku3.jquants.datasets import PRICE_COLUMNS

SUITES_DIR = Path(__file__).resolve().parents[2] / "include" / "expectations"
SUITE_NAMES: tuple[str, ...] = (
    "daily_quotes",
    "indices",
    "short_selling",
    "weekly_margin_interest",
    "earnings_calendar",
    "dividends",
    "futures",
    "index_option",
    "daily_margin_interest",
    "short_selling_positions",
    "trades_spec_daily",
    "features",
)

#: Minimum share of non-null values per column once mature.
COVERAGE = 0.98
#: Allowed relative deviation of the row count from the expected universe.
ROW_COUNT_TOLERANCE = 0.02
#: Returns (simple, not log) must lie in this closed interval.
RETURN_BOUNDS = (-1.0, 10.0)

#: Polars dtype name -> ``type_`` of ``expect_column_values_to_be_of_type`` as GX checks it on the
#: pandas frame the gate builds (nullable pandas dtypes; dates as ``datetime64[ms]``).
GX_TYPES: dict[str, str] = {
    "Float64": "float64",
    "Float32": "float32",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt8": "uint8",
    "UInt16": "uint16",
    "UInt32": "uint32",
    "UInt64": "uint64",
    "Boolean": "bool",
    "String": "str",
    "Date": "datetime64",
}

#: The suite parameters every suite takes (injected by :func:`gogooku3.quality.gate.run_gate`).
PARAMETERS: dict[str, str] = {
    "logical_date": "the run's logical date (ISO); no row may be dated after it",
    "expected_dates": "ISO dates the frame must cover exactly (default: trading days it spans)",
    "min_rows": "lower bound of the row count",
    "max_rows": "upper bound of the row count (null: unbounded)",
}

#: Features whose nulls are legitimate absence of data rather than immaturity: name ->
#: (``mostly`` or None for no coverage check, why). Kept explicit so a loosened rule is visible.
FEATURE_COVERAGE_EXCEPTIONS: dict[str, tuple[float | None, str]] = {
    "fin_dividend_yield": (None, "most statements carry no dividend figure; null is 'not disclosed'"),
    "fin_sales_growth": (0.90, "needs the statement of a year earlier (new listings have none)"),
    "fin_op_growth": (0.90, "needs the statement of a year earlier (new listings have none)"),
    "fin_profit_growth": (0.90, "needs the statement of a year earlier (new listings have none)"),
    "fin_eps_surprise": (0.90, "needs a forecast outstanding before the disclosure"),
    "fin_forecast_op_revision": (0.90, "needs the previous disclosure's forecast"),
    "fin_op_progress": (0.90, "needs a full-year forecast"),
    "amihud_20d": (0.85, "undefined while the 20-day window holds a day without turnover"),
    **{
        name: (0.85, "only margin and loan issues (MarginCode 1, 2) have margin balances")
        for name in (
            "margin_long_to_adv",
            "margin_short_to_adv",
            "margin_net_to_adv",
            "margin_net_wow_to_adv",
            "margin_short_long_ratio",
            "margin_ratio_z_52w",
        )
    },
    "earn_days_to_next": (None, "null while no earnings date is announced ahead (most days)"),
    "earn_pre_window_5d": (None, "null while no earnings date is announced ahead"),
    "div_days_to_ex": (
        None,
        "null while no ex-dividend date is known ahead (between a final and the next forecasts)",
    ),
    "div_ex_window_5d": (None, "null while no ex-dividend date is known ahead"),
    "div_days_since_ex": (
        None,
        "null before the code's first known ex-date (and for codes without dividends)",
    ),
    "div_fwd_yield": (None, "null while no decided dividend is known ahead"),
    "margin_alert_short_long": (None, "only the issues under daily margin publication have it"),
}

_MATURITY_TIERS = (5, 20, 60, 200)
_FLOW_MIN_WEEKS = 8  # gogooku3.flows.FlowHistory.min_weeks default


def _col(name: str) -> dict[str, Any]:
    return {"name": name}


def _cmp(column: str, op: str, value: Any) -> dict[str, Any]:
    """A GX 1.x row condition (``Column(column) <op> value``) in its serialised form."""
    return {"type": "comparison", "column": _col(column), "operator": op, "parameter": value}


def _and(*conditions: dict[str, Any]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"type": "and", "conditions": list(conditions)}


def _exp(gx_expectation: str, meta: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": gx_expectation, "kwargs": kwargs, "meta": dict(meta or {})}


def gx_type(polars_dtype: str | pl.DataType) -> str:
    """The GX ``type_`` for a Polars dtype (name or instance); ValueError when unsupported."""
    name = polars_dtype if isinstance(polars_dtype, str) else polars_dtype.base_type().__name__
    try:
        return GX_TYPES[name]
    except KeyError:
        raise ValueError(
            f"no GX type for Polars dtype {polars_dtype!r} (known: {', '.join(GX_TYPES)})"
        ) from None


def _common(
    columns: Mapping[str, str], key: tuple[str, ...], *, date_column: str = "Date"
) -> list[dict[str, Any]]:
    """Schema, key, date and row-count expectations shared by every suite."""
    out = [_exp("expect_table_columns_to_match_set", column_set=list(columns), exact_match=True)]
    out += [
        _exp("expect_column_values_to_be_of_type", {"polars_dtype": dtype}, column=name, type_=gx_type(dtype))
        for name, dtype in columns.items()
    ]
    if len(key) == 1:
        out.append(_exp("expect_column_values_to_be_unique", column=key[0]))
    else:
        out.append(_exp("expect_compound_columns_to_be_unique", column_list=list(key)))
    out += [_exp("expect_column_values_to_not_be_null", {"why": "key column"}, column=k) for k in key]
    out.append(
        _exp(
            "expect_column_max_to_be_between",
            {"why": "nothing dated after the run's logical date"},
            column=date_column,
            max_value={"$PARAMETER": "logical_date"},
        )
    )
    out.append(
        _exp(
            "expect_column_distinct_values_to_equal_set",
            {"why": "every expected trading day present, no other date"},
            column=date_column,
            value_set={"$PARAMETER": "expected_dates"},
        )
    )
    out.append(
        _exp(
            "expect_table_row_count_to_be_between",
            {"why": f"within {ROW_COUNT_TOLERANCE:.0%} of the expected universe"},
            min_value={"$PARAMETER": "min_rows"},
            max_value={"$PARAMETER": "max_rows"},
        )
    )
    return out


def _coverage(column: str, mostly: float = COVERAGE, condition: dict | None = None, why: str = "") -> dict:
    kwargs: dict[str, Any] = {"column": column, "mostly": mostly}
    if condition is not None:
        kwargs["row_condition"] = condition
    return _exp("expect_column_values_to_not_be_null", {"why": why or f"coverage >= {mostly:.0%}"}, **kwargs)


def _between(column: str, lo: float | None, hi: float | None, why: str, **extra: Any) -> dict:
    return _exp(
        "expect_column_values_to_be_between", {"why": why}, column=column, min_value=lo, max_value=hi, **extra
    )


def _suite(name: str, expectations: list[dict], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "expectations": expectations,
        "meta": {
            "gogooku3": {
                **meta,
                "parameters": PARAMETERS,
                "coverage": COVERAGE,
                "row_count_tolerance": ROW_COUNT_TOLERANCE,
            }
        },
        "notes": meta.get("notes"),
    }


def _names(schema: Mapping[str, pl.DataType]) -> dict[str, str]:
    return {c: dt.base_type().__name__ for c, dt in schema.items()}


# ------------------------------------------------------------------------------ daily_quotes


def daily_quotes_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import DAILY_QUOTES

    columns = _names(DAILY_QUOTES.schema)
    key = tuple(DAILY_QUOTES.key)
    exps = _common(columns, key)
    traded = _cmp("Volume", ">", 0)
    for c in columns:
        if c in key:
            continue
        if c in PRICE_COLUMNS:
            # Prices are null on days without trades (J-Quants): coverage counts traded rows only.
            exps.append(_coverage(c, condition=traded, why="prices present whenever the stock traded"))
        else:
            exps.append(_coverage(c))
    exps.append(
        _exp(
            "expect_column_value_lengths_to_equal",
            {"why": "J-Quants codes have 5 characters"},
            column="Code",
            value=5,
        )
    )
    for c in (*PRICE_COLUMNS, "AdjustmentFactor"):
        exps.append(_between(c, 0.0, None, "prices and factors are positive", strict_min=True))
    for c in ("Volume", "TurnoverValue", "AdjustmentVolume"):
        exps.append(_between(c, 0.0, None, "volumes are not negative"))
    exps.append(_a_at_least_b("High", "Low", "High >= Low"))
    return _suite(
        "daily_quotes",
        exps,
        {
            "layer": "raw",
            "dataset": "daily_quotes",
            "key": list(key),
            "default_min_rows": 1,
            "notes": "raw daily bars of one trading day",
        },
    )


# ------------------------------------------------------------------------------ market-wide raw datasets


def _raw_suite(name: str, checks: list[dict[str, Any]], *, min_rows: int, notes: str) -> dict[str, Any]:
    """A raw J-Quants dataset's suite: its canonical schema and key (from its dataset definition),
    the fields the API always answers covered, then the dataset's own value ``checks``. Dated by the
    dataset's partition column (the earnings calendar: the day it was published)."""
    from gogooku3.jquants.datasets import get_dataset

    dataset = get_dataset(name)
    columns = _names(dataset.schema)
    key = tuple(dataset.key)
    exps = _common(columns, key, date_column=dataset.partition_by)
    exps += [_coverage(c, why="a field the API always answers") for c in dataset.required if c not in key]
    return _suite(
        name,
        exps + checks,
        {
            "layer": "raw",
            "dataset": name,
            "key": list(key),
            "date_column": dataset.partition_by,
            "default_min_rows": min_rows,
            "notes": notes,
        },
    )


def _in_set(column: str, values: Iterable[str], why: str) -> dict[str, Any]:
    return _exp("expect_column_values_to_be_in_set", {"why": why}, column=column, value_set=sorted(values))


def _a_at_least_b(a: str, b: str, why: str) -> dict[str, Any]:
    return _exp(
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"why": why},
        column_A=a,
        column_B=b,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )


def indices_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import SECTOR_INDEX_CODES

    prices = ("Open", "High", "Low", "Close")
    return _raw_suite(
        "indices",
        [
            *(_between(c, 0.0, None, "index levels are positive", strict_min=True) for c in prices),
            _a_at_least_b("High", "Low", "High >= Low"),
            _in_set("Code", SECTOR_INDEX_CODES.values(), "the 33 sector indices this project fetches"),
        ],
        min_rows=1,
        notes="raw sector index bars of one trading day",
    )


def short_selling_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import SECTOR_33_CODES, SHORT_SELLING

    values = [c for c in SHORT_SELLING.schema if c.endswith("TurnoverValue")]
    return _raw_suite(
        "short_selling",
        [
            *(_between(c, 0.0, None, "turnover values are not negative") for c in values),
            _in_set("Sector33Code", SECTOR_33_CODES, "a TSE 33-sector code"),
        ],
        min_rows=1,
        notes="raw short selling turnover by sector of one trading day",
    )


def weekly_margin_interest_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import WEEKLY_MARGIN_INTEREST

    volumes = [c for c in WEEKLY_MARGIN_INTEREST.schema if c.endswith("MarginTradeVolume")]
    return _raw_suite(
        "weekly_margin_interest",
        [
            *(_between(c, 0.0, None, "margin balances are not negative") for c in volumes),
            _in_set("IssueType", ("1", "2", "3"), "1 margin issue, 2 loan issue, 3 other (J-Quants)"),
        ],
        min_rows=0,  # partitioned by record date: a day that is no week's last trading day has none
        notes="raw weekly margin balances of one record date (a week's last trading day)",
    )


def earnings_calendar_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import FISCAL_QUARTERS

    return _raw_suite(
        "earnings_calendar",
        [
            _a_at_least_b("Date", "PublishedDate", "an announcement date is published ahead of it"),
            _in_set("FiscalQuarter", FISCAL_QUARTERS.values(), "J-Quants' quarter names"),
        ],
        min_rows=0,  # a day the calendar announced nothing new
        notes="raw earnings announcement dates published on one day",
    )


def dividends_suite() -> dict[str, Any]:
    from gogooku3.jquants import datasets as d

    return _raw_suite(
        "dividends",
        [
            _in_set(
                "StatusCode",
                (d.DIVIDEND_NEW, d.DIVIDEND_REVISED, d.DIVIDEND_DELETED),
                "1 new, 2 revised, 3 deleted",
            ),
            _in_set("InterimFinalCode", (d.DIVIDEND_INTERIM, d.DIVIDEND_FINAL), "1 interim, 2 final"),
            _in_set("ForecastResultCode", (d.DIVIDEND_DECIDED, d.DIVIDEND_FORECAST), "1 decided, 2 forecast"),
            _between("GrossDividendRate", 0.0, None, "a dividend per share is not negative"),
            _a_at_least_b("RecordDate", "ExDate", "the ex-date comes before the record date"),
            _exp(
                "expect_column_values_to_match_regex",
                {"why": "J-Quants' time of the notice"},
                column="AnnouncementTime",
                regex=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
            ),
        ],
        min_rows=0,  # a day without dividend notices
        notes="raw dividend notices announced on one day",
    )


def daily_margin_interest_suite() -> dict[str, Any]:
    balances = [c for c in ("ShortMarginOutstanding", "LongMarginOutstanding")]
    return _raw_suite(
        "daily_margin_interest",
        [
            *(_between(c, 0.0, None, "margin balances are not negative") for c in balances),
            _a_at_least_b(
                "PublishedDate", "ApplicationDate", "balances are published after the day they apply to"
            ),
        ],
        min_rows=0,  # a day without daily-published issues
        notes="raw daily margin alerts published on one day",
    )


def short_selling_positions_suite() -> dict[str, Any]:
    return _raw_suite(
        "short_selling_positions",
        [
            _between(
                "ShortPositionsToSharesOutstandingRatio", 0.0, 100.0, "a percent of the shares outstanding"
            ),
            _a_at_least_b(
                "DisclosedDate", "CalculatedDate", "a position is disclosed after it was calculated"
            ),
        ],
        min_rows=0,  # a day without reports
        notes="raw short position reports disclosed on one day",
    )


def futures_suite() -> dict[str, Any]:
    prices = ("WholeDayClose", "NightSessionClose", "DaySessionClose", "SettlementPrice")
    return _raw_suite(
        "futures",
        [
            *(_between(c, 0.0, None, "futures prices are positive", strict_min=True) for c in prices),
            _between("Volume", 0.0, None, "volume is not negative"),
            _between("OpenInterest", 0.0, None, "open interest is not negative"),
            _a_at_least_b("WholeDayHigh", "WholeDayLow", "High >= Low"),
            _a_at_least_b("SpecialQuotationDay", "LastTradingDay", "the SQ day follows the last trading day"),
            _a_at_least_b("LastTradingDay", "Date", "no bar after its contract's last trading day"),
            _in_set("CentralContractMonthFlag", ("0", "1"), "1 marks the central contract month"),
        ],
        min_rows=1,
        notes="raw index futures bars of one trading day",
    )


def index_option_suite() -> dict[str, Any]:
    from gogooku3.jquants.datasets import OPTION_CALL, OPTION_PUT

    return _raw_suite(
        "index_option",
        [
            _between("StrikePrice", 0.0, None, "strikes are positive", strict_min=True),
            _between("SettlementPrice", 0.0, None, "settlement prices are positive", strict_min=True),
            _between("ImpliedVolatility", 0.0, 500.0, "implied volatility in percent, positive"),
            _between("OpenInterest", 0.0, None, "open interest is not negative"),
            _in_set("PutCallDivision", (OPTION_PUT, OPTION_CALL), "1 put, 2 call"),
            _a_at_least_b("LastTradingDay", "Date", "no bar after its series' last trading day"),
        ],
        min_rows=1,
        notes="raw Nikkei 225 option bars of one trading day",
    )


# ------------------------------------------------------------------------------ trades_spec_daily


def trades_spec_daily_suite() -> dict[str, Any]:
    from gogooku3.flows.expand import (
        INVESTOR_COLUMNS,
        NET_RATIO_COLUMNS,
        OUTPUT_SCHEMA,
        SMART_MONEY,
        SMART_MONEY_EXTREME,
        SMART_MONEY_WOW,
        Z_COLUMNS,
        Z_WEEKS,
    )

    columns = _names(OUTPUT_SCHEMA)
    key = ("Date", "Section")
    exps = _common(columns, key)
    enough = _cmp(Z_WEEKS, ">=", _FLOW_MIN_WEEKS)
    two = _cmp(Z_WEEKS, ">=", 2)
    for c in columns:
        if c in key:
            continue
        if c in Z_COLUMNS or c == SMART_MONEY_EXTREME:
            exps.append(_coverage(c, condition=enough, why=f"z-scores exist once >= {_FLOW_MIN_WEEKS} weeks"))
        elif c == SMART_MONEY_WOW:
            exps.append(_coverage(c, condition=two, why="needs a previous week"))
        else:
            exps.append(_coverage(c))
    for c in NET_RATIO_COLUMNS:
        exps.append(_between(c, -1.0, 1.0, "net buying / gross trading value"))
    exps.append(_between(SMART_MONEY, -2.0, 2.0, "difference of two net ratios"))
    exps.append(_between("days_since_published", 1, None, "1 on the first usable day"))
    for c in INVESTOR_COLUMNS:
        if c.endswith(("Sales", "Purchases", "Total")):
            exps.append(_between(c, 0.0, None, "gross trading values are not negative"))
    exps.append(
        _exp(
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"why": "published strictly before use"},
            column_A="Date",
            column_B="PublishedDate",
            or_equal=False,
            ignore_row_if="either_value_is_missing",
        )
    )
    return _suite(
        "trades_spec_daily",
        exps,
        {
            "layer": "interim",
            "dataset": "trades_spec_daily",
            "key": list(key),
            # Every trading day after the first published week carries that week's sections; the
            # days before it (a fresh lake) are empty and are not gated (tasks.gate_trades_spec).
            "default_min_rows": 1,
            "notes": "weekly investor flows expanded to trading days",
        },
    )


# ------------------------------------------------------------------------------ features


def feature_lookbacks() -> dict[str, int]:
    """Rows of a code's history each output feature reads, through its whole input chain.

    ``include/features/catalogue.json`` lists each feature's own window only; the maturity a
    coverage check needs is the longest chain (e.g. a 5-day change of a 20-day volatility of
    1-day returns reads 26 rows), so it is computed from :mod:`gogooku3.features.catalogue`.
    """
    from gogooku3.features.catalogue import FEATURES

    by_name = {f.name: f for f in FEATURES}
    memo: dict[str, int] = {}

    from gogooku3.features.prepare import BASE_HISTORY

    def chain(name: str) -> int:
        if name not in by_name:
            return BASE_HISTORY.get(name, 1) - 1  # a base column: rows before its first value
        if name not in memo:
            f = by_name[name]
            memo[name] = f.lookback + max((chain(i) for i in f.inputs), default=0)
        return memo[name]

    return {f.name: chain(f.name) for f in FEATURES if f.output}


def fundamentals_dependents() -> frozenset[str]:
    """Output features whose input chain reads a ``fundamentals`` feature (e.g. ``cs_z_fin_roe``).

    Like the fundamentals themselves, they exist only once a code has a usable statement, so their
    coverage is counted where ``fin_available == 1``.
    """
    from gogooku3.features.catalogue import FEATURES

    by_name = {f.name: f for f in FEATURES}
    memo: dict[str, bool] = {}

    def reads(name: str) -> bool:
        if name not in by_name:
            return False  # base column
        if name not in memo:
            f = by_name[name]
            memo[name] = f.group == "fundamentals" or any(reads(i) for i in f.inputs)
        return memo[name]

    return frozenset(f.name for f in FEATURES if f.output and reads(f.name))


def maturity_flag(lookback: int) -> str | None:
    """The ``is_mature_<N>d`` flag whose rows have the whole lookback (N > lookback), if any is needed."""
    if lookback <= 0:
        return None
    for tier in _MATURITY_TIERS:
        if tier > lookback:
            return f"is_mature_{tier}d"
    return f"is_mature_{_MATURITY_TIERS[-1]}d"


def features_suite(
    catalogue: Iterable[Mapping[str, Any]] | None = None,
    lookbacks: Mapping[str, int] | None = None,
    fundamental: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The features suite from catalogue records (``include/features/catalogue.json``'s ``features``).

    Minimal interface: each record needs ``name``, ``kind`` (``feature``/``target``), ``group`` and
    ``dtype``; ``lookbacks`` maps a feature to the rows of history it reads (default: computed by
    :func:`feature_lookbacks`, else the record's ``window``); ``fundamental`` names the features
    that read statements (default: :func:`fundamentals_dependents`, else the ``fundamentals`` group).
    """
    if catalogue is None:
        from gogooku3.features.catalogue import CATALOGUE_PATH

        catalogue = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))["features"]
        lookbacks = feature_lookbacks() if lookbacks is None else lookbacks
        fundamental = fundamentals_dependents() if fundamental is None else fundamental
    records = list(catalogue)
    lookbacks = dict(lookbacks or {})
    keys = {"Date": "Date", "Code": "String", "Sector33Code": "String", "MarketCode": "String"}
    columns = {**keys, **{r["name"]: r["dtype"] for r in records}}
    key = ("Code", "Date")
    exps = _common(columns, key)
    exps.append(
        _exp(
            "expect_column_value_lengths_to_equal",
            {"why": "J-Quants codes have 5 characters"},
            column="Code",
            value=5,
        )
    )
    names = {r["name"] for r in records}
    reads_statements = (
        set(fundamental)
        if fundamental is not None
        else {r["name"] for r in records if r["group"] == "fundamentals"}
    )
    for r in records:
        name = r["name"]
        if r["kind"] == "target":
            # Targets read future rows: null for the last h days by construction, so no coverage.
            if name.startswith("target_ret_"):
                exps.append(_between(name, *RETURN_BOUNDS, "returns within [-1, 10]"))
            continue
        lookback = lookbacks.get(name, r.get("window") or 0)
        conds = []
        flag = maturity_flag(lookback)
        if flag is not None and flag in names:
            conds.append(_cmp(flag, "==", 1))
        if name in reads_statements and name != "fin_available" and "fin_available" in names:
            conds.append(_cmp("fin_available", "==", 1))
        mostly, why = COVERAGE, f"coverage >= {COVERAGE:.0%} once mature (lookback {lookback} rows)"
        if name in FEATURE_COVERAGE_EXCEPTIONS:
            mostly, reason = FEATURE_COVERAGE_EXCEPTIONS[name]
            why = f"exception: {reason}"
        if mostly is not None:
            exps.append(_coverage(name, mostly, _and(*conds) if conds else None, why))
        if name.startswith("ret_") and name.endswith("d") and name[4:-1].isdigit():
            exps.append(_between(name, *RETURN_BOUNDS, "returns within [-1, 10]"))
    return _suite(
        "features",
        exps,
        {
            "layer": "features",
            "dataset": "features",
            "key": list(key),
            "default_min_rows": 1,
            "notes": "generated from include/features/catalogue.json",
        },
    )


BUILDERS = {
    "daily_quotes": daily_quotes_suite,
    "indices": indices_suite,
    "short_selling": short_selling_suite,
    "weekly_margin_interest": weekly_margin_interest_suite,
    "earnings_calendar": earnings_calendar_suite,
    "dividends": dividends_suite,
    "daily_margin_interest": daily_margin_interest_suite,
    "short_selling_positions": short_selling_positions_suite,
    "futures": futures_suite,
    "index_option": index_option_suite,
    "trades_spec_daily": trades_spec_daily_suite,
    "features": features_suite,
}


def suite_json(suite: Mapping[str, Any]) -> str:
    return json.dumps(suite, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def suite_path(name: str, directory: Path = SUITES_DIR) -> Path:
    if name not in SUITE_NAMES:
        raise KeyError(f"unknown expectation suite {name!r}; known: {', '.join(SUITE_NAMES)}")
    return directory / f"{name}.json"


def load_suite(name: str, directory: Path = SUITES_DIR) -> dict[str, Any]:
    """The suite dict as stored in ``include/expectations/<name>.json`` (the source of truth)."""
    path = suite_path(name, directory)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"expectation suite file {path} is missing; regenerate with python -m gogooku3.quality.suites"
        ) from None


def write_suites(directory: Path = SUITES_DIR) -> list[Path]:
    """Regenerate every suite file (atomically per file)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SUITE_NAMES:
        path = suite_path(name, directory)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(suite_json(BUILDERS[name]()), encoding="utf-8")
        tmp.replace(path)
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover - python -m gogooku3.quality.suites [DIR]
    for p in write_suites(Path(sys.argv[1]) if len(sys.argv) > 1 else SUITES_DIR):
        print(p)
