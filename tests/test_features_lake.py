"""The lake shell: raw/interim partitions in, features/features/date=D partitions out."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from gogooku3.config import Settings
from gogooku3.features import OUTPUT_FEATURES, TARGET_NAMES, build_features, build_features_to_lake
from gogooku3.features.job import run_build, summarize
from gogooku3.features.testing import market_inputs
from gogooku3.lake import MissingPartitionError, open_lake

START, END = dt.date(2022, 1, 4), dt.date(2022, 6, 30)


@pytest.fixture(scope="module")
def inputs():
    return market_inputs(15, START, END, seed=3)


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory, inputs):
    root = tmp_path_factory.mktemp("lake")
    inputs.write_to(open_lake(str(root)))
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


def test_cli_run_build(lake_root):
    settings = Settings.from_env({})
    manifests = run_build(dt.date(2022, 6, 20), dt.date(2022, 6, 22), "cpu", str(lake_root), settings)
    assert [m.date for m in manifests] == [dt.date(2022, 6, 20), dt.date(2022, 6, 21), dt.date(2022, 6, 22)]
    assert "wrote 3 partitions 2022-06-20..2022-06-22" in summarize(manifests)
    with pytest.raises(ValueError, match="--engine 'fpga'"):
        run_build(dt.date(2022, 6, 20), dt.date(2022, 6, 22), "fpga", str(lake_root), settings)
    with pytest.raises(ValueError, match="--start 2022-06-22 is after --end"):
        run_build(dt.date(2022, 6, 22), dt.date(2022, 6, 20), "cpu", str(lake_root), settings)


@pytest.mark.parametrize(
    ("layer", "dataset", "how"),
    [
        ("raw", "daily_quotes", "partition"),
        ("raw", "daily_quotes", "manifest"),
        ("raw", "topix", "partition"),
        ("interim", "trades_spec_daily", "partition"),
    ],
    ids=["quotes-partition-removed", "quotes-manifest-removed", "topix-removed", "flows-removed"],
)
def test_a_missing_window_day_fails_before_anything_is_written(lake_root, tmp_path, layer, dataset, how):
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(lake_root, root)
    hole = dt.date(2022, 5, 11)  # a Wednesday inside the history of the built range
    folder = root / layer / dataset / f"date={hole.isoformat()}"
    if how == "manifest":
        (folder / "_manifest.json").unlink()
    else:
        shutil.rmtree(folder)
    lake = open_lake(str(root))
    before = lake.list_partitions("features", "features")
    with pytest.raises(MissingPartitionError) as err:
        build_features_to_lake(lake, dt.date(2022, 6, 1), dt.date(2022, 6, 3), "cpu")
    message = str(err.value)
    assert f"{layer}/{dataset} is missing 1 trading day(s): {hole.isoformat()}" in message
    assert ("(data file without manifest)" in message) == (how == "manifest")
    assert lake.list_partitions("features", "features") == before


def test_a_range_beyond_the_last_bars_builds_the_days_that_have_them(lake_root, tmp_path):
    """A trades_spec event's range runs through the next publication day; days without bars yet are
    not needed by any window and get no partition."""
    lake = open_lake(str(lake_root))
    manifests = build_features_to_lake(lake, dt.date(2022, 6, 29), dt.date(2022, 7, 8), "cpu")
    assert [m.date for m in manifests] == [dt.date(2022, 6, 29), dt.date(2022, 6, 30)]


def test_the_cli_names_the_missing_day_and_writes_nothing(lake_root, tmp_path):
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(lake_root, root)
    shutil.rmtree(root / "raw" / "daily_quotes" / "date=2022-05-11")
    before = open_lake(str(root)).list_partitions("features", "features")
    cli = str(Path(sys.executable).with_name("gogooku3"))
    args = ["features", "build", "--start", "2022-06-01", "--end", "2022-06-03", "--lake", str(root)]
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "raw/daily_quotes is missing 1 trading day(s): 2022-05-11" in proc.stderr
    assert open_lake(str(root)).list_partitions("features", "features") == before


def test_the_cli_says_which_history_it_read(inputs, tmp_path):
    root = tmp_path / "lake"
    inputs.write_to(open_lake(str(root)))
    cli = str(Path(sys.executable).with_name("gogooku3"))

    def build(start: str, end: str) -> subprocess.CompletedProcess:
        args = ["features", "build", "--start", start, "--end", end, "--lake", str(root)]
        proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc

    backfill = build("2022-03-28", "2022-06-29")  # too little history to resume: the whole, and why
    assert "reading daily_quotes from 2022-01-04, the whole history (" in backfill.stderr
    assert "before 2022-03-28, a checkpoint needs more than 60)" in backfill.stderr
    assert "features: built " in backfill.stderr  # the timings line
    daily = build("2022-06-30", "2022-06-30")
    assert "resuming from the checkpoint of 2022-04-0" in daily.stderr, daily.stderr
    assert "features: wrote 1 partitions 2022-06-30..2022-06-30" in daily.stdout
