"""Lake behaviour, run against both backends: a local directory and S3 on a real moto server (HTTP)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from pathlib import Path

import polars as pl
import pyarrow.dataset as pads
import pytest

from gogooku3.config import S3Settings, Secret
from gogooku3.devtools.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server, running_s3_server
from gogooku3.lake import (
    CorruptPartitionError,
    Lake,
    LakeStorageError,
    LocalLake,
    MissingPartitionError,
    S3Lake,
    layout,
    open_lake,
)

D1, D2, D3 = dt.date(2024, 1, 4), dt.date(2024, 1, 5), dt.date(2024, 1, 9)
RAW, DQ = "raw", "daily_quotes"


def quotes(
    day: dt.date, codes: tuple[str, ...] = ("13010", "13020", "13050"), seed: float = 0.0
) -> pl.DataFrame:
    """A small daily_quotes-like frame with the dtypes the lake must keep exactly (nulls included)."""
    n = len(codes)
    return pl.DataFrame(
        {
            "Date": [day] * n,
            "Code": list(codes),
            "Close": [100.0 + seed + i if i % 2 == 0 else None for i in range(n)],
            "Volume": [1000 * (i + 1) for i in range(n)],
            "UpperLimit": [i == 1 for i in range(n)][:-1] + [None],
            "FetchedAt": [dt.datetime(2024, 1, 4, 9, 0, tzinfo=dt.UTC)] * n,
        },
        schema={
            "Date": pl.Date,
            "Code": pl.String,
            "Close": pl.Float64,
            "Volume": pl.Int64,
            "UpperLimit": pl.Boolean,
            "FetchedAt": pl.Datetime("us", "UTC"),
        },
    )


@pytest.fixture(scope="module")
def s3_server() -> S3Server:
    with running_s3_server() as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return open_lake(tmp_path / "lake")
    server: S3Server = request.getfixturevalue("s3_server")
    # A fresh prefix per test: moto's state outlives each test within the module.
    return open_lake(server.lake_uri(f"t-{uuid.uuid4().hex[:8]}/lake"), server.s3_settings())


def visible_keys(lake: Lake, prefix: str) -> list[str]:
    """What a reader can see under ``prefix`` (for local, straight from the filesystem, hidden excluded)."""
    if isinstance(lake, LocalLake):
        root = Path(lake.root)
        return sorted(
            p.relative_to(root).as_posix()
            for p in (root / prefix).rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
    return lake.storage.list(prefix)


# ------------------------------------------------------------------------------------------ basics


def test_roundtrip_keeps_rows_and_exact_dtypes(lake: Lake) -> None:
    df = quotes(D1)
    manifest = lake.write_partition(RAW, DQ, D1, df, source="unit-test")
    back = lake.read_partition(RAW, DQ, D1)
    assert back.schema == df.schema
    assert back.equals(df)  # equals() treats nulls in the same places as equal
    assert back["Close"].null_count() == 1 and back["UpperLimit"].null_count() == 1
    assert manifest.rows == 3
    assert manifest.columns == (
        ("Date", "Date"),
        ("Code", "String"),
        ("Close", "Float64"),
        ("Volume", "Int64"),
        ("UpperLimit", "Boolean"),
        ("FetchedAt", "Datetime(time_unit='us', time_zone='UTC')"),
    )
    assert lake.read_manifest(RAW, DQ, D1) == manifest
    assert lake.has_partition(RAW, DQ, D1) and not lake.has_partition(RAW, DQ, D2)
    assert visible_keys(lake, f"{RAW}/{DQ}") == [
        "raw/daily_quotes/date=2024-01-04/_manifest.json",
        "raw/daily_quotes/date=2024-01-04/part-00000.parquet",
    ]


def test_manifest_records_what_was_written(lake: Lake) -> None:
    before = dt.datetime.now(dt.UTC)
    m = lake.write_partition(RAW, DQ, D1, quotes(D1), source="jquants v2 emulator")
    data = lake.storage.get_bytes(layout.data_key(RAW, DQ, D1))
    import hashlib

    assert m.checksum == hashlib.sha256(data).hexdigest() and m.size_bytes == len(data)
    assert m.source == "jquants v2 emulator" and m.format_version == 1
    assert (m.layer, m.dataset, m.date) == (RAW, DQ, D1)
    written = dt.datetime.fromisoformat(m.written_at)
    assert written.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= written <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    # A different schema gives a different schema hash; same schema, different rows: same hash.
    other = lake.write_partition(RAW, DQ, D2, quotes(D2).drop("Volume"), source="x")
    same = lake.write_partition(RAW, DQ, D3, quotes(D3, seed=5.0), source="x")
    assert other.schema_hash != m.schema_hash and same.schema_hash == m.schema_hash


def test_empty_frame_keeps_its_schema(lake: Lake) -> None:
    empty = quotes(D1).clear()
    m = lake.write_partition(RAW, DQ, D1, empty, source="t")
    back = lake.read_partition(RAW, DQ, D1)
    assert m.rows == 0 and back.height == 0
    assert back.schema == empty.schema


def test_overwrite_replaces_the_partition(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="first")
    new = quotes(D1, codes=("72030",), seed=9.0)
    m = lake.write_partition(RAW, DQ, D1, new, source="second")
    assert lake.read_partition(RAW, DQ, D1).equals(new)
    assert lake.read_manifest(RAW, DQ, D1) == m and m.rows == 1
    assert lake.list_partitions(RAW, DQ) == [D1]


def test_rerun_gives_identical_bytes_and_checksum(lake: Lake) -> None:
    df = quotes(D1, codes=("13010", "13020", "13050", "72030"))
    shuffled = df.reverse()
    assert not shuffled.equals(df)  # rows really arrive in another order
    m1 = lake.write_partition(RAW, DQ, D1, df, source="t", sort_by=("Date", "Code"))
    bytes1 = lake.storage.get_bytes(layout.data_key(RAW, DQ, D1))
    m2 = lake.write_partition(RAW, DQ, D1, shuffled, source="t", sort_by=("Date", "Code"))
    bytes2 = lake.storage.get_bytes(layout.data_key(RAW, DQ, D1))
    assert bytes1 == bytes2
    assert m1.checksum == m2.checksum and m1.same_content(m2)
    assert lake.read_partition(RAW, DQ, D1).equals(df)
    # ...and the checksum does tell different data apart.
    m3 = lake.write_partition(RAW, DQ, D1, quotes(D1, seed=1.0), source="t", sort_by=("Date", "Code"))
    assert m3.checksum != m1.checksum


def test_sort_by_unknown_column_is_rejected_naming_it(lake: Lake) -> None:
    with pytest.raises(ValueError, match="NoSuchColumn") as e:
        lake.write_partition(RAW, DQ, D1, quotes(D1), source="t", sort_by=("Date", "NoSuchColumn"))
    assert "raw/daily_quotes date=2024-01-04" in str(e.value)
    assert not lake.has_partition(RAW, DQ, D1)


def test_date_column_must_match_the_partition(lake: Lake) -> None:
    mixed = pl.concat([quotes(D1), quotes(D2)])
    with pytest.raises(ValueError, match=r"3 of 6 rows have Date != 2024-01-04 \(e.g. 2024-01-05\)"):
        lake.write_partition(RAW, DQ, D1, mixed, source="t", date_column="Date")
    assert not lake.has_partition(RAW, DQ, D1)
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t", date_column="Date")
    assert lake.has_partition(RAW, DQ, D1)


# ------------------------------------------------------------------------- crashes and corruption


def test_crash_while_writing_data_keeps_old_partition(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    old = quotes(D1)
    lake.write_partition(RAW, DQ, D1, old, source="old")
    before = visible_keys(lake, f"{RAW}/{DQ}")
    attempted: list[int] = []

    if isinstance(lake, LocalLake):
        # The crash comes after the temp file is fully written and synced, right before the rename.
        def crash(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            attempted.append(Path(src).stat().st_size)
            raise OSError("simulated power cut before rename")

        monkeypatch.setattr("gogooku3.lake.storage.os.replace", crash)
    else:
        client = lake.storage._client
        real_put = client.put_object

        def crash(**kwargs: object) -> object:
            if str(kwargs["Key"]).endswith(layout.DATA_FILE):
                attempted.append(len(kwargs["Body"]))  # type: ignore[arg-type]
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="simulated connection drop mid-PUT")
            return real_put(**kwargs)

        monkeypatch.setattr(client, "put_object", crash)

    with pytest.raises(LakeStorageError, match="part-00000.parquet"):
        lake.write_partition(RAW, DQ, D1, quotes(D1, codes=("99990",), seed=50.0), source="new")
    assert attempted and attempted[0] > 0  # the write really got as far as the bytes
    monkeypatch.undo()
    assert lake.read_partition(RAW, DQ, D1).equals(old)
    assert lake.read_manifest(RAW, DQ, D1).source == "old"
    assert visible_keys(lake, f"{RAW}/{DQ}") == before


def test_writer_dying_between_data_and_manifest_is_detected_and_healed(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="old")
    new = quotes(D1, seed=7.0)
    real_put = lake.storage.put_bytes

    def die_at_manifest(key: str, data: bytes, **kwargs: object) -> None:
        if key.endswith(layout.MANIFEST_FILE):
            raise KeyboardInterrupt("writer killed")
        real_put(key, data, **kwargs)

    monkeypatch.setattr(lake.storage, "put_bytes", die_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        lake.write_partition(RAW, DQ, D1, new, source="new")
    monkeypatch.undo()

    with pytest.raises(CorruptPartitionError) as e:
        lake.read_partition(RAW, DQ, D1)
    assert "raw/daily_quotes date=2024-01-04" in str(e.value) and lake.uri in str(e.value)
    lake.write_partition(RAW, DQ, D1, new, source="rerun")  # the rerun heals it
    assert lake.read_partition(RAW, DQ, D1).equals(new)


def test_first_write_dying_before_manifest_leaves_no_partition(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = lake.storage.put_bytes

    def die_at_manifest(key: str, data: bytes, **kwargs: object) -> None:
        if key.endswith(layout.MANIFEST_FILE):
            raise KeyboardInterrupt("writer killed")
        real_put(key, data, **kwargs)

    monkeypatch.setattr(lake.storage, "put_bytes", die_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        lake.write_partition(RAW, DQ, D2, quotes(D2), source="t")
    monkeypatch.undo()
    assert not lake.has_partition(RAW, DQ, D2)
    assert lake.list_partitions(RAW, DQ) == []
    with pytest.raises(MissingPartitionError, match="without a manifest"):
        lake.read_partition(RAW, DQ, D2)


def test_corrupt_data_is_refused_naming_the_partition(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    key = layout.data_key(RAW, DQ, D1)
    good = lake.storage.get_bytes(key)
    lake.storage.put_bytes(key, good[:-20] + bytes(20))  # bit rot / truncated upload
    with pytest.raises(CorruptPartitionError) as e:
        lake.read_partition(RAW, DQ, D1)
    assert "raw/daily_quotes date=2024-01-04" in str(e.value) and lake.uri in str(e.value)
    with pytest.raises(CorruptPartitionError, match="2024-01-04"):
        lake.read_range(RAW, DQ, D1, D3)


def test_missing_partition_error_names_it_and_the_lake(lake: Lake) -> None:
    with pytest.raises(MissingPartitionError) as e:
        lake.read_partition("interim", "trades_spec_daily", D2)
    assert "interim/trades_spec_daily date=2024-01-05" in str(e.value)
    assert lake.uri in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(MissingPartitionError, match="2024-01-05"):
        lake.read_manifest("interim", "trades_spec_daily", D2)


# ----------------------------------------------------------------------------- listing and ranges


def test_list_partitions_is_sorted_and_ignores_debris(lake: Lake) -> None:
    for day in (D3, D1, D2):
        lake.write_partition(RAW, DQ, day, quotes(day), source="t")
    lake.write_partition(RAW, "topix", D2, quotes(D2), source="t")  # other datasets do not leak in
    # Debris a reader must ignore: a killed local writer's temp file, a stray non-partition folder,
    # data with no manifest (uncommitted), an artifact.
    lake.storage.put_bytes(f"{RAW}/{DQ}/date=2024-02-01/part-00000.parquet", b"uncommitted")
    lake.storage.put_bytes(f"{RAW}/{DQ}/notes/_manifest.json", b"{}")
    lake.write_artifact(RAW, DQ, D1, "validation.json", b"{}", "application/json")
    if isinstance(lake, LocalLake):
        folder = Path(lake.root) / RAW / DQ / "date=2024-01-04"
        (folder / f".part-00000.parquet.{uuid.uuid4().hex}.tmp").write_bytes(b"PAR1 half written")
        (Path(lake.root) / RAW / DQ / ".date=2024-03-01.tmp").mkdir()
    assert lake.list_partitions(RAW, DQ) == [D1, D2, D3]
    assert lake.list_partitions(RAW, "statements") == []
    assert lake.read_range(RAW, DQ, D1, D3).height == 9


def test_local_hive_readers_see_only_committed_data(tmp_path: Path) -> None:
    lake = open_lake(tmp_path / "lake")
    for day in (D1, D2):
        lake.write_partition(RAW, DQ, day, quotes(day), source="t")
    data = lake.storage.get_bytes(layout.data_key(RAW, DQ, D1))
    lake.write_artifact(RAW, DQ, D1, "copy.parquet", data)
    folder = tmp_path / "lake" / RAW / DQ / "date=2024-01-04"
    (folder / f".part-00000.parquet.{uuid.uuid4().hex}.tmp").write_bytes(data[:100])
    table = pads.dataset(str(tmp_path / "lake" / RAW / DQ), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 6
    scanned = pl.scan_parquet(str(tmp_path / "lake" / RAW / DQ / "date=*" / "part-*.parquet")).collect()
    assert scanned.height == 6


def test_read_range_concatenates_in_date_order(lake: Lake) -> None:
    for day in (D3, D1, D2):
        lake.write_partition(RAW, DQ, day, quotes(day), source="t")
    got = lake.read_range(RAW, DQ, D2, dt.date(2024, 1, 31))
    assert got["Date"].unique(maintain_order=True).to_list() == [D2, D3]
    assert got.schema == quotes(D1).schema
    assert lake.read_range(RAW, DQ, "2024-01-01", "2024-01-04").equals(quotes(D1))
    assert lake.read_range(RAW, DQ, D1, D3, columns=["Code"]).columns == ["Code"]
    assert lake.read_range(RAW, DQ, dt.date(2023, 1, 1), dt.date(2023, 12, 31)).is_empty()
    with pytest.raises(ValueError, match="after end"):
        lake.read_range(RAW, DQ, D3, D1)


def test_read_range_aligns_an_extra_column(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    lake.write_partition(RAW, DQ, D2, quotes(D2).with_columns(pl.lit("x").alias("Extra")), source="t")
    got = lake.read_range(RAW, DQ, D1, D2)
    assert got.height == 6 and got["Extra"].null_count() == 3


def test_read_range_require_all_names_every_missing_date(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    lake.write_partition(RAW, DQ, D3, quotes(D3), source="t")
    wanted = [D1, D2, D3, dt.date(2024, 1, 10)]
    with pytest.raises(MissingPartitionError) as e:
        lake.read_range(RAW, DQ, D1, dt.date(2024, 1, 10), require_all=wanted)
    msg = str(e.value)
    assert "2024-01-05" in msg and "2024-01-10" in msg and "2 required" in msg
    assert "2024-01-04" not in msg.split(":")[-1] and lake.uri in msg
    assert lake.read_range(RAW, DQ, D1, D3, require_all=[D1, D3]).height == 6
    with pytest.raises(ValueError, match="outside the range: 2024-02-01"):
        lake.read_range(RAW, DQ, D1, D3, require_all=[D1, dt.date(2024, 2, 1)])


def test_delete_partition_removes_everything_of_it(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    lake.write_partition(RAW, DQ, D2, quotes(D2), source="t")
    lake.write_artifact(RAW, DQ, D1, "validation.json", b"{}", "application/json")
    assert lake.delete_partition(RAW, DQ, D1) is True
    assert lake.list_partitions(RAW, DQ) == [D2]
    assert visible_keys(lake, layout.partition_prefix(RAW, DQ, D1)) == []
    assert lake.delete_partition(RAW, DQ, D1) is False
    with pytest.raises(MissingPartitionError):
        lake.read_partition(RAW, DQ, D1)
    assert lake.read_partition(RAW, DQ, D2).height == 3


# ------------------------------------------------------------------------ latest good + artifacts


def test_latest_good_only_moves_forward(lake: Lake) -> None:
    for day in (D1, D2, D3):
        lake.write_partition(RAW, DQ, day, quotes(day), source="t")
    assert lake.latest_good(RAW, DQ) is None
    lake.mark_good(RAW, DQ, D2, validation_ref="gx://run/2")
    assert lake.latest_good(RAW, DQ) == D2
    kept = lake.mark_good(RAW, DQ, D1, validation_ref="gx://run/1")  # a backfill's older day
    assert kept.date == D2 and kept.validation_ref == "gx://run/2"
    assert lake.latest_good(RAW, DQ) == D2
    lake.mark_good(RAW, DQ, D3, validation_ref="gx://run/3")
    assert lake.latest_good(RAW, DQ) == D3
    marker = lake.latest_good_marker(RAW, DQ)
    assert marker is not None and marker.checksum == lake.read_manifest(RAW, DQ, D3).checksum
    forced = lake.mark_good(RAW, DQ, D1, validation_ref="manual rollback", force=True)
    assert forced.date == D1 and lake.latest_good(RAW, DQ) == D1
    assert lake.latest_good(RAW, "topix") is None  # per dataset


def test_mark_good_refuses_missing_or_changed_partitions(lake: Lake) -> None:
    with pytest.raises(MissingPartitionError, match="2024-01-04"):
        lake.mark_good(RAW, DQ, D1, validation_ref="r")
    m = lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    lake.write_partition(RAW, DQ, D1, quotes(D1, seed=1.0), source="rewrite after validation")
    with pytest.raises(CorruptPartitionError, match="changed since it was validated"):
        lake.mark_good(RAW, DQ, D1, validation_ref="r", expected_checksum=m.checksum)
    assert lake.latest_good(RAW, DQ) is None
    with pytest.raises(ValueError, match="validation_ref"):
        lake.mark_good(RAW, DQ, D1, validation_ref=" ")


def test_marker_compare_and_swap_rejects_a_stale_writer(lake: Lake) -> None:
    key = layout.latest_good_key(RAW, DQ)
    assert lake.storage.get_versioned(key) is None
    assert lake.storage.put_if(key, b"a", expected=None) is True
    assert lake.storage.put_if(key, b"b", expected=None) is False  # someone created it first
    found = lake.storage.get_versioned(key)
    assert found is not None and found[0] == b"a"
    token = found[1]
    assert lake.storage.put_if(key, b"c", expected=token) is True
    assert lake.storage.put_if(key, b"d", expected=token) is False  # stale token
    assert lake.storage.get_bytes(key) == b"c"


def test_parallel_gates_never_move_the_marker_backwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_lake(tmp_path / "lake")
    days = [D1 + dt.timedelta(days=i) for i in range(12)]
    for day in days:
        lake.write_partition(RAW, DQ, day, quotes(day).clear(), source="t")
    # Worst case for a read-compare-write: every gate reads the (empty) marker before any writes,
    # then they write newest first, so a blind write of an older day would land last.
    barrier = threading.Barrier(len(days), timeout=30)
    seen = threading.local()
    real_get = lake.storage.get_versioned

    def get_after_everyone_read(key: str) -> tuple[bytes, str] | None:
        found = real_get(key)
        if not getattr(seen, "first_read_done", False):
            seen.first_read_done = True
            barrier.wait()
            time.sleep(0.02 * seen.age)
        return found

    monkeypatch.setattr(lake.storage, "get_versioned", get_after_everyone_read)
    errors: list[BaseException] = []

    def gate(day: dt.date) -> None:
        seen.age = (days[-1] - day).days
        try:
            lake.mark_good(RAW, DQ, day, validation_ref=f"run {day}")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=gate, args=(d,)) for d in reversed(days)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert lake.latest_good(RAW, DQ) == days[-1]


def test_artifacts_live_next_to_the_partition(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    uri = lake.write_artifact(RAW, DQ, D1, "gx/validation.json", b'{"success": false}', "application/json")
    lake.write_artifact(RAW, DQ, D1, "gx/data_docs/index.html", b"<html></html>", "text/html")
    assert uri == lake.artifact_uri(RAW, DQ, D1, "gx/validation.json")
    assert uri.endswith("raw/daily_quotes/date=2024-01-04/_artifacts/gx/validation.json")
    assert lake.read_artifact(RAW, DQ, D1, "gx/validation.json") == b'{"success": false}'
    assert lake.list_artifacts(RAW, DQ, D1) == ["gx/data_docs/index.html", "gx/validation.json"]
    assert lake.read_partition(RAW, DQ, D1).equals(quotes(D1))  # artifacts do not disturb the data
    with pytest.raises(MissingPartitionError, match="nope.json"):
        lake.read_artifact(RAW, DQ, D1, "nope.json")


def test_uris_name_the_place_and_reopen_the_same_lake(lake: Lake) -> None:
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    assert lake.uri_for(RAW, DQ, D1) == f"{lake.uri}/raw/daily_quotes/date=2024-01-04"
    assert lake.uri_for(RAW, DQ) == f"{lake.uri}/raw/daily_quotes"
    if isinstance(lake, S3Lake):
        assert lake.uri.startswith("s3://")
        return
    assert lake.uri.startswith("file:///")
    again = open_lake(lake.uri)
    assert again.read_partition(RAW, DQ, D1).equals(quotes(D1))


@pytest.mark.integration
def test_s3_lake_reads_credentials_and_endpoint_from_env(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    lake = open_lake(s3_server.lake_uri(f"env-{uuid.uuid4().hex[:8]}"))  # no S3Settings given
    lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    assert lake.read_partition(RAW, DQ, D1).equals(quotes(D1))
    assert ACCESS_KEY_ID not in repr(lake) and SECRET_ACCESS_KEY not in repr(lake)


@pytest.mark.integration
def test_s3_errors_name_the_object_without_leaking_secrets(s3_server: S3Server) -> None:
    secret = "sk-DO-NOT-PRINT-4242"
    settings = S3Settings(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=Secret("AKIA-DO-NOT-PRINT"),
        secret_access_key=Secret(secret),
    )
    lake = open_lake("s3://no-such-bucket-gogooku3/lake", settings)
    with pytest.raises(LakeStorageError) as e:
        lake.write_partition(RAW, DQ, D1, quotes(D1), source="t")
    msg = str(e.value)
    assert "s3://no-such-bucket-gogooku3/lake/raw/daily_quotes/date=2024-01-04/part-00000.parquet" in msg
    assert "NoSuchBucket" in msg
    for text in (msg, repr(lake), repr(lake.storage), repr(settings)):
        assert secret not in text and "AKIA-DO-NOT-PRINT" not in text


def test_half_a_credential_is_a_clear_error() -> None:
    settings = S3Settings(access_key_id=Secret("AKIA-ONLY"))
    with pytest.raises(LakeStorageError, match="secret access key is missing") as e:
        open_lake("s3://bucket-x/lake", settings)
    assert "AKIA-ONLY" not in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-04T22:07:07.000Z",  # a listing's LastModified
        "2026-12-04T22:07:07.123456Z",
        "Fri, 04 Dec 2026 22:07:07 GMT",  # a GET's Last-Modified header
        "1796508427",  # epoch seconds: left to botocore's parser
        "2026-12-04T22:07:07+09:00",
    ],
)
def test_s3_timestamps_are_parsed_as_botocore_parses_them(text: str) -> None:
    from botocore.utils import parse_timestamp

    from gogooku3.lake.s3 import _parse_timestamp

    assert _parse_timestamp(text) == parse_timestamp(text)
    assert _parse_timestamp(text).utcoffset() is not None


@pytest.mark.integration
def test_s3_client_reads_the_servers_modification_times(s3_server: S3Server) -> None:
    """What the lake's client receives from a real server: aware datetimes of the write, in a
    listing and in a GET's headers alike."""
    import datetime as dt

    from gogooku3.lake.s3 import make_s3_client

    client = make_s3_client(s3_server.s3_settings())
    before = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    client.put_object(Bucket=s3_server.bucket, Key="times/one", Body=b"1")
    (listed,) = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="times/")["Contents"]
    got = client.get_object(Bucket=s3_server.bucket, Key="times/one")
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert before <= listed["LastModified"] <= after
    assert got["LastModified"] == listed["LastModified"].replace(microsecond=0)
