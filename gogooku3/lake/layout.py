"""Where things live in the lake: validated names and the object keys built from them (pure).

Layout (keys are relative to the lake root, ``/``-separated on every backend)::

    <layer>/<dataset>/date=YYYY-MM-DD/part-00000.parquet    the data (one file per partition)
    <layer>/<dataset>/date=YYYY-MM-DD/_manifest.json        written after the data: the commit marker
    <layer>/<dataset>/date=YYYY-MM-DD/_artifacts/<name>     validation results, Data Docs ...
    <layer>/<dataset>/_latest_good.json                     the newest partition that passed its gate

Names beginning with ``_`` or ``.`` are skipped by Hive-style readers (pyarrow datasets, Spark), so
the manifest, the artifacts and a local writer's hidden temp files never leak into a scan of the data.
Polars' directory scan does not skip them: scan with the glob
``<layer>/<dataset>/date=*/part-*.parquet`` (which matches only data files), or better use
:meth:`gogooku3.lake.Lake.read_range`, which also verifies checksums and skips uncommitted partitions.

Every name is checked here before it becomes part of a key, so a caller cannot escape the lake with
``..`` or ``/`` and a typo in a layer fails loudly instead of creating a stray tree.
"""

from __future__ import annotations

import datetime as dt
import re

from gogooku3.lake.errors import InvalidNameError

#: The lake's layers: API answers as fetched, derived tables, the model's features.
LAYERS: tuple[str, ...] = ("raw", "interim", "features")

DATA_FILE = "part-00000.parquet"
MANIFEST_FILE = "_manifest.json"
ARTIFACTS_DIR = "_artifacts"
LATEST_GOOD_FILE = "_latest_good.json"
PARTITION_KEY = "date"

_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ARTIFACT_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]{0,199}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARTITION_DIR = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")


def check_layer(layer: object) -> str:
    """Return ``layer`` if it is one of :data:`LAYERS`, else raise naming it and the allowed ones."""
    if not isinstance(layer, str) or layer not in LAYERS:
        raise InvalidNameError(f"unknown lake layer {layer!r}; expected one of {', '.join(LAYERS)}")
    return layer


def check_dataset(dataset: object) -> str:
    """Return ``dataset`` if it is a safe folder name (lowercase letters, digits, ``_``; <= 64 chars)."""
    if not isinstance(dataset, str) or not _DATASET.match(dataset):
        raise InvalidNameError(
            f"invalid dataset name {dataset!r}: use lowercase letters, digits and '_' "
            "(starting with a letter, at most 64 characters), e.g. 'daily_quotes'"
        )
    return dataset


def to_date(day: object) -> dt.date:
    """Accept a :class:`datetime.date` or an ISO ``YYYY-MM-DD`` string; reject everything else.

    A ``datetime`` is rejected rather than truncated: which calendar day it means depends on its
    time zone (the pipeline partitions by JST dates), so the caller must decide.
    """
    if isinstance(day, dt.datetime):
        raise InvalidNameError(
            f"partition date {day!r} is a datetime; pass a date (convert to the JST date first)"
        )
    if isinstance(day, dt.date):
        return day
    if isinstance(day, str) and _ISO_DATE.match(day):
        try:
            return dt.date.fromisoformat(day)
        except ValueError:
            pass
    raise InvalidNameError(f"invalid partition date {day!r}: expected a date or 'YYYY-MM-DD'")


def check_artifact_name(name: object) -> str:
    """Return ``name`` if every ``/``-separated segment is a plain file name (no ``..``, no hidden)."""
    if not isinstance(name, str) or not name or len(name) > 512:
        raise InvalidNameError(f"invalid artifact name {name!r}")
    for segment in name.split("/"):
        if not _ARTIFACT_SEGMENT.match(segment):
            raise InvalidNameError(
                f"invalid artifact name {name!r}: segment {segment!r} must be letters, digits, "
                "'.', '_' or '-' and may not start with '.' (no '..', no empty segments)"
            )
    return name


def dataset_prefix(layer: str, dataset: str) -> str:
    return f"{check_layer(layer)}/{check_dataset(dataset)}"


def partition_dir(day: dt.date) -> str:
    return f"{PARTITION_KEY}={day.isoformat()}"


def partition_prefix(layer: str, dataset: str, day: object) -> str:
    return f"{dataset_prefix(layer, dataset)}/{partition_dir(to_date(day))}"


def data_key(layer: str, dataset: str, day: object) -> str:
    return f"{partition_prefix(layer, dataset, day)}/{DATA_FILE}"


def manifest_key(layer: str, dataset: str, day: object) -> str:
    return f"{partition_prefix(layer, dataset, day)}/{MANIFEST_FILE}"


def artifact_key(layer: str, dataset: str, day: object, name: str) -> str:
    return f"{partition_prefix(layer, dataset, day)}/{ARTIFACTS_DIR}/{check_artifact_name(name)}"


def latest_good_key(layer: str, dataset: str) -> str:
    return f"{dataset_prefix(layer, dataset)}/{LATEST_GOOD_FILE}"


def parse_partition_dir(name: str) -> dt.date | None:
    """``date=2024-01-04`` -> ``date(2024, 1, 4)``; anything else (temp files, typos) -> None."""
    m = _PARTITION_DIR.match(name)
    if not m:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None


def describe(layer: str, dataset: str, day: dt.date) -> str:
    """Human name of a partition for messages: ``raw/daily_quotes date=2024-01-04``."""
    return f"{layer}/{dataset} {partition_dir(day)}"
