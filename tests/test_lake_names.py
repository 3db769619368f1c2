"""Lake naming, URIs and manifests: what is accepted, what is refused, and what the errors say."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from gogooku3.lake import (
    CorruptPartitionError,
    InvalidNameError,
    LakeError,
    LakeURIError,
    LocalLake,
    Manifest,
    S3Lake,
    layout,
    open_lake,
)
from gogooku3.lake.manifest import encode_parquet, schema_hash

D1 = dt.date(2024, 1, 4)


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return open_lake(tmp_path / "lake")  # type: ignore[return-value]


def frame() -> pl.DataFrame:
    return pl.DataFrame({"Date": [D1], "Code": ["13010"]})


@pytest.mark.parametrize("layer", ["Raw", "bronze", "", "../raw", "raw/x", None, 1])
def test_unknown_layers_are_refused_naming_them(lake: LocalLake, layer: object) -> None:
    with pytest.raises(InvalidNameError) as e:
        lake.write_partition(layer, "daily_quotes", D1, frame(), source="t")  # type: ignore[arg-type]
    assert repr(layer) in str(e.value) and "raw, interim, features" in str(e.value)


@pytest.mark.parametrize(
    "dataset", ["..", "../../etc", "a/b", "Daily_Quotes", "daily-quotes", "", "_hidden", "1abc", "x" * 65]
)
def test_bad_dataset_names_are_refused(lake: LocalLake, dataset: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match="invalid dataset name"):
        lake.write_partition("raw", dataset, D1, frame(), source="t")
    with pytest.raises(InvalidNameError):
        lake.read_partition("raw", dataset, D1)
    with pytest.raises(InvalidNameError):
        lake.list_partitions("raw", dataset)
    assert not any(tmp_path.rglob("*.parquet"))  # nothing was written anywhere


@pytest.mark.parametrize(
    "day", ["2024-13-01", "2024-1-4", "20240104", "2024-01-04T00:00", "", 20240104, dt.datetime(2024, 1, 4)]
)
def test_bad_dates_are_refused(lake: LocalLake, day: object) -> None:
    with pytest.raises(InvalidNameError, match="date"):
        lake.write_partition("raw", "daily_quotes", day, frame(), source="t")  # type: ignore[arg-type]


def test_iso_string_dates_are_accepted(lake: LocalLake) -> None:
    lake.write_partition("features", "daily", "2024-01-04", frame(), source="t")
    assert lake.list_partitions("features", "daily") == [D1]
    assert lake.read_partition("features", "daily", D1).equals(frame())


@pytest.mark.parametrize("name", ["../x", "a/../b", ".hidden", "a//b", "/abs", "", "a/.b", "sp ace", "x\\y"])
def test_bad_artifact_names_are_refused(lake: LocalLake, name: str) -> None:
    with pytest.raises(InvalidNameError, match="artifact name"):
        lake.write_artifact("raw", "daily_quotes", D1, name, b"x")


def test_write_checks_its_arguments(lake: LocalLake) -> None:
    with pytest.raises(TypeError, match="polars DataFrame"):
        lake.write_partition("raw", "daily_quotes", D1, frame().lazy(), source="t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source"):
        lake.write_partition("raw", "daily_quotes", D1, frame(), source="  ")
    with pytest.raises(ValueError, match="date_column 'Day'"):
        lake.write_partition("raw", "daily_quotes", D1, frame(), source="t", date_column="Day")
    with pytest.raises(TypeError, match="Code is String, expected Date"):
        lake.write_partition("raw", "daily_quotes", D1, frame(), source="t", date_column="Code")
    with pytest.raises(TypeError, match="must be bytes"):
        lake.write_artifact("raw", "daily_quotes", D1, "a.json", "text")  # type: ignore[arg-type]


def test_read_partition_columns_are_checked(lake: LocalLake) -> None:
    lake.write_partition("raw", "daily_quotes", D1, frame(), source="t")
    assert lake.read_partition("raw", "daily_quotes", D1, columns=["Code"]).columns == ["Code"]
    with pytest.raises(KeyError, match="Nope"):
        lake.read_partition("raw", "daily_quotes", D1, columns=["Code", "Nope"])


# -------------------------------------------------------------------------------------------- URIs


def test_open_lake_local_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = open_lake()
    assert isinstance(default, LocalLake) and default.root == str(tmp_path / "data" / "lake")
    assert open_lake("./data/lake").root == default.root  # type: ignore[attr-defined]
    assert open_lake(f"file://{tmp_path}/x").root == str(tmp_path / "x")  # type: ignore[attr-defined]
    assert open_lake(tmp_path / "y").root == str(tmp_path / "y")  # type: ignore[attr-defined]
    lake = open_lake("rel")
    monkeypatch.chdir("/")
    lake.write_partition("raw", "topix", D1, frame(), source="t")  # resolved at open, not at write
    assert (tmp_path / "rel" / "raw" / "topix" / "date=2024-01-04" / "part-00000.parquet").is_file()


def test_open_lake_s3_forms_without_network() -> None:
    lake = open_lake("s3://my-bucket/some/prefix/")
    assert isinstance(lake, S3Lake) and lake.uri == "s3://my-bucket/some/prefix"
    assert (
        lake.uri_for("raw", "daily_quotes", D1)
        == "s3://my-bucket/some/prefix/raw/daily_quotes/date=2024-01-04"
    )
    assert open_lake("s3://my-bucket").uri == "s3://my-bucket"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("gs://bucket/lake", "unsupported scheme 'gs'"),
        ("http://example.com/lake", "unsupported scheme 'http'"),
        ("s3://", "not a valid S3 bucket"),
        ("s3://Bad_Bucket/lake", "not a valid S3 bucket"),
        ("s3://ab/lake", "not a valid S3 bucket"),
        ("s3://bucket-x/../other", r"'\.\.' segments"),
        ("s3://bucket-x/lake?versionId=1", "query strings"),
        ("file://host/lake", "host 'host'"),
    ],
)
def test_bad_uris_are_refused_naming_them(uri: str, why: str) -> None:
    with pytest.raises(LakeURIError, match=why) as e:
        open_lake(uri)
    assert repr(uri.strip()) in str(e.value) or repr(uri) in str(e.value)


# ---------------------------------------------------------------------------------------- manifest


def test_manifest_json_roundtrip_and_validation() -> None:
    m = Manifest(
        layer="raw",
        dataset="daily_quotes",
        date=D1,
        rows=1,
        columns=(("Date", "Date"), ("Code", "String")),
        schema_hash=schema_hash(frame().schema),
        checksum="ab" * 32,
        size_bytes=10,
        source="t",
        written_at="2024-01-04T09:00:00.000+00:00",
        sort_by=("Date", "Code"),
    )
    assert Manifest.from_json(m.to_json(), where="x") == m
    doc = json.loads(m.to_json())
    assert doc["checksum"] == {"algorithm": "sha256", "value": "ab" * 32}
    newer = json.dumps({**doc, "format_version": 99}).encode()
    with pytest.raises(LakeError, match="format version 99"):
        Manifest.from_json(newer, where="raw/daily_quotes date=2024-01-04")
    with pytest.raises(LakeError, match="raw/daily_quotes date=2024-01-04 is unreadable"):
        Manifest.from_json(b"{not json", where="raw/daily_quotes date=2024-01-04")
    with pytest.raises(LakeError, match="unreadable"):
        Manifest.from_json(json.dumps({k: v for k, v in doc.items() if k != "rows"}).encode(), where="x")


def test_a_manifest_for_another_partition_is_refused(lake: LocalLake) -> None:
    m = lake.write_partition("raw", "daily_quotes", D1, frame(), source="t")
    moved = dataclasses.replace(m, date=dt.date(2024, 1, 5))
    lake.storage.put_bytes(layout.manifest_key("raw", "daily_quotes", D1), moved.to_json())
    with pytest.raises(CorruptPartitionError, match="describes raw/daily_quotes date=2024-01-05"):
        lake.read_partition("raw", "daily_quotes", D1)


def test_parquet_bytes_do_not_depend_on_time_or_row_order() -> None:
    df = pl.DataFrame({"Code": ["2", "1", "3"], "x": [2.0, None, 3.0]})
    a = encode_parquet(df, sort_by=["Code"])
    b = encode_parquet(df.reverse(), sort_by=["Code"])
    assert a == b
    assert encode_parquet(df) != encode_parquet(df.reverse())  # without sort_by, order is content
    assert b"written_at" not in a and dt.date.today().isoformat().encode() not in a
