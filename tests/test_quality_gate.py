"""The quality gates catch each kind of bad data and say what failed (GX 1.x, in memory).

GX is slow to import and each run costs ~0.5-15 s depending on the suite's size, so the frames are
built once per module and the bad-data runs skip Data Docs rendering (``build_docs=False``) except
where the docs themselves are under test.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.jquants.datasets import get_dataset
from gogooku3.lake.layout import check_artifact_name
from gogooku3.quality.gate import GateResult, run_gate

START, END = dt.date(2024, 1, 4), dt.date(2024, 3, 29)


@pytest.fixture(scope="module")
def market():
    from gogooku3.market import MarketConfig, generate_market

    return generate_market(MarketConfig(n_codes=80, start=START, end=END))


@pytest.fixture(scope="module")
def day(market) -> dt.date:
    return market.trading_days[20]


@pytest.fixture(scope="module")
def quotes(market, day) -> pl.DataFrame:
    return market.frame("daily_quotes", day)


@pytest.fixture(scope="module")
def universe(market, day) -> int:
    return market.frame("listed_info", day).height


def _named(result: GateResult, expectation: str, column: str | None = None) -> str:
    """The summary line naming ``expectation`` (on ``column``); fails the test when there is none."""
    lines = result.summary_lines()
    want = f"{expectation}({column}" if column else expectation
    hits = [line for line in lines if want in line]
    assert hits, f"{want} not reported in:\n" + "\n".join(lines)
    return hits[0]


def test_clean_daily_quotes_pass_with_docs(quotes, day, universe):
    result = run_gate("daily_quotes", quotes, logical_date=day, expected_rows=universe)
    assert result.passed, "\n".join(result.summary_lines())
    assert result.failures == []
    stats = result.statistics
    assert stats["evaluated_expectations"] == stats["successful_expectations"] > 40
    assert result.summary_lines()[0].startswith("daily_quotes: PASSED")
    assert b"<html" in result.data_docs_html["index.html"].lower()
    assert any(k.startswith("validations/") for k in result.data_docs_html)
    assert result.result_json["success"] is True


def _dup(q, d):
    return pl.concat([q, q.head(4)])


def _null_burst(q, d):
    # 10% of the day's closes vanish (coverage needs >= 98%).
    return q.with_columns(
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col("Close")).alias("Close")
    )


def _future(q, d):
    return q.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(d + dt.timedelta(days=1)))
        .otherwise(pl.col("Date"))
        .alias("Date")
    )


def _negative_price(q, d):
    return q.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("Close")).alias("Close")
    )


@pytest.mark.parametrize(
    ("mutate", "expectation", "column", "detail"),
    [
        (_dup, "expect_compound_columns_to_be_unique", "Date,Code", "8 of"),
        (_null_burst, "expect_column_values_to_not_be_null", "Close", "needs >= 98%"),
        (_future, "expect_column_max_to_be_between", "Date", None),
        (
            lambda q, d: q.drop("LowerLimit"),
            "expect_table_columns_to_match_set",
            None,
            "missing ['LowerLimit']",
        ),
        (
            lambda q, d: q.with_columns(pl.col("Volume").cast(pl.String)),
            "expect_column_values_to_be_of_type",
            "Volume",
            "observed str",
        ),
        (
            lambda q, d: q.with_columns(pl.col("Date").cast(pl.Datetime("us"))),
            "expect_column_values_to_be_of_type",
            "Date",
            None,
        ),
        (_negative_price, "expect_column_values_to_be_between", "Close", "1 of"),
        (lambda q, d: q.head(q.height // 2), "expect_table_row_count_to_be_between", None, "observed"),
    ],
    ids=[
        "duplicates",
        "null_burst",
        "future_row",
        "dropped_column",
        "wrong_dtype",
        "datetime_for_date",
        "negative_price",
        "rows_short_of_universe",
    ],
)
def test_bad_daily_quotes_fail_and_say_what(quotes, day, universe, mutate, expectation, column, detail):
    result = run_gate(
        "daily_quotes", mutate(quotes, day), logical_date=day, expected_rows=universe, build_docs=False
    )
    assert not result.passed
    line = _named(result, expectation, column)
    if detail:
        assert detail in line, line
    assert result.summary_lines()[0].startswith("daily_quotes: FAILED")


def test_future_row_fails_against_logical_date_even_when_dates_are_consistent(quotes, day):
    # The whole frame is dated a day after the logical date: the calendar check alone would pass.
    nxt = day + dt.timedelta(days=1)
    result = run_gate(
        "daily_quotes",
        quotes.with_columns(pl.lit(nxt).alias("Date")),
        logical_date=day,
        expected_dates=[nxt],
        build_docs=False,
    )
    assert [f.expectation_type for f in result.failures] == ["expect_column_max_to_be_between"]
    assert nxt.isoformat() in _named(result, "expect_column_max_to_be_between", "Date")


def test_missing_trading_day_in_a_multi_day_frame(market):
    days = market.trading_days[30:33]
    frame = pl.concat([market.frame("daily_quotes", d) for d in (days[0], days[2])])
    result = run_gate("daily_quotes", frame, logical_date=days[2], build_docs=False)
    assert not result.passed
    line = _named(result, "expect_column_distinct_values_to_equal_set", "Date")
    assert f"missing ['{days[1].isoformat()}']" in line
    # The same frame with the day present passes the calendar check.
    full = pl.concat([market.frame("daily_quotes", d) for d in days])
    assert run_gate("daily_quotes", full, logical_date=days[2], build_docs=False).passed


# ------------------------------------------------------------------------------ features


@pytest.fixture(scope="module")
def features_day() -> pl.DataFrame:
    """One day of real feature-build output (200 codes, two years of history so windows are full)."""
    from gogooku3.features import build_features
    from gogooku3.features.testing import market_inputs

    end = dt.date(2024, 3, 29)
    mi = market_inputs(200, dt.date(2022, 1, 3), end)
    out = build_features(mi.daily_quotes, **mi.kwargs(), start=end, end=end)
    assert out.height > 150
    return out


def test_features_clean_pass_and_mature_mask_excludes_immature_rows(features_day):
    d = features_day.get_column("Date").max()
    # A null burst on rows the caller declares immature (e.g. the first days of new listings) is fine.
    immature = pl.int_range(pl.len()) % 4 == 0
    frame = features_day.with_columns(
        pl.when(immature).then(None).otherwise(pl.col("vol_20d")).alias("vol_20d")
    )
    mask = frame.select((~immature).alias("m")).get_column("m")
    result = run_gate(
        "features", frame, logical_date=d, expected_rows=frame.height, mature_mask=mask, build_docs=False
    )
    assert result.passed, "\n".join(result.summary_lines())


def test_features_bad_values_are_named(features_day):
    d = features_day.get_column("Date").max()
    row = pl.int_range(pl.len())
    bad = features_day.with_columns(
        pl.when(row == 5).then(11.0).otherwise(pl.col("ret_1d")).alias("ret_1d"),  # return > 10
        pl.when(row == 7).then(-1.5).otherwise(pl.col("target_ret_5d")).alias("target_ret_5d"),
        pl.when(row % 4 == 0).then(None).otherwise(pl.col("vol_20d")).alias("vol_20d"),  # null burst
        pl.col("rsi_14").cast(pl.Float64),  # wrong dtype: the features are stored as Float32
    )
    result = run_gate("features", bad, logical_date=d, build_docs=False)
    assert not result.passed
    assert "1 of" in _named(result, "expect_column_values_to_be_between", "ret_1d")
    assert "1 of" in _named(result, "expect_column_values_to_be_between", "target_ret_5d")
    assert "needs >= 98%" in _named(result, "expect_column_values_to_not_be_null", "vol_20d")
    assert "observed float64" in _named(result, "expect_column_values_to_be_of_type", "rsi_14")
    assert len(result.failures) == 4, result.summary_lines()


def test_a_conditional_expectation_counts_the_rows_its_condition_selects_and_nothing_else(features_day):
    """The gate validates each row condition's rows apart (gate._validate): what GX counts for a
    conditional coverage check is exactly the rows the suite's condition selects, and the merged
    validation result reads as one run of the suite (its order, each expectation's own kwargs)."""
    from gogooku3.quality.suites import load_suite

    suite = load_suite("features")
    (vol,) = [
        e for e in suite["expectations"] if e["kwargs"].get("column") == "vol_20d" and "mostly" in e["kwargs"]
    ]
    flag = vol["kwargs"]["row_condition"]["column"]["name"]
    d = features_day.get_column("Date").max()
    row = pl.int_range(pl.len())
    immature = row % 3 == 0  # declared immature: their nulls must not count
    missing = immature | (row % 10 == 1)  # plus every tenth row among the mature ones
    frame = features_day.with_columns(
        pl.when(immature).then(0).otherwise(pl.col(flag)).cast(features_day.schema[flag]).alias(flag),
        pl.when(missing).then(None).otherwise(pl.col("vol_20d")).alias("vol_20d"),
    )
    mature = frame.filter(pl.col(flag) == 1)
    result = run_gate("features", frame, logical_date=d)
    (failure,) = [f for f in result.failures if f.columns == ("vol_20d",)]
    assert failure.element_count == mature.height
    assert failure.unexpected_count == mature.get_column("vol_20d").null_count() > 0
    got = result.result_json["results"]
    assert [r["expectation_config"]["type"] for r in got] == [e["type"] for e in suite["expectations"]]
    keys = ("column", "row_condition", "mostly")
    assert [[r["expectation_config"]["kwargs"].get(k) for k in keys] for r in got] == [
        [e["kwargs"].get(k) for k in keys] for e in suite["expectations"]
    ]
    assert result.statistics["evaluated_expectations"] == len(suite["expectations"])
    # Data Docs: a page per part, each name one the lake stores as an artifact
    assert f"expectations/features__where__{flag}_eq_1.html" in result.data_docs_html
    for name in result.data_docs_html:
        check_artifact_name(f"gx/data_docs/{name}")


def test_a_conditional_table_expectation_counts_the_selected_rows_with_all_their_columns(tmp_path):
    """A row condition on a table-level expectation (no column of its own) and on a column check:
    each counts the rows the condition selects, nothing else (a stand-in suite under a known name)."""
    from gogooku3.quality.suites import suite_json

    x_is_1 = {"type": "comparison", "column": {"name": "x"}, "operator": "==", "parameter": 1}
    x_is_0 = {**x_is_1, "parameter": 0}
    suite = {
        "name": "daily_quotes",
        "expectations": [
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": 2, "max_value": 2, "row_condition": x_is_0},
                "meta": {},
            },
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "y", "mostly": 1.0, "row_condition": x_is_1},
                "meta": {},
            },
        ],
        "meta": {},
    }
    (tmp_path / "daily_quotes.json").write_text(suite_json(suite))
    day = dt.date(2024, 3, 29)
    frame = pl.DataFrame({"Date": [day] * 5, "x": [1, 1, 1, 0, 0], "y": [1.0, 2.0, 3.0, None, None]})
    ok = run_gate("daily_quotes", frame, logical_date=day, suites_dir=tmp_path, build_docs=False)
    assert ok.passed, ok.summary_lines()
    bad = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("y")).alias("y")
    )
    failed = run_gate("daily_quotes", bad, logical_date=day, suites_dir=tmp_path, build_docs=False)
    assert [f.columns for f in failed.failures] == [("y",)] and failed.failures[0].element_count == 3


