"""The lake shell: raw/interim partitions in, features/features/date=D partitions out."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.config import Settings
from gogooku3.features import OUTPUT_FEATURES, TARGET_NAMES, build_features, build_features_to_lake
from gogooku3.features.cli import build_command, summarize
from gogooku3.features.testing import market_inputs
from gogooku3.lake import MissingPartitionError, open_lake

START, END = dt.date(2022, 1, 4), dt.date(2022, 6, 30)


@pytest.fixture(scope="module")
def inputs():
    return market_inputs(15, START, END, seed=3)


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory, inputs):
    root = tmp_path_factory.mktemp("lake")
    lake = open_lake(str(root))
    for (day,), part in inputs.daily_quotes.partition_by("Date", as_dict=True).items():
        lake.write_partition("raw", "daily_quotes", day, part, source="test")
    for (day,), part in inputs.topix.partition_by("Date", as_dict=True).items():
        lake.write_partition("raw", "topix", day, part, source="test")
    for (day,), part in inputs.listed_info.partition_by("Date", as_dict=True).items():
        lake.write_partition("raw", "listed_info", day, part, source="test")
    for (day,), part in inputs.statements.partition_by("DisclosedDate", as_dict=True).items():
        lake.write_partition("raw", "statements", day, part, source="test")
    for (day,), part in inputs.flows.partition_by("Date", as_dict=True).items():
        lake.write_partition("interim", "trades_spec_daily", day, part, source="test")
    return root


def test_writes_one_partition_per_trading_day_equal_to_the_pure_build(lake_root, inputs, tmp_path):
    lake = open_lake(str(lake_root))
    start, end = dt.date(2022, 5, 9), dt.date(2022, 5, 20)
    manifests = build_features_to_lake(lake, start, end, "cpu")
    days = [m.date for m in manifests]
    assert days == sorted(
        inputs.daily_quotes.filter(pl.col("Date").is_between(start, end)).get_column("Date").unique()
    )
    back = lake.read_range("features", "features", start, end)
    assert set(OUTPUT_FEATURES) | set(TARGET_NAMES) <= set(back.columns)
    # the lake round trip equals the pure function over the same inputs (history read back to the start)
    pure = build_features(inputs.daily_quotes, **inputs.kwargs(), start=start, end=end)
    # the lake keeps each day sorted by Code; the build's own order is (Date, sector, Code)
    assert back.select(pure.columns).equals(pure.sort("Date", "Code"))
    # rerun: same bytes (idempotent)
    again = build_features_to_lake(lake, start, end, "cpu")
    assert [m.checksum for m in again] == [m.checksum for m in manifests]


def test_range_equals_concatenation_of_sub_ranges_in_the_lake(lake_root, tmp_path):
    lake = open_lake(str(lake_root))
    a, b, c = dt.date(2022, 6, 1), dt.date(2022, 6, 14), dt.date(2022, 6, 15)
    whole = pl.concat(
        [
            lake.read_partition("features", "features", m.date)
            for m in build_features_to_lake(lake, a, c, "cpu", with_targets=False)
        ]
    )
    parts = [
        build_features_to_lake(lake, a, b, "cpu", with_targets=False),
        build_features_to_lake(lake, c, c, "cpu", with_targets=False),
    ]
    split = pl.concat([lake.read_partition("features", "features", m.date) for ms in parts for m in ms])
    assert whole.equals(split)


def test_missing_input_range_is_named(lake_root):
    lake = open_lake(str(lake_root))
    with pytest.raises(MissingPartitionError, match="raw/daily_quotes has no partition between 2030-01-01"):
        build_features_to_lake(lake, dt.date(2030, 1, 1), dt.date(2030, 1, 31), "cpu")


def test_cli_build_command(lake_root):
    settings = Settings.from_env({})
    manifests = build_command(dt.date(2022, 6, 20), dt.date(2022, 6, 22), "cpu", str(lake_root), settings)
    assert [m.date for m in manifests] == [dt.date(2022, 6, 20), dt.date(2022, 6, 21), dt.date(2022, 6, 22)]
    assert "wrote 3 partitions 2022-06-20..2022-06-22" in summarize(manifests)
    with pytest.raises(ValueError, match="--engine 'fpga'"):
        build_command(dt.date(2022, 6, 20), dt.date(2022, 6, 22), "fpga", str(lake_root), settings)
    with pytest.raises(ValueError, match="--start 2022-06-22 is after --end"):
        build_command(dt.date(2022, 6, 22), dt.date(2022, 6, 20), "cpu", str(lake_root), settings)
