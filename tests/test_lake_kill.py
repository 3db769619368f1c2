"""A writer process killed with SIGKILL at arbitrary points never leaves a partial partition visible, and
a reader looking while it writes only ever sees a whole file of the old or the new version."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gogooku3.lake import CorruptPartitionError, open_lake
from gogooku3.lake.manifest import encode_parquet

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 1, 4)
#: Writer processes, each killed once: half at staggered points of the write cycle, half the moment a
#: reader sees new data (right after the data file is replaced, before or while its manifest is).
KILLS = 10
#: Whole write cycles each writer completes (watched by the reader) before its kill is timed.
WARMUP = 6

# Two versions of the partition. Scrambled prices keep zstd from shrinking the file to nothing: at
# ~0.5 MB the write itself lasts long enough for a concurrent reader to land inside it.
FRAMES = textwrap.dedent(
    """
    import datetime as dt
    import polars as pl

    def frame(version: int) -> pl.DataFrame:
        i = pl.col("i")
        return pl.DataFrame({"i": pl.int_range(200_000, eager=True)}).select(
            Date=pl.lit(dt.date(2024, 1, 4)),
            Code=i.cast(pl.String).str.zfill(6),
            Close=pl.when(i % 7 != 0).then((i * 2654435761 + version * 97) % 1_000_003 / 7.0),
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


def frame(version: int):
    scope: dict[str, object] = {}
    exec(FRAMES, scope)
    return scope["frame"](version)  # type: ignore[operator]


class Reader(threading.Thread):
    """Reads the visible data file and manifest over and over, as any reader of the lake may while a
    writer replaces them; records every read that is not a whole file of one of the two versions.

    Armed with a pid (:meth:`kill_on_change`), it SIGKILLs that writer the moment the data it reads
    changes: from this thread, so the kill lands within a read of the new data becoming visible.
    """

    def __init__(self, folder: Path, payloads: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.data, self.manifest = folder / "part-00000.parquet", folder / "_manifest.json"
        self.payloads = payloads
        self.stop = threading.Event()
        self.reads = 0
        self.bad: collections.Counter[str] = collections.Counter()
        self._armed: tuple[int, bytes] | None = None  # (pid, data when armed)
        self.killed = threading.Event()

    def kill_on_change(self, pid: int) -> None:
        self._armed = (pid, self.data.read_bytes())

    def run(self) -> None:
        try:
            self._watch()
        except Exception as e:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.bad[f"the reader crashed: {e!r}"] += 1

    def _watch(self) -> None:
        sizes = sorted(len(p) for p in self.payloads)
        while not self.stop.is_set():
            self.reads += 1
            try:
                data = self.data.read_bytes()
                manifest = self.manifest.read_bytes()
            except OSError as e:
                self.bad[f"the partition's files could not be read: {type(e).__name__}"] += 1
                continue
            if self._armed is not None and data != self._armed[1]:
                os.kill(self._armed[0], signal.SIGKILL)
                self._armed = None
                self.killed.set()
            if not any(data == p for p in self.payloads):
                self.bad[f"data file read as {len(data)} bytes, not a whole version ({sizes} bytes)"] += 1
            try:
                json.loads(manifest)
            except ValueError:
                self.bad[f"manifest read as {len(manifest)} bytes of broken JSON"] += 1


def test_sigkilled_writer_leaves_old_or_new_partition_or_a_detected_corruption(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = open_lake(root)
    versions = [frame(0), frame(1)]
    # The exact bytes of each version (encoding is deterministic: see gogooku3.lake.manifest).
    payloads = [encode_parquet(v, sort_by=["Code"]) for v in versions]
    folder = root / "raw" / "daily_quotes" / "date=2024-01-04"
    outcomes: collections.Counter[str] = collections.Counter()
    reads = 0
    bad: collections.Counter[str] = collections.Counter()
    for k in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", FRAMES + WRITER, str(root)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "POLARS_MAX_THREADS": "1"},
        )
        reader = Reader(folder, payloads)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "wrote 0\n"  # the partition exists from here on
            reader.start()
            stamps = []
            for i in range(1, WARMUP + 1):
                assert proc.stdout.readline() == f"wrote {i}\n"
                stamps.append(time.perf_counter())
            if k % 2:
                # the next write alternates the version, so the data changes once it is visible
                reader.kill_on_change(proc.pid)
                assert reader.killed.wait(timeout=60), "the writer never replaced the data file"
            else:
                # Lands (k/2)/(KILLS/2) of the way through the next write cycle (as long as the last
                # few took): encoding, then the data file's write and commit, then the manifest's.
                cycle = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
                time.sleep(cycle * (k // 2) / (KILLS // 2))
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
            reader.stop.set()
            if reader.is_alive():
                reader.join(timeout=30)
        reads += reader.reads
        bad += reader.bad

        visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert visible == ["_manifest.json", "part-00000.parquet"]
        # The data file is always a whole Parquet file of one version: never a prefix or a mix.
        on_disk = (folder / "part-00000.parquet").read_bytes()
        whole = on_disk in payloads  # a bool, so a failure does not print half a megabyte
        assert whole, f"kill {k}: data file is {len(on_disk)} bytes, not a whole version"
        committed = json.loads((folder / "_manifest.json").read_bytes())["checksum"]["value"]
        if hashlib.sha256(on_disk).hexdigest() == committed:
            # the manifest commits what is on disk: it reads back, whichever version that is
            read = lake.read_partition("raw", "daily_quotes", DAY)
            assert read.equals(versions[payloads.index(on_disk)])
            outcomes["consistent"] += 1
        else:
            # killed between the data and the manifest: the reader is told, never handed bad data
            with pytest.raises(CorruptPartitionError, match="raw/daily_quotes date=2024-01-04"):
                lake.read_partition("raw", "daily_quotes", DAY)
            outcomes["detected"] += 1
        # Whatever happened, a rerun heals the partition (and clears nothing visible).
        lake.write_partition("raw", "daily_quotes", DAY, versions[0], source="rerun", sort_by=["Code"])
        assert lake.read_partition("raw", "daily_quotes", DAY).equals(versions[0])

    assert sum(outcomes.values()) == KILLS, outcomes
    # The reader really looked while the writers wrote, and never saw a partial or mixed file.
    assert reads >= KILLS, f"the reader ran only {reads} times"
    assert not bad, f"a reader saw partial files in {reads} reads: {dict(bad)}"