# ------------------------------------------------------------------------------ market-wide raw datasets


@pytest.mark.parametrize(
    ("dataset", "day", "spoil", "expectation", "column"),
    [
        ("indices", END, pl.col("Low") * -1, "expect_column_values_to_be_between", "Low"),
        ("short_selling", END, pl.lit("9999"), "expect_column_values_to_be_in_set", "Sector33Code"),
        (
            "weekly_margin_interest",
            dt.date(2024, 3, 22),
            pl.lit(-5.0),
            "expect_column_values_to_be_between",
            "ShortMarginTradeVolume",
        ),
        (
            "earnings_calendar",
            dt.date(2024, 2, 1),
            pl.col("PublishedDate") - dt.timedelta(days=1),
            "expect_column_pair_values_a_to_be_greater_than_b",
            "Date,PublishedDate",
        ),
        ("dividends", dt.date(2024, 2, 13), pl.lit("4"), "expect_column_values_to_be_in_set", "StatusCode"),
        ("futures", END, pl.lit(-1.0), "expect_column_values_to_be_between", "SettlementPrice"),
        (
            "futures",
            END,
            pl.col("Date") - dt.timedelta(days=1),
            "expect_column_pair_values_a_to_be_greater_than_b",
            "LastTradingDay,Date",
        ),
        ("index_option", END, pl.lit("3"), "expect_column_values_to_be_in_set", "PutCallDivision"),
        (
            "daily_margin_interest",
            "FIRST",
            pl.lit(-100.0),
            "expect_column_values_to_be_between",
            "LongMarginOutstanding",
        ),
        (
            "short_selling_positions",
            "FIRST",
            pl.lit(120.0),
            "expect_column_values_to_be_between",
            "ShortPositionsToSharesOutstandingRatio",
        ),
        (
            "dividends",
            dt.date(2024, 2, 13),
            pl.lit("9:30"),
            "expect_column_values_to_match_regex",
            "AnnouncementTime",
        ),
        (
            "dividends",
            dt.date(2024, 2, 13),
            pl.col("ExDate") - dt.timedelta(days=1),
            "expect_column_pair_values_a_to_be_greater_than_b",
            "RecordDate,ExDate",
        ),
    ],
)
def test_market_wide_raw_partitions_pass_and_a_bad_value_is_named(
    market, dataset, day, spoil, expectation, column
):
    if day == "FIRST":  # a sparse dataset: its first day with rows
        day = market.derived(dataset).get_column(get_dataset(dataset).partition_by)[0]
    clean = market.derived(dataset, day, day)
    assert clean.height > 0
    assert run_gate(dataset, clean, logical_date=day, expected_dates=[day], build_docs=False).passed
    target = column.split(",")[0]
    bad = clean.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(spoil).otherwise(pl.col(target)).alias(target)
    )
    result = run_gate(dataset, bad, logical_date=day, expected_dates=[day], build_docs=False)
    assert not result.passed
    assert "1 of" in _named(result, expectation, column)


