"""A writer process killed with SIGKILL at arbitrary points never leaves a partial partition visible."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from gogooku3.lake import CorruptPartitionError, open_lake

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 1, 4)

# Two versions of the partition, large enough that a write takes a while, so kills land mid-write.
FRAMES = textwrap.dedent(
    """
    import datetime as dt
    import polars as pl

    def frame(version: int) -> pl.DataFrame:
        n = 90_000
        return pl.DataFrame(
            {
                "Date": [dt.date(2024, 1, 4)] * n,
                "Code": [f"{i:05d}" for i in range(n)],
                "Close": [float(i * (version + 1)) if i % 7 else None for i in range(n)],
            }
        )
    """
)

WRITER = textwrap.dedent(
    """
    import sys
    from gogooku3.lake import open_lake
    lake = open_lake(sys.argv[1])
    frames = [frame(0), frame(1)]
    i = 0
    while True:
        lake.write_partition("raw", "daily_quotes", "2024-01-04", frames[i % 2], source=f"write {i}",
                             sort_by=["Code"])
        print(f"wrote {i}", flush=True)
        i += 1
    """
)


def frame(version: int) -> pl.DataFrame:
    scope: dict[str, object] = {}
    exec(FRAMES, scope)
    return scope["frame"](version)  # type: ignore[operator]


def test_sigkilled_writer_leaves_old_or_new_partition_or_a_detected_corruption(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = open_lake(root)
    versions = [frame(0), frame(1)]
    folder = root / "raw" / "daily_quotes" / "date=2024-01-04"
    outcomes: set[str] = set()
    # A write here takes ~50 ms (about 2/3 encoding, 1/3 temp file + fsync + rename + manifest);
    # staggered delays spread the kills over that cycle. Every outcome below is acceptable; what
    # is checked is that none of them is a partial or silently wrong partition.
    for delay_ms in range(0, 60, 10):
        proc = subprocess.Popen(
            [sys.executable, "-c", FRAMES + WRITER, str(root)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "POLARS_MAX_THREADS": "1"},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("wrote"), line
            time.sleep(delay_ms / 1000)
            os.kill(proc.pid, signal.SIGKILL)  # mid-way through the next write, wherever it is
        finally:
            proc.kill()
            proc.wait(timeout=30)

        visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert visible == ["_manifest.json", "part-00000.parquet"]
        # The data file is always a whole Parquet file of one version: never a prefix or a mix.
        on_disk = pl.read_parquet(folder / "part-00000.parquet")
        assert any(on_disk.equals(v) for v in versions)
        try:
            read = lake.read_partition("raw", "daily_quotes", DAY)
            assert any(read.equals(v) for v in versions)
            outcomes.add("consistent")
        except CorruptPartitionError as e:  # killed between the data and the manifest
            assert "raw/daily_quotes date=2024-01-04" in str(e)
            outcomes.add("detected")
        # Whatever happened, a rerun heals the partition (and clears nothing visible).
        lake.write_partition("raw", "daily_quotes", DAY, versions[0], source="rerun", sort_by=["Code"])
        assert lake.read_partition("raw", "daily_quotes", DAY).equals(versions[0])
