"""The data lake: Hive-partitioned Parquet with manifests on a local path or S3.

::

    from gogooku3.lake import open_lake

    lake = open_lake("./data/lake")                 # or "s3://bucket/prefix", S3Settings(...)
    m = lake.write_partition("raw", "daily_quotes", day, df, source="jquants v2", sort_by=("Date", "Code"))
    df = lake.read_partition("raw", "daily_quotes", day)    # checksum-verified
    lake.mark_good("raw", "daily_quotes", day, validation_ref=result_uri)

Layout and guarantees: :mod:`gogooku3.lake.layout`, :mod:`gogooku3.lake.lake`.
"""

from gogooku3.lake.errors import (
    CorruptPartitionError,
    InvalidNameError,
    LakeError,
    LakeStorageError,
    LakeURIError,
    MissingPartitionError,
)
from gogooku3.lake.lake import Lake, LatestGood, LocalLake, S3Lake
from gogooku3.lake.layout import LAYERS
from gogooku3.lake.manifest import LAKE_FORMAT_VERSION, Manifest
from gogooku3.lake.storage import LocalStorage, Storage
from gogooku3.lake.uri import DEFAULT_LAKE_URI, open_lake

__all__ = [
    "DEFAULT_LAKE_URI",
    "LAKE_FORMAT_VERSION",
    "LAYERS",
    "CorruptPartitionError",
    "InvalidNameError",
    "Lake",
    "LakeError",
    "LakeStorageError",
    "LakeURIError",
    "LatestGood",
    "LocalLake",
    "LocalStorage",
    "Manifest",
    "MissingPartitionError",
    "S3Lake",
    "Storage",
    "open_lake",
]