def test_an_empty_partition_of_a_weekly_dataset_passes_but_not_with_a_drifted_schema(market):
    """Weekly margin is partitioned by record date: the partition of another day is empty, which is
    not a failure (a column's max over no rows is left out), but its schema is still checked."""
    day = dt.date(2024, 3, 21)  # a Thursday: the week's record date is Friday
    empty = market.derived("weekly_margin_interest", day, day)
    assert empty.height == 0
    assert run_gate(
        "weekly_margin_interest", empty, logical_date=day, expected_dates=[], build_docs=False
    ).passed
    drifted = empty.with_columns(pl.col("IssueType").cast(pl.Int64))
    result = run_gate(
        "weekly_margin_interest", drifted, logical_date=day, expected_dates=[], build_docs=False
    )
    assert not result.passed
    _named(result, "expect_column_values_to_be_of_type", "IssueType")


# ------------------------------------------------------------------------------ trades_spec_daily


@pytest.fixture(scope="module")
def flows():
    from gogooku3.flows import expand_trades_spec
    from gogooku3.market import MarketConfig, generate_market

    m = generate_market(MarketConfig(n_codes=40, start=dt.date(2023, 1, 4), end=END))
    return expand_trades_spec(m.trades_spec(), dt.date(2024, 3, 25), END)


def test_trades_spec_daily_clean_and_bad(flows):
    clean = run_gate("trades_spec_daily", flows, logical_date=END, build_docs=False)
    assert clean.passed, "\n".join(clean.summary_lines())
    row = pl.int_range(pl.len())
    bad = flows.with_columns(
        pl.when(row == 0)
        .then(1.5)
        .otherwise(pl.col("flow_foreigners_net_ratio"))
        .alias("flow_foreigners_net_ratio"),
        pl.when(row == 1).then(pl.col("Date")).otherwise(pl.col("PublishedDate")).alias("PublishedDate"),
    )
    result = run_gate("trades_spec_daily", bad, logical_date=END, build_docs=False)
    assert not result.passed
    assert "1 of" in _named(result, "expect_column_values_to_be_between", "flow_foreigners_net_ratio")
    assert "1 of" in _named(result, "expect_column_pair_values_a_to_be_greater_than_b", "Date,PublishedDate")
