"""The lake: Hive-partitioned Parquet with manifests, over any :class:`~gogooku3.lake.storage.Storage`.

All logic lives in :class:`Lake`; :class:`LocalLake` and :class:`S3Lake` only choose the storage
backend, so there is one way to write, read, verify, list and mark a partition.

Write protocol of a partition (``write_partition``):

1. Encode the frame as deterministic Parquet (sorted by ``sort_by``) and hash it.
2. Put ``part-00000.parquet`` atomically.
3. Put ``_manifest.json`` atomically. The manifest is the commit marker.

A writer killed before 2 completes leaves the previous partition untouched (and at most a hidden
temp file locally). Killed between 2 and 3, the data no longer matches the manifest: readers get
:class:`CorruptPartitionError` (on a first write: no manifest, so the partition is simply absent)
until the write is rerun, which heals it. Readers therefore never get a half partition silently.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

from gogooku3.config import S3Settings
from gogooku3.lake import layout
from gogooku3.lake.errors import (
    CorruptPartitionError,
    LakeError,
    MissingPartitionError,
)
from gogooku3.lake.manifest import (
    LAKE_FORMAT_VERSION,
    Manifest,
    build_manifest,
    decode_parquet,
    encode_parquet,
    sha256_hex,
)
from gogooku3.lake.storage import LocalStorage, Storage
from gogooku3.redaction import library_logger

log = library_logger(__name__)

_MARK_ATTEMPTS = 20
_READ_WORKERS = 8


@dataclass(frozen=True)
class LatestGood:
    """The ``_latest_good.json`` marker: the newest partition of a dataset that passed its gate."""

    layer: str
    dataset: str
    date: dt.date
    #: Where the passing validation result is (artifact URI, GX run id ...).
    validation_ref: str
    #: The manifest checksum of the partition when it was marked, to detect later rewrites.
    checksum: str
    marked_at: str
    format_version: int = LAKE_FORMAT_VERSION

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "layer": self.layer,
            "dataset": self.dataset,
            "date": self.date.isoformat(),
            "validation_ref": self.validation_ref,
            "checksum": self.checksum,
            "marked_at": self.marked_at,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> LatestGood:
        try:
            doc = json.loads(data)
            return cls(
                layer=str(doc["layer"]),
                dataset=str(doc["dataset"]),
                date=dt.date.fromisoformat(doc["date"]),
                validation_ref=str(doc["validation_ref"]),
                checksum=str(doc["checksum"]),
                marked_at=str(doc["marked_at"]),
                format_version=int(doc["format_version"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise LakeError(f"latest-good marker {where} is unreadable ({type(e).__name__}: {e})") from None


class Lake:
    """Partitioned Parquet datasets in layers ``raw``, ``interim``, ``features``.

    ``day`` arguments accept a :class:`datetime.date` or a ``YYYY-MM-DD`` string.
    """

    def __init__(self, storage: Storage, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.storage = storage
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    @property
    def uri(self) -> str:
        """The lake root's URI (never contains credentials)."""
        return self.storage.root_uri

    # ---------------------------------------------------------------- naming

    def uri_for(self, layer: str, dataset: str, day: dt.date | str | None = None) -> str:
        """URI of a dataset (``day=None``) or of one partition's directory, for logs and Assets."""
        if day is None:
            return self.storage.uri(layout.dataset_prefix(layer, dataset))
        return self.storage.uri(layout.partition_prefix(layer, dataset, day))

    def _where(self, layer: str, dataset: str, day: dt.date) -> str:
        return f"partition {layout.describe(layer, dataset, day)} in lake {self.uri}"

    # ---------------------------------------------------------------- write

    def write_partition(
        self,
        layer: str,
        dataset: str,
        day: dt.date | str,
        df: pl.DataFrame,
        *,
        source: str,
        sort_by: Sequence[str] | None = None,
        date_column: str | None = None,
    ) -> Manifest:
        """Write (or replace) one partition atomically and return its manifest.

        ``sort_by`` (the dataset's key) makes the bytes independent of row arrival order, so an
        equal rerun gives byte-identical Parquet and an equal checksum. ``date_column``, if given,
        must equal ``day`` on every row (guards against writing a frame into the wrong date). An
        empty frame is allowed and keeps its schema.
        """
        layout.check_layer(layer)
        layout.check_dataset(dataset)
        day = layout.to_date(day)
        where = self._where(layer, dataset, day)
        if not isinstance(df, pl.DataFrame):
            raise TypeError(f"write_partition({where}) needs a polars DataFrame, got {type(df).__name__}")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"write_partition({where}) needs a non-empty source (who produced the data)")
        if date_column is not None:
            _check_date_column(df, date_column, day, where)
        try:
            data = encode_parquet(df, sort_by=sort_by)
        except ValueError as e:
            raise ValueError(f"cannot write {where}: {e}") from None
        manifest = build_manifest(
            layer=layer,
            dataset=dataset,
            day=day,
            df=df,
            data=data,
            source=source,
            sort_by=sort_by,
            now=self._clock(),
        )
        # Data first, manifest second: the manifest commits the partition (see module docstring).
        self.storage.put_bytes(
            layout.data_key(layer, dataset, day), data, content_type="application/vnd.apache.parquet"
        )
        self.storage.put_bytes(
            layout.manifest_key(layer, dataset, day), manifest.to_json(), content_type="application/json"
        )
        log.info(
            "lake: wrote %s rows=%d bytes=%d sha256=%s source=%s",
            where,
            manifest.rows,
            manifest.size_bytes,
            manifest.checksum[:12],
            source,
        )
        return manifest

    # ---------------------------------------------------------------- read

    def read_manifest(self, layer: str, dataset: str, day: dt.date | str) -> Manifest:
        """The partition's manifest; :class:`MissingPartitionError` if it was never committed."""
        layout.check_layer(layer)
        layout.check_dataset(dataset)
        day = layout.to_date(day)
        where = self._where(layer, dataset, day)
        try:
            raw = self.storage.get_bytes(layout.manifest_key(layer, dataset, day))
        except FileNotFoundError:
            orphan = self.storage.exists(layout.data_key(layer, dataset, day))
            hint = (
                " (a data file without a manifest is there: its writer stopped before committing; "
                "rerun the write)"
                if orphan
                else ""
            )
            raise MissingPartitionError(f"{where} does not exist{hint}") from None
        manifest = Manifest.from_json(raw, where=where)
        if (manifest.layer, manifest.dataset, manifest.date) != (layer, dataset, day):
            raise CorruptPartitionError(
                f"manifest of {where} describes {manifest.layer}/{manifest.dataset} "
                f"date={manifest.date.isoformat()} instead"
            )
        return manifest

    def has_partition(self, layer: str, dataset: str, day: dt.date | str) -> bool:
        """True when the partition is committed (its manifest exists). Does not verify the data."""
        return self.storage.exists(layout.manifest_key(layer, dataset, layout.to_date(day)))

    def read_partition(
        self,
        layer: str,
        dataset: str,
        day: dt.date | str,
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Read one partition after checking its bytes against the manifest's SHA-256.

        Raises :class:`MissingPartitionError` if absent and :class:`CorruptPartitionError` if the
        data does not match the manifest; both name the partition and the lake.
        """
        manifest, data = self._verified(layer, dataset, day)
        if columns is not None:
            unknown = [c for c in columns if c not in manifest.column_names]
            if unknown:
                where = self._where(layer, dataset, manifest.date)
                raise KeyError(f"{where} has no columns {unknown} (it has {list(manifest.column_names)})")
        return decode_parquet(data, columns=columns)

    def verify_partition(self, layer: str, dataset: str, day: dt.date | str) -> Manifest:
        """The partition's manifest once its data file matched the manifest's SHA-256 (nothing is
        decoded); raises like :meth:`read_partition`."""
        return self._verified(layer, dataset, day)[0]

    def _verified(self, layer: str, dataset: str, day: dt.date | str) -> tuple[Manifest, bytes]:
        manifest = self.read_manifest(layer, dataset, day)
        where = self._where(layer, dataset, manifest.date)
        try:
            data = self.storage.get_bytes(layout.data_key(layer, dataset, manifest.date))
        except FileNotFoundError:
            raise CorruptPartitionError(f"{where} has a manifest but no data file; rewrite it") from None
        actual = sha256_hex(data)
        if actual != manifest.checksum:
            raise CorruptPartitionError(
                f"{where} is corrupt: data sha256 {actual[:16]}... does not match the manifest's "
                f"{manifest.checksum[:16]}... (a writer may have died between data and manifest); "
                "rewrite the partition"
            )
        return manifest, data

    def list_partitions(self, layer: str, dataset: str) -> list[dt.date]:
        """Dates of the committed partitions (those with a manifest), sorted ascending."""
        return sorted(self._partition_files(layer, dataset).get(layout.MANIFEST_FILE, set()))

    def orphaned_partitions(self, layer: str, dataset: str) -> list[dt.date]:
        """Dates with a data file but no manifest, sorted: a writer stopped before committing (or
        the manifest was removed). Readers treat them as absent; callers that need every day of a
        span name them, because a rerun of that day's write heals them."""
        files = self._partition_files(layer, dataset)
        return sorted(files.get(layout.DATA_FILE, set()) - files.get(layout.MANIFEST_FILE, set()))

    def _partition_files(self, layer: str, dataset: str) -> dict[str, set[dt.date]]:
        """File name (data file, manifest) -> the partition dates holding one, from one listing."""
        prefix = layout.dataset_prefix(layer, dataset)
        found: dict[str, set[dt.date]] = {}
        for key in self.storage.list(prefix):
            parts = key[len(prefix) + 1 :].split("/")
            if len(parts) == 2 and parts[1] in (layout.MANIFEST_FILE, layout.DATA_FILE):
                day = layout.parse_partition_dir(parts[0])
                if day is not None:
                    found.setdefault(parts[1], set()).add(day)
        return found

    def read_range(
        self,
        layer: str,
        dataset: str,
        start: dt.date | str,
        end: dt.date | str,
        *,
        require_all: Iterable[dt.date | str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Concatenate the partitions dated ``start..end`` (inclusive), in date order.

        With ``require_all`` (e.g. the trading days of the range) every one of those dates must be
        present, else :class:`MissingPartitionError` names all missing dates at once. Partitions
        whose schemas differ (an extra column some day) are aligned by name, missing values null.
        No partition in range gives an empty frame without columns.
        """
        start, end = layout.to_date(start), layout.to_date(end)
        if start > end:
            raise ValueError(f"read_range({layer}/{dataset}): start {start} is after end {end}")
        present = [d for d in self.list_partitions(layer, dataset) if start <= d <= end]
        if require_all is not None:
            required = {layout.to_date(d) for d in require_all}
            outside = sorted(d for d in required if not start <= d <= end)
            if outside:
                raise ValueError(
                    f"read_range({layer}/{dataset}, {start}..{end}): require_all has dates outside the "
                    f"range: {', '.join(d.isoformat() for d in outside)}"
                )
            missing = sorted(required - set(present))
            if missing:
                raise MissingPartitionError(
                    f"{layer}/{dataset} in lake {self.uri} is missing {len(missing)} required "
                    f"partition(s) between {start} and {end}: {', '.join(d.isoformat() for d in missing)}"
                )
        if not present:
            return pl.DataFrame()
        with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(present))) as pool:
            frames = list(
                pool.map(lambda d: self.read_partition(layer, dataset, d, columns=columns), present)
            )
        return pl.concat(frames, how="diagonal_relaxed")

    # ---------------------------------------------------------------- delete

    def delete_partition(self, layer: str, dataset: str, day: dt.date | str) -> bool:
        """Remove a partition (data, manifest, artifacts). Returns whether anything was there.

        The manifest goes first, so a reader never sees a committed partition without its data.
        The latest-good marker is left alone (it records history, not presence).
        """
        day = layout.to_date(day)
        prefix = layout.partition_prefix(layer, dataset, day)
        existed = bool(self.storage.list(prefix))
        self.storage.delete(layout.manifest_key(layer, dataset, day))
        self.storage.delete_prefix(prefix)
        if existed:
            log.info("lake: deleted %s", self._where(layer, dataset, day))
        return existed

    # ---------------------------------------------------------------- quality-gate marker

    def mark_good(
        self,
        layer: str,
        dataset: str,
        day: dt.date | str,
        *,
        validation_ref: str,
        expected_checksum: str | None = None,
        force: bool = False,
    ) -> LatestGood:
        """Record ``day`` as the dataset's latest good partition; returns the marker now in force.

        The marker only moves forward: marking a date older than the current one changes nothing
        (a backfill's gate passing an old day must not hide newer good data) unless ``force=True``.
        The update is a compare-and-swap, so parallel gate tasks cannot race it backwards. The
        partition must be committed; pass ``expected_checksum`` (the manifest checksum the gate
        validated) to refuse marking a partition rewritten since.
        """
        day = layout.to_date(day)
        if not isinstance(validation_ref, str) or not validation_ref.strip():
            raise ValueError("mark_good needs a non-empty validation_ref (where the passing result is)")
        manifest = self.read_manifest(layer, dataset, day)
        where = self._where(layer, dataset, day)
        if expected_checksum is not None and expected_checksum != manifest.checksum:
            raise CorruptPartitionError(
                f"{where} changed since it was validated (checksum {manifest.checksum[:16]}..., "
                f"validated {expected_checksum[:16]}...); not marking it good"
            )
        key = layout.latest_good_key(layer, dataset)
        for _ in range(_MARK_ATTEMPTS):
            current = self.storage.get_versioned(key)
            token = None
            if current is not None:
                existing = LatestGood.from_json(current[0], where=self.storage.uri(key))
                token = current[1]
                if existing.date > day and not force:
                    log.info(
                        "lake: %s/%s latest good stays %s (not moving back to %s)",
                        layer,
                        dataset,
                        existing.date,
                        day,
                    )
                    return existing
            marker = LatestGood(
                layer=layer,
                dataset=dataset,
                date=day,
                validation_ref=validation_ref,
                checksum=manifest.checksum,
                marked_at=self._clock().astimezone(dt.UTC).isoformat(timespec="milliseconds"),
            )
            if self.storage.put_if(key, marker.to_json(), expected=token, content_type="application/json"):
                log.info("lake: %s/%s latest good -> %s (%s)", layer, dataset, day, validation_ref)
                return marker
        raise LakeError(
            f"could not update the latest-good marker of {layer}/{dataset} in lake {self.uri}: "
            f"it kept changing under us ({_MARK_ATTEMPTS} attempts)"
        )

    def latest_good_marker(self, layer: str, dataset: str) -> LatestGood | None:
        """The full latest-good marker, or None when nothing was ever marked."""
        key = layout.latest_good_key(layer, dataset)
        try:
            raw = self.storage.get_bytes(key)
        except FileNotFoundError:
            return None
        return LatestGood.from_json(raw, where=self.storage.uri(key))

    def latest_good(self, layer: str, dataset: str) -> dt.date | None:
        """Date of the newest partition that passed its quality gate, or None."""
        marker = self.latest_good_marker(layer, dataset)
        return marker.date if marker is not None else None

    # ---------------------------------------------------------------- artifacts

    def artifact_uri(self, layer: str, dataset: str, day: dt.date | str, name: str) -> str:
        return self.storage.uri(layout.artifact_key(layer, dataset, day, name))

    def write_artifact(
        self,
        layer: str,
        dataset: str,
        day: dt.date | str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Save ``data`` (validation result, Data Docs page ...) next to a partition; returns its URI.

        ``name`` may contain ``/`` for a small tree (``data_docs/index.html``).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"artifact {name!r} must be bytes, got {type(data).__name__}")
        key = layout.artifact_key(layer, dataset, day, name)
        self.storage.put_bytes(key, bytes(data), content_type=content_type)
        return self.storage.uri(key)

    def read_artifact(self, layer: str, dataset: str, day: dt.date | str, name: str) -> bytes:
        key = layout.artifact_key(layer, dataset, day, name)
        try:
            return self.storage.get_bytes(key)
        except FileNotFoundError:
            raise MissingPartitionError(
                f"artifact {name!r} of {self._where(layer, dataset, layout.to_date(day))} does not exist"
            ) from None

    def list_artifacts(self, layer: str, dataset: str, day: dt.date | str) -> list[str]:
        """Names of the artifacts saved next to a partition, sorted."""
        prefix = f"{layout.partition_prefix(layer, dataset, day)}/{layout.ARTIFACTS_DIR}"
        return [key[len(prefix) + 1 :] for key in self.storage.list(prefix)]


class LocalLake(Lake):
    """A lake in a local directory (the embedded default ``./data/lake``)."""

    def __init__(self, root: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(LocalStorage(root), **kwargs)

    @property
    def root(self) -> str:
        return str(self.storage.root)  # type: ignore[attr-defined]


class S3Lake(Lake):
    """A lake under ``s3://bucket/prefix`` (AWS S3 or any S3-compatible server)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        s3: S3Settings | None = None,
        *,
        client: Any = None,
        **kwargs: Any,
    ) -> None:
        from gogooku3.lake.s3 import S3Storage, make_s3_client

        if client is None:
            client = make_s3_client(s3 if s3 is not None else S3Settings.from_env())
        super().__init__(S3Storage(bucket, prefix, client), **kwargs)


def _check_date_column(df: pl.DataFrame, column: str, day: dt.date, where: str) -> None:
    if column not in df.columns:
        raise ValueError(f"cannot write {where}: date_column {column!r} is not in the frame")
    if df.schema[column] != pl.Date:
        raise TypeError(f"cannot write {where}: {column} is {df.schema[column]}, expected Date")
    wrong = df.filter(pl.col(column).ne_missing(pl.lit(day)))
    if wrong.height:
        seen = wrong.get_column(column).unique().sort(nulls_last=True).head(5).to_list()
        raise ValueError(
            f"cannot write {where}: {wrong.height} of {df.height} rows have {column} != {day} "
            f"(e.g. {', '.join('null' if v is None else v.isoformat() for v in seen)})"
        )
