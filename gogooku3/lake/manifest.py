"""Partition manifests and deterministic Parquet encoding (pure: bytes in, bytes out).

The manifest is written after the data and is the partition's commit marker: a partition exists when
its manifest does, and its data is trusted only when the SHA-256 of the Parquet bytes equals the
manifest's ``checksum``. Parquet bytes are deterministic for equal frames (same rows, same order,
same schema) under one Polars version: the file carries no wall-clock metadata, only the schema and
Polars' ``created_by`` string. So a rerun with equal data yields byte-identical files and an equal
checksum, which is what makes "rerunning gives identical partitions" checkable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from gogooku3.lake.errors import LakeError

#: Bumped when the layout or the manifest's meaning changes; readers refuse newer versions.
LAKE_FORMAT_VERSION = 1

# Pinned so that a change of Polars' defaults cannot silently change the bytes (and checksums).
_PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "statistics": True,
    "row_group_size": 512 * 1024,
}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_columns(schema: pl.Schema) -> tuple[tuple[str, str], ...]:
    """``((name, dtype), ...)`` in column order, dtypes spelled as Polars prints them."""
    return tuple((name, str(dtype)) for name, dtype in schema.items())


def schema_hash(schema: pl.Schema) -> str:
    """SHA-256 of the ordered column names and dtypes: equal iff two partitions share a schema."""
    text = json.dumps([list(c) for c in schema_columns(schema)], separators=(",", ":"))
    return sha256_hex(text.encode())


def encode_parquet(df: pl.DataFrame, *, sort_by: Sequence[str] | None = None) -> bytes:
    """Encode ``df`` (sorted by ``sort_by`` when given) as deterministic Parquet bytes.

    Sorting by the dataset's key makes the bytes independent of the order rows arrived in (pages
    fetched concurrently, say). Nulls sort last; ties keep their input order.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"expected a polars DataFrame, got {type(df).__name__}")
    if sort_by:
        keys = list(sort_by)
        missing = [c for c in keys if c not in df.columns]
        if missing:
            raise ValueError(f"sort_by columns {missing} are not in the frame (columns: {df.columns})")
        df = df.sort(keys, nulls_last=True, maintain_order=True)
    buf = io.BytesIO()
    df.write_parquet(buf, **_PARQUET_OPTIONS)
    return buf.getvalue()


def decode_parquet(data: bytes, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data), columns=list(columns) if columns is not None else None)


@dataclass(frozen=True)
class Manifest:
    """What a partition holds and how to check it. Serialised as ``_manifest.json``."""

    layer: str
    dataset: str
    date: dt.date
    rows: int
    #: ``((name, dtype), ...)`` in column order.
    columns: tuple[tuple[str, str], ...]
    schema_hash: str
    #: SHA-256 (hex) of the Parquet file's bytes.
    checksum: str
    size_bytes: int
    source: str
    #: UTC time of the write, ISO 8601. The only field that differs between equal reruns.
    written_at: str
    sort_by: tuple[str, ...] = ()
    data_file: str = "part-00000.parquet"
    format_version: int = LAKE_FORMAT_VERSION

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def same_content(self, other: Manifest) -> bool:
        """True when both describe byte-identical data (ignores ``written_at`` and ``source``)."""
        return self.checksum == other.checksum and self.schema_hash == other.schema_hash

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "layer": self.layer,
            "dataset": self.dataset,
            "date": self.date.isoformat(),
            "data_file": self.data_file,
            "rows": self.rows,
            "columns": [{"name": n, "dtype": t} for n, t in self.columns],
            "schema_hash": self.schema_hash,
            "checksum": {"algorithm": "sha256", "value": self.checksum},
            "size_bytes": self.size_bytes,
            "sort_by": list(self.sort_by),
            "source": self.source,
            "written_at": self.written_at,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Manifest:
        """Parse a manifest; ``where`` names it in errors (unreadable JSON, newer format, bad fields)."""
        try:
            doc = json.loads(data)
            version = int(doc["format_version"])
            if version > LAKE_FORMAT_VERSION:
                raise LakeError(
                    f"manifest of {where} has lake format version {version}; this code reads up to "
                    f"{LAKE_FORMAT_VERSION} (upgrade gogooku3)"
                )
            checksum = doc["checksum"]
            if checksum.get("algorithm") != "sha256":
                raise LakeError(f"manifest of {where} uses checksum {checksum.get('algorithm')!r}")
            return cls(
                layer=str(doc["layer"]),
                dataset=str(doc["dataset"]),
                date=dt.date.fromisoformat(doc["date"]),
                rows=int(doc["rows"]),
                columns=tuple((str(c["name"]), str(c["dtype"])) for c in doc["columns"]),
                schema_hash=str(doc["schema_hash"]),
                checksum=str(checksum["value"]),
                size_bytes=int(doc["size_bytes"]),
                source=str(doc["source"]),
                written_at=str(doc["written_at"]),
                sort_by=tuple(doc.get("sort_by") or ()),
                data_file=str(doc.get("data_file", "part-00000.parquet")),
                format_version=version,
            )
        except LakeError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LakeError(f"manifest of {where} is unreadable ({type(e).__name__}: {e})") from None


def build_manifest(
    *,
    layer: str,
    dataset: str,
    day: dt.date,
    df: pl.DataFrame,
    data: bytes,
    source: str,
    sort_by: Sequence[str] | None,
    now: dt.datetime,
) -> Manifest:
    return Manifest(
        layer=layer,
        dataset=dataset,
        date=day,
        rows=df.height,
        columns=schema_columns(df.schema),
        schema_hash=schema_hash(df.schema),
        checksum=sha256_hex(data),
        size_bytes=len(data),
        source=source,
        written_at=now.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
        sort_by=tuple(sort_by or ()),
    )
