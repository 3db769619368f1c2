"""raw/trades_spec -> interim/trades_spec_daily through a real local lake."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.config import Settings
from gogooku3.flows import OUTPUT_SCHEMA, TradesSpecCoverageError, expand_trades_spec
from gogooku3.flows.io import expand_to_lake
from gogooku3.flows.job import run_expansion, summarize
from gogooku3.flows.synthetic import synthetic_raw
from gogooku3.lake import open_lake

D = dt.date


@pytest.fixture
def lake_with_raw(tmp_path: Path):
    lake = open_lake(tmp_path / "lake")
    raw = synthetic_raw(D(2021, 10, 1), D(2022, 6, 30), seed=3, revision_rate=0.2)
    for (published,), part in raw.partition_by("PublishedDate", as_dict=True).items():
        lake.write_partition("raw", "trades_spec", published, part, source="test")
    return lake, raw


def test_writes_one_partition_per_trading_day_equal_to_the_expansion(lake_with_raw) -> None:
    lake, raw = lake_with_raw
    start, end = D(2021, 12, 20), D(2022, 4, 20)
    manifests = expand_to_lake(lake, start, end)
    days = trading_days(start, end)
    assert [m.date for m in manifests] == list(days)
    assert lake.list_partitions("interim", "trades_spec_daily") == list(days)
    written = lake.read_range("interim", "trades_spec_daily", start, end)
    assert written.equals(expand_trades_spec(raw, start, end))
    # The raw weeks start in 2021-10: the first partitions of the range are empty but keep the schema.
    first = lake.read_partition("interim", "trades_spec_daily", days[0])
    assert first.schema == pl.Schema(OUTPUT_SCHEMA)


def test_rerun_is_idempotent_and_backfill_equals_one_run(lake_with_raw, tmp_path: Path) -> None:
    lake, raw = lake_with_raw
    start, end = D(2022, 3, 1), D(2022, 4, 30)
    once = expand_to_lake(lake, start, end)
    again = expand_to_lake(lake, start, end)
    assert [m.checksum for m in once] == [m.checksum for m in again]
    # Backfilling in two halves writes byte-identical partitions.
    other = open_lake(tmp_path / "other")
    for (published,), part in raw.partition_by("PublishedDate", as_dict=True).items():
        other.write_partition("raw", "trades_spec", published, part, source="test")
    halves = expand_to_lake(other, start, D(2022, 3, 31)) + expand_to_lake(other, D(2022, 4, 1), end)
    assert [m.checksum for m in halves] == [m.checksum for m in once]


def test_empty_lake_and_empty_range(tmp_path: Path) -> None:
    lake = open_lake(tmp_path / "empty")
    # Nothing fetched is an error naming the raw table, not a run of empty days.
    with pytest.raises(ValueError, match=r"raw/trades_spec has no records published before 2024-01-05"):
        expand_to_lake(lake, D(2024, 1, 4), D(2024, 1, 5))
    assert not lake.list_partitions("interim", "trades_spec_daily")
    assert expand_to_lake(lake, D(2024, 1, 6), D(2024, 1, 7)) == []  # a weekend
    with pytest.raises(ValueError, match="after end"):
        expand_to_lake(lake, D(2024, 1, 7), D(2024, 1, 6))


def test_run_expansion_uses_the_given_lake(lake_with_raw) -> None:
    lake, _ = lake_with_raw
    manifests = run_expansion(D(2022, 4, 4), D(2022, 4, 8), lake.uri, Settings())
    assert [m.date for m in manifests] == list(trading_days(D(2022, 4, 4), D(2022, 4, 8)))
    assert summarize(manifests).startswith("trades_spec_daily: wrote 5 partitions 2022-04-04..2022-04-08")


def test_last_determined_day() -> None:
    from gogooku3.flows import last_determined_day

    # Fetched through Thursday 2024-06-13: Friday's row uses records published up to Thursday.
    assert last_determined_day(D(2024, 6, 13)) == D(2024, 6, 14)
    # Through Friday: Monday could still get a Saturday/Sunday publication -> Friday only.
    assert last_determined_day(D(2024, 6, 14)) == D(2024, 6, 14)
    # Through Sunday: Monday is final.
    assert last_determined_day(D(2024, 6, 16)) == D(2024, 6, 17)
    # Through 2023-12-29 (last session of the year): the closure days are not trading days.
    assert last_determined_day(D(2023, 12, 29)) == D(2023, 12, 29)
    assert last_determined_day(D(2024, 1, 3)) == D(2024, 1, 4)


def _interim_days(lake) -> list[dt.date]:
    return lake.list_partitions("interim", "trades_spec_daily")


def test_an_orphaned_publication_day_is_an_error_not_a_skip(lake_with_raw, tmp_path: Path) -> None:
    lake, raw = lake_with_raw
    published = sorted(raw.get_column("PublishedDate").unique())
    orphan = published[len(published) // 2]
    (Path(lake.root) / "raw" / "trades_spec" / f"date={orphan}" / "_manifest.json").unlink()
    with pytest.raises(TradesSpecCoverageError) as err:
        expand_to_lake(lake, D(2022, 3, 1), D(2022, 4, 30))
    assert f"has data without a manifest on {orphan}" in str(err.value)
    assert _interim_days(lake) == []


def test_days_beyond_the_provisional_window_are_refused(lake_with_raw) -> None:
    from gogooku3.flows import provisional_through

    lake, _ = lake_with_raw
    fetched_through = lake.list_partitions("raw", "trades_spec")[-1]
    limit = provisional_through(fetched_through)
    assert limit > fetched_through
    # Through the provisional window: written (the next weekly run rewrites the provisional rows).
    assert expand_to_lake(lake, limit, limit)[-1].date == limit
    later = trading_days(limit + dt.timedelta(days=1), limit + dt.timedelta(days=60))
    with pytest.raises(TradesSpecCoverageError) as err:
        expand_to_lake(lake, limit, later[-1])
    message = str(err.value)
    assert f"{later[-1]} is beyond what" in message and f"fetched through {fetched_through}" in message
    assert f"provisional through {limit}" in message
    assert _interim_days(lake) == [limit]


def test_the_cli_names_a_corrupt_partition_without_a_traceback(lake_with_raw, tmp_path: Path) -> None:
    import subprocess
    import sys

    lake, raw = lake_with_raw
    day = sorted(raw.get_column("PublishedDate").unique())[3]
    data = Path(lake.root) / "raw" / "trades_spec" / f"date={day}" / "part-00000.parquet"
    data.write_bytes(data.read_bytes()[:-16])
    cli = str(Path(sys.executable).with_name("gogooku3"))
    args = ["trades-spec", "expand", "--start", "2022-03-01", "--end", "2022-03-31", "--lake", lake.root]
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and f"raw/trades_spec date={day}" in proc.stderr
    assert "corrupt" in proc.stderr
