"""The lake shell of the gate: artifacts saved on pass and fail, latest good only advanced on pass."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from gogooku3.lake import MissingPartitionError, open_lake
from gogooku3.quality.gate import QualityGateFailed, expected_rows_from_listed_info, gate_partition

START, END = dt.date(2024, 1, 4), dt.date(2024, 2, 29)


@pytest.fixture(scope="module")
def market():
    from gogooku3.market import MarketConfig, generate_market

    return generate_market(MarketConfig(n_codes=60, start=START, end=END))


@pytest.fixture
def lake(tmp_path, market):
    lk = open_lake(str(tmp_path / "lake"))
    for d in market.trading_days[10:13]:
        lk.write_partition("raw", "listed_info", d, market.frame("listed_info", d), source="test")
    return lk


def test_pass_saves_artifacts_and_marks_good_then_fail_keeps_marker(lake, market):
    good_day, bad_day = market.trading_days[10], market.trading_days[11]
    lake.write_partition(
        "raw", "daily_quotes", good_day, market.frame("daily_quotes", good_day), source="test"
    )
    expected = expected_rows_from_listed_info(lake, good_day)
    assert expected == market.frame("listed_info", good_day).height

    outcome = gate_partition(lake, "raw", "daily_quotes", good_day, expected_rows=expected)
    assert outcome.result.passed
    arts = lake.list_artifacts("raw", "daily_quotes", good_day)
    assert "gx/validation.json" in arts and "gx/data_docs/index.html" in arts
    saved = json.loads(lake.read_artifact("raw", "daily_quotes", good_day, "gx/validation.json"))
    assert saved["success"] is True
    marker = lake.latest_good_marker("raw", "daily_quotes")
    assert marker is not None and marker.date == good_day
    assert marker.validation_ref == outcome.validation_uri

    # A later day with duplicated rows fails: artifacts saved, marker unchanged, message says why.
    q = market.frame("daily_quotes", bad_day)
    lake.write_partition("raw", "daily_quotes", bad_day, pl.concat([q, q.head(2)]), source="test")
    with pytest.raises(QualityGateFailed) as err:
        gate_partition(
            lake, "raw", "daily_quotes", bad_day, expected_rows=expected_rows_from_listed_info(lake, bad_day)
        )
    msg = str(err.value)
    assert "expect_compound_columns_to_be_unique(Date,Code): 4 of" in msg
    assert f"date={bad_day.isoformat()}" in msg
    assert not err.value.result.passed
    arts = lake.list_artifacts("raw", "daily_quotes", bad_day)
    assert "gx/validation.json" in arts and "gx/data_docs/index.html" in arts
    failed = json.loads(lake.read_artifact("raw", "daily_quotes", bad_day, "gx/validation.json"))
    assert failed["success"] is False
    assert lake.latest_good("raw", "daily_quotes") == good_day


def test_missing_partition_is_a_clear_error_and_saves_nothing(lake, market):
    day = market.trading_days[12]
    with pytest.raises(
        MissingPartitionError, match=f"raw/daily_quotes.*{day.isoformat()}|{day.isoformat()}.*does not exist"
    ):
        gate_partition(lake, "raw", "daily_quotes", day, build_docs=False)
    assert lake.list_artifacts("raw", "daily_quotes", day) == []
    assert lake.latest_good("raw", "daily_quotes") is None
